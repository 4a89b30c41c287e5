"""String commands (Redis's ``t_string.c``): GET/SET and their variants, counters, ranges, LCS.

Every handler mirrors its Redis 7.0 counterpart: the order in which arguments are checked
(which decides the error a client sees when several things are wrong), ``server.dirty``
accounting, and the rewrites Redis applies before propagating (relative expiries become
absolute ``PXAT``/``PEXPIREAT``, ``INCRBYFLOAT`` becomes ``SET ... KEEPTTL``, ``GETDEL`` and
``GETEX`` become ``DEL``/``PEXPIREAT``/``PERSIST``).
"""

from __future__ import annotations

from fractions import Fraction

from kvrepl.commands.args import (
    INT64_MAX,
    INT64_MIN,
    long_double_add,
    parse_int,
    parse_long_double,
)
from kvrepl.commands.core import Session, command
from kvrepl.errors import NOT_INTEGER, OVERFLOW, SYNTAX, ReplyError, WrongTypeError
from kvrepl.notify import GENERIC, STRING, notify, replied
from kvrepl.protocol.replies import OK, DeferredArray
from kvrepl.store.encoding import mark_string, string2ll
from kvrepl.store.values import is_string, string_bytes

# Flags of parseExtendedStringArgumentsOrReply (t_string.c).
_NX = 1 << 0
_XX = 1 << 1
_EX = 1 << 2
_PX = 1 << 3
_KEEPTTL = 1 << 4
_GET = 1 << 5
_EXAT = 1 << 6
_PXAT = 1 << 7
_PERSIST = 1 << 8
_ANY_EXPIRE = _EX | _PX | _EXAT | _PXAT

_MAX_LCS_CELLS_MESSAGE = (
    "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len")
_TOO_BIG = "ERR string exceeds maximum allowed size (proto-max-bulk-len)"


# -- helpers -------------------------------------------------------------------------------
def lookup_string(s: Session, key: bytes, *, read: bool = False) -> bytes | bytearray | None:
    """The string at ``key`` (None when missing); WRONGTYPE for any other type. ``read``:
    counted in keyspace_hits/misses even in a write command (Redis's lookupKeyRead).

    A ``bytearray`` is the live value of a string changed in place: read it, or change it
    (a write command, whose key the snapshot hook has seen), but hand out only
    ``string_bytes`` of it."""
    value = s.db.lookup_read(key) if read else s.db.lookup(key)
    if value is None or type(value) is bytes or type(value) is bytearray:
        return value  # type: ignore[return-value]
    raise WrongTypeError()


def lookup_string_bytes(s: Session, key: bytes, *, read: bool = False) -> bytes | None:
    """:func:`lookup_string` as ``bytes`` that a later change cannot reach (for replies)."""
    value = lookup_string(s, key, read=read)
    return None if value is None else string_bytes(value)


def mutable_string(s: Session, key: bytes, current: bytes | bytearray) -> bytearray:
    """The string ``current`` stored at ``key`` as one that can change in place: itself
    when it already is, else a ``bytearray`` copy stored instead (once; TTL kept)."""
    if type(current) is bytearray:
        return current
    value = bytearray(current)
    s.db.set(key, value, keep_ttl=True)
    return value


def expire_error(argv: list[bytes]) -> ReplyError:
    """``addReplyErrorExpireTime``: the message names the command as the table spells it."""
    return ReplyError(
        f"ERR invalid expire time in '{argv[0].decode('utf-8', 'replace').lower()}' command")


def _check_length(s: Session, size: int, append: int) -> None:
    """checkStringLength: a string may not outgrow proto-max-bulk-len (masters are obeyed)."""
    if not s.is_master and size + append > s.engine.config.proto_max_bulk_len:
        raise ReplyError(_TOO_BIG)


def _expire_at_ms(s: Session, argv: list[bytes], arg: bytes, flags: int) -> int:
    """getExpireMillisecondsOrReply: the absolute expiry in unix ms for EX/PX/EXAT/PXAT."""
    when = parse_int(arg)
    seconds = not flags & (_PX | _PXAT)
    if when <= 0 or (seconds and when > INT64_MAX // 1000):
        raise expire_error(argv)
    if seconds:
        when *= 1000
    if flags & (_EX | _PX):
        when += s.engine.keyspace.now_ms()
    if when > INT64_MAX:  # the C addition would overflow into a negative number
        raise expire_error(argv)
    return when


def _parse_extended(argv: list[bytes], for_set: bool) -> tuple[int, bytes | None]:
    """parseExtendedStringArgumentsOrReply: SET's (or GETEX's) option flags and expire arg.

    Conflicting options are not errors of their own: the second one simply fails to match
    and ends in ``syntax error``, exactly as in Redis.
    """
    flags = 0
    expire: bytes | None = None
    j = 3 if for_set else 2
    argc = len(argv)
    while j < argc:
        opt = argv[j].lower()
        has_next = j < argc - 1
        if opt == b"nx" and not flags & _XX and for_set:
            flags |= _NX
        elif opt == b"xx" and not flags & _NX and for_set:
            flags |= _XX
        elif opt == b"get" and for_set:
            flags |= _GET
        elif opt == b"keepttl" and not flags & (_PERSIST | _ANY_EXPIRE) and for_set:
            flags |= _KEEPTTL
        elif opt == b"persist" and not for_set and not flags & (_ANY_EXPIRE | _KEEPTTL):
            flags |= _PERSIST
        elif (opt in _EXPIRE_OPTIONS and has_next
              and not flags & (_KEEPTTL | _PERSIST | (_ANY_EXPIRE & ~_EXPIRE_OPTIONS[opt]))):
            flags |= _EXPIRE_OPTIONS[opt]
            expire = argv[j + 1]
            j += 1
        else:
            raise ReplyError(SYNTAX)
        j += 1
    return flags, expire


_EXPIRE_OPTIONS = {b"ex": _EX, b"px": _PX, b"exat": _EXAT, b"pxat": _PXAT}


def _set_generic(
    s: Session,
    argv: list[bytes],
    flags: int,
    key: bytes,
    value: bytes,
    expire: bytes | None,
    ok_reply: object = OK,
    abort_reply: object = None,
) -> object:
    """setGenericCommand: SET and the SETNX/SETEX/PSETEX variants."""
    when = _expire_at_ms(s, argv, expire, flags) if expire is not None else None
    old = None
    if flags & _GET:
        old = lookup_string_bytes(s, key, read=True)
        replied(s)  # getGenericCommand replies first
    found = s.db.lookup(key) is not None
    if (flags & _NX and found) or (flags & _XX and not found):
        return old if flags & _GET else abort_reply
    s.db.set(key, value, keep_ttl=bool(flags & _KEEPTTL))
    s.engine.dirty += 1
    notify(s, STRING, b"set", key)
    if when is not None:
        s.db.set_expire(key, when)
        s.engine.rewrite([b"SET", key, value, b"PXAT", str(when).encode()])
        notify(s, GENERIC, b"expire", key)
    elif flags & _GET:
        # Propagate without GET (which may be repeated), as Redis does.
        s.engine.rewrite(argv[:3] + [a for a in argv[3:] if a.lower() != b"get"])
    return old if flags & _GET else ok_reply


# -- GET / SET family --------------------------------------------------------------------------
@command("get")
def get(s: Session, argv: list[bytes]) -> object:
    """GET key"""
    value = s.db.lookup(argv[1])  # inlined lookup_string: GET is the hottest path
    if value is None or type(value) is bytes:
        return value
    if type(value) is bytearray:
        return bytes(value)
    raise WrongTypeError()


@command("set")
def set_(s: Session, argv: list[bytes]) -> object:
    """SET key value [NX|XX] [GET] [EX s|PX ms|EXAT ts|PXAT ms-ts|KEEPTTL]"""
    if len(argv) == 3:  # no options: the hottest write, without the general machinery
        db = s.db
        db.lookup(argv[1])  # lookupKeyWrite: a stale key expires first (its DEL propagated)
        db.set(argv[1], argv[2])
        s.engine.dirty += 1
        notify(s, STRING, b"set", argv[1])
        return OK
    flags, expire = _parse_extended(argv, for_set=True)
    return _set_generic(s, argv, flags, argv[1], argv[2], expire)


@command("setnx")
def setnx(s: Session, argv: list[bytes]) -> object:
    """SETNX key value: 1 when set, 0 when the key existed."""
    return _set_generic(s, argv, _NX, argv[1], argv[2], None, 1, 0)


@command("setex")
def setex(s: Session, argv: list[bytes]) -> object:
    """SETEX key seconds value (propagated as SET key value PXAT abs-ms)."""
    return _set_generic(s, argv, _EX, argv[1], argv[3], argv[2])


@command("psetex")
def psetex(s: Session, argv: list[bytes]) -> object:
    """PSETEX key milliseconds value (propagated as SET key value PXAT abs-ms)."""
    return _set_generic(s, argv, _PX, argv[1], argv[3], argv[2])


@command("getset")
def getset(s: Session, argv: list[bytes]) -> object:
    """GETSET key value: the old value; propagated as SET."""
    old = lookup_string_bytes(s, argv[1], read=True)
    replied(s)
    s.db.lookup(argv[1])  # setKey's lookupKeyWrite: a second access, as in getsetCommand
    s.db.set(argv[1], argv[2])
    notify(s, STRING, b"set", argv[1])
    s.engine.dirty += 1
    s.engine.rewrite([b"SET", argv[1], argv[2]])
    return old


@command("getdel")
def getdel(s: Session, argv: list[bytes]) -> object:
    """GETDEL key: the value, then the key is gone; propagated as DEL."""
    old = lookup_string_bytes(s, argv[1], read=True)
    replied(s)
    if old is not None and s.db.delete(argv[1]):
        s.engine.dirty += 1
        s.engine.rewrite([b"DEL", argv[1]])
        notify(s, GENERIC, b"del", argv[1])
    return old


@command("getex")
def getex(s: Session, argv: list[bytes]) -> object:
    """GETEX key [EX|PX|EXAT|PXAT time|PERSIST]: never propagated as is, but as
    PEXPIREAT, DEL (a timestamp already past) or PERSIST."""
    flags, expire = _parse_extended(argv, for_set=False)
    key = argv[1]
    value = lookup_string_bytes(s, key, read=True)
    if value is None:
        return None
    when = _expire_at_ms(s, argv, expire, flags) if expire is not None else None
    replied(s)
    engine = s.engine
    if flags & (_EXAT | _PXAT) and already_expired(s, when):  # type: ignore[arg-type]
        s.db.delete(key)
        engine.rewrite([b"DEL", key])
        notify(s, GENERIC, b"del", key)
        engine.dirty += 1
    elif when is not None:
        s.db.set_expire(key, when)
        engine.rewrite([b"PEXPIREAT", key, str(when).encode()])
        notify(s, GENERIC, b"expire", key)
        engine.dirty += 1
    elif flags & _PERSIST and s.db.persist(key):
        engine.rewrite([b"PERSIST", key])
        notify(s, GENERIC, b"persist", key)
        engine.dirty += 1
    return value


def already_expired(s: Session, when: int) -> bool:
    """checkAlreadyExpired: a time in the past deletes at once, except while loading and on
    a replica (which keeps the key, logically expired, until its master's DEL)."""
    engine = s.engine
    return (when <= engine.keyspace.now_ms() and engine.keyspace.expire_keys
            and not engine.loading)


@command("mget")
def mget(s: Session, argv: list[bytes]) -> object:
    """MGET key [key ...]: nil for missing keys and for keys of another type."""
    lookup = s.db.lookup
    out = []
    for key in argv[1:]:
        value = lookup(key)
        out.append(value if type(value) is bytes else
                   bytes(value) if type(value) is bytearray else None)
    return out


def _mset_generic(s: Session, argv: list[bytes], nx: bool) -> object:
    if len(argv) % 2 == 0:
        raise ReplyError(
            f"ERR wrong number of arguments for '{argv[0].decode('utf-8', 'replace').lower()}'"
            " command")
    db = s.db
    if nx:
        for j in range(1, len(argv), 2):
            if db.lookup(argv[j]) is not None:
                return 0
    for j in range(1, len(argv), 2):
        db.lookup(argv[j])  # setKey's lookupKeyWrite: an access (LFU counter, LRU clock)
        db.set(argv[j], argv[j + 1])
        notify(s, STRING, b"set", argv[j])
    s.engine.dirty += (len(argv) - 1) // 2
    return 1 if nx else OK


@command("mset")
def mset(s: Session, argv: list[bytes]) -> object:
    """MSET key value [key value ...]"""
    return _mset_generic(s, argv, False)


@command("msetnx")
def msetnx(s: Session, argv: list[bytes]) -> object:
    """MSETNX key value [key value ...]: all or nothing when any key exists."""
    return _mset_generic(s, argv, True)


@command("strlen")
def strlen(s: Session, argv: list[bytes]) -> object:
    """STRLEN key"""
    value = lookup_string(s, argv[1])
    return 0 if value is None else len(value)


# -- counters ----------------------------------------------------------------------------------
def _incr_decr(s: Session, key: bytes, incr: int) -> int:
    db = s.db
    current = db.data.get(key)
    if type(current) is bytes and not (db.expires and key in db.expires) \
            and not db.keyspace.lfu:
        # The usual counter (a string without a TTL): the lookup and Database.set inlined,
        # each a few frames that cost as much as the increment itself.
        db.access[key] = db.keyspace.lru_clock  # (a touch even when it then fails)
        number = string2ll(current)
        if number is None:
            raise ReplyError(NOT_INTEGER)
        value = number + incr
        if value > INT64_MAX or value < INT64_MIN:
            raise ReplyError(OVERFLOW)
        new = b"%d" % value
        db.data[key] = new
        db.used += len(new) - len(current)
        engine = s.engine
        engine.dirty += 1
        if engine.notify_classes & STRING:
            engine.notify_keyspace_event(b"incrby", key, db.id)
        return value
    current = lookup_string(s, key)
    value = 0 if current is None else parse_int(current)
    value += incr
    if value > INT64_MAX or value < -INT64_MAX - 1:
        raise ReplyError(OVERFLOW)
    s.db.set(key, str(value).encode(), keep_ttl=True)
    s.engine.dirty += 1
    notify(s, STRING, b"incrby", key)
    return value


@command("incr")
def incr(s: Session, argv: list[bytes]) -> object:
    """INCR key"""
    return _incr_decr(s, argv[1], 1)


@command("decr")
def decr(s: Session, argv: list[bytes]) -> object:
    """DECR key"""
    return _incr_decr(s, argv[1], -1)


@command("incrby")
def incrby(s: Session, argv: list[bytes]) -> object:
    """INCRBY key increment"""
    return _incr_decr(s, argv[1], parse_int(argv[2]))


@command("decrby")
def decrby(s: Session, argv: list[bytes]) -> object:
    """DECRBY key decrement"""
    amount = parse_int(argv[2])
    if amount == -INT64_MAX - 1:
        raise ReplyError("ERR decrement would overflow")
    return _incr_decr(s, argv[1], -amount)


@command("incrbyfloat")
def incrbyfloat(s: Session, argv: list[bytes]) -> object:
    """INCRBYFLOAT key increment, in long double as Redis; propagated as SET ... KEEPTTL."""
    key = argv[1]
    current = lookup_string(s, key)
    value = Fraction(0) if current is None else parse_long_double(current)
    increment = parse_long_double(argv[2])
    result = None
    if not isinstance(value, float) and not isinstance(increment, float):  # both finite
        result = long_double_add(value, increment)
    if result is None:
        raise ReplyError("ERR increment would produce NaN or Infinity")
    # createStringObjectFromLongDouble builds an embstr even when the text is an integer.
    result = mark_string(result, b"embstr")
    s.db.set(key, result, keep_ttl=True)
    s.engine.dirty += 1
    notify(s, STRING, b"incrbyfloat", key)
    s.engine.rewrite([b"SET", key, result, b"KEEPTTL"])
    return result


# -- ranges --------------------------------------------------------------------------------
@command("append")
def append(s: Session, argv: list[bytes]) -> object:
    """APPEND key value: the new length. Appending makes the string ``raw`` in Redis, here a
    ``bytearray`` extended in place (amortized: the cost of the suffix, not the string)."""
    key, suffix = argv[1], argv[2]
    current = lookup_string(s, key)
    if current is None:
        s.db.set(key, suffix)  # tryObjectEncoding'd argument: int, embstr or raw
        s.engine.dirty += 1
        notify(s, STRING, b"append", key)
        return len(suffix)
    _check_length(s, len(current), len(suffix))
    value = mutable_string(s, key, current)
    value += suffix
    s.engine.dirty += 1
    notify(s, STRING, b"append", key)
    return len(value)


@command("setrange")
def setrange(s: Session, argv: list[bytes]) -> object:
    """SETRANGE key offset value: overwrite from ``offset``, zero-padding as needed."""
    key, patch = argv[1], argv[3]
    offset = parse_int(argv[2])
    if offset < 0:
        raise ReplyError("ERR offset is out of range")
    current = lookup_string(s, key)
    if current is None:
        if not patch:
            return 0
        _check_length(s, offset, len(patch))
        value = bytearray(offset)
        value += patch
        s.db.set(key, value)
    else:
        if not patch:
            return len(current)
        _check_length(s, offset, len(patch))
        value = mutable_string(s, key, current)
        if offset > len(value):
            value.extend(bytes(offset - len(value)))
        value[offset:offset + len(patch)] = patch  # in place: same length or growing
    s.engine.dirty += 1
    notify(s, STRING, b"setrange", key)
    return len(value)


@command("getrange")
def getrange(s: Session, argv: list[bytes]) -> object:
    """GETRANGE key start end (inclusive, negative from the end)."""
    start = parse_int(argv[2])
    end = parse_int(argv[3])
    value = lookup_string(s, argv[1])
    if value is None:
        return b""
    size = len(value)
    if start < 0 and end < 0 and start > end:
        return b""
    if start < 0:
        start = max(size + start, 0)
    if end < 0:
        end = max(size + end, 0)
    end = min(end, size - 1)
    if start > end or size == 0:
        return b""
    return bytes(value[start:end + 1])


@command("substr")
def substr(s: Session, argv: list[bytes]) -> object:
    """SUBSTR key start end: the old name of GETRANGE."""
    return getrange(s, argv)


# -- LCS ---------------------------------------------------------------------------------------
def _lcs_rows(a: bytes, b: bytes) -> list[int]:
    """Bit-parallel LCS (Allison-Dix / Hyyro): one ``len(b)``-bit row per prefix of ``a``.

    In row ``i`` bit ``j`` is 0 exactly where ``LCS(a[:i], b[:j+1])`` exceeds
    ``LCS(a[:i], b[:j])``, so ``LCS(i, j) = j - popcount(row_i & (2**j - 1))``. Each row is a
    handful of big-integer operations: C speed instead of a Python loop per table cell.
    """
    full = (1 << len(b)) - 1
    masks: dict[int, int] = {}
    for j, char in enumerate(b):
        masks[char] = masks.get(char, 0) | (1 << j)
    row = full
    rows = [row]
    for char in a:
        matched = row & masks.get(char, 0)
        row = ((row + matched) | (row - matched)) & full
        rows.append(row)
    return rows


def _lcs_at(rows: list[int], i: int, j: int) -> int:
    return j - (rows[i] & ((1 << j) - 1)).bit_count()


@command("lcs")
def lcs(s: Session, argv: list[bytes]) -> object:
    """LCS key1 key2 [LEN] [IDX] [MINMATCHLEN len] [WITHMATCHLEN]

    The walk back through the table, and so which of several equally long subsequences and
    ranges is reported, is Redis's own.
    """
    obj_a = s.db.lookup(argv[1])
    obj_b = s.db.lookup(argv[2])
    if (obj_a is not None and not is_string(obj_a)) or (
            obj_b is not None and not is_string(obj_b)):
        raise ReplyError("ERR The specified keys must contain string values")
    a: bytes = obj_a or b""  # type: ignore[assignment]
    b: bytes = obj_b or b""  # type: ignore[assignment]
    getlen = getidx = withmatchlen = False
    minmatchlen = 0
    j = 3
    while j < len(argv):
        opt = argv[j].lower()
        if opt == b"idx":
            getidx = True
        elif opt == b"len":
            getlen = True
        elif opt == b"withmatchlen":
            withmatchlen = True
        elif opt == b"minmatchlen" and j < len(argv) - 1:
            minmatchlen = max(parse_int(argv[j + 1]), 0)
            j += 1
        else:
            raise ReplyError(SYNTAX)
        j += 1
    if getlen and getidx:
        raise ReplyError("ERR If you want both the length and indexes, please just use IDX.")
    if (len(a) + 1) * (len(b) + 1) * 4 > s.engine.config.proto_max_bulk_len:
        raise ReplyError(_MAX_LCS_CELLS_MESSAGE)
    rows = _lcs_rows(a, b)
    total = _lcs_at(rows, len(a), len(b))
    if getlen and not getidx:
        return total
    result = bytearray(total)
    idx = total
    matches = []
    alen = len(a)
    i, j = len(a), len(b)
    arange_start = alen  # alen: no range being tracked
    arange_end = brange_start = brange_end = 0
    while i > 0 and j > 0:
        emit = False
        if a[i - 1] == b[j - 1]:
            result[idx - 1] = a[i - 1]
            if arange_start == alen:
                arange_start = arange_end = i - 1
                brange_start = brange_end = j - 1
            elif arange_start == i and brange_start == j:
                arange_start -= 1
                brange_start -= 1
            else:
                emit = True
            if arange_start == 0 or brange_start == 0:
                emit = True
            idx -= 1
            i -= 1
            j -= 1
        else:
            if _lcs_at(rows, i - 1, j) > _lcs_at(rows, i, j - 1):
                i -= 1
            else:
                j -= 1
            if arange_start != alen:
                emit = True
        if emit:
            match_len = arange_end - arange_start + 1
            if getidx and (minmatchlen == 0 or match_len >= minmatchlen):
                entry = [[arange_start, arange_end], [brange_start, brange_end]]
                if withmatchlen:
                    entry.append(match_len)
                matches.append(entry)
            arange_start = alen
    if getidx:
        return {b"matches": DeferredArray(matches), b"len": total}  # set after them
    return bytes(result)
