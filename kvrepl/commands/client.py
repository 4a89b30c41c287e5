"""CLIENT subcommands (Redis 7.0 ``networking.c`` clientCommand and catClientInfoString).

Implemented: ID SETNAME GETNAME LIST INFO KILL UNBLOCK NO-EVICT TRACKING GETREDIR
TRACKINGINFO CACHING PAUSE UNPAUSE REPLY HELP (client-side caching itself:
:mod:`kvrepl.commands.tracking`).

CLIENT PAUSE holds clients in :meth:`Engine.execute` (``POSTPONED``, awaited by the server's
connection loop); CLIENT REPLY's OFF and SKIP are applied by the connection loop, which
drops the replies the session says to drop.
"""

from __future__ import annotations

import time

from kvrepl.commands import cmem, obuf
from kvrepl.commands.args import parse_int, string2ll
from kvrepl.commands.connection import set_client_name
from kvrepl.commands.core import PAUSE_ALL, PAUSE_WRITE, Session, command
from kvrepl.commands.help import help_reply, subcommand_syntax_error
from kvrepl.commands.tracking import trackinginfo
from kvrepl.errors import SYNTAX, TIMEOUT_NEGATIVE, ReplyError
from kvrepl.protocol.replies import NULL_ARRAY, OK, Raw, Verbatim

_HELP = [
    "CACHING (YES|NO)",
    "    Enable/disable tracking of the keys for next command in OPTIN/OPTOUT modes.",
    "GETREDIR",
    "    Return the client ID we are redirecting to when tracking is enabled.",
    "GETNAME",
    "    Return the name of the current connection.",
    "ID",
    "    Return the ID of the current connection.",
    "INFO",
    "    Return information about the current client connection.",
    "KILL <ip:port>",
    "    Kill connection made from <ip:port>.",
    "KILL <option> <value> [<option> <value> [...]]",
    "    Kill connections. Options are:",
    "    * ADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made from the specified address",
    "    * LADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made to specified local address",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Kill connections by type.",
    "    * USER <username>",
    "      Kill connections authenticated by <username>.",
    "    * SKIPME (YES|NO)",
    "      Skip killing current connection (default: yes).",
    "LIST [options ...]",
    "    Return information about client connections. Options:",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Return clients of specified type.",
    "UNPAUSE",
    "    Stop the current client pause, resuming traffic.",
    "PAUSE <timeout> [WRITE|ALL]",
    "    Suspend all, or just write, clients for <timeout> milliseconds.",
    "REPLY (ON|OFF|SKIP)",
    "    Control the replies sent to the current connection.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
    "UNBLOCK <clientid> [TIMEOUT|ERROR]",
    "    Unblock the specified blocked client.",
    "TRACKING (ON|OFF) [REDIRECT <id>] [BCAST] [PREFIX <prefix> [...]]",
    "         [OPTIN] [OPTOUT] [NOLOOP]",
    "    Control server assisted client side caching.",
    "TRACKINGINFO",
    "    Report tracking status for the current connection.",
    "NO-EVICT (ON|OFF)",
    "    Protect current client connection from eviction.",
]

# getClientTypeByName: "slave" and "replica" are one type.
_TYPES = {b"normal": "normal", b"slave": "slave", b"replica": "slave", b"pubsub": "pubsub",
          b"master": "master"}


def client_type(s: Session) -> str:
    """getClientType: master, slave (a replica, not a MONITOR), pubsub or normal."""
    if s.is_master:
        return "master"
    if s.is_replica and not s.monitor:
        return "slave"
    if s.subscribed:
        return "pubsub"
    return "normal"


def _flags(s: Session) -> str:
    flags = ""
    if s.monitor:
        flags += "O"
    elif s.is_replica:
        flags += "S"
    if s.is_master:
        flags += "M"
    if s.subscribed:
        flags += "P"
    if s.multi is not None:
        flags += "x"
    if s.blocked is not None or s.id in s.engine.pause.postponed:
        flags += "b"
    if s.tracking is not None:
        flags += "t"
        if s.tracking.broken_redirect:
            flags += "R"
        if s.tracking.bcast:
            flags += "B"
    if s.dirty_cas:
        flags += "d"
    if s.closing:
        flags += "c"
    if s.addr.startswith("/"):
        flags += "U"
    if getattr(s, "no_evict", False):
        flags += "e"
    return flags or "N"


def _connection(s: Session) -> object | None:
    connections = getattr(s.engine.server, "connections", None)
    return connections.get(s.id) if connections else None


def _fd(connection: object | None) -> int:
    sock = getattr(getattr(connection, "stream", None), "socket", None)
    try:
        return sock.fileno() if sock is not None else -1
    except OSError:
        return -1


def _events(connection: object | None) -> str:
    """The handlers Redis would have on the socket: reading always; writing while a reply
    waits for the kernel to take it."""
    if connection is None:
        return ""
    return "rw" if obuf.writing(connection) else "r"


def _last_command(s: Session, current: Session | None, running: str) -> str:
    if s is current:
        return running  # Redis records the command before running it
    last = s.last_command
    if isinstance(last, bytes):
        last = last.decode("utf-8", "replace")
    return last if last == "NULL" else last.lower()


def client_info_line(s: Session, current: Session | None = None, running: str = "",
                     argv: list[bytes] | None = None) -> str:
    """One CLIENT LIST line, fields in Redis 7.0's order (``argv``: the command ``current``
    is running); the memory fields as kvrepl.commands.cmem measures and sizes them."""
    now = int(time.time())
    connection = _connection(s)
    idle_since = max(s.created, s.last_interaction)
    name = (s.name or b"").decode("utf-8", "replace")
    multi = len(s.multi) if s.multi is not None else -1
    mem = cmem.measure(s, argv if s is current else None)
    return (
        f"id={s.id} addr={s.addr} laddr={s.laddr} fd={_fd(connection)} name={name} "
        f"age={now - int(s.created)} idle={max(0, now - int(idle_since))} flags={_flags(s)} "
        f"db={s.db.id} sub={len(s.channels)} psub={len(s.patterns)} ssub={len(s.shard_channels)} multi={multi} "
        f"qbuf={mem.qbuf} qbuf-free={mem.qbuf_free} argv-mem={mem.argv_mem} "
        f"multi-mem={mem.multi_mem} rbs={mem.rbs} rbp={mem.rbp} "
        f"obl={mem.obl} oll={mem.oll} omem={mem.omem} tot-mem={mem.total} "
        f"events={_events(connection)} "
        f"cmd={_last_command(s, current, running)} user={s.user.name.decode('utf-8', 'replace')} "
        f"redir={-1 if s.tracking is None else s.tracking.redirect} "
        f"resp={3 if s.resp3 else 2}"
    )


@command("client|id")
def client_id(s: Session, argv: list[bytes]) -> object:
    """CLIENT ID."""
    return s.id


@command("client|setname")
def client_setname(s: Session, argv: list[bytes]) -> object:
    """CLIENT SETNAME name (an empty name removes it)."""
    set_client_name(s, argv[2])
    return OK


@command("client|getname")
def client_getname(s: Session, argv: list[bytes]) -> object:
    """CLIENT GETNAME: the name, or nil."""
    return s.name


@command("client|info")
def client_info(s: Session, argv: list[bytes]) -> object:
    """CLIENT INFO: this connection's CLIENT LIST line."""
    return Verbatim((client_info_line(s, s, "client|info", argv) + "\n").encode())


@command("client|list")
def client_list(s: Session, argv: list[bytes]) -> object:
    """CLIENT LIST [TYPE type] [ID id [id ...]]."""
    sessions = list(s.engine.sessions.values())
    if len(argv) == 4 and argv[2].lower() == b"type":
        kind = _TYPES.get(argv[3].lower())
        if kind is None:
            raise ReplyError(f"ERR Unknown client type '{argv[3].decode('utf-8', 'replace')}'")
        sessions = [c for c in sessions if client_type(c) == kind]
    elif len(argv) > 3 and argv[2].lower() == b"id":
        ids = [parse_int(arg, "ERR Invalid client ID") for arg in argv[3:]]
        found = (s.engine.sessions.get(i) for i in ids)
        sessions = [c for c in found if c is not None]
    elif len(argv) != 2:
        raise ReplyError(SYNTAX)
    lines = "".join(client_info_line(c, s, "client|list", argv) + "\n" for c in sessions)
    return Verbatim(lines.encode())


def kill_session(target: Session) -> None:
    """Disconnect another client now: its connection is cancelled and its state dropped."""
    target.closing = True
    if target.on_kill is not None:
        target.on_kill()
    target.engine.close_session(target)


@command("client|kill")
def client_kill(s: Session, argv: list[bytes]) -> object:
    """CLIENT KILL addr | CLIENT KILL [ID id] [TYPE t] [ADDR a] [LADDR a] [USER u] [SKIPME y/n].

    The old form answers OK or "No such client" and may kill the caller; the filter form
    answers how many were killed. The caller is closed after its reply.
    """
    addr = laddr = user = None
    kind = None
    wanted_id = 0
    skipme = True
    if len(argv) == 3:
        addr = argv[2].decode("utf-8", "replace")
        skipme = False
    else:
        i = 2
        while i < len(argv):
            option = argv[i].lower()
            if i + 1 >= len(argv):
                raise ReplyError(SYNTAX)
            value = argv[i + 1]
            if option == b"id":
                wanted_id = string2ll(value) or 0
                if wanted_id <= 0:
                    raise ReplyError("ERR client-id should be greater than 0")
            elif option == b"type":
                kind = _TYPES.get(value.lower())
                if kind is None:
                    raise ReplyError(
                        f"ERR Unknown client type '{value.decode('utf-8', 'replace')}'")
            elif option == b"addr":
                addr = value.decode("utf-8", "replace")
            elif option == b"laddr":
                laddr = value.decode("utf-8", "replace")
            elif option == b"user":
                if value not in s.engine.acl.users:
                    raise ReplyError(f"ERR No such user '{value.decode('utf-8', 'replace')}'")
                user = value
            elif option == b"skipme":
                if value.lower() == b"yes":
                    skipme = True
                elif value.lower() == b"no":
                    skipme = False
                else:
                    raise ReplyError(SYNTAX)
            else:
                raise ReplyError(SYNTAX)
            i += 2
    killed = 0
    for target in list(s.engine.sessions.values()):
        if addr is not None and target.addr != addr:
            continue
        if laddr is not None and target.laddr != laddr:
            continue
        if kind is not None and client_type(target) != kind:
            continue
        if wanted_id and target.id != wanted_id:
            continue
        if user is not None and target.user.name != user:
            continue
        if target is s:
            if skipme:
                continue
            s.closing = True  # after this reply
        else:
            kill_session(target)
        killed += 1
    if len(argv) == 3:
        if not killed:
            raise ReplyError("ERR No such client")
        return OK
    return killed


@command("client|unblock")
def client_unblock(s: Session, argv: list[bytes]) -> object:
    """CLIENT UNBLOCK id [TIMEOUT|ERROR]: 1 when a blocked client was woken up."""
    if len(argv) > 4:
        raise subcommand_syntax_error(argv)
    error = False
    if len(argv) == 4:
        reason = argv[3].lower()
        if reason == b"error":
            error = True
        elif reason != b"timeout":
            raise ReplyError("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR")
    target = s.engine.sessions.get(parse_int(argv[2]))
    blocking = getattr(s.engine.server, "blocking", None)
    if target is None or target.blocked is None or blocking is None:
        return 0
    # replyToBlockedClientTimedOut: every list and sorted set wait times out with a null array.
    reply = ReplyError("UNBLOCKED client unblocked via CLIENT UNBLOCK") if error else NULL_ARRAY
    return 1 if blocking.unblock(target, reply) else 0


@command("client|no-evict")
def client_no_evict(s: Session, argv: list[bytes]) -> object:
    """CLIENT NO-EVICT ON|OFF (kvrepl never evicts clients; the flag shows in CLIENT LIST)."""
    value = argv[2].lower()
    if value not in (b"on", b"off"):
        raise ReplyError(SYNTAX)
    s.no_evict = value == b"on"
    return OK


@command("client|getredir")
def client_getredir(s: Session, argv: list[bytes]) -> object:
    """CLIENT GETREDIR: the client invalidations are redirected to, 0 for none, -1 when
    not tracking."""
    return -1 if s.tracking is None else s.tracking.redirect


@command("client|trackinginfo")
def client_trackinginfo(s: Session, argv: list[bytes]) -> object:
    """CLIENT TRACKINGINFO: flags (a set), redirect, prefixes."""
    return trackinginfo(s)


@command("client|caching")
def client_caching(s: Session, argv: list[bytes]) -> object:
    """CLIENT CACHING YES|NO: track (OPTIN) or not (OPTOUT) the next command's keys."""
    state = s.tracking
    if state is None:
        raise ReplyError("ERR CLIENT CACHING can be called only when the client is in "
                         "tracking mode with OPTIN or OPTOUT mode enabled")
    option = argv[2].lower()
    if option == b"yes":
        if not state.optin:
            raise ReplyError("ERR CLIENT CACHING YES is only valid when tracking is enabled "
                             "in OPTIN mode.")
    elif option == b"no":
        if not state.optout:
            raise ReplyError("ERR CLIENT CACHING NO is only valid when tracking is enabled "
                             "in OPTOUT mode.")
    else:
        raise ReplyError(SYNTAX)
    state.caching = True
    return OK


@command("client|tracking")
def client_tracking(s: Session, argv: list[bytes]) -> object:
    """CLIENT TRACKING ON|OFF [REDIRECT id] [PREFIX p ...] [BCAST] [OPTIN] [OPTOUT]
    [NOLOOP]: options checked in Redis's order, with its messages."""
    redirect = 0
    bcast = optin = optout = noloop = False
    prefixes: list[bytes] = []
    j = 3
    while j < len(argv):
        option = argv[j].lower()
        more = j + 1 < len(argv)
        if option == b"redirect" and more:
            j += 1
            if redirect:
                raise ReplyError("ERR A client can only redirect to a single other client")
            redirect = parse_int(argv[j])
            if redirect not in s.engine.sessions:
                raise ReplyError("ERR The client ID you want redirect to does not exist")
        elif option == b"bcast":
            bcast = True
        elif option == b"optin":
            optin = True
        elif option == b"optout":
            optout = True
        elif option == b"noloop":
            noloop = True
        elif option == b"prefix" and more:
            j += 1
            prefixes.append(argv[j])
        else:
            raise ReplyError(SYNTAX)
        j += 1
    mode = argv[2].lower()
    tracking = s.engine.tracking
    if mode == b"on":
        state = s.tracking
        if not bcast and prefixes:
            raise ReplyError("ERR PREFIX option requires BCAST mode to be enabled")
        if state is not None and state.bcast != bcast:
            raise ReplyError("ERR You can't switch BCAST mode on/off before disabling "
                             "tracking for this client, and then re-enabling it with a "
                             "different mode.")
        if bcast and (optin or optout):
            raise ReplyError("ERR OPTIN and OPTOUT are not compatible with BCAST")
        if optin and optout:
            raise ReplyError("ERR You can't specify both OPTIN mode and OPTOUT mode")
        if state is not None and ((optin and state.optout) or (optout and state.optin)):
            raise ReplyError("ERR You can't switch OPTIN/OPTOUT mode before disabling "
                             "tracking for this client, and then re-enabling it with a "
                             "different mode.")
        if bcast:
            _check_prefixes(s, prefixes)
        tracking.enable(s, redirect, bcast, optin, optout, noloop, prefixes)
    elif mode == b"off":
        tracking.disable(s)
    else:
        raise ReplyError(SYNTAX)
    return OK


def _check_prefixes(s: Session, prefixes: list[bytes]) -> None:
    """checkPrefixCollisionsOrReply: no two prefixes where one starts the other."""
    def overlap(a: bytes, b: bytes) -> bool:
        return a.startswith(b) or b.startswith(a)

    mine = sorted(s.tracking.prefixes) if s.tracking is not None else []
    for i, prefix in enumerate(prefixes):
        for existing in mine:
            if overlap(existing, prefix):
                raise ReplyError(
                    f"ERR Prefix '{_text(prefix)}' overlaps with an existing prefix "
                    f"'{_text(existing)}'. Prefixes for a single client must not overlap.")
        for other in prefixes[i + 1:]:
            if overlap(prefix, other):
                raise ReplyError(
                    f"ERR Prefix '{_text(prefix)}' overlaps with another provided prefix "
                    f"'{_text(other)}'. Prefixes for a single client must not overlap.")


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


@command("client|pause")
def client_pause(s: Session, argv: list[bytes]) -> object:
    """CLIENT PAUSE timeout [WRITE|ALL]: hold clients' commands (all, or those that may
    write or replicate) for ``timeout`` ms; they run when the pause ends."""
    if len(argv) > 4:
        raise subcommand_syntax_error(argv)
    kind = PAUSE_ALL
    if len(argv) == 4:
        mode = argv[3].lower()
        if mode == b"write":
            kind = PAUSE_WRITE
        elif mode != b"all":
            raise ReplyError("ERR CLIENT PAUSE mode must be WRITE or ALL")
    timeout = parse_int(argv[2], "ERR timeout is not an integer or out of range")
    if timeout < 0:
        raise ReplyError(TIMEOUT_NEGATIVE)
    end = timeout + s.engine.keyspace.now_ms() if timeout > 0 else 0
    s.engine.pause.pause(kind, end)
    return OK


@command("client|unpause")
def client_unpause(s: Session, argv: list[bytes]) -> object:
    """CLIENT UNPAUSE: end the pause; postponed clients run."""
    s.engine.pause.unpause()
    return OK


@command("client|reply")
def client_reply(s: Session, argv: list[bytes]) -> object:
    """CLIENT REPLY ON|OFF|SKIP: only ON is answered; OFF drops every reply from now on,
    SKIP the next command's (pub/sub confirmations and messages still go out)."""
    mode = argv[2].lower()
    if mode == b"on":
        s.reply_off = False
        s.reply_skip = 0
        return OK
    if mode == b"off":
        s.reply_off = True
    elif mode == b"skip":
        if not s.reply_off:
            s.reply_skip = 2
    else:
        raise ReplyError(SYNTAX)
    return Raw(b"")


@command("client|help")
def client_help(s: Session, argv: list[bytes]) -> object:
    """CLIENT HELP (lists the subcommands kvrepl implements)."""
    return help_reply(argv, _HELP)
