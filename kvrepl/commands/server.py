"""Server commands (seed: FLUSHALL FLUSHDB DBSIZE; completed by the server-commands work)."""

from __future__ import annotations

from kvrepl.commands.core import Session, command
from kvrepl.errors import ReplyError
from kvrepl.protocol.replies import OK


def _flush_mode(argv: list[bytes]) -> None:
    if len(argv) > 2 or (len(argv) == 2 and argv[1].lower() not in (b"async", b"sync")):
        raise ReplyError("ERR syntax error")


@command("flushall")
def flushall(s: Session, argv: list[bytes]) -> object:
    _flush_mode(argv)
    s.engine.keyspace.flushall()
    s.engine.dirty += 1
    return OK


@command("flushdb")
def flushdb(s: Session, argv: list[bytes]) -> object:
    _flush_mode(argv)
    s.db.clear()
    s.engine.dirty += 1
    return OK


@command("dbsize")
def dbsize(s: Session, argv: list[bytes]) -> object:
    return len(s.db)
