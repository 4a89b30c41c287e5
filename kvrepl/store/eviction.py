"""Which key to evict: Redis 7.0's ``evict.c`` candidate selection, sans-IO.

For the LRU, LFU and TTL policies, ``maxmemory-samples`` keys are sampled from every
database (all keys, or those with a TTL for the ``volatile-*`` policies) into a pool of
:data:`EVPOOL_SIZE` candidates kept in ascending order of a score (idle seconds, 255 less
the decayed LFU counter, or the nearness of the expiry); the best is the last of the pool
that still exists. The random policies draw a key from the databases in turn.

Drawing a random key needs random access, which a ``dict`` lacks, and listing the keys for
each draw costs O(n). So each sampled dict is listed once into a tuple, and keys are drawn
from the tuple; a drawn key that has gone since is skipped. The list is made again when
most draws miss (evictions and deletes emptied it) or the dict grew to twice its length.
Keys added since the list was made are not candidates until then: for LRU and LFU they are
the recently written ones, which the policies would keep anyway.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from kvrepl import gc_policy
from kvrepl.store.database import LFU_INIT_VAL, lfu_decayed

if TYPE_CHECKING:
    from kvrepl.store.database import Database, Keyspace

EVPOOL_SIZE = 16

POLICIES = ("volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl",
            "allkeys-lru", "allkeys-lfu", "allkeys-random", "noeviction")


class KeySampler:
    """Random keys of one dict (a database's ``data`` or ``expires``), see module doc."""

    __slots__ = ("_source", "_keys", "_draws", "_misses")

    def __init__(self) -> None:
        self._source: dict | None = None
        self._keys: tuple[bytes, ...] = ()
        self._draws = self._misses = 0

    def sample(self, source: dict, count: int) -> list[bytes]:
        """Up to ``count`` live keys of ``source`` (fewer when it is small)."""
        if self._source is not source or len(source) > 2 * len(self._keys) \
                or (self._draws >= 64 and self._misses * 2 > self._draws):
            # Listing is O(n); it happens once the list is half stale, so after O(n)
            # draws: O(1) per draw amortized.
            self._source = source
            self._keys = tuple(source)
            self._draws = self._misses = 0
            gc_policy.big_container_created(len(self._keys))
        keys = self._keys
        if len(keys) <= count:
            return [key for key in keys if key in source]
        # Like dictGetSomeKeys, not guaranteed distinct: cheaper than random.sample.
        size = len(keys)
        draw = random.random
        drawn = [key for key in [keys[int(draw() * size)] for _ in range(count)]
                 if key in source]
        self._draws += count
        self._misses += count - len(drawn)
        if not drawn:  # all stale this time: list again (rare, cheap against a miss streak)
            self._draws = 64
            self._misses = 64
            return self.sample(source, count)
        return drawn


class EvictionPool:
    """The candidates of ``evictionPoolPopulate``: ``[score, db index, key]`` ascending."""

    def __init__(self) -> None:
        self.entries: list[tuple[int, int, bytes]] = []
        self._samplers: dict[tuple[int, bool], KeySampler] = {}
        self._next_db = 0

    def sampler(self, db: Database, allkeys: bool) -> KeySampler:
        sampler = self._samplers.get((db.id, allkeys))
        if sampler is None:
            sampler = self._samplers[(db.id, allkeys)] = KeySampler()
        return sampler

    def select(self, keyspace: Keyspace, policy: str, samples: int) -> tuple[Database, bytes] | None:
        """The key ``policy`` evicts next, or None when there is none to evict."""
        allkeys = policy.startswith("allkeys")
        if policy.endswith("-random"):
            return self._random(keyspace, allkeys)
        while True:
            total = 0
            for db in keyspace.dbs:
                source = db.data if allkeys else db.expires
                if source:
                    self._populate(db, policy, source, samples)
                    total += len(source)
            if not total:
                return None
            entries = self.entries
            while entries:  # best first: the end of the pool
                _, index, key = entries.pop()
                db = keyspace.dbs[index]
                if key in (db.data if allkeys else db.expires):
                    return db, key
                # a ghost: deleted since it was sampled; try the next best

    def _populate(self, db: Database, policy: str, source: dict, samples: int) -> None:
        keyspace = db.keyspace
        entries = self.entries
        db.settle()  # the direct reads' pending access times
        access = db.access
        expires = db.expires
        lfu = policy.endswith("-lfu")
        ttl = policy == "volatile-ttl"
        clock = keyspace.lru_clock
        for key in self.sampler(db, source is db.data).sample(source, samples):
            if ttl:
                score = -expires[key]  # the sooner it expires, the better a candidate
            elif lfu:
                packed = access.get(key)
                score = 255 - (LFU_INIT_VAL if packed is None else lfu_decayed(packed, keyspace))
            else:
                score = max(0, clock - access.get(key, clock))
            # The first entry whose score is not below ours (Redis's insertion point).
            k = 0
            while k < len(entries) and entries[k][0] < score:
                k += 1
            if len(entries) < EVPOOL_SIZE:
                entries.insert(k, (score, db.id, key))
            elif k:
                # Full: drop the worst (the first) and insert just before position k.
                del entries[0]
                entries.insert(k - 1, (score, db.id, key))

    def _random(self, keyspace: Keyspace, allkeys: bool) -> tuple[Database, bytes] | None:
        """allkeys-random / volatile-random: a random key, visiting the databases in turn."""
        dbs = keyspace.dbs
        for _ in range(len(dbs)):
            self._next_db = (self._next_db + 1) % len(dbs)
            db = dbs[self._next_db]
            source = db.data if allkeys else db.expires
            if source:
                drawn = self.sampler(db, allkeys).sample(source, 1)
                if drawn:
                    return db, drawn[0]
        return None
