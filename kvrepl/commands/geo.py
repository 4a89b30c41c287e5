"""Geo commands (Redis 7.0's ``geo.c``) over sorted sets whose scores are 52-bit geohashes.

The math lives in :mod:`kvrepl.store.geohash`; this module parses arguments in Redis's order
(the same errors win), walks the 9 boxes of a search over the set's score order, and formats
replies as Redis does: distances as bulk strings with 4 decimals (RESP3 too), coordinates with
17 decimals trimmed (``addReplyHumanLongDouble``: a bulk string in RESP2, a double in RESP3).

GEOADD is ZADD to Redis: it rewrites itself into ``zadd key [opts] score member ...``, runs
ZADD and propagates that. GEORADIUS ... STORE and GEOSEARCHSTORE propagate as sent.
"""

from __future__ import annotations

from functools import partial

from kvrepl.commands.args import decimal, parse_double, parse_int, string2d
from kvrepl.commands.core import Session, command
from kvrepl.commands.keys import store_result
from kvrepl.commands.zsets import zadd_one, zadd_scores
from kvrepl.errors import NOT_FLOAT, SYNTAX, ReplyError, WrongTypeError
from kvrepl.notify import ZSET
from kvrepl.protocol.replies import NULL_ARRAY, Raw
from kvrepl.store import geohash
from kvrepl.store.geohash import CIRCULAR, RECTANGLE, ZERO_BOX, Shape
from kvrepl.store.values import ZSet

_LAT_MIN, _LAT_MAX = geohash.LAT_MIN, geohash.LAT_MAX
_UNITS = {b"m": 1.0, b"km": 1000.0, b"ft": 0.3048, b"mi": 1609.34}
_BAD_UNIT = "ERR unsupported unit provided. please use M, KM, FT, MI"
_BAD_MEMBER = "ERR could not decode requested zset member"

# georadiusGeneric's flags
_COORDS, _MEMBER, _NOSTORE, _SEARCH, _SEARCHSTORE = 1, 2, 4, 8, 16
_SORT_NONE, _SORT_ASC, _SORT_DESC = 0, 1, 2


# -- replies ------------------------------------------------------------------------------------


def format_distance(value: float) -> bytes:
    """``fixedpoint_d2string(value, 4)``: llrint of value * 10^4, printed with 4 decimals."""
    if value == 0:
        return b"0.0000"
    scaled = value * 10000.0
    if scaled != scaled or abs(scaled) >= 9223372036854775808.0:
        units = -(1 << 63)  # llrint's answer out of range (never for a real distance)
    else:
        units = round(scaled)  # llrint: to nearest, ties to even
    sign = b"-" if units < 0 else b""
    units = abs(units)
    return b"%s%d.%04d" % (sign, units // 10000, units % 10000)


def human_double(value: float) -> bytes:
    """``ld2string(LD_STR_HUMAN)``: ``%.17Lf`` with trailing zeros (and dot) trimmed."""
    if value in (float("inf"), float("-inf")):
        return b"inf" if value > 0 else b"-inf"
    text = (b"%.17f" % value).rstrip(b"0").rstrip(b".")
    return b"0" if text == b"-0" else text


def _coordinate(s: Session, value: float) -> object:
    """``addReplyHumanLongDouble``: bulk in RESP2, a double (same digits) in RESP3."""
    text = human_double(value)
    return Raw(b",%s\r\n" % text) if s.resp3 else text


# -- arguments ------------------------------------------------------------------------------


def _lookup(s: Session, key: bytes) -> ZSet | None:
    """``lookupKeyRead`` + ``checkType``: counted as a read even in the STORE forms."""
    value = s.db.lookup_read(key)
    if value is None or type(value) is ZSet:
        return value
    raise WrongTypeError()


def _lonlat(argv: list[bytes], index: int) -> tuple[float, float]:
    """``extractLongLatOrReply``: both numbers parsed, then the pair checked."""
    longitude = string2d(argv[index])
    latitude = string2d(argv[index + 1])
    if longitude is None or latitude is None:
        raise ReplyError(NOT_FLOAT)
    if (longitude < geohash.LONG_MIN or longitude > geohash.LONG_MAX
            or latitude < geohash.LAT_MIN or latitude > geohash.LAT_MAX):
        raise ReplyError(f"ERR invalid longitude,latitude pair {longitude:f},{latitude:f}")
    return longitude, latitude


def _unit(arg: bytes) -> float:
    """``extractUnitOrReply``: meters per unit."""
    conversion = _UNITS.get(arg.lower())
    if conversion is None:
        raise ReplyError(_BAD_UNIT)
    return conversion


def _radius(argv: list[bytes], index: int, shape: Shape) -> None:
    """``extractDistanceOrReply``: radius and unit into ``shape``."""
    radius = parse_double(argv[index], "ERR need numeric radius")
    if radius < 0:
        raise ReplyError("ERR radius cannot be negative")
    shape.radius = radius
    shape.conversion = _unit(argv[index + 1])


def _box(argv: list[bytes], index: int, shape: Shape) -> None:
    """``extractBoxOrReply``: width, height and unit into ``shape``."""
    width = parse_double(argv[index], "ERR need numeric width")
    height = parse_double(argv[index + 1], "ERR need numeric height")
    if height < 0 or width < 0:
        raise ReplyError("ERR height or width cannot be negative")
    shape.width, shape.height = width, height
    shape.conversion = _unit(argv[index + 2])


def _member_point(zset: ZSet, member: bytes) -> tuple[float, float]:
    """``longLatFromMember``: a member's decoded position."""
    score = zset.scores.get(member)
    if score is None:
        raise ReplyError(_BAD_MEMBER)
    return geohash.decode_score(score)


# -- GEOADD -----------------------------------------------------------------------------------


_GEOADD_FLAGS = frozenset((b"nx", b"xx", b"ch"))


def _point_score(argv: list[bytes], index: int) -> float:
    """The score GEOADD stores for the point at ``argv[index:index + 2]``, or the error
    Redis gives for it."""
    longitude = string2d(argv[index])
    latitude = string2d(argv[index + 1])
    if (longitude is None or latitude is None or not -180.0 <= longitude <= 180.0
            or not _LAT_MIN <= latitude <= _LAT_MAX):
        longitude, latitude = _lonlat(argv, index)  # raises the error Redis gives
    return float(geohash.score_of(longitude, latitude))


@command("geoadd")
def geoadd(s: Session, argv: list[bytes]) -> object:
    """GEOADD key [NX|XX] [CH] longitude latitude member [...]: ZADD with geohash scores."""
    argc = len(argv)
    if argc == 5:
        # One point and no option, the usual GEOADD: nothing else to parse. Coordinates
        # that float() reads as string2d does (no option name is one) are read so.
        longitude, latitude = decimal(argv[2]), decimal(argv[3])
        if longitude is not None and latitude is not None:
            if -180.0 <= longitude <= 180.0 and _LAT_MIN <= latitude <= _LAT_MAX:
                cell = geohash.score_of(longitude, latitude)
            else:
                cell = _point_score(argv, 2)  # raises the error Redis gives
        elif argv[2].lower() not in _GEOADD_FLAGS:
            cell = _point_score(argv, 2)
        else:
            cell = None
        if cell is not None:
            if s.engine.propagate_listeners:
                s.engine.rewrite([b"zadd", argv[1], b"%d" % cell, argv[4]])
            return zadd_one(s, argv[1], float(cell), argv[4])
    longidx = 2
    nx = xx = ch = False
    while longidx < argc:
        option = argv[longidx].lower()
        if option == b"nx":
            nx = True
        elif option == b"xx":
            xx = True
        elif option == b"ch":
            ch = True
        else:
            break
        longidx += 1
    # No element at all passes GEOADD's own check and fails ZADD's, with the same error.
    if (argc - longidx) % 3 or argc == longidx or (xx and nx):
        raise ReplyError(SYNTAX)
    scores = [_point_score(argv, index) for index in range(longidx, argc, 3)]
    members = argv[longidx + 2::3]
    if s.engine.propagate_listeners:
        # replaceClientCommandVector: what replicas get is the ZADD this turned into.
        zargv = [b"zadd", *argv[1:longidx]]
        for score, member in zip(scores, members, strict=True):
            zargv += (b"%d" % score, member)
        s.engine.rewrite(zargv)
    return zadd_scores(s, argv[1], scores, members, nx, xx, False, False, ch)


_ZSET_ADD = b"zadd"
_REPLIES = (b":0\r\n", b":1\r\n")


def geoadd_run(s: Session, requests: list[list[bytes]], start: int, out: list[bytes],
               written: list[list[bytes]] | None) -> int:
    """``requests[start:]`` while each is a ``GEOADD key longitude latitude member`` (spelled
    as the first, a key without a TTL, coordinates :func:`decimal` reads, within the
    limits) to an existing sorted set, run as :func:`geoadd` runs each: their replies
    appended to ``out``, and what changed something to ``written`` (when given: the
    ``ZADD key score member`` each became, what propagates). Returns how many it ran; the
    first it did not (a new key, an error, a score of 0, keyspace events) is the
    handler's. The plain lane's run (``commands/plain.py``) calls it and does ``call()``'s
    part."""
    engine = s.engine
    if engine.notify_classes & ZSET:
        return 0  # the events: the handler, one request at a time
    db = s.db
    data, expires, access = db.data, db.expires, db.access
    clock = engine.keyspace.lru_clock
    score_of = geohash.score_of
    name = requests[start][0]
    replies = _REPLIES
    changes = 0
    position = start
    for argv in requests[start:]:
        if len(argv) != 5 or argv[0] != name:
            break
        key = argv[1]
        if expires and key in expires:
            break
        longitude, latitude = decimal(argv[2]), decimal(argv[3])
        if longitude is None or latitude is None or not (
                -180.0 <= longitude <= 180.0 and _LAT_MIN <= latitude <= _LAT_MAX):
            break  # string2d's cases, errors: the handler
        zset = data.get(key)
        if type(zset) is not ZSet:
            break  # a new key, WRONGTYPE
        cell = score_of(longitude, latitude)
        if not cell:
            break  # a score of 0: what a listpack keeps (zadd_one)
        member = argv[4]
        score = float(cell)
        access[key] = clock
        current = zset.scores.get(member)
        if current != score:
            zset.add(member, score)
            changes += 1
            db.changed_in_place(key)  # as call() does
            if written is not None:
                written.append([_ZSET_ADD, key, b"%d" % cell, member])
        out.append(replies[current is None])
        position += 1
    if changes:
        engine.dirty += changes
    return position - start


# -- GEOHASH, GEOPOS, GEODIST ---------------------------------------------------------------


@command("geohash")
def geohash_(s: Session, argv: list[bytes]) -> object:
    """GEOHASH key member [...]: 11-character standard geohashes, null for missing members."""
    zset = _lookup(s, argv[1])
    scores = zset.scores if zset is not None else {}
    out: list = []
    for member in argv[2:]:
        score = scores.get(member)
        out.append(None if score is None else geohash.standard_geohash(score))
    return out


@command("geopos")
def geopos(s: Session, argv: list[bytes]) -> object:
    """GEOPOS key member [...]: ``[longitude, latitude]`` pairs, null arrays for missing."""
    zset = _lookup(s, argv[1])
    scores = zset.scores if zset is not None else {}
    out: list = []
    for member in argv[2:]:
        score = scores.get(member)
        if score is None:
            out.append(NULL_ARRAY)
        else:
            longitude, latitude = geohash.decode_score(score)
            out.append([_coordinate(s, longitude), _coordinate(s, latitude)])
    return out


@command("geodist")
def geodist(s: Session, argv: list[bytes]) -> object:
    """GEODIST key member1 member2 [M|KM|FT|MI]: a bulk string, or null."""
    to_meter = 1.0
    if len(argv) == 5:
        to_meter = _unit(argv[4])
    elif len(argv) > 5:
        raise ReplyError(SYNTAX)
    zset = _lookup(s, argv[1])
    if zset is None:
        return None
    score1 = zset.scores.get(argv[2])
    score2 = zset.scores.get(argv[3])
    if score1 is None or score2 is None:
        return None
    lon1, lat1 = geohash.decode_score(score1)
    lon2, lat2 = geohash.decode_score(score2)
    return format_distance(geohash.distance(lon1, lat1, lon2, lat2) / to_meter)


# -- searches ---------------------------------------------------------------------------------


def _collect(zset: ZSet, shape: Shape, limit: int) -> list[tuple[float, bytes, float, float, float]]:
    """``membersOfAllNeighbors``: the points in the shape as ``(distance in meters, member,
    longitude, latitude, score)``, box after box in Redis's order, each box in score order.
    ``limit`` (ANY) stops the walk once that many were found."""
    boxes = geohash.search_boxes(shape)
    ordered = zset.ordered
    found: list[tuple[float, bytes, float, float, float]] = []
    last = 0
    for index, box in enumerate(boxes):
        if box == ZERO_BOX:
            continue
        # Huge radii make neighbours coincide; Redis skips one equal to the last box it
        # searched (never comparing with the centre, box 0).
        if last and box == boxes[last]:
            continue
        if found and limit and len(found) >= limit:
            break
        low, high = geohash.box_scores(box)
        start = ordered.bisect_left((float(low),))
        stop = ordered.bisect_left((float(high),))
        for score, member in ordered.islice(start, stop):
            point = shape.within(score)
            if point is not None:
                found.append((point[2], member, point[0], point[1], score))
            if found and limit and len(found) >= limit:
                break
        last = index
    return found


def _store_event(flags: int) -> bytes:
    return b"geosearchstore" if flags & _SEARCHSTORE else b"georadiusstore"


def _georadius_generic(src_index: int, flags: int, s: Session, argv: list[bytes]) -> object:
    """GEORADIUS[_RO], GEORADIUSBYMEMBER[_RO], GEOSEARCH, GEOSEARCHSTORE
    (``georadiusGeneric``): parsing and checks in Redis's order."""
    zset = _lookup(s, argv[src_index])
    shape = Shape()
    store_key: bytes | None = None
    store_dist = False
    if flags & _COORDS:
        base = 6
        shape.kind = CIRCULAR
        shape.longitude, shape.latitude = _lonlat(argv, 2)
        _radius(argv, base - 2, shape)
    elif flags & _MEMBER:
        base = 5
        # Without the key Redis reads neither the member nor the radius: only the options.
        if zset is not None:
            shape.kind = CIRCULAR
            shape.longitude, shape.latitude = _member_point(zset, argv[2])
            _radius(argv, base - 2, shape)
    else:
        base = 2
        if flags & _SEARCHSTORE:
            base = 3
            store_key = argv[1]

    withdist = withhash = withcoord = any_ = False
    frommember = fromloc = byradius = bybox = False
    sort = _SORT_NONE
    count = 0
    search = bool(flags & _SEARCH)
    can_store = not flags & _NOSTORE and not search
    remaining = len(argv) - base
    i = 0
    while i < remaining:
        at = base + i
        word = argv[at].lower()
        if word == b"withdist":
            withdist = True
        elif word == b"withhash":
            withhash = True
        elif word == b"withcoord":
            withcoord = True
        elif word == b"any":
            any_ = True
        elif word == b"asc":
            sort = _SORT_ASC
        elif word == b"desc":
            sort = _SORT_DESC
        elif word == b"count" and i + 1 < remaining:
            count = parse_int(argv[at + 1])
            if count <= 0:
                raise ReplyError("ERR COUNT must be > 0")
            i += 1
        elif word in (b"store", b"storedist") and i + 1 < remaining and can_store:
            store_key = argv[at + 1]
            store_dist = word == b"storedist"
            i += 1
        elif word == b"storedist" and search and flags & _SEARCHSTORE:
            store_dist = True
        elif word == b"frommember" and i + 1 < remaining and search and not fromloc:
            if zset is not None:
                shape.longitude, shape.latitude = _member_point(zset, argv[at + 1])
            frommember = True
            i += 1
        elif word == b"fromlonlat" and i + 2 < remaining and search and not frommember:
            shape.longitude, shape.latitude = _lonlat(argv, at + 1)
            fromloc = True
            i += 2
        elif word == b"byradius" and i + 2 < remaining and search and not bybox:
            _radius(argv, at + 1, shape)
            shape.kind = CIRCULAR
            byradius = True
            i += 2
        elif word == b"bybox" and i + 3 < remaining and search and not byradius:
            _box(argv, at + 1, shape)
            shape.kind = RECTANGLE
            bybox = True
            i += 3
        else:
            raise ReplyError(SYNTAX)
        i += 1

    if store_key is not None and (withdist or withhash or withcoord):
        what = "GEOSEARCHSTORE" if flags & _SEARCHSTORE else "STORE option in GEORADIUS"
        raise ReplyError(f"ERR {what} is not compatible with WITHDIST, WITHHASH and "
                         "WITHCOORD options")
    name = argv[0].decode("utf-8", "replace")
    if search and not (frommember or fromloc):
        raise ReplyError(f"ERR exactly one of FROMMEMBER or FROMLONLAT can be specified for {name}")
    if search and not (byradius or bybox):
        raise ReplyError(f"ERR exactly one of BYRADIUS and BYBOX can be specified for {name}")
    if any_ and not count:
        raise ReplyError("ERR the ANY argument requires COUNT argument")

    if zset is None:
        if store_key is not None:
            return store_result(s, store_key, ZSet(), ZSET, _store_event(flags))
        return []

    # COUNT means "the closest N": sorted ascending unless told otherwise (not with ANY).
    if count and sort == _SORT_NONE and not any_:
        sort = _SORT_ASC
    points = _collect(zset, shape, count if any_ else 0)
    if not points and store_key is None:
        return []
    returned = len(points) if not count or len(points) < count else count
    if sort != _SORT_NONE:
        descending = sort == _SORT_DESC
        if returned == len(points):
            # glibc's qsort is a merge sort: stable, as list.sort (reverse keeps it stable).
            points.sort(key=lambda point: point[0], reverse=descending)
        else:
            geohash.pqsort(points, [point[0] for point in points], 0, returned - 1,
                           descending)
    conversion = shape.conversion

    if store_key is not None:
        stored = {member: (dist / conversion if store_dist else score)
                  for dist, member, _, _, score in points[:returned]}
        store_result(s, store_key, ZSet(stored), ZSET, _store_event(flags), returned)
        return returned

    if not (withdist or withhash or withcoord):
        return [point[1] for point in points[:returned]]
    out: list = []
    for dist, member, longitude, latitude, score in points[:returned]:
        item: list = [member]
        if withdist:
            item.append(format_distance(dist / conversion))
        if withhash:
            item.append(int(score))
        if withcoord:
            item.append([_coordinate(s, longitude), _coordinate(s, latitude)])
        out.append(item)
    return out


for _name, _variant in {
    "georadius": (1, _COORDS),
    "georadiusbymember": (1, _MEMBER),
    "georadius_ro": (1, _COORDS | _NOSTORE),
    "georadiusbymember_ro": (1, _MEMBER | _NOSTORE),
    "geosearch": (1, _SEARCH),
    "geosearchstore": (2, _SEARCH | _SEARCHSTORE),
}.items():
    command(_name)(partial(_georadius_generic, *_variant))
