"""Logging in redis-server's format: ``<pid>:<role> <date> <level-char> <message>``."""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import time

from kvrepl.errors import ReplicaPanic

_LEVEL_CHARS = {logging.DEBUG: ".", 15: "-", logging.INFO: "*", logging.WARNING: "#",
                logging.ERROR: "#", logging.CRITICAL: "#"}
_LEVELS = {"debug": logging.DEBUG, "verbose": 15, "notice": logging.INFO,
           "warning": logging.WARNING, "nothing": logging.CRITICAL + 10}

logger = logging.getLogger("kvrepl")


class RedisFormatter(logging.Formatter):
    """``12345:M 25 Nov 2026 13:14:10.123 * Ready to accept connections``."""

    role = "M"

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%d %b %Y %H:%M:%S", time.localtime(record.created))
        millis = int(record.msecs)
        char = _LEVEL_CHARS.get(record.levelno, "*")
        role = getattr(record, "role", None) or self.role
        return f"{os.getpid()}:{role} {stamp}.{millis:03d} {char} {record.getMessage()}"


# Where syslog(3) writes on Linux; a module attribute so that a test can own the socket.
SYSLOG_ADDRESS = "/dev/log"
# serverLogRaw's syslogLevelMap, by Python level name (verbose is level 15).
_SYSLOG_PRIORITIES = {"DEBUG": "debug", logging.getLevelName(15): "info", "INFO": "notice"}


class RedisSysLogHandler(logging.handlers.SysLogHandler):
    """syslog(3) as serverLogRaw calls it: the message alone, ``ident[pid]: `` before it,
    at the priority Redis maps each level to (verbose is LOG_INFO, notice LOG_NOTICE)."""

    def mapPriority(self, levelName: str) -> str:  # noqa: N802 - logging's name
        return _SYSLOG_PRIORITIES.get(levelName, "warning")


def configure(loglevel: str = "notice", logfile: str = "", *, syslog: bool = False,
              ident: str = "redis", facility: str = "local0") -> None:
    """Send kvrepl's log to ``logfile`` (stdout when empty) at redis.conf's ``loglevel``,
    and with ``syslog`` (syslog-enabled) to the system log too, as ``ident`` with
    ``facility`` (syslog-ident, syslog-facility)."""
    handler: logging.Handler
    handler = logging.FileHandler(logfile) if logfile else logging.StreamHandler(sys.stdout)
    handler.setFormatter(RedisFormatter())
    handlers = [handler]
    if syslog:
        system = RedisSysLogHandler(SYSLOG_ADDRESS, facility=facility)
        system.ident = f"{ident}[{os.getpid()}]: "
        handlers.append(system)
    for old in logger.handlers:
        if isinstance(old, (logging.FileHandler, logging.handlers.SysLogHandler)):
            old.close()
    logger.handlers[:] = handlers
    set_level(loglevel)
    logger.propagate = False


def current_stream() -> object:
    """The file kvrepl's log writes to (stdout when it is not configured to a file):
    where a crash report goes."""
    for handler in logger.handlers:
        stream = getattr(handler, "stream", None)
        if stream is not None:
            return stream
    return sys.stderr


def set_level(loglevel: str) -> None:
    """redis.conf's ``loglevel`` for kvrepl's log (also CONFIG SET loglevel)."""
    logger.setLevel(_LEVELS.get(loglevel, logging.INFO))

def panic(message: str) -> ReplicaPanic:
    """Log ``message`` as redis-server's serverPanic does; returns the exception to raise
    (it stops the node; kvrepl-server then exits with status 1)."""
    logger.warning("------------------------------------------------")
    logger.warning("!!! Software Failure. Press left mouse button to continue")
    logger.warning("Guru Meditation: %s", message)
    return ReplicaPanic(message)


# A library stays quiet unless the application configures logging (configure() does for
# the server); without this, Python prints warnings to stderr by itself.
logger.addHandler(logging.NullHandler())
