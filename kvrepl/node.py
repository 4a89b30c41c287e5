"""The embedded API: a node an application owns, with plain synchronous data methods.

    async with kvrepl.Master(port=6379) as master:   # port is optional: embedded only
        master.set(b"k", b"v")
        assert master.get(b"k") == b"v"

Data methods mirror redis-py's names, keywords and return shapes (``set`` returns True,
``hgetall`` a dict) but are plain calls: trio runs one thread, so a call that mutates the
store is atomic. Only what waits is ``async``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from functools import partial
from types import TracebackType

import trio
import trio.testing

from kvrepl import persistence
from kvrepl.acl import SUPERUSER
from kvrepl.commands.core import Block, Engine, Session
from kvrepl.commands.replication import StartReplication, WaitReplicas
from kvrepl.config import Config
from kvrepl.errors import ReplicaPanic, ReplyError, WriteSkipped
from kvrepl.protocol.replies import NULL_ARRAY, OK, Status
from kvrepl.replication.master import MasterReplication, new_replid
from kvrepl.replication.replica import ReplicaOf
from kvrepl.server import Server, tls
from kvrepl.server.cron import run_cron
from kvrepl.server.server import set_keepalive

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


def _holds(err: BaseException, wanted: BaseException) -> bool:
    """``err`` is ``wanted`` or an exception group that has it (Python 3.10 has no
    BaseExceptionGroup built in)."""
    return err is wanted or any(_holds(inner, wanted)
                                for inner in getattr(err, "exceptions", ()))


class Change(tuple):
    """One write as it was propagated: ``(db, command, args)``."""

    __slots__ = ()

    def __new__(cls, db: int, command: bytes, args: tuple[bytes, ...]) -> Change:
        return tuple.__new__(cls, (db, command, args))

    db = property(lambda self: self[0])
    command = property(lambda self: self[1])
    args = property(lambda self: self[2])


class ChangesOverflow(Exception):
    """A ``changes()`` consumer fell more than its buffer behind; changes were dropped."""


class ChangeStream:
    """``async for change in node.changes()``: every write the node applies, in order.

    The buffer is bounded: a consumer that falls ``buffer`` changes behind is cut off and
    its iteration raises :class:`ChangesOverflow` after the changes it already had, so a
    slow consumer never grows the node's memory.

    On a replica, a command of the master's stream that fails here (one kvrepl does not
    know, a wrong type only this replica has...) is a write this node did not apply: the
    iteration raises :class:`kvrepl.WriteSkipped` at its place among the changes. The
    stream stays usable: iterate again to get the changes after it.
    """

    def __init__(self, engine: Engine, buffer: int) -> None:
        self._engine = engine
        self._send, self._receive = trio.open_memory_channel(buffer)
        self.overflowed = False
        engine.propagate_listeners.append(self._listen)
        engine.skipped_listeners.append(self._skipped)

    def _listen(self, db: int, argv: list[bytes]) -> None:
        try:
            self._send.send_nowait(Change(db, argv[0], tuple(argv[1:])))
        except trio.WouldBlock:
            self.overflowed = True
            self._detach()

    def _skipped(self, skipped: WriteSkipped) -> None:
        try:
            self._send.send_nowait(skipped)
        except trio.WouldBlock:
            self.overflowed = True
            self._detach()

    def _detach(self) -> None:
        if self._listen in self._engine.propagate_listeners:
            self._engine.propagate_listeners.remove(self._listen)
        if self._skipped in self._engine.skipped_listeners:
            self._engine.skipped_listeners.remove(self._skipped)
        self._send.close()

    def __aiter__(self) -> ChangeStream:
        return self

    async def __anext__(self) -> Change:
        try:
            item = await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            if self.overflowed:
                raise ChangesOverflow(
                    "changes() consumer fell behind its buffer; later changes were dropped"
                ) from None
            raise StopAsyncIteration from None
        if type(item) is WriteSkipped:  # each stream raises its own copy
            raise WriteSkipped(item.db, item.command, item.argv, item.error)
        return item

    async def aclose(self) -> None:
        """Stop receiving changes."""
        self._detach()


class Node:
    """A kvrepl node: an engine, its periodic work, replication, and (given a ``port``) a
    TCP server. Use it as an async context manager; leaving the block stops everything it
    started.

    Embedded nodes do not wait ``repl-diskless-sync-delay`` for more replicas before a full
    sync (pass ``repl_diskless_sync_delay=5`` for Redis's behaviour); a node built from a
    ``Config`` keeps what the config says.
    """

    def __init__(self, *, port: int | None = None, config: Config | None = None,
                 **options: object) -> None:
        if config is None:
            options.setdefault("repl_diskless_sync_delay", 0)
            config = Config(save=(), **options)
        self.config = config
        if port is not None:
            self.config.port = port
        self.engine = Engine(self.config)
        self.engine.node = self
        self.replication = MasterReplication(self.engine)
        self.serve_tcp = port is not None
        self.server = Server(self.engine)
        # kvrepl-server loads dir/dbfilename at startup (clients get -LOADING meanwhile);
        # an embedded node starts empty unless asked.
        self.load_dump = False
        self.following: ReplicaOf | None = None
        self._follow_scope: trio.CancelScope | None = None
        # Not in engine.sessions: the embedded API is no client connection (CLIENT LIST,
        # maxclients).
        self._session: Session = Session(self.engine)
        self._session.user = SUPERUSER  # the embedding application keeps every right
        self._session.authenticated = True
        self._nursery: trio.Nursery | None = None
        self._nursery_manager: object | None = None
        self._change_streams: list[ChangeStream] = []
        # Set when the node stopped as redis-server panics (see ReplicaPanic); leaving
        # ``async with`` raises it.
        self.failure: ReplicaPanic | None = None

    @property
    def skipped_writes(self) -> list[WriteSkipped]:
        """The last commands (up to 16, oldest first) of the master's stream that failed on
        this replica, so were not applied; ``INFO stats`` counts all of them as
        ``unexpected_error_replies``."""
        return list(self.engine.skipped_writes)

    @property
    def unexpected_error_replies(self) -> int:
        """How many commands of the master's stream failed here since the node started."""
        return self.engine.stats.unexpected_error_replies

    @property
    def port(self) -> int | None:
        """The TCP port the node listens on (the chosen one when started with port=0)."""
        return self.server.port if self.serve_tcp else None

    def changes(self, buffer: int = 10_000) -> ChangeStream:
        """Every write this node applies from now on, as propagated (see ChangeStream).
        Iteration ends when the node stops."""
        stream = ChangeStream(self.engine, buffer)
        self._change_streams.append(stream)
        return stream

    async def wait_for_replicas(self, count: int, timeout: float | None = None) -> int:
        """WAIT for the embedded API: until ``count`` replicas acknowledged every write made
        so far (or ``timeout`` seconds); returns how many did."""
        replication = self.replication
        offset = replication.master_repl_offset
        if replication.replicas_acked(offset) < count:
            replication.feed_raw(replication.getack_bytes)
            with trio.move_on_after(math.inf if timeout is None else timeout):
                while replication.replicas_acked(offset) < count:
                    await replication.acked.wait()
        return replication.replicas_acked(offset)

    # -- replication ---------------------------------------------------------------------
    def follow_address(self, host: str, port: int) -> None:
        """Become a replica of the master at ``host:port`` (REPLICAOF host port)."""

        async def connect() -> trio.abc.Stream:
            stream = await trio.open_tcp_stream(host, port)
            set_keepalive(stream, self.config.tcp_keepalive)
            if self.config.tls_replication:
                return await tls.wrap_client(stream, self.config)
            return stream

        self._follow(connect, (host, port))

    def follow_node(self, master: Node) -> None:
        """Become a replica of ``master``, a node in this program, over an in-memory stream:
        the same protocol bytes as over TCP, without a socket."""

        async def connect() -> trio.abc.Stream:
            if master._nursery is None:
                raise OSError("the master node is not running")
            # Lockstep: a send waits until the other side has read it, as a socket's would
            # once its buffer is full. An unbounded memory stream would let a full sync's
            # RDB pile up in memory whenever the replica reads slower than the master sends.
            ours, theirs = trio.testing.lockstep_stream_pair()
            master._nursery.start_soon(master.server.handle_stream, theirs)
            return ours

        self._follow(connect, ("in-process", master.port or 0), source=master)

    def _follow(self, connect: object, describe: tuple[str, int],
                source: Node | None = None) -> None:
        if self._nursery is None:
            raise RuntimeError("start the node (async with) before following a master")
        if self.following is not None:
            self._follow_scope.cancel()
        follower = ReplicaOf(self.engine, self.replication, connect, describe,
                             listening_port=self.port or 0)
        follower.source = source
        # A replica from now on: stale until the link is up (MASTERDOWN when not serving
        # stale data), read-only as configured, before its task first runs.
        self.engine.masterdown = True
        self.engine.read_only = self.config.replica_read_only
        scope = trio.CancelScope()
        self.following, self._follow_scope = follower, scope

        async def follow() -> None:
            with scope:
                try:
                    await follower.run()
                except ReplicaPanic as err:
                    self.failure = err
                    raise

        self._nursery.start_soon(follow)

    def stop_following(self) -> None:
        """REPLICAOF NO ONE: stop following and become a master that continues the history
        (replicas of the old master can partially resync with us)."""
        if self.following is None:
            return
        self._follow_scope.cancel()
        self.following = None
        engine = self.engine
        engine.read_only = False
        engine.masterdown = False
        engine.keyspace.expire_keys = True
        replication = self.replication
        replication.propagating = True
        replication.create_backlog_keeping_id()
        replication.replid2 = replication.replid
        replication.second_replid_offset = replication.master_repl_offset + 1
        replication.replid = new_replid()
        replication.feed.selected_db = -1
        replication.disconnect_replicas()

    async def _replication_cron(self) -> None:
        tick = 0
        while True:
            await trio.sleep(1)
            tick += 1
            self.replication.cron(tick)

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
        for stream in self._change_streams:
            stream._detach()  # consumers' async for loops end instead of waiting forever
        self._change_streams.clear()
        self._nursery.cancel_scope.cancel()
        try:
            return await self._nursery_manager.__aexit__(exc_type, exc, tb)
        except BaseException as err:
            # The node stopped itself: say why plainly, not as a group of task errors.
            if self.failure is not None and _holds(err, self.failure):
                raise self.failure from None
            raise

    async def aclose(self) -> None:
        """Stop the node's tasks (what leaving ``async with`` does)."""
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def _start(self, nursery: trio.Nursery) -> None:
        self.replication.nursery = nursery
        persistence.attach(self.engine, nursery)  # where BGSAVE jobs run
        if self.load_dump:
            await nursery.start(partial(persistence.load_on_startup, self.engine,
                                        stop_on_error=True))
        if self.serve_tcp:
            await nursery.start(self.server.serve)
        else:
            nursery.start_soon(run_cron, self.engine)
        nursery.start_soon(self._replication_cron)
        if self.config.replicaof is not None:
            self.follow_address(*self.config.replicaof)

    # -- generic access ------------------------------------------------------------------
    def execute_command(self, *args: Arg) -> object:
        """Run any command, e.g. ``node.execute_command("ZADD", "z", 1, "a")``."""
        return self._run([a if type(a) is bytes else _arg(a) for a in args])

    def _run(self, argv: list[bytes]) -> object:
        return self._convert(self.engine.execute(self._session, argv))

    def _convert(self, reply: object) -> object:
        """A reply as the embedded API returns it."""
        kind = type(reply)
        if kind is bytes or kind is int or reply is None:
            return reply
        if kind is Block:
            # A plain call cannot wait: behave like the command inside MULTI.
            reply = reply.timeout_reply
        elif kind is WaitReplicas:
            # Likewise WAIT answers at once; `await wait_for_replicas()` is the waiting form.
            reply = self.replication.replicas_acked(reply.offset)
        elif kind is StartReplication:
            raise ReplyError("ERR SYNC and PSYNC need a connection (replicas connect to a "
                             "port or use Replica(follow=...))")
        return _python(reply)

    def select(self, db: int) -> None:
        """Make ``db`` the database the data methods work on."""
        self.execute_command("SELECT", db)

    # -- strings -------------------------------------------------------------------------
    def get(self, name: Arg) -> bytes | None:
        key = name if type(name) is bytes else _arg(name)
        value = self._session.db.lookup(key)
        if value is None:
            self.engine.keyspace.misses += 1
            return None
        if type(value) is bytes:
            self.engine.keyspace.hits += 1
            return value
        if type(value) is bytearray:  # changed in place: the caller gets its own bytes
            self.engine.keyspace.hits += 1
            return bytes(value)
        return self.execute_command("GET", key)  # raises WRONGTYPE like Redis

    def set(self, name: Arg, value: Arg, ex: int | None = None, px: int | None = None,
            nx: bool = False, xx: bool = False, keepttl: bool = False, get: bool = False,
            exat: int | None = None, pxat: int | None = None) -> object:
        argv = [b"SET", name if type(name) is bytes else _arg(name),
                value if type(value) is bytes else _arg(value)]
        options = (ex is not None or px is not None or exat is not None or pxat is not None
                   or nx or xx or keepttl or get)
        if not options and self.engine.plain_lane.set(self._session, argv):
            return True
        if options:
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
        reply = self.engine.execute(self._session, argv)
        if reply is OK:  # the common answer, without _run's general conversion
            return True
        return self._convert(reply)

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

    # -- geo -----------------------------------------------------------------------------
    def geoadd(self, name: Arg, values: Iterable[Arg], nx: bool = False, xx: bool = False,
               ch: bool = False) -> int:
        """``values`` is flat: longitude, latitude, member, ... (redis-py's form)."""
        flags = [f for f, on in (("NX", nx), ("XX", xx), ("CH", ch)) if on]
        return self.execute_command("GEOADD", name, *flags, *values)

    def geodist(self, name: Arg, place1: Arg, place2: Arg, unit: str | None = None
                ) -> float | None:
        reply = self.execute_command("GEODIST", name, place1, place2, *([unit] if unit else []))
        return None if reply is None else float(reply)

    def geohash(self, name: Arg, *values: Arg) -> list[str | None]:
        """Geohashes as ``str``, as redis-py gives them."""
        reply = self.execute_command("GEOHASH", name, *values)
        return [None if text is None else text.decode() for text in reply]

    def geopos(self, name: Arg, *values: Arg) -> list[tuple[float, float] | None]:
        reply = self.execute_command("GEOPOS", name, *values)
        return [None if pos is None else (float(pos[0]), float(pos[1])) for pos in reply]

    def geosearch(self, name: Arg, member: Arg | None = None, longitude: float | None = None,
                  latitude: float | None = None, unit: str = "m", radius: float | None = None,
                  width: float | None = None, height: float | None = None,
                  sort: str | None = None, count: int | None = None, any: bool = False,
                  withcoord: bool = False, withdist: bool = False,
                  withhash: bool = False) -> list:
        """GEOSEARCH with redis-py's keywords; with WITH* options each result is
        ``[member, dist (float), hash (int), (lon, lat)]`` for the options given."""
        args: list[Arg] = ["GEOSEARCH", name]
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
            return reply
        casts: list = [lambda member: member]
        if withdist:
            casts.append(float)
        if withhash:
            casts.append(int)
        if withcoord:
            casts.append(lambda pos: (float(pos[0]), float(pos[1])))
        return [[cast(value) for cast, value in zip(casts, item, strict=True)]
                for item in reply]


class Master(Node):
    """A node that accepts writes; replicas (kvrepl or redis-server) follow it."""


class Replica(Node):
    """A read-only copy of a master: ``Replica(follow=master_node)`` in the same program
    (no socket), or ``Replica(follow=("host", 6379))`` over TCP, including a real Redis.

    Reads (``replica.get(...)``) are plain calls on the local copy.
    """

    def __init__(self, *, follow: Node | tuple[str, int], port: int | None = None,
                 config: Config | None = None, **options: object) -> None:
        super().__init__(port=port, config=config, **options)
        self.master = follow

    async def _start(self, nursery: trio.Nursery) -> None:
        await super()._start(nursery)
        if isinstance(self.master, Node):
            self.follow_node(self.master)
        else:
            self.follow_address(*self.master)

    async def wait_synced(self) -> None:
        """Wait until the link is up and, for an in-process master, until every write the
        master had made when this was called has been applied here."""
        follower = self.following
        if follower is None:
            raise RuntimeError("this node follows no master")
        await follower.synced.wait()
        if follower.source is not None:
            await follower.wait_offset(follower.source.replication.master_repl_offset)
