"""``node.redis()``: a real ``redis.Redis`` whose connections talk to the node in-process.

Each :class:`InProcessConnection` owns one kvrepl :class:`~kvrepl.commands.core.Session`
(a client of the node as a TCP connection would be: its own selected db, MULTI/WATCH state,
subscriptions, RESP version). A command's arguments go to the engine as they are (no RESP
packing); its reply is encoded to RESP with kvrepl's encoder and parsed by redis-py's own
hiredis parser, so every reply has exactly the shape redis-py gives for a redis-server, and
redis-py's response callbacks, pipelines, transactions, pub/sub and RESP3 run unchanged.

There is no socket and no thread: a call runs to completion inside the caller's trio task.
So nothing can arrive while a call waits. A blocking command (BLPOP...) is served when its
data is there; otherwise a finite timeout answers at once what the timeout would give
(nothing can be pushed meanwhile), and timeout 0, which would hold the event loop forever,
is refused with an error. Reading with nothing pending (``pubsub.listen()`` with no
message queued) raises redis-py's ``TimeoutError`` for the same reason; use
``get_message()``.

Use it from the trio thread that runs the node (the engine is not thread-safe). An
asyncio program gets ``redis.asyncio`` instead: ``node.aredis()`` with the node run by
:func:`kvrepl.in_asyncio` (see :mod:`kvrepl.aio`).

GET and a plain SET skip the command machinery and RESP altogether: the connection's own
direct GET (:mod:`kvrepl.direct_reads`) and the engine's plain lane, which record what the
general path records; their replies are the values redis-py's parser would have made.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import redis
import redis.client
import trio
from redis._parsers.helpers import parse_set_result
from redis._parsers.hiredis import NOT_ENOUGH_DATA as _NOT_ENOUGH_DATA
from redis.connection import AbstractConnection
from redis.exceptions import DataError, ResponseError

from kvrepl.commands.core import Session
from kvrepl.direct_reads import direct_get
from kvrepl.node import AWAITED_REPLIES, settle
from kvrepl.protocol.parser import NEED_DATA, RequestParser
from kvrepl.protocol.replies import encode

if TYPE_CHECKING:
    from kvrepl.node import Node

_HOST = "kvrepl in-process node"


class _Link:
    """What the connection holds where redis-py keeps its socket: the node's session and
    the RESP bytes waiting to be read (the parser asks for them with ``recv_into``)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.session: Session = node.engine.new_session()
        self.pending = bytearray()
        # The session ended (QUIT, or the node stopped): the next command gets a new one.
        self.closed = False
        node._links.add(self)
        # GET without the general dispatch; GENERAL when it must go the usual way.
        self.get = direct_get(node, _general, self.session)
        # The plain lane's single SET and its engine (fixed for the node's life), held
        # here so that a call reaches them without four attribute loads.
        self.engine = node.engine
        self.lane_set = node.engine.plain_lane.set

    def take_pushes(self) -> None:
        """Move what other clients pushed to this session (pub/sub messages, MONITOR
        lines) to the bytes waiting to be read."""
        session = self.session
        if session.pending_out:
            resp3 = session.resp3
            for message in session.pending_out:
                self.pending += encode(message, resp3)
            session.drained()

    # -- the socket methods redis-py's parser and connection call ---------------------------
    def recv_into(self, buffer: Any, nbytes: int = 0) -> int:
        self.take_pushes()
        pending = self.pending
        if not pending:
            # Nothing can arrive while this call holds the event loop.
            raise TimeoutError("nothing to read: an in-process call cannot wait")
        size = min(len(pending), nbytes or len(buffer))
        buffer[:size] = pending[:size]
        del pending[:size]
        return size

    def settimeout(self, timeout: float | None) -> None:
        pass

    def shutdown(self, how: int) -> None:
        pass

    def close(self) -> None:
        self.node.engine.close_session(self.session)


def _general(name: object) -> object:
    return GENERAL


GENERAL = object()  # what the direct GET answers when the general path must run it


class _NotRunning(OSError):
    """The node is not running (redis-py raises it as a ConnectionError)."""


class _Commands(list):
    """``pack_commands``' result: the commands' argument lists, not RESP bytes."""


class InProcessConnection(AbstractConnection):
    """A redis-py connection to a kvrepl node in the same program (see module doc)."""

    def __init__(self, node: Node, **kwargs: Any) -> None:
        kwargs.setdefault("driver_info", None)  # no CLIENT SETINFO to a node in-process
        super().__init__(**kwargs)
        self.node = node
        self.host = _HOST
        self.port = node.port or 0
        # Pushes (RESP3 invalidations, a message published to itself...) were fed to the
        # parser ahead of a reply: redis-py's own reading handles them and skips them.
        self.pushed = False

    @property
    def decoding(self) -> bool:
        """Replies are decoded to str (``decode_responses=True``)."""
        return self.encoder.decode_responses

    @property
    def ok(self) -> bytes | str:
        """A +OK reply as the parser hands it over."""
        return "OK" if self.encoder.decode_responses else b"OK"

    def key(self, value: object) -> bytes:
        """An argument as redis-py's encoder makes it (DataError for None, a bool...)."""
        try:
            value = self.encoder.encode(value)
        except DataError:
            self._refuse(("GET", value))
            raise
        return value if type(value) is bytes else bytes(value)

    def _refuse(self, args: tuple) -> None:
        """Raise the DataError redis-py's own packer raises for ``args`` over TCP (the
        encoder refused one): the encoder's message, or with redis-py 8.1 and hiredis
        (Python 3.10's pin), hiredis's "A tuple item must be ...", as that packer skips
        the encoder."""
        self._command_packer.pack(*args)

    def repr_pieces(self) -> list[tuple[str, object]]:
        """What ``repr()`` shows: the node's kind and the db."""
        return [("node", type(self.node).__name__), ("db", self.db)]

    def _connect(self) -> _Link:
        refusal = self.node._not_running()
        if refusal is not None:
            raise _NotRunning(refusal)
        return _Link(self.node)

    def _error_message(self, exception: BaseException) -> str:
        """redis-py's ConnectionError message: the refusal of a node that is not running
        as it is (redis-py's "Error ... connecting to ..." would bury what to do)."""
        if isinstance(exception, _NotRunning):
            return str(exception)
        return super()._error_message(exception)

    def _host_error(self) -> str:
        return _HOST

    # -- sending: the engine runs each command at once ------------------------------------
    def _argv(self, args: tuple) -> list[bytes]:
        """The command's arguments as bytes, as redis-py's packers make them (DataError
        for a None, a bool, a list...; "CONFIG GET" split in two)."""
        first = args[0]
        name = _NAMES.get(first) if type(first) is str else None
        if name is None:
            if isinstance(first, str):
                name = first.encode().split()
                if len(_NAMES) < 1024:
                    _NAMES[first] = name
            else:
                name = self.encoder.encode(first).split() if b" " in first else [first]
        argv = list(name)
        encoder = self.encoder
        for arg in args[1:]:
            kind = type(arg)
            if kind is bytes:
                argv.append(arg)
            elif kind is str:
                argv.append(arg.encode(encoder.encoding, encoder.encoding_errors))
            else:
                try:
                    arg = encoder.encode(arg)
                except DataError:
                    self._refuse(args)
                    raise
                argv.append(arg if type(arg) is bytes else bytes(arg))
        return argv

    def _run(self, argv: list[bytes]) -> None:
        link = self._sock
        session = link.session
        if link.pending:  # pushes already taken come before this reply
            self._feed_pending()
        engine = self.node.engine
        # GET and plain SET through the plain lane, as the server runs them (same stats,
        # propagation, checks); anything it leaves goes the general way.
        size = len(argv)
        if size == 3 and argv[0] in _SET:
            if engine.plain_lane.set(session, argv):
                self.node._durable()  # appendfsync always: on disk before the reply
                self._parser._reader.feed(b"+OK\r\n")
                return
        elif size == 2 and argv[0] in _GET:
            lane = engine.plain_lane
            if lane.open_for(session):
                reply = lane.get(session, argv[1])
                if reply is not None:
                    self._parser._reader.feed(reply)
                    return
        reply = engine.execute(session, argv)
        self.node._durable()
        if type(reply) in AWAITED_REPLIES:
            reply = settle(self.node, reply, refuse_forever=True)
        if session.pending_out:  # pushes that came first (a message published to itself)
            link.take_pushes()
            self._feed_pending()
        self._parser._reader.feed(encode(reply, session.resp3))
        if session.after_reply:  # its own MONITOR echo
            for message in session.after_reply:
                self._parser._reader.feed(encode(message, session.resp3))
            session.after_reply.clear()
        if session.closing:  # QUIT, CLIENT KILL: a new session for the next command
            link.closed = True

    def send_command(self, *args: Any, **kwargs: Any) -> None:
        argv = self._argv(args)  # redis-py packs (DataError) before it connects
        link = self._sock
        if link is None or link.closed:
            if link is not None:
                self.disconnect()
            self.connect_check_health(check_health=False)
        self._run(argv)

    def pack_command(self, *args: Any) -> _Commands:
        return _Commands([self._argv(args)])

    def pack_commands(self, commands: Any) -> _Commands:
        return _Commands(self._argv(tuple(args)) for args in commands)

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if self._sock is None:
            self.connect_check_health(check_health=False)
        if type(command) is _Commands:
            for argv in command:
                self._run(argv)
            return
        # RESP bytes packed by someone else: parse them as the server would.
        parser = RequestParser(self.node.config.proto_max_bulk_len)
        for chunk in [command] if isinstance(command, (bytes, bytearray, str)) else command:
            parser.feed(chunk.encode() if isinstance(chunk, str) else bytes(chunk))
        while (argv := parser.next_request()) is not NEED_DATA:
            self._run(argv)

    # -- reading: the parser reads what _run fed it, then asks recv_into for pushes -------
    def can_read(self, timeout: float = 0) -> bool:
        link = self._sock
        if link is None:
            self.connect()
            link = self._sock
        link.take_pushes()
        if link.pending:
            self._feed_pending()
        return self._parser._reader.has_data()

    def _feed_pending(self) -> None:
        self.pushed = True
        link = self._sock
        self._parser._reader.feed(bytes(link.pending))
        link.pending.clear()

    def _get_parser(self) -> Any:
        return self._parser


_NAMES: dict[str, list[bytes]] = {}
_GET = frozenset((b"GET", b"get"))
_SET = frozenset((b"SET", b"set"))
# redis-py's response_callbacks hold upper-case names: its case-insensitive ``get``,
# without the Python call.
_callback = dict.get
_PLAIN_OPTIONS = frozenset(("keys",))  # what redis-py's parse_response only drops


class InProcessRedis(redis.Redis):
    """``redis.Redis`` with a shorter way for single commands: one connection of its own,
    used directly, instead of taking one from the pool and giving it back on each call
    (what the pool would hand out every time in a single-threaded program anyway), and
    ``get``/``set`` whose plain forms go straight to the engine. Pipelines, pub/sub and
    locks use the pool as usual."""

    _direct: InProcessConnection | None = None

    def execute_command(self, *args: Any, **options: Any) -> Any:
        """redis-py's ``execute_command`` on this client's own connection."""
        conn = self._direct
        if conn is None or conn._sock is None:
            if self.connection is not None:  # single_connection_client: redis-py's way
                return super().execute_command(*args, **options)
            conn = self._direct = self.connection_pool.make_connection()
            conn.connect()
        conn.pushed = False
        conn.send_command(*args)
        session = conn._sock.session  # after QUIT, send_command made a new one
        if (options and not options.keys() <= _PLAIN_OPTIONS) or session.channels \
                or session.patterns or session.monitor or conn.pushed:
            # Undecoded replies, empty-response defaults, pushes: redis-py's own reading.
            return self.parse_response(conn, args[0], **options)
        # redis-py's parse_response, minus what cannot apply to this connection.
        response = conn._parser._reader.gets()
        if response is _NOT_ENOUGH_DATA:  # pragma: no cover - every command has its reply
            raise RuntimeError(f"no reply to {args[0]!r}")
        if isinstance(response, ResponseError):
            raise response
        callback = self.response_callbacks.get(args[0])
        if callback is None:
            return response
        options.pop("keys", None)
        return callback(response, **options)

    def get(self, name: Any) -> Any:
        """redis-py's ``get``: the connection's direct GET when it may answer, without
        redis-py's command building (the reply redis-py's parser would have made and the
        ``GET`` response callback); otherwise redis-py's way."""
        conn = self._direct
        if conn is not None:
            link = conn._sock
            if link is not None and not link.pending and not link.closed:
                value = link.get(name if type(name) is bytes else conn.key(name))
                if value is not GENERAL:
                    if value is not None and conn.encoder.decode_responses:
                        value = conn.encoder.decode(value)
                    callback = _callback(self.response_callbacks, "GET")
                    return value if callback is None else callback(value)
        return self.execute_command("GET", name, keys=[name])

    def set(self, name: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        """redis-py's ``set``. The plain form (no option given) goes to the engine's
        plain lane when that may run it, without redis-py's argument building: redis-py's
        DataError for a key or value it cannot encode, the ``SET`` response callback on
        the +OK; anything else is redis-py's own ``set``."""
        if args or kwargs:
            return super().set(name, value, *args, **kwargs)
        conn = self._direct
        if conn is not None:
            link = conn._sock
            if link is not None and not link.pending and not link.closed:
                if link.lane_set(link.session, [
                        b"SET", name if type(name) is bytes else conn.key(name),
                        value if type(value) is bytes else conn.key(value)]):
                    if link.engine.aof is not None:
                        link.node._durable()  # appendfsync always: on disk before the reply
                    callback = _callback(self.response_callbacks, "SET")
                    if callback is parse_set_result:  # redis-py's own: True for +OK
                        return True
                    ok = conn.ok
                    return ok if callback is None else callback(ok)
        return self.execute_command("SET", name, value)

    def close(self) -> None:
        """Close the client's own connection and its pool, as redis-py's ``close``."""
        direct, self._direct = self._direct, None
        if direct is not None:
            direct.disconnect()
        super().close()


class AsyncPubSub(redis.client.PubSub):
    """redis-py's PubSub on an in-process connection, every method as redis-py's
    (``subscribe`` is a plain call: nothing to wait for), plus what waits: ``async with``
    and ``async for message in pubsub`` (redis-py's message dicts; messages a handler took
    are not yielded, subscribe confirmations are unless ``ignore_subscribe_messages``).
    Iteration ends at ``aclose()`` or when the node stops."""

    _closed = False
    _wakeup: trio.Event | None = None

    async def __aenter__(self) -> AsyncPubSub:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Unsubscribe from everything and end every ``async for`` over this pubsub."""
        self.node_stopped()
        self.close()

    def node_stopped(self) -> None:
        """End every ``async for`` over this pubsub (the node stopped)."""
        self._closed = True
        if self._wakeup is not None:
            self._wakeup.set()

    def execute_command(self, *args: Any) -> None:
        super().execute_command(*args)
        if self._wakeup is not None:  # a first subscription: an iteration has a link now
            self._wakeup.set()

    def __aiter__(self) -> AsyncPubSub:
        return self

    async def __anext__(self) -> dict:
        while not self._closed:
            wakeup = self._wakeup = trio.Event()
            conn = self.connection
            if conn is not None and conn._sock is not None:
                conn._sock.session.on_push = wakeup.set
                while conn.can_read():
                    message = self.get_message(
                        ignore_subscribe_messages=self.ignore_subscribe_messages)
                    if message is not None:
                        return message
            await wakeup.wait()
        raise StopAsyncIteration


def client(node: Node, **kwargs: Any) -> redis.Redis:
    """A ``redis.Redis`` for ``node``; ``kwargs`` are redis-py's (``decode_responses``,
    ``protocol=3``, ``db``, ``username``/``password``, ``client_name``,
    ``single_connection_client``...)."""
    from redis._parsers import _HiredisParser

    kwargs.setdefault("parser_class", _HiredisParser)
    single = kwargs.pop("single_connection_client", False)  # the client's, not a connection's
    pool = redis.ConnectionPool(connection_class=InProcessConnection, node=node, **kwargs)
    return InProcessRedis(connection_pool=pool, single_connection_client=single)


__all__ = ["AsyncPubSub", "InProcessConnection", "InProcessRedis", "client"]
