"""GEOADD throughput: redis-benchmark with ``-P 16`` against kvrepl and redis-server.

    python benchmarks/run.py --only geo          # or: python -m benchmarks.geo

``redis-benchmark -P 16 -c 50 -n N GEOADD k 13.361389 38.115556 m:__rand_int__`` (the
command of issue #9) against both servers, started as subprocesses on free 127.0.0.1 ports
exactly as the TCP benchmark starts them. The machine is shared and noisy: the servers take
turns round by round (the order rotates) and each figure is the median over the rounds; the
goal is kvrepl at 0.3x redis-server or better. Each run also reads the server process's
CPU time: its CPU per request, which the host's load moves far less than the throughput
(redis/kvrepl CPU is what the throughput ratio would be with a core to each server).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (  # noqa: E402
    Options,
    Server,
    binary,
    fmt_rate,
    fmt_ratio,
    goal_cell,
    log,
    markdown_table,
    median,
    process_cpu_seconds,
    python_env,
    ratio,
    redis_benchmark_rate,
    rotated,
)
from benchmarks.tcp import server_commands  # noqa: E402

TITLE = "GEOADD: redis-benchmark -P 16 against kvrepl and redis-server"

CLIENTS = 50
PIPELINE = 16
GOAL = 0.3
COMMAND = ("GEOADD", "k", "13.361389", "38.115556", "m:__rand_int__")
# The same write through ZADD: how much of the gap is GEOADD's own and how much the general
# command path's (every command but plain GET/SET), shown beside it without a goal.
REFERENCE = ("ZADD", "z", "3479099956230698", "m:__rand_int__")


def command_rate(tool: str, port: int, n: int, command: tuple[str, ...] = COMMAND,
                 timeout: float = 300.0) -> float:
    """One redis-benchmark run of ``command``: requests per second."""
    return redis_benchmark_rate(tool, port, ["-c", str(CLIENTS), "-P", str(PIPELINE),
                                             "-n", str(n), *command], timeout, test=command[0])


def run(options: Options) -> str:
    """Run the GEOADD benchmark and return its markdown section."""
    tool = binary("redis-benchmark")
    if tool is None:
        raise RuntimeError("redis-benchmark is not on PATH")
    commands = {name: command for name, command in server_commands(options).items()
                if name in ("kvrepl", "redis") and command is not None}
    n = 20_000 if options.quick else 100_000
    tests = {"GEOADD": COMMAND, "ZADD": REFERENCE}
    rates: dict[tuple[str, str], list[float]] = {
        (test, name): [] for test in tests for name in commands}
    cpu: dict[tuple[str, str], list[float]] = {key: [] for key in rates}  # us per request
    with tempfile.TemporaryDirectory(prefix="kvrepl-bench-geo-") as workdir:
        servers = {name: Server(name, command, Path(workdir), env=python_env())
                   for name, command in commands.items()}
        try:
            for server in servers.values():
                server.start()
                for command in tests.values():  # warm-up: the keys exist afterwards
                    command_rate(tool, server.port, 2_000, command)
            for round_number in range(options.rounds):
                for name in rotated(list(servers), round_number):
                    for test, command in tests.items():
                        pid = servers[name].proc.pid  # type: ignore[union-attr]
                        began = process_cpu_seconds(pid)
                        rate = command_rate(tool, servers[name].port, n, command)
                        rates[test, name].append(rate)
                        cpu[test, name].append((process_cpu_seconds(pid) - began) / n * 1e6)
                        log(f"geo round {round_number + 1}: {name} {test} {fmt_rate(rate)} ops/s, "
                            f"{cpu[test, name][-1]:.2f} us CPU/request")
        finally:
            for server in servers.values():
                server.stop()
    rows = []
    for test, command in tests.items():
        ours = median(rates.get((test, "kvrepl"), []))
        theirs = median(rates.get((test, "redis"), []))
        share = ratio(ours, theirs)
        kv_cpu, rd_cpu = median(cpu[test, "kvrepl"]), median(cpu[test, "redis"])
        rows.append([f"{' '.join(command[:1])} -P {PIPELINE}", fmt_rate(ours), fmt_rate(theirs),
                     fmt_ratio(share), goal_cell(share, GOAL) if test == "GEOADD" else "reference",
                     f"{kv_cpu:.2f}", f"{rd_cpu:.2f}", fmt_ratio(ratio(rd_cpu, kv_cpu))])
    table = markdown_table(["test", "kvrepl ops/s", "redis ops/s", "kvrepl/redis", "goal",
                            "kvrepl CPU us/req", "redis CPU us/req", "redis/kvrepl CPU"], rows)
    rounds = "; ".join(f"{test} {name}: " + " / ".join(fmt_rate(r) for r in values)
                       for (test, name), values in rates.items())
    return (f"## {TITLE}\n\n`redis-benchmark -c {CLIENTS} -P {PIPELINE} -n {n} -q --csv "
            f"{' '.join(COMMAND)}` (and the same write as `{' '.join(REFERENCE)}` for "
            f"reference); median of {options.rounds} rounds, servers in turn.\n\n"
            f"{table}\n\nEach round: {rounds}\n")


if __name__ == "__main__":
    print(run(Options()))
