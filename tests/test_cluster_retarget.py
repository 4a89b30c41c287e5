"""A shard link retargeted while its attempt on the old primary is still under way
(``ShardLink.retarget``, issue 12): the attempt is cancelled wherever it is and the link
starts over at once on the new primary, as Redis's replicationSetMaster cancels the
handshake in progress. One link of a follower that is not running, between two real
redis-server 7.0 (no cluster: the layout is handed to the link, the states are the link's
own); the old one is stopped (SIGSTOP, a process this test started) or slowed by its own
test hook (rdb-key-save-delay), never by timing. tests/test_cluster_failover.py has the
ROLE-probe case in a real cluster, with a failover."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager

import pytest
import trio
from support import RedisServer, free_port, poll

import kvrepl.replication.cluster as cluster_module
import kvrepl.replication.replica as replica_module
from kvrepl.node import Node
from kvrepl.replication.cluster import Cluster, ClusterFollower, ShardLink
from kvrepl.replication.topology import SLOTS, Shard

DEADLINE = 30  # seconds: far past what a retarget needs, far short of repl-timeout (60)


@pytest.fixture
def servers() -> Iterator[tuple[RedisServer, RedisServer]]:
    old = RedisServer("--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0")
    try:
        new = RedisServer("--repl-diskless-sync-delay", "0")
        try:
            yield old, new
        finally:
            new.stop()
    finally:
        old.process.send_signal(signal.SIGCONT)  # if a test stopped it
        old.stop()


def shard(port: int, name: str) -> Shard:
    return Shard(primary=name, host="127.0.0.1", port=port, slots=((0, SLOTS - 1),),
                 members=frozenset({name}), addresses=())


@asynccontextmanager
async def following(port: int) -> AsyncIterator[tuple[Node, ShardLink]]:
    """One shard link, running, following the primary on ``port`` (all slots)."""
    node = Node()
    follower = ClusterFollower(node.engine, Cluster([("127.0.0.1", port)]),
                               trio.open_tcp_stream)
    link = ShardLink(follower, shard(port, "old"))
    follower.links = [link]
    follower.ownership.set_owners(follower.links)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(link.run)
        yield node, link
        nursery.cancel_scope.cancel()


async def until(condition: Callable[[], bool], what: str) -> None:
    """Bounded wait for a link state (no event marks it)."""
    with trio.move_on_after(DEADLINE):
        while not condition():
            await trio.sleep(0.01)
        return
    raise AssertionError(f"timed out waiting until {what}")


def keyspace(node: Node) -> dict[bytes, bytes]:
    return {key: node.execute_command("GET", key) for key in node.engine.keyspace.dbs[0].data}


def dataset(server: RedisServer) -> dict[bytes, bytes]:
    client = server.client()
    return {key: client.get(key) for key in client.scan_iter(count=1000)}


async def test_a_role_probe_stuck_on_a_stopped_old_primary_is_cancelled(
        servers: tuple[RedisServer, RedisServer], monkeypatch: pytest.MonkeyPatch) -> None:
    """The first step of an attempt, ROLE, asked of a node that answers nothing: its
    timeout made longer than the test, the link leaves it only by being cancelled."""
    old, new = servers
    monkeypatch.setattr(cluster_module, "ROLE_TIMEOUT", 4 * DEADLINE)
    new.client().mset({f"k{i}": f"v{i}" for i in range(100)})
    old.process.send_signal(signal.SIGSTOP)
    async with following(old.port) as (node, link):
        await until(lambda: link.state == "connecting", "the link asks the stopped node ROLE")
        link.retarget(shard(new.port, "new"))
        with trio.fail_after(DEADLINE):
            await link.synced.wait()
        assert (link.host, link.port) == ("127.0.0.1", new.port)
        assert link.full_syncs == 1
        assert keyspace(node) == dataset(new)


async def test_a_handshake_stuck_on_a_stopped_old_primary_is_cancelled(
        servers: tuple[RedisServer, RedisServer], monkeypatch: pytest.MonkeyPatch) -> None:
    """The old primary stops answering mid-handshake (connected, PING unanswered); its
    replica, promoted, continues our history: +CONTINUE, no second full sync."""
    old, new = servers
    monkeypatch.setattr(cluster_module, "ROLE_TIMEOUT", 1.0)  # the stopped node's ROLE probe
    old.client().mset({f"k{i}": f"v{i}" for i in range(100)})
    async with following(old.port) as (node, link):
        with trio.fail_after(DEADLINE):
            await link.synced.wait()
        new.client().replicaof("127.0.0.1", old.port)
        poll(lambda: new.client().info("replication")["master_link_status"] == "up"
             and new.client().info("replication")["slave_repl_offset"]
             >= old.client().info("replication")["master_repl_offset"],
             "the new primary has every write of the old one")
        old.process.send_signal(signal.SIGSTOP)
        link.session.on_kill()  # what CLIENT KILL of the master client does
        await until(lambda: link.state == "handshake", "the link waits for the stopped node")
        new.client().replicaof("no", "one")  # its replid2 is now the old primary's id
        new.client().set("after", "1")
        link.retarget(shard(new.port, "new"))
        with trio.fail_after(DEADLINE):
            await link.synced.wait()
        assert (link.host, link.port) == ("127.0.0.1", new.port)
        assert link.full_syncs == 1 and link.partial_syncs == 1
        with trio.fail_after(DEADLINE):
            await link.wait_offset(new.client().info("replication")["master_repl_offset"])
        assert keyspace(node) == dataset(new)


async def test_a_payload_from_the_old_primary_is_dropped_when_retargeted(
        servers: tuple[RedisServer, RedisServer]) -> None:
    """Retargeted while the old primary's snapshot arrives: that half-loaded payload is
    dropped, and the keyspace is the new primary's, none of the old one's keys."""
    old, new = servers
    # The snapshot leaves the child in 16 KB writes: values big enough (and not
    # compressible) that its first keys arrive long before its last (20 ms a key).
    old.client().mset({f"old{i}": os.urandom(2048) for i in range(500)})
    old.client().config_set("rdb-key-save-delay", 20_000)
    new.client().mset({f"new{i}": f"v{i}" for i in range(100)})
    async with following(old.port) as (node, link):
        await until(lambda: link.state == "sync" and link.transfer_read > 0,
                    "part of the old primary's snapshot arrived")
        link.retarget(shard(new.port, "new"))
        with trio.fail_after(DEADLINE):
            await link.synced.wait()
        assert (link.host, link.port) == ("127.0.0.1", new.port)
        assert link.full_syncs == 1 and link.partial_syncs == 0
        assert keyspace(node) == dataset(new)


async def test_a_retarget_ends_the_pause_between_two_attempts(
        servers: tuple[RedisServer, RedisServer], monkeypatch: pytest.MonkeyPatch) -> None:
    """The old primary is gone (nothing listens on its port): each attempt fails and the
    link pauses before the next. A retarget ends that pause, made longer than the test,
    and the link syncs with the new primary at once."""
    _, new = servers
    monkeypatch.setattr(replica_module, "RETRY_INTERVAL", 4 * DEADLINE)
    new.client().mset({f"k{i}": f"v{i}" for i in range(100)})
    async with following(free_port()) as (node, link):
        await until(lambda: link._retry_wait is not None,
                    "the link pauses after failing to reach the old primary")
        link.retarget(shard(new.port, "new"))
        with trio.fail_after(DEADLINE):
            await link.synced.wait()
        assert (link.host, link.port) == ("127.0.0.1", new.port)
        assert keyspace(node) == dataset(new)


async def test_a_promoted_replica_missing_from_the_shards_members_takes_its_link() -> None:
    """A layout read from a node whose view of the shard's replicas was behind gave the
    link members without the replica that is promoted later. Once the old primary serves
    no slot and the promoted node serves the link's, the link follows it (a retarget, our
    history kept), not a new link with a full sync beside a retired one."""
    node = Node()
    follower = ClusterFollower(node.engine, Cluster([("127.0.0.1", 1)]), trio.open_tcp_stream)
    link = ShardLink(follower, shard(1, "old"))  # members: {"old"} only
    follower.links = [link]
    follower.ownership.set_owners(follower.links)
    promoted = Shard(primary="new", host="127.0.0.1", port=2, slots=((0, SLOTS - 1),),
                     members=frozenset({"new"}), addresses=())
    demoted = Shard(primary="old", host="127.0.0.1", port=1, slots=(),
                    members=frozenset({"old"}), addresses=())
    async with trio.open_nursery() as nursery:
        follower._nursery = nursery
        follower.apply([demoted, promoted])
        assert follower.links == [link] and not follower.retiring
        assert (link.host, link.port, link.shard.primary) == ("127.0.0.1", 2, "new")
        nursery.cancel_scope.cancel()


def _layout_shard(name: str, port: int, slots: tuple[tuple[int, int], ...],
                  members: set[str]) -> Shard:
    return Shard(primary=name, host="127.0.0.1", port=port, slots=slots,
                 members=frozenset(members), addresses=())


ALL = ((0, SLOTS - 1),)


async def test_a_replica_shown_a_primary_before_its_slots_gets_no_link_of_its_own() -> None:
    """A layout read mid-failover (a CI failure's): the old primary still serves the
    shard's slots and its replica is already listed as a primary serving none. The replica
    gets no link while the view lasts (one would sync in full and, once the slots were shown
    its, keep them while the shard's link and our history were retired); the layout in
    which it serves them retargets the shard's link to it."""
    node = Node()
    follower = ClusterFollower(node.engine, Cluster([("127.0.0.1", 1)]), trio.open_tcp_stream)
    link = ShardLink(follower, _layout_shard("old", 1, ALL, {"old", "new"}))
    follower.links = [link]
    follower.ownership.set_owners(follower.links)
    async with trio.open_nursery() as nursery:
        follower._nursery = nursery
        for _ in range(2):  # the view may last a few layout reads
            follower.apply([_layout_shard("old", 1, ALL, {"old"}),
                            _layout_shard("new", 2, (), {"new"})])
            assert follower.links == [link] and (link.host, link.port) == ("127.0.0.1", 1)
        follower.apply([_layout_shard("new", 2, ALL, {"new"}),
                        _layout_shard("old", 1, (), {"old"})])
        assert follower.links == [link] and not follower.retiring
        assert (link.host, link.port, link.shard.primary) == ("127.0.0.1", 2, "new")
        nursery.cancel_scope.cancel()


async def test_a_primary_followed_while_it_served_nothing_yields_to_the_shard_link() -> None:
    """The same view when the follower did not know the node as the shard's replica: the
    slotless primary gets a link of its own; once it serves the slots of a link whose
    primary serves none, that link (our history) follows it, and the slotless one retires,
    so there is one link on the node, not the newer one holding the shard's slots."""
    node = Node()
    follower = ClusterFollower(node.engine, Cluster([("127.0.0.1", 1)]), trio.open_tcp_stream)
    link = ShardLink(follower, _layout_shard("old", 1, ALL, {"old"}))
    follower.links = [link]
    follower.ownership.set_owners(follower.links)
    async with trio.open_nursery() as nursery:
        follower._nursery = nursery
        follower.apply([_layout_shard("old", 1, ALL, {"old"}),
                        _layout_shard("new", 2, (), {"new"})])
        assert len(follower.links) == 2 and follower.links[0] is link
        slotless = follower.links[1]
        assert (slotless.port, slotless.shard.slots) == (2, ())
        follower.apply([_layout_shard("new", 2, ALL, {"new"}),
                        _layout_shard("old", 1, (), {"old"})])
        assert follower.links == [link]
        assert (link.host, link.port, link.shard.primary) == ("127.0.0.1", 2, "new")
        assert slotless not in follower.links and slotless.retiring
        nursery.cancel_scope.cancel()
