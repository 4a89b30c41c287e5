"""The C libraries Redis links into its Lua (``deps/lua/src/lua_bit.c``, ``lua_cjson.c``),
written again in Python because lupa's Lua does not ship them.

The functions are handed to Lua as they are: like C functions they keep the calling
script's frame in a tail call, and they fail by raising :class:`ScriptError` with the
message the C function gives ``luaL_error``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from lupa import lua51

from kvrepl.scripting import cjson, packing
from kvrepl.scripting.errors import ScriptError


def load(runtime: lua51.LuaRuntime) -> dict[bytes, object]:
    """The library tables, by global name, ready for the sandbox."""
    return {
        b"bit": runtime.table_from(_bit_functions()),
        b"cjson": runtime.table_from(cjson.functions(runtime)),
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
