"""The periodic work of a node (Redis's ``serverCron``), trimmed to what kvrepl needs."""

from __future__ import annotations

from time import perf_counter

import trio

from kvrepl import gc_policy, persistence
from kvrepl.commands.core import Engine


async def run_cron(engine: Engine) -> None:
    """Every ``1/hz`` seconds: active expiry on a master, then wake clients it made ready;
    then the ``save`` schedule (and BGSAVE SCHEDULE); then the process's garbage-collector
    policy, when one is installed (:mod:`kvrepl.gc_policy`: a no-op otherwise)."""
    while True:
        await trio.sleep(1 / engine.config.hz)
        engine.keyspace.lru_clock = int(engine.keyspace.clock())
        if engine.pausing:
            engine.pause.current()  # a CLIENT PAUSE whose time is up ends (and wakes clients)
        expire_cycle(engine)
        persistence.cron(engine)
        if not engine.loading:
            gc_policy.cron(engine.keyspace)


def expire_cycle(engine: Engine) -> int:
    """One active-expiry pass over every database; returns how many keys it deleted."""
    if not engine.keyspace.expire_keys or not engine.active_expire_enabled:
        return 0
    deleted = 0
    # Redis's slow cycle may take 25% of a cron period; the rest belongs to the clients.
    deadline = perf_counter() + 0.25 / engine.config.hz
    for db in engine.keyspace.dbs:
        if db.expires:
            deleted += db.active_expire_cycle(deadline=deadline)
            if perf_counter() > deadline:
                break
    # Active expiry propagates each DEL on its own, never wrapped in MULTI (as Redis does).
    engine.flush_propagation(atomic=False)
    if engine.keyspace.ready_keys and engine.on_ready_keys is not None:
        engine.on_ready_keys()
    return deleted
