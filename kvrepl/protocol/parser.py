"""The RESP request parser: multibulk (``*2\\r\\n$3\\r\\nGET...``) and inline (``GET k\\r\\n``).

Limits and error messages are Redis 7.0's (networking.c ``processMultibulkBuffer`` and
``processInlineBuffer``). A :class:`~kvrepl.errors.ProtocolError` means the connection must
be closed after the error is sent.
"""

from __future__ import annotations

from kvrepl.errors import ProtocolError


class _NeedData:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()

INLINE_MAX = 64 * 1024  # PROTO_INLINE_MAX_SIZE
MULTIBULK_MAX = 2**31 - 1  # INT_MAX
UNAUTH_MULTIBULK_MAX = 10
UNAUTH_BULK_MAX = 16384
BIG_ARG = 32 * 1024  # PROTO_MBULK_BIG_ARG: gather such an argument's chunks, join once


class RequestParser:
    """Turns the bytes a client sends into argument lists.

    ``feed(data)`` adds bytes; ``next_request()`` returns the next ``list[bytes]`` or
    :data:`NEED_DATA`. Set ``authenticated = False`` to apply the small limits Redis applies
    to clients that still owe a password. ``max_bulk_len`` is ``proto-max-bulk-len``.
    """

    __slots__ = ("_buf", "_pos", "_args", "_remaining", "_chunks", "_chunks_len", "_need",
                 "authenticated", "max_bulk_len")

    def __init__(self, max_bulk_len: int = 512 * 1024 * 1024) -> None:
        self._buf = b""
        self._pos = 0
        self._args: list[bytes] | None = None  # a multibulk request in progress
        self._remaining = 0
        self._chunks: list[bytes] = []
        self._chunks_len = 0
        self._need = 0  # buffered bytes needed before parsing can progress
        self.authenticated = True
        self.max_bulk_len = max_bulk_len

    def feed(self, data: bytes) -> None:
        if self._need:
            # Waiting for a big argument: keep chunks aside instead of re-copying the buffer.
            self._chunks.append(data)
            self._chunks_len += len(data)
            if self._chunks_len < self._need:
                return
            data = b"".join(self._chunks)
            self._chunks = []
            self._chunks_len = 0
            self._need = 0
        if self._pos >= len(self._buf):
            self._buf = bytes(data)
        else:
            self._buf = self._buf[self._pos:] + data
        self._pos = 0

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as part of a request."""
        return len(self._buf) - self._pos + self._chunks_len

    def next_request(self) -> list[bytes] | _NeedData:
        while True:
            if self._need:
                return NEED_DATA
            if self._args is not None:
                return self._continue_multibulk()
            buf = self._buf
            pos = self._pos
            if pos >= len(buf):
                return NEED_DATA
            if buf[pos] == 42:  # '*'
                nl = buf.find(b"\r\n", pos)
                if nl < 0:
                    if len(buf) - pos > INLINE_MAX:
                        raise ProtocolError("Protocol error: too big mbulk count string")
                    return NEED_DATA
                try:
                    count = int(buf[pos + 1:nl])
                except ValueError:
                    raise ProtocolError("Protocol error: invalid multibulk length") from None
                if count > MULTIBULK_MAX:
                    raise ProtocolError("Protocol error: invalid multibulk length")
                if count > UNAUTH_MULTIBULK_MAX and not self.authenticated:
                    raise ProtocolError("Protocol error: unauthenticated multibulk length")
                self._pos = nl + 2
                if count <= 0:
                    continue
                self._args = []
                self._remaining = count
                return self._continue_multibulk()
            request = self._inline()
            if request is NEED_DATA or request:
                return request

    def _continue_multibulk(self) -> list[bytes] | _NeedData:
        buf = self._buf
        pos = self._pos
        args = self._args
        remaining = self._remaining
        end = len(buf)
        max_len = self.max_bulk_len if self.authenticated else UNAUTH_BULK_MAX
        while remaining:
            if pos >= end:
                break
            if buf[pos] != 36:  # '$'
                char = chr(buf[pos])
                raise ProtocolError(f"Protocol error: expected '$', got '{char}'")
            nl = buf.find(b"\r\n", pos)
            if nl < 0:
                if end - pos > INLINE_MAX:
                    raise ProtocolError("Protocol error: too big bulk count string")
                break
            try:
                length = int(buf[pos + 1:nl])
            except ValueError:
                length = -1
            if length < 0 or length > max_len:
                if not self.authenticated and length > UNAUTH_BULK_MAX:
                    raise ProtocolError("Protocol error: unauthenticated bulk length")
                raise ProtocolError("Protocol error: invalid bulk length")
            start = nl + 2
            stop = start + length
            if stop + 2 > end:
                if length >= BIG_ARG:
                    self._need = stop + 2 - pos
                    self._buf = buf[pos:]
                    pos = 0
                break
            args.append(buf[start:stop])
            pos = stop + 2
            remaining -= 1
        self._remaining = remaining
        if self._need:
            self._pos = 0
            self._chunks = [self._buf]
            self._chunks_len = len(self._buf)
            self._buf = b""
            return NEED_DATA
        self._pos = pos
        if remaining:
            return NEED_DATA
        self._args = None
        return args

    def _inline(self) -> list[bytes] | _NeedData:
        buf = self._buf
        pos = self._pos
        nl = buf.find(b"\n", pos)
        if nl < 0:
            if len(buf) - pos > INLINE_MAX:
                raise ProtocolError("Protocol error: too big inline request")
            return NEED_DATA
        line = buf[pos:nl]
        self._pos = nl + 1
        if line.endswith(b"\r"):
            line = line[:-1]
        args = split_inline(line)
        if args is None:
            raise ProtocolError("Protocol error: unbalanced quotes in request")
        return args


_ESCAPES = {ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t", ord("b"): b"\b", ord("a"): b"\a"}
_HEX = b"0123456789abcdefABCDEF"
_SPACE = b" \n\r\t\v\f\x00"


def split_inline(line: bytes) -> list[bytes] | None:
    """Split an inline command like Redis's ``sdssplitargs``; None on unbalanced quotes."""
    if b'"' not in line and b"'" not in line:
        return line.split()
    args: list[bytes] = []
    i = 0
    n = len(line)
    while True:
        while i < n and line[i] in _SPACE:
            i += 1
        if i >= n:
            return args
        current = bytearray()
        in_double = in_single = False
        while True:
            if in_double:
                if i >= n:
                    return None
                c = line[i]
                if (c == 92 and i + 3 < n and line[i + 1] == ord("x")
                        and line[i + 2] in _HEX and line[i + 3] in _HEX):
                    current.append(int(line[i + 2:i + 4], 16))
                    i += 3
                elif c == 92 and i + 1 < n:
                    i += 1
                    current += _ESCAPES.get(line[i], bytes([line[i]]))
                elif c == 34:
                    if i + 1 < n and line[i + 1] not in _SPACE:
                        return None
                    in_double = False
                    i += 1
                    break
                else:
                    current.append(c)
            elif in_single:
                if i >= n:
                    return None
                c = line[i]
                if c == 92 and i + 1 < n and line[i + 1] == 39:
                    i += 1
                    current.append(39)
                elif c == 39:
                    if i + 1 < n and line[i + 1] not in _SPACE:
                        return None
                    in_single = False
                    i += 1
                    break
                else:
                    current.append(c)
            else:
                if i >= n:
                    break
                c = line[i]
                if c in _SPACE:
                    break
                if c == 34:
                    in_double = True
                elif c == 39:
                    in_single = True
                else:
                    current.append(c)
            i += 1
        args.append(bytes(current))
