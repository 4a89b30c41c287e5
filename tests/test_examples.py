"""Every script in examples/ runs to completion by itself, with no arguments, the way a new
user first meets the project: exit status 0, its key line printed, nothing left behind in the
folder it ran from (a dump.rdb there would be loaded by the next server started there).

The scripts run at the same time, each in an empty folder of its own, and use only loopback.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TIMEOUT = 120  # seconds for all of them; they take a few on an idle machine

# example -> lines its output must contain
EXPECTED = {
    "bounded_cache.py": ["hot keys kept: 100/100", "the replica holds the same keys: True"],
    "demo.py": ["3 replicas acknowledged every write (WAIT)", "all stopped; demo done"],
    "failover.py": ["second replica sees: b'yes'"],
    "follow_cluster.py": [
        "local copy holds exactly the cluster's keys: True; user:42 -> "
        "b'renamed after the resharding'",
        "after-failover -> b'yes'; the local copy holds exactly the cluster's keys: True",
        "cluster stopped; done"],
    "in_process.py": ["writing to a replica: READONLY You can't write against a read only "
                      "replica."],
    "redis_py_in_process.py": ["visits kept from earlier runs: {'home': '2', 'docs': '1'}",
                               "the replica's most visited page: [('home', 4.0)]"],
    "read_cache_of_redis.py": [
        "replica: db 0: HSET b'user:1' -> local copy now hash "
        "{b'name': b'Ada', b'lang': b'Python'}",
        "the local copy saw every write; done"],
    "two_processes.py": ["dbsize=101 "],
}

pytestmark = pytest.mark.examples


def test_every_example_is_checked() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple]]:
    """name -> (exit status, output, files left in its folder), all run concurrently."""
    started = {}
    for name in EXPECTED:
        folder = tmp_path_factory.mktemp(name.removesuffix(".py"))
        started[name] = folder, subprocess.Popen(
            [sys.executable, str(EXAMPLES / name)], cwd=folder, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
    results = {}
    try:
        for name, (folder, process) in started.items():
            output, _ = process.communicate(timeout=TIMEOUT)
            results[name] = process.returncode, output, sorted(p.name for p in folder.iterdir())
    finally:
        for _, process in started.values():
            process.kill()
            process.wait()
    yield results


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_to_completion(runs: dict[str, tuple], name: str) -> None:
    status, output, left = runs[name]
    assert status == 0, output
    for line in EXPECTED[name]:
        assert line in output, output
    assert left == [], f"{name} left {left} in the folder it ran from"
