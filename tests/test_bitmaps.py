"""Bit commands (SETBIT, GETBIT, BITCOUNT, BITPOS, BITOP, BITFIELD, BITFIELD_RO) against a real
redis-server 7.0: raw replies in RESP2 and RESP3, error messages and their order, keyspace
hits/misses, what replicates (in-process and both ways with redis-server), and random
command sequences that must leave both servers with the same values."""

from __future__ import annotations

import random
from collections import deque

import pytest
import redis
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import RedisServer
from test_replication import _link_up, digest, eventually

import kvrepl
from kvrepl.commands import bitmaps
from kvrepl.commands.core import Engine
from kvrepl.store.snapshot import KeyspaceView

INT64_MAX = (1 << 63) - 1
INT64_MIN = -(1 << 63)


# -- SETBIT / GETBIT -------------------------------------------------------------------------
def test_setbit_getbit(same, seed) -> None:
    for offset in (0, 7, 8, 100, 1, 7):
        same("SETBIT", "k", offset, 1)
        same("GETBIT", "k", offset)
    same("SETBIT", "k", 7, 1)  # unchanged: 1, nothing written
    same("SETBIT", "k", 7, 0)
    same("GET", "k")
    same("GETBIT", "k", 10_000)  # past the end
    same("GETBIT", "missing", 3)
    same("SETBIT", "int", 0, 0)
    same("SET", "n", "12")  # an int-encoded string is read through its digits
    same("GETBIT", "n", 2)
    same("SETBIT", "n", 15, 1)
    same("GET", "n")
    seed("l", deque([b"a"]))
    same("SETBIT", "l", 0, 1)
    same("GETBIT", "l", 0)


def test_setbit_getbit_argument_errors(same, seed) -> None:
    seed("l", deque([b"a"]))
    for offset in ("-1", "x", "1.5", "", "4294967296", str(INT64_MAX), "9223372036854775808",
                   "#1"):  # the largest valid offset is tried where the limit is 1 MB
        same("SETBIT", "k", offset, 1)
        same("GETBIT", "k", offset)
        same("SETBIT", "l", offset, 1)  # the offset is checked before the type
        same("GETBIT", "l", offset)
    for bit in ("2", "-1", "x", "", str(INT64_MAX), "9223372036854775808", "01"):
        same("SETBIT", "k", 0, bit)
        same("SETBIT", "l", 0, bit)  # the bit too
    same("STRLEN", "k")


def test_offset_limit_follows_proto_max_bulk_len(same, configure) -> None:
    configure("proto-max-bulk-len", 1024 * 1024)
    limit = 8 * 1024 * 1024
    same("SETBIT", "k", limit, 1)
    same("GETBIT", "k", limit)
    same("BITFIELD", "k", "SET", "u8", f"#{1024 * 1024}", 1)
    same("BITFIELD", "k", "GET", "u8", f"#{1024 * 1024 - 1}")
    same("SETBIT", "k", limit - 1, 1)
    same("STRLEN", "k")
    same("BITCOUNT", "k")
    same("BITPOS", "k", 1)


def test_the_master_stream_is_obeyed_beyond_the_limit(engine: Engine, session) -> None:
    """mustObeyClient: what the master sent is applied even past this node's limit."""
    engine.config.set("proto-max-bulk-len", str(1024 * 1024))
    limit = 8 * 1024 * 1024
    assert str(engine.execute(session, [b"SETBIT", b"k", b"%d" % limit, b"1"])) == _OFFSET_ERROR
    session.is_master = True
    assert engine.execute(session, [b"SETBIT", b"k", b"%d" % limit, b"1"]) == 0
    assert engine.execute(session, [b"BITFIELD", b"k", b"SET", b"u8", b"#%d" % (limit // 8 + 1),
                                    b"7"]) == [0]
    assert engine.execute(session, [b"STRLEN", b"k"]) == 1024 * 1024 + 2


_OFFSET_ERROR = "ERR bit offset is not an integer or out of range"


# -- BITCOUNT / BITPOS ---------------------------------------------------------------------
_VALUES = [b"", b"\x00", b"\xff", b"\x00\x00\x00", b"\xff\xff\xff", b"\xf0\x0f\x00\xff\x01",
           b"\x00\x00\x80", b"\xff\xff\xfe", b"foobar", b"\x01" + b"\x00" * 20 + b"\x80"]


def test_bitcount_ranges(same, seed) -> None:
    for index, value in enumerate(_VALUES):
        key = f"v{index}"
        seed(key, value)
        same("BITCOUNT", key)
        size = len(value)
        for start in range(-size * 8 - 3, size * 8 + 3, 5 if size > 3 else 1):
            for end in (-size * 8 - 1, -9, -2, -1, 0, 5, 8, 9, size * 8):
                same("BITCOUNT", key, start, end, "BIT")
                if -size - 2 <= start <= size + 2:
                    same("BITCOUNT", key, start, end)
                    same("BITCOUNT", key, start, end, "byte")


def test_bitcount_across_count_blocks(same, seed) -> None:
    """BITCOUNT counts a long range block by block: ranges that start, end or cross at a
    block's edge count as redis-server counts them."""
    block = bitmaps._COUNT_BLOCK
    value = bytes(random.Random(5).getrandbits(8) for _ in range(2 * block + 9))
    seed("long", value)
    same("BITCOUNT", "long")
    for start in (0, 1, block - 1, block, block + 1):
        for end in (block - 2, block - 1, block, 2 * block, -1):
            same("BITCOUNT", "long", start, end)
            same("BITCOUNT", "long", start * 8 + 3, end * 8 + 5 if end >= 0 else -3, "BIT")


def test_bitcount_argument_checks(same, seed) -> None:
    same("SET", "k", "foobar")
    same("BITCOUNT", "k", 0)  # neither one nor three arguments
    same("BITCOUNT", "missing", 0)  # the missing key answers first
    same("BITCOUNT", "k", 0, 1, "nibble")
    same("BITCOUNT", "k", -1, -2, "nibble")  # the empty negative range answers first
    same("BITCOUNT", "k", "x", 1)
    same("BITCOUNT", "k", 0, "x")
    same("BITCOUNT", "k", 0, 1, "BIT", "extra")
    same("BITCOUNT", "k", INT64_MIN, INT64_MAX, "BIT")
    seed("l", deque([b"a"]))
    same("BITCOUNT", "l", "x", "y")  # WRONGTYPE first


def test_bitpos_ranges(same, seed) -> None:
    for index, value in enumerate(_VALUES):
        key = f"v{index}"
        seed(key, value)
        size = len(value)
        for bit in (0, 1):
            same("BITPOS", key, bit)
            for start in range(-size * 8 - 2, size * 8 + 2, 5 if size > 3 else 1):
                same("BITPOS", key, bit, start, -1, "BIT")
                for end in (-size * 8 - 1, -9, -2, 0, 3, 9, size * 8):
                    same("BITPOS", key, bit, start, end, "BIT")
                if -size - 2 <= start <= size + 2:
                    same("BITPOS", key, bit, start)
                    for end in (-size - 1, -2, -1, 0, 1, size):
                        same("BITPOS", key, bit, start, end)
                        same("BITPOS", key, bit, start, end, "BYTE")


def test_bitpos_skips_long_runs_exactly() -> None:
    """Runs longer than a skip block are passed over by memcmp, then the search goes on
    byte by byte: the first bit found at, before and after each block edge (a 512 MB
    bitmap's BITPOS took 5.7 s, redis-server's 0.1 s)."""
    block = bitmaps._SKIP
    for bit, fill in ((1, 0x00), (0, 0xFF)):
        for where in (0, block - 1, block, block + 1, 2 * block - 1, 2 * block + 7, None):
            data = bytearray([fill]) * (2 * block + 10)
            if where is not None:
                data[where] ^= 0x10
            for start in (0, 1, block - 1, block):
                for count in (block, block + 1, len(data) - start):
                    if where is not None and start <= where < start + count:
                        expected = (where - start) * 8 + 3  # the bit flipped: 0x10
                    else:
                        expected = -1 if bit else count * 8  # (the zeros on the right)
                    assert bitmaps._bitpos(data, start, count, bit) == expected, \
                        (bit, where, start, count)


def test_bitpos_argument_checks(same, seed) -> None:
    same("SET", "k", "\xff\xf0")
    for bit in ("2", "-1", "x", ""):
        same("BITPOS", "k", bit)
        same("BITPOS", "missing", bit)
    same("BITPOS", "missing", 1, "x")  # a missing key answers before the range is read
    same("BITPOS", "missing", 0, 0, 1, "nibble")
    same("BITPOS", "k", 0, "x")
    same("BITPOS", "k", 0, 0, "x")
    same("BITPOS", "k", 0, "x", 1, "nibble")  # start, then the unit, then end
    same("BITPOS", "k", 0, 0, "x", "nibble")
    same("BITPOS", "k", 0, 0, "x", "bit")
    same("BITPOS", "k", 0, 0, 1, "bit", "extra")
    same("BITPOS", "k", 1, INT64_MIN, INT64_MAX, "BIT")
    seed("l", deque([b"a"]))
    same("BITPOS", "l", 1, "x")
    same("BITPOS", "l", 3)  # the bit is checked before the type


# -- BITOP ---------------------------------------------------------------------------------
def test_bitop(same, seed) -> None:
    seed("a", b"\xff\x0f\xf0" + b"a" * 40)
    seed("b", b"\x01\x02")
    seed("c", b"foobar")
    seed("e", b"")
    seed("n", b"123")
    for op in ("AND", "OR", "XOR", "and", "Or", "xOr"):
        same("BITOP", op, "dst", "a", "b", "c", "missing")
        same("GET", "dst")
        same("BITOP", op, "dst", "b")
        same("GET", "dst")
        same("BITOP", op, "dst", "dst", "n")  # the target is also a source
        same("GET", "dst")
    same("BITOP", "NOT", "dst", "a")
    same("GET", "dst")
    same("BITOP", "NOT", "dst", "n")
    same("GET", "dst")
    same("OBJECT", "ENCODING", "dst")  # a raw string, however short
    same("BITOP", "NOT", "dst", "e")  # an empty result deletes the target
    same("EXISTS", "dst")
    same("SET", "dst", "x", "EX", "100")
    same("BITOP", "OR", "dst", "b")
    same("TTL", "dst")  # stored afresh: no TTL
    same("BITOP", "AND", "dst", "missing", "e")
    same("EXISTS", "dst")


def test_bitop_errors(same, seed) -> None:
    seed("l", deque([b"a"]))
    seed("s", b"x")
    same("BITOP", "NAND", "dst", "s")
    same("BITOP", "NOT", "dst", "s", "s")
    same("BITOP", "NOT", "dst", "l", "s")
    same("BITOP", "AND", "dst", "s", "l")
    same("BITOP", "AND", "l", "s")  # the target's type does not matter: it is replaced
    same("TYPE", "l")
    same("BITOP", "AND", "dst")


# -- BITFIELD --------------------------------------------------------------------------------
def test_bitfield_get_set_incrby(same, seed) -> None:
    same("BITFIELD", "k", "SET", "i8", 0, 100, "GET", "i8", 0, "GET", "u4", 0, "GET", "u4", 4)
    same("BITFIELD", "k", "INCRBY", "i5", 100, 1, "GET", "u4", 0, "SET", "u3", "#3", 5)
    same("BITFIELD", "k", "set", "u8", "#1", 255, "get", "u8", 8, "incrby", "u2", 102, 1)
    same("GET", "k")
    same("BITFIELD", "k", "GET", "i64", 0, "GET", "u63", 1, "GET", "i64", 1000)
    same("BITFIELD", "k", "SET", "i64", 3, INT64_MIN, "GET", "i64", 3, "GET", "u63", 4)
    same("BITFIELD", "k", "SET", "u63", 5, INT64_MAX, "GET", "u63", 5)
    same("BITFIELD", "k", "SET", "u1", 0, 1, "SET", "i1", 1, -1, "GET", "i1", 0, "GET", "u1", 1)
    same("BITFIELD", "k")
    same("BITFIELD", "k", "OVERFLOW", "FAIL")
    same("BITFIELD", "missing", "GET", "u8", 0, "GET", "i16", 100)
    same("EXISTS", "missing")
    same("BITFIELD_RO", "k", "GET", "u8", 0, "get", "i3", "#5")
    same("BITFIELD_RO", "missing", "GET", "u8", 0)
    same("SET", "n", "-42")
    same("BITFIELD", "n", "GET", "i16", 0, "INCRBY", "u8", 8, 1)
    same("GET", "n")
    same("OBJECT", "ENCODING", "n")


def test_one_write_bitfield_and_setbit_forms(same) -> None:
    """BITFIELD with one SET or INCRBY and SETBIT take a short path for plain offsets and
    field values that fit: each edge of it (and what it leaves to the general one) against
    redis-server."""
    for kind, values in (("u8", (0, 255, 256, -1)), ("i8", (127, -128, 128, -129)),
                         ("u63", (INT64_MAX, -1)), ("i64", (INT64_MAX, INT64_MIN)),
                         ("u1", (1, 2)), ("i1", (-1, 1))):
        for value in values:
            same("BITFIELD", "f", "SET", kind, 5, value)
            same("BITFIELD", "f", "INCRBY", kind, 5, value)
            same("BITFIELD", "f", "incrby", kind, "#2", value)
    same("BITFIELD", "f", "INCRBY", "u8", 0, 0)
    same("BITFIELD", "new", "INCRBY", "u8", 0, 0)  # a new key: created, though 0
    same("GET", "new")
    for offset in ("7", "007", "+7", "-1", "#1", "4294967296", "99999999999999999999", ""):
        same("BITFIELD", "f", "SET", "u8", offset, 1)
        same("SETBIT", "b", offset, 1)
    for kind in ("u64", "i65", "u0", "U8", "u08", "x"):
        same("BITFIELD", "f", "SET", kind, 0, 1)
    for value in ("1.5", "", "9223372036854775808", "-9223372036854775808", "0x1"):
        same("BITFIELD", "f", "INCRBY", "i64", 0, value)
    same("GET", "f")
    same("GET", "b")
    same("LPUSH", "l", "x")
    same("BITFIELD", "l", "SET", "u8", 0, 1)
    same("BITFIELD", "l", "SET", "u8", "x", 1)  # the offset is checked before the type
    same("SETBIT", "l", 7, 1)
    same("SETBIT", "l", 7, 2)


@pytest.mark.parametrize("mode", ["WRAP", "SAT", "FAIL"])
def test_bitfield_overflow(same, mode) -> None:
    for kind in ("i1", "i2", "i8", "i63", "i64", "u1", "u8", "u62", "u63"):
        same("DEL", "k")
        bits = int(kind[1:])
        if kind[0] == "i":
            top, bottom = (1 << (bits - 1)) - 1, -(1 << (bits - 1))
        else:
            top, bottom = (1 << bits) - 1, 0
        for value in (top, bottom, top + 1, bottom - 1, 0, -1, INT64_MAX, INT64_MIN, 1):
            if INT64_MIN <= value <= INT64_MAX:
                same("BITFIELD", "k", "OVERFLOW", mode, "SET", kind, 3, value, "GET", kind, 3)
        for start in (top, bottom, 0):
            for incr in (1, -1, top, -top, INT64_MAX, INT64_MIN, 2, -2):
                same("BITFIELD", "k", "SET", kind, 0, start, "OVERFLOW", mode,
                     "INCRBY", kind, 0, incr, "GET", kind, 0)
    same("BITFIELD", "k", "OVERFLOW", mode, "INCRBY", "u8", 0, 300, "OVERFLOW", "WRAP",
         "INCRBY", "u8", 0, 300)


def test_bitfield_fail_on_a_new_key_creates_it(same, prop) -> None:
    same("BITFIELD", "k", "OVERFLOW", "FAIL", "SET", "u2", 0, 9)
    same("GET", "k")  # Redis creates it, though nothing was written


def test_bitfield_fail_that_grew_the_string_is_replicated(same, run, prop) -> None:
    """Every write refused by OVERFLOW FAIL still creates or grows the string (the replies and
    the value are Redis's). Redis 7.0 propagates nothing then, and its own replicas keep the
    old string (found by the differential with replicas); kvrepl sends the command, which
    grows the string on any replica, a redis-server one included."""
    same("SET", "k", "v")
    assert same("BITFIELD", "k", "OVERFLOW", "FAIL", "INCRBY", "i5", "#1", 100) == [None]
    assert same("GET", "k") == b"v\x00"
    run("SET", "k", "v")
    prop.clear()
    assert run("BITFIELD", "k", "OVERFLOW", "FAIL", "INCRBY", "i5", "#1", 100) == [None]
    assert prop == [[b"BITFIELD", b"k", b"OVERFLOW", b"FAIL", b"INCRBY", b"i5", b"#1", b"100"]]
    prop.clear()
    run("BITFIELD", "new", "OVERFLOW", "FAIL", "SET", "u2", 0, 9)
    assert prop == [[b"BITFIELD", b"new", b"OVERFLOW", b"FAIL", b"SET", b"u2", b"0", b"9"]]
    prop.clear()
    run("BITFIELD", "new", "OVERFLOW", "FAIL", "SET", "u2", 0, 9)  # long enough: no change
    assert prop == []


def test_bitfield_errors_in_order(same, seed) -> None:
    seed("l", deque([b"a"]))
    bad_types = ("u64", "i65", "u0", "i0", "x8", "", "i", "u-1", "i08", "I8", "u 8", "i8.0")
    for kind in bad_types:
        same("BITFIELD", "k", "GET", kind, 0)
    same("BITFIELD", "k", "GET", b"i8\x00junk", 0)  # the width is read as a C string
    for offset in ("-1", "x", "#-1", "#x", "##1", "4294967296", "#536870912",
                   "#1152921504606846977", "#2305843009213693953"):
        same("BITFIELD", "k", "GET", "u8", offset)
        same("BITFIELD", "k", "SET", "u8", offset, 1)
    same("BITFIELD", "k", "SET", "u8", 0, "x")
    same("BITFIELD", "k", "INCRBY", "u8", 0, "9223372036854775808")
    same("BITFIELD", "k", "GET", "u8")
    same("BITFIELD", "k", "SET", "u8", 0)
    same("BITFIELD", "k", "OVERFLOW")
    same("BITFIELD", "k", "OVERFLOW", "nope", "GET", "u8", 0)
    same("BITFIELD", "k", "FOO", "u8", 0)
    same("BITFIELD", "k", "GET", "u8", 0, "SET", "u64", 0, 1)  # parsed whole before running
    same("EXISTS", "k")
    same("BITFIELD", "l", "GET", "u8", 0)
    same("BITFIELD", "l", "SET", "u8", 0, 1)
    same("BITFIELD", "l", "SET", "u99", 0, 1)  # arguments before the type
    same("BITFIELD_RO", "k", "SET", "u8", 0, 1)
    same("BITFIELD_RO", "k", "SET", "u8", 0, "x")  # the value is parsed first
    same("BITFIELD_RO", "k", "INCRBY", "u8", 0, 1, "GET", "u64", 0)
    same("BITFIELD_RO", "l", "GET", "u8", 0)
    same("BITFIELD_RO", "k", "OVERFLOW", "SAT")
    same("EXISTS", "k")


# -- RESP3, encodings, statistics ----------------------------------------------------------
def test_resp3_replies(same3, wire) -> None:
    same3("SETBIT", "k", 9, 1)
    same3("BITFIELD", "k", "OVERFLOW", "FAIL", "INCRBY", "u2", 0, 7, "GET", "u8", 0)
    same3("BITCOUNT", "k", 0, -1, "BIT")
    same3("BITPOS", "k", 1)
    same3("BITOP", "OR", "d", "k")
    for protocol in (2, 3):
        wire("BITFIELD", "k", "OVERFLOW", "FAIL", "INCRBY", "u2", 0, 7, "GET", "i8", 0,
             protocol=protocol)
        wire("BITFIELD_RO", "nope", "GET", "u8", 0, protocol=protocol)
        wire("BITFIELD", "k", protocol=protocol)
        wire("BITOP", "NOT", "d", "k", protocol=protocol)
        wire("GETBIT", "k", 9, protocol=protocol)
        wire("BITPOS", "k", 0, 0, 1, "BIT", protocol=protocol)


def test_encodings(same) -> None:
    same("SET", "n", "123")
    same("SETBIT", "n", 0, 0)  # unchanged, still made raw (dbUnshareStringValue)
    same("OBJECT", "ENCODING", "n")
    same("SET", "e", "short")
    same("BITFIELD", "e", "SET", "u8", 0, 115)
    same("OBJECT", "ENCODING", "e")
    same("SET", "g", "short")
    same("BITFIELD", "g", "GET", "u8", 0)  # a read: untouched
    same("OBJECT", "ENCODING", "g")
    same("SETBIT", "new", 3, 1)
    same("OBJECT", "ENCODING", "new")
    same("SET", "t", "v", "EX", "100")
    same("SETBIT", "t", 100, 1)
    same("TTL", "t")  # kept


_STATS_SETUP = [("SET", "s", "foobar"), ("RPUSH", "l", "a")]
_STATS_COMMANDS = [
    ("GETBIT", "s", 1), ("GETBIT", "nope", 1), ("GETBIT", "s", -1), ("SETBIT", "s", 1, 1),
    ("SETBIT", "nope2", 1, 1), ("BITCOUNT", "s"), ("BITCOUNT", "nope"), ("BITCOUNT", "l"),
    ("BITPOS", "s", 1), ("BITPOS", "nope", 0), ("BITPOS", "s", 2),
    ("BITOP", "AND", "d", "s", "nope", "s"), ("BITOP", "AND", "d", "s", "l", "nope"),
    ("BITFIELD", "s", "GET", "u8", 0), ("BITFIELD", "nope", "GET", "u8", 0),
    ("BITFIELD", "s", "SET", "u8", 0, 1), ("BITFIELD", "s"), ("BITFIELD_RO", "s", "GET", "u8", 0),
    ("BITFIELD_RO", "nope", "GET", "u8", 0), ("BITFIELD_RO", "s", "SET", "u8", 0, 1),
]


def _counts(client: redis.Redis) -> tuple[int, int]:
    stats = client.info("stats")
    return stats["keyspace_hits"], stats["keyspace_misses"]


@pytest.mark.parametrize("command", _STATS_COMMANDS, ids=lambda c: " ".join(map(str, c)))
def test_keyspace_hits_and_misses(r, real, command) -> None:
    moved = []
    for client in (r, real):
        for setup in _STATS_SETUP:
            client.execute_command(*setup)
        before = _counts(client)
        try:
            client.execute_command(*command)
        except redis.ResponseError:
            pass
        after = _counts(client)
        moved.append((after[0] - before[0], after[1] - before[1]))
    assert moved[0] == moved[1]


# -- propagation ---------------------------------------------------------------------------
def test_propagated_as_sent_when_something_changed(run, prop) -> None:
    def changes(*args: object) -> list[list[bytes]]:
        prop.clear()
        run(*args)
        return prop[:]

    def sent(*args: object) -> list[list[bytes]]:
        return [[str(a).encode() for a in args]]

    assert changes("SETBIT", "k", 7, 1) == sent("SETBIT", "k", 7, 1)
    assert changes("SETBIT", "k", 7, 1) == []  # the same bit: nothing changed
    assert changes("SETBIT", "k", 15, 0) == sent("SETBIT", "k", 15, 0)  # grew
    assert changes("BITFIELD", "k", "GET", "u8", 0) == []
    assert changes("BITFIELD", "k", "SET", "u8", 0, 2) == sent("BITFIELD", "k", "SET", "u8", 0, 2)
    assert changes("BITFIELD", "k", "SET", "u8", 0, 2) == []
    assert changes("BITFIELD", "k", "OVERFLOW", "FAIL", "INCRBY", "u1", 0, 5) == []
    assert changes("BITFIELD", "k", "INCRBY", "u1", 0, 5) == sent(
        "BITFIELD", "k", "INCRBY", "u1", 0, 5)
    assert changes("BITOP", "OR", "d", "k") == sent("BITOP", "OR", "d", "k")
    assert changes("BITOP", "OR", "d", "none") == sent("BITOP", "OR", "d", "none")  # deleted
    assert changes("BITOP", "OR", "d", "none") == []
    assert changes("GETBIT", "k", 0) == []


def test_dirty_counts_each_changed_field(engine: Engine, run) -> None:
    before = engine.dirty
    run("BITFIELD", "k", "SET", "u8", 0, 0, "SET", "u8", 8, 0, "INCRBY", "u8", 0, 0)
    assert engine.dirty - before == 3  # a new key: every write counts
    before = engine.dirty
    run("BITFIELD", "k", "SET", "u8", 0, 0, "SET", "u8", 8, 1, "INCRBY", "u4", 0, 3)
    assert engine.dirty - before == 2


# -- strings changed in place ----------------------------------------------------------------
_IN_PLACE = [("SETBIT", "k", 7, 1), ("BITFIELD", "k", "SET", "u8", 8, 255), ("APPEND", "k", "tail"),
             ("SETRANGE", "k", 5, "mid"), ("SETRANGE", "k", 120, "far")]


@pytest.mark.parametrize("already_in_place", [False, True])
def test_snapshot_keeps_the_value_before_an_in_place_change(engine: Engine, run,
                                                            already_in_place) -> None:
    run("SET", "k", b"\x00" * 100)
    if already_in_place:
        run("SETBIT", "k", 799, 0)  # the live value is now the mutable form
    run("SET", "other", "x")
    for use_batches in (False, True):
        before = run("GET", "k")
        view = KeyspaceView(engine.keyspace)
        for command in _IN_PLACE:
            run(*command)
        if use_batches:
            values = {key: value for _, items, _ in view.batches() for key, value in items}
        else:
            values = {key: value for batch in view.entries() for _, key, value, _ in batch}
        assert values == {b"k": before, b"other": b"x"}
        assert view.copies == (1 if already_in_place or use_batches else 0)
    assert run("GET", "k")[:2] == b"\x01\xff" and run("STRLEN", "k") == 127


def test_changes_happen_in_place(engine: Engine, run) -> None:
    """Once changed by one of them, SETBIT, BITFIELD, SETRANGE and APPEND change the stored
    string itself (their cost is what they change, not the string's size); other writers
    replace it."""
    run("SET", "k", b"\x00" * 1000)
    run("SETBIT", "k", 7, 1)
    data = engine.keyspace.dbs[0].data
    live = data[b"k"]
    for command in _IN_PLACE:
        run(*command)
        assert data[b"k"] is live
    run("SET", "k", "v")
    assert type(data[b"k"]) is bytes
    run("APPEND", "k", "w")
    live = data[b"k"]
    run("SETRANGE", "k", 0, "x")
    assert data[b"k"] is live and run("GET", "k") == b"xw"


def test_replies_never_share_a_value_that_changes_later(wire) -> None:
    """Replies queued in one pipeline hold the value as it was when each command ran."""
    batch = [("SETBIT", "k", 7, 1), ("GET", "k"), ("APPEND", "k", "ab"), ("GET", "k"),
             ("SETRANGE", "k", 0, "Z"), ("MGET", "k", "k"), ("GETRANGE", "k", 0, -1),
             ("BITFIELD", "k", "SET", "u8", 0, 65), ("GETEX", "k"), ("SET", "c", "x", "GET"),
             ("GETSET", "k", "new"), ("SETBIT", "k", 0, 1), ("GETDEL", "k"), ("EXISTS", "k")]
    for protocol in (2, 3):
        wire("DEL", "k", protocol=protocol)
        wire(batch=batch, protocol=protocol)


def test_in_place_strings_read_like_any_string(same, r, real) -> None:
    for client in (r, real):
        client.rpush("list", "2", "1", "3")
    same("SETBIT", "w_1", 6, 1)  # "\x02"
    same("SETRANGE", "w_2", 0, "9")
    same("APPEND", "w_3", "5")
    same("APPEND", "w_3", "0")  # "50": a raw string that looks like an integer
    same("SORT", "list", "BY", "w_*", "GET", "w_*", "GET", "#")
    same("SORT", "list", "BY", "w_*", "GET", "w_*", "STORE", "sorted")
    same("LRANGE", "sorted", 0, -1)
    same("SETBIT", "w_1", 0, 1)  # the stored copy does not follow
    same("LRANGE", "sorted", 0, -1)
    same("LCS", "w_3", "w_2")
    same("TYPE", "w_3")
    same("OBJECT", "ENCODING", "w_3")
    same("INCR", "w_3")
    same("OBJECT", "ENCODING", "w_3")
    same("APPEND", "f", "1.5")
    same("INCRBYFLOAT", "f", "1")
    same("DUMP", "w_1")
    same("COPY", "w_1", "copy")
    same("SETBIT", "copy", 1, 1)
    same("MGET", "w_1", "copy")
    same("RENAME", "copy", "renamed")
    same("SETBIT", "renamed", 2, 1)
    same("GET", "renamed")
    same("STRLEN", "renamed")
    found = [sorted(client.scan(0, _type="string", count=100)[1]) for client in (r, real)]
    assert found[0] == found[1] == [b"f", b"renamed", b"w_1", b"w_2", b"w_3"]


def test_dump_restore_and_digest_of_in_place_strings(kvrepl_server, r) -> None:
    r.setbit("bits", 100, 1)
    r.append("bits", b"x" * 40)
    dumped = r.dump("bits")
    r.restore("back", 0, dumped)
    assert r.get("back") == r.get("bits")
    assert r.object("encoding", "back") == b"raw"  # more than 44 bytes
    digests = r.execute_command("DEBUG", "DIGEST-VALUE", "bits", "back")
    assert digests[0] == digests[1]
    before = r.execute_command("DEBUG", "DIGEST")
    r.execute_command("DEBUG", "RELOAD")
    assert r.execute_command("DEBUG", "DIGEST") == before
    assert r.get("bits") == r.get("back")


async def test_embedded_node_gets_bytes_of_an_in_place_string() -> None:
    async with kvrepl.Master() as master:
        master.execute_command("SETBIT", "k", 7, 1)
        value = master.get("k")
        assert value == b"\x01" and type(value) is bytes
        master.execute_command("SETBIT", "k", 6, 1)
        assert value == b"\x01"  # what was handed out does not change
        assert master.execute_command("GET", "k") == b"\x03"


# -- random sequences ----------------------------------------------------------------------
_keys = st.sampled_from(["a", "b", "c"])
_offsets = st.one_of(st.integers(0, 70), st.integers(0, 8).map(lambda n: f"#{n}"))
_types = st.sampled_from(["i1", "i3", "i8", "i13", "i64", "u1", "u5", "u8", "u16", "u63"])
_values = st.one_of(st.integers(-300, 300), st.sampled_from([INT64_MAX, INT64_MIN, 1 << 40]))
_ranges = st.integers(-30, 30)
_commands = st.one_of(
    st.tuples(st.just("SETBIT"), _keys, st.integers(0, 80), st.integers(0, 1)),
    st.tuples(st.just("GETBIT"), _keys, st.integers(0, 80)),
    st.tuples(st.just("BITCOUNT"), _keys, _ranges, _ranges, st.sampled_from(["BIT", "BYTE"])),
    st.tuples(st.just("BITPOS"), _keys, st.integers(0, 1), _ranges, _ranges,
              st.sampled_from(["BIT", "BYTE"])),
    st.tuples(st.just("BITPOS"), _keys, st.integers(0, 1), _ranges),
    st.tuples(st.just("BITOP"), st.sampled_from(["AND", "OR", "XOR"]), _keys, _keys, _keys),
    st.tuples(st.just("BITOP"), st.just("NOT"), _keys, _keys),
    st.tuples(st.just("BITFIELD"), _keys, st.just("OVERFLOW"),
              st.sampled_from(["WRAP", "SAT", "FAIL"]), st.sampled_from(["SET", "INCRBY"]),
              _types, _offsets, _values, st.just("GET"), _types, _offsets),
    st.tuples(st.just("BITFIELD_RO"), _keys, st.just("GET"), _types, _offsets),
    st.tuples(st.just("SETRANGE"), _keys, st.integers(0, 12), st.binary(max_size=4)),
    st.tuples(st.just("APPEND"), _keys, st.binary(max_size=4)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=st.lists(_commands, min_size=1, max_size=25))
def test_random_sequences_match_redis(compare_on, r, real, sequence) -> None:
    r.flushall()
    real.flushall()
    # DUMP bytes are compared uncompressed: two LZF compressors may both be right and differ
    # (python-lzf's and Redis's lzf_c.c pick other matches; each reads the other's output).
    for client in (r, real):
        client.config_set("rdbcompression", "no")
    try:
        same = compare_on(protocol=2)
        for command in sequence:
            same(*command)
        for key in ("a", "b", "c"):
            same("GET", key)
            same("OBJECT", "ENCODING", key)
            same("DUMP", key)
    finally:
        for client in (r, real):
            client.config_set("rdbcompression", "yes")


# -- replication ---------------------------------------------------------------------------
def _bit_writes(client) -> None:
    """Bit writes of every kind, from a client of the master."""
    client.execute_command("SETBIT", "bits", 1000, 1)
    client.execute_command("SETBIT", "bits", 7, 1)
    client.execute_command("SETBIT", "bits", 7, 1)
    client.execute_command("BITFIELD", "bf", "SET", "i8", "#3", -5, "INCRBY", "u5", 2, 40,
                           "OVERFLOW", "SAT", "INCRBY", "i16", 40, 40000)
    client.execute_command("BITFIELD", "bf", "GET", "u8", 0)
    client.execute_command("BITFIELD", "failed", "OVERFLOW", "FAIL", "SET", "u2", 0, 9)
    client.execute_command("BITOP", "XOR", "x", "bits", "bf")
    client.execute_command("BITOP", "NOT", "y", "x")
    client.execute_command("SET", "gone", "1")
    client.execute_command("BITOP", "AND", "gone", "nothing")
    client.execute_command("SET", "n", "12345")
    client.execute_command("SETBIT", "n", 3, 0)
    client.execute_command("APPEND", "bits", "tail")


async def test_kvrepl_replica_of_redis_server_master_bit_writes() -> None:
    redis_master = RedisServer("--enable-debug-command", "yes", "--repl-diskless-sync-delay",
                               "0")
    try:
        client = redis_master.client()
        client.execute_command("SETBIT", "before", 77, 1)
        async with kvrepl.Replica(follow=("127.0.0.1", redis_master.port)) as replica:
            await replica.wait_synced()

            def write() -> int:
                _bit_writes(client)
                client.delete("failed")  # created on the master only, as Redis does
                return client.info("replication")["master_repl_offset"]

            offset = await trio.to_thread.run_sync(write)
            await replica.following.wait_offset(offset)
            assert digest(replica) == await trio.to_thread.run_sync(digest, client)
            assert replica.get(b"bits") == client.get("bits")
    finally:
        redis_master.stop()


async def test_redis_server_replica_of_kvrepl_master_bit_writes() -> None:
    async with kvrepl.Master(port=0) as master:
        master.execute_command("SETBIT", "before", 77, 1)
        redis_replica = RedisServer("--replicaof", "127.0.0.1", str(master.port),
                                    "--enable-debug-command", "yes")
        try:
            client = redis_replica.client()
            await eventually(lambda: _link_up(client), "the redis replica is up")
            _bit_writes(master)
            master.execute_command("DEL", "failed")  # created on the master only, as Redis
            offset = master.replication.master_repl_offset
            await eventually(lambda: client.info("replication")["slave_repl_offset"] >= offset,
                             "redis applied the stream")
            assert await trio.to_thread.run_sync(digest, client) == digest(master)
            assert client.get("bits") == master.get(b"bits")
        finally:
            redis_replica.stop()
