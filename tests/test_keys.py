"""Keyspace commands (DEL ... SCAN, expiry, OBJECT, SORT) against a real redis-server 7.0."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable

import pytest
import redis
from support import NOW_MS, NOW_S
from support import argv as b

from kvrepl.commands import keys as keys_module
from kvrepl.commands.core import Engine
from kvrepl.commands.keys import sort_score
from kvrepl.errors import ReplyError
from kvrepl.store import ZSet


@pytest.fixture
def db1(compare_on: Callable[..., Callable[..., object]]) -> Callable[..., object]:
    """``db1("GET", "k")``: the same command on db 1 of both servers; asserts equal replies."""
    return compare_on(protocol=2, db=1)


# -- DEL EXISTS TYPE KEYS RANDOMKEY ------------------------------------------------------------
def test_del_exists_touch_type(same: Callable[..., object], seed: Callable[..., None]) -> None:
    same("MSET", "a", "1", "b", "2", "c", "")
    seed("l", deque([b"x"]))
    seed("h", {b"f": b"v"})
    seed("s", {b"m"})
    seed("z", ZSet({b"m": 1.0}))
    for key in ("a", "c", "l", "h", "s", "z", "missing"):
        same("TYPE", key)
    same("EXISTS", "a", "a", "missing", "l", "c")
    same("TOUCH", "a", "missing", "z")
    same("DEL", "a", "missing", "a")
    same("UNLINK", "b", "l", "h")
    same("DEL", "missing")
    same("EXISTS", "a", "b", "l", "h", "s")


def test_keys_patterns(same: Callable[..., object]) -> None:
    names = ["foo_a", "foo_b", "foo_c", "key_x", "key_y", "key_z", "h?llo", "hello", "hallo",
             "hxllo", "a*b", "[x]", ""]
    for name in names:
        same("SET", name, "1")
    for pattern in ("*", "foo*", "key*", "h?llo", "h[ae]llo", "h[^e]llo", "h[a-b]llo",
                    "a\\*b", "*[x]*", "\\[x\\]", "nomatch*", "", "*o*", "[]"):
        same("KEYS", pattern, unordered=True)


def test_keys_and_del_skip_expired(engine: Engine, run: Callable[..., object],
                                   prop: list[list[bytes]]) -> None:
    run("SET", "live", "1")
    run("SET", "dead", "1", "PX", "10")
    engine.keyspace.clock = lambda: NOW_S + 1
    assert run("KEYS", "*") == [b"live"]
    assert b"dead" in engine.keyspace.dbs[0].data  # KEYS does not delete
    assert run("DEL", "dead", "live") == 1
    # the expired key's own DEL goes first, in one MULTI/EXEC with the command (Redis 7.0)
    assert prop[-4:] == [b("MULTI"), b("DEL", "dead"), b("DEL", "dead", "live"), b("EXEC")]


def test_randomkey(same: Callable[..., object], run: Callable[..., object]) -> None:
    same("RANDOMKEY")
    same("SET", "only", "1")
    same("RANDOMKEY")
    for i in range(20):
        run("SET", f"k{i}", "v")
    assert {run("RANDOMKEY") for _ in range(200)} <= {f"k{i}".encode() for i in range(20)}


# -- SCAN ------------------------------------------------------------------------------------
def test_scan_argument_errors(same: Callable[..., object]) -> None:
    for cursor in ("", "0", "-0", "+0", "abc", " 1", "1 ", "0x10", "+", "-",
                   "18446744073709551616", "-18446744073709551616", "1.5"):
        same("SCAN", cursor)
    for opts in (("COUNT", "0"), ("COUNT", "-1"), ("COUNT", "x"), ("COUNT",), ("MATCH",),
                 ("TYPE",), ("FOO", "bar"), ("COUNT", "9223372036854775808")):
        same("SCAN", "0", *opts)
    same("SCAN", "abc", "COUNT", "0")  # the cursor is checked first


def test_scan_small_db_matches_redis(r: redis.Redis, real: redis.Redis,
                                     seed: Callable[..., None]) -> None:
    """A small db fits in one SCAN call on both servers: same cursor, same keys."""
    for i in range(15):
        r.set(f"key:{i}", i)
        real.set(f"key:{i}", i)
    seed("list:1", deque([b"a"]))
    seed("hash:1", {b"f": b"v"})
    for opts in ((), ("MATCH", "key:1*"), ("TYPE", "list"), ("TYPE", "STRING"),
                 ("TYPE", "none"), ("TYPE", "nosuchtype"), ("MATCH", "*", "TYPE", "hash")):
        args = ("SCAN", "0", "COUNT", "1000", *opts)
        ours = r.execute_command(*args, NEVER_DECODE=True)
        theirs = real.execute_command(*args, NEVER_DECODE=True)
        assert ours[0] == theirs[0] == 0  # redis-py parses SCAN's cursor
        assert sorted(ours[1]) == sorted(theirs[1]), opts


def _full_scan(run: Callable[..., object], *opts: object, mutate=None) -> list[bytes]:
    cursor = b"0"
    seen: list[bytes] = []
    calls = 0
    while True:
        cursor, found = run("SCAN", cursor, *opts)
        seen.extend(found)
        calls += 1
        if mutate is not None:
            mutate(calls)
        if cursor == b"0":
            return seen


def test_scan_returns_every_key_once(run: Callable[..., object]) -> None:
    for i in range(1000):
        run("SET", f"k{i}", "v")
    seen = _full_scan(run, "COUNT", "7")
    assert sorted(seen) == sorted(f"k{i}".encode() for i in range(1000))


def test_scan_guarantee_under_concurrent_changes(run: Callable[..., object]) -> None:
    """Keys present for the whole scan are returned; others come and go meanwhile."""
    stable = [f"stable{i}".encode() for i in range(500)]
    doomed = [f"doomed{i}".encode() for i in range(500)]
    keys = stable + doomed
    random.Random(1).shuffle(keys)
    for key in keys:
        run("SET", key, "v")
    rng = random.Random(2)

    def mutate(calls: int) -> None:
        for _ in range(5):
            if doomed:
                run("DEL", doomed.pop(rng.randrange(len(doomed))))
        for j in range(5):
            run("SET", f"new{calls}_{j}", "v")  # added meanwhile: may or may not be seen

    seen = _full_scan(run, "COUNT", "10", mutate=mutate)
    assert set(stable) <= set(seen)
    assert len(seen) == len(set(seen))
    assert not any(key.startswith(b"new") for key in seen)


def test_scan_filters(run: Callable[..., object], engine: Engine) -> None:
    for i in range(100):
        run("SET", f"str{i}", "v")
    for i in range(30):
        engine.keyspace.dbs[0].data[f"list{i}".encode()] = deque([b"x"])
    assert sorted(_full_scan(run, "TYPE", "LIST", "COUNT", "13")) == sorted(
        f"list{i}".encode() for i in range(30))
    assert sorted(_full_scan(run, "MATCH", "str1*")) == sorted(
        [b"str1"] + [f"str1{i}".encode() for i in range(10)])
    run("PEXPIRE", "str5", "1")
    engine.keyspace.clock = lambda: 2e10
    assert b"str5" not in _full_scan(run, "COUNT", "1000")


def _interleaved_scans(run: Callable[..., object], scans: int) -> list[list[bytes]]:
    cursors = [b"0"] * scans
    seen: list[list[bytes]] = [[] for _ in range(scans)]
    done = [False] * scans
    while not all(done):
        for n in range(scans):
            if not done[n]:
                cursors[n], found = run("SCAN", cursors[n], "COUNT", "10")
                seen[n].extend(found)
                done[n] = cursors[n] == b"0"
    return seen


def test_scan_more_interleaved_scans_than_snapshots(run: Callable[..., object]) -> None:
    """Round-robin scans beyond the snapshot limit: the extra ones are answered whole."""
    for i in range(200):
        run("SET", f"k{i}", "v")
    seen = _interleaved_scans(run, keys_module.MAX_LIVE_SCANS + 5)
    assert all(sorted(keys) == sorted(f"k{i}".encode() for i in range(200)) for keys in seen)


def test_scan_idle_snapshot_is_given_away(engine: Engine, run: Callable[..., object]) -> None:
    for i in range(100):
        run("SET", f"k{i}", "v")
    engine.keyspace.clock = lambda: NOW_S
    cursor, first = run("SCAN", "0")
    for _ in range(keys_module.MAX_LIVE_SCANS - 1):
        run("SCAN", "0")  # abandoned scans fill every slot
    cursor_full, batch = run("SCAN", "0")
    assert cursor_full == b"0" and len(batch) == 100  # no slot: answered whole
    engine.keyspace.clock = lambda: NOW_S + keys_module.SCAN_IDLE_MS / 1000
    cursor_new, batch = run("SCAN", "0")
    assert cursor_new != b"0" and len(batch) == 10  # took the idle scan's slot
    cursor, rest = run("SCAN", cursor)  # the idle scan lost its snapshot: the rest at once
    assert cursor == b"0"
    assert set(first) | set(rest) == {f"k{i}".encode() for i in range(100)}


def test_scan_unknown_cursor_answers_everything(run: Callable[..., object]) -> None:
    for i in range(30):
        run("SET", f"k{i}", "v")
    cursor, found = run("SCAN", "123456789")
    assert cursor == b"0" and len(found) == 30
    cursor, found = run("SCAN", "0", "COUNT", "10")
    run("SELECT", "1")  # a cursor belongs to its database
    cursor, found = run("SCAN", cursor)
    assert cursor == b"0" and found == []


def test_scan_cursors_are_c_strings(same: Callable[..., object]) -> None:
    """strtoul stops at a NUL byte: ``1\0x`` is cursor 1, ``\0`` cursor 0, in every SCAN.
    (Compact collections and empty matches: replies that do not depend on the cursor.)"""
    same("SADD", "s", "1")
    same("HSET", "h", "f", "v")
    same("ZADD", "z", "1", "m")
    for cursor in (b"1\0x", b"0\0", b"\x000", b"\0", b"x\0", b"-\0", b" 1\0"):
        same("SCAN", cursor, "MATCH", "nothing*")
        for command, key in (("SSCAN", "s"), ("HSCAN", "h"), ("ZSCAN", "z"), ("SSCAN", "no")):
            same(command, key, cursor)


# -- RENAME MOVE COPY ------------------------------------------------------------------------
def test_rename(same: Callable[..., object], seed: Callable[..., None]) -> None:
    same("SET", "a", "1")
    same("RENAME", "a", "b")
    same("EXISTS", "a", "b")
    same("RENAME", "missing", "b")
    same("RENAME", "missing", "missing")
    same("RENAME", "b", "b")
    same("RENAMENX", "b", "b")
    same("RENAMENX", "missing", "missing")
    same("SET", "c", "3", "EX", "100")
    same("RENAME", "c", "d")
    same("TTL", "d")
    same("SET", "e", "5")
    same("RENAME", "e", "d")  # the target's TTL is not inherited
    same("TTL", "d")
    same("GET", "d")
    same("SET", "f", "6")
    same("RENAMENX", "f", "d")
    same("RENAMENX", "f", "g")
    same("GET", "g")
    seed("l", deque([b"x", b"y"]))
    same("RENAME", "l", "g")
    same("TYPE", "g")


def test_move(same: Callable[..., object], db1: Callable[..., object],
              seed: Callable[..., None]) -> None:
    same("SET", "k", "v", "EX", "100")
    same("MOVE", "k", "1")
    same("EXISTS", "k")
    db1("TTL", "k")
    db1("GET", "k")
    same("SET", "k", "other")
    same("MOVE", "k", "1")  # exists there already
    same("MOVE", "missing", "1")
    same("MOVE", "k", "0")
    same("MOVE", "k", "16")
    same("MOVE", "k", "-1")
    same("MOVE", "k", "x")
    same("MOVE", "k", "4294967296")
    same("MOVE", "missing", "0")
    seed("l", deque([b"a"]))
    same("MOVE", "l", "2")
    same("EXISTS", "l")


def test_copy(same: Callable[..., object], db1: Callable[..., object],
              seed: Callable[..., None]) -> None:
    same("SET", "k", "v", "EX", "100")
    same("COPY", "k", "c")
    same("TTL", "c")
    same("GET", "c")
    same("SET", "k", "w")
    same("COPY", "k", "c")
    same("COPY", "k", "c", "REPLACE")
    same("GET", "c")
    same("TTL", "c")
    same("COPY", "k", "k")
    same("COPY", "k", "k", "DB", "0")
    same("COPY", "k", "k", "DB", "1")
    db1("GET", "k")
    same("COPY", "k", "k", "DB", "1")
    same("COPY", "k", "k", "DB", "1", "REPLACE")
    same("COPY", "missing", "x")
    same("COPY", "k", "x", "DB", "16")
    same("COPY", "k", "x", "DB", "notanumber")
    same("COPY", "k", "x", "DB")
    same("COPY", "k", "x", "FOO")
    same("COPY", "missing", "missing", "DB", "99")  # options are checked first
    seed("z", ZSet({b"a": 1.0, b"b": 2.0}))
    same("COPY", "z", "z2")
    same("TYPE", "z2")


def test_copy_is_independent(engine: Engine, run: Callable[..., object]) -> None:
    engine.keyspace.dbs[0].data[b"l"] = deque([b"a"])
    run("COPY", "l", "l2")
    engine.keyspace.dbs[0].data[b"l"].append(b"b")
    assert engine.keyspace.dbs[0].data[b"l2"] == deque([b"a"])


# -- expiry ------------------------------------------------------------------------------------
def test_expire_family(same: Callable[..., object]) -> None:
    same("SET", "k", "v")
    same("TTL", "k")
    same("PTTL", "k")
    same("EXPIRETIME", "k")
    same("PEXPIRETIME", "k")
    same("TTL", "missing")
    same("PEXPIRETIME", "missing")
    same("EXPIRE", "k", "100")
    same("TTL", "k")
    same("PEXPIRE", "k", "200000")
    same("TTL", "k")
    same("EXPIREAT", "k", str(NOW_S * 2))
    same("EXPIRETIME", "k")
    same("PEXPIREAT", "k", str(NOW_MS * 2))
    same("PEXPIRETIME", "k")
    same("PERSIST", "k")
    same("PERSIST", "k")
    same("PERSIST", "missing")
    same("TTL", "k")
    same("EXPIRE", "missing", "100")
    same("EXPIRE", "k", "x")
    same("EXPIRE", "k", "1.5")


def test_expire_options(same: Callable[..., object]) -> None:
    same("SET", "k", "v")
    same("EXPIRE", "k", "100", "XX")
    same("EXPIRE", "k", "100", "GT")
    same("EXPIRE", "k", "100", "LT")
    same("TTL", "k")
    same("PERSIST", "k")
    same("EXPIRE", "k", "100", "NX")
    same("EXPIRE", "k", "200", "NX")
    same("EXPIRE", "k", "200", "XX")
    same("EXPIRE", "k", "100", "GT")
    same("EXPIRE", "k", "300", "GT")
    same("EXPIRE", "k", "400", "LT")
    same("EXPIRE", "k", "50", "lt")
    same("EXPIRE", "k", "60", "xx", "gt")
    same("TTL", "k")
    for bad in (("NX", "XX"), ("NX", "GT"), ("NX", "LT"), ("GT", "LT"), ("XX", "NX"),
                ("FOO",), ("nx", "bar")):
        same("EXPIRE", "k", "100", *bad)
    same("EXPIRE", "k", "notint", "FOO")  # options are checked before the number
    same("EXPIRE", "k", "notint", "NX", "XX")
    same("EXPIRE", "missing", "100", "NX", "XX")
    same("EXPIRE", "missing", "x", "NX")


def test_expire_overflow_checks(same: Callable[..., object]) -> None:
    same("SET", "k", "v")
    for cmd in ("EXPIRE", "PEXPIRE", "EXPIREAT", "PEXPIREAT"):
        for value in ("9223372036854775807", "-9223372036854775808", "9223372036854775",
                      "9223372036854776", "-9223372036854775", "-9223372036854776",
                      "9223372036854775808", "9223372036854775000"):
            same("SET", "k", "v")
            same(cmd, "k", value)
            same("EXISTS", "k")
        same(cmd, "missing", "9223372036854775807")  # overflow is reported before lookup


def test_expire_in_the_past_deletes(same: Callable[..., object], seed: Callable[..., None]) -> None:
    for cmd, value in (("EXPIRE", "-1"), ("PEXPIRE", "0"), ("EXPIREAT", "1"),
                       ("PEXPIREAT", "1")):
        same("SET", "k", "v")
        same(cmd, "k", value)
        same("EXISTS", "k")
    same("SET", "k", "v", "EX", "100")
    same("EXPIRE", "k", "-5", "GT")
    same("EXPIRE", "k", "-5", "LT")
    same("EXISTS", "k")
    seed("l", deque([b"a"]))
    same("EXPIRE", "l", "0")
    same("TYPE", "l")


@pytest.mark.parametrize("command,expected", [
    (("EXPIRE", "k", "10"), [["PEXPIREAT", "k", str(NOW_MS + 10000)]]),
    (("expire", "k", "10", "NX"), [["PEXPIREAT", "k", str(NOW_MS + 10000), "NX"]]),
    (("PEXPIRE", "k", "10"), [["PEXPIREAT", "k", str(NOW_MS + 10)]]),
    (("EXPIREAT", "k", str(NOW_S + 5)), [["PEXPIREAT", "k", str(NOW_MS + 5000)]]),
    (("pexpireat", "k", str(NOW_MS + 5), "lt"), [["pexpireat", "k", str(NOW_MS + 5), "lt"]]),
    (("EXPIRE", "k", "-1"), [["DEL", "k"]]),
    (("PEXPIREAT", "k", str(NOW_MS)), [["DEL", "k"]]),
    (("EXPIRE", "k", "10", "XX"), []),
    (("EXPIRE", "missing", "10"), []),
    (("PERSIST", "k"), []),
    (("DEL", "k", "missing"), [["DEL", "k", "missing"]]),
    (("UNLINK", "missing"), []),
    (("RENAME", "k", "j"), [["RENAME", "k", "j"]]),
    (("RENAMENX", "k", "k"), []),
    (("MOVE", "k", "3"), [["MOVE", "k", "3"]]),
    (("COPY", "k", "j", "DB", "2"), [["COPY", "k", "j", "DB", "2"]]),
    (("SORT", "l", "STORE", "d"), [["SORT", "l", "STORE", "d"]]),
    (("SORT", "l"), []),
    (("TOUCH", "k"), []),
])
def test_propagation(engine: Engine, run: Callable[..., object], prop: list[list[bytes]],
                     command: tuple[str, ...], expected: list[list[str]]) -> None:
    run("SET", "k", "v")
    engine.keyspace.dbs[0].data[b"l"] = deque([b"2", b"1"])
    prop.clear()
    run(*command)
    assert prop == [b(*argv) for argv in expected]


def test_expire_on_replica_keeps_key(engine: Engine, run: Callable[..., object]) -> None:
    run("SET", "k", "v")
    engine.keyspace.expire_keys = False  # a replica waits for its master's DEL
    assert run("PEXPIREAT", "k", "1") == 1
    assert engine.keyspace.dbs[0].expires[b"k"] == 1


@pytest.mark.parametrize("command,delta", [
    (("DEL", "k", "k2", "missing"), 2), (("UNLINK", "missing"), 0), (("EXPIRE", "k", "10"), 1),
    (("EXPIRE", "k", "-1"), 1), (("EXPIRE", "k", "10", "XX"), 0), (("PERSIST", "k2"), 1),
    (("PERSIST", "k"), 0), (("RENAME", "k", "x"), 1), (("RENAME", "k", "k"), 0),
    (("RENAMENX", "k", "k2"), 0), (("MOVE", "k", "1"), 1), (("COPY", "k", "x"), 1),
    (("COPY", "k", "k2"), 0), (("SORT", "l", "STORE", "d"), 3),
    (("SORT", "l", "GET", "#", "GET", "x", "STORE", "d"), 6),
    (("SORT", "missing", "STORE", "k"), 1), (("SORT", "missing", "STORE", "nokey"), 0),
    (("SORT", "l"), 0), (("TOUCH", "k"), 0),
])
def test_dirty(engine: Engine, run: Callable[..., object], command: tuple[str, ...],
               delta: int) -> None:
    run("SET", "k", "v")
    run("SET", "k2", "v", "EX", "100")
    engine.keyspace.dbs[0].data[b"l"] = deque([b"3", b"1", b"2"])
    before = engine.dirty
    run(*command)
    assert engine.dirty - before == delta


# -- OBJECT ----------------------------------------------------------------------------------
def test_object(same: Callable[..., object], seed: Callable[..., None]) -> None:
    same("OBJECT", "HELP")
    same("object", "help")
    same("SET", "k", "v")
    same("OBJECT", "IDLETIME", "k")
    same("OBJECT", "IDLETIME", "missing")
    same("OBJECT", "FREQ", "k")
    same("OBJECT", "FREQ", "missing")
    same("OBJECT", "REFCOUNT", "missing")
    same("OBJECT", "ENCODING", "k")
    same("OBJECT", "NOSUCH", "k")
    same("OBJECT", "ENCODING")
    seed("l", deque([b"a"]))
    seed("s", {b"1", b"2"})
    seed("z", ZSet({b"a": 1.0}))
    for key in ("l", "s", "z"):
        same("OBJECT", "ENCODING", key)
        same("OBJECT", "REFCOUNT", key)


def test_object_under_lfu(engine: Engine, run: Callable[..., object]) -> None:
    run("CONFIG", "SET", "maxmemory-policy", "allkeys-lfu")
    run("SET", "k", "v")
    assert run("OBJECT", "FREQ", "k") == 5  # LFU_INIT_VAL: a new key is not cold at once
    with pytest.raises(ReplyError, match="An LFU maxmemory policy is selected, idle time not"):
        run("OBJECT", "IDLETIME", "k")


def test_object_freq_and_idletime_with_lfu_on_real(same: Callable[..., object],
                                                   configure: Callable[[str, object], None]
                                                   ) -> None:
    """The LFU errors are exactly Redis's (both servers switched to LFU for this test)."""
    same("SET", "k", "v")
    configure("maxmemory-policy", "allkeys-lfu")
    assert same("OBJECT", "IDLETIME", "k") == (
        "An LFU maxmemory policy is selected, idle time not tracked. " + keys_module._POLICY_NOTE)


# -- SORT ------------------------------------------------------------------------------------
@pytest.fixture
def sortdata(seed: Callable[..., None], same: Callable[..., object]) -> None:
    rng = random.Random(9)
    weights = rng.sample(range(1, 1000), 40)
    items = [str(i).encode() for i in range(40)]
    seed("tolist", deque(items[::-1]))
    seed("toset", set(items))
    seed("tozset", ZSet({m: float(w) for m, w in zip(items, weights[::-1], strict=True)}))
    for item, weight in zip(items, weights, strict=True):
        same("SET", b"weight_" + item, weight)
        seed(f"wobj_{item.decode()}", {b"weight": str(weight).encode(),
                                       b"name": b"n" + item})


@pytest.mark.parametrize("key", ["tolist", "toset", "tozset"])
def test_sort_numeric_and_alpha(same: Callable[..., object], sortdata: None, key: str) -> None:
    same("SORT", key)
    same("SORT", key, "DESC")
    same("SORT", key, "ALPHA")
    same("SORT", key, "ALPHA", "DESC")
    same("SORT", key, "LIMIT", "5", "10")
    same("SORT", key, "LIMIT", "-5", "10")
    same("SORT", key, "LIMIT", "35", "100")
    same("SORT", key, "LIMIT", "40", "1")
    same("SORT", key, "LIMIT", "0", "0")
    same("SORT", key, "LIMIT", "3", "-1")
    same("SORT", key, "BY", "weight_*")
    same("SORT", key, "BY", "weight_*", "DESC", "LIMIT", "2", "5")
    same("SORT", key, "BY", "wobj_*->weight")
    same("SORT", key, "BY", "wobj_*->weight", "GET", "#", "GET", "wobj_*->name",
         "GET", "weight_*", "GET", "missing_*", "GET", "nostar")
    same("SORT", key, "BY", "wobj_*->name", "ALPHA", "LIMIT", "3", "7")
    if key != "tozset":  # ties keep the load order: a zset's comes from its hash table
        same("SORT", key, "BY", "missing_*", "ALPHA")
        same("SORT", key, "BY", "nosort", "LIMIT", "3", "8")
    same("SORT_RO", key, "BY", "weight_*", "GET", "wobj_*->name")
    same("SORT", key, "BY", "weight_*", "STORE", "dst")
    same("SORT", "dst", "BY", "nosort")  # a list's own order: reads back what was stored
    same("SORT", key, "BY", "wobj_*->weight", "GET", "wobj_*->name", "GET", "#",
         "LIMIT", "1", "5", "STORE", "dst")
    same("SORT", "dst", "BY", "nosort")


def test_sort_by_constant(same: Callable[..., object], seed: Callable[..., None]) -> None:
    seed("testa", deque([b"5", b"3", b"4", b"1", b"2"]))
    same("SORT", "testa", "BY", "nosort")
    same("SORT", "testa", "BY", "nosort", "DESC")
    same("SORT", "testa", "BY", "nosort", "LIMIT", "1", "3")
    same("SORT", "testa", "BY", "nosort", "DESC", "LIMIT", "1", "3")
    same("SORT", "testa", "BY", "nosort", "LIMIT", "10", "3")
    same("SORT", "testa", "BY", "nosort", "STORE", "testb")
    same("SORT", "testb", "BY", "nosort")
    same("SORT", "testa", "BY", "nosort", "LIMIT", "0", "3", "STORE", "testb")
    same("SORT", "testb", "BY", "nosort")
    same("TYPE", "testb")
    seed("zs", ZSet({b"a": 3.0, b"b": 1.0, b"c": 2.0, b"d": 2.0}))
    same("SORT", "zs", "BY", "nosort")
    same("SORT", "zs", "BY", "nosort", "DESC")
    same("SORT", "zs", "BY", "nosort", "LIMIT", "1", "2")
    same("SORT", "zs", "BY", "nosort", "DESC", "LIMIT", "1", "2")
    same("SORT", "zs", "BY", "nosort", "GET", "#", "GET", "x*")
    seed("myset", {x.encode() for x in "a b c d e f g h i l m n aa aaa azz".split()})
    same("SORT", "myset", "ALPHA", "BY", "_", "STORE", "mylist")
    same("SORT", "mylist", "BY", "nosort")
    same("SORT", "myset", "BY", "nosort", unordered=True)


def test_sort_edge_cases(same: Callable[..., object], seed: Callable[..., None]) -> None:
    same("SORT", "missing")
    same("SORT", "missing", "STORE", "bar")
    same("EXISTS", "bar")
    seed("foo", deque([b"bar"]))
    same("SORT", "foo", "ALPHA", "LIMIT", "10", "10", "STORE", "zap")
    same("EXISTS", "zap")
    same("SORT", "emptylist", "STORE", "foo")
    same("EXISTS", "foo")
    seed("myset", {b"1", b"2", b"3", b"4", b"not-a-double"})
    same("SORT", "myset")
    same("SORT", "myset", "STORE", "dst")
    same("EXISTS", "dst")
    seed("nums", {b"1", b"2", b"3", b"4"})
    same("MSET", "score:1", "10", "score:2", "20", "score:3", "30", "score:4", "not-a-double")
    same("SORT", "nums", "BY", "score:*")
    seed("letters", {x.encode() for x in "a b c d e aa aaa azz".split()})
    for ele in "a b c d e aa aaa azz".split():
        same("SET", f"same:{ele}", "100")
    same("SORT", "letters", "BY", "same:*")
    same("SORT", "letters", "BY", "same:*", "DESC")
    seed("mylist", deque([b"a"]))
    same("SET", "x:a->", "100")
    same("SORT", "mylist", "BY", "num", "GET", "x:*->")
    same("SORT_RO", "mylist", "BY", "nosort", "GET", "x:*->")
    seed("h", {b"f": b"v"})
    same("SORT", "h")
    same("SET", "str", "v")
    same("SORT", "str")
    same("SORT", "str", "FOO")  # options are parsed before the key is looked up
    for bad in (("LIMIT",), ("LIMIT", "1"), ("LIMIT", "x", "1"), ("LIMIT", "1", "x"),
                ("BY",), ("GET",), ("STORE",), ("FOO",), ("ASC", "DESC", "ALPHA", "BAR")):
        same("SORT", "mylist", *bad)
    same("SORT_RO", "mylist", "STORE", "bar")


def test_sort_float_scores(same: Callable[..., object], seed: Callable[..., None],
                           real: redis.Redis) -> None:
    seed("fl", deque(x.encode() for x in "1.1 5.10 3.10 7.44 2.1 5.75 6.12 0.25 1.15".split()))
    same("SORT", "fl")
    values = [b"1e3", b" 5", b"0x10", b"-inf", b"+inf", b"inf", b"1e-310", b"1e400", b"",
              b"nan", b"5 ", b"1.5e", b"-0", b".5", b"7.", b"0x1p3", b"\t9", b"1e-400",
              b"infinity", b"0e-999"]
    for value in values:
        seed("one", deque([value, b"3"]))
        same("SORT", "one")
        same("SORT", "one", "DESC")
        # Redis never clears errno before strtod: an ERANGE outlives its SORT until some
        # failing syscall (the EAGAIN ending an accept loop) resets it. Reconnect.
        real.connection_pool.disconnect()


def test_sort_score_parser() -> None:
    assert sort_score(b"") == 0.0
    assert sort_score(b"  1.5") == 1.5
    assert sort_score(b"0x10") == 16.0
    assert sort_score(b"5\x00junk") == 5.0
    assert sort_score(b"nan") is None
    assert sort_score(b"1e400") is None
    assert sort_score(b"-inf") == float("-inf")


def test_sort_store_replaces_and_drops_ttl(same: Callable[..., object],
                                          seed: Callable[..., None]) -> None:
    seed("src", deque([b"3", b"1", b"2"]))
    same("SET", "dst", "old", "EX", "100")
    same("SORT", "src", "STORE", "dst")
    same("TYPE", "dst")
    same("TTL", "dst")
    same("SORT", "src", "GET", "#", "GET", "nothing_*", "STORE", "dst")
    same("SORT", "dst", "BY", "nosort")


def test_object_idletime_counts_from_the_last_access(run, engine):
    run("SET", "k", "v")
    run("SET", "other", "v")
    engine.keyspace.set_lru_clock(engine.keyspace.lru_clock + 10)
    assert run("OBJECT", "IDLETIME", "k") == 10
    run("TYPE", "k")  # no-touch commands leave the clock alone, as in Redis
    run("TTL", "k")
    run("EXISTS", "k")
    assert run("OBJECT", "IDLETIME", "k") == 10
    run("GET", "k")
    assert run("OBJECT", "IDLETIME", "k") == 0
    assert run("OBJECT", "IDLETIME", "other") == 10


def test_object_freq_under_lfu_matches_redis_for_new_and_read_keys(same, configure):
    configure("maxmemory-policy", "allkeys-lfu")
    same("SET", "k", "v")
    same("OBJECT", "FREQ", "k")
    same("GET", "k")  # the first increment is certain: probability 1 / ((5 - 5) * 10 + 1)
    same("OBJECT", "FREQ", "k")


def test_object_freq_grows_logarithmically_and_decays(run, engine):
    run("CONFIG", "SET", "maxmemory-policy", "allkeys-lfu")
    run("SET", "hot", "v")
    for _ in range(2000):
        run("GET", "hot")
    frequency = run("OBJECT", "FREQ", "hot")
    assert 10 < frequency < 40  # Redis's counter: ~log of the accesses, not their count
    engine.keyspace.set_lru_clock(engine.keyspace.lru_clock + 60 * 5)  # five idle minutes, lfu-decay-time 1
    assert run("OBJECT", "FREQ", "hot") == frequency - 5


def test_active_expiry_walks_every_key_with_a_ttl(engine: Engine, run: Callable[..., object],
                                                 propagated: list[list[bytes]]) -> None:
    """Cycles walk the TTL keys in passes: every expired key is found whatever happened to
    its neighbours meanwhile (deleted, persisted, re-created), each DEL is propagated, and
    keys with a TTL still ahead stay."""
    from kvrepl.server.cron import expire_cycle

    engine.keyspace.clock = lambda: NOW_S
    for i in range(500):
        run("SET", f"k{i}", "v", "PXAT", str(NOW_MS + (10 if i % 3 else 100_000)))
    db = engine.keyspace.dbs[0]
    assert db.active_expire_cycle(samples=20) == 0  # nothing is due: one batch, then stop
    run("DEL", "k1")
    run("PERSIST", "k2")
    run("SET", "late", "v", "PXAT", str(NOW_MS + 20))  # added after the pass began
    engine.keyspace.clock = lambda: NOW_S + 1
    propagated.clear()
    deleted = 0
    for _ in range(200):
        deleted += expire_cycle(engine)
        if len(db.expires) == 166:  # the k<multiple of 3> keys, still ahead
            break
    assert deleted == 333 - 2 + 1
    assert sorted(db.expires) == sorted(b"k%d" % i for i in range(0, 500, 3))
    assert b"k2" in db.data and b"late" not in db.data
    assert {tuple(argv) for argv in propagated} == {
        (b"DEL", b"k%d" % i) for i in range(500) if i % 3 and i not in (1, 2)} | {
        (b"DEL", b"late")}
