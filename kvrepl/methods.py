"""The data methods of a node: redis-py's names, keywords, return shapes and input checks,
as plain calls on the node's shared session.

The simple ones (arguments passed through, the reply given one of a few shapes) are made
from one table, :data:`SIMPLE`; the rest (options, keyword forms, fast paths) are written
out, or borrowed from redis-py itself (:data:`BORROWED`: streams, BITFIELD, the GEORADIUS
family), run with its own reply callbacks. Shapes are those redis-py gives by default (its legacy ones, kept over RESP2 and over
RESP3 unless ``protocol=3`` is asked for explicitly): ``True`` for OK, ``bool`` for some 0/1
answers, ``float`` for scores, ``set`` for set replies, ``(member, score)`` tuples.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import redis
from redis.commands.core import BasicKeyCommands, GeoCommands, StreamCommands

from kvrepl.commands.core import Engine, Session
from kvrepl.errors import DataError

Arg = bytes | str | int | float
Expiry = int | timedelta
When = int | datetime


def _arg(value: object) -> bytes:
    """An argument as redis-py encodes it: bytes as they are, str as UTF-8, numbers as
    ``repr``; DataError for anything else (None, a bool, a list...), as redis-py raises."""
    kind = type(value)
    if kind is bytes:
        return value  # type: ignore[return-value]
    if kind is str:
        return value.encode()  # type: ignore[attr-defined]
    if kind is int:
        return b"%d" % value  # type: ignore[str-format]
    if kind is float:
        return repr(value).encode()
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if not isinstance(value, bool):
        if isinstance(value, (int, float)):
            return repr(value).encode()
        if isinstance(value, str):
            return value.encode()
    raise DataError(f"Invalid input of type: '{kind.__name__}'. Convert to a bytes, string, "
                    "int or float first.")


def _seconds(value: Expiry) -> object:
    """``ex=`` / ``expire(time=)``: seconds, or a timedelta (redis-py's conversion)."""
    return int(value.total_seconds()) if isinstance(value, timedelta) else value


def _millis(value: Expiry) -> object:
    return int(value.total_seconds() * 1000) if isinstance(value, timedelta) else value


def _unix_seconds(value: When) -> object:
    """``exat=`` / ``expireat(when=)``: a Unix time in seconds, or a datetime."""
    return int(value.timestamp()) if isinstance(value, datetime) else value


def _unix_millis(value: When) -> object:
    return int(value.timestamp() * 1000) if isinstance(value, datetime) else value


def _float(reply: Any) -> float | None:
    return None if reply is None else float(reply)


def _pairs(reply: Any) -> list[tuple[bytes, float]]:
    """A flat member, score, ... reply as redis-py's (member, score) tuples."""
    if reply and isinstance(reply[0], list):  # RESP3-shaped
        return [(member, float(score)) for member, score in reply]
    return [(reply[i], float(reply[i + 1])) for i in range(0, len(reply), 2)]


SHAPES: dict[str, Callable[[Any], Any]] = {
    "raw": lambda reply: reply,
    "bool": bool,
    "float": _float,
    "set": lambda reply: set(reply) if reply else set(),
    "floats": lambda reply: [_float(item) for item in reply],
    "pairs": _pairs,
}

# method, command, parameters (``*name`` variadic, ``name=default`` optional), shape
SIMPLE: list[tuple[str, str, str, str]] = [
    # strings
    ("getset", "GETSET", "name value", "raw"),
    ("getdel", "GETDEL", "name", "raw"),
    ("setnx", "SETNX", "name value", "bool"),
    ("incrby", "INCRBY", "name amount=1", "raw"),
    ("decrby", "DECRBY", "name amount=1", "raw"),
    ("incrbyfloat", "INCRBYFLOAT", "name amount=1.0", "float"),
    ("strlen", "STRLEN", "name", "raw"),
    ("getrange", "GETRANGE", "key start end", "raw"),
    ("setrange", "SETRANGE", "name offset value", "raw"),
    ("append", "APPEND", "key value", "raw"),
    # keys
    ("delete", "DEL", "*names", "raw"),
    ("unlink", "UNLINK", "*names", "raw"),
    ("exists", "EXISTS", "*names", "raw"),
    ("touch", "TOUCH", "*names", "raw"),
    ("ttl", "TTL", "name", "raw"),
    ("pttl", "PTTL", "name", "raw"),
    ("persist", "PERSIST", "name", "bool"),
    ("type", "TYPE", "name", "raw"),
    ("rename", "RENAME", "src dst", "bool"),
    ("renamenx", "RENAMENX", "src dst", "bool"),
    ("randomkey", "RANDOMKEY", "", "raw"),
    ("keys", "KEYS", "pattern=*", "raw"),
    ("dbsize", "DBSIZE", "", "raw"),
    ("flushall", "FLUSHALL", "", "bool"),
    ("flushdb", "FLUSHDB", "", "bool"),
    ("echo", "ECHO", "value", "raw"),
    ("publish", "PUBLISH", "channel message", "raw"),
    # hashes
    ("hget", "HGET", "name key", "raw"),
    ("hdel", "HDEL", "name *keys", "raw"),
    ("hincrby", "HINCRBY", "name key amount=1", "raw"),
    ("hincrbyfloat", "HINCRBYFLOAT", "name key amount=1.0", "float"),
    ("hkeys", "HKEYS", "name", "raw"),
    ("hvals", "HVALS", "name", "raw"),
    ("hlen", "HLEN", "name", "raw"),
    ("hexists", "HEXISTS", "name key", "bool"),
    ("hsetnx", "HSETNX", "name key value", "raw"),
    ("hstrlen", "HSTRLEN", "name key", "raw"),
    # lists
    ("lpush", "LPUSH", "name *values", "raw"),
    ("rpush", "RPUSH", "name *values", "raw"),
    ("lrange", "LRANGE", "name start end", "raw"),
    ("llen", "LLEN", "name", "raw"),
    ("lindex", "LINDEX", "name index", "raw"),
    ("lset", "LSET", "name index value", "bool"),
    ("ltrim", "LTRIM", "name start end", "bool"),
    ("lrem", "LREM", "name count value", "raw"),
    ("linsert", "LINSERT", "name where refvalue value", "raw"),
    ("rpoplpush", "RPOPLPUSH", "src dst", "raw"),
    # sets
    ("sadd", "SADD", "name *values", "raw"),
    ("srem", "SREM", "name *values", "raw"),
    ("smembers", "SMEMBERS", "name", "set"),
    ("sismember", "SISMEMBER", "name value", "raw"),
    ("scard", "SCARD", "name", "raw"),
    ("smove", "SMOVE", "src dst value", "bool"),
    ("sinter", "SINTER", "*keys", "set"),
    ("sunion", "SUNION", "*keys", "set"),
    ("sdiff", "SDIFF", "*keys", "set"),
    # sorted sets
    ("zscore", "ZSCORE", "name value", "float"),
    ("zrem", "ZREM", "name *values", "raw"),
    ("zcard", "ZCARD", "name", "raw"),
    ("zincrby", "ZINCRBY", "name amount value", "float"),
    ("zcount", "ZCOUNT", "name min max", "raw"),
    ("zrank", "ZRANK", "name value", "raw"),
    ("zrevrank", "ZREVRANK", "name value", "raw"),
    # hyperloglog
    ("pfadd", "PFADD", "name *values", "raw"),
    ("pfcount", "PFCOUNT", "*sources", "raw"),
    ("pfmerge", "PFMERGE", "dest *sources", "bool"),
    # bitmaps
    ("setbit", "SETBIT", "name offset value", "raw"),
    ("getbit", "GETBIT", "name offset", "raw"),
]


def _simple(method: str, command: str, parameters: str, shape: str) -> Callable[..., Any]:
    """A data method that sends ``command`` with its arguments and shapes the reply."""
    head = command.encode()
    convert = SHAPES[shape]
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    defaults: list[tuple[int, str]] = []  # (position in args, default text)
    variadic = False
    for position, spec in enumerate(parameters.split()):
        if spec.startswith("*"):
            variadic = True
            params.append(inspect.Parameter(spec[1:], inspect.Parameter.VAR_POSITIONAL))
            continue
        name, _, default = spec.partition("=")
        if default:
            value: object = float(default) if "." in default else (
                int(default) if default.isdigit() else default)
            defaults.append((position, value))  # type: ignore[arg-type]
            params.append(inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                            default=value))
        else:
            params.append(inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD))
    fixed = len(parameters.split()) - variadic
    signature = inspect.Signature(params)

    if variadic or defaults:
        def call(self: DataMethods, *args: Any, **kwargs: Any) -> Any:
            if kwargs or (defaults and len(args) < fixed):
                bound = signature.bind(self, *args, **kwargs)
                bound.apply_defaults()
                args = bound.args[1:]
            return convert(self._run([head, *[_arg(a) for a in args]]))
    else:
        def call(self: DataMethods, *args: Any) -> Any:
            if len(args) != fixed:
                signature.bind(self, *args)  # the TypeError Python gives
            return convert(self._run([head, *[_arg(a) for a in args]]))

    call.__name__ = call.__qualname__ = method
    call.__signature__ = signature  # type: ignore[attr-defined]
    shown = {"raw": "", "bool": " -> bool", "float": " -> float", "set": " -> set"}.get(
        shape, "")
    call.__doc__ = f"{command} {parameters}{shown}: as redis-py's ``Redis.{method}``."
    return call


class DataMethods:
    """redis-py's data methods on the node's shared session (mixed into Node)."""

    engine: Engine
    _session: Session

    def _run(self, argv: list[bytes]) -> object:  # pragma: no cover - Node's
        raise NotImplementedError

    def execute_command(self, *args: Arg) -> object:  # pragma: no cover - Node's
        raise NotImplementedError

    def _durable(self) -> None:  # pragma: no cover - Node's
        raise NotImplementedError

    def ping(self) -> bool:
        """PING: True."""
        return self._run([b"PING"]) == b"PONG"

    # Strings. GET has a direct path (kvrepl.direct_reads, installed by Node): this is the
    # general one it falls back to; a plain SET goes through the engine's plain lane.
    def get(self, name: Arg) -> bytes | None:
        """GET: the value, or None."""
        return self.execute_command("GET", name)  # type: ignore[return-value]

    def set(self, name: Arg, value: Arg, ex: Expiry | None = None, px: Expiry | None = None,
            nx: bool = False, xx: bool = False, keepttl: bool = False, get: bool = False,
            exat: When | None = None, pxat: When | None = None) -> object:
        """SET with redis-py's keywords; expiries as numbers, timedelta (ex, px) or
        datetime (exat, pxat). True, or None when NX/XX refused; the old value with
        ``get=True``."""
        argv = [b"SET", name if type(name) is bytes else _arg(name),
                value if type(value) is bytes else _arg(value)]
        options = (ex is not None or px is not None or exat is not None or pxat is not None
                   or nx or xx or keepttl or get)
        if not options and self.engine.plain_lane.set(self._session, argv):
            self._durable()
            return True
        if options:
            if ex is not None:
                argv += [b"EX", _arg(_seconds(ex))]
            if px is not None:
                argv += [b"PX", _arg(_millis(px))]
            if exat is not None:
                argv += [b"EXAT", _arg(_unix_seconds(exat))]
            if pxat is not None:
                argv += [b"PXAT", _arg(_unix_millis(pxat))]
            if nx:
                argv.append(b"NX")
            if xx:
                argv.append(b"XX")
            if keepttl:
                argv.append(b"KEEPTTL")
            if get:
                argv.append(b"GET")
        return self._run(argv)

    def setex(self, name: Arg, time: Expiry, value: Arg) -> bool:
        """SETEX; ``time`` in seconds or a timedelta."""
        return bool(self.execute_command("SETEX", name, _seconds(time), value))

    def psetex(self, name: Arg, time_ms: Expiry, value: Arg) -> bool:
        """PSETEX; ``time_ms`` in milliseconds or a timedelta."""
        return bool(self.execute_command("PSETEX", name, _millis(time_ms), value))

    def getex(self, name: Arg, ex: Expiry | None = None, px: Expiry | None = None,
              exat: When | None = None, pxat: When | None = None,
              persist: bool = False) -> bytes | None:
        """GETEX with redis-py's keywords."""
        args: list[object] = ["GETEX", name]
        for option, value, convert in (("EX", ex, _seconds), ("PX", px, _millis),
                                       ("EXAT", exat, _unix_seconds),
                                       ("PXAT", pxat, _unix_millis)):
            if value is not None:
                args += [option, convert(value)]
        if persist:
            args.append("PERSIST")
        return self.execute_command(*args)  # type: ignore[return-value]

    def mget(self, keys: Iterable[Arg] | Arg, *args: Arg) -> list[bytes | None]:
        """MGET: ``mget(["a", "b"])`` or ``mget("a", "b")``."""
        names = [keys] if isinstance(keys, (bytes, str)) else list(keys)  # type: ignore
        return self.execute_command("MGET", *names, *args)  # type: ignore[return-value]

    def mset(self, mapping: Mapping[Arg, Arg]) -> bool:
        """MSET from a mapping: True."""
        return bool(self.execute_command("MSET", *[x for kv in mapping.items() for x in kv]))

    def msetnx(self, mapping: Mapping[Arg, Arg]) -> bool:
        """MSETNX from a mapping: whether all were set."""
        return bool(self.execute_command("MSETNX", *[x for kv in mapping.items() for x in kv]))

    def incr(self, name: Arg, amount: int = 1) -> int:
        """INCRBY ``amount``: the new value."""
        return self.execute_command("INCRBY", name, amount)  # type: ignore[return-value]

    def decr(self, name: Arg, amount: int = 1) -> int:
        """DECRBY ``amount``: the new value."""
        return self.execute_command("DECRBY", name, amount)  # type: ignore[return-value]

    def expire(self, name: Arg, time: Expiry) -> bool:
        """EXPIRE; ``time`` in seconds or a timedelta."""
        return bool(self.execute_command("EXPIRE", name, _seconds(time)))

    def pexpire(self, name: Arg, time: Expiry) -> bool:
        """PEXPIRE; ``time`` in milliseconds or a timedelta."""
        return bool(self.execute_command("PEXPIRE", name, _millis(time)))

    def expireat(self, name: Arg, when: When) -> bool:
        """EXPIREAT; ``when`` a Unix time in seconds or a datetime."""
        return bool(self.execute_command("EXPIREAT", name, _unix_seconds(when)))

    def pexpireat(self, name: Arg, when: When) -> bool:
        """PEXPIREAT; ``when`` a Unix time in milliseconds or a datetime."""
        return bool(self.execute_command("PEXPIREAT", name, _unix_millis(when)))

    # Hashes.
    def hset(self, name: Arg, key: Arg | None = None, value: Arg | None = None,
             mapping: Mapping[Arg, Arg] | None = None) -> int:
        """HSET one field (``key``, ``value``) and/or a ``mapping``: how many were added."""
        if key is None and not mapping:
            raise DataError("'hset' with no key value pairs")
        pairs: list[object] = [] if key is None else [key, value]
        if mapping:
            pairs += [x for kv in mapping.items() for x in kv]
        return self.execute_command("HSET", name, *pairs)  # type: ignore[return-value]

    def hgetall(self, name: Arg) -> dict[bytes, bytes]:
        """HGETALL as a dict."""
        reply = self.execute_command("HGETALL", name)
        if isinstance(reply, dict):
            return dict(reply)
        return dict(zip(reply[::2], reply[1::2], strict=False))  # type: ignore[index]

    def hmget(self, name: Arg, keys: Iterable[Arg] | Arg, *args: Arg) -> list[bytes | None]:
        """HMGET: ``hmget("h", ["a", "b"])`` or ``hmget("h", "a", "b")``."""
        fields = [keys] if isinstance(keys, (bytes, str)) else list(keys)  # type: ignore
        return self.execute_command("HMGET", name, *fields, *args)  # type: ignore

    # Lists.
    def lpop(self, name: Arg, count: int | None = None) -> object:
        """LPOP: a value (None when empty), or a list with ``count``."""
        return self.execute_command("LPOP", name, *([] if count is None else [count]))

    def rpop(self, name: Arg, count: int | None = None) -> object:
        """RPOP: a value (None when empty), or a list with ``count``."""
        return self.execute_command("RPOP", name, *([] if count is None else [count]))

    def lmove(self, first_list: Arg, second_list: Arg, src: str = "LEFT",
              dest: str = "RIGHT") -> bytes | None:
        """LMOVE: the element moved."""
        return self.execute_command("LMOVE", first_list, second_list, src, dest)  # type: ignore

    def lpos(self, name: Arg, value: Arg, rank: int | None = None, count: int | None = None,
             maxlen: int | None = None) -> object:
        """LPOS with redis-py's keywords."""
        args: list[object] = ["LPOS", name, value]
        for option, given in (("RANK", rank), ("COUNT", count), ("MAXLEN", maxlen)):
            if given is not None:
                args += [option, given]
        return self.execute_command(*args)

    # Sets.
    def smismember(self, name: Arg, values: Iterable[Arg] | Arg, *args: Arg) -> list[int]:
        """SMISMEMBER: 1 or 0 for each value."""
        members = [values] if isinstance(values, (bytes, str)) else list(values)  # type: ignore
        return self.execute_command("SMISMEMBER", name, *members, *args)  # type: ignore

    def spop(self, name: Arg, count: int | None = None) -> object:
        """SPOP: a member, or a list with ``count``."""
        return self.execute_command("SPOP", name, *([] if count is None else [count]))

    def srandmember(self, name: Arg, number: int | None = None) -> object:
        """SRANDMEMBER: a member, or a list with ``number``."""
        return self.execute_command("SRANDMEMBER", name, *([] if number is None else [number]))

    # Sorted sets.
    def zadd(self, name: Arg, mapping: Mapping[Arg, float], nx: bool = False, xx: bool = False,
             ch: bool = False, incr: bool = False, gt: bool = False, lt: bool = False) -> object:
        """ZADD from a member -> score mapping with redis-py's flags; with ``incr`` the new
        score (float), else how many were added (changed, with ``ch``)."""
        flags = [f for f, on in (("NX", nx), ("XX", xx), ("GT", gt), ("LT", lt), ("CH", ch),
                                 ("INCR", incr)) if on]
        pairs = [x for member, score in mapping.items() for x in (score, member)]
        reply = self.execute_command("ZADD", name, *flags, *pairs)
        return _float(reply) if incr else reply

    def zrange(self, name: Arg, start: int, end: int, desc: bool = False,
               withscores: bool = False) -> list:
        """ZRANGE by rank; ``withscores`` gives (member, score) pairs."""
        args: list[object] = ["ZRANGE", name, start, end]
        if desc:
            args.append("REV")
        if withscores:
            args.append("WITHSCORES")
        reply = self.execute_command(*args)
        return _pairs(reply) if withscores else reply  # type: ignore[return-value]

    def zrevrange(self, name: Arg, start: int, end: int, withscores: bool = False) -> list:
        """ZREVRANGE; ``withscores`` gives (member, score) pairs."""
        return self.zrange(name, start, end, desc=True, withscores=withscores)

    def zrangebyscore(self, name: Arg, min: float | str, max: float | str,
                      start: int | None = None, num: int | None = None,
                      withscores: bool = False) -> list:
        """ZRANGEBYSCORE with redis-py's keywords (``start``/``num`` for LIMIT)."""
        args: list[object] = ["ZRANGEBYSCORE", name, min, max]
        if withscores:
            args.append("WITHSCORES")
        if start is not None and num is not None:
            args += ["LIMIT", start, num]
        reply = self.execute_command(*args)
        return _pairs(reply) if withscores else reply  # type: ignore[return-value]

    def zmscore(self, key: Arg, members: Iterable[Arg]) -> list[float | None]:
        """ZMSCORE: a score or None for each member."""
        return SHAPES["floats"](self.execute_command("ZMSCORE", key, *members))

    def zpopmin(self, name: Arg, count: int | None = None) -> list[tuple[bytes, float]]:
        """ZPOPMIN: (member, score) pairs."""
        return _pairs(self.execute_command("ZPOPMIN", name, *([] if count is None else [count])))

    def zpopmax(self, name: Arg, count: int | None = None) -> list[tuple[bytes, float]]:
        """ZPOPMAX: (member, score) pairs."""
        return _pairs(self.execute_command("ZPOPMAX", name, *([] if count is None else [count])))

    # Bitmaps.
    def bitcount(self, key: Arg, start: int | None = None, end: int | None = None,
                 mode: str | None = None) -> int:
        """BITCOUNT, optionally over a range (``mode`` BYTE or BIT)."""
        args: list[object] = ["BITCOUNT", key]
        if start is not None and end is not None:
            args += [start, end, *([mode] if mode else [])]
        return self.execute_command(*args)  # type: ignore[return-value]

    def bitpos(self, key: Arg, bit: int, start: int | None = None, end: int | None = None,
               mode: str | None = None) -> int:
        """BITPOS, optionally from ``start`` (to ``end``)."""
        args: list[object] = ["BITPOS", key, bit]
        if start is not None:
            args.append(start)
            if end is not None:
                args += [end, *([mode] if mode else [])]
        return self.execute_command(*args)  # type: ignore[return-value]

    # Geo.
    def geoadd(self, name: Arg, values: Iterable[Arg], nx: bool = False, xx: bool = False,
               ch: bool = False) -> int:
        """GEOADD; ``values`` is flat: longitude, latitude, member, ... (redis-py's form)."""
        flags = [f for f, on in (("NX", nx), ("XX", xx), ("CH", ch)) if on]
        return self.execute_command("GEOADD", name, *flags, *values)  # type: ignore

    def geodist(self, name: Arg, place1: Arg, place2: Arg, unit: str | None = None
                ) -> float | None:
        """GEODIST as a float (None when a member is missing)."""
        return _float(self.execute_command("GEODIST", name, place1, place2,
                                           *([unit] if unit else [])))

    def geohash(self, name: Arg, *values: Arg) -> list[str | None]:
        """Geohashes as ``str``, as redis-py gives them."""
        reply = self.execute_command("GEOHASH", name, *values)
        return [None if text is None else text.decode() for text in reply]  # type: ignore

    def geopos(self, name: Arg, *values: Arg) -> list[tuple[float, float] | None]:
        """GEOPOS as (longitude, latitude) float pairs."""
        reply = self.execute_command("GEOPOS", name, *values)
        return [None if pos is None else (float(pos[0]), float(pos[1]))
                for pos in reply]  # type: ignore[union-attr]

    def geosearch(self, name: Arg, member: Arg | None = None, longitude: float | None = None,
                  latitude: float | None = None, unit: str = "m", radius: float | None = None,
                  width: float | None = None, height: float | None = None,
                  sort: str | None = None, count: int | None = None, any: bool = False,
                  withcoord: bool = False, withdist: bool = False,
                  withhash: bool = False) -> list:
        """GEOSEARCH with redis-py's keywords; with WITH* options each result is
        ``[member, dist (float), hash (int), (lon, lat)]`` for the options given."""
        args: list[object] = ["GEOSEARCH", name]
        if member is not None:
            args += ["FROMMEMBER", member]
        if longitude is not None and latitude is not None:
            args += ["FROMLONLAT", longitude, latitude]
        if radius is not None:
            args += ["BYRADIUS", radius, unit]
        if width is not None and height is not None:
            args += ["BYBOX", width, height, unit]
        if sort:
            args.append(sort.upper())
        if count is not None:
            args += ["COUNT", count, *(["ANY"] if any else [])]
        elif any:
            args.append("ANY")  # Redis answers that ANY needs COUNT
        for option, on in (("WITHDIST", withdist), ("WITHCOORD", withcoord),
                           ("WITHHASH", withhash)):
            if on:
                args.append(option)
        reply = self.execute_command(*args)
        if not (withdist or withcoord or withhash):
            return reply  # type: ignore[return-value]
        casts: list = [lambda member: member]
        if withdist:
            casts.append(float)
        if withhash:
            casts.append(int)
        if withcoord:
            casts.append(lambda pos: (float(pos[0]), float(pos[1])))
        return [[cast(value) for cast, value in zip(casts, item, strict=True)]
                for item in reply]  # type: ignore[union-attr]


for _spec in SIMPLE:
    setattr(DataMethods, _spec[0], _simple(*_spec))
del _spec


# redis-py's methods whose arguments and replies have many forms (streams' entries and
# groups, BITFIELD's operations, GEORADIUS's options): run as redis-py runs them, so that
# keywords, input checks and reply shapes are its own and cannot drift from it.
BORROWED: list[tuple[type, str]] = [
    *[(StreamCommands, name) for name in (
        "xadd", "xlen", "xrange", "xrevrange", "xread", "xreadgroup", "xack", "xdel",
        "xtrim", "xpending", "xpending_range", "xclaim", "xautoclaim", "xgroup_create",
        "xgroup_createconsumer", "xgroup_delconsumer", "xgroup_destroy", "xgroup_setid",
        "xinfo_stream", "xinfo_groups", "xinfo_consumers")],
    (BasicKeyCommands, "bitop"), (BasicKeyCommands, "bitfield"),
    (BasicKeyCommands, "bitfield_ro"),
    (GeoCommands, "georadius"), (GeoCommands, "georadiusbymember"),
    (GeoCommands, "geosearchstore"),
]


@functools.cache
def _callbacks() -> Any:
    """redis-py's RESP2 reply callbacks: the legacy shapes its clients give by default
    (a client's own table; nothing connects)."""
    return redis.Redis(protocol=2).response_callbacks


def _resp2(value: object) -> object:
    """A data method's reply as redis-py reads it over RESP2: maps as flat arrays, OK as
    its status (what its callbacks expect)."""
    if value is True:
        return b"OK"
    if type(value) is dict:
        return [item for key, inner in value.items() for item in (key, _resp2(inner))]
    if type(value) is list:
        return [_resp2(item) for item in value]
    return value


class _AsRedisPy(BasicKeyCommands, GeoCommands, StreamCommands):
    """What redis-py's command methods ask of their client (``execute_command``, then its
    reply callback, and their own helpers), served by a node's shared session."""

    def __init__(self, node: DataMethods) -> None:
        self.node = node

    def execute_command(self, *args: Any, **options: Any) -> Any:
        name = args[0]
        argv = (*name.split(), *args[1:]) if " " in name else args  # "XGROUP CREATE"
        reply = _resp2(self.node.execute_command(*argv))
        options.pop("keys", None)  # (for redis-py's client-side cache)
        callback = _callbacks().get(name)
        return reply if callback is None else callback(reply, **options)


def _borrowed(source: type, method: str) -> Callable[..., Any]:
    """Data method ``method`` as redis-py's ``source.method`` on the node's session; a
    plain call cannot wait (``block=`` answers at once, as ``execute_command`` does):
    ``await node.execute_command_async("XREAD", "BLOCK", ...)`` waits."""
    original = getattr(source, method)

    def call(self: DataMethods, *args: Any, **kwargs: Any) -> Any:
        return original(_AsRedisPy(self), *args, **kwargs)

    call.__name__ = call.__qualname__ = method
    call.__signature__ = inspect.signature(original)  # type: ignore[attr-defined]
    call.__doc__ = (f"As redis-py's ``Redis.{method}``: its keywords, input checks and reply "
                    "shapes (a plain call cannot wait: see execute_command_async).")
    return call


for _source, _name in BORROWED:
    setattr(DataMethods, _name, _borrowed(_source, _name))
del _source, _name
