"""WATCH bookkeeping, as Redis 7.0's ``multi.c`` does it.

A watched key "changes" when a command that changed the dataset wrote it, when it is deleted
for having expired, or when FLUSHDB/FLUSHALL/SWAPDB replace its database. Redis 7.0 also
remembers whether a key was already logically expired when it was watched: deleting such a
key is no logical change, and EXEC does not fail just because it is expired.

The store signals a key *before* a write (that is what a running snapshot needs); whether
the write changed anything is only known after the command, so those signals are held until
the command ends and dropped when the dataset did not change (``SET k v NX`` on an existing
key touches nothing, as in Redis). The dispatcher signals only the keys a command may modify
(not its read-only sources, key spec flag RO); a command that names several keys it may
modify and knows it changed only some says so (:meth:`WatchRegistry.changed_only`).

The same signal invalidates the keys client-side caching tracks (Redis's
``signalModifiedKey`` is ``touchWatchedKey`` and ``trackingInvalidateKey``): while any key
is tracked, the held signals also cover the keys :class:`~kvrepl.commands.tracking.Tracking`
wants to hear of, and each applied one invalidates there too.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kvrepl.commands.core import Session
    from kvrepl.commands.tracking import Tracking
    from kvrepl.store import Database, Keyspace

Item = tuple[int, bytes]


class WatchRegistry:
    """Who watches which (db, key); flags sessions whose EXEC must fail."""

    def __init__(self, keyspace: Keyspace, tracking: Tracking) -> None:
        self.keyspace = keyspace
        self.tracking = tracking
        self.by_key: dict[Item, set[Session]] = {}
        self.pending: list[Item] = []  # keys signalled during the running command
        self._hooked = False

    def refresh_hooks(self) -> None:
        """Listen to the store's writes and expiries only while someone wants to know:
        a WATCH, or client-side caching with keys to invalidate."""
        wanted = bool(self.by_key) or self.tracking.observing
        if wanted != self._hooked:
            self._hooked = wanted
            keyspace = self.keyspace
            if wanted:
                keyspace.add_before_write_hook(self._before_write)
                keyspace.expired_listeners.append(self._expired)
            else:
                keyspace.remove_before_write_hook(self._before_write)
                keyspace.expired_listeners.remove(self._expired)

    def watch(self, session: Session, key: bytes) -> None:
        db = session.db
        item = (db.id, key)
        if item in session.watched:
            return
        session.watched[item] = key in db.data and db.is_expired(key)
        self.by_key.setdefault(item, set()).add(session)
        self.refresh_hooks()

    def unwatch(self, session: Session) -> None:
        for item in session.watched:
            sessions = self.by_key.get(item)
            if sessions is not None:
                sessions.discard(session)
                if not sessions:
                    del self.by_key[item]
        session.watched.clear()
        self.refresh_hooks()

    # -- signals ---------------------------------------------------------------------------
    def _before_write(self, db: Database, key: bytes) -> None:
        # Outside a command (the keyspace's clock is frozen only while one runs) the only
        # writes are expiry deletions, which _expired sees after the key is gone (what
        # touchWatchedKey needs to know).
        if self.keyspace.frozen and ((db.id, key) in self.by_key or self.tracking.observing):
            self.pending.append((db.id, key))

    def _expired(self, db: Database, key: bytes) -> None:
        if (db.id, key) in self.by_key:
            self.touch(db, key)
        if self.tracking.observing:
            self.tracking.invalidate(key)

    def changed_only(self, db: Database, *keys: bytes) -> None:
        """The running command changed ``keys`` of ``db`` and none of the other keys it
        names (LMPOP pops one of its lists, DEL deletes only the keys that exist, SMOVE
        leaves a destination that already has the member): their held signals are dropped,
        as Redis calls signalModifiedKey only for what changed. Cheap when nobody watches
        them (nothing is held)."""
        if self.pending:
            kept = {(db.id, key) for key in keys}
            self.pending = [item for item in self.pending if item in kept]

    def destination_first(self, db: Database, source: bytes, destination: bytes) -> None:
        """The running command signals ``destination`` before ``source``, where its key specs
        name them the other way round (LMOVE's family: lmoveHandlePush signals the list it
        pushes on, then lmoveGenericCommand the source): client-side caching's invalidations
        go out in that order."""
        pending = self.pending
        if len(pending) >= 2 and pending[-2:] == [(db.id, source), (db.id, destination)]:
            pending[-2:] = pending[:-3:-1]

    def command_done(self, changed: bool) -> None:
        """End of a command: apply its held signals if it changed the dataset."""
        pending, self.pending = self.pending, []
        if changed:
            dbs = self.keyspace.dbs
            tracking = self.tracking
            for db_index, key in pending:
                self.touch(dbs[db_index], key)
                if tracking.observing:
                    tracking.invalidate(key)

    def touch(self, db: Database, key: bytes) -> None:
        """``touchWatchedKey``: ``key`` of ``db`` was modified (or deleted)."""
        item = (db.id, key)
        for session in list(self.by_key.get(item, ())):
            if session.watched.get(item):
                if key not in db.data:
                    # It was already expired when watched; now it is gone: no change.
                    session.watched[item] = False
                    continue
            session.dirty_cas = True
            # Its EXEC fails whatever else changes: its keys are forgotten now (Redis's
            # unwatchAllKeys here, which CLIENT LIST's tot-mem shows).
            self.unwatch(session)

    def touch_all_in_db(self, emptied: Database, replaced_with: Database | None) -> None:
        """``touchAllWatchedKeysInDb``: FLUSHDB/FLUSHALL (no replacement) and SWAPDB."""
        for item, sessions in list(self.by_key.items()):
            db_index, key = item
            if db_index != emptied.id:
                continue
            exists_in_emptied = key in emptied.data
            in_replacement = replaced_with is not None and key in replaced_with.data
            if not (exists_in_emptied or in_replacement):
                continue
            for session in list(sessions):
                if session.watched.get(item):
                    if not in_replacement:
                        session.watched[item] = False  # expired key now deleted
                        continue
                    if replaced_with.is_expired(key):
                        continue  # expired key remains expired
                elif not exists_in_emptied and replaced_with.is_expired(key):
                    session.watched[item] = True  # missing key replaced by an expired one
                    continue
                session.dirty_cas = True

    def expired_since_watch(self, session: Session) -> bool:
        """``isWatchedKeyExpired``: a key that was live when watched is now expired."""
        dbs = self.keyspace.dbs
        for (db_index, key), was_expired in session.watched.items():
            if not was_expired:
                db = dbs[db_index]
                if key in db.data and db.is_expired(key):
                    return True
        return False


def unsignalled(handler: Callable[[Session, list[bytes]], object]
                ) -> Callable[[Session, list[bytes]], object]:
    """A write command that changes its key without Redis 7.0's signalModifiedKey: WATCH
    does not see it, client-side caching is not told (the consumer group commands and
    XSETID: only XADD, XDEL, XTRIM and XGROUP CREATE MKSTREAM's new stream signal a stream;
    PFDEBUG's conversions). The signals the dispatcher held for its keys are dropped when
    it ends (each command's are applied as it ends, so only its own are held)."""

    @wraps(handler)
    def run(s: Session, argv: list[bytes]) -> object:
        try:
            return handler(s, argv)
        finally:
            s.engine.watches.changed_only(s.db)

    return run
