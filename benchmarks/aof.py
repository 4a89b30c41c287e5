"""AOF cost: the share of SET throughput kept with the append-only file, beside redis-server.

``redis-benchmark -t set -c 50 -n N -P 16`` against each server with the AOF off,
``appendfsync everysec`` and ``appendfsync always`` (each its own process and directory);
the figure that matters is the share of the AOF-off throughput each setting keeps, kvrepl's
beside redis-server's (the issue's goal: kvrepl keeps at least redis-server's share with
everysec). Then a rewrite: BGREWRITEAOF of 1M keys (100k with --quick) on each server, its
duration and the worst PING round trip meanwhile. Not part of the test suite:
``python benchmarks/run.py --only aof``.

The host is shared and noisy, so nothing here rests on one measurement: every round runs
each of the six servers once (kvrepl and redis-server alternating, the order rotated from
round to round), and a share is computed *within* a round (the setting's run over the same
server's AOF-off run of that round, minutes apart at most), then summarised as the median
and the range over the rounds. Rewrites likewise alternate kvrepl and redis-server, one of
each per round. The load average before and after is printed: read the figures with it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks.common import (
    HOST,
    BenchmarkError,
    Options,
    Server,
    binary,
    fmt_ratio,
    log,
    markdown_table,
    median,
    process_cpu_seconds,
    python_env,
    ratio,
    redis_benchmark_rate,
    rotated,
    running,
)

TITLE = "AOF: SET throughput kept with appendfsync everysec / always, kvrepl beside redis"

PIPELINE = 16
CLIENTS = 50
POLICIES = ("off", "everysec", "always")
SERVERS = ("kvrepl", "redis")
#: PING and INFO are sent every this many seconds while a rewrite runs.
POLL_SECONDS = 0.01


def _aof_flags(policy: str) -> list[str]:
    if policy == "off":
        return ["--appendonly", "no"]
    return ["--appendonly", "yes", "--appendfsync", policy]


def server_commands(options: Options) -> dict[str, Callable[[int], list[str]]]:
    """(server, policy) name -> command line as a function of the port."""
    redis = binary("redis-server")
    commands: dict[str, Callable[[int], list[str]]] = {}
    for policy in POLICIES:
        flags = _aof_flags(policy)
        commands[f"kvrepl {policy}"] = (
            lambda port, flags=flags: [options.python, "-m", "kvrepl", "--port", str(port),
                                       "--bind", HOST, "--save", "", "--dir", ".",
                                       "--enable-debug-command", "yes", *flags])
        if redis:
            commands[f"redis {policy}"] = (
                lambda port, flags=flags: [redis, "--port", str(port), "--bind", HOST,
                                           "--save", "", "--dir", ".",
                                           "--enable-debug-command", "yes", *flags])
    return commands


def _interleaved(names: Sequence[str], round_number: int) -> list[str]:
    """This round's order: policy by policy (rotated every round), kvrepl and redis-server
    side by side (which one first alternates), so that each share's two runs are close."""
    order = []
    for policy in rotated(list(POLICIES), round_number):
        pair = [f"{server} {policy}" for server in SERVERS if f"{server} {policy}" in names]
        order += pair if round_number % 2 == 0 else pair[::-1]
    return order


def run(options: Options) -> str:
    tool = binary("redis-benchmark")
    if tool is None:
        raise RuntimeError("redis-benchmark is not on PATH")
    n = 20_000 if options.quick else 200_000
    keys = 100_000 if options.quick else 1_000_000
    rates: dict[str, dict[int, float]] = defaultdict(dict)  # name -> round -> ops/s
    costs: dict[str, dict[int, float]] = defaultdict(dict)  # name -> round -> CPU us / SET
    rewrites: dict[str, list[tuple[float, float]]] = defaultdict(list)
    notes: list[str] = []
    load_before = os.getloadavg()
    commands = server_commands(options)
    args = ["-t", "set", "-c", str(CLIENTS), "-n", str(n), "-P", str(PIPELINE)]
    with contextlib.ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kvrepl-aof-")))
        servers = {}
        for name, command in commands.items():
            workdir = root / name.replace(" ", "-")
            workdir.mkdir()
            log(f"[aof] starting {name}")
            servers[name] = stack.enter_context(
                running(Server(name.replace(" ", "-"), command, workdir, env=python_env())))
        for round_number in range(options.rounds):
            for name in _interleaved(list(servers), round_number):
                pid = servers[name].proc.pid  # type: ignore[union-attr]
                cpu = process_cpu_seconds(pid)
                try:
                    rate = redis_benchmark_rate(tool, servers[name].port, args, timeout=300,
                                                test="SET")
                except BenchmarkError as err:
                    notes.append(f"{name}: failed in round {round_number + 1}: {err}")
                    continue
                rates[name][round_number] = rate
                costs[name][round_number] = (process_cpu_seconds(pid) - cpu) / n * 1e6
                log(f"[aof] round {round_number + 1}/{options.rounds} {name:16s} "
                    f"SET -P {PIPELINE}: {rate:>11,.0f}/s, "
                    f"{costs[name][round_number]:.2f} us of server CPU per SET")
        contenders = [name for name in ("kvrepl everysec", "redis everysec") if name in servers]
        for round_number in range(options.rounds):
            for name in rotated(contenders, round_number):
                log(f"[aof] round {round_number + 1}/{options.rounds} rewrite of {keys:,} "
                    f"keys on {name}")
                try:
                    rewrites[name].append(_rewrite(servers[name].port, keys))
                except (OSError, BenchmarkError) as err:
                    notes.append(f"{name}: rewrite failed in round {round_number + 1}: {err}")
    load_after = os.getloadavg()
    load = (f"Load average (1/5/15 min) {'/'.join(f'{x:.1f}' for x in load_before)} before, "
            f"{'/'.join(f'{x:.1f}' for x in load_after)} after, on {os.cpu_count()} CPUs.")
    return (_report(rates, costs, n, options, notes, load)
            + _rewrite_report(rewrites, keys, options.rounds))


# -- a rewrite, timed ---------------------------------------------------------------------------

def _call(sock: socket.socket, *args: bytes) -> bytes:
    sock.sendall(b"*%d\r\n" % len(args)
                 + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
    data = b""
    while not data.endswith(b"\r\n") or (data[:1] == b"$" and data.count(b"\r\n") < 2):
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    if data[:1] == b"-":
        raise BenchmarkError(data.decode(errors="replace").strip())
    return data


def _rewrites_done(info: bytes) -> int:
    return int(info.split(b"aof_rewrites:")[1].split(b"\r\n")[0])


def _rewrite(port: int, keys: int) -> tuple[float, float]:
    """(seconds the rewrite took, worst PING round trip meanwhile, in ms)."""
    with socket.create_connection((HOST, port), timeout=600) as sock:
        _call(sock, b"FLUSHALL")
        _call(sock, b"DEBUG", b"POPULATE", b"%d" % keys, b"key", b"10")
        before = _rewrites_done(_call(sock, b"INFO", b"persistence"))
        began = time.perf_counter()
        _call(sock, b"BGREWRITEAOF")
        worst = 0.0
        while True:
            sent = time.perf_counter()
            _call(sock, b"PING")
            worst = max(worst, time.perf_counter() - sent)
            info = _call(sock, b"INFO", b"persistence")
            if b"aof_rewrite_in_progress:0" in info and _rewrites_done(info) > before:
                return time.perf_counter() - began, worst * 1000
            time.sleep(POLL_SECONDS)


# -- reports ------------------------------------------------------------------------------------

def _spread(values: Sequence[float], fmt: Callable[[float], str]) -> str:
    """``median (min-max)`` of ``values``, or n/a."""
    values = [v for v in values if v == v]
    if not values:
        return "n/a"
    if len(values) == 1:
        return fmt(values[0])
    return f"{fmt(median(values))} ({fmt(min(values))}-{fmt(max(values))})"


def _kops(value: float) -> str:
    return f"{value / 1000:,.0f}k"


def _shares(rates: dict[str, dict[int, float]], server: str, policy: str) -> list[float]:
    """The setting's throughput over the same server's AOF-off throughput, round by round."""
    runs, base = rates.get(f"{server} {policy}", {}), rates.get(f"{server} off", {})
    return [runs[r] / base[r] for r in sorted(runs) if r in base and base[r]]


def _report(rates: dict[str, dict[int, float]], costs: dict[str, dict[int, float]], n: int,
            options: Options, notes: list[str], load: str) -> str:
    headers = ["appendfsync", "kvrepl ops/s", "kvrepl share", "redis ops/s", "redis share",
               "kvrepl share / redis share"]
    rows = []
    for policy in POLICIES:
        cells = [("AOF off" if policy == "off" else policy)]
        shares = {}
        for server in SERVERS:
            shares[server] = _shares(rates, server, policy)
            cells += [_spread(list(rates.get(f"{server} {policy}", {}).values()), _kops),
                      _spread(shares[server], fmt_ratio)]
        # Per round: kvrepl's share over redis-server's share of that same round.
        kv = dict(zip(sorted(rates.get(f"kvrepl {policy}", {})), shares["kvrepl"], strict=False))
        rd = dict(zip(sorted(rates.get(f"redis {policy}", {})), shares["redis"], strict=False))
        cells.append(_spread([ratio(kv[r], rd[r]) for r in kv if r in rd], fmt_ratio))
        rows.append(cells)
    cost_rows = []
    for policy in POLICIES:
        cells = [("AOF off" if policy == "off" else policy)]
        for server in SERVERS:
            runs, base = costs.get(f"{server} {policy}", {}), costs.get(f"{server} off", {})
            cells += [_spread(list(runs.values()), lambda v: f"{v:.2f}"),
                      _spread([base[r] / runs[r] for r in runs if r in base and runs[r]],
                              fmt_ratio)]
        cost_rows.append(cells)
    text = [
        f"## {TITLE}",
        "",
        f"`redis-benchmark -t set -c {CLIENTS} -n {n:,} -P {PIPELINE} -q --csv`, "
        f"{options.rounds} rounds; each cell is the median (min-max) over the rounds. Share: "
        "throughput with the setting / throughput with the AOF off, same server, same round; "
        "the last column compares the two shares round by round.",
        "",
        markdown_table(headers, rows),
        "",
        "The same runs in server CPU time (user + system, all threads, from /proc) per SET: "
        "what each setting costs the server whatever the rest of the host does (fsync waits "
        "are not CPU: this understates `always`). Share: CPU per SET with the AOF off / with "
        "the setting, same round.",
        "",
        markdown_table(["appendfsync", "kvrepl CPU us/SET", "kvrepl share", "redis CPU us/SET",
                        "redis share"], cost_rows),
        "",
        load,
    ]
    if notes:
        text += ["", "Notes:", *(f"- {note}" for note in notes)]
    return "\n".join(text) + "\n"


def _rewrite_report(rewrites: dict[str, list[tuple[float, float]]], keys: int,
                    rounds: int) -> str:
    if not rewrites:
        return ""
    rows = []
    for name in ("kvrepl everysec", "redis everysec"):
        runs = rewrites.get(name, [])
        rows.append([name.split()[0], _spread([s for s, _ in runs], lambda v: f"{v:.2f}"),
                     _spread([w for _, w in runs], lambda v: f"{v:.1f}"),
                     f"{max((w for _, w in runs), default=float('nan')):.1f}"])
    kv, rd = rewrites.get("kvrepl everysec", []), rewrites.get("redis everysec", [])
    text = ["", f"BGREWRITEAOF of {keys:,} keys (DEBUG POPULATE, 10-byte values), {rounds} "
            f"rounds alternating the servers, PING then INFO every {POLL_SECONDS * 1000:.0f} ms "
            "meanwhile; median (min-max) over the rounds:", "",
            markdown_table(["server", "rewrite seconds", "worst PING ms (per rewrite)",
                            "worst PING ms (all rounds)"], rows)]
    if kv and rd:
        times = [ratio(k[0], r[0]) for k, r in zip(kv, rd, strict=False)]
        text += ["", f"kvrepl/redis rewrite time, round by round: {_spread(times, fmt_ratio)} "
                 "(goal: at most 3x; worst PING under 50 ms)."]
    return "\n".join(text) + "\n"
