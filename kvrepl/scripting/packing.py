"""``struct`` (Roberto Ierusalimschy's lua_struct.c) and ``cmsgpack`` (lua-cmsgpack 0.4.0),
as Redis 7.0 builds them for x86-64 Linux: native little endian, ``int`` 4 bytes, ``long``
and ``size_t`` 8, maximum alignment 8. Errors are raised as the C code raises them."""

from __future__ import annotations

import math
import struct as _struct
from collections.abc import Callable

from lupa import lua51

from kvrepl.scripting.errors import ScriptError

_SIZES = {"b": 1, "B": 1, "h": 2, "H": 2, "l": 8, "L": 8, "T": 8, "f": 4, "d": 8, "x": 1}
_MAXINTSIZE = 32
_MAXALIGN = 8


def _arg_error(position: int, name: str, message: str) -> ScriptError:
    return ScriptError(f"bad argument #{position} to '{name}' ({message})".encode())


def _lua_type(value: object) -> str:
    if value is None:
        return "no value"
    if type(value) is bool:
        return "boolean"
    if type(value) is bytes:
        return "string"
    if type(value) in (int, float):
        return "number"
    return lua51.lua_type(value) or "userdata"


def _number(value: object, position: int, name: str) -> float:
    """luaL_checknumber."""
    if type(value) in (int, float):
        return value
    if type(value) is bytes:
        try:
            return float(value)
        except ValueError:
            pass
    raise _arg_error(position, name, f"number expected, got {_lua_type(value)}")


def _string(value: object, position: int, name: str) -> bytes:
    """luaL_checklstring: strings, and numbers as Lua prints them."""
    if type(value) is bytes:
        return value
    if type(value) in (int, float):
        return b"%.14g" % value
    raise _arg_error(position, name, f"string expected, got {_lua_type(value)}")


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
            raise _arg_error(1, self.name, f"invalid format option '{opt}'")


def _pack(fmt: object = None, *args: object) -> bytes:
    form = _Format(_string(fmt, 1, "pack"), "pack")
    out = bytearray()
    arg = 0
    for opt, size in form.options():
        pad = form.to_align(len(out), opt, size)
        out += b"\0" * pad
        order = "little" if form.little else "big"
        if opt in "bBhHlLTiI":
            n = _number(args[arg] if arg < len(args) else None, arg + 2, "pack")
            arg += 1
            value = int(n) & ((1 << 64) - 1)  # (Uinttype)(Inttype)n, 64 bits
            out += (value & ((1 << (8 * size)) - 1) if size <= 8 else value).to_bytes(
                size, order)
        elif opt == "x":
            out += b"\0"
        elif opt in "fd":
            n = _number(args[arg] if arg < len(args) else None, arg + 2, "pack")
            arg += 1
            out += _struct.pack(("<" if form.little else ">") + opt, n)
        elif opt in "cs":
            data = _string(args[arg] if arg < len(args) else None, arg + 2, "pack")
            arg += 1
            if size == 0:
                size = len(data)
            if len(data) < size:
                raise _arg_error(arg + 2, "pack", "string too short")
            out += data[:size]
            if opt == "s":
                out += b"\0"
        else:
            form.control(opt)
    return bytes(out)


def _unpack(fmt: object = None, data: object = None, init: object = None, *_: object
            ) -> tuple:
    form = _Format(_string(fmt, 1, "unpack"), "unpack")
    data = _string(data, 2, "unpack")
    pos = 1 if init is None else int(_number(init, 3, "unpack"))
    if pos <= 0:
        raise _arg_error(3, "unpack", "offset must be 1 or greater")
    pos -= 1
    out: list[object] = []
    for opt, size in form.options():
        pos += form.to_align(pos, opt, size)
        if not (size <= len(data) and pos <= len(data) - size):
            raise _arg_error(2, "unpack", "data string too short")
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
                    raise _arg_error(2, "unpack", "data string too short")
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
    form = _Format(_string(fmt, 1, "size"), "size")
    pos = 0
    for opt, size in form.options():
        pos += form.to_align(pos, opt, size)
        if opt == "s":
            raise _arg_error(1, "size", "option 's' has no fixed size")
        if opt == "c" and size == 0:
            raise _arg_error(1, "size", "option 'c0' has no fixed size")
        if not opt.isalnum():
            form.control(opt)
        pos += size
    return pos


def struct_functions() -> dict[bytes, Callable[..., object]]:
    return {b"pack": _pack, b"unpack": _unpack, b"size": _size}


# -- cmsgpack ------------------------------------------------------------------------------------

_MAX_NESTING = 16


def _int64_equivalent(n: float) -> bool:
    return not math.isinf(n) and not math.isnan(n) and -2 ** 63 <= n < 2 ** 63 and int(n) == n


def _encode(value: object, level: int, out: bytearray) -> None:
    kind = type(value)
    if kind is bytes:
        n = len(value)
        if n < 32:
            out.append(0xA0 | n)
        elif n <= 0xFF:
            out += bytes((0xD9, n))
        elif n <= 0xFFFF:
            out += b"\xda" + n.to_bytes(2, "big")
        else:
            out += b"\xdb" + n.to_bytes(4, "big")
        out += value
    elif kind is bool:
        out.append(0xC3 if value else 0xC2)
    elif kind is int or kind is float:
        if _int64_equivalent(value):
            _encode_int(int(value), out)
        elif _as_float32(value) == value:
            out += b"\xca" + _struct.pack(">f", value)
        else:
            out += b"\xcb" + _struct.pack(">d", value)
    elif value is not None and lua51.lua_type(value) == "table" and level < _MAX_NESTING:
        _encode_table(value, level, out)
    else:
        out.append(0xC0)


def _as_float32(value: float) -> float | None:
    try:
        return _struct.unpack("<f", _struct.pack("<f", value))[0]
    except OverflowError:
        return None


def _encode_int(n: int, out: bytearray) -> None:
    if n >= 0:
        if n <= 127:
            out.append(n)
        elif n <= 0xFF:
            out += bytes((0xCC, n))
        elif n <= 0xFFFF:
            out += b"\xcd" + n.to_bytes(2, "big")
        elif n <= 0xFFFFFFFF:
            out += b"\xce" + n.to_bytes(4, "big")
        else:
            out += b"\xcf" + n.to_bytes(8, "big")
    elif n >= -32:
        out += n.to_bytes(1, "big", signed=True)
    elif n >= -128:
        out += b"\xd0" + n.to_bytes(1, "big", signed=True)
    elif n >= -32768:
        out += b"\xd1" + n.to_bytes(2, "big", signed=True)
    elif n >= -2 ** 31:
        out += b"\xd2" + n.to_bytes(4, "big", signed=True)
    else:
        out += b"\xd3" + n.to_bytes(8, "big", signed=True)


def _encode_table(table: object, level: int, out: bytearray) -> None:
    items = list(table.items())
    count = largest = 0
    array = True
    for key, _ in items:
        if type(key) not in (int, float) or key <= 0 or not (
                -2 ** 31 <= key < 2 ** 31 and int(key) == key):
            array = False
            break
        largest = max(largest, int(key))
        count += 1
    if array and largest == count:
        _header(count, 0x90, 0xDC, out)
        for index in range(1, count + 1):
            _encode(table[index], level + 1, out)
        return
    _header(len(items), 0x80, 0xDE, out)
    for key, value in items:
        _encode(key, level + 1, out)
        _encode(value, level + 1, out)


def _header(n: int, fix: int, wide: int, out: bytearray) -> None:
    if n <= 15:
        out.append(fix | n)
    elif n <= 0xFFFF:
        out += bytes((wide,)) + n.to_bytes(2, "big")
    else:
        out += bytes((wide + 1,)) + n.to_bytes(4, "big")


class _Truncated(Exception):
    pass


class _BadFormat(Exception):
    pass


class _Decoder:
    def __init__(self, runtime: lua51.LuaRuntime, data: bytes, pos: int) -> None:
        self.runtime = runtime
        self.data = data
        self.pos = pos

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise _Truncated
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def value(self) -> object:
        byte = self.take(1)[0]
        if byte <= 0x7F:
            return byte
        if byte >= 0xE0:
            return byte - 256
        if 0xA0 <= byte <= 0xBF:
            return self.take(byte & 0x1F)
        if 0x90 <= byte <= 0x9F:
            return self.array(byte & 0xF)
        if 0x80 <= byte <= 0x8F:
            return self.map(byte & 0xF)
        if byte == 0xC0:
            return None
        if byte in (0xC2, 0xC3):
            return byte == 0xC3
        if byte in _INTS:
            size, signed = _INTS[byte]
            return int.from_bytes(self.take(size), "big", signed=signed)
        if byte == 0xCA:
            return _struct.unpack(">f", self.take(4))[0]
        if byte == 0xCB:
            return _struct.unpack(">d", self.take(8))[0]
        if byte in (0xD9, 0xDA, 0xDB):
            size = {0xD9: 1, 0xDA: 2, 0xDB: 4}[byte]
            return self.take(int.from_bytes(self.take(size), "big"))
        if byte in (0xDC, 0xDD):
            return self.array(int.from_bytes(self.take(2 if byte == 0xDC else 4), "big"))
        if byte in (0xDE, 0xDF):
            return self.map(int.from_bytes(self.take(2 if byte == 0xDE else 4), "big"))
        raise _BadFormat

    def array(self, n: int) -> object:
        table = self.runtime.table_from([])
        for index in range(1, n + 1):
            table[index] = self.value()
        return table

    def map(self, n: int) -> object:
        table = self.runtime.table_from([])
        for _ in range(n):
            key = self.value()
            value = self.value()
            if key is not None:
                table[key] = value
        return table


_INTS = {0xCC: (1, False), 0xCD: (2, False), 0xCE: (4, False), 0xCF: (8, False),
         0xD0: (1, True), 0xD1: (2, True), 0xD2: (4, True), 0xD3: (8, True)}


def cmsgpack_functions(runtime: lua51.LuaRuntime) -> dict[bytes, object]:
    def pack(*args: object) -> bytes:
        if not args:
            raise _arg_error(0, "pack", "MessagePack pack needs input.")
        out = bytearray()
        for value in args:
            _encode(value, 0, out)
        return bytes(out)

    def unpack_full(data: object, limit: int, offset: int, name: str) -> tuple:
        data = _string(data, 1, name)
        if offset < 0 or limit < 0:
            raise ScriptError(b"Invalid request to unpack with offset of %d and limit of %d."
                              % (offset, len(data)))
        if offset > len(data):
            raise ScriptError(b"Start offset %d greater than input length %d."
                              % (offset, len(data)))
        decode_all = not limit and not offset
        if decode_all:
            limit = 2 ** 31 - 1
        decoder = _Decoder(runtime, data, offset)
        out: list[object] = []
        while decoder.pos < len(data) and len(out) < limit:
            try:
                out.append(decoder.value())
            except _Truncated:
                raise ScriptError(b"Missing bytes in input.") from None
            except _BadFormat:
                raise ScriptError(b"Bad data format in input.") from None
        if not decode_all:
            out.insert(0, -1 if decoder.pos >= len(data) else decoder.pos)
        return tuple(out)

    def unpack(data: object = None, *_: object) -> tuple:
        return unpack_full(data, 0, 0, "unpack")

    def unpack_one(data: object = None, offset: object = None, *_: object) -> tuple:
        start = 0 if offset is None else int(_number(offset, 2, "unpack_one"))
        return unpack_full(data, 1, start, "unpack_one")

    def unpack_limit(data: object = None, limit: object = None, offset: object = None,
                     *_: object) -> tuple:
        count = int(_number(limit, 2, "unpack_limit"))
        start = 0 if offset is None else int(_number(offset, 3, "unpack_limit"))
        return unpack_full(data, count, start, "unpack_limit")

    return {
        b"pack": pack, b"unpack": unpack, b"unpack_one": unpack_one,
        b"unpack_limit": unpack_limit,
        b"_NAME": b"cmsgpack", b"_VERSION": b"lua-cmsgpack 0.4.0",
        b"_COPYRIGHT": b"Copyright (C) 2012, Salvatore Sanfilippo",
        b"_DESCRIPTION": b"MessagePack C implementation for Lua",
    }
