"""Transactions: MULTI EXEC DISCARD WATCH UNWATCH (Redis 7.0 ``multi.c``).

The engine queues commands while ``session.multi`` is a list and runs them in
:meth:`~kvrepl.commands.core.Engine.exec_transaction`; WATCH bookkeeping (including Redis
7.0's rules for keys that were already expired when watched) is
:class:`kvrepl.commands.watch.WatchRegistry`.
"""

from __future__ import annotations

from kvrepl.commands.core import Session, command, unwatch
from kvrepl.errors import ReplyError
from kvrepl.protocol.replies import OK


@command("multi")
def multi(s: Session, argv: list[bytes]) -> object:
    """MULTI: start queueing commands."""
    if s.multi is not None:
        raise ReplyError("ERR MULTI calls can not be nested")
    s.set_multi([])
    s.multi_error = False
    return OK


@command("exec")
def exec_(s: Session, argv: list[bytes]) -> object:
    """EXEC: run the queue, or EXECABORT after queueing errors, or nil if a watch fired."""
    if s.multi is None:
        raise ReplyError("ERR EXEC without MULTI")
    return s.engine.exec_transaction(s)


@command("discard")
def discard(s: Session, argv: list[bytes]) -> object:
    """DISCARD: drop the queue and every watch."""
    if s.multi is None:
        raise ReplyError("ERR DISCARD without MULTI")
    s.set_multi(None)
    s.multi_error = False
    unwatch(s)
    return OK


@command("watch")
def watch(s: Session, argv: list[bytes]) -> object:
    """WATCH key [key ...]: EXEC fails if one of them changes before it."""
    if s.multi is not None:
        raise ReplyError("ERR WATCH inside MULTI is not allowed")
    if s.dirty_cas:
        return OK  # EXEC will fail anyway: no point in watching more
    for key in argv[1:]:
        s.engine.watches.watch(s, key)
    return OK


@command("unwatch")
def unwatch_(s: Session, argv: list[bytes]) -> object:
    """UNWATCH: forget every watched key (and a pending failure)."""
    unwatch(s)
    return OK
