"""A fault-injecting TCP proxy for the replication link (master <-> replica), in trio.

The replica connects to the proxy, which connects on to the master and forwards both ways.
It follows the master's bytes phase by phase (the handshake replies, the PSYNC reply, the
RDB payload of any framing: ``$<len>``, ``$EOF:<mark>`` and kvrepl's ``$LZ4STREAM``, the
``$EOF`` mark itself, the live stream, the ``REPLCONF GETACK`` in it) and the replica's
(its handshake, then its ``REPLCONF ACK``), and applies one :class:`Fault` where it is told:
at the ``at``-th byte of a phase, or at the first byte matching ``match`` from there. After
``times`` connections have had it, the link heals: later connections pass through intact.

It runs its own trio loop in a thread (like support.ThreadedServer), so that tests can drive
both servers with blocking clients.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import lz4.frame
import trio

#: Phases of the master's bytes, then the replica's.
DOWN_PHASES = ("handshake", "psync", "payload", "eof", "stream", "getack")
UP_PHASES = ("replica-handshake", "ack")
ACTIONS = ("cut", "stall", "slow", "truncate", "duplicate", "flip")
GETACK = b"*3\r\n$8\r\nREPLCONF\r\n$6\r\nGETACK\r\n$1\r\n*\r\n"
ACK = b"$8\r\nREPLCONF\r\n$3\r\nACK\r\n"


@dataclass
class Fault:
    """What to do to the link, and where.

    ``action``: ``cut`` closes both sides there; ``stall`` stops forwarding for ``seconds``;
    ``slow`` forwards the rest of the phase ``size`` bytes at a time, ``seconds`` apart; ``truncate``
    drops ``size`` bytes; ``duplicate`` sends ``size`` bytes twice; ``flip`` XORs one byte
    with ``xor``. ``at`` is the byte of the phase where it happens (counted from the phase's
    start on that connection), or where the search for ``match`` starts.
    """

    phase: str
    action: str
    at: int = 0
    match: bytes | None = None
    times: int = 1
    seconds: float = 0.0
    size: int = 1
    xor: int = 0x01

    def __post_init__(self) -> None:
        assert self.phase in DOWN_PHASES + UP_PHASES, self.phase
        assert self.action in ACTIONS, self.action

    def __str__(self) -> str:
        where = f"{self.phase}@{self.at}" + (f"~{self.match!r}" if self.match else "")
        return f"{self.action}-{where}"


class _Cut(Exception):
    """The fault cut the link."""


class DownTracker:
    """Splits the master's bytes into ``(phase, bytes)`` pieces as they arrive."""

    def __init__(self) -> None:
        self.state = "lines"
        self.buf = b""
        self.left = 0  # payload bytes still to come, for "$<len>"
        self.mark = b""
        self.inflate: lz4.frame.LZ4FrameDecompressor | None = None

    def feed(self, data: bytes) -> list[tuple[str, bytes]]:
        out: list[tuple[str, bytes]] = []
        self.buf += data
        while self.buf:
            state = self.state
            if state in ("lines", "header"):
                end = self.buf.find(b"\n")
                if end < 0:
                    break
                line, self.buf = self.buf[:end + 1], self.buf[end + 1:]
                out.append(self._line(line))
            elif state == "length":
                take = self.buf[:self.left]
                self.buf = self.buf[len(take):]
                self.left -= len(take)
                out.append(("payload", take))
                if not self.left:
                    self.state = "stream"
            elif state == "eof":
                found = self.buf.find(self.mark)
                if found < 0:
                    keep = len(self.mark) - 1  # the mark may be cut: hold back its length
                    if len(self.buf) > keep:
                        out.append(("payload", self.buf[:-keep]))
                        self.buf = self.buf[-keep:]
                    break
                if found:
                    out.append(("payload", self.buf[:found]))
                out.append(("eof", self.mark))
                self.buf = self.buf[found + len(self.mark):]
                self.state = "stream"
            elif state == "lz4":
                assert self.inflate is not None
                chunk, self.buf = self.buf, b""
                try:
                    self.inflate.decompress(chunk)
                except RuntimeError:  # corrupted on the way: the rest is payload to us
                    out.append(("payload", chunk))
                    continue
                if self.inflate.eof:
                    rest = self.inflate.unused_data or b""
                    out.append(("payload", chunk[:len(chunk) - len(rest)]))
                    self.buf = rest
                    self.state = "stream"
                else:
                    out.append(("payload", chunk))
            else:  # the stream: GETACK commands are their own phase
                data, self.buf = self.buf, b""
                start = 0
                while (found := data.find(GETACK, start)) >= 0:
                    if found > start:
                        out.append(("stream", data[start:found]))
                    out.append(("getack", GETACK))
                    start = found + len(GETACK)
                if start < len(data):
                    out.append(("stream", data[start:]))
        return out

    def _line(self, line: bytes) -> tuple[str, bytes]:
        if self.state == "lines":
            if line.startswith(b"+FULLRESYNC"):
                self.state = "header"
                return "psync", line
            if line.startswith(b"+CONTINUE"):
                self.state = "stream"
                return "psync", line
            return "handshake", line
        if line.startswith(b"$EOF:"):
            self.mark = line[5:45]
            self.state = "eof"
        elif line.startswith(b"$LZ4STREAM"):
            self.inflate = lz4.frame.LZ4FrameDecompressor()
            self.state = "lz4"
        elif line.startswith(b"$"):
            self.left = int(line[1:].strip() or b"0")
            self.state = "length" if self.left else "stream"
        elif line.strip():  # an error reply or an old master's answer: stays "psync"
            self.state = "lines"
        return ("payload" if line.startswith(b"$") else "psync"), line


class UpTracker:
    """The replica's bytes: its handshake up to PSYNC, then ACKs (and anything else)."""

    def __init__(self) -> None:
        self.synced = False

    def feed(self, data: bytes) -> list[tuple[str, bytes]]:
        if not self.synced:
            at = data.find(b"PSYNC")
            if at < 0:
                at = data.find(b"SYNC")
            if at < 0:
                return [("replica-handshake", data)]
            end = data.find(b"\n", at)
            end = len(data) if end < 0 else end + 1
            self.synced = True
            rest = self.feed(data[end:]) if end < len(data) else []
            return [("replica-handshake", data[:end]), *rest]
        return [("ack", data)]


class FaultProxy:
    """A proxy to ``127.0.0.1:master_port`` that applies ``fault`` (None: a clean link)."""

    def __init__(self, master_port: int, fault: Fault | None = None) -> None:
        self.master_port = master_port
        self.fault = fault
        self.port = 0
        self.connections = 0
        self.applied = 0  # connections the fault was applied to
        # While set, a new connection is closed at once (a master out of reach): a test
        # holds a replica off while the master's backlog overruns.
        self.refusing = False
        self.triggered = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)

    # -- lifetime (from the test's thread) -----------------------------------------------------
    def start(self) -> FaultProxy:
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        try:
            trio.from_thread.run_sync(self._scope.cancel, trio_token=self._token)
        except trio.RunFinishedError:
            pass
        self._thread.join(10)

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        try:
            with trio.CancelScope() as scope:
                self._scope = scope
                listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
                self.port = listeners[0].socket.getsockname()[1]
                self._ready.set()
                await trio.serve_listeners(self._serve, listeners)
        except BaseException as err:
            self._error = err
            self._ready.set()

    # -- one link ------------------------------------------------------------------------------
    async def _serve(self, replica: trio.SocketStream) -> None:
        self.connections += 1
        if self.refusing:
            await replica.aclose()
            return
        try:
            master = await trio.open_tcp_stream("127.0.0.1", self.master_port)
        except OSError:
            await replica.aclose()
            return
        link = _Link(self)
        async with replica, master, trio.open_nursery() as nursery:
            link.nursery = nursery
            nursery.start_soon(link.pump, master, replica, DownTracker())
            nursery.start_soon(link.pump, replica, master, UpTracker())


class _Link:
    """The two pumps of one connection, sharing the fault (applied at most once)."""

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        self.done = False  # the fault was applied on this connection
        self.fault: Fault | None = None  # the fault applied here, once it is
        self.slow_phase: str | None = None
        self.seen: dict[str, int] = {}
        self.nursery: trio.Nursery | None = None

    async def pump(self, source: trio.SocketStream, sink: trio.SocketStream,
                   tracker: DownTracker | UpTracker) -> None:
        """Forward one direction until either side closes or the fault cuts: then the
        whole connection ends (as a TCP proxy's would)."""
        try:
            while data := await source.receive_some(65536):
                for phase, piece in tracker.feed(data):
                    await self._forward(phase, piece, sink)
        except (_Cut, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            self.nursery.cancel_scope.cancel()

    async def _forward(self, phase: str, piece: bytes, sink: trio.SocketStream) -> None:
        start = self.seen.get(phase, 0)
        self.seen[phase] = start + len(piece)
        if self.slow_phase is not None:
            if phase == self.slow_phase:
                await self._slowly(piece, sink)
                return
            self.slow_phase = None
        # Read at each piece: a test may set the fault once the link is up.
        fault = self.proxy.fault
        if (self.done or fault is None or self.proxy.applied >= fault.times
                or fault.phase != phase or start + len(piece) <= fault.at):
            await sink.send_all(piece)
            return
        index = max(fault.at - start, 0)
        if fault.match is not None:
            found = piece.find(fault.match, index)
            if found < 0:
                await sink.send_all(piece)
                return
            index = found
        self.done = True
        self.fault = fault
        self.proxy.applied += 1
        self.proxy.triggered.set()
        head, rest = piece[:index], piece[index:]
        action = fault.action
        if action == "cut":
            await sink.send_all(head)
            raise _Cut()
        if action == "flip":
            await sink.send_all(head + bytes([rest[0] ^ fault.xor]) + rest[1:])
        elif action == "truncate":
            await sink.send_all(head + rest[fault.size:])
        elif action == "duplicate":
            await sink.send_all(head + rest[:fault.size] + rest)
        elif action == "stall":
            await sink.send_all(head)
            await trio.sleep(fault.seconds)
            await sink.send_all(rest)
        else:  # slow
            await sink.send_all(head)
            self.slow_phase = phase
            await self._slowly(rest, sink)

    async def _slowly(self, data: bytes, sink: trio.SocketStream) -> None:
        step = self.fault.size
        for index in range(0, len(data), step):
            await sink.send_all(data[index:index + step])
            await trio.sleep(self.fault.seconds)
