"""The Lua state scripts run in (Redis 7.0's ``script_lua.c`` and ``script.c``).

One :class:`LuaState` per engine holds a Lua 5.1 interpreter (lupa's ``lua51``, the Lua
Redis embeds) with the sandbox and the ``redis`` API of ``prelude.lua``. :meth:`LuaState.run`
runs a compiled function for a client; ``redis.call`` inside it goes through the engine's
own dispatcher (:meth:`Engine.call`) after the checks Redis's ``scriptCall`` makes.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable
from importlib import resources
from time import monotonic
from typing import TYPE_CHECKING

from lupa import lua51

from kvrepl.commands.core import MISCONF, NOREPLICAS, Block, Session
from kvrepl.commands.eviction import OOM
from kvrepl.commands.spec import CommandSpec
from kvrepl.errors import ReplyError
from kvrepl.log import logger
from kvrepl.protocol.replies import encode
from kvrepl.scripting import libs
from kvrepl.scripting.convert import from_lua, to_lua
from kvrepl.scripting.errors import ScriptError
from kvrepl.scripting.luavalues import check_int, to_number, to_string

if TYPE_CHECKING:
    from kvrepl.commands.core import Command, Engine
    from kvrepl.scripting.ldb import Debugger
    from kvrepl.scripting.state import Script

REDIS_VERSION = "7.0.15"
REDIS_VERSION_NUM = 0x07000F

# The base library globals a Redis 7.0.15 script sees (its allow lists, less getfenv,
# setfenv and newproxy, which 7.0.15 removed from scripts' reach): dofile, loadfile, print,
# require, io, os, package, module and debug are not among them.
BUILTINS = (
    "xpcall", "tostring", "setmetatable", "next", "assert", "tonumber", "rawequal",
    "collectgarbage", "getmetatable", "rawset", "pcall", "type", "select", "unpack",
    "gcinfo", "pairs", "rawget", "loadstring", "ipairs", "_VERSION", "load", "error",
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
FEW_ARGUMENTS = 32  # KEYS and ARGV of at most this many go to Lua as plain arguments
BUSY_EVAL = ("BUSY Redis is busy running a script. You can only call SCRIPT KILL or "
             "SHUTDOWN NOSAVE.")
BUSY_FUNCTION = ("BUSY Redis is busy running a script. You can only call FUNCTION KILL or "
                 "SHUTDOWN NOSAVE.")


def sha1hex(data: bytes) -> bytes:
    return hashlib.sha1(data).hexdigest().encode()


def _refuse_attributes(obj: object, name: object, setting: bool) -> object:
    # Python objects handed to Lua (the callbacks, cjson.null) must not open a way out of
    # the sandbox through their attributes.
    raise AttributeError("not accessible from scripts")


def _arguments(argv: tuple) -> list[bytes] | None:
    """redis.call's arguments as strings (numbers as Lua's ``%.17g``); None when one is
    neither."""
    args: list[bytes] = []
    for arg in argv:
        kind = type(arg)
        if kind is bytes:
            args.append(arg)
        elif kind is int or kind is float:
            args.append(b"%.17g" % arg)
        else:
            return None
    return args


def _counted(table: object) -> bool:
    """Whether an error table is a command's error, already counted in the error stats."""
    return table[b"ignore_error_stats_update"] is True


class RunContext:
    """One script invocation (Redis's ``scriptRunCtx``). A plain class with slots: one is
    made for every EVALSHA, and a dataclass's keyword ``__init__`` costs twice as much."""

    __slots__ = ("caller", "name", "eval_mode", "read_only", "resp3", "repl_flags",
                 "write_dirty", "killed", "timed_out", "out_of_memory", "argv", "start",
                 "unchecked")

    def __init__(self, caller: Session, name: str, eval_mode: bool, read_only: bool,
                 argv: list[bytes], out_of_memory: bool = False) -> None:
        self.caller = caller
        self.name = name  # the script's sha or the function's name, for error messages
        self.eval_mode = eval_mode
        self.read_only = read_only
        self.resp3 = False
        self.repl_flags = 3
        self.write_dirty = False
        self.killed = False
        self.timed_out = False  # ran past busy-reply-threshold: other clients get -BUSY
        self.out_of_memory = out_of_memory  # memory was full when it started: denyoom refused
        self.argv = argv  # the caller's command (FUNCTION STATS)
        self.start = monotonic()
        # Nothing of the caller's can refuse one of its redis.call's: only the node's state
        # then can (Engine.general_lane_closed), see LuaState._command_caller. (The user's
        # rules cannot change while its script runs: ACL is not allowed while busy.)
        self.unchecked = caller.user.unrestricted and not read_only and not out_of_memory

    def restart_clock(self) -> None:
        """A debugger stop ends: the time spent there does not count as running."""
        self.start = monotonic()


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

    def __init__(self, engine: Engine,
                 register_function: Callable[..., None] | None = None) -> None:
        """``register_function`` makes it the function libraries' state (FUNCTION LOAD
        runs library code with only ``redis.register_function`` and ``redis.log``)."""
        self.engine = engine
        # FUNCTION LOAD in progress: the library its redis.register_function calls fill
        self.loading: object | None = None
        self.runtime = lua51.LuaRuntime(
            encoding=None, unpack_returned_tuples=True, register_eval=False,
            register_builtins=False, attribute_filter=_refuse_attributes)
        self.ctx: RunContext | None = None
        self.random = Lrand48()
        self.client = Session(engine, client_id=0)
        self.client.kind = "lua"
        self.client.addr = "lua"
        self.client.authenticated = True
        # redis.call's fast lookup: the commands a script may call that have no
        # subcommands, by their lower and upper case names (anything else: _lookup)
        self._scriptable = {spelling: cmd for name, cmd in engine.table.items()
                            if not cmd.subcommands and not cmd.spec.no_script
                            for spelling in (name, name.upper())}
        runtime = self.runtime
        callbacks = {
            b"call": self._command_caller(raise_error=True),
            b"pcall": self._command_caller(raise_error=False),
            b"error_of": lambda err: err.value if isinstance(err, ScriptError) else None,
            b"set_error_table": self._set_error_table,
            b"sha1hex": self._sha1hex,
            b"log": self._log,
            b"setresp": self._setresp,
            b"set_repl": self._set_repl,
            b"acl_check_cmd": self._acl_check_cmd,
            b"interrupt": self._interrupt,
            b"random": self._random,
            b"randomseed": self._randomseed,
            b"version": REDIS_VERSION.encode(),
            b"version_num": REDIS_VERSION_NUM,
            b"builtins": runtime.table_from([name.encode() for name in BUILTINS]),
            b"libraries": runtime.table_from(libs.load(runtime)),
        }
        if register_function is not None:
            callbacks[b"register_function"] = register_function
        source = resources.files("kvrepl.scripting").joinpath("prelude.lua").read_bytes()
        loader = runtime.eval(b"function(code) return loadstring(code, '=kvrepl') end")
        chunk = loader(source)
        self._error_table = None
        self.lua = chunk(runtime.table_from(callbacks))
        # One runner per state: the EVAL scripts' state runs scripts, the libraries' runs
        # functions (RunContext.eval_mode follows).
        self.eval_mode = register_function is None
        self._run = self.lua[b"run" if self.eval_mode else b"run_function"]
        self._configure = self.lua[b"configure"]
        # the runner's settings (count hook, debugger's line hook), sent when they change
        self._hooked = self._debugging = False
        self._compile = self.lua[b"compile"]
        self._load_library = self.lua[b"load_library"]
        self._set_ldb = self.lua[b"set_ldb"]
        self.ldb_helpers = self.lua[b"ldb_helpers"]
        self.ldb: Debugger | None = None  # the debugging session of the running script

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

    def load_library(self, body: bytes, library: object, timeout: float) -> None:
        """Run a library's code (after its shebang line) so that its
        ``redis.register_function`` calls fill ``library``; ReplyError as FUNCTION LOAD's."""
        deadline = monotonic() + timeout if timeout else None
        self.loading = library
        try:
            ok, err, compiling = self._load_library(
                body, lambda: deadline is not None and monotonic() > deadline)
        finally:
            self.loading = None
        if ok:
            return
        if compiling:
            raise ReplyError("ERR Error compiling function: "
                             + err.decode("utf-8", "replace"))
        if lua51.lua_type(err) == "table":
            message = err[b"err"]
            text = message.decode("utf-8", "replace") if type(message) is bytes else "(null)"
        else:
            text = "ERR " + (err.decode("utf-8", "replace") if type(err) is bytes else str(err))
        raise ReplyError(f"ERR Error registering functions: {text}")

    def table(self, items: list[bytes]) -> object:
        return self.runtime.table_from(items)

    def table_of(self, mapping: dict[bytes, object]) -> object:
        return self.runtime.table_from(mapping)

    def run(self, ctx: RunContext, function: object, argv: list[bytes], numkeys: int,
            debugger: Debugger | None = None) -> object:
        """Run ``function`` for ``ctx.caller`` and return its reply (errors included): its
        KEYS are the ``numkeys`` items of ``argv`` (the caller's EVAL or FCALL) after the
        first three, its ARGV the rest; under ``debugger``'s line hook when given (SCRIPT
        DEBUG)."""
        client = self.client
        caller = ctx.caller
        client.db = caller.db
        client.resp3 = False
        client.is_master = caller.is_master
        self.ctx = ctx
        engine = self.engine
        if debugger is not None:
            self.ldb = debugger
            self._set_ldb(self.table_of({
                b"line": debugger.on_line, b"error": debugger.log_error,
                b"debug": debugger.debug, b"breakpoint": debugger.breakpoint}))
        try:
            hooked = engine.config.busy_reply_threshold > 0
            if hooked is not self._hooked or debugger is not None or self._debugging:
                self._hooked, self._debugging = hooked, debugger is not None
                self._configure(hooked, self._debugging)
            if len(argv) <= FEW_ARGUMENTS + 3:
                # made into tables on the Lua side: cheaper than two table_from calls
                result = self._run(function, numkeys, *argv[3:])
            else:  # (a Lua call takes a bounded number of arguments)
                result = self._run(function, self.table(argv[3:3 + numkeys]),
                                   self.table(argv[3 + numkeys:]))
        finally:
            self.ctx = None
            if debugger is not None:
                self.ldb = None
                self._set_ldb(None)
            if ctx.timed_out:
                engine.busy = None
        # the runner returns the script's value, or (false, error) when it failed
        kind = type(result)
        if kind is int or kind is bytes:  # (from_lua's answer for them)
            return result
        return self._result(ctx, caller, result)

    def run_cached(self, caller: Session, script: Script, argv: list[bytes],
                   numkeys: int) -> object:
        """:meth:`run` of an EVALSHA's cached script without a shebang, no debugger, at
        most ``FEW_ARGUMENTS`` KEYS and ARGV, on a node whose ``general_lane_closed`` is
        false (so ``ScriptingState.prepare`` has nothing to check): the same steps with
        the run context made here, in one frame."""
        ctx = RunContext(caller, script.name, True, False, argv)
        client = self.client
        client.db = caller.db
        client.resp3 = False
        client.is_master = caller.is_master
        self.ctx = ctx
        try:
            if (self.engine.config.busy_reply_threshold > 0) is not self._hooked or self._debugging:
                self._hooked, self._debugging = self.engine.config.busy_reply_threshold > 0, False
                self._configure(self._hooked, False)
            result = self._run(script.function, numkeys, *argv[3:])
        finally:
            self.ctx = None
            if ctx.timed_out:
                self.engine.busy = None
        kind = type(result)
        if kind is int or kind is bytes:
            return result
        return self._result(ctx, caller, result)

    def _result(self, ctx: RunContext, caller: Session, result: object) -> object:
        """The reply of a run whose runner returned ``result`` (not an int or a string):
        the script's value converted, or its error raised (counted as the script's own)
        or returned (a command's error it passed on, counted already)."""
        if type(result) is not tuple:
            reply = from_lua(result, ctx.resp3, caller.resp3)
            if isinstance(reply, ReplyError) and not _counted(result):
                raise reply  # counted in INFO errorstats as the script's own error
            return reply
        error = result[1]
        reply = self._error_reply(ctx, error)
        if lua51.lua_type(error) == "table" and _counted(error):
            return reply  # a command's error the script passed on: counted once already
        raise reply

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

    def _interrupt(self) -> bool:
        """scriptInterrupt, from the count hook: past busy-reply-threshold, let the server
        serve the others (-BUSY, SCRIPT KILL); True once the script is to be killed."""
        ctx = self.ctx
        if ctx is None:
            return False
        engine = self.engine
        if not ctx.timed_out:
            elapsed = (monotonic() - ctx.start) * 1000
            if elapsed < engine.config.busy_reply_threshold:
                return False
            logger.warning(
                "Slow script detected: still in execution after %d milliseconds. You can try "
                "killing the script using the %s command. Script name is: %s.", elapsed,
                "SCRIPT KILL" if ctx.eval_mode else "FUNCTION KILL", ctx.name)
            ctx.timed_out = True
            engine.busy = ReplyError(BUSY_EVAL if ctx.eval_mode else BUSY_FUNCTION)
        if engine.serve_while_busy is not None:
            engine.serve_while_busy(ctx.caller)
        return ctx.killed

    # -- redis.* callbacks ---------------------------------------------------------------
    def _command_caller(self, raise_error: bool) -> Callable[..., object]:
        """redis.call (``raise_error``: a failure is raised in the script) or redis.pcall
        (it is returned), Redis's ``luaRedisGenericCommand``. One Python frame per call,
        the common case inline (string arguments naming a command the script may run, an
        integer or string reply); the rest in helpers."""
        engine = self.engine
        scriptable = self._scriptable
        gates = engine.keyspace.gates
        client = self.client
        call_nested = engine.call_nested

        def call(*argv: object) -> object:
            ctx = self.ctx
            if argv and ctx is not None and ctx.unchecked and gates.open \
                    and self.ldb is None and not engine.general_lane_closed and engine.depth:
                # The usual call: nothing can refuse it (see RunContext.unchecked), and
                # none of call()'s hooks and observers can act (see Engine.call_nested).
                for arg in argv:
                    if type(arg) is not bytes:
                        break
                else:
                    cmd = scriptable.get(argv[0])
                    count = len(argv)
                    if cmd is not None and (cmd.arity == count or 0 > cmd.arity >= -count) \
                            and ctx.repl_flags & PROPAGATE_REPL:
                        if cmd.is_write:
                            ctx.write_dirty = True
                        reply = call_nested(client, cmd, list(argv))
                        if type(reply) is int or type(reply) is bytes:
                            return reply
                        value, failed = self._reply_to_lua(reply, None)
                        if failed and raise_error:
                            raise ScriptError(value)
                        return value
            if ctx is None:
                return self._failed(self.error_table(
                    b"redis.call/pcall can only be called inside a script invocation"),
                    raise_error)
            if not argv:
                return self._failed(self.error_table(
                    b"Please specify at least one argument for this redis lib call"),
                    raise_error)
            for arg in argv:
                if type(arg) is not bytes:
                    args = _arguments(argv)
                    if args is None:
                        return self._failed(self.error_table(
                            b"Lua redis lib command arguments must be strings or integers"),
                            raise_error)
                    break
            else:
                args = list(argv)
            ldb = self.ldb
            if ldb is not None and ldb.logging:
                ldb.log_command(args)
            cmd = scriptable.get(args[0])
            count = len(args)
            if cmd is None or not (cmd.arity == count or 0 > cmd.arity >= -count):
                cmd, refused = self._lookup(args)
                if refused is None:
                    refused = self._check(ctx, cmd, args)
            elif ctx.unchecked and not engine.general_lane_closed:
                # none of _check's conditions can hold (the flag stands for the node's
                # restricted states, min-replicas-to-write and more)
                refused = None
            else:
                refused = self._check(ctx, cmd, args)
            if refused is not None:
                return self._failed(self._refusal(cmd, refused), raise_error)
            if cmd.is_write:
                ctx.write_dirty = True
            if ctx.repl_flags & PROPAGATE_REPL:
                reply = engine.call(client, cmd, args)
            else:
                reply = self._call_unpropagated(cmd, args)
            kind = type(reply)
            if kind is int or kind is bytes:  # (to_lua's answer for them)
                if ldb is not None and ldb.logging:
                    ldb.log_reply(encode(reply, self.client.resp3))
                return reply
            value, failed = self._reply_to_lua(reply, ldb)
            if failed and raise_error:
                raise ScriptError(value)
            return value

        return call

    @staticmethod
    def _failed(error: object, raise_error: bool) -> object:
        """redis.call raises the error table, redis.pcall returns it."""
        if raise_error:
            raise ScriptError(error)
        return error

    def _refusal(self, cmd: Command | None, refused: ReplyError) -> object:
        """The error table of a call refused before it ran, counted in the stats."""
        if cmd is not None:
            cmd.rejected_calls += 1
        self.engine.count_error(refused, self.client)
        # scriptCall's own messages have no code (luaPushErrorBuff adds ERR); those with
        # one are Redis's shared replies, "\r\n" included: the text a debugging session
        # logs is Redis's
        message = refused.message.encode("utf-8", "replace")
        error = self.error_table(message[4:] if message.startswith(b"ERR ")
                                 else b"-" + message + b"\r\n")
        error[b"ignore_error_stats_update"] = True
        return error

    def _call_unpropagated(self, cmd: Command, args: list[bytes]) -> object:
        """Run a command under redis.set_repl(REPL_NONE): not propagated."""
        engine = self.engine
        propagating = engine.propagating
        engine.propagating = False
        try:
            return engine.call(self.client, cmd, args)
        finally:
            engine.propagating = propagating

    def _reply_to_lua(self, reply: object, ldb: Debugger | None) -> tuple[object, bool]:
        """A reply other than an integer or a string as the script sees it, and whether it
        is an error (its table marked as counted already)."""
        client = self.client
        if type(reply) is Block:  # the script client may not block (CLIENT_DENY_BLOCKING)
            reply = reply.timeout_reply
        value = to_lua(self.runtime, reply, client.resp3, self.error_table)
        if ldb is not None and ldb.logging:
            ldb.log_reply(encode(reply, client.resp3))
        if isinstance(reply, ReplyError):
            value[b"ignore_error_stats_update"] = True
            return value, True
        return value, False

    def _lookup(self, argv: list[bytes]) -> tuple[Command | None, ReplyError | None]:
        """lookupCommand and the arity check of scriptVerifyCommandArity."""
        cmd = self.engine.table.get(argv[0].lower())
        if cmd is not None and cmd.subcommands and (len(argv) >= 2 or cmd.handler is None):
            cmd = cmd.subcommands.get(argv[1].lower()) if len(argv) >= 2 else cmd
        if cmd is None:
            return None, ReplyError("ERR Unknown Redis command called from script")
        arity = cmd.arity
        if (arity > 0 and len(argv) != arity) or len(argv) < -arity:
            return cmd, ReplyError("ERR Wrong number of args calling Redis command from script")
        return cmd, None

    def _check(self, ctx: RunContext, cmd: Command, argv: list[bytes]) -> ReplyError | None:
        """scriptCall's checks after the command's lookup, before it runs, in its order."""
        engine = self.engine
        spec: CommandSpec = cmd.spec
        if spec.no_script:
            return ReplyError("ERR This Redis command is not allowed from script")
        caller = ctx.caller
        user = caller.user
        if not user.unrestricted:  # scriptVerifyACL: the calling user's rights, per call
            from kvrepl import acl as acl_rules  # (kvrepl.acl imports the command families)

            result, index = user.check(spec, argv)
            if result != acl_rules.OK:
                obj = cmd.name.encode() if result == acl_rules.DENIED_CMD else argv[index]
                engine.acl_log(caller, result, obj, False, caller.last_command,
                               context=b"lua")
                return ReplyError(acl_rules.SCRIPT_DENIED[result])
        # (masterdown, read_only and bgsave_failed all make the node restricted)
        restricted = engine.restricted
        if restricted and engine.masterdown and not engine.config.replica_serve_stale_data \
                and not spec.allows_stale:
            return ReplyError("ERR Can not execute the command on a stale replica")
        if ctx.read_only and (cmd.is_write or spec.may_replicate):
            return ReplyError("ERR Write commands are not allowed from read-only scripts.")
        if cmd.is_write and not ctx.write_dirty:
            if restricted and engine.read_only and not caller.is_master:
                return ReplyError("READONLY You can't write against a read only replica.")
            config = engine.config
            if restricted and engine.bgsave_failed and config.stop_writes_on_bgsave_error \
                    and config.save:
                return ReplyError(MISCONF)
            if engine.too_few_replicas():
                return ReplyError(NOREPLICAS)
        # scriptVerifyOOM: until the script wrote, as the node was full when it started
        if ctx.out_of_memory and cmd.denyoom and not ctx.write_dirty:
            return ReplyError(OOM)
        return None

    def fail(self, message: bytes) -> ScriptError:
        """The error to raise from a callback: ``{err="ERR message"}`` at the script's line."""
        return ScriptError(self.error_table(message))

    def _sha1hex(self, *args: object) -> bytes:
        if len(args) != 1:
            raise self.fail(b"wrong number of arguments")
        return sha1hex(to_string(args[0]) or b"")

    def _log(self, *args: object) -> None:
        if len(args) < 2:
            raise self.fail(b"redis.log() requires two arguments or more.")
        level = to_number(args[0])
        if level is None:
            raise self.fail(b"First argument must be a number (log level).")
        level = int(level)
        if not 0 <= level <= 3:
            raise self.fail(b"Invalid debug level.")
        if level < _LOG_NAMES.get(self.engine.config.get("loglevel"), 2):
            return
        parts = [text for text in map(to_string, args[1:]) if text is not None]
        logger.log(_LOG_LEVELS[level], "%s", b" ".join(parts).decode("utf-8", "replace"))

    def _setresp(self, *args: object) -> None:
        ctx = self.ctx
        if ctx is None:
            raise self.fail(b"redis.setresp can only be called inside a script invocation")
        if len(args) != 1:
            raise self.fail(b"redis.setresp() requires one argument.")
        resp = to_number(args[0])
        if resp is None or int(resp) not in (2, 3):
            raise self.fail(b"RESP version must be 2 or 3.")
        ctx.resp3 = int(resp) == 3
        self.client.resp3 = ctx.resp3

    def _set_repl(self, *args: object) -> None:
        ctx = self.ctx
        if ctx is None:
            raise self.fail(b"redis.set_repl can only be called inside a script invocation")
        if len(args) != 1:
            raise self.fail(b"redis.set_repl() requires two arguments.")
        flags = int(to_number(args[0]) or 0)
        if flags & ~3:
            raise self.fail(
                b"Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE.")
        ctx.repl_flags = flags

    def _acl_check_cmd(self, *args: object) -> bool:
        if self.ctx is None:
            raise self.fail(b"redis.acl_check_cmd can only be called inside a script invocation")
        if not args:
            raise self.fail(b"Please specify at least one argument for this redis lib call")
        argv = [to_string(arg) for arg in args]
        if None in argv:
            raise self.fail(b"Lua redis lib command arguments must be strings or integers")
        cmd, refused = self._lookup(argv)
        if cmd is None or refused is not None:
            raise self.fail(b"Invalid command passed to redis.acl_check_cmd()")
        return True  # kvrepl has a single user allowed every command

    def _random(self, *args: object) -> float:
        if self.ctx is None:
            raise ScriptError(b"math.random can only be called inside a script invocation")
        r = (self.random.next() % 0x7FFFFFFF) / 0x7FFFFFFF
        if not args:
            return r
        if len(args) > 2:
            raise ScriptError(b"wrong number of arguments")
        bounds = [check_int(arg, position, "random") for position, arg in enumerate(args, 1)]
        low, high = (1, bounds[0]) if len(bounds) == 1 else bounds
        if low > high:
            raise ScriptError(b"bad argument #%d to 'random' (interval is empty)" % len(args))
        return math.floor(r * (high - low + 1)) + low

    def _randomseed(self, *args: object) -> None:
        if self.ctx is None:
            raise ScriptError(b"math.randomseed can only be called inside a script invocation")
        self.random.seed(check_int(args[0] if args else None, 1, "randomseed"))

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
        for flag in part[6:].split(",") if part[6:] else ():
            if flag not in SCRIPT_FLAGS:
                raise ReplyError(f"ERR Unexpected flag in script shebang: {flag}")
            flags.add(flag)
    return frozenset(flags), end
