"""The command table metadata (kvrepl.commands.spec) against Redis 7.0.15's own answers."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import DEADLINE, RedisServer

from kvrepl.commands.spec import (
    CommandSpec,
    command_docs_reply,
    command_getkeys_reply,
    command_info_reply,
    has_keys,
    iter_commands,
    key_positions,
    keys_of,
    keys_with_flags,
    load_specs,
    lookup,
    lookup_name,
)
from kvrepl.errors import ReplyError
from kvrepl.protocol.replies import Status, encode


def spec(name: str) -> CommandSpec:
    found = lookup_name(name)
    assert found is not None, name
    return found


def argv(line: str) -> list[bytes]:
    return [b"" if word == '""' else word.encode() for word in line.split()]


def positions(line: str) -> list[int]:
    args = argv(line)
    return key_positions(lookup(args), args)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# (a) the table: values copied from a real redis-server 7.0.15's COMMAND INFO

@pytest.mark.parametrize(
    ("name", "arity", "flags", "first", "last", "step", "categories"),
    [
        ("get", 2, {"readonly", "fast"}, 1, 1, 1, ("@read", "@string", "@fast")),
        ("set", -3, {"write", "denyoom"}, 1, 1, 1, ("@write", "@string", "@slow")),
        ("mset", -3, {"write", "denyoom"}, 1, -1, 2, ("@write", "@string", "@slow")),
        ("zunionstore", -4, {"write", "denyoom", "movablekeys"}, 1, 1, 1,
         ("@write", "@sortedset", "@slow")),
        ("eval", -3, {"noscript", "stale", "skip_monitor", "no_mandatory_keys", "movablekeys"},
         0, 0, 0, ("@slow", "@scripting")),
        ("config|get", -3, {"admin", "noscript", "loading", "stale"}, 0, 0, 0,
         ("@admin", "@slow", "@dangerous")),
        ("xread", -4, {"readonly", "blocking", "movablekeys"}, 0, 0, 0,
         ("@read", "@stream", "@slow", "@blocking")),
        ("migrate", -6, {"write", "movablekeys"}, 3, 3, 1,
         ("@keyspace", "@write", "@slow", "@dangerous")),
        ("ping", -1, {"fast"}, 0, 0, 0, ("@fast", "@connection")),
        ("blmpop", -5, {"write", "blocking", "movablekeys"}, 0, 0, 0,
         ("@write", "@list", "@slow", "@blocking")),
        ("object|encoding", 3, {"readonly"}, 2, 2, 1, ("@keyspace", "@read", "@slow")),
        ("spublish", 3, {"pubsub", "loading", "stale", "fast"}, 1, 1, 1, ("@pubsub", "@fast")),
        ("exec", 1, {"noscript", "loading", "stale", "skip_slowlog"}, 0, 0, 0,
         ("@slow", "@transaction")),
        ("auth", -2, {"noscript", "loading", "stale", "fast", "no_auth", "allow_busy"}, 0, 0, 0,
         ("@fast", "@connection")),
    ],
)
def test_table_matches_redis(name: str, arity: int, flags: set[str], first: int, last: int,
                             step: int, categories: tuple[str, ...]) -> None:
    s = spec(name)
    assert s.name == name
    assert s.arity == arity
    printed = {f.decode() for f in command_info_reply(s)[2]}
    assert printed == flags
    assert (s.first_key, s.last_key, s.step) == (first, last, step)
    assert s.acl_categories == categories


def test_table_shape() -> None:
    specs = load_specs()
    assert len(specs) == 240  # COMMAND COUNT of redis-server 7.0.15
    assert sum(1 for _ in iter_commands()) == 366  # COMMAND LIST
    assert "sentinel" not in specs
    config = specs["config"]
    assert set(config.subcommands) >= {"get", "set", "resetstat", "rewrite"}
    assert config.subcommands["get"].container == "config"
    assert config.subcommands["get"].group == "server"
    assert specs["zadd"].group == "sorted-set"


def test_convenience_flags() -> None:
    assert spec("set").is_write and not spec("set").is_readonly
    assert spec("get").is_readonly and spec("get").is_fast
    assert spec("blpop").is_blocking
    assert spec("flushall").is_write and spec("config|set").is_admin
    assert spec("auth").allows_loading and spec("auth").allows_stale
    assert not spec("ping").allows_loading
    assert spec("auth").no_auth and spec("hello").no_auth
    assert spec("multi").no_script and spec("subscribe").is_pubsub
    # WATCH and MULTI inside MULTI are refused by their own code in 7.0, not by the flag.
    assert spec("save").no_multi and not spec("watch").no_multi
    assert not spec("exec").skip_monitor
    assert spec("eval").skip_monitor and spec("eval").movable_keys
    assert spec("eval").may_replicate and "may_replicate" in spec("eval").flags
    assert not spec("get").movable_keys


def test_lookup() -> None:
    assert lookup(argv("GET k")) is spec("get")
    assert lookup(argv("config GET maxmemory")) is spec("config|get")
    assert lookup(argv("CONFIG")) is spec("config")
    assert lookup(argv("config nosuch")) is None
    assert lookup(argv("nosuch")) is None
    assert lookup([]) is None
    assert lookup_name("CONFIG|Get") is spec("config|get")
    assert lookup_name("get|x") is None
    assert lookup_name("config|get|x") is None


# --------------------------------------------------------------------------------------------
# (b) key positions

@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("GET k", [1]),
        ("MSET k1 v1 k2 v2", [1, 3]),
        ("DEL a b c", [1, 2, 3]),
        ("ZUNIONSTORE dest 2 a b WEIGHTS 1 2", [1, 3, 4]),
        ("LMPOP 2 a b LEFT", [2, 3]),
        ("BLMPOP 0 2 a b LEFT", [3, 4]),
        ("SORT src", [1]),
        ("SORT src BY w_* GET g_* STORE dst LIMIT 0 1", [1, 7]),
        ("SORT src STORE a STORE b", [1, 5]),  # the last STORE wins, as in SORT
        ("SORT src GET store STORE dst", [1, 5]),  # GET's argument is skipped
        ("SORT_RO src BY w", [1]),
        ("XREAD STREAMS a b 0 0", [2, 3]),
        ("XREAD COUNT 2 BLOCK 0 STREAMS a b 0 0", [6, 7]),
        ("XREADGROUP GROUP g c STREAMS s >", [5]),
        ("EVAL script 2 k1 k2 a1", [3, 4]),
        ("EVAL script 0 a1", []),
        ("FCALL f 1 k a", [3]),
        ("MIGRATE host 6379 key 0 5000", [3]),
        ('MIGRATE host 6379 "" 0 5000 COPY AUTH pw KEYS a b', [10, 11]),
        ('MIGRATE host 6379 "" 0 5000 AUTH keys KEYS a', [9]),
        ("GEORADIUS k 0 0 1 km STORE dst", [1, 7]),
        ("OBJECT ENCODING k", [2]),
        ("SET k v GET", [1]),
        ("BITFIELD k GET u8 0", [1]),
        ("RENAME a b", [1, 2]),
        ("SMOVE a b m", [1, 2]),
        ("SPUBLISH chan msg", []),  # a not_key spec: a channel, not a key
        ("PING", []),
        ("CONFIG GET maxmemory", []),
    ],
)
def test_key_positions(line: str, expected: list[int]) -> None:
    assert positions(line) == expected


def test_keys_of_and_flags() -> None:
    args = argv("ZUNIONSTORE dest 2 a b")
    assert keys_of(spec("zunionstore"), args) == [b"dest", b"a", b"b"]
    assert keys_with_flags(spec("zunionstore"), args) == [
        (1, ("OW", "update")), (3, ("RO", "access")), (4, ("RO", "access"))]
    assert keys_with_flags(spec("set"), argv("SET k v GET")) == [(1, ("RW", "access", "update"))]
    assert keys_with_flags(spec("set"), argv("SET k v")) == [(1, ("OW", "update"))]


def test_duplicate_positions_are_removed() -> None:
    assert positions("MSET a 1 a 2") == [1, 3]  # positions differ: both kept
    assert keys_of(spec("mset"), argv("MSET a 1 a 2")) == [b"a", b"a"]


@pytest.mark.parametrize(
    "line",
    [
        "GET", "MSET", "MSET a", "MSET a 1 b", "ZUNIONSTORE", "ZUNIONSTORE d", "ZUNIONSTORE d 5 a",
        "ZUNIONSTORE d -1 a", "ZUNIONSTORE d x a", "ZUNIONSTORE d 02 a b", "EVAL", "EVAL s",
        "EVAL s 3 a", "EVAL s 99999999999999999999999 a", "LMPOP", "LMPOP 0", "BLMPOP 0",
        "XREAD", "XREAD STREAMS", "XREAD STREAMS a", "XREAD COUNT", "XREADGROUP GROUP",
        "MIGRATE", "MIGRATE h", 'MIGRATE h p "" 0 5000 KEYS', "MIGRATE h p k 0 5000 KEYS a",
        "SORT", "SORT k STORE", "SORT k LIMIT", "GEORADIUS", "OBJECT", "OBJECT ENCODING",
        "BITFIELD", "SET", "XREAD STREAMS streams streams",
    ],
)
def test_short_or_odd_argv_does_not_raise(line: str) -> None:
    args = argv(line)
    s = lookup(args) or load_specs()[args[0].decode().lower()]
    found = key_positions(s, args)
    assert all(0 < i < len(args) for i in found)


def test_bad_numkeys_gives_no_keys() -> None:
    # Redis finds no keys when the command will reply with an error.
    assert positions("ZUNIONSTORE d 5 a") == []
    assert positions("EVAL s 3 a") == []
    assert positions("XREAD STREAMS a") == []


_WORDS = st.sampled_from([b"a", b"0", b"1", b"2", b"-1", b"STORE", b"KEYS", b"STREAMS", b"GET",
                          b"BY", b"LIMIT", b"COUNT", b"GROUP", b"", b"AUTH", b"SET", b"x"])
_SPECS = [s for s in iter_commands() if not s.subcommands]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_SPECS), st.lists(_WORDS, max_size=8))
def test_key_positions_never_raise(s: CommandSpec, rest: list[bytes]) -> None:
    args = [s.name.split("|")[0].encode(), *rest]
    found = key_positions(s, args)
    assert all(0 < i < len(args) for i in found)
    assert len(set(found)) == len(found)


def test_command_getkeys_reply() -> None:
    assert command_getkeys_reply(argv("MSET a 1 b 2")) == [b"a", b"b"]
    assert command_getkeys_reply(argv("EVAL s 0")) == []  # no_mandatory_keys
    assert command_getkeys_reply(argv("SET k v"), with_flags=True) == [
        [b"k", [Status(b"OW"), Status(b"update")]]]
    with pytest.raises(ReplyError, match="Invalid command specified"):
        command_getkeys_reply(argv("NOSUCH a"))
    with pytest.raises(ReplyError, match="The command has no key arguments"):
        command_getkeys_reply(argv("PING x"))
    with pytest.raises(ReplyError, match="Invalid number of arguments"):
        command_getkeys_reply(argv("GET a b"))
    with pytest.raises(ReplyError, match="Invalid arguments specified"):
        command_getkeys_reply(argv("ZUNIONSTORE d 5 a"))
    assert has_keys(spec("sort")) and not has_keys(spec("spublish"))


def test_replies_encode_in_both_protocols() -> None:
    for s in iter_commands():
        assert encode([command_info_reply(s)]).startswith(b"*1\r\n*10\r\n")
        encode([command_info_reply(s)], resp3=True)
        encode({s.name.encode(): command_docs_reply(s)}, resp3=True)


# --------------------------------------------------------------------------------------------
# (c) byte-for-byte against a real redis-server


class _Resp2Reader:
    """Reads one RESP2 reply: its raw bytes, and a parsed form for reordering."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> None:
        data = self.sock.recv(1 << 16)
        if not data:
            raise ConnectionError("redis-server closed the connection")
        self.buf += data

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read(self) -> tuple[bytes, Any]:
        line = self._line()
        kind, rest = line[:1], line[1:]
        raw = line + b"\r\n"
        if kind == b"+":
            return raw, Status(rest)
        if kind == b"-":
            return raw, ReplyError(rest.decode())
        if kind == b":":
            return raw, int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return raw, None
            while len(self.buf) < size + 2:
                self._fill()
            data, self.buf = self.buf[:size], self.buf[size + 2:]
            return raw + data + b"\r\n", data
        if kind == b"*":
            items = []
            for _ in range(int(rest)):
                item_raw, item = self.read()
                raw += item_raw
                items.append(item)
            return raw, items
        raise AssertionError(f"unexpected reply line {line!r}")


class _Redis:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        self.reader = _Resp2Reader(self.sock)

    def call(self, *args: bytes) -> tuple[bytes, Any]:
        self.sock.sendall(b"*%d\r\n" % len(args)
                          + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
        return self.reader.read()


@pytest.fixture(scope="module")
def oracle(redis_server: RedisServer) -> Iterator[_Redis]:
    """A raw connection to the session's redis-server (support.RedisServer: a port taken
    before it bound, or a slow start on a loaded host, is handled there)."""
    client = _Redis(redis_server.port)
    yield client
    client.sock.close()


INFO_COMMANDS = [
    "get", "set", "mset", "zunionstore", "eval", "xread", "xreadgroup", "blmpop", "lmpop",
    "config", "object", "client", "ping", "sort", "sort_ro", "migrate", "georadius",
    "bitfield", "spublish", "subscribe", "exec", "auth", "fcall", "config|get", "object|encoding",
    "client|kill", "nosuchcommand",
]
DOCS_COMMANDS = [
    "get", "set", "migrate", "zunionstore", "xread", "georadius", "config|get", "config",
    "object", "client|kill",
]


def _sort_subcommands(entry: list[Any]) -> list[Any]:
    # Redis walks the subcommands in hash-table order, which changes from process to process.
    if entry and entry[9]:
        entry[9] = sorted(entry[9], key=lambda sub: sub[0])
    return entry


def _sort_map(flat: list[Any]) -> list[Any]:
    pairs = sorted(zip(flat[::2], flat[1::2], strict=True), key=lambda pair: pair[0])
    return [item for pair in pairs for item in pair]


@pytest.mark.redis_server
def test_command_info_bytes(oracle: _Redis) -> None:
    for name in INFO_COMMANDS:
        raw, parsed = oracle.call(b"COMMAND", b"INFO", name.encode())
        s = lookup_name(name)
        ours = encode([None if s is None else command_info_reply(s)])
        if s is not None and s.subcommands:
            raw = encode([_sort_subcommands(parsed[0])])
        assert ours == raw, name


@pytest.mark.redis_server
def test_command_info_all_bytes(oracle: _Redis) -> None:
    raw, parsed = oracle.call(b"COMMAND")
    theirs = sorted(encode(_sort_subcommands(entry)) for entry in parsed)
    ours = sorted(encode(command_info_reply(s)) for s in load_specs().values())
    assert ours == theirs


@pytest.mark.redis_server
def test_command_docs_bytes(oracle: _Redis) -> None:
    for name in DOCS_COMMANDS:
        raw, parsed = oracle.call(b"COMMAND", b"DOCS", name.encode())
        s = spec(name)
        ours = encode({s.name.encode(): command_docs_reply(s)})
        if s.subcommands:
            doc = parsed[1]
            at = doc.index(b"subcommands") + 1
            doc[at] = _sort_map(doc[at])
            raw = encode(parsed)
        assert ours == raw, name


@pytest.mark.redis_server
def test_command_count_and_list(oracle: _Redis) -> None:
    assert oracle.call(b"COMMAND", b"COUNT")[1] == len(load_specs())
    names = oracle.call(b"COMMAND", b"LIST")[1]
    assert sorted(names) == sorted(s.name.encode() for s in iter_commands())


@pytest.mark.redis_server
@pytest.mark.parametrize("line", [
    "GET k", "MSET a 1 b 2", "ZUNIONSTORE d 2 a b WEIGHTS 1 2", "ZUNIONSTORE d 5 a",
    "EVAL s 0", "EVAL s 2 k1 k2 a", "LMPOP 2 a b LEFT", "BLMPOP 0 2 a b LEFT",
    "SORT s BY w GET g STORE d", "SORT_RO s", "XREAD COUNT 1 STREAMS a b 0 0",
    'MIGRATE h 1 "" 0 5000 AUTH keys KEYS a b', "MIGRATE h 1 k 0 5000", "OBJECT ENCODING k",
    "GEORADIUS k 0 0 1 km STORE d STOREDIST e", "SET k v GET", "BITFIELD k GET u8 0",
    "PING x", "SPUBLISH c m", "GET a b", "NOSUCH a", "CONFIG GET x",
])
def test_command_getkeys_bytes(oracle: _Redis, line: str) -> None:
    args = argv(line)
    for sub, with_flags in ((b"GETKEYS", False), (b"GETKEYSANDFLAGS", True)):
        raw, _ = oracle.call(b"COMMAND", sub, *args)
        try:
            ours = encode(command_getkeys_reply(args, with_flags))
        except ReplyError as err:
            ours = encode(err)
        assert ours == raw, (line, sub)
