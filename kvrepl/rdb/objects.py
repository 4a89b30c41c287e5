"""Decoding RDB value payloads into store values: the blob types (zipmap, ziplist,
intset, listpack), collections read in one go when wholly buffered, and the small element
readers the resumable parser (:mod:`kvrepl.rdb.reader`) strings together.

Readers take ``(buf, pos)`` and return ``(value, new_pos)``; decoders raise
:class:`~kvrepl.rdb.errors.Corrupt` (and readers :class:`~kvrepl.rdb.errors.Incomplete`).
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable
from math import isnan
from operator import itemgetter

from kvrepl.rdb import constants as C
from kvrepl.rdb import listpack, stream, ziplist
from kvrepl.rdb.errors import Corrupt, Incomplete
from kvrepl.rdb.primitives import (
    parse_double,
    read_binary_double,
    read_len,
    read_ms_time,
    read_raw,
    read_str,
    read_string_double,
)
from kvrepl.store.values import StreamNack, ZSet

_unpack_double = struct.Struct("<d").unpack_from

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
    return new_zset(scores) if scores else EMPTY


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


# Collections whose elements all have the same 6-bit lengths (fixed-size ids, counters,
# keys...) are cut by struct at C speed, once one strided slice has shown every length byte
# to be the same. They return None when that is not so, and also when the result would be
# an error (a duplicate, a NaN score): the general loop then finds and reports it.

_STRUCTS: dict[str, struct.Struct] = {}


def _struct(fmt: str) -> struct.Struct:
    compiled = _STRUCTS.get(fmt)
    if compiled is None:
        if len(_STRUCTS) > 256:
            _STRUCTS.clear()
        compiled = _STRUCTS[fmt] = struct.Struct(fmt)
    return compiled


def _same_bytes(buf: bytes, start: int, end: int, stride: int, byte: int, count: int) -> bool:
    return buf[start:end:stride] == bytes((byte,)) * count


def _uniform_set(buf: bytes, p: int, count: int) -> set | None:
    if count < 8 or p >= len(buf):
        return None
    n = buf[p]
    stride = 1 + n
    end = p + count * stride
    if n >= 64 or end > len(buf) or not _same_bytes(buf, p, end, stride, n, count):
        return None
    members = set(map(itemgetter(0), _struct(f"<x{n}s").iter_unpack(memoryview(buf)[p:end])))
    return members if len(members) == count else None


def _uniform_hash(buf: bytes, p: int, count: int) -> dict | None:
    if count < 8 or p + 64 >= len(buf):
        return None
    n = buf[p]
    if n >= 64:
        return None
    m = buf[p + 1 + n]
    stride = 2 + n + m
    end = p + count * stride
    if (m >= 64 or end > len(buf) or not _same_bytes(buf, p, end, stride, n, count)
            or not _same_bytes(buf, p + 1 + n, end, stride, m, count)):
        return None
    fields = dict(_struct(f"<x{n}sx{m}s").iter_unpack(memoryview(buf)[p:end]))
    return fields if len(fields) == count else None


def _uniform_zset2(buf: bytes, p: int, count: int) -> dict | None:
    if count < 8 or p >= len(buf):
        return None
    n = buf[p]
    stride = 9 + n
    end = p + count * stride
    if n >= 64 or end > len(buf) or not _same_bytes(buf, p, end, stride, n, count):
        return None
    scores = dict(_struct(f"<x{n}sd").iter_unpack(memoryview(buf)[p:end]))
    if len(scores) != count or any(map(isnan, scores.values())):
        return None
    return scores


# The fill functions parse up to ``count`` elements into a collection, those stored with
# a 6-bit length inline (no call per element) while the longest such element still fits in
# the buffer; anything else, and anything near the buffer's end, through read_str (bounds
# checks). They stop before the first element not wholly buffered and return
# ``(pos, elements_done, buffer_length_needed)``: the direct decoders (the whole value is
# buffered: one call) and the resumable tasks of the reader (a value spanning chunks) share
# them. Corrupt data raises Corrupt.

def fill_set(buf: bytes, p: int, count: int, members: set) -> tuple[int, int, int]:
    """Members of a SET (type 2) into ``members``."""
    add = members.add
    limit = len(buf) - 64
    for done in range(count):
        if p <= limit:
            n = buf[p]
            if n < 64:
                p += 1 + n
                add(buf[p - n:p])
                continue
        try:
            member, p = read_str(buf, p)
        except Incomplete as incomplete:
            return p, done, incomplete.need
        add(member)
    return p, count, 0


def fill_hash(buf: bytes, p: int, count: int, fields: dict) -> tuple[int, int, int]:
    """Field / value pairs of a HASH (type 4) into ``fields``."""
    limit = len(buf) - 128
    for done in range(count):
        if p <= limit:
            n = buf[p]
            if n < 64:
                at = p + 1 + n  # the value's length
                m = buf[at]
                if m < 64:
                    p = at + 1 + m
                    fields[buf[at - n:at]] = buf[p - m:p]
                    continue
        try:
            field, q = read_str(buf, p)
            value, q = read_str(buf, q)
        except Incomplete as incomplete:
            return p, done, incomplete.need
        fields[field] = value
        p = q
    return p, count, 0


def fill_zset2(buf: bytes, p: int, count: int, scores: dict) -> tuple[int, int, int]:
    """Member / binary score pairs of a ZSET_2 (type 5) into ``scores``."""
    limit = len(buf) - 72
    unpack_double = _unpack_double
    for done in range(count):
        member_at = p
        if p <= limit and buf[p] < 64:
            p += 1 + buf[p]
            member = buf[member_at + 1:p]
        else:
            try:
                member, p = read_str(buf, p)
            except Incomplete as incomplete:
                return member_at, done, incomplete.need
            if p + 8 > len(buf):
                return member_at, done, p + 8
        score = unpack_double(buf, p)[0]
        p += 8
        if score != score:
            raise Corrupt("Zset with NAN score detected", member_at)
        scores[member] = score
    return p, count, 0


def direct_set(buf: bytes, pos: int) -> tuple[object, int]:
    """A SET (type 2) read in one go (Incomplete if not all buffered)."""
    count, p = read_len(buf, pos)
    if not count:
        return EMPTY, p
    members = _uniform_set(buf, p, count)
    if members is not None:
        return members, p + count * (1 + buf[p])
    members = set()
    p, done, need = fill_set(buf, p, count, members)
    if done < count:
        raise Incomplete(need)
    if len(members) != count:
        raise Corrupt("Duplicate set members detected", pos)
    return members, p


def direct_quicklist2(buf: bytes, pos: int) -> tuple[object, int]:
    """A LIST_QUICKLIST_2 (type 18) read in one go (Incomplete if not all buffered)."""
    count, p = read_len(buf, pos)
    items: deque = deque()
    for _ in range(count):
        start = p
        container, blob_at = read_len(buf, p)
        if container not in (C.QUICKLIST_PACKED, C.QUICKLIST_PLAIN):
            raise Corrupt("Quicklist integrity check failed: bad container", start)
        blob, p = read_str(buf, blob_at)
        if not blob:
            raise Corrupt("Quicklist integrity check failed: empty node", blob_at)
        if container == C.QUICKLIST_PLAIN:
            items.append(blob)
            continue
        try:
            items.extend(listpack.parse(blob))
        except Corrupt as corrupt:
            raise Corrupt(corrupt.message, blob_at) from None
    return (items if items else EMPTY), p


def direct_hash(buf: bytes, pos: int) -> tuple[object, int]:
    """A HASH (type 4) read in one go (Incomplete if not all buffered)."""
    count, p = read_len(buf, pos)
    if not count:
        return EMPTY, p
    fields = _uniform_hash(buf, p, count)
    if fields is not None:
        return fields, p + count * (2 + buf[p] + buf[p + 1 + buf[p]])
    fields = {}
    p, done, need = fill_hash(buf, p, count, fields)
    if done < count:
        raise Incomplete(need)
    if len(fields) != count:
        raise Corrupt("Duplicate hash fields detected", pos)
    return fields, p


def direct_zset2(buf: bytes, pos: int) -> tuple[object, int]:
    """A ZSET_2 (type 5) read in one go (Incomplete if not all buffered)."""
    count, p = read_len(buf, pos)
    if not count:
        return EMPTY, p
    scores = _uniform_zset2(buf, p, count)
    if scores is not None:
        return new_zset(scores), p + count * (9 + buf[p])
    scores = {}
    p, done, need = fill_zset2(buf, p, count, scores)
    if done < count:
        raise Incomplete(need)
    if len(scores) != count:
        raise Corrupt("Duplicate zset fields detected", pos)
    return new_zset(scores), p


def new_zset(scores: dict) -> ZSet:
    """A ZSet holding ``scores`` (taken, not copied). Its rank order is left for the first
    command that needs it: building it was ~40% of loading a zset, and many are never ranged."""
    return ZSet.from_scores(scores)


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
