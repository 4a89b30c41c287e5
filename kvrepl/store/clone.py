"""A private, point-in-time copy of a whole keyspace (what a fork gives Redis's child).

``SCRIPT DEBUG YES`` debugs a script on such a copy, in a thread of its own, while the node
goes on serving (see :mod:`kvrepl.scripting.fork`). The copy shares nothing that either side
changes in place: the dicts are new, every container value (list, hash, set, sorted set,
stream, a string held as ``bytearray``) is copied (:func:`~kvrepl.store.values.copy_value`),
and only ``bytes`` values, which nobody can change, are shared. O(keys + container elements),
taken synchronously: the README gives its cost at 100k and 1M keys.
"""

from __future__ import annotations

from kvrepl.store.database import Database, Keyspace
from kvrepl.store.values import copy_value

# What a keyspace carries besides its databases that the copy keeps as it was.
_KEPT = ("expire_keys", "expiry_paused_until", "lru_clock", "lfu", "lfu_log_factor",
         "lfu_decay_time", "hits", "misses")


def clone_keyspace(source: Keyspace) -> Keyspace:
    """A new keyspace holding what ``source`` holds now, sharing only immutable values."""
    source.settle()  # the direct reads' pending access times, into the maps copied
    clone = Keyspace(len(source.dbs), source.clock)
    for name in _KEPT:
        setattr(clone, name, getattr(source, name))
    for db, copy in zip(source.dbs, clone.dbs, strict=True):
        _clone_db(db, copy)
    return clone


def _clone_db(db: Database, copy: Database) -> None:
    data = db.data.copy()  # (C speed; then only the containers are replaced)
    for key, value in db.data.items():
        if type(value) is not bytes:
            data[key] = copy_value(value)
    copy.data = data
    copy.expires = db.expires.copy()
    copy.access = db.access.copy()
    copy.sizes = db.sizes.copy()
    copy.used = db.used
    copy.stale = set(db.stale)
