"""A master and two replicas in one program: no sockets, the same bytes as over TCP."""

import trio

import kvrepl


async def main() -> None:
    async with kvrepl.Master() as master, \
            kvrepl.Replica(follow=master) as replica_a, \
            kvrepl.Replica(follow=master) as replica_b:
        master.set(b"greeting", b"hello")
        master.hset(b"user:1", mapping={b"name": b"Ada"})
        master.set(b"session", b"token", ex=60)
        await replica_a.wait_synced()
        await replica_b.wait_synced()
        for name, replica in (("a", replica_a), ("b", replica_b)):
            print(f"replica {name}: greeting={replica.get(b'greeting')!r} "
                  f"user={replica.hgetall(b'user:1')} session ttl={replica.ttl(b'session')}")
        try:
            replica_a.set(b"x", b"1")
        except kvrepl.ReplyError as err:
            print(f"writing to a replica: {err}")


if __name__ == "__main__":
    trio.run(main)
