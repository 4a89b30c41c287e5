"""A replica's output as Redis 7.0 shows it: the blocks of the replication buffer that the
master shares between its backlog and its replicas (replication.c feedReplicationBuffer,
incrementalTrimReplicationBacklog; networking.c getClientOutputBufferMemoryUsage), in the
master's CLIENT LIST (oll, omem, tot-mem) and INFO memory, beside a real redis-server
master with a redis-server replica of each."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support import (
    RawClient,
    RedisServer,
    ThreadedServer,
    client_fields,
    info_field,
    kvrepl_and_redis,
    pack,
    poll,
)

from kvrepl.commands import obuf
from kvrepl.config import Config

# No PING of the replicas while a test runs: the stream holds only the test's writes.
QUIET = 3600


@pytest.fixture(scope="module")
def masters() -> Iterator[tuple[ThreadedServer, RedisServer]]:
    with kvrepl_and_redis(
            Config(save=(), repl_diskless_sync_delay=0, repl_ping_replica_period=QUIET),
            "--repl-diskless-sync-delay", "0", "--repl-ping-replica-period", str(QUIET)) as pair:
        yield pair


def _figures(admin: RawClient) -> dict[str, object]:
    """The replica's output figures. Its tot-mem is taken without its reply buffer (rbs):
    clientsCron shrinks that buffer from 16 KB to 1 KB at its first visit once the peak
    it keeps is reset (5 s after the sync), a moment the two masters do not share, so a
    step near it found 15360 bytes between them (2 runs in 3 under load)."""
    line = client_fields(admin, "TYPE", "replica")
    return {"oll": line["oll"], "omem": line["omem"], "obl": line["obl"],
            "tot-mem less rbs": int(line["tot-mem"]) - int(line["rbs"]),
            **{name: info_field(admin, "memory", name) for name in (
                "mem_total_replication_buffers", "mem_replication_backlog",
                "mem_clients_slaves")}}


def _steps(port: int, backlog_size: int) -> list[dict[str, object]]:
    """A replica syncs; then writes of every size: small ones, values that do not fit
    the tail block, values bigger than a block may be (repl-backlog-size / 16), more
    than the backlog keeps (its first blocks freed). After each, once the replica has
    acknowledged all of it (WAIT: the kernel took everything), the figures."""
    admin = RawClient(port)
    assert admin.call("CONFIG", "SET", "repl-backlog-size", str(backlog_size)) == b"+OK\r\n"
    replica = RedisServer("--replicaof", "127.0.0.1", str(port))
    seen: list[dict[str, object]] = []
    try:
        with replica.client() as r:
            poll(lambda: r.info("replication")["master_link_status"] == "up", "the link up")
        poll(lambda: client_fields(admin, "TYPE", "replica").get("flags") == "S",
             "the replica online")
        seen.append(_figures(admin))  # nothing fed to it yet: no block referenced
        writes = [
            [("SET", "a", "b")],
            [("SET", "big", b"x" * 30_000)],
            [("SET", "huge", b"y" * 200_000)],
            [("SET", f"k{i}", f"v{i}") for i in range(2000)],
            [("SET", f"m{i}", b"z" * 70_000) for i in range(30)],
        ]
        for requests in writes:
            admin.sock.sendall(b"".join(pack(*request) for request in requests))
            admin.read(len(requests))
            assert admin.call("WAIT", "1", "10000") == b":1\r\n"
            seen.append(_figures(admin))
    finally:
        admin.call("CONFIG", "SET", "repl-backlog-size", str(1024 * 1024))
        admin.close()
        replica.stop()
    return seen


@pytest.mark.parametrize("backlog_size", [1024 * 1024, 100_000])
def test_a_replica_references_the_shared_replication_buffer_as_in_redis(masters, backlog_size):
    """Byte for byte the same figures on both masters at every step: the replica's oll
    and omem (the blocks from its own to the tail, their headers and list nodes), and
    INFO's split of the buffer between the backlog and the replicas."""
    ours, theirs = (_steps(server.port, backlog_size) for server in masters)
    assert ours == theirs
    assert ours[0]["omem"] == "0" and ours[1]["oll"] == "1"


def test_the_blocks_of_a_lagging_replica():
    """A replica whose next byte is in an older block references every block from it
    to the tail; the backlog never frees a block a replica references."""
    model = obuf.ReplicationBlocks(1, 16 * 1024 * 16)  # blocks of 16 KB's class at most
    model.add_all([b"*1\r\n$3\r\nSET\r\n" * 2000])  # 26000 bytes: one full block, a tail
    small = obuf.ReplicationBlocks._SMALL
    assert small == 20_440
    assert model.blocks == [[small, small], [small, 26_000 - small]]
    assert model.usage(1) == (2, 2 * small + 2 * obuf.REPL_NODE)
    assert model.usage(small + 1) == model.usage(10**9) == (1, small + obuf.REPL_NODE)
    model.trim(1000, referenced=5)
    assert len(model.blocks) == 2
    model.trim(1000, referenced=small + 1)
    assert len(model.blocks) == 1 and model.first == small + 1


# -- client-output-buffer-limit replica: decided on the omem CLIENT LIST shows ---------------


def _stalled_replica(port: int) -> RawClient:
    """A replica that syncs diskless and never acknowledges: its snapshot is sent, and
    both masters hold every stream byte for it from then on (Redis starts the stream on
    the first REPLCONF ACK), none given to the kernel: its omem is the protocol's."""
    replica = RawClient(port)
    assert replica.call("REPLCONF", "capa", "eof", "capa", "psync2") == b"+OK\r\n"
    replica.send("PSYNC", "?", "-1")
    admin = RawClient(port)
    try:
        poll(lambda: b"state=online" in admin.call("INFO", "replication"),
             "the snapshot sent to the replica")
    finally:
        admin.close()
    return replica


def _writes_until_dropped(port: int, limit: str, writes: int) -> list[object]:
    """With ``limit``, a stalled replica and up to ``writes`` writes of 30 KB values, one
    at a time: the replica's omem after each while it is listed, then "dropped"."""
    admin = RawClient(port)
    assert admin.call("CONFIG", "SET", "client-output-buffer-limit", limit) == b"+OK\r\n"
    replica = _stalled_replica(port)
    seen: list[object] = []
    try:
        for i in range(writes):
            assert admin.call("SET", f"w{i}", b"v" * 30_000) == b"+OK\r\n"
            line = client_fields(admin, "TYPE", "replica")
            if not line:
                seen.append("dropped")
                break
            seen.append(int(line["omem"]))
    finally:
        admin.call("CONFIG", "SET", "client-output-buffer-limit", "replica 256mb 64mb 60")
        admin.call("CLIENT", "KILL", "TYPE", "replica")
        admin.call("FLUSHALL")
        replica.close()
        admin.close()
    return seen


@pytest.mark.parametrize("limit", [
    "replica 1500kb 0 0",
    # below repl-backlog-size (1 MB): Redis raises it to the backlog's size
    "replica 256kb 0 0",
])
def test_a_replica_is_dropped_at_the_write_that_takes_its_omem_to_the_hard_limit(
        masters, limit):
    """checkClientOutputBufferLimits on getClientOutputBufferMemoryUsage, from
    feedReplicationBuffer as a write adds a block: the replica's omem after every write,
    byte-equal on both masters, and both drop it at the same write, the first that takes
    its omem to the hard limit."""
    ours, theirs = (_writes_until_dropped(server.port, limit, 80) for server in masters)
    assert ours == theirs
    assert ours[-1] == "dropped"
    hard = max(int(limit.split()[1].removesuffix("kb")) * 1024, 1024 * 1024)
    assert all(omem < hard for omem in ours[:-1])
    assert ours[-2] >= hard - 2 * 40_000  # the write before took it within a block of it


def test_a_replica_over_the_soft_limit_within_its_seconds_stays(masters):
    """Over the soft limit, under the hard one: the time it may stay over has not run out,
    neither master drops it (a write checks it at every block)."""
    ours, theirs = (_writes_until_dropped(server.port, "replica 2mb 300kb 3600", 40)
                    for server in masters)
    assert ours == theirs
    assert "dropped" not in ours and ours[-1] > 300 * 1024


def _dropped_after_soft_seconds(port: int) -> list[int]:
    """Writes until the stalled replica's omem reaches the soft limit (1 s), then none:
    its omem at each write; the master drops it once the time ran out, with no write
    (clientsCron checks every client)."""
    admin = RawClient(port)
    assert admin.call("CONFIG", "SET", "client-output-buffer-limit",
                      "replica 0 300kb 1") == b"+OK\r\n"
    replica = _stalled_replica(port)
    seen: list[int] = []
    try:
        for i in range(40):
            assert admin.call("SET", f"w{i}", b"v" * 30_000) == b"+OK\r\n"
            line = client_fields(admin, "TYPE", "replica")
            assert line, "dropped before its second ran out"
            seen.append(int(line["omem"]))
            if seen[-1] >= 300 * 1024:
                break
        poll(lambda: not client_fields(admin, "TYPE", "replica"),
             "the replica over its soft limit dropped", interval=0.1)
        return seen
    finally:
        admin.call("CONFIG", "SET", "client-output-buffer-limit", "replica 256mb 64mb 60")
        admin.call("FLUSHALL")
        replica.close()
        admin.close()


def test_a_replica_over_the_soft_limit_for_longer_than_its_seconds_is_dropped(masters):
    """The same omem at every write on both masters, the last at the soft limit; then
    both drop the replica once it has been over it for longer than its second."""
    ours, theirs = (_dropped_after_soft_seconds(server.port) for server in masters)
    assert ours == theirs
    assert ours[-1] >= 300 * 1024 > ours[-2]
