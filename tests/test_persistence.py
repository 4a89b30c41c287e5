"""RDB persistence: SAVE / BGSAVE / LASTSAVE, the save schedule, FLUSHALL and SHUTDOWN saves,
DEBUG RELOAD, the startup load, INFO persistence, and the snapshot job behind BGSAVE.

The oracle is a real redis-server 7.0: it must load what SAVE writes into the same dataset
(DEBUG DIGEST), and kvrepl must load what it saves.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from collections import deque
from pathlib import Path

import pytest
import trio
from support import RedisServer, argv

from kvrepl import persistence
from kvrepl.commands.core import Engine, Session
from kvrepl.config import Config
from kvrepl.errors import ReplyError
from kvrepl.protocol.replies import OK, Status
from kvrepl.rdb import RdbError, RdbWriter, iter_entries, load_into
from kvrepl.server import Server
from kvrepl.store.database import Keyspace
from kvrepl.store.values import ZSet


def make_engine(directory: Path, **options: object) -> tuple[Engine, Session]:
    options.setdefault("save", ())
    options.setdefault("enable_debug_command", "local")  # DEBUG DIGEST / RELOAD
    engine = Engine(Config(dir=str(directory), **options))
    return engine, engine.new_session()


def run(engine: Engine, session: Session, *args: object) -> object:
    reply = engine.execute(session, argv(*args))
    if isinstance(reply, ReplyError):
        raise reply
    return reply


def info(engine: Engine) -> dict[str, str]:
    return dict(line.split(":", 1) for line in persistence.info_fields(engine))


def fill(engine: Engine, session: Session) -> None:
    """Every type and encoding Redis 7.0 writes, a TTL, two databases."""
    def r(*args: object) -> object:
        return run(engine, session, *args)

    r("SET", "str", "hello")
    r("SET", "int", 12345)
    r("SET", "neg", -70000)
    r("SET", "long", "a" * 1000)  # LZF
    r("SET", "bin", b"\x00\xff\r\n")
    r("RPUSH", "list", *[f"item-{i}" for i in range(600)])
    r("RPUSH", "shortlist", 1, "two", 3)
    r("HSET", "hash", "f1", "v1", "f2", 2)
    r("HSET", "bighash", *[x for i in range(600) for x in (f"f{i}", f"v{i}")])
    r("SADD", "intset", 1, 2, 3, -5)
    r("SADD", "set", "a", "b", "c")
    r("SADD", "bigset", *[f"m{i}" for i in range(600)])
    r("ZADD", "zset", 1.5, "a", 2, "b", "inf", "c")
    r("ZADD", "bigzset", *[x for i in range(200) for x in (i / 7, f"m{i}")])
    r("SET", "ttl", "v", "PX", 100_000_000)
    r("SELECT", 3)
    r("SET", "other", "db")
    r("SELECT", 0)


def same_data(a: Keyspace, b: Keyspace) -> None:
    for x, y in zip(a.dbs, b.dbs, strict=True):
        assert x.data == y.data, x.id
        assert x.expires == y.expires, x.id


def load_file(path: str, drop_expired: bool = False) -> Keyspace:
    ks = Keyspace()
    with open(path, "rb") as f:
        load_into(ks, f, drop_expired=drop_expired)
    return ks


# -- SAVE, LASTSAVE, and a real redis-server -----------------------------------------------------


def test_save_is_loaded_by_redis_server_with_the_same_digest(tmp_path: Path) -> None:
    engine, session = make_engine(tmp_path)
    fill(engine, session)
    assert info(engine)["rdb_changes_since_last_save"] == str(engine.dirty)
    assert run(engine, session, "SAVE") is OK
    assert os.path.exists(tmp_path / "dump.rdb")
    assert not [p for p in os.listdir(tmp_path) if p.startswith("temp-")]
    fields = info(engine)
    assert fields["rdb_changes_since_last_save"] == "0"
    assert fields["rdb_saves"] == "1"
    assert run(engine, session, "LASTSAVE") == int(fields["rdb_last_save_time"])
    real = RedisServer("--dir", str(tmp_path), "--dbfilename", "dump.rdb",
                       "--enable-debug-command", "yes")
    try:
        client = real.client()
        ours = run(engine, session, "DEBUG", "DIGEST")
        assert client.execute_command("DEBUG", "DIGEST") == bytes(ours)
        assert client.dbsize() == len(engine.keyspace.dbs[0])
        assert client.pttl("ttl") > 0
        # and the other way round: what that server saves, we load to the same digest
        client.set("added", "by redis")
        client.lpush("list", "x")
        client.save()
        run(engine, session, "SET", "junk", "gone after the reload")
        persistence.debug_reload(engine, [b"NOSAVE"])
        assert bytes(run(engine, session, "DEBUG", "DIGEST")) == client.execute_command(
            "DEBUG", "DIGEST")
        assert run(engine, session, "GET", "added") == b"by redis"
        assert run(engine, session, "GET", "junk") is None
    finally:
        real.stop()


def test_save_errors_leave_the_old_dump(tmp_path: Path) -> None:
    engine, session = make_engine(tmp_path)
    run(engine, session, "SET", "k", "v1")
    run(engine, session, "SAVE")
    good = (tmp_path / "dump.rdb").read_bytes()
    run(engine, session, "SET", "k", "v2")
    engine.config.dir = str(tmp_path / "missing")  # the temp file can't even be created
    with pytest.raises(ReplyError, match="^ERR$"):
        run(engine, session, "SAVE")
    assert info(engine)["rdb_last_bgsave_status"] == "ok"  # only BGSAVE failures show
    assert info(engine)["rdb_changes_since_last_save"] == "1"
    engine.config.dir = str(tmp_path)
    assert (tmp_path / "dump.rdb").read_bytes() == good


def test_a_write_failing_midway_leaves_the_old_dump_and_no_temp_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine, session = make_engine(tmp_path)
    run(engine, session, "SET", "k", "v1")
    run(engine, session, "SAVE")
    good = (tmp_path / "dump.rdb").read_bytes()
    run(engine, session, "MSET", *[x for i in range(3000) for x in (f"k{i}", "x" * 500)])
    real_write = persistence.TempFile.write
    calls = []

    def failing(self: persistence.TempFile, data: bytes) -> None:
        calls.append(len(data))
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real_write(self, data)

    monkeypatch.setattr(persistence.TempFile, "write", failing)
    monkeypatch.setattr(persistence, "FILE_BUFFER", 64 * 1024)
    assert not persistence.save(engine)
    assert len(calls) == 2
    assert (tmp_path / "dump.rdb").read_bytes() == good
    assert sorted(os.listdir(tmp_path)) == ["dump.rdb"]


def test_save_and_bgsave_refused_while_a_bgsave_runs(tmp_path: Path) -> None:
    engine, session = make_engine(tmp_path)
    state = persistence.attach(engine)
    state.bgsave = persistence.SnapshotJob(engine.keyspace)  # pretend one runs
    for command in ("SAVE", "BGSAVE"):
        with pytest.raises(ReplyError, match="^ERR Background save already in progress$"):
            run(engine, session, command)
    with pytest.raises(ReplyError, match="^ERR syntax error$"):
        run(engine, session, "BGSAVE", "now")
    with pytest.raises(ReplyError, match="^ERR syntax error$"):
        run(engine, session, "BGSAVE", "schedule", "x")


def test_bgsave_without_an_event_loop_saves_at_once(tmp_path: Path) -> None:
    engine, session = make_engine(tmp_path)
    run(engine, session, "SET", "k", "v")
    assert run(engine, session, "BGSAVE") == Status(b"Background saving started")
    assert load_file(str(tmp_path / "dump.rdb")).dbs[0].data == {b"k": b"v"}
    assert info(engine)["rdb_saves"] == "1"
    assert info(engine)["rdb_changes_since_last_save"] == "0"


def test_save_is_not_allowed_in_multi_and_bgsave_is_scheduled(tmp_path: Path) -> None:
    engine, session = make_engine(tmp_path)
    run(engine, session, "MULTI")
    assert isinstance(engine.execute(session, argv("SAVE")), ReplyError)
    run(engine, session, "DISCARD")
    run(engine, session, "MULTI")
    run(engine, session, "BGSAVE")
    assert run(engine, session, "EXEC") == [Status(b"Background saving scheduled")]
    state = persistence.attach(engine)
    assert state.bgsave_scheduled and not os.path.exists(tmp_path / "dump.rdb")
    persistence.cron(engine)
    assert not state.bgsave_scheduled and os.path.exists(tmp_path / "dump.rdb")


def test_rdbcompression_and_rdbchecksum(tmp_path: Path) -> None:
    engine, session = make_engine(tmp_path, rdbcompression=False, rdbchecksum=False)
    run(engine, session, "SET", "k", "a" * 1000)
    run(engine, session, "SAVE")
    data = (tmp_path / "dump.rdb").read_bytes()
    assert b"a" * 1000 in data and data[-8:] == bytes(8)
    engine.config.rdbcompression = engine.config.rdbchecksum = True
    run(engine, session, "SAVE")
    data = (tmp_path / "dump.rdb").read_bytes()
    assert b"a" * 1000 not in data and data[-8:] != bytes(8)
    assert load_file(str(tmp_path / "dump.rdb")).dbs[0].data == {b"k": b"a" * 1000}


# -- the schedule, FLUSHALL, SHUTDOWN ------------------------------------------------------------


def test_default_save_points_and_save_empty_disables() -> None:
    from kvrepl.cli import parse_args

    assert Config().save == ((3600, 1), (300, 100), (60, 10000))
    assert parse_args(["--save", ""]).save == ()
    assert parse_args(["--save", "5 1", "--save", "10 2"]).save == ((5, 1), (10, 2))


def test_cron_saves_when_a_save_point_is_reached(tmp_path: Path) -> None:
    engine, session = make_engine(tmp_path, save=((60, 2),))
    state = persistence.attach(engine)
    path = tmp_path / "dump.rdb"
    run(engine, session, "SET", "a", 1)
    run(engine, session, "SET", "b", 2)
    persistence.cron(engine)
    assert not path.exists()  # two changes, but not 60 seconds since the last save
    state.lastsave -= 61
    run(engine, session, "DEL", "b")
    persistence.cron(engine)
    assert path.exists() and state.changes_since_last_save == 0
    assert load_file(str(path)).dbs[0].data == {b"a": b"1"}
    state.lastsave -= 61
    run(engine, session, "SET", "c", 3)  # one change only
    persistence.cron(engine)
    assert b"c" not in load_file(str(path)).dbs[0].data


def test_cron_retries_a_failed_bgsave_only_after_five_seconds(tmp_path: Path) -> None:
    engine, session = make_engine(tmp_path, save=((1, 1),))
    state = persistence.attach(engine)
    state.lastsave -= 10
    run(engine, session, "SET", "a", 1)
    engine.config.dir = str(tmp_path / "missing")
    persistence.cron(engine)
    assert not state.last_bgsave_ok and state.rdb_saves == 1
    engine.config.dir = str(tmp_path)
    persistence.cron(engine)
    assert state.rdb_saves == 1  # too soon after the failure
    state.lastbgsave_try -= 6
    persistence.cron(engine)
    assert state.rdb_saves == 2 and state.last_bgsave_ok
    assert (tmp_path / "dump.rdb").exists()


def test_flushall_saves_the_empty_dataset_when_save_points_are_set(tmp_path: Path) -> None:
    engine, session = make_engine(tmp_path, save=((3600, 1),))
    run(engine, session, "SET", "a", 1)
    run(engine, session, "SAVE")
    run(engine, session, "SET", "b", 1)
    run(engine, session, "FLUSHALL")
    persistence.after_flushall(engine)  # what FLUSHALL calls once wired in
    assert load_file(str(tmp_path / "dump.rdb")).dbsize() == 0
    assert info(engine)["rdb_changes_since_last_save"] == "0"
    # without save points the dump is left alone
    engine.config.save = ()
    run(engine, session, "SET", "c", 1)
    run(engine, session, "SAVE")
    run(engine, session, "FLUSHALL")
    persistence.after_flushall(engine)
    assert load_file(str(tmp_path / "dump.rdb")).dbsize() == 1


def test_flushall_is_counted_like_redis(real: object) -> None:
    """rdb_changes_since_last_save after FLUSHALL with save points set: 0 in Redis."""
    real.config_set("save", "3600 1")  # type: ignore[attr-defined]
    try:
        real.set("a", 1)  # type: ignore[attr-defined]
        real.flushall()  # type: ignore[attr-defined]
        assert real.info("persistence")["rdb_changes_since_last_save"] == 0  # type: ignore
    finally:
        real.config_set("save", "")  # type: ignore[attr-defined]


def test_prepare_shutdown(tmp_path: Path) -> None:
    engine, session = make_engine(tmp_path)
    path = tmp_path / "dump.rdb"
    run(engine, session, "SET", "a", 1)
    assert persistence.prepare_shutdown(engine, None) and not path.exists()  # save ""
    assert persistence.prepare_shutdown(engine, False) and not path.exists()
    assert persistence.prepare_shutdown(engine, True) and path.exists()
    path.unlink()
    engine.config.save = ((3600, 1),)
    assert persistence.prepare_shutdown(engine, None) and path.exists()
    engine.config.dir = str(tmp_path / "missing")
    assert not persistence.prepare_shutdown(engine, None)  # "can't exit"
    assert persistence.prepare_shutdown(engine, None, force=True)
    assert persistence.prepare_shutdown(engine, False)
    engine.loading = True  # half-loaded data must never replace the dump
    assert persistence.prepare_shutdown(engine, True)


# -- DEBUG RELOAD ---------------------------------------------------------------------------------


def test_debug_reload(tmp_path: Path) -> None:
    engine, session = make_engine(tmp_path)
    fill(engine, session)
    before = run(engine, session, "DEBUG", "DIGEST")
    persistence.debug_reload(engine, [])
    assert run(engine, session, "DEBUG", "DIGEST") == before
    # A key whose time passed (nothing read it since) is saved, then dropped by the load.
    now = [time.time()]
    engine.keyspace.clock = lambda: now[0]
    run(engine, session, "SET", "gone", "x", "PX", "100")
    now[0] += 1
    assert b"gone" in engine.keyspace.dbs[0].data
    persistence.debug_reload(engine, [])
    assert b"gone" not in engine.keyspace.dbs[0].data
    assert run(engine, session, "DEBUG", "DIGEST") == before
    assert persistence.attach(engine).last_load_keys_loaded == engine.keyspace.dbsize()
    with pytest.raises(ReplyError, match="^ERR DEBUG RELOAD only supports the MERGE, NOFLUSH "
                                         "and NOSAVE options.$"):
        persistence.debug_reload(engine, [b"FAST"])
    # NOFLUSH keeps what is not in the file; without MERGE a key in both is an error
    run(engine, session, "SET", "extra", "x")
    with pytest.raises(ReplyError, match="^ERR Error trying to load the RDB dump$"):
        persistence.debug_reload(engine, [b"NOSAVE", b"NOFLUSH"])
    run(engine, session, "SET", "str", "changed")
    persistence.debug_reload(engine, [b"nosave", b"noflush", b"merge"])
    assert run(engine, session, "GET", "str") == b"hello"
    assert run(engine, session, "GET", "extra") == b"x"
    (tmp_path / "dump.rdb").write_bytes(b"REDIS0010garbage")
    with pytest.raises(ReplyError, match="^ERR Error trying to load the RDB dump$"):
        persistence.debug_reload(engine, [b"NOSAVE"])
    assert run(engine, session, "GET", "extra") == b"x"  # a bad file changes nothing


# -- the startup load -----------------------------------------------------------------------------


def write_rdb(path: Path, entries: list[tuple[int, bytes, object, int | None]]) -> None:
    writer = RdbWriter()
    path.write_bytes(writer.begin() + writer.write_records(entries) + writer.finish())


async def test_startup_load_answers_loading_and_drops_expired_keys(tmp_path: Path) -> None:
    now = int(time.time() * 1000)
    entries = [(0, b"key:%d" % i, b"x" * 100, None) for i in range(30000)]
    entries += [(0, b"gone", b"v", now - 1000), (0, b"stays", b"v", now + 100_000),
                (2, b"list", deque([b"a", b"b"]), None)]
    write_rdb(tmp_path / "dump.rdb", entries)
    engine, session = make_engine(tmp_path)
    async with trio.open_nursery() as nursery:
        await nursery.start(persistence.load_on_startup, engine)
        assert engine.loading
        with pytest.raises(ReplyError, match="^LOADING Redis is loading the dataset in memory$"):
            run(engine, session, "GET", "stays")
        fields = dict(line.split(":", 1) for line in bytes(
            run(engine, session, "INFO", "persistence")).decode().split("\r\n")[1:] if line)
        assert fields["loading"] == "1"
        assert 0 <= float(fields["loading_loaded_perc"]) < 100
        assert int(fields["loading_total_bytes"]) == (tmp_path / "dump.rdb").stat().st_size
    assert not engine.loading
    assert run(engine, session, "GET", "stays") == b"v"
    assert b"gone" not in engine.keyspace.dbs[0].data
    assert engine.keyspace.dbs[2].data == {b"list": deque([b"a", b"b"])}
    fields = info(engine)
    assert fields["rdb_last_load_keys_loaded"] == "30002"
    assert fields["rdb_last_load_keys_expired"] == "1"
    assert "loading_loaded_perc" not in fields


async def test_a_replica_keeps_expired_keys_when_loading(tmp_path: Path) -> None:
    write_rdb(tmp_path / "dump.rdb", [(0, b"gone", b"v", 1000)])
    engine, _ = make_engine(tmp_path, replicaof=("127.0.0.1", 1))
    await persistence.load_on_startup(engine)
    assert engine.keyspace.dbs[0].expires == {b"gone": 1000}


async def test_startup_without_a_dump_and_with_a_bad_one(tmp_path: Path) -> None:
    engine, session = make_engine(tmp_path)
    await persistence.load_on_startup(engine)  # no file: nothing to do
    assert not engine.loading and engine.keyspace.dbsize() == 0
    (tmp_path / "dump.rdb").write_bytes(b"REDIS0010\xfe\x00\x00\x03key")  # truncated
    run(engine, session, "SET", "kept", "v")
    with pytest.raises(RdbError):
        await persistence.load_on_startup(engine)
    assert not engine.loading and run(engine, session, "GET", "kept") == b"v"
    # kvrepl-server's way: stop the node without saving, remember why
    stops: list[bool | None] = []
    engine.on_shutdown = stops.append
    await persistence.load_on_startup(engine, stop_on_error=True)
    assert stops == [False]
    assert isinstance(persistence.attach(engine).load_error, RdbError)
    assert run(engine, session, "GET", "kept") == b"v"


# -- BGSAVE and the snapshot job ------------------------------------------------------------------


def deep_copy(ks: Keyspace) -> Keyspace:
    copy = Keyspace()
    for src, dst in zip(ks.dbs, copy.dbs, strict=True):
        dst.data = {k: (v if type(v) is bytes else v.copy()) for k, v in src.data.items()}
        dst.expires = dict(src.expires)
    return copy


async def test_bgsave_writes_the_dataset_as_it_was_when_it_started(
        tmp_path: Path, nursery: trio.Nursery) -> None:
    engine, session = make_engine(tmp_path)
    persistence.attach(engine, nursery)

    def r(*args: object) -> object:
        return run(engine, session, *args)

    r("MSET", *[x for i in range(20000) for x in (f"s{i}", f"value-{i}")])
    for i in range(300):
        r("RPUSH", f"l{i}", *range(20))
        r("HSET", f"h{i}", "a", 1, "b", 2)
        r("SADD", f"set{i}", "x", "y")
        r("ZADD", f"z{i}", 1, "m", 2, "n")
        r("PEXPIRE", f"s{i}", 10_000_000)
    r("SELECT", 1)
    r("SET", "in-db-1", "v")
    r("SELECT", 0)
    expected = deep_copy(engine.keyspace)
    dirty_at_start = engine.dirty
    assert r("BGSAVE") == Status(b"Background saving started")
    state = persistence.attach(engine)
    job = state.bgsave
    assert job is not None and info(engine)["rdb_bgsave_in_progress"] == "1"
    assert info(engine)["current_save_keys_total"] == str(expected.dbsize())
    writes = 0
    while state.bgsave is not None:
        i = writes % 300
        r("SET", f"s{writes}", "changed")
        r("RPUSH", f"l{i}", "new")
        r("HSET", f"h{i}", "a", "changed")
        r("SREM", f"set{i}", "x")
        r("ZADD", f"z{i}", 99, "m")
        r("DEL", f"s{19999 - writes}")
        r("SET", f"new{writes}", "v")
        if writes == 3:
            r("FLUSHDB")  # db 0 goes empty meanwhile
        if writes == 5:
            r("SWAPDB", 0, 1)
        writes += 1
        await trio.sleep(0)
    assert writes >= 6, "the job should have yielded between slices"
    assert job.status == persistence.DONE and job.slices > 1
    saved = load_file(str(tmp_path / "dump.rdb"))
    same_data(saved, expected)
    fields = info(engine)
    assert fields["rdb_bgsave_in_progress"] == "0" and fields["rdb_last_bgsave_status"] == "ok"
    assert int(fields["rdb_changes_since_last_save"]) == engine.dirty - dirty_at_start > 0
    assert fields["rdb_saves"] == "1" and fields["rdb_last_bgsave_time_sec"] != "-1"


async def test_a_snapshot_feeds_a_file_and_channels_alike(tmp_path: Path) -> None:
    ks = Keyspace()
    for i in range(5000):
        ks.dbs[i % 3].data[b"k%d" % i] = b"v" * (i % 50)
    job = persistence.SnapshotJob(ks, slice_seconds=0.0001)
    began = []
    job.on_begin.append(lambda j: began.append(len(j.view)))
    fast = job.open_channel(max_buffer=100)
    slow = job.open_channel(max_buffer=0)  # every send waits for its reader
    file_consumer = job.add_consumer(persistence.FileConsumer(str(tmp_path / "x.rdb")))
    received: dict[str, list[bytes]] = {"fast": [], "slow": []}

    async def read(name: str, channel: trio.MemoryReceiveChannel[bytes]) -> None:
        async for chunk in channel:
            received[name].append(chunk)
            if name == "slow":
                await trio.sleep(0)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read, "fast", fast)
        nursery.start_soon(read, "slow", slow)
        job.start(nursery)
        assert began == [5000]
        while not job.bytes_out:
            await trio.sleep(0)
        assert not job.joinable
        with pytest.raises(RuntimeError):
            job.add_consumer(persistence.FileConsumer(str(tmp_path / "late.rdb")))
    assert job.ok and job.slices > 1
    whole = (tmp_path / "x.rdb").read_bytes()
    assert b"".join(received["fast"]) == whole == b"".join(received["slow"])
    assert file_consumer.committed
    assert sum(1 for _ in iter_entries(whole)) == 5000


async def test_a_failing_consumer_is_dropped_and_the_others_finish(tmp_path: Path) -> None:
    ks = Keyspace()
    ks.dbs[0].data.update({b"k%d" % i: b"v" for i in range(3000)})
    job = persistence.SnapshotJob(ks, slice_seconds=0.0001)
    seen = []

    async def broken(chunk: bytes) -> None:
        seen.append(chunk)
        if len(seen) == 2:
            raise ConnectionResetError("replica went away")

    aborted = []
    job.add_consumer(persistence.CallbackConsumer(broken, abort=aborted.append))
    job.add_consumer(persistence.FileConsumer(str(tmp_path / "dump.rdb")))
    await job.run()
    assert job.ok and len(seen) == 2
    assert isinstance(aborted[0], ConnectionResetError)
    assert len(load_file(str(tmp_path / "dump.rdb")).dbs[0].data) == 3000


async def test_a_job_cancelled_before_it_runs(tmp_path: Path) -> None:
    ks = Keyspace()
    ks.dbs[0].data[b"k"] = b"v"
    job = persistence.SnapshotJob(ks)
    consumer = job.add_consumer(persistence.FileConsumer(str(tmp_path / "x.rdb")))
    job.begin()
    assert ks.before_write_hooks
    job.cancel()
    assert job.status == persistence.CANCELLED and job.done.is_set()
    assert not ks.before_write_hooks and consumer.aborted
    await job.run()  # a task started before the cancel just returns
    assert os.listdir(tmp_path) == []


async def test_a_failed_bgsave_keeps_the_old_dump(tmp_path: Path, nursery: trio.Nursery,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    engine, session = make_engine(tmp_path)
    persistence.attach(engine, nursery)
    run(engine, session, "SET", "k", "old")
    run(engine, session, "SAVE")
    good = (tmp_path / "dump.rdb").read_bytes()
    # Incompressible values: the file must span many buffered writes with or without LZF.
    noise = random.Random(1)
    run(engine, session, "MSET",
        *[x for i in range(5000) for x in (f"k{i}", noise.randbytes(150).hex())])
    persistence.attach(engine).snapshot_buffer = 32 * 1024  # many chunks, many writes
    real_write = persistence.TempFile.write
    writes = []

    def failing(self: persistence.TempFile, data: bytes) -> None:
        writes.append(1)
        if len(writes) == 3:
            raise OSError(5, "Input/output error")
        real_write(self, data)

    monkeypatch.setattr(persistence.TempFile, "write", failing)
    run(engine, session, "BGSAVE")
    state = persistence.attach(engine)
    job = state.bgsave
    await job.done.wait()
    assert job.status == persistence.FAILED and isinstance(job.error, OSError)
    assert info(engine)["rdb_last_bgsave_status"] == "err"
    assert info(engine)["rdb_changes_since_last_save"] != "0"
    assert (tmp_path / "dump.rdb").read_bytes() == good
    assert sorted(os.listdir(tmp_path)) == ["dump.rdb"]
    # an unwritable place fails the same way: the reply says started, the status says err
    monkeypatch.setattr(persistence.TempFile, "write", real_write)
    state.last_bgsave_ok = True
    engine.config.dir = str(tmp_path / "missing")
    assert run(engine, session, "BGSAVE") == Status(b"Background saving started")
    await state.bgsave.done.wait()
    assert not state.last_bgsave_ok


async def test_flushall_kills_a_running_bgsave(tmp_path: Path, nursery: trio.Nursery) -> None:
    engine, session = make_engine(tmp_path, save=((3600, 1),))
    persistence.attach(engine, nursery)
    run(engine, session, "MSET", *[x for i in range(30000) for x in (f"k{i}", "v" * 50)])
    run(engine, session, "BGSAVE")
    state = persistence.attach(engine)
    job = state.bgsave
    await trio.sleep(0)
    run(engine, session, "FLUSHALL")
    persistence.after_flushall(engine)
    assert state.bgsave is None
    await job.done.wait()
    assert job.status == persistence.CANCELLED
    assert state.last_bgsave_ok  # a killed BGSAVE is not an error
    assert load_file(str(tmp_path / "dump.rdb")).dbsize() == 0
    assert sorted(os.listdir(tmp_path)) == ["dump.rdb"]


async def test_stopping_the_node_cancels_a_bgsave_cleanly(tmp_path: Path) -> None:
    engine, session = make_engine(tmp_path)
    run(engine, session, "MSET", *[x for i in range(30000) for x in (f"k{i}", "v")])
    async with trio.open_nursery() as nursery:
        persistence.attach(engine, nursery)
        run(engine, session, "BGSAVE")
        job = persistence.attach(engine).bgsave
        await trio.sleep(0)
        nursery.cancel_scope.cancel()
    assert job.status == persistence.CANCELLED
    assert os.listdir(tmp_path) == []


async def test_killing_a_bgsave_shared_with_a_replica_only_drops_the_file(
        tmp_path: Path, nursery: trio.Nursery) -> None:
    engine, session = make_engine(tmp_path)
    persistence.attach(engine, nursery)
    run(engine, session, "MSET", *[x for i in range(20000) for x in (f"k{i}", "v")])
    run(engine, session, "BGSAVE")
    state = persistence.attach(engine)
    job = state.bgsave
    assert job is not None and job.joinable  # nothing sent yet: a replica may join
    replica = job.open_channel(max_buffer=1)
    received = [await replica.receive()]
    persistence.kill_bgsave(engine)  # FLUSHALL does this
    assert state.bgsave is None
    async for chunk in replica:
        received.append(chunk)
    assert job.ok
    assert sum(1 for _ in iter_entries(b"".join(received))) == 20000
    assert os.listdir(tmp_path) == []  # the file consumer's temp file is gone
    assert state.last_bgsave_ok and state.changes_since_last_save > 0


async def test_bgsave_after_the_node_stopped_saves_synchronously(tmp_path: Path) -> None:
    engine, session = make_engine(tmp_path)
    async with trio.open_nursery() as nursery:
        persistence.attach(engine, nursery)
    run(engine, session, "SET", "k", "v")
    assert run(engine, session, "BGSAVE") == Status(b"Background saving started")
    assert load_file(str(tmp_path / "dump.rdb")).dbs[0].data == {b"k": b"v"}
    assert not engine.keyspace.before_write_hooks  # no view left hooked


def test_info_persistence_has_redis_fields_in_redis_order(real: object, tmp_path: Path) -> None:
    engine, _ = make_engine(tmp_path)
    ours = [line.split(":", 1)[0] for line in persistence.info_fields(engine)]
    theirs = list(real.info("persistence"))  # type: ignore[attr-defined]
    assert ours == theirs


def test_the_dump_file_name_follows_dir_and_dbfilename(tmp_path: Path) -> None:
    engine, session = make_engine(tmp_path / "sub", dbfilename="other.rdb")
    (tmp_path / "sub").mkdir()
    run(engine, session, "SET", "k", "v")
    run(engine, session, "SAVE")
    assert (tmp_path / "sub" / "other.rdb").exists()
    shutil.rmtree(tmp_path / "sub")


def test_zset_scores_survive_a_save(tmp_path: Path) -> None:
    engine, session = make_engine(tmp_path)
    run(engine, session, "ZADD", "z", "-inf", "a", 0.1, "b", "1e300", "c")
    run(engine, session, "SAVE")
    loaded = load_file(str(tmp_path / "dump.rdb")).dbs[0].data[b"z"]
    assert loaded == ZSet({b"a": float("-inf"), b"b": 0.1, b"c": 1e300})


# -- end to end through kvrepl-server (needs the integration hooks in cli/node/server) --------


def _wired() -> bool:
    from kvrepl.node import Node

    return hasattr(Node(), "load_dump")


needs_wiring = pytest.mark.skipif(not _wired(), reason="persistence hooks not wired into "
                                  "kvrepl.node / kvrepl.cli yet (see the integration diff)")


def start_cli(directory: Path, *args: str) -> tuple[object, int]:
    import subprocess
    import sys

    import redis
    from support import START_DEADLINE, free_port, no_retry

    port = free_port()
    repo = str(Path(__file__).resolve().parent.parent)
    process = subprocess.Popen(
        [sys.executable, "-m", "kvrepl", "--port", str(port), "--dir", str(directory),
         "--enable-debug-command", "local", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONPATH": repo})
    deadline = time.monotonic() + START_DEADLINE
    while True:
        try:
            # No retries: this loop polls (redis-py's backoff outlasts the start).
            client = redis.Redis(port=port, socket_timeout=5, retry=no_retry())
            client.execute_command("LASTSAVE")  # allowed while loading
            return process, port
        except redis.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError(process.stdout.read()) from None
            time.sleep(0.05)


@needs_wiring
def test_kvrepl_server_saves_on_sigterm(tmp_path: Path) -> None:
    import signal

    import redis

    process, port = start_cli(tmp_path, "--save", "3600 1")
    try:
        client = redis.Redis(port=port)
        client.set("k", "v")
        client.rpush("l", "a", "b")
        assert client.execute_command("DEBUG", "RELOAD") == b"OK"
        assert client.lrange("l", 0, -1) == [b"a", b"b"]
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    finally:
        process.kill()
    assert process.returncode == 0, output
    assert "Saving the final RDB snapshot before exiting." in output
    assert "DB saved on disk" in output
    assert load_file(str(tmp_path / "dump.rdb")).dbs[0].data == {
        b"k": b"v", b"l": deque([b"a", b"b"])}


async def resp(stream: trio.SocketStream, *args: object) -> bytes:
    """Send one command and read its whole reply (b"" if the server hangs up)."""
    from support import pack, reply_end

    await stream.send_all(pack(*args))
    reply = b""
    while reply_end(reply) is None:
        data = await stream.receive_some(65536)
        if not data:
            break
        reply += data
    return reply


@needs_wiring
async def test_kvrepl_server_loads_at_start_and_saves_on_shutdown_save(tmp_path: Path) -> None:
    from kvrepl import cli

    write_rdb(tmp_path / "dump.rdb", [(0, b"k", b"v", None), (0, b"gone", b"x", 1000)])
    config = Config(port=0, dir=str(tmp_path), save=())
    async with trio.open_nursery() as nursery:
        port = await nursery.start(cli.run, config)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        while b"loading:1" in await resp(stream, "INFO", "persistence"):
            await trio.sleep(0.01)
        assert await resp(stream, "GET", "k") == b"$1\r\nv\r\n"
        assert await resp(stream, "EXISTS", "gone") == b":0\r\n"
        assert await resp(stream, "SET", "k", "changed") == b"+OK\r\n"
        await resp(stream, "SHUTDOWN", "SAVE")  # no reply: the connection closes
    assert load_file(str(tmp_path / "dump.rdb")).dbs[0].data == {b"k": b"changed"}


@needs_wiring
async def test_kvrepl_server_refuses_a_bad_dump(tmp_path: Path) -> None:
    from kvrepl import cli

    bad = b"REDIS0010\xfe\x00\x00\x01"
    (tmp_path / "dump.rdb").write_bytes(bad)
    assert await cli.run(Config(port=0, dir=str(tmp_path), save=((1, 1),))) == 1
    assert (tmp_path / "dump.rdb").read_bytes() == bad


@needs_wiring
async def test_a_live_server_wires_bgsave_flushall_and_the_schedule(tmp_path: Path) -> None:
    server = Server(config=Config(save=((3600, 1),), dir=str(tmp_path), port=0, hz=100,
                                  enable_debug_command="local"))
    engine = server.engine
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        session = engine.new_session()
        run(engine, session, "SET", "k", "v")
        state = persistence.attach(engine)
        assert state.nursery is not None
        state.lastsave -= 3601
        with trio.fail_after(10):  # the cron starts a BGSAVE; wait until it is done
            while state.rdb_saves < 1 or state.bgsave is not None:
                await trio.sleep(0.01)
        assert (tmp_path / "dump.rdb").exists()
        assert state.changes_since_last_save == 0 and state.rdb_saves == 1
        run(engine, session, "FLUSHALL")
        assert load_file(str(tmp_path / "dump.rdb")).dbsize() == 0
        assert run(engine, session, "DEBUG", "RELOAD") is OK
        nursery.cancel_scope.cancel()


# -- the garbage-collector policy after a load ------------------------------------------------


@pytest.fixture
def gc_policy_installed():
    from kvrepl import gc_policy

    assert gc_policy.installed() is None
    policy = gc_policy.install()
    try:
        yield policy
    finally:
        gc_policy.uninstall()


async def test_loads_freeze_the_dataset_when_a_policy_is_installed(
        tmp_path: Path, gc_policy_installed) -> None:
    import gc

    write_rdb(tmp_path / "dump.rdb", [(0, b"l%d" % i, deque([b"a"]), None) for i in range(50)])
    engine, session = make_engine(tmp_path)
    policy = gc_policy_installed
    await persistence.load_on_startup(engine)
    assert policy.freezes == 2  # install, then the load
    loaded = engine.keyspace.dbs[0].data[b"l0"]  # a deque: always tracked
    assert gc.is_tracked(loaded) and not any(o is loaded for o in gc.get_objects())
    persistence.debug_reload(engine, [])
    assert policy.freezes == 3
    assert run(engine, session, "LRANGE", "l49", 0, -1) == [b"a"]


def test_loads_leave_the_collector_alone_without_a_policy(tmp_path: Path) -> None:
    import gc

    write_rdb(tmp_path / "dump.rdb", [(0, b"l", deque([b"a"]), None)])
    engine, _ = make_engine(tmp_path)
    persistence.load_file(engine)
    # Not frozen: the collector still sees the loaded value. (Not gc.get_freeze_count():
    # objects an earlier test froze may die meanwhile and lower it, as they did on 3.12.)
    loaded = engine.keyspace.dbs[0].data[b"l"]  # a deque: always tracked
    assert gc.is_tracked(loaded) and any(o is loaded for o in gc.get_objects())


# -- MISCONF after a failed BGSAVE (stop-writes-on-bgsave-error) --------------------------------


def test_a_failed_bgsave_stops_writes_as_redis_does(tmp_path: Path) -> None:
    """Both servers save into a directory that then disappears: BGSAVE fails, and until a
    save succeeds writes and PING answer MISCONF, reads still work, a write queued in MULTI
    makes EXEC abort; `stop-writes-on-bgsave-error no` lifts it."""
    import redis
    from support import ThreadedServer, poll

    real = RedisServer("--enable-protected-configs", "yes")  # CONFIG SET dir is protected
    ours = ThreadedServer(Config(save=(), dir=str(tmp_path),
                                 enable_protected_configs="yes")).start()
    clients = [ours.client(), real.client()]
    try:
        outcomes = []
        for index, client in enumerate(clients):
            gone = tmp_path / f"gone{index}"
            gone.mkdir()
            client.config_set("dir", str(gone))
            client.config_set("save", "3600 1")
            client.set("k", "v")
            gone.rmdir()
            client.bgsave()
            poll(lambda c=client: c.info("persistence")["rdb_bgsave_in_progress"] == 0
                 and c.info("persistence")["rdb_last_bgsave_status"] == "err",
                 "the BGSAVE has failed")
            seen = []
            for args in (("SET", "k", "w"), ("PING",), ("GET", "k"), ("INCR", "n")):
                try:
                    seen.append(client.execute_command(*args))
                except redis.ResponseError as err:
                    seen.append(str(err))
            pipe = client.pipeline(transaction=True)
            pipe.get("k").set("k", "x")
            try:
                seen.append(pipe.execute())
            except redis.ResponseError as err:
                seen.append(str(err))
            client.config_set("stop-writes-on-bgsave-error", "no")
            seen.append(client.set("k", "y"))
            client.config_set("stop-writes-on-bgsave-error", "yes")
            client.config_set("dir", str(tmp_path))
            client.bgsave()
            poll(lambda c=client: c.info("persistence")["rdb_bgsave_in_progress"] == 0
                 and c.info("persistence")["rdb_last_bgsave_status"] == "ok",
                 "a BGSAVE has succeeded")
            seen.append(client.set("k", "z"))
            outcomes.append(seen)
        assert outcomes[0] == outcomes[1]
        assert outcomes[0][0].startswith("MISCONF Redis is configured to save RDB snapshots")
        assert outcomes[0][1] == outcomes[0][0] and outcomes[0][2] == b"v"
        assert outcomes[0][-2:] == [True, True]
    finally:
        for client in clients:
            client.close()
        ours.stop()
        real.stop()
