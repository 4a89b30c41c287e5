"""MODULE LIST/HELP/LOAD/LOADEX/UNLOAD (Redis 7.0 ``module.c`` moduleCommand).

kvrepl cannot load Redis modules (they are C shared objects written against Redis's own
process): LOAD and LOADEX fail as a module that cannot load fails in Redis, with the same
error, and the log says why; no module is ever loaded, so LIST is empty and UNLOAD finds
none. LOAD, LOADEX and UNLOAD are PROTECTED commands (``enable-module-command``), refused
before this by the dispatcher when not allowed.
"""

from __future__ import annotations

from kvrepl.commands.core import Session, command
from kvrepl.commands.help import help_reply
from kvrepl.errors import ReplyError
from kvrepl.log import logger

_HELP = [
    "LIST",
    "    Return a list of loaded modules.",
    "LOAD <path> [<arg> ...]",
    "    Load a module library from <path>, passing to it any optional arguments.",
    "LOADEX <path> [[CONFIG NAME VALUE] [CONFIG NAME VALUE]] [ARGS ...]",
    "    Load a module library from <path>, while passing it module configurations and "
    "optional arguments.",
    "UNLOAD <name>",
    "    Unload a module.",
]
_CANNOT_LOAD = "ERR Error loading the extension. Please check the server logs."


@command("module|list")
def module_list(s: Session, argv: list[bytes]) -> object:
    """MODULE LIST: no module is loaded."""
    return []


@command("module|load", "module|loadex")
def module_load(s: Session, argv: list[bytes]) -> object:
    """MODULE LOAD path [arg ...] / MODULE LOADEX path ...: refused, logged."""
    path = argv[2].decode("utf-8", "replace")
    logger.warning("Module %s failed to load: kvrepl cannot load Redis modules "
                   "(they run inside redis-server's own process)", path)
    raise ReplyError(_CANNOT_LOAD)


@command("module|unload")
def module_unload(s: Session, argv: list[bytes]) -> object:
    """MODULE UNLOAD name: there is no module of any name."""
    raise ReplyError("ERR Error unloading module: no such module with that name")


@command("module|help")
def module_help(s: Session, argv: list[bytes]) -> object:
    """MODULE HELP."""
    return help_reply(argv, _HELP)
