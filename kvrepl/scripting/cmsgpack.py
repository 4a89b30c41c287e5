"""``cmsgpack`` (lua-cmsgpack 0.4.0, ``deps/lua/src/lua_cmsgpack.c``): MessagePack for Lua
values, with its choices (integers in the smallest form, floats as float32 when exact,
tables as arrays only when their keys are exactly 1..n, nesting cut at 16 levels)."""

from __future__ import annotations

import math
import struct as _struct

from lupa import lua51

from kvrepl.scripting.errors import ScriptError
from kvrepl.scripting.luavalues import arg_error, check_number, check_string

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


def functions(runtime: lua51.LuaRuntime) -> dict[bytes, object]:
    """The ``cmsgpack`` table."""
    def pack(*args: object) -> bytes:
        if not args:
            raise arg_error(0, "pack", "MessagePack pack needs input.")
        out = bytearray()
        for value in args:
            _encode(value, 0, out)
        return bytes(out)

    def unpack_full(data: object, limit: int, offset: int, name: str) -> tuple:
        data = check_string(data, 1, name)
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
        start = 0 if offset is None else int(check_number(offset, 2, "unpack_one"))
        return unpack_full(data, 1, start, "unpack_one")

    def unpack_limit(data: object = None, limit: object = None, offset: object = None,
                     *_: object) -> tuple:
        count = int(check_number(limit, 2, "unpack_limit"))
        start = 0 if offset is None else int(check_number(offset, 3, "unpack_limit"))
        return unpack_full(data, count, start, "unpack_limit")

    return {
        b"pack": pack, b"unpack": unpack, b"unpack_one": unpack_one,
        b"unpack_limit": unpack_limit,
        b"_NAME": b"cmsgpack", b"_VERSION": b"lua-cmsgpack 0.4.0",
        b"_COPYRIGHT": b"Copyright (C) 2012, Salvatore Sanfilippo",
        b"_DESCRIPTION": b"MessagePack C implementation for Lua",
    }
