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

from itertools import cycle
from typing import TYPE_CHECKING

from kvrepl.store.database import SAMPLE  # a power of two: one call in SAMPLE is timed

if TYPE_CHECKING:
    from kvrepl.commands.core import Engine

__all__ = ["SAMPLE", "DirectTally"]

MASK = SAMPLE - 1  # (the plain lane's SETs: ``not sets & MASK``)


class DirectTally:
    """Direct calls not yet added to INFO's counters: GETs (each one in commandstats and
    ``total_commands_processed``; a keyspace hit, counted by the store as it records the
    key's access time (``Keyspace.direct_hits``, ``Database.reads``), or one of the
    ``misses``) and ``sets`` (each a SET there).

    ``ticks`` says which missing GET is timed: ``next(ticks)`` is True once in
    ``SAMPLE + 1`` (the timed call runs the GET again, which takes one of the False ones),
    so once in SAMPLE misses, for one C call and no stored count; a hit's own record says
    when it is timed (``Database.record``)."""

    __slots__ = ("engine", "misses", "sets", "ticks")

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.misses = 0
        self.sets = 0
        self.ticks = cycle((False,) * SAMPLE + (True,))

    def count_gets(self) -> int:
        """The direct GETs not yet folded."""
        keyspace = self.engine.keyspace
        return self.misses + keyspace.direct_hits + sum(len(db.reads) for db in keyspace.dbs)

    def fold(self) -> None:
        """Add the tally to the public counters and start it again (call it before any of
        those is read or reset)."""
        keyspace = self.engine.keyspace
        keyspace.drain()
        hits, misses, sets = keyspace.direct_hits, self.misses, self.sets
        if hits or misses or sets:
            engine = self.engine
            gets = hits + misses
            engine.table[b"get"].calls += gets
            engine.table[b"set"].calls += sets
            engine.stats.commands_processed += gets + sets
            keyspace.hits += hits
            keyspace.misses += misses
            keyspace.direct_hits = self.misses = self.sets = 0
