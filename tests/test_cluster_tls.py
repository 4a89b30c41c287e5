"""Following a Redis Cluster over TLS: redis-server 7.0 nodes with ``--tls-port``,
``--tls-cluster yes`` and ``--tls-replication yes`` (certificates from trustme, as
tests/test_tls.py makes them); the follower, with ``tls-replication yes``, reads the layout
and follows every primary on their TLS ports."""

from __future__ import annotations

import shutil

import trio
from cluster_checks import assert_same, write_mixed
from support import Certs, RedisClusterNodes

import kvrepl

SYNC_DEADLINE = 30  # seconds a follower may take to catch up in a test


async def test_follow_a_cluster_over_tls() -> None:
    certs = Certs()
    nodes = RedisClusterNodes(primaries=3, tls=(str(certs.ca), str(certs.cert),
                                                str(certs.key)))
    client = nodes.client()  # the nodes' plain ports: the test's own writes and checks
    try:
        write_mixed(client, "tls", 300)
        seed = nodes.tls_ports[nodes.nodes[0].port]
        async with kvrepl.Replica(follow=kvrepl.Cluster([("127.0.0.1", seed)]),
                                  tls_replication=True, **certs.options()) as replica:
            with trio.fail_after(SYNC_DEADLINE):
                await replica.wait_synced()
            assert_same(replica, nodes)
            links = replica.cluster_follower.links
            assert {link.port for link in links} == set(nodes.tls_ports.values())
            assert all(link.link_up and link.full_syncs == 1 for link in links)
            write_mixed(client, "tls-more", 100)  # the streams, over TLS too
            with trio.fail_after(SYNC_DEADLINE):
                await replica.wait_synced()
            assert_same(replica, nodes)
    finally:
        client.close()
        nodes.stop()
        shutil.rmtree(certs.dir, ignore_errors=True)
