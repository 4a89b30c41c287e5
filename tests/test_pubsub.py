"""Pub/Sub: redis-py's pubsub() against kvrepl in both protocols, and the exact bytes of
SUBSCRIBE / PSUBSCRIBE / UNSUBSCRIBE / PUNSUBSCRIBE compared with a real redis-server."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis
from support import RawClient

from kvrepl.commands.core import Engine, Session
from kvrepl.protocol.replies import Push, Raw

Run = Callable[..., object]


@pytest.fixture
def raw_pair(kvrepl_server: object, redis_server: object, r: redis.Redis, real: redis.Redis
             ) -> Iterator[Callable[[], tuple[RawClient, RawClient]]]:
    """``ours, theirs = raw_pair()``: bare connections to kvrepl and to redis-server."""
    opened: list[RawClient] = []

    def make() -> tuple[RawClient, RawClient]:
        pair = (RawClient(kvrepl_server.port), RawClient(redis_server.port))  # type: ignore
        opened.extend(pair)
        return pair

    yield make
    for client in opened:
        client.close()


def _same(pair: tuple[RawClient, RawClient], *args: object, replies: int = 1) -> bytes:
    ours, theirs = (client.call(*args, replies=replies) for client in pair)
    assert ours == theirs, args
    return ours


def test_subscribe_bytes_resp2(raw_pair: Callable[[], tuple[RawClient, RawClient]]) -> None:
    pair = raw_pair()
    assert _same(pair, "SUBSCRIBE", "a", "b", replies=2) == (
        b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n")
    _same(pair, "SUBSCRIBE", "a")  # already subscribed: confirmed again, count unchanged
    _same(pair, "PSUBSCRIBE", "x*", "y*", "x*", replies=3)
    _same(pair, "PING")
    _same(pair, "PING", "hello")
    _same(pair, "GET", "a")  # refused in RESP2 subscribed mode
    _same(pair, "UNSUBSCRIBE", "a", "nope", replies=2)
    _same(pair, "PUNSUBSCRIBE", replies=2)  # every pattern, in subscription order
    _same(pair, "UNSUBSCRIBE")  # the last channel
    _same(pair, "UNSUBSCRIBE")  # nothing left: [unsubscribe, nil, 0]
    _same(pair, "PUNSUBSCRIBE")
    _same(pair, "GET", "a")  # normal mode again


def test_subscribe_bytes_resp3(raw_pair: Callable[[], tuple[RawClient, RawClient]]) -> None:
    pair = raw_pair()
    ours, theirs = (client.call("HELLO", "3") for client in pair)
    assert ours.startswith(b"%7\r\n") and theirs.startswith(b"%7\r\n")
    _same(pair, "SUBSCRIBE", "a", "b", replies=2)
    _same(pair, "PSUBSCRIBE", "x*")
    _same(pair, "SET", "k", "v")  # RESP3 clients may run anything while subscribed
    _same(pair, "GET", "k")
    _same(pair, "PING")
    # A message to ourselves comes before the PUBLISH reply.
    assert _same(pair, "PUBLISH", "a", "m", replies=2) == (
        b">3\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\nm\r\n:1\r\n")
    _same(pair, "PUBLISH", "xyz", "m2", replies=2)
    _same(pair, "UNSUBSCRIBE", "a", "b", replies=2)
    _same(pair, "PUNSUBSCRIBE", "x*")
    _same(pair, "UNSUBSCRIBE")
    _same(pair, "DEL", "k")


def test_messages_reach_channel_and_pattern_subscribers(
        raw_pair: Callable[[], tuple[RawClient, RawClient]]) -> None:
    subscriber, publisher = raw_pair(), raw_pair()
    _same(subscriber, "SUBSCRIBE", "news.tech")
    _same(subscriber, "PSUBSCRIBE", "news.*")
    assert _same(publisher, "PUBLISH", "news.tech", "hello") == b":2\r\n"
    assert _same(subscriber, "PING", replies=3) == (
        b"*3\r\n$7\r\nmessage\r\n$9\r\nnews.tech\r\n$5\r\nhello\r\n"
        b"*4\r\n$8\r\npmessage\r\n$6\r\nnews.*\r\n$9\r\nnews.tech\r\n$5\r\nhello\r\n"
        b"*2\r\n$4\r\npong\r\n$0\r\n\r\n")
    assert _same(publisher, "PUBLISH", "other", "x") == b":0\r\n"


def test_subscribe_inside_multi(raw_pair: Callable[[], tuple[RawClient, RawClient]]) -> None:
    pair = raw_pair()
    _same(pair, "MULTI")
    _same(pair, "SUBSCRIBE", "a", "b")
    _same(pair, "PING")
    # Redis writes both confirmations into the EXEC array, which announces 2 replies: to a
    # reader the array ends after the second confirmation and PING's reply follows it.
    assert _same(pair, "EXEC", replies=2) == (
        b"*2\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n"
        b"*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n*2\r\n$4\r\npong\r\n$0\r\n\r\n")
    _same(pair, "PING")
    _same(pair, "RESET")
    _same(pair, "PUBSUB", "NUMSUB", "a")


def test_pubsub_introspection(same: Callable[..., object], r: redis.Redis,
                              real: redis.Redis) -> None:
    listeners = []
    for client in (r, real):
        listener = client.pubsub()
        listener.subscribe("news.a", "news.b", "other")
        listener.psubscribe("news.*", "x?")
        for _ in range(5):
            assert listener.get_message(timeout=5)["type"] in ("subscribe", "psubscribe")
        listeners.append(listener)
    same("PUBSUB", "CHANNELS", "news.*", unordered=True)
    assert same("PUBSUB", "CHANNELS", "*", unordered=True) == [b"news.a", b"news.b", b"other"]
    same("PUBSUB", "CHANNELS", "nothing*")
    same("PUBSUB", "NUMSUB", "news.a", "news.b", "missing", "news.a")
    same("PUBSUB", "NUMSUB")
    same("PUBSUB", "NUMPAT")
    same("PUBSUB", "CHANNELS", "a", "b")
    same("PUBSUB", "NOPE")
    same("PUBLISH", "news.a", "hi")
    for listener in listeners:
        listener.unsubscribe()
        listener.punsubscribe()
        listener.close()


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_py_pubsub(kvrepl_server: object, protocol: int) -> None:
    client = kvrepl_server.client(protocol=protocol)  # type: ignore[attr-defined]
    publisher = kvrepl_server.client()  # type: ignore[attr-defined]
    listener = client.pubsub()
    listener.subscribe("chan")
    listener.psubscribe("ch*")
    assert listener.get_message(timeout=5) == {
        "type": "subscribe", "pattern": None, "channel": b"chan", "data": 1}
    assert listener.get_message(timeout=5) == {
        "type": "psubscribe", "pattern": None, "channel": b"ch*", "data": 2}
    assert publisher.publish("chan", "payload") == 2
    assert listener.get_message(timeout=5) == {
        "type": "message", "pattern": None, "channel": b"chan", "data": b"payload"}
    assert listener.get_message(timeout=5) == {
        "type": "pmessage", "pattern": b"ch*", "channel": b"chan", "data": b"payload"}
    listener.unsubscribe("chan")
    assert listener.get_message(timeout=5)["type"] == "unsubscribe"
    assert publisher.publish("chan", "again") == 1
    assert listener.get_message(timeout=5)["type"] == "pmessage"
    listener.punsubscribe()
    assert listener.get_message(timeout=5) == {
        "type": "punsubscribe", "pattern": None, "channel": b"ch*", "data": 0}
    assert publisher.publish("chan", "nobody") == 0
    listener.close()
    client.close()
    publisher.close()


def test_killed_subscriber_is_forgotten(kvrepl_server: object) -> None:
    subscriber = RawClient(kvrepl_server.port)  # type: ignore[attr-defined]
    admin = kvrepl_server.client()  # type: ignore[attr-defined]
    try:
        subscriber.call("SUBSCRIBE", "gone")
        subscriber.call("PSUBSCRIBE", "gone*")
        assert admin.execute_command("PUBSUB", "NUMSUB", "gone") == [b"gone", 1]
        client_id = next(c["id"] for c in admin.client_list() if c["cmd"] == "psubscribe")
        assert admin.execute_command("CLIENT", "KILL", "ID", client_id) == 1
        assert admin.execute_command("PUBSUB", "NUMSUB", "gone") == [b"gone", 0]
        assert admin.execute_command("PUBSUB", "NUMPAT") == 0
        assert admin.publish("gone", "x") == 0
    finally:
        subscriber.close()
        admin.close()


# -- in-process -----------------------------------------------------------------------------


def test_single_confirmation_is_a_push_several_are_raw(run: Run) -> None:
    assert run("SUBSCRIBE", "a") == Push([b"subscribe", b"a", 1])
    several = run("SUBSCRIBE", "b", "c")
    assert type(several) is Raw
    assert several.count(b"*3\r\n$9\r\nsubscribe\r\n") == 2
    assert run("UNSUBSCRIBE", "zzz") == Push([b"unsubscribe", b"zzz", 3])


def test_publish_is_propagated_even_without_changes(run: Run,
                                                    propagated: list[list[bytes]]) -> None:
    assert run("PUBLISH", "ch", "msg") == 0
    assert propagated == [[b"PUBLISH", b"ch", b"msg"]]


def test_messages_are_pushed_to_sessions(engine: Engine, run: Run) -> None:
    listener = engine.new_session()
    engine.execute(listener, [b"SUBSCRIBE", b"c"])
    engine.execute(listener, [b"PSUBSCRIBE", b"*"])
    assert run("PUBLISH", "c", "m") == 2
    assert listener.pending_out == [Push([b"message", b"c", b"m"]),
                                    Push([b"pmessage", b"*", b"c", b"m"])]


def test_reset_and_close_forget_subscriptions(engine: Engine, run: Run,
                                              session: Session) -> None:
    run("SUBSCRIBE", "a", "b")
    run("PSUBSCRIBE", "p*")
    assert run("RESET") == b"RESET"
    assert session.subscriptions == 0
    assert engine.pubsub_channels == {} and engine.pubsub_patterns == {}
    other = engine.new_session()
    engine.execute(other, [b"SUBSCRIBE", b"a"])
    engine.execute(other, [b"PSUBSCRIBE", b"p*"])
    engine.close_session(other)
    assert run("PUBSUB", "NUMSUB", "a") == [b"a", 0]
    assert run("PUBSUB", "NUMPAT") == 0
