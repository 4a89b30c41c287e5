"""INFO's ``instantaneous_*`` rates, as Redis 7.0 computes them (server.c
``trackInstantaneousMetric`` / ``getInstantaneousMetric``): every 100 ms the cron takes one
sample per metric, the counter's growth since the previous sample scaled to a second, into a
ring of :data:`SAMPLES`; INFO prints the mean of the ring. Commands only grow counters; the
cron samples them.

Sans-IO: the caller gives the readings and the time.
"""

from __future__ import annotations

__all__ = ["COMMAND", "INPUT", "INPUT_REPL", "OUTPUT", "OUTPUT_REPL", "SAMPLES",
           "InstantMetrics"]

SAMPLES = 16  # STATS_METRIC_SAMPLES
PERIOD_MS = 100  # run_with_period(100) in serverCron
COMMAND, INPUT, OUTPUT, INPUT_REPL, OUTPUT_REPL = range(5)


class InstantMetrics:
    """Rings of per-second rates, one per metric."""

    __slots__ = ("_counts", "_idx", "_samples", "_times")

    def __init__(self, metrics: int = 5) -> None:
        self._samples = [[0] * SAMPLES for _ in range(metrics)]
        self._idx = [0] * metrics
        self._counts = [0] * metrics
        self._times = [0] * metrics

    def track(self, metric: int, reading: int, now_ms: int) -> None:
        """Add a sample: ``reading`` (the counter now) less the previous reading, per second
        of the ``now_ms`` elapsed since."""
        elapsed = now_ms - self._times[metric]
        growth = reading - self._counts[metric]
        # C's ops*1000/t on long longs: truncation toward zero.
        rate = int(growth * 1000 / elapsed) if elapsed > 0 else 0
        idx = self._idx[metric]
        self._samples[metric][idx] = rate
        self._idx[metric] = (idx + 1) % SAMPLES
        self._times[metric] = now_ms
        self._counts[metric] = reading

    def get(self, metric: int) -> int:
        """The mean of the metric's samples (integer division, as Redis's)."""
        return sum(self._samples[metric]) // SAMPLES

