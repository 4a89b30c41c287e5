"""RDB files: kvrepl's reader and writer beside rdbtools and redis-server 7.0.

The input files are written by a real redis-server (``SAVE``), so every reader parses the same
bytes:

* ``strings``: ``DEBUG POPULATE <N> key 16`` (1M keys, 100k with --quick): short string keys
  with 16-byte values, RDB type 0.
* ``hash`` / ``list`` / ``set`` / ``zset``: 100 keys (20 with --quick) of 1,000 elements each,
  filled by pipelined HSET / RPUSH / SADD / ZADD; 16-byte members. At that size Redis 7.0
  saves them as HASH (4), QUICKLIST_2 of LZF-compressed listpacks (18), SET (2) and
  ZSET_2 (5).

Load (rate = keys/s for strings, elements/s for collections):

* kvrepl: ``kvrepl.rdb.load_into(Keyspace(), file)`` into a fresh keyspace.
* rdbtools 0.1.15: ``RdbParser(callback).parse(path)`` with a callback that builds the same
  dicts / sets / lists (the work a loader does). rdbtools refuses RDB versions above 9 in
  ``RdbParser.verify_version``; it is forced past that gate by replacing the method on the
  parser instance (the in-process equivalent of patching the header's ``0010`` to ``0009``,
  the workaround users report in sripathikrishnan/redis-rdb-tools#185). It still knows no
  type above 15, so a Redis 7.0 list (QUICKLIST_2, type 18) is out of its reach.
* redis-server: ``FLUSHALL``, the input copied to its ``dump.rdb``, then ``DEBUG RELOAD
  NOSAVE`` timed (the empty dataset is dropped, the file loaded).
* kvrepl server (``python -m kvrepl``): the same ``DEBUG RELOAD NOSAVE``.

Write:

* kvrepl ``dumps``: ``kvrepl.rdb.dumps(keyspace)`` to bytes (serialization only).
* kvrepl ``SnapshotJob``: what BGSAVE runs: a point-in-time view of the keyspace serialized in
  2 ms slices inside ``trio.run``, written by a ``FileConsumer`` (temp file, fsync, rename).
* kvrepl server ``SAVE`` and redis-server ``SAVE`` right after each one's reload (temp file,
  fsync, rename for both).

Every contender runs once untimed per dataset, then the rounds alternate them (order rotated
every round); each cell is the median over the rounds. An in-process load of a collection
file is short (~0.1 s): its sample is the mean of ``COLLECTION_LOAD_REPEATS`` loads, and the
kvrepl/rdbtools ratio is also given paired (the median of the per-round ratios).
"""

from __future__ import annotations

import contextlib
import gc
import shutil
import tempfile
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import (
    HOST,
    BenchmarkError,
    Connection,
    Options,
    Server,
    binary,
    encode_request,
    fmt_rate,
    fmt_ratio,
    goal_cell,
    log,
    markdown_table,
    median,
    python_env,
    ratio,
    rotated,
)

TITLE = "RDB: kvrepl load and save beside rdbtools and redis-server"

VALUE_SIZE = 16
STRING_KEYS = (100_000, 1_000_000)  # (--quick, default)
COLLECTION_KEYS = (20, 100)
ELEMENTS = 1_000
COLLECTIONS = ("hash", "list", "set", "zset")
MAX_ROUNDS = 5  # the whole module stays within ~2-3 minutes
#: A collection file loads in ~0.05-0.2 s: each timed sample loads it this many times, so
#: that a moment of contention on the shared machine weighs less.
COLLECTION_LOAD_REPEATS = 5

LOAD_GOAL_VS_RDBTOOLS = 2.0
LOAD_GOAL_RATE = 1_000_000  # keys/s, strings
WRITE_GOAL_RATE = 1_000_000  # keys/s, strings
COMMAND_TIMEOUT = 300.0


@dataclass
class Dataset:
    """One input file, as redis-server saved it."""

    name: str
    keys: int
    items: int  # keys for strings, elements for collections: what the rates count
    path: Path

    @property
    def unit(self) -> str:
        return "keys" if self.name == "strings" else "elements"


# -- filling redis-server and saving the inputs ------------------------------------------------

def _collection_command(kind: str, key: bytes, elements: int) -> list[bytes]:
    """One command that creates ``key`` with ``elements`` 16-byte members."""
    if kind == "hash":
        args = [b"HSET", key]
        for i in range(elements):
            args += [b"field:%010d" % i, b"value:%010d" % i]
    elif kind == "list":
        args = [b"RPUSH", key, *(b"element:%08d" % i for i in range(elements))]
    elif kind == "set":
        args = [b"SADD", key, *(b"member:%09d" % i for i in range(elements))]
    else:
        args = [b"ZADD", key]
        for i in range(elements):
            args += [b"%r" % (i * 0.25), b"member:%09d" % i]
    return args


def _fill(conn: Connection, name: str, keys: int) -> None:
    """Make the dataset ``name`` the only contents of the server on ``conn``."""
    conn.command(b"FLUSHALL")
    if name == "strings":
        conn.command(b"DEBUG", b"POPULATE", b"%d" % keys, b"key", b"%d" % VALUE_SIZE)
    else:
        requests = b"".join(
            encode_request(*_collection_command(name, b"%s:%d" % (name.encode(), k), ELEMENTS))
            for k in range(keys))
        replies = conn.pipeline(requests, keys)
        if replies != [ELEMENTS] * keys:
            raise BenchmarkError(f"filling {name}: unexpected replies {replies[:3]!r}...")
    size = conn.command(b"DBSIZE")
    if size != keys:
        raise BenchmarkError(f"filling {name}: DBSIZE {size}, expected {keys}")


def make_inputs(redis: Server, conn: Connection, inputs: Path, quick: bool) -> list[Dataset]:
    """Fill redis-server with each dataset, SAVE, keep a copy of its dump.rdb."""
    datasets = []
    string_keys = STRING_KEYS[0 if quick else 1]
    collection_keys = COLLECTION_KEYS[0 if quick else 1]
    for name in ("strings", *COLLECTIONS):
        keys = string_keys if name == "strings" else collection_keys
        began = time.perf_counter()
        _fill(conn, name, keys)
        conn.command(b"SAVE")
        path = inputs / f"{name}.rdb"
        shutil.copyfile(redis.workdir / "dump.rdb", path)
        items = keys if name == "strings" else keys * ELEMENTS
        datasets.append(Dataset(name, keys, items, path))
        log(f"[rdb] input {name}: {keys:,} keys, {items:,} {datasets[-1].unit}, "
            f"{path.stat().st_size:,} bytes ({time.perf_counter() - began:.1f}s)")
    conn.command(b"FLUSHALL")
    return datasets


# -- the in-process contenders -----------------------------------------------------------------

def load_repeats(dataset: Dataset) -> int:
    """How many loads one timed sample of ``dataset`` makes."""
    return 1 if dataset.name == "strings" else COLLECTION_LOAD_REPEATS


def kvrepl_load(dataset: Dataset, repeats: int = 1) -> tuple[float, Any]:
    """Seconds per ``load_into`` of the file into a fresh keyspace (the mean of
    ``repeats``), and the last keyspace."""
    from kvrepl.rdb import load_into
    from kvrepl.store.database import Keyspace

    seconds = 0.0
    for _ in range(repeats):
        keyspace = Keyspace()
        began = time.perf_counter()
        with open(dataset.path, "rb") as source:
            result = load_into(keyspace, source, drop_expired=True)
        seconds += time.perf_counter() - began
    seconds /= repeats
    if result.keys_loaded != dataset.keys:
        raise BenchmarkError(f"kvrepl loaded {result.keys_loaded:,} keys of {dataset.name}, "
                             f"expected {dataset.keys:,}")
    _check_elements("kvrepl", dataset, keyspace.dbs[0].data)
    return seconds, keyspace


def _check_elements(who: str, dataset: Dataset, data: dict) -> None:
    if dataset.name == "strings":
        return
    value = next(iter(data.values()))
    if len(value) != ELEMENTS:
        raise BenchmarkError(f"{who}: a {dataset.name} key came back with {len(value)} "
                             f"elements, expected {ELEMENTS}")


def _rdbtools_callback_class() -> type:
    """An rdbtools callback that builds the dataset in dicts, sets, lists (a loader's work)."""
    from rdbtools import RdbCallback

    class DictCallback(RdbCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(None)
            self.data: dict[bytes, object] = {}
            self.expires: dict[bytes, object] = {}
            self._value: Any = None

        def _new(self, key: bytes, value: object, expiry: object) -> None:
            self.data[key] = self._value = value
            if expiry is not None:
                self.expires[key] = expiry

        def set(self, key: bytes, value: object, expiry: object, info: object) -> None:
            self._new(key, value, expiry)

        def start_hash(self, key: bytes, length: int, expiry: object, info: object) -> None:
            self._new(key, {}, expiry)

        def hset(self, key: bytes, field: bytes, value: bytes) -> None:
            self._value[field] = value

        def start_set(self, key: bytes, cardinality: int, expiry: object,
                      info: object) -> None:
            self._new(key, set(), expiry)

        def sadd(self, key: bytes, member: bytes) -> None:
            self._value.add(member)

        def start_list(self, key: bytes, expiry: object, info: object) -> None:
            self._new(key, deque(), expiry)

        def rpush(self, key: bytes, value: bytes) -> None:
            self._value.append(value)

        def start_sorted_set(self, key: bytes, length: int, expiry: object,
                             info: object) -> None:
            self._new(key, {}, expiry)

        def zadd(self, key: bytes, score: float, member: bytes) -> None:
            self._value[member] = score

    return DictCallback


def rdbtools_parser(callback: object) -> Any:
    """An rdbtools parser forced past its version gate (it accepts RDB 1-9 only)."""
    from rdbtools import RdbParser

    parser = RdbParser(callback)

    def verify_version(version_str: bytes) -> None:
        # What RdbParser.verify_version does, minus the `version > 9` refusal.
        parser._rdb_version = int(version_str)

    parser.verify_version = verify_version
    return parser


def rdbtools_load(dataset: Dataset, callback_class: type,
                  repeats: int = 1) -> tuple[float, dict]:
    """Seconds for rdbtools to parse the file into dicts (the mean of ``repeats``), and the
    last dicts."""
    seconds = 0.0
    for _ in range(repeats):
        callback = callback_class()
        parser = rdbtools_parser(callback)
        began = time.perf_counter()
        parser.parse(str(dataset.path))
        seconds += time.perf_counter() - began
    seconds /= repeats
    if len(callback.data) != dataset.keys:
        raise BenchmarkError(f"rdbtools parsed {len(callback.data):,} keys of {dataset.name}, "
                             f"expected {dataset.keys:,}")
    _check_elements("rdbtools", dataset, callback.data)
    return seconds, callback.data


def kvrepl_dumps(keyspace: Any) -> tuple[float, int]:
    """Seconds for ``dumps(keyspace)``, and the bytes produced."""
    from kvrepl.rdb import dumps

    began = time.perf_counter()
    data = dumps(keyspace)
    return time.perf_counter() - began, len(data)


def kvrepl_snapshot(keyspace: Any, path: Path) -> tuple[float, int]:
    """Seconds for a SnapshotJob with a FileConsumer to write ``path`` (BGSAVE's path), and
    the bytes written."""
    import trio

    from kvrepl.persistence import DONE, FileConsumer, SnapshotJob

    job = SnapshotJob(keyspace)
    job.add_consumer(FileConsumer(str(path)))

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            job.start(nursery)

    began = time.perf_counter()
    trio.run(main)
    seconds = time.perf_counter() - began
    if job.status != DONE:
        raise BenchmarkError(f"SnapshotJob ended {job.status}: {job.error!r}")
    size = path.stat().st_size
    path.unlink()
    return seconds, size


# -- the servers -------------------------------------------------------------------------------

def redis_command(redis: str) -> Callable[[int], list[str]]:
    """redis-server with DEBUG enabled, no save points, no AOF, files in its cwd."""
    def command(port: int) -> list[str]:
        return [redis, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
                "--enable-debug-command", "yes", "--dir", ".", "--dbfilename", "dump.rdb"]
    return command


def kvrepl_command(options: Options) -> Callable[[int], list[str]]:
    """``python -m kvrepl`` with no save points, files in its cwd."""
    def command(port: int) -> list[str]:
        return [options.python, "-m", "kvrepl", "--port", str(port), "--bind", HOST,
                "--save", "", "--dir", ".", "--dbfilename", "dump.rdb",
                "--enable-debug-command", "yes"]
    return command


def server_reload_and_save(server: Server, conn: Connection, dataset: Dataset,
                           save: bool = True) -> tuple[float, float]:
    """Seconds for ``DEBUG RELOAD NOSAVE`` of the dataset's file into an empty server, then
    for ``SAVE`` of what it loaded (NaN when not asked)."""
    conn.command(b"FLUSHALL")
    shutil.copyfile(dataset.path, server.workdir / "dump.rdb")
    began = time.perf_counter()
    reply = conn.command(b"DEBUG", b"RELOAD", b"NOSAVE")
    loaded = time.perf_counter() - began
    if reply != b"OK":
        raise BenchmarkError(f"{server.name}: DEBUG RELOAD NOSAVE replied {reply!r}")
    size = conn.command(b"DBSIZE")
    if size != dataset.keys:
        raise BenchmarkError(f"{server.name}: DBSIZE {size} after loading {dataset.name}, "
                             f"expected {dataset.keys}")
    saved = float("nan")
    if save:
        began = time.perf_counter()
        reply = conn.command(b"SAVE")
        saved = time.perf_counter() - began
        if reply != b"OK":
            raise BenchmarkError(f"{server.name}: SAVE replied {reply!r}")
    return loaded, saved


@contextlib.contextmanager
def started(servers: list[Server]) -> Iterator[dict[str, Connection]]:
    """Start the servers and a connection to each; stop everything on the way out."""
    conns: dict[str, Connection] = {}
    try:
        for server in servers:
            server.start()
            conns[server.name] = Connection(server.port, timeout=COMMAND_TIMEOUT)
        yield conns
    finally:
        for conn in conns.values():
            conn.close()
        for server in servers:
            with contextlib.suppress(Exception):
                server.stop()


# -- the benchmark -----------------------------------------------------------------------------

def _fmt_goal_rate(value: float, goal: float) -> str:
    if value != value:
        return f">= {goal:,.0f}/s: n/a"
    return f">= {goal:,.0f}/s: {'met' if value >= goal else 'NOT met'}"


def _versions() -> tuple[str, bool]:
    try:
        from importlib.metadata import version

        rdbtools_version = version("rdbtools")
    except Exception:  # noqa: BLE001 - not installed, or no metadata
        rdbtools_version = "not installed"
    from kvrepl.rdb import lzf

    return rdbtools_version, lzf.USING_EXTENSION


def run(options: Options) -> str:
    """Run the RDB benchmark and return its markdown section."""
    redis = binary("redis-server")
    if redis is None:
        raise BenchmarkError("redis-server is not on PATH (run `make redis`)")
    rounds = min(options.rounds, MAX_ROUNDS)
    rdbtools_version, lzf_extension = _versions()
    try:
        callback_class: type | None = _rdbtools_callback_class()
    except ImportError:
        callback_class = None
        log("[rdb] rdbtools is not installed: its column is n/a")

    results: dict[tuple[str, str], list[float]] = defaultdict(list)
    sizes: dict[tuple[str, str], int] = {}
    notes: list[str] = []
    unsupported: dict[str, str] = {}  # dataset -> why rdbtools can't read it

    with tempfile.TemporaryDirectory(prefix="kvrepl-bench-rdb-") as tmp:
        workdir = Path(tmp)
        for sub in ("inputs", "out", "redis", "kvrepl-server"):
            (workdir / sub).mkdir()
        servers = [Server("redis", redis_command(redis), workdir / "redis"),
                   Server("kvrepl-server", kvrepl_command(options), workdir / "kvrepl-server",
                          env=python_env())]
        with started(servers) as conns:
            log("[rdb] writing the input files with redis-server")
            datasets = make_inputs(servers[0], conns["redis"], workdir / "inputs",
                                   options.quick)
            for dataset in datasets:
                sizes["input", dataset.name] = dataset.path.stat().st_size
            loaded: dict[str, Any] = {}  # dataset -> a kvrepl keyspace holding it (writes)
            out = workdir / "out" / "snapshot.rdb"

            def load_kvrepl(dataset: Dataset) -> str:
                seconds, keyspace = kvrepl_load(dataset, load_repeats(dataset))
                results["load kvrepl", dataset.name].append(dataset.items / seconds)
                del keyspace
                return f"load_into {dataset.items / seconds:>11,.0f}/s"

            def load_rdbtools(dataset: Dataset) -> str:
                if callback_class is None or dataset.name in unsupported:
                    return "rdbtools n/a"
                try:
                    seconds, data = rdbtools_load(dataset, callback_class,
                                                  load_repeats(dataset))
                except BenchmarkError:
                    raise
                except Exception as err:  # noqa: BLE001 - rdbtools raises bare Exception
                    raise BenchmarkError(f"rdbtools failed on {dataset.name}: {err}") from err
                results["load rdbtools", dataset.name].append(dataset.items / seconds)
                del data
                return f"rdbtools {dataset.items / seconds:>11,.0f}/s"

            def on_server(name: str) -> Callable[[Dataset], str]:
                server = next(s for s in servers if s.name == name)

                def measure(dataset: Dataset) -> str:
                    load, save = server_reload_and_save(server, conns[name], dataset)
                    results[f"load {name}", dataset.name].append(dataset.items / load)
                    results[f"save {name}", dataset.name].append(dataset.items / save)
                    sizes[name, dataset.name] = (server.workdir / "dump.rdb").stat().st_size
                    return (f"{name} RELOAD {dataset.items / load:>11,.0f}/s "
                            f"SAVE {dataset.items / save:>11,.0f}/s")
                return measure

            def write_dumps(dataset: Dataset) -> str:
                seconds, size = kvrepl_dumps(loaded[dataset.name])
                results["save dumps", dataset.name].append(dataset.items / seconds)
                sizes["dumps", dataset.name] = size
                return f"dumps {dataset.items / seconds:>11,.0f}/s"

            def write_snapshot(dataset: Dataset) -> str:
                seconds, size = kvrepl_snapshot(loaded[dataset.name], out)
                results["save snapshot", dataset.name].append(dataset.items / seconds)
                sizes["snapshot", dataset.name] = size
                return f"SnapshotJob {dataset.items / seconds:>11,.0f}/s"

            jobs: dict[str, Callable[[Dataset], str]] = {
                "kvrepl load_into": load_kvrepl,
                "rdbtools": load_rdbtools,
                "redis-server": on_server("redis"),
                "kvrepl server": on_server("kvrepl-server"),
                "kvrepl dumps": write_dumps,
                "kvrepl SnapshotJob": write_snapshot,
            }

            # Untimed warm-up: imports and first-call costs; the keyspaces the writers use;
            # which files rdbtools can read at all.
            for dataset in datasets:
                _, loaded[dataset.name] = kvrepl_load(dataset)
                if callback_class is not None:
                    try:
                        rdbtools_load(dataset, callback_class)
                    except Exception as err:  # noqa: BLE001 - rdbtools raises bare Exception
                        unsupported[dataset.name] = " ".join(map(str, err.args)) or repr(err)
                        log(f"[rdb] rdbtools cannot read {dataset.name}: "
                            f"{unsupported[dataset.name]}")
                for name in ("redis", "kvrepl-server"):
                    server = next(s for s in servers if s.name == name)
                    server_reload_and_save(server, conns[name], dataset, save=False)
                gc.collect()

            names = list(jobs)
            for round_number in range(rounds):
                for dataset in datasets:
                    for name in rotated(names, round_number):
                        gc.collect()  # the previous contender's garbage is not this one's cost
                        line = jobs[name](dataset)
                        log(f"[rdb] round {round_number + 1}/{rounds} {dataset.name:7s} "
                            f"{line}")
            loaded.clear()

    return _report(options, rounds, datasets, results, sizes, notes, unsupported,
                   rdbtools_version, lzf_extension)


def _report(options: Options, rounds: int, datasets: list[Dataset],
            results: dict[tuple[str, str], list[float]], sizes: dict[tuple[str, str], int],
            notes: list[str], unsupported: dict[str, str], rdbtools_version: str,
            lzf_extension: bool) -> str:
    def med(what: str, dataset: Dataset) -> float:
        return median(results.get((what, dataset.name), []))

    def paired(what: str, versus: str, dataset: Dataset) -> float:
        # Round by round (the two ran back to back): steadier than a ratio of medians when
        # the machine's load drifts during the run.
        pairs = zip(results.get((what, dataset.name), []),
                    results.get((versus, dataset.name), []), strict=False)
        return median([ratio(a, b) for a, b in pairs])

    load_rows = []
    save_rows = []
    for dataset in datasets:
        kv, rt, rd, ks = (med(f"load {who}", dataset)
                          for who in ("kvrepl", "rdbtools", "redis", "kvrepl-server"))
        kv_rt_paired = paired("load kvrepl", "load rdbtools", dataset)
        goal = goal_cell(ratio(kv, rt), LOAD_GOAL_VS_RDBTOOLS)
        if dataset.name == "strings":
            goal += "; " + _fmt_goal_rate(kv, LOAD_GOAL_RATE)
        load_rows.append([
            dataset.name, f"{dataset.items:,} {dataset.unit}", fmt_rate(kv), fmt_rate(rt),
            fmt_rate(rd), fmt_rate(ks), fmt_ratio(ratio(kv, rt)), fmt_ratio(kv_rt_paired),
            fmt_ratio(ratio(kv, rd)), fmt_ratio(ratio(ks, rd)), goal])
        du, sn, kss, rds = (med(f"save {who}", dataset)
                            for who in ("dumps", "snapshot", "kvrepl-server", "redis"))
        save_goal = (_fmt_goal_rate(du, WRITE_GOAL_RATE) + " (dumps), "
                     + _fmt_goal_rate(sn, WRITE_GOAL_RATE).split(": ")[1] + " (SnapshotJob)"
                     if dataset.name == "strings" else "")
        save_rows.append([
            dataset.name, f"{dataset.items:,} {dataset.unit}", fmt_rate(du), fmt_rate(sn),
            fmt_rate(kss), fmt_rate(rds), fmt_ratio(ratio(du, rds)), fmt_ratio(ratio(sn, rds)),
            fmt_ratio(ratio(kss, rds)), save_goal])

    def seconds(what: str) -> str:
        rate = med(what, datasets[0])
        return "n/a" if rate != rate else f"{datasets[0].items / rate:.2f} s"

    strings_seconds = (
        f"`strings` medians in seconds: load_into {seconds('load kvrepl')}, rdbtools "
        f"{seconds('load rdbtools')}, redis DEBUG RELOAD {seconds('load redis')}, kvrepl "
        f"server DEBUG RELOAD {seconds('load kvrepl-server')}; dumps {seconds('save dumps')}, "
        f"SnapshotJob {seconds('save snapshot')}, kvrepl server SAVE "
        f"{seconds('save kvrepl-server')}, redis SAVE {seconds('save redis')}.")
    size_lines = []
    for dataset in datasets:
        parts = [f"{who} {sizes[who, dataset.name]:,}"
                 for who in ("input", "redis", "dumps", "snapshot", "kvrepl-server")
                 if (who, dataset.name) in sizes]
        size_lines.append(f"{dataset.name}: " + ", ".join(parts))

    lzf_text = ("yes" if lzf_extension else "NO (kvrepl writes strings uncompressed and "
                "decompresses lists in pure Python)")
    strings = datasets[0]
    collection_keys = datasets[1].keys
    text = [
        f"## {TITLE}",
        "",
        f"Inputs saved by redis-server 7.0 (RDB 10): `strings` = `DEBUG POPULATE "
        f"{strings.keys} key {VALUE_SIZE}`; `hash` / `list` / `set` / `zset` = "
        f"{collection_keys} keys of {ELEMENTS:,} {VALUE_SIZE}-byte elements each. Rates are "
        f"keys/s for strings and elements/s for collections; median of {rounds} rounds, "
        "contenders alternated (order rotated every round).",
        "",
        "### Load",
        "",
        markdown_table(["dataset", "N", "kvrepl load_into /s", "rdbtools /s",
                        "redis DEBUG RELOAD /s", "kvrepl server DEBUG RELOAD /s",
                        "kvrepl/rdbtools", "kvrepl/rdbtools paired", "kvrepl/redis",
                        "kvrepl server/redis",
                        "goal (kvrepl/rdbtools; kvrepl rate)"], load_rows),
        "",
        "`load_into`: `kvrepl.rdb.load_into(Keyspace(), open(file, 'rb'))`. Collections: "
        f"each timed sample is the mean of {COLLECTION_LOAD_REPEATS} loads (kvrepl and "
        "rdbtools alike). `paired`: the median over rounds of each round's kvrepl/rdbtools "
        "(they run back to back), steadier than the ratio of the medians on a busy machine. "
        "rdbtools: "
        f"rdbtools {rdbtools_version}, `RdbParser(callback).parse(file)` with a callback that "
        "builds dicts / sets / deques; **forced past its RDB-version gate** (it refuses "
        "versions > 9) by replacing `verify_version` on the parser instance with one that "
        "only records the version. DEBUG RELOAD: `FLUSHALL` (untimed), the input copied to "
        "the server's dump.rdb (untimed), then `DEBUG RELOAD NOSAVE` timed from the client. "
        "kvrepl builds what its commands use (a zset is a dict plus a SortedList by score; a "
        "list a deque of every element), where the rdbtools callback builds a plain dict for "
        "a zset, and redis-server keeps a list's listpack nodes as they are in the file.",
        "",
        "### Write",
        "",
        markdown_table(["dataset", "N", "kvrepl dumps /s", "kvrepl SnapshotJob /s",
                        "kvrepl server SAVE /s", "redis SAVE /s", "dumps/redis",
                        "SnapshotJob/redis", "kvrepl server/redis", "goal (kvrepl rate)"],
                       save_rows),
        "",
        "`dumps`: `kvrepl.rdb.dumps(keyspace)` to bytes, no I/O. `SnapshotJob`: BGSAVE's "
        "machinery in `trio.run` (view of the keyspace, 2 ms slices, `FileConsumer`: temp "
        "file, fsync, rename). `SAVE`: each server's synchronous save of the data it just "
        "loaded (temp file, fsync, rename), timed from the client.",
        "",
        strings_seconds,
        "",
        "File sizes in bytes (input = redis's file all the readers parse): "
        + "; ".join(size_lines) + ".",
        "",
        f"python-lzf C extension: {lzf_text}; "
        "in-process contenders run in this process with the garbage collector on "
        "(`gc.collect()` before each run); the servers are subprocesses on 127.0.0.1.",
    ]
    for name, why in sorted(unsupported.items()):
        notes.append(f"rdbtools cannot parse `{name}` ({why}): n/a")
    if options.quick:
        notes.append("--quick: small N, a smoke run, not a measurement")
    if notes:
        text += ["", "Notes:", *(f"- {note}" for note in notes)]
    return "\n".join(text) + "\n"
