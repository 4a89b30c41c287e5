"""The embedded API: a node an application owns, with plain synchronous data methods.

    async with kvrepl.Master(port=6379) as master:   # port is optional: embedded only
        master.set(b"k", b"v")
        assert master.get(b"k") == b"v"

Data methods mirror redis-py's names, keywords and return shapes (``set`` returns True,
``hgetall`` a dict) but are plain calls: trio runs one thread, so a call that mutates the
store is atomic. Only what waits is ``async``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import TracebackType

import trio

from kvrepl.commands.core import Block, Engine, Session
from kvrepl.config import Config
from kvrepl.errors import ReplyError
from kvrepl.protocol.replies import NULL_ARRAY, OK, Status
from kvrepl.server import Server
from kvrepl.server.cron import run_cron

Arg = bytes | str | int | float


def _arg(value: Arg) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, float):
        return repr(value).encode()
    return str(value).encode()


def _python(reply: object) -> object:
    """A reply value as redis-py would hand it over (errors raised)."""
    kind = type(reply)
    if kind is bytes or kind is int or reply is None:
        return reply
    if reply is OK:
        return True
    if isinstance(reply, ReplyError):
        raise reply
    if reply is NULL_ARRAY:
        return None
    if kind is Status:
        return bytes(reply)
    if kind is list:
        return [_python(item) for item in reply]
    return reply


class Node:
    """A kvrepl node: an engine, its periodic work and, given a ``port``, a TCP server.

    Use it as an async context manager; leaving the block stops everything it started.
    """

    def __init__(self, *, port: int | None = None, config: Config | None = None,
                 **options: object) -> None:
        self.config = config or Config(save=(), **options)
        if port is not None:
            self.config.port = port
        self.engine = Engine(self.config)
        self.serve_tcp = port is not None
        self.server: Server | None = None
        self._session: Session = self.engine.new_session()
        self._nursery: trio.Nursery | None = None
        self._nursery_manager: object | None = None

    @property
    def port(self) -> int | None:
        """The TCP port the node listens on (the chosen one when started with port=0)."""
        return self.server.port if self.server is not None else None

    async def __aenter__(self) -> Node:
        self._nursery_manager = trio.open_nursery()
        self._nursery = await self._nursery_manager.__aenter__()
        try:
            await self._start(self._nursery)
        except BaseException:
            self._nursery.cancel_scope.cancel()
            await self._nursery_manager.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> bool | None:
        assert self._nursery is not None and self._nursery_manager is not None
        self._nursery.cancel_scope.cancel()
        return await self._nursery_manager.__aexit__(exc_type, exc, tb)

    async def aclose(self) -> None:
        """Stop the node's tasks (what leaving ``async with`` does)."""
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def _start(self, nursery: trio.Nursery) -> None:
        if self.serve_tcp:
            self.server = Server(self.engine)
            await nursery.start(self.server.serve)
        else:
            nursery.start_soon(run_cron, self.engine)

    # -- generic access ------------------------------------------------------------------
    def execute_command(self, *args: Arg) -> object:
        """Run any command, e.g. ``node.execute_command("ZADD", "z", 1, "a")``."""
        return self._run([a if type(a) is bytes else _arg(a) for a in args])

    def _run(self, argv: list[bytes]) -> object:
        reply = self.engine.execute(self._session, argv)
        kind = type(reply)
        if kind is bytes or kind is int or reply is None:
            return reply
        if kind is Block:
            # A plain call cannot wait: behave like the command inside MULTI.
            reply = reply.timeout_reply
        return _python(reply)

    def select(self, db: int) -> None:
        """Make ``db`` the database the data methods work on."""
        self.execute_command("SELECT", db)

    # -- strings -------------------------------------------------------------------------
    def get(self, name: Arg) -> bytes | None:
        key = name if type(name) is bytes else _arg(name)
        value = self._session.db.lookup(key)
        if value is None or type(value) is bytes:
            return value
        return self.execute_command("GET", key)  # raises WRONGTYPE like Redis

    def set(self, name: Arg, value: Arg, ex: int | None = None, px: int | None = None,
            nx: bool = False, xx: bool = False, keepttl: bool = False, get: bool = False,
            exat: int | None = None, pxat: int | None = None) -> object:
        argv = [b"SET", name if type(name) is bytes else _arg(name),
                value if type(value) is bytes else _arg(value)]
        if ex is not None:
            argv += [b"EX", _arg(ex)]
        if px is not None:
            argv += [b"PX", _arg(px)]
        if exat is not None:
            argv += [b"EXAT", _arg(exat)]
        if pxat is not None:
            argv += [b"PXAT", _arg(pxat)]
        if nx:
            argv.append(b"NX")
        if xx:
            argv.append(b"XX")
        if keepttl:
            argv.append(b"KEEPTTL")
        if get:
            argv.append(b"GET")
        return self._run(argv)

    def mget(self, keys: Iterable[Arg]) -> list[bytes | None]:
        return self.execute_command("MGET", *keys)

    def mset(self, mapping: Mapping[Arg, Arg]) -> bool:
        return self.execute_command("MSET", *[x for kv in mapping.items() for x in kv])

    def incr(self, name: Arg, amount: int = 1) -> int:
        return self.execute_command("INCRBY", name, amount)

    def decr(self, name: Arg, amount: int = 1) -> int:
        return self.execute_command("DECRBY", name, amount)

    def append(self, name: Arg, value: Arg) -> int:
        return self.execute_command("APPEND", name, value)

    # -- keys ----------------------------------------------------------------------------
    def delete(self, *names: Arg) -> int:
        return self.execute_command("DEL", *names)

    def exists(self, *names: Arg) -> int:
        return self.execute_command("EXISTS", *names)

    def expire(self, name: Arg, seconds: int) -> bool:
        return bool(self.execute_command("EXPIRE", name, seconds))

    def pexpire(self, name: Arg, milliseconds: int) -> bool:
        return bool(self.execute_command("PEXPIRE", name, milliseconds))

    def ttl(self, name: Arg) -> int:
        return self.execute_command("TTL", name)

    def pttl(self, name: Arg) -> int:
        return self.execute_command("PTTL", name)

    def persist(self, name: Arg) -> bool:
        return bool(self.execute_command("PERSIST", name))

    def type(self, name: Arg) -> bytes:
        return self.execute_command("TYPE", name)

    def keys(self, pattern: Arg = "*") -> list[bytes]:
        return self.execute_command("KEYS", pattern)

    def dbsize(self) -> int:
        return self.execute_command("DBSIZE")

    def flushall(self) -> bool:
        return self.execute_command("FLUSHALL")

    def flushdb(self) -> bool:
        return self.execute_command("FLUSHDB")

    # -- hashes --------------------------------------------------------------------------
    def hset(self, name: Arg, key: Arg | None = None, value: Arg | None = None,
             mapping: Mapping[Arg, Arg] | None = None) -> int:
        pairs: list[Arg] = [] if key is None else [key, value]  # type: ignore[list-item]
        if mapping:
            pairs += [x for kv in mapping.items() for x in kv]
        return self.execute_command("HSET", name, *pairs)

    def hget(self, name: Arg, key: Arg) -> bytes | None:
        return self.execute_command("HGET", name, key)

    def hgetall(self, name: Arg) -> dict[bytes, bytes]:
        reply = self.execute_command("HGETALL", name)
        return dict(reply) if isinstance(reply, dict) else dict(zip(reply[::2], reply[1::2], strict=False))

    def hdel(self, name: Arg, *keys: Arg) -> int:
        return self.execute_command("HDEL", name, *keys)

    def hincrby(self, name: Arg, key: Arg, amount: int = 1) -> int:
        return self.execute_command("HINCRBY", name, key, amount)

    # -- lists ---------------------------------------------------------------------------
    def lpush(self, name: Arg, *values: Arg) -> int:
        return self.execute_command("LPUSH", name, *values)

    def rpush(self, name: Arg, *values: Arg) -> int:
        return self.execute_command("RPUSH", name, *values)

    def lpop(self, name: Arg, count: int | None = None) -> object:
        return self.execute_command("LPOP", name, *([] if count is None else [count]))

    def rpop(self, name: Arg, count: int | None = None) -> object:
        return self.execute_command("RPOP", name, *([] if count is None else [count]))

    def lrange(self, name: Arg, start: int, end: int) -> list[bytes]:
        return self.execute_command("LRANGE", name, start, end)

    def llen(self, name: Arg) -> int:
        return self.execute_command("LLEN", name)

    # -- sets ----------------------------------------------------------------------------
    def sadd(self, name: Arg, *values: Arg) -> int:
        return self.execute_command("SADD", name, *values)

    def srem(self, name: Arg, *values: Arg) -> int:
        return self.execute_command("SREM", name, *values)

    def smembers(self, name: Arg) -> set[bytes]:
        return set(self.execute_command("SMEMBERS", name))

    def sismember(self, name: Arg, value: Arg) -> bool:
        return bool(self.execute_command("SISMEMBER", name, value))

    def scard(self, name: Arg) -> int:
        return self.execute_command("SCARD", name)

    # -- sorted sets ---------------------------------------------------------------------
    def zadd(self, name: Arg, mapping: Mapping[Arg, float], nx: bool = False, xx: bool = False,
             ch: bool = False, incr: bool = False, gt: bool = False, lt: bool = False) -> object:
        flags = [f for f, on in (("NX", nx), ("XX", xx), ("GT", gt), ("LT", lt), ("CH", ch),
                                 ("INCR", incr)) if on]
        pairs = [x for member, score in mapping.items() for x in (score, member)]
        return self.execute_command("ZADD", name, *flags, *pairs)

    def zscore(self, name: Arg, value: Arg) -> float | None:
        reply = self.execute_command("ZSCORE", name, value)
        return None if reply is None else float(reply)

    def zrange(self, name: Arg, start: int, end: int, withscores: bool = False) -> list:
        args: list[Arg] = ["ZRANGE", name, start, end]
        if withscores:
            args.append("WITHSCORES")
        reply = self.execute_command(*args)
        if not withscores:
            return reply
        if reply and isinstance(reply[0], list):
            return [(m, float(s)) for m, s in reply]
        return [(reply[i], float(reply[i + 1])) for i in range(0, len(reply), 2)]

    def zrem(self, name: Arg, *values: Arg) -> int:
        return self.execute_command("ZREM", name, *values)

    def zcard(self, name: Arg) -> int:
        return self.execute_command("ZCARD", name)


class Master(Node):
    """A node that accepts writes. Replicas follow it (replication lands with issue #4)."""
