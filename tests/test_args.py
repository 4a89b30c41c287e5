"""The shared number readers (kvrepl.commands.args): unit tests, and every family's use of
them compared with a real redis-server 7.0 on inputs where strtod, strtold and string2ll
disagree with Python."""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Callable
from fractions import Fraction

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from kvrepl.commands.args import decimal, parse_timeout, string2d, string2ld, string2ll, strtod
from kvrepl.errors import ReplyError

Same = Callable[..., object]

TRICKY = [
    b"", b"0", b"-0", b"+1", b" 1", b"1 ", b"1\x00", b"1\x00x", b"01", b".5", b"5.", b".", b"1e",
    b"1e-3", b"inf", b"-infinity", b"infx", b"nan", b"nan(1)", b"0x10", b"0X1p4", b"-0x1.8p1",
    b"0x", b"0x.8", b"0x1p", b"0x1p-1074", b"0x1p-1075", b"1e309", b"1e-320", b"1e-330",
    b"1e4932", b"1e4933", b"1e-4951", b"0x1p16383", b"0x1p-16445", b"0x1p-16446",
    b"9223372036854775807", b"9223372036854775808", b"-9223372036854775809", b"1" * 5120,
    b"0.0005", b"-0.0001", b"9.223372e15",
]


@pytest.mark.parametrize("text", TRICKY, ids=repr)
def test_doubles_like_redis(same: Same, text: bytes) -> None:
    """string2d (ZADD, WEIGHTS), zslParseRange, string2ld (INCRBYFLOAT, HINCRBYFLOAT) and
    SORT's strtod, on the same input."""
    same("ZADD", "z", text, "m")
    same("ZSCORE", "z", "m")
    same("ZUNION", "1", "z", "WEIGHTS", text, "WITHSCORES")
    same("ZADD", "r", "1", "a", "-inf", "lo", "inf", "hi", "0", "zero")
    same("ZRANGEBYSCORE", "r", text, "+inf")
    same("INCRBYFLOAT", "f", text)
    same("SET", "g", text)
    same("INCRBYFLOAT", "g", "1")
    same("HINCRBYFLOAT", "h", "f", text)
    same("HSET", "h", "g", text)
    same("HINCRBYFLOAT", "h", "g", "1")
    same("RPUSH", "l", "a", "b", "c")
    same("MSET", "w_a", text, "w_b", "1", "w_c", "-1")
    same("SORT", "l", "BY", "w_*")


@pytest.mark.parametrize("text", TRICKY, ids=repr)
def test_integers_and_timeouts_like_redis(same: Same, text: bytes) -> None:
    """string2ll through its callers, and every blocking timeout (inside MULTI, where
    nothing blocks but the timeout is still read)."""
    same("SET", "n", "5")
    same("INCRBY", "n", text)
    same("SET", "m", text)
    same("INCR", "m")
    same("HINCRBY", "h", "f", text)
    same("LPOP", "missing", text)
    same("SELECT", text)
    same("SRANDMEMBER", "missing", text)
    same("MULTI")
    same("BLPOP", "missing", text)
    same("BZPOPMIN", "missing", text)
    same("BLMOVE", "missing", "d", "LEFT", "LEFT", text)
    same("BZMPOP", text, "1", "missing", "MIN")
    same("BLMPOP", text, "1", "missing", "LEFT")
    same("EXEC")


def test_string2ll() -> None:
    assert string2ll(b"-9223372036854775808") == -(1 << 63)
    for bad in (b"", b"-0", b"+1", b"01", b" 1", b"1.0", b"9223372036854775808", b"1_0"):
        assert string2ll(bad) is None


# util.c string2ll's grammar: "0", or an optional "-" then a digit 1-9 and digits; 64 bits.
CANONICAL = re.compile(rb"(?:0|-?[1-9][0-9]*)\Z")


@given(st.one_of(st.binary(max_size=24),
                 st.from_regex(rb"\A[-+ _0\t\n]{0,2}[0-9]{1,20}[ _\n]?\Z"),
                 st.integers(-(1 << 64), 1 << 64).map(lambda n: b"%d" % n)))
@example(b"-0")
@example(b"00")
@example(b"-01")
@example(b"1_000")
@example(b"\xd9\xa3")
@example(b"9223372036854775807")
@example(b"-9223372036854775808")
@example(b"9223372036854775808")
@example(b"-9223372036854775809")
@example(b"1" * 5000)
def test_string2ll_reads_exactly_redis_grammar(value: bytes) -> None:
    """Python's int() is lenient (spaces, "+", "_", leading zeros, other digits): string2ll
    must take just the canonical 64-bit spellings."""
    # (longer than "-9223372036854775808" is out of range: not converted, Python refuses
    # more than 4300 digits)
    number = int(value) if len(value) <= 20 and CANONICAL.match(value) else None
    if number is not None and not -(1 << 63) <= number < 1 << 63:
        number = None
    assert string2ll(value) == number


def test_strtod_reports_erange_like_glibc() -> None:
    assert strtod(b"  -1.5") == (-1.5, False)
    assert strtod(b"1e309") == (math.inf, True)
    assert strtod(b"1e-400") == (0.0, True)  # underflow to zero
    assert strtod(b"1e-320")[1]  # subnormal and inexact
    assert strtod(b"0x1p-1074") == (5e-324, False)  # subnormal but exact
    assert strtod(b"-inf") == (-math.inf, False)
    assert math.isnan(strtod(b"nan(abc)")[0])
    for bad in (b"", b" ", b"1 ", b"0x", b"1e", b"in", b"1\x00"):
        assert strtod(bad) is None


def test_string2d_and_string2ld() -> None:
    assert string2d(b"0x1p4") == 16.0 and string2d(b"-inf") == -math.inf
    assert math.copysign(1, string2d(b"-0")) == -1
    for bad in (b"", b" 1", b"nan", b"1e309", b"1e-400"):
        assert string2d(bad) is None
    assert string2d(b"1e-320") == 1e-320  # ERANGE, but neither zero nor infinite: accepted
    assert string2ld(b"0.1") == Fraction(0xCCCCCCCCCCCCCCCD, 2**67)  # rounded to 64 bits
    assert string2ld(b"1e4932") > 10**4931 and string2ld(b"-infinity") == -math.inf
    for bad in (b"", b" 1", b"nan", b"1e4933", b"1e-4951", b"1" * 5120, b"1\x00"):
        assert string2ld(bad) is None


# What float() reads otherwise than strtod, or where strtod reports ERANGE: decimal must leave
# each to string2d (None), and give string2d's very value for everything else it reads.
_DECIMAL_EDGES = [b"13.361389", b"-38.115556", b"+1.5", b".5", b"5.", b"-.5e-3", b"1e5",
                  b"1E+05", b"0", b"-0", b"0.0", b"1e-400", b"1e309", b"-1e309", b"1e-320",
                  b"inf", b"-Infinity", b"nan", b"1_0", b"1.5_1", b" 1", b"1 ", b"\t1", b"1\n",
                  b"\x0b1", b"1\x0c", b"0x1p3", b"0X10", b"", b"-", b".", b"1e", b"1\x00",
                  b"\xa01", b"179.99999999999999999999", b"1" * 400, b"0." + b"0" * 320 + b"1"]


@given(st.one_of(st.sampled_from(_DECIMAL_EDGES),
                 st.floats(allow_nan=True).map(lambda f: repr(f).encode()),
                 st.from_regex(rb"\A[ +\-_.0-9eEinfatyx]{0,24}\Z")))
@example(b"1_000.5")
def test_decimal_is_string2d_or_leaves_it_to_string2d(text: bytes) -> None:
    """GEOADD's fast read of a coordinate: never a value string2d would not give, bit for bit
    (the sign of a zero included), nor one it refuses."""
    value = decimal(text)
    if value is not None:
        expected = string2d(text)
        assert expected is not None and struct.pack("<d", value) == struct.pack("<d", expected)


def test_decimal_reads_usual_coordinates_and_leaves_the_rest() -> None:
    for text in (b"13.361389", b"-38.115556", b"+1.5", b".5", b"5.", b"1e5", b"1e-320"):
        assert decimal(text) == string2d(text) == float(text)
    for text in (b"0", b"-0", b"1e-400", b"1e309", b"inf", b"nan", b"1_0", b" 1", b"1 ", b"",
                 b"0x1p3"):
        assert decimal(text) is None


def test_parse_timeout_matches_redis_rounding() -> None:
    now = 1_700_000_000_000
    assert parse_timeout(b"0", now) == 0.0
    assert parse_timeout(b"-0", now) == 0.0
    assert parse_timeout(b"-0.0001", now) == 0.0  # ceil(-0.1 ms) == 0: forever, as in Redis
    assert parse_timeout(b"0.0001", now) == 0.001  # rounded up to one millisecond
    assert parse_timeout(b"1.5", now) == 1.5
    assert parse_timeout(b"0x10", now) == 16.0
    assert parse_timeout(b"9e15", now) == 9e15
    # A deadline past LLONG_MAX milliseconds overflows in Redis and never fires.
    assert parse_timeout(b"9.223372e15", now) == 0.0
    for text, message in [(b"9.3e15", "ERR timeout is negative"),
                          (b"inf", "ERR timeout is negative"),
                          (b"0x1p16383", "ERR timeout is negative"),
                          (b"1e4933", "ERR timeout is not a float or out of range"),
                          (b"0x1p-20000", "ERR timeout is not a float or out of range")]:
        with pytest.raises(ReplyError, match=message):
            parse_timeout(text, now)
