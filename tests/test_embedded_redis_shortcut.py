"""``node.redis().set/get``'s own shortcut (the plain forms straight to the engine, before
redis-py's argument building) against redis-py over TCP to a real redis-server 7.0: every
branch the shortcut takes, and every case that must not take it, give what redis-py gives
(values, encodings, DataError, response callbacks, MULTI/WATCH on the client's connection,
its pipeline and pub/sub, QUIT, close, a single-connection client, RESP3)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

import kvrepl
from kvrepl.commands.core import Engine

Outcome = tuple[str, object]


def _outcome(call: Callable[[], object]) -> Outcome:
    try:
        result = call()
    except (redis.RedisError, UnicodeDecodeError) as err:  # the latter: decoding a reply
        return type(err).__name__, str(err)
    if isinstance(result, (list, tuple)):
        return type(result).__name__, [(type(item).__name__, item) for item in result]
    return type(result).__name__, result


# What redis-py cannot encode: DataError before anything is sent.
BAD = [None, True, False, [1], {"a": 1}, (1,), 1j, object]
# Keys and values of every kind redis-py encodes.
GOOD = [(b"k", b"v"), ("k", "v"), (b"\xff", b"\xfe\x00"), ("n", 10), ("f", 1.5),
        (-7, 3.25e20), ("mv", memoryview(b"mv")), ("big", "x" * 5000), ("", "")]


def scenario(client: redis.Redis, other: redis.Redis, wait: float) -> list[Outcome]:
    """The calls, one outcome each; ``other`` is a second client of the same server (it
    changes a watched key), ``wait`` how long a pub/sub message may take to come."""
    seen: list[Outcome] = []

    def record(call: Callable[[], object]) -> None:
        seen.append(_outcome(call))

    for key, value in GOOD:  # the shortcut's plain forms
        record(lambda key=key, value=value: client.set(key, value))
        record(lambda key=key: client.get(key))
    record(lambda: client.get("missing"))
    for bad in BAD:
        record(lambda bad=bad: client.set(bad, "v"))
        record(lambda bad=bad: client.set("k", bad))
        record(lambda bad=bad: client.get(bad))
    record(lambda: client.get("k"))  # unchanged by the refused calls
    # Options: redis-py's own set, even when given as the defaults.
    record(lambda: client.set("o", "v", ex=100))
    record(lambda: client.ttl("o"))
    record(lambda: client.set("o", "w", 200))  # ex, positionally
    record(lambda: client.set("o", "w", nx=True))
    record(lambda: client.set("o", "x", nx=False))
    record(lambda: client.ttl("o"))
    record(lambda: client.set("o", "y", get=True))
    record(lambda: client.set("o", "z", xx=True, keepttl=True))
    record(lambda: client.set("new", "z", xx=True))
    record(lambda: client.set("o", "v", ex=1, px=1))  # redis-py's own DataError
    # A key with a TTL and a value of another type: the general path behind the shortcut.
    record(lambda: client.set("t", "v", ex=100))
    record(lambda: client.get("t"))
    record(lambda: client.set("t", "w"))
    record(lambda: (client.ttl("t"), client.get("t")))
    record(lambda: client.rpush("l", "a"))
    record(lambda: client.get("l"))
    record(lambda: client.set("l", "s"))
    record(lambda: (client.type("l"), client.get("l")))
    # MULTI on the client's own connection: queued, then run by EXEC.
    record(lambda: client.execute_command("MULTI"))
    record(lambda: client.set("m", "1"))
    record(lambda: client.get("m"))
    record(lambda: client.execute_command("EXEC"))
    # WATCH on it: another client's change makes EXEC fail.
    client.set("w", "0")
    record(lambda: client.execute_command("WATCH", "w"))
    record(lambda: other.set("w", "theirs"))
    record(lambda: client.execute_command("MULTI"))
    record(lambda: client.set("w", "mine"))
    record(lambda: client.execute_command("EXEC"))
    record(lambda: client.get("w"))
    # Its pipeline and pub/sub run on their own connections, the shortcut beside them.
    pipe = client.pipeline(transaction=False)
    pipe.set("p", "1").get("p").set("p", "2", nx=True).get("p")
    record(lambda: pipe.execute())
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("ch")
    while pubsub.get_message(timeout=wait) is not None:  # the confirmation
        pass
    record(lambda: client.set("ps", "v"))
    record(lambda: client.get("ps"))
    record(lambda: client.publish("ch", "hello"))
    message = pubsub.get_message(timeout=wait or None)
    seen.append(("message", message and (message["channel"], message["data"])))
    pubsub.close()
    # Response callbacks of the client's own.
    client.set_response_callback("SET", lambda response, **options: ("set", response))
    client.set_response_callback("GET", lambda response, **options: ("get", response))
    record(lambda: client.set("c", "v"))
    record(lambda: client.get("c"))
    record(lambda: client.get("none"))
    record(lambda: client.set("c", "w", get=True))
    # QUIT ends the session; close() the connection: the next call gets a new one.
    record(lambda: client.execute_command("QUIT"))
    record(lambda: client.set("q", "v"))
    record(lambda: client.get("q"))
    client.close()
    record(lambda: client.set("z", "v"))
    record(lambda: client.get("z"))
    return seen


@pytest.fixture
def real(real_clients: Callable[..., redis.Redis]) -> Callable[..., redis.Redis]:
    """``real(**kwargs)``: a redis-py client over TCP to the flushed redis-server."""
    return real_clients


class GeneralPath:
    """Which commands reach the engine's general dispatch (the real ``Engine.execute``,
    wrapped to note each command's name): the shortcut's calls must not."""

    def __init__(self, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
        self.names: list[bytes] = []
        execute = engine.execute

        def noted(session: object, argv: list[bytes], *args: Any, **kwargs: Any) -> object:
            self.names.append(bytes(argv[0]).upper())
            return execute(session, argv, *args, **kwargs)

        monkeypatch.setattr(engine, "execute", noted)

    def taken(self, call: Callable[[], object]) -> list[bytes]:
        """The commands ``call`` sent the general way."""
        start = len(self.names)
        call()
        return self.names[start:]


KWARGS = [{}, {"decode_responses": True}, {"protocol": 3},
          {"protocol": 3, "decode_responses": True}, {"single_connection_client": True},
          {"protocol": 2, "encoding": "latin-1", "decode_responses": True}]


@pytest.mark.parametrize("kwargs", KWARGS, ids=["default", "decoded", "resp3",
                                                "resp3-decoded", "single-connection",
                                                "latin-1"])
async def test_shortcut_same_as_redis_py_over_tcp(real: Callable[..., redis.Redis],
                                                  kwargs: dict[str, Any]) -> None:
    async with kvrepl.Master() as master:
        mine = scenario(master.redis(**kwargs), master.redis(), 0)
        theirs = scenario(real(**kwargs), real(), 0.5)
    assert len(mine) == len(theirs)
    mismatches = [f"#{index}: kvrepl {a!r}, redis {b!r}"
                  for index, (a, b) in enumerate(zip(mine, theirs, strict=True))
                  if a != b]
    assert not mismatches, "\n".join(mismatches)


@pytest.mark.parametrize("kwargs", [{}, {"protocol": 3, "decode_responses": True}])
async def test_plain_forms_skip_the_general_path_and_the_rest_take_it(
        monkeypatch: pytest.MonkeyPatch, kwargs: dict[str, Any]) -> None:
    """The branches are the ones meant: plain SET/GET never reach the general dispatch;
    options, a write over a TTL or another type, WRONGTYPE, MULTI do."""
    async with kvrepl.Master() as master:
        client = master.redis(**kwargs)
        client.ping()  # the client's own connection is made
        general = GeneralPath(master.engine, monkeypatch)
        assert general.taken(lambda: client.set("k", "v")) == []
        assert general.taken(lambda: client.set(b"n", 1.5)) == []
        assert general.taken(lambda: client.get("k")) == []
        assert general.taken(lambda: client.get("missing")) == []
        # redis-py's own set sends a plain SET: execute_command's shortcut takes it.
        assert general.taken(lambda: client.set("k", "v", nx=False)) == []
        assert general.taken(lambda: client.set("k", "v", ex=10)) == [b"SET"]
        assert general.taken(lambda: client.get("k")) == []  # a TTL not due: still direct
        assert general.taken(lambda: client.set("k", "w")) == [b"SET"]  # drops the TTL
        assert general.taken(lambda: client.set("k", "w")) == []
        client.rpush("l", "a")
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            general.taken(lambda: client.get("l"))
        assert general.names[-1] == b"GET"
        assert general.taken(lambda: client.set("l", "v")) == [b"SET"]
        with pytest.raises(redis.DataError):
            general.taken(lambda: client.set("k", None))
        assert general.names[-1] == b"SET"  # nothing was sent for the refused call
        client.execute_command("MULTI")
        assert general.taken(lambda: client.set("k", "v")) == [b"SET"]
        assert general.taken(lambda: client.get("k")) == [b"GET"]
        client.execute_command("DISCARD")


async def test_unauthenticated_and_restricted_users_as_redis_py_over_tcp(
        real: Callable[..., redis.Redis]) -> None:
    """Where the lanes must leave the call to the general path's checks: NOAUTH, and an
    ACL user's NOPERM for keys outside its patterns."""
    def calls(admin: redis.Redis, make: Callable[..., redis.Redis]) -> list[Outcome]:
        admin.acl_setuser("u", enabled=True, passwords=["+p"], keys=["a*"],
                          commands=["+@all"])
        seen = []
        # No retries: redis-py retries an AuthenticationError (a ConnectionError) with
        # backoff over TCP; its answer is the same.
        once = Retry(NoBackoff(), 0)
        anonymous, user = make(retry=once), make(username="u", password="p", retry=once)
        for client in (anonymous, user):
            for key in ("a1", "b1"):
                seen.append(_outcome(lambda client=client, key=key: client.set(key, "v")))
                seen.append(_outcome(lambda client=client, key=key: client.get(key)))
        return seen

    async with kvrepl.Master(requirepass="pw") as master:
        mine = calls(master.redis(password="pw"), master.redis)
    admin = real()
    admin.config_set("requirepass", "pw")
    try:
        theirs = calls(real(password="pw"), real)
    finally:
        real(password="pw").config_set("requirepass", "")
        real().acl_deluser("u")
    assert mine == theirs
    assert mine[0][0] == "AuthenticationError" and mine[6][0] == "NoPermissionError"


async def test_shortcut_when_the_node_is_not_running() -> None:
    master = kvrepl.Master()
    client = master.redis()
    with pytest.raises(redis.ConnectionError, match="not running"):
        client.set("k", "v")
    with pytest.raises(redis.ConnectionError, match="not running"):
        client.get("k")
    async with master:
        assert client.set("k", "v") is True
        assert client.get("k") == b"v"
    with pytest.raises(redis.DataError):  # refused before any connection is tried
        client.set("k", None)
