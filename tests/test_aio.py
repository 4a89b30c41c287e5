"""kvrepl from asyncio: ``kvrepl.in_asyncio`` runs nodes on the asyncio loop, and
``node.aredis()`` is redis-py's asyncio client talking to them in-process. The same
redis.asyncio calls against a real redis-server are the oracle."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import pytest
import redis.asyncio
from support import RedisServer

import kvrepl

Script = Callable[[redis.asyncio.Redis, redis.asyncio.Redis], Awaitable[list[object]]]


async def _workload(r: redis.asyncio.Redis, other: redis.asyncio.Redis) -> list[object]:
    """redis.asyncio's API: commands, a transaction pipeline, WATCH, pub/sub, a blocking
    pop that waits for another client's push, RESP errors."""
    seen: list[object] = []
    await r.flushall()
    seen.append(await r.set("k", "v"))
    seen.append(await r.get("k"))
    seen.append(await r.incrby("n", 5))
    async with r.pipeline(transaction=True) as pipe:
        pipe.rpush("l", "a", "b").lrange("l", 0, -1).hset("h", mapping={"f": "1"})
        seen.append(await pipe.execute())
    async with r.pipeline() as pipe:  # WATCH, changed by another client: the EXEC fails
        await pipe.watch("n")
        await other.incr("n")
        pipe.multi()
        pipe.incr("n")
        with pytest.raises(redis.WatchError):
            await pipe.execute()
    seen.append(await r.get("n"))
    pubsub = r.pubsub()
    await pubsub.subscribe("news")
    seen.append(await pubsub.get_message(timeout=5))
    seen.append(await other.publish("news", "hello"))
    message = await pubsub.get_message(timeout=5)
    seen.append((message["type"], message["channel"], message["data"]))
    await pubsub.aclose()
    waiter = asyncio.create_task(r.blpop(["jobs"], timeout=10))
    # Until the pop is parked on the server (the caller bounds the whole workload).
    while not any(client["cmd"] == "blpop" for client in await other.client_list()):
        await asyncio.sleep(0.01)
    seen.append(await other.rpush("jobs", "job-1"))
    seen.append(await asyncio.wait_for(waiter, 10))
    with pytest.raises(redis.ResponseError) as raised:
        await r.lpush("k", "x")
    seen.append(str(raised.value))
    return seen


def test_aredis_runs_redis_asyncio_as_on_redis_server(redis_server: RedisServer) -> None:
    async def against_kvrepl() -> list[object]:
        async with kvrepl.in_asyncio(kvrepl.Master()) as master:
            r, other = master.aredis(), master.aredis()
            try:
                result = await asyncio.wait_for(_workload(r, other), 30)
            finally:
                await r.aclose()
                await other.aclose()
            assert master.get("k") == b"v"  # the data methods, from asyncio code
            return result

    async def against_redis() -> list[object]:
        r = redis.asyncio.Redis(port=redis_server.port)
        other = redis.asyncio.Redis(port=redis_server.port)
        try:
            return await asyncio.wait_for(_workload(r, other), 30)
        finally:
            await r.aclose()
            await other.aclose()

    ours = asyncio.run(against_kvrepl())
    assert ours == asyncio.run(against_redis())
    assert ours[1] == b"v" and tuple(ours[-2]) == (b"jobs", b"job-1")


def test_master_and_replica_in_one_asyncio_program() -> None:
    async def main() -> None:
        master = kvrepl.Master()
        async with kvrepl.in_asyncio(master, kvrepl.Replica(follow=master)) as (_, replica):
            r = master.aredis(decode_responses=True, protocol=3)
            await r.set("k", "v")
            assert await r.wait(1, 10_000) == 1  # the replica acknowledged the write
            assert replica.get("k") == b"v"
            replica_client = replica.aredis()
            with pytest.raises(redis.ReadOnlyError):
                await replica_client.set("k", "w")
            await r.aclose()
            await replica_client.aclose()

    asyncio.run(main())


def test_in_asyncio_reports_a_node_that_cannot_start() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()

    async def main() -> None:
        async with kvrepl.in_asyncio(kvrepl.Master(port=taken.getsockname()[1])):
            pass  # pragma: no cover - it cannot start

    try:
        with pytest.raises(BaseException) as raised:  # noqa: PT011 - trio's own group
            asyncio.run(main())
        assert "Address already in use" in repr(raised.value) or \
            "address already in use" in repr(raised.value).lower()
    finally:
        taken.close()


def test_aredis_needs_a_running_node() -> None:
    async def main() -> None:
        r = kvrepl.Master().aredis()
        with pytest.raises(redis.ConnectionError, match="not running"):
            await r.ping()

    asyncio.run(main())
