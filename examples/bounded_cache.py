"""An in-process cache bounded by maxmemory, which replicates its evictions.

The master keeps its dataset near 2 MB by evicting the least frequently used keys
(allkeys-lfu); each eviction reaches the replica as a DEL, so both hold the same keys.
"""

import trio

import kvrepl


async def main() -> None:
    async with kvrepl.Master(maxmemory="2mb", maxmemory_policy="allkeys-lfu") as cache, \
            kvrepl.Replica(follow=cache) as replica:
        hot = [f"user:{i}" for i in range(100)]
        for key in hot:
            cache.set(key, "profile " * 20)
        for round_ in range(20_000):
            cache.get(hot[round_ % len(hot)])  # the hot set is read again and again
            cache.set(f"page:{round_}", "x" * 200)  # and a stream of one-off pages
        info = cache.execute_command("INFO", "memory").decode()
        used = next(line for line in info.split("\r\n") if line.startswith("used_memory:"))
        await replica.wait_synced()
        kept = sum(cache.get(key) is not None for key in hot)
        print(f"{used} (maxmemory 2mb), {cache.dbsize()} keys, "
              f"{cache.engine.stats.evicted_keys} evicted")
        print(f"hot keys kept: {kept}/{len(hot)}")
        print(f"the replica holds the same keys: {sorted(replica.keys()) == sorted(cache.keys())}")


if __name__ == "__main__":
    trio.run(main)
