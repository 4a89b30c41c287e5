"""Issue #9's four writes with ``-P 16``: this checkout, a baseline checkout and redis-server.

    python benchmarks/run.py --only lane_writes
    KVREPL_BASELINE=/path/to/other/checkout python -m benchmarks.lane_writes
    LANE_WRITES_TESTS=XADD python benchmarks/run.py --only lane_writes   # the XADD rows only

``redis-benchmark -c 50 -P 16`` GEOADD (one point, no ``-r``: the same member each time),
SETBIT on ``-r 100000`` keys, ``XADD s * f v``, XADD of distinct values (``-r 1000000``: one
field, and three fields of differing values) and PFADD of ``-r 1000000`` elements, sent to
kvrepl from this checkout, to kvrepl from ``KVREPL_BASELINE`` when set (the A/B of a change:
both servers beside each other on the same host, in the same rounds) and to redis-server,
which take turns round by round (the order rotates). Reported per server: the process's CPU
time per request (from /proc), which the load of a shared host moves far less than the
throughput, as the range over the rounds; and redis-server's CPU over this checkout's, the
ratio the 0.3x goal is about when each server has a core of its own.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from benchmarks.common import (
    Options,
    Server,
    baseline_env,
    binary,
    fmt_rate,
    log,
    markdown_table,
    median,
    process_cpu_seconds,
    python_env,
    redis_benchmark_rate,
    rotated,
)
from benchmarks.tcp import server_commands

TITLE = "GEOADD, SETBIT, XADD (same and distinct values), PFADD -P 16: CPU per request, kvrepl (and a baseline) and redis"

CLIENTS = 50
PIPELINE = 16
GOAL = 0.3
TESTS: dict[str, list[str]] = {
    "GEOADD": ["GEOADD", "k", "13.361389", "38.115556", "m:__rand_int__"],
    "SETBIT": ["-r", "100000", "SETBIT", "key:__rand_int__", "7", "1"],
    "XADD": ["XADD", "s", "*", "f", "v"],
    # real traffic: each entry its own values (and a stream of its own, apart from "s")
    "XADD -r": ["-r", "1000000", "XADD", "sr", "*", "f", "__rand_int__"],
    "XADD 3 fields -r": ["-r", "1000000", "XADD", "s3", "*", "user", "u:__rand_int__",
                         "score", "__rand_int__", "at", "1700000000__rand_int__"],
    "PFADD": ["-r", "1000000", "PFADD", "hll", "__rand_int__"],
}


def _selected() -> dict[str, list[str]]:
    """TESTS, or those whose name starts with one of the comma-separated prefixes in
    ``LANE_WRITES_TESTS`` (a subset measured in more rounds for the same time)."""
    prefixes = tuple(filter(None, os.environ.get("LANE_WRITES_TESTS", "").split(",")))
    return {name: args for name, args in TESTS.items()
            if not prefixes or name.startswith(prefixes)}


def run(options: Options) -> str:
    """Run the four writes against each server and return the markdown section."""
    tests = _selected()
    tool = binary("redis-benchmark")
    if tool is None:
        raise RuntimeError("redis-benchmark is not on PATH")
    commands = server_commands(options)
    contenders = {"kvrepl": (commands["kvrepl"], python_env())}
    baseline = os.environ.get("KVREPL_BASELINE")
    if baseline:
        contenders["baseline"] = (commands["kvrepl"], baseline_env(baseline))
    if commands["redis"] is not None:
        contenders["redis"] = (commands["redis"], None)
    n = 20_000 if options.quick else 100_000
    cpu: dict[tuple[str, str], list[float]] = {}
    rates: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="kvrepl-bench-lane-") as workdir:
        servers = {name: Server(name, command, Path(workdir), env=env)  # type: ignore[arg-type]
                   for name, (command, env) in contenders.items()}
        try:
            for server in servers.values():
                server.start()
                for args in tests.values():  # warm-up: keys, stream and dense HLL exist after
                    redis_benchmark_rate(tool, server.port, ["-c", str(CLIENTS), "-P",
                                                             str(PIPELINE), "-n", "20000", *args])
            for round_number in range(options.rounds):
                for name in rotated(list(servers), round_number):
                    pid = servers[name].proc.pid  # type: ignore[union-attr]
                    for test, args in tests.items():
                        began = process_cpu_seconds(pid)
                        rate = redis_benchmark_rate(tool, servers[name].port, [
                            "-c", str(CLIENTS), "-P", str(PIPELINE), "-n", str(n), *args])
                        used = (process_cpu_seconds(pid) - began) / n * 1e6
                        cpu.setdefault((test, name), []).append(used)
                        rates.setdefault((test, name), []).append(rate)
                        log(f"lane_writes round {round_number + 1}: {name} {test} "
                            f"{fmt_rate(rate)} ops/s, {used:.2f} us CPU/request")
        finally:
            for server in servers.values():
                server.stop()

    def span(values: list[float]) -> str:
        return f"{min(values):.2f}-{max(values):.2f}" if values else "n/a"

    rows = []
    for test in tests:
        ours, theirs = cpu.get((test, "kvrepl"), []), cpu.get((test, "redis"), [])
        shares = [r / k for r, k in zip(theirs, ours, strict=False) if k]
        rows.append([test, span(ours), span(cpu.get((test, "baseline"), [])), span(theirs),
                     span(shares), f"{median(shares):.2f}x" if shares else "n/a",
                     ">= 0.3x: met" if shares and median(shares) >= GOAL else ">= 0.3x: NOT met"])
    table = markdown_table(["test", "kvrepl CPU us/req", "baseline CPU us/req",
                            "redis CPU us/req", "redis/kvrepl CPU by round",
                            "median", "goal"], rows)
    return (f"## {TITLE}\n\n`redis-benchmark -c {CLIENTS} -P {PIPELINE} -n {n}`, "
            f"{options.rounds} rounds, servers in turn; baseline: {baseline or 'not set'}."
            f"\n\n{table}\n")


if __name__ == "__main__":
    print(run(Options()))
