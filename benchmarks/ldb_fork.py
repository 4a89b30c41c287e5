"""The start-up cost of a SCRIPT DEBUG YES session, kvrepl against redis-server.

    python benchmarks/ldb_fork.py [--keys 100000 1000000] [--rounds 5] [--hashes]

Redis forks for a YES session; kvrepl copies the keyspace (kvrepl.store.clone) and makes the
child's engine and Lua runtime, synchronously, before the session's thread starts: the node
serves no one meanwhile. Measured from the client: EVAL sent to the first stop's logs
received, a fresh session each round, on DEBUG POPULATE's string keys (``--hashes``: as many
hashes of 10 fields instead); redis-server's own ``latest_fork_usec`` is shown beside it.
Asserts nothing; prints the range over the rounds and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (  # noqa: E402
    HOST,
    Options,
    Server,
    log,
    markdown_table,
    median,
    python_env,
    resp_command,
    running,
)
from benchmarks.rdb import kvrepl_command, redis_command  # noqa: E402

SCRIPT = b"return 1"


def _pack(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def _read_until(sock: socket.socket, end: bytes) -> bytes:
    data = b""
    while not data.endswith(end):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        data += chunk
    return data


def session_start(port: int) -> float:
    """Seconds from the EVAL to the first stop of a fresh YES session (then ended)."""
    with socket.create_connection((HOST, port), timeout=120) as sock:
        sock.sendall(_pack(b"SCRIPT", b"DEBUG", b"YES"))
        _read_until(sock, b"+OK\r\n")
        started = time.perf_counter()
        sock.sendall(_pack(b"EVAL", SCRIPT, b"0"))
        _read_until(sock, b"return 1\r\n")
        took = time.perf_counter() - started
        sock.sendall(_pack(b"c"))
        while sock.recv(65536):
            pass  # until the session closes the connection
    return took


def populate(port: int, keys: int, hashes: bool) -> None:
    if not hashes:
        resp_command(port, b"DEBUG", b"POPULATE", str(keys).encode(), timeout=600)
        return
    fields = [part for i in range(10) for part in (b"f%d" % i, b"v%d" % i)]
    with socket.create_connection((HOST, port), timeout=600) as sock:
        for start in range(0, keys, 1000):
            batch = b"".join(_pack(b"HSET", b"h:%d" % i, *fields)
                             for i in range(start, min(start + 1000, keys)))
            sock.sendall(batch)
            _read_until_count(sock, min(1000, keys - start))


def _read_until_count(sock: socket.socket, count: int) -> None:
    data = b""
    while data.count(b"\r\n") < count:
        data += sock.recv(65536)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--hashes", action="store_true")
    args = parser.parse_args()
    options = Options(rounds=args.rounds)
    rows = []
    for keys in args.keys:
        with tempfile.TemporaryDirectory(prefix="kvrepl-ldbfork-") as root:
            commands = {"kvrepl": kvrepl_command(options), "redis": redis_command("redis-server")}
            times: dict[str, list[float]] = {}
            fork_usec: list[int] = []
            for name, command in commands.items():
                workdir = Path(root) / name
                workdir.mkdir()
                with running(Server(name, command, workdir, env=python_env())) as server:
                    log(f"[ldb_fork] {name}: {keys:,} {'hashes' if args.hashes else 'keys'}")
                    populate(server.port, keys, args.hashes)
                    times[name] = [session_start(server.port) for _ in range(args.rounds)]
                    if name == "redis":
                        info = resp_command(server.port, b"INFO", b"stats").decode()
                        fork_usec.append(int(info.split("latest_fork_usec:")[1].split()[0]))
            ours, theirs = times["kvrepl"], times["redis"]
            rows.append([f"{keys:,}" + (" hashes" if args.hashes else ""),
                         f"{min(ours) * 1000:.0f}-{max(ours) * 1000:.0f}",
                         f"{min(theirs) * 1000:.1f}-{max(theirs) * 1000:.1f}",
                         f"{fork_usec[0] / 1000:.1f}",
                         f"{median(ours) / median(theirs):.0f}x"])
    print(markdown_table(["keys", "kvrepl EVAL to first stop (ms)",
                          "redis EVAL to first stop (ms)", "redis latest_fork (ms)",
                          "kvrepl / redis (medians)"], rows))


if __name__ == "__main__":
    main()
