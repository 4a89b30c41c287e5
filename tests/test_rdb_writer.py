"""The RDB writer: Redis 7.0's encodings byte for byte, round trips, and real-peer checks.

The oracle is a real redis-server 7.0: ``redis-check-rdb`` must accept our files, a server
started on our file must hold exactly our dataset (and the same DEBUG DIGEST as a server
filled by commands), our reader must read a real server's SAVE, and DUMP / RESTORE payloads
must cross over in both directions.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import struct
import subprocess
import tempfile
import time
from collections import deque

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import RedisServer

from kvrepl.config import Config
from kvrepl.errors import ReplyError
from kvrepl.rdb import End, Entry, RdbError, iter_events, load_into
from kvrepl.rdb import constants as C
from kvrepl.rdb.crc import crc64
from kvrepl.rdb.listpack import parse as lp_parse
from kvrepl.rdb.payload import dump_value, load_value
from kvrepl.rdb.primitives import encode_len, encode_str, read_len, read_str
from kvrepl.rdb.reader import decode_object
from kvrepl.rdb.writer import RdbWriter, default_aux, dump_keyspace, dumps, iter_dump
from kvrepl.store.database import Keyspace
from kvrepl.store.values import Stream, StreamConsumer, StreamGroup, StreamNack, ZSet

NOW = int(time.time() * 1000)
HOUR = 3_600_000


# -- datasets ---------------------------------------------------------------------------------
def rich_stream() -> Stream:
    s = Stream()
    for i in range(250):
        if i % 7:
            fields = [b"temp", b"%d" % (20 + i % 5), b"hum", b"4%d.5" % (i % 10)]
        else:
            fields = [b"other", b"field", b"other", b"dup"]
        s.entries[(1700000000000 + i // 3, i % 3)] = fields
    s.last_id = (1700000000083, 9)
    s.first_id = (1700000000000, 0)
    s.entries_added = 260
    s.max_deleted_id = (1600000000000, 5)
    group = StreamGroup(b"grp", last_id=(1700000000010, 1), entries_read=31)
    group.pending[(1700000000005, 0)] = StreamNack(NOW - 1000, 2, b"alice")
    group.pending[(1700000000006, 1)] = StreamNack(NOW - 500, 1, b"bob")
    group.pending[(1600000000000, 5)] = StreamNack(NOW - 400, 3, b"bob")  # a deleted entry
    group.consumers[b"alice"] = StreamConsumer(b"alice", NOW - 1000, [(1700000000005, 0)])
    group.consumers[b"bob"] = StreamConsumer(
        b"bob", NOW - 500, [(1600000000000, 5), (1700000000006, 1)])
    group.consumers[b"carol"] = StreamConsumer(b"carol", NOW - 100, [])
    s.groups[b"grp"] = group
    s.groups[b"idle"] = StreamGroup(b"idle", (0, 0), -1)
    return s


def rich_keyspace() -> Keyspace:
    """Every type in small and big encodings, expiries, several databases, streams."""
    rng = random.Random(7)
    ks = Keyspace()
    db0 = ks.dbs[0].data
    db0.update({
        b"str": b"hello", b"int": b"12345", b"neg": b"-70", b"i32": b"-2147483648",
        b"big_int": b"4294967296", b"zero_lead": b"007", b"minus_zero": b"-0", b"empty": b"",
        b"long": b"x" * 100, b"binary": bytes(range(256)) * 3, b"12": b"numeric key",
        b"": b"empty key", b"k" * 30: b"long key",
        b"noise": bytes(rng.getrandbits(8) for _ in range(3000)),
        b"list": deque([b"a", b"1", b"-5", b"x" * 70, b"9" * 20, b"", b"18446744073709551616"]),
        b"biglist": deque(b"element-%d" % i for i in range(5000)),
        b"widelist": deque(bytes(rng.getrandbits(8) for _ in range(3000)) for _ in range(7)),
        b"hash": {b"f1": b"v1", b"f2": b"2", b"": b""},
        b"bighash": {b"field%d" % i: b"value%d" % i for i in range(1000)},
        b"longvalhash": {b"f": b"v" * 100},
        b"intset": {b"1", b"2", b"-3", b"70000"},
        b"intset64": {b"1", b"9223372036854775807", b"-9223372036854775808"},
        b"set": {b"a", b"b", b"c", b"1"}, b"bigset": {b"m%d" % i for i in range(1000)},
        b"bigintset": {b"%d" % i for i in range(600)},
        b"zset": ZSet({b"a": 1.5, b"b": 2.0, b"c": math.inf, b"d": -math.inf, b"e": 0.0,
                       b"f": 1e300, b"g": 0.1, b"h": -3.0, b"i": 4611686018427387904.0,
                       b"j": 5e-324}),
        b"bigzset": ZSet({b"m%d" % i: i / 7 for i in range(500)}),
        b"longzset": ZSet({b"m" * 100: 1.0, b"n": 2.5}),
        b"stream": rich_stream(),
    })
    empty = Stream()
    empty.last_id, empty.entries_added, empty.max_deleted_id = (5, 5), 3, (5, 5)
    db0[b"empty_stream"] = empty
    ks.dbs[0].expires.update({b"str": NOW + HOUR, b"list": NOW + 2 * HOUR,
                              b"bighash": NOW + 3 * HOUR})
    ks.dbs[3].data[b"in3"] = b"three"
    ks.dbs[3].expires[b"in3"] = NOW + HOUR
    ks.dbs[15].data[b"in15"] = deque([b"x"])
    return ks


def snapshot(ks: Keyspace) -> dict:
    return {i: ({k: v for k, v in db.data.items()}, dict(db.expires))
            for i, db in enumerate(ks.dbs) if db.data}


def as_written(expected: dict, version: int) -> dict:
    """``expected`` after a trip through an RDB of ``version``: consumers' active-time exists
    only in version 11 files (written as the seen-time when unknown)."""
    for data, _ in expected.values():
        for key, value in list(data.items()):
            if type(value) is Stream:
                value = data[key] = value.copy()
                for group in value.groups.values():
                    for consumer in group.consumers.values():
                        if version < 11:
                            consumer.active_time = None
                        elif consumer.active_time is None:
                            consumer.active_time = consumer.seen_time
    return expected


def reload(blob: bytes, **options: object) -> Keyspace:
    ks = Keyspace()
    load_into(ks, blob, drop_expired=False, **options)
    return ks


# -- strings and lengths ----------------------------------------------------------------------
@pytest.mark.parametrize("text,encoded", [
    (b"5", "c005"), (b"-70", "c0ba"), (b"1000", "c1e803"), (b"100000", "c2a0860100"),
    (b"-2147483648", "c200000080"), (b"4294967296", "0a" + b"4294967296".hex()),
    (b"007", "03303037"), (b"-0", "022d30"), (b"+5", "022b35"), (b" 5", "022035"),
    (b"", "00"), (b"x" * 20, "14" + "78" * 20),
])
def test_string_encodings_match_redis(text: bytes, encoded: str) -> None:
    assert encode_str(text).hex() == encoded
    assert read_str(bytes.fromhex(encoded), 0) == (text, len(encoded) // 2)


def test_lzf_only_above_20_bytes_and_when_it_saves_space() -> None:
    assert encode_str(b"x" * 100).hex() == "c30940640178" + "78e0570001" + "7878"
    assert encode_str(b"x" * 21)[0] == 0xC3
    assert encode_str(b"x" * 100, compress=False) == b"\x40\x64" + b"x" * 100
    rng = random.Random(1)
    noise = bytes(rng.getrandbits(8) for _ in range(100))
    assert encode_str(noise) == b"\x40\x64" + noise


@pytest.mark.parametrize("n,encoded", [(10, "0a"), (700, "42bc"), (17000, "8000004268"),
                                       (1 << 40, "810000010000000000")])
def test_lengths(n: int, encoded: str) -> None:
    assert encode_len(n).hex() == encoded
    assert read_len(bytes.fromhex(encoded), 0) == (n, len(encoded) // 2)


# -- file structure ---------------------------------------------------------------------------
def test_header_aux_fields_in_redis_order() -> None:
    ks = Keyspace()
    blob = dumps(ks)
    assert blob.startswith(b"REDIS0010\xfa\x09redis-ver\x067.0.15\xfa\x0aredis-bits\xc0\x40")
    events = list(iter_events(blob))
    assert [e.name for e in events[:-1]] == [b"redis-ver", b"redis-bits", b"ctime", b"used-mem",
                                            b"aof-base"]
    assert events[-1] == End(True, int.from_bytes(blob[-8:], "little"))
    aux = default_aux(repl_id=b"a" * 40, repl_stream_db=3, repl_offset=1234, ctime=1)
    assert [name for name, _ in aux] == [b"redis-ver", b"redis-bits", b"ctime", b"used-mem",
                                         b"repl-stream-db", b"repl-id", b"repl-offset",
                                         b"aof-base"]
    assert dict(aux)[b"repl-offset"] == b"1234"


def test_databases_expires_and_trailer() -> None:
    ks = Keyspace()
    ks.dbs[2].data.update({b"a": b"1", b"b": b"x"})
    ks.dbs[2].expires[b"a"] = 1700000000123
    blob = dumps(ks, aux=[])
    body = blob[9:-9]
    assert body.startswith(b"\xfe\x02\xfb\x02\x01")  # SELECTDB 2, RESIZEDB 2 keys 1 expire
    assert b"\xfc" + (1700000000123).to_bytes(8, "little") + b"\x00\x01a\xc0\x01" in body
    assert blob[-9] == 0xFF and int.from_bytes(blob[-8:], "little") == crc64(blob[:-8])
    unchecked = dumps(ks, aux=[], checksum=False)
    assert unchecked[-8:] == bytes(8) and unchecked[:-8] == blob[:-8]
    assert list(iter_events(unchecked))[-1] == End(None, 0)


def test_incremental_api_matches_dumps() -> None:
    ks = rich_keyspace()
    aux = default_aux(ctime=1, used_mem=2)
    whole = dumps(ks, aux=aux)
    writer = RdbWriter()
    chunks = [writer.begin(aux)]
    for index, db in enumerate(ks.dbs):
        if db.data:
            chunks.append(writer.select_db(index, len(db.data), len(db.expires)))
            for key, value in db.data.items():
                chunks.append(writer.write_entry(index, key, value, db.expires.get(key)))
    chunks.append(writer.finish())
    assert b"".join(chunks) == whole
    assert b"".join(iter_dump(ks, aux=aux, batch=7)) == whole
    buffer = bytearray()
    assert dump_keyspace(ks, buffer, aux=aux) == len(whole) and bytes(buffer) == whole


def test_write_records_from_a_keyspace_view() -> None:
    from kvrepl.store.snapshot import KeyspaceView

    ks = rich_keyspace()
    view = KeyspaceView(ks)
    sizes = {index: (keys, expires) for index, keys, expires in view.db_sizes()}
    writer = RdbWriter()
    chunks = [writer.begin()]
    for batch in view.entries(batch=100):
        chunks.append(writer.write_records(batch, sizes))
    chunks.append(writer.finish())
    blob = b"".join(chunks)
    assert snapshot(reload(blob)) == snapshot(ks)
    resizes = [e for e in iter_events(blob) if type(e).__name__ == "ResizeDb"]
    assert [(r.db_size, r.expires_size) for r in resizes] == [
        (len(db.data), len(db.expires)) for db in ks.dbs if db.data]


def test_write_entry_selects_db_and_skips_empty_collections() -> None:
    writer = RdbWriter()
    blob = (writer.begin([]) + writer.write_entry(4, b"k", b"v", 99)
            + writer.write_entry(4, b"gone", deque()) + writer.finish())
    assert [e for e in iter_events(blob) if type(e) is Entry] == [
        Entry(4, b"k", b"v", 99, None, None)]


# -- value encodings --------------------------------------------------------------------------
def encoded(value: object, **config: object) -> tuple[int, bytes]:
    return RdbWriter(config=Config(**config) if config else None).encode_value(value)


def blob_of(payload: bytes) -> bytes:
    blob, end = read_str(payload, 0)
    assert end == len(payload)
    return blob


def test_hash_encodings() -> None:
    rtype, payload = encoded({b"f": b"1", b"g": b"x"})
    assert rtype == C.TYPE_HASH_LISTPACK
    assert blob_of(payload).hex() == "1200000004008166020101816702817802ff"
    assert encoded({b"f": b"v" * 65})[0] == C.TYPE_HASH
    big = {b"%d" % i: b"v" for i in range(513)}
    assert encoded(big)[0] == C.TYPE_HASH
    assert encoded(dict(list(big.items())[:512]))[0] == C.TYPE_HASH_LISTPACK
    assert encoded(dict(list(big.items())[:129]), hash_max_listpack_entries=128)[0] == C.TYPE_HASH


def test_set_encodings() -> None:
    rtype, payload = encoded({b"1", b"2", b"300"})
    assert rtype == C.TYPE_SET_INTSET
    assert blob_of(payload).hex() == "02000000030000000100020" + "02c01"
    assert blob_of(encoded({b"1", b"70000"})[1])[:4] == b"\x04\x00\x00\x00"
    assert blob_of(encoded({b"1", b"-9223372036854775808"})[1])[:4] == b"\x08\x00\x00\x00"
    assert encoded({b"1", b"01"})[0] == C.TYPE_SET
    assert encoded({b"%d" % i for i in range(513)})[0] == C.TYPE_SET
    assert encoded({b"a"})[0] == C.TYPE_SET
    assert RdbWriter(version=11).encode_value({b"a"})[0] == C.TYPE_SET_LISTPACK


def test_zset_encodings() -> None:
    rtype, payload = encoded(ZSet({b"a": 1.5, b"b": 2, b"c": math.inf, b"d": 0.1}))
    assert rtype == C.TYPE_ZSET_LISTPACK
    assert lp_parse(blob_of(payload)) == [b"d", b"0.10000000000000001", b"a", b"1.5",
                                          b"b", b"2", b"c", b"inf"]
    rtype, payload = encoded(ZSet({b"m" * 65: 1.0, b"n": 2.0}))
    assert rtype == C.TYPE_ZSET_2
    # highest score first, as Redis walks its skiplist backwards; binary LE doubles
    assert payload[:11] == b"\x02\x01n" + struct.pack("<d", 2.0)
    assert decode_object(rtype, payload)[0] == ZSet({b"m" * 65: 1.0, b"n": 2.0})


def test_zset_listpack_is_sorted_with_redis_score_text() -> None:
    zset = ZSet({b"b": 1.5, b"a": 1.5, b"z": -2, b"big": 4611686018427387904.0,
                 b"neg0": -0.0})
    items = lp_parse(blob_of(encoded(zset)[1]), as_bytes=False)
    # 2**62 still passes double2ll (|d| <= LLONG_MAX/2 as a double): an integer entry
    assert items == [b"z", -2, b"neg0", 0, b"a", b"1.5", b"b", b"1.5",
                     b"big", 4611686018427387904]
    items = lp_parse(blob_of(encoded(ZSet({b"x": 2.0**63, b"y": 1e-7}))[1]))
    assert items == [b"y", b"9.9999999999999995e-08", b"x", b"9.2233720368547758e+18"]


def test_list_nodes_are_sized_like_quicklist() -> None:
    items = deque(b"%0100d" % i for i in range(1000))
    rtype, payload = RdbWriter(compression=False).encode_value(items)
    assert rtype == C.TYPE_LIST_QUICKLIST_2
    nodes, pos = read_len(payload, 0)
    sizes = []
    while pos < len(payload):
        container, pos = read_len(payload, pos)
        blob, pos = read_str(payload, pos)
        assert container == C.QUICKLIST_PACKED
        sizes.append(len(lp_parse(blob)))
        assert len(blob) <= 8192
    # 100-byte elements take 103 bytes each: 79 fit under 8 KB (node size + 108 <= 8192)
    assert sizes == [79] * 12 + [52] and nodes == 13
    fill4 = RdbWriter(config=Config(list_max_listpack_size=4)).encode_value(items)[1]
    assert read_len(fill4, 0)[0] == 250
    single = RdbWriter().encode_value(deque([b"a"]))[1]
    assert single.hex() == "0102" + "0a" + "0a0000000100816102ff"


def test_stream_nodes_split_like_xadd() -> None:
    stream = rich_stream()
    rtype, payload = encoded(stream)
    assert rtype == C.TYPE_STREAM_LISTPACKS_2
    nodes, pos = read_len(payload, 0)
    counts = []
    for _ in range(nodes):
        key, pos = read_str(payload, pos)
        blob, pos = read_str(payload, pos)
        items = lp_parse(blob, as_bytes=False)
        counts.append(items[0])
        assert len(blob) < 4096 + 100
    assert sum(counts) == 250 and max(counts) <= 100
    assert decode_object(rtype, payload)[0] == stream
    assert RdbWriter(version=11).encode_value(stream)[0] == C.TYPE_STREAM_LISTPACKS_3


# -- round trips ------------------------------------------------------------------------------
def test_rich_round_trip_both_versions() -> None:
    ks = rich_keyspace()
    for version in (10, 11):
        for compression in (True, False):
            back = reload(dumps(ks, version=version, compression=compression))
            assert snapshot(back) == as_written(snapshot(ks), version)


keys = st.binary(max_size=30)
members = st.one_of(st.binary(max_size=80), st.integers(-2**70, 2**70).map(lambda i: b"%d" % i))
scores = st.one_of(st.floats(allow_nan=False), st.integers(-2**60, 2**60).map(float))


@st.composite
def streams(draw: st.DrawFn) -> Stream:
    s = Stream()
    ms = draw(st.integers(0, 2**64 - 200))
    seq = 0
    for _ in range(draw(st.integers(0, 30))):
        if draw(st.booleans()):
            ms += draw(st.integers(1, 3))
            seq = draw(st.integers(0, 3))
        else:
            seq += 1
        fields = draw(st.lists(members, min_size=2, max_size=6))
        s.entries[(ms, seq)] = fields[: len(fields) // 2 * 2]
    s.last_id = (ms, seq + 1)
    s.entries_added = len(s.entries) + draw(st.integers(0, 5))
    s.first_id = next(iter(s.entries), (0, 0))
    if draw(st.booleans()):
        g = StreamGroup(draw(keys), (ms, seq), draw(st.integers(-1, 100)))
        for entry_id in list(s.entries)[:3]:
            g.pending[entry_id] = StreamNack(draw(st.integers(0, 2**62)), 1, b"c")
        g.consumers[b"c"] = StreamConsumer(b"c", 5, sorted(g.pending))
        s.groups[g.name] = g
    return s


values = st.one_of(
    members,
    st.lists(members, min_size=1, max_size=40).map(deque),
    st.dictionaries(members, members, min_size=1, max_size=40),
    st.sets(members, min_size=1, max_size=40),
    st.sets(st.integers(-2**63, 2**63 - 1).map(lambda i: b"%d" % i), min_size=1, max_size=20),
    st.dictionaries(members, scores, min_size=1, max_size=40).map(ZSet),
    streams(),
)


@given(st.dictionaries(st.integers(0, 15), st.dictionaries(
    keys, st.tuples(values, st.one_of(st.none(), st.integers(0, 2**62))), max_size=8),
    max_size=4), st.booleans(), st.sampled_from([10, 11]))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_round_trip_property(layout: dict, compression: bool, version: int) -> None:
    ks = Keyspace()
    for index, entries in layout.items():
        for key, (value, expire) in entries.items():
            ks.dbs[index].data[key] = value
            if expire is not None:
                ks.dbs[index].expires[key] = expire
    config = Config(hash_max_listpack_entries=8, zset_max_listpack_entries=8,
                    set_max_intset_entries=8, list_max_listpack_size=3)
    blob = dumps(ks, compression=compression, version=version, config=config)
    assert snapshot(reload(blob)) == as_written(snapshot(ks), version)
    # and fed in small pieces to the push parser
    from kvrepl.rdb import NEED_DATA, RdbParser

    parser = RdbParser()
    got = []
    for i in range(0, len(blob), 97):
        parser.feed(blob[i:i + 97])
        while (event := parser.next_event()) is not NEED_DATA:
            got.append(event)
    assert [e for e in got if type(e) is Entry] == [
        e for e in iter_events(blob) if type(e) is Entry]


@given(values)
@settings(max_examples=100, deadline=None)
def test_dump_payload_round_trip(value: object) -> None:
    assert load_value(dump_value(value)) == value


# -- DUMP payloads ------------------------------------------------------------------------------
def test_dump_value_format_and_errors() -> None:
    payload = dump_value(b"100000")
    assert payload[:-8].hex() == "00c2a08601000a00"
    assert int.from_bytes(payload[-8:], "little") == crc64(payload[:-8])
    wrong = "ERR DUMP payload version or checksum are wrong"
    for bad in (payload[:-1] + bytes([payload[-1] ^ 1]), payload[:9], b"",
                b"\x00\x01a\x0b\x00" + crc64(b"\x00\x01a\x0b\x00").to_bytes(8, "little"),
                payload[:-8] + bytes(8)):
        with pytest.raises(RdbError, match=wrong) as info:
            load_value(bad)
        assert isinstance(info.value, ReplyError) and str(info.value) == wrong

    def seal(body: bytes, version: int = 10) -> bytes:
        data = body + version.to_bytes(2, "little")
        return data + crc64(data).to_bytes(8, "little")

    # older payload versions are fine, types newer than 7.0's are not
    assert load_value(seal(b"\x01\x02\x01a\x01b", 6)) == deque([b"a", b"b"])
    for body in (b"", b"\x01\x00", b"\x14\x07\x07\x00\x00\x00\x00\x00\xff", b"\x08\x00",
                 b"\x02\x02\x01a\x01a", b"\x00\x05ab", b"\x07\x81" + bytes(8) + b"\x00"):
        with pytest.raises(RdbError) as info:
            load_value(seal(body))
        assert str(info.value) == "ERR Bad data format"
    assert load_value(seal(b"\x00\x01a" + b"junk")) == b"a"  # trailing bytes are not checked


# -- real peers -------------------------------------------------------------------------------
def raw_client(server: RedisServer, db: int = 0) -> redis.Redis:
    """A RESP2 client without redis-py's reply parsing: replies as the server sends them."""
    client = server.client(db=db, protocol=2)
    client.response_callbacks.clear()
    return client


def parse_id(raw: bytes) -> tuple[int, int]:
    ms, _, seq = raw.partition(b"-")
    return int(ms), int(seq)


def read_stream(client: redis.Redis, key: bytes) -> Stream:
    s = Stream()
    for entry_id, fields in client.execute_command("XRANGE", key, "-", "+"):
        s.entries[parse_id(entry_id)] = list(fields)
    info = client.execute_command("XINFO", "STREAM", key, "FULL", "COUNT", 0)
    info = dict(zip(info[0::2], info[1::2], strict=True))
    s.last_id = parse_id(info[b"last-generated-id"])
    s.max_deleted_id = parse_id(info[b"max-deleted-entry-id"])
    s.first_id = parse_id(info[b"recorded-first-entry-id"])
    s.entries_added = info[b"entries-added"]
    for raw in info[b"groups"]:
        g = dict(zip(raw[0::2], raw[1::2], strict=True))
        read = g[b"entries-read"]
        group = StreamGroup(g[b"name"], parse_id(g[b"last-delivered-id"]),
                            -1 if read is None else read)
        for entry_id, consumer, delivered, count in g[b"pending"]:
            group.pending[parse_id(entry_id)] = StreamNack(delivered, count, consumer)
        for rawc in g[b"consumers"]:
            c = dict(zip(rawc[0::2], rawc[1::2], strict=True))
            group.consumers[c[b"name"]] = StreamConsumer(
                c[b"name"], c[b"seen-time"], [parse_id(p[0]) for p in c[b"pending"]])
        s.groups[group.name] = group
    return s


def read_value(client: redis.Redis, key: bytes) -> object:
    """A key's value on a live server, in kvrepl's value model."""
    kind = client.execute_command("TYPE", key)
    if kind == b"string":
        return client.execute_command("GET", key)
    if kind == b"list":
        return deque(client.execute_command("LRANGE", key, 0, -1))
    if kind == b"hash":
        flat = client.execute_command("HGETALL", key)
        return dict(zip(flat[0::2], flat[1::2], strict=True))
    if kind == b"set":
        return set(client.execute_command("SMEMBERS", key))
    if kind == b"zset":
        flat = client.execute_command("ZRANGE", key, 0, -1, "WITHSCORES")
        return ZSet({m: float(s) for m, s in zip(flat[0::2], flat[1::2], strict=True)})
    assert kind == b"stream", kind
    return read_stream(client, key)


def server_dataset(server: RedisServer) -> dict:
    """{db: ({key: value}, {key: expire_ms})} of a live server."""
    result = {}
    for index in range(16):
        client = raw_client(server, index)
        data, expires = {}, {}
        for key in client.execute_command("KEYS", "*"):
            data[key] = read_value(client, key)
            when = client.execute_command("PEXPIRETIME", key)
            if when != -1:
                expires[key] = when
        client.close()
        if data:
            result[index] = (data, expires)
    return result


def fill_server(server: RedisServer, ks: Keyspace, *, stream_metadata: bool = True) -> None:
    """Recreate ``ks`` on a live server with ordinary commands."""
    for index, db in enumerate(ks.dbs):
        if not db.data:
            continue
        client = raw_client(server, index)
        pipe = client.pipeline(transaction=False)
        for key, value in db.data.items():
            if type(value) is bytes:
                pipe.execute_command("SET", key, value)
            elif type(value) is deque:
                pipe.execute_command("RPUSH", key, *value)
            elif type(value) is dict:
                pipe.execute_command("HSET", key, *[x for kv in value.items() for x in kv])
            elif type(value) is set:
                pipe.execute_command("SADD", key, *value)
            elif type(value) is ZSet:
                pipe.execute_command("ZADD", key, *[x for s, m in value.ordered
                                                    for x in (repr(s), m)])
            else:
                for (ms, seq), fields in value.entries.items():
                    pipe.execute_command("XADD", key, f"{ms}-{seq}", *fields)
                if not value.entries:  # an empty stream: add and delete one entry
                    pipe.execute_command("XADD", key, "0-1", "f", "v")
                    pipe.execute_command("XDEL", key, "0-1")
                if stream_metadata:
                    pipe.execute_command("XSETID", key, "{}-{}".format(*value.last_id),
                                         "ENTRIESADDED", value.entries_added, "MAXDELETEDID",
                                         "{}-{}".format(*value.max_deleted_id))
            if key in db.expires:
                pipe.execute_command("PEXPIREAT", key, db.expires[key])
        pipe.execute()
        client.close()


def redis_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed")
        pytest.skip(f"{name} is not installed")
    return path


@pytest.fixture(scope="module")
def rich_file() -> str:
    directory = tempfile.mkdtemp(prefix="kvrepl-rdb-")
    path = os.path.join(directory, "ours.rdb")
    with open(path, "wb") as f:
        dump_keyspace(rich_keyspace(), f)
    yield path
    shutil.rmtree(directory, ignore_errors=True)


def test_redis_check_rdb_accepts_our_file(rich_file: str) -> None:
    out = subprocess.run([redis_binary("redis-check-rdb"), rich_file], capture_output=True,
                         text=True, timeout=30)
    assert "RDB looks OK" in out.stdout, out.stdout + out.stderr
    assert "Checksum OK" in out.stdout
    keys = sum(len(db.data) for db in rich_keyspace().dbs)
    assert f"[info] {keys} keys read" in out.stdout


def test_redis_server_loads_our_file(rich_file: str) -> None:
    directory, name = os.path.split(rich_file)
    server = RedisServer("--dir", directory, "--dbfilename", name,
                         "--enable-debug-command", "yes")
    filled = RedisServer("--enable-debug-command", "yes")
    try:
        expected = rich_keyspace()
        assert server_dataset(server) == snapshot(expected)
        info = server.client().info("keyspace")
        assert info["db0"]["keys"] == len(expected.dbs[0].data)
        fill_server(filled, expected)
        assert (server.client().execute_command("DEBUG", "DIGEST")
                == filled.client().execute_command("DEBUG", "DIGEST"))
    finally:
        server.stop()
        filled.stop()


def test_we_load_a_real_redis_save() -> None:
    server = RedisServer()
    try:
        fill_server(server, rich_keyspace())
        client = raw_client(server)
        # consumer groups with a PEL, a deleted entry and a tombstone-aware counter
        client.execute_command("XGROUP", "CREATE", "stream", "g1", "0")
        client.execute_command("XREADGROUP", "GROUP", "g1", "alice", "COUNT", 5,
                               "STREAMS", "stream", ">")
        client.execute_command("XREADGROUP", "GROUP", "g1", "bob", "COUNT", 2,
                               "STREAMS", "stream", ">")
        client.execute_command("XGROUP", "CREATE", "stream", "g2", "$", "ENTRIESREAD", 7)
        client.execute_command("XGROUP", "CREATECONSUMER", "stream", "g2", "idle")
        client.execute_command("XDEL", "stream", "1700000000000-1")
        client.execute_command("XADD", "small_stream", "1-1", "a", "1")
        client.execute_command("SAVE")
        path = os.path.join(client.execute_command("CONFIG", "GET", "dir")[1].decode(),
                            "dump.rdb")
        expected = server_dataset(server)
        ks = Keyspace()
        with open(path, "rb") as f:
            result = load_into(ks, f, drop_expired=True)
        assert result.checksum_ok is True and result.version == 10
        assert result.aux[b"redis-ver"] == b"7.0.15"
        assert snapshot(ks) == expected
        encodings = {raw_client(server).execute_command("OBJECT", "ENCODING", key)
                     for key in expected[0][0]}
        assert {b"listpack", b"hashtable", b"intset", b"skiplist", b"quicklist",
                b"stream"} <= encodings
    finally:
        server.stop()


def test_dump_payloads_cross_over_with_redis() -> None:
    server = RedisServer()
    try:
        ks = rich_keyspace()
        fill_server(server, ks)
        client = raw_client(server)
        for key, value in ks.dbs[0].data.items():
            theirs = client.execute_command("DUMP", key)
            assert load_value(theirs) == read_value(client, key), key
            client.execute_command("RESTORE", b"copy:" + key, 0, dump_value(value))
            assert read_value(client, b"copy:" + key) == value, key
        # byte-identical payloads wherever LZF plays no part
        rng = random.Random(3)
        noise = [bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 100)))
                 for _ in range(300)]
        samples = {
            b"s": b"-123", b"l": deque(noise), b"l2": deque(noise[:5]),
            b"h": {m[:60]: v[:60] for m, v in zip(noise[:8], noise[8:16], strict=True)},
            b"z": ZSet({m[:60]: i / 3 for i, m in enumerate(noise[:20])}),
            b"i": {b"1", b"-7", b"300", b"70000"},
            b"edge": ZSet({b"a": 2.0**62, b"b": -0.0, b"c": 1e300, b"d": math.inf,
                           b"e": 0.1, b"f": -2.0, b"g": 2.0**63, b"h": -math.inf}),
        }
        client.execute_command("CONFIG", "SET", "rdbcompression", "no")
        fill_server(server, _keyspace_of(samples))
        for key, value in samples.items():
            assert dump_value(value, compression=False) == client.execute_command("DUMP", key)
    finally:
        server.stop()


def _keyspace_of(data: dict) -> Keyspace:
    ks = Keyspace()
    ks.dbs[0].data.update(data)
    return ks
