"""Blocked clients against a real redis-server 7.0: several clients block, in a drawn
order, with drawn blocking commands (BLPOP, BLMOVE, BZPOPMIN, BZMPOP, XREAD BLOCK,
XREADGROUP BLOCK, WAIT...) on a few keys; then a drawn sequence of writes (pushes, ZADDs,
XADDs, a MULTI of pushes, deletions, a key of another type, XGROUP DESTROY) serves them.
Who got what must be the same on both servers, reply for reply: each waiter's reply bytes,
the writer's, and the dataset afterwards. The waiters still blocked at the end are released
by CLIENT UNBLOCK (their timeout reply), so nothing waits on time: a waiter is known to be
blocked from INFO's ``blocked_clients``. ``KVREPL_DIFF_EXAMPLES`` runs more examples."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import RawClient, RedisServer, ThreadedServer, pack, poll

EXAMPLES = max(int(os.environ.get("KVREPL_DIFF_EXAMPLES", "15")) // 5, 15)

WAITERS = st.sampled_from([
    ("BLPOP", "l1", "l2", "0"), ("BRPOP", "l2", "l1", "0"), ("BLPOP", "l2", "0"),
    ("BLMOVE", "l1", "l2", "LEFT", "RIGHT", "0"), ("BLMOVE", "l2", "l1", "RIGHT", "LEFT", "0"),
    ("BRPOPLPUSH", "l2", "l1", "0"), ("BLMPOP", "0", "2", "l1", "l2", "LEFT", "COUNT", "2"),
    ("BLMOVE", "l1", "z1", "LEFT", "LEFT", "0"),
    ("BZPOPMIN", "z1", "0"), ("BZPOPMAX", "z1", "l1", "0"),
    ("BZMPOP", "0", "1", "z1", "MAX", "COUNT", "2"),
    ("XREAD", "BLOCK", "0", "STREAMS", "s1", "$"),
    ("XREAD", "COUNT", "1", "BLOCK", "0", "STREAMS", "s1", "l1", "$", "$"),
    ("XREADGROUP", "GROUP", "g", "c1", "COUNT", "1", "BLOCK", "0", "STREAMS", "s1", ">"),
    ("XREADGROUP", "GROUP", "g", "c2", "BLOCK", "0", "NOACK", "STREAMS", "s1", ">"),
    ("WAIT", "1", "0"),
])

# The writes; "XADD" gets an ID that grows with its step.
WRITES = st.sampled_from([
    ("LPUSH", "l1", "a", "b"), ("RPUSH", "l2", "c"), ("LPUSH", "l2", "d", "e", "f"),
    ("RPUSH", "l1", "g"), ("ZADD", "z1", "1", "m", "2", "n"), ("ZADD", "z1", "3", "o"),
    ("XADD", "s1"), ("XADD", "s1"), ("MULTI",), ("RPOPLPUSH", "l2", "l1"),
    ("LMOVE", "l1", "l2", "RIGHT", "LEFT"), ("DEL", "l1"), ("SET", "l1", "string"),
    ("ZUNIONSTORE", "z1", "1", "z1"), ("XGROUP", "DESTROY", "s1", "g"), ("DEL", "s1"),
    ("SORT", "l2", "ALPHA", "STORE", "l1"), ("RENAME", "l2", "l1"),
])


def blocked_clients(control: RawClient) -> int:
    info = control.call("INFO", "clients")
    return int(info.split(b"blocked_clients:")[1].split(b"\r\n")[0])


def run(port: int, protocol: int, waiters: list[tuple[str, ...]],
        writes: list[tuple[str, ...]]) -> list[bytes]:
    """Everything the clients of the server on ``port`` were sent, in a fixed order: the
    writer's replies, the CLIENT UNBLOCK replies, each waiter's reply, the dataset."""
    control = RawClient(port)
    out = []
    conns: list[RawClient] = []
    try:
        control.call("FLUSHALL")
        control.call("XGROUP", "CREATE", "s1", "g", "$", "MKSTREAM")
        ids = []
        for index, command in enumerate(waiters):
            conn = RawClient(port, protocol)
            conns.append(conn)
            ids.append(int(conn.call("CLIENT", "ID")[1:-2]))
            conn.send(*command)
            poll(lambda count=index + 1: blocked_clients(control) == count,
                 f"{command} blocks")
        writer = RawClient(port, protocol)
        conns.append(writer)
        for step, command in enumerate(writes):
            if command == ("XADD", "s1"):
                command = ("XADD", "s1", f"{step + 1}-1", "f", f"v{step}")
            if command == ("MULTI",):
                batch = [("MULTI",), ("RPUSH", "l1", "x"), ("ZADD", "z1", "5", "p"),
                         ("XADD", "s1", f"{step + 1}-1", "f", "m"), ("LPUSH", "l2", "y"),
                         ("EXEC",)]
                writer.sock.sendall(b"".join(pack(*part) for part in batch))
                out.append(writer.read(len(batch)))
            else:
                out.append(writer.call(*command))
        for client_id in ids:
            out.append(control.call("CLIENT", "UNBLOCK", client_id))
        out.extend(conn.read() for conn in conns[:len(waiters)])
        for key in sorted(control.call("KEYS", "*").split(b"\r\n")[2::2]):
            out.append(key + b" " + control.call("TYPE", key))
            kind = control.call("TYPE", key)
            if kind == b"+list\r\n":
                out.append(control.call("LRANGE", key, "0", "-1"))
            elif kind == b"+zset\r\n":
                out.append(control.call("ZRANGE", key, "0", "-1", "WITHSCORES"))
            elif kind == b"+stream\r\n":
                out.append(control.call("XRANGE", key, "-", "+"))
                out.append(control.call("XPENDING", key, "g"))
            else:
                out.append(control.call("DUMP", key))
        return out
    finally:
        for conn in conns:
            conn.close()
        control.close()


@pytest.mark.redis_server
@settings(max_examples=EXAMPLES, deadline=None, derandomize="KVREPL_DIFF_EXAMPLES" not in os.environ,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(protocol=st.sampled_from([2, 3]), waiters=st.lists(WAITERS, min_size=1, max_size=6),
       writes=st.lists(WRITES, min_size=1, max_size=10))
def test_blocked_clients_served_alike(kvrepl_server: ThreadedServer, redis_server: RedisServer,
                                      protocol: int, waiters: list[tuple[str, ...]],
                                      writes: list[tuple[str, ...]]) -> None:
    """The same waiters served by the same writes get the same replies, in the same order
    of arrival, and leave the same data."""
    mine = run(kvrepl_server.port, protocol, waiters, writes)
    real = run(redis_server.port, protocol, waiters, writes)
    for index, (ours, theirs) in enumerate(zip(mine, real, strict=True)):
        assert ours == theirs, (f"{index}: {waiters} then {writes} RESP{protocol}: "
                                f"kvrepl {ours!r} != redis {theirs!r}")
