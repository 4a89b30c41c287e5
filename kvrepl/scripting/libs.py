"""The C libraries Redis links into its Lua (``deps/lua/src/lua_bit.c``, ``lua_cjson.c``),
written again in Python because lupa's Lua does not ship them.

The functions are handed to Lua as they are: like C functions they keep the calling
script's frame in a tail call, and they fail by raising :class:`ScriptError` with the
message the C function gives ``luaL_error``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable

from lupa import lua51

from kvrepl.scripting import packing
from kvrepl.scripting.errors import ScriptError


def load(runtime: lua51.LuaRuntime) -> dict[bytes, object]:
    """The library tables, by global name, ready for the sandbox."""
    return {
        b"bit": runtime.table_from(_bit_functions()),
        b"cjson": runtime.table_from(_cjson_functions(runtime)),
        b"struct": runtime.table_from(packing.struct_functions()),
        b"cmsgpack": runtime.table_from(packing.cmsgpack_functions(runtime)),
    }


# -- bit (LuaBitOp 1.0.2) ----------------------------------------------------------------------

def _tobit(value: object, position: int, name: str) -> int:
    if type(value) is bytes:
        try:
            value = float(value)
        except ValueError:
            raise _ArgError(position, name, "number expected, got string") from None
    if type(value) not in (int, float):
        raise _ArgError(position, name, f"number expected, got {_lua_type(value)}")
    if type(value) is float:
        if not math.isfinite(value):
            return 0
        value = round(value)  # the 2^52+2^51 trick rounds to nearest, ties to even
    value &= 0xFFFFFFFF
    return value - 0x100000000 if value & 0x80000000 else value


class _ArgError(ScriptError):
    def __init__(self, position: int, name: str, what: str) -> None:
        super().__init__(f"bad argument #{position} to '{name}' ({what})".encode())


def _lua_type(value: object) -> str:
    if value is None:
        return "no value"
    if type(value) is bool:
        return "boolean"
    return lua51.lua_type(value) or "userdata"


def _signed(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - 0x100000000 if value & 0x80000000 else value


def _bit_functions() -> dict[bytes, Callable[..., int | bytes]]:
    def unary(name: str, op: Callable[[int], int]) -> Callable[..., int]:
        def function(x: object = None, *_: object) -> int:
            return _signed(op(_tobit(x, 1, name)))
        return function

    def fold(name: str, op: Callable[[int, int], int]) -> Callable[..., int]:
        def function(*args: object) -> int:
            result = _tobit(args[0] if args else None, 1, name)
            for position, arg in enumerate(args[1:], 2):
                result = op(result, _tobit(arg, position, name))
            return _signed(result)
        return function

    def shift(name: str, op: Callable[[int, int], int]) -> Callable[..., int]:
        def function(x: object = None, n: object = None, *_: object) -> int:
            value = _tobit(x, 1, name) & 0xFFFFFFFF
            return _signed(op(value, _tobit(n, 2, name) & 31))
        return function

    def tohex(x: object = None, n: object = None, *_: object) -> bytes:
        value = _tobit(x, 1, "tohex") & 0xFFFFFFFF
        digits = 8 if n is None else _tobit(n, 2, "tohex")
        upper = digits < 0
        digits = min(abs(digits), 8)
        text = f"{value:08X}" if upper else f"{value:08x}"
        return text[8 - digits:].encode()

    def arshift(value: int, n: int) -> int:
        return _signed(value) >> n

    return {
        b"tobit": unary("tobit", lambda x: x),
        b"bnot": unary("bnot", lambda x: ~x),
        b"bswap": unary("bswap", lambda x: int.from_bytes(
            (x & 0xFFFFFFFF).to_bytes(4, "big"), "little")),
        b"band": fold("band", lambda a, b: a & b),
        b"bor": fold("bor", lambda a, b: a | b),
        b"bxor": fold("bxor", lambda a, b: a ^ b),
        b"lshift": shift("lshift", lambda v, n: v << n),
        b"rshift": shift("rshift", lambda v, n: v >> n),
        b"arshift": shift("arshift", arshift),
        b"rol": shift("rol", lambda v, n: (v << n) | (v >> (32 - n)) if n else v),
        b"ror": shift("ror", lambda v, n: (v >> n) | (v << (32 - n)) if n else v),
        b"tohex": tohex,
    }


# -- cjson (lua-cjson 2.1.0 as Redis configures it) --------------------------------------------

class _JsonNull:
    """``cjson.null``: a value no Lua type equals (Redis's is a NULL lightuserdata)."""

    __slots__ = ()


JSON_NULL = _JsonNull()
_ESCAPES = {i: f"\\u{i:04x}" for i in range(32)}
_ESCAPES.update({8: "\\b", 9: "\\t", 10: "\\n", 12: "\\f", 13: "\\r", 34: '\\"', 92: "\\\\",
                 47: "\\/"})


def _escape(data: bytes) -> bytes:
    out = bytearray(b'"')
    for byte in data:
        escaped = _ESCAPES.get(byte)
        if escaped is None:
            out.append(byte)
        else:
            out += escaped.encode()
    out.append(34)
    return bytes(out)


def _format_number(value: float) -> bytes:
    if type(value) is float and not math.isfinite(value):
        raise ValueError("Cannot serialise number: must not be NaN or Inf")
    if type(value) is int:
        value = float(value)
    return (b"%.14g" % value)


def _cjson_functions(runtime: lua51.LuaRuntime) -> dict[bytes, object]:
    def encode_value(value: object, depth: int) -> bytes:
        kind = type(value)
        if kind is bytes:
            return _escape(value)
        if kind is bool:
            return b"true" if value else b"false"
        if kind is int or kind is float:
            return _format_number(value)
        if value is None or value is JSON_NULL:
            return b"null"
        if lua51.lua_type(value) == "table":
            if depth > 1000:
                raise ValueError("Cannot serialise, excessive nesting (1001)")
            return encode_table(value, depth + 1)
        raise ValueError(f"Cannot serialise {_lua_type(value)}: type not supported")

    def encode_table(table: object, depth: int) -> bytes:
        items = list(table.items())
        length = _array_length(items)
        if length is not None and (length > 0 or not items):
            if not items:
                return b"{}"
            values = dict(items)
            return b"[" + b",".join(encode_value(values.get(i), depth)
                                    for i in range(1, length + 1)) + b"]"
        parts = []
        for key, value in items:
            if type(key) is bytes:
                name = _escape(key)
            elif type(key) in (int, float):
                name = b'"' + _format_number(key) + b'"'
            else:
                raise ValueError("Cannot serialise table: table key must be a number or string")
            parts.append(name + b":" + encode_value(value, depth))
        return b"{" + b",".join(parts) + b"}"

    def encode(*args: object) -> bytes:
        if len(args) != 1:
            raise _ArgError(1, "encode", "expected 1 argument")
        try:
            return encode_value(args[0], 0)
        except ValueError as err:
            raise ScriptError(str(err).encode()) from None

    def to_lua(value: object) -> object:
        if isinstance(value, str):
            return value.encode("utf-8", "surrogateescape")
        if isinstance(value, list):
            return runtime.table_from([to_lua(v) for v in value])
        if isinstance(value, dict):
            return runtime.table_from({to_lua(k): to_lua(v) for k, v in value.items()})
        if value is None:
            return JSON_NULL
        if type(value) is int:
            return float(value)
        return value

    def decode(*args: object) -> object:
        if len(args) != 1:
            raise _ArgError(1, "decode", "expected 1 argument")
        text = args[0]
        if type(text) in (int, float):
            text = b"%.14g" % text
        if type(text) is not bytes:
            raise _ArgError(1, "decode", f"string expected, got {_lua_type(text)}")
        try:
            parsed = json.loads(text.decode("utf-8", "surrogateescape"),
                                parse_constant=_reject_constant)
        except ValueError as err:
            raise ScriptError(b"Expected value but found invalid token at character %d"
                              % _position(err)) from None
        return to_lua(parsed)

    return {b"encode": encode, b"decode": decode, b"null": JSON_NULL}


def _reject_constant(name: str) -> object:
    raise ValueError(name)


def _position(err: ValueError) -> int:
    return getattr(err, "pos", 0) + 1


def _array_length(items: list[tuple[object, object]]) -> int | None:
    """lua_array_length: the array size when every key is a positive integer and the
    array is not excessively sparse, else None (an object)."""
    largest = 0
    for key, _ in items:
        if type(key) is float and key == int(key):
            key = int(key)
        if type(key) is not int or key < 1:
            return None
        largest = max(largest, key)
    if largest > 10 and largest > len(items) * 2:
        raise ValueError("Cannot serialise table: excessively sparse array")
    return largest
