"""Python-level memory of a process, for the soak: what grows, not only how much.

:func:`census` is a report of the calling process: RSS, the interpreter's allocated blocks
(``sys.getallocatedblocks``: the small objects in pymalloc's arenas), the C allocator's
bytes in use (glibc's ``mallinfo2``: larger objects, dict and list tables), the objects the
cyclic collector tracks and the frozen ones (see :mod:`kvrepl.gc_policy`), the most numerous
types among the tracked ones and, when :mod:`tracemalloc` runs, the traced total and the top
allocation sites. With ``collect=True`` it first runs a full collection, then brings the
frozen objects back (:func:`gc.unfreeze`) and runs another that saves what it finds
(``gc.DEBUG_SAVEALL``): those objects (``frozen_garbage``, by type) are cycles that died
after they were frozen, which no collection would ever free: a leak that only the freeze
policy can cause. The objects frozen before are frozen again afterwards (as one more freeze
of the policy would), and the types counted then are those of every object.

Run as a script, it is ``kvrepl-server`` with the census behind a signal, so that the soak
can ask a server process about itself without any debug command in kvrepl::

    python benchmarks/memprobe.py OUT.json [kvrepl-server arguments]

SIGUSR1 writes :func:`census` to OUT.json; SIGUSR2 writes ``census(collect=True)``. With
``KVREPL_TRACEMALLOC=<frames>`` in the environment, tracemalloc starts before kvrepl is
imported (slower: for finding where memory goes, not for figures), and each census after a
collection lists the allocation sites that grew most since the previous one.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import signal
import sys
import tracemalloc
import types
from collections import Counter
from pathlib import Path
from typing import Any

TOP = 15  # types and allocation sites listed


def rss_of(pid: int) -> int:
    """Resident set size in bytes (VmRSS of /proc/<pid>/status), 0 if gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def malloc_in_use() -> int:
    """Bytes the C allocator has handed out and not got back (glibc's mallinfo2: heap
    and mmapped chunks), 0 where there is no mallinfo2. pymalloc's arenas (the small
    objects) are mmapped apart and not in it: ``sys.getallocatedblocks`` counts those."""
    if _mallinfo2 is None:
        return 0
    info = _mallinfo2()
    return int(info.uordblks + info.hblkhd)


def _load_mallinfo2() -> Any:
    # Once: a CDLL is a cycle, which a census would otherwise find dead every time.
    try:
        function = ctypes.CDLL(None).mallinfo2
    except (AttributeError, OSError):
        return None
    function.restype = _MallInfo2
    return function


_mallinfo2 = _load_mallinfo2()


def type_counts(objects: list[Any]) -> Counter[str]:
    """How many of ``objects`` each type has, by qualified name."""
    return Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in objects)


def describe(obj: Any) -> str:
    """A type name, or for a function or bound method which one: what tells a cycle's
    owner among garbage."""
    if isinstance(obj, types.MethodType):
        return f"method {type(obj.__self__).__qualname__}.{obj.__func__.__name__}"
    if isinstance(obj, types.FunctionType):
        return f"function {obj.__module__}.{obj.__qualname__}"
    if isinstance(obj, types.FrameType):
        return f"frame {obj.f_code.co_filename}:{obj.f_code.co_name}"
    if isinstance(obj, types.CoroutineType):
        return f"coroutine {obj.__qualname__}"
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def census(collect: bool = False) -> dict[str, Any]:
    """This process's memory figures (see the module's doc)."""
    report: dict[str, Any] = {"pid": os.getpid()}
    frozen_before = gc.get_freeze_count()
    if collect:
        gc.collect()  # the garbage a collection frees anyway, out of the count below
        gc.unfreeze()
        flags = gc.get_debug()
        gc.set_debug(flags | gc.DEBUG_SAVEALL)
        try:
            gc.collect()
            garbage = list(gc.garbage)
            gc.garbage.clear()
        finally:
            gc.set_debug(flags)
        report["frozen_garbage"] = len(garbage)
        report["frozen_garbage_types"] = Counter(map(describe, garbage)).most_common(TOP * 4)
        del garbage
        gc.collect()  # now without saving it: else the freeze below would keep it for good
    objects = gc.get_objects()  # every object the collector tracks, frozen ones too if collect
    report.update(
        rss=rss_of(os.getpid()),
        allocated_blocks=sys.getallocatedblocks(),
        malloc=malloc_in_use(),
        gc_tracked=len(objects),
        gc_frozen=gc.get_freeze_count(),
        types=type_counts(objects).most_common(TOP),
    )
    del objects
    if collect and frozen_before:
        gc.freeze()
    if tracemalloc.is_tracing():
        global _last_snapshot
        snapshot = tracemalloc.take_snapshot()
        report["traced"] = tracemalloc.get_traced_memory()[0]
        report["sites"] = [(str(stat.traceback), stat.size, stat.count)
                           for stat in snapshot.statistics("lineno")[:TOP]]
        if collect:  # what grew since the previous census after a collection
            if _last_snapshot is not None:
                report["sites_grown"] = [
                    (str(diff.traceback), diff.size_diff, diff.count_diff)
                    for diff in snapshot.compare_to(_last_snapshot, "lineno")[:TOP]]
            _last_snapshot = snapshot
    return report


_last_snapshot: tracemalloc.Snapshot | None = None


def serve(out: Path, argv: list[str]) -> int:
    """kvrepl-server with SIGUSR1/SIGUSR2 writing a census to ``out``."""

    def write(collect: bool) -> None:
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(census(collect)))
        tmp.replace(out)  # the reader never sees half a report

    signal.signal(signal.SIGUSR1, lambda *_: write(False))
    signal.signal(signal.SIGUSR2, lambda *_: write(True))
    frames = int(os.environ.get("KVREPL_TRACEMALLOC", "0"))
    if frames:
        tracemalloc.start(frames)
    from kvrepl.cli import main

    return main(argv)


if __name__ == "__main__":
    sys.exit(serve(Path(sys.argv[1]), sys.argv[2:]))
