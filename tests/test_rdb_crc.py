"""CRC64 (kvrepl.rdb.crc, anycrc underneath): the value Redis's crc64.c gives, whole or
continued over pieces of any size and buffer type, as the reader and writer feed it; checked
against the standard check value, a table-driven reference, and the checksums real
redis-servers wrote (DUMP payloads, RDB files of the corpus)."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
import redis
from support import corpus_files

from kvrepl.rdb import End, RdbError, RdbParser
from kvrepl.rdb.crc import crc64

CHECK = 0xE9C6D914C4B8D9CA  # CRC-64/REDIS of b"123456789"


def _table() -> list[int]:
    """crc64.c's reflected table, built bit by bit from the reversed Jones polynomial."""
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x95AC9329AC4BC9B5 if crc & 1 else 0)
        table.append(crc)
    return table


TABLE = _table()


def reference(data: bytes, crc: int = 0) -> int:
    """Byte at a time, the way Redis's crc64.c defines it (slow, independent of anycrc)."""
    for byte in data:
        crc = TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc


BUFFERS: list[Callable[[bytes], object]] = [bytes, bytearray, memoryview,
                                            lambda b: memoryview(bytearray(b))]


def in_pieces(data: bytes, size: int, as_buffer: Callable[[bytes], object]) -> int:
    """The running checksum over ``data`` cut into ``size``-byte pieces."""
    crc = 0
    for at in range(0, len(data), size):
        crc = crc64(as_buffer(data[at:at + size]), crc)
    return crc


def test_check_value_whole_and_in_pieces_of_every_size() -> None:
    assert reference(b"123456789") == CHECK
    for as_buffer in BUFFERS:
        assert crc64(as_buffer(b"123456789")) == CHECK
        for size in range(1, 10):
            assert in_pieces(b"123456789", size, as_buffer) == CHECK
    # An empty piece leaves the running value alone (the reader may hand one over).
    assert crc64(b"", 12345) == 12345 and crc64(memoryview(b"")[:0]) == 0
    assert crc64(b"456789", crc64(b"")) == reference(b"456789")


def test_pieces_of_every_size_and_cut_agree_with_the_reference() -> None:
    rng = random.Random(12)
    data = rng.randbytes(3000)  # past every block size the carry-less multiply folds by
    whole = reference(data)
    assert crc64(data) == whole
    for size in range(1, 300):
        assert in_pieces(data, size, BUFFERS[size % len(BUFFERS)]) == whole, size
    for cut in range(len(data) + 1):  # two pieces, cut anywhere: memoryview slices
        view = memoryview(data)
        assert crc64(view[cut:], crc64(view[:cut])) == whole, cut
    for length in range(0, 300):  # every short length, whole
        assert crc64(data[:length]) == reference(data[:length])


CORPUS = [path for path in corpus_files() if path.with_suffix(".json").exists()
          and int(path.read_bytes()[5:9]) >= 5]  # version 5+: a checksum, Redis loaded it


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_corpus_checksums_whole_and_in_pieces(path) -> None:
    data = path.read_bytes()
    stored = int.from_bytes(data[-8:], "little")
    if not stored:
        pytest.skip("written with rdbchecksum no")
    body = data[:-8]
    assert crc64(body) == stored
    for size in (1, 7, 64, 1000, 4096):
        assert in_pieces(body, size, BUFFERS[size % len(BUFFERS)]) == stored


def parse_in_pieces(data: bytes, size: int) -> End:
    """Feed ``data`` to an RdbParser ``size`` bytes at a time; its End event."""
    parser = RdbParser()
    last = None
    for at in range(0, len(data) + 1, size):
        parser.feed(data[at:at + size] or b"")
        while (events := parser.next_events()):
            last = events[-1]
    assert type(last) is End
    return last


def test_reader_verifies_across_every_piece_size_and_catches_a_flipped_bit() -> None:
    path = next(p for p in CORPUS if p.name == "dumps-7__dictionary_7.rdb")  # 100 KB
    data = path.read_bytes()
    for size in (1, 2, 3, 5, 8, 13, 64, 511, 4096, len(data)):
        assert parse_in_pieces(data, size).checksum_ok is True
    # A key name's letter changes case (still parses: only the CRC disagrees), or a bit of
    # the stored checksum flips.
    in_key = bytearray(data)
    in_key[data.index(b"force_dictionary")] ^= 0x20
    in_crc = bytearray(data)
    in_crc[-3] ^= 1
    for corrupt in (in_key, in_crc):
        for size in (1, 4096, len(data)):
            with pytest.raises(RdbError, match="RDB CRC error"):
                parse_in_pieces(bytes(corrupt), size)


def test_dump_payloads_of_a_real_redis(real: redis.Redis) -> None:
    rng = random.Random(7)
    real.set("short", "v")
    real.set("int", 12345)
    real.set("long", rng.randbytes(5000))
    real.rpush("list", *[rng.randbytes(rng.randrange(1, 80)) for _ in range(300)])
    real.hset("hash", mapping={f"f{i}": rng.randbytes(40) for i in range(200)})
    real.sadd("set", *range(100))
    real.zadd("zset", {f"m{i}": i / 3 for i in range(200)})
    real.xadd("stream", {"a": "1"})
    for name in ("short", "int", "long", "list", "hash", "set", "zset", "stream"):
        payload = real.dump(name)
        body, stored = payload[:-8], int.from_bytes(payload[-8:], "little")
        assert crc64(body) == stored == reference(body), name
        for size in (1, 3, 16, 100):
            assert in_pieces(body, size, BUFFERS[size % len(BUFFERS)]) == stored, name
