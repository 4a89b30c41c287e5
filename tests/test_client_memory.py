"""CLIENT LIST's memory fields besides the output buffers, beside a real redis-server 7.0:
the query buffer (qbuf), the arguments held (argv-mem), the queued MULTI commands
(multi-mem), a replica link's output buffer (omem), and what INFO and MEMORY STATS sum
of them (Redis's tests/unit/introspection.tcl, querybuf.tcl, replication-buffer.tcl)."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Callable, Iterator

import pytest
import redis
from support import (
    RawClient,
    RedisServer,
    ThreadedServer,
    client_fields,
    info_field,
    kvrepl_and_redis,
    line_fields,
    poll,
)

from kvrepl.config import Config

HALF = 500_000


@pytest.fixture(scope="module")
def both() -> Iterator[tuple[ThreadedServer, RedisServer]]:
    with kvrepl_and_redis(Config(save=(), repl_diskless_sync_delay=0),
                          "--repl-diskless-sync-delay", "0") as pair:
        yield pair


@pytest.fixture
def ports(both: tuple[ThreadedServer, RedisServer]) -> Iterator[list[int]]:
    ports = [both[0].port, both[1].port]
    yield ports
    for port in ports:
        with redis.Redis(port=port) as client:
            client.flushall()


def _half_sent(port: int) -> list[object]:
    """A client sends half of a 1 MB SET and stops: its query buffer holds what came, its
    argv the arguments parsed so far; once the rest comes the command runs and both are
    empty again."""
    admin = RawClient(port)
    writer = socket.create_connection(("127.0.0.1", port), timeout=10)
    seen: list[object] = []
    try:
        writer.sendall(b"*2\r\n$6\r\nCLIENT\r\n$2\r\nID\r\n")
        writer_id = int(writer.recv(100)[1:-2])
        writer.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1000000\r\n" + b"x" * HALF)
        poll(lambda: int(client_fields(admin, "ID", writer_id)["qbuf"]) >= HALF,
             "the half request read")
        fields = client_fields(admin, "ID", writer_id)
        # The argument's bytes: its "$1000000\r\n" header is parsed, and dropped.
        seen.append(int(fields["qbuf"]) == HALF)
        seen.append(fields["argv-mem"])  # "SET" and "k"
        seen.append(int(fields["tot-mem"]) >= int(fields["qbuf"]))
        seen.append(fields["cmd"])
        poll(lambda: info_field(admin, "clients", "client_recent_max_input_buffer") >= HALF,
             "INFO to have sampled the query buffer")
        writer.sendall(b"x" * (1_000_000 - HALF) + b"\r\n")
        seen.append(writer.recv(100))
        fields = client_fields(admin, "ID", writer_id)
        seen.append((fields["qbuf"], fields["argv-mem"], fields["cmd"]))
        seen.append(admin.call("STRLEN", "k"))
    finally:
        writer.close()
        admin.close()
    return seen


def test_a_half_sent_request_shows_in_qbuf_and_argv_mem(ports):
    ours, theirs = (_half_sent(port) for port in ports)
    assert ours == theirs == [True, "4", True, "client|id", b"+OK\r\n", ("0", "0", "set"),
                              b":1000000\r\n"]


def _held(port: int) -> list[object]:
    """The caller's own request (Redis trims its query buffer once the command returns),
    a MULTI's queued commands (each argument's bytes and one pointer), a blocked client's
    command."""
    admin, multi, blocked = RawClient(port), RawClient(port), RawClient(port)
    seen: list[object] = []
    try:
        own = line_fields(admin.call("CLIENT", "INFO").split(b"\r\n", 1)[1])
        seen.append((own["qbuf"], own["argv-mem"], own["multi-mem"]))
        multi_id = int(multi.call("CLIENT", "ID")[1:-2])
        seen.append(multi.call("MULTI") + multi.call("SET", "a", "b")
                    + multi.call("INCR", "counter"))
        fields = client_fields(admin, "ID", multi_id)
        seen.append((fields["multi"], fields["multi-mem"], fields["argv-mem"], fields["cmd"]))
        seen.append(int(fields["tot-mem"]) >= 56)
        seen.append(multi.call("EXEC"))
        seen.append(client_fields(admin, "ID", multi_id)["multi-mem"])
        blocked_id = int(blocked.call("CLIENT", "ID")[1:-2])
        blocked.send("BLPOP", "queue", "0")
        poll(lambda: "b" in client_fields(admin, "ID", blocked_id)["flags"], "the client blocked")
        seen.append(client_fields(admin, "ID", blocked_id)["argv-mem"])  # BLPOP queue 0
        admin.call("RPUSH", "queue", "x")
        seen.append(blocked.read())
        seen.append(client_fields(admin, "ID", blocked_id)["argv-mem"])
    finally:
        for client in (admin, multi, blocked):
            client.close()
    return seen


def test_running_queued_and_blocked_commands_are_counted(ports):
    ours, theirs = (_held(port) for port in ports)
    assert ours == theirs == [
        ("26", "10", "0"),
        b"+OK\r\n+QUEUED\r\n+QUEUED\r\n",
        ("2", "56", "0", "incr"),  # SET a b: 5 + 3 * 8; INCR counter: 11 + 2 * 8
        True,
        b"*2\r\n+OK\r\n:1\r\n",
        "0",
        "11",
        b"*2\r\n$5\r\nqueue\r\n$1\r\nx\r\n",
        "0",
    ]


def _stalled_replica(master_port: int) -> list[object]:
    """A redis-server replica of ``master_port`` that stops reading (SIGSTOP): the master's
    CLIENT LIST shows the stream held for it in omem, INFO and MEMORY STATS count it;
    once it reads again it catches up."""
    replica = RedisServer("--replicaof", "127.0.0.1", str(master_port))
    admin = RawClient(master_port)
    seen: list[object] = []
    stopped = False
    try:
        with replica.client() as r:
            poll(lambda: r.info("replication")["master_link_status"] == "up", "the link up")

        def replica_line() -> dict[str, str]:
            return client_fields(admin, "TYPE", "replica")

        seen.append((replica_line()["flags"], replica_line()["obl"]))
        os.kill(replica.process.pid, signal.SIGSTOP)
        stopped = True
        value = b"v" * 1_000_000
        count = [0]

        def write_until(held: Callable[[], bool]) -> Callable[[], bool]:
            def step() -> bool:
                count[0] += 1
                admin.call("SET", f"k{count[0]}", value)
                return held()
            return step

        # Two values held: the kernel is full (it takes megabytes of the stream, as from
        # redis-server, and a first value held may still go as it grows its buffers).
        poll(write_until(lambda: int(replica_line().get("omem", 0)) > 2_000_000),
             "the stream held for the stopped replica")
        line = replica_line()
        seen.append((line["obl"], line["oll"] != "0", int(line["tot-mem"]) >= int(line["omem"])))
        # Redis 7.0 counts in mem_clients_slaves what its shared replication buffer holds
        # beyond repl-backlog-size
        poll(write_until(lambda: info_field(admin, "memory", "mem_clients_slaves") > 0),
             "INFO to count it")
        with redis.Redis(port=master_port) as client:
            seen.append(client.memory_stats()["clients.slaves"] > 0)
        os.kill(replica.process.pid, signal.SIGCONT)
        stopped = False
        with replica.client() as r:
            poll(lambda: r.dbsize() == count[0], "the replica to catch up")
        seen.append(replica_line()["flags"])
    finally:
        if stopped:
            os.kill(replica.process.pid, signal.SIGCONT)
        admin.close()
        replica.stop()
    return seen


def test_a_replica_that_does_not_read_shows_omem(ports):
    ours, theirs = (_stalled_replica(port) for port in ports)
    assert ours == theirs == [("S", "0"), ("0", True, True), True, "S"]


def _replica_figures(port: int) -> list[object]:
    """A redis-server replica of ``port`` stops reading while 1 MB values are written: read
    in one transaction, INFO's mem_clients_slaves and MEMORY STATS' clients.slaves are the
    shared replication buffer beyond repl-backlog-size (1 MB), and the replica's omem the
    blocks it references, which hold all of that; once it has read everything it
    references the tail block only."""
    replica = RedisServer("--replicaof", "127.0.0.1", str(port))
    stopped = False
    seen: list[object] = []
    try:
        with replica.client() as r:
            poll(lambda: r.info("replication")["master_link_status"] == "up", "the link up")
        os.kill(replica.process.pid, signal.SIGSTOP)
        stopped = True
        value = b"v" * 1_000_000
        with redis.Redis(port=port) as client:
            count = [0]

            def figures() -> tuple[int, int, int, int, int]:
                pipe = client.pipeline(transaction=True)  # one instant for all of them
                pipe.client_list(_type="replica")
                pipe.info("memory")
                pipe.memory_stats()
                listed, info, stats = pipe.execute()
                return (int(listed[0]["oll"]), int(listed[0]["omem"]),
                        info["mem_clients_slaves"], stats["clients.slaves"],
                        info["mem_total_replication_buffers"])

            def held() -> bool:
                count[0] += 1
                client.set(f"k{count[0]}", value)
                # Two values held: the kernel is full (it takes megabytes of the stream,
                # as from redis-server; a first value held may still go as it grows).
                return figures()[2] > 2_000_000

            poll(held, "the stream held for the stopped replica")
            oll, omem, info, stats, total = figures()
            seen.append(info == stats == total - 1024 * 1024)
            seen.append(omem > info and oll > 1)
            os.kill(replica.process.pid, signal.SIGCONT)
            stopped = False
            poll(lambda: figures()[0] == 1, "the replica to read everything")
            # The tail block's size depends on how many values were written (where the
            # last one's bytes begin in a block): the kernels decide that.
            seen.append(figures()[1] > 20_000)
    finally:
        if stopped:
            os.kill(replica.process.pid, signal.SIGCONT)
        replica.stop()
    return seen


def test_a_replica_that_does_not_read_references_the_replication_buffer(ports):
    ours, theirs = (_replica_figures(port) for port in ports)
    assert ours == theirs == [True, True, True]
