"""MIGRATE from kvrepl compared with MIGRATE from redis-server 7.0, to a redis-server and to
a kvrepl target."""

from __future__ import annotations

import pytest
import redis

from kvrepl.config import Config
from tests.support import RedisServer, ThreadedServer, free_port, plain, poll, raw_replies


@pytest.fixture
def kvrepl_source():
    server = ThreadedServer(Config(save=(), repl_diskless_sync_delay=0,
                                   enable_debug_command="yes")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_source():
    server = RedisServer("--enable-debug-command", "yes")
    yield server
    server.stop()


@pytest.fixture
def target():
    server = RedisServer()
    server.client().config_set("requirepass", "secret")
    yield server
    server.stop()


def _seed(client: redis.Redis, prefix: str) -> None:
    client.set(f"{prefix}:s", "v" * 50, ex=1000)
    client.rpush(f"{prefix}:l", *range(300))
    client.hset(f"{prefix}:h", mapping={"a": 1, "b": 2})
    client.zadd(f"{prefix}:z", {"m": 1.5})
    client.sadd(f"{prefix}:set", 1, 2, 3)


def _outcome(client: redis.Redis, *args: object) -> object:
    try:
        return client.execute_command("MIGRATE", *args)
    except redis.ResponseError as err:
        return f"error: {err}"


def test_migrate_as_redis_server_does(kvrepl_source, redis_source, target):
    ours, theirs = kvrepl_source.client(), redis_source.client()
    dest = target.client(password="secret")
    _seed(ours, "k")
    _seed(theirs, "r")
    keys = ["s", "l", "h", "z", "set"]
    dumps = {key: ours.dump(f"k:{key}") for key in keys}
    closed = free_port()

    def both(*args: object) -> object:
        """The same MIGRATE from each source (its own keys); the outcomes must match."""
        def spelled(prefix: str) -> list[object]:
            return [f"{prefix}:{a[2:]}" if isinstance(a, str) and a.startswith("?:") else a
                    for a in args]
        mine, real = _outcome(ours, *spelled("k")), _outcome(theirs, *spelled("r"))
        assert mine == real, args
        return mine

    host, port = "127.0.0.1", target.port
    assert both(host, port, "?:missing", 0, 1000) == b"NOKEY"
    # Redis's non-blocking connect to a closed port fails at the write.
    assert both(host, closed, "?:s", 0, 1000) == (
        "error: IOERR error or timeout writing to target instance")
    assert both(host, port, "?:s", 0, 1000).startswith(
        "error: Target instance replied with error: NOAUTH")
    assert both(host, port, "?:s", 0, 1000, "AUTH", "wrong").startswith(
        "error: Target instance replied with error: WRONGPASS")
    assert both(host, port, "?:s", 0, 1000, "AUTH2", "default", "secret") == b"OK"
    assert both(host, port, "?:l", 0, 1000, "COPY", "AUTH", "secret") == b"OK"
    assert both(host, port, "?:l", 0, 1000, "AUTH", "secret") == (
        "error: Target instance replied with error: BUSYKEY Target key name already exists.")
    assert both(host, port, "?:l", 0, 1000, "REPLACE", "AUTH", "secret") == b"OK"
    assert both(host, port, "?:s", 0, 1000, "KEYS", "?:h") == (
        "error: When using MIGRATE KEYS option, the key argument must be set to the empty "
        "string")
    assert both(host, port, "", 3, 1000, "AUTH", "secret", "KEYS", "?:h", "?:z", "?:nope",
                "?:set") == b"OK"
    assert both(host, port, "", 0, "x", "KEYS", "?:h") == (
        "error: value is not an integer or out of range")
    assert both(host, port, "?:h", 0, 1000, "FOO") == "error: syntax error"

    assert ours.keys("*") == []  # every key moved
    for key in ("s", "l"):
        assert dest.dump(f"k:{key}") == dumps[key]
    assert 0 < dest.pttl("k:s") <= 1000 * 1000
    dest.execute_command("SELECT", 3)
    for key in ("h", "z", "set"):
        assert dest.dump(f"k:{key}") == dumps[key]
        assert dest.dump(f"r:{key}") is not None


def test_migrate_reuses_its_connection_and_propagates_del(kvrepl_source):
    target_node = ThreadedServer().start()
    replica = RedisServer()
    try:
        ours = kvrepl_source.client()
        theirs = replica.client()
        theirs.execute_command("REPLICAOF", "127.0.0.1", kvrepl_source.port)
        poll(lambda: theirs.info("replication")["master_link_status"] == "up", "linked")
        for i in range(3):
            ours.set(f"key{i}", i)
        poll(lambda: theirs.dbsize() == 3, "the replica has the keys")
        dest = target_node.client()
        before = dest.info("stats")["total_connections_received"]
        for i in range(3):
            assert ours.execute_command("MIGRATE", "127.0.0.1", target_node.port, f"key{i}",
                                        0, 1000) == b"OK"
        # One connection for the three, kept in the cache.
        assert dest.info("stats")["total_connections_received"] == before + 1
        assert [dest.get(f"key{i}") for i in range(3)] == [b"0", b"1", b"2"]
        poll(lambda: theirs.dbsize() == 0, "the replica deleted the moved keys")
        assert ours.dbsize() == 0
    finally:
        replica.stop()
        target_node.stop()


def test_migrate_inside_multi_and_scripts_as_redis_server_does(kvrepl_source, redis_source,
                                                               target):
    """Redis runs MIGRATE inside EXEC (and from a script) synchronously, blocking the server:
    the transaction stays atomic, the moved keys are deleted inside it and propagated as DEL
    in the same MULTI/EXEC. kvrepl does the same, on the same cached connection."""
    replica = RedisServer()
    try:
        ours, theirs = (raw_replies(server.client()) for server in (kvrepl_source, redis_source))
        replica.client().execute_command("REPLICAOF", "127.0.0.1", kvrepl_source.port)
        poll(lambda: replica.client().info("replication")["master_link_status"] == "up",
             "the redis-server replica linked")
        dest = target.client(password="secret")
        host, port = "127.0.0.1", target.port
        results = []
        for prefix, client in (("k", ours), ("r", theirs)):
            pipe = client.pipeline(transaction=True)
            pipe.set(f"{prefix}:a", "1")
            pipe.rpush(f"{prefix}:b", "x", "y")
            pipe.execute_command("MIGRATE", host, port, "", 0, 1000, "AUTH", "secret", "KEYS",
                                 f"{prefix}:a", f"{prefix}:b")
            pipe.exists(f"{prefix}:a", f"{prefix}:b")
            pipe.execute_command("MIGRATE", host, port, f"{prefix}:a", 0, 1000, "AUTH",
                                 "secret")
            pipe.set(f"{prefix}:c", "3")
            # No AUTH needed: the cached connection is authenticated already. COPY keeps it.
            pipe.execute_command("MIGRATE", host, port, f"{prefix}:c", 0, 1000, "COPY")
            results.append(plain(pipe.execute(raise_on_error=False)))
            # From a script: one key moved, the reply is MIGRATE's.
            client.set(f"{prefix}:s", "v")
            results.append(client.eval(
                "return redis.call('MIGRATE', ARGV[1], ARGV[2], KEYS[1], 0, 1000, 'AUTH', "
                "'secret')", 1, f"{prefix}:s", host, port))
        assert results[:2] == results[2:], results
        assert results[0][2] == b"OK" and results[0][3] == 0
        assert results[0][4] == b"NOKEY" and results[0][6] == b"OK"
        assert results[1] == b"OK"
        for prefix in "kr":
            assert dest.get(f"{prefix}:a") == b"1"
            assert dest.lrange(f"{prefix}:b", 0, -1) == [b"x", b"y"]
            assert dest.get(f"{prefix}:s") == b"v"
            assert dest.get(f"{prefix}:c") == b"3"
        # The replica of kvrepl deleted what moved, and kept what did not.
        follower = replica.client()
        poll(lambda: follower.get("k:c") == b"3", "the replica has the transaction")
        assert follower.keys("k:*") == [b"k:c"]
        assert ours.keys("*") == [b"k:c"]
    finally:
        replica.stop()
