"""The plain lane's handled writes (SETBIT, GEOADD, XADD; kvrepl/commands/plain.py ``HANDLED``):
the lane runs their own handlers with ``call()``'s bookkeeping done per run, and must answer,
count, measure and propagate exactly as the general path does.

Replies are compared byte for byte with a real redis-server (``wire``); what only kvrepl
shows (commandstats, the memory estimate, the propagated commands) is compared with the same
requests run one by one through ``Engine.execute``.
"""

from __future__ import annotations

import pytest
import trio
from support import NOW_S, RawClient, lane_runs, pack

from kvrepl.commands.core import Engine
from kvrepl.commands.plain import HANDLED
from kvrepl.config import Config
from kvrepl.protocol.replies import encode

# Every kind of request the lane meets for these commands: new keys, unchanged and changed
# values, a string SETBIT grows, other types, errors, options, wrong arities, ID forms.
REQUESTS: list[tuple[str, ...]] = [
    ("SETBIT", "b", "7", "1"), ("SETBIT", "b", "7", "1"), ("setbit", "b", "100", "1"),
    ("SetBit", "b", "7", "0"), ("SET", "s", "abc"), ("SETBIT", "s", "1", "1"), ("GET", "s"),
    ("SETBIT", "b", "-1", "1"), ("SETBIT", "b", "x", "1"), ("SETBIT", "b", "1", "2"),
    ("SETBIT", "b", "1"), ("SETBIT", "b", "0012", "1"),
    ("GEOADD", "g", "13.361389", "38.115556", "Palermo"),
    ("GEOADD", "g", "13.361389", "38.115556", "Palermo"),
    ("geoadd", "g", "15.087269", "37.502669", "Catania"),
    ("GEOADD", "g", "1e1", "2.5e1", "sci"), ("GEOADD", "g", "200", "10", "far"),
    ("GEOADD", "g", "x", "10", "bad"), ("GEOADD", "g", "NX", "CH", "1", "2", "m", "3", "4", "n"),
    ("GEOADD", "b", "1", "2", "wrongtype"), ("GEOADD", "g", "1", "2"),
    ("GeoAdd", "g", "0", "0", "zero"),
    ("XADD", "x", "1-1", "f", "v"), ("XADD", "x", "1-1", "f", "v"), ("xadd", "x", "1-*", "f", "w"),
    ("XADD", "x", "MAXLEN", "=", "2", "5-0", "a", "b"), ("XADD", "x", "2-0", "f"),
    ("XADD", "g", "3-0", "f", "v"), ("XADD", "nomk", "NOMKSTREAM", "*", "f", "v"),
    ("XADD", "x", "9-0", "f", "v", "g", "w"), ("Xadd", "x", "0-0", "f", "v"),
    ("GEOADD", "g", "13.361389", "38.115556", "Palermo"), ("SETBIT", "b", "7", "1"),
    ("SETBIT", "g", "1", "1"), ("SETBIT", "x", "1", "1"),
]


@pytest.mark.parametrize("protocol", [2, 3])
def test_handled_writes_answer_as_redis(wire, protocol):
    wire(batch=REQUESTS, protocol=protocol)


def _run_like_a_connection(engine: Engine, session, requests: list[list[bytes]],
                           measure: bool = False) -> tuple[bytes, list[list[bytes]]]:
    """The requests as a read of a connection serves them: the lane while it takes them, the
    general path for each one it leaves. Returns the replies and the requests left.
    ``measure``: the memory estimate is read after each step (keys changed in place are
    measured at the next read: each lane run must mark its own)."""
    lane = engine.plain_lane
    out: list[bytes] = []
    left = []
    position = 0
    while position < len(requests):
        assert lane.open_for(session)
        end = lane.run(session, requests, position, out)
        if measure:
            engine.keyspace.used_memory()
        if end < len(requests):
            left.append(requests[end])
            out.append(encode(engine.execute(session, requests[end]), session.resp3))
            end += 1
            if measure:
                engine.keyspace.used_memory()
        position = end
    return b"".join(out), left


def _engine(listening: bool = True) -> tuple[Engine, list]:
    """An engine at a frozen clock, and the list its propagation lands in (none while not
    ``listening``: without a listener the lane need not follow each change)."""
    engine = Engine(Config(save=(), enable_debug_command="yes"))
    engine.keyspace.clock = lambda: NOW_S
    propagated: list = []
    if listening:
        engine.propagate_listeners.append(
            lambda db, argv, log=propagated: log.append((db, list(argv))))
    return engine, propagated


def _state(engine: Engine, propagated: list) -> tuple:
    session = engine.new_session()
    keyspace = engine.keyspace
    info = engine.execute(session, [b"INFO", b"errorstats"])
    # calls, errors, and LATENCY HISTOGRAM's count of calls
    stats = {name: (command.calls, command.failed_calls, command.rejected_calls,
                    sum(command.histogram or ()) + sum(command.histogram_tail.values()))
             for name, command in engine.table.items() if command.calls}
    return (engine.execute(session, [b"DEBUG", b"DIGEST"]), keyspace.used_memory(),
            dict(keyspace.dbs[0].sizes), keyspace.hits, keyspace.misses, engine.dirty,
            stats, info, engine.stats.commands_processed, propagated,
            [engine.execute(session, [b"OBJECT", b"ENCODING", key]) for key in (b"b", b"g", b"x")])


def test_lane_runs_handled_writes_as_the_general_path_does():
    """Replies, data (DEBUG DIGEST), the memory estimate, hits, dirty, commandstats,
    errorstats and what is propagated (GEOADD as its ZADD, XADD with the ID it chose) end
    the same whether the lane or ``Engine.execute`` ran the requests."""
    requests = [[part.encode() for part in request] for request in REQUESTS]
    requests += [[b"XADD", b"x", b"*", b"f", b"v"], [b"XADD", b"x", b"*", b"f", b"v"],
                 [b"XADD", b"auto", b"*", b"f", b"v"]]
    results = []
    for through_lane in (True, False):
        engine, propagated = _engine()
        session = engine.new_session()
        if through_lane:
            replies, left = _run_like_a_connection(engine, session, requests)
            # Only wrong arities and names spelled otherwise than upper, lower or capitalized
            assert left == [[b"SetBit", b"b", b"7", b"0"], [b"SETBIT", b"b", b"1"],
                            [b"GEOADD", b"g", b"1", b"2"], [b"GeoAdd", b"g", b"0", b"0", b"zero"],
                            [b"XADD", b"x", b"2-0", b"f"]]
        else:
            replies = b"".join(encode(engine.execute(session, argv), session.resp3)
                               for argv in requests)
        results.append((replies, session.last_command, _state(engine, propagated)))
    assert results[0] == results[1]
    propagated = results[0][2][-2]
    assert (0, [b"zadd", b"g", b"3479099956230698", b"Palermo"]) in propagated
    assert (0, [b"XADD", b"auto", b"1700000000000-0", b"f", b"v"]) in propagated
    assert (0, [b"XADD", b"x", b"1700000000000-1", b"f", b"v"]) in propagated


# Runs of one handled command as spelled (the lane runs each run's requests back to back,
# its checks done once for the run) broken in every way: an error mid-run (a wrong type, a
# bad offset or bit, a bad coordinate), a wrong arity, a key with a TTL, another spelling,
# another command, an unchanged value (nothing propagated), XADD with explicit IDs, a run
# that ends the read; SET and GET runs around them.
HANDLED_RUNS: list[tuple[str, ...]] = [
    *[("SETBIT", f"k{i}", "7", "1") for i in range(5)], ("SETBIT", "k0", "7", "1"),
    ("SETBIT", "k1", "7", "0"), ("SETBIT", "s", "1", "1"), ("SETBIT", "k2", "x", "1"),
    ("SETBIT", "k2", "1", "2"), ("SETBIT", "k3", "1"), ("SETBIT", "k4", "3", "1"),
    ("SETBIT", "ttl", "1", "1"), ("SETBIT", "k5", "1", "1"), ("setbit", "k5", "2", "1"),
    ("setbit", "k5", "3", "1"), ("SET", "a", "1"), ("SET", "b", "22"), ("set", "a", "333"),
    ("GET", "a"), ("get", "k5"), ("SETBIT", "k6", "9", "1"), ("SETBIT", "k6", "9", "1"),
    *[("GEOADD", "g", "13.361389", "38.115556", f"m{i}") for i in range(4)],
    ("GEOADD", "g", "13.361389", "38.115556", "m0"), ("GEOADD", "g", "x", "1", "bad"),
    ("GEOADD", "s", "1", "2", "wrongtype"), ("GEOADD", "g", "1", "2"),
    ("GEOADD", "g", "1", "2", "p", "3", "4", "q"), ("GEOADD", "ttl", "1", "2", "m"),
    ("GEOADD", "g", "5", "6", "r"), ("XADD", "x", "1-1", "f", "v"), ("XADD", "x", "1-2", "f", "v"),
    ("XADD", "x", "1-2", "f", "v"), ("XADD", "x", "2-1", "f", "v"), ("SETBIT", "k7", "1", "1"),
    ("SETBIT", "k8", "1", "1"), ("SETBIT", "k9", "100", "1"),
]


@pytest.mark.parametrize("listening", [True, False])
def test_runs_of_one_handled_command_are_run_as_one_by_one(listening):
    """Requests of one handled command in a row are run back to back with the checks done
    once: replies, data, the memory estimate, dirty, commandstats, errorstats, the last
    command and what is propagated end as with ``Engine.execute`` one by one, with and
    without a propagation listener (which makes the lane follow each change)."""
    requests = [[part.encode() for part in request] for request in HANDLED_RUNS]
    results = []
    for through_lane in (True, False):
        engine, propagated = _engine(listening)
        session = engine.new_session()
        for argv in ([b"SET", b"s", b"str"], [b"SETBIT", b"ttl", b"1", b"1"],
                     [b"PEXPIRE", b"ttl", b"100000"]):
            engine.execute(session, argv)
        if through_lane:
            replies, left = _run_like_a_connection(engine, session, requests)
            assert left == [[b"SETBIT", b"k3", b"1"], [b"SETBIT", b"ttl", b"1", b"1"],
                            [b"GEOADD", b"g", b"1", b"2"], [b"GEOADD", b"ttl", b"1", b"2", b"m"]]
        else:
            replies = b"".join(encode(engine.execute(session, argv), session.resp3)
                               for argv in requests)
        results.append((replies, session.last_command, _state(engine, propagated)))
    assert results[0] == results[1]
    assert results[0][0].count(b"-ERR") == 6 and results[0][0].count(b"-WRONGTYPE") == 2
    if listening:
        assert len(results[0][2][-2]) == 3 + 26  # the set-up, and each change once


# Runs that setbit_run and geoadd_run take (commands/bitmaps.py, commands/geo.py) and every
# request they must leave to the handler mid-run: SETBITs to new keys, to strings they grow,
# to a string SET stored (the same bit: a key converted, nothing changed), a bit already
# set; an offset or bit of another form, a wrong type; GEOADDs of distinct members, a member
# moved, one unchanged, coordinates float() reads otherwise than strtod or not at all, out of
# range, the point whose score is 0, a new key, a wrong type.
RUN_EDGES: list[tuple[str, ...]] = [
    ("SET", "str", "abc"), ("SETBIT", "n1", "0", "0"), ("SETBIT", "n2", "15", "1"),
    ("SETBIT", "n2", "15", "1"), ("SETBIT", "n2", "100", "0"), ("SETBIT", "str", "1", "1"),
    ("SETBIT", "str", "1", "1"), ("SETBIT", "str", "7", "1"), ("SETBIT", "str", "30", "1"),
    ("SETBIT", "n2", "+1", "1"), ("SETBIT", "n2", "1", "+1"), ("SETBIT", "n2", "1", "01"),
    ("SETBIT", "n2", "4294967296", "1"), ("SETBIT", "n3", "9", "1"),
    ("GEOADD", "geo", "13.361389", "38.115556", "Palermo"), ("SETBIT", "geo", "1", "1"),
    *[("GEOADD", "geo", f"{-179 + 7.3 * i:.6f}", f"{-80 + 3.1 * i:.6f}", f"m{i}")
      for i in range(12)],
    ("GEOADD", "geo", "15.087269", "37.502669", "Palermo"),
    ("GEOADD", "geo", "15.087269", "37.502669", "Palermo"),
    ("GEOADD", "geo", "1e1", "+2.5E1", "sci"), ("GEOADD", "geo", ".5", "5.", "dots"),
    ("GEOADD", "geo", "0", "0", "zero"), ("GEOADD", "geo", "-0", "1", "negzero"),
    ("GEOADD", "geo", "1_0", "1", "under"), ("GEOADD", "geo", " 1", "1", "blank"),
    ("GEOADD", "geo", "1", "1 ", "blank2"), ("GEOADD", "geo", "inf", "1", "inf"),
    ("GEOADD", "geo", "0x1p3", "1", "hex"), ("GEOADD", "geo", "1e-320", "1", "tiny"),
    ("GEOADD", "geo", "180.000001", "1", "far"), ("GEOADD", "geo", "1", "85.06", "north"),
    ("GEOADD", "geo", "-180", "-85.05112878", "corner"), ("GEOADD", "geo", "1", "2", "after"),
    ("GEOADD", "str", "1", "2", "wrongtype"), ("GEOADD", "geo2", "1", "2", "new"),
    ("GEOADD", "geo2", "3", "4", "next"), ("GEOADD", "geo", "5", "6", "last"),
]


@pytest.mark.parametrize("protocol", [2, 3])
def test_runs_of_setbit_and_geoadd_answer_as_redis(wire, protocol):
    wire(batch=RUN_EDGES, protocol=protocol)


@pytest.mark.parametrize("listening", [True, False])
def test_setbit_and_geoadd_runs_end_as_one_by_one(listening):
    """setbit_run and geoadd_run, and the handler taking over mid-run: replies, data, the
    memory estimate (measured after each step), dirty, commandstats, errorstats and what
    is propagated end as with ``Engine.execute`` one by one."""
    requests = [[part.encode() for part in request] for request in RUN_EDGES]
    results = []
    for through_lane in (True, False):
        engine, propagated = _engine(listening)
        session = engine.new_session()
        if through_lane:
            runs = engine.plain_lane._runs
            ran = {"setbit": 0, "geoadd": 0}
            for command, run_of in list(runs.items()):
                def counted(*args, _run=run_of, _name=command.name, _ran=ran):
                    done = _run(*args)
                    _ran[_name] += done
                    return done
                runs[command] = counted
            replies, left = _run_like_a_connection(engine, session, requests, measure=True)
            assert left == []
        else:
            replies = b"".join(encode(engine.execute(session, argv), session.resp3)
                               for argv in requests)
        ranged = engine.execute(session, [b"ZRANGE", b"geo", b"0", b"-1", b"WITHSCORES"])
        results.append((replies, session.last_command, _state(engine, propagated),
                         ranged, engine.execute(session, [b"GET", b"n2"])))
    assert results[0] == results[1]
    assert results[0][0].count(b"-ERR") == 10 and results[0][0].count(b"-WRONGTYPE") == 2
    assert ran["setbit"] == 9 and ran["geoadd"] == 20  # the rest: the handler's
    if listening:
        changes = results[0][2][-2]
        assert (0, [b"zadd", b"geo", b"0", b"corner"]) in changes
        # "abc": bits 1 and 7 are set already (the string converted, nothing changed), 30 grows it
        assert [argv for _, argv in changes if argv[1] == b"str"] == [
            [b"SET", b"str", b"abc"], [b"SETBIT", b"str", b"30", b"1"]]


def test_pipelined_handled_writes_are_routed_through_the_lane(kvrepl_server, r, monkeypatch):
    """What ``redis-benchmark`` sends of GEOADD, SETBIT and XADD goes through the lane (counted
    at the lane), replicas get what the general path propagates, and commandstats count
    each request once."""
    seen: list[list[bytes]] = []
    engine = kvrepl_server.engine
    listen = lambda db, argv: seen.append(list(argv))  # noqa: E731
    r.config_resetstat()
    routed = lane_runs(monkeypatch)
    engine.propagate_listeners.append(listen)
    try:
        client = RawClient(kvrepl_server.port)
        client.sock.sendall(b"".join(
            pack("GEOADD", "k", "13.361389", "38.115556", f"m:{i % 2}")
            + pack("SETBIT", f"key:{i % 3}", "7", "1") + pack("XADD", "s", "*", "f", "v")
            for i in range(6)))
        replies = client.read(18)
        client.close()
    finally:
        engine.propagate_listeners.remove(listen)
    assert sum(routed) == 18
    assert replies.startswith(b":1\r\n:0\r\n$")
    # GEOADD: two new members, then none; SETBIT: the old bit, 0 for each key's first
    assert replies.count(b":0\r\n") == 4 + 3 and replies.count(b":1\r\n") == 2 + 3
    assert [argv[0] for argv in seen] == ([b"zadd", b"SETBIT", b"XADD"] * 2 + [b"SETBIT"]
                                          + [b"XADD"] * 4)
    assert seen[0] == [b"zadd", b"k", b"3479099956230698", b"m:0"]
    ids = [argv[2] for argv in seen if argv[0] == b"XADD"]
    assert len(set(ids)) == 6 and all(b"-" in i and i != b"*" for i in ids)
    stats = r.info("commandstats")
    assert {name: stats[f"cmdstat_{name}"]["calls"] for name in HANDLED} == {
        "setbit": 6, "geoadd": 6, "xadd": 6}
    assert r.xlen("s") == 6


def test_keyspace_events_of_handled_writes_in_the_lane(kvrepl_server, r, configure):
    """Their events (classes the lane does not gate: the handlers fire them) still reach
    subscribers when the requests run in the lane."""
    configure("notify-keyspace-events", "KEz")
    listener = RawClient(kvrepl_server.port)
    listener.call("PSUBSCRIBE", "__key*__:*")
    client = RawClient(kvrepl_server.port)

    def lane_open() -> bool:
        # On the server's thread, and the session closed after: one made from the test's
        # thread raced the server's cron over the sessions, and stayed in the shared
        # server's CLIENT LIST (cmd=NULL) for every later test.
        engine = kvrepl_server.engine
        session = engine.new_session()
        try:
            return engine.plain_lane.open_for(session)
        finally:
            engine.close_session(session)

    assert trio.from_thread.run_sync(lane_open, trio_token=kvrepl_server._token)
    client.sock.sendall(pack("GEOADD", "geo", "1", "2", "a") + pack("XADD", "st", "1-1", "f", "v")
                        + pack("GEOADD", "geo", "1", "2", "a"))
    assert client.read(3) == b":1\r\n$3\r\n1-1\r\n:0\r\n"
    events = listener.read(2)
    assert b"__keyspace@0__:geo\r\n$4\r\nzadd" in events
    assert b"__keyevent@0__:zadd\r\n$3\r\ngeo" in events
    client.close()
    listener.close()


def test_restricted_users_and_keys_with_a_ttl_leave_handled_writes_to_the_general_path():
    engine = Engine(Config(save=()))
    admin = engine.new_session()
    for argv in ([b"ACL", b"SETUSER", b"u", b"on", b"nopass", b"~g*", b"+@all"],
                 [b"SET", b"t", b"v", b"EX", b"100"]):
        assert not isinstance(engine.execute(admin, argv), Exception)
    user = engine.new_session()
    assert not isinstance(engine.execute(user, [b"AUTH", b"u", b"any"]), Exception)
    geoadd = [[b"GEOADD", b"g", b"1", b"2", b"m"]]
    lane = engine.plain_lane
    assert lane.open_for(user) and lane.run(user, geoadd, 0, []) == 0
    assert lane.run(admin, [[b"SETBIT", b"t", b"1", b"1"]], 0, []) == 0
    out: list[bytes] = []
    assert lane.run(admin, geoadd, 0, out) == 1 and out == [b":1\r\n"]


def test_every_handled_command_keeps_the_lane_rules():
    """Each handled command touches its first key only (the one the lane checks for a TTL)
    and is a write that may run in the lane."""
    engine = Engine(Config(save=()))
    for name in HANDLED:
        command = engine.table[name.encode()]
        assert command.is_write and command.spec.key_specs
        assert not command.remeasures or command.remeasures_first


async def test_handled_writes_reach_the_stream_and_replicas_as_the_general_path_sends_them():
    """A read of handled writes, one of each (SETBIT, GEOADD, XADD *, an unchanged GEOADD):
    the replication stream carries exactly what the general path propagates (GEOADD as its
    ZADD, XADD with its ID, nothing for the write that changed nothing) and the replica ends
    with the master's data."""

    import kvrepl
    from kvrepl.replication.master import encode_commands

    async with kvrepl.Master(port=0) as master, kvrepl.Replica(follow=master) as replica:
        await replica.wait_synced()
        replication = master.replication
        stream = await trio.open_tcp_stream("127.0.0.1", master.port)
        before = replication.master_repl_offset
        await stream.send_all(pack("SETBIT", "b", "9", "1")
                              + pack("GEOADD", "g", "13.361389", "38.115556", "p")
                              + pack("XADD", "x", "*", "f", "v")
                              + pack("GEOADD", "g", "13.361389", "38.115556", "p"))
        answer = b""
        while answer.count(b"\r\n") < 5:
            answer += await stream.receive_some(4096)
        assert answer.startswith(b":0\r\n:1\r\n$") and answer.endswith(b"\r\n:0\r\n")
        entry_id = answer.split(b"\r\n")[3]
        tail = replication.backlog.read_from(before + 1)
        written = encode_commands([[b"SETBIT", b"b", b"9", b"1"],
                                   [b"zadd", b"g", b"3479099956230698", b"p"],
                                   [b"XADD", b"x", entry_id, b"f", b"v"]])
        assert tail.endswith(written) and tail[:-len(written)] in (b"", _SELECT_0)
        await stream.aclose()
        await replica.wait_synced()
        digest = [b"DEBUG", b"DIGEST-VALUE", b"b", b"g", b"x"]
        ours = master.engine.execute(master.engine.new_session(), digest)
        assert isinstance(ours, list) and len(set(ours)) == 3, ours
        assert replica.engine.execute(replica.engine.new_session(), digest) == ours


_SELECT_0 = b"*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n"


def test_handled_writes_keep_the_general_lane_when_the_plain_lane_is_closed(monkeypatch):
    """A read starting with a handled write goes to the general lane, which hands runs of
    them to the plain lane while it is open, and calls them itself while it is closed (a
    blocked client, WATCH, a snapshot...), never leaving them to the slower Engine.execute."""
    from kvrepl.commands.dispatch import GeneralLane

    taken = lane_runs(monkeypatch)
    engine = Engine(Config(save=()))
    session = engine.new_session()
    general = GeneralLane(engine)
    requests = [[b"SETBIT", b"b", b"7", b"1"], [b"GEOADD", b"g", b"1", b"2", b"m"],
                [b"INCR", b"n"], [b"XADD", b"x", b"1-1", b"f", b"v"], [b"GET", b"n"]]
    replies = []
    for closed in (False, True):
        engine.execute(session, [b"FLUSHALL"])
        engine.keyspace.gates.set("a test's", closed)
        out: list[bytes] = []
        assert general.run(session, requests, 0, out) == (len(requests), None, None)
        replies.append(b"".join(out))
    assert taken == [2, 2]  # SETBIT and GEOADD, then XADD and GET; nothing while closed
    assert replies[0] == replies[1] == b":0\r\n:1\r\n:1\r\n$3\r\n1-1\r\n$1\r\n1\r\n"


def _xadds(key: str, n: int, *fields: str) -> list[tuple[str, ...]]:
    return [("XADD", key, "*", *(fields or ("f", "v")))] * n


# Runs of XADD key * (the lane adds them together, kvrepl/commands/streams.py xadd_run)
# broken by every kind of request: a new key (the handler makes the stream), other keys and
# forms, names spelled otherwise, wrong arities, a string key, an emptied stream, an element
# too large (here above 100 bytes) in mid-run, the last ID near 64 bits' end.
XADD_RUNS: list[tuple[str, ...]] = [
    *_xadds("r", 7), *_xadds("r", 3, "a", "1", "b", "2"), *_xadds("r", 2, "a", "1"),
    ("XADD", "o", "*", "f", "v"), *_xadds("r", 4), ("xadd", "r", "*", "f", "v"),
    ("XAdd", "r", "*", "f", "v"), *_xadds("r", 2), ("XADD", "r", "*", "f"),
    *_xadds("r", 3), ("XADD", "r", "*", "f", "x" * 120), *_xadds("r", 40, "g", "w" * 30),
    *_xadds("r", 2, "f", "x" * 120), *_xadds("r", 2, "f", "v", "x", "y" * 120),
    ("SET", "str", "v"), *_xadds("str", 2), ("XTRIM", "r", "MAXLEN", "0"), *_xadds("r", 5),
    ("XADD", "r", "99999999999999-18446744073709551610", "f", "v"), *_xadds("r", 8),
    ("XDEL", "r", "99999999999999-18446744073709551613"), *_xadds("r", 3),
]


@pytest.mark.parametrize("limits", [("4096", "100"), ("100", "3"), ("0", "0")])
def test_runs_of_xadd_are_added_as_one_by_one(monkeypatch, limits):
    """A run of ``XADD key * ...`` requests the lane adds together ends as the same requests
    run one by one through ``Engine.execute`` (at the same clock): replies, data, the
    node shape (XINFO STREAM FULL), the memory estimate, dirty, commandstats, errorstats,
    what is propagated (each with its ID) and the keyspace events."""
    import kvrepl.commands.streams as streams

    monkeypatch.setattr(streams, "LISTPACK_MAX_SIZE", 100)
    requests = [[part.encode() for part in request] for request in XADD_RUNS]
    taken = lane_runs(monkeypatch)
    results = []
    for through_lane in (True, False):
        engine = Engine(Config(save=(), enable_debug_command="yes",
                               notify_keyspace_events="Et", stream_node_max_bytes=limits[0],
                               stream_node_max_entries=limits[1]))
        engine.keyspace.clock = lambda: NOW_S
        events: list = []
        monkeypatch.setattr(engine, "notify_keyspace_event",
                            lambda *event, log=events: log.append(event))
        propagated: list = []
        engine.propagate_listeners.append(
            lambda db, argv, log=propagated: log.append((db, list(argv))))
        session = engine.new_session()
        if through_lane:
            replies, _ = _run_like_a_connection(engine, session, requests, measure=True)
        else:
            replies = b"".join(encode(engine.execute(session, argv), session.resp3)
                               for argv in requests)
        full = engine.execute(session, [b"XINFO", b"STREAM", b"r", b"FULL"])
        results.append((replies, full, events, _state(engine, propagated)))
    assert max(taken) >= 40  # the run of 40 went through the lane in one piece
    assert results[0] == results[1]
    replies = results[0][0]
    assert replies.count(b"-ERR Elements are too large") == 5
    assert b"\n99999999999999-18446744073709551615\r\n$17\r\n100000000000000-0\r\n" in replies
    assert (0, [b"XADD", b"r", b"1700000000000-7", b"a", b"1", b"b", b"2"]) in results[0][3][-2]


@pytest.mark.parametrize("values", [[b"1-0"], [b"5-8", b"5-9", b"5-10", b"5-11"],
                                    [b"", b"x" * 5000, b"y"]])
@pytest.mark.parametrize("argv", [[b"XADD", b"k", b"*", b"f", b"v"],
                                  [b"xadd", b"k" * 300, b"*", b"a", b"", b"b", b"2" * 70]])
def test_a_runs_propagation_encodes_as_each_command_alone(argv, values):
    """encode_each_with (an XADD run's propagated commands, encoded at once) gives the
    bytes encode_commands gives for the commands written out one by one."""
    from kvrepl.replication.stream import encode_commands, encode_each_with

    commands = [[*argv[:2], value, *argv[3:]] for value in values]
    assert encode_each_with(argv, 2, values) == encode_commands(commands)


async def test_runs_of_xadd_reach_the_stream_and_replicas_with_their_ids(monkeypatch):
    """Reads of XADD key * (one that makes the stream; the same request over and over, IDs
    of two lengths, encoded together; requests that differ) put in the replication stream
    each XADD with the ID it chose, in order, and the replica ends with the master's
    stream."""

    import kvrepl
    from kvrepl.replication import master as master_module

    encode_commands = master_module.encode_commands
    encoded: list[int] = []  # the runs encoded command by command
    monkeypatch.setattr(master_module, "encode_commands",
                        lambda commands: encoded.append(len(commands)) or encode_commands(commands))
    async with kvrepl.Master(port=0) as master, kvrepl.Replica(follow=master) as replica:
        await replica.wait_synced()
        master.engine.keyspace.clock = lambda: NOW_S  # one millisecond: IDs -0 to -N
        replication = master.replication
        stream = await trio.open_tcp_stream("127.0.0.1", master.port)
        for read in ([["XADD", "x", "*", "f", "v"]], [["XADD", "x", "*", "f", "v"]] * 12,
                     [["XADD", "x", "*", "f", "v"], ["xadd", "x", "*", "f", "w"],
                      ["XADD", "x", "*", "f", "w", "g", "z"]]):
            before = replication.master_repl_offset
            await stream.send_all(b"".join(pack(*request) for request in read))
            answer = b""
            while answer.count(b"\r\n") < 2 * len(read):
                answer += await stream.receive_some(4096)
            ids = answer.split(b"\r\n")[1::2]
            written = encode_commands([[request[0].encode(), b"x", new_id,
                                        *(part.encode() for part in request[3:])]
                                       for request, new_id in zip(read, ids, strict=True)])
            tail = replication.backlog.read_from(before + 1)
            assert tail.endswith(written) and tail[:-len(written)] in (b"", _SELECT_0)
        assert ids[-1] == b"%d-15" % (NOW_S * 1000)
        assert encoded == [1, 3]  # the first XADD and the last read alone; the twelve in one
        await stream.aclose()
        await replica.wait_synced()
        digest = [b"DEBUG", b"DIGEST-VALUE", b"x"]
        ours = master.engine.execute(master.engine.new_session(), digest)
        assert replica.engine.execute(replica.engine.new_session(), digest) == ours


def test_a_snapshot_taken_before_a_run_of_xadd_does_not_see_it():
    """While a snapshot is open the plain lane is closed and the general lane runs each XADD
    through the handler (the snapshot's copy-on-write sees each write first); once it is
    closed, runs go through the lane again."""
    from kvrepl.commands.dispatch import GeneralLane
    from kvrepl.store.snapshot import KeyspaceView

    engine = Engine(Config(save=()))
    session = engine.new_session()
    general = GeneralLane(engine)
    read = [[b"XADD", b"s", b"*", b"f", b"v"]] * 16
    assert general.run(session, read[:2], 0, [])[0] == 2
    view = KeyspaceView(engine.keyspace)
    assert not engine.plain_lane.open_for(session)
    assert general.run(session, read, 0, [])[0] == 16
    (value,) = [value for batch in view.entries() for _, key, value, _ in batch if key == b"s"]
    assert len(value) == 2 and len(engine.keyspace.dbs[0].data[b"s"]) == 18
    view.close()
    assert engine.plain_lane.run(session, read, 0, []) == 16
    assert len(value) == 2 and len(engine.keyspace.dbs[0].data[b"s"]) == 34


async def test_runs_of_distinct_xadds_leave_a_redis_replica_with_the_same_nodes(monkeypatch):
    """Reads of ``XADD key * ...`` with distinct values (one field, three, field counts that
    change, integers, long values) through the lane, into nodes that close on
    stream-node-max-bytes and -entries: a real redis-server replica, which lays out its own
    nodes from the propagated XADDs, ends with the same XINFO STREAM FULL (node count,
    entries) and the same DEBUG DIGEST-VALUE as the kvrepl master."""
    import random
    import socket

    import redis
    from support import RedisServer, poll, raw_replies

    import kvrepl

    taken = lane_runs(monkeypatch)
    rng = random.Random(7)

    def entry(i: int) -> tuple[object, ...]:
        value = rng.choice([b"%012d" % rng.randrange(10**6), b"%d" % rng.randrange(-5000, 10**6),
                            b"v" * rng.randrange(0, 90), b"0", b"-0", b"x\0%d" % i])
        shape = i // 40 % 3
        if shape == 0:
            return ("f", value)
        if shape == 1:
            return ("user", b"u:%d" % i, "score", value, "at", b"1700000000%d" % i)
        return tuple(x for k in range(1 + i % 4) for x in (f"k{k}", value))

    limits = {"stream_node_max_bytes": 300, "stream_node_max_entries": 9}
    async with kvrepl.Master(port=0, repl_diskless_sync_delay=0, enable_debug_command="yes",
                             **limits) as master:
        replica = RedisServer("--enable-debug-command", "yes", "--stream-node-max-bytes", "300",
                              "--stream-node-max-entries", "9", "--replicaof", "127.0.0.1",
                              str(master.port))
        try:
            def run() -> None:  # in a thread: the master serves on this loop
                follower = raw_replies(replica.client())
                poll(lambda: b"master_link_status:up" in follower.execute_command(
                    "INFO", "replication"), "the replica is up")
                with socket.create_connection(("127.0.0.1", master.port)) as sock:
                    reads = [[pack("XADD", key, "*", *entry(i)) for i in range(start, start + 32)]
                             for start in range(0, 480, 32) for key in ("a", "b")]
                    for read in reads:
                        sock.sendall(b"".join(read))
                        answer = b""
                        while answer.count(b"\r\n") < 2 * len(read):
                            answer += sock.recv(65536)
                offset = int(redis.Redis(port=master.port).info("replication")[
                    "master_repl_offset"])
                ours = raw_replies(redis.Redis(port=master.port))
                poll(lambda: b"slave_repl_offset:%d" % offset in follower.execute_command(
                    "INFO", "replication"), "the replica caught up")
                for key in ("a", "b"):
                    assert follower.execute_command("DEBUG", "DIGEST-VALUE", key) == \
                        ours.execute_command("DEBUG", "DIGEST-VALUE", key)
                    full = [ours.execute_command("XINFO", "STREAM", key, "FULL"),
                            follower.execute_command("XINFO", "STREAM", key, "FULL")]
                    assert full[0] == full[1]
                    assert full[0][b"radix-tree-keys"] > 480 / 9
                ours.close()
                follower.close()

            await trio.to_thread.run_sync(run)
        finally:
            replica.stop()
    assert max(taken) >= 32  # whole reads went through the lane
