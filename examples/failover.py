"""Failover: promote a replica with REPLICAOF NO ONE and re-point the other replica at it.

The promoted node keeps the old master's history as its second replication id, so the
re-pointed replica continues with a partial resync instead of copying everything again.
"""

import trio

import kvrepl


async def main() -> None:
    async with kvrepl.Master() as master:
        for i in range(1000):
            master.set(f"key:{i}", i)
        async with kvrepl.Replica(follow=master) as first, \
                kvrepl.Replica(follow=master) as second:
            await first.wait_synced()
            await second.wait_synced()
            print("master fails; promoting the first replica")
            first.execute_command("REPLICAOF", "NO", "ONE")
            second.follow_node(first)
            await second.wait_synced()
            first.set(b"written-after-failover", b"yes")
            await second.wait_synced()
            print(f"second replica sees: {second.get(b'written-after-failover')!r}")
            print(f"new master: full syncs={first.replication.sync_full}, "
                  f"partial resyncs={first.replication.sync_partial_ok}")


if __name__ == "__main__":
    trio.run(main)
