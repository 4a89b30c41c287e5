"""What a trio program was doing when its event loop did not run: for a benchmark that
measures lag, the cause of each long pause, so that a figure can say whose it was.

:class:`StallRecorder` (a trio instrument plus a ``gc`` callback and a heartbeat task)
records, while it runs:

- every task step longer than ``step_threshold`` (which task, how long);
- every garbage collection (generation, wall time, objects collected);
- every late wake-up of a heartbeat task that sleeps ``period``: the loop was unavailable
  for that long, and the thread's scheduler counters over that window say whether it was
  running (our code, gc) or waiting for a core (the host).

:meth:`StallRecorder.explain` then tells, for a window of time, what it holds.
"""

from __future__ import annotations

import gc
import os
import time
from dataclasses import dataclass, field
from typing import Any

import trio


@dataclass
class Step:
    """A task step longer than the threshold (wall time only: a CPU clock read per step
    is a system call, which would weigh on what is measured)."""

    start: float
    wall: float
    task: str


@dataclass
class Collection:
    """One garbage collection (wall time)."""

    start: float
    wall: float
    generation: int
    collected: int


@dataclass
class Late:
    """A heartbeat that woke ``wall`` seconds late. Over that window the loop's thread was
    on a core for ``ran`` seconds (our code, gc included) and ``waited`` seconds ready to
    run but waiting for a core (the kernel's run-queue delay); the rest it slept (the
    loop had nothing to do, or a system call blocked). Both -1 where /proc does not tell."""

    start: float
    wall: float
    ran: float
    waited: float
    load: float  # the host's 1-minute load average when it woke


class SchedStat:
    """The calling thread's scheduler counters (Linux /proc/thread-self/schedstat: time on
    a core, time waiting for one), read with one system call each time."""

    def __init__(self) -> None:
        try:
            self._fd: int | None = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
        except OSError:
            self._fd = None

    def read(self) -> tuple[float, float]:
        """(seconds on a core, seconds waiting for one) so far, or (-1, -1)."""
        if self._fd is None:
            return -1.0, -1.0
        try:
            ran, waited = os.pread(self._fd, 100, 0).split()[:2]
            return int(ran) / 1e9, int(waited) / 1e9
        except (OSError, ValueError):
            return -1.0, -1.0

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def run_queue_seconds() -> float:
    """The calling thread's time spent waiting for a CPU so far (Linux's schedstat), or -1."""
    try:
        with open("/proc/thread-self/schedstat", "rb") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return -1.0


@dataclass(eq=False)  # hashable: trio keeps its instruments in a dict
class StallRecorder(trio.abc.Instrument):
    """Install with :meth:`start` from inside ``trio.run``; read the lists afterwards."""

    step_threshold: float = 0.010
    period: float = 0.002
    late_threshold: float = 0.010
    steps: list[Step] = field(default_factory=list)
    collections: list[Collection] = field(default_factory=list)
    lates: list[Late] = field(default_factory=list)
    _step_began: float = 0.0
    _gc_began: float = 0.0
    _running: bool = False

    # -- trio.abc.Instrument ------------------------------------------------------------------
    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._step_began = time.perf_counter()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        wall = time.perf_counter() - self._step_began
        if wall > self.step_threshold:
            self.steps.append(Step(self._step_began, wall, task.name))

    # -- gc ---------------------------------------------------------------------------------
    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_began = time.perf_counter()
        else:
            self.collections.append(Collection(
                self._gc_began, time.perf_counter() - self._gc_began,
                info.get("generation", -1), info.get("collected", 0)))

    async def start(self, nursery: trio.Nursery) -> None:
        """Begin recording (until :meth:`stop`); the heartbeat runs in ``nursery``."""
        trio.lowlevel.add_instrument(self)
        gc.callbacks.append(self._on_gc)
        self._running = True
        nursery.start_soon(self._heartbeat, name="stall-recorder heartbeat")

    def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        trio.lowlevel.remove_instrument(self)
        gc.callbacks.remove(self._on_gc)

    async def _heartbeat(self) -> None:
        sched = SchedStat()  # opened here: the loop's thread
        try:
            while self._running:
                due = time.perf_counter() + self.period
                ran, waited = sched.read()
                await trio.sleep(self.period)
                woke = time.perf_counter()
                if woke - due > self.late_threshold:
                    now_ran, now_waited = sched.read()
                    known = ran >= 0 <= now_ran
                    self.lates.append(Late(due, woke - due,
                                           now_ran - ran if known else -1.0,
                                           now_waited - waited if known else -1.0,
                                           os.getloadavg()[0]))
        finally:
            sched.close()

    # -- reading -----------------------------------------------------------------------------
    def window(self, start: float, end: float) -> tuple[list[Collection], list[Step], list[Late]]:
        """What overlaps ``start``..``end`` (perf_counter seconds)."""
        def overlaps(began: float, wall: float) -> bool:
            return began < end and began + wall > start

        return ([c for c in self.collections if overlaps(c.start, c.wall)],
                [s for s in self.steps if overlaps(s.start, s.wall)],
                [x for x in self.lates if overlaps(x.start, x.wall)])

    def explain(self, start: float, end: float) -> str:
        """What the recorder saw between ``start`` and ``end``, in words."""
        gcs, steps, lates = self.window(start, end)
        parts = []
        gcs = [c for c in gcs if c.wall > 0.002]
        if gcs:
            parts.append(", ".join(f"gc gen{c.generation} {c.wall * 1000:.0f} ms"
                                   for c in gcs))
        for s in sorted(steps, key=lambda s: -s.wall)[:3]:
            parts.append(f"step of '{_short(s.task)}' {s.wall * 1000:.0f} ms")
        if lates:
            parts.append(
                f"loop late {len(lates)} times, {sum(x.wall for x in lates) * 1000:.0f} ms in "
                f"all: on a core {sum(max(x.ran, 0) for x in lates) * 1000:.0f} ms, waiting "
                f"for one {sum(max(x.waited, 0) for x in lates) * 1000:.0f} ms (load "
                f"{lates[-1].load:.1f})")
        return "; ".join(parts) or "nothing recorded (no long step, no gc, loop on time)"

    def cause(self, start: float, end: float) -> str:
        """One word for the window: ``host`` when the loop's thread, while late, waited
        for a core longer than it ran; else ``gc`` when collections took most of what
        it ran; else ``ours`` (our code ran long); ``none`` when nothing was recorded."""
        gcs, steps, lates = self.window(start, end)
        if not lates and not steps:
            return "none"
        ran = sum(max(x.ran, 0) for x in lates)
        waited = sum(max(x.waited, 0) for x in lates)
        if waited > ran:
            return "host"
        if sum(c.wall for c in gcs) > ran / 2:
            return "gc"
        return "ours"


def host_busy_seconds() -> float:
    """CPU seconds all of the host's cores spent busy so far (Linux /proc/stat: all but
    idle and iowait), NaN where /proc is missing."""
    try:
        with open("/proc/stat", "rb") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return float("nan")
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1][:60]
