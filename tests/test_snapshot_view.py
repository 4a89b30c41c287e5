"""The point-in-time keyspace view: later writes never leak into it."""

from __future__ import annotations

from collections import deque

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from kvrepl.commands.core import Engine
from kvrepl.config import Config
from kvrepl.store.snapshot import KeyspaceView
from kvrepl.store.values import ZSet, copy_value


def frozen_copy(engine: Engine) -> dict:
    return {(db.id, k): (copy_value(v), db.expires.get(k))
            for db in engine.keyspace.dbs for k, v in db.data.items()}


def drain(view: KeyspaceView) -> dict:
    return {(db, k): (v, exp) for batch in view.entries(batch=3) for db, k, v, exp in batch}


def drain_batches(view: KeyspaceView) -> dict:
    """The same through the writer's fast form (expiry looked up per batch, as it does)."""
    return {(db, k): (v, expires.get(k)) for db, items, expires in view.batches(3)
            for k, v in items}


@pytest.mark.parametrize("read", [drain, drain_batches])
def test_view_keeps_values_mutated_in_place_and_unhooks(run, engine, read):
    run("RPUSH", "l", "a", "b")
    run("HSET", "h", "f", "1")
    run("SADD", "s", "x")
    run("ZADD", "z", "1", "m")
    run("SET", "str", "old")
    run("SET", "ttl", "v", "PX", "100000")
    before = frozen_copy(engine)
    view = KeyspaceView(engine.keyspace)
    run("RPUSH", "l", "c")
    run("HSET", "h", "f", "2")
    run("SADD", "s", "y")
    run("ZADD", "z", "5", "m")
    run("SET", "str", "new")
    run("PERSIST", "ttl")
    run("DEL", "l")
    run("SET", "created", "after")
    assert view.copies == 4  # the four containers changed in place, once each
    assert read(view) == before
    assert engine.keyspace.before_write_hooks == []


@pytest.mark.parametrize("read", [drain, drain_batches])
def test_values_that_move_between_keys_and_dbs(run, engine, read):
    run("RPUSH", "l", "a")
    run("SADD", "s", "x")
    run("SELECT", "1")
    run("RPUSH", "other", "z")
    run("SELECT", "0")
    before = frozen_copy(engine)
    view = KeyspaceView(engine.keyspace)
    run("RENAME", "l", "l2")
    run("RPUSH", "l2", "b")
    run("MOVE", "s", "2")
    run("SELECT", "2")
    run("SADD", "s", "y")
    run("SWAPDB", "1", "3")
    run("SELECT", "3")
    run("RPUSH", "other", "w")
    assert read(view) == before


class ViewMachine(RuleBasedStateMachine):
    """Random writes after a view is taken never change what the view yields."""

    keys = st.sampled_from([b"a", b"b", b"c"])

    @initialize()
    def setup(self):
        self.engine = Engine(Config(save=()))
        self.session = self.engine.new_session()
        self.view = None

    def run(self, *argv):
        self.engine.execute(self.session, [a if isinstance(a, bytes) else str(a).encode()
                                           for a in argv])

    @rule(key=keys, value=st.binary(max_size=3))
    def write(self, key, value):
        self.run(b"RPUSH", key, value)
        self.run(b"SADD", key + b"s", value)
        self.run(b"HSET", key + b"h", value, value)
        self.run(b"ZADD", key + b"z", len(value), value)

    @rule(key=keys)
    def change(self, key):
        self.run(b"LPOP", key)
        self.run(b"SPOP", key + b"s")
        self.run(b"DEL", key + b"h")
        self.run(b"RENAME", key + b"z", key + b"zz")

    @rule(key=keys, value=st.binary(max_size=3))
    def overwrite_and_expire(self, key, value):
        self.run(b"SET", key + b"h", value)
        self.run(b"PEXPIRE", key, 100000)
        self.run(b"PERSIST", key + b"s")

    @rule()
    def flush(self):
        self.run(b"FLUSHDB")

    @rule(a=st.integers(0, 2), b=st.integers(0, 2))
    def swap(self, a, b):
        self.run(b"SWAPDB", a, b)

    @rule(db=st.integers(0, 2))
    def select(self, db):
        self.run(b"SELECT", db)

    @rule()
    def take_view(self):
        if self.view is None:
            self.expected = frozen_copy(self.engine)
            self.view = KeyspaceView(self.engine.keyspace)

    @invariant()
    def view_is_frozen(self):
        if self.view is not None and len(self.view) != len(self.expected):
            raise AssertionError("view changed size")

    @rule()
    def write_out_a_little(self):
        # Interleave writing out with later writes, as a running snapshot does.
        if self.view is not None and not hasattr(self, "partial"):
            self.batches = self.view.batches(2)
            self.partial = {}
            for db, items, expires in self.batches:
                # A writer serializes a batch at once: keep what it would have written.
                self.partial.update({(db, k): (copy_value(v), expires.get(k))
                                     for k, v in items})
                break

    def teardown(self):
        if self.view is None:
            return
        if hasattr(self, "partial"):
            for db, items, expires in self.batches:
                self.partial.update({(db, k): (copy_value(v), expires.get(k))
                                     for k, v in items})
            assert self.partial == self.expected
        else:
            assert drain(self.view) == self.expected


TestViewMachine = ViewMachine.TestCase
TestViewMachine.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)


def test_copy_value_is_deep_enough():
    z = ZSet({b"m": 1.0})
    assert copy_value(z) == z and copy_value(z) is not z
    d = deque([b"a"])
    assert copy_value(d) == d and copy_value(d) is not d


# -- the view walks the live dicts until a write comes ---------------------------------------
def _big_engine(keys: int = 5000) -> tuple[Engine, object]:
    engine = Engine(Config(save=()))
    session = engine.new_session()
    for i in range(keys):
        value = b"v%d" % i if i % 3 else [b"a", b"%d" % i]
        if type(value) is list:
            engine.execute(session, [b"RPUSH", b"k%d" % i, *value])
        else:
            engine.execute(session, [b"SET", b"k%d" % i, value])
        if i % 7 == 0:
            engine.execute(session, [b"PEXPIRE", b"k%d" % i, b"100000000"])
    return engine, session


@pytest.mark.parametrize("form", ["entries", "batches"])
def test_writes_that_resize_the_dict_midway_never_leak_into_the_view(form):
    engine, session = _big_engine()
    expected = frozen_copy(engine)
    view = KeyspaceView(engine.keyspace)
    got = {}
    if form == "entries":
        source = ({(db, k): (copy_value(v), exp) for db, k, v, exp in chunk}
                  for chunk in view.entries(batch=100))
    else:
        source = ({(db, k): (copy_value(v), expires.get(k)) for k, v in items}
                  for db, items, expires in view.batches(100))
    for _ in range(10):  # 1000 keys written out before any change
        got.update(next(source))
    run = engine.execute
    for i in range(0, 5000, 5):  # deletions before and after the point reached
        run(session, [b"DEL", b"k%d" % i])
    for i in range(20000):  # enough new keys to resize the dict several times
        run(session, [b"SET", b"new%d" % i, b"x"])
    for i in range(1, 5000, 5):  # re-created keys move to the end of the dict
        run(session, [b"DEL", b"k%d" % i])
        run(session, [b"SET", b"k%d" % i, b"again"])
    for i in range(2, 5000, 5):
        run(session, [b"RPUSH", b"k%d" % i, b"more"] if i % 3 == 0 else
            [b"APPEND", b"k%d" % i, b"more"])
    for chunk in source:
        assert not got.keys() & chunk.keys()  # every key once
        got.update(chunk)
    assert got == expected
    assert len(view) == len(expected)
    assert engine.keyspace.before_write_hooks == []


def test_a_view_without_writes_yields_the_dict_in_order():
    engine, _ = _big_engine(1000)
    data = engine.keyspace.dbs[0].data
    view = KeyspaceView(engine.keyspace)
    assert view.db_sizes() == [(0, 1000, len(engine.keyspace.dbs[0].expires))]
    keys = [k for db, items, _ in view.batches(64) for k, _ in items]
    assert keys == list(data)


def test_a_change_that_bypasses_the_hook_fails_loudly():
    # The contract is that every write calls before_write; breaking it must not give a
    # silently wrong snapshot.
    engine, _ = _big_engine(1000)
    view = KeyspaceView(engine.keyspace)
    batches = view.batches(10)
    next(batches)
    engine.keyspace.dbs[0].data[b"sneaky"] = b"x"
    with pytest.raises(RuntimeError):
        for _ in batches:
            pass
    assert engine.keyspace.before_write_hooks == []


def test_close_midway_unhooks_and_ends_the_view(run, engine):
    for i in range(50):
        run("SET", f"k{i}", "v")
    view = KeyspaceView(engine.keyspace)
    batches = view.batches(10)
    next(batches)
    view.close()
    assert engine.keyspace.before_write_hooks == []
    run("SET", "other", "v")  # no hook, and the view no longer reads the dict
    assert list(batches) == []
