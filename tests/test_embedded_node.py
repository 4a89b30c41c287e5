"""The embedded API's traps, as a new user meets them: the shared session, unchecked
values, expiries as timedelta, configuration as on a server, persistence, follow= forms,
and what help() shows."""

from __future__ import annotations

import inspect
import pydoc
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import redis
import trio
import trio.testing
from support import RedisServer

import kvrepl
from kvrepl.config import ConfigError


async def test_subscribe_cannot_wedge_the_shared_session() -> None:
    async with kvrepl.Master() as master:
        for command in ("SUBSCRIBE", "psubscribe", "SSUBSCRIBE", "MONITOR"):
            args = () if command == "MONITOR" else ("ch",)
            with pytest.raises(kvrepl.ReplyError, match=r"node\.redis\(\)\.pubsub\(\)"):
                master.execute_command(command, *args)
        assert master.set("k", "v") is True  # still a plain session
        assert master.dbsize() == 1
        # What it points to works: a connection of its own.
        pubsub = master.redis().pubsub()
        pubsub.subscribe("ch")
        assert master.publish("ch", "hello") == 1
        assert pubsub.get_message()["type"] == "subscribe"
        assert pubsub.get_message()["data"] == b"hello"


@pytest.mark.parametrize("value", [None, True, False, [1, 2], {"a": 1}, object()])
async def test_invalid_values_raise_data_error(value: object) -> None:
    async with kvrepl.Master() as master:
        expected = (f"Invalid input of type: '{type(value).__name__}'. Convert to a bytes, "
                    "string, int or float first.")
        for call in (lambda: master.set("k", value), lambda: master.set(value, "v"),
                     lambda: master.hset("h", "f", value), lambda: master.rpush("l", value),
                     lambda: master.execute_command("SET", "k", value)):
            with pytest.raises(redis.DataError) as raised:
                call()
            assert str(raised.value) == expected
            assert isinstance(raised.value, kvrepl.DataError)
        assert master.dbsize() == 0
        # What redis-py's encoder accepts, the node does too.
        master.set("n", 1.5)
        master.set("i", 7)
        master.set("b", bytearray(b"xy"))
        assert master.mget(["n", "i", "b"]) == [b"1.5", b"7", b"xy"]


async def test_expiries_as_timedelta_and_datetime() -> None:
    async with kvrepl.Master() as master:
        assert master.set("ex", "v", ex=timedelta(seconds=50)) is True
        assert 0 < master.ttl("ex") <= 50
        master.set("px", "v", px=timedelta(milliseconds=50_500))
        assert 0 < master.pttl("px") <= 50_500
        later = datetime.now(timezone.utc) + timedelta(seconds=100)
        master.set("exat", "v", exat=later)
        assert 0 < master.ttl("exat") <= 100
        master.set("pxat", "v", pxat=later)
        assert 0 < master.pttl("pxat") <= 100_000
        assert master.expire("ex", timedelta(seconds=500)) is True
        assert 50 < master.ttl("ex") <= 500
        assert master.pexpire("px", timedelta(seconds=600)) is True
        assert 500_000 < master.pttl("px") <= 600_000
        assert master.expireat("exat", later + timedelta(seconds=1000)) is True
        assert 1000 < master.ttl("exat") <= 1100
        assert master.setex("se", timedelta(seconds=30), "v") is True
        assert 0 < master.ttl("se") <= 30
        assert master.getex("se", ex=timedelta(seconds=300)) == b"v"
        assert 30 < master.ttl("se") <= 300


async def test_options_construct_as_on_a_server(tmp_path: Path) -> None:
    master = kvrepl.Master(save="")
    assert master.config.save == ()
    assert kvrepl.Master(save="60 1000 300 10").config.save == ((60, 1000), (300, 10))
    configured = kvrepl.Master(maxclients=7, requirepass="pw", replica_read_only="no")
    assert (configured.config.maxclients, configured.config.requirepass,
            configured.config.replica_read_only) == (7, "pw", False)
    with pytest.raises(ConfigError):
        kvrepl.Master(no_such_option=1)
    with pytest.raises(TypeError):
        kvrepl.Master(config=kvrepl.Config(), save="")
    conf = tmp_path / "node.conf"
    conf.write_text(f"dir {tmp_path}\ndbfilename from-file.rdb\nsave 900 1\n")
    from_file = kvrepl.Master(conf, save="")  # options override the file
    assert (from_file.config.dir, from_file.config.dbfilename, from_file.config.save) == \
        (str(tmp_path), "from-file.rdb", ())
    assert from_file.load_dump and not kvrepl.Master().load_dump


async def test_a_dump_in_dir_is_loaded_at_start() -> None:
    """A dump written by a real redis-server is what the node starts with."""
    server = RedisServer()
    try:
        client = server.client()
        client.set("k", "v")
        client.rpush("l", "a", "b")
        client.save()
        client.close()
        async with kvrepl.Master(dir=server.dir) as master:
            assert master.get("k") == b"v"
            assert master.lrange("l", 0, -1) == [b"a", b"b"]
        async with kvrepl.Master(dir=server.dir, persist=False) as master:
            assert master.dbsize() == 0  # asked not to
    finally:
        server.stop()


async def test_saved_at_exit_and_loaded_again(tmp_path: Path) -> None:
    async with kvrepl.Master(dir=str(tmp_path)) as master:  # redis-server's save points
        assert master.config.save == ((3600, 1), (300, 100), (60, 10000))
        master.set("k", "v")
        master.zadd("z", {"m": 1.5})
    assert (tmp_path / "dump.rdb").exists()
    async with kvrepl.Master(dir=str(tmp_path)) as master:
        assert master.get("k") == b"v"
        assert master.zscore("z", "m") == 1.5
    # Without save points there is no final save, as redis-server's shutdown.
    async with kvrepl.Master(dir=str(tmp_path), dbfilename="other.rdb", save="") as master:
        master.set("k", "v")
    assert not (tmp_path / "other.rdb").exists()
    assert kvrepl.Master().config.save == ()  # an embedded node that keeps no file


@pytest.fixture
def master_with_password() -> RedisServer:
    server = RedisServer()
    client = server.client()
    client.set("k", "from redis")
    client.config_set("repl-diskless-sync-delay", 0)  # no waiting for more replicas
    client.config_set("requirepass", "s3cret")
    client.close()
    yield server
    server.stop()


async def test_every_follow_form_connects(master_with_password: RedisServer) -> None:
    port = master_with_password.port
    for follow in (f"redis://default:s3cret@127.0.0.1:{port}",
                   f"redis://:s3cret@127.0.0.1:{port}/0"):
        async with kvrepl.Replica(follow=follow) as replica:
            assert (replica.config.masterauth, replica.master) == ("s3cret", ("127.0.0.1", port))
            with trio.fail_after(10):
                await replica.wait_synced()
            assert replica.get("k") == b"from redis"
    async with kvrepl.Master(port=0) as master:
        master.set("k", "from kvrepl")
        for follow in (("127.0.0.1", master.port), f"127.0.0.1:{master.port}",
                       f"redis://127.0.0.1:{master.port}", master):
            async with kvrepl.Replica(follow=follow) as replica:
                with trio.fail_after(10):
                    await replica.wait_synced()
                assert replica.get("k") == b"from kvrepl", follow


@pytest.mark.parametrize("follow", ["rediss://h:6379", "rediss://h:1/2", "h", "h:port", "http://h:1",
                                    "redis://h:1/3", 6379])
def test_bad_follow_forms_say_why(follow: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        kvrepl.Replica(follow=follow)  # type: ignore[arg-type]


def test_help_documents_every_method_and_the_options() -> None:
    text = pydoc.render_doc(kvrepl.Master, renderer=pydoc.plaintext)
    assert "-- strings" not in text and "# --" not in text
    for option in ("**options", "redis.conf", "dbfilename", "persist", "port"):
        assert option in text
    for name, member in inspect.getmembers(kvrepl.Replica):
        if not name.startswith("_") and callable(member):
            assert inspect.getdoc(member), f"{name} has no docstring"
    assert "follow" in (kvrepl.Replica.__doc__ or "")
    assert str(inspect.signature(kvrepl.Master.getset)) == "(self, name, value)"


async def test_direct_methods_exist_for_common_calls() -> None:
    async with kvrepl.Master() as master:
        assert master.ping() is True
        master.set("n", "1")
        assert master.getset("n", "2") == b"1"
        assert master.incrbyfloat("n", 0.5) == 2.5
        assert master.incrby("i", 3) == 3
        assert master.hincrbyfloat("h", "f", 1.25) == 1.25
        assert master.zincrby("z", 2, "m") == 2.0
        assert master.pfadd("p", "a", "b") == 1 and master.pfcount("p") == 2
        master.rpush("l", "a")
        assert master.lset("l", 0, "x") is True
        assert master.lindex("l", 0) == b"x"
        assert master.smembers("none") == set()
        with pytest.raises(TypeError):
            master.getset("only-one")  # Python's own check, as a real method's


async def test_blocking_pops_awaited(redis_server: RedisServer) -> None:
    """Awaited, a blocking pop waits for its data as on a server; replies in redis-py's
    shapes (compared with redis-py on a real server, data already there)."""
    real = redis_server.client()
    real.flushall()
    async with kvrepl.Master() as master:
        for client in (master, real):
            client.rpush("l", "a", "b", "c")
            client.zadd("z", {"m": 1.5, "n": 2})
        for method, args in (("blpop", (["l"], 1)), ("brpop", ("l", 1)),
                             ("bzpopmin", ("z", 1)), ("bzpopmax", (["z"], 1)),
                             ("blmove", ("l", "l2", 1)), ("brpoplpush", ("l2", "l3", 1))):
            assert await getattr(master, method)(*args) == getattr(real, method)(*args)
        with trio.fail_after(10):
            assert await master.blpop("empty", 0.05) is None
            async with trio.open_nursery() as nursery:
                got: list[object] = []

                async def pop() -> None:
                    got.append(await master.blpop(["empty", "other"], 0))

                nursery.start_soon(pop)
                await trio.testing.wait_all_tasks_blocked()
                assert got == []
                master.rpush("other", "late")  # wakes the waiter, as a server's client
            assert got == [(b"other", b"late")]
    real.close()


async def test_async_pubsub() -> None:
    async with kvrepl.Master() as master:
        received: list[object] = []
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery, master.pubsub() as pubsub:
                pubsub.subscribe("news")

                async def listen() -> None:
                    async for message in pubsub:
                        received.append((message["type"], message["data"]))
                        if message["data"] == b"last":
                            return

                nursery.start_soon(listen)
                await trio.testing.wait_all_tasks_blocked()
                for text in ("one", "two", "last"):
                    assert master.publish("news", text) == 1
                    await trio.testing.wait_all_tasks_blocked()
        assert received == [("subscribe", 1), ("message", b"one"), ("message", b"two"),
                            ("message", b"last")]


async def test_async_pubsub_iteration_ends_when_the_node_stops() -> None:
    ended = trio.Event()
    seen: list[object] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            async with kvrepl.Master() as master:
                pubsub = master.pubsub(decode_responses=True)
                pubsub.psubscribe("n*")

                async def drain() -> None:
                    async for message in pubsub:
                        seen.append(message["data"])
                    ended.set()

                nursery.start_soon(drain)
                await trio.testing.wait_all_tasks_blocked()
                master.publish("nx", "m")
                await trio.testing.wait_all_tasks_blocked()
    assert ended.is_set()
    assert seen == [1, "m"]


async def test_changes_as_a_context_manager() -> None:
    async with kvrepl.Master() as master:
        async with master.changes() as changes:
            master.set("k", "v")
            assert await changes.__anext__() == (0, b"SET", (b"k", b"v"))
        master.set("after", "the block")
        with pytest.raises(StopAsyncIteration):  # detached: nothing more, no waiting
            await changes.__anext__()


def test_a_dir_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Can't chdir to"):
        kvrepl.Master(dir=str(tmp_path / "missing"))


async def test_in_process_writes_are_on_disk_before_the_call_returns(tmp_path: Path) -> None:
    """appendfsync always: a write through node.redis(), a pipeline or a data method is in
    the AOF when the call returns, as before a server's reply."""
    async with kvrepl.Master(dir=str(tmp_path), appendonly="yes", appendfsync="always",
                             save="") as master:
        aof = tmp_path / "appendonlydir" / "appendonly.aof.1.incr.aof"
        r = master.redis()
        r.set("plain", "v")
        assert b"plain" in aof.read_bytes()
        r.pipeline().hset("h", "f", "v").rpush("l", "x").execute()
        assert b"rpush" in aof.read_bytes().lower()
        master.set("direct", "v")
        assert b"direct" in aof.read_bytes()
        await master.blpop("l", 1)
        assert b"lpop" in aof.read_bytes().lower()
    async with kvrepl.Master(dir=str(tmp_path), appendonly="yes") as again:
        assert (again.get("plain"), again.get("direct"), again.hget("h", "f")) == \
            (b"v", b"v", b"v")


async def test_execute_command_gives_stream_ranges_as_values(redis_server: RedisServer) -> None:
    """Stream ranges are encoded by the engine ahead of the reply (Raw RESP bytes): the
    embedded API hands them over as values, as redis-py reads them from a redis-server
    (node.execute_command("XRANGE") returned the RESP bytes themselves)."""
    real = redis_server.client(protocol=2)
    real.flushall()
    real.response_callbacks.clear()  # the values as read, before redis-py's reshaping
    commands = [("XADD", "s", "1-1", "f", "v", "g", "w"), ("XADD", "s", "2-1", "f", "x"),
                ("XRANGE", "s", "-", "+"), ("XREVRANGE", "s", "+", "-", "COUNT", "1"),
                ("XREAD", "COUNT", "2", "STREAMS", "s", "0"), ("XGROUP", "CREATE", "s", "g", "0"),
                ("XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">"),
                ("XCLAIM", "s", "g", "d", "0", "1-1"), ("XAUTOCLAIM", "s", "g", "e", "0", "0"),
                ("XRANGE", "nosuch", "-", "+")]
    async with kvrepl.Master() as master:
        for command in commands:
            expected = real.execute_command(*command)
            expected = True if expected == b"OK" else expected  # the node's True for OK
            assert master.execute_command(*command) == expected, command
        # XINFO STREAM FULL's entries too (a map: a dict on the node's session)
        entries = master.execute_command("XINFO", "STREAM", "s", "FULL")[b"entries"]
        assert entries == [[b"1-1", [b"f", b"v", b"g", b"w"]], [b"2-1", [b"f", b"x"]]]


# Issue 9's families as redis-py names them (its Redis 8 additions left out).
FAMILY_METHODS = (
    "xadd xlen xrange xrevrange xread xreadgroup xack xdel xtrim xpending xpending_range "
    "xclaim xautoclaim xgroup_create xgroup_createconsumer xgroup_delconsumer "
    "xgroup_destroy xgroup_setid xinfo_stream xinfo_groups xinfo_consumers "
    "setbit getbit bitcount bitpos bitop bitfield bitfield_ro pfadd pfcount pfmerge "
    "geoadd geodist geohash geopos geosearch geosearchstore georadius georadiusbymember"
).split()


async def test_family_methods_as_redis_py(redis_server: RedisServer) -> None:
    """Master and Replica have redis-py's method for each command of the new families
    (the streams' were missing); BITFIELD's operation builder runs on the node too."""
    for name in FAMILY_METHODS:
        assert callable(getattr(kvrepl.Master, name, None)), name
        ours, theirs = (list(inspect.signature(getattr(cls, name)).parameters)
                        for cls in (kvrepl.Master, redis.Redis))
        assert ours == theirs, name
    real = redis_server.client()
    real.flushall()
    async with kvrepl.Master() as master:
        for client in (master, real):
            client.xadd("s", {"f": "v"}, id="1-1")
        replies = [[client.bitfield("bf").set("u8", 0, 255).incrby("u8", 0, 10)
                    .get("i4", 0).execute(),
                    client.bitfield("bf", default_overflow="FAIL").incrby("u8", 0, 300)
                    .execute(), client.xread({"s": "0-0"}, count=1, block=10),
                    client.xgroup_create("s", "g", id="0"),
                    client.xreadgroup("g", "c", {"s": ">"}, noack=True)]
                   for client in (master, real)]
        assert replies[0] == replies[1]
