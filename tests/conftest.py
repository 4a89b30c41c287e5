"""Shared fixtures: a kvrepl engine for unit tests, a live kvrepl server, a real redis-server.

``same(*args)`` sends one command to kvrepl and to a real redis-server 7.0 and asserts both
answer alike (raw RESP2 replies, or error messages): the real server is the oracle. ``same3``
does the same over RESP3, and ``wire`` compares the exact reply bytes.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator

import pytest
import redis
from support import (
    NOW_S,
    Certs,
    Compare,
    KvreplProcess,
    RedisServer,
    ThreadedServer,
    argv,
    comparer,
    raw_replies,
    seed_value,
    wire_comparer,
)

from kvrepl.commands.core import Engine, Session
from kvrepl.config import Config
from kvrepl.errors import ReplyError


@pytest.fixture(autouse=True, scope="session")
def _work_in_a_scratch_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Nodes started without a ``dir`` write where they run (``dir ./``, as redis-server):
    the suite runs in a folder of its own, so no test leaves a dump in the checkout."""
    before = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(before)


@pytest.fixture(autouse=True)
def _stop_kvrepl_processes() -> Iterator[None]:
    """Every kvrepl-server a test started (support.KvreplProcess) is killed when it ends,
    passed or failed."""
    yield
    while KvreplProcess.started:
        KvreplProcess.started.pop().kill()


@pytest.fixture
def engine() -> Engine:
    # DEBUG from the engine's own sessions, which count as local (Redis 7.0 refuses it by
    # default: enable-debug-command no).
    return Engine(Config(save=(), enable_debug_command="local"))


@pytest.fixture
def session(engine: Engine) -> Session:
    return engine.new_session()


@pytest.fixture
def run(engine: Engine, session: Session) -> Callable[..., object]:
    """``run("SET", "k", "v")``: execute on the engine; errors are raised as ReplyError."""

    def execute(*args: object) -> object:
        reply = engine.execute(session, argv(*args))
        if isinstance(reply, ReplyError):
            raise reply
        return reply

    return execute


@pytest.fixture(scope="session")
def kvrepl_server() -> Iterator[ThreadedServer]:
    # Opted in like the debug_redis oracle: the tests run DEBUG and CONFIG SET dir over TCP.
    server = ThreadedServer(Config(save=(), repl_diskless_sync_delay=0, enable_debug_command="yes",
                                   enable_protected_configs="yes")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture
def r(kvrepl_server: ThreadedServer) -> Iterator[redis.Redis]:
    """A redis-py client on a flushed kvrepl server."""
    client = kvrepl_server.client()
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def real(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A redis-py client on a flushed real redis-server."""
    client = redis_server.client()
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def real_clients(redis_server: RedisServer) -> Iterator[Callable[..., redis.Redis]]:
    """``real_clients(**kwargs)``: redis-py clients (any options) on a flushed real
    redis-server, closed at the end of the test."""
    opened: list[redis.Redis] = []

    def make(**kwargs: object) -> redis.Redis:
        client = redis_server.client(**kwargs)
        opened.append(client)
        return client

    make().flushall()
    yield make
    for client in opened:
        client.close()


@pytest.fixture
def compare_on(kvrepl_server: ThreadedServer, redis_server: RedisServer, r: redis.Redis,
               real: redis.Redis) -> Iterator[Callable[..., Compare]]:
    """``compare_on(protocol=2, db=1)``: a new comparer (see ``support.comparer``) over a fresh
    pair of connections to the flushed kvrepl and redis-server, without reply callbacks."""
    opened: list[redis.Redis] = []

    def make(**kwargs: object) -> Compare:
        ours = raw_replies(kvrepl_server.client(**kwargs))
        theirs = raw_replies(redis_server.client(**kwargs))
        opened.extend((ours, theirs))
        return comparer(ours, theirs)

    yield make
    for client in opened:
        client.close()


@pytest.fixture
def same(compare_on: Callable[..., Compare]) -> Compare:
    """``same("LPOS", "l", "a")``: run on kvrepl and redis-server over RESP2 and assert equal
    outcomes: the raw replies (redis-py's callbacks are off, so scores stay bulk strings and
    OK stays b"OK"), or the error messages. ``unordered=True`` compares array replies sorted
    (SMEMBERS). Returns kvrepl's reply."""
    return compare_on(protocol=2)


@pytest.fixture
def same3(compare_on: Callable[..., Compare]) -> Compare:
    """``same`` over RESP3 (HELLO 3): doubles, maps, sets, one null."""
    return compare_on(protocol=3)


@pytest.fixture
def wire(kvrepl_server: ThreadedServer, redis_server: RedisServer, r: redis.Redis,
         real: redis.Redis) -> Iterator[Compare]:
    """``wire("LPOP", "k", "2", protocol=3)``: kvrepl and redis-server must send the very same
    reply bytes (null bulk vs null array, RESP3 types, order). ``batch=[(...), ...]`` sends
    several commands at once; ``replies=N`` reads N replies a command. Returns the bytes."""
    compare, close = wire_comparer(kvrepl_server.port, redis_server.port)
    yield compare
    close()


@pytest.fixture
def propagated(engine: Engine) -> list[list[bytes]]:
    """What the in-process engine propagates to replicas, one argv per command."""
    log: list[list[bytes]] = []
    engine.propagate_listeners.append(lambda db, argv: log.append(list(argv)))
    return log


@pytest.fixture
def prop(engine: Engine, propagated: list[list[bytes]]) -> list[list[bytes]]:
    """``propagated`` with the engine's clock frozen at ``support.NOW_S``."""
    engine.keyspace.clock = lambda: NOW_S
    return propagated


@pytest.fixture
def server_propagated(kvrepl_server: ThreadedServer) -> Iterator[list[list[bytes]]]:
    """What the live kvrepl server propagates while the test runs."""
    log: list[list[bytes]] = []

    def listen(db: int, argv: list[bytes]) -> None:
        log.append(list(argv))

    kvrepl_server.engine.propagate_listeners.append(listen)
    yield log
    kvrepl_server.engine.propagate_listeners.remove(listen)


@pytest.fixture
def seed(kvrepl_server: ThreadedServer, r: redis.Redis, real: redis.Redis
         ) -> Callable[..., None]:
    """``seed("l", deque([b"a"]))``: the same value of any type on kvrepl and redis-server."""
    return lambda key, value, db=0: seed_value(kvrepl_server, real, key, value, db)


@pytest.fixture
def configure(kvrepl_server: ThreadedServer, real: redis.Redis
              ) -> Iterator[Callable[[str, object], None]]:
    """``configure("hash-max-listpack-entries", 4)``: CONFIG SET on the live kvrepl server and
    on redis-server alike; both are restored afterwards."""
    config = kvrepl_server.engine.config
    saved: dict[str, tuple[str, object]] = {}

    def apply(name: str, value: object) -> None:
        if name not in saved:
            saved[name] = (config.get(name), real.config_get(name)[name])
        config.set(name, str(value))
        real.config_set(name, value)

    yield apply
    for name, (ours, theirs) in saved.items():
        config.set(name, ours)
        real.config_set(name, theirs)


@pytest.fixture(scope="session")
def debug_redis() -> Iterator[RedisServer]:
    """A real redis-server with the DEBUG command enabled."""
    server = RedisServer("--enable-debug-command", "yes")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def certs() -> Iterator[Certs]:
    """A throwaway CA and certificates (trustme) for a module's TLS tests."""
    made = Certs()
    yield made
    shutil.rmtree(made.dir, ignore_errors=True)
