"""A push-based, sans-IO RDB parser (rdbLoadRioWithLoadingCtx / rdbLoadObject, Redis 7.0.15,
plus the 7.2 / 7.4 additions).

Feed it bytes as they arrive and pull events::

    parser = RdbParser()
    parser.feed(chunk)            # any number of times; feed(b"") marks the end of input
    event = parser.next_event()   # an event of kvrepl.rdb.events, or NEED_DATA

Keys whose values are large collections are parsed element by element and resume where they
stopped when data runs out, so feeding a file in small chunks costs linear time. Every
problem is an :class:`RdbError` naming the byte offset (and the key when inside one).
"""

from __future__ import annotations

import logging
import struct
from collections import deque
from collections.abc import Callable, Generator
from itertools import islice

from sortedcontainers import SortedDict

from kvrepl.rdb import constants as C
from kvrepl.rdb import listpack, objects, stream, ziplist
from kvrepl.rdb.crc import crc64
from kvrepl.rdb.errors import DEEP_CHECKS, Corrupt, Incomplete, RdbError
from kvrepl.rdb.events import (
    NEED_DATA,
    Aux,
    End,
    Entry,
    Function,
    ModuleAux,
    ResizeDb,
    SelectDb,
    SlotInfo,
)
from kvrepl.rdb.objects import EMPTY, SKIPPED
from kvrepl.rdb.primitives import (
    read_binary_double,
    read_binary_float,
    read_len,
    read_ms_time,
    read_raw,
    read_str,
)
from kvrepl.store.values import Stream, StreamConsumer, StreamGroup

log = logging.getLogger("kvrepl.rdb")

_unpack_i64 = struct.Struct("<q").unpack_from
_new_entry = tuple.__new__
_INT_WIDTHS = {0xC0: 1, 0xC1: 2, 0xC2: 4}


#: The longest record the fast loop of RdbParser.store_strings parses without bounds
#: checks: EXPIRETIME_MS, then type 0, key and value each with a 6-bit length.
_MAX_HOT = 9 + 1 + 1 + 63 + 1 + 63


def duplicate_key_error(db: int, key: bytes) -> RdbError:
    """The error for a key found twice in one database (Redis panics on this); the same
    whichever path loaded the key."""
    return RdbError(f"RDB has duplicated key in DB {db} (key {key[:200]!r})", key=key)


def _string_record(buf: bytes, pos: int) -> tuple[bytes, bytes, int | None, int] | None:
    """``(key, value, expire_ms, end)`` of the string key at ``pos`` (optionally after
    EXPIRETIME_MS), any string encoding; None for anything else and for what is cut off
    or corrupt, left to the general path, which then parses or refuses it itself."""
    try:
        expire = None
        op = buf[pos]
        if op == C.OP_EXPIRETIME_MS:
            expire = _unpack_i64(buf, pos + 1)[0]
            pos += 9
            op = buf[pos]
        if op:
            return None
        key, pos = read_str(buf, pos + 1)
        value, pos = read_str(buf, pos)
    except (Incomplete, Corrupt, IndexError, struct.error):
        return None
    return key, value, expire, pos


_Task = Generator[int, None, object]
_MAGIC = -1
_DONE = -2


class RdbParser:
    """Sans-IO RDB parser: :meth:`feed` bytes, :meth:`next_event` returns events.

    ``on_module``: ``"error"`` (default) refuses module values and module AUX data with an
    error naming the module type; ``"skip"`` skips type-7 module values and MODULE_AUX by
    walking their opcodes, logging a warning. ``verify_checksum=False`` skips the CRC64
    check. ``max_version`` is the newest RDB version accepted (default 12).
    """

    def __init__(self, *, on_module: str = "error", verify_checksum: bool = True,
                 max_version: int = C.MAX_READ_VERSION, deep: bool = True) -> None:
        if on_module not in ("error", "skip"):
            raise ValueError("on_module must be 'error' or 'skip'")
        self.on_module = on_module
        self.verify_checksum = verify_checksum
        self.max_version = max_version
        #: sanitize-dump-payload: check encoded blobs deeply (see errors.DEEP_CHECKS).
        self.deep = deep
        self.version: int | None = None
        #: Keys skipped because their collection was empty (Redis 7.0 skips them too).
        self.empty_keys_skipped = 0
        #: Module values / module AUX blocks skipped with ``on_module="skip"``.
        self.modules_skipped = 0
        self._buf = b""
        self._pos = 0
        self._base = 0  # file offset of _buf[0]
        self._chunks: list[bytes] = []
        self._chunks_len = 0
        self._need = 0
        self._eof = False
        self._state = _MAGIC
        self._crc = 0
        self._crc_on = False
        self._task: _Task | None = None
        self._db = 0
        self._expire: int | None = None
        self._idle: int | None = None
        self._freq: int | None = None
        self._key: bytes | None = None
        self._blob_start = 0  # file offset of the last blob read by a task
        self._failure: RdbError | None = None

    # -- input -----------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        """Add input; ``feed(b"")`` says no more will come (truncation then is an error)."""
        if not data:
            self._eof = True
            return
        self._chunks.append(bytes(data))
        self._chunks_len += len(data)
        if self._need <= len(self._buf) + self._chunks_len:
            self._join()

    def _join(self) -> None:
        buf, pos = self._buf, self._pos
        if pos and self._crc_on:
            self._crc = crc64(memoryview(buf)[:pos], self._crc)
        if pos or self._chunks:
            self._buf = b"".join([buf[pos:] if pos else buf, *self._chunks])
            self._chunks.clear()
            self._chunks_len = 0
            self._base += pos
            self._need -= pos
            self._pos = 0

    @property
    def offset(self) -> int:
        """File offset of the next byte to parse."""
        return self._base + self._pos

    @property
    def unused_data(self) -> bytes:
        """Bytes fed after the end of the RDB (after the checksum)."""
        return self._buf[self._pos:] + b"".join(self._chunks)

    # -- events ----------------------------------------------------------------------------
    def next_event(self) -> object:
        """The next event, or NEED_DATA. After :class:`End` it keeps returning NEED_DATA;
        after an error it raises the same RdbError again."""
        if self.deep:
            return self._next_event()
        token = DEEP_CHECKS.set(False)
        try:
            return self._next_event()
        finally:
            DEEP_CHECKS.reset(token)

    def _next_event(self) -> object:
        if self._state == _DONE:
            if self._failure is not None:
                raise self._failure
            return NEED_DATA
        if self._need > len(self._buf):
            if self._need > len(self._buf) + self._chunks_len:
                if self._eof:
                    raise self._error("unexpected end of file (truncated RDB)", None)
                return NEED_DATA
            self._join()
        try:
            return self._step()
        except Incomplete as incomplete:
            self._need = incomplete.need
            if self._eof:
                raise self._error("unexpected end of file (truncated RDB)", None) from None
            return NEED_DATA
        except Corrupt as corrupt:
            self._task = None
            raise self._error(corrupt.message, corrupt.pos) from None
        except (IndexError, KeyError, ValueError, TypeError, OverflowError,
                struct.error) as bug:  # pragma: no cover - a reader bug; still an RdbError
            self._task = None
            raise self._error(f"corrupt data ({type(bug).__name__}: {bug})", None) from bug

    def next_events(self, limit: int = 4096) -> list:
        """Up to ``limit`` events at once (an empty list means NEED_DATA): the fast way to
        read many keys. Short plain strings, with or without an expire, are decoded inline.
        """
        if self.deep:
            return self._next_events(limit)
        token = DEEP_CHECKS.set(False)
        try:
            return self._next_events(limit)
        finally:
            DEEP_CHECKS.reset(token)

    def _next_events(self, limit: int = 4096) -> list:
        """:meth:`next_events` in the context its checks were chosen for."""
        events: list = []
        append = events.append
        while len(events) < limit:
            if self._fast_ready():
                self._fast_strings(limit - len(events), events)
                if len(events) >= limit:
                    break
            try:
                event = self._next_event()
            except RdbError:
                if events:  # first the events before the error; the next call raises it
                    break
                raise
            if event is NEED_DATA:
                break
            append(event)
            if type(event) is End:
                break
        return events

    def store_strings(self, data: dict, expires: dict, drop_before: int | None,
                      limit: int = 1 << 20) -> tuple[int, int, int]:
        """Store the run of plain string keys at the current position straight into
        ``data`` / ``expires`` (the current database's), skipping Entry events: the fast
        path of :func:`~kvrepl.rdb.load.load_into`. Keys expiring before ``drop_before``
        are dropped. Returns ``(stored, dropped, size)``, ``size`` being the bytes of the
        stored keys and values (what the memory estimate adds up, found here without a
        pass over the keys); stops at anything else, and short of the buffer's end,
        leaving both to :meth:`next_event` (which parses every record this skips the same
        way, so where chunks split the input does not matter).

        Raises :func:`duplicate_key_error` for a key already in ``data``.
        """
        if not self._fast_ready():
            return 0, 0, 0
        buf, pos = self._buf, self._pos
        first = pos
        end = len(buf)
        stored = dropped = size_stored = 0
        string_record = _string_record
        unpack_i64 = _unpack_i64
        int_widths = _INT_WIDTHS
        from_bytes = int.from_bytes
        while True:
            # Every record of the hot shape (type 0, 6-bit lengths) is at most _MAX_HOT
            # bytes: `count` of them cannot run past the buffer, so no bounds checks.
            count = min((end - pos) // _MAX_HOT, limit - stored - dropped)
            if count <= 0:
                break
            run_start = pos
            size = len(data)
            done = count
            stop = False
            run_dropped = 0
            # The run's keys and values take its bytes less 3 a record (type and two
            # lengths) in the first tier; each second-tier record corrects that by what
            # it differs (an expire, an encoded value, a dropped key).
            run_adjust = 0
            for i in range(count):
                if not buf[pos]:
                    key_len = buf[pos + 1]
                    if key_len < 64:
                        key_at = pos + 2
                        value_at = key_at + key_len
                        value_len = buf[value_at]
                        if value_len < 64:
                            value_at += 1
                            pos = value_at + value_len
                            data[buf[key_at:value_at - 1]] = buf[value_at:pos]
                            continue
                # Second tier, still inline: an expire and / or an INT-encoded value.
                expire = None
                at = record_start = pos
                if buf[at] == 0xFC:  # EXPIRETIME_MS
                    expire = unpack_i64(buf, at + 1)[0]
                    at += 9
                value = None
                if not buf[at]:
                    key_len = buf[at + 1]
                    if key_len < 64:
                        key_at = at + 2
                        value_at = key_at + key_len
                        value_len = buf[value_at]
                        if value_len < 64:
                            at = value_at + 1 + value_len
                            value = buf[value_at + 1:at]
                        elif value_len in int_widths:
                            at = value_at + 1 + int_widths[value_len]
                            value = b"%d" % from_bytes(buf[value_at + 1:at], "little",
                                                       signed=True)
                if value is not None:
                    key = buf[key_at:value_at]
                    pos = at
                else:
                    # Anything else: LZF / long / INT-encoded keys, ... (or not a string
                    # key at all: then None, and the general path takes it from here).
                    record = string_record(buf, pos)
                    if record is None:
                        done = i
                        stop = True
                        break
                    key, value, expire, pos = record
                if expire is not None and drop_before is not None and expire < drop_before:
                    run_dropped += 1
                    run_adjust += 3 - (pos - record_start)
                else:
                    if expire is not None:
                        expires[key] = expire
                    data[key] = value
                    run_adjust += len(key) + len(value) + 3 - (pos - record_start)
                if end - pos < (count - i - 1) * _MAX_HOT:  # a long record: count again
                    done = i + 1
                    break
            run_stored = done - run_dropped
            if len(data) != size + run_stored:
                self._duplicate_in_run(data, size, run_start, done, drop_before)
            stored += run_stored
            dropped += run_dropped
            size_stored += pos - run_start - 3 * done + run_adjust
            if stop:
                break
        self._pos = pos
        if pos != first:  # a key named by an attempt the buffer's end cut short is done
            self._key = None
        return stored, dropped, size_stored

    def _duplicate_in_run(self, data: dict, size: int, pos: int, count: int,
                          drop_before: int | None) -> None:
        """Raise for the first of the ``count`` records from ``pos`` whose key was already
        in ``data`` (which held ``size`` keys before them: those come first in its order,
        since a load only adds keys)."""
        before = set(islice(data, size))
        seen: set = set()
        buf = self._buf
        for _ in range(count):
            key, _, expire, end = _string_record(buf, pos)
            if expire is None or drop_before is None or expire >= drop_before:
                if key in before or key in seen:
                    self._pos = pos
                    self._state = _DONE
                    self._failure = duplicate_key_error(self._db, key)
                    raise self._failure
                seen.add(key)
            pos = end
        raise AssertionError("no duplicate found")  # pragma: no cover - cannot happen

    @property
    def db(self) -> int:
        """The database the next keys belong to (the last SELECTDB)."""
        return self._db

    def _fast_ready(self) -> bool:
        return (self._task is None and self._state == 0 and self._expire is None
                and self._idle is None and self._freq is None)

    def _fast_strings(self, count: int, events: list) -> None:
        # Entry events for short plain strings (with or without an expire), inline.
        buf, pos, db = self._buf, self._pos, self._db
        first = pos
        end = len(buf)
        new_entry = _new_entry
        from_bytes = int.from_bytes
        append = events.append
        while count:
            op = buf[pos] if pos < end else -1
            expire = None
            start = pos
            if op == C.OP_EXPIRETIME_MS:
                if pos + 9 >= end:
                    break
                expire = _unpack_i64(buf, pos + 1)[0]
                pos += 9
                op = buf[pos]
            if op != 0 or pos + 2 >= end:
                pos = start
                break
            key_len = buf[pos + 1]
            key_end = pos + 2 + key_len
            if key_len >= 64 or key_end >= end:
                pos = start
                break
            value_len = buf[key_end]
            if value_len < 64:
                value_end = key_end + 1 + value_len
                if value_end > end:
                    pos = start
                    break
                value = buf[key_end + 1:value_end]
            else:  # INT8 / INT16 / INT32 encoded values (counters and the like)
                width = _INT_WIDTHS.get(value_len)
                value_end = key_end + 1 + (width or 0)
                if width is None or value_end > end:
                    pos = start
                    break
                value = b"%d" % from_bytes(buf[key_end + 1:value_end], "little", signed=True)
            key = buf[pos + 2:key_end]
            pos = value_end
            count -= 1
            append(new_entry(Entry, (db, key, value, expire, None, None)))
        self._pos = pos
        if pos != first:  # as in store_strings
            self._key = None

    def _error(self, message: str, pos: int | None) -> RdbError:
        offset = self._base + (self._pos if pos is None else pos)
        text = f"{message} at offset {offset}"
        if self._key is not None:
            text += f" (key {self._key[:200]!r})"
        self._state = _DONE
        self._failure = RdbError(text, offset, self._key)
        return self._failure

    def _step(self) -> object:
        while True:
            task = self._task
            if task is not None:
                try:
                    need = next(task)
                except StopIteration as stop:
                    self._task = None
                    event = stop.value
                    if event is not None:
                        return event
                    continue
                raise Incomplete(need)
            if self._state == _MAGIC:
                return self._magic()
            buf = self._buf
            pos = self._pos
            try:
                op = buf[pos]
            except IndexError:
                raise Incomplete(pos + 1) from None
            if op == 0:  # the common case, a string key, parsed without a task
                key, p = read_str(buf, pos + 1)
                self._key = key
                value, p = read_str(buf, p)
                self._pos = p
                return self._entry(key, value)
            if op < C.OP_SLOT_INFO:
                key, p = read_str(buf, pos + 1)
                self._key = key
                blob_decoder = objects.BLOB_DECODERS.get(op)
                if blob_decoder is not None:  # one string: parsed when wholly buffered
                    blob, end = read_str(buf, p)
                    try:
                        value = blob_decoder(blob)
                    except Corrupt as corrupt:
                        raise Corrupt(corrupt.message, p) from None
                    self._pos = end
                    event = self._entry(key, value)
                    if event is not None:
                        return event
                    continue
                direct = objects.DIRECT_DECODERS.get(op)
                if direct is not None:
                    try:
                        value, end = direct(buf, p)
                    except Incomplete:
                        pass  # not all buffered: parse it element by element instead
                    else:
                        self._pos = end
                        event = self._entry(key, value)
                        if event is not None:
                            return event
                        continue
                self._pos = p
                self._task = self._entry_task(op, key)
                continue
            event = self._opcode(op, buf, pos)
            if event is not None:
                return event

    def _magic(self) -> object:
        buf = self._buf
        if len(buf) < 9:
            raise Incomplete(9)
        digits = buf[5:9]
        if buf[:5] != b"REDIS" or not digits.isdigit():
            raise Corrupt("wrong signature: not an RDB file", 0)
        version = int(digits)
        if not 1 <= version <= self.max_version:
            raise Corrupt(f"Can't handle RDB format version {version}", 0)
        self.version = version
        self._crc_on = self.verify_checksum and version >= 5
        self._pos = 9
        self._state = 0
        return self._step()

    def _opcode(self, op: int, buf: bytes, pos: int) -> object:
        """Handle one opcode; returns its event or None (key attributes, skipped data)."""
        if op == C.OP_EXPIRETIME_MS:
            self._expire, self._pos = read_ms_time(buf, pos + 1)
            return None
        if op == C.OP_SELECTDB:
            self._db, self._pos = read_len(buf, pos + 1)
            return SelectDb(self._db)
        if op == C.OP_RESIZEDB:
            size, p = read_len(buf, pos + 1)
            expires, self._pos = read_len(buf, p)
            return ResizeDb(size, expires)
        if op == C.OP_AUX:
            name, p = read_str(buf, pos + 1)
            value, self._pos = read_str(buf, p)
            return Aux(name, value)
        if op == C.OP_EXPIRETIME:
            raw, p = read_raw(buf, pos + 1, 4)
            self._expire = int.from_bytes(raw, "little", signed=True) * 1000
            self._pos = p
            return None
        if op == C.OP_IDLE:
            self._idle, self._pos = read_len(buf, pos + 1)
            return None
        if op == C.OP_FREQ:
            raw, self._pos = read_raw(buf, pos + 1, 1)
            self._freq = raw[0]
            return None
        if op == C.OP_EOF:
            return self._end(buf, pos)
        if op == C.OP_FUNCTION2:
            code, self._pos = read_str(buf, pos + 1)
            return Function(code)
        if op == C.OP_FUNCTION_PRE_GA:
            name, p = read_str(buf, pos + 1)
            engine, p = read_str(buf, p)
            has_desc, p = read_len(buf, p)
            if has_desc:
                _, p = read_str(buf, p)
            code, p = read_str(buf, p)
            self._pos = p
            return Function(b"#!%s name=%s\n%s" % (engine, name, code), pre_ga=True)
        if op == C.OP_MODULE_AUX:
            self._pos = pos + 1
            self._task = self._module_aux_task()
            return None
        if op == C.OP_SLOT_INFO and (self.version or 0) >= 12:
            slot, p = read_len(buf, pos + 1)
            size, p = read_len(buf, p)
            expires, self._pos = read_len(buf, p)
            return SlotInfo(slot, size, expires)
        raise Corrupt(f"unknown RDB object type or opcode {op}", pos)

    def _end(self, buf: bytes, pos: int) -> End:
        checksum = None
        ok = None
        end = pos + 1
        if self.version >= 5:
            raw, end = read_raw(buf, pos + 1, 8)
            checksum = int.from_bytes(raw, "little")
            if self._crc_on and checksum:
                actual = crc64(memoryview(buf)[:pos + 1], self._crc)
                if actual != checksum:
                    raise Corrupt(f"RDB CRC error: the file says {checksum:016x}, "
                                  f"the data gives {actual:016x}", pos + 1)
                ok = True
        self._pos = end
        self._state = _DONE
        self._key = None
        return End(ok, checksum)

    def _entry(self, key: bytes, value: object) -> Entry | None:
        expire, idle, freq = self._expire, self._idle, self._freq
        self._expire = self._idle = self._freq = None
        self._key = None
        if value is EMPTY:
            self.empty_keys_skipped += 1
            if self.empty_keys_skipped <= 10:
                log.warning("rdbLoadObject skipping empty key: %r", key)
            return None
        if value is SKIPPED:
            return None
        return Entry(self._db, key, value, expire, idle, freq)

    def _entry_task(self, rtype: int, key: bytes) -> _Task:
        value = yield from self._object(rtype)
        return self._entry(key, value)

    # -- resumable reading -----------------------------------------------------------------
    def _read(self, reader: Callable, *args: object) -> _Task:
        """One value via ``reader(buf, pos, *args)``, waiting for data as needed."""
        while True:
            try:
                value, p = reader(self._buf, self._pos, *args)
            except Incomplete as incomplete:
                yield incomplete.need
                continue
            self._pos = p
            return value

    def _read_id(self) -> _Task:
        """A stream ID stored as two RDB lengths (ms, seq)."""
        ms = yield from self._read(read_len)
        seq = yield from self._read(read_len)
        return ms, seq

    def _read_many(self, count: int, reader: Callable, add: Callable) -> _Task:
        """``count`` values via ``reader``, each passed to ``add``; resumes per element."""
        buf, pos = self._buf, self._pos
        done = 0
        while done < count:
            try:
                value, p = reader(buf, pos)
            except Incomplete as incomplete:
                self._pos = pos
                yield incomplete.need
                buf, pos = self._buf, self._pos
                continue
            except Corrupt:
                self._pos = pos
                raise
            add(value)
            pos = p
            done += 1
        self._pos = pos

    def _fill(self, fill: Callable, count: int, into: object) -> _Task:
        """``count`` elements into ``into`` via one of the ``objects.fill_*`` functions,
        as many at a time as are buffered."""
        while True:
            self._pos, done, need = fill(self._buf, self._pos, count, into)
            count -= done
            if not count:
                return
            yield need

    def _blob(self) -> _Task:
        """A string holding a ziplist / listpack / intset / zipmap; errors point at it."""
        start = self._base + self._pos
        blob = yield from self._read(read_str)
        self._blob_start = start
        return blob

    def _at(self, offset: int) -> int:
        """The buffer position of file ``offset``: tasks keep file offsets, as the buffer
        drops what was parsed whenever new data is joined to it."""
        return offset - self._base

    def _blob_error(self, corrupt: Corrupt) -> Corrupt:
        return Corrupt(corrupt.message, self._at(self._blob_start))

    # -- values ----------------------------------------------------------------------------
    def _object(self, rtype: int) -> _Task:
        """Parse one value of RDB type ``rtype``; returns a store value, EMPTY or SKIPPED."""
        handler = _HANDLERS.get(rtype)
        if handler is None:
            raise Corrupt(f"unknown RDB object type {rtype}", self._pos)
        start = self._base + self._pos
        try:
            return (yield from handler(self, rtype))
        except Corrupt as corrupt:
            if corrupt.pos is None:
                corrupt.pos = self._at(start)
            raise

    def _string(self, rtype: int) -> _Task:
        return (yield from self._read(read_str))

    def _list(self, rtype: int) -> _Task:
        count = yield from self._read(read_len)
        if not count:
            return EMPTY
        items: deque = deque()
        yield from self._read_many(count, read_str, items.append)
        return items

    def _set(self, rtype: int) -> _Task:
        start = self._base + self._pos
        count = yield from self._read(read_len)
        if not count:
            return EMPTY
        members: set = set()
        yield from self._fill(objects.fill_set, count, members)
        if len(members) != count:
            raise Corrupt("Duplicate set members detected", self._at(start))
        return members

    def _zset(self, rtype: int) -> _Task:
        start = self._base + self._pos
        count = yield from self._read(read_len)
        if not count:
            return EMPTY
        if rtype == C.TYPE_ZSET_2:
            scores: dict = {}
            yield from self._fill(objects.fill_zset2, count, scores)
        else:
            pairs: list = []
            yield from self._read_many(count, objects.zset_pair, pairs.append)
            scores = dict(pairs)
        if len(scores) != count:
            raise Corrupt("Duplicate zset fields detected", self._at(start))
        return objects.new_zset(scores)

    def _hash(self, rtype: int) -> _Task:
        start = self._base + self._pos
        count = yield from self._read(read_len)
        if not count:
            return EMPTY
        fields: dict = {}
        yield from self._fill(objects.fill_hash, count, fields)
        if len(fields) != count:
            raise Corrupt("Duplicate hash fields detected", self._at(start))
        return fields

    def _module(self, rtype: int) -> _Task:
        start = self._base + self._pos
        module_id = yield from self._read(read_len)
        name = C.module_type_name(module_id)
        if rtype == C.TYPE_MODULE_PRE_GA:
            raise Corrupt(f"module value of type '{name}' in the pre-release format "
                          "(RDB type 6) cannot be loaded or skipped", self._at(start))
        if self.on_module != "skip":
            raise Corrupt(f"The RDB file contains module data I can't load: no matching "
                          f"module type '{name}' (RDB type 7)", self._at(start))
        yield from self._skip_module_value(name)
        self.modules_skipped += 1
        log.warning("Skipping module value of type '%s' (key %r)", name, self._key)
        return SKIPPED

    def _skip_module_value(self, name: str) -> _Task:
        while True:
            opcode = yield from self._read(read_len)
            if opcode == C.MODULE_OPCODE_EOF:
                return
            if opcode in (C.MODULE_OPCODE_SINT, C.MODULE_OPCODE_UINT):
                yield from self._read(read_len)
            elif opcode == C.MODULE_OPCODE_FLOAT:
                yield from self._read(read_binary_float)
            elif opcode == C.MODULE_OPCODE_DOUBLE:
                yield from self._read(read_binary_double)
            elif opcode == C.MODULE_OPCODE_STRING:
                yield from self._read(read_str)
            else:
                raise Corrupt(f"unknown opcode {opcode} in module '{name}' data")

    def _module_aux_task(self) -> _Task:
        start = self._base + self._pos - 1
        module_id = yield from self._read(read_len)
        when_opcode = yield from self._read(read_len)
        when = yield from self._read(read_len)
        name = C.module_type_name(module_id)
        if when_opcode != C.MODULE_OPCODE_UINT:
            raise Corrupt(f"bad when_opcode in module '{name}' AUX data", self._at(start))
        if self.on_module != "skip":
            raise Corrupt(f"The RDB file contains AUX module data I can't load: no matching "
                          f"module '{name}'", self._at(start))
        yield from self._skip_module_value(name)
        self.modules_skipped += 1
        log.warning("Skipping AUX data of module '%s'", name)
        return ModuleAux(module_id, name, when)

    def _blob_value(self, rtype: int) -> _Task:
        """Types stored as one string holding a zipmap / ziplist / intset / listpack."""
        blob = yield from self._blob()
        try:
            return objects.decode_blob(rtype, blob)
        except Corrupt as corrupt:
            raise self._blob_error(corrupt) from None

    def _quicklist(self, rtype: int) -> _Task:
        count = yield from self._read(read_len)
        if not count:
            return EMPTY
        items: deque = deque()
        for _ in range(count):
            container = C.QUICKLIST_PACKED
            if rtype == C.TYPE_LIST_QUICKLIST_2:
                start = self._base + self._pos
                container = yield from self._read(read_len)
                if container not in (C.QUICKLIST_PACKED, C.QUICKLIST_PLAIN):
                    raise Corrupt("Quicklist integrity check failed: bad container",
                                  self._at(start))
            blob = yield from self._blob()
            if not blob:
                raise Corrupt("Quicklist integrity check failed: empty node",
                              self._at(self._blob_start))
            if container == C.QUICKLIST_PLAIN:
                items.append(blob)
                continue
            try:
                if rtype == C.TYPE_LIST_QUICKLIST_2:
                    items.extend(listpack.parse(blob))
                else:
                    items.extend(ziplist.parse(blob))
            except Corrupt as corrupt:
                raise self._blob_error(corrupt) from None
        return items if items else EMPTY

    def _stream(self, rtype: int) -> _Task:
        value = Stream()
        entries: dict = {}
        nodes = yield from self._read(read_len)
        shape: list = []
        node_ids = set()
        for _ in range(nodes):
            start = self._base + self._pos
            node_key = yield from self._read(read_str)
            if len(node_key) != 16:
                raise Corrupt("Stream node key entry is not the size of a stream ID",
                              self._at(start))
            if node_key in node_ids:
                raise Corrupt("Listpack re-added with existing key", self._at(start))
            node_ids.add(node_key)
            master_id = stream.decode_id(node_key)
            blob = yield from self._blob()
            try:
                shape.append(stream.decode_node(master_id, blob, entries))
            except Corrupt as corrupt:
                raise self._blob_error(corrupt) from None
        value.entries = entries
        value.nodes = SortedDict((node.master_id, node) for node in shape)
        ordered = list(value.nodes.values())
        for node, following in zip(ordered, ordered[1:], strict=False):
            if node.last_id >= following.master_id:
                raise Corrupt("Stream nodes overlap: an entry of one node is past the "
                              "next node's first ID", self._at(self._base + self._pos))
        start = self._base + self._pos
        length = yield from self._read(read_len)
        if length != len(entries):
            raise Corrupt(f"Stream length {length} inconsistent with its {len(entries)} "
                          "entries", self._at(start))
        value.last_id = yield from self._read_id()
        if rtype == C.TYPE_STREAM_LISTPACKS:
            value.entries_added = length
            value.first_id = value.first_entry_id() or (C.UINT64_MASK, C.UINT64_MASK)
        else:
            value.first_id = yield from self._read_id()
            value.max_deleted_id = yield from self._read_id()
            value.entries_added = yield from self._read(read_len)
        groups = yield from self._read(read_len)
        for _ in range(groups):
            start = self._base + self._pos
            group = yield from self._group(rtype, value)
            if group.name in value.groups:
                raise Corrupt(f"Duplicated consumer group name {group.name!r}", self._at(start))
            value.groups[group.name] = group
        return value

    def _group(self, rtype: int, value: Stream) -> _Task:
        name = yield from self._read(read_str)
        last_id = yield from self._read_id()
        if rtype == C.TYPE_STREAM_LISTPACKS:
            entries_read = value.estimate_entries_read(last_id)
        else:
            entries_read = yield from self._read(read_len)
            if entries_read == C.UINT64_MASK:
                entries_read = C.STREAM_INVALID_ENTRIES_READ
        group = StreamGroup(name, last_id, entries_read)
        start = self._base + self._pos
        count = yield from self._read(read_len)
        pel: list = []
        yield from self._read_many(count, objects.pel_entry, pel.append)
        group.pending = SortedDict(pel)
        if len(group.pending) != count:
            raise Corrupt("Duplicated global PEL entry loading stream consumer group",
                          self._at(start))
        consumers = yield from self._read(read_len)
        for _ in range(consumers):
            start = self._base + self._pos
            cname = yield from self._read(read_str)
            if cname in group.consumers:
                raise Corrupt("Duplicate stream consumer detected.", self._at(start))
            seen = yield from self._read(read_ms_time)
            active = None
            if rtype == C.TYPE_STREAM_LISTPACKS_3:
                active = yield from self._read(read_ms_time)
            count = yield from self._read(read_len)
            start = self._base + self._pos
            own: list = []
            yield from self._read_many(count, objects.raw_id, own.append)
            consumer = StreamConsumer(cname, seen, own, active_time=active)
            for entry_id in own:
                nack = group.pending.get(entry_id)
                if nack is None:
                    raise Corrupt("Consumer entry not found in group global PEL", self._at(start))
                if nack.consumer is not None:
                    raise Corrupt("Duplicated consumer PEL entry loading a stream consumer "
                                  "group", self._at(start))
                nack.consumer = cname
            group.consumers[cname] = consumer
        return group

    def _hash_with_ttls(self, rtype: int) -> _Task:
        """Redis 7.4 hashes with field expiry: loadable only when no field has a TTL."""
        min_expire = 0
        if rtype in (C.TYPE_HASH_METADATA, C.TYPE_HASH_LISTPACK_EX):
            min_expire = yield from self._read(read_ms_time)
        start = self._base + self._pos
        if rtype in (C.TYPE_HASH_LISTPACK_EX, C.TYPE_HASH_LISTPACK_EX_PRE_GA):
            blob = yield from self._blob()
            try:
                items = listpack.parse(blob, as_bytes=False)
            except Corrupt as corrupt:
                raise self._blob_error(corrupt) from None
            if len(items) % 3:
                raise Corrupt("hash listpack with TTLs: entries not in triples", self._at(start))
            fields = {}
            ttls = 0
            for i in range(0, len(items), 3):
                field, val, ttl = items[i:i + 3]
                fields[objects.to_bytes(field)] = objects.to_bytes(val)
                ttls += ttl != 0
            count = len(items) // 3
        else:
            count = yield from self._read(read_len)
            triples: list = []
            yield from self._read_many(count, objects.ttl_triple, triples.append)
            fields = {f: v for _, f, v in triples}
            ttls = sum(1 for t, _, _ in triples if t)
        if len(fields) != count:
            raise Corrupt("Duplicate hash fields detected", self._at(start))
        if ttls or min_expire:
            raise Corrupt(f"hash with field expiration (RDB type {rtype}, Redis 7.4) cannot "
                          "be represented", self._at(start))
        return fields if fields else EMPTY


_HANDLERS: dict[int, Callable] = {
    C.TYPE_STRING: RdbParser._string,
    C.TYPE_LIST: RdbParser._list,
    C.TYPE_SET: RdbParser._set,
    C.TYPE_ZSET: RdbParser._zset,
    C.TYPE_HASH: RdbParser._hash,
    C.TYPE_ZSET_2: RdbParser._zset,
    C.TYPE_MODULE_PRE_GA: RdbParser._module,
    C.TYPE_MODULE_2: RdbParser._module,
    C.TYPE_HASH_ZIPMAP: RdbParser._blob_value,
    C.TYPE_LIST_ZIPLIST: RdbParser._blob_value,
    C.TYPE_SET_INTSET: RdbParser._blob_value,
    C.TYPE_ZSET_ZIPLIST: RdbParser._blob_value,
    C.TYPE_HASH_ZIPLIST: RdbParser._blob_value,
    C.TYPE_LIST_QUICKLIST: RdbParser._quicklist,
    C.TYPE_STREAM_LISTPACKS: RdbParser._stream,
    C.TYPE_HASH_LISTPACK: RdbParser._blob_value,
    C.TYPE_ZSET_LISTPACK: RdbParser._blob_value,
    C.TYPE_LIST_QUICKLIST_2: RdbParser._quicklist,
    C.TYPE_STREAM_LISTPACKS_2: RdbParser._stream,
    C.TYPE_SET_LISTPACK: RdbParser._blob_value,
    C.TYPE_STREAM_LISTPACKS_3: RdbParser._stream,
    C.TYPE_HASH_METADATA_PRE_GA: RdbParser._hash_with_ttls,
    C.TYPE_HASH_LISTPACK_EX_PRE_GA: RdbParser._hash_with_ttls,
    C.TYPE_HASH_METADATA: RdbParser._hash_with_ttls,
    C.TYPE_HASH_LISTPACK_EX: RdbParser._hash_with_ttls,
}


def decode_object(rtype: int, data: bytes, *, on_module: str = "error",
                  deep: bool = True) -> tuple[object, int]:
    """Decode one value of RDB type ``rtype`` at the start of ``data`` (a DUMP payload body);
    ``deep``: sanitize-dump-payload's deep checks (see errors.DEEP_CHECKS).

    Returns ``(value, bytes_used)``; value may be :data:`EMPTY` / :data:`SKIPPED`. Raises
    RdbError when the data is corrupt or too short.
    """
    parser = RdbParser(on_module=on_module, verify_checksum=False, deep=deep)
    token = DEEP_CHECKS.set(deep)
    try:
        return _decode_one(parser, rtype, data)
    finally:
        DEEP_CHECKS.reset(token)


def _decode_one(parser: RdbParser, rtype: int, data: bytes) -> tuple[object, int]:
    parser._buf = bytes(data)
    parser._state = 0
    parser.version = C.MAX_READ_VERSION
    try:
        task = parser._object(rtype)
        try:
            next(task)
        except StopIteration as stop:
            return stop.value, parser._pos
        raise parser._error("unexpected end of data", None)
    except Corrupt as corrupt:
        raise parser._error(corrupt.message, corrupt.pos) from None
    except (IndexError, KeyError, ValueError, TypeError, OverflowError,
            struct.error) as bug:  # pragma: no cover - a reader bug; still an RdbError
        raise parser._error(f"corrupt data ({type(bug).__name__}: {bug})", None) from bug


__all__ = ["EMPTY", "SKIPPED", "RdbParser", "decode_object"]
