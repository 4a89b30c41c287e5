"""TLS as Redis 7.0's ``tls.c`` configures it, on Python's ``ssl``.

The listener on ``tls-port`` wraps each accepted stream with :func:`wrap_server` (a
:class:`~kvrepl.server.tlsio.TlsStream`, which the reactor serves as it serves plain TCP)
and finishes the handshake before the client exists; a replica with ``tls-replication yes``
wraps its link to the master with :func:`wrap_client` (trio's SSLStream). Nothing above the
stream knows.

Redis verifies the peer's certificate chain against ``tls-ca-cert-file``/``tls-ca-cert-dir``
but never a host name, on both sides; ``tls-auth-clients`` says whether a client must show a
certificate (``yes``), may (``optional``) or need not (``no``). A replica presents
``tls-cert-file``/``tls-key-file`` to its master as Redis's replicas do.
"""

from __future__ import annotations

import ssl

import trio

from kvrepl.config import Config
from kvrepl.server.tls_suites import (
    CiphersuitesUnavailable,
    InvalidCiphersuites,
    set_ciphersuites,
    set_session_cache,
)
from kvrepl.server.tlsio import TlsStream

__all__ = ["TlsError", "check", "client_context", "server_context", "wrap_client",
           "wrap_server"]

# tls-protocols names, oldest first (Redis's parseProtocolsConfig).
_PROTOCOLS = {
    "tlsv1": ssl.TLSVersion.TLSv1, "tlsv1.1": ssl.TLSVersion.TLSv1_1,
    "tlsv1.2": ssl.TLSVersion.TLSv1_2, "tlsv1.3": ssl.TLSVersion.TLSv1_3,
}
_ORDER = list(_PROTOCOLS)

# How long an accepted connection may take to finish its handshake.
HANDSHAKE_TIMEOUT = 10


class TlsError(ValueError):
    """The TLS options cannot make a context (missing or bad files, bad protocol list)."""


def parse_protocols(text: str) -> tuple[ssl.TLSVersion, ssl.TLSVersion]:
    """``tls-protocols``: Redis's default (empty) is TLSv1.2 and TLSv1.3. Python's ssl
    sets a range, so the names given must be contiguous versions."""
    words = text.lower().split()
    if not words:
        return ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3
    unknown = [w for w in words if w not in _PROTOCOLS]
    if unknown:
        raise TlsError(f"Invalid tls-protocols specified. Use a combination of 'TLSv1', "
                         f"'TLSv1.1', 'TLSv1.2' and 'TLSv1.3'. (got '{unknown[0]}')")
    positions = sorted({_ORDER.index(w) for w in words})
    if positions != list(range(positions[0], positions[-1] + 1)):
        raise TlsError("kvrepl does not support tls-protocols with a gap between versions "
                         "yet; name a contiguous range such as 'TLSv1.2 TLSv1.3'")
    return _PROTOCOLS[_ORDER[positions[0]]], _PROTOCOLS[_ORDER[positions[-1]]]


def _common(context: ssl.SSLContext, config: Config, client: bool = False) -> None:
    """What both sides have; a client shows tls-client-cert-file/-key-file when both are
    set, else the server's certificate (Redis's explicit client context)."""
    low, high = parse_protocols(config.tls_protocols)
    context.minimum_version, context.maximum_version = low, high
    if config.tls_ciphers:
        try:
            context.set_ciphers(config.tls_ciphers)
        except ssl.SSLError:
            raise TlsError(f"Failed to configure ciphers: {config.tls_ciphers}") from None
    if config.tls_ciphersuites:  # empty: OpenSSL's own TLS 1.3 suites, as Redis
        try:
            set_ciphersuites(context, config.tls_ciphersuites)
        except InvalidCiphersuites:
            raise TlsError(f"Failed to configure ciphersuites: {config.tls_ciphersuites}"
                           ) from None
        except CiphersuitesUnavailable as err:
            raise TlsError(f"kvrepl cannot choose TLS 1.3 cipher suites on this Python "
                           f"and OpenSSL ({err}); leave tls-ciphersuites empty") from None
    cert, key, password = config.tls_cert_file, config.tls_key_file, config.tls_key_file_pass
    if client and config.tls_client_cert_file and config.tls_client_key_file:
        cert, key = config.tls_client_cert_file, config.tls_client_key_file
        password = config.tls_client_key_file_pass
    if cert or key:
        try:
            context.load_cert_chain(cert, key or None, password or None)
        except (OSError, ssl.SSLError) as err:
            raise TlsError(f"Failed to load certificate: {cert}: {err}") from None
    if config.tls_ca_cert_file or config.tls_ca_cert_dir:
        try:
            context.load_verify_locations(config.tls_ca_cert_file or None,
                                          config.tls_ca_cert_dir or None)
        except (OSError, ssl.SSLError) as err:
            raise TlsError(f"Failed to configure CA certificate(s) file/directory: {err}"
                           ) from None


def server_context(config: Config) -> ssl.SSLContext:
    """The context of the ``tls-port`` listener."""
    if not config.tls_cert_file or not config.tls_key_file:
        raise TlsError("No tls-cert-file or tls-key-file configured!")
    if not config.tls_ca_cert_file and not config.tls_ca_cert_dir:
        raise TlsError("Either tls-ca-cert-file or tls-ca-cert-dir must be specified when "
                       "tls-cluster, tls-replication or tls-auth-clients are enabled!")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _common(context, config)
    context.verify_mode = {"yes": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL,
                           "no": ssl.CERT_NONE}[config.tls_auth_clients]
    if config.tls_prefer_server_ciphers:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    try:  # Redis's server session cache, through libssl (kvrepl.server.tls_suites)
        set_session_cache(context, config.tls_session_caching,
                          config.tls_session_cache_size, config.tls_session_cache_timeout)
    except CiphersuitesUnavailable as err:
        raise TlsError(f"kvrepl cannot set the TLS session cache on this Python and "
                       f"OpenSSL ({err})") from None
    if config.tls_dh_params_file:
        try:
            context.load_dh_params(config.tls_dh_params_file)
        except (OSError, ssl.SSLError) as err:
            raise TlsError(f"Failed to load DH params file: {config.tls_dh_params_file}: "
                           f"{err}") from None
    return context


def client_context(config: Config) -> ssl.SSLContext:
    """The context a replica connects to its master with: the chain is verified against
    the CA, the host name is not (as Redis)."""
    if not config.tls_ca_cert_file and not config.tls_ca_cert_dir:
        raise TlsError("Either tls-ca-cert-file or tls-ca-cert-dir must be specified when "
                       "tls-cluster, tls-replication or tls-auth-clients are enabled!")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    _common(context, config, client=True)
    return context


def check(config: Config) -> None:
    """Build the contexts the options ask for, at start: TlsError says what is wrong."""
    if config.tls_port:
        server_context(config)
    if config.tls_replication:
        client_context(config)


async def wrap_server(stream: trio.SocketStream, context: ssl.SSLContext) -> TlsStream:
    """An accepted connection with its TLS handshake done (trio.BrokenResourceError when it
    fails: wrong CA, no client certificate when one is required, plain text)."""
    tls = TlsStream(stream, context)
    with trio.fail_after(HANDSHAKE_TIMEOUT):
        await tls.do_handshake()
    return tls


async def wrap_client(stream: trio.abc.Stream, config: Config) -> trio.SSLStream:
    """A replica's link to its master over TLS (``tls-replication yes``)."""
    tls = trio.SSLStream(stream, client_context(config), server_hostname=None)
    await tls.do_handshake()
    return tls
