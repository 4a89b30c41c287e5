"""The replica's handshake state machine, fed the bytes a Redis 7.0 master sends."""

from __future__ import annotations

import pytest

from kvrepl.errors import ProtocolError
from kvrepl.replication.handshake import (
    Continue,
    FullResync,
    PayloadData,
    PayloadEnd,
    PayloadStart,
    ReplicaProtocol,
    ReplicationProtocolError,
    Send,
    State,
    StreamBatch,
    StreamCommand,
    TryLater,
)

REPLID = "8371b4fb1155b71f4a04d3e1bc3e18c4a990aeeb"
RDB = bytes.fromhex("524544495330303130ffa9fd37fe89a77eeb")  # empty v10 RDB


def sent(events):
    return b"".join(e.data for e in events if isinstance(e, Send))


def of(kind, events):
    if kind is StreamCommand:  # the stream comes in batches: one command at a time here
        return [c for e in events if isinstance(e, StreamBatch) for c in e.commands()]
    return [e for e in events if isinstance(e, kind)]


def handshake(protocol: ReplicaProtocol) -> list[object]:
    """Drive the protocol up to the PSYNC it sends; return all events."""
    events = protocol.start()
    assert sent(events) == b"*1\r\n$4\r\nPING\r\n"
    events += protocol.receive_data(b"+PONG\r\n")
    events += protocol.receive_data(b"+OK\r\n" * (2 + bool(protocol.masterauth)
                                                 + bool(protocol.announce_ip)))
    return events


def test_burst_bytes_match_redis():
    protocol = ReplicaProtocol(listening_port=6380, masterauth="pw", masteruser="u",
                               announce_ip="10.0.0.5")
    protocol.start()
    events = protocol.receive_data(b"+PONG\r\n")
    assert sent(events) == (
        b"*3\r\n$4\r\nAUTH\r\n$1\r\nu\r\n$2\r\npw\r\n"
        b"*3\r\n$8\r\nREPLCONF\r\n$14\r\nlistening-port\r\n$4\r\n6380\r\n"
        b"*3\r\n$8\r\nREPLCONF\r\n$10\r\nip-address\r\n$8\r\n10.0.0.5\r\n"
        b"*5\r\n$8\r\nREPLCONF\r\n$4\r\ncapa\r\n$3\r\neof\r\n$4\r\ncapa\r\n$6\r\npsync2\r\n")
    # PSYNC only once every reply has arrived.
    assert sent(protocol.receive_data(b"+OK\r\n+OK\r\n+OK\r\n")) == b""
    assert sent(protocol.receive_data(b"+OK\r\n")) == b"*3\r\n$5\r\nPSYNC\r\n$1\r\n?\r\n$2\r\n-1\r\n"


def test_full_sync_with_keepalives_and_disk_payload_then_stream():
    protocol = ReplicaProtocol(listening_port=6380)
    handshake(protocol)
    stream = b"*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n*3\r\n$3\r\nSET\r\n$3\r\nfoo\r\n$3\r\nbar\r\n"
    data = (b"\n\n+FULLRESYNC " + REPLID.encode() + b" 0\r\n\n$%d\r\n" % len(RDB) + RDB + stream)
    events = []
    for i in range(len(data)):  # byte by byte: every split point
        events += protocol.receive_data(data[i:i + 1])
    assert of(FullResync, events) == [FullResync(REPLID, 0)]
    assert of(PayloadStart, events) == [PayloadStart(len(RDB))]
    assert b"".join(e.data for e in of(PayloadData, events)) == RDB
    assert len(of(PayloadEnd, events)) == 1
    commands = of(StreamCommand, events)
    assert [c.argv for c in commands] == [[b"SELECT", b"0"], [b"SET", b"foo", b"bar"]]
    assert sum(c.size for c in commands) == 54
    assert protocol.state is State.CONNECTED


def test_diskless_eof_mark_payload():
    protocol = ReplicaProtocol(listening_port=6380)
    handshake(protocol)
    mark = b"a" * 40
    data = (b"+FULLRESYNC " + REPLID.encode() + b" 14\r\n$EOF:" + mark + b"\r\n" + RDB + mark
            + b"*1\r\n$4\r\nping\r\n")
    events = []
    for start in range(0, len(data), 5):
        events += protocol.receive_data(data[start:start + 5])
    assert of(FullResync, events) == [FullResync(REPLID, 14)]
    assert of(PayloadStart, events) == [PayloadStart(None)]
    assert b"".join(e.data for e in of(PayloadData, events)) == RDB
    assert [c.argv for c in of(StreamCommand, events)] == [[b"ping"]]


def test_partial_resync_asks_for_next_byte():
    protocol = ReplicaProtocol(listening_port=6380, replid=REPLID, offset=137)
    events = handshake(protocol)
    assert sent(events).endswith(
        b"*3\r\n$5\r\nPSYNC\r\n$40\r\n" + REPLID.encode() + b"\r\n$3\r\n137\r\n")
    events = protocol.receive_data(
        b"+CONTINUE " + REPLID.encode() + b"\r\n*2\r\n$3\r\nDEL\r\n$3\r\nfoo\r\n")
    assert of(Continue, events) == [Continue(REPLID)]
    assert of(StreamCommand, events) == [StreamCommand(
        [b"DEL", b"foo"], 22, b"*2\r\n$3\r\nDEL\r\n$3\r\nfoo\r\n")]


@pytest.mark.parametrize("reply", [b"-NOMASTERLINK Can't SYNC while not connected with my master",
                                   b"-LOADING Redis is loading the dataset in memory"])
def test_transient_psync_errors_mean_try_later(reply):
    protocol = ReplicaProtocol(listening_port=6380)
    handshake(protocol)
    with pytest.raises(TryLater):
        protocol.receive_data(reply + b"\r\n")


def test_old_master_falls_back_to_sync():
    protocol = ReplicaProtocol(listening_port=6380)
    handshake(protocol)
    events = protocol.receive_data(b"-ERR unknown command 'PSYNC'\r\n")
    assert sent(events) == b"SYNC\r\n"
    events = protocol.receive_data(b"$%d\r\n" % len(RDB) + RDB)
    assert len(of(PayloadEnd, events)) == 1


def test_errors_during_handshake():
    protocol = ReplicaProtocol(listening_port=6380)
    protocol.start()
    with pytest.raises(TryLater, match="Error reply to PING"):
        protocol.receive_data(b"-ERR foo\r\n")
    protocol = ReplicaProtocol(listening_port=6380, masterauth="bad")
    protocol.start()
    protocol.receive_data(b"-NOAUTH Authentication required.\r\n")  # tolerated for PING
    with pytest.raises(TryLater, match="Unable to AUTH"):
        protocol.receive_data(b"-WRONGPASS invalid username-password pair\r\n")
    protocol = ReplicaProtocol(listening_port=6380)
    handshake(protocol)
    protocol.receive_data(b"+FULLRESYNC " + REPLID.encode() + b" 0\r\n")
    with pytest.raises(ReplicationProtocolError, match="Bad protocol from MASTER"):
        protocol.receive_data(b"HELLO\r\n")


def test_non_critical_replconf_errors_are_ignored():
    protocol = ReplicaProtocol(listening_port=6380)
    protocol.start()
    protocol.receive_data(b"+PONG\r\n")
    events = protocol.receive_data(b"-ERR nope\r\n+OK\r\n")
    assert sent(events) == b"*3\r\n$5\r\nPSYNC\r\n$1\r\n?\r\n$2\r\n-1\r\n"


def test_streamed_lz4_payload_between_kvrepl_nodes():
    import lz4.frame

    protocol = ReplicaProtocol(listening_port=6380,
                               capabilities=("eof", "psync2", "lz4stream"))
    handshake(protocol)
    # Compressed a piece at a time, as the master streams it: no length anywhere, the
    # frame's own end mark ends the payload, and the stream may follow at once.
    compressor = lz4.frame.LZ4FrameCompressor()
    packed = compressor.begin() + b"".join(
        compressor.compress(RDB[i:i + 7]) for i in range(0, len(RDB), 7)) + compressor.flush()
    data = (b"+FULLRESYNC " + REPLID.encode() + b" 0\r\n$LZ4STREAM\r\n" + packed
            + b"*1\r\n$4\r\nping\r\n")
    events = []
    for i in range(len(data)):
        events += protocol.receive_data(data[i:i + 1])
    assert of(PayloadStart, events) == [PayloadStart(None)]
    assert b"".join(e.data for e in of(PayloadData, events)) == RDB
    assert len(of(PayloadEnd, events)) == 1
    assert [c.argv for c in of(StreamCommand, events)] == [[b"ping"]]


def test_lz4_stream_header_needs_the_capability():
    protocol = ReplicaProtocol(listening_port=6380)
    handshake(protocol)
    with pytest.raises(ReplicationProtocolError, match="payload length"):
        protocol.receive_data(b"+FULLRESYNC " + REPLID.encode() + b" 0\r\n$LZ4STREAM\r\n")


def test_corrupt_lz4_payload_is_a_protocol_error():
    protocol = ReplicaProtocol(listening_port=6380,
                               capabilities=("eof", "psync2", "lz4stream"))
    handshake(protocol)
    with pytest.raises(ReplicationProtocolError, match="lz4"):
        protocol.receive_data(b"+FULLRESYNC " + REPLID.encode() + b" 0\r\n$LZ4STREAM\r\n"
                              + b"\x00" * 20)


@pytest.mark.parametrize("reply", [
    b"+FULLRESYNC 8f2c0b0e1f7a4d6c9b3e2a1f0d9c8b7a6e5d4c\xfe\xff 0",  # found by tests/fuzz.py
    b"+FULLRESYNC short 0", b"+FULLRESYNC"])
def test_a_corrupt_replid_in_fullresync_is_no_replid(reply):
    """Redis's "wrong +FULLRESYNC syntax": the sync goes on with no replid, rather than
    failing on bytes that are not text or being sent back later."""
    protocol = ReplicaProtocol(listening_port=6380)
    handshake(protocol)
    events = protocol.receive_data(reply + b"\r\n")
    assert of(FullResync, events) == [FullResync("", -1)]


def test_a_corrupt_replid_in_continue_keeps_ours():
    protocol = ReplicaProtocol(listening_port=6380, replid=REPLID, offset=5)
    handshake(protocol)
    events = protocol.receive_data(b"+CONTINUE " + b"\xfe" * 40 + b"\r\n")
    assert of(Continue, events) == [Continue(None)]


def test_an_inline_command_in_the_stream_is_a_desync():
    """Redis refuses inline commands from its master (a corrupt or misaligned stream, e.g. a
    flipped '*'), where running them could apply anything; a bare newline is a keepalive."""
    protocol = ReplicaProtocol(listening_port=6380, replid=REPLID, offset=5)
    handshake(protocol)
    events = protocol.receive_data(b"+CONTINUE\r\n\n*1\r\n$4\r\nPING\r\n\r\n")
    assert [c.argv for c in of(StreamCommand, events)] == [[b"PING"]]
    with pytest.raises(ProtocolError, match=r"Master using the inline protocol\. Desync\?"):
        protocol.receive_data(b"+3\r\n$3\r\nSET\r\n$1\r\nk\r\n$8\r\nFLUSHALL\r\n")
