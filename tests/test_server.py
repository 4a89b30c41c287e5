"""The TCP server as clients see it: pipelining, inline commands, protocol errors, limits."""

from __future__ import annotations

import socket

import pytest
import redis
import trio
from support import ThreadedServer, no_retry

from kvrepl.config import Config


def raw(port: int, payload: bytes, expect_close: bool = False) -> bytes:
    """Send ``payload`` and read until the server stops sending (or closes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR) if expect_close else None
        chunks = []
        sock.settimeout(0.5 if not expect_close else 5)
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
        except TimeoutError:
            pass
        return b"".join(chunks)


def test_inline_commands_like_telnet(kvrepl_server):
    reply = raw(kvrepl_server.port, b"PING\r\nSET k \"a b\"\r\nGET k\r\n")
    assert reply == b"+PONG\r\n+OK\r\n$3\r\na b\r\n"


def test_pipelined_requests_answer_in_order(kvrepl_server):
    payload = b"".join(b"*3\r\n$3\r\nSET\r\n$2\r\nk%d\r\n$1\r\n%d\r\n" % (i % 10, i % 10)
                       for i in range(1000))
    payload += b"*2\r\n$3\r\nGET\r\n$2\r\nk7\r\n"
    reply = raw(kvrepl_server.port, payload)
    assert reply == b"+OK\r\n" * 1000 + b"$1\r\n7\r\n"


def test_protocol_error_closes_only_that_connection(kvrepl_server):
    bystander = kvrepl_server.client()
    bystander.set("safe", "1")
    reply = raw(kvrepl_server.port, b"*1\r\n+PING\r\n*1\r\n$4\r\nPING\r\n", expect_close=True)
    assert reply == b"-ERR Protocol error: expected '$', got '+'\r\n"
    assert bystander.get("safe") == b"1"
    bystander.close()


def test_same_protocol_error_as_redis(kvrepl_server, redis_server):
    for payload in (b"*x\r\n", b"*1\r\n$-3\r\n", b'GET "unbalanced\r\n',
                    # counts and lengths are read as string2ll reads them
                    b"*03\r\n", b"*-0\r\n", b"*+1\r\n", b"* 1\r\n", b"*1_0\r\n",
                    b"*1\r\n$04\r\nPING\r\n", b"*1\r\n$ 4\r\nPING\r\n",
                    b"*1\r\n$+4\r\nPING\r\n", b"*1\r\n$-0\r\n",
                    # element types hiredis would take as bytes, after a good request
                    b"*1\r\n$4\r\nPING\r\n*1\r\n+PING\r\n",
                    b"*1\r\n$4\r\nPING\r\n*1\r\n=8\r\ntxt:PING\r\n",
                    b"*1\r\n$4\r\nPING\r\n*1\r\n(12\r\n"):
        ours = raw(kvrepl_server.port, payload, expect_close=True)
        theirs = raw(redis_server.port, payload, expect_close=True)
        assert ours == theirs


def test_big_value_round_trips(r):
    value = bytes(range(256)) * 40000  # 10 MB
    assert r.set("big", value)
    assert r.get("big") == value


def test_resp3_client(kvrepl_server):
    client = kvrepl_server.client(protocol=3)
    assert client.set("k", "v")
    assert client.get("k") == b"v"
    assert client.get("nope") is None
    client.close()


def test_requirepass_limits_unauthenticated_clients():
    server = ThreadedServer(Config(save=(), requirepass="secret")).start()
    try:
        # No retries: redis-py retries a refused login (a ConnectionError) with backoff.
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=server.port, protocol=2, retry=no_retry()).get("k")
        # Redis refuses big requests from unauthenticated clients at the protocol level.
        reply = raw(server.port, b"*20\r\n", expect_close=True)
        assert reply == b"-ERR Protocol error: unauthenticated multibulk length\r\n"
        client = redis.Redis(port=server.port, password="secret")
        assert client.set("k", "v")
        client.close()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=server.port, password="wrong", retry=no_retry()).ping()
    finally:
        server.stop()


def test_maxclients():
    server = ThreadedServer(Config(save=(), maxclients=1)).start()
    try:
        first = redis.Redis(port=server.port)
        first.ping()
        reply = raw(server.port, b"", expect_close=True)
        assert reply == b"-ERR max number of clients reached\r\n"
        first.close()
    finally:
        server.stop()


async def test_embedded_master_serves_tcp_and_stops():
    import kvrepl

    async with kvrepl.Master(port=0) as master:
        port = master.port
        master.set(b"k", b"from the app")
        value = await trio.to_thread.run_sync(lambda: redis.Redis(port=port).get("k"))
        assert value == b"from the app"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
