"""``bit`` (LuaBitOp 1.0.2, ``deps/lua/src/lua_bit.c``): 32-bit operations on Lua numbers."""

from __future__ import annotations

import math
from collections.abc import Callable

from kvrepl.scripting.luavalues import check_number


def _tobit(value: object, position: int, name: str) -> int:
    value = check_number(value, position, name)
    if type(value) is float:
        if not math.isfinite(value):
            return 0
        value = round(value)  # the 2^52+2^51 trick rounds to nearest, ties to even
    value &= 0xFFFFFFFF
    return value - 0x100000000 if value & 0x80000000 else value


def _signed(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - 0x100000000 if value & 0x80000000 else value


def functions() -> dict[bytes, Callable[..., int | bytes]]:
    """The ``bit`` table's functions."""
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
