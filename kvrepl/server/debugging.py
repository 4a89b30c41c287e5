"""The connection a Lua debugging session (SCRIPT DEBUG) talks over, used synchronously.

Redis's debugger puts the client's socket in blocking mode and reads and writes it from
inside the Lua hook, the whole server waiting for the debugging client. This is that, on the
descriptor of a plain TCP client (see :class:`kvrepl.scripting.ldb.Channel`).
"""

from __future__ import annotations

import os
import select

READ_SIZE = 1024
SEND_TIMEOUT_MS = 5000  # connSendTimeout(ldb.conn, 5000)


class SocketChannel:
    """Blocking reads and writes on a non-blocking socket descriptor."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

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
