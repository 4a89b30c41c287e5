"""The direct GET binds its session's read state (the database's lookup, TTLs and hit
record; whether a read gate or MULTI shuts it: :mod:`kvrepl.direct_reads`) instead of
loading it on each call, so every change of that state must bind it again. Random histories
of every such change (SELECT, SWAPDB, FLUSHDB/FLUSHALL, DEBUG RELOAD, MULTI/EXEC/DISCARD,
RESET, the read gates: keyspace notifications, maxmemory, an LFU policy, client tracking,
MONITOR), made through the node, through ``node.redis()`` and over TCP, interleaved with
reads, run side by side on two masters: one reads directly (``node.get``,
``node.redis().get``), the other the general way (GET through the engine). Every answer,
INFO counter (keyspace hits and misses, every command's calls, commands processed, expired
keys), OBJECT IDLETIME / FREQ, propagated write (lazy expiry's DEL) and MONITOR line must be
the same. And every place in kvrepl that assigns what a direct GET binds is a known one."""

from __future__ import annotations

import ast
import random
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import redis
import trio
import trio.testing
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import kvrepl
from kvrepl.direct_reads import SAMPLE

START = 1_700_000_000.0
KEYS = [b"k0", b"k1", b"k2"]


class Clock:
    """A node's keyspace clock, moved by the test only."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def _outcome(call: Callable[[], object]) -> object:
    try:
        return call()
    except (kvrepl.ReplyError, redis.RedisError) as err:
        return type(err).__name__, str(err)


class Side:
    """One master of the pair, its clients and what it recorded; ``direct``: its reads
    go the direct way."""

    def __init__(self, node: kvrepl.Node, direct: bool) -> None:
        self.node = node
        self.direct = direct
        self.clock = Clock()
        keyspace = node.engine.keyspace
        keyspace.clock = self.clock
        keyspace.set_lru_clock(int(START))
        node.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", 0)
        self.propagated: list[tuple[int, list[bytes]]] = []
        node.engine.propagate_listeners.append(
            lambda db, argv: self.propagated.append((db, list(argv))))
        self.conn = node.redis()  # an in-process connection (a session of its own)
        self.tcp = redis.Redis(port=node.port)
        self.observer = node.engine.new_session()  # OBJECT IDLETIME/FREQ, outside the scene
        self.monitor = node.engine.new_session()  # MONITOR's lines wait in its pending_out

    def close(self) -> None:
        self.tcp.close()
        self.conn.close()
        for session in (self.observer, self.monitor):
            self.node.engine.close_session(session)

    async def run(self, via: str, *argv: object) -> object:
        """A command through the node's data methods, the in-process connection, or TCP."""
        if via == "node":
            return _outcome(lambda: self.node.execute_command(*argv))
        if via == "conn":
            return _outcome(lambda: self.conn.execute_command(*argv))
        return await trio.to_thread.run_sync(
            lambda: _outcome(lambda: self.tcp.execute_command(*argv)))

    def read(self, reader: str, name: object) -> object:
        if reader == "node":
            get = self.node.get if self.direct else \
                lambda name: self.node.execute_command("GET", name)
        else:
            get = self.conn.get if self.direct else \
                lambda name: self.conn.execute_command("GET", name)
        return _outcome(lambda: get(name))

    def observe(self) -> dict[str, object]:
        """What is seen from outside: INFO counters, every key's access data, the
        propagated writes and MONITOR lines since the last look."""
        engine = self.node.engine
        info = self.node.info("stats", "commandstats", "keyspace")
        seen: dict[str, object] = {
            name: info[name] for name in ("keyspace_hits", "keyspace_misses",
                                          "total_commands_processed", "expired_keys",
                                          "evicted_keys")}
        seen.update({name: (value["calls"], value["failed_calls"], value["rejected_calls"])
                     for name, value in info.items() if name.startswith("cmdstat_")})
        seen.update({name: value for name, value in info.items() if name.startswith("db")})
        for index in range(3):
            engine.execute(self.observer, [b"SELECT", b"%d" % index])
            for key in sorted(engine.execute(self.observer, [b"KEYS", b"*"])):
                seen[f"{index}:{key!r}"] = [
                    repr(engine.execute(self.observer, [b"OBJECT", kind, key]))
                    for kind in (b"IDLETIME", b"FREQ")]
        seen["propagated"], self.propagated = self.propagated, []
        # The address of a TCP client has its own port on each side.
        seen["monitor"] = [re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:*", repr(line))
                           for line in self.monitor.pending_out]
        self.monitor.drained()
        return seen

    async def step(self, index: int, op: tuple) -> object:
        """Apply ``op``; its outcome."""
        random.seed(index)  # LFU's counter increments draw random numbers: the same ones
        kind = op[0]
        if kind == "read":
            _, reader, name, times = op
            return [self.read(reader, name) for _ in range(times)]
        if kind == "command":
            return await self.run(op[1], *op[2])
        if kind == "tick":
            self.clock.now += op[1]
            self.node.engine.keyspace.set_lru_clock(int(self.clock.now))
            return None
        if kind == "monitor":
            return repr(self.node.engine.execute(self.monitor, [op[1]]))
        assert kind == "observe"
        return self.observe()


async def _compare(ops: list[tuple]) -> None:
    with tempfile.TemporaryDirectory() as first, tempfile.TemporaryDirectory() as second:
        async with kvrepl.Master(port=0, dir=first) as direct, \
                kvrepl.Master(port=0, dir=second) as general:
            sides = [Side(direct, True), Side(general, False)]
            try:
                for index, op in enumerate([*ops, ("observe",)]):
                    ours, theirs = [await side.step(index, op) for side in sides]
                    assert ours == theirs, (index, op)
            finally:
                for side in sides:
                    side.close()


_via = st.sampled_from(["node", "conn", "tcp"])
_session = st.sampled_from(["node", "conn"])  # the sessions with a direct GET
_key = st.sampled_from(KEYS)
_db = st.integers(0, 2).map(str)
_write = st.one_of(
    st.tuples(st.just("SET"), _key, st.sampled_from(["v", "value"])),
    st.tuples(st.just("SET"), _key, st.just("t"), st.just("EX"), st.sampled_from(["10", "1000"])),
    st.tuples(st.just("EXPIRE"), _key, st.sampled_from(["10", "1000"])),
    st.tuples(st.just("RPUSH"), _key, st.just("a")),
    st.tuples(st.just("APPEND"), _key, st.just("x")),  # a string edited in place
    st.tuples(st.just("DEL"), _key),
)
_state = st.one_of(
    st.tuples(st.just("SELECT"), _db),
    st.tuples(st.just("SWAPDB"), _db, _db),
    st.sampled_from([("FLUSHDB",), ("FLUSHALL",), ("DEBUG", "RELOAD"), ("MULTI",), ("EXEC",),
                     ("DISCARD",), ("RESET",), ("CLIENT", "TRACKING", "on"),
                     ("CLIENT", "TRACKING", "off")]),
    st.tuples(st.just("CONFIG"), st.just("SET"), st.sampled_from([
        ("notify-keyspace-events", "Kg"), ("notify-keyspace-events", "Em"),
        ("notify-keyspace-events", ""), ("maxmemory", "100mb"), ("maxmemory", "0"),
        ("maxmemory-policy", "allkeys-lfu"), ("maxmemory-policy", "noeviction")])).map(
        lambda t: (*t[:2], *t[2])),
)
_op = st.one_of(
    st.tuples(st.just("read"), _session, st.sampled_from([*KEYS, b"none", "k0", 7]),
              st.sampled_from([1, 1, SAMPLE + 1])),
    st.tuples(st.just("command"), _via, _write),
    st.tuples(st.just("command"), _via, _state),
    st.tuples(st.just("tick"), st.sampled_from([1, 30, 5000])),
    st.tuples(st.just("monitor"), st.sampled_from([b"MONITOR", b"RESET"])),
    st.just(("observe",)),
)


def _reads(*names: bytes) -> list[tuple]:
    return [("read", reader, name, 1) for name in names for reader in ("node", "conn")]


SET_K0 = ("command", "node", ("SET", "k0", "v"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_op, min_size=1, max_size=40))
# One history for each place the read state changes (each fails if that place binds
# nothing): SELECT, MULTI / DISCARD, RESET, SWAPDB, FLUSHDB, DEBUG RELOAD, a gate (MONITOR,
# CONFIG SET, CLIENT TRACKING), EXEC.
@example([SET_K0, *_reads(b"k0"), ("command", "node", ("SELECT", "1")),
          ("command", "conn", ("SELECT", "1")), *_reads(b"k0")])
@example([SET_K0, ("command", "node", ("MULTI",)), ("command", "conn", ("MULTI",)),
          *_reads(b"k0"), ("command", "node", ("DISCARD",)), *_reads(b"k0"),
          ("command", "conn", ("RESET",)), *_reads(b"k0")])
@example([SET_K0, *_reads(b"k0"), ("command", "tcp", ("SWAPDB", "0", "1")), *_reads(b"k0")])
@example([SET_K0, *_reads(b"k0"), ("command", "tcp", ("FLUSHDB",)), *_reads(b"k0")])
@example([*_reads(b"k0"), SET_K0, ("command", "conn", ("DEBUG", "RELOAD")),
          ("command", "node", ("SET", "k0", "w")), *_reads(b"k0")])
@example([SET_K0, *_reads(b"k0"), ("monitor", b"MONITOR"), *_reads(b"k0"),
          ("monitor", b"RESET"), *_reads(b"k0")])
@example([SET_K0, ("command", "tcp", ("CONFIG", "SET", "notify-keyspace-events", "Kg")),
          *_reads(b"k0"), ("command", "conn", ("CLIENT", "TRACKING", "on")), *_reads(b"k0")])
@example([SET_K0, ("command", "node", ("MULTI",)), ("command", "node", ("SELECT", "2")),
          ("command", "node", ("EXEC",)), ("command", "node", ("SET", "k0", "w")),
          *_reads(b"k0"), ("observe",)])
# A database's first TTL (the direct GET of a database without TTLs does not look at them):
# SET EX, EXPIRE, through the node, a connection and TCP, a DEBUG RELOAD NOFLUSH; read once
# due.
@example([SET_K0, *_reads(b"k0"), ("command", "node", ("SET", "k1", "t", "EX", "10")),
          ("tick", 30), *_reads(b"k1", b"k0")])
@example([SET_K0, *_reads(b"k0"), ("command", "tcp", ("EXPIRE", "k0", "10")),
          ("tick", 30), *_reads(b"k0")])
@example([SET_K0, *_reads(b"k0"), ("command", "conn", ("EXPIRE", "k0", "10")),
          ("tick", 30), *_reads(b"k0")])
@example([("command", "node", ("SET", "k1", "t", "EX", "10")), ("command", "node", ("SAVE",)),
          ("command", "node", ("DEL", "k1")), SET_K0,
          *[("command", via, ("SELECT", db)) for via in ("node", "conn") for db in "10"],
          *_reads(b"k0"), ("command", "conn", ("DEBUG", "RELOAD", "NOSAVE", "NOFLUSH")),
          ("tick", 30), *_reads(b"k1", b"k0")])  # a merge of a file's keys with TTLs
def test_direct_reads_follow_every_change_of_what_they_read(ops: list[tuple]) -> None:
    trio.run(_compare, ops, clock=trio.testing.MockClock())  # no cron: the test moves time


# Every assignment in kvrepl of what a direct GET binds (a session's ``db`` or ``multi``, a
# database's ``data`` or ``expires``), by file, function and attribute: a new one must bind
# again (Session.read_state_changed, Keyspace.read_state_changed) and be added here.
BOUND = frozenset({"multi", "db", "data", "expires"})
ASSIGNED = {
    # The sites that bind again (or set up what the first bind reads).
    ("kvrepl/commands/core.py", "Session.__init__", "db"),
    ("kvrepl/commands/core.py", "Session.__init__", "multi"),
    ("kvrepl/commands/core.py", "Session.select", "db"),
    ("kvrepl/commands/core.py", "Session.set_multi", "multi"),
    ("kvrepl/rdb/load.py", "StagedLoad.apply", "data"),
    ("kvrepl/rdb/load.py", "StagedLoad.apply", "expires"),
    ("kvrepl/store/database.py", "Database.__init__", "data"),
    ("kvrepl/store/database.py", "Database.__init__", "expires"),
    ("kvrepl/store/database.py", "Database.clear", "data"),
    ("kvrepl/store/database.py", "Database.clear", "expires"),
    ("kvrepl/store/database.py", "Database.merge_loaded", "data"),
    ("kvrepl/store/database.py", "Database.merge_loaded", "expires"),
    ("kvrepl/store/database.py", "Keyspace.swap", "data"),
    ("kvrepl/store/database.py", "Keyspace.swap", "expires"),
    # Sessions with no direct GET: a command awaited in a session of its own, a script's
    # client, a forked child's.
    ("kvrepl/node.py", "Node.execute_command_async", "db"),
    ("kvrepl/scripting/runtime.py", "LuaState.run", "db"),
    ("kvrepl/scripting/runtime.py", "LuaState.run_cached", "db"),
    ("kvrepl/scripting/fork.py", "fork_client", "db"),
    # A new keyspace's databases (a copy), snapshot views: no session reads them.
    ("kvrepl/store/clone.py", "_clone_db", "data"),
    ("kvrepl/store/clone.py", "_clone_db", "expires"),
    ("kvrepl/store/snapshot.py", "_DbView.__init__", "data"),
    ("kvrepl/store/snapshot.py", "_DbView.__init__", "expires"),
    ("kvrepl/store/snapshot.py", "_DbView.finish", "data"),
    ("kvrepl/store/snapshot.py", "_DbView.finish", "expires"),
    # Attributes of the same names on other classes.
    ("kvrepl/errors.py", "WriteSkipped.__init__", "db"),
    ("kvrepl/rdb/tool.py", "_Counts.__init__", "expires"),
    ("kvrepl/rdb/tool.py", "_checked_events.absorb", "expires"),
    ("kvrepl/replication/cluster.py", "Ownership.__init__", "db"),
    ("kvrepl/scripting/cjson.py", "_Decoder.__init__", "data"),
    ("kvrepl/scripting/cmsgpack.py", "_Decoder.__init__", "data"),
}


# Every store of a TTL into a database's ``expires`` in kvrepl (``X.expires[key] = ...``,
# ``X.expires.update(...)``), by file and function: a direct GET bound to a database
# without TTLs does not look at them, so a store that can give a database its first TTL must
# bind again (Keyspace.read_state_changed) and be added here.
TTL_STORES = {
    ("kvrepl/store/database.py", "Database.set_expire"),
    ("kvrepl/store/database.py", "Database.merge_loaded"),
    ("kvrepl/persistence.py", "_merge"),
    ("kvrepl/rdb/tool.py", "_checked_events.absorb"),  # a count of another class's
}


def _kvrepl_nodes() -> Iterator[tuple[str, str, ast.AST]]:
    """Every node of kvrepl's syntax trees but the definitions: (file, the dotted names of
    the functions and classes it is in, node)."""
    root = Path(kvrepl.__file__).parent

    def walk(node: ast.AST, path: str, scope: list[str]) -> Iterator[tuple[str, str, ast.AST]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                yield from walk(child, path, [*scope, child.name])
                continue
            yield path, ".".join(scope), child
            yield from walk(child, path, scope)

    for file in sorted(root.rglob("*.py")):
        yield from walk(ast.parse(file.read_text()),
                        f"kvrepl/{file.relative_to(root).as_posix()}", [])


def _ttl_stores() -> set[tuple[str, str]]:
    """(file, function) of every store into an attribute ``expires``'s dict."""

    def is_expires(node: ast.AST) -> bool:
        return isinstance(node, ast.Attribute) and node.attr == "expires"

    found = set()
    for path, scope, child in _kvrepl_nodes():
        stored = isinstance(child, ast.Subscript) and isinstance(child.ctx, ast.Store) \
            and is_expires(child.value)
        called = isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute) \
            and child.func.attr in ("update", "setdefault", "__setitem__", "__ior__") \
            and is_expires(child.func.value)
        merged = isinstance(child, ast.AugAssign) and is_expires(child.target)
        if stored or called or merged:
            found.add((path, scope))
    return found


def test_every_store_of_a_ttl_is_known() -> None:
    found = _ttl_stores()
    assert found - TTL_STORES == set(), "new TTL stores: do they bind the direct GETs again?"
    assert TTL_STORES - found == set(), "gone: drop them from TTL_STORES"


def _assignments() -> set[tuple[str, str, str]]:
    """(file, function, attribute) of every assignment to an attribute in BOUND."""
    found = set()
    for path, scope, child in _kvrepl_nodes():
        if isinstance(child, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = child.targets if isinstance(child, ast.Assign) else [child.target]
            for target in targets:
                for item in target.elts if isinstance(target, ast.Tuple) else [target]:
                    if isinstance(item, ast.Attribute) and item.attr in BOUND:
                        found.add((path, scope, item.attr))
    return found


def test_every_change_of_what_direct_reads_bind_is_known() -> None:
    found = _assignments()
    assert found - ASSIGNED == set(), "new assignments: do they bind the direct GETs again?"
    assert ASSIGNED - found == set(), "gone: drop them from ASSIGNED"
