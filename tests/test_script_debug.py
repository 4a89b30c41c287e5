"""SCRIPT DEBUG and the Lua debugger (LDB), byte for byte against redis-server 7.0.

Each session is driven over a raw socket as redis-cli --ldb drives it: SCRIPT DEBUG, EVAL,
then one debugger command per stop, every reply read whole; the same session runs against
both servers and the transcripts must be equal. redis-cli itself is driven through a pipe.
"""

from __future__ import annotations

import gc
import re
import select
import shutil
import subprocess
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import RawClient, RedisServer, ThreadedServer, pack, poll

from kvrepl import gc_policy
from kvrepl.config import Config

SCRIPT = b"""local a = redis.call('set', KEYS[1], ARGV[1])
local t = {1, 2, 'x', {nested = true}}
local function twice(n)
  local doubled = n * 2
  return doubled
end
redis.debug('value of a', a, t, nil, 3.5)
local r = twice(21)
redis.call('incr', KEYS[1])
redis.pcall('incr', KEYS[1])
return {r, redis.call('get', KEYS[1])}
"""


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[int, int]]:
    ours = ThreadedServer().start()
    theirs = RedisServer()
    try:
        yield ours.port, theirs.port
    finally:
        ours.stop()
        theirs.stop()


def transcript(port: int, mode: str, script: bytes, keys: list[str], args: list[str],
               commands: list[list[str]], eval_cmd: str = "EVAL") -> list[bytes]:
    """Every reply of one debugging session, the EVAL's last; the server must close the
    connection after it."""
    client = RawClient(port)
    try:
        out = [client.call("SCRIPT", "DEBUG", mode)]
        client.send(eval_cmd, script, len(keys), *keys, *args)
        out.append(client.read())
        if out[-1].startswith(b"-"):
            return out
        for command in commands:
            client.send(*command)
            out.append(client.read())
        if not out[-1].endswith(b"+<endsession>\r\n"):  # the end mark, then the EVAL's reply
            out.append(client.read())
        out.append(client.read())
        assert client.closed()
        return out
    finally:
        client.close()


def same(servers: tuple[int, int], *args: object, **kwargs: object) -> list[bytes]:
    ours, theirs = (transcript(port, *args, **kwargs) for port in servers)
    assert ours == theirs
    return ours


SESSION = [["s"], ["p"], ["print", "a"], ["p", "KEYS"], ["p", "nosuch"], ["l"], ["list", "3", "1"],
           ["w"], ["b", "9"], ["b", "9"], ["b", "99"], ["b", "x"], ["b", "11", "-7"], ["b"],
           ["e", "1 + 1"], ["eval", "local z = 5"], ["e", "nosuch("],
           ["r", "set", "other", "x"], ["redis", "lpush", "other", "y"], ["t"], ["m"],
           ["x"], ["h"], ["s"], ["s"], ["s"], ["s"], ["s"], ["t"], ["p"], ["c"], ["b", "-9"],
           ["b", "0"], ["c"]]


@pytest.mark.parametrize("mode", ["YES", "SYNC"])
def test_a_session_matches_redis(servers: tuple[int, int], mode: str) -> None:
    out = same(servers, mode, SCRIPT, ["k"], ["5"], SESSION)
    assert out[0] == b"+OK\r\n"
    assert out[1].startswith(b"*2\r\n+* Stopped at 1, stop reason = step over\r\n")
    assert out[-1] == b"*2\r\n:42\r\n$1\r\n7\r\n"


@pytest.mark.parametrize(("mode", "kept"), [("YES", None), ("SYNC", b"7")])
def test_yes_rolls_back_and_sync_keeps(servers: tuple[int, int], mode: str,
                                       kept: bytes | None) -> None:
    """A YES session leaves the dataset as it was (Redis: its forked child's), SYNC keeps
    the writes."""
    for port in servers:
        setup = RawClient(port)
        setup.call("DEL", "k", "other")
        setup.call("SET", "untouched", "1")
        transcript(port, mode, SCRIPT, ["k"], ["5"], [["r", "set", "other", "x"], ["c"]])
        assert setup.call("GET", "k") == (b"$1\r\n7\r\n" if kept else b"$-1\r\n")
        assert setup.call("EXISTS", "other") == (b":1\r\n" if kept else b":0\r\n")
        assert setup.call("GET", "untouched") == b"$1\r\n1\r\n"
        setup.close()


def test_yes_rolls_back_flushes_and_container_changes(servers: tuple[int, int]) -> None:
    script = b"""redis.call('rpush', KEYS[1], 'c')
redis.call('hset', KEYS[2], 'f', 'new')
redis.call('flushall')
redis.call('set', KEYS[1], 'replaced')
return 1
"""
    for port in servers:
        setup = RawClient(port)
        setup.call("FLUSHALL")
        setup.call("RPUSH", "l", "a", "b")
        setup.call("HSET", "h", "f", "old")
        setup.call("PEXPIRE", "h", "100000")
        setup.call("SELECT", "3")
        setup.call("SET", "in3", "x")
        before = setup.call("DEBUG", "DIGEST")
        assert transcript(port, "YES", script, ["l", "h"], [], [["c"]])[-1] == b":1\r\n"
        assert setup.call("DEBUG", "DIGEST") == before
        setup.call("SELECT", "0")
        assert setup.call("LRANGE", "l", "0", "-1") == b"*2\r\n$1\r\na\r\n$1\r\nb\r\n"
        assert setup.call("PTTL", "h") != b":-1\r\n"
        setup.close()


@pytest.mark.parametrize("commands", [
    [["a"]],  # abort: the script's error, at the line it stopped
    [["s"], ["abort"]],
    [["c"], ["c"]],  # redis.breakpoint() stops it
    [["b", "3"], ["c"], ["c"]],
])
def test_abort_and_breakpoints(servers: tuple[int, int], commands: list[list[str]]) -> None:
    script = b"""local x = 1
if redis.breakpoint() then x = 2 end
local y = x + 1
return redis.call('incr', 'n')
"""
    same(servers, "SYNC", script, [], [], commands)


def test_errors_of_commands_are_logged(servers: tuple[int, int]) -> None:
    script = b"""redis.call('set', 'str', 'v')
redis.pcall('lpush', 'str', 'x')
redis.pcall('nosuchcommand')
redis.pcall('get')
return redis.error_reply('MY own')
"""
    same(servers, "SYNC", script, [], [], [["s"], ["s"], ["s"], ["s"], ["s"]])


def test_maxlen_trims_replies(servers: tuple[int, int]) -> None:
    script = b"""local v = string.rep('x', 300)
redis.call('set', 'big', v)
redis.call('get', 'big')
redis.call('get', 'big')
return 1
"""
    same(servers, "SYNC", script, [], [],
         [["s"], ["s"], ["p", "v"], ["m", "10"], ["s"], ["maxlen", "0"], ["s"], ["c"]])


def test_refusals(servers: tuple[int, int]) -> None:
    same(servers, "SYNC", b"return 1 +", [], [], [])  # does not compile: the end mark first
    same(servers, "YES", b"return 1", [], [], [], eval_cmd="EVALSHA")
    for port in servers:
        client = RawClient(port)
        assert client.call("SCRIPT", "DEBUG", "maybe") == b"-ERR Use SCRIPT DEBUG YES/SYNC/NO\r\n"
        assert client.call("SCRIPT", "DEBUG", "YES") == b"+OK\r\n"
        assert client.call("SCRIPT", "DEBUG", "NO") == b"+OK\r\n"
        assert client.call("EVAL", "return 7", "0") == b":7\r\n"  # not debugged
        client.close()


PIPELINES = [  # (commands sent in one write, replies)
    ([("PING",), ("SCRIPT", "DEBUG", "YES"), ("EVAL", "return 1", "0")], 3),  # not debugged
    ([("GET", "nokey"), ("SCRIPT", "DEBUG", "SYNC")], 2),  # after the plain lane's reply
    ([("PING",), ("SCRIPT", "DEBUG", "NO")], 2),
    ([("PING",), ("SCRIPT", "DEBUG", "maybe")], 2),  # refused before the mode is read
    ([("MULTI",), ("SCRIPT", "DEBUG", "NO"), ("EXEC",)], 3),  # EXEC's header is pending
    ([("SCRIPT", "DEBUG", "NO"), ("PING",)], 2),  # first in the pipeline: nothing pending
]


def test_refused_inside_a_pipeline(servers: tuple[int, int]) -> None:
    """SCRIPT DEBUG after replies not yet sent is refused, as Redis's clientHasPendingReplies
    check does."""
    seen = []
    for port in servers:
        replies = []
        for commands, count in PIPELINES:
            client = RawClient(port)
            client.sock.sendall(b"".join(pack(*command) for command in commands))
            replies.append(client.read(count))
            client.close()
        seen.append(replies)
    refused = b"-ERR SCRIPT DEBUG must be called outside a pipeline\r\n"
    assert seen[0] == seen[1] == [
        b"+PONG\r\n" + refused + b":1\r\n", b"$-1\r\n" + refused, b"+PONG\r\n" + refused,
        b"+PONG\r\n" + refused, b"+OK\r\n+QUEUED\r\n*1\r\n" + refused, b"+OK\r\n+PONG\r\n"]


def test_a_client_that_leaves_lets_the_script_finish(servers: tuple[int, int]) -> None:
    for port in servers:
        client = RawClient(port)
        client.call("SCRIPT", "DEBUG", "SYNC")
        client.send("EVAL", "redis.call('set', 'left', 'yes')\nreturn 1", "0")
        client.read()
        client.close()
        other = RawClient(port)
        assert other.call("GET", "left") == b"$3\r\nyes\r\n"
        other.call("DEL", "left")
        other.close()


_COLOURS = re.compile(rb"\x1b\[[0-9;]*m")


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli is not installed")
@pytest.mark.parametrize("option", ["--ldb", "--ldb-sync-mode"])
def test_redis_cli_ldb(servers: tuple[int, int], tmp_path: object, option: str) -> None:
    """redis-cli --ldb, its input piped: the same screen from both servers."""
    path = tmp_path / "script.lua"  # type: ignore[operator]
    path.write_bytes(SCRIPT)
    keystrokes = b"s\np\nl\nb 9\ne #t\nr get k\nc\np doubled\nc\n"
    screens = []
    for port in servers:
        done = subprocess.run(
            ["redis-cli", "-p", str(port), option, "--eval", str(path), "k", ",", "5"],
            input=keystrokes, capture_output=True, timeout=30, check=True)
        screens.append(_COLOURS.sub(b"", done.stdout))
    assert screens[0] == screens[1]
    assert b"<redis> set k 5" in screens[0]
    assert b"Lua debugging session ended" in screens[0]


def test_a_long_run_stops_the_script(servers: tuple[int, int]) -> None:
    """Past busy-reply-threshold without a stop, the debugger stops the script itself (on
    a line of the loop: which one depends on where the instruction count falls)."""
    script = b"local i = 0\nwhile true do\n  i = i + 1\nend\n"
    for port in servers:
        RawClient(port).call("CONFIG", "SET", "busy-reply-threshold", "50")
    try:
        for port in servers:
            out = transcript(port, "SYNC", script, [], [], [["c"], ["a"]])
            assert re.match(rb"\*2\r\n\+\* Stopped at [34], stop reason = timeout reached, "
                            rb"infinite loop\?\r\n", out[2])
            assert re.match(rb"-ERR script aborted for user request script: \w+, on "
                            rb"@user_script:[34]\.\r\n", out[-1])
    finally:
        for port in servers:
            RawClient(port).call("CONFIG", "SET", "busy-reply-threshold", "5000")


# -- YES: the session runs on a copy of the node while the server serves the others ----------

FORKED = b"""local before = redis.call('get', KEYS[1])
redis.call('set', KEYS[1], 'session')
redis.call('set', 'session-only', '1')
return before
"""


def _stats(port: int, names: tuple[str, ...]) -> dict[str, bytes]:
    """INFO commandstats' calls of ``names``, as each line shows them (absent: b"")."""
    info = RawClient(port).call("INFO", "commandstats")
    found = dict(re.findall(rb"cmdstat_([a-z|]+):calls=(\d+)", info))
    return {name: found.get(name.encode(), b"") for name in names}


def test_yes_serves_the_others_while_stopped(servers: tuple[int, int]) -> None:
    """While a YES session is stopped, another client is served (its writes do not reach the
    session's copy), the debugging client is gone from the node (CLIENT KILL finds no such
    client, SCRIPT KILL no script), and after the session nothing of its writes is left:
    the dataset, DEBUG DIGEST and the commandstats are the other client's only."""
    seen = []
    for port in servers:
        other = RawClient(port)
        other.call("FLUSHALL")
        other.call("SET", "k", "before")
        other.call("CONFIG", "RESETSTAT")
        debugging = RawClient(port)
        client_id = debugging.call("CLIENT", "ID")[1:-2].decode()
        replies = [debugging.call("SCRIPT", "DEBUG", "YES")]
        debugging.send("EVAL", FORKED, "1", "k")
        replies.append(debugging.read())  # stopped at line 1
        replies += [other.call("PING"), other.call("SET", "k", "other"),
                    other.call("GET", "k"), other.call("SCRIPT", "KILL"),
                    other.call("CLIENT", "KILL", "ID", client_id)]
        digest = other.call("DEBUG", "DIGEST")
        replies.append(debugging.call("redis", "get", "k"))  # the value at fork time
        replies += [debugging.call("s"), debugging.call("s"), debugging.call("c")]
        if not replies[-1].endswith(b"+<endsession>\r\n"):
            replies.append(debugging.read())
        replies.append(debugging.read())  # the EVAL's reply
        assert debugging.closed()
        debugging.close()
        replies += [other.call("GET", "k"), other.call("EXISTS", "session-only"),
                    other.call("DEBUG", "DIGEST") == digest]
        replies.append(_stats(port, ("set", "get", "eval", "ping", "exists")))
        other.close()
        seen.append(replies)
    assert seen[0] == seen[1]
    replies = seen[0]
    assert replies[2:7] == [b"+PONG\r\n", b"+OK\r\n", b"$5\r\nother\r\n",
                            b"-NOTBUSY No scripts in execution right now.\r\n",
                            b":0\r\n"]  # no client killed
    assert b'<reply> "before"' in replies[7]
    assert replies[-5] == b"$6\r\nbefore\r\n"
    assert replies[-4:-1] == [b"$5\r\nother\r\n", b":0\r\n", True]
    assert replies[-1]["set"] == b"1"  # the other client's SET only


def test_two_yes_sessions_at_once(servers: tuple[int, int]) -> None:
    """Several forked sessions may run at once, each on its own copy."""
    seen = []
    for port in servers:
        setup = RawClient(port)
        setup.call("SET", "k", "before")
        first, second = RawClient(port), RawClient(port)
        replies = []
        for client in (first, second):
            replies.append(client.call("SCRIPT", "DEBUG", "YES"))
            client.send("EVAL", FORKED, "1", "k")
            replies.append(client.read())
        replies.append(first.call("redis", "set", "k", "first"))
        replies.append(second.call("redis", "get", "k"))  # not the first session's write
        replies.append(first.call("redis", "get", "k"))
        for client in (first, second):
            client.send("c")
            replies.append(client.read(2))
            assert client.closed()
            client.close()
        replies.append(setup.call("GET", "k"))
        setup.close()
        seen.append(replies)
    assert seen[0] == seen[1]
    assert b'<reply> "before"' in seen[0][5]
    assert b'<reply> "first"' in seen[0][6]
    assert seen[0][-1] == b"$6\r\nbefore\r\n"


def test_yes_under_maxmemory(servers: tuple[int, int]) -> None:
    """The session's OOM checks see the node's state at the EVAL (inherited by the child)."""
    script = b"redis.pcall('set', 'a', 'b')\nreturn redis.pcall('get', 'a')\n"
    for port in servers:
        RawClient(port).call("CONFIG", "SET", "maxmemory", "1")
    try:
        out = same(servers, "YES", script, [], [], [["s"], ["s"]])
    finally:
        for port in servers:
            RawClient(port).call("CONFIG", "SET", "maxmemory", "0")
    assert b"OOM command not allowed" in out[2]


def test_a_long_yes_session_leaves_the_others_unbusy(servers: tuple[int, int]) -> None:
    """Past busy-reply-threshold a YES session's script makes no one else BUSY (Redis runs
    it in its child): the others are answered until the debugger stops it."""
    script = b"local i = 0\nwhile true do\n  i = i + 1\nend\n"
    for port in servers:
        RawClient(port).call("CONFIG", "SET", "busy-reply-threshold", "200")
    try:
        for port in servers:
            debugging, other = RawClient(port), RawClient(port)
            debugging.call("SCRIPT", "DEBUG", "YES")
            debugging.send("EVAL", script, "0")
            debugging.read()
            debugging.send("c")
            pings = 0
            while not select.select([debugging.sock], [], [], 0)[0]:
                assert other.call("PING") == b"+PONG\r\n"
                pings += 1
            assert pings
            assert b"timeout reached, infinite loop?" in debugging.read()
            debugging.send("a")
            assert debugging.read().endswith(b"+<endsession>\r\n")
            assert re.match(rb"-ERR script aborted for user request script: \w+, on "
                            rb"@user_script:[34]\.\r\n", debugging.read())
            debugging.close()
            other.close()
    finally:
        for port in servers:
            RawClient(port).call("CONFIG", "SET", "busy-reply-threshold", "5000")


@pytest.fixture
def fresh() -> Iterator[tuple[ThreadedServer, RedisServer]]:
    """A kvrepl node and a redis-server of this test's own (it may stop them)."""
    ours = ThreadedServer().start()
    theirs = RedisServer()
    try:
        yield ours, theirs
    finally:
        ours.stop()
        theirs.stop()


def _stopped_session(port: int) -> RawClient:
    """A client in a YES session, stopped at its first line."""
    client = RawClient(port)
    client.call("SCRIPT", "DEBUG", "YES")
    client.send("EVAL", FORKED, "1", "k")
    assert b"Stopped at 1" in client.read()
    return client


def test_a_yes_client_that_leaves(fresh: tuple[ThreadedServer, RedisServer]) -> None:
    """The session goes on without its client, to the script's end, and leaves nothing."""
    ours, theirs = fresh
    for port in (ours.port, theirs.port):
        _stopped_session(port).close()
        other = RawClient(port)
        assert other.call("PING") == b"+PONG\r\n"
        assert other.call("EXISTS", "session-only") == b":0\r\n"
        other.close()
    poll(lambda: not ours.server.forked_sessions, "the session ended")


def test_shutdown_kills_the_yes_sessions(fresh: tuple[ThreadedServer, RedisServer]) -> None:
    """SHUTDOWN ends every forked session (ldbKillForkedSessions): its client sees the
    connection close, with nothing more sent."""
    for server in fresh:
        debugging = [_stopped_session(server.port) for _ in range(2)]
        other = RawClient(server.port)
        other.send("SHUTDOWN", "NOSAVE")
        for client in debugging:
            assert client.closed()
            client.close()
        other.close()
    poll(lambda: not fresh[0].server.forked_sessions, "the killed sessions ended")


def test_yes_writes_reach_no_replica_and_no_subscriber(
        fresh: tuple[ThreadedServer, RedisServer]) -> None:
    """Nothing of the session goes into the replication stream nor to keyspace
    notifications: the next thing a replica and a subscriber see is the write after it."""
    seen = []
    for master in fresh:
        RawClient(master.port).call("CONFIG", "SET", "repl-diskless-sync-delay", "0")
        replica = RedisServer("--replicaof", "127.0.0.1", str(master.port))
        try:
            other = RawClient(master.port)
            other.call("CONFIG", "SET", "notify-keyspace-events", "KA")
            subscriber = RawClient(master.port)
            subscriber.call("PSUBSCRIBE", "__keyspace@0__:*")
            follower = RawClient(replica.port)
            poll(lambda f=follower: b"master_link_status:up" in f.call("INFO", "replication"),
                 "the replica is in sync")
            debugging = _stopped_session(master.port)
            debugging.send("c")
            debugging.read(2)
            assert debugging.closed()
            debugging.close()
            other.call("SET", "marker", "1")
            message = subscriber.read()
            poll(lambda f=follower: f.call("EXISTS", "marker") == b":1\r\n",
                 "the replica has the marker")
            seen.append((message, follower.call("KEYS", "*"),
                         follower.call("DEBUG", "DIGEST") == other.call("DEBUG", "DIGEST")))
            for client in (other, subscriber, follower):
                client.close()
        finally:
            replica.stop()
    assert seen[0] == seen[1]
    assert b"keyspace@0__:marker" in seen[0][0]
    assert seen[0][1:] == (b"*1\r\n$6\r\nmarker\r\n", True)


def test_a_yes_session_writes_no_dump(tmp_path: Path) -> None:
    """FLUSHALL in a YES session saves nothing, save points or not (a deliberate difference:
    Redis's child would write its emptied dataset over the node's dump file)."""
    node = ThreadedServer(Config(save=((3600, 1),), dir=str(tmp_path),
                                 repl_diskless_sync_delay=0)).start()
    try:
        RawClient(node.port).call("SET", "k", "v")
        out = transcript(node.port, "YES", b"redis.call('flushall')\nreturn 1\n", [], [],
                         [["c"]])
        assert out[-1] == b":1\r\n"
        assert not (tmp_path / "dump.rdb").exists()
        assert RawClient(node.port).call("DBSIZE") == b":1\r\n"
    finally:
        node.stop()


# -- what Redis's forked child does, observed side by side -----------------------------------


def test_yes_checks_min_replicas_as_at_the_fork(servers: tuple[int, int]) -> None:
    """The child checks min-replicas-to-write with its node's good replicas at the fork
    (none here): the script's write is refused with NOREPLICAS."""
    for port in servers:
        RawClient(port).call("CONFIG", "SET", "min-replicas-to-write", "1")
    try:
        out = same(servers, "YES", b"redis.call('set', 'mr', '1')\nreturn 1\n", [], [],
                   [["c"]])
    finally:
        for port in servers:
            RawClient(port).call("CONFIG", "SET", "min-replicas-to-write", "0")
    assert out[-1].startswith(b"-NOREPLICAS Not enough good replicas to write. script: ")


def _after_the_session(port: int, requests: list[tuple[object, ...]],
                       protocol: int = 2) -> bytes:
    """SCRIPT DEBUG YES, then ``requests`` in one write (the last runs the debugged EVAL),
    continued to its end: everything the client received after SCRIPT DEBUG's reply."""
    client = RawClient(port, protocol)
    try:
        for request in requests[:-1]:
            if request[0] in ("SUBSCRIBE", "SCRIPT"):  # a reply to wait for, one by one
                client.call(*request)
        client.sock.sendall(b"".join(pack(*r) for r in requests
                                     if r[0] not in ("SUBSCRIBE", "SCRIPT")))
        seen = b""
        while b"Stopped at 1" not in seen:
            seen += client.sock.recv(65536)
        client.send("c")
        while chunk := client.sock.recv(65536):
            seen += chunk
        return seen
    finally:
        client.close()


DEBUGGED = ("EVAL", "redis.call('set', 'b', '2')\nreturn 7", "0")
BUFFERED = [  # requests (SUBSCRIBE and SCRIPT answered first), what follows <endsession>
    ([("SCRIPT", "DEBUG", "YES"), ("PING",), DEBUGGED], b"+PONG\r\n:7\r\n"),
    ([("SCRIPT", "DEBUG", "YES"), ("MULTI",), ("SET", "a", "1"), DEBUGGED, ("INCR", "a"),
      ("EXEC",), ("PING",)], b"+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n*3\r\n+OK\r\n:7\r\n"),
    ([("SCRIPT", "DEBUG", "YES"), DEBUGGED, ("PING",)], b":7\r\n"),
]


@pytest.mark.parametrize(("requests", "tail"), BUFFERED, ids=["pipelined", "exec", "after"])
def test_yes_sends_the_output_it_inherited_at_its_end(
        servers: tuple[int, int], requests: list[tuple[object, ...]], tail: bytes) -> None:
    """Redis's child inherits the client's output buffer (replies of the same read, EXEC's
    header and the replies before the EVAL) and writes it after the session's logs, before
    the EVAL's reply. The parent runs the rest of EXEC, on its dataset, for no one."""
    seen = []
    for port in servers:
        client = RawClient(port)
        client.call("DEL", "a", "b")
        seen.append((_after_the_session(port, requests), client.call("MGET", "a", "b")))
        client.call("DEL", "a", "b")
        client.close()
    (ours, our_values), (theirs, their_values) = seen
    assert ours.endswith(b"+<endsession>\r\n" + tail)
    assert _same_but_dismissed(ours, theirs)
    assert our_values == their_values


def _same_but_dismissed(ours: bytes, theirs: bytes) -> bool:
    """``ours`` equals redis-server's ``theirs`` but where ``theirs`` holds zeros from its
    dismissed reply buffer: redis-server 7.0's forked child madvises away (MADV_DONTNEED)
    every client's static reply buffer of over half a page right after the fork
    (``dismissMemoryInChild``, meant for RDB children), so the inherited replies its LDB
    child then writes read as zero bytes whenever that buffer had not yet been shrunk by
    ``clientsCronResizeOutputBuffer`` (a client younger than its first cron pass)."""
    return len(ours) == len(theirs) and all(
        mine == their or their == 0 for mine, their in zip(ours, theirs, strict=True))


def test_a_publish_in_yes_counts_the_subscribers_and_reaches_none(
        servers: tuple[int, int]) -> None:
    """PUBLISH in the child counts the node's subscribers (PUBSUB NUMSUB too) and delivers
    to none of them; the debugging client's own subscription (RESP3) gets its message with
    the EVAL's reply."""
    script = ("return {redis.call('publish', 'news', 'hi'), "
              "redis.call('pubsub', 'numsub', 'news')}")
    seen = []
    for port in servers:
        subscriber = RawClient(port)
        subscriber.call("SUBSCRIBE", "news")
        try:
            alone = _after_the_session(port, [("SCRIPT", "DEBUG", "YES"), ("EVAL", script, 0)])
            own = _after_the_session(port, [("SUBSCRIBE", "news"), ("SCRIPT", "DEBUG", "YES"),
                                            ("EVAL", script, 0)], protocol=3)
            # Nothing reached the subscriber: the next thing it gets is a later message.
            assert RawClient(port).call("PUBLISH", "news", "after") == b":1\r\n"
            seen.append((alone, own, subscriber.read()))
        finally:
            subscriber.close()
    assert seen[0] == seen[1]
    alone, own, message = seen[0]
    assert alone.endswith(b"+<endsession>\r\n*2\r\n:1\r\n*2\r\n$4\r\nnews\r\n:1\r\n")
    assert own.endswith(b"+<endsession>\r\n>3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n"
                        b"*2\r\n:2\r\n*2\r\n$4\r\nnews\r\n:2\r\n")
    assert message == b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nafter\r\n"


def test_a_freeze_waits_for_a_yes_session_copy_to_be_freed(
        fresh: tuple[ThreadedServer, RedisServer]) -> None:
    """A gc_policy freeze while a session runs is deferred until its copy of the node (a
    web of cycles) has been collected: frozen, it would stay for good."""
    node = fresh[0]
    sessions: list[object] = []
    run_forked = node.server._run_forked

    def capture(forked, channel):  # type: ignore[no-untyped-def]
        sessions.append(weakref.ref(forked.engine))
        run_forked(forked, channel)

    node.server._run_forked = capture  # type: ignore[method-assign]
    policy = gc_policy.install()
    try:
        debugging = _stopped_session(node.port)
        freezes = policy.freezes
        assert gc_policy.dataset_loaded()
        assert policy.freezes == freezes  # deferred: the session's copy is alive
        debugging.send("c")
        debugging.read(2)
        assert debugging.closed()
        debugging.close()
        copy = sessions[0]
        poll(lambda: gc.collect() >= 0 and copy() is None, "the session's copy to be freed")
        poll(lambda: gc_policy.cron(node.engine.keyspace) or policy.freezes > freezes,
             "the deferred freeze")
        assert policy.freezes == freezes + 1
    finally:
        gc_policy.uninstall()
