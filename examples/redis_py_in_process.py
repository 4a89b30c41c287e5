"""Code written for redis-py, run unchanged on an embedded kvrepl master and its replica:
``node.redis()`` is a real ``redis.Redis`` whose connections run in-process (no socket, no
thread). The node keeps its data in a folder: the script starts it twice, and the second
start continues from the dump the first one saved when its block ended.

    python examples/redis_py_in_process.py            # in a temporary folder, removed after
    python examples/redis_py_in_process.py FOLDER     # in FOLDER, kept: run it again
"""

from __future__ import annotations

import os
import sys
import tempfile

import redis
import trio

import kvrepl


def count_visit(r: redis.Redis, page: str) -> int:
    """Application code that knows only redis-py: a transaction with WATCH, a pipeline."""
    with r.pipeline() as pipe:
        while True:
            try:
                pipe.watch("visits")
                total = int(pipe.hget("visits", page) or 0) + 1
                pipe.multi()
                pipe.hset("visits", page, total)
                pipe.zadd("pages", {page: total})
                pipe.execute()
                return total
            except redis.WatchError:
                continue


async def run_once(folder: str) -> None:
    async with kvrepl.Master(dir=folder) as master, \
            kvrepl.Replica(follow=master) as replica:
        r = master.redis(decode_responses=True)
        print("visits kept from earlier runs:", r.hgetall("visits") or "none")
        async with master.pubsub(decode_responses=True) as news:
            news.subscribe("news")
            for page in ("home", "docs", "home"):
                count_visit(r, page)
                r.publish("news", f"visited {page}")
            messages = []
            async for message in news:
                if message["type"] == "message":
                    messages.append(message["data"])
                if len(messages) == 3:
                    break
        print("pub/sub:", messages)
        await replica.wait_synced()
        top = replica.redis(decode_responses=True).zrange("pages", 0, 0, desc=True,
                                                         withscores=True)
        print("the replica's most visited page:", top)
    print(f"saved in {os.path.join(folder, 'dump.rdb')}")


async def main() -> None:
    if len(sys.argv) > 1:
        os.makedirs(sys.argv[1], exist_ok=True)  # as redis-server, a node needs its dir
        await run_once(sys.argv[1])
        return
    with tempfile.TemporaryDirectory(prefix="kvrepl-example-") as folder:
        await run_once(folder)
        await run_once(folder)  # a new node: loads what the first one saved


if __name__ == "__main__":
    trio.run(main)
