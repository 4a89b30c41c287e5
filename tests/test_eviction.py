"""maxmemory and the eight maxmemory-policy values (Redis 7.0's evict.c).

Memory is kvrepl's estimate of the dataset (kvrepl.store.memory): these tests check that the
estimate kept incrementally equals a measurement from scratch after every kind of write, that
it is close to what tracemalloc sees, that eviction keeps the dataset near the limit under
each policy, that LRU and LFU keep a hot set, that evictions reach replicas as DEL, and that
the replies and settings a client sees match a real redis-server 7.0.
"""

from __future__ import annotations

import random
import sys
import tracemalloc

import pytest
import redis
import trio
from support import RedisServer, argv, comparer

import kvrepl
from kvrepl.commands.core import Engine
from kvrepl.commands.eviction import OOM
from kvrepl.config import Config
from kvrepl.errors import ReplyError
from kvrepl.protocol.replies import NULL_ARRAY
from kvrepl.store import Keyspace
from kvrepl.store.digest import digest
from kvrepl.store.memory import key_memory_usage

EVICTING = ("allkeys-lru", "allkeys-lfu", "allkeys-random",
            "volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl")
NOW = 1_700_000_000.0


def make_engine(**options: object) -> tuple[Engine, list[float]]:
    """An engine on a clock the test moves (no cron: the LRU clock moves when told)."""
    now = [NOW]
    keyspace = Keyspace(clock=lambda: now[0])
    return Engine(Config(save=(), **options), keyspace), now


def runner(engine: Engine):
    session = engine.new_session()

    def run(*args: object) -> object:
        reply = engine.execute(session, argv(*args))
        if isinstance(reply, ReplyError):
            raise reply
        return reply

    return run


def measured_from_scratch(keyspace: Keyspace) -> int:
    """What the estimate is for the keyspace as it is now, computed key by key."""
    total = 0
    for db in keyspace.dbs:
        for key, value in db.data.items():
            total += key_memory_usage(key, value, key in db.expires)
    return total


# -- the estimate ------------------------------------------------------------------------------

WRITES = [
    ("SET", "s", "hello"), ("APPEND", "s", "x" * 50), ("SETRANGE", "s", 200, "y"),
    ("INCR", "n"), ("INCRBYFLOAT", "f", "1.5"), ("MSET", "a", "1", "b", "22"),
    ("SET", "s", "short", "EX", 100), ("PERSIST", "s"), ("EXPIRE", "a", 100),
    ("RPUSH", "l", *range(40)), ("LPOP", "l", 3), ("LSET", "l", 0, "z" * 100),
    ("LTRIM", "l", 0, 9), ("LMOVE", "l", "l2", "LEFT", "RIGHT"),
    ("HSET", "h", *[x for i in range(30) for x in (f"f{i}", "v" * i)]), ("HDEL", "h", "f3"),
    ("HINCRBY", "h", "count", 5), ("SADD", "st", *range(50)), ("SREM", "st", 1, 2),
    ("SADD", "st2", "a", "b", "c"), ("SUNIONSTORE", "st3", "st", "st2"), ("SPOP", "st2"),
    ("SMOVE", "st", "st2", 10), ("ZADD", "z", *[x for i in range(30) for x in (i, f"m{i}")]),
    ("ZRANGE", "z", 0, 5), ("ZINCRBY", "z", 2, "m1"), ("ZPOPMIN", "z", 2),
    ("ZUNIONSTORE", "z2", 1, "z"), ("SET", "l", "now a string"), ("RENAME", "h", "h2"),
    ("COPY", "z", "zc"), ("MOVE", "zc", 1), ("SWAPDB", 0, 1), ("SWAPDB", 0, 1),
    # strings changed in place (kept as a bytearray), bitmaps, HyperLogLogs, geo
    ("APPEND", "s2", "abc"), ("APPEND", "s2", "x" * 100), ("SETRANGE", "s2", 300, "z"),
    ("SETBIT", "bits", 1000, 1), ("SETBIT", "bits", 5000, 1),
    ("BITFIELD", "bits", "SET", "u8", 8000, 255), ("BITOP", "OR", "bits2", "bits", "s2"),
    # SETBIT/BITFIELD keep their own estimate: a new key, a plain string made mutable, growth
    ("SETBIT", "b3", 7, 1), ("SET", "b4", "abc"), ("SETBIT", "b4", 3, 1),
    ("SETBIT", "b4", 9000, 1), ("BITFIELD", "b4", "INCRBY", "u16", 100000, 7),
    ("BITFIELD", "b5", "GET", "u8", 0), ("BITFIELD", "b5", "SET", "i5", 3, 1),
    ("PFADD", "hll", *"abcdefg"), ("PFADD", "hll2", "x"), ("PFMERGE", "hll3", "hll", "hll2"),
    ("PFDEBUG", "TODENSE", "hll2"), ("PFADD", "hll2", *"hijklmn"),
    ("PFCOUNT", "hll", "hll2"), ("GEOADD", "geo", 13.36, 38.11, "Palermo"),
    ("SET", "bits", "plain again"), ("SWAPDB", 0, 2), ("SWAPDB", 2, 0),
    ("XADD", "x", "1-1", "f", "v"), ("XADD", "x", "2-1", "f", "v" * 50, "g", "w"),
    ("XGROUP", "CREATE", "x", "grp", "0"),
    ("XREADGROUP", "GROUP", "grp", "c", "STREAMS", "x", ">"), ("XACK", "x", "grp", "1-1"),
    ("XDEL", "x", "1-1"), ("XTRIM", "x", "MAXLEN", 0),
    ("GETDEL", "a"), ("DEL", "b", "st"), ("LPOP", "l2", 100), ("FLUSHDB",),
]


def test_incremental_estimate_equals_measurement_after_every_write():
    engine, _ = make_engine()
    run = runner(engine)
    for command in WRITES:
        run(*command)
        assert engine.keyspace.used_memory() == measured_from_scratch(engine.keyspace), command
    dbs = engine.keyspace.dbs
    assert dbs[0].used == 0 and dbs[1].used > 0  # FLUSHDB of db 0; db 1 still holds zc
    for i in range(5000):  # more containers changed than the store holds unmeasured
        run("HSET", f"h{i}", "f", "v" * (i % 50))
    assert engine.keyspace.used_memory() == measured_from_scratch(engine.keyspace)
    run("FLUSHALL")
    assert engine.keyspace.used_memory() == 0


def test_plain_lane_and_embedded_writes_keep_the_estimate():
    async def main() -> None:
        async with kvrepl.Master() as master:
            keyspace = master.engine.keyspace
            for i in range(100):
                master.set(f"k{i}", "v" * i)  # the plain lane
            master.set("k1", "replaced")
            master.set("k2", "x", ex=100)
            with pytest.raises(ReplyError, match="^WRONGTYPE"):
                master.rpush("k3", "a")  # nothing changes
            master.delete("k4")
            assert keyspace.used_memory() == measured_from_scratch(keyspace)

    trio.run(main)


def _traced_per_key(make_value, count: int) -> tuple[float, float]:
    """tracemalloc's bytes per key for ``count`` keys written through the store, and the
    estimate's, the keys and values allocated inside the traced window."""
    keyspace = Keyspace()
    db = keyspace.dbs[0]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(count):
            db.add(b"key:%08d" % i, make_value(i))
        traced = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return traced / count, keyspace.used_memory() / count


def _with_order(zset):
    """A sorted set whose order index is built (the estimate always counts it)."""
    assert zset.ordered is not None
    return zset


@pytest.mark.parametrize("kind", ["string", "hash", "list", "set", "zset"])
def test_estimate_tracks_tracemalloc(kind):
    from collections import deque

    from kvrepl.store.values import ZSet

    makers = {
        "string": lambda i: b"v" * (50 + i % 100),
        "hash": lambda i: {b"field%d" % j: b"value" * (j % 5) for j in range(20)},
        "list": lambda i: deque(b"element%d" % j for j in range(30)),
        "set": lambda i: {b"member%d" % j for j in range(25)},
        "zset": lambda i: _with_order(ZSet({b"m%d" % j: float(j) for j in range(20)})),
    }
    traced, estimated = _traced_per_key(makers[kind], 3000)
    assert 0.7 < estimated / traced < 1.3, (kind, traced, estimated)


def test_stream_estimate_tracks_tracemalloc():
    engine, _ = make_engine()
    run = runner(engine)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(20):
            for j in range(100):
                run("XADD", f"stream:{i}", "*", "field", f"value{j}", "other", "v" * 20)
            run("XGROUP", "CREATE", f"stream:{i}", "group", "0")
            run("XREADGROUP", "GROUP", "group", "c", "COUNT", 50, "STREAMS", f"stream:{i}", ">")
        traced = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert 0.7 < engine.keyspace.used_memory() / traced < 1.3


# -- eviction under each policy ---------------------------------------------------------------

@pytest.mark.parametrize("policy", EVICTING)
def test_writes_evict_and_the_dataset_stays_near_the_limit(policy):
    random.seed(99)
    limit = 100_000
    engine, _ = make_engine(maxmemory=limit, maxmemory_policy=policy)
    run = runner(engine)
    keyspace = engine.keyspace
    value = "x" * 200
    largest = key_memory_usage(b"key:00000", value.encode(), True)
    for i in range(2000):
        run("SET", f"key:{i:05d}", value, "EX", 1000 + i)
        assert keyspace.used_memory() <= limit + largest
    assert engine.stats.evicted_keys > 1000
    assert limit - 2 * largest <= keyspace.used_memory() <= limit + largest
    info = run("INFO", "stats").decode()
    assert f"evicted_keys:{engine.stats.evicted_keys}\r\n" in info
    if policy == "volatile-ttl":
        # The keys expiring soonest went first: the survivors are the latest written.
        survivors = sorted(keyspace.dbs[0].data)
        assert survivors[0] >= b"key:01500"


@pytest.mark.parametrize("policy", ["allkeys-lru", "allkeys-random", "volatile-lfu"])
def test_containers_in_several_databases_are_evicted_too(policy):
    random.seed(3)
    limit = 80_000
    engine, _ = make_engine(maxmemory=limit, maxmemory_policy=policy)
    run = runner(engine)
    keyspace = engine.keyspace
    for i in range(600):
        run("SELECT", i % 3)
        key = f"c{i}"
        kind = i % 4
        if kind == 0:
            run("RPUSH", key, *range(20))
        elif kind == 1:
            run("HSET", key, *[x for j in range(10) for x in (f"f{j}", "v" * 10)])
        elif kind == 2:
            run("SADD", key, *range(15))
        else:
            run("ZADD", key, *[x for j in range(10) for x in (j, f"m{j}")])
        run("EXPIRE", key, 1000)
        run("RPUSH", "growing", i)  # one list that grows in place, never evicted for long
        assert keyspace.used_memory() <= limit + 3000
    assert engine.stats.evicted_keys > 100
    assert all(len(keyspace.dbs[i]) for i in range(3))  # survivors in every database
    assert keyspace.used_memory() == measured_from_scratch(keyspace)


@pytest.mark.parametrize("policy", [p for p in EVICTING if p.startswith("volatile")])
def test_volatile_policies_evict_only_keys_with_a_ttl_then_refuse(policy):
    random.seed(5)
    engine, _ = make_engine(maxmemory=60_000, maxmemory_policy=policy)
    run = runner(engine)
    for i in range(100):
        run("SET", f"keep:{i}", "p" * 200)
    for i in range(300):
        run("SET", f"temp:{i}", "t" * 200, "EX", 1000)
    data = engine.keyspace.dbs[0].data
    assert all(f"keep:{i}".encode() in data for i in range(100))
    with pytest.raises(ReplyError, match="^OOM "):
        for i in range(300):
            run("SET", f"more:{i}", "p" * 200)
    assert not engine.keyspace.dbs[0].expires  # every key with a TTL was evicted first
    assert all(f"keep:{i}".encode() in data for i in range(100))


def test_noeviction_refuses_denyoom_commands_and_lets_reads_and_del_through():
    engine, _ = make_engine(maxmemory=20_000)
    run = runner(engine)
    with pytest.raises(ReplyError) as refused:
        for i in range(200):
            run("SET", f"k{i}", "v" * 100)
    assert str(refused.value) == OOM
    count = run("DBSIZE")
    assert run("GET", "k0") == b"v" * 100
    with pytest.raises(ReplyError, match="^OOM "):
        run("RPUSH", "list", "a")
    assert run("EXPIRE", "k0", 100) == 1  # a write without denyoom
    assert run("DEL", *[f"k{i}" for i in range(20)]) == 20
    run("SET", "k0", "fits again")
    assert run("DBSIZE") == count - 19
    assert engine.stats.evicted_keys == 0


def test_config_set_maxmemory_evicts_at_once_and_tenacity_hands_over_to_cron():
    async def main() -> None:
        async with kvrepl.Master(maxmemory_policy="allkeys-random",
                                 maxmemory_eviction_tenacity=0) as master:
            for i in range(3000):
                master.set(f"k{i}", "v" * 100)
            keyspace = master.engine.keyspace
            limit = keyspace.used_memory() // 4
            master.execute_command("CONFIG", "SET", "maxmemory", limit)
            # Tenacity 0: no time for more than one batch of 16 in the command ...
            assert master.engine.stats.evicted_keys == 16
            assert master.engine.evictor.running
            # ... the cron goes on until the dataset fits.
            with trio.fail_after(10):
                while master.engine.evictor.running:
                    await trio.sleep(0.01)
            assert keyspace.used_memory() <= limit

    trio.run(main)


def test_config_set_of_maxmemory_and_policy_together_evicts_under_the_new_policy():
    engine, _ = make_engine()
    run = runner(engine)
    for i in range(200):
        run("SET", f"k{i}", "v" * 100)
    # Tenacity 100: no time limit, so that no cron (this engine has none) must finish.
    run("CONFIG", "SET", "maxmemory", 20_000, "maxmemory-policy", "allkeys-random",
        "maxmemory-eviction-tenacity", 100)
    assert engine.stats.evicted_keys > 100
    assert engine.keyspace.used_memory() <= 20_000


def test_an_evicted_watched_key_fails_exec():
    engine, _ = make_engine(maxmemory=30_000, maxmemory_policy="volatile-ttl")
    watcher, writer = runner(engine), runner(engine)
    watcher("SET", "watched", "v", "PX", 1000)  # expires first: the first to go
    watcher("WATCH", "watched")
    for i in range(200):
        writer("SET", f"k{i}", "v" * 100, "EX", 100_000)
    assert engine.keyspace.dbs[0].find(b"watched") is None and engine.stats.evicted_keys
    watcher("MULTI")
    watcher("SET", "other", "x")
    assert watcher("EXEC") is NULL_ARRAY


# -- LRU and LFU keep what is used ------------------------------------------------------------

def _hot_survivors(policy: str, touch) -> tuple[float, float]:
    """Write 100 hot and 400 cold keys, ``touch`` the hot ones, write 500 more keys with
    maxmemory set to about 500 keys' worth; the fraction of hot and cold keys that survive."""
    random.seed(1234)
    engine, now = make_engine(maxmemory_policy=policy)
    run = runner(engine)
    hot = [f"hot:{i}" for i in range(100)]
    cold = [f"cold:{i}" for i in range(400)]
    for key in cold + hot:
        run("SET", key, "v" * 100)
    run("CONFIG", "SET", "maxmemory", engine.keyspace.used_memory())
    now[0] += 600  # ten minutes later
    engine.keyspace.set_lru_clock(int(now[0]))
    touch(run, hot)
    now[0] += 60
    engine.keyspace.set_lru_clock(int(now[0]))
    for i in range(300):
        run("SET", f"new:{i}", "v" * 100)
    data = engine.keyspace.dbs[0].data
    assert engine.stats.evicted_keys >= 290
    return (sum(k.encode() in data for k in hot) / len(hot),
            sum(k.encode() in data for k in cold) / len(cold))


def test_lru_evicts_mostly_cold_keys():
    def touch(run, keys):
        for key in keys:
            run("GET", key)

    hot, cold = _hot_survivors("allkeys-lru", touch)
    assert hot >= 0.9 and cold <= 0.5, (hot, cold)


def test_lfu_evicts_mostly_rarely_used_keys():
    def touch(run, keys):
        for _ in range(30):
            for key in keys:
                run("GET", key)

    hot, cold = _hot_survivors("allkeys-lfu", touch)
    assert hot >= 0.9 and cold <= 0.5, (hot, cold)


def test_lfu_counter_log_factor_and_decay():
    random.seed(7)
    engine, now = make_engine(maxmemory_policy="allkeys-lfu", lfu_log_factor=0)
    run = runner(engine)
    run("SET", "k", "v")
    assert run("OBJECT", "FREQ", "k") == 5  # LFU_INIT_VAL
    for _ in range(20):
        run("GET", "k")
    assert run("OBJECT", "FREQ", "k") == 25  # factor 0: every access counts
    now[0] += 3 * 60
    engine.keyspace.set_lru_clock(int(now[0]))
    assert run("OBJECT", "FREQ", "k") == 22  # one less per lfu-decay-time minute
    run("CONFIG", "SET", "lfu-decay-time", "0")
    assert run("OBJECT", "FREQ", "k") == 25
    run("CONFIG", "SET", "lfu-log-factor", "100")
    for _ in range(50):
        run("GET", "k")
    assert run("OBJECT", "FREQ", "k") <= 27  # p = 1 / (20 * 100 + 1) per access


# -- replication -----------------------------------------------------------------------------

async def test_evictions_reach_replicas_as_del_and_replicas_do_not_evict():
    async with kvrepl.Master(port=0, maxmemory=150_000,
                             maxmemory_policy="allkeys-lru") as master:
        # Set lower than the master's: a replica that evicted on its own would diverge.
        async with kvrepl.Replica(follow=master, maxmemory=50_000,
                                  maxmemory_policy="allkeys-lru") as replica:
            redis_replica = RedisServer("--replicaof", "127.0.0.1", str(master.port),
                                        "--enable-debug-command", "yes")
            try:
                client = redis_replica.client()
                await replica.wait_synced()
                changes = master.changes()
                for i in range(2000):
                    master.set(f"k{i}", "v" * 100)
                evicted = master.engine.stats.evicted_keys
                assert evicted > 500
                # Every write went to the stream when it happened: 2000 SETs and the DELs.
                seen: dict[bytes, int] = {}
                with trio.fail_after(20):  # a bound: the replicas' syncs share this loop
                    for _ in range(2000 + evicted):
                        change = await changes.__anext__()
                        seen[change.command] = seen.get(change.command, 0) + 1
                assert seen == {b"SET": 2000, b"DEL": evicted}
                await replica.wait_synced()
                assert digest(replica.engine.keyspace) == digest(master.engine.keyspace)
                assert replica.engine.stats.evicted_keys == 0
                # What the full sync loaded and the stream changed is measured too.
                used = replica.engine.keyspace.used_memory()
                assert used == measured_from_scratch(replica.engine.keyspace) > 50_000
                offset = master.replication.master_repl_offset

                def caught_up() -> bool:
                    try:
                        info = client.info("replication")
                    except redis.ConnectionError:
                        return False
                    return info.get("master_link_status") == "up" and \
                        info["slave_repl_offset"] >= offset

                with trio.fail_after(20):
                    while not await trio.to_thread.run_sync(caught_up):
                        await trio.sleep(0.05)
                theirs = await trio.to_thread.run_sync(
                    lambda: client.execute_command("DEBUG", "DIGEST"))
                assert theirs == digest(master.engine.keyspace)
                assert await trio.to_thread.run_sync(client.dbsize) == master.dbsize()
            finally:
                redis_replica.stop()


async def test_a_replica_told_not_to_ignore_maxmemory_evicts_on_its_own():
    async with kvrepl.Master() as master:
        for i in range(500):
            master.set(f"k{i}", "v" * 100)
        async with kvrepl.Replica(follow=master, maxmemory=50_000,
                                  maxmemory_policy="allkeys-random",
                                  replica_ignore_maxmemory=False) as replica:
            await replica.wait_synced()
            # Any command, the master's included, runs after an eviction pass.
            assert replica.dbsize() < 500
            assert replica.engine.stats.evicted_keys > 0
            with trio.fail_after(10):  # a pass has a time limit; the cron finishes the work
                while replica.engine.evictor.running:
                    await trio.sleep(0.01)
            assert replica.engine.keyspace.used_memory() <= 50_000
            master.set("one-more", "v")
            await replica.wait_synced()
            assert replica.get("one-more") == b"v"


def test_debug_reload_and_resetstat(tmp_path):
    engine, _ = make_engine(dir=str(tmp_path), maxmemory=30_000,
                            maxmemory_policy="allkeys-lru", enable_debug_command="local")
    run = runner(engine)
    run("RPUSH", "list", *range(100))
    run("HSET", "hash", *[x for i in range(50) for x in (f"f{i}", i)])
    for i in range(200):
        run("SET", f"k{i}", "v" * 100, "PX", 10_000_000)
    before = engine.keyspace.used_memory()
    assert before <= 30_000 + key_memory_usage(b"k199", b"v" * 100, True)
    assert engine.stats.evicted_keys > 0
    run("DEBUG", "RELOAD")
    assert engine.keyspace.used_memory() == measured_from_scratch(engine.keyspace)
    run("CONFIG", "RESETSTAT")
    assert engine.stats.evicted_keys == 0


# -- what a client sees, compared with redis-server 7.0 ----------------------------------------

@pytest.fixture
def both(kvrepl_server):
    """A kvrepl server and a real redis-server, same settings; reset after the test."""
    real = RedisServer("--enable-debug-command", "yes")
    ours, theirs = kvrepl_server.client(), real.client()
    ours.flushall()
    try:
        yield ours, theirs, comparer(ours, theirs)
    finally:
        ours.config_set("maxmemory", 0)
        ours.config_set("maxmemory-policy", "noeviction")
        ours.flushall()
        ours.close()
        theirs.close()
        real.stop()


def test_config_matches_redis(both):
    ours, theirs, same = both
    for name in ("maxmemory", "maxmemory-policy", "maxmemory-samples",
                 "maxmemory-eviction-tenacity", "replica-ignore-maxmemory",
                 "slave-ignore-maxmemory", "lfu-log-factor", "lfu-decay-time"):
        same("CONFIG", "GET", name)
    for name, value in (("maxmemory-samples", "0"), ("maxmemory-eviction-tenacity", "101"),
                        ("maxmemory-policy", "lru"), ("lfu-log-factor", "-1"),
                        ("maxmemory", "lots"), ("maxmemory-samples", "10"),
                        ("maxmemory-eviction-tenacity", "50"),
                        ("replica-ignore-maxmemory", "no"), ("maxmemory-policy", "VOLATILE-TTL")):
        same("CONFIG", "SET", name, value)
        same("CONFIG", "GET", name)
    for name, value in (("maxmemory-samples", "5"), ("maxmemory-eviction-tenacity", "10"),
                        ("replica-ignore-maxmemory", "yes"),
                        ("maxmemory-policy", "noeviction")):
        same("CONFIG", "SET", name, value)


def test_oom_replies_match_redis(both):
    ours, theirs, same = both
    same("SET", "k", "v")
    same("RPUSH", "list", "a", "b")
    for client in (ours, theirs):
        client.config_set("maxmemory", 1)  # below anything: every denyoom command refused
    same("SET", "k2", "v")
    same("RPUSH", "list", "c")
    same("GET", "k")
    same("LRANGE", "list", 0, -1)
    same("EXPIRE", "k", 100)
    # In MULTI everything is refused but EXEC/DISCARD, which then aborts.
    same("MULTI")
    same("GET", "k")
    same("EXEC")
    same("MULTI")
    same("DISCARD")
    # EXEC refused for a queued denyoom command aborts the transaction (execCommandAbort).
    # CONFIG SET from other connections: on this one it would be queued.
    admins = [redis.Redis(port=client.connection_pool.connection_kwargs["port"])
              for client in (ours, theirs)]
    for admin in admins:
        admin.config_set("maxmemory", 0)
    same("MULTI")
    same("SET", "k3", "v")
    for admin in admins:
        admin.config_set("maxmemory", 1)
        admin.close()
    assert same("EXEC").startswith("Transaction discarded because of: OOM ")  # EXECABORT
    same("EXEC")  # no transaction any more
    same("GET", "k3")
    same("DEL", "k")
    assert ours.info("memory")["maxmemory"] == theirs.info("memory")["maxmemory"] == 1
    assert ours.info("memory")["maxmemory_human"] == theirs.info("memory")["maxmemory_human"]
    assert ours.info("memory")["maxmemory_policy"] == "noeviction"
    assert ours.info("stats")["evicted_keys"] == 0


def test_object_freq_and_idletime_errors_match_redis(both):
    ours, theirs, same = both
    same("SET", "k", "v")
    same("OBJECT", "FREQ", "k")  # not LFU: an error
    for client in (ours, theirs):
        client.config_set("maxmemory-policy", "allkeys-lfu")
    same("SET", "fresh", "v")
    same("OBJECT", "FREQ", "fresh")
    same("OBJECT", "FREQ", "missing")
    same("OBJECT", "IDLETIME", "fresh")  # LFU: an error


def test_info_memory_tracks_the_dataset(r):
    info = r.info("memory")
    assert info["used_memory"] == info["used_memory_dataset"] == 0
    r.set("k", "v" * 1000)
    info = r.info("memory")
    assert info["used_memory"] == info["used_memory_dataset"] == key_memory_usage(b"k",
                                                                                   b"v" * 1000)
    assert info["used_memory_peak"] >= info["used_memory"]
    assert info["used_memory_rss"] > 1_000_000  # the process, interpreter included
    r.delete("k")
    assert r.info("memory")["used_memory"] == 0
    assert sys.getsizeof(b"") == 33  # the constants of kvrepl.store.memory assume CPython 64-bit
