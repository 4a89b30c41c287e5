"""A point-in-time view of the keyspace that costs no fork and almost no stall to take.

A :class:`KeyspaceView` keeps a reference to each database's live dicts and, at first, no
copy at all: it walks each dict with one live iterator, slice by slice, reading values as it
goes. That is exact as long as nothing changes, so the view must learn of every change: the
store calls its hook (``Keyspace.before_write_hooks``) before any write, and on the first write
to a database it has not finished the view freezes the order of the keys it has still to hand
out (``tuple(iterator)``: one synchronous step, ~10-25 ms per million keys left, only when a
write comes) and stashes the key's value and expiry of that instant (a private copy for lists,
hashes, sets, sorted sets and strings held as ``bytearray``, which change in place;
``bytes`` need none). Per-key
copy-on-write, as Dragonfly's versioned snapshots do without fork.

Why no ``list(db.data)`` up front, as the view once took: besides the ~20 ms per million keys
of the copy itself, a list is a container that Python's cyclic garbage collector walks in
every collection of the generation it lives in, one cache miss per key: 15-60 ms each time
with a million keys, the longest stalls of a master during a full sync. A dict iterator is one
reference for the collector; a tuple is walked once, then untracked for good.

FLUSHALL, FLUSHDB, SWAPDB and loads replace or exchange whole dict objects instead of
mutating them, so the view, which holds the original objects, is unaffected (an iterator over
a dict nobody changes any more stays valid); the hook finds the view's dict by identity,
wherever SWAPDB moved it. A change that bypassed the hook would make the live iterator raise
``RuntimeError`` (the dict changed size during iteration): the snapshot fails rather than
being silently wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import islice

from kvrepl import gc_policy
from kvrepl.store.database import Database, Keyspace
from kvrepl.store.values import copy_value

_ABSENT = object()  # stashed for a key that did not exist at the snapshot instant


class _DbView:
    __slots__ = ("index", "data", "expires", "count", "expires_count", "pending", "frozen",
                 "stash")

    def __init__(self, db: Database) -> None:
        self.index = db.id
        self.data = db.data
        self.expires = db.expires
        self.count = len(db.data)
        self.expires_count = len(db.expires)
        # The keys still to hand out: a live iterator over ``data`` until the first write to
        # this db, then an iterator over a tuple of the keys it had left (see freeze).
        self.pending: Iterator[bytes] = iter(db.data)
        self.frozen = False
        # key -> (value, expire) as of the snapshot instant, for keys changed since
        self.stash: dict[bytes, tuple[object, int | None]] = {}

    def freeze(self) -> None:
        """``data`` is about to change: fix the order of the keys not handed out yet."""
        # A tuple, not a list: the garbage collector untracks a tuple of bytes the first
        # time it sees it instead of walking it in every collection. In a server process
        # even that first walk is spared (kvrepl.gc_policy; a no-op in an application).
        keys = tuple(self.pending)
        gc_policy.big_container_created(len(keys))
        self.pending = iter(keys)
        self.frozen = True

    def next_keys(self, batch: int) -> list[bytes]:
        """Up to ``batch`` more keys (an empty list at the end)."""
        return list(islice(self.pending, batch))

    def finish(self) -> None:
        """Hand out nothing more, and hold nothing of the database any more: a job that
        keeps its view after the end must not keep a dataset that a load, FLUSHALL or
        SWAPDB has replaced since (above all from a cycle frozen by kvrepl.gc_policy,
        which no collection would ever free)."""
        self.pending = iter(())
        self.frozen = True
        self.stash.clear()
        self.data = {}
        self.expires = {}


class KeyspaceView:
    """The keyspace frozen at construction; ``close()`` (or exhausting it) unhooks it."""

    def __init__(self, keyspace: Keyspace) -> None:
        self.keyspace = keyspace
        self._views = [_DbView(db) for db in keyspace.dbs if db.data]
        self._by_dict = {id(view.data): view for view in self._views}
        self.copies = 0  # containers copied because a write came before the view wrote them
        self._hooked = True
        keyspace.add_before_write_hook(self._before_write)

    def __len__(self) -> int:
        return sum(view.count for view in self._views)

    def _before_write(self, db: Database, key: bytes) -> None:
        view = self._by_dict.get(id(db.data))
        if view is None or key in view.stash:
            return
        if not view.frozen:
            view.freeze()
        value = view.data.get(key, _ABSENT)
        if value is not _ABSENT and type(value) is not bytes:
            value = copy_value(value)
            self.copies += 1
        view.stash[key] = (value, view.expires.get(key))

    def db_sizes(self) -> list[tuple[int, int, int]]:
        """``(db, keys, keys with expiry)`` for each non-empty db (RESIZEDB)."""
        return [(view.index, view.count, view.expires_count) for view in self._views]

    def entries(self, batch: int = 1024) -> Iterator[list[tuple[int, bytes, object, int | None]]]:
        """Batches of ``(db, key, value, expire_ms)``, db by db, each as of the snapshot."""
        try:
            for view in self._views:
                data, expires, stash, index = view.data, view.expires, view.stash, view.index
                # Each batch is built in one synchronous step: no write can come in between.
                while keys := view.next_keys(batch):
                    chunk = []
                    for key in keys:
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
                self._by_dict.pop(id(data), None)  # gone already if closed meanwhile
                view.finish()
        finally:
            self.close()

    def batches(self, batch: int | Callable[[], int] = 2048) -> Iterator[
            tuple[int, list[tuple[bytes, object]], dict[bytes, int]]]:
        """``(db, [(key, value), ...], expires)`` per slice of keys, each as of the snapshot:
        the fast form of :meth:`entries` for a writer. ``expires`` may be the live dict
        (still exact for keys nobody wrote since); it is only to be read before the next
        write, i.e. within the same step as the batch. ``batch`` is a number of keys, or a
        callable asked before each batch (a writer that bounds its output in bytes)."""
        size = batch if callable(batch) else (lambda: batch)
        try:
            for view in self._views:
                data, expires, stash, index = view.data, view.expires, view.stash, view.index
                get = data.__getitem__
                while chunk := view.next_keys(size()):
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
                self._by_dict.pop(id(data), None)  # gone already if closed meanwhile
                view.finish()
        finally:
            self.close()

    def close(self) -> None:
        """Stop following writes (a view left unfinished hands out nothing more)."""
        if self._hooked:
            self._hooked = False
            self.keyspace.remove_before_write_hook(self._before_write)
            self._by_dict.clear()
            for view in self._views:
                view.finish()
