"""New clients while a script is busy, as Redis's ``processEventsWhileBlocked`` takes them.

A script past ``busy-reply-threshold`` keeps the trio loop (it runs synchronously inside a
command), so the accept loops cannot run. From the script's interrupt hook the server calls
:meth:`BusyAcceptor.serve`: it accepts the connections waiting on the plain TCP listeners,
admits each as :meth:`Server.handle_stream` would, and answers what they send (-BUSY, or
SCRIPT KILL and the other commands allowed while busy), with plain non-blocking system calls.
Each connection's own task is started at once and takes over, with whatever is left to send
or await, as soon as the script ends. TLS clients wait for the script's end: their handshake
needs the loop.
"""

from __future__ import annotations

import os
import select
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from kvrepl.log import logger

if TYPE_CHECKING:
    from kvrepl.server.server import Connection, Server

READ_SIZE = 64 * 1024
ACCEPTS_PER_CALL = 64  # bounds one call's accepting, as Redis's MAX_ACCEPTS_PER_CALL


@dataclass
class Adopted:
    """A client accepted while a script was busy, until its task takes over."""

    connection: Connection
    out: list[bytes] = field(default_factory=list)  # replies not sent yet
    result: object = None  # what execute_buffered stopped at (to await, or the end)
    hangup: bool = False


class BusyAcceptor:
    """The plain TCP listeners, reachable from inside a busy script."""

    def __init__(self, server: Server) -> None:
        self.server = server
        # Each listener's copy of its socket (non-blocking), and where its clients' tasks start.
        self._listeners: dict[trio.SocketListener, tuple[socket.socket, trio.Nursery]] = {}
        self._adopted: dict[int, Adopted] = {}

    def add_listener(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        """Accept from ``listener`` while busy; new clients' tasks start in ``nursery``."""
        sock = socket.socket(fileno=os.dup(listener.socket.fileno()))
        sock.setblocking(False)
        self._listeners[listener] = (sock, nursery)

    def remove_listener(self, listener: trio.SocketListener) -> None:
        """No longer accept from ``listener`` (CONFIG SET moved it)."""
        entry = self._listeners.pop(listener, None)
        if entry is not None:
            entry[0].close()

    def close(self) -> None:
        for sock, _nursery in self._listeners.values():
            sock.close()
        self._listeners.clear()

    def take(self, adopted: Adopted) -> None:
        """The client's task runs: it is served from there on."""
        self._adopted.pop(id(adopted), None)

    def serve(self) -> None:
        """Accept who is waiting, and answer the clients accepted so far."""
        for sock, nursery in self._listeners.values():
            for _ in range(ACCEPTS_PER_CALL):
                try:
                    accepted, _address = sock.accept()
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as err:
                    logger.warning("Error accepting a client connection: %s", err)
                    break
                self._adopt(accepted, nursery)
        if self._adopted:
            self._serve_ready()

    def _adopt(self, accepted: socket.socket, nursery: trio.Nursery) -> None:
        from kvrepl.server.server import set_keepalive

        stream = trio.SocketStream(trio.socket.from_stdlib_socket(accepted))
        set_keepalive(stream, self.server.config.tcp_keepalive)
        admitted = self.server.admit(stream)
        if type(admitted) is bytes:  # refused (maxclients, protected mode)
            try:
                os.write(accepted.fileno(), admitted)
            except OSError:
                pass
            stream.socket.close()
            return
        adopted = Adopted(admitted)
        self._adopted[id(adopted)] = adopted
        nursery.start_soon(self.server.serve_adopted, stream, adopted)

    def _serve_ready(self) -> None:
        poller = select.poll()
        by_fd = {}
        for adopted in self._adopted.values():
            if not adopted.hangup:
                fd = adopted.connection.io.fd
                by_fd[fd] = adopted
                poller.register(fd, select.POLLIN)
        for fd, _events in poller.poll(0):
            self._serve(fd, by_fd[fd])

    def _serve(self, fd: int, adopted: Adopted) -> None:
        connection = adopted.connection
        engine = self.server.engine
        engine.stats.reads_processed += 1  # every read, as readQueryFromClient: hang-ups too
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            adopted.hangup = True
            engine.close_session(connection.session)
            return
        engine.stats.total_net_input_bytes += len(data)
        connection.parser.feed(data)
        if adopted.result is not None:
            return  # waits for its task (a reply to await, or the end of the connection)
        adopted.result = connection.execute_buffered(adopted.out)
        if adopted.result is None and adopted.out:
            payload = b"".join(adopted.out)
            adopted.out.clear()
            try:
                sent = os.write(fd, payload)
            except BlockingIOError:
                sent = 0
            except OSError:
                adopted.hangup = True
                return
            engine.stats.writes_processed += 1
            engine.stats.total_net_output_bytes += sent
            if sent < len(payload):
                adopted.out.append(payload[sent:])
