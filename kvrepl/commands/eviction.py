"""``maxmemory``: evicting keys before commands run, as Redis 7.0's ``performEvictions``.

The dispatcher calls :meth:`Evictor.perform` in processCommand's place (after NOAUTH,
before MISCONF) while ``maxmemory`` is set; when it answers :data:`EVICT_FAIL` (over the
limit and nothing left that the policy may evict) a ``denyoom`` command is refused with
:data:`OOM`. Memory is kvrepl's estimate of the dataset (:mod:`kvrepl.store.memory`).

An evicted key is deleted as a command would delete it (a running snapshot keeps its old
value, WATCH sees it), counted in INFO's ``evicted_keys`` and propagated as ``DEL``. One
call stops after ``maxmemory-eviction-tenacity``'s time limit; the node's cron then goes
on evicting (Redis's evictionTimeProc) while clients' commands are served.
"""

from __future__ import annotations

from time import perf_counter
from typing import TYPE_CHECKING

from kvrepl.store.eviction import EvictionPool

if TYPE_CHECKING:
    from kvrepl.commands.core import Engine

OOM = "OOM command not allowed when used memory > 'maxmemory'."

EVICT_OK = 0
EVICT_RUNNING = 1
EVICT_FAIL = 2


def time_limit(tenacity: int) -> float:
    """evictionTimeLimitUs, in seconds: 50 us a step up to 10, then +15% a step; none at 100."""
    if tenacity <= 10:
        return 50e-6 * tenacity
    if tenacity < 100:
        return 500e-6 * 1.15 ** (tenacity - 10)
    return float("inf")


class Evictor:
    """One engine's eviction state: the candidate pool and whether cron must go on."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.pool = EvictionPool()
        self.running = False  # over the limit after a time-limited pass: cron continues
        # isEvictionProcRunning's time (INFO's *_eviction_exceeded_time): the seconds of the
        # ended spells over maxmemory, and when the current one began (perf_counter).
        self.exceeded_total = 0.0
        self.exceeded_since: float | None = None

    def exceeded_time(self) -> tuple[float, float]:
        """The seconds spent over maxmemory in all, and in the current spell (0 if none)."""
        since = self.exceeded_since
        current = perf_counter() - since if since is not None else 0.0
        return self.exceeded_total + current, current

    def _exceeded(self, result: int) -> int:
        """performEvictions' update_metrics: a spell starts when a pass cannot get under
        the limit (RUNNING or FAIL), and ends when one does (OK)."""
        if result == EVICT_OK:
            if self.exceeded_since is not None:
                self.exceeded_total += perf_counter() - self.exceeded_since
                self.exceeded_since = None
        elif self.exceeded_since is None:
            self.exceeded_since = perf_counter()
        return result

    def safe(self) -> bool:
        """isSafeToPerformEvictions: not while loading, nor on a replica that ignores
        maxmemory (it is its master's exact copy; the master's DELs keep it in bounds), nor
        while clients are paused (the dataset stays static: no eviction, no expiry)."""
        engine = self.engine
        if engine.loading or engine.pause.current():
            return False
        return not (engine.read_only_role() and engine.config.replica_ignore_maxmemory)

    def perform(self) -> int:
        """performEvictions: evict until the dataset fits ``maxmemory`` or the time limit
        is reached; EVICT_OK, EVICT_RUNNING (cron goes on) or EVICT_FAIL (nothing to evict)."""
        engine = self.engine
        config = engine.config
        maxmemory = config.maxmemory
        if not maxmemory or not self.safe():
            return EVICT_OK
        keyspace = engine.keyspace
        to_free = keyspace.used_memory() - maxmemory
        if to_free <= 0:
            return EVICT_OK if self.exceeded_since is None else self._exceeded(EVICT_OK)
        policy = config.maxmemory_policy
        if policy == "noeviction":
            return self._exceeded(EVICT_FAIL)
        limit = time_limit(config.maxmemory_eviction_tenacity)
        samples = config.maxmemory_samples
        started = perf_counter()
        freed = evicted = 0
        while freed < to_free:
            chosen = self.pool.select(keyspace, policy, samples)
            if chosen is None:
                return self._exceeded(EVICT_FAIL)
            db, key = chosen
            before = db.used
            db.before_write(key)
            db.delete(key)
            freed += before - db.used
            engine.stats.evicted_keys += 1
            engine.watches.touch(db, key)
            engine.key_evicted(db, key)  # client-side caching, the "evicted" event
            engine.propagate_deletion(db.id, key)
            evicted += 1
            if evicted % 16 == 0 and perf_counter() - started > limit:
                self.running = True
                break
        return self._exceeded(EVICT_RUNNING if self.running else EVICT_OK)

    def cron(self, budget: float) -> None:
        """evictionTimeProc: go on evicting after a pass that reached its time limit, in
        passes for up to ``budget`` seconds (Redis runs one pass per event loop turn)."""
        deadline = perf_counter() + budget
        while self.running and perf_counter() < deadline:
            if self.perform() != EVICT_RUNNING:
                self.running = False
