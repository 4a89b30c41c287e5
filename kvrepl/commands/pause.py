"""Client pauses (Redis 7.0 networking.c pauseClients): while one is on, the commands it
holds wait, and the dataset stays still (no expiry, no eviction).

Sans-IO: this module keeps the pauses and says whom they hold; the server makes a held
client wait (kvrepl/server/server.py) and runs its command again once the pause lessens.
Each user of a pause has its purpose (Redis's pause_purpose), so that FAILOVER, SHUTDOWN's
wait for replicas and CLIENT PAUSE can overlap and end independently: the strongest type
in force holds, until the latest end among the pauses of that type.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable
from dataclasses import dataclass


class PauseType(enum.IntEnum):
    """CLIENT_PAUSE_OFF / WRITE / ALL, ordered by how much they hold."""

    OFF = 0
    WRITE = 1  # commands that may replicate (writes, EXEC of writes, PUBLISH, EVAL ...)
    ALL = 2


@dataclass(frozen=True, slots=True)
class Paused:
    """The reply of a command a pause holds: the connection waits, then runs it again."""


PAUSED = Paused()


class ClientPause:
    """The pauses in force, by purpose ("failover", "shutdown", "client pause" ...)."""

    def __init__(self, on_change: Callable[[], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._purposes: dict[str, tuple[PauseType, float]] = {}
        self._on_change = on_change
        self._clock = clock
        self.type = PauseType.OFF
        self.end = 0.0  # monotonic seconds; math.inf for a pause without a deadline
        self.held = 0  # clients waiting for a pause to end (kept by the server)

    def pause(self, purpose: str, type_: PauseType, end: float = math.inf) -> None:
        """pauseClients: a pause for ``purpose`` until ``end`` (monotonic seconds); pausing
        again for the same purpose keeps the stronger type and the later end."""
        old = self._purposes.get(purpose)
        if old is not None:
            type_, end = max(old[0], type_), max(old[1], end)
        self._purposes[purpose] = (type_, end)
        self._update()

    def unpause(self, purpose: str) -> None:
        """unpauseClients: end the pause of ``purpose`` (nothing if it has none)."""
        if self._purposes.pop(purpose, None) is not None:
            self._update()

    def active(self) -> PauseType:
        """checkClientPauseTimeoutAndReturnIfPaused: the type in force, pauses past their
        end dropped first."""
        if self.type and self.end < self._clock():
            self._update()
        return self.type

    def holds(self, may_replicate: bool) -> bool:
        """Whether a command (one that may replicate, or not) must wait now."""
        kind = self.active()
        return kind is PauseType.ALL or (kind is PauseType.WRITE and may_replicate)

    def _update(self) -> None:
        now = self._clock()
        for purpose, (_, end) in list(self._purposes.items()):
            if end < now:
                del self._purposes[purpose]
        kind = max((t for t, _ in self._purposes.values()), default=PauseType.OFF)
        self.type = kind
        self.end = max((e for t, e in self._purposes.values() if t == kind), default=0.0)
        self._on_change()
