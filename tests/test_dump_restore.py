"""DUMP and RESTORE against a real redis-server 7.0: byte-identical payloads where the
encoding is deterministic, payloads crossing over in both directions for every type, the
argument errors word for word, TTL handling and what RESTORE propagates."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis
from support import NOW_MS, argv

from kvrepl.rdb.crc import crc64

Compare = Callable[..., object]


def seal(body: bytes, version: int = 10) -> bytes:
    """A DUMP payload around ``body`` (type byte + value) with a valid footer."""
    data = body + version.to_bytes(2, "little")
    return data + crc64(data).to_bytes(8, "little")


SMALL = [
    ("SET", "str", "hello"),
    ("SET", "int", "12345"),
    ("SET", "bigint", "-9223372036854775808"),
    ("SET", "notint", "012"),
    ("SET", "bin", b"\x00\xff\r\n"),
    ("SET", "random", bytes(range(256)) * 2),  # long but incompressible: no LZF
    ("RPUSH", "list", "a", "5", "-70", "abcdefghijklmno"),
    ("HSET", "hash", "f1", "v1", "f2", "2", "f3", "x" * 64),
    ("SADD", "intset", "1", "2", "300", "-70000"),
    ("ZADD", "zset", "1.5", "a", "2", "b", "-inf", "c", "0.1", "d"),
]


def test_dump_is_byte_identical_to_redis(same: Compare) -> None:
    for command in SMALL:
        same(*command)
        same("DUMP", command[1])
    same("DUMP", "missing")


def test_dump_with_rdbcompression_on_and_off(same: Compare, r: redis.Redis,
                                             real: redis.Redis) -> None:
    same("SET", "long", "abc" * 100)
    same("RPUSH", "l", *["same-element"] * 40)
    payload = same("DUMP", "long")
    assert len(payload) < 100  # LZF
    same("DUMP", "l")
    try:
        same("CONFIG", "SET", "rdbcompression", "no")
        assert len(same("DUMP", "long")) > 300
        same("DUMP", "l")
    finally:
        r.config_set("rdbcompression", "yes")
        real.config_set("rdbcompression", "yes")


def read(client: redis.Redis, key: str) -> object:
    kind = client.type(key)
    if kind == b"string":
        return client.get(key)
    if kind == b"list":
        return client.lrange(key, 0, -1)
    if kind == b"hash":
        return client.hgetall(key)
    if kind == b"set":
        return client.smembers(key)
    if kind == b"zset":
        return client.zrange(key, 0, -1, withscores=True)
    return kind


BIG = [
    ("RPUSH", "biglist", *[f"element-{i}" * (1 + i % 5) for i in range(2000)]),
    ("RPUSH", "hugeelement", "x" * 100_000, "y"),
    ("HSET", "bighash", *[x for i in range(700) for x in (f"field{i}", f"value{i}")]),
    ("HSET", "longvalue", "f", "v" * 100),
    ("SADD", "bigset", *[f"member{i}" for i in range(700)]),
    ("SADD", "bigintset", *range(600)),
    ("SADD", "strset", "a", "b", "c"),
    ("ZADD", "bigzset", *[x for i in range(300) for x in (i / 3, f"m{i}")]),
    ("ZADD", "longmember", 1, "m" * 100),
    ("SET", "compressible", "z" * 10_000),
]


def test_payloads_cross_over_both_ways_for_every_type(r: redis.Redis,
                                                      real: redis.Redis) -> None:
    for command in SMALL + BIG:
        key = command[1]
        real.execute_command(*command)
        r.execute_command(*command)
        theirs = real.dump(key)
        r.restore("from-redis:" + key, 0, theirs)
        assert read(r, "from-redis:" + key) == read(real, key), key
        ours = r.dump(key)
        real.restore("from-kvrepl:" + key, 0, ours)
        assert read(real, "from-kvrepl:" + key) == read(real, key), key


def test_streams_cross_over(r: redis.Redis, real: redis.Redis) -> None:
    for i in range(1, 150):
        real.xadd("stream", {"field": i, "other": "x" * (i % 7)}, id=f"{i}-1")
    real.xgroup_create("stream", "group", id="0")
    real.xreadgroup("group", "alice", {"stream": ">"}, count=3)
    real.xdel("stream", "5-1")
    r.restore("stream", 0, real.dump("stream"))
    assert r.type("stream") == b"stream"
    real.restore("back", 0, r.dump("stream"))
    assert real.xrange("back") == real.xrange("stream")
    ours = real.xinfo_stream("back", full=True)
    theirs = real.xinfo_stream("stream", full=True)
    assert ours == theirs


def test_restore_errors_like_redis(same: Compare) -> None:
    same("SET", "k", "v")
    payload = same("DUMP", "k")
    same("RESTORE", "k", 0, payload)  # BUSYKEY
    same("RESTORE", "k2", 0, "x")
    same("RESTORE", "k2", 0, payload[:-1])
    same("RESTORE", "k2", 0, payload[:-3] + b"\x00\x00\x00")
    same("RESTORE", "k2", 0, seal(b"\x00\x03abc", version=11))
    same("RESTORE", "k2", 0, seal(b"\x00\x03abc", version=9))
    same("RESTORE", "k2", 0, seal(b"\x63\x03abc"))  # unknown type: Bad data format
    same("RESTORE", "k2", 0, seal(b"\x02\x00"))  # an empty set
    same("RESTORE", "k2", 0, seal(b""))
    same("RESTORE", "k2", -1, payload)
    same("RESTORE", "k2", "abc", payload)
    same("RESTORE", "k2", "1.5", payload)
    same("RESTORE", "k2", 0, payload, "IDLETIME", -1)
    same("RESTORE", "k2", 0, payload, "IDLETIME", "abc")
    same("RESTORE", "k2", 0, payload, "IDLETIME")
    same("RESTORE", "k2", 0, payload, "FREQ", 256)
    same("RESTORE", "k2", 0, payload, "FREQ", -1)
    same("RESTORE", "k2", 0, payload, "IDLETIME", 1, "FREQ", 2)
    same("RESTORE", "k2", 0, payload, "FREQ", 2, "IDLETIME", 1)
    same("RESTORE", "k2", 0, payload, "NOPE")
    # option errors come before BUSYKEY, BUSYKEY before the TTL and the payload
    same("RESTORE", "k", 0, payload, "IDLETIME", -1)
    same("RESTORE", "k", -1, "x")
    same("RESTORE", "k2", -1, "x")
    same("EXISTS", "k2")
    same("RESTORE", "k2", 0, payload, "IDLETIME", 10, "REPLACE", "ABSTTL")
    same("RESTORE", "k3", 0, payload, "FREQ", 255)
    same("GET", "k3")


def test_restore_ttl_replace_and_absttl(same: Compare, r: redis.Redis,
                                        real: redis.Redis) -> None:
    same("RPUSH", "src", "a", "b")
    payload = same("DUMP", "src")
    same("RESTORE", "k", 100_000, payload)
    for client in (r, real):
        assert 99_000 < client.pttl("k") <= 100_000
    same("RESTORE", "k", 0, payload, "REPLACE")
    same("PTTL", "k")
    future = NOW_MS * 2
    same("RESTORE", "abs", future, payload, "ABSTTL")
    same("PEXPIRETIME", "abs")
    # already expired: OK, no key; with REPLACE the old key goes
    same("RESTORE", "past", 1, payload, "ABSTTL")
    same("EXISTS", "past")
    same("RESTORE", "abs", 1, payload, "ABSTTL", "REPLACE")
    same("EXISTS", "abs")
    same("LRANGE", "k", 0, -1)
    same("SET", "s", "v")
    same("RESTORE", "s", 0, payload, "replace")
    same("TYPE", "s")


def test_restore_propagates_an_absolute_ttl(run: Callable[..., object],
                                            prop: list[list[bytes]]) -> None:
    run("SET", "src", "v")
    payload = run("DUMP", "src")
    prop.clear()
    run("RESTORE", "a", 0, payload)
    run("RESTORE", "b", 5000, payload)
    run("restore", "c", 5000, payload, "REPLACE", "IDLETIME", 3)
    run("RESTORE", "d", NOW_MS + 9000, payload, "ABSTTL")
    run("RESTORE", "gone", NOW_MS - 1, payload, "ABSTTL")  # expired, nothing there: no-op
    run("RESTORE", "a", NOW_MS - 1, payload, "ABSTTL", "REPLACE")  # expired, deletes "a"
    assert prop == [
        argv("RESTORE", "a", 0, payload),
        argv("RESTORE", "b", NOW_MS + 5000, payload, "ABSTTL"),
        argv("restore", "c", NOW_MS + 5000, payload, "REPLACE", "IDLETIME", 3, "ABSTTL"),
        argv("RESTORE", "d", NOW_MS + 9000, payload, "ABSTTL"),
        argv("DEL", "a"),
    ]


def test_restore_counts_as_a_change(
        run: Callable[..., object], engine: object) -> None:
    run("RPUSH", "src", "x")
    payload = run("DUMP", "src")
    dirty = engine.dirty  # type: ignore[attr-defined]
    run("RESTORE", "copy", 0, payload)
    assert engine.dirty == dirty + 1  # type: ignore[attr-defined]
    assert run("LRANGE", "copy", 0, -1) == [b"x"]
    with pytest.raises(Exception, match="BUSYKEY"):
        run("RESTORE", "copy", 0, payload)
    assert engine.dirty == dirty + 1  # type: ignore[attr-defined]


def test_restore_idletime_and_freq_set_what_object_reports(run):
    assert run("DUMP", "nope") is None
    run("SET", "src", "v")
    payload = run("DUMP", "src")
    run("RESTORE", "idle", "0", payload, "IDLETIME", "1000")
    assert run("OBJECT", "IDLETIME", "idle") == 1000
    run("CONFIG", "SET", "maxmemory-policy", "allkeys-lfu")
    run("RESTORE", "hot", "0", payload, "FREQ", "100")
    assert run("OBJECT", "FREQ", "hot") == 100


def test_sanitize_dump_payload_counts_deep_checks_as_redis(r: redis.Redis,
                                                           real: redis.Redis) -> None:
    real.rpush("list", *(f"element-{i}" for i in range(3000)))  # several quicklist nodes
    real.sadd("intset", 1, 2, 3)
    real.hset("hash", mapping={"a": 1})
    real.zadd("zset", {"m": 1})
    real.xadd("stream", {"f": "v"})
    real.set("string", "x")
    payloads = {key: real.dump(key) for key in ("list", "intset", "hash", "zset", "stream",
                                                 "string")}
    counts = {}
    try:
        for mode in ("no", "yes", "clients"):
            for client in (r, real):
                client.config_set("sanitize-dump-payload", mode)
                client.config_resetstat()
                for key, payload in payloads.items():
                    client.restore(f"{mode}:{key}", 0, payload)
                counts[mode, client is r] = client.info("stats")["dump_payload_sanitizations"]
            assert counts[mode, True] == counts[mode, False], mode
        assert counts["no", True] == 0 and counts["yes", True] == counts["clients", True] > 5
        # A listpack whose header miscounts its entries (CRC right): the deep check refuses.
        hash_payload = payloads["hash"]
        broken = seal(hash_payload[:6] + b"\x04\x00" + hash_payload[8:-10])
        for client in (r, real):
            client.config_set("sanitize-dump-payload", "yes")
            with pytest.raises(redis.ResponseError, match="^Bad data format$"):
                client.restore("broken", 0, broken)
    finally:
        for client in (r, real):
            client.config_set("sanitize-dump-payload", "no")


def test_sanitize_dump_payload_no_skips_layout_checks_as_redis(r: redis.Redis,
                                                               real: redis.Redis) -> None:
    """``sanitize-dump-payload no`` (and ``clients`` for the master's stream) skips the deep
    checks that only guard the encoded layout Redis keeps in memory: a listpack with a
    wrong backlen, an intset out of order, restore on both servers (kvrepl holds the
    elements a forward read gives; redis-server may crash later reading them), and are
    refused by both under ``yes``. kvrepl decodes every element into its
    own structures, so it never trusts what it cannot read: a blob it could only hold by
    dropping an element (a field twice, an intset member twice) is refused even under
    ``no``, where Redis would keep the duplicate."""
    real.hset("hash", mapping={"f": "v", "g": "w"})
    real.sadd("intset", 1, 2)
    hash_payload, intset_payload = real.dump("hash"), real.dump("intset")
    # Hash listpack (type 16): type, 1-byte length, blob (6-byte header, "f" at 6-7, its
    # backlen at 8). Intset (type 11): type, length, blob (8-byte header, two int16).
    assert hash_payload[0] == 16 and hash_payload[8:11] == b"\x81f\x02"
    bad_backlen = seal(hash_payload[:10] + b"\x03" + hash_payload[11:-10])
    assert intset_payload[0] == 11 and intset_payload[10:14] == b"\x01\x00\x02\x00"
    unsorted = seal(intset_payload[:10] + b"\x02\x00\x01\x00" + intset_payload[14:-10])
    twice = seal(intset_payload[:10] + b"\x01\x00\x01\x00" + intset_payload[14:-10])
    same_field = seal(hash_payload[:14] + b"f" + hash_payload[15:-10])  # "g" becomes "f"
    try:
        for mode in ("yes", "clients", "no"):
            for client in (r, real):
                client.config_set("sanitize-dump-payload", mode)
                client.delete("h", "s")
            outcomes = []
            for client in (r, real):
                got = []
                for key, payload in (("h", bad_backlen), ("s", unsorted)):
                    try:
                        got.append(client.restore(key, 0, payload))
                    except redis.ResponseError as err:
                        got.append(str(err))
                got += [sorted(client.smembers("s")), client.scard("s")]
                outcomes.append(got)
            # redis-server trusted the listpack and would crash reading it (an assertion in
            # lpNext): it is only deleted there. kvrepl holds what a forward read gives.
            real.delete("h")
            assert outcomes[0] == outcomes[1], mode
            if mode == "no":
                assert outcomes[0] == [b"OK", b"OK", [b"1", b"2"], 2]
                assert r.hgetall("h") == {b"f": b"v", b"g": b"w"}
            else:  # a client's RESTORE is checked deeply under clients too
                assert outcomes[0][:2] == ["Bad data format"] * 2
            # What kvrepl cannot hold as it is, it refuses in every mode.
            for payload in (twice, same_field):
                with pytest.raises(redis.ResponseError, match="^Bad data format$"):
                    r.restore("dup", 0, payload)
    finally:
        for client in (r, real):
            client.config_set("sanitize-dump-payload", "no")
