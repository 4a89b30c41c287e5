"""Hypothesis-driven differential runs: random command sequences over every type, sent to
kvrepl and to a real redis-server 7.0 alike.

Each example starts from two empty servers, runs one drawn sequence over a small key space
(so that commands collide: WRONGTYPE paths, encoding conversions, empty-collection deletion,
overwrites, MULTI/EXEC, RENAME/COPY/MOVE/SORT/*STORE across types and databases), over RESP2
or RESP3, and compares every reply as a typed RESP tree (only the replies that are sets in
disguise are sorted). Afterwards every key of every database used must agree: TYPE,
OBJECT ENCODING, TTL, DEBUG DIGEST-VALUE, the value as read back, DUMP payloads where the
encoding makes them deterministic, and DEBUG DIGEST of the whole dataset. A sequence is sent
either a command at a time or as one pipeline (kvrepl's request splitter and plain lane).

Each master also has a replica of the other kind (a redis-server replica of the kvrepl
master, a kvrepl replica of the redis-server master): once its offset reaches its master's,
the replica must hold the same DEBUG DIGEST (values and absolute expiry times: what proves
the propagated rewrites) and the same stream groups (for the kvrepl replica: those a
redis-server replica of the same master holds), and have met no error in the stream.

No clock enters a reply: stream IDs are explicit (or ``ms-*``), expiries are either far
away (compared with a tolerance) or already past (the key is gone on both servers at once,
for every command that looks it up; DBSIZE, which counts such a key until active expiry
samples it, is left out), replies that count from the present (TTL, EXPIRETIME...) are
compared with a tolerance, and the idle times of stream consumers are left out. The suite
runs a modest number of examples; ``KVREPL_DIFF_EXAMPLES`` (``make fuzz`` sets it) runs more.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import takewhile
from pathlib import Path
from typing import NamedTuple

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import RawClient, RedisServer, ThreadedServer, pack, poll, reply_end

import kvrepl.commands
from kvrepl.config import Config

EXAMPLES = int(os.environ.get("KVREPL_DIFF_EXAMPLES", "25"))
# Small encoding thresholds, the same on both servers: short sequences cross them. Not
# list-max-listpack-size: where Redis cuts a list into quicklist nodes depends on the list's
# history (pushes at either end, inserts, SORT STORE's default fill), while kvrepl packs the
# nodes of a DUMP from the contents; with the default 8 kB nodes, both have one node here.
SMALL = {
    "hash-max-listpack-entries": "4", "zset-max-listpack-entries": "4",
    "set-max-intset-entries": "4",
    "hash-max-listpack-value": "16", "zset-max-listpack-value": "16",
    "hll-sparse-max-bytes": "60", "stream-node-max-entries": "3",
    # DUMP payloads are compared byte for byte: LZF output is not (two compressors may
    # compress the same string differently and both decode either; see kvrepl/rdb/lzf.py).
    "rdbcompression": "no",
}
DATABASES = 3

# -- the servers ------------------------------------------------------------------------------


class Servers(NamedTuple):
    """The ports of the two masters, and of each one's replica of the other kind."""

    ours: int  # kvrepl
    real: int  # redis-server
    real_of_ours: int  # a redis-server replica of the kvrepl master
    ours_of_real: int  # a kvrepl replica of the redis-server master
    real_of_real: int  # a redis-server replica of the redis-server master: what it sends


def link_up(port: int) -> None:
    """Wait until the replica on ``port`` says its link to its master is up."""
    client = redis.Redis(port=port)
    try:
        poll(lambda: client.info("replication")["master_link_status"] == "up",
             f"the replica on {port} is up")
    finally:
        client.close()


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    """The servers of :func:`differential_servers`, for this module."""
    with differential_servers() as ports:
        yield ports


@contextmanager
def differential_servers() -> Iterator[Servers]:
    """A kvrepl server and a redis-server with the same small thresholds and DEBUG on, each
    the master of a replica of the other kind: every sequence also proves that what each
    master propagates (its rewrites: absolute expiry times, pops as the elements popped...)
    makes a replica of the other implementation hold the same data."""
    extra = [arg for name, value in SMALL.items() for arg in (f"--{name}", value)]
    debug = ("--enable-debug-command", "yes", "--repl-diskless-sync-delay", "0")

    def kvrepl_server() -> ThreadedServer:
        return ThreadedServer(Config(save=(), repl_diskless_sync_delay=0,
                                     enable_debug_command="yes",
                                     **{name.replace("-", "_"): value
                                        for name, value in SMALL.items()})).start()

    started: list[RedisServer | ThreadedServer] = []
    try:
        real = RedisServer(*debug, *extra)
        started.append(real)
        ours = kvrepl_server()
        started.append(ours)
        real_of_ours = RedisServer(*debug, *extra, "--replicaof", "127.0.0.1", str(ours.port))
        started.append(real_of_ours)
        ours_of_real = kvrepl_server()
        started.append(ours_of_real)
        RawClient(ours_of_real.port).call("REPLICAOF", "127.0.0.1", real.port)
        real_of_real = RedisServer(*debug, *extra, "--replicaof", "127.0.0.1", str(real.port))
        started.append(real_of_real)
        for master in (ours, real):
            control = RawClient(master.port)
            # Every notification, and no active expiry: a key whose time has passed goes
            # when a command looks it up, at the same step on both (its "expired" event too).
            control.call("CONFIG", "SET", "notify-keyspace-events", NOTIFY_CLASSES)
            control.call("DEBUG", "SET-ACTIVE-EXPIRE", "0")
            control.close()
        for replica in (real_of_ours, ours_of_real, real_of_real):
            link_up(replica.port)
        yield Servers(ours.port, real.port, real_of_ours.port, ours_of_real.port,
                      real_of_real.port)
    finally:
        for server in reversed(started):
            server.stop()


# -- replies as typed trees -------------------------------------------------------------------

Node = tuple[bytes, object]


def parse(buf: bytes, pos: int = 0) -> tuple[Node, int]:
    """The RESP2/RESP3 reply at ``pos`` as ``(type byte, payload)`` and where it ends;
    aggregates hold their children, a map its flattened key/value children."""
    line_end = buf.index(b"\r\n", pos)
    kind, head, after = buf[pos:pos + 1], buf[pos + 1:line_end], line_end + 2
    if kind in (b"$", b"=", b"!"):
        count = int(head)
        if count < 0:
            return (kind, None), after
        return (kind, buf[after:after + count]), after + count + 2
    if kind in (b"*", b"~", b">", b"%", b"|"):
        count = int(head)
        if count < 0:
            return (kind, None), after
        children = []
        for _ in range(count * (2 if kind in (b"%", b"|") else 1)):
            child, after = parse(buf, after)
            children.append(child)
        return (kind, children), after
    return (kind, head), after


class Conn(RawClient):
    """A raw connection whose replies come back as typed trees."""

    def call_tree(self, *args: object) -> Node:
        self.send(*args)
        return self.read_tree()

    def pipeline_trees(self, commands: list[tuple[str, ...]]) -> list[Node]:
        """The replies of ``commands`` sent in one write, as a client's pipeline."""
        self.sock.sendall(b"".join(pack(*argv) for argv in commands))
        return [self.read_tree() for _ in commands]

    def read_tree(self) -> Node:
        """The next reply."""
        while (end := reply_end(self.buf)) is None:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("server closed the connection")
            self.buf += data
        tree, _ = parse(self.buf[:end])
        self.buf = self.buf[end:]
        return tree


# Replies whose order is a hash table's: compared as multisets (pairs for the maps).
SETS = {"SMEMBERS", "SINTER", "SUNION", "SDIFF", "HKEYS", "HVALS", "KEYS", "SPOP",
        "SRANDMEMBER", "HRANDFIELD"}  # (these two drawn with a count above the size: all)
PAIRS = {"HGETALL"}
# [cursor, items]: the items in a hash table's order (all of them: COUNT covers them).
SCANS = {"SCAN", "HSCAN", "SSCAN", "ZSCAN"}
# Replies drawn at random: only their size must agree.
RANDOM = {"ZRANDMEMBER"}


# Replies that count time from the instant each server ran the command: integers compared
# with a tolerance (the two servers run it a few microseconds apart).
CLOCKED = {"TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME"}


def normalize(name: str, tree: Node, argv: tuple[str, ...] = ()) -> Node:
    """``tree`` with what may rightly differ between the servers taken out: a hash table's
    order, a random draw's members, a clock's value."""
    kind, payload = tree
    if name in CLOCKED and kind == b":" and int(payload) > 0:
        return (b"clock", (int(payload), 1000 if name.startswith("P") else 1))
    if name == "XINFO":
        return without_clock(without_idle(tree))
    if name == "XPENDING" and len(argv) > 3:
        return without_pending_idle(tree)
    if not isinstance(payload, list):
        return tree
    if name in SCANS and len(payload) == 2 and isinstance(payload[1][1], list):
        items = payload[1][1]
        if name in ("HSCAN", "ZSCAN") and "NOVALUES" not in argv:
            items = [tuple(items[i:i + 2]) for i in range(0, len(items), 2)]
        return (kind, [payload[0], (payload[1][0], sorted(items, key=repr))])
    if name in RANDOM:
        return (kind, len(payload))
    if name in SETS:
        return (kind, sorted(payload, key=repr))
    if name in PAIRS:
        pairs = [tuple(payload[i:i + 2]) for i in range(0, len(payload), 2)]
        return (kind, sorted(pairs, key=repr))
    return tree


# -- the commands -----------------------------------------------------------------------------

KEY_NAMES = ["a", "b", "c", "d"]
key = st.sampled_from(KEY_NAMES)
member = st.sampled_from(["m1", "m2", "m3", "1", "2", "-5", "17", "x" * 20])
value = st.sampled_from(["v", "12", "-7", "3.5", "hello world", "y" * 50, "", "10000000000"])
small = st.integers(-3, 6).map(str)
score = st.sampled_from(["1", "2.5", "-1", "0", "inf", "-inf", "3", "1e3", "-0.5"])
sid = st.builds(lambda ms, seq: f"{ms}-{seq}", st.integers(0, 30), st.integers(0, 2))
sid_or_auto = st.one_of(sid, st.integers(0, 30).map(lambda ms: f"{ms}-*"))
group = st.sampled_from(["g1", "g2"])
consumer = st.sampled_from(["alice", "bob"])
lon = st.sampled_from(["13.361389", "15.087269", "-122.27652", "0", "179.9"])
lat = st.sampled_from(["38.115556", "37.502669", "37.805186", "0", "-85.05"])
bitfield_type = st.sampled_from(["i5", "u4", "i8", "u1", "i16"])
far_ttl = st.sampled_from(["1000", "5000", "100000"])


# Each command's family (Redis's command groups: "stream", "sorted-set"...), so that an
# example may draw from one or two families only: a consumer group needs XADD, XGROUP CREATE
# and XREADGROUP on one key, which a sequence drawn from all the vocabulary seldom holds.
GROUPS = json.loads((Path(kvrepl.commands.__file__).parent / "redis_commands.json").read_text())
FAMILIES: dict[str, list[st.SearchStrategy[tuple[str, ...]]]] = {}


def _args(name: str | st.SearchStrategy[str], *parts: object
          ) -> st.SearchStrategy[tuple[str, ...]]:
    return st.tuples(*(p if isinstance(p, st.SearchStrategy) else st.just(p)
                       for p in (name, *parts)))


def _register(name: str | st.SearchStrategy[str], family: str | None,
              strategy: st.SearchStrategy[tuple[str, ...]]) -> st.SearchStrategy[tuple[str, ...]]:
    if family is None:
        spec = GROUPS.get(name.lower()) if isinstance(name, str) else None
        family = spec["group"] if spec else "generic"
    FAMILIES.setdefault(family, []).append(strategy)
    return strategy


def c(name: str | st.SearchStrategy[str], *parts: object,
      family: str | None = None) -> st.SearchStrategy[tuple[str, ...]]:
    """A command: its name (or a strategy of names: then its ``family`` is given), then
    strategies (or constants) for its arguments."""
    return _register(name, family, _args(name, *parts))


COMMANDS = [
    # strings and counters
    c("SET", key, value), c("SET", key, value, "EX", far_ttl), c("SET", key, value, "NX"),
    c("SET", key, value, "XX", "GET"), c("SET", key, value, "KEEPTTL"),
    c("SET", key, value, "PXAT", "1"), c("GET", key), c("APPEND", key, value),
    c("INCR", key), c("INCRBY", key, small), c("DECRBY", key, small),
    c("INCRBYFLOAT", key, "1.5"), c("STRLEN", key), c("GETRANGE", key, "0", small),
    c("SETRANGE", key, small.map(lambda n: str(abs(int(n)))), value), c("MSET", key, value, key, value),
    c("MSETNX", key, value, key, value), c("MGET", key, key), c("GETDEL", key),
    c("GETEX", key, "PERSIST"), c("GETEX", key, "EX", far_ttl), c("GETSET", key, value),
    c("SETNX", key, value), c("LCS", key, key), c("LCS", key, key, "IDX", "WITHMATCHLEN"),
    # keys and expiry
    c("DEL", key, key), c("UNLINK", key), c("EXISTS", key, key), c("TYPE", key),
    # (GT and LT with relative times: absolute ones below. A relative time compared with one
    # set a moment earlier from the same number is greater when the clock's millisecond
    # ticked between the two commands, on either server: a reply the clock decides.)
    c("EXPIRE", key, far_ttl), c("EXPIRE", key, far_ttl, st.sampled_from(["NX", "XX"])),
    c("PEXPIRE", key, "500000"), c("EXPIREAT", key, "1"), c("PEXPIREAT", key, "4000000000000"),
    c("PERSIST", key), c("EXPIRETIME", key), c("OBJECT", "ENCODING", key),
    c("RENAME", key, key), c("RENAMENX", key, key), c("COPY", key, key),
    c("COPY", key, key, "REPLACE"), c("COPY", key, key, "DB", st.sampled_from(["1", "2"])),
    c("MOVE", key, st.sampled_from(["0", "1", "2"])),
    c("SELECT", st.sampled_from(["0", "0", "1", "2"])), c("SWAPDB", "0", st.sampled_from(["1", "2"])),
    c("KEYS", "*"),
    # lists
    c("LPUSH", key, member, value), c("RPUSH", key, member), c("LPUSHX", key, member),
    c("LPOP", key), c("RPOP", key, small.map(lambda n: str(abs(int(n))))),
    c("LRANGE", key, "0", "-1"), c("LINDEX", key, small), c("LSET", key, small, member),
    c("LREM", key, small, member), c("LTRIM", key, "1", "-2"),
    c("LINSERT", key, st.sampled_from(["BEFORE", "AFTER"]), member, value),
    c("LPOS", key, member, "RANK", st.sampled_from(["1", "-1", "2"])),
    c("LMOVE", key, key, st.sampled_from(["LEFT", "RIGHT"]), st.sampled_from(["LEFT", "RIGHT"])),
    c("LMPOP", "2", key, key, "LEFT", "COUNT", "2"), c("LLEN", key),
    c("BLPOP", key, key, "0.01"), c("BRPOPLPUSH", key, key, "0.01"),
    # hashes
    c("HSET", key, member, value), c("HSET", key, member, value, "f2", "1"), c("HGET", key, member),
    c("HDEL", key, member), c("HLEN", key), c("HINCRBY", key, "cnt", small),
    c("HINCRBYFLOAT", key, "fl", "0.25"), c("HGETALL", key), c("HKEYS", key), c("HVALS", key),
    c("HMGET", key, member, "f2"), c("HSETNX", key, member, value), c("HEXISTS", key, member),
    c("HSTRLEN", key, member),
    # sets
    c("SADD", key, member, member), c("SREM", key, member), c("SMEMBERS", key),
    c("SISMEMBER", key, member), c("SCARD", key), c("SINTER", key, key), c("SUNION", key, key),
    c("SDIFF", key, key), c("SUNIONSTORE", key, key, key), c("SINTERSTORE", key, key, key),
    c("SDIFFSTORE", key, key, key), c("SINTERCARD", "2", key, key), c("SMOVE", key, key, member),
    c("SMISMEMBER", key, member, "1"), c("SPOP", key, "100"),
    # sorted sets
    c("ZADD", key, score, member), c("ZADD", key, st.sampled_from(["GT", "LT", "NX", "XX"]), "CH",
                                       score, member),
    c("ZINCRBY", key, "2", member), c("ZREM", key, member), c("ZCARD", key), c("ZSCORE", key, member),
    c("ZRANK", key, member), c("ZREVRANK", key, member), c("ZRANGE", key, "0", "-1", "WITHSCORES"),
    c("ZRANGE", key, "(1", "+inf", "BYSCORE", "LIMIT", "0", "2"),
    c("ZRANGE", key, "[a", "+", "BYLEX", "REV"), c("ZRANGEBYSCORE", key, "-inf", "+inf"),
    c("ZCOUNT", key, "0", "10"), c("ZPOPMIN", key), c("ZPOPMAX", key, "2"),
    c("ZUNIONSTORE", key, "2", key, key, "WEIGHTS", "2", "1"),
    c("ZINTERSTORE", key, "2", key, key, "AGGREGATE", st.sampled_from(["MIN", "MAX", "SUM"])),
    c("ZDIFFSTORE", key, "2", key, key), c("ZUNION", "2", key, key, "WITHSCORES"),
    c("ZINTER", "2", key, key), c("ZRANGESTORE", key, key, "0", "1"),
    c("ZREMRANGEBYRANK", key, "0", "0"), c("ZREMRANGEBYSCORE", key, "-inf", "1"),
    c("ZLEXCOUNT", key, "-", "+"), c("ZMSCORE", key, member, "m1"), c("ZMPOP", "1", key, "MIN"),
    c("BZPOPMIN", key, "0.01"),
    # SORT
    c("SORT", key), c("SORT", key, "ALPHA", "DESC", "LIMIT", "0", "3"),
    c("SORT", key, "ALPHA", "STORE", key), c("SORT", key, "GET", "#", "GET", "a"),
    c("SORT_RO", key, "ALPHA"),
    # bitmaps
    c("SETBIT", key, small.map(lambda n: str(abs(int(n)) * 3)), st.sampled_from(["0", "1"])),
    c("GETBIT", key, "3"), c("BITCOUNT", key), c("BITCOUNT", key, "0", small, "BIT"),
    c("BITPOS", key, st.sampled_from(["0", "1"]), "0", small),
    c("BITOP", st.sampled_from(["AND", "OR", "XOR"]), key, key, key), c("BITOP", "NOT", key, key),
    c("BITFIELD", key, "INCRBY", bitfield_type, small.map(lambda n: str(abs(int(n)))), small),
    c("BITFIELD", key, "OVERFLOW", st.sampled_from(["WRAP", "SAT", "FAIL"]), "INCRBY",
      bitfield_type, "#1", "100"),
    c("BITFIELD", key, "SET", bitfield_type, "#0", small, "GET", "u8", "0"),
    c("BITFIELD_RO", key, "GET", bitfield_type, "2"),
    # HyperLogLog
    c("PFADD", key, member, value), c("PFADD", key, *[f"e{i}" for i in range(12)]),
    c("PFCOUNT", key), c("PFCOUNT", key, key), c("PFMERGE", key, key, key),
    # geo
    c("GEOADD", key, lon, lat, member), c("GEOADD", key, "CH", "XX", lon, lat, member),
    c("GEODIST", key, member, member, st.sampled_from(["m", "km", "mi"])), c("GEOHASH", key, member),
    c("GEOPOS", key, member, "m2"),
    c("GEOSEARCH", key, "FROMLONLAT", "15", "37", "BYRADIUS", "400", "km", "ASC", "WITHDIST",
      "WITHCOORD"),
    c("GEOSEARCH", key, "FROMMEMBER", member, "BYBOX", "5000", "5000", "km", "DESC", "COUNT", "2",
      "WITHHASH"),
    c("GEOSEARCHSTORE", key, key, "FROMLONLAT", "15", "37", "BYRADIUS", "300", "km",
      st.sampled_from(["STOREDIST", "ASC"])),
    c("GEORADIUS_RO", key, "15", "37", "200", "km", "WITHDIST", "ASC"),
    # streams and consumer groups
    c("XADD", key, sid_or_auto, member, value),
    c("XADD", key, "MAXLEN", st.sampled_from(["~", "="]), "2", sid, member, value),
    c("XADD", key, "NOMKSTREAM", "MINID", "=", sid, sid, member, value),
    c("XLEN", key), c("XDEL", key, sid), c("XRANGE", key, "-", "+", "COUNT", "3"),
    c("XREVRANGE", key, "+", "-"), c("XTRIM", key, "MAXLEN", small.map(lambda n: str(abs(int(n))))),
    c("XTRIM", key, "MINID", sid), c("XREAD", "COUNT", "2", "STREAMS", key, sid),
    c("XGROUP", "CREATE", key, group, st.sampled_from(["0", "$", "5-0"]), "MKSTREAM"),
    c("XGROUP", "SETID", key, group, st.sampled_from(["0", "$"]), "ENTRIESREAD", small),
    c("XGROUP", "DESTROY", key, group), c("XGROUP", "CREATECONSUMER", key, group, consumer),
    c("XGROUP", "DELCONSUMER", key, group, consumer),
    c("XREADGROUP", "GROUP", group, consumer, "COUNT", "2", "STREAMS", key, ">"),
    c("XREADGROUP", "GROUP", group, consumer, "STREAMS", key, "0"),
    c("XREADGROUP", "GROUP", group, consumer, "NOACK", "STREAMS", key, ">"),
    c("XACK", key, group, sid), c("XPENDING", key, group),
    c("XCLAIM", key, group, consumer, "0", sid, "JUSTID"),
    c("XAUTOCLAIM", key, group, consumer, "0", "0", "COUNT", "2", "JUSTID"),
    c("XSETID", key, st.sampled_from(["40-0", "0-1"])), c("XINFO", "GROUPS", key),
    c("XADD", key, "MAXLEN", "~", "1", "LIMIT", "2", sid, member, value),
    c("XTRIM", key, "MINID", "~", sid, "LIMIT", "1"),
    c("XGROUP", "CREATE", key, group, "0", "ENTRIESREAD", small),
    c("XCLAIM", key, group, consumer, "0", sid, sid, "RETRYCOUNT", "3", "FORCE"),
    c("XCLAIM", key, group, consumer, "0", sid, "LASTID", sid),
    c("XAUTOCLAIM", key, group, consumer, "0", "0-0", "COUNT", "3"),
    c("XINFO", "STREAM", key), c("XPENDING", key, group, "-", "+", "5", consumer),
    c("XREADGROUP", "GROUP", group, consumer, "COUNT", "1", "STREAMS", key, key, ">", "0"),
    # more of every family
    c("LPOS", key, member, "COUNT", "0", "MAXLEN", "10"), c("LRANGE", key, "-3", "2"),
    c("BLMOVE", key, key, "RIGHT", "LEFT", "0.01"), c("RPOPLPUSH", key, key),
    c("HINCRBY", key, member, "1"), c("HSET", key, *[f"f{i}" for i in range(6)]),
    c("SINTERSTORE", key, key), c("SMOVE", key, key, "1"), c("SADD", key, "1", "2", "3"),
    c("SADD", key, *[str(i) for i in range(6)]), c("SREM", key, "1", "m1"),
    c("ZADD", key, "INCR", score, member), c("ZRANGEBYLEX", key, "-", "[m2"),
    c("ZREVRANGEBYSCORE", key, "+inf", "-inf", "WITHSCORES", "LIMIT", "1", "2"),
    c("ZINTERCARD", "2", key, key, "LIMIT", "1"), c("ZREMRANGEBYLEX", key, "[m1", "[m2"),
    c("ZADD", key, *[p for i in range(5) for p in (str(i), f"z{i}")]),
    c("ZRANDMEMBER", key, "-5"),  # a negative count may repeat: only its length is sure
    c("GETEX", key, "PXAT", "1"), c("SET", key, value, "EXAT", "4000000000"),
    c("GETRANGE", key, "-5", "-1"), c("SETRANGE", key, "30", value), c("LCS", key, key, "LEN"),
    c("BITCOUNT", key, "1", "-1", "BYTE"), c("BITPOS", key, "1", "0", "-1", "BIT"),
    c("PFDEBUG", "ENCODING", key), c("PFADD", key), c("PFCOUNT", key, key, key),
    c("GEORADIUSBYMEMBER", key, member, "500", "km", "COUNT", "3", "ASC", "WITHCOORD"),
    c("GEOSEARCH", key, "FROMLONLAT", "0", "0", "BYBOX", "40000", "40000", "km", "ASC",
      "COUNT", "3", "ANY"),
    c("RENAME", key, key), c("OBJECT", "FREQ", key), c("TOUCH", key, key),
    c("SORT", key, "BY", "nosort", "GET", "#", "STORE", key), c("SORT", key, "DESC", "STORE", key),
    c("MOVE", key, "1"), c("COPY", key, key, "DB", "0", "REPLACE"),
    c("EXPIRE", key, "0"), c("PEXPIREAT", key, "1", "GT"),
    # transactions
    c("MULTI"), c("EXEC"), c("DISCARD"), c("WATCH", key), c("UNWATCH"),
]


def opts(*choices: tuple[object, ...], max_size: int = 3) -> st.SearchStrategy[tuple[str, ...]]:
    """Up to ``max_size`` option groups drawn from ``choices`` (strategies allowed inside a
    group), flattened: repeated, conflicting and misplaced options are drawn on purpose."""
    groups = [st.tuples(*(p if isinstance(p, st.SearchStrategy) else st.just(p) for p in group))
              for group in choices]
    return st.lists(st.one_of(groups), max_size=max_size).map(
        lambda drawn: tuple(part for group in drawn for part in group))


def cx(name: str | st.SearchStrategy[str], *parts: object,
       tail: st.SearchStrategy[tuple[str, ...]],
       family: str | None = None) -> st.SearchStrategy[tuple[str, ...]]:
    """A command whose fixed arguments are followed by a drawn run of options."""
    return _register(name, family, st.tuples(_args(name, *parts), tail).map(
        lambda pair: pair[0] + pair[1]))


edge_int = st.sampled_from(["0", "-1", "abc", "9223372036854775807", "-9223372036854775808",
                            "1.5", "", " 1", "100000"])
edge_float = st.sampled_from(["0.1", "-1.5e3", "1e308", "-1e308", "inf", "-inf", "nan", "abc",
                              "5.0e-3", "3", "-0", "1e-320", "10.5000", "0x10", " 1", "",
                              "1.7976931348623157e308", "00012"])
count = st.sampled_from(["0", "1", "2", "3", "-1", "100"])
# (not "#" nor any pattern without "*" after BY: that is BY nosort, a set's hash order)
pattern_key = st.sampled_from(["*", "*->f2", "*->cnt", "w_*"])
range_bound = st.sampled_from(["0", "1", "-1", "-2", "(1", "[m1", "(m2", "-", "+", "-inf", "+inf",
                               "2.5", "(-inf", "abc", "[z"])

# Where the easy forms above stop: every option, the order of Redis's argument checks (wrong
# arity, syntax, out of range, which error wins), numbers at their limits.
MORE_COMMANDS = [
    # strings: numbers at their limits, every expiry option, wrong arity
    c("SET", key, st.sampled_from(["9223372036854775807", "-9223372036854775808", "0", "-0",
                                   "007", " 5", "1e2", "3.0", "-9223372036854775809"])),
    c("INCRBYFLOAT", key, edge_float), c("INCRBY", key, edge_int), c("DECRBY", key, edge_int),
    c("DECR", key), c("SETEX", key, edge_int, value), c("PSETEX", key, edge_int, value),
    c("GETEX", key, st.sampled_from(["EX", "PX", "EXAT", "PXAT"]), edge_int),
    c("GETEX", key, "EX", "100", "PERSIST"), c("GETEX", key, "PERSIST", "PX", "100"),
    cx("SET", key, value, tail=opts(("NX",), ("XX",), ("GET",), ("KEEPTTL",),
                                    (st.sampled_from(["EX", "PX", "EXAT", "PXAT"]), edge_int),
                                    ("EX", far_ttl), ("PX", "abc"))),
    c("GETRANGE", key, edge_int, st.sampled_from(["-100", "-1", "0", "3", "9223372036854775807"])),
    c("SETRANGE", key, st.sampled_from(["-1", "0", "7", "536870912"]), value),
    c("SETRANGE", key, "536870912", ""), c("SUBSTR", key, "0", small),
    cx("LCS", key, key, tail=opts(("IDX",), ("LEN",), ("MINMATCHLEN", small), ("WITHMATCHLEN",),
                                  ("FOO",))),
    c("MSET", key), c("MSET", key, value, key), c("MSETNX", key, value, key), c("GET"),
    c("SET", key), c("APPEND", key), c("STRLEN", key, key),
    # keys: expiry options and absolute times, OBJECT, DUMP/RESTORE
    c("PEXPIRETIME", key), c("EXPIRETIME", key), c("TTL", key), c("PTTL", key),
    cx("EXPIRE", key, st.sampled_from(["1000", "0", "-1", "abc", "9223372036854775807"]),
       tail=opts(("NX",), ("XX",), ("FOO",), max_size=2)),
    cx("EXPIRE", key, st.sampled_from(["0", "-1", "abc", "9223372036854775807"]),
       tail=opts(("GT",), ("LT",), ("NX",), ("FOO",), max_size=2)),
    cx("PEXPIREAT", key, st.sampled_from(["4000000000000", "4000000001000", "1"]),
       tail=opts(("NX",), ("XX",), ("GT",), ("LT",), max_size=2)),
    c("EXPIREAT", key, "9223372036854775807"), c("PEXPIRE", key, "9223372036854775807"),
    c("OBJECT", "REFCOUNT", key), c("OBJECT", "ENCODING"), c("OBJECT", "FOO", key),
    c("OBJECT", "ENCODING", key, key), c("OBJECT", "HELP"),
    c("DUMP+RESTORE", key, key),
    cx("RESTORE", key, st.sampled_from(["0", "-1", "abc"]),
       # a string's payload with a wrong checksum
       st.sampled_from(["garbage", b"\x00\x01v\x0a\x00" + bytes(8)]),
       tail=opts(("REPLACE",), ("ABSTTL",), ("IDLETIME", edge_int), ("FREQ", edge_int),
                 ("FOO",))),
    c("RENAME", key), c("COPY", key, key, "DB", st.sampled_from(["-1", "16", "abc"])),
    c("MOVE", key, st.sampled_from(["-1", "16", "abc"])), c("SELECT", st.sampled_from(["16", "-1", "x"])),
    c("SWAPDB", st.sampled_from(["0", "1", "16", "x"]), st.sampled_from(["0", "2", "-1"])),
    c("EXISTS"), c("DEL"), c("TYPE", key, key), c("FOOBAR", key, value),
    c("FLUSHDB", st.sampled_from(["ASYNC", "SYNC", "FOO"])), c("FLUSHALL", "ASYNC"),
    c("DEL", key, key, key), c("UNLINK", key, key),
    # SORT: BY/GET patterns over keys the lists name (no ALPHA with BY: Redis leaves its ties
    # in qsort's order), LIMIT, STORE, and the options SORT_RO refuses
    c("RPUSH", key, "a", "b", "c", "d"), c("SADD", key, "b", "c", "d", "10"),
    c("RPUSH", key, "3", "a", "1", "c"), c("HSET", key, "f2", small, "cnt", score),
    cx("SORT", key, tail=opts(("ASC",), ("DESC",), ("LIMIT", small, small),
                              ("BY", pattern_key), ("GET", pattern_key), ("GET", "#"),
                              ("STORE", key), max_size=4)),
    cx("SORT", key, "ALPHA", tail=opts(("DESC",), ("LIMIT", small, small), ("GET", pattern_key),
                                       ("STORE", key), max_size=3)),
    cx("SORT_RO", key, tail=opts(("ALPHA",), ("LIMIT", "0", "2"), ("GET", "#"), ("STORE", key))),
    c("SORT_RO", key, "BY", "*", "GET", "*->f2"),
    c("SORT", key, "LIMIT", "0"), c("SORT", key, "FOO"),
    # lists
    cx("LMPOP", st.sampled_from(["0", "1", "2", "3", "-1", "x"]), key, key,
       st.sampled_from(["LEFT", "RIGHT", "UP"]), tail=opts(("COUNT", count), max_size=2)),
    cx("BLMPOP", "0.01", st.sampled_from(["1", "2"]), key, key, st.sampled_from(["LEFT", "RIGHT"]),
       tail=opts(("COUNT", count), max_size=1)),
    c("BLMPOP", st.sampled_from(["-1", "abc"]), "1", key, "LEFT"),
    c("BRPOP", key, "0.01"), c("BLPOP", key, st.sampled_from(["-1", "abc"])),
    c("BLMOVE", key, key, "LEFT", "RIGHT", "-1"), c("BZPOPMAX", key, key, "0.01"),
    cx("LPOS", key, member, tail=opts(("RANK", st.sampled_from(["0", "1", "-2",
                                                                 "-9223372036854775808"])),
                                      ("COUNT", count), ("MAXLEN", st.sampled_from(["-1", "0", "2"])),
                                      ("FOO",))),
    c("LINSERT", key, "MIDDLE", member, value), c("LSET", key, "100", member),
    c("LRANGE", key, "abc", "1"), c("LTRIM", key, small, small), c("RPUSHX", key, member),
    c("LPOP", key, st.sampled_from(["0", "-1", "abc"])), c("LINDEX", key, "abc"),
    c("LREM", key, "abc", member), c("LPUSH", key),
    # hashes
    c("HINCRBYFLOAT", key, member, edge_float), c("HINCRBY", key, member, edge_int),
    c("HSET", key), c("HSET", key, member), c("HMSET", key, member, value, "f2"),
    c("HMSET", key, member, value), c("HGET", key), c("HRANDFIELD", key, "100"),
    c("HSETNX", key, member, "y" * 20), c("HDEL", key, member, "f2", "cnt"),
    # sets
    cx("SINTERCARD", st.sampled_from(["0", "1", "2", "3", "-1", "x"]), key, key,
       tail=opts(("LIMIT", st.sampled_from(["0", "1", "-1", "abc"])), max_size=2)),
    c("SMISMEMBER", key), c("SRANDMEMBER", key, "100"), c("SDIFF", key, key, key),
    c("SINTER", key, key, key), c("SUNIONSTORE", key, key), c("SADD", key, "y" * 70),
    c("SPOP", key, st.sampled_from(["0", "-1", "abc"])), c("SMOVE", key, key, "m1"),
    # sorted sets: every ZRANGE form and the order of its checks, the set operations
    cx("ZRANGE", key, range_bound, range_bound,
       tail=opts(("BYSCORE",), ("BYLEX",), ("REV",), ("LIMIT", small, small), ("WITHSCORES",),
                 max_size=3)),
    cx("ZRANGESTORE", key, key, range_bound, range_bound,
       tail=opts(("BYSCORE",), ("BYLEX",), ("REV",), ("LIMIT", small, small), ("WITHSCORES",),
                 max_size=3)),
    cx(st.sampled_from(["ZUNION", "ZINTER", "ZDIFF"]), st.sampled_from(["1", "2", "3", "0"]),
       key, key, family="sorted_set", tail=opts(("WITHSCORES",), ("WEIGHTS", "2", "0.5"), ("WEIGHTS", "x", "1"),
                           ("AGGREGATE", st.sampled_from(["MIN", "MAX", "SUM", "FOO"])))),
    cx(st.sampled_from(["ZUNIONSTORE", "ZINTERSTORE", "ZDIFFSTORE"]), key,
       st.sampled_from(["1", "2", "0"]), key, key, family="sorted_set",
       tail=opts(("WEIGHTS", "inf", "-inf"), ("AGGREGATE", st.sampled_from(["MIN", "MAX"])))),
    cx("ZINTERCARD", st.sampled_from(["0", "1", "2", "3"]), key, key,
       tail=opts(("LIMIT", st.sampled_from(["0", "1", "-1"])), max_size=1)),
    cx("ZMPOP", st.sampled_from(["0", "1", "2", "-1"]), key, key,
       st.sampled_from(["MIN", "MAX", "UP"]), tail=opts(("COUNT", count), max_size=2)),
    c("BZMPOP", "0.01", "2", key, key, st.sampled_from(["MIN", "MAX"]), "COUNT", "2"),
    cx("ZADD", key, tail=opts(("NX",), ("XX",), ("GT",), ("LT",), ("CH",), ("INCR",),
                              (score, member), (st.sampled_from(["nan", "abc", "1"]), member),
                              max_size=4)),
    c("ZINCRBY", key, st.sampled_from(["inf", "-inf", "nan", "abc"]), member),
    c("ZRANGEBYSCORE", key, "(1", "(inf", "WITHSCORES", "LIMIT", "0", "-1"),
    c("ZREVRANGEBYLEX", key, "+", "-", "LIMIT", "1", "1"), c("ZRANGEBYLEX", key, "a", "b"),
    c("ZREVRANGE", key, "0", "-1", "WITHSCORES"), c("ZRANK", key, member, "WITHSCORE"),
    c("ZCOUNT", key, "(0", "abc"), c("ZREMRANGEBYSCORE", key, "(1", "inf"),
    c("ZPOPMIN", key, st.sampled_from(["0", "-1", "abc"])), c("ZADD", key, "1"),
    # bitmaps
    c("BITCOUNT", key, small, small, st.sampled_from(["BIT", "BYTE", "bit", "FOO"])),
    c("BITCOUNT", key, "0"), c("BITCOUNT", key, "abc", "1"),
    c("BITPOS", key, st.sampled_from(["0", "1", "2"]), small, small,
      st.sampled_from(["BIT", "BYTE", "FOO"])), c("BITPOS", key, "0", small),
    c("BITFIELD_RO", key, "GET", bitfield_type, small.map(lambda n: str(abs(int(n)))),
      "GET", "u4", "#2"),
    c("BITFIELD_RO", key, "SET", "i8", "0", "1"),
    c("BITFIELD", key, "GET", st.sampled_from(["i64", "u64", "i65", "u63", "x8", "i0"]), "0"),
    c("BITFIELD", key, "SET", "i8", st.sampled_from(["-1", "#-1", "abc", "4294967296"]), "1"),
    c("BITFIELD", key, "OVERFLOW", "FOO", "GET", "i8", "0"),
    c("SETBIT", key, st.sampled_from(["4294967296", "-1", "abc"]), "1"),
    c("SETBIT", key, "1", st.sampled_from(["2", "-1", "abc"])),
    c("GETBIT", key, small.map(lambda n: str(abs(int(n)) * 5))),
    c("BITOP", "NOT", key, key, key), c("BITOP", "FOO", key, key), c("BITOP", "AND", key),
    # HyperLogLog
    c("PFMERGE", key), c("PFMERGE", key, key, key, key), c("PFDEBUG", "TODENSE", key),
    c("PFDEBUG", "DECODE", key), c("PFADD", key, *[f"h{i}" for i in range(40)]),
    # geo: both shapes, COUNT ANY, the order of the argument checks
    cx("GEOSEARCH", key, st.sampled_from([("FROMMEMBER", "m1"), ("FROMLONLAT", "15", "37")]),
       tail=opts(("BYBOX", st.sampled_from(["400", "5000", "0"]), "400", "km"),
                 ("BYRADIUS", st.sampled_from(["200", "-1"]), st.sampled_from(["km", "mi", "ft"])),
                 ("COUNT", st.sampled_from(["1", "2", "0"])), ("ANY",), ("ASC",), ("DESC",),
                 ("WITHDIST",), ("WITHHASH",), ("WITHCOORD",), ("STOREDIST",),
                 max_size=5)).map(lambda argv: (argv[0], argv[1], *argv[2], *argv[3:])),
    c("GEOADD", key, st.sampled_from(["200", "0", "-181"]), st.sampled_from(["0", "86", "-90"]),
      member),
    c("GEOADD", key, "NX", "XX", lon, lat, member), c("GEOADD", key, lon, lat),
    c("GEODIST", key, member, member, "furlong"),
    c("GEORADIUS", key, "15", "37", "200", "km", "WITHDIST", "STORE", key),
    c("GEORADIUS", key, "15", "37", "500", "km", "COUNT", "2", "ASC", "STORE", key),
    c("GEORADIUSBYMEMBER_RO", key, member, "500", "km", "STORE", key),
    # streams: IDLE 0, MINID/LIMIT, FULL COUNT, ids at their limits
    c("XPENDING", key, group, "IDLE", "0", "-", "+", "5"),
    c("XPENDING", key, group, "IDLE", "0", "-", "+", "5", consumer),
    c("XPENDING", key, group, "(0-1", "+", st.sampled_from(["0", "-1", "3"])),
    c("XCLAIM", key, group, consumer, "0", sid, "IDLE", "0", "JUSTID"),
    c("XCLAIM", key, group, consumer, "0", sid, "TIME", "1"),
    c("XCLAIM", key, group, consumer, "-1", sid), c("XCLAIM", key, group, consumer, "0", "abc"),
    c("XAUTOCLAIM", key, group, consumer, "0", "0-0", "COUNT", st.sampled_from(["0", "-1"])),
    cx("XINFO", "STREAM", key, "FULL", tail=opts(("COUNT", st.sampled_from(["0", "1", "5"])),
                                                 max_size=1)),
    c("XINFO", "CONSUMERS", key, group), c("XINFO", "STREAM", key, "FOO"),
    cx("XTRIM", key, st.sampled_from(["MAXLEN", "MINID"]), st.sampled_from(["=", "~"]),
       st.sampled_from(["0", "2", "5-0", "-1"]), tail=opts(("LIMIT", st.sampled_from(["0", "1",
                                                                                      "-1"])),
                                                          max_size=1)),
    c("XADD", key, "NOMKSTREAM", "MAXLEN", "0", sid, member, value),
    c("XADD", key, st.sampled_from(["0-0", "abc", "18446744073709551615-18446744073709551615",
                                    "5-18446744073709551615", "-1"]), member, value),
    c("XADD", key, sid, member), c("XADD", key, "MAXLEN", "~", "2", "LIMIT", "5", sid, member, value),
    c("XRANGE", key, st.sampled_from(["(0-1", "(5", "-", "0"]),
      st.sampled_from(["+", "(20", "(18446744073709551615-18446744073709551615"]), "COUNT",
      st.sampled_from(["0", "-1", "2"])),
    c("XREVRANGE", key, "+", "-", "COUNT", "0"), c("XREAD", "STREAMS", key, key, sid, "$"),
    c("XREAD", "COUNT", "1", "STREAMS", key), c("XGROUP", "CREATE", key, group, "$"),
    c("XGROUP", "CREATE", key, group, "abc", "MKSTREAM"), c("XDEL", key, sid, sid, "abc"),
    c("XSETID", key, "40-0", "ENTRIESADDED", st.sampled_from(["0", "100"]), "MAXDELETEDID",
      st.sampled_from(["0-0", "3-0", "50-0"])),
    c("XACK", key, group, "0-0", sid, sid), c("XGROUP", "FOO", key),
    c("XREADGROUP", "GROUP", group, consumer, "STREAMS", key, "$"),
    # SCAN's family with a COUNT that covers every small value at once (the order of a hash
    # table is compared as a set: see SCANS)
    cx("SCAN", "0", "COUNT", "100", tail=opts(("MATCH", st.sampled_from(["*", "a*", "[ab]"])),
                                              ("TYPE", st.sampled_from(["string", "hash", "foo"])),
                                              max_size=2)),
    cx(st.sampled_from(["HSCAN", "SSCAN", "ZSCAN"]), key, "0", "COUNT", "100",
       tail=opts(("MATCH", st.sampled_from(["*", "m*", "1"])), ("NOVALUES",), max_size=1)),
    # (not a cursor no call returned, "-1" included: Redis documents the result as undefined,
    # and its own depends on where the keys lie in its table; nor one past 2**64-1: the ERANGE
    # Redis's strtoul leaves in errno makes a later numeric SORT fail, see
    # test_differential_resync.test_sort_reads_no_stale_errno)
    c("SCAN", st.sampled_from(["abc", "1x", " 7"])),
    c("HSCAN", key, "0", "COUNT", "0"),
    c("SSCAN", key, "0", "MATCH"),
    # scripts: their writes propagate as effects
    c("EVAL", "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCR', KEYS[1])", "1",
      key, small),
    c("EVAL", "return redis.pcall('LPUSH', KEYS[1], ARGV[1])", "1", key, member),
    c("EVAL", "redis.call('EXPIRE', KEYS[1], 1000); return redis.call('TTL', KEYS[1])", "1", key),
    c("EVAL", "local t = redis.call('SPOP', KEYS[1], 100); table.sort(t); return t", "1",
      key),  # (sorted: a set's members come in its hash table's order)
    c("EVAL", "return redis.call('GETDEL', KEYS[1])", "1", key),
    c("FCALL", "nofunc", "0"),
    # transactions: the errors inside and around MULTI
    c("MULTI"), c("EXEC"), c("WATCH", key, key), c("MULTI"), c("GET", key, key),
    c("EXEC", key), c("DISCARD", key), c("MULTI", key),
]
command = st.one_of(COMMANDS + MORE_COMMANDS)
# A sequence: drawn from the whole vocabulary, or from one or two families (with the
# generic and transaction commands: keys, expiry, MULTI/EXEC).
sequence = st.one_of(
    st.lists(command, min_size=20, max_size=80),
    st.lists(st.sampled_from(sorted(set(FAMILIES) - {"generic", "transactions"})),
             min_size=1, max_size=2, unique=True).flatmap(
        lambda families: st.lists(
            st.one_of(*(strategy for family in families for strategy in FAMILIES[family])) |
            st.one_of(FAMILIES["generic"] + FAMILIES["transactions"]),
            min_size=20, max_size=80)))


# -- comparing the datasets -------------------------------------------------------------------

# Encodings whose DUMP payload is a function of the value alone (a hash table's order is not).
DETERMINISTIC_DUMP = {b"int", b"embstr", b"raw", b"quicklist", b"listpack", b"intset"}
# kvrepl derives a collection's encoding from its current contents, where Redis converts one
# way only (a zset SORT touched, a hash that grew then shrank stay big): documented in
# kvrepl/store/encoding.py. kvrepl may then answer the compact encoding where Redis has the
# big one, never the other way round; the DUMP payloads then differ in form, not in value
# (the cross-RESTORE below still checks them).
ONE_WAY = {(b"listpack", b"skiplist"), (b"listpack", b"hashtable"), (b"intset", b"hashtable")}


CLOCK_FIELDS = (b"idle", b"inactive", b"seen-time", b"active-time")


def without_idle(tree: Node, fields: tuple[bytes, ...] = CLOCK_FIELDS) -> Node:
    """A consumer's or a pending entry's fields without the clock-dependent ``idle``/
    ``inactive`` values, or without other ``fields`` (RESP2 arrays of name/value and RESP3
    maps alike)."""
    kind, payload = tree
    if not isinstance(payload, list):
        return tree
    out = []
    skip = False
    for child in payload:
        if skip:
            skip = False
            continue
        if child[1] in fields:
            skip = True
            continue
        out.append(without_idle(child, fields))
    return (kind, out)


def agree(mine: Node, real: Node) -> bool:
    """The two replies are equal, clocked values (``clock``, from :func:`normalize`) within
    their tolerance."""
    if mine[0] == real[0] == b"clock":
        return abs(mine[1][0] - real[1][0]) <= mine[1][1]
    if isinstance(mine[1], list) and isinstance(real[1], list) and mine[0] == real[0]:
        return len(mine[1]) == len(real[1]) and all(
            agree(a, b) for a, b in zip(mine[1], real[1], strict=True))
    return mine == real


def without_clock(tree: Node) -> Node:
    """``tree`` with every integer that is a Unix time in milliseconds (the delivery times of
    XINFO STREAM FULL's pending entries) replaced by 0."""
    kind, payload = tree
    if isinstance(payload, list):
        return (kind, [without_clock(child) for child in payload])
    if kind == b":" and int(payload) >= 10**12:
        return (kind, b"0")
    return tree


def without_pending_idle(tree: Node) -> Node:
    """XPENDING's extended form without each entry's idle time (its third element)."""
    kind, entries = tree
    if not isinstance(entries, list):
        return tree
    return (kind, [(entry[0], entry[1][:2] + entry[1][3:]) if isinstance(entry[1], list)
                   else entry for entry in entries])


def snapshot(conn: Conn, payloads: dict) -> dict:
    """Everything that must agree about the dataset, key by key; fills ``payloads`` with
    each key's DUMP payload."""
    # A key whose expiry has passed (SET ... PXAT 1) stays in Redis's table, and in DEBUG
    # DIGEST, until something touches it or active expiry samples it: touch every key first.
    for db in range(DATABASES):
        conn.call_tree("SELECT", db)
        conn.call_tree("EXISTS", *KEY_NAMES)
    result: dict = {"digest": conn.call_tree("DEBUG", "DIGEST"),
                    "keyspace": keyspace_lines(conn)}
    for db in range(DATABASES):
        conn.call_tree("SELECT", db)
        result[("scans", db)] = scans(conn)
        _, names = conn.call_tree("KEYS", "*")
        for _, name in sorted(names, key=repr):
            kind = conn.call_tree("TYPE", name)[1]
            encoding = conn.call_tree("OBJECT", "ENCODING", name)
            facts: dict = {"type": kind, "encoding": encoding,
                           # (before any command that touches the key: the LFU counter;
                           # an error without an LFU policy)
                           "freq": conn.call_tree("OBJECT", "FREQ", name),
                           "digest": conn.call_tree("DEBUG", "DIGEST-VALUE", name),
                           # an estimate each computes its own way: only its kind
                           "memory": conn.call_tree("MEMORY", "USAGE", name)[0]}
            ttl = conn.call_tree("PTTL", name)[1]
            facts["ttl"] = int(ttl)
            if kind == b"stream":
                facts["value"] = [conn.call_tree("XRANGE", name, "-", "+"),
                                  conn.call_tree("XINFO", "STREAM", name),
                                  conn.call_tree("XINFO", "GROUPS", name)]
                for group_name in (b"g1", b"g2"):
                    facts[group_name] = [
                        without_idle(conn.call_tree("XINFO", "CONSUMERS", name, group_name)),
                        without_pending_idle(conn.call_tree("XPENDING", name, group_name,
                                                            "-", "+", "100"))]
            elif kind == b"zset":
                facts["value"] = conn.call_tree("ZRANGE", name, "0", "-1", "WITHSCORES")
            elif kind == b"list":
                facts["value"] = conn.call_tree("LRANGE", name, "0", "-1")
            elif kind == b"string":
                facts["value"] = conn.call_tree("GET", name)
            elif kind == b"hash":
                facts["value"] = normalize("HGETALL", conn.call_tree("HGETALL", name))
            elif kind == b"set":
                facts["value"] = normalize("SMEMBERS", conn.call_tree("SMEMBERS", name))
            payload = conn.call_tree("DUMP", name)
            if encoding[1] in DETERMINISTIC_DUMP:
                facts["dump"] = payload
            result[(db, name)] = facts
            payloads[(db, name)] = (payload[1], "0" if facts["ttl"] < 0 else "100000000")
    conn.call_tree("SELECT", 0)
    return result


def keyspace_lines(conn: Conn) -> dict:
    """INFO keyspace's ``keys=`` and ``expires=`` of each database (``avg_ttl`` is a clock's),
    and DBSIZE's."""
    _, text = conn.call_tree("INFO", "keyspace")
    lines = {}
    for line in text.split(b"\r\n")[1:]:
        if line:
            db, fields = line.split(b":")
            lines[db] = fields.split(b",")[:2]
    for db in range(DATABASES):
        conn.call_tree("SELECT", db)
        lines[db] = conn.call_tree("DBSIZE")
    conn.call_tree("SELECT", 0)
    return lines


SCAN_FILTERS = [(), ("COUNT", "1"), ("MATCH", "[ab]*"), ("MATCH", "*c", "COUNT", "2"),
                *(("TYPE", kind) for kind in ("string", "list", "set", "zset", "hash", "stream",
                                              "nosuchtype")),
                ("MATCH", "a", "TYPE", "string", "COUNT", "100")]


def scans(conn: Conn) -> list[list[bytes]]:
    """The keys a whole SCAN iteration returns with each of :data:`SCAN_FILTERS`, sorted
    (a key may come twice, across a rehash)."""
    found = []
    for options in SCAN_FILTERS:
        keys: set[bytes] = set()
        cursor = b"0"
        while True:
            _, (cursor_node, (_, items)) = conn.call_tree("SCAN", cursor, *options)
            keys.update(item[1] for item in items)
            cursor = cursor_node[1]
            if cursor == b"0":
                break
        found.append(sorted(keys))
    return found


def restored_digests(conn: Conn, payloads: dict) -> dict:
    """DEBUG DIGEST-VALUE of each payload RESTOREd on ``conn`` (in a database no sequence
    uses): the other server's DUMP must load here as the same value."""
    conn.call_tree("SELECT", "9")
    digests = {}
    for name, (payload, ttl) in payloads.items():
        # With a TTL where the original had one: the digest of a value counts its expiry.
        reply = conn.call_tree("RESTORE", "restored", ttl, payload, "REPLACE")
        digests[name] = (reply, conn.call_tree("DEBUG", "DIGEST-VALUE", "restored"))
    conn.call_tree("FLUSHDB")
    conn.call_tree("SELECT", "0")
    return digests


def assert_same_dataset(ours: Conn, theirs: Conn) -> None:
    our_payloads: dict = {}
    their_payloads: dict = {}
    mine, real = snapshot(ours, our_payloads), snapshot(theirs, their_payloads)
    # Each server's DUMP loads on the other as the value it had.
    assert restored_digests(theirs, our_payloads) == {
        name: ((b"+", b"OK"), facts["digest"]) for name, facts in real.items()
        if name in their_payloads}
    assert restored_digests(ours, their_payloads) == {
        name: ((b"+", b"OK"), facts["digest"]) for name, facts in mine.items()
        if name in our_payloads}
    assert mine.keys() == real.keys(), "the key sets differ"
    for name, facts in mine.items():
        if name == "digest" or name == "keyspace" or name[0] == "scans":
            assert facts == real[name], f"{name}: kvrepl {facts!r} != redis {real[name]!r}"
            continue
        other = real[name]
        # TTLs were set at slightly different instants on the two servers.
        ttl, other_ttl = facts.pop("ttl"), other.pop("ttl")
        assert (ttl < 0, ttl == -1) == (other_ttl < 0, other_ttl == -1), name
        assert abs(ttl - other_ttl) < 5000, name
        encodings = (facts["encoding"][1], other["encoding"][1])
        if encodings in ONE_WAY:
            for fact in ("encoding", "dump"):
                facts.pop(fact, None)
                other.pop(fact, None)
        for fact, held in facts.items():
            assert held == other[fact], f"{name} {fact}: kvrepl {held!r} != redis {other[fact]!r}"
    assert mine["digest"] == real["digest"]


def has_error(tree: Node, prefix: bytes) -> bool:
    """``tree`` is, or holds (an EXEC's), an error reply starting with ``prefix``."""
    kind, payload = tree
    if isinstance(payload, list):
        return any(has_error(child, prefix) for child in payload)
    return kind == b"-" and payload.startswith(prefix)


def dump_restore(conn: Conn, source: str, target: str) -> Node:
    """DUMP ``source``, then RESTORE the payload at ``target`` (REPLACE): RESTORE's reply, or
    DUMP's nil when there is no ``source``."""
    dumped = conn.call_tree("DUMP", source)
    if dumped[1] is None:
        return dumped
    return conn.call_tree("RESTORE", target, "0", dumped[1], "REPLACE")


def stream_state(conn: Conn, name: bytes) -> Node | None:
    """What DEBUG DIGEST leaves out of a stream: its metadata, consumer groups, consumers
    and pending entries (their delivery times and counts included), without the times
    each server saw a consumer at, nor a group's entries-read and lag: Redis 7.0 propagates
    XREADGROUP as XCLAIM ... LASTID, which leaves its replicas' count unknown (redis-server
    replicas of redis-server as well)."""
    if conn.call_tree("TYPE", name)[1] != b"stream":
        return None
    return without_idle(conn.call_tree("XINFO", "STREAM", name, "FULL"),
                        (*CLOCK_FIELDS, b"entries-read", b"lag"))


def replica_differences(master: Conn, replica: Conn) -> list[tuple]:
    """The keys whose value, expiry or stream state differ between a master and its
    replica (by DEBUG DIGEST-VALUE, PTTL's sign and :func:`stream_state`), with both
    servers' facts."""
    found = []
    for db in range(DATABASES):
        facts = []
        for conn in (master, replica):
            conn.call_tree("SELECT", db)
            _, names = conn.call_tree("KEYS", "*")
            facts.append({name: (conn.call_tree("TYPE", name)[1],
                                 conn.call_tree("DEBUG", "DIGEST-VALUE", name)[1],
                                 int(conn.call_tree("PTTL", name)[1]) > 0,
                                 stream_state(conn, name))
                          for _, name in names})
            conn.call_tree("SELECT", 0)
        for name in sorted(facts[0].keys() | facts[1].keys()):
            if facts[0].get(name) != facts[1].get(name):
                found.append((db, name, facts[0].get(name), facts[1].get(name)))
    return found


def info_field(conn: Conn, section: str, field: bytes) -> int:
    """One integer field of INFO ``section``."""
    _, text = conn.call_tree("INFO", section)
    return int(text.split(b"\r\n" + field + b":")[1].split(b"\r\n")[0])


def stream_errors(port: int) -> int:
    """How many commands of its master's stream the replica on ``port`` failed."""
    replica = Conn(port)
    try:
        return info_field(replica, "stats", b"unexpected_error_replies")
    finally:
        replica.close()


def assert_replica_agrees(master_port: int, replica_port: int, what: str,
                          errors_before: int, reference_port: int | None = None) -> None:
    """Once the replica on ``replica_port`` has applied all its master sent, it holds the
    master's dataset (DEBUG DIGEST: keys, values, absolute expiry times) and has failed no
    command of the stream since it had failed ``errors_before``. With ``reference_port``
    (a redis-server replica of the same redis-server master), the replica's stream groups
    are those the reference holds: Redis 7.0 leaves some group changes unpropagated (the
    consumer a history read creates, the delivery counts it bumps: see
    tests/test_differential_resync.py), which no replica of it can know."""
    master, replica = Conn(master_port), Conn(replica_port)
    reference = Conn(reference_port) if reference_port is not None else master
    try:
        # Not WAIT: it waits for the offset of this connection's own writes (none here).
        end = info_field(master, "replication", b"master_repl_offset")
        for conn in {replica, reference} - {master}:
            poll(lambda conn=conn: info_field(conn, "replication", b"slave_repl_offset") >= end,
                 f"the {what} (or its reference) caught up")
        mine, theirs = (conn.call_tree("DEBUG", "DIGEST") for conn in (master, replica))
        # (DEBUG DIGEST covers a stream's entries only: the rest is compared key by key)
        differences = replica_differences(reference, replica)
        assert mine == theirs and not differences, (what, differences)
        assert info_field(replica, "stats", b"unexpected_error_replies") == errors_before, what
    finally:
        for conn in {master, replica, reference}:
            conn.close()



def assert_replicas_agree(ports: object, commands: list[tuple[str, ...]],
                          errors_before: list[int], corrupt_hll: bool) -> None:
    """Each master's replica of the other kind holds its master's data (see
    :func:`assert_replica_agrees`), except where Redis 7.0 itself propagates nothing:

    - a PFADD that finds an HLL corrupt (APPENDed to) may have changed it before it fails:
      Redis 7.0 does so and propagates nothing, kvrepl alike, so neither's replicas (nor
      Redis's own) follow;
    - a BITFIELD whose writes OVERFLOW FAIL refused may still grow the string: Redis 7.0
      does not propagate it, and its replicas (kvrepl's as well as its own) miss it."""
    if corrupt_hll:
        return
    assert_replica_agrees(ports.ours, ports.real_of_ours,  # type: ignore[attr-defined]
                          "redis-server replica of kvrepl", errors_before[0])
    if not any(argv[0] == "BITFIELD" and "FAIL" in argv for argv in commands):
        assert_replica_agrees(ports.real, ports.ours_of_real,  # type: ignore[attr-defined]
                              "kvrepl replica of redis-server", errors_before[1],
                              ports.real_of_real)  # type: ignore[attr-defined]


# -- side channels: keyspace notifications and client-side caching invalidations -------------

# An LFU policy whose counters are exact: every access counts one (log factor 0), none decays
# (decay time 0), and no two keys share an object's counter (with a maxmemory, Redis no longer
# shares the integers 0-9999 between keys). Far above what a sequence stores: nothing evicted.
LFU = {"maxmemory": "1gb", "maxmemory-policy": "allkeys-lfu", "lfu-log-factor": "0",
       "lfu-decay-time": "0"}
NO_LFU = {"maxmemory": "0", "maxmemory-policy": "noeviction", "lfu-log-factor": "10",
          "lfu-decay-time": "1"}
# Every class Redis 7.0 has: A (g$lshzxetd), keymiss and new.
NOTIFY_CLASSES = "KEAmn"
SYNC_CHANNEL = "differential-sync"
# A MONITOR line's clock and client address ("1700000000.123456 [0 127.0.0.1:5555]"): the
# database and "lua" stay.
MONITOR_CLOCK = re.compile(rb"^[0-9.]+ \[(\d+)(?: (?:lua|unix:\S*|[0-9.:]+))?\]")


class SideChannels:
    """What a master tells other clients while a sequence runs: a subscriber to every
    keyspace and keyevent notification, a RESP3 client tracking the keys it reads (default
    mode: it reads every key again after each invalidation) and one tracking every key
    (BCAST). :meth:`collect` returns what each received since the last call, in order."""

    def __init__(self, port: int) -> None:
        self.subscriber = Conn(port)
        self.subscriber.send("PSUBSCRIBE", "__keyspace@*__:*", "__keyevent@*__:*")
        self.subscriber.send("SUBSCRIBE", SYNC_CHANNEL)
        for _ in range(3):
            self.subscriber.read_tree()
        self.control = Conn(port)  # publishes the marker that ends each collection
        self.monitor = Conn(port)
        assert self.monitor.call_tree("MONITOR") == (b"+", b"OK")
        self.syncs = 0
        self.tracking = Conn(port, 3)
        self.bcast = Conn(port, 3)
        for conn, mode in ((self.tracking, ()), (self.bcast, ("BCAST",))):
            assert conn.call_tree("CLIENT", "TRACKING", "on", *mode) == (b"+", b"OK")
        self.read_keys()

    def read_keys(self) -> list[Node]:
        """The tracking client reads every key (of db 0; tracking is by name, across
        databases) again: the invalidations it was sent before, then EXISTS's reply."""
        self.tracking.send("EXISTS", *KEY_NAMES)
        return pushes_before_reply(self.tracking)

    def collect(self) -> tuple[list[Node], list[Node], list[Node], list[bytes]]:
        """The notifications, the tracking client's invalidations (it reads the keys again
        afterwards), the BCAST client's, and what MONITOR showed (without its clock and
        client addresses), since the last call."""
        self.syncs += 1
        marker = str(self.syncs).encode()
        self.control.call_tree("PUBLISH", SYNC_CHANNEL, marker)
        events = []
        while (message := self.subscriber.read_tree()) != (
                b"*", [(b"$", b"message"), (b"$", SYNC_CHANNEL.encode()), (b"$", marker)]):
            events.append(message)
        monitored = []
        end = b'"PUBLISH" "%s" "%s"' % (SYNC_CHANNEL.encode(), marker)
        while not (line := self.monitor.read_tree()[1]).endswith(end):
            if b'] "RESTORE" ' not in line:  # (DUMP+RESTORE's payload: a set's order)
                monitored.append(MONITOR_CLOCK.sub(rb"[\1]", line))
        invalidations = self.read_keys()
        self.bcast.send("PING")
        return events, invalidations, pushes_before_reply(self.bcast), monitored

    def close(self) -> None:
        for conn in (self.subscriber, self.control, self.tracking, self.bcast, self.monitor):
            conn.close()


def pushes_before_reply(conn: Conn) -> list[Node]:
    """The RESP3 pushes ``conn`` reads before the reply to its last command (itself
    dropped: the same on both servers)."""
    pushes = []
    while (tree := conn.read_tree())[0] == b">":
        pushes.append(tree)
    return pushes


def run_sequence(ports: Servers, protocol: int, commands: list[tuple[str, ...]],
                 pipelined: bool = False, lfu: bool = False) -> None:
    """``commands`` on both masters (``pipelined``: each run of them up to a DUMP+RESTORE
    sent in one write, which kvrepl's request splitter and plain lane take as a whole), the
    replies compared one by one; then the datasets, then each master's replica. ``lfu``:
    both masters count accesses (see :data:`LFU`), and each key's OBJECT FREQ must agree."""
    ours, theirs = (Conn(port, protocol) for port in ports[:2])
    for conn in (ours, theirs):
        for name, setting in (LFU if lfu else NO_LFU).items():
            assert conn.call_tree("CONFIG", "SET", name, setting) == (b"+", b"OK")
    # (the count of a replica's errors only grows: one before the FLUSHALL below, in an
    # example that skipped its check, must not fail this one)
    errors_before = [stream_errors(port) for port in ports[2:]]
    try:
        for conn in (ours, theirs):
            conn.call_tree("FLUSHALL")
        sides = [SideChannels(port) for port in ports[:2]]
        queued: list[tuple[str, tuple[str, ...]]] | None = None
        pending: list[tuple[Node, Node]] = []  # the replies of a pipeline, last first
        corrupt_hll = False
        grew_unsaid = False  # a BITFIELD ... FAIL ran since the side channels were compared
        by_hash_order = False  # a SORT ... BY/GET ran since then
        for step, argv in enumerate(commands):
            name = argv[0]
            if name == "DUMP+RESTORE":
                if queued is not None:
                    continue  # (a DUMP queued in MULTI has no payload to restore)
                # Each server restores its own DUMP of the source over the target.
                mine, real = (dump_restore(conn, *argv[1:]) for conn in (ours, theirs))
            elif pipelined:
                if not pending:
                    batch = list(takewhile(lambda a: a[0] != "DUMP+RESTORE", commands[step:]))
                    pending = list(zip(ours.pipeline_trees(batch), theirs.pipeline_trees(batch),
                                       strict=True))[::-1]
                mine, real = pending.pop()
            else:
                mine, real = ours.call_tree(*argv), theirs.call_tree(*argv)
            if queued is not None and name == "EXEC" and real[0] == b"*" and real[1] is not None:
                mine = (mine[0], [normalize(inner[0], reply, inner[1]) for inner, reply
                                  in zip(queued, mine[1] or [], strict=False)])
                real = (real[0], [normalize(inner[0], reply, inner[1]) for inner, reply
                                  in zip(queued, real[1], strict=False)])
            else:
                mine, real = normalize(name, mine, argv), normalize(name, real, argv)
            if argv[:2] == ("OBJECT", "ENCODING") and (mine[1], real[1]) in ONE_WAY:
                mine = real  # the documented difference (see ONE_WAY)
            assert agree(mine, real), (f"step {step} {argv} RESP{protocol}"
                                       f"{' pipelined' if pipelined else ''}: kvrepl {mine!r} "
                                       f"!= redis {real!r}")
            corrupt_hll = corrupt_hll or has_error(real, b"INVALIDOBJ")
            # A BITFIELD whose writes OVERFLOW FAIL all refused may still create or grow
            # the string: Redis 7.0 counts no change (no setbit event, no signal, nothing
            # propagated: its own replicas miss it), kvrepl counts one.
            grew_unsaid = grew_unsaid or (name == "BITFIELD" and "FAIL" in argv)
            # SORT looks up its BY and GET keys in the order of its source: a set's is its
            # hash table's, so their keymiss events come in a different order.
            by_hash_order = by_hash_order or (name in ("SORT", "SORT_RO") and (
                "BY" in argv or "GET" in argv))
            if not pending:  # (after each command, or each pipeline)
                told, real_told = (side.collect() for side in sides)
                if by_hash_order:
                    told, real_told = ((sorted(events, key=repr), *rest)
                                       for events, *rest in (told, real_told))
                    by_hash_order = queued is not None  # (until its EXEC ran)
                compared = () if grew_unsaid else (
                    "notifications", "invalidations", "BCAST invalidations", "MONITOR")
                grew_unsaid = grew_unsaid and queued is not None  # (until its EXEC ran)
                for what, mine_told, real_said in zip(compared, told, real_told, strict=False):
                    same = len(list(takewhile(lambda pair: pair[0] == pair[1],
                                              zip(mine_told, real_said, strict=False))))
                    assert mine_told == real_said, (
                        f"step {step} {argv} RESP{protocol}{' pipelined' if pipelined else ''}"
                        f" {what}, after {same} equal: kvrepl {mine_told[same:same + 4]!r} "
                        f"!= redis {real_said[same:same + 4]!r}")
            if name == "MULTI" and real == (b"+", b"OK"):
                queued = []
            elif name == "EXEC" or (name == "DISCARD" and len(argv) == 1):
                queued = None  # (a DISCARD of the wrong arity stays in MULTI)
            elif queued is not None and real == (b"+", b"QUEUED"):
                queued.append((name, argv))
        for conn in (ours, theirs):
            conn.call_tree("DISCARD")  # (an error outside MULTI)
        for side in sides:
            side.close()
        assert_same_dataset(ours, theirs)
        assert_replicas_agree(ports, commands, errors_before, corrupt_hll)
    finally:
        ours.close()
        theirs.close()


@pytest.mark.redis_server
@settings(max_examples=EXAMPLES, deadline=None, derandomize="KVREPL_DIFF_EXAMPLES" not in os.environ,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(protocol=st.sampled_from([2, 3]), commands=sequence, pipelined=st.booleans(),
       lfu=st.booleans())
def test_random_sequences_agree(servers: Servers, protocol: int,
                                commands: list[tuple[str, ...]], pipelined: bool,
                                lfu: bool) -> None:
    """One drawn sequence: the same replies, then the same dataset, on both servers, and
    each one's replica of the other kind holds its master's data."""
    run_sequence(servers, protocol, commands, pipelined, lfu)
