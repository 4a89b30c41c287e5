"""CLIENT LIST's obl, oll and omem as Redis 7.0's reply buffer and reply list make them
(networking.c _addReplyToBufferOrList, _addReplyProtoToList, _writevToClient,
getClientOutputBufferMemoryUsage), beside a real redis-server."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator

import pytest
import redis
from support import (
    RawClient,
    RedisServer,
    ThreadedServer,
    client_fields,
    kvrepl_and_redis,
    line_fields,
    pack,
    poll,
    reply_end,
)

from kvrepl.commands import obuf
from kvrepl.config import Config
from kvrepl.protocol.replies import encode


@pytest.fixture(scope="module")
def both() -> Iterator[tuple[ThreadedServer, RedisServer]]:
    with kvrepl_and_redis(Config(save=(), enable_debug_command="yes"),
                          "--enable-debug-command", "yes") as pair:
        yield pair


@pytest.fixture
def ports(both: tuple[ThreadedServer, RedisServer]) -> Iterator[list[int]]:
    ports = [both[0].port, both[1].port]
    for port in ports:
        with redis.Redis(port=port) as client:
            # No cron resize of the reply buffer: a new client's is 16 KB on both.
            client.execute_command("DEBUG", "REPLYBUFFER", "RESIZING", "0")
            client.set("small", b"s" * 100)
            client.set("chunk", b"c" * 16_000)
            client.set("big", b"b" * 100_000)
            client.rpush("list", *[b"e%05d" % i for i in range(3000)])
            client.sadd("set", *[b"m%03d" % i for i in range(50)])
            client.zadd("zset", {b"z%04d" % i: i for i in range(2000)})
            for i in range(1, 301):
                client.xadd("stream", {b"f": b"v" * 50}, id=f"1-{i}")
            for i in range(1, 6):
                client.xadd("stream2", {b"a": b"1", b"b": b"2", b"c": b"3"}, id=f"1-{i}")
            client.xgroup_create("stream", "g", id="0")
            client.xreadgroup("g", "c1", {"stream": ">"}, count=50)
            client.set("lcs1", b"ohmytext" * 40)
            client.set("lcs2", b"mynewtext" * 40)
            client.slowlog_reset()
    yield ports
    for port in ports:
        with redis.Redis(port=port) as client:
            client.execute_command("DEBUG", "REPLYBUFFER", "RESIZING", "1")
            client.flushall()


def _replies(sock: socket.socket, count: int) -> bytes:
    data = b""
    while True:
        pos, found = 0, 0
        while found < count and (end := reply_end(data, pos)) is not None:
            pos, found = end, found + 1
        if found == count:
            return data[:pos]
        chunk = sock.recv(1 << 20)
        assert chunk, "the server closed the connection"
        data += chunk


# Pipelines whose replies are all held when the last request runs: Redis writes a read's
# replies once all of it ran (beforeSleep), kvrepl at the end of its pass.
PIPELINES = {
    "small replies fit the reply buffer": [("GET", "small")] * 3,
    "a 16 KB reply fills it, the next opens a block": [("GET", "chunk")] * 2,
    "100 KB replies open blocks of their size": [("GET", "big")] * 3,
    "mixed sizes fill the tail block first": [
        ("GET", "small"), ("GET", "big"), ("GET", "chunk"), ("GET", "small"),
        ("GET", "big"), ("GET", "chunk"), ("GET", "chunk")],
    "an array of small bulks fills 16 KB blocks": [("GET", "chunk"), ("LRANGE", "list", 0, -1)],
    "a pipeline of many small replies": [("GET", "small")] * 400,
    # Replies whose length Redis sets after their elements (addReplyDeferredLen).
    "a deferred length opens a block though the buffer has room": [
        ("GET", "small"), ("KEYS", "s*"), ("GET", "small")],
    "an empty deferred reply is a block of its header": [("KEYS", "none*"), ("PING",)],
    "SMEMBERS and SINTER after a full buffer": [
        ("GET", "chunk"), ("SMEMBERS", "set"), ("SINTER", "set", "set")],
    "a deferred header fills the room of the block before": [
        ("GET", "chunk"), ("GET", "chunk"), ("GET", "small"), ("KEYS", "*")],
    "a big tail block is trimmed before the empty node": [
        ("GET", "small"), ("ZRANGE", "zset", "0", "-1"), ("ZRANGEBYSCORE", "zset", "0", "10")],
    "ZRANGEBYSCORE, ZRANGEBYLEX, an empty rank range": [
        ("ZRANGEBYSCORE", "zset", "-inf", "+inf", "WITHSCORES"),
        ("ZRANGEBYLEX", "zset", "-", "+"), ("ZRANGE", "zset", "5000", "6000"),
        ("ZRANGE", "zset", "(5", "100", "BYSCORE", "LIMIT", "0", "3")],
    "LPOS COUNT after a big reply": [("GET", "big"), ("LPOS", "list", "e00007", "COUNT", "0"),
                                      ("LPOS", "list", "nothere", "COUNT", "2")],
    # Lengths set after their elements inside a reply: each opens a node where it is.
    "XRANGE and XREVRANGE set their length after the entries": [
        ("GET", "small"), ("XRANGE", "stream", "-", "+", "COUNT", "10"), ("GET", "small"),
        ("XREVRANGE", "stream", "+", "-")],
    "XREAD: the streams' length, then each stream's entries'": [
        ("GET", "chunk"), ("XREAD", "COUNT", "100", "STREAMS", "stream", "stream2", "0", "0"),
        ("XREAD", "STREAMS", "stream2", "1-3")],
    "XREADGROUP of new entries and of a consumer's history": [
        ("XREADGROUP", "GROUP", "g", "c2", "COUNT", "20", "STREAMS", "stream", ">"),
        ("XREADGROUP", "GROUP", "g", "c1", "COUNT", "30", "STREAMS", "stream", "0")],
    "XPENDING's consumers, XCLAIM, XAUTOCLAIM's cursor set after its entries": [
        ("XPENDING", "stream", "g"),
        ("XPENDING", "stream", "g", "IDLE", "99999999", "-", "+", "10"),
        ("XCLAIM", "stream", "g", "c3", "0", "1-1", "1-2", "1-3", "JUSTID"),
        ("XAUTOCLAIM", "stream", "g", "c4", "0", "0", "COUNT", "25"),
        ("XAUTOCLAIM", "stream", "g", "c4", "0", "0", "COUNT", "5", "JUSTID")],
    "XINFO STREAM FULL: the entries' and the PELs' lengths": [
        ("GET", "small"), ("XINFO", "STREAM", "stream", "FULL", "COUNT", "40")],
    "a script's tables, at every depth": [
        ("GET", "small"),
        ("EVAL", "local t = {} for i = 1, 300 do t[i] = {i, string.rep('x', 100), {}} end "
                 "return t", "0"),
        ("EVAL", "return {1, {map={a={1, {2}}}}, {set={b=true}}, {}}", "0"),
        ("GET", "small")],
    "HELP, CLIENT TRACKINGINFO's flags, PUBSUB CHANNELS, SLOWLOG GET": [
        ("CONFIG", "HELP"), ("CLIENT", "TRACKINGINFO"), ("PUBSUB", "CHANNELS"),
        ("XINFO", "HELP"), ("SLOWLOG", "GET")],
    "LCS IDX, ACL CAT, ACL GETUSER, COMMAND INFO and DOCS, ROLE": [
        ("LCS", "lcs1", "lcs2", "IDX", "MINMATCHLEN", "3"), ("ACL", "CAT"),
        ("ACL", "CAT", "stream"), ("ACL", "GETUSER", "default"), ("COMMAND", "INFO", "get"),
        ("COMMAND", "DOCS", "get"), ("ROLE",)],
}


def _held_shape(port: int, requests: list[tuple[object, ...]]) -> dict[str, str]:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        payload = b"".join(pack(*request) for request in requests) + pack("CLIENT", "INFO")
        sock.sendall(payload)
        data = _replies(sock, len(requests) + 1)
    start = 0
    for _ in requests:
        start = reply_end(data, start)
    info = data[start:].split(b"\r\n", 1)[1].strip()  # a bulk, or a verbatim (RESP3)
    fields = line_fields(info.removeprefix(b"txt:"))
    return {name: fields[name] for name in ("rbs", "obl", "oll", "omem", "tot-mem")}


@pytest.mark.parametrize("case", sorted(PIPELINES))
def test_replies_held_as_redis_holds_them(ports, case):
    """The client's own CLIENT INFO at the end of a pipeline sees the replies before it
    held: the reply buffer's bytes, the blocks and their memory, tot-mem; the same on
    both servers to the byte."""
    ours, theirs = (_held_shape(port, PIPELINES[case]) for port in ports)
    assert ours == theirs


# RESP3: maps and sets whose lengths are set after their elements.
RESP3_PIPELINES = {
    "XREAD's map of streams": [
        ("XREAD", "COUNT", "50", "STREAMS", "stream", "stream2", "0", "0")],
    "a script's maps and sets": [
        ("EVAL", "redis.setresp(3) return {map={a={1, {set={x=true}}}}, {set={b=true}}}", "0"),
        ("EVAL", "local t = {} for i = 1, 200 do t[i] = {map={k=string.rep('v', 90)}} end "
                 "return t", "0")],
    "CLIENT TRACKINGINFO, ACL GETUSER, COMMAND DOCS": [
        ("CLIENT", "TRACKINGINFO"), ("ACL", "GETUSER", "default"), ("COMMAND", "DOCS", "get")],
}


@pytest.mark.parametrize("case", sorted(RESP3_PIPELINES))
def test_resp3_replies_held_as_redis_holds_them(ports, case):
    """The same after HELLO 3, whose reply (with the client's id) is all in the reply
    buffer: the blocks the deferred lengths open, their memory and tot-mem, to the byte."""
    requests = [("HELLO", "3"), *RESP3_PIPELINES[case]]
    ours, theirs = (_held_shape(port, requests) for port in ports)
    for shape in (ours, theirs):
        del shape["obl"]  # the id's digits
    assert ours == theirs
    assert ours["oll"] != "0"


def _stalled_subscriber(port: int) -> list[object]:
    """A subscriber that does not read is published 100 KB messages until the kernel
    holds all it takes of them (its omem holds three); then each of 5 more messages, added
    to the tail of its reply list, opens one more block: oll and omem grow as
    Redis's do from there (how much the kernel took before is the kernel's)."""
    admin = RawClient(port)
    seen: list[object] = []
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(pack("CLIENT", "ID") + pack("SUBSCRIBE", "ch"))
        head = _replies(sock, 2)
        subscriber = int(head[1:head.index(b"\r\n")])
        message = b"m" * 100_000

        def line() -> dict[str, str]:
            return client_fields(admin, "ID", subscriber)

        def publish_until_held() -> bool:
            admin.call("PUBLISH", "ch", message)
            # Three messages held: the kernel is full (a first message held may still
            # go, as the kernel grows the socket's buffers).
            return int(line()["omem"]) > 300_000

        poll(publish_until_held, "the subscriber's output held")
        before = line()
        for _ in range(5):
            admin.call("PUBLISH", "ch", message)
        after = line()
        seen.append((before["obl"], after["obl"]))
        seen.append(int(after["oll"]) - int(before["oll"]))
        seen.append(int(after["omem"]) - int(before["omem"]))
        seen.append(int(after["tot-mem"]) - int(before["tot-mem"]))
    admin.close()
    return seen


def test_a_subscriber_that_does_not_read_grows_blocks_as_redis(ports):
    ours, theirs = (_stalled_subscriber(port) for port in ports)
    assert ours == theirs
    assert ours[1] == 5


def test_writes_free_the_buffer_then_whole_blocks():
    """_writevToClient: the reply buffer's bytes go first; a block goes once all of it
    is sent (a head block sent in part still counts whole)."""
    model = obuf.ReplyBuffers(16 * 1024)
    model.add(10_000)
    assert (model.bufpos, len(model.blocks), model.omem) == (10_000, 0, 0)
    model.add(100_000)  # 6384 into the buffer, 93616 into a block of its jemalloc class
    assert model.bufpos == 16 * 1024
    assert model.blocks == [[98_304 - 16, 93_616]]
    model.add(20)  # into the tail's room
    assert model.blocks == [[98_288, 93_636]]
    model.write(16 * 1024 + 50_000)
    assert model.bufpos == 0 and model.head_sent == 50_000
    assert model.omem == 98_288 + obuf.BLOCK_OVERHEAD
    model.add(5)  # the list is not empty: never into the reply buffer
    assert model.bufpos == 0
    model.write(43_641)
    assert (model.blocks, model.omem) == ([], 0)


def _redis_adds(data: bytes) -> list[int]:
    """The reference: each piece Redis adds for ``data``, parsed one element at a time
    (an aggregate's header, a simple reply; a bulk's header, bytes and CRLF)."""
    pieces, pos = [], 0
    while pos < len(data):
        line = data.index(b"\r\n", pos)
        if data[pos:pos + 1] == b"$" and data[pos + 1:line] != b"-1":
            length = int(data[pos + 1:line])
            pieces += [line + 2 - pos, length, 2] if length else [line + 2 - pos, 2]
            pos = line + 4 + length
        else:
            pieces.append(line + 2 - pos)
            pos = line + 2
    return pieces


def _shape(model: obuf.ReplyBuffers) -> tuple[object, ...]:
    return model.bufpos, model.blocks, model.omem


@pytest.mark.parametrize("seed", range(20))
def test_the_model_adds_replies_as_redis_piece_by_piece(seed):
    """ReplyBuffers.add_all, which looks only for the bulk strings over 16 KB, holds what
    adding each piece Redis adds, one by one, holds: for random streams of small and
    big replies, arrays of small bulks, in pieces cut as kvrepl gathers them (a bulk's
    header, bytes and CRLF apart) or whole, from a reply buffer resized or not."""
    rng = random.Random(seed)
    replies = []
    for _ in range(rng.randrange(1, 40)):
        kind = rng.random()
        if kind < 0.3:
            replies.append(encode(b"x" * rng.choice([0, 5, 100, 9_999, 16_000, 16_384,
                                                      16_385, 20_000, 100_000])))
        elif kind < 0.5:
            replies.append(encode([b"e" * rng.randrange(20) for _ in range(rng.randrange(2000))]))
        elif kind < 0.7:
            replies.append(encode(rng.randrange(10**9)))
        elif kind < 0.8:
            replies.append(encode(None))
        else:
            size = rng.randrange(20_000, 60_000)
            replies += [b"$%d\r\n" % size, b"y" * size, b"\r\n"]  # kvrepl's three pieces
    buf_size = rng.choice([16_384, 1024, 2048])
    reference = obuf.ReplyBuffers(buf_size)
    for piece in _redis_adds(b"".join(replies)):
        reference.add(piece)
    whole, pieces = obuf.ReplyBuffers(buf_size), obuf.ReplyBuffers(buf_size)
    whole.add_all([b"".join(replies)])
    pieces.add_all(replies)
    assert _shape(whole) == _shape(pieces) == _shape(reference)


class _Held:
    """What a connection holds (Connection.output_parts), set by the test."""

    def __init__(self) -> None:
        self.sending: bytes | None = None
        self.unsent = 0
        self.out: list[bytes] = []

    def output_parts(self) -> tuple[bytes | None, int, bytes | None, list[bytes]]:
        return self.sending, self.unsent, None, self.out


def test_the_model_kept_between_looks_is_the_model_made_afresh():
    """reply_buffers keeps a client's model between looks (pushes added, the kernel
    taking more of the send under way): at each step it equals one made from nothing."""
    from kvrepl.commands.core import Engine

    engine = Engine(Config(save=()))
    session = engine.new_session()
    held = _Held()
    held.sending = encode([b"p" * 30_000, b"q" * 5, b"r" * 70_000])
    steps = []
    for unsent, pushes in ((90_000, 0), (90_000, 3), (60_000, 3), (60_000, 7), (2_000, 8),
                           (2_000, 8), (1, 9)):
        held.unsent = unsent
        while len(session.pending_out) < pushes:
            session.pending_out.append([b"message", b"ch", b"m" * 40_000])
        kept = obuf.reply_buffers(session, held)
        shape = _shape(kept)
        obuf.forget_model(session)
        assert _shape(obuf.reply_buffers(session, held)) == shape
        steps.append(shape[1:])
    assert steps[0] != steps[-1]


def test_deferred_lengths_change_no_byte_and_say_where_they_are():
    """A reply with lengths set after their elements encodes to the same bytes as without;
    its marks name each header (``at``, its length) and where its elements end, in the
    order Redis opens them; one DeferredReply inside another keeps its marks, moved."""
    from kvrepl.protocol.replies import (
        DeferredArray,
        DeferredMap,
        DeferredReply,
        DeferredSet,
        OrderedSet,
        deferred_marks,
    )

    nested = DeferredArray([b"a", DeferredArray([b"b", DeferredSet([b"c"])]), [DeferredMap({b"k": 1})]])
    plain = [b"a", [b"b", OrderedSet([b"c"])], [{b"k": 1}]]
    for resp3 in (False, True):
        reply = encode(nested, resp3)
        assert type(reply) is DeferredReply and reply == encode(plain, resp3)
        marks = deferred_marks(reply)
        assert [at for at, _, _ in marks] == sorted(at for at, _, _ in marks)
        assert [reply[at:at + length] for at, length, _ in marks] == [
            b"*3\r\n", b"*2\r\n", b"~1\r\n" if resp3 else b"*1\r\n",
            b"%1\r\n" if resp3 else b"*2\r\n"]
        assert [end for _, _, end in marks][0] == len(reply)
    top = encode(DeferredArray([b"x"]))
    assert top.marks is None and deferred_marks(top) == ((0, 4, len(top)),)
    outer = encode([b"y", top])
    assert outer == b"*2\r\n$1\r\ny\r\n" + top
    assert deferred_marks(outer) == ((11, 4, len(outer)),)
