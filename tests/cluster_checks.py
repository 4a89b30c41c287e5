"""Comparing a cluster follower with the real Redis Cluster it follows, key by key."""

from __future__ import annotations

import threading

import redis
from support import RedisClusterNodes, raw_replies

import kvrepl
from kvrepl.replication.topology import key_slot

# key -> (type, DEBUG DIGEST-VALUE (value and expire time), has a TTL)
View = dict[bytes, tuple[bytes, bytes, bool]]


def cluster_view(nodes: RedisClusterNodes) -> View:
    """The union of the primaries' datasets; a key in two primaries fails the test."""
    view: View = {}
    for primary in nodes.primaries():
        keys = list(primary.client().scan_iter(count=1000))
        raw = raw_replies(primary.client())
        for key, (kind, digest, ttl) in _describe(raw, keys).items():
            assert key not in view, f"{key!r} is in two primaries"
            view[key] = (kind, digest, ttl)
    return view


def server_view(client: redis.Redis) -> View:
    """What a server (a kvrepl-server following the cluster) holds, asked over TCP."""
    keys = list(client.scan_iter(count=1000))
    return _describe(raw_replies(client), keys)


def local_view(replica: kvrepl.Replica) -> View:
    keys = list(replica.engine.keyspace.dbs[0].data)
    view: View = {}
    for key in keys:
        kind = replica.execute_command("TYPE", key)
        digest = replica.execute_command("DEBUG", "DIGEST-VALUE", key)[0]
        ttl = replica.execute_command("PTTL", key) != -1
        view[key] = (bytes(kind), bytes(digest), ttl)
    return view


def _describe(raw: redis.Redis, keys: list[bytes]) -> View:
    pipe = raw.pipeline(transaction=False)
    for key in keys:
        pipe.execute_command("TYPE", key)
        pipe.execute_command("DEBUG", "DIGEST-VALUE", key)
        pipe.execute_command("PTTL", key)
    replies = pipe.execute()
    return {key: (bytes(replies[3 * i]), bytes(replies[3 * i + 1][0]), replies[3 * i + 2] != -1)
            for i, key in enumerate(keys)}


def assert_same(replica: kvrepl.Replica, nodes: RedisClusterNodes) -> None:
    theirs = cluster_view(nodes)
    ours = local_view(replica)
    missing = sorted(set(theirs) - set(ours))[:5]
    extra = sorted(set(ours) - set(theirs))[:5]
    differ = sorted(k for k in set(ours) & set(theirs) if ours[k] != theirs[k])[:5]
    assert not missing and not extra and not differ, (
        f"{len(theirs)} keys in the cluster, {len(ours)} here; missing {missing}, "
        f"extra {extra}, different {differ}")


def write_mixed(client: redis.cluster.RedisCluster, prefix: str, count: int) -> None:
    """Keys of every common type, some with a TTL (long enough not to expire in a test)."""
    for i in range(count):
        name = f"{prefix}:{i}"
        kind = i % 6
        if kind == 0:
            client.set(name, f"v{i}")
        elif kind == 1:
            client.hset(name, mapping={"a": i, "b": "x" * (i % 50)})
        elif kind == 2:
            client.rpush(name, *range(i % 7 + 1))
        elif kind == 3:
            client.sadd(name, *(f"m{j}" for j in range(i % 5 + 1)))
        elif kind == 4:
            client.zadd(name, {f"m{j}": j * 1.5 for j in range(i % 4 + 1)})
        else:
            client.set(name, i, px=600_000)


def slot_owner(nodes: RedisClusterNodes) -> dict[int, str]:
    """slot -> node id of its primary, as the cluster says."""
    owner = {}
    raw = raw_replies(nodes.primaries()[0].client())
    for start, end, primary, *_ in raw.execute_command("CLUSTER", "SLOTS"):
        for slot in range(int(start), int(end) + 1):
            owner[slot] = primary[2].decode()
    return owner


class Writer(threading.Thread):
    """Writes ``prefix:<n>`` keys (SET, INCR, DEL) through a RedisCluster client until
    stopped: a write load that follows MOVED/ASK as any cluster client."""

    def __init__(self, nodes: RedisClusterNodes, prefix: str, keys: int = 400) -> None:
        super().__init__(daemon=True)
        self.client = nodes.client()
        self.prefix = prefix
        self.keys = keys
        self.written = 0
        self._stop_event = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        client = self.client
        i = 0
        try:
            while not self._stop_event.is_set():
                name = f"{self.prefix}:{i % self.keys}"
                step = i % 5
                if step == 3:
                    client.delete(name)
                elif step == 4:
                    client.incr(f"{self.prefix}:counter:{i % 13}")
                else:
                    client.set(name, i)
                i += 1
                self.written = i
        except BaseException as err:  # reported by stop()
            self.error = err

    def stop(self) -> None:
        self._stop_event.set()
        self.join(30)
        assert self.error is None, f"the writer failed: {self.error!r}"
        self.client.close()


__all__ = ["Writer", "assert_same", "cluster_view", "key_slot", "local_view", "server_view",
           "slot_owner", "write_mixed"]
