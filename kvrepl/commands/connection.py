"""Connection commands: PING ECHO SELECT QUIT (HELLO AUTH RESET live here too)."""

from __future__ import annotations

from kvrepl.commands.args import to_int
from kvrepl.commands.core import Session, command
from kvrepl.errors import DB_INDEX_OUT_OF_RANGE, ReplyError
from kvrepl.protocol.replies import OK, PONG


@command("ping")
def ping(s: Session, argv: list[bytes]) -> object:
    if len(argv) > 2:
        raise ReplyError("ERR wrong number of arguments for 'ping' command")
    if (s.channels or s.patterns) and not s.resp3:
        return [b"pong", argv[1] if len(argv) == 2 else b""]
    return argv[1] if len(argv) == 2 else PONG


@command("echo")
def echo(s: Session, argv: list[bytes]) -> object:
    return argv[1]


@command("select")
def select(s: Session, argv: list[bytes]) -> object:
    index = to_int(argv[1])
    if index is None:
        raise ReplyError("ERR value is not an integer or out of range")
    if not 0 <= index < len(s.engine.keyspace.dbs):
        raise ReplyError(DB_INDEX_OUT_OF_RANGE)
    s.select(index)
    return OK


@command("quit")
def quit_(s: Session, argv: list[bytes]) -> object:
    s.closing = True
    return OK



