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
kvrepl keeps no per-key access clock: updating one on every read would be paid by every GET
for a debugging command (measured: +55 ns per lookup, ~3% of a 1.8 us GET through
``Engine.execute``; it would also have to live in the store's lookup), so ``OBJECT IDLETIME`` answers 0 for any existing key and
``OBJECT FREQ`` (under an LFU policy) answers Redis's initial counter, 5. The errors for the
wrong maxmemory policy are Redis's, word for word.
"""

from __future__ import annotations

import re
import weakref
from collections import OrderedDict, deque

from kvrepl.commands.args import INT64_MAX, INT64_MIN
from kvrepl.commands.core import Session, command
from kvrepl.commands.glob import glob_match
from kvrepl.commands.strings import already_expired, expire_error, parse_ll
from kvrepl.errors import (
    DB_INDEX_OUT_OF_RANGE,
    NO_SUCH_KEY,
    SYNTAX,
    ReplyError,
    WrongTypeError,
)
from kvrepl.protocol.replies import OK, Status
from kvrepl.store import Database, Keyspace, ZSet, type_name
from kvrepl.store.encoding import object_encoding, object_refcount
from kvrepl.store.values import copy_value

_SAME_OBJECT = "ERR source and destination objects are the same"
_INT_MIN, _INT_MAX = -(1 << 31), (1 << 31) - 1
LFU_INIT_VAL = 5


def _other_db(s: Session, arg: bytes) -> Database:
    """getIntFromObjectOrReply + selectDb: the database numbered ``arg``."""
    index = parse_ll(arg)
    if not _INT_MIN <= index <= _INT_MAX:
        raise ReplyError(
            f"ERR value is out of range, value must between {_INT_MIN} and {_INT_MAX}")
    dbs = s.engine.keyspace.dbs
    if not 0 <= index < len(dbs):
        raise ReplyError(DB_INDEX_OUT_OF_RANGE)
    return dbs[index]


# -- existence and deletion ----------------------------------------------------------------
@command("del")
def del_(s: Session, argv: list[bytes]) -> object:
    """DEL key [key ...]: the number of keys removed."""
    return _delete_keys(s, argv)


@command("unlink")
def unlink(s: Session, argv: list[bytes]) -> object:
    """UNLINK key [key ...]: DEL (there is no background freeing to do in Python)."""
    return _delete_keys(s, argv)


def _delete_keys(s: Session, argv: list[bytes]) -> int:
    db = s.db
    deleted = 0
    for key in argv[1:]:
        # lookup first, as expireIfNeeded: an expired key is removed (and propagated as
        # DEL) by the store and does not count.
        if db.lookup(key) is not None and db.delete(key):
            deleted += 1
    s.engine.dirty += deleted
    return deleted


@command("exists")
def exists(s: Session, argv: list[bytes]) -> object:
    """EXISTS key [key ...]: how many of the keys exist (repeats count again)."""
    lookup = s.db.lookup
    return sum(1 for key in argv[1:] if lookup(key) is not None)


@command("touch")
def touch(s: Session, argv: list[bytes]) -> object:
    """TOUCH key [key ...]: how many of the keys exist."""
    return exists(s, argv)


@command("type")
def type_(s: Session, argv: list[bytes]) -> object:
    """TYPE key: a status reply, ``none`` for a missing key."""
    value = s.db.lookup(argv[1])
    return Status(b"none" if value is None else type_name(value))


@command("keys")
def keys(s: Session, argv: list[bytes]) -> object:
    """KEYS pattern: every live key matching the glob (expired keys skipped, not deleted)."""
    pattern = argv[1]
    if pattern == b"*":
        return list(s.db.keys())
    return [key for key in s.db.keys() if glob_match(pattern, key)]


@command("randomkey")
def randomkey(s: Session, argv: list[bytes]) -> object:
    """RANDOMKEY: a random live key, or nil."""
    return s.db.random_key()


# -- SCAN ----------------------------------------------------------------------------------
MAX_LIVE_SCANS = 64
SCAN_IDLE_MS = 30_000  # an unfinished scan untouched this long may give up its snapshot
_POSITION_BITS = 32
_POSITION_MASK = (1 << _POSITION_BITS) - 1
_CURSOR_RE = re.compile(rb"[+-]?[0-9]*\Z")
_ULONG_MAX = (1 << 64) - 1


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


def parse_scan_cursor(arg: bytes) -> int:
    """parseScanCursorOrReply: ``strtoul`` rules (``-1`` wraps, ``""`` is 0, no spaces)."""
    if not _CURSOR_RE.match(arg) or (arg and not arg[-1:].isdigit()):
        raise ReplyError("ERR invalid cursor")
    if not arg:
        return 0
    value = int(arg)
    if abs(value) > _ULONG_MAX:
        raise ReplyError("ERR invalid cursor")
    return value & _ULONG_MAX


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
    count = 10
    pattern: bytes | None = None
    typename: bytes | None = None
    i = 2
    while i < len(argv):
        opt = argv[i].lower()
        if opt == b"count" and i + 1 < len(argv):
            count = parse_ll(argv[i + 1])
            if count < 1:
                raise ReplyError(SYNTAX)
        elif opt == b"match" and i + 1 < len(argv):
            pattern = None if argv[i + 1] == b"*" else argv[i + 1]
        elif opt == b"type" and i + 1 < len(argv):
            typename = argv[i + 1].lower()
        else:
            raise ReplyError(SYNTAX)
        i += 2

    next_cursor, batch = _scan_batch(s, cursor, count)
    found = []
    lookup = s.db.lookup
    for key in batch:
        if pattern is not None and not glob_match(pattern, key):
            continue
        value = lookup(key)
        if value is None:
            continue
        if typename is not None and type_name(value) != typename:
            continue
        found.append(key)
    return [str(next_cursor).encode(), found]


# -- renaming, moving, copying ---------------------------------------------------------------
def _rename(s: Session, argv: list[bytes], nx: bool) -> object:
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
    db.delete(dst)
    db.delete(src)
    db.add(dst, value)
    if expire is not None:
        db.set_expire(dst, expire)
    s.engine.dirty += 1
    return 1 if nx else OK


@command("rename")
def rename(s: Session, argv: list[bytes]) -> object:
    """RENAME key newkey: the TTL moves with the value; an existing newkey is replaced."""
    return _rename(s, argv, False)


@command("renamenx")
def renamenx(s: Session, argv: list[bytes]) -> object:
    """RENAMENX key newkey: 0 when newkey exists."""
    return _rename(s, argv, True)


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
    dst.add(key, value)
    if expire is not None:
        dst.set_expire(key, expire)
    src.delete(key)
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
    value = src.lookup(key)
    if value is None:
        return 0
    expire = src.get_expire(key)
    if dst.lookup(newkey) is not None and not replace:
        return 0
    if dst is not src:
        dst.before_write(newkey)
    dst.delete(newkey)
    dst.add(newkey, copy_value(value))
    if expire is not None:
        dst.set_expire(newkey, expire)
    s.engine.dirty += 1
    return 1


# -- expiry --------------------------------------------------------------------------------
_EXPIRE_NX, _EXPIRE_XX, _EXPIRE_GT, _EXPIRE_LT = 1, 2, 4, 8
_EXPIRE_FLAGS = {b"nx": _EXPIRE_NX, b"xx": _EXPIRE_XX, b"gt": _EXPIRE_GT, b"lt": _EXPIRE_LT}


def _expire_generic(s: Session, argv: list[bytes], relative: bool, seconds: bool) -> int:
    """expireGenericCommand: EXPIRE, PEXPIRE, EXPIREAT and PEXPIREAT."""
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
    when = parse_ll(argv[2])
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
        return 1
    db.set_expire(key, when)
    engine.dirty += 1
    if relative or seconds:  # PEXPIREAT itself is propagated as sent
        engine.rewrite([b"PEXPIREAT", key, str(when).encode(), *argv[3:]])
    return 1


@command("expire")
def expire(s: Session, argv: list[bytes]) -> object:
    """EXPIRE key seconds [NX|XX|GT|LT] (propagated as PEXPIREAT, or DEL when past)."""
    return _expire_generic(s, argv, relative=True, seconds=True)


@command("pexpire")
def pexpire(s: Session, argv: list[bytes]) -> object:
    """PEXPIRE key milliseconds [NX|XX|GT|LT]"""
    return _expire_generic(s, argv, relative=True, seconds=False)


@command("expireat")
def expireat(s: Session, argv: list[bytes]) -> object:
    """EXPIREAT key unix-seconds [NX|XX|GT|LT]"""
    return _expire_generic(s, argv, relative=False, seconds=True)


@command("pexpireat")
def pexpireat(s: Session, argv: list[bytes]) -> object:
    """PEXPIREAT key unix-ms [NX|XX|GT|LT]"""
    return _expire_generic(s, argv, relative=False, seconds=False)


def _ttl_generic(s: Session, key: bytes, in_ms: bool, absolute: bool) -> int:
    if s.db.lookup(key) is None:
        return -2
    when = s.db.get_expire(key)
    if when is None:
        return -1
    ttl = max(when if absolute else when - s.engine.keyspace.now_ms(), 0)
    return ttl if in_ms else (ttl + 500) // 1000


@command("ttl")
def ttl(s: Session, argv: list[bytes]) -> object:
    """TTL key: seconds left (rounded), -1 without expiry, -2 when missing."""
    return _ttl_generic(s, argv[1], in_ms=False, absolute=False)


@command("pttl")
def pttl(s: Session, argv: list[bytes]) -> object:
    """PTTL key: milliseconds left."""
    return _ttl_generic(s, argv[1], in_ms=True, absolute=False)


@command("expiretime")
def expiretime(s: Session, argv: list[bytes]) -> object:
    """EXPIRETIME key: the absolute unix time in seconds."""
    return _ttl_generic(s, argv[1], in_ms=False, absolute=True)


@command("pexpiretime")
def pexpiretime(s: Session, argv: list[bytes]) -> object:
    """PEXPIRETIME key: the absolute unix time in milliseconds."""
    return _ttl_generic(s, argv[1], in_ms=True, absolute=True)


@command("persist")
def persist(s: Session, argv: list[bytes]) -> object:
    """PERSIST key: 1 when a TTL was removed."""
    if s.db.lookup(argv[1]) is not None and s.db.persist(argv[1]):
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
    value = s.db.lookup(argv[2])
    return None if value is None else object_encoding(value, s.engine.config)


@command("object|refcount")
def object_refcount_(s: Session, argv: list[bytes]) -> object:
    """OBJECT REFCOUNT key: INT_MAX for Redis's shared small integers, else 1."""
    value = s.db.lookup(argv[2])
    return None if value is None else object_refcount(value, s.engine.config)


@command("object|idletime")
def object_idletime(s: Session, argv: list[bytes]) -> object:
    """OBJECT IDLETIME key: always 0 (no access clock is kept; see the module docstring)."""
    if s.db.lookup(argv[2]) is None:
        return None
    if _lfu_policy(s):
        raise ReplyError("ERR An LFU maxmemory policy is selected, idle time not tracked. "
                         + _POLICY_NOTE)
    return 0


@command("object|freq")
def object_freq(s: Session, argv: list[bytes]) -> object:
    """OBJECT FREQ key: the initial LFU counter (no access counting is kept)."""
    if s.db.lookup(argv[2]) is None:
        return None
    if not _lfu_policy(s):
        raise ReplyError("ERR An LFU maxmemory policy is not selected, access frequency not "
                         "tracked. " + _POLICY_NOTE)
    return LFU_INIT_VAL


# -- SORT ------------------------------------------------------------------------------------
# strtod's grammar after leading whitespace: decimal, hex float, inf/infinity, nan(...).
_STRTOD_RE = re.compile(
    rb"[ \t\n\v\f\r]*([+-]?)(?:"
    rb"(?P<dec>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
    rb"|(?P<hex>0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?[0-9]+)?)"
    rb"|(?P<inf>inf(?:inity)?)"
    rb"|(?P<nan>nan(?:\([0-9A-Za-z_]*\))?)"
    rb")\Z",
    re.IGNORECASE,
)
_DBL_MIN = 2.2250738585072014e-308


def sort_score(text: bytes) -> float | None:
    """The score SORT reads with ``strtod``; None where Redis reports a conversion error
    (trailing garbage, NaN, or a result out of double range: ERANGE)."""
    nul = text.find(b"\0")
    if nul >= 0:
        text = text[:nul]  # strtod stops at the C string's end
    if not text:
        return 0.0
    match = _STRTOD_RE.match(text)
    if match is None or match.group("nan") is not None:
        return None
    sign = -1.0 if match.group(1) == b"-" else 1.0
    if match.group("inf") is not None:
        return sign * float("inf")
    if match.group("hex") is not None:
        digits = match.group("hex").decode()
        if "p" not in digits.lower():
            digits += "p0"
        try:
            value = float.fromhex(digits)
        except OverflowError:
            return None
        mantissa_zero = not any(c not in "0x.X" for c in digits.lower().split("p")[0])
    else:
        value = float(match.group("dec"))
        mantissa_zero = not any(c in b"123456789" for c in match.group("dec").split(b"e")[0]
                                .split(b"E")[0])
    if value == float("inf") or (not mantissa_zero and abs(value) < _DBL_MIN):
        return None  # overflow, or underflow to a subnormal or zero: ERANGE
    return sign * value


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
    value = db.lookup(pattern[:star] + subst + pattern[star + 1:end])
    if value is None:
        return None
    if field is not None:
        return value.get(field) if type(value) is dict else None  # type: ignore[union-attr]
    return value if type(value) is bytes else None  # type: ignore[return-value]


def _sort_generic(s: Session, argv: list[bytes], readonly: bool) -> object:
    """sortCommandGeneric, step by step, so LIMIT and tie orders come out as in Redis."""
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
            limit_start = parse_ll(argv[j + 1])
            limit_count = parse_ll(argv[j + 2])
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
    value = db.lookup(argv[1])
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
    if stored:
        db.set(storekey, deque(stored))
        s.engine.dirty += len(stored)
    elif db.delete(storekey):
        s.engine.dirty += 1
    return len(stored)


@command("sort")
def sort(s: Session, argv: list[bytes]) -> object:
    """SORT key [BY pattern] [LIMIT offset count] [GET pattern ...] [ASC|DESC] [ALPHA]
    [STORE destination]"""
    return _sort_generic(s, argv, readonly=False)


@command("sort_ro")
def sort_ro(s: Session, argv: list[bytes]) -> object:
    """SORT_RO: SORT without STORE."""
    return _sort_generic(s, argv, readonly=True)

