"""``tls-ciphersuites``: the TLS 1.3 cipher suites of a Python :class:`ssl.SSLContext`.

Python's ssl has no call for OpenSSL's ``SSL_CTX_set_ciphersuites`` (``set_ciphers`` only
reaches the TLS 1.2-and-older list), and neither cryptography nor pyOpenSSL can change a
context that trio's SSLStream can use. So the function is called through ctypes, from the
libssl that ``_ssl`` itself is linked to (a ``dlsym`` on ``_ssl``'s handle searches its own
dependencies), on the ``SSL_CTX *`` that CPython's ``PySSLContext`` keeps right after its
object header (3.10 to 3.13 alike).

Nothing is trusted blindly: before the call, OpenSSL must read back the context's own options
and verify mode at that pointer; after it, ``get_ciphers()`` must list exactly the TLS 1.3
suites asked for that this OpenSSL knows. Otherwise :class:`CiphersuitesUnavailable`, and the
option is refused rather than pretended.
"""

from __future__ import annotations

import ctypes
import functools
import ssl

__all__ = ["CiphersuitesUnavailable", "InvalidCiphersuites", "session_cache",
           "set_ciphersuites", "set_session_cache"]


class CiphersuitesUnavailable(RuntimeError):
    """This Python/OpenSSL pair cannot have its TLS 1.3 suites chosen (a symbol is missing or
    the context's layout is not the one expected)."""


class InvalidCiphersuites(ValueError):
    """OpenSSL refused the list (no name in it is a TLS 1.3 suite it knows)."""


class _Libssl:
    """The three libssl functions used, bound with their C signatures."""

    def __init__(self) -> None:
        path = getattr(ssl._ssl, "__file__", None)  # type: ignore[attr-defined]
        # _ssl built into the interpreter: its libssl is among the process's own symbols.
        handle = ctypes.CDLL(path)
        try:
            self.set = handle.SSL_CTX_set_ciphersuites
            self.get_options = handle.SSL_CTX_get_options
            self.get_verify_mode = handle.SSL_CTX_get_verify_mode
        except AttributeError as err:
            raise CiphersuitesUnavailable(f"libssl has no {err}") from None
        self.set.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        self.set.restype = ctypes.c_int
        self.get_options.argtypes = [ctypes.c_void_p]
        # uint64_t since OpenSSL 3.0, unsigned long before.
        self.get_options.restype = (ctypes.c_uint64 if ssl.OPENSSL_VERSION_INFO >= (3,)
                                    else ctypes.c_ulong)
        self.get_verify_mode.argtypes = [ctypes.c_void_p]
        self.get_verify_mode.restype = ctypes.c_int
        # The server session cache (tls-session-caching, -cache-size, -cache-timeout).
        self.ctrl = getattr(handle, "SSL_CTX_ctrl", None)
        self.set_timeout = getattr(handle, "SSL_CTX_set_timeout", None)
        self.get_timeout = getattr(handle, "SSL_CTX_get_timeout", None)
        if self.ctrl is not None:
            self.ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
            self.ctrl.restype = ctypes.c_long
        for function in (self.set_timeout, self.get_timeout):
            if function is not None:
                function.argtypes = [ctypes.c_void_p, ctypes.c_long][:1 + (
                    function is self.set_timeout)]
                function.restype = ctypes.c_long


# ssl's verify modes as OpenSSL's SSL_VERIFY_PEER (1) | SSL_VERIFY_FAIL_IF_NO_PEER_CERT (2).
_VERIFY = {ssl.CERT_NONE: 0, ssl.CERT_OPTIONAL: 1, ssl.CERT_REQUIRED: 3}


@functools.cache
def _libssl() -> _Libssl:
    return _Libssl()


def _ssl_ctx(context: ssl.SSLContext, lib: _Libssl) -> int:
    """The context's ``SSL_CTX *``, proved: OpenSSL reads this context's settings there."""
    if not isinstance(context, ssl.SSLContext):
        raise CiphersuitesUnavailable(f"not an ssl.SSLContext: {type(context).__name__}")
    # PyObject_HEAD is object.__basicsize__ bytes on every build (debug, free-threaded).
    pointer = ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value
    if not pointer:
        raise CiphersuitesUnavailable("no SSL_CTX where CPython keeps it")
    if (lib.get_options(pointer) != int(context.options)
            or lib.get_verify_mode(pointer) & 3 != _VERIFY[context.verify_mode]):
        raise CiphersuitesUnavailable("the SSL_CTX pointer does not read back this "
                                      "context's options")
    return pointer


def _tls13(context: ssl.SSLContext) -> list[str]:
    return [c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.3"]


@functools.cache
def _known(name: str) -> bool:
    """Whether this OpenSSL knows ``name`` as a TLS 1.3 suite (it skips unknown names in a
    list that has a known one, as Redis sees it do, so the proof must skip them too)."""
    if not name:
        return False
    lib = _libssl()
    scratch = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    return bool(lib.set(_ssl_ctx(scratch, lib), name.encode()))


def set_ciphersuites(context: ssl.SSLContext, suites: str) -> None:
    """Allow only ``suites`` (OpenSSL's colon-separated TLS 1.3 names) on ``context``.

    InvalidCiphersuites when OpenSSL refuses the list; CiphersuitesUnavailable when it cannot
    be set here or the result is not the list asked for."""
    lib = _libssl()
    pointer = _ssl_ctx(context, lib)
    try:
        encoded = suites.encode("ascii")
    except UnicodeEncodeError:
        raise InvalidCiphersuites(suites) from None
    if "\0" in suites or not lib.set(pointer, encoded):
        raise InvalidCiphersuites(suites)
    # OpenSSL trims each name and skips the unknown ones.
    expected = [name.strip() for name in suites.split(":") if _known(name.strip())]
    got = _tls13(context)
    if got != expected:
        raise CiphersuitesUnavailable(f"OpenSSL lists {got} after setting {expected}")


# ssl.h: SSL_CTRL_SET/GET_SESS_CACHE_SIZE and _MODE; SSL_SESS_CACHE_OFF and _SERVER.
_SET_SIZE, _GET_SIZE, _SET_MODE, _GET_MODE = 42, 43, 44, 45
_CACHE_OFF, _CACHE_SERVER = 0, 2


def set_session_cache(context: ssl.SSLContext, enabled: bool, size: int, timeout: int) -> None:
    """The server session cache as Redis sets it (tls.c): on with ``size`` sessions kept
    ``timeout`` seconds, or off. CiphersuitesUnavailable when this libssl cannot be reached
    or does not read the values back."""
    lib = _libssl()
    if lib.ctrl is None or lib.set_timeout is None or lib.get_timeout is None:
        raise CiphersuitesUnavailable("libssl has no SSL_CTX_ctrl / SSL_CTX_set_timeout")
    pointer = _ssl_ctx(context, lib)
    if enabled:
        lib.ctrl(pointer, _SET_MODE, _CACHE_SERVER, None)
        lib.ctrl(pointer, _SET_SIZE, size, None)
        lib.set_timeout(pointer, timeout)
    else:
        lib.ctrl(pointer, _SET_MODE, _CACHE_OFF, None)
    if session_cache(context) != ((True, size, timeout) if enabled else (False, None, None)):
        raise CiphersuitesUnavailable("OpenSSL does not read the session cache back")


def session_cache(context: ssl.SSLContext) -> tuple[bool, int | None, int | None]:
    """Whether the server session cache is on, and then its size and timeout."""
    lib = _libssl()
    pointer = _ssl_ctx(context, lib)
    if not lib.ctrl(pointer, _GET_MODE, 0, None) & _CACHE_SERVER:
        return False, None, None
    return True, lib.ctrl(pointer, _GET_SIZE, 0, None), lib.get_timeout(pointer)
