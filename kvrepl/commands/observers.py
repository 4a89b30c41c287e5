"""What the dispatcher records about each command's duration: the slow log (Redis
``slowlog.c``), the latency monitor's event series (``latency.c``) and the per-command
latency histograms behind LATENCY HISTOGRAM (``server.c`` updateCommandLatencyHistogram).

Sans-IO: plain data structures fed by :meth:`kvrepl.commands.core.Engine.call` and the
plain lane; the SLOWLOG and LATENCY commands read them.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass

SLOWLOG_ENTRY_MAX_ARGC = 32
SLOWLOG_ENTRY_MAX_STRING = 128
LATENCY_TS_LEN = 160  # samples kept per latency event


@dataclass(slots=True)
class SlowlogEntry:
    """One SLOWLOG GET entry."""

    id: int
    time: int
    duration: int
    argv: list[bytes]
    peer: bytes
    name: bytes


def _trimmed(argv: list[bytes]) -> list[bytes]:
    """slowlogCreateEntry: at most 32 arguments, the last saying how many more there were;
    strings over 128 bytes cut, saying how many bytes more."""
    argc = len(argv)
    kept = min(argc, SLOWLOG_ENTRY_MAX_ARGC)
    out = []
    for j in range(kept):
        if kept != argc and j == kept - 1:
            out.append(b"... (%d more arguments)" % (argc - kept + 1))
        elif len(argv[j]) > SLOWLOG_ENTRY_MAX_STRING:
            out.append(argv[j][:SLOWLOG_ENTRY_MAX_STRING]
                       + b"... (%d more bytes)" % (len(argv[j]) - SLOWLOG_ENTRY_MAX_STRING))
        else:
            out.append(bytes(argv[j]))
    return out


class SlowLog:
    """The slow log: newest entry first, at most ``slowlog-max-len`` entries."""

    def __init__(self) -> None:
        self.entries: deque[SlowlogEntry] = deque()
        self.next_id = 0

    def push(self, argv: list[bytes], duration: int, peer: str, name: bytes | None,
             max_len: int) -> None:
        """slowlogPushEntryIfNeeded, once the caller knows the command was slow enough."""
        self.entries.appendleft(SlowlogEntry(
            self.next_id, int(time.time()), duration, _trimmed(argv), peer.encode(),
            name or b""))
        self.next_id += 1
        self.trim(max_len)

    def trim(self, max_len: int) -> None:
        while len(self.entries) > max_len:
            self.entries.pop()

    def reset(self) -> None:
        self.entries.clear()


@dataclass(slots=True)
class LatencySeries:
    """latencyTimeSeries: a ring of (unix second, ms) samples and the all-time max."""

    idx: int = 0
    max: int = 0
    samples: list[list[int]] | None = None  # [time, latency] pairs, time 0 = unused

    def __post_init__(self) -> None:
        if self.samples is None:
            self.samples = [[0, 0] for _ in range(LATENCY_TS_LEN)]

    def ordered(self) -> list[list[int]]:
        """The used samples, oldest first."""
        ring = self.samples
        found = (ring[(self.idx + j) % LATENCY_TS_LEN] for j in range(LATENCY_TS_LEN))
        return [sample for sample in found if sample[0]]


class LatencyMonitor:
    """server.latency_events: event name -> its series, in creation order."""

    def __init__(self) -> None:
        self.events: dict[str, LatencySeries] = {}

    def add_sample(self, event: str, latency_ms: int, now: int | None = None) -> None:
        """latencyAddSample: one sample per second per event, the highest kept."""
        now = int(time.time()) if now is None else now
        series = self.events.get(event)
        if series is None:
            series = self.events[event] = LatencySeries()
        if latency_ms > series.max:
            series.max = latency_ms
        prev = series.samples[(series.idx + LATENCY_TS_LEN - 1) % LATENCY_TS_LEN]
        if prev[0] == now:
            if latency_ms > prev[1]:
                prev[1] = latency_ms
            return
        series.samples[series.idx] = [now, latency_ms]
        series.idx = (series.idx + 1) % LATENCY_TS_LEN

    def reset(self, event: bytes | None = None) -> int:
        """latencyResetEvent: drop one event (case-insensitive) or all; how many went."""
        if event is None:
            count = len(self.events)
            self.events.clear()
            return count
        wanted = event.decode("utf-8", "surrogateescape").lower()
        gone = [name for name in self.events if name.lower() == wanted]
        for name in gone:
            del self.events[name]
        return len(gone)


# -- per-command latency histograms ---------------------------------------------------------
# Redis records each call's duration in nanoseconds (usec * 1000, clamped to [1, 1e9]) into
# an hdr_histogram with 2 significant digits, and LATENCY HISTOGRAM walks it with a
# logarithmic iterator from 1024 ns doubling: each step reports the cumulative count of the
# values at or under the step's highest equivalent value, in usec. With 2 significant
# digits a bucket spans 2^(floor(log2(v)) - 7) ns above 256, so the step for 1024 << k ends
# at (1024 << k) + (8 << k) - 1. kvrepl counts the calls per step directly.

HISTOGRAM_MAX_NS = 1_000_000_000


def _step_tops() -> list[int]:
    tops = []
    k = 0
    while True:
        value = 1024 << k
        tops.append(value + (8 << k) - 1)
        if value > HISTOGRAM_MAX_NS:
            return tops
        k += 1


HISTOGRAM_STEP_TOPS = _step_tops()


def histogram_step(usec: float) -> int:
    """The index of the histogram step a call of ``usec`` microseconds falls in."""
    ns = int(usec) * 1000
    if ns < 1:
        ns = 1
    elif ns > HISTOGRAM_MAX_NS:
        ns = HISTOGRAM_MAX_NS
    return bisect_left(HISTOGRAM_STEP_TOPS, ns)


# histogram_step for the common short calls, by whole usec (a list index, not a search)
STEP_BY_USEC = [histogram_step(usec) for usec in range(1024)]


def new_histogram() -> list[int]:
    return [0] * len(HISTOGRAM_STEP_TOPS)


def histogram_reply(counts: list[int]) -> dict[bytes, object]:
    """fillCommandCDF: the calls and the cumulative counts of the steps where it grows."""
    cells: dict[int, int] = {}
    total = 0
    for top, count in zip(HISTOGRAM_STEP_TOPS, counts, strict=True):
        if count:
            total += count
            cells[top // 1000] = total
    return {b"calls": total, b"histogram_usec": cells}
