"""A server-side TLS connection that the reactor can serve, as it serves plain TCP clients.

trio's ``SSLStream`` is a fine stream, but each read is a task switch and a pass through its
machinery. :class:`TlsStream` keeps an ``ssl.SSLObject`` over two memory BIOs and the raw
socket's descriptor, and offers both sides: the trio stream a client's task awaits
(``receive_some``/``send_all``/``aclose``) and the reactor's non-blocking calls
(:meth:`TlsStream.read_now`/:meth:`TlsStream.write_now`, the same ones :class:`SocketIO`
offers over plain TCP).

Ciphertext to send waits in one buffer (``_unsent``), written from its front by whoever
writes next: a read may produce some too (TLS 1.3 tickets, key updates), and a write the
kernel does not take whole stays there, in order, for the client's task to finish
(:meth:`TlsStream.send_all` of nothing flushes it). Only one task at a time waits for the
socket to take more (``_flushing``).
"""

from __future__ import annotations

import contextlib
import os
import ssl

import trio

__all__ = ["TlsStream"]

READ_SIZE = 64 * 1024


def _broken(err: BaseException) -> trio.BrokenResourceError:
    broken = trio.BrokenResourceError(f"TLS connection broken: {err!r}")
    broken.__cause__ = err
    return broken


class TlsStream(trio.abc.Stream):
    """An accepted TLS connection on ``transport_stream`` (a ``trio.SocketStream``)."""

    def __init__(self, transport_stream: trio.SocketStream, context: ssl.SSLContext) -> None:
        self.transport_stream = transport_stream
        self.fd = transport_stream.socket.fileno()
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._unsent = bytearray()
        self._flushing = trio.Lock()
        self._closed = False
        self._ended = False  # its end (close_notify, EOF, a broken record) was read

    # -- the handshake --------------------------------------------------------------

    async def do_handshake(self) -> None:
        """Finish the handshake (trio.BrokenResourceError when it fails or the peer leaves)."""
        while True:
            try:
                self._ssl.do_handshake()
            except ssl.SSLWantReadError:
                await self._flush()
                await self._receive_raw()
                continue
            except ssl.SSLError as err:  # certificate refused, plain text, the peer left
                self._take_outgoing()
                with contextlib.suppress(OSError):
                    self._flush_now()  # the alert, when the kernel takes it (as trio does)
                raise _broken(err) from err
            await self._flush()
            return

    # -- what the reactor calls: never blocks -----------------------------------------

    def read_now(self, size: int = READ_SIZE) -> bytes:
        """What the client sent, decrypted, from one read of the socket: b"" at its end
        (close_notify, a plain hang-up, or a TLS error: the connection is over);
        BlockingIOError when there is nothing whole yet; OSError when the socket broke."""
        raw = os.read(self.fd, size)
        if raw:
            self._incoming.write(raw)
        else:
            self._incoming.write_eof()
        data = self._decrypt()
        if data is None:
            return b""
        if not data:
            raise BlockingIOError
        return data

    def write_now(self, payload: bytes) -> bytes | None:
        """Encrypt ``payload`` and send what the kernel takes now: None when all of it left;
        b"" when some is held back, for the client's task to send (``send_all(b"")``);
        OSError when the connection broke."""
        try:
            self._ssl.write(payload)
        except ssl.SSLError as err:
            raise ConnectionResetError(f"TLS connection broken: {err!r}") from err
        self._take_outgoing()
        self._flush_now()
        return b"" if self._unsent else None

    @property
    def unsent(self) -> int:
        """Bytes (of ciphertext) held here that the kernel has not taken yet."""
        return len(self._unsent)

    def idle(self) -> bool:
        """May the client be parked: nothing decrypted or received is left unread, its end
        was not seen, nothing is left to send?"""
        return not (self._unsent or self._ended or self._ssl.pending()
                    or self._incoming.pending)

    # -- the trio stream ----------------------------------------------------------------

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._closed:
            raise trio.ClosedResourceError
        size = max_bytes or READ_SIZE
        while True:
            try:
                data = self._ssl.read(size)
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLZeroReturnError:
                return b""
            except ssl.SSLError as err:
                raise _broken(err) from err
            else:
                self._take_outgoing()
                await trio.lowlevel.cancel_shielded_checkpoint()
                return data
            if not self._flushing.locked():
                # Else a send waits for the kernel, and sends what a read added after
                # it: the read goes on meanwhile (as Redis reads a client whose output
                # waits), not after it.
                await self._flush()
            await self._receive_raw()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise trio.ClosedResourceError
        if data:
            try:
                self._ssl.write(data)
            except ssl.SSLError as err:
                raise _broken(err) from err
        await self._flush()

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport_stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        """close_notify, as trio's SSLStream sends it (not waiting for the peer's), then
        the socket; cancelled, the socket is closed at once. After a send that was
        interrupted (a killed client's stuck reply), only what the kernel takes now is
        sent, as trio closes a broken SSLStream without waiting."""
        if self._closed:
            return
        self._closed = True
        interrupted = bool(self._unsent)
        try:
            try:
                self._ssl.unwrap()
            except ssl.SSLWantReadError:
                pass  # ours is out; the peer's reply is not awaited
            except (ssl.SSLError, ValueError):
                pass  # no session to close (broken, or never shaken hands)
            if interrupted:
                self._take_outgoing()
                self._flush_now()
            else:
                await self._flush()
        except (trio.BrokenResourceError, OSError):
            pass
        finally:
            await self.transport_stream.aclose()

    # -- inside ---------------------------------------------------------------------

    def _decrypt(self) -> bytes | None:
        """All the plaintext the incoming BIO holds, b"" if none yet; None at the end (what
        came before the end is returned first, and the end remembered: not idle)."""
        chunks: list[bytes] = []
        read = self._ssl.read
        try:
            while True:
                chunk = read(READ_SIZE)
                if not chunk:  # close_notify (Python's read returns b"" for it)
                    self._ended = True
                    break
                chunks.append(chunk)
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError:  # the socket's end without close_notify, or a broken record
            self._ended = True
        finally:
            if self._outgoing.pending:  # a read may answer (tickets, key updates)
                self._take_outgoing()
                self._flush_now()
        if not chunks:
            return None if self._ended else b""
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _take_outgoing(self) -> None:
        if self._outgoing.pending:
            self._unsent += self._outgoing.read()

    def _flush_now(self) -> None:
        """Send what the kernel takes now; OSError when the connection broke."""
        unsent = self._unsent
        while unsent:
            try:
                sent = os.write(self.fd, unsent)
            except BlockingIOError:
                return
            del unsent[:sent]

    async def _flush(self) -> None:
        """Send everything held back (the outgoing BIO's too), waiting for room."""
        self._take_outgoing()
        if not self._unsent:
            return
        lock = self._flushing
        try:
            lock.acquire_nowait()
        except trio.WouldBlock:
            await lock.acquire()
        try:
            while self._unsent:
                try:
                    self._flush_now()
                except (ConnectionResetError, BrokenPipeError) as err:
                    raise trio.BrokenResourceError from err
                if self._unsent:
                    await trio.lowlevel.wait_writable(self.fd)
        finally:
            lock.release()

    async def _receive_raw(self) -> None:
        """Feed the incoming BIO with the next bytes of the socket (its end, at the end)."""
        while True:
            try:
                raw = os.read(self.fd, READ_SIZE)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self.fd)
                continue
            except (ConnectionResetError, BrokenPipeError) as err:
                raise trio.BrokenResourceError from err
            if raw:
                self._incoming.write(raw)
            else:
                self._incoming.write_eof()
            return
