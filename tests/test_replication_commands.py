"""Replication commands and the master link as a client: FAILOVER, the master client in
CLIENT LIST / CLIENT KILL, compared with redis-server 7.0 peers."""

from __future__ import annotations

import signal
import socket
import threading

import pytest
import redis

from kvrepl.config import Config
from tests.support import Call, RedisServer, ThreadedServer, poll
from tests.test_cli import _start as _start_kvrepl_server


@pytest.fixture
def redis_master():
    server = RedisServer("--enable-debug-command", "yes", "--repl-diskless-sync-delay", "0")
    yield server
    server.stop()


def _kvrepl_node() -> ThreadedServer:
    return ThreadedServer(Config(save=(), repl_diskless_sync_delay=0,
                                 enable_debug_command="yes")).start()


@pytest.fixture
def kvrepl_server():
    server = _kvrepl_node()
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


# -- FAILOVER -------------------------------------------------------------------------------


def _role(client) -> str:
    return client.info("replication")["role"]


def _replica_of(master: ThreadedServer) -> ThreadedServer:
    replica = _kvrepl_node()
    replica.client().execute_command("REPLICAOF", "127.0.0.1", master.port)
    poll(lambda: _link_up(replica.client()), "the replica is linked")
    return replica


def test_failover_argument_errors(kvrepl_server):
    client = kvrepl_server.client()
    errors = {
        ("FAILOVER", "ABORT"): "No failover in progress.",
        ("FAILOVER", "TIMEOUT", "0"): "FAILOVER timeout must be greater than 0",
        ("FAILOVER", "TIMEOUT", "x"): "value is not an integer or out of range",
        ("FAILOVER", "TO", "h", "x"): "value is not an integer or out of range",
        ("FAILOVER", "FORCE", "FORCE"): "syntax error",
        ("FAILOVER", "TO", "h"): "syntax error",
        ("FAILOVER", "ABORT", "TIMEOUT", "5"): "syntax error",
        ("FAILOVER",): "FAILOVER requires connected replicas.",
    }
    theirs = RedisServer()
    try:
        for args, message in errors.items():
            for server in (client, theirs.client()):
                with pytest.raises(redis.ResponseError) as caught:
                    server.execute_command(*args)
                assert str(caught.value) == message, args
    finally:
        theirs.stop()


def test_failover_between_kvrepl_nodes_swaps_roles_and_resyncs_partially(kvrepl_server):
    master = kvrepl_server.client()
    for i in range(200):
        master.set(f"k{i}", i)
    replica_server = _replica_of(kvrepl_server)
    try:
        replica = replica_server.client()
        master.rpush("list", *range(50))
        with pytest.raises(redis.ResponseError, match="FAILOVER target HOST and PORT is not a "
                                                      "replica."):
            master.execute_command("FAILOVER", "TO", "127.0.0.1", 1)
        with pytest.raises(redis.ResponseError, match="requires both a timeout"):
            master.execute_command("FAILOVER", "TO", "127.0.0.1", replica_server.port, "FORCE")
        assert master.execute_command("FAILOVER") == b"OK"
        poll(lambda: _role(replica) == "master" and _role(master) == "slave"
             and _link_up(master), "the roles are swapped")
        assert master.info("replication")["master_port"] == replica_server.port
        assert master.info("replication")["master_failover_state"] == "no-failover"
        # The new master served the old one a partial resync, from the shared history.
        stats = replica.info("stats")
        assert stats["sync_partial_ok"] == 1 and stats["sync_full"] == 0
        assert master.execute_command("DEBUG", "DIGEST") == replica.execute_command(
            "DEBUG", "DIGEST")
        with pytest.raises(redis.ReadOnlyError):
            master.set("after", 1)
        replica.set("after", 2)
        poll(lambda: master.get("after") == b"2", "the old master follows the new one")
    finally:
        replica_server.stop()


@pytest.fixture
def redis_replica_of_kvrepl(kvrepl_server):
    server = RedisServer("--enable-debug-command", "yes")
    client = server.client()
    client.execute_command("REPLICAOF", "127.0.0.1", kvrepl_server.port)
    poll(lambda: _link_up(client), "the redis-server replica is linked")
    yield server
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGCONT)
    server.stop()


def test_failover_to_redis_server_pauses_writes_then_hands_over(
        kvrepl_server, redis_replica_of_kvrepl):
    master, theirs = kvrepl_server.client(), redis_replica_of_kvrepl.client()
    for i in range(100):
        master.hset("h", f"f{i}", i)
    master.set("counter", 0)
    target = ("127.0.0.1", redis_replica_of_kvrepl.port)
    poll(lambda: master.info("replication")["slave0"]["offset"]
         == master.info("replication")["master_repl_offset"], "the replica acknowledged all")
    # A replica that does not acknowledge (stopped): the failover waits for it, writes wait.
    redis_replica_of_kvrepl.process.send_signal(signal.SIGSTOP)
    master.incr("counter")
    assert master.execute_command("FAILOVER", "TO", *target, "TIMEOUT", 60000) == b"OK"
    assert master.info("replication")["master_failover_state"] == "waiting-for-sync"
    with pytest.raises(redis.ResponseError, match="FAILOVER already in progress."):
        master.execute_command("FAILOVER")
    with pytest.raises(redis.ResponseError, match="REPLICAOF not allowed while failing over."):
        master.execute_command("REPLICAOF", "NO", "ONE")
    pause = kvrepl_server.engine.pause
    writer = Call(kvrepl_server, "INCR", "counter")
    poll(lambda: len(pause.postponed) == 1, "the write waits")
    assert master.get("counter") == b"1"  # reads are served meanwhile
    assert master.execute_command("FAILOVER", "ABORT") == b"OK"
    assert writer.result() == 2  # the held write ran once the pause ended
    redis_replica_of_kvrepl.process.send_signal(signal.SIGCONT)

    # Now for real: the replica catches up, takes over, and kvrepl follows it.
    master.incr("counter")
    assert master.execute_command("FAILOVER", "TO", *target) == b"OK"
    poll(lambda: _role(theirs) == "master" and _role(master) == "slave"
         and _link_up(master), "the roles are swapped")
    assert theirs.info("stats")["sync_partial_ok"] == 1
    assert theirs.get("counter") == b"3"
    assert master.execute_command("DEBUG", "DIGEST") == theirs.execute_command("DEBUG", "DIGEST")
    theirs.set("from-new-master", 1)
    poll(lambda: master.get("from-new-master") == b"1", "kvrepl follows redis-server")


def test_failover_timeout_without_force_aborts(kvrepl_server, redis_replica_of_kvrepl):
    master = kvrepl_server.client()
    redis_replica_of_kvrepl.process.send_signal(signal.SIGSTOP)
    master.set("k", "v")  # never acknowledged
    assert master.execute_command(
        "FAILOVER", "TO", "127.0.0.1", redis_replica_of_kvrepl.port, "TIMEOUT", 50) == b"OK"
    poll(lambda: master.info("replication")["master_failover_state"] == "no-failover",
         "the failover gave up")
    assert _role(master) == "master"
    assert master.set("k", "w")  # writes flow again


def test_redis_server_master_fails_over_to_a_kvrepl_replica(redis_master, kvrepl_server):
    theirs, ours = redis_master.client(), kvrepl_server.client()
    theirs.set("before", 1)
    ours.execute_command("REPLICAOF", "127.0.0.1", redis_master.port)
    poll(lambda: _link_up(ours), "the kvrepl replica is linked")
    theirs.rpush("list", *range(100))
    with pytest.raises(redis.ResponseError, match="PSYNC FAILOVER replid must match my replid."):
        ours.execute_command("PSYNC", "0" * 40, 1, "FAILOVER")
    assert theirs.execute_command("FAILOVER") == b"OK"
    poll(lambda: _role(ours) == "master" and _role(theirs) == "slave" and _link_up(theirs),
         "the roles are swapped")
    assert ours.info("stats")["sync_partial_ok"] == 1
    assert ours.execute_command("DEBUG", "DIGEST") == theirs.execute_command("DEBUG", "DIGEST")
    ours.set("after", 2)
    poll(lambda: theirs.get("after") == b"2", "redis-server follows kvrepl")


# -- SHUTDOWN waits for lagging replicas ------------------------------------------------------


def test_shutdown_waits_for_a_lagging_replica_abort_and_sigterm():
    process, port = _start_kvrepl_server("--shutdown-timeout", "60", "--repl-diskless-sync-delay", "0")
    replica = RedisServer()
    try:
        master = redis.Redis(port=port)
        theirs = replica.client()
        theirs.execute_command("REPLICAOF", "127.0.0.1", port)
        poll(lambda: _link_up(theirs), "the redis-server replica is linked")
        replica.process.send_signal(signal.SIGSTOP)
        master.set("k", "v1")
        waiting = _Shutdown(port)
        poll(lambda: master.info("clients")["blocked_clients"] == 1, "SHUTDOWN waits")
        assert 0 < master.info("server")["shutdown_in_milliseconds"] <= 60000
        writer = _Async(lambda: redis.Redis(port=port).set("k", "v2"))
        poll(lambda: master.info("clients")["blocked_clients"] == 2, "the write waits")
        assert master.get("k") == b"v1"  # reads go on
        assert master.execute_command("SHUTDOWN", "ABORT") is True
        assert str(waiting.result()) == "Errors trying to SHUTDOWN. Check logs."
        assert writer.result() is True
        assert "shutdown_in_milliseconds" not in master.info("server")
        replica.process.send_signal(signal.SIGCONT)
        # SIGTERM waits the same way: the replica catches up, then the server exits.
        master.set("k", "v3")
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
        assert process.returncode == 0
        assert "1 of 1 replicas are in sync when shutting down." in output
        assert theirs.get("k") == b"v3"
    finally:
        process.kill()
        if replica.process.poll() is None:
            replica.process.send_signal(signal.SIGCONT)
        replica.stop()


def test_shutdown_gives_up_on_a_replica_after_shutdown_timeout():
    process, port = _start_kvrepl_server("--shutdown-timeout", "1", "--repl-diskless-sync-delay", "0")
    replica = RedisServer()
    try:
        theirs = replica.client()
        theirs.execute_command("REPLICAOF", "127.0.0.1", port)
        poll(lambda: _link_up(theirs), "the redis-server replica is linked")
        replica.process.send_signal(signal.SIGSTOP)
        redis.Redis(port=port).set("k", "v")
        waiting = _Shutdown(port)
        assert waiting.result() is None  # the connection closed without a reply
        output, _ = process.communicate(timeout=20)
        assert process.returncode == 0
        assert "Lagging replica 127.0.0.1:" in output
        assert "0 of 1 replicas are in sync when shutting down." in output
    finally:
        process.kill()
        replica.process.send_signal(signal.SIGCONT)
        replica.stop()


class _Async(threading.Thread):
    """``call()`` in a thread; ``result()`` joins and returns its value or exception."""

    def __init__(self, call) -> None:  # noqa: ANN001
        super().__init__(daemon=True)
        self.call, self.value = call, None
        self.start()

    def run(self) -> None:
        try:
            self.value = self.call()
        except (redis.ResponseError, redis.ConnectionError) as err:
            self.value = err

    def result(self) -> object:
        self.join(20)
        assert not self.is_alive()
        return self.value


class _Shutdown(_Async):
    """SHUTDOWN on a raw connection: its error reply, or None when it just closed."""

    def __init__(self, port: int) -> None:
        def shutdown() -> object:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                sock.sendall(b"SHUTDOWN\r\n")
                reply = sock.recv(1000)
                if not reply:
                    return None
                assert reply.startswith(b"-ERR ")
                return reply[5:].rstrip(b"\r\n").decode()

        super().__init__(shutdown)
