"""Connection commands: PING ECHO SELECT QUIT AUTH HELLO RESET (CLIENT is in ``client.py``).

Redis 7.0 ``networking.c`` (helloCommand, resetCommand, clientSetName), ``server.c``
(pingCommand, echoCommand), ``db.c`` (selectCommand) and ``acl.c`` (authCommand).
"""

from __future__ import annotations

from kvrepl import acl as acl_rules
from kvrepl.commands.args import INT_MAX, INT_MIN, parse_int, parse_range_int
from kvrepl.commands.core import Session, command, unwatch
from kvrepl.errors import DB_INDEX_OUT_OF_RANGE, ReplyError
from kvrepl.protocol.replies import OK, PONG, Status

REDIS_VERSION = b"7.0.15"  # the Redis whose behaviour kvrepl reproduces; tools check it

_WRONGPASS = "WRONGPASS invalid username-password pair or user is disabled."
_BAD_NAME = "ERR Client names cannot contain spaces, newlines or special characters."


@command("ping")
def ping(s: Session, argv: list[bytes]) -> object:
    """PING [message]; a RESP2 client in subscribed mode gets ``["pong", message]``."""
    if len(argv) > 2:
        raise ReplyError("ERR wrong number of arguments for 'ping' command")
    if s.subscribed and not s.resp3:
        return [b"pong", argv[1] if len(argv) == 2 else b""]
    return argv[1] if len(argv) == 2 else PONG


@command("echo")
def echo(s: Session, argv: list[bytes]) -> object:
    """ECHO message."""
    return argv[1]


@command("select")
def select(s: Session, argv: list[bytes]) -> object:
    """SELECT index: the index is a C int first (getIntFromObjectOrReply), then a db."""
    index = parse_range_int(argv[1], INT_MIN, INT_MAX)
    if not 0 <= index < len(s.engine.keyspace.dbs):
        raise ReplyError(DB_INDEX_OUT_OF_RANGE)
    s.select(index)
    return OK


@command("quit")
def quit_(s: Session, argv: list[bytes]) -> object:
    """QUIT: reply OK, then the server closes the connection."""
    s.closing = True
    return OK


def authenticate(s: Session, argv: list[bytes], user: bytes, password: bytes) -> bool:
    """ACLAuthenticateUser: log in as ``user``, or log the failure in ACL LOG."""
    engine = s.engine
    found = engine.acl.users.get(user)
    if found is None or not found.check_password(password):
        engine.acl_log(s, acl_rules.DENIED_AUTH, argv[0], s.multi is not None,
                       argv[0].decode("utf-8", "replace").lower(), username=user)
        return False
    s.authenticated = True
    s.user = found
    return True


def set_client_name(s: Session, name: bytes) -> None:
    """clientSetName: an empty name removes it; only printable ASCII without spaces."""
    if any(c < 0x21 or c > 0x7E for c in name):
        raise ReplyError(_BAD_NAME)
    s.name = name or None


@command("auth")
def auth(s: Session, argv: list[bytes]) -> object:
    """AUTH [username] password."""
    if len(argv) > 3:
        raise ReplyError("ERR syntax error")
    if len(argv) == 2 and s.engine.acl.default.nopass:
        raise ReplyError(
            "ERR AUTH <password> called without any password configured for the default "
            "user. Are you sure your configuration is correct?")
    user, password = (b"default", argv[1]) if len(argv) == 2 else (argv[1], argv[2])
    if not authenticate(s, argv, user, password):
        raise ReplyError(_WRONGPASS)
    return OK


@command("hello")
def hello(s: Session, argv: list[bytes]) -> object:
    """HELLO [protover [AUTH username password] [SETNAME clientname]]."""
    version = 0
    i = 1
    if len(argv) >= 2:
        version = parse_int(argv[1], "ERR Protocol version is not an integer or out of range")
        i = 2
        if version < 2 or version > 3:
            raise ReplyError("NOPROTO unsupported protocol version")
    while i < len(argv):
        remaining = len(argv) - 1 - i
        option = argv[i].lower()
        if option == b"auth" and remaining >= 2:
            if not authenticate(s, argv, argv[i + 1], argv[i + 2]):
                raise ReplyError(_WRONGPASS)
            i += 3
        elif option == b"setname" and remaining >= 1:
            # Set at once, as Redis does: a later bad option does not undo it.
            set_client_name(s, argv[i + 1])
            i += 2
        else:
            raise ReplyError(
                f"ERR Syntax error in HELLO option '{argv[i].decode('utf-8', 'replace')}'")
    if not s.authenticated:
        raise ReplyError(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise "
            "the HELLO AUTH <user> <pass> option can be used to authenticate the client and "
            "select the RESP protocol version at the same time")
    if version:
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


def reset_session(s: Session) -> None:
    """clearClientConnectionState: make ``s`` look like a new connection (RESET)."""
    from kvrepl.commands.pubsub import unsubscribe_all

    engine = s.engine
    if s.monitor:
        s.monitor = False
        engine.remove_monitor(s)
    s.select(0)
    s.resp3 = False
    s.authenticated = not engine.acl.auth_required()
    s.user = engine.acl.default
    s.set_multi(None)
    s.multi_error = False
    unwatch(s)
    engine.tracking.disable(s)
    unsubscribe_all(s)
    s.name = None
    s.reply_off = False  # CLIENT REPLY OFF ends (a SKIP of this very command still holds)


@command("reset")
def reset(s: Session, argv: list[bytes]) -> object:
    """RESET: discard MULTI, watches, subscriptions, MONITOR, name, db and protocol."""
    if s.is_master or (s.is_replica and not s.monitor):
        raise ReplyError("ERR can only reset normal client connections")
    reset_session(s)
    return Status(b"RESET")
