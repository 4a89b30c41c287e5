"""Soak: a replicated kvrepl set-up under a steady mixed load and random faults, for minutes.

Topology (all on 127.0.0.1)::

    master (kvrepl-server process)
      +-- replica-proc   (kvrepl-server process)
      |     +-- chained  (kvrepl-server process, replica of replica-proc)
      +-- embedded       (kvrepl.Replica(follow=(host, port)) in this process, own thread)
      +-- redis          (redis-server 7.0 process)

A writer sends, every 20 ms, one pipeline of writes over every type (strings, lists,
hashes, sets, zsets, streams, HyperLogLog, bitmaps, geo) and, every fifth time, a
MULTI/EXEC; each pipeline and transaction also writes a few numbered ledger writes,
``ledger:<n mod slots>`` = ``value-<n>``, noted once the master acknowledged them. The ledger
is a fixed space of ``SOAK_LEDGER_SLOTS`` keys (default 30,000: a default run never wraps), so
that the dataset stays bounded and memory flatness is measurable in a long run; every key is
prefilled to about its settled size before the clock starts. Every ``SOAK_FAULT_EVERY``
seconds (default 4) one fault,
chosen at random: CLIENT KILL TYPE replica on the master, CLIENT KILL TYPE master on a
replica, a restart of the replica process (SIGKILL or SIGTERM, same port: the chained
replica reconnects), a BGSAVE, DEBUG SLEEP 0.3 on the master, or a backlog overrun
(repl-backlog-size 16kb, replica links cut, a 2 MB burst: full resyncs). A pinger measures
the master's PING latency; RSS of every process is sampled every second and, every 5 s,
its Python-level memory (the kvrepl-server processes run under ``benchmarks/memprobe.py``,
which answers a signal with a census): pymalloc blocks, malloc bytes, gc objects; after a
full collection at half the run and at the end, the objects by type and the cycles that died
frozen (see :mod:`kvrepl.gc_policy`). ``SOAK_CENSUS_OUT=file.json`` keeps those censuses.

At the end (writer stopped, WAIT, every offset caught up): every DEBUG DIGEST must equal the
master's and every slot's last acknowledged ledger write must be on every replica (every
acknowledged write when the run did not wrap the ledger). Prints the figures and
exits 1 if any check fails. ``SOAK_SECONDS`` sets the duration (default 180).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import kvrepl  # noqa: E402
from benchmarks import memprobe  # noqa: E402
from benchmarks.common import (  # noqa: E402
    HOST,
    Connection,
    ReplyError,
    binary,
    encode_request,
    free_port,
    log,
    python_env,
    stop_process,
)

TICK = 0.02  # seconds between two pipelines of the writer
POOL = 200  # keys per type the workload rewrites (the dataset stays bounded)
LEDGER_PER_TICK = 3
DEADLINE = 120.0  # the longest any final wait may take
SLOW_PING = 0.005  # PINGs at least this slow are kept one by one
HEAP_EVERY = 5.0  # seconds between two Python-level memory samples of each process
WARM_UP = 0.5  # the fraction of the run after which memory should be flat


# -- processes -------------------------------------------------------------------------------


class Proc:
    """A server process on a fixed port (a restart keeps it: replicas reconnect)."""

    def __init__(self, name: str, argv: list[str], port: int, home: Path) -> None:
        self.name, self.argv, self.port, self.home = name, argv, port, home
        self.proc: subprocess.Popen[bytes] | None = None
        home.mkdir(parents=True, exist_ok=True)

    def start(self) -> Proc:
        with open(self.home / "server.log", "ab") as out:
            self.proc = subprocess.Popen(self.argv, cwd=self.home, env=python_env(),
                                         stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT)
        # generous: on a shared machine at load average 24 a restart once took over 30 s
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {self.home / 'server.log'}")
            try:
                with Connection(self.port, timeout=1) as conn:
                    if conn.command(b"PING") == b"PONG":
                        return self
            except (OSError, ReplyError, ConnectionError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not answer PING")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def rss(self) -> int:
        return rss_of(self.proc.pid) if self.proc and self.proc.poll() is None else 0

    def census(self, collect: bool) -> dict[str, object] | None:
        """The process's :func:`memprobe.census` (kvrepl processes run under memprobe),
        None if it does not answer within a minute (restarting)."""
        out = self.home / "census.json"
        out.unlink(missing_ok=True)
        if self.proc is None or self.proc.poll() is not None:
            return None
        self.proc.send_signal(signal.SIGUSR2 if collect else signal.SIGUSR1)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # a file is the only answer a signal gets
            if out.exists():
                return json.loads(out.read_text())
            time.sleep(0.05)
        return None


rss_of = memprobe.rss_of


def kvrepl_argv(port: int, home: Path, replicaof: int | None = None) -> list[str]:
    """A kvrepl-server's command line, under memprobe (a census on a signal)."""
    argv = [sys.executable, str(Path(memprobe.__file__)), str(home / "census.json"),
            "--port", str(port), "--bind", HOST, "--save", "",
                   "--repl-diskless-sync-delay", "0", "--enable-debug-command", "local"]
    return argv + (["--replicaof", HOST, str(replicaof)] if replicaof else [])


class Embedded(threading.Thread):
    """``kvrepl.Replica(follow=(host, port))`` in this process, on a trio loop of its own,
    serving TCP too so that the checks reach it as they reach the others."""

    def __init__(self, master_port: int) -> None:
        super().__init__(daemon=True)
        self.master_port = master_port
        self.port = 0
        self.ready = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as err:  # reported by the main thread
            self.error = err
            self.ready.set()

    async def _main(self) -> None:
        self.token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as scope:
            self.scope = scope
            async with kvrepl.Replica(follow=(HOST, self.master_port), port=0,
                                      enable_debug_command="local") as replica:
                self.port = replica.port
                self.ready.set()
                await trio.sleep_forever()

    def stop(self) -> None:
        try:
            trio.from_thread.run_sync(self.scope.cancel, trio_token=self.token)
        except trio.RunFinishedError:
            pass
        self.join(10)


# -- the workload ----------------------------------------------------------------------------


def workload_commands(rng: random.Random) -> list[tuple[bytes, ...]]:
    """One tick's writes: a few commands over every type, on a bounded pool of keys, each
    value bounded too (a set's members, an appended string's length), so that the dataset
    stops growing once the pool is full and memory flatness can be read."""
    k = rng.randrange(POOL)
    n = rng.randrange(1000)
    v = b"%d" % n
    member = b"m%d" % rng.randrange(50)
    return [
        (b"SET", b"str:%d" % k, b"v" * rng.randrange(1, 200)),
        (b"INCRBY", b"cnt:%d" % k, v),
        (b"APPEND", b"app:%d" % (k % 20), b"x"),
        (b"SET", b"ttl:%d" % k, v, b"EX", b"100000"),
        (b"RPUSH", b"list:%d" % k, v, v),
        (b"LTRIM", b"list:%d" % k, b"-20", b"-1"),
        (b"LPOP", b"list:%d" % ((k + 1) % POOL)),
        (b"HSET", b"hash:%d" % k, member, v),
        (b"HINCRBY", b"hash:%d" % k, b"n", b"1"),
        (b"HDEL", b"hash:%d" % k, b"m%d" % rng.randrange(50)),
        (b"SADD", b"set:%d" % k, member, b"n%d" % (n % 50)),
        (b"SREM", b"set:%d" % k, b"m%d" % rng.randrange(50)),
        (b"ZADD", b"zset:%d" % k, v, member),
        (b"ZINCRBY", b"zset:%d" % k, b"1.5", member),
        (b"ZREMRANGEBYRANK", b"zset:%d" % k, b"0", b"-40"),
        (b"XADD", b"stream:%d" % (k % 20), b"MAXLEN", b"~", b"100", b"*", b"f", v),
        (b"PFADD", b"hll:%d" % (k % 20), b"e%d" % rng.randrange(100_000)),
        (b"SETBIT", b"bits:%d" % (k % 20), b"%d" % rng.randrange(4096), b"1"),
        (b"GEOADD", b"geo:%d" % (k % 20), b"%.5f" % rng.uniform(-170, 170),
         b"%.5f" % rng.uniform(-80, 80), member),
        (b"EXPIRE", b"str:%d" % k, b"100000"),
        (b"DEL", b"str:%d" % rng.randrange(POOL)),
    ] + ([(b"DEL", b"app:%d" % (k % 20))] if rng.random() < 0.05 else [])


def prefill_commands(slots: int) -> list[tuple[bytes, ...]]:
    """Every key of the workload at about the size it settles at, written before the clock
    starts: else the dataset grows for most of a run (a set's members and a HyperLogLog's
    registers fill slowly) and a slowly growing process cannot be told from a leak."""
    members = [b"m%d" % i for i in range(50)]
    commands: list[tuple[bytes, ...]] = []
    for k in range(POOL):
        commands += [
            (b"SADD", b"set:%d" % k, *members[:25], *(b"n%d" % i for i in range(50))),
            (b"HSET", b"hash:%d" % k, b"n", b"0", *(x for m in members[:25] for x in (m, b"1"))),
            (b"ZADD", b"zset:%d" % k, *(x for i, m in enumerate(members[:39])
                                        for x in (b"%d" % i, m))),
            (b"RPUSH", b"list:%d" % k, *(b"%d" % i for i in range(20))),
        ]
    for k in range(20):
        commands += [(b"PFADD", b"hll:%d" % k, *(b"e%d" % i for i in range(start, start + 1000)))
                     for start in range(0, 5000, 1000)]  # dense from here on: a fixed size
        commands += [(b"SETBIT", b"bits:%d" % k, b"4095", b"1"),
                     (b"GEOADD", b"geo:%d" % k, *(x for i, m in enumerate(members)
                                                  for x in (b"%d" % (i * 6 - 150), b"10", m)))]
    for start in range(0, slots, 1000):
        commands.append((b"MSET", *(x for n in range(start, min(start + 1000, slots))
                                    for x in (b"ledger:%d" % n, b"prefill"))))
    return commands


@dataclass
class Ledger:
    """Numbered writes the master acknowledged, over a fixed space of keys: the last one of
    each slot must end up on every replica."""

    slots: int
    next_id: int = 0
    acked_count: int = 0
    last: dict[int, int] = field(default_factory=dict)  # slot -> last acknowledged write

    def new(self, count: int) -> list[int]:
        ids = list(range(self.next_id, self.next_id + count))
        self.next_id += count
        return ids

    def ack(self, ids: list[int]) -> None:
        for n in ids:
            self.last[n % self.slots] = n
        self.acked_count += len(ids)

    def key(self, n: int) -> bytes:
        return b"ledger:%d" % (n % self.slots)

    def set(self, n: int) -> tuple[bytes, ...]:
        return (b"SET", self.key(n), b"value-%d" % n)


class Writer(threading.Thread):
    """The steady load: one pipeline per tick, a MULTI/EXEC every fifth."""

    def __init__(self, port: int, stop: threading.Event, seed: int, slots: int) -> None:
        super().__init__(daemon=True)
        self.port, self.stop, self.rng = port, stop, random.Random(seed)
        self.ledger = Ledger(slots)
        self.commands = 0
        self.transactions = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with Connection(self.port, timeout=60) as conn:
                tick = 0
                next_at = time.monotonic()
                while not self.stop.is_set():
                    self._tick(conn, tick)
                    tick += 1
                    next_at += TICK
                    pause = next_at - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                    else:
                        next_at = time.monotonic()  # behind (a DEBUG SLEEP): no catch-up burst
        except BaseException as err:
            self.error = err

    def _tick(self, conn: Connection, tick: int) -> None:
        ids = self.ledger.new(LEDGER_PER_TICK)
        batch = workload_commands(self.rng) + [self.ledger.set(n) for n in ids]
        if tick % 5 == 0:
            batch = [(b"MULTI",), *batch, (b"EXEC",)]
            replies = conn.pipeline(b"".join(encode_request(*c) for c in batch), len(batch))
            results = replies[-1]
            assert isinstance(results, list), results
            self.transactions += 1
            acked = [n for n, r in zip(ids, results[-len(ids):], strict=True) if r == b"OK"]
        else:
            replies = conn.pipeline(b"".join(encode_request(*c) for c in batch), len(batch))
            acked = [n for n, r in zip(ids, replies[-len(ids):], strict=True) if r == b"OK"]
        self.commands += len(batch)
        self.ledger.ack(acked)


class Series:
    """(seconds, value) samples in two C arrays: a list of tuples would grow the soak
    process by ~100 bytes a sample, i.e. the figure it measures would measure the soak."""

    def __init__(self) -> None:
        self.times, self.values = array("d"), array("d")

    def append(self, at: float, value: float) -> None:
        self.times.append(at)
        self.values.append(value)

    def __len__(self) -> int:
        return len(self.times)

    def __iter__(self) -> Iterator[tuple[float, float]]:
        return zip(self.times, self.values, strict=True)

    def __getitem__(self, index: int) -> tuple[float, float]:
        return self.times[index], self.values[index]


class Pinger(threading.Thread):
    """PING the master every 10 ms; the worst latency, and the worst outside DEBUG SLEEPs."""

    def __init__(self, port: int, stop: threading.Event, sleeps: list[tuple[float, float]]
                 ) -> None:
        super().__init__(daemon=True)
        self.port, self.stop, self.sleeps = port, stop, sleeps
        # (sent at, seconds) of the PINGs slower than SLOW_PING, flat in a C array; of the
        # others only the slowest: what grows with the run must stay small, it is measured
        self.samples = array("d")
        self.count = 0
        self.fastest_worst = (0.0, 0.0)

    def run(self) -> None:
        with Connection(self.port, timeout=60) as conn:
            while not self.stop.is_set():
                sent = time.monotonic()
                conn.command(b"PING")
                took = time.monotonic() - sent
                self.count += 1
                if took >= SLOW_PING:
                    self.samples.extend((sent, took))
                elif took > self.fastest_worst[0]:
                    self.fastest_worst = (took, sent)
                time.sleep(0.01)

    def worst(self, outside_sleeps: bool) -> tuple[float, float]:
        """(seconds, sent at) of the slowest PING."""
        worst = self.fastest_worst  # a PING this fast overlapping a DEBUG SLEEP: impossible
        for sent, took in zip(self.samples[::2], self.samples[1::2], strict=True):
            if outside_sleeps and any(start - 0.05 <= sent + took and sent <= end + 0.05
                                      for start, end in self.sleeps):
                continue
            worst = max(worst, (took, sent))
        return worst


# -- faults ----------------------------------------------------------------------------------


class Soak:
    def __init__(self, seconds: float, fault_every: float, seed: int, slots: int) -> None:
        self.seconds, self.fault_every, self.slots = seconds, fault_every, slots
        self.rng = random.Random(seed)
        self.seed = seed
        self.home = Path(tempfile.mkdtemp(prefix="kvrepl-soak-"))
        redis = binary("redis-server")
        if redis is None:
            raise SystemExit("redis-server is not on PATH (run `make redis`)")
        mport, rport, cport, xport = (free_port() for _ in range(4))
        homes = {name: self.home / name for name in ("master", "replica", "chained")}
        self.master = Proc("master", kvrepl_argv(mport, homes["master"]), mport,
                           homes["master"])
        self.replica = Proc("replica-proc", kvrepl_argv(rport, homes["replica"], mport), rport,
                            homes["replica"])
        self.chained = Proc("chained", kvrepl_argv(cport, homes["chained"], rport), cport,
                            homes["chained"])
        self.redis = Proc("redis", [redis, "--port", str(xport), "--bind", HOST, "--save", "",
                                    "--appendonly", "no", "--enable-debug-command", "local",
                                    "--replicaof", HOST, str(mport)], xport,
                          self.home / "redis")
        self.embedded = Embedded(mport)
        self.faults: dict[str, int] = {}
        self.sleeps: list[tuple[float, float]] = []
        self.rss: dict[str, Series] = {}
        self.used: dict[str, Series] = {}
        # every HEAP_EVERY s: allocated blocks, malloc bytes, gc objects (frozen included)
        self.heap: dict[str, tuple[Series, Series, Series]] = {}
        self.collected: dict[str, dict[str, dict[str, Any]]] = {}  # "warm-up"/"end" censuses
        self.fault_log: list[tuple[float, str]] = []
        self.stop = threading.Event()

    def ports(self) -> dict[str, int]:
        return {"replica-proc": self.replica.port, "chained": self.chained.port,
                "embedded": self.embedded.port, "redis": self.redis.port}

    def start(self) -> None:
        self.master.start()
        self.replica.start()
        self.chained.start()
        self.redis.start()
        self.embedded.start()
        self.embedded.ready.wait(30)
        if self.embedded.error is not None:
            raise self.embedded.error

    def prefill(self) -> None:
        """The dataset at its settled size before the clock starts (see prefill_commands);
        a method so that the 200k request objects do not stay alive for the whole run."""
        batch = prefill_commands(self.slots)
        with Connection(self.master.port, timeout=120) as master:
            master.pipeline(b"".join(encode_request(*c) for c in batch), len(batch))

    def close(self) -> None:
        self.stop.set()
        self.embedded.stop()
        for proc in (self.chained, self.replica, self.redis, self.master):
            proc.stop()
        shutil.rmtree(self.home, ignore_errors=True)

    def fault(self) -> str:
        choices = ["kill-replica-links", "kill-master-link", "restart-replica",
                   "bgsave", "debug-sleep", "backlog-overrun"]
        name = self.rng.choice(choices)
        self.faults[name] = self.faults.get(name, 0) + 1
        with Connection(self.master.port, timeout=60) as master:
            if name == "kill-replica-links":
                master.command(b"CLIENT", b"KILL", b"TYPE", b"replica")
            elif name == "kill-master-link":
                port = self.rng.choice([self.replica.port, self.redis.port, self.chained.port,
                                        self.embedded.port])
                with Connection(port, timeout=10) as replica:
                    replica.command(b"CLIENT", b"KILL", b"TYPE", b"master")
            elif name == "restart-replica":
                if self.rng.random() < 0.5:
                    self.replica.kill()
                else:
                    self.replica.stop()
                self.replica.start()
            elif name == "bgsave":
                try:
                    master.command(b"BGSAVE")
                except ReplyError:
                    pass  # one already runs
            elif name == "debug-sleep":
                start = time.monotonic()
                master.command(b"DEBUG", b"SLEEP", b"0.3")
                self.sleeps.append((start, time.monotonic()))
            else:
                self.overrun(master)
        return name

    def overrun(self, master: Connection) -> None:
        """A backlog too small for what replicas miss while their links are down."""
        old = master.command(b"CONFIG", b"GET", b"repl-backlog-size")[1]
        master.command(b"CONFIG", b"SET", b"repl-backlog-size", b"16kb")
        master.command(b"CLIENT", b"KILL", b"TYPE", b"replica")
        value = b"b" * 1024
        burst = b"".join(encode_request(b"SET", b"burst:%d" % i, value) for i in range(2000))
        master.pipeline(burst, 2000)
        master.command(b"CONFIG", b"SET", b"repl-backlog-size", old)

    def sample_rss(self) -> None:
        """RSS of every process, and used_memory (the dataset, as each server counts it)."""
        now = time.monotonic()
        for name, value in (("master", self.master.rss()),
                            ("replica-proc", self.replica.rss()),
                            ("chained", self.chained.rss()), ("redis", self.redis.rss()),
                            ("soak+embedded", rss_of(os.getpid()))):
            if value:
                self.rss.setdefault(name, Series()).append(now, value)
        ports = {"master": self.master.port, **self.ports()}
        for name, port in ports.items():
            try:
                with Connection(port, timeout=5) as conn:
                    used = int(conn.info("memory")["used_memory"])
            except (OSError, ReplyError, ConnectionError, KeyError, ValueError):
                continue  # restarting
            self.used.setdefault(name, Series()).append(now, used)

    def censuses(self, collect: bool) -> dict[str, dict[str, Any]]:
        """:func:`memprobe.census` of every kvrepl process (the soak's own included: its
        embedded replica), by name; a process restarting meanwhile is left out."""
        found = {proc.name: proc.census(collect)
                 for proc in (self.master, self.replica, self.chained)}
        found["soak+embedded"] = memprobe.census(collect)
        return {name: census for name, census in found.items() if census is not None}

    def sample_heap(self) -> None:
        """The Python-level figures of every kvrepl process, beside their RSS."""
        for name, census in self.censuses(False).items():
            now = time.monotonic()
            series = self.heap.setdefault(name, (Series(), Series(), Series()))
            for samples, value in zip(series, (census["allocated_blocks"], census["malloc"],
                                               census["gc_tracked"] + census["gc_frozen"]),
                                      strict=True):
                samples.append(now, value)

    def run(self) -> int:
        self.start()
        self.prefill()
        writer = Writer(self.master.port, self.stop, self.seed, self.slots)
        pinger = Pinger(self.master.port, self.stop, self.sleeps)
        writer.start()
        pinger.start()
        began = self.began = time.monotonic()
        next_fault = began + self.fault_every
        next_rss = next_heap = began
        log(f"soak: {self.seconds:.0f} s, a fault every {self.fault_every:.0f} s, "
            f"seed {self.seed}, in {self.home}")
        while time.monotonic() - began < self.seconds:
            now = time.monotonic()
            if writer.error is not None:
                raise writer.error
            if now >= next_rss:
                self.sample_rss()
                next_rss += 1.0
            if now >= next_heap:
                self.sample_heap()
                next_heap += HEAP_EVERY
            if not self.collected and now - began >= self.seconds * WARM_UP:
                self.collected["warm-up"] = self.censuses(True)
            if now >= next_fault:
                name = self.fault()
                self.fault_log.append((now, name))
                log(f"  {now - began:6.1f} s  fault: {name}")
                next_fault = time.monotonic() + self.fault_every
            time.sleep(0.05)
        self.stop.set()
        writer.join(60)
        pinger.join(60)
        if writer.error is not None:
            raise writer.error
        self.sample_rss()
        self.sample_heap()
        return self.report(writer, pinger, time.monotonic() - began)

    # -- the end -------------------------------------------------------------------------
    def caught_up(self) -> bool:
        """Every replica at its master's offset (the chained one at replica-proc's)."""
        with Connection(self.master.port) as master:
            moff = int(master.info()["master_repl_offset"])
            waited = master.command(b"WAIT", b"3", b"100")
        offsets = {}
        for name, port in self.ports().items():
            with Connection(port) as conn:
                info = conn.info()
                if info.get("master_link_status") != "up":
                    return False
                offsets[name] = int(info["master_repl_offset"])
        return (waited >= 3 and offsets["replica-proc"] == moff and offsets["embedded"] == moff
                and offsets["redis"] == moff and offsets["chained"] == offsets["replica-proc"])

    def report(self, writer: Writer, pinger: Pinger, elapsed: float) -> int:
        deadline = time.monotonic() + DEADLINE
        while not self.caught_up():
            if time.monotonic() > deadline:
                log("soak: the replicas did not catch up")
                break
            time.sleep(0.1)
        failures = []
        self.collected["end"] = self.censuses(True)
        with Connection(self.master.port) as master:
            digest = master.command(b"DEBUG", b"DIGEST")
            stats = master.info("stats")
            dbsize = master.command(b"DBSIZE")
        digests = {}
        for name, port in self.ports().items():
            with Connection(port) as conn:
                digests[name] = conn.command(b"DEBUG", b"DIGEST")
            if digests[name] != digest:
                failures.append(f"{name}: digest {digests[name]!r} != master's {digest!r}")
        ledger = writer.ledger
        acked = sorted(ledger.last.values())
        missing: dict[str, int] = {}
        for name, port in self.ports().items():
            lost = 0
            with Connection(port) as conn:
                for start in range(0, len(acked), 1000):
                    ids = acked[start:start + 1000]
                    keys = [ledger.key(n) for n in ids]
                    values = conn.command(b"MGET", *keys)
                    lost += sum(1 for n, value in zip(ids, values, strict=True)
                                if value != b"value-%d" % n)
            missing[name] = lost
            if lost:
                failures.append(f"{name}: {lost} acknowledged writes missing")
        with Connection(self.replica.port) as mid:
            chained_stats = mid.info("stats")
        self.print_figures(elapsed, writer, pinger, stats, chained_stats, dbsize, digest,
                           missing)
        for failure in failures:
            print("FAIL:", failure)
        print("RESULT:", "FAIL" if failures else "PASS")
        return 1 if failures else 0

    def print_figures(self, elapsed: float, writer: Writer, pinger: Pinger,
                      stats: dict[str, str], chained_stats: dict[str, str], dbsize: object,
                      digest: object, missing: dict[str, int]) -> None:
        print(f"duration: {elapsed:.0f} s; writer: {writer.commands} commands "
              f"({writer.commands / elapsed:.0f}/s), {writer.transactions} MULTI/EXEC; "
              f"master DBSIZE {dbsize}")
        print("faults: " + ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items())))
        print(f"master resyncs: sync_full {stats['sync_full']}, sync_partial_ok "
              f"{stats['sync_partial_ok']}, sync_partial_err {stats['sync_partial_err']}; "
              f"replica-proc (chained's master): sync_full {chained_stats['sync_full']}, "
              f"sync_partial_ok {chained_stats['sync_partial_ok']}")
        took, sent = pinger.worst(True)
        before = [name for at, name in self.fault_log if at <= sent]
        print(f"master PING: {pinger.count} pings, worst "
              f"{pinger.worst(False)[0] * 1000:.1f} ms; worst outside DEBUG SLEEPs "
              f"{took * 1000:.1f} ms, {sent - self.began:.0f} s into the run"
              + (f", after a {before[-1]} {sent - self.fault_log[len(before) - 1][0]:.1f} s "
                 "earlier" if before else ""))
        print(f"digests: all equal to the master's {digest!r}"
              if not any(missing.values()) else "digests: see FAIL lines")
        ledger = writer.ledger
        checked = len(ledger.last)
        print(f"ledger: {ledger.acked_count} acknowledged writes over {ledger.slots} keys; "
              f"checked {checked} (each key's last"
              + (", i.e. every write)" if checked == ledger.acked_count else ")")
              + "; missing: " + ", ".join(f"{k} {v}" for k, v in missing.items()))
        print("MB after 25% of the run / at the end / peak after warm-up: RSS; used_memory")
        for name, series in self.rss.items():
            cells = []
            for samples in (series, self.used.get("embedded" if name == "soak+embedded"
                                                  else name, Series())):
                if not samples:
                    continue
                warm = [v for t, v in samples if t - self.began >= elapsed * 0.25]
                warm = warm or [samples[-1][1]]
                cells.append(f"{warm[0] / 2**20:6.1f} {samples[-1][1] / 2**20:6.1f} "
                             f"{max(warm) / 2**20:6.1f}")
            print(f"  {name:14s} " + ";  ".join(cells))
        print("MB over time (tenths of the run), RSS / used_memory:")
        for name, series in self.rss.items():
            used = self.used.get("embedded" if name == "soak+embedded" else name, Series())
            cells = [f"{at_fraction(series, self.began, elapsed, f) / 2**20:.0f}/"
                     f"{at_fraction(used, self.began, elapsed, f) / 2**20:.1f}"
                     for f in (i / 10 for i in range(11))]
            print(f"  {name:14s} " + " ".join(cells))
        self.print_heap(elapsed)
        if os.environ.get("SOAK_CENSUS_OUT"):
            Path(os.environ["SOAK_CENSUS_OUT"]).write_text(json.dumps(self.collected, indent=1))

    def print_heap(self, elapsed: float) -> None:
        """Python-level memory: the censuses at warm-up and at the end, what changed, and
        the slopes over the last part of the run (what "flat" means in numbers)."""
        warm, end = self.collected.get("warm-up", {}), self.collected.get("end", {})
        print(f"Python memory after {WARM_UP:.0%} of the run -> at the end, each after a full "
              "collection: pymalloc blocks (k); malloc MB; gc objects (k), frozen included; "
              "frozen cycles found dead (a leak of the gc freeze policy)")
        for name, last in end.items():
            first = warm.get(name)
            if first is None:
                continue
            note = "  (another process: restarted)" if first["pid"] != last["pid"] else ""
            print(f"  {name:14s} " + ";  ".join(
                f"{fmt(first)} -> {fmt(last)}" for fmt in (
                    lambda c: f"{c['allocated_blocks'] / 1000:.1f}",
                    lambda c: f"{c['malloc'] / 2**20:.1f}",
                    lambda c: f"{(c['gc_tracked'] + c['gc_frozen']) / 1000:.1f}",
                    lambda c: f"{c['frozen_garbage']}")) + note)
            grown = type_changes(first["types"], last["types"])
            if grown and not note:
                print(f"  {'':14s} objects by type: " + ", ".join(grown))
            if last["frozen_garbage"]:
                print(f"  {'':14s} dead frozen cycles at the end: " + ", ".join(
                    f"{count} {name}" for name, count in last["frozen_garbage_types"][:8]))
        print(f"slope over the last {1 - WARM_UP:.0%} of the run (least squares), per 10 "
              "minutes: RSS MB; pymalloc blocks (k); malloc MB; gc objects (k)")
        since = self.began + elapsed * WARM_UP
        for name, series in self.heap.items():
            columns = [[(t, v / scale) for t, v in samples if t >= since] for samples, scale
                       in zip((self.rss.get(name, Series()), *series), (2**20, 1000, 2**20, 1000),
                              strict=True)]
            print(f"  {name:14s} " + ";  ".join(
                f"{slope(points) * 600:+.2f}" for points in columns))


def type_changes(before: list[list[Any]], after: list[list[Any]], top: int = 6) -> list[str]:
    """The largest changes in object counts by type between two censuses' top lists."""
    was, now = dict(before), dict(after)
    changes = {name: now.get(name, 0) - was.get(name, 0) for name in {*was, *now}}
    ranked = sorted(changes.items(), key=lambda item: -abs(item[1]))[:top]
    return [f"{change:+d} {name}" for name, change in ranked if change]


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per second (0 below two points)."""
    if len(points) < 2:
        return 0.0
    mean_t = sum(t for t, _ in points) / len(points)
    mean_v = sum(v for _, v in points) / len(points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / spread if spread else 0.0


def at_fraction(samples: Series, began: float, elapsed: float, fraction: float) -> float:
    """The sample nearest ``fraction`` of the run (0 when there is none)."""
    if not samples:
        return 0
    at = began + elapsed * fraction
    return min(samples, key=lambda sample: abs(sample[0] - at))[1]


def main() -> int:
    seconds = float(os.environ.get("SOAK_SECONDS", "180"))
    fault_every = float(os.environ.get("SOAK_FAULT_EVERY", "4"))
    seed = int(os.environ.get("SOAK_SEED", str(random.randrange(1 << 30))))
    slots = int(os.environ.get("SOAK_LEDGER_SLOTS", "30000"))
    soak = Soak(seconds, fault_every, seed, slots)
    try:
        return soak.run()
    finally:
        soak.close()


if __name__ == "__main__":
    sys.exit(main())
