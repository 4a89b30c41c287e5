"""Server commands of issue #9: TIME, LOLWUT, SLOWLOG, LATENCY, MEMORY, MODULE, CLUSTER &
co., CLIENT PAUSE/UNPAUSE/REPLY and sharded pub/sub, compared with a real redis-server 7.0
where the reply is deterministic, and checked for their behaviour otherwise."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator

import hiredis
import pytest
import redis
import trio
from support import (
    DEADLINE,
    Call,
    Compare,
    RawClient,
    RedisServer,
    ThreadedServer,
    poll,
)

from kvrepl.commands.core import Engine
from kvrepl.commands.observers import (
    HISTOGRAM_STEP_TOPS,
    histogram_reply,
    latency_key,
    percentiles_line,
)
from kvrepl.errors import ReplyError

# -- TIME -----------------------------------------------------------------------------------


def test_time_is_seconds_and_microseconds_as_bulk_strings(
        same: Compare, kvrepl_server: ThreadedServer, redis_server: RedisServer) -> None:
    shape = re.compile(rb"\*2\r\n\$(\d+)\r\n(\d+)\r\n\$(\d)\r\n(\d+)\r\n")
    for port in (kvrepl_server.port, redis_server.port):
        for protocol in (2, 3):
            client = RawClient(port, protocol)
            before = time.time()
            found = shape.fullmatch(client.call("TIME"))
            assert found is not None
            seconds, micros = int(found[2]), int(found[4])
            assert before - 1 <= seconds + micros / 1e6 <= time.time() + 1
            assert 0 <= micros < 1_000_000
            client.close()
    same("TIME", "extra")  # arity


# -- LOLWUT ---------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    (), ("VERSION",), ("VERSION", "7"), ("VERSION", "4"), ("VERSION", "45"), ("foo", "bar"),
    ("VERSION", "-1"), ("VERSION", "4294967301", "10", "2", "1"),
    # Schotter's first two rows are not random: with at most two rows the art is exact
    ("VERSION", "5", "66", "8", "2"), ("VERSION", "5", "10", "3", "1"),
    ("VERSION", "5", "1", "1", "1"), ("VERSION", "5", "0", "-3", "0"),
    ("VERSION", "5", "33", "500", "2"), ("VERSION", "5", "2000", "2", "1"),
    ("VERSION", "5", "x"), ("VERSION", "5", "10", "x"), ("VERSION", "x"),
    ("VERSION", "6", "x"), ("VERSION", "6", "10", "y"),
])
def test_lolwut_is_redis_bytes(wire: Compare, args: tuple[str, ...]) -> None:
    for protocol in (2, 3):
        wire("LOLWUT", *args, protocol=protocol)


def _shape(art: bytes) -> list[int]:
    """Characters per line; cells per line for VERSION 6 (each cell with its colour)."""
    return [line.count("\x1b[0m") or len(line) for line in art.decode().split("\n")]


@pytest.mark.parametrize("args", [("5",), ("5", "40", "6", "9"), ("6",), ("6", "30", "7"),
                                  ("6", "1", "1")])
def test_lolwut_random_art_has_redis_shape(same: Compare, r: redis.Redis, real: redis.Redis,
                                           args: tuple[str, ...]) -> None:
    """The random pieces: same lines of the same widths and the same credits."""
    ours = r.execute_command("LOLWUT", "VERSION", *args)
    theirs = real.execute_command("LOLWUT", "VERSION", *args)
    assert _shape(ours) == _shape(theirs)
    assert ours.rsplit(b"\n", 3)[-3:] == theirs.rsplit(b"\n", 3)[-3:]
    assert ours.endswith(b"Redis ver. 7.0.15\n")


# -- SLOWLOG --------------------------------------------------------------------------------


def test_slowlog_arguments_and_help(same: Compare, same3: Compare) -> None:
    for run in (same, same3):
        run("SLOWLOG", "HELP")
        run("SLOWLOG", "GET", "x")
        run("SLOWLOG", "GET", "-2")
        run("SLOWLOG", "GET", "1", "2")
        run("SLOWLOG", "LEN", "x")
        run("SLOWLOG", "RESET", "x")
        run("SLOWLOG", "FOO")
        run("SLOWLOG")


@pytest.fixture
def log_all(configure: Callable[[str, object], None], r: redis.Redis, real: redis.Redis
            ) -> Iterator[None]:
    """Both servers log every command, from an empty slow log."""
    configure("slowlog-log-slower-than", 0)
    yield
    for client in (r, real):
        client.config_set("slowlog-log-slower-than", 10000)
        client.slowlog_reset()


def _entries(port: int, *commands: tuple[object, ...]) -> tuple[list[list[object]], bytes]:
    """Run ``commands`` on a fresh connection, then SLOWLOG GET -1; its entries (as
    hiredis reads them) and the connection's address."""
    client = redis.Redis(port=port, protocol=2)
    client.response_callbacks.clear()
    client.execute_command("SLOWLOG", "RESET")
    for command in commands:
        try:
            client.execute_command(*command)
        except redis.ResponseError:
            pass
    entries = client.execute_command("SLOWLOG", "GET", "-1")
    addr = client.execute_command("CLIENT", "INFO").split(b" ")[1].split(b"=")[1]
    client.close()
    return entries, addr


def test_slowlog_entries_as_redis(log_all: None, kvrepl_server: ThreadedServer,
                                  redis_server: RedisServer) -> None:
    commands = [
        ("CLIENT", "SETNAME", "logger"),
        ("SET", "k", "v" * 200),
        ("RPUSH", "l", *range(40)),
        ("GET", "k"),
        ("MULTI",), ("INCR", "n"), ("EXEC",),  # EXEC is skip_slowlog; its commands are not
        ("NOSUCH", "cmd"),  # never ran: not logged
        ("SET", "x" * 129, "1"),
    ]
    ours, our_addr = _entries(kvrepl_server.port, *commands)
    theirs, their_addr = _entries(redis_server.port, *commands)
    assert [e[3] for e in ours] == [e[3] for e in theirs]
    assert [e[5] for e in ours] == [e[5] for e in theirs]
    assert ours[0][3][:2] == [b"SET", b"x" * 128 + b"... (1 more bytes)"]
    (rpush,) = [e[3] for e in ours if e[3][0] == b"RPUSH"]
    assert len(rpush) == 32 and rpush[-1] == b"... (11 more arguments)"
    assert [b"EXEC"] not in [e[3] for e in ours] and [b"INCR", b"n"] in [e[3] for e in ours]
    ids = [e[0] for e in ours]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids)
    for entry in ours:
        assert entry[4] == our_addr and isinstance(entry[2], int) and entry[2] >= 0
        assert abs(entry[1] - time.time()) < 60
    assert all(e[4] == their_addr for e in theirs)


def test_slowlog_len_get_count_and_max_len(log_all: None, configure: Callable[[str, object], None],
                                           same: Compare, kvrepl_server: ThreadedServer,
                                           redis_server: RedisServer) -> None:
    configure("slowlog-max-len", 3)
    same("SLOWLOG", "RESET")
    for n in range(5):
        same("SET", f"k{n}", "v")
    assert same("SLOWLOG", "LEN") == 3
    for server in (kvrepl_server, redis_server):
        entries = _hiredis(server.port, "SLOWLOG", "GET", "2")
        assert [e[3] for e in entries] == [[b"SLOWLOG", b"LEN"], [b"SET", b"k4", b"v"]]
    configure("slowlog-max-len", 1)  # shortened at once
    assert same("SLOWLOG", "LEN") == 1
    configure("slowlog-max-len", 128)


def test_slowlog_threshold_honoured(kvrepl_server: ThreadedServer, r: redis.Redis) -> None:
    """Only what ran at least slowlog-log-slower-than usec is logged; -1 logs nothing."""
    try:
        r.config_set("slowlog-log-slower-than", 40000)
        r.slowlog_reset()
        r.ping()
        r.execute_command("DEBUG", "SLEEP", "0.05")
        entries = r.slowlog_get()
        assert [e["command"] for e in entries] == [b"DEBUG SLEEP 0.05"]
        assert entries[0]["duration"] >= 50000
        r.config_set("slowlog-log-slower-than", -1)
        r.slowlog_reset()
        r.execute_command("DEBUG", "SLEEP", "0.01")
        assert r.slowlog_len() == 0
    finally:
        r.config_set("slowlog-log-slower-than", 10000)
        r.slowlog_reset()


def test_plain_lane_commands_are_logged(log_all: None, kvrepl_server: ThreadedServer) -> None:
    """Pipelined GET/SET (the plain lane) reach the slow log too, one entry each."""
    client = RawClient(kvrepl_server.port)
    client.call("SLOWLOG", "RESET")
    client.sock.sendall(b"".join(
        b"*3\r\n$3\r\nSET\r\n$2\r\nk%d\r\n$1\r\nv\r\n" % n for n in range(10)))
    client.read(10)
    entries = kvrepl_server.client().execute_command("SLOWLOG", "GET", "-1")
    sets = [e[3] for e in entries if e[3][0] == b"SET"]
    assert sets == [[b"SET", b"k%d" % n, b"v"] for n in reversed(range(10))]
    client.close()


# -- LATENCY --------------------------------------------------------------------------------


def test_latency_replies_without_events(same: Compare, same3: Compare) -> None:
    for run in (same, same3):
        run("LATENCY", "RESET")
        run("LATENCY", "HELP")
        run("LATENCY", "LATEST")
        run("LATENCY", "HISTORY", "command")
        run("LATENCY", "GRAPH", "command")
        run("LATENCY", "DOCTOR")
        run("LATENCY", "RESET", "command", "fork")
        run("LATENCY", "HISTORY")
        run("LATENCY", "LATEST", "x")
        run("LATENCY", "FOO")
        run("LATENCY", "HISTOGRAM", "nosuch")


@pytest.fixture
def monitor(kvrepl_server: ThreadedServer, debug_redis: RedisServer
            ) -> Iterator[tuple[redis.Redis, redis.Redis]]:
    """Clients of kvrepl and a DEBUG-enabled Redis with latency-monitor-threshold 40 ms."""
    clients = (kvrepl_server.client(), debug_redis.client())
    for client in clients:
        client.config_set("latency-monitor-threshold", 40)
        client.execute_command("LATENCY", "RESET")
    yield clients
    for client in clients:
        client.config_set("latency-monitor-threshold", 0)
        client.execute_command("LATENCY", "RESET")
        client.close()


def _without_numbers(text: bytes) -> str:
    # the THP advice depends on each process's memory, not on the command
    lines = [line for line in text.decode().split("\n") if "huge pages" not in line]
    return re.sub(r"\d+(\.\d+)?", "N", "\n".join(lines))


def test_latency_monitor_records_slow_commands(monitor: tuple[redis.Redis, redis.Redis]
                                               ) -> None:
    for client in monitor:
        client.ping()  # under the threshold: no event
        client.execute_command("DEBUG", "SLEEP", "0.05")
    (ours, theirs) = (c.execute_command("LATENCY", "LATEST") for c in monitor)
    assert [e[0] for e in ours] == [e[0] for e in theirs] == [b"command"]
    event = ours[0]
    assert abs(event[1] - time.time()) < 60 and event[2] >= 50 and event[3] >= 50
    history = monitor[0].execute_command("LATENCY", "HISTORY", "command")
    assert len(history) == 1 and history[0][1] == event[2]
    graphs = [c.execute_command("LATENCY", "GRAPH", "command") for c in monitor]
    assert _without_numbers(graphs[0]) == _without_numbers(graphs[1])
    doctors = [c.execute_command("LATENCY", "DOCTOR") for c in monitor]
    assert _without_numbers(doctors[0]) == _without_numbers(doctors[1])
    assert b"1. command: 1 latency spikes" in doctors[0]
    for client in monitor:
        assert client.execute_command("LATENCY", "RESET", "COMMAND", "fork") == 1
        assert client.execute_command("LATENCY", "LATEST") == []


def test_latency_fast_command_event(monitor: tuple[redis.Redis, redis.Redis],
                                    kvrepl_server: ThreadedServer) -> None:
    """A slow command flagged fast is a fast-command event (the engine's own session: no
    fast command of Redis can be made slow on purpose)."""
    engine = kvrepl_server.engine

    def slow_ping() -> None:
        session = engine.new_session()
        engine.observe_slow(session, engine.table[b"ping"], [b"PING"], 45000.0)
        engine.close_session(session)

    trio.from_thread.run_sync(slow_ping, trio_token=kvrepl_server._token)
    names = [e[0] for e in monitor[0].execute_command("LATENCY", "LATEST")]
    assert names == [b"fast-command"]
    assert b"2) Use a computer / VM" in monitor[0].execute_command("LATENCY", "DOCTOR")


def _hiredis(port: int, *command: object) -> object:
    """One command's reply as hiredis reads it (RESP2: maps as flat arrays)."""
    client = RawClient(port)
    reader = hiredis.Reader()
    reader.feed(client.call(*command))
    client.close()
    return reader.gets()


def test_latency_histogram_shape(kvrepl_server: ThreadedServer, redis_server: RedisServer
                                 ) -> None:
    replies = []
    for port in (kvrepl_server.port, redis_server.port):
        client = RawClient(port)
        client.call("CONFIG", "RESETSTAT")
        for _ in range(3):
            client.call("SET", "k", "v")
        client.call("CONFIG", "GET", "port")
        reader = hiredis.Reader()
        reader.feed(client.call("LATENCY", "HISTOGRAM"))
        replies.append(reader.gets())
        client.close()
    ours, theirs = (dict(zip(reply[::2], reply[1::2], strict=True)) for reply in replies)
    assert set(ours) == set(theirs) == {b"config|resetstat", b"set", b"config|get"}
    tops = {top // 1000 for top in HISTOGRAM_STEP_TOPS}
    for name, cells in ours.items():
        calls = dict(zip(cells[::2], cells[1::2], strict=True))
        assert calls[b"calls"] == dict(zip(theirs[name][::2], theirs[name][1::2],
                                           strict=True))[b"calls"]
        buckets = calls[b"histogram_usec"]
        keys, counts = buckets[::2], buckets[1::2]
        assert set(keys) <= tops and keys == sorted(keys)
        assert counts == sorted(counts) and counts[-1] == calls[b"calls"]


def test_latency_histogram_named_commands(run: Callable[..., object], engine: Engine) -> None:
    run("SET", "a", "1")
    run("CONFIG", "GET", "port")
    found = run("LATENCY", "HISTOGRAM", "set", "nosuch", "CONFIG")
    assert list(found) == [b"set", b"config|get"]  # a container brings its subcommands
    assert found[b"set"][b"calls"] == 1
    run("CONFIG", "RESETSTAT")
    assert list(run("LATENCY", "HISTOGRAM")) == [b"config|resetstat"]
    assert list(run("LATENCY", "HISTOGRAM")) == [b"config|resetstat", b"latency|histogram"]
    engine.config.set("latency-tracking", "no")
    run("GET", "a")
    assert b"get" not in run("LATENCY", "HISTOGRAM")


# -- MEMORY ---------------------------------------------------------------------------------


def test_memory_arguments(same: Compare, same3: Compare, r: redis.Redis, real: redis.Redis
                          ) -> None:
    for client in (r, real):
        client.set("k", "v")
    for run in (same, same3):
        run("MEMORY", "HELP")
        run("MEMORY", "USAGE", "missing")
        run("MEMORY", "USAGE", "missing", "SAMPLES", "x")
        run("MEMORY", "USAGE", "k", "SAMPLES", "-1")
        run("MEMORY", "USAGE", "k", "SAMPLES")
        run("MEMORY", "USAGE", "k", "FOO")
        run("MEMORY", "USAGE")
        run("MEMORY", "STATS", "x")
        run("MEMORY", "FOO")
        run("MEMORY", "PURGE")


def test_memory_usage_measures_the_value(r: redis.Redis) -> None:
    r.set("small", "v")
    r.set("big", "v" * 10000)
    r.hset("h", mapping={f"f{n}": "x" * (10 if n < 5 else 1000) for n in range(100)})
    small, big = r.memory_usage("small"), r.memory_usage("big")
    assert 0 < small < big and big >= 10000
    sampled, full = r.memory_usage("h"), r.memory_usage("h", samples=0)
    assert sampled < full  # the first 5 fields are the small ones
    assert full >= 95 * 1000
    r.expire("big", 100)
    assert r.memory_usage("big") > big  # its expiry entry


def test_memory_stats_has_redis_fields(kvrepl_server: ThreadedServer, redis_server: RedisServer,
                                       r: redis.Redis, real: redis.Redis) -> None:
    for client in (r, real):
        client.set("k", "v")
    ours, theirs = (_hiredis(port, "MEMORY", "STATS")
                    for port in (kvrepl_server.port, redis_server.port))
    assert ours[::2] == theirs[::2]
    for mine, oracle in zip(ours[1::2], theirs[1::2], strict=True):
        assert type(mine) is type(oracle)
        if isinstance(mine, list):
            assert mine[::2] == oracle[::2]
    stats = dict(zip(ours[::2], ours[1::2], strict=True))
    assert stats[b"keys.count"] == 1 and stats[b"total.allocated"] > 0


def test_memory_doctor_malloc_stats(same: Compare, r: redis.Redis) -> None:
    assert r.execute_command("MEMORY", "DOCTOR").startswith((b"Hi Sam", b"Sam"))
    assert r.execute_command("MEMORY", "MALLOC-STATS") == \
        b"Stats not supported for the current allocator"


# -- MODULE ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def module_redis() -> Iterator[RedisServer]:
    server = RedisServer("--enable-module-command", "yes")
    yield server
    server.stop()


def test_module_commands(same: Compare, same3: Compare, run: Callable[..., object],
                         module_redis: RedisServer) -> None:
    for compare in (same, same3):
        compare("MODULE", "LIST")
        compare("MODULE", "HELP")
        compare("MODULE", "FOO")
        compare("MODULE", "LOAD", "/nonexistent/module.so")  # not allowed (protected)
        compare("MODULE", "UNLOAD", "x")
    real = module_redis.client()
    for args in (("MODULE", "LOAD", "/nonexistent/module.so", "a"),
                 ("MODULE", "LOADEX", "/nonexistent/module.so", "CONFIG", "a", "b"),
                 ("MODULE", "UNLOAD", "x")):
        with pytest.raises(redis.ResponseError) as err:
            real.execute_command(*args)
        with pytest.raises(ReplyError) as ours:
            run(*args)  # the embedded API may run protected commands
        assert ours.value.message == "ERR " + str(err.value)
    real.close()


# -- cluster commands without cluster mode --------------------------------------------------


def test_cluster_commands_disabled(same: Compare, same3: Compare) -> None:
    for run in (same, same3):
        for args in (("CLUSTER", "INFO"), ("CLUSTER", "HELP"), ("CLUSTER", "NODES"),
                     ("CLUSTER", "SLOTS"), ("CLUSTER", "KEYSLOT", "k"), ("CLUSTER", "MYID"),
                     ("CLUSTER", "INFO", "x"), ("CLUSTER", "FOO"), ("CLUSTER",),
                     ("CLUSTER", "SETSLOT", "1"), ("CLUSTER", "RESET", "HARD"),
                     ("READONLY",), ("READWRITE",), ("ASKING",), ("READONLY", "x")):
            run(*args)


def test_every_cluster_subcommand_as_redis(same: Compare, engine: Engine) -> None:
    """Each subcommand with its least arguments, one too few and one too many."""
    for name, sub in engine.table[b"cluster"].subcommands.items():
        least = sub.arity if sub.arity > 0 else -sub.arity
        for count in {least - 1, least, least + 1}:
            same("CLUSTER", name.decode(), *["1"] * max(count - 2, 0))


@pytest.mark.parametrize("container", [b"slowlog", b"latency", b"memory", b"module",
                                       b"pubsub", b"client"])
def test_wrong_argument_counts_as_redis(same: Compare, engine: Engine, container: bytes
                                        ) -> None:
    for name, sub in engine.table[container].subcommands.items():
        least = sub.arity if sub.arity > 0 else -sub.arity
        counts = {least - 1, least + 1} if sub.arity > 0 else {least - 1}
        for count in counts:
            if count >= 2:
                same(container.decode(), name.decode(), *["x"] * (count - 2))


def test_restore_asking_is_restore(same: Compare, r: redis.Redis, real: redis.Redis) -> None:
    real.set("src", "value")
    payload = real.dump("src")
    same("RESTORE-ASKING", "dst", "0", payload)
    same("GET", "dst")
    same("RESTORE-ASKING", "dst", "0", payload)  # BUSYKEY
    same("RESTORE-ASKING", "dst", "0", b"bad", "REPLACE")
    same("RESTORE-ASKING", "dst")


# -- sharded pub/sub ------------------------------------------------------------------------


def test_ssubscribe_replies(wire: Compare) -> None:
    for protocol in (2, 3):
        wire("SSUBSCRIBE", "a", "b", protocol=protocol, replies=2)
        wire("SUBSCRIBE", "c", protocol=protocol)  # counts channels and patterns only
        wire("SSUBSCRIBE", "a", protocol=protocol)  # again: still one each
        wire("PING", protocol=protocol)
        wire("GET", "k", protocol=protocol)  # RESP2: not in this context
        wire("SUNSUBSCRIBE", "a", "zz", protocol=protocol, replies=2)
        wire("SUNSUBSCRIBE", protocol=protocol)
        wire("SUNSUBSCRIBE", protocol=protocol)  # none left: a nil name
        wire("UNSUBSCRIBE", protocol=protocol)
        wire("PING", protocol=protocol)  # out of the pub/sub context


def test_ssubscribe_in_multi_refused(wire: Compare) -> None:
    wire(batch=[("MULTI",), ("SSUBSCRIBE", "a"), ("EXEC",)])
    wire("PING")


def test_spublish_delivers_smessage(kvrepl_server: ThreadedServer, redis_server: RedisServer,
                                    r: redis.Redis, real: redis.Redis) -> None:
    seen = []
    for port in (kvrepl_server.port, redis_server.port):
        for protocol in (2, 3):
            subscriber, pattern, publisher = (RawClient(port, protocol) for _ in range(3))
            subscriber.call("SSUBSCRIBE", "ch")
            pattern.call("PSUBSCRIBE", "*")
            got = [publisher.call("SPUBLISH", "ch", "hello"),
                   publisher.call("SPUBLISH", "other", "x"),
                   publisher.call("PUBLISH", "ch", "plain"),  # another namespace
                   publisher.call("PUBSUB", "SHARDCHANNELS"),
                   publisher.call("PUBSUB", "SHARDCHANNELS", "c*"),
                   publisher.call("PUBSUB", "SHARDCHANNELS", "x*"),
                   publisher.call("PUBSUB", "SHARDNUMSUB", "ch", "other"),
                   publisher.call("PUBSUB", "NUMSUB", "ch"),
                   publisher.call("PUBSUB", "CHANNELS"),
                   subscriber.read(),
                   pattern.read()]  # the plain PUBLISH only: patterns never see smessage
            seen.append(got)
            for client in (subscriber, pattern, publisher):
                client.close()
    assert seen[:2] == seen[2:]


def test_pubsub_help_and_shard_errors(same: Compare) -> None:
    same("PUBSUB", "HELP")
    same("PUBSUB", "SHARDCHANNELS", "a", "b")
    same("SPUBLISH", "ch")
    same("SSUBSCRIBE")


def test_spublish_propagates(run: Callable[..., object], propagated: list[list[bytes]]
                             ) -> None:
    assert run("SPUBLISH", "ch", "m") == 0
    assert propagated == [[b"SPUBLISH", b"ch", b"m"]]


def test_client_list_counts_shard_channels(kvrepl_server: ThreadedServer) -> None:
    client = RawClient(kvrepl_server.port)
    client.call("SSUBSCRIBE", "a", "b", replies=2)
    admin = kvrepl_server.client()
    mine = [c for c in admin.client_list() if c["ssub"] == "2"]
    assert len(mine) == 1 and mine[0]["flags"] == "P" and mine[0]["sub"] == "0"
    assert admin.info("stats")["pubsubshard_channels"] == 2
    # The same client (not the same line: the cron may reset its reply buffer's peak, rbp,
    # between the two lists; a fresh-clone run saw 16384 then 0).
    pubsub = admin.client_list(_type="pubsub")
    assert [(c["id"], c["flags"], c["ssub"]) for c in pubsub] == [(mine[0]["id"], "P", "2")]
    client.close()
    admin.close()


# -- CLIENT PAUSE / UNPAUSE -----------------------------------------------------------------


def test_client_pause_arguments(same: Compare) -> None:
    same("CLIENT", "PAUSE", "x")
    same("CLIENT", "PAUSE", "-1")
    same("CLIENT", "PAUSE", "x", "FOO")  # the mode is checked first
    same("CLIENT", "PAUSE", "10", "WRITE", "extra")
    same("CLIENT", "PAUSE", "0")  # over at once
    same("CLIENT", "PAUSE", "0", "write")
    same("CLIENT", "UNPAUSE")
    same("CLIENT", "UNPAUSE", "x")
    same("CLIENT", "REPLY", "FOO")
    same("CLIENT", "REPLY")


@pytest.fixture
def paused(kvrepl_server: ThreadedServer, r: redis.Redis) -> Iterator[Callable[..., None]]:
    """``paused(mode)``: CLIENT PAUSE for a minute; always unpaused after the test."""

    def pause(mode: str = "ALL", ms: int = 60_000) -> None:
        assert r.execute_command("CLIENT", "PAUSE", ms, mode) == b"OK"

    yield pause
    _unpause(kvrepl_server)


def _unpause(server: ThreadedServer) -> None:
    """CLIENT UNPAUSE from the application: over the network it would wait out a pause
    of ALL, as in Redis."""
    trio.from_thread.run_sync(server.engine.pause.unpause, trio_token=server._token)


def _postponed(server: ThreadedServer, count: int) -> None:
    poll(lambda: len(server.engine.pause.postponed) == count, f"{count} clients postponed")


def test_pause_write_holds_writes_not_reads(kvrepl_server: ThreadedServer, r: redis.Redis,
                                            paused: Callable[..., None]) -> None:
    r.set("k", "old")
    paused("WRITE")
    writer = Call(kvrepl_server, "SET", "k", "new")
    publisher = Call(kvrepl_server, "PUBLISH", "ch", "m")  # may replicate: held too
    _postponed(kvrepl_server, 2)
    reader = kvrepl_server.client()
    assert reader.get("k") == b"old"  # reads go on
    assert reader.ping()
    assert reader.info("clients")["blocked_clients"] == 2
    assert [c["flags"] for c in reader.client_list()].count("b") == 2
    assert r.execute_command("CLIENT", "UNPAUSE") == b"OK"
    assert writer.result() == b"OK" and publisher.result() == 0
    assert reader.get("k") == b"new"
    reader.close()


@pytest.mark.parametrize("which", ["kvrepl", "redis"])
def test_pause_write_same_on_both(which: str, kvrepl_server: ThreadedServer,
                                  redis_server: RedisServer, r: redis.Redis, real: redis.Redis
                                  ) -> None:
    """The same story on kvrepl and on redis-server: the held clients show as blocked."""
    server = kvrepl_server if which == "kvrepl" else redis_server
    admin = r if which == "kvrepl" else real
    admin.set("k", "old")
    admin.execute_command("CLIENT", "PAUSE", 60_000, "WRITE")
    try:
        held = [Call(server, "SET", "k", "new"), Call(server, "INCR", "n"),  # type: ignore[arg-type]
                Call(server, "SPUBLISH", "ch", "m")]  # type: ignore[arg-type]
        poll(lambda: admin.info("clients")["blocked_clients"] == 3, "3 clients held")
        assert admin.get("k") == b"old" and admin.exists("n") == 0
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")
    assert [call.result() for call in held] == [b"OK", 1, 0]
    assert admin.get("k") == b"new"


def test_pause_all_holds_everything_until_it_ends(kvrepl_server: ThreadedServer,
                                                  r: redis.Redis,
                                                  paused: Callable[..., None]) -> None:
    """ALL holds reads and CLIENT UNPAUSE too (as in Redis); the pause's end releases them:
    the server's clock is moved past it, the cron notices."""
    r.set("k", "v")
    paused("ALL", ms=60_000)
    reader = Call(kvrepl_server, "GET", "k")
    unpause = Call(kvrepl_server, "CLIENT", "UNPAUSE")
    _postponed(kvrepl_server, 2)
    keyspace = kvrepl_server.engine.keyspace
    keyspace.clock = lambda: time.time() + 61
    try:
        assert reader.result() == b"v"
        assert unpause.result() == b"OK"
    finally:
        keyspace.clock = time.time


def test_pause_keeps_expired_keys_until_it_ends(kvrepl_server: ThreadedServer, r: redis.Redis,
                                                paused: Callable[..., None]) -> None:
    db = kvrepl_server.engine.keyspace.dbs[0]
    paused("WRITE")
    db.data[b"gone"] = b"v"
    db.expires[b"gone"] = 1  # long expired
    assert r.get("gone") is None  # hidden...
    assert r.dbsize() == 1  # ...not deleted during the pause
    r.execute_command("CLIENT", "UNPAUSE")
    assert r.get("gone") is None
    assert r.dbsize() == 0


def test_paused_client_that_leaves_runs_nothing(kvrepl_server: ThreadedServer, r: redis.Redis,
                                                paused: Callable[..., None]) -> None:
    paused("ALL")
    client = RawClient(kvrepl_server.port)
    client.send("SET", "left", "1")
    _postponed(kvrepl_server, 1)
    client.close()
    _postponed(kvrepl_server, 0)
    _unpause(kvrepl_server)
    assert r.exists("left") == 0


def test_pause_in_multi(kvrepl_server: ThreadedServer, r: redis.Redis,
                        paused: Callable[..., None]) -> None:
    """WRITE pause: a transaction that writes is held at EXEC (and its writes queued
    before the pause run with it); a read-only one is not."""
    client = RawClient(kvrepl_server.port)
    client.call("MULTI")
    client.call("SET", "t", "1")
    paused("WRITE")
    client.send("EXEC")
    _postponed(kvrepl_server, 1)
    r.execute_command("CLIENT", "UNPAUSE")
    assert client.read() == b"*1\r\n+OK\r\n"
    paused("WRITE")
    assert client.call("MULTI") == b"+OK\r\n"
    assert client.call("GET", "t") == b"+QUEUED\r\n"
    assert client.call("EXEC") == b"*1\r\n$1\r\n1\r\n"
    client.close()


# -- CLIENT REPLY ---------------------------------------------------------------------------


def _replies_to(port: int, *commands: tuple[object, ...]) -> bytes:
    """What a connection receives for ``commands`` sent at once, up to a final RESET's
    reply (RESET turns replies back on)."""
    client = RawClient(port)
    client.sock.sendall(b"".join(
        b"*%d\r\n" % len(c) + b"".join(b"$%d\r\n%s\r\n" % (len(str(a)), str(a).encode())
                                       for a in c) for c in commands)
        + b"*1\r\n$5\r\nRESET\r\n")
    received = b""
    deadline = time.monotonic() + DEADLINE
    while not received.endswith(b"+RESET\r\n"):
        assert time.monotonic() < deadline
        received += client.sock.recv(65536)
    client.close()
    return received


@pytest.mark.parametrize("commands", [
    [("CLIENT", "REPLY", "OFF"), ("SET", "a", "1"), ("GET", "a"), ("NOSUCH",),
     ("CLIENT", "REPLY", "ON")],
    [("CLIENT", "REPLY", "SKIP"), ("SET", "a", "1"), ("GET", "a")],
    [("CLIENT", "REPLY", "SKIP"), ("NOSUCH",), ("GET", "a")],
    [("CLIENT", "REPLY", "SKIP"), ("CLIENT", "REPLY", "SKIP"), ("GET", "a"), ("GET", "a")],
    [("CLIENT", "REPLY", "SKIP"), ("CLIENT", "REPLY", "ON"), ("GET", "a")],
    [("CLIENT", "REPLY", "OFF"), ("CLIENT", "REPLY", "SKIP"), ("CLIENT", "REPLY", "ON")],
    [("CLIENT", "REPLY", "OFF"), ("SUBSCRIBE", "x"), ("UNSUBSCRIBE",), ("SSUBSCRIBE", "y"),
     ("CLIENT", "REPLY", "ON")],
    [("CLIENT", "REPLY", "SKIP"), ("MULTI",), ("SET", "b", "2"), ("EXEC",)],
    [("CLIENT", "REPLY", "OFF"), ("SET", "a", "1"), ("SET", "b", "2"), ("GET", "a"),
     ("CLIENT", "REPLY", "ON"), ("GET", "b")],
])
def test_client_reply_as_redis(kvrepl_server: ThreadedServer, redis_server: RedisServer,
                               r: redis.Redis, real: redis.Redis,
                               commands: list[tuple[object, ...]]) -> None:
    assert _replies_to(kvrepl_server.port, *commands) == \
        _replies_to(redis_server.port, *commands)


def _link_up(client: redis.Redis) -> bool:
    return client.info("replication").get("master_link_status") == "up"


def test_spublish_reaches_replicas_subscribers(kvrepl_server: ThreadedServer) -> None:
    """kvrepl master -> redis-server replica, and redis-server master -> kvrepl replica: a
    shard subscriber on the replica gets the message published on the master."""
    redis_replica = RedisServer("--replicaof", "127.0.0.1", str(kvrepl_server.port))
    redis_master = RedisServer("--repl-diskless-sync-delay", "0")
    kvrepl_replica = ThreadedServer().start()
    try:
        replica_client = kvrepl_replica.client()
        replica_client.execute_command("REPLICAOF", "127.0.0.1", redis_master.port)
        for master_port, replica in ((kvrepl_server.port, redis_replica),
                                     (redis_master.port, kvrepl_replica)):
            poll(lambda replica=replica: _link_up(replica.client()), "the replica's link is up")
            subscriber = RawClient(replica.port)
            subscriber.call("SSUBSCRIBE", "ch")
            master = RawClient(master_port)
            assert master.call("SPUBLISH", "ch", "hello") == b":0\r\n"
            assert subscriber.read() == b"*3\r\n$8\r\nsmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n"
            for client in (subscriber, master):
                client.close()
        replica_client.close()
    finally:
        kvrepl_replica.stop()
        redis_master.stop()
        redis_replica.stop()


def test_module_load_logs_why(run: Callable[..., object], caplog: pytest.LogCaptureFixture
                              ) -> None:
    with caplog.at_level("WARNING", logger="kvrepl"), pytest.raises(ReplyError):
        run("MODULE", "LOAD", "/opt/redisearch.so")
    assert "Module /opt/redisearch.so failed to load: kvrepl cannot load Redis modules" \
        in caplog.text


def test_lolwut_schotter_rows_exact_over_sizes(wire: Compare) -> None:
    """C float arithmetic reproduced: every size gives Redis's very pixels."""
    for cols in (1, 2, 3, 5, 17, 40, 66, 99, 150):
        for per_row in (1, 2, 3, 7, 8, 13, 50):
            for per_col in (1, 2):
                wire("LOLWUT", "VERSION", "5", cols, per_row, per_col)


def test_latency_percentiles_as_hdr_computes_them() -> None:
    """hdr_histogram's 2 significant digits: 1 us reads 1.003, 1 ms reads 1003.519."""
    counts: dict[int, int] = {}
    for usec, calls in ((1.4, 99), (1000.2, 1)):
        key = latency_key(usec)
        counts[key] = counts.get(key, 0) + calls
    assert percentiles_line(counts, (50.0, 99.0, 99.9)) == "p50=1.003,p99=1.003,p99.9=1003.519"
    assert histogram_reply(counts) == {b"calls": 100, b"histogram_usec": {1: 99, 1056: 100}}
    assert percentiles_line({latency_key(0.2): 1}, (50.0,)) == "p50=0.001"  # 0 us is 1 ns


def test_info_latencystats_as_redis(kvrepl_server: ThreadedServer, redis_server: RedisServer
                                    ) -> None:
    texts = []
    for port in (kvrepl_server.port, redis_server.port):
        client = RawClient(port)
        client.call("CONFIG", "RESETSTAT")
        for _ in range(3):
            client.call("SET", "k", "v")
        reader = hiredis.Reader()
        reader.feed(client.call("INFO", "latencystats"))
        texts.append(reader.gets().decode())
        client.close()
    line = re.compile(r"latency_percentiles_usec_([a-z|]+):p50=\d+\.\d{3},p99=\d+\.\d{3},"
                      r"p99\.9=\d+\.\d{3}")
    names = []
    for text in texts:
        head, *lines = text.strip().split("\r\n")
        assert head == "# Latencystats"
        assert all(line.fullmatch(one) for one in lines)
        names.append(sorted(line.fullmatch(one)[1] for one in lines))  # type: ignore[index]
    assert names[0] == names[1] == ["config|resetstat", "set"]


def test_latency_histogram_long_calls(run: Callable[..., object], engine: Engine) -> None:
    """Calls of a millisecond and more are counted by hdr sub-bucket; beyond half a second
    they land in the last step, which ends where hdr's counts end (1073741 usec)."""
    ping = engine.table[b"ping"]
    for usec in (0.5, 1500.7, 600_000.0, 5_000_000.0):
        ping.record_latency(usec)
    found = run("LATENCY", "HISTOGRAM", "ping")
    assert found[b"ping"] == {b"calls": 4, b"histogram_usec": {1: 1, 2113: 2, 1073741: 4}}


def test_latency_histogram_repeats_a_command_named_twice(
        kvrepl_server: ThreadedServer, redis_server: RedisServer) -> None:
    for protocol in (2, 3):
        shapes = []
        for port in (kvrepl_server.port, redis_server.port):
            client = RawClient(port, protocol)
            client.call("LATENCY", "RESET")
            raw = client.call("LATENCY", "HISTOGRAM", "latency|reset", "LATENCY|RESET")
            shapes.append((raw[:4], re.findall(rb"\$13\r\nlatency\|reset", raw)))
            client.close()
        assert shapes[0] == shapes[1]
        assert len(shapes[0][1]) == 2
