"""``kvrepl.Master(users=...)``: ACL users for the node's network clients, given as
redis.conf ``user`` lines or a mapping; redis-py over TCP sees them as a redis-server's
clients would, and the data methods keep every right."""

from __future__ import annotations

import pytest
import redis
import trio
from redis.backoff import NoBackoff
from redis.retry import Retry

import kvrepl
from kvrepl.config import ConfigError


@pytest.mark.parametrize("users", [
    ["user alice on >wonder ~app:* +@all", "bob on >builder ~* +@read", "default off"],
    {"alice": "on >wonder ~app:* +@all", "bob": ["on", ">builder", "~*", "+@read"],
     "default": "off"},
])
async def test_users_for_tcp_clients(users: object) -> None:
    async with kvrepl.Master(port=0, users=users) as master:
        # redis-py's sync client waits for replies: it runs on a thread of its own while
        # the node serves it on this one.
        await trio.to_thread.run_sync(_as_tcp_clients, master.port)
        # The embedded API keeps full rights; node.redis() logs in as a client does.
        assert master.set("other", "embedded") is True
        assert master.redis(username="bob", password="builder").get("other") == b"embedded"
        with pytest.raises(redis.AuthenticationError):  # the default user is off
            master.redis().get("other")


def _client(port: int, **kwargs: object) -> redis.Redis:
    # No retries: a refused login is the answer, not a network failure to wait out.
    return redis.Redis(port=port, socket_timeout=10, retry=Retry(NoBackoff(), 0), **kwargs)


def _as_tcp_clients(port: int) -> None:
    alice = _client(port, username="alice", password="wonder")
    assert alice.set("app:1", "x") is True
    with pytest.raises(redis.exceptions.NoPermissionError):
        alice.set("other", "x")
    bob = _client(port, username="bob", password="builder")
    assert bob.get("app:1") == b"x"
    with pytest.raises(redis.exceptions.NoPermissionError):
        bob.set("app:2", "y")
    with pytest.raises(redis.AuthenticationError):
        _client(port, username="alice", password="wrong").ping()
    with pytest.raises(redis.AuthenticationError):  # the default user is off
        _client(port).ping()
    assert sorted(alice.acl_users()) == ["alice", "bob", "default"]
    alice.close()
    bob.close()


def test_bad_users_are_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="nosuchrule"):
        kvrepl.Master(users=["alice on nosuchrule"])
    with pytest.raises(ConfigError, match="twice"):
        kvrepl.Master(users=["alice on", "user alice off"])
    with pytest.raises(TypeError):
        kvrepl.Master(users="alice on")  # type: ignore[arg-type]
