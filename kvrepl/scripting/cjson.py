"""``cjson`` (lua-cjson 2.1.0 as Redis 7.0 builds it): encode and decode with its rules and
error messages, ``cjson.null``, and the configuration functions (their settings last as
long as the Lua state, as in Redis)."""

from __future__ import annotations

import math
import re
import sys

from lupa import lua51

from kvrepl.scripting.errors import ScriptError
from kvrepl.scripting.luavalues import arg_error, type_name


class _JsonNull:
    """``cjson.null``: a value no Lua type equals (Redis's is a NULL lightuserdata)."""

    __slots__ = ()


JSON_NULL = _JsonNull()
_ESCAPES = {i: b"\\u%04x" % i for i in range(32)}
_ESCAPES.update({8: b"\\b", 9: b"\\t", 10: b"\\n", 12: b"\\f", 13: b"\\r", 34: b'\\"',
                 92: b"\\\\", 47: b"\\/", 127: b"\\u007f"})
_ESCAPE_RE = re.compile(rb'[\x00-\x1f"\\/\x7f]')
# strtod's view of a decimal number (hex, inf and nan are rejected before it)
_NUMBER = re.compile(rb"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
_HEX_NUMBER = re.compile(rb"[-+]?0[xX]([0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)([pP][-+]?\d+)?")
_WHITESPACE = b" \t\n\r"
_SINGLE = {ord("{"): "T_OBJ_BEGIN", ord("}"): "T_OBJ_END", ord("["): "T_ARR_BEGIN",
           ord("]"): "T_ARR_END", ord(","): "T_COMMA", ord(":"): "T_COLON"}
_UNKNOWN = frozenset(b'fiInNt"+-0123456789')
_SIMPLE_ESCAPES = {ord('"'): b'"', ord("\\"): b"\\", ord("/"): b"/", ord("b"): b"\b",
                   ord("t"): b"\t", ord("n"): b"\n", ord("f"): b"\f", ord("r"): b"\r"}


class _Config:
    """The settings the configuration functions change."""

    def __init__(self) -> None:
        self.sparse_convert = 0
        self.sparse_ratio = 2
        self.sparse_safe = 10
        self.encode_max_depth = 1000
        self.decode_max_depth = 1000
        self.encode_invalid_numbers = 0  # 0 off, 1 on, 2 null
        self.decode_invalid_numbers = 1
        self.keep_buffer = 1
        self.precision = 14


# -- encoding ------------------------------------------------------------------------------------

class _Encoder:
    def __init__(self, config: _Config) -> None:
        self.config = config

    def value(self, value: object, depth: int, out: bytearray) -> None:
        kind = type(value)
        if kind is bytes:
            out += b'"' + _ESCAPE_RE.sub(lambda m: _ESCAPES[m.group()[0]], value) + b'"'
        elif kind is bool:
            out += b"true" if value else b"false"
        elif kind is int or kind is float:
            out += self.number(value, "number")
        elif value is None or value is JSON_NULL:
            out += b"null"
        elif kind is not bytes and value is not None and lua51.lua_type(value) == "table":
            depth += 1
            if depth > self.config.encode_max_depth:
                raise ScriptError(b"Cannot serialise, excessive nesting (%d)" % depth)
            self.table(value, depth, out)
        else:
            raise ScriptError(b"Cannot serialise %s: type not supported"
                              % type_name(value).encode())

    def number(self, value: float, what: str) -> bytes:
        invalid = self.config.encode_invalid_numbers
        if math.isinf(value) or math.isnan(value):
            if invalid == 0:
                raise ScriptError(b"Cannot serialise %s: must not be NaN or Inf" % what.encode())
            if invalid == 2:
                return b"null"
            if math.isnan(value):
                return b"nan"
        return b"%.*g" % (self.config.precision, float(value))

    def table(self, table: object, depth: int, out: bytearray) -> None:
        items = list(table.items())
        length = self.array_length(items)
        if length > 0:
            out += b"["
            for index in range(1, length + 1):
                if index > 1:
                    out += b","
                self.value(table[index], depth, out)
            out += b"]"
            return
        out += b"{"
        for position, (key, value) in enumerate(items):
            if position:
                out += b","
            if type(key) is bytes:
                self.value(key, depth, out)
            elif type(key) in (int, float):
                out += b'"' + self.number(key, "number") + b'"'
            else:
                raise ScriptError(b"Cannot serialise %s: table key must be a number or string"
                                  % type_name(key).encode())
            out += b":"
            self.value(value, depth, out)
        out += b"}"

    def array_length(self, items: list[tuple[object, object]]) -> int:
        """lua_array_length: the array's size, or -1 for an object."""
        largest = 0
        for key, _ in items:
            if type(key) not in (int, float) or not key or math.floor(key) != key or key < 1:
                return -1
            largest = max(largest, int(key))
        config = self.config
        if config.sparse_ratio > 0 and largest > len(items) * config.sparse_ratio \
                and largest > config.sparse_safe:
            if not config.sparse_convert:
                raise ScriptError(b"Cannot serialise table: excessively sparse array")
            return -1
        return largest


# -- decoding ------------------------------------------------------------------------------------

class _Token:
    __slots__ = ("kind", "value", "index")

    def __init__(self, kind: str, index: int, value: object = None) -> None:
        self.kind = kind
        self.index = index
        self.value = value


class _Decoder:
    """json_next_token and the parse contexts, over the bytes up to the first NUL (the C
    code reads a C string)."""

    def __init__(self, runtime: lua51.LuaRuntime, config: _Config, data: bytes) -> None:
        self.runtime = runtime
        self.config = config
        end = data.find(b"\0")
        self.data = data if end < 0 else data[:end]
        self.pos = 0
        self.depth = 0

    def error(self, expected: str, token: _Token) -> ScriptError:
        found = token.value if token.kind == "T_ERROR" else token.kind
        return ScriptError(b"Expected %s but found %s at character %d"
                           % (expected.encode(), found.encode(), token.index + 1))

    def token(self) -> _Token:
        data = self.data
        while self.pos < len(data) and data[self.pos] in _WHITESPACE:
            self.pos += 1
        index = self.pos
        if index >= len(data):
            return _Token("T_END", index)
        ch = data[index]
        if ch in _SINGLE:
            self.pos += 1
            return _Token(_SINGLE[ch], index)
        if ch not in _UNKNOWN:
            return _Token("T_ERROR", index, "invalid token")
        if ch == ord('"'):
            return self.string(index)
        if ch == ord("-") or ord("0") <= ch <= ord("9"):
            if not self.config.decode_invalid_numbers and self.invalid_number():
                return _Token("T_ERROR", index, "invalid number")
            return self.number(index)
        for word, kind, value in ((b"true", "T_BOOLEAN", True), (b"false", "T_BOOLEAN", False),
                                  (b"null", "T_NULL", JSON_NULL)):
            if data.startswith(word, index):
                self.pos += len(word)
                return _Token(kind, index, value)
        if self.config.decode_invalid_numbers and self.invalid_number():
            return self.number(index)
        return _Token("T_ERROR", index, "invalid token")

    def invalid_number(self) -> bool:
        """json_is_invalid_number: +, hex, leading zeros, inf, nan."""
        data, p = self.data, self.pos
        if data[p:p + 1] == b"+":
            return True
        if data[p:p + 1] == b"-":
            p += 1
        if data[p:p + 1] == b"0":
            nxt = data[p + 1:p + 2]
            return nxt in (b"x", b"X") or (nxt != b"" and nxt.isdigit())
        if p < len(data) and data[p] <= ord("9"):
            return False
        return data[p:p + 3].lower() in (b"inf", b"nan")

    def number(self, index: int) -> _Token:
        data = self.data
        rest = data[index:]
        for special, value in ((b"infinity", math.inf), (b"inf", math.inf),
                               (b"nan", math.nan)):
            for sign, factor in ((b"", 1), (b"+", 1), (b"-", -1)):
                if rest[:len(sign) + len(special)].lower() == sign + special:
                    self.pos = index + len(sign) + len(special)
                    return _Token("T_NUMBER", index, value * factor)
        match = _HEX_NUMBER.match(rest)
        if match:
            self.pos = index + match.end()
            return _Token("T_NUMBER", index, float.fromhex(match.group().decode()))
        match = _NUMBER.match(rest)
        if not match:
            return _Token("T_ERROR", index, "invalid number")
        self.pos = index + match.end()
        return _Token("T_NUMBER", index, float(match.group()))

    def string(self, index: int) -> _Token:
        data = self.data
        self.pos += 1
        out = bytearray()
        while True:
            if self.pos >= len(data):
                return _Token("T_ERROR", self.pos, "unexpected end of string")
            ch = data[self.pos]
            if ch == ord('"'):
                break
            if ch == ord("\\"):
                escape = data[self.pos + 1] if self.pos + 1 < len(data) else 0
                if escape == ord("u"):
                    if not self.unicode(out):
                        return _Token("T_ERROR", self.pos, "invalid unicode escape code")
                    continue
                simple = _SIMPLE_ESCAPES.get(escape)
                if simple is None:
                    return _Token("T_ERROR", self.pos, "invalid escape code")
                out += simple
                self.pos += 2
                continue
            out.append(ch)
            self.pos += 1
        self.pos += 1
        return _Token("T_STRING", index, bytes(out))

    def unicode(self, out: bytearray) -> bool:
        """json_append_unicode_escape: \\uXXXX (and a surrogate pair) as UTF-8."""
        data, pos = self.data, self.pos
        code = _hex4(data[pos + 2:pos + 6])
        if code is None:
            return False
        length = 6
        if code & 0xF800 == 0xD800:
            if code & 0x400 or data[pos + 6:pos + 8] != b"\\u":
                return False
            low = _hex4(data[pos + 8:pos + 12])
            if low is None or low & 0xFC00 != 0xDC00:
                return False
            code = (((code & 0x3FF) << 10) | (low & 0x3FF)) + 0x10000
            length = 12
        out += chr(code).encode("utf-8", "surrogatepass")
        self.pos = pos + length
        return True

    def descend(self) -> None:
        self.depth += 1
        if self.depth > self.config.decode_max_depth:
            raise ScriptError(b"Found too many nested data structures (%d) at character %d"
                              % (self.depth, self.pos))

    def parse(self) -> object:
        """One JSON value (json_process_value and the array/object contexts), with an
        explicit stack: nesting is bounded by decode_max_depth, not by Python's."""
        stack: list[list] = []  # [table, next array index or None for an object, key]
        token = self.token()
        while True:
            kind = token.kind
            if kind in ("T_STRING", "T_NUMBER", "T_BOOLEAN", "T_NULL"):
                value = token.value
            elif kind in ("T_OBJ_BEGIN", "T_ARR_BEGIN"):
                self.descend()
                table = self.runtime.table_from([])
                token = self.token()
                if token.kind == ("T_OBJ_END" if kind == "T_OBJ_BEGIN" else "T_ARR_END"):
                    self.depth -= 1
                    value = table
                elif kind == "T_ARR_BEGIN":
                    stack.append([table, 1, None])
                    continue
                else:
                    stack.append([table, None, self.key(token)])
                    token = self.token()
                    continue
            else:
                raise self.error("value", token)
            # attach the value to its container, closing the containers that end here
            while True:
                if not stack:
                    return value
                frame = stack[-1]
                table, index, key = frame
                if index is not None:
                    table[index] = value
                    frame[1] = index + 1
                    end, expected = "T_ARR_END", "comma or array end"
                else:
                    table[key] = value
                    end, expected = "T_OBJ_END", "comma or object end"
                token = self.token()
                if token.kind == end:
                    self.depth -= 1
                    stack.pop()
                    value = table
                    continue
                if token.kind != "T_COMMA":
                    raise self.error(expected, token)
                token = self.token()
                if index is None:
                    frame[2] = self.key(token)
                    token = self.token()
                break

    def key(self, token: _Token) -> bytes:
        """An object's key and its colon."""
        if token.kind != "T_STRING":
            raise self.error("object key string", token)
        colon = self.token()
        if colon.kind != "T_COLON":
            raise self.error("colon", colon)
        return token.value


def _hex4(digits: bytes) -> int | None:
    if len(digits) != 4 or not all(c in b"0123456789abcdefABCDEF" for c in digits):
        return None
    return int(digits, 16)


# -- the library table -----------------------------------------------------------------------

def functions(runtime: lua51.LuaRuntime) -> dict[bytes, object]:
    config = _Config()

    def encode(*args: object) -> bytes:
        if len(args) != 1:
            raise arg_error(1, "encode", "expected 1 argument")
        out = bytearray()
        limit = sys.getrecursionlimit()
        # each nesting level is a few Python frames; encode_max_depth bounds them
        sys.setrecursionlimit(max(limit, 4 * config.encode_max_depth + 1000))
        try:
            _Encoder(config).value(args[0], 0, out)
        finally:
            sys.setrecursionlimit(limit)
        return bytes(out)

    def decode(*args: object) -> object:
        if len(args) != 1:
            raise arg_error(1, "decode", "expected 1 argument")
        text = args[0]
        if type(text) in (int, float):
            text = b"%.14g" % text
        if type(text) is not bytes:
            raise arg_error(1, "decode", f"string expected, got {type_name(text)}")
        if len(text) >= 2 and (not text[0] or not text[1]):
            raise ScriptError(b"JSON parser does not support UTF-16 or UTF-32")
        decoder = _Decoder(runtime, config, text)
        value = decoder.parse()
        token = decoder.token()
        if token.kind != "T_END":
            raise decoder.error("the end", token)
        return value

    def options(name: str, args: tuple, count: int) -> tuple:
        if len(args) > count:
            raise arg_error(count + 1, name, "found too many arguments")
        return args + (None,) * (count - len(args))

    def integer(name: str, value: object, attribute: str, low: int, high: int) -> int:
        if value is not None:
            if type(value) not in (int, float):
                raise arg_error(1, name, f"number expected, got {type_name(value)}")
            if not low <= int(value) <= high:
                raise arg_error(1, name, f"expected integer between {low} and {high}")
            setattr(config, attribute, int(value))
        return getattr(config, attribute)

    def enum(name: str, value: object, attribute: str, choices: tuple[bytes, ...]) -> object:
        if value is not None:
            if type(value) is bool:
                setattr(config, attribute, int(value))
            elif type(value) is bytes and value in choices:
                setattr(config, attribute, choices.index(value))
            else:
                shown = value.decode("utf-8", "replace") if type(value) is bytes else None
                raise arg_error(1, name, f"invalid option '{shown}'" if shown is not None
                                 else f"string expected, got {type_name(value)}")
        setting = getattr(config, attribute)
        return bool(setting) if setting in (0, 1) else choices[setting]

    def encode_sparse_array(*args: object) -> tuple:
        convert, ratio, safe = options("encode_sparse_array", args, 3)
        return (enum("encode_sparse_array", convert, "sparse_convert", (b"off", b"on")),
                integer("encode_sparse_array", ratio, "sparse_ratio", 0, 2 ** 31 - 1),
                integer("encode_sparse_array", safe, "sparse_safe", 0, 2 ** 31 - 1))

    def single(name: str, attribute: str, low: int, high: int):  # noqa: ANN202
        def function(*args: object) -> int:
            (value,) = options(name, args, 1)
            return integer(name, value, attribute, low, high)
        return function

    def switch(name: str, attribute: str, choices: tuple[bytes, ...]):  # noqa: ANN202
        def function(*args: object) -> object:
            (value,) = options(name, args, 1)
            return enum(name, value, attribute, choices)
        return function

    return {
        b"encode": encode, b"decode": decode, b"null": JSON_NULL,
        b"encode_sparse_array": encode_sparse_array,
        b"encode_max_depth": single("encode_max_depth", "encode_max_depth", 1, 2 ** 31 - 1),
        b"decode_max_depth": single("decode_max_depth", "decode_max_depth", 1, 2 ** 31 - 1),
        b"encode_number_precision": single("encode_number_precision", "precision", 1, 14),
        b"encode_keep_buffer": switch("encode_keep_buffer", "keep_buffer", (b"off", b"on")),
        b"encode_invalid_numbers": switch("encode_invalid_numbers", "encode_invalid_numbers",
                                          (b"off", b"on", b"null")),
        b"decode_invalid_numbers": switch("decode_invalid_numbers", "decode_invalid_numbers",
                                          (b"off", b"on")),
        b"new": lambda *args: runtime.table_from(functions(runtime)),
        b"_NAME": b"cjson", b"_VERSION": b"2.1.0",
    }
