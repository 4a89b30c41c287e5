"""The embedded API's direct calls, counted in one place: ``node.get``'s GETs
(:mod:`kvrepl.direct_reads`) and the plain lane's single SETs (``node.set``,
``node.redis().set``) add to a :class:`DirectTally` instead of to each of INFO's counters,
and the tally is folded into those where they are read or reset (INFO, CONFIG RESETSTAT).

Their timing is sampled: one call in :data:`SAMPLE` is timed and stands for the calls since
the previous sample (commandstats ``usec``, LATENCY HISTOGRAM, the slow log and the latency
monitor), as the plain lane does for a run of commands: a clock read costs more than the
call. Between two samples those lag by fewer than :data:`SAMPLE` calls; ``calls``,
``total_commands_processed`` and the keyspace counters never lag where they are read.

Sans-IO: counters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kvrepl.commands.core import Engine

__all__ = ["SAMPLE", "DirectTally"]

SAMPLE = 64  # a power of two: one call in SAMPLE is timed
MASK = SAMPLE - 1


class DirectTally:
    """Direct calls not yet added to INFO's counters: GETs (each one in commandstats and
    ``total_commands_processed``, a keyspace hit unless one of the ``misses``) and
    ``sets`` (each a SET there).

    The GETs are counted down in blocks of :data:`SAMPLE`: ``left`` is how many calls
    remain until the next timed one, ``gets`` the calls of the finished blocks (a countdown
    of small ints costs a GET less than a growing count and a mask); :meth:`count_gets`
    is their sum."""

    __slots__ = ("engine", "gets", "left", "misses", "sets")

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.gets = 0
        self.left = SAMPLE
        self.misses = 0
        self.sets = 0

    def count_gets(self) -> int:
        """The direct GETs not yet folded."""
        return self.gets + SAMPLE - self.left

    def fold(self) -> None:
        """Add the tally to the public counters and start it again (call it before any of
        those is read or reset)."""
        gets, sets = self.count_gets(), self.sets
        if gets or sets:
            engine = self.engine
            misses = self.misses
            engine.table[b"get"].calls += gets
            engine.table[b"set"].calls += sets
            engine.stats.commands_processed += gets + sets
            keyspace = engine.keyspace
            keyspace.hits += gets - misses
            keyspace.misses += misses
            self.misses = self.sets = 0
            # count_gets() is 0 again; the countdown goes on, so that a fold every few
            # calls (INFO in a loop) does not keep the next timed call from coming.
            self.gets = self.left - SAMPLE
