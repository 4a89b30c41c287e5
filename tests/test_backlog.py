"""The backlog and stream encoding, on bytes."""

from hypothesis import given
from hypothesis import strategies as st

from kvrepl.replication.backlog import Backlog
from kvrepl.replication.stream import StreamFeed, encode_command


def test_offsets_follow_redis_worked_example():
    # research/replication.md section 7: SELECT 0 (23) + SET foo bar (31) = 54.
    feed = StreamFeed()
    backlog = Backlog(1024 * 1024)
    feed.consumers.append(backlog.append)
    feed.feed(0, [b"SET", b"foo", b"bar"])
    assert backlog.master_repl_offset == 54
    assert backlog.first_byte_offset == 1
    feed.feed_raw(encode_command([b"ping"]))
    assert backlog.master_repl_offset == 68
    feed.feed(0, [b"DEL", b"foo"])  # same db: no SELECT
    assert backlog.master_repl_offset == 90
    assert backlog.read_from(69) == b"*2\r\n$3\r\nDEL\r\n$3\r\nfoo\r\n"
    assert backlog.can_continue_from(91)  # nothing missing
    assert not backlog.can_continue_from(92)


@given(st.integers(1, 64), st.lists(st.binary(max_size=40), max_size=40))
def test_window_is_exactly_the_last_bytes(size, chunks):
    backlog = Backlog(size, master_repl_offset=100)
    everything = b""
    for chunk in chunks:
        backlog.append(chunk)
        everything += chunk
        backlog._check()
    assert backlog.master_repl_offset == 100 + len(everything)
    lowest = 101 + max(0, len(everything) - size)
    assert backlog.read_from(lowest) == everything[lowest - 101:]
    assert not backlog.can_continue_from(lowest - 1) or lowest == 101
    assert backlog.read_from(backlog.master_repl_offset + 1) == b""
