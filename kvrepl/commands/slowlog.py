"""SLOWLOG GET/LEN/RESET/HELP (Redis 7.0 ``slowlog.c``).

The dispatcher fills the log (:meth:`kvrepl.commands.core.Engine.observe_slow`) with each
command that ran for at least ``slowlog-log-slower-than`` microseconds (-1: never, 0:
every command), keeping ``slowlog-max-len`` entries.
"""

from __future__ import annotations

from kvrepl.commands.args import parse_range_int
from kvrepl.commands.core import Session, command
from kvrepl.commands.help import help_reply, subcommand_syntax_error
from kvrepl.protocol.replies import OK, DeferredArray

_HELP = [
    "GET [<count>]",
    "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
    "    Entries are made of:",
    "    id, timestamp, time in microseconds, arguments array, client IP and port,",
    "    client name",
    "LEN",
    "    Return the length of the slowlog.",
    "RESET",
    "    Reset the slowlog.",
]
_LONG_MAX = (1 << 63) - 1


@command("slowlog|get")
def slowlog_get(s: Session, argv: list[bytes]) -> object:
    """SLOWLOG GET [count]: the newest ``count`` entries (10 by default, -1 for all)."""
    entries = s.engine.slowlog.entries
    count = 10
    if len(argv) == 3:
        count = parse_range_int(argv[2], -1, _LONG_MAX,
                                "ERR count should be greater than or equal to -1")
        if count == -1:
            count = len(entries)
    elif len(argv) > 3:
        raise subcommand_syntax_error(argv)
    out = DeferredArray()  # its length set after the entries
    for entry in entries:
        if len(out) >= count:
            break
        out.append([entry.id, entry.time, entry.duration, list(entry.argv), entry.peer,
                    entry.name])
    return out


@command("slowlog|len")
def slowlog_len(s: Session, argv: list[bytes]) -> object:
    """SLOWLOG LEN."""
    return len(s.engine.slowlog.entries)


@command("slowlog|reset")
def slowlog_reset(s: Session, argv: list[bytes]) -> object:
    """SLOWLOG RESET."""
    s.engine.slowlog.reset()
    return OK


@command("slowlog|help")
def slowlog_help(s: Session, argv: list[bytes]) -> object:
    """SLOWLOG HELP."""
    return help_reply(argv, _HELP)
