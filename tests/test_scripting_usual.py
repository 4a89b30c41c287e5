"""EVALSHA's usual call (a cached script without a shebang, a single-digit numkeys) and the
``redis.call`` of a command while no hook or observer is registered: the shortened paths
(``evalsha``'s own, ``LuaState.run_cached``, ``Engine.call_nested``) against redis-server 7.0,
and against kvrepl's general path where redis-server cannot show it (the propagated effects).
"""

from __future__ import annotations

import re

import pytest
import redis
from support import RawClient, argv
from test_scripting import BUSY_FOR_A_SECOND, _until_busy

import kvrepl
from kvrepl.commands.core import Engine, Session
from kvrepl.errors import ReplyError

pytestmark = pytest.mark.redis_server

COUNTER = "return redis.call('incr', KEYS[1])"
TWO_WRITES = "redis.call('set', KEYS[1], ARGV[1]) return redis.call('incrby', KEYS[2], 5)"
SCRIPTS = [
    COUNTER,
    TWO_WRITES,
    "return redis.call('get', KEYS[1])",  # a read: keyspace hits and misses
    "return redis.pcall('incr', KEYS[1])",  # an error caught, counted, the script failed
    "return redis.call('incr', KEYS[1])",
    "return {redis.call('rpush', KEYS[1], ARGV[1]), redis.call('lrange', KEYS[1], 0, -1)}",
    "return redis.call('blpop', KEYS[1], 0)",  # may not block: nil at once
    "error('mine')",
]


def _stats(client: redis.Redis, port: int) -> tuple[object, ...]:
    """Replies of EVALSHAs of SCRIPTS on a few keys, then the errorstats, the calls,
    failed and rejected calls of each command, LATENCY HISTOGRAM's call counts and the
    keyspace hits and misses."""
    client.config_resetstat()
    shas = [client.script_load(script) for script in SCRIPTS]
    replies = []
    for keys, args in ((["n"], []), (["s", "n"], ["v"]), (["missing"], []), (["s"], []),
                       (["list"], ["x"]), (["empty"], [])):
        for sha in shas:
            try:
                replies.append(client.evalsha(sha, len(keys), *keys, *args))
            except redis.ResponseError as err:
                replies.append(str(err).split(" script: ")[0])
    commands = {name: (info["calls"], info["failed_calls"], info["rejected_calls"])
                for name, info in client.info("commandstats").items()}
    commands.pop("cmdstat_config|resetstat", None)
    raw = RawClient(port)
    try:
        histogram = raw.call("LATENCY", "HISTOGRAM", "evalsha", "incr", "get", "set")
    finally:
        raw.close()
    # each command's name and its calls (the buckets depend on time)
    calls = sorted(re.findall(rb"\$\d+\r\n([a-z]+)\r\n\*4\r\n\$5\r\ncalls\r\n:(\d+)",
                              histogram))
    info = client.info("stats")
    return (replies, client.info("errorstats"), commands, calls,
            info["keyspace_hits"], info["keyspace_misses"])


def test_evalsha_counts_its_commands_like_redis(kvrepl_server, redis_server, r, real):
    ours = _stats(r, kvrepl_server.port)
    assert ours[2]["cmdstat_evalsha"][0] == 48 and len(ours[3]) == 4
    assert ours == _stats(real, redis_server.port)


def _watched_and_notified(port: int) -> list[bytes]:
    """A WATCHed key a script's command changes fails the EXEC; a keyspace event of a class
    the plain lane does not watch (lists) comes from a script's command."""
    watcher, runner, listener = RawClient(port), RawClient(port), RawClient(port)
    seen = []
    try:
        runner.call("CONFIG", "SET", "notify-keyspace-events", "Kl")
        listener.call("PSUBSCRIBE", "__keyspace@0__:*")
        sha = runner.call("SCRIPT", "LOAD", "return redis.call('rpush', KEYS[1], 'a')")
        sha = sha.split(b"\r\n")[1]
        seen.append(runner.call("EVALSHA", sha, 1, "l"))
        seen.append(listener.read())
        seen.append(watcher.call("WATCH", "l"))
        seen.append(watcher.call("MULTI"))
        seen.append(watcher.call("GET", "x"))
        seen.append(runner.call("EVALSHA", sha, 1, "l"))
        seen.append(watcher.call("EXEC"))
        seen.append(listener.read())
        seen.append(runner.call("EVALSHA", sha, 1, "other"))
        seen.append(listener.read())
    finally:
        runner.call("CONFIG", "SET", "notify-keyspace-events", "")
        for client in (watcher, runner, listener):
            client.close()
    return seen


def test_evalsha_and_watch_and_keyspace_events_like_redis(kvrepl_server, redis_server, r,
                                                          real):
    assert _watched_and_notified(kvrepl_server.port) == _watched_and_notified(
        redis_server.port)


def _killed(port: int) -> list[bytes]:
    """A cached script that loops until SCRIPT KILL, and one that wrote first."""
    watcher, runner = RawClient(port), RawClient(port)
    seen = []
    try:
        watcher.call("PING")
        spin = runner.call("SCRIPT", "LOAD", "local i = 0 while true do i = i + 1 end")
        wrote = runner.call("SCRIPT", "LOAD", "redis.call('set', KEYS[1], 1) "
                            + BUSY_FOR_A_SECOND)
        runner.send("EVALSHA", spin.split(b"\r\n")[1], 0)
        seen.append(_until_busy(watcher))
        seen.append(watcher.call("SCRIPT", "KILL"))
        seen.append(runner.read())
        runner.send("EVALSHA", wrote.split(b"\r\n")[1], 1, "written")
        seen.append(_until_busy(watcher))
        seen.append(watcher.call("SCRIPT", "KILL"))
        seen.append(runner.read())
        seen.append(watcher.call("GET", "written"))
    finally:
        watcher.close()
        runner.close()
    return seen


def test_busy_evalsha_and_script_kill_like_redis(kvrepl_server, redis_server, configure, r,
                                                 real):
    configure("lua-time-limit", 20)
    assert _killed(kvrepl_server.port) == _killed(redis_server.port)


def test_evalsha_propagates_its_effects_once(engine: Engine, session: Session,
                                             propagated: list[list[bytes]]):
    sha = engine.execute(session, argv("SCRIPT", "LOAD", TWO_WRITES))
    counter = engine.execute(session, argv("SCRIPT", "LOAD", COUNTER))
    assert engine.execute(session, argv("EVALSHA", sha, 2, "s", "n", "v")) == 5
    assert engine.execute(session, argv("EVALSHA", counter, 1, "n")) == 6
    assert propagated == [[b"MULTI"], [b"set", b"s", b"v"], [b"incrby", b"n", b"5"],
                          [b"EXEC"], [b"incr", b"n"]]
    propagated.clear()
    # set_repl(REPL_NONE) goes the general way: nothing propagated
    hidden = engine.execute(session, argv(
        "SCRIPT", "LOAD", "redis.set_repl(redis.REPL_NONE) return redis.call('incr', 'n')"))
    assert engine.execute(session, argv("EVALSHA", hidden, 0)) == 7
    assert propagated == []
    stats = engine.table[b"evalsha"]
    assert (stats.calls, engine.table[b"incr"].calls, engine.table[b"incrby"].calls) == (3, 2, 1)


def test_embedded_evalsha_and_its_changes():
    node = kvrepl.Master()
    propagated: list[list[bytes]] = []  # as the `propagated` fixture listens
    node.engine.propagate_listeners.append(lambda db, argv: propagated.append(list(argv)))
    sha = node.execute_command("SCRIPT", "LOAD", TWO_WRITES)
    assert node.execute_command("EVALSHA", sha, 2, "s", "n", "v") == 5
    assert node.execute_command("EVALSHA", sha, 2, "s", "n", "w") == 10
    assert node.execute_command("GET", "s") == b"w"
    assert node.execute_command("SET", "t", 1) is True
    assert propagated == [[b"MULTI"], [b"set", b"s", b"v"], [b"incrby", b"n", b"5"],
                          [b"EXEC"], [b"MULTI"], [b"set", b"s", b"w"],
                          [b"incrby", b"n", b"5"], [b"EXEC"], [b"SET", b"t", b"1"]]
    with pytest.raises(ReplyError, match="^NOSCRIPT"):
        node.execute_command("EVALSHA", "0" * 40, 0)
    assert node.info("commandstats")["cmdstat_evalsha"]["calls"] == 3


def test_embedded_straight_path_follows_the_shared_session():
    """The embedded API's requests go straight to call() only while its session is plain:
    MULTI queues them (scripts included), a RESET that logs the session out refuses them."""
    node = kvrepl.Master()
    sha = node.execute_command("SCRIPT", "LOAD", COUNTER)
    assert node.execute_command("MULTI") is True
    assert node.execute_command("INCR", "n") == b"QUEUED"
    assert node.execute_command("EVALSHA", sha, 1, "n") == b"QUEUED"
    assert node.execute_command("EXEC") == [1, 2]
    assert node.execute_command("EVALSHA", sha, 1, "n") == 3
    assert node.incr("n") == 4
    node.execute_command("CONFIG", "SET", "requirepass", "secret")
    node.execute_command("RESET")
    with pytest.raises(ReplyError, match="^NOAUTH"):
        node.execute_command("EVALSHA", sha, 1, "n")
    with pytest.raises(ReplyError, match="^NOAUTH"):
        node.incr("n")
    node.execute_command("AUTH", "secret")
    assert node.execute_command("EVALSHA", sha, 1, "n") == 5
    assert node.info("commandstats")["cmdstat_evalsha"]["calls"] == 3


def test_evalsha_numkeys_like_redis(wire, r, real):
    sha = r.script_load(COUNTER)
    assert real.script_load(COUNTER) == sha
    for command in (("EVALSHA", sha, 1, "n"), ("EVALSHA", sha, 2, "n"),
                    ("EVALSHA", sha, -1, "n"), ("EVALSHA", sha, "01", "n"),
                    ("EVALSHA", sha, "1x", "n"), ("EVALSHA", sha, 10, *"abcdefghij"),
                    ("EVALSHA", sha.upper(), 1, "n"), ("EVALSHA", sha[:39], 1, "n"),
                    ("EVALSHA", sha, 0), ("EVALSHA", sha, 1, "n", *map(str, range(40)))):
        wire(*command)
