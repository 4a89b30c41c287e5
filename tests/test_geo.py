"""Geo commands: the exact reply bytes of a real redis-server 7.0 (RESP2 and RESP3) for
GEOADD, GEOHASH, GEOPOS, GEODIST and every search form, random points and searches
(hypothesis), the stored sets of the STORE forms, propagation, and a kvrepl replica of a
redis-server master applying geo writes."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest
import redis
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import RedisServer

import kvrepl
from kvrepl.store import geohash
from kvrepl.store.digest import digest as dataset_digest

Wire = Callable[..., bytes]

SICILY = ("13.361389", "38.115556", "Palermo", "15.087269", "37.502669", "Catania")


def both(wire: Wire, *args: object) -> None:
    """The same reply bytes in RESP2 and in RESP3."""
    wire(*args)
    wire(*args, protocol=3)


def _fill_random(wire: Wire, key: str, seed: int, count: int, center: tuple[float, float],
                 spread: float) -> None:
    rng = random.Random(seed)
    args: list[object] = ["GEOADD", key]
    for i in range(count):
        lon = min(180.0, max(-180.0, center[0] + rng.uniform(-spread, spread)))
        lat = min(geohash.LAT_MAX, max(geohash.LAT_MIN, center[1] + rng.uniform(-spread, spread)))
        args += [repr(lon), repr(lat), f"m{i}"]
    wire(*args)


# -- GEOADD ------------------------------------------------------------------------------------


def test_geoadd_scores_options_and_errors(wire: Wire) -> None:
    wire("GEOADD", "Sicily", *SICILY)
    wire("ZRANGE", "Sicily", "0", "-1", "WITHSCORES")
    wire("GEOADD", "Sicily", "NX", "13", "38", "Palermo", "1", "2", "new")
    wire("GEOADD", "Sicily", "XX", "CH", "13", "38", "Palermo", "1", "2", "nope")
    wire("GEOADD", "Sicily", "ch", "xx", "13.5", "38", "Palermo")
    wire("GEOADD", "Sicily", "CH", "13.5", "38", "Palermo", "3", "4", "other")
    wire("ZRANGE", "Sicily", "0", "-1", "WITHSCORES")
    # the limits themselves, and just beyond them
    wire("GEOADD", "edges", "180", "85.05112878", "ne", "-180", "-85.05112878", "sw",
         "0", "0", "origin", "-0", "-0", "negzero", "179.9999999", "0.0000001", "tiny")
    wire("ZRANGE", "edges", "0", "-1", "WITHSCORES")
    for lon, lat in (("180.0000001", "0"), ("-181", "0"), ("0", "85.05112879"), ("0", "-86"),
                     ("inf", "0"), ("0", "-inf"), ("1e300", "1e-300"), ("-200.123456789", "91"),
                     ("0x10p4", "0")):
        wire("GEOADD", "bad", lon, lat, "m")
    for args in (("abc", "0", "m"), ("0", "", "m"), ("nan", "0", "m"), ("0", "1 ", "m"),
                 ("1", "2", "a", "3"), ("1", "2")):
        wire("GEOADD", "bad", *args)
    wire("GEOADD", "bad", "NX", "XX", "1", "2", "m")
    wire("GEOADD", "bad", "NX", "XX", "CH")
    wire("GEOADD", "bad", "CH", "NX", "CH")
    wire("GEOADD", "bad", "GT", "1", "2", "m")
    wire("GEOADD", "bad", "XX", "1", "2", "m")
    wire("EXISTS", "bad")
    # the coordinates are checked before the type, ZADD's type check comes after
    wire("SET", "str", "v")
    wire("GEOADD", "str", "200", "0", "m")
    wire("GEOADD", "str", "1", "2", "m")


def test_one_point_geoadd_and_one_pair_zadd(wire: Wire) -> None:
    """GEOADD of one point (coordinates as plain decimals read without string2d) and ZADD of
    one pair take a short path: its forms and replies against redis-server."""
    for lon, lat in (("13.361389", "38.115556"), ("+13.361389", "038.115556"),
                     ("13.36138900000000000001", "38.1"), ("-180", "-85.05112878"),
                     ("1e1", "2"), ("0x1p3", "2"), ("13.361389", "38.115556"),
                     ("12345678901234567", "0"), ("-0", "-0.0")):
        wire("GEOADD", "g", lon, lat, "m")
        wire("ZSCORE", "g", "m")
    wire("GEOADD", "g", "nx", "1", "2")
    wire("GEOADD", "g", "-180", "-85.05112878", "zero")  # score 0 in a listpack
    wire("ZRANGE", "g", "0", "-1", "WITHSCORES")
    for score in ("1.5", "-0", "0", "1.5", "+inf", "nan", "x", "nx"):
        wire("ZADD", "z", score, "m")
        wire("ZSCORE", "z", "m")
    wire("ZADD", "z", "nx", "m")
    wire("SET", "s", "v")
    wire("ZADD", "s", "1", "m")
    wire("GEOADD", "s", "1", "2", "m")


def test_geoadd_is_propagated_as_zadd(run, propagated: list[list[bytes]]) -> None:
    run("GEOADD", "Sicily", "ch", "NX", *SICILY)
    run("GEOADD", "Sicily", "NX", *SICILY)  # nothing changed: nothing propagated
    assert propagated == [[b"zadd", b"Sicily", b"ch", b"NX", b"3479099956230698", b"Palermo",
                           b"3479447370796909", b"Catania"]]


@settings(max_examples=300, deadline=None)
@given(longitude=st.floats(-180, 180), latitude=st.floats(geohash.LAT_MIN, geohash.LAT_MAX))
def test_geoadd_fast_score_is_the_encoding(longitude: float, latitude: float) -> None:
    """GEOADD's unrolled score is ``geohashEncode`` at 26 steps, aligned."""
    bits = geohash.encode(longitude, latitude)
    assert bits is not None
    assert geohash.score_of(longitude, latitude) == geohash.align52(bits, geohash.STEP_MAX)


# -- GEOHASH, GEOPOS, GEODIST -----------------------------------------------------------------


def test_geohash_geopos_geodist(wire: Wire) -> None:
    wire("GEOADD", "Sicily", *SICILY)
    wire("GEOADD", "edges", "180", "85.05112878", "ne", "-180", "-85.05112878", "sw",
         "0", "0", "origin", "-0.0000001", "-0.0000001", "neg")
    for key, members in (("Sicily", ("Palermo", "Catania", "nope")),
                         ("edges", ("ne", "sw", "origin", "neg")),
                         ("missing", ("a", "b"))):
        both(wire, "GEOHASH", key, *members)
        both(wire, "GEOPOS", key, *members)
    both(wire, "GEOHASH", "Sicily")
    both(wire, "GEOPOS", "Sicily")
    for unit in ("m", "km", "KM", "ft", "mi", "Mi"):
        both(wire, "GEODIST", "Sicily", "Palermo", "Catania", unit)
    both(wire, "GEODIST", "Sicily", "Palermo", "Catania")
    both(wire, "GEODIST", "Sicily", "Palermo", "Palermo")
    both(wire, "GEODIST", "edges", "ne", "sw")
    both(wire, "GEODIST", "edges", "origin", "neg", "ft")
    both(wire, "GEODIST", "Sicily", "Palermo", "nope")
    both(wire, "GEODIST", "missing", "a", "b")
    both(wire, "GEODIST", "Sicily", "Palermo", "Catania", "yards")
    both(wire, "GEODIST", "missing", "a", "b", "yards")  # the unit is read before the key
    both(wire, "GEODIST", "Sicily", "Palermo", "Catania", "km", "extra")
    wire("SET", "str", "v")
    for args in (("GEOHASH", "str", "a"), ("GEOPOS", "str", "a"), ("GEODIST", "str", "a", "b"),
                 ("GEODIST", "str", "a", "b", "bad")):
        wire(*args)


@pytest.mark.parametrize("score", [
    "0", "1", "4503599627370495", "4503599627370496", "9007199254740993", "-1", "-0.5", "2.5",
    "1e19", "9223372036854775808", "1.8446744073709552e19", "-9.3e18", "inf", "-inf",
    "1e300",
])
def test_scores_geoadd_never_writes(wire: Wire, score: str) -> None:
    """Any score decodes as Redis decodes it: ``(uint64_t)score``, clamped coordinates."""
    wire("ZADD", "z", score, "m", "0", "o")
    both(wire, "GEOPOS", "z", "m")
    both(wire, "GEOHASH", "z", "m")
    both(wire, "GEODIST", "z", "m", "o")
    both(wire, "GEORADIUSBYMEMBER", "z", "m", "20000", "km", "WITHCOORD", "WITHHASH",
         "WITHDIST")


# -- searches ----------------------------------------------------------------------------------


def test_search_replies_and_options(wire: Wire) -> None:
    wire("GEOADD", "Sicily", *SICILY, "12.758489", "38.788135", "edge1", "17.241510",
         "38.788135", "edge2")
    searches = [
        ("GEORADIUS", "Sicily", "15", "37", "200", "km"),
        ("GEORADIUS", "Sicily", "15", "37", "200", "km", "WITHDIST", "WITHCOORD", "WITHHASH"),
        ("GEORADIUS", "Sicily", "15", "37", "200", "km", "WITHCOORD", "DESC"),
        ("GEORADIUS", "Sicily", "15", "37", "2000", "mi", "COUNT", "1"),
        ("GEORADIUS", "Sicily", "15", "37", "2000", "mi", "COUNT", "2", "DESC", "withdist"),
        ("GEORADIUS", "Sicily", "15", "37", "2000", "mi", "COUNT", "3", "ANY"),
        ("GEORADIUS", "Sicily", "15", "37", "2000", "ft", "COUNT", "30", "ANY", "ASC"),
        ("GEORADIUS", "Sicily", "15", "37", "0", "m"),
        ("GEORADIUS_RO", "Sicily", "15", "37", "200", "km", "WITHDIST", "ASC"),
        ("GEORADIUSBYMEMBER", "Sicily", "Palermo", "300", "km", "WITHDIST"),
        ("GEORADIUSBYMEMBER", "Sicily", "Palermo", "0", "km", "WITHDIST", "WITHCOORD"),
        ("GEORADIUSBYMEMBER_RO", "Sicily", "Catania", "150", "mi", "DESC", "COUNT", "2"),
        ("GEOSEARCH", "Sicily", "FROMLONLAT", "15", "37", "BYRADIUS", "200", "km", "ASC"),
        ("GEOSEARCH", "Sicily", "FROMMEMBER", "Palermo", "BYBOX", "400", "400", "km",
         "WITHCOORD", "WITHDIST", "WITHHASH", "DESC"),
        ("GEOSEARCH", "Sicily", "FROMLONLAT", "15", "37", "BYBOX", "200", "400", "km",
         "COUNT", "1", "ANY"),
        ("GEOSEARCH", "Sicily", "FROMLONLAT", "15", "37", "BYBOX", "0", "0", "km"),
        ("GEOSEARCH", "Sicily", "BYRADIUS", "5000", "km", "FROMLONLAT", "15", "37", "COUNT",
         "2"),
        ("GEOSEARCH", "Sicily", "FROMMEMBER", "nope", "BYRADIUS", "1", "km"),
        ("GEOSEARCH", "missing", "FROMMEMBER", "nope", "BYRADIUS", "1", "km"),
        ("GEORADIUS", "missing", "15", "37", "200", "km", "WITHDIST"),
        ("GEORADIUSBYMEMBER", "missing", "nope", "abc", "xyz"),  # radius never read
        ("GEORADIUSBYMEMBER", "Sicily", "nope", "abc", "xyz"),
        ("GEORADIUS", "Sicily", "15", "37", "inf", "km", "WITHDIST"),
        ("GEORADIUS", "Sicily", "15", "37", "1e308", "mi", "WITHDIST", "DESC"),
        ("GEORADIUS", "Sicily", "15", "37", "0x1p20", "m", "COUNT", "9223372036854775807"),
        ("GEOSEARCH", "Sicily", "FROMLONLAT", "15", "37", "BYBOX", "inf", "1e300", "ft",
         "WITHDIST"),
        ("GEOSEARCH", "Sicily", "FROMLONLAT", "-180", "85.05112878", "BYRADIUS", "20000",
         "km", "WITHDIST", "WITHHASH"),
        ("GEOSEARCH", "Sicily", "FROMLONLAT", "180", "-85.05112878", "BYBOX", "40000", "100",
         "km", "WITHCOORD"),
        ("GEOSEARCH", "Sicily", "frommember", "Palermo", "frommember", "Catania", "byradius",
         "100", "KM", "withdist"),
        ("GEOSEARCH", "Sicily", "FROMMEMBER", "Palermo", "BYRADIUS", "1", "km", "BYRADIUS",
         "400", "km", "WITHDIST"),
    ]
    for search in searches:
        both(wire, *search)


@pytest.mark.parametrize("args", [
    ("GEORADIUS", "Sicily", "15", "37", "-1", "km"),
    ("GEORADIUS", "Sicily", "15", "37", "abc", "km"),
    ("GEORADIUS", "Sicily", "15", "37", "10", "yards"),
    ("GEORADIUS", "Sicily", "190", "37", "abc", "yards"),
    ("GEORADIUS", "Sicily", "15", "x", "10", "km"),
    ("GEORADIUS", "Sicily", "15", "37", "10", "km", "COUNT", "0"),
    ("GEORADIUS", "Sicily", "15", "37", "10", "km", "COUNT", "-3"),
    ("GEORADIUS", "Sicily", "15", "37", "10", "km", "COUNT", "x"),
    ("GEORADIUS", "Sicily", "15", "37", "10", "km", "COUNT"),
    ("GEORADIUS", "Sicily", "15", "37", "10", "km", "ANY"),
    ("GEORADIUS", "Sicily", "15", "37", "10", "km", "STORE"),
    ("GEORADIUS", "Sicily", "15", "37", "10", "km", "STORE", "dst", "WITHDIST"),
    ("GEORADIUS", "Sicily", "15", "37", "10", "km", "WITHHASH", "STOREDIST", "dst"),
    ("GEORADIUS", "Sicily", "15", "37", "10", "km", "FROMMEMBER", "Palermo"),
    ("GEORADIUS", "Sicily", "15", "37", "10", "km", "bogus"),
    ("GEORADIUS_RO", "Sicily", "15", "37", "10", "km", "STORE", "dst"),
    ("GEORADIUSBYMEMBER_RO", "Sicily", "Palermo", "10", "km", "STOREDIST", "dst"),
    ("GEORADIUSBYMEMBER", "Sicily", "Palermo", "-10", "km"),
    ("GEORADIUSBYMEMBER", "missing", "Palermo", "10", "km", "ANY"),
    ("GEORADIUSBYMEMBER", "missing", "Palermo", "10", "km", "STORE", "d", "WITHCOORD"),
    ("GEOSEARCH", "Sicily", "FROMLONLAT", "15", "37"),
    ("GEOSEARCH", "Sicily", "BYRADIUS", "10", "km"),
    ("geosearch", "Sicily", "BYRADIUS", "10", "km", "ASC"),
    ("GeoSearch", "Sicily", "FROMLONLAT", "15", "37", "ASC"),
    ("GEOSEARCH", "Sicily", "FROMLONLAT", "15", "37", "FROMMEMBER", "Palermo", "BYRADIUS",
     "1", "km"),
    ("GEOSEARCH", "Sicily", "FROMMEMBER", "Palermo", "FROMLONLAT", "15", "37", "BYRADIUS",
     "1", "km"),
    ("GEOSEARCH", "Sicily", "FROMMEMBER", "Palermo", "BYRADIUS", "1", "km", "BYBOX", "1",
     "1", "km"),
    ("GEOSEARCH", "Sicily", "FROMMEMBER", "Palermo", "BYBOX", "1", "1", "km", "BYRADIUS",
     "1", "km"),
    ("GEOSEARCH", "Sicily", "FROMMEMBER", "Palermo", "BYBOX", "-1", "1", "km"),
    ("GEOSEARCH", "Sicily", "FROMMEMBER", "Palermo", "BYBOX", "w", "h", "km"),
    ("GEOSEARCH", "Sicily", "FROMMEMBER", "Palermo", "BYBOX", "1", "h", "km"),
    ("GEOSEARCH", "Sicily", "FROMMEMBER", "Palermo", "BYBOX", "1", "1", "yd"),
    ("GEOSEARCH", "Sicily", "FROMMEMBER", "Palermo", "BYBOX", "1", "1"),
    ("GEOSEARCH", "Sicily", "FROMLONLAT", "15", "BYRADIUS", "1", "km"),
    ("GEOSEARCH", "Sicily", "FROMLONLAT", "15", "100", "BYRADIUS", "1", "km"),
    ("GEOSEARCH", "Sicily", "FROMMEMBER", "Palermo", "BYRADIUS", "1", "km", "STORE", "d"),
    ("GEOSEARCH", "Sicily", "FROMMEMBER", "Palermo", "BYRADIUS", "1", "km", "STOREDIST"),
    ("GEOSEARCH", "Sicily", "FROMMEMBER", "Palermo", "BYRADIUS", "1", "km", "ANY"),
    ("GEOSEARCH", "missing", "FROMMEMBER", "Palermo", "BYRADIUS", "x", "km"),
    ("GEOSEARCH", "missing", "FROMLONLAT", "15", "37", "COUNT", "1"),
    ("GEOSEARCHSTORE", "dst", "Sicily", "FROMMEMBER", "Palermo", "BYRADIUS", "1", "km",
     "WITHDIST"),
    ("GEOSEARCHSTORE", "dst", "Sicily", "FROMMEMBER", "Palermo", "BYRADIUS", "1", "km",
     "STORE", "x"),
    ("GEOSEARCHSTORE", "dst", "Sicily", "FROMMEMBER", "Palermo", "STOREDIST"),
    ("geosearchstore", "dst", "Sicily", "BYRADIUS", "1", "km", "STOREDIST"),
    ("GEOSEARCHSTORE", "dst", "str", "FROMMEMBER", "Palermo", "BYRADIUS", "x", "km"),
    ("GEORADIUS", "str", "500", "37", "10", "km"),
    ("GEORADIUSBYMEMBER", "str", "Palermo", "10", "km"),
    ("GEOSEARCH", "str", "FROMLONLAT", "15", "37", "BYRADIUS", "10", "km"),
])
def test_search_errors_in_redis_order(wire: Wire, args: tuple[str, ...]) -> None:
    wire("GEOADD", "Sicily", *SICILY)
    wire("SET", "str", "v")
    wire(*args)


def test_store_forms(wire: Wire) -> None:
    _fill_random(wire, "pts", 7, 60, (2.35, 48.85), 1.0)
    stores = [
        ("GEORADIUS", "pts", "2.35", "48.85", "50", "km", "STORE", "d1"),
        ("GEORADIUS", "pts", "2.35", "48.85", "50", "km", "STOREDIST", "d2", "COUNT", "5"),
        ("GEORADIUS", "pts", "2.35", "48.85", "50", "mi", "STORE", "d3", "STOREDIST", "d3b"),
        ("GEORADIUSBYMEMBER", "pts", "m3", "30", "km", "STOREDIST", "d4", "DESC", "COUNT",
         "3"),
        ("GEOSEARCHSTORE", "d5", "pts", "FROMMEMBER", "m3", "BYBOX", "80", "50", "km"),
        ("GEOSEARCHSTORE", "d6", "pts", "FROMLONLAT", "2.35", "48.85", "BYRADIUS", "40", "km",
         "STOREDIST", "COUNT", "4", "ANY"),
        ("GEOSEARCHSTORE", "d7", "pts", "FROMLONLAT", "2.35", "48.85", "BYRADIUS", "10", "ft",
         "STOREDIST"),
    ]
    wire("SET", "d7", "old")  # an empty result deletes the destination
    wire("SET", "d8", "old")
    for store in stores:
        wire(*store)
    wire("GEORADIUS", "missing", "2.35", "48.85", "50", "km", "STORE", "d8")
    wire("GEOSEARCHSTORE", "d9", "missing", "FROMMEMBER", "x", "BYRADIUS", "1", "km")
    for key in ("d1", "d2", "d3", "d3b", "d4", "d5", "d6", "d7", "d8", "d9"):
        wire("ZRANGE", key, "0", "-1", "WITHSCORES")
        wire("OBJECT", "ENCODING", key)


def test_store_forms_propagate_as_sent(run, propagated: list[list[bytes]]) -> None:
    run("GEOADD", "Sicily", *SICILY)
    propagated.clear()
    stored = ["GEOSEARCHSTORE", "dst", "Sicily", "FROMMEMBER", "Palermo", "BYRADIUS", "300",
              "km", "STOREDIST"]
    radius = ["GEORADIUS", "Sicily", "15", "37", "200", "km", "STORE", "d2"]
    assert run(*stored) == 2
    assert run(*radius) == 2
    run("GEORADIUS", "Sicily", "15", "37", "200", "km")  # a plain read: nothing to send
    run("GEOSEARCHSTORE", "none", "Sicily", "FROMLONLAT", "0", "0", "BYRADIUS", "1", "m",
        "STOREDIST")  # empty, and nothing to delete: no change
    assert propagated == [[a.encode() for a in stored], [a.encode() for a in radius]]


def test_duplicate_distances_with_count_follow_redis_partial_sort(wire: Wire) -> None:
    """Equal distances: a full sort keeps the set's order (glibc's merge sort is stable), a
    COUNT smaller than the matches uses Redis's pqsort, which is not stable."""
    args: list[object] = ["GEOADD", "dup"]
    for i in range(60):
        ring = i % 4
        args += [f"10.{ring}", "45", f"m{i:02d}"]
    wire(*args)
    for count in ("1", "3", "7", "8", "20", "41", "59", "60", "100"):
        for order in ("ASC", "DESC"):
            both(wire, "GEOSEARCH", "dup", "FROMLONLAT", "10", "45", "BYRADIUS", "100", "km",
                 "COUNT", count, order, "WITHDIST")
    wire("GEORADIUS", "dup", "10", "45", "100", "km")
    wire("GEORADIUS", "dup", "10", "45", "100", "km", "DESC")
    for size in (6, 7, 8, 23, 41):  # insertion sort, median of three, ninther
        args = ["GEOADD", f"few{size}"]
        for i in range(size):
            args += [f"20.{(i * 7) % 3}", "-30", f"f{i:02d}"]
        wire(*args)
        for count in range(1, size):
            wire("GEOSEARCH", f"few{size}", "FROMLONLAT", "20", "-30", "BYRADIUS", "500", "km",
                 "COUNT", str(count), "DESC" if count % 2 else "ASC")


@pytest.mark.parametrize("center", [
    (179.9, 0.0), (-179.95, 10.0), (0.0, 85.0), (10.0, -85.0), (179.999, 84.9),
    (-180.0, -85.05112878), (0.0, 0.0), (100.0, 70.0), (-60.0, -81.0), (90.0, 66.5),
])
@pytest.mark.parametrize("radius_km", ["0.5", "50", "500", "5000", "20000"])
def test_searches_near_poles_and_antimeridian(wire: Wire, center: tuple[float, float],
                                             radius_km: str) -> None:
    _fill_random(wire, "world", int(center[0] * 7 + center[1]), 80, center, 3.0)
    _fill_random(wire, "world", 11, 40, (0.0, 0.0), 180.0)
    lon, lat = repr(center[0]), repr(center[1])
    wire("GEOSEARCH", "world", "FROMLONLAT", lon, lat, "BYRADIUS", radius_km, "km",
         "WITHDIST", "WITHCOORD")
    wire("GEOSEARCH", "world", "FROMLONLAT", lon, lat, "BYBOX", radius_km, radius_km, "km",
         "WITHDIST", "WITHHASH")
    wire("GEOSEARCH", "world", "FROMLONLAT", lon, lat, "BYRADIUS", radius_km, "km", "COUNT",
         "5")
    wire("GEOSEARCH", "world", "FROMLONLAT", lon, lat, "BYBOX", radius_km, radius_km, "mi",
         "COUNT", "7", "ANY")


@pytest.mark.parametrize("center", [(0.0, 0.0), (90.0, 45.0), (-45.0, -22.5), (179.99, 67.5),
                                    (11.25, 80.5), (0.0001, -0.0001)])
@pytest.mark.parametrize("radius_km", ["1", "9.7", "40", "160", "700"])
def test_dense_grid_around_cell_edges(wire: Wire, center: tuple[float, float],
                                      radius_km: str) -> None:
    """A grid of points covering the search area, centred on cell boundaries (where the
    estimated step must be lowered to cover the area): every point Redis finds, in its
    order."""
    reach = float(radius_km) * 1.3 / 111.0 / max(0.15, math.cos(math.radians(center[1])))
    args: list[object] = ["GEOADD", "grid"]
    for i in range(21):
        for j in range(21):
            lon = min(180.0, max(-180.0, center[0] + reach * (i - 10) / 10))
            lat = min(geohash.LAT_MAX, max(geohash.LAT_MIN, center[1] + reach * (j - 10) / 10))
            args += [repr(lon), repr(lat), f"g{i}.{j}"]
    wire(*args)
    lon, lat = repr(center[0]), repr(center[1])
    wire("GEOSEARCH", "grid", "FROMLONLAT", lon, lat, "BYRADIUS", radius_km, "km")
    wire("GEOSEARCH", "grid", "FROMLONLAT", lon, lat, "BYBOX", radius_km, radius_km, "km",
         "DESC", "WITHDIST")


def test_keys_transactions_and_read_stats(wire: Wire, r: redis.Redis, real: redis.Redis
                                          ) -> None:
    for args in (("GEORADIUS", "src", "1", "2", "3", "km", "STORE", "dst"),
                 ("GEORADIUS", "src", "1", "2", "3", "km", "STOREDIST", "d2", "COUNT", "1"),
                 ("GEORADIUSBYMEMBER", "src", "m", "3", "km", "STORE", "dst"),
                 ("GEOSEARCHSTORE", "dst", "src", "FROMMEMBER", "m", "BYRADIUS", "1", "km"),
                 ("GEOSEARCH", "src", "FROMMEMBER", "m", "BYRADIUS", "1", "km"),
                 ("GEOADD", "src", "1", "2", "m")):
        wire("COMMAND", "GETKEYS", *args)
    wire("GEOADD", "Sicily", *SICILY)
    for protocol in (2, 3):
        wire(protocol=protocol, batch=[
            ("MULTI",), ("GEOPOS", "Sicily", "Palermo", "x"), ("GEODIST", "Sicily", "Palermo",
                                                              "Catania"),
            ("GEOSEARCH", "Sicily", "FROMMEMBER", "Palermo", "BYRADIUS", "300", "km",
             "WITHCOORD", "WITHDIST"),
            ("GEOADD", "Sicily", "1", "2", "new"), ("EXEC",)])
    # Sources are reads (keyspace_hits/misses), the STORE forms' too.
    before = [client.info("stats") for client in (r, real)]
    for args in (("GEOSEARCHSTORE", "d", "Sicily", "FROMMEMBER", "Palermo", "BYRADIUS", "1",
                  "km"),
                 ("GEOSEARCHSTORE", "d", "nope", "FROMMEMBER", "Palermo", "BYRADIUS", "1",
                  "km"),
                 ("GEORADIUS", "Sicily", "1", "2", "3", "km", "STORE", "d"),
                 ("GEOPOS", "nope", "a"), ("GEODIST", "Sicily", "a", "b"),
                 ("GEOHASH", "Sicily", "a")):
        wire(*args)
    after = [client.info("stats") for client in (r, real)]
    deltas = [(a["keyspace_hits"] - b["keyspace_hits"], a["keyspace_misses"] - b["keyspace_misses"])
              for a, b in zip(after, before, strict=True)]
    assert deltas[0] == deltas[1]


# -- random points and searches ----------------------------------------------------------------

_longitudes = st.floats(-180, 180, allow_nan=False)
_latitudes = st.floats(geohash.LAT_MIN, geohash.LAT_MAX, allow_nan=False)
_offsets = st.tuples(st.floats(-1, 1), st.floats(-1, 1))
_METERS = {"m": 1.0, "km": 1000.0, "ft": 0.3048, "mi": 1609.34}


def _clamped(center: tuple[float, float], offset: tuple[float, float], spread: float
             ) -> tuple[float, float]:
    lon = min(180.0, max(-180.0, center[0] + offset[0] * spread))
    lat = min(geohash.LAT_MAX, max(geohash.LAT_MIN, center[1] + offset[1] * spread))
    return lon, lat


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(center=st.tuples(_longitudes, _latitudes),
       spread=st.sampled_from([0.0001, 0.01, 0.3, 2.0, 20.0, 400.0]),
       offsets=st.lists(_offsets, min_size=1, max_size=50),
       origin=_offsets,
       near=st.integers(0, 29),
       factor=st.sampled_from([0.0, 0.05, 0.3, 0.7, 1.0, 1.5, 3.0]),
       unit=st.sampled_from(["m", "km", "ft", "mi"]),
       box=st.booleans(),
       order=st.sampled_from([(), ("ASC",), ("DESC",)]),
       count=st.sampled_from([(), ("COUNT", "1"), ("COUNT", "3"), ("COUNT", "4", "ANY")]),
       protocol=st.sampled_from([2, 3]))
def test_random_points_and_searches(wire: Wire, center: tuple[float, float], spread: float,
                                    offsets: list[tuple[float, float]],
                                    origin: tuple[float, float], near: int, factor: float,
                                    unit: str, box: bool, order: tuple[str, ...],
                                    count: tuple[str, ...], protocol: int) -> None:
    """Points scattered around a random centre at a random scale, searched from a point
    near them, the search about as wide as the scatter: searches cross cell edges, poles
    and the antimeridian."""
    wire("DEL", "g")
    args: list[object] = ["GEOADD", "g"]
    for i, offset in enumerate(offsets):
        args += [*map(repr, _clamped(center, offset, spread)), f"p{i}"]
    wire(*args)
    member = f"p{near % len(offsets)}"
    lon, lat = _clamped(center, origin, spread)
    size = repr(spread * 111_000 * factor / _METERS[unit])
    by = ("BYBOX", size, size, unit) if box else ("BYRADIUS", size, unit)
    options = (*order, *count, "WITHCOORD", "WITHDIST", "WITHHASH")
    wire("GEOSEARCH", "g", "FROMLONLAT", repr(lon), repr(lat), *by, *options,
         protocol=protocol)
    wire("GEOSEARCH", "g", "FROMMEMBER", member, *by, *order, *count, protocol=protocol)
    wire("GEORADIUS", "g", repr(lon), repr(lat), size, unit, *options, protocol=protocol)
    wire("GEORADIUSBYMEMBER", "g", member, size, unit, *options, protocol=protocol)
    wire("GEOSEARCHSTORE", "s", "g", "FROMMEMBER", member, *by, *order, *count, "STOREDIST")
    wire("ZRANGE", "s", "0", "-1", "WITHSCORES")
    wire("GEOPOS", "g", member, protocol=protocol)
    wire("GEOHASH", "g", member, "p0")
    wire("GEODIST", "g", member, "p0", unit)


# -- replication -------------------------------------------------------------------------------


async def test_kvrepl_replica_of_redis_master_applies_geo_writes() -> None:
    master = RedisServer("--enable-debug-command", "yes", "--repl-diskless-sync-delay", "0")
    try:
        client = master.client()
        client.geoadd("before", [13.361389, 38.115556, "Palermo", 15.087269, 37.502669,
                                 "Catania"])
        async with kvrepl.Replica(follow=("127.0.0.1", master.port)) as replica:
            await replica.wait_synced()

            def write() -> int:
                rng = random.Random(3)
                for n in range(5):
                    values: list[object] = []
                    for i in range(40):
                        values += [rng.uniform(-180, 180), rng.uniform(-85, 85), f"m{n}.{i}"]
                    client.geoadd("world", values, ch=n % 2 == 1)
                client.execute_command("GEOSEARCHSTORE", "near", "world", "FROMMEMBER",
                                       "m0.0", "BYRADIUS", "5000", "km", "STOREDIST")
                client.execute_command("GEOSEARCHSTORE", "box", "world", "FROMLONLAT", "0",
                                       "0", "BYBOX", "9000", "9000", "km", "COUNT", "5")
                client.execute_command("GEORADIUS", "world", "10", "10", "3000", "km",
                                       "STORE", "radius")
                client.execute_command("GEORADIUSBYMEMBER", "before", "Palermo", "300", "km",
                                       "STOREDIST", "sicily")
                client.execute_command("GEOSEARCHSTORE", "near", "missing", "FROMMEMBER",
                                       "x", "BYRADIUS", "1", "km")  # deletes "near"
                return client.info("replication")["master_repl_offset"]

            offset = await trio.to_thread.run_sync(write)
            await replica.following.wait_offset(offset)
            theirs = await trio.to_thread.run_sync(
                lambda: client.execute_command("DEBUG", "DIGEST"))
            assert dataset_digest(replica.engine.keyspace) == theirs
            assert replica.execute_command("EXISTS", "near") == 0
            assert replica.execute_command("ZCARD", "sicily") == 2
        client.close()
    finally:
        master.stop()


async def test_redis_replica_of_kvrepl_master_applies_geo_writes() -> None:
    """The other way: what kvrepl propagates (GEOADD as ZADD, the STORE forms as sent)
    leaves a redis-server replica with the master's data."""
    async with kvrepl.Master(port=0) as master:
        replica = RedisServer("--replicaof", "127.0.0.1", str(master.port),
                              "--enable-debug-command", "yes")
        try:
            client = replica.client()
            rng = random.Random(5)
            for n in range(4):
                values: list[object] = []
                for i in range(30):
                    values += [rng.uniform(-180, 180), rng.uniform(-85, 85), f"m{n}.{i}"]
                master.geoadd("world", values, ch=n == 1)
            master.execute_command("GEOSEARCHSTORE", "near", "world", "FROMMEMBER", "m0.0",
                                   "BYRADIUS", "6000", "km", "STOREDIST")
            master.execute_command("GEORADIUS", "world", "10", "10", "4000", "km", "STORE",
                                   "radius", "COUNT", "3")
            offset = master.replication.master_repl_offset

            def caught_up() -> bool:
                info = client.info("replication")
                return (info.get("master_link_status") == "up"
                        and info["slave_repl_offset"] >= offset)

            deadline = trio.current_time() + 20
            while not await trio.to_thread.run_sync(caught_up):
                assert trio.current_time() < deadline, "the redis replica never caught up"
                await trio.sleep(0.05)
            theirs = await trio.to_thread.run_sync(
                lambda: client.execute_command("DEBUG", "DIGEST"))
            assert theirs == dataset_digest(master.engine.keyspace)
            client.close()
        finally:
            replica.stop()


# -- the embedded API --------------------------------------------------------------------------


async def test_embedded_geo_methods_match_redis_py(real: redis.Redis) -> None:
    async with kvrepl.Master() as node:
        values = [13.361389, 38.115556, "Palermo", 15.087269, 37.502669, "Catania"]
        assert node.geoadd("Sicily", values) == real.geoadd("Sicily", values) == 2
        assert node.geoadd("Sicily", values, xx=True, ch=True) == 0
        assert node.geodist("Sicily", "Palermo", "Catania", "km") == \
            real.geodist("Sicily", "Palermo", "Catania", "km")
        assert node.geodist("Sicily", "Palermo", "nope") is None
        assert node.geohash("Sicily", "Palermo", "nope") == real.geohash("Sicily", "Palermo",
                                                                         "nope")
        assert node.geopos("Sicily", "Palermo", "nope") == real.geopos("Sicily", "Palermo",
                                                                       "nope")
        for kwargs in ({"longitude": 15, "latitude": 37, "radius": 200, "unit": "km"},
                       {"member": "Palermo", "width": 400, "height": 400, "unit": "km",
                        "sort": "DESC", "withdist": True, "withcoord": True,
                        "withhash": True},
                       {"longitude": 15, "latitude": 37, "radius": 500, "unit": "km",
                        "count": 1, "withdist": True}):
            assert node.geosearch("Sicily", **kwargs) == real.geosearch("Sicily", **kwargs)
