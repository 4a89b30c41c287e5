"""String commands, checked against a real redis-server 7.0 (``same``) and, where the
observable is internal (propagation, dirty counter, encodings), against Redis's sources."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from types import SimpleNamespace

import pytest
from support import NOW_MS, NOW_S
from support import argv as b

from kvrepl.commands.core import Engine, Session
from kvrepl.commands.strings import _lcs_rows
from kvrepl.config import Config
from kvrepl.errors import ReplyError
from kvrepl.store import ZSet
from kvrepl.store.encoding import object_encoding, object_refcount


# -- GET / SET -------------------------------------------------------------------------------
def test_set_get_basics(same: Callable[..., object]) -> None:
    same("SET", "k", "v")
    same("GET", "k")
    same("SET", "k", "")
    same("GET", "k")
    same("GET", "missing")
    same("SET", "bin", b"\x00\xff\r\n")
    same("GET", "bin")


def test_set_options_and_conflicts(same: Callable[..., object]) -> None:
    same("SET", "k", "v", "NX")
    same("SET", "k", "w", "NX")
    same("SET", "k", "w", "XX")
    same("SET", "nokey", "w", "XX")
    same("GET", "k")
    same("SET", "k", "x", "GET")
    same("SET", "new", "x", "GET")
    same("SET", "new2", "x", "NX", "GET")
    same("SET", "new2", "y", "NX", "GET")
    same("SET", "nope", "y", "XX", "GET")
    same("SET", "new2", "z", "XX", "GET", "GET")
    same("GET", "new2")
    for bad in (
        ("NX", "XX"), ("XX", "NX"), ("EX", "10", "PX", "100"), ("PX", "10", "EX", "100"),
        ("EX", "10", "KEEPTTL"), ("KEEPTTL", "EX", "10"), ("EXAT", "10", "PXAT", "10"),
        ("PXAT", "10", "EX", "1"), ("EX",), ("PX",), ("FOO",), ("PERSIST",), ("KEEPTTL", "PXAT", "1"),
    ):
        same("SET", "k", "v", *bad)
    same("SET", "k", "v", "EX", "10", "EX", "20")
    same("TTL", "k")
    same("SET", "k", "v", "ex", "100", "nx")
    same("SET", "k", "v", "px", "100000", "xx", "get")
    same("TTL", "k")
    same("SET", "k", "v2", "KEEPTTL")
    same("TTL", "k")
    same("SET", "k", "v3")
    same("TTL", "k")


def test_set_invalid_expire_times(same: Callable[..., object]) -> None:
    for opt in ("EX", "PX", "EXAT", "PXAT"):
        for value in ("0", "-1", "abc", "1.5", "-0", "9223372036854775807",
                      "9223372036854775808", "9223372036854776", "9223372036854775"):
            same("SET", "k", "v", opt, value)
            same("GETEX", "k", opt, value)
    same("SETEX", "k", "0", "v")
    same("SETEX", "k", "-5", "v")
    same("SETEX", "k", "x", "v")
    same("PSETEX", "k", "0", "v")
    same("PSETEX", "k", "9223372036854775807", "v")
    same("SETEX", "k", "9223372036854776", "v")


def test_set_get_wrongtype(same: Callable[..., object], seed: Callable[..., None]) -> None:
    seed("l", deque([b"a"]))
    same("SET", "l", "v", "GET")
    same("GET", "l")
    same("SET", "l", "v", "NX", "GET")
    same("SET", "l", "v", "EX", "0", "GET")  # the expire is checked first
    same("SET", "l", "v")
    same("GET", "l")


def test_setnx_setex_psetex_getset(same: Callable[..., object]) -> None:
    same("SETNX", "k", "a")
    same("SETNX", "k", "b")
    same("GET", "k")
    same("SETEX", "k", "100", "c")
    same("TTL", "k")
    same("GET", "k")
    same("PSETEX", "k", "100000", "d")
    same("TTL", "k")
    same("GETSET", "k", "e")
    same("TTL", "k")
    same("GETSET", "nokey", "e")
    same("SETNX", "k", "z")


def test_getdel_getex(same: Callable[..., object], seed: Callable[..., None]) -> None:
    same("SET", "k", "v")
    same("GETDEL", "k")
    same("GETDEL", "k")
    same("EXISTS", "k")
    seed("h", {b"f": b"v"})
    same("GETDEL", "h")
    same("GETEX", "h")
    same("GETEX", "h", "EX", "10")
    same("SET", "k", "v")
    same("GETEX", "k")
    same("GETEX", "k", "EX", "100")
    same("TTL", "k")
    same("GETEX", "k", "PERSIST")
    same("TTL", "k")
    same("GETEX", "k", "PX", "200000")
    same("TTL", "k")
    same("GETEX", "k", "EXAT", str(NOW_S * 2))
    same("EXPIRETIME", "k")
    same("GETEX", "k", "PXAT", str(NOW_MS * 2))
    same("PEXPIRETIME", "k")
    same("GETEX", "missing", "EX", "bogus")  # a missing key answers nil before parsing time
    same("GETEX", "k", "EX", "bogus")
    for bad in (("NX",), ("XX",), ("GET",), ("KEEPTTL",), ("EX", "1", "PERSIST"),
                ("PERSIST", "EX", "1"), ("EX",), ("EX", "1", "PX", "1"), ("foo",)):
        same("GETEX", "k", *bad)
    same("GETEX", "k", "PERSIST", "PERSIST")
    same("GETEX", "k", "EXAT", "1")  # already past: the key is deleted
    same("EXISTS", "k")


def test_mget_mset_msetnx(same: Callable[..., object], seed: Callable[..., None]) -> None:
    same("MSET", "a", "1", "b", "2")
    seed("l", deque([b"x"]))
    same("MGET", "a", "b", "missing", "l", "a")
    same("MSET", "a")
    same("MSET", "a", "1", "b")
    same("MSETNX", "a", "1", "b")
    same("MSETNX", "c", "3", "a", "9")
    same("MGET", "a", "c")
    same("MSETNX", "c", "3", "d", "4")
    same("MSETNX", "x1", "xxx", "x1", "zzz")
    same("GET", "x1")
    same("SET", "t", "v", "EX", "100")
    same("MSET", "t", "w")
    same("TTL", "t")


def test_append_strlen(same: Callable[..., object], seed: Callable[..., None]) -> None:
    same("APPEND", "k", "hello")
    same("APPEND", "k", " world")
    same("APPEND", "k", "")
    same("GET", "k")
    same("STRLEN", "k")
    same("STRLEN", "missing")
    same("SET", "n", "-555")
    same("STRLEN", "n")
    same("SET", "t", "v", "EX", "100")
    same("APPEND", "t", "w")
    same("TTL", "t")
    seed("l", deque([b"x"]))
    same("APPEND", "l", "x")
    same("STRLEN", "l")


def test_incr_decr(same: Callable[..., object], seed: Callable[..., None]) -> None:
    same("INCR", "n")
    same("INCRBY", "n", "10")
    same("DECR", "n")
    same("DECRBY", "n", "-5")
    same("GET", "n")
    for value in ("-0", " 1", "1 ", "+1", "01", "1.0", "", "abc", "9223372036854775808",
                  "-9223372036854775808", "9223372036854775807"):
        same("SET", "x", value)
        same("INCR", "x")
        same("DECR", "x")
        same("INCRBY", "n", value)
        same("DECRBY", "n", value)
    same("SET", "x", "9223372036854775807")
    same("INCR", "x")
    same("INCRBY", "x", "-9223372036854775808")
    same("SET", "x", "-9223372036854775808")
    same("DECR", "x")
    same("DECRBY", "x", "1")
    same("DECRBY", "x", "-9223372036854775808")
    same("SET", "t", "5", "EX", "100")
    same("INCR", "t")
    same("TTL", "t")
    seed("l", deque([b"x"]))
    same("INCR", "l")
    same("INCRBY", "l", "x")  # the increment is parsed first


@pytest.mark.parametrize("start,incr", [
    ("10.5", "0.1"), ("5.0e3", "2.0e2"), ("0", "1.5"), ("1", "-1"), ("3", "0.00000000000000001"),
    ("-0.5", "0.5"), ("1e17", "1"), ("0.1", "0.2"), ("17179869184", "1.5"),
    ("123456789.123456789", "0.000000001"), ("5", "inf"), ("inf", "1"), ("5", "nan"),
    ("5", "abc"), ("5", " 1"), ("5", "1 "), ("abc", "1"), ("5", ""), (".5", "5."),
    ("1.5", "+1e2"), ("1", "-infinity"), ("2", "1e308"),
])
def test_incrbyfloat(same: Callable[..., object], start: str, incr: str) -> None:
    same("SET", "f", start)
    same("INCRBYFLOAT", "f", incr)
    same("GET", "f")
    same("INCRBYFLOAT", "missing", incr)


def test_incrbyfloat_keeps_ttl_and_wrongtype(same: Callable[..., object],
                                            seed: Callable[..., None]) -> None:
    same("SET", "f", "1", "EX", "100")
    same("INCRBYFLOAT", "f", "2.5")
    same("TTL", "f")
    seed("l", deque([b"x"]))
    same("INCRBYFLOAT", "l", "x")


def test_getrange(same: Callable[..., object]) -> None:
    same("SET", "k", "Hello World")
    for start, end in ((0, 3), (0, -1), (-4, -1), (5, 3), (5, 5000), (-5000, 10000),
                       (-1, -5), (-5, -1), (0, 4294967297), (11, 11), (-100, -50), (3, -100)):
        same("GETRANGE", "k", start, end)
    same("SET", "n", "1234")
    same("GETRANGE", "n", "0", "2")
    same("GETRANGE", "n", "-3", "-1")
    same("GETRANGE", "missing", "0", "-1")
    same("GETRANGE", "k", "a", "1")
    same("GETRANGE", "missing", "0", "a")
    same("SET", "e", "")
    same("GETRANGE", "e", "0", "-1")
    same("SUBSTR", "k", "0", "3")


def test_getrange_fuzz(same: Callable[..., object]) -> None:
    rng = random.Random(7)
    for _ in range(40):
        value = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
        same("SET", "bin", value)
        same("GETRANGE", "bin", rng.randint(-50, 50), rng.randint(-50, 50))


def test_setrange(same: Callable[..., object], seed: Callable[..., None]) -> None:
    same("SETRANGE", "k", "0", "foo")
    same("SETRANGE", "k2", "0", "")
    same("EXISTS", "k2")
    same("SETRANGE", "k3", "1", "foo")
    same("GET", "k3")
    same("SET", "k", "foo")
    same("SETRANGE", "k", "0", "b")
    same("SETRANGE", "k", "1", "")
    same("SETRANGE", "k", "4", "bar")
    same("GET", "k")
    same("SET", "n", "1234")
    same("SETRANGE", "n", "5", "2")
    same("GET", "n")
    same("SETRANGE", "k", "-1", "x")
    same("SETRANGE", "k", "x", "x")
    same("SETRANGE", "k", str(512 * 1024 * 1024 - 4), "world")
    same("SETRANGE", "k", str(512 * 1024 * 1024 - 5), "")
    same("SETRANGE", "nokey", str(512 * 1024 * 1024 - 4), "world")
    same("SETRANGE", "nokey", "9223372036854775807", "A")
    same("SETRANGE", "nokey", "2147483647", "A")
    same("SET", "t", "abc", "EX", "100")
    same("SETRANGE", "t", "1", "X")
    same("TTL", "t")
    seed("l", deque([b"x"]))
    same("SETRANGE", "l", "0", "")
    same("SETRANGE", "l", "-1", "")  # the offset is checked before the type


def test_append_size_limit(engine: Engine, session: Session, run: Callable[..., object]) -> None:
    engine.config.proto_max_bulk_len = 10
    run("SET", "k", "12345")
    with pytest.raises(ReplyError, match="string exceeds maximum allowed size"):
        run("APPEND", "k", "123456")
    assert run("APPEND", "k", "12345") == 10
    session.is_master = True  # mustObeyClient: the master's stream is never refused
    assert run("APPEND", "k", "1") == 11


# -- LCS ---------------------------------------------------------------------------------------
RNA1 = ("CACCTTCCCAGGTAACAAACCAACCAACTTTCGATCTCTTGTAGATCTGTTCTCTAAACGAACTTTAAAATCTGTGTGGCTGTCAC"
        "TCGGCTGCATGCTTAGTGCACTCACGCAGTATAATTAATAACTAATTACTGTCGTTGACAGGACACGAGTAACTCGTCTATCTTCTG"
        "CAGGCTGCTTACGGTTTCGTCCGTGTTGCAGCCGATCATCAGCACATCTAGGTTTCGTCCGGGTGTG")
RNA2 = ("ATTAAAGGTTTATACCTTCCCAGGTAACAAACCAACCAACTTTCGATCTCTTGTAGATCTGTTCTCTAAACGAACTTTAAAATCTG"
        "TGTGGCTGTCACTCGGCTGCATGCTTAGTGCACTCACGCAGTATAATTAATAACTAATTACTGTCGTTGACAGGACACGAGTAACT"
        "CGTCTATCTTCTGCAGGCTGCTTACGGTTTCGTCCGTGTTGCAGCCGATCATCAGCACATCTAGGTTT")


def test_lcs_redis_suite(same: Callable[..., object]) -> None:
    same("SET", "virus1", RNA1)
    same("SET", "virus2", RNA2)
    same("LCS", "virus1", "virus2")
    same("LCS", "virus1", "virus2", "LEN")
    same("LCS", "virus1", "virus2", "IDX")
    same("LCS", "virus1", "virus2", "IDX", "WITHMATCHLEN")
    same("LCS", "virus1", "virus2", "IDX", "WITHMATCHLEN", "MINMATCHLEN", "5")
    same("LCS", "virus1", "virus2", "IDX", "MINMATCHLEN", "-5")


def test_lcs_random_against_redis(same: Callable[..., object]) -> None:
    rng = random.Random(11)
    for _ in range(60):
        alphabet = b"ab" if rng.random() < 0.5 else b"abcd"
        a = bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 25)))
        c = bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 25)))
        same("MSET", "a", a, "b", c)
        same("LCS", "a", "b")
        same("LCS", "a", "b", "IDX", "WITHMATCHLEN")
        same("LCS", "a", "b", "IDX", "MINMATCHLEN", "2")


def test_lcs_errors(same: Callable[..., object], seed: Callable[..., None]) -> None:
    same("SET", "a", "ohmytext")
    same("SET", "b", "mynewtext")
    same("LCS", "a", "missing")
    same("LCS", "missing", "missing", "IDX")
    same("LCS", "a", "b", "LEN", "IDX")
    same("LCS", "a", "b", "MINMATCHLEN")
    same("LCS", "a", "b", "MINMATCHLEN", "x")
    same("LCS", "a", "b", "FOO")
    seed("l", deque([b"x"]))
    same("LCS", "a", "l")
    same("LCS", "l", "a", "FOO")  # the type is checked before the options


def test_lcs_resp3(kvrepl_server: object, redis_server: object) -> None:
    ours = kvrepl_server.client(protocol=3)  # type: ignore[attr-defined]
    theirs = redis_server.client(protocol=3)  # type: ignore[attr-defined]
    for client in (ours, theirs):
        client.mset({"a": "ohmytext", "b": "mynewtext"})
    args = ("LCS", "a", "b", "IDX", "WITHMATCHLEN")
    assert ours.execute_command(*args) == theirs.execute_command(*args)
    ours.close()
    theirs.close()


def test_lcs_bitparallel_matches_dynamic_programming() -> None:
    rng = random.Random(3)
    for _ in range(200):
        a = bytes(rng.choice(b"abc") for _ in range(rng.randrange(0, 30)))
        c = bytes(rng.choice(b"abc") for _ in range(rng.randrange(0, 30)))
        rows = _lcs_rows(a, c)
        table = [[0] * (len(c) + 1) for _ in range(len(a) + 1)]
        for i in range(1, len(a) + 1):
            for j in range(1, len(c) + 1):
                table[i][j] = (table[i - 1][j - 1] + 1 if a[i - 1] == c[j - 1]
                               else max(table[i - 1][j], table[i][j - 1]))
        for i in range(len(a) + 1):
            for j in range(len(c) + 1):
                assert j - (rows[i] & ((1 << j) - 1)).bit_count() == table[i][j]


def test_lcs_memory_limit(engine: Engine, run: Callable[..., object]) -> None:
    engine.config.proto_max_bulk_len = 100
    run("MSET", "a", "x" * 10, "b", "y" * 10)
    with pytest.raises(ReplyError, match="transient memory for LCS exceeds proto-max-bulk-len"):
        run("LCS", "a", "b")


# -- encodings ---------------------------------------------------------------------------------
def test_string_encodings_match_redis(same: Callable[..., object]) -> None:
    values = ["1", "0", "-1", "9999", "10000", "-0", "01", "1.5", " 1", "abc", "x" * 44,
              "x" * 45, "9223372036854775807", "9223372036854775808", "-9223372036854775808",
              "12345678901234567890", "", "a"]
    for value in values:
        same("SET", "s", value)
        same("OBJECT", "ENCODING", "s")
        same("OBJECT", "REFCOUNT", "s")
    same("MSET", "m1", "12", "m2", "abc")
    same("OBJECT", "ENCODING", "m1")
    same("GETSET", "m2", "77")
    same("OBJECT", "ENCODING", "m2")
    same("SETEX", "m3", "100", "99")
    same("OBJECT", "ENCODING", "m3")
    # APPEND and SETRANGE leave raw strings, whatever their contents
    same("SET", "a", "12")
    same("APPEND", "a", "3")
    same("OBJECT", "ENCODING", "a")
    same("OBJECT", "REFCOUNT", "a")
    same("APPEND", "fresh", "12")
    same("OBJECT", "ENCODING", "fresh")
    same("APPEND", "fresh", "")
    same("OBJECT", "ENCODING", "fresh")
    same("SET", "r", "1234")
    same("SETRANGE", "r", "0", "")
    same("OBJECT", "ENCODING", "r")
    same("SETRANGE", "r", "0", "2")
    same("OBJECT", "ENCODING", "r")
    same("SETRANGE", "new", "0", "ab")
    same("OBJECT", "ENCODING", "new")
    # INCR produces an int, INCRBYFLOAT an embstr even when integral
    same("INCR", "r")
    same("OBJECT", "ENCODING", "r")
    same("SET", "f", "1.5")
    same("INCRBYFLOAT", "f", "1.5")
    same("GET", "f")
    same("OBJECT", "ENCODING", "f")
    same("OBJECT", "REFCOUNT", "f")
    same("INCR", "f")
    same("OBJECT", "ENCODING", "f")
    same("OBJECT", "REFCOUNT", "f")
    same("INCRBY", "f", "100000")
    same("OBJECT", "REFCOUNT", "f")
    same("OBJECT", "ENCODING", "missing")


@pytest.mark.parametrize("settings", [
    {},
    {"hash_max_listpack_entries": 2, "hash_max_listpack_value": 3, "set_max_intset_entries": 2,
     "zset_max_listpack_entries": 2, "zset_max_listpack_value": 3},
    {"hash_max_listpack_entries": 0, "set_max_intset_entries": 0,
     "zset_max_listpack_entries": 0},
])
def test_collection_encodings_match_redis(real: object, configure: Callable[[str, object], None],
                                          settings: dict[str, int]) -> None:
    config = Config(**settings)
    # kvrepl's defaults are redis.conf's; a real redis-server without a config file has 512
    # hash entries, so both get the same numbers explicitly.
    for name in ("hash_max_listpack_entries", "hash_max_listpack_value",
                 "set_max_intset_entries", "zset_max_listpack_entries", "zset_max_listpack_value"):
        configure(name.replace("_", "-"), getattr(config, name))
    rng = random.Random(5)
    cases = []
    for n in range(0, 5):
        members = [rng.choice([b"1", b"22", b"-3", b"4444", b"abc", b"x" * 70, b"0",
                               b"007", b"-0", b"99999999999999999999"]) for _ in range(n)]
        cases.append(members)
    cases.append([str(i).encode() for i in range(600)])
    cases.append([b"f%d" % i for i in range(130)])
    for i, members in enumerate(cases):
        if not members:
            continue
        hkey, skey, zkey = f"h{i}", f"s{i}", f"z{i}"
        real.delete(hkey, skey, zkey)  # type: ignore[attr-defined]
        hash_value = {m: m[::-1] for m in members}
        set_value = set(members)
        zset_value = ZSet({m: float(j) for j, m in enumerate(members)})
        real.hset(hkey, mapping=hash_value)  # type: ignore[attr-defined]
        real.sadd(skey, *members)  # type: ignore[attr-defined]
        real.zadd(zkey, {m: zset_value.scores[m] for m in zset_value.scores})  # type: ignore
        for key, value in ((hkey, hash_value), (skey, set_value), (zkey, zset_value)):
            expected = real.object("encoding", key)  # type: ignore[attr-defined]
            assert object_encoding(value, config) == expected, (key, members[:5])
    real.rpush("list", "a")  # type: ignore[attr-defined]
    assert object_encoding(deque([b"a"]), config) == real.object("encoding", "list")  # type: ignore


def test_encoding_computed_from_current_contents() -> None:
    """The documented difference: Redis would still say hashtable after shrinking."""
    config = Config(hash_max_listpack_entries=2)
    assert object_encoding({b"a": b"1", b"b": b"2", b"c": b"3"}, config) == b"hashtable"
    assert object_encoding({b"a": b"1"}, config) == b"listpack"
    assert object_encoding(object(), config) == b"unknown"


def test_refcount_without_shared_integers() -> None:
    # Settings as Redis's would be with maxmemory set (kvrepl's Config refuses maxmemory
    # until eviction exists; the rule is kept for then).
    config = SimpleNamespace(maxmemory=1 << 30, maxmemory_policy="allkeys-lru")
    assert object_refcount(b"5", config) == 1
    assert object_refcount(b"5", Config()) == 2147483647
    assert object_refcount(b"5", Config(maxmemory_policy="allkeys-lru")) == 2147483647


# -- propagation and dirty ---------------------------------------------------------------------
@pytest.mark.parametrize("command,expected", [
    (("SET", "k", "v"), [["SET", "k", "v"]]),
    (("SET", "k", "v", "EX", "10"), [["SET", "k", "v", "PXAT", str(NOW_MS + 10000)]]),
    (("SET", "k", "v", "PX", "10"), [["SET", "k", "v", "PXAT", str(NOW_MS + 10)]]),
    (("SET", "k", "v", "EXAT", "5"), [["SET", "k", "v", "PXAT", "5000"]]),
    (("SET", "k", "v", "PXAT", "5"), [["SET", "k", "v", "PXAT", "5"]]),
    (("SET", "k", "v", "GET", "EX", "1"), [["SET", "k", "v", "PXAT", str(NOW_MS + 1000)]]),
    (("set", "k", "v", "get", "KEEPTTL", "GeT"), [["set", "k", "v", "KEEPTTL"]]),
    (("SET", "k", "v", "NX"), [["SET", "k", "v", "NX"]]),
    (("SETEX", "k", "10", "v"), [["SET", "k", "v", "PXAT", str(NOW_MS + 10000)]]),
    (("PSETEX", "k", "10", "v"), [["SET", "k", "v", "PXAT", str(NOW_MS + 10)]]),
    (("SETNX", "k", "v"), [["SETNX", "k", "v"]]),
    (("GETSET", "k", "v"), [["SET", "k", "v"]]),
    (("MSET", "a", "1", "b", "2"), [["MSET", "a", "1", "b", "2"]]),
    (("INCRBYFLOAT", "k", "1.5"), [["SET", "k", "1.5", "KEEPTTL"]]),
    (("INCR", "k"), [["INCR", "k"]]),
    (("APPEND", "k", "x"), [["APPEND", "k", "x"]]),
    (("SETRANGE", "k", "1", "x"), [["SETRANGE", "k", "1", "x"]]),
    (("SETRANGE", "k", "1", ""), []),
    (("GET", "k"), []),
])
def test_propagation(run: Callable[..., object], prop: list[list[bytes]],
                     command: tuple[str, ...], expected: list[list[str]]) -> None:
    run(*command)
    assert prop == [b(*argv) for argv in expected]


def test_propagation_of_gets(run: Callable[..., object], prop: list[list[bytes]]) -> None:
    run("SET", "k", "v", "EX", "100")
    prop.clear()
    run("GETEX", "k")
    run("GETEX", "missing", "EX", "10")
    run("GETEX", "k", "PERSIST")
    assert prop == [b("PERSIST", "k")]
    run("GETEX", "k", "PERSIST")  # no TTL left: nothing changes, nothing propagates
    run("GETEX", "k", "EX", "10")
    run("GETEX", "k", "PXAT", str(NOW_MS + 5))
    run("GETEX", "k", "EXAT", "1")
    assert prop[1:] == [b("PEXPIREAT", "k", NOW_MS + 10000), b("PEXPIREAT", "k", NOW_MS + 5),
                        b("DEL", "k")]
    prop.clear()
    run("SET", "k", "v")
    run("GETDEL", "k")
    run("GETDEL", "k")
    assert prop == [b("SET", "k", "v"), b("DEL", "k")]


def test_set_with_past_exat_is_set_then_expires(run: Callable[..., object],
                                                prop: list[list[bytes]]) -> None:
    # Redis 7.0 stores the key with its past expiry; the next access deletes it (DEL).
    assert run("SET", "k", "v", "EXAT", "1") == b"OK"
    assert run("GET", "k") is None
    assert prop == [b("SET", "k", "v", "PXAT", "1000"), b("DEL", "k")]


def test_getex_on_replica_keeps_past_expiry(engine: Engine, run: Callable[..., object],
                                            prop: list[list[bytes]]) -> None:
    run("SET", "k", "v")
    engine.keyspace.expire_keys = False
    assert run("GETEX", "k", "PXAT", "1") == b"v"
    assert engine.keyspace.dbs[0].expires[b"k"] == 1
    assert prop[-1] == b("PEXPIREAT", "k", "1")


@pytest.mark.parametrize("command,delta", [
    (("SET", "k", "v"), 1), (("SET", "k", "v", "NX"), 0), (("SET", "k", "v", "XX"), 1),
    (("SET", "new", "v", "XX"), 0), (("SETNX", "k", "v"), 0), (("MSET", "a", "1", "b", "2"), 2),
    (("MSETNX", "k", "1", "z", "2"), 0), (("MSETNX", "y", "1", "z", "2"), 2),
    (("GETDEL", "k"), 1), (("GETDEL", "nokey"), 0), (("GETEX", "k"), 0),
    (("GETEX", "k", "EX", "5"), 1), (("GETEX", "k", "PERSIST"), 0), (("INCR", "n"), 1),
    (("INCRBYFLOAT", "n", "1"), 1), (("APPEND", "k", ""), 1), (("SETRANGE", "k", "0", ""), 0),
    (("SETRANGE", "k", "0", "x"), 1), (("GETSET", "k", "v"), 1), (("GET", "k"), 0),
    (("INCR", "k"), 0),
])
def test_dirty(engine: Engine, run: Callable[..., object], command: tuple[str, ...],
               delta: int) -> None:
    run("SET", "k", "v")
    before = engine.dirty
    try:
        run(*command)
    except ReplyError:
        pass
    assert engine.dirty - before == delta


def test_plain_set_over_an_expired_key_propagates_its_deletion_first(
        engine, run: Callable[..., object], prop: list[list[bytes]]) -> None:
    """SET looks the key up for writing (lookupKeyWrite), so a stale key expires first
    and Redis 7.0 propagates its DEL with the SET, as one MULTI/EXEC."""
    run("SET", "k", "old", "PX", "5")
    prop.clear()
    engine.keyspace.clock = lambda: NOW_S + 1
    run("SET", "k", "new")
    assert prop == [b("MULTI"), b("DEL", "k"), b("SET", "k", "new"), b("EXEC")]
    assert run("GET", "k") == b"new"
    assert run("TTL", "k") == -1
