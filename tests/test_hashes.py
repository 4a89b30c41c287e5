"""Hash commands against a real redis-server 7.0 (the oracle) and on the engine."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

Same = Callable[..., object]


@pytest.fixture
def small_listpack(configure: Callable[[str, object], None]) -> None:
    """Tiny listpack limits on both servers so that hash-table hashes stay small in tests."""
    configure("hash-max-listpack-entries", 4)
    configure("hash-max-listpack-value", 8)


def test_hset_hget_basics(same: Same, wire) -> None:
    assert same("HSET", "h", "a", "1", "b", "2", "c", "3") == 3
    assert same("HSET", "h", "a", "10", "d", "4") == 1
    same("HGET", "h", "a")
    same("HGET", "h", "nope")
    same("HGET", "missing", "a")
    same("HMGET", "h", "a", "nope", "d")
    same("HMGET", "missing", "a", "b")
    same("HLEN", "h")
    same("HLEN", "missing")
    same("HEXISTS", "h", "a")
    same("HEXISTS", "h", "zz")
    same("HEXISTS", "missing", "a")
    # Small hashes are listpacks in Redis: the order is insertion order, updates in place.
    for protocol in (2, 3):
        for command in ("HGETALL", "HKEYS", "HVALS"):
            wire(command, "h", protocol=protocol)
            wire(command, "missing", protocol=protocol)
        wire("HMGET", "missing", "a", protocol=protocol)
        wire("HGET", "missing", "a", protocol=protocol)


def test_hset_arity_and_wrong_type(same: Same) -> None:
    same("HSET", "h", "a", "1", "b")
    same("HMSET", "h", "a", "1", "b")
    same("hset", "h")
    same("HMSET", "h", "a", "1", "b", "2")
    same("HGETALL", "h")
    same("SET", "str", "x")
    for command in (
        ("HSET", "str", "a", "1"), ("HSETNX", "str", "a", "1"), ("HGET", "str", "a"),
        ("HMGET", "str", "a"), ("HDEL", "str", "a"), ("HLEN", "str"), ("HEXISTS", "str", "a"),
        ("HKEYS", "str"), ("HVALS", "str"), ("HGETALL", "str"), ("HSTRLEN", "str", "a"),
        ("HINCRBY", "str", "a", "1"), ("HINCRBYFLOAT", "str", "a", "1"),
        ("HRANDFIELD", "str"), ("HRANDFIELD", "str", "2"), ("HSCAN", "str", "0"),
    ):
        same(*command)
    # Argument errors come before the type check where Redis parses first.
    same("HINCRBY", "str", "a", "x")
    same("HINCRBYFLOAT", "str", "a", "x")
    same("HSCAN", "str", "x")
    same("HRANDFIELD", "str", "x")


def test_hsetnx(same: Same) -> None:
    assert same("HSETNX", "h", "a", "1") == 1
    assert same("HSETNX", "h", "a", "2") == 0
    same("HGET", "h", "a")


def test_hdel_removes_empty_hash(same: Same, r: redis.Redis) -> None:
    same("HSET", "h", "a", "1", "b", "2", "c", "3")
    assert same("HDEL", "h", "a", "nope", "a") == 1
    assert same("HDEL", "h", "b", "c", "d") == 2
    same("HLEN", "h")
    assert r.dbsize() == 0
    same("HDEL", "missing", "a")


def test_hstrlen_corner_cases(same: Same) -> None:
    for v in ("-9223372036854775808", "9223372036854775807", "9223372036854775808", "", "0",
              "-1", "x", "12345678901234567890abc"):
        same("HSET", "h", "field", v)
        same("HSTRLEN", "h", "field")
    same("HSTRLEN", "h", "nope")
    same("HSTRLEN", "missing", "nope")


def test_hincrby(same: Same) -> None:
    same("HINCRBY", "h", "n", "5")
    same("HINCRBY", "h", "n", "-12")
    same("HSET", "h", "big", "17179869184")
    same("HINCRBY", "h", "big", "17179869184")
    for bad in (" 11", "11 ", "1.5", "abc", "", "-0"):
        same("HSET", "h", "bad", bad)
        same("HINCRBY", "h", "bad", "1")
    same("HINCRBY", "h", "n", "1.5")
    same("HINCRBY", "h", "n", "9223372036854775808")
    same("HSET", "h", "edge", "-9223372036854775484")
    same("HINCRBY", "h", "edge", "-1")
    same("HINCRBY", "h", "edge", "-10000")
    same("HSET", "h", "top", "9223372036854775807")
    same("HINCRBY", "h", "top", "1")
    same("HINCRBY", "h", "top", "0")
    same("HGETALL", "h")


@pytest.mark.parametrize("steps", [
    [("f", "1.23"), ("f", "0.77"), ("f", "-0.1")],
    [("f", "10.5"), ("f", "0.1")],
    [("f", "3.0e3"), ("f", "+.5"), ("f", "5."), ("f", "-1E-3")],
    [("f", "0x10"), ("f", "0x1.8p1"), ("f", "-0X.8")],
    [("f", "1e4000"), ("f", "1")],
    [("f", "1e4932"), ("f", "1e4932")],
    [("f", "5e-4900"), ("f", "0")],
    [("f", "0.1"), ("f", "-0.1")],
    [("f", "17179869184"), ("f", "17179869184")],
    # long double limits: the smallest subnormal, values that round to it, the largest value
    [("a", "0x1p-16445"), ("b", "0x1.0000000000000002p-16446"), ("c", "4e-4951")],
    [("f", "0x1.fffffffffffffffep16383"), ("g", "1.18973149535723176502e4932")],
    [("f", "0." + "1" * 5000), ("g", "0x." + "1" * 5000), ("h", "1" * 4930 + ".5")],
])
def test_hincrbyfloat_arithmetic(same: Same, steps: list[tuple[str, str]]) -> None:
    for field, increment in steps:
        same("HINCRBYFLOAT", "h", field, increment)
        same("HGET", "h", field)


def test_hincrbyfloat_errors(same: Same, r: redis.Redis) -> None:
    for increment in ("inf", "+inf", "-Infinity", "nan", "NaN", "abc", "", " 1", "1 ", "1e",
                      "1e-5000", "2e4932", "0x", "1_0", "0x1p-16446", "1e-4951",
                      "0x1.ffffffffffffffffp16383", "1.18973149535723176509e4932", "1" * 5119,
                      "0x" + "f" * 5000, "1e999999999999"):
        same("HINCRBYFLOAT", "hfoo", "field", increment)
    assert r.dbsize() == 0
    for stored in (" 11", "11 ", "1\x002", "abc", "inf", "-inf", "nan", "1e99999"):
        same("HSET", "h", "f", stored)
        same("HINCRBYFLOAT", "h", "f", "1")
    same("HGET", "h", "f")


def test_hincrbyfloat_propagates_hset(run, propagated: list[list[bytes]]) -> None:
    assert run("HINCRBYFLOAT", "h", "f", "10.5") == b"10.5"
    assert run("HINCRBYFLOAT", "h", "f", "0.1") == b"10.6"
    assert propagated == [[b"HSET", b"h", b"f", b"10.5"], [b"HSET", b"h", b"f", b"10.6"]]
    with pytest.raises(Exception, match="NaN or Infinity"):
        run("HINCRBYFLOAT", "h", "f", "inf")
    assert len(propagated) == 2


def test_writes_propagate_only_when_they_change(run, propagated: list[list[bytes]]) -> None:
    run("HSET", "h", "a", "1")
    run("HSETNX", "h", "a", "2")
    run("HDEL", "h", "zz")
    run("HDEL", "h", "a")
    run("HINCRBY", "h", "n", "3")
    assert propagated == [
        [b"HSET", b"h", b"a", b"1"], [b"HDEL", b"h", b"a"], [b"HINCRBY", b"h", b"n", b"3"]]


def test_big_hash_commands(same: Same, same3: Same, small_listpack: None) -> None:
    pairs = [x for i in range(20) for x in (f"field:{i}", str(i))]
    same("HSET", "h", *pairs)
    same("HSET", "long", "f", "123456789")
    for h in ("h", "long"):
        same("HLEN", h)
        same("HKEYS", h, unordered=True)
        same("HVALS", h, unordered=True)
    ours = same3("HGETALL", "h")  # a map: compared pair by pair, in any order
    assert len(ours) == 20
    same("HMGET", "h", "field:3", "field:19", "nope")
    same("HINCRBY", "h", "field:3", "7")
    same("HINCRBYFLOAT", "h", "field:4", "0.25")
    same("HDEL", "h", *[f"field:{i}" for i in range(18)])
    same3("HGETALL", "h")


def test_hrandfield_errors(same: Same, wire) -> None:
    same("HSET", "h", "a", "1")
    same("HRANDFIELD", "h", "-9223372036854770000", "withvalues")
    same("HRANDFIELD", "h", "-9223372036854775808", "withvalues")
    same("HRANDFIELD", "h", "-9223372036854775808")
    same("HRANDFIELD", "h", "9223372036854775807", "withvalues")
    same("HRANDFIELD", "h", "4611686018427387904", "withvalues")
    same("HRANDFIELD", "h", "1", "withscores")
    same("HRANDFIELD", "h", "1", "withvalues", "x")
    same("HRANDFIELD", "h", "x")
    same("HRANDFIELD", "h", "1.5")
    same("HRANDFIELD", "h", "0")
    same("HRANDFIELD", "h", "0", "WITHVALUES")
    same("HRANDFIELD", "missing")
    same("HRANDFIELD", "missing", "100")
    same("HRANDFIELD", "missing", "-100", "withvalues")
    # Whole-hash replies are deterministic: a small hash in listpack order.
    same("HSET", "h", "b", "2", "c", "3")
    for protocol in (2, 3):
        wire("HRANDFIELD", "h", "3", protocol=protocol)
        wire("HRANDFIELD", "h", "30", "WITHVALUES", protocol=protocol)
        wire("HRANDFIELD", "missing", protocol=protocol)
        wire("HRANDFIELD", "missing", "3", "WITHVALUES", protocol=protocol)
        wire("HRANDFIELD", "h", "0", "WITHVALUES", protocol=protocol)


@pytest.mark.parametrize("big", [False, True])
def test_hrandfield_properties(r: redis.Redis, real: redis.Redis, small_listpack: None,
                               big: bool) -> None:
    mapping = {f"f{i}".encode(): f"v{i}".encode() for i in range(10 if big else 4)}
    for client in (r, real):
        client.hset("h", mapping=mapping)
        for _ in range(30):
            assert client.hrandfield("h") in mapping
        for count in (-1, -5, -50):
            got = client.hrandfield("h", count)
            assert len(got) == -count and set(got) <= set(mapping)
            flat = client.hrandfield("h", count, withvalues=True)
            assert len(flat) == -2 * count
            assert all(mapping[flat[i]] == flat[i + 1] for i in range(0, len(flat), 2))
        for count in (1, 2, 3, len(mapping) - 1, len(mapping), len(mapping) + 5):
            got = client.hrandfield("h", count)
            assert len(got) == min(count, len(mapping))
            assert len(set(got)) == len(got) and set(got) <= set(mapping)
            flat = client.hrandfield("h", count, withvalues=True)
            pairs = dict(zip(flat[::2], flat[1::2], strict=True))
            assert len(pairs) == min(count, len(mapping))
            assert all(mapping[k] == v for k, v in pairs.items())
        seen = set()
        for _ in range(200):
            seen.update(client.hrandfield("h", -3))
        assert seen == set(mapping)


def test_resp3_shapes(kvrepl_server, redis_server, r: redis.Redis, real: redis.Redis) -> None:
    replies = []
    for server in (kvrepl_server, redis_server):
        client = server.client(protocol=3)
        try:
            client.hset("h3", mapping={"a": "1", "b": "2", "c": "3"})
            got = {
                "hgetall": client.execute_command("HGETALL", "h3"),
                "empty": client.execute_command("HGETALL", "nope"),
                "one": client.execute_command("HRANDFIELD", "h3", "1", "WITHVALUES"),
                "all": client.execute_command("HRANDFIELD", "h3", "5", "WITHVALUES"),
                "fields": client.execute_command("HRANDFIELD", "h3", "5"),
                "missing": client.execute_command("HRANDFIELD", "nope"),
                "missing_count": client.execute_command("HRANDFIELD", "nope", "2", "WITHVALUES"),
                "draws": client.execute_command("HRANDFIELD", "h3", "-4", "WITHVALUES"),
                "hscan": client.execute_command("HSCAN", "h3", "0"),
            }
        finally:
            client.close()
        assert got["hgetall"] == {b"a": b"1", b"b": b"2", b"c": b"3"}
        assert got["empty"] == {}
        assert len(got["draws"]) == 4
        assert all(len(pair) == 2 and got["hgetall"][pair[0]] == pair[1]
                   for pair in got["draws"])
        del got["draws"]
        one = got.pop("one")
        assert len(one) == 1 and got["hgetall"][one[0][0]] == one[0][1]
        replies.append(got)
    assert replies[0] == replies[1]
    assert replies[0]["all"] == [[b"a", b"1"], [b"b", b"2"], [b"c", b"3"]]


def test_hscan_small_hash_in_one_call(same: Same, wire) -> None:
    same("HSET", "h", *[x for i in range(100) for x in (f"k{i}", f"v{i}")])
    same("HSET", "h", "k5", "new")
    for protocol in (2, 3):
        wire("HSCAN", "h", "0", protocol=protocol)
        wire("HSCAN", "h", "0", "COUNT", "5", protocol=protocol)
        wire("HSCAN", "h", "12345", "count", "1", protocol=protocol)
        wire("HSCAN", "h", "0", "MATCH", "k1*", protocol=protocol)
        wire("HSCAN", "h", "0", "MATCH", "*", "COUNT", "3", "MATCH", "k?", protocol=protocol)
        wire("HSCAN", "missing", "0", protocol=protocol)
    # On a missing key the options are not even parsed.
    same("HSCAN", "missing", "0", "COUNT", "0")
    same("HSCAN", "missing", "0", "bogus")


def test_scan_cursor_and_option_errors(same: Same) -> None:
    same("HSET", "h", "a", "1")
    for cursor in ("x", " 1", "1 ", "-", "+", "18446744073709551616", "1.0", "0x1"):
        same("HSCAN", "h", cursor)
    for cursor in ("", "+0", "-1", "007", "18446744073709551615", "-18446744073709551615"):
        same("HSCAN", "h", cursor)
    for options in (("COUNT", "0"), ("COUNT", "-1"), ("COUNT", "x"), ("COUNT",), ("MATCH",),
                    ("TYPE", "hash"), ("NOVALUES",), ("COUNT", "9223372036854775808")):
        same("HSCAN", "h", "0", *options)


@pytest.mark.parametrize("count", [1, 3, 10, 1000])
def test_hscan_big_hash_returns_everything(r: redis.Redis, real: redis.Redis,
                                           small_listpack: None, count: int) -> None:
    mapping = {f"field:{i}".encode(): f"value:{i}".encode() for i in range(500)}
    for client in (r, real):
        client.hset("h", mapping=mapping)
        assert dict(client.hscan_iter("h", count=count)) == mapping
        assert dict(client.hscan_iter("h", match="field:1*", count=count)) == {
            k: v for k, v in mapping.items() if k.startswith(b"field:1")}


def test_hscan_guarantee_under_mutation(r: redis.Redis, small_listpack: None) -> None:
    """Fields present for the whole scan are returned even while others come and go."""
    stable = {f"stable:{i}": "v" for i in range(300)}
    r.hset("h", mapping={**stable, **{f"gone:{i}": "v" for i in range(300)}})
    cursor, seen, step = 0, set(), 0
    while True:
        cursor, batch = r.hscan("h", cursor, count=7)
        seen.update(batch)
        step += 1
        r.hdel("h", *[f"gone:{i}" for i in range(step * 5, step * 5 + 5)])
        r.hset("h", mapping={f"new:{step}:{i}": "v" for i in range(10)})
        if cursor == 0:
            break
    assert {k.encode() for k in stable} <= seen
    assert step > 10


def test_hscan_big_hash_single_call_cursor_is_nonzero(r: redis.Redis,
                                                      small_listpack: None) -> None:
    r.hset("h", mapping={f"f{i}": "v" for i in range(100)})
    cursor, batch = r.hscan("h", 0, count=10)
    assert cursor != 0 and len(batch) >= 10
    # A cursor past every element ends the scan.
    assert r.hscan("h", 2**63 - 1)[0] == 0


def test_listpack_boundaries_keep_order(same: Same, wire, small_listpack: None) -> None:
    same("HSET", "h", "d", "1", "b", "2", "c", "3", "a", "4")
    same("HINCRBYFLOAT", "h", "b", "0.000005")  # "2.000005": 8 bytes, still a listpack
    wire("HGETALL", "h")
    wire("HSCAN", "h", "0", "COUNT", "1")
    same("HSET", "v", "a", "12345678", "abcdefgh", "x")
    wire("HSCAN", "v", "0")
    wire("HGETALL", "v", protocol=3)
