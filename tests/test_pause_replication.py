"""CLIENT PAUSE and replication, compared with redis-server 7.0.

On a replica, a pause holds its master's stream as it holds any client (processCommand
postpones the master client; only replicas' links are exempt): the held write and
everything after it wait unapplied, the replica's offset stays, and CLIENT LIST shows the
master link blocked (``flags=Mb``). On a master, a pause keeps the dataset and the offsets
still: no expiry or eviction, and WAIT's REPLCONF GETACK waits for the pause to end
(FAILOVER relies on offsets that do not move)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from support import RedisServer, ThreadedServer, poll

from kvrepl.config import Config


def _config(**extra: object) -> Config:
    return Config(save=(), repl_diskless_sync_delay=0, **extra)


def _master_link(client: redis.Redis) -> dict:
    return next(c for c in client.client_list() if "M" in c["flags"])


@pytest.fixture
def replicas() -> Iterator[tuple[redis.Redis, list[redis.Redis], ThreadedServer]]:
    """A redis-server master, then a kvrepl and a redis-server replica of it, linked."""
    master = RedisServer("--repl-diskless-sync-delay", "0")
    ours = ThreadedServer(_config()).start()
    theirs = RedisServer()
    clients = [ours.client(), theirs.client()]
    try:
        for client in clients:
            client.execute_command("REPLICAOF", "127.0.0.1", master.port)
        for client in clients:
            poll(lambda c=client: c.info("replication")["master_link_status"] == "up",
                 "the replica linked")
        yield master.client(), clients, ours
    finally:
        for client in clients:
            client.close()
        ours.stop()
        theirs.stop()
        master.stop()


@pytest.mark.parametrize("kind", ["WRITE", "ALL"])
def test_a_paused_replica_holds_its_masters_stream(replicas, kind: str) -> None:
    source, clients, ours = replicas
    source.set("before", "1")
    offset = source.info("replication")["master_repl_offset"]
    for client in clients:
        poll(lambda c=client: c.info("replication")["slave_repl_offset"] == offset,
             "the replica applied the first write")
        # ALL holds CLIENT UNPAUSE too: that pause ends with its time.
        assert client.execute_command("CLIENT", "PAUSE", 60000 if kind == "WRITE" else 3000,
                                      kind) == b"OK"
    source.set("held", "2")
    source.set("after", "3")
    # Neither replica answers the GETACK behind the held write (under ALL, not even the
    # GETACK itself would run): WAIT gets no acknowledgement.
    assert source.execute_command("WAIT", 2, 200) == 0
    if kind == "WRITE":  # a client can still look: the link is blocked, reads still run
        for client in clients:
            assert _master_link(client)["flags"] == "Mb"
            assert client.mget("before", "held", "after") == [b"1", None, None]
            assert client.info("replication")["slave_repl_offset"] == offset
            assert client.info("clients")["blocked_clients"] == 1
        for client in clients:
            client.execute_command("CLIENT", "UNPAUSE")
    final = source.info("replication")["master_repl_offset"]
    for client in clients:
        poll(lambda c=client: c.info("replication")["slave_repl_offset"] == final,
             "the replica applied the held stream")
        assert client.mget("before", "held", "after") == [b"1", b"2", b"3"]
        assert _master_link(client)["flags"] == "M"
    assert source.execute_command("WAIT", 2, 5000) == 2


@pytest.fixture
def masters() -> Iterator[list[redis.Redis]]:
    """A kvrepl and a redis-server master (no cron PING during the test), each with a
    redis-server replica, linked."""
    ours = ThreadedServer(_config(repl_ping_replica_period=3600)).start()
    theirs = RedisServer("--repl-diskless-sync-delay", "0", "--repl-ping-replica-period",
                         "3600")
    ports = [ours.port, theirs.port]
    followers = [RedisServer("--replicaof", "127.0.0.1", str(port)) for port in ports]
    clients = [ours.client(), theirs.client()]
    try:
        for follower in followers:
            poll(lambda f=follower: f.client().info("replication")["master_link_status"]
                 == "up", "the replica linked")
        yield clients
    finally:
        for client in clients:
            client.close()
        for follower in followers:
            follower.stop()
        ours.stop()
        theirs.stop()


def test_wait_during_a_pause_sends_its_getack_after_it(masters) -> None:
    """WAIT on a paused master: the offset does not move (no GETACK), WAIT times out with
    the replicas acknowledged so far; the GETACK goes out when the pause ends."""
    results = []
    for client in masters:
        client.set("k", "v")
        offset = client.info("replication")["master_repl_offset"]
        client.execute_command("CLIENT", "PAUSE", 60000, "WRITE")
        waited = client.execute_command("WAIT", 5, 50)
        held = client.info("replication")["master_repl_offset"]
        client.execute_command("CLIENT", "UNPAUSE")
        poll(lambda c=client, o=offset: c.info("replication")["master_repl_offset"] > o,
             "the held GETACK went out")
        after = client.info("replication")["master_repl_offset"]
        results.append((waited, held - offset, after - offset))
    assert results[0] == results[1]
    assert results[0][1] == 0 and results[0][2] == len(b"*3\r\n$8\r\nREPLCONF\r\n$6\r\nGETACK\r\n"
                                                        b"$1\r\n*\r\n")


def test_no_eviction_while_paused(masters) -> None:
    """A pause keeps the dataset still: a maxmemory far below the data evicts nothing
    until the pause ends, then the next command evicts as usual."""
    for client in masters:
        client.mset({f"key{i}": "x" * 100 for i in range(20)})
        client.config_set("maxmemory-policy", "allkeys-random")
        client.execute_command("CLIENT", "PAUSE", 60000, "WRITE")
        client.config_set("maxmemory", 1)
        assert client.get("key1") == b"x" * 100
        assert client.dbsize() == 20
        assert client.info("stats")["evicted_keys"] == 0
        client.execute_command("CLIENT", "UNPAUSE")
        client.get("key1")  # any command: performEvictions runs first
        assert client.dbsize() == 0
        client.config_set("maxmemory", 0)
