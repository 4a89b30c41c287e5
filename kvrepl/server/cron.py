"""The periodic work of a node (Redis's ``serverCron``), trimmed to what kvrepl needs."""

from __future__ import annotations

from time import perf_counter, time

import trio

from kvrepl import gc_policy, persistence
from kvrepl.commands import cmem, instant
from kvrepl.commands.core import Engine
from kvrepl.commands.info import effective_hz
from kvrepl.commands.shutdown import shutdown_state
from kvrepl.log import logger


async def run_cron(engine: Engine) -> None:
    """Every ``1/hz`` seconds: active expiry (on a replica, of the keys its own clients gave
    a TTL only), then wake clients it made ready; eviction that a command's pass left
    unfinished (maxmemory-eviction-tenacity); then the ``save`` schedule (and BGSAVE SCHEDULE); then the process's garbage-collector policy,
    when one is installed (:mod:`kvrepl.gc_policy`: a no-op otherwise). Once a second,
    clients idle for more than ``timeout`` seconds are closed; at each tick a share of
    the clients (each once a second at least) has its buffers resized and is closed if
    over its client-output-buffer-limit (:func:`kvrepl.commands.cmem.clients_cron`)."""
    last_second = 0
    loops = 0
    while True:
        await trio.sleep(1 / effective_hz(engine))
        if engine.cron_paused:  # DEBUG PAUSE-CRON 1: serverCron returns at once
            continue
        hz = effective_hz(engine)
        # run_with_period(100): every loop at hz <= 10, else every 100 ms worth of loops.
        period = 1000 // hz
        if instant.PERIOD_MS <= period or loops % (instant.PERIOD_MS // period) == 0:
            sample_metrics(engine)
        loops += 1
        engine.keyspace.set_lru_clock(int(engine.keyspace.clock()))
        if engine.pausing:
            engine.pause.current()  # a CLIENT PAUSE whose time is up ends (and wakes clients)
        second = int(time())
        if second != last_second:
            last_second = second
            close_idle_clients(engine)
            sockets = getattr(engine.server, "migrate_sockets", None)
            if sockets is not None:
                sockets.close_idle()
        cmem.clients_cron(engine)  # buffers resized, limits met with no new reply
        expire_cycle(engine)
        if engine.client_eviction:
            # The clients' memory as clientsCron measured it, checked as beforeSleep
            # checks it after the cron's turn of the event loop (evictClients).
            cmem.evict_clients(engine, pushed=True)
        if engine.evictor.running:
            engine.evictor.cron(0.25 / hz)
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


def sample_metrics(engine: Engine) -> None:
    """One sample of each of INFO's instantaneous_* rates (Redis's serverCron, every 100 ms).
    The input/output rates count the replication bytes too; the repl ones only those."""
    engine.direct_tally.fold()  # the embedded calls count as commands from now on
    stats = engine.stats
    metrics = stats.instant
    now_ms = int(time() * 1000)
    repl_in, repl_out = stats.net_repl_input_bytes, stats.net_repl_output_bytes
    metrics.track(instant.COMMAND, stats.commands_processed, now_ms)
    metrics.track(instant.INPUT, stats.total_net_input_bytes + repl_in, now_ms)
    metrics.track(instant.OUTPUT, stats.total_net_output_bytes + repl_out, now_ms)
    metrics.track(instant.INPUT_REPL, repl_in, now_ms)
    metrics.track(instant.OUTPUT_REPL, repl_out, now_ms)


# expire.c's constants, for active-expire-effort 1; each step of effort adds to them.
_KEYS_PER_LOOP = 20
_FAST_DURATION = 1000  # ACTIVE_EXPIRE_CYCLE_FAST_DURATION, microseconds
_SLOW_TIME_PERC = 25
_ACCEPTABLE_STALE = 10
_DBS_PER_CALL = 16  # CRON_DBS_PER_CALL


def expire_cycle_limits(effort: int, hz: int, fast: bool = False) -> tuple[int, int, int]:
    """activeExpireCycle's running parameters for ``active-expire-effort`` (1..10) at
    ``hz``: the keys checked per batch, the cycle's time limit in microseconds (for the
    slow cycle a share of the cron period, for the fast one 1 ms plus a quarter of it a
    step of effort) and the percentage of expired keys in a batch above which it goes
    on."""
    effort -= 1  # rescaled from 0 to 9
    keys_per_loop = _KEYS_PER_LOOP + _KEYS_PER_LOOP // 4 * effort
    if fast:
        time_limit = _FAST_DURATION + _FAST_DURATION // 4 * effort
    else:
        time_perc = _SLOW_TIME_PERC + 2 * effort
        time_limit = max(time_perc * 1_000_000 // hz // 100, 1)
    return keys_per_loop, time_limit, _ACCEPTABLE_STALE - effort


def fast_expire_cycle(engine: Engine) -> int:
    """activeExpireCycle(ACTIVE_EXPIRE_CYCLE_FAST), run where the node's event loop is
    about to wait (Redis's beforeSleep; kvrepl's: the reactor's pass, once it served the
    ready clients); returns how many keys it deleted.

    Only on a master, not while clients are paused; only when the last cycle (slow or
    fast) ran out of time or ``expired_stale_perc`` is above the acceptable share, and
    not again within twice its time limit of the last one. As in Redis 7.0.15, the
    share (a fraction) is compared with the acceptable percentage (10 at effort 1): it
    never is above it, so in practice a fast cycle follows a cycle cut by its time."""
    keyspace = engine.keyspace
    if not keyspace.fast_expire_due:
        return 0
    if not engine.active_expire_enabled or not keyspace.expire_keys:
        keyspace.fast_expire_due = False  # until a slow cycle runs again
        return 0
    if keyspace.expiry_paused():
        return 0
    stale = engine.stats.expired_stale_perc
    config = engine.config
    limits = expire_cycle_limits(config.active_expire_effort, config.hz, fast=True)
    if not keyspace.expire_timed_out and stale < limits[2]:
        return 0
    started = perf_counter()
    if started < keyspace.last_fast_expire + 2 * limits[1] / 1_000_000:
        return 0
    keyspace.last_fast_expire = started
    deleted = _run_expire_cycle(engine, limits, started)
    if engine.tracking.due:  # beforeSleep's trackingBroadcastInvalidationMessages
        engine.tracking.broadcast()
    return deleted


def expire_cycle(engine: Engine) -> int:
    """One slow active-expiry cycle (activeExpireCycle's ACTIVE_EXPIRE_CYCLE_SLOW), as
    ``active-expire-effort`` scales it; returns how many keys it deleted.

    Up to 16 databases a cycle, from where the last one stopped (all of them when the last
    ran out of time), each until a batch holds no more than the acceptable share of expired
    keys or the time is up. Keeps activeExpireCycle's statistics: its time, the cycles cut
    by the time limit, and ``expired_stale_perc``, a running average (5% weight per cycle)
    of the share of the checked keys that were expired. A cycle cut by its time is
    followed by fast cycles (:func:`fast_expire_cycle`) where the event loop waits."""
    keyspace = engine.keyspace
    if not engine.active_expire_enabled:
        return 0
    if not keyspace.expire_keys:
        # A replica: its master sends a DEL for each key that expires, except the keys its
        # own clients gave a TTL on a writable replica (databasesCron's expireSlaveKeys; like
        # Redis's, it does not wait for a client pause). Their DELs go to the AOF only: a
        # replica's stream is its master's.
        deleted = keyspace.expire_replica_keys() if keyspace.replica_expires else 0
        if deleted and keyspace.ready_keys and engine.on_ready_keys is not None:
            engine.on_ready_keys()
        return deleted
    if keyspace.expiry_paused():
        return 0
    config = engine.config
    limits = expire_cycle_limits(config.active_expire_effort, config.hz)
    return _run_expire_cycle(engine, limits, perf_counter())


def _run_expire_cycle(engine: Engine, limits: tuple[int, int, int], started: float) -> int:
    """The databases' share of a cycle (slow or fast) begun at ``started``, within
    ``limits`` (:func:`expire_cycle_limits`), and its statistics."""
    keyspace = engine.keyspace
    keys_per_loop, time_limit, acceptable_stale = limits
    deleted = sampled = 0
    dbs = keyspace.dbs
    dbs_per_call = len(dbs) if keyspace.expire_timed_out else min(_DBS_PER_CALL, len(dbs))
    keyspace.expire_timed_out = False
    deadline = started + time_limit / 1_000_000
    for _ in range(dbs_per_call):
        db = dbs[keyspace.expire_next_db % len(dbs)]
        # The next cycle starts at the next database even when this one runs out of time,
        # so that the time is shared between the databases.
        keyspace.expire_next_db += 1
        if db.expires:
            deleted += db.active_expire_cycle(keys_per_loop, deadline, acceptable_stale)
            sampled += db.expire_sampled
            if keyspace.expire_timed_out:
                break
    stats = engine.stats
    stats.expire_cycle_time_used += int((perf_counter() - started) * 1_000_000)
    stats.expired_time_cap_reached_count += keyspace.expire_timed_out
    current = deleted / sampled if sampled else 0.0
    stats.expired_stale_perc = current * 0.05 + stats.expired_stale_perc * 0.95
    # What a fast cycle needs, known once a cycle ends: the event loop tests one flag.
    # The acceptable share is at least 1 whatever the effort, and the fraction is under
    # 1 until every key checked was expired.
    keyspace.fast_expire_due = keyspace.expire_timed_out or stats.expired_stale_perc >= 1
    # No command runs here: the engine propagated each DEL as its key went, on its own and
    # never wrapped in MULTI (as Redis does).
    if engine.keyspace.ready_keys and engine.on_ready_keys is not None:
        engine.on_ready_keys()
    return deleted
