"""Reading whole RDB files: event / entry iterators and loading into a keyspace."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from kvrepl.rdb.errors import RdbError
from kvrepl.rdb.events import Aux, End, Entry, Function, SelectDb
from kvrepl.rdb.reader import RdbParser, duplicate_key_error

log = logging.getLogger("kvrepl.rdb")

#: How much a file is read at a time.
CHUNK_SIZE = 1 << 20


def iter_events(source: Any, **options: Any) -> Iterator[object]:
    """Every event of the RDB in ``source`` (bytes-like, or a binary file object), up to
    and including :class:`End`. ``options`` go to :class:`RdbParser`."""
    return _events(RdbParser(**options), source)


def _events(parser: RdbParser, source: Any) -> Iterator[object]:
    for batch in event_batches(parser, source):
        yield from batch


def event_batches(parser: RdbParser, source: Any, parser_limit: int = 4096) -> Iterator[list]:
    """Lists of events up to and including End, feeding ``parser`` from ``source``
    (bytes-like, or anything with ``read(size)``)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        parser.feed(bytes(source))
        parser.feed(b"")
        chunks: Iterator[bytes] = iter(())
    else:
        chunks = iter(lambda: source.read(CHUNK_SIZE), b"")
    next_events = parser.next_events
    while True:
        batch = next_events(parser_limit)
        if not batch:
            parser.feed(next(chunks, b""))
            continue
        yield batch
        if type(batch[-1]) is End:
            return


def iter_entries(source: Any, **options: Any) -> Iterator[Entry]:
    """The :class:`Entry` events of the RDB in ``source`` (see :func:`iter_events`)."""
    for event in iter_events(source, **options):
        if type(event) is Entry:
            yield event


@dataclass
class LoadResult:
    """What :func:`load_into` found (Redis logs the same counts after loading)."""

    version: int = 0
    keys_loaded: int = 0
    keys_expired: int = 0
    empty_keys_skipped: int = 0
    modules_skipped: int = 0
    checksum_ok: bool | None = None
    aux: dict[bytes, bytes] = field(default_factory=dict)
    functions: list[bytes] = field(default_factory=list)
    size: int = 0  # bytes of the RDB, checksum included (an AOF goes on after them)


class StagedLoad:
    """An RDB fed in pieces (a file read in chunks, a replication payload as it arrives)
    and loaded into fresh dicts; :meth:`apply` swaps them into a keyspace at the end.

    Nothing touches the keyspace before :meth:`apply`, so a bad or cut payload raises
    :class:`RdbError` and leaves the current data as it was. ``drop_expired`` drops keys whose
    expire time is before ``now_ms``, as a master does; a replica keeps them. A key present
    twice in one database is an error (Redis panics).
    """

    def __init__(self, databases: int, *, drop_expired: bool, now_ms: int,
                 **options: Any) -> None:
        self.parser = RdbParser(**options)
        self.fresh: list[tuple[dict, dict]] = [({}, {}) for _ in range(databases)]
        # Per database, the bytes of its string keys and values, and how many keys hold
        # another type: the memory estimate of an all-string database without a pass over
        # its keys (strings_size).
        self._string_bytes = [0] * databases
        self._others = [0] * databases
        self.result = LoadResult()
        self.drop_expired = drop_expired
        self.now_ms = now_ms
        self.ended = False
        self._failure: RdbError | None = None
        self._held: list[bytes] = []  # pieces fed with ``hold``, not parsed yet
        self._held_size = 0

    def feed(self, data: bytes, hold: int = 0) -> None:
        """Parse ``data``; RdbError on anything malformed (and again on any later call).
        ``hold``: keep the pieces unparsed until at least that many bytes wait, then parse
        them at once (:meth:`finish`, or a feed with a smaller ``hold``, parses the rest)."""
        if self._failure is not None:
            raise self._failure
        if not data:
            return
        if hold or self._held:
            self._held.append(data)
            self._held_size += len(data)
            if self._held_size < hold:
                return
            data = self._take_held()
        self.parser.feed(data)
        self._drain()

    def _take_held(self) -> bytes:
        data = b"".join(self._held)
        self._held.clear()
        self._held_size = 0
        return data

    def keys_read(self) -> int:
        """Keys parsed so far (not those of held pieces), those dropped as expired included
        (key-load-delay's count)."""
        return sum(len(data) for data, _ in self.fresh) + self.result.keys_expired

    def strings_size(self, db: int) -> int | None:
        """The bytes of database ``db``'s keys and values when every value loaded there is
        a string (what :meth:`Database.recount <kvrepl.store.database.Database.recount>`
        would add up), else None."""
        return None if self._others[db] else self._string_bytes[db]

    def finish(self) -> LoadResult:
        """The input is complete: check it ended properly and return the counts."""
        if self._failure is not None:
            raise self._failure
        if self._held:
            self.parser.feed(self._take_held())
        self.parser.feed(b"")
        self._drain()
        if not self.ended:
            raise RdbError("Short read or OOM loading DB. Unrecoverable error, aborting now.")
        result = self.result
        result.keys_loaded = sum(len(data) for data, _ in self.fresh)
        result.version = self.parser.version or 0
        result.empty_keys_skipped = self.parser.empty_keys_skipped
        result.modules_skipped = self.parser.modules_skipped
        result.size = self.parser.offset
        return result

    def apply(self, keyspace: Any) -> None:
        """Make the loaded data the keyspace's (after :meth:`finish`)."""
        for index, (db, (data, expires)) in enumerate(zip(keyspace.dbs, self.fresh,
                                                          strict=True)):
            db.data = data
            db.expires = expires
            db.recount(self.strings_size(index))  # the memory estimate of what was loaded
        keyspace.read_state_changed()

    def _drain(self) -> None:
        try:
            self._drain_events()
        except RdbError as error:
            self._failure = error
            raise

    def _drain_events(self) -> None:
        parser = self.parser
        fresh = self.fresh
        result = self.result
        databases = len(fresh)
        drop_before = self.now_ms if self.drop_expired else None
        store_strings = parser.store_strings
        string_bytes = self._string_bytes
        while not self.ended:
            # Runs of plain string keys go straight into the dicts (no Entry events).
            current = parser.db
            data, expires = fresh[current]
            stored, dropped, size = store_strings(data, expires, drop_before)
            result.keys_expired += dropped
            string_bytes[current] += size
            batch = parser.next_events(64)
            if not batch:
                if stored or dropped:
                    continue
                return
            for event in batch:
                if type(event) is Entry:
                    db, key, value, expire_ms, _, _ = event
                    if db != current:
                        data, expires = fresh[db]
                        current = db
                    if expire_ms is not None:
                        if drop_before is not None and expire_ms < drop_before:
                            result.keys_expired += 1
                            continue
                        expires[key] = expire_ms
                    held = len(data)
                    data[key] = value
                    if len(data) == held:
                        raise duplicate_key_error(db, key)
                    if type(value) is bytes:
                        string_bytes[db] += len(key) + len(value)
                    else:
                        self._others[db] += 1
                    continue
                kind = type(event)
                if kind is SelectDb:
                    if event.index >= databases:
                        raise RdbError(f"Data file was created with a Redis server configured "
                                       f"to handle more than {databases} databases "
                                       f"(SELECTDB {event.index})")
                    current = event.index
                    data, expires = fresh[current]
                elif kind is Aux:
                    result.aux[event.name] = event.value
                elif kind is Function:
                    result.functions.append(event.code)
                elif kind is End:
                    result.checksum_ok = event.checksum_ok
                    self.ended = True


def load_into(keyspace: Any, source: Any, *, drop_expired: bool, now_ms: int | None = None,
              **options: Any) -> LoadResult:
    """Replace the data of every database of ``keyspace`` with the RDB in ``source``
    (bytes-like, or a binary file object); see :class:`StagedLoad`."""
    staged = StagedLoad(len(keyspace.dbs), drop_expired=drop_expired,
                        now_ms=keyspace.now_ms() if now_ms is None else now_ms, **options)
    if isinstance(source, (bytes, bytearray, memoryview)):
        staged.feed(bytes(source))
    else:
        for chunk in iter(lambda: source.read(CHUNK_SIZE), b""):
            staged.feed(chunk)
    result = staged.finish()
    staged.apply(keyspace)
    log.info("Done loading RDB, keys loaded: %d, keys expired: %d.", result.keys_loaded,
             result.keys_expired)
    return result
