"""Redis's test hooks: the hidden options rdb-key-save-delay, key-load-delay and
loading-process-events-interval-bytes, and DEBUG CHANGE-REPL-ID / STRINGMATCH-TEST,
against redis-server 7.0 where the outcome is deterministic."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import redis
import trio
from support import RawClient, RedisServer, ThreadedServer, outcome, poll, raw_replies

from kvrepl import persistence
from kvrepl.commands.core import Engine
from kvrepl.config import Config
from kvrepl.protocol.replies import OK
from kvrepl.rdb import RdbWriter, iter_entries

HOOKS = ("rdb-key-save-delay", "key-load-delay", "loading-process-events-interval-bytes")


@pytest.fixture
def servers(tmp_path: Path):
    ours = ThreadedServer(Config(save=(), repl_diskless_sync_delay=0, dir=str(tmp_path),
                                 enable_debug_command="yes")).start()
    real = RedisServer("--enable-debug-command", "yes")
    yield ours, real
    ours.stop()
    real.stop()


def test_hidden_options_are_got_by_name_only_and_checked_as_redis_does(servers) -> None:
    ours, real = servers
    a, b = ours.client(), real.client()
    for name in HOOKS:
        assert outcome(a, ("CONFIG", "GET", name)) == outcome(b, ("CONFIG", "GET", name))
    # HIDDEN_CONFIG: a pattern never lists them
    for pattern in ("*", "*delay*", "loading-*"):
        got = a.config_get(pattern)
        assert not set(HOOKS) & set(got)
        assert not set(HOOKS) & set(b.config_get(pattern))
    for name, value in [("rdb-key-save-delay", "-5"), ("rdb-key-save-delay", "x"),
                        ("key-load-delay", "2147483648"), ("key-load-delay", "-2147483648"),
                        ("loading-process-events-interval-bytes", "1023"),
                        ("loading-process-events-interval-bytes", "4096")]:
        command = ("CONFIG", "SET", name, value)
        assert outcome(a, command) == outcome(b, command), (name, value)
        assert outcome(a, ("CONFIG", "GET", name)) == outcome(b, ("CONFIG", "GET", name))


def info(client: redis.Redis, section: str) -> dict[str, str]:
    text = raw_replies(client).execute_command("INFO", section).decode()
    return dict(line.split(":", 1) for line in text.split("\r\n") if ":" in line)


def test_rdb_key_save_delay_keeps_a_bgsave_in_progress_while_clients_are_served(
        servers, tmp_path: Path) -> None:
    ours, real = servers
    clients = (ours.client(), real.client())
    for client in clients:
        client.execute_command("DEBUG", "POPULATE", "3")
        client.config_set("rdb-key-save-delay", 500_000)  # 0.5 s a key
        assert client.bgsave()
    for client in clients:
        fields = info(client, "persistence")
        assert fields["rdb_bgsave_in_progress"] == "1"
        assert client.ping()
        assert client.set("written-meanwhile", "x")  # writes go on: not in the snapshot
    a = clients[0]
    # kvrepl reports each key as it is written (Redis every 1024 keys)
    poll(lambda: info(a, "persistence")["current_save_keys_processed"] != "0",
         "the first key is saved")
    fields = info(a, "persistence")
    assert fields["current_save_keys_total"] == "3"
    assert fields["rdb_bgsave_in_progress"] == "1"
    assert not (tmp_path / "dump.rdb").exists()
    for client in clients:
        poll(lambda c=client: info(c, "persistence")["rdb_bgsave_in_progress"] == "0",
             "the BGSAVE ends")
        assert info(client, "persistence")["rdb_last_bgsave_status"] == "ok"
    with open(tmp_path / "dump.rdb", "rb") as dump:
        keys = sorted(entry[1] for entry in iter_entries(dump))
    assert keys == [b"key:0", b"key:1", b"key:2"]


def test_rdb_key_save_delay_is_fixed_when_the_snapshot_starts(tmp_path: Path) -> None:
    """A forked child keeps the value it was forked with: CONFIG SET afterwards does not
    speed up or slow down a running save."""
    ours = ThreadedServer(Config(save=(), dir=str(tmp_path), enable_debug_command="yes"))
    ours.start()
    try:
        client = ours.client()
        client.execute_command("DEBUG", "POPULATE", "2")
        client.config_set("rdb-key-save-delay", 10_000_000)
        client.bgsave()
        client.config_set("rdb-key-save-delay", 0)
        assert ours.engine.persistence.bgsave.key_delay == 10_000_000
        assert info(client, "persistence")["rdb_bgsave_in_progress"] == "1"
        client.flushall()  # kills the save (rdbKillChild), as Redis's FLUSHALL does
        poll(lambda: info(client, "persistence")["rdb_bgsave_in_progress"] == "0",
             "FLUSHALL ends the save")
    finally:
        ours.stop()


def test_key_load_delay_slows_a_replicas_load_while_it_serves_its_old_data(
        tmp_path: Path) -> None:
    master = ThreadedServer(Config(save=(), repl_diskless_sync_delay=0,
                                   enable_debug_command="yes")).start()
    replica = ThreadedServer(Config(save=(), enable_debug_command="yes")).start()
    try:
        m, r = master.client(), replica.client()
        m.execute_command("DEBUG", "POPULATE", "10")
        r.set("old", "data")
        r.config_set("key-load-delay", 150_000)  # 1.5 s for the 10 keys
        r.replicaof("127.0.0.1", master.port)
        # kvrepl's replica loads beside its old data: Redis's async_loading (swapdb)
        poll(lambda: int(info(r, "persistence").get("loading_loaded_bytes", 0)) > 0,
             "the payload's first bytes are loaded")
        fields = info(r, "persistence")
        assert (fields["loading"], fields["async_loading"]) == ("0", "1")
        assert r.ping()
        assert r.get("old") == b"data"
        # commands flagged no_async_loading are refused until the load ends, as on Redis
        # (raw RESP: redis-py retries a -LOADING reply)
        raw = RawClient(replica.port)
        for args in (("SAVE",), ("BGSAVE",), ("REPLICAOF", "NO", "ONE")):
            assert raw.call(*args) == b"-LOADING Redis is loading the dataset in memory\r\n"
        raw.close()
        assert r.execute_command("DEBUG", "DIGEST") != m.execute_command("DEBUG", "DIGEST")
        poll(lambda: info(r, "replication")["master_link_status"] == "up", "the sync ends")
        assert info(r, "persistence")["async_loading"] == "0"
        assert "loading_loaded_bytes" not in info(r, "persistence")
        assert r.execute_command("DEBUG", "DIGEST") == m.execute_command("DEBUG", "DIGEST")
    finally:
        replica.stop()
        master.stop()


async def test_loading_yields_every_interval_bytes_and_sleeps_per_key(tmp_path: Path) -> None:
    writer = RdbWriter()
    entries = [(0, b"key:%d" % i, os.urandom(50).hex().encode(), None) for i in range(200)]
    (tmp_path / "dump.rdb").write_bytes(writer.begin() + writer.write_records(entries)
                                        + writer.finish())
    engine = Engine(Config(dir=str(tmp_path), save=()))
    engine.config.config_set([("loading-process-events-interval-bytes", "2048"),
                              ("key-load-delay", "-1")])  # 1 us a key
    seen = []
    async with trio.open_nursery() as nursery:
        await nursery.start(persistence.load_on_startup, engine)
        while engine.loading:
            seen.append(persistence.attach(engine).loading_loaded_bytes)
            await trio.lowlevel.checkpoint()
    assert len(engine.keyspace.dbs[0].data) == 200
    # every turn of serving clients comes after a whole interval was parsed
    size = (tmp_path / "dump.rdb").stat().st_size
    assert seen[0] == 0 and len(set(seen)) >= size // 2048
    assert all(loaded % 2048 == 0 or loaded == size for loaded in seen)


def test_debug_change_repl_id_and_stringmatch_test(servers) -> None:
    ours, real = servers
    for client in (ours.client(), real.client()):
        before = info(client, "replication")
        assert client.execute_command("DEBUG", "CHANGE-REPL-ID") == b"OK"
        after = info(client, "replication")
        assert after["master_replid"] != before["master_replid"]
        assert len(after["master_replid"]) == 40
        assert after["master_replid2"] == "0" * 40
        assert after["second_repl_offset"] == "-1"
    # (redis-server's fuzz test runs for many seconds: its reply text is from debug.c)
    assert ours.client().execute_command("DEBUG", "STRINGMATCH-TEST") == (
        b"Apparently Redis did not crash: test passed")
    a, b = ours.client(), real.client()
    for args in (("DEBUG", "CHANGE-REPL-ID", "x"), ("DEBUG", "STRINGMATCH-TEST", "x")):
        assert outcome(a, args) == outcome(b, args)


def test_debug_quicklist_packed_threshold_gives_big_elements_plain_nodes(servers) -> None:
    ours, real = servers
    a, b = raw_replies(ours.client()), raw_replies(real.client())
    try:
        for value in ("0x", "-1", "5gb", "4294967296"):
            args = ("DEBUG", "QUICKLIST-PACKED-THRESHOLD", value)
            assert outcome(a, args) == outcome(b, args), value
        for client in (a, b):
            assert client.execute_command("DEBUG", "QUICKLIST-PACKED-THRESHOLD", "100") == b"OK"
            client.rpush("l", "small", "x" * 150, "tiny", "y" * 100, "z" * 99)
        assert a.dump("l") == b.dump("l")  # the same PLAIN and packed nodes
        real_payload = b.dump("l")
        for client in (a, b):
            assert client.execute_command("DEBUG", "QUICKLIST-PACKED-THRESHOLD", "0") == b"OK"
        assert a.dump("l") != real_payload  # back to 1gb: one packed node
    finally:
        a.execute_command("DEBUG", "QUICKLIST-PACKED-THRESHOLD", "0")  # process-wide


def test_rdb_key_save_delay_blocks_a_save_until_the_dump_is_written(tmp_path: Path) -> None:
    engine = Engine(Config(dir=str(tmp_path), save=()))
    session = engine.new_session()
    engine.execute(session, [b"MSET", b"a", b"1", b"b", b"2"])
    engine.config.config_set([("rdb-key-save-delay", "100000")])  # 0.1 s a key
    started = time.monotonic()
    assert engine.execute(session, [b"SAVE"]) == OK
    assert time.monotonic() - started >= 0.2  # a lower bound: SAVE blocked for both keys
    assert (tmp_path / "dump.rdb").exists()
