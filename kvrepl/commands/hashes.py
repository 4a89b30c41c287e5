"""Hash commands (Redis's ``t_hash.c``).

A hash is a plain ``dict`` of ``bytes`` to ``bytes``. Python dicts keep insertion order and
update values in place, which is exactly the order of Redis's *listpack* encoding (used while a
hash has at most ``hash-max-listpack-entries`` fields and no field or value longer than
``hash-max-listpack-value``): for such hashes HGETALL, HKEYS, HVALS and HSCAN answer in the same
order as Redis. :func:`hash_is_listpack` tells which encoding Redis would use for the current
contents. (A hash Redis has converted to a hash table stays one when it shrinks again; kvrepl
does not remember that history.)
"""

from __future__ import annotations

import random
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from fractions import Fraction
from itertools import islice

from kvrepl.commands.args import INT64_MAX, INT64_MIN, long_double_add
from kvrepl.commands.core import Session, command
from kvrepl.commands.glob import glob_match
from kvrepl.commands.sets import (
    COUNT_RANGE,
    LONG_MAX,
    MAX_RANDOM_REPLY,
    parse_long,
    parse_scan_cursor,
    parse_scan_options,
    scan_collection,
    scan_reply,
    string2ll,
)
from kvrepl.config import Config
from kvrepl.errors import NOT_FLOAT, OVERFLOW, SYNTAX, ReplyError, WrongTypeError, wrong_arity
from kvrepl.protocol.replies import OK


def hash_is_listpack(value: dict, config: Config) -> bool:
    """True when Redis 7.0 would keep a hash with these fields and values as a listpack."""
    if len(value) > config.hash_max_listpack_entries:
        return False
    limit = config.hash_max_listpack_value
    return all(len(f) <= limit and len(v) <= limit for f, v in value.items())


def _lookup_hash(s: Session, key: bytes) -> dict | None:
    value = s.db.lookup(key)
    if value is None or type(value) is dict:
        return value
    raise WrongTypeError()


def _hash_for_write(s: Session, key: bytes) -> dict:
    """The hash at ``key``, created empty when missing (hashTypeLookupWriteOrCreate)."""
    value = _lookup_hash(s, key)
    if value is None:
        value = {}
        s.db.add(key, value)
    return value


@command("hset", "hmset")
def hset(s: Session, argv: list[bytes]) -> object:
    """HSET key field value [field value ...] (new fields added); HMSET answers OK."""
    is_hset = argv[0][1:2] in (b"s", b"S")
    if len(argv) % 2:
        raise wrong_arity("hset" if is_hset else "hmset")
    value = _hash_for_write(s, argv[1])
    before = len(value)
    for i in range(2, len(argv), 2):
        value[argv[i]] = argv[i + 1]
    s.engine.dirty += (len(argv) - 2) // 2
    return len(value) - before if is_hset else OK


@command("hsetnx")
def hsetnx(s: Session, argv: list[bytes]) -> int:
    value = _hash_for_write(s, argv[1])
    if argv[2] in value:
        return 0
    value[argv[2]] = argv[3]
    s.engine.dirty += 1
    return 1


@command("hget")
def hget(s: Session, argv: list[bytes]) -> bytes | None:
    value = _lookup_hash(s, argv[1])
    return None if value is None else value.get(argv[2])


@command("hmget")
def hmget(s: Session, argv: list[bytes]) -> list[bytes | None]:
    value = _lookup_hash(s, argv[1]) or {}
    return [value.get(field) for field in argv[2:]]


@command("hdel")
def hdel(s: Session, argv: list[bytes]) -> int:
    value = _lookup_hash(s, argv[1])
    if value is None:
        return 0
    deleted = 0
    for field in argv[2:]:
        if value.pop(field, None) is not None:
            deleted += 1
    if not value:
        s.db.delete(argv[1])
    s.engine.dirty += deleted
    return deleted


@command("hlen")
def hlen(s: Session, argv: list[bytes]) -> int:
    value = _lookup_hash(s, argv[1])
    return 0 if value is None else len(value)


@command("hstrlen")
def hstrlen(s: Session, argv: list[bytes]) -> int:
    value = _lookup_hash(s, argv[1])
    return 0 if value is None else len(value.get(argv[2], b""))


@command("hexists")
def hexists(s: Session, argv: list[bytes]) -> int:
    value = _lookup_hash(s, argv[1])
    return int(value is not None and argv[2] in value)


@command("hkeys")
def hkeys(s: Session, argv: list[bytes]) -> list[bytes]:
    value = _lookup_hash(s, argv[1])
    return [] if value is None else list(value)


@command("hvals")
def hvals(s: Session, argv: list[bytes]) -> list[bytes]:
    value = _lookup_hash(s, argv[1])
    return [] if value is None else list(value.values())


@command("hgetall")
def hgetall(s: Session, argv: list[bytes]) -> dict:
    """HGETALL key: a map in RESP3, a flat field/value array in RESP2."""
    value = _lookup_hash(s, argv[1])
    # A copy: inside MULTI the reply is encoded after later commands ran.
    return {} if value is None else dict(value)


@command("hincrby")
def hincrby(s: Session, argv: list[bytes]) -> int:
    increment = parse_long(argv[3])
    value = _hash_for_write(s, argv[1])
    current = value.get(argv[2])
    if current is None:
        number = 0
    else:
        number = string2ll(current)
        if number is None:
            raise ReplyError("ERR hash value is not an integer")
    result = number + increment
    if result < INT64_MIN or result > INT64_MAX:
        raise ReplyError(OVERFLOW)
    value[argv[2]] = b"%d" % result
    s.engine.dirty += 1
    return result


# strtold's syntax (string2ld): decimal and hexadecimal floats, inf/infinity; nan is refused.
_LD_DECIMAL = re.compile(rb"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
_LD_HEX = re.compile(
    rb"([+-]?)0[xX]([0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP]([+-]?[0-9]+))?\Z")
_LD_INF = re.compile(rb"[+-]?inf(?:inity)?\Z", re.IGNORECASE)
_MAX_LONG_DOUBLE_CHARS = 5 * 1024
# x87 extended precision: values from here on round to infinity, below half the smallest
# subnormal to zero; strtold reports both as ERANGE and string2ld refuses them.
_LD_OVERFLOW = (2**64 - Fraction(1, 2)) * Fraction(2) ** 16320
_LD_UNDERFLOW = Fraction(1, 2**16446)


def _parse_long_double(arg: bytes) -> Fraction | float | None:
    """``arg`` as Redis's string2ld reads it: a Fraction, ``±inf``, or None when invalid."""
    if not arg or len(arg) >= _MAX_LONG_DOUBLE_CHARS:
        return None
    if _LD_INF.match(arg):
        return float("-inf") if arg[:1] == b"-" else float("inf")
    if _LD_DECIMAL.match(arg):
        decimal = Decimal(arg.decode())
        # Screen absurd exponents before building an exact fraction of them.
        if decimal and not -4960 < decimal.adjusted() < 4940:
            return None
        value = Fraction(decimal)
    else:
        match = _LD_HEX.match(arg)
        if match is None:
            return None
        sign, digits, exponent = match.groups()
        whole, _, fraction = digits.partition(b".")
        mantissa = int(whole + fraction or b"0", 16)
        shift = int(exponent or b"0") - 4 * len(fraction)
        if mantissa and not -16500 < shift + mantissa.bit_length() < 16400:
            return None
        value = mantissa * Fraction(2) ** shift
        if sign == b"-":
            value = -value
    if value and not _LD_UNDERFLOW < abs(value) < _LD_OVERFLOW:
        return None
    return value


def _decimal_text(value: Fraction) -> bytes:
    """An exact decimal spelling of a binary or decimal fraction (for long_double_add)."""
    denominator = value.denominator
    twos = (denominator & -denominator).bit_length() - 1
    rest, fives = denominator >> twos, 0
    while rest % 5 == 0:
        rest //= 5
        fives += 1
    digits = max(twos, fives)
    return b"%de-%d" % (value * 10**digits, digits)


def _as_decimal(raw: bytes, value: Fraction) -> bytes:
    """``raw`` when it is already decimal text, else the exact decimal of its value."""
    return raw if _LD_DECIMAL.match(raw) else _decimal_text(value)


@contextmanager
def _long_int_text() -> Iterator[None]:
    """Allow int/str conversions of any length for a moment.

    Long doubles reach 4933 integer digits (and exact binary fractions far more), beyond
    CPython's default 4300-digit guard against quadratic conversions; these are bounded.
    """
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        yield
    finally:
        sys.set_int_max_str_digits(limit)


@command("hincrbyfloat")
def hincrbyfloat(s: Session, argv: list[bytes]) -> bytes:
    """HINCRBYFLOAT key field increment, in long double as Redis; propagated as HSET."""
    increment = _parse_long_double(argv[3])
    if increment is None:
        raise ReplyError(NOT_FLOAT)
    if type(increment) is float:
        raise ReplyError("ERR value is NaN or Infinity")
    key, field = argv[1], argv[2]
    value = _lookup_hash(s, key)
    current = None if value is None else value.get(field)
    parsed: Fraction = Fraction(0)
    if current is not None:
        stored = _parse_long_double(current)
        if stored is None:
            raise ReplyError("ERR hash value is not a float")
        if type(stored) is float:
            raise ReplyError("ERR increment would produce NaN or Infinity")
        parsed = stored
    with _long_int_text():
        result = long_double_add(
            _decimal_text(parsed) if current is None else _as_decimal(current, parsed),
            _as_decimal(argv[3], increment))
    if result is None:
        raise ReplyError("ERR increment would produce NaN or Infinity")
    if value is None:
        value = {}
        s.db.add(key, value)
    value[field] = result
    s.engine.dirty += 1
    s.engine.rewrite([b"HSET", key, field, result])
    return result


@command("hrandfield")
def hrandfield(s: Session, argv: list[bytes]) -> object:
    """HRANDFIELD key [count [WITHVALUES]]; RESP3 pairs each field with its value."""
    if len(argv) >= 3:
        count = parse_long(argv[2])
        if count < -LONG_MAX:
            raise ReplyError(COUNT_RANGE)
        if len(argv) > 4 or (len(argv) == 4 and argv[3].lower() != b"withvalues"):
            raise ReplyError(SYNTAX)
        with_values = len(argv) == 4
        if with_values and not -(LONG_MAX // 2) <= count <= LONG_MAX // 2:
            raise ReplyError("ERR value is out of range")
        value = _lookup_hash(s, argv[1])
        if value is None or count == 0:
            return []
        return _random_fields(s, value, count, with_values)
    value = _lookup_hash(s, argv[1])
    if value is None:
        return None
    return next(islice(iter(value), random.randrange(len(value)), None))


def _random_fields(s: Session, value: dict, count: int, with_values: bool) -> list[object]:
    if count < 0 or count == 1:
        draws = -count if count < 0 else 1
        if draws > MAX_RANDOM_REPLY:
            raise ReplyError("ERR value is out of range")
        fields = random.choices(list(value), k=draws)
    elif count >= len(value):
        fields = list(value)
    else:
        fields = random.sample(list(value), count)
    if not with_values:
        return fields
    if s.resp3:
        return [[field, value[field]] for field in fields]
    flat: list[object] = []
    for field in fields:
        flat.append(field)
        flat.append(value[field])
    return flat


@command("hscan")
def hscan(s: Session, argv: list[bytes]) -> list[object]:
    """HSCAN key cursor [MATCH pattern] [COUNT count]; a listpack comes back in one call."""
    cursor = parse_scan_cursor(argv[2])
    value = _lookup_hash(s, argv[1])
    if value is None:
        return scan_reply(0, [])
    count, pattern = parse_scan_options(argv, 3)
    if hash_is_listpack(value, s.engine.config):
        cursor, fields = 0, list(value)
    else:
        cursor, fields = scan_collection(value, cursor, count)
    items: list[bytes] = []
    for field in fields:
        if pattern is None or glob_match(pattern, field):
            items.append(field)
            items.append(value[field])
    return scan_reply(cursor, items)
