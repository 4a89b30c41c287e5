"""Follow a whole Redis Cluster: one ordinary replica link per primary, one local keyspace.

:class:`ClusterFollower` discovers the primaries and their slots (``CLUSTER SHARDS``, or
``CLUSTER SLOTS`` from a node that lacks it) and keeps one :class:`ShardLink` per primary:
the replica link of :mod:`kvrepl.replication.replica` (same handshake, PSYNC, reconnects),
loading into its shard's part of the keyspace instead of the whole of it.

Who owns a key. Redis keeps a key in one shard at a time, except while ``MIGRATE`` moves it:
the target gets ``RESTORE-ASKING`` (in its stream) before the source deletes it (a ``DEL``
in the source's stream), and nothing orders the two streams here, nor either of them with
the moment this follower reads the new layout. So each local key has a *holder*, the shard
whose copy it is: the owner of its slot in the last layout seen, unless :class:`Ownership`
recorded another (a key the importing side took; a key whose copy was the former owner's
when the slot changed hands). A shard's write to a key is applied when that shard holds
it, when the key is not here, when it is a ``RESTORE`` (the copy that arrives by migration
is the newer one), or when the writer is further along the slot's move than the holder
(importer over owner over former owner: keys move only that way). Otherwise it is
*superseded*: the shard is writing a copy it has since given away (its writes before the
``MIGRATE``, the ``DEL`` of the ``MIGRATE`` itself); it is counted (``superseded`` in
``INFO shards``) instead of clobbering the newer copy. tests/test_cluster_ownership.py
plays every order of the two streams and the layout read. A shard's full sync, or a
``FLUSHALL`` in its stream, replaces or drops the keys that shard holds and no other.

Within one shard the stream is applied in order; across shards Redis orders nothing either.
"""

from __future__ import annotations

from binascii import crc_hqx
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

import hiredis
import trio

from kvrepl.commands.core import Engine
from kvrepl.commands.info import add_section
from kvrepl.commands.spec import has_keys, keys_of, modifies_only_first_argument
from kvrepl.errors import ReplicaPanic, ReplyError
from kvrepl.log import logger
from kvrepl.rdb import LoadResult, StagedLoad
from kvrepl.replication.handshake import StreamBatch
from kvrepl.replication.master import NO_REPLID, new_replid
from kvrepl.replication.replica import CONNECTING, ReplicaOf, UnableToConnect
from kvrepl.replication.stream import encode_command
from kvrepl.replication.topology import (
    BRACE,
    SLOTS,
    Shard,
    key_slot,
    keys_in_slots,
    parse_shards,
    parse_slots,
    slot_table,
)
from kvrepl.scripting.functions import parse_metadata
from kvrepl.scripting.persist import load_functions
from kvrepl.store.database import Database

OpenStream = Callable[[str, int], Awaitable[trio.abc.Stream]]

QUERY_TIMEOUT = 5.0  # seconds a discovery query to one node may take
ROLE_TIMEOUT = 5.0  # seconds a link's ROLE probe of the node it is about to follow may take
DELETE_CHUNK = 1000  # keys per DEL when a shard's FLUSHALL drops its keys


@dataclass
class Cluster:
    """What ``Replica(follow=Cluster(...))`` follows: a Redis Cluster reached from any of
    ``seeds`` (``(host, port)`` pairs, or ``"host:port"``); ``username``/``password`` are
    the cluster's (``masteruser``/``masterauth``). The layout is read again every
    ``refresh_interval`` seconds, when a link is lost, and when a shard writes a key of a
    slot it was not known to serve."""

    seeds: list[tuple[str, int]]
    username: str | None = None
    password: str | None = None
    refresh_interval: float = 5.0

    def __post_init__(self) -> None:
        seeds = []
        for seed in self.seeds:
            if isinstance(seed, str):
                host, colon, port = seed.rpartition(":")
                if not colon or not port.isdigit():
                    raise ValueError(f"cluster seed {seed!r}: expected 'host:port'")
                seeds.append((host.strip("[]"), int(port)))
            else:
                host, port = seed
                seeds.append((str(host), int(port)))
        if not seeds:
            raise ValueError("Cluster() needs at least one seed node")
        if self.refresh_interval <= 0:
            raise ValueError("refresh_interval must be positive")
        self.seeds = seeds


class TopologyError(Exception):
    """No node of the cluster told us its layout."""


class ShardHistory:
    """The replication history of one shard's link (its primary's replid and offset), what
    a node's :class:`~kvrepl.replication.master.MasterReplication` is to a whole replica.
    A cluster follower has no sub-replicas, so it keeps no backlog."""

    propagating = False

    def __init__(self) -> None:
        self.replid = new_replid()
        self.replid2 = NO_REPLID
        self.second_replid_offset = -1
        self.backlog = None
        self._offset = 0

    @property
    def master_repl_offset(self) -> int:
        return self._offset

    def create_backlog_keeping_id(self) -> None:
        """No sub-replicas: nothing to keep."""

    def disconnect_replicas(self) -> None:
        """No sub-replicas: nobody to disconnect."""

    def feed_raw(self, data: bytes) -> None:
        """No sub-replicas: the stream goes nowhere further."""


# -- who holds which key ---------------------------------------------------------------------

class Ownership:
    """The holder of every key of db 0 (see the module's docstring): the owner of its slot
    in the last layout seen, unless recorded otherwise (both records are empty unless
    slots are moving):

    - ``taken``: keys a shard took while another owned their slot (a ``RESTORE`` of a
      migration, a key created on the importing side).
    - ``left``: keys whose copy was the former owner's when their slot changed hands; that
      shard's stream may still hold its last writes to them (a DEL, the DEL of a MIGRATE).

    A write to a key another shard holds applies when the writer is further along the
    slot's move than the holder (the importing side over the owner, the owner over the
    former owner): keys only move that way, so that copy is the newer one.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self.owner: list[object | None] = [None] * SLOTS
        self.previous: list[object | None] = [None] * SLOTS  # each slot's former owner
        self.taken: dict[bytes, object] = {}
        self.left: dict[bytes, object] = {}
        # Per link, its slots as a slot_table (for lane_run_of), and the owner list it
        # was made from: a new layout makes a new list, and so a new table.
        self._tables: dict[int, tuple[list[object | None], bytes]] = {}
        # Bumped when keys may have come to sit in slots whose owner did not put them there
        # (a slot changed hands, a link went away leaving its keys).
        self.epoch = 0
        # See settle(): db 0's state after a full sync, and the links that loaded its keys.
        self._settled: tuple[tuple, frozenset[int]] | None = None

    def table_of(self, link: object) -> bytes:
        """The slots ``link`` owns in the last layout seen, as a :func:`slot_table`."""
        cached = self._tables.get(id(link))
        if cached is not None and cached[0] is self.owner:
            return cached[1]
        table = slot_table([o is link for o in self.owner])
        self._tables[id(link)] = (self.owner, table)
        return table

    @property
    def moving(self) -> bool:
        return bool(self.taken or self.left)

    def holder(self, key: bytes, slot: int) -> object | None:
        holder = self.taken.get(key) if self.taken else None
        if holder is None and self.left:
            holder = self.left.get(key)
        return self.owner[slot] if holder is None else holder

    def _rank(self, link: object, slot: int) -> int:
        """How far along the slot's move a writer is: former owner, owner, importer."""
        if self.owner[slot] is link:
            return 1
        return 0 if self.previous[slot] is link else 2

    def may_write(self, link: object, key: bytes, slot: int) -> bool:
        """Whether ``link``'s write to ``key`` applies (without recording anything). The
        holder's place in the move is what its record says (a key taken on the importing
        side, a key left by the former owner), whatever else it was to the slot before (a
        slot can move back to where it came from)."""
        holder = self.taken.get(key) if self.taken else None
        rank = 2
        if holder is None:
            holder = self.left.get(key) if self.left else None
            rank = 0
            if holder is None:
                holder, rank = self.owner[slot], 1
        if holder is link or key not in self.db.data:
            return True
        return self._rank(link, slot) > rank

    def take(self, link: object, key: bytes, slot: int) -> None:
        """``link``'s copy of ``key`` is the local one from now on."""
        left = self.left
        if left and left.get(key) is link:
            return  # the former owner writes its own copy
        if left:
            left.pop(key, None)
        if self.owner[slot] is link:
            if self.taken:
                self.taken.pop(key, None)
        else:
            self.taken[key] = link

    def set_owners(self, links: list[ShardLink]) -> None:
        """A new layout: each slot's owner. The keys of a slot that changed hands stay the
        former owner's until its stream or the new owner's says otherwise; records the
        layout now says, or of keys no longer here, are dropped."""
        old = self.owner
        owner: list[object | None] = [None] * SLOTS
        for link in links:
            for start, end in link.shard.slots:
                owner[start:end + 1] = [link] * (end - start + 1)
        self.owner = owner
        changed = [slot for slot, (a, b) in enumerate(zip(old, owner, strict=True))
                   if a is not None and a is not b]
        for slot in changed:
            self.previous[slot] = old[slot]
        if changed:
            self.epoch += 1
        data = self.db.data
        if data and changed:
            taken, left = self.taken, self.left
            moved = [False] * SLOTS
            for slot in changed:
                moved[slot] = True
            for key in keys_in_slots(data, slot_table(moved)):
                if key not in taken and key not in left:
                    left[key] = old[key_slot(key)]
        for records in (self.taken, self.left):
            for key, holder in list(records.items()):
                if holder is owner[key_slot(key)] or key not in data:
                    del records[key]

    def keys_of(self, link: object) -> list[bytes]:
        """The keys ``link`` holds (a walk over the whole db: full syncs and flushes only)."""
        if not self.moving:
            return keys_in_slots(self.db.data, self.table_of(link))
        return [key for key in self.db.data if self.holder(key, key_slot(key)) is link]

    def release(self, link: object) -> None:
        """``link`` is gone: the keys it held here become their slots' owners' (whose next
        full sync, or first, replaces them)."""
        self.epoch += 1
        self.forget(link)

    def _mark(self, engine: Engine) -> tuple:
        """What changes when anything writes db 0 or moves its keys between slot owners:
        each write counts in ``dirty`` (a load replacing the dict, which does not, replaces
        its first key; keys made without a count, DEBUG POPULATE's, change its size),
        deletions without a count are evictions and expirations."""
        data = self.db.data
        stats = engine.stats
        return (self.epoch, len(data), next(iter(data), None), engine.dirty,
                stats.evicted_keys, stats.expired_keys)

    def settle(self, engine: Engine, loaders: frozenset[int] | None) -> None:
        """After a full sync: ``loaders`` (ids of links; None when not known) are the links
        whose full syncs put every key of db 0 there, each in its own slots."""
        self._settled = None if loaders is None or self.moving else (
            self._mark(engine), loaders)

    def settled(self, engine: Engine) -> frozenset[int] | None:
        """The links that put every key of db 0 there (see :meth:`settle`) when nothing has
        changed db 0 since (no write, no slot changing hands, no link gone): then no other
        link holds a key here, known without a walk over the keys. None when not known."""
        settled = self._settled
        if settled is None or self.moving:
            return None
        mark, loaders = settled
        now = self._mark(engine)
        if now[2] is not mark[2] or now != mark:  # the first key: the same object
            return None
        return loaders

    def forget(self, link: object) -> None:
        """Drop ``link``'s records (its keys are gone, or go to their slots' owners)."""
        self._tables.pop(id(link), None)
        for records in (self.taken, self.left):
            for key in [k for k, h in records.items() if h is link]:
                del records[key]


# Command kinds for ShardLink._admit, by name as the master spells it.
_NO_KEYS, _FIRST_KEY, _KEYS, _DELETE, _RESTORE, _FLUSH = range(6)


class ShardLink(ReplicaOf):
    """The replica link to one shard's primary, applying what that shard holds."""

    # The shards' payloads arrive at once, a piece of each in turn (~64 KiB): parsed piece by
    # piece, the parsers took turns ~450 times over 1M keys, and each turn found the cache
    # holding another parser's dict (~17% more CPU than parsing 1 MiB of one at a time,
    # measured on the three payloads of a 1M-key cluster). A step parses ~35k keys then.
    payload_hold = 1 << 20

    def __init__(self, follower: ClusterFollower, shard: Shard) -> None:
        self.follower = follower
        self.shard = shard
        super().__init__(follower.engine, ShardHistory(), self._connect,  # type: ignore[arg-type]
                         (shard.host, shard.port), listening_port=follower.listening_port)
        self.admit = self._admit
        self.lane_run = self.lane_run_of
        self.superseded = 0  # writes not applied: the key was another shard's by then
        self.full_syncs = 0
        self.partial_syncs = 0
        self.loaded_once = False
        self.retiring = False  # no longer a primary: runs until its node closes the link
        self.scope = trio.CancelScope()
        self._attempt: trio.CancelScope | None = None  # the attempt in progress (retarget)
        self._kinds: dict[bytes, int] = {}

    async def _connect(self) -> trio.abc.Stream:
        return await self.follower.open_stream(self.host, self.port)

    async def _follow_once(self) -> None:
        """One attempt on the node this link follows (ROLE probe, connect, handshake,
        payload, stream). A :meth:`retarget` cancels it wherever it is, and the next
        starts at once on the new node, as Redis's replicationSetMaster cancels the
        handshake in progress and connects to the new master."""
        while True:
            host, port, primary = self.host, self.port, self.shard.primary
            attempt = self._attempt = trio.CancelScope()
            try:
                with attempt:
                    await self._attempt_on(host, port)
            finally:
                self._attempt = None
            if not attempt.cancelled_caught:
                return
            logger.info("Shard %s: the attempt on %s:%d is cancelled; following %s:%d",
                        primary, host, port, self.host, self.port)
            # What the cancelled attempt started ends here (a payload half loaded is
            # dropped); our history stays, for the new primary's +CONTINUE.
            self._link_lost()

    async def _attempt_on(self, host: str, port: int) -> None:
        # A node that stopped being a primary (it lost its last slot and became a replica
        # of the node that took it) would give us another shard's data: ask first. ROLE
        # and INFO say "connecting" meanwhile: the link is on its way to that node.
        self.state = CONNECTING
        role = await self.follower.role_of(host, port)
        if role is not None and role != b"master":
            self.follower.suspect()
            raise UnableToConnect(f"{host}:{port} is no longer a primary ({role!r})")
        await super()._follow_once()

    def retarget(self, shard: Shard) -> None:
        """Follow this shard on another node (its replica was promoted): the attempt in
        progress on the old node, wherever it is, is cancelled (or the pause before the
        next attempt ended) and the link reconnects to the new one now, asking to continue our history (the new primary's replid2
        allows it)."""
        logger.info("Shard %s: following its new primary %s at %s:%d", self.shard.primary,
                    shard.primary, shard.host, shard.port)
        self.shard = shard
        self.host, self.port = shard.host, shard.port
        if self._attempt is not None:
            self._attempt.cancel()
        self.retry_now()

    # -- what a shard's write may touch ------------------------------------------------------
    def _kind(self, spelled: bytes) -> int:
        kind = self._kinds.get(spelled)
        if kind is None:
            name = spelled.lower()
            cmd = self.engine.table.get(name)
            if name in (b"del", b"unlink"):
                kind = _DELETE
            elif name in (b"restore", b"restore-asking"):
                kind = _RESTORE
            elif name in (b"flushall", b"flushdb"):
                kind = _FLUSH
            elif cmd is not None and cmd.subcommands:
                kind = _KEYS  # XGROUP CREATE...: the subcommand says
            elif cmd is None or not has_keys(cmd.spec):
                kind = _NO_KEYS
            elif _first_key_only(cmd):
                kind = _FIRST_KEY
            else:
                kind = _KEYS
            self._kinds[spelled] = kind
        return kind

    def _admit(self, argv: list[bytes]) -> list[bytes] | None:
        """The command to apply for ``argv`` (itself, or a DEL of fewer keys), or None when
        nothing of it is ours to apply."""
        kind = self._kinds.get(argv[0])
        if kind is None:
            kind = self._kind(argv[0])
        follower = self.follower
        follower.lane_link = None  # this command's origin is set below
        if kind == _FLUSH:
            follower.flush(self, everything=argv[0].lower() == b"flushall")
            return None
        if kind == _NO_KEYS or len(argv) < 2:
            return argv
        if kind == _KEYS and len(argv) >= 3 and argv[0].lower() == b"function" and \
                argv[1].lower() == b"load":
            return self._function_load(argv)
        ownership = follower.ownership
        if kind == _FIRST_KEY:
            key = argv[1]
            slot = key_slot(key)
            follower.origin = (self.shard.primary, slot)
            if ownership.owner[slot] is self and not ownership.moving:
                return argv  # the usual case: our slot, nothing moving
            if ownership.may_write(self, key, slot):
                self._took(key, slot)
                return argv
            return self._superseded(argv)
        if kind == _DELETE:
            kept = [argv[0]]
            for key in argv[1:]:
                slot = key_slot(key)
                follower.origin = (self.shard.primary, slot)
                if ownership.may_write(self, key, slot):
                    self._took(key, slot)
                    kept.append(key)
                else:
                    self._superseded([argv[0], key])
            return kept if len(kept) > 1 else None
        keys = self._keys(argv)
        slots = [key_slot(key) for key in keys]
        if slots:
            follower.origin = (self.shard.primary, slots[0])
        if kind == _RESTORE:
            # A key that arrives by MIGRATE is the newest copy: it replaces the source's
            # copy if the source's DEL has not come yet (the target had no such key).
            key, slot = keys[0], slots[0]
            if ownership.holder(key, slot) is not self and key in ownership.db.data and \
                    not any(arg.lower() == b"replace" for arg in argv[4:]):
                argv = [*argv, b"REPLACE"]
            self._took(key, slot)
            return argv
        if all(ownership.may_write(self, k, s) for k, s in zip(keys, slots, strict=True)):
            for key, slot in zip(keys, slots, strict=True):
                self._took(key, slot)
            return argv
        return self._superseded(argv)

    def _function_load(self, argv: list[bytes]) -> list[bytes] | None:
        """Every primary of a cluster holds its own copy of the libraries, usually the same:
        a FUNCTION LOAD of a library we already hold with the same code is already applied;
        one with other code replaces ours (shards have no order between them, the last
        loaded wins) and says so, instead of failing as a skipped write."""
        code = argv[-1]
        try:
            name, _ = parse_metadata(code)
        except ReplyError:
            return argv  # applying it gives the error, counted as any refused write
        scripting = self.engine.scripting
        if scripting is None or not scripting.has_functions:  # type: ignore[attr-defined]
            return argv
        held = scripting.functions.libraries.get(name)  # type: ignore[attr-defined]
        if held is None:
            return argv
        if held.code == code:
            return None
        if any(arg.lower() == b"replace" for arg in argv[2:-1]):
            return argv
        logger.warning("Shard %s: library '%s' differs from another shard's copy; the "
                       "last loaded replaces it", self.shard.primary,
                       name.decode("utf-8", "replace"))
        return [argv[0], argv[1], b"REPLACE", code]

    def _keys(self, argv: list[bytes]) -> list[bytes]:
        cmd = self.engine.table.get(argv[0].lower())
        if cmd is None:
            return []
        if cmd.subcommands and len(argv) >= 2:
            cmd = cmd.subcommands.get(argv[1].lower())
            if cmd is None:
                return []
        return keys_of(cmd.spec, argv)

    def _took(self, key: bytes, slot: int) -> None:
        ownership = self.follower.ownership
        if ownership.owner[slot] is not self:
            self.follower.suspect()  # a write to a slot not known to be ours: layout moved
        ownership.take(self, key, slot)

    def _superseded(self, argv: list[bytes]) -> None:
        self.superseded += 1
        logger.debug("Shard %s: %s not applied: another shard holds the key now",
                     self.shard.primary, argv[:2])
        self.follower.suspect()
        return None

    # -- loading into our shard's keys -------------------------------------------------------
    def _open_dump(self) -> None:
        return None  # one shard's payload is not a dump of this node's data

    def _load_target(self, staged: StagedLoad, result: LoadResult) -> None:
        """Replace the keys this shard holds with its snapshot's; other shards' keys stay."""
        engine = self.engine
        follower = self.follower
        ownership = follower.ownership
        db = engine.keyspace.dbs[0]
        for extra, (data, _) in enumerate(staged.fresh[1:], start=1):
            if data:  # a cluster has db 0 only; say so instead of dropping them unseen
                logger.warning("Shard %s: its snapshot has %d keys in db %d, which a "
                               "cluster does not have; not loaded", self.shard.primary,
                               len(data), extra)
                engine.stats.unexpected_error_replies += 1
        fresh, fresh_expires = staged.fresh[0]
        logger.info("MASTER <-> REPLICA sync: Replacing the keys of shard %s (slots %s)",
                    self.shard.primary, self.shard.describe_slots())
        engine.watches.touch_all_in_db(db, None)
        engine.tracking.flushed()
        # Everything this shard holds goes, its first sync too, as Redis's full sync
        # replaces a replica's whole dataset: before it, the keys of our slots may be a
        # writable follower's own, or a retired shard's left to their slots' owners. One
        # step with the swap below (readers never see the shard half replaced), so in
        # C-level passes: ~10x faster than a delete() per key. Not even a walk when the
        # keys here are all other shards' from their full syncs and nothing changed since
        # (a first sync while the others' streams are quiet: ~80 ms of 1M keys).
        loaders = ownership.settled(engine) if db.data else frozenset()
        if loaders is not None and id(self) not in loaders:
            replaced = []
        else:
            replaced = ownership.keys_of(self)
        db.delete_keys(replaced)
        ownership.forget(self)
        stray = self._not_ours(fresh)
        for key in stray:  # the snapshot says these are this shard's now
            ownership.take(self, key, key_slot(key))
        # Another shard's copy of a key: ours replaces it. There is none when every key is
        # of our slots and nothing moves (we hold nothing here now): then merging skips the
        # search (~45 ms a shard of 333k keys).
        disjoint = not stray and not ownership.moving
        db.merge_loaded(fresh, fresh_expires, disjoint=disjoint,
                        strings_size=staged.strings_size(0))
        # Redis's full sync forgets every key its clients gave a TTL (emptyData(-1)): a
        # key of that name from the master is the master's to expire. A shard's replaces
        # the keys it held and those of its snapshot, so it forgets those and no other
        # shard's (left remembered, a key the shard's stream writes again with a TTL
        # would be expired here, where only its DEL may delete it).
        keyspace = engine.keyspace
        keyspace.forget_replica_expires_of(0, fresh)
        keyspace.forget_replica_expires_of(0, replaced)
        # Every primary holds its own copy of the libraries (usually the same): add and
        # replace, never drop what another shard brought (a new, empty primary would).
        load_functions(engine, result.functions, replace_all=False)
        self.loaded_once = True
        self.full_syncs += 1
        # Every key is its loader's, in its slots, if it was so before (or there was none)
        # and ours are (none stray: a stray one is recorded, and then something moves).
        ownership.settle(engine, None if loaders is None else loaders | {id(self)})

    def _not_ours(self, fresh: dict[bytes, object]) -> list[bytes]:
        """The keys of ``fresh`` whose slot this shard does not own (all of them while
        slots move: each gets a record). Usually none."""
        ownership = self.follower.ownership
        if ownership.moving:
            return list(fresh)
        return keys_in_slots(fresh, slot_table([link is not self for link in ownership.owner]))

    def lane_run_of(self, argvs: list[list[bytes]], start: int) -> int:
        """The end of the run from ``start`` the plain lane may apply without ``_admit``
        (``ReplicaOf.lane_run``): three-word commands whose key's slot is this shard's
        while no slot is moving, which ``_admit`` would return unchanged without recording
        anything. A ``changes()`` stream gets each change's shard and slot from
        :meth:`ClusterFollower.origin_of` (this link, the key's slot) during the run."""
        follower = self.follower
        ownership = follower.ownership
        if ownership.moving:
            return start
        owner = ownership.owner
        table = ownership.table_of(self)  # indexed by a key's CRC16: no call per key
        end = start
        for argv in argvs[start:] if start else argvs:
            if len(argv) != 3:
                break
            key = argv[1]
            if BRACE in key:  # a hash tag may decide the slot
                if owner[key_slot(key)] is not self:
                    break
            elif not table[crc_hqx(key, 0)]:
                break
            end += 1
        if end > start:
            follower.lane_link = self  # its changes come from our shard (origin_of)
        return end

    def _apply_batch(self, batch: StreamBatch) -> list[int]:
        try:
            return super()._apply_batch(batch)
        finally:
            self.follower.lane_link = None

    def _continue(self, event: object) -> None:
        super()._continue(event)  # type: ignore[arg-type]
        self.partial_syncs += 1

    def _link_up(self) -> None:
        super()._link_up()
        self.follower.links_changed()

    def _link_lost(self) -> None:
        was_up = self.link_up
        super()._link_lost()
        if self.retiring:
            self.follower.drop(self)
            return
        if was_up:
            self.follower.suspect()  # a failover, a removed primary? read the layout again
        self.follower.links_changed()


def _first_key_only(cmd: object) -> bool:
    spec = cmd.spec  # type: ignore[attr-defined]
    return modifies_only_first_argument(spec) and not any(
        "RO" in ref[0] for ref in spec._compiled)


# -- the follower ---------------------------------------------------------------------------

@dataclass
class ClusterFollower:
    """Keeps ``engine`` a read-only copy of a whole cluster until cancelled."""

    engine: Engine
    cluster: Cluster
    open_stream: OpenStream
    listening_port: int = 0
    links: list[ShardLink] = field(default_factory=list)
    refreshes: int = 0
    last_error: str = ""
    origin: tuple[str, int] | None = None  # the shard and slot of the write being applied
    lane_link: ShardLink | None = None  # the link whose plain-lane run is being applied

    def __post_init__(self) -> None:
        self.ownership = Ownership(self.engine.keyspace.dbs[0])
        self.discovered = trio.Event()
        self.layout_changed = trio.Event()  # set (and replaced) when links come or go
        self.retiring: list[ShardLink] = []
        self._kick = trio.Event()
        self._nursery: trio.Nursery | None = None
        self.failure: ReplicaPanic | None = None

    async def run(self) -> None:
        engine = self.engine
        engine.read_only = engine.config.replica_read_only
        engine.keyspace.expire_keys = False
        engine.masterdown = True
        replication = getattr(engine, "replication", None)
        if replication is not None:
            replication.propagating = False  # no stream of its own: sub-replicas are refused
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            while True:
                try:
                    self.apply(await self.discover())
                    self.last_error = ""
                except TopologyError as err:
                    self.last_error = str(err)
                    logger.warning("Cluster layout: %s", err)
                with trio.move_on_after(self.cluster.refresh_interval):
                    await self._kick.wait()
                self._kick = trio.Event()
                await trio.sleep(0.1)  # several events in a row: one discovery

    def origin_of(self, argv: list[bytes]) -> tuple[str, int]:
        """The shard (its primary's node id) and slot the write ``argv`` being applied came
        from, for ``changes()``: set per command by ``ShardLink._admit``, or, in a run of
        the plain lane, the running link's and the key's slot."""
        link = self.lane_link
        if link is not None:
            return link.shard.primary, key_slot(argv[1])
        return self.origin or ("", -1)

    def suspect(self) -> None:
        """Something suggests the layout changed: read it again soon."""
        self._kick.set()

    def links_changed(self) -> None:
        self.engine.masterdown = not self.links or not all(
            link.link_up for link in self.links)

    # -- discovery --------------------------------------------------------------------------
    def _candidates(self) -> list[tuple[str, int]]:
        seen: dict[tuple[str, int], None] = {}
        for link in self.links:
            seen[(link.host, link.port)] = None
            for address in link.shard.addresses:
                seen[address] = None
        for seed in self.cluster.seeds:
            seen[seed] = None
        return list(seen)

    async def discover(self) -> list[Shard]:
        """The layout, as the first node that answers tells it."""
        errors = []
        for host, port in self._candidates():
            try:
                reply = await self.query(host, port, [b"CLUSTER", b"SHARDS"])
                if isinstance(reply, hiredis.ReplyError):  # before 7.0
                    reply = await self.query(host, port, [b"CLUSTER", b"SLOTS"])
                    if isinstance(reply, hiredis.ReplyError):
                        raise TopologyError(str(reply))
                    shards = parse_slots(reply)
                else:
                    shards = parse_shards(reply, tls=self.engine.config.tls_replication)
            except (OSError, trio.BrokenResourceError, trio.TooSlowError, TopologyError,
                    hiredis.ProtocolError) as err:
                errors.append(f"{host}:{port}: {err or type(err).__name__}")
                continue
            if shards:
                self.refreshes += 1
                return shards
            errors.append(f"{host}:{port}: no primary serves a slot")
        raise TopologyError("no node of the cluster told its layout (" + "; ".join(errors)
                            + ")")

    async def query(self, host: str, port: int, argv: list[bytes],
                    timeout: float | None = None) -> object:
        """One command's reply from the node at ``host:port`` (authenticated as the links
        are) within ``timeout`` seconds (``QUERY_TIMEOUT``); an error reply is returned,
        not raised."""
        config = self.engine.config
        with trio.fail_after(QUERY_TIMEOUT if timeout is None else timeout):
            stream = await self.open_stream(host, port)
            async with stream:
                request = b""
                replies = 1
                if config.masterauth:
                    auth = [b"AUTH", config.masterauth.encode()]
                    if config.masteruser:
                        auth.insert(1, config.masteruser.encode())
                    request += encode_command(auth)
                    replies += 1
                await stream.send_all(request + encode_command(argv))
                reader = hiredis.Reader()
                got: list[object] = []
                while len(got) < replies:
                    data = await stream.receive_some(65536)
                    if not data:
                        raise trio.BrokenResourceError("connection closed")
                    reader.feed(data)
                    while (reply := reader.gets()) is not False:
                        got.append(reply)
                if replies == 2 and isinstance(got[0], hiredis.ReplyError):
                    raise TopologyError(f"AUTH: {got[0]}")
                return got[-1]

    async def role_of(self, host: str, port: int) -> bytes | None:
        """ROLE's first word for the node at ``host:port``; None when it does not answer."""
        try:
            reply = await self.query(host, port, [b"ROLE"], ROLE_TIMEOUT)
        except (OSError, trio.BrokenResourceError, trio.TooSlowError, TopologyError,
                hiredis.ProtocolError):
            return None
        return reply[0] if isinstance(reply, list) and reply else None

    def apply(self, shards: list[Shard]) -> None:
        """Follow ``shards``: new primaries get a link, a promoted replica takes over its
        shard's link, primaries gone lose theirs (and the keys they still held here)."""
        kept: list[ShardLink] = []
        free = list(self.links)
        demoted = set()  # former primaries of shards whose replica took over
        serving = {shard.primary for shard in shards if shard.slots}
        # Nodes we know as the replica of a shard we follow.
        replicas = {member: link for link in self.links for member in link.shard.members
                    if member != link.shard.primary}
        promoting: dict[ShardLink, set[str]] = defaultdict(set)
        for shard in sorted(shards, key=lambda x: not x.slots):  # shards with slots first
            if not shard.slots and shard.primary in demoted:
                continue  # a primary that failed over, not yet shown as the replica it is
            if not shard.slots and shard.primary in replicas \
                    and replicas[shard.primary].shard.primary in serving:
                # One node's view in the middle of a failover: the replica shown a primary
                # before its claim to the slots is. Its shard's link takes it over once a
                # layout shows it serving them (a link of its own would sync in full, and
                # then keep the slots, our history retired with the old link); it stays
                # among that link's members while the view lasts.
                promoting[replicas[shard.primary]].add(shard.primary)
                continue
            # The same primary; or the shard's replica promoted (it was among the members);
            # or its slots, once its old primary serves none (a failover seen only after
            # the old primary was forgotten, or by a node whose view of the shard's
            # replicas was behind when we last read it).
            link = next((x for x in free if x.shard.primary == shard.primary), None)
            if link is not None and not link.shard.slots and shard.slots:
                # A primary followed while it served nothing, now serving slots: if they
                # were another link's, that link (and its history) follows it instead.
                link = next((x for x in free if x is not link and x.shard.slots
                             and (x.shard.failed or x.shard.primary not in serving)
                             and _overlap(x.shard, shard)), link)
            if link is None and not shard.failed:
                link = next((x for x in free if shard.primary in x.shard.members
                             or x.shard.primary in shard.members), None) or next(
                    (x for x in free if (x.shard.failed or x.shard.primary not in serving)
                     and _overlap(x.shard, shard)), None)
            if link is None:
                link = ShardLink(self, shard)
                logger.info("Cluster: following primary %s at %s:%d (slots %s)",
                            shard.primary, shard.host, shard.port, shard.describe_slots())
                self._start(link)
            else:
                free.remove(link)
                if link.shard.primary != shard.primary:
                    demoted.add(link.shard.primary)
                if (link.host, link.port) != (shard.host, shard.port):
                    link.retarget(shard)
                else:
                    link.shard = shard
            kept.append(link)
        # A layout in which no primary serves some of a link's slots is one node's view in
        # the middle of a failover (the failed primary's slots dropped, its successor's
        # claim not seen yet): that shard's link goes on, its history with it, until a
        # layout says who serves them (retired, its next link would sync in full).
        served = bytearray(SLOTS)
        for shard in shards:
            for start, end in shard.slots:
                served[start:end + 1] = b"\x01" * (end - start + 1)
        for link in list(free):
            if any(0 in served[start:end + 1] for start, end in link.shard.slots):
                logger.info("Cluster: no primary serves some of the slots of %s:%d (%s) in "
                            "this layout; still following it", link.host, link.port,
                            link.shard.primary)
                free.remove(link)
                kept.append(link)
        for link, nodes in promoting.items():
            if link in kept:
                link.shard = replace(link.shard, members=link.shard.members | nodes)
        self.links = kept
        self.ownership.set_owners(kept)
        for link in free:
            self._retire(link)
        if free or len(kept) != len(self.links):
            self.layout_changed.set()
            self.layout_changed = trio.Event()
        self.links_changed()
        self.discovered.set()

    def _retire(self, link: ShardLink) -> None:
        """``link``'s node is no longer a primary (its slots went elsewhere and it became a
        replica, or it left the cluster). What it already sent still applies: its link
        runs until its node closes it (a new master's full sync does), then it is dropped.
        It never reconnects."""
        logger.info("Cluster: %s:%d (%s) is no longer a primary of the cluster", link.host,
                    link.port, link.shard.primary)
        link.retiring = True
        self.retiring.append(link)
        if not link.link_up:
            self.drop(link)
        else:
            async def deadline() -> None:
                await trio.sleep(max(10.0, 3 * self.cluster.refresh_interval))
                self.drop(link)

            assert self._nursery is not None
            self._nursery.start_soon(deadline)

    def drop(self, link: ShardLink) -> None:
        if link not in self.retiring:
            return
        self.retiring.remove(link)
        link.scope.cancel()
        # Keys it still held become their slot owner's: deleting them could lose keys that
        # moved with their slot; the owner's stream (or its next full sync) is the truth.
        self.ownership.release(link)
        logger.info("Cluster: stopped following %s:%d", link.host, link.port)

    def _start(self, link: ShardLink) -> None:
        assert self._nursery is not None

        async def follow() -> None:
            with link.scope:
                await link.run()

        self._nursery.start_soon(follow)

    # -- a shard's FLUSHALL ------------------------------------------------------------------
    def flush(self, link: ShardLink, everything: bool) -> None:
        """FLUSHALL (``everything``) or FLUSHDB in ``link``'s stream: drop the keys it holds,
        as DELs (what ``changes()`` shows), no other shard's. A FLUSHALL also forgets the
        TTLs our clients gave those keys, as Redis's emptyData(-1) forgets them all; its
        FLUSHDB (emptyData of one db) forgets none."""
        engine = self.engine
        keys = list(self.ownership.keys_of(link))
        for start in range(0, len(keys), DELETE_CHUNK):
            engine.execute(link.session, [b"DEL", *keys[start:start + DELETE_CHUNK]])
        self.ownership.forget(link)
        if everything:
            engine.keyspace.forget_replica_expires_of(0, keys)

    # -- waiting and telling -------------------------------------------------------------------
    async def wait_synced(self) -> None:
        """Until every shard's link is up and has applied what its primary had written when
        this was called (asked to each primary: INFO replication's master_repl_offset).
        Links that come or go meanwhile start the round again."""
        await self.discovered.wait()
        while True:
            links = list(self.links)
            if await self._unless_layout_changes(self._wait_links, links) and \
                    links == self.links and all(link.link_up for link in links):
                return

    async def _wait_links(self, links: list[ShardLink]) -> None:
        # Each shard's primary is asked as soon as its own link is up, all at once: asked
        # one after another, the last shard's question waited for the others' answers.
        async with trio.open_nursery() as nursery:
            for link in links:
                nursery.start_soon(self._wait_link, link)

    async def _wait_link(self, link: ShardLink) -> None:
        await link.synced.wait()
        try:
            info = await self.query(link.host, link.port, [b"INFO", b"replication"])
        except (OSError, trio.BrokenResourceError, trio.TooSlowError):
            await self.layout_changed.wait()  # gone: its successor is waited for
            return
        offset = _info_field(info, b"master_repl_offset")
        if offset is not None and link.replication.replid == _info_text(info, b"master_replid"):
            await link.wait_offset(offset)

    async def _unless_layout_changes(self, wait: Callable[..., Awaitable[None]],
                                     *args: object) -> bool:
        """Run ``wait(*args)``; False if links came or went first."""
        changed = self.layout_changed
        finished = False
        async with trio.open_nursery() as nursery:
            async def run() -> None:
                nonlocal finished
                await wait(*args)
                finished = True
                nursery.cancel_scope.cancel()

            async def watch() -> None:
                await changed.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(run)
            nursery.start_soon(watch)
        return finished

    def as_one_link(self) -> FollowerLink:
        """The follower as INFO replication and ROLE show it: see :class:`FollowerLink`."""
        return FollowerLink(self)

    def info_lines(self) -> list[str]:
        lines = [f"cluster_follow_shards:{len(self.links)}",
                 f"cluster_follow_links_up:{sum(link.link_up for link in self.links)}",
                 f"cluster_follow_layout_reads:{self.refreshes}",
                 f"cluster_follow_keys_taken:{len(self.ownership.taken)}",
                 f"cluster_follow_keys_left:{len(self.ownership.left)}",
                 f"cluster_follow_retiring:{len(self.retiring)}"]
        if self.last_error:
            lines.append(f"cluster_follow_last_error:{self.last_error}")
        for index, link in enumerate(self.links):
            lines.append(
                f"shard{index}:primary={link.shard.primary},ip={link.host},port={link.port},"
                f"slots={link.shard.describe_slots() or '-'},state={link.state},"
                f"link={'up' if link.link_up else 'down'},offset={link.reploff},"
                f"replid={link.replication.replid},full_syncs={link.full_syncs},"
                f"partial_syncs={link.partial_syncs},superseded={link.superseded}")
        return lines


class FollowerLink:
    """A cluster follower seen as one replica link, for what INFO replication and ROLE
    read of a node's link to its master: a follower is a replica (``role:slave``), as
    redis-py and redis-cli users expect of a read-only copy. The fields that name one
    master (``master_host``, ``master_port``, the offsets) are the first shard's
    (``shard0`` of INFO shards, which lists every shard); ``master_link_status`` is up
    only while every shard's link is, ``master_sync_in_progress`` is 1 while any shard
    syncs (its byte counts add those shards'), and the last I/O is the stalest link's."""

    def __init__(self, follower: ClusterFollower) -> None:
        links = follower.links
        first = links[0] if links else None
        down = [link for link in links if not link.link_up]
        syncing = [link for link in links if link.sync_in_progress]
        self.host, self.port = (first.host, first.port) if first else follower.cluster.seeds[0]
        self.link_up = bool(links) and not down
        self.state = "connected" if self.link_up else down[0].state if down else "connect"
        self.last_io = min((link.last_io for link in links), default=0.0)
        self.ever_connected = bool(down) and down[0].ever_connected
        self.link_down_since = down[0].link_down_since if down else 0.0
        self.sync_in_progress = bool(syncing)
        sizes = [link.transfer_size for link in syncing]
        self.transfer_size = -1 if not sizes or min(sizes) < 0 else sum(sizes)
        self.transfer_read = sum(link.transfer_read for link in syncing)
        self.knows_offset = first is not None and first.knows_offset
        self.reploff = first.reploff if first else 0
        self.read_reploff = first.read_reploff if first else 0


def _overlap(a: Shard, b: Shard) -> bool:
    return any(x <= y2 and x2 >= y for x, x2 in a.slots for y, y2 in b.slots)


def _info_text(info: object, name: bytes) -> str | None:
    if isinstance(info, bytes):
        for line in info.splitlines():
            if line.startswith(name + b":"):
                return line.split(b":", 1)[1].decode()
    return None


def _info_field(info: object, name: bytes) -> int | None:
    text = _info_text(info, name)
    return None if text is None else int(text)


def _shards_section(engine: Engine) -> list[str]:
    follower = getattr(engine.node, "cluster_follower", None) if engine.node else None
    return follower.info_lines() if follower is not None else []


add_section("shards", "Shards", _shards_section)
