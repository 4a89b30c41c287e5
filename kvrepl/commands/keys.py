"""Generic keyspace commands (Redis's ``db.c``, ``expire.c``, ``object.c`` and ``sort.c``).

DEL UNLINK EXISTS TYPE KEYS SCAN RANDOMKEY RENAME RENAMENX MOVE COPY TOUCH, the expiry
commands (EXPIRE PEXPIRE EXPIREAT PEXPIREAT TTL PTTL EXPIRETIME PEXPIRETIME PERSIST), OBJECT
and SORT / SORT_RO.

SCAN cursors
------------
Redis's guarantee is that every key present for the whole of a scan is returned at least
once, however other keys come and go. Redis gets it from reverse-binary iteration over its
own hash table buckets; a Python ``dict`` exposes no buckets, and positional access into it
(``islice``) costs O(position) per call, so a position cursor would make a full scan
quadratic (measured: ~7 ms per call at the end of a 1M-key db, ~6 minutes for a whole
COUNT 10 scan), and it would still skip keys when earlier keys are deleted.

kvrepl therefore snapshots the key list when a scan starts (``SCAN 0``): one C-speed
``list(db.data)`` (8 bytes per key while the scan is live). The cursor encodes
``(snapshot id << 32) | position``; every later call slices ``COUNT`` keys from the snapshot
(O(COUNT)) and drops those that are gone (or expired, or filtered by MATCH/TYPE). Measured
on a 1M-key db through ``Engine.execute``: the ``SCAN 0`` call 15-35 ms, every later call
~12 us at COUNT 10, a whole scan at COUNT 1000 0.8 s. A key present for the whole scan is in the snapshot, so it is
returned exactly once; keys added meanwhile are not returned, which Redis allows. A scan that
fits in one reply keeps no state.

Snapshots are bounded: at most :data:`MAX_LIVE_SCANS` unfinished scans per node. A new scan
takes the slot of the least recently used one only if that one has been idle for
:data:`SCAN_IDLE_MS`; otherwise the new scan is answered in full at once (cursor 0: COUNT is
a hint, and Redis too returns small collections whole). A cursor kvrepl no longer knows (its
snapshot was given away, or it never issued it) is likewise answered with every key at once.
So no scan can miss a key and every scan ends, however many run interleaved (a least
recently used policy alone would make more than MAX_LIVE_SCANS round-robin scans restart
forever); the price of the overflow cases is one large reply, like KEYS.

OBJECT IDLETIME / FREQ
----------------------
The store keeps Redis's per-key access field (:meth:`Database.lookup` updates it; TYPE,
EXISTS, TTL and OBJECT use :meth:`Database.peek`, Redis's LOOKUP_NOTOUCH).
"""

from __future__ import annotations

import math
import weakref
from collections import OrderedDict, deque
from collections.abc import Sized
from functools import partial

from kvrepl.commands.args import (
    INT64_MAX,
    INT64_MIN,
    INT_MAX,
    INT_MIN,
    parse_int,
    parse_range_int,
    strtod,
)
from kvrepl.commands.core import Session, command
from kvrepl.commands.glob import glob_match
from kvrepl.commands.scan import parse_scan_cursor, parse_scan_options, scan_reply
from kvrepl.commands.strings import already_expired, expire_error
from kvrepl.errors import (
    DB_INDEX_OUT_OF_RANGE,
    NO_SUCH_KEY,
    SYNTAX,
    ReplyError,
    WrongTypeError,
)
from kvrepl.notify import GENERIC, LIST, notify, replied
from kvrepl.protocol.replies import OK, DeferredArray, Status
from kvrepl.store import Database, Keyspace, ZSet, type_name
from kvrepl.store.encoding import object_encoding, object_refcount
from kvrepl.store.values import copy_value, is_string, string_bytes

_SAME_OBJECT = "ERR source and destination objects are the same"


def store_result(s: Session, dst: bytes, value: Sized, cls: int, event: bytes,
                 changes: int = 1, reply_first: bool = False) -> int:
    """The STORE forms' epilogue (``setKey``, or ``dbDelete`` for an empty result): replace
    ``dst`` with ``value``, dropping its TTL, or delete it when ``value`` is empty. Counts
    ``changes`` (or one deletion) in ``dirty`` and fires ``event`` of class ``cls`` (or
    ``del``), after the reply when ``reply_first`` (sets' and sorted sets' STORE forms);
    returns the size stored."""
    if value:
        s.db.lookup(dst)  # setKey's lookupKeyWrite: an access (LFU counter, LRU clock)
        s.db.set(dst, value)
        if reply_first:
            replied(s)
        notify(s, cls, event, dst)
        s.engine.dirty += changes
        return len(value)
    if reply_first:
        replied(s)
    if s.db.delete(dst):
        notify(s, GENERIC, b"del", dst)
        s.engine.dirty += 1
    return len(value)


def _other_db(s: Session, arg: bytes) -> Database:
    """getIntFromObjectOrReply + selectDb: the database numbered ``arg``."""
    index = parse_range_int(arg, INT_MIN, INT_MAX)
    dbs = s.engine.keyspace.dbs
    if not 0 <= index < len(dbs):
        raise ReplyError(DB_INDEX_OUT_OF_RANGE)
    return dbs[index]


# -- existence and deletion ----------------------------------------------------------------
@command("del", "unlink")
def del_(s: Session, argv: list[bytes]) -> int:
    """DEL key [key ...]: the number of keys removed. UNLINK is DEL (there is no background
    freeing to do in Python)."""
    db = s.db
    deleted = 0
    watches = s.engine.watches
    gone: list[bytes] | None = [] if watches.pending else None  # only while WATCHed
    for key in argv[1:]:
        # lookup first, as expireIfNeeded: an expired key is removed (and propagated as
        # DEL) by the store and does not count.
        if db.lookup(key) is not None and db.delete(key):
            deleted += 1
            notify(s, GENERIC, b"del", key)
            if gone is not None:
                gone.append(key)
    if gone is not None:
        watches.changed_only(db, *gone)  # a missing key was not modified
    s.engine.dirty += deleted
    return deleted


@command("exists")
def exists(s: Session, argv: list[bytes]) -> object:
    """EXISTS key [key ...]: how many of the keys exist (repeats count again)."""
    peek = s.db.peek
    return sum(1 for key in argv[1:] if peek(key) is not None)


@command("touch")
def touch(s: Session, argv: list[bytes]) -> object:
    """TOUCH key [key ...]: how many of the keys exist; each counts as an access."""
    lookup = s.db.lookup
    return sum(1 for key in argv[1:] if lookup(key) is not None)


@command("type")
def type_(s: Session, argv: list[bytes]) -> object:
    """TYPE key: a status reply, ``none`` for a missing key."""
    value = s.db.peek(argv[1])
    return Status(b"none" if value is None else type_name(value))


@command("keys")
def keys(s: Session, argv: list[bytes]) -> object:
    """KEYS pattern: every live key matching the glob (expired keys skipped, not deleted)."""
    pattern = argv[1]
    if pattern == b"*":
        return DeferredArray(s.db.keys())
    return DeferredArray([key for key in s.db.keys() if glob_match(pattern, key)])


@command("randomkey")
def randomkey(s: Session, argv: list[bytes]) -> object:
    """RANDOMKEY: a random live key, or nil."""
    return s.db.random_key()


# -- SCAN ----------------------------------------------------------------------------------
MAX_LIVE_SCANS = 64
SCAN_IDLE_MS = 30_000  # an unfinished scan untouched this long may give up its snapshot
_POSITION_BITS = 32
_POSITION_MASK = (1 << _POSITION_BITS) - 1


class _ScanSnapshots:
    """The unfinished scans of one keyspace: id -> [db index, key list, last use in ms],
    least recently used first."""

    __slots__ = ("live", "next_id")

    def __init__(self) -> None:
        self.live: OrderedDict[int, list] = OrderedDict()
        self.next_id = 0

    def register(self, db_index: int, snapshot: list[bytes], now_ms: int) -> int:
        """Keep ``snapshot`` for later calls; 0 when every slot is held by a scan in use."""
        if len(self.live) >= MAX_LIVE_SCANS:
            oldest_id, oldest = next(iter(self.live.items()))
            if now_ms - oldest[2] < SCAN_IDLE_MS:
                return 0
            del self.live[oldest_id]
        self.next_id = self.next_id % ((1 << 31) - 1) + 1  # ids 1 .. 2**31-1, never 0
        self.live[self.next_id] = [db_index, snapshot, now_ms]
        return self.next_id


_SCANS: weakref.WeakKeyDictionary[Keyspace, _ScanSnapshots] = weakref.WeakKeyDictionary()


def _scan_batch(s: Session, cursor: int, count: int) -> tuple[int, list[bytes]]:
    """The next cursor and the keys (not yet filtered) this call covers; see the module
    docstring for why this cannot miss a key present for the whole scan."""
    db = s.db
    keyspace = s.engine.keyspace
    now = keyspace.now_ms()
    scans = _SCANS.get(keyspace)
    if scans is None:
        scans = _SCANS[keyspace] = _ScanSnapshots()
    if cursor:
        scan_id = cursor >> _POSITION_BITS
        live = scans.live.get(scan_id)
        if live is None or live[0] != db.id:
            # Not a cursor kvrepl still knows (dropped while idle, or never issued): finish
            # at once with every key, so nothing present throughout can be missed.
            return 0, list(db.data)
        position = cursor & _POSITION_MASK
        snapshot = live[1]
        batch = snapshot[position:position + count]
        position += count
        if position >= len(snapshot):
            del scans.live[scan_id]
            return 0, batch
        live[2] = now
        scans.live.move_to_end(scan_id)
        return (scan_id << _POSITION_BITS) | position, batch
    snapshot = list(db.data)
    if len(snapshot) <= count:
        return 0, snapshot
    scan_id = scans.register(db.id, snapshot, now)
    if not scan_id:
        return 0, snapshot  # no slot free: COUNT is only a hint, answer everything now
    return (scan_id << _POSITION_BITS) | count, snapshot[:count]


@command("scan")
def scan(s: Session, argv: list[bytes]) -> object:
    """SCAN cursor [MATCH pattern] [COUNT count] [TYPE type] (see the module docstring)."""
    cursor = parse_scan_cursor(argv[1])
    count, pattern, typename = parse_scan_options(argv, 2, keyspace=True)
    next_cursor, batch = _scan_batch(s, cursor, count)
    found = []
    find = s.db.find
    for key in batch:
        if pattern is not None and not glob_match(pattern, key):
            continue
        value = find(key)
        if value is None:
            continue
        if typename is not None and type_name(value) != typename:
            continue
        found.append(key)
    return scan_reply(next_cursor, found)


# -- renaming, moving, copying ---------------------------------------------------------------
def _rename(nx: bool, s: Session, argv: list[bytes]) -> object:
    """RENAME key newkey (the TTL moves with the value; an existing newkey is replaced);
    RENAMENX answers 0 when newkey exists."""
    src, dst = argv[1], argv[2]
    db = s.db
    value = db.lookup(src)
    if value is None:
        raise ReplyError(NO_SUCH_KEY)
    if src == dst:
        return 0 if nx else OK
    expire = db.get_expire(src)
    if db.lookup(dst) is not None and nx:
        return 0
    access = db.access_of(src)  # the object moves, its LRU time or LFU counter with it
    db.delete(dst)
    db.delete(src)
    db.add(dst, value, access)
    if expire is not None:
        db.set_expire(dst, expire)
    notify(s, GENERIC, b"rename_from", src)
    notify(s, GENERIC, b"rename_to", dst)
    s.engine.dirty += 1
    return 1 if nx else OK


command("rename")(partial(_rename, False))
command("renamenx")(partial(_rename, True))


@command("move")
def move(s: Session, argv: list[bytes]) -> object:
    """MOVE key db: 1 when moved; 0 when missing here or present there."""
    src = s.db
    dst = _other_db(s, argv[2])
    if dst is src:
        raise ReplyError(_SAME_OBJECT)
    key = argv[1]
    value = src.lookup(key)
    if value is None:
        return 0
    expire = src.get_expire(key)
    if dst.lookup(key) is not None:
        return 0
    dst.before_write(key)
    dst.delete(key)  # a logically expired leftover on a replica
    dst.add(key, value, src.access_of(key))  # the object moves, its access data with it
    if expire is not None:
        dst.set_expire(key, expire)
    src.delete(key)
    notify(s, GENERIC, b"move_from", key, src.id)
    notify(s, GENERIC, b"move_to", key, dst.id)
    s.engine.dirty += 1
    return 1


@command("copy")
def copy(s: Session, argv: list[bytes]) -> object:
    """COPY source destination [DB db] [REPLACE]"""
    src = dst = s.db
    replace = False
    j = 3
    while j < len(argv):
        opt = argv[j].lower()
        if opt == b"replace":
            replace = True
        elif opt == b"db" and j + 1 < len(argv):
            dst = _other_db(s, argv[j + 1])
            j += 1
        else:
            raise ReplyError(SYNTAX)
        j += 1
    key, newkey = argv[1], argv[2]
    if src is dst and key == newkey:
        raise ReplyError(_SAME_OBJECT)
    value = src.lookup_read(key)  # lookupKeyRead in Redis: counted in keyspace_hits
    if value is None:
        return 0
    expire = src.get_expire(key)
    if dst.lookup(newkey) is not None and not replace:
        return 0
    if dst is not src:
        dst.before_write(newkey)
        s.engine.watches.changed_only(dst, newkey)  # not the namesake in the source db
    dst.delete(newkey)
    dst.add(newkey, copy_value(value))
    if expire is not None:
        dst.set_expire(newkey, expire)
    notify(s, GENERIC, b"copy_to", newkey, dst.id)
    s.engine.dirty += 1
    return 1


# -- expiry --------------------------------------------------------------------------------
_EXPIRE_NX, _EXPIRE_XX, _EXPIRE_GT, _EXPIRE_LT = 1, 2, 4, 8
_EXPIRE_FLAGS = {b"nx": _EXPIRE_NX, b"xx": _EXPIRE_XX, b"gt": _EXPIRE_GT, b"lt": _EXPIRE_LT}


def _expire_generic(relative: bool, seconds: bool, s: Session, argv: list[bytes]) -> int:
    """expireGenericCommand: EXPIRE key seconds, PEXPIRE key milliseconds, EXPIREAT key
    unix-seconds, PEXPIREAT key unix-ms, each [NX|XX|GT|LT]. Propagated as PEXPIREAT, or
    DEL when the time is past."""
    flags = 0
    for opt in argv[3:]:
        flag = _EXPIRE_FLAGS.get(opt.lower())
        if flag is None:
            raise ReplyError(f"ERR Unsupported option {opt.decode('utf-8', 'replace')}")
        flags |= flag
    if flags & _EXPIRE_NX and flags & (_EXPIRE_XX | _EXPIRE_GT | _EXPIRE_LT):
        raise ReplyError("ERR NX and XX, GT or LT options at the same time are not compatible")
    if flags & _EXPIRE_GT and flags & _EXPIRE_LT:
        raise ReplyError("ERR GT and LT options at the same time are not compatible")
    when = parse_int(argv[2])
    if seconds:
        # C division truncates toward zero: LLONG_MIN / 1000 is -9223372036854775.
        if when > INT64_MAX // 1000 or when < -(-INT64_MIN // 1000):
            raise expire_error(argv)
        when *= 1000
    basetime = s.engine.keyspace.now_ms() if relative else 0
    if when > INT64_MAX - basetime:
        raise expire_error(argv)
    when += basetime

    key = argv[1]
    db = s.db
    if db.lookup(key) is None:
        return 0
    if flags:
        current = db.get_expire(key)
        if flags & _EXPIRE_NX and current is not None:
            return 0
        if flags & _EXPIRE_XX and current is None:
            return 0
        if flags & _EXPIRE_GT and (current is None or when <= current):
            return 0
        if flags & _EXPIRE_LT and current is not None and when >= current:
            return 0
    engine = s.engine
    if already_expired(s, when):
        db.delete(key)
        engine.dirty += 1
        engine.rewrite([b"DEL", key])
        notify(s, GENERIC, b"del", key)
        return 1
    db.set_expire(key, when)
    replied(s)
    notify(s, GENERIC, b"expire", key)
    engine.dirty += 1
    if relative or seconds:  # PEXPIREAT itself is propagated as sent
        engine.rewrite([b"PEXPIREAT", key, str(when).encode(), *argv[3:]])
    return 1


command("expire")(partial(_expire_generic, True, True))
command("pexpire")(partial(_expire_generic, True, False))
command("expireat")(partial(_expire_generic, False, True))
command("pexpireat")(partial(_expire_generic, False, False))


def _ttl_generic(in_ms: bool, absolute: bool, s: Session, argv: list[bytes]) -> int:
    """TTL key (seconds left, rounded), PTTL (milliseconds), EXPIRETIME / PEXPIRETIME (the
    absolute unix time): -1 without expiry, -2 when missing."""
    key = argv[1]
    if s.db.peek(key) is None:
        return -2
    when = s.db.get_expire(key)
    if when is None:
        return -1
    ttl = max(when if absolute else when - s.engine.keyspace.now_ms(), 0)
    return ttl if in_ms else (ttl + 500) // 1000


command("ttl")(partial(_ttl_generic, False, False))
command("pttl")(partial(_ttl_generic, True, False))
command("expiretime")(partial(_ttl_generic, False, True))
command("pexpiretime")(partial(_ttl_generic, True, True))


@command("persist")
def persist(s: Session, argv: list[bytes]) -> object:
    """PERSIST key: 1 when a TTL was removed."""
    if s.db.lookup(argv[1]) is not None and s.db.persist(argv[1]):
        notify(s, GENERIC, b"persist", argv[1])
        s.engine.dirty += 1
        return 1
    return 0


# -- OBJECT ----------------------------------------------------------------------------------
_OBJECT_HELP = (
    "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "IDLETIME <key>",
    "    Return the idle time of the <key>, that is the approximated number of",
    "    seconds elapsed since the last access to the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
    "HELP",
    "    Prints this help.",
)
_POLICY_NOTE = ("Please note that when switching between policies at runtime LRU and LFU "
                "data will take some time to adjust.")


def _lfu_policy(s: Session) -> bool:
    return "lfu" in s.engine.config.maxmemory_policy


@command("object|help")
def object_help(s: Session, argv: list[bytes]) -> object:
    """OBJECT HELP"""
    return [Status(line.encode()) for line in _OBJECT_HELP]


@command("object|encoding")
def object_encoding_(s: Session, argv: list[bytes]) -> object:
    """OBJECT ENCODING key: see :mod:`kvrepl.store.encoding`."""
    value = s.db.peek(argv[2], notify=False)
    return None if value is None else object_encoding(value, s.engine.config)


@command("object|refcount")
def object_refcount_(s: Session, argv: list[bytes]) -> object:
    """OBJECT REFCOUNT key: INT_MAX for Redis's shared small integers, else 1."""
    value = s.db.peek(argv[2], notify=False)
    return None if value is None else object_refcount(value, s.engine.config)


@command("object|idletime")
def object_idletime(s: Session, argv: list[bytes]) -> object:
    """OBJECT IDLETIME key: seconds since the key was last read or written."""
    if s.db.peek(argv[2], notify=False) is None:
        return None
    if _lfu_policy(s):
        raise ReplyError("ERR An LFU maxmemory policy is selected, idle time not tracked. "
                         + _POLICY_NOTE)
    return s.db.idle_seconds(argv[2])


@command("object|freq")
def object_freq(s: Session, argv: list[bytes]) -> object:
    """OBJECT FREQ key: the key's logarithmic access counter, decayed as Redis does."""
    if s.db.peek(argv[2], notify=False) is None:
        return None
    if not _lfu_policy(s):
        raise ReplyError("ERR An LFU maxmemory policy is not selected, access frequency not "
                         "tracked. " + _POLICY_NOTE)
    return s.db.frequency(argv[2])


# -- SORT ------------------------------------------------------------------------------------
def sort_score(text: bytes) -> float | None:
    """The score SORT reads with ``strtod`` on the C string; None where Redis reports a
    conversion error (trailing garbage, NaN, or ERANGE: overflow or underflow)."""
    text = text.split(b"\0", 1)[0]
    if not text:
        return 0.0  # strtod converts nothing and stops at the end: no error, 0
    parsed = strtod(text)
    if parsed is None or parsed[1] or math.isnan(parsed[0]):
        return None
    return parsed[0]


def _by_pattern(db: Database, pattern: bytes, subst: bytes) -> bytes | None:
    """lookupKeyByPattern: ``#`` is the element itself; ``pre*post`` a string key;
    ``pre*post->field`` a hash field. A pattern without ``*`` finds nothing."""
    if pattern == b"#":
        return subst
    star = pattern.find(b"*")
    if star < 0:
        return None
    arrow = pattern.find(b"->", star + 1)
    field = None
    end = len(pattern)
    if arrow >= 0 and arrow + 2 < len(pattern):
        field = pattern[arrow + 2:]
        end = arrow
    value = db.lookup_read(pattern[:star] + subst + pattern[star + 1:end])
    if value is None:
        return None
    if field is not None:
        return value.get(field) if type(value) is dict else None  # type: ignore[union-attr]
    # A string changed in place is copied: SORT keeps the value, not the live object.
    return string_bytes(value) if is_string(value) else None  # type: ignore[arg-type]


def _sort_generic(readonly: bool, s: Session, argv: list[bytes]) -> object:
    """SORT key [BY pattern] [LIMIT offset count] [GET pattern ...] [ASC|DESC] [ALPHA]
    [STORE destination], and SORT_RO (no STORE): ``sortCommandGeneric``, step by step, so
    LIMIT and tie orders come out as in Redis."""
    desc = alpha = dontsort = False
    limit_start, limit_count = 0, -1
    sortby: bytes | None = None
    storekey: bytes | None = None
    gets: list[bytes] = []
    j = 2
    argc = len(argv)
    while j < argc:
        opt = argv[j].lower()
        left = argc - j - 1
        if opt == b"asc":
            desc = False
        elif opt == b"desc":
            desc = True
        elif opt == b"alpha":
            alpha = True
        elif opt == b"limit" and left >= 2:
            limit_start = parse_int(argv[j + 1])
            limit_count = parse_int(argv[j + 2])
            j += 2
        elif not readonly and opt == b"store" and left >= 1:
            storekey = argv[j + 1]
            j += 1
        elif opt == b"by" and left >= 1:
            sortby = argv[j + 1]
            dontsort = b"*" not in sortby
            j += 1
        elif opt == b"get" and left >= 1:
            gets.append(argv[j + 1])
            j += 1
        else:
            raise ReplyError(SYNTAX)
        j += 1

    db = s.db
    value = db.lookup_read(argv[1])  # counted for SORT ... STORE too, as in Redis
    if value is None:
        value = deque()
    kind = type(value)
    if kind is not deque and kind is not set and kind is not ZSet:
        raise WrongTypeError()
    if dontsort and kind is set and storekey is not None:
        # A set has no order of its own: sort what is stored so replicas agree.
        dontsort, alpha, sortby = False, True, None

    size = len(value)  # type: ignore[arg-type]
    start = min(max(limit_start, 0), size)
    limit_count = min(max(limit_count, -1), size)
    end = size - 1 if limit_count < 0 else start + limit_count - 1
    if start >= size:
        start, end = size - 1, size - 2
    if end >= size:
        end = size - 1

    if dontsort and kind is not set:
        # Lists and sorted sets keep their own order (reversed by DESC) and LIMIT slices it.
        if kind is deque:
            ordered = list(reversed(value)) if desc else list(value)  # type: ignore[arg-type]
        else:
            pairs = value.ordered  # type: ignore[union-attr]
            ordered = [m for _, m in (reversed(pairs) if desc else pairs)]
        vector = ordered[start:end + 1] if end >= start else []
        start, end = 0, len(vector) - 1
    else:
        if kind is deque:
            vector = list(value)  # type: ignore[arg-type]
        elif kind is set:
            # An intset iterates in ascending order in Redis; a hashtable in no set order.
            if object_encoding(value, s.engine.config) == b"intset":
                vector = sorted(value, key=int)  # type: ignore[arg-type]
            else:
                vector = list(value)  # type: ignore[arg-type]
        else:
            vector = list(value.scores)  # type: ignore[union-attr]

    if not dontsort:
        if alpha:
            if sortby is not None:
                def alpha_key(item: bytes) -> tuple[bool, bytes]:
                    found = _by_pattern(db, sortby, item)  # type: ignore[arg-type]
                    return (found is not None, found or b"")
                vector.sort(key=alpha_key, reverse=desc)
            else:
                vector.sort(reverse=desc)
        else:
            conversion_error = False
            scored = []
            for item in vector:
                by = _by_pattern(db, sortby, item) if sortby is not None else item
                score = 0.0
                if by is not None:
                    parsed = sort_score(by)
                    if parsed is None:
                        conversion_error = True
                    else:
                        score = parsed
                scored.append((score, item))
            if conversion_error:
                raise ReplyError("ERR One or more scores can't be converted into double")
            scored.sort(reverse=desc)
            vector = [item for _, item in scored]

    selected = vector[start:end + 1] if end >= start else []
    if storekey is None:
        if not gets:
            return selected
        return [_by_pattern(db, pattern, item) for item in selected for pattern in gets]
    if gets:
        stored = [_by_pattern(db, pattern, item) or b"" for item in selected for pattern in gets]
    else:
        stored = selected
    return store_result(s, storekey, deque(stored), LIST, b"sortstore", len(stored))


command("sort")(partial(_sort_generic, False))
command("sort_ro")(partial(_sort_generic, True))

