"""Set commands (Redis's ``t_set.c``), and the cursor machinery HSCAN and SSCAN share.

A set is a plain ``set`` of ``bytes``. Redis 7.0 keeps a set as an *intset* (a sorted array of
integers) while every member is a 64-bit integer and there are at most
``set-max-intset-entries`` of them, and as a hash table otherwise. The encoding shows in
replies: an intset is iterated in ascending numeric order, which SMEMBERS, SSCAN, SUNION, SDIFF
and SINTER over a small integer set reveal. :func:`set_is_intset` tells which encoding Redis
would use for the current contents, and RESP2 replies follow it. (A set Redis has converted
to a hash table stays one even when it shrinks again; kvrepl does not remember that history.
RESP3 set replies are Python sets, whose order kvrepl cannot choose.)
"""

from __future__ import annotations

import random
import sys
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Collection, Iterable
from itertools import islice

from kvrepl.commands.args import INT64_MAX, Options, to_int
from kvrepl.commands.core import Session, command
from kvrepl.commands.glob import glob_match
from kvrepl.config import Config
from kvrepl.errors import NOT_INTEGER, NOT_POSITIVE, SYNTAX, ReplyError, WrongTypeError

# Redis's LONG_MAX: counts are C longs.
LONG_MAX = INT64_MAX
# A negative count asks for that many independent draws; Redis streams them until the client's
# output buffer limit stops it. kvrepl builds replies in memory, so it refuses absurd sizes.
MAX_RANDOM_REPLY = 10_000_000
COUNT_RANGE = (
    f"ERR value is out of range, value must between {-LONG_MAX} and {LONG_MAX}")



def string2ll(arg: bytes) -> int | None:
    """``arg`` as a signed 64-bit integer exactly as Redis's string2ll reads it, or None.

    Unlike :func:`kvrepl.commands.args.to_int` it refuses ``-0`` (string2ll only takes a
    lone ``0``), which decides the reply of HINCRBY and whether a set is an intset.
    """
    return None if arg == b"-0" else to_int(arg)


def parse_long(arg: bytes, message: str = NOT_INTEGER) -> int:
    """getLongLongFromObjectOrReply: the integer, or ``message`` as the error."""
    value = string2ll(arg)
    if value is None:
        raise ReplyError(message)
    return value


# -- derived data kept per collection ------------------------------------------------------


class CollectionCache:
    """Data derived from a few recently used collections (scan orders, sampling mirrors).

    Entries are keyed by the collection object itself: the cache holds a strong reference so
    that ``id()`` cannot be reused while an entry lives, and it forgets collections nothing else
    references any more (a deleted key), so that it never keeps a dropped dataset in memory
    for long.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.entries: OrderedDict[int, tuple[object, object]] = OrderedDict()

    def get(self, collection: object) -> object | None:
        entry = self.entries.get(id(collection))
        if entry is None or entry[0] is not collection:
            return None
        self.entries.move_to_end(id(collection))
        return entry[1]

    def put(self, collection: object, data: object) -> None:
        self._forget_unreferenced()
        self.entries[id(collection)] = (collection, data)
        self.entries.move_to_end(id(collection))
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)

    def drop(self, collection: object) -> None:
        entry = self.entries.get(id(collection))
        if entry is not None and entry[0] is collection:
            del self.entries[id(collection)]

    def _forget_unreferenced(self) -> None:
        refcount = getattr(sys, "getrefcount", None)
        if refcount is None:  # not CPython: the LRU bound alone limits what is kept
            return
        for key, (collection, _) in list(self.entries.items()):
            # References: the entry's tuple, the loop variable and refcount()'s argument.
            if refcount(collection) <= 3:
                del self.entries[key]
            del collection


# -- SCAN cursors for collections ----------------------------------------------------------
#
# Redis walks its hash table in reverse-binary bucket order, so an element present for the
# whole scan is returned at least once even across rehashing. Python's dict and set expose no
# bucket positions, so kvrepl orders a collection by a stable per-process hash of its elements
# instead: the cursor is a point on that hash line, and a call returns the elements whose hash
# lies at or after it. The order is computed at cursor 0 (O(n log n), once per scan) and
# cached for the collection object; any later ordering of the same collection agrees with it,
# so an evicted cache entry is simply rebuilt. Elements added meanwhile may be missed and
# removed ones are skipped, which is exactly what SCAN promises.

_HASH_OFFSET = 1 << 63
# Cursors stay below 2**63: Redis prints cursors as signed 64-bit numbers.
_CURSOR_END = 1 << 63
_scan_orders = CollectionCache(8)


def _mark(element: bytes) -> int:
    """An element's cursor position: its hash mapped monotonically onto [0, 2**63)."""
    return (hash(element) + _HASH_OFFSET) >> 1


def scan_collection(
    collection: Collection[bytes], cursor: int, count: int
) -> tuple[int, list[bytes]]:
    """One step of a SCAN over a hash table encoded collection: (next cursor, elements).

    Returns at least ``count`` elements unless the scan ends (next cursor 0). Every element
    present from the call with cursor 0 to the call that returns cursor 0 is returned at least
    once; an element may be returned more than once only if it was removed and added back.
    """
    if cursor == 0 and len(collection) <= count:
        return 0, list(collection)
    # A scan starts at cursor 0: rebuild there, so that the order covers every element present
    # since the start of any scan still in progress.
    if cursor >= _CURSOR_END:
        return 0, []
    elements = None if cursor == 0 else _scan_orders.get(collection)
    if elements is None:
        elements = sorted(collection, key=hash)
        _scan_orders.put(collection, elements)
    total = len(elements)
    # mark(e) >= cursor  <=>  hash(e) >= 2 * cursor - offset
    start = bisect_left(elements, 2 * cursor - _HASH_OFFSET, key=hash)
    end = min(start + count, total)
    # Never split elements that share a cursor position: the next cursor would skip some.
    while start < end < total and _mark(elements[end]) == _mark(elements[end - 1]):
        end += 1
    found = [e for e in elements[start:end] if e in collection]
    return (_mark(elements[end]) if end < total else 0), found


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


def parse_scan_cursor(arg: bytes) -> int:
    """The cursor argument as ``strtoul`` reads it (parseScanCursorOrReply): an unsigned long;
    a leading ``-`` wraps around, as in C."""
    text = arg
    negative = False
    if text[:1] in (b"+", b"-"):
        negative = text[:1] == b"-"
        text = text[1:]
        if not text:
            raise ReplyError("ERR invalid cursor")
    elif not text:
        return 0  # strtoul converts nothing and stops at the end: Redis reads 0
    digits = text.lstrip(b"0")
    if not text.isdigit() or len(digits) > 20:
        raise ReplyError("ERR invalid cursor")
    value = int(digits or b"0")
    if value >= 1 << 64:
        raise ReplyError("ERR invalid cursor")
    return (-value) % (1 << 64) if negative else value


def parse_scan_options(argv: list[bytes], start: int) -> tuple[int, bytes | None]:
    """COUNT and MATCH of HSCAN/SSCAN/ZSCAN (scanGenericCommand): (count, pattern or None)."""
    count = 10
    pattern: bytes | None = None
    i = start
    while i < len(argv):
        word = argv[i].lower()
        if word == b"count" and i + 1 < len(argv):
            count = parse_long(argv[i + 1])
            if count < 1:
                raise ReplyError(SYNTAX)
        elif word == b"match" and i + 1 < len(argv):
            pattern = None if argv[i + 1] == b"*" else argv[i + 1]
        else:
            raise ReplyError(SYNTAX)
        i += 2
    return count, pattern


def scan_reply(cursor: int, items: list[bytes]) -> list[object]:
    """The two-element SCAN reply: cursor as a bulk string, then the items."""
    return [b"%d" % cursor, items]


# -- set helpers -----------------------------------------------------------------------------


def set_is_intset(members: Collection[bytes], config: Config) -> bool:
    """True when Redis 7.0 would encode a set with these members as an intset."""
    limit = min(config.set_max_intset_entries, 1 << 30)
    return len(members) <= limit and all(string2ll(m) is not None for m in members)


def in_redis_order(members: Collection[bytes], config: Config) -> list[bytes]:
    """Members as Redis iterates them: ascending numbers for an intset, else hash order."""
    if set_is_intset(members, config):
        return sorted(members, key=int)
    return list(members)


def _set_reply(s: Session, members: Iterable[bytes]) -> object:
    """A set-typed reply: a RESP3 set, or an array in the given order for RESP2."""
    return set(members) if s.resp3 else list(members)


def _lookup_set(s: Session, key: bytes) -> set | None:
    value = s.db.lookup(key)
    if value is None or type(value) is set:
        return value
    raise WrongTypeError()


def _parse_count(arg: bytes) -> int:
    """A count in [-LONG_MAX, LONG_MAX] (getRangeLongFromObjectOrReply)."""
    count = parse_long(arg)
    if count < -LONG_MAX:
        raise ReplyError(COUNT_RANGE)
    return count


def _parse_positive(arg: bytes, message: str) -> int:
    """getPositiveLongFromObjectOrReply: every failure answers ``message``."""
    value = string2ll(arg)
    if value is None or value < 0:
        raise ReplyError(message)
    return value


def _store(s: Session, dst: bytes, result: set) -> int:
    """The *STORE commands' epilogue: replace ``dst`` with ``result``, or delete it if empty."""
    if result:
        s.db.set(dst, result)
        s.engine.dirty += 1
        return len(result)
    if s.db.delete(dst):
        s.engine.dirty += 1
    return 0


# -- commands ----------------------------------------------------------------------------------


@command("sadd")
def sadd(s: Session, argv: list[bytes]) -> int:
    """SADD key member [member ...]: number of members added."""
    value = _lookup_set(s, argv[1])
    if value is None:
        value = set()
        s.db.add(argv[1], value)
    added = _add_members(value, argv[2:])
    s.engine.dirty += added
    return added


@command("srem")
def srem(s: Session, argv: list[bytes]) -> int:
    """SREM key member [member ...]: number of members removed; the key goes when empty."""
    value = _lookup_set(s, argv[1])
    if value is None:
        return 0
    removed = _remove_members(value, argv[2:])
    if not value:
        s.db.delete(argv[1])
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
    if not src:
        s.db.delete(src_key)
    s.engine.dirty += 1
    if dst is None:
        dst = set()
        s.db.add(dst_key, dst)
    s.engine.dirty += _add_members(dst, (member,))
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
    return _set_reply(s, in_redis_order(value, s.engine.config))


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
    if not value:
        s.db.delete(key)
    s.engine.rewrite([b"SREM", key, member])
    s.engine.dirty += 1
    return member


def _spop_count(s: Session, argv: list[bytes]) -> object:
    key = argv[1]
    count = _parse_positive(argv[2], NOT_POSITIVE)
    value = _lookup_set(s, key)
    if value is None or count == 0:
        return set()
    if count >= len(value):
        members = in_redis_order(value, s.engine.config)
        s.db.delete(key)
        s.engine.rewrite([b"DEL", key])
        s.engine.dirty += len(members)
        return _set_reply(s, members)
    popped = _pop_random(value, count)
    # Redis 7.0 emits one SREM per popped member (alsoPropagate in spopWithCountCommand);
    # several of them go out wrapped in MULTI/EXEC.
    s.engine.rewrite(*([b"SREM", key, member] for member in popped))
    s.engine.dirty += count
    return _set_reply(s, popped)


@command("srandmember")
def srandmember(s: Session, argv: list[bytes]) -> object:
    """SRANDMEMBER key [count]: distinct members for a positive count, draws for negative."""
    if len(argv) > 3:
        raise ReplyError(SYNTAX)
    if len(argv) == 3:
        count = _parse_count(argv[2])
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
        value = _lookup_set(s, key)
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
    result = first.intersection(*sets[1:])
    if set_is_intset(first, config):
        return sorted(result, key=int)
    return list(result)


@command("sinter")
def sinter(s: Session, argv: list[bytes]) -> object:
    sets = _sets_for_intersection(s, argv[1:])
    if sets is None:
        return set()
    return _set_reply(s, _intersection(sets, s.engine.config))


@command("sinterstore")
def sinterstore(s: Session, argv: list[bytes]) -> int:
    sets = _sets_for_intersection(s, argv[2:])
    result = set() if sets is None else sets[0].intersection(*sets[1:])
    return _store(s, argv[1], result)


@command("sintercard")
def sintercard(s: Session, argv: list[bytes]) -> int:
    """SINTERCARD numkeys key [key ...] [LIMIT limit]."""
    numkeys = string2ll(argv[1])
    if numkeys is None or numkeys < 1:
        raise ReplyError("ERR numkeys should be greater than 0")
    if numkeys > len(argv) - 2:
        raise ReplyError("ERR Number of keys can't be greater than number of args")
    limit = 0
    opts = Options(argv, 2 + numkeys)
    while opts:
        if opts.next_word() == b"limit" and opts:
            limit = _parse_positive(opts.value(), "ERR LIMIT can't be negative")
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
    sets: list[set | None] = [_lookup_set(s, key) for key in keys]
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


def _ordered(result: set, intset: bool) -> list[bytes]:
    return sorted(result, key=int) if intset else list(result)


@command("sunion")
def sunion(s: Session, argv: list[bytes]) -> object:
    result, intset = _union_diff(s, argv[1:], diff=False)
    return _set_reply(s, _ordered(result, intset))


@command("sdiff")
def sdiff(s: Session, argv: list[bytes]) -> object:
    result, intset = _union_diff(s, argv[1:], diff=True)
    return _set_reply(s, _ordered(result, intset))


@command("sunionstore")
def sunionstore(s: Session, argv: list[bytes]) -> int:
    result, _ = _union_diff(s, argv[2:], diff=False)
    return _store(s, argv[1], result)


@command("sdiffstore")
def sdiffstore(s: Session, argv: list[bytes]) -> int:
    result, _ = _union_diff(s, argv[2:], diff=True)
    return _store(s, argv[1], result)


@command("sscan")
def sscan(s: Session, argv: list[bytes]) -> list[object]:
    """SSCAN key cursor [MATCH pattern] [COUNT count]; an intset comes back in one call."""
    cursor = parse_scan_cursor(argv[2])
    value = _lookup_set(s, argv[1])
    if value is None:
        return scan_reply(0, [])
    count, pattern = parse_scan_options(argv, 3)
    if set_is_intset(value, s.engine.config):
        cursor, members = 0, sorted(value, key=int)
    else:
        cursor, members = scan_collection(value, cursor, count)
    if pattern is not None:
        members = [m for m in members if glob_match(pattern, m)]
    return scan_reply(cursor, members)

