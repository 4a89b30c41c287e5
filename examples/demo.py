"""The main scenario, end to end: an embedded kvrepl node that real Redis clients talk to.

Run with `make demo`. The application owns a kvrepl Master inside its trio program, writes
with plain method calls, and a redis-py client and redis-cli (clients we did not write)
read and write the same data over TCP.
"""

from __future__ import annotations

import shutil
import subprocess

import redis
import trio

import kvrepl


def redis_py_session(port: int) -> list[str]:
    """What an ordinary redis-py user does against the node (runs in a worker thread)."""
    client = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)
    lines = [f"redis-py  PING -> {client.ping()}"]
    lines.append(f"redis-py  GET greeting -> {client.get('greeting')!r}")
    client.hset("user:1", mapping={"name": "Ada", "lang": "Python"})
    client.zadd("scores", {"ada": 3, "bob": 1, "cy": 2})
    lines.append(f"redis-py  ZRANGE scores 0 -1 -> {client.zrange('scores', 0, -1)}")
    with client.pipeline(transaction=True) as pipe:
        pipe.incr("visits").incr("visits").expire("visits", 60)
        lines.append(f"redis-py  MULTI/INCR/INCR/EXPIRE/EXEC -> {pipe.execute()}")
    client.close()
    return lines


def redis_cli(port: int, *args: str) -> str:
    if shutil.which("redis-cli") is None:
        return "(redis-cli is not installed: apt-get install redis-tools)"
    result = subprocess.run(["redis-cli", "-p", str(port), *args],
                            capture_output=True, text=True, timeout=10)
    return result.stdout.strip()


async def main() -> None:
    async with kvrepl.Master(port=0) as master:
        print(f"kvrepl master listening on 127.0.0.1:{master.port}")
        master.set(b"greeting", b"hello from the application")
        for line in await trio.to_thread.run_sync(redis_py_session, master.port):
            print(line)
        # What the clients wrote is in the application's own store, at dict speed.
        print(f"embedded  hgetall user:1 -> {master.hgetall(b'user:1')}")
        print(f"embedded  get visits -> {master.get(b'visits')!r}, ttl {master.ttl(b'visits')}")
        cli = await trio.to_thread.run_sync(redis_cli, master.port, "DBSIZE")
        print(f"redis-cli DBSIZE -> {cli}")
        print(f"redis-cli TYPE scores -> "
              f"{await trio.to_thread.run_sync(redis_cli, master.port, 'TYPE', 'scores')}")
    print("master stopped; demo done")


if __name__ == "__main__":
    trio.run(main)
