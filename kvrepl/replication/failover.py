"""Coordinated failover (Redis 6.2+ FAILOVER, replication.c failoverCommand and
updateFailoverStatus).

1. FAILOVER pauses clients' writes (ClientPause of kvrepl/commands/core.py, purpose
   "failover") and waits for a replica (the one named by TO, or any) to acknowledge the whole
   stream: ``waiting-for-sync``.
2. Then this master becomes a replica of it and sends ``PSYNC <replid> <offset+1> FAILOVER``:
   ``failover-in-progress``. The target, whose replid is ours, becomes a master (as REPLICAOF
   NO ONE: our replid becomes its replid2) and answers +CONTINUE; the pause ends.
3. A timeout in waiting-for-sync aborts, or with FORCE fails over anyway; an error reply to
   the PSYNC, or FAILOVER ABORT, makes this node a master again.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import trio

from kvrepl.commands.core import PAUSE_WRITE
from kvrepl.log import logger

if TYPE_CHECKING:
    from kvrepl.node import Node
    from kvrepl.replication.master import ReplicaLink

NO_FAILOVER = "no-failover"
WAIT_FOR_SYNC = "waiting-for-sync"
IN_PROGRESS = "failover-in-progress"

_PAUSE = "failover"
_POLL = 0.1  # Redis checks in beforeSleep; here on each ACK, and at least this often


class Failover:
    """The failover state of one node."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.state = NO_FAILOVER
        self.host: str | None = None
        self.port = 0
        self.end: float | None = None  # monotonic deadline of waiting-for-sync
        self.force = False

    def start(self, host: str | None, port: int, timeout_ms: int, force: bool) -> None:
        """Enter waiting-for-sync (the command checked its arguments and the replicas)."""
        self.host, self.port, self.force = host, port, force
        self.end = time.monotonic() + timeout_ms / 1000 if timeout_ms else None
        if host is not None:
            logger.info("FAILOVER requested to %s:%d.", host, port)
        else:
            logger.info("FAILOVER requested to any replica.")
        self.state = WAIT_FOR_SYNC
        self.node.engine.pause.pause(PAUSE_WRITE, purpose=_PAUSE)
        self.node._nursery.start_soon(self._watch)

    def find(self, host: str, port: int) -> ReplicaLink | None:
        """The attached replica at ``host``:``port`` (findReplica)."""
        return find_replica(self.node.replication.replicas, host, port)

    @property
    def active(self) -> bool:
        """A failover is under way (FAILOVER ABORT has something to abort)."""
        return self.state != NO_FAILOVER

    @property
    def pings_held(self) -> bool:
        """Redis does not ping replicas while a FAILOVER with a timeout holds clients: the
        PING would move the offset the replicas must reach."""
        return self.state != NO_FAILOVER and self.end is not None

    async def _watch(self) -> None:
        replication = self.node.replication
        while self.state == WAIT_FOR_SYNC:
            self.update()
            if self.state != WAIT_FOR_SYNC:
                return
            wait = _POLL if self.end is None else min(_POLL, max(0.0, self.end - time.monotonic()))
            with trio.move_on_after(wait):
                await replication.acked.wait()

    def update(self) -> None:
        """updateFailoverStatus: time out, or start the handover once a replica caught up."""
        if self.state != WAIT_FOR_SYNC:
            return
        if self.end is not None and self.end <= time.monotonic():
            if self.force:
                logger.info("FAILOVER to %s:%d time out exceeded, failing over.",
                            self.host, self.port)
                self._hand_over()
            else:
                self.abort("Replica never caught up before timeout")
            return
        replication = self.node.replication
        offset = replication.master_repl_offset
        link = None
        if self.host is not None:
            link = find_replica(replication.replicas, self.host, self.port)
        else:
            for candidate in replication.replicas:
                if candidate.ack_offset == offset:
                    link = candidate
                    self.host, self.port = candidate.ip, candidate.listening_port
                    break
        if link is not None and link.ack_offset == offset:
            logger.info("Failover target %s:%d is synced, failing over.", self.host, self.port)
            self._hand_over()

    def _hand_over(self) -> None:
        self.state = IN_PROGRESS
        self.node.follow_address(self.host, self.port, failover=self)

    def succeeded(self) -> None:
        """The target answered PSYNC FAILOVER with +CONTINUE (or +FULLRESYNC)."""
        if self.state == IN_PROGRESS:
            self.clear()

    def abort(self, why: str) -> None:
        """abortFailover: back to a master (if the handover had started), writes resume."""
        if self.state == NO_FAILOVER:
            return
        if self.host is not None:
            logger.info("FAILOVER to %s:%d aborted: %s", self.host, self.port, why)
        else:
            logger.info("FAILOVER to any replica aborted: %s", why)
        if self.state == IN_PROGRESS:
            self.node.stop_following()
        self.clear()

    def clear(self) -> None:
        """clearFailoverState."""
        self.state = NO_FAILOVER
        self.host, self.port, self.end, self.force = None, 0, None, False
        self.node.engine.pause.unpause(_PAUSE)


def find_replica(links: list[ReplicaLink], host: str, port: int) -> ReplicaLink | None:
    """findReplica: the replica at ``host`` (its announced or peer IP) and listening port."""
    for link in links:
        if link.ip.lower() == host.lower() and link.listening_port == port:
            return link
    return None


