"""Client output buffers beside a real redis-server 7.0: what CLIENT LIST, INFO and MEMORY
STATS show for a client whose replies wait on it, and client-output-buffer-limit for the
normal class (Redis's tests/unit/obuf-limits.tcl, introspection.tcl)."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from support import (
    DEADLINE,
    RawClient,
    RedisServer,
    SmallWindowClient,
    ThreadedServer,
    client_fields,
    info_field,
    pack,
    poll,
    stuck_size,
)

from kvrepl.config import Config
from kvrepl.replication.stream import encode_command

MB = 1024 * 1024


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[tuple[ThreadedServer, RedisServer, Path]]:
    """kvrepl and redis-server, and the file redis-server logs to."""
    log = tmp_path_factory.mktemp("redis") / "redis.log"
    real = RedisServer(stdout=log)
    ours = ThreadedServer(Config(save=())).start()
    yield ours, real, log
    ours.stop()
    real.stop()


@pytest.fixture
def servers(both: tuple[ThreadedServer, RedisServer, Path]) -> Iterator[list[int]]:
    """Both ports; every test starts from the default limits and an empty keyspace."""
    ports = [both[0].port, both[1].port]
    yield ports
    for port in ports:
        with redis.Redis(port=port) as client:
            client.config_set("client-output-buffer-limit",
                              "normal 0 0 0 pubsub 32mb 8mb 60")
            client.flushall()


def _field(admin: RawClient, client_id: int, name: str) -> int | None:
    """A field of one client's CLIENT LIST line; None once the client is gone."""
    value = client_fields(admin, "ID", client_id).get(name)
    return None if value is None else int(value)


def _clients_normal(port: int) -> int:
    with redis.Redis(port=port) as client:
        return int(client.execute_command("MEMORY", "STATS")[b"clients.normal"])


def _read_exactly(client: RawClient, size: int) -> bytes:
    data = bytearray(client.buf)
    while len(data) < size:
        chunk = client.sock.recv(1024 * 1024)
        if not chunk:
            break
        data += chunk
    client.buf = b""
    return bytes(data)


def _drain(client: RawClient) -> int:
    """Read until the server closes the connection; how many bytes came."""
    total = len(client.buf)
    while chunk := client.sock.recv(1024 * 1024):
        total += len(chunk)
    return total


def _stuck_then_read(port: int) -> list[object]:
    """A client asks for a value no socket holds and stops reading: CLIENT LIST shows its
    reply in omem, INFO and MEMORY STATS count it, others are served; once it reads all
    of it, omem is 0 again."""
    size = stuck_size()
    admin, other = RawClient(port), RawClient(port)
    victim = SmallWindowClient(port, 4096)
    seen: list[object] = []
    try:
        assert admin.call("SET", "big", b"v" * size) == b"+OK\r\n"
        victim_id = int(victim.call("CLIENT", "ID")[1:-2])
        victim.send("GET", "big")
        poll(lambda: (_field(admin, victim_id, "omem") or 0) > MB, "omem to show the reply")
        omem = _field(admin, victim_id, "omem") or 0
        seen.append(_field(admin, victim_id, "oll") == 1)
        seen.append(_field(admin, victim_id, "tot-mem") >= omem)  # type: ignore[operator]
        seen.append(other.call("SET", "during", "1") + other.call("GET", "during"))
        # What the once-a-second sampling of every client saw, and the clients' memory.
        poll(lambda: info_field(admin, "clients", "client_recent_max_output_buffer") > MB,
             "INFO to have sampled the stuck client")
        poll(lambda: _clients_normal(port) > MB, "MEMORY STATS to count the stuck client")
        seen.append(info_field(admin, "memory", "mem_clients_normal") > MB)
        header = b"$%d\r\n" % size
        reply = _read_exactly(victim, len(header) + size + 2)
        seen.append(reply == header + b"v" * size + b"\r\n")
        poll(lambda: _field(admin, victim_id, "omem") == 0, "omem to go back to 0")
        seen.append((_field(admin, victim_id, "obl"), _field(admin, victim_id, "oll")))
        seen.append(victim.call("PING"))
    finally:
        for client in (admin, other, victim):
            client.close()
    return seen


def test_omem_shows_a_reply_waiting_on_its_client_and_0_once_read(servers):
    ours, theirs = (_stuck_then_read(port) for port in servers)
    assert ours == theirs == [True, True, b"+OK\r\n$1\r\n1\r\n", True, True, (0, 0),
                              b"+PONG\r\n"]


def _closed_without_a_reply(port: int, name: str, *requests: tuple[object, ...]) -> bool:
    """``requests`` sent in one write by a client that reads: it gets nothing, is closed,
    and leaves CLIENT LIST."""
    client, admin = RawClient(port), RawClient(port)
    try:
        assert client.call("CLIENT", "SETNAME", name) == b"+OK\r\n"
        client.sock.sendall(b"".join(pack(*r) for r in requests))
        closed = client.closed()
        poll(lambda: f"name={name} " not in admin.call("CLIENT", "LIST").decode(),
             "the client to leave CLIENT LIST")
        return closed
    finally:
        client.close()
        admin.close()


def _hard_limit(port: int) -> list[object]:
    with redis.Redis(port=port) as client:
        client.config_set("client-output-buffer-limit", "normal 100000 0 0")
        client.set("bigkey", b"x" * 200_000)
        client.set("tenk", b"x" * 10_000)
        client.rpush("mylist", *[b"x" * 1000] * 150)
        seen: list[object] = [
            # One reply over the limit: closed before a byte of it is sent, and what came
            # after it in the same read never runs.
            _closed_without_a_reply(port, "single", ("GET", "bigkey"), ("SET", "after", "1")),
            client.exists("after"),
            _closed_without_a_reply(port, "list", ("LRANGE", "mylist", "0", "-1")),
            # Replies that pass it together (obuf-limits.tcl's pipeline).
            _closed_without_a_reply(port, "pipeline", *[
                r for i in range(15) for r in (("SET", i, i), ("GET", i), ("DEL", i),
                                               ("GET", "tenk"))]),
            # A transaction runs to its end, then its client is closed.
            _closed_without_a_reply(port, "transaction", ("MULTI",), ("SET", "k2", "v2"),
                                    ("GET", "bigkey"), ("SET", "k3", "v3"), ("EXEC",)),
            client.mget("k2", "k3"),
        ]
        # Under the limit, a client is served as ever.
        ok = RawClient(port)
        try:
            seen.append(ok.call("GET", "tenk") == b"$10000\r\n" + b"x" * 10_000 + b"\r\n")
        finally:
            ok.close()
        return seen


def test_hard_limit_closes_a_client_whose_replies_pass_it(servers, both, caplog):
    caplog.set_level(logging.WARNING, logger="kvrepl")
    ours, theirs = (_hard_limit(port) for port in servers)
    assert ours == theirs == [True, 0, True, True, True, [b"v2", b"v3"], True]
    # Logged as Redis logs it, with the client's CLIENT LIST line.
    ending = "scheduled to be closed ASAP for overcoming of output buffer limits."
    logged = [r.getMessage() for r in caplog.records if r.getMessage().endswith(ending)]
    assert any(" name=single " in line for line in logged)
    assert ending in both[2].read_text()


def _soft_limit(port: int) -> list[object]:
    """A client over the soft limit, and not reading, is closed once it has stayed over
    it longer than its seconds (with no new reply: the once-a-second check of every
    client); others are served meanwhile."""
    size = stuck_size()
    admin = RawClient(port)
    victim = SmallWindowClient(port, 4096)
    seen: list[object] = []
    try:
        assert admin.call("CONFIG", "SET", "client-output-buffer-limit",
                          "normal 0 1mb 1") == b"+OK\r\n"
        assert admin.call("SET", "big", b"v" * size) == b"+OK\r\n"
        victim_id = int(victim.call("CLIENT", "ID")[1:-2])
        victim.send("GET", "big")
        poll(lambda: (_field(admin, victim_id, "omem") or 0) > MB
             or _field(admin, victim_id, "id") is None, "the reply to be stuck")
        seen.append(admin.call("INCR", "during"))
        poll(lambda: _field(admin, victim_id, "id") is None, "the client to be closed")
        # It got what the kernel took before the close, never the whole reply.
        seen.append(0 < _drain(victim) < size)
        seen.append(admin.call("GET", "during"))
    finally:
        admin.close()
        victim.close()
    return seen


def test_soft_limit_closes_a_client_over_it_for_longer_than_its_seconds(servers):
    ours, theirs = (_soft_limit(port) for port in servers)
    assert ours == theirs == [b":1\r\n", True, b"$1\r\n1\r\n"]


def _subscriber_over_soft_limit(port: int) -> list[object]:
    """The pubsub class: a subscriber left over its soft limit, with nothing more
    published to it, is closed after its seconds too."""
    admin = RawClient(port)
    subscriber = SmallWindowClient(port, 4096)
    try:
        admin.call("CONFIG", "SET", "client-output-buffer-limit", "pubsub 0 100000 1")
        subscriber.call("CLIENT", "SETNAME", "sub")
        subscriber.call("SUBSCRIBE", "news")
        sub_id = int(admin.call("CLIENT", "LIST", "TYPE", "pubsub").split(b"id=")[1]
                     .split(b" ")[0])
        value = b"x" * 10_000
        poll(lambda: admin.call("PUBLISH", "news", value) == b":1\r\n"
             and (_field(admin, sub_id, "omem") or 0) > 100_000, "the subscriber's omem")
        poll(lambda: _field(admin, sub_id, "id") is None, "the subscriber to be closed")
        return [admin.call("PUBSUB", "NUMSUB", "news")]
    finally:
        admin.close()
        subscriber.close()


def test_pubsub_soft_limit_is_met_with_no_more_messages(servers):
    ours, theirs = (_subscriber_over_soft_limit(port) for port in servers)
    assert ours == theirs == [b"*2\r\n$4\r\nnews\r\n:0\r\n"]


def flood_without_reading(port: int, victim: RawClient, case: str) -> dict[str, object]:
    """``victim`` (a client of the server on ``port`` offering a small receive window)
    sends 16 MB of ECHO requests and a last INCR in one go and never reads: the server
    keeps reading and running them while its replies wait (Redis does not stop reading a
    client whose output waits), so the setting of ``FLOODS[case]`` decides: a hard limit,
    or maxmemory-clients, closes it before the INCR runs; with no limit (0 0 0) all of it
    runs and the replies wait in its output (all but what the kernel took: a few MB at
    most). The setting is the default one again at the end."""
    admin = RawClient(port)
    seen: dict[str, object] = {}
    name, value = FLOODS[case]
    assert admin.call("CLIENT", "NO-EVICT", "on") == b"+OK\r\n"
    assert admin.call("CONFIG", "SET", name, value) == b"+OK\r\n"
    victim_id = int(victim.call("CLIENT", "ID")[1:-2])
    flood = pack("ECHO", b"e" * 1000) * 16_000 + pack("INCR", "flooded")

    def send() -> None:
        with contextlib.suppress(OSError):  # closed by the server, or by the test's end
            victim.sock.sendall(flood)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        if case == "no limit":
            poll(lambda: admin.call("GET", "flooded") == b"$1\r\n1\r\n",
                 "the last request to run")
            fields = client_fields(admin, "ID", victim_id)
            seen["qbuf"] = fields["qbuf"]
            seen["omem over 8 MB"] = int(fields["omem"]) > 8 * MB
            seen["oll over 100"] = int(fields["oll"]) > 100
        else:
            poll(lambda: _field(admin, victim_id, "id") is None, "the client to be closed")
            seen["ran"] = admin.call("GET", "flooded")
    finally:
        with contextlib.suppress(OSError):  # unblocks the sender (gone if closed)
            victim.sock.shutdown(socket.SHUT_RDWR)
        victim.close()
        sender.join(DEADLINE)
        admin.call("CONFIG", "SET", name, _DEFAULTS[name])
        admin.call("DEL", "flooded")
        admin.close()
    return seen


FLOODS = {"hard limit": ("client-output-buffer-limit", "normal 4mb 0 0"),
          "no limit": ("client-output-buffer-limit", "normal 0 0 0"),
          "maxmemory-clients": ("maxmemory-clients", "4mb")}
_DEFAULTS = {"client-output-buffer-limit": "normal 0 0 0", "maxmemory-clients": "0"}
FLOODED = {"hard limit": {"ran": b"$-1\r\n"}, "maxmemory-clients": {"ran": b"$-1\r\n"},
           "no limit": {"qbuf": "0", "omem over 8 MB": True, "oll over 100": True}}


@pytest.mark.parametrize("case", sorted(FLOODS))
def test_a_client_that_sends_without_reading_is_read_on_as_redis(servers, case):
    """Redis reads and runs a client's requests while its replies wait for the kernel:
    the output limits (or maxmemory-clients) close a client that sends without reading,
    and with none its replies pile up; the same on both servers."""
    ours, theirs = (flood_without_reading(port, SmallWindowClient(port, 4096), case)
                    for port in servers)
    assert ours == theirs == FLOODED[case]


def _config_outcomes(port: int) -> list[object]:
    client = redis.Redis(port=port, decode_responses=True)
    seen: list[object] = []
    try:
        for value in ("wrong number", "invalid_class 10mb 10mb 60", "master 10mb 10mb 60",
                      "normal 10mbs 10mb 60", "replica 10mb 10mbs 60",
                      "pubsub 10mb 10mb 60s", "normal 1mb 1mb -1",
                      "normal 1mb 2mb 60 replica 3mb 4mb 70 pubsub 5mb 6mb 80",
                      # one class at a time: the others keep their limits
                      "pubsub 7mb 0 0", "slave 1gb 512mb 10", "NORMAL 0 0 0"):
            try:
                seen.append(client.config_set("client-output-buffer-limit", value))
            except redis.ResponseError as err:
                seen.append(str(err))
            seen.append(client.config_get("client-output-buffer-limit"))
    finally:
        client.config_set("client-output-buffer-limit",
                          "replica 256mb 64mb 60 pubsub 32mb 8mb 60")
        client.close()
    return seen


def test_config_set_and_get_match_redis(servers):
    ours, theirs = (_config_outcomes(port) for port in servers)
    assert ours == theirs
    assert theirs[-1] == {"client-output-buffer-limit":
                          "normal 0 0 0 slave 1073741824 536870912 10 pubsub 7340032 0 0"}


def test_config_file_lines_each_set_their_class(tmp_path):
    """A config file sets one class a line (redis.conf's three lines), the command line
    too; every class not named keeps its default."""
    from kvrepl.cli import parse_args

    path = tmp_path / "kvrepl.conf"
    path.write_text("client-output-buffer-limit normal 1mb 512kb 5\n"
                    "client-output-buffer-limit pubsub 64mb 16mb 30\n")
    assert parse_args([str(path)]).get("client-output-buffer-limit") == (
        "normal 1048576 524288 5 slave 268435456 67108864 60 pubsub 67108864 16777216 30")
    assert parse_args(["--client-output-buffer-limit", "normal", "1mb", "0", "0"]).get(
        "client-output-buffer-limit") == (
        "normal 1048576 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60")


def test_the_master_link_is_never_limited():
    """A replica whose normal clients may hold 1 byte beyond the static buffer follows its
    master's large writes (its link to the master sends no replies); its own clients are
    limited."""
    limit = {"client_output_buffer_limit": "normal 1 1 0"}
    master = ThreadedServer(Config(save=(), repl_diskless_sync_delay=0, **limit)).start()
    replica = ThreadedServer(Config(save=(), replicaof=("127.0.0.1", master.port),
                                    **limit)).start()
    try:
        m, r = master.client(), replica.client()
        poll(lambda: r.info("replication")["master_link_status"] == "up", "the link up")
        for i in range(5):
            m.set(f"big:{i}", b"x" * 100_000)
        poll(lambda: r.strlen("big:4") == 100_000, "the writes to reach the replica")
        assert r.info("replication")["master_link_status"] == "up"
        reader = RawClient(replica.port)
        reader.send("GET", "big:0")
        assert reader.closed()
        reader.close()
        m.close()
        r.close()
    finally:
        replica.stop()
        master.stop()


def test_messages_a_transaction_sends_its_own_client_are_not_left_counted(servers):
    """RESP3: the keyspace events of its own EXEC go out inside the EXEC reply (as in
    Redis); once sent, nothing is held for the client any more."""
    port = servers[0]
    client, admin = RawClient(port, protocol=3), RawClient(port)
    try:
        admin.call("CONFIG", "SET", "notify-keyspace-events", "KA")
        client.call("SUBSCRIBE", "__keyspace@0__:k")
        client_id = int(admin.call("CLIENT", "LIST", "TYPE", "pubsub").split(b"id=")[1]
                        .split(b" ")[0])
        assert client.call("MULTI") == b"+OK\r\n"
        assert client.call("SET", "k", "v") == b"+QUEUED\r\n"
        assert b">3\r\n$7\r\nmessage\r\n" in client.call("EXEC")
        assert (_field(admin, client_id, "obl"), _field(admin, client_id, "omem")) == (0, 0)
    finally:
        admin.call("CONFIG", "SET", "notify-keyspace-events", "")
        client.close()
        admin.close()


def test_a_replica_limit_counts_what_its_stuck_send_holds(caplog):
    """A replica's output buffer is everything the kernel has not taken (as in Redis),
    bytes its stuck send holds included. A replica that reads nothing after its snapshot:
    the master's writes fill the socket until its send waits with part of a write; then
    one write sized so that the buffer alone stays under the hard limit, and the buffer
    plus what the send holds passes it, closes the link."""
    caplog.set_level(logging.WARNING, logger="kvrepl")
    hard = 1 << 20
    master = ThreadedServer(Config(save=(), repl_diskless_sync=False,
                                   client_output_buffer_limit=f"replica {hard} 0 0")).start()
    admin = RawClient(master.port)
    fake = SmallWindowClient(master.port, 4096)  # reads only its first reply line
    try:
        admin.call("SET", "first", "1")  # the stream's SELECT comes before the snapshot
        fake.send("PSYNC", "?", "-1")
        poll(lambda: b"state=online" in admin.call("INFO", "replication"),
             "the fake replica online, its snapshot sent")
        replication = master.node.replication
        link = replication.replicas[0]
        chunk = b"c" * 256 * 1024
        for i in range(stuck_size() // len(chunk)):
            admin.call("SET", f"fill:{i % 8}", chunk)
            # Taken and sent, or the send waits (a write may be queued behind it).
            poll(lambda: link.io.unsent or not replication.held_for(link),
                 "the sender to take the write")
            if link.io.unsent:
                break
        held = replication.held_for(link)  # what the replica limit counts
        assert 0 < link.io.unsent <= held < hard
        target = hard - held + 1
        size = target - len(encode_command([b"SET", b"last", b""]))
        while len(encode_command([b"SET", b"last", b"v" * size])) > target:
            size -= 1
        assert len(encode_command([b"SET", b"last", b"v" * size])) == target
        assert not caplog.records and link.closed is None  # not closed before this write
        admin.call("SET", "last", b"v" * size)
        assert link.closed == "hard output buffer limit reached"
        poll(lambda: info_field(admin, "replication", "connected_slaves") == 0,
             "the link to be closed")
        assert any("hard output buffer limit reached" in r.getMessage()
                   for r in caplog.records)
    finally:
        admin.close()
        fake.close()
        master.stop()
