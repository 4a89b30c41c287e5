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
