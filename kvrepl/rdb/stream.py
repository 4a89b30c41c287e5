"""Stream node listpacks (t_stream.c, Redis 7.0): decoding into :class:`Stream` entries and
building them the way XADD (streamAppendItem) fills them.

A node listpack holds a master entry ``count, deleted, n, field_1..field_n, 0`` and then,
per entry, ``flags, ms-diff, seq-diff, [n, field, value ... | value ...], lp-count`` where the
IDs are deltas from the node's master ID (its radix-tree key) and ``SAMEFIELDS`` entries
reuse the master fields.
"""

from __future__ import annotations

from kvrepl.rdb import listpack
from kvrepl.rdb.constants import (
    STREAM_ITEM_FLAG_DELETED,
    STREAM_ITEM_FLAG_SAMEFIELDS,
    STREAM_LISTPACK_MAX_SIZE,
    UINT64_MASK,
)
from kvrepl.rdb.errors import Corrupt
from kvrepl.store.values import Stream, StreamID

_INT64_MIN = -(1 << 63)


def encode_id(stream_id: StreamID) -> bytes:
    """The 16-byte big-endian form of an ID (radix-tree keys, PEL entries)."""
    return stream_id[0].to_bytes(8, "big") + stream_id[1].to_bytes(8, "big")


def decode_id(raw: bytes) -> StreamID:
    return int.from_bytes(raw[:8], "big"), int.from_bytes(raw[8:16], "big")


def _as_int(item: object) -> int:
    if type(item) is not int:
        raise Corrupt("stream listpack integrity check failed: integer expected")
    return item


def _as_bytes(item: object) -> bytes:
    return b"%d" % item if type(item) is int else item


def decode_node(master_id: StreamID, blob: bytes, entries: dict) -> int:
    """Add the live entries of one node listpack to ``entries``; return how many were live.

    Checks what streamValidateListpackIntegrity checks in deep mode.
    """
    items = listpack.parse(blob, as_bytes=False)
    if not items:
        raise Corrupt("empty listpack inside stream")
    try:
        count = _as_int(items[0])
        deleted = _as_int(items[1])
        master_count = _as_int(items[2])
        if master_count < 0 or 3 + master_count >= len(items):
            raise Corrupt("stream listpack integrity check failed: bad master entry")
        master_fields = [_as_bytes(f) for f in items[3:3 + master_count]]
        p = 3 + master_count
        if _as_int(items[p]) != 0:
            raise Corrupt("stream listpack integrity check failed: bad master terminator")
        p += 1
        master_ms, master_seq = master_id
        live = 0
        total = count + deleted
        if total < 0 or total > len(items):
            raise Corrupt("stream listpack integrity check failed: bad entry count")
        for _ in range(total):
            flags = _as_int(items[p])
            ms = (master_ms + _as_int(items[p + 1])) & UINT64_MASK
            seq = (master_seq + _as_int(items[p + 2])) & UINT64_MASK
            p += 3
            if flags & STREAM_ITEM_FLAG_SAMEFIELDS:
                values = items[p:p + master_count]
                if len(values) != master_count:
                    raise Corrupt("stream listpack integrity check failed: entry overflows")
                fields: list[bytes] = []
                for name, value in zip(master_fields, values, strict=True):
                    fields.append(name)
                    fields.append(_as_bytes(value))
                p += master_count
                expected = master_count + 3
            else:
                n = _as_int(items[p])
                if n < 0 or p + 1 + 2 * n > len(items):
                    raise Corrupt("stream listpack integrity check failed: entry overflows")
                fields = [_as_bytes(x) for x in items[p + 1:p + 1 + 2 * n]]
                p += 1 + 2 * n
                expected = 2 * n + 4
            if _as_int(items[p]) != expected:
                raise Corrupt("stream listpack integrity check failed: bad lp-count")
            p += 1
            if not flags & STREAM_ITEM_FLAG_DELETED:
                if (ms, seq) in entries:
                    raise Corrupt("stream has a duplicated entry ID")
                entries[(ms, seq)] = fields
                live += 1
    except IndexError:
        raise Corrupt("stream listpack integrity check failed: truncated entry") from None
    if p != len(items):
        raise Corrupt("stream listpack integrity check failed: trailing items")
    if live != count:
        raise Corrupt("stream listpack integrity check failed: live count mismatch")
    return live


def _delta(a: int, b: int) -> int:
    """``a - b`` as the int64 that lpAppendInteger stores for uint64 operands."""
    d = (a - b) & UINT64_MASK
    return d - (1 << 64) if d >= (1 << 63) else d


def encode_nodes(stream: Stream, max_bytes: int = 4096,
                 max_entries: int = 100) -> list[tuple[bytes, bytes]]:
    """``(16-byte master ID, listpack)`` nodes holding the stream's entries, split as XADD
    splits them (stream-node-max-bytes / stream-node-max-entries)."""
    if max_bytes <= 0 or max_bytes > STREAM_LISTPACK_MAX_SIZE:
        max_bytes = STREAM_LISTPACK_MAX_SIZE
    nodes: list[tuple[bytes, bytes]] = []
    encode_entry = listpack.encode_entry
    encode_int = listpack.encode_int
    master_id: StreamID | None = None
    master_fields: list[bytes] = []
    head: list[bytes] = []  # deleted count, master field count, master fields, 0
    body: list[bytes] = []
    body_bytes = 0
    count = 0

    def flush() -> None:
        if master_id is not None:
            parts = [encode_int(count), *head, *body]
            nodes.append((encode_id(master_id), listpack.build(parts)))

    for entry_id, fields in stream.entries.items():
        names = fields[0::2]
        values = fields[1::2]
        if master_id is not None:
            lp_bytes = 7 + len(encode_int(count)) + body_bytes
            total = sum(map(len, fields))
            if lp_bytes + total >= max_bytes or (max_entries and count >= max_entries):
                flush()
                master_id = None
        if master_id is None:
            master_id = entry_id
            master_fields = names
            head = [encode_int(0), encode_int(len(names)), *map(encode_entry, names),
                    encode_int(0)]
            body = []
            body_bytes = sum(map(len, head))  # lpBytes counts the master entry too
            count = 0
            same = True
        else:
            same = names == master_fields
        parts = [encode_int(STREAM_ITEM_FLAG_SAMEFIELDS if same else 0),
                 encode_int(_delta(entry_id[0], master_id[0])),
                 encode_int(_delta(entry_id[1], master_id[1]))]
        if same:
            parts.extend(map(encode_entry, values))
            parts.append(encode_int(len(names) + 3))
        else:
            parts.append(encode_int(len(names)))
            parts.extend(map(encode_entry, fields))
            parts.append(encode_int(2 * len(names) + 4))
        body.extend(parts)
        body_bytes += sum(map(len, parts))
        count += 1
    flush()
    return nodes
