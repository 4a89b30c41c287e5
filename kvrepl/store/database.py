"""Databases and the keyspace: keys, values and expiry, with the hooks replication needs."""

from __future__ import annotations

import random
import time
import weakref
from collections import deque
from collections.abc import Callable, Collection, Iterator
from itertools import cycle, repeat
from time import perf_counter

from kvrepl import gc_policy
from kvrepl.store.gates import Gates
from kvrepl.store.memory import (
    EXPIRE_ENTRY,
    STRING_ENTRY,
    key_memory_usage,
    string_entry_size,
)
from kvrepl.store.values import Stream, ZSet

# Types whose creation can wake a client blocked in BLPOP/BZPOPMIN/XREAD and friends.
_BLOCKABLE_TYPES = (deque, ZSet, Stream)

BeforeWriteHook = Callable[["Database", bytes], None]

# The direct GET's hits (kvrepl.direct_reads) wait in Database.reads for at most SAMPLE
# calls; the SAMPLE-th is timed for all of them (kvrepl.commands.tally). A power of two.
SAMPLE = 64


class Database:
    """One numbered database: ``data`` maps key to value, ``expires`` key to unix ms.

    Reads go through :meth:`lookup`, which applies lazy expiry. Every change to a key goes
    through :meth:`before_write` first (the dispatcher calls it for each key of a write
    command, the store for its own deletions), so a running snapshot can keep the old value
    and WATCH can see the change.
    """

    __slots__ = ("id", "data", "expires", "access", "reads", "record", "touched", "keyspace",
                 "_expire_scan", "_expire_pos", "expire_sampled", "sizes", "used", "stale")

    def __init__(self, index: int, keyspace: Keyspace) -> None:
        self.id = index
        self.keyspace = keyspace
        # Active expiry's walk over the keys with a TTL (Redis's expires_cursor): the keys
        # of one pass, fixed when it starts, and how far the walk has got.
        self._expire_scan: tuple[bytes, ...] = ()
        self._expire_pos = 0
        self.expire_sampled = 0  # keys the last active_expire_cycle checked (expired_stale_perc)
        self.data: dict[bytes, object] = {}
        self.expires: dict[bytes, int] = {}
        # Redis's per-object ``lru`` field: the LRU clock at the last access, or under an
        # LFU maxmemory-policy the minutes clock and the log counter (OBJECT IDLETIME/FREQ).
        self.access: dict[bytes, int] = {}
        # The access times of the direct GET's hits (kvrepl.direct_reads), kept apart from
        # ``access`` until something could tell: the LRU clock has a resolution of one
        # second (Redis's LRU_CLOCK_RESOLUTION), so every read of a second records the same
        # time. A hit appends its key to ``reads`` (which also counts it: see
        # Keyspace.direct_hits); every SAMPLE hits :meth:`drain` moves them into
        # ``touched``, the set of keys read at the current clock: a C-level pass whose set
        # probes overlap and dirty nothing for a key read again in the same second, where a
        # store into ``access`` per read costs two probes and a dirtied entry.
        # :meth:`settle` moves both into ``access``: the keyspace does before its LRU
        # clock moves (Keyspace.set_lru_clock), and so does whatever reads or writes an
        # access time other than the current one (OBJECT, DEBUG OBJECT, eviction,
        # RESTORE's IDLETIME, a switch to an LFU policy, a copy); a deleted key leaves
        # them. Writing the current time into ``access`` meanwhile (GET the general way, a
        # new key) agrees with them, so those need not settle.
        self.reads: list[bytes] = []  # (never replaced: ``record`` appends to it)
        self.touched: set[bytes] = set()
        # How a direct hit is recorded: ``next(db.record)(key)``, which is ``reads.append``
        # SAMPLE times, then :meth:`_sampled`; it answers None, or True when the call is to
        # be timed. Two C calls and no stored count on the hot path, where an append and a
        # shared tick took two C calls and more bytecodes (each about 25 instructions).
        self.record: Iterator[Callable[[bytes], bool | None]] = cycle(
            (self.reads.append,) * SAMPLE + (self._sampled,))
        # The memory estimate (kvrepl.store.memory): ``used`` is the sum over the keys;
        # ``sizes`` holds the estimate of each key that is not a string (a string's is
        # computed from its length, so it needs no entry).
        self.sizes: dict[bytes, int] = {}
        self.used = 0
        # Containers changed in place whose estimate is not measured again yet: measuring
        # waits until someone reads ``used`` through Keyspace.used_memory() (INFO, eviction
        # before each command while maxmemory is set), so a write without maxmemory pays
        # one set insertion instead of a measurement.
        self.stale: set[bytes] = set()

    def __len__(self) -> int:
        return len(self.data)

    # -- reading ---------------------------------------------------------------------------
    def lookup(self, key: bytes) -> object | None:
        """The live value of ``key``, or None when missing or logically expired; an access
        (OBJECT IDLETIME starts again)."""
        keyspace = self.keyspace
        if self.expires and key in self.expires and self._expire_if_needed(key):
            if keyspace.counting_reads:
                self._missed(key)
            return None
        value = self.data.get(key)
        if value is not None:
            if keyspace.lfu:
                self.access[key] = lfu_touch(self.access.get(key), keyspace)
            else:
                self.access[key] = keyspace.lru_clock
            if keyspace.counting_reads:
                keyspace.hits += 1
        elif keyspace.counting_reads:
            keyspace.misses += 1  # _missed, inlined: GET's misses are a hot path
            if keyspace.on_keymiss is not None:
                keyspace.on_keymiss(self, key)
        return value

    def _missed(self, key: bytes, notify: bool = True) -> None:
        """A read found no ``key``: keyspace_misses, and the ``keymiss`` event when asked
        (Redis fires it where it counts the miss, except for LOOKUP_NONOTIFY)."""
        keyspace = self.keyspace
        keyspace.misses += 1
        if notify and keyspace.on_keymiss is not None:
            keyspace.on_keymiss(self, key)

    def peek(self, key: bytes, notify: bool = True) -> object | None:
        """Like :meth:`lookup` but no access (Redis's LOOKUP_NOTOUCH: TYPE, TTL, OBJECT);
        ``notify=False`` is LOOKUP_NONOTIFY too (OBJECT: no ``keymiss`` event)."""
        value = self.find(key)
        keyspace = self.keyspace
        if keyspace.counting_reads:
            if value is None:
                self._missed(key, notify)
            else:
                keyspace.hits += 1
        return value

    def lookup_read(self, key: bytes) -> object | None:
        """:meth:`lookup`, counted in keyspace_hits/misses even inside a write command
        (where Redis calls lookupKeyRead: GETDEL, GETEX, GETSET, SET ... GET)."""
        keyspace = self.keyspace
        if keyspace.counting_reads:
            return self.lookup(key)
        keyspace.counting_reads = True
        try:
            return self.lookup(key)
        finally:
            keyspace.counting_reads = False

    def find(self, key: bytes) -> object | None:
        """The live value of ``key`` (an expired one is deleted), with no access and no
        statistics: SCAN and RANDOMKEY's check (Redis's expireIfNeeded and dictFind)."""
        if self.expires and key in self.expires and self._expire_if_needed(key):
            return None
        return self.data.get(key)

    def drain(self) -> None:
        """Move the direct GET's recent hits into ``touched`` (one C-level pass) and count
        them in Keyspace.direct_hits."""
        reads = self.reads
        if reads:
            self.touched.update(reads)
            self.keyspace.direct_hits += len(reads)
            reads.clear()

    def _sampled(self, key: bytes) -> bool:
        """The SAMPLE-th step of ``record``: the hits so far drained (bounded memory),
        and True: the caller times its call, running it again (whose hit the next step,
        an append, records), so ``key`` is not recorded here."""
        self.drain()
        return True

    def settle(self) -> None:
        """Record the access time of the keys read directly at this LRU clock (``reads``
        and ``touched``): C-level passes, one dict store per distinct key."""
        if self.reads:
            self.drain()
        touched = self.touched
        if touched:
            self.touched = set()
            self.access.update(dict.fromkeys(touched, self.keyspace.lru_clock))

    def access_of(self, key: bytes) -> int | None:
        """``key``'s access data (the object's ``lru`` field: LRU clock or LFU counter)."""
        self.settle()
        return self.access.get(key)

    def idle_seconds(self, key: bytes) -> int:
        """OBJECT IDLETIME: seconds since the last access (LRU clock resolution: 1 s)."""
        self.settle()
        last = self.access.get(key)
        return 0 if last is None else max(0, self.keyspace.lru_clock - last)

    def set_access(self, key: bytes, *, idle_seconds: int | None = None,
                   frequency: int | None = None) -> None:
        """RESTORE ... IDLETIME / FREQ (objectSetLRUOrLFU): set what the key reports; each
        applies only under its kind of maxmemory-policy, as in Redis."""
        self.settle()  # a time other than the current one: after the pending ones
        keyspace = self.keyspace
        if keyspace.lfu and frequency is not None:
            self.access[key] = (_minutes(keyspace) << 8) | frequency
        elif not keyspace.lfu and idle_seconds is not None:
            self.access[key] = keyspace.lru_clock - idle_seconds

    def frequency(self, key: bytes) -> int:
        """OBJECT FREQ: the decayed LFU counter (new keys start at 5, as in Redis)."""
        self.settle()
        packed = self.access.get(key)
        if packed is None:
            return LFU_INIT_VAL
        return lfu_decayed(packed, self.keyspace)

    def exists(self, key: bytes) -> bool:
        return self.lookup(key) is not None

    def is_expired(self, key: bytes) -> bool:
        when = self.expires.get(key)
        return when is not None and when <= self.keyspace.now_ms()

    def _expire_if_needed(self, key: bytes) -> bool:
        """True when ``key`` is logically expired; a master also deletes it then, and so
        does a writable replica for a write command's lookup (Redis 7.0's
        EXPIRE_FORCE_DELETE_EXPIRED: else the write would land under the old TTL)."""
        when = self.expires[key]
        keyspace = self.keyspace
        if when > keyspace.now_ms() or keyspace.applying_master:
            # Commands from our master still see keys it has not deleted yet.
            return False
        if (keyspace.expire_keys or (keyspace.writable_replica and keyspace.frozen
                                     and not keyspace.counting_reads)) \
                and not keyspace.expiry_paused():
            self.delete_expired(key)
        return True

    def get_expire(self, key: bytes) -> int | None:
        """Absolute expiry in unix ms, or None when the key has none."""
        return self.expires.get(key)

    def keys(self) -> Iterator[bytes]:
        """Every live key (logically expired ones are skipped)."""
        if not self.expires:
            return iter(list(self.data))
        now = self.keyspace.now_ms()
        expires = self.expires
        return iter([k for k in self.data if not (k in expires and expires[k] <= now)])

    def random_key(self) -> bytes | None:
        """A random live key, or None; tries like Redis does before giving up on expired ones."""
        if not self.data:
            return None
        keys = list(self.data)
        for _ in range(100):
            key = random.choice(keys)
            if self.find(key) is not None:
                return key
            if not self.data:
                return None
            keys = list(self.data)
        return key

    # -- writing ---------------------------------------------------------------------------
    def before_write(self, key: bytes) -> None:
        for hook in self.keyspace.before_write_hooks:
            hook(self, key)

    def add(self, key: bytes, value: object, access: int | None = None) -> None:
        """Store a new key (which must not exist) and wake clients blocked on it.
        ``access``: the access data the value had under another name (see
        :meth:`access_of`), when Redis moves the object itself (RENAME, MOVE)."""
        self.data[key] = value
        self._count(key, value)
        keyspace = self.keyspace
        if access is None:
            access = lfu_new(keyspace) if keyspace.lfu else keyspace.lru_clock
        self.access[key] = access
        if type(value) in _BLOCKABLE_TYPES and self.keyspace.blocked_keys:
            self.keyspace.signal_ready(self.id, key)
        if keyspace.on_new_key is not None:
            keyspace.on_new_key(self, key)

    def set(self, key: bytes, value: object, keep_ttl: bool = False) -> None:
        """Store ``value`` under ``key``, replacing any value; drops the TTL unless asked."""
        data = self.data
        old = data.get(key)
        if old is not None:
            if type(old) is Stream and self.keyspace.blocked_keys:
                self.keyspace.signal_ready(self.id, key)  # XREADGROUP waiters: -UNBLOCKED
            data[key] = value
            if type(old) is bytes and type(value) is bytes:
                self.used += len(value) - len(old)
            else:
                self.used -= self._forget_size(key, old)
                self._count(key, value)
            if not keep_ttl and self.expires and self.expires.pop(key, None) is not None:
                self.used -= EXPIRE_ENTRY
        else:
            self.add(key, value)

    def _count(self, key: bytes, value: object) -> None:
        """Add the estimate of ``key`` holding ``value`` to ``used``."""
        if type(value) is bytes:
            self.used += string_entry_size(key, value)
        else:
            self.sizes[key] = size = key_memory_usage(key, value)
            self.used += size

    def _forget_size(self, key: bytes, value: object) -> int:
        """The estimate counted for ``key`` holding ``value`` (forgotten when kept apart)."""
        if type(value) is bytes:
            return string_entry_size(key, value)
        return self.sizes.pop(key, 0)

    def changed_in_place(self, key: bytes) -> None:
        """``key``'s value may have changed in place (a container's push, add or remove):
        the dispatcher calls it for the keys a write command modified; measured again
        before ``used`` is next read (see ``stale``)."""
        stale = self.stale
        stale.add(key)
        if len(stale) > 4096:  # bounded: the set never grows with the keyspace
            self.measure_stale()

    def measure_stale(self) -> None:
        """Measure again every key changed in place since the last time."""
        stale = self.stale
        self.stale = set()
        for key in stale:
            self.remeasure(key)

    def remeasure(self, key: bytes) -> None:
        """Measure ``key`` again now, after its value changed in place."""
        value = self.data.get(key)
        if value is None or type(value) is bytes:
            return
        size = key_memory_usage(key, value)
        self.used += size - self.sizes.get(key, 0)
        self.sizes[key] = size

    def recount(self, strings_size: int | None = None) -> None:
        """Measure every key again (after a load replaced ``data`` and ``expires``);
        ``strings_size``: see :meth:`_count_all`."""
        self.sizes = {}
        self.stale = set()
        self.used = len(self.expires) * EXPIRE_ENTRY
        self._count_all(self.data, strings_size)

    def _count_all(self, data: dict[bytes, object], strings_size: int | None = None) -> None:
        """Add every key of ``data`` to ``used``: all strings (a load's usual content) are
        summed without a Python call per key, or with no pass over them at all when the
        loader knows that every value is a string and gives the bytes of the keys and
        values as ``strings_size`` (three passes over a million keys cost ~70 ms)."""
        if strings_size is not None:
            self.used += STRING_ENTRY * len(data) + strings_size
            return
        if set(map(type, data.values())) <= {bytes}:
            self.used += STRING_ENTRY * len(data) + sum(map(len, data)) + sum(
                map(len, data.values()))  # type: ignore[arg-type]
            return
        for key, value in data.items():
            self._count(key, value)

    def merge_loaded(self, data: dict[bytes, object], expires: dict[bytes, int], *,
                     disjoint: bool = False, strings_size: int | None = None) -> None:
        """Add a load's keys and TTLs to this db, replacing the copies held here, measuring
        only them (a cluster shard's full sync beside the other shards' keys).
        ``disjoint``: the caller knows that no key of ``data`` is here (no search);
        ``strings_size``: see :meth:`_count_all`."""
        if not self.data:
            self.data, self.expires = data, expires
            self.keyspace.read_state_changed()
            self.recount(strings_size)
            return
        if not disjoint:
            for key in self.data.keys() & data.keys():
                self.delete(key)
        self.data.update(data)
        first = not self.expires
        self.expires.update(expires)
        if first and expires:  # the first TTLs: see set_expire
            self.keyspace.read_state_changed()
        self.used += len(expires) * EXPIRE_ENTRY
        self._count_all(data, strings_size)

    def delete_keys(self, keys: list[bytes]) -> int:
        """:meth:`delete` of each of ``keys`` (a shard's keys before its full sync replaces
        them): the same effects, with the dict operations done by C-level passes and a
        Python step only per key that is missing or not a string. Returns how many
        existed."""
        data = self.data
        values = list(map(data.pop, keys, repeat(None)))
        if None in values:  # some were not here: keep the pairs of those that were
            pairs = [(k, v) for k, v in zip(keys, values, strict=True) if v is not None]
            keys, values = [k for k, _ in pairs], [v for _, v in pairs]
        if set(map(type, values)) <= {bytes}:
            self.used -= STRING_ENTRY * len(keys) + sum(map(len, keys)) + sum(
                map(len, values))  # type: ignore[arg-type]
        else:
            blocked = self.keyspace.blocked_keys
            for key, value in zip(keys, values, strict=True):
                if type(value) is Stream and blocked:
                    self.keyspace.signal_ready(self.id, key)
                self.used -= self._forget_size(key, value)
        deque(map(self.access.pop, keys, repeat(None)), maxlen=0)
        if self.reads:
            self.drain()
        if self.touched:
            self.touched.difference_update(keys)
        expires = self.expires
        if expires:
            held = len(expires)
            deque(map(expires.pop, keys, repeat(None)), maxlen=0)
            self.used -= (held - len(expires)) * EXPIRE_ENTRY
        return len(keys)

    def delete(self, key: bytes) -> bool:
        """Remove ``key``; True when it existed (expired or not)."""
        value = self.data.pop(key, None)
        if value is None:
            return False
        if type(value) is Stream and self.keyspace.blocked_keys:
            self.keyspace.signal_ready(self.id, key)  # XREADGROUP waiters: -UNBLOCKED
        self.used -= self._forget_size(key, value)
        self.access.pop(key, None)
        if self.reads:
            self.drain()
        if self.touched:
            self.touched.discard(key)
        if self.expires and self.expires.pop(key, None) is not None:
            self.used -= EXPIRE_ENTRY
        return True

    def delete_expired(self, key: bytes) -> None:
        """Delete a key whose time has passed, and tell the listeners (replication sends DEL)."""
        self.before_write(key)
        self.delete(key)
        for listener in self.keyspace.expired_listeners:
            listener(self, key)

    def set_expire(self, key: bytes, when_ms: int) -> None:
        """Give ``key`` (which must exist) a TTL: unix ms. On a writable replica a TTL its
        own clients set is remembered, since no DEL will come for it (Redis's setExpire)."""
        first = not self.expires
        if key not in self.expires:
            self.used += EXPIRE_ENTRY
        self.expires[key] = when_ms
        keyspace = self.keyspace
        if first:  # the first TTL: the direct GETs look at TTLs from now on (direct_reads)
            keyspace.read_state_changed()
        if keyspace.writable_replica and not keyspace.applying_master:
            keyspace.remember_replica_expire(self.id, key)

    def persist(self, key: bytes) -> bool:
        if self.expires.pop(key, None) is None:
            return False
        self.used -= EXPIRE_ENTRY
        return True

    def clear(self) -> None:
        """Drop every key. Values are not changed in place, so no per-key signal is due:
        a snapshot keeps its own references, and WATCH is told by the flush command. Only
        the clients blocked in XREADGROUP on a stream hear of it (scanDatabaseForDeletedStreams)."""
        keyspace = self.keyspace
        if keyspace.blocked_keys:
            for db, key in list(keyspace.blocked_keys):
                if db == self.id and type(self.data.get(key)) is Stream:
                    keyspace.signal_ready(db, key)
        self.data = {}
        self.expires = {}
        self.keyspace.read_state_changed()
        self.access = {}
        self.drain()  # (counted)
        self.touched = set()
        self.sizes = {}
        self.used = 0
        self.stale = set()

    def active_expire_cycle(self, samples: int = 20, deadline: float | None = None,
                            acceptable_stale: int = 10) -> int:
        """Check keys with a TTL and delete the expired ones, as Redis's active expiry does.

        The keys are walked in passes, ``samples`` at a time from where the last call
        stopped, rather than drawn at random: drawing needs the whole key set listed, a
        copy per draw that costs milliseconds per million keys. A pass lists them once.
        Repeats while more than ``acceptable_stale`` percent of a batch was expired (or a
        batch found no key left to check), until ``deadline`` (a ``time.perf_counter()``
        value), as Redis 7.0's activeExpireCycle loop does. Returns the keys deleted;
        ``expire_sampled`` says how many it checked, the keyspace's ``expire_timed_out``
        whether the deadline cut it short.
        """
        deleted = sampled = 0
        self.expire_sampled = 0
        self.keyspace.expire_timed_out = False
        if not self.keyspace.expire_keys or self.keyspace.expiry_paused():
            return 0
        expires = self.expires
        while expires:
            scan, position = self._expire_scan, self._expire_pos
            if position >= len(scan):
                scan = self._expire_scan = tuple(expires)
                position = 0
                gc_policy.big_container_created(len(scan))
            batch = scan[position:position + samples]
            self._expire_pos = position + len(batch)
            now = self.keyspace.now_ms()
            checked = expired = 0
            for key in batch:
                when = expires.get(key)
                if when is None:  # deleted or persisted since the pass began
                    continue
                checked += 1
                if when <= now:
                    self.delete_expired(key)
                    expired += 1
            deleted += expired
            sampled += checked
            # Redis looks at the clock once in 16 batches (ustime() against a batch of C);
            # perf_counter() is cheap next to a batch of Python, so at each one.
            if deadline is not None and perf_counter() > deadline:
                self.keyspace.expire_timed_out = True
                break
            if checked and expired * 100 // checked <= acceptable_stale:
                break
        if not expires:
            self._expire_scan, self._expire_pos = (), 0
        self.expire_sampled = sampled
        return deleted


LFU_INIT_VAL = 5


def _minutes(keyspace: Keyspace) -> int:
    return (keyspace.lru_clock // 60) & 0xFFFF


def lfu_new(keyspace: Keyspace) -> int:
    return (_minutes(keyspace) << 8) | LFU_INIT_VAL


def lfu_decayed(packed: int, keyspace: Keyspace) -> int:
    """LFUDecrAndReturn: the counter less one per ``lfu-decay-time`` minutes idle."""
    counter = packed & 0xFF
    if keyspace.lfu_decay_time:
        elapsed = (_minutes(keyspace) - (packed >> 8)) & 0xFFFF
        periods = elapsed // keyspace.lfu_decay_time
        counter = 0 if periods > counter else counter - periods
    return counter


def lfu_touch(packed: int | None, keyspace: Keyspace) -> int:
    """updateLFU: decay, then LFULogIncr (a logarithmic, probabilistic increment)."""
    counter = LFU_INIT_VAL if packed is None else lfu_decayed(packed, keyspace)
    if counter < 255:
        base = max(counter - LFU_INIT_VAL, 0)
        if random.random() < 1.0 / (base * keyspace.lfu_log_factor + 1):
            counter += 1
    return (_minutes(keyspace) << 8) | counter


class Keyspace:
    """The 16 (``databases``) databases of one node, its clock and its change hooks."""

    def __init__(self, databases: int = 16, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.dbs = [Database(i, self) for i in range(databases)]
        # A replica hides logically expired keys but waits for the master's DEL.
        self.expire_keys = True
        # While CLIENT PAUSE lasts (unix ms, 0 = no pause) expired keys are hidden, not
        # deleted: the dataset stays as it is (Redis's checkClientPauseTimeoutAndReturnIfPaused).
        self.expiry_paused_until = 0
        # activeExpireCycle's state between cycles: the next database to look at, and
        # whether the last cycle (or database) ran out of time (then the next looks at all),
        # when (perf_counter) the last fast cycle began, and whether the next event loop
        # wait may run one (kvrepl.server.cron: set at the end of each cycle).
        self.expire_next_db = 0
        self.expire_timed_out = False
        self.last_fast_expire = 0.0
        self.fast_expire_due = False
        self.applying_master = False  # a replica running its master's stream
        # A replica that accepts its clients' writes (replica-read-only no): the keys they
        # give a TTL are remembered in ``replica_expires`` (key -> bitmap of db numbers),
        # INFO's slave_expires_tracked_keys, so that expire_replica_keys deletes them.
        self.writable_replica = False
        self.replica_expires: dict[bytes, int] = {}
        # Redis's LRU clock (seconds), refreshed by the node's cron; moved only by
        # set_lru_clock (the direct reads' pending access times are of the clock in force).
        # And whether the maxmemory-policy is an LFU one (then accesses count instead of
        # being timed; set it by set_lfu).
        self.lru_clock = int(clock())
        self.lfu = False
        self.lfu_log_factor = 10
        self.lfu_decay_time = 1
        # What the fast lanes must not skip closes one of these (see kvrepl.store.gates).
        self.gates = Gates()
        # The direct GETs' bindings of a database's dicts (kvrepl.direct_reads), found
        # again by read_state_changed; each lives as long as its session.
        self.read_binds: weakref.WeakSet[Callable[[], None]] = weakref.WeakSet()
        self.gates.on_read_open = self.read_state_changed
        # Read-only outside: add and remove hooks with the methods (they close the gates).
        self.before_write_hooks: list[BeforeWriteHook] = []
        # Set while keyspace notifications want them (the ``new`` and ``keymiss`` events):
        # a key was added (Redis's dbAdd), a read found no key.
        self.on_new_key: Callable[[Database, bytes], None] | None = None
        self.on_keymiss: Callable[[Database, bytes], None] | None = None
        self.expired_listeners: list[Callable[[Database, bytes], None]] = []
        # (db, key) pairs some client is blocked on; filled by the server's blocking manager.
        self.blocked_keys: set[tuple[int, bytes]] = set()
        self.ready_keys: list[tuple[int, bytes]] = []
        # While a command runs the dispatcher sets ``frozen``: the first now_ms() reads the
        # clock, later calls in the same command see the same instant (Redis's mstime cache).
        self.frozen = False
        self.frozen_ms: int | None = None
        # INFO's keyspace_hits / keyspace_misses: lookups made by read-only commands
        # (Redis counts lookupKeyRead, not the lookups of writes); the dispatcher sets
        # ``counting_reads`` while such a command runs.
        self.counting_reads = False
        self.hits = 0
        self.misses = 0
        # The direct GET's hits (kvrepl.direct_reads) drained from the databases' ``reads``
        # and not yet added to ``hits`` and INFO's other counters (the engine's
        # DirectTally takes them).
        self.direct_hits = 0

    def read_state_changed(self) -> None:
        """A database's ``data`` or ``expires`` was replaced, or the read gates opened or
        closed: the direct GETs bind what they read again (kvrepl.direct_reads)."""
        for bind in self.read_binds:
            bind()

    def set_lru_clock(self, seconds: int) -> None:
        """Move the LRU clock, first recording the access time of the keys read directly
        at the old one (Database.touched)."""
        if seconds != self.lru_clock:
            self.settle()
            self.lru_clock = seconds

    def set_lfu(self, lfu: bool) -> None:
        """Switch between an LRU and an LFU policy's access data (the pending LRU times
        recorded first: an LFU access reads the packed counter)."""
        if lfu != self.lfu:
            self.settle()
            self.lfu = lfu

    def settle(self) -> None:
        """Every database's :meth:`Database.settle`."""
        for db in self.dbs:
            if db.reads or db.touched:
                db.settle()

    def drain(self) -> None:
        """Every database's :meth:`Database.drain`: Keyspace.direct_hits is then the count
        of all the direct GET's hits not yet taken."""
        for db in self.dbs:
            if db.reads:
                db.drain()

    def add_before_write_hook(self, hook: BeforeWriteHook) -> None:
        """Call ``hook(db, key)`` before every write (WATCH, a snapshot's copy-on-write)."""
        self.before_write_hooks.append(hook)
        self.gates.set("before-write hooks", True, writes_only=True)

    def remove_before_write_hook(self, hook: BeforeWriteHook) -> None:
        self.before_write_hooks.remove(hook)
        self.gates.set("before-write hooks", bool(self.before_write_hooks),
                       writes_only=True)

    def block_key(self, db: int, key: bytes) -> None:
        """A client waits for ``key`` of ``db`` (BLPOP, XREAD BLOCK...)."""
        self.blocked_keys.add((db, key))
        self.gates.set("blocked clients", True, writes_only=True)

    def unblock_key(self, db: int, key: bytes) -> None:
        """No client waits for ``key`` of ``db`` any more."""
        self.blocked_keys.discard((db, key))
        self.gates.set("blocked clients", bool(self.blocked_keys), writes_only=True)

    def now_ms(self) -> int:
        """Unix time in ms; frozen for the length of one command, as Redis's ``mstime`` is."""
        if self.frozen_ms is not None:
            return self.frozen_ms
        now = int(self.clock() * 1000)
        if self.frozen:
            self.frozen_ms = now
        return now

    def expiry_paused(self) -> bool:
        """True while a client pause holds expiry back."""
        return bool(self.expiry_paused_until) and self.now_ms() <= self.expiry_paused_until

    def signal_ready(self, db: int, key: bytes) -> None:
        if (db, key) in self.blocked_keys:
            self.ready_keys.append((db, key))

    def flushall(self) -> None:
        """Empty every database (Redis's emptyData(-1), which also forgets the keys a
        writable replica's clients gave a TTL)."""
        for db in self.dbs:
            db.clear()
        self.forget_replica_expires()

    # -- a writable replica's own keys with a TTL (expire.c's slaveKeysWithExpire) -----------
    def remember_replica_expire(self, db: int, key: bytes) -> None:
        """A client of this writable replica gave ``key`` of ``db`` a TTL: its master will
        never send a DEL for it, so :meth:`expire_replica_keys` must (rememberSlaveKeyWithExpire:
        databases above 63 are not tracked, as in Redis)."""
        if db > 63:
            return
        tracked = self.replica_expires
        tracked[key] = tracked.get(key, 0) | (1 << db)

    def forget_replica_expires(self) -> None:
        """Forget every remembered key (flushSlaveKeysWithExpireList): the data they were
        in is gone, a key of the same name from the master must not be expired here."""
        self.replica_expires.clear()

    def forget_replica_expires_of(self, db: int, keys: Collection[bytes]) -> None:
        """Forget the remembered ``keys`` of ``db`` only: the part of the data a cluster
        shard's full sync or FLUSHALL replaced (flushSlaveKeysWithExpireList for that part;
        the other shards' keys stay remembered). ``keys`` may be large: with few keys
        remembered, those are looked up in it instead (a set or dict is then best)."""
        tracked = self.replica_expires
        if not tracked:
            return
        bit = 1 << db
        if len(keys) > len(tracked):
            members = keys if isinstance(keys, (set, frozenset, dict)) else set(keys)
            keys = [key for key in tracked if key in members]
        for key in keys:
            dbids = tracked.get(key, 0)
            if dbids & bit:
                if dbids == bit:
                    del tracked[key]
                else:
                    tracked[key] = dbids & ~bit

    def expire_replica_keys(self, budget: float = 0.001) -> int:
        """Delete the remembered keys whose time has passed (expireSlaveKeys); returns how
        many. Each entry is checked in every database its bitmap names; it is forgotten
        where the key is gone or has no TTL any more. Stops after finding more than three
        keys not yet expired, or past ``budget`` seconds (checked every 64 keys), as Redis
        does. Redis draws entries at random; here an entry still tracked goes to the back
        of the dict, so successive calls go round all of them."""
        tracked = self.replica_expires
        if not tracked:
            return 0
        started = perf_counter()
        now = self.now_ms()
        dbs = self.dbs
        deleted = cycles = not_expired = 0
        while tracked:
            key = next(iter(tracked))
            dbids = tracked.pop(key)
            kept = 0
            index = 0
            while dbids and index < len(dbs):
                if dbids & 1:
                    db = dbs[index]
                    when = db.expires.get(key)
                    if when is not None:
                        if when <= now:
                            db.delete_expired(key)
                            deleted += 1
                        else:
                            not_expired += 1
                            kept |= 1 << index
                index += 1
                dbids >>= 1
            if kept:
                tracked[key] = kept
            cycles += 1
            if not_expired > 3 or (cycles % 64 == 0 and perf_counter() - started > budget):
                break
        return deleted

    def swap(self, a: int, b: int) -> None:
        """SWAPDB: exchange the contents of two databases (objects keep their numbers)."""
        da, db_ = self.dbs[a], self.dbs[b]
        for blocked_db, key in list(self.blocked_keys):  # a stream replaced: -UNBLOCKED
            if blocked_db in (a, b):
                emptied, replaced_with = (da, db_) if blocked_db == a else (db_, da)
                if type(emptied.data.get(key)) is Stream and type(
                        replaced_with.data.get(key)) is not Stream:
                    self.signal_ready(blocked_db, key)
        da.drain()  # (each db's ``reads`` stays its own: its ``record`` appends to it)
        db_.drain()
        da.data, db_.data = db_.data, da.data
        da.expires, db_.expires = db_.expires, da.expires
        self.read_state_changed()
        da.access, db_.access = db_.access, da.access
        da.touched, db_.touched = db_.touched, da.touched
        da.sizes, db_.sizes = db_.sizes, da.sizes
        da.used, db_.used = db_.used, da.used
        da.stale, db_.stale = db_.stale, da.stale
        for dbi, database in ((a, da), (b, db_)):
            for blocked_db, key in list(self.blocked_keys):
                if blocked_db == dbi and key in database.data:
                    self.signal_ready(dbi, key)

    def dbsize(self) -> int:
        return sum(len(db) for db in self.dbs)

    def used_memory(self) -> int:
        """The dataset's estimated size in bytes (see :mod:`kvrepl.store.memory`)."""
        total = 0
        for db in self.dbs:
            if db.stale:
                db.measure_stale()
            total += db.used
        return total

    def recount(self) -> None:
        """Measure every database again (after a load replaced their contents)."""
        for db in self.dbs:
            db.recount()
