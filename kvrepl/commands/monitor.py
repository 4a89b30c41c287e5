"""MONITOR's line format: ``+<time> [<db> <addr>] "arg" "arg"``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kvrepl.protocol.replies import Status

if TYPE_CHECKING:
    from kvrepl.commands.core import Session


# sdscatrepr: named escapes for \\ " \n \r \t \a \b, printable ASCII as is, \xHH for the rest.
_NAMED = {0x5C: "\\\\", 0x22: '\\"', 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x07: "\\a",
          0x08: "\\b"}
_REPR = [_NAMED.get(c) or (chr(c) if 32 <= c < 127 else f"\\x{c:02x}") for c in range(256)]


def repr_bytes(data: bytes) -> str:
    """Quote bytes as Redis's ``sdscatrepr`` does (``"a\\n\\x00"``)."""
    return '"' + "".join([_REPR[c] for c in data]) + '"'


_REDACTED = b"(redacted)"


def redacted(argv: list[bytes]) -> list[bytes]:
    """redactClientCommandArgument: what MONITOR must not show of AUTH's credentials and
    HELLO's AUTH option."""
    name = argv[0].lower()
    if name == b"auth":
        return [argv[0], *[_REDACTED] * (len(argv) - 1)]
    if name == b"hello":
        shown = list(argv)
        i = 2
        while i < len(shown):
            if shown[i].lower() == b"auth" and i + 2 < len(shown):
                shown[i + 1] = shown[i + 2] = _REDACTED
                i += 3
            else:
                i += 1
        return shown
    return argv


def monitor_line(session: Session, argv: list[bytes], now: float) -> Status:
    """The line MONITOR clients receive for one command ``session`` ran."""
    origin = "lua" if session.kind == "lua" else session.addr
    if session.is_master:
        origin = "master"
    args = " ".join(repr_bytes(a) for a in redacted(argv))
    return Status(f"{now:.6f} [{session.db.id} {origin}] {args}".encode())
