"""The Lua state scripts run in (Redis 7.0's ``script_lua.c`` and ``script.c``).

One :class:`LuaState` per engine holds a Lua 5.1 interpreter (lupa's ``lua51``, the Lua
Redis embeds) with the sandbox and the ``redis`` API of ``prelude.lua``. :meth:`LuaState.run`
runs a compiled function for a client; ``redis.call`` inside it goes through the engine's
own dispatcher (:meth:`Engine.call`) after the checks Redis's ``scriptCall`` makes.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from importlib import resources
from time import monotonic
from typing import TYPE_CHECKING

from lupa import lua51

from kvrepl.commands.core import MISCONF, Block, Session
from kvrepl.commands.spec import CommandSpec
from kvrepl.errors import ReplyError
from kvrepl.log import logger
from kvrepl.scripting import libs
from kvrepl.scripting.convert import from_lua, to_lua

if TYPE_CHECKING:
    from kvrepl.commands.core import Command, Engine

REDIS_VERSION = "7.0.15"
REDIS_VERSION_NUM = 0x07000F

# lua_builtins_allow_list and lua_builtins_not_documented_allow_list of script_lua.c:
# the base library globals a script sees (dofile, loadfile, print, require, io, os,
# package, module and debug are not among them).
BUILTINS = (
    "xpcall", "tostring", "getfenv", "setmetatable", "next", "assert", "tonumber", "rawequal",
    "collectgarbage", "getmetatable", "rawset", "pcall", "type", "select", "unpack",
    "gcinfo", "pairs", "rawget", "loadstring", "ipairs", "_VERSION", "setfenv", "load",
    "error", "newproxy",
)
# redis.log levels -> Python logging levels (LL_DEBUG .. LL_WARNING)
_LOG_LEVELS = (logging.DEBUG, 15, logging.INFO, logging.WARNING)
_LOG_NAMES = {"debug": 0, "verbose": 1, "notice": 2, "warning": 3, "nothing": 4}
# script flags of a shebang line (scripts_flags_def) -> what they allow
FLAG_NO_WRITES = "no-writes"
FLAG_ALLOW_OOM = "allow-oom"
FLAG_ALLOW_STALE = "allow-stale"
FLAG_NO_CLUSTER = "no-cluster"
FLAG_ALLOW_CROSS_SLOT = "allow-cross-slot-keys"
SCRIPT_FLAGS = (FLAG_NO_WRITES, FLAG_ALLOW_OOM, FLAG_ALLOW_STALE, FLAG_NO_CLUSTER,
                FLAG_ALLOW_CROSS_SLOT)
PROPAGATE_REPL = 2


def sha1hex(data: bytes) -> bytes:
    return hashlib.sha1(data).hexdigest().encode()


def _refuse_attributes(obj: object, name: object, setting: bool) -> object:
    # Python objects handed to Lua (the callbacks, cjson.null) must not open a way out of
    # the sandbox through their attributes.
    raise AttributeError("not accessible from scripts")


class ScriptError(Exception):
    """A Lua error raised from Python: ``table`` is the Lua error table."""

    def __init__(self, table: object) -> None:
        super().__init__("script error")
        self.table = table


@dataclass
class RunContext:
    """One script invocation (Redis's ``scriptRunCtx``)."""

    caller: Session
    client: Session
    name: str  # the script's sha or the function's name, for error messages
    eval_mode: bool
    read_only: bool
    resp3: bool = False
    repl_flags: int = 3
    write_dirty: bool = False
    killed: bool = False
    start: float = field(default_factory=monotonic)


class Lrand48:
    """Redis's ``redisLrand48``: the 48-bit generator behind ``math.random``."""

    def __init__(self) -> None:
        self.state = 0x1234ABCD330E

    def seed(self, value: int) -> None:
        value &= 0xFFFFFFFF
        self.state = (value << 16) | 0x330E

    def next(self) -> int:
        self.state = (0x5DEECE66D * self.state + 0xB) & 0xFFFFFFFFFFFF
        return self.state >> 17


class LuaState:
    """A Lua interpreter with Redis's sandbox and API, bound to one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.runtime = lua51.LuaRuntime(
            encoding=None, unpack_returned_tuples=True, register_eval=False,
            register_builtins=False, attribute_filter=_refuse_attributes)
        self.ctx: RunContext | None = None
        self.random = Lrand48()
        self.client = Session(engine, client_id=0)
        self.client.kind = "lua"
        self.client.addr = "lua"
        self.client.authenticated = True
        runtime = self.runtime
        callbacks = {
            b"call": self._raising_call,
            b"pcall": lambda *argv: self._call(argv, False)[1],
            b"error_of": lambda err: err.table if type(err) is ScriptError else None,
            b"set_error_table": self._set_error_table,
            b"sha1hex": lambda s: sha1hex(s if type(s) is bytes else str(s).encode()),
            b"log": self._log,
            b"running": lambda: self.ctx is not None,
            b"setresp": self._setresp,
            b"set_repl": self._set_repl,
            b"acl_check_cmd": self._acl_check_cmd,
            b"random": self._random,
            b"randomseed": lambda seed: self.random.seed(int(seed)),
            b"version": REDIS_VERSION.encode(),
            b"version_num": REDIS_VERSION_NUM,
            b"builtins": runtime.table_from([name.encode() for name in BUILTINS]),
            b"libraries": runtime.table_from(libs.load(runtime)),
        }
        source = resources.files("kvrepl.scripting").joinpath("prelude.lua").read_bytes()
        loader = runtime.eval(b"function(code) return loadstring(code, '=kvrepl') end")
        chunk = loader(source)
        self._error_table = None
        self.lua = chunk(runtime.table_from(callbacks))
        self._run = self.lua[b"run"]
        self._compile = self.lua[b"compile"]

    def _set_error_table(self, function: object) -> None:
        self._error_table = function

    def error_table(self, text: bytes) -> object:
        """``{err="CODE msg"}`` from ``-CODE msg`` or ``msg`` (``luaPushErrorBuff``)."""
        return self._error_table(text)

    # -- compiling and running ------------------------------------------------------------
    def compile(self, body: bytes, chunkname: bytes) -> object:
        """The function of ``body``; ReplyError with Lua's message when it does not compile."""
        function, err = self._compile(body, chunkname)
        if not function:
            raise ReplyError(err.decode("utf-8", "replace"))
        return function

    def table(self, items: list[bytes]) -> object:
        return self.runtime.table_from(items)

    def run(self, ctx: RunContext, function: object, keys: list[bytes],
            args: list[bytes]) -> object:
        """Run ``function`` for ``ctx.caller`` and return its reply (errors included)."""
        client = self.client
        client.db = ctx.caller.db
        client.resp3 = False
        client.is_master = ctx.caller.is_master
        self.ctx = ctx
        try:
            ok, result = self._run(function, self.table(keys), self.table(args), ctx.eval_mode)
        finally:
            self.ctx = None
        if ok:
            return from_lua(result, ctx.resp3, ctx.caller.resp3)
        return self._error_reply(ctx, result)

    def _error_reply(self, ctx: RunContext, err: object) -> ReplyError:
        if lua51.lua_type(err) != "table":
            text = err.decode("utf-8", "replace") if type(err) is bytes else "execution failure"
            return ReplyError(f"ERR Error running script {ctx.name}, {text[:100]}")
        message = err[b"err"]
        text = message.decode("utf-8", "replace") if type(message) is bytes else "(null)"
        if text.startswith("-"):
            text = text[1:]
        source, line = err[b"source"], err[b"line"]
        if source is not None and line is not None:
            if type(line) is float and line == int(line):
                line = int(line)
            source_text = source.decode("utf-8", "replace") if type(source) is bytes else source
            text += f" script: {ctx.name}, on {source_text}:{line}."
        return ReplyError(text)

    # -- redis.* callbacks ---------------------------------------------------------------
    def _raising_call(self, *argv: object) -> object:
        ok, value = self._call(argv, True)
        if not ok:
            raise ScriptError(value)
        return value

    def _call(self, argv: tuple, raise_error: bool) -> tuple[bool, object]:
        """redis.call / redis.pcall (``luaRedisGenericCommand``): ``(ok, Lua value)``."""
        ctx = self.ctx
        if ctx is None:
            return False, self.error_table(
                b"redis.call/pcall can only be called inside a script invocation")
        if not argv:
            return False, self.error_table(
                b"Please specify at least one argument for this redis lib call")
        args: list[bytes] = []
        for arg in argv:
            kind = type(arg)
            if kind is bytes:
                args.append(arg)
            elif kind is int or kind is float:
                args.append(b"%.17g" % arg)
            else:
                return False, self.error_table(
                    b"Lua redis lib command arguments must be strings or integers")
        engine = self.engine
        client = self.client
        cmd, refused = self._check(ctx, args)
        if refused is not None:
            if cmd is not None:
                cmd.rejected_calls += 1
            engine.count_error(refused)
            error = self.error_table(b"-" + refused.message.encode("utf-8", "replace"))
            error[b"ignore_error_stats_update"] = True
            return False, error
        if cmd.is_write:
            ctx.write_dirty = True
        pending = len(engine.pending_writes)
        reply = engine.call(client, cmd, args)
        if not ctx.repl_flags & PROPAGATE_REPL:
            del engine.pending_writes[pending:]
        if type(reply) is Block:  # the script client may not block (CLIENT_DENY_BLOCKING)
            reply = reply.timeout_reply
        value = to_lua(self.runtime, reply, client.resp3, self.error_table)
        if isinstance(reply, ReplyError):
            value[b"ignore_error_stats_update"] = True
            return not raise_error, value
        return True, value

    def _check(self, ctx: RunContext, argv: list[bytes]
               ) -> tuple[Command | None, ReplyError | None]:
        """scriptCall's checks before a command runs, in its order."""
        engine = self.engine
        cmd = engine.table.get(argv[0].lower())
        if cmd is not None and cmd.subcommands and (len(argv) >= 2 or cmd.handler is None):
            cmd = cmd.subcommands.get(argv[1].lower()) if len(argv) >= 2 else cmd
        if cmd is None:
            return None, ReplyError("ERR Unknown Redis command called from script")
        arity = cmd.arity
        if (arity > 0 and len(argv) != arity) or len(argv) < -arity:
            return cmd, ReplyError("ERR Wrong number of args calling Redis command from script")
        spec: CommandSpec = cmd.spec
        if spec.no_script:
            return cmd, ReplyError("ERR This Redis command is not allowed from script")
        caller = ctx.caller
        if engine.masterdown and not engine.config.replica_serve_stale_data \
                and not spec.allows_stale:
            return cmd, ReplyError("ERR Can not execute the command on a stale replica")
        if ctx.read_only and (cmd.is_write or spec.may_replicate):
            return cmd, ReplyError("ERR Write commands are not allowed from read-only scripts.")
        if cmd.is_write and not ctx.write_dirty:
            if engine.read_only and not caller.is_master:
                return cmd, ReplyError("READONLY You can't write against a read only replica.")
            config = engine.config
            if engine.bgsave_failed and config.stop_writes_on_bgsave_error and config.save:
                return cmd, ReplyError(MISCONF)
            if config.min_replicas_to_write and engine.replication is not None \
                    and not engine.read_only_role() \
                    and engine.replication.good_replicas() < config.min_replicas_to_write:
                return cmd, ReplyError("NOREPLICAS Not enough good replicas to write.")
        return cmd, None

    def _log(self, level: int, message: bytes) -> None:
        verbosity = _LOG_NAMES.get(self.engine.config.get("loglevel"), 2)
        if int(level) >= verbosity:
            logger.log(_LOG_LEVELS[int(level)], "%s", message.decode("utf-8", "replace"))

    def _setresp(self, resp: int) -> None:
        ctx = self.ctx
        ctx.resp3 = resp == 3
        self.client.resp3 = ctx.resp3

    def _set_repl(self, flags: int) -> None:
        self.ctx.repl_flags = int(flags)

    def _acl_check_cmd(self, *argv: object) -> bool | None:
        name = argv[0] if type(argv[0]) is bytes else str(argv[0]).encode()
        return True if self.engine.table.get(name.lower()) is not None else None

    def _random(self) -> float:
        return (self.random.next() % 0x7FFFFFFF) / 0x7FFFFFFF

    def memory(self) -> int:
        """The interpreter's memory in bytes (``used_memory_lua``)."""
        return int(self.runtime.eval(b"collectgarbage('count')") * 1024)


def parse_shebang(body: bytes) -> tuple[frozenset[str] | None, int]:
    """``#!lua flags=...`` (evalExtractShebangFlags): the flags (None without a shebang,
    Redis's compatibility mode) and the length of the line; ReplyError when invalid."""
    if not body.startswith(b"#!"):
        return None, 0
    end = body.find(b"\n")
    if end < 0:
        raise ReplyError("ERR Invalid script shebang")
    parts = body[:end].decode("utf-8", "replace").split()
    if not parts:
        raise ReplyError("ERR Invalid engine in script shebang")
    if parts[0] != "#!lua":
        raise ReplyError(f"ERR Unexpected engine in script shebang: {parts[0]}")
    flags: set[str] = set()
    for part in parts[1:]:
        if not part.startswith("flags="):
            raise ReplyError(f"ERR Unknown lua shebang option: {part}")
        for flag in part[6:].split(","):
            if flag not in SCRIPT_FLAGS:
                raise ReplyError(f"ERR Unexpected flag in script shebang: {flag}")
            flags.add(flag)
    return frozenset(flags), end
