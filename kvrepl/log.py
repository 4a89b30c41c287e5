"""Logging in redis-server's format: ``<pid>:<role> <date> <level-char> <message>``."""

from __future__ import annotations

import logging
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


def configure(loglevel: str = "notice", logfile: str = "") -> None:
    """Send kvrepl's log to ``logfile`` (stdout when empty) at redis.conf's ``loglevel``."""
    handler: logging.Handler
    handler = logging.FileHandler(logfile) if logfile else logging.StreamHandler(sys.stdout)
    handler.setFormatter(RedisFormatter())
    logger.handlers[:] = [handler]
    set_level(loglevel)
    logger.propagate = False


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
