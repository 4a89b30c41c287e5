"""LATENCY LATEST/HISTORY/RESET/DOCTOR/GRAPH/HISTOGRAM/HELP (Redis 7.0 ``latency.c``,
``sparkline.c``).

The events kvrepl measures are ``command`` and ``fast-command`` (each command's execution
time, recorded by the dispatcher when ``latency-monitor-threshold`` is set and reached);
the others Redis knows (fork, AOF, expire-cycle, eviction ...) never fire here. LATENCY
HISTOGRAM reads each command's counts (:mod:`kvrepl.commands.observers`).
"""

from __future__ import annotations

import time

from kvrepl.commands.core import Command, Session, command
from kvrepl.commands.help import help_reply
from kvrepl.commands.observers import LatencySeries, histogram_reply, latency_counts
from kvrepl.commands.server import _all_commands, _find
from kvrepl.errors import ReplyError
from kvrepl.protocol.replies import (
    DeferredArray,
    DeferredMap,
    Verbatim,
    deferred_aggregate,
    encode,
)

_HELP = [
    "DOCTOR",
    "    Return a human readable latency analysis report.",
    "GRAPH <event>",
    "    Return an ASCII latency graph for the <event> class.",
    "HISTORY <event>",
    "    Return time-latency samples for the <event> class.",
    "LATEST",
    "    Return the latest latency samples for all events.",
    "RESET [<event> ...]",
    "    Reset latency data of one or more <event> classes.",
    "    (default: reset all data for all event classes)",
    "HISTOGRAM [COMMAND ...]",
    "    Return a cumulative distribution of latencies in the format of a histogram for "
    "the specified command names.",
    "    If no commands are specified then all histograms are replied.",
]


def _event(s: Session, name: bytes) -> tuple[str, LatencySeries] | None:
    """dictFind on the events (exact, case-sensitive) by the name as sent."""
    text = name.decode("utf-8", "surrogateescape")
    series = s.engine.latency.events.get(text)
    return None if series is None else (text, series)


@command("latency|latest")
def latency_latest(s: Session, argv: list[bytes]) -> object:
    """LATENCY LATEST: per event, its name, latest sample's time and ms, all-time max."""
    out = []
    for name, series in s.engine.latency.events.items():
        last = series.samples[(series.idx - 1) % len(series.samples)]
        out.append([name.encode(), last[0], last[1], series.max])
    return out


@command("latency|history")
def latency_history(s: Session, argv: list[bytes]) -> object:
    """LATENCY HISTORY event: its samples, oldest first (empty for an unknown event)."""
    found = _event(s, argv[2])
    if found is None:
        return []
    # latencyCommandReplyWithSamples sets the length after the samples
    return DeferredArray([when, latency] for when, latency in found[1].ordered())


@command("latency|reset")
def latency_reset(s: Session, argv: list[bytes]) -> object:
    """LATENCY RESET [event ...]: how many event series were dropped."""
    monitor = s.engine.latency
    if len(argv) == 2:
        return monitor.reset()
    return sum(monitor.reset(name) for name in argv[2:])


# -- GRAPH ----------------------------------------------------------------------------------
_CHARSET_FILL = "_o#"
_GRAPH_COLS = 80
_GRAPH_ROWS = 4


def _render_range(samples: list[tuple[float, str]], low: float, high: float, rows: int
                  ) -> list[str]:
    """sparklineRenderRange with SPARKLINE_FILL: the rows of one slice of samples."""
    relmax = high - low or 1
    steps = len(_CHARSET_FILL) * rows
    lines = []
    row = 0
    has_labels = any(label for _, label in samples)
    while True:
        chars = [" "] * len(samples)
        more = False
        for j, (value, label) in enumerate(samples):
            step = int(int((value - low) * steps) / relmax)
            step = min(max(step, 0), steps - 1)
            if row < rows:
                more = True
                index = step - (rows - row - 1) * len(_CHARSET_FILL)
                if 0 <= index < len(_CHARSET_FILL):
                    chars[j] = _CHARSET_FILL[index]
                elif index >= len(_CHARSET_FILL):
                    chars[j] = "|"
            else:
                if has_labels and row - rows < 1:  # label_margin_top
                    more = True
                    break
                at = row - rows - 1
                if label and len(label) > at:
                    more = True
                    chars[j] = label[at]
        if not more:
            return lines
        row += 1
        lines.append("".join(chars) + "\n")


def _sparkline(series: LatencySeries) -> str:
    """latencyCommandGenSparkeline's body: each sample labelled with how long ago."""
    now = int(time.time())
    samples = []
    for when, latency in series.ordered():
        elapsed = now - when
        if elapsed < 60:
            label = f"{elapsed}s"
        elif elapsed < 3600:
            label = f"{elapsed // 60}m"
        elif elapsed < 86400:
            label = f"{elapsed // 3600}h"
        else:
            label = f"{elapsed // 86400}d"
        samples.append((float(latency), label))
    values = [value for value, _ in samples]
    low, high = (min(values), max(values)) if values else (0.0, 0.0)
    parts = []
    for j in range(0, len(samples), _GRAPH_COLS):
        if j:
            parts.append("\n")
        parts.extend(_render_range(samples[j:j + _GRAPH_COLS], low, high, _GRAPH_ROWS))
    return "".join(parts)


@command("latency|graph")
def latency_graph(s: Session, argv: list[bytes]) -> object:
    """LATENCY GRAPH event: an ASCII sparkline of its samples."""
    found = _event(s, argv[2])
    if found is None:
        raise ReplyError(f"ERR No samples available for event "
                         f"'{argv[2].decode('utf-8', 'replace')}'")
    name, series = found
    values = [latency for _, latency in series.ordered()]
    high, low = (max(values), min(values)) if values else (0, 0)
    text = (f"{name} - high {high} ms, low {low} ms (all time high {series.max} ms)\n"
            + "-" * _GRAPH_COLS + "\n" + _sparkline(series))
    return Verbatim(text.encode())


# -- DOCTOR ---------------------------------------------------------------------------------
_DISABLED = (
    "I'm sorry, Dave, I can't do that. Latency monitoring is disabled in this Redis instance. "
    "You may use \"CONFIG SET latency-monitor-threshold <milliseconds>.\" in order to enable "
    "it. If we weren't in a deep space mission I'd suggest to take a look at "
    "https://redis.io/topics/latency-monitor.\n")
_NOTHING = (
    "Dave, no latency spike was observed during the lifetime of this Redis instance, not in "
    "the slightest bit. I honestly think you ought to sit down calmly, take a stress pill, and "
    "think things over.\n")
_SCHEDULER = (
    "- The system is slow to execute Redis code paths not containing system calls. This "
    "usually means the system does not provide Redis CPU time to run for long periods. You "
    "should try to:\n"
    "  1) Lower the system load.\n"
    "  2) Use a computer / VM just for Redis if you are running other software in the same "
    "system.\n"
    "  3) Check if you have a \"noisy neighbour\" problem.\n"
    "  4) Check with 'redis-cli --intrinsic-latency 100' what is the intrinsic latency in "
    "your system.\n"
    "  5) Check if the problem is allocator-related by recompiling Redis with MALLOC=libc, if "
    "you are using Jemalloc. However this may create fragmentation problems.\n")
_LARGE_OBJECTS = (
    "- Deleting, expiring or evicting (because of maxmemory policy) large objects is a "
    "blocking operation. If you have very large objects that are often deleted, expired, or "
    "evicted, try to fragment those objects into multiple smaller objects.\n")
_INSPECT = (
    "- Check your Slow Log to understand what are the commands you are running which are too "
    "slow to execute. Please check https://redis.io/commands/slowlog for more information.\n")


def _stats(series: LatencySeries) -> tuple[int, int, int, int]:
    """analyzeLatencyForEvent: samples, avg, mean absolute deviation, period (s)."""
    used = [sample for sample in series.samples if sample[0]]
    if not used:
        return 0, 0, 0, 0
    avg = sum(latency for _, latency in used) // len(used)
    mad = sum(abs(avg - latency) for _, latency in used) // len(used)
    period = int(time.time()) - min(when for when, _ in used) or 1
    return len(used), avg, mad, period


def _anon_huge_pages() -> int:
    """THPGetAnonHugePagesSize: this process's AnonHugePages (kB) from /proc."""
    try:
        with open("/proc/self/smaps_rollup") as smaps:
            for line in smaps:
                if line.startswith("AnonHugePages:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def latency_report(s: Session) -> str:
    """createLatencyReport, for the events kvrepl can record."""
    config = s.engine.config
    events = s.engine.latency.events
    threshold = config.latency_monitor_threshold
    if not events and threshold == 0:
        return _DISABLED
    report = []
    advices = 0
    slowlog_enabled = slowlog_tuning = inspect = scheduler = large = thp = False
    for number, (name, series) in enumerate(events.items(), 1):
        if number == 1:
            report.append("Dave, I have observed latency spikes in this Redis instance. You "
                          "don't mind talking about it, do you Dave?\n\n")
        samples, avg, mad, period = _stats(series)
        report.append(f"{number}. {name}: {samples} latency spikes (average {avg}ms, mean "
                      f"deviation {mad}ms, period {period / samples:.2f} sec). Worst all "
                      f"time event {series.max}ms.")
        if name.lower() == "command":
            if config.slowlog_log_slower_than < 0:
                slowlog_enabled = True
                advices += 1
            elif config.slowlog_log_slower_than // 1000 > threshold:
                slowlog_tuning = True
                advices += 1
            inspect = large = True
            advices += 2
        elif name.lower() == "fast-command":
            scheduler = True
            advices += 1
        report.append("\n")
    if _anon_huge_pages() > 0:
        thp = True
        advices += 1
    if not events and not advices:
        report.append(_NOTHING)
    elif events and not advices:
        report.append("\nWhile there are latency events logged, I'm not able to suggest any "
                      "easy fix. Please use the Redis community to get some help, providing "
                      "this report in your help request.\n")
    else:
        report.append("\nI have a few advices for you:\n\n")
        if slowlog_enabled:
            report.append(
                "- There are latency issues with potentially slow commands you are using. "
                "Try to enable the Slow Log Redis feature using the command 'CONFIG SET "
                f"slowlog-log-slower-than {threshold * 1000}'. If the Slow log is disabled "
                "Redis is not able to log slow commands execution for you.\n")
        if slowlog_tuning:
            report.append(
                "- Your current Slow Log configuration only logs events that are slower than "
                "your configured latency monitor threshold. Please use 'CONFIG SET "
                f"slowlog-log-slower-than {threshold * 1000}'.\n")
        if inspect:
            report.append(_INSPECT)
        if scheduler:
            report.append(_SCHEDULER)
        if large:
            report.append(_LARGE_OBJECTS)
        if thp:
            report.append(
                "- I detected a non zero amount of anonymous huge pages used by your process. "
                "This creates very serious latency events in different conditions, especially "
                "when Redis is persisting on disk. To disable THP support use the command "
                "'echo never > /sys/kernel/mm/transparent_hugepage/enabled', make sure to also "
                "add it into /etc/rc.local so that the command will be executed again after a "
                "reboot. Note that even if you have already disabled THP, you still need to "
                "restart the Redis process to get rid of the huge pages already created.\n")
    return "".join(report)


@command("latency|doctor")
def latency_doctor(s: Session, argv: list[bytes]) -> object:
    """LATENCY DOCTOR: Redis's report on the recorded events."""
    return Verbatim(latency_report(s).encode())


# -- HISTOGRAM ------------------------------------------------------------------------------


def _with_data(cmd: Command) -> list[tuple[bytes, dict[bytes, object]]]:
    if cmd.histogram is None:
        return []
    counts = latency_counts(cmd.histogram, cmd.histogram_tail)
    return [(cmd.name.encode(), histogram_reply(counts))]


@command("latency|histogram")
def latency_histogram(s: Session, argv: list[bytes]) -> object:
    """LATENCY HISTOGRAM [command ...]: per command that ran, its calls and the cumulative
    count of calls per power-of-two usec step; unknown names are skipped. The map's
    length is set after the commands (latencyAllCommandsFillCDF)."""
    found: list[tuple[bytes, dict[bytes, object]]] = []
    if len(argv) == 2:
        for cmd in _all_commands(s.engine):
            found += _with_data(cmd)
    else:
        for name in argv[2:]:
            cmd = _find(s.engine, name)
            if cmd is None:
                continue
            found += _with_data(cmd)
            for sub in cmd.subcommands.values():
                found += _with_data(sub)
    if len({name for name, _ in found}) < len(found):
        # A command named twice is answered twice, as Redis does: a map with a repeated
        # key, which only raw bytes can carry.
        head = (b"%%%d\r\n" if s.resp3 else b"*%d\r\n") % (len(found) * (1 if s.resp3 else 2))
        return deferred_aggregate(head, [encode(item, s.resp3) for pair in found
                                         for item in pair])
    return DeferredMap(found)


@command("latency|help")
def latency_help(s: Session, argv: list[bytes]) -> object:
    """LATENCY HELP."""
    return help_reply(argv, _HELP)
