"""Following a Redis Cluster: kvrepl's cluster follower beside three redis-server replicas.

A 3-primary Redis Cluster (redis-server 7.0, ``--repl-diskless-sync-delay 0``, node folders on
tmpfs where there is one) is filled with N string keys of 16 bytes (``key:<i>``, each sent to
the primary of its slot with ``redis-cli --pipe``); N is 1M, 50k with ``--quick``, or
``KVREPL_CLUSTER_BENCH_KEYS``. Then, in the same run, rounds alternating:

1. Initial sync: ``kvrepl.Replica(follow=kvrepl.Cluster(...))`` in this process, from entering
   its block until ``wait_synced()`` returns (every shard linked and caught up); beside three
   redis-server replicas (plain, one per primary, already running) told ``REPLICAOF`` at
   once, until all three say ``master_link_status:up`` and hold the primaries' keys. Goal:
   kvrepl at most 2x the redis-server replicas' time. Beside it, CPU time: the follower
   thread's on a core (and waiting for one) against the three redis-server processes'.
2. Lag under load: a process of its own (:func:`steady_load`) sends 50,000 SET/s
   (``KVREPL_CLUSTER_BENCH_RATE``) for 10 s, a batch every 10 ms to each key's primary,
   while both followers are attached; every 10 ms the gap between each primary's
   ``master_repl_offset`` and the follower's applied offset of that shard, in bytes and as
   time at the stream's rate; then how long each takes to reach the primaries' final offsets
   once the load stops. Each gap of 50 ms or more is listed with what the follower's
   process and the host were doing just before it (:mod:`benchmarks.stalls`: long task
   steps, gc collections, the loop thread's time on a core and waiting for one), and the
   host's busy cores over the load are split between the benchmark's processes and the
   rest of the host.
3. Local reads: ``replica.get`` over 50,000 existing keys beside ``fakeredis.FakeRedis.get``
   holding the same keys in the same order (goal: at least 20x) and a plain kvrepl node
   (see :func:`get_section`).
4. A shard link's apply path in process: runs of plain SETs with the plain lane and with
   every command through the general path (see :func:`apply_section`).
"""

from __future__ import annotations

import gc
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

from benchmarks.common import (
    HOST,
    BenchmarkError,
    Connection,
    Options,
    ReplyError,
    binary,
    fmt_ratio,
    fmt_seconds,
    log,
    markdown_table,
    median,
    percentile,
    process_cpu_seconds,
)
from benchmarks.stalls import SchedStat, StallRecorder, host_busy_seconds

TITLE = "Following a Redis Cluster"
SYNC_GOAL = 2.0  # kvrepl's initial sync / three redis-server replicas' (at most)
GET_GOAL = 20.0  # replica.get / fakeredis get (at least)
MAX_ROUNDS = 3
VALUE = b"v" * 16
LOAD_RATE = int(os.environ.get("KVREPL_CLUSTER_BENCH_RATE", 50_000))  # SET/s, the issue's
SAMPLE_PERIOD = 0.01
DEADLINE = 600.0  # seconds any one wait may take before the run is declared failed


def _cluster_nodes() -> type:
    """The test suite's cluster launcher (one copy of that logic): tests/support.py."""
    tests = str(Path(__file__).resolve().parent.parent / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    from support import RedisClusterNodes

    return RedisClusterNodes


def key_count(options: Options) -> int:
    if "KVREPL_CLUSTER_BENCH_KEYS" in os.environ:
        return int(os.environ["KVREPL_CLUSTER_BENCH_KEYS"])
    return 50_000 if options.quick else 1_000_000


def fill(nodes: object, count: int) -> None:
    """``count`` keys, each written to the primary that serves its slot."""
    from kvrepl.replication.topology import key_slot

    owner: dict[int, int] = {}
    for primary in nodes.primaries():  # type: ignore[attr-defined]
        with Connection(primary.port) as conn:
            for start, end, node, *_ in conn.command(b"CLUSTER", b"SLOTS"):  # type: ignore[union-attr]
                for slot in range(start, end + 1):
                    owner[slot] = int(node[1])
        break
    requests: dict[int, list[bytes]] = {port: [] for port in set(owner.values())}
    head = b"*3\r\n$3\r\nSET\r\n"
    tail = b"$%d\r\n%s\r\n" % (len(VALUE), VALUE)
    for i in range(count):
        key = b"key:%d" % i
        requests[owner[key_slot(key)]].append(b"%s$%d\r\n%s\r\n%s" % (head, len(key), key, tail))
    for port, parts in requests.items():
        subprocess.run([binary("redis-cli") or "redis-cli", "-p", str(port), "--pipe"],
                       input=b"".join(parts), check=True, capture_output=True, timeout=DEADLINE)


def start_redis_replicas(folder: Path, count: int) -> list[subprocess.Popen]:
    processes = []
    for index in range(count):
        # A folder of its own each time: a replica stores its master's payload as its dump,
        # which the next one started there would load.
        work = Path(tempfile.mkdtemp(prefix=f"replica{index}-", dir=folder))
        port = _free_port()
        processes.append(subprocess.Popen(
            [binary("redis-server") or "redis-server", "--port", str(port), "--bind", HOST,
             "--save", "", "--appendonly", "no", "--dir", str(work)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        processes[-1].port = port  # type: ignore[attr-defined]
    for process in processes:
        _until(lambda p=process.port: _ping(p), "a redis-server replica starts")  # type: ignore[attr-defined]
    return processes


def _free_port() -> int:
    from benchmarks.common import free_port

    return free_port()


def _ping(port: int) -> bool:
    try:
        with Connection(port, timeout=1) as conn:
            return conn.command(b"PING") == b"PONG"
    except (OSError, ReplyError):
        return False


def _until(condition: object, what: str, period: float = 0.005) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise BenchmarkError(f"timed out waiting until {what}")
        time.sleep(period)


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(30)


# -- 1. initial sync ---------------------------------------------------------------------------

def redis_sync_seconds(nodes: object, folder: Path, count: int) -> tuple[float, float]:
    """Three redis-server replicas' sync: wall seconds, and the CPU seconds the three
    processes used over them (all their threads)."""
    primaries = nodes.primaries()  # type: ignore[attr-defined]
    replicas = start_redis_replicas(folder, len(primaries))
    try:
        conns = [Connection(r.port, timeout=DEADLINE) for r in replicas]  # type: ignore[attr-defined]
        cpu = sum(process_cpu_seconds(r.pid) for r in replicas)
        began = time.perf_counter()
        for conn, primary in zip(conns, primaries, strict=True):
            conn.command(b"REPLICAOF", HOST.encode(), str(primary.port).encode())

        def synced() -> bool:
            total = 0
            for conn in conns:
                info = conn.info()
                if info.get("master_link_status") != "up" or \
                        info.get("master_sync_in_progress") != "0":
                    return False
                try:
                    total += int(conn.command(b"DBSIZE"))  # type: ignore[arg-type]
                except ReplyError:  # LOADING: not yet
                    return False
            return total == count

        _until(synced, "three redis-server replicas synced")
        took = time.perf_counter() - began
        cpu = sum(process_cpu_seconds(r.pid) for r in replicas) - cpu
        for conn in conns:
            conn.close()
        return took, cpu
    finally:
        stop(replicas)


def kvrepl_sync_seconds(nodes: object, count: int) -> tuple[float, float, float]:
    """The follower's initial sync: wall seconds, and over them the seconds its loop's
    thread ran on a core and waited for one (SchedStat; -1 where /proc does not tell)."""
    import kvrepl

    seeds = nodes.seeds()  # type: ignore[attr-defined]
    out: list[tuple[float, float, float]] = []

    async def main() -> None:
        gc.collect()
        sched = SchedStat()
        ran, waited = sched.read()
        began = time.perf_counter()
        async with kvrepl.Replica(follow=kvrepl.Cluster(seeds)) as replica:
            with trio.fail_after(DEADLINE):
                await replica.wait_synced()
            took = time.perf_counter() - began
            now_ran, now_waited = sched.read()
            sched.close()
            known = ran >= 0 <= now_ran
            out.append((took, now_ran - ran if known else -1.0,
                        now_waited - waited if known else -1.0))
            if replica.dbsize() != count:
                raise BenchmarkError(f"the follower holds {replica.dbsize()} keys, not {count}")

    trio.run(main)
    return out[0]


def sync_section(nodes: object, folder: Path, count: int, rounds: int) -> str:
    ours: list[float] = []
    ran: list[float] = []
    waited: list[float] = []
    theirs: list[float] = []
    their_cpu: list[float] = []
    for round_number in range(rounds):
        order = ["kvrepl", "redis"] if round_number % 2 == 0 else ["redis", "kvrepl"]
        for who in order:
            if who == "kvrepl":
                took, cpu, wait = kvrepl_sync_seconds(nodes, count)
                ours.append(took)
                ran.append(cpu)
                waited.append(wait)
                log(f"[cluster] sync round {round_number + 1} kvrepl: {took:.2f}s "
                    f"(on a core {cpu:.2f}s, waiting for one {wait:.2f}s)")
            else:
                took, cpu = redis_sync_seconds(nodes, folder, count)
                theirs.append(took)
                their_cpu.append(cpu)
                log(f"[cluster] sync round {round_number + 1} redis: {took:.2f}s "
                    f"(CPU {cpu:.2f}s)")
    ratios = [o / t for o, t in zip(ours, theirs, strict=True)]
    rows = [
        ["kvrepl Replica(follow=Cluster)", fmt_seconds(median(ours)),
         f"{fmt_seconds(min(ours))} - {fmt_seconds(max(ours))}"],
        ["  of which its thread on a core", fmt_seconds(median(ran)),
         f"{fmt_seconds(min(ran))} - {fmt_seconds(max(ran))}"],
        ["  of which waiting for a core (host)", fmt_seconds(median(waited)),
         f"{fmt_seconds(min(waited))} - {fmt_seconds(max(waited))}"],
        ["3 redis-server replicas in parallel", fmt_seconds(median(theirs)),
         f"{fmt_seconds(min(theirs))} - {fmt_seconds(max(theirs))}"],
        ["  their CPU, the three processes", fmt_seconds(median(their_cpu)),
         f"{fmt_seconds(min(their_cpu))} - {fmt_seconds(max(their_cpu))}"],
    ]
    cpu_ratios = [o / t for o, t in zip(ran, their_cpu, strict=True) if t > 0 <= o]
    return "\n".join([
        f"### Initial sync of {count:,} keys over 3 primaries", "",
        markdown_table(["follower", "median (s)", "range (s)"], rows), "",
        f"kvrepl / redis-server: {fmt_ratio(median(ratios))} median, rounds "
        f"{fmt_ratio(min(ratios))} - {fmt_ratio(max(ratios))} (goal at most "
        f"{SYNC_GOAL:g}x: {'met' if median(ratios) <= SYNC_GOAL else 'NOT met'}). In CPU "
        "time (what the host's other programs move least): kvrepl's thread on a core / the "
        "three redis-server processes: "
        + (f"{fmt_ratio(median(cpu_ratios))} median, rounds {fmt_ratio(min(cpu_ratios))} - "
           f"{fmt_ratio(max(cpu_ratios))}." if cpu_ratios else "not known here."), ""])


# -- 2. lag under load -------------------------------------------------------------------------

def steady_load(seed: int, rate: int, seconds: float) -> None:
    """``rate`` SET/s for ``seconds``, each to the primary of its key's slot, sent every 10 ms
    as one pipelined batch per primary (run in a process of its own: see lag_section)."""
    from kvrepl.replication.topology import key_slot

    owner: dict[int, int] = {}
    with Connection(seed) as conn:
        for start, end, node, *_ in conn.command(b"CLUSTER", b"SLOTS"):  # type: ignore[union-attr]
            for slot in range(start, end + 1):
                owner[slot] = int(node[1])
    conns = {port: Connection(port) for port in set(owner.values())}
    per_tick = max(1, int(rate * SAMPLE_PERIOD))
    batches: dict[int, list[bytes]] = {port: [] for port in conns}
    for i in range(per_tick * 100):  # 100 distinct ticks' worth of keys, reused
        key = b"load:%d" % i
        batches[owner[key_slot(key)]].append(
            b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$16\r\n%s\r\n" % (len(key), key, VALUE))
    ticks = []
    for tick in range(100):
        ticks.append({port: (b"".join(reqs[tick::100]), len(reqs[tick::100]))
                      for port, reqs in batches.items()})
    began = time.perf_counter()
    sent = 0
    tick = 0
    while time.perf_counter() - began < seconds:
        for port, (data, count) in ticks[tick % 100].items():
            if count:
                conns[port].pipeline(data, count)
                sent += count
        tick += 1
        pause = began + tick * SAMPLE_PERIOD - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    print(f"{sent / (time.perf_counter() - began):.0f} {time.process_time():.3f}")


def lag_section(nodes: object, folder: Path, rate: int, seconds: float) -> str:
    import kvrepl

    primaries = nodes.primaries()  # type: ignore[attr-defined]
    replicas = start_redis_replicas(folder, len(primaries))
    result: dict[str, object] = {}
    recorder = StallRecorder()
    try:
        for replica, primary in zip(replicas, primaries, strict=True):
            with Connection(replica.port) as conn:  # type: ignore[attr-defined]
                conn.command(b"REPLICAOF", HOST.encode(), str(primary.port).encode())

        async def main() -> None:
            async with kvrepl.Replica(follow=kvrepl.Cluster(nodes.seeds())) as follower:  # type: ignore[attr-defined]
                with trio.fail_after(DEADLINE):
                    await follower.wait_synced()
                for replica in replicas:
                    _until(lambda p=replica.port: _link_up(p), "a redis replica is synced")  # type: ignore[attr-defined]
                cluster = follower.cluster_follower
                links = {(link.host, link.port): link for link in cluster.links}
                theirs = {(HOST, p.port): (HOST, r.port)  # type: ignore[attr-defined]
                          for p, r in zip(primaries, replicas, strict=True)}
                gaps: list[int] = []
                redis_gaps: list[int] = []
                when: list[float] = []  # each gap's time (perf_counter)
                first: dict[tuple[str, int], tuple[float, int]] = {}
                last: dict[tuple[str, int], tuple[float, int]] = {}
                done = trio.Event()

                async def sample() -> None:
                    # One connection per node for the whole load (a connection per
                    # sample cost the follower's process 5-8% of a core more).
                    probes = {a: await _Probe.open(*a) for a in (*links, *theirs.values())}
                    while not done.is_set():
                        for address, link in links.items():
                            offset = await probes[address].offset()
                            gaps.append(offset - link.reploff)
                            when.append(time.perf_counter())
                            redis_gaps.append(offset - await probes[theirs[address]].offset(
                                b"slave_repl_offset"))
                            first.setdefault(address, (time.perf_counter(), offset))
                            last[address] = (time.perf_counter(), offset)
                        await trio.sleep(SAMPLE_PERIOD)
                    for probe in probes.values():
                        await probe.stream.aclose()

                async def load() -> None:
                    began = time.perf_counter()
                    run = await trio.run_process(
                        [sys.executable, __file__, "--load", str(primaries[0].port), str(rate),
                         str(seconds)], capture_stdout=True,
                        env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent)))
                    result["load_seconds"] = time.perf_counter() - began
                    rate_text, cpu_text = (run.stdout.decode().split() + ["nan", "nan"])[:2]
                    result["achieved"] = float(rate_text)
                    result["load_cpu"] = float(cpu_text)
                    done.set()

                async with trio.open_nursery() as nursery:
                    await recorder.start(nursery)
                    sched = SchedStat()
                    (ran, waited), cpu, began = (sched.read(), time.process_time(),
                                                 time.perf_counter())
                    servers = {"primaries": [p.process.pid for p in primaries],  # type: ignore[attr-defined]
                               "replicas": [r.pid for r in replicas]}
                    server_cpu = {name: sum(map(process_cpu_seconds, pids))
                                  for name, pids in servers.items()}
                    host = host_busy_seconds()
                    nursery.start_soon(sample)
                    nursery.start_soon(load)
                    await done.wait()
                    recorder.stop()
                    took = time.perf_counter() - began
                    result["cpu_share"] = (time.process_time() - cpu) / took
                    result["host_share"] = (host_busy_seconds() - host) / took
                    for name, pids in servers.items():
                        result[f"{name}_share"] = (sum(map(process_cpu_seconds, pids))
                                                   - server_cpu[name]) / took
                    now_ran, now_waited = sched.read()
                    sched.close()
                    result["ran_share"] = (now_ran - ran) / took
                    result["waited_share"] = (now_waited - waited) / took
                stopped = time.perf_counter()
                finals = {a: await _offset(cluster, *a) for a in links}
                pending = set(links) | {("redis",) + a for a in links}
                with trio.fail_after(DEADLINE):
                    while pending:
                        for item in list(pending):
                            if item[0] == "redis":
                                address = item[1:]
                                done_yet = await _offset(cluster, *theirs[address],
                                                         b"slave_repl_offset") >= finals[address]
                                key = "redis_catch_up"
                            else:
                                done_yet = links[item].reploff >= finals[item]
                                key = "kvrepl_catch_up"
                            if done_yet:
                                pending.discard(item)
                                result[key] = time.perf_counter() - stopped
                        await trio.sleep(0.001)
                result["gaps"] = gaps
                result["when"] = when
                result["redis_gaps"] = redis_gaps
                result["stream_rate"] = median([
                    (last[a][1] - first[a][1]) / max(last[a][0] - first[a][0], 1e-9)
                    for a in first])

        trio.run(main)
    finally:
        stop(replicas)
    per_shard_rate: float = result["stream_rate"]  # type: ignore[assignment]

    def as_ms(gap: float) -> str:
        return f"{gap / per_shard_rate * 1000:.0f} ms" if per_shard_rate else "n/a"

    def cells(gaps: list[int]) -> list[str]:
        return [f"{g:,.0f} B ({as_ms(g)})" for g in
                (percentile(gaps, 0.5), percentile(gaps, 0.99), max(gaps))]

    rows = [["kvrepl follower", *cells(result["gaps"]),  # type: ignore[arg-type]
             fmt_seconds(result["kvrepl_catch_up"])],  # type: ignore[arg-type]
            ["3 redis-server replicas", *cells(result["redis_gaps"]),  # type: ignore[arg-type]
             fmt_seconds(result["redis_catch_up"])]]  # type: ignore[arg-type]
    stalls = _stall_lines(recorder, result["gaps"], result["when"],  # type: ignore[arg-type]
                          per_shard_rate)
    shares = {name: result[f"{name}_share"] for name in
              ("cpu", "primaries", "replicas", "host")}  # type: ignore[index]
    shares["load"] = result["load_cpu"] / result["load_seconds"]  # type: ignore[operator]
    others = shares["host"] - sum(v for k, v in shares.items() if k != "host")  # type: ignore[operator]
    stalls.insert(0, f"Over the load, in cores: the host's {os.cpu_count()} cores busy "
                  f"{shares['host']:.2f} (the 3 primaries {shares['primaries']:.2f}, the 3 "
                  f"redis-server replicas {shares['replicas']:.2f}, the load generator "
                  f"{shares['load']:.2f}, the follower's process {shares['cpu']:.2f}, other "
                  f"programs of the host {others:.2f}). The follower's loop thread ran "
                  f"{result['ran_share']:.0%} of the time and waited for a core "
                  f"{result['waited_share']:.0%} of it (the kernel's run-queue delay: the "
                  "host's share of any lag).")
    return "\n".join([
        "### Lag under a steady write load", "",
        f"{rate:,} SET/s asked for {seconds:g} s, {result['achieved']:,.0f} SET/s achieved "
        f"(a process of its own, batches every 10 ms to each key's primary); a shard's "
        f"stream ran at {per_shard_rate / 1e6:.2f} MB/s. Gaps sampled every 10 ms per shard "
        "(primary's offset minus the follower's), as time at that rate.", "",
        markdown_table(["follower", "gap per shard, median", "p99", "max",
                        "catch-up after the load (s)"], rows), "",
        "The sampler shares the follower's event loop: while the follower is behind, the "
        "redis-server replicas' figures are read late too (their catch-up is an upper "
        "bound).", "", *stalls])


STALL_REPORT = 0.050  # gaps from this long (as time) are listed with what the process did


def _stall_lines(recorder: StallRecorder, gaps: list[int], when: list[float],
                 rate: float) -> list[str]:
    """The largest gaps (at most 5, from STALL_REPORT) and what the follower's process was
    doing just before each was sampled (see benchmarks/stalls.py); then a tally."""
    if not rate:
        return []
    timed = sorted(((g / rate, t) for g, t in zip(gaps, when, strict=True)), reverse=True)
    big = [(lag, t) for lag, t in timed if lag >= STALL_REPORT]
    lines = [f"Gaps of {STALL_REPORT * 1000:.0f} ms or more: {len(big)} samples of "
             f"{len(gaps)}."]
    shown: list[float] = []
    for lag, t in big:
        if any(abs(t - other) < 0.2 for other in shown):
            continue  # the same stall, sampled on another shard
        shown.append(t)
        window = (t - lag - 0.02, t)
        lines.append(f"- {lag * 1000:.0f} ms [{recorder.cause(*window)}]: "
                     f"{recorder.explain(*window)}")
        if len(shown) == 5:
            break
    full = [c for c in recorder.collections if c.generation == 2]
    lines.append(
        f"During the load: {len(recorder.collections)} gc collections ({len(full)} full, "
        f"longest full {max((c.wall for c in full), default=0) * 1000:.0f} ms); "
        f"{len(recorder.steps)} task steps over {recorder.step_threshold * 1000:.0f} ms; "
        f"loop late over {recorder.late_threshold * 1000:.0f} ms {len(recorder.lates)} times "
        f"(longest {max((x.wall for x in recorder.lates), default=0) * 1000:.0f} ms).")
    return [*lines, ""]


class _Probe:
    """A connection to one node for reading its INFO replication offsets."""

    def __init__(self, stream: trio.SocketStream) -> None:
        import hiredis

        self.stream = stream
        self.reader = hiredis.Reader()

    @classmethod
    async def open(cls, host: str, port: int) -> _Probe:
        return cls(await trio.open_tcp_stream(host, port))

    async def offset(self, field: bytes = b"master_repl_offset") -> int:
        await self.stream.send_all(b"*2\r\n$4\r\nINFO\r\n$11\r\nreplication\r\n")
        while (reply := self.reader.gets()) is False:
            data = await self.stream.receive_some(65536)
            if not data:
                raise BenchmarkError("a node closed the connection")
            self.reader.feed(data)
        match = re.search(field + rb":(\d+)", reply)
        return int(match.group(1)) if match else 0


async def _offset(cluster: object, host: str, port: int,
                  field: bytes = b"master_repl_offset") -> int:
    info = await cluster.query(host, port, [b"INFO", b"replication"])  # type: ignore[attr-defined]
    match = re.search(field + rb":(\d+)", info)
    return int(match.group(1)) if match else 0


def _link_up(port: int) -> bool:
    with Connection(port) as conn:
        info = conn.info()
    return info.get("master_link_status") == "up" and info.get("master_sync_in_progress") == "0"


# -- 3. local reads ------------------------------------------------------------------------------

def _fakeredis_holding(keys: list[bytes]) -> object:
    """A ``FakeRedis`` holding ``keys`` (each set to VALUE) in this insertion order. Filled
    through its server's database mapping, the store fakeredis's own commands write (a
    million MSET keys take 80 s on this host); reads then go through ``FakeRedis.get``."""
    import fakeredis
    from fakeredis._core._database import Item

    server = fakeredis.FakeServer()
    db = server.dbs[0]
    for key in keys:
        db[key] = Item(VALUE)
    return fakeredis.FakeRedis(server=server)


def get_section(nodes: object, count: int, rounds: int) -> str:
    """``replica.get`` of the follower over 50,000 of its keys, beside readers holding the
    same keys in the same insertion order and read in the same order: fakeredis (the
    goal's peer) and a kvrepl ``Master`` (a plain node: the follower's reads should cost
    what any node's do). A fakeredis holding only the 50,000 keys, set in read order (the
    earlier comparison, far better memory locality), is shown beside."""
    import kvrepl

    reads = [b"key:%d" % i for i in range(min(count, 50_000))]
    rates: dict[str, list[float]] = {}
    names = ["follower", "fakeredis", "master", "fakeredis_small"]

    def rate(get: object) -> float:
        began = time.perf_counter()
        for key in reads:
            get(key)  # type: ignore[operator]
        return len(reads) / (time.perf_counter() - began)

    async def main() -> None:
        async with kvrepl.Replica(follow=kvrepl.Cluster(nodes.seeds())) as replica:  # type: ignore[attr-defined]
            with trio.fail_after(DEADLINE):
                await replica.wait_synced()
            order = list(replica.engine.keyspace.dbs[0].data)  # shard by shard, as loaded
            fake = _fakeredis_holding(order)
            small = _fakeredis_holding(reads)
            async with kvrepl.Master() as master:
                for key in order:
                    master.set(key, VALUE)
                gets = {"follower": replica.get, "fakeredis": fake.get,  # type: ignore[attr-defined]
                        "master": master.get, "fakeredis_small": small.get}  # type: ignore[attr-defined]
                for round_number in range(rounds):
                    turn = names if round_number % 2 == 0 else names[::-1]
                    for name in turn:
                        rates.setdefault(name, []).append(rate(gets[name]))

    trio.run(main)

    def ratios(a: str, b: str) -> list[float]:
        return [x / y for x, y in zip(rates[a], rates[b], strict=True)]

    def cell(values: list[float]) -> str:
        return f"{fmt_ratio(median(values))} ({fmt_ratio(min(values))} - {fmt_ratio(max(values))})"

    goal = ratios("follower", "fakeredis")
    rows = [["kvrepl cluster follower `replica.get`", f"{median(rates['follower']):,.0f}", ""],
            ["fakeredis `FakeRedis.get`, the same 1M keys and order",
             f"{median(rates['fakeredis']):,.0f}", cell(goal)],
            ["kvrepl `Master.get`, the same keys and order (a plain node)",
             f"{median(rates['master']):,.0f}", cell(ratios("follower", "master"))],
            [f"fakeredis holding only the {len(reads):,} keys read, set in read order",
             f"{median(rates['fakeredis_small']):,.0f}", cell(ratios("follower", "fakeredis_small"))]]
    return "\n".join([
        "### Local reads on the follower", "",
        f"{len(reads):,} keys (`key:0` up) read in that order by each reader, alternating "
        f"rounds; each holds the follower's {count:,} keys in the follower's order "
        "(shard by shard, each in its payload's order) unless said otherwise.", "",
        markdown_table(["reader", "get/s (median)", "follower / this (median, rounds)"], rows),
        "", f"follower / fakeredis: {fmt_ratio(median(goal))} (goal at least {GET_GOAL:g}x: "
        f"{'met' if median(goal) >= GET_GOAL else 'NOT met'}).", ""])


def apply_section(rounds: int) -> str:
    """A shard link's apply path alone, in process (no sockets, so the host's load weighs
    on both sides alike): runs of plain SETs of its own slots through ``_apply_batch`` in
    pieces of 1,000 commands, with the plain lane (``ShardLink.lane_run_of``) and with it
    off (every command through ``_admit`` and the general path), alternating rounds."""
    _cluster_nodes()  # tests/ on sys.path
    from test_cluster_lane import HALF, Follower

    from kvrepl.replication.handshake import StreamBatch
    from kvrepl.replication.stream import encode_command
    from kvrepl.replication.topology import key_slot

    keys = [key for key in (b"key:%d" % i for i in range(200_000)) if key_slot(key) < HALF]
    pieces = []
    for start in range(0, len(keys), 1000):
        argvs = [[b"SET", key, VALUE] for key in keys[start:start + 1000]]
        pieces.append((argvs, b"".join(map(encode_command, argvs))))
    rates: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(rounds):
        for lane in (True, False):
            link = Follower(lane).a
            began = time.perf_counter()
            for argvs, raw in pieces:
                link._apply_batch(StreamBatch(argvs, None, raw))
            rates[lane].append(len(keys) / (time.perf_counter() - began))
    ratios = [a / b for a, b in zip(rates[True], rates[False], strict=True)]
    return "\n".join([
        "### A shard link's apply path", "",
        markdown_table(["path", "SET/s applied (median)", "range"],
                       [[name, f"{median(rates[lane]):,.0f}",
                         f"{min(rates[lane]):,.0f} - {max(rates[lane]):,.0f}"]
                        for name, lane in (("plain lane (own slots, nothing moving)", True),
                                           ("general path (`_admit`, then the command)",
                                            False))]), "",
        f"lane / general: {fmt_ratio(median(ratios))} (rounds {fmt_ratio(min(ratios))} - "
        f"{fmt_ratio(max(ratios))}).", ""])


def run(options: Options, parts: list[str] | None = None) -> str:
    """Run the cluster-follow benchmarks and return their markdown section."""
    count = key_count(options)
    rounds = max(1, min(options.rounds, MAX_ROUNDS))
    sections = [f"## {TITLE}", ""]
    cluster_nodes = _cluster_nodes()
    log(f"[cluster] starting a 3-primary cluster and filling it with {count:,} keys")
    nodes = cluster_nodes(primaries=3)
    try:
        fill(nodes, count)
        with tempfile.TemporaryDirectory(prefix="kvrepl-bench-cluster-") as tmp:
            folder = Path(tmp)
            steps = [("sync", lambda: sync_section(nodes, folder, count, rounds)),
                     ("lag", lambda: lag_section(nodes, folder, LOAD_RATE,
                                                 2.0 if options.quick else 10.0)),
                     ("get", lambda: get_section(nodes, count, max(rounds, 5))),
                     ("apply", lambda: apply_section(rounds))]
            for name, part in [p for p in steps if parts is None or p[0] in parts]:
                began = time.monotonic()
                try:
                    sections.append(part())
                except Exception as err:  # the other parts still run and report
                    sections.append(f"### {name}\n\nFAILED: {type(err).__name__}: {err}\n")
                    log(f"[cluster] {name} FAILED: {err!r}")
                log(f"[cluster] {name}: {time.monotonic() - began:.0f}s")
    finally:
        nodes.stop()
    return "\n".join(sections)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    if sys.argv[1:2] == ["--load"]:
        steady_load(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
    else:
        parts = [a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--parts=")]
        print(run(Options(quick="--quick" in sys.argv, rounds=3),
                  parts=parts[0].split(",") if parts else None))
