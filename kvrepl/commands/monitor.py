"""MONITOR's line format: ``+<time> [<db> <addr>] "arg" "arg"``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kvrepl.protocol.replies import Status

if TYPE_CHECKING:
    from kvrepl.commands.core import Session


def repr_bytes(data: bytes) -> str:
    """Quote bytes as Redis's ``sdscatrepr`` does (``"a\\n\\x00"``)."""
    out = ['"']
    for c in data:
        if c == 92:
            out.append("\\\\")
        elif c == 34:
            out.append('\\"')
        elif c == 10:
            out.append("\\n")
        elif c == 13:
            out.append("\\r")
        elif c == 9:
            out.append("\\t")
        elif c == 7:
            out.append("\\a")
        elif c == 8:
            out.append("\\b")
        elif 32 <= c < 127:
            out.append(chr(c))
        else:
            out.append(f"\\x{c:02x}")
    out.append('"')
    return "".join(out)


def monitor_line(session: Session, argv: list[bytes], now: float) -> Status:
    """The line MONITOR clients receive for one command ``session`` ran."""
    origin = "lua" if session.kind == "lua" else session.addr
    if session.is_master:
        origin = "master"
    args = " ".join(repr_bytes(a) for a in argv)
    return Status(f"{now:.6f} [{session.db.id} {origin}] {args}".encode())
