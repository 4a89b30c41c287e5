"""Writing RDB files the way Redis 7.0 does (rdbSaveRio / rdbSaveObject, RDB version 10).

Values get the encodings Redis 7.0 would hold them in: strings INT-encoded when they are
canonical 32-bit integers and LZF-compressed when longer than 20 bytes (if that saves
space); lists as QUICKLIST_2 of listpack nodes filled per ``list-max-listpack-size``; hashes
and sorted sets as listpacks when small, else HASH / ZSET_2; sets as INTSET when all
integers and small, else SET; streams as STREAM_LISTPACKS_2.

:class:`RdbWriter` is incremental: ``begin()``, ``select_db()``, ``write_entry()`` /
``write_items()`` and ``finish()`` each return the next bytes of the file (the CRC64 runs
over them in order), so a snapshot job can serialize a keyspace in slices.
"""

from __future__ import annotations

import struct
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain, islice
from typing import Any

from kvrepl.rdb import constants as C
from kvrepl.rdb import listpack, lzf, stream
from kvrepl.rdb.crc import crc64
from kvrepl.rdb.primitives import (
    INT_START,
    LEN1,
    canonical_int,
    encode_len,
    encode_str,
)
from kvrepl.store.values import Stream, ZSet

_pack_i64 = struct.Struct("<q").pack
_pack_double = struct.Struct("<d").pack
_LLONG_HALF = float((2**63 - 1) // 2)
#: Type byte STRING + one-byte key length.
_STRING_HEAD = [b"\x00" + LEN1[n] for n in range(64)]
#: By first byte: True when no canonical integer starts with it (the string stays raw).
_PLAIN_START = [b not in INT_START for b in range(256)]
#: Listpack string entries of up to 63 bytes: encoding byte, and the backlen after the data.
_LP_STR6_HEAD = [bytes((0x80 | n,)) for n in range(64)]
_LP_STR6_TAIL = [bytes((n + 1,)) for n in range(64)]


#: Written versions: 10 = Redis 7.0 (default); 11 = Redis 7.2 (SET_LISTPACK, streams v3).
SUPPORTED_VERSIONS = (10, 11)

_DEFAULTS = {
    "hash_max_listpack_entries": 512,
    "hash_max_listpack_value": 64,
    "set_max_intset_entries": 512,
    "set_max_listpack_entries": 128,
    "set_max_listpack_value": 64,
    "zset_max_listpack_entries": 128,
    "zset_max_listpack_value": 64,
    "list_max_listpack_size": -2,
    "stream_node_max_bytes": 4096,
    "stream_node_max_entries": 100,
}


def default_aux(*, ctime: int | None = None, used_mem: int | None = None,
                repl_stream_db: int | None = None, repl_id: bytes | None = None,
                repl_offset: int | None = None, aof_base: bool = False,
                redis_ver: bytes = C.REDIS_VERSION) -> list[tuple[bytes, bytes]]:
    """The AUX fields Redis 7.0 writes, in its order (rdbSaveInfoAuxFields); the three
    replication fields only when ``repl_id`` is given (a snapshot for replication)."""
    if ctime is None:
        ctime = int(time.time())
    if used_mem is None:
        used_mem = _used_memory()
    fields = [(b"redis-ver", redis_ver), (b"redis-bits", b"64"), (b"ctime", b"%d" % ctime),
              (b"used-mem", b"%d" % used_mem)]
    if repl_id is not None:
        fields += [(b"repl-stream-db", b"%d" % (repl_stream_db or 0)), (b"repl-id", repl_id),
                   (b"repl-offset", b"%d" % (repl_offset or 0))]
    fields.append((b"aof-base", b"1" if aof_base else b"0"))
    return fields


def _used_memory() -> int:
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    except (ImportError, OSError):  # pragma: no cover
        return 0


class RdbWriter:
    """Serializes values and whole files; every method returns the next bytes to write.

    ``config`` supplies the encoding thresholds (a :class:`kvrepl.config.Config` or any
    object with ``hash_max_listpack_entries`` etc.; missing ones take Redis 7.0 defaults).
    """

    def __init__(self, *, version: int = C.RDB_VERSION, compression: bool = True,
                 checksum: bool = True, config: Any = None) -> None:
        if version not in SUPPORTED_VERSIONS:
            raise ValueError(f"can only write RDB versions {SUPPORTED_VERSIONS}")
        self.version = version
        # LZF is optional: without python-lzf's C extension the pure-Python compressor
        # (~1 MB/s) would dominate a snapshot, so strings are then written uncompressed.
        self.compression = compression and lzf.USING_EXTENSION
        self.checksum = checksum
        for name, default in _DEFAULTS.items():
            setattr(self, name, getattr(config, name, default) if config is not None
                    else default)
        self._crc = 0
        self._db: int | None = None
        self._raw_limit = 20 if self.compression else 63

    # -- file structure --------------------------------------------------------------------
    def _out(self, data: bytes) -> bytes:
        if self.checksum:
            self._crc = crc64(data, self._crc)
        return data

    def begin(self, aux: Iterable[tuple[bytes | str, bytes | str | int]] | None = None,
              functions: Iterable[bytes] = ()) -> bytes:
        """The header: magic, AUX fields (default :func:`default_aux`), function libraries."""
        parts = [b"REDIS%04d" % self.version]
        for name, value in default_aux() if aux is None else aux:
            parts += (b"\xfa", encode_str(_b(name), self.compression),
                      encode_str(_b(value), self.compression))
        for code in functions:
            parts += (b"\xf5", encode_str(code, self.compression))
        self._crc = 0
        self._db = None
        return self._out(b"".join(parts))

    def select_db(self, index: int, db_size: int, expires_size: int) -> bytes:
        """SELECTDB + RESIZEDB (Redis writes both for every non-empty database)."""
        self._db = index
        return self._out(b"\xfe" + encode_len(index) + b"\xfb" + encode_len(db_size)
                         + encode_len(expires_size))

    def write_entry(self, db: int, key: bytes, value: object,
                    expire_ms: int | None = None) -> bytes:
        """One key (with its EXPIRETIME_MS when ``expire_ms`` is set). A database change
        emits SELECTDB + RESIZEDB with zero hints: call :meth:`select_db` for real ones.
        An empty collection writes nothing."""
        encoded = self.encode_value(value)
        if encoded is None:
            return b""
        prefix = b""
        if db != self._db:
            self._db = db
            prefix = b"\xfe" + encode_len(db) + b"\xfb\x00\x00"
        if expire_ms is not None:
            prefix += b"\xfc" + _pack_i64(expire_ms)
        return self._out(b"".join((prefix, LEN1[encoded[0]], self._key(key), encoded[1])))

    def write_items(self, items: Iterable[tuple[bytes, object]],
                    expires: dict[bytes, int] | None = None) -> bytes:
        """Many keys of the current database (``items`` of ``(key, value)``, expiry times
        looked up in ``expires``), as one chunk. This is the fast path."""
        return self._out(self._items(items, expires))

    def write_columns(self, keys: Sequence[bytes], values: Sequence[object],
                      expires: dict[bytes, int] | None = None) -> bytes:
        """:meth:`write_items` for keys and their values as two parallel sequences (slices
        of ``list(data)`` and ``list(data.values())`` taken together: no pairs built, no
        lookups)."""
        return self._out(self._items(zip(keys, values, strict=True), expires))

    def write_keys(self, keys: Sequence[bytes], data: dict[bytes, object],
                   expires: dict[bytes, int] | None = None) -> bytes:
        """:meth:`write_items` for ``keys`` whose values are ``data[key]`` (no pairs built:
        the form for a snapshot that keeps a list of keys and reads the live dict)."""
        values = map(data.__getitem__, keys)
        return self._out(self._items(zip(keys, values, strict=True), expires))

    def _items(self, items: Iterable[tuple[bytes, object]],
               expires: dict[bytes, int] | None) -> bytes:
        out = bytearray()
        # Appending to one bytearray allocates nothing per key (a bytes object per key, or
        # parts joined at the end, cost more).
        string_head = _STRING_HEAD
        raw_limit = self._raw_limit
        plain = _PLAIN_START
        len1 = LEN1
        encode = self.encode_value
        compression = self.compression
        pack_i64 = _pack_i64
        for key, value in items:
            if expires and key in expires:
                expire: int | None = expires[key]
            else:
                expire = None
            if type(value) is bytes:
                if expire is not None:
                    out += b"\xfc"
                    out += pack_i64(expire)
                lk = len(key)
                lv = len(value)
                # Raw unless an integer (canonical decimal up to 11 chars) or LZF (> 20).
                if lk <= raw_limit and (lk > 11 or (lk and plain[key[0]])):
                    out += string_head[lk]
                    out += key
                else:
                    out += b"\x00"
                    out += encode_str(key, compression)
                if lv <= raw_limit and (lv > 11 or (lv and plain[value[0]])):
                    out += len1[lv]
                    out += value
                else:
                    out += encode_str(value, compression)
                continue
            encoded = encode(value)
            if encoded is None:
                continue
            if expire is not None:
                out += b"\xfc"
                out += pack_i64(expire)
            out += len1[encoded[0]]
            self._strings(out, (key,))  # a collection: its encoding outweighs the call
            out += encoded[1]
        return bytes(out)

    def write_batch(self, db: int, items: Iterable[tuple[bytes, object]],
                    expires: dict[bytes, int] | None,
                    db_sizes: dict[int, tuple[int, int]] | None = None) -> bytes:
        """One :meth:`KeyspaceView.batches` slice: SELECTDB + RESIZEDB when the database
        changes, then the keys through :meth:`write_items`."""
        if db == self._db:
            return self.write_items(items, expires)
        size, expires_size = (db_sizes or {}).get(db, (0, 0))
        head = self.select_db(db, size, expires_size)
        return head + self.write_items(items, expires)

    def write_records(self, records: list[tuple[int, bytes, object, int | None]],
                      db_sizes: dict[int, tuple[int, int]] | None = None) -> bytes:
        """Keys given as ``(db, key, value, expire_ms)`` records (what
        :meth:`kvrepl.store.snapshot.KeyspaceView.entries` yields), as one chunk. A change
        of database emits SELECTDB + RESIZEDB, with ``db_sizes[db] = (keys, expires)`` as
        the hints when given."""
        chunks = []
        count = len(records)
        i = 0
        while i < count:
            db = records[i][0]
            j = i + 1
            while j < count and records[j][0] == db:
                j += 1
            if db != self._db:
                size, expires_size = (db_sizes or {}).get(db, (0, 0))
                chunks.append(self.select_db(db, size, expires_size))
            run = records[i:j]
            chunks.append(self.write_items([(r[1], r[2]) for r in run],
                                           {r[1]: r[3] for r in run if r[3] is not None}))
            i = j
        return b"".join(chunks)

    def finish(self) -> bytes:
        """EOF and the CRC64 trailer (zero when checksums are off)."""
        tail = self._out(b"\xff")
        return tail + (self._crc if self.checksum else 0).to_bytes(8, "little")

    def _key(self, key: bytes) -> bytes:
        return encode_str(key, self.compression)

    # -- values ----------------------------------------------------------------------------
    def encode_value(self, value: object) -> tuple[int, bytes] | None:
        """``(RDB type, payload)`` of a store value, as Redis 7.0 would encode it; None for
        an empty list / hash / set / zset (not a valid value: such keys are left out)."""
        kind = type(value)
        if kind is bytes:
            return C.TYPE_STRING, encode_str(value, self.compression)
        if kind is bytearray:  # a string changed in place
            return C.TYPE_STRING, encode_str(bytes(value), self.compression)
        if not value and kind is not Stream:
            return None
        if kind is deque:
            return C.TYPE_LIST_QUICKLIST_2, self._list(value)
        if kind is dict:
            return self._hash(value)
        if kind is set:
            return self._set(value)
        if kind is ZSet:
            return self._zset(value)
        if kind is Stream:
            return self._stream(value)
        raise TypeError(f"cannot write a value of type {kind.__name__} to RDB")

    def _str(self, s: bytes) -> bytes:
        return encode_str(s, self.compression)

    def _strings(self, out: bytearray, strings: Iterable[bytes]) -> bytearray:
        """Append ``strings`` RDB-encoded (raw ones inline, INT / LZF through encode_str)."""
        raw_limit = self._raw_limit
        plain = _PLAIN_START
        len1 = LEN1
        compression = self.compression
        for item in strings:
            n = len(item)
            if n <= raw_limit and (n > 11 or (n and plain[item[0]])):
                out += len1[n]
                out += item
            else:
                out += encode_str(item, compression)
        return out

    def _list(self, items: deque) -> bytes:
        fill = max(self.list_max_listpack_size, -5)  # quicklistSetFill's floor
        level = C.QUICKLIST_SIZE_LEVELS[-fill - 1] if -5 <= fill <= -1 else None
        nodes = 0
        out = bytearray()
        node: bytearray | None = None  # listpack entries of the node being filled
        count = 0
        plain = _PLAIN_START
        head6 = _LP_STR6_HEAD
        tail6 = _LP_STR6_TAIL
        encode_entry = listpack.encode_entry
        threshold = C.QUICKLIST_PACKED_THRESHOLD
        overhead = C.QUICKLIST_SIZE_ESTIMATE_OVERHEAD
        safety_limit = C.QUICKLIST_SIZE_SAFETY_LIMIT
        for item in items:
            n = len(item)
            if n >= threshold:
                if node is not None:
                    out += self._packed_node(node, count)
                    nodes += 1
                    node = None
                out += b"\x01"
                out += self._str(item)
                nodes += 1
                continue
            if node is not None:
                # _quicklistNodeAllowInsert (the node's size: entries + 7 header bytes)
                new_size = len(node) + 7 + n + overhead
                if level is not None and new_size <= level:
                    pass
                elif new_size > safety_limit or count >= fill:
                    out += self._packed_node(node, count)
                    nodes += 1
                    node = None
            if node is None:
                node = bytearray()
                count = 0
            if n < 64 and (not n or plain[item[0]]):
                node += head6[n]
                node += item
                node += tail6[n]
            else:
                node += encode_entry(item)
            count += 1
        if node is not None:
            out += self._packed_node(node, count)
            nodes += 1
        return encode_len(nodes) + out

    def _packed_node(self, entries: bytearray, count: int) -> bytes:
        return b"\x02" + self._str(listpack.finish(entries, count))

    def _listpack(self, items: Iterable[bytes]) -> bytes:
        """A listpack of ``items`` as lpAppend stores them, RDB-encoded as a string."""
        node = bytearray()
        count = 0
        plain = _PLAIN_START
        head6 = _LP_STR6_HEAD
        tail6 = _LP_STR6_TAIL
        encode_entry = listpack.encode_entry
        for item in items:
            n = len(item)
            if n < 64 and (not n or plain[item[0]]):
                node += head6[n]
                node += item
                node += tail6[n]
            else:
                node += encode_entry(item)
            count += 1
        return self._str(listpack.finish(node, count))

    def _hash(self, value: dict) -> tuple[int, bytes]:
        limit = self.hash_max_listpack_value
        if len(value) <= self.hash_max_listpack_entries and all(
                len(f) <= limit and len(v) <= limit for f, v in value.items()):
            return C.TYPE_HASH_LISTPACK, self._listpack(chain.from_iterable(value.items()))
        out = self._strings(bytearray(encode_len(len(value))), chain.from_iterable(value.items()))
        return C.TYPE_HASH, bytes(out)

    def _set(self, value: set) -> tuple[int, bytes]:
        if len(value) <= self.set_max_intset_entries:
            numbers = []
            for member in value:
                number = canonical_int(member)
                if number is None:
                    break
                numbers.append(number)
            else:
                return C.TYPE_SET_INTSET, self._str(_intset(numbers))
        if self.version >= 11:
            limit = self.set_max_listpack_value
            if len(value) <= self.set_max_listpack_entries and all(
                    len(m) <= limit for m in value):
                return C.TYPE_SET_LISTPACK, self._listpack(value)
        return C.TYPE_SET, bytes(self._strings(bytearray(encode_len(len(value))), value))

    def _zset(self, value: ZSet) -> tuple[int, bytes]:
        limit = self.zset_max_listpack_value
        ordered = value.ordered
        if len(ordered) <= self.zset_max_listpack_entries and all(
                len(m) <= limit for m in value.scores):
            encode_entry = listpack.encode_entry
            entries = []
            for score, member in ordered:
                entries.append(encode_entry(member))
                entries.append(_score_entry(score))
            return C.TYPE_ZSET_LISTPACK, self._str(listpack.build(entries))
        out = bytearray(encode_len(len(ordered)))
        raw_limit = self._raw_limit
        plain = _PLAIN_START
        len1 = LEN1
        compression = self.compression
        pack_double = _pack_double
        for score, member in reversed(ordered):  # highest first, as Redis writes them
            n = len(member)
            if n <= raw_limit and (n > 11 or (n and plain[member[0]])):
                out += len1[n]
                out += member
            else:
                out += encode_str(member, compression)
            out += pack_double(score)
        return C.TYPE_ZSET_2, bytes(out)

    def _stream(self, value: Stream) -> tuple[int, bytes]:
        v3 = self.version >= 11
        nodes = stream.encode_nodes(value, self.stream_node_max_bytes,
                                    self.stream_node_max_entries)
        parts = [encode_len(len(nodes))]
        for node_key, blob in nodes:
            parts.append(self._str(node_key))
            parts.append(self._str(blob))
        parts.append(encode_len(len(value.entries)))
        for number in (*value.last_id, *value.first_id, *value.max_deleted_id,
                       value.entries_added):
            parts.append(encode_len(number))
        parts.append(encode_len(len(value.groups)))
        for name in sorted(value.groups):
            group = value.groups[name]
            parts.append(self._str(name))
            parts.append(encode_len(group.last_id[0]))
            parts.append(encode_len(group.last_id[1]))
            parts.append(encode_len(group.entries_read & C.UINT64_MASK))
            parts.append(encode_len(len(group.pending)))
            for entry_id in sorted(group.pending):
                nack = group.pending[entry_id]
                parts.append(stream.encode_id(entry_id))
                parts.append(_pack_i64(nack.delivery_time))
                parts.append(encode_len(nack.delivery_count))
            parts.append(encode_len(len(group.consumers)))
            for cname in sorted(group.consumers):
                consumer = group.consumers[cname]
                parts.append(self._str(cname))
                parts.append(_pack_i64(consumer.seen_time))
                if v3:
                    active = consumer.active_time
                    parts.append(_pack_i64(consumer.seen_time if active is None else active))
                pending = sorted(consumer.pending)
                parts.append(encode_len(len(pending)))
                parts.extend(map(stream.encode_id, pending))
        rtype = C.TYPE_STREAM_LISTPACKS_3 if v3 else C.TYPE_STREAM_LISTPACKS_2
        return rtype, b"".join(parts)


def _b(value: bytes | str | int) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, int):
        return b"%d" % value
    return value.encode()


def _intset(numbers: list[int]) -> bytes:
    numbers.sort()
    low, high = numbers[0], numbers[-1]
    if -32768 <= low and high <= 32767:
        width, code = 2, "h"
    elif -(1 << 31) <= low and high < (1 << 31):
        width, code = 4, "i"
    else:
        width, code = 8, "q"
    return struct.pack(f"<II{len(numbers)}{code}", width, len(numbers), *numbers)


def _score_entry(score: float) -> bytes:
    """A zset score as zzlInsertAt stores it: an integer entry when double2ll accepts the
    score, else d2string's text ("%.17g", "inf", "-inf")."""
    if -_LLONG_HALF <= score <= _LLONG_HALF and score == int(score):
        return listpack.encode_int(int(score))
    if score == float("inf"):
        return listpack.encode_string(b"inf")
    if score == float("-inf"):
        return listpack.encode_string(b"-inf")
    return listpack.encode_string(b"%.17g" % score)


def iter_dump(keyspace: Any, *, version: int = C.RDB_VERSION, compression: bool = True,
              checksum: bool = True, aux: Iterable[tuple[Any, Any]] | None = None,
              functions: Iterable[bytes] = (), config: Any = None,
              batch: int = 65536) -> Iterator[bytes]:
    """The bytes of an RDB file of ``keyspace`` (objects with ``.dbs``, each with ``.data``
    and ``.expires`` dicts), in chunks of up to ``batch`` keys."""
    writer = RdbWriter(version=version, compression=compression, checksum=checksum,
                       config=config)
    yield writer.begin(aux, functions)
    for index, db in enumerate(keyspace.dbs):
        data, expires = db.data, db.expires
        if not data:
            continue
        yield writer.select_db(index, len(data), len(expires))
        items = iter(data.items())
        for _ in range(0, len(data), batch):
            yield writer.write_items(islice(items, batch), expires)
    yield writer.finish()


def dump_keyspace(keyspace: Any, file_or_buffer: Any, *, version: int = C.RDB_VERSION,
                  compression: bool = True, checksum: bool = True,
                  aux: Iterable[tuple[Any, Any]] | None = None, functions: Iterable[bytes] = (),
                  config: Any = None) -> int:
    """Write an RDB file of ``keyspace`` to a binary file object (``.write``) or append it to
    a ``bytearray``; returns the number of bytes. ``aux`` defaults to :func:`default_aux`;
    ``config`` supplies the encoding thresholds (see :class:`RdbWriter`)."""
    total = 0
    write = (file_or_buffer.extend if isinstance(file_or_buffer, bytearray)
             else file_or_buffer.write)
    for chunk in iter_dump(keyspace, version=version, compression=compression,
                           checksum=checksum, aux=aux, functions=functions, config=config):
        write(chunk)
        total += len(chunk)
    return total


def dumps(keyspace: Any, **options: Any) -> bytes:
    """An RDB file of ``keyspace`` as bytes (options as :func:`iter_dump`)."""
    return b"".join(iter_dump(keyspace, **options))
