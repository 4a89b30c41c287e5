"""End to end: real clients against a live kvrepl server."""

import subprocess


def test_redis_py_set_get(r):
    assert r.set("k", "v") is True
    assert r.get("k") == b"v"
    assert r.get("missing") is None


def test_same_as_redis(same):
    same("SET", "a", "1")
    same("GET", "a")
    same("GET")
    same("NOSUCHCOMMAND", "x")


def test_redis_cli(kvrepl_server):
    out = subprocess.run(
        ["redis-cli", "-p", str(kvrepl_server.port), "PING"],
        capture_output=True, text=True, timeout=10, check=True,
    )
    assert out.stdout.strip() == "PONG"
