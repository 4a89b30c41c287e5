"""The plain lane (kvrepl/commands/plain.py): pipelined GET and SET run without the general
dispatch, and must still answer, record and propagate exactly as the general path does.

Pipelines are compared byte for byte with a real redis-server (``wire``), including the
requests the lane must leave to the general path in the middle of a run.
"""

from __future__ import annotations

import time

import redis
from support import RawClient, lane_runs, pack, poll

from kvrepl.commands.core import Engine
from kvrepl.commands.plain import PlainLane
from kvrepl.config import Config
from kvrepl.protocol.parser import NEED_DATA


def test_pipelined_gets_and_sets_answer_as_redis(wire):
    wire(batch=[("SET", "a", "1"), ("GET", "a"), ("GET", "missing"), ("set", "b", "x" * 300),
                ("get", "b"), ("Set", "c", ""), ("Get", "c"), ("sEt", "d", "odd case"),
                ("GeT", "d"), ("SET", "a", "2"), ("GET", "a")])


def test_run_broken_by_other_commands_answers_as_redis(wire):
    """Options, other commands, other types and wrong arities in the middle of a run go the
    general way; the replies keep their order."""
    wire(batch=[("RPUSH", "list", "x"), ("SET", "k", "v"), ("GET", "list"), ("GET", "k"),
                ("SET", "k", "v", "EX", "100"), ("TTL", "k"), ("SET", "k", "w"), ("TTL", "k"),
                ("GET", "k", "extra"), ("SET", "k"), ("INCR", "n"), ("GET", "n"),
                ("SET", "list", "now a string"), ("TYPE", "list"), ("GET", "list")])


def test_select_and_multi_inside_a_pipeline_answer_as_redis(wire):
    wire(batch=[("SET", "k", "db0"), ("SELECT", "1"), ("GET", "k"), ("SET", "k", "db1"),
                ("MULTI",), ("SET", "k", "queued"), ("GET", "k"), ("EXEC",), ("GET", "k"),
                ("SELECT", "0"), ("GET", "k")])


def test_resp3_nulls_and_values(wire):
    wire(batch=[("GET", "missing"), ("SET", "k", "v"), ("GET", "k")], protocol=3)


def test_ttl_key_in_a_run_is_dropped_by_set_and_expires_for_get(wire):
    # "gone" expires at an instant the test knows (PXAT), on the clock both servers read. A
    # redis-server's clock cannot be moved, so the test waits until that clock has passed the
    # instant (Redis: expired when now > when) instead of reading PTTL, whose 0 still means
    # the key exists for that millisecond.
    expires_at = int(time.time() * 1000) + 2
    wire(batch=[("SET", "t", "v", "PX", "100000"), ("SET", "t", "w"), ("PTTL", "t"),
                ("SET", "gone", "v", "PXAT", str(expires_at))])
    poll(lambda: int(time.time() * 1000) > expires_at, "the key's time to pass")
    wire(batch=[("GET", "gone"), ("EXISTS", "gone"), ("GET", "t")])


def test_expired_key_read_in_a_run_propagates_its_del(kvrepl_server, r, server_propagated):
    r.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "0")  # the GET must be what deletes it
    try:
        r.set("gone", "v", px=1)
        db = kvrepl_server.engine.keyspace.dbs[0]
        poll(lambda: db.is_expired(b"gone"), "the key's time to pass")  # without reading it
        client = RawClient(kvrepl_server.port)
        client.sock.sendall(pack("SET", "a", "1") + pack("GET", "gone") + pack("SET", "b", "2"))
        assert client.read(3) == b"+OK\r\n$-1\r\n+OK\r\n"
        client.close()
    finally:
        r.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "1")
    assert server_propagated[-3:] == [[b"SET", b"a", b"1"], [b"DEL", b"gone"],
                                      [b"SET", b"b", b"2"]]


def test_pipelined_sets_are_propagated_in_order_with_their_db(kvrepl_server, r):
    seen: list[tuple[int, list[bytes]]] = []

    def listen(db: int, argv: list[bytes]) -> None:
        seen.append((db, list(argv)))

    kvrepl_server.engine.propagate_listeners.append(listen)
    try:
        client = RawClient(kvrepl_server.port)
        client.sock.sendall(pack("SET", "a", "1") + pack("GET", "a") + pack("SELECT", "3")
                            + pack("set", "b", "2") + pack("SET", "c", "3"))
        client.read(5)
        client.close()
    finally:
        kvrepl_server.engine.propagate_listeners.remove(listen)
    assert seen == [(0, [b"SET", b"a", b"1"]), (3, [b"set", b"b", b"2"]),
                    (3, [b"SET", b"c", b"3"])]


def test_stats_count_pipelined_commands(kvrepl_server, r):
    r.config_resetstat()
    changes = r.info("persistence")["rdb_changes_since_last_save"]
    client = RawClient(kvrepl_server.port)
    client.sock.sendall(b"".join(pack("SET", f"k{i}", i) for i in range(10))
                        + b"".join(pack("GET", f"k{i}") for i in range(7)))
    client.read(17)
    stats = r.info("commandstats")
    assert stats["cmdstat_set"]["calls"] == 10
    assert stats["cmdstat_get"]["calls"] == 7
    assert r.info("persistence")["rdb_changes_since_last_save"] == changes + 10
    assert [c["cmd"] for c in r.client_list() if c["cmd"] in ("get", "set")] == ["get"]
    client.close()


def test_watched_key_written_by_a_pipeline_fails_exec(kvrepl_server, r):
    watcher = kvrepl_server.client()
    pipe = watcher.pipeline()
    pipe.watch("w")
    client = RawClient(kvrepl_server.port)
    client.sock.sendall(pack("GET", "w") + pack("SET", "w", "changed"))
    assert client.read(2) == b"$-1\r\n+OK\r\n"
    client.close()
    pipe.multi()
    pipe.set("w", "mine")
    try:
        pipe.execute()
        raise AssertionError("EXEC must fail after the watched key changed")
    except redis.WatchError:
        pass
    assert r.get("w") == b"changed"
    watcher.close()


def test_monitor_sees_pipelined_commands(kvrepl_server, r):
    monitor = RawClient(kvrepl_server.port)
    assert monitor.call("MONITOR") == b"+OK\r\n"
    client = RawClient(kvrepl_server.port)
    client.sock.sendall(pack("SET", "m", "1") + pack("GET", "m"))
    assert client.read(2) == b"+OK\r\n$1\r\n1\r\n"
    lines = monitor.read(2)
    assert b'"SET" "m" "1"' in lines and b'"GET" "m"' in lines
    client.close()
    monitor.close()


def test_read_only_replica_refuses_pipelined_sets():
    """The lane stays closed while a node-wide state can refuse a command."""
    engine = Engine(Config(save=()))
    engine.read_only = True
    session = engine.new_session()
    assert not engine.plain_lane.open_for(session)
    engine.read_only = False
    assert engine.plain_lane.open_for(session)


def test_lane_stops_at_the_first_request_it_cannot_finish():
    engine = Engine(Config(save=()))
    session = engine.new_session()
    lane = PlainLane(engine)
    engine.keyspace.dbs[0].data[b"list"] = object()
    out: list[bytes] = []
    requests = [[b"SET", b"a", b"1"], [b"GET", b"a"], [b"GET", b"list"], [b"GET", b"a"]]
    assert lane.run(session, requests, 0, out) == 2
    assert b"".join(out) == b"+OK\r\n$1\r\n1\r\n"
    assert lane.run(session, requests, 3, out) == 4
    assert b"".join(out) == b"+OK\r\n$1\r\n1\r\n$1\r\n1\r\n"
    assert lane.run(session, [[b"PING"]], 0, out) == 0


async def test_embedded_set_through_the_lane_is_seen_by_watch_changes_and_replicas():
    import kvrepl
    from kvrepl.protocol.replies import NULL_ARRAY

    async with kvrepl.Master() as master, kvrepl.Replica(follow=master) as replica:
        await replica.wait_synced()
        engine = master.engine
        watcher = engine.new_session()
        engine.execute(watcher, [b"WATCH", b"w"])
        changes = master.changes()
        assert master.set(b"w", b"by the application") is True
        assert master.set(b"plain", b"1") is True
        engine.execute(watcher, [b"MULTI"])
        engine.execute(watcher, [b"SET", b"w", b"by the transaction"])
        assert engine.execute(watcher, [b"EXEC"]) is NULL_ARRAY  # the watched key changed
        seen = [await changes.__anext__(), await changes.__anext__()]
        assert [(c.command, c.args) for c in seen] == [
            (b"SET", (b"w", b"by the application")), (b"SET", (b"plain", b"1"))]
        await changes.aclose()
        await replica.wait_synced()
        assert replica.get(b"w") == b"by the application" and replica.get(b"plain") == b"1"
        # The watcher, made dirty by the first SET, watches nothing more (Redis's
        # unwatchAllKeys): the second SET may take the direct path, which tallies its call
        # until INFO or the cron reads the counts.
        engine.direct_tally.fold()
        assert engine.table[b"set"].calls == 2


async def test_pipelined_sets_reach_the_stream_as_sent_and_replicas_apply_them(monkeypatch):
    """A read of nothing but SETs is their own canonical encoding: the stream carries those
    bytes; with a GET among them the SETs are encoded again. Either way the same bytes."""
    import trio

    import kvrepl
    from kvrepl.replication import master as master_module

    encoded: list[int] = []
    encode = master_module.encode_commands
    monkeypatch.setattr(master_module, "encode_commands",
                        lambda commands: encoded.append(len(commands)) or encode(commands))

    async with kvrepl.Master(port=0) as master, kvrepl.Replica(follow=master) as replica:
        await replica.wait_synced()
        replication = master.replication
        stream = await trio.open_tcp_stream("127.0.0.1", master.port)
        sets = pack("SET", "a", "1") + pack("set", "b", "x" * 300) + pack("SET", "c", "")
        mixed = pack("SET", "d", "4") + pack("GET", "a") + pack("set", "e", "5")
        expected = [sets, pack("SET", "d", "4") + pack("set", "e", "5")]
        for request, written in zip((sets, mixed), expected, strict=True):
            before = replication.master_repl_offset
            await stream.send_all(request)
            answer = b""
            while answer.count(b"\r\n") < 3 + (request is mixed):
                answer += await stream.receive_some(4096)
            tail = replication.backlog.read_from(before + 1)
            assert tail.endswith(written) and tail[:-len(written)] in (b"", _SELECT_0)
        assert encoded == [2]  # only the mixed read's two SETs were encoded again
        await stream.aclose()
        await replica.wait_synced()
        assert [replica.get(k) for k in (b"a", b"b", b"c", b"d", b"e")] == [
            b"1", b"x" * 300, b"", b"4", b"5"]


_SELECT_0 = b"*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n"


def test_only_canonical_reads_are_kept_as_stream_bytes():
    from kvrepl.protocol.parser import RequestParser

    parser = RequestParser(fast=True)
    plain = pack("SET", "a", "1") + pack("SET", "b", "2")
    parser.feed(plain)
    assert parser.ready_requests() == ([[b"SET", b"a", b"1"], [b"SET", b"b", b"2"]], 0, plain)
    parser.skip_ready(2)
    assert parser.next_request() is NEED_DATA
    parser.feed(pack("SET", "a", "1") + b"*0\r\n" + pack("SET", "b", "2"))
    requests, position, raw = parser.ready_requests()
    assert raw is None  # "*0" is skipped by Redis: these bytes are not the stream's


def test_a_registered_gate_closes_the_lane_and_its_release_opens_it():
    """The lane's node-wide state is one flag derived from the registered gates: any new
    gate closes it, for clients and the master link alike, with no change to the lane."""
    engine = Engine(Config(save=()))
    session = engine.new_session()
    lane = engine.plain_lane
    gates = engine.keyspace.gates
    assert lane.open_for(session) and gates.closed() == []
    gates.set("a new observer", True)
    assert not lane.open_for(session) and not lane.open_for_master_link(session)
    out: list[bytes] = []
    gates.set("a new observer", False)
    assert lane.open_for(session) and lane.open_for_master_link(session)
    gates.set("a refusal of clients", True, clients_only=True)
    assert not lane.open_for(session) and lane.open_for_master_link(session)
    gates.set("a refusal of clients", False, clients_only=True)
    assert lane.run(session, [[b"SET", b"k", b"v"]], 0, out) == 1


def test_what_registers_an_observer_closes_the_lane():
    """MONITOR, WATCH, a blocked client, a snapshot, notifications, tracking, pause,
    maxmemory, LFU and loading each close the lane while registered."""
    from kvrepl.store.snapshot import KeyspaceView

    engine = Engine(Config(save=()))
    session = engine.new_session()
    other = engine.new_session()
    lane = engine.plain_lane

    def closed_while(start: object, stop: object) -> None:
        assert lane.open_for(session)
        start()
        assert not lane.open_for(session), engine.keyspace.gates.closed()
        stop()
        assert lane.open_for(session), engine.keyspace.gates.closed()

    closed_while(lambda: engine.execute(other, [b"MONITOR"]),
                 lambda: engine.execute(other, [b"RESET"]))
    closed_while(lambda: engine.execute(other, [b"WATCH", b"k"]),
                 lambda: engine.execute(other, [b"UNWATCH"]))
    closed_while(lambda: engine.keyspace.block_key(0, b"k"),
                 lambda: engine.keyspace.unblock_key(0, b"k"))
    engine.keyspace.dbs[0].data[b"x"] = b"1"
    snapshot: list[KeyspaceView] = []
    closed_while(lambda: snapshot.append(KeyspaceView(engine.keyspace)),
                 lambda: snapshot[0].close())
    for name, on, off in (("notify-keyspace-events", "KEA", ""),
                          ("maxmemory", "1gb", "0"),
                          ("maxmemory-policy", "allkeys-lfu", "noeviction"),
                          ("min-replicas-to-write", "1", "0")):
        closed_while(lambda name=name, on=on: engine.config.set(name, on),
                     lambda name=name, off=off: engine.config.set(name, off))
    closed_while(lambda: engine.execute(other, [b"CLIENT", b"TRACKING", b"ON"]),
                 lambda: engine.execute(other, [b"CLIENT", b"TRACKING", b"OFF"]))
    closed_while(lambda: engine.execute(other, [b"CLIENT", b"PAUSE", b"100000"]),
                 lambda: engine.execute(other, [b"CLIENT", b"UNPAUSE"]))
    closed_while(lambda: setattr(engine, "loading", True),
                 lambda: setattr(engine, "loading", False))


# -- strings changed in place (SETBIT, APPEND, SETRANGE keep a bytearray) --------------------

def test_strings_changed_in_place_answer_as_redis(wire):
    """GET and SET of strings SETBIT, APPEND and SETRANGE changed in place, pipelined: a GET
    before a SETBIT of the same read answers the value as it was then."""
    wire(batch=[("SET", "s", "hello"), ("SETBIT", "s", "7", "1"), ("GET", "s"),
                ("SETBIT", "s", "100", "1"), ("GET", "s"), ("SETBIT", "s", "0", "1"),
                ("GET", "s"), ("APPEND", "a", "xy"), ("SETRANGE", "a", "5", "z"), ("GET", "a"),
                ("SETBIT", "big", "9000", "1"), ("GET", "big"), ("SET", "big", "12345"),
                ("OBJECT", "ENCODING", "big"), ("GET", "big"), ("SETBIT", "b", "7", "1"),
                ("SET", "b", "x" * 60), ("OBJECT", "ENCODING", "b"), ("STRLEN", "b"),
                ("SETBIT", "c", "7", "1"), ("OBJECT", "ENCODING", "c"), ("GET", "c")])
    wire(batch=[("SETBIT", "r3", "7", "1"), ("GET", "r3"), ("SET", "r3", "v"), ("GET", "r3")],
         protocol=3)


def _edited_strings(engine: Engine) -> None:
    """Strings the general path changed in place, of every size the lane encodes apart."""
    session = engine.new_session()
    for argv in ([b"SETBIT", b"e", b"7", b"1"], [b"APPEND", b"a", b"xyz"],
                 [b"SETRANGE", b"a", b"6", b"!"], [b"SETBIT", b"big", b"9000", b"1"],
                 [b"SET", b"s", b"short"], [b"SETBIT", b"s", b"3", b"1"]):
        assert not isinstance(engine.execute(session, argv), Exception)
    data = engine.keyspace.dbs[0].data
    assert {type(data[key]) for key in (b"e", b"a", b"big", b"s")} == {bytearray}


def test_lane_runs_strings_changed_in_place_as_the_general_path_does():
    """The lane takes every request of a run over bytearray strings (it must not leave them
    to the general path) and ends with the same replies, hits, estimate, encodings, dirty
    counter and commandstats as the general path running the same requests."""
    from kvrepl.protocol.replies import encode

    lane_engine, general_engine = Engine(Config(save=())), Engine(Config(save=()))
    requests = [[b"GET", b"e"], [b"GET", b"big"], [b"GET", b"a"], [b"SET", b"a", b"12"],
                [b"GET", b"a"], [b"get", b"s"], [b"SET", b"e", b"x" * 50], [b"GET", b"e"],
                [b"SET", b"big", b"y"], [b"GET", b"missing"]]
    replies = []
    for engine in (lane_engine, general_engine):
        _edited_strings(engine)
        session = engine.new_session()
        out: list[bytes] = []
        if engine is lane_engine:
            assert engine.plain_lane.open_for(session)
            assert engine.plain_lane.run(session, requests, 0, out) == len(requests)
        else:
            out = [encode(engine.execute(session, argv)) for argv in requests]
        replies.append(b"".join(out))
    assert replies[0] == replies[1]
    assert replies[0].startswith(b"$1\r\n\x01\r\n$1126\r\n")

    def state(engine: Engine) -> tuple:
        session = engine.new_session()
        keyspace = engine.keyspace
        return (keyspace.used_memory(), dict(keyspace.dbs[0].sizes), keyspace.hits,
                keyspace.misses, engine.dirty, engine.table[b"get"].calls,
                engine.table[b"set"].calls,
                [engine.execute(session, [b"OBJECT", b"ENCODING", key])
                 for key in (b"a", b"e", b"big", b"s")])

    assert state(lane_engine) == state(general_engine)


def test_single_get_and_set_and_the_master_link_take_strings_changed_in_place():
    """The embedded API's one-request GET and SET, and a replica's link applying its
    master's SETs, serve bytearray strings too, with the general path's estimate."""
    from kvrepl.protocol.replies import encode

    lane_engine, general_engine = Engine(Config(save=())), Engine(Config(save=()))
    for engine in (lane_engine, general_engine):
        _edited_strings(engine)
    session = lane_engine.new_session()
    lane = lane_engine.plain_lane
    general = general_engine.new_session()
    assert lane.get(session, b"e") == encode(general_engine.execute(general, [b"GET", b"e"]))
    assert lane.set(session, [b"SET", b"e", b"new"]) is True
    assert lane.apply_sets(session, [[b"SET", b"a", b"1"], [b"SET", b"big", b"2"]], 0) == 2
    for argv in ([b"SET", b"e", b"new"], [b"SET", b"a", b"1"], [b"SET", b"big", b"2"]):
        general_engine.execute(general, argv)
    assert lane.get(session, b"s") == encode(general_engine.execute(general, [b"GET", b"s"]))
    assert lane_engine.keyspace.used_memory() == general_engine.keyspace.used_memory()
    assert lane_engine.keyspace.dbs[0].sizes == general_engine.keyspace.dbs[0].sizes


def test_pipelined_gets_of_bitmaps_are_routed_through_the_lane(kvrepl_server, r, monkeypatch):
    """What ``redis-benchmark GET`` sends after SETBIT over the same keys goes through the
    lane, not the general path (counted at the lane), with the bytes SETBIT left."""
    r.setbit("bm:1", 7, 1)
    r.setbit("bm:2", 15, 1)
    routed = lane_runs(monkeypatch)
    client = RawClient(kvrepl_server.port)
    client.sock.sendall(b"".join(pack("GET", f"bm:{i % 2 + 1}") for i in range(16)))
    assert client.read(16) == b"$1\r\n\x01\r\n$2\r\n\x00\x01\r\n" * 8
    client.sock.sendall(pack("SET", "bm:1", "v") + pack("GET", "bm:1"))
    assert client.read(2) == b"+OK\r\n$1\r\nv\r\n"
    client.close()
    assert sum(routed) == 18
