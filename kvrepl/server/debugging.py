"""The connection a Lua debugging session (SCRIPT DEBUG) talks over, used synchronously.

Redis's debugger puts the client's socket in blocking mode and reads and writes it from
inside the Lua hook. This is that, on the descriptor of a plain TCP client (see
:class:`kvrepl.scripting.ldb.Channel`): in SYNC mode on the client's own descriptor, from the
node's thread, the whole server waiting for the debugging client; in YES mode on a duplicate
of it that the session owns (Redis's forked child has its own), from the session's worker
thread, while the node closes its side.
"""

from __future__ import annotations

import os
import select
import socket
import threading

READ_SIZE = 1024
SEND_TIMEOUT_MS = 5000  # connSendTimeout(ldb.conn, 5000)


class SocketChannel:
    """Blocking reads and writes on a non-blocking socket descriptor."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        # Set by kill(): the session is to end at once, as Redis's SIGKILLed child does.
        self.killed = False
        self._owned = False
        self._lock = threading.Lock()  # kill() from the node's thread vs close() from the session's

    @classmethod
    def duplicate(cls, fd: int) -> SocketChannel:
        """A channel on a duplicate of ``fd``, its own to close (:meth:`close`)."""
        channel = cls(os.dup(fd))
        channel._owned = True
        return channel

    def read(self) -> bytes:
        """What the client sent next, waiting as long as it takes; b"" once it is gone."""
        while True:
            try:
                return os.read(self.fd, READ_SIZE)
            except BlockingIOError:
                poller = select.poll()
                poller.register(self.fd, select.POLLIN)
                poller.poll()
            except OSError:
                return b""

    def write(self, data: bytes) -> None:
        """Send ``data``; a client that takes nothing for 5 s loses the rest (its next
        read then tells the session that it is gone)."""
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.fd, view):]
            except BlockingIOError:
                poller = select.poll()
                poller.register(self.fd, select.POLLOUT)
                if not poller.poll(SEND_TIMEOUT_MS):
                    return
            except OSError:
                return

    def kill(self) -> None:
        """End the session from another thread: the client sees the connection close now,
        and the session's next read finds it gone (nothing it writes arrives any more)."""
        with self._lock:
            if self.fd < 0:
                return  # closed already: the descriptor's number may be someone else's now
            self.killed = True
            sock = socket.socket(fileno=self.fd)  # (wraps, without changing, the descriptor)
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            finally:
                sock.detach()

    def close(self) -> None:
        """Close the duplicate (a channel on the client's own descriptor is not closed)."""
        with self._lock:
            if self._owned and self.fd >= 0:
                os.close(self.fd)
            self.fd = -1
