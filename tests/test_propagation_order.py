"""Every write reaches the replication stream in the order it happened (issue #11).

That includes the deletes no command issued: a key found expired by an embedded read, by a
read in a client's pipeline, or by active expiry. Outside a command the DEL is propagated at
once; inside one it goes ahead of the command's own write, the two wrapped in MULTI/EXEC
(Redis 7.0's deleteExpiredKeyAndPropagate and propagatePendingCommands).

The nodes run in process with a keyspace clock the test moves, and under trio's MockClock so
that the cron's active expiry never runs behind the test's back: expiry happens exactly
where a test asks for it.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import pack, reply_end

import kvrepl
from kvrepl.commands.plain import PlainLane
from kvrepl.errors import ReplyError
from kvrepl.server.cron import expire_cycle
from kvrepl.store.digest import digest

START = 1_700_000_000.0
Stream = list[tuple[int, list[bytes]]]


class Clock:
    """The keyspace clock of the nodes under test: seconds, moved by the test only."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now

    def advance_ms(self, ms: int) -> None:
        self.now += ms / 1000


def _run(test: Callable[..., object], *args: object) -> None:
    """Run ``test(*args)`` under a MockClock: trio's time stands still, so the nodes' cron
    (active expiry) never fires unless a test calls it."""
    trio.run(test, *args, clock=trio.testing.MockClock())


def _recording(node: kvrepl.Node, clock: Clock) -> Stream:
    """Give ``node`` the test's clock; return the list its propagated writes go to."""
    node.engine.keyspace.clock = clock
    seen: Stream = []
    node.engine.propagate_listeners.append(lambda db, argv: seen.append((db, list(argv))))
    return seen


def _same_data(master: kvrepl.Node, replica: kvrepl.Node) -> None:
    """Same keys, values and expiry times in every db."""
    assert digest(replica.engine.keyspace) == digest(master.engine.keyspace)
    for ours, theirs in zip(master.engine.keyspace.dbs, replica.engine.keyspace.dbs,
                            strict=True):
        assert theirs.expires == ours.expires, f"db {ours.id}"


# -- the cases of the issue --------------------------------------------------------------------


def test_key_rewritten_after_an_embedded_read_expired_it_lives_on_the_replica() -> None:
    """The report: the DEL of the embedded read's lazy expiry went out after the SET."""

    async def main() -> None:
        clock = Clock()
        async with kvrepl.Master() as master, kvrepl.Replica(follow=master) as replica:
            replica.engine.keyspace.clock = clock
            seen = _recording(master, clock)
            await replica.wait_synced()
            master.set(b"k", b"old", px=1)
            clock.advance_ms(2)
            assert master.get(b"k") is None  # expired: the read deletes it
            master.set(b"k", b"new")
            await replica.wait_synced()
            assert master.get(b"k") == b"new"
            assert replica.get(b"k") == b"new"
            assert [argv for _, argv in seen] == [
                [b"SET", b"k", b"old", b"PXAT", b"%d" % (START * 1000 + 1)],
                [b"DEL", b"k"], [b"SET", b"k", b"new"]]
            _same_data(master, replica)

    _run(main)


def test_outside_a_command_the_del_goes_out_at_once() -> None:
    """An embedded read and active expiry each propagate their DEL before returning, one
    DEL per key, never wrapped in MULTI."""

    async def main() -> None:
        clock = Clock()
        async with kvrepl.Master() as master:
            seen = _recording(master, clock)
            for key in (b"a", b"b", b"c"):
                master.set(key, b"v", px=5)
            del seen[:]
            clock.advance_ms(10)
            assert master.get(b"a") is None
            assert seen == [(0, [b"DEL", b"a"])]
            assert expire_cycle(master.engine) == 2
            assert sorted(argv for _, argv in seen[1:]) == [[b"DEL", b"b"], [b"DEL", b"c"]]
            assert master.engine.stats.expired_keys == 3

    _run(main)


def test_inside_a_command_the_del_goes_ahead_of_its_write() -> None:
    """A command that finds its key expired: DEL then its own write, atomically; in a
    transaction the DEL takes its place among the transaction's writes."""

    async def main() -> None:
        clock = Clock()
        async with kvrepl.Master() as master:
            seen = _recording(master, clock)
            master.set(b"n", 5, px=5)
            master.set(b"t", b"v", px=5)
            del seen[:]
            clock.advance_ms(10)
            assert master.incr(b"n") == 1
            assert [argv for _, argv in seen] == [
                [b"MULTI"], [b"DEL", b"n"], [b"INCRBY", b"n", b"1"], [b"EXEC"]]
            del seen[:]
            master.execute_command("MULTI")
            master.execute_command("SET", "x", "1")
            master.execute_command("GET", "t")
            master.execute_command("SET", "y", "2")
            assert master.execute_command("EXEC") == [True, None, True]
            assert [argv for _, argv in seen] == [
                [b"MULTI"], [b"SET", b"x", b"1"], [b"DEL", b"t"], [b"SET", b"y", b"2"],
                [b"EXEC"]]

    _run(main)


def test_a_replica_read_hides_an_expired_key_and_waits_for_the_masters_del() -> None:
    async def main() -> None:
        clock = Clock()
        async with kvrepl.Master() as master, kvrepl.Replica(follow=master) as replica:
            _recording(master, clock)
            replica_seen = _recording(replica, clock)
            await replica.wait_synced()
            master.set(b"k", b"v", px=5)
            await replica.wait_synced()
            del replica_seen[:]
            clock.advance_ms(10)
            assert replica.get(b"k") is None
            assert replica.execute_command("EXISTS", "k") == 0
            assert b"k" in replica.engine.keyspace.dbs[0].data  # hidden, not deleted
            assert replica_seen == []  # and nothing propagated by the replica itself
            assert expire_cycle(replica.engine) == 0  # a replica never expires keys
            assert master.get(b"k") is None
            await replica.wait_synced()
            assert b"k" not in replica.engine.keyspace.dbs[0].data
            assert replica_seen == [(0, [b"DEL", b"k"])]

    _run(main)


def test_a_blocked_client_served_later_is_a_unit_of_its_own() -> None:
    """BLMOVE woken by an embedded LPUSH finds its destination expired: the LPUSH goes out,
    then the re-run's DEL and its own write, together."""

    async def main() -> None:
        clock = Clock()
        async with kvrepl.Master() as master, kvrepl.Replica(follow=master) as replica:
            replica.engine.keyspace.clock = clock
            seen = _recording(master, clock)
            await replica.wait_synced()
            master.set(b"dst", b"old", px=5)
            ours, theirs = trio.testing.memory_stream_pair()
            master._nursery.start_soon(master.server.handle_stream, theirs)
            client = _Pipe(ours)
            async with trio.open_nursery() as nursery:
                answers: list[bytes] = []

                async def blocked() -> None:
                    answers.append(await client.send(
                        [[b"BLMOVE", b"src", b"dst", b"LEFT", b"LEFT", b"0"]]))

                nursery.start_soon(blocked)
                await trio.testing.wait_all_tasks_blocked()
                assert master.server.blocking.waiting  # the client waits on src
                clock.advance_ms(10)
                del seen[:]
                assert master.lpush(b"src", b"x") == 1
            assert answers == [b"$1\r\nx\r\n"]
            assert [argv for _, argv in seen] == [
                [b"LPUSH", b"src", b"x"],
                [b"MULTI"], [b"DEL", b"dst"], [b"LMOVE", b"src", b"dst", b"left", b"left"],
                [b"EXEC"]]
            await ours.aclose()
            await replica.wait_synced()
            assert replica.execute_command("LRANGE", "dst", 0, -1) == [b"x"]
            _same_data(master, replica)

    _run(main)


# -- random histories --------------------------------------------------------------------------

KEYS = (b"k0", b"k1")
_key = st.sampled_from(KEYS)
_value = st.sampled_from((b"a", b"b", b"7"))
_ttl = st.integers(1, 30)


def _templates(key: st.SearchStrategy[bytes]) -> st.SearchStrategy[list[bytes]]:
    """Commands of a client or of execute_command: reads that may expire a key, writes of
    several types (WRONGTYPE included), TTLs set and cleared, multi-key writes."""
    return st.one_of(
        st.tuples(st.just(b"GET"), key),
        st.tuples(st.just(b"SET"), key, _value),
        st.tuples(st.just(b"SET"), key, _value, st.just(b"PX"), _ttl.map(b"%d".__mod__)),
        st.tuples(st.just(b"SET"), key, _value, st.just(b"NX")),
        st.tuples(st.sampled_from((b"INCR", b"DEL", b"EXISTS", b"PERSIST", b"GETDEL",
                                   b"LPOP", b"TYPE", b"PTTL")), key),
        st.tuples(st.sampled_from((b"LPUSH", b"SADD", b"APPEND")), key, _value),
        st.tuples(st.just(b"PEXPIRE"), key, _ttl.map(b"%d".__mod__)),
        st.tuples(st.sampled_from((b"SUNIONSTORE", b"RPOPLPUSH")), key, key),
        st.tuples(st.just(b"COPY"), key, key, st.just(b"REPLACE")),
        st.tuples(st.just(b"MGET"), key, key),
    ).map(list)


_client_command = st.one_of(_templates(_key), _templates(_key),
                            st.sampled_from(([b"SELECT", b"1"], [b"SELECT", b"0"])))
_ARGS: dict[str, st.SearchStrategy[tuple]] = {
    "get": st.tuples(_key),
    "set": st.tuples(_key, _value),
    "set_px": st.tuples(_key, _value, _ttl),
    "command": st.tuples(_templates(_key)),
    "multi": st.tuples(st.lists(_templates(_key), min_size=1, max_size=4)),
    "pipeline": st.tuples(st.lists(
        st.one_of(_client_command, st.tuples(st.just(b"GET"), _key).map(list),
                  st.tuples(st.just(b"SET"), _key, _value).map(list)),
        min_size=1, max_size=8)),
    "client_multi": st.tuples(st.lists(_templates(_key), min_size=1, max_size=3)),
    "active_expiry": st.tuples(),
    "replica_read": st.tuples(_key),
}
# Embedded reads and writes and TTLs come often, and time passes before most operations:
# together they make the expiries whose DELs must find their place in the stream.
_KINDS = ("get",) * 4 + ("set",) * 3 + ("set_px",) * 3 + tuple(_ARGS)
_op = st.tuples(
    st.sampled_from((0, 0, 2, 10, 40)),
    st.sampled_from(_KINDS).flatmap(lambda kind: _ARGS[kind].map(lambda args: (kind, *args))),
)


class _Pipe:
    """A client of the master's server over an in-memory stream: the server's own request
    loop (parser, plain lane, general path), with no socket."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buf = b""

    async def send(self, commands: list[list[bytes]]) -> bytes:
        await self.stream.send_all(b"".join(pack(*argv) for argv in commands))
        pos = 0
        for _ in commands:
            while (end := reply_end(self.buf, pos)) is None:
                self.buf += await self.stream.receive_some(65536)
            pos = end
        out, self.buf = self.buf[:pos], self.buf[pos:]
        return out


def _embedded(call: Callable[[], object]) -> object:
    try:
        return call()
    except ReplyError as err:
        return ("error", err.message)


async def _history(ops: list[tuple], out: list[tuple]) -> None:
    """Apply ``ops`` to a master followed by an in-process replica; check that the replica
    holds what the master holds; append to ``out`` the replies, the propagated stream and
    the master's digest."""
    clock = Clock()
    replies: list[object] = []
    async with kvrepl.Master() as master, kvrepl.Replica(follow=master) as replica:
        replica.engine.keyspace.clock = clock
        seen = _recording(master, clock)
        await replica.wait_synced()
        ours, theirs = trio.testing.memory_stream_pair()
        master._nursery.start_soon(master.server.handle_stream, theirs)
        pipe = _Pipe(ours)
        for elapsed_ms, op in ops:
            clock.advance_ms(elapsed_ms)
            kind = op[0]
            if kind == "get":
                replies.append(_embedded(lambda op=op: master.get(op[1])))
            elif kind == "set":
                replies.append(master.set(op[1], op[2]))
            elif kind == "set_px":
                replies.append(master.set(op[1], op[2], px=op[3]))
            elif kind == "command":
                replies.append(_embedded(lambda op=op: master.execute_command(*op[1])))
            elif kind == "multi":
                master.execute_command("MULTI")
                for argv in op[1]:
                    master.execute_command(*argv)
                replies.append(_embedded(lambda: master.execute_command("EXEC")))
            elif kind == "pipeline":
                replies.append(await pipe.send(op[1]))
            elif kind == "client_multi":
                replies.append(await pipe.send([[b"MULTI"], *op[1], [b"EXEC"]]))
            elif kind == "replica_read":
                # A replica hides what has expired and deletes nothing; how far it has got
                # with the stream is up to the scheduler, so its answer is not compared.
                _embedded(lambda op=op: replica.get(op[1]))
                replica.execute_command("EXISTS", op[1])
            else:
                replies.append(expire_cycle(master.engine))
            # Between units of work nothing waits to be propagated.
            assert master.engine.depth == 0 and not master.engine._pending
        await ours.aclose()
        await replica.wait_synced()
        _same_data(master, replica)
        out.append((replies, seen, digest(master.engine.keyspace)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_op, min_size=1, max_size=30))
def test_random_histories_replicate_exactly_with_the_lane_open_or_closed(ops: list[tuple]
                                                                          ) -> None:
    """Embedded calls, client pipelines, transactions, TTLs, time passing and active expiry
    in any order: the replica ends with the master's data, and closing the plain lane
    changes no reply, no propagated write and no data."""
    results: list[tuple] = []
    for lane_open in (True, False):
        with pytest.MonkeyPatch.context() as patch:
            if not lane_open:  # everything through the general path, the reference
                for name in ("open_for", "set", "open_for_master_link"):
                    patch.setattr(PlainLane, name, lambda *args: False)
            _run(_history, ops, results)
    (open_replies, open_stream, open_digest), (replies, stream, closed_digest) = results
    assert open_replies == replies
    assert open_stream == stream
    assert open_digest == closed_digest
