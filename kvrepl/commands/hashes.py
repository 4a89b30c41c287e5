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
from fractions import Fraction
from itertools import islice

from kvrepl.commands.args import (
    INT64_MAX,
    INT64_MIN,
    LONG_MAX,
    long_double_add,
    parse_int,
    parse_long_double,
    parse_range_int,
    string2ld,
    string2ll,
)
from kvrepl.commands.core import Session, command
from kvrepl.commands.scan import parse_scan_cursor, scan_elements, scan_reply
from kvrepl.commands.sets import MAX_RANDOM_REPLY
from kvrepl.errors import OVERFLOW, SYNTAX, ReplyError, WrongTypeError, wrong_arity
from kvrepl.notify import GENERIC, HASH, notify, replied
from kvrepl.protocol.replies import OK
from kvrepl.store.encoding import hash_is_listpack


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
    replied(s)
    notify(s, HASH, b"hset", argv[1])
    s.engine.dirty += (len(argv) - 2) // 2
    return len(value) - before if is_hset else OK


@command("hsetnx")
def hsetnx(s: Session, argv: list[bytes]) -> int:
    value = _hash_for_write(s, argv[1])
    if argv[2] in value:
        return 0
    value[argv[2]] = argv[3]
    replied(s)
    notify(s, HASH, b"hset", argv[1])
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
    if deleted:
        notify(s, HASH, b"hdel", argv[1])
    if not value:
        s.db.delete(argv[1])
        notify(s, GENERIC, b"del", argv[1])
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
    increment = parse_int(argv[3])
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
    replied(s)
    notify(s, HASH, b"hincrby", argv[1])
    s.engine.dirty += 1
    return result


@command("hincrbyfloat")
def hincrbyfloat(s: Session, argv: list[bytes]) -> bytes:
    """HINCRBYFLOAT key field increment, in long double as Redis; propagated as HSET."""
    increment = parse_long_double(argv[3])
    if type(increment) is float:
        raise ReplyError("ERR value is NaN or Infinity")
    key, field = argv[1], argv[2]
    value = _lookup_hash(s, key)
    current = None if value is None else value.get(field)
    parsed: Fraction = Fraction(0)
    if current is not None:
        stored = string2ld(current)
        if stored is None:
            raise ReplyError("ERR hash value is not a float")
        if type(stored) is float:
            raise ReplyError("ERR increment would produce NaN or Infinity")
        parsed = stored
    result = long_double_add(parsed, increment)
    if result is None:
        raise ReplyError("ERR increment would produce NaN or Infinity")
    if value is None:
        value = {}
        s.db.add(key, value)
    value[field] = result
    replied(s)
    notify(s, HASH, b"hincrbyfloat", key)
    s.engine.dirty += 1
    s.engine.rewrite([b"HSET", key, field, result])
    return result


@command("hrandfield")
def hrandfield(s: Session, argv: list[bytes]) -> object:
    """HRANDFIELD key [count [WITHVALUES]]; RESP3 pairs each field with its value."""
    if len(argv) >= 3:
        count = parse_range_int(argv[2], -LONG_MAX, LONG_MAX)
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
    compact = list(value) if hash_is_listpack(value, s.engine.config) else None
    cursor, fields = scan_elements(value, argv, cursor, compact)
    items: list[bytes] = []
    for field in fields:
        items.append(field)
        items.append(value[field])
    return scan_reply(cursor, items)
