"""A point-in-time view of the keyspace that costs no stall to take and no fork.

Taking a :class:`KeyspaceView` copies each database's key->value and key->expiry dicts
(shallow: the values themselves are shared). From then on the view sees the keyspace as it
was at that instant:

* strings are immutable ``bytes``: a write replaces the object in the live dict and the
  view keeps the old one, at no cost;
* deletions, overwrites and FLUSHALL change the live dicts, not the view's; SWAPDB moves
  whole databases, so the view remembers which live db now holds which of its dbs;
* lists, hashes, sets and sorted sets are changed in place, so before a write the store
  calls the view's hook (``Keyspace.before_write_hooks``) and the view swaps in a private
  copy of that one value if it still shares it (per-key copy-on-write, as Dragonfly's
  versioned snapshots do without fork).

The view hands out entries in slices and forgets each one as it goes, so keys already
written cost nothing more to later writes.
"""

from __future__ import annotations

from collections.abc import Iterator

from kvrepl.store.database import Database, Keyspace
from kvrepl.store.values import copy_value


class KeyspaceView:
    """The keyspace frozen at construction; ``close()`` (or exhausting it) unhooks it."""

    def __init__(self, keyspace: Keyspace) -> None:
        self.keyspace = keyspace
        self.dbs: list[tuple[int, dict[bytes, object], dict[bytes, int]]] = [
            (db.id, dict(db.data), dict(db.expires)) for db in keyspace.dbs if db.data
        ]
        self._by_index = {index: data for index, data, _ in self.dbs}
        # live db number -> the view db whose values it holds (they move with SWAPDB)
        self._origin = list(range(len(keyspace.dbs)))
        self.copies = 0  # values copied because a write came before the view wrote them
        self._hooked = True
        keyspace.before_write_hooks.append(self._before_write)
        keyspace.swap_listeners.append(self._swapped)

    def __len__(self) -> int:
        return sum(len(data) for _, data, _ in self.dbs)

    def _before_write(self, db: Database, key: bytes) -> None:
        data = self._by_index.get(self._origin[db.id])
        if data is None:
            return
        value = data.get(key)
        # Only a value still shared with the live keyspace needs saving; bytes are never
        # changed in place. (RENAME and MOVE name their source key, so a value is copied
        # before it moves away from the key the view knows it by.)
        if value is not None and type(value) is not bytes and db.data.get(key) is value:
            data[key] = copy_value(value)
            self.copies += 1

    def _swapped(self, a: int, b: int) -> None:
        self._origin[a], self._origin[b] = self._origin[b], self._origin[a]

    def db_sizes(self) -> list[tuple[int, int, int]]:
        """``(db, keys, keys with expiry)`` for each non-empty db (RESIZEDB)."""
        return [(index, len(data), len(expires)) for index, data, expires in self.dbs]

    def entries(self, batch: int = 1024) -> Iterator[list[tuple[int, bytes, object, int | None]]]:
        """Batches of ``(db, key, value, expire_ms)``, db by db, forgetting each as given."""
        try:
            for db_index, data, expires in self.dbs:
                while data:
                    chunk = []
                    for _ in range(min(batch, len(data))):
                        key, value = data.popitem()
                        chunk.append((db_index, key, value, expires.pop(key, None)))
                    yield chunk
        finally:
            self.close()

    def close(self) -> None:
        if self._hooked:
            self._hooked = False
            self.keyspace.before_write_hooks.remove(self._before_write)
            self.keyspace.swap_listeners.remove(self._swapped)
