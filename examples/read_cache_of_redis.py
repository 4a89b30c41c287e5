"""A kvrepl replica of a real redis-server: the application reads its local copy with plain
calls at dict speed, and learns about every change without polling.

    python examples/read_cache_of_redis.py                   # starts a redis-server of its own
    python examples/read_cache_of_redis.py 127.0.0.1 6379    # follows yours (never writes to it)
    python examples/read_cache_of_redis.py --watch [HOST PORT]   # keep printing changes

Without an address it starts redis-server on a free port in a temporary folder, writes a few
keys of every type to it, prints each change as the local copy sees it, then stops the server
and removes the folder. Given an address it syncs, prints what it holds and stops; --watch
keeps following until Ctrl-C.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import redis
import trio

import kvrepl
from kvrepl.node import ChangeStream

SYNC_SECONDS = 20  # a master that has not synced us by then is reported, not waited for

# What the demonstration writes to the redis-server it started, one command a line.
DEMO_WRITES = [
    ("SET", "greeting", "hello"),
    ("HSET", "user:1", "name", "Ada", "lang", "Python"),
    ("RPUSH", "queue", "job-1", "job-2"),
    ("SADD", "tags", "fast", "small"),
    ("ZADD", "scores", "3", "ada", "1", "bob"),
    ("INCR", "visits"),
    ("EXPIRE", "greeting", "300"),
    ("HDEL", "user:1", "lang"),
    ("DEL", "tags"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def local_value(cache: kvrepl.Node, db: int, key: bytes) -> str:
    """The local copy of ``key``, read with the call its type needs."""
    cache.select(db)
    kind = bytes(cache.type(key)).decode()
    readers = {
        "string": cache.get,
        "hash": cache.hgetall,
        "list": lambda k: cache.lrange(k, 0, -1),
        "set": lambda k: sorted(cache.smembers(k)),
        "zset": lambda k: cache.zrange(k, 0, -1, withscores=True),
    }
    if kind == "none":
        return "gone"
    reader = readers.get(kind)
    value = reader(key) if reader else f"({kind} value)"
    ttl = cache.ttl(key)
    return f"{kind} {value!r}" + (f" (ttl {ttl} s)" if ttl >= 0 else "")


def describe(cache: kvrepl.Node, change: kvrepl.Change) -> str:
    command = change.command.decode(errors="backslashreplace")
    if not change.args:
        return f"db {change.db}: {command}"
    key = change.args[0]
    return f"db {change.db}: {command} {key!r} -> local copy now {local_value(cache, change.db, key)}"


def start_redis(directory: str) -> tuple[subprocess.Popen, int]:
    """A redis-server of this example's own, on a free loopback port, working in
    ``directory``; returns once it answers."""
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed (make redis, or apt-get install "
                         "redis-server); or pass the HOST PORT of a running one")
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", directory,
         "--save", "", "--appendonly", "no",
         # Redis 7.0 waits 5 s by default before a diskless full sync, for more replicas
         "--repl-diskless-sync-delay", "0"], stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            return process, port
        except redis.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise SystemExit("the redis-server this example started did not answer") \
                    from None
            time.sleep(0.05)
        finally:
            client.close()


async def follow(host: str, port: int, demo: bool, watch: bool) -> bool:
    """Follow the master at host:port; False if it did not sync us in time."""
    async with kvrepl.Replica(follow=(host, port)) as cache:
        print(f"connecting to the master at {host}:{port}")
        with trio.move_on_after(SYNC_SECONDS):
            await cache.wait_synced()
        if not cache.following.link_up:
            print(f"no master synced us from {host}:{port} within {SYNC_SECONDS} s "
                  "(is a redis-server listening there?)", file=sys.stderr)
            return False
        print(f"synced {cache.dbsize()} keys from {host}:{port}")
        changes = cache.changes()  # subscribed before the demonstration writes
        if demo:
            await demonstrate(cache, changes, port)
        elif not watch:
            for key in sorted(cache.keys())[:5]:
                print(f"  {key!r}: {local_value(cache, 0, key)}")
            print("done (--watch follows the changes)")
        if watch:
            print("watching changes (Ctrl-C to stop)")
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(print_changes, cache, changes)
                    async for _ in signals:  # Ctrl-C: stop watching, clean up, exit 0
                        nursery.cancel_scope.cancel()
                        break
    return True


async def print_changes(cache: kvrepl.Node, changes: ChangeStream) -> None:
    async for change in changes:
        print(describe(cache, change))


async def demonstrate(cache: kvrepl.Node, changes: ChangeStream, port: int) -> None:
    """Write to the master one command at a time; after each, print the change the local
    copy applied and what it holds then."""
    print("writing to the master; the local copy follows:")
    client = redis.Redis(port=port)
    try:
        for command in DEMO_WRITES:
            print(f"  master <- {' '.join(command)}")
            await trio.to_thread.run_sync(lambda c=command: client.execute_command(*c))
            with trio.fail_after(SYNC_SECONDS):
                change = await changes.__anext__()
            print(f"  replica: {describe(cache, change)}")
    finally:
        client.close()
    print("the local copy saw every write; done")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("host", nargs="?", help="the master's host (default: start one)")
    parser.add_argument("port", nargs="?", type=int, default=6379)
    parser.add_argument("--watch", action="store_true",
                        help="keep printing changes until Ctrl-C")
    args = parser.parse_args()
    if args.host is not None:
        return 0 if trio.run(follow, args.host, args.port, False, args.watch) else 1
    directory = tempfile.mkdtemp(prefix="kvrepl-read-cache-")
    process = None
    try:
        process, port = start_redis(directory)
        print(f"no master given: started redis-server on 127.0.0.1:{port} in {directory}")
        return 0 if trio.run(follow, "127.0.0.1", port, True, args.watch) else 1
    finally:
        if process is not None:
            process.terminate()
            process.wait(10)
            print("stopped that redis-server and removed its folder")
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
