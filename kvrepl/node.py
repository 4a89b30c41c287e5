"""The embedded API: a node an application owns, with plain synchronous data methods.

    async with kvrepl.Master(port=6379) as master:   # port is optional: embedded only
        master.set(b"k", b"v")
        assert master.get(b"k") == b"v"

Data methods mirror redis-py's names, keywords and return shapes (``set`` returns True,
``hgetall`` a dict) but are plain calls: trio runs one thread, so a call that mutates the
store is atomic. Only what waits is ``async``.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import socket
import weakref
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import hiredis
import trio
import trio.testing

from kvrepl import persistence
from kvrepl.acl import SUPERUSER
from kvrepl.commands.core import Block, Engine, Session
from kvrepl.commands.dispatch import MISSED
from kvrepl.commands.plain import plain_session
from kvrepl.commands.replication import StartReplication, WaitReplicas
from kvrepl.config import ApplyError, Config, ConfigError, _check_directory
from kvrepl.direct_reads import direct_get
from kvrepl.errors import ReplicaPanic, ReplyError, WriteSkipped
from kvrepl.log import configure, logger
from kvrepl.methods import Arg, DataMethods, _arg
from kvrepl.protocol.replies import (
    NULL_ARRAY,
    OK,
    DeferredArray,
    DeferredMap,
    DeferredReply,
    DeferredSet,
    OrderedSet,
    Raw,
    Status,
)
from kvrepl.replication.cluster import Cluster, ClusterFollower
from kvrepl.replication.failover import Failover
from kvrepl.replication.master import MasterReplication, new_replid
from kvrepl.replication.replica import ReplicaOf
from kvrepl.server import Server, process, tls
from kvrepl.server.cron import run_cron
from kvrepl.server.server import set_keepalive

if TYPE_CHECKING:
    import redis
    import redis.asyncio

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
    if kind is list or kind is DeferredArray or kind is tuple:  # (a stream entry's fields)
        return [_python(item) for item in reply]
    if kind is DeferredSet:
        return OrderedSet(reply)
    if kind is dict or kind is DeferredMap:  # a map (XINFO, CONFIG GET, a script's...)
        return {key: _python(value) for key, value in reply.items()}
    if kind is Raw or kind is DeferredReply:  # encoded ahead (stream ranges): read back
        if not reply:
            return None  # no reply at all (CLIENT REPLY OFF's own)
        reader = hiredis.Reader(replyError=ReplyError)
        reader.feed(reply)
        value = reader.gets()
        if isinstance(value, ReplyError):
            raise value
        return value
    return reply


# Replies a server connection would await (a blocked command, WAIT, SYNC).
AWAITED_REPLIES = frozenset((Block, WaitReplicas, StartReplication))


def settle(node: Node, reply: object, *, refuse_forever: bool) -> object:
    """The reply a synchronous call gets for a reply the server would await: nothing can
    arrive while the caller holds the event loop, so a blocked command's data cannot come
    and no replica can acknowledge meanwhile.

    A blocking command gets its timeout reply now, WAIT how many replicas acknowledged so
    far. With ``refuse_forever`` (redis-py's in-process connections), one that would wait
    forever (timeout 0, data not there; WAIT 0 short of its count) is an error instead,
    as it would hang a real client."""
    kind = type(reply)
    if kind is Block:
        if refuse_forever and reply.timeout == 0:
            return ReplyError(
                "ERR a blocking command with timeout 0 would block the event loop forever: "
                "a synchronous in-process call cannot wait (give it a timeout)")
        return reply.timeout_reply
    if kind is WaitReplicas:
        acked = node.replication.replicas_acked(reply.offset)
        if refuse_forever and acked < reply.count and reply.timeout <= 0:
            return ReplyError(
                "ERR WAIT with timeout 0 would block the event loop forever: a synchronous "
                "in-process call cannot wait (give it a timeout, or await "
                "node.wait_for_replicas())")
        return acked
    if kind is StartReplication:
        return ReplyError("ERR SYNC and PSYNC need a connection (replicas connect to a "
                          "port or use Replica(follow=...))")
    return reply


def _names(keys: Iterable[Arg] | Arg) -> list[Arg]:
    """A key or several, as redis-py's blocking methods take them."""
    return [keys] if isinstance(keys, (bytes, str, int, float)) else list(keys)


def _popped(reply: object) -> tuple | None:
    return None if reply is None else tuple(reply)  # type: ignore[arg-type]


def _scored(reply: object) -> tuple | None:
    if reply is None:
        return None
    key, member, score = reply  # type: ignore[misc]
    return key, member, float(score)


def _holds(err: BaseException, wanted: BaseException) -> bool:
    """``err`` is ``wanted`` or an exception group that has it (Python 3.10 has no
    BaseExceptionGroup built in)."""
    return err is wanted or any(_holds(inner, wanted)
                                for inner in getattr(err, "exceptions", ()))


# Commands that would put the data methods' shared session in a mode of its own for good.
_TAKE_OVER = frozenset((b"subscribe", b"psubscribe", b"ssubscribe", b"monitor"))


class Change(tuple):
    """One write as it was propagated: ``(db, command, args)``."""

    __slots__ = ()

    def __new__(cls, db: int, command: bytes, args: tuple[bytes, ...]) -> Change:
        return tuple.__new__(cls, (db, command, args))

    db = property(lambda self: self[0], doc="The database index the write applies to.")
    command = property(lambda self: self[1], doc="The command name, as propagated (bytes).")
    args = property(lambda self: self[2], doc="The command's arguments (bytes).")


class ShardChange(Change):
    """A write of a followed cluster: ``(db, command, args, primary, slot)``, ``primary``
    the node id of the shard's primary it came from, ``slot`` its key's slot."""

    __slots__ = ()

    def __new__(cls, db: int, command: bytes, args: tuple[bytes, ...], primary: str = "",
                slot: int = -1) -> ShardChange:
        return tuple.__new__(cls, (db, command, args, primary, slot))

    primary = property(lambda self: self[3],
                       doc="The node id of the shard's primary the write came from.")
    slot = property(lambda self: self[4], doc="The cluster slot of the write's key.")


class ChangesOverflow(Exception):
    """A ``changes()`` consumer fell more than its buffer behind; changes were dropped."""


class ChangeStream:
    """``async for change in node.changes()``: every write the node applies, in order
    (``async with node.changes() as changes:`` stops receiving them when the block ends).

    The buffer is bounded: a consumer that falls ``buffer`` changes behind is cut off and
    its iteration raises :class:`ChangesOverflow` after the changes it already had, so a
    slow consumer never grows the node's memory.

    On a replica, a command of the master's stream that fails here (one kvrepl does not
    know, a wrong type only this replica has...) is a write this node did not apply: the
    iteration raises :class:`kvrepl.WriteSkipped` at its place among the changes. The
    stream stays usable: iterate again to get the changes after it.
    """

    def __init__(self, engine: Engine, buffer: int,
                 cluster: ClusterFollower | None = None) -> None:
        self._engine = engine
        self._cluster = cluster
        self._send, self._receive = trio.open_memory_channel(buffer)
        self.overflowed = False
        engine.propagate_listeners.append(self._listen)
        engine.skipped_listeners.append(self._skipped)

    def _listen(self, db: int, argv: list[bytes]) -> None:
        cluster = self._cluster
        if cluster is not None:
            primary, slot = cluster.origin_of(argv)
            change: Change = ShardChange(db, argv[0], tuple(argv[1:]), primary, slot)
        else:
            change = Change(db, argv[0], tuple(argv[1:]))
        try:
            self._send.send_nowait(change)
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

    async def __aenter__(self) -> ChangeStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

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


# An embedded node runs in the application's process: unless told, it leaves that process's
# title, its transparent huge pages and its fatal-signal handlers as they are.
_APPLICATION_PROCESS = {"set_proc_title": False, "disable_thp": False,
                        "crash_log_enabled": False}


class Node(DataMethods):
    """A kvrepl node: an engine, its periodic work, replication, and (given a ``port``) a
    TCP server. Use it as an async context manager; leaving the block stops everything it
    started.

    Configure it as a server: ``Master("redis.conf")`` reads a redis.conf-style file, and
    ``**options`` takes every option of redis.conf by its Python name, as its text form or
    its value (``save="60 1000"``, ``dir="/var/lib/app"``, ``dbfilename="app.rdb"``,
    ``requirepass="secret"``, ``maxclients=100``, ``replica_read_only=False``...; see
    :data:`kvrepl.config.OPTIONS`); options given with a file override it. ``config=`` takes
    a ready :class:`~kvrepl.Config` instead. ``port`` (0 for a free one) also serves the node
    over TCP; without it the node is reachable only in-process (``node.redis()``, the data
    methods, ``Replica(follow=node)``).

    Persistence as kvrepl-server's: a node told where its data lives (a config file, or a
    ``dir`` or ``dbfilename`` option; ``persist=True/False`` decides otherwise) loads that
    dump when it starts, saves on its ``save`` schedule, and saves when its ``async with``
    block ends if it has save points (redis-server's three by default; ``save=""`` for
    none). Other embedded nodes have no save points and touch no file.

    ``users`` are ACL users for the node's network clients (and ``node.redis()``
    connections, which log in as clients do): redis.conf ``user`` lines
    (``["alice on >secret ~app:* +@all", "default off"]``, the leading ``user`` optional)
    or a mapping of name to rules (``{"alice": "on >secret ~app:* +@read"}``, the rules a
    string or a list of rules). The data methods keep every right whatever the users.

    Embedded nodes do not wait ``repl-diskless-sync-delay`` for more replicas before a full
    sync (pass ``repl_diskless_sync_delay=5`` for Redis's behaviour), and leave the
    application's process as it is (``set_proc_title``, ``disable_thp`` and
    ``crash_log_enabled`` are no unless given); a node built from a file or a ``Config``
    keeps what it says. The process options (``pidfile``, ``supervised``, ``unixsocket``...)
    act as in kvrepl-server; ``logfile`` and ``syslog_enabled``, when given, send the
    ``kvrepl`` logger there.
    """

    def __init__(self, config_file: str | os.PathLike[str] | None = None, *,
                 port: int | None = None, config: Config | None = None,
                 persist: bool | None = None, users: Users | None = None,
                 **options: object) -> None:
        if config is not None and (config_file is not None or options):
            raise TypeError("pass either config= or a config file and/or options, not both")
        told = config_file is not None or "dir" in options or "dbfilename" in options
        if config is None:
            if config_file is not None:
                from kvrepl.cli import parse_args  # the cli builds on this module

                config = parse_args([os.fspath(config_file)])
            elif told:  # a node that keeps its data: redis-server's default save points
                config = Config(repl_diskless_sync_delay=0, **_APPLICATION_PROCESS)
            else:
                config = Config(save=(), repl_diskless_sync_delay=0, **_APPLICATION_PROCESS)
            config.update(**options)
        self.config = config
        if port is not None:
            self.config.port = port
        if users is not None:
            _add_users(config, users)
        if told or persist:
            try:  # redis-server exits at startup when it cannot chdir there
                _check_directory(config.dir)
            except ValueError as err:
                raise ConfigError(f"Can't chdir to '{config.dir}': {err}") from None
        self.engine = Engine(self.config)
        self.engine.node = self
        self.replication = MasterReplication(self.engine)
        self.serve_tcp = port is not None
        self.server = Server(self.engine)
        self.server.tcp = self.serve_tcp  # a unixsocket alone serves no TCP port
        # The supervisor found at start (kvrepl.server.process.supervision): "no" when none.
        self.supervised = "no"
        self.stopping_told = False  # systemd heard STOPPING=1 (a SHUTDOWN's)
        # kvrepl-server's node: the process is its own (daemonize happened before it)
        self.owns_process = False
        self._lane_run = self.server.general_lane.run_one
        # Load dir/dbfilename at startup (clients get -LOADING meanwhile) and save when
        # the block ends, as kvrepl-server does (the cli saves on its own signals).
        self.load_dump = told if persist is None else persist
        self.save_on_exit = self.load_dump
        # kvrepl-server answers -LOADING while its dump loads; an embedded node's block
        # starts once the data is there.
        self.serve_while_loading = False
        self.following: ReplicaOf | None = None
        self.cluster_follower: ClusterFollower | None = None
        self._follow_scope: trio.CancelScope | None = None
        self.failover = Failover(self)  # FAILOVER's state (master_failover_state)
        # Not in engine.sessions: the embedded API is no client connection (CLIENT LIST,
        # maxclients).
        self._session: Session = Session(self.engine)
        self._session.user = SUPERUSER  # the embedding application keeps every right
        self._session.authenticated = True
        self._plain = True  # plain_session(self._session), kept by _run
        self._nursery: trio.Nursery | None = None
        self._token: trio.lowlevel.TrioToken | None = None  # to be reached from asyncio
        self._nursery_manager: object | None = None
        self._change_streams: list[ChangeStream] = []
        self._pubsubs: weakref.WeakSet = weakref.WeakSet()  # their iterations end with us
        # node.redis()'s connections (kvrepl.embedded_redis._Link): closed when the node
        # stops, so that their next command is refused (see not_running()).
        self._links: weakref.WeakSet = weakref.WeakSet()
        self._stopped = False
        # Set when the node stopped as redis-server panics (see ReplicaPanic); leaving
        # ``async with`` raises it.
        self.failure: ReplicaPanic | None = None
        # GET without the general dispatch (an instance attribute: no method binding).
        self.get = direct_get(self, DataMethods.get.__get__(self))
        self.get.__doc__ = DataMethods.get.__doc__

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
        """The TCP port the node listens on (the chosen one when started with port=0, the
        new one after CONFIG SET port), None when it listens on none."""
        return self.server.port or None

    def changes(self, buffer: int = 10_000) -> ChangeStream:
        """Every write this node applies from now on, as propagated (see ChangeStream).
        Iteration ends when the node stops."""
        stream = ChangeStream(self.engine, buffer, self.cluster_follower)
        self._change_streams.append(stream)
        return stream

    async def wait_for_replicas(self, count: int, timeout: float | None = None) -> int:
        """WAIT for the embedded API: until ``count`` replicas acknowledged every write made
        so far (or ``timeout`` seconds); returns how many did."""
        return await self._wait_offset(self.replication.master_repl_offset, count, timeout)

    async def _wait_offset(self, offset: int, count: int, timeout: float | None) -> int:
        replication = self.replication
        if replication.replicas_acked(offset) < count:
            replication.request_acks()
            with trio.move_on_after(math.inf if timeout is None else timeout):
                while replication.replicas_acked(offset) < count:
                    await replication.acked.wait()
        return replication.replicas_acked(offset)

    # -- commands that wait ----------------------------------------------------------------
    async def execute_command_async(self, *args: Arg) -> object:
        """Run a command that may wait (BLPOP, BZPOPMIN, BLMOVE, WAIT...) and await its
        reply, as a client of its own in the data methods' current db: a blocking command
        waits until its data comes or its timeout (0: for ever) passes, as on a server;
        WAIT counts the writes the data methods made."""
        engine = self.engine
        argv = [a if type(a) is bytes else _arg(a) for a in args]
        session = engine.new_session()
        session.user, session.authenticated = SUPERUSER, True  # the embedded API's rights
        session.db = self._session.db
        session.woff = self._session.woff
        try:
            reply = engine.execute(session, argv)
            kind = type(reply)
            if kind is Block:
                reply = await self.server.blocking.wait(session, argv, reply)
            elif kind is WaitReplicas:
                reply = await self._wait_offset(reply.offset, reply.count,
                                                reply.timeout if reply.timeout > 0 else None)
            self._durable()  # a pop, served now or when woken, wrote
            return self._convert(reply)
        finally:
            engine.close_session(session)

    async def blpop(self, keys: Iterable[Arg] | Arg, timeout: float = 0) -> object:
        """BLPOP, awaited: ``(key, value)``, or None when ``timeout`` seconds pass."""
        return _popped(await self.execute_command_async("BLPOP", *_names(keys), timeout))

    async def brpop(self, keys: Iterable[Arg] | Arg, timeout: float = 0) -> object:
        """BRPOP, awaited: ``(key, value)``, or None when ``timeout`` seconds pass."""
        return _popped(await self.execute_command_async("BRPOP", *_names(keys), timeout))

    async def bzpopmin(self, keys: Iterable[Arg] | Arg, timeout: float = 0) -> object:
        """BZPOPMIN, awaited: ``(key, member, score)``, or None after ``timeout``."""
        return _scored(await self.execute_command_async("BZPOPMIN", *_names(keys), timeout))

    async def bzpopmax(self, keys: Iterable[Arg] | Arg, timeout: float = 0) -> object:
        """BZPOPMAX, awaited: ``(key, member, score)``, or None after ``timeout``."""
        return _scored(await self.execute_command_async("BZPOPMAX", *_names(keys), timeout))

    async def blmove(self, first_list: Arg, second_list: Arg, timeout: float,
                     src: str = "LEFT", dest: str = "RIGHT") -> bytes | None:
        """BLMOVE, awaited: the element moved, or None after ``timeout``."""
        return await self.execute_command_async(  # type: ignore[return-value]
            "BLMOVE", first_list, second_list, src, dest, timeout)

    async def brpoplpush(self, src: Arg, dst: Arg, timeout: float = 0) -> bytes | None:
        """BRPOPLPUSH, awaited: the element moved, or None after ``timeout``."""
        return await self.execute_command_async(  # type: ignore[return-value]
            "BRPOPLPUSH", src, dst, timeout)

    def pubsub(self, **kwargs: object) -> object:
        """redis-py's PubSub on a connection of its own to this node, also async:
        ``async with node.pubsub() as p: p.subscribe("ch")``, then
        ``async for message in p`` (redis-py's message dicts). Iteration ends when the
        node stops or at ``await p.aclose()``. ``kwargs`` are ``node.redis()``'s."""
        from kvrepl.embedded_redis import AsyncPubSub

        client = self.redis(**kwargs)
        pubsub = AsyncPubSub(client.connection_pool)
        self._pubsubs.add(pubsub)
        return pubsub

    # -- replication ---------------------------------------------------------------------
    def follow_address(self, host: str, port: int, failover: Failover | None = None) -> None:
        """Become a replica of the master at ``host:port`` (REPLICAOF host port); with
        ``failover``, this master hands over to that replica (PSYNC ... FAILOVER)."""

        async def connect() -> trio.abc.Stream:
            return await self._open_master_stream(host, port)

        self._follow(connect, (host, port), failover=failover)

    async def _open_master_stream(self, host: str, port: int) -> trio.abc.Stream:
        """A connection to a master as this node's replication links make them (keepalive,
        TLS with ``tls-replication``)."""
        # bind-source-addr: the local address of the link, as connectWithMaster binds it
        stream = await trio.open_tcp_stream(host, port,
                                            local_address=self.config.bind_source_addr or None)
        set_keepalive(stream, self.config.tcp_keepalive)
        if self.config.tls_replication:
            return await tls.wrap_client(stream, self.config)
        return stream

    def follow_cluster(self, cluster: Cluster) -> None:
        """Become a read-only copy of a whole Redis Cluster: one replica link per primary,
        their shards' keys in this one keyspace (see :mod:`kvrepl.replication.cluster`)."""
        if self._nursery is None:
            raise RuntimeError("start the node (async with) before following a cluster")
        if self.following is not None or self.cluster_follower is not None:
            raise RuntimeError("this node already follows a master or a cluster")
        if self.config.appendonly:
            raise ConfigError("a cluster follower keeps no AOF (its data is the cluster's)")
        if cluster.username is not None:
            self.config.masteruser = cluster.username
        if cluster.password is not None:
            self.config.masterauth = cluster.password
        if self.engine.keyspace.dbsize():
            # Keys no shard's snapshot accounts for (a dump loaded at startup carries no
            # shard offsets to continue from): every shard's full sync brings them back.
            logger.warning("Following a cluster: dropping the %d keys held before",
                           self.engine.keyspace.dbsize())
            self.engine.keyspace.flushall()
        follower = ClusterFollower(self.engine, cluster, self._open_master_stream,
                                   listening_port=self.port or 0)
        self.cluster_follower = follower
        self._start_follower(follower, trio.CancelScope())

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
                source: Node | None = None, failover: Failover | None = None) -> None:
        if self._nursery is None:
            raise RuntimeError("start the node (async with) before following a master")
        if self.following is not None:
            self._follow_scope.cancel()
        follower = ReplicaOf(self.engine, self.replication, connect, describe,
                             listening_port=self.port or 0)
        follower.source = source
        follower.failover = failover
        scope = trio.CancelScope()
        self.following, self._follow_scope = follower, scope
        self._start_follower(follower, scope)

    def _start_follower(self, follower: ReplicaOf | ClusterFollower,
                        scope: trio.CancelScope) -> None:
        """Run ``follower`` (a master's link, or a cluster's) in the node's nursery. A
        replica from now on: stale until the link is up (MASTERDOWN when not serving stale
        data), read-only as configured, before its task first runs; a ReplicaPanic stops
        the node, as redis-server's panic ends the process, and is kept as its failure."""
        self.engine.masterdown = True
        self.engine.read_only = self.config.replica_read_only

        async def follow() -> None:
            with scope:
                try:
                    await follower.run()
                except ReplicaPanic as err:
                    self.failure = err
                    raise

        assert self._nursery is not None
        self._nursery.start_soon(follow)
        self._role_changed()

    def _role_changed(self) -> None:
        """A master became a replica or back: its oom_score_adj follows (replicationSetMaster
        and replicationUnsetMaster call setOOMScoreAdj)."""
        if self.config.oom_score_adj != "no":
            with contextlib.suppress(ApplyError):  # logged; the role changes anyway
                process.apply_oom_score(self)

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
        self._role_changed()

    async def _replication_cron(self) -> None:
        tick = 0
        while True:
            await trio.sleep(1)
            tick += 1
            self.replication.cron(tick)

    async def __aenter__(self) -> Node:
        self._stopped = False
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
        if self.save_on_exit and self.failure is None and not self.server.shutting_down \
                and persistence.attach(self.engine).load_error is None:
            # redis-server's shutdown: a final dump when save points are set (never over a
            # dump that failed to load, nor after SHUTDOWN, which decided for itself).
            persistence.prepare_shutdown(self.engine, None, force=True)
        for stream in self._change_streams:
            stream._detach()  # consumers' async for loops end instead of waiting forever
        for pubsub in list(self._pubsubs):
            pubsub.node_stopped()
        self._stopped = True
        for link in list(self._links):
            link.closed = True  # the next command reconnects, which not_running() refuses
        self._change_streams.clear()
        if self.engine.aof is not None:
            self.engine.aof.close()  # the last writes reach the AOF
        process.stopping(self)
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
        if self.config.daemonize and not self.owns_process:
            raise ConfigError("daemonize: an embedded node runs in the application's "
                              "process, which kvrepl does not fork (kvrepl-server does)")
        self._token = trio.lowlevel.current_trio_token()
        self.replication.nursery = nursery
        persistence.attach(self.engine, nursery)  # where BGSAVE jobs run
        loaded = trio.Event()
        # The load reads once the node listens and its start is logged, as redis-server
        # loads after initServer (clients get -LOADING from the first).
        initialized = trio.Event()
        if self.load_dump:
            # With the AOF on, the AOF is loaded and the dump is not (clients get -LOADING
            # meanwhile).

            async def load(task_status: trio.TaskStatus[None]) -> None:
                try:
                    await persistence.load_on_startup(self.engine, stop_on_error=True,
                                                      task_status=task_status,
                                                      begin=initialized)
                finally:
                    loaded.set()

            await nursery.start(load)
        elif self.config.appendonly:
            # An embedded node with an AOF: its data is back when ``async with`` is entered
            # (the data methods read the store directly); a bad AOF raises here.
            await persistence.load_on_startup(self.engine)
        if self.config.logfile or self.config.syslog_enabled:
            configure(self.config.loglevel, self.config.logfile,
                      syslog=self.config.syslog_enabled, ident=self.config.syslog_ident,
                      facility=self.config.syslog_facility)
        if self.serve_tcp or self.config.unixsocket:
            await nursery.start(self.server.serve)
        else:
            nursery.start_soon(run_cron, self.engine)
        process.started(self)
        initialized.set()
        self.config.listeners.append(self._process_option_changed)
        self.config.appliers.append(self._apply_oom_score)

        async def announce_ready() -> None:
            await loaded.wait()
            if persistence.attach(self.engine).load_error is None:
                process.ready(self)

        if self.load_dump:
            nursery.start_soon(announce_ready)
        else:
            process.ready(self)
        nursery.start_soon(self._replication_cron)
        if self.config.replicaof is not None:
            self.follow_address(*self.config.replicaof)
        if self.load_dump and not self.serve_while_loading:
            await loaded.wait()
            error = persistence.attach(self.engine).load_error
            if error is not None:
                raise error

    def _apply_oom_score(self, names: list[str]) -> None:
        """CONFIG SET oom-score-adj / oom-score-adj-values (updateOOMScoreAdj): ApplyError
        undoes the CONFIG SET."""
        if "oom-score-adj" in names or "oom-score-adj-values" in names:
            process.apply_oom_score(self)

    def _process_option_changed(self, name: str) -> None:
        """CONFIG SET of an option about the process (updateProcTitleTemplate,
        updateSighandlerEnabled)."""
        if name == "proc-title-template":
            process.update_title(self)
        elif name == "crash-log-enabled":
            process.crash_log(self.config.crash_log_enabled)

    # -- generic access ------------------------------------------------------------------
    def redis(self, **kwargs: object) -> redis.Redis:
        """A real ``redis.Redis`` talking to this node in-process (no socket, no thread):
        redis-py's whole API (pipelines, transactions with WATCH, pub/sub, scan_iter,
        RESP3 with ``protocol=3``) runs unchanged. ``kwargs`` are redis-py's
        (``decode_responses``, ``protocol``, ``db``, ``username``/``password``...). Each
        pooled connection is a client of its own (its db, MULTI, subscriptions). A call
        cannot wait: see :mod:`kvrepl.embedded_redis` for blocking commands. Needs
        redis-py (``pip install redis``)."""
        from kvrepl.embedded_redis import client

        return client(self, **kwargs)

    def _not_running(self) -> str | None:
        """Why node.redis()'s commands cannot run now (None while the node runs): a
        message that says what to do."""
        kind = type(self).__name__
        if self._stopped:
            return (f"the kvrepl {kind} has stopped (its `async with` ended): node.redis() "
                    "runs commands only while the node runs")
        if self._nursery is None:
            return (f"the kvrepl {kind} is not running: start it first (`async with node:` "
                    "in trio, or `async with kvrepl.in_asyncio(node):` in asyncio), then "
                    "use node.redis() inside that block")
        return None

    def aredis(self, **kwargs: object) -> redis.asyncio.Redis:
        """A real ``redis.asyncio.Redis`` for an asyncio program running this node (see
        :func:`kvrepl.aio.in_asyncio`): each connection is a client of the node over a
        socket pair (no port), so blocking commands, pub/sub and WAIT really wait.
        ``kwargs`` are redis-py's."""
        from kvrepl.aio import client

        return client(self, **kwargs)

    def serve_socket(self, sock: socket.socket) -> None:
        """Serve a client on ``sock`` (one end of a connected pair) as the TCP server
        serves its clients; callable from any thread while the node runs."""
        token, nursery = self._token, self._nursery
        if token is None or nursery is None:
            raise OSError("the node is not running (start it with async with, or "
                          "kvrepl.in_asyncio() from asyncio)")

        def adopt() -> None:
            stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
            nursery.start_soon(self.server.handle_stream, stream)

        token.run_sync_soon(adopt)

    def execute_command(self, *args: Arg) -> object:
        """Run any command, e.g. ``node.execute_command("ZADD", "z", 1, "a")``, on the
        node's shared session (the one the data methods use). SUBSCRIBE and MONITOR, which
        would take that session over, are refused: use ``node.redis().pubsub()``."""
        argv = [a if type(a) is bytes else a.encode() if type(a) is str else _arg(a)
                for a in args]
        if argv and argv[0].lower() in _TAKE_OVER:
            raise ReplyError(
                f"ERR {argv[0].decode(errors='replace').upper()} would turn the node's shared "
                "session (its data methods') into a subscriber for good: use "
                "node.redis().pubsub() or node.redis().monitor(), a connection of its own")
        return self._run(argv)

    def _run(self, argv: list[bytes]) -> object:
        engine = self.engine
        # Straight to call() when it may (GeneralLane.run_one) while the shared session is
        # plain: only a command the lane leaves to execute() can change that (MULTI, AUTH,
        # RESET, CLIENT REPLY...: noscript, never in the lane), so it is found again after
        # each of those.
        reply = self._lane_run(self._session, argv) if self._plain else MISSED
        if reply is MISSED:
            reply = engine.execute(self._session, argv)
            self._plain = plain_session(self._session)
        if engine.aof is not None:
            self._durable()
        kind = type(reply)
        if kind is bytes or kind is int or reply is None:  # (_convert's first case, a
            return reply                                   # frame less for the usual)
        return self._convert(reply)

    def _durable(self) -> None:
        """appendfsync always: the write is on disk before the call returns, as before a
        reply (other policies are flushed by the AOF's own task, as in beforeSleep)."""
        aof = self.engine.aof
        if aof is not None and aof.buf and self.config.appendfsync == "always":
            aof.flush()

    def _convert(self, reply: object) -> object:
        """A reply as the embedded API returns it."""
        kind = type(reply)
        if kind is bytes or kind is int or reply is None:
            return reply
        if kind in AWAITED_REPLIES:
            # A plain call cannot wait: blocking commands answer as inside MULTI, WAIT
            # answers at once (`await wait_for_replicas()` is the waiting form).
            reply = settle(self, reply, refuse_forever=False)
        return _python(reply)

    def info(self, *sections: str) -> dict[str, object]:
        """INFO as a dict, as redis-py's ``info()`` parses it: numbers as numbers, lines of
        ``name=value,...`` fields (``slave0``, a cluster follower's ``shard0`` in section
        ``shards``) as dicts."""
        from kvrepl.commands.info import info_text

        text = info_text(self.engine, [s.encode() for s in sections])
        return {name: _info_value(value) for name, _, value in
                (line.partition(":") for line in text.splitlines()
                 if line and not line.startswith("#"))}

    def select(self, db: int) -> None:
        """Make ``db`` the database the data methods work on."""
        self.execute_command("SELECT", db)


class Master(Node):
    """A node that accepts writes; replicas (kvrepl or redis-server) follow it."""


# How to configure one. Node's doc cleaned first: Python 3.13 strips docstrings' indentation
# when compiling, earlier versions keep it.
Master.__doc__ = f"{Master.__doc__}\n\n{inspect.cleandoc(Node.__doc__ or '')}"


class Replica(Node):
    """A read-only copy of a master. ``follow`` is a node in the same program (no socket),
    or a master over TCP, including a real Redis: ``("host", 6379)``, ``"host:6379"``, or
    ``"redis://user:password@host:6379"`` (the credentials become ``masteruser`` /
    ``masterauth``); ``"rediss://..."`` follows over TLS as ``tls-replication yes`` does:
    pass ``tls_ca_cert_file`` (or ``tls_ca_cert_dir``) to verify the master, and
    ``tls_cert_file``/``tls_key_file`` when it asks clients for a certificate; or a whole
    Redis Cluster: ``kvrepl.Cluster([("host", 7000), ...])`` (one link per primary, every
    shard's keys here; see :mod:`kvrepl.replication.cluster`). Other arguments are
    :class:`Node`'s.

    Reads (``replica.get(...)``) are plain calls on the local copy.
    """

    def __init__(self, config_file: str | os.PathLike[str] | None = None, *,
                 follow: Node | Cluster | tuple[str, int] | str, port: int | None = None,
                 config: Config | None = None, persist: bool | None = None,
                 **options: object) -> None:
        if isinstance(follow, Cluster):
            master, user, password, use_tls = follow, None, None, False
        else:
            master, user, password, use_tls = _master_address(follow)
        super().__init__(config_file, port=port, config=config, persist=persist, **options)
        if user is not None:
            self.config.masteruser = user
        if password is not None:
            self.config.masterauth = password
        if use_tls:
            # As tls-replication yes: the CA (tls_ca_cert_file or tls_ca_cert_dir) and,
            # for a master with tls-auth-clients, tls_cert_file/tls_key_file; checked now.
            self.config.tls_replication = True
            try:
                tls.client_context(self.config)
            except tls.TlsError as err:
                raise ConfigError(f"follow={follow!r}: {err}") from None
        self.master = master

    async def _start(self, nursery: trio.Nursery) -> None:
        await super()._start(nursery)
        if isinstance(self.master, Cluster):
            self.follow_cluster(self.master)
        elif isinstance(self.master, Node):
            self.follow_node(self.master)
        else:
            self.follow_address(*self.master)

    async def wait_synced(self) -> None:
        """Wait until the link is up and, for an in-process master, until every write the
        master had made when this was called has been applied here. Following a cluster:
        until every shard's link is up and has applied what its primary had written when
        this was called."""
        if self.cluster_follower is not None:
            await self.cluster_follower.wait_synced()
            return
        follower = self.following
        if follower is None:
            raise RuntimeError("this node follows no master")
        await follower.synced.wait()
        if follower.source is not None:
            await follower.wait_offset(follower.source.replication.master_repl_offset)


Users = Iterable[str] | Mapping[str, str | Iterable[str]]


def _add_users(config: Config, users: Users) -> None:
    """``users=`` as the config file's ``user`` lines (the engine makes them at start)."""
    from kvrepl.acl import split_args

    if isinstance(users, str):
        raise TypeError("users= takes a list of user lines or a mapping, not one string")
    lines: list[list[bytes]] = []
    if isinstance(users, Mapping):
        for name, rules in users.items():
            words = split_args(rules.encode()) if isinstance(rules, str) else \
                [rule.encode() for rule in rules]
            lines.append([name.encode(), *words])
    else:
        for line in users:
            words = split_args(line.encode())
            lines.append(words[1:] if words[:1] == [b"user"] else words)
    for words in lines:
        if not words:
            raise ConfigError("users=: an empty user line")
        if any(words[0] == seen[0] for seen in config.user_lines):
            raise ConfigError(f"users=: user '{words[0].decode()}' is defined twice")
        config.user_lines.append(words)


def _info_value(text: str) -> object:
    if "=" in text and "," in text or text.count("=") == 1 and not text.startswith("="):
        return {k: _info_value(v) for k, _, v in (p.partition("=") for p in text.split(","))}
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _master_address(follow: object
                    ) -> tuple[Node | tuple[str, int], str | None, str | None, bool]:
    """``Replica(follow=...)``'s forms as (node or (host, port), user, password, TLS)."""
    if isinstance(follow, Node):
        return follow, None, None, False
    if isinstance(follow, (tuple, list)) and len(follow) == 2:
        return (str(follow[0]), int(follow[1])), None, None, False
    if not isinstance(follow, str):
        raise TypeError("follow= takes a node, (host, port), 'host:port' or a redis:// URL, "
                        f"not {type(follow).__name__}")
    if "://" not in follow:
        host, colon, port = follow.rpartition(":")
        if not colon or not host or not port.isdigit():
            raise ValueError(f"follow={follow!r}: expected 'host:port'")
        return (host.strip("[]"), int(port)), None, None, False
    url = urlsplit(follow)
    if url.scheme not in ("redis", "rediss") or not url.hostname:
        raise ValueError(f"follow={follow!r}: expected redis://[user:password@]host[:port] "
                         "or rediss://...")
    if url.path not in ("", "/", "/0") or url.query:
        # A replica copies every database: a db number or options would be ignored.
        raise ValueError(f"follow={follow!r}: a replica follows the whole master; the URL "
                         "takes no database or options")
    user = unquote(url.username) if url.username else None
    password = unquote(url.password) if url.password is not None else None
    return (url.hostname, url.port or 6379), user, password, url.scheme == "rediss"
