"""Lua values as Python callbacks receive them from lupa (strings as bytes, numbers as int
or float, tables and functions as lupa objects), read the way Lua's C API reads them, and
the argument errors ``luaL_check*`` raise."""

from __future__ import annotations

from lupa import lua51

from kvrepl.scripting.errors import ScriptError


def type_name(value: object) -> str:
    """lua_typename of an argument; None stands for an argument not given ("no value")."""
    kind = type(value)
    if value is None:
        return "no value"
    if kind is bool:
        return "boolean"
    if kind is bytes:
        return "string"
    if kind is int or kind is float:
        return "number"
    return lua51.lua_type(value) or "userdata"


def to_string(value: object) -> bytes | None:
    """lua_tolstring: strings, and numbers as Lua prints them (``%.14g``); None otherwise."""
    kind = type(value)
    if kind is bytes:
        return value
    if kind is int or kind is float:
        return b"%.14g" % value
    return None


def to_number(value: object) -> float | None:
    """lua_tonumber: numbers, and strings that read as one (decimal or hex)."""
    kind = type(value)
    if kind is int or kind is float:
        return value
    if kind is bytes:
        text = value.strip()
        try:
            return float(text)
        except ValueError:
            pass
        try:
            return float(int(text, 16)) if text.lower().startswith((b"0x", b"-0x")) else None
        except ValueError:
            return None
    return None


def arg_error(position: int, name: str, message: str) -> ScriptError:
    """luaL_argerror: ``bad argument #N to 'name' (message)``."""
    return ScriptError(f"bad argument #{position} to '{name}' ({message})".encode())


def check_number(value: object, position: int, name: str) -> float:
    """luaL_checknumber."""
    number = to_number(value)
    if number is None:
        raise arg_error(position, name, f"number expected, got {type_name(value)}")
    return number


def check_int(value: object, position: int, name: str) -> int:
    """luaL_checkint / luaL_checkinteger: the number truncated."""
    return int(check_number(value, position, name))


def check_string(value: object, position: int, name: str) -> bytes:
    """luaL_checklstring."""
    text = to_string(value)
    if text is None:
        raise arg_error(position, name, f"string expected, got {type_name(value)}")
    return text
