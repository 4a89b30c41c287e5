"""Redis's fast expiry cycle (expire.c activeExpireCycle(ACTIVE_EXPIRE_CYCLE_FAST), run by
beforeSleep): kvrepl runs it where its reactor is about to wait for the next ready
client, after a cycle cut by its time limit."""

from __future__ import annotations

import time

import pytest
from support import RawClient, RedisServer, ThreadedServer, clock_of_looks, pack

from kvrepl.commands.core import Engine
from kvrepl.config import Config
from kvrepl.server import cron
from kvrepl.store import database

KEYS = 100_000
HZ = 10


def _expire_at_the_pace_of_fast_cycles(client: object) -> dict[str, int]:
    """Load KEYS keys already expired (active expiry off meanwhile), turn active expiry
    on, and send a steady trickle of DBSIZE until none is left. Returns what INFO showed:
    the keys expired, the cycles cut by their time limit, and the server's own clock
    over the trickle (microseconds)."""
    client.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "0")
    # The SETs as raw RESP, 10,000 a batch: redis-py's pipeline spent most of the test
    # encoding them and parsing the replies (13 s of 15 on a loaded host).
    loader = RawClient(client.connection_pool.connection_kwargs["port"])
    try:
        for start in range(0, KEYS, 10_000):
            batch = range(start, min(start + 10_000, KEYS))
            loader.sock.sendall(b"".join(pack("SET", f"k:{i}", "v", "PX", "1") for i in batch))
            assert loader.read(len(batch)) == b"+OK\r\n" * len(batch)
    finally:
        loader.close()
    before = client.info("stats")["expired_time_cap_reached_count"]
    started = client.info("server")["server_time_usec"]
    client.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "1")
    deadline = time.monotonic() + 120  # a bound for a broken server, not a measurement
    while client.dbsize():  # the trickle, each reply the event loop's turn
        assert time.monotonic() < deadline, "the expired keys were never all deleted"
    ended = client.info("server")["server_time_usec"]
    stats = client.info("stats")
    return {"expired": stats["expired_keys"],
            "capped": stats["expired_time_cap_reached_count"] - before,
            "usec": ended - started}


def test_a_trickle_of_commands_expires_keys_in_fast_cycles_as_redis():
    """With hz 10 the slow cycle runs at most 10 times a second (25 ms each): 100,000
    expired keys outlast it, each cycle is cut by its time, and each of the trickle's
    turns of the event loop runs a fast cycle (1 ms, not again within 2 ms) that is cut
    too. On both servers more cycles hit their time limit over the trickle than slow
    cycles could run in that time (by the server's own clock): fast cycles ran and were
    cut. (Without kvrepl's fast cycle: 11 cuts in 1.4 s, at most 15. How many more than
    the slow ones is the scheduler's: the trickle's turns; a loaded host gave
    redis-server 11 cuts in 0.58 s, at most 6 of them slow.)"""
    real = RedisServer("--hz", str(HZ), "--save", "", "--enable-debug-command", "yes")
    ours = ThreadedServer(Config(save=(), hz=HZ, enable_debug_command="yes")).start()
    try:
        seen = {}
        for name, server in (("redis", real), ("kvrepl", ours)):
            with server.client() as client:
                assert client.config_get("hz")["hz"] == str(HZ)
                seen[name] = _expire_at_the_pace_of_fast_cycles(client)
    finally:
        ours.stop()
        real.stop()
    for name, figures in seen.items():
        slow_cycles = HZ * figures["usec"] // 1_000_000 + 1
        assert figures["expired"] == KEYS, (name, figures)
        assert figures["capped"] > slow_cycles, (name, figures)


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> Engine:
    """An engine with 5000 expired keys, its clocks frozen (perf_counter 1 ms a look)."""
    now = [1_700_000_000.0]
    engine = Engine(Config(save=(), hz=10))
    engine.keyspace.clock = lambda: now[0]
    session = engine.new_session()
    for i in range(5000):
        engine.execute(session, [b"SET", b"k:%d" % i, b"v", b"PX", b"1000"])
    now[0] += 2
    fake = clock_of_looks()
    monkeypatch.setattr(cron, "perf_counter", fake)
    monkeypatch.setattr(database, "perf_counter", fake)
    return engine


def test_the_fast_cycle_follows_a_cycle_cut_by_its_time(engine, monkeypatch):
    """expire.c's conditions: no fast cycle while the last cycle finished in time (the
    stale share, a fraction, is never above the acceptable percentage in 7.0.15); after
    a slow cycle cut by its 25 ms, a fast one with 1 ms (2 batches of 20 with a clock
    that moves 1 ms a look), counted in expired_time_cap_reached_count; not again within
    2 ms of the last one's start."""
    stats = engine.stats
    assert cron.fast_expire_cycle(engine) == 0
    assert cron.expire_cycle(engine) == 26 * 20
    assert stats.expired_time_cap_reached_count == 1
    assert cron.fast_expire_cycle(engine) == 2 * 20
    assert stats.expired_time_cap_reached_count == 2
    last = engine.keyspace.last_fast_expire
    ticking = cron.perf_counter
    monkeypatch.setattr(cron, "perf_counter", lambda: last + 0.0019)
    assert cron.fast_expire_cycle(engine) == 0
    assert stats.expired_time_cap_reached_count == 2
    monkeypatch.setattr(cron, "perf_counter", ticking)  # 4 ms after the last one began
    assert cron.fast_expire_cycle(engine) == 2 * 20
    assert stats.expired_time_cap_reached_count == 3


def test_no_fast_cycle_on_a_replica_nor_while_paused(engine):
    """beforeSleep runs it only on a master (masterhost NULL), and activeExpireCycle
    returns at once while clients are paused; a replica (or DEBUG SET-ACTIVE-EXPIRE 0)
    is not asked again until a slow cycle is cut by its time again."""
    assert cron.expire_cycle(engine) == 26 * 20
    keyspace = engine.keyspace
    assert keyspace.fast_expire_due
    keyspace.expiry_paused = lambda: True
    assert cron.fast_expire_cycle(engine) == 0
    del keyspace.expiry_paused
    assert keyspace.fast_expire_due  # the pause ends, the fast cycles go on
    keyspace.expire_keys = False  # what a replica's keyspace is
    assert cron.fast_expire_cycle(engine) == 0
    assert not keyspace.fast_expire_due
    keyspace.expire_keys = True
    engine.active_expire_enabled = False
    assert cron.expire_cycle(engine) == 0
    assert not keyspace.fast_expire_due
    engine.active_expire_enabled = True
    assert cron.expire_cycle(engine) == 26 * 20  # cut by its time again
    assert cron.fast_expire_cycle(engine) == 2 * 20
