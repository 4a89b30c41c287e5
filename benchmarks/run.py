"""Run kvrepl's benchmarks and print markdown tables (``make bench``).

    python benchmarks/run.py                     # everything, ~2-3 minutes
    python benchmarks/run.py --quick             # small N, 2 rounds: a smoke run
    python benchmarks/run.py --only tcp --markdown results.md

Progress goes to stderr, tables to stdout. Each benchmark is a module of this package listed in
``BENCHMARKS`` (name -> module); a module has ``TITLE`` and ``run(options) -> str``. To add one
(RDB load/save, replication full sync), write the module and add a line there.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

# Run as a script, sys.path[0] is benchmarks/: put the repo root first so that both this
# package and, from a checkout, kvrepl itself import.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import Options, log, tool_version  # noqa: E402

BENCHMARKS: dict[str, str] = {
    "tcp": "benchmarks.tcp",
    "inprocess": "benchmarks.inprocess",
    "embedded": "benchmarks.embedded",
    "embedded_reads": "benchmarks.embedded_reads",
    "replication": "benchmarks.replication",
    "rdb": "benchmarks.rdb",
    "geo": "benchmarks.geo",
    "hll": "benchmarks.hyperloglog",
    "hll_inplace": "benchmarks.hll_inplace",
    "bitmaps": "benchmarks.bitmaps",
    "streams": "benchmarks.streams",
    "lane_writes": "benchmarks.lane_writes",
    "aof": "benchmarks.aof",
    "cluster": "benchmarks.cluster_follow",
    "acl": "benchmarks.acl",
    "scripting": "benchmarks.scripting",
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="small N and 2 rounds: a smoke run, not a measurement")
    parser.add_argument("--only", action="append", choices=list(BENCHMARKS), metavar="NAME",
                        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}")
    parser.add_argument("--markdown", metavar="FILE", type=Path,
                        help="also write the tables to FILE")
    parser.add_argument("--rounds", type=int, metavar="R",
                        help="rounds per contender (default 5, 2 with --quick)")
    parser.add_argument("--seconds", type=float, metavar="S",
                        help="target length of one timed TCP test (default 1.5, 0.3 with --quick)")
    return parser.parse_args(argv)


def environment() -> str:
    """What the numbers depend on, as a markdown paragraph."""
    import kvrepl

    try:
        import fakeredis
        fake_version = getattr(fakeredis, "__version__", "installed")
    except ImportError:
        fake_version = "not installed"
    redis_version = tool_version(["redis-server", "--version"])
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"kvrepl {kvrepl.__version__} ({Path(kvrepl.__file__).parent}); "
        f"Python {platform.python_version()} ({sys.executable}); "
        f"{redis_version}; fakeredis {fake_version}; "
        f"{platform.machine()}, {os.cpu_count()} CPUs; load average at start {load}; "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}."
    )


def _raise_on_signal(signum: int, _frame: FrameType | None) -> None:
    # SIGTERM/SIGHUP unwind like Ctrl-C, so every finally block stops its servers.
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    options = Options(
        quick=args.quick,
        rounds=args.rounds or (2 if args.quick else 5),
        seconds=args.seconds or (0.3 if args.quick else 1.5),
    )
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_on_signal)

    selected = args.only or list(BENCHMARKS)
    sections = ["# kvrepl benchmarks" + (" (--quick: smoke run, not a measurement)"
                                          if options.quick else ""), "", environment(), ""]
    print("\n".join(sections), flush=True)
    status = 0
    started = time.monotonic()
    try:
        for name in dict.fromkeys(selected):
            module = importlib.import_module(BENCHMARKS[name])
            log(f"== {name}: {module.TITLE}")
            begun = time.monotonic()
            try:
                section = module.run(options)
            except (RuntimeError, OSError) as err:
                status = 1
                section = f"## {module.TITLE}\n\nFAILED: {err}\n"
                log(f"== {name} FAILED: {err}")
            log(f"== {name}: {time.monotonic() - begun:.0f}s")
            sections.append(section)
            print(section, flush=True)
    except KeyboardInterrupt:
        log("interrupted; every server started has been stopped")
        sections.append("(interrupted)\n")
        status = 130
    finally:
        load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
        footer = f"Total {time.monotonic() - started:.0f}s; load average at end {load}.\n"
        sections.append(footer)
        print(footer, flush=True)
        if args.markdown:
            args.markdown.write_text("\n".join(sections))
            log(f"tables written to {args.markdown}")
    return status


if __name__ == "__main__":
    sys.exit(main())
