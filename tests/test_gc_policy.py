"""kvrepl.gc_policy: what a server process does about the cyclic garbage collector.

Only behaviour is asserted (what is frozen, what is restored), never how long anything took.
"""

from __future__ import annotations

import gc

import pytest
import trio

import kvrepl
from kvrepl import gc_policy
from kvrepl.commands.core import Engine
from kvrepl.config import Config
from kvrepl.gc_policy import GcPolicy
from kvrepl.store.snapshot import KeyspaceView


@pytest.fixture
def policy_state():
    """Leave the interpreter's collector as the test found it."""
    assert gc_policy.installed() is None
    threshold, callbacks, frozen = gc.get_threshold(), list(gc.callbacks), gc.get_freeze_count()
    try:
        yield
    finally:
        gc_policy.uninstall()
        assert gc.get_threshold() == threshold
        assert gc.callbacks == callbacks
        if frozen == 0:
            assert gc.get_freeze_count() == 0


def test_nothing_happens_without_a_policy(policy_state):
    engine = Engine(Config(save=()))
    before = gc.get_freeze_count()
    assert gc_policy.dataset_loaded(engine.keyspace) is False
    assert gc_policy.big_container_created(10**7) is False
    assert gc_policy.cron(engine.keyspace) is False
    assert gc.get_freeze_count() == before


def test_install_freezes_and_uninstall_restores(policy_state):
    original = gc.get_threshold()
    policy = gc_policy.install(GcPolicy(threshold=(5000, 20, 20)))
    assert gc_policy.installed() is policy
    assert gc.get_threshold() == (5000, 20, 20)
    assert policy.freezes == 1 and gc.get_freeze_count() > 0
    fresh = [[]]  # created after the freeze: the collector still sees it
    assert gc.is_tracked(fresh)
    assert any(o is fresh for o in gc.get_objects())
    second = gc_policy.install()  # installing again replaces the first policy
    assert gc_policy.installed() is second
    assert gc.get_threshold() == original
    gc_policy.uninstall()
    assert gc_policy.installed() is None


def test_a_loaded_dataset_is_frozen(policy_state):
    engine = Engine(Config(save=()))
    policy = gc_policy.install()
    hashes = {b"k%d" % i: {b"f": b"v"} for i in range(100)}
    engine.keyspace.dbs[0].data = hashes
    assert gc_policy.dataset_loaded(engine.keyspace)
    assert policy.freezes == 2
    assert not any(o is hashes for o in gc.get_objects())  # out of every generation
    assert gc_policy.cron(engine.keyspace) is False  # already known: no second freeze


def test_cron_notices_a_dataset_replaced_wholesale(policy_state):
    engine = Engine(Config(save=()))
    policy = gc_policy.install(GcPolicy(min_loaded_keys=100))
    assert gc_policy.cron(engine.keyspace) is False  # the first tick only looks
    db = engine.keyspace.dbs[0]
    db.data = {b"k%d" % i: b"v" for i in range(10)}
    assert gc_policy.cron(engine.keyspace) is False  # too small to be a load
    db.data = {b"k%d" % i: b"v" for i in range(100)}
    assert gc_policy.cron(engine.keyspace) is True
    assert gc_policy.cron(engine.keyspace) is False
    engine.keyspace.swap(0, 1)  # the same dicts elsewhere: nothing new
    assert gc_policy.cron(engine.keyspace) is False
    assert policy.freezes == 2


def test_a_slow_full_collection_makes_cron_freeze_once_per_interval(policy_state):
    engine = Engine(Config(save=()))
    policy = gc_policy.install(GcPolicy(slow_full_collection=0.0, min_freeze_interval=3600))
    gc_policy.cron(engine.keyspace)
    gc.collect()
    assert policy.slow_collections >= 1
    # install froze a moment ago: the interval holds the next freeze back
    assert gc_policy.cron(engine.keyspace) is False
    policy.min_freeze_interval = 0
    assert gc_policy.cron(engine.keyspace) is True
    assert gc_policy.cron(engine.keyspace) is False  # nothing new since


def test_a_snapshot_freezes_the_key_order_it_had_to_copy(policy_state):
    engine = Engine(Config(save=()))
    session = engine.new_session()
    for i in range(300):
        engine.execute(session, [b"SET", b"k%d" % i, b"v"])
    policy = gc_policy.install(GcPolicy(big_container=100))
    view = KeyspaceView(engine.keyspace)
    batches = view.batches(10)
    next(batches)
    assert policy.freezes == 1
    engine.execute(session, [b"SET", b"k1", b"changed"])  # the first write copies the order
    assert policy.freezes == 2
    engine.execute(session, [b"SET", b"k2", b"changed"])
    assert policy.freezes == 2
    assert sum(len(items) for _, items, _ in batches) == 290


def dead_frozen_objects() -> list[object]:
    """The cycles that died after a freeze: unreachable, and no collection would have freed
    them (the collector skips frozen objects). Frozen objects stay frozen afterwards."""
    gc.collect()  # garbage the collector frees anyway is not the question
    gc.unfreeze()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        garbage = list(gc.garbage)
        gc.garbage.clear()
    finally:
        gc.set_debug(0)
        gc.freeze()
    return garbage


async def test_full_syncs_of_a_replica_serving_another_leave_no_dataset_frozen(policy_state):
    # A replica that served a snapshot to its own replica, then loads a new dataset from its
    # master (and freezes it): the finished snapshot job, a cycle, must not keep the old
    # dataset. With the collector off, a dead cycle is still there at the next freeze, as
    # it is whenever the collector has not got to it yet; frozen, it would stay for good.
    gc_policy.install()
    gc.disable()
    try:
        async with kvrepl.Master() as master, kvrepl.Replica(follow=master) as middle, \
                kvrepl.Replica(follow=middle) as chained:
            for round_number in range(3):
                served = int(middle.info("stats")["sync_full"])
                middle.stop_following()  # a new history: the next sync is a full one
                middle.follow_node(master)
                master.set(b"leak-probe", b"%d" % round_number)
                master.execute_command("RPUSH", b"list", b"%d" % round_number)  # tracked db
                await middle.wait_synced()

                def chained_resynced(served=served, value=b"%d" % round_number) -> bool:
                    return (int(middle.info("stats")["sync_full"]) > served
                            and chained.get(b"leak-probe") == value)

                await wait_until(chained_resynced)
            leaked = [o for o in dead_frozen_objects()
                      if type(o) is dict and b"leak-probe" in o]
            assert not leaked, f"{len(leaked)} replaced datasets frozen and unreachable"
    finally:
        gc.enable()


async def wait_until(check, within: float = 30.0) -> None:
    """Poll a condition no event announces (another node's link), bounded."""
    with trio.fail_after(within):
        while not check():
            await trio.sleep(0.02)
