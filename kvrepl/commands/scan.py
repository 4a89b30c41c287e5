"""What SCAN, HSCAN, SSCAN and ZSCAN share (Redis's ``scanGenericCommand`` and
``parseScanCursorOrReply``): the cursor, the options, the reply, and cursors over one
collection.

Cursors over a collection
-------------------------
Redis walks its hash table in reverse-binary bucket order, so an element present for the
whole scan is returned at least once even across rehashing. Python's dict and set expose no
bucket positions, so kvrepl orders a collection by a stable per-process hash of its elements
instead: the cursor is a point on that hash line, and a call returns the elements whose hash
lies at or after it. The order is computed at cursor 0 (O(n log n), once per scan) and
cached for the collection object; any later ordering of the same collection agrees with it,
so an evicted cache entry is simply rebuilt. Elements added meanwhile may be missed and
removed ones are skipped, which is exactly what SCAN promises. Collections Redis keeps
compact (listpack, intset) are returned whole in one call, as Redis does.

SCAN itself walks the keyspace with snapshots instead (see :mod:`kvrepl.commands.keys`).
"""

from __future__ import annotations

import re
import sys
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Collection

from kvrepl.commands.args import parse_int
from kvrepl.commands.glob import glob_match
from kvrepl.errors import SYNTAX, ReplyError

INVALID_CURSOR = "ERR invalid cursor"
_ULONG_MASK = (1 << 64) - 1
# What strtoul reads as a whole C string (the argument up to its first NUL).
_CURSOR = re.compile(rb"([+-]?)([0-9]*)")


def parse_scan_cursor(arg: bytes) -> int:
    """The cursor as ``parseScanCursorOrReply`` reads it with ``strtoul``: an unsigned long;
    a leading ``-`` wraps around as in C, ``""`` is 0, and the C string ends at a NUL byte
    (``"1\\0x"`` is 1). Spaces, a lone sign and values past 2**64 - 1 are invalid."""
    match = _CURSOR.fullmatch(arg.split(b"\0", 1)[0])
    if match is None or (match[1] and not match[2]):
        raise ReplyError(INVALID_CURSOR)
    value = int(match[2] or b"0")
    if value > _ULONG_MASK:
        raise ReplyError(INVALID_CURSOR)
    return (-value & _ULONG_MASK) if match[1] == b"-" else value


def parse_scan_options(argv: list[bytes], start: int, keyspace: bool = False
                       ) -> tuple[int, bytes | None, bytes | None]:
    """COUNT, MATCH and (for the keyspace SCAN only) TYPE, as ``scanGenericCommand`` reads
    them: ``(count, pattern or None for "*", lowercase type name or None)``."""
    count = 10
    pattern: bytes | None = None
    typename: bytes | None = None
    i = start
    while i < len(argv):
        word = argv[i].lower()
        if i + 1 >= len(argv):
            raise ReplyError(SYNTAX)
        if word == b"count":
            count = parse_int(argv[i + 1])
            if count < 1:
                raise ReplyError(SYNTAX)
        elif word == b"match":
            pattern = None if argv[i + 1] == b"*" else argv[i + 1]
        elif word == b"type" and keyspace:
            typename = argv[i + 1].lower()
        else:
            raise ReplyError(SYNTAX)
        i += 2
    return count, pattern, typename


def scan_reply(cursor: int, items: list) -> list[object]:
    """The two-element SCAN reply: the cursor as a bulk string, then the items."""
    return [b"%d" % cursor, items]


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


# -- cursors over one collection (see the module docstring) --------------------------------

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


def scan_elements(collection: Collection[bytes], argv: list[bytes], cursor: int,
                  compact: list[bytes] | None) -> tuple[int, list[bytes]]:
    """HSCAN / SSCAN / ZSCAN after the key was found: parse the options at ``argv[3:]`` and
    return ``(next cursor, elements matching MATCH)``. ``compact`` is the collection in
    Redis's order when Redis keeps it compact (listpack, intset): then all of it comes back
    at once with cursor 0."""
    count, pattern, _ = parse_scan_options(argv, 3)
    if compact is not None:
        cursor, elements = 0, compact
    else:
        cursor, elements = scan_collection(collection, cursor, count)
    if pattern is not None:
        elements = [e for e in elements if glob_match(pattern, e)]
    return cursor, elements
