"""Server commands: FLUSHALL FLUSHDB DBSIZE SWAPDB INFO CONFIG COMMAND DEBUG SHUTDOWN
MONITOR, compared with redis-server (and redis-cli) where the output is deterministic."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import hiredis
import pytest
import redis
from support import RedisServer, ThreadedServer, comparer, pack, raw_replies

from kvrepl.commands import server as server_commands
from kvrepl.commands.core import Engine, Session
from kvrepl.commands.info import bytes_to_human, info_text, register_section
from kvrepl.config import Config
from kvrepl.errors import ReplyError
from kvrepl.protocol.replies import Raw, Verbatim, encode

Run = Callable[..., object]


def _sections(text: bytes | str) -> dict[str, list[str]]:
    """INFO text as {heading: [field names]} (data-dependent lines left out)."""
    text = text.decode() if isinstance(text, bytes) else text
    out: dict[str, list[str]] = {}
    heading = ""
    for line in text.split("\r\n"):
        if line.startswith("# "):
            heading = line[2:]
            out[heading] = []
        elif line and not re.match(r"(cmdstat_|errorstat_|latency_percentiles_|db\d+:)", line):
            name = line.split(":", 1)[0]
            if name != "kvrepl_version":
                out[heading].append(name)
    return out


class Plain:
    """A RESP2 connection without redis-py's reply callbacks (which reshape INFO, COMMAND)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.reader = hiredis.Reader()

    def call(self, *args: object) -> object:
        self.sock.sendall(pack(*args))
        while (reply := self.reader.gets()) is False:
            self.reader.feed(self.sock.recv(65536))
        return ("error", str(reply)) if isinstance(reply, hiredis.ReplyError) else reply

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def plain(kvrepl_server: ThreadedServer, redis_server: RedisServer, r: redis.Redis,
          real: redis.Redis) -> Iterator[tuple[Plain, Plain]]:
    """Plain connections to (kvrepl, redis-server), both flushed."""
    pair = (Plain(kvrepl_server.port), Plain(redis_server.port))
    yield pair
    for client in pair:
        client.close()


# -- FLUSHALL FLUSHDB DBSIZE SWAPDB ---------------------------------------------------------


def test_flush_and_dbsize(same: Callable[..., object]) -> None:
    for args in (("FLUSHALL", "foo"), ("FLUSHALL", "SYNC", "x"), ("FLUSHDB", "x")):
        same(*args)
    same("SET", "a", "1")
    same("SELECT", "1")
    same("SET", "b", "1")
    same("SET", "c", "1")
    same("DBSIZE")
    same("FLUSHDB", "ASYNC")
    same("DBSIZE")
    same("SELECT", "0")
    same("DBSIZE")
    same("FLUSHALL", "sync")
    same("DBSIZE")
    same("FLUSHDB")
    same("FLUSHALL")
    same("DBSIZE", "x")


def test_swapdb(same: Callable[..., object], r: redis.Redis, kvrepl_server: ThreadedServer
                ) -> None:
    for args in (("SWAPDB", "0", "99"), ("SWAPDB", "x", "1"), ("SWAPDB", "1", "x"),
                 ("SWAPDB", "99999999999", "0"), ("SWAPDB", "-1", "0"), ("SWAPDB", "0")):
        same(*args)
    same("SET", "k", "in-zero")
    same("SELECT", "1")
    same("SET", "k", "in-one")
    same("SET", "only-one", "x", "PX", "100000")
    same("SWAPDB", "0", "1")
    same("GET", "k")
    same("DBSIZE")
    same("SELECT", "0")
    same("GET", "k")
    same("PTTL", "nope")
    same("EXISTS", "only-one")
    same("SWAPDB", "0", "0")
    other = kvrepl_server.client()  # another client sees the swap at once
    assert other.get("only-one") == b"x"
    other.close()


def test_flush_and_swap_change_counts_and_propagate(engine: Engine, run: Run,
                                                   propagated: list[list[bytes]]) -> None:
    stream = propagated
    dirty = engine.dirty
    run("FLUSHALL")  # nothing to remove: still propagated, so replicas flush too
    run("FLUSHDB", "ASYNC")
    assert engine.dirty == dirty
    run("SET", "a", "1")
    run("SET", "b", "1")
    dirty = engine.dirty
    run("FLUSHALL")
    assert engine.dirty == dirty + 2
    run("SWAPDB", "0", "1")
    assert engine.dirty == dirty + 3
    assert stream == [[b"FLUSHALL"], [b"FLUSHDB", b"ASYNC"], [b"SET", b"a", b"1"],
                      [b"SET", b"b", b"1"], [b"FLUSHALL"], [b"SWAPDB", b"0", b"1"]]


# -- INFO -----------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    (), ("default",), ("all",), ("everything",), ("server",), ("clients",), ("memory",),
    ("persistence",), ("stats",), ("replication",), ("cpu",), ("modules",),
    ("commandstats",), ("errorstats",), ("latencystats",), ("cluster",), ("keyspace",),
    ("KEYSPACE",), ("server", "clients"), ("keyspace", "server"), ("default", "commandstats"),
    ("nosuchsection",), ("all", "nosuchsection"),
])
def test_info_sections_and_fields_match_redis(plain: tuple[Plain, Plain],
                                              args: tuple[str, ...]) -> None:
    ours, theirs = (client.call("INFO", *args) for client in plain)
    assert _sections(ours) == _sections(theirs)  # type: ignore[arg-type]


def test_info_server_reports_redis_and_kvrepl_versions(r: redis.Redis,
                                                       kvrepl_server: ThreadedServer) -> None:
    server = r.info("server")
    assert server["redis_version"] == "7.0.15"
    assert server["kvrepl_version"]
    assert server["tcp_port"] == kvrepl_server.port
    assert server["redis_mode"] == "standalone"
    assert len(server["run_id"]) == 40
    assert r.info("server")["run_id"] == server["run_id"]


def test_info_keyspace_matches_redis_cli(same: Callable[..., object],
                                         kvrepl_server: ThreadedServer,
                                         redis_server: RedisServer) -> None:
    same("SET", "a", "1")
    same("SET", "b", "2")
    same("SELECT", "3")
    same("SET", "c", "3")
    same("SELECT", "0")
    cli = shutil.which("redis-cli")
    if cli is None:
        pytest.skip("redis-cli is not installed")
    outputs = [subprocess.run([cli, "-p", str(port), "INFO", "keyspace"], capture_output=True,
                              check=True, timeout=10).stdout
               for port in (kvrepl_server.port, redis_server.port)]
    assert outputs[0] == outputs[1] == (
        b"# Keyspace\r\ndb0:keys=2,expires=0,avg_ttl=0\r\ndb3:keys=1,expires=0,avg_ttl=0\r\n")


def test_info_keyspace_counts_expires(r: redis.Redis) -> None:
    r.set("a", "1", px=100_000)
    r.set("b", "1")
    keyspace = r.info("keyspace")["db0"]
    assert (keyspace["keys"], keyspace["expires"]) == (2, 1)
    assert 0 < keyspace["avg_ttl"] <= 100_000


def test_info_stats_and_clients_follow_activity(run: Run, engine: Engine) -> None:
    run("SUBSCRIBE", "a")
    run("PSUBSCRIBE", "b*")
    text = info_text(engine, [b"stats", b"clients"])
    assert "\r\npubsub_channels:1\r\n" in text and "\r\npubsub_patterns:1\r\n" in text
    assert "\r\nconnected_clients:1\r\n" in text
    processed = int(re.search(r"total_commands_processed:(\d+)", text).group(1))
    assert processed == 2


def test_info_commandstats_and_errorstats_match_redis(plain: tuple[Plain, Plain]) -> None:
    outputs = []
    for client in plain:
        client.call("CONFIG", "RESETSTAT")
        client.call("SET", "x", "1")
        client.call("GET", "x")
        client.call("GET", "x")
        for args in (("HGET", "x", "f"), ("NOSUCH",), ("INCRBY", "x", "y")):
            assert client.call(*args)[0] == "error"
        text = client.call("INFO", "commandstats", "errorstats")
        cleaned = re.sub(rb"usec=\d+,usec_per_call=[\d.]+,", b"", text)  # type: ignore
        outputs.append(sorted(cleaned.split(b"\r\n")))
    assert outputs[0] == outputs[1]
    assert b"cmdstat_get:calls=2,rejected_calls=0,failed_calls=0" in outputs[0]
    assert b"cmdstat_incrby:calls=1,rejected_calls=0,failed_calls=1" in outputs[0]
    assert b"errorstat_ERR:count=2" in outputs[0]
    assert b"errorstat_WRONGTYPE:count=1" in outputs[0]


def test_info_is_verbatim_in_resp3(kvrepl_server: ThreadedServer) -> None:
    sock = socket.create_connection(("127.0.0.1", kvrepl_server.port), timeout=5)
    sock.sendall(b"HELLO 3\r\nINFO cluster\r\n")
    data = b""
    while not data.endswith(b"cluster_enabled:0\r\n\r\n"):
        data += sock.recv(65536)
    sock.close()
    assert data.endswith(b"=34\r\ntxt:# Cluster\r\ncluster_enabled:0\r\n\r\n")


def test_info_sections_can_be_replaced(engine: Engine) -> None:
    from kvrepl.commands import info

    original = info.SECTIONS["replication"]
    register_section("replication", lambda e: ["role:master", "connected_slaves:7"])
    try:
        assert info_text(engine, [b"replication"]) == (
            "# Replication\r\nrole:master\r\nconnected_slaves:7\r\n")
    finally:
        info.SECTIONS["replication"] = original


def test_bytes_to_human() -> None:
    assert [bytes_to_human(n) for n in (0, 1023, 1024, 1536, 1048576, 3 << 30)] == [
        "0B", "1023B", "1.00K", "1.50K", "1.00M", "3.00G"]


# -- CONFIG ---------------------------------------------------------------------------------


def test_config_errors_match_redis(same: Callable[..., object]) -> None:
    for args in (
        ("CONFIG",), ("CONFIG", "GET"), ("CONFIG", "SET", "hz"), ("CONFIG", "SET", "a", "b", "c"),
        ("CONFIG", "SET", "hz", "10", "hz", "11"), ("CONFIG", "SET", "hz", "10", "HZ", "11"),
        ("CONFIG", "SET", "hz", "abc"), ("CONFIG", "SET", "HZ", "abc"),
        ("CONFIG", "SET", "foo", "bar", "hz", "1"), ("CONFIG", "SET", "hz", "abc", "foo", "bar"),
        ("CONFIG", "SET", "maxmemory", "10x"), ("CONFIG", "SET", "databases", "4"),
        ("CONFIG", "SET", "hash-max-ziplist-entries", "abc"),
        ("CONFIG", "REWRITE"), ("CONFIG", "FOO"), ("CONFIG", "RESETSTAT", "x"),
        ("CONFIG", "GET", "nosuchoption"),
    ):
        same(*args)


def test_config_get_and_set(same: Callable[..., object]) -> None:
    def pairs(*args: object) -> None:  # CONFIG GET's order is a hash table's in Redis
        ours = same(*args, unordered=True)
        assert len(ours) % 2 == 0  # type: ignore[arg-type]

    pairs("CONFIG", "GET", "maxmemory")
    pairs("CONFIG", "GET", "maxmemory", "MAXMEMORY", "Maxmemory-Policy")
    pairs("CONFIG", "GET", "maxmemory-policy", "maxmemory-p*")
    pairs("CONFIG", "GET", "databases", "hz", "nothing", "appendonly")
    pairs("CONFIG", "GET", "repl-backlog-*")
    pairs("CONFIG", "GET", "hash-max-ziplist-entries")
    try:
        same("CONFIG", "SET", "hz", "15", "maxmemory-policy", "allkeys-lru")
        pairs("CONFIG", "GET", "hz", "maxmemory-policy")
        same("CONFIG", "SET", "hz", "20", "maxmemory", "nope")  # all or nothing
        pairs("CONFIG", "GET", "hz", "maxmemory")
        # An alias and its option are two parameters for CONFIG SET: the last one wins.
        same("CONFIG", "SET", "hash-max-listpack-entries", "1", "hash-max-ziplist-entries", "2")
        pairs("CONFIG", "GET", "hash-max-listpack-entries")
        same("CONFIG", "SET", "hash-max-ziplist-entries", "x", "hash-max-listpack-entries", "2")
    finally:
        same("CONFIG", "SET", "maxmemory", "0", "maxmemory-policy", "noeviction", "hz", "10",
              "hash-max-listpack-entries", "128")


def test_config_get_port_with_redis_cli(kvrepl_server: ThreadedServer) -> None:
    cli = shutil.which("redis-cli")
    if cli is None:
        pytest.skip("redis-cli is not installed")
    out = subprocess.run([cli, "-p", str(kvrepl_server.port), "CONFIG", "GET", "port"],
                         capture_output=True, check=True, timeout=10).stdout
    assert out.split() == [b"port", str(kvrepl_server.config.port).encode()]


def test_config_help(same: Callable[..., object]) -> None:
    same("CONFIG", "HELP")


def test_config_resetstat(run: Run, engine: Engine) -> None:
    run("SET", "a", "1")
    with pytest.raises(ReplyError):
        run("NOSUCH")
    run("CONFIG", "RESETSTAT")
    text = info_text(engine, [b"stats", b"commandstats", b"errorstats"])
    assert "total_error_replies:0" in text
    assert "cmdstat_set" not in text and "errorstat_" not in text
    assert "cmdstat_config|resetstat:calls=1," in text


# -- COMMAND --------------------------------------------------------------------------------


# Redis 7.0 commands kvrepl does not serve yet (SCRIPT DEBUG: the Lua debugger).
NOT_YET: set[bytes] = set()


def test_command_count_and_list_cover_the_table(plain: tuple[Plain, Plain],
                                                kvrepl_server: ThreadedServer) -> None:
    table = kvrepl_server.engine.table
    mine, real = plain
    count = mine.call("COMMAND", "COUNT")
    assert count == len(table) == real.call("COMMAND", "COUNT")
    assert len(mine.call("COMMAND", "INFO")) == count  # type: ignore[arg-type]
    assert len(mine.call("COMMAND", "DOCS")) == 2 * count  # type: ignore[arg-type]
    ours = mine.call("COMMAND", "LIST")
    theirs = real.call("COMMAND", "LIST")
    # kvrepl knows every command and subcommand redis-server lists, but these (a failure
    # here when one lands: take it off the list).
    assert set(theirs) - set(ours) == NOT_YET  # type: ignore[arg-type]
    assert set(ours) <= set(theirs)  # type: ignore[arg-type]
    assert len(ours) == len(table) + sum(  # type: ignore[arg-type]
        len(c.subcommands) for c in table.values())
    assert b"config|get" in ours and b"get" in ours  # type: ignore[operator]


@pytest.mark.parametrize("filters", [
    ("FILTERBY", "PATTERN", "z*"), ("FILTERBY", "PATTERN", "CONFIG|*"),
    ("FILTERBY", "ACLCAT", "pubsub"), ("FILTERBY", "ACLCAT", "Transaction"),
    ("FILTERBY", "ACLCAT", "nosuchcat"), ("FILTERBY", "MODULE", "x"),
])
def test_command_list_filters(plain: tuple[Plain, Plain], filters: tuple[str, ...]) -> None:
    mine, real = plain
    every = set(mine.call("COMMAND", "LIST"))  # type: ignore[arg-type]
    ours = mine.call("COMMAND", "LIST", *filters)
    theirs = real.call("COMMAND", "LIST", *filters)
    assert sorted(ours) == sorted(set(theirs) & every)  # type: ignore


def test_command_subcommands_errors_and_help(same: Callable[..., object]) -> None:
    for args in (("COMMAND", "LIST", "FILTERBY", "FOO", "x"), ("COMMAND", "LIST", "x"),
                 ("COMMAND", "LIST", "FILTERBY", "PATTERN"), ("COMMAND", "FOO"),
                 ("COMMAND", "COUNT", "x"), ("COMMAND", "HELP"),
                 ("COMMAND", "GETKEYS"), ("COMMAND", "GETKEYS", "nosuch"),
                 ("COMMAND", "GETKEYS", "get"), ("COMMAND", "GETKEYS", "ping"),
                 ("COMMAND", "GETKEYS", "get", "a"), ("COMMAND", "GETKEYS", "mset", "a", "1", "b"),
                 ("COMMAND", "GETKEYS", "mset", "a", "1", "b", "2"),
                 ("COMMAND", "GETKEYS", "sort", "k", "STORE", "dst"),
                 ("COMMAND", "GETKEYS", "zunionstore", "dst", "2", "a", "b", "WEIGHTS", "1", "2"),
                 ("COMMAND", "GETKEYSANDFLAGS", "set", "a", "b"),
                 ("COMMAND", "GETKEYSANDFLAGS", "lmove", "a", "b", "LEFT", "RIGHT"),
                 ("COMMAND", "GETKEYS", "config", "get", "x")):
        same(*args)


def test_command_info_and_docs_match_redis(same: Callable[..., object]) -> None:
    same("COMMAND", "INFO", "get", "set", "zadd", "blpop", "nosuch", "GET", "get|x", "a|b|c")
    same("COMMAND", "INFO", "config|get", "client|kill", "config|nosuch")
    same("COMMAND", "DOCS", "get", "nosuch", "lpush")
    same("COMMAND", "DOCS", "config|set")


def test_command_without_subcommand_is_command_info(engine: Engine, session: Session) -> None:
    # The handler COMMAND runs with no subcommand (the dispatcher must route it there).
    assert server_commands.command_(session, [b"COMMAND"]) == engine.execute(
        session, [b"COMMAND", b"INFO"])


def test_command_info_lists_only_implemented_subcommands(plain: tuple[Plain, Plain],
                                                         kvrepl_server: ThreadedServer) -> None:
    (entry,) = plain[0].call("COMMAND", "INFO", "client")  # type: ignore[misc]
    names = {sub[0] for sub in entry[9]}
    implemented = {b"client|" + name for name in kvrepl_server.engine.table[b"client"].subcommands}
    assert names == implemented and b"client|list" in names and b"client|tracking" in names


# -- DEBUG ----------------------------------------------------------------------------------


@pytest.fixture
def dbg(kvrepl_server: ThreadedServer, debug_redis: RedisServer
        ) -> Iterator[Callable[..., object]]:
    """``dbg("DEBUG", ...)``: same raw RESP2 reply (or error text) from kvrepl and a
    DEBUG-enabled Redis."""
    clients = [raw_replies(server.client(protocol=2)) for server in (kvrepl_server, debug_redis)]
    for client in clients:
        client.flushall()
    yield comparer(*clients)
    for client in clients:
        client.flushall()
        client.close()


def test_debug_populate(dbg: Callable[..., object]) -> None:
    for args in (("DEBUG", "POPULATE"), ("DEBUG", "POPULATE", "x"), ("DEBUG", "POPULATE", "-1"),
                 ("DEBUG", "POPULATE", "1", "p", "-1"), ("DEBUG", "POPULATE", "1", "p", "x"),
                 ("DEBUG", "POPULATE", "1", "a", "2", "3")):
        dbg(*args)
    dbg("SET", "key:3", "mine")  # existing keys are skipped
    assert dbg("DEBUG", "POPULATE", "10") == b"OK"
    dbg("DBSIZE")
    dbg("GET", "key:3")
    dbg("GET", "key:9")
    dbg("DEBUG", "POPULATE", "3", "padded", "12")
    dbg("GET", "padded:2")
    dbg("DEBUG", "POPULATE", "3", "cut", "4")
    dbg("GET", "cut:1")
    dbg("DEBUG", "POPULATE", "2", "p" * 200)  # snprintf into 128 bytes cuts the key
    dbg("KEYS", "pppp*")
    dbg("DEBUG", "POPULATE", "0")
    dbg("DEBUG", "DIGEST")
    dbg("DEBUG", "DIGEST-VALUE", "key:0", "padded:0", "nope")


def test_debug_misc(dbg: Callable[..., object]) -> None:
    for args in (("DEBUG",), ("DEBUG", "FOO"), ("DEBUG", "DIGEST", "x"), ("DEBUG", "SLEEP"),
                 ("DEBUG", "SLEEP", "0"), ("DEBUG", "SLEEP", "0.001"), ("DEBUG", "SLEEP", "x"),
                 ("DEBUG", "ERROR", "custom failure"), ("DEBUG", "ERROR", "WRONGTYPE it is"),
                 ("DEBUG", "SET-ACTIVE-EXPIRE", "0"), ("DEBUG", "SET-ACTIVE-EXPIRE", "1"),
                 ("DEBUG", "PAUSE-CRON", "1"), ("DEBUG", "PAUSE-CRON", "0"),
                 ("DEBUG", "PAUSE-CRON"),
                 ("DEBUG", "LOG", "hello from the tests"), ("DEBUG", "PROTOCOL", "nope"),
                 ("DEBUG", "DIGEST-VALUE")):
        dbg(*args)


def test_debug_help_lists_a_subset(dbg: Callable[..., object], r: redis.Redis,
                                   debug_redis: RedisServer) -> None:
    ours = r.execute_command("DEBUG", "HELP")
    theirs = debug_redis.client().execute_command("DEBUG", "HELP")
    assert ours[0] == theirs[0] and ours[-2:] == theirs[-2:]
    assert set(ours) <= set(theirs)


@pytest.mark.parametrize("protocol", [2, 3])
def test_debug_protocol_bytes(kvrepl_server: ThreadedServer, debug_redis: RedisServer,
                              protocol: int) -> None:
    kinds = ["string", "integer", "double", "bignum", "null", "array", "set", "map", "attrib",
             "push", "verbatim", "true", "false"]
    outputs = []
    for port in (kvrepl_server.port, debug_redis.port):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        request = b"HELLO %d\r\n" % protocol + b"".join(
            b"DEBUG PROTOCOL %s\r\n" % kind.encode() for kind in kinds) + b"PING\r\n"
        sock.sendall(request)
        data = b""
        while not data.endswith(b"+PONG\r\n"):
            data += sock.recv(65536)
        sock.close()
        outputs.append(data[data.index(b"\r\n", data.index(b"modules")) + 5:])
    assert outputs[0] == outputs[1]


def test_debug_protocol_values(run: Run) -> None:
    assert run("DEBUG", "PROTOCOL", "verbatim") == Verbatim(b"This is a verbatim\nstring")
    assert encode(run("DEBUG", "PROTOCOL", "map"), True) == b"%3\r\n:0\r\n#f\r\n:1\r\n#t\r\n:2\r\n#f\r\n"
    assert type(run("DEBUG", "PROTOCOL", "attrib")) is Raw


# -- SHUTDOWN MONITOR -----------------------------------------------------------------------


def test_shutdown_arguments(same: Callable[..., object]) -> None:
    for args in (("SHUTDOWN", "foo"), ("SHUTDOWN", "ABORT"), ("SHUTDOWN", "SAVE", "NOSAVE"),
                 ("SHUTDOWN", "ABORT", "NOW"), ("SHUTDOWN", "NOSAVE", "x")):
        same(*args)


def test_shutdown_in_process_without_a_server(run: Run) -> None:
    with pytest.raises(ReplyError, match="Errors trying to SHUTDOWN"):
        run("SHUTDOWN", "NOSAVE")


@pytest.mark.parametrize(("args", "save"), [((b"NOSAVE", b"NOW"), False), ((b"SAVE",), True),
                                            ((), None)])
def test_shutdown_stops_the_server_without_replying(args: tuple[bytes, ...],
                                                    save: bool | None, tmp_path: Path) -> None:
    # SHUTDOWN SAVE writes dir/dbfilename: keep it out of the working directory
    server = ThreadedServer(Config(save=(), dir=str(tmp_path))).start()
    try:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        sock.sendall(b" ".join((b"SHUTDOWN", *args)) + b"\r\n")
        assert sock.recv(100) == b""  # closed with no reply, as Redis does
        sock.close()
        assert server.server._shutdown.is_set()
        assert server.server.shutdown_save is save
    finally:
        server.stop()


def test_monitor(kvrepl_server: ThreadedServer, redis_server: RedisServer, r: redis.Redis,
                 real: redis.Redis) -> None:
    line = re.compile(rb'^\+\d+\.\d{6} \[0 127\.0\.0\.1:\d+\] "SET" "mon\\"key" "a\\nb"\r\n$')
    for port, client in ((kvrepl_server.port, r), (redis_server.port, real)):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"MONITOR\r\n")
        assert sock.recv(100) == b"+OK\r\n"
        client.set('mon"key', "a\nb")
        data = b""
        while not data.endswith(b"\r\n"):
            data += sock.recv(65536)
        assert line.match(data), data
        sock.close()


def test_monitor_registration(engine: Engine, run: Run) -> None:
    watcher = engine.new_session()
    assert engine.execute(watcher, [b"MONITOR"]) == b"OK"
    assert engine.execute(watcher, [b"MONITOR"]) == Raw(b"")  # Redis does not reply twice
    assert engine.monitors == [watcher] and watcher.monitor
    run("SET", "k", "v")
    assert len(watcher.pending_out) == 1
    engine.close_session(watcher)
    assert engine.monitors == []


def test_command_info_resp3_bytes_match_redis(wire):
    """Flags and ACL categories are RESP3 sets, in Redis's order."""
    wire("COMMAND", "INFO", "get", "set", "zadd", protocol=3)
    wire("COMMAND", "GETKEYSANDFLAGS", "SET", "k", "v", protocol=3)


def _debug_object_fields(client: redis.Redis, key: str) -> dict[str, str]:
    line = client.execute_command("DEBUG", "OBJECT", key)
    assert line.startswith(b"Value at:0x")
    fields = dict(part.split(b":", 1) for part in line.split()[2:])
    assert int(fields.pop(b"lru")) >= 0 and int(fields.pop(b"lru_seconds_idle")) >= 0
    return {k.decode(): v.decode() for k, v in fields.items()}


def test_debug_object_as_redis(dbg: Callable[..., object], r: redis.Redis,
                               debug_redis: RedisServer) -> None:
    theirs = debug_redis.client()
    for client in (r, theirs):
        client.set("int", 12345)
        client.set("short", "hello")
        client.set("long", "x" * 100)
        client.set("compressible", "ab" * 500)
        client.rpush("small-list", *range(5))
        client.rpush("big-list", *(f"element-{i}" for i in range(3000)))
        client.rpush("plain-list", "a", "b" * 10000, "c")
        client.hset("small-hash", mapping={"a": 1, "b": "two"})
        client.hset("big-hash", mapping={str(i): i for i in range(600)})
        client.sadd("intset", *range(10))
        client.sadd("set", "a", "b", "c")
        client.zadd("small-zset", {"a": 1, "b": 2.5})
        client.zadd("big-zset", {str(i): i / 7 for i in range(200)})
    for key in ("int", "short", "long", "compressible", "small-list", "big-list", "plain-list",
                "small-hash", "big-hash", "intset", "set", "small-zset", "big-zset"):
        assert _debug_object_fields(r, key) == _debug_object_fields(theirs, key), key
    dbg("DEBUG", "OBJECT", "missing")
    dbg("DEBUG", "OBJECT")
