"""The master's peak memory during one full sync (kvrepl issue #11).

    python benchmarks/sync_memory.py                        # 300k keys x 1 KB, this checkout
    python benchmarks/sync_memory.py --kvrepl-root ../main  # the same, another checkout's code
    python benchmarks/sync_memory.py --keys 50000 --diskless-sync no

A ``kvrepl-server`` master (``python -m kvrepl``, ``--repl-diskless-sync-delay 0``) is filled
with ``--keys`` keys of ``--value-size`` random (incompressible) bytes over a pipelined
connection; then a redis-server 7.0 replica is started with ``--replicaof`` and the run waits
until its link is up and its DBSIZE matches. The master's resident set is read from
/proc/<pid>/status: VmRSS just before the replica starts, and the peak during the sync, from
VmHWM after the peak counter was reset (``echo 5 > /proc/<pid>/clear_refs``; where that is not
allowed, from VmRSS polled every 5 ms instead). Not part of the test suite: it takes a minute
and ~1 GB of memory. Prints one markdown table row per run.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import HOST, Connection, Server, binary, log  # noqa: E402
from benchmarks.replication import dbsize  # noqa: E402

BATCH = 1000  # SETs per pipelined write while filling


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} for process {pid}")


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux 4.0+); False where that is not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


class RssPoller(threading.Thread):
    """The highest VmRSS seen, every 5 ms, until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, rss_kb(self.pid))
            time.sleep(0.005)


def fill(port: int, keys: int, size: int) -> None:
    """``keys`` SETs of random values, pipelined ``BATCH`` at a time."""
    with socket.create_connection((HOST, port), timeout=120) as sock:
        for start in range(0, keys, BATCH):
            count = min(BATCH, keys - start)
            parts = []
            for i in range(start, start + count):
                key = b"key:%d" % i
                parts.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"
                             % (len(key), key, size, os.urandom(size)))
            sock.sendall(b"".join(parts))
            expected = b"+OK\r\n" * count
            got = b""
            while len(got) < len(expected):
                data = sock.recv(65536)
                if not data:
                    raise RuntimeError("the master closed the connection while filling")
                got += data
            if got != expected:
                raise RuntimeError(f"unexpected replies while filling: {got[:80]!r}")


def link_up(port: int) -> bool:
    try:
        with Connection(port, timeout=5) as conn:
            return conn.info("replication").get("master_link_status") == "up"
    except OSError:
        return False


def measure(args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    env = dict(os.environ)
    root = str(Path(args.kvrepl_root).resolve())
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    (workdir / "master").mkdir()
    (workdir / "replica").mkdir()
    master = Server("master", lambda port: [
        sys.executable, "-m", "kvrepl", "--port", str(port), "--bind", HOST, "--save", "",
        "--repl-diskless-sync", args.diskless_sync, "--repl-diskless-sync-delay", "0"],
        workdir / "master", env=env)
    redis = binary("redis-server")
    if redis is None:
        raise SystemExit("redis-server is not on PATH")
    replica = Server("replica", lambda port: [
        redis, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"],
        workdir / "replica")
    try:
        master.start()
        pid = master.proc.pid
        log(f"filling {args.keys:,} keys x {args.value_size} B ({root})")
        fill(master.port, args.keys, args.value_size)
        if dbsize(master.port) != args.keys:
            raise RuntimeError("the master does not hold every key")
        before = rss_kb(pid)
        exact = reset_peak(pid)
        poller = RssPoller(pid)
        poller.start()
        replica.start()
        started = time.monotonic()
        with Connection(replica.port, timeout=10) as conn:
            conn.command(b"REPLICAOF", HOST.encode(), b"%d" % master.port)
        while not (link_up(replica.port) and dbsize(replica.port) == args.keys):
            if time.monotonic() - started > 600:
                raise RuntimeError("the replica did not sync within 10 minutes")
            time.sleep(0.05)
        seconds = time.monotonic() - started
        poller.done.set()
        poller.join()
        peak = rss_kb(pid, "VmHWM") if exact else poller.peak
        return {"before": before / 1024, "peak": peak / 1024, "seconds": seconds,
                "exact": float(exact)}
    finally:
        replica.stop()
        master.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=300_000)
    parser.add_argument("--value-size", type=int, default=1024)
    parser.add_argument("--kvrepl-root", default=str(Path(__file__).resolve().parent.parent),
                        help="the checkout whose kvrepl the master runs")
    parser.add_argument("--diskless-sync", choices=("yes", "no"), default="yes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kvrepl-syncmem-") as tmp:
        result = measure(args, Path(tmp))
    how = "VmHWM" if result["exact"] else "VmRSS polled"
    print("| code | keys x size | diskless | RSS before sync | peak during sync | growth "
          "| sync time |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {args.kvrepl_root} | {args.keys:,} x {args.value_size} B | {args.diskless_sync} "
          f"| {result['before']:.0f} MB | {result['peak']:.0f} MB ({how}) "
          f"| {result['peak'] - result['before']:+.0f} MB | {result['seconds']:.1f} s |")


if __name__ == "__main__":
    main()
