"""In-process throughput: kvrepl's embedded API against fakeredis.FakeRedis and a plain dict.

SET inserts N distinct keys into a fresh, empty store; GET reads them all back (every read
hits). The contenders take turns (order rotated every round) and each cell is the median over
the rounds. fakeredis is some 30x slower than kvrepl, so it gets fewer keys.
"""

from __future__ import annotations

import gc
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from benchmarks.common import (
    Options,
    fmt_rate,
    fmt_ratio,
    goal_cell,
    log,
    markdown_table,
    median,
    ratio,
    rotated,
)

TITLE = "In-process: kvrepl.Master vs fakeredis.FakeRedis vs dict"

VALUE = b"xxx"  # redis-benchmark's default 3-byte payload
GOAL_VS_FAKEREDIS = 20.0


@dataclass
class Contender:
    """A store to measure: how to make an empty one and its SET and GET loops."""

    make: Callable[[], object]
    set_all: Callable[[object, Sequence[bytes]], None]
    get_all: Callable[[object, Sequence[bytes]], None]
    keys: int


# The loops bind the method once, as a tight loop in an application would, and do nothing
# else per key, so the per-call cost of each store is what gets measured.
def _set_via_method(store: object, keys: Sequence[bytes]) -> None:
    set_ = store.set  # type: ignore[attr-defined]
    for key in keys:
        set_(key, VALUE)


def _get_via_method(store: object, keys: Sequence[bytes]) -> None:
    get = store.get  # type: ignore[attr-defined]
    for key in keys:
        get(key)


def _set_dict(store: object, keys: Sequence[bytes]) -> None:
    data: dict[bytes, bytes] = store  # type: ignore[assignment]
    for key in keys:
        data[key] = VALUE


def _get_dict(store: object, keys: Sequence[bytes]) -> None:
    data: dict[bytes, bytes] = store  # type: ignore[assignment]
    for key in keys:
        data[key]  # noqa: B018 - the lookup is the work measured


def contenders(options: Options) -> dict[str, Contender]:
    """kvrepl, fakeredis (when installed) and dict, with their key counts."""
    import kvrepl

    big, small = (10_000, 1_000) if options.quick else (100_000, 10_000)
    found = {
        "kvrepl": Contender(kvrepl.Master, _set_via_method, _get_via_method, big),
    }
    try:
        import fakeredis
    except ImportError:
        log("[inprocess] fakeredis is not installed: skipped")
    else:
        found["fakeredis"] = Contender(fakeredis.FakeRedis, _set_via_method, _get_via_method,
                                       small)
    found["dict"] = Contender(dict, _set_dict, _get_dict, big)
    return found


def _timed(loop: Callable[[object, Sequence[bytes]], None], store: object,
           keys: Sequence[bytes]) -> float:
    """ops/s of one loop over ``keys``."""
    start = time.perf_counter()
    loop(store, keys)
    return len(keys) / (time.perf_counter() - start)


def run(options: Options) -> str:
    """Run the in-process benchmark and return its markdown section."""
    stores = contenders(options)
    names = list(stores)
    all_keys = [b"key:%d" % i for i in range(max(c.keys for c in stores.values()))]
    results: dict[tuple[str, str], list[float]] = defaultdict(list)
    notes: list[str] = []

    # One untimed pass each: imports, caches and first-call costs stay out of round 1.
    for name in names:
        contender = stores[name]
        store = contender.make()
        contender.set_all(store, all_keys[:min(1000, contender.keys)])
        contender.get_all(store, all_keys[:min(1000, contender.keys)])

    for round_number in range(options.rounds):
        for name in rotated(names, round_number):
            contender = stores[name]
            keys = all_keys[:contender.keys]
            store = contender.make()
            gc.collect()  # garbage left by the previous contender is not this one's cost
            set_rate = _timed(contender.set_all, store, keys)
            get_rate = _timed(contender.get_all, store, keys)
            if store.get(keys[-1]) != VALUE:  # type: ignore[attr-defined]
                notes.append(f"{name}: GET of the last key did not return the value set")
            results["SET", name].append(set_rate)
            results["GET", name].append(get_rate)
            log(f"[inprocess] round {round_number + 1}/{options.rounds} {name:9s} "
                f"{len(keys):>7,} keys  SET {set_rate:>12,.0f}/s  GET {get_rate:>12,.0f}/s")
            del store

    headers = ["test", "kvrepl ops/s", "fakeredis ops/s", "dict ops/s", "kvrepl/fakeredis",
               "kvrepl/dict", "goal (kvrepl/fakeredis)"]
    rows = []
    for test in ("SET", "GET"):
        kv, fk, dc = (median(results.get((test, s), [])) for s in ("kvrepl", "fakeredis", "dict"))
        rows.append([test, fmt_rate(kv), fmt_rate(fk), fmt_rate(dc), fmt_ratio(ratio(kv, fk)),
                     fmt_ratio(ratio(kv, dc)), goal_cell(ratio(kv, fk), GOAL_VS_FAKEREDIS)])
    counts = ", ".join(f"{name} {stores[name].keys:,}" for name in names)
    text = [
        f"## {TITLE}",
        "",
        "SET inserts N distinct keys into an empty store, GET reads them back; "
        f"median of {options.rounds} rounds, contenders alternated.",
        "",
        markdown_table(headers, rows),
        "",
        f"N: {counts} keys; value {VALUE!r}; kvrepl via `Master().set/get`, fakeredis via "
        "`FakeRedis().set/get`, dict via `d[k] = v` / `d[k]`.",
    ]
    if notes:
        text += ["", "Notes:", *(f"- {note}" for note in sorted(set(notes)))]
    return "\n".join(text) + "\n"
