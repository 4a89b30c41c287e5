"""SHUTDOWN's wait for lagging replicas (Redis 7.0 server.c prepareForShutdown,
isReadyToShutdown, finishShutdown, abortShutdown), shared by SHUTDOWN and SIGTERM/SIGINT.

Without NOW, and with ``shutdown-timeout`` > 0, a master whose replicas have not all
acknowledged its offset pauses clients' writes, asks the replicas for an ACK, and waits (the
cron checks, :func:`tick`) until they did or the timeout passed; then it saves as configured
and stops. SHUTDOWN ABORT cancels the wait; the SHUTDOWN clients then get "Errors trying to
SHUTDOWN". Sans-IO: the server makes a SHUTDOWN client wait (``ShutdownWait``) and stops when
``engine.on_shutdown`` is called.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kvrepl import persistence
from kvrepl.commands.core import PAUSE_WRITE
from kvrepl.errors import ReplyError
from kvrepl.log import logger

if TYPE_CHECKING:
    from kvrepl.commands.core import Engine

SHUTDOWN_ERROR = "ERR Errors trying to SHUTDOWN. Check logs."
_PAUSE = "shutdown"


@dataclass(frozen=True, slots=True)
class ShutdownWait:
    """SHUTDOWN's reply while it waits for replicas: the client stays blocked until the
    node stops (no reply) or the shutdown is cancelled (``SHUTDOWN_ERROR``)."""


SHUTDOWN_WAIT = ShutdownWait()


class Shutdown:
    """One node's shutdown in progress, if any."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.deadline: float | None = None  # monotonic; set while waiting for replicas
        self.save: bool | None = None
        self.force = False
        # Called when the wait is cancelled (ABORT, or the final save failed): the blocked
        # SHUTDOWN clients are answered with the error.
        self.cancel_listeners: list[Callable[[], None]] = []

    @property
    def initiated(self) -> bool:
        return self.deadline is not None

    def begin(self, save: bool | None, now: bool, force: bool) -> bool:
        """prepareForShutdown: True when the node stops now; False when it waits for its
        replicas. ReplyError when the save failed (the node keeps running)."""
        engine = self.engine
        if engine.on_shutdown is None:
            raise ReplyError(SHUTDOWN_ERROR)
        if self.initiated:
            return False  # a second SHUTDOWN waits for the same outcome
        self.save, self.force = save, force
        logger.warning("User requested shutdown...")
        from kvrepl.server.process import tell_systemd

        tell_systemd(engine, "STOPPING=1\n")
        timeout = engine.config.shutdown_timeout
        if not now and timeout and not self.ready():
            self.deadline = time.monotonic() + timeout
            replication = engine.replication
            if not engine.pause.current() and replication is not None:
                replication.feed_raw(replication.getack_bytes)
            engine.pause.pause(PAUSE_WRITE, purpose=_PAUSE)
            logger.info("Waiting for replicas before shutting down.")
            return False
        if not self.finish():
            raise ReplyError(SHUTDOWN_ERROR)
        return True

    def ready(self) -> bool:
        """isReadyToShutdown: every replica acknowledged the whole stream."""
        replication = self.engine.replication
        if replication is None or not replication.replicas:
            return True
        offset = replication.master_repl_offset
        return all(link.ack_offset == offset for link in replication.replicas)

    def tick(self) -> None:
        """From the cron: finish once the replicas caught up or the time is up."""
        if self.initiated and (time.monotonic() >= self.deadline or self.ready()):
            self.finish()

    def finish(self) -> bool:
        """finishShutdown: log the lagging replicas, save as asked, stop the node."""
        engine = self.engine
        replication = engine.replication
        links = list(replication.replicas) if replication is not None else []
        offset = replication.master_repl_offset if replication is not None else 0
        now = time.monotonic()
        lagging = 0
        for link in links:
            if link.ack_offset != offset:
                lagging += 1
                lag = int(now - link.ack_time) if link.state == "online" else 0
                logger.warning("Lagging replica %s reported offset %d behind master, lag=%d, "
                               "state=%s.", f"{link.ip}:{link.listening_port}",
                               offset - link.ack_offset, lag, link.state)
        if links:
            logger.info("%d of %d replicas are in sync when shutting down.",
                        len(links) - lagging, len(links))
        if not persistence.prepare_shutdown(engine, self.save, self.force):
            logger.warning("Errors trying to shut down the server. Check the logs for more "
                           "information.")
            self.cancel()
            return False
        engine.on_shutdown(self.save)
        return True

    def abort(self) -> bool:
        """abortShutdown: False when no shutdown was in progress."""
        if not self.initiated:
            return False
        self.cancel()
        logger.info("Shutdown manually aborted.")
        return True

    def cancel(self) -> None:
        """cancelShutdown: the waiting SHUTDOWN clients get the error, writes resume."""
        self.deadline = None
        self.save, self.force = None, False
        for listener in list(self.cancel_listeners):
            listener()
        self.engine.pause.unpause(_PAUSE)

    def info_lines(self) -> list[str]:
        """INFO server's shutdown_in_milliseconds, while waiting."""
        if not self.initiated:
            return []
        return [f"shutdown_in_milliseconds:{int((self.deadline - time.monotonic()) * 1000)}"]


def shutdown_state(engine: Engine) -> Shutdown:
    """The engine's Shutdown, created on first use."""
    state = getattr(engine, "_shutdown_state", None)
    if state is None:
        state = engine._shutdown_state = Shutdown(engine)
    return state
