"""MIGRATE's network side: the cached connections to targets (Redis's
migrate_cached_sockets: at most 64, closed after 10 s unused) and one migration's exchange.
The command's logic is in kvrepl/commands/migrate.py."""

from __future__ import annotations

import os
import random
import socket
import time
from dataclasses import dataclass, field

import trio

from kvrepl.commands.core import PAUSE_WRITE, Engine
from kvrepl.commands.migrate import (
    CONNECT_ERROR,
    MigrateJob,
    finish_migrate,
    io_error,
    target_error,
)
from kvrepl.log import logger
from kvrepl.protocol.replies import OK, encode

CACHE_ITEMS = 64  # MIGRATE_SOCKET_CACHE_ITEMS
CACHE_TTL = 10.0  # MIGRATE_SOCKET_CACHE_TTL, seconds


@dataclass(eq=False)
class CachedSocket:
    stream: trio.SocketStream
    last_dbid: int = -1
    last_use: float = field(default_factory=time.monotonic)
    buffer: bytearray = field(default_factory=bytearray)

    async def read_line(self, timeout: float) -> bytes:
        """One reply line (connSyncReadLine); OSError-like failures raise."""
        with trio.fail_after(timeout):
            while b"\n" not in self.buffer:
                data = await self.stream.receive_some(16384)
                if not data:
                    raise trio.BrokenResourceError("connection closed")
                self.buffer += data
        end = self.buffer.index(b"\n")
        line = bytes(self.buffer[:end]).rstrip(b"\r")
        del self.buffer[:end + 1]
        return line


class MigrateSockets:
    """The connections MIGRATE keeps to its targets, by "host:port"."""

    def __init__(self) -> None:
        self.cached: dict[str, CachedSocket] = {}

    async def get(self, host: str, port: int, timeout: float) -> tuple[CachedSocket, bool]:
        """migrateGetSocket: the cached connection (True: reused) or a new one."""
        name = f"{host}:{port}"
        cached = self.cached.get(name)
        if cached is not None:
            cached.last_use = time.monotonic()
            return cached, True
        if len(self.cached) >= CACHE_ITEMS:  # too many: close a random one
            self.close(random.choice(list(self.cached)))
        with trio.fail_after(timeout):
            stream = await trio.open_tcp_stream(host, port)
        cached = self.cached[name] = CachedSocket(stream)
        return cached, False

    def adopt(self, name: str, plain: socket.socket) -> None:
        """Cache a connection made without trio (by :func:`migrate_blocking`)."""
        if len(self.cached) >= CACHE_ITEMS:
            self.close(random.choice(list(self.cached)))
        plain.setblocking(False)
        self.cached[name] = CachedSocket(trio.SocketStream(trio.socket.from_stdlib_socket(plain)))

    def run_blocking(self, engine: Engine, job: MigrateJob) -> object:
        """:func:`migrate_blocking` over these connections."""
        return migrate_blocking(engine, self, job)

    def close(self, name: str) -> None:
        cached = self.cached.pop(name, None)
        if cached is not None:
            cached.stream.socket.close()

    def close_idle(self) -> None:
        """migrateCloseTimedoutSockets, from the cron."""
        now = time.monotonic()
        for name, cached in list(self.cached.items()):
            if now - cached.last_use > CACHE_TTL:
                self.close(name)


async def run_migrate(engine: Engine, sockets: MigrateSockets, job: MigrateJob) -> object:
    """Send ``job`` and finish it; the reply for the MIGRATE client. Clients' writes wait
    meanwhile (see kvrepl/commands/migrate.py)."""
    purpose = f"migrate:{id(job)}"
    engine.pause.pause(PAUSE_WRITE, purpose=purpose)
    try:
        return await _exchange(engine, sockets, job)
    finally:
        engine.pause.unpause(purpose)


class _Conversation:
    """One attempt of migrateCommand's exchange, without the I/O: the request to send, then
    each reply line fed in order (AUTH's, SELECT's, one per RESTORE)."""

    def __init__(self, job: MigrateJob, cached: CachedSocket) -> None:
        self.job = job
        self.select = cached.last_dbid != job.dbid
        request = bytearray()
        if job.auth is not None:
            request += encode(job.auth, False)
        if self.select:
            request += encode([b"SELECT", b"%d" % job.dbid], False)
        for restore in job.restores:
            request += restore
        self.request = bytes(request)
        self.writing = True
        self.timed_out = False
        self.acknowledged: list[bytes] = []
        self.error: object = None
        self.replies_read = 0
        self._auth_line = b"+"
        self._select_line = b"+"

    def lines(self) -> int:
        """How many reply lines the request asks for."""
        return (self.job.auth is not None) + self.select + len(self.job.keys)

    def feed(self, index: int, line: bytes, cached: CachedSocket) -> None:
        """Reply line number ``index``."""
        first = (self.job.auth is not None) + self.select
        if index < first:
            if index == 0 and self.job.auth is not None:
                self._auth_line = line
            else:
                self._select_line = line
            return
        key = self.job.keys[index - first]
        self.replies_read += 1
        bad = next((reply for reply in (self._auth_line, self._select_line, line)
                    if reply.startswith(b"-")), None)
        if bad is not None:
            if self.error is None:
                cached.last_dbid = -1
                self.error = target_error(bad)
        elif not self.job.copy:
            self.acknowledged.append(key)

    def settle(self, engine: Engine, sockets: MigrateSockets, cached: CachedSocket,
               socket_error: bool, may_retry: bool, inside_command: bool = False) -> object:
        """Finish the keys the target took; the reply, or _RETRY for one more attempt on a
        fresh connection."""
        job = self.job
        finish_migrate(engine, job, self.acknowledged, inside_command)
        if socket_error:
            name = f"{job.host}:{job.port}"
            sockets.close(name)
            # Retry once on a fresh connection when nothing was processed (a cached
            # connection the target had closed), never after a timeout.
            if self.error is None and self.replies_read == 0 and not self.acknowledged \
                    and may_retry and not self.timed_out:
                return _RETRY
            if self.error is None:
                logger.debug("MIGRATE to %s failed while %s", name,
                             "writing" if self.writing else "reading")
                return io_error(self.writing)
        if self.error is not None:
            return self.error
        cached.last_dbid = job.dbid
        return OK


_RETRY = object()


async def _exchange(engine: Engine, sockets: MigrateSockets, job: MigrateJob) -> object:
    may_retry = True
    while True:
        try:
            cached, _ = await sockets.get(job.host, job.port, job.timeout)
        except (socket.gaierror, trio.TooSlowError):
            return CONNECT_ERROR
        except OSError:
            # Redis's non-blocking connect "succeeds" against a refusing port and the
            # request's write fails: retried once, then reported as a write error.
            if may_retry:
                may_retry = False
                continue
            return io_error(True)
        talk = _Conversation(job, cached)
        try:
            with trio.fail_after(job.timeout):
                await cached.stream.send_all(talk.request)
            talk.writing = False
            for index in range(talk.lines()):
                talk.feed(index, await cached.read_line(job.timeout), cached)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError,
                trio.TooSlowError) as err:
            talk.timed_out = isinstance(err, trio.TooSlowError)
            socket_error = True
        else:
            socket_error = False
        reply = talk.settle(engine, sockets, cached, socket_error, may_retry)
        if reply is not _RETRY:
            return reply
        may_retry = False


def migrate_blocking(engine: Engine, sockets: MigrateSockets, job: MigrateJob) -> object:
    """The same exchange done synchronously, blocking the whole node, as Redis's MIGRATE
    always blocks the server: for a MIGRATE inside EXEC, which must not yield to other
    clients halfway through the transaction. It uses (and fills) the same connection cache,
    doing blocking I/O with the timeout on a duplicate of the cached socket's descriptor."""
    may_retry = True
    while True:
        name = f"{job.host}:{job.port}"
        cached = sockets.cached.get(name)
        if cached is None:
            try:
                plain = socket.create_connection((job.host, job.port), timeout=job.timeout)
            except (socket.gaierror, TimeoutError):
                return CONNECT_ERROR
            except OSError:
                if may_retry:
                    may_retry = False
                    continue
                return io_error(True)
            sockets.adopt(name, plain)
            cached = sockets.cached[name]
        else:
            cached.last_use = time.monotonic()
        talk = _Conversation(job, cached)
        with socket.socket(fileno=os.dup(cached.stream.socket.fileno())) as sock:
            sock.settimeout(job.timeout)  # poll-based: the descriptor stays non-blocking
            try:
                sock.sendall(talk.request)
                talk.writing = False
                for index in range(talk.lines()):
                    talk.feed(index, _read_line_blocking(sock, cached), cached)
            except OSError as err:
                talk.timed_out = isinstance(err, TimeoutError)
                socket_error = True
            else:
                socket_error = False
        reply = talk.settle(engine, sockets, cached, socket_error, may_retry, True)
        if reply is not _RETRY:
            return reply
        may_retry = False


def _read_line_blocking(sock: socket.socket, cached: CachedSocket) -> bytes:
    """CachedSocket.read_line, blocking (the socket's timeout bounds each receive)."""
    while b"\n" not in cached.buffer:
        data = sock.recv(16384)
        if not data:
            raise ConnectionResetError("connection closed")
        cached.buffer += data
    end = cached.buffer.index(b"\n")
    line = bytes(cached.buffer[:end]).rstrip(b"\r")
    del cached.buffer[:end + 1]
    return line
