"""RDB persistence: SAVE, BGSAVE, the ``save`` schedule, startup load, shutdown save.

Redis forks a child to write a point-in-time RDB. kvrepl runs a
:class:`~kvrepl.snapshot_producer.SnapshotJob` instead (a per-key copy-on-write view
serialized in slices, no fork), the same producer that full syncs use: a node runs one at a
time (Redis's one RDB child), whether it writes the dump, streams to replicas, or both. Its
bytes go, with a bounded buffer, to a :class:`FileConsumer` (temp file, fsync, rename: a
failed save never damages the last good dump) and to any reader
(:meth:`SnapshotJob.open_reader`, :meth:`SnapshotJob.open_channel`, :class:`CallbackConsumer`).

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

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter
from typing import TYPE_CHECKING, Any

import trio

from kvrepl import gc_policy
from kvrepl.delays import delay_seconds
from kvrepl.log import logger
from kvrepl.rdb import LoadResult, RdbError, StagedLoad, default_aux, iter_dump
from kvrepl.scripting.persist import function_codes, load_functions
from kvrepl.snapshot_producer import (  # re-exported: persistence.SnapshotJob etc.
    AUTOSYNC_BYTES,
    CANCELLED,
    DONE,
    FAILED,
    PENDING,
    RUNNING,
    SLICE_SECONDS,
    SNAPSHOT_BUFFER,
    VIEW_BATCH,
    CallbackConsumer,
    ChannelConsumer,
    Consumer,
    FileConsumer,
    SnapshotFailed,
    SnapshotJob,
    SnapshotReader,
    TempFile,
    temp_path,
)

if TYPE_CHECKING:
    from kvrepl.commands.core import Engine
    from kvrepl.config import Config

#: serverCron retries a failed BGSAVE only after this many seconds (CONFIG_BGSAVE_RETRY_DELAY).
BGSAVE_RETRY_DELAY = 5
#: SAVE (synchronous) buffers this much before it writes.
FILE_BUFFER = 1 << 20
#: Startup load: bytes read from the file at a time, and fed to the parser per slice.
LOAD_READ = 1 << 20

__all__ = ["AUTOSYNC_BYTES", "CANCELLED", "DONE", "FAILED", "PENDING", "RUNNING", "SLICE_SECONDS",
           "SNAPSHOT_BUFFER", "VIEW_BATCH", "CallbackConsumer", "ChannelConsumer", "Consumer",
           "FileConsumer", "SnapshotFailed", "SnapshotJob", "SnapshotReader", "TempFile",
           "temp_path"]


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
    bgsave: SnapshotJob | None = None  # the running snapshot job, whatever it feeds
    last_job: SnapshotJob | None = None  # the latest one started (its figures, for tests)
    snapshot_buffer: int = SNAPSHOT_BUFFER  # bytes a job may hold ahead of its slowest reader
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
        from kvrepl import aof  # below persistence: it builds on SnapshotJob and the dump

        aof.attach(engine)  # CONFIG SET appendonly works from now on
    if nursery is not None:
        found.nursery = nursery
        if engine.aof is not None:
            engine.aof.nursery = nursery  # background fsyncs and the flusher run there
    return found



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


def autosync_bytes(incremental_fsync: bool) -> int:
    """rioSetAutoSync's argument for a save whose ``*-incremental-fsync`` option is this."""
    return AUTOSYNC_BYTES if incremental_fsync else 0


def write_dump(engine: Engine, path: str | None = None,
               aux: list[tuple[bytes, bytes]] | None = None,
               incremental_fsync: bool | None = None) -> int:
    """Write the whole dataset to ``path`` (default ``dir/dbfilename``) now, blocking, via a
    temp file, fsync and rename. Returns the bytes written; OSError on failure (the temp
    file is removed and ``path`` is untouched). ``aux`` defaults to :func:`save_aux`;
    ``incremental_fsync`` to ``rdb-save-incremental-fsync``."""
    config = engine.config
    path = path or rdb_path(config)
    if incremental_fsync is None:
        incremental_fsync = config.rdb_save_incremental_fsync
    target = TempFile(path, temp_path(path, background=False), autosync_bytes(incremental_fsync))
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
                               checksum=config.rdbchecksum,
                               aux=save_aux(engine) if aux is None else aux,
                               config=config, functions=function_codes(engine)):
            buffered.append(chunk)
            size += len(chunk)
            if size >= FILE_BUFFER:
                target.write(b"".join(buffered))
                buffered.clear()
                size = 0
        target.write(b"".join(buffered))
        usec = config.rdb_key_save_delay
        if usec:
            # rdb-key-save-delay: a blocking save blocks for it, as Redis's SAVE does (the
            # whole delay at once, before the rename: the dump appears when it ends).
            keys = sum(len(db.data) for db in engine.keyspace.dbs)
            time.sleep(delay_seconds(usec, keys))
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


def start_job(engine: Engine, *, to_file: bool = True, aux: Any = None,
              setup: Callable[[SnapshotJob], None] | None = None,
              kind: str = "RDB transfer", writer: Any = None,
              begin: bool = True) -> SnapshotJob | None:
    """Start the node's one background snapshot job (rdbSaveBackground, and
    rdbSaveToSlavesSockets with ``to_file`` False): a point-in-time RDB that writes
    ``dir/dbfilename`` when ``to_file`` (counted as a save: LASTSAVE, MISCONF ...) and feeds
    whatever readers ``setup(job)`` opens before the snapshot instant. ``aux`` defaults to
    :func:`save_aux`. None when a job is running already, or when the node has no running
    nursery. With ``begin`` False the job holds the node's one slot but its snapshot
    instant is left to the caller (:func:`run_job`), which prepares something first."""
    st = attach(engine)
    if st.bgsave is not None or st.nursery is None:
        return None
    job = SnapshotJob(engine.keyspace, config=engine.config,
                      aux=aux if aux is not None else (lambda: save_aux(engine)),
                      functions=function_codes(engine),
                      buffer_limit=st.snapshot_buffer, writer=writer)
    consumer: FileConsumer | None = None
    dirty = engine.dirty
    if to_file:
        st.rdb_saves += 1
        st.lastbgsave_try = time.time()
        consumer = job.add_consumer(FileConsumer(  # type: ignore[assignment]
            rdb_path(engine.config), autosync=autosync_bytes(engine.config.rdb_save_incremental_fsync)))
    if setup is not None:
        setup(job)

    def done(job: SnapshotJob) -> None:
        if st.bgsave is job:
            st.bgsave = None
        st.last_bgsave_time_sec = int(time.time() - st.bgsave_started)
        if consumer is None:  # backgroundSaveDoneHandlerSocket: no save was made
            if job.status == DONE:
                logger.info("Background %s terminated with success", kind)
            else:
                logger.warning("Background %s error: %s", kind, job.error or job.status)
        elif consumer.committed:
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
    st.bgsave = st.last_job = job
    if begin and not run_job(engine, job):
        return None
    return job


def run_job(engine: Engine, job: SnapshotJob) -> bool:
    """The snapshot instant of a job :func:`start_job` made with ``begin`` False, and its
    serialization started. False (the job cancelled) when the node has stopped."""
    st = attach(engine)
    job.begin()
    try:
        if st.nursery is None:
            raise RuntimeError("no nursery")
        st.nursery.start_soon(job.run)
    except RuntimeError:  # the nursery is closed: the node has stopped
        st.nursery = None
        if st.bgsave is job:
            st.bgsave = None
        job.cancel()
        return False
    return True


def bgsave(engine: Engine) -> bool:
    """rdbSaveBackground: start a snapshot job writing ``dir/dbfilename``. False when one is
    already running. Without a running nursery (an engine with no event loop) the save is
    done synchronously instead; either way its outcome shows in ``rdb_last_bgsave_status``."""
    st = attach(engine)
    if st.bgsave is not None:
        return False
    if start_job(engine) is not None:
        logger.info("Background saving started")
        return True
    st.rdb_saves += 1
    st.lastbgsave_try = time.time()
    if not save(engine):
        st.last_bgsave_ok = False
    st.last_bgsave_time_sec = 0
    return True


def kill_bgsave(engine: Engine) -> None:
    """killRDBChild: stop a running BGSAVE, remove its temp file. A job that also feeds
    readers (replicas) only loses its file and goes on for them."""
    st = attach(engine)
    job = st.bgsave
    if job is None or (engine.aof is not None and engine.aof.job is job):
        return  # an AOF rewrite is no BGSAVE (killAppendOnlyChild stops it)
    st.bgsave = None
    files = [c for c in job.consumers if isinstance(c, FileConsumer)]
    if job.reader_count == len(files):
        job.cancel()
    else:
        for consumer in files:
            job.remove_consumer(consumer)


def cron(engine: Engine) -> None:
    """serverCron's persistence part: start a BGSAVE when a ``save <seconds> <changes>``
    point is reached or one was scheduled (retrying a failed one after 5 seconds)."""
    st = attach(engine)
    from kvrepl import aof

    aof.cron(engine)
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
    aof = engine.aof
    if aof is not None and aof.job is not None:
        logger.warning("There is a child rewriting the AOF. Killing it!")
        aof.kill_rewrite()
    if aof is not None and aof.state != "off":
        # prepareForShutdown: the AOF's last writes reach the disk.
        logger.info("Calling fsync() on the AOF file.")
        aof.flush(force=True)
        if aof.fd is not None:
            try:
                os.fsync(aof.fd)
            except OSError as err:
                logger.warning("Fail to fsync the AOF file: %s", err)
    if save_flag is False or (save_flag is None and not engine.config.save):
        return True
    from kvrepl.server.process import tell_systemd

    logger.info("Saving the final RDB snapshot before exiting.")
    tell_systemd(engine, "STATUS=Saving the final RDB snapshot\n")
    if save(engine):
        return True
    if force:
        logger.warning("Error trying to save the DB. Exit anyway.")
        return True
    logger.warning("Error trying to save the DB, can't exit.")
    tell_systemd(engine, "STATUS=Error trying to save the DB, can't exit.\n")
    return False


# -- loading ----------------------------------------------------------------------------------


def is_replica(engine: Engine) -> bool:
    """Redis's ``server.masterhost``: configured to follow a master, or following one."""
    return engine.config.replicaof is not None or engine.read_only_role()


def deep_checks(engine: Engine) -> bool:
    """RDB loads check encoded blobs deeply only under ``sanitize-dump-payload yes`` (a
    load is trusted under ``clients``, as in Redis)."""
    return engine.config.sanitize_dump_payload == "yes"


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
    used = result.aux.get(b"used-mem")
    if used is not None and used.lstrip(b"-").isdigit():
        logger.info("RDB memory usage when created %.2f Mb", int(used) / (1024 * 1024))
    logger.info("Done loading RDB, keys loaded: %d, keys expired: %d.", result.keys_loaded,
                result.keys_expired)
    logger.info("DB loaded from disk: %.3f seconds", seconds)


def loaded(engine: Engine, result: LoadResult) -> None:
    """Record a finished load (INFO's rdb_last_load_keys_*)."""
    st = attach(engine)
    st.last_load = result
    st.last_load_keys_loaded = result.keys_loaded
    st.last_load_keys_expired = result.keys_expired


def start_loading(engine: Engine, size: int) -> None:
    """startLoading: ``-LOADING`` for clients, INFO's loading_* fields from now on."""
    st = attach(engine)
    engine.loading = True
    st.loading_start_time = int(time.time())
    st.loading_total_bytes = size
    st.loading_loaded_bytes = 0
    st.last_load_keys_loaded = st.last_load_keys_expired = 0


def start_async_loading(engine: Engine, size: int) -> None:
    """A replica starts loading a payload of ``size`` bytes (0: unknown) beside the data it
    serves: Redis's async_loading (repl-diskless-load swapdb), which is how kvrepl's
    replica always loads."""
    start_loading(engine, max(size, 0))
    engine.loading = False
    engine.async_loading = True


def stop_async_loading(engine: Engine) -> None:
    """The payload is loaded, or the sync failed."""
    engine.async_loading = False


async def load_delay(engine: Engine, loader: StagedLoad, seen: int) -> int:
    """key-load-delay for the keys ``loader`` read since it had read ``seen``; returns the
    new count. Awaited, not slept: clients keep being served (with -LOADING at startup)."""
    now = loader.keys_read()
    usec = engine.config.key_load_delay
    if usec and now > seen:
        await trio.sleep(delay_seconds(usec, now - seen))
    return now


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
                            verify_checksum=engine.config.rdbchecksum, deep=deep_checks(engine))
        usec = engine.config.key_load_delay
        seen = 0
        while chunk := source.read(LOAD_READ):
            loader.feed(chunk)
            if usec:  # a blocking load (DEBUG RELOAD) blocks for it, as Redis does
                now = loader.keys_read()
                time.sleep(delay_seconds(usec, now - seen))
                seen = now
        result = loader.finish()
    load_functions(engine, result.functions, replace_all=merge is None)
    if merge is None:
        loader.apply(keyspace)
    else:
        _merge(keyspace, loader, replace=merge)
    gc_policy.dataset_loaded(keyspace)  # a no-op unless the process installed a policy
    loaded(engine, result)
    _log_loaded(result, perf_counter() - started)
    return result


def _merge(keyspace: Any, loader: StagedLoad, replace: bool) -> None:
    try:
        for db, (data, expires) in zip(keyspace.dbs, loader.fresh, strict=True):
            if not replace:
                for key in data:
                    if key in db.data:
                        raise RdbError(
                            f"RDB has duplicated key in DB {db.id} (key {key[:200]!r})", key=key)
            for key, value in data.items():
                db.before_write(key)
                db.data[key] = value
                if key in expires:
                    db.expires[key] = expires[key]
                else:
                    db.expires.pop(key, None)
    finally:
        # TTLs where there were none (even if a later db failed): see Database.set_expire.
        keyspace.read_state_changed()
    keyspace.recount()  # the memory estimate of the merged keys


async def load_on_startup(engine: Engine, *, stop_on_error: bool = False,
                          task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
                          begin: trio.Event | None = None) -> None:
    """Load ``dir/dbfilename`` if it exists (loadDataFromDisk). ``engine.loading`` is set
    before ``task_status.started()`` and cleared when done, so clients served meanwhile get
    ``-LOADING``; the file is parsed in slices between trio checkpoints.

    A bad file leaves the data as it was and raises RdbError (OSError when it can't be
    read). Redis exits then ("Fatal error loading the DB ... Exiting."): with
    ``stop_on_error`` the error is kept in ``engine.persistence.load_error`` and the node
    is asked to stop without saving (``engine.on_shutdown(False)``) instead. With
    ``begin``, the reading waits for that event (the node's start logged), -LOADING
    already set.
    """
    attach(engine)
    if engine.config.appendonly:
        await _load_aof_on_startup(engine, stop_on_error, task_status, begin)
        return
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
        start_loading(engine, os.fstat(source.fileno()).st_size)
        task_status.started()
        if begin is not None:
            await begin.wait()
        started = perf_counter()
        try:
            result = await load_rdb_source(engine, source)
        except (RdbError, OSError) as err:
            engine.loading = False
            _load_failed(engine, err, stop_on_error)
            return
        finally:
            engine.loading = False
    gc_policy.dataset_loaded(engine.keyspace)  # a no-op unless the process installed a policy
    loaded(engine, result)
    _log_loaded(result, perf_counter() - started)
    _restore_replication(engine, result)


async def load_rdb_source(engine: Engine, source: Any) -> LoadResult:
    """Load the RDB read from the file ``source`` into the engine, parsed in slices between
    trio checkpoints (the keyspace changes only once the whole RDB proved good)."""
    st = attach(engine)
    loader = StagedLoad(len(engine.keyspace.dbs), drop_expired=_drop_expired(engine),
                        now_ms=int(time.time() * 1000),
                        verify_checksum=engine.config.rdbchecksum, deep=deep_checks(engine))
    seen = 0
    # loading-process-events-interval-bytes: how much is parsed between two turns of
    # serving clients (processEventsWhileBlocked), read live as Redis does.
    while chunk := await trio.to_thread.run_sync(
            source.read, engine.config.loading_process_events_interval_bytes):
        loader.feed(chunk)
        st.loading_loaded_bytes += len(chunk)
        seen = await load_delay(engine, loader, seen)
        await trio.lowlevel.checkpoint()
    result = loader.finish()
    loader.apply(engine.keyspace)
    return result


async def _load_aof_on_startup(engine: Engine, stop_on_error: bool,
                               task_status: trio.TaskStatus[None],
                               begin: trio.Event | None) -> None:
    """The AOF wins over the RDB when it is on (loadDataFromDisk)."""
    from kvrepl import aof

    engine.loading = True  # until the AOF is known to be empty or is loaded
    task_status.started()
    if begin is not None:
        await begin.wait()
    started = perf_counter()
    try:
        found = await aof.load_on_startup(engine)
    except (aof.AofLoadError, RdbError, OSError) as err:
        engine.loading = False
        _load_failed(engine, err, stop_on_error)
        return
    finally:
        engine.loading = False
    if found:
        gc_policy.dataset_loaded(engine.keyspace)
        logger.info("DB loaded from append only file: %.3f seconds", perf_counter() - started)


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
            engine.tracking.flushed()
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
    from kvrepl.aof import info_fields as aof_info_fields

    st = attach(engine)
    now = time.time()
    job = st.bgsave
    processed = job.keys_done if job is not None else 0
    total = job.keys_total if job is not None else 0
    fork_perc = processed * 100 / total if total else 0.0
    lines = [
        f"loading:{int(engine.loading)}",
        f"async_loading:{int(engine.async_loading)}",
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
        *aof_info_fields(engine)[:10],
        "module_fork_in_progress:0",
        "module_fork_last_cow_size:0",
        *aof_info_fields(engine)[10:],
    ]
    if engine.loading or engine.async_loading:
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
