"""RDB lengths, strings and doubles: reading from a buffer at a position, and encoding.

Readers take ``(buf, pos)`` and return ``(value, new_pos)``. They raise
:class:`~kvrepl.rdb.errors.Incomplete` when ``buf`` ends too early (with the buffer length
they need) and :class:`~kvrepl.rdb.errors.Corrupt` on bad bytes.
"""

from __future__ import annotations

import math
import struct

from kvrepl.rdb import lzf
from kvrepl.rdb.errors import Corrupt, Incomplete

_unpack_double = struct.Struct("<d").unpack_from
_pack_double = struct.Struct("<d").pack
_unpack_float = struct.Struct("<f").unpack_from
_pack_i64 = struct.Struct("<q").pack
_unpack_i64 = struct.Struct("<q").unpack_from
_unpack_u64 = struct.Struct("<Q").unpack_from

#: Bytes that can start a canonical decimal integer.
INT_START = frozenset(b"-0123456789")


def read_len(buf: bytes, pos: int) -> tuple[int, int]:
    """An RDB length (6/14/32/64-bit forms; the wide forms are big-endian)."""
    try:
        first = buf[pos]
    except IndexError:
        raise Incomplete(pos + 1) from None
    if first < 0x40:
        return first, pos + 1
    if first < 0x80:
        if pos + 2 > len(buf):
            raise Incomplete(pos + 2)
        return ((first & 0x3F) << 8) | buf[pos + 1], pos + 2
    if first == 0x80:
        if pos + 5 > len(buf):
            raise Incomplete(pos + 5)
        return int.from_bytes(buf[pos + 1:pos + 5], "big"), pos + 5
    if first == 0x81:
        if pos + 9 > len(buf):
            raise Incomplete(pos + 9)
        return int.from_bytes(buf[pos + 1:pos + 9], "big"), pos + 9
    if first >= 0xC0:
        raise Corrupt("an encoded string where a length was expected", pos)
    raise Corrupt(f"unknown length encoding 0x{first:02x}", pos)


def read_str(buf: bytes, pos: int) -> tuple[bytes, int]:
    """An RDB string: raw, INT8/16/32 (decoded to decimal text) or LZF (decompressed)."""
    try:
        first = buf[pos]
    except IndexError:
        raise Incomplete(pos + 1) from None
    if first < 0x40:
        end = pos + 1 + first
        if end > len(buf):
            raise Incomplete(end)
        return buf[pos + 1:end], end
    if first >= 0xC0:
        kind = first & 0x3F
        if kind == 0:
            if pos + 2 > len(buf):
                raise Incomplete(pos + 2)
            value = buf[pos + 1]
            return b"%d" % (value - 256 if value > 127 else value), pos + 2
        if kind == 1:
            if pos + 3 > len(buf):
                raise Incomplete(pos + 3)
            return b"%d" % int.from_bytes(buf[pos + 1:pos + 3], "little", signed=True), pos + 3
        if kind == 2:
            if pos + 5 > len(buf):
                raise Incomplete(pos + 5)
            return b"%d" % int.from_bytes(buf[pos + 1:pos + 5], "little", signed=True), pos + 5
        if kind == 3:
            clen, p = read_len(buf, pos + 1)
            ulen, p = read_len(buf, p)
            end = p + clen
            if ulen == 0 or ulen > clen * lzf.MAX_RATIO:
                raise Corrupt(f"invalid LZF string lengths ({clen} -> {ulen})", pos)
            if end > len(buf):
                raise Incomplete(end)
            try:
                return lzf.decompress(buf[p:end], ulen), end
            except ValueError as err:
                raise Corrupt(f"invalid LZF compressed string: {err}", pos) from None
        raise Corrupt(f"unknown string encoding {kind}", pos)
    length, p = read_len(buf, pos)
    end = p + length
    if end > len(buf):
        raise Incomplete(end)
    return buf[p:end], end


def read_string_double(buf: bytes, pos: int) -> tuple[float, int]:
    """A ZSET (type 3) score: 1 length byte + ASCII, or 253/254/255 = nan/+inf/-inf."""
    try:
        first = buf[pos]
    except IndexError:
        raise Incomplete(pos + 1) from None
    if first == 255:
        return -math.inf, pos + 1
    if first == 254:
        return math.inf, pos + 1
    if first == 253:
        return math.nan, pos + 1
    end = pos + 1 + first
    if end > len(buf):
        raise Incomplete(end)
    return parse_double(buf[pos + 1:end], pos), end


def parse_double(text: bytes, pos: int | None = None) -> float:
    """A score written as text (strtod-like: no underscores, no surrounding junk)."""
    try:
        if b"_" in text:
            raise ValueError
        return float(text)
    except ValueError:
        raise Corrupt(f"invalid double value {text[:40]!r}", pos) from None


def read_binary_double(buf: bytes, pos: int) -> tuple[float, int]:
    """A ZSET_2 score / module double: 8 bytes IEEE-754 little-endian."""
    if pos + 8 > len(buf):
        raise Incomplete(pos + 8)
    return _unpack_double(buf, pos)[0], pos + 8


def read_binary_float(buf: bytes, pos: int) -> tuple[float, int]:
    if pos + 4 > len(buf):
        raise Incomplete(pos + 4)
    return _unpack_float(buf, pos)[0], pos + 4


def read_ms_time(buf: bytes, pos: int) -> tuple[int, int]:
    """An 8-byte little-endian signed millisecond time (EXPIRETIME_MS, stream times)."""
    if pos + 8 > len(buf):
        raise Incomplete(pos + 8)
    return _unpack_i64(buf, pos)[0], pos + 8


def read_raw(buf: bytes, pos: int, size: int) -> tuple[bytes, int]:
    end = pos + size
    if end > len(buf):
        raise Incomplete(end)
    return buf[pos:end], end


# -- encoding -----------------------------------------------------------------------------

#: Precomputed one-byte lengths 0..63.
LEN1 = [bytes((n,)) for n in range(64)]
_LEN2 = [bytes((0x40 | (n >> 8), n & 0xFF)) for n in range(16384)]


def encode_len(n: int) -> bytes:
    """The smallest RDB length form of ``n``."""
    if n < 64:
        return LEN1[n]
    if n < 16384:
        return _LEN2[n]
    if n <= 0xFFFFFFFF:
        return b"\x80" + n.to_bytes(4, "big")
    return b"\x81" + n.to_bytes(8, "big")


def canonical_int(s: bytes) -> int | None:
    """``s`` as an integer when it is its canonical decimal form (string2ll + ll2string)."""
    if not s or len(s) > 20 or s[0] not in INT_START:
        return None
    try:
        value = int(s)
    except ValueError:
        return None
    if b"%d" % value != s or not -(1 << 63) <= value < (1 << 63):
        return None
    return value


def encode_int_str(value: int) -> bytes | None:
    """The INT8/16/32 string form of ``value``, or None when it needs more than 32 bits."""
    if -128 <= value <= 127:
        return b"\xc0" + (value & 0xFF).to_bytes(1, "little")
    if -32768 <= value <= 32767:
        return b"\xc1" + value.to_bytes(2, "little", signed=True)
    if -(1 << 31) <= value < (1 << 31):
        return b"\xc2" + value.to_bytes(4, "little", signed=True)
    return None


def encode_str(s: bytes, compress: bool = True) -> bytes:
    """An RDB string as rdbSaveRawString writes it: INT form, else LZF (> 20 bytes), else raw."""
    n = len(s)
    if n <= 11 and n and s[0] in INT_START:
        value = canonical_int(s)
        if value is not None:
            encoded = encode_int_str(value)
            if encoded is not None:
                return encoded
    if compress and n > 20:
        packed = lzf.compress(s, n - 4)
        if packed:
            return b"\xc3" + encode_len(len(packed)) + encode_len(n) + packed
    if n < 64:
        return LEN1[n] + s
    return encode_len(n) + s


def encode_binary_double(value: float) -> bytes:
    return _pack_double(value)


def encode_ms_time(value: int) -> bytes:
    return _pack_i64(value)
