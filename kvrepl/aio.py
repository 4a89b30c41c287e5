"""kvrepl in an asyncio program: the nodes run on the asyncio event loop (trio's guest
mode, no thread), and ``node.aredis()`` is a real ``redis.asyncio.Redis`` talking to them.

    async def main():                                # an asyncio program
        async with kvrepl.in_asyncio(kvrepl.Master()) as master:
            r = master.aredis(decode_responses=True)
            await r.set("k", "v")
            item = await r.blpop("jobs", timeout=5)   # really waits: other tasks run
            master.get("k")                           # the data methods work too

    asyncio.run(main())

Why this design: kvrepl's nodes are trio code, and trio can run as a *guest* inside
another event loop (``trio.lowlevel.start_guest_run``, part of trio's public API): the
node's tasks are then scheduled by the asyncio loop the application already runs, on its
thread. No second thread means nothing is shared across threads: the data methods
(``master.get``...) stay plain calls, safe from asyncio code. No extra dependency
(trio-asyncio is not needed).

``aredis()``'s connections are each a client of the node, served by its server code (the
same as a TCP client's, over a ``socket.socketpair()``: no port, no network): everything
that waits (BLPOP, XREAD BLOCK, WAIT, pub/sub) waits without holding the loop, pipelines,
transactions and RESP3 are redis-py's own. ``aredis()`` also works when the node runs in
a trio program on another thread (the connection is handed over thread-safely), but then
only ``aredis()`` may be used from asyncio, not the data methods.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any

import redis.asyncio
import trio
from redis.asyncio.connection import AbstractConnection

if TYPE_CHECKING:
    from kvrepl.node import Node

_HOST = "kvrepl in-process node"


class AsyncioInProcessConnection(AbstractConnection):
    """A ``redis.asyncio`` connection to a kvrepl node of this process (see module doc)."""

    def __init__(self, *, node: Node, **kwargs: Any) -> None:
        kwargs.setdefault("driver_info", None)  # no CLIENT SETINFO to a node in-process
        super().__init__(**kwargs)
        self.node = node
        self.host = _HOST
        self.port = node.port or 0

    def repr_pieces(self) -> list[tuple[str, object]]:
        """What ``repr()`` shows: the node's kind and the db."""
        return [("node", type(self.node).__name__), ("db", self.db)]

    async def _connect(self) -> None:
        ours, theirs = socket.socketpair()
        try:
            self.node.serve_socket(theirs)
        except BaseException:
            ours.close()
            theirs.close()
            raise
        self._reader, self._writer = await asyncio.open_connection(sock=ours)

    def _host_error(self) -> str:
        return _HOST


def client(node: Node, **kwargs: Any) -> redis.asyncio.Redis:
    """A ``redis.asyncio.Redis`` for ``node``; ``kwargs`` are redis-py's."""
    pool = redis.asyncio.ConnectionPool(connection_class=AsyncioInProcessConnection,
                                        node=node, **kwargs)
    return redis.asyncio.Redis(connection_pool=pool)


@asynccontextmanager
async def in_asyncio(*nodes: Node) -> AsyncIterator[Any]:
    """Run ``nodes`` (started in order, stopped in reverse) on the running asyncio loop
    for the length of the block; yields the node, or the tuple of them when several
    (``async with in_asyncio(master, Replica(follow=master)) as (master, replica)``).
    Nodes that replicate in-process must be started by the same call (one trio run)."""
    if not nodes:
        raise TypeError("in_asyncio() needs at least one node")
    loop = asyncio.get_running_loop()
    started: asyncio.Future[None] = loop.create_future()
    finished: asyncio.Future[Any] = loop.create_future()
    stop: list[trio.Event] = []
    token: list[trio.lowlevel.TrioToken] = []

    async def run() -> None:
        stop.append(trio.Event())
        token.append(trio.lowlevel.current_trio_token())
        async with AsyncExitStack() as stack:
            for node in nodes:
                await stack.enter_async_context(node)
            if not started.done():
                started.set_result(None)  # the guest runs on the loop's own thread
            await stop[0].wait()

    def done(outcome: Any) -> None:
        if not finished.done():
            finished.set_result(outcome)

    trio.lowlevel.start_guest_run(
        run, run_sync_soon_threadsafe=loop.call_soon_threadsafe,
        run_sync_soon_not_threadsafe=loop.call_soon, done_callback=done,
        host_uses_signal_set_wakeup_fd=True)
    await asyncio.wait([started, finished], return_when=asyncio.FIRST_COMPLETED)
    if finished.done():  # a node failed to start
        finished.result().unwrap()
    try:
        yield nodes[0] if len(nodes) == 1 else nodes
    finally:
        if not finished.done():
            token[0].run_sync_soon(stop[0].set)
        (await finished).unwrap()


__all__ = ["AsyncioInProcessConnection", "client", "in_asyncio"]
