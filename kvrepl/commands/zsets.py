"""Sorted set commands (Redis 7.0's ``t_zset.c``), replies and errors as Redis gives them.

Values are :class:`kvrepl.store.values.ZSet`. Ranges are bisections on its ``ordered`` index,
so range reads and removals cost O(log n + m). Scores are parsed the way Redis parses them
(``strtod`` with Redis's own checks), which is stricter in some places and laxer in others
than Python's ``float()``: see :func:`kvrepl.commands.args.string2d` and :func:`_range_bound`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from functools import partial

from kvrepl.commands.args import (
    LONG_MAX,
    leading_flags,
    parse_choice,
    parse_double,
    parse_int,
    parse_mpop,
    parse_positive_int,
    parse_range_int,
    parse_timeout,
    rank_range,
    strtod,
)
from kvrepl.commands.core import Block, Session, command
from kvrepl.commands.keys import store_result
from kvrepl.commands.scan import parse_scan_cursor, scan_elements, scan_reply
from kvrepl.errors import MIN_MAX_NOT_FLOAT, MIN_MAX_NOT_STRING, SYNTAX, ReplyError, WrongTypeError
from kvrepl.notify import GENERIC, ZSET, notify, replied
from kvrepl.protocol.replies import NULL_ARRAY, DeferredArray, format_double
from kvrepl.store.encoding import zset_is_listpack
from kvrepl.store.values import ZSet

NAN_SCORE = "ERR resulting score is not a number (NaN)"
_SUM, _MIN, _MAX = 0, 1, 2
_AGGREGATES = {b"sum": _SUM, b"min": _MIN, b"max": _MAX}
_ZADD_FLAGS = frozenset((b"nx", b"xx", b"gt", b"lt", b"ch", b"incr"))
_UNION, _INTER, _DIFF = 0, 1, 2
_STORE_EVENTS = {_UNION: b"zunionstore", _INTER: b"zinterstore", _DIFF: b"zdiffstore"}
_RANK, _SCORE, _LEX = 0, 1, 2
_ENDS = {b"min": False, b"max": True}  # ZMPOP's MIN|MAX: "pop the highest"

# -- parsing -----------------------------------------------------------------------------

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
    parsed = strtod(text)
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


# -- helpers ------------------------------------------------------------------------------


def _lookup(s: Session, key: bytes, *, read: bool = False) -> ZSet | None:
    """The sorted set at ``key``; ``read``: counted in keyspace_hits/misses even in a write
    command (ZRANGESTORE's source, read with lookupKeyRead in Redis)."""
    value = s.db.lookup_read(key) if read else s.db.lookup(key)
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


def _kept_score(s: Session, size: int, member: bytes, score: float) -> float:
    """The score a set of ``size`` members keeps: a listpack stores -0 as the integer 0.

    kvrepl does not track encodings; a set within the listpack limits is taken for one.
    """
    if score == 0 and size <= s.engine.config.zset_max_listpack_entries and (
            len(member) <= s.engine.config.zset_max_listpack_value):
        return 0.0
    return score


def _store(s: Session, dst: bytes, zset: ZSet, event: bytes) -> int:
    """Store a command's result at ``dst`` as Redis does (``setKey``, or delete when empty).

    Redis turns a small result into a listpack, where a -0 score becomes 0.
    """
    if zset and zset_is_listpack(zset, s.engine.config) and any(
            score == 0 and math.copysign(1.0, score) < 0 for score in zset.scores.values()):
        zset = ZSet({member: score + 0.0 for member, score in zset.scores.items()})
    return store_result(s, dst, zset, ZSET, event, reply_first=True)


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


def _zadd_generic(incr: bool, s: Session, argv: list[bytes]) -> object:
    """ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member [score member ...]; ZINCRBY key
    increment member is ZADD INCR to Redis, option parsing included."""
    if len(argv) == 4 and argv[2].lower() not in _ZADD_FLAGS:
        # One pair and no option, the usual ZADD: nothing to parse but the score.
        if not incr:
            return zadd_one(s, argv[1], parse_double(argv[2]), argv[3])
        return zadd_scores(s, argv[1], [parse_double(argv[2])], [argv[3]], incr=incr)
    flags, index = leading_flags(argv, 2, _ZADD_FLAGS)
    nx = xx = gt = lt = ch = False
    if flags:
        nx, xx, gt, lt, ch = (flag in flags for flag in (b"nx", b"xx", b"gt", b"lt", b"ch"))
        incr = incr or b"incr" in flags
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
    scores = [parse_double(argv[i]) for i in range(index, len(argv), 2)]
    return zadd_scores(s, argv[1], scores, argv[index + 1::2], nx, xx, gt, lt, ch, incr)


def zadd_one(s: Session, key: bytes, score: float, member: bytes) -> int:
    """``ZADD key score member`` (no option) once the score is parsed: what
    :func:`zadd_scores` does for one pair, without its lists and option tests (ZADD's and
    GEOADD's usual form, a hot path). The reply: 1 when ``member`` is new."""
    db = s.db
    zset = db.lookup(key)
    if type(zset) is ZSet:
        current = zset.scores.get(member)
        if current is None:
            if score == 0:
                score = _kept_score(s, len(zset) + 1, member, score)
            zset.add(member, score)
            added = 1
        elif score == current:
            return 0
        else:
            if score == 0:
                score = _kept_score(s, len(zset), member, score)
            zset.add(member, score)
            added = 0
    elif zset is None:
        zset = ZSet()
        zset.add(member, _kept_score(s, 1, member, score) if score == 0 else score)
        db.add(key, zset)
        added = 1
    else:
        raise WrongTypeError()
    engine = s.engine
    engine.dirty += 1
    engine.replying = s  # replied(s), inlined
    if engine.notify_classes & ZSET:
        engine.notify_keyspace_event(b"zadd", key, db.id)
    return added


def zadd_scores(s: Session, key: bytes, scores: list[float], members: list[bytes],
                nx: bool = False, xx: bool = False, gt: bool = False, lt: bool = False,
                ch: bool = False, incr: bool = False) -> object:
    """ZADD's work once its arguments are parsed and checked (``zaddGenericCommand`` from
    the key lookup on): set ``members`` to ``scores``; the reply ZADD gives. GEOADD, which
    is ZADD to Redis, comes here with the scores it computed."""
    zset = s.db.lookup(key)  # _lookup, inlined: ZADD and GEOADD are hot paths
    if zset is not None and type(zset) is not ZSet:
        raise WrongTypeError()
    added = updated = processed = 0
    score = 0.0
    if zset is not None or not xx:
        created = zset is None
        if created:
            zset = ZSet()
        current_scores = zset.scores
        for score, member in zip(scores, members):  # noqa: B905 - as many, always
            current = current_scores.get(member)
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
        if added or updated:
            replied(s)
            notify(s, ZSET, b"zincr" if incr else b"zadd", key)
    if incr:
        return score if processed else None
    return added + updated if ch else added


command("zadd")(partial(_zadd_generic, False))
command("zincrby")(partial(_zadd_generic, True))


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
    if deleted:
        notify(s, ZSET, b"zrem", key)
        if not zset:
            notify(s, GENERIC, b"del", key)
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


def _zrank(reverse: bool, s: Session, argv: list[bytes]) -> object:
    """ZRANK / ZREVRANK key member"""
    zset = _lookup(s, argv[1])
    if zset is None:
        return None
    rank = zset.rank(argv[2])
    if rank is None or not reverse:
        return rank
    return len(zset) - 1 - rank


command("zrank")(partial(_zrank, False))
command("zrevrank")(partial(_zrank, True))


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


def _zrange_generic(first: int, store: bool, rangetype: int | None, reverse: bool | None,
                    s: Session, argv: list[bytes]) -> object:
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

    zset = _lookup(s, key, read=store)
    items: Iterable[tuple[float, bytes]] = ()
    if zset is not None:
        size = len(zset)
        if rangetype == _RANK:
            span = rank_range(start, end, size)
            if span is not None:
                start, end = span
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
        return _store(s, argv[1], ZSet({member: score for score, member in items}),
                      b"zrangestore")
    reply = _reply_items(s, items, withscores)
    if zset is not None and (rangetype != _RANK or not reply):
        # zrangeResultBeginClient: the length is known ahead only for a rank range that
        # is not empty.
        return DeferredArray(reply)
    return reply


for _name, _variant in {
    # key start stop [BYSCORE|BYLEX] [REV] [LIMIT offset count] [WITHSCORES]
    "zrange": (1, False, None, None),
    # dst src min max [BYSCORE|BYLEX] [REV] [LIMIT offset count]
    "zrangestore": (2, True, None, None),
    "zrevrange": (1, False, _RANK, True),  # key start stop [WITHSCORES]
    # key min max (max min when REV) [WITHSCORES] [LIMIT offset count]
    "zrangebyscore": (1, False, _SCORE, False),
    "zrevrangebyscore": (1, False, _SCORE, True),
    "zrangebylex": (1, False, _LEX, False),  # key min max [LIMIT offset count]
    "zrevrangebylex": (1, False, _LEX, True),  # key max min [LIMIT offset count]
}.items():
    command(_name)(partial(_zrange_generic, *_variant))


def _zremrange(rangetype: int, s: Session, argv: list[bytes]) -> object:
    """ZREMRANGEBYRANK key start stop, ZREMRANGEBYSCORE / ZREMRANGEBYLEX key min max"""
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
        span = rank_range(start, end, size)
        if span is None:
            return 0
        lo, hi = span[0], span[1] + 1
    elif rangetype == _SCORE:
        lo, hi = _score_span(zset, *bounds)
    else:
        lo, hi = _lex_span(zset, lex_low, lex_high)
    deleted = zset.remove_ranks(lo, hi)
    if deleted:
        notify(s, ZSET, _ZREMRANGE_EVENTS[rangetype], key)
    if not zset:
        s.db.delete(key)
        notify(s, GENERIC, b"del", key)
    s.engine.dirty += deleted
    return deleted


_ZREMRANGE_EVENTS = {_RANK: b"zremrangebyrank", _SCORE: b"zremrangebyscore",
                     _LEX: b"zremrangebylex"}
command("zremrangebyrank")(partial(_zremrange, _RANK))
command("zremrangebyscore")(partial(_zremrange, _SCORE))
command("zremrangebylex")(partial(_zremrange, _LEX))


# -- pops, blocking pops --------------------------------------------------------------------


def _pop(s: Session, key: bytes, zset: ZSet, highest: bool, count: int,
         emit_key: bool, nested: bool) -> object:
    """Pop ``count`` members off ``zset`` (``genericZpopCommand`` after the key was found).

    The reply is flat, nested (``[[member, score], ...]``) and/or led by the key, per the
    caller. Deletes the key when it empties and counts one change per member.
    """
    popped = [zset.pop_rank(-1 if highest else 0) for _ in range(min(count, len(zset)))]
    if popped:
        notify(s, ZSET, b"zpopmax" if highest else b"zpopmin", key)
    if not zset:
        s.db.delete(key)
        notify(s, GENERIC, b"del", key)
    s.engine.dirty += len(popped)
    if nested:
        items: list = [[member, score] for score, member in popped]
        return [key, items] if emit_key else items
    flat: list = [key] if emit_key else []
    for score, member in popped:
        flat.append(member)
        flat.append(score)
    return flat


def _zpop(highest: bool, s: Session, argv: list[bytes]) -> object:
    """ZPOPMIN / ZPOPMAX key [count]"""
    if len(argv) > 3:
        raise ReplyError(SYNTAX)
    count = parse_positive_int(argv[2]) if len(argv) == 3 else -1
    # RESP3 nests the pairs only when a count was given.
    nested = s.resp3 and count != -1
    zset = _lookup(s, argv[1])
    if zset is None or count == 0:
        return []
    return _pop(s, argv[1], zset, highest, 1 if count == -1 else count, False, nested)


command("zpopmin")(partial(_zpop, False))
command("zpopmax")(partial(_zpop, True))


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
        if timeout is not None:
            # blockingGenericZpopCommand looks the key up, then genericZpopCommand again:
            # two accesses (LFU counter)
            s.db.lookup(key)
        reply = _pop(s, key, value, highest, 1 if count == -1 else count, True, nested)
        name = b"ZPOPMAX" if highest else b"ZPOPMIN"
        if count == -1:
            s.engine.rewrite([name, key])
        else:
            s.engine.rewrite([name, key, b"%d" % min(count, size)])
        s.engine.watches.changed_only(s.db, key)  # the other keys were only looked at
        return reply
    if timeout is None:
        return NULL_ARRAY
    return Block(keys=list(keys), timeout=timeout, timeout_reply=NULL_ARRAY)


def _bzpop(highest: bool, s: Session, argv: list[bytes]) -> object:
    """BZPOPMIN / BZPOPMAX key [key ...] timeout; served as ``[key, member, score]``."""
    timeout = parse_timeout(argv[-1], s.engine.keyspace.now_ms())
    return _pop_first(s, argv[1:-1], highest, -1, False, timeout)


command("bzpopmin")(partial(_bzpop, False))
command("bzpopmax")(partial(_bzpop, True))


def _zmpop(block: bool, s: Session, argv: list[bytes]) -> object:
    """ZMPOP numkeys key [key ...] MIN|MAX [COUNT count], BZMPOP timeout numkeys ...:
    ``[key, [[member, score], ...]]``."""
    numkeys_index = 2 if block else 1
    keys, highest, count = parse_mpop(argv, numkeys_index, _ENDS)
    timeout = parse_timeout(argv[1], s.engine.keyspace.now_ms()) if block else None
    return _pop_first(s, keys, highest, count, True, timeout)


command("zmpop")(partial(_zmpop, False))
command("bzmpop")(partial(_zmpop, True))


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


def _zsetop(name: str, op: int, store: bool, card_only: bool, s: Session, argv: list[bytes]
            ) -> object:
    """``zunionInterDiffGenericCommand``: parse, combine, then reply, or store at ``argv[1]``
    (the STORE forms, whose ``numkeys`` comes after it)."""
    numkeys_index = 2 if store else 1
    dst = argv[1] if store else None
    setnum = parse_int(argv[numkeys_index])
    if setnum < 1:
        raise ReplyError(f"ERR at least 1 input key is needed for '{name}' command")
    if setnum > len(argv) - (numkeys_index + 1):
        raise ReplyError(SYNTAX)
    sources: list[object] = []
    for key in argv[numkeys_index + 1:numkeys_index + 1 + setnum]:
        value = s.db.lookup_read(key)  # counted in ZUNIONSTORE & co. too, as in Redis
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
            weights = [parse_double(arg, "ERR weight value is not a float")
                       for arg in argv[j + 1:j + 1 + setnum]]
            j += 1 + setnum
        elif op != _DIFF and not card_only and remaining >= 2 and word == b"aggregate":
            aggregate = parse_choice(argv[j + 1], _AGGREGATES)
            j += 2
        elif dst is None and not card_only and word == b"withscores":
            withscores = True
            j += 1
        elif card_only and remaining >= 2 and word == b"limit":
            limit = parse_positive_int(argv[j + 1], "ERR LIMIT can't be negative")
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
        return _store(s, dst, zset, _STORE_EVENTS[op])
    return _reply_items(s, zset.ordered, withscores)


for _name, _variant in {
    # numkeys key [key ...] [WEIGHTS w ...] [AGGREGATE SUM|MIN|MAX] [WITHSCORES]
    "zunion": (_UNION, False, False),
    "zinter": (_INTER, False, False),
    "zdiff": (_DIFF, False, False),  # numkeys key [key ...] [WITHSCORES]
    # dst numkeys key [key ...] [WEIGHTS w ...] [AGGREGATE SUM|MIN|MAX]
    "zunionstore": (_UNION, True, False),
    "zinterstore": (_INTER, True, False),
    "zdiffstore": (_DIFF, True, False),  # dst numkeys key [key ...]
    "zintercard": (_INTER, False, True),  # numkeys key [key ...] [LIMIT limit]
}.items():
    command(_name)(partial(_zsetop, _name, *_variant))


# -- ZRANDMEMBER, ZSCAN ------------------------------------------------------------------------

_LONG_HALF = LONG_MAX // 2


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
    count = parse_range_int(argv[2], -LONG_MAX, LONG_MAX)
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


@command("zscan")
def zscan(s: Session, argv: list[bytes]) -> object:
    """ZSCAN key cursor [MATCH pattern] [COUNT count]: scores come back as bulk strings."""
    cursor = parse_scan_cursor(argv[2])
    zset = _lookup(s, argv[1])
    if zset is None:
        return scan_reply(0, [])
    scores = zset.scores
    compact = None
    if zset_is_listpack(zset, s.engine.config):
        compact = [member for _, member in zset.ordered]
    cursor, members = scan_elements(scores, argv, cursor, compact)
    out: list = []
    for member in members:
        out.append(member)
        out.append(format_double(scores[member]))
    return scan_reply(cursor, out)
