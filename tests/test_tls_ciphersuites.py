"""``tls-ciphersuites`` (the TLS 1.3 suites) beside a real redis-server 7.0 given the same
options: which suites openssl s_client, redis-cli and redis-py can negotiate, CONFIG
SET/GET/REWRITE, a bad list at startup, and a kvrepl replica of a TLS redis-server that allows
one suite. Certificates are trustme's (see test_tls.py)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import pytest
import redis
import trio
from support import Certs, RedisServer, free_port
from test_config_rewrite import kvrepl_with_file, redis_with_file  # noqa: F401 (fixtures)
from test_follow_tls import _sync_errors
from test_tls import tls_client, tls_server

import kvrepl
from kvrepl.cli import parse_args
from kvrepl.server.tls import TlsError

ONLY = "TLS_CHACHA20_POLY1305_SHA256"
OTHER = "TLS_AES_256_GCM_SHA384"
REFUSED = ("CONFIG SET failed (possibly related to argument 'tls-ciphersuites') - Unable to "
           "update TLS configuration. Check server logs.")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


def s_client(port: int, certs: Certs, suites: str) -> str | None:
    """The suite ``openssl s_client`` negotiates over TLS 1.3 offering only ``suites``;
    None when the handshake fails."""
    out = subprocess.run(
        [_tool("openssl"), "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_3",
         "-ciphersuites", suites, "-CAfile", str(certs.ca), "-cert", str(certs.cert),
         "-key", str(certs.key), "-brief"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        return None
    lines = [line for line in out.stderr.splitlines() if line.startswith("Ciphersuite: ")]
    assert len(lines) == 1, out.stderr
    return lines[0].removeprefix("Ciphersuite: ")


def cli_ping(port: int, certs: Certs, suites: str) -> str:
    """What ``redis-cli --tls --tls-ciphersuites`` says to PING (its error when it cannot
    connect)."""
    out = subprocess.run(
        [_tool("redis-cli"), "--tls", "--cacert", str(certs.ca), "--cert", str(certs.cert),
         "--key", str(certs.key), "--tls-ciphersuites", suites, "-h", "127.0.0.1", "-p",
         str(port), "PING"], capture_output=True, text=True, timeout=30)
    return out.stdout.strip() if out.returncode == 0 else "failed"


def negotiated(port: int, certs: Certs) -> str:
    """The suite redis-py (OpenSSL's default TLS 1.3 suites) gets."""
    client = tls_client(port, certs)
    try:
        assert client.ping()
        return client.connection_pool.get_connection()._sock.cipher()[0]
    finally:
        client.close()


@pytest.fixture(scope="module")
def pair(certs: Certs) -> Iterator[list[tuple[redis.Redis, int]]]:
    """kvrepl and redis-server, each with a TLS port allowing only ONLY: (plain client,
    TLS port) of each, kvrepl's first."""
    redis_tls = free_port()
    real = RedisServer("--tls-port", str(redis_tls), "--tls-ciphersuites", ONLY,
                       *certs.redis_args())
    ours = tls_server(certs, tls_ciphersuites=ONLY)
    plains = [ours.client(decode_responses=True), real.client(decode_responses=True)]
    yield [(plains[0], ours.config.tls_port), (plains[1], redis_tls)]
    for plain in plains:
        plain.close()
    ours.stop()
    real.stop()


def test_clients_negotiate_only_the_suites_allowed(pair, certs: Certs) -> None:
    seen = []
    for _, port in pair:
        seen.append([s_client(port, certs, ONLY), s_client(port, certs, OTHER),
                     s_client(port, certs, f"{OTHER}:{ONLY}"),
                     cli_ping(port, certs, ONLY), cli_ping(port, certs, OTHER),
                     negotiated(port, certs)])
    assert seen[0] == seen[1] == [ONLY, None, ONLY, "PONG", "failed", ONLY]


def test_config_set_as_redis(pair, certs: Certs) -> None:
    """A list OpenSSL refuses is refused with Redis's reply and the old one kept; a new one
    applies to the connections made from then on; empty is OpenSSL's defaults."""
    seen = []
    for plain, port in pair:
        kept = tls_client(port, certs)
        assert kept.ping()
        steps: list[object] = []
        for value in ("FOO", "TLS_AES_256_GCM_SHA384 TLS_AES_128_GCM_SHA256"):
            with pytest.raises(redis.ResponseError) as refused:
                plain.config_set("tls-ciphersuites", value)
            steps.append(str(refused.value))
        steps += [plain.config_get("tls-ciphersuites"), s_client(port, certs, ONLY)]
        # OpenSSL skips a name it does not know in a list that has one it does.
        assert plain.config_set("tls-ciphersuites", f"NO_SUCH_SUITE:{OTHER}")
        steps += [s_client(port, certs, OTHER), s_client(port, certs, ONLY), kept.ping()]
        assert plain.config_set("tls-ciphersuites", "")
        steps += [plain.config_get("tls-ciphersuites"), s_client(port, certs, ONLY),
                  s_client(port, certs, OTHER)]
        assert plain.config_set("tls-ciphersuites", ONLY)
        kept.close()
        seen.append(steps)
    assert seen[0] == seen[1] == [
        REFUSED, REFUSED, {"tls-ciphersuites": ONLY}, ONLY, OTHER, None, True,
        {"tls-ciphersuites": ""}, ONLY, OTHER]


def test_a_bad_list_stops_the_start(certs: Certs) -> None:
    with pytest.raises(TlsError, match="^Failed to configure ciphersuites: FOO$"):
        tls_server(certs, tls_ciphersuites="FOO")
    with pytest.raises(RuntimeError, match="did not start"):
        RedisServer("--tls-port", str(free_port()), "--tls-ciphersuites", "FOO",
                    *certs.redis_args())


def test_config_rewrite_round_trip(redis_with_file, kvrepl_with_file) -> None:  # noqa: F811
    """Written quoted as Redis writes its TLS strings (and read back); empty, not at all."""
    lines = []
    for client, path in (kvrepl_with_file, redis_with_file):
        assert client.config_set("tls-ciphersuites", f"{ONLY}:{OTHER}",
                                 "tls-protocols", "TLSv1.2 TLSv1.3")
        assert client.execute_command("CONFIG", "REWRITE") == "OK"
        lines.append(sorted(line for line in path.read_text().splitlines()
                            if line.startswith("tls-")))
        assert client.config_set("tls-ciphersuites", "")
        assert client.execute_command("CONFIG", "REWRITE") == "OK"
        lines.append(sorted(line for line in path.read_text().splitlines()
                            if line.startswith("tls-")))
    # (sorted: Redis appends new lines in its dict's order)
    assert lines[0] == lines[2] == [f'tls-ciphersuites "{ONLY}:{OTHER}"',
                                    'tls-protocols "TLSv1.2 TLSv1.3"']
    assert lines[1] == lines[3] == ['tls-protocols "TLSv1.2 TLSv1.3"']
    config = parse_args([str(kvrepl_with_file[1])])
    assert (config.tls_ciphersuites, config.tls_protocols) == ("", "TLSv1.2 TLSv1.3")


async def test_replica_of_a_tls_redis_server_allowing_one_suite(certs: Certs) -> None:
    """Disjoint suites: the replica's handshake fails at each attempt; once CONFIG SET gives
    it the master's suite, its next attempt syncs."""
    tls_port = free_port()
    master = RedisServer("--tls-port", str(tls_port), "--tls-ciphersuites", ONLY,
                         "--repl-diskless-sync-delay", "0", *certs.redis_args())
    writer = master.client()
    try:
        writer.set("k", "v")
        async with kvrepl.Replica(follow=f"rediss://127.0.0.1:{tls_port}",
                                  tls_ciphersuites=OTHER, **certs.options()) as replica:
            with trio.fail_after(20):
                await _sync_errors(1)
            client = replica.redis()
            assert client.info("replication")["master_link_status"] == "down"
            assert client.config_set("tls-ciphersuites", ONLY)
            with trio.fail_after(20):
                await replica.wait_synced()
            assert replica.get("k") == b"v"
            assert writer.info("replication")["connected_slaves"] == 1
    finally:
        writer.close()
        master.stop()


def test_set_ciphersuites_on_a_context() -> None:
    """The list as OpenSSL reads it (names trimmed, unknown ones skipped when a known one is
    there), checked against get_ciphers(); refused when OpenSSL refuses it."""
    import ssl

    from kvrepl.server.tls_suites import InvalidCiphersuites, set_ciphersuites

    def tls13(context: ssl.SSLContext) -> list[str]:
        return [c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.3"]

    for kind in (ssl.PROTOCOL_TLS_SERVER, ssl.PROTOCOL_TLS_CLIENT):
        context = ssl.SSLContext(kind)
        set_ciphersuites(context, f" {OTHER} :NO_SUCH_SUITE:{ONLY}")
        assert tls13(context) == [OTHER, ONLY]
        for bad in ("FOO", ":", "é", f"{ONLY} {OTHER}", ONLY.lower()):
            with pytest.raises(InvalidCiphersuites):
                set_ciphersuites(context, bad)
            assert tls13(context) == [OTHER, ONLY]  # unchanged
