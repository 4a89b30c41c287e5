"""Reading whole RDB files: event / entry iterators and loading into a keyspace."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from kvrepl.rdb.errors import RdbError
from kvrepl.rdb.events import Aux, End, Entry, Function, SelectDb
from kvrepl.rdb.reader import RdbParser

log = logging.getLogger("kvrepl.rdb")

#: How much a file is read at a time.
CHUNK_SIZE = 1 << 20


def iter_events(source: Any, **options: Any) -> Iterator[object]:
    """Every event of the RDB in ``source`` (bytes-like, or a binary file object), up to
    and including :class:`End`. ``options`` go to :class:`RdbParser`."""
    return _events(RdbParser(**options), source)


def _events(parser: RdbParser, source: Any) -> Iterator[object]:
    for batch in _batches(parser, source):
        yield from batch


def _batches(parser: RdbParser, source: Any, parser_limit: int = 4096) -> Iterator[list]:
    """Lists of events up to and including End, feeding ``parser`` from ``source``."""
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


def load_into(keyspace: Any, source: Any, *, drop_expired: bool, now_ms: int | None = None,
              **options: Any) -> LoadResult:
    """Replace the data of every database of ``keyspace`` with the RDB in ``source``.

    The file is loaded into fresh dicts; they replace the databases' ``data`` / ``expires``
    only once the whole file has been read and its checksum verified, so a bad file raises
    :class:`RdbError` and leaves the current data as it was. ``drop_expired`` drops keys
    whose expire time is before ``now_ms`` (default: the keyspace clock), as a master does;
    a replica keeps them. A key present twice in one database is an error (Redis panics).
    """
    if now_ms is None:
        now_ms = keyspace.now_ms()
    databases = len(keyspace.dbs)
    fresh: list[tuple[dict, dict]] = [({}, {}) for _ in range(databases)]
    result = LoadResult()
    data, expires = fresh[0]
    current = 0
    parser = RdbParser(**options)
    drop_before = now_ms if drop_expired else None
    for batch in _batches(parser, source, parser_limit=64):
        for event in batch:
            if type(event) is Entry:
                db, key, value, expire_ms, _, _ = event
                if db != current:
                    data, expires = fresh[db]
                    current = db
                if expire_ms is not None:
                    if drop_expired and expire_ms < now_ms:
                        result.keys_expired += 1
                        continue
                    expires[key] = expire_ms
                size = len(data)
                data[key] = value
                if len(data) == size:
                    raise RdbError(f"RDB has duplicated key in DB {db} (key {key[:200]!r})",
                                   key=key)
                continue
            kind = type(event)
            if kind is SelectDb:
                if event.index >= databases:
                    raise RdbError(f"Data file was created with a Redis server configured to "
                                   f"handle more than {databases} databases (SELECTDB "
                                   f"{event.index})")
                current = event.index
                data, expires = fresh[current]
            elif kind is Aux:
                result.aux[event.name] = event.value
            elif kind is Function:
                result.functions.append(event.code)
            elif kind is End:
                result.checksum_ok = event.checksum_ok
        # Runs of short plain strings go straight into the dicts (no Entry events).
        data, expires = fresh[parser.db]
        current = parser.db
        while True:
            stored, dropped = parser.store_strings(data, expires, drop_before)
            result.keys_expired += dropped
            if not stored and not dropped:
                break
    result.keys_loaded = sum(len(data) for data, _ in fresh)
    result.version = parser.version or 0
    result.empty_keys_skipped = parser.empty_keys_skipped
    result.modules_skipped = parser.modules_skipped
    for db, (data, expires) in zip(keyspace.dbs, fresh, strict=True):
        db.data = data
        db.expires = expires
    log.info("Done loading RDB, keys loaded: %d, keys expired: %d.", result.keys_loaded,
             result.keys_expired)
    return result
