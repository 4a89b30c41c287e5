"""EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and SCRIPT (Redis 7.0 ``eval.c``).

Scripts run in :mod:`kvrepl.scripting`. Redis 7.0 replicates a script by its effects: the
commands it ran reach replicas (several wrapped in MULTI/EXEC by the engine when the
EVAL's execution unit ends), never the EVAL itself; SCRIPT LOAD is not replicated.
"""

from __future__ import annotations

from kvrepl.commands.core import Session, command
from kvrepl.commands.help import help_reply
from kvrepl.errors import ReplyError
from kvrepl.protocol.replies import OK
from kvrepl.scripting import scripting

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


def _run(s: Session, argv: list[bytes], by_sha: bool, read_only: bool) -> object:
    engine = s.engine
    if engine.monitors:  # evalCommand shows the EVAL to monitors before its commands
        engine.feed_monitors(s, argv)
    try:
        return scripting(engine).eval(s, argv, by_sha, read_only)
    finally:
        engine.rewrite()  # the script's commands are propagated, not the EVAL


@command("eval")
def eval_(s: Session, argv: list[bytes]) -> object:
    """EVAL script numkeys [key ...] [arg ...]"""
    return _run(s, argv, by_sha=False, read_only=False)


@command("evalsha")
def evalsha(s: Session, argv: list[bytes]) -> object:
    """EVALSHA sha1 numkeys [key ...] [arg ...]"""
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
    """SCRIPT KILL: scripts run to completion before any other client is served, so there
    is never one to kill from another connection."""
    raise ReplyError("NOTBUSY No scripts in execution right now.")


@command("script|help")
def script_help(s: Session, argv: list[bytes]) -> object:
    """SCRIPT HELP"""
    return help_reply(argv, _HELP)
