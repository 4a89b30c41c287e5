"""Fuzzing at scale (tests/fuzz.py): each target in a child process, with a memory limit.

The suite runs a slice (1,000 cases a target, a fixed seed: the same cases every run);
``make fuzz`` runs 100,000 a target with a fresh seed (``KVREPL_FUZZ_CASES``,
``KVREPL_FUZZ_SEED``). Besides the corpus in tests/rdb-corpus, the RDB and RESTORE targets
get seeds written by the redis-server this module starts: a dump with every type in each of
its encodings, and the DUMP payload of each key.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import RedisServer

HERE = Path(__file__).resolve().parent
CASES = int(os.environ.get("KVREPL_FUZZ_CASES", "1000"))
SEED = int(os.environ.get("KVREPL_FUZZ_SEED", "0"))


def populate(client) -> None:  # noqa: ANN001 (a redis-py client)
    """Every type in each encoding Redis 7.0 writes, with TTLs, in two databases."""
    client.set("str", "value")
    client.set("int", "-12345")
    client.set("bigint", "12345678901")
    client.set("compressible", "ab" * 500)
    client.set("ttl", "x", px=10**9)
    client.rpush("list", "a", "1", "-2", "x" * 80)
    client.rpush("biglist", *[f"e{i}" * (i % 7) for i in range(600)])
    client.sadd("intset", 1, 2, -3, 70000, 2**40)
    client.sadd("set", *[f"m{i}" for i in range(200)])
    client.zadd("zset", {"a": 1.5, "b": -2, "c": float("inf")})
    client.zadd("bigzset", {f"m{i}": i / 7 for i in range(200)})
    client.hset("hash", mapping={"f": "v", "n": "12"})
    client.hset("bighash", mapping={f"f{i}": "v" * (i % 90) for i in range(200)})
    for i in range(120):
        client.xadd("stream", {"f": i, "g": "v" * (i % 5)}, id=f"{i + 1}-{i % 3}")
    client.xgroup_create("stream", "group", id="0")
    client.xreadgroup("group", "alice", {"stream": ">"}, count=3)
    client.xdel("stream", "5-1")
    client.expire("bighash", 10**6)
    client.execute_command("SELECT", 2)
    client.set("other", "db")
    client.execute_command("SELECT", 0)


@pytest.fixture(scope="module")
def seeds_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Dumps and DUMP payloads written by redis-server during this run."""
    out = tmp_path_factory.mktemp("fuzz-seeds")
    server = RedisServer("--list-max-listpack-size", "16")
    try:
        client = server.client()
        populate(client)
        payloads = [client.dump(key).hex() for key in client.keys()]
        (out / "payloads.hex").write_text("\n".join(payloads))
        for name, compression in (("compressed", "yes"), ("plain", "no")):
            client.config_set("rdbcompression", compression)
            client.save()
            (out / f"redis-{name}.rdb").write_bytes((Path(server.dir) / "dump.rdb").read_bytes())
        client.close()
    finally:
        server.stop()
    yield out


@pytest.mark.redis_server
@pytest.mark.parametrize("target", ["splitters", "rdb", "restore", "replstream", "tcp"])
def test_fuzz_target(target: str, seeds_dir: Path) -> None:
    """No case breaks the target's property (see tests/fuzz.py); a failure names the case
    to replay: ``python tests/fuzz.py TARGET --seed S --case N``."""
    result = subprocess.run(
        [sys.executable, str(HERE / "fuzz.py"), target, "--cases", str(CASES), "--seed",
         str(SEED), "--extra-seeds", str(seeds_dir)],
        capture_output=True, text=True, timeout=max(120, CASES / 50))
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 0 and lines, result.stdout[-4000:] + result.stderr[-4000:]
    summary = json.loads(lines[-1])
    assert summary["cases"] == CASES
    if CASES > 1000:  # make fuzz: the figures
        print(f"\n{json.dumps(summary)}")
