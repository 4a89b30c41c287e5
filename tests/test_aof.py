"""The append-only file (kvrepl.aof): Redis 7.0's multi-part AOF, written, rewritten and
loaded.

Real processes where it matters: kvrepl-server is killed with SIGKILL while a client writes
with acknowledgements, and restarted; AOF directories go from kvrepl to redis-server 7.0 and
back (same DEBUG DIGEST); ``redis-check-aof`` checks kvrepl's files.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import redis
import trio
from support import (
    KvreplProcess,
    RedisServer,
    ThreadedServer,
    argv,
    free_port,
    limit_file_size,
    no_retry,
    poll,
)

import kvrepl
from kvrepl import aof, persistence
from kvrepl.aof.manifest import Manifest, ManifestError, parse_manifest
from kvrepl.aof.reader import AofFormatError, CommandReader
from kvrepl.commands.core import Engine
from kvrepl.config import Config, ConfigError
from kvrepl.errors import ReplyError
from kvrepl.replication.stream import encode_command

PROCESS_WAIT = 30.0  # seconds a wait on real processes' syncs may take here
CHECK_AOF = shutil.which("redis-check-aof")


# -- helpers ------------------------------------------------------------------------------------


def aof_dir(directory: Path) -> Path:
    return directory / "appendonlydir"


def check_aof(directory: Path) -> str:
    if CHECK_AOF is None:
        pytest.skip("redis-check-aof is not installed (apt-get install redis-tools)")
    result = subprocess.run([CHECK_AOF, str(aof_dir(directory) / "appendonly.aof.manifest")],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def last_incr(directory: Path) -> Path:
    manifest = parse_manifest((aof_dir(directory) / "appendonly.aof.manifest").read_text())
    return aof_dir(directory) / manifest.incr[-1].name


def writer(client: redis.Redis, acked: list[tuple[int, float]], stop: threading.Event) -> None:
    """RPUSH 0, 1, 2 ... one at a time; every acknowledged one is recorded with its time."""
    i = len(acked)
    while not stop.is_set():
        try:
            client.rpush("log", i)
        except (redis.ConnectionError, redis.TimeoutError):
            return
        acked.append((i, time.monotonic()))
        i += 1


def crash_rounds(tmp_path: Path, fsync: str, rounds: int,
                 seconds: tuple[float, float] = (0.1, 0.4)) -> list[tuple[list[int], int, int]]:
    """Write with acks, SIGKILL at a random moment, restart (which reads the log back and
    writes on); ``rounds`` times over the same directory. Returns (log after the restart,
    acked, acked 2.5 s before the kill) per round."""
    rng = random.Random(13)
    acked: list[tuple[int, float]] = []
    outcomes = []
    killed = 0.0
    for round_ in range(rounds + 1):
        server = KvreplProcess(tmp_path, "--appendonly", "yes", "--appendfsync", fsync)
        client = server.wait_ready().client()
        log = [int(x) for x in client.lrange("log", 0, -1)]
        if round_:
            outcomes.append((log, len(acked), sum(1 for _, t in acked if t < killed - 2.5)))
            # What survived is the history the next round continues.
            acked = [(i, t) for i, t in acked if i < len(log)]
            acked += [(i, 0.0) for i in range(len(acked), len(log))]
        if round_ == rounds:
            server.process.terminate()
            assert server.exit_status() == 0
            break
        stop = threading.Event()
        thread = threading.Thread(target=writer, args=(client, acked, stop))
        thread.start()
        # The random moment counts from the round's first acknowledged write: on a loaded
        # host the first RPUSH (and its fsync) may take longer than the shortest interval,
        # and a round without one proves nothing.
        written = len(acked)
        poll(lambda a=acked, n=written: len(a) > n, "the round's first acknowledged write")
        time.sleep(rng.uniform(*seconds))
        server.kill()
        killed = time.monotonic()
        stop.set()
        thread.join(10)
    return outcomes


# -- crash tests ----------------------------------------------------------------------------------


def test_always_keeps_every_acknowledged_write_across_sigkill(tmp_path):
    """appendfsync always: a write is on disk before its reply leaves, so after a SIGKILL
    every acknowledged write is there, and nothing but a prefix of the history."""
    for log, acked, _ in crash_rounds(tmp_path, "always", 3):
        assert log == list(range(len(log))), "the dataset is a prefix of the history"
        assert len(log) >= acked > 0
        # At most the one write in flight (applied, its reply lost with the process).
        assert len(log) <= acked + 1
    check_aof(tmp_path)


def test_everysec_loses_at_most_the_last_seconds_across_sigkill(tmp_path):
    """appendfsync everysec: a prefix of the history, missing at most what was acknowledged
    in the last ~2 seconds (Redis's postponed-write window)."""
    for log, _acked, old in crash_rounds(tmp_path, "everysec", 1, seconds=(2.7, 3.2)):
        assert log == list(range(len(log)))
        assert len(log) >= old > 0
    check_aof(tmp_path)


# -- damaged files --------------------------------------------------------------------------------


def _written_directory(tmp_path: Path) -> bytes:
    server = KvreplProcess(tmp_path, "--appendonly", "yes", "--appendfsync", "always")
    server.wait_ready()
    client = server.client()
    for i in range(20):
        client.set(f"k{i}", f"v{i}")
    server.kill()
    return last_incr(tmp_path).read_bytes()


def test_a_torn_last_write_loads_with_aof_load_truncated_and_is_refused_without(tmp_path):
    data = _written_directory(tmp_path)
    cut = len(data) - 3  # inside the last SET
    last_incr(tmp_path).write_bytes(data[:cut])
    refused = KvreplProcess(tmp_path, "--appendonly", "yes", "--aof-load-truncated", "no")
    assert refused.exit_status() == 1
    assert "Unexpected end of file reading the append only file appendonly.aof.1.incr.aof" \
        in refused.output()
    assert last_incr(tmp_path).read_bytes() == data[:cut]  # a refusal changes nothing
    loaded = KvreplProcess(tmp_path, "--appendonly", "yes").wait_ready()
    client = loaded.client()
    assert client.dbsize() == 19 and client.get("k18") == b"v18" and client.get("k19") is None
    assert "!!! Truncating the AOF appendonly.aof.1.incr.aof at offset" in loaded.output()
    client.set("after", "1")
    loaded.kill()
    check_aof(tmp_path)  # truncated at a command boundary, then appended to


def test_a_flipped_byte_in_the_middle_is_refused_with_its_offset(tmp_path):
    data = _written_directory(tmp_path)
    middle = data.index(b"*3\r\n", len(data) // 2)
    broken = data[:middle] + b"?" + data[middle + 1:]
    last_incr(tmp_path).write_bytes(broken)
    for truncated in ("yes", "no"):
        refused = KvreplProcess(tmp_path, "--appendonly", "yes", "--aof-load-truncated",
                                truncated)
        assert refused.exit_status() == 1
        assert (f"Bad file format reading the append only file appendonly.aof.1.incr.aof: "
                f"expected '*' at offset {middle}") in refused.output()
    assert last_incr(tmp_path).read_bytes() == broken


def test_an_incomplete_multi_at_the_end_is_reverted(tmp_path):
    server = KvreplProcess(tmp_path, "--appendonly", "yes", "--appendfsync", "always")
    server.wait_ready()
    client = server.client()
    client.set("before", "1")
    pipe = client.pipeline(transaction=True)
    pipe.set("in-multi", "1").incr("n")
    pipe.execute()
    server.kill()
    data = last_incr(tmp_path).read_bytes()
    exec_at = data.rindex(encode_command([b"EXEC"]))
    last_incr(tmp_path).write_bytes(data[:exec_at])  # MULTI, its writes, no EXEC
    loaded = KvreplProcess(tmp_path, "--appendonly", "yes").wait_ready()
    client = loaded.client()
    assert client.get("before") == b"1" and client.get("in-multi") is None
    assert "Revert incomplete MULTI/EXEC transaction" in loaded.output()
    loaded.kill()


# -- interchange with redis-server 7.0 ------------------------------------------------------------


def _fill(port: int) -> None:
    client = redis.Redis(host="127.0.0.1", port=port)
    client.set("s", "v")
    client.set("ttl", "x", px=600_000)
    client.rpush("l", *range(20))
    client.hset("h", mapping={f"f{i}": i for i in range(10)})
    client.sadd("set", *range(30))
    client.zadd("z", {f"m{i}": i / 3 for i in range(15)})
    client.incrbyfloat("f", 1.5)
    other = redis.Redis(host="127.0.0.1", port=port, db=3)
    other.set("db3", "yes")
    client.expire("l", 1000)
    client.spop("set")


@pytest.mark.parametrize("timestamps, preamble", [("no", "yes"), ("yes", "no")])
def test_redis_server_loads_kvrepl_aof_directory(tmp_path, timestamps, preamble):
    """Both base formats (an RDB, or commands with aof-use-rdb-preamble no), timestamps,
    incremental files from before and after a rewrite."""
    ours = KvreplProcess(tmp_path, "--appendonly", "yes", "--aof-timestamp-enabled",
                         timestamps, "--aof-use-rdb-preamble", preamble).wait_ready()
    client = ours.client()
    _fill(ours.port)
    client.bgrewriteaof()
    poll(lambda: client.info("persistence")["aof_rewrite_in_progress"] == 0
         and client.info("persistence")["aof_rewrites"] == 1, "the rewrite is done")
    client.set("after-rewrite", "1")
    client.lpush("l", "new")
    digest = client.execute_command("DEBUG", "DIGEST")
    ours.process.terminate()
    assert ours.exit_status() == 0
    if timestamps == "yes":
        assert b"#TS:" in last_incr(tmp_path).read_bytes()
    suffix = ".rdb" if preamble == "yes" else ".aof"
    assert (aof_dir(tmp_path) / f"appendonly.aof.2.base{suffix}").exists()
    check_aof(tmp_path)
    real = RedisServer("--appendonly", "yes", "--dir", str(tmp_path),
                       "--enable-debug-command", "yes", "--aof-timestamp-enabled", timestamps)
    try:
        assert real.client().execute_command("DEBUG", "DIGEST") == digest
        assert real.client().get("after-rewrite") == b"1"
    finally:
        real.stop()


@pytest.mark.parametrize("preamble", ["yes", "no"])
def test_kvrepl_loads_redis_server_aof_directory(tmp_path, preamble):
    """Both base formats Redis writes (RDB, or commands with aof-use-rdb-preamble no), its
    incremental files, timestamps and a multi-part history."""
    real = RedisServer("--appendonly", "yes", "--dir", str(tmp_path), "--enable-debug-command",
                       "yes", "--aof-use-rdb-preamble", preamble, "--aof-timestamp-enabled",
                       "yes")
    try:
        client = real.client()
        _fill(real.port)
        client.bgrewriteaof()
        poll(lambda: client.info("persistence")["aof_rewrite_in_progress"] == 0
             and client.info("persistence")["aof_rewrites"] == 1, "redis rewrote its AOF")
        client.set("after-rewrite", "1")
        pipe = client.pipeline(transaction=True)
        pipe.incr("n").lpush("l", "multi")
        pipe.execute()
        digest = client.execute_command("DEBUG", "DIGEST")
    finally:
        real.process.terminate()
        real.process.wait(10)
    ours = KvreplProcess(tmp_path, "--appendonly", "yes").wait_ready()
    assert ours.client().execute_command("DEBUG", "DIGEST") == digest
    ours.process.terminate()
    assert ours.exit_status() == 0


# -- rewrites -------------------------------------------------------------------------------------


def test_a_rewrite_under_write_load_keeps_every_acknowledged_write(tmp_path):
    server = KvreplProcess(tmp_path, "--appendonly", "yes", "--appendfsync", "always")
    client = server.wait_ready().client()
    client.execute_command("DEBUG", "POPULATE", 5000, "pre", 50)
    acked: list[tuple[int, float]] = []
    stop = threading.Event()
    thread = threading.Thread(target=writer, args=(server.client(), acked, stop))
    thread.start()
    poll(lambda: len(acked) > 50, "writes are flowing")
    assert client.bgrewriteaof() in (True, b"Background append only file rewriting started")
    poll(lambda: client.info("persistence")["aof_rewrites"] == 1
         and client.info("persistence")["aof_rewrite_in_progress"] == 0, "the rewrite is done")
    during = len(acked)
    poll(lambda: len(acked) > during + 50, "writes go on after the rewrite")
    server.kill()
    stop.set()
    thread.join(10)
    files = sorted(os.listdir(aof_dir(tmp_path)))
    assert files == ["appendonly.aof.2.base.rdb", "appendonly.aof.2.incr.aof",
                     "appendonly.aof.manifest"]
    check_aof(tmp_path)
    loaded = KvreplProcess(tmp_path, "--appendonly", "yes").wait_ready().client()
    log = [int(x) for x in loaded.lrange("log", 0, -1)]
    assert log == list(range(len(log))) and len(log) >= len(acked)
    assert loaded.dbsize() == 5001


def test_everysec_postpones_writes_behind_a_running_fsync(tmp_path):
    """Redis's rule: while a background fsync runs, a write waits up to 2 seconds, then goes
    ahead anyway and counts in aof_delayed_fsync."""
    async def main() -> None:
        async with kvrepl.Master(appendonly=True, dir=str(tmp_path)) as master:
            state = aof.attach(master.engine)
            state.flush(force=True)
            size = state.last_incr_size
            state.fsyncs_running += 1  # as if the last second's fsync were still running
            try:
                master.set("k", "v")
                state.flush()
                assert state.buf and state.last_incr_size == size and state.postponed_start
                state.flush()  # within the 2 seconds: still waiting
                assert state.buf and state.delayed_fsync == 0
                state.postponed_start -= 3  # the 2 seconds are over
                state.flush()
                assert not state.buf and state.last_incr_size > size
                assert state.delayed_fsync == 1 and state.postponed_start == 0
                fields = master.execute_command("INFO", "persistence").decode()
                assert "aof_delayed_fsync:1" in fields and "aof_pending_bio_fsync:1" in fields
            finally:
                state.fsyncs_running -= 1

    trio.run(main)


def test_a_failed_rewrite_leaves_the_old_files_whole(tmp_path):
    async def main() -> None:
        async with kvrepl.Master(appendonly=True, dir=str(tmp_path)) as master:
            master.set("a", "1")
            # The temp file of the rewrite cannot be created: the rewrite fails.
            blocker = tmp_path / f"temp-rewriteaof-bg-{os.getpid()}.aof"
            blocker.mkdir()
            aof.attach(master.engine).flush(force=True)
            before = {p.name: p.read_bytes() for p in aof_dir(tmp_path).iterdir()}
            assert master.execute_command("BGREWRITEAOF") == \
                b"Background append only file rewriting started"
            await persistence.attach(master.engine).last_job.done.wait()
            info = master.execute_command("INFO", "persistence")
            assert "aof_last_bgrewrite_status:err" in info.decode()
            assert "aof_rewrites_consecutive_failures:1" in info.decode()
            after = {p.name: p.read_bytes() for p in aof_dir(tmp_path).iterdir()}
            # The old base and incr are untouched; a new incr file continues them.
            assert {k: v for k, v in after.items() if k in before
                    and not k.endswith("manifest")} == {
                k: v for k, v in before.items() if not k.endswith("manifest")}
            assert "appendonly.aof.2.incr.aof" in after
            master.set("b", "2")
            blocker.rmdir()
        async with kvrepl.Master(appendonly=True, dir=str(tmp_path)) as again:
            assert again.get("a") == b"1" and again.get("b") == b"2"

    trio.run(main)
    check_aof(tmp_path)


def test_a_rewrite_killed_half_way_leaves_a_loadable_directory(tmp_path):
    """SIGKILL while the new base is being written: the manifest still names the old base
    and both incremental files, so every acknowledged write loads."""
    server = KvreplProcess(tmp_path, "--appendonly", "yes", "--appendfsync", "always")
    client = server.wait_ready().client()
    client.rpush("big", *range(100))
    # Values the AOF does not hold (DEBUG POPULATE is not propagated): a slow rewrite.
    client.execute_command("DEBUG", "POPULATE", 200_000, "pre", 100)
    acked: list[tuple[int, float]] = []
    stop = threading.Event()
    thread = threading.Thread(target=writer, args=(server.client(), acked, stop))
    thread.start()
    poll(lambda: len(acked) > 20, "writes are flowing")
    client.bgrewriteaof()
    in_progress = client.info("persistence")["aof_rewrite_in_progress"]
    server.kill()
    stop.set()
    thread.join(10)
    assert in_progress == 1, "the rewrite was still running when the server was killed"
    names = parse_manifest((aof_dir(tmp_path) / "appendonly.aof.manifest").read_text())
    assert [f.name for f in names.incr] == ["appendonly.aof.1.incr.aof",
                                            "appendonly.aof.2.incr.aof"]
    check_aof(tmp_path)
    loaded = KvreplProcess(tmp_path, "--appendonly", "yes").wait_ready()
    log = [int(x) for x in loaded.client().lrange("log", 0, -1)]
    assert log == list(range(len(log))) and len(log) >= len(acked)
    assert loaded.client().llen("big") == 100
    loaded.kill()


def test_bgsave_while_a_rewrite_runs_answers_as_redis(tmp_path):
    async def main() -> None:
        async with kvrepl.Master(appendonly=True, dir=str(tmp_path),
                                 enable_debug_command="yes") as master:
            master.execute_command("DEBUG", "POPULATE", 20000)
            st = persistence.attach(master.engine)
            st.snapshot_buffer = 4096  # a slow job
            assert master.execute_command("BGREWRITEAOF") == \
                b"Background append only file rewriting started"
            with pytest.raises(ReplyError, match="Background append only file rewriting "
                                                 "already in progress"):
                master.execute_command("BGREWRITEAOF")
            with pytest.raises(ReplyError, match=r"Another child process is active \(AOF\?\)"):
                master.execute_command("BGSAVE")
            assert master.execute_command("BGSAVE", "SCHEDULE") == \
                b"Background saving scheduled"
            await st.last_job.done.wait()
            with trio.fail_after(10):  # the scheduled BGSAVE runs at a cron tick
                while st.rdb_saves == 0 or st.bgsave is not None:
                    await trio.sleep(0.01)
            assert (tmp_path / "dump.rdb").exists()
            # The other way round: a rewrite asked for during a BGSAVE waits for it.
            state = aof.attach(master.engine)
            assert persistence.bgsave(master.engine)
            assert master.execute_command("BGREWRITEAOF") == \
                b"Background append only file rewriting scheduled"
            assert "aof_rewrite_scheduled:1" in master.execute_command(
                "INFO", "persistence").decode()
            with trio.fail_after(10):
                while state.rewrites < 2 or state.job is not None:
                    await trio.sleep(0.01)
            assert state.lastbgrewrite_ok and not state.rewrite_scheduled

    trio.run(main)


def test_repeated_rewrite_failures_delay_automatic_rewrites(tmp_path):
    """aofRewriteLimited: after 3 failures in a row, automatic rewrites wait (1 minute,
    then 2, 4 ...); BGREWRITEAOF is not limited."""
    engine = Engine(Config(save=(), dir=str(tmp_path)))
    state = aof.attach(engine)
    state.consecutive_failures = 2
    assert not state.rewrite_limited()
    state.consecutive_failures = 3
    assert state.rewrite_limited() and state.rewrite_limited()
    assert state._limit_minutes == 1 and state._limit_until - time.time() > 55
    state.consecutive_failures = 0
    assert not state.rewrite_limited() and state._limit_minutes == 0


def test_an_aof_write_error_stops_writes_until_it_is_solved(tmp_path):
    """writeCommandsDeniedByDiskError: -MISCONF for writes (and PING) while the AOF cannot
    be written; the buffer is kept and written once it can."""
    async def main() -> None:
        async with kvrepl.Master(appendonly=True, dir=str(tmp_path)) as master:
            state = aof.attach(master.engine)
            good = state.fd
            state.fd = os.open(tmp_path / "read-only", os.O_RDONLY | os.O_CREAT)
            master.set("lost-for-now", "1")
            state.flush()
            fields = master.execute_command("INFO", "persistence").decode()
            assert "aof_last_write_status:err" in fields
            with pytest.raises(ReplyError, match="MISCONF Errors writing to the AOF file: "
                                                 "Bad file descriptor"):
                master.execute_command("SET", "refused", "1")
            assert master.get("x") is None  # reads go on
            os.close(state.fd)
            state.fd = good
            with trio.fail_after(10):  # serverCron retries the write
                while not state.write_ok:
                    await trio.sleep(0.01)
            master.set("after", "2")
        async with kvrepl.Master(appendonly=True, dir=str(tmp_path)) as again:
            assert again.get("lost-for-now") == b"1" and again.get("after") == b"2"
            assert again.get("refused") is None

    trio.run(main)


def test_automatic_rewrite_on_growth(tmp_path):
    """auto-aof-rewrite-min-size and auto-aof-rewrite-percentage: the AOF is rewritten once
    it is past the minimum and has grown by the percentage since the last base."""
    async def main() -> None:
        async with kvrepl.Master(appendonly=True, dir=str(tmp_path),
                                 auto_aof_rewrite_min_size="4kb",
                                 auto_aof_rewrite_percentage=100) as master:
            state = aof.attach(master.engine)
            master.set("k", "x" * 100)
            await trio.sleep(0.3)  # cron ticks: under the minimum, nothing happens
            assert state.rewrites == 0
            for i in range(100):
                master.set("k", f"{i}" * 50)
            with trio.fail_after(10):
                while state.rewrites == 0 or state.job is not None:
                    await trio.sleep(0.01)
            assert state.lastbgrewrite_ok and state.manifest.base.name == \
                "appendonly.aof.2.base.rdb"
            assert state.current_size < 4096  # the new base holds one key

    trio.run(main)


# -- runtime switches, INFO, the embedded API, replicas -------------------------------------------


def test_config_set_appendonly_at_runtime(tmp_path):
    """yes starts a rewrite that writes the first base; writes made meanwhile are kept;
    no stops appending."""
    server = ThreadedServer(Config(save=(), dir=str(tmp_path), repl_diskless_sync_delay=0))
    server.start()
    try:
        client = server.client()
        client.set("before", "1")
        assert client.info("persistence")["aof_enabled"] == 0
        assert client.config_set("appendonly", "yes")
        client.set("during", "2")
        poll(lambda: client.info("persistence")["aof_rewrite_in_progress"] == 0,
             "the first rewrite is done")
        fields = client.info("persistence")
        assert fields["aof_enabled"] == 1 and fields["aof_last_bgrewrite_status"] == "ok"
        client.set("after", "3")
        poll(lambda: client.info("persistence")["aof_buffer_length"] == 0, "flushed")
        assert client.config_set("appendonly", "no")
        client.set("not-logged", "4")
        assert client.info("persistence")["aof_enabled"] == 0
    finally:
        server.stop()
    check_aof(tmp_path)
    # Switched on again in a later run: the old files become history and go.
    again = ThreadedServer(Config(save=(), dir=str(tmp_path), repl_diskless_sync_delay=0))
    again.start()
    try:
        client = again.client()
        client.set("before", "1")
        client.set("during", "2")
        client.set("after", "3")
        assert client.config_set("appendonly", "yes")
        poll(lambda: client.info("persistence")["aof_rewrite_in_progress"] == 0
             and client.info("persistence")["aof_enabled"] == 1, "the rewrite is done")
        assert sorted(os.listdir(aof_dir(tmp_path))) == [
            "appendonly.aof.2.base.rdb", "appendonly.aof.2.incr.aof", "appendonly.aof.manifest"]
    finally:
        again.stop()
    real = RedisServer("--appendonly", "yes", "--dir", str(tmp_path))
    try:
        got = real.client()
        assert (got.get("before"), got.get("during"), got.get("after"),
                got.get("not-logged")) == (b"1", b"2", b"3", None)
    finally:
        real.stop()


def test_info_persistence_aof_fields_match_redis(tmp_path):
    real = RedisServer("--appendonly", "yes")
    ours = KvreplProcess(tmp_path, "--appendonly", "yes").wait_ready()
    try:
        theirs, mine = real.client().info("persistence"), ours.client().info("persistence")
        names = [name for name in theirs if name.startswith("aof_")]
        assert names == [name for name in mine if name.startswith("aof_")]
        for name in ("aof_enabled", "aof_rewrite_in_progress", "aof_last_bgrewrite_status",
                     "aof_last_write_status", "aof_buffer_length", "aof_delayed_fsync"):
            assert mine[name] == theirs[name], name
        ours.client().set("k", "v")
        size = ours.client().info("persistence")["aof_current_size"]
        assert size == sum(p.stat().st_size for p in aof_dir(tmp_path).iterdir()
                           if not p.name.endswith("manifest"))
    finally:
        real.stop()
        ours.kill()


def _debug_loadaof(client: redis.Redis, directory: Path) -> redis.Redis:
    """DEBUG LOADAOF after a rewrite (a base and an incremental file) and a command written
    to the AOF behind the server's back: the dataset is read again from the files."""
    _fill(client.connection_pool.connection_kwargs["port"])
    client.function_load("#!lua name=lib\nredis.register_function('f', function() return 1 end)")
    client.bgrewriteaof()
    poll(lambda: client.info("persistence")["aof_rewrite_in_progress"] == 0
         and client.info("persistence")["aof_rewrites"] == 1, "the rewrite is done")
    client.set("after-rewrite", "1")
    digest = client.execute_command("DEBUG", "DIGEST")
    assert client.info("persistence")["rdb_changes_since_last_save"] > 0
    with open(last_incr(directory), "ab") as incr:
        incr.write(encode_command([b"SET", b"injected", b"from-disk"]))
    assert client.execute_command("DEBUG", "LOADAOF") == b"OK"
    assert client.get("injected") == b"from-disk"
    assert client.info("persistence")["rdb_changes_since_last_save"] == 0  # dirty = 0
    assert client.function_list()[0][1] == b"lib"  # library_name, from the RDB base
    client.delete("injected")
    assert client.execute_command("DEBUG", "DIGEST") == digest
    return client


def test_debug_loadaof_reloads_the_dataset_from_the_files_as_redis_does(tmp_path):
    real = RedisServer("--appendonly", "yes", "--enable-debug-command", "yes")
    try:
        _debug_loadaof(real.client(), Path(real.dir))
    finally:
        real.stop()
    ours = KvreplProcess(tmp_path, "--appendonly", "yes").wait_ready()
    client = _debug_loadaof(ours.client(), tmp_path)
    client.shutdown(nosave=True)
    assert ours.exit_status() == 0
    again = KvreplProcess(tmp_path, "--appendonly", "yes").wait_ready()
    assert again.client().function_list()[0][1] == b"lib"  # the base's functions load too


def test_debug_loadaof_without_an_aof_exits_as_redis_does(tmp_path):
    """loadAppendOnlyFiles answers AOF_NOT_EXIST and debug.c exits(1)."""
    real = RedisServer("--enable-debug-command", "yes")
    try:
        with pytest.raises(redis.ConnectionError):
            real.client(retry=no_retry()).execute_command("DEBUG", "LOADAOF")
        assert real.process.wait(10) == 1
    finally:
        real.stop()
    ours = KvreplProcess(tmp_path).wait_ready()
    ours.client().set("k", "v")
    with pytest.raises(redis.ConnectionError):
        ours.client().execute_command("DEBUG", "LOADAOF")
    assert ours.exit_status() == 1


def test_embedded_master_takes_the_aof_options(tmp_path):
    async def main() -> None:
        async with kvrepl.Master(appendonly=True, dir=str(tmp_path),
                                 appendfsync="always", appendfilename="mine.aof",
                                 appenddirname="journal") as master:
            master.set("k", "v")
            master.execute_command("MULTI")
            master.execute_command("INCR", "n")
            master.execute_command("INCR", "n")
            master.execute_command("EXEC")
            # always: on disk when the call returns
            incr = (tmp_path / "journal" / "mine.aof.1.incr.aof").read_bytes()
            assert incr.endswith(encode_command([b"EXEC"]))
        async with kvrepl.Master(appendonly=True, dir=str(tmp_path),
                                 appendfilename="mine.aof", appenddirname="journal") as again:
            assert again.get("k") == b"v" and again.get("n") == b"2"

    trio.run(main)
    assert sorted(os.listdir(tmp_path / "journal")) == [
        "mine.aof.1.base.rdb", "mine.aof.1.incr.aof", "mine.aof.manifest"]


def test_a_replica_keeps_its_own_aof_of_what_it_applies(tmp_path):
    async def main() -> None:
        async with kvrepl.Master() as master:
            master.set("synced", "1")
            replica = kvrepl.Replica(follow=master, appendonly=True, dir=str(tmp_path))
            async with replica:
                await replica.wait_synced()
                state = aof.attach(replica.engine)
                with trio.fail_after(10):  # the full sync restarts the AOF from a rewrite
                    while state.state != aof.ON:
                        await trio.sleep(0.01)
                master.set("streamed", "2")
                master.execute_command("EXPIRE", "synced", 1000)
                with trio.fail_after(10):
                    while replica.get("streamed") != b"2":
                        await trio.sleep(0.01)
                digest = replica.execute_command("DEBUG", "DIGEST")
        async with kvrepl.Master(appendonly=True, dir=str(tmp_path),
                                 enable_debug_command="yes") as reloaded:
            assert reloaded.execute_command("DEBUG", "DIGEST") == digest

    trio.run(main)


@pytest.mark.parametrize("fsync, ignore", [("everysec", "no"), ("everysec", "yes"),
                                           ("always", "no")])
def test_a_replica_whose_aof_write_fails_does_as_redis_server(tmp_path, fsync, ignore):
    """A replica's AOF hits its file size limit (RLIMIT_FSIZE: a real write error; a short
    write, cut off again). With appendfsync always it exits(1); otherwise
    aof_last_write_status is err, its clients get -MISCONF (PING included), and the next
    write from its master panics it, or with replica-ignore-disk-write-errors yes is
    applied with a warning. A redis-server replica of the same master, under the same
    limit, is the reference."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    master = RedisServer()
    limit = 1 << 20
    options = ("--appendonly", "yes", "--appendfsync", fsync,
               "--replica-ignore-disk-write-errors", ignore,
               "--replicaof", "127.0.0.1", str(master.port))
    (tmp_path / "kvrepl").mkdir()
    (tmp_path / "redis").mkdir()
    ours = KvreplProcess(tmp_path / "kvrepl", *options, file_size_limit=limit)
    theirs_port = free_port()
    theirs_log = open(tmp_path / "redis" / "redis.log", "w")  # noqa: SIM115
    theirs = subprocess.Popen(
        [binary, "--port", str(theirs_port), "--bind", "127.0.0.1", "--save", "",
         "--dir", str(tmp_path / "redis"), *options], stdout=theirs_log,
        stderr=subprocess.STDOUT, preexec_fn=limit_file_size(limit))
    replicas = {"kvrepl": (ours.process, lambda: (tmp_path / "kvrepl").glob("*.log")),
                "redis": (theirs, lambda: [tmp_path / "redis" / "redis.log"])}
    # No retries: polled while they start, and their exits are answers.
    clients = {"kvrepl": redis.Redis(port=ours.port, socket_timeout=10, retry=no_retry()),
               "redis": redis.Redis(port=theirs_port, socket_timeout=10, retry=no_retry())}

    def log(name: str) -> str:
        return "".join(path.read_text() for path in replicas[name][1]())

    def ready(client: redis.Redis) -> bool:
        try:
            info = client.info()
        except (redis.ConnectionError, redis.BusyLoadingError):
            return False
        return (info["master_link_status"] == "up" and info["aof_enabled"] == 1
                and info["aof_rewrite_in_progress"] == 0 and client.get("small") == b"1")

    try:
        writer = master.client()
        writer.set("small", "1")
        for client in clients.values():
            # Two real processes' full syncs and AOF rewrites: a loaded host needs more than
            # the usual bound.
            poll(lambda client=client: ready(client), "the replica synced, its AOF on",
                 PROCESS_WAIT)
        # 2 x 400 kB fit under the 1 MB limit, the third does not
        for i in range(3):
            writer.set(f"big{i}", "x" * 400_000)
            if i < 2:
                for client in clients.values():
                    poll(lambda client=client, i=i: client.exists(f"big{i}"), "applied",
                         PROCESS_WAIT)
        if fsync == "always":
            for name, (process, _) in replicas.items():
                assert process.wait(20) == 1, name
                assert "Can't recover from AOF write error when the AOF fsync policy is " \
                       "'always'. Exiting..." in log(name)
            return
        for name, client in clients.items():
            poll(lambda client=client: client.info("persistence")["aof_last_write_status"]
                 == "err", "the AOF write failed")
            assert "Short write while writing to the AOF file" in log(name)
            with pytest.raises(redis.ResponseError,
                               match="^MISCONF Errors writing to the AOF file: "):
                client.ping()
        writer.set("after", "1")
        for name, (process, _) in replicas.items():
            if ignore == "no":
                # serverPanic: redis-server dies of a signal after its bug report,
                # kvrepl-server exits 1
                status = process.wait(20)
                assert status == 1 if name == "kvrepl" else status < 0, (name, status)
                assert "Replica was unable to write command to disk." in log(name)
            else:
                poll(lambda name=name: clients[name].get("after") == b"1", "applied anyway")
                assert "Replica is applying a command even though it is unable to write " \
                       "to disk." in log(name)
    finally:
        if theirs.poll() is None:
            theirs.kill()
        theirs.wait(10)
        theirs_log.close()
        master.stop()


def test_no_appendfsync_on_rewrite_skips_fsync_while_a_snapshot_runs(tmp_path):
    async def main() -> None:
        async with kvrepl.Master(appendonly=True, dir=str(tmp_path), appendfsync="always",
                                 no_appendfsync_on_rewrite=True,
                                 enable_debug_command="yes") as master:
            state = aof.attach(master.engine)
            master.set("a", "1")
            assert state.last_incr_fsync_offset == state.last_incr_size
            master.execute_command("DEBUG", "POPULATE", 3000, "k", 100)
            st = persistence.attach(master.engine)
            st.snapshot_buffer = 4096  # a slow job: it runs while we write
            assert persistence.bgsave(master.engine)
            master.set("b", "2")
            assert st.bgsave is not None
            assert state.last_incr_fsync_offset < state.last_incr_size
            await st.last_job.done.wait()
            master.set("c", "3")
            assert state.last_incr_fsync_offset == state.last_incr_size

    trio.run(main)


def test_a_rewrite_prepares_its_incremental_file_off_the_loop_and_loses_nothing(tmp_path):
    """appendfsync everysec: BGREWRITEAOF answers at once and counts as in progress while a
    worker thread creates the new incremental file and its manifest; writes meanwhile go
    to the old file, those after the switch to the new one; a restart has them all."""
    async def main() -> None:
        async with kvrepl.Master(appendonly=True, dir=str(tmp_path)) as master:
            state = aof.attach(master.engine)
            before = state.manifest.incr[-1].name
            assert master.execute_command("BGREWRITEAOF") == \
                b"Background append only file rewriting started"
            assert "aof_rewrite_in_progress:1" in master.execute_command(
                "INFO", "persistence").decode()
            master.set("while-preparing", "1")
            assert state.manifest.incr[-1].name == before  # not switched yet
            with trio.fail_after(20):
                while state.job is not None:
                    master.set(f"during-{state.job.status}", "1")
                    await trio.sleep(0.001)
            master.set("after", "1")
            keys = sorted(master.execute_command("KEYS", "*"))
            assert state.manifest.incr[-1].name != before
            on_disk = parse_manifest((aof_dir(tmp_path) / "appendonly.aof.manifest").read_text())
            assert on_disk == state.manifest
        async with kvrepl.Master(appendonly=True, dir=str(tmp_path)) as again:
            assert sorted(again.execute_command("KEYS", "*")) == keys

    trio.run(main)


@pytest.mark.parametrize("incremental", ["yes", "no"])
def test_incremental_fsync_syncs_saves_and_rewrites_every_4_mb(tmp_path, incremental):
    """rdb-save-incremental-fsync and aof-rewrite-incremental-fsync (both CONFIG SET at
    runtime): a BGSAVE and an AOF rewrite sync the file every 4 MB written (rio's
    autosync), or only once at the end."""
    async def main() -> None:
        async with kvrepl.Master(appendonly=True, dir=str(tmp_path), rdbcompression=False,
                                 enable_debug_command="yes") as master:
            for name in ("rdb-save-incremental-fsync", "aof-rewrite-incremental-fsync"):
                master.execute_command("CONFIG", "SET", name, incremental)
            # ~14 MB of uncompressed values: three full 4 MB windows
            master.execute_command("DEBUG", "POPULATE", 60_000, "key", 230)
            st = persistence.attach(master.engine)
            for start, path in (
                    (lambda: persistence.bgsave(master.engine), tmp_path / "dump.rdb"),
                    (lambda: aof.attach(master.engine).rewrite(),
                     aof_dir(tmp_path) / "appendonly.aof.2.base.rdb")):
                assert start()
                job = st.last_job
                await job.done.wait()
                file = next(c.file for c in job.consumers
                            if isinstance(c, persistence.FileConsumer))
                size = path.stat().st_size
                assert file.bytes_written == size > 3 * persistence.AUTOSYNC_BYTES
                assert file.autosyncs == (size // persistence.AUTOSYNC_BYTES
                                          if incremental == "yes" else 0)

    trio.run(main)


def test_aof_names_are_checked_as_redis_checks_them(tmp_path):
    with pytest.raises(ConfigError, match="appenddirname can't be empty"):
        kvrepl.Master(appenddirname="")
    with pytest.raises(ConfigError, match="can't be a path"):
        kvrepl.Master(appenddirname="a/b")


def test_a_pre_7_single_file_aof_is_migrated_and_loaded(tmp_path):
    """aofUpgradePrepare: ``dir/appendonly.aof`` (an RDB preamble and a command tail)
    becomes the base of a manifest in the AOF directory, and loads whole."""
    engine = Engine(Config(save=(), dir=str(tmp_path)))
    session = engine.new_session()
    engine.execute(session, argv("SET", "from-preamble", "1"))
    old = tmp_path / "appendonly.aof"
    persistence.write_dump(engine, str(old))
    with old.open("ab") as out:
        out.write(encode_command([b"SELECT", b"0"]) + encode_command([b"SET", b"tail", b"2"]))

    async def main() -> None:
        async with kvrepl.Master(appendonly=True, dir=str(tmp_path)) as master:
            assert master.get("from-preamble") == b"1" and master.get("tail") == b"2"

    trio.run(main)
    assert not old.exists()
    assert (aof_dir(tmp_path) / "appendonly.aof.manifest").read_text() == (
        "file appendonly.aof seq 1 type b\nfile appendonly.aof.1.incr.aof seq 1 type i\n")
    check_aof(tmp_path)


# -- sans-IO pieces -------------------------------------------------------------------------------


def test_manifest_round_trip_and_errors():
    text = ("file appendonly.aof.2.base.rdb seq 2 type b\n"
            "file appendonly.aof.1.incr.aof seq 1 type h\n"
            "file appendonly.aof.3.incr.aof seq 3 type i\n"
            "file appendonly.aof.4.incr.aof seq 4 type i\n")
    manifest = parse_manifest(text)
    assert manifest.text() == text
    assert manifest.new_incr("appendonly.aof") == "appendonly.aof.5.incr.aof"
    manifest.mark_rewritten_incr_as_history(keep_last=True)
    assert [f.name for f in manifest.incr] == ["appendonly.aof.5.incr.aof"]
    assert manifest.new_base("appendonly.aof") == "appendonly.aof.3.base.rdb"
    assert parse_manifest(Manifest().text()).empty
    for bad in ("file x seq 1\n", "file x seq 1 type z\n",
                "file a seq 1 type b\nfile b seq 2 type b\n"):
        with pytest.raises(ManifestError):
            parse_manifest(bad)


def test_command_reader_offsets():
    data = b"#TS:1\r\n" + encode_command([b"SET", b"k", b"v"]) + encode_command([b"DEL", b"k"])
    reader = CommandReader()
    for byte in data[:-1]:
        reader.feed(bytes([byte]))
        while reader.next() is not None:
            pass
    assert reader.offset == len(data) - len(encode_command([b"DEL", b"k"]))
    assert reader.pending == len(encode_command([b"DEL", b"k"])) - 1
    reader = CommandReader()
    reader.feed(data.replace(b"v\r\n*2", b"v\r\n!2"))
    assert reader.next() == [b"SET", b"k", b"v"]
    with pytest.raises(AofFormatError) as err:
        reader.next()
    assert err.value.offset == data.index(b"*2")


def test_command_writer_rebuilds_each_type_and_refuses_what_it_cannot_write():
    from collections import deque

    from kvrepl.aof.rewrite import CommandWriter, RewriteError
    from kvrepl.store.values import Stream, ZSet

    writer = CommandWriter()
    data = writer.write_batch(2, [(b"s", b"v"), (b"l", deque([b"a", b"b"])),
                                  (b"z", ZSet({b"m": 1.5}))], {b"s": 1700000000000})
    reader = CommandReader()
    reader.feed(data)
    commands = []
    while (argv := reader.next()) is not None:
        commands.append(argv)
    assert commands == [[b"SELECT", b"2"], [b"SET", b"s", b"v"],
                        [b"PEXPIREAT", b"s", b"1700000000000"], [b"RPUSH", b"l", b"a", b"b"],
                        [b"ZADD", b"z", b"1.5", b"m"]]
    big = writer.write_batch(2, [(b"set", {b"%d" % i for i in range(130)})], None)
    assert big.count(b"SADD") == 3  # 64 members per command, as Redis writes them
    with pytest.raises(RewriteError, match="aof-use-rdb-preamble yes"):
        writer.write_batch(2, [(b"x", Stream())], None)


def test_loading_refuses_unknown_commands_with_the_offset(tmp_path):
    async def main() -> None:
        async with kvrepl.Master(appendonly=True, dir=str(tmp_path)) as master:
            master.set("a", "1")
        incr = aof_dir(tmp_path) / "appendonly.aof.1.incr.aof"
        at = incr.stat().st_size
        with incr.open("ab") as out:
            out.write(encode_command([b"NOSUCH", b"x"]))
        engine = Engine(Config(save=(), dir=str(tmp_path), appendonly=True))
        with pytest.raises(aof.AofLoadError,
                           match=f"Unknown command 'NOSUCH' .* at offset {at}"):
            await aof.load_on_startup(engine)

    trio.run(main)


def test_loading_gives_loading_errors_meanwhile(tmp_path):
    async def main() -> None:
        async with kvrepl.Master(appendonly=True, dir=str(tmp_path)) as master:
            for i in range(5000):
                master.set(f"k{i}", "v")
        engine = Engine(Config(save=(), dir=str(tmp_path), appendonly=True))
        session = engine.new_session()
        async with trio.open_nursery() as nursery:
            persistence.attach(engine, nursery)
            await nursery.start(persistence.load_on_startup, engine)
            assert engine.loading
            reply = engine.execute(session, argv("GET", "k1"))
            assert isinstance(reply, ReplyError) and str(reply).startswith("LOADING")
            # DENY_LOADING_CONFIG: appendonly cannot change while the AOF loads.
            reply = engine.execute(session, argv("CONFIG", "SET", "appendonly", "no"))
            assert str(reply) == "LOADING Redis is loading the dataset in memory"
            assert engine.config.appendonly
            while engine.loading:
                await trio.sleep(0.001)
            assert engine.execute(session, argv("DBSIZE")) == 5000
            nursery.cancel_scope.cancel()

    trio.run(main)
