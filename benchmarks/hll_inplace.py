"""PFADD then PFCOUNT of one dense HLL, over and over: the CPU time per pair, in-process.

    python benchmarks/run.py --only hll_inplace     # or: python -m benchmarks.hll_inplace
    KVREPL_BASELINE=/work/main python benchmarks/run.py --only hll_inplace   # A/B

Issue 9: PFADD and PFCOUNT must cost what they change, not the HLL's 12 KB. Each PFCOUNT
after a PFADD that grew a register recomputes the count and writes it back into the HLL's
header. Each contender runs in its own child process (this checkout, the
``KVREPL_BASELINE`` checkout, fakeredis as the peer) and measures, as ``time.process_time``
per pair (CPU, which the load of a shared host moves less than wall time), the minimum
over blocks of ``PAIRS`` pairs into a fresh dense HLL (``hll-sparse-max-bytes 0``: dense at
once, so that most elements grow a register):

- ``pipelined``: what a connection does with reads of 16 requests
  (``Connection.execute_buffered``: the parser, the plain lane, the dispatcher, replies);
- ``dispatcher``: ``Engine.execute`` per command (fakeredis: its client methods).

The children take turns round by round (the order rotates); each cell is the range over
the rounds.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (  # noqa: E402
    REPO_ROOT,
    BenchmarkError,
    Options,
    fmt_ratio,
    log,
    markdown_table,
    median,
    python_env,
    ratio,
    rotated,
)

TITLE = "HLL in place: PFADD then PFCOUNT of one dense HLL, CPU per pair (in-process)"

PAIRS = 400  # per block: the HLL stays mostly zero registers, so most PFADDs grow one
MODES = ("pipelined", "dispatcher")


def _pack(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def _elements(blocks: int) -> list[list[bytes]]:
    rng = random.Random(9)
    return [[b"%012d" % rng.randrange(10**12) for _ in range(PAIRS)] for _ in range(blocks)]


def kvrepl_costs(blocks: int) -> dict[str, float]:
    """Microseconds of CPU per PFADD+PFCOUNT pair of the kvrepl importable here, by mode;
    and the share of PFADDs that grew a register (``grew``)."""
    from kvrepl.commands.core import Engine
    from kvrepl.config import Config
    from kvrepl.server.server import Connection
    from kvrepl.server.server import Server as KvreplServer

    engine = Engine(Config(save=(), hll_sparse_max_bytes=0))
    connection = Connection(KvreplServer(engine), object(), engine.new_session())
    session = engine.new_session()
    best = {mode: float("inf") for mode in MODES}
    grew = total = 0
    for n, elements in enumerate(_elements(blocks)):
        for mode in rotated(list(MODES), n):
            key = b"hll:%d:%s" % (n, mode.encode())
            engine.execute(session, [b"PFADD", key, b"first"])  # dense from the start
            if mode == "pipelined":
                reads = [b"".join(_pack(b"PFADD", key, e) + _pack(b"PFCOUNT", key)
                                  for e in elements[i:i + 8]) for i in range(0, PAIRS, 8)]
                feed, execute, out = connection.parser.feed, connection.execute_buffered, []
                began = time.process_time()
                for chunk in reads:
                    feed(chunk)
                    execute(out)
                spent = time.process_time() - began
                if len(out) < 2 * PAIRS:
                    raise RuntimeError(f"pipelined: {out[:2]!r}")
                grew += b"".join(out).count(b":1\r\n")  # at least the PFADDs that grew
                total += PAIRS
            else:
                run = engine.execute
                began = time.process_time()
                for e in elements:
                    run(session, [b"PFADD", key, e])
                    run(session, [b"PFCOUNT", key])
                spent = time.process_time() - began
            best[mode] = min(best[mode], spent / PAIRS * 1e6)
    return {**best, "grew": grew / total}


def fakeredis_costs(blocks: int) -> dict[str, float]:
    """The same pairs through fakeredis.FakeRedis (no pipelining: ``dispatcher`` only)."""
    import fakeredis

    client = fakeredis.FakeRedis()
    best = float("inf")
    for n, elements in enumerate(_elements(blocks)):
        key = b"hll:%d" % n
        pfadd, pfcount = client.pfadd, client.pfcount
        began = time.process_time()
        for e in elements:
            pfadd(key, e)
            pfcount(key)
        best = min(best, (time.process_time() - began) / PAIRS * 1e6)
    return {"dispatcher": best}


def _child(name: str, root: str, blocks: int) -> dict[str, float]:
    """One child's costs; its kvrepl is imported from ``root`` (checked)."""
    argv = [sys.executable, "-m", "benchmarks.hll_inplace", "--child", name, str(blocks), root]
    done = subprocess.run(argv, env=python_env(), cwd=REPO_ROOT, capture_output=True,
                          timeout=600)
    if done.returncode:
        raise BenchmarkError(f"{name}: {done.stderr.decode(errors='replace')[-2000:]}")
    costs = json.loads(done.stdout)
    loaded = costs.pop("from", None)
    if loaded is not None and not loaded.startswith(str(Path(root).resolve())):
        raise BenchmarkError(f"{name}: kvrepl came from {loaded}, not {root}")
    return costs  # type: ignore[no-any-return]


def _span(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}" if values else "n/a"


def run(options: Options) -> str:
    """Run the rounds and return the markdown section."""
    blocks = 3 if options.quick else 15
    children = {"kvrepl": str(REPO_ROOT), "fakeredis": str(REPO_ROOT)}
    baseline = os.environ.get("KVREPL_BASELINE")
    if baseline:
        children["baseline"] = baseline
    results: dict[tuple[str, str], list[float]] = {}
    for round_number in range(options.rounds):
        for name in rotated(list(children), round_number):
            log(f"hll_inplace: round {round_number + 1}, {name}")
            costs = _child(name, children[name], blocks)
            for mode, value in costs.items():
                results.setdefault((name, mode), []).append(value)
    rows = []
    for mode in MODES:
        ours = results.get(("kvrepl", mode), [])
        peer = results.get(("fakeredis", mode), [])
        base = results.get(("baseline", mode), [])
        rows.append([mode, _span(ours), _span(base), _span(peer),
                     fmt_ratio(ratio(median(base), median(ours))) if base else "n/a",
                     fmt_ratio(ratio(median(peer), median(ours))) if peer else "n/a"])
    grew = results.get(("kvrepl", "grew"), [0.0])
    table = markdown_table(["mode", "kvrepl us/pair", "baseline us/pair", "fakeredis us/pair",
                            "baseline/kvrepl", "fakeredis/kvrepl"], rows)
    return (f"{table}\n\nPFADDs that grew a register: {median(grew) * 100:.0f}% "
            f"(each then makes PFCOUNT recompute and write its cache back). Ranges over "
            f"{options.rounds} rounds, each the minimum over {blocks} blocks of {PAIRS} "
            f"pairs.\n")


def _main() -> None:
    if len(sys.argv) >= 5 and sys.argv[1] == "--child":
        name, blocks, root = sys.argv[2], int(sys.argv[3]), sys.argv[4]
        if name == "fakeredis":
            print(json.dumps(fakeredis_costs(blocks)))
            return
        sys.path.insert(0, root)  # before kvrepl is first imported
        import kvrepl

        print(json.dumps({**kvrepl_costs(blocks), "from": str(Path(kvrepl.__file__).resolve())}))
        return
    print(run(Options(quick="--quick" in sys.argv, rounds=3)))


if __name__ == "__main__":
    _main()
