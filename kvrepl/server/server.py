"""The TCP server: accepts clients and runs each one's request loop over the engine."""

from __future__ import annotations

import contextlib
import errno
import math
import os
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from time import time as now
from typing import TYPE_CHECKING

import trio

from kvrepl import persistence
from kvrepl.commands import cmem, obuf
from kvrepl.commands.core import CLIENT_EVICTED, POSTPONED, Block, Engine, Session
from kvrepl.commands.dispatch import AWAITED as _AWAITED
from kvrepl.commands.dispatch import GeneralLane
from kvrepl.commands.migrate import MigrateJob
from kvrepl.commands.plain import HANDLED_NAMES, LANE_NAMES
from kvrepl.commands.protection import is_local_address
from kvrepl.commands.replication import StartReplication, WaitReplicas
from kvrepl.commands.shutdown import SHUTDOWN_ERROR, ShutdownWait, shutdown_state
from kvrepl.config import ApplyError, Config
from kvrepl.errors import ProtocolError, ReplyError
from kvrepl.log import logger
from kvrepl.protocol.parser import NEED_DATA, RequestParser
from kvrepl.protocol.replies import DeferredReply, encode, encode_error
from kvrepl.server import tls
from kvrepl.server.blocking import BlockingManager, Waiter
from kvrepl.server.busy import Adopted, BusyAcceptor
from kvrepl.server.cron import run_cron
from kvrepl.server.debugging import SocketChannel
from kvrepl.server.migrate import MigrateSockets, run_migrate
from kvrepl.server.reactor import AVAILABLE as REACTOR_AVAILABLE
from kvrepl.server.reactor import HANGUP, Reactor
from kvrepl.server.tlsio import TlsStream

if TYPE_CHECKING:
    from kvrepl.scripting.fork import ForkedSession

_DENIED = (
    b"-DENIED Redis is running in protected mode because protected mode is enabled and no "
    b"password is set for the default user. In this mode connections are only accepted from "
    b"the loopback interface. If you want to connect from external computers to Redis you may "
    b"adopt one of the following solutions: 1) Just disable protected mode sending the "
    b"command 'CONFIG SET protected-mode no' from the loopback interface by connecting to "
    b"Redis from the same host the server is running, however MAKE SURE Redis is not publicly "
    b"accessible from internet if you do so. Use CONFIG REWRITE to make this change "
    b"permanent. 2) Alternatively you can just disable the protected mode by editing the "
    b"Redis configuration file, and setting the protected mode option to 'no', and then "
    b"restarting the server. 3) If you started the server manually just for testing, restart "
    b"it with the '--protected-mode no' option. 4) Setup a an authentication password for the "
    b"default user. NOTE: You only need to do one of the above things in order for the server "
    b"to start accepting connections from the outside.\r\n"
)

RECEIVE_SIZE = 64 * 1024
# Ports tried when port 0 must be free on several bind addresses at once.
PICK_PORT_ATTEMPTS = 20
# The options whose CONFIG SET moves a serving node's listeners (Server._apply_listen).
_MOVABLE = ("port", "bind", "tls-port")
_DISCONNECTED = object()
_CLOSE = object()  # end the connection once the replies so far are sent
# End the connection now, its replies unsent: client-output-buffer-limit was met (Redis
# frees such a client before writing to it).
_DROP = object()
# Their confirmations are pushes: CLIENT REPLY OFF/SKIP does not silence them (CLIENT_PUSHING).
_SUBSCRIBING = frozenset((b"subscribe", b"psubscribe", b"ssubscribe", b"unsubscribe",
                          b"punsubscribe", b"sunsubscribe"))


class SocketIO:
    """Non-blocking reads and writes straight on a TCP socket's descriptor.

    trio's ``SocketStream`` pays two scheduler checkpoints per call; at one small request per
    round trip that doubles the cost of a command. Here a read or write that can complete
    now does so without yielding, and the task parks (``wait_readable``/``wait_writable``)
    only when the kernel says it would block: still cancellable, still fair.
    """

    __slots__ = ("fd", "unsent", "sending")

    def __init__(self, stream: trio.SocketStream) -> None:
        self.fd = stream.socket.fileno()
        self.unsent = 0  # what send_all still holds while it waits for the kernel
        # The payload whose last ``unsent`` bytes wait (set once a send waits, or by the
        # reactor for a write it hands back): the reply blocks Redis would hold are
        # modelled from it (kvrepl.commands.obuf.reply_buffers).
        self.sending: bytes | None = None

    # What the reactor calls (TlsStream offers the same): never blocks.

    def read_now(self, size: int) -> bytes:
        """One read: b"" at the end; BlockingIOError when nothing came."""
        return os.read(self.fd, size)

    def write_now(self, payload: bytes) -> bytes | None:
        """Send what the kernel takes now: None when all of it left, else the rest."""
        try:
            sent = os.write(self.fd, payload)
        except BlockingIOError:
            return payload
        return None if sent == len(payload) else payload[sent:]

    def idle(self) -> bool:
        """Nothing is held here: the client may always be parked."""
        return True

    async def receive_some(self, max_bytes: int) -> bytes:
        try:
            data = os.read(self.fd, max_bytes)
        except BlockingIOError:
            pass
        except (ConnectionResetError, BrokenPipeError) as err:
            raise trio.BrokenResourceError from err
        else:
            # Data was already waiting: let the other clients have their turn first, as
            # Redis's event loop serves each ready client once per iteration.
            # Shielded: the bytes are consumed, a cancellation here must not drop them.
            await trio.lowlevel.cancel_shielded_checkpoint()
            return data
        while True:
            await trio.lowlevel.wait_readable(self.fd)
            try:
                return os.read(self.fd, max_bytes)
            except BlockingIOError:
                continue
            except (ConnectionResetError, BrokenPipeError) as err:
                raise trio.BrokenResourceError from err

    async def send_all(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                try:
                    sent = os.write(self.fd, view)
                except BlockingIOError:
                    self.unsent = len(view)
                    if self.sending is None:
                        self.sending = data
                    await trio.lowlevel.wait_writable(self.fd)
                    continue
                except (ConnectionResetError, BrokenPipeError) as err:
                    raise trio.BrokenResourceError from err
                view = view[sent:]
        finally:
            self.unsent = 0
            self.sending = None


class Connection:
    """One client: its stream, parser and session, and the lock that orders its writes."""

    def __init__(self, server: Server, stream: trio.abc.Stream, session: Session) -> None:
        self.server = server
        self.stream = stream
        # Plain TCP gets the direct path, TLS its own stream (both served by the reactor);
        # other streams (in-memory links) go through trio.
        self.io = SocketIO(stream) if type(stream) is trio.SocketStream else stream

        self.session = session
        self.parser = RequestParser(server.config.proto_max_bulk_len, fast=True)
        self.parser.authenticated = session.authenticated
        self.send_lock = trio.Lock()
        self.push_ready = trio.Event()
        self.cancel_scope = trio.CancelScope()
        # The replies execute_buffered is gathering, not sent yet (see replies_pending);
        # forgotten when it returns, so that a large reply is not kept past its send.
        self.out: Sequence[bytes] = ()
        # While a send waits for the kernel, the replies of what the client sent meanwhile
        # (see send_reading), gathered here to go once the send is done; () otherwise.
        self.backlog: Sequence[bytes] = ()
        # How much of ``out`` was measured, its bytes and its replies of deferred length
        # (see gathered_bytes).
        self._out_counted = 0
        self._out_bytes = 0
        self.deferred_held = 0
        session.on_push = self.push_ready.set
        session.on_kill = self.cancel_scope.cancel
        session.held_output = self.held_bytes

    def held_bytes(self) -> int:
        """The reply bytes this connection holds for its client (kvrepl.commands.obuf):
        those of the read being run (and of those run while a send waits: ``backlog``),
        those the reactor holds until the end of its pass, and what a send has not had
        the kernel take yet."""
        held = self.gathered_bytes() if self.out else 0
        io = self.io
        if type(io) in (SocketIO, TlsStream):
            held += io.unsent
            reactor = self.server.reactor
            if reactor is not None:
                held += reactor.held(io.fd)
        return held

    def output_parts(self) -> tuple[bytes | None, int, bytes | None, Sequence[bytes]]:
        """What this connection holds for its client, in the order it was added (see
        kvrepl.commands.obuf.reply_buffers): the payload of the send under way (None when
        unknown: TLS ciphertext) and how many of its bytes wait, the replies the reactor
        holds until the end of its pass, and those of the read being run."""
        io = self.io
        if type(io) not in (SocketIO, TlsStream):
            return None, 0, None, self.out
        reactor = self.server.reactor
        held = reactor.held_payload(io.fd) if reactor is not None else None
        return getattr(io, "sending", None), io.unsent, held, self.out

    def write_handed_back(self, payload: bytes) -> None:
        """The reactor wrote part of ``payload`` and hands the rest to this task: the
        rest's send is modelled as the end of ``payload``."""
        if type(self.io) is SocketIO:
            self.io.sending = payload

    def gathered_bytes(self) -> int:
        """The bytes of ``out``, measured as it grows (a long pipeline with a limit set is
        measured after each reply: each part is counted once)."""
        out = self.out
        counted = self._out_counted
        if len(out) < counted:  # emptied meanwhile (a forked SCRIPT DEBUG session took it)
            counted = self._out_bytes = self.deferred_held = 0
        if len(out) > counted:
            added = out[counted:]
            self._out_bytes += sum(map(len, added))
            # Such a reply opens a reply block even when the reply buffer has room.
            self.deferred_held += list(map(type, added)).count(DeferredReply)
            self._out_counted = len(out)
        return self._out_bytes

    def over_output_limits(self) -> bool:
        """checkClientOutputBufferLimits, with what is held for the client now; logged as
        Redis logs a client it schedules to close."""
        session = self.session
        if obuf.over_limits(session, obuf.pending_bytes(session)):
            obuf.log_closing(session, scheduled=True)
            return True
        return False

    async def send(self, data: bytes) -> None:
        # acquire_nowait first: `async with lock` always yields to the scheduler, which
        # costs more than the send itself when the lock is free (nearly always).
        lock = self.send_lock
        try:
            lock.acquire_nowait()
        except trio.WouldBlock:
            await lock.acquire()
        # Counted before send_all's await, which yields after the bytes left: by then the
        # client may have read them and asked INFO, served by the reactor meanwhile.
        self._count_write(data)
        try:
            await self.io.send_all(data)
        finally:
            lock.release()

    def drain_pushes(self, out: list[bytes]) -> None:
        pending = self.session.pending_out
        if pending:
            resp3 = self.session.resp3
            out.extend(encode(message, resp3) for message in pending)
            self.session.drained()

    async def pusher(self) -> None:
        """Send what other clients pushed to us (pub/sub messages, MONITOR lines)."""
        while True:
            await self.push_ready.wait()
            self.push_ready = trio.Event()
            self.session.on_push = self.push_ready.set
            out: list[bytes] = []
            self.drain_pushes(out)
            if out:
                await self.send(b"".join(out))

    async def wait_blocked(self, argv: list[bytes], block: Block | None,
                           waiter: Callable[[], Awaitable[object]] | None = None) -> object:
        """Wait out a blocking command (or ``waiter``, a postponed one) while still reading
        the socket, as Redis keeps reading a blocked client: what it sends meanwhile is
        parsed and runs after the reply, and a hang-up ends the wait at once
        (``_DISCONNECTED``), so that no later push is popped for a client that is gone."""
        reply: object = _DISCONNECTED
        engine = self.server.engine

        async with trio.open_nursery() as nursery:

            async def wait() -> None:
                nonlocal reply
                if waiter is not None:
                    reply = await waiter()
                else:
                    reply = await self.server.blocking.wait(self.session, argv, block)
                nursery.cancel_scope.cancel()

            async def read() -> None:
                while True:
                    try:
                        data = await self.io.receive_some(RECEIVE_SIZE)
                    except trio.ClosedResourceError:  # closed here (killed): no read
                        nursery.cancel_scope.cancel()
                        return
                    except (trio.BrokenResourceError, OSError):
                        data = b""
                    # Every read, as readQueryFromClient counts them: hang-ups and errors too.
                    engine.stats.reads_processed += 1
                    if not data:
                        nursery.cancel_scope.cancel()
                        return
                    engine.stats.total_net_input_bytes += len(data)
                    self.parser.feed(data)
                    # Read, not run, while blocked: all of it counts (Redis's query buffer).
                    if self.parser.buffered > self.server.config.client_query_buffer_limit:
                        self.query_buffer_full()  # the reply stays _DISCONNECTED
                        nursery.cancel_scope.cancel()
                        return

            nursery.start_soon(wait)
            nursery.start_soon(read)
        return reply

    async def run_postponed(self, argv: list[bytes]) -> object:
        """A command CLIENT PAUSE postponed: run it again each time the pause ends or
        relaxes (or its time is up), until it is no longer held; its reply."""
        engine = self.server.engine
        pause = engine.pause
        pause.postponed.add(self.session.id)
        try:
            while True:
                changed = self.server.pause_changed
                remaining = (pause.end_ms - engine.keyspace.now_ms()) / 1000 + 0.001
                with trio.move_on_after(max(remaining, 0)):
                    await changed.wait()
                reply = engine.execute(self.session, argv)
                if reply is not POSTPONED:
                    return reply
        finally:
            pause.postponed.discard(self.session.id)

    def silenced(self, argv: list[bytes]) -> bool:
        """CLIENT REPLY OFF/SKIP: is this command's reply dropped? (Counts the SKIP down.)"""
        session = self.session
        skip = session.reply_skip
        if skip:
            session.reply_skip = skip - 1
        if argv[0].lower() in _SUBSCRIBING:
            return False
        return session.reply_off or skip == 1

    def drop_reply(self, out: list[bytes]) -> None:
        """A silenced reply: nothing of it is sent; others' pushes still are."""
        session = self.session
        session.after_reply.clear()
        if session.pending_out:
            self.drain_pushes(out)

    async def wait_replicas(self, wait: WaitReplicas) -> int | ReplyError:
        """WAIT: until enough replicas acknowledged the client's last write, the timeout, or
        CLIENT UNBLOCK (the acknowledgements so far, or its error). A blocked client
        meanwhile, as Redis's BLOCKED_WAIT: INFO's blocked_clients, CLIENT LIST's flag b."""
        replication = self.server.engine.replication
        session = self.session
        unblocked = Waiter(session, [b"wait"], session.db.id, [])  # on no key
        session.blocked = unblocked
        try:
            with trio.move_on_after(wait.timeout if wait.timeout > 0 else math.inf):
                async with trio.open_nursery() as nursery:

                    async def acknowledged() -> None:
                        while replication.replicas_acked(wait.offset) < wait.count:
                            await replication.acked.wait()
                        nursery.cancel_scope.cancel()

                    async def unblock() -> None:
                        await unblocked.done.wait()
                        nursery.cancel_scope.cancel()

                    nursery.start_soon(acknowledged)
                    nursery.start_soon(unblock)
        finally:
            session.blocked = None
        if type(unblocked.reply) is ReplyError:  # CLIENT UNBLOCK ... ERROR
            return unblocked.reply
        return replication.replicas_acked(wait.offset)

    async def wait_shutdown_cancelled(self) -> ReplyError:
        """SHUTDOWN waiting for replicas: the node stops (this task is cancelled with it),
        or the shutdown is cancelled and the client hears why."""
        state = shutdown_state(self.server.engine)
        cancelled = trio.Event()
        state.cancel_listeners.append(cancelled.set)
        try:
            await cancelled.wait()
        finally:
            state.cancel_listeners.remove(cancelled.set)
        return ReplyError(SHUTDOWN_ERROR)

    async def read_from_replica(self) -> None:
        """A replica link's incoming side: REPLCONF ACKs (and newlines), never answered."""
        engine = self.server.engine
        while True:
            try:
                data = await self.io.receive_some(RECEIVE_SIZE)
            except trio.ClosedResourceError:  # closed here: no read
                return
            except (trio.BrokenResourceError, OSError):
                data = b""
            # A replica is a client: each read counts, its hang-up too; its ACKs are client
            # input (Redis counts only reads from a master as replication bytes).
            engine.stats.reads_processed += 1
            if not data:
                return
            engine.stats.total_net_input_bytes += len(data)
            self.parser.feed(data)
            while True:
                try:
                    argv = self.parser.next_request()
                except ProtocolError:
                    return
                if argv is NEED_DATA:
                    break
                engine.execute(self.session, argv)

    def add_reply(self, reply: object, out: list[bytes]) -> None:
        """Encode ``reply`` into ``out``, after the pushes that came first (a message this
        client published to itself) and before the lines due after it (its MONITOR echo)."""
        session = self.session
        if session.pending_out:
            self.drain_pushes(out)
        out.append(encode(reply, session.resp3))
        if session.after_reply:
            out.extend(encode(m, session.resp3) for m in session.after_reply)
            session.after_reply.clear()

    def query_buffer_full(self) -> object:
        """client-query-buffer-limit: close the client, without a reply, as Redis does."""
        from kvrepl.commands.client import client_info_line
        from kvrepl.commands.monitor import repr_bytes

        logger.warning("Closing client that reached max query buffer length: %s (qbuf "
                       "initial bytes: %s)", client_info_line(self.session),
                       repr_bytes(self.parser.head(64)))
        return _CLOSE

    def execute_buffered(self, out: list[bytes]) -> object:
        """Run every complete request the parser holds, appending the encoded replies to
        ``out``. Returns None once the parser needs more bytes, ``_CLOSE`` when the
        connection must end after ``out`` is sent, or ``(argv, reply)`` for a reply that
        has to be awaited first (a blocking command, WAIT, SYNC/PSYNC).

        What one read of a client ran is a turn of Redis's event loop: client-side
        caching's BCAST invalidations for the keys it modified go out at its end (Redis's
        beforeSleep), queued after its replies."""
        self.out = out
        self._out_counted = self._out_bytes = self.deferred_held = 0
        try:
            result = self._execute_buffered(out)
        finally:
            self.out = self.backlog
            if not self.backlog:
                self.deferred_held = 0  # what it counted is no longer held here
        engine = self.server.engine
        tracking = engine.tracking
        if tracking.due:
            tracking.broadcast()
        # maxmemory-clients: the client's memory once its input is processed (a big
        # request on its way counts; its replies count as written), then the clients
        # over the limit go, as readQueryFromClient's update and beforeSleep's evictClients.
        if engine.client_eviction and result is not _DROP \
                and cmem.evict_clients(engine, self.session):
            return _DROP
        return result

    def _execute_buffered(self, out: list[bytes]) -> object:
        parser = self.parser
        if parser.unparsed() > self.server.config.client_query_buffer_limit:
            return self.query_buffer_full()
        session = self.session
        engine = self.server.engine
        # Replies are measured one by one against client-output-buffer-limit while a limit
        # may apply (the lanes are closed then: see Engine.normal_output_limited).
        limited = engine.normal_output_limited or bool(
            session.channels or session.patterns or session.shard_channels)
        if limited and out and self.over_output_limits():  # the reply just awaited
            return _DROP
        execute = engine.execute
        lane = engine.plain_lane
        lane_names = LANE_NAMES
        handled_names = HANDLED_NAMES
        general = self.server.general_lane
        while True:
            # The plain lane is asked only when the next request is one of its commands: a
            # general command pays one set lookup for it, not the lane's checks. Other
            # requests go through the general lane (commands/dispatch.py) while it can take
            # them; whatever it leaves, or must hand back (argv set: a reply to await, to
            # send after pushes, or before closing), is finished here as ever.
            requests, position, raw = parser.ready_requests()
            argv = None
            if position < len(requests):
                name = requests[position][0]
                if name in lane_names:
                    if lane.open_for(session) and parser.skip_ready(
                            lane.run(session, requests, position, out, raw)):
                        return None  # all run: nothing more to ask the parser
                elif general.open_for(session):
                    if name in handled_names and lane.gates.open:
                        # The plain lane's writes straight to it, as the general lane
                        # would hand them on (GeneralLane.run), which takes what is left.
                        position = lane.run(session, requests, position, out)
                    if position < len(requests):
                        position, argv, reply = general.run(session, requests, position, out)
                    if parser.skip_ready(position) and argv is None:
                        return None
            if argv is None:
                try:
                    argv = parser.next_request()
                except ProtocolError as err:
                    self.drain_pushes(out)
                    out.append(encode_error(f"ERR {err}"))
                    logger.debug("Client closed for protocol error: %s", err)
                    return _CLOSE
                if argv is NEED_DATA:
                    return None
                reply = execute(session, argv)
                if reply is CLIENT_EVICTED:
                    return _DROP  # maxmemory-clients: closed with no reply
            if type(reply) in _AWAITED:
                return argv, reply
            if session.reply_off or session.reply_skip:
                if self.silenced(argv):
                    self.drop_reply(out)
                else:
                    self.add_reply(reply, out)
            elif session.pending_out or session.after_reply:
                self.add_reply(reply, out)
            else:
                out.append(encode(reply, session.resp3))
            if limited and self.over_output_limits():
                return _DROP
            if session.closing:
                return _CLOSE
            parser.authenticated = session.authenticated

    def replies_pending(self) -> bool:
        """Redis's clientHasPendingReplies while a command runs: replies of the requests
        before it in what the client sent, or messages queued for it, are not sent yet."""
        return bool(self.out) or bool(self.session.pending_out) \
            or bool(getattr(self.io, "unsent", 0))

    async def finish_waiting(self, argv: list[bytes], reply: object, out: list[bytes]) -> bool:
        """Await what ``execute_buffered`` stopped at and append its reply to ``out``;
        False when the connection is over (a replica link ended, the client hung up)."""
        session = self.session
        self.drain_pushes(out)
        if out:
            await self.send(b"".join(out))
            out.clear()
        if reply is POSTPONED:
            reply = await self.wait_blocked(argv, None, partial(self.run_postponed, argv))
            if reply is _DISCONNECTED:
                return False
        kind = type(reply)
        if kind is StartReplication:
            if self.server.config.repl_disable_tcp_nodelay:
                # syncCommand: fewer, bigger packets to the replica from its SYNC on
                set_nodelay(self.stream, False)
            await self.server.engine.replication.serve(self, session, reply.argv)
            return False
        if kind is WaitReplicas:
            reply = await self.wait_replicas(reply)
        elif kind is ShutdownWait:
            reply = await self.wait_shutdown_cancelled()
        elif kind is MigrateJob:
            reply = await run_migrate(self.server.engine, self.server.migrate_sockets, reply)
        elif kind is Block:
            reply = await self.wait_blocked(argv, reply)
            if reply is _DISCONNECTED:
                return False
        if (session.reply_off or session.reply_skip) and self.silenced(argv):
            self.drop_reply(out)
        else:
            self.add_reply(reply, out)
        self.parser.authenticated = session.authenticated
        return not session.closing

    async def run(self, first: tuple[list[bytes], object] | None = None) -> None:
        """The request loop. On Linux a TCP client spends its idle time parked in the
        server's :class:`~kvrepl.server.reactor.Reactor`, which serves it from there; this
        loop takes over whenever something has to be awaited. ``first``: replies still to
        send and what ``execute_buffered`` stopped at, for a client served before its task
        ran (accepted while a script was busy)."""
        engine = self.server.engine
        session = self.session
        parser = self.parser
        stream = self.io
        stats = engine.stats
        reactor = self.server.reactor if type(stream) in (SocketIO, TlsStream) else None
        while not session.closing or first is not None:
            out: list[bytes] = []
            if first is not None:
                (out, result), first = first, None
            elif reactor is not None and reactor.running and stream.idle():
                handed = await reactor.park(self)
                if handed is HANGUP:
                    return
                out, result = handed
            else:
                try:
                    data = await stream.receive_some(RECEIVE_SIZE)
                except trio.ClosedResourceError:  # closed here: no read
                    return
                except (trio.BrokenResourceError, OSError):
                    data = b""
                stats.reads_processed += 1  # every read, as readQueryFromClient: hang-ups too
                if not data:
                    return
                stats.total_net_input_bytes += len(data)
                parser.feed(data)
                result = self.execute_buffered(out)
            session.last_interaction = now()
            while result is not None and result is not _CLOSE and result is not _DROP:
                argv, reply = result
                if not await self.finish_waiting(argv, reply, out):
                    if out:
                        with contextlib.suppress(trio.BrokenResourceError,
                                                 trio.ClosedResourceError, OSError):
                            await self.send(b"".join(out))
                    return
                result = self.execute_buffered(out)
            if result is _DROP:
                return
            if out:
                try:
                    if result is None and type(stream) in (SocketIO, TlsStream):
                        result = await self.send_reading(b"".join(out))
                        if result is not None and result is not _CLOSE:
                            if result is not _DROP:  # a reply to await, read meanwhile
                                first = [], result
                                continue
                            return
                    else:
                        await self.send(b"".join(out))
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    return
            if result is _CLOSE:
                return

    async def send_reading(self, data: bytes) -> object:
        """Send ``data``; while the kernel will not take it, go on reading the client and
        running what it sends, as Redis does (its replies wait after ``data``, counted by
        client-output-buffer-limit and maxmemory-clients, which close a client that sends
        without reading). Returns None once all is sent, or what ``execute_buffered``
        stopped at meanwhile (its replies before it sent): a reply to await, ``_CLOSE``,
        or ``_DROP`` (the client is to go now: over a limit, or it hung up)."""
        io = self.io
        lock = self.send_lock
        rest: bytes | None = None
        owned = not lock.locked()
        if owned:
            # The common case costs what send costs: the kernel takes all of it now.
            lock.acquire_nowait()
            try:
                self._count_write(data)
                rest = io.write_now(data)  # type: ignore[union-attr]
            except BaseException:
                lock.release()
                raise
            if rest is None:
                lock.release()
                return None
            if type(io) is SocketIO:
                if io.sending is None:  # else the reactor's payload, handed back
                    io.sending = data
                io.unsent = len(rest)
            self.backlog = self.out = []
        else:
            # The pusher is writing: ``data`` goes after its messages, read on meanwhile.
            self.backlog = self.out = [data]
        self._out_counted = self._out_bytes = self.deferred_held = 0
        stop: list[object] = [None]
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read_while_sending, stop, nursery.cancel_scope)
                if not owned:
                    await lock.acquire()
                    owned = True
                if rest is not None:
                    await io.send_all(rest)  # TLS: b"", what it holds of ``data`` is sent
                while self.backlog:
                    payload = b"".join(self.backlog)
                    self.backlog = self.out = []
                    self._out_counted = self._out_bytes = self.deferred_held = 0
                    self._count_write(payload)
                    await io.send_all(payload)
                nursery.cancel_scope.cancel()
        finally:
            if owned:
                lock.release()
            self.backlog = self.out = ()
            if type(io) is SocketIO:
                io.sending = None
                io.unsent = 0
        return stop[0]

    def _count_write(self, data: bytes) -> None:
        """A write of ``data`` to the client: the AOF first, then the counts (before the
        kernel takes it: by then the client may have read it and asked INFO, served by
        the reactor meanwhile)."""
        aof = self.server.engine.aof
        if aof is not None and aof.buf:
            aof.flush()  # a write is in the AOF (on disk with appendfsync always) before its reply
        stats = self.server.engine.stats
        stats.writes_processed += 1
        stats.total_net_output_bytes += len(data)
        obuf.note_reply(self.session, len(data))

    async def _read_while_sending(self, stop: list[object],
                                  scope: trio.CancelScope) -> None:
        """send_reading's reader: reads the client and runs what it sent, its replies
        gathered in ``backlog``, until it stops at a reply to await or a close (then
        reads only, as Redis fills a blocked client's query buffer), or must end the
        client now (``stop[0]`` is then ``_DROP`` and ``scope`` is cancelled)."""
        engine = self.server.engine
        stats = engine.stats
        parser = self.parser
        while True:
            try:
                data = await self.io.receive_some(RECEIVE_SIZE)
            except trio.ClosedResourceError:  # closed here (killed): no read
                data = b""
            except (trio.BrokenResourceError, OSError):
                data = b""
            stats.reads_processed += 1
            if not data:  # Redis frees a client as it reads its hang-up, output unsent
                stop[0] = _DROP
                scope.cancel()
                return
            stats.total_net_input_bytes += len(data)
            parser.feed(data)
            self.session.last_interaction = now()
            if stop[0] is None:
                result = self.execute_buffered(self.backlog)  # type: ignore[arg-type]
                if result is None:
                    continue
                stop[0] = result
                if result is _DROP:
                    scope.cancel()
                    return
                if result is _CLOSE:
                    return
            elif parser.buffered > self.server.config.client_query_buffer_limit:
                self.query_buffer_full()
                stop[0] = _DROP
                scope.cancel()
                return


class Server:
    """Serves one :class:`~kvrepl.commands.core.Engine` over TCP with trio.

    ``await nursery.start(server.serve)`` returns the port once the server is listening;
    cancelling the surrounding scope closes the listener and every connection.
    """

    def __init__(self, engine: Engine | None = None, config: Config | None = None) -> None:
        self.engine = engine or Engine(config)
        self.config = self.engine.config
        self.blocking = BlockingManager(self.engine)
        self.reactor = Reactor(self.engine) if REACTOR_AVAILABLE else None
        self.general_lane = GeneralLane(self.engine)
        self.port: int | None = None
        self.connections: dict[int, Connection] = {}
        self._shutdown = trio.Event()
        # Set (and replaced) each time CLIENT PAUSE ends or relaxes: postponed clients retry.
        self.pause_changed = trio.Event()
        self.engine.pause.listeners.append(self._pause_changed)
        self.shutdown_save: bool | None = None
        self.engine.on_shutdown = self.request_shutdown
        # maxmemory-clients: a client sent pushes (pub/sub messages, MONITOR lines) is
        # measured once its task tried to write them (kvrepl.commands.cmem.evict_clients)
        self._client_pushed = trio.Event()
        self.engine.on_client_pushed = self._client_pushed.set
        self.engine.serve_while_busy = self._serve_while_busy
        self.engine.debug_channel = self._debug_channel
        self.busy_acceptor = BusyAcceptor(self)
        self.tls_context: ssl.SSLContext | None = None  # tls-port's, once serving
        self.config.appliers.append(self._apply_tls)
        self.config.appliers.append(self._apply_listen)
        # The TCP and TLS listeners' accept loops, each in a scope of its own, so that
        # CONFIG SET port/bind/tls-port can retire them (kind "tcp" or "tls"), and where
        # each kind listens now ((port, bind addresses): reopened when a move fails).
        self._accepting: dict[trio.SocketListener, tuple[str, trio.CancelScope]] = {}
        self._listening: dict[str, tuple[int, tuple[str, ...]]] = {}
        self._nursery: trio.Nursery | None = None
        # Whether serve() opens the TCP port (an embedded node may listen on its
        # unixsocket only).
        self.tcp = True
        self.engine.server = self
        self.migrate_sockets = MigrateSockets()
        # SCRIPT DEBUG YES sessions running (Redis's ldb.children): their channels, to kill.
        self.forked_sessions: set[SocketChannel] = set()

    def _serve_while_busy(self, caller: Session) -> None:
        """From inside a script past busy-reply-threshold: serve the parked clients that
        sent something (they get -BUSY, or SCRIPT KILL & co run), never the script's own."""
        if self.reactor is not None and self.reactor.running:
            self.reactor.serve_ready(skip=caller)
        self.busy_acceptor.serve()  # and those who connect meanwhile

    def _debug_channel(self, session: Session) -> SocketChannel | None:
        """The socket a SCRIPT DEBUG session of ``session`` talks over: plain TCP clients
        only (a TLS stream cannot be read synchronously from inside the script)."""
        connection = self.connections.get(session.id)
        if connection is None or type(connection.io) is not SocketIO:
            return None
        return SocketChannel(connection.io.fd)

    def start_forked_session(self, session: Session, forked: ForkedSession) -> bool:
        """SCRIPT DEBUG YES's EVAL: run ``forked`` in a thread of its own over a duplicate
        of the client's socket (Redis's child has its own descriptor), while this side of
        the connection closes; False when the client has no plain TCP socket.

        A plain daemon thread, started here: it always runs, so the duplicate is always
        closed by the session itself, never from this thread while the session may still
        use its number; and a node that stops kills it (its channel) without waiting."""
        connection = self.connections.get(session.id)
        if connection is None or type(connection.io) is not SocketIO:
            return False
        # The replies of this read not sent yet, and the messages queued for the client,
        # are the child's to send (Redis's child inherits the output buffer; the parent
        # frees the client without writing it).
        out = connection.out
        if isinstance(out, list):
            forked.unsent.extend(out)
            out.clear()
            connection.drain_pushes(forked.unsent)
        channel = SocketChannel.duplicate(connection.io.fd)
        self.forked_sessions.add(channel)
        threading.Thread(target=self._run_forked, args=(forked, channel), daemon=True,
                         name="kvrepl lua debugging session").start()
        return True

    def _run_forked(self, forked: ForkedSession, channel: SocketChannel) -> None:
        try:
            forked.run(channel)
        finally:
            self.forked_sessions.discard(channel)

    def kill_forked_sessions(self) -> None:
        """ldbKillForkedSessions: every YES session ends now, its client disconnected."""
        for channel in list(self.forked_sessions):
            logger.warning("Killing debugging session")
            channel.kill()

    def _apply_tls(self, names: list[str]) -> None:
        """CONFIG SET tls-*: the contexts are made again from the new values (Redis's
        applyTlsCfg), the listener's for the clients that connect from now on; a replica
        makes its own at its next connection to its master."""
        changed = [name for name in names if name.startswith("tls-")]
        if not changed:
            return
        try:
            context = tls.server_context(self.config) if self.config.tls_port else None
            if self.config.tls_replication:
                tls.client_context(self.config)
        except tls.TlsError as err:
            logger.warning("Failed to configure TLS: %s", err)
            raise ApplyError(changed[0], "Unable to update TLS configuration. Check server "
                             "logs.") from None
        if context is not None:
            self.tls_context = context

    def _pause_changed(self) -> None:
        self.pause_changed.set()
        self.pause_changed = trio.Event()

    def request_shutdown(self, save: bool | None = None) -> None:
        self.kill_forked_sessions()  # (prepareForShutdown)
        self.shutdown_save = save
        self._shutdown.set()

    @property
    def shutting_down(self) -> bool:
        """SHUTDOWN (or a failed startup load) asked the node to stop."""
        return self._shutdown.is_set()

    async def wait_shutdown(self) -> None:
        await self._shutdown.wait()

    def _bind_address(self, address: str, port: int) -> list[trio.SocketListener]:
        """Listen on ``port`` at one ``bind`` address (``*``: every IPv4 address), as
        trio.open_tcp_listeners does but synchronously: CONFIG SET port and bind open their
        listeners inside the command. An address marked ``-`` that is not available here
        gives none, as in Redis."""
        host = address.lstrip("-")
        try:
            found = socket.getaddrinfo("0.0.0.0" if host == "*" else host, port,
                                       type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except socket.gaierror as err:
            raise OSError(errno.EADDRNOTAVAIL, f"{host}: {err.strerror}") from None
        listeners: list[trio.SocketListener] = []
        try:
            for family, kind, proto, _name, sockaddr in dict.fromkeys(found):
                sock = socket.socket(family, kind, proto)
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    if family == socket.AF_INET6:
                        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    sock.bind(sockaddr)
                    sock.listen(min(self.config.tcp_backlog, 0xFFFF))
                except OSError:
                    sock.close()
                    raise
                listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
        except OSError as err:
            for listener in listeners:
                listener.socket.close()
            if address.startswith("-") and err.errno == errno.EADDRNOTAVAIL:
                return []
            raise
        return listeners

    def _bind_all(self, port: int, addresses: Sequence[str] | None = None
                  ) -> list[trio.SocketListener]:
        """Listen on ``port`` at every ``bind`` address (or ``addresses``): all or none."""
        listeners: list[trio.SocketListener] = []
        try:
            for address in self.config.bind if addresses is None else addresses:
                listeners.extend(self._bind_address(address, port))
        except OSError:
            for listener in listeners:
                listener.socket.close()
            raise
        return listeners

    async def open_listeners(self) -> list[trio.SocketListener]:
        """Listen on every ``bind`` address, on one port. With port 0 the first address
        picks a free port for all; when it is taken on a later address (free where the
        first looked, not there), every listener is closed and another port is picked."""
        picking = not (self.port or self.config.port)
        for attempt in range(PICK_PORT_ATTEMPTS if picking else 1):
            listeners: list[trio.SocketListener] = []
            try:
                for address in self.config.bind:
                    opened = self._bind_address(address, self.port or self.config.port)
                    listeners.extend(opened)
                    if opened and not self.port:
                        self.port = opened[0].socket.getsockname()[1]
                return listeners
            except OSError as err:
                for listener in listeners:
                    listener.socket.close()
                if not picking or err.errno != errno.EADDRINUSE \
                        or attempt == PICK_PORT_ATTEMPTS - 1:
                    raise
                self.port = 0
        raise AssertionError("unreachable")  # pragma: no cover

    async def open_tls_listeners(self) -> list[trio.SocketListener]:
        """``tls-port`` on every ``bind`` address (none when it is 0)."""
        if not self.config.tls_port:
            return []
        return self._bind_all(self.config.tls_port)

    async def open_unix_listener(self) -> trio.SocketListener | None:
        """``unixsocket``: a listener at that path (an old file there is removed first,
        as Redis does), ``unixsocketperm`` its mode when not 0; None when unset."""
        path = self.config.unixsocket
        if not path:
            return None
        with contextlib.suppress(OSError):
            os.unlink(path)
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            await sock.bind(path)
            if self.config.unixsocketperm:
                os.chmod(path, self.config.unixsocketperm)
            sock.listen(min(self.config.tcp_backlog, 0xFFFF))
        except OSError as err:
            sock.close()
            raise OSError(err.errno, f"Failed opening Unix socket: {err.strerror}") from None
        return trio.SocketListener(sock)

    async def _evict_pushed_clients(self) -> None:
        """maxmemory-clients for clients whose output grew by pushes: once they were sent
        some, let their tasks write what the kernel takes (the tasks woken with this one
        run first: one more turn of the scheduler), then measure them and evict as
        beforeSleep does after handleClientsWithPendingWrites."""
        engine = self.engine
        while True:
            await self._client_pushed.wait()
            self._client_pushed = trio.Event()
            engine.on_client_pushed = self._client_pushed.set
            await trio.lowlevel.checkpoint()  # the pushers woken with us write first
            if engine.client_eviction:
                cmem.evict_clients(engine, pushed=True)

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on the configured ``bind`` and ``port`` (0 picks a free port) and
        ``tls-port``, and serve."""
        tls.check(self.config)  # bad TLS options stop the start, as in Redis
        self.tls_context = tls.server_context(self.config) if self.config.tls_port else None
        listeners = await self.open_listeners() if self.tcp else []
        tls_listeners = await self.open_tls_listeners()
        unix_listener = await self.open_unix_listener()
        try:
            async with trio.open_nursery() as nursery:
                persistence.attach(self.engine, nursery)  # where BGSAVE jobs run
                nursery.start_soon(self._evict_pushed_clients)
                nursery.start_soon(run_cron, self.engine)
                if self.reactor is not None:
                    nursery.start_soon(self.reactor.run)
                self._nursery = nursery
                self._accept("tcp", listeners, self.port or 0)
                self._accept("tls", tls_listeners, self.config.tls_port)
                if unix_listener is not None:
                    self.busy_acceptor.add_listener(unix_listener, nursery)
                    nursery.start_soon(self._accept_loop, unix_listener, nursery)
                # Where the listeners can move, CONFIG SET may move them (_apply_listen).
                self.config.movable.update(_MOVABLE)
                task_status.started(self.port)  # "Ready to accept" comes once loaded
        finally:
            self.config.movable.difference_update(_MOVABLE)
            self._nursery = None
            if unix_listener is not None:  # closeListeningSockets(unlink_unix_socket)
                logger.info("Removing the unix socket file.")
                try:
                    os.unlink(self.config.unixsocket)
                except OSError as err:
                    logger.warning("Error removing the unix socket file: %s", err.strerror)
            self.kill_forked_sessions()
            self.busy_acceptor.close()
            for name in list(self.migrate_sockets.cached):
                self.migrate_sockets.close(name)

    # -- CONFIG SET port, bind, tls-port: the listeners move, as Redis's changeListenPort
    # and changeBindAddr move them: the old ones closed first (the same port can be taken
    # again), the new ones opened inside the command; when that fails, the old ones are
    # opened again and CONFIG SET fails with Redis's message (its values restored).

    def _accept(self, kind: str, listeners: list[trio.SocketListener], port: int,
                addresses: Sequence[str] | None = None) -> None:
        """Accept from ``listeners`` (``kind`` "tcp" or "tls", listening on ``port`` at the
        ``bind`` addresses or ``addresses``), each in a scope a move can cancel."""
        nursery = self._nursery
        assert nursery is not None
        for listener in listeners:
            scope = trio.CancelScope()
            self._accepting[listener] = (kind, scope)
            if kind == "tcp":
                self.busy_acceptor.add_listener(listener, nursery)
            nursery.start_soon(self._accept_until_retired, listener, scope, kind == "tls")
        self._listening[kind] = (port, tuple(self.config.bind if addresses is None
                                             else addresses))

    async def _accept_until_retired(self, listener: trio.SocketListener,
                                    scope: trio.CancelScope, secure: bool) -> None:
        assert self._nursery is not None
        with scope:
            try:
                await self._accept_loop(listener, self._nursery, secure)
            except trio.ClosedResourceError:
                if not scope.cancel_called:
                    raise  # closed by someone else than a move: not ours to hide

    def _retire(self, kind: str) -> None:
        """Close every listener of ``kind`` now (its accept loop ends at its next turn)."""
        for listener, (its_kind, scope) in list(self._accepting.items()):
            if its_kind == kind:
                del self._accepting[listener]
                scope.cancel()
                if kind == "tcp":
                    self.busy_acceptor.remove_listener(listener)
                listener.socket.close()
        self._listening.pop(kind, None)

    def _apply_listen(self, names: list[str]) -> None:
        """CONFIG SET port / tls-port (that kind's listeners move: updatePort,
        applyTLSPort) and bind (both kinds: applyBind); port 0 closes them."""
        if "bind" in names:
            moves = [("tcp", "bind"), ("tls", "bind")]
        else:
            moves = [(kind, name) for kind, name in (("tcp", "port"), ("tls", "tls-port"))
                     if name in names]
        if not moves:
            return
        was = dict(self._listening)
        ports = {"tcp": self.config.port if "port" in names else was.get("tcp", (0,))[0],
                 "tls": self.config.tls_port}
        for kind, _name in moves:
            self._retire(kind)
        failed: tuple[str, str, OSError] | None = None
        for kind, name in moves:
            if not ports[kind]:
                continue  # port 0: closed, as Redis's changeListenPort
            try:
                self._accept(kind, self._bind_all(ports[kind]), ports[kind])
            except OSError as err:
                failed = (kind, name, err)
                break
        if failed is None:
            if any(kind == "tcp" for kind, _name in moves):
                self.port = ports["tcp"]
            return
        kind, name, err = failed
        logger.warning("Failed to listen on port %s (%s): %s",
                       ports[kind], " ".join(self.config.bind), err)
        for retired, _name in moves:
            self._retire(retired)
        self._reopen(was, [kind for kind, _ in moves])
        raise ApplyError(name, "Failed to bind to specified addresses." if name == "bind"
                         else "Unable to listen on this port. Check server logs.")

    def _reopen(self, was: dict[str, tuple[int, tuple[str, ...]]], kinds: list[str]) -> None:
        """After a failed move: listen again where ``kinds`` listened before it."""
        for kind in kinds:
            port, addresses = was.get(kind, (0, ()))
            if port:
                try:
                    self._accept(kind, self._bind_all(port, addresses), port, addresses)
                except OSError as err:
                    logger.warning("Could not listen again on port %d: %s", port, err)

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery,
                           secure: bool = False) -> None:
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as err:
                    if err.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                        logger.warning("Error accepting a client connection: %s", err)
                        await trio.sleep(0.01)
                        continue
                    raise
                set_keepalive(stream, self.config.tcp_keepalive)
                if not secure:
                    nursery.start_soon(self.handle_stream, stream)
                else:  # the context of now: CONFIG SET tls-* may have made a new one
                    nursery.start_soon(self._handle_tls, stream, self.tls_context)

    async def _handle_tls(self, stream: trio.SocketStream, context: ssl.SSLContext) -> None:
        """A ``tls-port`` client: served once its handshake succeeded, dropped otherwise."""
        try:
            secure = await tls.wrap_server(stream, context)
        except (trio.BrokenResourceError, trio.TooSlowError, OSError) as err:
            logger.debug("Error accepting a TLS client connection: %s", err)
            await stream.aclose()
            return
        await self.handle_stream(secure)

    async def handle_stream(self, stream: trio.abc.Stream) -> None:
        """Serve one client on ``stream`` until it disconnects, QUITs or is killed."""
        async with stream:
            admitted = self.admit(stream)
            if type(admitted) is bytes:
                await _try_send(stream, admitted)
                return
            await self._serve_connection(admitted)

    def admit(self, stream: trio.abc.Stream) -> Connection | bytes:
        """A new client's connection, or the error that refuses it (maxclients,
        protected mode)."""
        engine = self.engine
        engine.stats.connections_received += 1
        peer, local = _addresses(stream)
        if len(engine.sessions) >= self.config.maxclients:
            engine.stats.rejected_connections += 1
            return b"-ERR max number of clients reached\r\n"
        if (self.config.protected_mode and engine.acl.default.nopass
                and peer and not is_local_address(peer)):
            engine.stats.rejected_connections += 1  # clientAcceptHandler counts it too
            return _DENIED
        session = engine.new_session()
        # A stream without a socket is an in-process link (Replica(follow=master)).
        session.addr, session.laddr = peer or "in-process:0", local or "in-process:0"
        session.over_network = peer is not None
        hold_output_as_redis(stream)
        connection = Connection(self, stream, session)
        self.connections[session.id] = connection
        return connection

    async def serve_adopted(self, stream: trio.abc.Stream, adopted: Adopted) -> None:
        """The task of a client accepted while a script was busy, from where that left it."""
        self.busy_acceptor.take(adopted)
        async with stream:
            connection = adopted.connection
            if adopted.hangup:
                self.connections.pop(connection.session.id, None)
                self.engine.close_session(connection.session)
                return
            await self._serve_connection(connection, (adopted.out, adopted.result))

    async def _serve_connection(self, connection: Connection,
                                first: tuple[list[bytes], object] | None = None) -> None:
        session = connection.session
        try:
            with connection.cancel_scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_contained, connection.pusher(), session)
                    await _contained(connection.run(first), session)
                    nursery.cancel_scope.cancel()
        finally:
            self.connections.pop(session.id, None)
            self.engine.close_session(session)


async def _contained(work: object, session: Session) -> None:
    """Run one client's work; whatever goes wrong with it ends that client only."""
    try:
        await work
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as err:
        logger.debug("Client %s disconnected: %s", session.addr, err)
    except Exception:
        logger.exception("Client %s closed after an internal error", session.addr)


def set_keepalive(stream: trio.abc.Stream, interval: int) -> None:
    """``tcp-keepalive``: TCP keepalives on a client's (or the master link's) socket, as
    Redis's anetKeepAlive sets them: probes after ``interval`` idle seconds, then every
    third of it, three unanswered ones close the connection. 0 leaves the socket as is."""
    sock = getattr(stream, "socket", None)
    if not interval or sock is None or sock.family == socket.AF_UNIX:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if hasattr(socket, "TCP_KEEPIDLE"):  # Linux; other systems keep their own timing
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, interval)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(interval // 3, 1))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)


def hold_output_as_redis(stream: trio.abc.Stream) -> None:
    """Let the kernel take as much of a client's unsent output as it takes from
    redis-server: trio's ``SocketStream`` sets TCP_NOTSENT_LOWAT to 16 KiB, which keeps
    all but ~64 KB of what a client does not read in kvrepl's buffers (counted by
    ``client-output-buffer-limit`` and ``maxmemory-clients``) where Redis, which never
    sets the option, has the kernel hold megabytes. 0 restores the system's default
    (net.ipv4.tcp_notsent_lowat). Replicas are accepted clients too: Redis's stream to
    them is held by the kernel the same way."""
    if isinstance(stream, (trio.SSLStream, TlsStream)):
        stream = stream.transport_stream
    sock = getattr(stream, "socket", None)
    lowat = getattr(socket, "TCP_NOTSENT_LOWAT", None)
    if lowat is None or sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, lowat, 0)
    except OSError:  # a system without the option's default: left as trio set it
        pass


def set_nodelay(stream: trio.abc.Stream, on: bool) -> None:
    """TCP_NODELAY on the socket under ``stream`` (a TLS stream's too); none on a UNIX
    socket."""
    if isinstance(stream, (trio.SSLStream, TlsStream)):
        stream = stream.transport_stream
    sock = getattr(stream, "socket", None)
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, on)


def _addresses(stream: trio.abc.Stream) -> tuple[str | None, str | None]:
    if isinstance(stream, (trio.SSLStream, TlsStream)):  # a TLS client: known by its socket
        stream = stream.transport_stream
    sock = getattr(stream, "socket", None)
    if sock is None:
        return None, None
    try:
        if sock.family == socket.AF_UNIX:
            # A client of the unixsocket listener is known by its path, as in Redis
            # (a socket pair's end has no path).
            name = f"{sock.getsockname() or '/unix'}:0"
            return name, name
        peer = sock.getpeername()
        local = sock.getsockname()
        return f"{peer[0]}:{peer[1]}", f"{local[0]}:{local[1]}"
    except OSError:
        return None, None


async def _try_send(stream: trio.abc.Stream, data: bytes) -> None:
    try:
        await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass




