"""An engine's scripting state: its Lua interpreter and the EVAL script cache (``eval.c``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kvrepl.commands.args import parse_int
from kvrepl.commands.core import NOREPLICAS
from kvrepl.errors import ReplyError
from kvrepl.log import logger
from kvrepl.scripting.runtime import (
    BUSY_EVAL,
    BUSY_FUNCTION,
    FLAG_ALLOW_OOM,
    FLAG_ALLOW_STALE,
    FLAG_NO_WRITES,
    LuaState,
    RunContext,
    parse_shebang,
    sha1hex,
)

if TYPE_CHECKING:
    from kvrepl.commands.core import Engine, Session
    from kvrepl.scripting.functions import FunctionsState
    from kvrepl.scripting.ldb import Channel

NOSCRIPT = "NOSCRIPT No matching script. Please use EVAL."
NO_DEBUG_CHANNEL = ("ERR kvrepl can debug a script only over a plain TCP connection to its "
                    "server (not over TLS, not in-process)")


def declared_flags(flags: frozenset[str] | None) -> tuple[bool, bool, bool] | None:
    """scriptFlagsToCmdFlags: (writes, allows stale, denyoom) for the dispatcher. A script
    with a shebang writes unless ``no-writes``, may run stale only with ``allow-stale``, is
    refused when memory is full unless ``allow-oom`` or ``no-writes``; without one (None)
    the command's own flags apply."""
    if flags is None:
        return None
    writes = FLAG_NO_WRITES not in flags
    return writes, FLAG_ALLOW_STALE in flags, writes and FLAG_ALLOW_OOM not in flags


@dataclass(slots=True)
class Script:
    """A cached EVAL script: its body, shebang flags (None: no shebang) and function; its
    sha1 as error messages name it, and its flags as the dispatcher reads them."""

    body: bytes
    flags: frozenset[str] | None
    function: object
    name: str
    declared: tuple[bool, bool, bool] | None


class ScriptingState:
    """The Lua state scripts share and the scripts it compiled, by sha1."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.lua = LuaState(engine)
        self.scripts: dict[bytes, Script] = {}
        self._functions: FunctionsState | None = None

    @property
    def has_functions(self) -> bool:
        """Whether the function libraries' state exists (FUNCTION was used)."""
        return self._functions is not None

    @property
    def functions(self) -> FunctionsState:
        """The function libraries (their Lua state is made on first use)."""
        if self._functions is None:
            from kvrepl.scripting.functions import FunctionsState

            self._functions = FunctionsState(self.engine, self)
        return self._functions

    def flush(self) -> None:
        """SCRIPT FLUSH: a new interpreter, no scripts (scriptingReset)."""
        random = self.lua.random
        self.lua = LuaState(self.engine)
        self.lua.random = random
        self.scripts.clear()

    def create(self, body: bytes) -> bytes:
        """luaCreateFunction: compile ``body`` unless cached; its sha1."""
        sha = sha1hex(body)
        if sha in self.scripts:
            return sha
        flags, shebang = parse_shebang(body)
        try:
            # keep the shebang's newline so that line numbers stay the user's
            function = self.lua.compile(body[shebang:], b"@user_script")
        except ReplyError as err:
            raise ReplyError(f"ERR Error compiling script (new function): {err.message}") from None
        self.scripts[sha] = Script(body, flags, function, sha.decode(), declared_flags(flags))
        return sha

    def eval(self, caller: Session, argv: list[bytes], by_sha: bool, read_only: bool) -> object:
        """EVAL / EVALSHA / EVAL_RO / EVALSHA_RO (evalGenericCommand)."""
        if by_sha and len(argv[1]) != 40:
            # evalShaCommand answers a sha of the wrong length before evalGenericCommand
            # reads numkeys
            raise ReplyError(NOSCRIPT)
        count = argv[2]
        # a single digit, the common case: what parse_int would say, without its regex
        numkeys = count[0] - 48 if len(count) == 1 and 48 <= count[0] <= 57 \
            else parse_int(count)
        if numkeys > len(argv) - 3:
            raise ReplyError("ERR Number of keys can't be greater than number of args")
        if numkeys < 0:
            raise ReplyError("ERR Number of keys can't be negative")
        if by_sha:
            # (a sha1 as clients send it, in lower case, is found without lower())
            script = self.scripts.get(argv[1])
            if script is None:
                script = self.scripts.get(argv[1].lower())
            if caller.lua_debug is not None:
                raise ReplyError("ERR Please use EVAL instead of EVALSHA for debugging")
            if script is None:
                raise ReplyError(NOSCRIPT)
        elif caller.lua_debug is not None:
            return self._debug(caller, argv, numkeys, read_only)
        else:
            script = self.scripts[self.create(argv[1])]
        engine = self.engine
        if script.flags is None and not engine.general_lane_closed:
            # prepare's checks, none of which can refuse a script without a shebang while
            # the node is neither restricted nor limited by maxmemory (both close the lane)
            ctx = RunContext(caller, script.name, True, read_only, argv)
        else:
            ctx = self.prepare(caller, script.name, script.flags, read_only, True, argv)
        return self.lua.run(ctx, script.function, argv, numkeys)

    def _debug(self, caller: Session, argv: list[bytes], numkeys: int,
               read_only: bool) -> object:
        """EVAL under the debugger (evalGenericCommandWithDebugging): the session talks over
        the client's connection, which is closed after the EVAL's reply. SYNC runs it here,
        the server waiting; YES runs it on a copy of the node in a thread of its own, as
        Redis's forked child (:mod:`kvrepl.scripting.fork`), and this node does not answer:
        it closes its side of the connection at once."""
        engine = self.engine
        mode = caller.lua_debug
        caller.lua_debug = None
        caller.closing = True  # CLIENT_CLOSE_AFTER_REPLY, whatever happens
        channel = engine.debug_channel(caller) if engine.debug_channel is not None else None
        if channel is None:
            raise ReplyError(NO_DEBUG_CHANNEL)
        if mode == "yes":
            from kvrepl.scripting.fork import fork_session

            return fork_session(engine, caller, argv, numkeys, read_only)
        logger.warning("Redis synchronous debugging eval session started")
        try:
            return self.debug_session(caller, argv, numkeys, read_only, channel)
        finally:
            logger.warning("Redis synchronous debugging eval session ended")

    def debug_session(self, caller: Session, argv: list[bytes], numkeys: int,
                      read_only: bool, channel: Channel) -> object:
        """One debugging session over ``channel``: the EVAL run under the debugger, then
        the last logs and the end mark (ldbEndSession); the EVAL's reply."""
        from kvrepl.scripting.ldb import Debugger, Frames

        engine = self.engine
        debugger: Debugger | None = None
        try:
            sha = self.create(argv[1])
            script = self.scripts[sha]
            ctx = self.prepare(caller, script.name, script.flags, read_only, eval_mode=True,
                               argv=argv)
            debugger = Debugger(channel, argv[1], Frames(self.lua.ldb_helpers),
                                lambda: engine.config.busy_reply_threshold, ctx.restart_clock)
            return self.lua.run(ctx, script.function, argv, numkeys, debugger)
        finally:
            if debugger is None:  # the script did not compile: the end mark all the same
                debugger = Debugger(channel, argv[1], None, lambda: 0, lambda: None)
            debugger.end()

    def running(self) -> RunContext | None:
        """The script or function running now (only another client served while it is
        past busy-reply-threshold can see one)."""
        ctx = self.lua.ctx
        if ctx is None and self._functions is not None:
            ctx = self._functions.lua.ctx
        return ctx

    def kill(self, eval_mode: bool) -> None:
        """SCRIPT KILL (``eval_mode``) / FUNCTION KILL (scriptKill); ReplyError when refused."""
        ctx = self.running()
        if ctx is None:
            raise ReplyError("NOTBUSY No scripts in execution right now.")
        if ctx.caller.is_master:
            raise ReplyError("UNKILLABLE The busy script was sent by a master instance in the "
                             "context of replication and cannot be killed.")
        if ctx.write_dirty:
            raise ReplyError(
                "UNKILLABLE Sorry the script already executed write commands against the "
                "dataset. You can either wait the script termination or kill the server in a "
                "hard way using the SHUTDOWN NOSAVE command.")
        if eval_mode and not ctx.eval_mode:
            raise ReplyError(BUSY_FUNCTION)
        if not eval_mode and ctx.eval_mode:
            raise ReplyError(BUSY_EVAL)
        ctx.killed = True

    def prepare(self, caller: Session, name: str, flags: frozenset[str] | None,
                read_only: bool, eval_mode: bool, argv: list[bytes]) -> RunContext:
        """scriptPrepareForRun's checks: ReplyError when the script may not run now."""
        engine = self.engine
        config = engine.config
        # (masterdown, read_only and bgsave_failed all make the node restricted)
        restricted = engine.restricted
        stale = restricted and engine.masterdown and not config.replica_serve_stale_data
        out_of_memory = bool(config.maxmemory and engine.out_of_memory and not caller.is_master)
        if flags is None:
            if stale:
                raise ReplyError(
                    "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set "
                    "to 'no'.")
            return RunContext(caller, name, eval_mode, read_only, argv, out_of_memory)
        if stale and FLAG_ALLOW_STALE not in flags:
            raise ReplyError(
                "MASTERDOWN Link with MASTER is down, replica-serve-stale-data is set to "
                "'no' and 'allow-stale' flag is not set on the script.")
        if FLAG_NO_WRITES not in flags:
            if restricted and engine.read_only and not caller.is_master:
                raise ReplyError(
                    "READONLY Can not run script with write flag on readonly replica")
            if restricted and engine.bgsave_failed and config.stop_writes_on_bgsave_error \
                    and config.save and not caller.is_master:
                raise ReplyError(
                    "MISCONF Redis is configured to save RDB snapshots, but it's "
                    "currently unable to persist to disk. Writable scripts are blocked. "
                    "Use 'no-writes' flag for read only scripts.")
            if read_only:
                raise ReplyError(
                    "ERR Can not execute a script with write flag using *_ro command.")
            if engine.too_few_replicas():
                raise ReplyError(NOREPLICAS)
        if out_of_memory and FLAG_ALLOW_OOM not in flags and FLAG_NO_WRITES not in flags:
            raise ReplyError("OOM allow-oom flag is not set on the script, can not run it "
                             "when used memory > 'maxmemory'")
        ro = read_only or FLAG_NO_WRITES in flags
        return RunContext(caller, name, eval_mode, ro, argv,
                          out_of_memory and FLAG_ALLOW_OOM not in flags)


def scripting(engine: Engine) -> ScriptingState:
    """The engine's scripting state, made the first time a script is needed."""
    state = engine.scripting
    if state is None:
        state = engine.scripting = ScriptingState(engine)
    return state



def script_stats(engine: Engine) -> dict[str, int]:
    """What INFO memory tells of scripting: the Lua states' bytes, the cached scripts and
    their bodies' bytes, the libraries and functions and their code's bytes (zeros before
    the first script)."""
    state = engine.scripting
    stats = dict.fromkeys(("vm_eval", "vm_functions", "scripts_eval", "cached_scripts",
                           "functions", "number_of_functions", "number_of_libraries"), 0)
    if state is None:
        return stats
    stats["vm_eval"] = state.lua.memory()
    stats["cached_scripts"] = len(state.scripts)
    stats["scripts_eval"] = sum(40 + len(script.body) for script in state.scripts.values())
    if state.has_functions:
        functions = state.functions
        stats["vm_functions"] = functions.lua.memory()
        stats["number_of_functions"] = len(functions.functions)
        stats["number_of_libraries"] = len(functions.libraries)
        stats["functions"] = sum(len(lib.code) for lib in functions.libraries.values())
    return stats
