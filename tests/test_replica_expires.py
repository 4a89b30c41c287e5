"""A writable replica's own keys with a TTL (Redis's expire.c: rememberSlaveKeyWithExpire,
expireSlaveKeys, flushSlaveKeysWithExpireList): remembered when its clients set the TTL,
deleted by the replica itself when they expire, counted in INFO's
slave_expires_tracked_keys and forgotten on a full sync or a FLUSHALL (not on REPLICAOF NO
ONE). Each scenario runs against a redis-server master with a kvrepl replica and with a
redis-server replica, which must agree at every step."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from kvrepl.config import Config
from kvrepl.store.database import Keyspace
from tests.support import RedisServer, ThreadedServer, poll

# Never reached in a test: the keys that must stay do.
LONG_MS = 3_600_000


def _tracked(client: redis.Redis) -> int:
    return client.info("stats")["slave_expires_tracked_keys"]


def _link_up(replica: redis.Redis) -> None:
    poll(lambda: replica.info("replication").get("master_link_status") == "up",
         "the replica's link is up")


@pytest.fixture(params=["kvrepl", "redis"])
def pair(request) -> Iterator[tuple[RedisServer, ThreadedServer | RedisServer]]:
    """A redis-server master and a writable replica of it (kvrepl or redis-server)."""
    master = RedisServer("--repl-diskless-sync-delay", "0")
    replica: ThreadedServer | RedisServer | None = None
    try:
        replica = (ThreadedServer(Config(save=(), replica_read_only=False)).start()
                   if request.param == "kvrepl" else RedisServer("--replica-read-only", "no"))
        replica.client().replicaof("127.0.0.1", master.port)
        _link_up(replica.client())
        yield master, replica
    finally:
        if replica is not None:
            replica.stop()
        master.stop()


def test_writable_replica_expires_the_keys_its_clients_gave_a_ttl(pair):
    master, replica = pair
    ours, ours_db1, theirs = replica.client(), replica.client(db=1), master.client()
    assert _tracked(ours) == 0

    ours.set("long", "v", px=LONG_MS)
    ours.set("plain", "v")
    ours.pexpire("plain", LONG_MS)
    assert _tracked(ours) == 2
    ours_db1.set("long", "v", px=LONG_MS)  # one entry per name: a bitmap of its databases
    ours.set("no-ttl", "v")
    assert _tracked(ours) == 2

    # The master's keys are the master's to expire: not remembered.
    theirs.set("from-master", "v", px=LONG_MS)
    assert theirs.wait(1, 10_000) == 1
    assert ours.pttl("from-master") > 0
    assert _tracked(ours) == 2

    ours.set("short", "v", px=LONG_MS)
    assert _tracked(ours) == 3
    assert ours.dbsize() == 5
    ours.pexpire("short", 50)
    # No lookup touches it: only the replica's active expiry can make DBSIZE drop.
    poll(lambda: ours.dbsize() == 4, "the replica deleted its expired key by itself")
    assert ours.exists("short") == 0
    assert _tracked(ours) == 2
    assert ours.info("stats")["expired_keys"] == 1

    # Its DEL is not in the stream it passes on (a replica's stream is its master's): the
    # replica's offset is still the master's.
    poll(lambda: ours.info("replication")["master_repl_offset"]
         == theirs.info("replication")["master_repl_offset"],
         "the replica's offset is the master's")

    # A remembered key that lost its TTL is forgotten when the sweep next looks at it.
    ours.persist("plain")
    poll(lambda: _tracked(ours) == 1, "the persisted key is no longer tracked")
    assert ours.exists("plain") == 1

    # The master's FLUSHALL empties everything (emptyData(-1)): nothing left to track.
    ours.set("again", "v", px=LONG_MS)
    assert _tracked(ours) == 2
    theirs.flushall()
    assert theirs.wait(1, 10_000) == 1
    assert ours.dbsize() == 0
    assert _tracked(ours) == 0


def test_tracking_survives_promotion_and_ends_with_a_full_sync(pair):
    master, replica = pair
    ours, theirs = replica.client(), master.client()
    ours.set("mine", "v", px=LONG_MS)
    assert _tracked(ours) == 1

    # Redis 7.0 keeps the list when the replica becomes a master (replicationUnsetMaster
    # does not flush it); a master's own TTLs are not remembered.
    ours.replicaof("no", "one")
    assert _tracked(ours) == 1
    ours.set("as-master", "v", px=LONG_MS)
    assert _tracked(ours) == 1

    # Following again with a new history: a full sync, which forgets the list.
    full_syncs = theirs.info("stats")["sync_full"]
    ours.replicaof("127.0.0.1", master.port)
    _link_up(ours)
    assert theirs.info("stats")["sync_full"] == full_syncs + 1
    assert _tracked(ours) == 0
    assert ours.dbsize() == 0


@pytest.fixture(params=["kvrepl", "redis"])
def writable_replica(request) -> Iterator[ThreadedServer | RedisServer]:
    """A writable replica (kvrepl or redis-server) of a redis-server master, its active
    expiry off (DEBUG SET-ACTIVE-EXPIRE 0): only lookups can delete a key."""
    master = RedisServer("--repl-diskless-sync-delay", "0")
    replica: ThreadedServer | RedisServer | None = None
    try:
        replica = (ThreadedServer(Config(save=(), replica_read_only=False,
                                         enable_debug_command="yes")).start()
                   if request.param == "kvrepl" else
                   RedisServer("--replica-read-only", "no", "--enable-debug-command", "yes"))
        client = replica.client()
        client.replicaof("127.0.0.1", master.port)
        _link_up(client)
        client.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "0")
        yield replica
    finally:
        if replica is not None:
            replica.stop()
        master.stop()


def test_a_write_to_an_expired_key_on_a_writable_replica_starts_afresh(writable_replica):
    client = writable_replica.client()
    client.set("k", "v", px=1)
    poll(lambda: client.exists("k") == 0, "the key is logically expired")
    assert client.dbsize() == 1  # a read hides it, a replica's read does not delete it
    # A write command's lookup deletes it first (EXPIRE_FORCE_DELETE_EXPIRED), so the new
    # value does not inherit the old TTL.
    assert client.rpush("k", "x") == 1
    assert client.type("k") == b"list"
    assert client.pttl("k") == -1
    assert client.info("stats")["expired_keys"] == 1


def test_a_read_only_replica_tracks_nothing():
    master = RedisServer("--repl-diskless-sync-delay", "0")
    replica = ThreadedServer(Config(save=(), replica_read_only=False)).start()
    try:
        client = replica.client()
        client.replicaof("127.0.0.1", master.port)
        _link_up(client)
        client.config_set("replica-read-only", "yes")
        master.client().set("k", "v", px=LONG_MS)
        assert master.client().wait(1, 10_000) == 1
        client.config_set("replica-read-only", "no")  # CONFIG SET takes effect at once
        client.set("mine", "v", px=LONG_MS)
        assert _tracked(client) == 1
    finally:
        replica.stop()
        master.stop()


# -- the store's side, on a clock the test moves ------------------------------------------------

def _keyspace(databases: int = 16) -> tuple[Keyspace, list[float]]:
    now = [1_700_000_000.0]
    keyspace = Keyspace(databases, clock=lambda: now[0])
    keyspace.writable_replica = True
    return keyspace, now


def _set(keyspace: Keyspace, db: int, key: bytes, ttl_ms: int) -> None:
    database = keyspace.dbs[db]
    database.set(key, b"v")
    database.set_expire(key, keyspace.now_ms() + ttl_ms)


def test_expire_replica_keys_checks_each_database_of_a_name():
    keyspace, now = _keyspace()
    _set(keyspace, 0, b"k", 100)
    _set(keyspace, 3, b"k", 10_000)
    assert keyspace.replica_expires == {b"k": 0b1001}
    now[0] += 1
    assert keyspace.expire_replica_keys() == 1
    assert b"k" not in keyspace.dbs[0].data and b"k" in keyspace.dbs[3].data
    assert keyspace.replica_expires == {b"k": 0b1000}
    keyspace.dbs[3].delete(b"k")
    keyspace.expire_replica_keys()
    assert keyspace.replica_expires == {}


def test_expire_replica_keys_goes_round_all_entries():
    # Redis stops after more than three keys not yet expired; the next calls go on from
    # where this one stopped, so an expired key behind many live ones goes too.
    keyspace, now = _keyspace()
    for i in range(10):
        _set(keyspace, 0, b"live:%d" % i, 10_000)
    _set(keyspace, 0, b"dies", 100)
    now[0] += 1
    deleted = 0
    for _ in range(3):
        deleted += keyspace.expire_replica_keys()
    assert deleted == 1 and b"dies" not in keyspace.dbs[0].data
    assert len(keyspace.replica_expires) == 10


def test_untracked_writes_and_flushes():
    keyspace, _now = _keyspace(databases=65)
    _set(keyspace, 64, b"high", 100)  # above 63: not tracked, as in Redis
    keyspace.applying_master = True
    _set(keyspace, 0, b"from-master", 100)
    keyspace.applying_master = False
    assert keyspace.replica_expires == {}
    _set(keyspace, 0, b"k", 100)
    keyspace.flushall()
    assert keyspace.replica_expires == {}
    keyspace.writable_replica = False
    _set(keyspace, 0, b"k", 100)
    assert keyspace.replica_expires == {}


def test_forgetting_one_databases_part():
    """A cluster shard's full sync or FLUSHALL forgets the named keys of db 0 only: the
    same name remembered in another database stays, and so do the keys not named."""
    keyspace, _now = _keyspace()
    _set(keyspace, 0, b"shard", 100)
    _set(keyspace, 3, b"shard", 100)
    _set(keyspace, 0, b"other", 100)
    keyspace.forget_replica_expires_of(0, [b"shard", b"not-remembered"])
    assert keyspace.replica_expires == {b"shard": 0b1000, b"other": 0b1}
    # More keys named than remembered: the remembered ones are looked up in them instead.
    keyspace.forget_replica_expires_of(0, [b"x%d" % i for i in range(10)] + [b"other"])
    assert keyspace.replica_expires == {b"shard": 0b1000}
    keyspace.forget_replica_expires_of(3, {b"shard": None})
    assert keyspace.replica_expires == {}
