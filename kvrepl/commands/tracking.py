"""Client-side caching (Redis's ``tracking.c``): CLIENT TRACKING and invalidation messages.

A tracking client in the default mode is remembered as holding every key its read-only
commands named; when such a key is modified (the signal WATCH uses: the dispatcher's
modified-key positions, the store's expiry, eviction), each client holding it gets one
invalidation and forgets it. A client in BCAST mode holds no keys: it gets, once per turn
of the event loop (Redis's ``beforeSleep``), the modified keys under its prefixes. A flush
invalidates everything with a null. Invalidations go to the client itself in RESP3
(``>2 invalidate [keys]``) or to the client it REDIRECTs to: a RESP3 one, or a RESP2 one
subscribed to ``__redis__:invalidate`` (``message __redis__:invalidate [keys]``).

As in Redis, keys are names, not (db, name) pairs, and a message meant for the client
whose command is running is held until after that command's reply.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kvrepl.commands.spec import key_positions
from kvrepl.protocol.replies import DeferredSet, Push, Raw

if TYPE_CHECKING:
    from kvrepl.commands.core import Command, Engine, Session

INVALIDATE_CHANNEL = b"__redis__:invalidate"
_NULLS = (Raw(b"$-1\r\n"), Raw(b"_\r\n"))  # shared.null by the tracking client's protocol


@dataclass(slots=True)
class ClientTracking:
    """One client's CLIENT TRACKING state (the CLIENT_TRACKING_* flags)."""

    redirect: int = 0
    bcast: bool = False
    optin: bool = False
    optout: bool = False
    noloop: bool = False
    caching: bool = False  # CLIENT CACHING given for the next command
    broken_redirect: bool = False
    prefixes: list[bytes] = field(default_factory=list)


@dataclass(slots=True)
class _Prefix:
    """bcastState: who broadcasts on a prefix, and the keys modified since the last turn
    (with the client that modified each last, for NOLOOP)."""

    clients: dict[int, Session] = field(default_factory=dict)
    keys: dict[bytes, Session | None] = field(default_factory=dict)


class Tracking:
    """The node's invalidation table and prefix table."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.table: dict[bytes, dict[int, None]] = {}  # key -> ids of clients holding it
        self.prefixes: dict[bytes, _Prefix] = {}
        self.clients = 0  # tracking_clients
        self.items = 0  # TrackingTableTotalItems
        self.pending: list[bytes | None] = []  # for the running client, after its reply
        self._over_limit = 0
        # BCAST invalidations wait for the end of the turn (the server's read of one
        # client, its cron; without a server, the command): broadcast() then.
        self.due = False

    @property
    def observing(self) -> bool:
        """Whether modified keys must be reported here at all."""
        return bool(self.table or self.prefixes)

    # -- CLIENT TRACKING ---------------------------------------------------------------------
    def enable(self, s: Session, redirect: int, bcast: bool, optin: bool, optout: bool,
               noloop: bool, prefixes: list[bytes]) -> None:
        """enableTracking (options already checked)."""
        state = s.tracking
        if state is None:
            state = s.tracking = ClientTracking()
            self.clients += 1
        state.redirect = redirect
        state.broken_redirect = False
        state.bcast, state.optin, state.optout, state.noloop = bcast, optin, optout, noloop
        if bcast:
            for prefix in prefixes or [b""]:
                entry = self.prefixes.setdefault(prefix, _Prefix())
                if s.id not in entry.clients:
                    entry.clients[s.id] = s
                    state.prefixes.append(prefix)
        self.engine.tracking_changed()

    def disable(self, s: Session) -> None:
        """disableTracking: its ids stay in the table, dropped lazily as in Redis."""
        state = s.tracking
        if state is None:
            return
        for prefix in state.prefixes:
            entry = self.prefixes.get(prefix)
            if entry is not None:
                entry.clients.pop(s.id, None)
                if not entry.clients:
                    del self.prefixes[prefix]
        s.tracking = None
        self.clients -= 1
        self.engine.tracking_changed()

    # -- remembering -----------------------------------------------------------------------
    def remember(self, s: Session, cmd: Command, argv: list[bytes]) -> None:
        """trackingRememberKeys: after a read-only command of a default-mode client."""
        state = s.tracking
        if (state.optin and not state.caching) or (state.optout and state.caching):
            return
        if cmd.spec.is_pubsub:
            return
        table = self.table
        was_empty = not table
        for index in key_positions(cmd.spec, argv):
            ids = table.get(argv[index])
            if ids is None:
                ids = table[argv[index]] = {}
            if s.id not in ids:
                ids[s.id] = None
                self.items += 1
        if was_empty and table:
            self.engine.tracking_changed()

    # -- invalidating ----------------------------------------------------------------------
    def invalidate(self, key: bytes, bcast: bool = True) -> None:
        """trackingInvalidateKey: ``key`` was modified (``bcast``) or is dropped from the
        table (``bcast`` False: tracking-table-max-keys)."""
        current = self.engine.current
        if bcast and self.prefixes:
            for prefix, entry in self.prefixes.items():
                if key.startswith(prefix):
                    entry.keys.pop(key, None)  # the rax keeps keys sorted, see broadcast
                    entry.keys[key] = current
                    self.due = True
        ids = self.table.pop(key, None)
        if ids is None:
            return
        self.items -= len(ids)
        sessions = self.engine.sessions
        for client_id in ids:
            target = sessions.get(client_id)
            if target is None or target.tracking is None or target.tracking.bcast:
                continue
            if target is current:
                if target.tracking.noloop:
                    continue
                self.pending.append(key)  # after the running command's reply
            else:
                self.send(target, [key])
        if not self.table and not self.prefixes:
            self.engine.tracking_changed()

    def after_command(self) -> None:
        """trackingHandlePendingKeyInvalidations: what the running client's command made it
        invalidate, after its reply."""
        pending, self.pending = self.pending, []
        current = self.engine.current
        if current is not None and current.tracking is not None:
            for key in pending:
                self.send(current, [key] if key is not None else _NULLS[current.resp3])


    def flushed(self) -> None:
        """trackingInvalidateKeysOnFlush: every tracking client is told all its keys are
        invalid (a null), and the table is emptied."""
        if self.clients:
            current = self.engine.current
            for s in list(self.engine.sessions.values()):
                if s.tracking is not None:
                    if s is current:
                        self.pending.append(None)
                    else:
                        self.send(s, _NULLS[s.resp3])
        if self.table:
            self.table = {}
            self.items = 0
            self.engine.tracking_changed()

    def limit(self) -> None:
        """trackingLimitUsedSlots: keep the table within tracking-table-max-keys by
        invalidating random keys, with more effort each time it stays over."""
        max_keys = self.engine.config.tracking_table_max_keys
        if not max_keys or len(self.table) <= max_keys:
            self._over_limit = 0
            return
        effort = 100 * (self._over_limit + 1)
        keys = list(self.table)
        random.shuffle(keys)
        for key in keys[:effort]:
            self.invalidate(key, bcast=False)
            if len(self.table) <= max_keys:
                self._over_limit = 0
                return
        self._over_limit += 1

    def broadcast(self) -> None:
        """trackingBroadcastInvalidationMessages: each prefix's modified keys (in byte
        order, as Redis's radix tree keeps them) to its BCAST clients."""
        self.due = False
        for _, entry in sorted(self.prefixes.items()):  # the radix tree's order
            if not entry.keys:
                continue
            keys = sorted(entry.keys)
            common = None
            for s in list(entry.clients.values()):
                if s.tracking is not None and s.tracking.noloop:
                    own = [key for key in keys if entry.keys[key] is not s]
                    if own:
                        self.send(s, own)
                else:
                    if common is None:
                        common = keys
                    self.send(s, common)
            entry.keys = {}



    # -- delivering ------------------------------------------------------------------------
    def send(self, s: Session, keys: list[bytes] | Raw) -> None:
        """sendTrackingMessage: to ``s`` (RESP3) or to the client it redirects to."""
        state = s.tracking
        target = s
        redirected = False
        if state is not None and state.redirect:
            target = self.engine.sessions.get(state.redirect)
            if target is None:
                state.broken_redirect = True
                if s.resp3:
                    self._deliver(s, Push([b"tracking-redir-broken", state.redirect]))
                return
            redirected = True
        if target.resp3:
            self._deliver(target, Push([b"invalidate", keys]))
        elif redirected and (target.channels or target.patterns):
            self._deliver(target, Push([b"message", INVALIDATE_CHANNEL, keys]))

    def _deliver(self, target: Session, message: Push) -> None:
        if target is self.engine.current:
            target.after_reply.append(message)
        else:
            target.push(message)


def trackinginfo(s: Session) -> dict[bytes, object]:
    """CLIENT TRACKINGINFO's map (the flags' length set after them)."""
    state = s.tracking
    if state is None:
        return {b"flags": DeferredSet([b"off"]), b"redirect": -1, b"prefixes": []}
    flags = [b"on"]
    if state.bcast:
        flags.append(b"bcast")
    if state.optin:
        flags.append(b"optin")
        if state.caching:
            flags.append(b"caching-yes")
    if state.optout:
        flags.append(b"optout")
        if state.caching:
            flags.append(b"caching-no")
    if state.noloop:
        flags.append(b"noloop")
    if state.broken_redirect:
        flags.append(b"broken_redirect")
    return {b"flags": DeferredSet(flags), b"redirect": state.redirect,
            b"prefixes": sorted(state.prefixes)}
