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





REDIS_VERSION = b"7.0.15"  # the Redis whose behaviour kvrepl reproduces; tools check it


def _check_password(s: Session, user: bytes, password: bytes) -> None:
    required = s.engine.config.requirepass
    if user != b"default" or (required and password.decode("utf-8", "replace") != required):
        raise ReplyError("WRONGPASS invalid username-password pair or user is disabled.")
    s.authenticated = True
    s.user = user


@command("auth")
def auth(s: Session, argv: list[bytes]) -> object:
    if len(argv) > 3:
        raise ReplyError("ERR syntax error")
    if len(argv) == 2 and not s.engine.config.requirepass:
        raise ReplyError(
            "ERR AUTH <password> called without any password configured for the default "
            "user. Are you sure your configuration is correct?")
    user, password = (b"default", argv[1]) if len(argv) == 2 else (argv[1], argv[2])
    _check_password(s, user, password)
    return OK


@command("hello")
def hello(s: Session, argv: list[bytes]) -> object:
    version = None
    if len(argv) >= 2:
        version = to_int(argv[1])
        if version is None:
            raise ReplyError("ERR Protocol version is not an integer or out of range")
        if version not in (2, 3):
            raise ReplyError("NOPROTO unsupported protocol version")
    i = 2
    name = None
    while i < len(argv):
        option = argv[i].lower()
        remaining = len(argv) - i - 1
        if option == b"auth" and remaining >= 2:
            _check_password(s, argv[i + 1], argv[i + 2])
            i += 3
        elif option == b"setname" and remaining >= 1:
            name = argv[i + 1]
            if b" " in name or b"\n" in name:
                raise ReplyError(
                    "ERR Client names cannot contain spaces, newlines or special characters.")
            i += 2
        else:
            raise ReplyError(f"ERR Syntax error in HELLO option '{argv[i].decode(errors='replace')}'")
    if not s.authenticated:
        raise ReplyError(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise "
            "the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the "
            "client and select the RESP protocol version at the same time")
    if name is not None:
        s.name = name or None
    if version is not None:
        s.resp3 = version == 3
    return {
        b"server": b"redis",
        b"version": REDIS_VERSION,
        b"proto": 3 if s.resp3 else 2,
        b"id": s.id,
        b"mode": b"standalone",
        b"role": b"replica" if s.engine.read_only_role() else b"master",
        b"modules": [],
    }
