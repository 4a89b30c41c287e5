"""HyperLogLog as Redis 7.0 stores it (``hyperloglog.c``): the same bytes, the same estimates.

An HLL is a plain string value: a 16-byte header, then the registers.

=========  ==========================================================================
bytes      meaning
=========  ==========================================================================
0..3       ``HYLL``
4          encoding: 0 dense, 1 sparse
5..7       unused, zero
8..15      cached cardinality, little endian; bit 7 of byte 15 set = stale
16..       dense: 16384 registers of 6 bits, packed from the least significant bit;
           sparse: opcodes ``00xxxxxx`` ZERO (1..64 zero registers), ``01xxxxxx yyyyyyyy``
           XZERO (1..16384 zero registers), ``1vvvvvxx`` VAL (1..4 registers of value 1..32)
=========  ==========================================================================

The walks over sparse opcodes that validate them (merge, conversion to dense, histogram)
include the fix of CVE-2025-32023, which Debian's 7.0.15 package and every later Redis
carry: an opcode that would run past register 16383 makes the HLL corrupt at once (7.0.15
as tagged stopped there and could accept trailing opcodes, or overflow on huge strings).

Everything here takes and returns ``bytes`` (a working ``bytearray`` inside), without I/O,
but for dense HLLs that PFADD and PFCOUNT change in place: a ``bytearray`` stored as the
value (:func:`dense_in_place`), so that each costs what it changes, not a 12 KB copy.
Sparse updates are a line-by-line port of ``hllSparseSet`` (the opcode splits, the merge of
neighbouring VAL opcodes over a window of five, the promotion to dense), because the exact
bytes are observable (GET, DUMP, replication) and must match a real redis-server's.

Where Redis walks 16384 registers one by one, this module works on whole byte strings:
dense registers are unpacked into one byte per register (and packed back) with integer
arithmetic on 4096-byte lanes (SWAR), register maxima are taken the same way, and the
histogram the estimator needs comes from ``bytes.count``.
"""

from __future__ import annotations

import math
import random
import struct
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from itertools import compress
from operator import itemgetter

from kvrepl.store.encoding import mark_string

HLL_P = 14  # register index bits
HLL_Q = 64 - HLL_P  # bits left for the run of zeros
REGISTERS = 1 << HLL_P
P_MASK = REGISTERS - 1
BITS = 6
REGISTER_MAX = (1 << BITS) - 1
HDR_SIZE = 16
DENSE_SIZE = HDR_SIZE + (REGISTERS * BITS + 7) // 8
DENSE = 0
SPARSE = 1
MAX_ENCODING = 1
SPARSE_VAL_MAX_VALUE = 32
SPARSE_VAL_MAX_LEN = 4
SPARSE_ZERO_MAX_LEN = 64
SPARSE_XZERO_MAX_LEN = 16384
SEED = 0xADC83B19
ALPHA_INF = 0.721347520444481703680  # 0.5/ln(2)

INVALID_HLL = "INVALIDOBJ Corrupted HLL object detected"
NOT_HLL = "WRONGTYPE Key is not a valid HyperLogLog string value."

_M = 0xC6A4A7935BD1E995
_MASK64 = (1 << 64) - 1
_STALE = 0x80  # bit 7 of byte 15: the cached cardinality is not valid

DENSE_MAGIC = b"HYLL" + bytes((DENSE,))  # how every dense HLL starts
SPARSE_MAGIC = b"HYLL" + bytes((SPARSE,))
# createHLLObject: a sparse HLL of one XZERO opcode covering every register.
EMPTY = b"HYLL" + bytes((SPARSE, 0, 0, 0)) + bytes(8) + bytes((
    0x40 | ((REGISTERS - 1) >> 8), (REGISTERS - 1) & 0xFF))

# Where register i lives in the whole string (header included) and at which bit.
_REG_BYTE = [HDR_SIZE + i * BITS // 8 for i in range(REGISTERS)]
_REG_SHIFT = [i * BITS & 7 for i in range(REGISTERS)]
# By shift: the bits of the register's byte (shifts 0 and 2) or little-endian pair of bytes
# (shifts 4 and 6) that are not the register's.
_KEEP = [~(REGISTER_MAX << fb) & (0xFF if fb <= 2 else 0xFFFF) for fb in range(8)]

# Per-byte masks over a 4096-byte little-endian integer (one lane per byte).
_LANES = REGISTERS // 4
_L = int.from_bytes(b"\x01" * _LANES, "little")
_L03, _L0F, _L3F, _H80 = _L * 0x03, _L * 0x0F, _L * 0x3F, _L * 0x80
_ONE_BYTE = [bytes((v,)) for v in range(256)]


class _Memo:
    """Facts about HLL values remembered by the identity of the ``bytes`` object (which
    cannot change, so a fact stays true), like :func:`kvrepl.store.encoding.mark_string`'s
    marks. Bounded, oldest out first; an entry holds its value, so that no other object
    takes its id meanwhile. A fact that its user edits in place is taken (:meth:`take`), not
    read, so that the old value, which another key may still hold, cannot see the edit."""

    __slots__ = ("limit", "entries")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.entries: dict[int, tuple[bytes, object]] = {}

    def get(self, value: bytes) -> object | None:
        found = self.entries.get(id(value))
        return found[1] if found is not None and found[0] is value else None

    def take(self, value: bytes) -> object | None:
        found = self.entries.pop(id(value), None)
        return found[1] if found is not None and found[0] is value else None

    def put(self, value: bytes, fact: object | None) -> bytes:
        if fact is not None:
            if len(self.entries) >= self.limit:
                self.entries.pop(next(iter(self.entries)), None)
            self.entries[id(value)] = (value, fact)
        return value


# The byte just past the end of a sparse HLL, where Redis's sds keeps its terminator. An XZERO
# opcode cut short by the end of the string reads it as its second byte, and the one update
# that splits such an opcode writes its last byte there (hllSparseSet's memcpy goes one past
# the new length). Redis keeps that byte with the string in memory until its length changes
# again, so kvrepl remembers it too; zero, by far the usual, is not stored.
_TAILS = _Memo(1024)
# The register histogram of dense HLLs counted or updated lately: PFADD keeps it current
# register by register, so PFCOUNT after PFADD does not recount 16384 registers.
_HISTOGRAMS = _Memo(64)
# What is known of dense HLLs kept as a ``bytearray`` (changed in place, see dense_in_place): a
# _Live each. Such a value keeps its identity whatever changes it, SETRANGE, APPEND, SETBIT or
# BITFIELD too, which do not tell this module; so a _Live is used only while the value still
# equals its shadow (one comparison, no copy).
_LIVE = _Memo(64)
# A dense ``bytearray`` HLL given this many elements at once gets a _Live if it has none (the
# registers unpacked once, 20-odd elements' worth of PFADD's work), for this and the next
# batches; fewer are added register by register (see dense_update).
_BATCH_LIVE = 8
_ORDER = range(1 << 62)  # 0, 1, 2...: compress() gives the positions a mask selects


def tail_byte(value: bytes) -> int:
    """The byte Redis would find just past ``value``'s end (0 but after the case above)."""
    return _TAILS.get(value) or 0  # type: ignore[return-value]


def _with_tail(value: bytes, tail: int) -> bytes:
    return _TAILS.put(value, tail or None)


class CorruptHLL(Exception):
    """The sparse opcodes do not describe exactly 16384 registers (INVALIDOBJ)."""


# -- hashing ---------------------------------------------------------------------------------
_BLOCKS: dict[int, struct.Struct] = {}
# The hash's starting value for each length under 16, with Redis's seed.
_SEEDED = [SEED ^ ((n * _M) & _MASK64) for n in range(16)]


def murmurhash64a(data: bytes, seed: int = SEED, _m: int = _M, _mask: int = _MASK64,
                  _from: object = int.from_bytes) -> int:
    """MurmurHash2, 64-bit version (MurmurHash64A), as Redis computes it (little endian).

    Elements shorter than 16 bytes, the usual ones, are read as one integer. Arithmetic
    modulo 2**64 is only masked before a right shift or at the end: a product or an XOR
    keeps its low 64 bits right whatever lies above them, and each mask saved is one big
    integer operation less. The constants are default arguments because local names are
    the fastest Python has.
    """
    n = len(data)
    h = _SEEDED[n] if n < 16 and seed == SEED else seed ^ ((n * _m) & _mask)
    if n < 16:
        if n >= 8:
            x = _from(data, "little")  # type: ignore[operator]
            k = (x * _m) & _mask  # the first 8 bytes' block (x's bits above 64 drop out)
            h = (h ^ ((k ^ (k >> 47)) * _m)) * _m
            if n > 8:
                h = (h ^ (x >> 64)) * _m
            h &= _mask
        elif n:
            h = ((h ^ _from(data, "little")) * _m) & _mask  # type: ignore[operator]
    else:
        blocks = n >> 3
        unpack = _BLOCKS.get(blocks)
        if unpack is None:
            unpack = _BLOCKS[blocks] = struct.Struct(f"<{blocks}Q")
        for k in unpack.unpack_from(data):
            k = (k * _m) & _mask
            h = ((h ^ ((k ^ (k >> 47)) * _m)) * _m) & _mask
        if n & 7:
            h = ((h ^ _from(data[blocks << 3:], "little")) * _m) & _mask  # type: ignore[operator]
    h = ((h ^ (h >> 47)) * _m) & _mask
    return h ^ (h >> 47)


def pattern(element: bytes, _m: int = _M, _mask: int = _MASK64, _seeded: list[int] = _SEEDED,
            _from: object = int.from_bytes, _stop: int = 1 << HLL_Q) -> tuple[int, int]:
    """hllPatLen: (register index, length of the ``000...1`` run after the index bits).

    An element of 9 to 15 bytes (redis-benchmark's ``__rand_int__`` has 12) is hashed here,
    :func:`murmurhash64a`'s steps for that length in one expression; the index is the low
    14 bits of the hash and the run is read from the bits above them, a ``1`` put past the
    last one (``_stop``) ending it there.
    """
    n = len(element)
    if 8 < n < 16:
        x = _from(element, "little")  # type: ignore[operator]
        k = (x * _m) & _mask
        h = ((((_seeded[n] ^ ((k ^ (k >> 47)) * _m)) * _m) ^ (x >> 64)) * _m) & _mask
        h = ((h ^ (h >> 47)) * _m) & _mask
        h ^= h >> 47
    else:
        h = murmurhash64a(element)
    run = h >> HLL_P | _stop
    return h & P_MASK, (run & -run).bit_length()


# -- hashing a batch -------------------------------------------------------------------------
# Several elements of one length of 1 to 15 bytes (a pipeline of redis-benchmark's PFADDs, a
# PFADD of many ids) are hashed together: each gets a 128-bit lane of one big integer, wide
# enough for a 64-bit by 64-bit product, and each step of MurmurHash64A is one operation on
# the whole integer (masked back to 64 bits per lane where a product or shift would reach the
# next lane). In Python the cost is in the number of operations, not in the width of the
# integers: a batch of 16 costs a few times one element.
_BATCH_MIN = 6  # fewer elements are hashed one by one (as fast)
_BATCH_MAX = 64  # a longer list is cut into batches of this many
# Bit 7 of each of n bytes, for dense_update's comparison of n registers with n runs at once.
_HIGHS = [int.from_bytes(b"\x80" * n, "little") for n in range(_BATCH_MAX + 1)]
_LANE = b"\x01" + bytes(15)  # one byte set in each 16-byte lane
_PADS = [bytes(16 - n) for n in range(17)]  # what fills an element up to its lane
# The run, from the 8 bits above the index (bits 14..21): the position of the lowest 1 bit;
# 0 for eight zero bits (one element in 256), where the run is read from the whole hash.
_RUN_OF_BYTE = bytes([0] + [(v & -v).bit_length() for v in range(1, 256)])
# Each length's starting value of the hash as a 16-byte lane (for a batch of mixed lengths).
_SEED_LANES = [_SEEDED[n].to_bytes(16, "little") for n in range(16)]
# (element length, batch size) -> the masks and seeds of its lanes, its unpacker and packer.
_BATCHES: dict[tuple[int, int], tuple[int, int, int, int, object, object]] = {}


def _batch_constants(size: int, n: int) -> tuple[int, int, int, int, object, object]:
    found = _BATCHES.get((size, n))
    if found is None:
        lanes = int.from_bytes(_LANE * n, "little")
        found = _BATCHES[size, n] = (lanes * _MASK64, lanes * _SEEDED[size], lanes * P_MASK,
                                     lanes * (0xFF << 64), struct.Struct("<" + "H14x" * n).unpack,
                                     struct.Struct("16s" * n).pack)
    return found


# The patterns of a list of elements: their register indexes, and their runs.
Patterns = tuple[Sequence[int], Sequence[int]]


def _batch_patterns(elements: Sequence[bytes], size: int, mixed: bool, _m: int = _M
                    ) -> Patterns:
    """:func:`patterns` of ``elements``, all ``size`` (1..15) bytes long, at once; or, when
    ``mixed``, of lengths that all fall on the same side of 8 as ``size``."""
    n = len(elements)
    low64, seeds, low14, byte8, unpack, pack = _batch_constants(size, n)
    # Each element with its zero padding: lane i holds its first 8 bytes (the block of
    # an element of 8 bytes or more) in bits 0..63 and the rest (the tail) in bits 64..127.
    if mixed:
        x = int.from_bytes(pack(*elements), "little")  # type: ignore[operator]
        seeds = int.from_bytes(b"".join(map(_SEED_LANES.__getitem__, map(len, elements))),
                               "little")
    else:
        x = int.from_bytes(_PADS[size].join(elements), "little")
    if size < 8:  # no block: the element is the tail
        h = ((x ^ seeds) * _m) & low64
    else:
        k = ((x & low64) * _m) & low64
        h = ((((k ^ ((k >> 47) & low64)) * _m) & low64) ^ seeds) * _m & low64
        if size > 8:
            h = ((h ^ ((x >> 64) & low64)) * _m) & low64
    h = ((h ^ ((h >> 47) & low64)) * _m) & low64
    # The last step, h ^= h >> 47, left unmasked: what it brings from the next lane lands
    # in bits 81 up, and only bits 0..21 are read.
    h ^= h >> 47
    # One conversion for both: the index (bits 0..13) where it is, the 8 bits above it
    # moved to byte 8 of the lane (what the shift brings from the lane below is masked off).
    lanes = ((h & low14) | ((h << 50) & byte8)).to_bytes(n << 4, "little")
    indexes = unpack(lanes)  # type: ignore[operator]
    runs = lanes[8::16].translate(_RUN_OF_BYTE)
    if 0 in runs:  # a run longer than 8: read from the element's own hash
        return indexes, [run or pattern(element)[1]
                         for run, element in zip(runs, elements, strict=True)]
    return indexes, runs


def patterns(elements: Sequence[bytes]) -> Patterns:
    """:func:`pattern` of each element, in order, as two sequences: the register indexes
    and the runs. Elements of 1 to 15 bytes (redis-benchmark's, and most ids) are hashed
    in batches: all of one length, or all under 8 bytes, or all of 9 to 15."""
    n = len(elements)
    if n >= _BATCH_MIN:
        lengths = set(map(len, elements))
        size = len(elements[0])
        shortest, longest = min(lengths), max(lengths)
        # One length, or lengths that one step sequence hashes (1..7 bytes: the tail only;
        # 9..15: a block and a tail), each with its own starting value.
        if 0 < shortest and longest < 16 and (shortest == longest or longest < 8
                                              or shortest > 8):
            if n <= _BATCH_MAX:
                return _batch_patterns(elements, size, shortest != longest)
            indexes: list[int] = []
            runs: list[int] = []
            for start in range(0, n, _BATCH_MAX):
                more, longer = patterns(elements[start:start + _BATCH_MAX])
                indexes += more
                runs += longer
            return indexes, runs
    if not n:
        return (), ()
    indexes, runs = zip(*map(pattern, elements), strict=True)  # type: ignore[assignment]
    return indexes, runs


# -- the header --------------------------------------------------------------------------------
def is_hll(value: bytes) -> bool:
    """isHLLObjectOrReply's checks of a string: magic, known encoding, a dense one's size.
    (``startswith``: no slice, which for a ``bytearray`` is a new one.)"""
    return (len(value) >= HDR_SIZE and value.startswith(b"HYLL") and value[4] <= MAX_ENCODING
            and (value[4] != DENSE or len(value) == DENSE_SIZE))


# The cached cardinality (header bytes 8-15, little endian): ``CARDINALITY.unpack_from(value,
# 8)[0]`` reads it without a slice (a new object, for a ``bytearray`` a slower one).
CARDINALITY = struct.Struct("<Q")


def is_sparse(value: bytes) -> bool:
    return value[4] == SPARSE


def cached_cardinality(value: bytes) -> int | None:
    """The cached cardinality, or None when it is marked stale."""
    if value[15] & _STALE:
        return None
    return CARDINALITY.unpack_from(value, 8)[0]  # type: ignore[no-any-return]


def with_cardinality(value: bytes, card: int) -> bytes:
    """``value`` with ``card`` cached (PFCOUNT writes it back)."""
    return _carry(value, value[:8] + card.to_bytes(8, "little") + value[16:])


# -- registers as one byte each ------------------------------------------------------------
def _unpack_dense(value: bytes) -> tuple[int, int, int, int]:
    """Registers 4g, 4g+1, 4g+2, 4g+3 of a dense HLL as four integers of 4096 byte lanes
    (every 3 bytes hold 4 registers)."""
    b0 = int.from_bytes(value[HDR_SIZE::3], "little")
    b1 = int.from_bytes(value[HDR_SIZE + 1::3], "little")
    b2 = int.from_bytes(value[HDR_SIZE + 2::3], "little")
    return (b0 & _L3F,
            ((b0 >> 6) & _L03) | ((b1 & _L0F) << 2),
            ((b1 >> 4) & _L0F) | ((b2 & _L03) << 4),
            (b2 >> 2) & _L3F)


def _pack_dense(lanes: tuple[int, int, int, int]) -> bytearray:
    """The 12288 register bytes of a dense HLL from :func:`_unpack_dense`'s form."""
    r0, r1, r2, r3 = lanes
    out = bytearray(DENSE_SIZE - HDR_SIZE)
    out[0::3] = (r0 | ((r1 & _L03) << 6)).to_bytes(_LANES, "little")
    out[1::3] = (((r1 >> 2) & _L0F) | ((r2 & _L0F) << 4)).to_bytes(_LANES, "little")
    out[2::3] = (((r2 >> 4) & _L03) | (r3 << 2)).to_bytes(_LANES, "little")
    return out


def _lanes_of_raw(raw: bytes | bytearray) -> tuple[int, int, int, int]:
    return tuple(int.from_bytes(raw[k::4], "little") for k in range(4))  # type: ignore


def _raw_of_lanes(lanes: tuple[int, int, int, int]) -> bytearray:
    raw = bytearray(REGISTERS)
    for k in range(4):
        raw[k::4] = lanes[k].to_bytes(_LANES, "little")
    return raw


def _lane_max(a: int, b: int) -> int:
    """Per-byte maximum of lanes below 128: (a|0x80)-b keeps bit 7 exactly where a >= b."""
    mask = ((((a | _H80) - b) & _H80) >> 7) * 0xFF
    return (a & mask) | (b & ~mask)


def _sparse_raw(value: bytes | bytearray, tail: int | None = None) -> bytearray:
    """One byte per register of a sparse HLL (hllMerge's and hllSparseToDense's walk);
    CorruptHLL when the opcodes do not cover exactly 16384 registers (an opcode that runs
    past the last register is refused at once: the CVE-2025-32023 fix)."""
    if tail is None:
        tail = tail_byte(value)  # type: ignore[arg-type]
    raw = bytearray(REGISTERS)
    end = len(value)
    p = HDR_SIZE
    i = 0
    while p < end:
        b = value[p]
        if b < 0x40:
            run = b + 1
            p += 1
        elif b < 0x80:
            run = (((b & 0x3F) << 8) | (value[p + 1] if p + 1 < end else tail)) + 1
            p += 2
        else:
            run = (b & 3) + 1
            if run + i <= REGISTERS:
                raw[i:i + run] = _ONE_BYTE[((b >> 2) & 0x1F) + 1] * run
            p += 1
        if run + i > REGISTERS:
            raise CorruptHLL()
        i += run
    if i != REGISTERS:
        raise CorruptHLL()
    return raw


def registers(value: bytes) -> bytearray:
    """Every register of an HLL (either encoding), one byte each (PFDEBUG GETREG)."""
    if value[4] == DENSE:
        return _raw_of_lanes(_unpack_dense(value))
    return _sparse_raw(value)


class Registers:
    """The running register-wise maximum of several HLLs (PFCOUNT of many keys, PFMERGE)."""

    __slots__ = ("lanes", "empty")

    def __init__(self) -> None:
        self.lanes = (0, 0, 0, 0)
        self.empty = True  # nothing merged yet: the first HLL's registers are taken as they are

    def merge(self, value: bytes) -> None:
        """hllMerge: raise each register to ``value``'s; CorruptHLL for a bad sparse one."""
        other = _unpack_dense(value) if value[4] == DENSE else _lanes_of_raw(_sparse_raw(value))
        if self.empty:
            self.lanes, self.empty = other, False
            return
        self.lanes = tuple(_lane_max(a, b) for a, b in zip(self.lanes, other, strict=True))  # type: ignore

    def raw(self) -> bytearray:
        return _raw_of_lanes(self.lanes)

    def count(self) -> int:
        """hllCount of the HLL_RAW encoding."""
        return estimate(_histogram(b"".join(
            lane.to_bytes(_LANES, "little") for lane in self.lanes)))


# -- counting ----------------------------------------------------------------------------------
def _histogram(raw: bytes) -> list[int]:
    """How many registers hold each value 0..63 (the order of ``raw`` does not matter).

    Each value in turn is deleted from what is left (one C pass that shrinks the bytes
    by its count): the common small values go first, so the passes read a fraction of
    what counting each value over all 16384 registers would."""
    histogram = [0] * 64
    left = len(raw)
    for v in range(64):
        rest = raw.translate(None, _ONE_BYTE[v])
        histogram[v] = left - len(rest)
        left = len(rest)
        if not left:
            break
        raw = rest
    return histogram


def _sparse_histogram(value: bytes) -> list[int]:
    """hllSparseRegHisto; CorruptHLL when the runs do not add up to 16384 registers (or one
    runs past the last register: the CVE-2025-32023 fix)."""
    histogram = [0] * 64
    tail = tail_byte(value)
    end = len(value)
    p = HDR_SIZE
    i = 0
    while p < end:
        b = value[p]
        if b < 0x40:
            run = b + 1
            histogram[0] += run
            p += 1
        elif b < 0x80:
            run = (((b & 0x3F) << 8) | (value[p + 1] if p + 1 < end else tail)) + 1
            histogram[0] += run
            p += 2
        else:
            run = (b & 3) + 1
            histogram[((b >> 2) & 0x1F) + 1] += run
            p += 1
        if run + i > REGISTERS:
            raise CorruptHLL()
        i += run
    if i != REGISTERS:
        raise CorruptHLL()
    return histogram


def _sigma(x: float) -> float:
    """hllSigma (Ertl, arXiv:1702.01284)."""
    if x == 1.0:
        return math.inf
    y = 1.0
    z = x
    while True:
        x *= x
        z_prime = z
        z += x * y
        y += y
        if z_prime == z:
            return z


def _tau(x: float) -> float:
    """hllTau (Ertl, arXiv:1702.01284)."""
    if x == 0.0 or x == 1.0:
        return 0.0
    y = 1.0
    z = 1 - x
    while True:
        x = math.sqrt(x)
        z_prime = z
        y *= 0.5
        z -= (1 - x) ** 2 * y  # pow(1 - x, 2): C's pow, as Redis calls it
        if z_prime == z:
            return z / 3


def estimate(histogram: list[int]) -> int:
    """hllCount's estimator (Ertl's "new" one) from a register histogram, in doubles."""
    m = float(REGISTERS)
    z = m * _tau((m - histogram[HLL_Q + 1]) / m)
    for j in range(HLL_Q, 0, -1):
        z += histogram[j]
        z *= 0.5
    z += m * _sigma(histogram[0] / m)
    e = ALPHA_INF * m * m / z
    whole = math.floor(e)
    return int(whole) + (1 if e - whole >= 0.5 else 0)  # llroundl: halves away from zero


def count(value: bytes | bytearray) -> int:
    """hllCount of a stored HLL (the cache is not consulted); CorruptHLL for a bad sparse."""
    if type(value) is bytearray and value[4] == DENSE:  # kept for changes in place
        return estimate(_live_histogram(value))
    if value[4] == DENSE:
        histogram = _HISTOGRAMS.get(value)
        if histogram is None:
            histogram = _histogram(b"".join(
                lane.to_bytes(_LANES, "little") for lane in _unpack_dense(value)))
            _HISTOGRAMS.put(value, histogram)
        return estimate(histogram)  # type: ignore[arg-type]
    return estimate(_sparse_histogram(value))


class _Live:
    """The registers of a dense HLL kept as a ``bytearray``, as PFADD and PFCOUNT left them:
    ``shadow``, a copy of the whole value (its header aside, see :meth:`holds`); ``raw``,
    the same registers one byte each, where PFADD reads a batch of registers at once
    (``itemgetter``, in C) instead of taking each out of its 6 bits; ``histogram``, the
    count of registers by value once PFCOUNT needed it, kept current register by register.
    PFADD changes them together (see :func:`dense_update`)."""

    __slots__ = ("shadow", "raw", "histogram")

    def __init__(self, value: bytearray, histogram: list[int] | None = None) -> None:
        self.shadow = bytearray(value)
        self.raw = _raw_of_lanes(_unpack_dense(value))  # type: ignore[arg-type]
        self.histogram = histogram

    def holds(self, value: bytearray) -> bool:
        """``value`` still has the registers this describes (nothing else changed them)."""
        shadow = self.shadow
        shadow[:HDR_SIZE] = value[:HDR_SIZE]  # the header holds no register
        return shadow == value


def _live(value: bytearray) -> _Live | None:
    """The :class:`_Live` of ``value`` if one is kept and still true (else it is dropped)."""
    live = _LIVE.get(value)  # type: ignore[arg-type]
    if live is not None and not live.holds(value):  # type: ignore[attr-defined]
        _LIVE.take(value)  # type: ignore[arg-type]
        return None
    return live  # type: ignore[return-value]


def _live_histogram(value: bytearray) -> list[int]:
    """The histogram of the dense ``bytearray`` ``value``, from its :class:`_Live` (made
    and kept when missing or no longer true)."""
    live = _live(value) if _LIVE.entries else None
    if live is None:
        live = _Live(value)
        _LIVE.put(value, live)  # type: ignore[arg-type]
    if live.histogram is None:
        live.histogram = _histogram(bytes(live.raw))
    return live.histogram


def _mutable(value: bytes) -> bytearray:
    """The dense HLL ``value`` as a ``bytearray`` that PFADD changes in place from now on
    (the one 12 KB copy), with what is known of its histogram."""
    buf = bytearray(value)
    histogram = _HISTOGRAMS.get(value)
    if histogram is not None:
        _LIVE.put(buf, _Live(buf, list(histogram)))  # type: ignore[arg-type]
    return buf


# -- updating ----------------------------------------------------------------------------------
def _dense_get(buf: bytes | bytearray, index: int) -> int:
    pos = _REG_BYTE[index]
    fb = _REG_SHIFT[index]
    if fb <= 2:  # the register lies within one byte
        return (buf[pos] >> fb) & REGISTER_MAX
    return ((buf[pos] >> fb) | (buf[pos + 1] << (8 - fb))) & REGISTER_MAX


def _dense_set(buf: bytearray, index: int, value: int) -> None:
    pos = _REG_BYTE[index]
    fb = _REG_SHIFT[index]
    buf[pos] = (buf[pos] & ~(REGISTER_MAX << fb) & 0xFF) | ((value << fb) & 0xFF)
    if fb > 2:
        fb8 = 8 - fb
        buf[pos + 1] = (buf[pos + 1] & ~(REGISTER_MAX >> fb8) & 0xFF) | (value >> fb8)


def _to_dense(buf: bytearray, tail: int) -> bool:
    """hllSparseToDense in place (the header, cache included, is kept); False when corrupt."""
    if buf[4] == DENSE:
        return True
    try:
        raw = _sparse_raw(buf, tail)
    except CorruptHLL:
        return False
    header = bytearray(buf[:HDR_SIZE])
    header[4] = DENSE
    buf[:] = header + _pack_dense(_lanes_of_raw(raw))
    return True


def _val(value: int, run: int) -> int:
    return 0x80 | ((value - 1) << 2) | (run - 1)


def _zeros(run: int) -> bytes:
    """A ZERO opcode, or an XZERO one past 64 registers."""
    if run > SPARSE_ZERO_MAX_LEN:
        run -= 1
        return bytes((0x40 | (run >> 8), run & 0xFF))
    return _ONE_BYTE[run - 1]


class _Sparse:
    """A sparse HLL being updated in place (hllSparseSet and its helpers).

    Redis finds the opcode holding a register by walking the opcodes from the first one.
    Here a well-formed HLL (complete opcodes covering exactly 16384 registers) keeps an
    index instead: ``firsts``, the first register of each opcode, and ``xzeros``, those of
    the 2-byte XZERO opcodes; opcode k then starts at byte ``16 + k + (XZEROs before it)``.
    Both depend on which registers the opcodes cover, not on where bytes sit, so an edit
    changes only the entries of the opcodes it splits or merges. The index outlives the
    command (see :func:`_take_index`); a malformed HLL is walked as Redis walks it.
    """

    __slots__ = ("buf", "tail", "firsts", "xzeros", "changed")

    def __init__(self, buf: bytearray, tail: int, index: _Index | None) -> None:
        self.buf = buf
        self.tail = tail  # see tail_byte()
        self.firsts, self.xzeros = index if index is not None else (None, None)
        self.changed = False

    def index(self) -> _Index | None:
        if self.firsts is None or self.buf[4] != SPARSE:
            return None
        return self.firsts, self.xzeros  # type: ignore[return-value]

    def _start(self, k: int) -> int:
        return HDR_SIZE + k + bisect_left(self.xzeros, self.firsts[k])  # type: ignore

    def set(self, index: int, count: int, max_bytes: int) -> int:
        """hllSparseSet: 1 when a register grew, 0 when not, -1 when corrupt. May turn
        ``buf`` dense (a value above 32, or the string would outgrow ``max_bytes``)."""
        if count > SPARSE_VAL_MAX_VALUE:
            return self._promote(index, count)
        buf = self.buf
        end = len(buf)
        firsts = self.firsts
        k = -1
        if firsts is not None:
            k = bisect_right(firsts, index) - 1
            first = firsts[k]
            p = self._start(k)
            prev = self._start(k - 1) if k else None
            b = buf[p]
            if b < 0x40:
                span = b + 1
            elif b & 0x80:
                span = (b & 3) + 1
            else:
                span = (((b & 0x3F) << 8) | buf[p + 1]) + 1
        else:  # Redis's walk
            p = HDR_SIZE
            first = 0
            prev = None
            span = 0
            b = 0
            while p < end:
                b = buf[p]
                if b < 0x40:
                    span = b + 1
                    oplen = 1
                elif b & 0x80:
                    span = (b & 3) + 1
                    oplen = 1
                else:
                    span = (((b & 0x3F) << 8) | (buf[p + 1] if p + 1 < end else self.tail)) + 1
                    oplen = 2
                if index <= first + span - 1:
                    break
                prev = p
                p += oplen
                first += span
            if span == 0 or p >= end:
                return -1
        is_xzero = 0x40 <= b < 0x80
        nxt: int | None = p + (2 if is_xzero else 1)
        if nxt >= end:  # type: ignore[operator]
            nxt = None
        if b & 0x80:  # VAL
            if ((b >> 2) & 0x1F) + 1 >= count:
                return 0
            if span == 1:
                buf[p] = _val(count, 1)
                return self._updated(prev, k - 1, end)
        elif not is_xzero and span == 1:  # ZERO of one register
            buf[p] = _val(count, 1)
            return self._updated(prev, k - 1, end)
        # The general case: split the opcode around the register.
        last = first + span - 1
        seq = bytearray()
        new_firsts = []
        new_xzeros = []
        if b & 0x80:
            current = ((b >> 2) & 0x1F) + 1
            if index != first:
                seq.append(_val(current, index - first))
                new_firsts.append(first)
            seq.append(_val(count, 1))
            new_firsts.append(index)
            if index != last:
                seq.append(_val(current, last - index))
                new_firsts.append(index + 1)
        else:
            if index != first:
                run = _zeros(index - first)
                seq += run
                new_firsts.append(first)
                if len(run) == 2:
                    new_xzeros.append(first)
            seq.append(_val(count, 1))
            new_firsts.append(index)
            if index != last:
                run = _zeros(last - index)
                seq += run
                new_firsts.append(index + 1)
                if len(run) == 2:
                    new_xzeros.append(index + 1)
        delta = len(seq) - (2 if is_xzero else 1)
        if delta > 0 and end + delta > max_bytes:
            return self._promote(index, count)
        self.tail = 0  # sdsIncrLen writes a new terminator
        if nxt is not None:
            buf[p:nxt] = seq
        else:
            buf[p:] = seq
            if is_xzero and p + 2 > end:  # an XZERO cut short: its last byte lands past the end
                self.tail = buf.pop()
        if firsts is not None:
            xzeros = self.xzeros
            firsts[k:k + 1] = array("H", new_firsts)
            if is_xzero:
                del xzeros[bisect_left(xzeros, first)]  # type: ignore[arg-type]
            for start in new_xzeros:
                xzeros.insert(bisect_left(xzeros, start), start)  # type: ignore[union-attr]
        return self._updated(prev, k - 1, end + delta)

    def _updated(self, prev: int | None, j: int, end: int) -> int:
        """Step 4 of hllSparseSet: merge neighbouring equal VALs over five opcodes from the
        one before the edit (opcode ``j`` at ``prev``); then the cache is stale."""
        buf = self.buf
        firsts = self.firsts
        if prev is None:
            p, j = HDR_SIZE, 0
        else:
            p = prev
        scan = 5
        while p < end and scan:
            scan -= 1
            b = buf[p]
            if b < 0x80:
                p += 2 if b & 0x40 else 1
                j += 1
                continue
            if p + 1 < end:
                b1 = buf[p + 1]
                if b1 & 0x80 and (b >> 2) & 0x1F == (b1 >> 2) & 0x1F:
                    run = (b & 3) + (b1 & 3) + 2
                    if run <= SPARSE_VAL_MAX_LEN:
                        buf[p + 1] = _val(((b >> 2) & 0x1F) + 1, run)
                        del buf[p]
                        end -= 1
                        self.tail = 0
                        if firsts is not None:
                            del firsts[j + 1]
                        continue
            p += 1
            j += 1
        buf[15] |= _STALE
        self.changed = True
        return 1

    def _promote(self, index: int, count: int) -> int:
        if not _to_dense(self.buf, self.tail):
            return -1
        self.tail = 0
        self.changed = True
        _dense_set(self.buf, index, count)  # it was lower: the register grows
        return 1


# firsts, xzeros: see _Sparse.
_Index = tuple[array, array]
# The indexes of the sparse HLLs updated lately: the next update of the same key finds its
# index ready.
_INDEXES = _Memo(64)


def _build_index(value: bytes | bytearray) -> _Index | None:
    """The index of a well-formed sparse HLL; None for a malformed one."""
    firsts = array("H")
    xzeros = array("H")
    end = len(value)
    p = HDR_SIZE
    i = 0
    while p < end:
        if i >= REGISTERS:
            return None
        firsts.append(i)
        b = value[p]
        if b < 0x40:
            i += b + 1
            p += 1
        elif b & 0x80:
            i += (b & 3) + 1
            p += 1
        else:
            if p + 1 >= end:
                return None
            xzeros.append(i)
            i += (((b & 0x3F) << 8) | value[p + 1]) + 1
            p += 2
    return (firsts, xzeros) if i == REGISTERS else None


def _take_index(value: bytes) -> _Index | None:
    """The index of ``value``, handed over to be edited in place."""
    index = _INDEXES.take(value)
    return _build_index(value) if index is None else index  # type: ignore[return-value]


def _keep_index(value: bytes, index: _Index | None) -> bytes:
    return _INDEXES.put(value, index)


def sparse_holds(value: bytes, index: int, count: int) -> bool:
    """True when register ``index`` of the sparse HLL ``value`` already holds ``count`` or
    more (PFADD of an element of that :func:`pattern` would change nothing); False when it
    would grow, or for a malformed HLL. Reads the kept index (building and keeping it when
    missing), changes nothing."""
    kept = _INDEXES.get(value)
    if kept is None:
        kept = _build_index(value)
        _keep_index(value, kept)
        if kept is None:
            return False
    firsts, xzeros = kept  # type: ignore[misc]
    k = bisect_right(firsts, index) - 1
    b = value[HDR_SIZE + k + bisect_left(xzeros, firsts[k])]
    return b > 0x7F and ((b >> 2) & 0x1F) >= count - 1  # a VAL opcode holding the run


def _carry(old: bytes, new: bytes) -> bytes:
    """``new`` has ``old``'s registers (only the header changed): it takes what is known of
    them (the byte past the end, the index, the histogram)."""
    _with_tail(new, tail_byte(old))
    _INDEXES.put(new, _INDEXES.take(old))
    return _HISTOGRAMS.put(new, _HISTOGRAMS.take(old))


def add(value: bytes, found: Patterns, sparse_max_bytes: int) -> tuple[bytes, int, bool]:
    """hllAdd of each element in turn, given by its pattern (``found``, from
    :func:`patterns`): ``(new value, elements that grew a register, ok)``.

    ``ok`` is False when a corrupt sparse HLL was found; the value then holds the updates
    made before (Redis changes the string in place and stops there). An HLL that no element
    changes is returned as is. The cache is not touched for a dense HLL (PFADD marks it
    stale when anything changed; a sparse update marks it itself).
    """
    buf: bytearray | None = None
    sparse: _Sparse | None = None
    updated = 0
    dense = value[4] == DENSE
    for index, count in zip(*found, strict=True):
        if dense:
            current = buf if buf is not None else value
            pos = _REG_BYTE[index]
            fb = _REG_SHIFT[index]
            if fb <= 2:
                old = (current[pos] >> fb) & REGISTER_MAX
            else:
                old = ((current[pos] >> fb) | (current[pos + 1] << (8 - fb))) & REGISTER_MAX
            if count > old:
                if buf is None:
                    buf = bytearray(value)
                _dense_set(buf, index, count)
                updated += 1
            continue
        if sparse is None:
            buf = bytearray(value)
            sparse = _Sparse(buf, tail_byte(value), _take_index(value))
        result = sparse.set(index, count, sparse_max_bytes)
        if result < 0:
            break
        updated += result
        dense = buf[4] == DENSE  # type: ignore[index]
    else:
        result = 0
    if sparse is not None:
        if not sparse.changed:
            _keep_index(value, sparse.index())
            return value, updated, result >= 0
        new = _with_tail(bytes(buf), sparse.tail)  # type: ignore[arg-type]
        return _keep_index(new, sparse.index()), updated, result >= 0
    return (value if buf is None else bytes(buf)), updated, True


def stored_after_add(value: bytes, new: bytes) -> bytes | bytearray:
    """What PFADD stores once :func:`add` changed ``value`` into ``new``: the cache marked
    stale; a value just promoted to dense as a ``bytearray``, which PFADD changes in place
    from then on (the same bytes, no 12 KB copy per update, see :func:`dense_in_place`);
    another ``raw``, as Redis keeps the strings it edits."""
    new = invalidate(new)
    if new[4] == DENSE and value[4] != DENSE:
        return bytearray(new)
    return mark_string(new, b"raw")


def dense_update(value: bytes | bytearray, indexes: Sequence[int], runs: Sequence[int],
                 _byte: list[int] = _REG_BYTE, _shift: list[int] = _REG_SHIFT,
                 _keep: list[int] = _KEEP) -> tuple[bytes | bytearray, bytes]:
    """PFADD of each element, of patterns ``indexes`` and ``runs``, in turn to the dense HLL
    ``value``: ``(what to store, one byte per element, 1 where its register grew)``.

    It costs what it changes: a ``bytearray`` (see :func:`dense_in_place`) is changed where
    it is and returned itself, its cache marked stale if anything grew; a ``bytes`` value
    that an element changes becomes such a ``bytearray`` first (the one 12 KB copy), one
    that none changes is returned as is.

    A ``bytearray`` given :data:`_BATCH_LIVE` elements or more, or one with a
    :class:`_Live` kept, is read through its one-byte registers: the registers of all the
    elements in one C call, compared with their runs in another, and only the elements whose
    run is higher than their register was before the batch are looked at one by one (in
    order: an earlier one may have raised the register since). Elements one at a time go
    register by register through the 6-bit fields, which costs less than making a
    :class:`_Live` for them."""
    n = len(indexes)
    live = None
    if type(value) is bytearray:
        live = _live(value) if _LIVE.entries else None
        if live is None and n >= _BATCH_LIVE:
            live = _Live(value)  # type: ignore[arg-type]
            _LIVE.put(value, live)  # type: ignore[arg-type]
    if live is not None:
        raw = live.raw
        if n > 1:
            # Lane i of (registers | 0x80) - runs keeps bit 7 where element i's register
            # held its run already (both are below 64: no lane borrows from the next).
            high = _HIGHS[n] if n <= _BATCH_MAX else int.from_bytes(b"\x80" * n, "little")
            held = ((int.from_bytes(bytes(itemgetter(*indexes)(raw)), "little") | high)
                    - int.from_bytes(runs, "little")) & high  # type: ignore[arg-type]
            if held == high:
                return value, bytes(n)  # nothing grows: the usual case in a full HLL
            maybe = (held ^ high).to_bytes(n, "little")  # 0x80 where the run is higher
        elif n and runs[0] > raw[indexes[0]]:
            maybe = b"\x80"
        else:
            return value, bytes(n)
        grew = bytearray(n)
        histogram = live.histogram
        shadow = live.shadow
        # Each candidate in order (an earlier one may have raised its register since), its
        # 6 bits written where they are: one byte, or two (register i % 4 == 1 or 2).
        for i in compress(_ORDER, maybe):
            index = indexes[i]
            count = runs[i]
            old = raw[index]
            if count > old:
                raw[index] = count
                if histogram is not None:
                    histogram[old] -= 1
                    histogram[count] += 1
                pos = _byte[index]
                fb = _shift[index]
                if fb <= 2:
                    value[pos] = shadow[pos] = (  # type: ignore[index]
                        value[pos] & _keep[fb] | count << fb)
                else:
                    word = (value[pos] | value[pos + 1] << 8) & _keep[fb] | count << fb
                    value[pos] = shadow[pos] = word & 0xFF  # type: ignore[index]
                    value[pos + 1] = shadow[pos + 1] = word >> 8  # type: ignore[index]
                grew[i] = 1
        if 1 in grew:
            value[15] |= _STALE  # type: ignore[index]
        return value, bytes(grew)
    grew = bytearray(n)
    i = -1
    for index, count in zip(indexes, runs, strict=True):
        i += 1
        pos = _byte[index]
        fb = _shift[index]
        if fb <= 2:  # the register lies within one byte
            if count <= (value[pos] >> fb) & REGISTER_MAX:
                continue
        elif count <= ((value[pos] >> fb) | (value[pos + 1] << (8 - fb))) & REGISTER_MAX:
            continue
        if type(value) is not bytearray:
            value = _mutable(value)  # type: ignore[arg-type]
            if _LIVE.entries and _LIVE.get(value) is not None:  # type: ignore[arg-type]
                # made with the histogram that was known: kept current by the path above
                grew[i:] = dense_update(value, indexes[i:], runs[i:])[1]
                break
        _dense_set(value, index, count)  # type: ignore[arg-type]
        grew[i] = 1
    if type(value) is bytearray and 1 in grew:
        value[15] |= _STALE
    return value, bytes(grew)


def dense_add(value: bytes | bytearray, index: int, count: int) -> bytes | bytearray | None:
    """PFADD of one element, of :func:`pattern` ``(index, count)``, to a dense HLL: the value
    to store (a ``bytearray`` changed in place, see :func:`dense_update`), or None when no
    register grew."""
    stored, grew = dense_update(value, (index,), (count,))
    return stored if grew[0] else None


def set_cardinality(value: bytes | bytearray, card: int) -> bytes | bytearray:
    """PFCOUNT's write-back of ``card`` into ``value``'s header; what to store. A dense HLL is
    changed in place, as PFADD changes it (a ``bytes`` one becomes a ``bytearray`` first:
    see :func:`dense_update`): its registers, and so their memo, stay as they were."""
    if value[4] != DENSE:
        return with_cardinality(value, card)  # type: ignore[arg-type]
    if type(value) is not bytearray:
        value = _mutable(value)  # type: ignore[arg-type]
    value[8:16] = card.to_bytes(8, "little")
    return value


def add_each(value: bytes | bytearray, elements: Sequence[bytes], sparse_max_bytes: int
             ) -> tuple[bytes | bytearray, bytes]:
    """PFADD of each of ``elements`` in turn, one PFADD each (a pipeline's one-element
    PFADDs to one key), to ``value``: a dense HLL, or a ``raw`` sparse one. Returns the
    value PFADD leaves stored after the last (``value`` itself when none changed it, and a
    dense ``bytearray`` changed in place) and one byte per PFADD run, 1 where it changed
    the HLL. It stops before an element that finds the sparse HLL corrupt, whose PFADD the
    general path answers (fewer bytes than elements).

    Each update is the general path's own: :func:`dense_update`, or the sparse update
    :func:`add` makes (with the promotion to dense, the cache marked stale as
    :func:`stored_after_add` marks it), the patterns of all the elements hashed together
    (:func:`patterns`)."""
    indexes, runs = patterns(elements)
    if value[4] == DENSE:
        return dense_update(value, indexes, runs)
    # One working copy for the run, as add() keeps one for a PFADD's elements: each PFADD
    # leaves the bytes the one before left, without a copy, a new index or marks per PFADD.
    buf = bytearray(value)
    sparse = _Sparse(buf, tail_byte(value), _take_index(value))  # type: ignore[arg-type]
    changed = bytearray()
    for index, count in zip(indexes, runs, strict=True):
        result = sparse.set(index, count, sparse_max_bytes)
        if result < 0:
            break  # corrupt: what the PFADDs before it changed is stored
        changed.append(result)
        if buf[4] == DENSE:  # promoted by this PFADD: the rest go to the dense HLL
            buf[15] |= _STALE
            done = len(changed)
            stored, more = dense_update(buf, indexes[done:], runs[done:])
            return stored, bytes(changed) + more
    if not sparse.changed:
        _keep_index(value, sparse.index())  # type: ignore[arg-type]
        return value, bytes(changed)
    new = _keep_index(_with_tail(bytes(buf), sparse.tail), sparse.index())
    return mark_string(new, b"raw"), bytes(changed)


def dense_in_place(value: object) -> bool:
    """``value`` is a dense HLL that PFADD changes in place: a ``bytearray`` of the dense
    size and magic (PFADD's sparse-to-dense promotion stores one; SETRANGE or SETBIT on a
    dense HLL leave one too; PFADD or PFCOUNT make one of a dense ``bytes`` HLL they
    change). Its bytes are what a ``bytes`` HLL's would be; only the copy per change is
    saved. Of the memos by identity above only ``_LIVE`` is used for it, checked
    against its shadow."""
    return (type(value) is bytearray and len(value) == DENSE_SIZE  # type: ignore[arg-type]
            and value.startswith(DENSE_MAGIC))  # type: ignore[attr-defined]


def invalidate(value: bytes) -> bytes:
    """``value`` with its cached cardinality marked stale (HLL_INVALIDATE_CACHE)."""
    if value[15] & _STALE:
        return value
    return _carry(value, value[:15] + _ONE_BYTE[value[15] | _STALE] + value[16:])


def to_dense(value: bytes) -> bytes:
    """hllSparseToDense; CorruptHLL for a bad sparse one."""
    buf = bytearray(value)
    if not _to_dense(buf, tail_byte(value)):
        raise CorruptHLL()
    return bytes(buf)


def merge_into(value: bytes, merged: Registers, to_dense_first: bool, sparse_max_bytes: int
               ) -> bytes:
    """PFMERGE's write: ``value`` (the destination) turned dense when asked (CorruptHLL if it
    cannot be), then each register raised to ``merged``'s, in register order (a sparse
    destination may turn dense half-way), and the cache marked stale."""
    buf = bytearray(value)
    tail = tail_byte(value)
    if to_dense_first:
        if not _to_dense(buf, tail):
            raise CorruptHLL()
        tail = 0
    if buf[4] == DENSE:
        # The destination was one of the sources: its registers are already in ``merged``.
        mine = _unpack_dense(buf)
        lanes = tuple(_lane_max(a, b) for a, b in zip(mine, merged.lanes, strict=True))
        buf[HDR_SIZE:] = _pack_dense(lanes)  # type: ignore[arg-type]
    else:
        sparse = _Sparse(buf, tail, _take_index(value))
        raw = merged.raw()
        for index, count in enumerate(raw):
            if not count:
                continue
            if buf[4] == DENSE:
                if count > _dense_get(buf, index):
                    _dense_set(buf, index, count)
            else:
                sparse.set(index, count, sparse_max_bytes)  # Redis ignores the result
        tail = sparse.tail if buf[4] == SPARSE else 0
        buf[15] |= _STALE
        return _keep_index(_with_tail(bytes(buf), tail), sparse.index())
    buf[15] |= _STALE
    return bytes(buf)


def decode_sparse(value: bytes) -> bytes:
    """PFDEBUG DECODE: the opcodes as ``z:len Z:len v:value,len``."""
    out = []
    tail = tail_byte(value)
    end = len(value)
    p = HDR_SIZE
    while p < end:
        b = value[p]
        if b < 0x40:
            out.append(b"z:%d" % (b + 1))
            p += 1
        elif b < 0x80:
            second = value[p + 1] if p + 1 < end else tail
            out.append(b"Z:%d" % ((((b & 0x3F) << 8) | second) + 1))
            p += 2
        else:
            out.append(b"v:%d,%d" % (((b >> 2) & 0x1F) + 1, (b & 3) + 1))
            p += 1
    return b" ".join(out)


# -- PFSELFTEST ------------------------------------------------------------------------------
def self_test(sparse_max_bytes: int, cycles: int = 3, elements: int = 100_000,
              rng: random.Random | None = None) -> str | None:
    """pfselftestCommand's two tests, smaller (Python is slower than C: ``cycles`` register
    rounds instead of 1000, ``elements`` added instead of ten million): the error message
    of the first failure, or None.

    1. Random values written to every dense register read back the same, one by one and
       through the unpacking the estimator uses, without disturbing their neighbours.
    2. Distinct elements added to a dense and a sparse HLL side by side: the sparse one
       stays sparse while small, both give the same count at each power of ten, and the
       error stays within six standard errors.
    """
    rng = rng or random.Random()
    buf = bytearray(DENSE_SIZE)
    buf[:4] = b"HYLL"
    for _ in range(cycles):
        expected = bytes(rng.getrandbits(BITS) for _ in range(REGISTERS))
        for i, v in enumerate(expected):
            _dense_set(buf, i, v)
        for i, v in enumerate(expected):
            got = _dense_get(buf, i)
            if got != v:
                return f"TESTFAILED Register {i} should be {v} but is {got}"
        if registers(bytes(buf)) != expected:
            return "TESTFAILED Register unpacking disagrees with register reads"
    dense = bytearray(DENSE_SIZE)
    dense[:4] = b"HYLL"
    sparse_value = EMPTY
    relerr = 1.04 / math.sqrt(REGISTERS)
    checkpoint = 1
    seed = rng.getrandbits(64)
    for j in range(1, elements + 1):
        element = (j ^ seed).to_bytes(8, "little")
        index, run = pattern(element)
        if run > _dense_get(dense, index):
            _dense_set(dense, index, run)
        sparse_value, _, ok = add(sparse_value, ((index,), (run,)), sparse_max_bytes)
        if not ok:
            return "TESTFAILED sparse representation found corrupt"
        if j != checkpoint:
            continue
        if j < sparse_max_bytes / 2 and sparse_value[4] != SPARSE:
            return "TESTFAILED sparse encoding not used"
        card = count(bytes(dense))
        if card != count(sparse_value):
            return "TESTFAILED dense/sparse disagree"
        max_error = 1 if j == 10 else math.ceil(relerr * 6 * checkpoint)
        if abs(checkpoint - card) > max_error:
            return f"TESTFAILED Too big error. card:{checkpoint} abserr:{abs(checkpoint - card)}"
        checkpoint *= 10
    return None
