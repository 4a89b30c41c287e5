"""The one snapshot producer: a point-in-time RDB streamed to files and replicas alike.

Redis forks a child to write a point-in-time RDB. kvrepl takes a
:class:`~kvrepl.store.snapshot.KeyspaceView` instead (per-key copy-on-write, no fork) and a
:class:`SnapshotJob` serializes it with :class:`~kvrepl.rdb.RdbWriter` in slices of a couple
of milliseconds, yielding to trio between slices, so clients keep being served while millions
of keys are written. BGSAVE and full syncs both run one.

The bytes are streamed, never gathered: the job appends chunks to one shared buffer and each
reader (:class:`SnapshotReader`: a replica's socket, or the task that feeds a push
:class:`Consumer` such as a :class:`FileConsumer`) takes them at its own pace, a chunk
counting as held until its reader is done with it. Chunks are a quarter of
``buffer_limit``; after each the producer waits until the slowest reader leaves at most half
the limit held, and batches of keys are sized to an eighth of a chunk, so what is held stays
under ``buffer_limit`` whatever the dataset (only a single value whose encoding exceeds a
quarter of the limit can push past it, by its own size). The slowest reader paces the job,
as the slowest replica paces Redis's diskless transfer. :attr:`SnapshotJob.peak_buffered` is
the high-water mark, for tests and benchmarks.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from time import perf_counter
from typing import Any, Protocol

import trio

from kvrepl.delays import delay_seconds
from kvrepl.log import logger
from kvrepl.rdb import RdbWriter
from kvrepl.store.snapshot import KeyspaceView

#: How long one slice of serialization may run before the job yields to other tasks.
SLICE_SECONDS = 0.002
#: Keys the view hands over at a time, at most (fewer when values are big: see _batch_size).
VIEW_BATCH = 128
#: Bytes the producer may hold ahead of its slowest reader (see SnapshotJob.buffer_limit).
SNAPSHOT_BUFFER = 1 << 20

_temp_counter = itertools.count(1)


class SnapshotFailed(Exception):
    """The snapshot a reader was following will not complete (failed or cancelled)."""


# -- consumers of a snapshot ------------------------------------------------------------------


class Consumer(Protocol):
    """Something that receives the bytes of one RDB, in order (the job feeds it from a task
    of its own, through a :class:`SnapshotReader`)."""

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


#: REDIS_AUTOSYNC_BYTES: with rdb-save-incremental-fsync / aof-rewrite-incremental-fsync, a
#: file being saved is synced every 4 MB, so the kernel never holds too many dirty pages.
AUTOSYNC_BYTES = 4 * 1024 * 1024
_SYNC_FILE_RANGE_WAIT_BEFORE, _SYNC_FILE_RANGE_WRITE, _SYNC_FILE_RANGE_WAIT_AFTER = 1, 2, 4


def _load_sync_file_range() -> Callable[[int, int, int, int], None] | None:
    """Linux's sync_file_range(2) through libc (Python does not wrap it), or None."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
    function.restype = ctypes.c_int

    def sync_file_range(fd: int, offset: int, nbytes: int, flags: int) -> None:
        if function(fd, offset, nbytes, flags) == -1:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno))

    return sync_file_range


_sync_file_range = _load_sync_file_range()


class TempFile:
    """An RDB being written to ``temp`` and renamed to ``path`` once complete and fsynced
    (rdbSave): a crash or a failure at any point leaves the previous ``path`` intact.

    ``autosync`` (bytes, 0: off) is rio's autosync: every that many bytes the writes are
    synced, as Redis's rioFileWrite does on Linux (sync_file_range starts the writeout of
    the window just written and waits for the one before it), or with fdatasync where
    sync_file_range is missing. :attr:`autosyncs` counts them."""

    def __init__(self, path: str, temp: str, autosync: int = 0) -> None:
        self.path = path
        self.temp = temp
        self.fd: int | None = None
        self.bytes_written = 0
        self.autosync = autosync
        self.autosyncs = 0

    def open(self) -> None:
        self.fd = os.open(self.temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        autosync = self.autosync
        while view:
            part = view
            if autosync:
                # No write crosses a window's end (rioFileWrite's alignment).
                part = view[:autosync - self.bytes_written % autosync]
            while part:
                written = os.write(self.fd, part)  # type: ignore[arg-type]
                part, view = part[written:], view[written:]
                self.bytes_written += written
            if autosync and self.bytes_written % autosync == 0:
                self._autosync()

    def _autosync(self) -> None:
        processed, window, fd = self.bytes_written, self.autosync, self.fd
        assert fd is not None
        if _sync_file_range is None:
            os.fdatasync(fd)
        else:
            _sync_file_range(fd, processed - window, window, _SYNC_FILE_RANGE_WRITE)
            if processed >= 2 * window:
                _sync_file_range(fd, processed - 2 * window, window,
                                 _SYNC_FILE_RANGE_WAIT_BEFORE | _SYNC_FILE_RANGE_WRITE
                                 | _SYNC_FILE_RANGE_WAIT_AFTER)
        self.autosyncs += 1

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
    """Writes a snapshot to ``path`` through a temp file, each chunk as it comes (no buffer
    of its own: the job's is the only one). Writes, fsync and the rename run in worker
    threads (renaming over a big old dump frees its blocks, which takes a while); a lock
    makes "not aborted, so rename" atomic against :meth:`abort`, so a cancelled BGSAVE can
    never overwrite a newer dump."""

    def __init__(self, path: str, temp: str | None = None, autosync: int = 0) -> None:
        self.file = TempFile(path, temp or temp_path(path, background=True), autosync)
        self.aborted = False
        self.committed = False
        self.error: BaseException | None = None
        self._busy = False  # a worker thread is using the descriptor
        self._lock = threading.Lock()

    @property
    def path(self) -> str:
        return self.file.path

    async def write(self, chunk: bytes) -> None:
        if self.aborted:
            raise trio.BrokenResourceError("snapshot aborted")
        if self.file.fd is None:
            self.file.open()
        await self._in_thread(lambda: self.file.write(chunk))

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

    def _commit(self) -> None:
        with self._lock:
            if self.aborted:
                return
            self.file.commit()
            self.committed = True
        self.file.sync_dir()

    async def finish(self) -> None:
        try:
            if self.aborted:
                raise trio.BrokenResourceError("snapshot aborted")
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
        if self._busy:
            # The worker thread still uses the descriptor: closing it now could let the
            # number be reused under its feet. Unlink now, close when the thread is back.
            try:
                os.unlink(self.file.temp)
            except OSError:
                pass
        else:
            self.file.discard()


# -- readers ----------------------------------------------------------------------------------


class SnapshotReader:
    """One reader's place in a job's output: ``async for chunk in reader`` gives every
    chunk in order and ends when the RDB is complete; SnapshotFailed when the job failed or
    was cancelled. :meth:`close` detaches it (the job no longer waits for it).

    A chunk counts as buffered until the reader asks for the next one (or closes): while a
    reader sends or writes a chunk it still holds it."""

    def __init__(self, job: SnapshotJob) -> None:
        self.job = job
        self.position = 0  # bytes of the RDB released (taken, and done with)
        self.closed = False
        self._held = 0  # size of the chunk handed out last, not released yet

    def __aiter__(self) -> SnapshotReader:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self.receive()
        if chunk is None:
            raise StopAsyncIteration
        return chunk

    async def receive(self) -> bytes | None:
        """The next chunk, waiting for the producer; None once the RDB is complete."""
        job = self.job
        if self._held:
            self.position += self._held
            self._held = 0
            job._reader_moved()
        while True:
            if self.closed:
                raise trio.ClosedResourceError("snapshot reader closed")
            chunk = job._chunk_at(self.position)
            if chunk is not None:
                self._held = len(chunk)
                return chunk
            if job._produced:
                job._readers_finished += 1
                return None
            if job.status in (FAILED, CANCELLED):
                raise SnapshotFailed(str(job.error) if job.error else job.status)
            await job._more.wait()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.job._reader_closed(self)


# -- the snapshot job -------------------------------------------------------------------------

PENDING, RUNNING, DONE, FAILED, CANCELLED = "pending", "running", "done", "failed", "cancelled"


class SnapshotJob:
    """One point-in-time RDB of a keyspace, serialized in slices, streamed to readers.

    The snapshot instant is :meth:`begin` (called by :meth:`start` or :meth:`run`): the view
    is taken and ``aux`` (a list of AUX pairs, or a callable returning one, so that a
    replication offset can be read at that very instant) is fixed; ``on_begin`` callbacks run
    right then, synchronously. Readers (:meth:`open_reader`) and push consumers
    (:meth:`add_consumer`, each fed by a task of the job) may be added until the first bytes
    are produced (:attr:`joinable`). A consumer that raises is detached and aborted, a reader
    that closes is forgotten, the others carry on; when none is left the job stops.
    ``on_done`` callbacks get the job when it ends, whatever the outcome (:attr:`status`):
    for a push consumer that is after its ``finish()``; pull readers may still be taking
    the last chunks then.

    ``buffer_limit`` bounds the bytes produced and not yet taken by every reader.
    """

    def __init__(self, keyspace: Any, *, config: Any = None, aux: Any = None,
                 functions: Iterable[bytes] = (), compression: bool | None = None,
                 checksum: bool | None = None, slice_seconds: float = SLICE_SECONDS,
                 batch: int = VIEW_BATCH, buffer_limit: int | None = None,
                 writer: Any = None) -> None:
        self.keyspace = keyspace
        self.config = config
        if compression is None:
            compression = getattr(config, "rdbcompression", True)
        if checksum is None:
            checksum = getattr(config, "rdbchecksum", True)
        # Anything with RdbWriter's begin / write_batch / finish (an AOF base as commands).
        self.writer = writer or RdbWriter(compression=compression, checksum=checksum,
                                          config=config)
        self._aux = aux
        self._functions = list(functions)
        self.slice_seconds = slice_seconds
        self.batch = batch
        self.buffer_limit = max(1024, buffer_limit or SNAPSHOT_BUFFER)
        # Chunks are emitted at about a quarter of the limit: readers a chunk or two behind
        # still leave the producer room to work.
        self.chunk_size = self.buffer_limit // 4
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
        self.peak_buffered = 0  # the most bytes held at once (emitted + being serialized)
        self.began_at: float | None = None  # unix time of the snapshot instant
        # rdb-key-save-delay, fixed at the snapshot instant as a forked child's copy is
        self.key_delay = 0
        self.ended_at: float | None = None
        self.done = trio.Event()
        self._readers: list[SnapshotReader] = []
        self._readers_finished = 0  # readers that were given the whole RDB
        self._pumps: list[tuple[Consumer, SnapshotReader]] = []
        self._chunks: deque[bytes] = deque()  # emitted, not yet taken by every reader
        self._chunks_start = 0  # RDB offset of _chunks[0]
        self._chunks_size = 0
        self._pending_size = 0  # serialized, not yet emitted
        self._more = trio.Event()  # set (and replaced) when a chunk is emitted or the job ends
        self._room = trio.Event()  # set (and replaced) when a reader moves on or goes away
        self._emitted = False
        self._produced = False
        self._scope: trio.CancelScope | None = None
        self._cancel_requested = False
        self._header = b""
        self._sizes: dict[int, tuple[int, int]] = {}

    # -- setting up ------------------------------------------------------------------------
    @property
    def joinable(self) -> bool:
        """True while a new reader would still get the whole RDB."""
        return not self._emitted and self.status in (PENDING, RUNNING)

    @property
    def ok(self) -> bool:
        """True once every byte was produced and handed to the readers (a channel's reader
        checks this when the channel ends: it is closed on failure too)."""
        return self._produced

    @property
    def buffered(self) -> int:
        """Bytes held now: emitted and not yet taken by every reader, plus being serialized."""
        return self._chunks_size + self._pending_size

    @property
    def reader_count(self) -> int:
        """Readers still attached, push consumers' included."""
        return len(self._readers)

    def open_reader(self) -> SnapshotReader:
        """A reader of the whole RDB (see :class:`SnapshotReader`); close it when done."""
        if not self.joinable:
            raise RuntimeError("the snapshot already started sending; wait for the next one")
        reader = SnapshotReader(self)
        self._readers.append(reader)
        return reader

    def add_consumer(self, consumer: Consumer) -> Consumer:
        """A push consumer, fed by a task of the job from a reader of its own."""
        reader = self.open_reader()
        self.consumers.append(consumer)
        self._pumps.append((consumer, reader))
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
        self.key_delay = int(getattr(self.config, "rdb_key_save_delay", 0) or 0)
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
        for pump in self._pumps:
            if pump[0] is consumer:
                self._pumps.remove(pump)
                pump[1].close()
                break
        if consumer in self.consumers:
            self.consumers.remove(consumer)
            consumer.abort(None)

    # -- the shared buffer -----------------------------------------------------------------
    def _chunk_at(self, position: int) -> bytes | None:
        offset = self._chunks_start
        for chunk in self._chunks:
            if offset == position:
                return chunk
            offset += len(chunk)
        return None

    def _reader_moved(self) -> None:
        self._trim()
        self._room.set()

    def _reader_closed(self, reader: SnapshotReader) -> None:
        if reader in self._readers:
            self._readers.remove(reader)
        self._trim()
        self._room.set()

    def _trim(self) -> None:
        """Drop the chunks every reader has taken."""
        low = min((r.position for r in self._readers), default=self._chunks_start
                  + self._chunks_size)
        chunks = self._chunks
        while chunks and self._chunks_start + len(chunks[0]) <= low:
            size = len(chunks.popleft())
            self._chunks_start += size
            self._chunks_size -= size

    def _note_buffered(self) -> None:
        held = self._chunks_size + self._pending_size
        if held > self.peak_buffered:
            self.peak_buffered = held

    # -- running ---------------------------------------------------------------------------
    async def run(self) -> None:
        """Serialize the snapshot, streaming every chunk to every reader."""
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
                failure: Exception | None = None
                async with trio.open_nursery() as nursery:
                    for consumer, reader in list(self._pumps):
                        nursery.start_soon(self._pump, consumer, reader)
                    try:
                        await self._produce(view)
                    except Exception as err:  # raised below, not inside an exception group
                        failure = err
                        nursery.cancel_scope.cancel()
                if failure is not None:
                    raise failure
                if self._produced:
                    if self.consumers or self._readers or self._readers_finished:
                        self._end(DONE)
                    else:
                        self._end_without_readers()
            if scope.cancelled_caught:
                self._abort_all(None)
                self._end(CANCELLED)
        except _NoReaders:
            self._end_without_readers()
        except Exception as err:
            logger.warning("Snapshot failed: %s", err)
            self._abort_all(err)
            self._end(FAILED, err)
        except BaseException as err:
            # The node stops (Cancelled, possibly grouped with the pumps'): nobody gets a
            # partial RDB.
            self._abort_all(None if _cancelled(err) else err)
            if _cancelled(err):
                self._end(CANCELLED)
            else:
                self._end(FAILED, err)
            raise
        finally:
            view.close()

    async def _pump(self, consumer: Consumer, reader: SnapshotReader) -> None:
        """Feed one push consumer from its reader; its failure detaches only it."""
        try:
            async for chunk in reader:
                await consumer.write(chunk)
            await consumer.finish()
        except SnapshotFailed:
            return  # the job aborts every consumer itself
        except Exception as err:
            if not reader.closed:  # else remove_consumer took it away: not a failure
                self._detach(consumer, err)
        finally:
            reader.close()

    def _batch_size(self) -> int:
        """Keys per batch: VIEW_BATCH, fewer when values are big, so that one batch
        serializes to about an eighth of a chunk and the buffer bound stays tight. One key
        at a time under rdb-key-save-delay: each key is out before its delay, as in Redis."""
        if self.key_delay:
            return 1
        if not self.keys_done:
            return min(self.batch, 8)
        per_key = max(1.0, (self.bytes_out + self._pending_size) / self.keys_done)
        return max(1, min(self.batch, int(self.chunk_size / 8 / per_key)))

    async def _produce(self, view: KeyspaceView) -> None:
        writer = self.writer
        sizes = self._sizes
        slice_seconds = self.slice_seconds
        await self._emit(self._header)
        pending: list[bytes] = []
        started = perf_counter()
        for db, items, expires in view.batches(self._batch_size):
            chunk = writer.write_batch(db, items, expires, sizes)
            pending.append(chunk)
            self._pending_size += len(chunk)
            self.keys_done += len(items)
            self._note_buffered()
            now = perf_counter()
            if self.key_delay:
                # The test hook: emit the key, then sleep without blocking the event loop.
                self._slice_done(now - started)
                await self._emit(b"".join(pending))
                pending = []
                await trio.sleep(delay_seconds(self.key_delay, len(items)))
                started = perf_counter()
            elif self._pending_size >= self.chunk_size or now - started >= slice_seconds:
                self._slice_done(now - started)
                await self._emit(b"".join(pending))
                pending = []
                # _emit may not have yielded (readers keep up): yield anyway.
                await trio.lowlevel.checkpoint()
                started = perf_counter()
        pending.append(writer.finish())
        self._slice_done(perf_counter() - started)
        await self._emit(b"".join(pending))
        self._produced = True
        self._wake_readers()

    def _slice_done(self, seconds: float) -> None:
        self.slices += 1
        if seconds > self.longest_slice:
            self.longest_slice = seconds

    async def _emit(self, chunk: bytes) -> None:
        """Hand ``chunk`` to the readers, then wait until the slowest one leaves room for the
        next: at most half the limit still held, so that the next chunk (a quarter, plus
        the batch that crosses it) keeps the total under the limit."""
        self._pending_size = 0
        if chunk:
            self._emitted = True
            self.bytes_out += len(chunk)
            self._chunks.append(chunk)
            self._chunks_size += len(chunk)
            self._note_buffered()
            self._wake_readers()
        room = self.buffer_limit - 2 * self.chunk_size
        while self._readers and self._chunks_size > room:
            self._room = trio.Event()
            await self._room.wait()
        if not self._readers:
            raise _NoReaders()

    def _wake_readers(self) -> None:
        self._more.set()
        self._more = trio.Event()

    def _end_without_readers(self) -> None:
        # Every reader went away: failed consumers make it a failure, the rest a cancel.
        if self.failed_consumers and not self._cancel_requested:
            self._end(FAILED, self.failed_consumers[0][1])
        else:
            self._end(CANCELLED)

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
        if status != DONE:
            # Readers of a job that will not complete need nothing more from the buffer.
            self._chunks.clear()
            self._chunks_size = 0
        self._wake_readers()
        self._room.set()
        self.done.set()
        for callback in self.on_done:
            try:
                callback(self)
            except Exception:  # a callback's bug must not hide the job's outcome
                logger.exception("Error in a snapshot callback")
        # The callbacks are closures over their owners (replica links that point back to
        # this job): dropped, the job is no cycle, and reference counting frees it even
        # where the collector never looks (objects frozen by kvrepl.gc_policy).
        self.on_begin.clear()
        self.on_done.clear()


def _cancelled(err: BaseException) -> bool:
    """``err`` is trio's Cancelled, or a group of nothing else."""
    group = getattr(err, "exceptions", None)
    if group is not None:
        return all(_cancelled(inner) for inner in group)
    return isinstance(err, trio.Cancelled)


class _NoReaders(Exception):
    """Every reader went away: there is nobody left to produce for."""

    def __str__(self) -> str:
        return "every consumer of the snapshot failed"
