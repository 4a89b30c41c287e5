"""LZF, the compression of RDB strings (lzf_c.c / lzf_d.c as bundled with Redis).

The C extension of the ``python-lzf`` package does the work when it is installed; otherwise
the pure-Python port below does (about 50x slower, same format). Compressed output of two
LZF implementations can differ; both decompress each other's output.

Format, one control byte at a time: ``000LLLLL`` + L+1 literal bytes; ``LLLooooo oooooooo``
a back reference of L+2 bytes (L = 1..6) at distance o+1; ``111ooooo LLLLLLLL oooooooo``
a back reference of L+9 bytes. References may overlap the bytes they produce.
"""

from __future__ import annotations

try:  # pragma: no cover - depends on the environment
    import lzf as _c_lzf
except ImportError:  # pragma: no cover
    _c_lzf = None

#: True when the ``python-lzf`` C extension is in use.
USING_EXTENSION = _c_lzf is not None

#: The most bytes one compressed byte can stand for: a 3-byte reference copies 264 bytes.
MAX_RATIO = 88

_MAX_LIT = 32
_MAX_OFF = 1 << 13
_MAX_REF = (1 << 8) + (1 << 3)


def py_decompress(data: bytes, expected: int) -> bytes:
    """Decompress ``data`` to exactly ``expected`` bytes; ValueError when it doesn't fit."""
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        ctrl = data[i]
        i += 1
        if ctrl < 32:
            run = ctrl + 1
            if i + run > n:
                raise ValueError("LZF literal run past the end of the input")
            out += data[i:i + run]
            i += run
        else:
            length = ctrl >> 5
            if length == 7:
                if i >= n:
                    raise ValueError("LZF reference truncated")
                length += data[i]
                i += 1
            if i >= n:
                raise ValueError("LZF reference truncated")
            distance = ((ctrl & 0x1F) << 8) + data[i] + 1
            i += 1
            start = len(out) - distance
            if start < 0:
                raise ValueError("LZF reference before the start of the output")
            length += 2
            if distance >= length:
                out += out[start:start + length]
            else:  # overlapping copy: the pattern of ``distance`` bytes repeats
                pattern = out[start:]
                out += (pattern * (length // distance + 1))[:length]
        if len(out) > expected:
            raise ValueError("LZF output longer than announced")
    if len(out) != expected:
        raise ValueError("LZF output shorter than announced")
    return bytes(out)


def py_compress(data: bytes, max_out: int | None = None) -> bytes | None:
    """Compress ``data``; None when the result would exceed ``max_out`` bytes (or be empty).

    A port of lzf_compress (VERY_FAST mode) with an exact-match dict instead of the hash
    table, so simple inputs compress to the same bytes as Redis's.
    """
    n = len(data)
    if max_out is None:
        max_out = n + n // 32 + 1
    if not n or max_out <= 0:
        return None
    out = bytearray()
    table: dict[bytes, int] = {}
    lit_start = 0
    i = 0
    while i < n - 2:
        key = data[i:i + 3]
        ref = table.get(key)
        table[key] = i
        if ref is not None and ref > 0 and i - ref - 1 < _MAX_OFF:
            maxlen = min(n - i - 2, _MAX_REF)
            length = 3
            while length < maxlen and data[ref + length] == data[i + length]:
                length += 1
            _literals(out, data, lit_start, i)
            offset = i - ref - 1
            code = length - 2
            if code < 7:
                out += bytes(((offset >> 8) + (code << 5), offset & 0xFF))
            else:
                out += bytes(((offset >> 8) + (7 << 5), code - 7, offset & 0xFF))
            if len(out) >= max_out:
                return None
            i += length
            lit_start = i
            if i >= n - 2:
                break
            # VERY_FAST: only the last two positions of the match enter the table
            table[data[i - 2:i + 1]] = i - 2
            table[data[i - 1:i + 2]] = i - 1
        else:
            i += 1
    _literals(out, data, lit_start, n)
    if len(out) > max_out:
        return None
    return bytes(out)


def _literals(out: bytearray, data: bytes, start: int, end: int) -> None:
    while start < end:
        run = min(end - start, _MAX_LIT)
        out.append(run - 1)
        out += data[start:start + run]
        start += run


def decompress(data: bytes, expected: int) -> bytes:
    """Decompress ``data`` to exactly ``expected`` bytes; ValueError when it is corrupt."""
    if expected > len(data) * MAX_RATIO:
        raise ValueError("LZF lengths are impossible")
    if _c_lzf is None:  # pragma: no cover
        return py_decompress(data, expected)
    if not data or not expected:
        raise ValueError("empty LZF data")
    out = _c_lzf.decompress(data, expected)
    if out is None or len(out) != expected:
        raise ValueError("corrupt LZF data")
    return out


def compress(data: bytes, max_out: int) -> bytes | None:
    """Compress ``data`` into at most ``max_out`` bytes, or None when it doesn't fit."""
    if _c_lzf is None:  # pragma: no cover
        return py_compress(data, max_out)
    if max_out <= 0:
        return None
    return _c_lzf.compress(data, max_out)
