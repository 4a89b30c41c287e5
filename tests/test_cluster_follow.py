"""Following a real Redis Cluster (three redis-server 7.0 primaries made one with
``redis-cli --cluster create``): the follower's keyspace is the union of the primaries'
datasets, key by key (type, DEBUG DIGEST-VALUE: value and expire time, TTL), through
writes, a FLUSHALL in one shard, a link cut to one shard, a resharding of a third of the
slots under write load, and a primary added and another removed.

One cluster serves the module (starting one takes seconds); each test writes keys of its
own prefix, follows with a Replica of its own and compares the whole cluster."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator

import pytest
import trio
from cluster_checks import (
    Writer,
    assert_same,
    cluster_view,
    key_slot,
    server_view,
    slot_owner,
    write_mixed,
)
from faultproxy import Fault, FaultProxy
from support import START_DEADLINE, RedisClusterNodes, free_port, no_retry, poll, raw_replies

import kvrepl
from kvrepl.replication.cluster import ShardLink
from kvrepl.replication.topology import parse_shards, parse_slots

SYNC_DEADLINE = 30  # seconds a follower may take to catch up in a test


@pytest.fixture(scope="module")
def nodes() -> Iterator[RedisClusterNodes]:
    cluster = RedisClusterNodes(primaries=3)
    try:
        yield cluster
    finally:
        cluster.stop()


def follower(nodes: RedisClusterNodes, **options: object) -> kvrepl.Replica:
    return kvrepl.Replica(follow=kvrepl.Cluster(nodes.seeds()[:1], refresh_interval=1),
                          **options)


def _key_named(prefix: str, owner: dict[int, str], node_id: str, in_its_slots: bool) -> str:
    """The first key ``prefix{i}`` whose slot ``node_id`` owns (``in_its_slots``) or not."""
    return next(f"{prefix}{{{i}}}" for i in range(10_000)
                if (owner[key_slot(f"{i}".encode())] == node_id) == in_its_slots)


async def synced(replica: kvrepl.Replica) -> None:
    with trio.fail_after(SYNC_DEADLINE):
        await replica.wait_synced()


def links(replica: kvrepl.Replica) -> dict[str, object]:
    """The follower's links by primary node id."""
    return {link.shard.primary: link for link in replica.cluster_follower.links}


# -- the layout replies ----------------------------------------------------------------------

def test_layout_from_cluster_shards_and_cluster_slots(nodes: RedisClusterNodes) -> None:
    raw = raw_replies(nodes.nodes[0].client())
    shards = parse_shards(raw.execute_command("CLUSTER", "SHARDS"))
    slots = parse_slots(raw.execute_command("CLUSTER", "SLOTS"))
    as_set = {(s.primary, s.host, s.port, s.slots) for s in shards}
    assert as_set == {(s.primary, s.host, s.port, s.slots) for s in slots}
    assert sum(s.slot_count for s in shards) == 16384
    owner = slot_owner(nodes)
    for key in (b"a", b"user:{42}:name", b"{}x", b"{x}", b"foo{bar}{zap}"):
        expected = int(raw.execute_command("CLUSTER", "KEYSLOT", key))
        assert key_slot(key) == expected
        assert any(s.primary == owner[expected] for s in shards)


# -- following ---------------------------------------------------------------------------------

async def test_one_keyspace_for_the_whole_cluster(nodes: RedisClusterNodes) -> None:
    client = nodes.client()
    write_mixed(client, "whole", 600)
    async with follower(nodes) as replica:
        await synced(replica)
        assert_same(replica, nodes)
        assert len(links(replica)) == 3
        # The stream of every shard, after the snapshots: more keys, changes, deletes,
        # multi-key commands inside one hash slot.
        write_mixed(client, "whole-more", 300)
        client.delete(*(f"whole:{i}" for i in range(0, 600, 7)))
        client.incrby("whole:counter", 5)
        client.mset({"{t}a": 1, "{t}b": 2})
        client.rename("{t}a", "{t}c")
        client.hset("whole:1", "a", "changed")
        await synced(replica)
        assert_same(replica, nodes)
        # Reads are local; writes are refused as on any replica.
        assert replica.get("{t}c") == b"1"
        assert replica.hget("whole:1", "a") == b"changed"
        with pytest.raises(kvrepl.ReplyError, match="READONLY"):
            replica.set("x", "y")
        replica.execute_command("CONFIG", "SET", "replica-read-only", "yes")  # still a replica
        with pytest.raises(kvrepl.ReplyError, match="READONLY"):
            replica.set("x", "y")
        with pytest.raises(kvrepl.ReplyError, match="follows a Redis Cluster"):
            replica.execute_command("REPLICAOF", "NO", "ONE")
        info = replica.info("shards")
        assert info["cluster_follow_shards"] == 3
        assert info["cluster_follow_links_up"] == 3
        shards = [info[f"shard{i}"] for i in range(3)]
        assert {s["primary"] for s in shards} == set(links(replica))
        for shard in shards:
            assert shard["link"] == "up" and shard["full_syncs"] == 1
            assert shard["superseded"] == 0
        # INFO replication: a replica, of the first shard's primary as far as one master
        # is named, its link up since every shard's is.
        replication = replica.info("replication")
        first = replica.cluster_follower.links[0]
        assert replication["role"] == "slave" and replication["master_link_status"] == "up"
        assert (replication["master_host"], replication["master_port"]) == (first.host,
                                                                            first.port)
        assert info["shard0"]["port"] == first.port
    client.close()


async def test_changes_name_the_shard_and_slot(nodes: RedisClusterNodes) -> None:
    client = nodes.client()
    async with follower(nodes) as replica:
        await synced(replica)
        owner = slot_owner(nodes)
        names = [f"changes:{i}" for i in range(30)]
        async with replica.changes() as changes:
            for name in names:
                client.set(name, "v")
            seen = {}
            with trio.fail_after(SYNC_DEADLINE):
                async for change in changes:
                    if change.command.lower() == b"set":
                        seen[change.args[0].decode()] = change
                    if len(seen) == len(names):
                        break
        for name in names:
            change = seen[name]
            assert isinstance(change, kvrepl.ShardChange)
            assert change.slot == key_slot(name.encode())
            assert change.primary == owner[change.slot]
    client.close()


LIBRARY = ("#!lua name=shardlib\nredis.register_function{function_name='answer', "
           "callback=function() return %d end, flags={'no-writes'}}")


async def test_a_library_loaded_on_every_primary_is_held_once(nodes: RedisClusterNodes
                                                              ) -> None:
    """Functions live on each primary: the same FUNCTION LOAD from every shard is one
    library here, not two failed loads; other code on a shard replaces it (last wins)."""
    async with follower(nodes) as replica:
        await synced(replica)
        primaries = nodes.primaries()
        for primary in primaries:
            primary.client().function_load(LIBRARY % 42)
        await synced(replica)
        assert replica.skipped_writes == []
        assert replica.execute_command("FCALL_RO", "answer", 0) == 42
        primaries[0].client().function_load(LIBRARY % 7, replace=True)
        await synced(replica)
        assert replica.execute_command("FCALL_RO", "answer", 0) == 7
        primaries[1].client().function_load(LIBRARY % 42, replace=True)
        await synced(replica)
        assert replica.execute_command("FCALL_RO", "answer", 0) == 42
        assert replica.skipped_writes == []
    for primary in primaries:
        primary.client().function_flush()


async def test_flushall_in_one_shard_drops_only_its_keys(nodes: RedisClusterNodes) -> None:
    client = nodes.client()
    write_mixed(client, "flush", 120)
    async with follower(nodes) as replica:
        await synced(replica)
        before = replica.dbsize()
        victim = nodes.primaries()[0]
        dropped = victim.client().dbsize()
        assert 0 < dropped < before
        victim.client().flushall()
        await synced(replica)
        assert replica.dbsize() == before - dropped
        assert_same(replica, nodes)
    client.close()


def tracked(replica: kvrepl.Replica) -> int:
    """INFO's slave_expires_tracked_keys: the keys our own clients gave a TTL."""
    return replica.info("stats")["slave_expires_tracked_keys"]


async def test_a_shards_full_sync_forgets_the_ttls_our_clients_set_on_its_keys(
        nodes: RedisClusterNodes) -> None:
    """A writable follower remembers the keys its own clients give a TTL (no DEL will come
    for them). Redis's full sync forgets them all (emptyData(-1)): a key of that name from
    the master is then the master's to expire. A shard's full sync replaces that shard's
    keys only, so it forgets those and keeps the other shards'; so does a FLUSHALL in the
    shard's stream."""
    client = nodes.client()
    async with follower(nodes, replica_read_only=False) as replica:
        await synced(replica)
        # No active expiry: the remembered keys change only by what the test does
        # (expireSlaveKeys also forgets the keys it finds gone, when it gets to them).
        replica.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "0")
        owner = slot_owner(nodes)
        victim = nodes.primaries()[0]
        victim_id = victim.client().execute_command("CLUSTER", "MYID").decode()

        def named(prefix: str, victims: bool) -> str:
            return _key_named(prefix, owner, victim_id, victims)

        gone, replaced, kept = named("gone", True), named("replaced", True), named("kept", False)
        client.set(replaced, "the shard's")  # in the victim's snapshot too
        await synced(replica)
        for key in (gone, replaced, kept):
            replica.execute_command("SET", key, "ours", "EX", 1000)
        assert tracked(replica) == 3

        # The victim's link drops and reconnects only once the primary's backlog (1 MB)
        # has moved past our offset: a full sync of that shard alone.
        link = links(replica)[victim_id]
        others = [x for x in links(replica).values() if x is not link]
        overrun = trio.Event()
        connect = link.connect

        async def after_the_overrun() -> trio.abc.Stream:
            await overrun.wait()
            return await connect()

        link.connect = after_the_overrun
        link.session.on_kill()
        with trio.fail_after(SYNC_DEADLINE):
            while link.link_up:
                await trio.sleep(0.01)
        tag = named("", True)
        filler = victim.client()
        for i in range(40):
            filler.set(f"fill{tag}:{i}", b"x" * 64 * 1024)
        overrun.set()
        with trio.fail_after(SYNC_DEADLINE):
            while not (link.link_up and link.full_syncs == 2):
                await trio.sleep(0.01)
        await synced(replica)
        assert link.partial_syncs == 0
        assert all(x.full_syncs == 1 for x in others)
        assert tracked(replica) == 1  # the other shard's key only
        assert replica.exists(gone) == 0
        assert replica.get(replaced) == b"the shard's" and replica.ttl(replaced) == -1
        assert replica.get(kept) == b"ours" and replica.ttl(kept) > 0

        # A FLUSHALL in the victim's stream: the same.
        replica.execute_command("SET", gone, "ours again", "EX", 1000)
        assert tracked(replica) == 2
        victim.client().flushall()
        await synced(replica)
        assert replica.exists(gone, replaced) == 0
        assert tracked(replica) == 1
        assert replica.get(kept) == b"ours"
    client.delete(kept)
    client.close()


async def test_a_shards_first_sync_replaces_what_our_clients_wrote_in_its_slots(
        nodes: RedisClusterNodes, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writable follower's own keys in a shard's slots, written before that shard's first
    sync, are replaced by its snapshot, as Redis's full sync replaces a replica's whole
    dataset (the shard's slots are this follower's dataset for that shard): keys the
    snapshot lacks are gone, keys it has are its copy. Other shards' slots keep ours."""
    client = nodes.client()
    owner = slot_owner(nodes)
    victim = nodes.primaries()[0]
    victim_id = victim.client().execute_command("CLUSTER", "MYID").decode()

    def named(prefix: str, victims: bool) -> str:
        return _key_named(prefix, owner, victim_id, victims)

    gone, replaced, kept = named("early-gone", True), named("early-replaced", True), \
        named("early-kept", False)
    client.delete(gone, kept)
    client.set(replaced, "the shard's")
    # The victim's link connects only once our clients have written: its first sync
    # comes after them.
    reached, release = trio.Event(), trio.Event()
    connect = ShardLink._connect

    async def held_back(link: ShardLink) -> trio.abc.Stream:
        if link.port == victim.port:
            reached.set()
            await release.wait()
        return await connect(link)

    monkeypatch.setattr(ShardLink, "_connect", held_back)
    async with follower(nodes, replica_read_only=False) as replica:
        with trio.fail_after(SYNC_DEADLINE):
            await reached.wait()  # every link exists by then
            for other in replica.cluster_follower.links:
                if other.port != victim.port:
                    await other.synced.wait()  # loaded: what we write there stays
        replica.execute_command("SET", gone, "ours", "EX", 1000)
        replica.execute_command("SET", replaced, "ours", "EX", 1000)
        replica.execute_command("SET", kept, "ours")
        assert tracked(replica) == 2
        release.set()
        await synced(replica)
        link = links(replica)[victim_id]
        assert link.full_syncs == 1
        assert replica.exists(gone) == 0
        assert replica.get(replaced) == b"the shard's" and replica.ttl(replaced) == -1
        assert tracked(replica) == 0
        assert replica.get(kept) == b"ours"
        replica.delete(kept)
        assert_same(replica, nodes)
    client.delete(replaced)
    client.close()


async def test_a_cut_link_resumes_while_the_other_shards_flow(nodes: RedisClusterNodes
                                                              ) -> None:
    client = nodes.client()
    async with follower(nodes) as replica:
        await synced(replica)
        target = nodes.primaries()[1]
        node_id = target.client().execute_command("CLUSTER", "MYID").decode()
        link = links(replica)[node_id]
        others = [x for x in links(replica).values() if x is not link]
        # The link to one shard goes through a proxy that cuts it at the marker key.
        proxy = FaultProxy(target.port, Fault("stream", "cut", match=b"cut-marker")).start()
        try:
            async def through_proxy() -> trio.abc.Stream:
                return await trio.open_tcp_stream("127.0.0.1", proxy.port)

            link.connect = through_proxy
            link.session.on_kill()  # reconnect now, through the proxy: a partial resync
            with trio.fail_after(SYNC_DEADLINE):
                while not (link.link_up and link.partial_syncs == 1):
                    await trio.sleep(0.01)
            marker = next(f"cut-marker{{{i}}}" for i in range(10_000)
                          if slot_owner(nodes)[key_slot(f"{i}".encode())] == node_id)
            client.set(marker, "1")
            write_mixed(client, "cut", 200)  # every shard, the cut one included
            await synced(replica)
            assert proxy.applied == 1  # it was cut, and continued after it
            assert link.partial_syncs == 2 and link.full_syncs == 1
            assert all(x.partial_syncs == 0 and x.full_syncs == 1 for x in others)
            assert replica.get(marker) == b"1"
            assert_same(replica, nodes)
        finally:
            await trio.to_thread.run_sync(proxy.stop)
    client.close()


async def test_resharding_a_third_of_the_slots_under_write_load(nodes: RedisClusterNodes
                                                                ) -> None:
    client = nodes.client()
    write_mixed(client, "reshard", 900)
    async with follower(nodes) as replica:
        await synced(replica)
        source, target = nodes.primaries()[:2]
        ids = [n.client().execute_command("CLUSTER", "MYID").decode() for n in (source, target)]
        writer = Writer(nodes, "reshard-load")
        writer.start()
        try:
            await trio.to_thread.run_sync(lambda: nodes.cli(
                "--cluster", "reshard", nodes.address(source), "--cluster-from", ids[0],
                "--cluster-to", ids[1], "--cluster-slots", "5461", "--cluster-yes",
                "--cluster-pipeline", "100"))
        finally:
            writer.stop()
        nodes.wait_ok()
        assert writer.written > 0
        await synced(replica)
        # The follower's layout is the cluster's once it reads it again: the source gave
        # all its slots away (it became a replica of the target) and is no longer followed.
        await until_layout_matches(replica, nodes)
        # Its link retires when that node, now a replica, closes it (as Redis disconnects
        # the sub-replicas of a primary that turns replica): an event of its own.
        with trio.fail_after(SYNC_DEADLINE):
            while ids[0] in links(replica):
                await trio.sleep(0.05)
        await synced(replica)
        assert_same(replica, nodes)
    client.close()


async def until_layout_matches(replica: kvrepl.Replica, nodes: RedisClusterNodes) -> None:
    def follower_layout() -> dict[str, int]:
        return {link.shard.primary: link.shard.slot_count
                for link in replica.cluster_follower.links if link.shard.slot_count}

    def cluster_layout() -> dict[str, int]:
        return dict(Counter(slot_owner(nodes).values()))

    with trio.fail_after(SYNC_DEADLINE):
        while follower_layout() != cluster_layout():
            await trio.sleep(0.05)


async def test_a_primary_added_then_another_removed(nodes: RedisClusterNodes) -> None:
    client = nodes.client()
    write_mixed(client, "members", 300)
    async with follower(nodes) as replica:
        await synced(replica)
        followed = len(links(replica))
        # A new, empty primary joins and gets slots (with their keys) from another.
        new = nodes.add_node()
        seed = nodes.address(nodes.primaries()[0])
        nodes.cli("--cluster", "add-node", nodes.address(new), seed)
        new_id = new.client().execute_command("CLUSTER", "MYID").decode()
        nodes.wait_ok()
        first = nodes.primaries()[0]
        first_id = first.client().execute_command("CLUSTER", "MYID").decode()
        nodes.cli("--cluster", "reshard", seed, "--cluster-from", first_id,
                  "--cluster-to", new_id, "--cluster-slots", "1000", "--cluster-yes")
        nodes.wait_ok()
        with trio.fail_after(SYNC_DEADLINE):
            while new_id not in links(replica) or not links(replica)[new_id].link_up:
                await trio.sleep(0.05)
        await synced(replica)
        assert_same(replica, nodes)
        # It leaves again: its slots go back, then it is removed from the cluster.
        nodes.cli("--cluster", "reshard", seed, "--cluster-from", new_id,
                  "--cluster-to", first_id, "--cluster-slots", "1000", "--cluster-yes")
        nodes.wait_ok()
        nodes.cli("--cluster", "del-node", seed, new_id)
        nodes.nodes.remove(new)
        new.stop()
        nodes.wait_ok()
        with trio.fail_after(SYNC_DEADLINE):
            while new_id in links(replica):
                await trio.sleep(0.05)
        await synced(replica)
        assert len(links(replica)) == followed
        assert_same(replica, nodes)
    client.close()


# -- kvrepl-server --follow-cluster ----------------------------------------------------------

def test_kvrepl_server_serves_the_whole_cluster_as_one_node(nodes: RedisClusterNodes,
                                                            tmp_path: object) -> None:
    import redis

    client = nodes.client()
    write_mixed(client, "server", 300)
    port = free_port()
    seeds = [nodes.address(n) for n in nodes.primaries()[:2]]
    process = subprocess.Popen(
        [sys.executable, "-m", "kvrepl", "--port", str(port), "--save", "",
         "--enable-debug-command", "yes", "--follow-cluster", *seeds, "--loglevel", "warning"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=dict(os.environ, PYTHONPATH=os.getcwd()))
    try:
        server = redis.Redis(port=port, socket_timeout=5, retry=no_retry())  # polled below

        def serving() -> bool:
            try:
                return server.ping()
            except redis.ConnectionError:
                assert process.poll() is None, process.stdout.read()
                return False

        poll(serving, "kvrepl-server answers", START_DEADLINE)
        client.set("server:last", "written after it started")
        theirs = cluster_view(nodes)
        poll(lambda: server_view(server) == theirs, "the server holds the cluster's data", 30)
        assert server.get("server:last") == b"written after it started"
        with pytest.raises(redis.ReadOnlyError):
            server.set("server:x", "y")
        text = server.execute_command("INFO", "shards").decode()
        info = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        assert info["cluster_follow_links_up"] == info["cluster_follow_shards"] == str(
            len(nodes.primaries()))
        text = server.execute_command("INFO", "replication").decode()
        replication = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        assert replication["role"] == "slave" and replication["master_link_status"] == "up"
        role = subprocess.run(["redis-cli", "-p", str(port), "ROLE"], capture_output=True,
                              text=True, check=True)
        assert role.stdout.split()[:4] == ["slave", replication["master_host"],
                                           replication["master_port"], "connected"]
        cli = subprocess.run(["redis-cli", "-p", str(port), "GET", "server:0"],
                             capture_output=True, text=True, check=True)
        assert cli.stdout.strip() == "v0"
    finally:
        process.terminate()
        process.wait(20)
    client.close()
