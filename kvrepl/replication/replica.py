"""The replica side: follow a master over any trio stream, reconnect, resync partially.

The protocol is :class:`~kvrepl.replication.handshake.ReplicaProtocol` (sans-IO); this
module only moves bytes and applies what it decodes. The payload is loaded into fresh
dictionaries while it arrives and swapped in only once it is whole and its checksum is good,
so the old dataset keeps serving reads until then and a cut transfer loses nothing.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import trio

from kvrepl.commands.core import Engine
from kvrepl.log import logger
from kvrepl.rdb import RdbError, StagedLoad
from kvrepl.replication.handshake import (
    Continue,
    FullResync,
    Log,
    PayloadData,
    PayloadEnd,
    PayloadStart,
    ReplicaProtocol,
    ReplicationProtocolError,
    Send,
    StreamCommand,
    TryLater,
)
from kvrepl.replication.master import NO_REPLID, MasterReplication, new_replid
from kvrepl.replication.stream import encode_command

Connect = Callable[[], Awaitable[trio.abc.Stream]]

# ROLE's words for the link states.
CONNECT, CONNECTING, HANDSHAKE, SYNC, CONNECTED = (
    "connect", "connecting", "handshake", "sync", "connected")


class ReplicaOf:
    """Keeps ``engine`` a replica of one master until cancelled.

    ``connect`` opens a new stream to the master (TCP, or an in-process stream pair);
    ``describe`` is the ``(host, port)`` INFO and ROLE show.
    """

    def __init__(self, engine: Engine, replication: MasterReplication, connect: Connect,
                 describe: tuple[str, int], listening_port: int = 0) -> None:
        self.engine = engine
        self.replication = replication
        self.config = engine.config
        self.connect = connect
        self.host, self.port = describe
        self.listening_port = listening_port
        self.state = CONNECT
        self.link_up = False
        self.ever_connected = False
        self.link_down_since = time.monotonic()
        self.last_io = 0.0
        self.sync_in_progress = False
        self.transfer_size = -1
        self.transfer_read = 0
        self.reploff = replication.master_repl_offset  # processed stream bytes
        self.read_reploff = self.reploff
        self.has_history = replication.backlog is not None
        self.synced = trio.Event()
        self._progress = trio.Event()  # set when reploff reaches what someone waits for
        self._wanted: list[int] = []  # offsets wait_offset() callers wait for
        self._send_lock = trio.Lock()  # the ACK task and the stream handler both send
        self.session = engine.new_session()
        self.session.is_master = True
        self.session.kind = "master"
        self.source: object | None = None  # the master Node when it is in this program
        self._staged: StagedLoad | None = None
        self._new_replid = ""
        self._initial_offset = -1

    # -- lifetime --------------------------------------------------------------------------
    async def run(self) -> None:
        """Connect, sync, stream; on any failure wait a second and start again."""
        engine = self.engine
        engine.read_only = self.config.replica_read_only
        engine.keyspace.expire_keys = False
        self.replication.propagating = False
        try:
            while True:
                try:
                    await self._follow_once()
                except (TryLater, ReplicationProtocolError, RdbError) as err:
                    logger.warning("MASTER <-> REPLICA sync: %s", err)
                except trio.TooSlowError:
                    logger.warning("MASTER timeout: no data nor PING received...")
                except Exception:  # a bug must not end replication for good: log, retry
                    logger.exception("MASTER <-> REPLICA sync: unexpected error")
                except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as err:
                    logger.warning("Error condition on socket for SYNC: %s", err)
                self._link_lost()
                await trio.sleep(1)
        finally:
            self._link_lost()
            engine.close_session(self.session)

    async def wait_offset(self, offset: int) -> None:
        """Until this replica has processed the stream up to ``offset``."""
        self._wanted.append(offset)
        try:
            while self.reploff < offset:
                await self._progress.wait()
        finally:
            self._wanted.remove(offset)

    def _moved(self) -> None:
        if self._wanted and self.reploff >= min(self._wanted):
            self._progress.set()
            self._progress = trio.Event()

    async def _send(self, stream: trio.abc.Stream, data: bytes) -> None:
        async with self._send_lock:
            await stream.send_all(data)

    def _link_lost(self) -> None:
        self.engine.masterdown = True
        if self.link_up:
            logger.info("Connection with master lost.")
            self.link_down_since = time.monotonic()
        self.link_up = False
        self.state = CONNECT
        self.sync_in_progress = False
        self.synced = trio.Event() if self.synced.is_set() else self.synced

    async def _follow_once(self) -> None:
        while self.engine.loading:  # the dump loaded at startup says where we were
            await trio.sleep(0.01)
        if not self.ever_connected:
            self.reploff = self.read_reploff = self.replication.master_repl_offset
            self.has_history = self.replication.backlog is not None
        self.state = CONNECTING
        logger.info("Connecting to MASTER %s:%s", self.host, self.port)
        stream = await self.connect()
        async with stream:
            logger.info("MASTER <-> REPLICA sync started")
            self.state = HANDSHAKE
            replication = self.replication
            protocol = ReplicaProtocol(
                listening_port=self.config.replica_announce_port or self.listening_port,
                replid=replication.replid if self.has_history else None,
                offset=self.reploff + 1,
                masterauth=self.config.masterauth, masteruser=self.config.masteruser,
                announce_ip=self.config.replica_announce_ip,
                capabilities=("eof", "psync2", "lz4"))
            failure: Exception | None = None
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._ack_every_second, stream)
                try:
                    await self._handle(protocol.start(), stream)
                    while True:
                        with trio.fail_after(self.config.repl_timeout):
                            data = await stream.receive_some(64 * 1024)
                        if not data:
                            raise ReplicationProtocolError("master closed the connection")
                        self.last_io = time.monotonic()
                        await self._handle(protocol.receive_data(data), stream)
                except Exception as err:  # re-raised below, outside the nursery's group
                    failure = err
                nursery.cancel_scope.cancel()
            if failure is not None:
                raise failure

    async def _ack_every_second(self, stream: trio.abc.Stream) -> None:
        while True:
            await trio.sleep(1)
            if self.link_up:
                await self._send_ack(stream)

    async def _send_ack(self, stream: trio.abc.Stream) -> None:
        await self._send(stream, encode_command([b"REPLCONF", b"ACK", b"%d" % self.reploff]))

    # -- events ----------------------------------------------------------------------------
    async def _handle(self, events: list[object], stream: trio.abc.Stream) -> None:
        for event in events:
            kind = type(event)
            if kind is StreamCommand:
                await self._apply(event, stream)
            elif kind is PayloadData:
                self._staged.feed(event.data)
                self.transfer_read += len(event.data)
                await trio.lowlevel.checkpoint()
            elif kind is Send:
                await self._send(stream, event.data)
            elif kind is FullResync:
                self._full_resync(event)
            elif kind is PayloadStart:
                self.state = SYNC
                self.sync_in_progress = True
                self.transfer_size = -1 if event.length is None else event.length
                self.transfer_read = 0
                logger.info("MASTER <-> REPLICA sync: receiving %s bytes from master to disk",
                            "streamed" if event.length is None else event.length)
                self._staged = StagedLoad(len(self.engine.keyspace.dbs), drop_expired=False,
                                          now_ms=self.engine.keyspace.now_ms())
            elif kind is PayloadEnd:
                self._finish_load()
                await self._send_ack(stream)  # a Redis master waits for it after $EOF:
            elif kind is Continue:
                self._continue(event)
            elif kind is Log:
                logger.info("MASTER <-> REPLICA sync: %s", event.message)

    def _full_resync(self, event: FullResync) -> None:
        self._new_replid = event.replid
        self._initial_offset = event.offset

    def _finish_load(self) -> None:
        result = self._staged.finish()
        engine = self.engine
        logger.info("MASTER <-> REPLICA sync: Flushing old data")
        for db in engine.keyspace.dbs:
            engine.watches.touch_all_in_db(db, None)
        self._staged.apply(engine.keyspace)
        self._staged = None
        logger.info("MASTER <-> REPLICA sync: Loading DB in memory: %d keys",
                    result.keys_loaded)
        replication = self.replication
        # Adopt the master's history: its id and offset, no second id.
        replication.replid = self._new_replid or new_replid()
        replication.replid2 = NO_REPLID
        replication.second_replid_offset = -1
        offset = max(self._initial_offset, 0)
        replication.backlog = None
        replication._offset = offset
        replication.create_backlog_keeping_id()
        self.reploff = self.read_reploff = offset
        self.has_history = self._initial_offset >= 0
        self.session.select(0)
        self.session.multi = None
        # Sub-replicas follow the old history: they must resync.
        replication.disconnect_replicas()
        self._link_up()
        logger.info("MASTER <-> REPLICA sync: Finished with success")

    def _continue(self, event: Continue) -> None:
        replication = self.replication
        if event.replid and event.replid != replication.replid:
            replication.replid2 = replication.replid
            replication.second_replid_offset = self.reploff + 1
            replication.replid = event.replid
            replication.disconnect_replicas()
        logger.info("MASTER <-> REPLICA sync: Master accepted a Partial Resynchronization.")
        self._link_up()

    def _link_up(self) -> None:
        self.ever_connected = True
        self.engine.masterdown = False
        self._moved()
        self.state = CONNECTED
        self.link_up = True
        self.sync_in_progress = False
        self.synced.set()

    async def _apply(self, event: StreamCommand, stream: trio.abc.Stream) -> None:
        argv = event.argv
        self.read_reploff += event.size
        name = argv[0].lower()
        session = self.session
        if name == b"replconf" and len(argv) >= 2 and argv[1].lower() == b"getack":
            # Answer with the offset before this command, as Redis does.
            await self._send_ack(stream)
        elif name != b"ping":
            keyspace = self.engine.keyspace
            keyspace.applying_master = True
            try:
                self.engine.execute(session, argv)  # the master gets no replies
            finally:
                keyspace.applying_master = False
        # Sub-replicas get the master's bytes as they came (chained replication).
        self.replication.feed_raw(event.raw)
        if session.multi is None:
            # Inside the master's MULTI the offset waits for EXEC.
            self.reploff = self.read_reploff
            self._moved()
