"""The periodic work of a node (Redis's ``serverCron``), trimmed to what kvrepl needs."""

from __future__ import annotations

from time import perf_counter, time

import trio

from kvrepl import gc_policy, persistence
from kvrepl.commands.core import Engine
from kvrepl.commands.shutdown import shutdown_state
from kvrepl.log import logger


async def run_cron(engine: Engine) -> None:
    """Every ``1/hz`` seconds: active expiry on a master, then wake clients it made ready;
    eviction that a command's pass left unfinished (maxmemory-eviction-tenacity); then the
    ``save`` schedule (and BGSAVE SCHEDULE); then the process's garbage-collector policy,
    when one is installed (:mod:`kvrepl.gc_policy`: a no-op otherwise). Once a second,
    clients idle for more than ``timeout`` seconds are closed."""
    last_second = 0
    while True:
        await trio.sleep(1 / engine.config.hz)
        engine.keyspace.lru_clock = int(engine.keyspace.clock())
        if engine.pausing:
            engine.pause.current()  # a CLIENT PAUSE whose time is up ends (and wakes clients)
        second = int(time())
        if second != last_second:
            last_second = second
            close_idle_clients(engine)
            sockets = getattr(engine.server, "migrate_sockets", None)
            if sockets is not None:
                sockets.close_idle()
        expire_cycle(engine)
        if engine.evictor.running:
            engine.evictor.cron(0.25 / engine.config.hz)
        persistence.cron(engine)
        if engine.tracking.clients:
            engine.tracking.limit()  # serverCron's share of trackingLimitUsedSlots
        if engine.tracking.due:  # what expiry and the embedded API modified meanwhile
            engine.tracking.broadcast()
        shutdown_state(engine).tick()
        if not engine.loading:
            gc_policy.cron(engine.keyspace)


def close_idle_clients(engine: Engine) -> int:
    """``timeout``: close the normal clients idle for longer (Redis's
    clientsCronHandleTimeout: never replicas, the master link, MONITOR, blocked (CLIENT
    PAUSE's postponed ones too) or pub/sub clients). Returns how many it closed."""
    limit = engine.config.timeout
    if not limit:
        return 0
    now = time()
    closed = 0
    for session in list(engine.sessions.values()):
        if (session.is_replica or session.is_master or session.monitor
                or session.blocked is not None or session.id in engine.pause.postponed
                or session.subscribed
                or session.on_kill is None or now - session.last_interaction <= limit):
            continue
        logger.log(15, "Closing idle client")  # LL_VERBOSE
        session.on_kill()
        closed += 1
    return closed


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
    # No command runs here: the engine propagated each DEL as its key went, on its own and
    # never wrapped in MULTI (as Redis does).
    if engine.keyspace.ready_keys and engine.on_ready_keys is not None:
        engine.on_ready_keys()
    return deleted
