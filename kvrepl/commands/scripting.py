"""EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and SCRIPT (Redis 7.0 ``eval.c``).

Scripts run in :mod:`kvrepl.scripting`. Redis 7.0 replicates a script by its effects: the
commands it ran reach replicas (several wrapped in MULTI/EXEC by the engine when the
EVAL's execution unit ends), never the EVAL itself; SCRIPT LOAD is not replicated.
"""

from __future__ import annotations

from kvrepl.commands.core import ARGUMENT_FLAGS, Engine, Session, command
from kvrepl.commands.glob import glob_match
from kvrepl.commands.help import help_reply, subcommand_syntax_error
from kvrepl.errors import ReplyError
from kvrepl.protocol.replies import OK, DeferredArray
from kvrepl.scripting.functions import LOAD_TIMEOUT, flags_reply
from kvrepl.scripting.runtime import FEW_ARGUMENTS, parse_shebang, sha1hex
from kvrepl.scripting.state import NO_DEBUG_CHANNEL, declared_flags, scripting

_HELP = [
    "DEBUG (YES|SYNC|NO)",
    "    Set the debug mode for subsequent scripts executed.",
    "EXISTS <sha1> [<sha1> ...]",
    "    Return information about the existence of the scripts in the script cache.",
    "FLUSH [ASYNC|SYNC]",
    "    Flush the Lua scripts cache. Very dangerous on replicas.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the scripts cache.",
    "    * SYNC: Synchronously flush the scripts cache.",
    "KILL",
    "    Kill the currently executing Lua script.",
    "LOAD <script>",
    "    Load a script into the scripts cache without executing it.",
]


# A one-digit numkeys, the usual, read without parse_int
_DIGITS = {b"%d" % digit: digit for digit in range(10)}


def _evalsha_flags(s: Session, argv: list[bytes]) -> tuple[bool, bool, bool] | None:
    """evalGetCommandFlags: the flags of the cached script EVALSHA is about to run."""
    state = s.engine.scripting
    if state is None:
        return None
    script = state.scripts.get(argv[1]) or state.scripts.get(argv[1].lower())
    return script.declared if script is not None else None


def _eval_flags(s: Session, argv: list[bytes]) -> tuple[bool, bool, bool] | None:
    """evalGetCommandFlags: the flags of the script EVAL is about to run."""
    state = s.engine.scripting
    script = state.scripts.get(sha1hex(argv[1])) if state is not None else None
    if script is not None:
        return script.declared
    try:
        return declared_flags(parse_shebang(argv[1])[0])
    except ReplyError:
        return None  # EVAL itself will tell


def _fcall_flags(s: Session, argv: list[bytes]) -> tuple[bool, bool, bool] | None:
    """fcallGetCommandFlags: the flags the function was registered with."""
    state = s.engine.scripting
    if state is None or not state.has_functions:
        return None
    function = state.functions.functions.get(argv[1])
    return declared_flags(function.flags) if function is not None else None


for _name in ("eval", "eval_ro"):
    ARGUMENT_FLAGS[_name] = _eval_flags
for _name in ("evalsha", "evalsha_ro"):
    ARGUMENT_FLAGS[_name] = _evalsha_flags
for _name in ("fcall", "fcall_ro"):
    ARGUMENT_FLAGS[_name] = _fcall_flags


def _run(s: Session, argv: list[bytes], by_sha: bool, read_only: bool) -> object:
    engine = s.engine
    if engine.monitors:  # evalCommand shows the EVAL to monitors before its commands
        engine.feed_monitors(s, argv)
    stats = engine.stats
    errors = stats.error_replies
    try:
        reply = (engine.scripting or scripting(engine)).eval(s, argv, by_sha, read_only)
    finally:
        engine.rewrite()  # the script's commands are propagated, not the EVAL
    if stats.error_replies != errors:
        _failed(engine, argv)
    return reply


def _failed(engine: Engine, argv: list[bytes]) -> None:
    """Redis counts a script call as failed when any error reply was counted while it ran
    (its commands' errors, even caught by redis.pcall); its own uncounted error is raised
    and counted by the dispatcher."""
    engine.table[argv[0].lower()].failed_calls += 1


@command("eval")
def eval_(s: Session, argv: list[bytes]) -> object:
    """EVAL script numkeys [key ...] [arg ...]"""
    return _run(s, argv, by_sha=False, read_only=False)


@command("evalsha")
def evalsha(s: Session, argv: list[bytes]) -> object:
    """EVALSHA sha1 numkeys [key ...] [arg ...]"""
    engine = s.engine
    state = engine.scripting
    if state is not None and s.lua_debug is None and not engine.monitors \
            and not engine.general_lane_closed:
        # The usual call: a cached script without a shebang (prepare has nothing to
        # check: see ScriptingState.eval), a single-digit numkeys (at most the arguments
        # there are), no debugger, no MONITOR to show it to, KEYS and ARGV few enough to
        # go to Lua as arguments.
        script = state.scripts.get(argv[1])
        numkeys = _DIGITS.get(argv[2])
        if script is not None and script.flags is None and numkeys is not None \
                and numkeys + 3 <= len(argv) <= FEW_ARGUMENTS + 3:
            stats = engine.stats
            errors = stats.error_replies
            try:
                reply = state.lua.run_cached(s, script, argv, numkeys)
            finally:
                engine.rewrite()  # the script's commands are propagated, not the EVALSHA
            if stats.error_replies != errors:
                _failed(engine, argv)
            return reply
    return _run(s, argv, by_sha=True, read_only=False)


@command("eval_ro")
def eval_ro(s: Session, argv: list[bytes]) -> object:
    """EVAL_RO: a script that may not write."""
    return _run(s, argv, by_sha=False, read_only=True)


@command("evalsha_ro")
def evalsha_ro(s: Session, argv: list[bytes]) -> object:
    """EVALSHA_RO: a cached script that may not write."""
    return _run(s, argv, by_sha=True, read_only=True)


@command("script|load")
def script_load(s: Session, argv: list[bytes]) -> object:
    """SCRIPT LOAD script: compile and cache, reply the sha1."""
    return scripting(s.engine).create(argv[2])


@command("script|exists")
def script_exists(s: Session, argv: list[bytes]) -> object:
    """SCRIPT EXISTS sha1 [sha1 ...]: 1 or 0 for each (the sha1 as given, case matters)."""
    state = s.engine.scripting
    scripts = state.scripts if state is not None else {}
    return [1 if sha in scripts else 0 for sha in argv[2:]]


@command("script|flush")
def script_flush(s: Session, argv: list[bytes]) -> object:
    """SCRIPT FLUSH [ASYNC|SYNC]: forget every script, reset the Lua state."""
    if len(argv) == 3 and argv[2].lower() in (b"sync", b"async"):
        pass
    elif len(argv) != 2:
        raise ReplyError("ERR SCRIPT FLUSH only support SYNC|ASYNC option")
    if s.engine.scripting is not None:
        s.engine.scripting.flush()
    return OK


@command("script|kill")
def script_kill(s: Session, argv: list[bytes]) -> object:
    """SCRIPT KILL: stop the script that runs past busy-reply-threshold (if it wrote
    nothing)."""
    scripting(s.engine).kill(eval_mode=True)
    return OK


@command("script|debug")
def script_debug(s: Session, argv: list[bytes]) -> object:
    """SCRIPT DEBUG YES|SYNC|NO: debug the client's next EVAL (see kvrepl.scripting.ldb).
    SYNC blocks the server while the session waits for the client; YES debugs on a copy of
    the node in a thread of its own while the server serves the others, as Redis's forked
    session (kvrepl.scripting.fork)."""
    if _replies_pending(s):
        # The debugger writes to the socket itself: earlier replies would come after its own.
        raise ReplyError("ERR SCRIPT DEBUG must be called outside a pipeline")
    mode = argv[2].lower()
    if mode == b"no":
        s.lua_debug = None
        return OK
    if mode not in (b"yes", b"sync"):
        raise ReplyError("ERR Use SCRIPT DEBUG YES/SYNC/NO")
    engine = s.engine
    if engine.debug_channel is None or engine.debug_channel(s) is None:
        raise ReplyError(NO_DEBUG_CHANNEL)
    s.lua_debug = mode.decode()
    return OK


def _replies_pending(s: Session) -> bool:
    """Whether ``s`` has replies not sent yet (in EXEC, always: Redis has its array's
    header pending)."""
    if s.in_exec:
        return True
    connections = getattr(s.engine.server, "connections", None)
    connection = connections.get(s.id) if connections else None
    return connection is not None and connection.replies_pending()


@command("script|help")
def script_help(s: Session, argv: list[bytes]) -> object:
    """SCRIPT HELP"""
    return help_reply(argv, _HELP)


# -- functions (functions.c) ------------------------------------------------------------------

_FUNCTION_HELP = [
    "LOAD [REPLACE] <FUNCTION CODE>",
    "    Create a new library with the given library name and code.",
    "DELETE <LIBRARY NAME>",
    "    Delete the given library.",
    "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
    "    Return general information on all the libraries:",
    "    * Library name",
    "    * The engine used to run the Library",
    "    * Library description",
    "    * Functions list",
    "    * Library code (if WITHCODE is given)",
    "    It also possible to get only function that matches a pattern using LIBRARYNAME "
    "argument.",
    "STATS",
    "    Return information about the current function running:",
    "    * Function name",
    "    * Command used to run the function",
    "    * Duration in MS that the function is running",
    "    If no function is running, return nil",
    "    In addition, returns a list of available engines.",
    "KILL",
    "    Kill the current running function.",
    "FLUSH [ASYNC|SYNC]",
    "    Delete all the libraries.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the libraries.",
    "    * SYNC: Synchronously flush the libraries.",
    "DUMP",
    "    Return a serialized payload representing the current libraries, can be restored "
    "using FUNCTION RESTORE command",
    "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
    "    Restore the libraries represented by the given payload, it is possible to give a "
    "restore policy to",
    "    control how to handle existing libraries (default APPEND):",
    "    * FLUSH: delete all existing libraries.",
    "    * APPEND: appends the restored libraries to the existing libraries. On collision, "
    "abort.",
    "    * REPLACE: appends the restored libraries to the existing libraries, On collision, "
    "replace the old",
    "      libraries with the new libraries (notice that even on this option there is a "
    "chance of failure",
    "      in case of functions name collision with another library).",
]


def _fcall(s: Session, argv: list[bytes], read_only: bool) -> object:
    engine = s.engine
    if engine.monitors:  # fed before the commands the function runs
        engine.feed_monitors(s, argv)
    errors = engine.stats.error_replies
    try:
        reply = scripting(engine).functions.call(s, argv, read_only)
    finally:
        engine.rewrite()  # the function's commands are propagated, not the FCALL
    if engine.stats.error_replies != errors:
        _failed(engine, argv)
    return reply


@command("fcall")
def fcall(s: Session, argv: list[bytes]) -> object:
    """FCALL function numkeys [key ...] [arg ...]"""
    return _fcall(s, argv, read_only=False)


@command("fcall_ro")
def fcall_ro(s: Session, argv: list[bytes]) -> object:
    """FCALL_RO: a function that may not write."""
    return _fcall(s, argv, read_only=True)


@command("function|load")
def function_load(s: Session, argv: list[bytes]) -> object:
    """FUNCTION LOAD [REPLACE] code: the library's name. Replicated as it was sent."""
    replace = False
    position = 2
    while position < len(argv) - 1:
        option = argv[position]
        position += 1
        if option.lower() == b"replace":
            replace = True
            continue
        raise ReplyError(f"ERR Unknown option given: {option.decode('utf-8', 'replace')}")
    if position >= len(argv):
        raise ReplyError("ERR Function code is missing")
    timeout = 0 if s.is_master else LOAD_TIMEOUT
    name = scripting(s.engine).functions.create(argv[position], replace, timeout)
    s.engine.dirty += 1
    return name


@command("function|delete")
def function_delete(s: Session, argv: list[bytes]) -> object:
    """FUNCTION DELETE library"""
    scripting(s.engine).functions.delete(argv[2])
    s.engine.dirty += 1
    return OK


@command("function|flush")
def function_flush(s: Session, argv: list[bytes]) -> object:
    """FUNCTION FLUSH [ASYNC|SYNC]"""
    if len(argv) > 3:
        raise subcommand_syntax_error(argv)
    if len(argv) == 3 and argv[2].lower() not in (b"sync", b"async"):
        raise ReplyError("ERR FUNCTION FLUSH only supports SYNC|ASYNC option")
    scripting(s.engine).functions.flush()
    s.engine.dirty += 1
    return OK


@command("function|list")
def function_list(s: Session, argv: list[bytes]) -> object:
    """FUNCTION LIST [LIBRARYNAME pattern] [WITHCODE]"""
    with_code = False
    pattern = None
    position = 2
    while position < len(argv):
        arg = argv[position]
        if not with_code and arg.lower() == b"withcode":
            with_code = True
        elif pattern is None and arg.lower() == b"libraryname":
            if position >= len(argv) - 1:
                raise ReplyError("ERR library name argument was not given")
            position += 1
            pattern = argv[position]
        else:
            raise ReplyError(f"ERR Unknown argument {arg.decode('utf-8', 'replace')}")
        position += 1
    out = []
    for library in scripting(s.engine).functions.libraries.values():
        if pattern is not None and not glob_match(pattern, library.name, nocase=True):
            continue
        entry = {
            b"library_name": library.name,
            b"engine": b"LUA",
            b"functions": [{b"name": f.name, b"description": f.description,
                            b"flags": flags_reply(f.flags)}
                           for f in library.functions.values()],
        }
        if with_code:
            entry[b"library_code"] = library.code
        out.append(entry)
    # A pattern: the libraries' length is set after them (fcallListCommand).
    return out if pattern is None else DeferredArray(out)


@command("function|dump")
def function_dump(s: Session, argv: list[bytes]) -> object:
    """FUNCTION DUMP: the libraries as a payload FUNCTION RESTORE takes."""
    return scripting(s.engine).functions.dump()


@command("function|restore")
def function_restore(s: Session, argv: list[bytes]) -> object:
    """FUNCTION RESTORE payload [FLUSH|APPEND|REPLACE]"""
    if len(argv) > 4:
        raise subcommand_syntax_error(argv)
    policy = b"append"
    if len(argv) == 4:
        policy = argv[3].lower()
        if policy not in (b"append", b"replace", b"flush"):
            raise ReplyError("ERR Wrong restore policy given, value should be either FLUSH, "
                             "APPEND or REPLACE.")
    scripting(s.engine).functions.restore(argv[2], policy)
    s.engine.dirty += 1
    return OK


@command("function|stats")
def function_stats(s: Session, argv: list[bytes]) -> object:
    """FUNCTION STATS"""
    return scripting(s.engine).functions.stats()


@command("function|kill")
def function_kill(s: Session, argv: list[bytes]) -> object:
    """FUNCTION KILL: stop the function that runs past busy-reply-threshold."""
    scripting(s.engine).kill(eval_mode=False)
    return OK


@command("function|help")
def function_help(s: Session, argv: list[bytes]) -> object:
    """FUNCTION HELP"""
    return help_reply(argv, _FUNCTION_HELP)
