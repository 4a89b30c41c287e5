"""MIGRATE's network side: the cached connections to targets (Redis's
migrate_cached_sockets: at most 64, closed after 10 s unused) and one migration's exchange.
The command's logic is in kvrepl/commands/migrate.py."""

from __future__ import annotations

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


async def _exchange(engine: Engine, sockets: MigrateSockets, job: MigrateJob) -> object:
    name = f"{job.host}:{job.port}"
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
        select = cached.last_dbid != job.dbid
        request = bytearray()
        if job.auth is not None:
            request += encode(job.auth, False)
        if select:
            request += encode([b"SELECT", b"%d" % job.dbid], False)
        for restore in job.restores:
            request += restore
        writing = True
        timed_out = False
        acknowledged: list[bytes] = []
        error: object = None
        replies_read = 0
        try:
            with trio.fail_after(job.timeout):
                await cached.stream.send_all(bytes(request))
            writing = False
            auth_line = await cached.read_line(job.timeout) if job.auth is not None else b"+"
            select_line = await cached.read_line(job.timeout) if select else b"+"
            for key in job.keys:
                line = await cached.read_line(job.timeout)
                replies_read += 1
                failed = (auth_line, select_line, line)
                bad = next((reply for reply in failed if reply.startswith(b"-")), None)
                if bad is not None:
                    if error is None:
                        cached.last_dbid = -1
                        error = target_error(bad)
                elif not job.copy:
                    acknowledged.append(key)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError,
                trio.TooSlowError) as err:
            timed_out = isinstance(err, trio.TooSlowError)
            socket_error = True
        else:
            socket_error = False
        finish_migrate(engine, job, acknowledged)
        if socket_error:
            sockets.close(name)
            # Retry once on a fresh connection when nothing was processed (a cached
            # connection the target had closed), never after a timeout.
            if error is None and replies_read == 0 and not acknowledged and may_retry \
                    and not timed_out:
                may_retry = False
                continue
            if error is None:
                logger.debug("MIGRATE to %s failed while %s", name,
                             "writing" if writing else "reading")
                return io_error(writing)
        if error is not None:
            return error
        cached.last_dbid = job.dbid
        return OK
