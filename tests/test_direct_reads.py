"""``node.get``'s direct path against GET through the engine: the same answers, INFO
counters, lazy expiry (its DEL propagated in the same place), LRU access time, on a master
and on a replica, and in every state where the direct path must step aside."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

import kvrepl
from kvrepl.direct_reads import SAMPLE

Get = Callable[[object], object]
NOW = 1_700_000_000.0


def _general(node: kvrepl.Node) -> Get:
    return lambda name: node.execute_command("GET", name)


def _observe(node: kvrepl.Node) -> dict[str, object]:
    info = node.redis().info("all")
    node.redis().config_resetstat()  # the reading itself is not the next step's
    return {
        "hits": info["keyspace_hits"],
        "misses": info["keyspace_misses"],
        "processed": info["total_commands_processed"],
        "get_calls": info.get("cmdstat_get", {}).get("calls", 0),
        "expired": info["expired_keys"],
        "keys": node.dbsize(),
    }


def _outcome(call: Callable[[], object]) -> object:
    try:
        return call()
    except (kvrepl.ReplyError, redis.RedisError) as err:
        return type(err).__name__, str(err)


async def _run(setup: Callable[[kvrepl.Node], None], reads: list[object],
               get_of: Callable[[kvrepl.Node], Get], each: bool = True) -> list[object]:
    """On a fresh master with a clock the test moves: ``setup``, then each read with its
    answer and what INFO counted (``each`` False: counted once, after the reads), then the
    propagated writes."""
    now = [NOW]
    async with kvrepl.Master() as node:
        node.engine.keyspace.clock = lambda: now[0]
        node.engine.keyspace.set_lru_clock(int(NOW))
        node.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", 0)
        setup(node)
        seen: list[object] = []
        async with node.changes() as changes:
            _observe(node)
            get = get_of(node)
            now[0] += 100  # keys with a TTL under 100 s are due
            node.engine.keyspace.set_lru_clock(node.engine.keyspace.lru_clock + 100)
            for name in reads:
                seen.append((name, _outcome(lambda name=name: get(name)),
                             _observe(node) if each else None))
            if not each:
                seen.append(_observe(node))
            node.set("after", "x")  # a write after the reads: order of the stream
            if node._session.multi is not None:
                seen.append(node.execute_command("EXEC"))
            propagated = []
            while True:
                change = await changes.__anext__()
                propagated.append(tuple(change))
                if change.args[:1] == (b"after",):
                    break
        seen.append(propagated)
        lfu = node.engine.keyspace.lfu
        seen.append({key: node.execute_command("OBJECT", "FREQ" if lfu else "IDLETIME", key)
                     for key in node.keys()})
    return seen


def _strings(node: kvrepl.Node) -> None:
    node.set("plain", "v")
    node.set("ttl-later", "v", ex=1000)
    node.set("ttl-due", "v", ex=10)
    node.rpush("list", "a")
    node.set("grown", "ab")
    node.append("grown", "cd")
    node.set("int", 12)


READS: list[object] = [b"plain", "plain", b"nothing", "nothing", 7, b"ttl-later",
                       b"ttl-due", b"ttl-due", b"list", b"grown", b"int", None, [1],
                       b"plain"]


async def test_direct_get_is_the_general_get() -> None:
    direct = await _run(_strings, READS, lambda node: node.get)
    general = await _run(_strings, READS, _general)
    assert direct == general
    # The scenario did what it says: a due key was deleted and its DEL propagated
    # before the later write; misses and errors are among the answers.
    propagated = direct[-2]
    assert propagated == [(0, b"DEL", (b"ttl-due",)), (0, b"SET", (b"after", b"x"))]
    answers = [answer for _, answer, _ in direct[:-2]]
    assert answers[:4] == [b"v", b"v", None, None]
    assert "WRONGTYPE" in answers[8][1]
    assert answers[11][0] == "DataError"


def _grown_with_ttls(node: kvrepl.Node) -> None:
    _strings(node)
    for key, seconds in (("grown-ttl", 1000), ("grown-due", 10)):
        node.set(key, "ab", ex=seconds)
        node.append(key, "cd")  # a string edited in place, with a TTL


async def test_every_kind_of_hit_read_directly_and_sampled_as_the_general_get() -> None:
    # The kinds of hit in turn, more than SAMPLE rounds: the record's SAMPLE-th step (the
    # timed call) falls on each kind (it comes every SAMPLE reads, the timed read taking
    # two steps, and the kinds are an odd number).
    kinds = [b"plain", b"ttl-later", b"grown", b"grown-ttl", b"int"]
    reads = [*kinds * (SAMPLE + 2), b"grown-due", b"ttl-due", *kinds]
    direct = await _run(_grown_with_ttls, reads, lambda node: node.get, each=False)
    assert direct == await _run(_grown_with_ttls, reads, _general, each=False)
    answers = {name: answer for name, answer, _ in direct[:-3]}
    assert answers == {b"plain": b"v", b"ttl-later": b"v", b"grown": b"abcd", b"int": b"12",
                       b"grown-ttl": b"abcd", b"grown-due": None, b"ttl-due": None}
    assert [change[1:] for change in direct[-2][:2]] == [(b"DEL", (b"grown-due",)),
                                                        (b"DEL", (b"ttl-due",))]


@pytest.mark.parametrize("state", [
    ("CONFIG", "SET", "notify-keyspace-events", "Km"),
    ("CONFIG", "SET", "maxmemory", "100mb"),
    ("CONFIG", "SET", "maxmemory-policy", "allkeys-lfu"),
    ("CLIENT", "TRACKING", "on"),
    ("MULTI",),
])
async def test_states_where_the_direct_path_steps_aside(state: tuple[str, ...]) -> None:
    def setup(node: kvrepl.Node) -> None:
        _strings(node)
        node.execute_command(*state)

    reads = [b"plain", b"nothing", b"ttl-due"]
    assert await _run(setup, reads, lambda node: node.get) == \
        await _run(setup, reads, _general)


async def test_many_calls_sampled_timing_keeps_calls_exact() -> None:
    async with kvrepl.Master() as node:
        node.set("k", "v")
        client = node.redis()
        client.config_resetstat()
        for _ in range(SAMPLE * 3 + 5):
            assert node.get(b"k") == b"v"
            assert node.get(b"missing") is None
        info = client.info("all")
        calls = 2 * (SAMPLE * 3 + 5)
        assert info["cmdstat_get"]["calls"] == calls
        assert info["keyspace_hits"] == calls // 2
        assert info["keyspace_misses"] == calls // 2
        assert info["cmdstat_get"]["usec"] > 0  # the sampled calls were timed
        histogram = client.execute_command("LATENCY", "HISTOGRAM", "get")
        assert histogram  # GET has latency samples


async def test_replica_reads_as_the_general_path() -> None:
    now = [NOW]
    async with kvrepl.Master() as master, kvrepl.Replica(follow=master) as replica:
        for node in (master, replica):
            node.engine.keyspace.clock = lambda: now[0]
        master.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", 0)
        master.set("plain", "v")
        master.set("due", "v", ex=10)
        await replica.wait_synced()
        now[0] += 100
        replica.redis().config_resetstat()
        answers = [replica.get(b"plain"), replica.get(b"due"), replica.get(b"none")]
        direct = replica.redis().info("all")
        replica.redis().config_resetstat()
        again = [replica.execute_command("GET", name) for name in (b"plain", b"due", b"none")]
        general = replica.redis().info("all")
        assert answers == again == [b"v", None, None]
        for field in ("keyspace_hits", "keyspace_misses", "total_commands_processed"):
            assert direct[field] == general[field], field
        assert direct["cmdstat_get"]["calls"] == general["cmdstat_get"]["calls"] == 3
        # A replica does not delete the due key: its master's DEL will.
        assert replica.engine.keyspace.dbs[0].data.get(b"due") == b"v"


@pytest.mark.parametrize("kwargs", [{}, {"decode_responses": True}, {"protocol": 3},
                                    {"protocol": 2, "decode_responses": True}])
async def test_redis_py_get_and_set_as_the_general_path(kwargs: dict[str, object]) -> None:
    """``node.redis().get/set`` skip the command machinery; ``execute_command("get")``
    (lower case) goes the general way: same replies, same INFO counters."""
    async with kvrepl.Master() as node:
        client = node.redis(**kwargs)
        node.rpush("list", "a")
        node.set("ttl", "v", px=1)
        calls = [("set", "k", "v"), ("set", b"\xff", 1.5), ("get", "k"), ("get", b"\xff"),
                 ("get", "missing"), ("get", 7), ("get", "list"), ("get", None)]

        def replay(direct: bool) -> list[object]:
            client.config_resetstat()
            seen: list[object] = []
            for name, *args in calls:
                call = getattr(client, name) if direct else \
                    lambda *args, name=name: client.execute_command(name, *args)
                seen.append(_outcome(lambda call=call, args=args: call(*args)))
            info = client.info("all")
            seen.append({field: info[field] for field in
                         ("keyspace_hits", "keyspace_misses", "total_commands_processed")})
            seen.append({name: info[name]["calls"] for name in ("cmdstat_get", "cmdstat_set")})
            seen.append(client.client_info()["cmd"])
            return seen

        direct, general = replay(True), replay(False)
        assert direct == general
        assert direct[:3] == [True, True, "v" if kwargs.get("decode_responses") else b"v"]


def _counters(node: kvrepl.Node) -> dict[str, object]:
    info = node.info("all")  # the Python API's INFO: it folds the tally too
    return {"hits": info["keyspace_hits"], "misses": info["keyspace_misses"],
            "processed": info["total_commands_processed"],
            "get": info.get("cmdstat_get", {}).get("calls", 0),
            "set": info.get("cmdstat_set", {}).get("calls", 0)}


async def test_tallied_counters_are_folded_where_read_and_reset() -> None:
    """node.get and node.set count in one tally; INFO (both ways of reading it) shows the
    same counters as the general path's, CONFIG RESETSTAT zeroes them, sampled timing
    included (commandstats usec, LATENCY HISTOGRAM)."""
    async def counted(direct: bool) -> list[object]:
        async with kvrepl.Master() as node:
            get = node.get if direct else _general(node)
            put = node.set if direct else \
                (lambda key, value: node.execute_command("SET", key, value))
            seen: list[object] = []
            for round_number in range(2):
                for i in range(SAMPLE + 3):
                    put(b"k%d" % i, b"v")
                    get(b"k%d" % i)
                    get(b"missing")
                seen.append(_counters(node))
                seen.append(_counters(node))  # reading twice adds nothing
                if round_number == 0:
                    node.execute_command("CONFIG", "RESETSTAT")
                    seen.append(_counters(node))
            info = node.redis().info("commandstats")
            seen.append(all(info[name]["usec"] > 0 for name in ("cmdstat_get", "cmdstat_set")))
            seen.append([bool(node.execute_command("LATENCY", "HISTOGRAM", name))
                         for name in ("get", "set")])
            return seen

    direct, general = await counted(True), await counted(False)
    assert direct == general
    assert direct[0] == {"hits": SAMPLE + 3, "misses": SAMPLE + 3,
                         "processed": 3 * (SAMPLE + 3), "get": 2 * (SAMPLE + 3),
                         "set": SAMPLE + 3}
    assert direct[2]["get"] == 0 and direct[-2:] == [True, [True, True]]


@pytest.mark.parametrize("start", ["watch", "blocked client", "read-only replica state",
                                   "min-replicas-to-write"])
async def test_writes_only_gates_leave_the_direct_reads_open(start: str) -> None:
    """What only a write could meet closes the plain lane, not the direct reads: they stay
    direct (the tally counts them) and answer as before."""
    async with kvrepl.Master() as node:
        node.set("k", "v")
        engine = node.engine
        other = engine.new_session()
        if start == "watch":
            engine.execute(other, [b"WATCH", b"k"])
        elif start == "blocked client":
            engine.keyspace.block_key(0, b"list")
        elif start == "read-only replica state":
            engine.read_only = True
        else:
            node.execute_command("CONFIG", "SET", "min-replicas-to-write", 1)
        gates = engine.keyspace.gates
        assert not gates.open and gates.read_open, gates.closed()
        before = engine.direct_tally.count_gets()
        assert node.get(b"k") == b"v" and node.get(b"none") is None
        assert engine.direct_tally.count_gets() == before + 2


@pytest.mark.parametrize("state", ["busy script", "stale data", "stale data set later"])
async def test_reads_refused_by_node_state_go_the_general_way(state: str) -> None:
    """A busy script and MASTERDOWN without stale reads close the direct reads (their own
    gates): the general path answers BUSY / MASTERDOWN as for a GET through the engine."""
    async with kvrepl.Master() as node:
        node.set("k", "v")
        engine = node.engine
        if state == "busy script":
            engine.busy = kvrepl.ReplyError("BUSY Redis is busy running a script.")
        elif state == "stale data":
            node.execute_command("CONFIG", "SET", "replica-serve-stale-data", "no")
            engine.masterdown = True
        else:  # the setting changes while the link is down
            engine.masterdown = True
            assert engine.keyspace.gates.read_open
            node.execute_command("CONFIG", "SET", "replica-serve-stale-data", "no")
        assert not engine.keyspace.gates.read_open, engine.keyspace.gates.closed()
        before = engine.direct_tally.count_gets()
        direct = _outcome(lambda: node.get(b"k"))
        assert direct == _outcome(lambda: node.execute_command("GET", b"k"))
        assert direct[0] == "ReplyError" and direct[1].split()[0] in ("BUSY", "MASTERDOWN")
        assert engine.direct_tally.count_gets() == before
        engine.busy = None
        engine.masterdown = False
        assert engine.keyspace.gates.read_open
        assert node.get(b"k") == b"v"


def test_read_open_is_derived_from_the_registered_gates() -> None:
    from kvrepl.store.gates import Gates

    gates = Gates()
    gates.set("a write observer", True, writes_only=True)
    gates.set("a refusal of writes", True, clients_only=True, writes_only=True)
    assert (gates.open, gates.link_open, gates.read_open) == (False, False, True)
    gates.set("a new observer", True)
    assert not gates.read_open
    gates.set("a new observer", False)
    assert gates.read_open
    gates.set("a refusal of clients", True, clients_only=True)
    assert (gates.link_open, gates.read_open) == (False, False)
    for name in ("a refusal of clients", "a refusal of writes"):
        gates.set(name, False, clients_only=True)
    gates.set("a write observer", False)
    assert (gates.open, gates.link_open, gates.read_open) == (True, True, True)
    assert gates.closed() == []


async def test_slowlog_of_every_command_sees_every_direct_call() -> None:
    # slowlog-log-slower-than 0 logs every command in Redis; sampled timing would log one
    # embedded call in SAMPLE, so that setting closes the lanes.
    async with kvrepl.Master(slowlog_log_slower_than=0, slowlog_max_len=1000) as master:
        master.execute_command("SLOWLOG", "RESET")
        for i in range(SAMPLE):
            master.set(b"k%d" % i, b"v")
            assert master.get(b"k%d" % i) == b"v"
            assert master.redis().get(b"k%d" % i) == b"v"
            assert master.redis().set(b"j%d" % i, b"v")
        logged = [entry[3] for entry in master.execute_command("SLOWLOG", "GET", "-1")]
        assert sum(args[0].upper() == b"SET" for args in logged) == 2 * SAMPLE
        assert sum(args[0].upper() == b"GET" for args in logged) == 2 * SAMPLE


async def test_a_string_edited_in_place_is_read_directly() -> None:
    """A string grown by APPEND/SETRANGE is a bytearray in the store: the direct path
    answers its bytes (counted in the tally, its access time recorded) as GET does."""
    now = [NOW]
    async with kvrepl.Master() as node:
        node.engine.keyspace.clock = lambda: now[0]
        node.engine.keyspace.set_lru_clock(int(NOW))
        node.set("grown", "ab")
        node.append("grown", "cd")
        node.execute_command("SETRANGE", "grown", 1, "X")
        assert type(node.engine.keyspace.dbs[0].data[b"grown"]) is bytearray
        node.engine.keyspace.set_lru_clock(node.engine.keyspace.lru_clock + 50)
        assert node.execute_command("OBJECT", "IDLETIME", "grown") == 50
        clients = [node.redis(), node.redis(decode_responses=True)]
        for client in clients:
            client.ping()  # its own connection: its GETs go direct from now on
        before = node.engine.direct_tally.count_gets()
        answers = [node.get(b"grown"), clients[0].get(b"grown"), clients[1].get("grown")]
        assert answers == [b"aXcd", b"aXcd", "aXcd"]
        assert type(answers[0]) is bytes
        assert node.engine.direct_tally.count_gets() == before + 3
        assert node.execute_command("OBJECT", "IDLETIME", "grown") == 0
        assert node.execute_command("GET", "grown") == b"aXcd"


async def test_a_replica_read_of_a_due_key_leaves_its_access_time() -> None:
    """A replica hides a due key without deleting it; neither path records an access."""
    now = [NOW]
    async with kvrepl.Master() as master, kvrepl.Replica(follow=master) as replica:
        for node in (master, replica):
            node.engine.keyspace.clock = lambda: now[0]
        master.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", 0)
        master.set("due", "v", ex=10)
        await replica.wait_synced()
        now[0] += 100
        replica.engine.keyspace.set_lru_clock(int(now[0]))
        access = replica.engine.keyspace.dbs[0].access
        before = access.get(b"due")
        assert replica.get(b"due") is None and replica.redis().get(b"due") is None
        assert access.get(b"due") == before
        assert replica.execute_command("GET", "due") is None
        assert access.get(b"due") == before


async def test_direct_reads_record_the_access_time_as_the_general_path() -> None:
    """The keys a full sync loaded (no access time recorded yet), a clock that moved and
    a clock of the same value held in another int object: the direct path leaves the same
    OBJECT IDLETIME and the same access map as GET through the engine."""
    now = [NOW]
    async with kvrepl.Master() as master, kvrepl.Replica(follow=master) as replica:
        for node in (master, replica):
            node.engine.keyspace.clock = lambda: now[0]
        names = [b"k%d" % i for i in range(6)]
        for name in names:
            master.set(name, "v")
        await replica.wait_synced()
        keyspace = replica.engine.keyspace
        access = keyspace.dbs[0].access
        direct, general = names[::2], names[1::2]

        def read_both() -> list[int]:
            for a, b in zip(direct, general, strict=True):
                assert replica.get(a) == replica.execute_command("GET", b) == b"v"
            return [replica.execute_command("OBJECT", "IDLETIME", name) for name in names]

        start = int(NOW)
        keyspace.set_lru_clock(start)
        assert read_both() == [0] * 6
        keyspace.set_lru_clock(start + 30)
        assert [replica.execute_command("OBJECT", "IDLETIME", name) for name in names] \
            == [30] * 6
        keyspace.set_lru_clock(int(str(start + 30)))  # equal, another object
        assert read_both() == [0] * 6
        keyspace.set_lru_clock(start + 31)
        assert replica.get(direct[0]) == b"v"
        keyspace.dbs[0].settle()  # the direct reads' pending times (Database.touched)
        assert {name: access[name] for name in names} == \
            {**dict.fromkeys(names, start + 30), direct[0]: start + 31}


async def test_folding_often_keeps_counting_and_timing() -> None:
    """INFO folds the tally each time it is read; read every few calls, the calls stay
    exact and the timed call of each block of SAMPLE still comes."""
    async with kvrepl.Master() as node:
        node.set("k", "v")
        node.execute_command("CONFIG", "RESETSTAT")
        rounds = SAMPLE
        for _ in range(rounds):
            for _ in range(3):
                assert node.get(b"k") == b"v"
            assert node.get(b"missing") is None
            node.info("stats")
        info = node.info("all")
        assert info["cmdstat_get"]["calls"] == 4 * rounds
        assert (info["keyspace_hits"], info["keyspace_misses"]) == (3 * rounds, rounds)
        assert info["cmdstat_get"]["usec"] > 0
        assert node.engine.direct_tally.count_gets() == 0


async def test_a_databases_first_ttl_binds_the_direct_get_again() -> None:
    """A direct GET bound to a database without TTLs does not look at them: each way a
    database gets its first TTL binds it again (here a cluster shard's keys merged beside
    others; SET EX, EXPIRE and DEBUG RELOAD NOFLUSH in test_direct_reads_binding)."""
    async with kvrepl.Master() as node:
        db = node.engine.keyspace.dbs[0]
        node.set(b"k0", b"v")
        assert node.get(b"k0") == b"v" and not db.expires
        due = int(node.engine.keyspace.clock() * 1000) - 1000
        db.merge_loaded({b"k1": b"t"}, {b"k1": due}, disjoint=True)
        assert node.get(b"k1") is None  # due: lazy expiry deletes it, as GET does
        assert b"k1" not in db.data and node.info("stats")["expired_keys"] == 1
