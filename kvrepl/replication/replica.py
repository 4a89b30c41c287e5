"""The replica side: follow a master over any trio stream, reconnect, resync partially.

The protocol is :class:`~kvrepl.replication.handshake.ReplicaProtocol` (sans-IO); this
module only moves bytes and applies what it decodes. The payload is loaded into fresh
dictionaries while it arrives and swapped in only once it is whole and its checksum is good,
so the old dataset keeps serving reads until then and a cut transfer loses nothing. The
command stream is applied a received piece at a time: offsets, sub-replicas and waiters move
once per piece, as Redis moves them once per read of its master's query buffer.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Awaitable, Callable

import trio

from kvrepl import gc_policy, persistence
from kvrepl.acl import SUPERUSER
from kvrepl.commands.core import PAUSE_ALL, PAUSE_OFF, Engine
from kvrepl.commands.monitor import repr_bytes
from kvrepl.config import persistence_disabled
from kvrepl.errors import ProtocolError, ReplicaPanic, ReplyError, WriteSkipped
from kvrepl.log import logger, panic
from kvrepl.persistence import TempFile
from kvrepl.rdb import LoadResult, RdbError, StagedLoad
from kvrepl.replication.failover import IN_PROGRESS, Failover
from kvrepl.replication.handshake import (
    Continue,
    FailoverRejected,
    FullResync,
    Log,
    PayloadData,
    PayloadEnd,
    PayloadStart,
    ReplicaProtocol,
    ReplicationProtocolError,
    Send,
    State,
    StreamBatch,
    TryLater,
)
from kvrepl.replication.master import NO_REPLID, MasterReplication, new_replid
from kvrepl.replication.stream import encode_command
from kvrepl.scripting.persist import load_functions

Connect = Callable[[], Awaitable[trio.abc.Stream]]


class UnableToConnect(Exception):
    """The master's address could not even be tried (Redis's "Unable to connect to MASTER")."""


def socket_error(err: BaseException) -> str:
    """The system's words for a socket error, as Redis logs them ("Connection refused"):
    trio wraps a failed connect in an OSError whose cause holds one error per address."""
    cause = err.__cause__
    for candidate in (err, cause, *getattr(cause, "exceptions", ())):
        number = getattr(candidate, "errno", None)
        if number:
            return os.strerror(number)
    return str(err) or type(err).__name__

# Bytes read from the master at a time. The commands of one read are parsed and applied as
# one batch; a smaller batch keeps fewer fresh argument lists alive at once, which the
# garbage collector's young passes then have less to walk through.
RECEIVE_SIZE = 16 * 1024
PAYLOAD_RECEIVE_SIZE = 64 * 1024  # while the snapshot arrives: fewer, bigger steps

# Redis logs "applying a command even though it is unable to write to disk" at most this often.
DISK_ERROR_LOG_INTERVAL = 10.0
RETRY_INTERVAL = 1.0  # seconds between attempts: Redis's replicationCron runs once a second

# ROLE's words for the link states.
CONNECT, CONNECTING, HANDSHAKE, SYNC, CONNECTED = (
    "connect", "connecting", "handshake", "sync", "connected")


class ReplicaOf:
    """Keeps ``engine`` a replica of one master until cancelled.

    ``connect`` opens a new stream to the master (TCP, or an in-process stream pair);
    ``describe`` is the ``(host, port)`` INFO and ROLE show.
    """

    #: Payload bytes held unparsed until this many wait (0: each piece is parsed as it
    #: arrives); see ShardLink, whose payloads arrive interleaved with other links'.
    payload_hold = 0

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
        # Like Redis's server.master, the master client is listed (CLIENT LIST, CLIENT KILL)
        # only while the link is up: see _link_up and _link_lost.
        engine.sessions.pop(self.session.id, None)
        self.session.is_master = True
        self.session.kind = "master"
        # Redis's master client is authenticated whatever requirepass says.
        self.session.authenticated = True
        self.session.user = SUPERUSER  # and checked by no ACL (its user is NULL)
        # The master gets no replies; the errors are collected to be logged (_failed).
        self.session.error_log = []
        self._disk_error_logged = -DISK_ERROR_LOG_INTERVAL
        self._stream_offset = self.reploff  # end of the last whole command received
        self._held = b""  # received bytes of a MULTI not yet executed (not yet applied)
        # The commands of a received piece that CLIENT PAUSE holds, in order, unapplied.
        self._paused_rest: StreamBatch | None = None
        # Command names as the master spells them -> their table entries, for the commands
        # that run straight through Engine.call (see _apply_batch).
        self._direct: dict[bytes, object] = {}
        self._protocol: ReplicaProtocol | None = None
        self._dump: TempFile | None = None  # the payload on its way to dir/dbfilename
        self.source: object | None = None  # the master Node when it is in this program
        # Set when this node is a master handing over to ``describe`` (FAILOVER): the PSYNC
        # asks the target to become master, and its answer ends or aborts the failover.
        self.failover: Failover | None = None
        self._staged: StagedLoad | None = None
        # Set by a link that applies only part of the master's writes (a cluster shard's
        # link, see kvrepl.replication.cluster): each command of the stream goes through it
        # first and is applied as it returns it, or not at all when it returns None.
        self.admit: Callable[[list[bytes]], list[bytes] | None] | None = None
        # Set beside ``admit`` by a link whose runs of plain SETs may skip it: called with
        # the stream's commands and an index, it returns where the run the plain lane may
        # apply from there ends (the commands ``admit`` would return unchanged, with
        # nothing else to record); the lane then applies at most that run.
        self.lane_run: Callable[[list[list[bytes]], int], int] | None = None
        self._keys_read = 0  # keys of the payload parsed so far (key-load-delay)
        self._new_replid = ""
        self._initial_offset = -1
        self._retry_wait: trio.CancelScope | None = None  # the pause between two attempts

    @property
    def knows_offset(self) -> bool:
        """Redis has a master client, or a cached one (our history, kept for a partial
        resync): INFO then shows its offsets, 0 included; without either it shows 1."""
        return self.link_up or (self.has_history and not self.sync_in_progress)

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
                except ReplicaPanic:
                    raise  # stops the node, as redis-server's panic stops the process
                except FailoverRejected as err:
                    logger.warning("MASTER <-> REPLICA sync: failover target refused: %s", err)
                    failover, self.failover = self.failover, None
                    if failover is not None:
                        failover.abort("Failover target rejected psync request")
                except (TryLater, ReplicationProtocolError, RdbError) as err:
                    logger.warning("MASTER <-> REPLICA sync: %s", err)
                except ProtocolError as err:
                    # The stream is corrupt or misaligned: what was applied before the error
                    # showed may be wrong too, so, like Redis (which does not cache a master
                    # client closed for a protocol error), forget the offset: full resync.
                    logger.warning("Protocol error (%s) from client: master; the next sync "
                                   "is a full one", err)
                    self.has_history = False
                except trio.TooSlowError:
                    logger.warning("MASTER timeout: no data nor PING received...")
                except UnableToConnect as err:
                    logger.warning("Unable to connect to MASTER: %s", err)
                except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as err:
                    logger.warning("Error condition on socket for SYNC: %s", socket_error(err))
                except Exception:  # a bug must not end replication for good: log, retry
                    logger.exception("MASTER <-> REPLICA sync: unexpected error")
                self._link_lost()
                with trio.CancelScope() as self._retry_wait:
                    await trio.sleep(RETRY_INTERVAL)
                self._retry_wait = None
        finally:
            self._link_lost()
            engine.close_session(self.session)

    def retry_now(self) -> None:
        """End the pause before the next attempt, if the link is in one: the master it
        follows changed (Redis's replicationSetMaster connects at once)."""
        if self._retry_wait is not None:
            self._retry_wait.cancel()

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
        if self._dump is not None:
            self._dump.discard()
            self._dump = None
        self.engine.masterdown = True
        if self.link_up:
            logger.info("Connection with master lost.")
            self.link_down_since = time.monotonic()
        self.link_up = False
        self.engine.sessions.pop(self.session.id, None)
        self.session.closing = False
        self.state = CONNECT
        self.sync_in_progress = False
        self._staged = None
        persistence.stop_async_loading(self.engine)
        self.synced = trio.Event() if self.synced.is_set() else self.synced
        # Like Redis's replicationCacheMaster: a transaction the master had not finished
        # sending is dropped; the master sends it again from our offset.
        session = self.session
        session.set_multi(None)
        session.multi_error = False
        self._held = b""
        self._paused_rest = None  # resent from our offset too
        self._stream_offset = self.read_reploff = self.reploff

    async def _follow_once(self) -> None:
        while self.engine.loading:  # the dump loaded at startup says where we were
            await trio.sleep(0.01)
        if not self.ever_connected:
            self.reploff = self.read_reploff = self.replication.master_repl_offset
            self.has_history = self.replication.backlog is not None
        self.state = CONNECTING
        logger.info("Connecting to MASTER %s:%s", self.host, self.port)
        try:
            stream = await self.connect()
        except socket.gaierror as err:  # Redis fails before starting: no address to try
            raise UnableToConnect(err.strerror) from err
        except OSError:
            # Redis has started its non-blocking connect when the refusal comes.
            logger.info("MASTER <-> REPLICA sync started")
            raise
        self._name_link(stream)
        # CLIENT KILL of the master client cancels this connection; run() then reconnects
        # and continues partially, as Redis does after freeClient(server.master).
        kill_scope = trio.CancelScope()
        self.session.on_kill = kill_scope.cancel
        with kill_scope:
            await self._serve(stream)

    def _name_link(self, stream: trio.abc.Stream) -> None:
        """The master client's addr/laddr, as Redis's CLIENT LIST shows them: the socket's
        peer and local addresses (an in-process stream keeps the described address)."""
        sock = getattr(stream, "socket", None)
        session = self.session
        try:
            peer, local = sock.getpeername(), sock.getsockname()
        except (AttributeError, OSError):
            session.addr = f"{self.host}:{self.port}"
            return
        session.addr = f"{peer[0]}:{peer[1]}"
        session.laddr = f"{local[0]}:{local[1]}"

    async def _serve(self, stream: trio.abc.Stream) -> None:
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
                capabilities=("eof", "psync2", "lz4stream"),
                failover=self.failover is not None and self.failover.state == IN_PROGRESS)
            self._protocol = protocol
            stats = self.engine.stats
            failure: Exception | None = None
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._ack_every_second, stream)
                try:
                    await self._handle(protocol.start(), stream)
                    while True:
                        streaming = protocol.state is State.CONNECTED
                        with trio.fail_after(self.config.repl_timeout):
                            try:
                                data = await stream.receive_some(
                                    RECEIVE_SIZE if streaming else PAYLOAD_RECEIVE_SIZE)
                            except (trio.BrokenResourceError, OSError):
                                stats.reads_processed += streaming
                                raise
                        # Once the stream flows the link is Redis's master client, whose
                        # reads (its hang-up and errors too) readQueryFromClient counts; the
                        # handshake's and the payload's it does not.
                        stats.reads_processed += streaming
                        if not data:
                            raise ReplicationProtocolError("master closed the connection")
                        self.last_io = time.monotonic()
                        uncounted = protocol.uncounted
                        fed = protocol.stream_received
                        events = protocol.receive_data(data)
                        # A read that ends the handshake or the payload and carries the
                        # stream's first bytes: Redis reads the reply lines and the payload
                        # up to its length (or end mark) and no further, so those bytes are
                        # its master client's first read, which readQueryFromClient counts.
                        stats.reads_processed += (
                            not streaming and protocol.stream_received > fed)
                        stats.net_repl_input_bytes += (
                            len(data) - (protocol.uncounted - uncounted))
                        await self._handle(events, stream)
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

    async def _send_ack(self, stream: trio.abc.Stream, offset: int | None = None) -> None:
        """REPLCONF ACK with ``offset`` (our own by default): the master client's output,
        which Redis counts in total_net_output_bytes (the handshake's it does not)."""
        data = encode_command([b"REPLCONF", b"ACK",
                               b"%d" % (self.reploff if offset is None else offset)])
        # Counted before the send's await, which yields after the bytes left: by then the
        # master may have seen the ACK (WAIT returned) and a client read INFO.
        stats = self.engine.stats
        stats.total_net_output_bytes += len(data)
        stats.writes_processed += 1  # the master client's output: writeToClient counts it
        await self._send(stream, data)

    # -- events ----------------------------------------------------------------------------
    async def _handle(self, events: list[object], stream: trio.abc.Stream) -> None:
        for event in events:
            kind = type(event)
            if kind is StreamBatch:
                batch: StreamBatch | None = event
                while batch is not None:
                    for offset in self._apply_batch(batch):
                        # REPLCONF GETACK: answered with the offset before it, as Redis does.
                        await self._send_ack(stream, offset)
                    batch, self._paused_rest = self._paused_rest, None
                    if batch is not None:
                        await self._pause_relaxed()
            elif kind is PayloadData:
                if self._dump is not None:
                    self._dump.write(event.data)
                # Held only without key-load-delay, which paces the keys as they are parsed.
                self._staged.feed(event.data, 0 if self.config.key_load_delay
                                  else self.payload_hold)
                self.transfer_read += len(event.data)
                persistence.attach(self.engine).loading_loaded_bytes = self.transfer_read
                self._keys_read = await persistence.load_delay(
                    self.engine, self._staged, self._keys_read)
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
                                          deep=persistence.deep_checks(self.engine),
                                          now_ms=self.engine.keyspace.now_ms())
                self._keys_read = 0
                persistence.start_async_loading(self.engine, self.transfer_size)
                self._dump = self._open_dump()
            elif kind is PayloadEnd:
                result = self._staged.finish()  # RdbError for a bad payload
                dump, self._dump = self._dump, None
                if dump is not None:
                    await self._keep_dump(dump)
                self._finish_load(result)
                await self._send_ack(stream)  # a Redis master waits for it after $EOF:
            elif kind is Continue:
                self._continue(event)
            elif kind is Log:
                logger.info("MASTER <-> REPLICA sync: %s", event.message)

    # -- repl-diskless-load ------------------------------------------------------------------
    def _open_dump(self) -> TempFile | None:
        """Where the payload goes besides memory. With ``repl-diskless-load disabled`` (and
        ``on-empty-db`` while we hold keys) a Redis replica stores the payload as
        dir/dbfilename and loads that file, so it has a dump of the new dataset afterwards
        (a restart loads it and continues with a partial resync). kvrepl always loads while
        receiving and swaps at the end (the old data is served meanwhile and stays if the
        payload is bad), and, on a node that keeps its data on disk (``kvrepl-server``),
        also writes the file; an embedded node keeps to memory."""
        config = self.config
        mode = config.repl_diskless_load
        if not getattr(self.engine.node, "load_dump", False) or mode == "swapdb" or (
                mode == "on-empty-db"
                and not any(db.data for db in self.engine.keyspace.dbs)):
            return None
        path = os.path.join(config.dir, config.dbfilename)
        temp = os.path.join(config.dir, f"temp-{int(time.time())}.{os.getpid()}.rdb")
        dump = TempFile(path, temp)
        try:
            dump.open()
        except OSError as err:
            logger.warning("Opening the temp file needed for MASTER <-> REPLICA "
                           "synchronization: %s", err)
            return None
        return dump

    async def _keep_dump(self, dump: TempFile) -> None:
        """fsync and rename the received payload over dir/dbfilename (in a thread: both can
        take long), once it loaded: a bad payload never replaces a good dump."""
        def commit() -> None:
            dump.sync_and_close()
            dump.commit()
            dump.sync_dir()
            if self.config.rdb_del_sync_files and persistence_disabled(self.config):
                logger.info("Removing the RDB file obtained from the master. This replica "
                            "has persistence disabled")
                os.unlink(dump.path)

        try:
            await trio.to_thread.run_sync(commit)
        except OSError as err:
            dump.discard()
            logger.warning("Failed trying to rename the temp DB into %s in MASTER <-> "
                           "REPLICA synchronization: %s", dump.path, err)

    def _failover_done(self) -> None:
        """The target took over (+CONTINUE, or a full resync in edge cases): the failover
        is complete and the clients' pause ends."""
        failover, self.failover = self.failover, None
        if failover is not None:
            failover.succeeded()

    def _full_resync(self, event: FullResync) -> None:
        self._failover_done()
        self._new_replid = event.replid
        self._initial_offset = event.offset
        # Redis enters REPL_STATE_TRANSFER at +FULLRESYNC: master_sync_in_progress is 1 (size
        # -1) while a disk-based master is still writing the snapshot, not from the $ on
        self.state = SYNC
        self.sync_in_progress = True
        self.transfer_size = -1
        self.transfer_read = 0

    def _finish_load(self, result: LoadResult) -> None:
        engine = self.engine
        self._load_target(self._staged, result)
        gc_policy.dataset_loaded(engine.keyspace)
        self._staged = None
        persistence.stop_async_loading(engine)
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
        self.session.set_multi(None)
        if engine.aof is not None:
            engine.aof.after_full_sync()  # its AOF starts over from this dataset
        # Sub-replicas follow the old history: they must resync.
        replication.disconnect_replicas()
        self._link_up()
        logger.info("MASTER <-> REPLICA sync: Finished with success")
        from kvrepl.server.process import tell_systemd

        tell_systemd(engine, "STATUS=MASTER <-> REPLICA sync: Finished with success. Ready to "
                     "accept connections in read-write mode.\n")

    def _load_target(self, staged: StagedLoad, result: LoadResult) -> None:
        """Make the master's snapshot our data: here the whole keyspace (a cluster shard's
        link replaces only its shard's keys)."""
        engine = self.engine
        logger.info("MASTER <-> REPLICA sync: Flushing old data")
        for db in engine.keyspace.dbs:
            engine.watches.touch_all_in_db(db, None)
        engine.tracking.flushed()
        load_functions(engine, result.functions)  # the master's libraries replace ours
        staged.apply(engine.keyspace)
        # emptyData(-1): the keys our clients gave a TTL are gone; a key of the same name
        # from the master must not be expired here.
        engine.keyspace.forget_replica_expires()

    def _continue(self, event: Continue) -> None:
        self._failover_done()
        replication = self.replication
        if event.replid and event.replid != replication.replid:
            replication.replid2 = replication.replid
            replication.second_replid_offset = self.reploff + 1
            replication.replid = event.replid
            replication.disconnect_replicas()
        logger.info("MASTER <-> REPLICA sync: Master accepted a Partial Resynchronization.")
        from kvrepl.server.process import tell_systemd

        tell_systemd(self.engine, "STATUS=MASTER <-> REPLICA sync: Partial Resynchronization "
                     "accepted. Ready to accept connections in read-write mode.\n")
        self._link_up()

    def _link_up(self) -> None:
        self._stream_offset = self.read_reploff = self.reploff
        self._held = b""
        self.ever_connected = True
        self.engine.masterdown = False
        self._moved()
        self.state = CONNECTED
        self.link_up = True
        self.engine.sessions[self.session.id] = self.session
        self.sync_in_progress = False
        self.synced.set()

    def _apply_batch(self, batch: StreamBatch) -> list[int]:
        """Apply the master's commands of one received piece of stream, then move the
        offsets, feed sub-replicas and wake waiters once. Returns the offsets to
        acknowledge (one per REPLCONF GETACK).

        Redis's master client runs commands without the checks of ``processCommand`` that
        only concern normal clients; here every command the table knows runs straight
        through ``Engine.call`` while the session is in a state where ``Engine.execute``
        would do nothing else (authenticated, not loading, not subscribed, not inside the
        master's MULTI, arity right); anything else goes through ``Engine.execute``.
        """
        engine = self.engine
        session = self.session
        keyspace = engine.keyspace
        direct = self._direct
        call = engine.call
        lane = engine.plain_lane
        admit = self.admit
        lane_run = self.lane_run
        lane_open = (admit is None or lane_run is not None) and \
            lane.open_for_master_link(session)
        offset = self._stream_offset
        applied = self.reploff
        acks: list[int] = []
        plain = self._plain()
        argvs = batch.argvs
        count = len(argvs)
        index = 0
        errors = session.error_log  # filled by the engine when a command fails here
        disk_error = ((engine.bgsave_failed or bool(engine.aof_error))
                      and self._writes_denied_by_disk_error())
        if disk_error:
            lane_open = False  # each command is looked at: see _check_disk_error
        # CLIENT PAUSE holds the master's stream too (processCommand postpones the master
        # client like any other but a replica): the first command it holds and those after
        # it wait in _paused_rest, unapplied, and the offset stays before them.
        pausing = engine.pausing
        if pausing:
            lane_open = False
        rest_span = 0
        keyspace.applying_master = True
        try:
            while index < count:
                if pausing and self._held_by_pause(argvs[index]):
                    rest_span = batch.span(index, count)
                    self._paused_rest = StreamBatch(argvs[index:], batch.sizes[index:],
                                                    batch.raw[len(batch.raw) - rest_span:])
                    break
                if disk_error:
                    self._check_disk_error(argvs[index])
                if lane_open:  # a run of plain SETs, the stream's usual content
                    # (a plain SET cannot fail: it overwrites a key of any type)
                    if lane_run is None:
                        stop = lane.apply_sets(session, argvs, index)
                    else:
                        end = lane_run(argvs, index)
                        stop = index + lane.apply_sets(session, argvs[index:end], 0) \
                            if end > index else index
                    if stop > index:
                        offset += batch.span(index, stop)
                        applied = offset  # the lane is closed inside the master's MULTI
                        index = stop
                        continue
                argv = argvs[index]
                size = batch.sizes[index]
                index += 1
                if admit is not None:
                    admitted = admit(argv)
                    if admitted is None:  # not ours to apply (the admit hook counted it)
                        offset += size
                        if session.multi is None:
                            applied = offset
                        continue
                    argv = admitted
                cmd = direct.get(argv[0])
                if cmd is not None and plain and session.multi is None:
                    arity = cmd.arity
                    if (len(argv) == arity if arity > 0 else len(argv) >= -arity):
                        call(session, cmd, argv)  # propagates what it wrote (changes())
                        if errors:
                            self._failed(argv, batch, offset)
                        if keyspace.ready_keys and engine.on_ready_keys is not None:
                            engine.on_ready_keys()
                        offset += size
                        if session.multi is None:
                            applied = offset
                        continue
                name = argv[0].lower()
                if name == b"replconf" and len(argv) >= 2 and argv[1].lower() == b"getack":
                    acks.append(applied)
                elif name != b"ping":
                    engine.execute(session, argv)  # the master gets no replies
                    if errors:
                        self._failed(argv, batch, offset)
                    self._learn(argv[0], name)
                    plain = self._plain()
                    lane_open = (admit is None or lane_run is not None) and \
                        lane.open_for_master_link(session)
                offset += size
                if session.multi is None:
                    # Inside the master's MULTI the offset waits for EXEC.
                    applied = offset
        finally:
            keyspace.applying_master = False
        self._stream_offset = offset
        protocol = self._protocol
        self.read_reploff = offset + rest_span + (protocol.stream_bytes_pending()
                                                  if protocol else 0)
        received = self._held + batch.raw if self._held else batch.raw
        if rest_span:
            received = received[:len(received) - rest_span]
        done = applied - self.reploff
        if done:
            # Sub-replicas and our backlog get the master's bytes as they came (chained
            # replication is byte for byte), once they are applied, as in Redis.
            self.replication.feed_raw(received if done == len(received) else received[:done])
            self.reploff = applied
            self._moved()
        self._held = received[done:] if done < len(received) else b""
        return acks

    # -- CLIENT PAUSE ----------------------------------------------------------------------
    def _held_by_pause(self, argv: list[bytes]) -> bool:
        """Does the pause in force postpone the master's ``argv``? ALL: every command;
        WRITE: the writes and may-replicate commands (an EXEC, for what it queued)."""
        kind = self.engine.pause.current()
        if kind == PAUSE_OFF:
            return False
        if kind == PAUSE_ALL:
            return True
        cmd = self._resolve(argv)
        if cmd is None:
            return False
        if cmd.is_exec and self.session.multi:
            return any(queued.pausable for queued, _ in self.session.multi)
        return cmd.pausable

    async def _pause_relaxed(self) -> None:
        """Until the pause ends or relaxes (UNPAUSE, its time up, ALL turned to WRITE)."""
        engine = self.engine
        pause = engine.pause
        changed = trio.Event()
        pause.listeners.append(changed.set)
        pause.postponed.add(self.session.id)  # CLIENT LIST flags=Mb, blocked_clients
        try:
            remaining = (pause.end_ms - engine.keyspace.now_ms()) / 1000 + 0.001
            with trio.move_on_after(max(remaining, 0)):
                await changed.wait()
        finally:
            pause.listeners.remove(changed.set)
            pause.postponed.discard(self.session.id)

    # -- commands that fail here ----------------------------------------------------------
    def _failed(self, argv: list[bytes], batch: StreamBatch, offset: int) -> None:
        """The master's command ``argv`` got error replies here: the write is lost on this
        replica. As Redis 7.0's ``afterErrorReply`` for its master client: log it CRITICAL
        with the latest backlog, count it (``unexpected_error_replies``; ``errorstats``
        already did), and panic when ``propagation-error-behavior`` says so on a read-only
        replica. ``node.changes()`` consumers get :class:`WriteSkipped` in its place.
        ``offset`` is where ``argv`` starts in the stream of ``batch``."""
        engine = self.engine
        session = self.session
        name = self._logged_name(argv)
        errors = list(session.error_log)
        session.error_log.clear()
        for err in errors:
            logger.warning("== CRITICAL == This replica is sending an error to its master: "
                           "'%s' after processing the command '%s'",
                           _as_redis_logs(err)[:4096], name)
            latest = self._latest_backlog(batch, offset)
            if latest:
                logger.warning("Latest backlog is: '%s'", repr_bytes(latest))
            engine.stats.unexpected_error_replies += 1
            skipped = WriteSkipped(session.db.id, name, list(argv), err.message)
            engine.skipped_writes.append(skipped)
            for listener in engine.skipped_listeners:
                listener(skipped)
            if self.config.propagation_error_behavior != "ignore" and \
                    self.config.replica_read_only:
                raise panic("This replica panicked sending an error to its master after "
                            f"processing the command '{name}'")

    def _latest_backlog(self, batch: StreamBatch, offset: int) -> bytes:
        """The last 256 bytes of the stream applied before the command at ``offset``, as
        Redis's showLatestBacklog: what our backlog holds, then what this batch applied
        (the backlog gets a batch once it is applied)."""
        backlog = self.replication.backlog
        held = b""
        if backlog is not None and backlog.histlen > 0:
            end = backlog.first_byte_offset + backlog.histlen
            held = backlog.read_from(end - min(256, backlog.histlen))
        received = self._held + batch.raw if self._held else batch.raw
        return (held[-256:] + received[:max(offset - self.reploff, 0)])[-256:]

    def _logged_name(self, argv: list[bytes]) -> str:
        """The name Redis's log gives the failed command: its full name, ``<unknown>`` for
        one it does not know (kvrepl does not, yet)."""
        cmd = self._resolve(argv)
        return "<unknown>" if cmd is None else cmd.name

    def _resolve(self, argv: list[bytes]) -> object | None:
        """lookupCommand: the table entry for ``argv``, subcommand resolved; None when
        unknown. Counts nothing (the command's own run does)."""
        cmd = self.engine.table.get(argv[0].lower())
        if cmd is not None and cmd.subcommands and len(argv) >= 2:
            cmd = cmd.subcommands.get(argv[1].lower())
        return cmd

    def _writes_denied_by_disk_error(self) -> bool:
        """writeCommandsDeniedByDiskError: the last BGSAVE failed and stops writes, or the
        AOF's last write or fsync failed."""
        config = self.config
        return bool(self.engine.bgsave_failed and config.stop_writes_on_bgsave_error
                    and config.save) or bool(self.engine.aof_error)

    def _check_disk_error(self, argv: list[bytes]) -> None:
        """processCommand for the master's client while writes are denied by a failed save
        or AOF write: a write panics unless ``replica-ignore-disk-write-errors``; otherwise
        (and for PING) it is applied, with a warning at most every 10 seconds."""
        cmd = self._resolve(argv)
        if cmd is None:
            return  # it fails anyway, and _failed reports it
        queued = self.session.multi
        is_write = cmd.is_write or (cmd.is_exec and bool(queued)
                                    and any(q.is_write for q, _ in queued))
        if not (is_write or cmd.is_ping):
            return
        if is_write and not self.config.replica_ignore_disk_write_errors:
            raise panic("Replica was unable to write command to disk.")
        now = time.monotonic()
        if now > self._disk_error_logged + DISK_ERROR_LOG_INTERVAL:
            self._disk_error_logged = now
            logger.warning("Replica is applying a command even though it is unable to write "
                           "to disk.")

    def _plain(self) -> bool:
        """The master session is in a state where Engine.execute only calls the command."""
        session = self.session
        return (session.authenticated and not self.engine.loading and not session.channels
                and not session.patterns and not session.is_replica and not session.monitor)

    def _learn(self, spelled: bytes, name: bytes) -> None:
        """Remember a command that may skip Engine.execute's checks from now on: one that
        cannot change what _plain() looks at (writes, SELECT, MULTI, EXEC)."""
        cmd = self.engine.table.get(name)
        if cmd is not None and cmd.handler is not None and not cmd.subcommands and (
                cmd.is_write or name in (b"select", b"multi", b"exec")):
            self._direct[spelled] = cmd


def _as_redis_logs(err: ReplyError) -> str:
    """The error as afterErrorReply logs it: Redis's own error objects keep their leading
    ``-`` (``-WRONGTYPE ...``); messages built with addReplyError, every ``ERR`` one kvrepl
    has, are logged without their ``ERR`` prefix."""
    message = err.message.replace("\r", " ").replace("\n", " ")  # as sent: one line
    if message.startswith("ERR "):
        return message[4:]
    return "-" + message
