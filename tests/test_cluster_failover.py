"""A followed Redis Cluster whose primaries fail over (three redis-server 7.0 primaries with
a replica each): the follower goes on with the promoted replica, continuing its shard's
history with a partial resync (the new primary's replid2 is the old primary's replid).

The tests wait on the cluster's own state, not on what they asked of it: on a loaded host a
node may miss ``cluster-node-timeout`` (1 s here), and the cluster then fails over on its
own, the promoted replica's former primary taking its shard back. The follower must follow
whichever node the shard's nodes say is its primary; a test that waited for the node it had
promoted waited for a replica (a fresh-clone run timed out so, the follower having logged
"is no longer a primary" for both nodes of the shard)."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Iterator

import pytest
import trio
from cluster_checks import assert_same, write_mixed
from support import RedisClusterNodes, RedisServer, poll

import kvrepl
import kvrepl.replication.cluster as cluster_module

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


def role(node: RedisServer) -> list[object]:
    return node.client(socket_timeout=5).execute_command("ROLE")  # type: ignore[no-any-return]


def shard_primary(shard: list[RedisServer]) -> RedisServer | None:
    """The node of ``shard`` (its live nodes) that is its primary: the one that says master
    while the others say they replicate it; None while they disagree (mid-failover)."""
    masters = [node for node in shard if role(node)[0] == b"master"]
    return masters[0] if len(masters) == 1 else None


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait (bounded) until ``condition()`` holds: the cluster's state has no event to
    await. Asked from a thread, so that the follower runs on while a node is slow to
    answer."""
    with trio.move_on_after(SYNC_DEADLINE):
        while not await trio.to_thread.run_sync(condition):
            await trio.sleep(0.05)
        return
    raise AssertionError(f"timed out waiting until {what}")


async def followed_on_its_primary(replica: kvrepl.Replica, link: object,
                                  shard: list[RedisServer]) -> None:
    """Until ``link``, still the follower's link for ``shard``, is up on the node the
    shard's nodes say is their primary now."""
    def followed() -> bool:
        primary = shard_primary(shard)
        return (primary is not None and link in replica.cluster_follower.links
                and link.link_up and link.port == primary.port  # type: ignore[attr-defined]
                and link.shard.primary == node_id(primary))  # type: ignore[attr-defined]

    await until(followed, "the follower's link is up on the shard's primary")


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
        await until(lambda: role(standby)[0] == b"master" or role(old)[0] == b"slave",
                    "the manual failover happened")
        # Usually the standby's link from now on; its former primary's again if the
        # cluster failed back on its own (a loaded host).
        await followed_on_its_primary(replica, link, [old, standby])
        nodes.wait_ok()
        write_mixed(client, "manual-after", 200)
        with trio.fail_after(SYNC_DEADLINE):
            await replica.wait_synced()
        if shard_primary([old, standby]) is standby:
            # No second full sync: the new primary continued our history (the old one may
            # have too, if the link came back to it before it turned replica).
            assert link.full_syncs == 1 and link.partial_syncs >= 1
        else:
            # The cluster failed back on its own. If that came before the link reached the
            # standby, the former primary no longer knows our history (its replid2 is
            # the standby's): one full sync, as Redis's own replica would need.
            assert link.full_syncs <= 2
        assert_same(replica, nodes)
    client.close()


async def test_a_failover_then_a_failback_is_followed(nodes: RedisClusterNodes) -> None:
    """What a loaded host may do on its own, made to happen: the promoted replica stops
    answering past cluster-node-timeout (SIGSTOP, until its former primary has taken the
    shard back), then comes back as a replica. The follower goes back to the former
    primary, partially again: its history is the promoted one's, which the former primary
    continued."""
    client = nodes.client()
    write_mixed(client, "failback", 200)
    async with kvrepl.Replica(follow=kvrepl.Cluster(nodes.seeds(), refresh_interval=1)) \
            as replica:
        with trio.fail_after(SYNC_DEADLINE):
            await replica.wait_synced()
        old = nodes.primaries()[0]
        standby = nodes.replicas_of(old)[0]
        caught_up(old, standby)
        link = next(x for x in replica.cluster_follower.links if x.shard.primary == node_id(old))
        standby.client().execute_command("CLUSTER", "FAILOVER")
        await until(lambda: shard_primary([old, standby]) is standby, "the standby took over")
        await followed_on_its_primary(replica, link, [old, standby])
        # The former primary can take over only once it replicates the standby (a
        # replica whose link never came up counts its data as too old to fail over).
        await until(lambda: role(old)[0] == b"slave" and role(old)[3] == b"connected",
                    "the former primary replicates the standby")
        standby.process.send_signal(signal.SIGSTOP)  # a process this test module started
        try:
            await until(lambda: role(old)[0] == b"master", "the former primary took over")
        finally:
            standby.process.send_signal(signal.SIGCONT)
        await followed_on_its_primary(replica, link, [old, standby])
        nodes.wait_ok()
        write_mixed(client, "failback-after", 200)
        with trio.fail_after(SYNC_DEADLINE):
            await replica.wait_synced()
        assert link.full_syncs == 1 and link.partial_syncs >= 2
        assert_same(replica, nodes)
    client.close()


async def test_a_retarget_cancels_the_role_probe_stuck_on_the_old_primary(
        nodes: RedisClusterNodes, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A failover seen while the shard's link is still asking its old primary ROLE (the
    node stopped: connected, never answered): the attempt is cancelled, as Redis's
    replicationSetMaster cancels the handshake in progress, and the link goes on at once
    on the new primary, partially (our history kept), the log naming each node by its
    own port. The ROLE probe's timeout is made longer than the test (the layout reads
    keep theirs): without the cancel, the link would stay in it."""
    caplog.set_level(logging.INFO, logger="kvrepl")
    monkeypatch.setattr(cluster_module, "ROLE_TIMEOUT", 4 * SYNC_DEADLINE)
    client = nodes.client()
    write_mixed(client, "stuck", 200)
    client.close()
    async with kvrepl.Replica(follow=kvrepl.Cluster(nodes.seeds(), refresh_interval=1)) \
            as replica:
        with trio.fail_after(SYNC_DEADLINE):
            await replica.wait_synced()
        # Not the first link's node: the layout is read from that one first (a stopped
        # node first would cost each layout read QUERY_TIMEOUT before the next node).
        first = replica.cluster_follower.links[0].shard.primary
        old = next(p for p in nodes.primaries() if nodes.replicas_of(p) and node_id(p) != first)
        standby = nodes.replicas_of(old)[0]
        caught_up(old, standby)
        link = next(x for x in replica.cluster_follower.links if x.shard.primary == node_id(old))
        partial_syncs = link.partial_syncs
        # The standby takes over when told (below), once the link is stuck, not before.
        standby.client().config_set("cluster-replica-no-failover", "yes")
        old.process.send_signal(signal.SIGSTOP)  # a process this test module started
        try:
            # The link reconnects; its ROLE probe reaches a node that answers nothing.
            replica.execute_command("CLIENT", "KILL", "ID", str(link.session.id))
            await until(lambda: link.state == "connecting" and link.port == old.port,
                        "the link asks the stopped primary ROLE")
            caplog.clear()
            standby.client().execute_command("CLUSTER", "FAILOVER", "TAKEOVER")
            await followed_on_its_primary(replica, link, [standby])
        finally:
            old.process.send_signal(signal.SIGCONT)
            standby.client().config_set("cluster-replica-no-failover", "no")
        assert link.full_syncs == 1 and link.partial_syncs == partial_syncs + 1
        messages = [r.getMessage() for r in caplog.records]
        cancelled = f"the attempt on 127.0.0.1:{old.port} is cancelled; following " \
                    f"127.0.0.1:{standby.port}"
        at = next((i for i, m in enumerate(messages) if cancelled in m), None)
        assert at is not None, messages
        # The next attempt is the standby's from its first step; nothing is told of the
        # standby that was the old node's doing.
        connecting = [m for m in messages[at + 1:] if m.startswith("Connecting to MASTER")]
        assert connecting and all(m.endswith(f":{standby.port}") for m in connecting)
        assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING
                    and str(standby.port) in r.getMessage()]
        nodes.wait_ok()
        client = nodes.client()
        write_mixed(client, "stuck-after", 200)
        with trio.fail_after(SYNC_DEADLINE):
            await replica.wait_synced()
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
        await followed_on_its_primary(replica, link, [standby])
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
