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

from kvrepl.config import format_percentile
from kvrepl.protocol.replies import DeferredMap

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
# Redis records each call's duration in nanoseconds (whole usec * 1000, clamped to [1, 1e9])
# into an hdr_histogram of 2 significant digits: a value counts in the sub-bucket of its
# "lowest equivalent value", 256 sub-buckets per power of two (hdr's counts index). kvrepl
# keeps the same counts, keyed by that lowest equivalent value (at most 3072 keys a
# command), so that LATENCY HISTOGRAM and INFO latencystats read what Redis's would:
# LATENCY HISTOGRAM walks it with hdr's logarithmic iterator from 1024 ns doubling, each step
# reporting the cumulative count up to the step's highest equivalent value, in usec.

HISTOGRAM_MAX_NS = 1_000_000_000
_HIGHEST_TRACKED = (256 << 22) - 1  # the top of the last sub-bucket for 1e9 (3072 counts)


def hdr_lowest(ns: int) -> int:
    """hdr's lowest_equivalent_value (unit magnitude 0, 256 sub-buckets)."""
    shift = (ns | 255).bit_length() - 8
    return (ns >> shift) << shift


def hdr_highest(ns: int) -> int:
    """hdr's highest_equivalent_value: the top of the sub-bucket ``ns`` falls in."""
    shift = (ns | 255).bit_length() - 8
    return ((ns >> shift) << shift) + (1 << shift) - 1


def _ns(whole_usec: int) -> int:
    return min(max(whole_usec * 1000, 1), HISTOGRAM_MAX_NS)


def _step_tops() -> list[int]:
    """Where each step of hdr_iter_log_init(1024, 2) ends; the last one stops at the top of
    the histogram's last sub-bucket, where the iterator runs out of counts."""
    tops = []
    value = 1024
    while value <= HISTOGRAM_MAX_NS:
        tops.append(hdr_highest(value))
        value *= 2
    tops.append(_HIGHEST_TRACKED)
    return tops


HISTOGRAM_STEP_TOPS = _step_tops()
# the key of a call of ``whole`` usec, for the common short calls (a list index, no math)
KEY_BY_USEC = [hdr_lowest(_ns(whole)) for whole in range(1024)]


def latency_key(usec: float) -> int:
    """The histogram key of a call of ``usec`` microseconds."""
    whole = int(usec)
    return KEY_BY_USEC[whole] if whole < 1024 else hdr_lowest(_ns(whole))


def latency_counts(short: list[int] | None, tail: dict[int, int]) -> dict[int, int]:
    """A command's counts by hdr sub-bucket: ``short`` (calls by whole usec under 1024) and
    ``tail`` (longer calls, already by sub-bucket) joined."""
    counts = dict(tail)
    for whole, calls in enumerate(short or ()):
        if calls:
            key = KEY_BY_USEC[whole]
            counts[key] = counts.get(key, 0) + calls
    return counts


def histogram_reply(counts: dict[int, int]) -> dict[bytes, object]:
    """fillCommandCDF: the calls and the cumulative counts of the steps where it grows
    (their map's length set after them)."""
    cells: dict[int, int] = {}
    total = 0
    for key in sorted(counts):
        total += counts[key]
        cells[HISTOGRAM_STEP_TOPS[bisect_left(HISTOGRAM_STEP_TOPS, key)] // 1000] = total
    return {b"calls": total, b"histogram_usec": DeferredMap(cells)}


def value_at_percentile(counts: dict[int, int], percentile: float) -> int:
    """hdr_value_at_percentile, in ns."""
    total = sum(counts.values())
    wanted = max(int(min(percentile, 100.0) / 100 * total + 0.5), 1)
    seen = 0
    found = 0
    for key in sorted(counts):
        seen += counts[key]
        if seen >= wanted:
            found = key
            break
    return hdr_lowest(found) if percentile == 0.0 else hdr_highest(found)


def percentiles_line(counts: dict[int, int], percentiles: tuple[float, ...]) -> str:
    """fillPercentileDistributionLatencies' values: ``p50=1.003,p99=...`` (usec)."""
    return ",".join(f"p{format_percentile(p)}={value_at_percentile(counts, p) / 1000.0:.3f}"
                    for p in percentiles)
