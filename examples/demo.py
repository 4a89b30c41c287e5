"""The main scenario, end to end (`make demo`).

An application embeds a kvrepl master in its trio program and writes with plain calls;
redis-py and redis-cli (clients we did not write) use the same data over TCP. Replicas
follow it three ways: in-process (no socket), a second kvrepl-server process started with
--replicaof, and, when it is installed, a real redis-server. Every copy ends with the same
DEBUG DIGEST as the master.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import redis
import trio

import kvrepl


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_py_session(port: int) -> list[str]:
    """What an ordinary redis-py user does against the node (runs in a worker thread)."""
    client = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)
    lines = [f"redis-py   PING -> {client.ping()}",
             f"redis-py   GET greeting -> {client.get('greeting')!r}"]
    client.hset("user:1", mapping={"name": "Ada", "lang": "Python"})
    client.zadd("scores", {"ada": 3, "bob": 1, "cy": 2})
    with client.pipeline(transaction=True) as pipe:
        pipe.incr("visits").incr("visits").expire("visits", 600)
        lines.append(f"redis-py   MULTI INCR INCR EXPIRE EXEC -> {pipe.execute()}")
    client.close()
    return lines


def redis_cli(port: int, *args: str) -> str:
    if shutil.which("redis-cli") is None:
        return "(redis-cli is not installed: apt-get install redis-tools)"
    result = subprocess.run(["redis-cli", "-p", str(port), *args],
                            capture_output=True, text=True, timeout=10)
    return result.stdout.strip()


def wait_in_sync(port: int, master_offset: int, seconds: float = 30) -> redis.Redis:
    client = redis.Redis(port=port)
    deadline = time.monotonic() + seconds
    while True:
        try:
            info = client.info("replication")
            if (info.get("master_link_status") == "up"
                    and info.get("slave_repl_offset", -1) >= master_offset):
                return client
        except redis.ConnectionError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"replica on port {port} did not catch up")
        time.sleep(0.05)


async def main() -> None:
    processes: list[subprocess.Popen] = []
    scratch = tempfile.mkdtemp(prefix="kvrepl-demo-")
    try:
        # DEBUG DIGEST is refused to network clients by default (Redis 7.0's
        # enable-debug-command no); "local" lets loopback clients such as redis-cli run it.
        async with kvrepl.Master(port=0, enable_debug_command="local") as master, \
                kvrepl.Replica(follow=master) as local:
            port = master.port
            print(f"kvrepl master listening on 127.0.0.1:{port} (embedded in this program)")
            master.set(b"greeting", b"hello from the application")
            for line in await trio.to_thread.run_sync(redis_py_session, port):
                print(line)
            print(f"embedded   hgetall user:1 -> {master.hgetall(b'user:1')}")
            print(f"redis-cli  ZRANGE scores 0 -1 -> "
                  f"{await trio.to_thread.run_sync(redis_cli, port, 'ZRANGE', 'scores', '0', '-1')!r}")

            # A second kvrepl process and, if present, a real redis-server follow over TCP.
            kv_port = free_port()
            # Each replica in a scratch folder of its own: it stores what it receives as
            # dump.rdb, which a server started later in the same folder would load.
            kv_dir, redis_dir = os.path.join(scratch, "kvrepl"), os.path.join(scratch, "redis")
            os.makedirs(kv_dir)
            os.makedirs(redis_dir)
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "kvrepl", "--port", str(kv_port), "--save", "",
                 "--dir", kv_dir, "--enable-debug-command", "local",
                 "--replicaof", "127.0.0.1", str(port), "--repl-diskless-sync-delay", "0"],
                stdout=subprocess.DEVNULL, env=dict(os.environ)))
            followers = [("kvrepl-server replica", kv_port)]
            if shutil.which("redis-server"):
                redis_port = free_port()
                processes.append(subprocess.Popen(
                    ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                     "--save", "", "--dir", redis_dir, "--enable-debug-command", "yes",
                     "--replicaof", "127.0.0.1", str(port)], stdout=subprocess.DEVNULL))
                followers.append(("redis-server replica ", redis_port))
            for i in range(1000):
                master.set(f"bulk:{i}", i)
            master.execute_command("SET", "expiring", "soon", "EX", "300")
            offset = master.replication.master_repl_offset
            await local.wait_synced()
            print(f"\nmaster                 digest {master.execute_command('DEBUG', 'DIGEST')}")
            print(f"in-process replica     digest {local.execute_command('DEBUG', 'DIGEST')}")
            for name, follower_port in followers:
                client = await trio.to_thread.run_sync(wait_in_sync, follower_port, offset)
                follower_digest = await trio.to_thread.run_sync(
                    client.execute_command, "DEBUG", "DIGEST")
                print(f"{name}  digest {follower_digest}")
            # ROLE shows the offset each replica last acknowledged (they ACK once a second);
            # WAIT asks them all now, as a client's WAIT does.
            acked = await master.wait_for_replicas(len(followers) + 1, timeout=5)
            print(f"\n{acked} replicas acknowledged every write (WAIT)")
            print(f"master ROLE -> {master.execute_command('ROLE')}")
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)
        shutil.rmtree(scratch, ignore_errors=True)
    print("all stopped; demo done")


if __name__ == "__main__":
    trio.run(main)
