"""The reactor's passes: a client's requests split over many reads and passes are answered in
order, byte for byte as redis-server answers them, and a client flooding requests does not
starve the others (parked ones, nor those whose own task waits, such as a blocked BLPOP)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from support import (
    Call,
    RawClient,
    RedisServer,
    ThreadedServer,
    pack,
    poll,
    reply_end,
    wait_blocked,
)

pytestmark = pytest.mark.redis_server


@pytest.fixture(scope="module")
def server() -> Iterator[ThreadedServer]:
    node = ThreadedServer().start()
    yield node
    node.stop()


@pytest.fixture(scope="module")
def real() -> Iterator[RedisServer]:
    peer = RedisServer()
    yield peer
    peer.stop()


def _stream(name: str, count: int) -> tuple[bytes, int]:
    """A client's requests on its own keys (so that its replies do not depend on how the
    clients interleave): the bytes and how many replies they get."""
    parts = []
    for i in range(count):
        parts += [pack("INCR", f"{name}:n"), pack("RPUSH", f"{name}:l", i),
                  pack("SET", f"{name}:s", f"v{i}"), pack("GET", f"{name}:s"),
                  pack("LRANGE", f"{name}:l", -2, -1), pack("PING")]
    return b"".join(parts), 6 * count


def _replies(port: int, streams: dict[str, bytes], counts: dict[str, int]) -> dict[str, bytes]:
    """Each stream sent by its own client at once, in small chunks cut anywhere (mid-request
    too), while its replies are read: every client's reply bytes."""
    socks = {name: socket.create_connection(("127.0.0.1", port), timeout=10)
             for name in streams}
    got: dict[str, bytes] = {}

    def send(name: str) -> None:
        data, sock = streams[name], socks[name]
        step = 7 + len(name)  # a different cut for each client
        for at in range(0, len(data), step * 13):
            sock.sendall(data[at:at + step * 13])

    def read(name: str) -> None:
        buf, pos, sock = b"", 0, socks[name]
        for _ in range(counts[name]):
            while (end := reply_end(buf, pos)) is None:
                chunk = sock.recv(65536)
                assert chunk, "the server closed the connection"
                buf += chunk
            pos = end
        got[name] = buf

    threads = [threading.Thread(target=job, args=(name,), daemon=True)
               for name in streams for job in (send, read)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive(), "a client was never answered"
    for sock in socks.values():
        sock.close()
    return got


def test_requests_over_many_passes_are_answered_in_order_as_redis_server(
        server: ThreadedServer, real: RedisServer) -> None:
    streams, counts = {}, {}
    for name in ("a", "bb", "ccc", "dddd"):
        streams[name], counts[name] = _stream(f"passes:{name}", 400)
    for port in (server.port, real.port):
        RawClient(port).call("DEL", *(f"passes:{n}:{k}" for n in streams for k in "nls"))
    ours = _replies(server.port, streams, counts)
    theirs = _replies(real.port, streams, counts)
    for name in streams:
        assert ours[name] == theirs[name], name


class Flood:
    """A client sending PINGs as fast as the server takes them (bounded: at most ``cap``
    bytes), its replies read and dropped, until stopped."""

    def __init__(self, port: int, cap: int = 256 * 1024 * 1024) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.stop = threading.Event()
        self.cap = cap
        self.sent = 0
        self.finished = threading.Event()  # the whole flood went out
        self.replies = 0
        self.sender = threading.Thread(target=self._send, daemon=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.sender.start()
        self.reader.start()

    def _send(self) -> None:
        chunk = pack("PING") * 4096
        try:
            while not self.stop.is_set() and self.sent < self.cap:
                self.sock.sendall(chunk)
                self.sent += len(chunk)
        except OSError:
            return
        if self.sent >= self.cap:
            self.finished.set()

    def _read(self) -> None:
        try:
            while data := self.sock.recv(1 << 20):
                self.replies += data.count(b"\r\n")
        except OSError:
            return

    def started(self) -> bool:
        return self.replies > 10_000

    def close(self) -> None:
        self.stop.set()
        self.sender.join(30)
        self.sock.close()
        self.reader.join(30)


def test_a_flooding_client_does_not_starve_the_others(server: ThreadedServer) -> None:
    flood = Flood(server.port)
    try:
        poll(flood.started, "the flood is being served")
        other = RawClient(server.port)
        # A parked client, answered by the reactor between the flood's reads.
        for i in range(20):
            assert other.call("SET", "fair:k", i) == b"+OK\r\n"
            assert other.call("GET", "fair:k") == b"$%d\r\n%d\r\n" % (len(str(i)), i)
        # A client whose own task waits (BLPOP): woken by a parked client's LPUSH, its
        # reply goes out from its task, which runs between the reactor's wake-ups.
        blocked = Call(server, "BLPOP", "fair:list", 0)
        wait_blocked(server, b"fair:list")
        assert other.call("LPUSH", "fair:list", "x") == b":1\r\n"
        assert blocked.result() == [b"fair:list", b"x"]
        assert other.call("PING") == b"+PONG\r\n"
        other.close()
        # All of that while the flood was still going: it was served alongside, not first.
        assert not flood.finished.is_set()
    finally:
        flood.close()
