"""Client-side caching against a real redis-server 7.0: CLIENT TRACKING in each mode, and
the exact bytes of the invalidations a client receives (RESP3 pushes, or RESP2 messages on
``__redis__:invalidate`` through REDIRECT) for the same command sequences on both."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from support import RawClient, RedisServer, ThreadedServer, pack

Servers = tuple[ThreadedServer, RedisServer]
MARKER = b"marker"


@pytest.fixture
def servers(kvrepl_server: ThreadedServer, redis_server: RedisServer, r: redis.Redis,
            real: redis.Redis) -> Iterator[Servers]:
    """kvrepl and redis-server, flushed; tracking-table-max-keys reset after."""
    yield kvrepl_server, redis_server
    for client in (r, real):
        client.config_set("tracking-table-max-keys", 1_000_000)


class Pair:
    """The same role (one connection) on both servers; ``ids`` are its client ids."""

    def __init__(self, servers: Servers, protocol: int = 3) -> None:
        self.clients = [RawClient(server.port, protocol) for server in servers]
        self.ids = [int(client.call("CLIENT", "ID")[1:-2]) for client in self.clients]

    def call(self, *args: object, ids: Pair | None = None) -> bytes:
        """Run ``args`` on both (``{id}`` replaced by ``ids``'s client id on each) and
        return the reply bytes, the same on both once ids are masked."""
        out = []
        for index, client in enumerate(self.clients):
            real_args = [str(ids.ids[index]) if a == "{id}" and ids else a for a in args]
            out.append(self._mask(client.call(*real_args), ids, index))
        assert out[0] == out[1], f"{args}: kvrepl {out[0]!r} != redis {out[1]!r}"
        return out[0]

    def received(self, ids: Pair | None = None) -> bytes:
        """Everything sent to this connection up to the reply of a PING sent now (pushes
        that came meanwhile included): the same on both."""
        out = []
        for index, client in enumerate(self.clients):
            client.send("PING", MARKER)
            data = b""
            while True:
                reply = client.read(1)
                if MARKER in reply and not reply.startswith(b">"):
                    break
                data += reply
            out.append(self._mask(data, ids, index))
        assert out[0] == out[1], f"kvrepl {out[0]!r} != redis {out[1]!r}"
        return out[0]

    @staticmethod
    def _mask(data: bytes, ids: Pair | None, index: int) -> bytes:
        return data.replace(b":%d\r\n" % ids.ids[index], b":ID\r\n") if ids else data

    def close(self) -> None:
        for client in self.clients:
            client.close()


@pytest.fixture
def pairs(servers: Servers) -> Iterator[callable]:
    opened: list[Pair] = []

    def make(protocol: int = 3) -> Pair:
        pair = Pair(servers, protocol)
        opened.append(pair)
        return pair

    yield make
    for pair in opened:
        pair.close()


def test_default_mode_invalidates_once(pairs: callable) -> None:
    tracker, writer = pairs(), pairs()
    tracker.call("CLIENT", "TRACKING", "ON")
    tracker.call("GET", "k")
    tracker.call("MGET", "a", "b")
    tracker.call("HGET", "h", "f")
    assert _tracking_info(writer) == [b"1", b"4", b"4", b"0"]
    writer.call("SET", "k", "1")
    writer.call("SET", "k", "2")  # no longer tracked: nothing more
    writer.call("DEL", "a", "b", "c")  # only existing keys are modified: none here
    writer.call("MSET", "a", "1", "b", "2")
    writer.call("HSET", "h", "f", "v")
    writer.call("SET", "untracked", "v")
    assert tracker.received() == (b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n"
                                  + b"".join(b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\n%s\r\n" % k
                                             for k in (b"a", b"b", b"h")))
    tracker.call("CLIENT", "TRACKINGINFO")
    tracker.call("CLIENT", "GETREDIR")


def _tracking_info(pair: Pair) -> list[bytes]:
    """INFO's tracking fields, the same on both servers."""
    values = []
    for client in pair.clients:
        info = client.call("INFO")
        values.append([info.split(b"%s:" % name)[1].split(b"\r\n")[0] for name in (
            b"tracking_clients", b"tracking_total_keys", b"tracking_total_items",
            b"tracking_total_prefixes")])
    assert values[0] == values[1]
    return values[0]


def test_own_writes_after_the_reply_and_noloop(pairs: callable) -> None:
    tracker = pairs()
    tracker.call("CLIENT", "TRACKING", "ON")
    tracker.call("GET", "k")
    tracker.call("SET", "k", "v")  # the invalidation follows the +OK
    tracker.call("GET", "k")
    tracker.call("MULTI")
    tracker.call("SET", "k", "w")
    tracker.call("GET", "k")
    tracker.call("EXEC")  # ... and the whole EXEC reply
    tracker.received()
    tracker.call("CLIENT", "TRACKING", "ON", "NOLOOP")
    tracker.call("GET", "k")
    tracker.call("SET", "k", "x")
    assert tracker.received() == b""
    tracker.call("CLIENT", "TRACKINGINFO")


def test_optin_optout(pairs: callable) -> None:
    optin, optout, writer = pairs(), pairs(), pairs()
    optin.call("CLIENT", "TRACKING", "ON", "OPTIN")
    optout.call("CLIENT", "TRACKING", "ON", "OPTOUT")
    optin.call("GET", "a")  # not cached
    optin.call("CLIENT", "CACHING", "YES")
    optin.call("CLIENT", "TRACKINGINFO")
    optin.call("GET", "b")  # cached
    optin.call("GET", "c")  # CACHING was for one command only
    optout.call("CLIENT", "CACHING", "NO")
    optout.call("GET", "a")  # not cached
    optout.call("GET", "b")
    for args in (("CLIENT", "CACHING", "NO"), ("CLIENT", "CACHING", "MAYBE")):
        optin.call(*args)
    optout.call("CLIENT", "CACHING", "YES")
    writer.call("MSET", "a", "1", "b", "2", "c", "3")
    optin.received()
    optout.received()
    writer.call("CLIENT", "CACHING", "YES")


def test_bcast_prefixes(pairs: callable) -> None:
    everything, prefixed, noloop = pairs(), pairs(), pairs()
    everything.call("CLIENT", "TRACKING", "ON", "BCAST")
    prefixed.call("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "user:", "PREFIX", "obj:")
    noloop.call("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "user:", "NOLOOP")
    prefixed.call("CLIENT", "TRACKINGINFO")
    noloop.call("SET", "user:1", "x")
    noloop.call("SET", "other", "x")
    everything.received()  # before its own SET, so that a reply is not taken for a push
    everything.call("SET", "obj:2", "y")
    for pair in (everything, prefixed, noloop):
        pair.received()
    # one turn of the loop: the keys of a whole pipeline in one message, sorted
    for client in everything.clients:
        client.sock.sendall(pack("MSET", "user:9", "a", "user:3", "b", "zzz", "c")
                            + pack("DEL", "obj:2"))
        client.read(2)
    for pair in (everything, prefixed, noloop):
        pair.received()


def test_resp2_redirect(pairs: callable) -> None:
    sink = pairs(protocol=2)
    tracker, writer = pairs(protocol=2), pairs()
    sink.call("SUBSCRIBE", "__redis__:invalidate")
    tracker.call("CLIENT", "TRACKING", "ON", "REDIRECT", "{id}", ids=sink)
    tracker.call("CLIENT", "GETREDIR", ids=sink)
    tracker.call("CLIENT", "TRACKINGINFO", ids=sink)
    tracker.call("GET", "k")
    tracker.call("GET", "j")
    writer.call("SET", "k", "v")
    writer.call("FLUSHALL")
    assert sink.received() == (
        b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*1\r\n$1\r\nk\r\n"
        b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n$-1\r\n")
    assert tracker.received() == b""


def test_resp3_redirect_and_broken_redirect(pairs: callable) -> None:
    sink, tracker, writer = pairs(), pairs(), pairs()
    tracker.call("CLIENT", "TRACKING", "ON", "REDIRECT", "{id}", ids=sink)
    tracker.call("GET", "k")
    tracker.call("GET", "j")
    writer.call("SET", "k", "v")
    sink.received()
    sink.close()
    writer.call("SET", "j", "v")
    tracker.received(ids=sink)
    tracker.call("CLIENT", "TRACKINGINFO", ids=sink)


def test_flush_expiry_and_table_limit(pairs: callable, servers: Servers) -> None:
    tracker, writer = pairs(), pairs()
    tracker.call("CLIENT", "TRACKING", "ON")
    tracker.call("GET", "k")
    writer.call("FLUSHDB")
    tracker.call("FLUSHALL")  # its own flush: the null after the reply
    tracker.received()
    # Long enough for both servers to answer the GET before "e" expires (a 1 ms TTL raced
    # it on a loaded machine), short enough to wait out below.
    writer.call("SET", "e", "v", "PX", "500")
    tracker.call("GET", "e")
    for client in writer.clients:  # until it has expired (the read deletes it)
        while client.call("EXISTS", "e") != b":0\r\n":
            pass
    tracker.received()
    writer.call("CONFIG", "SET", "tracking-table-max-keys", "1")
    tracker.call("GET", "x")
    tracker.call("GET", "y")  # the table holds 2 keys now: the next command drops one
    data = [client.call("PING", replies=2) for client in tracker.clients]
    for one in data:
        assert one.count(b"invalidate") == 1 and one.endswith(b"+PONG\r\n")


@pytest.mark.parametrize("args", [
    ("CLIENT", "TRACKING", "ON", "PREFIX", "a"),
    ("CLIENT", "TRACKING", "ON", "BCAST", "OPTIN"),
    ("CLIENT", "TRACKING", "ON", "OPTIN", "OPTOUT"),
    ("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "ab", "PREFIX", "a"),
    ("CLIENT", "TRACKING", "ON", "REDIRECT", "999999"),
    ("CLIENT", "TRACKING", "ON", "REDIRECT", "x"),
    ("CLIENT", "TRACKING", "ON", "FOO"),
    ("CLIENT", "TRACKING", "MAYBE"),
    ("CLIENT", "TRACKING", "OFF"),
    ("CLIENT", "CACHING", "YES"),
    ("CLIENT", "GETREDIR"),
    ("CLIENT", "TRACKINGINFO"),
])
def test_errors_and_info(pairs: callable, args: tuple[str, ...]) -> None:
    for protocol in (2, 3):
        pairs(protocol).call(*args)


def test_mode_switches(pairs: callable) -> None:
    client = pairs()
    client.call("CLIENT", "TRACKING", "ON", "OPTIN")
    client.call("CLIENT", "TRACKING", "ON", "OPTOUT")
    client.call("CLIENT", "TRACKING", "ON", "BCAST")
    client.call("CLIENT", "TRACKING", "OFF")
    client.call("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "a")
    client.call("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "ab")
    client.call("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "b")
    client.call("CLIENT", "TRACKINGINFO")
    client.call("RESET")
    client.call("CLIENT", "TRACKINGINFO")


def _fields(info: bytes, *names: bytes) -> list[bytes]:
    words = dict(word.split(b"=", 1) for word in info.split() if b"=" in word)
    return [words[name] for name in names]


def test_client_info_flags_and_redir(pairs: callable) -> None:
    """CLIENT INFO's flags (t, B, R) and redir=, as redis-server shows them."""
    sink, tracker, bcast = pairs(), pairs(), pairs()
    tracker.call("CLIENT", "TRACKING", "ON", "REDIRECT", "{id}", ids=sink)
    bcast.call("CLIENT", "TRACKING", "ON", "BCAST")
    shown = []
    for pair in (tracker, bcast):
        infos = [client.call("CLIENT", "INFO") for client in pair.clients]
        values = [_fields(info, b"flags", b"redir") for info in infos]
        shown.append(values)
    assert shown[0][0][0] == shown[0][1][0] == b"t"
    assert [int(v) for v in (shown[0][0][1], shown[0][1][1])] == sink.ids
    assert shown[1][0] == shown[1][1] == [b"tB", b"0"]
    sink.close()
    tracker.call("GET", "k")
    pairs().call("SET", "k", "v")
    tracker.received(ids=sink)
    flags = [_fields(client.call("CLIENT", "INFO"), b"flags")[0] for client in tracker.clients]
    assert flags == [b"tR", b"tR"]


def test_pipelined_gets_and_sets(pairs: callable) -> None:
    """Runs of GET and SET (the plain lane's) are remembered and invalidate while any
    client tracks keys."""
    tracker, writer = pairs(), pairs()
    tracker.call("CLIENT", "TRACKING", "ON")
    for pair, command in ((tracker, "GET"), (writer, "SET")):
        for client in pair.clients:
            client.sock.sendall(b"".join(
                pack(command, f"p{i}", *(["v"] if command == "SET" else []))
                for i in range(5)))
            client.read(5)
    assert tracker.received().count(b"invalidate") == 5


def test_engine_without_a_server_broadcasts_as_commands_end() -> None:
    """An engine with no server (no event loop turns) sends BCAST invalidations as the
    modifying command ends; an expired key invalidates like a modified one."""
    from kvrepl.commands.core import Engine
    from kvrepl.config import Config
    from kvrepl.protocol.replies import Push

    engine = Engine(Config(save=()))
    tracker, bcast, writer = (engine.new_session() for _ in range(3))
    for session, mode in ((tracker, []), (bcast, [b"BCAST", b"PREFIX", b"a"])):
        session.resp3 = True
        assert engine.execute(session, [b"CLIENT", b"TRACKING", b"ON", *mode]) is not None
    engine.execute(tracker, [b"GET", b"a1"])
    engine.execute(writer, [b"MSET", b"a1", b"x", b"b1", b"y"])
    assert tracker.pending_out == [Push([b"invalidate", [b"a1"]])]
    assert bcast.pending_out == [Push([b"invalidate", [b"a1"]])]
    tracker.drained()
    engine.execute(tracker, [b"GET", b"b1"])
    engine.execute(writer, [b"PEXPIREAT", b"b1", b"1"])  # deleted at once: a modification
    assert tracker.pending_out == [Push([b"invalidate", [b"b1"]])]


def test_redis_py_client_side_cache_refuses_7_0_servers(servers: Servers) -> None:
    """redis-py's own client-side cache (``cache_config``) checks the server's HELLO reply
    and refuses any server that is not ``redis`` 7.4 or later. kvrepl answers as
    redis-server 7.0.15 (``version`` 7.0.15, never faked), so redis-py refuses it exactly as
    it refuses a real redis-server 7.0: the limit is the client's, and the tracking that a
    cache would use is tested above on raw RESP."""
    from redis.cache import CacheConfig

    messages = []
    for server in servers:
        client = redis.Redis(port=server.port, protocol=3, cache_config=CacheConfig())
        with pytest.raises(redis.ConnectionError) as caught:
            client.ping()
        messages.append(str(caught.value))
        client.close()
        with redis.Redis(port=server.port, protocol=3) as plain:
            hello = plain.execute_command("HELLO", "3")
        assert (hello[b"server"], hello[b"version"]) == (b"redis", b"7.0.15")
    assert messages[0] == messages[1]
    assert "Redis 7.4 or later" in messages[0]


def test_lmove_invalidates_its_destination_first(pairs: callable) -> None:
    """lmoveHandlePush signals the list it pushes on, then lmoveGenericCommand the source:
    the tracking client hears of the destination first (kvrepl sent the key specs' order)."""
    tracker, writer = pairs(), pairs()
    tracker.call("CLIENT", "TRACKING", "ON")
    writer.call("RPUSH", "src", "1", "2", "3", "4")
    for move in (("LMOVE", "src", "dst", "RIGHT", "LEFT"), ("RPOPLPUSH", "src", "dst"),
                 ("BLMOVE", "src", "dst", "LEFT", "RIGHT", "0"), ("BRPOPLPUSH", "src", "dst", "0")):
        tracker.call("MGET", "src", "dst")
        writer.call(*move)
        assert tracker.received() == b"".join(
            b">2\r\n$10\r\ninvalidate\r\n*1\r\n$3\r\n%s\r\n" % k for k in (b"dst", b"src")), move


def test_consumer_group_commands_signal_nothing(pairs: callable) -> None:
    """Redis 7.0 calls signalModifiedKey for XADD, XDEL, XTRIM and the stream XGROUP CREATE
    MKSTREAM creates only: the consumer group commands and XSETID change the stream without
    a WATCH failing or a tracking client being told (kvrepl signalled every write); nor
    does PFDEBUG when it turns an HLL dense."""
    tracker, writer, watcher = pairs(), pairs(), pairs()
    tracker.call("CLIENT", "TRACKING", "ON")
    writer.call("XADD", "s", "1-1", "f", "v")
    writer.call("XGROUP", "CREATE", "s", "g", "0")
    writer.call("PFADD", "h", "a")
    for command in (("PFDEBUG", "TODENSE", "h"), ("XGROUP", "CREATE", "s", "g2", "0"), ("XGROUP", "SETID", "s", "g", "0"),
                    ("XGROUP", "CREATECONSUMER", "s", "g", "c2"),
                    ("XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">"),
                    ("XACK", "s", "g", "1-1"), ("XCLAIM", "s", "g", "c", "0", "1-1"),
                    ("XAUTOCLAIM", "s", "g", "c", "0", "0"),
                    ("XGROUP", "DELCONSUMER", "s", "g", "c"), ("XSETID", "s", "9-0"),
                    ("XGROUP", "DESTROY", "s", "g2"),
                    ("XGROUP", "CREATE", "new", "g", "0", "MKSTREAM"), ("XADD", "s", "10-1", "f", "v")):
        tracker.call("EXISTS", "s", "new", "h")
        watcher.call("WATCH", "s", "new", "h")
        writer.call(*command)
        watcher.call("MULTI")
        watcher.call("PING")
        watcher.call("EXEC")  # runs, except after the MKSTREAM and XADD: the same on both
        tracker.received()
