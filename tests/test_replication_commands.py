"""Replication commands and the master link as a client: FAILOVER, the master client in
CLIENT LIST / CLIENT KILL, compared with redis-server 7.0 peers."""

from __future__ import annotations

import pytest

from tests.support import RedisServer, ThreadedServer, poll


@pytest.fixture
def redis_master():
    server = RedisServer("--enable-debug-command", "yes", "--repl-diskless-sync-delay", "0")
    yield server
    server.stop()


@pytest.fixture
def kvrepl_server():
    server = ThreadedServer().start()
    yield server
    server.stop()


def _link_up(client) -> bool:
    return client.info("replication").get("master_link_status") == "up"


def test_master_client_shows_the_master_address_and_client_kill_addr_ends_it(
        redis_master, kvrepl_server):
    master, replica = redis_master.client(), kvrepl_server.client(decode_responses=True)
    master.set("before", "1")
    assert replica.execute_command("CLIENT", "LIST", "TYPE", "master") == ""
    replica.execute_command("REPLICAOF", "127.0.0.1", redis_master.port)
    poll(lambda: _link_up(replica), "the replica's link is up")
    line = replica.execute_command("CLIENT", "LIST", "TYPE", "master")
    fields = dict(part.split("=", 1) for part in line.split())
    assert fields["addr"] == f"127.0.0.1:{redis_master.port}"
    assert fields["flags"] == "M"
    assert int(fields["laddr"].rsplit(":", 1)[1]) != 0

    assert replica.execute_command("CLIENT", "KILL", "ADDR", fields["addr"]) == 1
    poll(lambda: master.info("stats")["sync_partial_ok"] == 1, "a partial resync")
    master.set("after", "2")
    poll(lambda: replica.get("after") == "2", "the write after the kill arrived")
    assert master.info("stats")["sync_full"] == 1
    # TYPE master ends it too, and the old form by address.
    assert replica.execute_command("CLIENT", "KILL", "TYPE", "master") == 1
    poll(lambda: master.info("stats")["sync_partial_ok"] == 2, "a second partial resync")
    poll(lambda: _link_up(replica), "the replica's link is up again")
    line = replica.execute_command("CLIENT", "LIST", "TYPE", "master")
    addr = dict(part.split("=", 1) for part in line.split())["addr"]
    assert replica.execute_command("CLIENT", "KILL", addr) == "OK"
    poll(lambda: master.info("stats")["sync_partial_ok"] == 3, "a third partial resync")
