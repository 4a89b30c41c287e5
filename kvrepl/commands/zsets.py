"""Sorted set commands (Redis 7.0's ``t_zset.c``), replies and errors as Redis gives them.

Values are :class:`kvrepl.store.values.ZSet`. Ranges are bisections on its ``ordered`` index,
so range reads and removals cost O(log n + m). Scores are parsed the way Redis parses them
(``strtod`` with Redis's own checks), which is stricter in some places and laxer in others
than Python's ``float()``: see :func:`_string2d` and :func:`_range_bound`.
"""

from __future__ import annotations

import math
import random
import re
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Iterable
from decimal import Decimal
from fractions import Fraction

from kvrepl.commands.args import INT64_MAX, INT64_MIN, _to_long_double, parse_int, to_int
from kvrepl.commands.core import Block, Session, command
from kvrepl.commands.glob import glob_match
from kvrepl.errors import (
    MIN_MAX_NOT_FLOAT,
    MIN_MAX_NOT_STRING,
    NOT_FLOAT,
    NOT_INTEGER,
    SYNTAX,
    TIMEOUT_NEGATIVE,
    TIMEOUT_NOT_FLOAT,
    ReplyError,
    WrongTypeError,
)
from kvrepl.protocol.replies import NULL_ARRAY, format_double
from kvrepl.store.values import ZSet

NAN_SCORE = "ERR resulting score is not a number (NaN)"
_SUM, _MIN, _MAX = 0, 1, 2
_UNION, _INTER, _DIFF = 0, 1, 2
_RANK, _SCORE, _LEX = 0, 1, 2

# -- parsing -----------------------------------------------------------------------------

_SPACE = b" \t\n\v\f\r"
# What glibc's strtod accepts, as a whole string (a full match means strtod consumes it all).
_STRTOD = re.compile(
    rb"[ \t\n\v\f\r]*[+-]?(?:"
    rb"(?P<inf>inf(?:inity)?)"
    rb"|(?P<nan>nan(?:\([0-9a-z_]*\))?)"
    rb"|0x(?P<hex>(?P<hexdigits>[0-9a-f]+\.?[0-9a-f]*|\.[0-9a-f]+)(?:p[+-]?[0-9]+)?)"
    rb"|(?P<dec>(?P<digits>[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[+-]?[0-9]+)?)"
    rb")",
    re.IGNORECASE,
)
_NONZERO = re.compile(rb"[1-9a-fA-F]")


def _strtod(text: bytes) -> tuple[float, bool] | None:
    """``text`` as strtod reads it when it consumes all of it: ``(value, erange)``, or None.

    ``erange`` is strtod's ERANGE: overflow to infinity or underflow to zero.
    """
    match = _STRTOD.fullmatch(text)
    if match is None:
        return None
    negative = text.lstrip(_SPACE)[:1] == b"-"
    erange = False
    if match["inf"]:
        value = math.inf
    elif match["nan"]:
        value = math.nan
    elif match["hex"] is not None:
        try:
            value = float.fromhex("0x" + match["hex"].decode())
        except OverflowError:
            value, erange = math.inf, True
        if value == 0 and _NONZERO.search(match["hexdigits"]):
            erange = True
    else:
        value = float(match["dec"])
        if math.isinf(value) or (value == 0 and _NONZERO.search(match["digits"])):
            erange = True
    return (-value if negative else value), erange


def _string2d(arg: bytes, message: str = NOT_FLOAT) -> float:
    """A double as Redis's ``string2d`` takes it (scores, weights), or ReplyError(message).

    Hex floats and ``inf`` pass; leading spaces, overflow, underflow to zero and NaN do not.
    """
    if arg and arg[0] not in _SPACE:
        parsed = _strtod(arg)
        if parsed is not None:
            value, erange = parsed
            if not (math.isnan(value) or (erange and (math.isinf(value) or value == 0))):
                return value
    raise ReplyError(message)


def _range_bound(arg: bytes) -> tuple[float, bool]:
    """One ``min``/``max`` of a score range (``zslParseRange``): ``(value, exclusive)``.

    Redis runs plain strtod on the C string here: leading spaces pass, an empty string is 0,
    out-of-range values become infinities; only NaN and trailing garbage are refused.
    """
    text = arg.split(b"\0", 1)[0]
    exclusive = text[:1] == b"("
    if exclusive:
        text = text[1:]
    if not text:
        return 0.0, exclusive
    parsed = _strtod(text)
    if parsed is None or math.isnan(parsed[0]):
        raise ReplyError(MIN_MAX_NOT_FLOAT)
    return parsed[0], exclusive


def _score_range(argv: list[bytes], low: int, high: int) -> tuple[float, bool, float, bool]:
    low_value, low_ex = _range_bound(argv[low])
    high_value, high_ex = _range_bound(argv[high])
    return low_value, low_ex, high_value, high_ex


# A lex bound: (kind, value, exclusive); kind -1 is "-" (below all), 1 is "+", 0 a string.
LexBound = tuple[int, bytes, bool]


def _lex_bound(arg: bytes) -> LexBound:
    first = arg[:1]
    if first in (b"+", b"-"):
        if arg[1:2] not in (b"", b"\0"):  # Redis tests c[1] == '\0' on the C string
            raise ReplyError(MIN_MAX_NOT_STRING)
        return (1 if first == b"+" else -1), b"", True
    if first == b"(":
        return 0, arg[1:], True
    if first == b"[":
        return 0, arg[1:], False
    raise ReplyError(MIN_MAX_NOT_STRING)


def _lex_range(argv: list[bytes], low: int, high: int) -> tuple[LexBound, LexBound]:
    return _lex_bound(argv[low]), _lex_bound(argv[high])


def _range_long(arg: bytes, low: int, high: int, message: str | None = None) -> int:
    """``getRangeLongFromObjectOrReply``: an integer in ``[low, high]``."""
    value = to_int(arg)
    if value is None:
        raise ReplyError(message or NOT_INTEGER)
    if value < low or value > high:
        raise ReplyError(
            message or f"ERR value is out of range, value must between {low} and {high}")
    return value


def _positive_long(arg: bytes, message: str = "ERR value is out of range, must be positive") -> int:
    return _range_long(arg, 0, INT64_MAX, message)


_TWO_POW_MIN_SUBNORMAL = Fraction(1, 2**16445)  # smallest x87 long double subnormal


def _parse_timeout(arg: bytes) -> float:
    """A blocking timeout in seconds (``getTimeoutFromObjectOrReply``); 0 waits forever.

    Redis reads it with strtold, multiplies by 1000 in long double and rounds up to whole
    milliseconds; values beyond the ``long long`` range convert to LLONG_MIN on x86 and so
    come back as "timeout is negative".
    """
    parsed = None
    if arg and len(arg) < 5 * 1024 and arg[0] not in _SPACE:
        parsed = _STRTOD.fullmatch(arg)
    if parsed is None or parsed["nan"]:
        raise ReplyError(TIMEOUT_NOT_FLOAT)
    if parsed["inf"]:
        millis = INT64_MIN
    else:
        try:
            if parsed["hex"] is not None:
                exact = Fraction(float.fromhex(arg.decode()))
            else:
                exact = Fraction(Decimal(arg.decode()))
            if exact and abs(exact) < _TWO_POW_MIN_SUBNORMAL / 2:
                raise OverflowError  # underflow to zero: ERANGE
            millis = math.ceil(_to_long_double(_to_long_double(exact) * 1000))
        except OverflowError:
            raise ReplyError(TIMEOUT_NOT_FLOAT) from None
        if millis > INT64_MAX or millis < INT64_MIN:
            millis = INT64_MIN
    if millis < 0:
        raise ReplyError(TIMEOUT_NEGATIVE)
    return millis / 1000


# -- helpers ------------------------------------------------------------------------------


def _lookup(s: Session, key: bytes) -> ZSet | None:
    value = s.db.lookup(key)
    if value is None or type(value) is ZSet:
        return value
    raise WrongTypeError()


def _reply_items(s: Session, items: Iterable[tuple[float, bytes]], withscores: bool) -> list:
    """Members, or member/score pairs: flat in RESP2, ``[member, score]`` arrays in RESP3."""
    if not withscores:
        return [member for _, member in items]
    if s.resp3:
        return [[member, score] for score, member in items]
    out: list = []
    for score, member in items:
        out.append(member)
        out.append(score)
    return out


def _listpack_sized(s: Session, zset: ZSet) -> bool:
    """Would Redis keep this set as a listpack? (ZSCAN returns those whole; they hold -0 as 0.)"""
    config = s.engine.config
    if len(zset) > config.zset_max_listpack_entries:
        return False
    limit = config.zset_max_listpack_value
    return all(len(member) <= limit for member in zset.scores)


def _kept_score(s: Session, size: int, member: bytes, score: float) -> float:
    """The score a set of ``size`` members keeps: a listpack stores -0 as the integer 0.

    kvrepl does not track encodings; a set within the listpack limits is taken for one.
    """
    if score == 0 and size <= s.engine.config.zset_max_listpack_entries and (
            len(member) <= s.engine.config.zset_max_listpack_value):
        return 0.0
    return score


def _store(s: Session, dst: bytes, zset: ZSet) -> int:
    """Store a command's result at ``dst`` as Redis does (``setKey``, or delete when empty).

    Redis turns a small result into a listpack, where a -0 score becomes 0.
    """
    if zset and _listpack_sized(s, zset) and any(
            score == 0 and math.copysign(1.0, score) < 0 for score in zset.scores.values()):
        zset = ZSet({member: score + 0.0 for member, score in zset.scores.items()})
    if zset:
        s.db.set(dst, zset)
        s.engine.dirty += 1
        return len(zset)
    if s.db.delete(dst):
        s.engine.dirty += 1
    return 0


def _score_span(zset: ZSet, low: float, low_ex: bool, high: float, high_ex: bool) -> tuple[int, int]:
    """Ranks ``[start, stop)`` of the members whose score is within the bounds."""
    start = zset.score_index(low, after=low_ex)
    stop = zset.score_index(high, after=not high_ex)
    return start, max(start, stop)


def _gte_min(member: bytes, bound: LexBound) -> bool:
    kind, value, exclusive = bound
    if kind:
        return kind < 0
    return member > value if exclusive else member >= value


def _lte_max(member: bytes, bound: LexBound) -> bool:
    kind, value, exclusive = bound
    if kind:
        return kind > 0
    return member < value if exclusive else member <= value


def _lex_rank(zset: ZSet, bound: LexBound, upper: bool) -> int:
    kind, value, exclusive = bound
    if kind:
        return 0 if kind < 0 else len(zset)
    # A lower bound starts after the value when exclusive; an upper one stops before it.
    return zset.lex_index(value, after=exclusive != upper)


def _lex_span(zset: ZSet, low: LexBound, high: LexBound, reverse: bool = False) -> tuple[int, int]:
    """Ranks ``[start, stop)`` a lex range covers, walked forward (or backward) as Redis does.

    With one score for all members (what lex ranges are for) this is two bisections. With
    mixed scores members are not in bytes order and Redis's answer depends on the walk: this
    follows its listpack code (first/last element checks, then a scan), which is what a
    small set gives in Redis; it costs O(n) and only for such misuse.
    """
    size = len(zset)
    low_key, high_key = low[:2], high[:2]
    if not size or low_key > high_key or (low_key == high_key and (low[2] or high[2])):
        return 0, 0
    ordered = zset.ordered
    if not _gte_min(ordered[-1][1], low) or not _lte_max(ordered[0][1], high):
        return 0, 0
    if ordered[0][0] == ordered[-1][0]:
        start = _lex_rank(zset, low, upper=False)
        return start, max(start, _lex_rank(zset, high, upper=True))
    members = [member for _, member in ordered]
    if not reverse:
        start = next(i for i, member in enumerate(members) if _gte_min(member, low))
        if not _lte_max(members[start], high):
            return 0, 0
        stop = start + 1
        while stop < size and _lte_max(members[stop], high):
            stop += 1
        return start, stop
    last = next(i for i in range(size - 1, -1, -1) if _lte_max(members[i], high))
    if not _gte_min(members[last], low):
        return 0, 0
    start = last
    while start > 0 and _gte_min(members[start - 1], low):
        start -= 1
    return start, last + 1


# -- ZADD, ZINCRBY, ZREM --------------------------------------------------------------------


def _zadd_generic(s: Session, argv: list[bytes], incr: bool) -> object:
    nx = xx = gt = lt = ch = False
    index = 2
    while index < len(argv):
        option = argv[index].lower()
        if option == b"nx":
            nx = True
        elif option == b"xx":
            xx = True
        elif option == b"ch":
            ch = True
        elif option == b"incr":
            incr = True
        elif option == b"gt":
            gt = True
        elif option == b"lt":
            lt = True
        else:
            break
        index += 1
    remaining = len(argv) - index
    if remaining % 2 or not remaining:
        raise ReplyError(SYNTAX)
    if nx and xx:
        raise ReplyError("ERR XX and NX options at the same time are not compatible")
    if (gt and nx) or (lt and nx) or (gt and lt):
        raise ReplyError("ERR GT, LT, and/or NX options at the same time are not compatible")
    if incr and remaining > 2:
        raise ReplyError("ERR INCR option supports a single increment-element pair")
    # Every score is checked before anything changes: the command is all or nothing.
    scores = [_string2d(argv[i]) for i in range(index, len(argv), 2)]
    key = argv[1]
    zset = _lookup(s, key)
    added = updated = processed = 0
    score = 0.0
    if zset is not None or not xx:
        created = zset is None
        if created:
            zset = ZSet()
        for position, score in enumerate(scores):
            member = argv[index + 2 * position + 1]
            current = zset.scores.get(member)
            if current is None:
                if not xx:
                    zset.add(member, _kept_score(s, len(zset) + 1, member, score))
                    added += 1
                    processed += 1
                continue
            if nx:
                continue
            if incr:
                score += current
                if math.isnan(score):
                    raise ReplyError(NAN_SCORE)
            if (lt and score >= current) or (gt and score <= current):
                continue
            processed += 1
            if score != current:
                zset.add(member, _kept_score(s, len(zset), member, score))
                updated += 1
        if created and zset:
            s.db.add(key, zset)
        s.engine.dirty += added + updated
    if incr:
        return score if processed else None
    return added + updated if ch else added


@command("zadd")
def zadd(s: Session, argv: list[bytes]) -> object:
    """ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member [score member ...]"""
    return _zadd_generic(s, argv, incr=False)


@command("zincrby")
def zincrby(s: Session, argv: list[bytes]) -> object:
    """ZINCRBY key increment member (Redis runs it as ZADD INCR, option parsing included)."""
    return _zadd_generic(s, argv, incr=True)


@command("zrem")
def zrem(s: Session, argv: list[bytes]) -> object:
    """ZREM key member [member ...]"""
    key = argv[1]
    zset = _lookup(s, key)
    if zset is None:
        return 0
    deleted = 0
    for member in argv[2:]:
        if zset.remove(member):
            deleted += 1
            if not zset:
                s.db.delete(key)
                break
    s.engine.dirty += deleted
    return deleted


# -- single-member reads ----------------------------------------------------------------------


@command("zcard")
def zcard(s: Session, argv: list[bytes]) -> object:
    """ZCARD key"""
    zset = _lookup(s, argv[1])
    return len(zset) if zset is not None else 0


@command("zscore")
def zscore(s: Session, argv: list[bytes]) -> object:
    """ZSCORE key member: a double (bulk in RESP2), or null."""
    zset = _lookup(s, argv[1])
    return zset.scores.get(argv[2]) if zset is not None else None


@command("zmscore")
def zmscore(s: Session, argv: list[bytes]) -> object:
    """ZMSCORE key member [member ...]: a missing key reads as an empty set."""
    zset = _lookup(s, argv[1])
    scores = zset.scores if zset is not None else {}
    return [scores.get(member) for member in argv[2:]]


def _zrank(s: Session, argv: list[bytes], reverse: bool) -> object:
    zset = _lookup(s, argv[1])
    if zset is None:
        return None
    rank = zset.rank(argv[2])
    if rank is None or not reverse:
        return rank
    return len(zset) - 1 - rank


@command("zrank")
def zrank(s: Session, argv: list[bytes]) -> object:
    """ZRANK key member"""
    return _zrank(s, argv, reverse=False)


@command("zrevrank")
def zrevrank(s: Session, argv: list[bytes]) -> object:
    """ZREVRANK key member"""
    return _zrank(s, argv, reverse=True)


# -- counting and ranges ------------------------------------------------------------------------


@command("zcount")
def zcount(s: Session, argv: list[bytes]) -> object:
    """ZCOUNT key min max"""
    bounds = _score_range(argv, 2, 3)
    zset = _lookup(s, argv[1])
    if zset is None:
        return 0
    start, stop = _score_span(zset, *bounds)
    return stop - start


@command("zlexcount")
def zlexcount(s: Session, argv: list[bytes]) -> object:
    """ZLEXCOUNT key min max"""
    low, high = _lex_range(argv, 2, 3)
    zset = _lookup(s, argv[1])
    if zset is None:
        return 0
    start, stop = _lex_span(zset, low, high)
    return stop - start


def _zrange_generic(s: Session, argv: list[bytes], first: int, store: bool,
                    rangetype: int | None, reverse: bool | None) -> object:
    """ZRANGE and friends (``zrangeGenericCommand``); ``None`` means "options decide".

    ``first`` is the index of the source key; ZRANGESTORE's destination is ``argv[1]``.
    """
    key = argv[first]
    low_index, high_index = first + 1, first + 2
    withscores = False
    offset, limit = 0, -1
    j = first + 3
    while j < len(argv):
        word = argv[j].lower()
        if not store and word == b"withscores":
            withscores = True
        elif word == b"limit" and len(argv) - j - 1 >= 2:
            offset = parse_int(argv[j + 1])
            limit = parse_int(argv[j + 2])
            j += 2
        elif reverse is None and word == b"rev":
            reverse = True
        elif rangetype is None and word == b"bylex":
            rangetype = _LEX
        elif rangetype is None and word == b"byscore":
            rangetype = _SCORE
        else:
            raise ReplyError(SYNTAX)
        j += 1
    reverse = bool(reverse)
    if rangetype is None:
        rangetype = _RANK
    if limit != -1 and rangetype == _RANK:
        raise ReplyError("ERR syntax error, LIMIT is only supported in combination with "
                         "either BYSCORE or BYLEX")
    if withscores and rangetype == _LEX:
        raise ReplyError("ERR syntax error, WITHSCORES not supported in combination with BYLEX")
    if reverse and rangetype != _RANK:
        low_index, high_index = high_index, low_index  # given as max, min
    if rangetype == _RANK:
        start = parse_int(argv[low_index])
        end = parse_int(argv[high_index])
    elif rangetype == _SCORE:
        bounds = _score_range(argv, low_index, high_index)
    else:
        lex_low, lex_high = _lex_range(argv, low_index, high_index)

    zset = _lookup(s, key)
    items: Iterable[tuple[float, bytes]] = ()
    if zset is not None:
        size = len(zset)
        if rangetype == _RANK:
            if start < 0:
                start += size
            if end < 0:
                end += size
            start = max(start, 0)
            if start <= end and start < size:
                end = min(end, size - 1)
                if reverse:
                    items = zset.ordered.islice(size - 1 - end, size - start, reverse=True)
                else:
                    items = zset.ordered.islice(start, end + 1)
        else:
            if rangetype == _SCORE:
                lo, hi = _score_span(zset, *bounds)
            else:
                lo, hi = _lex_span(zset, lex_low, lex_high, reverse)
            # A negative offset walks off the end in Redis's loop: nothing is returned.
            if offset >= 0:
                count = hi - lo - offset
                if limit >= 0:
                    count = min(count, limit)
                if count > 0:
                    if reverse:
                        items = zset.ordered.islice(hi - offset - count, hi - offset,
                                                    reverse=True)
                    else:
                        items = zset.ordered.islice(lo + offset, lo + offset + count)
    if store:
        return _store(s, argv[1], ZSet({member: score for score, member in items}))
    return _reply_items(s, items, withscores)


@command("zrange")
def zrange(s: Session, argv: list[bytes]) -> object:
    """ZRANGE key start stop [BYSCORE|BYLEX] [REV] [LIMIT offset count] [WITHSCORES]"""
    return _zrange_generic(s, argv, 1, False, None, None)


@command("zrangestore")
def zrangestore(s: Session, argv: list[bytes]) -> object:
    """ZRANGESTORE dst src min max [BYSCORE|BYLEX] [REV] [LIMIT offset count]"""
    return _zrange_generic(s, argv, 2, True, None, None)


@command("zrevrange")
def zrevrange(s: Session, argv: list[bytes]) -> object:
    """ZREVRANGE key start stop [WITHSCORES]"""
    return _zrange_generic(s, argv, 1, False, _RANK, True)


@command("zrangebyscore")
def zrangebyscore(s: Session, argv: list[bytes]) -> object:
    """ZRANGEBYSCORE key min max [WITHSCORES] [LIMIT offset count]"""
    return _zrange_generic(s, argv, 1, False, _SCORE, False)


@command("zrevrangebyscore")
def zrevrangebyscore(s: Session, argv: list[bytes]) -> object:
    """ZREVRANGEBYSCORE key max min [WITHSCORES] [LIMIT offset count]"""
    return _zrange_generic(s, argv, 1, False, _SCORE, True)


@command("zrangebylex")
def zrangebylex(s: Session, argv: list[bytes]) -> object:
    """ZRANGEBYLEX key min max [LIMIT offset count]"""
    return _zrange_generic(s, argv, 1, False, _LEX, False)


@command("zrevrangebylex")
def zrevrangebylex(s: Session, argv: list[bytes]) -> object:
    """ZREVRANGEBYLEX key max min [LIMIT offset count]"""
    return _zrange_generic(s, argv, 1, False, _LEX, True)


def _zremrange(s: Session, argv: list[bytes], rangetype: int) -> object:
    if rangetype == _RANK:
        start = parse_int(argv[2])
        end = parse_int(argv[3])
    elif rangetype == _SCORE:
        bounds = _score_range(argv, 2, 3)
    else:
        lex_low, lex_high = _lex_range(argv, 2, 3)
    key = argv[1]
    zset = _lookup(s, key)
    if zset is None:
        return 0
    size = len(zset)
    if rangetype == _RANK:
        if start < 0:
            start += size
        if end < 0:
            end += size
        start = max(start, 0)
        if start > end or start >= size:
            return 0
        lo, hi = start, min(end, size - 1) + 1
    elif rangetype == _SCORE:
        lo, hi = _score_span(zset, *bounds)
    else:
        lo, hi = _lex_span(zset, lex_low, lex_high)
    deleted = zset.remove_ranks(lo, hi)
    if not zset:
        s.db.delete(key)
    s.engine.dirty += deleted
    return deleted


@command("zremrangebyrank")
def zremrangebyrank(s: Session, argv: list[bytes]) -> object:
    """ZREMRANGEBYRANK key start stop"""
    return _zremrange(s, argv, _RANK)


@command("zremrangebyscore")
def zremrangebyscore(s: Session, argv: list[bytes]) -> object:
    """ZREMRANGEBYSCORE key min max"""
    return _zremrange(s, argv, _SCORE)


@command("zremrangebylex")
def zremrangebylex(s: Session, argv: list[bytes]) -> object:
    """ZREMRANGEBYLEX key min max"""
    return _zremrange(s, argv, _LEX)


# -- pops, blocking pops --------------------------------------------------------------------


def _pop(s: Session, key: bytes, zset: ZSet, highest: bool, count: int,
         emit_key: bool, nested: bool) -> object:
    """Pop ``count`` members off ``zset`` (``genericZpopCommand`` after the key was found).

    The reply is flat, nested (``[[member, score], ...]``) and/or led by the key, per the
    caller. Deletes the key when it empties and counts one change per member.
    """
    popped = [zset.pop_rank(-1 if highest else 0) for _ in range(min(count, len(zset)))]
    if not zset:
        s.db.delete(key)
    s.engine.dirty += len(popped)
    if nested:
        items: list = [[member, score] for score, member in popped]
        return [key, items] if emit_key else items
    flat: list = [key] if emit_key else []
    for score, member in popped:
        flat.append(member)
        flat.append(score)
    return flat


def _zpop(s: Session, argv: list[bytes], highest: bool) -> object:
    if len(argv) > 3:
        raise ReplyError(SYNTAX)
    count = _positive_long(argv[2]) if len(argv) == 3 else -1
    # RESP3 nests the pairs only when a count was given.
    nested = s.resp3 and count != -1
    zset = _lookup(s, argv[1])
    if zset is None or count == 0:
        return []
    return _pop(s, argv[1], zset, highest, 1 if count == -1 else count, False, nested)


@command("zpopmin")
def zpopmin(s: Session, argv: list[bytes]) -> object:
    """ZPOPMIN key [count]"""
    return _zpop(s, argv, highest=False)


@command("zpopmax")
def zpopmax(s: Session, argv: list[bytes]) -> object:
    """ZPOPMAX key [count]"""
    return _zpop(s, argv, highest=True)


def _pop_first(s: Session, keys: list[bytes], highest: bool, count: int, nested: bool,
               timeout: float | None) -> object:
    """Serve the first non-empty sorted set among ``keys`` and propagate it as ZPOPMIN/MAX.

    ``timeout`` None is the non-blocking ZMPOP (null when nothing is there); otherwise
    nothing to pop means Block. ``count`` -1 is the single-member BZPOPMIN/BZPOPMAX form.
    """
    rerun = s.blocked is not None
    for key in keys:
        value = s.db.lookup(key)
        if value is None:
            continue
        if type(value) is not ZSet:
            if rerun:
                continue  # Redis only serves a waiter from a key that now holds a zset
            raise WrongTypeError()
        size = len(value)
        reply = _pop(s, key, value, highest, 1 if count == -1 else count, True, nested)
        name = b"ZPOPMAX" if highest else b"ZPOPMIN"
        if count == -1:
            s.engine.rewrite([name, key])
        else:
            s.engine.rewrite([name, key, b"%d" % min(count, size)])
        return reply
    if timeout is None:
        return NULL_ARRAY
    return Block(keys=list(keys), timeout=timeout, timeout_reply=NULL_ARRAY)


def _bzpop(s: Session, argv: list[bytes], highest: bool) -> object:
    timeout = _parse_timeout(argv[-1])
    return _pop_first(s, argv[1:-1], highest, -1, False, timeout)


@command("bzpopmin")
def bzpopmin(s: Session, argv: list[bytes]) -> object:
    """BZPOPMIN key [key ...] timeout; served as ``[key, member, score]``."""
    return _bzpop(s, argv, highest=False)


@command("bzpopmax")
def bzpopmax(s: Session, argv: list[bytes]) -> object:
    """BZPOPMAX key [key ...] timeout"""
    return _bzpop(s, argv, highest=True)


def _zmpop(s: Session, argv: list[bytes], numkeys_index: int, block: bool) -> object:
    numkeys = _range_long(argv[numkeys_index], 1, INT64_MAX,
                          "ERR numkeys should be greater than 0")
    where_index = numkeys_index + numkeys + 1
    if where_index >= len(argv):
        raise ReplyError(SYNTAX)
    where = argv[where_index].lower()
    if where not in (b"min", b"max"):
        raise ReplyError(SYNTAX)
    count = -1
    j = where_index + 1
    while j < len(argv):
        if count == -1 and argv[j].lower() == b"count" and j < len(argv) - 1:
            j += 1
            count = _range_long(argv[j], 1, INT64_MAX, "ERR count should be greater than 0")
        else:
            raise ReplyError(SYNTAX)
        j += 1
    if count == -1:
        count = 1
    keys = argv[numkeys_index + 1:where_index]
    timeout = _parse_timeout(argv[1]) if block else None
    return _pop_first(s, keys, where == b"max", count, True, timeout)


@command("zmpop")
def zmpop(s: Session, argv: list[bytes]) -> object:
    """ZMPOP numkeys key [key ...] MIN|MAX [COUNT count]: ``[key, [[member, score], ...]]``."""
    return _zmpop(s, argv, 1, block=False)


@command("bzmpop")
def bzmpop(s: Session, argv: list[bytes]) -> object:
    """BZMPOP timeout numkeys key [key ...] MIN|MAX [COUNT count]"""
    return _zmpop(s, argv, 2, block=True)


# -- ZUNION, ZINTER, ZDIFF and their STORE forms, ZINTERCARD -----------------------------------


def _source_items(source: object) -> Iterable[tuple[bytes, float]]:
    if type(source) is ZSet:
        return source.scores.items()
    return ((member, 1.0) for member in source)  # a set: every member scores 1


def _source_score(source: object, member: bytes) -> float | None:
    if type(source) is ZSet:
        return source.scores.get(member)
    return 1.0 if member in source else None


def _aggregate(target: float, value: float, mode: int) -> float:
    if mode == _SUM:
        total = target + value
        return 0.0 if math.isnan(total) else total  # inf + -inf is 0 by Redis's convention
    if mode == _MIN:
        return value if value < target else target
    return value if value > target else target


def _zsetop(s: Session, argv: list[bytes], name: str, numkeys_index: int, op: int,
            dst: bytes | None = None, card_only: bool = False) -> object:
    """``zunionInterDiffGenericCommand``: parse, combine, then reply or store at ``dst``."""
    setnum = parse_int(argv[numkeys_index])
    if setnum < 1:
        raise ReplyError(f"ERR at least 1 input key is needed for '{name}' command")
    if setnum > len(argv) - (numkeys_index + 1):
        raise ReplyError(SYNTAX)
    sources: list[object] = []
    for key in argv[numkeys_index + 1:numkeys_index + 1 + setnum]:
        value = s.db.lookup(key)
        if value is not None and type(value) is not ZSet and type(value) is not set:
            raise WrongTypeError()
        sources.append(value if value is not None else ())
    weights = [1.0] * setnum
    aggregate = _SUM
    withscores = False
    limit = 0
    j = numkeys_index + 1 + setnum
    while j < len(argv):
        remaining = len(argv) - j
        word = argv[j].lower()
        if op != _DIFF and not card_only and remaining >= setnum + 1 and word == b"weights":
            weights = [_string2d(arg, "ERR weight value is not a float")
                       for arg in argv[j + 1:j + 1 + setnum]]
            j += 1 + setnum
        elif op != _DIFF and not card_only and remaining >= 2 and word == b"aggregate":
            mode = argv[j + 1].lower()
            if mode == b"sum":
                aggregate = _SUM
            elif mode == b"min":
                aggregate = _MIN
            elif mode == b"max":
                aggregate = _MAX
            else:
                raise ReplyError(SYNTAX)
            j += 2
        elif dst is None and not card_only and word == b"withscores":
            withscores = True
            j += 1
        elif card_only and remaining >= 2 and word == b"limit":
            limit = _positive_long(argv[j + 1], "ERR LIMIT can't be negative")
            j += 2
        else:
            raise ReplyError(SYNTAX)

    result: dict[bytes, float] = {}
    if op == _DIFF:
        first, others = sources[0], [src for src in sources[1:] if len(src)]
        for member, score in _source_items(first):
            if not any(_source_score(other, member) is not None for other in others):
                result[member] = score
    else:
        # Redis visits the inputs smallest first (a stable sort), which fixes the order of
        # floating point sums.
        order = sorted(range(setnum), key=lambda i: len(sources[i]))
        ordered = [(sources[i], weights[i]) for i in order]
        if op == _INTER:
            cardinality = 0
            first, first_weight = ordered[0]
            if len(first):
                for member, value in _source_items(first):
                    score = first_weight * value
                    if math.isnan(score):
                        score = 0.0
                    for source, weight in ordered[1:]:
                        other = _source_score(source, member)
                        if other is None:
                            break
                        score = _aggregate(score, other * weight, aggregate)
                    else:
                        if card_only:
                            cardinality += 1
                            if limit and cardinality >= limit:
                                break
                        else:
                            result[member] = score
            if card_only:
                return cardinality
        else:
            for source, weight in ordered:
                for member, value in _source_items(source):
                    score = weight * value
                    if math.isnan(score):
                        score = 0.0
                    current = result.get(member)
                    result[member] = (score if current is None
                                      else _aggregate(current, score, aggregate))
    zset = ZSet(result)
    if dst is not None:
        return _store(s, dst, zset)
    return _reply_items(s, zset.ordered, withscores)


@command("zunion")
def zunion(s: Session, argv: list[bytes]) -> object:
    """ZUNION numkeys key [key ...] [WEIGHTS w ...] [AGGREGATE SUM|MIN|MAX] [WITHSCORES]"""
    return _zsetop(s, argv, "zunion", 1, _UNION)


@command("zinter")
def zinter(s: Session, argv: list[bytes]) -> object:
    """ZINTER numkeys key [key ...] [WEIGHTS w ...] [AGGREGATE SUM|MIN|MAX] [WITHSCORES]"""
    return _zsetop(s, argv, "zinter", 1, _INTER)


@command("zdiff")
def zdiff(s: Session, argv: list[bytes]) -> object:
    """ZDIFF numkeys key [key ...] [WITHSCORES]"""
    return _zsetop(s, argv, "zdiff", 1, _DIFF)


@command("zunionstore")
def zunionstore(s: Session, argv: list[bytes]) -> object:
    """ZUNIONSTORE dst numkeys key [key ...] [WEIGHTS w ...] [AGGREGATE SUM|MIN|MAX]"""
    return _zsetop(s, argv, "zunionstore", 2, _UNION, dst=argv[1])


@command("zinterstore")
def zinterstore(s: Session, argv: list[bytes]) -> object:
    """ZINTERSTORE dst numkeys key [key ...] [WEIGHTS w ...] [AGGREGATE SUM|MIN|MAX]"""
    return _zsetop(s, argv, "zinterstore", 2, _INTER, dst=argv[1])


@command("zdiffstore")
def zdiffstore(s: Session, argv: list[bytes]) -> object:
    """ZDIFFSTORE dst numkeys key [key ...]"""
    return _zsetop(s, argv, "zdiffstore", 2, _DIFF, dst=argv[1])


@command("zintercard")
def zintercard(s: Session, argv: list[bytes]) -> object:
    """ZINTERCARD numkeys key [key ...] [LIMIT limit]"""
    return _zsetop(s, argv, "zintercard", 1, _INTER, card_only=True)


# -- ZRANDMEMBER, ZSCAN ------------------------------------------------------------------------

_LONG_HALF = INT64_MAX // 2


@command("zrandmember")
def zrandmember(s: Session, argv: list[bytes]) -> object:
    """ZRANDMEMBER key [count [WITHSCORES]]

    A negative count may repeat members and keeps the random order; a positive one returns
    distinct members, the whole set in rank order when it asks for at least all of them.
    """
    if len(argv) < 3:
        zset = _lookup(s, argv[1])
        if zset is None:
            return None
        return zset.ordered[random.randrange(len(zset))][1]
    count = _range_long(argv[2], -INT64_MAX, INT64_MAX)
    if len(argv) > 4 or (len(argv) == 4 and argv[3].lower() != b"withscores"):
        raise ReplyError(SYNTAX)
    withscores = len(argv) == 4
    if withscores and (count < -_LONG_HALF or count > _LONG_HALF):
        raise ReplyError("ERR value is out of range")
    zset = _lookup(s, argv[1])
    if zset is None or count == 0:
        return []
    size = len(zset)
    ordered = zset.ordered
    if count < 0:
        items: Iterable[tuple[float, bytes]] = (
            ordered[random.randrange(size)] for _ in range(-count))
    elif count >= size:
        items = reversed(ordered)  # Redis's set iterators walk from the highest rank
    else:
        items = (ordered[rank] for rank in random.sample(range(size), count))
    return _reply_items(s, items, withscores)


_HASH_MASK = (1 << 64) - 1
# ZSCAN cursors of big sets are positions in member-hash order, so a full iteration returns
# every member present from start to end even while the set changes. The hash-ordered
# index of a few recently scanned sets is kept between calls; a stale index is still
# correct (members gone are skipped, members added meanwhile may be missed, as SCAN allows).
_SCAN_INDEXES: OrderedDict[int, tuple[ZSet, list[int], list[bytes]]] = OrderedDict()
_SCAN_INDEXES_KEPT = 8


def _scan_index(zset: ZSet, fresh: bool) -> tuple[list[int], list[bytes]]:
    entry = _SCAN_INDEXES.get(id(zset))
    if entry is not None and entry[0] is zset and not fresh:
        _SCAN_INDEXES.move_to_end(id(zset))
        return entry[1], entry[2]
    pairs = sorted((hash(member) & _HASH_MASK, member) for member in zset.scores)
    hashes = [h for h, _ in pairs]
    members = [m for _, m in pairs]
    _SCAN_INDEXES[id(zset)] = (zset, hashes, members)
    _SCAN_INDEXES.move_to_end(id(zset))
    while len(_SCAN_INDEXES) > _SCAN_INDEXES_KEPT:
        _SCAN_INDEXES.popitem(last=False)
    return hashes, members


def _parse_cursor(arg: bytes) -> int:
    """A SCAN cursor as Redis's strtoul reads it: ``-1`` wraps around, ``""`` is 0."""
    match = re.fullmatch(rb"([+-]?)([0-9]*)", arg.split(b"\0", 1)[0])
    if match is None or (not match[2] and match[1]):
        raise ReplyError("ERR invalid cursor")
    value = int(match[2] or b"0")
    if value > _HASH_MASK:
        raise ReplyError("ERR invalid cursor")
    return (-value & _HASH_MASK) if match[1] == b"-" else value


@command("zscan")
def zscan(s: Session, argv: list[bytes]) -> object:
    """ZSCAN key cursor [MATCH pattern] [COUNT count]: scores come back as bulk strings."""
    cursor = _parse_cursor(argv[2])
    zset = _lookup(s, argv[1])
    if zset is None:
        return [b"0", []]
    count = 10
    pattern: bytes | None = None
    j = 3
    while j < len(argv):
        word = argv[j].lower()
        if word == b"count" and len(argv) - j >= 2:
            count = parse_int(argv[j + 1])
            if count < 1:
                raise ReplyError(SYNTAX)
        elif word == b"match" and len(argv) - j >= 2:
            pattern = argv[j + 1] if argv[j + 1] != b"*" else None
        else:
            raise ReplyError(SYNTAX)
        j += 2
    if _listpack_sized(s, zset):
        members = [member for _, member in zset.ordered]
        cursor = 0
    else:
        hashes, index = _scan_index(zset, fresh=cursor == 0)
        start = bisect_left(hashes, cursor)
        stop = min(start + count, len(hashes))
        while 0 < stop < len(hashes) and hashes[stop] == hashes[stop - 1]:
            stop += 1  # members sharing a hash go out together
        members = [m for m in index[start:stop] if m in zset.scores]
        cursor = hashes[stop - 1] + 1 if stop < len(hashes) else 0
    out: list = []
    scores = zset.scores
    for member in members:
        if pattern is None or glob_match(pattern, member):
            out.append(member)
            out.append(format_double(scores[member]))
    return [b"%d" % cursor, out]

