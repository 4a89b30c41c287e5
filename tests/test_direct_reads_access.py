"""The direct GET's access times, kept apart until observed (``Database.reads`` and
``touched``), against GET through the engine: the same OBJECT IDLETIME / FREQ, DEBUG OBJECT
``lru``, access map, INFO counters and eviction choices across clock ticks, deletions,
re-creations, RESTORE ... IDLETIME, SWAPDB, FLUSHDB and policy switches."""

from __future__ import annotations

import random
import re
from collections.abc import Callable

import kvrepl
from kvrepl.direct_reads import SAMPLE

Read = Callable[[kvrepl.Node, bytes], object]
NOW = 1_700_000_000


def _direct(node: kvrepl.Node, name: bytes) -> object:
    return node.get(name)


def _general(node: kvrepl.Node, name: bytes) -> object:
    return node.execute_command("GET", name)


def _observe(node: kvrepl.Node, lfu: bool = False) -> dict[str, object]:
    """What the access times and counters look like from outside, in dbs 0 and 1."""
    seen: dict[str, object] = {}
    for index in (0, 1):
        node.execute_command("SELECT", index)
        for key in sorted(node.keys()):
            if lfu:
                seen[f"{index}:{key.decode()} freq"] = node.execute_command("OBJECT", "FREQ", key)
            else:
                seen[f"{index}:{key.decode()} idle"] = node.execute_command("OBJECT", "IDLETIME",
                                                                     key)
            line = node.execute_command("DEBUG", "OBJECT", key)
            seen[f"{index}:{key.decode()} lru"] = re.search(r"lru:(\d+)", str(line)).group(1)
    node.execute_command("SELECT", 0)
    info = node.info("all")
    seen.update(hits=info["keyspace_hits"], misses=info["keyspace_misses"],
                calls=info.get("cmdstat_get", {}).get("calls", 0))
    return seen


def _access_maps(node: kvrepl.Node) -> list[dict[bytes, int]]:
    """The raw maps once the pending times are recorded (no entry left for a deleted key)."""
    keyspace = node.engine.keyspace
    keyspace.settle()
    return [dict(keyspace.dbs[i].access) for i in (0, 1)]


def _clock_at_now(keyspace) -> Callable[[int], None]:
    """Stop ``keyspace``'s clock at NOW (its LRU clock too); the function returned moves
    both on by whole seconds."""
    clock = [float(NOW)]
    keyspace.clock = lambda: clock[0]

    def tick(seconds: int) -> None:
        clock[0] += seconds
        keyspace.set_lru_clock(int(clock[0]))

    tick(0)
    return tick


async def _scenario(read: Read) -> list[object]:
    seen: list[object] = []
    async with kvrepl.Master() as node:
        keyspace = node.engine.keyspace
        tick = _clock_at_now(keyspace)
        for name in "abcdefgh":
            node.set(name, "v")
        tick(10)
        for _ in range(3):  # read again in the same second: one pending time each
            for name in (b"a", b"b", b"c"):
                assert read(node, name) == b"v"
        assert read(node, b"missing") is None
        seen.append(_observe(node))  # observed in the second of the reads
        assert read(node, b"d") == b"v"
        node.delete("d")  # read, then deleted: no access time left behind
        assert read(node, b"e") == b"v"
        node.delete("e")
        node.set("e", "new")  # re-created in the same second
        assert read(node, b"f") == b"v"
        dump = node.execute_command("DUMP", "f")
        node.execute_command("RESTORE", "f", 0, dump, "REPLACE", "IDLETIME", 100)
        tick(30)
        seen.append(_observe(node))
        seen.append(_access_maps(node))
        assert read(node, b"g") == b"v"
        node.execute_command("SWAPDB", 0, 1)  # g's pending time moves with its db
        tick(5)
        seen.append(_observe(node))
        node.execute_command("SWAPDB", 0, 1)
        assert read(node, b"h") == b"v"
        node.execute_command("FLUSHDB")  # its read still counted
        seen.append(_observe(node))
        for name in "abc":
            node.set(name, "v")
        tick(7)
        assert read(node, b"a") == b"v"
        node.execute_command("CONFIG", "SET", "maxmemory-policy", "allkeys-lfu")
        assert node.execute_command("GET", "a") == b"v"  # an LFU access: the counter
        tick(1)
        seen.append(_observe(node, lfu=True))
        node.execute_command("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
        seen.append(_access_maps(node))
    return seen


async def test_pending_access_times_are_the_general_paths() -> None:
    direct = await _scenario(_direct)
    general = await _scenario(_general)
    assert direct == general
    # The scenario did what it says.
    first, later, maps = direct[0], direct[1], direct[2]
    assert first["0:a idle"] == 0 and first["0:d idle"] == 10
    assert later["0:a idle"] == 30 and later["0:f idle"] == 130
    assert later["0:e idle"] == 30 and "0:d idle" not in later
    assert b"d" not in maps[0]
    assert direct[3]["1:g idle"] == 5 and direct[3]["1:a idle"] == 35
    assert direct[4]["hits"] > direct[3]["hits"]  # h's read, though its db was flushed
    assert "0:a freq" in direct[5]


async def _evicted(read: Read) -> tuple[list[str], int]:
    """Ten keys, five of them read later (directly or not, pending when maxmemory is set);
    the keys left after eviction makes room for five more (with 64 samples the pool sees
    every key: the idlest go first)."""
    random.seed(99)
    async with kvrepl.Master() as node:
        keyspace = node.engine.keyspace
        clock = [float(NOW)]
        keyspace.clock = lambda: clock[0]
        keyspace.set_lru_clock(NOW)
        names = [f"k{i}" for i in range(10)]
        for name in names:
            node.set(name, "v" * 100)
        clock[0] += 100
        keyspace.set_lru_clock(int(clock[0]))
        for name in names[:5]:  # pending when eviction samples (no tick since)
            assert read(node, name.encode()) == b"v" * 100
        node.execute_command("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
        node.execute_command("CONFIG", "SET", "maxmemory-samples", 64)
        node.execute_command("CONFIG", "SET", "maxmemory", keyspace.used_memory())
        for i in range(5):
            node.set(f"new{i}", "v" * 100)
        left = sorted(key.decode() for key in node.keys())
        return left, node.info("stats")["evicted_keys"]


async def test_eviction_sees_the_pending_access_times() -> None:
    direct = await _evicted(_direct)
    assert direct == await _evicted(_general)
    left, evicted = direct
    assert evicted >= 5
    assert not {f"k{i}" for i in range(5, 10)} & set(left)  # the idlest, unread, first
    assert len({f"k{i}" for i in range(5)} & set(left)) == 10 - evicted


async def test_pending_reads_are_bounded_and_counted() -> None:
    """The hits' keys wait in ``reads`` for at most SAMPLE hits (each database's SAMPLE-th
    hit drains it), and every one is counted whether drained or not."""
    async with kvrepl.Master() as node:
        node.set("k", "v")
        node.execute_command("SELECT", 1)
        node.set("k1", "v")
        node.execute_command("SELECT", 0)
        other = node.redis()
        other.execute_command("SELECT", 1)
        node.execute_command("CONFIG", "RESETSTAT")
        dbs = node.engine.keyspace.dbs
        for i in range(10 * SAMPLE):
            assert node.get(b"k") == b"v"
            if i % 3 == 0:
                assert other.get(b"k1") == b"v"
            assert len(dbs[0].reads) <= SAMPLE and len(dbs[1].reads) <= SAMPLE
        hits = 10 * SAMPLE + len(range(0, 10 * SAMPLE, 3))
        assert node.engine.direct_tally.count_gets() == hits
        info = node.info("all")
        assert (info["keyspace_hits"], info["cmdstat_get"]["calls"]) == (hits, hits)
        assert dbs[0].touched == {b"k"} and dbs[1].touched == {b"k1"}


async def test_each_database_keeps_its_reads_across_swapdb() -> None:
    """A hit's key waits in its own Database's ``reads`` (``Database.record`` appends
    there): SWAPDB counts and moves the pending ones with the keys they read, and the lists
    stay each database's, so hits after the swap are recorded where their keys now are.
    Hits on a key with a TTL not due and on a string edited in place (read outside the hot
    path) are counted, recorded and timed alike."""
    async with kvrepl.Master() as node:
        keyspace = node.engine.keyspace
        tick = _clock_at_now(keyspace)
        node.set("a", "v")
        node.set("t", "v", ex=10_000)
        node.set("g", "ab")
        node.append("g", "cd")  # a bytearray in the store
        node.execute_command("SELECT", 1)
        node.set("b", "v")
        node.execute_command("SELECT", 0)
        node.execute_command("CONFIG", "RESETSTAT")
        dbs = keyspace.dbs
        lists = [db.reads for db in dbs]
        tick(10)
        for _ in range(SAMPLE // 2):  # pending in db 0, none timed yet
            assert node.get(b"a") == b"v"
        assert len(dbs[0].reads) == SAMPLE // 2
        node.execute_command("SWAPDB", 0, 1)
        assert [db.reads for db in dbs] == lists and all(a is b for a, b in zip(
            (db.reads for db in dbs), lists, strict=True))
        assert node.engine.direct_tally.count_gets() == SAMPLE // 2
        tick(10)
        for _ in range(3 * SAMPLE):  # db 0 holds b now
            assert node.get(b"b") == b"v"
            assert len(dbs[0].reads) <= SAMPLE
        node.execute_command("SELECT", 1)
        for _ in range(2 * SAMPLE):
            assert node.get(b"t") == b"v"
            assert node.get(b"g") == b"abcd"
            assert len(dbs[1].reads) <= SAMPLE
        tick(5)
        info = node.info("all")
        calls = SAMPLE // 2 + 3 * SAMPLE + 4 * SAMPLE
        assert (info["cmdstat_get"]["calls"], info["keyspace_hits"]) == (calls, calls)
        assert info["keyspace_misses"] == 0 and info["cmdstat_get"]["usec"] > 0
        idle = {key: node.execute_command("OBJECT", "IDLETIME", key) for key in "atg"}
        node.execute_command("SELECT", 0)
        idle["b"] = node.execute_command("OBJECT", "IDLETIME", "b")
        # a: read before the swap (10 s after its creation), 15 s ago; b, t, g: 5 s ago
        assert idle == {"a": 15, "b": 5, "t": 5, "g": 5}
