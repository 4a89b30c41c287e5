"""A shard link's runs of plain SETs take the plain lane (``ShardLink.lane_run_of``) only
where ``_admit`` would have let them through unchanged: the same streams applied with the
lane and with every command through ``_admit`` and the general path end with the same
keyspace, memory estimate, ownership records and counters. A shard's full sync
(``_load_target``) measures only the keys it loads, as a full recount would."""

from __future__ import annotations

from binascii import crc_hqx
from typing import NoReturn

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from kvrepl.errors import ReplyError
from kvrepl.node import Node
from kvrepl.rdb import LoadResult, RdbError, StagedLoad
from kvrepl.rdb.writer import dumps
from kvrepl.replication.cluster import Cluster, ClusterFollower, ShardLink
from kvrepl.replication.handshake import PayloadData, PayloadEnd, PayloadStart, StreamBatch
from kvrepl.replication.replica import PAYLOAD_RECEIVE_SIZE
from kvrepl.replication.stream import encode_command
from kvrepl.replication.topology import SLOTS, Shard, key_slot, keys_in_slots, slot_table
from kvrepl.store.database import Keyspace

HALF = SLOTS // 2


def _shard(name: str, slots: tuple[tuple[int, int], ...]) -> Shard:
    return Shard(primary=name, host="127.0.0.1", port=1, slots=slots,
                 members=frozenset({name}), addresses=())


def _key(prefix: str, low: bool, skip: int = 0) -> bytes:
    """A key (``skip``-th of its kind) whose slot is in the low or the high half."""
    found = 0
    for i in range(100_000):
        key = f"{prefix}:{i}".encode()
        if (key_slot(key) < HALF) == low:
            if found == skip:
                return key
            found += 1
    raise AssertionError("no such key")


class Follower:
    """A follower that is not running, shard A owning the low half of the slots and B the
    high half; whole batches of stream are applied through the links' real apply path."""

    def __init__(self, lane: bool) -> None:
        self.node = Node()
        self.follower = ClusterFollower(self.node.engine, Cluster([("127.0.0.1", 1)]),
                                        None)  # type: ignore[arg-type]
        self.a = ShardLink(self.follower, _shard("A", ((0, HALF - 1),)))
        self.b = ShardLink(self.follower, _shard("B", ((HALF, SLOTS - 1),)))
        self.follower.links = [self.a, self.b]
        self.follower.ownership.set_owners(self.follower.links)
        self.lane_runs = 0
        for link in (self.a, self.b):
            if lane:
                self._count_runs(link)
            else:
                link.lane_run = None  # every command through _admit, the general way

    def _count_runs(self, link: ShardLink) -> None:
        run_of = link.lane_run_of

        def counted(argvs: list[list[bytes]], start: int) -> int:
            end = run_of(argvs, start)
            self.lane_runs += end > start
            return end

        link.lane_run = counted

    def feed(self, link: ShardLink, *commands: list[bytes]) -> None:
        argvs = [list(argv) for argv in commands]
        raw = b"".join(encode_command(argv) for argv in argvs)
        link._apply_batch(StreamBatch(argvs, None, raw))
        assert not link.session.error_log, link.session.error_log

    def flip(self, key: bytes) -> None:
        """The follower reads a layout where ``key``'s slot (A's) is B's."""
        slot = key_slot(key)
        self.a.shard = _shard("A", tuple(r for r in ((0, slot - 1), (slot + 1, HALF - 1))
                                         if r[0] <= r[1]))
        self.b.shard = _shard("B", ((slot, slot), (HALF, SLOTS - 1)))
        self.follower.ownership.set_owners(self.follower.links)

    def state(self) -> tuple:
        db = self.node.engine.keyspace.dbs[0]
        db.measure_stale()
        ownership = self.follower.ownership
        def named(records: dict) -> dict:
            return {key: link.shard.primary for key, link in records.items()}

        return (dict(db.data), dict(db.expires), db.used, named(ownership.taken),
                named(ownership.left), self.a.superseded, self.b.superseded, self.a.reploff,
                self.b.reploff, self.node.engine.dirty)


def _scenario(follower: Follower) -> tuple:
    a1, a2, a3 = (_key("a", True, n) for n in range(3))
    b1, b2 = _key("b", False), _key("b", False, 1)
    tagged_a = b"{" + _key("t", True) + b"}:x"
    listed = _key("l", True)
    f = follower
    # Runs of A's own SETs, broken by a key of B's slots, a hash tag, a TTL, a non-SET, a
    # key holding another type, and B's keys written by A (taken, as _admit records).
    f.feed(f.a, [b"SET", a1, b"1"], [b"SET", a2, b"2"], [b"set", tagged_a, b"t"],
           [b"SET", b1, b"from-a"], [b"SET", a3, b"3"], [b"SET", a1, b"1b", b"EX", b"100"],
           [b"RPUSH", listed, b"x"], [b"SET", a2, b"2b"], [b"SET", listed, b"now-a-string"],
           [b"DEL", a3], [b"SET", a3, b"3b"])
    f.feed(f.b, [b"SET", b2, b"b2"], [b"SET", b1, b"from-b"], [b"SET", a2, b"from-b"])
    # A slot moves (A -> B): A's later SETs to the key it gave away are superseded, while
    # A's other keys keep going (the general path then: something is moving).
    f.flip(a1)
    f.feed(f.b, [b"SET", a1, b"b-now"])
    f.feed(f.a, [b"SET", a1, b"stale"], [b"SET", a3, b"3c"], [b"SET", a2, b"2c"])
    f.feed(f.b, [b"SET", b2, b"b2b"], [b"SET", b1, b"b1b"])
    return f.state()


def test_the_lane_and_the_general_path_give_the_same_keyspace_and_records() -> None:
    laned, general = Follower(lane=True), Follower(lane=False)
    assert _scenario(laned) == _scenario(general)
    assert laned.lane_runs > 0  # the lane did apply some runs
    assert general.lane_runs == 0
    state = laned.state()
    assert state[3] and state[5]  # some keys were taken, A's stale SET superseded


def test_a_lane_run_follows_the_layout_read_last_and_hash_tags() -> None:
    """The run ends at the first key whose slot (its hash tag's, when it has one) is not
    the link's in the layout read last, however many layouts came before."""
    f = Follower(lane=True)
    key = _key("m", True)  # of A's slots, not held here: no record when its slot moves
    tag = _key("t", True)
    tagged = next(k for k in (b"{%s}:%d" % (tag, i) for i in range(1000))
                  if crc_hqx(k, 0) % SLOTS >= HALF)
    assert key_slot(tagged) < HALF  # the tag's slot is A's; the whole key's CRC is B's
    run = [[b"SET", key, b"1"], [b"SET", tagged, b"t"]]
    assert f.a.lane_run_of(run, 0) == 2
    assert f.b.lane_run_of(run, 0) == 0
    f.flip(key)
    assert not f.follower.ownership.moving
    assert f.a.lane_run_of(run, 0) == 0
    assert f.a.lane_run_of(run, 1) == 2
    assert f.b.lane_run_of(run, 0) == 1


class _Unwalkable(dict):
    """A db's dict that fails the test when anything walks its keys."""

    def __iter__(self) -> NoReturn:
        raise AssertionError("the keys were walked")

    def keys(self) -> NoReturn:  # type: ignore[override]
        raise AssertionError("the keys were walked")


def test_reading_the_same_layout_again_walks_no_key() -> None:
    """The periodic layout read finds no slot moved: it must not look at every key (a
    walk of a million keys stalls the links' streams ~90 ms)."""
    f = Follower(lane=True)
    f.feed(f.a, *([b"SET", _key("a", True, n), b"1"] for n in range(5)))
    f.feed(f.b, *([b"SET", _key("b", False, n), b"1"] for n in range(5)))
    db = f.node.engine.keyspace.dbs[0]
    db.data = _Unwalkable(db.data)
    f.a.shard = _shard("A", ((0, HALF - 1),))  # the same layout, read again
    f.b.shard = _shard("B", ((HALF, SLOTS - 1),))
    f.follower.ownership.set_owners(f.follower.links)
    assert not f.follower.ownership.moving
    assert len(db.data) == 10


def test_with_a_changes_stream_the_lane_runs_and_each_change_names_its_shard() -> None:
    """A ``changes()`` stream gets the same changes, each with the shard and slot it came
    from, whether runs of SETs took the lane or the general path."""
    seen = {}
    for lane in (True, False):
        follower = Follower(lane)
        follower.node.cluster_follower = follower.follower  # changes() name the shard
        stream = follower.node.changes()
        _scenario(follower)
        got = []
        while True:
            try:
                got.append(stream._receive.receive_nowait())
            except trio.WouldBlock:
                break
        # A relative TTL propagates as PXAT of the clock at the time: not compared.
        seen[lane] = [change[:2] + (tuple(b"<time>" if a[:1].isdigit() and i and
                                          change.args[i - 1].upper() == b"PXAT" else a
                                          for i, a in enumerate(change.args)),) + change[3:]
                      for change in got]
        assert (follower.lane_runs > 0) == lane
    assert seen[True] == seen[False]
    sets = [change for change in seen[True] if change[1].upper() == b"SET"]
    assert len(sets) > 10
    for _, _, args, primary, slot in sets:
        assert primary in ("A", "B") and slot == key_slot(args[0])


def _load(link: ShardLink, strings: dict[bytes, bytes], others: dict[bytes, object],
          expires: dict[bytes, int]) -> None:
    """A full sync of ``link`` from a snapshot of these keys (as an RDB, parsed as a
    link parses its payload)."""
    snapshot = Keyspace(1)
    snapshot.dbs[0].data.update({**strings, **others})
    snapshot.dbs[0].expires.update(expires)
    staged = StagedLoad(1, drop_expired=False, now_ms=0)
    staged.feed(dumps(snapshot))
    link._load_target(staged, staged.finish())


def test_a_shard_full_sync_measures_what_a_recount_would_and_records_foreign_keys() -> None:
    follower = Follower(lane=True)
    db = follower.node.engine.keyspace.dbs[0]
    scratch = Node()
    scratch.execute_command("RPUSH", b"l", b"x", b"y")
    listed = scratch.engine.keyspace.dbs[0].data[b"l"]
    a_keys = [_key("a", True, n) for n in range(5)]
    b_keys = [_key("b", False, n) for n in range(5)]
    tagged_b = b"{" + _key("t", False) + b"}:y"

    def measured_right() -> None:
        used = db.used
        db.recount()
        assert db.used == used

    _load(follower.b, {k: b"b" * 10 for k in b_keys}, {}, {b_keys[0]: 10**13})
    measured_right()
    # A's snapshot holds a key of B's slots (B's copy and its TTL are replaced, A takes
    # it), a hash-tagged key of B's slots, a list and a TTL.
    _load(follower.a, {**{k: b"a" * 7 for k in a_keys}, b_keys[0]: b"from-a",
                       tagged_b: b"t"}, {a_keys[4]: listed}, {a_keys[1]: 10**13})
    measured_right()
    assert db.data[b_keys[0]] == b"from-a" and b_keys[0] not in db.expires
    ownership = follower.follower.ownership
    assert ownership.taken == {b_keys[0]: follower.a, tagged_b: follower.a}
    # A full sync again: A's keys (the ones it took too) are replaced by its new snapshot.
    _load(follower.a, {a_keys[0]: b"again"}, {}, {})
    measured_right()
    assert sorted(db.data) == sorted([a_keys[0], *b_keys[1:]])
    assert not ownership.taken


def _payload_events(blob: bytes) -> list[object]:
    """``blob`` as a link's protocol hands a payload over: 64 KiB pieces between the two."""
    pieces = [PayloadData(blob[at:at + PAYLOAD_RECEIVE_SIZE])
              for at in range(0, len(blob), PAYLOAD_RECEIVE_SIZE)]
    return [PayloadStart(len(blob)), *pieces, PayloadEnd()]


async def _handle(link: ShardLink, events: list[object]) -> None:
    """``link`` handles ``events`` as received; the ACK after a loaded payload goes nowhere."""
    await link._handle(events, trio.testing.MemorySendStream())  # type: ignore[arg-type]


@pytest.mark.parametrize("damage", ["crc", "type"])
async def test_a_held_payload_is_checked_whole_and_a_bad_one_changes_nothing(
        damage: str) -> None:
    """A link parses its payload 1 MiB at a time (ShardLink.payload_hold), not as each
    piece comes: it loads the same keys, and a damaged payload (a bad CRC at its end, or
    a bad type byte inside the first held MiB) still fails the sync with the parser's error,
    leaving what the follower holds as it was."""
    follower = Follower(lane=True)
    db = follower.node.engine.keyspace.dbs[0]
    a_keys = {_key("a", True, n): b"kept" for n in range(3)}
    _load(follower.a, a_keys, {}, {})
    snapshot = Keyspace(1)
    b_keys = {k: b"v" * 20 for k in (b"b:%d" % i for i in range(160_000))
              if key_slot(k) >= HALF}
    snapshot.dbs[0].data.update(b_keys)
    blob = dumps(snapshot)
    assert len(blob) > 2 * ShardLink.payload_hold  # held twice, and a rest for the end
    await _handle(follower.b, _payload_events(blob))
    assert db.data == {**a_keys, **b_keys}

    follower = Follower(lane=True)
    db = follower.node.engine.keyspace.dbs[0]
    _load(follower.a, a_keys, {}, {})
    bad = bytearray(blob)
    if damage == "crc":
        bad[-1] ^= 1
        events = _payload_events(bytes(bad))
        message = "RDB CRC error"
    else:
        bad[blob.index(b"b:", 1 << 19) - 2] = 0x66  # a record's type byte: no such type
        # Only the first 1 MiB and a piece: the error comes when the held MiB is parsed.
        events = _payload_events(bytes(bad))[:2 + ShardLink.payload_hold
                                             // PAYLOAD_RECEIVE_SIZE]
        message = "unknown RDB object type 102 at offset"
    with pytest.raises(RdbError, match=message):
        await _handle(follower.b, events)
    assert db.data == a_keys
    assert db.used == _measured(a_keys)


def _measured(data: dict[bytes, bytes]) -> int:
    scratch = Keyspace(1)
    scratch.dbs[0].data = dict(data)
    scratch.dbs[0].recount()
    return scratch.dbs[0].used


@pytest.mark.parametrize("mixed", [False, True])
def test_deleting_a_shards_keys_at_once_does_what_a_delete_per_key_does(mixed: bool) -> None:
    """``Database.delete_keys`` (a shard's keys before its full sync replaces them): the
    same keyspace, TTLs, access times and memory estimate as ``delete`` of each key,
    missing keys and (``mixed``) non-string values included."""
    dbs = []
    for _ in range(2):
        node = Node()
        # One LRU clock for both nodes: made a second apart, they would record different
        # access times for the same writes.
        node.engine.keyspace.set_lru_clock(1_000_000)
        for n in range(50):
            node.execute_command("SET", f"s{n}", "v" * n)
        node.execute_command("SET", "ttl", "x", "EX", "100")
        if mixed:
            node.execute_command("RPUSH", "list", "a", "b")
            node.execute_command("HSET", "hash", "f", "v")
            node.execute_command("XADD", "stream", "*", "f", "v")
            node.execute_command("EXPIRE", "list", "100")
        dbs.append(node.engine.keyspace.dbs[0])
    doomed = [f"s{n}".encode() for n in range(0, 50, 2)] + [b"ttl", b"missing", b"list",
                                                            b"stream"]
    bulk, single = dbs
    for db in dbs:
        db.measure_stale()  # the containers' sizes as a recount finds them
    assert bulk.delete_keys(list(doomed)) == len(doomed) - 1 - 2 * (not mixed)
    for key in doomed:
        single.delete(key)
    assert (bulk.data, bulk.expires, bulk.access, bulk.used, bulk.sizes) == \
        (single.data, single.expires, single.access, single.used, single.sizes)
    used = bulk.used
    bulk.recount()
    assert bulk.used == used


def test_a_first_sync_replaces_keys_a_retired_shard_left_to_its_slots_owner() -> None:
    """A link that never loaded may still hold keys: those a retired shard held in its slots
    (they became the slots' owner's). Its first snapshot replaces them, measured right (a
    key it lacks is gone); a first snapshot of its own slots' keys only, with nothing left
    to it, merges without searching (and measures right too)."""
    follower = Follower(lane=True)
    db = follower.node.engine.keyspace.dbs[0]
    a_keys = [_key("a", True, n) for n in range(3)]
    b_keys = [_key("b", False, n) for n in range(3)]

    def measured_right() -> None:
        used = db.used
        db.recount()
        assert db.used == used

    _load(follower.b, {k: b"b" * 10 for k in b_keys}, {}, {})
    # B writes a key of A's slots (B takes it), then B retires and is dropped: the key is
    # A's now, although A never loaded.
    lacking = _key("a-lacks", True)
    follower.feed(follower.b, [b"SET", a_keys[0], b"from-b" * 20])
    follower.feed(follower.b, [b"SET", lacking, b"from-b"])
    cluster = follower.follower
    cluster.retiring.append(follower.b)
    cluster.drop(follower.b)
    assert not cluster.ownership.moving
    _load(follower.a, {k: b"a" * 7 for k in a_keys}, {}, {a_keys[0]: 10**13})
    measured_right()
    assert db.data[a_keys[0]] == b"a" * 7 and db.expires[a_keys[0]] == 10**13
    assert lacking not in db.data
    # Without anything released: a new follower, B loads, then A's first snapshot.
    clean = Follower(lane=True)
    db = clean.node.engine.keyspace.dbs[0]
    _load(clean.b, {k: b"b" * 10 for k in b_keys}, {}, {})
    _load(clean.a, {k: b"a" * 7 for k in a_keys}, {}, {})
    measured_right()
    assert sorted(db.data) == sorted(a_keys + b_keys)


def test_a_layout_where_no_primary_serves_a_shards_slots_keeps_its_link() -> None:
    """One node's view in the middle of a failover may list no primary for a shard's
    slots: the shard's link (and its history) stays until a layout says who serves them;
    one whose slots went to another primary is retired."""
    follower = Follower(lane=False)
    cluster = follower.follower
    cluster.apply([_shard("B", ((HALF, SLOTS - 1),))])
    assert cluster.links == [follower.b, follower.a] and not cluster.retiring
    assert cluster.ownership.owner[0] is follower.a
    cluster.apply([_shard("B", ((0, SLOTS - 1),))])
    assert cluster.links == [follower.b] and follower.a.retiring
    assert cluster.ownership.owner[0] is follower.b


@given(st.lists(st.binary(max_size=12).map(
    lambda key: key.replace(b"|", b"{").replace(b"~", b"}")),
                max_size=40), st.sets(st.integers(0, SLOTS - 1)), st.booleans())
@settings(max_examples=300, deadline=None)
def test_keys_in_slots_agrees_with_key_slot(keys: list[bytes], extra: set[int],
                                            with_keys: bool) -> None:
    """``keys_in_slots`` (a shard's full sync and a layout change sort keys with it) finds
    exactly the keys ``key_slot`` puts in the flagged slots, hash tags included."""
    flagged = extra | ({key_slot(key) for key in keys} if with_keys else set())
    flags = [slot in flagged for slot in range(SLOTS)]
    assert keys_in_slots(keys, slot_table(flags)) == [k for k in keys if flags[key_slot(k)]]
    unflagged = slot_table([not flag for flag in flags])
    assert keys_in_slots(keys, unflagged) == [k for k in keys if not flags[key_slot(k)]]


def test_info_replication_and_role_show_a_follower_as_a_replica_of_its_shards() -> None:
    """role:slave; the first shard's primary and offsets; the link up only while every
    shard's is; ROLE says the same."""
    follower = Follower(lane=True)
    node = follower.node
    node.cluster_follower = follower.follower

    def info() -> dict:
        return node.info("replication")

    assert info()["role"] == "slave"
    assert (info()["master_host"], info()["master_port"]) == ("127.0.0.1", 1)
    assert info()["master_link_status"] == "down"
    assert info()["master_link_down_since_seconds"] == -1  # never connected
    assert node.execute_command("ROLE")[0] == b"slave"
    follower.a.link_up = follower.a.ever_connected = True
    follower.a.reploff = 1234
    assert info()["master_link_status"] == "down"  # B's is not up
    follower.b.link_up = follower.b.ever_connected = True
    assert info()["master_link_status"] == "up"
    assert info()["slave_repl_offset"] == 1234  # shard0's, beside its master_host/port
    assert info()["master_sync_in_progress"] == 0
    assert node.execute_command("ROLE")[:4] == [b"slave", b"127.0.0.1", 1, b"connected"]
    assert node.execute_command("ROLE")[4] == 1234
    with pytest.raises(ReplyError, match="WAIT cannot be used with replica instances"):
        node.execute_command("WAIT", 1, 0)


LIB = b"#!lua name=%s\nredis.register_function('%s', function() return %d end)"


def test_a_shard_snapshot_adds_its_libraries_and_keeps_the_other_shards() -> None:
    """Each primary holds its own copy of the libraries: one shard's full sync installs the
    libraries its snapshot holds (same name: the last loaded wins) and drops none of the ones
    another shard brought (a new primary with no library must not empty the follower)."""
    follower = Follower(lane=True)
    engine = follower.node.engine

    def load(link: ShardLink, *codes: bytes) -> None:
        staged = StagedLoad(1, drop_expired=False, now_ms=0)
        link._load_target(staged, LoadResult(functions=list(codes)))

    def held() -> dict[bytes, bytes]:
        libraries = engine.scripting.functions.libraries  # type: ignore[union-attr]
        return {name: library.code for name, library in libraries.items()}

    load(follower.a, LIB % (b"one", b"f1", 1), LIB % (b"two", b"f2", 2))
    load(follower.b)
    assert held() == {b"one": LIB % (b"one", b"f1", 1), b"two": LIB % (b"two", b"f2", 2)}
    load(follower.b, LIB % (b"two", b"f2", 22))
    assert held() == {b"one": LIB % (b"one", b"f1", 1), b"two": LIB % (b"two", b"f2", 22)}
    assert follower.node.execute_command("FCALL", "f2", 0) == 22


def _between_loads(event: str, follower: Follower, planted: bytes) -> None:
    """Something that happens between A's first sync and B's; most put ``planted`` (a key
    of B's slots) here."""
    node, db = follower.node, follower.node.engine.keyspace.dbs[0]
    if event == "client write":  # a writable follower's own key (counted in dirty)
        node.execute_command("SET", planted, "ours")
    elif event == "uncounted key":  # DEBUG POPULATE's way: no dirty count, a new key
        db.add(planted, b"populated")
    elif event == "uncounted, evicted":  # ... and a key evicted: the same size
        evicted = list(db.data)[-1]  # not the first key, which the check also watches
        db.add(planted, b"populated")
        db.delete(evicted)  # as eviction deletes and counts it (Evictor.perform)
        node.engine.stats.evicted_keys += 1
    elif event == "dataset replaced":  # a load (DEBUG RELOAD): new dict, the same size
        replaced = dict(db.data)
        del replaced[next(iter(replaced))]
        replaced[planted] = b"reloaded"
        db.data = replaced
        db.recount()
    elif event == "A writes B's slot":  # A takes the key: recorded
        follower.feed(follower.a, [b"SET", planted, b"from-a"])
    elif event == "A writes its own":  # nothing of B's, but dirty moves: B walks anyway
        follower.feed(follower.a, [b"SET", _key("a", True, 7), b"more"])
    elif event == "slot moves":  # one of A's slots (holding a key) is B's now
        follower.flip(_key("a", True, 0))
    elif event == "A retires":  # A took B's key, then A is gone: the key stays, unrecorded
        follower.feed(follower.a, [b"SET", planted, b"from-a"])
        cluster = follower.follower
        cluster.retiring.append(follower.a)
        cluster.drop(follower.a)
    else:
        assert event == "nothing"


@pytest.mark.parametrize("event", [
    "nothing", "client write", "uncounted key", "uncounted, evicted", "dataset replaced",
    "A writes B's slot", "A writes its own", "slot moves", "A retires"])
def test_a_first_sync_skips_the_walk_only_when_nothing_changed_since_the_last(
        event: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shard's first full sync deletes what is held in its slots, found by a walk over
    every key (``Ownership.keys_of``), unless nothing changed db 0 since another shard's
    full sync left only loaded keys in their loaders' slots: then there is nothing of its
    slots to find. Whatever happened in between, the result is what the walk gives: the
    same keyspace, memory estimate and records as with the walk forced."""
    a_keys = {_key("a", True, n): b"a" * 5 for n in range(20)}
    b_keys = {_key("b", False, n): b"b" * 6 for n in range(20)}
    planted = _key("b", False, 99)

    def run(walk_always: bool) -> tuple[tuple, int]:
        follower = Follower(lane=True)
        ownership = follower.follower.ownership
        if walk_always:
            monkeypatch.setattr(ownership, "settled", lambda engine: None)
        walks = []
        keys_of = ownership.keys_of
        monkeypatch.setattr(ownership, "keys_of",
                            lambda link: walks.append(link) or keys_of(link))
        _load(follower.a, a_keys, {}, {})
        _between_loads(event, follower, planted)
        _load(follower.b, b_keys, {}, {})
        db = follower.node.engine.keyspace.dbs[0]
        # A key A took stays A's; B's full sync replaced any other in its slots.
        assert (planted in db.data) == (event == "A writes B's slot")
        assert set(b_keys) <= set(db.data)
        return follower.state(), len(walks)

    state, walks = run(walk_always=False)
    assert (state, 1) == run(walk_always=True)
    assert walks == (0 if event == "nothing" else 1)


def test_a_resync_of_a_shard_that_loaded_still_walks() -> None:
    """The settled state names the links whose keys are here: a second full sync of one
    of them finds its keys (and replaces them) even when nothing else happened."""
    follower = Follower(lane=True)
    db = follower.node.engine.keyspace.dbs[0]
    a_keys = {_key("a", True, n): b"a" for n in range(10)}
    b_keys = {_key("b", False, n): b"b" for n in range(10)}
    _load(follower.a, a_keys, {}, {})
    _load(follower.b, b_keys, {}, {})
    _load(follower.a, {_key("a", True, 50): b"new"}, {}, {})
    assert db.data == {**b_keys, _key("a", True, 50): b"new"}
    _load(follower.b, {}, {}, {})
    assert db.data == {_key("a", True, 50): b"new"}
