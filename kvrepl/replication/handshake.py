"""The replica side of the replication protocol as a sans-IO state machine.

Feed it what the master sends (:meth:`ReplicaProtocol.receive_data`) and it returns events:
bytes to send, the PSYNC outcome, RDB payload pieces and, once synced, the commands of the
stream with their byte sizes (offsets count every stream byte). States are named after
Redis's ``repl_state`` values (replication.c ``syncWithMaster``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import lz4.frame

from kvrepl.errors import KvreplError
from kvrepl.protocol.parser import NEED_DATA, RequestParser, request_size, split_requests
from kvrepl.replication.stream import encode_command

EOF_MARK_SIZE = 40


class State(enum.Enum):
    RECEIVE_PING_REPLY = "receive_ping_reply"
    RECEIVE_AUTH_REPLY = "receive_auth_reply"
    RECEIVE_PORT_REPLY = "receive_port_reply"
    RECEIVE_IP_REPLY = "receive_ip_reply"
    RECEIVE_CAPA_REPLY = "receive_capa_reply"
    RECEIVE_PSYNC_REPLY = "receive_psync_reply"
    RECEIVE_SYNC_PAYLOAD = "receive_sync_payload"  # old SYNC: no +FULLRESYNC line first
    TRANSFER = "transfer"
    CONNECTED = "connected"
    FAILED = "failed"


class ReplicationProtocolError(KvreplError):
    """The master sent something the protocol does not allow; drop the link and retry."""


class FailoverRejected(KvreplError):
    """The failover target answered PSYNC ... FAILOVER with an error."""


class TryLater(KvreplError):
    """The master cannot serve us now (-LOADING, -NOMASTERLINK, auth refused): retry."""


# -- events ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Send:
    data: bytes


@dataclass(frozen=True, slots=True)
class FullResync:
    replid: str
    offset: int  # -1 when the master speaks the old SYNC protocol


@dataclass(frozen=True, slots=True)
class Continue:
    replid: str | None  # the new replid when the master's history changed


@dataclass(frozen=True, slots=True)
class PayloadStart:
    length: int | None  # None for the diskless $EOF: form


@dataclass(frozen=True, slots=True)
class PayloadData:
    data: bytes


@dataclass(frozen=True, slots=True)
class PayloadEnd:
    pass


@dataclass(frozen=True, slots=True)
class StreamCommand:
    argv: list[bytes]
    size: int  # stream bytes this command took, for the replication offset
    raw: bytes = b""  # those bytes, for sub-replicas (chained replication is byte for byte)


class StreamBatch:
    """The commands completed by one piece of received stream, in order: ``sizes[i]`` is
    how many stream bytes ``argvs[i]`` took (offsets count every byte) and ``raw`` is all
    those bytes (sub-replicas get the master's stream byte for byte).

    ``sizes`` may give only the first commands' sizes (or be None for none) when the others
    are plain multibulks that end ``raw`` (the usual case): theirs are computed only if
    asked for."""

    __slots__ = ("argvs", "_sizes", "raw")

    def __init__(self, argvs: list[list[bytes]], sizes: list[int] | None, raw: bytes) -> None:
        self.argvs = argvs
        self._sizes = sizes or []
        self.raw = raw

    @property
    def sizes(self) -> list[int]:
        known = self._sizes
        if len(known) < len(self.argvs):
            known += map(request_size, self.argvs[len(known):])
        return known

    def span(self, start: int, stop: int) -> int:
        """The stream bytes of ``argvs[start:stop]``."""
        if stop == len(self.argvs) and start <= len(self._sizes):
            return len(self.raw) - sum(self._sizes[:start])
        return sum(self.sizes[start:stop])

    def commands(self) -> list[StreamCommand]:
        """The batch one command at a time (what tests and tools like to look at)."""
        out, start = [], 0
        for argv, size in zip(self.argvs, self.sizes, strict=True):
            out.append(StreamCommand(argv, size, self.raw[start:start + size]))
            start += size
        return out


@dataclass(frozen=True, slots=True)
class Log:
    message: str


class ReplicaProtocol:
    """One connection attempt of a replica to its master.

    ``start()`` returns the first bytes to send (PING). The handshake burst is pipelined
    after +PONG exactly as Redis 7.0 does: AUTH, REPLCONF listening-port, REPLCONF
    ip-address, REPLCONF capa eof capa psync2, and PSYNC once every reply has been read.
    """

    def __init__(self, *, listening_port: int, replid: str | None = None,
                 offset: int = -1, masterauth: str = "", masteruser: str = "",
                 announce_ip: str = "", capabilities: tuple[str, ...] = ("eof", "psync2"),
                 max_bulk_len: int = 512 * 1024 * 1024, failover: bool = False) -> None:
        self.listening_port = listening_port
        # A master handing over (FAILOVER): PSYNC ... FAILOVER asks the target to become
        # master; any error reply to it ends the attempt (FailoverRejected).
        self.failover = failover
        # PSYNC asks for the next byte wanted: the processed offset + 1.
        self.psync_replid = replid
        self.psync_offset = offset
        self.masterauth = masterauth
        self.masteruser = masteruser
        self.announce_ip = announce_ip
        self.capabilities = capabilities
        self.state = State.RECEIVE_PING_REPLY
        self._buf = bytearray()
        self.uncounted = 0  # bytes received that are not INFO's total_net_repl_input_bytes
        # Bytes of the command stream received (after +CONTINUE or the payload's end): a read
        # that carries some is a read of Redis's master client (readQueryFromClient).
        self.stream_received = 0
        self._pending_replies: list[State] = []
        self._payload_left: int | None = None
        self._eof_mark: bytes | None = None
        self._inflate: lz4.frame.LZ4FrameDecompressor | None = None
        self._tail = b""
        self.max_bulk_len = max_bulk_len
        # The general request parser, while it has a command in progress (see _stream).
        self._parser: RequestParser | None = None
        self._slow_fed = 0  # bytes given to _parser
        self._slow_counted = 0  # of those, bytes in whole commands
        self._raw = bytearray()  # received stream bytes not yet given out with a command

    def start(self) -> list[object]:
        return [Send(encode_command([b"PING"]))]

    # -- input ---------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> list[object]:
        """Consume bytes from the master; returns the events they complete."""
        events: list[object] = []
        if self.state is State.CONNECTED:
            self._stream(data, events)
            return events
        self._buf += data
        while self.state not in (State.CONNECTED, State.FAILED):
            if self.state is State.TRANSFER:
                if not self._transfer(events):
                    break
                continue
            line = self._line()
            if line is None:
                break
            self._on_line(line, events)
        if self.state is State.CONNECTED and self._buf:
            rest = bytes(self._buf)
            self._buf.clear()
            self._stream(rest, events)
        return events

    def _line(self) -> bytes | None:
        end = self._buf.find(b"\n")
        if end < 0:
            if len(self._buf) > 64 * 1024:
                raise ReplicationProtocolError("Master sent an overlong reply line")
            return None
        line = bytes(self._buf[:end]).rstrip(b"\r")
        del self._buf[:end + 1]
        # Redis counts none of the handshake's replies as replication input (the lines
        # before the payload, keepalives and its "$" line, it does).
        if self.state is not State.RECEIVE_SYNC_PAYLOAD:
            self.uncounted += end + 1
        return line

    def _on_line(self, line: bytes, events: list[object]) -> None:
        state = self.state
        if state is State.RECEIVE_PING_REPLY:
            if line.startswith(b"-") and not (line.startswith((b"-NOAUTH", b"-NOPERM"))
                                               or line.startswith(b"-ERR operation not permitted")):
                raise TryLater(f"Error reply to PING from master: '{line.decode(errors='replace')}'")
            events.append(Log("Master replied to PING, replication can continue..."))
            events.append(Send(self._handshake_burst()))
            self._advance()
        elif state in (State.RECEIVE_AUTH_REPLY, State.RECEIVE_PORT_REPLY,
                       State.RECEIVE_IP_REPLY, State.RECEIVE_CAPA_REPLY):
            if line.startswith(b"-"):
                text = line.decode(errors="replace")
                if state is State.RECEIVE_AUTH_REPLY:
                    raise TryLater(f"Unable to AUTH to MASTER: {text}")
                what = {State.RECEIVE_PORT_REPLY: "REPLCONF listening-port",
                        State.RECEIVE_IP_REPLY: "REPLCONF ip-address",
                        State.RECEIVE_CAPA_REPLY: "REPLCONF capa"}[state]
                events.append(Log(f"(Non critical) Master does not understand {what}: {text}"))
            self._advance()
            if self.state is State.RECEIVE_PSYNC_REPLY:
                replid = self.psync_replid or "?"
                offset = b"%d" % self.psync_offset if self.psync_replid else b"-1"
                psync = [b"PSYNC", replid.encode(), offset]
                if self.failover:
                    psync.append(b"FAILOVER")
                events.append(Send(encode_command(psync)))
                events.append(Log(
                    "Trying a partial resynchronization (request "
                    f"{replid}:{self.psync_offset if self.psync_replid else -1})."))
        elif state is State.RECEIVE_PSYNC_REPLY:
            self._on_psync_reply(line, events)
        elif state is State.RECEIVE_SYNC_PAYLOAD:
            self._on_payload_header(line, events)

    def _on_psync_reply(self, line: bytes, events: list[object]) -> None:
        if not line:
            return  # the master's keepalive newline while it prepares the snapshot
        if line.startswith(b"+FULLRESYNC"):
            parts = line.split()
            replid = _replid(parts[1]) if len(parts) > 1 else ""
            try:
                offset = int(parts[2]) if replid and len(parts) > 2 else -1
            except ValueError:
                offset = -1
            events.append(Log(f"Full resync from master: {replid}:{offset}"))
            events.append(FullResync(replid, offset))
            self.state = State.RECEIVE_SYNC_PAYLOAD
        elif line.startswith(b"+CONTINUE"):
            parts = line.split()
            new_id = (_replid(parts[1]) or None) if len(parts) > 1 else None
            events.append(Log("Successful partial resynchronization with master."))
            events.append(Continue(new_id))
            self.state = State.CONNECTED
        elif self.failover and line.startswith(b"-"):
            raise FailoverRejected(line.decode(errors="replace"))
        elif line.startswith((b"-NOMASTERLINK", b"-LOADING")):
            raise TryLater("Master is currently unable to PSYNC but should be in the future: "
                           + line.decode(errors="replace"))
        else:
            # An old master: fall back to SYNC, which sends the payload with no reply line.
            events.append(Log("Master does not support PSYNC or is in error state (reply: "
                              f"{line.decode(errors='replace')})"))
            events.append(Send(b"SYNC\r\n"))
            events.append(FullResync("", -1))
            self.state = State.RECEIVE_SYNC_PAYLOAD

    def _on_payload_header(self, line: bytes, events: list[object]) -> None:
        if not line:
            return  # keepalive while a disk snapshot is being written
        if line.startswith(b"-"):
            raise TryLater("MASTER aborted replication with an error: "
                           + line.decode(errors="replace"))
        if not line.startswith(b"$"):
            raise ReplicationProtocolError(
                "Bad protocol from MASTER, the first byte is not '$' (we received "
                f"'{line[:64].decode(errors='replace')}'), are you sure the host and port "
                "are right?")
        if line == b"$LZ4STREAM" and "lz4stream" in self.capabilities:
            # kvrepl to kvrepl: the RDB as one lz4 frame, streamed; the frame's end mark
            # ends the payload (no length up front).
            self._inflate = lz4.frame.LZ4FrameDecompressor()
            self._payload_left = None
            events.append(PayloadStart(None))
            self.state = State.TRANSFER
            return
        if line.startswith(b"$EOF:") and len(line) >= 5 + EOF_MARK_SIZE:
            self._eof_mark = line[5:5 + EOF_MARK_SIZE]
            self._payload_left = None
            events.append(PayloadStart(None))
        else:
            try:
                self._payload_left = int(line[1:])
            except ValueError:
                raise ReplicationProtocolError("Bad payload length from MASTER") from None
            if self._payload_left < 0:
                raise ReplicationProtocolError("Bad payload length from MASTER")
            events.append(PayloadStart(self._payload_left))
        self.state = State.TRANSFER

    def _transfer(self, events: list[object]) -> bool:
        """Move payload bytes out; True when the payload ended and parsing goes on."""
        if self._inflate is not None:
            if not self._buf:
                return False
            data = self._inflate_piece(bytes(self._buf))
            self._buf.clear()
            if data:
                events.append(PayloadData(data))
            if not self._inflate.eof:
                return False
            self._buf += self._inflate.unused_data or b""  # the stream, if it came at once
            self._inflate = None
        elif self._eof_mark is None:
            assert self._payload_left is not None
            take = min(self._payload_left, len(self._buf))
            if take:
                data = bytes(memoryview(self._buf)[:take])  # one copy, not two
                del self._buf[:take]
                self._payload_left -= take
                events.append(PayloadData(data))
            if self._payload_left:
                return False
        else:
            # Hold back the last 40 bytes: they may be the end mark.
            data = self._tail + self._buf  # bytes (one copy of the received bytes, not two)
            self._buf.clear()
            end = data.find(self._eof_mark)
            if end < 0:
                keep = min(len(data), EOF_MARK_SIZE)
                if len(data) > keep:
                    events.append(PayloadData(data[:len(data) - keep]))
                self._tail = data[len(data) - keep:]
                return False
            if end:
                events.append(PayloadData(data[:end]))
            self._buf += data[end + EOF_MARK_SIZE:]
            self._tail = b""
        events.append(PayloadEnd())
        self.state = State.CONNECTED
        return True

    def _inflate_piece(self, data: bytes) -> bytes:
        try:
            return self._inflate.decompress(data)
        except RuntimeError as err:  # lz4 reports corrupt frames as RuntimeError
            raise ReplicationProtocolError(f"MASTER sent a corrupt lz4 payload: {err}") from None

    # -- stream --------------------------------------------------------------------------
    def _stream(self, data: bytes, events: list[object]) -> None:
        """Parse what arrived; the commands it completed become one :class:`StreamBatch`.

        Two parsers share the work. :func:`~kvrepl.protocol.parser.split_requests` splits
        runs of whole commands fast (hiredis, with the checks that make its result the
        request parser's, sizes included). Everything else goes to the general request parser,
        which gives Redis's results (inline commands, ``*0``, protocol errors, limits): a
        command left incomplete at the end of the bytes received (it resumes from the next
        ones), and, after a command the fast path refused, the rest of what was received.
        """
        self.stream_received += len(data)
        if self._raw:
            self._raw += data
            raw: bytes | bytearray = self._raw
        else:
            raw = data
        argvs: list[list[bytes]] = []
        sizes: list[int] = []
        end = len(raw)
        done = 0
        parser = self._parser
        if parser is not None:  # a command in progress
            parser.feed(data)
            self._slow_fed += len(data)
            done = self._slow(argvs, sizes, to_the_end=False)
        while self._parser is None and done < end:
            taken, refused = self._fast(raw, done, argvs, sizes)
            done += taken
            if done == end:
                break
            parser = self._parser = RequestParser(self.max_bulk_len, from_master=True)
            rest = raw[done:]
            parser.feed(rest)
            self._slow_fed, self._slow_counted = len(rest), 0
            done += self._slow(argvs, sizes, to_the_end=refused)
        if raw is data:
            out = data if done == end else data[:done]
            if done < end:
                self._raw = bytearray(data[done:])
        else:
            out = bytes(raw[:done])
            del self._raw[:done]
        if argvs:
            events.append(StreamBatch(argvs, sizes, out))

    def _fast(self, raw: bytes | bytearray, start: int, argvs: list[list[bytes]],
              sizes: list[int]) -> tuple[int, bool]:
        """Take the whole commands at ``raw[start:]`` that the fast splitter finds. Returns
        the bytes taken, and whether a command was refused (rather than the bytes ending in
        an incomplete one)."""
        found, found_sizes, refused = split_requests(raw, start, self.max_bulk_len,
                                                     want_sizes=False)
        if type(found_sizes) is int:  # their total only: the batch sizes them if asked
            taken = found_sizes
        else:
            taken = sum(found_sizes)
            sizes += found_sizes
        argvs += found
        return taken, refused

    def _slow(self, argvs: list[list[bytes]], sizes: list[int], to_the_end: bool) -> int:
        """Requests from the general parser; returns the bytes they took. A command's size
        includes every byte since the previous one ended (skipped ``*0``, empty lines), so
        the sizes add up to the stream's length, as Redis counts offsets. Unless
        ``to_the_end``, the fast path takes over after the first request."""
        parser = self._parser
        taken = 0
        while True:
            request = parser.next_request()
            if request is NEED_DATA:
                if self._slow_counted == self._slow_fed:
                    self._parser = None  # nothing pending: the next bytes go the fast way
                return taken
            consumed = self._slow_fed - parser.buffered
            size = consumed - self._slow_counted
            self._slow_counted = consumed
            if len(sizes) < len(argvs):  # it follows an unsized fast piece: size that now
                sizes += map(request_size, argvs[len(sizes):])
            argvs.append(request)
            sizes.append(size)
            taken += size
            if not to_the_end:
                self._parser = None
                return taken

    def stream_bytes_pending(self) -> int:
        """Stream bytes received but not yet a whole command (for slave_read_repl_offset)."""
        return len(self._raw)

    # -- handshake plumbing ----------------------------------------------------------------
    def _handshake_burst(self) -> bytes:
        commands = []
        self._pending_replies = []
        if self.masterauth:
            auth = [b"AUTH"]
            if self.masteruser:
                auth.append(self.masteruser.encode())
            auth.append(self.masterauth.encode())
            commands.append(auth)
            self._pending_replies.append(State.RECEIVE_AUTH_REPLY)
        commands.append([b"REPLCONF", b"listening-port", b"%d" % self.listening_port])
        self._pending_replies.append(State.RECEIVE_PORT_REPLY)
        if self.announce_ip:
            commands.append([b"REPLCONF", b"ip-address", self.announce_ip.encode()])
            self._pending_replies.append(State.RECEIVE_IP_REPLY)
        capa = [b"REPLCONF"]
        for name in self.capabilities:
            capa += [b"capa", name.encode()]
        commands.append(capa)
        self._pending_replies.append(State.RECEIVE_CAPA_REPLY)
        return b"".join(encode_command(c) for c in commands)

    def _advance(self) -> None:
        self.state = (self._pending_replies.pop(0) if self._pending_replies
                      else State.RECEIVE_PSYNC_REPLY)


def _replid(word: bytes) -> str:
    """A replication ID from a PSYNC reply: 40 ASCII characters, else "" (Redis's "wrong
    +FULLRESYNC syntax": a corrupt one must not fail the sync, nor be sent back)."""
    if len(word) != 40 or not word.isascii():
        return ""
    return word.decode("ascii")
