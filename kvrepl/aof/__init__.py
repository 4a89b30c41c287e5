"""The append-only file: Redis 7.0's multi-part AOF (aof.c), written and loaded.

``dir/appenddirname`` holds a manifest (:mod:`kvrepl.aof.manifest`), one base file (an RDB
written by the one snapshot producer, :class:`~kvrepl.snapshot_producer.SnapshotJob`) and
incremental files of commands. Every write is appended as it is propagated: the engine's
propagation listeners give the same rewritten commands the replication stream carries,
encoded by the same :class:`~kvrepl.replication.stream.StreamFeed` (a SELECT when the db
changes, MULTI ... EXEC kept whole by the engine's end of unit).

Writes gather in :attr:`AppendOnlyFile.buf`; :meth:`AppendOnlyFile.flush` writes them (and
with ``appendfsync always`` fsyncs) before any reply leaves (the server calls it where it
sends replies, as Redis's beforeSleep does before handleClientsWithPendingWrites);
``everysec`` fsyncs once a second in a worker thread, with Redis's postponed-write rule
(``aof_delayed_fsync``). A rewrite (BGREWRITEAOF, automatic, CONFIG SET appendonly yes)
opens a new incremental file at the snapshot instant, writes the new base through the
snapshot producer, then switches the manifest atomically (temp file, fsync, rename); a
failed rewrite leaves the files as they were. The manifest writes of a rewrite and the
removal of the files it replaced run in worker threads (see :meth:`AppendOnlyFile.rewrite`
and :meth:`AppendOnlyFile._finish_in_background`), so the event loop never waits on a disk.
DEBUG LOADAOF is :func:`debug_loadaof`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import trio

from kvrepl.aof.manifest import (
    BASE,
    AofFile,
    Manifest,
    ManifestError,
    manifest_name,
    parse_manifest,
    temp_incr_name,
    temp_manifest_name,
)
from kvrepl.aof.reader import AofFormatError, CommandReader
from kvrepl.aof.rewrite import CommandWriter
from kvrepl.errors import ReplyError
from kvrepl.log import logger
from kvrepl.rdb import RdbError, default_aux
from kvrepl.replication.stream import StreamFeed, encode_command, encode_commands
from kvrepl.snapshot_producer import (
    CANCELLED,
    DONE,
    PENDING,
    RUNNING,
    FileConsumer,
    SnapshotJob,
    TempFile,
)

if TYPE_CHECKING:
    from kvrepl.commands.core import Engine

OFF, ON, WAIT_REWRITE = "off", "on", "wait_rewrite"
#: Redis postpones a write behind a running everysec fsync for at most this many seconds.
POSTPONE_SECONDS = 2
#: AOF_WRITE_LOG_ERROR_RATE: a failing write is logged at most this often.
WRITE_ERROR_LOG_SECONDS = 30
#: aofRewriteLimited: after this many failures in a row, automatic rewrites wait 1, 2, 4 ...
#: minutes (at most an hour); BGREWRITEAOF still runs at once.
LIMIT_THRESHOLD = 3
LIMIT_MAX_MINUTES = 60
#: Bytes read from an AOF file at a time while loading, and commands run between yields.
LOAD_READ = 1 << 20
LOAD_BATCH = 1024

__all__ = ["AofLoadError", "AppendOnlyFile", "attach", "cron", "debug_loadaof", "info_fields",
           "load_on_startup"]


class AofLoadError(Exception):
    """The AOF cannot be loaded (Redis exits); the message says which file and where."""


class AppendOnlyFile:
    """One engine's AOF: Redis's ``server.aof_*`` state and the functions of aof.c."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.config = engine.config
        self.state = OFF
        self.manifest = Manifest()
        self.fd: int | None = None
        self.buf = bytearray()  # aof_buf: written by flush()
        self.feed = StreamFeed()  # aof_selected_db, and the encoding of the stream
        self.feed.consumers.append(self.buf.extend)
        self.current_size = 0  # aof_current_size
        self.base_size = 0  # aof_rewrite_base_size
        self.last_incr_size = 0
        self.last_incr_fsync_offset = 0
        self.last_fsync = int(time.time())
        self.fsyncs_running = 0  # background fsync jobs (bioPendingJobsOfType)
        # The last background job's end: each job waits for the one before, in order, as
        # Redis's one BIO_AOF_FSYNC thread runs them (an fsync of the old file must not
        # run after the job that closes it).
        self._last_background_job: trio.Event | None = None
        self.postponed_start = 0
        self.delayed_fsync = 0
        self.write_ok = True
        self.fsync_ok = True
        self._write_error_logged = -float("inf")
        self._may_log_write_error = True
        self.cur_timestamp = 0
        self.job: SnapshotJob | None = None  # the running rewrite
        self._preparing = False  # a rewrite's new incremental file is being created
        self.rewrite_scheduled = False
        self.rewrite_time_start = -1
        self.rewrite_time_last = -1
        self.lastbgrewrite_ok = True
        self.rewrites = 0
        self.consecutive_failures = 0
        self._limit_minutes = 0
        self._limit_until = 0
        self.nursery: trio.Nursery | None = None
        self._flusher_running = False

    # -- paths -----------------------------------------------------------------------------
    @property
    def dirname(self) -> str:
        return os.path.join(self.config.dir, self.config.appenddirname)

    def path(self, name: str) -> str:
        return os.path.join(self.dirname, name)

    @property
    def filename(self) -> str:
        return self.config.appendfilename

    def read_manifest(self) -> None:
        """aofLoadManifestFromDisk: ManifestError when it is malformed."""
        try:
            with open(self.path(manifest_name(self.filename)), encoding="utf-8",
                      errors="surrogateescape") as source:
                text = source.read()
        except FileNotFoundError:
            self.manifest = Manifest()
            return
        self.manifest = parse_manifest(text)

    def upgrade_if_needed(self) -> None:
        """aofUpgradePrepare: a pre-7.0 ``dir/appendfilename`` becomes the base of a
        manifest in ``appenddirname`` (moved there), so that it is loaded, not ignored."""
        old = os.path.join(self.config.dir, self.filename)
        if not os.path.isfile(old):
            return
        manifest = self.manifest
        if not (not os.path.isdir(self.dirname) or manifest.empty
                or (manifest.base is not None and not manifest.incr
                    and manifest.base.name == self.filename
                    and not os.path.exists(self.path(self.filename)))):
            return
        os.makedirs(self.dirname, exist_ok=True)
        upgraded = Manifest(base=AofFile(self.filename, 1, BASE), base_seq=1)
        self.persist_manifest(upgraded)
        os.rename(old, self.path(self.filename))
        self.manifest = upgraded
        logger.info("Successfully migrated an old-style AOF into the AOF directory")

    def persist_manifest(self, manifest: Manifest) -> None:
        """writeAofManifestFile: temp file, fsync, rename, fsync of the directory. OSError
        leaves the old manifest in place."""
        _write_manifest(self.dirname, self.filename, manifest.text())

    def _size(self, name: str) -> int:
        try:
            return os.stat(self.path(name)).st_size
        except OSError:
            return 0

    def delete_history(self) -> None:
        """aofDelHistoryFiles: none while ``aof-disable-auto-gc`` keeps them."""
        if self.config.aof_disable_auto_gc or not self.manifest.history:
            return
        for info in self.manifest.history:
            logger.info("Removing the history file %s in the background", info.name)
            self._bg_unlink(self.path(info.name))
        self.manifest.history = []
        try:
            self.persist_manifest(self.manifest)
        except OSError as err:
            logger.warning("Can't persist the AOF manifest: %s", err)

    def _bg_unlink(self, path: str) -> None:
        """bg_unlink: the name goes now; the blocks of a big file are freed by the last
        close, in a worker thread (freeing a 100 MB base takes tens of milliseconds)."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            _unlink(path)
            return
        _unlink(path)
        self._in_background(lambda: os.close(fd))

    def _in_background(self, work: Callable[[], object]) -> None:
        """Run ``work`` in a worker thread (inline without an event loop)."""
        async def run() -> None:
            await trio.to_thread.run_sync(work)

        try:
            if self.nursery is None:
                raise RuntimeError("no event loop")
            self.nursery.start_soon(run)
        except RuntimeError:
            work()

    # -- feeding ---------------------------------------------------------------------------
    def _listen(self, on: bool) -> None:
        listeners = self.engine.propagate_listeners
        if on and self._propagate not in listeners:
            listeners.append(self._propagate)
            self.engine.run_listeners[self._propagate] = self._propagate_run
        elif not on and self._propagate in listeners:
            listeners.remove(self._propagate)
            self.engine.run_listeners.pop(self._propagate, None)

    def _propagate(self, db: int, argv: list[bytes]) -> None:
        self._append(db, encode_command(argv))

    def _propagate_run(self, db: int, commands: list[list[bytes]],
                       encoded: bytes | None) -> None:
        self._append(db, encode_commands(commands) if encoded is None else encoded)

    def _append(self, db: int, data: bytes) -> None:
        """feedAppendOnlyFile: into the buffer while ON, or while the first rewrite runs."""
        if self.state != ON and self.job is None:
            return
        if self.config.aof_timestamp_enabled:
            now = int(time.time())
            if self.cur_timestamp < now:
                self.cur_timestamp = now
                self.buf += b"#TS:%d\r\n" % now
        self.feed.feed_encoded(db, data)

    # -- writing ---------------------------------------------------------------------------
    def flush(self, force: bool = False) -> None:
        """flushAppendOnlyFile: write the buffer, then fsync as ``appendfsync`` says."""
        if self.fd is None:
            return
        policy = self.config.appendfsync
        now = int(time.time())
        if not self.buf:
            if self.last_incr_fsync_offset != self.last_incr_size and (
                    policy == "always" or (policy == "everysec" and now > self.last_fsync
                                           and not self.fsyncs_running)):
                self._fsync(now)
            return
        if policy == "everysec" and not force and self.fsyncs_running:
            if not self.postponed_start:
                self.postponed_start = now
                return
            if now - self.postponed_start < POSTPONE_SECONDS:
                return
            self.delayed_fsync += 1
            logger.info("Asynchronous AOF fsync is taking too long (disk is busy?). Writing "
                        "the AOF buffer without waiting for fsync to complete, this may "
                        "slow down Redis.")
        data = bytes(self.buf)
        written = 0
        try:
            written = _write_all(self.fd, data)
        except OSError as err:
            written = getattr(err, "written", 0)
            self._write_failed(err, written, len(data))
            if policy == "always":
                # The write happened in memory and cannot be taken back: Redis exits.
                logger.warning("Can't recover from AOF write error when the AOF fsync "
                               "policy is 'always'. Exiting...")
                os._exit(1)
            if written:
                # A short write: the file is cut back to its last whole command and the
                # whole buffer is tried again, as Redis does (aof_last_write_errno ENOSPC).
                try:
                    os.ftruncate(self.fd, self.last_incr_size)
                    written = 0
                except OSError as cut:
                    if self._may_log_write_error:
                        logger.warning("Could not remove short write from the append-only "
                                       "file.  Redis may refuse to load the AOF the next "
                                       "time it starts.  ftruncate: %s", cut.strerror or cut)
                err = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.write_ok = False
            self._set_error(err)
            del self.buf[:written]
            self.current_size += written
            self.last_incr_size += written
            return
        self.postponed_start = 0
        if not self.write_ok:
            logger.warning("AOF write error looks solved, Redis can write again.")
            self.write_ok = True
            self._set_error(None)
        self.current_size += written
        self.last_incr_size += written
        self.buf.clear()
        self._fsync(now)

    def _write_failed(self, err: OSError, written: int, expected: int) -> None:
        """Log a failed AOF write, at most once every WRITE_ERROR_LOG_SECONDS."""
        now = time.monotonic()
        self._may_log_write_error = now - self._write_error_logged > WRITE_ERROR_LOG_SECONDS
        if not self._may_log_write_error:
            return
        self._write_error_logged = now
        if written:
            logger.warning("Short write while writing to the AOF file: (nwritten=%d, "
                           "expected=%d)", written, expected)
        else:
            logger.warning("Error writing to the AOF file: %s", err.strerror or err)

    def _fsync(self, now: int) -> None:
        if self.config.no_appendfsync_on_rewrite and self._snapshot_running():
            return
        policy = self.config.appendfsync
        if policy == "always":
            try:
                os.fdatasync(self.fd)  # type: ignore[arg-type]
            except OSError as err:
                logger.warning("Can't persist AOF for fsync error when the AOF fsync policy "
                               "is 'always': %s. Exiting...", err.strerror or err)
                os._exit(1)
            self.last_incr_fsync_offset = self.last_incr_size
            self.last_fsync = now
        elif policy == "everysec" and now > self.last_fsync:
            if not self.fsyncs_running:
                self._background_fsync(self.fd, close=False)  # type: ignore[arg-type]
                self.last_incr_fsync_offset = self.last_incr_size
            self.last_fsync = now

    def _set_error(self, err: OSError | None) -> None:
        """The engine refuses writes with -MISCONF while the last write or fsync failed."""
        if err is not None:
            self.engine.aof_error = err.strerror or str(err)
        elif self.write_ok and self.fsync_ok:
            self.engine.aof_error = ""

    def _snapshot_running(self) -> bool:
        from kvrepl import persistence

        return persistence.attach(self.engine).bgsave is not None

    def _background_fsync(self, fd: int, close: bool) -> None:
        """aof_background_fsync(_and_close): in a worker thread, off the event loop."""
        def work() -> OSError | None:
            try:
                os.fdatasync(fd)
            except OSError as err:
                return err
            finally:
                if close:
                    os.close(fd)
            return None

        def done(err: OSError | None) -> None:
            # aof_bio_fsync_status: a failed background fsync stops writes until one works.
            if err is not None:
                logger.warning("Fail to fsync the AOF file: %s", err.strerror or err)
            self.fsync_ok = err is None
            self._set_error(err)

        previous, finished = self._last_background_job, trio.Event()

        async def run() -> None:
            try:
                if previous is not None:
                    await previous.wait()
                done(await trio.to_thread.run_sync(work))
            finally:
                self.fsyncs_running -= 1
                finished.set()

        self.fsyncs_running += 1
        try:
            if self.nursery is None:
                raise RuntimeError("no event loop")
            self.nursery.start_soon(run)
            self._last_background_job = finished
        except RuntimeError:
            self.fsyncs_running -= 1
            done(work())

    async def _flusher(self) -> None:
        """flushAppendOnlyFile(0) every cron tick, for writes no reply flushed (the embedded
        API with everysec or no, active expiry) and the once-a-second fsync of everysec.
        Replies flush what they depend on themselves (the server before it sends them)."""
        self._flusher_running = True
        try:
            while True:
                await trio.sleep(1 / self.config.hz)
                if self.state != OFF:
                    self.flush()
        finally:
            self._flusher_running = False

    def _start_flusher(self) -> None:
        if not self._flusher_running and self.nursery is not None:
            try:
                self.nursery.start_soon(self._flusher)
                self._flusher_running = True
            except RuntimeError:
                self.nursery = None

    # -- starting and stopping -------------------------------------------------------------
    def open_on_start(self) -> None:
        """aofOpenIfNeededOnServerStart: a base for an empty start, the last incremental
        file opened for appending, the manifest on disk. OSError: the node cannot start."""
        from kvrepl import persistence

        os.makedirs(self.dirname, exist_ok=True)
        manifest = self.manifest.copy()
        if manifest.empty:
            name = manifest.new_base(self.filename, rdb=self.config.aof_use_rdb_preamble)
            if self.config.aof_use_rdb_preamble:
                persistence.write_dump(self.engine, self.path(name), aux=self._aux(),
                                       incremental_fsync=self.config.aof_rewrite_incremental_fsync)
            else:  # an empty dataset as commands: nothing (its time, if annotated)
                self._write_file(self.path(name), CommandWriter(
                    self.config.aof_timestamp_enabled).begin())
            logger.info("Creating AOF base file %s on server start", name)
        had_incr = bool(manifest.incr)
        name = manifest.last_incr(self.filename)
        self.fd = os.open(self.path(name), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if manifest != self.manifest or not os.path.exists(
                self.path(manifest_name(self.filename))):
            self.persist_manifest(manifest)
        self.manifest = manifest
        self.last_incr_size = self.last_incr_fsync_offset = self._size(name)
        self._set_sizes()
        logger.info("%s AOF incr file %s on server start",
                    "Opening" if had_incr else "Creating", name)
        self.state = ON
        self.feed.selected_db = -1
        self._listen(True)
        self._start_flusher()
        self.delete_history()

    def _write_file(self, path: str, data: bytes) -> None:
        target = TempFile(path, os.path.join(self.dirname, f"temp-rewriteaof-{os.getpid()}.aof"))
        target.open()
        try:
            target.write(data)
            target.sync_and_close()
            target.commit()
        except OSError:
            target.discard()
            raise
        target.sync_dir()

    def _set_sizes(self) -> None:
        base = self.manifest.base
        self.base_size = self._size(base.name) if base else 0
        self.current_size = self.base_size + sum(self._size(f.name) for f in self.manifest.incr)

    def _aux(self) -> list[tuple[bytes, bytes]]:
        return default_aux(aof_base=True)

    def start(self) -> bool:
        """startAppendOnly (CONFIG SET appendonly yes): a rewrite makes the first base."""
        from kvrepl import persistence

        if self.manifest.empty:
            # Redis read the manifest at startup even with the AOF off: a directory left by
            # an earlier run goes on from its numbers (its files become history).
            try:
                self.read_manifest()
            except (ManifestError, OSError) as err:
                logger.warning("Ignoring the AOF manifest in %s: %s", self.dirname, err)
        self.state = WAIT_REWRITE
        st = persistence.attach(self.engine)
        if (st.bgsave is not None and self.job is None) or self.finishing:
            self.rewrite_scheduled = True
            logger.warning("AOF was enabled but there is already another background "
                           "operation. An AOF background was scheduled to start when "
                           "possible.")
        elif self.engine.depth > 1:  # inside EXEC: its writes are not propagated yet
            self.rewrite_scheduled = True
            logger.warning("AOF was enabled during a transaction. An AOF background was "
                           "scheduled to start when possible.")
        else:
            if self.job is not None:
                self.kill_rewrite()
            if not self.rewrite():
                self.state = OFF
                logger.warning("Redis needs to enable the AOF but can't trigger a background "
                               "AOF rewrite operation. Check the above logs for more info "
                               "about the error.")
                return False
        self._listen(True)
        self._start_flusher()
        self.last_fsync = int(time.time())
        if not (self.write_ok and self.fsync_ok):
            logger.warning("AOF reopen, just ignore the last error.")
        self.write_ok = self.fsync_ok = True
        self._set_error(None)
        return True

    def stop(self) -> None:
        """stopAppendOnly (CONFIG SET appendonly no)."""
        if self.state == OFF:
            return
        self.flush(force=True)
        if self.fd is not None:
            try:
                os.fsync(self.fd)
                self.last_fsync = int(time.time())
            except OSError as err:
                logger.warning("Fail to fsync the AOF file: %s", err.strerror or err)
            os.close(self.fd)
        self.fd = None
        self.feed.selected_db = -1
        if self.state == WAIT_REWRITE:
            _unlink(self.path(temp_incr_name(self.filename)))
        self.state = OFF
        self.rewrite_scheduled = False
        self.last_incr_size = self.last_incr_fsync_offset = 0
        self.kill_rewrite()
        self.buf.clear()
        self._listen(False)
        self.engine.aof_error = ""  # only an enabled AOF refuses writes

    def close(self) -> None:
        """The node stops: what is buffered is written and fsynced (prepareForShutdown), a
        running rewrite is dropped, the file is closed."""
        if self.state != OFF:
            self.stop()

    def kill_rewrite(self) -> None:
        """killAppendOnlyChild."""
        from kvrepl import persistence

        job = self.job
        if job is None:
            return
        logger.info("Killing running AOF rewrite child")
        st = persistence.attach(self.engine)
        if st.bgsave is job:
            st.bgsave = None
        job.cancel()

    def after_full_sync(self) -> None:
        """A replica loaded its master's dataset: its AOF starts over from a rewrite, as
        Redis's restartAOFAfterSYNC does."""
        if self.state == OFF:
            return
        self.stop()
        if not self.start():
            logger.warning("Failed enabling the AOF after successful master "
                           "synchronization!")

    # -- rewriting -------------------------------------------------------------------------
    def rewrite(self) -> bool:
        """rewriteAppendOnlyFileBackground: a new incremental file from this instant on,
        and the snapshot of this instant written as the next base.

        While the AOF is on, the new incremental file must be in a manifest on disk before
        the first write goes to it (openNewIncrAofForAppend). Redis writes that manifest
        (two fsyncs) on its event loop; here, unless ``appendfsync always`` (whose
        every write fsyncs on the loop anyway), a worker thread creates the file and
        persists the manifest first, writes going on to the old file meanwhile, and then
        the switch to the new file and the snapshot instant happen together on the loop.
        The rewrite counts as in progress from the start."""
        from kvrepl import persistence

        st = persistence.attach(self.engine)
        if st.bgsave is not None or st.nursery is None or self.finishing or self._preparing:
            return False
        try:
            os.makedirs(self.dirname, exist_ok=True)
        except OSError as err:
            logger.warning("Can't open or create append-only dir %s: %s", self.dirname,
                           err.strerror or err)
            self.lastbgrewrite_ok = False
            return False
        deferred = (self.state == ON and self.config.appendfsync != "always"
                    and self.nursery is not None)
        if not deferred and not self._open_new_incr():
            self.lastbgrewrite_ok = False
            return False
        preamble = self.config.aof_use_rdb_preamble
        base_name = self.manifest.copy().new_base(self.filename, rdb=preamble)
        temp = os.path.join(self.config.dir, f"temp-rewriteaof-bg-{os.getpid()}.aof")
        consumer = FileConsumer(self.path(base_name), temp, persistence.autosync_bytes(
            self.config.aof_rewrite_incremental_fsync))
        # Nothing awaited since the new incremental file was opened: the snapshot instant
        # (start_job's begin, or run_job's) is the instant the old files end.
        job = persistence.start_job(self.engine, to_file=False, aux=self._aux(),
                                    setup=lambda job: job.add_consumer(consumer),
                                    kind="AOF rewrite", writer=None if preamble else
                                    CommandWriter(self.config.aof_timestamp_enabled),
                                    begin=not deferred)
        if job is None:
            self.lastbgrewrite_ok = False
            return False
        self.rewrites += 1
        self.job = job
        self.rewrite_scheduled = False
        self.rewrite_time_start = int(time.time())
        job.on_done.append(lambda job: self._rewrite_done(job, consumer, base_name))
        if deferred:
            assert self.nursery is not None
            self.nursery.start_soon(self._open_new_incr_then_begin, job)
        logger.info("Background append only file rewriting started")
        return True

    async def _open_new_incr_then_begin(self, job: SnapshotJob) -> None:
        """The deferred start of :meth:`rewrite`: the new incremental file and its manifest
        in a worker thread, then (on the loop, in one step) the switch and the snapshot."""
        from kvrepl import persistence

        manifest = self.manifest.copy()
        name = manifest.new_incr(self.filename)
        path, text = self.path(name), manifest.text()
        dirname, filename = self.dirname, self.filename

        def work() -> int:
            fd = _open_incr(path)
            try:
                _write_manifest(dirname, filename, text)
            except OSError:
                os.close(fd)
                raise
            return fd

        self._preparing = True  # a killed job's successor must not take the same name
        try:
            fd = await trio.to_thread.run_sync(work)
        except OSError as err:
            logger.warning("Can't open the append-only file %s or persist the AOF manifest: "
                           "%s", name, err.strerror or err)
            self.kill_rewrite()
            self.lastbgrewrite_ok = False
            self.consecutive_failures += 1
            return
        finally:
            self._preparing = False
        self.manifest = manifest  # on disk now, whatever happened meanwhile
        if self.state != ON:  # stopped meanwhile: nothing to write to the new file
            os.close(fd)
            return
        self._switch_incr(fd, name)
        if job.status == PENDING:  # not killed meanwhile
            persistence.run_job(self.engine, job)

    def _open_new_incr(self) -> bool:
        """openNewIncrAofForAppend (nothing to open while the AOF is off), all at once."""
        if self.state == OFF:
            return True
        manifest = None
        if self.state == WAIT_REWRITE:
            name = temp_incr_name(self.filename)
        else:
            manifest = self.manifest.copy()
            name = manifest.new_incr(self.filename)
        try:
            fd = _open_incr(self.path(name))
        except OSError as err:
            logger.warning("Can't open the append-only file %s: %s", name, err.strerror or err)
            return False
        if manifest is not None:
            try:
                self.persist_manifest(manifest)
            except OSError as err:
                logger.warning("Can't persist the AOF manifest: %s", err.strerror or err)
                os.close(fd)
                return False
            self.manifest = manifest
        self._switch_incr(fd, name)
        return True

    def _switch_incr(self, fd: int, name: str) -> None:
        """Writes go to the new incremental file ``fd`` from now on (the old one gets what
        the buffer holds, then is fsynced and closed in the background)."""
        self.feed.selected_db = -1
        self.flush(force=True)
        logger.info("Creating AOF incr file %s on background rewrite", name)
        if self.fd is not None:
            self._background_fsync(self.fd, close=True)
            self.last_fsync = int(time.time())
        self.fd = fd
        self.last_incr_size = self.last_incr_fsync_offset = 0
        self.cur_timestamp = 0  # each incremental file starts with its time annotation

    def _rewrite_done(self, job: SnapshotJob, consumer: FileConsumer, base_name: str) -> None:
        """backgroundRewriteDoneHandler."""
        current = self.job is job
        succeeded = job.status == DONE and consumer.committed
        if succeeded and current and self.state == ON and self._finish_in_background(
                job, base_name):
            return  # the rewrite stays in progress until the new manifest is on disk
        self._rewrite_ended(job)
        if succeeded:
            self._rewrite_succeeded(base_name)
        elif job.status == CANCELLED or (consumer.aborted and consumer.error is None):
            logger.warning("Background AOF rewrite terminated by cancellation")
        else:
            logger.warning("Background AOF rewrite terminated with error: %s",
                           consumer.error or job.error)
            self._rewrite_failed()
        if current and self.state == WAIT_REWRITE:
            # The rewrite that was to switch the AOF on did not: start over.
            self.buf.clear()
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None
            _unlink(self.path(temp_incr_name(self.filename)))
            self.rewrite_scheduled = True

    def _rewrite_ended(self, job: SnapshotJob) -> None:
        if self.job is job:
            self.job = None
        self.rewrite_time_last = int(time.time()) - self.rewrite_time_start
        self.rewrite_time_start = -1

    @property
    def finishing(self) -> bool:
        """The rewrite's base is written and its manifest is being persisted."""
        return self.job is not None and self.job.status not in (PENDING, RUNNING)

    def _finish_in_background(self, job: SnapshotJob, base_name: str) -> bool:
        """The end of a rewrite while the AOF is on, off the event loop: the new manifest
        (new base, the incremental file opened at the snapshot instant) is written and
        fsynced, then the files it replaced are removed, all in a worker thread, since two
        fsyncs and the freeing of the old base's blocks held the loop for 10-30 ms, far
        more on a busy disk. The manifest is written without the history Redis lists
        first and removes at once (aofDelHistoryFiles): the same outcome on disk, one
        fsync pair fewer; until it is on disk the old manifest and files are whole. False
        without an event loop (the caller finishes synchronously)."""
        manifest = self.manifest.copy()
        manifest.new_base(self.filename, rdb=base_name.endswith(".rdb"))
        manifest.mark_rewritten_incr_as_history(keep_last=True)
        history: list = []
        if not self.config.aof_disable_auto_gc:  # else they stay, listed as history
            history, manifest.history = manifest.history, []
        text = manifest.text()
        dirname, filename = self.dirname, self.filename

        def work() -> None:
            _write_manifest(dirname, filename, text)
            for info in history:
                _unlink(os.path.join(dirname, info.name))

        async def run() -> None:
            error: OSError | None = None
            try:
                await trio.to_thread.run_sync(work)
            except OSError as err:
                error = err
            finally:
                self._rewrite_ended(job)
            if error is not None:
                logger.warning("Can't persist the AOF manifest: %s", error)
                _unlink(self.path(base_name))
                self._rewrite_failed()
                return
            for info in history:
                logger.info("Removing the history file %s in the background", info.name)
            self.manifest = manifest
            if self.state != OFF:
                self.current_size = self._size(base_name) + self.last_incr_size
                self.base_size = self.current_size
            self.lastbgrewrite_ok = True
            self.consecutive_failures = 0
            logger.info("Background AOF rewrite finished successfully")

        if self.nursery is None:
            return False
        try:
            self.nursery.start_soon(run)
        except RuntimeError:
            return False
        return True

    def _rewrite_failed(self) -> None:
        self.lastbgrewrite_ok = False
        self.consecutive_failures += 1

    def _rewrite_succeeded(self, base_name: str) -> None:
        manifest = self.manifest.copy()
        manifest.new_base(self.filename, rdb=base_name.endswith(".rdb"))
        incr_path = None
        if self.state == WAIT_REWRITE:
            incr_path = self.path(manifest.new_incr(self.filename))
            try:
                os.replace(self.path(temp_incr_name(self.filename)), incr_path)
            except OSError as err:
                logger.warning("Error trying to rename the temporary AOF incr file: %s", err)
                _unlink(self.path(base_name))
                self._rewrite_failed()
                return
        manifest.mark_rewritten_incr_as_history(keep_last=self.state != OFF)
        try:
            self.persist_manifest(manifest)
        except OSError as err:
            logger.warning("Can't persist the AOF manifest: %s", err)
            _unlink(self.path(base_name))
            if incr_path is not None:
                _unlink(incr_path)
            self._rewrite_failed()
            return
        self.manifest = manifest
        if self.state != OFF:
            self.current_size = self._size(base_name) + self.last_incr_size
            self.base_size = self.current_size
        self.delete_history()
        self.lastbgrewrite_ok = True
        self.consecutive_failures = 0
        logger.info("Background AOF rewrite finished successfully")
        if self.state == WAIT_REWRITE:
            self.state = ON

    def bgrewriteaof(self, in_exec: bool) -> str:
        """BGREWRITEAOF's reply (bgrewriteaofCommand); ReplyError as Redis replies."""
        from kvrepl import persistence

        if self.job is not None:
            raise ReplyError("ERR Background append only file rewriting already in progress")
        if persistence.attach(self.engine).bgsave is not None or in_exec:
            self.rewrite_scheduled = True
            self.consecutive_failures = 0
            return "Background append only file rewriting scheduled"
        if self.rewrite():
            return "Background append only file rewriting started"
        raise ReplyError("ERR Can't execute an AOF background rewriting. Please check the "
                         "server logs for more information.")

    def rewrite_limited(self) -> bool:
        """aofRewriteLimited: too many failed rewrites in a row delay the next automatic
        one, so that failures do not pile up incremental files."""
        if self.consecutive_failures < LIMIT_THRESHOLD:
            self._limit_minutes = self._limit_until = 0
            return False
        now = int(time.time())
        if self._limit_until:
            if now < self._limit_until:
                return True
            self._limit_until = 0
            return False
        self._limit_minutes = min(LIMIT_MAX_MINUTES, self._limit_minutes * 2 or 1)
        self._limit_until = now + self._limit_minutes * 60
        logger.warning("Background AOF rewrite has repeatedly failed and triggered the limit, "
                       "will retry in %d minutes", self._limit_minutes)
        return True

    def cron(self) -> None:
        """serverCron's AOF part: a scheduled rewrite, an automatic one on growth, a
        postponed flush, a retry after a write error."""
        from kvrepl import persistence

        st = persistence.attach(self.engine)
        if self.engine.loading:
            return
        if (st.bgsave is None and self.rewrite_scheduled and self.state != OFF
                and not self.rewrite_limited()):
            self.rewrite()
        elif (self.state == ON and st.bgsave is None and self.config.auto_aof_rewrite_percentage
              and self.current_size > self.config.auto_aof_rewrite_min_size):
            base = self.base_size or 1
            growth = self.current_size * 100 // base - 100
            if growth >= self.config.auto_aof_rewrite_percentage and not self.rewrite_limited():
                logger.info("Starting automatic rewriting of AOF on %d%% growth", growth)
                self.rewrite()
        if self.state != OFF and (self.postponed_start or not self.write_ok):
            self.flush()

    def _config_changed(self, name: str) -> None:
        if name == "aof-disable-auto-gc":
            # updateAofAutoGCEnabled: history kept meanwhile goes once gc is on again
            if not self.config.aof_disable_auto_gc and self.state != OFF:
                self.delete_history()
            return
        if name != "appendonly":
            return
        wanted = self.config.appendonly
        if not wanted and self.state != OFF:
            self.stop()
        elif wanted and self.state == OFF and not self.engine.loading:
            if not self.start():
                self.config.appendonly = False

    # -- loading ---------------------------------------------------------------------------
    def _files_to_load(self) -> tuple[list[AofFile], int]:
        """The manifest's files in loading order and their total size; AofLoadError when
        one is missing."""
        manifest = self.manifest
        files = ([manifest.base] if manifest.base else []) + manifest.incr
        total = 0
        for info in files:
            try:
                total += os.stat(self.path(info.name)).st_size
            except FileNotFoundError:
                raise AofLoadError(f"The AOF file {info.name} doesn't exist") from None
        return files, total

    async def load(self) -> int:
        """loadAppendOnlyFiles: the base, then each incremental file, into the engine,
        serving -LOADING meanwhile. Returns the bytes loaded (0: no AOF). AofLoadError /
        RdbError / OSError when it cannot be loaded (the data is then partly loaded: the
        node must not go on)."""
        from kvrepl import persistence

        files, total = self._files_to_load()
        if not total:
            return 0
        st = persistence.attach(self.engine)
        persistence.start_loading(self.engine, total)
        try:
            for index, info in enumerate(files):
                started = time.perf_counter()
                await self._load_one(info.name, index == len(files) - 1)
                self._log_loaded(info, started)
        finally:
            self.engine.loading = False
        st.dirty_at_last_save = self.engine.dirty
        return total

    def load_now(self) -> int:
        """:meth:`load`, blocking the event loop as Redis's DEBUG LOADAOF does."""
        from kvrepl import persistence

        files, total = self._files_to_load()
        if not total:
            return 0
        st = persistence.attach(self.engine)
        persistence.start_loading(self.engine, total)
        try:
            for index, info in enumerate(files):
                started = time.perf_counter()
                path = self.path(info.name)
                with open(path, "rb") as source:
                    start = 0
                    if source.read(5) == b"REDIS":
                        logger.info("Reading RDB base file on AOF loading...")
                        try:
                            start = persistence.load_file(self.engine, path).size
                        except RdbError as err:
                            raise AofLoadError(f"Error reading the RDB base file {info.name}, "
                                               f"AOF loading aborted: {err}") from None
                    source.seek(start)
                    load = _CommandLoad(self, info.name, start, index == len(files) - 1)
                    with load.quiet():
                        while chunk := source.read(LOAD_READ):
                            st.loading_loaded_bytes += len(chunk)
                            for _ in load.run(chunk):
                                pass
                    load.end()
                self._log_loaded(info, started)
        finally:
            self.engine.loading = False
        st.dirty_at_last_save = self.engine.dirty
        return total

    @staticmethod
    def _log_loaded(info: AofFile, started: float) -> None:
        logger.info("DB loaded from %s file %s: %.3f seconds",
                    "base" if info.type == BASE else "incr", info.name,
                    time.perf_counter() - started)

    async def _load_one(self, name: str, last: bool) -> None:
        """loadSingleAppendOnlyFile."""
        from kvrepl import persistence
        from kvrepl.scripting.persist import load_functions

        path = self.path(name)
        st = persistence.attach(self.engine)
        with open(path, "rb") as source:
            size = os.fstat(source.fileno()).st_size
            if size == 0:
                return
            start = 0
            if source.read(5) == b"REDIS":
                source.seek(0)
                logger.info("Reading RDB base file on AOF loading...")
                try:
                    result = await persistence.load_rdb_source(self.engine, source)
                    load_functions(self.engine, result.functions)
                except RdbError as err:
                    raise AofLoadError(f"Error reading the RDB base file {name}, AOF loading "
                                       f"aborted: {err}") from None
                persistence.loaded(self.engine, result)
                start = result.size
                if start >= size:
                    return
                # An RDB preamble (a pre-7.0 AOF) goes on with commands.
                logger.info("Reading the remaining AOF tail...")
            source.seek(start)
            load = _CommandLoad(self, name, start, last)
            with load.quiet():
                while chunk := await trio.to_thread.run_sync(source.read, LOAD_READ):
                    st.loading_loaded_bytes += len(chunk)
                    for _ in load.run(chunk):
                        await trio.lowlevel.checkpoint()
            load.end()

    def _truncated(self, name: str, valid: int, last: bool) -> None:
        if last and self.config.aof_load_truncated:
            logger.warning("!!! Warning: short read while loading the AOF file %s!!!", name)
            logger.warning("!!! Truncating the AOF %s at offset %d !!!", name, valid)
            os.truncate(self.path(name), valid)
            logger.warning("AOF %s loaded anyway because aof-load-truncated is enabled", name)
            return
        if not last:
            raise AofLoadError(f"Fatal error: the truncated file {name} is not the last file "
                               f"(valid up to offset {valid})")
        raise AofLoadError(f"Unexpected end of file reading the append only file {name} at "
                           f"offset {valid}. You can: 1) Make a backup of your AOF file, then "
                           "use ./redis-check-aof --fix <filename.manifest>. 2) Alternatively "
                           "you can set the 'aof-load-truncated' configuration option to yes "
                           "and restart the server.")


class _CommandLoad:
    """The commands of one AOF file run into the engine, chunk by chunk (the caller reads
    the file, and yields to the event loop where :meth:`run` yields)."""

    def __init__(self, aof: AppendOnlyFile, name: str, start: int, last: bool) -> None:
        from kvrepl.commands.core import Session

        self.aof = aof
        self.engine = aof.engine
        self.name = name
        self.last = last
        self.session = Session(aof.engine)
        self.reader = CommandReader(start)
        self.before_multi = 0
        self.ran = 0

    @contextlib.contextmanager
    def quiet(self) -> Iterator[None]:
        """Loading writes nothing anywhere (aof_state is OFF while Redis loads)."""
        engine = self.engine
        saved, engine.propagate_listeners = engine.propagate_listeners, []
        try:
            yield
        finally:
            engine.propagate_listeners = saved

    def run(self, chunk: bytes) -> Iterator[None]:
        """Run every command ``chunk`` completes, yielding every LOAD_BATCH commands."""
        engine, session, reader = self.engine, self.session, self.reader
        reader.feed(chunk)
        while True:
            at = reader.offset
            try:
                argv = reader.next()
            except AofFormatError as err:
                raise AofLoadError(f"Bad file format reading the append only file "
                                   f"{self.name}: {err}") from None
            if argv is None:
                return
            try:
                cmd = engine.lookup_command(argv)
            except ReplyError:
                raise AofLoadError(
                    f"Unknown command '{argv[0].decode('utf-8', 'replace')}' reading "
                    f"the append only file {self.name} at offset {at}") from None
            if session.multi is not None and not cmd.is_exec:
                session.multi.append((cmd, argv))
            else:
                if cmd.name == "multi":
                    self.before_multi = at
                engine.call(session, cmd, argv)
            self.ran += 1
            if self.ran % LOAD_BATCH == 0:
                yield

    def end(self) -> None:
        """The file is read: a cut last command or MULTI is handled as
        ``aof-load-truncated`` says."""
        if not self.reader.pending and self.session.multi is None:
            return
        valid = self.reader.offset
        if self.session.multi is not None:
            logger.warning("Revert incomplete MULTI/EXEC transaction in AOF file %s",
                           self.name)
            valid = self.before_multi
        self.aof._truncated(self.name, valid, self.last)


def _write_all(fd: int, data: bytes) -> int:
    view = memoryview(data)
    done = 0
    while done < len(data):
        try:
            done += os.write(fd, view[done:])
        except InterruptedError:
            continue
        except OSError as err:
            err.written = done  # type: ignore[attr-defined]
            raise
    return done


def _open_incr(path: str) -> int:
    """A new incremental file, empty. O_APPEND, where Redis 7.0 has none here: after a
    short write is cut off (ftruncate), the retry must land at the end, not past it."""
    return os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CREAT | os.O_APPEND, 0o644)


def _write_manifest(dirname: str, filename: str, text: str) -> None:
    """writeAofManifestFile: temp file, fsync, rename, fsync of the directory (OSError
    leaves the old manifest in place). Plain file I/O: it also runs in a worker thread."""
    temp = os.path.join(dirname, temp_manifest_name(filename))
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        _write_all(fd, text.encode("utf-8", "surrogateescape"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, os.path.join(dirname, manifest_name(filename)))
    _sync_dir(dirname)


def _sync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def attach(engine: Engine) -> AppendOnlyFile:
    """The engine's AOF state (created on first use, listening to CONFIG SET appendonly)."""
    found = engine.aof
    if found is None:
        found = engine.aof = AppendOnlyFile(engine)
        engine.config.listeners.append(found._config_changed)
    return found


async def load_on_startup(engine: Engine) -> bool:
    """loadDataFromDisk with the AOF on, then aofOpenIfNeededOnServerStart. True when
    something was loaded; raises AofLoadError, ManifestError, RdbError or OSError."""
    aof = attach(engine)
    try:
        aof.read_manifest()
    except ManifestError as err:
        raise AofLoadError(f"Invalid AOF manifest file format: {err}") from None
    aof.upgrade_if_needed()
    loaded = await aof.load()
    aof.open_on_start()
    return bool(loaded)


def debug_loadaof(engine: Engine) -> None:
    """DEBUG LOADAOF (debug.c): write what the AOF buffer holds, empty the dataset (and the
    functions), read the manifest from disk again, remove its history files and load the
    AOF, blocking the event loop meanwhile. Whether the AOF is on or not: with no AOF on
    disk, or one that does not load, Redis exits, and so does this node."""
    from kvrepl import persistence

    aof = attach(engine)
    if aof.state != OFF:
        aof.flush(force=True)
    for db in engine.keyspace.dbs:
        engine.watches.touch_all_in_db(db, None)
    engine.tracking.flushed()
    engine.keyspace.flushall()
    if engine.scripting is not None:
        engine.scripting.functions.flush()
    try:
        aof.read_manifest()
        aof.upgrade_if_needed()
        aof.delete_history()
        if aof.manifest.empty:
            raise AofLoadError("The AOF doesn't exist")
        aof.load_now()
    except (AofLoadError, ManifestError, RdbError, OSError) as err:
        # loadAppendOnlyFiles failed: exit(1), as Redis does here (its message, when the
        # loader printed one, is already in the log).
        logger.warning("DEBUG LOADAOF: %s. Exiting...", err)
        os._exit(1)
    persistence.attach(engine).dirty_at_last_save = engine.dirty  # server.dirty = 0
    logger.warning("Append Only File loaded by DEBUG LOADAOF")


def cron(engine: Engine) -> None:
    """The AOF part of serverCron (nothing when the AOF was never used)."""
    if engine.aof is not None:
        engine.aof.cron()


def info_fields(engine: Engine) -> list[str]:
    """INFO persistence's aof_* fields, as Redis 7.0 prints them."""
    aof = engine.aof or AppendOnlyFile(engine)
    now = int(time.time())
    lines = [
        f"aof_enabled:{int(aof.state != OFF)}",
        f"aof_rewrite_in_progress:{int(aof.job is not None)}",
        f"aof_rewrite_scheduled:{int(aof.rewrite_scheduled)}",
        f"aof_last_rewrite_time_sec:{aof.rewrite_time_last}",
        f"aof_current_rewrite_time_sec:"
        f"{now - aof.rewrite_time_start if aof.job is not None else -1}",
        f"aof_last_bgrewrite_status:{'ok' if aof.lastbgrewrite_ok else 'err'}",
        f"aof_rewrites:{aof.rewrites}",
        f"aof_rewrites_consecutive_failures:{aof.consecutive_failures}",
        f"aof_last_write_status:{'ok' if aof.write_ok and aof.fsync_ok else 'err'}",
        "aof_last_cow_size:0",
    ]
    if engine.config.appendonly:
        lines += [
            f"aof_current_size:{aof.current_size}",
            f"aof_base_size:{aof.base_size}",
            f"aof_pending_rewrite:{int(aof.rewrite_scheduled)}",
            f"aof_buffer_length:{len(aof.buf)}",
            f"aof_pending_bio_fsync:{aof.fsyncs_running}",
            f"aof_delayed_fsync:{aof.delayed_fsync}",
        ]
    return lines
