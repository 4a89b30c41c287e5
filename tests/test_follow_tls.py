"""``Replica(follow="rediss://...")``: an embedded replica following over TLS a real
redis-server with a TLS port (and an ACL user from the URL), and a kvrepl master's
``tls-port``. Certificates are trustme's (see test_tls.py)."""

from __future__ import annotations

import logging

import pytest
import trio
from support import Certs, RedisServer, free_port

import kvrepl
from kvrepl.config import ConfigError


async def test_follow_redis_server_over_tls_with_url_credentials(certs: Certs) -> None:
    tls_port = free_port()
    master = RedisServer("--tls-port", str(tls_port), "--repl-diskless-sync-delay", "0",
                         "--user", "repl", "on", ">s3cret", "~*", "&*", "+@all",
                         *certs.redis_args())
    writer = master.client()
    try:
        writer.set("before", "1")
        url = f"rediss://repl:s3cret@127.0.0.1:{tls_port}"
        async with kvrepl.Replica(follow=url, **certs.options()) as replica:
            with trio.fail_after(20):
                await replica.wait_synced()
            assert replica.get("before") == b"1"
            writer.set("after", "2")
            with trio.fail_after(20):
                while replica.get("after") is None:  # the stream, over TLS
                    await trio.sleep(0.01)
            assert replica.get("after") == b"2"
            info = replica.redis().info("replication")
            assert info["master_link_status"] == "up"
            assert info["master_port"] == tls_port
            assert replica.config.masteruser == "repl"
    finally:
        writer.close()
        master.stop()


async def test_follow_a_kvrepl_master_tls_port(certs: Certs) -> None:
    tls_port = free_port()
    async with kvrepl.Master(port=0, tls_port=tls_port, **certs.options()) as master:
        master.set("k", "v")
        url = f"rediss://127.0.0.1:{tls_port}"
        async with kvrepl.Replica(follow=url, **certs.options()) as replica:
            with trio.fail_after(20):
                await replica.wait_synced()
                while replica.get("k") is None:
                    await trio.sleep(0.01)
            assert replica.get("k") == b"v"
            # The master sees its replica on a TLS connection.
            assert master.redis().info("replication")["connected_slaves"] == 1


async def _sync_errors(count: int) -> None:
    """Until the replica has logged ``count`` failed sync attempts on its socket."""
    seen: list[str] = []
    arrived = trio.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("Error condition on socket for SYNC"):
                seen.append(record.getMessage())
                if len(seen) >= count:
                    arrived.set()

    handler = Watch(logging.WARNING)
    logger = logging.getLogger("kvrepl")
    logger.addHandler(handler)
    try:
        await arrived.wait()
    finally:
        logger.removeHandler(handler)


def test_rediss_without_a_ca_is_refused_at_once() -> None:
    with pytest.raises(ConfigError, match="tls-ca-cert-file"):
        kvrepl.Replica(follow="rediss://127.0.0.1:6380")


async def test_a_stranger_certificate_is_not_followed(certs: Certs) -> None:
    """The master's chain is verified: a replica trusting another CA never syncs."""
    tls_port = free_port()
    async with kvrepl.Master(port=0, tls_port=tls_port, **certs.options()) as master:
        master.set("k", "v")
        async with kvrepl.Replica(follow=f"rediss://127.0.0.1:{tls_port}",
                                  tls_ca_cert_file=str(certs.other_ca),
                                  tls_cert_file=str(certs.other_cert),
                                  tls_key_file=str(certs.other_key)) as replica:
            # Wait for two failed attempts (the handshake is refused, not merely slow):
            # each ends in the replica's "Error condition on socket for SYNC" line.
            with trio.fail_after(20):
                await _sync_errors(2)
            assert replica.redis().info("replication")["master_link_status"] == "down"
            assert replica.get("k") is None
