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
    UINT64_MASK,
)
from kvrepl.rdb.errors import Corrupt
from kvrepl.store.stream import StreamNode, encode_id, id_delta
from kvrepl.store.values import Stream, StreamID

_INT64_MIN = -(1 << 63)


def decode_id(raw: bytes) -> StreamID:
    return int.from_bytes(raw[:8], "big"), int.from_bytes(raw[8:16], "big")


def _as_int(item: object) -> int:
    if type(item) is not int:
        raise Corrupt("stream listpack integrity check failed: integer expected")
    return item


def _as_bytes(item: object) -> bytes:
    return b"%d" % item if type(item) is int else item


def decode_node(master_id: StreamID, blob: bytes, entries: dict) -> StreamNode:
    """Add the live entries of one node listpack to ``entries``; return the node's shape
    (its deleted entries kept, so that it can be written back as it was).

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
        node = StreamNode(master_id, master_fields)
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
            if (ms, seq) in entries or (ms, seq) in node.dead:
                raise Corrupt("stream has a duplicated entry ID")
            if (ms, seq) < (node.last_id if node.last_id is not None else master_id):
                # kvrepl keeps entries in ID order (a node is the IDs from its master ID
                # on): a node it could not write back as it read it is refused whole.
                raise Corrupt("stream listpack integrity check failed: entry IDs out of order")
            if flags & STREAM_ITEM_FLAG_DELETED:
                node.dead[(ms, seq)] = fields
            else:
                # a tuple, as XADD stores: the collector untracks it, then the dict
                entries[(ms, seq)] = tuple(fields)
                live += 1
            node.last_id = (ms, seq)
    except IndexError:
        raise Corrupt("stream listpack integrity check failed: truncated entry") from None
    if p != len(items):
        raise Corrupt("stream listpack integrity check failed: trailing items")
    if live != count:
        raise Corrupt("stream listpack integrity check failed: live count mismatch")
    node.loaded(count, deleted, len(blob))
    return node


def encode_nodes(stream: Stream, max_bytes: int = 4096,
                 max_entries: int = 100) -> list[tuple[bytes, bytes]]:
    """``(16-byte master ID, listpack)`` for each node of the stream, deleted entries
    included, byte for byte as Redis holds them; a stream whose node shape is not known
    yet is laid out as XADD splits it (stream-node-max-bytes / stream-node-max-entries)."""
    out: list[tuple[bytes, bytes]] = []
    encode_entry = listpack.encode_entry
    encode_int = listpack.encode_int
    for master_id, node in stream.node_map(max_bytes, max_entries).items():
        master_fields = node.master_fields
        parts = [encode_int(node.count), encode_int(node.deleted),
                 encode_int(len(master_fields)), *map(encode_entry, master_fields),
                 encode_int(0)]
        for entry_id, fields, dead in stream.node_entries(node):
            names = fields[0::2]
            same = tuple(names) == master_fields
            flags = (STREAM_ITEM_FLAG_SAMEFIELDS if same else 0) | (
                STREAM_ITEM_FLAG_DELETED if dead else 0)
            parts += (encode_int(flags), encode_int(id_delta(entry_id[0], master_id[0])),
                      encode_int(id_delta(entry_id[1], master_id[1])))
            if same:
                parts.extend(map(encode_entry, fields[1::2]))
                parts.append(encode_int(len(names) + 3))
            else:
                parts.append(encode_int(len(names)))
                parts.extend(map(encode_entry, fields))
                parts.append(encode_int(2 * len(names) + 4))
        out.append((encode_id(master_id), listpack.build(parts)))
    return out
