"""Decoding RDB value payloads into store values: the blob types (zipmap, ziplist,
intset, listpack), collections read in one go when wholly buffered, and the small element
readers the resumable parser (:mod:`kvrepl.rdb.reader`) strings together.

Readers take ``(buf, pos)`` and return ``(value, new_pos)``; decoders raise
:class:`~kvrepl.rdb.errors.Corrupt` (and readers :class:`~kvrepl.rdb.errors.Incomplete`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from kvrepl.rdb import constants as C
from kvrepl.rdb import listpack, stream, ziplist
from kvrepl.rdb.errors import Corrupt
from kvrepl.rdb.primitives import (
    parse_double,
    read_binary_double,
    read_len,
    read_ms_time,
    read_raw,
    read_str,
    read_string_double,
)
from kvrepl.store.values import Stream, StreamNack, ZSet

#: What a decoder returns for a collection with no elements (Redis skips such keys).
EMPTY = object()
#: What the parser returns for a module value skipped with ``on_module="skip"``.
SKIPPED = object()


def zipmap_value(blob: bytes) -> object:
    """HASH_ZIPMAP (9): a dict."""
    pairs = ziplist.parse_zipmap(blob)
    fields = dict(pairs)
    if len(fields) != len(pairs):
        raise Corrupt("Hash zipmap with dup elements")
    return fields


def list_ziplist_value(blob: bytes) -> object:
    """LIST_ZIPLIST (10): a deque."""
    items = ziplist.parse(blob)
    return deque(items) if items else EMPTY


def intset_value(blob: bytes) -> object:
    """SET_INTSET (11): a set of decimal texts."""
    return {b"%d" % m for m in ziplist.parse_intset(blob)}


def zset_value(items: list) -> object:
    """ZSET_ZIPLIST / ZSET_LISTPACK entries (member, score, ...): a ZSet."""
    if len(items) % 2:
        raise Corrupt("zset blob with an odd number of entries")
    scores = {}
    for i in range(0, len(items), 2):
        member = items[i]
        if type(member) is int:
            member = b"%d" % member
        score = items[i + 1]
        score = float(score) if type(score) is int else parse_double(score)
        if score != score:
            raise Corrupt("Zset with NAN score detected")
        scores[member] = score
    if len(scores) * 2 != len(items):
        raise Corrupt("Duplicate zset fields detected")
    return ZSet(scores) if scores else EMPTY


def hash_value(items: list) -> object:
    """HASH_ZIPLIST / HASH_LISTPACK entries (field, value, ...): a dict."""
    if len(items) % 2:
        raise Corrupt("hash blob with an odd number of entries")
    fields = dict(zip(items[0::2], items[1::2], strict=False))
    if len(fields) * 2 != len(items):
        raise Corrupt("Hash with dup elements")
    return fields if fields else EMPTY


def set_listpack_value(blob: bytes) -> object:
    """SET_LISTPACK (20, Redis 7.2): a set."""
    items = listpack.parse(blob)
    members = set(items)
    if len(members) != len(items):
        raise Corrupt("Set listpack with dup elements")
    return members if members else EMPTY


BLOB_DECODERS: dict[int, Callable[[bytes], object]] = {
    C.TYPE_HASH_ZIPMAP: zipmap_value,
    C.TYPE_LIST_ZIPLIST: list_ziplist_value,
    C.TYPE_SET_INTSET: intset_value,
    C.TYPE_ZSET_ZIPLIST: lambda blob: zset_value(ziplist.parse(blob, as_bytes=False)),
    C.TYPE_HASH_ZIPLIST: lambda blob: hash_value(ziplist.parse(blob)),
    C.TYPE_HASH_LISTPACK: lambda blob: hash_value(listpack.parse(blob)),
    C.TYPE_ZSET_LISTPACK: lambda blob: zset_value(listpack.parse(blob, as_bytes=False)),
    C.TYPE_SET_LISTPACK: set_listpack_value,
}


def decode_blob(rtype: int, blob: bytes) -> object:
    """The value of a blob-encoded type (9-13, 16, 17, 20); raises Corrupt, may be EMPTY."""
    return BLOB_DECODERS[rtype](blob)


def direct_set(buf: bytes, pos: int) -> tuple[object, int]:
    """A SET (type 2) read in one go (Incomplete if not all buffered)."""
    count, p = read_len(buf, pos)
    if not count:
        return EMPTY, p
    members: set = set()
    add = members.add
    for _ in range(count):
        member, p = read_str(buf, p)
        add(member)
    if len(members) != count:
        raise Corrupt("Duplicate set members detected", pos)
    return members, p


def direct_quicklist2(buf: bytes, pos: int) -> tuple[object, int]:
    """A LIST_QUICKLIST_2 (type 18) read in one go (Incomplete if not all buffered)."""
    count, p = read_len(buf, pos)
    items: deque = deque()
    for _ in range(count):
        start = p
        container, p = read_len(buf, p)
        blob, p = read_str(buf, p)
        if container == C.QUICKLIST_PACKED and blob:
            try:
                items.extend(listpack.parse(blob))
            except Corrupt as corrupt:
                raise Corrupt(corrupt.message, start) from None
        elif container == C.QUICKLIST_PLAIN and blob:
            items.append(blob)
        elif not blob:
            raise Corrupt("Quicklist integrity check failed: empty node", start)
        else:
            raise Corrupt("Quicklist integrity check failed: bad container", start)
    return (items if items else EMPTY), p


def direct_hash(buf: bytes, pos: int) -> tuple[object, int]:
    """A HASH (type 4) read in one go (Incomplete if not all buffered)."""
    count, p = read_len(buf, pos)
    if not count:
        return EMPTY, p
    fields: dict = {}
    for _ in range(count):
        field, p = read_str(buf, p)
        fields[field], p = read_str(buf, p)
    if len(fields) != count:
        raise Corrupt("Duplicate hash fields detected", pos)
    return fields, p


def direct_zset2(buf: bytes, pos: int) -> tuple[object, int]:
    """A ZSET_2 (type 5) read in one go (Incomplete if not all buffered)."""
    count, p = read_len(buf, pos)
    if not count:
        return EMPTY, p
    scores: dict = {}
    for _ in range(count):
        member_at = p
        member, p = read_str(buf, p)
        score, p = read_binary_double(buf, p)
        if score != score:
            raise Corrupt("Zset with NAN score detected", member_at)
        scores[member] = score
    if len(scores) != count:
        raise Corrupt("Duplicate zset fields detected", pos)
    return ZSet(scores), p


# Types decoded in one call when the whole value is already buffered (the common case);
# otherwise the reader's element-by-element path takes over.
DIRECT_DECODERS: dict[int, Callable[[bytes, int], tuple[object, int]]] = {
    C.TYPE_SET: direct_set,
    C.TYPE_LIST_QUICKLIST_2: direct_quicklist2,
    C.TYPE_HASH: direct_hash,
    C.TYPE_ZSET_2: direct_zset2,
}


def to_bytes(item: object) -> bytes:
    """A listpack item as bytes (integers as decimal text)."""
    return b"%d" % item if type(item) is int else item


def str_pair(buf: bytes, pos: int) -> tuple[tuple[bytes, bytes], int]:
    """Two strings: a hash field and its value."""
    field, pos = read_str(buf, pos)
    value, pos = read_str(buf, pos)
    return (field, value), pos


def zset_pair(buf: bytes, pos: int) -> tuple[tuple[bytes, float], int]:
    """A ZSET (3) member and its text score."""
    member, p = read_str(buf, pos)
    score, p = read_string_double(buf, p)
    if score != score:
        raise Corrupt("Zset with NAN score detected", pos)
    return (member, score), p


def zset2_pair(buf: bytes, pos: int) -> tuple[tuple[bytes, float], int]:
    """A ZSET_2 (5) member and its binary score."""
    member, p = read_str(buf, pos)
    score, p = read_binary_double(buf, p)
    if score != score:
        raise Corrupt("Zset with NAN score detected", pos)
    return (member, score), p


def raw_id(buf: bytes, pos: int) -> tuple[tuple[int, int], int]:
    """A 16-byte big-endian stream ID."""
    raw, p = read_raw(buf, pos, 16)
    return stream.decode_id(raw), p


def pel_entry(buf: bytes, pos: int) -> tuple[tuple, int]:
    """A group PEL entry: ID, delivery time, delivery count."""
    entry_id, p = raw_id(buf, pos)
    delivery_time, p = read_ms_time(buf, p)
    delivery_count, p = read_len(buf, p)
    return (entry_id, StreamNack(delivery_time, delivery_count)), p


def ttl_triple(buf: bytes, pos: int) -> tuple[tuple[int, bytes, bytes], int]:
    """A HASH_METADATA field: TTL, field, value."""
    ttl, p = read_len(buf, pos)
    field, p = read_str(buf, p)
    value, p = read_str(buf, p)
    return (ttl, field, value), p


def estimate_entries_read(value: Stream, group_id: tuple[int, int]) -> int:
    """streamEstimateDistanceFromFirstEverEntry, for groups of RDB 9 (type 15) streams."""
    if not value.entries_added:
        return 0
    if not value.entries and group_id <= value.last_id:
        return value.entries_added
    if group_id == value.last_id:
        return value.entries_added
    if group_id > value.last_id:
        return C.STREAM_INVALID_ENTRIES_READ
    if value.max_deleted_id == (0, 0) or value.max_deleted_id < value.first_id:
        if group_id < value.first_id:
            return value.entries_added - len(value.entries)
        if group_id == value.first_id:
            return value.entries_added - len(value.entries) + 1
    return C.STREAM_INVALID_ENTRIES_READ
