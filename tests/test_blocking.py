"""Blocking list commands on a live kvrepl server: clients that wait, who gets served first,
timeouts, chains of BLMOVEs, transactions, disconnects, and what the served commands
propagate.

Each blocked client runs on its own redis-py connection in a thread. Tests synchronize by
polling the server's blocking manager (bounded), never by sleeping and hoping.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest
import redis
import trio
from support import DEADLINE, Call, pack, poll, wait_blocked, waiters

from kvrepl.store.values import ZSet


def _no_waiters(server) -> bool:
    blocking = server.server.blocking
    return not blocking.waiting and not server.engine.keyspace.blocked_keys


def _read_until(sock: socket.socket, expected: bytes) -> bytes:
    data = b""
    while len(data) < len(expected):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


@pytest.fixture
def server(kvrepl_server, r: redis.Redis) -> Iterator[object]:
    """The live server, flushed; afterwards no client may be left waiting."""
    yield kvrepl_server
    poll(lambda: _no_waiters(kvrepl_server), "no client is blocked any more")


def _on_server_thread(server, function: Callable[[], object]) -> object:
    """Run ``function`` on the server's trio thread, where the engine may be touched."""
    return trio.from_thread.run_sync(function, trio_token=server._token)


# -- served by a later push --------------------------------------------------------------------


def test_blpop_served_by_later_lpush(server, r: redis.Redis) -> None:
    waiter = Call(server, "BLPOP", "k1", "k2", "5")
    wait_blocked(server, b"k2")
    assert r.lpush("k2", "v") == 1
    assert waiter.result() == [b"k2", b"v"]
    assert r.exists("k2") == 0  # the served pop emptied the list: the key is gone


@pytest.mark.parametrize("command", [
    ("BLPOP", "q", "5"), ("BRPOP", "q", "5"), ("BLMPOP", "5", "1", "q", "LEFT"),
    ("BLMPOP", "5", "1", "q", "RIGHT", "COUNT", "1"),
])
def test_fifo_among_blocked_clients(server, r: redis.Redis, command: tuple[str, ...]) -> None:
    waiters = []
    for n in range(3):
        waiters.append(Call(server, *command))
        wait_blocked(server, b"q", n + 1)  # one at a time: their arrival order is known
    for element in [b"first", b"second", b"third"]:
        r.rpush("q", element)
    replies = [w.result() for w in waiters]
    if command[0] == "BLMPOP":
        assert replies == [[b"q", [b"first"]], [b"q", [b"second"]], [b"q", [b"third"]]]
    else:
        assert replies == [[b"q", b"first"], [b"q", b"second"], [b"q", b"third"]]


def test_variadic_push_serves_several_clients_in_order(server, r: redis.Redis) -> None:
    waiters = []
    for n in range(3):
        waiters.append(Call(server, "BLPOP", "q", "5"))
        wait_blocked(server, b"q", n + 1)
    extra = Call(server, "BRPOP", "other", "q", "5")
    wait_blocked(server, b"q", 4)
    # One push of five elements: served after the push, head first, in arrival order.
    assert r.lpush("q", "a", "b", "c", "d", "e") == 5
    assert [w.result() for w in waiters] == [[b"q", b"e"], [b"q", b"d"], [b"q", b"c"]]
    assert extra.result() == [b"q", b"a"]
    assert r.lrange("q", 0, -1) == [b"b"]


def test_blmpop_serves_counts_and_deletes(server, r: redis.Redis) -> None:
    """Redis's "BLMPOP with multiple blocked clients", pushes in one transaction."""
    rd1 = Call(server, "BLMPOP", "5", "2", "blist", "blist2", "LEFT", "COUNT", "1")
    wait_blocked(server, b"blist", 1)
    rd2 = Call(server, "BLMPOP", "5", "2", "blist", "blist2", "RIGHT", "COUNT", "10")
    wait_blocked(server, b"blist", 2)
    rd3 = Call(server, "BLMPOP", "5", "2", "blist", "blist2", "LEFT", "COUNT", "10")
    wait_blocked(server, b"blist", 3)
    rd4 = Call(server, "BLMPOP", "5", "2", "blist", "blist2", "RIGHT", "COUNT", "1")
    wait_blocked(server, b"blist", 4)
    pipe = r.pipeline(transaction=True)
    pipe.lpush("blist", "a", "b", "c", "d", "e").lpush("blist2", "1", "2", "3", "4", "5")
    pipe.execute()
    assert rd1.result() == [b"blist", [b"e"]]
    assert rd2.result() == [b"blist", [b"a", b"b", b"c", b"d"]]
    assert rd3.result() == [b"blist2", [b"5", b"4", b"3", b"2", b"1"]]
    assert waiters(server, b"blist2") == 1
    r.lpush("blist2", "1", "2", "3")
    assert rd4.result() == [b"blist2", [b"1"]]
    assert r.lrange("blist2", 0, -1) == [b"3", b"2"]


def test_transaction_pushes_are_isolated_from_blocked_clients(server, r: redis.Redis) -> None:
    waiter = Call(server, "BLPOP", "list", "5")
    wait_blocked(server, b"list")
    pipe = r.pipeline(transaction=True)
    pipe.lpush("list", "a").lpush("list", "b").lpush("list", "c")
    pipe.execute()
    assert waiter.result() == [b"list", b"c"]  # served after EXEC, not after the first LPUSH


# -- timeouts ----------------------------------------------------------------------------------


def test_timeout_returns_nil(server) -> None:
    client = server.client()
    try:
        assert client.blpop(["nothing"], timeout=0.1) is None
        assert client.brpop(["nothing", "either"], timeout=0.1) is None
        assert client.blmove("nothing", "dst", 0.1, "LEFT", "RIGHT") is None
        assert client.brpoplpush("nothing", "dst", 0.1) is None
        assert client.blmpop(0.1, 1, "nothing", direction="LEFT") is None
        assert client.exists("dst") == 0
    finally:
        client.close()
    assert _no_waiters(server)


def test_timeout_reply_bytes(server) -> None:
    """RESP2 ``*-1`` for every blocking list command, BLMOVE included (Redis's
    replyToBlockedClientTimedOut), and RESP3 ``_``."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE) as sock:
        sock.sendall(pack("BLMOVE", "nothing", "dst", "LEFT", "LEFT", "0.05")
                     + pack("BLPOP", "nothing", "0.05"))
        assert _read_until(sock, b"*-1\r\n*-1\r\n") == b"*-1\r\n*-1\r\n"
        sock.sendall(pack("HELLO", "3"))
        sock.recv(65536)
        sock.sendall(pack("BRPOPLPUSH", "nothing", "dst", "0.05"))
        assert _read_until(sock, b"_\r\n") == b"_\r\n"


def test_timeout_then_push_reaches_the_next_client(server, r: redis.Redis) -> None:
    # The first client must time out while the second is queued behind it. On a loaded
    # machine a short timeout can end before the second client is even queued; then the
    # round proves nothing, so it is retried with a longer timeout (bounded).
    for timeout in ("0.05", "0.5", "3"):
        short = Call(server, "BLPOP", "q", timeout)
        wait_blocked(server, b"q", 1)
        long = Call(server, "BLPOP", "q", "10")
        poll(lambda first=short: waiters(server, b"q") == 2 or not first.is_alive(),
             "the second client queued, or the first one answered")
        queued_behind = waiters(server, b"q") == 2
        assert short.result() is None
        if queued_behind:
            break
        wait_blocked(server, b"q", 1)  # the round proved nothing: release the second client
        r.rpush("q", "x")
        assert long.result() == [b"q", b"x"]
    else:
        pytest.fail("the first client always timed out before the second was queued")
    poll(lambda: waiters(server, b"q") == 1, "the timed out client left the queue")
    r.rpush("q", "x")
    assert long.result() == [b"q", b"x"]


# -- BLMOVE / BRPOPLPUSH chains ----------------------------------------------------------------


@pytest.mark.parametrize("wherefrom, whereto", [
    ("LEFT", "LEFT"), ("LEFT", "RIGHT"), ("RIGHT", "LEFT"), ("RIGHT", "RIGHT")])
def test_blmove_into_a_list_another_client_blpops(server, r: redis.Redis, wherefrom: str,
                                                  whereto: str) -> None:
    popper = Call(server, "BLPOP", "target", "5")
    wait_blocked(server, b"target")
    mover = Call(server, "BLMOVE", "blist", "target", wherefrom, whereto, "5")
    wait_blocked(server, b"blist")
    r.rpush("blist", "foo")
    assert mover.result() == b"foo"
    assert popper.result() == [b"target", b"foo"]
    assert r.exists("blist", "target") == 0


def test_linked_blmoves(server, r: redis.Redis) -> None:
    first = Call(server, "BLMOVE", "list1", "list2", "RIGHT", "LEFT", "5")
    wait_blocked(server, b"list1")
    second = Call(server, "BLMOVE", "list2", "list3", "LEFT", "RIGHT", "5")
    wait_blocked(server, b"list2")
    r.rpush("list1", "foo")
    assert first.result() == b"foo"
    assert second.result() == b"foo"
    assert r.lrange("list1", 0, -1) == []
    assert r.lrange("list2", 0, -1) == []
    assert r.lrange("list3", 0, -1) == [b"foo"]


def test_circular_and_self_referential_brpoplpush(server, r: redis.Redis) -> None:
    first = Call(server, "BRPOPLPUSH", "list1", "list2", "5")
    wait_blocked(server, b"list1")
    second = Call(server, "BRPOPLPUSH", "list2", "list1", "5")
    wait_blocked(server, b"list2")
    r.rpush("list1", "foo")
    assert first.result() == b"foo"
    assert second.result() == b"foo"
    assert r.lrange("list1", 0, -1) == [b"foo"]
    assert r.exists("list2") == 0

    itself = Call(server, "BRPOPLPUSH", "blist", "blist", "5")
    wait_blocked(server, b"blist")
    r.rpush("blist", "bar")
    assert itself.result() == b"bar"
    assert r.lrange("blist", 0, -1) == [b"bar"]


def test_brpoplpush_push_affects_watch(server, r: redis.Redis) -> None:
    r.set("somekey", "somevalue")
    mover = Call(server, "BRPOPLPUSH", "srclist", "dstlist", "5")
    wait_blocked(server, b"srclist")
    watcher = server.client()
    try:
        pipe = watcher.pipeline(transaction=True)
        pipe.watch("dstlist")
        pipe.multi()
        pipe.get("somekey")
        r.lpush("srclist", "element")  # the served BRPOPLPUSH pushes onto dstlist
        assert mover.result() == b"element"
        with pytest.raises(redis.WatchError):
            pipe.execute()
    finally:
        watcher.close()


# -- transactions ------------------------------------------------------------------------------


def test_blocking_inside_multi_answers_at_once(server, r: redis.Redis) -> None:
    pipe = r.pipeline(transaction=True)
    pipe.blpop(["missing"], 0).brpop(["missing"], 0).blmove("missing", "d", 0, "LEFT", "LEFT")
    pipe.brpoplpush("missing", "d", 0).blmpop(0, 1, "missing", direction="LEFT")
    assert pipe.execute() == [None, None, None, None, None]
    assert _no_waiters(server)


# -- disconnects -------------------------------------------------------------------------------


def test_disconnect_while_blocked_leaves_no_waiter(server, r: redis.Redis) -> None:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE)
    # No timeout: only the disconnect can end this wait (a timeout racing the poll made the
    # outcome a matter of how soon a loaded host ran the server's thread).
    sock.sendall(pack("BLPOP", "gone", "0"))
    wait_blocked(server, b"gone")
    sock.close()
    poll(lambda: _no_waiters(server), "the disconnected client's wait is over")
    r.lpush("gone", "kept")
    assert r.lrange("gone", 0, -1) == [b"kept"]  # nobody popped it for a dead client


def test_disconnect_after_sending_more_while_blocked(server, r: redis.Redis) -> None:
    """A blocked client that sends another command and then hangs up is noticed too."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE)
    sock.sendall(pack("BLPOP", "gone", "0"))  # only the disconnect ends it
    wait_blocked(server, b"gone")
    sock.sendall(pack("PING"))
    sock.close()
    poll(lambda: _no_waiters(server), "the disconnected client's wait is over")
    r.lpush("gone", "kept")
    assert r.lrange("gone", 0, -1) == [b"kept"]


def test_pipelined_commands_run_after_the_blocked_one(server, r: redis.Redis) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE) as sock:
        sock.sendall(pack("BLPOP", "q", "5") + pack("RPUSH", "q", "after") + pack("LLEN", "q"))
        wait_blocked(server, b"q")
        assert r.llen("q") == 0  # the RPUSH waits behind the blocked BLPOP
        r.rpush("q", "x")
        expected = b"*2\r\n$1\r\nq\r\n$1\r\nx\r\n:1\r\n:1\r\n"
        assert _read_until(sock, expected) == expected


# -- types -------------------------------------------------------------------------------------


def test_wrong_type_key(server, r: redis.Redis) -> None:
    r.set("s", "string")
    client = server.client()
    try:
        for args in [("BLPOP", "missing", "s", "5"), ("BRPOP", "s", "5"),
                     ("BLMPOP", "5", "2", "missing", "s", "LEFT"),
                     ("BLMOVE", "s", "d", "LEFT", "LEFT", "5"), ("BRPOPLPUSH", "s", "d", "5")]:
            with pytest.raises(redis.ResponseError, match="^WRONGTYPE"):
                client.execute_command(*args)
    finally:
        client.close()
    assert _no_waiters(server)


def test_not_woken_by_a_key_of_another_type(server, r: redis.Redis) -> None:
    waiter = Call(server, "BLPOP", "list", "5")
    wait_blocked(server, b"list")
    pipe = r.pipeline(transaction=True)
    pipe.lpush("list", "a").delete("list").set("list", "foo")
    pipe.execute()
    assert waiters(server, b"list") == 1
    r.delete("list")
    r.lpush("list", "b")
    assert waiter.result() == [b"list", b"b"]


def test_not_woken_by_a_sorted_set(server, r: redis.Redis) -> None:
    waiter = Call(server, "BLPOP", "k", "other", "5")
    wait_blocked(server, b"k")
    r.zadd("k", {"m": 1})  # wakes sorted set waiters only: this client keeps waiting
    assert waiters(server, b"k") == 1
    assert r.zrange("k", 0, -1) == [b"m"]
    r.rpush("other", "v")
    assert waiter.result() == [b"other", b"v"]


def test_blocked_blmove_with_wrong_type_destination(server, r: redis.Redis) -> None:
    r.set("target1", "nolist")
    first = Call(server, "BRPOPLPUSH", "blist", "target1", "5")
    wait_blocked(server, b"blist", 1)
    second = Call(server, "BRPOPLPUSH", "blist", "target2", "5")
    wait_blocked(server, b"blist", 2)
    r.lpush("blist", "foo")
    error = first.result()
    assert isinstance(error, redis.ResponseError) and str(error).startswith("WRONGTYPE")
    assert second.result() == b"foo"
    assert r.lrange("target2", 0, -1) == [b"foo"]
    assert r.exists("blist") == 0


def test_blocked_brpoplpush_wrong_destination_keeps_the_source(server, r: redis.Redis) -> None:
    r.set("target", "nolist")
    mover = Call(server, "BRPOPLPUSH", "blist", "target", "5")
    wait_blocked(server, b"blist")
    r.rpush("blist", "a", "b", "c")
    error = mover.result()
    assert isinstance(error, redis.ResponseError) and str(error).startswith("WRONGTYPE")
    assert r.lrange("blist", 0, -1) == [b"a", b"b", b"c"]


# -- keys moved into place ---------------------------------------------------------------------


def test_woken_by_rename_and_sort_store(server, r: redis.Redis) -> None:
    waiter = Call(server, "BLPOP", "foo", "5")
    wait_blocked(server, b"foo")
    r.lpush("bob", "abc", "def", "hij")
    r.rename("bob", "foo")
    assert waiter.result() == [b"foo", b"hij"]
    r.delete("foo")
    waiter = Call(server, "BLPOP", "foo", "5")
    wait_blocked(server, b"foo")
    r.lpush("notfoo", "hello", "hola", "aguacate", "konichiwa", "zanzibar")
    r.sort("notfoo", alpha=True, store="foo")
    assert waiter.result() == [b"foo", b"aguacate"]


def test_woken_by_swapdb(server, r: redis.Redis) -> None:
    other = server.client(db=1)
    try:
        other.rpush("k", "hello")
        waiter = Call(server, "BRPOP", "k", "5", db=9)
        wait_blocked(server, b"k", db=9)
        r.swapdb(1, 9)
        assert waiter.result() == [b"k", b"hello"]
    finally:
        other.close()


# -- which key and which client a push serves --------------------------------------------------


def test_served_from_the_key_that_became_ready(server, r: redis.Redis) -> None:
    """Redis serves a blocked client from the first key made ready, not from the first key
    of its argument list."""
    waiter = Call(server, "BLPOP", "a", "b", "5")
    wait_blocked(server, b"b")
    pipe = r.pipeline(transaction=True)
    pipe.rpush("b", "x").rpush("a", "y")
    pipe.execute()
    assert waiter.result() == [b"b", b"x"]
    assert r.lrange("a", 0, -1) == [b"y"]


def test_list_waiter_behind_a_sorted_set_waiter(server, r: redis.Redis) -> None:
    """A BZPOPMIN first in line on a key that becomes a list must not stop the BLPOP behind
    it from being served (Redis skips waiters of another type)."""
    # Short timeouts: without the fix both would stay blocked, and the test must not linger.
    zwaiter = Call(server, "BZPOPMIN", "k", "1")
    wait_blocked(server, b"k", 1)
    lwaiter = Call(server, "BLPOP", "k", "1")
    wait_blocked(server, b"k", 2)
    r.rpush("k", "v")
    assert lwaiter.result() == [b"k", b"v"]
    assert waiters(server, b"k") == 1
    r.delete("k")
    r.zadd("k", {"m": 2})
    assert zwaiter.result()[:2] == [b"k", b"m"]


def test_a_zset_created_by_the_engine_does_not_serve_list_waiters(server) -> None:
    """The store signals lists and sorted sets alike; a list waiter re-run on a sorted set
    stays blocked (driven on the server thread, without any zset command)."""
    waiter = Call(server, "BLPOP", "z", "5")
    wait_blocked(server, b"z")

    def add_zset() -> None:
        engine = server.engine
        engine.keyspace.dbs[0].add(b"z", ZSet())
        engine.on_ready_keys()

    _on_server_thread(server, add_zset)
    assert waiters(server, b"z") == 1
    _on_server_thread(server, lambda: server.engine.keyspace.dbs[0].delete(b"z"))
    client = server.client()
    try:
        client.rpush("z", "v")
    finally:
        client.close()
    assert waiter.result() == [b"z", b"v"]


# -- propagation -------------------------------------------------------------------------------


def test_served_blocked_commands_propagate_their_effect(server, r: redis.Redis,
                                                        server_propagated) -> None:
    cases = [
        (("BLPOP", "k", "5"), [b"LPOP", b"k"]),
        (("BRPOP", "k", "5"), [b"RPOP", b"k"]),
        (("BLMPOP", "5", "1", "k", "LEFT", "COUNT", "5"), [b"LPOP", b"k", b"2"]),
        (("BLMPOP", "5", "1", "k", "RIGHT"), [b"RPOP", b"k", b"1"]),
        # Served while blocked, BLMOVE propagates Redis's shared "left"/"right" objects.
        (("BLMOVE", "k", "dst", "RIGHT", "LEFT", "5"), [b"LMOVE", b"k", b"dst", b"right", b"left"]),
        (("BRPOPLPUSH", "k", "dst", "5"), [b"RPOPLPUSH", b"k", b"dst"]),
    ]
    for command, expected in cases:
        del server_propagated[:]
        waiter = Call(server, *command)
        wait_blocked(server, b"k")
        r.rpush("k", "a", "b")
        waiter.result()
        assert server_propagated[0] == [b"RPUSH", b"k", b"a", b"b"]
        assert server_propagated[1:] == [expected], command
        r.delete("k", "dst")
    assert not any(argv[0].upper().startswith(b"B") for argv in server_propagated)
