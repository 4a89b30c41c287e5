"""Redis 7.0's protected actions: ``enable-debug-command``, ``enable-module-command`` and
``enable-protected-configs``.

Each option is ``no`` (the default: nobody), ``yes`` (every client) or ``local`` (only local
clients), and can only be set at startup. DEBUG and MODULE LOAD/LOADEX/UNLOAD carry the
PROTECTED command flag and are refused before anything else is checked, NOAUTH included
(``processCommand``); ``CONFIG SET dir`` / ``dbfilename`` are refused by CONFIG SET
(``configSetCommand``). Sources: Redis 7.0 ``server.c`` (processCommand),
``config.c`` (allowProtectedAction) and ``networking.c`` (islocalClient).

A client is local when Redis's ``islocalClient`` says so (a unix socket, or a TCP peer at
exactly ``127.0.0.1`` or ``::1``; ``::ffff:127.0.0.1`` is the same peer seen through a
dual-stack socket) and, as kvrepl's own addition, a session that is no network connection at all (the
embedded API: ``Node.execute_command``, ``master.set`` ...; in-process replication links) is
always allowed, whatever the setting: it is the application itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kvrepl.errors import ReplyError

if TYPE_CHECKING:
    from kvrepl.commands.core import Command, Session
    from kvrepl.config import Config

__all__ = ["allow_protected_action", "is_local", "is_local_address", "protected_command_error"]

_LOCAL_HOSTS = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1", "/unix", "in-process"})

# command (top-level name) -> (name in the message, the option that allows it)
_GUARDS = {
    "debug": ("DEBUG", "enable-debug-command"),
    "module": ("MODULE", "enable-module-command"),
}


def is_local_address(addr: str) -> bool:
    """islocalClient on a client's ``host:port``: a unix socket (its path), an in-process
    link, or a TCP peer at exactly ``127.0.0.1`` or ``::1``. The rest of 127.0.0.0/8 is
    not local, as in Redis 7.0. The one rule for protected mode and the ``local`` value of
    the ``enable-*`` options.

    The server gives unix-socket clients ``/path/of/the.sock:0`` (``/unix:0`` for a socket
    pair) and in-process links ``in-process:0``.
    """
    host = addr.rsplit(":", 1)[0]
    return host in _LOCAL_HOSTS or host.startswith("/")  # a unixsocket client: its path


def is_local(session: Session) -> bool:
    """islocalClient: a unix-socket, loopback or in-process client, or the embedded API
    (whose session keeps Session's default address ``127.0.0.1:0``)."""
    return is_local_address(session.addr)


def allow_protected_action(setting: str, session: Session) -> bool:
    """allowProtectedAction: may ``session`` do what option value ``setting`` guards?

    The options guard the server against its network clients; the application that embeds
    kvrepl (and its in-process replication links) is always allowed, whatever the setting:
    it owns the process, as an operator owns redis.conf."""
    if not session.over_network:
        return True
    return setting == "yes" or (setting == "local" and is_local(session))


def protected_command_error(cmd: Command, session: Session, config: Config) -> ReplyError | None:
    """The error for a PROTECTED command ``session`` may not run, or None when it may.

    The dispatcher calls this for commands whose spec is ``protected``, right after the
    arity check and before NOAUTH, as ``processCommand`` does; a refusal inside MULTI makes
    EXEC abort (``rejectCommand`` flags the transaction).
    """
    guard = _GUARDS.get(cmd.name.split("|", 1)[0])
    if guard is None:
        return None
    what, option = guard
    if allow_protected_action(config.get(option), session):
        return None
    return ReplyError(
        f'ERR {what} command not allowed. If the {option} option is set to "local", you can '
        "run it from a local connection, otherwise you need to set this option in the "
        "configuration file, and then restart the server.")
