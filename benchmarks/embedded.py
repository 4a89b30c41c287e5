"""redis-py's API in-process: ``node.redis().set/get`` against the same redis-py calls over
loopback TCP to a real redis-server, and against fakeredis.FakeRedis.

All three contenders are a ``redis.Redis``-shaped client driven by the same loop (bound
method, one call per key), so the difference is what is behind the client: kvrepl's engine
in-process (no socket, replies parsed by redis-py's own parser), a socket round trip to
redis-server, fakeredis's Python server. The node's own direct methods (``node.set/get``)
are listed for reference. SET inserts N distinct keys into a fresh store, GET reads them
back; in each round the contenders are interleaved part by part in a random order (a burst
of load on the shared host falls on all of them alike), each cell is the median.
"""

from __future__ import annotations

import contextlib
import gc
import random
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from benchmarks.common import (
    Options,
    Server,
    binary,
    fmt_rate,
    fmt_ratio,
    goal_cell,
    log,
    markdown_table,
    median,
    ratio,
    running,
)

TITLE = "Embedded redis-py: node.redis() vs redis-py over TCP to redis-server vs fakeredis"

VALUE = b"xxx"
GOAL_VS_TCP = 3.0
GOAL_VS_FAKEREDIS = 20.0
PARTS = 10  # per round and test: contenders interleaved part by part

Store = object
Maker = Callable[[], contextlib.AbstractContextManager[Store]]


def _set_all(store: Store, keys: Sequence[bytes]) -> float:
    set_ = store.set  # type: ignore[attr-defined]
    start = time.perf_counter()
    for key in keys:
        set_(key, VALUE)
    return len(keys) / (time.perf_counter() - start)


def _get_all(store: Store, keys: Sequence[bytes]) -> float:
    get = store.get  # type: ignore[attr-defined]
    start = time.perf_counter()
    for key in keys:
        get(key)
    return len(keys) / (time.perf_counter() - start)


def run(options: Options) -> str:
    """Run the benchmark and return its markdown section."""
    import trio

    return trio.run(_run, options)


async def _run(options: Options) -> str:
    import redis

    import kvrepl

    fast, slow = (5_000, 1_000) if options.quick else (50_000, 5_000)
    makers: dict[str, tuple[Maker, int]] = {}
    notes: list[str] = []

    async with contextlib.AsyncExitStack() as stack:
        # node.set/get writes the same keys in the same round: a node of its own.
        other = await stack.enter_async_context(kvrepl.Master())
        node = kvrepl.Master()
        async with node:

            @contextlib.contextmanager
            def in_process() -> Iterator[Store]:
                node.flushall()
                client = node.redis()
                yield client
                client.close()

            @contextlib.contextmanager
            def direct() -> Iterator[Store]:
                other.flushall()
                yield other

            makers["node.redis()"] = (in_process, fast)
            redis_server = binary("redis-server")
            if redis_server is None:
                notes.append("redis-server is not installed: no TCP contender")
            else:
                workdir = Path(stack.enter_context(
                    tempfile.TemporaryDirectory(prefix="kvrepl-bench-")))
                server = stack.enter_context(running(Server(
                    "redis-server", lambda port: [redis_server, "--port", str(port),
                                                  "--bind", "127.0.0.1", "--save", "",
                                                  "--appendonly", "no"], workdir)))

                @contextlib.contextmanager
                def tcp() -> Iterator[Store]:
                    client = redis.Redis(host="127.0.0.1", port=server.port)
                    client.flushall()
                    yield client
                    client.close()

                makers["redis-py TCP"] = (tcp, slow)
            try:
                import fakeredis
            except ImportError:
                notes.append("fakeredis is not installed (pip install -e '.[bench]')")
            else:
                @contextlib.contextmanager
                def fake() -> Iterator[Store]:
                    yield fakeredis.FakeRedis()

                makers["fakeredis"] = (fake, slow)
            makers["node.set/get"] = (direct, fast)

            class Floor(redis.Redis):
                """redis-py's own code per call: its methods, no connection behind."""

                def execute_command(self, *args: object, **options: object) -> object:
                    return VALUE

            @contextlib.contextmanager
            def floor() -> Iterator[Store]:
                yield Floor()

            makers["redis-py floor"] = (floor, fast)
            results = _measure(makers, options, notes)
    return _report(results, makers, options, notes)


def _measure(makers: dict[str, tuple[Maker, int]], options: Options,
             notes: list[str]) -> dict[tuple[str, str], list[float]]:
    """Each round: a fresh store per contender, then SET and GET of its N keys in PARTS
    parts, the contenders interleaved part by part in a fresh random order, so a burst of
    load on the shared host falls on all of them alike; a contender's rate is its N keys
    over the time of all its parts (every call counted)."""
    names = list(makers)
    all_keys = [b"key:%d" % i for i in range(max(n for _, n in makers.values()))]
    results: dict[tuple[str, str], list[float]] = defaultdict(list)
    for name in names:  # one untimed pass each: imports, connections, first calls
        make, _ = makers[name]
        with make() as store:
            _set_all(store, all_keys[:200])
            _get_all(store, all_keys[:200])
    rng = random.Random(7)
    order = list(names)
    for round_number in range(options.rounds):
        with contextlib.ExitStack() as stack:
            stores = {name: stack.enter_context(makers[name][0]()) for name in names}
            gc.collect()
            for test, run in (("SET", _set_all), ("GET", _get_all)):
                spent = dict.fromkeys(names, 0.0)
                for part in range(PARTS):
                    rng.shuffle(order)
                    for name in order:
                        count = makers[name][1]
                        keys = all_keys[count * part // PARTS:count * (part + 1) // PARTS]
                        spent[name] += len(keys) / run(stores[name], keys)
                for name in names:
                    results[test, name].append(makers[name][1] / spent[name])
            for name in names:
                count = makers[name][1]
                if stores[name].get(all_keys[count - 1]) != VALUE:  # type: ignore[attr-defined]
                    notes.append(f"{name}: GET of the last key did not return the value set")
        log(f"[embedded] round {round_number + 1}/{options.rounds}: " + ", ".join(
            f"{name} SET {results['SET', name][-1]:,.0f}/s GET {results['GET', name][-1]:,.0f}/s"
            for name in names))
    return results


def _report(results: dict[tuple[str, str], list[float]], makers: dict[str, tuple[Maker, int]],
            options: Options, notes: list[str]) -> str:
    headers = ["test", "node.redis() ops/s", "redis-py TCP ops/s", "fakeredis ops/s",
               "node.set/get ops/s", "redis-py floor ops/s", "vs TCP", "goal", "vs fakeredis",
               "goal", "floor vs fakeredis"]
    rows = []
    for test in ("SET", "GET"):
        ours, tcp, fake, direct, floor = (
            median(results.get((test, name), [])) for name in
            ("node.redis()", "redis-py TCP", "fakeredis", "node.set/get", "redis-py floor"))
        rows.append([test, fmt_rate(ours), fmt_rate(tcp), fmt_rate(fake), fmt_rate(direct),
                     fmt_rate(floor), fmt_ratio(ratio(ours, tcp)),
                     goal_cell(ratio(ours, tcp), GOAL_VS_TCP), fmt_ratio(ratio(ours, fake)),
                     goal_cell(ratio(ours, fake), GOAL_VS_FAKEREDIS),
                     fmt_ratio(ratio(floor, fake))])
    counts = ", ".join(f"{name} {count:,}" for name, (_, count) in makers.items())
    text = [
        f"## {TITLE}",
        "",
        "One redis-py call per key through each client (SET N distinct keys, then GET "
        f"them); median of {options.rounds} rounds, each interleaving the contenders in "
        f"{PARTS} parts of their keys (random order per part).",
        "",
        markdown_table(headers, rows),
        "",
        f"N: {counts} keys; value {VALUE!r}. redis-py TCP is a plain `redis.Redis` on "
        "127.0.0.1 (one round trip a call); fakeredis is `FakeRedis()`. redis-py floor "
        "is a `redis.Redis` whose `execute_command` returns at once: redis-py's own cost "
        "per call, the ceiling of any client built on it (its ratio to fakeredis is the "
        "best `node.redis()` could reach).",
    ]
    if notes:
        text += ["", "Notes:", *(f"- {note}" for note in sorted(set(notes)))]
    return "\n".join(text) + "\n"
