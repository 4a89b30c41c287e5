"""How a kvrepl *server process* keeps Python's cyclic garbage collector from stalling it.

Every value kvrepl stores is freed by reference counting; the cyclic collector only matters
for its pauses. A full (generation 2) collection walks every tracked container alive: in a
kvrepl server that is first the ~40-50k objects of the imported modules (functions, classes,
dicts: 20-45 ms per full collection on a busy 2-core machine, whatever the dataset), then
every list, hash, set or sorted set value of the dataset (strings are ``bytes``, which the
collector never tracks, and a dict holding only such values is untracked too). Full
collections come every few seconds under load, so they were the longest stalls of a master
serving a full sync (50-100 ms).

The remedy is :func:`gc.freeze`: it moves every object the collector tracks to a permanent
generation that collections skip, in O(1). Objects frozen are still freed by reference
counting as usual; only a *cycle* among frozen objects that becomes garbage later is not
collected (it stays until :func:`gc.unfreeze`), and neither is what such a cycle holds. That
is the price, so nothing that outlives a freeze may hold a dataset from a cycle (a finished
snapshot job drops its callbacks and its view the database dicts: before they did, a replica
that had served its own replica kept every dataset a full sync replaced), and a policy
freezes at a few chosen moments:

* at start-up, once the modules are imported (after one :func:`gc.collect`, so that no import
  garbage is frozen): :func:`install`;
* when a dataset was loaded (start-up load, DEBUG RELOAD, a replica's full sync): the loaded
  values are the long-lived objects par excellence (:func:`dataset_loaded`, and
  :func:`cron` notices a dataset that was replaced wholesale);
* when a snapshot had to copy the order of a million keys (the first write during a
  snapshot, see :mod:`kvrepl.store.snapshot`): the collector would walk that tuple once, in
  one 20-30 ms pause (:func:`big_container_created`);
* after a full collection that took longer than :attr:`GcPolicy.slow_full_collection`
  (e.g. a dataset of hashes grown by clients), at most once every
  :attr:`GcPolicy.min_freeze_interval` seconds (:func:`cron`).

A freeze is deferred (to the first :func:`cron` tick after) while something announced with
:func:`hold_until_collected` is alive: objects that will soon be garbage in cycles (a SCRIPT
DEBUG YES session's copy of the node, its Lua runtime) would otherwise stay frozen for good.

This changes the interpreter's global state, so kvrepl never does it on its own in an
application that embeds it: ``kvrepl-server`` (:mod:`kvrepl.cli`) installs the default policy,
and an application may opt in with ``kvrepl.gc_policy.install()`` (or
``install(GcPolicy(...))``); without that every function here does nothing. Thresholds
(``gc.set_threshold``) are left alone unless :attr:`GcPolicy.threshold` says otherwise:
measured on a master serving a 1M-key full sync, the defaults are not what stalls once the
long-lived objects are frozen.
"""

from __future__ import annotations

import gc
import itertools
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kvrepl.log import logger

__all__ = ["GcPolicy", "big_container_created", "cron", "dataset_loaded", "hold_until_collected",
           "install", "installed", "uninstall"]

# What hold_until_collected announced and is still alive (a set: its add and discard, from
# any thread, need no lock), and the keys it hands out.
_holders: set[int] = set()
_holder_keys = itertools.count()


@dataclass
class GcPolicy:
    """What a server process does about the garbage collector (see the module's doc)."""

    #: Freeze the tracked objects when a dataset has been loaded or replaced.
    freeze_after_load: bool = True
    #: :func:`cron` counts databases replaced since its last tick as a load only from this
    #: many keys (a FLUSHALL followed by a few writes also brings new dicts).
    min_loaded_keys: int = 10_000
    #: A full collection longer than this (seconds) makes the next cron tick freeze.
    slow_full_collection: float = 0.010
    #: :func:`big_container_created` freezes from this many references.
    big_container: int = 100_000
    #: At most one freeze for a slow collection per this many seconds.
    min_freeze_interval: float = 60.0
    #: ``gc.set_threshold`` values to apply while installed (None: leave them alone).
    threshold: tuple[int, ...] | None = None

    # -- state, not configuration -----------------------------------------------------------
    freezes: int = field(default=0, init=False)
    last_freeze: float = field(default=float("-inf"), init=False)
    slow_collections: int = field(default=0, init=False)
    longest_full_collection: float = field(default=0.0, init=False)
    _slow_pending: bool = field(default=False, init=False, repr=False)
    _started: float = field(default=0.0, init=False, repr=False)
    _datasets: dict[int, frozenset[int]] = field(default_factory=dict, init=False, repr=False)
    _saved_threshold: tuple[int, ...] | None = field(default=None, init=False, repr=False)
    _froze_from_zero: bool = field(default=False, init=False, repr=False)
    _deferred: str | None = field(default=None, init=False, repr=False)
    _callback: Callable[[str, dict[str, Any]], None] | None = field(
        default=None, init=False, repr=False)

    def freeze(self, reason: str) -> None:
        """Move every tracked object out of the collector's generations (O(1)); deferred
        to the next :func:`cron` tick without holders while :func:`hold_until_collected`
        has one."""
        if _holders:
            self._deferred = reason
            logger.debug("gc: freeze deferred (%s): short-lived cycles are alive", reason)
            return
        gc.freeze()
        self.freezes += 1
        self.last_freeze = time.monotonic()
        logger.debug("gc: froze the long-lived objects (%s); %d frozen in all", reason,
                     gc.get_freeze_count())

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        # Runs inside the collector: only record; the freeze waits for the next cron tick.
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
            return
        took = time.perf_counter() - self._started
        self.longest_full_collection = max(self.longest_full_collection, took)
        if took > self.slow_full_collection:
            self.slow_collections += 1
            self._slow_pending = True


_policy: GcPolicy | None = None


def installed() -> GcPolicy | None:
    """The policy in force in this process, if any."""
    return _policy


def install(policy: GcPolicy | None = None) -> GcPolicy:
    """Put ``policy`` (default: :class:`GcPolicy()`) in force for this process: collect
    once, freeze what the imports left, time full collections. Meant for a process that
    runs a kvrepl server (``kvrepl-server`` does it), or an application that opts in."""
    global _policy
    if _policy is not None:
        uninstall()
    policy = policy or GcPolicy()
    if policy.threshold is not None:
        policy._saved_threshold = gc.get_threshold()
        gc.set_threshold(*policy.threshold)
    policy._froze_from_zero = gc.get_freeze_count() == 0
    policy._callback = policy._on_gc
    gc.callbacks.append(policy._callback)
    _policy = policy
    gc.collect()
    policy.freeze("start-up")
    return policy


def uninstall() -> None:
    """Undo :func:`install`: thresholds back, callback removed, and the permanent generation
    released if it was empty before (objects someone else froze stay frozen)."""
    global _policy
    policy, _policy = _policy, None
    if policy is None:
        return
    if policy._callback in gc.callbacks:
        gc.callbacks.remove(policy._callback)
    if policy._saved_threshold is not None:
        gc.set_threshold(*policy._saved_threshold)
    if policy._froze_from_zero:
        gc.unfreeze()


def dataset_loaded(keyspace: Any = None) -> bool:
    """A dataset was just loaded into ``keyspace``: freeze it (and everything else alive)
    so that full collections no longer walk it. True when the policy froze."""
    policy = _policy
    if policy is None or not policy.freeze_after_load:
        return False
    if keyspace is not None:
        policy._datasets[id(keyspace)] = _dataset_ids(keyspace)
    policy.freeze("dataset loaded")
    return True


def big_container_created(size: int) -> bool:
    """A container of ``size`` references that will live a while was just built: freeze it
    (with everything else alive) before a young collection walks it. True when it froze."""
    policy = _policy
    if policy is None or size < policy.big_container:
        return False
    policy.freeze(f"a container of {size} references")
    return True


def cron(keyspace: Any) -> bool:
    """From a node's periodic task: freeze after a slow full collection (rate-limited), or
    when ``keyspace``'s databases were replaced by non-empty ones since the last tick (a
    replica's full sync, a load). Cheap when nothing happened; True when it froze."""
    policy = _policy
    if policy is None:
        return False
    if policy._deferred is not None and not _holders:
        reason, policy._deferred = policy._deferred, None
        policy.freeze(f"{reason}, deferred")
        return True
    if policy.freeze_after_load:
        ids = _dataset_ids(keyspace)
        known = policy._datasets.get(id(keyspace))
        if known != ids:
            policy._datasets[id(keyspace)] = ids
            # Only new dicts count (SWAPDB reorders them, FLUSHALL empties them).
            loaded = 0 if known is None else sum(
                len(db.data) for db in keyspace.dbs if db.data and id(db.data) not in known)
            if loaded >= policy.min_loaded_keys:
                policy._slow_pending = False
                policy.freeze("dataset replaced")
                return True
    if policy._slow_pending:
        if time.monotonic() - policy.last_freeze >= policy.min_freeze_interval:
            policy._slow_pending = False
            policy.freeze(f"a full collection took {policy.longest_full_collection:.3f}s")
            return True
    return False


def hold_until_collected(obj: object) -> None:
    """Defer every freeze until ``obj`` has been freed: it heads cycles that will be
    garbage soon (a freeze would keep them, and all they hold, until :func:`uninstall`)."""
    key = next(_holder_keys)
    _holders.add(key)
    weakref.finalize(obj, _holders.discard, key)


def _dataset_ids(keyspace: Any) -> frozenset[int]:
    """The identities of the non-empty databases' dicts (a load replaces them)."""
    return frozenset(id(db.data) for db in keyspace.dbs if db.data)
