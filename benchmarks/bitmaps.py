"""Bit commands over TCP: redis-benchmark sending SETBIT & co. to kvrepl and to redis-server.

Two kinds of load: many small keys (``SETBIT key:__rand_int__ 7 1``, what the per-command
overhead decides), and in-place changes to one 1 MB string (SETBIT, APPEND, SETRANGE), where a
command must cost what it changes, not the size of the string. The 1 MB strings are written
with SET before each run, so every run starts from the same size.

Besides ops/s (which on a shared machine say as much about the neighbours as about the
servers), each run records the server process's own CPU time per command (utime + stime from
``/proc/<pid>/stat``), a figure that other load on the machine barely moves. ``GET`` and
``INCR`` on small keys are measured alongside, as the per-command floor of kvrepl's two paths
(the plain lane, the general dispatcher).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from benchmarks.common import (
    HOST,
    Options,
    Server,
    binary,
    encode_request,
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
    running,
)
from benchmarks.tcp import server_commands

TITLE = "Bit commands: redis-benchmark against kvrepl and redis-server"

CLIENTS = 50
GOAL = 0.3  # kvrepl/redis with -P 16
BIG = 1024 * 1024
# (label, command, key space for __rand_int__ or None, 1 MB key to seed or None)
TESTS: tuple[tuple[str, tuple[str, ...], int | None, str | None], ...] = (
    ("GET small keys (plain lane)", ("GET", "key:__rand_int__"), 100_000, None),
    ("INCR small keys (general path)", ("INCR", "counter:__rand_int__"), 100_000, None),
    ("SETBIT small keys", ("SETBIT", "key:__rand_int__", "7", "1"), 100_000, None),
    ("GETBIT small keys", ("GETBIT", "key:__rand_int__", "7"), 100_000, None),
    ("BITCOUNT small keys", ("BITCOUNT", "key:__rand_int__"), 100_000, None),
    ("BITFIELD INCRBY small keys", ("BITFIELD", "key:__rand_int__", "INCRBY", "u8", "8", "1"),
     100_000, None),
    ("SETBIT in a 1 MB string", ("SETBIT", "big:setbit", "4000000", "1"), None, "big:setbit"),
    ("APPEND to a 1 MB string", ("APPEND", "big:append", "x"), None, "big:append"),
    ("SETRANGE in a 1 MB string", ("SETRANGE", "big:setrange", "500000", "abc"), None,
     "big:setrange"),
)
PIPELINES = (1, 16)


def _seed(port: int, key: str) -> None:
    """SET ``key`` to 1 MB of zeros, over one connection, and wait for the reply."""
    import socket

    with socket.create_connection((HOST, port), timeout=30) as sock:
        sock.sendall(encode_request(b"SET", key.encode(), bytes(BIG)))
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = sock.recv(64)
            if not chunk:
                raise ConnectionError("closed while seeding")
            reply += chunk
    if reply != b"+OK\r\n":
        raise RuntimeError(f"seeding {key} replied {reply!r}")


def _benchmark(tool: str, port: int, command: tuple[str, ...], n: int, pipeline: int,
               keyspace: int | None) -> float:
    """One redis-benchmark run of ``command``: its requests per second."""
    keys = ["-r", str(keyspace)] if keyspace else []
    return redis_benchmark_rate(tool, port, ["-c", str(CLIENTS), "-n", str(n),
                                             "-P", str(pipeline), *keys, *command])


def in_place_costs(repeat: int = 2000) -> list[list[str]]:
    """In-process CPU time of one change to a 1 KB and to a 1 MB string: equal when a
    command costs what it changes, a thousandfold apart when it copies the string."""
    from kvrepl.commands.core import Engine
    from kvrepl.config import Config

    engine = Engine(Config(save=()))
    session = engine.new_session()
    rows = []
    for argv in ([b"SETBIT", b"s", b"4000", b"1"], [b"APPEND", b"s", b"x"],
                 [b"SETRANGE", b"s", b"500", b"abc"], [b"BITFIELD", b"s", b"INCRBY", b"u8",
                                                         b"#500", b"1"]):
        costs = []
        for size in (1024, BIG):
            engine.execute(session, [b"SET", b"s", bytes(size)])
            began = time.process_time()
            for _ in range(repeat):
                engine.execute(session, argv)
            costs.append((time.process_time() - began) / repeat * 1e6)
        rows.append([b" ".join(argv).decode(), f"{costs[0]:.2f}", f"{costs[1]:.2f}",
                     fmt_ratio(ratio(costs[1], costs[0]))])
    return rows


def run(options: Options) -> str:
    """Run every test on both servers, ``options.rounds`` times, and return the table."""
    tool = binary("redis-benchmark")
    if tool is None:
        raise RuntimeError("redis-benchmark is not on PATH")
    commands = {name: cmd for name, cmd in server_commands(options).items()
                if name in ("kvrepl", "redis") and cmd is not None}
    if set(commands) != {"kvrepl", "redis"}:
        raise RuntimeError("redis-server is not on PATH")
    small_n = 20_000 if options.quick else 200_000
    big_n = 2_000 if options.quick else 20_000
    results: dict[tuple[str, int, str], list[float]] = defaultdict(list)
    cpu: dict[tuple[str, int, str], list[float]] = defaultdict(list)  # us per command
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kvrepl-bits-")))
        servers = {name: stack.enter_context(running(Server(name, cmd, workdir,
                                                            env=python_env())))
                   for name, cmd in commands.items()}
        for round_number in range(options.rounds):
            for label, command, keyspace, big_key in TESTS:
                for pipeline in PIPELINES:
                    for name in rotated(list(servers), round_number):
                        port = servers[name].port
                        if big_key:
                            _seed(port, big_key)
                        n = big_n if big_key else small_n
                        pid = servers[name].proc.pid  # type: ignore[union-attr]
                        began = process_cpu_seconds(pid)
                        rate = _benchmark(tool, port, command, n, pipeline, keyspace)
                        spent = (process_cpu_seconds(pid) - began) / n * 1e6
                        results[label, pipeline, name].append(rate)
                        cpu[label, pipeline, name].append(spent)
                        log(f"[bitmaps] round {round_number + 1}/{options.rounds} "
                            f"{label} -P {pipeline} {name}: {rate:,.0f}/s, "
                            f"{spent:.2f} us CPU/command")
    headers = ["test", "-P", "kvrepl ops/s", "redis ops/s", "kvrepl/redis", "goal (-P 16)",
               "kvrepl CPU us/cmd", "redis CPU us/cmd", "redis/kvrepl CPU"]
    rows = []
    for label, *_ in TESTS:
        for pipeline in PIPELINES:
            kv = median(results[label, pipeline, "kvrepl"])
            rd = median(results[label, pipeline, "redis"])
            kv_cpu = median(cpu[label, pipeline, "kvrepl"])
            rd_cpu = median(cpu[label, pipeline, "redis"])
            rows.append([label, str(pipeline), fmt_rate(kv), fmt_rate(rd),
                         fmt_ratio(ratio(kv, rd)),
                         goal_cell(ratio(kv, rd), GOAL) if pipeline == 16 else "",
                         f"{kv_cpu:.2f}", f"{rd_cpu:.2f}", fmt_ratio(ratio(rd_cpu, kv_cpu))])
    text = [
        f"## {TITLE}",
        "",
        f"`redis-benchmark -c {CLIENTS} -n N -P 1|16 [-r 100000] <command>`; N = {small_n:,} "
        f"for small keys, {big_n:,} for the 1 MB string (set afresh before each run); median "
        f"of {options.rounds} rounds, servers alternated. CPU: the server process's utime + "
        f"stime per command (1/100 s ticks: redis's figures are coarse); their ratio is the "
        f"ops/s ratio each would reach with a core to itself.",
        "",
        markdown_table(headers, rows),
        "",
        "In-process CPU time per command (the engine alone, no network), on a 1 KB and on a "
        "1 MB string:",
        "",
        markdown_table(["command", "1 KB: us", "1 MB: us", "1 MB / 1 KB"], in_place_costs()),
    ]
    return "\n".join(text) + "\n"
