"""Faults that hit whole processes, each ending in equal DEBUG DIGESTs: a master killed with
SIGKILL in the middle of a full sync, a replica killed in the middle of a load, a replica that
stops reading, a backlog overrun, a disk that fails during BGSAVE, and a failover chain.

Real processes (kvrepl-server, and redis-server beside it where its behaviour is the
reference); a test only ever signals the processes it started. Slow steps are held open by
Redis's own test hooks (rdb-key-save-delay, key-load-delay) or by SIGSTOP, never by timing.
"""

from __future__ import annotations

import os
import resource
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from support import KvreplProcess, RedisServer, poll

from kvrepl.rdb import iter_entries

WITHIN = 30.0  # seconds any wait here may take (full syncs of real processes)


def info(client: redis.Redis, section: str) -> dict[str, object]:
    return client.info(section)


def digest(client: redis.Redis) -> bytes:
    return client.execute_command("DEBUG", "DIGEST")


def caught_up(master: redis.Redis, *replicas: redis.Redis) -> bool:
    """Every replica's link up and at the master's offset."""
    offset = info(master, "replication")["master_repl_offset"]
    for replica in replicas:
        fields = info(replica, "replication")
        if fields["master_link_status"] != "up" or fields["slave_repl_offset"] != offset:
            return False
    return True


def wait_caught_up(master: redis.Redis, *replicas: redis.Redis) -> None:
    poll(lambda: caught_up(master, *replicas), "the replicas caught up", WITHIN)


def fill(client: redis.Redis, count: int, size: int = 1000) -> None:
    """``count`` keys of ``size`` random bytes: a payload that does not compress, so that it
    flows (an lz4 block at a time) while the snapshot is still being written."""
    client.mset({f"key:{i}": os.urandom(size) for i in range(count)})


@pytest.fixture
def redis_server() -> Iterator[Callable[..., RedisServer]]:
    """Start redis-server processes (DEBUG enabled); each is stopped when the test ends."""
    started: list[RedisServer] = []

    def start(*extra: str) -> RedisServer:
        started.append(RedisServer("--enable-debug-command", "yes", *extra))
        return started[-1]

    yield start
    for server in started:
        server.process.send_signal(signal.SIGCONT)  # a test may have stopped it
        server.stop()


def sync_started(client: redis.Redis) -> bool:
    return info(client, "replication").get("master_sync_in_progress") == 1


# -- the master killed with SIGKILL in the middle of a full sync ----------------------------


@pytest.mark.parametrize("diskless", ["yes", "no"])
def test_a_master_killed_during_a_full_sync_costs_its_replicas_nothing(
        tmp_path: Path, diskless: str, redis_server: Callable[..., RedisServer]) -> None:
    """The master dies (SIGKILL) while its snapshot for two replicas (kvrepl, redis-server)
    is half sent (diskless) or half written (disk): each replica keeps its previous dataset
    whole, the master's dump is untouched, and once the master is restarted from that dump
    both replicas resync to its digest."""
    (tmp_path / "m").mkdir()
    (tmp_path / "r").mkdir()
    options = ("--repl-diskless-sync", diskless, "--repl-diskless-sync-delay", "5",
               "--repl-diskless-sync-max-replicas", "2")
    master = KvreplProcess(tmp_path / "m", *options)
    ours = KvreplProcess(tmp_path / "r")  # started meanwhile: a start is a second of imports
    m = master.wait_ready().client()
    fill(m, 300, 4000)
    assert m.save()
    dump = (tmp_path / "m" / "dump.rdb").read_bytes()
    saved = digest(m)
    ours.wait_ready()
    theirs = redis_server()
    replicas = [ours.client(), theirs.client()]
    old = []
    for index, client in enumerate(replicas):
        client.execute_command("DEBUG", "POPULATE", "50", f"old{index}", "10")
        old.append(digest(client))
    m.config_set("rdb-key-save-delay", 200_000)  # 0.2 s a key: a minute for the snapshot
    for client in replicas:
        client.replicaof("127.0.0.1", master.port)
    poll(lambda: all(sync_started(c) for c in replicas), "both replicas are syncing", WITHIN)
    poll(lambda: info(m, "persistence")["current_save_keys_processed"] > 2,
         "the snapshot is under way", WITHIN)
    if diskless == "yes":  # the payload is on its way: kvrepl is loading it beside its data
        poll(lambda: info(replicas[0], "persistence").get("loading_loaded_bytes", 0) > 0,
             "the payload reaches the kvrepl replica", WITHIN)
    for client, before in zip(replicas, old, strict=True):  # still mid-sync
        assert sync_started(client) and digest(client) == before
    master.kill()
    for client, before in zip(replicas, old, strict=True):
        poll(lambda c=client: not sync_started(c), "the replica saw the master go", WITHIN)
        assert info(client, "replication")["master_link_status"] == "down"
        assert digest(client) == before, (client.dbsize(), ours.output()[-3000:])
        assert client.dbsize() == 50
    assert (tmp_path / "m" / "dump.rdb").read_bytes() == dump  # a temp file may be left

    restarted = KvreplProcess(tmp_path / "m", *options, port=master.port).wait_ready()
    m = restarted.client()
    assert digest(m) == saved
    wait_caught_up(m, *replicas)
    m.set("after", "restart")
    wait_caught_up(m, *replicas)
    for client in replicas:
        assert digest(client) == digest(m)


# -- a replica killed in the middle of a load -----------------------------------------------


def test_a_replica_killed_while_loading_keeps_its_old_dump_and_syncs_after_restart(
        tmp_path: Path) -> None:
    """key-load-delay holds the replica's load open; SIGKILL then leaves its old dump whole
    (the payload goes to a temp file, renamed only once it loaded), a restart loads that dump,
    and the replica then syncs to the master's digest."""
    (tmp_path / "m").mkdir()
    (tmp_path / "r").mkdir()
    master = KvreplProcess(tmp_path / "m", "--repl-diskless-sync-delay", "0")
    replica = KvreplProcess(tmp_path / "r")  # started meanwhile: a start is a second of imports
    m = master.wait_ready().client()
    fill(m, 200)
    replica.wait_ready()
    r = replica.client()
    r.execute_command("DEBUG", "POPULATE", "40", "old", "10")
    assert r.save()
    old_dump = (tmp_path / "r" / "dump.rdb").read_bytes()
    old = digest(r)
    r.config_set("key-load-delay", 100_000)  # 0.1 s a key: 20 s for the load
    r.replicaof("127.0.0.1", master.port)
    poll(lambda: info(r, "persistence").get("loading_loaded_bytes", 0) > 0,
         "the replica is loading the payload", WITHIN)
    assert info(r, "persistence")["async_loading"] == 1
    replica.kill()
    assert (tmp_path / "r" / "dump.rdb").read_bytes() == old_dump

    restarted = KvreplProcess(tmp_path / "r", port=replica.port).wait_ready()
    r = restarted.client()
    assert digest(r) == old
    r.replicaof("127.0.0.1", master.port)
    wait_caught_up(m, r)
    assert digest(r) == digest(m)


# -- a replica that stops reading ------------------------------------------------------------


@pytest.mark.parametrize(("limit", "reason"), [
    ("replica 4mb 0 0", "hard output buffer limit reached"),
    ("replica 16mb 1mb 1", "soft output buffer limit reached"),
])
def test_a_replica_that_stops_reading_is_cut_with_the_masters_memory_bounded(
        tmp_path: Path, limit: str, reason: str) -> None:
    """The replica process is stopped (SIGSTOP) while the master takes 24 MB of writes: the
    master holds no more for it than the limit allows (mem_clients_slaves, sampled after
    every write), drops it when the limit says, and the replica resyncs once it runs again."""
    (tmp_path / "m").mkdir()
    (tmp_path / "r").mkdir()
    master = KvreplProcess(tmp_path / "m", "--repl-diskless-sync-delay", "0",
                           "--client-output-buffer-limit", limit).wait_ready()
    m = master.client()
    replica = KvreplProcess(tmp_path / "r", "--replicaof", "127.0.0.1",
                            str(master.port)).wait_ready()
    r = replica.client()
    m.set("before", "pause")
    wait_caught_up(m, r)
    hard = int(limit.split()[1].removesuffix("mb")) << 20
    value = b"v" * 100_000
    replica.pause()
    try:
        peak = 0
        for i in range(240):
            m.set(f"big:{i % 60}", value)
            peak = max(peak, info(m, "memory")["mem_clients_slaves"])
            if info(m, "replication")["connected_slaves"] == 0:
                break
            if reason.startswith("soft"):
                # a pace, not a wait: at most 2 MB/s, so the soft limit has been exceeded
                # for over its 1 s well before the 16 MB hard limit could be met
                time.sleep(0.05)
        assert info(m, "replication")["connected_slaves"] == 0, "the replica was never cut"
    finally:
        replica.resume()
    # what one write adds past the limit before the check drops the link
    assert peak <= hard + len(value) + 4096, peak
    assert reason in master.output()
    assert info(m, "memory")["mem_clients_slaves"] == 0
    m.set("after", "resume")
    wait_caught_up(m, r)
    assert digest(r) == digest(m)


# -- a backlog overrun -----------------------------------------------------------------------


@pytest.mark.parametrize(("written", "partial"), [(4_000, True), (200_000, False)])
def test_replicas_away_while_the_backlog_overruns_resync_fully(
        tmp_path: Path, written: int, partial: bool,
        redis_server: Callable[..., RedisServer]) -> None:
    """Both replicas (kvrepl, redis-server) are stopped (SIGSTOP) and their links cut;
    the master takes ``written`` bytes with a 16 KiB backlog. When they run again they ask
    to continue: a partial resync when the backlog still holds their offset, a full one
    (sync_partial_err) when it overran. Either way their digests end equal to the master's."""
    master = KvreplProcess(tmp_path, "--repl-backlog-size", "16kb",
                           "--repl-diskless-sync-delay", "0").wait_ready()
    m = master.client()
    fill(m, 20)
    ours = KvreplProcess(tmp_path, "--replicaof", "127.0.0.1", str(master.port)).wait_ready()
    theirs = redis_server("--replicaof", "127.0.0.1", str(master.port))
    replicas = [ours.client(), theirs.client()]
    wait_caught_up(m, *replicas)
    before = info(m, "stats")
    ours.pause()
    theirs.process.send_signal(signal.SIGSTOP)
    try:
        m.client_kill_filter(_type="replica")
        poll(lambda: info(m, "replication")["connected_slaves"] == 0, "the links are cut")
        for i in range(written // 1000):
            m.set(f"while-away:{i}", os.urandom(1000 - 40))
    finally:
        ours.resume()
        theirs.process.send_signal(signal.SIGCONT)
    wait_caught_up(m, *replicas)
    after = info(m, "stats")
    full = after["sync_full"] - before["sync_full"]
    continued = after["sync_partial_ok"] - before["sync_partial_ok"]
    refused = after["sync_partial_err"] - before["sync_partial_err"]
    assert (full, continued, refused) == ((0, 2, 0) if partial else (2, 0, 2))
    for client in replicas:
        assert digest(client) == digest(m)


# -- a disk that fails during BGSAVE ---------------------------------------------------------


def limit_file_size(pid: int, size: int) -> None:
    """RLIMIT_FSIZE of a process we started: a write past ``size`` bytes fails in the kernel
    (EFBIG, or SIGXFSZ where it is not ignored: Redis's save child dies of it) as a full
    disk fails a write, without a filesystem of its own to fill."""
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (size, resource.RLIM_INFINITY))


def test_a_disk_that_fails_during_bgsave_stops_writes_until_a_save_succeeds(
        tmp_path: Path, redis_server: Callable[..., RedisServer]) -> None:
    """Each server (kvrepl-server, redis-server) has a good dump, then a BGSAVE whose file
    cannot grow past 64 KiB: the save fails midway, writes get MISCONF (the same error on
    both), the old dump is intact and no temp file is left; once the file may grow again a
    BGSAVE succeeds and writes are accepted, the new dump holding the whole dataset."""
    ours = KvreplProcess(tmp_path).wait_ready()
    theirs = redis_server()
    servers = [(ours.client(), ours.process.pid, tmp_path),
               (theirs.client(), theirs.process.pid, Path(theirs.dir))]
    refusals = []
    for client, pid, directory in servers:
        client.config_set("save", "3600 1")  # MISCONF needs save points, as in Redis
        client.set("small", "dataset")
        assert client.save()
        old = (directory / "dump.rdb").read_bytes()
        fill(client, 300)  # ~300 KB
        limit_file_size(pid, 64 * 1024)
        client.bgsave()
        poll(lambda c=client: info(c, "persistence")["rdb_bgsave_in_progress"] == 0
             and info(c, "persistence")["rdb_last_bgsave_status"] == "err",
             "the BGSAVE failed", WITHIN)
        with pytest.raises(redis.ResponseError) as refused:
            client.set("k", "v")
        refusals.append(str(refused.value))
        assert client.get("small") == b"dataset"  # reads go on
        assert (directory / "dump.rdb").read_bytes() == old
        assert not list(directory.glob("temp-*.rdb"))
        limit_file_size(pid, resource.RLIM_INFINITY)
        client.bgsave()
        poll(lambda c=client: info(c, "persistence")["rdb_bgsave_in_progress"] == 0
             and info(c, "persistence")["rdb_last_bgsave_status"] == "ok",
             "a BGSAVE succeeded", WITHIN)
        assert client.set("k", "v")
        assert len(list(iter_entries_of(directory / "dump.rdb"))) == 301
    assert refusals[0] == refusals[1]
    assert refusals[0].startswith("MISCONF")


def iter_entries_of(path: Path) -> list[object]:
    with path.open("rb") as dump:
        return list(iter_entries(dump))


# -- a failover chain ------------------------------------------------------------------------


@pytest.mark.parametrize("promoted", ["kvrepl", "redis"])
def test_a_failover_chain_continues_partially_after_the_master_dies(
        tmp_path: Path, promoted: str, redis_server: Callable[..., RedisServer]) -> None:
    """Master M (kvrepl) with replicas A and B (one kvrepl-server, one redis-server) and C,
    a kvrepl-server replica of B. M is killed (SIGKILL); A becomes master (REPLICAOF NO ONE)
    and B is re-pointed at it: B continues partially on A (its history is A's second id),
    C continues on B, and every digest ends equal to A's."""
    master = KvreplProcess(tmp_path, "--repl-diskless-sync-delay", "0").wait_ready()
    m = master.client()
    fill(m, 50)
    kv = KvreplProcess(tmp_path, "--replicaof", "127.0.0.1", str(master.port),
                       "--repl-diskless-sync-delay", "0").wait_ready()
    real = redis_server("--replicaof", "127.0.0.1", str(master.port),
                        "--repl-diskless-sync-delay", "0")
    a_port, b_port = (kv.port, real.port) if promoted == "kvrepl" else (real.port, kv.port)
    a, b = (redis.Redis(port=a_port), redis.Redis(port=b_port))
    chained = KvreplProcess(tmp_path, "--replicaof", "127.0.0.1", str(b_port)).wait_ready()
    c = chained.client()
    wait_caught_up(m, a, b)
    wait_caught_up(b, c)
    m.set("last", "before the failover")
    wait_caught_up(m, a, b)
    master.kill()
    a.replicaof("NO", "ONE")
    before = [info(a, "stats"), info(b, "stats")]
    b.replicaof("127.0.0.1", a_port)
    wait_caught_up(a, b)
    a.set("first", "after the failover")
    wait_caught_up(a, b)
    wait_caught_up(b, c)
    for was, now in zip(before, [info(a, "stats"), info(b, "stats")], strict=True):
        # A served B, B served C (cut when B's history changed): partial resyncs only
        assert (now["sync_full"] - was["sync_full"],
                now["sync_partial_ok"] - was["sync_partial_ok"]) == (0, 1)
    for client in (b, c):
        assert digest(client) == digest(a)
