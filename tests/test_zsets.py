"""Sorted set commands: differential tests against a real redis-server 7.0, blocking pops on
a live kvrepl server, propagation rewrites, and ZSet invariants under random operations."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from support import Call, wait_blocked, waiters

from kvrepl.store.values import ZSet

Same = Callable[..., object]


def _fill(same: Same, key: str = "z") -> None:
    same("ZADD", key, "1", "a", "2", "b", "3", "c", "4", "d", "5", "e", "-inf", "lo", "+inf", "hi")


# -- ZADD, ZINCRBY, ZREM, ZCARD, ZSCORE, ZMSCORE, ZRANK -------------------------------------


def test_zadd_options_and_errors(same: Same) -> None:
    same("ZADD", "z", "1", "a", "2", "b")
    same("ZADD", "z", "1", "a", "3", "c")
    same("ZADD", "z", "CH", "5", "a", "3", "c", "9", "new")
    same("ZADD", "z", "NX", "100", "a", "7", "d")
    same("ZADD", "z", "XX", "100", "a", "7", "nope")
    same("ZADD", "z", "XX", "CH", "101", "a", "7", "nope")
    same("ZADD", "z", "GT", "CH", "1", "a", "200", "b")
    same("ZADD", "z", "LT", "CH", "1", "a", "1000", "c")
    same("ZADD", "z", "XX", "GT", "CH", "5000", "a", "5000", "x")
    same("ZADD", "z", "xx", "lt", "ch", "0", "a", "0", "x")
    same("ZRANGE", "z", "0", "-1", "WITHSCORES")
    same("ZADD", "missing", "XX", "1", "a")
    same("ZADD", "missing", "XX", "INCR", "1", "a")
    same("EXISTS", "missing")
    same("ZADD", "z", "XX", "NX", "1", "a")
    same("ZADD", "z", "GT", "NX", "1", "a")
    same("ZADD", "z", "LT", "NX", "1", "a")
    same("ZADD", "z", "GT", "LT", "1", "a")
    same("ZADD", "z", "INCR", "1", "a", "2", "b")
    same("ZADD", "z", "1")
    same("ZADD", "z", "NX", "1")
    same("ZADD", "z", "1", "a", "2")
    same("ZADD", "z", "NX")
    same("ZADD", "z", "XX", "NX", "1")  # the pair count is checked before the options clash
    same("ZADD", "z", "1", "x", "nan", "y")  # all or nothing: x is not added
    same("ZSCORE", "z", "x")
    same("ZADD", "z", "abc", "x")
    same("ZADD", "z", "", "x")
    same("SET", "str", "v")
    same("ZADD", "str", "1", "a")
    same("ZADD", "str", "x", "a")  # the score is parsed before the type is checked


@pytest.mark.parametrize("score", [
    "1e400", "-1e400", "1e-400", "1e-310", "0x10", "0X1P3", "-0x.8", " 1", "1 ", "inf", "-inf",
    "+inf", "INFINITY", "nan", "-nan", "1.", ".5", "+.5", "-0", "1e5", "1E+5", "0x", "1e",
    "+", "-", ".", "1e+", "1.5e-3", "00012", "1_0", "１", "1\x00",
])
def test_zadd_score_parsing(same: Same, score: str) -> None:
    same("ZADD", "z", score, "m")
    same("ZSCORE", "z", "m")
    same("ZINCRBY", "z", score, "m")


def test_zadd_incr_and_zincrby(same: Same) -> None:
    same("ZINCRBY", "z", "2.5", "a")
    same("ZINCRBY", "z", "-1", "a")
    same("ZADD", "z", "INCR", "1", "a")
    same("ZADD", "z", "NX", "INCR", "1", "a")
    same("ZADD", "z", "XX", "INCR", "1", "nope")
    same("ZADD", "z", "GT", "INCR", "-1", "a")
    same("ZADD", "z", "LT", "INCR", "-1", "a")
    same("ZADD", "z", "LT", "INCR", "1", "a")
    same("ZADD", "z", "INCR", "+inf", "a")
    same("ZADD", "z", "INCR", "-inf", "a")
    same("ZINCRBY", "z", "-inf", "a")
    same("ZADD", "z", "GT", "INCR", "+inf", "a")
    same("ZADD", "z", "LT", "INCR", "-inf", "a")
    same("ZINCRBY", "z", "0.1", "f")
    same("ZINCRBY", "z", "0.2", "f")
    same("ZINCRBY", "z", "nx", "a")  # parsed as the NX option: one argument left
    same("ZINCRBY", "z", "abc", "a")
    same("ZINCRBY", "z", "1", "a", "2")
    same("ZADD", "z", "1.7976931348623157e308", "max")
    same("ZINCRBY", "z", "1.7976931348623157e308", "max")
    same("ZRANGE", "z", "0", "-1", "WITHSCORES")


def test_zrem_zcard_zscore_zmscore_zrank(same: Same) -> None:
    _fill(same)
    same("ZCARD", "z")
    same("ZCARD", "missing")
    same("ZSCORE", "z", "c")
    same("ZSCORE", "z", "hi")
    same("ZSCORE", "z", "lo")
    same("ZSCORE", "z", "nope")
    same("ZSCORE", "missing", "a")
    same("ZMSCORE", "z", "a", "nope", "hi")
    same("ZMSCORE", "missing", "a", "b")
    same("ZMSCORE", "z")
    for member in ("lo", "a", "e", "hi", "nope"):
        same("ZRANK", "z", member)
        same("ZREVRANK", "z", member)
    same("ZRANK", "missing", "a")
    same("ZREM", "z", "a", "a", "nope", "b")
    same("ZREM", "missing", "a")
    same("ZADD", "small", "1", "x", "2", "y")
    same("ZREM", "small", "x", "y", "z")
    same("EXISTS", "small")
    same("SET", "str", "v")
    for args in (("ZCARD", "str"), ("ZSCORE", "str", "a"), ("ZMSCORE", "str", "a"),
                 ("ZRANK", "str", "a"), ("ZREVRANK", "str", "a"), ("ZREM", "str", "a")):
        same(*args)
    same("ZADD", "neg", "-0", "m", "0", "n")
    same("ZSCORE", "neg", "m")
    same("ZADD", "neg", "0", "m")
    same("ZSCORE", "neg", "m")


def test_score_replies_resp3(same3: Same) -> None:
    same3("ZADD", "z", "1.5", "a", "2", "b", "inf", "c", "-0", "d")
    same3("ZSCORE", "z", "a")
    same3("ZSCORE", "z", "c")
    same3("ZSCORE", "z", "nope")
    same3("ZSCORE", "missing", "a")
    same3("ZMSCORE", "z", "a", "nope", "d")
    same3("ZINCRBY", "z", "1", "a")
    same3("ZADD", "z", "INCR", "1", "b")
    same3("ZADD", "z", "NX", "INCR", "1", "b")
    same3("ZRANK", "z", "nope")
    same3("ZRANK", "missing", "a")
    same3("ZRANGE", "z", "0", "-1", "WITHSCORES")
    same3("ZRANGE", "z", "0", "-1")
    same3("ZRANGE", "z", "(1", "+inf", "BYSCORE", "REV", "WITHSCORES")
    same3("ZREVRANGE", "z", "0", "1", "WITHSCORES")
    same3("ZRANGEBYSCORE", "z", "-inf", "inf", "WITHSCORES", "LIMIT", "1", "2")


# -- ranges ---------------------------------------------------------------------------------


def test_zrange_by_rank(same: Same) -> None:
    _fill(same)
    for start, stop in [("0", "-1"), ("0", "0"), ("1", "3"), ("-3", "-1"), ("-100", "100"),
                        ("5", "2"), ("7", "10"), ("-1", "-2"), ("6", "6"), ("-8", "-7")]:
        same("ZRANGE", "z", start, stop)
        same("ZRANGE", "z", start, stop, "WITHSCORES")
        same("ZRANGE", "z", start, stop, "REV")
        same("ZREVRANGE", "z", start, stop, "WITHSCORES")
    same("ZRANGE", "missing", "0", "-1")
    same("ZRANGE", "z", "a", "1")
    same("ZRANGE", "z", "0", "1.5")
    same("ZRANGE", "z", "0", "-1", "LIMIT", "0", "1")
    same("ZRANGE", "z", "0", "-1", "LIMIT", "0", "-1")  # LIMIT x -1 is "no limit": accepted
    same("ZRANGE", "z", "0", "-1", "LIMIT", "0")
    same("ZRANGE", "z", "0", "-1", "LIMIT", "x", "1")
    same("ZRANGE", "z", "0", "-1", "BYSCORE", "BYLEX")
    same("ZRANGE", "z", "0", "-1", "REV", "REV")
    same("ZRANGE", "z", "0", "-1", "foo")
    same("ZREVRANGE", "z", "0", "-1", "REV")
    same("ZREVRANGE", "z", "0", "-1", "BYSCORE")
    same("ZREVRANGE", "z", "0", "-1", "LIMIT", "0", "1")
    same("SET", "str", "v")
    same("ZRANGE", "str", "0", "-1")
    same("ZRANGE", "str", "x", "-1")  # bad index reported before the type


SCORE_RANGES = [
    ("-inf", "+inf"), ("2", "4"), ("(2", "4"), ("2", "(4"), ("(2", "(4"), ("(1", "(2"),
    ("4", "2"), ("3", "3"), ("(3", "3"), ("-inf", "-inf"), ("+inf", "+inf"), ("(-inf", "(+inf"),
    ("(+inf", "+inf"), ("0", "1e400"), ("", ""), ("(", "5"), (" 2", "4"), ("0x2", "0x4"),
    ("1e-400", "(1e400"), ("inf", "-inf"),
]


def test_zrange_by_score(same: Same) -> None:
    _fill(same)
    same("ZADD", "z", "3", "c2", "3", "c1")
    for low, high in SCORE_RANGES:
        same("ZRANGEBYSCORE", "z", low, high)
        same("ZRANGEBYSCORE", "z", low, high, "WITHSCORES")
        same("ZREVRANGEBYSCORE", "z", high, low, "WITHSCORES")
        same("ZRANGE", "z", low, high, "BYSCORE")
        same("ZRANGE", "z", high, low, "BYSCORE", "REV")
        same("ZCOUNT", "z", low, high)
    for offset, count in [("0", "2"), ("1", "2"), ("2", "100"), ("8", "1"), ("9", "1"),
                          ("100", "1"), ("-1", "2"), ("1", "-1"), ("0", "0"), ("3", "-5")]:
        same("ZRANGEBYSCORE", "z", "-inf", "+inf", "LIMIT", offset, count)
        same("ZRANGEBYSCORE", "z", "(1", "4", "WITHSCORES", "LIMIT", offset, count)
        same("ZREVRANGEBYSCORE", "z", "4", "(1", "LIMIT", offset, count, "WITHSCORES")
        same("ZRANGE", "z", "4", "1", "BYSCORE", "REV", "LIMIT", offset, count)
    for low, high in [("a", "1"), ("1", "b"), ("nan", "1"), ("(nan", "1"), ("1", "(x"),
                      (" ", "1"), ("1 ", "2"), ("((1", "2"), ("[1", "2")]:
        same("ZRANGEBYSCORE", "z", low, high)
        same("ZCOUNT", "z", low, high)
        same("ZREMRANGEBYSCORE", "z", low, high)
    same("ZRANGEBYSCORE", "z", "0", "1", "REV")
    same("ZRANGEBYSCORE", "z", "0", "1", "BYSCORE")
    same("ZRANGEBYSCORE", "z", "0", "1", "LIMIT", "0")
    same("ZRANGEBYSCORE", "z", "0", "1", "LIMIT", "0", "x")
    same("ZRANGEBYSCORE", "missing", "0", "1")
    same("ZCOUNT", "missing", "0", "1")
    same("ZCOUNT", "missing", "x", "1")
    same("SET", "str", "v")
    same("ZRANGEBYSCORE", "str", "0", "1")
    same("ZCOUNT", "str", "0", "1")
    same("ZCOUNT", "str", "x", "1")


LEX_RANGES = [
    ("-", "+"), ("[b", "[d"), ("(b", "[d"), ("[b", "(d"), ("(b", "(d"), ("[d", "[b"),
    ("[c", "[c"), ("(c", "[c"), ("-", "[c"), ("[c", "+"), ("+", "-"), ("-", "-"), ("+", "+"),
    ("[", "+"), ("(", "+"), ("-", "("), ("[aa", "(bb"), ("[b\x00", "+"), ("+\x00", "-\x00"),
]


def test_zrange_by_lex(same: Same) -> None:
    same("ZADD", "z", "0", "a", "0", "b", "0", "bb", "0", "c", "0", "d", "0", "e", "0", "",
         "0", "\xff", "0", "b\x00")
    for low, high in LEX_RANGES:
        same("ZRANGEBYLEX", "z", low, high)
        same("ZREVRANGEBYLEX", "z", high, low)
        same("ZRANGE", "z", low, high, "BYLEX")
        same("ZRANGE", "z", high, low, "BYLEX", "REV")
        same("ZLEXCOUNT", "z", low, high)
    for offset, count in [("0", "2"), ("1", "3"), ("8", "5"), ("9", "1"), ("-1", "3"),
                          ("2", "-1"), ("0", "0")]:
        same("ZRANGEBYLEX", "z", "-", "+", "LIMIT", offset, count)
        same("ZREVRANGEBYLEX", "z", "+", "(a", "LIMIT", offset, count)
    for low, high in [("a", "+"), ("-", "c"), ("", "+"), ("-x", "+"), ("+x", "-"), ("!a", "+")]:
        same("ZRANGEBYLEX", "z", low, high)
        same("ZLEXCOUNT", "z", low, high)
        same("ZREMRANGEBYLEX", "z", low, high)
    same("ZRANGE", "z", "-", "+", "BYLEX", "WITHSCORES")
    same("ZRANGEBYLEX", "z", "-", "+", "WITHSCORES")
    same("ZRANGEBYLEX", "missing", "-", "+")
    same("ZLEXCOUNT", "missing", "-", "+")
    same("SET", "str", "v")
    same("ZRANGEBYLEX", "str", "-", "+")
    same("ZLEXCOUNT", "str", "-", "+")


def test_lex_ranges_with_mixed_scores(same: Same) -> None:
    # Not what lex ranges are for, but Redis answers deterministically for small sets.
    same("ZADD", "m", "1", "a", "2", "b", "0", "c", "5", "d", "3", "e", "4", "aa")
    for low, high in LEX_RANGES + [("[a", "[c"), ("[b", "[e"), ("(c", "+"), ("-", "(d")]:
        same("ZRANGEBYLEX", "m", low, high)
        same("ZREVRANGEBYLEX", "m", high, low)
        same("ZREVRANGEBYLEX", "m", high, low, "LIMIT", "1", "2")
        same("ZLEXCOUNT", "m", low, high)
    same("ZREMRANGEBYLEX", "m", "[b", "[e")
    same("ZRANGE", "m", "0", "-1", "WITHSCORES")


def test_negative_zero_scores(same: Same) -> None:
    # A small (listpack) set keeps -0 as 0; results built as skiplists keep the sign.
    same("ZADD", "z", "-0", "a", "0", "b", "1", "c")
    same("ZRANGE", "z", "0", "-1", "WITHSCORES")
    same("ZADD", "z", "INCR", "-0", "new")
    same("ZSCORE", "z", "new")
    same("ZUNION", "1", "z", "WEIGHTS", "-1", "WITHSCORES")
    same("ZUNIONSTORE", "u", "1", "z", "WEIGHTS", "-1")
    same("ZRANGE", "u", "0", "-1", "WITHSCORES")
    same("ZINTER", "2", "z", "z", "WEIGHTS", "-1", "-1", "WITHSCORES")
    same("ZSCAN", "z", "0")


def test_zremrange(same: Same) -> None:
    for start, stop in [("0", "1"), ("-2", "-1"), ("1", "-2"), ("5", "2"), ("10", "20"),
                        ("-100", "0"), ("0", "-1")]:
        _fill(same)
        same("ZREMRANGEBYRANK", "z", start, stop)
        same("ZRANGE", "z", "0", "-1", "WITHSCORES")
    same("EXISTS", "z")
    for low, high in [("2", "4"), ("(2", "(4"), ("-inf", "(1"), ("5", "+inf"), ("4", "2"),
                      ("-inf", "+inf")]:
        _fill(same)
        same("ZREMRANGEBYSCORE", "z", low, high)
        same("ZRANGE", "z", "0", "-1")
    same("EXISTS", "z")
    same("ZADD", "l", "0", "a", "0", "b", "0", "c", "0", "d")
    same("ZREMRANGEBYLEX", "l", "(a", "[c")
    same("ZRANGE", "l", "0", "-1")
    same("ZREMRANGEBYLEX", "l", "-", "+")
    same("EXISTS", "l")
    same("ZREMRANGEBYRANK", "missing", "0", "1")
    same("ZREMRANGEBYRANK", "z", "a", "1")
    same("ZREMRANGEBYRANK", "missing", "a", "1")
    same("ZREMRANGEBYSCORE", "missing", "0", "1")
    same("ZREMRANGEBYLEX", "missing", "-", "+")
    same("SET", "str", "v")
    same("ZREMRANGEBYRANK", "str", "0", "1")
    same("ZREMRANGEBYSCORE", "str", "0", "1")
    same("ZREMRANGEBYLEX", "str", "-", "+")


def test_zrangestore(same: Same, same3: Same) -> None:
    _fill(same)
    same("ZRANGESTORE", "dst", "z", "0", "2")
    same("ZRANGE", "dst", "0", "-1", "WITHSCORES")
    same("ZRANGESTORE", "dst", "z", "1", "4", "BYSCORE", "LIMIT", "1", "2")
    same("ZRANGE", "dst", "0", "-1", "WITHSCORES")
    same("ZRANGESTORE", "dst", "z", "4", "1", "BYSCORE", "REV", "LIMIT", "0", "2")
    same("ZRANGE", "dst", "0", "-1", "WITHSCORES")
    same("ZRANGESTORE", "dst", "z", "[a", "[c", "BYLEX")
    same3("ZRANGESTORE", "dst", "z", "0", "-1")
    same3("ZRANGE", "dst", "0", "-1", "WITHSCORES")
    same("SET", "dst2", "string")
    same("EXPIRE", "dst2", "100")
    same("ZRANGESTORE", "dst2", "z", "0", "0")  # overwrites any type, drops the TTL
    same("TTL", "dst2")
    same("TYPE", "dst2")
    same("ZRANGESTORE", "dst", "z", "5", "1", "BYSCORE")  # empty: the destination goes
    same("EXISTS", "dst")
    same("ZRANGESTORE", "dst", "missing", "0", "-1")
    same("ZRANGESTORE", "dst", "z", "(z", "[zz", "BYLEX")
    same("ZRANGESTORE", "dst", "z", "0", "-1", "WITHSCORES")
    same("ZRANGESTORE", "dst", "z", "0", "-1", "LIMIT", "0", "1")
    same("ZRANGESTORE", "dst", "z", "0", "-1", "BYLEX")
    same("ZRANGESTORE", "dst", "z", "0")
    same("SET", "str", "v")
    same("ZRANGESTORE", "dst", "str", "0", "-1")
    same("ZRANGESTORE", "z", "z", "0", "1")
    same("ZRANGE", "z", "0", "-1")


def _random_command(rng, keys: list[str]) -> tuple[str, ...]:
    """One random sorted-set command whose reply is deterministic in Redis."""
    key = rng.choice(keys)
    member = rng.choice("abcdefghij") * rng.randint(1, 2)
    score = rng.choice(["0", "1", "-1", "2.5", "1e3", "-inf", "+inf", "(1", "(2.5"])
    plain = score.lstrip("(")
    rank = str(rng.randint(-12, 12))
    lex = rng.choice(["-", "+", "[a", "(b", "[cc", "(e", "[j", "(jj"])
    limit = ("LIMIT", str(rng.randint(-1, 4)), str(rng.randint(-1, 4)))
    return rng.choice([
        ("ZADD", key, *rng.sample(["NX", "XX", "GT", "LT", "CH"], rng.randint(0, 2)),
         plain, member, rng.choice(["1", "2", "0"]), "b"),
        ("ZADD", key, "INCR", plain, member),
        ("ZINCRBY", key, plain, member),
        ("ZREM", key, member, "a"),
        ("ZRANGE", key, rank, rank, "WITHSCORES"),
        ("ZRANGE", key, score, score, "BYSCORE", "REV", *limit),
        ("ZRANGEBYSCORE", key, score, "+inf", "WITHSCORES", *limit),
        ("ZREVRANGEBYSCORE", key, "+inf", score, *limit),
        ("ZRANGEBYLEX", "lex", lex, rng.choice(["+", "[f", "(d"]), *limit),
        ("ZREVRANGEBYLEX", "lex", rng.choice(["+", "[f", "(d"]), lex, *limit),
        ("ZLEXCOUNT", "lex", lex, "+"),
        ("ZADD", "lex", "0", member),
        ("ZREMRANGEBYLEX", "lex", lex, rng.choice(["[c", "(f"])),
        ("ZCOUNT", key, score, rng.choice(["+inf", "2", "(2.5"])),
        ("ZRANK", key, member),
        ("ZREVRANK", key, member),
        ("ZREMRANGEBYRANK", key, rank, str(rng.randint(-3, 3))),
        ("ZREMRANGEBYSCORE", key, score, rng.choice(["1", "(2.5", "+inf"])),
        ("ZPOPMIN", key, str(rng.randint(0, 2))),
        ("ZPOPMAX", key),
        ("ZMPOP", "2", key, rng.choice(keys), rng.choice(["MIN", "MAX"]), "COUNT", "2"),
        ("ZUNIONSTORE", rng.choice(keys), "2", key, rng.choice(keys), "WEIGHTS", "2", "-1",
         "AGGREGATE", rng.choice(["SUM", "MIN", "MAX"])),
        ("ZINTER", "2", key, rng.choice(keys), "WITHSCORES"),
        ("ZDIFFSTORE", rng.choice(keys), "2", key, rng.choice(keys)),
        ("ZRANGESTORE", rng.choice(keys), key, score, "+inf", "BYSCORE", *limit),
        ("ZINTERCARD", "2", key, rng.choice(keys), "LIMIT", "2"),
        ("ZMSCORE", key, member, "b"),
        ("ZCARD", key),
    ])


def test_random_command_sequences(same: Same) -> None:
    rng = random.Random(7)
    keys = ["k1", "k2", "k3"]
    for _ in range(600):
        same(*_random_command(rng, keys))
    for key in keys + ["lex"]:
        same("ZRANGE", key, "0", "-1", "WITHSCORES")


def test_big_sets_match_redis(same: Same) -> None:
    # Past zset-max-listpack-entries Redis switches to a skiplist; replies must not change.
    args = []
    for i in range(300):
        args += [str(i % 37 - 18), f"m{i:03d}"]
    same("ZADD", "big", *args)
    same("ZADD", "lexbig", *[a if n % 2 else "0" for n, a in enumerate(args)])
    for command in [("ZRANGE", "big", "100", "140", "WITHSCORES"),
                    ("ZRANGE", "big", "-5", "-1", "REV"),
                    ("ZRANGEBYSCORE", "big", "(3", "5", "WITHSCORES", "LIMIT", "4", "9"),
                    ("ZREVRANGEBYSCORE", "big", "5", "(-3", "LIMIT", "2", "5"),
                    ("ZCOUNT", "big", "-2", "(7"), ("ZRANK", "big", "m150"),
                    ("ZREVRANK", "big", "m150"), ("ZLEXCOUNT", "lexbig", "[m100", "(m200"),
                    ("ZRANGEBYLEX", "lexbig", "(m250", "+", "LIMIT", "3", "4"),
                    ("ZREVRANGEBYLEX", "lexbig", "[m020", "-"),
                    ("ZREMRANGEBYSCORE", "big", "(0", "2"), ("ZREMRANGEBYRANK", "big", "5", "20"),
                    ("ZREMRANGEBYLEX", "lexbig", "[m1", "(m2"), ("ZPOPMAX", "big", "3"),
                    ("ZUNIONSTORE", "u", "2", "big", "lexbig", "WEIGHTS", "0.5", "3"),
                    ("ZRANGE", "u", "0", "-1", "WITHSCORES"), ("ZINTERCARD", "2", "big", "u"),
                    ("ZDIFF", "2", "lexbig", "big"), ("ZRANDMEMBER", "big", "1000"),
                    ("ZCARD", "big")]:
        same(*command)


# -- pops ------------------------------------------------------------------------------------


def test_zpop(same: Same, same3: Same) -> None:
    for pop in ("ZPOPMIN", "ZPOPMAX"):
        _fill(same)
        same(pop, "z")
        same(pop, "z", "2")
        same(pop, "z", "0")
        same(pop, "z", "-1")
        same(pop, "z", "x")
        same(pop, "z", "1", "2")
        same(pop, "missing")
        same(pop, "missing", "3")
        same(pop, "z", "100")
        same("EXISTS", "z")
        _fill(same3)
        same3(pop, "z")
        same3(pop, "z", "1")
        same3(pop, "z", "2")
        same3(pop, "z", "0")
        same3(pop, "missing", "2")
        same3(pop, "missing")
    same("SET", "str", "v")
    same("ZPOPMIN", "str")
    same("ZPOPMIN", "str", "0")
    same("ZPOPMIN", "str", "x")


def test_zmpop(same: Same, same3: Same) -> None:
    same("ZADD", "z1", "1", "a", "2", "b", "3", "c")
    same("ZADD", "z2", "5", "x")
    for client in (same, same3):
        client("ZMPOP", "2", "missing", "z1", "MIN")
        client("ZMPOP", "2", "z1", "z2", "MAX", "COUNT", "10")
        client("ZMPOP", "2", "z1", "z2", "max", "count", "3")
        client("ZMPOP", "2", "z1", "z2", "MIN")
        client("ZMPOP", "1", "missing", "MIN")
    for args in [("0", "z1", "MIN"), ("-1", "z1", "MIN"), ("x", "z1", "MIN"), ("3", "z1", "MIN"),
                 ("1", "z1"), ("1", "z1", "MID"), ("1", "z1", "MIN", "COUNT"),
                 ("1", "z1", "MIN", "COUNT", "0"), ("1", "z1", "MIN", "COUNT", "-1"),
                 ("1", "z1", "MIN", "COUNT", "x"), ("1", "z1", "MIN", "COUNT", "1", "COUNT", "1"),
                 ("1", "z1", "MIN", "FOO"), ("2", "z1", "z2")]:
        same("ZMPOP", *args)
    same("SET", "str", "v")
    same("ZMPOP", "2", "missing", "str", "MIN")
    same("ZADD", "z3", "1", "a")
    same("ZMPOP", "2", "z3", "str", "MIN")  # the first non-empty key is served before the type


def test_zrandmember(same: Same, same3: Same, kvrepl_server) -> None:
    same("ZADD", "z", "1", "a", "2", "b", "3", "c")
    # Counts at least the size return the whole set in order: deterministic.
    same("ZRANDMEMBER", "z", "3")
    same("ZRANDMEMBER", "z", "100", "WITHSCORES")
    same3("ZRANDMEMBER", "z", "100", "WITHSCORES")
    same3("ZRANDMEMBER", "z", "5")
    same("ZRANDMEMBER", "z", "0")
    same("ZRANDMEMBER", "z", "0", "WITHSCORES")
    same("ZRANDMEMBER", "missing")
    same3("ZRANDMEMBER", "missing")
    same("ZRANDMEMBER", "missing", "5")
    same("ZRANDMEMBER", "missing", "-5", "WITHSCORES")
    for args in [("x",), ("1", "WITHSCORE"), ("1", "WITHSCORES", "x"), ("-9223372036854775808",),
                 ("-9223372036854775808", "WITHSCORES"), ("-9223372036854770000", "WITHSCORES"),
                 ("9223372036854775807", "WITHSCORES"), ("4611686018427387904", "WITHSCORES"),
                 ("-4611686018427387903", "WITHSCORES")]:
        same("ZRANDMEMBER", "missing", *args)
    same("SET", "str", "v")
    same("ZRANDMEMBER", "str")
    same("ZRANDMEMBER", "str", "1")
    same("ZRANDMEMBER", "str", "x")
    # Random shapes: members are from the set, distinct for positive counts.
    r = kvrepl_server.client(protocol=2)
    r.response_callbacks.clear()
    members = {b"a", b"b", b"c"}
    assert r.execute_command("ZRANDMEMBER", "z") in members
    two = r.execute_command("ZRANDMEMBER", "z", "2")
    assert len(two) == 2 and set(two) <= members and len(set(two)) == 2
    many = r.execute_command("ZRANDMEMBER", "z", "-20", "WITHSCORES")
    assert len(many) == 40
    pairs = dict(zip(many[::2], many[1::2], strict=True))
    assert pairs.keys() <= members
    assert all(float(pairs[m]) == {b"a": 1, b"b": 2, b"c": 3}[m] for m in pairs)
    r.close()


def test_zrandmember_resp3_pairs(kvrepl_server, r: redis.Redis) -> None:
    r.execute_command("ZADD", "z", "1", "a", "2", "b", "3", "c")
    client = kvrepl_server.client(protocol=3)
    client.response_callbacks.clear()
    try:
        reply = client.execute_command("ZRANDMEMBER", "z", "-5", "WITHSCORES")
        assert len(reply) == 5
        assert all(len(pair) == 2 and isinstance(pair[1], float) for pair in reply)
        reply = client.execute_command("ZRANDMEMBER", "z", "2", "WITHSCORES")
        assert len(reply) == 2 and reply[0][0] != reply[1][0]
    finally:
        client.close()


# -- ZUNION, ZINTER, ZDIFF ------------------------------------------------------------------


def test_zunion_zinter_zdiff(same: Same, same3: Same) -> None:
    same("ZADD", "z1", "1", "a", "2", "b", "3", "c")
    same("ZADD", "z2", "1", "b", "2", "c", "3", "d")
    same("SADD", "s", "a", "c", "e")
    for op in ("ZUNION", "ZINTER"):
        same(op, "2", "z1", "z2")
        same(op, "2", "z1", "z2", "WITHSCORES")
        same3(op, "2", "z1", "z2", "WITHSCORES")
        same(op, "3", "z1", "z2", "s", "WITHSCORES")
        same(op, "2", "z1", "z2", "WEIGHTS", "2", "3", "WITHSCORES")
        same(op, "2", "z1", "s", "WEIGHTS", "2", "-1.5", "AGGREGATE", "MIN", "WITHSCORES")
        same(op, "2", "z1", "z2", "AGGREGATE", "max", "WITHSCORES", "AGGREGATE", "sum")
        same(op, "2", "z1", "missing", "WITHSCORES")
        same(op, "2", "z1", "z1", "WITHSCORES")
        same(op, "1", "missing")
        same(op, "0", "z1")
        same(op, "-1", "z1")
        same(op, "x", "z1")
        same(op, "3", "z1", "z2")
        same(op, "2", "z1", "z2", "WEIGHTS", "1")
        same(op, "2", "z1", "z2", "WEIGHTS", "1", "x")
        same(op, "2", "z1", "z2", "WEIGHTS", "nan", "1")
        same(op, "2", "z1", "z2", "AGGREGATE", "avg")
        same(op, "2", "z1", "z2", "AGGREGATE")
        same(op, "2", "z1", "z2", "LIMIT", "1")
        same(op, "2", "z1", "z2", "foo")
    same("ZDIFF", "2", "z1", "z2", "WITHSCORES")
    same3("ZDIFF", "2", "z1", "z2", "WITHSCORES")
    same("ZDIFF", "3", "z1", "z2", "s")
    same("ZDIFF", "2", "s", "z1", "WITHSCORES")
    same("ZDIFF", "2", "z1", "z1")
    same("ZDIFF", "1", "missing")
    same("ZDIFF", "2", "z1", "missing", "WITHSCORES")
    same("ZDIFF", "2", "z1", "z2", "WEIGHTS", "1", "2")
    same("ZDIFF", "2", "z1", "z2", "AGGREGATE", "SUM")
    same("ZDIFF", "0", "z1")
    same("SET", "str", "v")
    same("ZUNION", "2", "z1", "str")
    same("ZINTER", "2", "missing", "str")
    same("ZDIFF", "2", "z1", "str")
    same("ZUNION", "2", "z1", "str", "WEIGHTS", "x", "y")  # the type is checked first


def test_zsetop_inf_and_nan(same: Same) -> None:
    for first, second in [("+inf", "+inf"), ("-inf", "+inf"), ("+inf", "-inf"), ("-inf", "-inf")]:
        same("ZADD", "i1", first, "key")
        same("ZADD", "i2", second, "key")
        for op in ("ZUNIONSTORE", "ZINTERSTORE"):
            same(op, "i3", "2", "i1", "i2")
            same("ZSCORE", "i3", "key")
    same("ZADD", "i1", "inf", "key", "1", "x")
    same("ZUNION", "2", "i1", "i2", "WEIGHTS", "0", "1", "WITHSCORES")
    same("ZINTER", "2", "i1", "i2", "WEIGHTS", "0", "0", "WITHSCORES")
    same("ZINTER", "2", "i1", "i2", "WEIGHTS", "1", "0", "AGGREGATE", "MIN", "WITHSCORES")
    same("ZINTER", "2", "i1", "i2", "WEIGHTS", "1", "0", "AGGREGATE", "MAX", "WITHSCORES")
    same("ZUNION", "2", "i1", "i2", "WEIGHTS", "-1", "0", "WITHSCORES")
    # The sum runs smallest input first, so rounding matches Redis.
    same("ZADD", "f1", "1e16", "m", "0", "p", "0", "q")
    same("ZADD", "f2", "1", "m")
    same("ZADD", "f3", "-1e16", "m", "0", "p")
    same("ZUNION", "3", "f1", "f2", "f3", "WITHSCORES")
    same("ZINTER", "3", "f1", "f3", "f2", "WITHSCORES")


def test_zsetop_store(same: Same) -> None:
    same("ZADD", "z1", "1", "a", "2", "b")
    same("ZADD", "z2", "3", "b", "4", "c")
    same("SADD", "s", "b", "x")
    same("ZUNIONSTORE", "dst", "3", "z1", "z2", "s", "WEIGHTS", "1", "2", "3")
    same("ZRANGE", "dst", "0", "-1", "WITHSCORES")
    same("ZINTERSTORE", "dst", "2", "z1", "z2", "AGGREGATE", "MAX")
    same("ZRANGE", "dst", "0", "-1", "WITHSCORES")
    same("ZDIFFSTORE", "dst", "2", "z1", "s")
    same("ZRANGE", "dst", "0", "-1", "WITHSCORES")
    same("ZUNIONSTORE", "z1", "2", "z1", "z2")  # the destination may be a source
    same("ZRANGE", "z1", "0", "-1", "WITHSCORES")
    same("SET", "str", "v")
    same("EXPIRE", "str", "100")
    same("ZUNIONSTORE", "str", "1", "z2")
    same("TYPE", "str")
    same("TTL", "str")
    same("ZINTERSTORE", "dst", "2", "z2", "missing")
    same("EXISTS", "dst")
    same("ZDIFFSTORE", "dst", "1", "missing")
    for op in ("ZUNIONSTORE", "ZINTERSTORE", "ZDIFFSTORE"):
        same(op, "dst", "1", "z2", "WITHSCORES")
        same(op, "dst", "0", "z2")
        same(op, "dst", "2", "z2")
        same(op, "dst", "x", "z2")
        same(op, "dst", "2", "z2", "str")
        same(op, "dst", "1", "z2", "LIMIT", "1")


def test_zintercard(same: Same) -> None:
    same("ZADD", "z1", "1", "a", "2", "b", "3", "c")
    same("ZADD", "z2", "1", "a", "2", "b", "3", "c", "4", "d")
    same("SADD", "s", "a", "b")
    same("ZINTERCARD", "2", "z1", "z2")
    same("ZINTERCARD", "3", "z1", "z2", "s")
    same("ZINTERCARD", "2", "z1", "z2", "LIMIT", "2")
    same("ZINTERCARD", "2", "z1", "z2", "LIMIT", "0")
    same("ZINTERCARD", "2", "z1", "z2", "LIMIT", "10")
    same("ZINTERCARD", "2", "z1", "missing")
    for args in [("2", "z1", "z2", "LIMIT", "-1"), ("2", "z1", "z2", "LIMIT", "x"),
                 ("2", "z1", "z2", "LIMIT"), ("2", "z1", "z2", "WITHSCORES"), ("0", "z1"),
                 ("3", "z1", "z2"), ("2", "z1", "z2", "WEIGHTS", "1", "1"),
                 ("2", "z1", "z2", "AGGREGATE", "SUM")]:
        same("ZINTERCARD", *args)
    same("SET", "str", "v")
    same("ZINTERCARD", "2", "z1", "str")


# -- ZSCAN ----------------------------------------------------------------------------------


def test_zscan_small_sets_match_redis(same: Same) -> None:
    same("ZADD", "z", "1", "a", "2.5", "b", "inf", "c", "-0", "d", "0.1", "e")
    same("ZSCAN", "z", "0")
    same("ZSCAN", "z", "17")  # a listpack ignores the cursor
    same("ZSCAN", "z", "0", "MATCH", "[ab]*")
    same("ZSCAN", "z", "0", "COUNT", "1", "MATCH", "*")
    same("ZSCAN", "missing", "0")
    same("ZSCAN", "missing", "0", "COUNT", "0")  # options are read only for an existing key
    for cursor in ("x", "-1", "+1", "", " 1", "18446744073709551615", "18446744073709551616",
                   "-18446744073709551616"):
        same("ZSCAN", "z", cursor)
    for options in [("COUNT", "0"), ("COUNT", "-1"), ("COUNT", "x"), ("COUNT",), ("MATCH",),
                    ("TYPE", "zset"), ("FOO", "1")]:
        same("ZSCAN", "z", "0", *options)
    same("SET", "str", "v")
    same("ZSCAN", "str", "0")
    same("ZSCAN", "str", "x")


def test_zscan_big_set_full_iteration(r: redis.Redis) -> None:
    r.response_callbacks.clear()
    members = {b"m%d" % i: float(i) for i in range(600)}
    r.zadd("z", members)
    seen: dict[bytes, bytes] = {}
    cursor = b"0"
    calls = 0
    removed = set()
    while True:
        cursor, items = r.execute_command("ZSCAN", "z", cursor, "COUNT", "50")
        calls += 1
        assert len(items) <= 2 * 60
        seen.update(zip(items[::2], items[1::2], strict=True))
        if calls == 2:
            # Changes during the iteration: members present throughout still come back.
            removed = {b"m%d" % i for i in range(0, 600, 7)}
            r.zrem("z", *removed)
            r.zadd("z", {b"new%d" % i: 1 for i in range(50)})
        if cursor == b"0":
            break
    assert calls > 5
    for member in members.keys() - removed:
        assert seen[member] == b"%d" % members[member]
    assert {m for m in seen if m.startswith(b"m")} <= members.keys()
    cursor, items = r.execute_command("ZSCAN", "z", "0", "MATCH", "new1*", "COUNT", "1000")
    assert cursor == b"0"
    assert sorted(items[::2]) == sorted(b"new%d" % i for i in [1, *range(10, 20)])


# -- blocking --------------------------------------------------------------------------------


def test_blocking_errors_and_immediate_service(same: Same, same3: Same) -> None:
    same("ZADD", "z", "1", "a", "2", "b", "3", "c", "4", "d", "5", "e")
    same("BZPOPMIN", "missing", "z", "0")
    same("BZPOPMAX", "z", "missing", "0.5")
    same3("BZPOPMIN", "z", "0")
    same("BZMPOP", "0", "2", "missing", "z", "MIN", "COUNT", "5")
    same("EXISTS", "z")
    same("ZADD", "z", "1", "a", "2", "b", "3", "c")
    same3("BZMPOP", "0", "1", "z", "MAX")
    for timeout in ["x", "-1", "-0.001", "nan", "1e5000", "1e-5000", "inf", "-inf", "1e300",
                    "9223372036854776", " 1", "1 ", "0x"]:
        same("BZPOPMIN", "z", timeout)
        same("BZMPOP", timeout, "1", "z", "MIN")
    same("BZPOPMAX", "missing", "0.01")
    same3("BZMPOP", "0.01", "1", "missing", "MIN")
    for args in [("0", "0", "z", "MIN"), ("0", "1", "z"), ("0", "1", "z", "MID"),
                 ("0", "1", "z", "MIN", "COUNT", "0"), ("x", "0", "z", "MIN"),
                 ("x", "1", "z", "MIN", "COUNT", "0"), ("-1", "1", "z", "MIN")]:
        same("BZMPOP", *args)
    same("SET", "str", "v")
    same("BZPOPMIN", "missing", "str", "0")
    same("BZMPOP", "0", "2", "missing", "str", "MIN")
    # Inside MULTI a blocking pop that cannot be served answers null at once.
    same("MULTI")
    same("BZPOPMIN", "missing", "0")
    same("BZMPOP", "0", "1", "missing", "MAX")
    same("ZADD", "y", "1", "a")
    same("BZPOPMAX", "y", "0")
    same("EXEC")


def test_bzpopmin_served_by_zadd(kvrepl_server, r: redis.Redis,
                                 server_propagated: list[list[bytes]]) -> None:
    waiter = Call(kvrepl_server, "BZPOPMIN", "k1", "k2", "5")
    wait_blocked(kvrepl_server, b"k2")
    r.zadd("k2", {"b": 2, "a": 1})
    assert waiter.result() == [b"k2", b"a", b"1"]
    assert r.zrange("k2", 0, -1) == [b"b"]
    assert [b"ZPOPMIN", b"k2"] in server_propagated
    assert not any(argv[0].upper() == b"BZPOPMIN" for argv in server_propagated)


def test_bzmpop_served_fifo_and_rewritten(kvrepl_server, r: redis.Redis,
                                          server_propagated: list[list[bytes]]) -> None:
    first = Call(kvrepl_server, "BZMPOP", "5", "1", "k", "MAX", "COUNT", "2")
    wait_blocked(kvrepl_server, b"k")
    second = Call(kvrepl_server, "BZPOPMAX", "k", "5")
    wait_blocked(kvrepl_server, b"k", 2)
    r.zadd("k", {"a": 1, "b": 2, "c": 3})
    assert first.result() == [b"k", [[b"c", b"3"], [b"b", b"2"]]]
    assert second.result() == [b"k", b"a", b"1"]
    assert r.exists("k") == 0
    assert [b"ZPOPMAX", b"k", b"2"] in server_propagated
    assert [b"ZPOPMAX", b"k"] in server_propagated


def test_blocked_client_not_woken_by_empty_or_wrong_type(kvrepl_server, r: redis.Redis) -> None:
    waiter = Call(kvrepl_server, "BZPOPMIN", "k", "5")
    wait_blocked(kvrepl_server, b"k")
    pipe = r.pipeline(transaction=True)
    pipe.zadd("k", {"a": 1}).delete("k").set("k", "string")
    pipe.execute()
    assert waiters(kvrepl_server, b"k") == 1
    pipe = r.pipeline(transaction=True)
    pipe.delete("k").zadd("k", {"z": 26})
    pipe.execute()
    assert waiter.result() == [b"k", b"z", b"26"]


def test_bzpopmin_timeout(kvrepl_server) -> None:
    client = kvrepl_server.client(protocol=2)
    try:
        assert client.execute_command("BZPOPMIN", "nothing", "0.05") is None
        assert client.execute_command("BZMPOP", "0.05", "1", "nothing", "MIN") is None
    finally:
        client.close()


def test_pop_propagation_rewrites(run, propagated: list[list[bytes]]) -> None:
    run("ZADD", "z", "1", "a", "2", "b", "3", "c", "4", "d")
    run("ZMPOP", "1", "z", "MIN", "COUNT", "10")
    run("ZADD", "z", "1", "a", "2", "b", "3", "c")
    run("ZMPOP", "1", "z", "MAX")
    run("BZPOPMIN", "z", "0")
    run("BZMPOP", "0", "1", "z", "MAX", "COUNT", "5")
    run("ZADD", "z", "1", "a")
    run("ZPOPMIN", "z", "7")
    run("ZPOPMIN", "z", "7")  # nothing popped: nothing propagated
    run("ZINCRBY", "z", "1", "x")
    assert propagated == [
        [b"ZADD", b"z", b"1", b"a", b"2", b"b", b"3", b"c", b"4", b"d"],
        [b"ZPOPMIN", b"z", b"4"],
        [b"ZADD", b"z", b"1", b"a", b"2", b"b", b"3", b"c"],
        [b"ZPOPMAX", b"z", b"1"],
        [b"ZPOPMIN", b"z"],
        [b"ZPOPMAX", b"z", b"1"],
        [b"ZADD", b"z", b"1", b"a"],
        [b"ZPOPMIN", b"z", b"7"],
        [b"ZINCRBY", b"z", b"1", b"x"],
    ]


def test_dirty_counts_changes(engine, run) -> None:
    def changes(*args: str) -> int:
        before = engine.dirty
        run(*args)
        return engine.dirty - before

    assert changes("ZADD", "z", "1", "a", "2", "b") == 2
    assert changes("ZADD", "z", "1", "a", "3", "b", "4", "c") == 2
    assert changes("ZADD", "z", "NX", "9", "a") == 0
    assert changes("ZREM", "z", "nope") == 0
    assert changes("ZREMRANGEBYSCORE", "z", "100", "200") == 0
    assert changes("ZRANGESTORE", "d", "z", "0", "-1") == 1
    assert changes("ZRANGESTORE", "d", "z", "5", "9") == 1  # deletes d
    assert changes("ZRANGESTORE", "d", "z", "5", "9") == 0
    assert changes("ZPOPMIN", "z", "2") == 2
    assert changes("ZUNIONSTORE", "u", "1", "z") == 1


# -- the ZSet value ----------------------------------------------------------------------------

_members = st.binary(min_size=0, max_size=3)
_scores = st.sampled_from([-math.inf, -2.5, -1.0, -0.0, 0.0, 1.0, 2.5, math.inf])
_ops = st.lists(st.one_of(
    st.tuples(st.just("add"), _members, _scores),
    st.tuples(st.just("remove"), _members, _scores),
    st.tuples(st.just("pop"), st.booleans(), _scores),
    st.tuples(st.just("remove_ranks"), st.integers(-2, 8), st.integers(-2, 8)),
), max_size=40)


@settings(max_examples=150, deadline=None)
@given(ops=_ops, probe=_scores, member=_members)
def test_zset_operations_keep_invariants(ops, probe: float, member: bytes) -> None:
    zset = ZSet()
    model: dict[bytes, float] = {}
    for op, a, b in ops:
        if op == "add":
            assert zset.add(a, b) == (a not in model)
            if a not in model or model[a] != b:
                model[a] = b
        elif op == "remove":
            assert zset.remove(a) == (model.pop(a, None) is not None)
        elif op == "pop" and model:
            expected = sorted((s, m) for m, s in model.items())[-1 if a else 0]
            assert zset.pop_rank(-1 if a else 0) == expected
            del model[expected[1]]
        elif op == "remove_ranks":
            start, stop = max(a, 0), max(b, 0)
            gone = sorted((s, m) for m, s in model.items())[start:stop]
            assert zset.remove_ranks(start, stop) == len(gone)
            for _, m in gone:
                del model[m]
        zset._check()
        assert zset.scores == model
    ordered = list(zset.ordered)
    assert ordered == sorted((s, m) for m, s in model.items())
    assert zset.score_index(probe) == sum(1 for s, _ in ordered if s < probe)
    assert zset.score_index(probe, after=True) == sum(1 for s, _ in ordered if s <= probe)
    if len({s for s, _ in ordered}) <= 1:
        assert zset.lex_index(member) == sum(1 for _, m in ordered if m < member)
        assert zset.lex_index(member, after=True) == sum(1 for _, m in ordered if m <= member)
    else:
        assert 0 <= zset.lex_index(member) <= zset.lex_index(member, after=True) <= len(zset)


# -- the lazily built order ---------------------------------------------------------------------

_lazy_ops = st.lists(st.one_of(
    st.tuples(st.just("add"), _members, _scores),
    st.tuples(st.just("remove"), _members, _scores),
    st.tuples(st.just("pop"), st.booleans(), _scores),
    st.tuples(st.just("remove_ranks"), st.integers(-2, 8), st.integers(-2, 8)),
    st.tuples(st.just("rank"), _members, _scores),
    st.tuples(st.just("score_index"), st.booleans(), _scores),
    st.tuples(st.just("lex_index"), st.booleans(), _members),
    st.tuples(st.just("read"), _members, _scores),  # score, len, in, ==, repr: never build
    st.tuples(st.just("copy"), st.booleans(), _scores),
    st.tuples(st.just("build"), st.booleans(), _scores),
), max_size=40)


def _apply(zset: ZSet, op: str, a: object, b: object) -> tuple[ZSet, object]:
    """Run one operation; return the set to go on with (a copy after "copy") and a result."""
    if op == "add":
        return zset, zset.add(a, b)
    if op == "remove":
        return zset, zset.remove(a)
    if op == "pop":
        return zset, zset.pop_rank(-1 if a else 0) if zset else None
    if op == "remove_ranks":
        return zset, zset.remove_ranks(max(a, 0), max(b, 0))
    if op == "rank":
        return zset, zset.rank(a)
    if op == "score_index":
        return zset, zset.score_index(b, after=a)
    if op == "lex_index":
        return zset, zset.lex_index(b, after=a)
    if op == "read":
        return zset, (zset.score(a), len(zset), a in zset, zset == ZSet(zset.scores), repr(zset))
    if op == "copy":
        copied = zset.copy()
        assert copied.order_built == zset.order_built
        assert copied == zset
        return (copied if a else zset), None
    return zset, (list(zset.ordered) if a else None)  # "build"


@settings(max_examples=200, deadline=None)
@given(ops=_lazy_ops, pairs=st.dictionaries(_members, _scores, max_size=8))
def test_lazy_order_gives_the_same_results_as_a_built_one(ops, pairs) -> None:
    """A set whose order is built on first need answers every operation exactly as one
    whose order exists from the start, and keeps both indexes consistent either way."""
    lazy = ZSet.from_scores(dict(pairs))
    eager = ZSet(pairs)
    eager.ordered  # noqa: B018 - reading it builds it
    assert not lazy.order_built and eager.order_built
    for op, a, b in ops:
        was_built = lazy.order_built
        lazy, got = _apply(lazy, op, a, b)
        eager, expected = _apply(eager, op, a, b)
        assert got == expected, (op, a, b)
        if op in ("add", "remove", "read", "copy") or (op == "build" and not a):
            assert lazy.order_built == was_built  # these never build the order
        lazy._check()
        eager._check()
        assert lazy.scores == eager.scores
    assert list(lazy) == list(eager) == sorted((s, m) for m, s in eager.scores.items())


def test_rdb_load_leaves_the_order_unbuilt(engine, run) -> None:
    """Loaded sets (skiplist and listpack encoded) get their order on first need only, and
    saving an unbuilt set writes the same bytes as saving a built one."""
    import io

    from kvrepl.rdb import dumps, load_into
    from kvrepl.store.database import Keyspace

    source = Keyspace()
    rng = random.Random(7)
    source.dbs[0].data[b"big"] = ZSet({b"m%d" % i: float(rng.randrange(-50, 50))
                                       for i in range(300)})
    source.dbs[0].data[b"small"] = ZSet({b"a": 2.0, b"b": 1.0, b"c": 2.0, b"d": -math.inf})
    blob = dumps(source, aux=())

    def load() -> dict:
        keyspace = Keyspace()
        load_into(keyspace, io.BytesIO(blob), drop_expired=False)
        return keyspace.dbs[0].data

    data = load()
    assert all(type(v) is ZSet and not v.order_built for v in data.values())
    again = Keyspace()
    again.dbs[0].data.update(load())
    unbuilt_bytes = dumps(again, aux=())
    for value in again.dbs[0].data.values():
        value.ordered  # noqa: B018 - reading it builds it
    assert dumps(again, aux=()) == unbuilt_bytes == blob

    load_into(engine.keyspace, io.BytesIO(blob), drop_expired=False)
    big = engine.keyspace.dbs[0].data[b"big"]
    assert run("ZSCORE", "big", "m3") is not None
    assert run("ZCARD", "big") == 300
    assert len(run("ZMSCORE", "big", "m1", "nope")) == 2
    run("ZADD", "big", "1000", "m1")
    run("ZREM", "big", "m2")
    run("COPY", "big", "big2")
    assert not big.order_built and not engine.keyspace.dbs[0].data[b"big2"].order_built
    expected = sorted((s, m) for m, s in big.scores.items())
    assert run("ZRANGE", "big", "0", "-1") == [m for _, m in expected]
    assert big.order_built
    assert run("ZRANGE", "big2", "0", "-1") == [m for _, m in expected]
