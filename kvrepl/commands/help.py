"""Redis's ``addReplyHelp`` and ``addReplySubcommandSyntaxError``, shared by the families."""

from __future__ import annotations

from kvrepl.errors import ReplyError
from kvrepl.protocol.replies import DeferredArray, Status


def help_reply(argv: list[bytes], lines: list[str]) -> DeferredArray:
    """``<CMD> HELP``: a header, ``lines`` and the HELP footer, each a simple string; the
    length set after them (addReplyHelp)."""
    name = argv[0].decode("utf-8", "replace").upper()
    out = DeferredArray([Status(f"{name} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:".encode())])
    out.extend(Status(line.encode()) for line in lines)
    out.append(Status(b"HELP"))
    out.append(Status(b"    Prints this help."))
    return out


def subcommand_syntax_error(argv: list[bytes]) -> ReplyError:
    """The error a container command gives for an unknown subcommand or wrong arguments."""
    sub = argv[1].decode("utf-8", "replace")[:128]
    name = argv[0].decode("utf-8", "replace").upper()
    return ReplyError(
        f"ERR unknown subcommand or wrong number of arguments for '{sub}'. Try {name} HELP.")
