"""A kvrepl replica of a real redis-server: the application reads its local copy with plain
calls at dict speed, and learns about every change without polling.

    redis-server --port 6379 &
    python examples/read_cache_of_redis.py 127.0.0.1 6379
"""

import sys

import trio

import kvrepl


async def main(host: str, port: int) -> None:
    async with kvrepl.Replica(follow=(host, port)) as cache:
        await cache.wait_synced()
        print(f"synced {cache.dbsize()} keys from {host}:{port}; watching changes "
              "(write to the master with redis-cli; Ctrl-C to stop)")
        async for change in cache.changes():
            key = change.args[0] if change.args else b""
            print(f"db {change.db}: {change.command.decode()} {key!r} -> "
                  f"local copy now {cache.get(key) if key else None!r}")


if __name__ == "__main__":
    host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 6379
    trio.run(main, host, port)
