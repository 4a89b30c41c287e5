"""Set commands against a real redis-server 7.0 (the oracle) and on the engine."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
import redis

from kvrepl.commands.core import Engine
from kvrepl.commands.scan import CollectionCache, parse_scan_cursor, scan_collection
from kvrepl.errors import ReplyError

Same = Callable[..., object]


@pytest.fixture
def small_intset(configure: Callable[[str, object], None]) -> None:
    """set-max-intset-entries 8 on both servers, so that big integer sets stay small."""
    configure("set-max-intset-entries", 8)


def test_sadd_srem_basics(same: Same, r: redis.Redis) -> None:
    assert same("SADD", "s", "a", "b", "c", "a") == 3
    assert same("SADD", "s", "a", "d") == 1
    same("SCARD", "s")
    same("SCARD", "missing")
    same("SISMEMBER", "s", "a")
    same("SISMEMBER", "s", "z")
    same("SISMEMBER", "missing", "a")
    same("SMISMEMBER", "s", "a", "z", "d")
    same("SMISMEMBER", "missing", "a", "b")
    same("SMEMBERS", "s", unordered=True)
    same("SMEMBERS", "missing")
    assert same("SREM", "s", "a", "z", "a") == 1
    same("SREM", "missing", "a")
    assert same("SREM", "s", "b", "c", "d", "e") == 3
    assert r.dbsize() == 0


def test_intset_order_is_numeric(same: Same, wire) -> None:
    """Redis iterates an intset in ascending order; RESP2 replies show it."""
    same("SADD", "i", "10", "-3", "7", "1000000000000", "0", "-9223372036854775808")
    for command in (
        ("SMEMBERS", "i"), ("SSCAN", "i", "0"), ("SSCAN", "i", "0", "MATCH", "1*", "COUNT", "1"),
        ("SRANDMEMBER", "i", "100"), ("SUNION", "i", "missing"), ("SDIFF", "i", "missing"),
        ("SINTER", "i", "i"),
    ):
        wire(*command)
    same("SADD", "j", "7", "10", "x", "-3")
    same("SINTER", "i", "j", unordered=True)  # "j" drives the order: hash-table order
    same("SADD", "k", "10", "7", "-3", "99", "98", "97", "96", "95")
    wire("SINTER", "i", "k")
    wire("SINTER", "k", "i")
    wire("SDIFF", "j", "k")
    wire("SPOP", "i", "100")
    wire("SSCAN", "k", "0", protocol=3)  # SSCAN answers arrays, ordered in RESP3 too


def test_wrong_type_and_arguments(same: Same) -> None:
    same("SET", "str", "x")
    same("SADD", "s", "a")
    for command in (
        ("SADD", "str", "a"), ("SREM", "str", "a"), ("SCARD", "str"),
        ("SISMEMBER", "str", "a"), ("SMISMEMBER", "str", "a"), ("SMEMBERS", "str"),
        ("SPOP", "str"), ("SPOP", "str", "1"), ("SRANDMEMBER", "str"),
        ("SRANDMEMBER", "str", "2"), ("SINTER", "s", "str"), ("SINTER", "missing", "str"),
        ("SINTERSTORE", "d", "missing", "str"), ("SINTERCARD", "2", "s", "str"),
        ("SUNION", "s", "str"), ("SUNIONSTORE", "d", "s", "str"), ("SDIFF", "s", "str"),
        ("SDIFF", "missing", "str"), ("SDIFFSTORE", "d", "s", "str"), ("SSCAN", "str", "0"),
        ("SMOVE", "str", "s", "a"), ("SMOVE", "s", "str", "a"),
    ):
        same(*command)
    same("SMOVE", "missing", "str", "a")  # a missing source answers 0 before type checks
    same("SMISMEMBER", "s")
    same("SPOP", "s", "1", "2")
    same("SRANDMEMBER", "s", "1", "2")
    for count in ("x", "-1", "1.5", "-0", "9223372036854775808"):
        same("SPOP", "s", count)
        same("SPOP", "str", count)
    for count in ("x", "1.5", "-9223372036854775808", "9223372036854775808", "-0"):
        same("SRANDMEMBER", "s", count)
        same("SRANDMEMBER", "str", count)


def test_spop_and_srandmember_edges(same: Same) -> None:
    same("SPOP", "missing")
    same("SPOP", "missing", "3")
    same("SPOP", "missing", "0")
    same("SRANDMEMBER", "missing")
    same("SRANDMEMBER", "missing", "5")
    same("SRANDMEMBER", "missing", "-5")
    same("SADD", "s", "a")
    same("SRANDMEMBER", "s", "0")
    same("SPOP", "s", "0")
    same("SRANDMEMBER", "s")
    same("SRANDMEMBER", "s", "-3")
    same("SRANDMEMBER", "s", "3")
    same("SPOP", "s")
    same("SCARD", "s")
    same("SADD", "s", "a")
    same("SPOP", "s", "5")
    same("SCARD", "s")


@pytest.mark.parametrize("members", [
    [str(i) for i in range(20)],
    [f"m{i}" for i in range(20)],
])
def test_random_properties(r: redis.Redis, real: redis.Redis, members: list[str]) -> None:
    everything = {m.encode() for m in members}
    for client in (r, real):
        client.sadd("s", *members)
        for _ in range(20):
            assert client.srandmember("s") in everything
        for count in (1, 2, 5, 19, 20, 25):
            got = client.srandmember("s", count)
            assert len(got) == min(count, 20) and len(set(got)) == len(got)
            assert set(got) <= everything
        for count in (-1, -5, -100):
            got = client.srandmember("s", count)
            assert len(got) == -count and set(got) <= everything
        seen: set[bytes] = set()
        for _ in range(200):
            seen.update(client.srandmember("s", -3))
        assert seen == everything
        popped = [client.spop("s")]
        for count in (1, 3, 12):  # small and large parts of what remains
            popped.extend(client.spop("s", count))
        assert len(popped) == len(set(popped)) == 17 and set(popped) <= everything
        assert client.scard("s") == 3
        assert set(popped) | client.smembers("s") == everything
        rest = client.spop("s", 10)
        assert len(rest) == 3 and client.dbsize() == 0


def test_spop_propagation(run, propagated: list[list[bytes]]) -> None:
    run("SADD", "s", *[f"m{i}" for i in range(10)])
    propagated.clear()
    one = run("SPOP", "s")
    assert propagated == [[b"SREM", b"s", one]]
    propagated.clear()
    three = run("SPOP", "s", "3")
    # Redis 7.0 sends one SREM per member, wrapped in MULTI/EXEC.
    assert propagated == [[b"MULTI"], *[[b"SREM", b"s", m] for m in three], [b"EXEC"]]
    propagated.clear()
    two = run("SPOP", "s", "1")
    assert propagated == [[b"SREM", b"s", two[0]]]
    propagated.clear()
    rest = run("SPOP", "s", "10")
    assert len(rest) == 5 and propagated == [[b"DEL", b"s"]]
    propagated.clear()
    assert run("SPOP", "s", "10") == set()
    run("SPOP", "s")
    assert propagated == []


def test_writes_propagate_only_when_they_change(run, propagated: list[list[bytes]]) -> None:
    run("SADD", "s", "a")
    run("SADD", "s", "a")
    run("SREM", "s", "z")
    run("SMOVE", "s", "t", "z")
    run("SINTERSTORE", "d", "s", "nothing")  # d does not exist: nothing to do
    run("SMOVE", "s", "t", "a")
    assert propagated == [[b"SADD", b"s", b"a"], [b"SMOVE", b"s", b"t", b"a"]]


def _exists(server, key: bytes) -> bool:
    """Whether kvrepl holds ``key`` in db 0 (EXISTS belongs to another family)."""
    return key in server.engine.keyspace.dbs[0].data


def test_smove(same: Same, kvrepl_server) -> None:
    same("SADD", "src", "a", "b", "1")
    same("SADD", "dst", "2", "3")
    assert same("SMOVE", "src", "dst", "a") == 1
    assert same("SMOVE", "src", "dst", "zz") == 0
    same("SMEMBERS", "src", unordered=True)
    same("SMEMBERS", "dst", unordered=True)
    same("SADD", "dst", "b")
    assert same("SMOVE", "src", "dst", "b") == 1  # already in dst: still moved out of src
    same("SMEMBERS", "src")
    same("SMOVE", "src", "src", "1")
    same("SMOVE", "src", "src", "9")
    same("SMOVE", "src", "new", "1")
    same("SMEMBERS", "new")
    assert not _exists(kvrepl_server, b"src")
    same("SMOVE", "missing", "dst", "a")


def test_sintercard(same: Same) -> None:
    same("SADD", "a", "1", "2", "3", "4", "x")
    same("SADD", "b", "2", "3", "4", "x", "y")
    same("SADD", "c", "3", "4", "x", "z")
    for args in (
        ("1", "a"), ("2", "a", "b"), ("3", "a", "b", "c"), ("2", "a", "missing"),
        ("3", "a", "b", "c", "LIMIT", "2"), ("3", "a", "b", "c", "limit", "0"),
        ("3", "a", "b", "c", "LIMIT", "100"), ("2", "a", "a"),
        ("2", "a", "b", "LIMIT", "1", "LIMIT", "0"),
        # errors, word for word
        ("0", "a"), ("-1", "a"), ("x", "a"), ("3", "a", "b"), ("1", "a", "LIMIT"),
        ("1", "a", "LIMIT", "-1"), ("1", "a", "LIMIT", "x"), ("1", "a", "BOGUS", "1"),
        ("1", "a", "b"),
    ):
        same("SINTERCARD", *args)


def test_intersections(same: Same, kvrepl_server) -> None:
    same("SADD", "a", *[str(i) for i in range(10)])
    same("SADD", "b", *[str(i) for i in range(5, 15)])
    same("SADD", "c", "7", "8", "9", "x")
    same("SINTER", "a", "b")
    same("SINTER", "a", "b", "c", unordered=True)
    same("SINTER", "a", "missing", "b")
    same("SINTER", "missing")
    assert same("SINTERSTORE", "d", "a", "b", "c") == 3
    same("SMEMBERS", "d", unordered=True)
    assert same("SINTERSTORE", "d", "a", "missing") == 0
    assert not _exists(kvrepl_server, b"d")
    assert same("SINTERSTORE", "d", "a", "missing") == 0
    same("SET", "d", "string")
    assert same("SINTERSTORE", "d", "a", "b") == 5
    same("SMEMBERS", "d")
    assert same("SINTERSTORE", "a", "a", "c") == 3
    same("SMEMBERS", "a")


def test_unions_and_differences(same: Same, kvrepl_server) -> None:
    same("SADD", "a", "1", "2", "3", "4", "5")
    same("SADD", "b", "4", "5", "6")
    same("SADD", "c", "x", "1")
    same("SUNION", "a", "b")
    same("SUNION", "a", "b", "c", "missing", unordered=True)
    same("SUNION", "missing")
    same("SDIFF", "a", "b")
    same("SDIFF", "a", "b", "c")
    same("SDIFF", "a", "a")
    same("SDIFF", "a", "missing", "b")
    same("SDIFF", "missing", "a")
    same("SDIFF", "c", "a", unordered=True)
    # The second diff algorithm keeps a big first set's encoding: the order shows it.
    same("SDIFF", "b", "a", "c")
    assert same("SUNIONSTORE", "d", "a", "b") == 6
    same("SMEMBERS", "d")
    assert same("SDIFFSTORE", "d", "a", "b", "c") == 2
    same("SMEMBERS", "d")
    assert same("SDIFFSTORE", "d", "a", "a") == 0
    assert not _exists(kvrepl_server, b"d")
    assert same("SUNIONSTORE", "d", "missing", "missing2") == 0
    same("SET", "d", "x")
    assert same("SUNIONSTORE", "d", "c") == 2
    same("SMEMBERS", "d", unordered=True)


def test_store_drops_ttl(run, engine: Engine) -> None:
    run("SADD", "a", "1")
    run("SADD", "d", "old")
    db = engine.keyspace.dbs[0]
    db.set_expire(b"d", engine.keyspace.now_ms() + 100_000)
    run("SUNIONSTORE", "d", "a")
    assert db.get_expire(b"d") is None
    assert run("SMEMBERS", "d") == [b"1"]


def test_intset_limit_changes_order(same: Same, small_intset: None) -> None:
    same("SADD", "small", *[str(i) for i in range(8)])
    same("SMEMBERS", "small")
    same("SSCAN", "small", "0", "COUNT", "1")
    same("SADD", "big", *[str(i) for i in range(9)])
    same("SMEMBERS", "big", unordered=True)
    same("SUNION", "small", "big", unordered=True)
    same("SDIFF", "big", "small")


@pytest.mark.parametrize("count", [1, 7, 10, 5000])
def test_sscan_big_set_returns_everything(r: redis.Redis, real: redis.Redis,
                                          count: int) -> None:
    members = {f"member:{i}".encode() for i in range(400)}
    for client in (r, real):
        client.sadd("s", *members)
        assert set(client.sscan_iter("s", count=count)) == members
        assert set(client.sscan_iter("s", match="member:9*", count=count)) == {
            m for m in members if m.startswith(b"member:9")}


def test_sscan_small_hash_table_set_in_one_call(r: redis.Redis) -> None:
    r.sadd("s", "a", "b", "c")
    cursor, batch = r.sscan("s", 0)
    assert cursor == 0 and sorted(batch) == [b"a", b"b", b"c"]


def test_sscan_errors(same: Same) -> None:
    same("SADD", "s", "a", "b")
    for cursor in ("x", " 0", "-", "18446744073709551616"):
        same("SSCAN", "s", cursor)
    for options in (("COUNT", "0"), ("COUNT", "x"), ("MATCH",), ("TYPE", "set"), ("X", "1")):
        same("SSCAN", "s", "0", *options)
    same("SSCAN", "missing", "0", "COUNT", "0")
    same("SSCAN", "missing", "x")


def test_sscan_guarantee_under_mutation(r: redis.Redis) -> None:
    """Members present for the whole scan come back even while others come and go."""
    stable = {f"stable:{i}".encode() for i in range(400)}
    r.sadd("s", *stable, *[f"gone:{i}" for i in range(400)])
    cursor, seen, step = 0, set(), 0
    while True:
        cursor, batch = r.sscan("s", cursor, count=9)
        seen.update(batch)
        step += 1
        r.srem("s", *[f"gone:{i}" for i in range(step * 5, step * 5 + 5)])
        r.sadd("s", *[f"new:{step}:{i}" for i in range(20)])
        # Another scan starting meanwhile must not disturb this one.
        r.sscan("s", 0, count=3)
        if cursor == 0:
            break
    assert stable <= seen and step > 20


class _Colliding(bytes):
    """A member whose hash collides with others, to exercise cursor groups."""

    def __hash__(self) -> int:
        return int(self[1:]) // 4 * 2  # cursor positions are hash values halved


def test_scan_collection_never_splits_a_cursor_position() -> None:
    members = {_Colliding(b"m%d" % i) for i in range(40)}
    cursor, seen, calls = 0, [], 0
    while True:
        cursor, batch = scan_collection(members, cursor, 3)
        seen.extend(batch)
        calls += 1
        assert len(batch) % 4 == 0  # whole groups of four only
        if cursor == 0:
            break
    assert sorted(seen) == sorted(members) and calls == 10


def test_parse_scan_cursor_like_strtoul() -> None:
    assert parse_scan_cursor(b"") == 0
    assert parse_scan_cursor(b"+12") == 12
    assert parse_scan_cursor(b"-1") == 2**64 - 1
    assert parse_scan_cursor(b"18446744073709551615") == 2**64 - 1
    assert parse_scan_cursor(b"+7\0x") == 7  # the C string ends at the NUL
    assert parse_scan_cursor(b"\0") == 0
    for bad in (b" 1", b"1 ", b"-", b"x", b"0x10", b"18446744073709551616", b"\xff", b"-\0"):
        with pytest.raises(ReplyError, match="ERR invalid cursor"):
            parse_scan_cursor(bad)


def test_resp3_shapes(kvrepl_server, redis_server, r: redis.Redis, real: redis.Redis) -> None:
    replies = []
    for server in (kvrepl_server, redis_server):
        client = server.client(protocol=3)
        try:
            client.sadd("s3", "a", "b", "c")
            client.sadd("i3", "3", "1", "2")
            replies.append({
                "smembers": client.execute_command("SMEMBERS", "s3"),
                "intset": client.execute_command("SMEMBERS", "i3"),
                "empty": client.execute_command("SMEMBERS", "nope"),
                "sinter": client.execute_command("SINTER", "s3", "s3"),
                "sinter_missing": client.execute_command("SINTER", "s3", "nope"),
                "sunion": client.execute_command("SUNION", "s3", "i3"),
                "sdiff": client.execute_command("SDIFF", "s3", "i3"),
                "srandmember": sorted(client.execute_command("SRANDMEMBER", "s3", "5")),
                "spop_none": client.execute_command("SPOP", "nope", "2"),
                "spop_zero": client.execute_command("SPOP", "s3", "0"),
                "spop_all": sorted(client.execute_command("SPOP", "i3", "5")),
                "spop_nil": client.execute_command("SPOP", "nope"),
                "smismember": client.execute_command("SMISMEMBER", "s3", "a", "z"),
                "sscan": client.execute_command("SSCAN", "nope", "0"),
            })
        finally:
            client.close()
    assert replies[0] == replies[1]
    assert replies[0]["smembers"] == {b"a", b"b", b"c"}
    assert replies[0]["spop_none"] == [] and replies[0]["srandmember"] == [b"a", b"b", b"c"]


def test_resp3_wire_types(same: Same, wire) -> None:
    """RESP3 types byte for byte: sets where Redis sends sets, arrays where arrays."""
    same("SADD", "s", "a")
    same("SADD", "i", "1")
    for command in (
        ("SMEMBERS", "s"), ("SMEMBERS", "nope"), ("SINTER", "s", "nope"), ("SINTER", "s", "s"),
        ("SUNION", "s", "nope"), ("SDIFF", "s", "i"), ("SDIFF", "nope", "s"),
        ("SRANDMEMBER", "s", "3"), ("SRANDMEMBER", "s", "-2"), ("SRANDMEMBER", "nope", "3"),
        ("SRANDMEMBER", "nope"), ("SPOP", "nope"), ("SPOP", "nope", "2"), ("SPOP", "s", "0"),
        ("SMISMEMBER", "s", "a", "b"), ("SSCAN", "s", "0"), ("SSCAN", "nope", "0"),
        ("SPOP", "i", "3"), ("SPOP", "s"),
    ):
        wire(*command, protocol=3)
    # An intset iterates in ascending order, and RESP3 set replies keep it.
    same("SADD", "n", "30", "-2", "100", "7", "1")
    same("SADD", "m", "7", "8", "-2")
    for command in (("SMEMBERS", "n"), ("SUNION", "n", "m"), ("SDIFF", "n", "m"),
                    ("SINTER", "n", "m"), ("SPOP", "m", "5")):
        wire(*command, protocol=3)


def test_random_picks_stay_exact_under_every_change(run) -> None:
    """Big sets keep a list mirror for O(1) picks: every write must keep it exact."""
    rng = random.Random(7)
    model = {b"m%d" % i for i in range(200)}
    run("SADD", "s", *model)
    for step in range(600):
        op = rng.choice(["spop", "spopn", "sadd", "srem", "smove", "srand"])
        if op == "spop":
            popped = run("SPOP", "s")
            assert popped in model
            model.discard(popped)
        elif op == "spopn":
            popped = run("SPOP", "s", rng.randint(1, 5))
            assert set(popped) <= model and len(set(popped)) == len(popped)
            model -= set(popped)
        elif op == "sadd":
            new = [b"n%d" % rng.randint(0, 300) for _ in range(3)]
            assert run("SADD", "s", *new) == len(set(new) - model)
            model |= set(new)
        elif op == "srem":
            gone = [rng.choice(sorted(model)), b"absent"] if model else [b"absent"]
            run("SREM", "s", *gone)
            model -= set(gone)
        elif op == "smove" and model:
            member = rng.choice(sorted(model))
            assert run("SMOVE", "s", "other", member) == 1
            model.discard(member)
        elif op == "srand" and model:
            assert set(run("SRANDMEMBER", "s", "-5")) <= model
            assert set(run("SRANDMEMBER", "s", "5")) <= model
        assert run("SCARD", "s") == len(model), step
        if len(model) < 80:
            run("SADD", "s", *(b"r%d:%d" % (step, i) for i in range(100)))
            model |= {b"r%d:%d" % (step, i) for i in range(100)}


def test_collection_cache_forgets_deleted_collections() -> None:
    cache = CollectionCache(4)
    kept, dropped = {b"a"}, {b"b"}
    cache.put(kept, "kept")
    cache.put(dropped, "dropped")
    del dropped
    cache.put({b"c"}, "c")  # sweeps: only the cache referenced the deleted set
    assert cache.get(kept) == "kept"
    assert len(cache.entries) == 2
    for i in range(10):
        cache.put({b"%d" % i}, i)
    assert len(cache.entries) <= 4
