"""Errors that map one-to-one to Redis error replies.

The message of a :class:`ReplyError` is the whole error line a Redis client sees, prefix
included (``"WRONGTYPE Operation against a key ..."``): error prefixes are API, clients such as
redis-py pick their exception class from them.
"""

from __future__ import annotations


class KvreplError(Exception):
    """Base class of every error kvrepl raises."""


try:  # redis-py's own class when it is installed, so `except redis.DataError` catches ours
    from redis.exceptions import DataError as _DataErrorBase
except ImportError:  # pragma: no cover - redis-py is optional
    _DataErrorBase = ValueError  # type: ignore[misc,assignment]


class DataError(KvreplError, _DataErrorBase):
    """An argument that is not bytes, str, int or float (None, a bool, a list...): what
    redis-py raises for one, ``redis.exceptions.DataError`` when redis-py is installed."""


class ReplyError(KvreplError):
    """A command failed; ``str(err)`` is the error line Redis would send (without ``-``)."""

    prefix = "ERR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class WrongTypeError(ReplyError):
    prefix = "WRONGTYPE"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or WRONGTYPE)


class ReadOnlyError(ReplyError):
    prefix = "READONLY"


class LoadingError(ReplyError):
    prefix = "LOADING"


class NoAuthError(ReplyError):
    prefix = "NOAUTH"


class ExecAbortError(ReplyError):
    prefix = "EXECABORT"


class ReplicaPanic(KvreplError):
    """A replica stopped itself as redis-server panics: a command of its master's stream
    failed here (``propagation-error-behavior panic``/``panic-on-replicas`` on a read-only
    replica), or a write arrived while it could not save (``replica-ignore-disk-write-errors
    no``). Raised out of the node's ``async with``; ``kvrepl-server`` exits with status 1."""


class WriteSkipped(KvreplError):
    """A command of the master's stream failed on this replica, so its dataset no longer
    matches the master's. ``node.changes()`` raises it in order, where the write would have
    been; iterating again continues with the later changes.

    ``command`` is the name Redis logs (``"<unknown>"`` for a command kvrepl does not
    know), ``argv`` the command as received, ``error`` the error reply, ``db`` the db it
    ran in."""

    def __init__(self, db: int, command: str, argv: list[bytes], error: str) -> None:
        super().__init__(f"the replica could not apply '{command}' from its master "
                         f"(db {db}): {error}")
        self.db = db
        self.command = command
        self.argv = argv
        self.error = error


class ProtocolError(KvreplError):
    """The peer sent bytes that are not RESP; the connection must be closed after replying."""


# The messages Redis 7.0 uses, word for word (server.c shared objects and t_*.c).
WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"
SYNTAX = "ERR syntax error"
NOT_INTEGER = "ERR value is not an integer or out of range"
NOT_FLOAT = "ERR value is not a valid float"
OVERFLOW = "ERR increment or decrement would overflow"
NO_SUCH_KEY = "ERR no such key"
OUT_OF_RANGE = "ERR index out of range"
DB_INDEX_OUT_OF_RANGE = "ERR DB index is out of range"
NOT_POSITIVE = "ERR value is out of range, must be positive"
TIMEOUT_NOT_FLOAT = "ERR timeout is not a float or out of range"
TIMEOUT_NEGATIVE = "ERR timeout is negative"
MIN_MAX_NOT_FLOAT = "ERR min or max is not a float"
MIN_MAX_NOT_STRING = "ERR min or max not valid string range item"


def wrong_arity(name: str) -> ReplyError:
    return ReplyError(f"ERR wrong number of arguments for '{name}' command")


def unknown_command(name: str, args: list[bytes]) -> ReplyError:
    # As commandCheckExistence: arguments quoted while the list is under 128 bytes, each
    # cut to fill it up to 128 at most.
    shown = b""
    for arg in args:
        if len(shown) >= 128:
            break
        shown += b"'" + arg[:128 - len(shown)] + b"' "
    return ReplyError(
        f"ERR unknown command '{name[:128]}', with args beginning with: "
        + shown.decode("utf-8", "replace")
    )
