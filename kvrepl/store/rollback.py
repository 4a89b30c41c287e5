"""Undo every change made to the keyspace since a point in time.

Redis runs a ``SCRIPT DEBUG YES`` session in a forked child, so whatever the debugged script
writes is gone when the session ends. kvrepl does not fork: a :class:`Rollback` keeps, through
the store's ``before_write`` hook (the one a snapshot's copy-on-write uses), each key's value
and expiry as they were before its first change, and :meth:`Rollback.undo` puts them back.
FLUSHALL, FLUSHDB and SWAPDB replace or exchange whole dicts rather than change them, so the
dicts each database held at the start are kept and given back to it.
"""

from __future__ import annotations

from kvrepl.store.database import Database, Keyspace
from kvrepl.store.values import copy_value

_ABSENT = object()


class Rollback:
    """The keyspace as it is now, restored by :meth:`undo`."""

    def __init__(self, keyspace: Keyspace) -> None:
        self.keyspace = keyspace
        self._original = [(db.data, db.expires, db.access) for db in keyspace.dbs]
        # id(original data dict) -> key -> (value, expire) before the key's first change
        self._stash: dict[int, dict[bytes, tuple[object, int | None]]] = {
            id(data): {} for data, _expires, _access in self._original}
        keyspace.add_before_write_hook(self._before_write)

    def _before_write(self, db: Database, key: bytes) -> None:
        stash = self._stash.get(id(db.data))
        if stash is None or key in stash:
            return  # a dict made since (after a flush): dropped as a whole by undo()
        value = db.data.get(key, _ABSENT)
        if value is not _ABSENT and type(value) is not bytes:
            value = copy_value(value)  # containers change in place
        stash[key] = (value, db.expires.get(key))

    def undo(self) -> None:
        """Give every database back its contents of the start; stop following writes."""
        self.keyspace.remove_before_write_hook(self._before_write)
        for db, (data, expires, access) in zip(self.keyspace.dbs, self._original, strict=True):
            stash = self._stash[id(data)]
            if db.data is data and not stash:
                continue
            for key, (value, expire) in stash.items():
                if value is _ABSENT:
                    data.pop(key, None)
                    expires.pop(key, None)
                    access.pop(key, None)
                    continue
                data[key] = value
                if expire is None:
                    expires.pop(key, None)
                else:
                    expires[key] = expire
                access.setdefault(key, self.keyspace.lru_clock)
            db.data, db.expires, db.access = data, expires, access
            db.recount()
