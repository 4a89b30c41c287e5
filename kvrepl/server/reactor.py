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

from kvrepl.commands.obuf import note_reply
from kvrepl.log import logger
from kvrepl.server.cron import fast_expire_cycle

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
        # The replies of this pass, by client, written at its end as Redis's beforeSleep
        # writes them (handleClientsWithPendingWrites): after the AOF (one write, and with
        # appendfsync always one fsync, for every client served), and in one burst, so that
        # a client program waiting on several connections is woken once, not once per
        # reply. Waking it is the kernel's work on our time: measured at -P 16, writing
        # each reply as soon as it was ready cost twice the system time per request.
        self._replies: dict[int, bytes] = {}

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
                if self.engine.keyspace.fast_expire_due:  # beforeSleep's, before the writes
                    fast_expire_cycle(self.engine)
                if self._replies:
                    self._send_replies()
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
        if self._replies:
            self._send_replies()

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

    def held(self, fd: int) -> int:
        """The bytes of replies this pass holds for the client on ``fd``."""
        held = self._replies.get(fd)
        return len(held) if held is not None else 0

    def held_payload(self, fd: int) -> bytes | None:
        """The replies this pass holds for the client on ``fd`` (None: none)."""
        return self._replies.get(fd)

    def _release(self, fd: int) -> bytes | None:
        """Unpark ``fd``; returns its replies of this pass not written yet."""
        del self._parked[fd]
        self._epoll.unregister(fd)
        return self._replies.pop(fd, None)

    def _hand_back(self, fd: int, task: trio.lowlevel.Task, value: object) -> None:
        # Replies this pass held for the client go first in what its task sends (none for
        # a hang-up, nor for a client killed, whose task is cancelled: Redis frees a
        # client's output buffer with it).
        held = self._release(fd)
        if held is not None and value is not HANGUP:
            out, result = value  # type: ignore[misc]
            value = ([held, *out], result)
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
        if fd not in self._parked:
            return  # killed by what it ran (a push over its output limit): its task ends
        if result is not None or connection.send_lock.locked() or not connection.io.idle():
            self._hand_back(fd, task, (out, result))
            return
        if not out:
            return
        payload = out[0] if len(out) == 1 else b"".join(out)
        replies = self._replies
        held = replies.get(fd)  # served twice in a pass only through serve_ready
        replies[fd] = payload if held is None else held + payload

    def _send_replies(self) -> None:
        """The end of a pass: write the replies it held, once the AOF has them."""
        replies, self._replies = self._replies, {}
        aof = self.engine.aof
        if aof is not None and aof.buf:
            aof.flush()
        parked = self._parked
        for fd, payload in replies.items():
            # Still parked: a client handed back took its replies with it (_release).
            connection, task = parked[fd]
            self._write(fd, connection, task, payload)

    def _write(self, fd: int, connection: Connection, task: trio.lowlevel.Task,
               payload: bytes) -> None:
        """Send a parked client's replies; what the kernel will not take now goes back to
        the client's task with the rest."""
        stats = self.engine.stats
        note_reply(connection.session, len(payload))
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
        connection.write_handed_back(payload)
        self._hand_back(fd, task, ([rest], None))
