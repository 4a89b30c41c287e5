"""Streams over TCP: redis-benchmark's own XADD and XREAD, kvrepl against a real redis-server.

``redis-benchmark -c 50 -P 16 -n N XADD s * f v`` (each server appends to its own stream), the
same with a distinct value per entry (``-r 1000000 XADD d * f __rand_int__``) and
``redis-benchmark -c 50 -n N XREAD COUNT 100 STREAMS r 0`` on a stream of 100 entries, the
servers taking turns round by round with the order rotated, medians reported. N is sized per
server from a warm-up so that a run lasts about ``--seconds``. The goal is judged on the
median of the per-round ratios (the two servers' runs of a round are adjacent in time).
Each run also reads the server process's CPU time per request, which the load of a shared
host moves far less than the throughput (redis/kvrepl CPU is what the throughput ratio would
be with a core to each server). With ``KVREPL_BASELINE=/path/to/other/checkout`` a kvrepl
from that checkout takes its turns too (the A/B of a change; its CPU per request is
reported beside this checkout's). The streams grow round after round (each run appends its
-n entries): later rounds write to streams of hundreds of thousands of entries.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from benchmarks.common import (
    HOST,
    Options,
    Server,
    baseline_env,
    binary,
    encode_request,
    fmt_rate,
    fmt_ratio,
    goal_cell,
    log,
    markdown_table,
    median,
    nice_count,
    process_cpu_seconds,
    python_env,
    ratio,
    redis_benchmark_rate,
    rotated,
    running,
)

TITLE = "Streams: XADD -P 16 and XREAD of 100 entries, kvrepl against redis-server"

CLIENTS = 50
READ_ENTRIES = 100
# (label, pipeline, command, goal for kvrepl/redis)
TESTS = (
    ("XADD s * f v -P 16", 16, ["XADD", "s", "*", "f", "v"], 0.3),
    # what real traffic sends: each entry its own value (redis-benchmark without -r repeats
    # one request), to a stream of its own
    ("XADD d * f __rand_int__ -r 1000000 -P 16", 16,
     ["-r", "1000000", "XADD", "d", "*", "f", "__rand_int__"], 0.3),
    (f"XREAD COUNT {READ_ENTRIES} (100 entries)", 1,
     ["XREAD", "COUNT", str(READ_ENTRIES), "STREAMS", "r", "0"], 0.3),
)
MIN_N = 1000
MAX_N = 2_000_000


def _benchmark(tool: str, port: int, n: int, pipeline: int, command: list[str]) -> float:
    """One redis-benchmark run of ``command``: requests per second."""
    return redis_benchmark_rate(tool, port, ["-c", str(CLIENTS), "-n", str(n),
                                             "-P", str(pipeline), *command])


def _prefill(port: int) -> None:
    """The stream XREAD reads: ``r`` with READ_ENTRIES entries."""
    import socket

    with socket.create_connection((HOST, port), timeout=10) as sock:
        requests = b"".join(encode_request(b"XADD", b"r", b"%d-1" % (i + 1), b"field",
                                           b"value-%d" % i) for i in range(READ_ENTRIES))
        sock.sendall(requests)
        received = b""
        while received.count(b"\r\n") < READ_ENTRIES * 2:
            received += sock.recv(65536)


def run(options: Options) -> str:
    """Run the stream benchmark and return its markdown section."""
    tool = binary("redis-benchmark")
    redis = binary("redis-server")
    if tool is None or redis is None:
        raise RuntimeError("redis-benchmark / redis-server are not on PATH")
    commands = {
        "kvrepl": lambda port: [options.python, "-m", "kvrepl", "--port", str(port),
                                "--bind", HOST, "--save", ""],
        "redis": lambda port: [redis, "--port", str(port), "--bind", HOST, "--save", "",
                               "--appendonly", "no"],
    }
    envs = {"kvrepl": python_env(), "redis": python_env()}
    baseline = os.environ.get("KVREPL_BASELINE")
    if baseline:
        commands["baseline"] = commands["kvrepl"]
        envs["baseline"] = baseline_env(baseline)
    names = list(commands)
    results: dict[tuple[str, str], list[float]] = defaultdict(list)
    sizes: dict[tuple[str, str], int] = {}
    cpu: dict[tuple[str, str], list[float]] = defaultdict(list)  # server CPU us per request
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kvrepl-bench-")))
        servers = {name: stack.enter_context(running(Server(name, commands[name], workdir,
                                                            env=envs[name])))
                   for name in names}
        for name, server in servers.items():
            _prefill(server.port)
            for label, pipeline, command, _goal in TESTS:
                n = MIN_N
                while True:  # a warm-up over in a blink mostly measures connecting: grow it
                    rate = _benchmark(tool, server.port, n, pipeline, command)
                    if n / rate >= 0.25 * options.seconds or n >= MAX_N:
                        break
                    n = min(n * 10, MAX_N)
                sizes[name, label] = nice_count(rate * options.seconds, MIN_N, MAX_N)
                log(f"[streams] warm-up {name:7s} {label}: ~{rate:,.0f} ops/s")
        for round_number in range(options.rounds):
            for label, pipeline, command, _goal in TESTS:
                for name in rotated(names, round_number):
                    begun = time.monotonic()
                    pid = servers[name].proc.pid  # type: ignore[union-attr]
                    began_cpu = process_cpu_seconds(pid)
                    rate = _benchmark(tool, servers[name].port, sizes[name, label], pipeline,
                                      command)
                    results[label, name].append(rate)
                    cpu[label, name].append((process_cpu_seconds(pid) - began_cpu)
                                            / sizes[name, label] * 1e6)
                    log(f"[streams] round {round_number + 1}/{options.rounds} {name:7s} "
                        f"{label}: {rate:,.0f}/s ({time.monotonic() - begun:.1f}s)")
    rows = []
    for label, _pipeline, _command, goal in TESTS:
        kv, rd = median(results[label, "kvrepl"]), median(results[label, "redis"])
        # The two runs of one round are seconds apart: their ratio is less exposed to the
        # load of a shared machine than the ratio of the medians.
        paired = median([ratio(k, r) for k, r in zip(results[label, "kvrepl"],
                                                      results[label, "redis"], strict=True)])
        kv_cpu, rd_cpu = median(cpu[label, "kvrepl"]), median(cpu[label, "redis"])
        spans = [f"{min(cpu[label, name]):.2f}-{max(cpu[label, name]):.2f}"
                 for name in ("kvrepl", "baseline") if (label, name) in cpu]
        rows.append([label, fmt_rate(kv), fmt_rate(rd), fmt_ratio(ratio(kv, rd)),
                     fmt_ratio(paired), goal_cell(paired, goal), f"{kv_cpu:.2f}",
                     f"{rd_cpu:.2f}", fmt_ratio(ratio(rd_cpu, kv_cpu)), *spans])
    table = markdown_table(["test", "kvrepl ops/s", "redis ops/s", "kvrepl/redis",
                            "median of round ratios", "goal", "kvrepl CPU us/req",
                            "redis CPU us/req", "redis/kvrepl CPU", "kvrepl CPU by round",
                            *(["baseline CPU by round"] if baseline else [])], rows)
    sized = "; ".join(f"{name} {label}: -n {sizes[name, label]:,}"
                      for label, *_ in TESTS for name in names)
    return (f"{table}\n\n{CLIENTS} clients, medians of {options.rounds} rounds; {sized}; "
            f"baseline: {baseline or 'not set'}.\n")
