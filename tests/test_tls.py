"""TLS: kvrepl's ``tls-port`` with redis-py and redis-cli, replication over TLS both ways
with a real redis-server 7.0, and the handshakes that must fail.

Certificates are made at run time by trustme (a throwaway CA); nothing private is committed.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from support import Certs, RedisServer, ThreadedServer, free_port, poll

from kvrepl.config import Config, ConfigError
from kvrepl.server.tls import TlsError


def tls_server(certs: Certs, **options: object) -> ThreadedServer:
    config = Config(save=(), repl_diskless_sync_delay=0, tls_port=free_port(),
                    **{**certs.options(), **options})
    return ThreadedServer(config).start()


def tls_client(port: int, certs: Certs, **kwargs: object) -> redis.Redis:
    options: dict[str, object] = {
        "ssl": True, "ssl_ca_certs": str(certs.ca), "ssl_certfile": str(certs.cert),
        "ssl_keyfile": str(certs.key), "retry": Retry(NoBackoff(), 0), "socket_timeout": 10,
    }
    options.update(kwargs)
    return redis.Redis(host="127.0.0.1", port=port, **options)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def server(certs: Certs) -> Iterator[ThreadedServer]:
    node = tls_server(certs)
    yield node
    node.stop()


def test_redis_py_over_tls(server: ThreadedServer, certs: Certs) -> None:
    client = tls_client(server.config.tls_port, certs)
    assert client.set("k", "v")
    assert client.get("k") == b"v"
    info = client.client_info()
    assert info["addr"].startswith("127.0.0.1:")  # known by its peer address, not in-process
    pipe = client.pipeline(transaction=False)
    for i in range(200):
        pipe.set(f"key{i}", i)
        pipe.get(f"key{i}")
    assert pipe.execute()[-1] == b"199"
    resp3 = tls_client(server.config.tls_port, certs, protocol=3)
    assert resp3.get("k") == b"v"
    # The plain port serves on.
    assert server.client().get("k") == b"v"
    for c in (client, resp3):
        c.close()


def test_handshakes_that_must_fail(server: ThreadedServer, certs: Certs) -> None:
    port = server.config.tls_port
    # No client certificate while tls-auth-clients is yes.
    with pytest.raises(redis.ConnectionError):
        tls_client(port, certs, ssl_certfile=None, ssl_keyfile=None).ping()
    # A client certificate from a CA the server does not trust.
    with pytest.raises(redis.ConnectionError):
        tls_client(port, certs, ssl_certfile=str(certs.other_cert),
                   ssl_keyfile=str(certs.other_key)).ping()
    # A server the client does not trust.
    with pytest.raises(redis.ConnectionError):
        tls_client(port, certs, ssl_ca_certs=str(certs.other_ca)).ping()
    # Plain text to the TLS port.
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=port, retry=Retry(NoBackoff(), 0), socket_timeout=10).ping()
    # Only TLS 1.3 asked of a server that speaks up to 1.2.
    narrow = tls_server(certs, tls_protocols="TLSv1.2")
    try:
        with pytest.raises(redis.ConnectionError):
            tls_client(narrow.config.tls_port, certs,
                       ssl_min_version=ssl.TLSVersion.TLSv1_3).ping()
        assert tls_client(narrow.config.tls_port, certs).ping()
    finally:
        narrow.stop()
    # The server serves on after each failure.
    assert tls_client(port, certs).ping()


def test_auth_clients_optional_and_no(certs: Certs) -> None:
    for mode in ("optional", "no"):
        node = tls_server(certs, tls_auth_clients=mode)
        try:
            anonymous = tls_client(node.config.tls_port, certs, ssl_certfile=None,
                                   ssl_keyfile=None)
            assert anonymous.ping()
            anonymous.close()
            if mode == "optional":  # a certificate shown must still be trusted
                with pytest.raises(redis.ConnectionError):
                    tls_client(node.config.tls_port, certs, ssl_certfile=str(certs.other_cert),
                               ssl_keyfile=str(certs.other_key)).ping()
            assert node.client().config_get("tls-auth-clients") == {"tls-auth-clients": mode}
        finally:
            node.stop()


def test_redis_cli_over_tls(server: ThreadedServer, certs: Certs) -> None:
    cli = shutil.which("redis-cli")
    if cli is None:
        pytest.skip("redis-cli is not installed")
    base = [cli, "--tls", "--cacert", str(certs.ca), "--cert", str(certs.cert), "--key",
            str(certs.key), "-h", "127.0.0.1", "-p", str(server.config.tls_port)]
    out = subprocess.run([*base, "SET", "cli", "over-tls"], capture_output=True, text=True,
                         timeout=30)
    assert out.stdout.strip() == "OK", out.stderr
    out = subprocess.run([*base, "GET", "cli"], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "over-tls"


def test_redis_server_replica_over_tls_of_kvrepl(server: ThreadedServer, certs: Certs) -> None:
    master = tls_client(server.config.tls_port, certs)
    master.set("before", "1")
    replica = RedisServer("--tls-replication", "yes", *certs.redis_args(),
                          "--replicaof", "127.0.0.1", str(server.config.tls_port))
    try:
        reader = replica.client()
        poll(lambda: reader.get("before") == b"1", "the full sync over TLS")
        master.set("after", "2")
        poll(lambda: reader.get("after") == b"2", "the stream over TLS")
        assert reader.info("replication")["master_link_status"] == "up"
        reader.close()
    finally:
        replica.stop()
        master.close()


def test_kvrepl_replica_over_tls_of_redis_server(certs: Certs) -> None:
    tls_port = free_port()
    master = RedisServer("--tls-port", str(tls_port), "--repl-diskless-sync-delay", "0",
                         *certs.redis_args())
    writer = master.client()
    writer.set("before", "1")
    config = Config(save=(), tls_replication=True, replicaof=f"127.0.0.1 {tls_port}",
                    **certs.options())
    replica = ThreadedServer(config).start()
    try:
        reader = replica.client()
        poll(lambda: reader.get("before") == b"1", "the full sync over TLS")
        writer.set("after", "2")
        poll(lambda: reader.get("after") == b"2", "the stream over TLS")
        reader.close()
    finally:
        replica.stop()
        master.stop()
        writer.close()


def test_options_are_honoured_or_refused(certs: Certs) -> None:
    with pytest.raises(TlsError, match="tls-cert-file"):
        tls_server(certs, tls_cert_file="")
    with pytest.raises(TlsError, match="Failed to load certificate"):
        tls_server(certs, tls_cert_file=str(certs.dir / "missing.crt"))
    with pytest.raises(TlsError, match="gap"):
        tls_server(certs, tls_protocols="TLSv1.1 TLSv1.3")
    with pytest.raises(TlsError, match="ciphers"):
        tls_server(certs, tls_ciphers="NO-SUCH-CIPHER")
    with pytest.raises(ConfigError, match="tls-protocols"):
        Config(tls_protocols="SSLv3")
    node = tls_server(certs, tls_ciphers="ECDHE-RSA-AES128-GCM-SHA256:"
                      "ECDHE-ECDSA-AES128-GCM-SHA256", tls_prefer_server_ciphers=True,
                      tls_protocols="TLSv1.2")
    try:
        client = tls_client(node.config.tls_port, certs)
        assert client.ping()
        assert client.connection_pool.get_connection()._sock.version() == "TLSv1.2"
        client.close()
        # CONFIG SET tls-port moves the TLS listener (Redis's applyTLSPort), 0 closes it.
        first, moved = node.config.tls_port, free_port()
        assert node.client().config_set("tls-port", str(moved))
        assert tls_client(moved, certs).ping()
        with pytest.raises(redis.ConnectionError):
            tls_client(first, certs).ping()
        assert node.client().config_set("tls-port", "0")
        with pytest.raises(redis.ConnectionError):
            tls_client(moved, certs).ping()
        assert node.client().ping()  # the plain port was not moved
    finally:
        node.stop()


def test_ca_cert_dir_and_key_file_pass(certs: Certs) -> None:
    """A CA directory (hashed names, as OpenSSL's rehash leaves them) and an encrypted key."""
    from cryptography.hazmat.primitives import serialization

    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed (it names the CA directory's files)")
    ca_dir = certs.dir / "ca-dir"
    ca_dir.mkdir(exist_ok=True)
    shutil.copy(certs.ca, ca_dir / "ca.pem")
    subprocess.run([openssl, "rehash", str(ca_dir)], check=True, timeout=30)
    key = serialization.load_pem_private_key(certs.key.read_bytes(), password=None)
    locked = certs.dir / "locked.key"
    locked.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"s3cret")))
    with pytest.raises(TlsError, match="Failed to load certificate"):
        tls_server(certs, tls_key_file=str(locked), tls_key_file_pass="wrong")
    node = tls_server(certs, tls_ca_cert_file="", tls_ca_cert_dir=str(ca_dir),
                      tls_key_file=str(locked), tls_key_file_pass="s3cret")
    try:
        client = tls_client(node.config.tls_port, certs)
        assert client.ping()
        client.close()
        with pytest.raises(redis.ConnectionError):
            tls_client(node.config.tls_port, certs, ssl_certfile=str(certs.other_cert),
                       ssl_keyfile=str(certs.other_key)).ping()
    finally:
        node.stop()


def test_config_set_tls_at_runtime(certs: Certs) -> None:
    """CONFIG SET tls-*: new connections get the new context, the open ones stay; values
    that cannot make a context are refused (the old ones kept) with Redis's reply."""
    redis_tls = free_port()
    real = RedisServer("--tls-port", str(redis_tls), *certs.redis_args())
    node = tls_server(certs)
    try:
        for plain, port in ((node.client(), node.config.tls_port),
                            (real.client(), redis_tls)):
            kept = tls_client(port, certs)
            assert kept.ping()
            with pytest.raises(redis.ResponseError) as refused:
                plain.config_set("tls-cert-file", str(certs.dir / "missing.crt"))
            assert str(refused.value) == ("CONFIG SET failed (possibly related to argument "
                                          "'tls-cert-file') - Unable to update TLS "
                                          "configuration. Check server logs.")
            assert plain.config_get("tls-cert-file")["tls-cert-file"] == str(certs.cert)
            assert tls_client(port, certs).ping()
            # The server's certificate from the other CA, which clients now must trust;
            # client certificates no longer required.
            plain.config_set("tls-cert-file", str(certs.other_cert),
                             "tls-key-file", str(certs.other_key), "tls-auth-clients", "no")
            with pytest.raises(redis.ConnectionError):
                tls_client(port, certs).ping()
            assert tls_client(port, certs, ssl_ca_certs=str(certs.other_ca),
                              ssl_certfile=None, ssl_keyfile=None).ping()
            assert kept.ping()  # the connection made before is not touched
            kept.close()
            plain.close()
    finally:
        node.stop()
        real.stop()
