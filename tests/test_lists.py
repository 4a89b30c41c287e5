"""List commands: differential tests against a real redis-server 7.0 (replies, error texts and
the RESP2 / RESP3 bytes of null replies), propagation rewrites, and a seeded random sequence
of list operations compared reply by reply.

Blocking behaviour on a live server (clients waiting, FIFO, timeouts) is in test_blocking.py;
here the blocking commands are tested where they are served at once, fail, or time out fast.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable

import pytest

Same = Callable[..., object]
WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"


# -- pushes, LLEN ------------------------------------------------------------------------------


def test_push_variadic_and_llen(same: Same) -> None:
    assert same("LPUSH", "l", "a", "b", "c") == 3
    assert same("RPUSH", "l", "d", "e") == 5
    same("LRANGE", "l", "0", "-1")
    same("LLEN", "l")
    same("LLEN", "missing")
    assert same("LPUSHX", "missing", "a", "b") == 0
    assert same("RPUSHX", "missing", "a") == 0
    same("EXISTS", "missing")
    assert same("LPUSHX", "l", "x", "y") == 7
    assert same("RPUSHX", "l", "z") == 8
    same("LRANGE", "l", "0", "-1")
    # Integers and empty strings come back as they were sent.
    same("RPUSH", "n", "1", "-1", "0", "9223372036854775807", "01", "", "x" * 100)
    same("LRANGE", "n", "0", "-1")
    same("LPUSH")
    same("LPUSH", "l")
    same("RPUSHX", "l")


def test_wrong_type_everywhere(same: Same) -> None:
    same("SET", "s", "string")
    same("RPUSH", "l", "a")
    for args in [
        ("LPUSH", "s", "a"), ("RPUSH", "s", "a"), ("LPUSHX", "s", "a"), ("RPUSHX", "s", "a"),
        ("LLEN", "s"), ("LINDEX", "s", "0"), ("LINDEX", "s", "notanumber"),
        ("LRANGE", "s", "0", "-1"), ("LSET", "s", "0", "x"), ("LSET", "s", "x", "x"),
        ("LINSERT", "s", "BEFORE", "a", "b"), ("LREM", "s", "0", "a"), ("LTRIM", "s", "0", "1"),
        ("LPOS", "s", "a"), ("LPOS", "s", "a", "COUNT", "0"), ("LPOP", "s"), ("RPOP", "s", "2"),
        ("LPOP", "s", "0"), ("LMOVE", "s", "l", "LEFT", "LEFT"), ("LMOVE", "l", "s", "LEFT", "LEFT"),
        ("RPOPLPUSH", "s", "l"), ("RPOPLPUSH", "l", "s"), ("LMPOP", "2", "missing", "s", "LEFT"),
        ("BLPOP", "missing", "s", "0"), ("BRPOP", "s", "0"), ("BLMPOP", "0", "1", "s", "LEFT"),
        ("BLMOVE", "s", "l", "LEFT", "LEFT", "0"), ("BLMOVE", "l", "s", "LEFT", "LEFT", "0"),
        ("BRPOPLPUSH", "s", "l", "0"), ("BRPOPLPUSH", "l", "s", "0"),
    ]:
        assert same(*args) == WRONGTYPE, args
    same("GET", "s")
    same("LRANGE", "l", "0", "-1")


# -- LINDEX, LSET, LRANGE ----------------------------------------------------------------------


def test_lindex(same: Same) -> None:
    same("RPUSH", "l", "a", "b", "c", "d")
    for index in ["0", "1", "3", "4", "-1", "-4", "-5", "100", "-100", "9223372036854775807",
                  "-9223372036854775808", "9223372036854775808", "1.5", "x", " 1", "+1", "01"]:
        same("LINDEX", "l", index)
    same("LINDEX", "missing", "0")
    same("LINDEX", "missing", "not-a-number")  # the key is looked up first: nil, no error


def test_lset(same: Same) -> None:
    same("RPUSH", "l", "a", "b", "c", "d")
    for index in ["0", "3", "-1", "-4", "4", "-5", "x", "9223372036854775808"]:
        same("LSET", "l", index, "new" + index)
        same("LRANGE", "l", "0", "-1")
    same("LSET", "missing", "0", "x")
    same("LSET", "missing", "x", "x")  # no such key, before the index is parsed
    same("LSET", "l", "1", "")
    same("LINDEX", "l", "1")


RANGE_BOUNDS = ["0", "1", "2", "5", "9", "10", "11", "-1", "-2", "-5", "-10", "-11", "-100", "100",
                "9223372036854775807", "-9223372036854775808"]


def test_lrange(same: Same) -> None:
    same("RPUSH", "l", *"abcdefghij")
    for start, end in itertools.product(RANGE_BOUNDS, repeat=2):
        same("LRANGE", "l", start, end)
    same("LRANGE", "missing", "0", "-1")
    same("LRANGE", "missing", "x", "-1")  # the indexes are parsed before the lookup
    same("LRANGE", "l", "0", "x")
    same("LRANGE", "l", "9223372036854775808", "1")


def test_lrange_and_lindex_on_a_long_list(same: Same) -> None:
    elements = [str(i) for i in range(5000)]
    same("RPUSH", "big", *elements)
    for start, end in [("0", "9"), ("-10", "-1"), ("2490", "2510"), ("100", "4900"),
                       ("4990", "100000"), ("-3000", "-2990")]:
        same("LRANGE", "big", start, end)
    for index in ["0", "17", "2500", "-1", "-17", "4999", "-5000"]:
        same("LINDEX", "big", index)
        same("LSET", "big", index, "set" + index)
    same("LRANGE", "big", "0", "-1")


# -- LTRIM, LREM, LINSERT ----------------------------------------------------------------------


@pytest.mark.parametrize("start, end", [
    ("0", "-1"), ("0", "0"), ("1", "-2"), ("2", "5"), ("-3", "-1"), ("5", "2"), ("10", "20"),
    ("-100", "100"), ("-100", "-50"), ("0", "-11"), ("9", "9"), ("8", "-1"), ("1", "100"),
    ("-9223372036854775808", "9223372036854775807"),
])
def test_ltrim(same: Same, start: str, end: str) -> None:
    same("RPUSH", "l", *"abcdefghij")
    same("LTRIM", "l", start, end)
    same("LRANGE", "l", "0", "-1")
    same("EXISTS", "l")  # trimming everything deletes the key


def test_ltrim_errors_and_missing_key(same: Same) -> None:
    same("LTRIM", "missing", "0", "1")
    same("EXISTS", "missing")
    same("LTRIM", "missing", "x", "1")
    same("RPUSH", "l", "a")
    same("LTRIM", "l", "0", "1.5")


def test_lrem(same: Same) -> None:
    pattern = ["a", "b", "a", "c", "a", "a", "d", "a"]
    # LONG_MIN's negation overflows in Redis: it removes every match, from the tail.
    for count in ["0", "1", "2", "-1", "-2", "3", "-3", "100", "-100", "9223372036854775807",
                  "-9223372036854775807", "-9223372036854775808"]:
        same("DEL", "l")
        same("RPUSH", "l", *pattern)
        same("LREM", "l", count, "a")
        same("LRANGE", "l", "0", "-1")
    same("LREM", "l", "0", "nothing")
    same("LREM", "missing", "0", "a")
    same("LREM", "l", "x", "a")
    same("LREM", "missing", "x", "a")  # count parsed first: the error wins
    same("DEL", "l")
    same("RPUSH", "l", "a", "a")
    same("LREM", "l", "0", "a")
    same("EXISTS", "l")


@pytest.mark.parametrize("count", ["0", "25", "-25", "5", "-5", "39", "-39", "-9223372036854775808"])
def test_lrem_many_matches(same: Same, count: str) -> None:
    """More matches than the delete-one-by-one path takes: the list is rebuilt."""
    elements = ["x" if i % 3 else f"keep{i}" for i in range(60)]
    same("RPUSH", "l", *elements)
    same("LREM", "l", count, "x")
    same("LRANGE", "l", "0", "-1")


def test_linsert(same: Same) -> None:
    same("RPUSH", "l", "a", "b", "c", "b")
    same("LINSERT", "l", "BEFORE", "b", "x")
    same("LINSERT", "l", "after", "b", "y")
    same("LINSERT", "l", "AFTER", "b", "y")
    same("LINSERT", "l", "BeFoRe", "a", "first")
    same("LINSERT", "l", "AFTER", "b", "z")
    same("LINSERT", "l", "AFTER", "nopivot", "z")
    same("LINSERT", "l", "AFTER", "c", "last")
    same("LRANGE", "l", "0", "-1")
    same("LINSERT", "missing", "AFTER", "a", "b")
    same("EXISTS", "missing")
    same("LINSERT", "l", "MIDDLE", "a", "b")
    same("LINSERT", "missing", "MIDDLE", "a", "b")  # syntax checked before the key


# -- LPOS --------------------------------------------------------------------------------------


def test_lpos(same: Same) -> None:
    same("RPUSH", "l", "a", "b", "c", "1", "2", "3", "c", "c")
    for options in [
        (), ("RANK", "1"), ("RANK", "2"), ("RANK", "3"), ("RANK", "4"), ("RANK", "-1"),
        ("RANK", "-3"), ("RANK", "-4"), ("COUNT", "0"), ("COUNT", "1"), ("COUNT", "2"),
        ("COUNT", "100"), ("RANK", "2", "COUNT", "0"), ("RANK", "-2", "COUNT", "0"),
        ("RANK", "-1", "COUNT", "2"), ("MAXLEN", "1"), ("MAXLEN", "3"), ("MAXLEN", "7"),
        ("MAXLEN", "0"), ("COUNT", "0", "MAXLEN", "7"), ("RANK", "-1", "MAXLEN", "1"),
        ("RANK", "-1", "MAXLEN", "2", "COUNT", "0"), ("rank", "1", "count", "1", "maxlen", "0"),
        ("RANK", "1", "RANK", "-2"), ("COUNT", "1", "COUNT", "0"),
        ("RANK", "9223372036854775807"), ("RANK", "-9223372036854775807"),
        ("RANK", "9223372036854775807", "COUNT", "9223372036854775807"),
        ("RANK", "2", "COUNT", "9223372036854775807", "MAXLEN", "9223372036854775807"),
        # RANK LONG_MIN overflows in Redis: every match counts and COUNT never stops it.
        ("RANK", "-9223372036854775808"), ("RANK", "-9223372036854775808", "COUNT", "1"),
        ("RANK", "-9223372036854775808", "COUNT", "0", "MAXLEN", "3"),
    ]:
        same("LPOS", "l", "c", *options)
    same("LPOS", "l", "nothing")
    same("LPOS", "l", "nothing", "COUNT", "0")
    same("LPOS", "missing", "c")
    same("LPOS", "missing", "c", "COUNT", "1")
    same("LPOS", "missing", "c", "RANK", "-1")


def test_lpos_errors(same: Same) -> None:
    same("RPUSH", "l", "a")
    for options in [
        ("RANK", "0"), ("RANK", "x"), ("RANK", "9223372036854775808"), ("COUNT", "-1"),
        ("COUNT", "x"), ("MAXLEN", "-1"), ("MAXLEN", "x"), ("RANK",), ("COUNT",), ("MAXLEN",),
        ("FOO",), ("FOO", "1"), ("RANK", "1", "BAR"), ("COUNT", "-1", "RANK", "0"),
        ("RANK", "0", "COUNT", "-1"),
    ]:
        same("LPOS", "l", "a", *options)
        same("LPOS", "missing", "a", *options)  # options are parsed before the lookup


def test_lpos_on_a_long_list(same: Same) -> None:
    same("RPUSH", "big", *[("hit" if i % 97 == 0 else str(i)) for i in range(3000)])
    for options in [(), ("RANK", "-1"), ("RANK", "5", "COUNT", "3"), ("COUNT", "0"),
                    ("RANK", "-7", "COUNT", "0", "MAXLEN", "1500")]:
        same("LPOS", "big", "hit", *options)


# -- pops --------------------------------------------------------------------------------------


def test_lpop_rpop(same: Same, wire: Same) -> None:
    same("RPUSH", "l", "a", "b", "c", "d", "e")
    same("LPOP", "l")
    same("RPOP", "l")
    same("LPOP", "l", "2")
    same("RPUSH", "l", "f", "g", "h")
    same("RPOP", "l", "2")
    same("LPOP", "l", "0")
    same("RPOP", "l", "0")
    same("LRANGE", "l", "0", "-1")
    same("RPOP", "l", "100")
    same("EXISTS", "l")
    same("LPOP", "l")
    same("RPOP", "l", "1")
    for count in ["-1", "x", "1.5", "9223372036854775808", "-9223372036854775808"]:
        same("LPOP", "l", count)
        same("RPOP", "missing", count)
    same("LPOP", "l", "1", "2")
    same("RPOP", "l", "1", "2", "3")
    same("LPOP")
    # The null shapes: a missing key answers a null bulk, or a null array when a count is
    # given (even 0); RESP3 has one null.
    for protocol in (2, 3):
        wire("LPOP", "missing", protocol=protocol)
        wire("RPOP", "missing", "1", protocol=protocol)
        wire("LPOP", "missing", "0", protocol=protocol)
        wire("RPUSH", "w", "a", "b", protocol=protocol)
        wire("LPOP", "w", "0", protocol=protocol)
        wire("RPOP", "w", "1", protocol=protocol)
        wire("LPOP", "w", protocol=protocol)
        wire("EXISTS", "w", protocol=protocol)


def test_lmpop(same: Same, wire: Same) -> None:
    same("RPUSH", "a", "1", "2", "3", "4", "5")
    same("RPUSH", "b", "x", "y")
    same("LMPOP", "2", "missing", "a", "LEFT")
    same("LMPOP", "2", "a", "b", "RIGHT", "COUNT", "2")
    same("LMPOP", "2", "b", "a", "left", "count", "10")
    same("EXISTS", "b")
    same("LMPOP", "1", "a", "RIGHT", "COUNT", "100")
    same("EXISTS", "a")
    same("LMPOP", "3", "a", "b", "c", "LEFT")
    same("SET", "s", "v")
    same("RPUSH", "c", "z")
    same("LMPOP", "2", "s", "c", "LEFT")  # the string comes first: WRONGTYPE
    same("LMPOP", "2", "c", "s", "LEFT")  # served before reaching the string
    for args in [
        ("0", "a", "LEFT"), ("-1", "a", "LEFT"), ("x", "a", "LEFT"), ("1.0", "a", "LEFT"),
        ("2", "a", "LEFT"), ("3", "a", "b", "LEFT"), ("9223372036854775807", "a", "LEFT"),
        ("9223372036854775808", "a", "LEFT"), ("1", "a", "MIDDLE"), ("1", "a", "LEFT", "COUNT"),
        ("1", "a", "LEFT", "COUNT", "0"), ("1", "a", "LEFT", "COUNT", "-1"),
        ("1", "a", "LEFT", "COUNT", "x"), ("1", "a", "LEFT", "COUNT", "1", "COUNT", "2"),
        ("1", "a", "LEFT", "FOO"), ("1", "a", "LEFT", "COUNT", "1", "FOO"),
        ("1", "a", "b"), ("1", "a"),
    ]:
        same("LMPOP", *args)
    for protocol in (2, 3):
        wire("LMPOP", "1", "missing", "LEFT", protocol=protocol)
        wire("RPUSH", "w", "a", "b", "c", protocol=protocol)
        wire("LMPOP", "1", "w", "RIGHT", "COUNT", "2", protocol=protocol)
        wire("LMPOP", "1", "w", "LEFT", protocol=protocol)


# -- LMOVE, RPOPLPUSH --------------------------------------------------------------------------


@pytest.mark.parametrize("wherefrom", ["LEFT", "RIGHT"])
@pytest.mark.parametrize("whereto", ["left", "right"])
def test_lmove_directions(same: Same, wherefrom: str, whereto: str) -> None:
    same("RPUSH", "src", "a", "b", "c")
    same("RPUSH", "dst", "x", "y")
    same("LMOVE", "src", "dst", wherefrom, whereto)
    same("LMOVE", "src", "new", wherefrom, whereto)
    same("LMOVE", "src", "src", wherefrom, whereto)  # rotation onto itself
    same("LRANGE", "src", "0", "-1")
    same("LRANGE", "dst", "0", "-1")
    same("LRANGE", "new", "0", "-1")
    same("LMOVE", "src", "dst", wherefrom, whereto)
    same("EXISTS", "src")


def test_lmove_and_rpoplpush_edges(same: Same, wire: Same) -> None:
    same("RPUSH", "one", "only")
    same("LMOVE", "one", "one", "LEFT", "RIGHT")  # a one-element list moved onto itself stays
    same("LRANGE", "one", "0", "-1")
    same("RPOPLPUSH", "one", "one")
    same("LRANGE", "one", "0", "-1")
    same("LMOVE", "missing", "dst", "LEFT", "RIGHT")
    same("EXISTS", "dst")
    same("LMOVE", "one", "dst", "UP", "LEFT")
    same("LMOVE", "one", "dst", "LEFT", "DOWN")
    same("LMOVE", "missing", "dst", "UP", "LEFT")  # syntax is checked before the keys
    same("SET", "s", "v")
    same("LMOVE", "missing", "s", "LEFT", "LEFT")  # nothing to move: the destination is unchecked
    same("RPOPLPUSH", "missing", "s")
    same("RPUSH", "src", "a", "b", "c")
    same("RPOPLPUSH", "src", "dst")
    same("RPOPLPUSH", "src", "dst")
    same("RPOPLPUSH", "src", "dst")
    same("RPOPLPUSH", "src", "dst")
    same("LRANGE", "dst", "0", "-1")
    same("EXISTS", "src")
    for protocol in (2, 3):
        wire("LMOVE", "missing", "dst", "LEFT", "LEFT", protocol=protocol)
        wire("RPOPLPUSH", "missing", "dst", protocol=protocol)


# -- blocking commands served at once, failing, or timing out ---------------------------------


def test_blocking_pops_served_at_once(same: Same, wire: Same) -> None:
    same("RPUSH", "a", "1", "2", "3")
    same("RPUSH", "b", "x", "y", "z")
    same("BLPOP", "missing", "a", "b", "0")
    same("BRPOP", "b", "a", "1.5")
    same("BLPOP", "a", "a", "a", "0")
    same("BLMPOP", "0", "2", "missing", "b", "LEFT")
    same("BLMPOP", "0", "2", "b", "a", "RIGHT", "COUNT", "5")
    same("EXISTS", "b")
    same("BLMOVE", "a", "b", "RIGHT", "LEFT", "0")
    same("BRPOPLPUSH", "b", "c", "0")
    same("LRANGE", "c", "0", "-1")
    same("EXISTS", "a", "b")
    for protocol in (2, 3):
        wire("RPUSH", "w", "1", "2", "3", "4", protocol=protocol)
        wire("BLPOP", "missing", "w", "0", protocol=protocol)
        wire("BLMPOP", "0", "1", "w", "RIGHT", "COUNT", "2", protocol=protocol)
        wire("BLMOVE", "w", "w2", "LEFT", "LEFT", "0", protocol=protocol)


def test_blocking_argument_errors(same: Same) -> None:
    for timeout in ["x", "-1", "-0.001", "nan", "1e5000", "1e-5000", "inf", "-inf", "+inf",
                    "1e300", "9223372036854776", "9.3e15", " 1", "1 ", "0x", "", "1e", "--1",
                    "1_0"]:
        # Enough elements that a timeout Redis accepts is served at once, never waits.
        same("DEL", "a")
        same("RPUSH", "a", "1", "2", "3", "4", "5")
        same("BLPOP", "a", timeout)
        same("BRPOP", "missing", "a", timeout)
        same("BLMOVE", "a", "b", "LEFT", "LEFT", timeout)
        same("BRPOPLPUSH", "a", "b", timeout)
        same("BLMPOP", timeout, "1", "a", "LEFT")
    for args in [("0", "0", "a", "LEFT"), ("0", "1", "a"), ("0", "1", "a", "MID"),
                 ("0", "1", "a", "LEFT", "COUNT", "0"), ("x", "0", "a", "LEFT"),
                 ("x", "1", "a", "LEFT", "COUNT", "0"), ("-1", "1", "a", "LEFT"),
                 ("0", "2", "a", "LEFT"), ("0", "1", "a", "LEFT", "COUNT", "1", "COUNT", "1")]:
        same("BLMPOP", *args)
    same("BLMOVE", "a", "b", "UP", "LEFT", "x")  # directions are checked before the timeout
    same("BLMOVE", "a", "b", "LEFT", "LEFT", "x", "extra")
    same("BLPOP", "a")
    same("LRANGE", "a", "0", "-1")


def test_short_timeouts_answer_null(wire: Same) -> None:
    """Every blocking list command times out with a null array, BLMOVE included (each costs
    up to 100 ms on redis-server, whose timer runs at hz 10: keep this list short)."""
    for protocol in (2, 3):
        wire("BLPOP", "missing", "0.01", protocol=protocol)
        wire("BLMOVE", "missing", "dst", "LEFT", "RIGHT", "0.001", protocol=protocol)
    wire("BRPOP", "missing", "other", "1e-400")
    wire("BLMPOP", "0x1p-20", "1", "missing", "LEFT")
    wire("BRPOPLPUSH", "missing", "dst", ".005")


def test_blocking_inside_multi(same: Same, wire: Same) -> None:
    """A transaction never blocks: BLPOP answers a null array, BLMOVE a null *bulk*."""
    same("RPUSH", "xlist", "foo", "bar")
    same("MULTI")
    same("BRPOPLPUSH", "xlist", "target", "0")
    same("BRPOPLPUSH", "xlist", "target", "0")
    same("BRPOPLPUSH", "xlist", "target", "0")
    same("LRANGE", "xlist", "0", "-1")
    same("LRANGE", "target", "0", "-1")
    same("EXEC")
    same("RPUSH", "xlist", "foo", "bar")
    same("MULTI")
    same("BLPOP", "xlist", "0")
    same("BLMPOP", "0", "1", "xlist", "RIGHT")
    same("BLPOP", "xlist", "0")
    same("BLMPOP", "0", "1", "xlist", "RIGHT")
    same("BLMOVE", "xlist", "t", "LEFT", "LEFT", "0")
    same("EXEC")
    for protocol in (2, 3):
        wire(protocol=protocol, batch=[
            ("MULTI",), ("BLPOP", "missing", "0"), ("BRPOP", "missing", "5"),
            ("BLMPOP", "0", "1", "missing", "LEFT", "COUNT", "2"),
            ("BLMOVE", "missing", "dst", "LEFT", "RIGHT", "0"),
            ("BRPOPLPUSH", "missing", "dst", "0"), ("BLPOP", "missing", "-1"), ("EXEC",)])


# -- propagation and dirty ---------------------------------------------------------------------


def test_propagation_rewrites(run, propagated: list[list[bytes]]) -> None:
    log = propagated
    run("RPUSH", "l", "a", "b", "c", "d", "e", "f")
    run("LPOP", "l")
    run("RPOP", "l", "2")
    run("LMPOP", "2", "missing", "l", "LEFT", "COUNT", "10")  # popped 3: propagated with 3
    run("RPUSH", "l", "a", "b", "c", "d")
    run("LMPOP", "1", "l", "right")
    run("BLPOP", "missing", "l", "0")
    run("BRPOP", "l", "0")
    run("RPUSH", "l", "a", "b", "c")
    run("BLMPOP", "0", "1", "l", "LEFT", "COUNT", "2")
    run("BLMOVE", "l", "m", "Right", "lEFT", "0")  # the directions as the client wrote them
    run("BRPOPLPUSH", "m", "n", "0")
    run("RPOPLPUSH", "n", "o")
    run("LMOVE", "o", "p", "LEFT", "RIGHT")
    # Commands that change nothing propagate nothing.
    run("LPOP", "missing")
    run("LPOP", "p", "0")
    run("LPUSHX", "missing", "a")
    run("LTRIM", "p", "0", "-1")
    run("LREM", "p", "0", "nothing")
    run("LINSERT", "p", "BEFORE", "nothing", "x")
    run("LMPOP", "1", "missing", "LEFT")
    run("LSET", "p", "0", "z")
    run("LTRIM", "p", "1", "-1")
    assert log == [
        [b"RPUSH", b"l", b"a", b"b", b"c", b"d", b"e", b"f"],
        [b"LPOP", b"l"],
        [b"RPOP", b"l", b"2"],
        [b"LPOP", b"l", b"3"],
        [b"RPUSH", b"l", b"a", b"b", b"c", b"d"],
        [b"RPOP", b"l", b"1"],
        [b"LPOP", b"l"],
        [b"RPOP", b"l"],
        [b"RPUSH", b"l", b"a", b"b", b"c"],
        [b"LPOP", b"l", b"2"],
        [b"LMOVE", b"l", b"m", b"Right", b"lEFT"],
        [b"RPOPLPUSH", b"m", b"n"],
        [b"RPOPLPUSH", b"n", b"o"],
        [b"LMOVE", b"o", b"p", b"LEFT", b"RIGHT"],
        [b"LSET", b"p", b"0", b"z"],
        [b"LTRIM", b"p", b"1", b"-1"],
    ]


def test_dirty_counts_changes(engine, run) -> None:
    before = engine.dirty
    run("RPUSH", "l", "a", "b", "c")
    assert engine.dirty - before == 3
    before = engine.dirty
    run("LTRIM", "l", "1", "1")
    assert engine.dirty - before == 2
    before = engine.dirty
    run("LPOP", "missing", "5")
    run("LREM", "l", "0", "nothing")
    assert engine.dirty == before
    run("RPUSH", "l", "x", "x", "x")
    before = engine.dirty
    run("LREM", "l", "0", "x")
    assert engine.dirty - before == 3
    assert run("LRANGE", "l", "0", "-1") == [b"b"]


def test_emptied_lists_leave_the_keyspace(engine, run, session) -> None:
    for args in [("LPOP", "k"), ("RPOP", "k", "5"), ("LMPOP", "1", "k", "LEFT"),
                 ("LREM", "k", "0", "v"), ("LTRIM", "k", "1", "0"),
                 ("LMOVE", "k", "other", "LEFT", "LEFT"), ("BLPOP", "k", "0"),
                 ("BLMPOP", "0", "1", "k", "RIGHT", "COUNT", "9"), ("RPOPLPUSH", "k", "o")]:
        run("RPUSH", "k", "v")
        run(*args)
        assert b"k" not in session.db.data, args


# -- random sequences --------------------------------------------------------------------------

KEYS = ["k1", "k2", "k3"]
VALUES = ["a", "b", "c", "1", "-1", "", "long" * 20]


def _random_command(rng: random.Random) -> list[str]:
    k, k2 = rng.choice(KEYS), rng.choice(KEYS)
    v, v2 = rng.choice(VALUES), rng.choice(VALUES)
    n = str(rng.randint(-6, 6))
    m = str(rng.randint(-12, 12))
    side, side2 = rng.choice(["LEFT", "RIGHT"]), rng.choice(["LEFT", "RIGHT"])
    return rng.choice([
        ["LPUSH", k, v, v2], ["RPUSH", k, v], ["RPUSH", k, v, v2, v], ["LPUSHX", k, v],
        ["RPUSHX", k, v, v2], ["LPOP", k], ["RPOP", k], ["LPOP", k, n], ["RPOP", k, n],
        ["LLEN", k], ["LRANGE", k, n, m], ["LINDEX", k, n], ["LSET", k, n, v],
        ["LINSERT", k, rng.choice(["BEFORE", "AFTER"]), v, v2], ["LREM", k, n, v],
        ["LTRIM", k, n, m], ["LPOS", k, v], ["LPOS", k, v, "RANK", n, "COUNT", "0"],
        ["LPOS", k, v, "COUNT", "2", "MAXLEN", str(rng.randint(0, 5))],
        ["LMOVE", k, k2, side, side2], ["RPOPLPUSH", k, k2],
        ["LMPOP", "2", k, k2, side, "COUNT", str(rng.randint(1, 4))],
        ["SET", k, v], ["DEL", k], ["EXISTS", k, k2],
    ])


@pytest.mark.parametrize("seed", range(6))
def test_random_sequence_matches_redis(same: Same, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(300):
        same(*_random_command(rng))
    for key in KEYS:
        if same("TYPE", key) == b"list":
            same("LRANGE", key, "0", "-1")
