"""A followed Redis Cluster whose primaries fail over (three redis-server 7.0 primaries with
a replica each): the follower goes on with the promoted replica, continuing its shard's
history with a partial resync (the new primary's replid2 is the old primary's replid)."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest
import trio
from cluster_checks import assert_same, write_mixed
from support import RedisClusterNodes, poll

import kvrepl

SYNC_DEADLINE = 30


@pytest.fixture(scope="module")
def nodes() -> Iterator[RedisClusterNodes]:
    cluster = RedisClusterNodes(primaries=3, replicas=1)
    try:
        yield cluster
    finally:
        cluster.stop()


def node_id(node: object) -> str:
    return node.client().execute_command("CLUSTER", "MYID").decode()  # type: ignore[attr-defined]


async def follow_until_promoted(nodes: RedisClusterNodes, replica: kvrepl.Replica,
                                promoted: str) -> object:
    """The follower's link for the shard whose replica ``promoted`` took over, once it is
    up on it."""
    with trio.fail_after(SYNC_DEADLINE):
        while True:
            link = next((x for x in replica.cluster_follower.links
                         if x.shard.primary == promoted), None)
            if link is not None and link.link_up:
                return link
            await trio.sleep(0.05)


def caught_up(primary: object, standby: object) -> None:
    """``standby`` has every write of ``primary``, so it can continue our history. (Not
    WAIT: this follower is a replica too, and cannot acknowledge while a blocking call
    holds its event loop.)"""
    wanted = primary.client().info("replication")["master_repl_offset"]  # type: ignore[attr-defined]
    poll(lambda: standby.client().info("replication")["slave_repl_offset"] >= wanted,  # type: ignore[attr-defined]
         "the replica has every write of its primary")


async def test_cluster_failover_is_followed_with_a_partial_resync(nodes: RedisClusterNodes
                                                                  ) -> None:
    client = nodes.client()
    write_mixed(client, "manual", 300)
    async with kvrepl.Replica(follow=kvrepl.Cluster(nodes.seeds(), refresh_interval=1)) \
            as replica:
        with trio.fail_after(SYNC_DEADLINE):
            await replica.wait_synced()
        old = nodes.primaries()[0]
        standby = nodes.replicas_of(old)[0]
        caught_up(old, standby)
        link = next(x for x in replica.cluster_follower.links if x.shard.primary == node_id(old))
        standby.client().execute_command("CLUSTER", "FAILOVER")
        new_id = node_id(standby)
        assert await follow_until_promoted(nodes, replica, new_id) is link
        nodes.wait_ok()
        write_mixed(client, "manual-after", 200)
        with trio.fail_after(SYNC_DEADLINE):
            await replica.wait_synced()
        assert (link.host, link.port) == ("127.0.0.1", standby.port)
        # No second full sync: the new primary continued our history (the old one may
        # have too, if the link came back to it before it turned replica).
        assert link.full_syncs == 1 and link.partial_syncs >= 1
        assert_same(replica, nodes)
    client.close()


async def test_a_killed_primary_is_followed_on_its_promoted_replica(nodes: RedisClusterNodes
                                                                    ) -> None:
    client = nodes.client()
    write_mixed(client, "killed", 300)
    async with kvrepl.Replica(follow=kvrepl.Cluster(nodes.seeds(), refresh_interval=1)) \
            as replica:
        with trio.fail_after(SYNC_DEADLINE):
            await replica.wait_synced()
        victim = nodes.primaries()[-1]
        standby = nodes.replicas_of(victim)[0]
        caught_up(victim, standby)
        link = next(x for x in replica.cluster_follower.links
                    if x.shard.primary == node_id(victim))
        victim.process.send_signal(signal.SIGKILL)  # a process this test module started
        victim.process.wait(10)
        new_id = node_id(standby)
        assert await follow_until_promoted(nodes, replica, new_id) is link
        nodes.wait_ok()
        client.close()
        client = nodes.client()
        write_mixed(client, "killed-after", 200)
        with trio.fail_after(SYNC_DEADLINE):
            await replica.wait_synced()
        assert link.full_syncs == 1 and link.partial_syncs == 1
        assert_same(replica, nodes)
    client.close()


async def test_a_cluster_with_a_password() -> None:
    secured = RedisClusterNodes(primaries=3, password="cluster-secret")
    try:
        client = secured.client()
        write_mixed(client, "secured", 200)
        seeds = secured.seeds()[:1]
        async with kvrepl.Replica(follow=kvrepl.Cluster(seeds, password="cluster-secret")) \
                as replica:
            with trio.fail_after(SYNC_DEADLINE):
                await replica.wait_synced()
            client.set("secured:last", "1")
            with trio.fail_after(SYNC_DEADLINE):
                await replica.wait_synced()
            assert replica.get("secured:last") == b"1"
            assert_same(replica, secured)
        # Without the password nothing is read, and the follower says why.
        async with kvrepl.Replica(follow=kvrepl.Cluster(seeds)) as refused:
            with trio.fail_after(SYNC_DEADLINE):
                while "NOAUTH" not in refused.cluster_follower.last_error:
                    await trio.sleep(0.05)
            assert refused.dbsize() == 0
        client.close()
    finally:
        secured.stop()
