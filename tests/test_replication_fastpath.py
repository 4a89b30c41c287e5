"""The replica's fast paths give exactly what the general ones give.

The stream parser (hiredis plus a canonical-encoding check) against the general request
parser that sized each command by the bytes it consumed (what the replica used before), on
valid, odd and malformed streams cut anywhere; and the batch applier's offsets,
acknowledgements and forwarded bytes around the master's transactions.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvrepl.commands.core import Engine
from kvrepl.errors import ProtocolError
from kvrepl.protocol.parser import NEED_DATA, RequestParser
from kvrepl.replication.handshake import ReplicaProtocol, State, StreamBatch
from kvrepl.replication.master import MasterReplication
from kvrepl.replication.replica import ReplicaOf
from kvrepl.replication.stream import encode_command


class Reference:
    """The general path: one request parser, each command sized by the bytes consumed."""

    def __init__(self, max_bulk_len: int) -> None:
        self.parser = RequestParser(max_bulk_len, from_master=True)  # no inline commands
        self.fed = self.counted = 0
        self.raw = bytearray()

    def receive(self, data: bytes) -> list[tuple[list[bytes], int, bytes]]:
        out = []
        self.parser.feed(data)
        self.fed += len(data)
        self.raw += data
        while True:
            request = self.parser.next_request()
            if request is NEED_DATA:
                return out
            consumed = self.fed - self.parser.buffered
            size = consumed - self.counted
            out.append((request, size, bytes(self.raw[:size])))
            del self.raw[:size]
            self.counted = consumed


def connected(max_bulk_len: int) -> ReplicaProtocol:
    protocol = ReplicaProtocol(listening_port=6380, max_bulk_len=max_bulk_len)
    protocol.state = State.CONNECTED
    return protocol


def outcome(receive, chunks):
    """What each chunk gives, up to the first error (its type and message)."""
    results = []
    for chunk in chunks:
        try:
            results.append(receive(chunk))
        except (ProtocolError, Exception) as err:  # noqa: B014 - the type is compared
            results.append((type(err).__name__, str(err)))
            break
    return results


def fast_receive(protocol: ReplicaProtocol):
    def receive(data: bytes) -> list[tuple[list[bytes], int, bytes]]:
        out = []
        for event in protocol.receive_data(data):
            assert isinstance(event, StreamBatch)
            assert sum(event.sizes) == len(event.raw)
            out += [(c.argv, c.size, c.raw) for c in event.commands()]
        return out
    return receive


ARG = st.binary(max_size=12) | st.sampled_from(
    [b"\r\n", b"+OK", b"$3", b"*1", b"\r\n$1\r\n", b"=", b"(", b"|", b"~", b">", b"v" * 40])
CANONICAL = st.lists(ARG, min_size=1, max_size=5).map(encode_command)
ODD = st.sampled_from([
    b"PING\r\n", b"SET a b\n", b"\r\n", b"\n", b'SET "a b" c\r\n', b"*0\r\n", b"*-1\r\n",
    b"*1\r\n$-1\r\n", b"*2\r\n+OK\r\n$1\r\na\r\n", b"*1\r\n:5\r\n", b"*1\r\n$03\r\nabc\r\n",
    b"*01\r\n$1\r\na\r\n", b"*1\r\n*1\r\n$1\r\na\r\n", b"~1\r\n$1\r\na\r\n",
    b">1\r\n$1\r\na\r\n", b"|1\r\n+a\r\n+b\r\n", b"*1\r\n=8\r\ntxt:abcd\r\n", b"*1\r\n(12\r\n",
    b"%1\r\n+a\r\n+b\r\n", b"*1\r\n$3\r\nabcXY", b"*2\r\n$1\r\na\r\n$1\r\nbXY", b"$3\r\nabc\r\n",
    b"+OK\r\n", b"*1\r\n$+3\r\nabc\r\n", b"*1 \r\n$1\r\na\r\n", b"*1\r\n$1 \r\na\r\n",
    b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$20\r\n" + b"x" * 20 + b"\r\n", b"*1\r\n$4\r\n\r\n\r\n\r\n",
])
STREAM = st.lists(CANONICAL | ODD | st.binary(max_size=8), max_size=25).map(b"".join)


@settings(max_examples=400, deadline=None)
@given(STREAM, st.lists(st.integers(0, 400), max_size=8), st.sampled_from([8, 64, 1 << 20]))
def test_fast_stream_parsing_matches_the_general_parser(stream, cuts, max_bulk_len):
    points = sorted({min(c, len(stream)) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0] + points, points + [len(stream)], strict=True)]
    chunks = [c for c in chunks if c]
    expected = outcome(Reference(max_bulk_len).receive, chunks)
    protocol = connected(max_bulk_len)
    assert outcome(fast_receive(protocol), chunks) == expected
    if not expected or not isinstance(expected[-1], tuple):
        reference = Reference(max_bulk_len)
        for chunk in chunks:
            reference.receive(chunk)
        assert protocol.stream_bytes_pending() == len(reference.raw)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(ARG, min_size=1, max_size=4), min_size=1, max_size=40),
       st.integers(1, 64))
def test_canonical_streams_in_any_pieces(commands, piece):
    stream = b"".join(map(encode_command, commands))
    protocol = connected(1 << 20)
    got = []
    for start in range(0, len(stream), piece):
        got += fast_receive(protocol)(stream[start:start + piece])
    assert [argv for argv, _, _ in got] == commands
    assert b"".join(raw for _, _, raw in got) == stream


def test_big_argument_split_over_many_pieces():
    value = bytes(range(256)) * 2000
    stream = encode_command([b"SET", b"k", value]) + encode_command([b"PING"])
    protocol = connected(1 << 30)
    got = []
    for start in range(0, len(stream), 1000):
        got += fast_receive(protocol)(stream[start:start + 1000])
        assert protocol.stream_bytes_pending() <= len(stream)
    assert [argv for argv, _, _ in got] == [[b"SET", b"k", value], [b"PING"]]


def test_protocol_error_surfaces_when_the_general_parser_sees_it():
    protocol = connected(1 << 20)
    receive = fast_receive(protocol)
    assert receive(encode_command([b"SET", b"a", b"b"])) == [
        ([b"SET", b"a", b"b"], 27, encode_command([b"SET", b"a", b"b"]))]
    # Incomplete, but already wrong: the general parser refuses it at once.
    with pytest.raises(ProtocolError, match="expected '\\$', got '\\+'"):
        receive(b"*2\r\n+OK")


# -- the batch applier ---------------------------------------------------------------------

def follower() -> ReplicaOf:
    engine = Engine()
    replication = MasterReplication(engine)
    replication.create_backlog()
    replica = ReplicaOf(engine, replication, connect=None, describe=("in-process", 0))
    replication.propagating = False
    replica._link_up()
    return replica


def batch(*commands: list[bytes]) -> StreamBatch:
    encoded = [encode_command(c) for c in commands]
    return StreamBatch([list(c) for c in commands], [len(e) for e in encoded], b"".join(encoded))


def test_transaction_split_over_batches_moves_the_offset_at_exec():
    replica = follower()
    start = replica.reploff
    first = batch([b"SET", b"a", b"1"], [b"MULTI"], [b"SET", b"b", b"2"])
    second = batch([b"SET", b"c", b"3"], [b"EXEC"], [b"SET", b"d", b"4"])
    assert replica._apply_batch(first) == []
    before_multi = start + first.sizes[0]
    assert replica.reploff == before_multi
    assert replica.engine.keyspace.dbs[0].data == {b"a": b"1"}  # b is queued
    # Only applied bytes reach the backlog (and sub-replicas), as in Redis.
    assert replica.replication.master_repl_offset == before_multi
    replica._apply_batch(second)
    end = start + len(first.raw) + len(second.raw)
    assert replica.reploff == replica.read_reploff == end
    assert replica.replication.backlog.read_from(start + 1) == first.raw + second.raw
    assert replica.engine.keyspace.dbs[0].data == {
        b"a": b"1", b"b": b"2", b"c": b"3", b"d": b"4"}


def test_getack_is_answered_with_the_offset_before_it():
    replica = follower()
    start = replica.reploff
    work = batch([b"SET", b"a", b"1"], [b"REPLCONF", b"GETACK", b"*"], [b"PING"],
                 [b"MULTI"], [b"REPLCONF", b"GETACK", b"*"])
    acks = replica._apply_batch(work)
    assert acks == [start + work.sizes[0], start + sum(work.sizes[:3])]


def test_link_loss_inside_a_transaction_drops_it():
    replica = follower()
    start = replica.reploff
    replica._apply_batch(batch([b"MULTI"], [b"SET", b"a", b"1"]))
    replica._link_lost()
    assert replica.session.multi is None
    assert replica.reploff == replica.read_reploff == start
    # The master sends the transaction again from our offset.
    replica._link_up()
    replica._apply_batch(batch([b"MULTI"], [b"SET", b"a", b"1"], [b"EXEC"]))
    assert replica.engine.keyspace.dbs[0].data == {b"a": b"1"}
    assert replica.replication.master_repl_offset == replica.reploff


def test_direct_path_matches_execute():
    """Commands run straight through Engine.call give what Engine.execute gives: replies
    ignored, but data, errors counted, stats and arity checks alike."""
    commands = [[b"SET", b"a", b"1"], [b"set", b"b", b"2", b"PX", b"100000"], [b"SET", b"a"],
                [b"INCR", b"a"], [b"SELECT", b"3"], [b"RPUSH", b"l", b"x", b"y"],
                [b"INCR", b"l"], [b"SET", b"c", b"3", b"NX", b"XX"], [b"DEL", b"a", b"zz"],
                [b"NOSUCH", b"x"], [b"select", b"0"], [b"SET", b"a", b"2"]] * 2
    replica = follower()
    replica._apply_batch(batch(*commands))
    engine = Engine()
    session = engine.new_session()
    session.is_master = True
    for argv in commands:
        engine.execute(session, argv)
    mine = replica.engine
    assert [db.data for db in mine.keyspace.dbs] == [db.data for db in engine.keyspace.dbs]
    assert [db.expires.keys() for db in mine.keyspace.dbs] == [
        db.expires.keys() for db in engine.keyspace.dbs]
    assert mine.stats.errors == engine.stats.errors
    assert mine.stats.commands_processed == engine.stats.commands_processed
    assert mine.dirty == engine.dirty
    assert {name: (c.calls, c.rejected_calls, c.failed_calls) for name, c in mine.table.items()
            } == {name: (c.calls, c.rejected_calls, c.failed_calls)
                  for name, c in engine.table.items()}


def test_lane_applies_runs_of_sets_as_execute_does():
    """Runs of plain SETs go through the plain lane, sized lazily; a TTL key, another
    command or a transaction in the middle goes the general way, with exact offsets."""
    commands = [[b"SET", b"a", b"1"], [b"SET", b"t", b"1", b"PXAT", b"99999999999999"],
                [b"SET", b"b", b"2"],
                [b"SET", b"t", b"2"], [b"REPLCONF", b"GETACK", b"*"], [b"set", b"c", b"3"],
                [b"MULTI"], [b"SET", b"d", b"4"], [b"EXEC"], [b"SET", b"e", b"5"]]
    encoded = [encode_command(c) for c in commands]
    replica = follower()
    start = replica.reploff
    seen: list[list[bytes]] = []
    replica.engine.propagate_listeners.append(lambda db, argv: seen.append(argv))
    general: list[bytes] = []
    call = replica.engine.call
    replica.engine.call = lambda session, cmd, argv: general.append(b" ".join(argv[:2])) or call(
        session, cmd, argv)
    lazy = StreamBatch([list(c) for c in commands], None, b"".join(encoded))
    acks = replica._apply_batch(lazy)
    # The TTL key, the transaction (its SET run by EXEC); nothing else left the lane.
    assert general == [b"SET t", b"SET t", b"MULTI", b"EXEC", b"SET d"]
    assert acks == [start + sum(map(len, encoded[:4]))]
    assert replica.reploff == start + len(lazy.raw)
    engine = Engine()
    expected: list[list[bytes]] = []
    engine.propagate_listeners.append(lambda db, argv: expected.append(argv))
    session = engine.new_session()
    session.is_master = True
    for argv in commands:
        if argv[0] != b"REPLCONF":
            engine.execute(session, argv)
    mine = replica.engine
    assert mine.keyspace.dbs[0].data == engine.keyspace.dbs[0].data
    assert mine.keyspace.dbs[0].expires == {} == engine.keyspace.dbs[0].expires
    assert mine.table[b"set"].calls == engine.table[b"set"].calls == 7
    assert mine.dirty == engine.dirty
    assert seen == expected and [b"SET", b"e", b"5"] in seen  # node.changes() sees them


def test_lane_stays_closed_while_a_monitor_watches():
    replica = follower()
    monitor = replica.engine.new_session()
    replica.engine.execute(monitor, [b"MONITOR"])
    replica._apply_batch(batch([b"SET", b"a", b"1"], [b"SET", b"b", b"2"]))
    lines = [item for item in monitor.pending_out if b"SET" in bytes(item)]
    assert len(lines) == 2


def test_batch_sizes_known_for_a_prefix_only():
    """A command the general parser completed (sized), then a fast piece (not sized)."""
    commands = [[b"SET", b"a", b"1"], [b"SET", b"bb", b"22"], [b"PING"]]
    encoded = [encode_command(c) for c in commands]
    raw = b"*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n" + encoded[1] + encoded[2]
    mixed = StreamBatch([list(c) for c in commands], [len(encoded[0])], raw)
    assert mixed.span(0, 3) == len(raw) and mixed.span(1, 3) == len(raw) - len(encoded[0])
    assert mixed.span(1, 2) == len(encoded[1])
    assert mixed.sizes == [len(e) for e in encoded]
