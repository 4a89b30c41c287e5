"""Redis 7.0's geohash math (``geohash.c``, ``geohash_helper.c``), operation for operation.

Pure functions over floats and ints; the geo commands (:mod:`kvrepl.commands.geo`) build on
them. Every expression keeps Redis's order of operations and constants, because replies are
compared byte for byte: a distance printed with 4 decimals, a coordinate with 17, and which
points a search finds all follow from the exact doubles.

A point is stored as a 52-bit interleaved geohash (26 steps of longitude and latitude), the
sorted-set score. Latitude bits are the even ones, longitude bits the odd ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

STEP_MAX = 26  # 26 * 2 = 52 bits
LAT_MIN, LAT_MAX = -85.05112878, 85.05112878
LONG_MIN, LONG_MAX = -180.0, 180.0
# (min, max) ranges: Redis's own latitude range, and the standard one GEOHASH prints with.
LONG_RANGE = (LONG_MIN, LONG_MAX)
LAT_RANGE = (LAT_MIN, LAT_MAX)
STANDARD_LAT_RANGE = (-90.0, 90.0)

EARTH_RADIUS_IN_METERS = 6372797.560856
MERCATOR_MAX = 20037726.37
_D_R = math.pi / 180.0  # the D_R macro, folded to one double as the C compiler does

_MASK64 = (1 << 64) - 1
_EVEN = 0x5555555555555555
_ODD = 0xAAAAAAAAAAAAAAAA

# A box: (bits, step). (0, 0) is Redis's zeroed box (GZERO), skipped by searches.
Box = tuple[int, int]
ZERO_BOX: Box = (0, 0)

CIRCULAR, RECTANGLE = 1, 2


def _spread_table() -> list[int]:
    """Byte -> its 8 bits moved to the even positions of 16 (the interleave, by byte)."""
    table = []
    for byte in range(256):
        spread = 0
        for bit in range(8):
            if byte >> bit & 1:
                spread |= 1 << (2 * bit)
        table.append(spread)
    return table


_SPREAD = _spread_table()
_SQUEEZE = {spread: byte for byte, spread in enumerate(_SPREAD)}
# The same for 16 bits at once: GEOADD's hot path spreads a 26-bit cell index in two lookups.
_SPREAD16 = [_SPREAD[value & 0xFF] | _SPREAD[value >> 8] << 16 for value in range(1 << 16)]


def _spread32(value: int) -> int:
    table = _SPREAD
    return (table[value & 0xFF] | table[value >> 8 & 0xFF] << 16
            | table[value >> 16 & 0xFF] << 32 | table[value >> 24 & 0xFF] << 48)


def _squeeze32(value: int) -> int:
    """The even bits of a 64-bit value, packed into 32."""
    table = _SQUEEZE
    value &= _EVEN
    return (table[value & 0x5555] | table[value >> 16 & 0x5555] << 8
            | table[value >> 32 & 0x5555] << 16 | table[value >> 48 & 0x5555] << 24)


def interleave64(xlo: int, ylo: int) -> int:
    """``interleave64``: bits of ``xlo`` at even positions, of ``ylo`` at odd (32 bits each)."""
    return _spread32(xlo & 0xFFFFFFFF) | _spread32(ylo & 0xFFFFFFFF) << 1


def deinterleave64(interleaved: int) -> int:
    """``deinterleave64``: the even bits in the low 32, the odd bits in the high 32."""
    return _squeeze32(interleaved) | _squeeze32(interleaved >> 1) << 32


def encode(longitude: float, latitude: float, step: int = STEP_MAX,
           long_range: tuple[float, float] = LONG_RANGE,
           lat_range: tuple[float, float] = LAT_RANGE) -> int | None:
    """``geohashEncode``: the ``2 * step`` bits of the cell holding the point, or None where
    Redis refuses (outside its limits or outside the given ranges)."""
    if (longitude > LONG_MAX or longitude < LONG_MIN
            or latitude > LAT_MAX or latitude < LAT_MIN):
        return None
    if (latitude < lat_range[0] or latitude > lat_range[1]
            or longitude < long_range[0] or longitude > long_range[1]):
        return None
    lat_offset = (latitude - lat_range[0]) / (lat_range[1] - lat_range[0])
    long_offset = (longitude - long_range[0]) / (long_range[1] - long_range[0])
    scale = float(1 << step)
    # C converts the doubles to uint32_t: truncation.
    return interleave64(int(lat_offset * scale), int(long_offset * scale))


def align52(bits: int, step: int) -> int:
    """``geohashAlign52Bits``: the cell's bits as a 52-bit score prefix."""
    return (bits << (52 - step * 2)) & _MASK64


_LAT_SCALE = LAT_MAX - LAT_MIN
_LONG_SCALE = LONG_MAX - LONG_MIN
_CELLS = float(1 << STEP_MAX)


def score_of(longitude: float, latitude: float) -> int:
    """The sorted-set score GEOADD stores for a point within the limits: ``encode`` at
    26 steps (then already 52-bit aligned), the same operations, unrolled for speed."""
    lat_cell = int((latitude - LAT_MIN) / _LAT_SCALE * _CELLS)
    long_cell = int((longitude - LONG_MIN) / _LONG_SCALE * _CELLS)
    table = _SPREAD16
    return (table[lat_cell & 0xFFFF] | table[lat_cell >> 16] << 32
            | (table[long_cell & 0xFFFF] | table[long_cell >> 16] << 32) << 1)


def decode_area(bits: int, step: int, long_range: tuple[float, float] = LONG_RANGE,
                lat_range: tuple[float, float] = LAT_RANGE
                ) -> tuple[float, float, float, float]:
    """``geohashDecode``: the cell as ``(long_min, long_max, lat_min, lat_max)``."""
    separated = deinterleave64(bits)
    lat_scale = lat_range[1] - lat_range[0]
    long_scale = long_range[1] - long_range[0]
    ilato = separated & 0xFFFFFFFF
    ilono = separated >> 32
    divisor = float(1 << step)
    # uint32_t arithmetic: the cell after 0xFFFFFFFF is 0 (only scores GEOADD never writes).
    lat_next = (ilato + 1) & 0xFFFFFFFF
    long_next = (ilono + 1) & 0xFFFFFFFF
    return (long_range[0] + (ilono * 1.0 / divisor) * long_scale,
            long_range[0] + (long_next * 1.0 / divisor) * long_scale,
            lat_range[0] + (ilato * 1.0 / divisor) * lat_scale,
            lat_range[0] + (lat_next * 1.0 / divisor) * lat_scale)


def score_bits(score: float) -> int:
    """``(uint64_t)score`` as x86-64 code computes it (cvttsd2si, with 2^63 split off):
    what Redis decodes a score that GEOADD did not write as."""
    if math.isnan(score) or score <= -9223372036854775808.0:
        return 1 << 63  # cvttsd2si's "integer indefinite" (or -2^63 itself)
    if score < 9223372036854775808.0:
        return int(score) & _MASK64
    rest = score - 9223372036854775808.0
    if rest >= 9223372036854775808.0:
        return 0  # the indefinite value with bit 63 flipped back
    return int(rest) ^ (1 << 63)


def decode_score(score: float) -> tuple[float, float]:
    """``decodeGeohash``: a score's cell centre ``(longitude, latitude)``, clamped."""
    long_min, long_max, lat_min, lat_max = decode_area(score_bits(score), STEP_MAX)
    longitude = (long_min + long_max) / 2
    longitude = min(max(longitude, LONG_MIN), LONG_MAX)
    latitude = (lat_min + lat_max) / 2
    latitude = min(max(latitude, LAT_MIN), LAT_MAX)
    return longitude, latitude


_GEOALPHABET = b"0123456789bcdefghjkmnpqrstuvwxyz"


def standard_geohash(score: float) -> bytes:
    """GEOHASH's 11 characters: the decoded point re-encoded on the -90..90 latitude range."""
    longitude, latitude = decode_score(score)
    bits = encode(longitude, latitude, STEP_MAX, LONG_RANGE, STANDARD_LAT_RANGE) or 0
    chars = bytearray(11)
    for i in range(10):
        chars[i] = _GEOALPHABET[(bits >> (52 - (i + 1) * 5)) & 0x1F]
    chars[10] = _GEOALPHABET[0]  # 52 bits give 10 characters; Redis pads one
    return bytes(chars)


# -- neighbours --------------------------------------------------------------------------------


def _move_x(bits: int, step: int, d: int) -> int:
    if d == 0:
        return bits
    x = bits & _ODD
    y = bits & _EVEN
    zz = _EVEN >> (64 - step * 2)
    if d > 0:
        x = (x + (zz + 1)) & _MASK64
    else:
        x = ((x | zz) - (zz + 1)) & _MASK64
    x &= _ODD >> (64 - step * 2)
    return x | y


def _move_y(bits: int, step: int, d: int) -> int:
    if d == 0:
        return bits
    x = bits & _ODD
    y = bits & _EVEN
    zz = _ODD >> (64 - step * 2)
    if d > 0:
        y = (y + (zz + 1)) & _MASK64
    else:
        y = ((y | zz) - (zz + 1)) & _MASK64
    y &= _EVEN >> (64 - step * 2)
    return x | y


# The order membersOfAllNeighbors visits the boxes in, as (dx, dy); the centre first.
_DIRECTIONS = ((0, 0), (0, 1), (0, -1), (1, 0), (-1, 0), (1, 1), (-1, 1), (1, -1), (-1, -1))
_NORTH, _SOUTH, _EAST, _WEST = 1, 2, 3, 4


def _neighbours(bits: int, step: int) -> list[Box]:
    """The centre and its 8 neighbours in search order (``geohashNeighbors``)."""
    return [(_move_y(_move_x(bits, step, dx), step, dy), step) for dx, dy in _DIRECTIONS]


# -- distances ---------------------------------------------------------------------------------


# C's libm answers NaN where Python's math raises: a box of infinite width is a valid search.
def _cos(x: float) -> float:
    return math.cos(x) if math.isfinite(x) else math.nan


def _asin(x: float) -> float:
    return math.asin(x) if -1.0 <= x <= 1.0 else math.nan


def _deg_rad(angle: float) -> float:
    return angle * _D_R


def _rad_deg(angle: float) -> float:
    return angle / _D_R


def lat_distance(lat1: float, lat2: float) -> float:
    """``geohashGetLatDistance``."""
    return EARTH_RADIUS_IN_METERS * abs(_deg_rad(lat2) - _deg_rad(lat1))


def distance(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """``geohashGetDistance``: Redis's haversine, in meters."""
    lon1r = _deg_rad(lon1)
    lon2r = _deg_rad(lon2)
    v = math.sin((lon2r - lon1r) / 2)
    if v == 0.0:
        return lat_distance(lat1, lat2)
    lat1r = _deg_rad(lat1)
    lat2r = _deg_rad(lat2)
    u = math.sin((lat2r - lat1r) / 2)
    a = u * u + math.cos(lat1r) * math.cos(lat2r) * v * v
    # a can round to just above 1 for antipodes: asin then gives NaN in C.
    return 2.0 * EARTH_RADIUS_IN_METERS * _asin(math.sqrt(a))


# -- search shapes -----------------------------------------------------------------------------


@dataclass
class Shape:
    """``GeoShape``: a centre, a radius or a box (in ``unit``s), and meters per unit."""

    longitude: float = 0.0
    latitude: float = 0.0
    kind: int = 0  # CIRCULAR or RECTANGLE
    conversion: float = 0.0
    radius: float = 0.0
    width: float = 0.0
    height: float = 0.0
    bounds: tuple[float, float, float, float] = field(default=(0.0, 0.0, 0.0, 0.0))

    def within(self, score: float) -> tuple[float, float, float] | None:
        """``geoWithinShape``: ``(longitude, latitude, distance in meters)`` of the point a
        score decodes to when it lies in the shape, else None."""
        lon, lat = decode_score(score)
        if self.kind == CIRCULAR:
            dist = distance(self.longitude, self.latitude, lon, lat)
            if dist > self.radius * self.conversion:
                return None
            return lon, lat, dist
        width_m = self.width * self.conversion
        height_m = self.height * self.conversion
        if lat_distance(lat, self.latitude) > height_m / 2:
            return None
        if distance(lon, lat, self.longitude, lat) > width_m / 2:
            return None
        return lon, lat, distance(self.longitude, self.latitude, lon, lat)


def estimate_steps(range_meters: float, lat: float) -> int:
    """``geohashEstimateStepsByRadius``: the cell size for a 9-box search."""
    if range_meters == 0:
        return 26
    step = 1
    while range_meters < MERCATOR_MAX:
        range_meters *= 2
        step += 1
    step -= 2
    if lat > 66 or lat < -66:
        step -= 1
        if lat > 80 or lat < -80:
            step -= 1
    return min(max(step, 1), 26)


def bounding_box(shape: Shape) -> tuple[float, float, float, float]:
    """``geohashBoundingBox``: ``(min_lon, min_lat, max_lon, max_lat)``."""
    longitude, latitude = shape.longitude, shape.latitude
    circular = shape.kind == CIRCULAR
    height = shape.conversion * (shape.radius if circular else shape.height / 2)
    width = shape.conversion * (shape.radius if circular else shape.width / 2)
    lat_delta = _rad_deg(height / EARTH_RADIUS_IN_METERS)
    long_delta_top = _rad_deg(
        width / EARTH_RADIUS_IN_METERS / _cos(_deg_rad(latitude + lat_delta)))
    long_delta_bottom = _rad_deg(
        width / EARTH_RADIUS_IN_METERS / _cos(_deg_rad(latitude - lat_delta)))
    long_delta = long_delta_bottom if latitude < 0 else long_delta_top
    return (longitude - long_delta, latitude - lat_delta,
            longitude + long_delta, latitude + lat_delta)


def search_boxes(shape: Shape) -> list[Box]:
    """``geohashCalculateAreasByShapeWGS84``: the centre box and its 8 neighbours, in the
    order a search visits them, useless ones zeroed. Also sets ``shape.bounds``."""
    bounds = shape.bounds = bounding_box(shape)
    min_lon, min_lat, max_lon, max_lat = bounds
    longitude, latitude = shape.longitude, shape.latitude
    if shape.kind == CIRCULAR:
        radius_meters = shape.radius
    else:
        half_width, half_height = shape.width / 2, shape.height / 2
        radius_meters = math.sqrt(half_width * half_width + half_height * half_height)
    radius_meters *= shape.conversion

    steps = estimate_steps(radius_meters, latitude)
    bits = encode(longitude, latitude, steps) or 0
    boxes = _neighbours(bits, steps)
    north = decode_area(*boxes[_NORTH])
    south = decode_area(*boxes[_SOUTH])
    east = decode_area(*boxes[_EAST])
    west = decode_area(*boxes[_WEST])
    # Near the cell's edges the estimated step may leave part of the area uncovered.
    if (north[3] < max_lat or south[2] > min_lat or east[1] < max_lon
            or west[0] > min_lon) and steps > 1:
        steps -= 1
        bits = encode(longitude, latitude, steps) or 0
        boxes = _neighbours(bits, steps)
    area = decode_area(bits, steps)

    if steps >= 2:
        # boxes: centre, N, S, E, W, NE, NW, SE, SW
        if area[2] < min_lat:
            boxes[2] = boxes[7] = boxes[8] = ZERO_BOX
        if area[3] > max_lat:
            boxes[1] = boxes[5] = boxes[6] = ZERO_BOX
        if area[0] < min_lon:
            boxes[4] = boxes[8] = boxes[6] = ZERO_BOX
        if area[1] > max_lon:
            boxes[3] = boxes[7] = boxes[5] = ZERO_BOX
    return boxes


def box_scores(box: Box) -> tuple[int, int]:
    """``scoresOfGeoHashBox``: the scores ``[min, max)`` of the points inside a box."""
    bits, step = box
    return align52(bits, step), align52(bits + 1, step)


# -- pqsort ------------------------------------------------------------------------------------


def pqsort(items: list, key: list[float], lrange: int, rrange: int, descending: bool) -> None:
    """Redis's ``pqsort`` (Bentley-McIlroy quicksort that only sorts the partitions touching
    ranks ``lrange..rrange``), in place on ``items``, with ``key[i]`` the distance of
    ``items[i]``. Not stable: which of equal distances come first is its own, reproduced
    step by step. ``key`` is permuted along with ``items``."""

    def cmp(i: int, j: int) -> int:
        a, b = key[i], key[j]
        result = 1 if a > b else (0 if a == b else -1)
        return -result if descending else result

    def swap(i: int, j: int) -> None:
        items[i], items[j] = items[j], items[i]
        key[i], key[j] = key[j], key[i]

    def vecswap(i: int, j: int, n: int) -> None:
        for offset in range(n):
            swap(i + offset, j + offset)

    def med3(a: int, b: int, c: int) -> int:
        if cmp(a, b) < 0:
            return b if cmp(b, c) < 0 else (c if cmp(a, c) < 0 else a)
        return b if cmp(b, c) > 0 else (a if cmp(a, c) < 0 else c)

    def outside(start: int, count: int) -> bool:
        last = start + count - 1
        return (lrange < start and rrange < start) or (lrange > last and rrange > last)

    def sort(a: int, n: int) -> None:
        while True:
            if n < 7:
                for pm in range(a + 1, a + n):
                    pl = pm
                    while pl > a and cmp(pl - 1, pl) > 0:
                        swap(pl, pl - 1)
                        pl -= 1
                return
            pm = a + n // 2
            if n > 7:
                pl = a
                pn = a + n - 1
                if n > 40:
                    d = n // 8
                    pl = med3(pl, pl + d, pl + 2 * d)
                    pm = med3(pm - d, pm, pm + d)
                    pn = med3(pn - 2 * d, pn - d, pn)
                pm = med3(pl, pm, pn)
            swap(a, pm)
            pa = pb = a + 1
            pc = pd = a + n - 1
            while True:
                while pb <= pc:
                    result = cmp(pb, a)
                    if result > 0:
                        break
                    if result == 0:
                        swap(pa, pb)
                        pa += 1
                    pb += 1
                while pb <= pc:
                    result = cmp(pc, a)
                    if result < 0:
                        break
                    if result == 0:
                        swap(pc, pd)
                        pd -= 1
                    pc -= 1
                if pb > pc:
                    break
                swap(pb, pc)
                pb += 1
                pc -= 1
            pn = a + n
            r = min(pa - a, pb - pa)
            vecswap(a, pb - r, r)
            r = min(pd - pc, pn - pd - 1)
            vecswap(pb, pn - r, r)
            r = pb - pa
            if r > 1 and not outside(a, r):
                sort(a, r)
            r = pd - pc
            if r <= 1:
                return
            a, n = pn - r, r
            if outside(a, n):
                return

    sort(0, len(items))
