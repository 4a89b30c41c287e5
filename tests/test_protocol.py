"""The sans-IO RESP parser and encoder, on bytes only."""

from __future__ import annotations

import re

import hiredis
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from kvrepl.errors import ProtocolError, ReplyError
from kvrepl.protocol import NEED_DATA, NULL_ARRAY, OK, Push, RequestParser, Verbatim, encode
from kvrepl.protocol.parser import request_size, split_inline, split_requests


def multibulk(args: list[bytes]) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def parse_all(data: bytes, parser: RequestParser | None = None) -> list[list[bytes]]:
    parser = parser or RequestParser()
    parser.feed(data)
    requests = []
    while (request := parser.next_request()) is not NEED_DATA:
        requests.append(request)
    return requests


args_lists = st.lists(st.lists(st.binary(max_size=40), min_size=1, max_size=6), max_size=6)


@given(args_lists)
def test_multibulk_roundtrip(requests):
    assert parse_all(b"".join(multibulk(r) for r in requests)) == requests


@given(args_lists, st.data())
def test_every_split_point(requests, data):
    """However the bytes arrive, the same requests come out."""
    stream = b"".join(multibulk(r) for r in requests)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    parser = RequestParser()
    got = []
    last = 0
    for cut in [*cuts, len(stream)]:
        parser.feed(stream[last:cut])
        last = cut
        while (request := parser.next_request()) is not NEED_DATA:
            got.append(request)
    assert got == requests


def test_byte_by_byte_and_big_argument():
    big = bytes(range(256)) * 1000  # bigger than the big-argument threshold
    stream = multibulk([b"SET", b"k", big]) + multibulk([b"GET", b"k"])
    parser = RequestParser()
    got = []
    for i in range(0, len(stream), 7):
        parser.feed(stream[i:i + 7])
        while (request := parser.next_request()) is not NEED_DATA:
            got.append(request)
    assert got == [[b"SET", b"k", big], [b"GET", b"k"]]
    assert parser.buffered == 0


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_random_bytes_never_crash_or_hang(data):
    parser = RequestParser()
    parser.feed(data)
    try:
        for _ in range(len(data) + 2):
            if parser.next_request() is NEED_DATA:
                break
        else:
            pytest.fail("parser produced more requests than there are bytes")
    except ProtocolError:
        pass


def test_inline_commands():
    assert parse_all(b"PING\r\nSET k v\nGET  k \r\n\r\n") == [
        [b"PING"], [b"SET", b"k", b"v"], [b"GET", b"k"]]


def test_inline_quotes_like_sdssplitargs():
    assert split_inline(b'SET "a b" \'c d\'') == [b"SET", b"a b", b"c d"]
    assert split_inline(b'SET k "\\x41\\n\\"q"') == [b"SET", b"k", b'A\n"q']
    assert split_inline(b"SET k 'it\\'s'") == [b"SET", b"k", b"it's"]
    assert split_inline(b'SET "unbalanced') is None
    assert split_inline(b'SET "a"b') is None


@pytest.mark.parametrize("data, message", [
    (b"*abc\r\n", "Protocol error: invalid multibulk length"),
    (b"*1\r\n+foo\r\n", "Protocol error: expected '$', got '+'"),
    (b"*1\r\n$-5\r\n", "Protocol error: invalid bulk length"),
    (b"*1\r\n$x\r\n", "Protocol error: invalid bulk length"),
    (b'GET "k\r\n', "Protocol error: unbalanced quotes in request"),
    (b"*1\r\n" + b"$" * 70000, "Protocol error: too big bulk count string"),
    (b"X" * 70000, "Protocol error: too big inline request"),
])
def test_protocol_errors_use_redis_words(data, message):
    parser = RequestParser()
    parser.feed(data)
    with pytest.raises(ProtocolError, match=re.escape(message)):
        parser.next_request()


def test_bulk_length_limit_and_unauthenticated_limits():
    parser = RequestParser(max_bulk_len=10)
    parser.feed(b"*1\r\n$11\r\n")
    with pytest.raises(ProtocolError, match="invalid bulk length"):
        parser.next_request()
    parser = RequestParser()
    parser.authenticated = False
    parser.feed(b"*11\r\n")
    with pytest.raises(ProtocolError, match="unauthenticated multibulk length"):
        parser.next_request()
    parser = RequestParser()
    parser.authenticated = False
    parser.feed(b"*1\r\n$16385\r\n")
    with pytest.raises(ProtocolError, match="unauthenticated bulk length"):
        parser.next_request()


def test_empty_multibulk_is_skipped():
    assert parse_all(b"*0\r\n*-1\r\n" + multibulk([b"PING"])) == [[b"PING"]]


# -- encoder: hiredis (the C parser redis-py uses) must read back what we write -------------

reply_values = st.recursive(
    st.one_of(st.binary(max_size=30), st.integers(-(2**63), 2**63 - 1), st.none()),
    lambda children: st.lists(children, max_size=5),
    max_leaves=20,
)


@given(reply_values)
def test_resp2_encoding_is_read_back_by_hiredis(value):
    reader = hiredis.Reader()
    reader.feed(encode(value))
    assert reader.gets() == value


@given(reply_values)
def test_resp3_encoding_is_read_back_by_hiredis(value):
    reader = hiredis.Reader()
    reader.feed(encode(value, resp3=True))
    assert reader.gets() == value


def test_shapes_per_protocol():
    assert encode(OK) == b"+OK\r\n"
    assert encode(None) == b"$-1\r\n"
    assert encode(None, True) == b"_\r\n"
    assert encode(NULL_ARRAY) == b"*-1\r\n"
    assert encode(NULL_ARRAY, True) == b"_\r\n"
    assert encode({b"a": 1}) == b"*2\r\n$1\r\na\r\n:1\r\n"
    assert encode({b"a": 1}, True) == b"%1\r\n$1\r\na\r\n:1\r\n"
    assert encode(1.5) == b"$3\r\n1.5\r\n"
    assert encode(0.1, True) == b",0.10000000000000001\r\n"
    assert encode(float("inf")) == b"$3\r\ninf\r\n"
    assert encode(Verbatim(b"x"), True) == b"=5\r\ntxt:x\r\n"
    assert encode(Push([b"message", b"c", b"m"]), True).startswith(b">3\r\n")
    assert encode(ReplyError("ERR bad\r\nthing")) == b"-ERR bad  thing\r\n"


# -- the hiredis fast path gives exactly what the exact parser gives -------------------------

def _outcomes(chunks: list[bytes], fast: bool, authenticated: bool = True,
              max_bulk_len: int = 512 * 1024 * 1024) -> list[object]:
    """Every request (with the bytes still buffered after it), then the protocol error if
    one comes, as one parser returns them."""
    parser = RequestParser(max_bulk_len, fast=fast)
    parser.authenticated = authenticated
    got: list[object] = []
    for chunk in chunks:
        parser.feed(chunk)
        try:
            while (request := parser.next_request()) is not NEED_DATA:
                got.append((request, parser.buffered))
        except ProtocolError as err:
            got.append(("error", str(err)))
            return got
    got.append(("buffered", parser.buffered))
    return got


def _split(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = [0, *sorted(cuts), len(stream)]
    return [stream[a:b] for a, b in zip(points, points[1:], strict=False)]


element = st.one_of(
    st.binary(max_size=30).map(lambda b: b"$%d\r\n%b\r\n" % (len(b), b)),
    st.sampled_from([b"+OK\r\n", b"=7\r\ntxt:abc\r\n", b"(12\r\n", b":5\r\n", b"_\r\n",
                     b"$-1\r\n", b"$03\r\nabc\r\n", b"*1\r\n$1\r\na\r\n", b"-ERR x\r\n",
                     b"%1\r\n$1\r\na\r\n$1\r\nb\r\n", b"~1\r\n$1\r\na\r\n", b",1.5\r\n",
                     b"#t\r\n", b"|1\r\n+a\r\n+b\r\n", b"$1\r\nab\r\n", b"$+1\r\na\r\n"]),
)
request_bytes = st.one_of(
    st.lists(element, max_size=5).map(lambda els: b"*%d\r\n" % len(els) + b"".join(els)),
    st.lists(st.binary(max_size=20), min_size=1, max_size=4).map(multibulk),
    st.sampled_from([b"*-1\r\n", b"*0\r\n", b"PING\r\n", b"GET k\r\n", b"*2\r\n$3\r\nGET\r\n",
                     b"~1\r\n$4\r\nPING\r\n", b">1\r\n$4\r\nPING\r\n", b"_\r\n", b"+PING\r\n",
                     b"*03\r\n", b"*1\r\n$4\r\n+ING\r\n", b"*1\r\n$5\r\nx\r\n=y\r\n",
                     b"$0\r\n\r\n", b"$4\r\nPING\r\n", b":1\r\n", b"*1\r\n*0\r\n"]),
)


@settings(max_examples=400, deadline=None)  # a loaded machine must not fail an example
@given(st.lists(request_bytes, max_size=8), st.lists(st.integers(0, 400), max_size=4),
       st.booleans(), st.sampled_from([8, 512 * 1024 * 1024]))
def test_fast_path_matches_exact_parser(requests, cuts, authenticated, max_bulk_len):
    """Valid or not, cut anywhere: the same requests, the same error at the same place."""
    stream = b"".join(requests)
    chunks = _split(stream, [c for c in cuts if c <= len(stream)])
    assert _outcomes(chunks, True, authenticated, max_bulk_len) == \
        _outcomes(chunks, False, authenticated, max_bulk_len)


def test_fast_path_refuses_what_redis_refuses():
    """Element types hiredis would accept as bytes still get Redis's error."""
    for bad, message in [(b"*1\r\n+PING\r\n", "expected '$', got '+'"),
                         (b"*1\r\n=8\r\ntxt:PING\r\n", "expected '$', got '='"),
                         (b"*1\r\n:1\r\n", "expected '$', got ':'")]:
        parser = RequestParser(fast=True)
        parser.feed(multibulk([b"PING"]) + bad)
        assert parser.next_request() == [b"PING"]
        with pytest.raises(ProtocolError, match=re.escape(message)):
            parser.next_request()


@settings(max_examples=200)
@given(st.lists(request_bytes, max_size=8), st.integers(0, 400))
@example([multibulk([b"a"]), b"$0\r\n\r\n"], 0)  # an empty top-level bulk joins fine
@example([multibulk([b"a"]), b"*0\r\n", multibulk([b"b"])], 0)
@example([multibulk([b"GET", b"k"]), b"~1\r\n$1\r\na\r\n"], 0)
@example([multibulk([b"a"]), b"*1\r\n$0\r\n\r\n*"], 0)  # a cut request: probe fails
@example([multibulk([b"SET", b"k", b"v\r\n*1\r\n"]), b"*2\r\n$3\r\nGET\r\n$1"], 0)
@example([multibulk([b"a"]), b"*2\r\n$1\r\n\r\n*1\r\n"], 0)  # "\r\n*" in the cut one
# Reads past _split_lines's size, whole (one hiredis pass), then cut at a line's end
# (ends with CR LF like a whole read: the one pass finds a request held back).
@example([multibulk([b"SET", b"key:%d" % i, b"x" * 40]) for i in range(8)], 0)
@example([multibulk([b"SET", b"key:%d" % i, b"x" * 40]) for i in range(8)]
         + [b"*2\r\n$3\r\nGET\r\n"], 0)
@example([multibulk([b"SET", b"key:%d" % i, b"x" * 40]) for i in range(8)]
         + [b"*1\r\n:1\r\n"], 0)
def test_split_without_sizes_agrees_with_sizes(requests, cut):
    """``want_sizes=False`` returns what the exact parser reads first; a total instead of
    sizes only when that is all it reads (the rest being a cut request); a reader left
    holding a cut request is never handed on."""
    stream = b"".join(requests)
    head, tail = stream[:cut], stream[cut:]
    for data in (head, tail, stream):
        exact, consumed = _exact_prefix(data)
        found, sizes, refused = split_requests(data, 0)
        quick, quick_sizes, quick_refused = split_requests(data, 0, want_sizes=False)
        assert quick == exact[:len(quick)] and found == exact[:len(found)]
        from_array, _, _ = split_requests(bytearray(data), 0, want_sizes=False)
        assert from_array == quick and {type(a) for r in from_array for a in r} <= {bytes}
        if type(quick_sizes) is int:  # a total: the rest can only be one cut request
            assert quick == exact and consumed == quick_sizes and not quick_refused
            assert sum(map(request_size, quick)) == quick_sizes
        else:
            assert (quick, quick_sizes, quick_refused) == (found, sizes, refused)


def _exact_prefix(data: bytes) -> tuple[list[list[bytes]], int]:
    """The requests the exact parser reads from ``data`` before it needs more bytes or
    finds an error, and the bytes they took."""
    parser = RequestParser()
    parser.feed(data)
    requests = []
    consumed = 0
    try:
        while (request := parser.next_request()) is not NEED_DATA:
            requests.append(request)
            consumed = len(data) - parser.buffered
    except ProtocolError:
        pass
    return requests, consumed


_LONG_READ = [multibulk([b"SET", b"key:%d" % i, b"x" * 40]) for i in range(8)]


@pytest.mark.parametrize("tail", [
    b":1\r\n*2\r\n$3\r\nGET\r\n", b"#t\r\n*2\r\n$3\r\nGET\r\n",
    b":1\r\n*3\r\n$3\r\nSET\r\n", b"#t\r\n*3\r\n$3\r\nSET\r\n", b"*1\r\n$5\r\n",
    b"%0\r\n*2\r\n$3\r\nGET\r\n", b"*2\r\n$3\r\nGET\r\n$4\r\n",
    b"*2\r\n$3\r\nGET\r\n$2\r\n", b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\n", b"*1\r\n",
    b"*2\r\n$3\r\nGET\r\n*1\r\n", b"*1\r\n$2\r\n%0\r\n", b""])
@pytest.mark.parametrize("size", [1, 400])  # past _split_lines's size, and past _WINDOW
def test_a_whole_read_is_told_from_one_that_ends_in_a_request_cut_at_a_line(tail, size):
    """A read that ends with CR LF is split in one hiredis pass with a probe behind it (an
    empty map): reads that end inside a request (cut where the probe could complete it, or
    after a top-level value equal to what a probe of an integer returns) are never taken
    for whole ones; whatever they hold, the fast parser reads what the exact one does."""
    data = b"".join(_LONG_READ * size) + tail
    requests, consumed = _exact_prefix(data)
    quick, total, refused = split_requests(data, 0, want_sizes=False)
    assert quick == requests[:len(quick)]
    if type(total) is int:
        assert quick == requests and total == consumed
    assert _outcomes([data], True, True, 512 * 1024 * 1024) == \
        _outcomes([data], False, True, 512 * 1024 * 1024)
    parser = RequestParser(fast=True)
    parser.feed(data)
    ready, position, raw = parser.ready_requests()
    if raw is not None:  # vouched for as exactly these requests: only a whole read
        assert not tail and ready == requests and consumed == len(data)


def test_request_size_is_the_multibulk_length():
    for args in ([b"PING"], [b"SET", b"k" * 10_000, b""], [b"x"] * 12):
        assert request_size(args) == len(multibulk(args))


def test_vouched_raw_bytes_parse_to_exactly_the_requests():
    """Found by tests/fuzz.py: the two bytes after an argument are skipped unread (by
    Redis, hiredis and the exact parser alike), so the raw bytes the plain lane propagates
    need not be canonical; what holds is that every parser reads the same requests."""
    data = b"*1\r\n$1\r\nv\r\xfe"
    parser = RequestParser(fast=True)
    parser.feed(data)
    requests, position, raw = parser.ready_requests()
    assert (requests[position:], raw) == ([[b"v"]], data)
    exact = RequestParser()
    exact.feed(raw)
    assert exact.next_request() == [b"v"] and exact.buffered == 0


@pytest.mark.parametrize("between", [b":0\r\n", b"#f\r\n", b",0\r\n", b":1\r\n"])
def test_an_inline_line_that_hiredis_reads_as_false_is_not_dropped(between):
    """Found by tests/fuzz.py: hiredis reads ":0" (or "#f", ",0") as a reply equal to
    False, which ended ``iter(reader.gets, False)``: the fast path then took the line as
    read and dropped the inline command Redis runs (and answers)."""
    data = multibulk([b"GET", b"k"]) + between + b"*3\r\n"
    for fast in (True, False):
        parser = RequestParser(fast=fast)
        parser.feed(data)
        assert parser.next_request() == [b"GET", b"k"]
        assert parser.next_request() == [between[:2]]
        assert parser.next_request() is NEED_DATA
    assert split_requests(data, 0, want_sizes=False) == ([[b"GET", b"k"]], [20], True)


def test_a_type_byte_after_the_skipped_bytes_is_not_taken_for_a_bulk():
    """Found by tests/fuzz.py (the replica's stream): the two bytes after an argument are
    skipped unread, so a '(' (hiredis: a big number, handed back as bytes) can start the
    next element without a CR LF before it; the fast path took [SET, "", "k"], which the
    exact parser (and Redis) refuse with a protocol error."""
    data = b"*3\r\n$3\r\nSETxx(\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n"
    assert split_requests(data, 0)[0] == []
    assert split_requests(data, 0, want_sizes=False)[0] == []
    for fast in (True, False):
        parser = RequestParser(fast=fast)
        parser.feed(data)
        with pytest.raises(ProtocolError, match="expected '\\$', got '\\('"):
            parser.next_request()
