"""Serving idle clients from one task, the way Redis's event loop serves them all.

A trio task per client pays the scheduler for every request: a wake-up, a task switch and
an epoll registration change per round trip, which is most of the cost of a small command.
Here a client with nothing to await is *parked*: its socket sits in one level-triggered epoll
set, and a single task reads, executes and answers every client that is ready, in one pass,
with plain non-blocking system calls. Whenever a client needs to await something (a blocking
command, WAIT, a replica's SYNC, a reply the kernel would not take at once, a pub/sub push
being written, the end of the connection), the reactor hands it back to its own task,
which carries on exactly as without the reactor.

Plain TCP clients (``server.SocketIO``) and TLS clients (``tlsio.TlsStream``, once their
handshake is done) are both served here, through the same non-blocking calls:
``read_now``, ``write_now`` and ``idle`` (a TLS client holding decrypted bytes or
unsent ciphertext is never parked).

Linux only (``select.epoll``); elsewhere every client is served by its own task.
"""

from __future__ import annotations

import select
from time import time as now
from typing import TYPE_CHECKING, Any

import outcome
import trio

from kvrepl.log import logger

if TYPE_CHECKING:
    from kvrepl.commands.core import Engine
    from kvrepl.server.server import Connection

HANGUP = object()  # handed back when the client closed the connection or broke it
READ_SIZE = 64 * 1024
AVAILABLE = hasattr(select, "epoll")


class Reactor:
    """The parking place of idle clients, and the task that serves them."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.running = False
        self._epoll: Any = None
        self._parked: dict[int, tuple[Connection, trio.lowlevel.Task]] = {}
        # Replies of this pass held until the AOF is written (Redis's beforeSleep): one
        # write, and with appendfsync always one fsync, for every client served.
        self._deferred: list[tuple[int, Connection, trio.lowlevel.Task, bytes]] = []

    async def run(self) -> None:
        """Serve parked clients until cancelled."""
        self._epoll = epoll = select.epoll()
        self.running = True
        parked = self._parked
        try:
            while True:
                await trio.lowlevel.wait_readable(epoll.fileno())
                for fd, _mask in epoll.poll(0, 1024):
                    entry = parked.get(fd)
                    if entry is not None:
                        self._serve(fd, *entry)
                if self._deferred:
                    self._send_deferred()
        finally:
            self.running = False
            epoll.close()

    def serve_ready(self, skip: object) -> None:
        """Serve, now and without waiting, every parked client that is readable, except
        the one whose session is ``skip`` (a long script's caller, Redis's protectClient)."""
        parked = self._parked
        for fd, _mask in self._epoll.poll(0, 1024):
            entry = parked.get(fd)
            if entry is not None and entry[0].session is not skip:
                self._serve(fd, *entry)

    async def park(self, connection: Connection) -> Any:
        """Wait, parked, until the reactor hands ``connection`` back: with ``(out,
        result)`` (replies still to send, and what ``execute_buffered`` stopped at), or
        :data:`HANGUP`."""
        fd = connection.io.fd
        self._parked[fd] = (connection, trio.lowlevel.current_task())
        self._epoll.register(fd, select.EPOLLIN)

        def abort(_raise_cancel: object) -> trio.lowlevel.Abort:
            self._release(fd)
            return trio.lowlevel.Abort.SUCCEEDED

        return await trio.lowlevel.wait_task_rescheduled(abort)

    def _release(self, fd: int) -> None:
        del self._parked[fd]
        self._epoll.unregister(fd)

    def _hand_back(self, fd: int, task: trio.lowlevel.Task, value: object) -> None:
        self._release(fd)
        trio.lowlevel.reschedule(task, outcome.Value(value))

    def _serve(self, fd: int, connection: Connection, task: trio.lowlevel.Task) -> None:
        """One client is readable: read, run what it sent, answer."""
        stats = self.engine.stats
        stats.reads_processed += 1  # every read, as readQueryFromClient: hang-ups too
        try:
            data = connection.io.read_now(READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            # Forgotten now, as Redis frees a client the moment it reads the hang-up: a
            # command later in this pass must not see it in CLIENT LIST or PUBSUB NUMSUB.
            self.engine.close_session(connection.session)
            self._hand_back(fd, task, HANGUP)
            return
        stats.total_net_input_bytes += len(data)
        connection.parser.feed(data)
        out: list[bytes] = []
        try:
            result = connection.execute_buffered(out)
        except Exception:  # a bug must cost this client only, as in its own task
            logger.exception("Client %s closed after an internal error", connection.session.addr)
            self._hand_back(fd, task, HANGUP)
            return
        connection.session.last_interaction = now()
        if result is not None or connection.send_lock.locked() or not connection.io.idle():
            self._hand_back(fd, task, (out, result))
            return
        if not out:
            return
        payload = out[0] if len(out) == 1 else b"".join(out)
        aof = self.engine.aof
        if self._deferred or (aof is not None and aof.buf):
            # Writes wait for the AOF: this reply, and every later one of the pass (it may
            # show them), leave after it is written.
            self._deferred.append((fd, connection, task, payload))
            return
        self._write(fd, connection, task, payload)

    def _send_deferred(self) -> None:
        deferred, self._deferred = self._deferred, []
        aof = self.engine.aof
        if aof is not None and aof.buf:
            aof.flush()
        for fd, connection, task, payload in deferred:
            entry = self._parked.get(fd)
            if entry is None or entry[0] is not connection:
                continue  # handed back (killed) meanwhile: its task owns the socket now
            self._write(fd, connection, task, payload)

    def _write(self, fd: int, connection: Connection, task: trio.lowlevel.Task,
               payload: bytes) -> None:
        """Send a parked client's replies; what the kernel will not take now goes back to
        the client's task with the rest."""
        stats = self.engine.stats
        try:
            rest = connection.io.write_now(payload)
        except OSError:
            self._hand_back(fd, task, HANGUP)
            return
        stats.writes_processed += 1
        if rest is None:
            stats.total_net_output_bytes += len(payload)
            return
        # The kernel's buffer is full: the task waits for room (a TLS stream keeps what it
        # encrypted, and hands back b"": the task's send of nothing finishes it).
        stats.total_net_output_bytes += len(payload) - len(rest)
        self._hand_back(fd, task, ([rest], None))
