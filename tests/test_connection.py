"""Connection commands and CLIENT, compared with redis-server where the output is
deterministic (client ids, addresses and ages are not)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis
from support import DEADLINE, RawClient, RedisServer, ThreadedServer, kvrepl_and_redis

from kvrepl.commands.core import Engine
from kvrepl.config import Config
from kvrepl.errors import ReplyError

CLIENT_FIELDS = [
    "id", "addr", "laddr", "fd", "name", "age", "idle", "flags", "db", "sub", "psub", "ssub",
    "multi", "qbuf", "qbuf-free", "argv-mem", "multi-mem", "rbs", "rbp", "obl", "oll", "omem",
    "tot-mem", "events", "cmd", "user", "redir", "resp"]


def _fields(line: bytes | str) -> dict[str, str]:
    text = line.decode() if isinstance(line, bytes) else line
    return dict(item.split("=", 1) for item in text.strip().split(" "))


def _order(line: bytes | str) -> list[str]:
    text = line.decode() if isinstance(line, bytes) else line
    return [item.split("=", 1)[0] for item in text.strip().split(" ")]


@pytest.fixture
def wires(kvrepl_server: ThreadedServer, redis_server: RedisServer, r: redis.Redis,
          real: redis.Redis) -> Iterator[Callable[[], tuple[RawClient, RawClient]]]:
    opened: list[RawClient] = []

    def make() -> tuple[RawClient, RawClient]:
        pair = (RawClient(kvrepl_server.port), RawClient(redis_server.port))
        opened.extend(pair)
        return pair

    yield make
    for wire in opened:
        wire.close()


def _both(pair: tuple[RawClient, RawClient], *args: object) -> bytes:
    ours, theirs = (wire.call(*args) for wire in pair)
    assert ours == theirs, args
    return ours


_HELLO_ID = re.compile(rb"\$2\r\nid\r\n:\d+\r\n")


def _hello(pair: tuple[RawClient, RawClient], *args: object) -> bytes:
    """HELLO replies compared with the client id masked."""
    ours, theirs = (_HELLO_ID.sub(b"ID", wire.call(*args)) for wire in pair)
    assert ours == theirs, args
    return ours


# -- PING ECHO SELECT QUIT -------------------------------------------------------------------


def test_ping_echo_select(same: Callable[..., object]) -> None:
    same("PING")
    same("PING", "hello")
    same("PING", "a", "b")
    same("ECHO", "x")
    same("ECHO")
    for index in ("15", "16", "-1", "x", "99999999999", "2147483648", "-2147483649", "1.5"):
        same("SELECT", index)
    same("SELECT", "0")


def test_quit_closes_after_ok(kvrepl_server: ThreadedServer) -> None:
    wire = RawClient(kvrepl_server.port)
    assert wire.call("QUIT") == b"+OK\r\n"
    assert wire.closed()
    wire.close()


# -- HELLO AUTH -------------------------------------------------------------------------------


def test_hello(wires: Callable[[], tuple[RawClient, RawClient]]) -> None:
    pair = wires()
    assert _hello(pair, "HELLO").startswith(b"*14\r\n$6\r\nserver\r\n$5\r\nredis\r\n")
    _hello(pair, "HELLO", "3")
    _hello(pair, "HELLO")  # keeps RESP3
    _both(pair, "HELLO", "4")
    _both(pair, "HELLO", "1")
    _both(pair, "HELLO", "abc")
    _both(pair, "HELLO", "3", "foo")
    _both(pair, "HELLO", "3", "AUTH", "a")
    _both(pair, "HELLO", "3", "SETNAME")
    _both(pair, "HELLO", "3", "SETNAME", "a b")
    _hello(pair, "HELLO", "2", "SETNAME", "conn-name", "AUTH", "default", "anything")
    _both(pair, "CLIENT", "GETNAME")
    _both(pair, "HELLO", "3", "AUTH", "someone", "pw")
    # SETNAME takes effect even when a later option is wrong.
    _both(pair, "HELLO", "3", "SETNAME", "other", "bogus")
    _both(pair, "CLIENT", "GETNAME")


def test_auth_without_password(wires: Callable[[], tuple[RawClient, RawClient]]) -> None:
    pair = wires()
    _both(pair, "AUTH", "x")
    _both(pair, "AUTH", "a", "b", "c")
    _both(pair, "AUTH", "default", "whatever")
    _both(pair, "AUTH", "someone", "whatever")


@pytest.fixture(scope="module")
def locked_servers() -> Iterator[tuple[ThreadedServer, RedisServer]]:
    with kvrepl_and_redis(Config(save=(), requirepass="s3cret")) as pair:
        # Set once started: the start's probe does not authenticate.
        pair[1].client().config_set("requirepass", "s3cret")
        yield pair


def test_requirepass(locked_servers: tuple[ThreadedServer, RedisServer]) -> None:
    pair = (RawClient(locked_servers[0].port), RawClient(locked_servers[1].port))
    try:
        _both(pair, "GET", "x")
        _both(pair, "PING")
        _both(pair, "HELLO", "3")
        _both(pair, "AUTH", "wrong")
        _both(pair, "AUTH", "default", "wrong")
        _both(pair, "HELLO", "3", "AUTH", "default", "wrong")
        _hello(pair, "HELLO", "3", "AUTH", "default", "s3cret")
        _both(pair, "GET", "x")
        _both(pair, "RESET")  # back to unauthenticated
        _both(pair, "GET", "x")
        _both(pair, "AUTH", "s3cret")
        _both(pair, "AUTH", "default", "s3cret")
        _both(pair, "PING")
    finally:
        for wire in pair:
            wire.close()


# -- RESET ----------------------------------------------------------------------------------


def test_reset_clears_connection_state(wires: Callable[[], tuple[RawClient, RawClient]]) -> None:
    pair = wires()
    _both(pair, "SELECT", "3")
    _both(pair, "SET", "reset-key", "v")
    _both(pair, "CLIENT", "SETNAME", "named")
    _both(pair, "WATCH", "reset-key")
    _hello(pair, "HELLO", "3")
    _both(pair, "MULTI")
    _both(pair, "RESET")
    _both(pair, "EXEC")  # no MULTI any more
    _both(pair, "CLIENT", "GETNAME")
    _both(pair, "GET", "reset-key")  # db 0 again, RESP2 again
    _both(pair, "SUBSCRIBE", "ch")
    _both(pair, "RESET")
    _both(pair, "GET", "reset-key")  # not subscribed any more
    _both(pair, "SELECT", "3")
    _both(pair, "DEL", "reset-key")


def test_reset_ends_monitor(engine: Engine) -> None:
    monitor = engine.new_session()
    engine.execute(monitor, [b"MONITOR"])
    assert engine.monitors == [monitor]
    assert engine.execute(monitor, [b"RESET"]) == b"RESET"
    assert engine.monitors == [] and not monitor.monitor


def test_reset_refused_to_replication_links(engine: Engine) -> None:
    link = engine.new_session()
    link.is_master = True
    reply = engine.execute(link, [b"RESET"])
    assert isinstance(reply, ReplyError)
    assert reply.message == "ERR can only reset normal client connections"


# -- CLIENT ---------------------------------------------------------------------------------


def test_client_errors_match_redis(same: Callable[..., object]) -> None:
    for args in (
        ("CLIENT", "KILL", "1.2.3.4:5"), ("CLIENT", "KILL", "ID", "0"),
        ("CLIENT", "KILL", "ID", "abc"), ("CLIENT", "KILL", "TYPE", "foo"),
        ("CLIENT", "KILL", "ID", "99", "MAXAGE", "1"), ("CLIENT", "KILL", "SKIPME", "maybe"),
        ("CLIENT", "KILL", "USER", "nobody"), ("CLIENT", "KILL", "ID", "123456789"),
        ("CLIENT", "KILL", "ADDR", "1.1.1.1:1", "SKIPME", "no"), ("CLIENT", "KILL", "ID"),
        ("CLIENT", "LIST", "TYPE", "foo"), ("CLIENT", "LIST", "ID", "1", "abc"),
        ("CLIENT", "LIST", "foo"), ("CLIENT", "LIST", "TYPE"), ("CLIENT", "LIST", "ID", "999999"),
        ("CLIENT", "UNBLOCK", "1", "foo"), ("CLIENT", "UNBLOCK", "abc"),
        ("CLIENT", "UNBLOCK", "999999"), ("CLIENT", "UNBLOCK", "999999", "ERROR"),
        ("CLIENT", "SETNAME", "a b"), ("CLIENT", "SETNAME", "a\nb"), ("CLIENT", "SETNAME", "é"),
        ("CLIENT", "NO-EVICT", "maybe"), ("CLIENT", "NO-EVICT", "on"), ("CLIENT", "NO-EVICT", "OFF"),
        ("CLIENT", "FOO"), ("CLIENT",), ("CLIENT", "ID", "x"), ("CLIENT", "GETREDIR"),
        ("CLIENT", "TRACKINGINFO"), ("CLIENT", "CACHING", "yes"), ("CLIENT", "CACHING", "x"),
    ):
        same(*args)


def test_client_setname_getname(same: Callable[..., object]) -> None:
    same("CLIENT", "GETNAME")
    same("CLIENT", "SETNAME", "my-conn_1!")
    same("CLIENT", "GETNAME")
    same("CLIENT", "SETNAME", "")
    same("CLIENT", "GETNAME")


def test_client_help_lists_implemented_subcommands(r: redis.Redis, real: redis.Redis) -> None:
    ours = r.execute_command("CLIENT", "HELP")
    theirs = real.execute_command("CLIENT", "HELP")
    assert ours[0] == theirs[0] == b"CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    assert ours[-2:] == theirs[-2:] == [b"HELP", b"    Prints this help."]
    assert set(ours) <= set(theirs)


def test_client_list_and_info_fields_in_redis_order(r: redis.Redis, real: redis.Redis) -> None:
    seen = []
    for client in (r, real):
        client.execute_command("CLIENT", "SETNAME", "fields")
        client.execute_command("SELECT", "2")
        info = client.execute_command("CLIENT", "INFO")
        assert _order(info) == CLIENT_FIELDS
        fields = _fields(info)
        seen.append({name: fields[name] for name in (
            "name", "db", "flags", "cmd", "multi", "sub", "psub", "ssub", "resp", "user",
            "redir", "events")})
        assert fields["id"] == str(client.client_id())
        assert fields["laddr"].endswith(f":{client.connection_pool.connection_kwargs['port']}")
        listing = client.execute_command("CLIENT", "LIST").decode().splitlines()
        mine = [_fields(line) for line in listing if _fields(line)["name"] == "fields"]
        assert len(mine) == 1 and mine[0]["cmd"] == "client|list"
        assert all(_order(line) == CLIENT_FIELDS for line in listing)
        client.execute_command("SELECT", "0")
    assert seen[0] == seen[1]
    assert seen[0]["cmd"] == "client|info" and seen[0]["name"] == "fields"


def test_client_info_in_resp3_is_verbatim(kvrepl_server: ThreadedServer,
                                          redis_server: RedisServer) -> None:
    for server in (kvrepl_server, redis_server):
        wire = RawClient(server.port)
        wire.call("HELLO", "3")
        reply = wire.call("CLIENT", "INFO")
        assert reply.startswith(b"=") and b"\r\ntxt:id=" in reply and reply.endswith(b"\n\r\n")
        wire.close()


def test_client_list_filters_and_flags(kvrepl_server: ThreadedServer, r: redis.Redis) -> None:
    subscriber = RawClient(kvrepl_server.port)
    in_multi = RawClient(kvrepl_server.port)
    try:
        subscriber.call("SUBSCRIBE", "a", "b")
        subscriber.call("PSUBSCRIBE", "p*")
        in_multi.call("MULTI")
        in_multi.call("PING")
        pubsub = r.execute_command("CLIENT", "LIST", "TYPE", "pubsub").decode().splitlines()
        assert len(pubsub) == 1
        fields = _fields(pubsub[0])
        assert (fields["flags"], fields["sub"], fields["psub"], fields["cmd"]) == (
            "P", "2", "1", "psubscribe")
        normal = r.execute_command("CLIENT", "LIST", "TYPE", "NORMAL").decode()
        assert fields["id"] not in [_fields(line)["id"] for line in normal.splitlines()]
        assert r.execute_command("CLIENT", "LIST", "TYPE", "replica") == b""
        assert r.execute_command("CLIENT", "LIST", "TYPE", "master") == b""
        multi_id = next(_fields(line)["id"] for line in normal.splitlines()
                        if _fields(line)["multi"] == "1")
        listed = r.execute_command("CLIENT", "LIST", "ID", multi_id, "999999", fields["id"])
        lines = listed.decode().splitlines()
        assert [_fields(line)["id"] for line in lines] == [multi_id, fields["id"]]
        assert _fields(lines[0])["flags"] == "x"
        r.execute_command("CLIENT", "NO-EVICT", "ON")
        assert _fields(r.execute_command("CLIENT", "INFO"))["flags"] == "e"
        r.execute_command("CLIENT", "NO-EVICT", "OFF")
    finally:
        subscriber.close()
        in_multi.close()


@pytest.fixture(scope="module")
def own_server() -> Iterator[ThreadedServer]:
    """A kvrepl server of this module's own, where killing clients disturbs no one else."""
    server = ThreadedServer().start()
    yield server
    server.stop()


def _addr(admin: redis.Redis, name: str) -> dict[str, str]:
    for line in admin.execute_command("CLIENT", "LIST").decode().splitlines():
        if _fields(line)["name"] == name:
            return _fields(line)
    raise AssertionError(f"no client named {name}")


def _named(server: ThreadedServer, name: str) -> RawClient:
    wire = RawClient(server.port)
    wire.call("CLIENT", "SETNAME", name)
    return wire


def test_client_kill_old_form(own_server: ThreadedServer) -> None:
    admin = own_server.client()
    victim = _named(own_server, "victim")
    assert admin.execute_command("CLIENT", "KILL", _addr(admin, "victim")["addr"]) == b"OK"
    assert victim.closed()
    with pytest.raises(redis.ResponseError, match="No such client"):
        admin.execute_command("CLIENT", "KILL", "127.0.0.1:1")
    # The old form may kill the caller: it gets its OK, then the connection closes.
    me = _named(own_server, "me")
    assert me.call("CLIENT", "KILL", _addr(admin, "me")["addr"]) == b"+OK\r\n"
    assert me.closed()
    admin.close()


def test_client_kill_filters(own_server: ThreadedServer) -> None:
    admin = own_server.client()
    admin.execute_command("CLIENT", "SETNAME", "admin")
    first, second = _named(own_server, "first"), _named(own_server, "second")
    listener = _named(own_server, "listener")
    listener.call("SUBSCRIBE", "x")
    me = _addr(admin, "admin")
    assert admin.execute_command("CLIENT", "KILL", "ID", _addr(admin, "first")["id"]) == 1
    assert first.closed()
    assert admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub") == 1
    assert listener.closed()
    assert admin.execute_command("PUBSUB", "NUMSUB", "x") == [b"x", 0]
    target = _addr(admin, "second")
    assert admin.execute_command(
        "CLIENT", "KILL", "ADDR", target["addr"], "LADDR", target["laddr"], "USER", "default",
        "TYPE", "normal") == 1
    assert second.closed()
    assert admin.execute_command("CLIENT", "KILL", "ADDR", me["addr"]) == 0  # SKIPME yes
    others = [_named(own_server, f"other{i}") for i in range(3)]
    assert admin.execute_command("CLIENT", "KILL", "TYPE", "normal") == 3
    assert all(wire.closed() for wire in others)
    assert admin.execute_command("CLIENT", "LIST").decode().count("\n") == 1
    admin.close()
    me_wire = _named(own_server, "last")
    assert me_wire.call("CLIENT", "KILL", "LADDR", target["laddr"], "SKIPME", "no") == b":1\r\n"
    assert me_wire.closed()


def _wait_blocked(admin: redis.Redis, count: int) -> None:
    deadline = time.monotonic() + DEADLINE
    while admin.info("clients")["blocked_clients"] != count:
        assert time.monotonic() < deadline, "the client never blocked"
        time.sleep(0.005)


@pytest.mark.parametrize("real_server", [False, True])
def test_client_unblock(own_server: ThreadedServer, redis_server: RedisServer,
                        real_server: bool) -> None:
    server = redis_server if real_server else own_server
    admin = server.client()
    blocked = server.client()
    blocked_id = blocked.client_id()
    outcome: list[object] = []

    def wait() -> None:
        try:
            outcome.append(blocked.execute_command("BLPOP", "unblock-list", "0"))
        except redis.ResponseError as err:
            outcome.append(str(err))

    for reason, expected in (("TIMEOUT", None),
                             ("ERROR", "UNBLOCKED client unblocked via CLIENT UNBLOCK")):
        outcome.clear()
        thread = threading.Thread(target=wait)
        thread.start()
        _wait_blocked(admin, 1)
        assert _addr_of(admin, blocked_id)["flags"] == "b"
        assert admin.execute_command("CLIENT", "UNBLOCK", blocked_id, reason) == 1
        thread.join(DEADLINE)
        assert outcome == [expected]
    assert admin.execute_command("CLIENT", "UNBLOCK", blocked_id) == 0
    admin.close()
    blocked.close()


def _addr_of(admin: redis.Redis, client_id: int) -> dict[str, str]:
    return _fields(admin.execute_command("CLIENT", "LIST", "ID", client_id))


def test_client_unblock_in_process_has_no_blocked_clients(engine: Engine) -> None:
    session = engine.new_session()
    assert engine.execute(session, [b"CLIENT", b"UNBLOCK", str(session.id).encode()]) == 0


def test_client_kill_in_process(engine: Engine) -> None:
    admin, victim = engine.new_session(), engine.new_session()
    engine.execute(victim, [b"SUBSCRIBE", b"c"])
    reply = engine.execute(admin, [b"CLIENT", b"KILL", b"ID", str(victim.id).encode()])
    assert reply == 1
    assert victim.closing and victim.id not in engine.sessions
    assert engine.pubsub_channels == {}
