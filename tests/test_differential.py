"""The same deterministic command sequence against kvrepl and a real redis-server 7.0.

Every reply is compared as it comes, then every key, type, value and TTL of every database.
The sequence is generated from a fixed seed over a small key space, so that commands collide
on keys of every type (WRONGTYPE paths, empty-collection deletion, overwrites).
"""

from __future__ import annotations

import random

import redis
from support import RawClient, outcome, pack, poll

KEYS = [f"k{i}" for i in range(12)]
MEMBERS = ["a", "b", "c", "d", "e", "10", "-3", "x" * 70]
# Replies that are sets in disguise: compare sorted.
UNORDERED = {"SMEMBERS", "SINTER", "SUNION", "SDIFF", "HKEYS", "HVALS", "KEYS", "HGETALL"}


def _score(rng: random.Random) -> str:
    return rng.choice(["1", "2.5", "-1", "0", "inf", "-inf", "3", "1e3", str(rng.randint(-50, 50))])


def command(rng: random.Random) -> list[str]:
    k = rng.choice(KEYS)
    k2 = rng.choice(KEYS)
    m = rng.choice(MEMBERS)
    n = str(rng.randint(-3, 5))
    v = rng.choice(["v", "12", "-7", "3.5", "hello world", "y" * 50, ""])
    sid = f"{rng.randint(0, 60)}-{rng.randint(0, 2)}"  # explicit stream IDs: no clock
    choices = [
        ["SET", k, v], ["SET", k, v, "PX", "100000"], ["SET", k, v, "NX"], ["SET", k, v, "XX", "GET"],
        ["GET", k], ["APPEND", k, v], ["INCR", k], ["INCRBY", k, n], ["DECR", k],
        ["INCRBYFLOAT", k, "1.5"], ["STRLEN", k], ["GETRANGE", k, "0", n], ["SETRANGE", k, "2", v],
        ["MSET", k, v, k2, v], ["MGET", k, k2], ["GETDEL", k], ["GETSET", k, v], ["SETNX", k, v],
        ["DEL", k], ["EXISTS", k, k2], ["TYPE", k], ["EXPIRE", k, "1000"], ["PEXPIRE", k, "500000"],
        ["PERSIST", k], ["TTL", k], ["RENAME", k, k2], ["RENAMENX", k, k2], ["COPY", k, k2],
        ["LPUSH", k, m, v], ["RPUSH", k, m], ["LPOP", k], ["RPOP", k, "2"], ["LRANGE", k, "0", "-1"],
        ["LINDEX", k, n], ["LSET", k, n, m], ["LREM", k, n, m], ["LTRIM", k, "1", "-2"],
        ["LINSERT", k, "BEFORE", m, v], ["LPOS", k, m], ["LMOVE", k, k2, "LEFT", "RIGHT"], ["LLEN", k],
        ["HSET", k, m, v], ["HSET", k, m, v, "f2", "1"], ["HGET", k, m], ["HDEL", k, m], ["HLEN", k],
        ["HINCRBY", k, "cnt", n], ["HINCRBYFLOAT", k, "fl", "0.25"], ["HGETALL", k], ["HKEYS", k],
        ["HMGET", k, m, "f2"], ["HSETNX", k, m, v], ["HEXISTS", k, m], ["HSTRLEN", k, m],
        ["SADD", k, m, "b"], ["SREM", k, m], ["SMEMBERS", k], ["SISMEMBER", k, m], ["SCARD", k],
        ["SINTER", k, k2], ["SUNION", k, k2], ["SDIFF", k, k2], ["SUNIONSTORE", k, k, k2],
        ["SINTERSTORE", k2, k, k2], ["SMOVE", k, k2, m], ["SMISMEMBER", k, m, "b"],
        ["ZADD", k, _score(rng), m], ["ZADD", k, "GT", "CH", _score(rng), m], ["ZINCRBY", k, "2", m],
        ["ZREM", k, m], ["ZCARD", k], ["ZSCORE", k, m], ["ZRANK", k, m],
        ["ZRANGE", k, "0", "-1", "WITHSCORES"], ["ZRANGEBYSCORE", k, "-inf", "+inf"],
        ["ZRANGE", k, "(1", "+inf", "BYSCORE", "LIMIT", "0", "2"], ["ZCOUNT", k, "0", "10"],
        ["ZPOPMIN", k], ["ZUNIONSTORE", k2, "2", k, k2], ["ZINTERSTORE", k2, "2", k, k2, "AGGREGATE", "MAX"],
        ["ZREMRANGEBYRANK", k, "0", "0"], ["ZLEXCOUNT", k, "-", "+"], ["ZMSCORE", k, m, "a"],
        ["SORT", k], ["SORT", k, "ALPHA", "DESC", "LIMIT", "0", "3"],
        ["SETBIT", k, n, "1"], ["GETBIT", k, "3"], ["BITCOUNT", k, "0", n, "BIT"],
        ["BITPOS", k, "0", n], ["BITOP", "XOR", k2, k, k2], ["BITFIELD", k, "INCRBY", "i5", n, n],
        ["XADD", k, sid, m, v], ["XADD", k, "MAXLEN", "~", "2", sid, m, v], ["XLEN", k],
        ["XADD", k, "NOMKSTREAM", "MINID", "=", sid, sid, m, v], ["XDEL", k, sid],
        ["XRANGE", k, "-", "+", "COUNT", "3"], ["XTRIM", k, "MAXLEN", n],
        ["MULTI"], ["EXEC"], ["DISCARD"], ["SELECT", rng.choice(["0", "0", "0", "1", "2"])],
    ]
    return rng.choice(choices)


def normalize(name: str, outcome: tuple[str, object],
              queued: list[str] | None = None) -> tuple[str, object]:
    """Sort the replies that are sets in disguise; inside an EXEC reply, those of the queued
    commands (``queued``: their names, in order)."""
    kind, value = outcome
    if kind == "ok" and name == "EXEC" and queued is not None and isinstance(value, list) \
            and len(value) == len(queued):
        return kind, [normalize(inner, ("ok", reply))[1] if type(reply) is not tuple
                      else reply for inner, reply in zip(queued, value, strict=True)]
    if kind == "ok" and name in UNORDERED:
        if isinstance(value, dict):
            value = sorted(value.items())
        elif isinstance(value, list):
            value = sorted(value)
    return kind, value


def dump_keyspace(client: redis.Redis, databases: int = 3) -> dict:
    """Every key of the first databases: type, value in a canonical form, TTL presence."""
    result = {}
    for db in range(databases):
        client.execute_command("SELECT", db)
        for key in sorted(client.keys("*")):
            kind = client.type(key)
            if kind == b"string":
                value = client.get(key)
            elif kind == b"list":
                value = client.lrange(key, 0, -1)
            elif kind == b"hash":
                flat = client.hgetall(key)
                value = sorted(zip(flat[::2], flat[1::2], strict=True))
            elif kind == b"set":
                value = sorted(client.smembers(key))
            elif kind == b"zset":
                value = client.execute_command("ZRANGE", key, 0, -1, "WITHSCORES")
            elif kind == b"stream":
                value = (client.execute_command("XRANGE", key, "-", "+"),
                         client.execute_command("XINFO", "STREAM", key))
            else:
                value = None
            result[(db, key)] = (kind, value, client.pttl(key))
    client.execute_command("SELECT", 0)
    return result


def test_same_replies_and_same_keyspace(kvrepl_server, redis_server):
    ours = kvrepl_server.client(protocol=2, single_connection_client=True)
    theirs = redis_server.client(protocol=2, single_connection_client=True)
    for client in (ours, theirs):
        client.flushall()
        # Raw replies: compare what the servers sent, not what redis-py made of it.
        client.response_callbacks.clear()
    rng = random.Random(20261125)
    queued: list[str] | None = None  # names of the commands MULTI queued
    for step in range(3000):
        argv = command(rng)
        mine = normalize(argv[0], outcome(ours, argv), queued)
        real = normalize(argv[0], outcome(theirs, argv), queued)
        if argv[0] == "MULTI" and mine[0] == "ok":
            queued = []
        elif argv[0] in ("EXEC", "DISCARD"):
            queued = None
        elif queued is not None and mine == ("ok", b"QUEUED"):
            queued.append(argv[0])
        assert mine == real, f"step {step}: {argv}: kvrepl {mine!r} != redis {real!r}"
    for client in (ours, theirs):
        try:
            client.execute_command("DISCARD")
        except redis.ResponseError:
            pass
    mine, real = dump_keyspace(ours), dump_keyspace(theirs)
    assert mine.keys() == real.keys()
    for key, (kind, value, pttl) in mine.items():
        real_kind, real_value, real_pttl = real[key]
        assert (kind, value) == (real_kind, real_value), key
        # TTLs were set at slightly different instants on the two servers.
        assert (pttl < 0) == (real_pttl < 0) and abs(pttl - real_pttl) < 5000, key
    ours.close()
    theirs.close()


# -- the per-command surface (found by sending every command of COMMAND with too few and too
# many arguments, a wrong-type key, on an empty db): the order of the argument checks --------

SURFACE = [
    # evalShaCommand refuses a sha that is not 40 characters before reading numkeys
    ("EVALSHA", "v", "1"), ("EVALSHA", "abc", "-1"), ("EVALSHA", "abc", "abc"),
    ("EVALSHA_RO", "v", "1"), ("EVALSHA", "0" * 40, "2", "a"), ("EVALSHA", "0" * 40, "-1"),
    # aclCommand matches these subcommands by their argument count
    ("ACL", "CAT", "a", "b"), ("ACL", "LOG", "RESET", "x"), ("ACL", "LOG", "1", "2"),
    ("ACL", "GENPASS", "1", "2"), ("ACL", "CAT", "nosuch"),
    # WAIT's timeout has its own message; counts read as getLongFromObjectOrReply reads them
    ("WAIT", "0", "abc"), ("WAIT", "--1", "0"), ("WAIT", "99999999999999999999", "0"),
    ("WAIT", "0", "-1"),
    # one message for a port that is not a number and one out of range
    ("REPLICAOF", "h", "abc"), ("REPLICAOF", "h", "70000"), ("REPLICAOF", "h", "-1"),
    ("REPLCONF", "listening-port", "--1"),
    # clientCommand matches UNBLOCK only with 3 or 4 arguments, before reading the id
    ("CLIENT", "UNBLOCK", "x", "timeout", "y"), ("CLIENT", "UNBLOCK", "1", "x", "y"),
]


def test_argument_checks_in_redis_order(same, same3):
    for argv in SURFACE:
        same(*argv)
        same3(*argv)


def test_replconf_ack_and_getack_get_no_reply(kvrepl_server, redis_server):
    """replconfCommand returns without a reply to ACK and GETACK from any client: the replies
    a client reads after them are those of its next commands."""
    for port in (kvrepl_server.port, redis_server.port):
        conn = RawClient(port)
        try:
            conn.sock.sendall(pack("REPLCONF", "ACK", "5") + pack("REPLCONF", "GETACK", "*")
                              + pack("ECHO", "a") + pack("ECHO", "b"))
            assert conn.read(2) == b"$1\r\na\r\n$1\r\nb\r\n", port
        finally:
            conn.close()


# -- OBJECT FREQ under an exact LFU policy (found by the random differential's lfu mode) ------

LFU = {"maxmemory": "1gb", "maxmemory-policy": "allkeys-lfu", "lfu-log-factor": "0",
       "lfu-decay-time": "0"}
NO_LFU = {"maxmemory": "0", "maxmemory-policy": "noeviction", "lfu-log-factor": "10",
          "lfu-decay-time": "1"}


def test_accesses_counted_as_redis_counts_them(kvrepl_server, redis_server):
    """With every access counting one (log factor 0, no decay, no shared integers), the LFU
    counter tells how many times each command looked a key up: setKey looks its key up
    (MSET, GETSET's second access, the STORE forms' destination), BZPOPMIN served at once
    looks its key up twice, RENAME and MOVE move the object with its counter."""
    clients = [redis.Redis(port=server.port) for server in (kvrepl_server, redis_server)]
    steps = [("SET", "a", "x"), ("GET", "a"), ("MSET", "a", "y", "b", "z"), ("GETSET", "a", "w"),
             ("SADD", "s", "m"), ("SINTERSTORE", "s", "s"), ("SUNIONSTORE", "t", "s"),
             ("SUNIONSTORE", "t", "s"), ("ZADD", "z", "1", "m", "2", "n"),
             ("ZUNIONSTORE", "z", "1", "z"), ("BZPOPMIN", "z", "0"), ("RENAME", "a", "r"),
             ("MOVE", "r", "1"), ("SELECT", "1"), ("RENAME", "r", "a"), ("MOVE", "a", "0"),
             ("SELECT", "0"), ("BITOP", "NOT", "b", "b"), ("SORT", "s", "ALPHA", "STORE", "t")]
    try:
        for client in clients:
            client.flushall()
            for name, value in LFU.items():
                client.config_set(name, value)
        for step in steps:
            freqs = []
            for client in clients:
                client.execute_command(*step)
                freqs.append([client.execute_command("OBJECT", "FREQ", key)
                              if client.exists(key) else None for key in "abrstz"])
            assert freqs[0] == freqs[1], f"{step}: kvrepl {freqs[0]} != redis {freqs[1]}"
    finally:
        for client in clients:
            client.execute_command("SELECT", "0")
            for name, value in NO_LFU.items():
                client.config_set(name, value)
            client.close()


def test_wait_is_a_blocked_client(kvrepl_server, redis_server):
    """WAIT blocks as Redis's BLOCKED_WAIT: INFO's blocked_clients counts it and CLIENT
    UNBLOCK ends it with the acknowledgements so far, or its error (kvrepl's WAIT was
    neither counted nor unblockable: found by the blocked clients' differential)."""
    seen = []
    for port in (kvrepl_server.port, redis_server.port):
        control, waiter = RawClient(port), RawClient(port)
        try:
            client_id = int(waiter.call("CLIENT", "ID")[1:-2])
            replies = []
            for reason in ("TIMEOUT", "ERROR"):
                waiter.send("WAIT", "1", "0")
                poll(lambda c=control: b"blocked_clients:1\r\n" in c.call("INFO", "clients"),
                     "WAIT blocks")
                replies.append(control.call("CLIENT", "UNBLOCK", client_id, reason))
                replies.append(waiter.read())
            seen.append(replies)
        finally:
            control.close()
            waiter.close()
    assert seen[0] == seen[1] == [b":1\r\n", b":0\r\n", b":1\r\n",
                                  b"-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n"]


def test_monitor_shows_an_aborted_exec(kvrepl_server, redis_server):
    """execCommandAbort feeds MONITOR: an EXEC refused (its arity, a command refused in the
    MULTI) shows, where other refused commands do not (kvrepl showed none)."""
    seen = []
    for port in (kvrepl_server.port, redis_server.port):
        monitor, client = RawClient(port), RawClient(port)
        try:
            assert monitor.call("MONITOR") == b"+OK\r\n"
            for command in (("EXEC", "x"), ("MULTI",), ("GET", "a", "b"), ("EXEC",),
                            ("MULTI",), ("WATCH", "a"), ("EXEC", "x"), ("GET", "a", "b"),
                            ("ECHO", "end")):
                client.call(*command)
            lines = []
            while not lines or not lines[-1].endswith(b'"ECHO" "end"'):
                line = monitor.read()
                lines.append(line[line.index(b"]") + 2:-2])
            seen.append(lines)
        finally:
            monitor.close()
            client.close()
    assert seen[0] == seen[1] == [b'"EXEC" "x"', b'"MULTI"', b'"EXEC"', b'"MULTI"',
                                  b'"WATCH" "a"', b'"EXEC" "x"', b'"ECHO" "end"']
