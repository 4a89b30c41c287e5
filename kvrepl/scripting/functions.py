"""Function libraries (Redis 7.0 ``functions.c``): FUNCTION LOAD's libraries, the functions
they register, FCALL, and the DUMP/RESTORE payload (also the RDB's FUNCTION2 records)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from time import monotonic
from typing import TYPE_CHECKING

from lupa import lua51

from kvrepl.errors import ReplyError
from kvrepl.protocol.replies import OrderedSet, Status
from kvrepl.rdb import constants as C
from kvrepl.rdb.crc import crc64
from kvrepl.rdb.errors import DumpPayloadError, RdbError
from kvrepl.rdb.payload import check_payload
from kvrepl.rdb.primitives import encode_str, read_str
from kvrepl.scripting.luavalues import to_string
from kvrepl.scripting.runtime import BUSY_EVAL, SCRIPT_FLAGS, LuaState

if TYPE_CHECKING:
    from kvrepl.commands.core import Engine, Session
    from kvrepl.scripting.state import ScriptingState

LOAD_TIMEOUT = 0.5  # LOAD_TIMEOUT_MS: how long a library's code may run at FUNCTION LOAD
_NAME = re.compile(rb"[a-zA-Z0-9_]+\Z")
BAD_NAME = ("Library names can only contain letters, numbers, or underscores(_) and must be "
            "at least one character long")


@dataclass(slots=True)
class Function:
    """One registered function: its Lua callback, description and flags."""

    name: bytes
    callback: object
    description: bytes | None
    flags: frozenset[str]
    library: Library


@dataclass
class Library:
    """A library: its name, full code (shebang included) and functions."""

    name: bytes
    code: bytes
    functions: dict[bytes, Function] = field(default_factory=dict)

    def add_function(self, name: bytes, callback: object, description: bytes | None,
                     flags: frozenset[str]) -> None:
        """functionLibCreateFunction; ValueError with Redis's message when refused."""
        if not _NAME.match(name):
            raise ValueError(BAD_NAME)
        if name in self.functions:
            raise ValueError("Function already exists in the library")
        self.functions[name] = Function(name, callback, description, flags, self)


def parse_metadata(code: bytes) -> tuple[bytes, bytes]:
    """functionExtractLibMetaData: (library name, code after the shebang line)."""
    if not code.startswith(b"#!"):
        raise ReplyError("ERR Missing library metadata")
    end = code.find(b"\n")
    if end < 0:
        raise ReplyError("ERR Invalid library metadata")
    parts = code[:end].split()
    if not parts:
        raise ReplyError("ERR Invalid library metadata")
    engine = parts[0][2:]
    name = None
    for part in parts[1:]:
        if part[:5].lower() == b"name=":
            if name is not None:
                raise ReplyError(
                    "ERR Invalid metadata value, name argument was given multiple times")
            name = part[5:]
            continue
        raise ReplyError(
            f"ERR Invalid metadata value given: {part.decode('utf-8', 'replace')}")
    if name is None:
        raise ReplyError("ERR Library name was not given")
    if not _NAME.match(name):
        raise ReplyError("ERR " + BAD_NAME)
    if engine.upper() != b"LUA":
        raise ReplyError(f"ERR Engine '{engine.decode('utf-8', 'replace')}' not found")
    return name, code[end:]


class FunctionsState:
    """The libraries and their functions, compiled in a Lua state of their own."""

    def __init__(self, engine: Engine, scripting: ScriptingState) -> None:
        self.engine = engine
        self.scripting = scripting
        self.lua = LuaState(engine, register_function=self._register_function)
        self.libraries: dict[bytes, Library] = {}
        self.functions: dict[bytes, Function] = {}

    def _register_function(self, *args: object) -> None:
        """redis.register_function(name, callback) or ({function_name=, callback=,
        flags=, description=}) (luaRegisterFunction)."""
        library = self.lua.loading
        if library is None:
            raise self.lua.fail(
                b"redis.register_function can only be called on FUNCTION LOAD command")
        if not 1 <= len(args) <= 2:
            raise self.lua.fail(b"wrong number of arguments to redis.register_function")
        description = None
        flags: frozenset[str] = frozenset()
        if len(args) == 2:
            name = to_string(args[0])
            if name is None:
                raise self.lua.fail(b"first argument to redis.register_function must be a string")
            callback = args[1]
            if lua51.lua_type(callback) != "function":
                raise self.lua.fail(
                    b"second argument to redis.register_function must be a function")
        else:
            name, callback, description, flags = self._named_arguments(args[0])
        try:
            library.add_function(name, callback, description, flags)
        except ValueError as err:
            raise self.lua.fail(str(err).encode()) from None

    def _named_arguments(self, table: object) -> tuple[bytes, object, bytes | None,
                                                       frozenset[str]]:
        if lua51.lua_type(table) != "table":
            raise self.lua.fail(
                b"calling redis.register_function with a single argument is only applicable "
                b"to Lua table (representing named arguments).")
        name = description = callback = None
        flags: set[str] = set()
        for key, value in table.items():
            key = to_string(key)
            if key is None:
                raise self.lua.fail(
                    b"named argument key given to redis.register_function is not a string")
            key = key.lower()
            if key == b"function_name":
                name = to_string(value)
                if name is None:
                    raise self.lua.fail(b"function_name argument given to "
                                     b"redis.register_function must be a string")
            elif key == b"description":
                description = to_string(value)
                if description is None:
                    raise self.lua.fail(b"description argument given to "
                                     b"redis.register_function must be a string")
            elif key == b"callback":
                if lua51.lua_type(value) != "function":
                    raise self.lua.fail(b"callback argument given to "
                                     b"redis.register_function must be a function")
                callback = value
            elif key == b"flags":
                if lua51.lua_type(value) != "table":
                    raise self.lua.fail(b"flags argument to redis.register_function must be a "
                                     b"table representing function flags")
                index = 1
                while (flag := value[index]) is not None:
                    text = to_string(flag)
                    text = text.decode("utf-8", "replace").lower() if text else ""
                    if text not in SCRIPT_FLAGS:
                        raise self.lua.fail(b"unknown flag given")
                    flags.add(text)
                    index += 1
            else:
                raise self.lua.fail(b"unknown argument given to redis.register_function")
        if name is None:
            raise self.lua.fail(b"redis.register_function must get a function name argument")
        if callback is None:
            raise self.lua.fail(b"redis.register_function must get a callback argument")
        return name, callback, description, frozenset(flags)

    def create(self, code: bytes, replace: bool, timeout: float = LOAD_TIMEOUT,
               libraries: dict[bytes, Library] | None = None,
               functions: dict[bytes, Function] | None = None) -> bytes:
        """functionsCreateWithLibraryCtx into the given (or the current) set: its name."""
        libraries = self.libraries if libraries is None else libraries
        functions = self.functions if functions is None else functions
        name, body = parse_metadata(code)
        old = libraries.get(name)
        if old is not None and not replace:
            raise ReplyError(f"ERR Library '{name.decode('utf-8', 'replace')}' already exists")
        library = Library(name, code)
        self.lua.load_library(body, library, timeout)
        if not library.functions:
            raise ReplyError("ERR No functions registered")
        for fname in library.functions:
            owner = functions.get(fname)
            if owner is not None and owner.library is not old:
                raise ReplyError(
                    f"ERR Function {fname.decode('utf-8', 'replace')} already exists")
        if old is not None:
            self._unlink(old, libraries, functions)
        libraries[name] = library
        functions.update(library.functions)
        return name

    @staticmethod
    def _unlink(library: Library, libraries: dict[bytes, Library],
                functions: dict[bytes, Function]) -> None:
        del libraries[library.name]
        for fname in library.functions:
            functions.pop(fname, None)

    def delete(self, name: bytes) -> None:
        library = self.libraries.get(name)
        if library is None:
            raise ReplyError("ERR Library not found")
        self._unlink(library, self.libraries, self.functions)

    def flush(self) -> None:
        self.libraries.clear()
        self.functions.clear()
        self.lua = LuaState(self.engine, register_function=self._register_function)

    def codes(self) -> list[bytes]:
        """Each library's code, as the RDB's FUNCTION2 records hold them."""
        return [library.code for library in self.libraries.values()]

    def load_codes(self, codes: list[bytes], replace_all: bool = True) -> None:
        """Libraries read from an RDB: all of them or none (ReplyError). ``replace_all``
        drops the loaded ones first (a full load); otherwise they are added, a library of
        the same name replaced."""
        if not replace_all:
            for code in codes:
                self.create(code, replace=True, timeout=0)
            return
        libraries: dict[bytes, Library] = {}
        functions: dict[bytes, Function] = {}
        for code in codes:
            self.create(code, replace=False, timeout=0, libraries=libraries,
                        functions=functions)
        self.libraries, self.functions = libraries, functions

    def dump(self) -> bytes:
        """FUNCTION DUMP: FUNCTION2 records, the RDB version, a CRC64."""
        data = b"".join(bytes((C.OP_FUNCTION2,)) + encode_str(code) for code in self.codes())
        data += C.RDB_VERSION.to_bytes(2, "little")
        return data + crc64(data).to_bytes(8, "little")

    def restore(self, payload: bytes, policy: bytes) -> None:
        """FUNCTION RESTORE payload [FLUSH|APPEND|REPLACE]."""
        try:
            check_payload(payload)
        except DumpPayloadError:
            raise ReplyError("ERR DUMP payload version or checksum are wrong") from None
        codes = []
        pos, end = 0, len(payload) - 10
        while pos < end:
            if payload[pos] not in (C.OP_FUNCTION2, C.OP_FUNCTION_PRE_GA):
                raise ReplyError("ERR given type is not a function")
            if payload[pos] == C.OP_FUNCTION_PRE_GA:  # 7.0 release candidates' format
                raise ReplyError("ERR failed loading the given functions payload")
            try:
                code, pos = read_str(payload, pos + 1)
            except (RdbError, IndexError, ValueError):
                raise ReplyError("ERR failed loading the given functions payload") from None
            codes.append(bytes(code))
        libraries: dict[bytes, Library] = {}
        functions: dict[bytes, Function] = {}
        for code in codes:
            self.create(code, replace=False, timeout=0, libraries=libraries,
                        functions=functions)
        if policy == b"flush":
            self.libraries, self.functions = libraries, functions
            return
        replace = policy == b"replace"
        # libraryJoin: all or nothing
        for name, library in libraries.items():
            old = self.libraries.get(name)
            if old is not None and not replace:
                raise ReplyError(
                    f"ERR Library {name.decode('utf-8', 'replace')} already exists")
            for fname in library.functions:
                owner = self.functions.get(fname)
                if owner is not None and owner.library.name != name:
                    raise ReplyError(
                        f"ERR Function {fname.decode('utf-8', 'replace')} already exists")
        for name, library in libraries.items():
            old = self.libraries.get(name)
            if old is not None:
                self._unlink(old, self.libraries, self.functions)
            self.libraries[name] = library
            self.functions.update(library.functions)

    def call(self, caller: Session, argv: list[bytes], read_only: bool) -> object:
        """FCALL / FCALL_RO (fcallCommandGeneric)."""
        from kvrepl.commands.args import parse_int

        function = self.functions.get(argv[1])
        if function is None:
            raise ReplyError("ERR Function not found")
        numkeys = parse_int(argv[2], "ERR Bad number of keys provided")
        if numkeys > len(argv) - 3:
            raise ReplyError("ERR Number of keys can't be greater than number of args")
        if numkeys < 0:
            raise ReplyError("ERR Number of keys can't be negative")
        ctx = self.scripting.prepare(caller, function.name.decode("utf-8", "replace"),
                                     function.flags, read_only, eval_mode=False, argv=argv)
        return self.lua.run(ctx, function.callback, argv, numkeys)

    def stats(self) -> dict:
        """FUNCTION STATS: the running function (seen while it is past
        busy-reply-threshold), and the engine's counts."""
        ctx = self.scripting.running()
        running = None
        if ctx is not None:
            if ctx.eval_mode:
                raise ReplyError(BUSY_EVAL)
            running = {b"name": ctx.name.encode(), b"command": list(ctx.argv),
                       b"duration_ms": int((monotonic() - ctx.start) * 1000)}
        return {b"running_script": running,
                b"engines": {b"LUA": {b"libraries_count": len(self.libraries),
                                      b"functions_count": len(self.functions)}}}


def flags_reply(flags: frozenset[str]) -> OrderedSet:
    """The flags FUNCTION LIST shows, in scripts_flags_def order."""
    return OrderedSet(Status(flag.encode()) for flag in SCRIPT_FLAGS if flag in flags)
