"""Lua <-> reply conversions, as Redis 7.0's ``script_lua.c`` makes them.

A command's reply reaches the script as Redis would parse its RESP2 or RESP3 bytes
(``redisProtocolToLuaType``); a script's return value becomes a reply as
``luaReplyToRedisReply`` builds it. Replies are kvrepl's reply values
(:mod:`kvrepl.protocol.replies`), encoded later for the calling client's protocol.
"""

from __future__ import annotations

from collections.abc import Callable

import hiredis
from lupa import lua51

from kvrepl.errors import ReplyError
from kvrepl.protocol.replies import (
    NULL_ARRAY,
    DeferredArray,
    DeferredMap,
    DeferredReply,
    DeferredSet,
    OrderedSet,
    Push,
    Raw,
    Status,
    Verbatim,
    deferred_aggregate,
    encode,
    format_double,
)

lua_type = lua51.lua_type


def to_lua(runtime: lua51.LuaRuntime, value: object, resp3: bool,
           error_table: Callable[[bytes], object]) -> object:
    """A command's reply as the Lua value Redis gives the script."""
    kind = type(value)
    if kind is bytes or kind is int:
        return value
    if kind is str:
        return value.encode()
    if value is None or value is NULL_ARRAY:
        return None if resp3 else False
    if kind is Status:
        return runtime.table_from({b"ok": bytes(value)})
    if isinstance(value, ReplyError):
        return error_table(b"-" + value.message.encode("utf-8", "replace"))
    if kind is list or kind is tuple or kind is Push or kind is DeferredArray:
        return runtime.table_from([to_lua(runtime, v, resp3, error_table) for v in value])
    if kind is dict or kind is DeferredMap:
        if resp3:
            inner = runtime.table_from({to_lua(runtime, k, resp3, error_table):
                                        to_lua(runtime, v, resp3, error_table)
                                        for k, v in value.items()})
            return runtime.table_from({b"map": inner})
        flat: list[object] = []
        for k, v in value.items():
            flat.append(to_lua(runtime, k, resp3, error_table))
            flat.append(to_lua(runtime, v, resp3, error_table))
        return runtime.table_from(flat)
    if kind is set or kind is frozenset or kind is OrderedSet or kind is DeferredSet:
        items = [to_lua(runtime, v, resp3, error_table) for v in value]
        if resp3:
            return runtime.table_from({b"set": runtime.table_from(dict.fromkeys(items, True))})
        return runtime.table_from(items)
    if kind is float:
        if resp3:
            return runtime.table_from({b"double": value})
        return format_double(value)
    if kind is bool:
        return value if resp3 else int(value)
    if kind is Verbatim:
        if resp3:
            return runtime.table_from({b"verbatim_string": runtime.table_from(
                {b"format": b"txt", b"string": bytes(value)})})
        return bytes(value)
    if kind is Raw or kind is DeferredReply:
        return _raw_to_lua(runtime, bytes(value), resp3, error_table)
    raise TypeError(f"cannot give {kind.__name__} to a script")


def _raw_to_lua(runtime: lua51.LuaRuntime, data: bytes, resp3: bool,
                error_table: Callable[[bytes], object]) -> object:
    """An already encoded reply (DEBUG PROTOCOL and the like), parsed as Redis does."""
    reader = hiredis.Reader(notEnoughData=None)
    reader.feed(data)
    parsed = reader.gets()
    if parsed is None:
        return None if resp3 else False
    return to_lua(runtime, _from_hiredis(parsed), resp3, error_table)


def _from_hiredis(value: object) -> object:
    if isinstance(value, hiredis.ReplyError):
        return ReplyError(str(value))
    if isinstance(value, list):
        return [_from_hiredis(v) for v in value]
    return value


def from_lua(value: object, resp3: bool, caller_resp3: bool) -> object:
    """A script's return value as the reply Redis sends (``luaReplyToRedisReply``):
    booleans follow the script's protocol (``resp3``), the shapes of maps, sets, doubles
    and big numbers the calling client's (``caller_resp3``). A table's length is set
    after its elements (addReplyDeferredLen), at every depth."""
    kind = type(value)
    if kind is bytes:
        return value
    if kind is bool:
        if resp3:
            return value
        return 1 if value else None
    if kind is int:
        return value
    if kind is float:
        # (long long) of a double: truncation; out of range is what x86 gives
        return int(value) if value == value and abs(value) < 2 ** 63 else -2 ** 63
    if value is None or lua_type(value) != "table":
        return None
    return _table_reply(value, resp3, caller_resp3)


def _table_reply(table: object, resp3: bool, caller_resp3: bool) -> object:
    err = table[b"err"]
    if type(err) is bytes:
        return ReplyError(_error_text(err))
    ok = table[b"ok"]
    if type(ok) is bytes:
        return Status(_one_line(ok))
    double = table[b"double"]
    if type(double) in (int, float):
        return float(double)
    big = table[b"big_number"]
    if type(big) is bytes:
        big = _one_line(big)
        return Raw(b"(%s\r\n" % big) if caller_resp3 else big
    verbatim = table[b"verbatim_string"]
    if lua_type(verbatim) == "table":
        fmt, text = verbatim[b"format"], verbatim[b"string"]
        if type(fmt) is bytes and type(text) is bytes:
            if not caller_resp3:
                return text
            return Raw(b"=%d\r\n%s:%s\r\n" % (len(text) + 4, fmt[:3].ljust(3, b"\0"), text))
    mapping = table[b"map"]
    if lua_type(mapping) == "table":
        pairs = [(from_lua(k, resp3, caller_resp3), from_lua(v, resp3, caller_resp3))
                 for k, v in mapping.items()]
        try:
            return (DeferredMap(pairs) if len(dict(pairs)) == len(pairs)
                    else _raw_map(pairs, caller_resp3))
        except TypeError:  # a key that is itself an array
            return _raw_map(pairs, caller_resp3)
    members = table[b"set"]
    if lua_type(members) == "table":
        return DeferredSet(from_lua(k, resp3, caller_resp3) for k in members.keys())
    out = DeferredArray()
    index = 1
    while True:
        item = table[index]
        if item is None:
            return out
        out.append(from_lua(item, resp3, caller_resp3))
        index += 1


def _raw_map(pairs: list[tuple[object, object]], resp3: bool) -> DeferredReply:
    """A map whose keys a dict cannot hold (repeated, or arrays), encoded here."""
    head = (b"%%%d\r\n" if resp3 else b"*%d\r\n") % (len(pairs) * (1 if resp3 else 2))
    return deferred_aggregate(head, [encode(item, resp3) for pair in pairs for item in pair])


def _one_line(data: bytes) -> bytes:
    return data.replace(b"\r", b" ").replace(b"\n", b" ")


def _error_text(err: bytes) -> str:
    text = err.decode("utf-8", "replace")
    return text[1:] if text.startswith("-") else text
