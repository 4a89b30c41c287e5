"""Set commands (Redis's ``t_set.c``).

A set is a plain ``set`` of ``bytes``. Redis 7.0 keeps a set as an *intset* (a sorted array of
integers) while every member is a 64-bit integer and there are at most
``set-max-intset-entries`` of them, and as a hash table otherwise. The encoding shows in
replies: an intset is iterated in ascending numeric order, which SMEMBERS, SSCAN, SUNION, SDIFF
and SINTER over a small integer set reveal. :func:`set_is_intset` tells which encoding Redis
would use for the current contents, and replies follow it. (A set Redis has converted
to a hash table stays one even when it shrinks again; kvrepl does not remember that history.)
Set replies are :class:`~kvrepl.protocol.replies.OrderedSet`, so RESP3's ``~`` keeps that order
too.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable
from itertools import islice

from kvrepl.commands.args import (
    LONG_MAX,
    Options,
    parse_positive_int,
    parse_range_int,
)
from kvrepl.commands.core import Session, command
from kvrepl.commands.keys import store_result
from kvrepl.commands.scan import CollectionCache, parse_scan_cursor, scan_elements, scan_reply
from kvrepl.config import Config
from kvrepl.errors import SYNTAX, ReplyError, WrongTypeError
from kvrepl.notify import GENERIC, SET, notify, replied
from kvrepl.protocol.replies import DeferredSet, OrderedSet
from kvrepl.store.encoding import set_is_intset

# A negative count asks for that many independent draws; Redis streams them until the client's
# output buffer limit stops it. kvrepl builds replies in memory, so it refuses absurd sizes.
MAX_RANDOM_REPLY = 10_000_000


# -- random members ------------------------------------------------------------------------
#
# Python sets have no random access, so a uniform pick costs a walk over the set. For SPOP and
# SRANDMEMBER on big sets kvrepl keeps a list mirroring the set: the handlers in this module
# are the only code that changes a set in place, and they keep the mirror exact (SADD appends,
# SPOP swaps out what it pops) or drop it (SREM, SMOVE).

_MIRROR_MIN = 64  # below this a walk is cheaper than keeping a mirror
_mirrors = CollectionCache(8)


def _mirror(members: set) -> list[bytes] | None:
    """The list mirroring ``members``, built on demand for big sets; None for small ones."""
    if len(members) < _MIRROR_MIN:
        return None
    items = _mirrors.get(members)
    if items is None or len(items) != len(members):
        items = list(members)
        _mirrors.put(members, items)
    return items


def _add_members(members: set, new: Iterable[bytes]) -> int:
    """Add to a stored set, keeping its mirror exact; returns how many were new."""
    items = _mirrors.get(members)
    if items is None:
        before = len(members)
        members.update(new)
        return len(members) - before
    added = 0
    for member in new:
        if member not in members:
            members.add(member)
            items.append(member)
            added += 1
    return added


def _remove_members(members: set, gone: Iterable[bytes]) -> int:
    """Remove from a stored set (its mirror is dropped); returns how many were there."""
    removed = 0
    for member in gone:
        if member in members:
            members.remove(member)
            removed += 1
    if removed:
        _mirrors.drop(members)
    return removed


def _random_member(members: Collection[bytes]) -> bytes:
    """One uniformly chosen member."""
    items = _mirror(members) if type(members) is set else None
    if items is not None:
        return items[random.randrange(len(items))]
    return next(islice(iter(members), random.randrange(len(members)), None))


def _pop_random(members: set, count: int) -> list[bytes]:
    """Remove and return ``count`` (< len) distinct uniformly chosen members."""
    items = _mirror(members)
    if items is None:
        popped = random.sample(list(members), count)
        members.difference_update(popped)
        return popped
    popped = []
    for _ in range(count):
        index = random.randrange(len(items))
        member = items[index]
        items[index] = items[-1]
        items.pop()
        members.remove(member)
        popped.append(member)
    return popped


def _sample(members: set, count: int) -> list[bytes]:
    """``count`` (< len) distinct uniformly chosen members."""
    items = _mirror(members)
    return random.sample(list(members) if items is None else items, count)


def _draws(members: set, count: int) -> list[bytes]:
    """``count`` independent uniform draws (repetitions allowed)."""
    items = _mirror(members)
    return random.choices(list(members) if items is None else items, k=count)


# -- set helpers -----------------------------------------------------------------------------


def _ordered(members: Collection[bytes], intset: bool) -> list[bytes]:
    """Members in the order Redis iterates them: ascending numbers for an intset, else the
    hash order."""
    return sorted(members, key=int) if intset else list(members)


def in_redis_order(members: Collection[bytes], config: Config) -> list[bytes]:
    """Members as Redis iterates this set (see :func:`_ordered`)."""
    return _ordered(members, set_is_intset(members, config))


def _set_reply(members: Iterable[bytes]) -> OrderedSet:
    """A set-typed reply in Redis's iteration order: an array in RESP2, ``~`` in RESP3."""
    return OrderedSet(members)


def _lookup_set(s: Session, key: bytes, *, read: bool = False) -> set | None:
    """The set at ``key``; ``read``: counted in keyspace_hits/misses even in a write
    command (the sources of SINTERSTORE & co., read with lookupKeyRead in Redis)."""
    value = s.db.lookup_read(key) if read else s.db.lookup(key)
    if value is None or type(value) is set:
        return value
    raise WrongTypeError()


# -- commands ----------------------------------------------------------------------------------


@command("sadd")
def sadd(s: Session, argv: list[bytes]) -> int:
    """SADD key member [member ...]: number of members added."""
    value = _lookup_set(s, argv[1])
    if value is None:
        value = set()
        s.db.add(argv[1], value)
    added = _add_members(value, argv[2:])
    if added:
        notify(s, SET, b"sadd", argv[1])
    s.engine.dirty += added
    return added


@command("srem")
def srem(s: Session, argv: list[bytes]) -> int:
    """SREM key member [member ...]: number of members removed; the key goes when empty."""
    value = _lookup_set(s, argv[1])
    if value is None:
        return 0
    removed = _remove_members(value, argv[2:])
    if removed:
        notify(s, SET, b"srem", argv[1])
    if not value:
        s.db.delete(argv[1])
        notify(s, GENERIC, b"del", argv[1])
    s.engine.dirty += removed
    return removed


@command("smove")
def smove(s: Session, argv: list[bytes]) -> int:
    """SMOVE source destination member."""
    src_key, dst_key, member = argv[1], argv[2], argv[3]
    src = s.db.lookup(src_key)
    dst = s.db.lookup(dst_key)
    if src is None:
        return 0
    if type(src) is not set or (dst is not None and type(dst) is not set):
        raise WrongTypeError()
    if src is dst:
        return int(member in src)
    if member not in src:
        return 0
    _remove_members(src, (member,))
    notify(s, SET, b"srem", src_key)
    if not src:
        s.db.delete(src_key)
        notify(s, GENERIC, b"del", src_key)
    s.engine.dirty += 1
    if dst is None:
        dst = set()
        s.db.add(dst_key, dst)
    added = _add_members(dst, (member,))
    if not added:  # already a member there: only the source changed
        s.engine.watches.changed_only(s.db, src_key)
    else:
        notify(s, SET, b"sadd", dst_key)
    s.engine.dirty += added
    return 1


@command("sismember")
def sismember(s: Session, argv: list[bytes]) -> int:
    value = _lookup_set(s, argv[1])
    return int(value is not None and argv[2] in value)


@command("smismember")
def smismember(s: Session, argv: list[bytes]) -> list[int]:
    value = _lookup_set(s, argv[1]) or ()
    return [int(member in value) for member in argv[2:]]


@command("scard")
def scard(s: Session, argv: list[bytes]) -> int:
    value = _lookup_set(s, argv[1])
    return 0 if value is None else len(value)


@command("smembers")
def smembers(s: Session, argv: list[bytes]) -> object:
    """SMEMBERS key: a set in RESP3 (Redis runs it as SINTER key)."""
    value = _lookup_set(s, argv[1])
    if value is None:
        return set()
    return DeferredSet(in_redis_order(value, s.engine.config))


@command("spop")
def spop(s: Session, argv: list[bytes]) -> object:
    """SPOP key [count]; propagated as SREM (one per member) or, when it empties, DEL."""
    if len(argv) == 3:
        return _spop_count(s, argv)
    if len(argv) > 3:
        raise ReplyError(SYNTAX)
    key = argv[1]
    value = _lookup_set(s, key)
    if value is None:
        return None
    member = _pop_random(value, 1)[0]
    notify(s, SET, b"spop", key)
    replied(s)
    if not value:
        s.db.delete(key)
        notify(s, GENERIC, b"del", key)
    s.engine.rewrite([b"SREM", key, member])
    s.engine.dirty += 1
    return member


def _spop_count(s: Session, argv: list[bytes]) -> object:
    key = argv[1]
    count = parse_positive_int(argv[2])
    value = _lookup_set(s, key)
    if value is None or count == 0:
        return set()
    notify(s, SET, b"spop", key)
    if count >= len(value):
        members = in_redis_order(value, s.engine.config)
        replied(s)
        s.db.delete(key)
        notify(s, GENERIC, b"del", key)
        s.engine.rewrite([b"DEL", key])
        s.engine.dirty += len(members)
        return _set_reply(members)
    popped = _pop_random(value, count)
    # Redis 7.0 emits one SREM per popped member (alsoPropagate in spopWithCountCommand);
    # several of them go out wrapped in MULTI/EXEC.
    s.engine.rewrite(*([b"SREM", key, member] for member in popped))
    s.engine.dirty += count
    return _set_reply(popped)


@command("srandmember")
def srandmember(s: Session, argv: list[bytes]) -> object:
    """SRANDMEMBER key [count]: distinct members for a positive count, draws for negative."""
    if len(argv) > 3:
        raise ReplyError(SYNTAX)
    if len(argv) == 3:
        count = parse_range_int(argv[2], -LONG_MAX, LONG_MAX)
        value = _lookup_set(s, argv[1])
        if value is None or count == 0:
            return []
        return _random_members(value, count, s.engine.config)
    value = _lookup_set(s, argv[1])
    if value is None:
        return None
    return _random_member(value)


def _random_members(value: set, count: int, config: Config) -> list[bytes]:
    if count < 0 or count == 1:
        draws = -count if count < 0 else 1
        if draws > MAX_RANDOM_REPLY:
            raise ReplyError("ERR value is out of range")
        if draws == 1:
            return [_random_member(value)]
        return _draws(value, draws)
    if count >= len(value):
        return in_redis_order(value, config)
    return _sample(value, count)


def _sets_for_intersection(s: Session, keys: list[bytes]) -> list[set] | None:
    """The sets to intersect, smallest first; None when one is missing (empty result)."""
    sets = []
    missing = False
    for key in keys:
        value = _lookup_set(s, key, read=True)
        if value is None:
            missing = True
        else:
            sets.append(value)
    if missing:
        return None
    sets.sort(key=len)
    return sets


def _intersection(sets: list[set], config: Config) -> list[bytes]:
    """SINTER's result in Redis's order: the smallest set's iteration order."""
    first = sets[0]
    return _ordered(first.intersection(*sets[1:]), set_is_intset(first, config))


@command("sinter")
def sinter(s: Session, argv: list[bytes]) -> object:
    sets = _sets_for_intersection(s, argv[1:])
    if sets is None:
        return set()
    return DeferredSet(_intersection(sets, s.engine.config))


@command("sinterstore")
def sinterstore(s: Session, argv: list[bytes]) -> int:
    sets = _sets_for_intersection(s, argv[2:])
    result = set() if sets is None else sets[0].intersection(*sets[1:])
    # A missing source: Redis deletes the destination before replying, else after.
    return store_result(s, argv[1], result, SET, b"sinterstore", reply_first=sets is not None)


@command("sintercard")
def sintercard(s: Session, argv: list[bytes]) -> int:
    """SINTERCARD numkeys key [key ...] [LIMIT limit]."""
    numkeys = parse_range_int(argv[1], 1, LONG_MAX, "ERR numkeys should be greater than 0")
    if numkeys > len(argv) - 2:
        raise ReplyError("ERR Number of keys can't be greater than number of args")
    limit = 0
    opts = Options(argv, 2 + numkeys)
    while opts:
        if opts.next_word() == b"limit" and opts:
            limit = parse_positive_int(opts.value(), "ERR LIMIT can't be negative")
        else:
            raise ReplyError(SYNTAX)
    sets = _sets_for_intersection(s, argv[2:2 + numkeys])
    if sets is None:
        return 0
    first, others = sets[0], sets[1:]
    if not limit:
        return len(first.intersection(*others))
    found = 0
    for member in first:
        if all(member in other for other in others):
            found += 1
            if found >= limit:
                break
    return found


def _union_diff(s: Session, keys: list[bytes], diff: bool) -> tuple[set, bool]:
    """SUNION / SDIFF: (result, whether Redis's result set would be an intset)."""
    sets: list[set | None] = [_lookup_set(s, key, read=True) for key in keys]
    config = s.engine.config
    if not diff:
        result = set().union(*(x for x in sets if x is not None))
        return result, set_is_intset(result, config)
    first = sets[0]
    if first is None or any(x is first for x in sets[1:]):
        return set(), True
    others = [x for x in sets[1:] if x is not None]
    result = first.difference(*others)
    # Redis's second diff algorithm first copies the whole first set into the result, which
    # then keeps the encoding the first set needed; the first algorithm adds survivors only.
    algo_one = (len(first) * (1 + len(others))) // 2
    algo_two = len(first) + sum(len(x) for x in others)
    if algo_one <= algo_two:
        return result, set_is_intset(result, config)
    return result, set_is_intset(first, config)


@command("sunion")
def sunion(s: Session, argv: list[bytes]) -> object:
    result, intset = _union_diff(s, argv[1:], diff=False)
    return _set_reply(_ordered(result, intset))


@command("sdiff")
def sdiff(s: Session, argv: list[bytes]) -> object:
    result, intset = _union_diff(s, argv[1:], diff=True)
    return _set_reply(_ordered(result, intset))


@command("sunionstore")
def sunionstore(s: Session, argv: list[bytes]) -> int:
    result, _ = _union_diff(s, argv[2:], diff=False)
    return store_result(s, argv[1], result, SET, b"sunionstore", reply_first=True)


@command("sdiffstore")
def sdiffstore(s: Session, argv: list[bytes]) -> int:
    result, _ = _union_diff(s, argv[2:], diff=True)
    return store_result(s, argv[1], result, SET, b"sdiffstore", reply_first=True)


@command("sscan")
def sscan(s: Session, argv: list[bytes]) -> list[object]:
    """SSCAN key cursor [MATCH pattern] [COUNT count]; an intset comes back in one call."""
    cursor = parse_scan_cursor(argv[2])
    value = _lookup_set(s, argv[1])
    if value is None:
        return scan_reply(0, [])
    compact = _ordered(value, True) if set_is_intset(value, s.engine.config) else None
    return scan_reply(*scan_elements(value, argv, cursor, compact))

