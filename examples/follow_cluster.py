"""One local, read-only copy of a whole Redis Cluster, kept current while the cluster moves.

    python examples/follow_cluster.py

It starts a small Redis Cluster of its own (three redis-server primaries with a replica
each, in a temporary folder, on free loopback ports), writes keys to it with redis-py's
RedisCluster, and follows it with ``kvrepl.Replica(follow=kvrepl.Cluster(...))``: one
replication link per primary, one local keyspace read with plain calls. Then it moves a
third of one primary's slots to another (``redis-cli --cluster reshard``) and fails a
primary over to its replica (``CLUSTER FAILOVER``), printing what the follower sees, and
checks after each step that it holds exactly the cluster's keys. Everything it started is
stopped and removed at the end. Needs redis-server and redis-cli 7.0 on the PATH.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import redis
import trio
from redis.cluster import RedisCluster

import kvrepl

PRIMARIES = 3
KEYS = 3000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SmallCluster:
    """redis-server processes made one cluster with ``redis-cli --cluster create``."""

    def __init__(self, folder: str) -> None:
        self.processes: list[subprocess.Popen] = []
        self.ports: list[int] = []
        for index in range(PRIMARIES * 2):
            port = free_port()
            node_dir = os.path.join(folder, str(index))
            os.mkdir(node_dir)
            self.processes.append(subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                 "--cluster-enabled", "yes", "--cluster-port", str(free_port()),
                 "--cluster-node-timeout", "1000", "--repl-diskless-sync-delay", "0",
                 "--save", "", "--appendonly", "no", "--dir", node_dir],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            self.ports.append(port)
        for port in self.ports:
            self._until(lambda p=port: redis.Redis(port=p).ping(), "redis-server starts")
        subprocess.run(["redis-cli", "--cluster", "create",
                        *(f"127.0.0.1:{p}" for p in self.ports), "--cluster-replicas", "1",
                        "--cluster-yes"], check=True, capture_output=True, timeout=60)
        self.wait_ok()

    @staticmethod
    def _until(condition: object, what: str, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                if condition():  # type: ignore[operator]
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting until {what}")
            time.sleep(0.05)

    def wait_ok(self) -> None:
        def ok() -> bool:
            return all(redis.Redis(port=p).cluster("info")["cluster_state"] == "ok"
                       for p in self.ports)
        self._until(ok, "the cluster is ok")

    def primaries(self) -> list[int]:
        return [p for p in self.ports if redis.Redis(port=p).execute_command("ROLE")[0]
                == b"master"]

    def node_id(self, port: int) -> str:
        return redis.Redis(port=port).execute_command("CLUSTER MYID").decode()

    def keys(self) -> set[bytes]:
        return {key for p in self.primaries() for key in redis.Redis(port=p).scan_iter()}

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(10)


def shards(replica: kvrepl.Replica) -> str:
    info = replica.info("shards")
    rows = [info[f"shard{i}"] for i in range(info["cluster_follow_shards"])]
    return "; ".join(f":{row['port']} slots {row['slots']} ({row['link']}, "
                     f"{row['full_syncs']} full/{row['partial_syncs']} partial syncs)"
                     for row in rows)


def slots_of(replica: kvrepl.Replica, port: int) -> int:
    """How many slots the follower knows the primary at ``port`` to serve."""
    info = replica.info("shards")
    for i in range(info["cluster_follow_shards"]):
        row = info[f"shard{i}"]
        if row["port"] == port:
            ranges = [r.split("-") for r in str(row["slots"]).split(";") if r != "-"]
            return sum(int(r[-1]) - int(r[0]) + 1 for r in ranges)
    return 0


async def same_keys(replica: kvrepl.Replica, cluster: SmallCluster) -> bool:
    await replica.wait_synced()
    return set(replica.keys()) == cluster.keys()


async def main(folder: str) -> None:
    print("starting a Redis Cluster: 3 primaries with a replica each ...")
    cluster = SmallCluster(folder)
    try:
        client = RedisCluster(host="127.0.0.1", port=cluster.ports[0])
        for i in range(KEYS):
            client.set(f"user:{i}", f"name-{i}")
        seeds = [("127.0.0.1", port) for port in cluster.ports]
        async with kvrepl.Replica(follow=kvrepl.Cluster(seeds, refresh_interval=1)) as copy:
            with trio.fail_after(60):
                await copy.wait_synced()
            print(f"following {shards(copy)}")
            print(f"local copy: {copy.dbsize()} keys; user:42 -> {copy.get('user:42')!r}")

            source, target = cluster.primaries()[:2]
            print(f"resharding 1800 slots from :{source} to :{target} ...")
            await trio.to_thread.run_sync(lambda: subprocess.run(
                ["redis-cli", "--cluster", "reshard", f"127.0.0.1:{source}",
                 "--cluster-from", cluster.node_id(source), "--cluster-to",
                 cluster.node_id(target), "--cluster-slots", "1800", "--cluster-yes"],
                check=True, capture_output=True, timeout=120))
            cluster.wait_ok()
            client.set("user:42", "renamed after the resharding")
            with trio.fail_after(60):  # until the follower has read the new layout
                while slots_of(copy, source) != 5461 - 1800:
                    await trio.sleep(0.1)
            print(f"after the resharding: {shards(copy)}")
            print(f"local copy holds exactly the cluster's keys: "
                  f"{await same_keys(copy, cluster)}; user:42 -> {copy.get('user:42')!r}")

            old = cluster.primaries()[-1]
            standby = next(p for p in cluster.ports if redis.Redis(port=p).execute_command(
                "ROLE")[0] == b"slave" and int(redis.Redis(port=p).execute_command(
                    "ROLE")[2]) == old)
            print(f"failing :{old} over to its replica :{standby} (CLUSTER FAILOVER) ...")
            redis.Redis(port=standby).execute_command("CLUSTER FAILOVER")
            with trio.fail_after(60):
                while f":{standby} " not in shards(copy) or "down" in shards(copy):
                    await trio.sleep(0.1)
            cluster.wait_ok()
            client.close()
            client = RedisCluster(host="127.0.0.1", port=cluster.ports[0])
            client.set("after-failover", "yes")
            with trio.fail_after(60):
                await copy.wait_synced()
            print(f"after the failover: {shards(copy)}")
            print(f"after-failover -> {copy.get('after-failover')!r}; the local copy holds "
                  f"exactly the cluster's keys: {await same_keys(copy, cluster)}")
        client.close()
    finally:
        cluster.stop()
        print("cluster stopped; done")


if __name__ == "__main__":
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        sys.exit("this example needs redis-server and redis-cli 7.0 on the PATH")
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None  # nodes.conf is fsynced often
    folder = tempfile.mkdtemp(prefix="kvrepl-follow-cluster-", dir=base)
    try:
        trio.run(main, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
