"""The general lane (kvrepl/commands/dispatch.py): pipelined requests of a plain session go
straight to Engine.call, and must still answer, refuse, count and propagate exactly as
Engine.execute does, including when a request of the run changes what must be checked.

Pipelines are compared byte for byte with a real redis-server (``wire``).
"""

from __future__ import annotations

import pytest
from support import raw_replies

from kvrepl.commands.dispatch import in_lane
from kvrepl.protocol.parser import RequestParser, split_requests

SCRIPT = "return redis.call('incr', KEYS[1])"


def test_pipelined_writes_answer_as_redis(wire):
    wire(batch=[("ZADD", "z", "1", "a"), ("zadd", "z", "2", "b"), ("ZaDd", "z", "2", "b"),
                ("SADD", "s", "m"), ("INCR", "n"), ("HSET", "h", "f", "v"),
                ("SETBIT", "bits", "7", "1"), ("PFADD", "hll", "x"), ("XADD", "x", "1-1", "f", "v"),
                ("XADD", "x", "*", "f", "v", "extra"), ("GEOADD", "g", "13.36", "38.11", "p"),
                ("ZADD", "z"), ("NOSUCH", "z"), ("INCR", "z"), ("ZCARD", "z"), ("PING",),
                ("ECHO", "e"), ("SCRIPT", "LOAD", SCRIPT)])


def test_scripts_in_a_pipeline_answer_as_redis(wire):
    sha = wire("SCRIPT", "LOAD", SCRIPT).split(b"\r\n")[1].decode()
    wire(batch=[("EVALSHA", sha, "1", "c"), ("evalsha", sha, "1", "c"), ("SET", "s", "x"),
                ("EVALSHA", sha, "1", "s"), ("EVALSHA", "0" * 40, "0"), ("GET", "c")])


def test_node_state_changed_inside_a_pipeline_is_checked(wire, configure):
    """A request of the run turns on what the lane does not check (maxmemory,
    min-replicas-to-write): the next ones are refused as Redis refuses them."""
    configure("maxmemory", 0)
    configure("min-replicas-to-write", 0)
    wire(batch=[("ZADD", "z", "1", "a"), ("CONFIG", "SET", "maxmemory", "1"),
                ("ZADD", "z", "2", "b"), ("ZCARD", "z"), ("CONFIG", "SET", "maxmemory", "0"),
                ("ZADD", "z", "2", "b"), ("CONFIG", "SET", "min-replicas-to-write", "1"),
                ("SADD", "s", "m"), ("SCARD", "s"), ("CONFIG", "SET", "min-replicas-to-write", "0"),
                ("SADD", "s", "m")])


def test_session_state_changed_inside_a_pipeline_is_checked(wire):
    """MULTI, SELECT and an ACL change in the middle of a run: queued and refused requests,
    and the other db, as in Redis."""
    try:
        wire(batch=[("INCR", "n"), ("MULTI",), ("INCR", "n"), ("ZADD", "z"), ("EXEC",),
                    ("SELECT", "1"), ("INCR", "n"), ("SELECT", "0"), ("INCR", "n"), ("ACL", "SETUSER", "default", "-incr"), ("INCR", "n"),
                    ("SADD", "s", "m"), ("ACL", "SETUSER", "default", "+incr"), ("INCR", "n")])
    finally:
        wire(batch=[("ACL", "SETUSER", "default", "+@all"), ("ACL", "LOG", "RESET")])


def _stats(client, section):
    return {name: {k: v for k, v in fields.items() if "usec" not in k}
            for name, fields in client.info(section).items()}


def test_counts_as_redis(wire, r, real, kvrepl_server, redis_server):
    """INFO commandstats (calls, rejected and failed calls), errorstats and LATENCY
    HISTOGRAM's call counts of a pipeline run through the lane."""
    for client in (r, real):
        client.config_resetstat()
    wire(batch=[("ZADD", "z", "1", "a"), ("ZADD", "z", "x", "a"), ("ZADD", "z"),
                ("SADD", "z", "m"), ("INCR", "n"), ("INCR", "n"), ("INCRBY", "n", "x")])
    assert _stats(r, "commandstats") == _stats(real, "commandstats")
    assert _stats(r, "errorstats") == _stats(real, "errorstats")
    for name in ("zadd", "incr", "sadd"):
        ours, theirs = (raw_replies(server.client()).execute_command("LATENCY", "HISTOGRAM", name)
                        for server in (kvrepl_server, redis_server))
        calls = [reply.get(name.encode(), {}).get(b"calls") for reply in (ours, theirs)]
        assert calls[0] == calls[1], name


def test_writes_propagate_in_order(wire, server_propagated):
    sha = wire("SCRIPT", "LOAD", SCRIPT).split(b"\r\n")[1].decode()
    server_propagated.clear()
    wire(batch=[("ZADD", "z", "1", "a"), ("ZADD", "z", "1", "a"), ("SADD", "s", "m"),
                ("EVALSHA", sha, "1", "c"), ("HSET", "h", "f", "v"), ("ZADD", "z")])
    assert server_propagated == [[b"ZADD", b"z", b"1", b"a"], [b"SADD", b"s", b"m"],
                                 [b"incr", b"c"], [b"HSET", b"h", b"f", b"v"]]


@pytest.mark.parametrize(("name", "expected"), [
    (b"zadd", True), (b"incr", True), (b"ping", True), (b"evalsha", True), (b"fcall", True),
    (b"multi", False), (b"exec", False), (b"auth", False), (b"hello", False),
    (b"subscribe", False), (b"monitor", False), (b"client", False), (b"select", True),
    (b"replconf", False), (b"quit", False), (b"debug", False), (b"config", False),
])
def test_which_commands_run_in_the_lane(engine, name, expected):
    """Commands that can change their own client's state never do (Redis flags them
    noscript), nor containers or protected ones; scripts do."""
    assert in_lane(engine.table[name]) is expected


def test_split_of_xadd_pipelines_is_the_exact_parsers():
    """A '*' argument (XADD's ID) is no request boundary for the splitter."""
    data = b"".join(b"*5\r\n$4\r\nXADD\r\n$1\r\ns\r\n$1\r\n*\r\n$1\r\nf\r\n$1\r\nv\r\n"
                    for _ in range(16))
    for cut in (len(data), len(data) - 3):
        requests, taken, refused = split_requests(data[:cut], 0, want_sizes=False)
        exact = RequestParser()
        exact.feed(data[:taken])
        expected = []
        while type(argv := exact.next_request()) is list:
            expected.append(argv)
        assert not refused and requests == expected
        assert len(requests) == (16 if cut == len(data) else 15)


def test_the_node_flag_follows_each_state_it_stands_for(engine, session):
    """``general_lane_closed`` (read by the lane before each request) is on exactly while a
    restricting state, maxmemory, min-replicas-to-write or client-side caching is."""
    assert not engine.general_lane_closed
    engine.read_only = True
    assert engine.general_lane_closed
    engine.read_only = False
    assert not engine.general_lane_closed
    for name, value in ((b"maxmemory", b"100mb"), (b"min-replicas-to-write", b"1")):
        engine.execute(session, [b"CONFIG", b"SET", name, value])
        assert engine.general_lane_closed, name
        engine.execute(session, [b"CONFIG", b"SET", name, b"0"])
        assert not engine.general_lane_closed, name
    engine.execute(session, [b"HELLO", b"3"])
    assert engine.execute(session, [b"CLIENT", b"TRACKING", b"ON"]) == b"OK"
    assert engine.general_lane_closed
    engine.execute(session, [b"CLIENT", b"TRACKING", b"OFF"])
    assert not engine.general_lane_closed
