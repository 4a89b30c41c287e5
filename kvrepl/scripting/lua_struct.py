"""``struct`` (Roberto Ierusalimschy's lua_struct.c) as Redis 7.0 builds it for x86-64
Linux: native little endian, ``int`` 4 bytes, ``long`` and ``size_t`` 8, maximum alignment
8. Errors are raised as the C code raises them."""

from __future__ import annotations

import struct as _struct
from collections.abc import Callable

from kvrepl.scripting.errors import ScriptError
from kvrepl.scripting.luavalues import arg_error, check_number, check_string

_SIZES = {"b": 1, "B": 1, "h": 2, "H": 2, "l": 8, "L": 8, "T": 8, "f": 4, "d": 8, "x": 1}
_MAXINTSIZE = 32
_MAXALIGN = 8


class _Format:
    """A struct format string, read option by option (getnum, optsize, controloptions)."""

    def __init__(self, fmt: bytes, name: str) -> None:
        self.fmt = fmt.decode("latin-1")
        self.pos = 0
        self.name = name
        self.little = True
        self.align = 1

    def number(self, default: int) -> int:
        if self.pos >= len(self.fmt) or not self.fmt[self.pos].isdigit():
            return default
        value = 0
        while self.pos < len(self.fmt) and self.fmt[self.pos].isdigit():
            value = value * 10 + int(self.fmt[self.pos])
            if value > 2 ** 31 - 1:
                raise ScriptError(b"integral size overflow")
            self.pos += 1
        return value

    def options(self) -> object:
        while self.pos < len(self.fmt):
            opt = self.fmt[self.pos]
            self.pos += 1
            yield opt, self.size(opt)

    def size(self, opt: str) -> int:
        if opt in _SIZES:
            return _SIZES[opt]
        if opt == "c":
            return self.number(1)
        if opt in "iI":
            size = self.number(4)
            if size > _MAXINTSIZE:
                raise ScriptError(b"integral size %d is larger than limit of %d"
                                  % (size, _MAXINTSIZE))
            return size
        return 0

    def to_align(self, length: int, opt: str, size: int) -> int:
        if size == 0 or opt == "c":
            return 0
        size = min(size, self.align)
        return (size - (length & (size - 1))) & (size - 1)

    def control(self, opt: str) -> None:
        if opt == " ":
            return
        if opt == ">":
            self.little = False
        elif opt == "<":
            self.little = True
        elif opt == "!":
            align = self.number(_MAXALIGN)
            if align <= 0 or align & (align - 1):
                raise ScriptError(b"alignment %d is not a power of 2" % align)
            self.align = align
        else:
            raise arg_error(1, self.name, f"invalid format option '{opt}'")


def _pack(fmt: object = None, *args: object) -> bytes:
    form = _Format(check_string(fmt, 1, "pack"), "pack")
    out = bytearray()
    arg = 0
    for opt, size in form.options():
        pad = form.to_align(len(out), opt, size)
        out += b"\0" * pad
        order = "little" if form.little else "big"
        if opt in "bBhHlLTiI":
            n = check_number(args[arg] if arg < len(args) else None, arg + 2, "pack")
            arg += 1
            value = int(n) & ((1 << 64) - 1)  # (Uinttype)(Inttype)n, 64 bits
            out += (value & ((1 << (8 * size)) - 1) if size <= 8 else value).to_bytes(
                size, order)
        elif opt == "x":
            out += b"\0"
        elif opt in "fd":
            n = check_number(args[arg] if arg < len(args) else None, arg + 2, "pack")
            arg += 1
            out += _struct.pack(("<" if form.little else ">") + opt, n)
        elif opt in "cs":
            data = check_string(args[arg] if arg < len(args) else None, arg + 2, "pack")
            arg += 1
            if size == 0:
                size = len(data)
            if len(data) < size:
                raise arg_error(arg + 2, "pack", "string too short")
            out += data[:size]
            if opt == "s":
                out += b"\0"
        else:
            form.control(opt)
    return bytes(out)


def _unpack(fmt: object = None, data: object = None, init: object = None, *_: object
            ) -> tuple:
    form = _Format(check_string(fmt, 1, "unpack"), "unpack")
    data = check_string(data, 2, "unpack")
    pos = 1 if init is None else int(check_number(init, 3, "unpack"))
    if pos <= 0:
        raise arg_error(3, "unpack", "offset must be 1 or greater")
    pos -= 1
    out: list[object] = []
    for opt, size in form.options():
        pos += form.to_align(pos, opt, size)
        if not (size <= len(data) and pos <= len(data) - size):
            raise arg_error(2, "unpack", "data string too short")
        order = "little" if form.little else "big"
        if opt in "bBhHlLTiI":
            raw = int.from_bytes(data[pos:pos + size], order)
            if opt.islower() and raw & (1 << (size * 8 - 1)):
                raw -= 1 << (size * 8)
            out.append(float(raw))
        elif opt in "fd":
            out.append(_struct.unpack(("<" if form.little else ">") + opt,
                                      data[pos:pos + size])[0])
        elif opt == "c":
            if size == 0:
                if not out or type(out[-1]) not in (int, float):
                    raise ScriptError(b"format 'c0' needs a previous size")
                size = int(out.pop())
                if not (size <= len(data) and pos <= len(data) - size):
                    raise arg_error(2, "unpack", "data string too short")
            out.append(data[pos:pos + size])
        elif opt == "s":
            end = data.find(b"\0", pos)
            if end < 0:
                raise ScriptError(b"unfinished string in data")
            size = end - pos + 1
            out.append(data[pos:end])
        elif opt != "x":
            form.control(opt)
        pos += size
    out.append(pos + 1)
    return tuple(out)


def _size(fmt: object = None, *_: object) -> int:
    form = _Format(check_string(fmt, 1, "size"), "size")
    pos = 0
    for opt, size in form.options():
        pos += form.to_align(pos, opt, size)
        if opt == "s":
            raise arg_error(1, "size", "option 's' has no fixed size")
        if opt == "c" and size == 0:
            raise arg_error(1, "size", "option 'c0' has no fixed size")
        if not opt.isalnum():
            form.control(opt)
        pos += size
    return pos


def functions() -> dict[bytes, Callable[..., object]]:
    """The ``struct`` table's functions."""
    return {b"pack": _pack, b"unpack": _unpack, b"size": _size}
