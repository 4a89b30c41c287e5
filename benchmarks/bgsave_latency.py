"""PING round trips while a kvrepl server runs BGSAVE of 200,000 string keys.

    python benchmarks/bgsave_latency.py [--keys N]

Moved out of the test suite: it measures (how long the job takes, the worst round trip) and
asserts nothing about time. The client is in the server's own trio loop, so a round trip
costs one or two of the snapshot job's slices.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kvrepl import persistence  # noqa: E402
from kvrepl.config import Config  # noqa: E402
from kvrepl.server import Server  # noqa: E402


async def measure(keys: int, directory: str) -> str:
    server = Server(config=Config(save=(), dir=directory, port=0))
    data = server.engine.keyspace.dbs[0].data
    for i in range(keys):
        data[b"key:%d" % i] = b"value:%d" % i
    async with trio.open_nursery() as nursery:
        port = await nursery.start(server.serve)
        state = persistence.attach(server.engine, nursery)
        stream = await trio.open_tcp_stream("127.0.0.1", port)

        async def call(command: bytes) -> tuple[bytes, float]:
            started = time.perf_counter()
            await stream.send_all(command)
            reply = b""
            while not reply.endswith(b"\r\n"):
                reply += await stream.receive_some(1024)
            return reply, time.perf_counter() - started

        reply, _ = await call(b"BGSAVE\r\n")
        assert reply == b"+Background saving started\r\n", reply
        started = time.perf_counter()
        latencies = []
        while state.bgsave is not None:
            reply, seconds = await call(b"PING\r\n")
            assert reply == b"+PONG\r\n", reply
            latencies.append(seconds)
        took = time.perf_counter() - started
        await stream.aclose()
        nursery.cancel_scope.cancel()
    worst = max(latencies) * 1000 if latencies else 0.0
    return (f"BGSAVE of {keys:,} keys: {took:.2f} s ({keys / took:,.0f} keys/s), "
            f"{len(latencies)} PINGs, worst {worst:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=200_000)
    keys = parser.parse_args().keys
    with tempfile.TemporaryDirectory() as directory:
        print(trio.run(measure, keys, directory))


if __name__ == "__main__":
    main()
