"""The shell practice, scripted: two kvrepl-server processes, one a replica of the other.

    kvrepl-server --port 6379
    kvrepl-server --port 6380 --replicaof 127.0.0.1 6379

Each process works in a temporary folder of its own (--dir), removed at the end: a replica
stores what it received as dump.rdb, and a server started later in the same folder would
load it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time

import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(directory: str, *args: str) -> subprocess.Popen:
    # DEBUG DIGEST below comes from this machine: allow it from local connections only, as a
    # Redis 7 user would (enable-debug-command is "no" by default).
    os.makedirs(directory)
    return subprocess.Popen([sys.executable, "-m", "kvrepl", "--save", "", "--dir", directory,
                             "--enable-debug-command", "local", *args],
                            stdout=subprocess.DEVNULL, env=dict(os.environ))


def wait_until(check, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if check():
                return
        except redis.ConnectionError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting until {what}")
        time.sleep(0.05)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="kvrepl-two-processes-") as scratch:
        run(scratch)


def run(scratch: str) -> None:
    master_port, replica_port = free_port(), free_port()
    # A master waits repl-diskless-sync-delay (5 s, as in Redis) before a full sync, for
    # more replicas to join it; there is only one here.
    processes = [start(os.path.join(scratch, "master"), "--port", str(master_port),
                       "--repl-diskless-sync-delay", "0")]
    try:
        master = redis.Redis(port=master_port, decode_responses=True)
        wait_until(master.ping, "the master answers")
        for i in range(100):
            master.set(f"key:{i}", i)
        processes.append(start(os.path.join(scratch, "replica"), "--port", str(replica_port),
                               "--replicaof", "127.0.0.1", str(master_port)))
        replica = redis.Redis(port=replica_port, decode_responses=True)
        wait_until(lambda: replica.info("replication")["master_link_status"] == "up",
                   "the replica is in sync")
        master.set("live", "written after the sync")
        offset = master.info("replication")["master_repl_offset"]
        wait_until(lambda: replica.info("replication")["slave_repl_offset"] >= offset,
                   "the replica caught up")
        print(f"master  :{master_port} dbsize={master.dbsize()} "
              f"digest={master.execute_command('DEBUG', 'DIGEST')}")
        print(f"replica :{replica_port} dbsize={replica.dbsize()} "
              f"digest={replica.execute_command('DEBUG', 'DIGEST')}")
        print(f"replica GET live -> {replica.get('live')!r}")
        print(f"replica ROLE -> {replica.execute_command('ROLE')}")
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)


if __name__ == "__main__":
    main()
