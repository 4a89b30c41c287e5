"""Replication: kvrepl master and replicas beside redis-server 7.0 masters and replicas.

Five measurements, each with both systems in the same run (alternating rounds, order rotated
every round, medians of the rounds):

1. Full sync: a master filled with ``DEBUG POPULATE <N> key 16`` (1M keys, 100k with --quick),
   then a replica started with ``--replicaof``; the time from launching the replica process
   until its ``INFO replication`` says ``master_link_status:up`` and DBSIZE matches. Both
   masters run with ``--repl-diskless-sync-delay 0``; everything else is each server's default
   (so a redis replica stores the payload on disk before loading it: ``repl-diskless-load
   disabled``).
2. The master's PING latency during that full sync: a client thread pings the master every
   ~1 ms over one connection, from launching the replica until the replica is synced.
3. Master write throughput with 0, 1 and 3 replicas attached (``REPLICAOF`` on long-lived
   replica processes, a fresh master each round): ``redis-benchmark -t set -P 16 -c 50 -n N``
   and the share of the 0-replica rate kept; then how long the replicas took to apply the
   backlog of writes once redis-benchmark had finished.
4. Replication lag under a steady load: batches of SETs every 10 ms (5k SET/s) on the master
   while another thread reads the master's ``master_repl_offset`` and the replica's
   ``slave_repl_offset`` (both requests sent before either reply is read); the gap in bytes,
   and the time for the replica to reach the master's final offset once the load stops.
5. In-process: ``kvrepl.Master`` with ``kvrepl.Replica(follow=master)`` attached: a burst of
   ``master.set`` then ``await replica.wait_synced()`` (included in the time), then
   ``replica.get`` over every key; beside ``fakeredis.FakeRedis`` and a plain dict.
"""

from __future__ import annotations

import contextlib
import gc
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import (
    HOST,
    BenchmarkError,
    Connection,
    Options,
    ReplyError,
    Server,
    binary,
    encode_request,
    fmt_ms,
    fmt_rate,
    fmt_ratio,
    fmt_seconds,
    log,
    markdown_table,
    median,
    nice_count,
    parse_info,
    percentile,
    python_env,
    ratio,
    redis_benchmark_rate,
    rotated,
)

TITLE = "Replication: kvrepl beside redis-server (full sync, latency, throughput, lag, embedded)"

SYSTEMS = ("kvrepl", "redis")
VALUE_SIZE = 16
MAX_ROUNDS = 3  # the whole module must stay within ~3 minutes

SYNC_GOAL = 3.0  # kvrepl's full sync time at most 3x redis's
PING_GOAL_MS = 50.0  # the master's worst PING during a full sync
PING_PERIOD = 0.001
PING_LEAD = 0.3  # seconds of pings before the replica starts: the idle baseline
SYNC_TIMEOUT = 240.0

REPLICA_COUNTS = (0, 1, 3)
BENCH_CLIENTS = 50
BENCH_PIPELINE = 16
MIN_N = 10_000
MAX_N = 2_000_000

LAG_RATE = 5000  # SET/s
LAG_BATCH_PERIOD = 0.01  # one pipelined batch every 10 ms
LAG_POLL = 0.005

SETTLE = 0.05  # seconds between the replica's initial sync and the timed burst
SET_GOAL = 10.0  # master.set with a replica attached vs fakeredis set
GET_GOAL = 20.0  # replica.get vs fakeredis get


# -- servers ---------------------------------------------------------------------------------

def server_command(system: str, options: Options, *, replicaof: int | None = None,
                   debug: bool = False) -> Callable[[int], list[str]]:
    """The command line of a master or replica of ``system`` as a function of its port."""
    if system == "kvrepl":
        head = [options.python, "-m", "kvrepl"]
        if debug:
            head += ["--enable-debug-command", "yes"]
    else:
        redis = binary("redis-server")
        if redis is None:
            raise BenchmarkError("redis-server is not on PATH (run `make redis`)")
        head = [redis, "--appendonly", "no"]
        if debug:
            head += ["--enable-debug-command", "yes"]

    def command(port: int) -> list[str]:
        argv = head + ["--port", str(port), "--bind", HOST, "--save", "",
                       "--repl-diskless-sync-delay", "0"]
        if replicaof is not None:
            argv += ["--replicaof", HOST, str(replicaof)]
        return argv

    return command


def new_server(name: str, system: str, options: Options, workdir: Path, **kwargs: object
               ) -> Server:
    """A (not yet started) server of ``system`` in its own new directory under ``workdir``:
    a redis replica leaves the payload it received as dump.rdb in its directory, and a server
    started there later would load it (and then only partially resync)."""
    home = workdir / name
    home.mkdir()
    return Server(name, server_command(system, options, **kwargs), home, env=python_env())


def info(port: int, section: str = "replication", timeout: float = 10.0) -> dict[str, str]:
    """``INFO section`` of the server on ``port``, over a fresh connection."""
    with Connection(port, timeout=timeout) as conn:
        return conn.info(section)


def dbsize(port: int, timeout: float = 30.0) -> int:
    """DBSIZE, or -1 while the server refuses it (a redis replica still -LOADING)."""
    with Connection(port, timeout=timeout) as conn:
        try:
            reply = conn.command(b"DBSIZE")
        except ReplyError:
            return -1
    return reply if isinstance(reply, int) else -1


def populate(port: int, keys: int) -> None:
    """Fill db 0 with ``keys`` keys ``key:<i>`` holding 16-byte values."""
    with Connection(port, timeout=600) as conn:
        conn.command(b"DEBUG", b"POPULATE", b"%d" % keys, b"key", b"%d" % VALUE_SIZE)
    size = dbsize(port)
    if size != keys:
        raise BenchmarkError(f"DEBUG POPULATE {keys} left DBSIZE {size}")


def repl_offset(fields: dict[str, str], replica: bool) -> int:
    """A replica's processed offset, or a master's ``master_repl_offset``."""
    return int(fields.get("slave_repl_offset" if replica else "master_repl_offset", "-1"))


def wait_until(condition: Callable[[], bool], timeout: float, what: str,
               servers: tuple[Server, ...] = (), interval: float = 0.01) -> float:
    """Poll ``condition`` until it holds; return when it did (perf_counter). Fails fast when
    one of ``servers`` died, with the end of its log."""
    deadline = time.perf_counter() + timeout
    while True:
        if condition():
            return time.perf_counter()
        for server in servers:
            if not server.alive():
                raise BenchmarkError(f"{server.name} died while waiting for {what}; its log "
                                     f"ends with: {server.log_tail(600).decode(errors='replace')}")
        if time.perf_counter() > deadline:
            raise BenchmarkError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def link_up(replica: Server) -> bool:
    """The replica's link to its master is up."""
    try:
        return info(replica.port).get("master_link_status") == "up"
    except (OSError, ReplyError):
        return False


def stop_all(servers: list[Server]) -> None:
    """Stop every server, even when stopping one of them fails."""
    for server in servers:
        with contextlib.suppress(Exception):
            server.stop()


# -- 1 and 2: full sync and the master's PING latency meanwhile -----------------------------

class Pinger(threading.Thread):
    """Pings a server every ~``PING_PERIOD`` over one connection, recording each latency."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True, name=f"pinger-{port}")
        self.port = port
        self.samples: list[tuple[float, float]] = []  # (sent at, round trip) in seconds
        self.error: BaseException | None = None
        self._done = threading.Event()

    def run(self) -> None:
        try:
            with Connection(self.port, timeout=SYNC_TIMEOUT) as conn:
                request = encode_request(b"PING")
                while not self._done.is_set():
                    sent = time.perf_counter()
                    conn.pipeline(request, 1)
                    took = time.perf_counter() - sent
                    self.samples.append((sent, took))
                    if took < PING_PERIOD:
                        time.sleep(PING_PERIOD - took)
        except BaseException as err:  # reported by the caller
            self.error = err

    def stop(self) -> None:
        """Stop after the PING in flight and wait for the thread."""
        self._done.set()
        self.join()

    def window(self, start: float, end: float) -> list[float]:
        """Latencies of the PINGs sent in [start, end]."""
        return [took for sent, took in self.samples if start <= sent <= end]


@dataclass
class SyncResult:
    """One full sync: seconds from launching the replica, and the master's PINGs meanwhile."""

    total: float
    replica_up: float  # the replica answered PING (process start-up)
    psync: float  # the master first listed the replica (it got SYNC/PSYNC)
    payload: float  # INFO first said master_sync_in_progress:1 (NaN if never seen)
    ping_max: float
    ping_p99: float
    ping_count: int
    idle_max: float

    @property
    def core(self) -> float:
        """From the master getting the PSYNC until the replica was synced."""
        return self.total - self.psync


def full_sync_once(system: str, master: Server, keys: int, options: Options, workdir: Path,
                   label: str) -> SyncResult:
    """Launch a replica of ``master`` and time its full sync while pinging the master.

    The replica is not waited for with PING (a redis replica answers -LOADING while it loads
    the payload): from the launch on, one loop polls the master's INFO (for the moment it
    lists the replica) and the replica's INFO (INFO is served while loading).
    """
    # The previous round's replica must be gone from the master's list (see psync below).
    wait_until(lambda: info(master.port).get("connected_slaves") == "0", 30,
               f"{master.name} to drop its previous replica", (master,))
    pinger = Pinger(master.port)
    pinger.start()
    replica = new_server(f"{system}-sync-replica-{label}", system, options, workdir,
                         replicaof=master.port)
    nan = float("nan")
    replica_up = payload = psync = nan
    conn: Connection | None = None
    try:
        with Connection(master.port, timeout=SYNC_TIMEOUT) as master_conn:
            time.sleep(PING_LEAD)
            began = time.perf_counter()
            replica.launch()
            deadline = began + SYNC_TIMEOUT
            while True:
                if psync != psync and master_conn.info().get("connected_slaves", "0") != "0":
                    psync = time.perf_counter() - began
                fields: dict[str, str] = {}
                if conn is None:
                    with contextlib.suppress(OSError):
                        conn = Connection(replica.port, timeout=SYNC_TIMEOUT)
                if conn is not None:
                    fields = conn.info()
                now = time.perf_counter()
                if fields and replica_up != replica_up:
                    replica_up = now - began
                if payload != payload and fields.get("master_sync_in_progress") == "1":
                    payload = now - began
                if fields.get("master_link_status") == "up" and dbsize(replica.port) == keys:
                    synced_at = now
                    break
                if not replica.alive() or not master.alive():
                    dead = replica if not replica.alive() else master
                    raise BenchmarkError(
                        f"{dead.name} died during the full sync; its log ends with: "
                        f"{dead.log_tail(600).decode(errors='replace')}")
                if now > deadline:
                    raise BenchmarkError(f"{system}: full sync of {keys:,} keys took more "
                                         f"than {SYNC_TIMEOUT:.0f}s")
                time.sleep(0.01)
    finally:
        if conn is not None:
            conn.close()
        pinger.stop()
        replica.stop()
    if pinger.error is not None:
        raise BenchmarkError(f"{system}: the PING thread failed: {pinger.error!r}")
    during = pinger.window(began, synced_at)
    idle = pinger.window(0.0, began)
    return SyncResult(total=synced_at - began, replica_up=replica_up, psync=psync,
                      payload=payload,
                      ping_max=max(during, default=nan),
                      ping_p99=percentile(during, 0.99), ping_count=len(during),
                      idle_max=max(idle, default=nan))


def full_sync_section(options: Options, workdir: Path, rounds: int) -> str:
    """Measurements 1 and 2."""
    keys = 100_000 if options.quick else 1_000_000
    results: dict[str, list[SyncResult]] = defaultdict(list)
    notes: list[str] = []
    masters: dict[str, Server] = {}
    try:
        for system in SYSTEMS:
            log(f"[replication] full sync: starting a {system} master, DEBUG POPULATE {keys:,}")
            master = new_server(f"{system}-sync-master", system, options, workdir, debug=True)
            masters[system] = master
            master.start()
            began = time.perf_counter()
            populate(master.port, keys)
            log(f"[replication]   {system} populated in {time.perf_counter() - began:.1f}s")
        failed: set[str] = set()
        for round_number in range(rounds):
            for system in rotated(SYSTEMS, round_number):
                if system in failed:
                    continue
                try:
                    result = full_sync_once(system, masters[system], keys, options, workdir,
                                            str(round_number + 1))
                except (BenchmarkError, OSError) as err:
                    failed.add(system)
                    notes.append(f"{system}: full sync failed in round {round_number + 1}: {err}")
                    log(f"[replication] {system} full sync FAILED: {err}")
                    continue
                results[system].append(result)
                log(f"[replication] full sync round {round_number + 1}/{rounds} {system:6s} "
                    f"{result.total:6.2f}s (replica up {result.replica_up:.2f}s, PSYNC at "
                    f"{result.psync:.2f}s, payload at {result.payload:.2f}s); master PING max {result.ping_max * 1000:.1f} ms, "
                    f"p99 {result.ping_p99 * 1000:.1f} ms over {result.ping_count} PINGs")
    finally:
        stop_all(list(masters.values()))

    def med(system: str, attribute: str) -> float:
        return median([getattr(r, attribute) for r in results.get(system, [])])

    kv_total, rd_total = med("kvrepl", "total"), med("redis", "total")
    sync_ratio = ratio(kv_total, rd_total)
    sync_goal = ("n/a" if sync_ratio != sync_ratio else
                 f"<= {SYNC_GOAL:g}x: {'met' if sync_ratio <= SYNC_GOAL else 'NOT met'}")
    rd_core = med("redis", "core")
    sync_rows = [
        [system, fmt_seconds(med(system, "total")), fmt_seconds(med(system, "replica_up")),
         fmt_seconds(med(system, "psync")), fmt_seconds(med(system, "payload")),
         fmt_seconds(med(system, "core")), fmt_ratio(ratio(med(system, "total"), rd_total)),
         fmt_ratio(ratio(med(system, "core"), rd_core)),
         sync_goal if system == "kvrepl" else ""]
        for system in SYSTEMS
    ]
    ping_rows = []
    for system in SYSTEMS:
        worst = med(system, "ping_max") * 1000
        goal = ("n/a" if worst != worst else
                f"<= {PING_GOAL_MS:g} ms: {'met' if worst <= PING_GOAL_MS else 'NOT met'}")
        all_max = max((r.ping_max for r in results.get(system, [])), default=float("nan"))
        ping_rows.append([system, fmt_ms(med(system, "ping_max")), fmt_ms(all_max),
                          fmt_ms(med(system, "ping_p99"), 2),
                          f"{int(med(system, 'ping_count')):,}" if results.get(system) else "n/a",
                          fmt_ms(med(system, "idle_max"), 2), goal])
    text = [
        f"### 1. Full sync of {keys:,} keys ({VALUE_SIZE}-byte values), master -> new replica",
        "",
        f"Both servers as subprocesses on 127.0.0.1, `--repl-diskless-sync-delay 0`; master "
        f"filled with `DEBUG POPULATE {keys} key {VALUE_SIZE}`; time from launching "
        "`--replicaof` until the replica's INFO says `master_link_status:up` and DBSIZE "
        f"matches. Median of {rounds} rounds (same master, a new replica each round).",
        "",
        markdown_table(["system", "full sync s", "replica up s", "PSYNC at s", "payload at s",
                        "PSYNC -> synced s", "total vs redis", "PSYNC -> synced vs redis",
                        "goal (total, kvrepl/redis)"], sync_rows),
        "",
        "All times from launching the replica process. `replica up`: it first answered INFO "
        "(process start-up). `PSYNC at`: the master first listed it in INFO replication. "
        "`payload at`: its INFO first said `master_sync_in_progress:1` (a redis master "
        "streams the RDB while its fork writes it; kvrepl sends `+FULLRESYNC` and the "
        "payload once the whole snapshot is serialized; n/a: never seen by the 10 ms poll). "
        "`PSYNC -> synced`: the sync itself, without start-up and connect delays.",
        "",
        "### 2. The master's PING latency during that full sync",
        "",
        f"One client thread pings the master every ~{PING_PERIOD * 1000:g} ms over one "
        "connection from launching the replica until it is synced; medians over the rounds.",
        "",
        markdown_table(["system", "max ms", "worst max ms (all rounds)", "p99 ms", "PINGs",
                        f"idle max ms ({PING_LEAD:g}s before)", "goal (max)"], ping_rows),
    ]
    if notes:
        text += ["", "Notes:", *(f"- {note}" for note in notes)]
    return "\n".join(text) + "\n"


# -- 3: master write throughput with replicas attached --------------------------------------

def redis_benchmark_set(tool: str, port: int, n: int, timeout: float) -> float:
    """``redis-benchmark -t set -P 16 -c 50 -n N`` once: the SET ops/s."""
    return redis_benchmark_rate(tool, port, ["-t", "set", "-c", str(BENCH_CLIENTS),
                                             "-P", str(BENCH_PIPELINE), "-n", str(n)],
                                timeout, test="SET")


def attach(replica: Server, master: Server) -> None:
    """REPLICAOF the master on a running replica process."""
    with Connection(replica.port) as conn:
        conn.command(b"REPLICAOF", HOST.encode(), b"%d" % master.port)


def detach(replica: Server) -> None:
    """REPLICAOF NO ONE (errors ignored: the replica may be gone)."""
    with contextlib.suppress(OSError, ReplyError), Connection(replica.port) as conn:
        conn.command(b"REPLICAOF", b"NO", b"ONE")


def replicas_online(master: Server, replicas: list[Server]) -> bool:
    """Every replica's link is up and the master lists that many replicas online."""
    try:
        fields = info(master.port)
    except (OSError, ReplyError):
        return False
    online = sum(1 for name, value in fields.items()
                 if name.startswith("slave") and name[5:].isdigit() and "state=online" in value)
    return online >= len(replicas) and all(link_up(r) for r in replicas)


def caught_up(master: Server, replicas: list[Server], timeout: float) -> float:
    """Seconds until every replica processed the master's stream up to its current offset."""
    began = time.perf_counter()
    target = repl_offset(info(master.port), replica=False)

    def reached() -> bool:
        return all(repl_offset(info(r.port), replica=True) >= target for r in replicas)

    return wait_until(reached, timeout, "the replicas to catch up", (master, *replicas),
                      interval=0.002) - began


@dataclass
class Throughput:
    """Measurement 3's numbers, keyed by (system, replica count), one entry per round."""

    rates: dict[tuple[str, int], list[float]] = field(default_factory=lambda: defaultdict(list))
    shares: dict[tuple[str, int], list[float]] = field(default_factory=lambda: defaultdict(list))
    catchups: dict[tuple[str, int], list[float]] = field(
        default_factory=lambda: defaultdict(list))
    sizes: dict[tuple[str, int], list[int]] = field(default_factory=lambda: defaultdict(list))
    notes: list[str] = field(default_factory=list)


def throughput_section(options: Options, workdir: Path, rounds: int) -> str:
    """Measurement 3."""
    tool = binary("redis-benchmark")
    if tool is None:
        raise BenchmarkError("redis-benchmark is not on PATH (run `make redis`)")
    found = Throughput()
    rates, shares, catchups, sizes, notes = (found.rates, found.shares, found.catchups,
                                             found.sizes, found.notes)
    replicas: dict[str, list[Server]] = {}
    failed: set[str] = set()
    try:
        for system in SYSTEMS:
            log(f"[replication] throughput: starting {max(REPLICA_COUNTS)} {system} replicas")
            replicas[system] = []
            for index in range(max(REPLICA_COUNTS)):
                server = new_server(f"{system}-replica-{index + 1}", system, options, workdir)
                replicas[system].append(server)
                server.start()
        for round_number in range(rounds):
            for system in rotated(SYSTEMS, round_number):
                if system in failed:
                    continue
                try:
                    _throughput_round(system, tool, options, workdir, replicas[system], found,
                                      round_number, rounds)
                except (BenchmarkError, OSError, ReplyError) as err:
                    failed.add(system)
                    notes.append(f"{system}: failed in round {round_number + 1}: {err}")
                    log(f"[replication] {system} throughput FAILED: {err}")
    finally:
        stop_all([server for group in replicas.values() for server in group])

    rows = []
    for count in REPLICA_COUNTS:
        kv = median(rates.get(("kvrepl", count), []))
        rd = median(rates.get(("redis", count), []))
        kv_share, rd_share = (median(shares.get((system, count), [])) for system in SYSTEMS)
        if count == 0:
            goal = ""
        elif kv_share != kv_share or rd_share != rd_share:
            goal = ">= redis's share: n/a"
        else:
            goal = f">= redis's share: {'met' if kv_share >= rd_share else 'NOT met'}"
        rows.append([str(count), fmt_rate(kv), fmt_rate(rd), fmt_ratio(ratio(kv, rd)),
                     fmt_ratio(kv_share), fmt_ratio(rd_share),
                     fmt_seconds(median(catchups.get(("kvrepl", count), []))) if count else "",
                     fmt_seconds(median(catchups.get(("redis", count), []))) if count else "",
                     goal])
    sized = "; ".join(
        f"{system} " + " / ".join(f"{int(median(sizes[system, c])):,}"
                                  for c in REPLICA_COUNTS if sizes.get((system, c)))
        for system in SYSTEMS if sizes.get((system, 0)))
    text = [
        "### 3. Master write throughput with replicas attached",
        "",
        f"`redis-benchmark -t set -P {BENCH_PIPELINE} -c {BENCH_CLIENTS} -n N` against the "
        "master; replicas are long-lived processes attached with `REPLICAOF` (and online) "
        "before each run, a fresh master every round. Share = ops/s / ops/s with 0 replicas "
        f"of the same system in the same round. Medians of {rounds} rounds.",
        "",
        markdown_table(["replicas", "kvrepl ops/s", "redis ops/s", "kvrepl/redis",
                        "kvrepl share", "redis share", "kvrepl catch-up s", "redis catch-up s",
                        "goal (kvrepl share)"], rows),
        "",
        f"N (0 / 1 / 3 replicas, median): {sized or 'n/a'}, sized from the rates seen so far for "
        f"~{options.seconds:g}s per run. "
        "`catch-up`: after redis-benchmark finished, the time until every replica had "
        "processed the master's stream up to the master's offset at that moment.",
    ]
    if notes:
        text += ["", "Notes:", *(f"- {note}" for note in notes)]
    return "\n".join(text) + "\n"


def _throughput_round(system: str, tool: str, options: Options, workdir: Path,
                      replicas: list[Server], found: Throughput, round_number: int,
                      rounds: int) -> None:
    """One round of one system: a fresh master, measured with 0, 1 and 3 replicas."""
    rates, shares, catchups, sizes = found.rates, found.shares, found.catchups, found.sizes
    master = new_server(f"{system}-master-{round_number + 1}", system, options, workdir)
    attached: list[Server] = []
    bench_timeout = 120 + 40 * options.seconds
    try:
        master.start()
        # N is sized so that one run lasts ~options.seconds: from the rates measured so far
        # with that many replicas, else (round 1) from the warm-up or the previous count.
        estimate = 0.0
        if not rates.get((system, 0)):
            estimate = redis_benchmark_set(tool, master.port, MIN_N, bench_timeout)
            log(f"[replication] warm-up {system}: ~{estimate:,.0f} SET/s")
        for count in REPLICA_COUNTS:
            if rates.get((system, count)):
                estimate = median(rates[system, count])
            elif count:
                estimate *= 0.6
            n = nice_count(estimate * options.seconds, MIN_N, MAX_N)
            sizes[system, count].append(n)
            while len(attached) < count:
                attach(replicas[len(attached)], master)
                attached.append(replicas[len(attached)])
            online = 0.0
            if count:
                began = time.perf_counter()
                online = wait_until(lambda: replicas_online(master, attached), 120,
                                    f"{count} {system} replicas online", (master, *attached),
                                    0.02) - began
            began = time.perf_counter()
            rate = redis_benchmark_set(tool, master.port, n, bench_timeout)
            took = time.perf_counter() - began
            rates[system, count].append(rate)
            # The share is taken within the round (same master, minutes apart at most):
            # on a shared machine the load drifts more between rounds than within one.
            shares[system, count].append(ratio(rate, rates[system, 0][-1]))
            estimate = rate
            extra = ""
            if count:
                catch = caught_up(master, attached, timeout=300)
                catchups[system, count].append(catch)
                extra = f", replicas caught up {catch:.2f}s later"
            log(f"[replication] throughput round {round_number + 1}/{rounds} {system:6s} "
                f"{count} replicas: -n {n:<9,} {rate:>10,.0f} SET/s in {took:.1f}s{extra}"
                + (f" (online {online:.1f}s after REPLICAOF)" if count else ""))
    finally:
        for replica in attached:
            detach(replica)
        master.stop()
    dead = [r.name for r in replicas if not r.alive()]
    if dead:
        found.notes.append(f"{system}: {', '.join(dead)} died")
        raise BenchmarkError(f"replica process died: {', '.join(dead)}")


# -- 4: replication lag under a steady write load --------------------------------------------

@dataclass
class LagResult:
    """One steady-load run."""

    rate: float  # SET/s achieved
    stream_rate: float  # replication stream bytes/s
    gaps: list[int] = field(default_factory=list)
    catch_up: float = float("nan")


class OffsetPoller(threading.Thread):
    """Reads the replica's offset, then the master's, every ``LAG_POLL`` seconds.

    The gap (master's offset minus replica's) is an upper bound: the master's value is
    read one round trip later. Sending both requests at once instead can read a negative
    gap, when the replica answers after applying writes the master made after answering.
    """

    def __init__(self, master: Server, replica: Server) -> None:
        super().__init__(daemon=True, name="offset-poller")
        self.master, self.replica = master, replica
        self.gaps: list[int] = []
        self.error: BaseException | None = None
        self._done = threading.Event()

    def run(self) -> None:
        request = encode_request(b"INFO", b"replication")
        try:
            with Connection(self.master.port) as master, Connection(self.replica.port) as replica:
                while not self._done.is_set():
                    theirs = repl_offset(parse_info(replica.pipeline(request, 1)[0]), True)
                    ours = repl_offset(parse_info(master.pipeline(request, 1)[0]), False)
                    gap = ours - theirs
                    self.gaps.append(gap)
                    time.sleep(LAG_POLL)
        except BaseException as err:  # reported by the caller
            self.error = err

    def stop(self) -> None:
        """Stop and wait for the thread."""
        self._done.set()
        self.join()


def lag_once(system: str, master: Server, replica: Server, seconds: float,
             round_number: int) -> LagResult:
    """Write at LAG_RATE for ``seconds`` while polling the offset gap; then time catch-up."""
    per_batch = int(LAG_RATE * LAG_BATCH_PERIOD)
    batches = int(seconds / LAG_BATCH_PERIOD)
    value = b"v" * VALUE_SIZE
    prefix = b"lag:%d:%s:" % (round_number, system.encode())
    requests = [b"".join(encode_request(b"SET", prefix + b"%d" % (b * per_batch + i), value)
                         for i in range(per_batch)) for b in range(batches)]
    with Connection(master.port) as writer, Connection(replica.port) as watcher:
        start_offset = repl_offset(writer.info(), replica=False)
        poller = OffsetPoller(master, replica)
        poller.start()
        try:
            began = time.perf_counter()
            for index, batch in enumerate(requests):
                delay = began + index * LAG_BATCH_PERIOD - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                replies = writer.pipeline(batch, per_batch)
                if replies[-1] != b"OK":
                    raise BenchmarkError(f"{system}: SET replied {replies[-1]!r}")
            stopped = time.perf_counter()
            # Catch-up is timed before the poller is stopped: joining it could take a poll.
            final = repl_offset(writer.info(), replica=False)
            while repl_offset(watcher.info(), replica=True) < final:
                if time.perf_counter() > stopped + 120:
                    raise BenchmarkError(f"{system}: the replica did not catch up within 120s")
                time.sleep(0.0005)
            caught = time.perf_counter()
        finally:
            poller.stop()
        if poller.error is not None:
            raise BenchmarkError(f"{system}: the offset poller failed: {poller.error!r}")
    elapsed = stopped - began
    return LagResult(rate=batches * per_batch / elapsed,
                     stream_rate=(final - start_offset) / elapsed,
                     gaps=poller.gaps, catch_up=caught - stopped)


def lag_section(options: Options, workdir: Path, rounds: int) -> str:
    """Measurement 4."""
    seconds = 1.0 if options.quick else 3.0
    results: dict[str, list[LagResult]] = defaultdict(list)
    notes: list[str] = []
    started: list[Server] = []
    pairs: dict[str, tuple[Server, Server]] = {}
    try:
        for system in SYSTEMS:
            master = new_server(f"{system}-lag-master", system, options, workdir)
            started.append(master)
            master.start()
            replica = new_server(f"{system}-lag-replica", system, options, workdir,
                                 replicaof=master.port)
            started.append(replica)
            replica.start()
            wait_until(lambda r=replica, m=master: replicas_online(m, [r]), 60,
                       f"the {system} replica to sync", (master, replica), 0.02)
            pairs[system] = (master, replica)
        failed: set[str] = set()
        for round_number in range(rounds):
            for system in rotated(SYSTEMS, round_number):
                if system in failed:
                    continue
                master, replica = pairs[system]
                try:
                    result = lag_once(system, master, replica, seconds, round_number)
                except (BenchmarkError, OSError, ReplyError) as err:
                    failed.add(system)
                    notes.append(f"{system}: failed in round {round_number + 1}: {err}")
                    log(f"[replication] {system} lag FAILED: {err}")
                    continue
                results[system].append(result)
                log(f"[replication] lag round {round_number + 1}/{rounds} {system:6s} "
                    f"{result.rate:,.0f} SET/s, gap max {max(result.gaps, default=0):,} B "
                    f"mean {statistics.fmean(result.gaps) if result.gaps else 0:,.0f} B, "
                    f"caught up {result.catch_up * 1000:.1f} ms after the load")
    finally:
        stop_all(started)

    rows = []
    for system in SYSTEMS:
        runs = results.get(system, [])
        gap_max = median([max(r.gaps) for r in runs if r.gaps])
        gap_mean = median([statistics.fmean(r.gaps) for r in runs if r.gaps])
        stream = median([r.stream_rate for r in runs])
        rows.append([system, fmt_rate(median([r.rate for r in runs])),
                     "n/a" if stream != stream else f"{stream / 1024:,.0f}",
                     fmt_rate(gap_max), fmt_rate(gap_mean),
                     fmt_ms(ratio(gap_max, stream)), fmt_ms(median([r.catch_up for r in runs]))])
    text = [
        "### 4. Replication lag under a steady write load",
        "",
        f"{LAG_RATE:,} SET/s ({int(LAG_RATE * LAG_BATCH_PERIOD)} pipelined SETs of "
        f"{VALUE_SIZE}-byte values every {LAG_BATCH_PERIOD * 1000:g} ms) for {seconds:g}s on "
        "the master of one replica; another thread reads `slave_repl_offset` (replica) then "
        f"`master_repl_offset` (master) every ~{LAG_POLL * 1000:g} ms: the gap is an upper "
        f"bound (the master is read one round trip later). Median of {rounds} rounds.",
        "",
        markdown_table(["system", "SET/s achieved", "stream KiB/s", "max gap B", "mean gap B",
                        "max gap as ms of writes", "catch-up after the load ms"], rows),
        "",
        "`max gap as ms of writes`: the max gap divided by the stream's byte rate. "
        "`catch-up`: from the last write's reply until the replica's offset reached the "
        "master's final offset (polled every ~0.5 ms; the floor is one INFO round trip to "
        "each server).",
    ]
    if notes:
        text += ["", "Notes:", *(f"- {note}" for note in notes)]
    return "\n".join(text) + "\n"


# -- 5: in-process Master + Replica ---------------------------------------------------------

def _inprocess_kvrepl(keys: list[bytes], with_replica: bool) -> dict[str, float]:
    """One round of the embedded pair (or a lone master) in its own trio.run."""
    import trio

    import kvrepl

    value = b"v" * VALUE_SIZE
    out: dict[str, float] = {}

    async def main() -> None:
        async with kvrepl.Master() as master:
            if not with_replica:
                set_ = master.set
                gc.collect()
                began = time.perf_counter()
                for key in keys:
                    set_(key, value)
                out["set"] = len(keys) / (time.perf_counter() - began)
                get = master.get
                began = time.perf_counter()
                for key in keys:
                    get(key)
                out["get"] = len(keys) / (time.perf_counter() - began)
                return
            async with kvrepl.Replica(follow=master) as replica:
                await replica.wait_synced()
                # Let the tail of the initial sync (the replica's post-payload ACK, the
                # master's bookkeeping) finish before the timed burst.
                await trio.sleep(SETTLE)
                set_ = master.set
                gc.collect()
                began = time.perf_counter()
                for key in keys:
                    set_(key, value)
                burst = time.perf_counter()
                await replica.wait_synced()
                synced = time.perf_counter()
                out["set"] = len(keys) / (synced - began)
                out["set burst"] = len(keys) / (burst - began)
                out["apply"] = len(keys) / (synced - burst)
                get = replica.get
                began = time.perf_counter()
                for key in keys:
                    get(key)
                out["get"] = len(keys) / (time.perf_counter() - began)
                if replica.get(keys[-1]) != value or replica.dbsize() != len(keys):
                    raise BenchmarkError("the in-process replica does not hold what was set")

    trio.run(main)
    return out


def _inprocess_fakeredis(keys: list[bytes]) -> dict[str, float]:
    import fakeredis

    store = fakeredis.FakeRedis()
    value = b"v" * VALUE_SIZE
    set_, get = store.set, store.get
    gc.collect()
    began = time.perf_counter()
    for key in keys:
        set_(key, value)
    out = {"set": len(keys) / (time.perf_counter() - began)}
    began = time.perf_counter()
    for key in keys:
        get(key)
    out["get"] = len(keys) / (time.perf_counter() - began)
    return out


def _inprocess_dict(keys: list[bytes]) -> dict[str, float]:
    store: dict[bytes, bytes] = {}
    value = b"v" * VALUE_SIZE
    gc.collect()
    began = time.perf_counter()
    for key in keys:
        store[key] = value
    out = {"set": len(keys) / (time.perf_counter() - began)}
    began = time.perf_counter()
    for key in keys:
        store[key]  # noqa: B018 - the lookup is the work measured
    out["get"] = len(keys) / (time.perf_counter() - began)
    return out


def inprocess_section(options: Options, rounds: int) -> str:
    """Measurement 5."""
    big, small = (20_000, 2_000) if options.quick else (100_000, 10_000)
    keys = [b"key:%d" % i for i in range(big)]
    contenders: dict[str, tuple[Callable[[list[bytes]], dict[str, float]], int]] = {
        "kvrepl master + replica": (lambda k: _inprocess_kvrepl(k, True), big),
        "kvrepl master alone": (lambda k: _inprocess_kvrepl(k, False), big),
    }
    notes: list[str] = []
    try:
        import fakeredis  # noqa: F401
    except ImportError:
        notes.append("fakeredis is not installed: skipped")
    else:
        contenders["fakeredis"] = (_inprocess_fakeredis, small)
    contenders["dict"] = (_inprocess_dict, big)
    names = list(contenders)
    results: dict[tuple[str, str], list[float]] = defaultdict(list)
    for round_number in range(-1, rounds):  # round -1: warm-up (imports, first calls)
        for name in rotated(names, max(round_number, 0)):
            run_one, count = contenders[name]
            try:
                measured = run_one(keys[:count if round_number >= 0 else 1000])
            except Exception as err:  # one failed round is a note, not a crash
                what = "the warm-up" if round_number < 0 else f"round {round_number + 1}"
                notes.append(f"{name}: {what} failed: {_describe(err)}")
                log(f"[replication] in-process {name} FAILED in {what}: {_describe(err)}")
                continue
            if round_number < 0:
                continue
            for test, rate in measured.items():
                results[name, test].append(rate)
            log(f"[replication] in-process round {round_number + 1}/{rounds} {name:24s} "
                + "  ".join(f"{test} {rate:>11,.0f}/s" for test, rate in measured.items()))

    def rate(name: str, test: str) -> float:
        return median(results.get((name, test), []))

    fake_set, fake_get = rate("fakeredis", "set"), rate("fakeredis", "get")
    pair = "kvrepl master + replica"

    def goal(value: float, target: float) -> str:
        if value != value:
            return f">= {target:g}x: n/a"
        return f">= {target:g}x: {'met' if value >= target else 'NOT met'}"

    rows = [
        ["master.set, replica attached (incl. wait_synced)", fmt_rate(rate(pair, "set")),
         fmt_rate(fake_set), fmt_rate(rate("dict", "set")),
         fmt_ratio(ratio(rate(pair, "set"), fake_set)),
         goal(ratio(rate(pair, "set"), fake_set), SET_GOAL)],
        ["replica.get", fmt_rate(rate(pair, "get")), fmt_rate(fake_get),
         fmt_rate(rate("dict", "get")), fmt_ratio(ratio(rate(pair, "get"), fake_get)),
         goal(ratio(rate(pair, "get"), fake_get), GET_GOAL)],
        ["master.set, burst only (no wait)", fmt_rate(rate(pair, "set burst")),
         fmt_rate(fake_set), fmt_rate(rate("dict", "set")),
         fmt_ratio(ratio(rate(pair, "set burst"), fake_set)), ""],
        ["replica applying the stream", fmt_rate(rate(pair, "apply")), "", "", "", ""],
        ["master.set, no replica", fmt_rate(rate("kvrepl master alone", "set")),
         fmt_rate(fake_set), fmt_rate(rate("dict", "set")),
         fmt_ratio(ratio(rate("kvrepl master alone", "set"), fake_set)), ""],
        ["master.get, no replica", fmt_rate(rate("kvrepl master alone", "get")),
         fmt_rate(fake_get), fmt_rate(rate("dict", "get")),
         fmt_ratio(ratio(rate("kvrepl master alone", "get"), fake_get)), ""],
    ]
    counts = ", ".join(f"{name} {contenders[name][1]:,}" for name in names)
    text = [
        "### 5. In-process: kvrepl.Master + kvrepl.Replica(follow=master) vs fakeredis vs dict",
        "",
        f"A burst of N `master.set(key, 16-byte value)` on distinct keys, then `await "
        "replica.wait_synced()` (counted in the ops/s), then `replica.get` over every key; "
        f"each round in a fresh `trio.run`. Median of {rounds} rounds, contenders alternated.",
        "",
        markdown_table(["test", "kvrepl ops/s", "fakeredis ops/s", "dict ops/s",
                        "kvrepl/fakeredis", "goal"], rows),
        "",
        f"N: {counts} keys. `replica applying the stream`: N / (time from the end of the "
        "burst until wait_synced returned).",
    ]
    if notes:
        text += ["", "Notes:", *(f"- {note}" for note in notes)]
    return "\n".join(text) + "\n"


def _describe(err: BaseException) -> str:
    """An exception in one line; for a (trio) exception group, its innermost leaves."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        inner = getattr(exc, "exceptions", None)  # an exception group (3.11 or backport)
        if isinstance(inner, tuple) and inner:
            for one in inner:
                walk(one)
        else:
            leaves.append(exc)

    walk(err)
    return "; ".join(f"{type(leaf).__name__}: {leaf}" for leaf in leaves)


# -- the module --------------------------------------------------------------------------------

def run(options: Options) -> str:
    """Run the replication benchmarks and return their markdown section."""
    rounds = max(1, min(options.rounds, MAX_ROUNDS))
    sections = [f"## {TITLE}", "",
                f"{rounds} rounds per measurement (at most {MAX_ROUNDS} to bound the run "
                "time); kvrepl and redis-server 7.0 alternate, order rotated every round.", ""]
    parts: list[tuple[str, Callable[[Path], str]]] = [
        ("full sync", lambda workdir: full_sync_section(options, workdir, rounds)),
        ("throughput", lambda workdir: throughput_section(options, workdir, rounds)),
        ("lag", lambda workdir: lag_section(options, workdir, rounds)),
        ("in-process", lambda _workdir: inprocess_section(options, rounds)),
    ]
    with tempfile.TemporaryDirectory(prefix="kvrepl-bench-repl-") as tmp:
        for name, part in parts:
            began = time.monotonic()
            try:
                sections.append(part(Path(tmp)))
            except Exception as err:  # the other parts still run and report
                sections.append(f"### {name}\n\nFAILED: {_describe(err)}\n")
                log(f"[replication] {name} FAILED: {_describe(err)}")
            log(f"[replication] {name}: {time.monotonic() - began:.0f}s")
    return "\n".join(sections)
