"""TCP throughput: redis-benchmark against kvrepl, a real redis-server and fakeredis's server.

Every server runs as a subprocess on a free 127.0.0.1 port. Each is driven with
``redis-benchmark -t set,get -c 50 -n N -q --csv``, unpipelined and with ``-P 16``. The machine
is shared and noisy, so the servers take turns round by round (the order rotates each round)
and each cell is the median over the rounds. N is sized per server and mode from a warm-up run
so that one test lasts about ``--seconds``: fakeredis (a few thousand ops/s) gets a small N,
redis-server a large one. fakeredis's server gets redis's listen backlog (511) instead of
socketserver's 5, which would otherwise add multi-second connect stalls to its numbers.
"""

from __future__ import annotations

import contextlib
import importlib.util
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import (
    HOST,
    BenchmarkError,
    Options,
    Server,
    binary,
    fmt_rate,
    fmt_ratio,
    goal_cell,
    log,
    markdown_table,
    median,
    nice_count,
    python_env,
    ratio,
    redis_benchmark_rows,
    resp_command,
    rotated,
    running,
)

TITLE = "TCP: redis-benchmark against kvrepl, redis-server and fakeredis"

CLIENTS = 50
TESTS = ("SET", "GET")
# (label suffix, -P value, goal for kvrepl/redis)
MODES = (("", 1, 0.5), (" -P 16", 16, 0.3))
MIN_N = 1000  # 50 clients x 16 pipelined requests must fit several times over
MAX_N = 3_000_000
# redis-benchmark asks for CONFIG GET save/appendonly first; a server without CONFIG only
# costs it that warning, which is not worth repeating per run.
KNOWN_WARNINGS = ("WARNING: Could not fetch server CONFIG",)

# fakeredis's TCP server, run in a child of the same interpreter.
FAKEREDIS_SERVER = """\
import sys
from fakeredis import TcpFakeServer

class Server(TcpFakeServer):
    # socketserver listens with a backlog of 5: 50 clients connecting at once overflow it and
    # the dropped SYNs cost 1-3 s retransmission stalls. Use redis's tcp-backlog instead.
    request_queue_size = 511

address = ("127.0.0.1", int(sys.argv[1]))
try:
    server = Server(address, server_type="redis", server_version=(7, 0))
except TypeError:  # fakeredis releases without server_version
    server = Server(address, server_type="redis")
try:
    server.serve_forever()
finally:
    server.server_close()
"""


def redis_benchmark(tool: str, port: int, n: int, pipeline: int, timeout: float,
                    tests: tuple[str, ...] = TESTS) -> tuple[dict[str, float], list[str]]:
    """Run redis-benchmark once: ({"SET": rps, "GET": rps}, unexpected stderr lines)."""
    args = ["-t", ",".join(tests).lower(), "-c", str(CLIENTS), "-n", str(n)]
    if pipeline > 1:
        args += ["-P", str(pipeline)]
    rates, status, out, err = redis_benchmark_rows(tool, port, args, timeout)
    warnings = [line for line in err.splitlines()
                if line.strip() and not line.startswith(KNOWN_WARNINGS)]
    if status != 0 or any(t not in rates for t in tests):
        detail = "\n".join(warnings) or out[-500:]
        raise BenchmarkError(f"redis-benchmark exited {status}: {detail}")
    return rates, warnings


def server_commands(options: Options) -> dict[str, Callable[[int], list[str]] | None]:
    """Each contender's command line as a function of its port (None: not available here)."""
    redis = binary("redis-server")
    fakeredis = importlib.util.find_spec("fakeredis") is not None
    return {
        "kvrepl": lambda port: [options.python, "-m", "kvrepl", "--port", str(port),
                                "--bind", HOST, "--save", ""],
        "redis": (lambda port: [redis, "--port", str(port), "--bind", HOST, "--save", "",
                                "--appendonly", "no"]) if redis else None,
        "fakeredis": (lambda port: [options.python, "-c", FAKEREDIS_SERVER, str(port)])
        if fakeredis else None,
    }


def run(options: Options) -> str:
    """Run the TCP benchmark and return its markdown section."""
    tool = binary("redis-benchmark")
    if tool is None:
        raise RuntimeError("redis-benchmark is not on PATH (run `make redis`)")
    commands = server_commands(options)
    missing = [name for name, cmd in commands.items() if cmd is None]
    names = [name for name, cmd in commands.items() if cmd is not None]
    notes: list[str] = [f"{name}: not available here, skipped" for name in missing]

    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kvrepl-bench-")))
        servers: dict[str, Server] = {}
        for name in names:
            command = commands[name]
            assert command is not None
            log(f"[tcp] starting {name}")
            servers[name] = stack.enter_context(
                running(Server(name, command, workdir, env=python_env())))
            log(f"[tcp]   {name} answers PING on port {servers[name].port}")

        sizes, warnings = _calibrate(tool, servers, options, notes)
        results: dict[tuple[str, str], list[float]] = defaultdict(list)
        failed = {name for name in names if (name, 1) not in sizes}
        for round_number in range(options.rounds):
            for suffix, pipeline, _goal in MODES:
                for name in rotated(names, round_number):
                    if name in failed:
                        continue
                    n = sizes[name, pipeline]
                    begun = time.monotonic()
                    try:
                        rates, extra = redis_benchmark(tool, servers[name].port, n, pipeline,
                                                       timeout=60 + 20 * options.seconds)
                    except BenchmarkError as err:
                        failed.add(name)
                        state = "alive" if servers[name].alive() else "DEAD"
                        notes.append(f"{name}: failed in round {round_number + 1} "
                                     f"({state}): {err}")
                        log(f"[tcp] {name} FAILED: {err}")
                        continue
                    warnings[name].update(extra)
                    for test in TESTS:
                        results[test + suffix, name].append(rates[test])
                    # A server far slower than its warm-up said would blow the time budget:
                    # shrink its N for the next rounds (the ops/s stay comparable).
                    budget = len(TESTS) * options.seconds
                    elapsed = time.monotonic() - begun
                    if elapsed > 4 * budget and n > MIN_N:
                        sizes[name, pipeline] = nice_count(n * budget / elapsed, MIN_N, MAX_N)
                        notes.append(f"{name}{suffix}: a run took {elapsed:.0f}s, -n lowered "
                                     f"from {n:,} to {sizes[name, pipeline]:,}")
                    log(f"[tcp] round {round_number + 1}/{options.rounds} {name:9s} "
                        f"-n {n:>8,}{suffix:7s}  "
                        + "  ".join(f"{t} {rates[t]:>11,.0f}/s" for t in TESTS))

    for name, lines in warnings.items():
        for line in sorted(lines):
            notes.append(f"{name}: redis-benchmark said: {line}")
    return _report(names, results, sizes, options, notes)


def _calibrate(tool: str, servers: dict[str, Server], options: Options, notes: list[str]
               ) -> tuple[dict[tuple[str, int], int], dict[str, set[str]]]:
    """Warm every server up and size N per (server, -P) so one test takes ~options.seconds."""
    sizes: dict[tuple[str, int], int] = {}
    warnings: dict[str, set[str]] = defaultdict(set)
    for name, server in servers.items():
        try:
            for _suffix, pipeline, _goal in MODES:
                n = MIN_N
                while True:
                    rates, extra = redis_benchmark(tool, server.port, n, pipeline, timeout=120)
                    warnings[name].update(extra)
                    slowest = min(rates[t] for t in TESTS)
                    # A warm-up over in a blink mostly measures connecting: grow it.
                    if n / slowest >= 0.25 * options.seconds or n >= MAX_N:
                        break
                    n = min(n * 10, MAX_N)
                sizes[name, pipeline] = nice_count(slowest * options.seconds, MIN_N, MAX_N)
                log(f"[tcp] warm-up {name:9s} -P {pipeline:<2d}: ~{slowest:,.0f} ops/s "
                    f"-> -n {sizes[name, pipeline]:,}")
        except BenchmarkError as err:
            state = "alive" if server.alive() else "DEAD"
            notes.append(f"{name}: failed during warm-up ({state}): {err}")
            log(f"[tcp] {name} FAILED during warm-up: {err}")
            for _suffix, pipeline, _goal in MODES:
                sizes.pop((name, pipeline), None)
            continue
        # The SET test wrote a 3-byte value to key:__rand_int__: did the writes happen?
        try:
            reply = resp_command(server.port, b"GET", b"key:__rand_int__")
        except (OSError, ValueError) as err:
            reply = repr(err).encode()
        # fakeredis's TCP server sends bulk replies as simple strings; accept both.
        if not (reply.startswith(b"$3\r\n") or (reply[:1] == b"+" and len(reply) == 6)):
            notes.append(f"{name}: GET key:__rand_int__ after the SET test replied {reply!r}")
    return sizes, warnings


def _report(names: list[str], results: dict[tuple[str, str], list[float]],
            sizes: dict[tuple[str, int], int], options: Options, notes: list[str]) -> str:
    headers = ["test", "kvrepl ops/s", "redis ops/s", "fakeredis ops/s", "kvrepl/redis",
               "kvrepl/fakeredis", "goal (kvrepl/redis)"]
    rows = []
    for suffix, _pipeline, goal in MODES:
        for test in TESTS:
            label = test + suffix
            kv, rd, fk = (median(results.get((label, s), [])) for s in
                          ("kvrepl", "redis", "fakeredis"))
            rows.append([label, fmt_rate(kv), fmt_rate(rd), fmt_rate(fk),
                         fmt_ratio(ratio(kv, rd)), fmt_ratio(ratio(kv, fk)),
                         goal_cell(ratio(kv, rd), goal)])
    sized = "; ".join(
        f"{name} {sizes[name, 1]:,} / {sizes[name, 16]:,}" for name in names
        if (name, 1) in sizes and (name, 16) in sizes)
    text = [
        f"## {TITLE}",
        "",
        f"`redis-benchmark -t set,get -c {CLIENTS} -n N -q --csv [-P 16]`; median of "
        f"{options.rounds} rounds, servers alternated (order rotated every round).",
        "",
        markdown_table(headers, rows),
        "",
        f"N per server (unpipelined / -P 16), sized for ~{options.seconds:g}s per test: "
        f"{sized}.",
    ]
    if notes:
        text += ["", "Notes:", *(f"- {note}" for note in notes)]
    return "\n".join(text) + "\n"
