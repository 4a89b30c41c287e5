"""RDB persistence: SAVE, BGSAVE, the ``save`` schedule, startup load, shutdown save.

Redis forks a child to write a point-in-time RDB. kvrepl takes a
:class:`~kvrepl.store.snapshot.KeyspaceView` instead (per-key copy-on-write, no fork) and a
:class:`SnapshotJob` serializes it with :class:`~kvrepl.rdb.RdbWriter` in slices of a couple
of milliseconds, yielding to trio between slices, so clients keep being served while millions
of keys are written. The chunks a job produces go to any number of consumers: a
:class:`FileConsumer` (temp file, fsync, rename: a failed save never damages the last good
dump), a trio memory channel (:meth:`SnapshotJob.open_channel`, with backpressure, for a
replica's socket) or an async callable (:class:`CallbackConsumer`).

The node's persistence state (Redis's ``server.dirty`` bookkeeping, ``lastsave``,
``lastbgsave_status`` ...) lives on ``engine.persistence`` (:func:`attach`). The server wires
this module in with a few calls:

* ``persistence.attach(engine, nursery)`` where background jobs may run;
* ``await nursery.start(persistence.load_on_startup, engine)`` before accepting clients (the
  load then continues in the background while clients get ``-LOADING``);
* ``persistence.cron(engine)`` from the periodic task (``save <seconds> <changes>``, and
  BGSAVE SCHEDULE);
* ``persistence.after_flushall(engine)`` at the end of FLUSHALL;
* ``persistence.prepare_shutdown(engine, save, force)`` before stopping (SHUTDOWN, SIGTERM);
* ``persistence.debug_reload(engine, options)`` for DEBUG RELOAD.

Sources: Redis 7.0.15 ``rdb.c`` (rdbSave, rdbSaveBackground, saveCommand, bgsaveCommand,
backgroundSaveDoneHandlerDisk, rdbLoad), ``server.c`` (serverCron, prepareForShutdown, INFO
persistence), ``db.c`` (flushAllDataAndResetRDB), ``debug.c`` (DEBUG RELOAD).
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from time import perf_counter
from typing import TYPE_CHECKING, Any, Protocol

import trio

from kvrepl import gc_policy
from kvrepl.log import logger
from kvrepl.rdb import LoadResult, RdbError, RdbWriter, StagedLoad, default_aux, iter_dump
from kvrepl.store.snapshot import KeyspaceView

if TYPE_CHECKING:
    from kvrepl.commands.core import Engine
    from kvrepl.config import Config

#: serverCron retries a failed BGSAVE only after this many seconds (CONFIG_BGSAVE_RETRY_DELAY).
BGSAVE_RETRY_DELAY = 5
#: How long one slice of serialization may run before the job yields to other tasks.
SLICE_SECONDS = 0.002
#: Keys the view hands over at a time (a slice is one or more of these batches).
VIEW_BATCH = 128
#: A file consumer buffers this much before it writes (in a worker thread).
FILE_BUFFER = 1 << 20
#: Startup load: bytes read from the file at a time, and fed to the parser per slice.
LOAD_READ = 1 << 20
LOAD_FEED = 64 * 1024

_temp_counter = itertools.count(1)


def rdb_path(config: Config) -> str:
    """``dir/dbfilename``: where SAVE, BGSAVE and the startup load find the dump."""
    return os.path.join(config.dir, config.dbfilename)


# -- the persistence state of one node --------------------------------------------------------


@dataclass(eq=False)
class Persistence:
    """What Redis keeps in ``server`` for RDB persistence, for one engine.

    ``rdb_changes_since_last_save`` is ``engine.dirty - dirty_at_last_save``: the engine's
    change counter is never reset (WATCH and propagation compare it), the baseline moves.
    """

    engine: Engine
    nursery: trio.Nursery | None = None
    dirty_at_last_save: int = 0
    lastsave: int = 0  # unix seconds of the last successful save (start time before any)
    lastbgsave_try: float = 0.0
    bgsave: SnapshotJob | None = None
    bgsave_started: float = 0.0
    bgsave_scheduled: bool = False
    last_bgsave_time_sec: int = -1
    rdb_saves: int = 0
    # The last load (startup or DEBUG RELOAD): counts, AUX fields (repl-id, repl-offset ...).
    last_load: LoadResult | None = None
    last_load_keys_loaded: int = 0
    last_load_keys_expired: int = 0
    loading_start_time: int = 0
    loading_total_bytes: int = 0
    loading_loaded_bytes: int = 0
    load_error: Exception | None = None  # why the startup load failed

    @property
    def last_bgsave_ok(self) -> bool:
        """rdb_last_bgsave_status; the engine keeps the opposite for its MISCONF check."""
        return not self.engine.bgsave_failed

    @last_bgsave_ok.setter
    def last_bgsave_ok(self, ok: bool) -> None:
        self.engine.bgsave_failed = not ok

    @property
    def changes_since_last_save(self) -> int:
        return max(0, self.engine.dirty - self.dirty_at_last_save)

    @property
    def bgsave_in_progress(self) -> bool:
        return self.bgsave is not None

    def saved(self, dirty_at_start: int) -> None:
        """A save succeeded (rdbSave / backgroundSaveDoneHandlerDisk)."""
        self.dirty_at_last_save = dirty_at_start
        self.lastsave = int(time.time())
        self.last_bgsave_ok = True


def attach(engine: Engine, nursery: trio.Nursery | None = None) -> Persistence:
    """The persistence state of ``engine`` (created on first use); ``nursery`` is where
    BGSAVE jobs will run (the server's). Without one, BGSAVE saves synchronously."""
    found = engine.__dict__.get("persistence")
    if found is None:
        # The baseline is the engine's start (dirty 0), whenever the state is first asked for.
        found = Persistence(engine, lastsave=int(engine.started))
        engine.persistence = found  # type: ignore[attr-defined]
    if nursery is not None:
        found.nursery = nursery
    return found



# -- consumers of a snapshot ------------------------------------------------------------------


class Consumer(Protocol):
    """Something that receives the bytes of one RDB, in order."""

    async def write(self, chunk: bytes) -> None:
        """The next bytes; raising detaches this consumer (the others carry on)."""

    async def finish(self) -> None:
        """Every byte was written; raising means this consumer failed."""

    def abort(self, error: BaseException | None) -> None:
        """The snapshot will not complete (``error`` None: cancelled). Must not block."""


class CallbackConsumer:
    """A consumer from async callables: ``write(chunk)``, optional ``finish()`` and a plain
    ``abort(error)``."""

    def __init__(self, write: Callable[[bytes], Awaitable[None]],
                 finish: Callable[[], Awaitable[None]] | None = None,
                 abort: Callable[[BaseException | None], None] | None = None) -> None:
        self._write = write
        self._finish = finish
        self._abort = abort

    async def write(self, chunk: bytes) -> None:
        await self._write(chunk)

    async def finish(self) -> None:
        if self._finish is not None:
            await self._finish()

    def abort(self, error: BaseException | None) -> None:
        if self._abort is not None:
            self._abort(error)


class ChannelConsumer:
    """Sends each chunk into a trio memory channel (``send`` waits while its buffer is full:
    the slowest reader paces the job). The channel is closed at the end either way; the
    reader tells success from failure with :attr:`SnapshotJob.ok` (or :attr:`error` here)."""

    def __init__(self, channel: trio.MemorySendChannel[bytes]) -> None:
        self.channel = channel
        self.error: BaseException | None = None

    async def write(self, chunk: bytes) -> None:
        await self.channel.send(chunk)

    async def finish(self) -> None:
        await self.channel.aclose()

    def abort(self, error: BaseException | None) -> None:
        self.error = error
        self.channel.close()


class TempFile:
    """An RDB being written to ``temp`` and renamed to ``path`` once complete and fsynced
    (rdbSave): a crash or a failure at any point leaves the previous ``path`` intact."""

    def __init__(self, path: str, temp: str) -> None:
        self.path = path
        self.temp = temp
        self.fd: int | None = None
        self.bytes_written = 0

    def open(self) -> None:
        self.fd = os.open(self.temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)  # type: ignore[arg-type]
            view = view[written:]
        self.bytes_written += len(data)

    def sync_and_close(self) -> None:
        fd, self.fd = self.fd, None
        try:
            os.fsync(fd)  # type: ignore[arg-type]
        finally:
            os.close(fd)  # type: ignore[arg-type]

    def commit(self) -> None:
        """Rename the complete temp file over ``path`` (atomic on POSIX)."""
        os.replace(self.temp, self.path)

    def sync_dir(self) -> None:
        """fsyncFileDir: make the rename itself durable."""
        try:
            fd = os.open(os.path.dirname(os.path.abspath(self.path)), os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:  # some filesystems refuse fsync on a directory
            pass
        finally:
            os.close(fd)

    def discard(self) -> None:
        """Close and remove the temp file (after a failure)."""
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None
        try:
            os.unlink(self.temp)
        except OSError:
            pass


def temp_path(path: str, background: bool) -> str:
    """``temp-<pid>.rdb`` next to the dump, as Redis names it (a numbered variant for
    background saves, which may overlap a synchronous one)."""
    name = (f"temp-{os.getpid()}-{next(_temp_counter)}.rdb" if background
            else f"temp-{os.getpid()}.rdb")
    return os.path.join(os.path.dirname(path), name)


class FileConsumer:
    """Writes a snapshot to ``path`` through a temp file. Writes, fsync and the rename run in
    worker threads (renaming over a big old dump frees its blocks, which takes a while); a
    lock makes "not aborted, so rename" atomic against :meth:`abort`, so a cancelled BGSAVE
    can never overwrite a newer dump."""

    def __init__(self, path: str, temp: str | None = None) -> None:
        self.file = TempFile(path, temp or temp_path(path, background=True))
        self.aborted = False
        self.committed = False
        self.error: BaseException | None = None
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._busy = False  # a worker thread is using the descriptor
        self._lock = threading.Lock()

    @property
    def path(self) -> str:
        return self.file.path

    async def write(self, chunk: bytes) -> None:
        if self.aborted:
            raise trio.BrokenResourceError("snapshot aborted")
        self._pending.append(chunk)
        self._pending_size += len(chunk)
        if self._pending_size >= FILE_BUFFER:
            await self._flush()

    async def _in_thread(self, function: Callable[[], object]) -> object:
        self._busy = True
        try:
            result = await trio.to_thread.run_sync(function)
        finally:
            self._busy = False
            if self.aborted:
                self.file.discard()
        if self.aborted:
            raise trio.BrokenResourceError("snapshot aborted")
        return result

    async def _flush(self) -> None:
        if self.aborted:
            raise trio.BrokenResourceError("snapshot aborted")
        if self.file.fd is None:
            self.file.open()
        data = b"".join(self._pending)
        self._pending.clear()
        self._pending_size = 0
        if data:
            await self._in_thread(lambda: self.file.write(data))

    def _commit(self) -> None:
        with self._lock:
            if self.aborted:
                return
            self.file.commit()
            self.committed = True
        self.file.sync_dir()

    async def finish(self) -> None:
        try:
            await self._flush()
            if self.file.fd is None:
                self.file.open()
            await self._in_thread(self.file.sync_and_close)
            await self._in_thread(self._commit)
        except BaseException as err:
            self.abort(err)
            raise

    def abort(self, error: BaseException | None) -> None:
        with self._lock:
            if self.aborted or self.committed:
                return
            self.aborted = True
        self.error = error
        self._pending.clear()
        if self._busy:
            # The worker thread still uses the descriptor: closing it now could let the
            # number be reused under its feet. Unlink now, close when the thread is back.
            try:
                os.unlink(self.file.temp)
            except OSError:
                pass
        else:
            self.file.discard()


# -- the snapshot job -------------------------------------------------------------------------

PENDING, RUNNING, DONE, FAILED, CANCELLED = "pending", "running", "done", "failed", "cancelled"


class SnapshotJob:
    """One point-in-time RDB of a keyspace, serialized in slices, fanned out to consumers.

    The snapshot instant is :meth:`begin` (called by :meth:`start` or :meth:`run`): the view
    is taken and ``aux`` (a list of AUX pairs, or a callable returning one, so that a
    replication offset can be read at that very instant) is fixed; ``on_begin`` callbacks run
    right then, synchronously. Consumers may be added until the first bytes go out
    (:attr:`joinable`); each gets every chunk in order, then ``finish()``. A consumer that
    raises is detached and aborted, the others carry on; when none is left the job stops.
    ``on_done`` callbacks get the job when it ends, whatever the outcome (:attr:`status`).
    """

    def __init__(self, keyspace: Any, *, config: Any = None, aux: Any = None,
                 functions: Iterable[bytes] = (), compression: bool | None = None,
                 checksum: bool | None = None, slice_seconds: float = SLICE_SECONDS,
                 batch: int = VIEW_BATCH) -> None:
        self.keyspace = keyspace
        self.config = config
        if compression is None:
            compression = getattr(config, "rdbcompression", True)
        if checksum is None:
            checksum = getattr(config, "rdbchecksum", True)
        self.writer = RdbWriter(compression=compression, checksum=checksum, config=config)
        self._aux = aux
        self._functions = list(functions)
        self.slice_seconds = slice_seconds
        self.batch = batch
        self.consumers: list[Consumer] = []
        self.failed_consumers: list[tuple[Consumer, BaseException]] = []
        self.on_begin: list[Callable[[SnapshotJob], None]] = []
        self.on_done: list[Callable[[SnapshotJob], None]] = []
        self.status = PENDING
        self.error: BaseException | None = None
        self.view: KeyspaceView | None = None
        self.keys_total = 0
        self.keys_done = 0
        self.bytes_out = 0
        self.slices = 0
        self.longest_slice = 0.0
        self.began_at: float | None = None  # unix time of the snapshot instant
        self.ended_at: float | None = None
        self.done = trio.Event()
        self._emitted = False
        self._produced = False
        self._scope: trio.CancelScope | None = None
        self._cancel_requested = False
        self._header = b""
        self._sizes: dict[int, tuple[int, int]] = {}

    # -- setting up ------------------------------------------------------------------------
    @property
    def joinable(self) -> bool:
        """True while a new consumer would still get the whole RDB."""
        return not self._emitted and self.status in (PENDING, RUNNING)

    @property
    def ok(self) -> bool:
        """True once every byte was produced and handed to the consumers (a channel's
        reader checks this when the channel ends: it is closed on failure too)."""
        return self._produced

    def add_consumer(self, consumer: Consumer) -> Consumer:
        if not self.joinable:
            raise RuntimeError("the snapshot already started sending; wait for the next one")
        self.consumers.append(consumer)
        return consumer

    def open_channel(self, max_buffer: int = 4) -> trio.MemoryReceiveChannel[bytes]:
        """A channel that receives every chunk (closed at the end; see :attr:`ok`)."""
        send, receive = trio.open_memory_channel[bytes](max_buffer)
        self.add_consumer(ChannelConsumer(send))
        return receive

    def begin(self) -> None:
        """The snapshot instant: take the view (no stall beyond copying the key dicts)."""
        if self.view is not None:
            return
        self.view = KeyspaceView(self.keyspace)
        self.keys_total = len(self.view)
        self.began_at = time.time()
        aux = self._aux() if callable(self._aux) else self._aux
        self._header = self.writer.begin(aux, self._functions)
        self._sizes = {index: (keys, expires) for index, keys, expires in self.view.db_sizes()}
        for callback in self.on_begin:
            callback(self)

    def start(self, nursery: trio.Nursery) -> SnapshotJob:
        """Take the snapshot now and serialize it in a task of ``nursery``."""
        self.begin()
        nursery.start_soon(self.run)
        return self

    def cancel(self) -> None:
        """Stop the job (Redis's killRDBChild): every consumer is aborted at once, so a file
        consumer's temp file is gone before this returns and can never be renamed."""
        self._cancel_requested = True
        if self._scope is not None:
            self._scope.cancel()
        if self.status in (PENDING, RUNNING):
            self._abort_all(None)
        if self.status == PENDING:  # never ran: nothing else will clean up
            if self.view is not None:
                self.view.close()
            self._end(CANCELLED)

    def remove_consumer(self, consumer: Consumer) -> None:
        """Detach and abort one consumer (the job goes on for the others)."""
        if consumer in self.consumers:
            self.consumers.remove(consumer)
            consumer.abort(None)

    # -- running ---------------------------------------------------------------------------
    async def run(self) -> None:
        """Serialize the snapshot, feeding every chunk to every consumer."""
        if self.status == CANCELLED:
            return  # cancelled before it could start
        if self.status != PENDING:
            raise RuntimeError("a SnapshotJob runs once")
        self.status = RUNNING
        self.begin()
        view = self.view
        assert view is not None
        try:
            with trio.CancelScope() as scope:
                self._scope = scope
                if self._cancel_requested:
                    scope.cancel()
                await self._produce(view)
            if scope.cancelled_caught:
                self._abort_all(None)
                self._end(CANCELLED)
        except _NoConsumers:
            self._end_without_consumers()
        except trio.Cancelled:
            # The node stops: nobody gets a partial RDB.
            self._abort_all(None)
            self._end(CANCELLED)
            raise
        except Exception as err:
            logger.warning("Snapshot failed: %s", err)
            self._abort_all(err)
            self._end(FAILED, err)
        except BaseException as err:
            self._abort_all(err)
            self._end(FAILED, err)
            raise
        finally:
            view.close()

    async def _produce(self, view: KeyspaceView) -> None:
        writer = self.writer
        sizes = self._sizes
        slice_seconds = self.slice_seconds
        await self._emit(self._header)
        pending: list[bytes] = []
        started = perf_counter()
        for db, items, expires in view.batches(self.batch):
            pending.append(writer.write_batch(db, items, expires, sizes))
            self.keys_done += len(items)
            now = perf_counter()
            if now - started >= slice_seconds:
                self._slice_done(now - started)
                await self._emit(b"".join(pending))
                pending = []
                # _emit may not have yielded (consumers with room to spare): yield anyway.
                await trio.lowlevel.checkpoint()
                started = perf_counter()
        pending.append(writer.finish())
        self._slice_done(perf_counter() - started)
        await self._emit(b"".join(pending))
        self._produced = True
        for consumer in list(self.consumers):
            try:
                await consumer.finish()
            except Exception as err:
                self._detach(consumer, err)
        if self.consumers:
            self._end(DONE)
        else:
            self._end_without_consumers()

    def _end_without_consumers(self) -> None:
        # Every consumer went away: failed ones make it a failure, removed ones a cancel.
        if self.failed_consumers and not self._cancel_requested:
            self._end(FAILED, self.failed_consumers[0][1])
        else:
            self._end(CANCELLED)

    def _slice_done(self, seconds: float) -> None:
        self.slices += 1
        if seconds > self.longest_slice:
            self.longest_slice = seconds

    async def _emit(self, chunk: bytes) -> None:
        if not chunk:
            return
        self._emitted = True
        self.bytes_out += len(chunk)
        for consumer in list(self.consumers):
            try:
                await consumer.write(chunk)
            except Exception as err:
                self._detach(consumer, err)
        if not self.consumers:
            raise _NoConsumers()

    def _detach(self, consumer: Consumer, err: BaseException) -> None:
        if consumer in self.consumers:
            self.consumers.remove(consumer)
        self.failed_consumers.append((consumer, err))
        consumer.abort(err)

    def _abort_all(self, error: BaseException | None) -> None:
        consumers, self.consumers = self.consumers, []
        for consumer in consumers:
            consumer.abort(error)

    def _end(self, status: str, error: BaseException | None = None) -> None:
        if self.status not in (PENDING, RUNNING):
            return
        self.status = status
        self.error = error
        self.ended_at = time.time()
        self.done.set()
        for callback in self.on_done:
            try:
                callback(self)
            except Exception:  # a callback's bug must not hide the job's outcome
                logger.exception("Error in a snapshot callback")


class _NoConsumers(Exception):
    """Every consumer failed: there is nobody left to produce for."""

    def __str__(self) -> str:
        return "every consumer of the snapshot failed"


# -- SAVE, BGSAVE ---------------------------------------------------------------------------


def save_aux(engine: Engine) -> list[tuple[bytes, bytes]]:
    """The AUX fields of a dump of ``engine`` (rdbPopulateSaveInfo: the replication id and
    offset when this node is part of a replication chain, so a restart can PSYNC)."""
    repl = getattr(engine, "replication", None)
    if repl is not None and getattr(repl, "backlog", None) is not None:
        replid = repl.replid
        selected = getattr(getattr(repl, "feed", None), "selected_db", -1)
        return default_aux(repl_id=replid.encode() if isinstance(replid, str) else replid,
                           repl_offset=repl.master_repl_offset,
                           repl_stream_db=selected if selected and selected > 0 else 0)
    return default_aux()


def write_dump(engine: Engine, path: str | None = None) -> int:
    """Write the whole dataset to ``path`` (default ``dir/dbfilename``) now, blocking, via a
    temp file, fsync and rename. Returns the bytes written; OSError on failure (the temp
    file is removed and ``path`` is untouched)."""
    config = engine.config
    path = path or rdb_path(config)
    target = TempFile(path, temp_path(path, background=False))
    try:
        target.open()
    except OSError as err:
        logger.warning("Failed opening the temp RDB file %s (in server root dir %s) for "
                       "saving: %s", os.path.basename(target.temp),
                       os.path.abspath(os.path.dirname(path)), err.strerror or err)
        raise
    try:
        buffered: list[bytes] = []
        size = 0
        for chunk in iter_dump(engine.keyspace, compression=config.rdbcompression,
                               checksum=config.rdbchecksum, aux=save_aux(engine),
                               config=config):
            buffered.append(chunk)
            size += len(chunk)
            if size >= FILE_BUFFER:
                target.write(b"".join(buffered))
                buffered.clear()
                size = 0
        target.write(b"".join(buffered))
        target.sync_and_close()
        target.commit()
    except OSError as err:
        logger.warning("Write error saving DB on disk: %s", err.strerror or err)
        target.discard()
        raise
    target.sync_dir()
    return target.bytes_written


def save(engine: Engine) -> bool:
    """rdbSave: a synchronous save to ``dir/dbfilename``; True on success (the state then
    records it: no changes since the last save, LASTSAVE now)."""
    st = attach(engine)
    dirty = engine.dirty
    try:
        write_dump(engine)
    except OSError:
        return False  # rdbSave leaves rdb_last_bgsave_status alone when it fails
    logger.info("DB saved on disk")
    st.saved(dirty)
    return True


def bgsave(engine: Engine) -> bool:
    """rdbSaveBackground: start a snapshot job writing ``dir/dbfilename``. False when one is
    already running. Without a running nursery (an engine with no event loop) the save is
    done synchronously instead; either way its outcome shows in ``rdb_last_bgsave_status``."""
    st = attach(engine)
    if st.bgsave is not None:
        return False
    st.rdb_saves += 1
    dirty = engine.dirty
    st.lastbgsave_try = time.time()
    job = SnapshotJob(engine.keyspace, config=engine.config, aux=lambda: save_aux(engine))
    consumer = FileConsumer(rdb_path(engine.config))
    job.add_consumer(consumer)

    def done(job: SnapshotJob) -> None:
        if st.bgsave is job:
            st.bgsave = None
        st.last_bgsave_time_sec = int(time.time() - st.bgsave_started)
        if consumer.committed:
            logger.info("Background saving terminated with success")
            st.saved(dirty)
        elif job.status == CANCELLED or (consumer.aborted and consumer.error is None):
            # killRDBChild's SIGUSR1: not an error.
            logger.warning("Background saving terminated by cancellation")
        else:
            logger.warning("Background saving error: %s", consumer.error or job.error)
            st.last_bgsave_ok = False

    job.on_done.append(done)
    st.bgsave_started = time.time()
    if st.nursery is not None:
        job.begin()
        try:
            st.nursery.start_soon(job.run)
        except RuntimeError:  # the nursery is closed: the node has stopped
            st.nursery = None
            job.view.close()  # type: ignore[union-attr]
        else:
            st.bgsave = job
            logger.info("Background saving started")
            return True
    if not save(engine):
        st.last_bgsave_ok = False
    st.last_bgsave_time_sec = 0
    return True


def kill_bgsave(engine: Engine) -> None:
    """killRDBChild: stop a running BGSAVE, remove its temp file. A job that also feeds
    other consumers (replicas) only loses its file."""
    st = attach(engine)
    job = st.bgsave
    if job is None:
        return
    st.bgsave = None
    files = [c for c in job.consumers if isinstance(c, FileConsumer)]
    if len(files) == len(job.consumers):
        job.cancel()
    else:
        for consumer in files:
            job.remove_consumer(consumer)


def cron(engine: Engine) -> None:
    """serverCron's persistence part: start a BGSAVE when a ``save <seconds> <changes>``
    point is reached or one was scheduled (retrying a failed one after 5 seconds)."""
    st = attach(engine)
    if st.bgsave is not None or engine.loading:
        return
    now = time.time()
    may_retry = st.last_bgsave_ok or now - st.lastbgsave_try > BGSAVE_RETRY_DELAY
    if not may_retry:
        return
    changes = st.changes_since_last_save
    for seconds, wanted in engine.config.save:
        if changes >= wanted and int(now) - st.lastsave > seconds:
            logger.info("%d changes in %d seconds. Saving...", wanted, seconds)
            bgsave(engine)
            return
    if st.bgsave_scheduled and bgsave(engine):
        st.bgsave_scheduled = False


def after_flushall(engine: Engine) -> None:
    """flushAllDataAndResetRDB: a running BGSAVE is killed and, when save points are
    configured, the (now empty) dataset is saved at once."""
    kill_bgsave(engine)
    if engine.config.save:
        save(engine)


def prepare_shutdown(engine: Engine, save_flag: bool | None, force: bool = False) -> bool:
    """prepareForShutdown's persistence part: kill a BGSAVE, then save synchronously when
    ``save_flag`` is True, or None with save points configured (never while loading). False
    means the save failed and, without ``force``, the node must keep running ("Errors trying
    to SHUTDOWN")."""
    st = attach(engine)
    if engine.loading:
        # shutdownCommand: saving half-loaded data would overwrite the good dump.
        save_flag = False
    if st.bgsave is not None:
        logger.warning("There is a child saving an .rdb. Killing it!")
        kill_bgsave(engine)
    if save_flag is False or (save_flag is None and not engine.config.save):
        return True
    logger.info("Saving the final RDB snapshot before exiting.")
    if save(engine):
        return True
    if force:
        logger.warning("Error trying to save the DB. Exit anyway.")
        return True
    logger.warning("Error trying to save the DB, can't exit.")
    return False


# -- loading ----------------------------------------------------------------------------------


def is_replica(engine: Engine) -> bool:
    """Redis's ``server.masterhost``: configured to follow a master, or following one."""
    return engine.config.replicaof is not None or engine.read_only_role()


def _drop_expired(engine: Engine) -> bool:
    # rdbLoadRio: only a master drops keys whose time has passed (iAmMaster()).
    return not is_replica(engine)


def _log_loaded(result: LoadResult, seconds: float) -> None:
    version = result.aux.get(b"redis-ver")
    if version is not None:
        logger.info("Loading RDB produced by version %s", version.decode("latin-1"))
    ctime = result.aux.get(b"ctime")
    if ctime is not None and ctime.isdigit():
        logger.info("RDB age %d seconds", int(time.time()) - int(ctime))
    logger.info("Done loading RDB, keys loaded: %d, keys expired: %d.", result.keys_loaded,
                result.keys_expired)
    logger.info("DB loaded from disk: %.3f seconds", seconds)


def _loaded(engine: Engine, result: LoadResult) -> None:
    st = attach(engine)
    st.last_load = result
    st.last_load_keys_loaded = result.keys_loaded
    st.last_load_keys_expired = result.keys_expired


def _start_loading(engine: Engine, size: int) -> None:
    st = attach(engine)
    engine.loading = True
    st.loading_start_time = int(time.time())
    st.loading_total_bytes = size
    st.loading_loaded_bytes = 0
    st.last_load_keys_loaded = st.last_load_keys_expired = 0


def load_file(engine: Engine, path: str | None = None, *, merge: bool | None = None) -> LoadResult:
    """Load ``path`` (default ``dir/dbfilename``) now, blocking. ``merge`` None replaces the
    whole dataset (only once the file proved good); otherwise the keys are added to the
    current ones, and with ``merge`` True a key already present is replaced (DEBUG RELOAD
    NOFLUSH / MERGE). OSError when the file can't be read, RdbError when it is bad."""
    path = path or rdb_path(engine.config)
    keyspace = engine.keyspace
    started = perf_counter()
    with open(path, "rb") as source:
        loader = StagedLoad(len(keyspace.dbs), drop_expired=_drop_expired(engine),
                            now_ms=keyspace.now_ms(),
                            verify_checksum=engine.config.rdbchecksum)
        while chunk := source.read(LOAD_READ):
            loader.feed(chunk)
        result = loader.finish()
    if merge is None:
        loader.apply(keyspace)
    else:
        _merge(keyspace, loader, replace=merge)
    gc_policy.dataset_loaded(keyspace)  # a no-op unless the process installed a policy
    _loaded(engine, result)
    _log_loaded(result, perf_counter() - started)
    return result


def _merge(keyspace: Any, loader: StagedLoad, replace: bool) -> None:
    for db, (data, expires) in zip(keyspace.dbs, loader.fresh, strict=True):
        if not replace:
            for key in data:
                if key in db.data:
                    raise RdbError(f"RDB has duplicated key in DB {db.id} (key {key[:200]!r})",
                                   key=key)
        for key, value in data.items():
            db.before_write(key)
            db.data[key] = value
            if key in expires:
                db.expires[key] = expires[key]
            else:
                db.expires.pop(key, None)


async def load_on_startup(engine: Engine, *, stop_on_error: bool = False,
                          task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Load ``dir/dbfilename`` if it exists (loadDataFromDisk). ``engine.loading`` is set
    before ``task_status.started()`` and cleared when done, so clients served meanwhile get
    ``-LOADING``; the file is parsed in slices between trio checkpoints.

    A bad file leaves the data as it was and raises RdbError (OSError when it can't be
    read). Redis exits then ("Fatal error loading the DB ... Exiting."): with
    ``stop_on_error`` the error is kept in ``engine.persistence.load_error`` and the node
    is asked to stop without saving (``engine.on_shutdown(False)``) instead.
    """
    st = attach(engine)
    path = rdb_path(engine.config)
    try:
        source = open(path, "rb")
    except FileNotFoundError:
        task_status.started()
        return
    except OSError as err:
        task_status.started()
        _load_failed(engine, err, stop_on_error)
        return
    with source:
        _start_loading(engine, os.fstat(source.fileno()).st_size)
        task_status.started()
        started = perf_counter()
        try:
            loader = StagedLoad(len(engine.keyspace.dbs), drop_expired=_drop_expired(engine),
                                now_ms=int(time.time() * 1000),
                                verify_checksum=engine.config.rdbchecksum)
            while chunk := await trio.to_thread.run_sync(source.read, LOAD_READ):
                view = memoryview(chunk)
                for start in range(0, len(view), LOAD_FEED):
                    piece = view[start:start + LOAD_FEED]
                    loader.feed(bytes(piece))
                    st.loading_loaded_bytes += len(piece)
                    await trio.lowlevel.checkpoint()
            result = loader.finish()
            loader.apply(engine.keyspace)
        except (RdbError, OSError) as err:
            engine.loading = False
            _load_failed(engine, err, stop_on_error)
            return
        finally:
            engine.loading = False
    gc_policy.dataset_loaded(engine.keyspace)  # a no-op unless the process installed a policy
    _loaded(engine, result)
    _log_loaded(result, perf_counter() - started)
    _restore_replication(engine, result)


def _restore_replication(engine: Engine, result: LoadResult) -> None:
    """A dump saved with a replication history lets a restarted node PSYNC on from it."""
    replid = result.aux.get(b"repl-id", b"")
    offset = result.aux.get(b"repl-offset", b"")
    replication = getattr(engine, "replication", None)
    if replication is None or len(replid) != 40 or not offset.lstrip(b"-").isdigit():
        return
    replication.restore_history(replid.decode("ascii", "replace"), int(offset))
    logger.info("Restored replication ID and offset from the RDB: %s:%d",
                replid.decode("ascii", "replace"), int(offset))


def _load_failed(engine: Engine, err: Exception, stop: bool) -> None:
    detail = err.strerror if isinstance(err, OSError) and err.strerror else err
    logger.warning("Fatal error loading the DB: %s. Exiting.", detail)
    attach(engine).load_error = err
    if not stop:
        raise err
    if engine.on_shutdown is not None:
        engine.on_shutdown(False)  # never save over the dump that failed to load


def debug_reload(engine: Engine, options: list[bytes]) -> None:
    """DEBUG RELOAD [MERGE] [NOFLUSH] [NOSAVE]: save (unless NOSAVE), empty the dataset
    (unless NOFLUSH) and load the dump back. Raises ReplyError as Redis replies."""
    from kvrepl.errors import ReplyError

    flush = do_save = True
    merge = False
    for option in options:
        word = option.lower()
        if word == b"merge":
            merge = True
        elif word == b"noflush":
            flush = False
        elif word == b"nosave":
            do_save = False
        else:
            raise ReplyError("ERR DEBUG RELOAD only supports the MERGE, NOFLUSH and NOSAVE "
                             "options.")
    if do_save and not save(engine):
        raise ReplyError("ERR")
    try:
        if flush:
            for db in engine.keyspace.dbs:
                engine.watches.touch_all_in_db(db, None)
            # Loaded into fresh dicts that replace the old ones only if the file is good
            # (Redis empties first, then fails with nothing). MERGE changes nothing here:
            # duplicates could only come from the file itself, which is corrupt then.
            load_file(engine)
        else:
            load_file(engine, merge=merge)
    except (OSError, RdbError) as err:
        logger.warning("DEBUG RELOAD failed: %s", err)
        raise ReplyError("ERR Error trying to load the RDB dump") from None
    logger.warning("DB reloaded by DEBUG RELOAD")


# -- INFO persistence -------------------------------------------------------------------------


def info_fields(engine: Engine) -> list[str]:
    """INFO's Persistence section, field for field as Redis 7.0 prints it."""
    st = attach(engine)
    now = time.time()
    job = st.bgsave
    processed = job.keys_done if job is not None else 0
    total = job.keys_total if job is not None else 0
    fork_perc = processed * 100 / total if total else 0.0
    lines = [
        f"loading:{int(engine.loading)}",
        "async_loading:0",
        "current_cow_peak:0",
        "current_cow_size:0",
        "current_cow_size_age:0",
        f"current_fork_perc:{fork_perc:.2f}",
        f"current_save_keys_processed:{processed}",
        f"current_save_keys_total:{total}",
        f"rdb_changes_since_last_save:{st.changes_since_last_save}",
        f"rdb_bgsave_in_progress:{int(job is not None)}",
        f"rdb_last_save_time:{st.lastsave}",
        f"rdb_last_bgsave_status:{'ok' if st.last_bgsave_ok else 'err'}",
        f"rdb_last_bgsave_time_sec:{st.last_bgsave_time_sec}",
        f"rdb_current_bgsave_time_sec:{int(now - st.bgsave_started) if job else -1}",
        f"rdb_saves:{st.rdb_saves}",
        "rdb_last_cow_size:0",
        f"rdb_last_load_keys_expired:{st.last_load_keys_expired}",
        f"rdb_last_load_keys_loaded:{st.last_load_keys_loaded}",
        f"aof_enabled:{int(bool(engine.config.appendonly))}",
        "aof_rewrite_in_progress:0",
        "aof_rewrite_scheduled:0",
        "aof_last_rewrite_time_sec:-1",
        "aof_current_rewrite_time_sec:-1",
        "aof_last_bgrewrite_status:ok",
        "aof_rewrites:0",
        "aof_rewrites_consecutive_failures:0",
        "aof_last_write_status:ok",
        "aof_last_cow_size:0",
        "module_fork_in_progress:0",
        "module_fork_last_cow_size:0",
    ]
    if engine.loading:
        loaded, total_bytes = st.loading_loaded_bytes, st.loading_total_bytes
        perc = loaded * 100 / total_bytes if total_bytes else 0.0
        elapsed = int(now) - st.loading_start_time
        remaining = total_bytes - loaded if total_bytes else 1
        eta = 1 if elapsed == 0 else elapsed * remaining // (loaded + 1)
        lines += [
            f"loading_start_time:{st.loading_start_time}",
            f"loading_total_bytes:{total_bytes}",
            "loading_rdb_used_mem:0",
            f"loading_loaded_bytes:{loaded}",
            f"loading_loaded_perc:{perc:.2f}",
            f"loading_eta_seconds:{eta}",
        ]
    return lines
