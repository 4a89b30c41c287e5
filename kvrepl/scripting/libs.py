"""The C libraries Redis links into its Lua (``bit``, ``cjson``, ``struct``, ``cmsgpack``),
written again in Python because lupa's Lua does not ship them.

The functions are handed to Lua as they are: like C functions they keep the calling
script's frame in a tail call, and they fail by raising
:class:`~kvrepl.scripting.errors.ScriptError` with the message the C function gives
``luaL_error`` (the error handler adds where the script called it).
"""

from __future__ import annotations

from lupa import lua51

from kvrepl.scripting import bitop, cjson, cmsgpack, lua_struct


def load(runtime: lua51.LuaRuntime) -> dict[bytes, object]:
    """The library tables, by global name, ready for the sandbox."""
    return {
        b"bit": runtime.table_from(bitop.functions()),
        b"cjson": runtime.table_from(cjson.functions(runtime)),
        b"struct": runtime.table_from(lua_struct.functions()),
        b"cmsgpack": runtime.table_from(cmsgpack.functions(runtime)),
    }
