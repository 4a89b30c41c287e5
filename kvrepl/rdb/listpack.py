"""Listpacks (listpack.c, Redis 7.0): parse with full validation, and build.

Layout: ``<total_bytes u32 LE> <count u16 LE> entry* 0xFF``; each entry is its encoding +
data followed by a "backlen" (the size of encoding + data, 1-5 bytes, read right to left).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from functools import lru_cache
from operator import itemgetter

from kvrepl.rdb.errors import DEEP_CHECKS, Corrupt
from kvrepl.rdb.primitives import INT_START
from kvrepl.store.stream import lp_backlen_size as backlen_size

COUNT_UNKNOWN = 65535
_first = itemgetter(0)


def encode_backlen(size: int) -> bytes:
    if size <= 127:
        return _BACK1[size]
    if size < 16383:
        return bytes((size >> 7, (size & 127) | 128))
    if size < 2097151:
        return bytes((size >> 14, ((size >> 7) & 127) | 128, (size & 127) | 128))
    if size < 268435455:
        return bytes((size >> 21, ((size >> 14) & 127) | 128, ((size >> 7) & 127) | 128,
                      (size & 127) | 128))
    return bytes(((size >> 28) & 0xFF, ((size >> 21) & 127) | 128, ((size >> 14) & 127) | 128,
                  ((size >> 7) & 127) | 128, (size & 127) | 128))


_BACK1 = [bytes((n,)) for n in range(128)]


def parse(lp: bytes, as_bytes: bool = True) -> list:
    """The entries of listpack ``lp``: ``bytes``, or ``int`` for integer entries unless
    ``as_bytes`` (then integers come back as their decimal text).

    Validates like lpValidateIntegrity in deep mode: header size, terminator, every entry
    inside the blob, backlen consistent, header count. Without :data:`DEEP_CHECKS`, the
    backlens and the count are not compared (the entries read forward are the same).
    Raises Corrupt.
    """
    size = len(lp)
    if size < 7:
        raise Corrupt("listpack integrity check failed: blob too short")
    if int.from_bytes(lp[0:4], "little") != size:
        raise Corrupt("listpack integrity check failed: header size mismatch")
    end = size - 1
    if lp[end] != 0xFF:
        raise Corrupt("listpack integrity check failed: no terminator")
    count = lp[4] | (lp[5] << 8)
    if lp[6] >> 6 == 2:  # a string of up to 63 bytes first: maybe all are, of that size
        uniform = _uniform_strings(lp, end, count)
        if uniform is not None:
            return uniform
    out: list = []
    append = out.append
    deep = DEEP_CHECKS.get()
    p = 6
    while p < end:
        b = lp[p]
        if b < 0x80:  # 7-bit unsigned integer
            q = p + 1
            value = b"%d" % b if as_bytes else b
        elif b < 0xC0:  # string, 6-bit length
            q = p + 1 + (b & 0x3F)
            if q > end:
                raise Corrupt(f"listpack integrity check failed: entry at {p} overflows")
            value = lp[p + 1:q]
        elif b < 0xE0:  # 13-bit signed integer
            q = p + 2
            if q > end:
                raise Corrupt(f"listpack integrity check failed: entry at {p} overflows")
            u = ((b & 0x1F) << 8) | lp[p + 1]
            if u >= 4096:
                u -= 8192
            value = b"%d" % u if as_bytes else u
        elif b < 0xF0:  # string, 12-bit length
            if p + 2 > end:
                raise Corrupt(f"listpack integrity check failed: entry at {p} overflows")
            q = p + 2 + (((b & 0x0F) << 8) | lp[p + 1])
            if q > end:
                raise Corrupt(f"listpack integrity check failed: entry at {p} overflows")
            value = lp[p + 2:q]
        elif b == 0xF0:  # string, 32-bit length
            if p + 5 > end:
                raise Corrupt(f"listpack integrity check failed: entry at {p} overflows")
            q = p + 5 + int.from_bytes(lp[p + 1:p + 5], "little")
            if q > end:
                raise Corrupt(f"listpack integrity check failed: entry at {p} overflows")
            value = lp[p + 5:q]
        elif b <= 0xF4:  # int16 / int24 / int32 / int64
            width = _INT_WIDTHS[b]
            q = p + 1 + width
            if q > end:
                raise Corrupt(f"listpack integrity check failed: entry at {p} overflows")
            u = int.from_bytes(lp[p + 1:q], "little", signed=True)
            value = b"%d" % u if as_bytes else u
        else:
            raise Corrupt(f"listpack integrity check failed: bad encoding 0x{b:02x} at {p}")
        entry = q - p
        if entry <= 127:
            if q >= end or (deep and lp[q] != entry):
                raise Corrupt(f"listpack integrity check failed: bad backlen at {q}")
            p = q + 1
        else:
            width = backlen_size(entry)
            p = q + width
            if p > end or (deep and lp[q:p] != encode_backlen(entry)):
                raise Corrupt(f"listpack integrity check failed: bad backlen at {q}")
        append(value)
    if deep and count != COUNT_UNKNOWN and count != len(out):
        raise Corrupt("listpack integrity check failed: header count mismatch")
    return out


_INT_WIDTHS = {0xF1: 2, 0xF2: 3, 0xF3: 4, 0xF4: 8}


@lru_cache(maxsize=64)
def _str6_entries(size: int) -> struct.Struct:
    return struct.Struct(f"<x{size}sx")


def _uniform_strings(lp: bytes, end: int, count: int) -> list | None:
    """The entries of a listpack whose entries are all strings of the same size under 64
    bytes (list elements, set members of fixed format...), cut by struct at C speed; None
    when they are not (the entry loop then parses and validates them one by one). The
    same checks as that loop: each entry's encoding byte and backlen, the count."""
    head = lp[6]
    size = head & 0x3F
    stride = size + 2
    entries, rest = divmod(end - 6, stride)
    if rest or (count != COUNT_UNKNOWN and count != entries):
        return None
    if (lp[6:end:stride] != bytes((head,)) * entries
            or lp[7 + size:end:stride] != bytes((size + 1,)) * entries):
        return None
    return list(map(_first, _str6_entries(size).iter_unpack(memoryview(lp)[6:end])))

# -- building ------------------------------------------------------------------------------

# Entries for small strings: encoding byte, and the backlen that follows the data.
_STR6_HEAD = [bytes((0x80 | n,)) for n in range(64)]
_STR6_TAIL = [bytes((n + 1,)) for n in range(64)]
_SMALL_INT = [bytes((n, 1)) for n in range(128)]


def encode_int(value: int) -> bytes:
    """One listpack entry (with backlen) holding integer ``value`` (lpEncodeIntegerGetType)."""
    if 0 <= value <= 127:
        return _SMALL_INT[value]
    if -4096 <= value <= 4095:
        u = value & 0x1FFF
        return bytes((0xC0 | (u >> 8), u & 0xFF, 2))
    if -32768 <= value <= 32767:
        return b"\xf1" + value.to_bytes(2, "little", signed=True) + b"\x03"
    if -8388608 <= value <= 8388607:
        return b"\xf2" + value.to_bytes(3, "little", signed=True) + b"\x04"
    if -(1 << 31) <= value < (1 << 31):
        return b"\xf3" + value.to_bytes(4, "little", signed=True) + b"\x05"
    return b"\xf4" + value.to_bytes(8, "little", signed=True) + b"\x09"


def encode_string(s: bytes) -> bytes:
    """One listpack entry holding ``s`` as a string (never converted to an integer)."""
    n = len(s)
    if n < 64:
        return _STR6_HEAD[n] + s + _STR6_TAIL[n]
    if n < 4096:
        return bytes((0xE0 | (n >> 8), n & 0xFF)) + s + encode_backlen(n + 2)
    return b"\xf0" + n.to_bytes(4, "little") + s + encode_backlen(n + 5)


def encode_entry(s: bytes) -> bytes:
    """One entry as lpAppend stores ``s``: an integer when ``s`` is canonical, else a string."""
    n = len(s)
    if n and n <= 20 and s[0] in INT_START:
        try:
            value = int(s)
        except ValueError:
            value = None
        if value is not None and b"%d" % value == s and -(1 << 63) <= value < (1 << 63):
            return encode_int(value)
    if n < 64:
        return _STR6_HEAD[n] + s + _STR6_TAIL[n]
    return encode_string(s)


def build(entries: Iterable[bytes]) -> bytes:
    """A listpack of already-encoded entries (see :func:`encode_entry`)."""
    parts = list(entries)
    return finish(b"".join(parts), len(parts))


def finish(body: bytes | bytearray, count: int) -> bytes:
    """A listpack of ``count`` entries already encoded one after the other in ``body``."""
    if count >= COUNT_UNKNOWN:
        count = COUNT_UNKNOWN
    return b"".join(((len(body) + 7).to_bytes(4, "little"), count.to_bytes(2, "little"), body,
                     b"\xff"))


def pack(items: Iterable[bytes]) -> bytes:
    """A listpack of ``items`` stored as lpAppend would store each one."""
    return build(map(encode_entry, items))
