"""HyperLogLog, checked against a real redis-server 7.0: the same commands leave the very same
bytes in both (GET), across the sparse encoding, its promotion and the dense one, and every
reply (PFCOUNT of one or many keys, PFMERGE, PFDEBUG, errors) is the same; HLLs made by
redis-server load into kvrepl and count the same; a kvrepl replica of a redis-server master
ends with the master's bytes."""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable

import pytest
import redis
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import RedisServer, mutate, poll

import kvrepl
from kvrepl.store import hyperloglog as hll
from kvrepl.store.digest import digest as dataset_digest

# Hashes to a run of 35 zeros (found by a search): a register value no sparse VAL holds.
_RUN_35 = b"e2119568080"
# Elements for hypothesis: short binary ones, now and then the one above.
_element = st.one_of(st.binary(max_size=20), st.just(_RUN_35))


def _live(examples: int) -> settings:
    """Examples against the live servers (function-scoped fixtures: each example starts from
    its own keys)."""
    return settings(max_examples=examples, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def _elements(rng: random.Random, count: int) -> list[bytes]:
    """Elements of every length class MurmurHash64A treats apart (0..7 tail, 8-byte blocks)."""
    return [rng.randbytes(rng.randrange(0, 26)) for _ in range(count)]


def _run_both(r: redis.Redis, real: redis.Redis, commands: list[tuple[object, ...]]
              ) -> list[object]:
    """Pipeline ``commands`` to both servers; the replies (errors as text) must be equal."""
    results = []
    for client in (r, real):
        pipe = client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        results.append([str(x) if isinstance(x, Exception) else x
                        for x in pipe.execute(raise_on_error=False)])
    mine, oracle = results
    for command, a, b in zip(commands, mine, oracle, strict=True):
        assert a == b, f"{command[:3]}: kvrepl {a!r} != redis {b!r}"
    return mine


def _same_bytes(r: redis.Redis, real: redis.Redis, *keys: str) -> None:
    for key in keys:
        assert r.get(key) == real.get(key), key


# -- PFADD: the bytes ------------------------------------------------------------------------
def test_new_hll_is_redis_empty_sparse_one(same: Callable[..., object], r: redis.Redis,
                                           real: redis.Redis) -> None:
    assert same("PFADD", "h") == 1
    assert same("PFADD", "h") == 0
    _same_bytes(r, real, "h")
    assert r.get("h") == hll.invalidate(hll.EMPTY)
    same("PFCOUNT", "h")
    _same_bytes(r, real, "h")  # the cache of 0 written back
    same("OBJECT", "ENCODING", "h")  # raw, though short


@pytest.mark.parametrize(("count", "batch", "seed"), [
    (40, 1, 1),  # sparse only
    (2200, 1, 2),  # across the promotion at 3000 bytes, one element at a time
    (6000, 13, 3),  # promotion inside a multi-element PFADD
    (40000, 400, 4),  # dense, big
])
def test_pfadd_sequence_gives_redis_bytes(r: redis.Redis, real: redis.Redis, count: int,
                                          batch: int, seed: int) -> None:
    rng = random.Random(seed)
    elements = _elements(rng, count)
    commands: list[tuple[object, ...]] = []
    for n, start in enumerate(range(0, count, batch)):
        commands.append(("PFADD", "h", *elements[start:start + batch]))
        commands.append(("PFADD", "h", *elements[start:start + batch]))  # nothing new: 0
        if n % 7 == 0:
            commands += [("GET", "h"), ("PFCOUNT", "h"), ("GET", "h"), ("PFCOUNT", "h")]
    commands += [("GET", "h"), ("PFCOUNT", "h"), ("GET", "h"), ("PFDEBUG", "ENCODING", "h")]
    replies = _run_both(r, real, commands)
    assert replies[-1] == (b"sparse" if count < 100 else b"dense")
    assert abs(replies[-3] - len(set(elements))) <= 0.02 * count + 2


@_live(60)
@given(batches=st.lists(st.lists(_element, max_size=40), min_size=1, max_size=12),
       max_bytes=st.sampled_from([0, 20, 64, 150, 3000]),
       counts=st.lists(st.booleans(), min_size=12, max_size=12))
def test_random_pfadds_give_redis_bytes(r: redis.Redis, real: redis.Redis,
                                        configure: Callable[[str, object], None],
                                        batches: list[list[bytes]], max_bytes: int,
                                        counts: list[bool]) -> None:
    configure("hll-sparse-max-bytes", max_bytes)
    commands: list[tuple[object, ...]] = [("DEL", "h")]
    for batch, count in zip(batches, counts, strict=False):
        commands.append(("PFADD", "h", *batch))
        if count:
            commands.append(("PFCOUNT", "h"))
        commands.append(("GET", "h"))
    commands.append(("PFCOUNT", "h", "nothing"))
    _run_both(r, real, commands)


def test_register_above_32_promotes_a_sparse_hll(r: redis.Redis, real: redis.Redis) -> None:
    index, run = hll.pattern(_RUN_35)
    assert run > hll.SPARSE_VAL_MAX_VALUE
    _run_both(r, real, [("PFADD", "h", "a", "b"), ("PFADD", "h", _RUN_35, "c"),
                        ("PFDEBUG", "ENCODING", "h"), ("GET", "h"), ("PFCOUNT", "h")])
    assert r.execute_command("PFDEBUG", "GETREG", "h")[index] == run


def test_hash_and_run_length_are_redis_ones(real: redis.Redis) -> None:
    rng = random.Random(5)
    for element in _elements(rng, 30):
        real.delete("one")
        real.pfadd("one", element)
        index, run = hll.pattern(element)
        registers = real.execute_command("PFDEBUG", "GETREG", "one")
        assert registers[index] == run
        assert sum(registers) == run


def test_pattern_of_every_length_is_redis_one(real: redis.Redis) -> None:
    """``pattern`` hashes 9-15 byte elements (redis-benchmark's ``__rand_int__``) on a path
    of its own: every length, each byte value at the edges, against Redis's registers."""
    rng = random.Random(9)
    elements = [bytes([fill]) * size for size in range(1, 20) for fill in (0, 0xFF)]
    elements += [rng.randbytes(size) for size in range(0, 20) for _ in range(3)]
    elements += [b"%012d" % rng.randrange(10**12) for _ in range(10)]
    for element in elements:
        real.delete("one")
        real.pfadd("one", element)
        index, run = hll.pattern(element)
        registers = real.execute_command("PFDEBUG", "GETREG", "one")
        assert (registers[index], sum(registers)) == (run, run), element
        assert index == hll.murmurhash64a(element) & hll.P_MASK


def _long_run_elements(rng: random.Random, size: int, count: int) -> list[bytes]:
    """Elements of ``size`` bytes whose run is longer than 8 (one in 256): the batch reads
    such a run from the element's own hash."""
    found: list[bytes] = []
    while len(found) < count:
        element = rng.randbytes(size)
        if hll.pattern(element)[1] > 8:
            found.append(element)
    return found


def _pairs(elements: list[bytes]) -> list[tuple[int, int]]:
    """``hll.patterns`` as one (index, run) pair per element."""
    indexes, runs = hll.patterns(elements)
    return list(zip(indexes, runs, strict=True))


def test_batched_patterns_are_the_one_by_one_ones() -> None:
    """``patterns`` hashes elements of one length of 1-15 bytes in batches (big-integer
    lanes; no block under 8 bytes, no tail at 8): every length, batch sizes around its
    limits, runs longer than the 8 bits the batch reads, mixed lengths on one side of 8,
    and lists it must leave to ``pattern`` (lengths across 8, 0, 16 and more)."""
    rng = random.Random(12)
    for size in range(0, 20):
        for n in (0, 1, 5, 6, 7, 16, 63, 64, 65, 130):
            elements = [rng.randbytes(size) for _ in range(n)]
            if 1 < size < 16 and n:
                for spot, element in zip(rng.sample(range(n), min(n, 3)),
                                         _long_run_elements(rng, size, 3), strict=False):
                    elements[spot] = element
            assert _pairs(elements) == [hll.pattern(e) for e in elements], (size, n)
    for lengths in ((11, 12, 13), (1, 4, 7), (9, 15), (7, 8, 9), (0, 3), (15, 16)):
        mixed = [rng.randbytes(rng.choice(lengths)) for _ in range(40)]
        assert _pairs(mixed) == [hll.pattern(e) for e in mixed], lengths
    edges = [bytes([fill]) * 12 for fill in (0, 0xFF)] * 4
    assert _pairs(edges) == [hll.pattern(e) for e in edges]


def test_batched_pfadd_gives_redis_bytes(r: redis.Redis, real: redis.Redis) -> None:
    """Multi-element PFADDs of one length (hashed in batches), sparse and dense, and
    pipelined one-element ones (the plain lane hashes a run's PFADDs together)."""
    rng = random.Random(13)
    commands: list[tuple[object, ...]] = []
    for size in (3, 7, 8, 9, 12, 15):
        batch = [rng.randbytes(size) for _ in range(100)] + _long_run_elements(rng, size, 2)
        commands += [("PFADD", f"h{size}", *batch), ("GET", f"h{size}")]
    commands += [("PFADD", "big", *(b"%012d" % rng.randrange(10**12) for _ in range(3000))),
                 ("GET", "big")]
    commands += [("PFADD", "big", b"%012d" % rng.randrange(10**12)) for _ in range(200)]
    commands += [("PFADD", "ids", b"%d" % rng.randrange(10**rng.randrange(1, 8)))
                 for _ in range(300)]  # mixed lengths under 8 bytes
    commands += [("GET", "ids"), ("PFADD", "ids", *(b"%d" % i for i in range(50, 2000, 7)))]
    commands += [("GET", "big"), ("PFCOUNT", "big"), ("GET", "big"), ("GET", "ids")]
    _run_both(r, real, commands)


def _lane_requests(rng: random.Random) -> list[list[bytes]]:
    """One-element PFADDs, mostly to ``h`` in groups of 1 to 40 (the lane takes those to one
    key together, 32 at most), between others: to a short sparse HLL ``s``, a dense one
    stored as bytes ``d``, ``c`` whose sparse opcodes cover registers 0-8191 only (an
    element of a higher register finds it corrupt), ``t`` with a TTL; GETs; and PFCOUNTs of
    ``h`` or ``d`` twice (the first writes the cache back, the second reads it)."""
    elements = [b"%012d" % rng.randrange(10**6) for _ in range(1500)]
    elements += _elements(rng, 300) + [_RUN_35]
    elements = [e for pair in zip(elements, elements[::-1], strict=True) for e in pair]
    low = [e for e in elements if hll.pattern(e)[0] < 8192]
    high = [e for e in elements if hll.pattern(e)[0] >= 8192]
    requests: list[list[bytes]] = []
    while elements:
        size = rng.randrange(1, 41)
        requests += [[b"PFADD", b"h", e] for e in elements[:size]]
        del elements[:size]
        other = rng.choice([b"s", b"d", b"c", b"t", b"GET", b"PFCOUNT"])
        if other == b"PFCOUNT":
            requests += [[b"PFCOUNT", rng.choice([b"h", b"d"])]] * 2
        elif other == b"c":
            requests += [[b"PFADD", b"c", rng.choice(low)] for _ in range(rng.randrange(3))]
            requests += [[b"PFADD", b"c", rng.choice(high)], [b"PFADD", b"c", low[0]]]
        elif other == b"GET":
            requests.append([b"GET", b"h"])
        else:
            requests += [[b"PFADD", other, e] for e in rng.sample(low, rng.randrange(1, 4))]
    return requests


@pytest.mark.parametrize("max_bytes", [3000, 200, 0])
def test_lane_pfadds_run_as_the_general_path_does(max_bytes: int) -> None:
    """One-element PFADDs in a pipeline take the plain lane, sparse ones that change the
    HLL and its promotion to dense included (``hll-sparse-max-bytes``, or a run above 32),
    several to one key at once, and end with what the general path leaves: replies, bytes,
    the byte past a sparse HLL's end, the memory estimate, the dirty counter, commandstats
    and propagation; PFCOUNTs between them too, each dense HLL changed in place. The lane
    leaves to the general path only a key with a TTL, a short HLL stored by SET (not ``raw``
    yet), a PFADD that finds its HLL corrupt and a PFCOUNT whose cache is stale."""
    from kvrepl.commands.core import Engine
    from kvrepl.config import Config
    from kvrepl.protocol.replies import encode

    requests = _lane_requests(random.Random(max_bytes))
    truncated = hll.EMPTY[:16] + bytes((0x40 | (8191 >> 8), 8191 & 0xFF))
    later = b"%d" % (time.time() * 1000 + 10**7)
    states = []
    for lane in (True, False):
        engine = Engine(Config(save=(), hll_sparse_max_bytes=max_bytes))
        log: list[list[bytes]] = []
        engine.propagate_listeners.append(lambda db, argv, log=log: log.append(list(argv)))
        session = engine.new_session()
        for argv in ([b"PFADD", b"h"], [b"PFADD", b"s", b"a"], [b"SET", b"d", _DENSE],
                     [b"SET", b"c", truncated], [b"PFADD", b"t", b"a"],
                     [b"PEXPIREAT", b"t", later]):
            assert not isinstance(engine.execute(session, argv), Exception)
        out: list[bytes] = []
        general: list[list[bytes]] = []  # what the lane left to the general path
        position = 0
        while position < len(requests):
            if lane:
                assert engine.plain_lane.open_for(session)
                position = engine.plain_lane.run(session, requests, position, out)
                if position == len(requests):
                    break
                general.append(requests[position])
            out.append(encode(engine.execute(session, requests[position])))
            position += 1
        if lane:
            assert {argv[1] for argv in general if argv[0] != b"PFCOUNT"} <= {b"t", b"c"}
            counts = [argv for argv in requests if argv[0] == b"PFCOUNT"]
            # The lane computes stale counts of dense HLLs too (all but those of a sparse h
            # or of d before its first change, stored as bytes).
            assert len([argv for argv in general if argv[0] == b"PFCOUNT"]) < len(counts) // 2
            assert b"INVALIDOBJ" in b"".join(out)
        data = engine.keyspace.dbs[0].data
        states.append((b"".join(out), *(bytes(data[key]) for key in (b"h", b"s", b"c", b"d")),
                       hll.tail_byte(data[b"s"]), engine.keyspace.used_memory(),
                       dict(engine.keyspace.dbs[0].sizes), engine.dirty,
                       engine.table[b"pfadd"].calls, log,
                       engine.execute(session, [b"OBJECT", b"ENCODING", b"h"]),
                       engine.execute(session, [b"OBJECT", b"ENCODING", b"c"]),
                       type(data[b"h"]), type(data[b"d"])))
    assert states[0] == states[1]
    assert states[0][1][4] == hll.DENSE
    assert states[0][-2:] == (bytearray, bytearray)  # changed in place by PFADD and PFCOUNT
    assert [b"PFCOUNT", b"h"] in states[0][10]  # a count computed is propagated


@pytest.mark.parametrize("max_bytes", [3000, 300, 40])
def test_add_each_leaves_what_one_pfadd_after_another_leaves(max_bytes: int) -> None:
    """A run of one-element PFADDs to one HLL (add_each: a sparse one updated on one working
    copy, a dense one in place) leaves the bytes, the byte past a sparse end and the replies
    that PFADD after PFADD leaves (add, then the cache marked stale), through the promotion
    to dense (by size, or a run above 32), and stops before the PFADD that finds the HLL
    corrupt (a sparse HLL covering half of the registers), what came before it kept; each
    run after the cache was written back, as PFCOUNT does."""
    rng = random.Random(max_bytes)
    half = hll.EMPTY[:16] + bytes((0x40 | (8191 >> 8), 8191 & 0xFF))  # registers 0..8191
    for start in (hll.EMPTY, half):
        value: bytes | bytearray = start
        for round_number in range(40):
            elements = [b"%012d" % rng.randrange(10**6) for _ in range(rng.randrange(1, 40))]
            if round_number % 4 == 1:
                elements += _elements(rng, 5)  # hashed one by one, not in a batch
            if round_number == 30:
                elements = [_RUN_35]  # a run above 32, the only change since the count
            # A PFCOUNT before each run: the cache valid, each first change marks it stale.
            value = (hll.with_cardinality(value, 7) if value[4] == hll.SPARSE  # type: ignore
                     else hll.set_cardinality(value, 7))
            expected = bytes(value)
            replies = bytearray()
            for element in elements:
                added, grew, ok = hll.add(expected, hll.patterns([element]), max_bytes)
                if not ok:
                    break
                replies.append(grew)
                if grew:
                    expected = hll.invalidate(added)
            tail = hll.tail_byte(expected) if expected[4] == hll.SPARSE else 0
            value, changed = hll.add_each(value, elements, max_bytes)
            assert (bytes(value), changed) == (expected, bytes(replies))
            if value[4] == hll.SPARSE:
                assert hll.tail_byte(value) == tail
            if len(changed) < len(elements):  # the corrupt HLL: nothing more to add
                break
        assert value[4] == (hll.DENSE if start is hll.EMPTY else hll.SPARSE)
        assert (len(changed) < len(elements)) == (start is half)


def test_pfadd_keeps_the_ttl_and_the_key_type_checks(same: Callable[..., object],
                                                     r: redis.Redis, real: redis.Redis) -> None:
    same("PFADD", "h", "a")
    same("EXPIRE", "h", "1000")
    same("PFADD", "h", "b", "c")
    same("TTL", "h")
    same("RPUSH", "list", "x")
    same("PFADD", "list", "a")
    same("PFCOUNT", "list")
    same("PFCOUNT", "h", "list")
    same("PFMERGE", "list", "h")
    same("PFMERGE", "h", "list")
    same("PFDEBUG", "ENCODING", "list")
    _same_bytes(r, real, "h")


# -- PFCOUNT ---------------------------------------------------------------------------------
def test_pfcount_uses_and_refreshes_the_cache(same: Callable[..., object], r: redis.Redis,
                                              real: redis.Redis) -> None:
    same("PFADD", "h", *range(100))
    _same_bytes(r, real, "h")  # stale cache
    same("PFCOUNT", "h")
    _same_bytes(r, real, "h")  # cache written
    # A cache marked valid is believed, whatever the registers say.
    forged = hll.with_cardinality(r.get("h"), 123456789)
    same("SET", "h", forged)
    assert same("PFCOUNT", "h") == 123456789
    same("SET", "h", hll.invalidate(forged))
    same("PFCOUNT", "h")
    _same_bytes(r, real, "h")
    same("PFCOUNT", "missing")


def test_pfcount_of_several_keys_merges_without_writing(same: Callable[..., object],
                                                        r: redis.Redis, real: redis.Redis
                                                        ) -> None:
    rng = random.Random(6)
    same("PFADD", "s1", *_elements(rng, 50))
    same("PFADD", "s2", *_elements(rng, 300))
    same("PFADD", "d1", *_elements(rng, 5000))
    same("PFADD", "d2", *_elements(rng, 9000))
    for keys in (("s1", "s2"), ("s1", "d1"), ("d1", "d2"), ("s1", "s2", "d1", "d2", "none"),
                 ("none", "none2"), ("s1", "s1")):
        same("PFCOUNT", *keys)
    _same_bytes(r, real, "s1", "s2", "d1", "d2")  # caches still stale: nothing written
    assert r.get("s1")[15] & 0x80


def test_pfcount_that_recomputes_breaks_a_watch(r: redis.Redis, real: redis.Redis,
                                                kvrepl_server, redis_server) -> None:
    for client in (r, real):
        client.pfadd("h", "a", "b")
    outcomes = []
    for server, client in ((kvrepl_server, r), (redis_server, real)):
        watcher = server.client()
        pipe = watcher.pipeline()
        pipe.watch("h")
        client.pfcount("h")  # recomputes the cache: a modification of "h"
        pipe.multi()
        pipe.get("h")
        try:
            outcomes.append(pipe.execute())
        except redis.WatchError:
            outcomes.append("watch error")
        pipe.reset()
        pipe.watch("h")
        client.pfcount("h")  # cached now: no change
        pipe.multi()
        pipe.pfcount("h")
        outcomes.append(pipe.execute())
        watcher.close()
    assert outcomes[:2] == outcomes[2:]
    assert outcomes[0] == "watch error"


# -- PFMERGE ---------------------------------------------------------------------------------
def test_pfmerge_gives_redis_bytes(same: Callable[..., object], r: redis.Redis,
                                   real: redis.Redis,
                                   configure: Callable[[str, object], None]) -> None:
    rng = random.Random(7)
    same("PFADD", "s1", *_elements(rng, 60))
    same("PFADD", "s2", *_elements(rng, 400))
    same("PFADD", "d1", *_elements(rng, 7000))
    same("PFADD", "tiny", "x")
    same("PFMERGE", "m1", "s1", "s2")  # new destination, sparse sources: stays sparse
    same("PFMERGE", "m2", "s1", "d1")  # a dense source: dense
    same("PFMERGE", "tiny", "s1", "s2", "nothing")  # existing sparse destination
    same("PFMERGE", "d1", "s2")  # existing dense destination
    same("PFMERGE", "only")  # nothing to merge: an empty HLL
    same("PFMERGE", "s1")  # itself: its cache goes stale
    for key in ("m1", "m2", "tiny", "d1", "only", "s1"):
        same("PFDEBUG", "ENCODING", key)
        _same_bytes(r, real, key)
        same("PFCOUNT", key)
        _same_bytes(r, real, key)
    # A merge that outgrows hll-sparse-max-bytes half-way turns dense in the middle.
    configure("hll-sparse-max-bytes", 300)
    same("PFMERGE", "m3", "s1", "s2")
    same("PFDEBUG", "ENCODING", "m3")
    _same_bytes(r, real, "m3")


@_live(25)
@given(sizes=st.lists(st.integers(0, 1500), min_size=1, max_size=4),
       max_bytes=st.sampled_from([100, 1000, 3000]), seed=st.integers(0, 1000))
def test_random_pfmerges_give_redis_bytes(r: redis.Redis, real: redis.Redis,
                                          configure: Callable[[str, object], None],
                                          sizes: list[int], max_bytes: int, seed: int) -> None:
    configure("hll-sparse-max-bytes", max_bytes)
    rng = random.Random(seed)
    commands: list[tuple[object, ...]] = [("FLUSHALL",)]
    for i, size in enumerate(sizes):
        commands.append(("PFADD", f"src{i}", *_elements(rng, size)))
    commands += [("PFMERGE", "dest", *(f"src{i}" for i in range(len(sizes)))),
                 ("GET", "dest"), ("PFCOUNT", "dest"), ("GET", "dest"),
                 ("PFMERGE", "src0", *(f"src{i}" for i in range(len(sizes)))),
                 ("GET", "src0"), ("PFCOUNT", *(f"src{i}" for i in range(len(sizes))))]
    _run_both(r, real, commands)


# -- PFDEBUG ---------------------------------------------------------------------------------
def test_pfdebug_subcommands(same: Callable[..., object], r: redis.Redis,
                             real: redis.Redis) -> None:
    same("PFADD", "s", *range(30))
    same("PFADD", "d", *range(5000))
    same("PFDEBUG", "DECODE", "s")
    same("PFDEBUG", "decode", "d")
    same("PFDEBUG", "ENCODING", "s")
    same("PFDEBUG", "ENCODING", "d")
    same("PFDEBUG", "GETREG", "d")
    same("PFDEBUG", "TODENSE", "d")
    same("PFDEBUG", "NOPE", "s")
    same("PFDEBUG", "NOPE", "missing")
    same("PFDEBUG", "GETREG", "missing")
    same("PFDEBUG", "GETREG")
    same("PFDEBUG", "GETREG", "s", "extra")
    same("PFADD", "s2", *range(40, 60))
    same("PFDEBUG", "GETREG", "s2")  # converts to dense
    same("PFDEBUG", "ENCODING", "s2")
    same("PFDEBUG", "TODENSE", "s")
    same("PFDEBUG", "TODENSE", "s")
    _same_bytes(r, real, "s", "s2", "d")
    same("PFSELFTEST", "extra")


def test_pfselftest_passes_and_can_fail(same: Callable[..., object], r: redis.Redis,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    assert r.execute_command("PFSELFTEST") == b"OK"
    monkeypatch.setattr(hll, "_dense_set", lambda buf, index, value: None)
    assert hll.self_test(3000, cycles=1, elements=10).startswith("TESTFAILED Register")


# -- corrupt values ----------------------------------------------------------------------------
def _hll_of(n: int) -> bytes:
    """An HLL of ``n`` random elements (PFADD's bytes: the tests above prove them Redis's)."""
    value, _, _ = hll.add(hll.EMPTY, hll.patterns(_elements(random.Random(n), n)), 3000)
    return hll.invalidate(value)


_SPARSE_OF_3 = _hll_of(3)
_BIGGER = _hll_of(400)
_DENSE = _hll_of(4000)

_CORRUPT = [
    b"", b"HYLL", b"not an hll at all, but long enough", b"HYLx" + bytes(14),
    b"HYLL\x02" + bytes(13),  # unknown encoding
    b"HYLL\x00" + bytes(30),  # dense of the wrong size
    b"HYLL\x01" + bytes(11),  # sparse without opcodes
    b"HYLL\x01" + bytes(11) + b"\x7f\xfe",  # one register short
    b"HYLL\x01" + bytes(11) + b"\x7f\xff\x80",  # one register too many
    b"HYLL\x01" + bytes(11) + b"\x7f",  # XZERO cut short
    b"HYLL\x01" + bytes(11) + b"\x7f\xfc\x83",  # VAL run past the end
    b"HYLL\x01" + bytes(11) + b"\x00" * 16384,  # 16384 ZERO opcodes: valid
    b"HYLL\x01" + bytes(11) + b"\x83" * 4096,  # valid, all ones
    b"HYLL\x01" + bytes(11) + b"\x40\x00" * 16384,  # XZERO of one register each: valid
    b"HYLL\x01" + bytes(11) + b"\x3f\x7f\xbe",  # ZERO 64 + XZERO 16320: valid
    b"HYLL\x01\xff\xff\xff" + bytes(8) + b"\x7f\xff",  # unused bytes set
]


@pytest.mark.parametrize("value", _CORRUPT, ids=range(len(_CORRUPT)))
def test_odd_and_corrupt_values_answer_as_redis(value: bytes, r: redis.Redis,
                                                real: redis.Redis) -> None:
    commands: list[tuple[object, ...]] = []
    for command in (("PFADD", "x", "a"), ("PFADD", "x", *range(200)), ("PFCOUNT", "x"),
                    ("PFCOUNT", "x", "ok"), ("PFMERGE", "x", "ok"), ("PFMERGE", "y", "x"),
                    ("PFDEBUG", "ENCODING", "x"), ("PFDEBUG", "DECODE", "x"),
                    ("PFDEBUG", "GETREG", "x"), ("PFDEBUG", "TODENSE", "x")):
        commands += [("SET", "x", value), ("PFADD", "ok", "a"), ("DEL", "y"), command,
                     ("GET", "x"), ("GET", "y")]
    _run_both(r, real, commands)


@_live(150)
@given(edits=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255),
                                st.sampled_from(["set", "insert", "delete"])),
                      min_size=1, max_size=4),
       base=st.sampled_from(["sparse", "bigger", "dense"]),
       elements=st.lists(_element, max_size=30))
def test_mutated_hlls_behave_as_in_redis(r: redis.Redis, real: redis.Redis,
                                         edits: list[tuple[int, int, str]], base: str,
                                         elements: list[bytes]) -> None:
    value = {"sparse": _SPARSE_OF_3, "bigger": _BIGGER, "dense": _DENSE}[base]
    if base == "dense":  # a dense HLL of another size is no HLL at all: keep the size
        edits = [(position, byte, "set") for position, byte, _ in edits]
    value = mutate(value, edits, first=16)
    _run_both(r, real, [
        ("SET", "x", value), ("PFCOUNT", "x"), ("GET", "x"), ("PFADD", "x", *elements),
        ("GET", "x"), ("PFCOUNT", "x", "x"), ("PFMERGE", "y", "x"), ("GET", "y"),
        ("SET", "x", value), ("PFMERGE", "x", "y"), ("GET", "x"),
        ("SET", "x", value), ("PFDEBUG", "DECODE", "x"), ("PFDEBUG", "TODENSE", "x"),
        ("GET", "x"), ("DEL", "y")])


# -- values from redis-server --------------------------------------------------------------
def test_redis_hlls_load_into_kvrepl_and_count_the_same(r: redis.Redis, real: redis.Redis
                                                        ) -> None:
    rng = random.Random(8)
    for n, key in ((5, "a"), (700, "b"), (20000, "c")):
        real.pfadd(key, *_elements(rng, n))
    real.pfadd("b", "one more")  # stale cache
    real.pfcount("a")  # valid cache
    for key in ("a", "b", "c"):
        r.restore(key, 0, real.dump(key))
        r.set(f"{key}-set", real.get(key))
        real.set(f"{key}-set", real.get(key))
    for key in ("a", "b", "c", "a-set", "b-set", "c-set"):
        assert r.pfcount(key) == real.pfcount(key)
        assert r.get(key) == real.get(key)
    assert r.pfcount("a", "b", "c") == real.pfcount("a", "b", "c")
    # And back: kvrepl's own dump restores into redis-server with the same bytes.
    r.pfadd("k", *_elements(rng, 900))
    real.restore("k", 0, r.dump("k"))
    assert real.get("k") == r.get("k")
    assert real.pfcount("k") == r.pfcount("k")


# -- protocols -------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", [2, 3])
def test_reply_bytes_resp2_and_resp3(wire: Callable[..., bytes], protocol: int) -> None:
    wire("PFADD", "h", "a", "b", "c", protocol=protocol)
    wire("PFADD", "h", "a", protocol=protocol)
    wire("PFCOUNT", "h", protocol=protocol)
    wire("PFCOUNT", "h", "nope", protocol=protocol)
    wire("PFMERGE", "m", "h", protocol=protocol)
    wire("PFDEBUG", "ENCODING", "h", protocol=protocol)
    wire("PFDEBUG", "DECODE", "h", protocol=protocol)
    wire("PFDEBUG", "GETREG", "m", protocol=protocol)
    wire("PFDEBUG", "TODENSE", "h", protocol=protocol)
    wire("PFDEBUG", "DECODE", "h", protocol=protocol)
    wire("SET", "bad", "HYLL\x01 and then junk", protocol=protocol)
    wire("PFCOUNT", "bad", protocol=protocol)
    wire("PFADD", "bad", "x", protocol=protocol)
    wire("SET", "s", "short", protocol=protocol)
    wire("PFCOUNT", "s", protocol=protocol)
    wire("PFADD", protocol=protocol)
    wire("PFMERGE", protocol=protocol)


def test_command_info_and_config(same: Callable[..., object], same3: Callable[..., object],
                                 configure: Callable[[str, object], None]) -> None:
    for name in ("pfadd", "pfcount", "pfmerge", "pfdebug", "pfselftest"):
        same("COMMAND", "INFO", name)
    same3("COMMAND", "INFO", "pfcount")
    configure("hll-sparse-max-bytes", 3000)  # restored afterwards
    for value in ("1k", "0", "-1", "abc", "99999999999999999999", "2000"):
        same("CONFIG", "SET", "hll-sparse-max-bytes", value)
        same("CONFIG", "GET", "hll-sparse-max-bytes")


# -- replication -----------------------------------------------------------------------------
def test_propagation_follows_redis(run: Callable[..., object], prop: list[list[bytes]]
                                   ) -> None:
    run("PFADD", "h", "a")
    run("PFADD", "h", "a")  # nothing changed: not propagated
    run("PFCOUNT", "h")  # cache recomputed and written: propagated as is
    run("PFCOUNT", "h")  # cached: not
    run("PFCOUNT", "h", "h")  # several keys: nothing written
    run("PFMERGE", "m", "h")
    run("PFDEBUG", "TODENSE", "h")
    run("PFDEBUG", "TODENSE", "h")  # already dense: not
    run("PFDEBUG", "GETREG", "m")
    assert prop == [[b"PFADD", b"h", b"a"], [b"PFCOUNT", b"h"], [b"PFMERGE", b"m", b"h"],
                    [b"PFDEBUG", b"TODENSE", b"h"], [b"PFDEBUG", b"GETREG", b"m"]]


async def test_kvrepl_replica_of_redis_master_ends_with_its_bytes() -> None:
    redis_master = RedisServer("--enable-debug-command", "yes", "--repl-diskless-sync-delay",
                               "0")
    try:
        client = redis_master.client()
        rng = random.Random(9)
        client.pfadd("before", *_elements(rng, 3000))
        async with kvrepl.Replica(follow=("127.0.0.1", redis_master.port)) as replica:
            await replica.wait_synced()

            def write() -> int:
                for i in range(40):
                    client.pfadd("grow", *_elements(rng, 60))
                    if i % 5 == 0:
                        client.pfcount("grow")  # writes the cache: propagated
                client.pfadd("small", "x", "y")
                client.pfmerge("merged", "small", "before")
                client.pfmerge("small2", "small")
                client.pfcount("merged")
                client.pfcount("before", "grow")
                client.execute_command("PFDEBUG", "TODENSE", "small")
                client.pfadd("before", "z")
                return client.info("replication")["master_repl_offset"]

            offset = await trio.to_thread.run_sync(write)
            await replica.following.wait_offset(offset)
            theirs = await trio.to_thread.run_sync(
                lambda: client.execute_command("DEBUG", "DIGEST"))
            assert dataset_digest(replica.engine.keyspace) == theirs
            for key in ("before", "grow", "small", "merged", "small2"):
                assert replica.get(key.encode()) == client.get(key), key
    finally:
        redis_master.stop()


async def test_redis_replica_of_kvrepl_master_ends_with_its_bytes() -> None:
    async with kvrepl.Master(port=0) as master:
        rng = random.Random(10)
        master.execute_command("PFADD", "before", *_elements(rng, 500))
        redis_replica = RedisServer("--replicaof", "127.0.0.1", str(master.port),
                                    "--enable-debug-command", "yes")
        try:
            client = redis_replica.client()
            await trio.to_thread.run_sync(lambda: poll(
                lambda: client.info("replication").get("master_link_status") == "up",
                "the redis replica is up"))
            for i in range(30):
                master.execute_command("PFADD", "grow", *_elements(rng, 100))
                if i % 4 == 0:
                    master.execute_command("PFCOUNT", "grow")
            master.execute_command("PFMERGE", "merged", "grow", "before")
            master.execute_command("PFCOUNT", "merged")
            master.execute_command("PFDEBUG", "TODENSE", "before")
            offset = master.replication.master_repl_offset
            await trio.to_thread.run_sync(lambda: poll(
                lambda: client.info("replication")["slave_repl_offset"] >= offset,
                "the redis replica applied the stream"))
            theirs = await trio.to_thread.run_sync(
                lambda: client.execute_command("DEBUG", "DIGEST"))
            assert dataset_digest(master.engine.keyspace) == theirs
        finally:
            redis_replica.stop()


def test_values_of_other_types_are_untouched(run: Callable[..., object], engine) -> None:
    engine.keyspace.dbs[0].data[b"l"] = deque([b"x"])
    with pytest.raises(Exception, match="WRONGTYPE"):
        run("PFADD", "l", "a")
    assert engine.keyspace.dbs[0].data[b"l"] == deque([b"x"])


def test_an_xzero_cut_short_reads_and_keeps_the_byte_past_the_end(r: redis.Redis,
                                                                   real: redis.Redis) -> None:
    # The last opcode is an XZERO missing its second byte: Redis reads the byte past the end
    # (its sds terminator), and splitting that opcode writes a byte there, which later
    # commands read back.
    value = mutate(_SPARSE_OF_3, [(0, 0, "delete"), (188, 0, "set")], first=16)
    assert 0x40 <= value[-1] < 0x80
    _run_both(r, real, [
        ("SET", "x", value), ("PFDEBUG", "DECODE", "x"), ("PFADD", "x", b"\x00\xf4\n"),
        ("PFDEBUG", "DECODE", "x"), ("PFCOUNT", "x", "x"), ("PFADD", "x", b"\x00\x01"),
        ("GET", "x"), ("PFCOUNT", "x"), ("GET", "x"), ("PFDEBUG", "DECODE", "x"),
        ("PFMERGE", "y", "x"), ("GET", "y")])


def test_pipelined_pfadd_and_pfcount_are_counted_as_in_redis(
        r: redis.Redis, real: redis.Redis, server_propagated: list[list[bytes]]) -> None:
    # Pipelined single-element PFADDs to a dense HLL and PFCOUNTs of a cached count take
    # the plain lane (commands/plain.py): same replies, statistics and propagation.
    rng = random.Random(11)
    for client in (r, real):
        client.pfadd("h", *_elements(random.Random(12), 5000))
        client.pfcount("h")
        client.config_resetstat()
    server_propagated.clear()
    elements = _elements(rng, 300)
    commands: list[tuple[object, ...]] = [("PFADD", "h", e) for e in elements]
    commands += [("PFCOUNT", "h")] * 3 + [("GET", "h"), ("PFADD", "h", elements[0])]
    commands += [("PFCOUNT", "h"), ("GET", "h"), ("PFCOUNT", "h"), ("PFCOUNT", "missing")]
    # Sparse: an element already counted changes nothing (the lane), a new one does; a short
    # HLL stored by SET (embstr) becomes raw on its first PFADD even when nothing changes.
    commands += [("PFADD", "s", "a", "b"), *[("PFADD", "s", "a")] * 5, ("PFADD", "s", "c"),
                 ("PFADD", "s", "b"), ("GET", "s"), ("SET", "e", _SPARSE_OF_3),
                 ("OBJECT", "ENCODING", "e"), ("PFADD", "e", "x"), ("OBJECT", "ENCODING", "e"),
                 ("SET", "e2", _SPARSE_OF_3), ("PFADD", "e2", _elements(random.Random(3), 3)[0]),
                 ("OBJECT", "ENCODING", "e2")]
    replies = _run_both(r, real, commands)
    for section in ("commandstats", "stats"):
        mine, theirs = r.info(section), real.info(section)
        for name in ("cmdstat_pfadd", "cmdstat_pfcount", "cmdstat_get"):
            if section == "commandstats":
                assert mine[name]["calls"] == theirs[name]["calls"], name
        if section == "stats":
            for name in ("keyspace_hits", "keyspace_misses"):
                assert mine[name] == theirs[name], name
    grown = [[b"PFADD", b"h", e]
             for e, reply in zip(elements, replies, strict=False) if reply == 1]
    grown += [[b"PFADD", b"s", b"a", b"b"], [b"PFADD", b"s", b"c"], [b"PFADD", b"e", b"x"]]
    assert [argv for argv in server_propagated if argv[0] == b"PFADD"] == grown
    assert replies[-2:] == [0, b"raw"]
    assert [b"PFCOUNT", b"h"] in server_propagated  # the count after the adds, recomputed


def test_an_hll_changed_in_place_by_string_commands_is_still_an_hll(
        r: redis.Redis, real: redis.Redis) -> None:
    # SETRANGE and APPEND leave the string changed in place (kvrepl keeps it as a bytearray):
    # the HLL commands must read it as the same bytes redis-server has.
    commands = [("PFADD", "h", *(b"e%d" % i for i in range(50))),
                ("SETRANGE", "h", 0, "H"), ("PFCOUNT", "h"), ("PFADD", "h", "x", "y"),
                ("PFCOUNT", "h"), ("PFMERGE", "m", "h"), ("PFCOUNT", "h", "m"),
                ("APPEND", "h", ""), ("PFADD", "h", "z"), ("PFDEBUG", "ENCODING", "h")]
    _run_both(r, real, commands)
    _same_bytes(r, real, "h", "m")


def test_a_promoted_hll_changes_in_place_with_redis_bytes(
        r: redis.Redis, configure: Callable[[str, object], None], kvrepl_server) -> None:
    """PFADD keeps the dense HLL it promoted as a bytearray and changes its registers in
    place (single PFADDs pipelined, which the plain lane takes; MULTI's, which the general
    path runs; several elements at once): the same bytes, DUMP payload, digests, encoding
    and counts as redis-server. PFCOUNT's cache write changes it in place too: the value stays
    the very same object throughout, and PFADD after that still agrees."""
    configure("hll-sparse-max-bytes", 300)
    oracle = RedisServer("--enable-debug-command", "yes", "--hll-sparse-max-bytes", "300")
    try:
        real = oracle.client()
        rng = random.Random(11)
        elements = [b"%012d" % rng.randrange(10**6) for _ in range(2400)]
        checks = [("GET", "h"), ("DUMP", "h"), ("DEBUG", "DIGEST-VALUE", "h"),
                  ("OBJECT", "ENCODING", "h"), ("STRLEN", "h"), ("PFDEBUG", "ENCODING", "h")]
        _run_both(r, real, [("PFADD", "h", *elements[:300])])
        data = kvrepl_server.engine.keyspace.dbs[0].data
        kept = data[b"h"]
        assert type(kept) is bytearray  # promoted: kept for changes in place
        _run_both(r, real, [("PFADD", "h", element) for element in elements[300:1500]]
                  + checks)
        for client in (r, real):
            pipe = client.pipeline(transaction=True)
            for element in elements[1500:1600]:
                pipe.pfadd("h", element)
            pipe.execute()
        _run_both(r, real, [("PFADD", "h", *elements[1600:1800]),
                            ("PFADD", "h", *elements[:50]), ("DEBUG", "DIGEST"), *checks,
                            ("PFCOUNT", "h")])
        assert data[b"h"] is kept  # PFCOUNT wrote its cache back in place
        _run_both(r, real, [*(("PFADD", "h", element) for element in elements[1800:]),
                            ("PFCOUNT", "h"), ("DEBUG", "DIGEST"), *checks])
        assert data[b"h"] is kept
    finally:
        oracle.stop()


# -- PFADD and PFCOUNT cost what they change (issue 9) ---------------------------------------
def test_alternating_pfadd_and_pfcount_change_the_hll_in_place(
        r: redis.Redis, debug_redis: RedisServer, kvrepl_server) -> None:
    """PFADD then PFCOUNT, over and over, on a dense HLL promoted by PFADD, one stored by SET
    and one by RESTORE: pipelined one-element PFADDs (the plain lane), PFADDs in MULTI and
    of several elements (the general path), each PFCOUNT recomputing and writing the cache
    back. Every reply and the bytes (GET, DUMP, DEBUG DIGEST-VALUE), OBJECT ENCODING and
    the memory estimate are redis-server's, and each value is changed where it is: from its
    first change on it is one bytearray object to the end. SETRANGE and SETBIT changing
    registers of such a value behind the histogram PFCOUNT remembers do not fool it."""
    from kvrepl.store.memory import key_memory_usage

    real = debug_redis.client()
    real.flushall()
    try:
        rng = random.Random(9)
        elements = [b"%012d" % rng.randrange(10**9) for _ in range(3000)]
        setup = [("PFADD", "grown", *elements), ("SET", "set", _DENSE),
                 ("SET", "restored", _DENSE)]
        _run_both(r, real, setup)
        payload = real.dump("restored")
        for client in (r, real):
            client.delete("restored")
            client.restore("restored", 0, payload)
        data = kvrepl_server.engine.keyspace.dbs[0].data
        assert type(data[b"grown"]) is bytearray  # promoted
        assert type(data[b"set"]) is bytes and type(data[b"restored"]) is bytes
        keys = ("grown", "set", "restored")
        checks = [(name, *args, key) for key in keys
                  for name, *args in (("GET",), ("DUMP",), ("DEBUG", "DIGEST-VALUE"),
                                      ("OBJECT", "ENCODING"), ("STRLEN",))]
        fresh = iter(b"new-%d" % i for i in range(10**6))
        kept = {}
        for key in keys:
            _run_both(r, real, [("PFCOUNT", key), ("PFADD", key, next(fresh)),
                                ("PFCOUNT", key)])
            kept[key] = data[key.encode()]
            assert type(kept[key]) is bytearray  # made one by its first change, once
        for key in keys:
            _run_both(r, real, [command for _ in range(150)
                                for command in (("PFADD", key, next(fresh)), ("PFCOUNT", key))])
            added = [next(fresh) for _ in range(40)]
            results = []
            for client in (r, real):
                pipe = client.pipeline(transaction=True)
                for element in added:
                    pipe.pfadd(key, element)
                    pipe.pfcount(key)
                results.append(pipe.execute())
            assert results[0] == results[1]
            _run_both(r, real, [command for _ in range(20) for command in (
                ("PFADD", key, next(fresh), next(fresh), next(fresh)), ("PFCOUNT", key))])
        _run_both(r, real, [("DEBUG", "DIGEST"), *checks])
        # Registers changed behind the remembered histogram (after a PFCOUNT made it).
        replies = _run_both(r, real, [
            ("PFCOUNT", "grown"), ("SETRANGE", "grown", 1000, bytes(600)),  # 800 registers
            ("PFADD", "grown", *(next(fresh) for _ in range(5))), ("PFCOUNT", "grown"),
            ("SETBIT", "grown", 8 * 3000 + 3, 1), ("SETRANGE", "grown", 5000, b"\xff" * 30),
            ("PFADD", "grown", *elements[:5], *(next(fresh) for _ in range(5))),
            ("PFCOUNT", "grown"), *checks])
        assert replies[2] == replies[6] == 1  # so both counts were computed again
        for key in keys:
            value = data[key.encode()]
            assert value is kept[key]
            db = kvrepl_server.engine.keyspace.dbs[0]
            assert db.sizes[key.encode()] == key_memory_usage(key.encode(), value)
    finally:
        real.flushall()
        real.close()


def _register_by_register(value: bytearray, indexes: list[int], runs: list[int]) -> bytes:
    """PFADD's reference: each element's register read out of its 6 bits and raised in
    turn (``value`` changed); one byte per element, 1 where it grew."""
    grew = bytearray(len(indexes))
    for i, (index, run) in enumerate(zip(indexes, runs, strict=True)):
        if run > hll._dense_get(value, index):
            hll._dense_set(value, index, run)
            grew[i] = 1
    if 1 in grew:
        value[15] |= 0x80
    return bytes(grew)


def test_dense_updates_through_kept_registers_are_register_by_register_ones() -> None:
    """``dense_update`` reads a batch's registers from the one-byte copy it keeps of a dense
    ``bytearray`` HLL (compared all at once with the runs): batches of every size (one
    register hit twice in a batch included), single elements, with the copy made, kept,
    and found stale after SETRANGE-like edits raise, lower or zero registers behind it.
    Each step leaves the bytes and grew-flags of the register-by-register reference."""
    rng = random.Random(21)
    value = bytearray(hll.to_dense(hll.EMPTY))
    reference = bytearray(value)
    for step in range(300):
        n = rng.choice((0, 1, 2, 7, 8, 9, 16, 33, 64))
        elements = [b"%012d" % rng.randrange(10**6) for _ in range(n)]
        if n > 2 and rng.random() < 0.3:
            elements[-1] = elements[0]  # the same register twice in one batch
        indexes, runs = hll.patterns(elements)
        if n and rng.random() < 0.2:
            runs = list(runs)
            runs[0] = rng.randrange(1, 52)  # any run, up to the longest
        stored, grew = hll.dense_update(value, indexes, runs)
        assert stored is value
        assert grew == _register_by_register(reference, list(indexes), list(runs)), step
        assert value == reference, step
        if rng.random() < 0.1:  # registers changed behind the kept copy (SETRANGE...)
            start = rng.randrange(hll.HDR_SIZE, hll.DENSE_SIZE - 100)
            edit = rng.choice((bytes(rng.randrange(1, 100)), b"\xff" * rng.randrange(1, 100),
                               rng.randbytes(rng.randrange(1, 3))))
            value[start:start + len(edit)] = edit
            reference[start:start + len(edit)] = edit
    assert hll.count(value) == hll.count(bytes(reference))


def test_batched_pfadds_after_registers_changed_behind_them_give_redis_bytes(
        r: redis.Redis, real: redis.Redis) -> None:
    """Pipelined one-element PFADDs and multi-element ones to a dense HLL, which kvrepl
    reads through a copy of its registers, between SETRANGEs and SETBITs that raise, lower
    and zero registers behind that copy (the elements added again then grow the zeroed
    ones again): the same replies and bytes as redis-server."""
    rng = random.Random(22)
    elements = [b"%012d" % rng.randrange(10**6) for _ in range(3000)]
    commands: list[tuple[object, ...]] = [("PFADD", "h", *elements[:2000])]
    commands += [("PFADD", "h", element) for element in elements[2000:2100]]
    for edit in (("SETRANGE", "h", 16, bytes(6000)), ("SETRANGE", "h", 3000, b"\xff" * 3000),
                 ("SETBIT", "h", 8 * 7000 + 5, 1), ("SETRANGE", "h", 9000, b"\x41" * 500)):
        commands += [edit, *(("PFADD", "h", element) for element in elements[:64]),
                     ("PFADD", "h", *elements[64:200]), ("PFCOUNT", "h"), ("GET", "h")]
    commands += [("PFADD", "h", element) for element in elements[2100:]]
    commands += [("PFCOUNT", "h"), ("GET", "h")]
    _run_both(r, real, commands)
    _same_bytes(r, real, "h")


def test_a_snapshot_taken_before_pfadd_and_pfcount_keeps_the_old_bytes(engine, run) -> None:
    """The view a BGSAVE or a full sync writes from (``KeyspaceView``), taken before PFADD
    and PFCOUNT change dense HLLs in place (one held as bytes, one as a bytearray already,
    its histogram remembered; both with a stale cache), hands out the bytes they had when
    it was taken; the live
    values changed, in place, and count as a fresh copy of their bytes does."""
    from kvrepl.store.snapshot import KeyspaceView

    run("SET", "d", _DENSE)
    run("PFADD", "g", *(b"g%d" % i for i in range(3000)))
    run("PFCOUNT", "g")  # its histogram remembered
    assert run("PFADD", "g", b"stale") == 1
    data = engine.keyspace.dbs[0].data
    kept = data[b"g"]
    assert type(kept) is bytearray
    before = {key: bytes(data[key]) for key in (b"d", b"g")}
    view = KeyspaceView(engine.keyspace)
    try:
        for key in (b"d", b"g"):
            for i in range(20):  # PFCOUNT first: its own write-back must keep the old bytes
                run("PFCOUNT", key)
                assert run("PFADD", key, b"x%d" % i) in (0, 1)
            assert run("PFADD", key, b"one more") == 1
            assert run("PFCOUNT", key) == hll.count(bytes(data[key]))
        seen = {key: bytes(value) for chunk in view.entries()
                for _, key, value, _ in chunk}
    finally:
        view.close()
    assert seen == before
    assert data[b"g"] is kept and type(data[b"d"]) is bytearray
    assert all(bytes(data[key]) != before[key] for key in before)


def test_pfcount_writing_back_in_place_breaks_a_watch(r: redis.Redis, real: redis.Redis,
                                                      kvrepl_server, redis_server) -> None:
    """signalModifiedKey: the count written into a dense HLL's header in place fails a
    WATCH of its key as in redis-server; a count read from the cache does not."""
    for client in (r, real):
        client.delete("hw")
        client.pfadd("hw", *(b"w%d" % i for i in range(3000)))
        client.pfcount("hw")
        assert client.pfadd("hw", *(b"s%d" % i for i in range(10))) == 1  # stale again
    assert type(kvrepl_server.engine.keyspace.dbs[0].data[b"hw"]) is bytearray
    outcomes = []
    for server, client in ((kvrepl_server, r), (redis_server, real)):
        watcher = server.client()
        pipe = watcher.pipeline()
        pipe.watch("hw")
        client.pfcount("hw")  # computes the count and writes it back: "hw" is modified
        pipe.multi()
        pipe.pfcount("hw")
        try:
            outcomes.append(pipe.execute())
        except redis.WatchError:
            outcomes.append("watch error")
        pipe.reset()
        pipe.watch("hw")
        client.pfcount("hw")  # from the cache: no change
        pipe.multi()
        pipe.pfcount("hw")
        outcomes.append(pipe.execute())
        watcher.close()
        client.delete("hw")
    assert outcomes[:2] == outcomes[2:]
    assert outcomes[0] == "watch error"
