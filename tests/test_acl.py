"""ACL against a real redis-server 7.0: users, rules, checks, errors and the ACL log.

Every test talks to a kvrepl server and a redis-server with the same commands and compares
what they answer. Redis walks its command table as a hash table, in an order that changes
from process to process, so where a rule string lists single commands (``+get -set``) those
are compared as a multiset; categories and everything else are compared as sent.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from support import (
    RawClient,
    RedisServer,
    ThreadedServer,
    kvrepl_and_redis,
    pack,
    plain,
    poll,
    raw_replies,
    wire_comparer,
)

from kvrepl.cli import apply_conf
from kvrepl.config import Config, ConfigError

PASSWORD_HASH = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[ThreadedServer, RedisServer]]:
    with kvrepl_and_redis(Config(save=())) as pair:
        yield pair


@pytest.fixture
def pair(servers: tuple[ThreadedServer, RedisServer]) -> Iterator[tuple[redis.Redis, redis.Redis]]:
    """Admin clients of both servers; every user but ``default`` is gone after the test."""
    ours, theirs = servers
    clients = raw_replies(ours.client()), raw_replies(theirs.client())
    yield clients
    for client in clients:
        client.execute_command("CONFIG", "SET", "requirepass", "", "acllog-max-len", "128",
                               "acl-pubsub-default", "resetchannels")
        client.execute_command("AUTH", "default", "x")  # nopass: any password
        users = [u for u in client.execute_command("ACL", "USERS") if u != b"default"]
        if users:
            client.execute_command("ACL", "DELUSER", *users)
        client.execute_command("ACL", "SETUSER", "default", "on", "nopass", "~*", "&*",
                               "+@all", "clearselectors")
        client.execute_command("ACL", "LOG", "RESET")
        client.execute_command("FLUSHALL")
        client.close()


@pytest.fixture
def wire(servers: tuple[ThreadedServer, RedisServer],
         pair: tuple[redis.Redis, redis.Redis]) -> Iterator[object]:
    ours, theirs = servers
    compare, close = wire_comparer(ours.port, theirs.port)
    yield compare
    close()


def connect(server: ThreadedServer | RedisServer, **kwargs: object) -> redis.Redis:
    """A client that does not retry: a refused AUTH or a closed connection shows at once."""
    return server.client(retry=Retry(NoBackoff(), 0), **kwargs)


def _rules(text: str) -> str:
    """A rule string with its single-command rules sorted (see the module docstring)."""
    words = text.split(" ")
    fixed = [w for w in words if not re.match(r"^[+-][a-z]", w)]
    singles = sorted(w for w in words if re.match(r"^[+-][a-z]", w))
    return " ".join(fixed + singles)


def _normal(reply: object) -> object:
    if isinstance(reply, bytes):
        text = reply.decode()
        return "\n".join(_rules(line) if "@all" in line else line
                         for line in text.split("\n"))
    if isinstance(reply, list):
        return [_normal(item) for item in reply]
    if isinstance(reply, dict):
        return {_normal(k): _normal(v) for k, v in reply.items()}
    return reply


def both(pair: tuple[redis.Redis, redis.Redis], *args: object, sort: bool = False) -> object:
    """Send ``args`` to both; assert the same reply (rule strings normalized) or error."""
    results = []
    for client in pair:
        try:
            reply = _normal(plain(client.execute_command(*args)))
            results.append(("ok", sorted(reply) if sort else reply))  # type: ignore[arg-type]
        except redis.ResponseError as err:
            results.append(("error", str(err)))
    mine, oracle = results
    assert mine == oracle, f"{args}: kvrepl {mine!r} != redis {oracle!r}"
    return mine[1]


USERS = [
    ("alice", "on", ">pw", "~k*", "+get", "+@hash"),
    ("bob",),
    ("carol", "on", "nopass", "%R~r*", "%W~w*", "%RW~b*", "&chan*", "+@read", "-@hash"),
    ("dave", "on", "+@all", "-get", "-set", "~*", "&*"),
    ("eve", "on", "+@all", "-@dangerous", "~*"),
    ("frank", "on", "nopass", "+@read", "+@write", "-@keyspace", "(+set ~x*)", "(", "+get", "%R~y*", ")"),
    ("gina", "on", "nopass", "+config|get", "+select|0", "+select|1", "resetchannels", "&news"),
    ("hank", "on", ">a", ">b", "<a", "skip-sanitize-payload", "allkeys", "allchannels",
     "allcommands", "-debug"),
    ("ivy", "on", "#" + PASSWORD_HASH, "nocommands", "+acl|whoami", "+client", "-client|kill"),
    ("jack", "reset", "on", "+@all", "-@all", "+@pubsub", "&a*", "&b"),
]


def test_setuser_getuser_list_users(pair: tuple[redis.Redis, redis.Redis], wire: object) -> None:
    for rules in USERS:
        both(pair, "ACL", "SETUSER", *rules)
        both(pair, "ACL", "GETUSER", rules[0])
    both(pair, "ACL", "LIST")
    both(pair, "ACL", "USERS")
    both(pair, "ACL", "GETUSER", "nosuch")
    # Exact bytes, RESP2 and RESP3, where the rules name no single commands in any order.
    for name in ("alice", "bob", "eve", "jack"):
        wire("ACL", "GETUSER", name, protocol=3)
        wire("ACL", "GETUSER", name)


def test_setuser_errors(pair: tuple[redis.Redis, redis.Redis], wire: object) -> None:
    for rules in [
        ("+config|get|x",), ("+nosuch",), ("+@nosuch",), ("-@nosuch",), ("~*", "~x"),
        ("&*", "&x"), ("#abc",), ("#" + PASSWORD_HASH.upper(),), ("<nopass",), ("junk",),
        ("(+get",), ("(+get", "~x"), ("(+get ~x)", "(nosuch)"), ("%X~k",), ("%RR~k",),
        ("~a b",), ("+select|",), ("on", "+get", "bad"),
    ]:
        wire("ACL", "SETUSER", "u", *rules)
    wire("ACL", "GETUSER", "u")  # all-or-nothing: the failed rules created nobody
    for args in [("ACL", "SETUSER", "a b"), ("ACL", "DELUSER", "default"),
                 ("ACL", "DELUSER", "nosuch", "other"), ("ACL", "CAT", "nosuch"),
                 ("ACL", "GENPASS", "0"), ("ACL", "GENPASS", "5000"), ("ACL", "GENPASS", "x"),
                 ("ACL", "LOG", "x"), ("ACL", "LOAD"), ("ACL", "SAVE"), ("ACL", "NOSUCH"),
                 ("ACL",), ("ACL", "LIST", "x"), ("ACL", "SETUSER"), ("ACL", "HELP"),
                 ("ACL", "WHOAMI"), ("ACL", "LOG", "-1"), ("ACL", "DRYRUN", "default")]:
        wire(*args)


def test_cat_lists_the_same_commands(pair: tuple[redis.Redis, redis.Redis], wire: object
                                     ) -> None:
    categories = both(pair, "ACL", "CAT")
    wire("ACL", "CAT", protocol=3)
    for category in categories:
        both(pair, "ACL", "CAT", category, sort=True)
        both(pair, "ACL", "CAT", category.upper(), sort=True)


def test_genpass_lengths(pair: tuple[redis.Redis, redis.Redis]) -> None:
    ours = pair[0]
    for bits, chars in ((None, 64), (1, 1), (5, 2), (128, 32), (4096, 1024)):
        args = ("ACL", "GENPASS") if bits is None else ("ACL", "GENPASS", bits)
        reply = ours.execute_command(*args)
        assert len(reply) == chars and re.fullmatch(rb"[0-9a-f]+", reply)


def test_dryrun(pair: tuple[redis.Redis, redis.Redis], wire: object) -> None:
    for rules in USERS:
        both(pair, "ACL", "SETUSER", *rules)
    for args in [
        ("alice", "get", "k1"), ("alice", "get", "zz"), ("alice", "set", "k1", "v"),
        ("alice", "hset", "k1", "f", "v"), ("alice", "hset", "z", "f", "v"),
        ("nosuch", "get", "k1"), ("alice", "nosuch", "k1"), ("alice", "get"),
        ("alice", "config", "nosuch"),
        ("carol", "get", "r1"), ("carol", "set", "r1", "v"), ("carol", "set", "w1", "v"),
        ("carol", "get", "w1"), ("carol", "get", "b1"), ("carol", "copy", "r1", "w1"),
        ("carol", "copy", "w1", "r1"), ("carol", "mget", "r1", "b2", "w3", "x4"),
        ("carol", "publish", "chan1", "m"), ("carol", "publish", "x", "m"),
        ("carol", "subscribe", "chan1", "other"), ("carol", "psubscribe", "chan*"),
        ("carol", "psubscribe", "chan1*"), ("carol", "config", "get", "x"),
        ("carol", "ssubscribe", "chan1"), ("carol", "ssubscribe", "x"),
        ("carol", "spublish", "x", "m"),
        ("carol", "sort", "r1", "by", "w*", "store", "w2"),
        ("carol", "lmove", "r1", "w1", "left", "right"), ("carol", "smove", "b1", "w1", "m"),
        ("frank", "set", "x1", "v"), ("frank", "get", "y1"), ("frank", "get", "x1"),
        ("frank", "set", "y1", "v"), ("frank", "del", "x1"), ("frank", "mset", "x1", "a", "y1", "b"),
        ("gina", "select", "0"), ("gina", "select", "2"), ("gina", "SELECT", "1"),
        ("gina", "config", "get", "port"), ("gina", "config", "set", "port", "1"),
        ("gina", "publish", "news", "m"), ("gina", "publish", "new", "m"),
        ("hank", "debug", "sleep", "0"), ("hank", "get", "anything"),
        ("ivy", "client", "id"), ("ivy", "client", "kill", "id", "1"), ("ivy", "auth", "x"),
        ("ivy", "hello"), ("ivy", "acl", "whoami"), ("ivy", "acl", "list"),
        ("jack", "subscribe", "b", "a1", "c"), ("jack", "psubscribe", "a*"),
        ("jack", "psubscribe", "a1"), ("jack", "publish", "bb", "m"),
        ("default", "get", "anything"),
    ]:
        wire("ACL", "DRYRUN", *args)


def _log(client: redis.Redis) -> list[dict[bytes, object]]:
    """ACL LOG with what differs between two servers left out (ages, ids, addresses)."""
    entries = []
    for entry in client.execute_command("ACL", "LOG"):
        fields = dict(entry) if isinstance(entry, dict) else dict(
            zip(entry[::2], entry[1::2], strict=True))
        assert float(fields.pop(b"age-seconds")) >= 0
        info = dict(part.split(b"=", 1) for part in fields.pop(b"client-info").split(b" "))
        fields[b"client"] = (info[b"cmd"], info[b"user"], info[b"db"], info[b"multi"])
        entries.append(fields)
    return entries


def test_noperm_errors_and_log(servers: tuple[ThreadedServer, RedisServer],
                               pair: tuple[redis.Redis, redis.Redis]) -> None:
    for rules in USERS:
        both(pair, "ACL", "SETUSER", *rules)
    ours, theirs = servers
    script = [
        ("alice", "pw", [("get", "k1"), ("get", "zz"), ("set", "k1", "v"), ("hset", "k1", "f", "v"),
                         ("hset", "zz", "f", "v"), ("get", "zz"), ("acl", "whoami"),
                         ("config", "get", "port"), ("mget", "k1", "k2", "zz"),
                         ("get", "k1"), ("hgetall", "k1")]),
        ("carol", "any", [("set", "w1", "v"), ("get", "w1"), ("set", "r1", "v"), ("get", "r1"),
                          ("copy", "w1", "b1"), ("copy", "w1", "r2"), ("publish", "chan1", "m"),
                          ("publish", "x", "m"), ("append", "b1", "x"), ("spublish", "x", "m"),
                          ("spublish", "chan2", "m")]),
        ("frank", "x", [("set", "x1", "v"), ("get", "x1"), ("get", "y1"), ("set", "y1", "v"),
                       ("del", "x1"), ("keys", "*")]),
        ("gina", "x", [("select", "1"), ("select", "2"), ("config", "get", "maxclients"),
                      ("config", "set", "maxclients", "10")]),
        ("ivy", "password", [("client", "getname"), ("client", "kill", "id", "999"),
                             ("acl", "whoami"), ("ping",)]),
    ]
    for user, password, commands in script:
        clients = [connect(server, username=user, password=password) for server in (ours, theirs)]
        for args in commands:
            both(tuple(raw_replies(c) for c in clients), *args)  # type: ignore[arg-type]
        for client in clients:
            client.close()
    # AUTH failures are logged too, with the name tried.
    compare, close = wire_comparer(ours.port, theirs.port)
    for args in (("AUTH", "alice", "wrong"), ("AUTH", "nosuch", "x"), ("AUTH", "bob", "x"),
                 ("HELLO", "3", "AUTH", "alice", "bad"), ("AUTH", "alice", "wrong")):
        compare(*args)
    close()
    assert _log(pair[0]) == _log(pair[1])
    for count in (2, 0, -1, 100):
        assert len(pair[0].execute_command("ACL", "LOG", count)) == len(
            pair[1].execute_command("ACL", "LOG", count))
    both(pair, "ACL", "LOG", "RESET")
    both(pair, "ACL", "LOG")


def test_acllog_max_len_and_acl_pubsub_default(
        servers: tuple[ThreadedServer, RedisServer], pair: tuple[redis.Redis, redis.Redis],
        wire: object) -> None:
    both(pair, "CONFIG", "SET", "acllog-max-len", "2")
    both(pair, "CONFIG", "GET", "acl*")
    for name in ("a", "b", "c"):
        wire("AUTH", name, "x")
    assert _log(pair[0]) == _log(pair[1])
    assert [e[b"username"] for e in _log(pair[0])] == [b"c", b"b"]
    both(pair, "CONFIG", "SET", "acllog-max-len", "1")
    assert _log(pair[0]) == _log(pair[1])
    both(pair, "ACL", "SETUSER", "before")
    both(pair, "CONFIG", "SET", "acl-pubsub-default", "allchannels")
    both(pair, "CONFIG", "GET", "acl*")
    both(pair, "ACL", "SETUSER", "after")
    both(pair, "ACL", "SETUSER", "reset1", "&x", "reset")
    both(pair, "ACL", "SETUSER", "sel", "(+get ~k)")
    both(pair, "ACL", "LIST")
    both(pair, "CONFIG", "SET", "acl-pubsub-default", "nosuch")


def test_transactions(servers: tuple[ThreadedServer, RedisServer],
                      pair: tuple[redis.Redis, redis.Redis]) -> None:
    """A denied command fails MULTI at queue time; one whose rights went away meanwhile
    fails inside EXEC with execCommand's message; both logged in the multi context."""
    both(pair, "ACL", "SETUSER", "tx", "on", "nopass", "+@all", "~k*")
    ours, theirs = servers
    clients = [raw_replies(connect(s, username="tx", password="x", single_connection_client=True))
               for s in (ours, theirs)]
    conns = tuple(clients)
    both(conns, "MULTI")  # type: ignore[arg-type]
    both(conns, "SET", "k1", "v")  # type: ignore[arg-type]
    both(conns, "SET", "other", "v")  # type: ignore[arg-type]
    both(conns, "EXEC")  # type: ignore[arg-type]
    both(conns, "MULTI")  # type: ignore[arg-type]
    both(conns, "SET", "k1", "v")  # type: ignore[arg-type]
    both(conns, "GET", "k2")  # type: ignore[arg-type]
    both(conns, "INCR", "k3")  # type: ignore[arg-type]
    both(pair, "ACL", "SETUSER", "tx", "-get", "resetkeys", "~k1")
    both(conns, "EXEC")  # type: ignore[arg-type]
    assert _log(pair[0]) == _log(pair[1])
    for client in clients:
        client.close()


def test_auth_and_requirepass(servers: tuple[ThreadedServer, RedisServer],
                              pair: tuple[redis.Redis, redis.Redis], wire: object) -> None:
    ours, theirs = servers
    wire("AUTH", "pw")  # the default user has no password yet
    wire("AUTH", "default", "anything")
    both(pair, "CONFIG", "SET", "requirepass", "secret")
    both(pair, "ACL", "GETUSER", "default")
    both(pair, "ACL", "LIST")
    both(pair, "ACL", "SETUSER", "alice", "on", ">pw", "+@all", "~*")
    both(pair, "ACL", "SETUSER", "off1", "off", ">pw", "+@all", "~*")
    for server in (ours, theirs):
        anonymous = connect(server)
        with pytest.raises(redis.AuthenticationError):
            anonymous.get("k")
        assert connect(server, password="secret").execute_command("ACL", "WHOAMI") == b"default"
        alice = connect(server, username="alice", password="pw")
        assert alice.execute_command("ACL", "WHOAMI") == b"alice"
        assert alice.client_info()["user"] == "alice"
        with pytest.raises(redis.AuthenticationError, match="invalid username-password"):
            connect(server, username="off1", password="pw").ping()
        hello = connect(server, protocol=3, username="alice", password="pw")
        assert hello.execute_command("ACL", "WHOAMI") == b"alice"
        for client in (anonymous, alice, hello):
            client.close()
    # RESET logs out: back to the default user, which needs its password again.
    wire("AUTH", "alice", "pw")
    wire("ACL", "WHOAMI")
    wire("RESET")
    wire("GET", "k")
    wire("AUTH", "alice", "nope")
    wire("AUTH", "secret")
    wire("ACL", "WHOAMI")
    both(pair, "CONFIG", "SET", "requirepass", "")
    both(pair, "ACL", "GETUSER", "default")
    # A client that connected while a password was needed may run commands once none is.
    both(pair, "CONFIG", "SET", "requirepass", "again")
    late = [RawClient(server.port) for server in servers]
    assert late[0].call("GET", "k") == late[1].call("GET", "k") == (
        b"-NOAUTH Authentication required.\r\n")
    both(pair, "ACL", "SETUSER", "default", "nopass")
    assert late[0].call("GET", "k") == late[1].call("GET", "k") == b"$-1\r\n"
    for client in late:
        client.close()


def _connected(client: redis.Redis) -> bool:
    try:
        client.ping()
        return True
    except redis.ConnectionError:
        return False


def test_deluser_closes_its_clients(servers: tuple[ThreadedServer, RedisServer],
                                    pair: tuple[redis.Redis, redis.Redis]) -> None:
    both(pair, "ACL", "SETUSER", "gone", "on", "nopass", "+@all", "~*")
    for server, admin in zip(servers, pair, strict=True):
        victim = connect(server, username="gone", password="x", single_connection_client=True)
        victim.ping()
        assert admin.execute_command("ACL", "DELUSER", "gone") == 1
        with pytest.raises(redis.ConnectionError):
            victim.ping()
        victim.close()


def test_channel_permissions_and_lost_subscriptions(
        servers: tuple[ThreadedServer, RedisServer], pair: tuple[redis.Redis, redis.Redis],
        wire: object) -> None:
    both(pair, "ACL", "SETUSER", "sub", "on", "nopass", "+@all", "~*", "resetchannels",
         "&news*", "&exact")
    wire("AUTH", "sub", "x", protocol=3)
    wire("SUBSCRIBE", "news1", "exact", protocol=3, replies=2)
    wire("SUBSCRIBE", "news2", "sports", protocol=3)  # all or nothing
    wire("PSUBSCRIBE", "news1*", protocol=3)  # a pattern is matched only as itself
    wire("PSUBSCRIBE", "news*", protocol=3)
    wire("PUBLISH", "sports", "m", protocol=3)
    wire("PUBLISH", "exact", "m", protocol=3, replies=2)  # the message, then the count
    for server, admin in zip(servers, pair, strict=True):
        client = connect(server, username="sub", password="x")
        pubsub = client.pubsub()
        pubsub.subscribe("news1")
        pubsub.psubscribe("news*")
        connection = pubsub.connection
        assert connection is not None
        # Wider rules keep the subscriber; narrower ones close it.
        admin.execute_command("ACL", "SETUSER", "sub", "&more")
        connection.send_command("PING")
        assert connection.read_response() is not None
        admin.execute_command("ACL", "SETUSER", "sub", "resetchannels", "&exact")
        with pytest.raises(redis.ConnectionError):
            for _ in range(3):
                connection.send_command("PING")
                connection.read_response()
        pubsub.close()
        client.close()


def test_restricted_user_pipeline_of_gets_and_sets(
        servers: tuple[ThreadedServer, RedisServer], pair: tuple[redis.Redis, redis.Redis]
) -> None:
    """The GET/SET lane stays closed to a user with restrictions: every request is checked."""
    both(pair, "ACL", "SETUSER", "lane", "on", "nopass", "+get", "+set", "%R~r*", "~rw*")
    results = []
    for server in servers:
        client = connect(server, username="lane", password="x")
        pipe = client.pipeline(transaction=False)
        for key in ("rw1", "r1", "w1", "rw2"):
            pipe.set(key, "v")
            pipe.get(key)
        results.append([str(r) if isinstance(r, Exception) else r
                        for r in pipe.execute(raise_on_error=False)])
        client.close()
    assert results[0] == results[1]


def test_acl_file_save_and_load(servers: tuple[ThreadedServer, RedisServer]) -> None:
    """ACL SAVE by kvrepl is loaded by redis-server and the reverse; ACL LOAD errors."""
    directory = tempfile.mkdtemp(prefix="kvrepl-acl-")
    ours_file, theirs_file = (os.path.join(directory, n) for n in ("ours.acl", "theirs.acl"))
    for path in (ours_file, theirs_file):
        with open(path, "w") as f:
            f.write("user default on nopass ~* &* +@all\n")
    ours = ThreadedServer(Config(save=(), aclfile=ours_file)).start()
    theirs = RedisServer("--aclfile", theirs_file)
    try:
        clients = raw_replies(ours.client()), raw_replies(theirs.client())
        for rules in USERS:
            both(clients, "ACL", "SETUSER", *rules)
        both(clients, "ACL", "SAVE")
        with open(ours_file) as f:
            saved = f.read()
        with open(theirs_file) as f:
            assert _normal(saved.encode()) == _normal(f.read().encode())
        # Each loads the other's file.
        os.rename(ours_file, ours_file + ".x")
        os.rename(theirs_file, ours_file)
        os.rename(ours_file + ".x", theirs_file)
        both(clients, "ACL", "LOAD")
        both(clients, "ACL", "LIST")
        for bad in ("user bob on +nosuch\nuser carol junk\n", "nouser x\n",
                    "user a b\nuser a\n", "user x (+get\n"):
            for path in (ours_file, theirs_file):
                with open(path, "w") as f:
                    f.write(bad)
            errors = []
            for client, path in zip(clients, (ours_file, theirs_file), strict=True):
                with pytest.raises(redis.ResponseError) as failed:
                    client.execute_command("ACL", "LOAD")
                errors.append(str(failed.value).replace(path, "FILE"))
            assert errors[0] == errors[1]
        both(clients, "ACL", "LIST")
        # A client of a user the file no longer has is closed.
        for path in (ours_file, theirs_file):
            with open(path, "w") as f:
                f.write("user default on nopass ~* &* +@all\n")
        victims = [connect(s, username="hank", password="b", single_connection_client=True)
                   for s in (ours, theirs)]
        for victim in victims:
            victim.ping()
        both(clients, "ACL", "LOAD")
        for victim in victims:
            poll(lambda v=victim: not _connected(v), "the client of a removed user closed")
            victim.close()
        for client in clients:
            client.close()
    finally:
        ours.stop()
        theirs.stop()


def test_user_lines_in_the_config_file() -> None:
    config = Config(save=())
    apply_conf(config, "user alice on >pw ~k* +get\nuser default on nopass +@all -debug ~*\n")
    ours = ThreadedServer(config).start()
    theirs = RedisServer("--user", "alice", "on", ">pw", "~k*", "+get",
                         "--user", "default", "on", "nopass", "+@all", "-debug", "~*")
    try:
        clients = raw_replies(ours.client()), raw_replies(theirs.client())
        both(clients, "ACL", "LIST")
        for client in clients:
            client.close()
    finally:
        ours.stop()
        theirs.stop()
    for bad in ("user alice on\nuser alice off\n", "user bob junk\n", "user\n",
                "user x (+get\n"):
        with pytest.raises(ConfigError):
            apply_conf(Config(save=()), bad)
    with pytest.raises(ValueError, match="not both"):
        config = Config(save=(), aclfile="/nonexistent")
        apply_conf(config, "user alice on\n")
        ThreadedServer(config)


def test_disabling_a_user_keeps_its_clients(servers: tuple[ThreadedServer, RedisServer],
                                            pair: tuple[redis.Redis, redis.Redis]) -> None:
    """Redis 7.0 closes a user's clients on DELUSER only: ``off`` stops new logins."""
    both(pair, "ACL", "SETUSER", "paused", "on", "nopass", "+@all", "~*")
    for server, admin in zip(servers, pair, strict=True):
        client = connect(server, username="paused", password="x",
                         single_connection_client=True)
        client.ping()
        admin.execute_command("ACL", "SETUSER", "paused", "off")
        assert client.ping()
        with pytest.raises(redis.AuthenticationError):
            connect(server, username="paused", password="x").ping()
        client.close()


REPLICATION_USER = ("repl", "on", ">rpw", "-@all", "+psync", "+replconf", "+ping")


def _lock_default_user(client: redis.Redis) -> None:
    """Only ``admin`` and the replication user may log in from now on."""
    client.execute_command("ACL", "SETUSER", "admin", "on", ">apw", "+@all", "~*", "&*")
    client.execute_command("ACL", "SETUSER", *REPLICATION_USER)
    client.execute_command("ACL", "SETUSER", "default", "off")


def test_kvrepl_replica_of_an_acl_protected_redis_server() -> None:
    master = RedisServer("--repl-diskless-sync-delay", "0")
    admin = master.client(single_connection_client=True)
    _lock_default_user(admin)
    admin.set("before", "1")
    replica = ThreadedServer(Config(save=(), masteruser="repl", masterauth="rpw",
                                    replicaof=f"127.0.0.1 {master.port}")).start()
    try:
        reader = replica.client()
        poll(lambda: reader.get("before") == b"1", "the full sync as user repl")
        admin.set("after", "2")
        poll(lambda: reader.get("after") == b"2", "the stream as user repl")
        reader.close()
    finally:
        replica.stop()
        admin.close()
        master.stop()


def test_redis_server_replica_of_an_acl_protected_kvrepl() -> None:
    master = ThreadedServer(Config(save=(), repl_diskless_sync_delay=0)).start()
    admin = raw_replies(master.client(single_connection_client=True))
    _lock_default_user(admin)
    admin.set("before", "1")
    replica = RedisServer("--masteruser", "repl", "--masterauth", "rpw",
                          "--replicaof", "127.0.0.1", str(master.port))
    try:
        reader = replica.client()
        poll(lambda: reader.get("before") == b"1", "the full sync as user repl")
        admin.set("after", "2")
        poll(lambda: reader.get("after") == b"2", "the stream as user repl")
        assert admin.execute_command("CLIENT", "LIST", "TYPE", "replica").count(b"user=repl")
        reader.close()
    finally:
        replica.stop()
        admin.close()
        master.stop()


def test_monitor_hides_credentials(servers: tuple[ThreadedServer, RedisServer],
                                   pair: tuple[redis.Redis, redis.Redis]) -> None:
    """MONITOR shows AUTH and HELLO ... AUTH with their credentials redacted, and ACL
    commands (admin) not at all."""
    both(pair, "ACL", "SETUSER", "mon", "on", ">pw", "+@all", "~*")
    seen = []
    for server in servers:
        monitor = RawClient(server.port)
        assert monitor.call("MONITOR") == b"+OK\r\n"
        client = RawClient(server.port)
        for args in (("AUTH", "mon", "pw"), ("AUTH", "wrong"), ("HELLO", "2", "AUTH", "mon",
                     "pw", "SETNAME", "x"), ("ACL", "SETUSER", "mon", ">other"),
                     ("ECHO", "done")):
            client.call(*args)
        lines = [monitor.read().split(b"] ", 1)[1] for _ in range(4)]
        seen.append(lines)
        client.close()
        monitor.close()
    assert seen[0] == seen[1]
    assert seen[0][0] == b'"AUTH" "(redacted)" "(redacted)"\r\n'


def test_scripts_run_with_the_callers_rights(servers: tuple[ThreadedServer, RedisServer],
                                             pair: tuple[redis.Redis, redis.Redis]) -> None:
    # scriptVerifyACL: each redis.call is checked against the user that ran EVAL, so a
    # script cannot reach what its caller could not (the lua client itself has every right).
    both(pair, "ACL", "SETUSER", "u", "on", ">p", "+eval", "+get", "+publish", "~k*", "&ch")
    ours, theirs = servers
    clients = [raw_replies(connect(server, username="u", password="p"))
               for server in (ours, theirs)]
    for script, keys in [("return redis.call('set', 'k1', 'v')", ["k1"]),
                         ("return redis.pcall('set', 'k1', 'v')", ["k1"]),
                         ("return redis.call('get', 'k1')", ["k1"]),
                         ("return redis.call('get', 'other')", ["k1"]),
                         ("return redis.pcall('get', 'other')", ["k1"]),
                         ("return redis.call('publish', 'x', 'm')", []),
                         ("return redis.call('publish', 'ch', 'm')", []),
                         ("return redis.call('get', 'other')", ["other"])]:
        both(tuple(clients), "EVAL", script, len(keys), *keys)  # type: ignore[arg-type]
    for client in clients:
        client.close()
    assert _log(pair[0]) == _log(pair[1])


def _lane_stats(server: ThreadedServer | RedisServer) -> dict[str, object]:
    """What the plain lane must count as the general path does for a restricted user."""
    client = server.client()
    info = client.info("all")
    client.close()
    wanted = {key: info[key] for key in ("keyspace_hits", "keyspace_misses",
                                         "total_error_replies")}
    for name in ("get", "set", "pfadd", "pfcount"):
        stats = info.get(f"cmdstat_{name}", {})
        wanted[name] = tuple(stats.get(k) for k in ("calls", "rejected_calls", "failed_calls"))
    wanted["errors"] = {k: v for k, v in info.items() if k.startswith("errorstat_")}
    return wanted


def test_restricted_user_pipelines_answer_and_log_as_redis(
        servers: tuple[ThreadedServer, RedisServer], pair: tuple[redis.Redis, redis.Redis]
) -> None:
    """A restricted user's pipelined GET/SET/PFADD/PFCOUNT (the plain lane's commands,
    checked there once per run and key) get the same replies, NOPERM errors, ACL LOG
    entries, command and keyspace statistics as from redis-server, allowed and denied
    requests interleaved in one read."""
    both(pair, "ACL", "SETUSER", "lane", "on", ">pw", "~k:*", "%R~r:*", "+get", "+set",
         "+pfadd", "(~s:* +set)")
    both(pair, "ACL", "SETUSER", "other", "on", ">pw", "~*", "+@read")
    for client in pair:
        client.execute_command("SET", "r:1", "seeded")
        client.execute_command("PFADD", "k:h", *[str(i) for i in range(300)])
        client.execute_command("CONFIG", "RESETSTAT")
    ours, theirs = servers
    batch = [("SET", "k:1", "a"), ("GET", "k:1"), ("GET", "k:none"), ("GET", "r:1"),
             ("SET", "r:1", "no"), ("GET", "k:1"), ("SET", "s:1", "sel"), ("GET", "s:1"),
             ("SET", "x", "no"), ("PFADD", "k:h", "new"), ("PFCOUNT", "k:h"),
             ("PFADD", "x", "no"), ("set", "k:2", "b"), ("get", "k:2"), ("GET", "zz")]
    for user in ("lane", "other"):
        replies = []
        for server in (ours, theirs):
            client = RawClient(server.port)
            assert client.call("AUTH", user, "pw") == b"+OK\r\n"
            client.sock.sendall(b"".join(pack(*args) for args in batch))
            replies.append(client.read(len(batch)))
            client.close()
        assert replies[0] == replies[1]
    assert _log(pair[0]) == _log(pair[1])
    assert _lane_stats(ours) == _lane_stats(theirs)


def test_restricted_user_runs_in_the_lane_until_a_request_it_may_not_send() -> None:
    """The lane itself takes a restricted user's allowed requests and stops, having done
    nothing, at the first one the user's rules do not allow (left to the general path);
    a change of the user's rules is seen at the next run."""
    from kvrepl.commands.core import Engine

    engine = Engine(Config(save=()))
    engine.acl.set_user(b"u", [b"on", b"nopass", b"~k:*", b"+get", b"+set"])
    session = engine.new_session()
    session.user = engine.acl.users[b"u"]
    lane = engine.plain_lane
    assert lane.open_for(session)
    requests = [[b"SET", b"k:1", b"v"], [b"GET", b"k:1"], [b"GET", b"other"], [b"GET", b"k:1"]]
    out: list[bytes] = []
    assert lane.run(session, requests, 0, out) == 2
    assert out == [b"+OK\r\n", b"$1\r\n", b"v", b"\r\n"]
    assert lane.run(session, requests, 2, out) == 2
    engine.acl.set_user(b"u", [b"-get"])
    assert lane.run(session, requests, 3, out) == 3
    assert not engine.acl.log


@pytest.mark.parametrize("rules", [
    [b"~k:*", b"%R~r:*", b"+get", b"+set"],
    [b"~a:*", b"~b:*", b"+get", b"+set"],  # a key of the second prefix: the full test
    [b"%R~*", b"~w:*", b"+get", b"+set"],
    [b"~exact", b"~g?t:*", b"~k:*", b"+get", b"+set"],  # literal and glob patterns first
    [b"%W~k:*", b"+get", b"+set"],
    [b"~k:*", b"+get", b"(~s:* +set)"],
    [b"~*", b"+get"],
])
def test_the_lane_allows_exactly_what_the_full_check_allows(rules: list[bytes]) -> None:
    """The lane's key tests (a pattern's prefix first, then the full test) run a GET or
    SET exactly when User.check (the check compared with redis-server above) allows it, and
    follow a change of the user's keys."""
    from kvrepl.acl import OK
    from kvrepl.commands.core import Engine

    engine = Engine(Config(save=()))
    engine.acl.set_user(b"u", [b"on", b"nopass", *rules])
    user = engine.acl.users[b"u"]
    session = engine.new_session()
    session.user = user
    lane = engine.plain_lane
    keys = [b"k:1", b"r:1", b"a:1", b"b:1", b"w:1", b"s:1", b"exact", b"get:1", b"gut:1",
            b"k", b"", b"other"]
    for change in (None, [b"resetkeys", b"~other"]):
        if change is not None:
            engine.acl.set_user(b"u", change)
        for key in keys:
            for argv in ([b"GET", key], [b"SET", key, b"v"]):
                command = engine.table[argv[0].lower()]
                allowed = user.check(command.spec, argv)[0] == OK
                assert (lane.run(session, [argv], 0, []) == 1) is allowed, (change, argv)
