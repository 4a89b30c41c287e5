"""Replication: in-process, kvrepl <-> kvrepl over TCP, and both ways with redis-server 7.0.

After each step the two sides hold the same data: DEBUG DIGEST (Redis's own algorithm, also
kvrepl's) covers every key, type, value and expiry.
"""

from __future__ import annotations

import socket
import time

import pytest
import redis
import trio
import trio.testing
from support import RedisServer, free_port

import kvrepl
from kvrepl.replication.stream import encode_command
from kvrepl.store.digest import digest as dataset_digest

DEADLINE = 20.0


async def eventually(check, what: str, within: float = DEADLINE):
    """Poll a state we cannot await (another process) until ``check()`` is truthy."""
    deadline = time.monotonic() + within
    while True:
        result = await trio.to_thread.run_sync(check)
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await trio.sleep(0.05)


def digest(node_or_client) -> bytes:
    """DEBUG DIGEST of a client's server, or of a node (DEBUG DIGEST's own function: the
    nodes keep Redis's default enable-debug-command no)."""
    if isinstance(node_or_client, kvrepl.Node):
        return dataset_digest(node_or_client.engine.keyspace)
    return node_or_client.execute_command("DEBUG", "DIGEST")


def fill(node: kvrepl.Node, prefix: str = "") -> None:
    """A little of every type, with TTLs, in three databases."""
    for db in range(3):
        node.select(db)
        node.set(f"{prefix}s{db}", "v")
        node.set(f"{prefix}n{db}", 42, ex=1000)
        node.rpush(f"{prefix}l{db}", "a", "b", "c")
        node.hset(f"{prefix}h{db}", mapping={"f": "1", "g": "2"})
        node.sadd(f"{prefix}set{db}", "x", "y", "10")
        node.zadd(f"{prefix}z{db}", {"a": 1.5, "b": -2})
    node.select(0)


def writes_everything(node: kvrepl.Node, tag: str) -> None:
    """Writes that exercise the stream rewrites: relative expiry, INCRBYFLOAT, SPOP, MULTI."""
    node.execute_command("SET", f"t{tag}", "1", "EX", "100")
    node.execute_command("INCRBYFLOAT", f"f{tag}", "1.5")
    node.execute_command("SADD", f"p{tag}", "a", "b", "c")
    node.execute_command("SPOP", f"p{tag}")
    node.execute_command("LPUSH", f"q{tag}", "x")
    node.execute_command("ZINCRBY", f"zz{tag}", "2", "m")
    node.execute_command("HINCRBY", f"hh{tag}", "c", "3")
    node.execute_command("SELECT", "5")
    node.execute_command("SET", f"db5{tag}", "x")
    node.execute_command("SELECT", "0")
    node.execute_command("MULTI")
    node.execute_command("INCR", f"m{tag}")
    node.execute_command("DEL", "s0")
    node.execute_command("EXEC")
    node.execute_command("PEXPIRE", f"q{tag}", "500000")


# -- in-process ------------------------------------------------------------------------------

async def test_in_process_replica_follows_every_type():
    async with kvrepl.Master() as master:
        fill(master)
        async with kvrepl.Replica(follow=master) as replica:
            await replica.wait_synced()
            assert digest(replica) == digest(master)
            writes_everything(master, "a")
            await replica.wait_synced()
            assert digest(replica) == digest(master)
            assert replica.get(b"fa") == b"1.5"
            assert 0 < replica.pttl(b"qa") <= 500000
            assert replica.following.reploff == master.replication.master_repl_offset
            with pytest.raises(kvrepl.ReplyError, match="READONLY"):
                replica.set(b"x", b"1")


async def test_replica_with_a_password_applies_its_master_stream():
    # Redis's master client is authenticated whatever the replica's requirepass says.
    async with kvrepl.Master() as master:
        async with kvrepl.Replica(follow=master, requirepass="secret") as replica:
            await replica.wait_synced()
            master.set(b"k", b"v")
            master.execute_command("MULTI")
            master.execute_command("INCR", "n")
            master.execute_command("EXEC")
            await replica.wait_synced()
            assert replica.engine.keyspace.dbs[0].data == {b"k": b"v", b"n": b"1"}


@pytest.mark.parametrize("mode", ["disabled", "on-empty-db", "swapdb"])
async def test_diskless_load_setting_decides_whether_the_replica_keeps_a_dump(tmp_path, mode):
    # Like a Redis replica, a server node stores the payload as dir/dbfilename unless it
    # loads diskless (swapdb, or on-empty-db when it had no keys).
    from kvrepl.config import Config
    from kvrepl.rdb import iter_entries

    async with kvrepl.Master() as master:
        master.set(b"k", b"v")
        config = Config(save=(), dir=str(tmp_path), repl_diskless_load=mode)
        replica = kvrepl.Replica(follow=master, config=config)
        replica.load_dump = True  # what kvrepl-server does: a node that keeps data on disk
        async with replica:
            await replica.wait_synced()
            dump = tmp_path / "dump.rdb"
            assert dump.exists() == (mode == "disabled")
            if dump.exists():
                with dump.open("rb") as f:
                    assert [(e.key, e.value) for e in iter_entries(f)] == [(b"k", b"v")]
            assert not list(tmp_path.glob("temp-*.rdb"))


async def test_replica_keeps_serving_old_data_until_the_new_snapshot_is_whole():
    async with kvrepl.Master() as master, kvrepl.Master() as other:
        master.set(b"k", b"from-master")
        other.set(b"mine", b"old")
        async with kvrepl.Replica(follow=master) as replica:
            await replica.wait_synced()
            assert replica.get(b"k") == b"from-master"
            assert replica.get(b"mine") is None  # a full sync replaces the dataset


async def test_changes_stream_on_master_and_replica():
    async with kvrepl.Master() as master, kvrepl.Replica(follow=master) as replica:
        await replica.wait_synced()
        on_master = master.changes()
        on_replica = replica.changes()
        master.set(b"k", b"v", ex=10)
        master.incr(b"n")
        got = await on_master.__anext__()
        assert got.db == 0 and got.command == b"SET" and got.args[:2] == (b"k", b"v")
        assert got.args[2] == b"PXAT"  # as propagated: the absolute form
        assert (await on_master.__anext__()).command == b"INCRBY"
        await replica.wait_synced()
        replica_seen = [await on_replica.__anext__(), await on_replica.__anext__()]
        assert [c.command for c in replica_seen] == [b"SET", b"INCRBY"]
        await on_master.aclose()
        await on_replica.aclose()


async def test_slow_changes_consumer_gets_an_overflow_signal():
    async with kvrepl.Master() as master:
        changes = master.changes(buffer=3)
        for i in range(10):
            master.set(b"k%d" % i, b"v")
        seen = []
        with pytest.raises(kvrepl.ChangesOverflow):
            async for change in changes:
                seen.append(change)
        assert len(seen) == 3
        # The consumer is detached; replication only listens once a replica attached.
        assert changes._listen not in master.engine.propagate_listeners


async def test_failover_and_chain_continue_partially():
    async with kvrepl.Master() as master:
        fill(master)
        async with kvrepl.Replica(follow=master) as first, \
                kvrepl.Replica(follow=master) as second:
            await first.wait_synced()
            await second.wait_synced()
            writes_everything(master, "b")
            await first.wait_synced()
            await second.wait_synced()
            # Promote the first replica; re-point the second at it.
            first.execute_command("REPLICAOF", "NO", "ONE")
            assert first.replication.replid2 == master.replication.replid
            second.follow_node(first)
            await second.wait_synced()
            first.set(b"after", b"failover")
            await second.wait_synced()
            assert first.replication.sync_partial_ok == 1
            assert first.replication.sync_full == 0
            assert digest(second) == digest(first)
            # A chain: a replica of the second replica gets the same bytes and offsets.
            async with kvrepl.Replica(follow=second) as third:
                await third.wait_synced()
                first.set(b"chained", b"yes")
                await second.wait_synced()
                await third.wait_synced()
                assert third.get(b"chained") == b"yes"
                assert third.following.reploff == first.replication.master_repl_offset
                assert digest(third) == digest(first)


async def test_wait_counts_acknowledging_replicas():
    async with kvrepl.Master(port=0) as master, kvrepl.Replica(follow=master) as replica:
        await replica.wait_synced()
        port = master.port

        def client_waits() -> tuple[object, int]:
            client = redis.Redis(port=port)
            client.set("k", "v")
            return client.execute_command("WAIT", 1, 5000), client.execute_command("WAIT", 2, 100)

        one, two = await trio.to_thread.run_sync(client_waits)
        assert one == 1
        assert two == 1  # only one replica exists: the timeout answers with the count


# -- kvrepl <-> kvrepl over TCP --------------------------------------------------------------

async def test_tcp_replica_of_tcp_master_and_replicaof_command():
    async with kvrepl.Master(port=0) as master, kvrepl.Master(port=0) as node:
        fill(master)
        node.execute_command("REPLICAOF", "127.0.0.1", master.port)
        await node.following.synced.wait()
        writes_everything(master, "c")
        await node.following.wait_offset(master.replication.master_repl_offset)
        assert digest(node) == digest(master)
        role = node.execute_command("ROLE")
        assert role[0] == b"slave" and role[3] == b"connected"
        info = node.execute_command("INFO", "replication").decode()
        assert "role:slave" in info and "master_link_status:up" in info
        master_info = master.execute_command("INFO", "replication").decode()
        assert "connected_slaves:1" in master_info and "state=online" in master_info
        node.execute_command("REPLICAOF", "NO", "ONE")
        assert node.execute_command("ROLE")[0] == b"master"
        node.set(b"writable", b"again")


def test_sync_typed_like_telnet_gets_payload_then_stream(kvrepl_server):
    """Old SYNC: no +FULLRESYNC line, the RDB as $<len>, then the live stream."""
    client = kvrepl_server.client()
    client.set("before", "1")
    with socket.create_connection(("127.0.0.1", kvrepl_server.port), timeout=10) as sock:
        sock.sendall(b"SYNC\r\n")
        data = b""
        while b"\r\n" not in data.lstrip(b"\n"):
            data += sock.recv(65536)
        data = data.lstrip(b"\n")
        assert data.startswith(b"$")
        header, rest = data.split(b"\r\n", 1)
        length = int(header[1:])
        while len(rest) < length:
            rest += sock.recv(65536)
        rdb, stream = rest[:length], rest[length:]
        assert rdb.startswith(b"REDIS0010") and b"before" in rdb
        client.set("after", "2")
        expected = encode_command([b"SELECT", b"0"]) + encode_command([b"SET", b"after", b"2"])
        while len(stream) < len(expected):
            stream += sock.recv(65536)
        assert stream == expected
    client.close()


# -- with a real redis-server ----------------------------------------------------------------

def _link_up(client: redis.Redis) -> bool:
    try:
        return client.info("replication").get("master_link_status") == "up"
    except redis.ConnectionError:
        return False


async def test_redis_server_replica_of_kvrepl_master():
    async with kvrepl.Master(port=0, repl_backlog_size=64 * 1024) as master:
        fill(master)
        for i in range(2000):
            master.set(f"bulk:{i}", "x" * 20)
        redis_replica = RedisServer("--replicaof", "127.0.0.1", str(master.port),
                                    "--enable-debug-command", "yes")
        try:
            client = redis_replica.client()
            # Writes while the replica connects and syncs are held and sent after the RDB.
            for i in range(50):
                master.set(f"during:{i}", i)
                await trio.sleep(0.005)
            await eventually(lambda: _link_up(client), "the redis replica is up")
            writes_everything(master, "d")
            offset = master.replication.master_repl_offset
            await eventually(lambda: client.info("replication")["slave_repl_offset"] >= offset,
                             "redis applied the stream")
            assert await trio.to_thread.run_sync(digest, client) == digest(master)
            # A cut link resumes from the backlog.
            master.execute_command("CLIENT", "KILL", "TYPE", "replica")
            master.set(b"while-cut", b"1")
            await eventually(lambda: master.replication.sync_partial_ok == 1,
                             "a partial resync")
            await eventually(lambda: client.get("while-cut") == b"1", "the write arrived")
            # Overrun the 64 KB backlog while the link is down: a full resync follows.
            await trio.to_thread.run_sync(
                lambda: client.execute_command("CONFIG", "SET", "repl-timeout", "1"))
            full_before = master.replication.sync_full
            master.execute_command("CLIENT", "KILL", "TYPE", "replica")
            for i in range(3000):
                master.set(f"overrun:{i}", "y" * 50)
            await eventually(lambda: master.replication.sync_full > full_before,
                             "a full resync after the backlog overrun")
            offset = master.replication.master_repl_offset
            await eventually(lambda: _link_up(client) and
                             client.info("replication")["slave_repl_offset"] >= offset,
                             "redis caught up")
            assert await trio.to_thread.run_sync(digest, client) == digest(master)
        finally:
            redis_replica.stop()


async def test_kvrepl_replica_of_redis_server_master():
    redis_master = RedisServer("--enable-debug-command", "yes", "--repl-diskless-sync-delay",
                               "0")
    try:
        client = redis_master.client()
        client.execute_command("DEBUG", "POPULATE", "5000")
        client.rpush("list", *range(200))
        client.hset("hash", mapping={str(i): i for i in range(300)})
        client.zadd("zset", {str(i): i / 3 for i in range(200)})
        client.sadd("ints", *range(100))
        client.set("ttl", "v", ex=100)
        client.execute_command("SELECT", 2)
        client.set("in-db-2", "x")
        client.execute_command("SELECT", 0)
        async with kvrepl.Replica(follow=("127.0.0.1", redis_master.port)) as replica:
            await replica.wait_synced()

            def write_more() -> int:
                pipe = client.pipeline(transaction=True)
                pipe.incr("counter").lpush("list", "new").expire("list", 500)
                pipe.execute()
                client.execute_command("SPOP", "ints")
                client.execute_command("INCRBYFLOAT", "float", "2.5")
                client.set("px", "v", px=100000)
                return client.info("replication")["master_repl_offset"]

            offset = await trio.to_thread.run_sync(write_more)
            await replica.following.wait_offset(offset)
            assert digest(replica) == await trio.to_thread.run_sync(digest, client)
            info = replica.execute_command("INFO", "replication").decode()
            assert f"slave_repl_offset:{offset}" in info
            # Cut the link from the master's side: the replica resumes partially.
            await trio.to_thread.run_sync(
                lambda: client.execute_command("CLIENT", "KILL", "TYPE", "replica"))
            offset = await trio.to_thread.run_sync(
                lambda: (client.set("after-cut", "1"),
                         client.info("replication")["master_repl_offset"])[1])
            await replica.following.wait_offset(offset)
            assert replica.get(b"after-cut") == b"1"
            stats = await trio.to_thread.run_sync(lambda: client.info("stats"))
            assert stats["sync_partial_ok"] == 1 and stats["sync_full"] == 1
            assert digest(replica) == await trio.to_thread.run_sync(digest, client)
    finally:
        redis_master.stop()


@pytest.fixture
def steerable_clock() -> trio.testing.MockClock:
    """Trio's clock at the real pace, which a test can also move forward at once."""
    return trio.testing.MockClock(rate=1.0)


async def test_replica_sends_acks_and_replies_without_colliding(steerable_clock):
    """The once-a-second ACK and the ACK answering a GETACK may be due at the same moment
    (the loop was busy, or the link is slow); they must take turns on the stream, not make
    trio refuse the second sender (BusyResourceError would cut the link).

    The replica's sends are held inside the stream's send_all (its send hook waits on a gate)
    while a GETACK's answer is on its way; trio's clock then moves past the ACK period, so the
    periodic ACK is due while the first send is still in progress."""
    gate = {"open": trio.Event(), "held": trio.Event()}
    gate["open"].set()
    connects = []

    async with kvrepl.Master() as master, kvrepl.Replica(follow=master) as replica:
        async def connect() -> trio.abc.Stream:
            ours, theirs = trio.testing.memory_stream_pair()
            pump = ours.send_stream.send_all_hook

            async def gated_pump() -> None:
                if not gate["open"].is_set():
                    gate["held"].set()
                    await gate["open"].wait()
                await pump()

            ours.send_stream.send_all_hook = gated_pump
            master._nursery.start_soon(master.server.handle_stream, theirs)
            connects.append(ours)
            return ours

        replica._follow(connect, ("in-process", 0), source=master)
        await replica.wait_synced()
        gate["open"] = trio.Event()
        master.execute_command("WAIT", 1, 0)  # GETACK into the stream: an ACK in answer
        with trio.fail_after(10):
            await gate["held"].wait()  # that answer is inside send_all now
        steerable_clock.jump(1.0)  # the periodic ACK is due too
        await trio.testing.wait_all_tasks_blocked()
        gate["open"].set()
        master.set(b"k2", b"v2")
        await replica.wait_synced()
        assert replica.get(b"k2") == b"v2"
        assert len(connects) == 1 and replica.following.link_up  # the link never broke


async def test_embedded_wait_for_replicas():
    async with kvrepl.Master() as master, kvrepl.Replica(follow=master) as replica:
        await replica.wait_synced()
        master.set(b"k", b"v")
        written = master.replication.master_repl_offset
        assert await master.wait_for_replicas(1, timeout=10) == 1
        assert replica.following.reploff >= written
        assert await master.wait_for_replicas(2, timeout=0.05) == 1
        assert master.execute_command("WAIT", 1, 0) in (0, 1)  # a plain call cannot block


async def test_master_restart_from_its_dump_continues_partially(tmp_path):
    """A master restarted from a dump that carried its replication id and offset lets the
    redis-server replica PSYNC on (+CONTINUE) instead of copying everything again."""
    port = free_port()

    def master_node() -> kvrepl.Master:
        node = kvrepl.Master(port=port, dir=str(tmp_path))
        node.load_dump = True
        return node

    redis_replica = None
    try:
        async with master_node() as master:
            fill(master)
            redis_replica = RedisServer("--replicaof", "127.0.0.1", str(port),
                                        "--enable-debug-command", "yes")
            client = redis_replica.client()
            await eventually(lambda: _link_up(client), "the redis replica is up")
            writes_everything(master, "r")
            offset = master.replication.master_repl_offset
            await eventually(lambda: client.info("replication")["slave_repl_offset"] >= offset,
                             "redis applied the stream")
            master.execute_command("SAVE")
            replid = master.replication.replid
        async with master_node() as restarted:
            await eventually(lambda: not restarted.engine.loading, "the dump is loaded")
            assert restarted.replication.replid == replid
            assert restarted.replication.master_repl_offset == offset
            await eventually(lambda: restarted.replication.sync_partial_ok == 1,
                             "the replica continues partially")
            assert restarted.replication.sync_full == 0
            restarted.set(b"after-restart", b"1")
            await eventually(lambda: client.get("after-restart") == b"1", "the write arrived")
            assert await trio.to_thread.run_sync(digest, client) == digest(restarted)
    finally:
        if redis_replica is not None:
            redis_replica.stop()


# -- bad peers ---------------------------------------------------------------------------------

def _psync_reply(port: int, replid: str, offset: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(encode_command([b"REPLCONF", b"capa", b"psync2"]))
        assert sock.recv(100) == b"+OK\r\n"
        sock.sendall(encode_command([b"PSYNC", replid.encode(), b"%d" % offset]))
        data = b""
        while b"\r\n" not in data.lstrip(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data.lstrip(b"\n").split(b"\r\n", 1)[0]


async def test_master_refuses_offsets_it_does_not_hold():
    """A replica that lies about its offset (ahead of the master, or behind the backlog, or
    with another history) gets a full sync, never bytes it did not ask for."""
    # 16 KiB: the smallest backlog Redis (and kvrepl) keeps, whatever the setting says.
    async with kvrepl.Master(port=0, repl_backlog_size=16384) as master, \
            kvrepl.Replica(follow=master) as replica:
        await replica.wait_synced()
        for i in range(200):
            master.set(b"k%d" % i, b"x" * 200)
        await replica.wait_synced()
        replid = master.replication.replid
        offset = master.replication.master_repl_offset
        port = master.port
        ahead = await trio.to_thread.run_sync(_psync_reply, port, replid, offset + 100)
        behind = await trio.to_thread.run_sync(_psync_reply, port, replid, 5)
        other = await trio.to_thread.run_sync(_psync_reply, port, "f" * 40, offset + 1)
        fine = await trio.to_thread.run_sync(_psync_reply, port, replid, offset + 1)
        assert ahead.startswith(b"+FULLRESYNC") and behind.startswith(b"+FULLRESYNC")
        assert other.startswith(b"+FULLRESYNC")
        assert fine == b"+CONTINUE " + replid.encode()
        assert master.replication.sync_partial_err == 3


async def test_corrupt_payload_keeps_the_replica_data_and_it_retries():
    """A master whose snapshot arrives damaged (bad checksum) costs the replica nothing: it
    keeps serving its old data, drops the link and syncs again."""
    attempts = []

    async def fake_master(stream: trio.abc.Stream) -> None:
        attempts.append(1)
        async with stream:
            # Serve the handshake as a master would: +PONG, +OK per REPLCONF, FULLRESYNC.
            received = b""

            async def read_until(count: int, word: bytes) -> None:
                nonlocal received
                while received.count(word) < count:
                    received += await stream.receive_some(4096)

            await read_until(1, b"PING")
            await stream.send_all(b"+PONG\r\n")
            await read_until(2, b"REPLCONF")
            await stream.send_all(b"+OK\r\n+OK\r\n")
            await read_until(1, b"PSYNC")
            rdb = bytearray(bytes.fromhex("524544495330303130ffa9fd37fe89a77eeb"))
            rdb[-1] ^= 0xFF  # break the CRC64
            await stream.send_all(b"+FULLRESYNC " + b"a" * 40 + b" 0\r\n$%d\r\n" % len(rdb)
                                  + bytes(rdb))
            # A replica that took the payload would now ACK; this one must hang up.
            while await stream.receive_some(4096):
                pass

    async with kvrepl.Master(repl_timeout=5) as node:
        node.set(b"precious", b"kept")

        async def connect() -> trio.abc.Stream:
            ours, theirs = trio.testing.memory_stream_pair()
            node._nursery.start_soon(fake_master, theirs)
            return ours

        node._follow(connect, ("fake", 0))
        while len(attempts) < 2:  # the first attempt failed; the retry comes a second later
            await trio.sleep(0.05)
        assert node.get(b"precious") == b"kept"
        assert node.following.link_up is False


async def test_kvrepl_nodes_send_the_snapshot_as_lz4():
    async with kvrepl.Master() as master:
        for i in range(2000):
            master.set(f"key:{i}", "compressible " * 10)
        async with kvrepl.Replica(follow=master) as replica:
            await replica.wait_synced()
            assert master.replication.last_payload_framing == "lz4"
            assert digest(replica) == digest(master)


async def test_changes_iteration_ends_when_the_node_stops():
    seen = []
    async with trio.open_nursery() as nursery:
        async with kvrepl.Master() as master:
            changes = master.changes()

            async def consume() -> None:
                async for change in changes:
                    seen.append(change.command)

            nursery.start_soon(consume)
            master.set(b"k", b"v")
            await trio.testing.wait_all_tasks_blocked()
        # Leaving the node's block ended the consumer's loop: the nursery can close.
    assert seen == [b"SET"]


OFFSET_FIELDS = ("slave_read_repl_offset", "slave_repl_offset")


def _offsets(info: dict) -> dict:
    return {field: info[field] for field in OFFSET_FIELDS}


@pytest.mark.parametrize("master_kind", ["kvrepl", "redis-server"])
async def test_offsets_after_a_full_sync_at_offset_0_are_redis_servers(master_kind):
    """A kvrepl replica and a redis-server replica of the same master, synced while the
    master's offset is 0 (no PING yet: repl-ping-replica-period is an hour), report the
    same offsets, equal to the master's: 0, not 1 (a script waiting for the replica's offset
    to equal the master's waited for the next PING)."""
    quiet = ("--repl-ping-replica-period", "3600", "--repl-diskless-sync-delay", "0")
    redis_master = RedisServer(*quiet) if master_kind == "redis-server" else None
    try:
        async with kvrepl.Master(port=0, repl_ping_replica_period=3600,
                                 repl_diskless_sync_delay=0) as kv_master:
            port = redis_master.port if redis_master else kv_master.port
            redis_replica = RedisServer("--replicaof", "127.0.0.1", str(port))
            try:
                client = redis_replica.client()
                async with kvrepl.Replica(follow=("127.0.0.1", port)) as replica:
                    await replica.wait_synced()
                    await eventually(lambda: _link_up(client), "the redis replica is up")
                    ours = replica.execute_command("INFO", "replication").decode()
                    ours = dict(line.split(":", 1) for line in ours.split("\r\n")[1:] if line)
                    theirs = await trio.to_thread.run_sync(client.info, "replication")
                    master_info = (await trio.to_thread.run_sync(
                        redis_master.client().info, "replication") if redis_master
                        else {"master_repl_offset": kv_master.replication.master_repl_offset})
                    assert master_info["master_repl_offset"] == 0
                    assert {k: int(v) for k, v in _offsets(ours).items()} == _offsets(theirs) \
                        == dict.fromkeys(OFFSET_FIELDS, 0)
            finally:
                redis_replica.stop()
    finally:
        if redis_master:
            redis_master.stop()
