"""Shared fixtures: a kvrepl engine for unit tests, a live kvrepl server, a real redis-server.

``same(*args)`` sends one command to kvrepl and to a real redis-server 7.0 and asserts both
answer alike (replies, or error messages): the real server is the oracle.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis
from support import RedisServer, ThreadedServer

from kvrepl.commands.core import Engine, Session
from kvrepl.config import Config
from kvrepl.errors import ReplyError


@pytest.fixture
def engine() -> Engine:
    return Engine(Config(save=()))


@pytest.fixture
def session(engine: Engine) -> Session:
    return engine.new_session()


@pytest.fixture
def run(engine: Engine, session: Session) -> Callable[..., object]:
    """``run("SET", "k", "v")``: execute on the engine; errors are raised as ReplyError."""

    def execute(*args: object) -> object:
        argv = [a if isinstance(a, bytes) else str(a).encode() for a in args]
        reply = engine.execute(session, argv)
        if isinstance(reply, ReplyError):
            raise reply
        return reply

    return execute


@pytest.fixture(scope="session")
def kvrepl_server() -> Iterator[ThreadedServer]:
    server = ThreadedServer().start()
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


def _outcome(client: redis.Redis, args: tuple[object, ...]) -> object:
    try:
        return ("ok", client.execute_command(*args, NEVER_DECODE=True))
    except redis.ResponseError as err:
        return ("error", str(err))


@pytest.fixture
def same(r: redis.Redis, real: redis.Redis) -> Callable[..., object]:
    """``same("LPOS", "l", "a")``: run on kvrepl and redis-server; assert equal outcomes.

    ``unordered=True`` compares replies that are sets in disguise (SMEMBERS) sorted.
    Returns kvrepl's reply.
    """

    def compare(*args: object, unordered: bool = False) -> object:
        ours = _outcome(r, args)
        theirs = _outcome(real, args)
        if unordered:
            ours = (ours[0], sorted(ours[1]) if isinstance(ours[1], list) else ours[1])
            theirs = (theirs[0], sorted(theirs[1]) if isinstance(theirs[1], list) else theirs[1])
        assert ours == theirs, f"{args}: kvrepl {ours!r} != redis {theirs!r}"
        return ours[1]

    return compare
