"""The legacy compact blobs Redis no longer writes: ziplists (ziplist.c) and zipmaps
(zipmap.c), parsed with the checks of their ``ValidateIntegrity`` functions in deep mode.
"""

from __future__ import annotations

import struct

from kvrepl.rdb.errors import DEEP_CHECKS, Corrupt

# Integer encodings: first byte -> data width.
_ZIP_INTS = {0xC0: 2, 0xD0: 4, 0xE0: 8, 0xF0: 3, 0xFE: 1}


def parse(zl: bytes, as_bytes: bool = True) -> list:
    """The entries of ziplist ``zl`` (``bytes``, or ``int`` unless ``as_bytes``). Without
    :data:`DEEP_CHECKS`, prevlens, the tail offset and the count are not compared."""
    size = len(zl)
    if size < 11:
        raise Corrupt("ziplist integrity check failed: blob too short")
    if int.from_bytes(zl[0:4], "little") != size:
        raise Corrupt("ziplist integrity check failed: header size mismatch")
    tail = int.from_bytes(zl[4:8], "little")
    end = size - 1
    if zl[end] != 0xFF or tail > end:
        raise Corrupt("ziplist integrity check failed: bad terminator or tail offset")
    count = zl[8] | (zl[9] << 8)
    deep = DEEP_CHECKS.get()
    out: list = []
    p = 10
    prev_size = 0
    last = None
    while zl[p] != 0xFF:
        b = zl[p]
        if b < 254:
            prevlen = b
            e = p + 1
        else:
            if p + 5 > end:
                raise Corrupt(f"ziplist integrity check failed: entry at {p} overflows")
            prevlen = int.from_bytes(zl[p + 1:p + 5], "little")
            e = p + 5
        if deep and prevlen != prev_size:
            raise Corrupt(f"ziplist integrity check failed: bad prevlen at {p}")
        if e >= end:
            raise Corrupt(f"ziplist integrity check failed: entry at {p} overflows")
        enc = zl[e]
        kind = enc >> 6
        if kind == 0:
            start = e + 1
            q = start + (enc & 0x3F)
            value = None
        elif kind == 1:
            start = e + 2
            q = start + (((enc & 0x3F) << 8) | zl[e + 1])
            value = None
        elif kind == 2:
            start = e + 5
            if start > end:
                raise Corrupt(f"ziplist integrity check failed: entry at {p} overflows")
            q = start + int.from_bytes(zl[e + 1:e + 5], "big")
            value = None
        elif 0xF1 <= enc <= 0xFD:
            q = start = e + 1
            value = (enc & 0x0F) - 1
        else:
            width = _ZIP_INTS.get(enc)
            if width is None:
                raise Corrupt(f"ziplist integrity check failed: bad encoding 0x{enc:02x} at {e}")
            start = e + 1
            q = start + width
            value = 0
        if q > end:
            raise Corrupt(f"ziplist integrity check failed: entry at {p} overflows")
        if value is None:
            out.append(zl[start:q])
        else:
            if q > start:
                value = int.from_bytes(zl[start:q], "little", signed=True)
            out.append(b"%d" % value if as_bytes else value)
        prev_size = q - p
        last = p
        p = q
    if p != end:
        raise Corrupt("ziplist integrity check failed: early terminator")
    if deep and last is not None and last != tail:
        raise Corrupt("ziplist integrity check failed: tail offset mismatch")
    if deep and count != 65535 and count != len(out):
        raise Corrupt("ziplist integrity check failed: header count mismatch")
    return out


def parse_zipmap(zm: bytes) -> list[tuple[bytes, bytes]]:
    """The field/value pairs of a Redis <= 2.4 zipmap hash."""
    size = len(zm)
    if size < 2 or zm[size - 1] != 0xFF:
        raise Corrupt("zipmap integrity check failed: bad terminator")
    end = size - 1
    pairs: list[tuple[bytes, bytes]] = []
    p = 1
    while zm[p] != 0xFF:
        field_len, p = _zipmap_len(zm, p, end)
        field = zm[p:p + field_len]
        p += field_len
        if p > end:
            raise Corrupt("zipmap integrity check failed: field overflows")
        value_len, p = _zipmap_len(zm, p, end)
        free = zm[p]
        p += 1
        value = zm[p:p + value_len]
        p += value_len + free
        if p > end:
            raise Corrupt("zipmap integrity check failed: value overflows")
        pairs.append((field, value))
    if not pairs:
        raise Corrupt("zipmap integrity check failed: empty zipmap")
    if zm[0] != 254 and zm[0] != len(pairs):
        raise Corrupt("zipmap integrity check failed: header count mismatch")
    return pairs


def _zipmap_len(zm: bytes, p: int, end: int) -> tuple[int, int]:
    if zm[p] < 254:
        if p + 1 > end:
            raise Corrupt("zipmap integrity check failed: length overflows")
        return zm[p], p + 1
    if p + 5 > end:
        raise Corrupt("zipmap integrity check failed: length overflows")
    return int.from_bytes(zm[p + 1:p + 5], "little"), p + 5


def parse_intset(blob: bytes) -> list[int]:
    """The members of an intset (intset.c): width 2/4/8, count, sorted unique LE ints."""
    if len(blob) < 8:
        raise Corrupt("intset integrity check failed: blob too short")
    width = int.from_bytes(blob[0:4], "little")
    count = int.from_bytes(blob[4:8], "little")
    if width not in (2, 4, 8) or 8 + width * count != len(blob) or count == 0:
        raise Corrupt("intset integrity check failed: bad header")
    values = list(struct.unpack_from(f"<{count}{_INTSET_FORMATS[width]}", blob, 8))
    if DEEP_CHECKS.get():
        if any(a >= b for a, b in zip(values, values[1:], strict=False)):
            raise Corrupt("intset integrity check failed: members not strictly ascending")
    elif len(set(values)) != count:  # order need not hold; a set cannot hold a member twice
        raise Corrupt("intset integrity check failed: duplicate members")
    return values


_INTSET_FORMATS = {2: "h", 4: "i", 8: "q"}
