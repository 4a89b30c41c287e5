"""The one snapshot producer streams: a full sync or a BGSAVE of a dataset far bigger than the
producer's buffer never holds more than that buffer (its own high-water counter, not RSS),
and every replica (redis-server, kvrepl, raw sockets with and without ``capa eof``) and the
dump file still end up with the master's exact dataset (DEBUG DIGEST).
"""

from __future__ import annotations

import random
import shutil
import subprocess

import pytest
import trio
from support import RedisServer
from test_replication import _link_up, digest, eventually

import kvrepl
from kvrepl import persistence
from kvrepl.rdb import StagedLoad
from kvrepl.replication.stream import encode_command
from kvrepl.store.database import Keyspace
from kvrepl.store.digest import digest as dataset_digest

BUFFER = 64 * 1024
KEYS = 20_000  # x 1 KB: a 20 MB dataset, 300 times the buffer
FEW = 5_000  # 5 MB, for what is about who gets the bytes rather than how many


def fill_big(node: kvrepl.Node, keys: int = KEYS) -> None:
    """``keys`` keys of 1 KB of incompressible bytes (LZF can't shrink the RDB), a few with
    TTLs."""
    noise = random.Random(7)
    for i in range(keys):
        node.set(b"key:%d" % i, noise.randbytes(1024))
    for i in range(0, keys, 1000):
        node.execute_command("PEXPIRE", b"key:%d" % i, 10_000_000)


def bounded(node: kvrepl.Node) -> persistence.Persistence:
    state = persistence.attach(node.engine)
    state.snapshot_buffer = BUFFER
    return state


async def assert_streamed(job: persistence.SnapshotJob, keys: int = KEYS) -> None:
    """The job wrote the whole dataset, never holding more than its buffer. A replica may
    have read the last byte before the job marks itself done: wait for that mark."""
    with trio.fail_after(30):
        await job.done.wait()
    assert job.status == persistence.DONE
    assert job.keys_done >= keys and job.bytes_out > keys * 1024
    assert 0 < job.peak_buffered <= BUFFER, job.peak_buffered


def rdb_digest(payload: bytes) -> bytes:
    """DEBUG DIGEST of the dataset an RDB payload holds."""
    loader = StagedLoad(16, drop_expired=False, now_ms=0)
    loader.feed(payload)
    loader.finish()
    keyspace = Keyspace()
    loader.apply(keyspace)
    return dataset_digest(keyspace)


# -- raw replicas: what goes over the wire -----------------------------------------------------

async def raw_replica(port: int, *capa: str) -> tuple[trio.SocketStream, bytearray]:
    """A replica that announces ``capa`` and sends PSYNC ? -1; returns the stream and what
    was received after the REPLCONF reply."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    replconf = [b"REPLCONF"] + [x for c in capa for x in (b"capa", c.encode())]
    await stream.send_all(encode_command(replconf) + encode_command([b"PSYNC", b"?", b"-1"]))
    buffer = bytearray()
    while b"+OK\r\n" not in buffer:
        buffer += await stream.receive_some(65536)
    del buffer[:buffer.index(b"+OK\r\n") + 5]
    return stream, buffer


async def read_line(stream: trio.SocketStream, buffer: bytearray) -> bytes:
    """The next non-empty line (keepalive newlines skipped)."""
    while True:
        while b"\n" not in buffer:
            data = await stream.receive_some(65536)
            assert data, "the master closed the link"
            buffer += data
        end = buffer.index(b"\n")
        line = bytes(buffer[:end]).rstrip(b"\r")
        del buffer[:end + 1]
        if line:
            return line


async def read_payload(stream: trio.SocketStream, buffer: bytearray) -> tuple[bytes, bytes]:
    """``(+FULLRESYNC line, RDB)`` of a full sync, in the $EOF: or the $<len> framing."""
    fullresync = await read_line(stream, buffer)
    header = await read_line(stream, buffer)
    if header.startswith(b"$EOF:"):
        mark = header[5:]
        while not buffer.endswith(mark):
            data = await stream.receive_some(65536)
            assert data, "the master closed the link mid-payload"
            buffer += data
        return fullresync, bytes(buffer[:-len(mark)])
    size = int(header[1:])
    while len(buffer) < size:
        data = await stream.receive_some(65536)
        assert data, "the master closed the link mid-payload"
        buffer += data
    return fullresync, bytes(buffer[:size])


# -- full syncs --------------------------------------------------------------------------------

async def test_diskless_full_sync_to_redis_server_holds_only_the_buffer():
    async with kvrepl.Master(port=0) as master:
        state = bounded(master)
        fill_big(master)
        replica = RedisServer("--replicaof", "127.0.0.1", str(master.port),
                              "--enable-debug-command", "yes")
        try:
            client = replica.client()
            for i in range(20):  # held while the snapshot streams, sent after it
                master.set(f"during:{i}", i)
                await trio.sleep(0.005)
            await eventually(lambda: _link_up(client), "the redis replica is up")
            offset = master.replication.master_repl_offset
            await eventually(lambda: client.info("replication")["slave_repl_offset"] >= offset,
                             "redis applied the stream")
            assert master.replication.last_payload_framing == "eof"
            await assert_streamed(state.last_job)
            assert await trio.to_thread.run_sync(digest, client) == digest(master)
        finally:
            replica.stop()


async def test_full_sync_to_a_kvrepl_replica_streams_lz4_with_only_the_buffer():
    async with kvrepl.Master(port=0) as master:
        state = bounded(master)
        fill_big(master)
        async with kvrepl.Replica(follow=("127.0.0.1", master.port)) as replica:
            await replica.wait_synced()
            master.set(b"after", b"sync")
            assert await master.wait_for_replicas(1, 20) == 1  # acknowledged: applied
            assert master.replication.last_payload_framing == "lz4"
            await assert_streamed(state.last_job)
            assert digest(replica) == digest(master)


async def test_disk_sync_with_diskless_off_streams_the_dump_file(tmp_path):
    async with kvrepl.Master(port=0, dir=str(tmp_path), repl_diskless_sync=False) as master:
        state = bounded(master)
        fill_big(master)
        replica = RedisServer("--replicaof", "127.0.0.1", str(master.port),
                              "--enable-debug-command", "yes")
        try:
            client = replica.client()
            await eventually(lambda: _link_up(client), "the redis replica is up")
            assert master.replication.last_payload_framing == "len"
            await assert_streamed(state.last_job)
            assert (tmp_path / "dump.rdb").exists()  # a disk sync is a BGSAVE of the dump
            assert state.last_bgsave_ok and state.changes_since_last_save == 0
            assert await trio.to_thread.run_sync(digest, client) == digest(master)
        finally:
            replica.stop()


async def test_a_replica_without_capa_eof_gets_a_length_from_the_dump_file(tmp_path):
    async with kvrepl.Master(port=0, dir=str(tmp_path)) as master:
        state = bounded(master)
        fill_big(master, FEW)
        stream, buffer = await raw_replica(master.port, "psync2")
        async with stream:
            fullresync, payload = await read_payload(stream, buffer)
        assert fullresync.startswith(b"+FULLRESYNC ")
        assert master.replication.last_payload_framing == "len"
        await assert_streamed(state.last_job, FEW)
        assert payload == (tmp_path / "dump.rdb").read_bytes()
        assert rdb_digest(payload) == digest(master)


async def test_replicas_share_one_snapshot_once_max_replicas_wait():
    # A delay no test would wait out: only repl-diskless-sync-max-replicas can start it.
    async with kvrepl.Master(port=0, repl_diskless_sync_delay=3600,
                             repl_diskless_sync_max_replicas=2) as master:
        state = bounded(master)
        fill_big(master, FEW)
        first, first_buffer = await raw_replica(master.port, "eof", "psync2")
        while not master.replication.waiting:
            await trio.sleep(0.01)
        assert master.replication.job is None and state.bgsave is None
        second, second_buffer = await raw_replica(master.port, "eof", "psync2")
        async with first, second:
            results = {}

            async def read(name, stream, buffer):
                results[name] = await read_payload(stream, buffer)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read, "first", first, first_buffer)
                nursery.start_soon(read, "second", second, second_buffer)
            jobs = {link.job for link in master.replication.replicas}
        assert len(jobs) == 1 and jobs == {state.last_job}
        assert results["first"] == results["second"]  # same offset, same RDB
        await assert_streamed(state.last_job, FEW)
        assert rdb_digest(results["first"][1]) == digest(master)


async def test_diskless_sync_delay_holds_the_snapshot_until_it_ends():
    async with kvrepl.Master(port=0, repl_diskless_sync_delay=1) as master:
        state = bounded(master)
        fill_big(master, FEW)
        waiting_since = trio.current_time()
        stream, buffer = await raw_replica(master.port, "eof", "psync2")
        while not master.replication.waiting:
            await trio.sleep(0.01)
        # Waiting for more replicas to share it: no snapshot before the delay has passed (on
        # a loaded machine it may have passed already; both are lower bounds, never flaky).
        assert master.replication.job is None or \
            trio.current_time() - waiting_since >= 1
        async with stream:
            _, payload = await read_payload(stream, buffer)
        # Started by the delay's end, not by the request (a lower bound: never flaky).
        assert trio.current_time() - waiting_since >= 1
        await assert_streamed(state.last_job, FEW)
        assert rdb_digest(payload) == digest(master)


async def test_a_replica_asking_during_a_diskless_transfer_waits_for_the_next_snapshot():
    async with kvrepl.Master(port=0) as master:
        state = bounded(master)
        fill_big(master)
        early, early_buffer = await raw_replica(master.port, "eof", "psync2")
        while master.replication.job is None:
            await trio.sleep(0.01)
        first = master.replication.job  # paced by ``early``, which reads nothing yet
        late, late_buffer = await raw_replica(master.port, "eof", "psync2")
        while not master.replication.waiting:
            await trio.sleep(0.01)
        assert master.replication.job is first and first.status == persistence.RUNNING
        assert "state=wait_bgsave" in master.replication.info_replica_lines()[1]
        async with early, late:
            _, early_payload = await read_payload(early, early_buffer)
            _, late_payload = await read_payload(late, late_buffer)
        assert state.last_job is not first  # a second snapshot, once the first was done
        await assert_streamed(first)
        await assert_streamed(state.last_job)
        assert rdb_digest(early_payload) == rdb_digest(late_payload) == digest(master)


async def test_a_replica_leaving_mid_transfer_does_not_hurt_the_other():
    async with kvrepl.Master(port=0, repl_diskless_sync_delay=3600,
                             repl_diskless_sync_max_replicas=2) as master:
        state = bounded(master)
        fill_big(master, FEW)
        leaving, leaving_buffer = await raw_replica(master.port, "eof", "psync2")
        staying, staying_buffer = await raw_replica(master.port, "eof", "psync2")
        received = {}

        async def stay():
            async with staying:
                received["payload"] = (await read_payload(staying, staying_buffer))[1]

        async def leave():
            async with leaving:  # gone with most of the RDB unsent
                while len(leaving_buffer) < 4 * BUFFER:
                    leaving_buffer.extend(await leaving.receive_some(65536))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(stay)
            nursery.start_soon(leave)
        payload = received["payload"]
        await assert_streamed(state.last_job, FEW)
        assert rdb_digest(payload) == digest(master)


async def test_a_stalled_replica_is_dropped_after_repl_timeout_and_the_other_finishes():
    async with kvrepl.Master(port=0, repl_timeout=1, repl_diskless_sync_delay=3600,
                             repl_diskless_sync_max_replicas=2) as master:
        state = bounded(master)
        fill_big(master)
        stalled, _ = await raw_replica(master.port, "eof", "psync2")
        reading, reading_buffer = await raw_replica(master.port, "eof", "psync2")
        async with stalled, reading:
            # The stalled one paces the snapshot (bounded buffer) until the master gives
            # up on it; the sockets' own buffers are far smaller than the 20 MB RDB.
            _, payload = await read_payload(reading, reading_buffer)
            assert len(master.replication.replicas) == 1
        await assert_streamed(state.last_job)
        assert rdb_digest(payload) == digest(master)


# -- BGSAVE --------------------------------------------------------------------------------------

async def test_bgsave_through_the_producer_gives_a_dump_redis_checks_and_loads(tmp_path):
    async with kvrepl.Master(port=0, dir=str(tmp_path)) as master:
        state = bounded(master)
        fill_big(master)
        assert master.execute_command("BGSAVE") == b"Background saving started"
        job = state.bgsave
        await job.done.wait()
        await assert_streamed(job)
        assert state.last_bgsave_ok
        expected = digest(master)
    checker = shutil.which("redis-check-rdb")
    if checker is None:
        pytest.skip("redis-check-rdb is not installed")
    check = subprocess.run([checker, str(tmp_path / "dump.rdb")], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "RDB looks OK" in check.stdout
    loaded = RedisServer("--dir", str(tmp_path), "--dbfilename", "dump.rdb",
                         "--enable-debug-command", "yes")
    try:
        client = loaded.client()
        assert client.dbsize() == KEYS
        assert client.execute_command("DEBUG", "DIGEST") == expected
    finally:
        loaded.stop()
