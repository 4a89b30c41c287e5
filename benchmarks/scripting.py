"""Scripting and TLS throughput: issue #10's speed goals, each beside its peer in the same run.

- EVALSHA of a script that runs one INCR, ``redis-benchmark -c 50 -P 16``: kvrepl's server
  against redis-server (goal: at least 0.2x).
- The same EVALSHA in-process: ``kvrepl.Master.execute_command`` against
  ``fakeredis.FakeRedis.evalsha`` (fakeredis runs Lua through lupa; goal: at least 20x).
- SET and GET over TLS, ``redis-benchmark --tls -c 50 -P 16``: kvrepl's ``tls-port`` against
  redis-server's (goal: at least 0.3x). Certificates are made for the run by trustme.

The contenders take turns, the order rotating every round; each cell is the median over the
rounds and the ratio column also gives the range of the per-round ratios (the host is shared
and noisy).
"""

from __future__ import annotations

import contextlib
import importlib.util
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from benchmarks.common import (
    HOST,
    BenchmarkError,
    Options,
    Server,
    binary,
    fmt_rate,
    fmt_ratio,
    free_port,
    goal_cell,
    log,
    markdown_table,
    median,
    python_env,
    ratio,
    redis_benchmark_rate,
    resp_command,
    rotated,
    running,
)

TITLE = "Scripting and TLS: EVALSHA and TLS SET/GET against redis-server and fakeredis"

SCRIPT = b"return redis.call('incr', KEYS[1])"
CLIENTS = 50
PIPELINE = 16
GOAL_EVALSHA_VS_REDIS = 0.2
GOAL_EVALSHA_VS_FAKEREDIS = 20.0
GOAL_TLS_VS_REDIS = 0.3


def _certs(directory: Path) -> dict[str, str] | None:
    """A throwaway CA and a certificate for 127.0.0.1 (None without trustme)."""
    if importlib.util.find_spec("trustme") is None:
        return None
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert(HOST, "localhost")
    paths = {"ca": directory / "ca.crt", "cert": directory / "server.crt",
             "key": directory / "server.key"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    cert.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    cert.private_key_pem.write_to_path(str(paths["key"]))
    return {name: str(path) for name, path in paths.items()}


def _servers(options: Options, certs: dict[str, str] | None, tls_ports: dict[str, int]
             ) -> dict[str, list[str] | None]:
    redis = binary("redis-server")
    tls: list[str] = []
    if certs is not None:
        tls = ["--tls-cert-file", certs["cert"], "--tls-key-file", certs["key"],
               "--tls-ca-cert-file", certs["ca"]]
    return {
        "kvrepl": [options.python, "-m", "kvrepl", "--bind", HOST, "--save", "",
                   *(["--tls-port", str(tls_ports["kvrepl"]), *tls] if tls else [])],
        "redis": [redis, "--bind", HOST, "--save", "", "--appendonly", "no",
                  *(["--tls-port", str(tls_ports["redis"]), *tls] if tls else [])]
        if redis else None,
    }


def _in_process(options: Options, rounds: dict[str, list[float]]) -> list[str]:
    """EVALSHA in-process, kvrepl against fakeredis, one round of each."""
    import kvrepl

    notes: list[str] = []
    contenders: dict[str, object] = {"kvrepl": kvrepl.Master()}
    try:
        import fakeredis

        contenders["fakeredis"] = fakeredis.FakeRedis()
    except ImportError:
        notes.append("fakeredis is not installed: its in-process column is empty")
    counts = {"kvrepl": 2_000 if options.quick else 20_000,
              "fakeredis": 300 if options.quick else 3_000}
    for round_number in range(options.rounds):
        for name in rotated(list(contenders), round_number):
            store = contenders[name]
            run = store.execute_command  # type: ignore[attr-defined]
            sha = run("SCRIPT", "LOAD", SCRIPT)
            count = counts[name]
            start = time.perf_counter()
            for _ in range(count):
                run("EVALSHA", sha, 1, b"counter")
            rounds[name].append(count / (time.perf_counter() - start))
            log(f"[scripting] in-process {name:9s} EVALSHA {rounds[name][-1]:>10,.0f}/s")
    return notes


def run(options: Options) -> str:
    """Run the scripting and TLS benchmark and return its markdown section."""
    tool = binary("redis-benchmark")
    if tool is None:
        raise RuntimeError("redis-benchmark is not on PATH (run `make redis`)")
    notes: list[str] = []
    results: dict[tuple[str, str], list[float]] = defaultdict(list)
    n_evalsha = 20_000 if options.quick else 200_000
    n_tls = 20_000 if options.quick else 300_000
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kvrepl-bench-")))
        certs = _certs(workdir)
        if certs is None:
            notes.append("trustme is not installed: no TLS figures")
        tls_ports = {"kvrepl": free_port(), "redis": free_port()}
        servers: dict[str, Server] = {}
        for name, argv in _servers(options, certs, tls_ports).items():
            if argv is None:
                notes.append(f"{name}: not available here, skipped")
                continue
            servers[name] = stack.enter_context(running(Server(
                name, lambda port, argv=argv: [*argv, "--port", str(port)], workdir,
                env=python_env())))
        shas = {name: resp_command(server.port, b"SCRIPT", b"LOAD", SCRIPT).split(b"\r\n")[1]
                .decode() for name, server in servers.items()}
        tls_args = (["--tls", "--cacert", certs["ca"], "--cert", certs["cert"], "--key",
                     certs["key"]] if certs is not None else [])
        failed: set[tuple[str, str]] = set()
        for round_number in range(options.rounds):
            for name in rotated(list(servers), round_number):
                server = servers[name]
                jobs = [("EVALSHA -P 16", server.port, ["-n", str(n_evalsha), "evalsha",
                                                         shas[name], "1", "counter"], None)]
                if certs is not None:
                    for test in ("SET", "GET"):
                        jobs.append((f"TLS {test} -P 16", tls_ports[name],
                                     [*tls_args, "-t", test.lower(), "-n", str(n_tls)], test))
                for label, port, args, test in jobs:
                    if (label, name) in failed:
                        continue
                    try:
                        rate = redis_benchmark_rate(
                            tool, port, ["-c", str(CLIENTS), "-P", str(PIPELINE), *args],
                            timeout=300, test=test)
                    except BenchmarkError as err:
                        failed.add((label, name))
                        notes.append(f"{name} {label}: failed in round {round_number + 1}: "
                                     f"{err}")
                        continue
                    results[label, name].append(rate)
                    log(f"[scripting] round {round_number + 1}/{options.rounds} {name:7s} "
                        f"{label:14s} {rate:>11,.0f}/s")
    in_process: dict[str, list[float]] = defaultdict(list)
    notes += _in_process(options, in_process)
    return _report(results, in_process, options, notes)


def _range(ours: list[float], theirs: list[float]) -> str:
    ratios = [a / b for a, b in zip(ours, theirs, strict=False) if b]
    if not ratios:
        return "n/a"
    return f"{fmt_ratio(median(ratios))} ({min(ratios):.2f}-{max(ratios):.2f})"


def _report(results: dict[tuple[str, str], list[float]], in_process: dict[str, list[float]],
            options: Options, notes: list[str]) -> str:
    headers = ["test", "kvrepl ops/s", "peer", "peer ops/s", "kvrepl/peer (range)", "goal"]
    rows = []
    for label, goal in (("EVALSHA -P 16", GOAL_EVALSHA_VS_REDIS),
                        ("TLS SET -P 16", GOAL_TLS_VS_REDIS),
                        ("TLS GET -P 16", GOAL_TLS_VS_REDIS)):
        ours, theirs = results.get((label, "kvrepl"), []), results.get((label, "redis"), [])
        rows.append([label, fmt_rate(median(ours)), "redis-server", fmt_rate(median(theirs)),
                     _range(ours, theirs), goal_cell(ratio(median(ours), median(theirs)),
                                                     goal)])
    ours, theirs = in_process.get("kvrepl", []), in_process.get("fakeredis", [])
    rows.append(["EVALSHA in-process", fmt_rate(median(ours)), "fakeredis",
                 fmt_rate(median(theirs)), _range(ours, theirs),
                 goal_cell(ratio(median(ours), median(theirs)), GOAL_EVALSHA_VS_FAKEREDIS)])
    text = [
        f"## {TITLE}",
        "",
        f"`redis-benchmark -c {CLIENTS} -P {PIPELINE}` (`evalsha <sha> 1 counter`; `--tls -t "
        f"set|get`); in-process: a loop of EVALSHA calls. Median of {options.rounds} rounds, "
        "contenders alternated; the range is that of the per-round ratios.",
        "",
        markdown_table(headers, rows),
    ]
    if notes:
        text += ["", "Notes:", *(f"- {note}" for note in notes)]
    return "\n".join(text) + "\n"
