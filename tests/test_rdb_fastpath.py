"""The RDB reader's and writer's fast paths give exactly what the general paths give.

Loading: :class:`~kvrepl.rdb.StagedLoad` stores runs of string keys straight into the
databases (``RdbParser.store_strings``) and decodes fully buffered collections in one call
(``objects.direct_*``, with struct for collections of same-size elements). Replication and
the server feed it in chunks split anywhere, so for random datasets and random split points
the result must equal the general path's (``next_event`` one record at a time, fast paths
off), and on corrupt input the error must be the same one.

Writing: ``RdbWriter.write_items`` (one loop over a bytearray) against ``write_entry``.
"""

from __future__ import annotations

import random
import struct
from collections import deque

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from support import mutate

from kvrepl.config import Config
from kvrepl.rdb import RdbError, RdbParser, StagedLoad, listpack, objects
from kvrepl.rdb.crc import crc64
from kvrepl.rdb.errors import Corrupt
from kvrepl.rdb.primitives import encode_str
from kvrepl.rdb.writer import RdbWriter, dumps
from kvrepl.store.database import Keyspace
from kvrepl.store.values import ZSet

NOW = 1_700_000_000_000
# Small listpack limits: collections of a handful of elements already take the HASH (4),
# ZSET_2 (5) and SET (2) encodings that the direct decoders read.
CONFIG = Config(hash_max_listpack_entries=2, zset_max_listpack_entries=2,
                set_max_intset_entries=2)


# -- datasets ---------------------------------------------------------------------------------
def string_value(rng: random.Random) -> bytes:
    kind = rng.randrange(8)
    if kind == 0:
        return b"%d" % rng.choice([0, -1, 7, 127, -128, 300, -40000, 2**31 - 1, 2**40, -5])
    if kind == 1:
        return b"ab" * rng.randrange(11, 60)  # LZF-compressed
    if kind == 2:
        return rng.randbytes(rng.randrange(64, 300))  # 14-bit length
    if kind == 3:
        return b""
    return rng.randbytes(rng.randrange(0, 40))


def key_name(rng: random.Random, i: int) -> bytes:
    kind = rng.randrange(6)
    if kind == 0:
        return b"%d" % (i * 7919)  # an INT-encoded key
    if kind == 1:
        return b"long:%d:" % i + b"k" * rng.randrange(60, 90)
    return b"key:%d" % i


def collection(rng: random.Random, kind: str) -> object:
    size = rng.choice([3, 8, 9, 20, 64])
    width = rng.choice([None, 0, 5, 16, 63])  # None: mixed sizes; else all the same size

    def element(i: int) -> bytes:
        if width is None:
            return b"e%d" % i + b"x" * rng.randrange(0, 80)
        return (b"%d:" % i).ljust(max(width, 1), b"-")[:width] if width else b""

    members = list(dict.fromkeys(element(i) for i in range(size)))
    if kind == "hash":
        return {m: (b"v%d" % i).ljust(width or 3, b".") for i, m in enumerate(members)}
    if kind == "zset":
        return ZSet({m: rng.choice([i * 0.5, -i, float("inf"), 1e300 * i])
                     for i, m in enumerate(members)})
    if kind == "set":
        return set(members)
    return deque(members)


def dataset(seed: int, keys: int) -> Keyspace:
    rng = random.Random(seed)
    ks = Keyspace()
    for i in range(keys):
        db = ks.dbs[rng.choice([0, 0, 0, 0, 3])]
        name = key_name(rng, i)
        kind = rng.choice(["string"] * 6 + ["hash", "zset", "set", "list"])
        db.data[name] = string_value(rng) if kind == "string" else collection(rng, kind)
        if rng.random() < 0.3:
            db.expires[name] = NOW + rng.choice([-5000, 5000, 10**9])
    return ks


# -- loading ----------------------------------------------------------------------------------
def staged(blob: bytes, cuts: list[int], drop_expired: bool = True, hold: int = 0,
           **options: object) -> tuple[object, object]:
    """(databases, counts) or ('error', message) of a StagedLoad fed ``blob`` in pieces
    (each with ``hold``)."""
    load = StagedLoad(16, drop_expired=drop_expired, now_ms=NOW, **options)
    bounds = [0, *sorted(c % (len(blob) + 1) for c in cuts), len(blob)]
    try:
        for start, end in zip(bounds, bounds[1:], strict=False):
            load.feed(blob[start:end], hold)
        result = load.finish()
    except RdbError as err:
        return "error", str(err)
    for index, (data, _) in enumerate(load.fresh):
        # What the memory estimate would add up, known without a pass over the keys.
        strings = set(map(type, data.values())) <= {bytes}
        assert load.strings_size(index) == (
            sum(len(k) + len(v) for k, v in data.items()) if strings else None)
    counts = (result.keys_loaded, result.keys_expired, result.empty_keys_skipped)
    return load.fresh, counts


def general(blob: bytes, monkeypatch: pytest.MonkeyPatch, **kwargs: object) -> tuple:
    """The same load through the general path only: no inline strings, no direct decoders."""
    with monkeypatch.context() as patch:
        patch.setattr(RdbParser, "_fast_ready", lambda self: False)
        patch.setattr(objects, "DIRECT_DECODERS", {})
        return staged(blob, [], **kwargs)


cut_points = st.lists(st.integers(0, 1 << 20), max_size=12)


holds = st.sampled_from([1, 100, 4096, 1 << 20])


@given(st.integers(0, 2**32), st.integers(0, 120), cut_points, st.booleans(), holds)
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_chunked_fast_load_equals_general_path(seed: int, keys: int, cuts: list[int],
                                               drop: bool, hold: int) -> None:
    blob = dumps(dataset(seed, keys), config=CONFIG)
    with pytest.MonkeyPatch.context() as monkeypatch:
        expected = general(blob, monkeypatch, drop_expired=drop)
    assert expected[0] != "error"
    assert staged(blob, cuts, drop_expired=drop) == expected
    assert staged(blob, list(range(0, len(blob), 997)), drop_expired=drop) == expected
    assert staged(blob, cuts, drop_expired=drop, hold=hold) == expected


def test_held_pieces_are_parsed_once_enough_wait_or_at_the_end() -> None:
    pieces = [rdb(*(string_key(b"k%d" % i, b"v") for i in range(100)))[i:i + 64]
              for i in range(0, 1200, 64)]
    load = StagedLoad(16, drop_expired=False, now_ms=NOW)
    load.feed(pieces[0], 150)
    load.feed(pieces[1], 150)
    assert load.keys_read() == 0  # 128 bytes wait: nothing parsed yet
    load.feed(pieces[2], 150)
    assert 0 < load.keys_read() < 100  # 192: parsed
    load.feed(pieces[3], 1 << 20)
    load.feed(pieces[4])  # no hold: what waits is parsed with it
    parsed = load.keys_read()
    assert parsed > 0 and not load._held
    for piece in pieces[5:]:
        load.feed(piece, 1 << 20)
    assert load.keys_read() == parsed
    assert load.finish().keys_loaded == 100
    assert load.fresh[0][0] == {b"k%d" % i: b"v" for i in range(100)}


@given(st.integers(0, 2**32), st.integers(1, 80), cut_points,
       st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255),
                          st.sampled_from(["set", "insert", "delete"])), min_size=1, max_size=3),
       st.booleans())
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_corrupt_input_gives_the_same_error_however_split(
        seed: int, keys: int, cuts: list[int], edits: list, checksum: bool) -> None:
    blob = mutate(dumps(dataset(seed, keys), config=CONFIG), edits, first=9)  # keep the magic
    with pytest.MonkeyPatch.context() as monkeypatch:
        expected = general(blob, monkeypatch, verify_checksum=checksum)
    assert staged(blob, cuts, verify_checksum=checksum) == expected
    assert staged(blob, [], verify_checksum=checksum) == expected
    assert staged(blob, cuts, verify_checksum=checksum, hold=4096) == expected


def rdb(*parts: bytes) -> bytes:
    data = b"REDIS0010\xfe\x00" + b"".join(parts) + b"\xff"
    return data + crc64(data).to_bytes(8, "little")


def string_key(name: bytes, value: bytes, expire: int | None = None) -> bytes:
    head = b"" if expire is None else b"\xfc" + struct.pack("<q", expire)
    return head + b"\x00" + encode_str(name) + encode_str(value)


@given(st.integers(0, 2999), st.integers(0, 2999), cut_points, st.booleans())
@example(5, 2999, [], False)
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_duplicate_keys_name_the_first_duplicate(first: int, second: int, cuts: list[int],
                                                 expired: bool) -> None:
    """The fast path checks duplicates once per run of keys: the error must still name the
    first duplicated key, as the general path does; a dropped expired key is no duplicate."""
    names = [b"key:%d" % i for i in range(3000)]
    records = [string_key(name, b"v" * (i % 30)) for i, name in enumerate(names)]
    lo, hi = sorted((first, second))
    records.insert(hi + 1, string_key(names[hi], b"again"))
    records.insert(lo + 1, string_key(names[lo], b"again", NOW - 1 if expired else None))
    blob = rdb(*records)
    result = staged(blob, cuts)
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert result == general(blob, monkeypatch)
    first_duplicate = names[hi] if expired else names[lo]
    assert result == ("error", f"RDB has duplicated key in DB 0 (key {first_duplicate!r})")


def test_store_strings_into_a_dict_that_already_has_keys() -> None:
    blob = rdb(*(string_key(b"k%d" % i, b"v") for i in range(500)))
    parser = RdbParser()
    parser.feed(blob)
    data: dict = {b"old": b"x", b"k400": b"there"}
    del data[b"old"]
    data[b"new"] = b"y"
    parser.next_events(2)  # SELECTDB and the first key as an event
    with pytest.raises(RdbError, match=r"duplicated key in DB 0 \(key b'k400'\)"):
        parser.store_strings(data, {}, None)
    with pytest.raises(RdbError, match="k400"):  # the parser stays failed
        parser.next_event()


def test_uniform_collections_fall_back_on_errors() -> None:
    """Same-size elements are cut by struct; a NaN score or a duplicate must still be found
    by the general loop, with its position."""
    members = [b"m%03d" % i for i in range(20)]
    zset = b"\x05" + encode_str(b"z") + b"\x14" + b"".join(
        encode_str(m) + struct.pack("<d", float(i)) for i, m in enumerate(members))
    nan = zset[:-8] + struct.pack("<d", float("nan"))
    dup_set = b"\x02" + encode_str(b"s") + b"\x14" + b"".join(
        encode_str(m) for m in [*members[:19], members[0]])
    dup_hash = b"\x04" + encode_str(b"h") + b"\x14" + b"".join(
        encode_str(m) + encode_str(b"vvvv") for m in [*members[:19], members[3]])
    for blob, message in ((rdb(nan), "Zset with NAN score detected at offset 262"),
                          (rdb(dup_set), "Duplicate set members detected at offset 14"),
                          (rdb(dup_hash), "Duplicate hash fields detected at offset 14")):
        for cuts in ([], [30], [40, 41, 42, 100]):
            kind, text = staged(blob, cuts)
            assert kind == "error" and message in text
    good = staged(rdb(zset), [])[0][0][0][b"z"]
    assert good == ZSet({m: float(i) for i, m in enumerate(members)})
    assert list(good.ordered) == [(float(i), m) for i, m in enumerate(members)]


# -- writing ----------------------------------------------------------------------------------
@given(st.integers(0, 2**32), st.integers(0, 150), st.booleans())
@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
def test_write_items_equals_write_entry(seed: int, keys: int, compression: bool) -> None:
    ks = dataset(seed, keys)
    for db in ks.dbs:
        if not db.data:
            continue
        slow, items, keys = (RdbWriter(compression=compression, config=CONFIG)
                             for _ in range(3))
        slow._db = items._db = keys._db = db.id
        one = b"".join(slow.write_entry(db.id, k, v, db.expires.get(k))
                       for k, v in db.data.items())
        assert items.write_items(list(db.data.items()), db.expires) == one
        assert keys.write_keys(list(db.data), db.data, db.expires) == one
        assert items._crc == keys._crc == slow._crc


# -- regressions the properties above found -----------------------------------------------------
def test_errors_found_after_a_chunk_boundary_keep_their_file_offset() -> None:
    """A value parsed element by element across chunks: the parser drops the bytes it has
    parsed when a chunk arrives, and the error must still name the value's file offset."""
    members = [b"member:%d" % i for i in range(40)]
    blob = rdb(b"\x02" + encode_str(b"s") + b"\x29"
               + b"".join(encode_str(m) for m in [*members, members[7]]))
    expected = ("error", "Duplicate set members detected at offset 14 (key b's')")
    for cuts in ([], [20], list(range(1, len(blob), 3)), list(range(len(blob)))):
        assert staged(blob, cuts) == expected


UNKNOWN = b"\x63" + encode_str(b"k") + b"x"  # a key of RDB type 99


def test_next_events_returns_the_events_before_an_error_first() -> None:
    blob = rdb(string_key(b"a", b"1"), string_key(b"b", b"2"), UNKNOWN)
    parser = RdbParser()
    parser.feed(blob)
    assert [e.key for e in parser.next_events()[1:]] == [b"a", b"b"]
    with pytest.raises(RdbError, match="unknown RDB object type 99"):
        parser.next_events()
    with pytest.raises(RdbError, match="unknown RDB object type 99"):
        parser.next_event()
    # ... so a duplicate key before a later error is the error reported, as by Redis.
    dup = rdb(string_key(b"a", b"1"), string_key(b"a", b"2"), UNKNOWN)
    assert staged(dup, []) == ("error", "RDB has duplicated key in DB 0 (key b'a')")


def test_quicklist_errors_point_at_the_node_either_way() -> None:
    node = b"\x02" + encode_str(b"\x0a\x00\x00\x00\x01\x00\x81a\x05\xff", compress=False)
    blob = rdb(b"\x12" + encode_str(b"l") + b"\x01" + node)
    results = {staged(blob, cuts) for cuts in ([], [16], list(range(len(blob))))}
    assert results == {("error", "listpack integrity check failed: bad backlen at 8 at "
                        "offset 16 (key b'l')")}


@given(st.integers(0, 63), st.integers(0, 300), st.integers(0, 2**32),
       st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=2))
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
def test_listpacks_of_same_size_strings_parse_as_the_entry_loop_does(
        size: int, count: int, seed: int, edits: list) -> None:
    rng = random.Random(seed)
    items = [rng.choice([b"a", b"z", b"-", b"\x00"]) * size for _ in range(count)]
    if size and count and rng.random() < 0.2:
        items[rng.randrange(count)] = b"1" * size  # an integer-like one is an int entry
    blob = bytearray(listpack.pack(items))
    for position, byte in edits:
        blob[position % len(blob)] = byte

    def parse(data: bytes) -> object:
        try:
            return listpack.parse(data)
        except Corrupt as corrupt:
            return corrupt.message

    got = parse(bytes(blob))
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(listpack, "_uniform_strings", lambda *args: None)
        assert got == parse(bytes(blob))
    if not edits:
        assert got == [b"%d" % int(i) if i[:1] == b"1" else i for i in items]
