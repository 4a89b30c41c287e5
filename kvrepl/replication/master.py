"""The master side of replication: replica links, one shared snapshot, the stream.

Propagated writes become stream bytes once (:class:`StreamFeed`), go to the backlog and to
every replica's output buffer. A replica that asks for a full sync joins the snapshot being
taken, if any, or starts one: a point-in-time :class:`~kvrepl.store.snapshot.KeyspaceView`
serialized in slices between trio checkpoints, so the master keeps serving. Writes made
meanwhile are held in each replica's buffer and sent after the payload.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

import lz4.frame
import trio

from kvrepl.commands.core import Engine
from kvrepl.log import logger
from kvrepl.rdb import RdbWriter, default_aux
from kvrepl.replication.backlog import Backlog
from kvrepl.replication.stream import StreamFeed, encode_command, encode_commands, encode_select
from kvrepl.store.snapshot import KeyspaceView

NO_REPLID = "0" * 40
_NO_LIMIT = 1 << 62
_BACKLOG_MIN_SIZE = 16 * 1024  # CONFIG_REPL_BACKLOG_MIN_SIZE
_SLICE = 0.002  # seconds of snapshot serialization between two checkpoints
_SNAPSHOT_BATCH = 256  # keys the view hands over at a time
PING = encode_command([b"ping"])
GETACK = encode_command([b"REPLCONF", b"GETACK", b"*"])


async def _lz4_chunks(chunks: list[bytes]) -> list[bytes]:
    """The payload as one lz4 frame, compressed a chunk at a time between checkpoints."""
    compressor = lz4.frame.LZ4FrameCompressor()
    out = [compressor.begin()]
    for chunk in chunks:
        out.append(compressor.compress(chunk))
        await trio.lowlevel.checkpoint()
    out.append(compressor.flush())
    return out


def new_replid() -> str:
    return secrets.token_hex(20)


class LinkClosed(Exception):
    """The replica link must be dropped (output limit, timeout)."""


@dataclass(eq=False)
class ReplicaLink:
    """The master's view of one attached replica."""

    session: object
    addr: str
    listening_port: int = 0
    announced_ip: str = ""
    capabilities: frozenset[str] = frozenset()
    old_sync: bool = False  # SYNC, not PSYNC: no ACKs, no timeout on them
    state: str = "wait_bgsave"  # wait_bgsave -> send_bulk -> online
    ack_offset: int = 0
    ack_time: float = field(default_factory=time.monotonic)
    buffer: bytearray = field(default_factory=bytearray)
    wakeup: trio.Event = field(default_factory=trio.Event)
    soft_limit_since: float | None = None
    closed: str | None = None  # why the link must go
    # After an $EOF: payload the stream waits for the replica's first ACK, as in Redis, so
    # that no stream byte is glued to the end mark.
    hold_until_ack: bool = False

    @property
    def ip(self) -> str:
        return self.announced_ip or self.addr.rsplit(":", 1)[0]

    def write(self, data: bytes) -> None:
        self.buffer += data
        self.wakeup.set()


def _close_now(link: ReplicaLink) -> None:
    """Close a link at once, as Redis frees the client: its sender may be stuck sending to
    a replica that does not read, so waking it is not enough."""
    link.wakeup.set()
    kill = getattr(link.session, "on_kill", None)
    if kill is not None:
        kill()


@dataclass(eq=False)
class Snapshot:
    """One RDB for every replica that asked for a full sync while it was being taken."""

    offset: int
    links: list[ReplicaLink] = field(default_factory=list)
    rdb: list[bytes] | None = None  # the payload's chunks, sent one by one (no big join)
    error: str | None = None
    done: trio.Event = field(default_factory=trio.Event)
    joined: trio.Event = field(default_factory=trio.Event)  # set (and replaced) per join


class MasterReplication:
    """Replication state of a node acting as a master (also a replica's view for its own
    sub-replicas: a replica forwards its master's bytes with :meth:`feed_raw`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.config = engine.config
        self.replid = new_replid()
        self.replid2 = NO_REPLID
        self.second_replid_offset = -1
        self._backlog: Backlog | None = None
        self._offset = 0  # master_repl_offset while there is no backlog
        self.feed = StreamFeed()
        self.feed.consumers.append(self._stream_bytes)
        self.replicas: list[ReplicaLink] = []
        self.snapshot: Snapshot | None = None
        self.sync_full = 0
        self.sync_partial_ok = 0
        self.sync_partial_err = 0
        self.last_payload_framing = ""  # "lz4", "eof" or "len": how the last payload went
        self.nursery: trio.Nursery | None = None
        self._propagating = True  # False on a replica: its stream is its master's
        self.getack_bytes = GETACK
        self.acked = trio.Event()  # set (and replaced) on every replica ACK, for WAIT
        self._outbox = bytearray()  # stream bytes not yet copied to the links' buffers
        self._post_limit = _NO_LIMIT  # outbox size that calls for an output limit check
        engine.replication = self
        self.config.listeners.append(self._config_changed)

    def _config_changed(self, name: str) -> None:
        if name == "repl-backlog-size" and self._backlog is not None:
            self._backlog.resize(self.backlog_size())
        elif name == "client-output-buffer-limit":
            self._rearm_limits()  # the new limits count from the next write on

    def backlog_size(self) -> int:
        """repl-backlog-size, raised to Redis's minimum of 16 KiB as Redis raises it."""
        if self.config.repl_backlog_size < _BACKLOG_MIN_SIZE:
            self.config.repl_backlog_size = _BACKLOG_MIN_SIZE
        return self.config.repl_backlog_size

    # -- the stream ------------------------------------------------------------------------
    @property
    def backlog(self) -> Backlog | None:
        return self._backlog

    @backlog.setter
    def backlog(self, backlog: Backlog | None) -> None:
        self._backlog = backlog
        self._listen()

    @property
    def propagating(self) -> bool:
        """False on a replica: its stream is its master's, its own writes go nowhere."""
        return self._propagating

    @propagating.setter
    def propagating(self, value: bool) -> None:
        self._propagating = value
        self._listen()

    def _listen(self) -> None:
        """Listen to the engine's propagated writes only while they become stream bytes
        (a master with a backlog): otherwise the engine need not queue them for us."""
        listeners = self.engine.propagate_listeners
        wanted = self._propagating and self._backlog is not None
        if wanted and self._propagate not in listeners:
            listeners.append(self._propagate)
            self.engine.run_listeners[self._propagate] = self._propagate_run
        elif not wanted and self._propagate in listeners:
            listeners.remove(self._propagate)
            self.engine.run_listeners.pop(self._propagate, None)

    @property
    def master_repl_offset(self) -> int:
        backlog = self._backlog
        return backlog.master_repl_offset if backlog is not None else self._offset

    def _propagate(self, db: int, argv: list[bytes]) -> None:
        # Registered only while propagating with a backlog (see _listen). Every write pays
        # for this: one encoding, one backlog append, one outbox append.
        self._queue(db, encode_command(argv))

    def _propagate_run(self, db: int, commands: list[list[bytes]],
                       encoded: bytes | None) -> None:
        # _propagate for several writes to one db: one encoding, one append each.
        self._queue(db, encode_commands(commands) if encoded is None else encoded)

    def _queue(self, db: int, data: bytes) -> None:
        """Writes' stream bytes for ``db``: a SELECT first when the stream was elsewhere."""
        feed = self.feed
        if db != feed.selected_db and db >= 0:
            data = encode_select(db) + data
            feed.selected_db = db
        self._backlog.append(data)
        if self.replicas:
            self._post(data)

    def feed_raw(self, data: bytes) -> None:
        """Stream bytes that need no SELECT logic (cron ping, a proxied master stream)."""
        if self._backlog is not None:
            self._stream_bytes(data)

    def _stream_bytes(self, data: bytes) -> None:
        self._backlog.append(data)
        if self.replicas:
            self._post(data)

    def _post(self, data: bytes) -> None:
        """Stream bytes for every attached replica. They gather in one outbox that is
        copied to each link's buffer once per burst (:meth:`_distribute`, run by the first
        sender task that wakes up), not once per write and replica."""
        outbox = self._outbox
        if not outbox:
            for link in self.replicas:
                link.wakeup.set()
        outbox += data
        if len(outbox) > self._post_limit:
            self._distribute()  # an output buffer limit may be reached: check now

    def _distribute(self) -> None:
        """Copy the outbox to every link's buffer and apply the output buffer limits (Redis
        checks them as data is queued for a replica, and closes offenders asynchronously)."""
        outbox = self._outbox
        if outbox:
            data = bytes(outbox)
            outbox.clear()
            for link in self.replicas:
                link.buffer += data
        self._rearm_limits()

    def _rearm_limits(self) -> None:
        """Check the output limits, and set how big the outbox may grow before they must be
        checked again (buffers only shrink meanwhile, as senders drain them)."""
        limits = self.config.client_output_buffer_limit["replica"]
        hard, soft, _ = limits
        floor = min((x for x in (hard, soft) if x), default=0)
        if not floor or not self.replicas:
            self._post_limit = _NO_LIMIT
            return
        self._check_output_limits()
        timing = any(link.soft_limit_since is not None for link in self.replicas)
        worst = max(len(link.buffer) for link in self.replicas)
        self._post_limit = 0 if timing else max(floor - worst, 0)

    def _attach(self, link: ReplicaLink) -> None:
        """A new replica: bytes already in the outbox are in its backlog copy or predate
        its snapshot, so they are handed to the others first."""
        self._distribute()
        self.replicas.append(link)
        self._rearm_limits()

    def _check_output_limits(self) -> None:
        hard, soft, seconds = self.config.client_output_buffer_limit["replica"]
        now = time.monotonic()
        for link in self.replicas:
            size = len(link.buffer)
            if hard and size > hard:
                self._drop(link, "hard output buffer limit reached")
            elif soft and size > soft:
                if link.soft_limit_since is None:
                    link.soft_limit_since = now
                elif now - link.soft_limit_since > seconds:
                    self._drop(link, "soft output buffer limit reached")
            else:
                link.soft_limit_since = None

    def _drop(self, link: ReplicaLink, why: str) -> None:
        if link.closed is None:
            logger.warning("Client %s scheduled to be closed ASAP for overcoming of output "
                           "buffer limits (%s).", link.addr, why)
            link.closed = why
            link.buffer.clear()
            _close_now(link)

    def create_backlog(self) -> None:
        if self.backlog is None:
            self.backlog = Backlog(self.backlog_size(), self._offset)
            # A new history: replicas of an old one must not continue into this one.
            self.replid = new_replid()
            self.replid2 = NO_REPLID
            self.second_replid_offset = -1

    def create_backlog_keeping_id(self) -> None:
        """A replica's backlog: same history as its master, for sub-replicas and promotion."""
        if self.backlog is None:
            self.backlog = Backlog(self.backlog_size(), self._offset)

    def restore_history(self, replid: str, offset: int) -> None:
        """After loading a dump that carried ``repl-id``/``repl-offset`` at startup: carry
        on that history, so replicas (or, on a replica, its master) can continue with a
        partial resync across the restart (Redis's loadDataFromDisk does the same)."""
        self.replid = replid
        self.replid2 = NO_REPLID
        self.second_replid_offset = -1
        self.backlog = None
        self._offset = offset
        self.create_backlog_keeping_id()

    def disconnect_replicas(self) -> None:
        """Sub-replicas of a replica whose history changed must sync again."""
        for link in list(self.replicas):
            link.closed = "master changed history"
            link.wakeup.set()

    # -- PSYNC -----------------------------------------------------------------------------
    def try_partial(self, replid: str, offset: int) -> bool:
        """masterTryPartialResynchronization's test: same history, bytes still here."""
        backlog = self.backlog
        if backlog is None:
            return False
        if replid != self.replid:
            if replid != self.replid2 or offset > self.second_replid_offset:
                return False
        return backlog.can_continue_from(offset)

    async def serve(self, connection: object, session: object, argv: list[bytes]) -> None:
        """Run a replica link on ``connection`` after its SYNC or PSYNC, until it ends."""
        link = ReplicaLink(session=session, addr=session.addr,
                           listening_port=getattr(session, "replica_listening_port", 0),
                           announced_ip=getattr(session, "replica_announced_ip", ""),
                           capabilities=frozenset(getattr(session, "replica_capa", ())))
        session.replica_link = link
        io = connection.io
        command = argv[0].lower()
        link.old_sync = command == b"sync"
        if command == b"psync":
            replid = argv[1].decode("utf-8", "replace")
            offset = int(argv[2]) if argv[2].lstrip(b"-").isdigit() else -1
            if replid != "?" and self.try_partial(replid, offset):
                self.sync_partial_ok += 1
                reply = (b"+CONTINUE %s\r\n" % self.replid.encode()
                         if "psync2" in link.capabilities else b"+CONTINUE\r\n")
                link.write(reply + self.backlog.read_from(offset))
                link.state = "online"
                link.ack_offset = offset - 1
                self._attach(link)
                logger.info("Partial resynchronization request from %s accepted. Sending %d "
                            "bytes of backlog starting from offset %d.", link.addr,
                            self.master_repl_offset + 1 - offset, offset)
                await self._run_link(connection, link)
                return
            if replid != "?":
                self.sync_partial_err += 1
                logger.info("Partial resynchronization not accepted: Replication ID mismatch "
                            "or offset out of range (Replica asked for '%s' at %d)",
                            replid, offset)
            else:
                logger.info("Full resync requested by replica %s", link.addr)
        self.sync_full += 1
        self.create_backlog()
        self._attach(link)
        snapshot = self._join_snapshot(link)
        try:
            await self._send_full_sync(io, link, snapshot)
        except BaseException:
            self._forget(link)
            raise
        await self._run_link(connection, link)

    def _join_snapshot(self, link: ReplicaLink) -> Snapshot:
        self._distribute()
        snapshot = self.snapshot
        if snapshot is not None and snapshot.rdb is None and snapshot.error is None:
            # Attach to the snapshot being taken: the writes held since it began are
            # exactly what this replica also needs after the payload.
            held = next((other.buffer for other in snapshot.links
                         if other.state == "wait_bgsave"), None)
            if held is not None or not snapshot.links:
                link.buffer[:] = held or b""
                snapshot.links.append(link)
                snapshot.joined.set()
                snapshot.joined = trio.Event()
                return snapshot
        snapshot = self.snapshot = Snapshot(offset=-1)
        snapshot.links.append(link)
        assert self.nursery is not None, "replication needs a running node"
        self.nursery.start_soon(self._take_snapshot, snapshot)
        return snapshot

    async def _take_snapshot(self, snapshot: Snapshot) -> None:
        config = self.config
        delay = config.repl_diskless_sync_delay if config.repl_diskless_sync else 0
        if delay:
            # Let other replicas that are starting up share this snapshot, until
            # repl-diskless-sync-max-replicas of them wait (0: no such number).
            enough = config.repl_diskless_sync_max_replicas
            with trio.move_on_after(delay):
                while not enough or len(snapshot.links) < enough:
                    await snapshot.joined.wait()
        engine = self.engine
        # The snapshot instant: from here on, writes are held in every waiting link.
        snapshot.offset = self.master_repl_offset
        self._distribute()  # what was written before this instant is not for these links
        for link in snapshot.links:
            link.buffer.clear()
        self.feed.selected_db = -1  # the first write after the payload says which db
        view = KeyspaceView(engine.keyspace)
        try:
            writer = RdbWriter(compression=self.config.rdbcompression,
                               checksum=self.config.rdbchecksum, config=self.config)
            sizes = {index: (keys, expires) for index, keys, expires in view.db_sizes()}
            chunks = [writer.begin(default_aux(repl_id=self.replid.encode(),
                                               repl_offset=snapshot.offset, repl_stream_db=0))]
            # Slices of about _SLICE seconds, not of a fixed number of keys: 2048 strings
            # take ~3 ms to serialize, 2048 hashes or sorted sets 20-30 ms.
            started = time.perf_counter()
            for db, items, expires in view.batches(_SNAPSHOT_BATCH):
                chunks.append(writer.write_batch(db, items, expires, sizes))
                if time.perf_counter() - started >= _SLICE:
                    await trio.lowlevel.checkpoint()
                    started = time.perf_counter()
            chunks.append(writer.finish())
            snapshot.rdb = chunks
        except Exception as err:  # never leave replicas waiting forever
            logger.warning("Background replication snapshot failed: %s", err)
            snapshot.error = str(err)
        finally:
            view.close()
            if self.snapshot is snapshot:
                self.snapshot = None
            snapshot.done.set()

    async def _send_full_sync(self, io: object, link: ReplicaLink, snapshot: Snapshot) -> None:
        # Until the snapshot exists the replica only gets keepalive newlines.
        while not snapshot.done.is_set():
            with trio.move_on_after(1):
                await snapshot.done.wait()
            if not snapshot.done.is_set():
                await io.send_all(b"\n")
        if snapshot.rdb is None:
            await io.send_all(b"-ERR BGSAVE failed, replication can't continue\r\n")
            raise LinkClosed(snapshot.error or "snapshot failed")
        header = b"" if link.old_sync else (
            b"+FULLRESYNC %s %d\r\n" % (self.replid.encode(), snapshot.offset))
        link.state = "send_bulk"
        mark = b""
        if "lz4" in link.capabilities and not link.old_sync:
            # Only kvrepl replicas announce lz4 (Redis ignores unknown capabilities).
            logger.info("Starting BGSAVE for SYNC with target: replicas sockets (lz4)")
            compressed = await _lz4_chunks(snapshot.rdb)
            self.last_payload_framing = "lz4"
            await io.send_all(header + b"$LZ4:%d\r\n" % sum(map(len, compressed)))
            for chunk in compressed:
                await io.send_all(chunk)
        elif self.config.repl_diskless_sync and "eof" in link.capabilities \
                and not link.old_sync:
            logger.info("Starting BGSAVE for SYNC with target: replicas sockets")
            mark = secrets.token_hex(20).encode()
            link.hold_until_ack = True
            self.last_payload_framing = "eof"
            await io.send_all(header + b"$EOF:" + mark + b"\r\n")
        else:
            logger.info("Starting BGSAVE for SYNC with target: disk")
            self.last_payload_framing = "len"
            await io.send_all(header + b"$%d\r\n" % sum(map(len, snapshot.rdb)))
        if "lz4" not in link.capabilities or link.old_sync:
            # Chunk by chunk: one big concatenation would stall every other client.
            for chunk in snapshot.rdb:
                await io.send_all(chunk)
            if mark:
                await io.send_all(mark)
        link.state = "online"
        link.ack_offset = snapshot.offset
        link.ack_time = time.monotonic()
        logger.info("Synchronization with replica %s succeeded", link.addr)

    async def _run_link(self, connection: object, link: ReplicaLink) -> None:
        """Stream to the replica and read its ACKs until one side goes away."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._sender, connection, link, nursery.cancel_scope)
                await connection.read_from_replica()
                nursery.cancel_scope.cancel()
        finally:
            self._forget(link)
            logger.info("Connection with replica %s lost.", link.addr)

    async def _sender(self, connection: object, link: ReplicaLink,
                      scope: trio.CancelScope) -> None:
        io = connection.io
        try:
            while True:
                self._distribute()
                if link.closed is not None:
                    break
                if link.buffer and not link.hold_until_ack:
                    data = link.buffer
                    link.buffer = bytearray()
                    await io.send_all(data)
                    continue
                link.wakeup = trio.Event()
                await link.wakeup.wait()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        scope.cancel()

    def _forget(self, link: ReplicaLink) -> None:
        if link in self.replicas:
            self.replicas.remove(link)
        link.session.replica_link = None

    # -- ACKs and cron ---------------------------------------------------------------------
    def ack(self, link: ReplicaLink, offset: int) -> None:
        if offset > link.ack_offset:
            link.ack_offset = offset
        link.ack_time = time.monotonic()
        if link.hold_until_ack and link.state == "online":
            link.hold_until_ack = False
            link.wakeup.set()
        self.acked.set()
        self.acked = trio.Event()

    def cron(self, tick: int) -> None:
        """Once a second: ping replicas every repl-ping-replica-period, drop timed-out ones."""
        if self.replicas and self.propagating and tick % self.config.repl_ping_replica_period == 0:
            self.feed_raw(PING)
        now = time.monotonic()
        for link in list(self.replicas):
            if (link.state == "online" and not link.old_sync
                    and now - link.ack_time > self.config.repl_timeout):
                logger.warning("Disconnecting timedout replica (streaming sync): %s", link.addr)
                link.closed = "timeout"
                _close_now(link)
        if self.backlog is not None and not self.replicas and self.propagating:
            ttl = self.config.repl_backlog_ttl
            idle = getattr(self, "_no_replicas_since", None)
            if idle is None:
                self._no_replicas_since = now
            elif ttl and now - idle > ttl:
                self._offset = self.backlog.master_repl_offset
                self.backlog = None
                self.replid = new_replid()
                self.replid2 = NO_REPLID
                self.second_replid_offset = -1
        else:
            self._no_replicas_since = None

    def good_replicas(self) -> int:
        """Online replicas whose last ACK is at most min-replicas-max-lag seconds old."""
        now = time.monotonic()
        lag = self.config.min_replicas_max_lag
        return sum(1 for link in self.replicas
                   if link.state == "online" and now - link.ack_time <= lag)

    def replicas_acked(self, offset: int) -> int:
        return sum(1 for link in self.replicas
                   if link.state == "online" and link.ack_offset >= offset)

    def info_replica_lines(self) -> list[str]:
        lines = []
        now = time.monotonic()
        for index, link in enumerate(self.replicas):
            lines.append(
                f"slave{index}:ip={link.ip},port={link.listening_port},state={link.state},"
                f"offset={link.ack_offset},lag={int(now - link.ack_time)}")
        return lines

    def backlog_lines(self) -> list[str]:
        backlog = self.backlog
        return [
            f"master_repl_offset:{self.master_repl_offset}",
            f"second_repl_offset:{self.second_replid_offset}",
            f"repl_backlog_active:{int(backlog is not None)}",
            f"repl_backlog_size:{self.config.repl_backlog_size}",
            f"repl_backlog_first_byte_offset:{backlog.first_byte_offset if backlog else 0}",
            f"repl_backlog_histlen:{backlog.histlen if backlog else 0}",
        ]

