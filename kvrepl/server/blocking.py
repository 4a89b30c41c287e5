"""Clients blocked on keys (BLPOP, BZPOPMIN, BLMOVE ...), served in arrival order."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import trio

from kvrepl.commands.core import Block, Engine, Session


@dataclass(eq=False, slots=True)
class Waiter:
    session: Session
    argv: list[bytes]
    db: int
    keys: list[bytes]
    wake_on_delete: bool = False
    done: trio.Event = field(default_factory=trio.Event)
    reply: object = None


class BlockingManager:
    """Keeps, per (db, key), the FIFO of clients waiting on it.

    When a command creates a list or sorted set that someone waits on, the store marks the
    key ready; after that command the engine calls :meth:`serve_ready`, which re-runs each
    waiter's command in arrival order until one cannot be served (the key is empty again).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.waiting: dict[tuple[int, bytes], deque[Waiter]] = {}
        engine.on_ready_keys = self.serve_ready

    async def wait(self, session: Session, argv: list[bytes], block: Block) -> object:
        """Wait until ``argv`` can be served or ``block.timeout`` passes; return the reply."""
        waiter = Waiter(session, argv if block.argv is None else block.argv, session.db.id,
                        list(dict.fromkeys(block.keys)), block.wake_on_delete)
        keyspace = self.engine.keyspace
        for key in waiter.keys:
            self.waiting.setdefault((waiter.db, key), deque()).append(waiter)
            keyspace.block_key(waiter.db, key)
        session.blocked = waiter
        try:
            timeout = block.timeout if block.timeout > 0 else math.inf
            with trio.move_on_after(timeout):
                await waiter.done.wait()
            if waiter.done.is_set():
                return waiter.reply
            return block.timeout_reply
        finally:
            session.blocked = None
            self._forget(waiter)

    def unblock(self, session: Session, reply: object) -> bool:
        """CLIENT UNBLOCK: end ``session``'s wait with ``reply``."""
        waiter = getattr(session, "blocked", None)
        if waiter is None or waiter.done.is_set():
            return False
        waiter.reply = reply
        waiter.done.set()
        self._forget(waiter)
        return True

    def _forget(self, waiter: Waiter) -> None:
        keyspace = self.engine.keyspace
        for key in waiter.keys:
            queue = self.waiting.get((waiter.db, key))
            if queue is None:
                continue
            try:
                queue.remove(waiter)
            except ValueError:
                pass
            if not queue:
                del self.waiting[(waiter.db, key)]
                keyspace.unblock_key(waiter.db, key)

    def serve_ready(self) -> None:
        """Serve the clients blocked on keys that became ready (``handleClientsBlockedOnKeys``).

        Per key, waiters are tried in arrival order, each told which key woke it. One that
        still cannot be served (a BZPOPMIN on a key that is now a list) keeps waiting and the
        next one is tried, as Redis skips waiters of another type; once the key is gone, the
        rest keep waiting, except those that asked to hear of the deletion (XREADGROUP).
        """
        keyspace = self.engine.keyspace
        while keyspace.ready_keys:
            ready, keyspace.ready_keys = keyspace.ready_keys, []
            for db, key in dict.fromkeys(ready):
                data = keyspace.dbs[db].data
                for waiter in list(self.waiting.get((db, key), ())):
                    if key not in data and not waiter.wake_on_delete:
                        continue  # emptied (or never there): it keeps waiting
                    if waiter.done.is_set():
                        continue  # served through another of its keys meanwhile
                    # Redis serves a client from the key that became ready, not from the
                    # first non-empty key of its list: handlers look at ready_key first.
                    waiter.session.ready_key = key
                    try:
                        reply = self.engine.run_unblocked(waiter.session, waiter.argv)
                    finally:
                        waiter.session.ready_key = None
                    if type(reply) is Block:
                        continue  # not served by this key (another type): keep waiting
                    waiter.reply = reply
                    waiter.done.set()
                    self._forget(waiter)
