"""INFO's keyspace_hits / keyspace_misses, command by command, against a real redis-server.

Redis counts the lookups made with lookupKeyRead: those of read-only commands, and of the
writes that read a key first (GETDEL, GETEX, GETSET, SET ... GET, the sources of the *STORE
commands, COPY and SORT); not SCAN's or RANDOMKEY's expiry checks, not the lookups of other
writes (SMOVE, MOVE, RENAME, LMOVE...).
"""

from __future__ import annotations

import pytest

SETUP = [("SET", "s", "v"), ("RPUSH", "l", "a", "b"), ("HSET", "h", "f", "v"),
         ("SADD", "set", "m"), ("ZADD", "z", "1", "m"), ("SET", "n", "5")]

COMMANDS = [
    ("GET", "s"), ("GET", "nope"), ("GET", "l"), ("MGET", "s", "nope", "l"),
    ("EXISTS", "s", "nope"), ("TYPE", "s"), ("TYPE", "nope"), ("TTL", "s"), ("PTTL", "nope"),
    ("STRLEN", "s"), ("GETRANGE", "s", "0", "1"), ("HGET", "h", "f"), ("HGET", "nope", "f"),
    ("HGETALL", "h"), ("HEXISTS", "h", "f"), ("LRANGE", "l", "0", "-1"), ("LLEN", "l"),
    ("LINDEX", "l", "0"), ("SMEMBERS", "set"), ("SISMEMBER", "set", "m"),
    ("SINTER", "set", "nope"), ("ZSCORE", "z", "m"), ("ZRANGE", "z", "0", "-1"),
    ("ZUNION", "2", "z", "nope"), ("SCAN", "0"), ("KEYS", "*"), ("RANDOMKEY",), ("DBSIZE",),
    ("OBJECT", "ENCODING", "s"), ("DUMP", "s"), ("TOUCH", "n", "nope"), ("LCS", "n", "nope"),
    ("SET", "s", "w"), ("INCR", "n"), ("APPEND", "s", "x"), ("LPOP", "l"),
    ("HINCRBY", "h", "c", "1"), ("MSET", "a", "1", "b", "2"), ("SETNX", "a", "3"),
    ("SET", "a", "4", "GET"), ("SET", "nope", "1", "GET"), ("GETSET", "a", "5"),
    ("GETEX", "n"), ("GETEX", "nope", "PERSIST"), ("GETDEL", "s"), ("GETDEL", "nope"),
    ("DEL", "a", "zz"), ("UNLINK", "b"),
    # Writes that read their sources with lookupKeyRead.
    ("SUNIONSTORE", "dst", "set", "nope"), ("SINTERSTORE", "dst", "set", "nope"),
    ("SDIFFSTORE", "dst", "set", "nope"), ("ZUNIONSTORE", "zd", "2", "z", "nope"),
    ("ZINTERSTORE", "zd", "2", "z", "nope"), ("ZDIFFSTORE", "zd", "2", "z", "nope"),
    ("ZRANGESTORE", "zd", "z", "0", "-1"), ("ZRANGESTORE", "zd", "nope", "0", "-1"),
    ("COPY", "h", "h2"), ("COPY", "nope", "h3"), ("SORT", "l", "ALPHA"),
    ("SORT", "l", "ALPHA", "STORE", "sorted"), ("SORT", "l", "BY", "nosort", "GET", "w_*"),
    ("SORT_RO", "l", "ALPHA"), ("SMOVE", "set", "set2", "m"), ("MOVE", "n", "1"),
    ("RENAME", "h2", "h4"), ("LMOVE", "l", "l2", "LEFT", "RIGHT"),
]


def _counts(client) -> tuple[int, int]:
    stats = client.info("stats")
    return stats["keyspace_hits"], stats["keyspace_misses"]


@pytest.fixture
def seeded(r, real):
    for command in SETUP:
        r.execute_command(*command)
        real.execute_command(*command)
    return r, real


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_hits_and_misses_move_as_in_redis(seeded, command):
    moved = []
    for client in seeded:
        before = _counts(client)
        try:
            client.execute_command(*command)
        except Exception:  # noqa: BLE001 - WRONGTYPE counts too; only the numbers matter
            pass
        after = _counts(client)
        moved.append((after[0] - before[0], after[1] - before[1]))
    assert moved[0] == moved[1], f"{command}: kvrepl {moved[0]} != redis {moved[1]}"


def test_pipelined_gets_count_and_resetstat_clears(r):
    r.set("k", "v")
    r.config_resetstat()
    pipe = r.pipeline(transaction=False)
    for key in ("k", "k", "nope"):
        pipe.get(key)
    pipe.execute()
    assert _counts(r) == (2, 1)  # INFO's own lookups count for nothing
    r.config_resetstat()
    assert _counts(r) == (0, 0)


async def test_embedded_reads_count():
    import kvrepl

    async with kvrepl.Master() as master:
        master.set(b"k", b"v")
        assert master.get(b"k") == b"v" and master.get(b"nope") is None
        stats = master.execute_command("INFO", "stats")
        assert b"keyspace_hits:1\r\n" in stats and b"keyspace_misses:1\r\n" in stats
