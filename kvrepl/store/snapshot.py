"""A point-in-time view of the keyspace that costs no fork and almost no stall to take.

Taking a :class:`KeyspaceView` lists each database's keys (``list(dict)``, the one
synchronous step: ~20 ms per million keys) and keeps a reference to its live dicts. Values
are read from the live dicts only when the view hands a key out, so the view must learn of
every change made before that: the store calls its hook (``Keyspace.before_write_hooks``)
before any write, and the view stashes the key's value and expiry of that instant (a private
copy for lists, hashes, sets and sorted sets, which change in place; ``bytes`` need none).
Per-key copy-on-write, as Dragonfly's versioned snapshots do without fork.

FLUSHALL, FLUSHDB, SWAPDB and loads replace or exchange whole dict objects instead of
mutating them, so the view, which holds the original objects, is unaffected; the hook
finds the view's dict by identity, wherever SWAPDB moved it.
"""

from __future__ import annotations

from collections.abc import Iterator

from kvrepl.store.database import Database, Keyspace
from kvrepl.store.values import copy_value

_ABSENT = object()  # stashed for a key that did not exist at the snapshot instant


class _DbView:
    __slots__ = ("index", "data", "expires", "keys", "expires_count", "stash")

    def __init__(self, db: Database) -> None:
        self.index = db.id
        self.data = db.data
        self.expires = db.expires
        self.keys = list(db.data)
        self.expires_count = len(db.expires)
        # key -> (value, expire) as of the snapshot instant, for keys changed since
        self.stash: dict[bytes, tuple[object, int | None]] = {}


class KeyspaceView:
    """The keyspace frozen at construction; ``close()`` (or exhausting it) unhooks it."""

    def __init__(self, keyspace: Keyspace) -> None:
        self.keyspace = keyspace
        self._views = [_DbView(db) for db in keyspace.dbs if db.data]
        self._by_dict = {id(view.data): view for view in self._views}
        self.copies = 0  # containers copied because a write came before the view wrote them
        self._hooked = True
        keyspace.before_write_hooks.append(self._before_write)

    def __len__(self) -> int:
        return sum(len(view.keys) for view in self._views)

    def _before_write(self, db: Database, key: bytes) -> None:
        view = self._by_dict.get(id(db.data))
        if view is None or key in view.stash:
            return
        value = view.data.get(key, _ABSENT)
        if value is not _ABSENT and type(value) is not bytes:
            value = copy_value(value)
            self.copies += 1
        view.stash[key] = (value, view.expires.get(key))

    def db_sizes(self) -> list[tuple[int, int, int]]:
        """``(db, keys, keys with expiry)`` for each non-empty db (RESIZEDB)."""
        return [(view.index, len(view.keys), view.expires_count) for view in self._views]

    def entries(self, batch: int = 1024) -> Iterator[list[tuple[int, bytes, object, int | None]]]:
        """Batches of ``(db, key, value, expire_ms)``, db by db, each as of the snapshot."""
        try:
            for view in self._views:
                data, expires, stash, index = view.data, view.expires, view.stash, view.index
                keys = view.keys
                for start in range(0, len(keys), batch):
                    chunk = []
                    for key in keys[start:start + batch]:
                        if stash and key in stash:
                            value, expire = stash.pop(key)
                            if value is _ABSENT:
                                continue
                        else:
                            value = data[key]
                            expire = expires.get(key) if expires else None
                        chunk.append((index, key, value, expire))
                    yield chunk
                # Written out: later writes to this db no longer concern the view.
                del self._by_dict[id(data)]
                view.keys = []
                stash.clear()
        finally:
            self.close()

    def batches(self, batch: int = 2048) -> Iterator[
            tuple[int, list[tuple[bytes, object]], dict[bytes, int]]]:
        """``(db, [(key, value), ...], expires)`` per slice of keys, each as of the snapshot:
        the fast form of :meth:`entries` for a writer. ``expires`` may be the live dict
        (still exact for keys nobody wrote since); it is only to be read before the next
        write, i.e. within the same step as the batch."""
        try:
            for view in self._views:
                data, expires, stash, index = view.data, view.expires, view.stash, view.index
                keys = view.keys
                get = data.__getitem__
                for start in range(0, len(keys), batch):
                    chunk = keys[start:start + batch]
                    if not stash or stash.keys().isdisjoint(chunk):
                        yield index, list(zip(chunk, map(get, chunk), strict=True)), expires
                        continue
                    items = []
                    chunk_expires = {}
                    for key in chunk:
                        if key in stash:
                            value, expire = stash.pop(key)
                            if value is _ABSENT:
                                continue
                        else:
                            value, expire = data[key], expires.get(key)
                        items.append((key, value))
                        if expire is not None:
                            chunk_expires[key] = expire
                    yield index, items, chunk_expires
                del self._by_dict[id(data)]
                view.keys = []
                stash.clear()
        finally:
            self.close()

    def close(self) -> None:
        if self._hooked:
            self._hooked = False
            self.keyspace.before_write_hooks.remove(self._before_write)
