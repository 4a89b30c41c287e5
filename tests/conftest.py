"""Shared fixtures: a kvrepl engine for unit tests, a live kvrepl server, a real redis-server.

``same(*args)`` sends one command to kvrepl and to a real redis-server 7.0 and asserts both
answer alike (replies, or error messages): the real server is the oracle.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis
import trio

from kvrepl.commands.core import Engine, Session
from kvrepl.config import Config
from kvrepl.errors import ReplyError
from kvrepl.server import Server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ThreadedServer:
    """A kvrepl Server running its own trio loop in a thread, for blocking clients."""

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config(save=())
        self.config.port = 0
        self.server = Server(config=self.config)
        self.engine = self.server.engine
        self.port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)
        self._error: BaseException | None = None

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        try:
            with trio.CancelScope() as scope:
                self._scope = scope
                async with trio.open_nursery() as nursery:
                    self.port = await nursery.start(self.server.serve)
                    self._ready.set()
        except BaseException as err:  # surfaced by start()
            self._error = err
            self._ready.set()

    def start(self) -> ThreadedServer:
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        try:
            trio.from_thread.run_sync(self._scope.cancel, trio_token=self._token)
        except trio.RunFinishedError:
            pass
        self._thread.join(10)

    def client(self, **kwargs: object) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, **kwargs)


class RedisServer:
    """A real redis-server on a free loopback port, stopped at teardown."""

    def __init__(self, *extra: str) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            message = "redis-server is not installed (apt-get install redis-server)"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        self.dir = tempfile.mkdtemp(prefix="kvrepl-redis-")
        self.port = free_port()
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, "--daemonize", "no", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=self.port, socket_timeout=1).ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)

    def client(self, **kwargs: object) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, **kwargs)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


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
