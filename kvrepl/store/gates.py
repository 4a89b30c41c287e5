"""The gates of the fast lanes: named node-wide reasons to run commands the general way.

The fast lanes (:mod:`kvrepl.commands.plain`, :mod:`kvrepl.direct_reads`) skip the general
dispatch's checks, hooks and observers. They may only do so while none of those could act,
so whatever installs a check, hook or observer (MONITOR, WATCH, a snapshot's copy-on-write,
keyspace notifications, client-side caching, a blocked client, a client pause, maxmemory,
the LFU clock, loading, a read-only replica...) closes a gate here by name where it
registers it, and opens it where it unregisters it. The lanes read one derived flag instead
of a list of conditions, so a new kind of observer closes them by registering, not by being
remembered in the lanes' code.

A gate closes every lane unless registered as narrower: ``clients_only`` (a refusal of
normal clients, which a replica's link to its master never meets) or ``writes_only`` (what
only a write could meet: WATCH, a snapshot, a blocked client, READONLY, MISCONF...), which
leaves the direct reads open.

Sans-IO: a plain registry of names.
"""

from __future__ import annotations

from collections.abc import Callable


class Gates:
    """Named closed gates; :attr:`open` (no gate closed), :attr:`link_open` (none but
    client-only ones, which a replica's link to its master never meets) and
    :attr:`read_open` (none but writes-only ones) are derived."""

    __slots__ = ("_closed", "_client_only", "_writes_only", "open", "link_open",
                 "read_open", "on_read_open")

    def __init__(self) -> None:
        self._closed: set[str] = set()
        self._client_only: set[str] = set()
        self._writes_only: set[str] = set()  # closed gates that leave reads open
        self.open = True
        self.link_open = True
        self.read_open = True
        # Called when read_open changes (the keyspace tells the direct reads, which bind
        # it: kvrepl.direct_reads).
        self.on_read_open: Callable[[], None] | None = None

    def set(self, reason: str, closed: bool, *, clients_only: bool = False,
            writes_only: bool = False) -> None:
        """Close (``closed``) or open the gate ``reason``. ``clients_only``: a refusal of
        normal clients' commands (read-only, MISCONF, NOREPLICAS...), which the master link
        of a replica is never subject to. ``writes_only``: nothing a read could meet (the
        direct reads stay open)."""
        bucket = self._client_only if clients_only else self._closed
        if closed:
            if reason in bucket:
                return
            bucket.add(reason)
            if writes_only:
                self._writes_only.add(reason)
        elif reason in bucket:
            bucket.discard(reason)
            self._writes_only.discard(reason)
        else:
            return
        self.link_open = not self._closed
        self.open = self.link_open and not self._client_only
        read_open = (self._closed | self._client_only) <= self._writes_only
        if read_open is not self.read_open:
            self.read_open = read_open
            if self.on_read_open is not None:
                self.on_read_open()

    def closed(self) -> list[str]:
        """The gates closed now (for messages and tests)."""
        return sorted(self._closed | self._client_only)
