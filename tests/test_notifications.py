"""Keyspace notifications against a real redis-server 7.0: the same command sequences on
both, and the very same messages on ``__keyspace@*__`` / ``__keyevent@*__`` in the same
order. A sentinel PUBLISH after each sequence marks its end (a subscriber gets messages in
the order they were published), so no test waits on time."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis
from support import (
    DEADLINE,
    Call,
    RawClient,
    RedisServer,
    ThreadedServer,
    outcome,
    pack,
    poll,
    raw_replies,
)

from kvrepl.commands.core import Engine
from kvrepl.config import Config
from kvrepl.notify import format_classes, parse_classes
from kvrepl.protocol.replies import Push
from kvrepl.store import Keyspace

SENTINEL = "notifications-test-end"
Events = list[tuple[bytes, bytes, bytes]]


class Listener:
    """A pattern subscriber to every keyspace channel of one server."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.pubsub = client.pubsub()
        self.pubsub.psubscribe("__key*__:*")
        self.pubsub.subscribe(SENTINEL)
        for _ in range(2):  # the two confirmations
            assert self.pubsub.get_message(timeout=DEADLINE) is not None

    def drain(self) -> Events:
        """Every event published so far, as (type, channel, data)."""
        self.client.publish(SENTINEL, "end")
        events: Events = []
        while True:
            message = self.pubsub.get_message(timeout=DEADLINE)
            assert message is not None, "the sentinel did not arrive"
            if message["channel"] == SENTINEL.encode():
                return events
            events.append((message["type"].encode(), message["channel"], message["data"]))

    def close(self) -> None:
        self.pubsub.close()


Run = Callable[..., Events]


def _configure(clients: tuple[redis.Redis, ...], classes: str) -> None:
    for client in clients:
        client.config_set("notify-keyspace-events", classes)


@pytest.fixture
def both(kvrepl_server: ThreadedServer, redis_server: RedisServer, r: redis.Redis,
         real: redis.Redis) -> Iterator[tuple[redis.Redis, redis.Redis]]:
    """Raw-reply clients on the flushed kvrepl and redis-server; the option is reset after."""
    pair = (raw_replies(kvrepl_server.client()), raw_replies(redis_server.client()))
    yield pair
    _configure(pair, "")
    for client in pair:
        client.close()


@pytest.fixture
def notified(both: tuple[redis.Redis, redis.Redis]) -> Iterator[Callable[..., Run]]:
    """``run = notified("KEA")``: sets the classes on both servers; then ``run(*commands)``
    sends each command (a tuple) to both, asserts equal replies and equal event
    sequences, and returns kvrepl's events."""
    listeners: list[Listener] = []

    def make(classes: str) -> Run:
        _configure(both, classes)
        pair = [Listener(client) for client in both]
        listeners.extend(pair)

        def run(*commands: tuple[object, ...], unordered: bool = False) -> Events:
            for args in commands:
                mine, oracle = (outcome(client, args) for client in both)
                if unordered:  # SPOP and friends: the reply is random
                    mine, oracle = mine[0], oracle[0]
                assert mine == oracle, f"{args}: kvrepl {mine!r} != redis {oracle!r}"
            ours, theirs = (listener.drain() for listener in pair)
            assert ours == theirs, f"{commands}:\nkvrepl {ours}\nredis  {theirs}"
            return ours

        return run

    yield make
    for listener in listeners:
        listener.close()


def ks(key: str, event: str, db: int = 0) -> list[tuple[bytes, bytes, bytes]]:
    """The two messages of one event under ``KE``."""
    return [(b"pmessage", f"__keyspace@{db}__:{key}".encode(), event.encode()),
            (b"pmessage", f"__keyevent@{db}__:{event}".encode(), key.encode())]


# -- the option -----------------------------------------------------------------------------
@pytest.mark.parametrize("classes", [
    "", "KEA", "KEAn", "AKEm", "Kg$lshzxetdnm", "E", "xK", "Em$", "gg", "n", "KA", "AE",
    "Kgx", "Ez", "Ke", "Kt", "Kd", "KEmn", "$lshzxetd", "KEg$lshzxetd",
])
def test_config_get_canonical(both: tuple[redis.Redis, redis.Redis], classes: str) -> None:
    """CONFIG GET answers keyspaceEventsFlagsToString's spelling (A with no n after it)."""
    replies = []
    for client in both:
        client.config_set("notify-keyspace-events", classes)
        replies.append(client.config_get("notify-keyspace-events"))
    assert replies[0] == replies[1]
    assert format_classes(parse_classes(classes)).encode() == \
        replies[0][b"notify-keyspace-events"]


def test_config_set_invalid(both: tuple[redis.Redis, redis.Redis]) -> None:
    for args in (("CONFIG", "SET", "notify-keyspace-events", "KEw"),
                 ("CONFIG", "SET", "notify-keyspace-events", "K E")):
        mine, oracle = (outcome(client, args) for client in both)
        assert mine == oracle


def test_startup_option() -> None:
    assert Config(notify_keyspace_events="KEA").notify_keyspace_events == parse_classes("AKE")


# -- families -------------------------------------------------------------------------------
def test_strings(notified: Callable[..., Run]) -> None:
    run = notified("KEA")
    assert run(("SET", "k", "v")) == ks("k", "set")
    run(("SET", "k", "v2", "EX", "100"), ("SET", "k", "v3", "KEEPTTL"),
        ("SET", "k", "v", "NX"), ("SET", "k", "v4", "XX", "GET"), ("SET", "n", "v", "XX"),
        ("SETNX", "k", "x"), ("SETNX", "k2", "x"), ("SETEX", "k3", "10", "v"),
        ("PSETEX", "k4", "1000", "v"), ("GETSET", "k", "g"), ("GETDEL", "k"),
        ("GETDEL", "k"), ("MSET", "a", "1", "b", "2"), ("MSETNX", "a", "1", "c", "3"),
        ("MSETNX", "c", "1", "d", "3"), ("INCR", "i"), ("DECR", "i"), ("INCRBY", "i", "5"),
        ("DECRBY", "i", "2"), ("INCRBYFLOAT", "f", "1.5"), ("INCR", "a", "b"),
        ("APPEND", "ap", "x"), ("APPEND", "ap", "y"), ("SETRANGE", "sr", "2", "ab"),
        ("SETRANGE", "sr", "0", ""), ("SETRANGE", "none", "0", ""), ("SETRANGE", "sr", "1", "z"),
        ("GETEX", "a", "EX", "100"), ("GETEX", "a", "PERSIST"), ("GETEX", "a", "PERSIST"),
        ("GETEX", "a"), ("GETEX", "a", "PXAT", "1"), ("GET", "missing"), ("STRLEN", "b"))


def test_new_and_keymiss(notified: Callable[..., Run]) -> None:
    run = notified("KEAnm")
    events = run(("SET", "k", "v"), ("SET", "k", "w"), ("GET", "nokey"), ("MGET", "k", "x"))
    assert events[:4] == ks("k", "new") + ks("k", "set")
    run(("MSET", "a", "1", "b", "2"), ("INCR", "c"), ("APPEND", "d", "x"), ("EXISTS", "nx"),
        ("TYPE", "nx"), ("TTL", "nx"), ("OBJECT", "ENCODING", "nx"), ("STRLEN", "nx"),
        ("GETRANGE", "nx", "0", "1"), ("SETRANGE", "e", "1", "x"), ("LCS", "a", "zz"),
        ("GETDEL", "nx"), ("GETEX", "nx"), ("SET", "k", "v", "GET"), ("SET", "q", "v", "GET"))
    # only the classes asked for
    run = notified("Kn")
    assert run(("SET", "x", "1"), ("GET", "y")) == ks("x", "new")[:1]
    run = notified("Em")
    assert run(("SET", "x", "1"), ("GET", "y")) == ks("y", "keymiss")[1:]


def test_plain_lane_closes(notified: Callable[..., Run],
                           both: tuple[redis.Redis, redis.Redis]) -> None:
    """GET/SET/PFADD/PFCOUNT pipelines (what the plain lane runs) fire every event while
    notifications of their classes are on."""
    run = notified("KE$nm")
    for client in both:
        pipe = client.pipeline(transaction=False)
        for i in range(5):
            pipe.set(f"p{i}", "v").get(f"p{i}").get(f"q{i}").pfadd("h", f"e{i}")
            pipe.pfcount("h")
        pipe.execute()
    expected = []
    for i in range(5):
        expected += ks(f"p{i}", "new") + ks(f"p{i}", "set") + ks(f"q{i}", "keymiss")
        expected += (ks("h", "new") if i == 0 else []) + ks("h", "pfadd")
    assert run() == expected


def test_keys(notified: Callable[..., Run], both: tuple[redis.Redis, redis.Redis]) -> None:
    run = notified("KEAn")
    run(("MSET", "a", "1", "b", "2", "c", "3"), ("DEL", "a", "nope", "b"), ("UNLINK", "c"),
        ("SET", "r", "v", "EX", "100"), ("RENAME", "r", "r2"), ("SET", "x", "1"),
        ("RENAME", "x", "r2"), ("RENAME", "r2", "r2"), ("RENAMENX", "r2", "r2"),
        ("SET", "y", "2"), ("RENAMENX", "y", "r2"), ("RENAMENX", "y", "z"),
        ("RENAME", "nokey", "z2"), ("MOVE", "z", "1"), ("SET", "z", "3"), ("MOVE", "z", "1"),
        ("COPY", "r2", "cp"), ("COPY", "r2", "cp"), ("COPY", "r2", "cp", "REPLACE"),
        ("COPY", "r2", "cp", "DB", "2"), ("COPY", "nokey", "cp2"),
        ("EXPIRE", "cp", "100"), ("PEXPIRE", "cp", "200000", "GT"), ("EXPIRE", "cp", "5", "NX"),
        ("EXPIREAT", "cp", "99999999999"), ("PEXPIREAT", "cp", "99999999999999"),
        ("EXPIRE", "nokey", "10"), ("PERSIST", "cp"), ("PERSIST", "cp"),
        ("EXPIRE", "cp", "-1"), ("EXISTS", "cp"), ("SET", "e", "1"), ("PEXPIREAT", "e", "1"),
        ("TOUCH", "r2"), ("TYPE", "r2"), ("DBSIZE",))
    dump = both[0].execute_command("DUMP", "r2")
    run(("RESTORE", "rs", "0", dump), ("RESTORE", "rs", "0", dump),
        ("RESTORE", "rs", "0", dump, "REPLACE"), ("RESTORE", "rs2", "100000", dump),
        ("RESTORE", "rs", "1", dump, "REPLACE", "ABSTTL"),
        ("RESTORE", "rs3", "1", dump, "ABSTTL"))
    run(("RPUSH", "l", "3", "1", "2"), ("SORT", "l", "STORE", "sorted"), ("SORT", "l"),
        ("SORT", "nolist", "STORE", "sorted"), ("SORT", "nolist", "STORE", "sorted"),
        ("SADD", "st", "b", "a"), ("SORT", "st", "ALPHA", "STORE", "s2"),
        ("SORT", "l", "BY", "w_*", "GET", "#", "STORE", "s3"))


def test_flush_and_swapdb_fire_nothing(notified: Callable[..., Run]) -> None:
    run = notified("KEAnm")
    run(("SET", "a", "1"), ("SELECT", "1"), ("SET", "b", "2"))
    assert run(("SWAPDB", "0", "1"), ("FLUSHDB",), ("FLUSHALL",), ("FLUSHALL", "ASYNC")) == []


def test_other_db(notified: Callable[..., Run]) -> None:
    """Events carry the database of the key: the client's, or MOVE/COPY's target."""
    run = notified("KEA")
    events = run(("SELECT", "3"), ("SET", "k", "v"), ("MOVE", "k", "5"), ("SELECT", "5"),
                 ("COPY", "k", "k2", "DB", "7"), ("DEL", "k"), ("SELECT", "0"))
    assert events == (ks("k", "set", 3) + ks("k", "move_from", 3) + ks("k", "move_to", 5)
                      + ks("k2", "copy_to", 7) + ks("k", "del", 5))


def test_lists(notified: Callable[..., Run]) -> None:
    run = notified("KEAn")
    run(("LPUSH", "l", "a", "b"), ("RPUSH", "l", "c"), ("LPUSHX", "nol", "a"),
        ("RPUSHX", "l", "d"), ("LPUSHX", "l", "e"), ("LINSERT", "l", "BEFORE", "a", "x"),
        ("LINSERT", "l", "AFTER", "zz", "x"), ("LINSERT", "nol", "AFTER", "a", "x"),
        ("LSET", "l", "0", "y"), ("LPOP", "l"), ("RPOP", "l"), ("LPOP", "l", "0"),
        ("LPOP", "l", "2"), ("LPOP", "nol"), ("LTRIM", "l", "0", "-1"), ("LTRIM", "nol", "0", "1"),
        ("RPUSH", "t", "1", "2", "3"), ("LTRIM", "t", "5", "10"), ("RPUSH", "r", "a", "b", "a"),
        ("LREM", "r", "0", "z"), ("LREM", "r", "1", "a"), ("LREM", "r", "0", "a"),
        ("LREM", "r", "0", "b"), ("RPUSH", "m", "1", "2"), ("LMOVE", "m", "n", "LEFT", "RIGHT"),
        ("RPOPLPUSH", "m", "n"), ("LMOVE", "n", "n", "LEFT", "LEFT"), ("LMOVE", "x", "n", "LEFT", "LEFT"),
        ("RPUSH", "p", "1", "2", "3"), ("LMPOP", "2", "nol", "p", "LEFT", "COUNT", "2"),
        ("LMPOP", "1", "p", "RIGHT", "COUNT", "5"), ("RPUSH", "q", "1"), ("RPOP", "q", "3"),
        ("RPUSH", "b", "1", "2"), ("BLPOP", "nol", "b", "0"), ("BRPOP", "b", "0"),
        ("RPUSH", "b", "1", "2"), ("BLMPOP", "0", "1", "b", "RIGHT", "COUNT", "5"),
        ("RPUSH", "b", "1"), ("BLMOVE", "b", "c", "RIGHT", "LEFT", "0"),
        ("BRPOPLPUSH", "c", "d", "0"), ("LRANGE", "d", "0", "-1"))


def _blocked_clients(client: redis.Redis) -> int:
    return int(client.execute_command("INFO", "clients").split(b"blocked_clients:")[1]
               .split(b"\r\n")[0])


@pytest.mark.parametrize("blocking", [
    ("BLPOP", "k", "0"), ("BRPOP", "other", "k", "0"),
    ("BLMPOP", "0", "1", "k", "LEFT", "COUNT", "3"),
    ("BLMOVE", "k", "dst", "LEFT", "RIGHT", "0"), ("BRPOPLPUSH", "k", "k", "0"),
])
def test_served_blocked_clients(notified: Callable[..., Run], kvrepl_server: ThreadedServer,
                                redis_server: RedisServer,
                                both: tuple[redis.Redis, redis.Redis],
                                blocking: tuple[str, ...]) -> None:
    """A client blocked on a list, served by another's push: the push's events, then the
    pop's (and push's, for BLMOVE) in the served client's name."""
    run = notified("KEAn")
    calls = []
    for server, client in zip((kvrepl_server, redis_server), both, strict=True):
        calls.append(Call(server, *blocking))
        poll(lambda client=client: _blocked_clients(client) == 1, "the client blocks")
    events = run(("RPUSH", "k", "a", "b"))
    replies = [call.result() for call in calls]
    assert replies[0] == replies[1]
    assert events[:4] == ks("k", "new") + ks("k", "rpush")
    assert len(events) > 4


def test_sets(notified: Callable[..., Run]) -> None:
    run = notified("KEAn")
    run(("SADD", "s", "a", "b", "c"), ("SADD", "s", "a"), ("SREM", "s", "zz"),
        ("SREM", "s", "a"), ("SREM", "nos", "a"), ("SMOVE", "s", "t", "b"),
        ("SMOVE", "s", "t", "zz"), ("SADD", "t", "c"), ("SMOVE", "s", "t", "c"),
        ("SMOVE", "t", "t", "c"), ("SADD", "u", "1", "2", "3"), ("SPOP", "u", "0"),
        ("SPOP", "nos"), ("SPOP", "nos", "2"), ("SADD", "v", "x"), ("SPOP", "v"),
        ("SADD", "w", "1", "2"), ("SPOP", "w", "5"), ("SADD", "a", "1", "2", "3"),
        ("SADD", "b", "2", "3", "4"), ("SINTERSTORE", "d", "a", "b"),
        ("SUNIONSTORE", "d", "a", "b"), ("SDIFFSTORE", "d", "a", "b"),
        ("SDIFFSTORE", "d", "a", "a"), ("SINTERSTORE", "d", "a", "nos"),
        ("SINTERSTORE", "d", "a", "nos"), ("SUNIONSTORE", "e", "nos"), ("SINTERCARD", "2", "a", "b"),
        ("SISMEMBER", "a", "1"), ("SRANDMEMBER", "nos"))
    run(("SADD", "x", "1", "2", "3"), ("SPOP", "x"), ("SPOP", "x", "1"), unordered=True)


def test_hashes(notified: Callable[..., Run]) -> None:
    run = notified("KEAn")
    run(("HSET", "h", "a", "1", "b", "2"), ("HSET", "h", "a", "1"), ("HMSET", "h", "c", "3"),
        ("HSETNX", "h", "a", "x"), ("HSETNX", "h", "d", "4"), ("HSETNX", "h2", "d", "4"),
        ("HDEL", "h", "zz"), ("HDEL", "h", "a", "b"), ("HDEL", "nohash", "a"),
        ("HINCRBY", "h", "n", "5"), ("HINCRBY", "h3", "n", "5"), ("HINCRBY", "h", "c", "x"),
        ("HINCRBYFLOAT", "h", "f", "1.5"), ("HINCRBYFLOAT", "h4", "f", "2"),
        ("HDEL", "h2", "d"), ("HGET", "h", "c"), ("HGETALL", "nohash"))


def test_zsets(notified: Callable[..., Run]) -> None:
    run = notified("KEAn")
    run(("ZADD", "z", "1", "a", "2", "b"), ("ZADD", "z", "1", "a"), ("ZADD", "z", "3", "a"),
        ("ZADD", "z", "XX", "1", "new"), ("ZADD", "noz", "XX", "1", "a"),
        ("ZADD", "z", "NX", "5", "a"), ("ZADD", "z", "GT", "CH", "0", "a"),
        ("ZINCRBY", "z", "2", "a"), ("ZINCRBY", "z2", "2", "a"), ("ZADD", "z", "INCR", "1", "b"),
        ("ZADD", "z", "NX", "INCR", "1", "b"), ("ZREM", "z", "zz"), ("ZREM", "z", "a"),
        ("ZREM", "z2", "a", "b"), ("ZREM", "noz", "a"),
        ("ZADD", "r", "1", "a", "2", "b", "3", "c", "4", "d", "5", "e"),
        ("ZREMRANGEBYRANK", "r", "0", "0"), ("ZREMRANGEBYRANK", "r", "10", "20"),
        ("ZREMRANGEBYSCORE", "r", "2", "2"), ("ZREMRANGEBYLEX", "r", "[c", "[d"),
        ("ZREMRANGEBYSCORE", "r", "-inf", "+inf"),
        ("ZADD", "p", "1", "a", "2", "b", "3", "c"), ("ZPOPMIN", "p"), ("ZPOPMAX", "p", "0"),
        ("ZPOPMAX", "p", "5"), ("ZPOPMIN", "p"), ("ZADD", "p", "1", "a", "2", "b"),
        ("ZMPOP", "2", "noz", "p", "MIN", "COUNT", "1"), ("BZPOPMAX", "p", "0"),
        ("ZADD", "p", "1", "a", "2", "b"), ("BZMPOP", "0", "1", "p", "MAX", "COUNT", "9"),
        ("ZADD", "s1", "1", "a", "2", "b"), ("ZADD", "s2", "3", "b", "4", "c"),
        ("ZUNIONSTORE", "d", "2", "s1", "s2"), ("ZINTERSTORE", "d", "2", "s1", "s2"),
        ("ZDIFFSTORE", "d", "2", "s1", "s2"), ("ZDIFFSTORE", "d", "1", "noz"),
        ("ZDIFFSTORE", "d", "1", "noz"), ("ZRANGESTORE", "d", "s1", "0", "-1"),
        ("ZRANGESTORE", "d", "s1", "5", "9"), ("ZRANGE", "s1", "0", "-1"),
        ("ZINTERCARD", "2", "s1", "s2"), ("ZUNION", "2", "s1", "s2"))


@pytest.mark.parametrize("blocking", [
    ("BZPOPMIN", "z", "0"), ("BZPOPMAX", "other", "z", "0"),
    ("BZMPOP", "0", "1", "z", "MIN", "COUNT", "5"),
])
def test_served_blocked_zset_clients(notified: Callable[..., Run],
                                     kvrepl_server: ThreadedServer, redis_server: RedisServer,
                                     both: tuple[redis.Redis, redis.Redis],
                                     blocking: tuple[str, ...]) -> None:
    run = notified("KEAn")
    calls = []
    for server, client in zip((kvrepl_server, redis_server), both, strict=True):
        calls.append(Call(server, *blocking))
        poll(lambda client=client: _blocked_clients(client) == 1, "the client blocks")
    events = run(("ZADD", "z", "1", "a", "2", "b"))
    replies = [call.result() for call in calls]
    assert replies[0] == replies[1]
    assert len(events) > 4


def test_geo(notified: Callable[..., Run]) -> None:
    run = notified("KEAn")
    run(("GEOADD", "g", "13.361389", "38.115556", "Palermo", "15.087269", "37.502669",
         "Catania"), ("GEOADD", "g", "NX", "13.361389", "38.115556", "Palermo"),
        ("GEOADD", "g", "XX", "CH", "13.5", "38.1", "Palermo"),
        ("GEOSEARCHSTORE", "d", "g", "FROMLONLAT", "15", "37", "BYRADIUS", "200", "km"),
        ("GEOSEARCHSTORE", "d", "g", "FROMLONLAT", "15", "37", "BYRADIUS", "200", "km",
         "STOREDIST"),
        ("GEOSEARCHSTORE", "d", "g", "FROMLONLAT", "0", "0", "BYRADIUS", "1", "km"),
        ("GEOSEARCHSTORE", "d2", "nog", "FROMLONLAT", "0", "0", "BYRADIUS", "1", "km"),
        ("GEORADIUS", "g", "15", "37", "200", "km", "STORE", "r"),
        ("GEORADIUSBYMEMBER", "g", "Palermo", "300", "km", "STOREDIST", "r2"),
        ("GEORADIUS", "nog", "15", "37", "200", "km", "STORE", "r"),
        ("GEOSEARCH", "g", "FROMLONLAT", "15", "37", "BYRADIUS", "200", "km"),
        ("GEODIST", "g", "Palermo", "Catania"), ("GEOPOS", "nog", "x"))


def test_hyperloglog(notified: Callable[..., Run]) -> None:
    run = notified("KEAnm")
    run(("PFADD", "h", "a", "b"), ("PFADD", "h", "a"), ("PFADD", "h"), ("PFADD", "h2"),
        ("PFADD", "h", "c"), ("PFCOUNT", "h"), ("PFCOUNT", "h", "h2", "nohll"),
        ("PFMERGE", "m", "h", "h2"), ("PFMERGE", "m"), ("PFMERGE", "m2", "nohll"),
        ("SET", "s", "x"), ("PFADD", "s", "a"), ("PFCOUNT", "nohll"))


def test_bitmaps(notified: Callable[..., Run]) -> None:
    run = notified("KEAn")
    run(("SETBIT", "b", "7", "1"), ("SETBIT", "b", "7", "1"), ("SETBIT", "b", "100", "0"),
        ("SETBIT", "b", "0", "0"), ("BITOP", "OR", "d", "b", "nokey"),
        ("BITOP", "AND", "d", "nokey", "nokey2"), ("BITOP", "AND", "d", "nokey"),
        ("BITOP", "NOT", "d2", "b"), ("BITFIELD", "f", "SET", "u8", "0", "255"),
        ("BITFIELD", "f", "SET", "u8", "0", "255"), ("BITFIELD", "f", "GET", "u8", "0"),
        ("BITFIELD", "f", "INCRBY", "u2", "0", "1", "OVERFLOW", "FAIL", "INCRBY", "u2", "0",
         "9"), ("BITFIELD", "g", "GET", "u8", "0"), ("BITFIELD_RO", "f", "GET", "u8", "0"),
        ("BITCOUNT", "b"), ("GETBIT", "b", "7"))


def test_streams(notified: Callable[..., Run]) -> None:
    run = notified("KEAn")
    run(("XADD", "s", "1-1", "f", "v"), ("XADD", "s", "2-1", "f", "v"),
        ("XADD", "s", "MAXLEN", "1", "3-1", "f", "v"), ("XADD", "s", "MAXLEN", "5", "4-1", "f",
                                                          "v"),
        ("XADD", "nos", "NOMKSTREAM", "1-1", "f", "v"), ("XTRIM", "s", "MAXLEN", "1"),
        ("XTRIM", "s", "MAXLEN", "1"), ("XDEL", "s", "9-9"), ("XDEL", "s", "4-1"),
        ("XSETID", "s", "10-1"), ("XGROUP", "CREATE", "s", "g", "0"),
        ("XGROUP", "CREATE", "s", "g", "0"), ("XGROUP", "CREATE", "m", "g", "$", "MKSTREAM"),
        ("XGROUP", "SETID", "s", "g", "0"), ("XGROUP", "CREATECONSUMER", "s", "g", "c1"),
        ("XGROUP", "CREATECONSUMER", "s", "g", "c1"), ("XADD", "s", "11-1", "f", "v"),
        ("XREADGROUP", "GROUP", "g", "c2", "STREAMS", "s", ">"),
        ("XCLAIM", "s", "g", "c3", "0", "11-1"),
        ("XAUTOCLAIM", "s", "g", "c4", "0", "0-0"), ("XACK", "s", "g", "11-1"),
        ("XGROUP", "DELCONSUMER", "s", "g", "c1"), ("XGROUP", "DELCONSUMER", "s", "g", "zz"),
        ("XGROUP", "DESTROY", "s", "g"), ("XGROUP", "DESTROY", "s", "g"), ("XLEN", "s"),
        ("DEL", "s"))


def test_stream_lookups_before_argument_errors(notified: Callable[..., Run]) -> None:
    """xautoclaimCommand looks its key up before it reads its arguments: a refused COUNT
    still fires keymiss (kvrepl read the arguments first)."""
    run = notified("KEAm")
    run(("XAUTOCLAIM", "nokey", "g", "c", "0", "0-0", "COUNT", "0"),
        ("XAUTOCLAIM", "nokey", "g", "c", "x", "0-0"),
        ("XAUTOCLAIM", "nokey", "g", "c", "0", "0-0", "FOO"),
        ("XCLAIM", "nokey", "g", "c", "x", "1-1"), ("XACK", "nokey", "g", "x"))


# -- expiry ---------------------------------------------------------------------------------
@pytest.fixture
def expiry_pair(kvrepl_server: ThreadedServer, debug_redis: RedisServer
                ) -> Iterator[tuple[tuple[redis.Redis, redis.Redis], list[Listener]]]:
    """kvrepl and a redis-server with DEBUG, both with every event class on, listened to."""
    pair = (raw_replies(kvrepl_server.client()), raw_replies(debug_redis.client()))
    for client in pair:
        client.flushall()
    _configure(pair, "KEA")
    listeners = [Listener(client) for client in pair]
    yield pair, listeners
    for client in pair:
        client.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "1")
    _configure(pair, "")
    for listener in listeners:
        listener.close()
    for client in pair:
        client.close()


def test_expired_lazily(expiry_pair: tuple[tuple[redis.Redis, redis.Redis], list[Listener]]
                        ) -> None:
    """A key read after its time is deleted by the read: ``expired``, then the read's own
    (missing-key) behaviour."""
    pair, listeners = expiry_pair
    for client in pair:
        client.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "0")
        client.execute_command("SET", "k", "v", "PX", "20")
        client.execute_command("SET", "other", "v")
        poll(lambda client=client: client.execute_command("EXISTS", "k") == 0, "k expires")
    ours, theirs = (listener.drain() for listener in listeners)
    assert ours == theirs == (ks("k", "set") + ks("k", "expire") + ks("other", "set")
                              + ks("k", "expired"))


def test_expired_actively(expiry_pair: tuple[tuple[redis.Redis, redis.Redis], list[Listener]]
                          ) -> None:
    """Active expiry deletes the key with no command touching it."""
    pair, listeners = expiry_pair
    for client in pair:
        client.execute_command("SET", "k", "v", "PX", "20")
    for client in pair:
        poll(lambda client=client: client.execute_command("DBSIZE") == 0,
             "active expiry deletes k")
    ours, theirs = (listener.drain() for listener in listeners)
    assert ours == theirs == ks("k", "set") + ks("k", "expire") + ks("k", "expired")


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_expired_with_a_controlled_clock() -> None:
    """In-process, on a clock the test moves: lazy expiry inside a command fires
    ``expired`` before the command's own events; active expiry fires it with no command."""
    clock = Clock()
    engine = Engine(Config(save=(), notify_keyspace_events="KEA"),
                    Keyspace(16, clock=clock))
    listener, client = engine.new_session(), engine.new_session()
    engine.execute(listener, [b"PSUBSCRIBE", b"__keyspace@0__:*"])
    for args in ([b"SET", b"a", b"1", b"PX", b"100"], [b"SET", b"b", b"1", b"PX", b"100"],
                 [b"RPUSH", b"l", b"x"], [b"PEXPIRE", b"l", b"100"]):
        engine.execute(client, args)
    listener.drained()
    clock.now += 1
    assert engine.execute(client, [b"SET", b"a", b"2"]) is not None
    assert [m[2:] for m in listener.pending_out] == [
        [b"__keyspace@0__:a", b"expired"], [b"__keyspace@0__:a", b"set"]]
    listener.drained()
    assert engine.keyspace.dbs[0].active_expire_cycle() == 2
    assert sorted(m[2:] for m in listener.pending_out) == [
        [b"__keyspace@0__:b", b"expired"], [b"__keyspace@0__:l", b"expired"]]
    assert all(isinstance(m, Push) for m in listener.pending_out)


# -- order against the command's reply -------------------------------------------------------
def test_own_events_come_before_the_reply(kvrepl_server: ThreadedServer,
                                          redis_server: RedisServer,
                                          both: tuple[redis.Redis, redis.Redis]) -> None:
    """Redis publishes during the command: a RESP3 client subscribed to its own key's
    events gets them before the command's reply, in EXEC too. The exact bytes."""
    _configure(both, "KEA")
    clients = [RawClient(server.port, 3) for server in (kvrepl_server, redis_server)]
    batch = [("PSUBSCRIBE", "__key*__:*"), ("SET", "k", "v"), ("GET", "k"), ("MULTI",),
             ("LPUSH", "l", "a"), ("DEL", "k"), ("EXEC",), ("DEL", "l"), ("PUNSUBSCRIBE",)]
    # confirmation; 2 events + OK; GET; MULTI; QUEUED x2; 4 events + EXEC; 2 + 1; 1
    replies = 1 + 3 + 1 + 1 + 2 + 5 + 3 + 1
    try:
        out = []
        for client in clients:
            client.sock.sendall(b"".join(pack(*args) for args in batch))
            out.append(client.read(replies))
        assert out[0] == out[1]
        assert out[0].index(b"__keyevent@0__:set") < out[0].index(b"+OK")
    finally:
        for client in clients:
            client.close()


def _read_until_marker(client: RawClient) -> bytes:
    """Every reply and push up to the reply of ``PING marker`` (sent last)."""
    out = b""
    while True:
        reply = client.read(1)
        if reply == b"$6\r\nmarker\r\n":
            return out
        out += reply


OWN_EVENTS_SEQUENCE = [
    ("SET", "k", "v"), ("SET", "k", "w", "GET"), ("SET", "k2", "w", "GET", "EX", "100"),
    ("GETSET", "k", "x"), ("GETEX", "k", "EX", "100"), ("GETEX", "k", "PERSIST"),
    ("GETDEL", "k"), ("INCR", "i"), ("APPEND", "i", "0"), ("MSET", "a", "1", "b", "2"),
    ("EXPIRE", "a", "100"), ("EXPIRE", "a", "-1"), ("PERSIST", "k2"), ("DEL", "b", "k2"),
    ("LPUSH", "l", "a", "b", "c"), ("RPOP", "l"), ("LPOP", "l", "1"), ("LMOVE", "l", "m",
                                                                        "LEFT", "LEFT"),
    ("RPUSH", "l", "x"), ("BLPOP", "l", "0"), ("LSET", "m", "0", "y"), ("LTRIM", "m", "1", "0"),
    ("HSET", "h", "f", "v"), ("HSETNX", "h", "g", "v"), ("HINCRBY", "h", "n", "1"),
    ("HINCRBYFLOAT", "h", "n", "1"), ("HDEL", "h", "f", "g", "n"),
    ("SADD", "s", "a", "b"), ("SREM", "s", "a"), ("SMOVE", "s", "t", "b"),
    ("SADD", "u", "1"), ("SUNIONSTORE", "d", "t", "u"), ("SINTERSTORE", "d", "t", "u"),
    ("SINTERSTORE", "d", "t", "nokey"), ("SPOP", "t"), ("SPOP", "u", "5"),
    ("ZADD", "z", "1", "a", "2", "b"), ("ZINCRBY", "z", "1", "a"), ("ZREM", "z", "a"),
    ("ZUNIONSTORE", "zd", "1", "z"), ("ZRANGESTORE", "zd", "z", "5", "6"),
    ("ZREMRANGEBYRANK", "z", "0", "-1"), ("PFADD", "p", "a"), ("RENAME", "p", "q"),
    ("RPUSH", "sl", "2", "1"), ("SORT", "sl", "STORE", "sl2"),
    ("SETBIT", "bit", "3", "1"), ("BITOP", "NOT", "bit2", "bit"),
    ("BITFIELD", "bit", "SET", "u4", "0", "3"), ("XADD", "st", "MAXLEN", "1", "1-1", "f", "v"),
    ("XADD", "st", "MAXLEN", "1", "2-1", "f", "v"), ("XTRIM", "st", "MAXLEN", "0"),
    ("XSETID", "st", "5-5"), ("XGROUP", "CREATE", "st", "g", "$"),
    ("XGROUP", "SETID", "st", "g", "0"), ("XGROUP", "CREATECONSUMER", "st", "g", "c"),
    ("XGROUP", "DELCONSUMER", "st", "g", "c"), ("XGROUP", "DESTROY", "st", "g"),
]


def test_own_events_order_per_command(kvrepl_server: ThreadedServer,
                                      redis_server: RedisServer,
                                      both: tuple[redis.Redis, redis.Redis]) -> None:
    """Per command, whether Redis adds the reply before or after it notifies: the bytes a
    RESP3 client subscribed to its own keys' events receives, alone and inside EXEC."""
    _configure(both, "KEAn")
    clients = [RawClient(server.port, 3) for server in (kvrepl_server, redis_server)]
    try:
        for client in clients:
            client.call("PSUBSCRIBE", "__keyspace@0__:*")
        for wrapped in (False, True):
            for args in OWN_EVENTS_SEQUENCE:
                batch = [("MULTI",), args, ("EXEC",)] if wrapped else [args]
                out = []
                for client in clients:
                    client.sock.sendall(b"".join(pack(*command) for command in
                                                 [*batch, ("PING", "marker")]))
                    out.append(_read_until_marker(client))
                assert out[0] == out[1], (wrapped, args)
            for client in clients:
                client.call("FLUSHALL")
    finally:
        for client in clients:
            client.close()


def test_key_evicted_publishes_when_asked() -> None:
    """``Engine.key_evicted`` is what eviction calls for each key it deletes."""
    engine = Engine(Config(save=(), notify_keyspace_events="Ee"))
    listener = engine.new_session()
    engine.execute(listener, [b"SUBSCRIBE", b"__keyevent@2__:evicted"])
    listener.drained()
    engine.key_evicted(engine.keyspace.dbs[2], b"k")
    assert listener.pending_out == [[b"message", b"__keyevent@2__:evicted", b"k"]]
    engine.config.set("notify-keyspace-events", "Eg")
    engine.key_evicted(engine.keyspace.dbs[2], b"k")
    assert len(listener.pending_out) == 1


async def test_a_replica_fires_the_events_of_its_masters_stream() -> None:
    """A replica runs its master's writes as commands: their events fire there too (and
    a key the master expires reaches it as ``del``), plain SET runs included."""
    import kvrepl

    async with kvrepl.Master() as master, kvrepl.Replica(
            follow=master, notify_keyspace_events="KA") as replica:
        await replica.wait_synced()
        listener = replica.engine.new_session()
        replica.engine.execute(listener, [b"PSUBSCRIBE", b"__keyspace@*"])
        listener.drained()
        master.set(b"k", b"v")
        master.execute_command("RPUSH", "l", "a")
        master.execute_command("DEL", "k")
        await replica.wait_synced()
        assert [m[2:] for m in listener.pending_out] == [
            [b"__keyspace@0__:k", b"set"], [b"__keyspace@0__:l", b"rpush"],
            [b"__keyspace@0__:k", b"del"]]
