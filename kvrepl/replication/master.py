"""The master side of replication: replica links, one shared snapshot, the stream.

Propagated writes become stream bytes once (:class:`StreamFeed`), go to the backlog and to
every replica's output buffer. A full sync is the node's one snapshot job
(:class:`~kvrepl.snapshot_producer.SnapshotJob`, started by
:func:`kvrepl.persistence.start_job`: the same producer as BGSAVE), scheduled as Redis 7.0
does (replication.c syncCommand, shouldStartChildReplication): with ``repl-diskless-sync``
and every waiting replica announcing ``capa eof`` the RDB streams straight to their sockets
(``$EOF:<mark>``, or an lz4 frame between kvrepl nodes), after ``repl-diskless-sync-delay``
seconds or as soon as ``repl-diskless-sync-max-replicas`` wait, so that they share it;
otherwise it is a BGSAVE of the dump file, which each replica then gets as ``$<len>`` read
from the file in chunks. Either way no payload is ever held whole in memory: the job's
buffer is bounded and the slowest replica paces a diskless transfer (one that accepts no
byte for ``repl-timeout`` seconds is dropped, as Redis drops it). Writes made from the
snapshot instant on are held in each replica's output buffer (``client-output-buffer-limit
replica`` applies) and sent after the payload.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import time
from dataclasses import dataclass, field
from typing import BinaryIO

import lz4.frame
import trio

from kvrepl import persistence
from kvrepl.commands.core import Engine
from kvrepl.commands.obuf import (
    REPL_BLOCK_HEADER,
    REPL_NODE,
    STATIC_BUFFER,
    ReplicationBlocks,
    jemalloc_size,
    limit_reached,
)
from kvrepl.config import persistence_disabled
from kvrepl.log import logger
from kvrepl.rdb import default_aux
from kvrepl.replication.backlog import Backlog
from kvrepl.replication.stream import StreamFeed, encode_command, encode_commands, encode_select
from kvrepl.snapshot_producer import DONE, FileConsumer, SnapshotFailed, SnapshotJob, SnapshotReader

NO_REPLID = "0" * 40
_NO_LIMIT = 1 << 62
_BACKLOG_MIN_SIZE = 16 * 1024  # CONFIG_REPL_BACKLOG_MIN_SIZE
# A replication backlog's blocks index (a rax) with no block indexed yet: its head node.
_EMPTY_INDEX = 4
PING = encode_command([b"ping"])
GETACK = encode_command([b"REPLCONF", b"GETACK", b"*"])
#: The replica capabilities redis-server 7.0 knows (it ignores others); the ones that decide
#: whether a replica may share a dump being written for another (syncCommand's CASE 1).
REDIS_CAPABILITIES = frozenset(("eof", "psync2"))

#: Payload framing for replicas that announce ``capa lz4stream`` (kvrepl ones): one lz4
#: frame, which ends itself (its end mark), so no length is needed up front.
LZ4_STREAM_HEADER = b"$LZ4STREAM\r\n"
#: Bytes read from the dump at a time when a replica gets it as ``$<len>``.
FILE_CHUNK = 256 * 1024


def _check_open(link: ReplicaLink) -> None:
    """A link the master decided to close (output buffer limit) ends its full sync too."""
    if link.closed is not None:
        raise LinkClosed(link.closed)


def omem_bound(held: int, block: int) -> int:
    """The most ``omem`` a replica with ``held`` stream bytes the kernel has not taken may
    show, blocks of ``block`` bytes at most: the blocks holding them (of 16 KB's class at
    least, each with its header and list node), the sent part of the first, the tail's
    room."""
    return held + held * REPL_NODE // ReplicationBlocks._SMALL + 2 * (block + REPL_NODE) \
        + REPL_NODE


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
    soft_limit_since: int | None = None  # kvrepl.commands.obuf.limit_reached
    closed: str | None = None  # why the link must go
    # After an $EOF: payload the stream waits for the replica's first ACK, as in Redis, so
    # that no stream byte is glued to the end mark.
    hold_until_ack: bool = False
    # A full sync: waiting for a snapshot (wait_bgsave_start: no stream bytes are held for
    # it yet), then the snapshot it got, from its instant on.
    before_snapshot: bool = False
    waiting_since: float = 0.0
    start_now: bool = False  # Redis starts its BGSAVE at once, with no diskless delay
    assigned: trio.Event = field(default_factory=trio.Event)
    job: SnapshotJob | None = None
    reader: SnapshotReader | None = None  # diskless: the RDB as it is produced
    sync_offset: int = -1
    job_done: trio.Event = field(default_factory=trio.Event)  # disk: the dump is ready
    rdb_file: BinaryIO | None = None  # disk: the dump, opened when it was complete
    sync_error: str | None = None
    # Bytes at the head of ``buffer`` that are no replication output: the +CONTINUE line,
    # which Redis writes outside the replica's output buffer (INFO does not count it).
    uncounted: int = 0
    io: object | None = None  # its connection's stream: what a send holds is counted too
    # The offset from which stream bytes are fed to it (-1: none yet): a full sync's from
    # its snapshot's instant on; Redis's replica references the replication buffer from
    # the first byte fed to it then (kvrepl.commands.obuf.ReplicationBlocks).
    stream_from: int = -1

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
        self.waiting: list[ReplicaLink] = []  # full syncs waiting for a snapshot to start
        self.job: SnapshotJob | None = None  # the snapshot of the replicas being synced
        self.job_links: list[ReplicaLink] = []
        self.job_to_disk = False
        # a disk-based full sync wrote the dump (rdb-del-sync-files: RDBGeneratedByReplication)
        self.rdb_generated_by_replication = False
        self._kick = trio.Event()  # wakes the scheduler: a replica came or left, a job ended
        self._scheduling = False
        self.sync_full = 0
        self.sync_partial_ok = 0
        self.sync_partial_err = 0
        self.last_payload_framing = ""  # "lz4", "eof" or "len": how the last payload went
        self.nursery: trio.Nursery | None = None
        self._propagating = True  # False on a replica: its stream is its master's
        self.getack_bytes = GETACK
        self.acked = trio.Event()  # set (and replaced) on every replica ACK, for WAIT
        self._outbox = bytearray()  # stream bytes not yet copied to the links' buffers
        # Redis's replication buffer, modelled from the backlog's bytes when looked at.
        self._blocks: ReplicationBlocks | None = None
        self._post_limit = _NO_LIMIT  # outbox size that calls for an output limit check
        self.acks_wanted = False  # a GETACK held back by a client pause
        engine.replication = self
        self.config.listeners.append(self._config_changed)
        engine.pause.listeners.append(self._send_held_getack)

    def request_acks(self) -> None:
        """sendGetackToReplicas for WAIT: while clients are paused it waits for the pause
        to end, as Redis's beforeSleep holds it (the GETACK would move the offsets that a
        pause keeps still, which FAILOVER relies on)."""
        if self.engine.pause.current():
            self.acks_wanted = True
        else:
            self.feed_raw(self.getack_bytes)

    def _send_held_getack(self) -> None:
        if self.acks_wanted and not self.engine.pause.current():
            self.acks_wanted = False
            if self.propagating:  # "if we are still the master"
                self.feed_raw(self.getack_bytes)

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

    def replica_buffers(self) -> int:
        """INFO's mem_clients_slaves and MEMORY STATS' clients.slaves: what the replication
        buffer holds beyond repl-backlog-size while there are replicas (getMemoryOverheadData)."""
        return self.buffer_memory()[2]

    def buffer_memory(self) -> tuple[int, int, int]:
        """The replication buffer's memory (INFO's mem_total_replication_buffers), the
        backlog's share (mem_replication_backlog: with its empty blocks index) and the
        replicas' share (mem_clients_slaves), as Redis 7.0 splits them."""
        model = self.replication_blocks()
        if model is None:
            return 0, 0, 0
        total = model.memory
        size = self.backlog_size()
        if self.replicas and total > size:
            return total, size + _EMPTY_INDEX, total - size
        return total, total + _EMPTY_INDEX, 0

    def replication_blocks(self, trim: bool = True) -> ReplicationBlocks | None:
        """The replication buffer Redis would hold now (None: no backlog), brought up to
        date from the backlog's bytes: writes pay nothing for it, the model reads the
        backlog when looked at (CLIENT LIST, INFO, the clients' cron) and before the
        backlog drops bytes it has not read (Backlog.before_trim, once a quarter of the
        backlog at most)."""
        model, backlog = self._blocks, self._backlog
        if model is None or backlog is None:
            return None
        end = backlog.master_repl_offset
        size = self.backlog_size()
        if model.end < end:
            data = backlog.held_from(model.end + 1)
            if data is None:  # not seen (a new history): the model starts from here
                start = backlog.first_byte_offset
                model = self._blocks = ReplicationBlocks(start, size)
                data = backlog.held_from(start) or b""
            model.limit = max(size // 16, STATIC_BUFFER)
            model.add_all((data,))
        if trim:
            referenced = [self._next_byte(link) for link in self.replicas
                          if self._referencing(link)]
            model.trim(size, min(referenced, default=end + 1))
        return model

    def _read_backlog(self) -> None:
        # Within Backlog.append: its last bytes are not in the replicas' outbox yet, so
        # their next bytes (_next_byte) would be too far on to trim by.
        self.replication_blocks(trim=False)

    def _referencing(self, link: ReplicaLink) -> bool:
        """Does ``link`` reference the replication buffer (a byte was fed to it)?"""
        return (link.stream_from >= 0 and self.master_repl_offset >= link.stream_from
                and not link.before_snapshot and link.closed is None)

    def _next_byte(self, link: ReplicaLink) -> int:
        """The offset of the next stream byte the kernel has not taken for ``link``."""
        return self.master_repl_offset + 1 - max(self.held_for(link) - link.uncounted, 0)

    def replica_output(self, link: ReplicaLink) -> tuple[int, int]:
        """CLIENT LIST's ``oll`` and ``omem`` for ``link``: the replication buffer's
        blocks from the one holding its next byte to the tail (Redis 7.0's shared
        buffer), none before a byte was fed to it."""
        model = self.replication_blocks()
        if model is None or not self._referencing(link):
            return 0, 0
        return model.usage(self._next_byte(link))

    def held_for(self, link: ReplicaLink) -> int:
        """The stream bytes held for ``link`` that the kernel has not taken: its output
        buffer, the outbox not yet copied to it, and what its send still holds."""
        held = len(link.buffer) + getattr(link.io, "unsent", 0)
        if not link.before_snapshot and link in self.replicas:
            held += len(self._outbox)
        return held

    # -- the stream ------------------------------------------------------------------------
    @property
    def backlog(self) -> Backlog | None:
        return self._backlog

    @backlog.setter
    def backlog(self, backlog: Backlog | None) -> None:
        self._backlog = backlog
        self._blocks = None
        if backlog is not None:
            self._blocks = ReplicationBlocks(backlog.master_repl_offset + 1, backlog.size)
            backlog.before_trim = self._read_backlog
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
                if not link.before_snapshot:  # Redis feeds no WAIT_BGSAVE_START replica
                    link.buffer += data
        self._rearm_limits()

    def _hard_limit(self) -> int:
        """The replica class's hard limit, raised to repl-backlog-size when below it
        (checkClientOutputBufferLimits: the replicas share the backlog's memory)."""
        hard = self.config.client_output_buffer_limit["replica"][0]
        return max(hard, self.backlog_size()) if hard else 0

    def _rearm_limits(self) -> None:
        """Check the output limits, and set how big the outbox may grow before they must be
        checked again: until a replica's ``omem`` may reach a limit, by a bound on it that
        needs no model (:func:`omem_bound`); buffers only shrink meanwhile, as senders
        drain them."""
        soft = self.config.client_output_buffer_limit["replica"][1]
        floor = min((x for x in (self._hard_limit(), soft) if x), default=0)
        if not floor or not self.replicas:
            self._post_limit = _NO_LIMIT
            return
        worst = max(self.held_for(link) for link in self.replicas)
        block = self._largest_block()
        if omem_bound(worst, block) >= floor:
            self._check_output_limits()
        if any(link.soft_limit_since is not None for link in self.replicas):
            self._post_limit = 0  # its time runs: every write checks it
            return
        # the outbox growth that takes the worst replica's bound to the floor
        room = floor - omem_bound(worst, block)
        self._post_limit = max(room * ReplicationBlocks._SMALL
                               // (ReplicationBlocks._SMALL + REPL_NODE) - 1, 0)

    def _largest_block(self) -> int:
        """The largest block the replication buffer may hold (a piece of ``repl-backlog-size
        / 16`` or more)."""
        limit = max(self.backlog_size() // 16, STATIC_BUFFER)
        return max(jemalloc_size(limit + REPL_BLOCK_HEADER) - REPL_BLOCK_HEADER,
                   ReplicationBlocks._SMALL)

    def _attach(self, link: ReplicaLink) -> None:
        """A new replica: bytes already in the outbox are in its backlog copy or predate
        its snapshot, so they are handed to the others first."""
        self._distribute()
        self.replicas.append(link)
        self._rearm_limits()

    def _check_output_limits(self, scheduled: bool = True) -> None:
        """checkClientOutputBufferLimits of every replica, on the figure CLIENT LIST shows
        (its ``omem``: the replication buffer's blocks from the one holding its next byte
        the kernel has not taken, kvrepl.commands.obuf.ReplicationBlocks): the hard limit
        reached, or the soft one for longer than its seconds. Redis checks as a write adds a block
        (feedReplicationBuffer) and in clientsCron (``scheduled`` False)."""
        _hard, soft, seconds = self.config.client_output_buffer_limit["replica"]
        hard = self._hard_limit()
        model = self.replication_blocks()
        for link in list(self.replicas):
            used = 0
            if model is not None and self._referencing(link):
                used = model.usage(self._next_byte(link))[1]
            reached = limit_reached(link, used, hard, soft, seconds)
            if reached is not None:
                self._drop(link, f"{reached} output buffer limit reached", scheduled)

    def _drop(self, link: ReplicaLink, why: str, scheduled: bool = True) -> None:
        if link.closed is None:
            how = "scheduled to be closed ASAP" if scheduled else "closed"
            logger.warning("Client %s %s for overcoming of output buffer limits (%s).",
                           link.addr, how, why)
            link.closed = why
            link.buffer.clear()
            _close_now(link)
            # Redis frees it before it reads another command (freeClientsInAsyncFreeQueue
            # in beforeSleep): CLIENT LIST no longer lists it.
            self.engine.close_session(link.session)

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
        io = link.io = connection.io
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
                link.uncounted = len(reply)
                # Redis references the buffer at once (addReplyReplicationBacklog), the
                # tail when there is nothing to send.
                link.stream_from = min(offset, self.master_repl_offset)
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
        try:
            self._request_snapshot(link)
            await self._full_sync(io, link)
        except LinkClosed as err:
            self._forget(link)
            logger.warning("Replica %s: full sync not completed: %s", link.addr, err)
            return
        except BaseException:
            self._forget(link)
            raise
        await self._run_link(connection, link)

    # -- full sync: scheduling the snapshot ---------------------------------------------------
    def _request_snapshot(self, link: ReplicaLink) -> None:
        """syncCommand's three cases: attach to the disk snapshot that other replicas are
        waiting for, or wait for the next snapshot (started now, or after the diskless
        delay: see :meth:`_start_if_due`)."""
        job = self.job
        if job is not None and self.job_to_disk and job.status != DONE:
            # CASE 1: the dump being written serves this replica too, with the writes held
            # for a replica already waiting for it (copyReplicaOutputBuffer).
            # Redis compares the capabilities it knows (eof, psync2); kvrepl's own
            # lz4stream only frames a diskless payload, so it never keeps a redis-server
            # replica off a dump that a kvrepl replica asked for first.
            wanted = link.capabilities & REDIS_CAPABILITIES
            other = next((o for o in self.job_links if o.closed is None
                          and wanted >= o.capabilities & REDIS_CAPABILITIES), None)
            if other is not None:
                self._distribute()
                link.buffer[:] = other.buffer
                link.job, link.sync_offset = job, other.sync_offset
                link.stream_from = other.stream_from  # copyReplicaOutputBuffer: its reference
                self.job_links.append(link)
                link.assigned.set()
                logger.info("Waiting for end of BGSAVE for SYNC")
                return
        # CASE 2 (a diskless snapshot is running: wait for the next) and CASE 3 (none).
        eof = "eof" in link.capabilities and not link.old_sync
        config = self.config
        link.before_snapshot = True
        link.waiting_since = time.monotonic()
        link.start_now = not (config.repl_diskless_sync and eof
                              and config.repl_diskless_sync_delay)
        self.waiting.append(link)
        if job is not None:
            logger.info("Current BGSAVE has socket target. Waiting for next BGSAVE for SYNC")
        elif not link.start_now:
            logger.info("Delay next BGSAVE for diskless SYNC")
        self._wake_scheduler()

    def _wake_scheduler(self) -> None:
        if not self._scheduling:
            assert self.nursery is not None, "replication needs a running node"
            self._scheduling = True
            self.nursery.start_soon(self._scheduler)
        self._kick.set()

    async def _scheduler(self) -> None:
        """replicationCron's replicationStartPendingFork, run when something changed and
        when a delay ends (not only once a second)."""
        try:
            while True:
                self._kick = trio.Event()
                wait = self._start_if_due()
                with trio.move_on_after(wait):
                    await self._kick.wait()
        finally:
            self._scheduling = False

    def _start_if_due(self) -> float:
        """Start a snapshot for the waiting replicas when shouldStartChildReplication says
        so; the seconds until it must be asked again (inf: only when something changes)."""
        waiting = self.waiting
        if not waiting:
            return math.inf
        if self.job is not None or persistence.attach(self.engine).bgsave is not None:
            # hasActiveChildProcess: ours ends with a kick; a BGSAVE's end is looked for
            # once a second, as replicationCron does.
            return math.inf if self.job is not None else 1.0
        config = self.config
        longest = time.monotonic() - min(link.waiting_since for link in waiting)
        wanted = config.repl_diskless_sync_max_replicas
        if (not config.repl_diskless_sync or any(link.start_now for link in waiting)
                or (wanted > 0 and len(waiting) >= wanted)
                or longest >= config.repl_diskless_sync_delay):
            self._start_snapshot()
            return math.inf
        return config.repl_diskless_sync_delay - longest

    def _start_snapshot(self) -> None:
        """startBgsaveForReplication for every waiting replica: to their sockets when
        diskless sync is on and all of them can take an $EOF: payload, else to disk."""
        links, self.waiting = self.waiting, []
        to_disk = not (self.config.repl_diskless_sync and all(
            "eof" in link.capabilities and not link.old_sync for link in links))
        logger.info("Starting BGSAVE for SYNC with target: %s",
                    "disk" if to_disk else "replicas sockets")

        def setup(job: SnapshotJob) -> None:
            for link in links:
                link.job = job
                if not to_disk:
                    link.reader = job.open_reader()
            job.on_begin.append(instant)

        def instant(job: SnapshotJob) -> None:
            # From here on the writes are held for these replicas; the first one after the
            # payload says which db it is for (slaveseldb = -1).
            offset = self.master_repl_offset
            self._distribute()
            for link in links:
                link.before_snapshot = False
                link.buffer.clear()
                link.sync_offset = offset
                link.stream_from = offset + 1
                link.assigned.set()
            self.feed.selected_db = -1

        aux = lambda: default_aux(repl_id=self.replid.encode(),  # noqa: E731
                                  repl_offset=self.master_repl_offset, repl_stream_db=0)
        state = persistence.attach(self.engine)
        if state.nursery is None:  # the node gave persistence no nursery: jobs run in ours
            state.nursery = self.nursery
        job = persistence.start_job(self.engine, to_file=to_disk, aux=aux, setup=setup)
        if job is None:
            logger.warning("BGSAVE for replication failed")
            for link in links:
                if link.reader is not None:
                    link.reader.close()
                link.sync_error = "BGSAVE failed"
                link.assigned.set()
            return
        self.job, self.job_links, self.job_to_disk = job, links, to_disk
        if to_disk and self.config.rdb_del_sync_files:
            # (not set with the option off: CONFIG SET turning it on later must not remove
            # a dump that no replication made)
            self.rdb_generated_by_replication = True
        job.on_done.append(lambda job: self._snapshot_done(job, links))

    def _snapshot_done(self, job: SnapshotJob, links: list[ReplicaLink]) -> None:
        """updateSlavesWaitingBgsave: disk replicas get the dump (opened now, so a later
        save renaming over it changes nothing for them), or the failure. ``links`` is the
        job's list, with the replicas that attached to it since."""
        if self.job is job:
            self.job, self.job_links = None, []
        saved = job.status == DONE and any(
            isinstance(c, FileConsumer) and c.committed for c in job.consumers)
        for link in links:
            if link.reader is None and link.closed is None:
                if saved:
                    try:
                        link.rdb_file = open(persistence.rdb_path(self.config), "rb")  # noqa: SIM115
                    except OSError as err:
                        link.sync_error = f"can't open the dump: {err}"
                else:
                    link.sync_error = f"BGSAVE child returned an error ({job.status})"
            link.job_done.set()
        self._kick.set()

    # -- full sync: sending the payload ---------------------------------------------------------
    async def _full_sync(self, io: object, link: ReplicaLink) -> None:
        # Until its snapshot starts the replica only gets keepalive newlines.
        await self._keepalive(io, link, link.assigned)
        if link.sync_error is not None:
            await io.send_all(b"-ERR BGSAVE failed, replication can't continue\r\n")
            raise LinkClosed(link.sync_error)
        header = b"" if link.old_sync else (
            b"+FULLRESYNC %s %d\r\n" % (self.replid.encode(), link.sync_offset))
        if link.reader is not None:
            await self._stream_payload(io, link, header)
        else:
            await self._send_dump(io, link, header)
        link.state = "online"
        link.ack_offset = link.sync_offset
        link.ack_time = time.monotonic()
        logger.info("Synchronization with replica %s succeeded", link.addr)

    @staticmethod
    async def _keepalive(io: object, link: ReplicaLink, event: trio.Event) -> None:
        """A newline every second until ``event`` (the replica's keepalive while waiting)."""
        while not event.is_set():
            with trio.move_on_after(1):
                await event.wait()
            _check_open(link)
            if not event.is_set():
                await io.send_all(b"\n")

    async def _send_timed(self, io: object, link: ReplicaLink, data: bytes) -> None:
        """A payload piece; a replica that takes none of it for repl-timeout seconds is
        dropped, so that it does not hold the snapshot (and every other replica) back."""
        _check_open(link)
        with trio.move_on_after(self.config.repl_timeout) as scope:
            await io.send_all(data)
            self.engine.stats.net_repl_output_bytes += len(data)
        if scope.cancelled_caught:
            logger.warning("Disconnecting timedout replica (full sync): %s", link.addr)
            raise LinkClosed("timeout during the full sync")

    async def _stream_payload(self, io: object, link: ReplicaLink, header: bytes) -> None:
        """Diskless: the RDB as the job produces it, framed without a length."""
        reader = link.reader
        stats = self.engine.stats
        assert reader is not None  # INFO keeps saying wait_bgsave meanwhile, as Redis's does
        try:
            if "lz4stream" in link.capabilities and not link.old_sync:
                # Only kvrepl replicas announce lz4stream (Redis ignores unknown capas).
                self.last_payload_framing = "lz4"
                compressor = lz4.frame.LZ4FrameCompressor()
                start = LZ4_STREAM_HEADER + compressor.begin()
                await io.send_all(header + start)
                stats.net_repl_output_bytes += len(start)  # the +FULLRESYNC line is not
                async for chunk in reader:
                    packed = compressor.compress(chunk)
                    if packed:
                        await self._send_timed(io, link, packed)
                end = compressor.flush()
                await io.send_all(end)
                stats.net_repl_output_bytes += len(end)
            else:
                self.last_payload_framing = "eof"
                mark = secrets.token_hex(20).encode()
                start = b"$EOF:" + mark + b"\r\n"
                await io.send_all(header + start)
                stats.net_repl_output_bytes += len(start)  # the +FULLRESYNC line is not
                async for chunk in reader:
                    await self._send_timed(io, link, chunk)
                await io.send_all(mark)
                stats.net_repl_output_bytes += len(mark)
        except SnapshotFailed as err:
            raise LinkClosed(f"the snapshot failed: {err}") from None
        finally:
            reader.close()
        link.hold_until_ack = True

    async def _send_dump(self, io: object, link: ReplicaLink, header: bytes) -> None:
        """Disk: ``$<len>`` and the dump, read from the file a chunk at a time."""
        if header:
            await io.send_all(header)
        await self._keepalive(io, link, link.job_done)
        source = link.rdb_file
        if source is None:
            await io.send_all(b"-ERR BGSAVE failed, replication can't continue\r\n")
            raise LinkClosed(link.sync_error or "no dump")
        link.state = "send_bulk"
        self.last_payload_framing = "len"
        with source:
            left = os.fstat(source.fileno()).st_size
            preamble = b"$%d\r\n" % left
            await io.send_all(preamble)
            self.engine.stats.net_repl_output_bytes += len(preamble)
            while left:
                data = await trio.to_thread.run_sync(source.read, min(left, FILE_CHUNK))
                if not data:
                    raise LinkClosed("the dump got shorter while it was sent")
                left -= len(data)
                await self._send_timed(io, link, data)

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
        stats = self.engine.stats
        try:
            while True:
                self._distribute()
                if link.closed is not None:
                    break
                if link.buffer and not link.hold_until_ack:
                    data = link.buffer
                    link.buffer = bytearray()
                    aof = self.engine.aof
                    if aof is not None and aof.buf:
                        aof.flush()  # beforeSleep writes the AOF before replicas' output
                    # counted before the await, as a client's reply is (Connection.send)
                    stats.net_repl_output_bytes += len(data) - link.uncounted
                    stats.writes_processed += 1
                    link.uncounted = 0
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
        if link in self.waiting:
            self.waiting.remove(link)
            self._kick.set()  # one fewer may change what repl-diskless-sync-max-replicas says
        if link in self.job_links:
            self.job_links.remove(link)
        if link.reader is not None:
            link.reader.close()  # the snapshot no longer waits for this replica
        if link.rdb_file is not None:
            link.rdb_file.close()
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

    def remove_rdb_used_to_sync_replicas(self) -> bool:
        """removeRDBUsedToSyncReplicas (rdb-del-sync-files): with no persistence, the dump a
        disk-based full sync wrote goes once no replica waits for a snapshot or is still
        being sent one; returns whether it went."""
        if not self.config.rdb_del_sync_files:
            self.rdb_generated_by_replication = False
            return False
        if not (self.rdb_generated_by_replication and persistence_disabled(self.config)):
            return False
        if self.waiting or any(link.state != "online" for link in self.replicas):
            return False
        path = persistence.rdb_path(self.config)
        if not os.path.lexists(path):
            return False
        self.rdb_generated_by_replication = False
        logger.info("Removing the RDB file used to feed replicas in a persistence-less "
                    "instance")
        with contextlib.suppress(OSError):
            os.unlink(path)
        return True

    def cron(self, tick: int) -> None:
        """Once a second: ping replicas every repl-ping-replica-period, drop timed-out ones
        and those over their output limits (clientsCron: a soft limit's time runs out
        without a write), remove a dump made for replicas that no longer need it."""
        if any(link.soft_limit_since is not None for link in self.replicas):
            self._check_output_limits(scheduled=False)
        failover = getattr(self.engine.node, "failover", None)
        self._send_held_getack()  # a pause that ended with its time
        if self.replicas and self.propagating and tick % self.config.repl_ping_replica_period == 0 \
                and not (failover is not None and failover.pings_held):
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
        self.remove_rdb_used_to_sync_replicas()

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

