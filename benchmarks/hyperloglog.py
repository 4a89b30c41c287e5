"""HyperLogLog throughput: redis-benchmark's PFADD and PFCOUNT against kvrepl and redis-server.

Both servers run as subprocesses on free 127.0.0.1 ports, started as :mod:`benchmarks.tcp`
starts them, and take turns round by round (the order rotates); each cell is the median over
the rounds. Every test is ``redis-benchmark -P 16 -n N`` with its 50 default clients:

- ``PFADD hll __rand_int__`` with ``-r 1000000``: random elements into one key, which starts
  empty (each round deletes it first), so a run goes through the sparse encoding, the
  promotion and then mostly the dense one. Without ``-r``, redis-benchmark sends the
  literal text ``__rand_int__`` every time and all but the first PFADD change nothing; that
  variant is measured too, as ``PFADD hll __rand_int__ (no -r)``.
- ``PFCOUNT hll``: the count of that key, answered from its cached cardinality after the
  first call.
- ``PFCOUNT hll hll2``: two HLLs merged on the fly each time (no cache), hll2 holding 50,000
  elements; with a tenth of the requests (kvrepl merges a few thousand a second).

Each run also reads the server process's CPU time per request, which the load of a shared
host moves far less than the throughput (redis/kvrepl CPU is what the throughput ratio would
be with a core to each server), reported as the range over the rounds.

``KVREPL_BASELINE=/path/to/other/checkout`` adds a kvrepl started from that checkout, in the
same rounds: the A/B of a change.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections import defaultdict
from pathlib import Path

from benchmarks.common import (
    HOST,
    BenchmarkError,
    Options,
    Server,
    baseline_env,
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
    resp_command,
    rotated,
    running,
)

TITLE = "HyperLogLog: redis-benchmark PFADD / PFCOUNT against kvrepl and redis-server"

GOAL = 0.3
PIPELINE = 16
N = 100_000
QUICK_N = 20_000
# label -> (share of N, extra redis-benchmark options, command); run in this order.
TESTS: dict[str, tuple[float, list[str], list[str]]] = {
    "PFADD hll __rand_int__ -r 1000000": (1, ["-r", "1000000"], ["PFADD", "hll", "__rand_int__"]),
    "PFADD hll __rand_int__ (no -r)": (1, [], ["PFADD", "hll0", "__rand_int__"]),
    "PFCOUNT hll": (1, [], ["PFCOUNT", "hll"]),
    "PFCOUNT hll hll2": (0.1, [], ["PFCOUNT", "hll", "hll2"]),
}


def redis_benchmark(tool: str, port: int, n: int, extra: list[str], command: list[str],
                    timeout: float) -> float:
    """One redis-benchmark run of ``command``: its requests per second."""
    return redis_benchmark_rate(tool, port, ["-P", str(PIPELINE), "-n", str(n), *extra,
                                             *command], timeout)


def _prepare(port: int) -> None:
    """Empty the measured keys; hll2 gets 50,000 elements (in batches of 1,000)."""
    resp_command(port, b"DEL", b"hll", b"hll0", b"hll2")
    for batch in range(50):
        elements = [b"e%d" % (batch * 1000 + i) for i in range(1000)]
        resp_command(port, b"PFADD", b"hll2", *elements, timeout=30)


def run(options: Options) -> str:
    """Run the HyperLogLog benchmark and return its markdown section."""
    tool = binary("redis-benchmark")
    redis = binary("redis-server")
    if tool is None or redis is None:
        raise RuntimeError("redis-benchmark and redis-server must be on PATH")
    n = QUICK_N if options.quick else N
    def kvrepl(port: int) -> list[str]:
        return [options.python, "-m", "kvrepl", "--port", str(port), "--bind", HOST,
                "--save", ""]

    commands = {"kvrepl": (kvrepl, python_env())}
    baseline = os.environ.get("KVREPL_BASELINE")
    if baseline:
        commands["baseline"] = (kvrepl, baseline_env(baseline))
    commands["redis"] = (lambda port: [redis, "--port", str(port), "--bind", HOST, "--save",
                                       "", "--appendonly", "no"], None)
    names = list(commands)
    results: dict[tuple[str, str], list[float]] = defaultdict(list)
    cpu: dict[tuple[str, str], list[float]] = defaultdict(list)  # server CPU us per request
    notes: list[str] = []
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kvrepl-hll-")))
        servers = {}
        for name in names:
            log(f"[hll] starting {name}")
            command, env = commands[name]
            servers[name] = stack.enter_context(
                running(Server(name, command, workdir, env=env)))  # type: ignore[arg-type]
        for round_number in range(options.rounds):
            for name in rotated(names, round_number):
                port = servers[name].port
                _prepare(port)
                for label, (share, extra, command) in TESTS.items():
                    pid = servers[name].proc.pid
                    began = process_cpu_seconds(pid)
                    try:
                        rate = redis_benchmark(tool, port, int(n * share), extra, command,
                                               timeout=120 + 40 * options.seconds)
                    except BenchmarkError as err:
                        notes.append(f"{name}: {label} failed in round {round_number + 1}: "
                                     f"{err}")
                        log(f"[hll] {name} {label} FAILED: {err}")
                        continue
                    results[label, name].append(rate)
                    cpu[label, name].append((process_cpu_seconds(pid) - began)
                                            / int(n * share) * 1e6)
                    log(f"[hll] round {round_number + 1}/{options.rounds} {name:8s} "
                        f"{label:36s} {rate:>11,.0f}/s {cpu[label, name][-1]:.2f} us CPU")
                # ~95,000 distinct elements of a million went in: did the adds happen?
                reply = resp_command(port, b"PFCOUNT", b"hll")
                if not (reply[:1] == b":" and int(reply[1:-2]) > n // 2):
                    notes.append(f"{name}: PFCOUNT hll after round {round_number + 1} "
                                 f"replied {reply!r}")
    return _report(results, cpu, n, options, notes, baseline)


def _span(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}" if values else "n/a"


def _report(results: dict[tuple[str, str], list[float]],
            cpu: dict[tuple[str, str], list[float]], n: int, options: Options,
            notes: list[str], baseline: str | None) -> str:
    headers = ["test", "kvrepl ops/s", "redis ops/s", "kvrepl/redis", "goal",
               "kvrepl CPU us/req", "redis CPU us/req", "redis/kvrepl CPU"]
    if baseline:
        headers[6:6] = ["baseline CPU us/req"]
        headers.append("redis/baseline CPU")
    rows = []
    for label in TESTS:
        kv, rd = (median(results.get((label, name), [])) for name in ("kvrepl", "redis"))
        kv_cpu, rd_cpu = (cpu.get((label, name), []) for name in ("kvrepl", "redis"))
        row = [label, fmt_rate(kv), fmt_rate(rd), fmt_ratio(ratio(kv, rd)),
               goal_cell(ratio(kv, rd), GOAL), _span(kv_cpu), _span(rd_cpu),
               fmt_ratio(ratio(median(rd_cpu), median(kv_cpu)))]
        if baseline:
            base_cpu = cpu.get((label, "baseline"), [])
            row[6:6] = [_span(base_cpu)]
            row.append(fmt_ratio(ratio(median(rd_cpu), median(base_cpu))))
        rows.append(row)
    text = [
        f"## {TITLE}",
        "",
        f"`redis-benchmark -P {PIPELINE} -n {n:,} -q --csv [-r 1000000] <command>` (50 "
        f"clients; -n {int(n * TESTS['PFCOUNT hll hll2'][0]):,} for two keys); median of {options.rounds} rounds, servers alternated (order rotated "
        "every round); the keys are emptied before each server's round; CPU per request as "
        f"the range over the rounds, its ratio of medians. Baseline: {baseline or 'not set'}.",
        "",
        markdown_table(headers, rows),
    ]
    if notes:
        text += ["", "Notes:", *(f"- {note}" for note in notes)]
    return "\n".join(text) + "\n"
