"""AOF cost: the share of SET throughput kept with the append-only file, beside redis-server.

``redis-benchmark -t set -c 50 -n N -P 16`` against each server with the AOF off,
``appendfsync everysec`` and ``appendfsync always`` (each its own process and directory);
the figure that matters is the share of the AOF-off throughput each setting keeps, kvrepl's
beside redis-server's (the issue's goal: kvrepl keeps at least redis-server's share with
everysec). Then a rewrite: BGREWRITEAOF of 1M keys (100k with --quick) on each server, its
duration and the worst PING round trip meanwhile. Not part of the test suite:
``python benchmarks/run.py --only aof``.
"""

from __future__ import annotations

import contextlib
import socket
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import (
    HOST,
    Options,
    Server,
    binary,
    fmt_rate,
    fmt_ratio,
    log,
    markdown_table,
    median,
    python_env,
    ratio,
    rotated,
    running,
)
from benchmarks.tcp import BenchmarkError, redis_benchmark

TITLE = "AOF: SET throughput kept with appendfsync everysec / always, kvrepl beside redis"

PIPELINE = 16
POLICIES = ("off", "everysec", "always")


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


def run(options: Options) -> str:
    tool = binary("redis-benchmark")
    if tool is None:
        raise RuntimeError("redis-benchmark is not on PATH")
    n = 20_000 if options.quick else 200_000
    results: dict[str, list[float]] = defaultdict(list)
    notes: list[str] = []
    commands = server_commands(options)
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
            for name in rotated(list(servers), round_number):
                try:
                    rates, _ = redis_benchmark(tool, servers[name].port, n, PIPELINE,
                                               timeout=300, tests=("SET",))
                except BenchmarkError as err:
                    notes.append(f"{name}: failed in round {round_number + 1}: {err}")
                    continue
                results[name].append(rates["SET"])
                log(f"[aof] round {round_number + 1}/{options.rounds} {name:16s} "
                    f"SET -P {PIPELINE}: {rates['SET']:>11,.0f}/s")
        keys = 100_000 if options.quick else 1_000_000
        rewrites = {}
        for name in ("kvrepl everysec", "redis everysec"):
            if name in servers:
                log(f"[aof] rewrite of {keys:,} keys on {name}")
                rewrites[name] = _rewrite(servers[name].port, keys)
    return _report(results, n, options, notes) + _rewrite_report(rewrites, keys)


def _call(sock: socket.socket, *args: bytes) -> bytes:
    sock.sendall(b"*%d\r\n" % len(args)
                 + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
    data = b""
    while not data.endswith(b"\r\n") or (data[:1] == b"$" and data.count(b"\r\n") < 2):
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
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
            time.sleep(0.01)


def _rewrite_report(rewrites: dict[str, tuple[float, float]], keys: int) -> str:
    if not rewrites:
        return ""
    rows = [[name.split()[0], f"{seconds:.2f}", f"{worst:.1f}"]
            for name, (seconds, worst) in rewrites.items()]
    kv, rd = rewrites.get("kvrepl everysec"), rewrites.get("redis everysec")
    text = ["", f"BGREWRITEAOF of {keys:,} keys (DEBUG POPULATE, 10-byte values), polled "
            "every 10 ms with PING and INFO:", "",
            markdown_table(["server", "rewrite seconds", "worst PING ms"], rows)]
    if kv and rd:
        text += ["", f"kvrepl/redis rewrite time: {fmt_ratio(ratio(kv[0], rd[0]))} "
                 "(goal: at most 3x; worst PING under 50 ms)."]
    return "\n".join(text) + "\n"


def _report(results: dict[str, list[float]], n: int, options: Options,
            notes: list[str]) -> str:
    headers = ["appendfsync", "kvrepl ops/s", "kvrepl share", "redis ops/s", "redis share",
               "kvrepl share / redis share"]
    rows = []
    base = {server: median(results.get(f"{server} off", [])) for server in ("kvrepl", "redis")}
    for policy in POLICIES:
        kv = median(results.get(f"kvrepl {policy}", []))
        rd = median(results.get(f"redis {policy}", []))
        kv_share, rd_share = ratio(kv, base["kvrepl"]), ratio(rd, base["redis"])
        label = "AOF off" if policy == "off" else policy
        rows.append([label, fmt_rate(kv), fmt_ratio(kv_share), fmt_rate(rd),
                     fmt_ratio(rd_share), fmt_ratio(ratio(kv_share, rd_share))])
    text = [
        f"## {TITLE}",
        "",
        f"`redis-benchmark -t set -c 50 -n {n:,} -P {PIPELINE} -q --csv`; median of "
        f"{options.rounds} rounds, servers alternated (order rotated every round). Share: "
        "throughput with the setting / throughput with the AOF off, same server.",
        "",
        markdown_table(headers, rows),
    ]
    if notes:
        text += ["", "Notes:", *(f"- {note}" for note in notes)]
    return "\n".join(text) + "\n"
