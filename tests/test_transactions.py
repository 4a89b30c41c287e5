"""MULTI / EXEC / DISCARD / WATCH / UNWATCH, compared with redis-server where deterministic.

The cases follow Redis's own tests/unit/multi.tcl. Cases that need a key to expire run
in-process on an engine whose clock the test moves (the TTLs are milliseconds long, and a
live server's active expiry would race with the test).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis
from support import argv

from kvrepl.commands.core import Engine, Session
from kvrepl.errors import ReplyError
from kvrepl.protocol.replies import NULL_ARRAY, OK, QUEUED
from kvrepl.server.cron import expire_cycle

Run = Callable[..., object]


# -- differential tests over the wire ---------------------------------------------------------


@pytest.fixture
def other(compare_on: Callable[..., Callable[..., object]]) -> Callable[..., object]:
    """``other("SET", "x", "1")``: the same command from a second client on both servers."""
    return compare_on(protocol=2)


def test_multi_exec_basics(same: Callable[..., object]) -> None:
    same("MULTI")
    same("SET", "a", "1")
    same("INCR", "a")
    same("GET", "a")
    assert same("EXEC") == [b"OK", 2, b"2"]
    same("MULTI")
    assert same("EXEC") == []


def test_discard(same: Callable[..., object]) -> None:
    same("SET", "a", "1")
    same("MULTI")
    same("INCR", "a")
    same("DISCARD")
    same("GET", "a")
    same("DISCARD")
    same("EXEC")


def test_nested_multi_and_watch_inside_multi_are_errors_that_do_not_abort(
        same: Callable[..., object]) -> None:
    same("MULTI")
    same("MULTI")
    same("WATCH", "x")
    same("SET", "x", "1")
    assert same("EXEC") == [b"OK"]


def test_without_multi(same: Callable[..., object]) -> None:
    same("EXEC")
    same("DISCARD")
    same("UNWATCH")


def test_execabort_after_unknown_command(same: Callable[..., object]) -> None:
    same("MULTI")
    same("SET", "a", "1")
    same("NOSUCHCOMMAND", "x")
    same("SET", "b", "2")
    same("EXEC")
    same("EXISTS", "a", "b")


def test_execabort_after_wrong_arity(same: Callable[..., object]) -> None:
    same("MULTI")
    same("SET", "a")
    same("SET", "b", "1")
    same("EXEC")
    same("EXISTS", "b")
    same("EXEC")  # the MULTI state is gone


def test_exec_of_the_wrong_arity_aborts_the_transaction_and_the_watches(
        same: Callable[..., object], other: Callable[..., object]) -> None:
    """rejectCommand on EXEC is execCommandAbort, in MULTI or not (found by the differential
    hunt: kvrepl answered the plain arity error and stayed in MULTI)."""
    same("MULTI")
    same("SET", "a", "1")
    assert same("EXEC", "x") == ("Transaction discarded because of: "  # an EXECABORT
                                 "wrong number of arguments for 'exec' command")
    same("EXISTS", "a")  # run at once: the MULTI state is gone
    same("EXEC")
    same("WATCH", "w")
    same("EXEC", "x")  # outside MULTI too, and the watch goes with it
    other("SET", "w", "changed")
    same("MULTI")
    same("GET", "w")
    assert same("EXEC") == [b"changed"]


def test_errors_inside_exec_do_not_abort_the_others(same: Callable[..., object]) -> None:
    same("SET", "s", "text")
    same("MULTI")
    same("INCR", "s")
    same("LPUSH", "s", "x")
    same("SET", "t", "1")
    same("GET", "t")
    assert same("EXEC") == [
        ("error", "value is not an integer or out of range"),
        ("error", "WRONGTYPE Operation against a key holding the wrong kind of value"),
        b"OK", b"1"]
    same("GET", "t")


def test_commands_not_allowed_in_multi(same: Callable[..., object]) -> None:
    same("MULTI")
    same("SHUTDOWN", "NOSAVE")
    same("MONITOR")
    same("EXEC")


def test_watched_key_modified_by_another_client(same: Callable[..., object],
                                                other: Callable[..., object]) -> None:
    same("SET", "x", "30")
    same("WATCH", "a", "b", "x", "k", "z")
    other("SET", "x", "40")
    same("MULTI")
    same("PING")
    assert same("EXEC") is None


def test_write_before_watch_does_not_abort(same: Callable[..., object],
                                           other: Callable[..., object]) -> None:
    other("SET", "x", "40")
    same("WATCH", "x")
    same("MULTI")
    same("GET", "x")
    assert same("EXEC") == [b"40"]


def test_watch_is_per_db(same: Callable[..., object], other: Callable[..., object]) -> None:
    same("SELECT", "5")
    same("SET", "x", "30")
    same("WATCH", "x")
    other("SELECT", "1")
    other("SET", "x", "10")
    same("MULTI")
    same("PING")
    assert same("EXEC") == [b"PONG"]
    same("SELECT", "0")


@pytest.mark.parametrize("exists", [True, False])
@pytest.mark.parametrize("flush", ["FLUSHALL", "FLUSHDB"])
def test_flush_touches_only_existing_watched_keys(same: Callable[..., object],
                                                  other: Callable[..., object],
                                                  flush: str, exists: bool) -> None:
    if exists:
        same("SET", "x", "30")
    same("WATCH", "x")
    other(flush)
    same("MULTI")
    same("PING")
    assert same("EXEC") == (None if exists else [b"PONG"])


def test_swapdb_touches_watched_keys(same: Callable[..., object],
                                     other: Callable[..., object]) -> None:
    same("SET", "x", "30")  # exists: SWAPDB "deletes" it
    same("WATCH", "x")
    other("SWAPDB", "0", "1")
    same("MULTI")
    same("PING")
    assert same("EXEC") is None
    same("FLUSHALL")
    same("SELECT", "1")
    same("SET", "y", "30")
    same("SELECT", "0")
    same("WATCH", "y")  # missing: SWAPDB "creates" it
    other("SWAPDB", "0", "1")
    same("MULTI")
    same("PING")
    assert same("EXEC") is None
    same("WATCH", "nothing")  # missing on both sides: untouched
    other("SWAPDB", "0", "1")
    same("MULTI")
    same("PING")
    assert same("EXEC") == [b"PONG"]


def test_expire_touches_watched_key(same: Callable[..., object]) -> None:
    same("SET", "x", "foo")
    same("WATCH", "x")
    same("EXPIRE", "x", "10")
    same("MULTI")
    same("PING")
    assert same("EXEC") is None


def test_watches_end_with_exec_discard_and_unwatch(same: Callable[..., object],
                                                   other: Callable[..., object]) -> None:
    for finish in ("EXEC", "DISCARD"):
        same("SET", "x", "30")
        same("WATCH", "x")
        same("MULTI")
        same("PING")
        same(finish)
        other("SET", "x", "40")
        same("MULTI")
        same("PING")
        assert same("EXEC") == [b"PONG"]
    same("WATCH", "x")
    other("SET", "x", "50")
    same("UNWATCH")
    same("MULTI")
    same("PING")
    assert same("EXEC") == [b"PONG"]
    # After a failed EXEC the key is no longer watched either.
    same("WATCH", "x")
    other("SET", "x", "60")
    same("MULTI")
    same("PING")
    assert same("EXEC") is None
    other("SET", "x", "70")
    same("MULTI")
    same("PING")
    assert same("EXEC") == [b"PONG"]


def test_discard_clears_the_dirty_flag(same: Callable[..., object],
                                       other: Callable[..., object]) -> None:
    same("WATCH", "x")
    other("SET", "x", "10")
    same("MULTI")
    same("DISCARD")
    same("MULTI")
    same("INCR", "x")
    assert same("EXEC") == [11]


def test_exec_aborted_in_resp3_is_null(kvrepl_server: object, redis_server: object,
                                       r: redis.Redis, real: redis.Redis) -> None:
    for server, plain in ((kvrepl_server, r), (redis_server, real)):
        client = server.client(protocol=3)  # type: ignore[attr-defined]
        client.execute_command("WATCH", "x")
        plain.execute_command("SET", "x", "1")
        client.execute_command("MULTI")
        client.execute_command("PING")
        assert client.execute_command("EXEC") is None
        client.close()


def test_pipelined_transaction_through_redis_py(r: redis.Redis, real: redis.Redis) -> None:
    results = []
    for client in (r, real):
        with client.pipeline(transaction=True) as pipe:
            pipe.set("a", "1").incr("a").lpush("a", "x").get("a")
            results.append(pipe.execute(raise_on_error=False))
    ours, theirs = results
    assert ours[:2] == theirs[:2] == [True, 2]
    assert str(ours[2]) == str(theirs[2])
    assert ours[3] == theirs[3] == b"2"


def test_optimistic_locking_with_redis_py(r: redis.Redis, kvrepl_server: object) -> None:
    second = kvrepl_server.client()  # type: ignore[attr-defined]
    r.set("counter", "1")
    with r.pipeline() as pipe:
        pipe.watch("counter")
        value = int(pipe.get("counter"))
        second.set("counter", "100")
        pipe.multi()
        pipe.set("counter", value + 1)
        with pytest.raises(redis.WatchError):
            pipe.execute()
    assert r.get("counter") == b"100"
    second.close()


# -- in-process: expiry with a clock the test moves ---------------------------------------------


@pytest.fixture
def clock(engine: Engine) -> list[float]:
    now = [1_700_000_000.0]
    engine.keyspace.clock = lambda: now[0]
    return now


@pytest.fixture
def run2(engine: Engine) -> Run:
    """A second client of the in-process engine."""
    second = engine.new_session()

    def execute(*args: object) -> object:
        return engine.execute(second, argv(*args))

    return execute


def _transaction(run: Run) -> object:
    assert run("MULTI") == OK
    assert run("PING") == QUEUED
    return run("EXEC")


def test_exec_fails_on_lazy_expired_watched_key(run: Run, clock: list[float]) -> None:
    run("SET", "key", "1", "PX", "100")
    run("WATCH", "key")
    clock[0] += 0.101
    run("MULTI")
    run("INCR", "key")
    assert run("EXEC") is NULL_ARRAY


def test_watched_key_deleted_by_active_expiry(run: Run, clock: list[float],
                                              engine: Engine) -> None:
    run("SET", "x", "foo")
    run("EXPIRE", "x", "1")
    run("WATCH", "x")
    clock[0] += 2
    assert expire_cycle(engine) == 1
    assert _transaction(run) is NULL_ARRAY


def test_watch_stale_key_does_not_fail_exec(run: Run, clock: list[float]) -> None:
    run("SET", "x", "foo", "PX", "1")
    clock[0] += 0.002
    run("WATCH", "x")
    assert _transaction(run) == [b"PONG"]


def test_deleting_a_watched_stale_key_does_not_fail_exec(run: Run, clock: list[float],
                                                         engine: Engine) -> None:
    run("SET", "x", "foo", "PX", "1")
    run("SET", "y", "foo", "PX", "1")
    clock[0] += 0.002
    run("WATCH", "x", "y")
    assert run("EXISTS", "x") == 0  # lazy expiry deletes it
    assert expire_cycle(engine) == 1  # active expiry deletes y
    assert _transaction(run) == [b"PONG"]


def test_flushdb_while_watching_stale_key_does_not_fail_exec(run: Run,
                                                             clock: list[float]) -> None:
    run("SET", "x", "foo", "PX", "1")
    clock[0] += 0.002
    run("WATCH", "x")
    run("FLUSHDB")
    assert _transaction(run) == [b"PONG"]


def test_rewriting_a_watched_stale_key_fails_exec(run: Run, run2: Run,
                                                  clock: list[float]) -> None:
    run("SET", "x", "foo", "PX", "1")
    clock[0] += 0.002
    run("WATCH", "x")
    run2("SET", "x", "bar")
    assert _transaction(run) is NULL_ARRAY
    # Deleted first, then written: the deletion is no change, the write is one.
    run("SET", "x", "foo", "PX", "1")
    clock[0] += 0.002
    run("WATCH", "x")
    assert run2("EXISTS", "x") == 0
    run2("SET", "x", "bar")
    assert _transaction(run) is NULL_ARRAY


@pytest.mark.parametrize(("db0", "db1", "changed"), [
    (None, "stale", False),  # a stale key replaced by nothing: no change
    ("stale", None, False),  # a missing key replaced by a stale key: no change
    ("stale", "stale", False),  # a stale key replaced by another stale key: no change
    ("live", "stale", True),  # a stale key replaced by a live one: a change
])
def test_swapdb_and_stale_keys(run: Run, run2: Run, clock: list[float], db0: str | None,
                               db1: str | None, changed: bool) -> None:
    """WATCH x in db 1, another client swaps dbs 0 and 1."""
    for db, kind in ((0, db0), (1, db1)):
        if kind is not None:
            run("SELECT", db)
            run("SET", "x", f"value{db}", *(("PX", "1") if kind == "stale" else ()))
    clock[0] += 0.002
    run("SELECT", "1")
    run("WATCH", "x")
    run2("SWAPDB", "0", "1")
    assert _transaction(run) == (NULL_ARRAY if changed else [b"PONG"])


def test_reset_and_disconnect_drop_stale_watches(engine: Engine, run: Run,
                                                 session: Session, clock: list[float]) -> None:
    run("SET", "x", "foo", "PX", "1")
    clock[0] += 0.002
    run("WATCH", "x")
    assert engine.execute(session, [b"RESET"]) == b"RESET"
    assert not session.watched
    run("SET", "x", "foo", "PX", "1")
    clock[0] += 0.002
    run("WATCH", "x")
    run("UNWATCH")
    run("SET", "x", "new")
    assert _transaction(run) == [b"PONG"]


def test_transactions_propagate_atomically(engine: Engine, run: Run) -> None:
    stream: list[tuple[int, list[bytes]]] = []
    engine.propagate_listeners.append(lambda db, argv: stream.append((db, argv)))
    run("MULTI")
    run("SET", "a", "1")
    run("EXEC")
    assert stream == [(0, [b"SET", b"a", b"1"])]
    stream.clear()
    run("MULTI")
    run("SET", "a", "2")
    run("GET", "a")
    run("PUBLISH", "ch", "m")
    run("EXEC")
    assert [argv for _, argv in stream] == [
        [b"MULTI"], [b"SET", b"a", b"2"], [b"PUBLISH", b"ch", b"m"], [b"EXEC"]]


def test_a_transaction_runs_at_one_instant(engine: Engine, run: Run) -> None:
    """Redis's fixed_time_expire: the clock is read once for the whole EXEC, so a key set
    with a 1 ms TTL is still there for the next queued command, however long it took."""
    now = [1_700_000_000.0]

    def clock() -> float:
        now[0] += 0.005  # every reading of the clock is 5 ms later
        return now[0]

    engine.keyspace.clock = clock
    run("MULTI")
    run("SET", "k", "v", "PX", "1")
    run("GET", "k")
    run("PTTL", "k")
    assert run("EXEC") == [OK, b"v", 1]
    assert run("GET", "k") is None


def test_errors_are_reply_errors(run: Run) -> None:
    run("MULTI")
    with pytest.raises(ReplyError, match="MULTI calls can not be nested"):
        run("MULTI")
    with pytest.raises(ReplyError, match="WATCH inside MULTI is not allowed"):
        run("WATCH", "x")
    run("DISCARD")
    with pytest.raises(ReplyError, match="^ERR EXEC without MULTI$"):
        run("EXEC")
    with pytest.raises(ReplyError, match="^ERR DISCARD without MULTI$"):
        run("DISCARD")


def test_refused_writes_inside_multi_abort_exec_as_redis_does() -> None:
    """On a read-only replica a write is refused when MULTI queues it (Redis checks before
    queueing), so EXEC aborts instead of running it; reads still queue."""
    from support import RedisServer, ThreadedServer, free_port

    from kvrepl.config import Config

    nowhere = free_port()  # a master that never answers: both stay read-only replicas
    real = RedisServer("--replicaof", "127.0.0.1", str(nowhere))
    ours = ThreadedServer(Config(save=(), replicaof=("127.0.0.1", nowhere))).start()
    try:
        outcomes = []
        for server in (ours, real):
            client = server.client()
            seen = []
            for args in (("MULTI",), ("GET", "k"), ("SET", "k", "v"), ("EXEC",), ("GET", "k")):
                try:
                    seen.append(client.execute_command(*args))
                except redis.ResponseError as err:
                    seen.append(str(err))
            client.close()
            outcomes.append(seen)
        assert outcomes[0] == outcomes[1]
        assert "read only replica" in outcomes[0][2] and "discarded" in outcomes[0][3]
    finally:
        ours.stop()
        real.stop()


# -- WATCH sees only the keys a command modifies (issue #11) ----------------------------------

_SOURCES = (
    ("SADD", "s1", "a", "b"), ("SADD", "s2", "b", "c"), ("SADD", "sdst", "z"),
    ("ZADD", "z1", "1", "a", "2", "b"), ("ZADD", "z2", "3", "b"),
    ("RPUSH", "l1", "3", "1", "2"), ("RPUSH", "l2", "x"),
    ("MSET", "w_1", "9", "w_2", "8", "w_3", "7", "o_1", "x", "str", "v"), ("PFADD", "hll", "a"),
)


@pytest.mark.parametrize(("command", "watched"), [
    # read-only sources: a read is no change
    (("SUNIONSTORE", "dst", "s1", "s2"), "s1"),
    (("SINTERSTORE", "dst", "s1", "s2"), "s2"),
    (("SDIFFSTORE", "dst", "s1", "s2"), "s1"),
    (("ZUNIONSTORE", "dst", "2", "z1", "z2"), "z2"),
    (("ZINTERSTORE", "dst", "2", "z1", "z2", "WEIGHTS", "1", "2"), "z1"),
    (("ZDIFFSTORE", "dst", "2", "z1", "z2"), "z1"),
    (("ZRANGESTORE", "dst", "z1", "0", "-1"), "z1"),
    (("SORT", "l1", "STORE", "dst"), "l1"),
    (("SORT", "l1", "BY", "w_*", "STORE", "dst"), "w_1"),
    (("SORT", "l1", "BY", "w_*", "GET", "o_*", "STORE", "dst"), "o_1"),
    (("COPY", "str", "dst"), "str"),
    (("COPY", "str", "dst", "DB", "1"), "dst"),  # dst of db 0 is not the one written
    # destinations and read-write keys: a change
    (("SUNIONSTORE", "dst", "s1", "s2"), "dst"),
    (("SUNIONSTORE", "s1", "s1", "s2"), "s1"),  # the source is also the destination
    (("SINTERSTORE", "sdst", "s1", "nosuch"), "sdst"),  # an empty result deletes it
    (("SINTERSTORE", "dst", "s1", "nosuch"), "dst"),  # ... and a missing one stays missing
    (("ZRANGESTORE", "dst", "z1", "0", "-1"), "dst"),
    (("SORT", "l1", "STORE", "dst"), "dst"),
    (("COPY", "str", "dst"), "dst"),
    (("LMOVE", "l1", "l2", "LEFT", "RIGHT"), "l1"),
    (("LMOVE", "l1", "l2", "LEFT", "RIGHT"), "l2"),
    (("BLMOVE", "l1", "l2", "LEFT", "RIGHT", "0"), "l2"),
    (("RPOPLPUSH", "l1", "l1"), "l1"),
    (("SMOVE", "s1", "s2", "a"), "s1"),
    (("SMOVE", "s1", "s2", "a"), "s2"),
    (("RENAME", "str", "fresh"), "str"),
    (("RENAME", "str", "fresh"), "fresh"),
    (("RENAMENX", "str", "s1"), "s1"),  # refused: nothing changes
    (("MOVE", "str", "1"), "str"),
    # PFMERGE with no source: its key specs give no key (COMMAND GETKEYS refuses it), yet
    # Redis signals the destination, created or not (found by the differential hunt)
    (("PFMERGE", "hll"), "hll"),
    (("PFMERGE", "fresh"), "fresh"),
    (("PFMERGE", "hll", "hll"), "hll"),
    # keys a command may write but this time does not
    (("SMOVE", "s1", "s2", "b"), "s2"),  # already a member there
    (("LMPOP", "2", "l1", "l2", "LEFT"), "l2"),  # only l1 is popped
    (("BLMPOP", "0", "2", "l1", "l2", "LEFT"), "l2"),
    (("ZMPOP", "2", "z1", "z2", "MIN"), "z2"),
    (("BZMPOP", "0", "2", "z1", "z2", "MAX"), "z2"),
    (("BLPOP", "l1", "l2", "0"), "l2"),
    (("BRPOP", "nosuch", "l2", "0"), "l2"),
    (("BZPOPMIN", "z1", "z2", "0"), "z2"),
    (("DEL", "str", "nosuch"), "nosuch"),
    (("UNLINK", "nosuch", "str", "nosuch"), "str"),
    (("DEL", "str", "str"), "str"),
], ids=lambda value: " ".join(value) if isinstance(value, tuple) else value)
def test_watch_fires_only_for_keys_the_command_modifies(same: Callable[..., object],
                                                        other: Callable[..., object],
                                                        command: tuple[str, ...],
                                                        watched: str) -> None:
    """WATCH a key, let another client run a write that names it, EXEC: nil exactly when
    redis-server's answer is nil (signalModifiedKey only for what the command changed)."""
    for seed in _SOURCES:
        other(*seed)
    same("WATCH", watched)
    other(*command)
    same("MULTI")
    same("PING")
    same("EXEC")
    same("FLUSHALL")
