"""Reply values and their RESP2 / RESP3 encodings.

Command handlers return plain Python values; :func:`encode` turns them into the bytes of the
protocol the client negotiated:

==================  ======================  ==========================
value               RESP2                   RESP3
==================  ======================  ==========================
``bytes``           bulk string             bulk string
``int``             integer                 integer
``None``            null bulk ``$-1``       null ``_``
``NULL_ARRAY``      null array ``*-1``      null ``_``
``list``/``tuple``  array                   array
``dict``            flat array              map ``%``
``set``             array                   set ``~``
``OrderedSet``      array                   set ``~`` (order kept)
``float``           bulk string             double ``,``
``Status``          ``+OK``                 ``+OK``
``Verbatim``        bulk string             verbatim ``=``
``Push``            array                   push ``>``
``ReplyError``      ``-ERR ...``            ``-ERR ...``
``Raw``             the bytes as they are   the bytes as they are
==================  ======================  ==========================
"""

from __future__ import annotations

import math

from kvrepl.errors import ReplyError


class Status(bytes):
    """A simple string reply (``+OK``)."""


class Verbatim(bytes):
    """A verbatim text reply (INFO, CLIENT LIST ...): ``=`` in RESP3, bulk in RESP2."""


class Raw(bytes):
    """Bytes already encoded as RESP, sent unchanged."""


class OrderedSet(list):
    """A set reply whose order matters to match Redis (``~`` in RESP3, an array in RESP2)."""


class Push(list):
    """An out-of-band message (pub/sub): ``>`` in RESP3, a plain array in RESP2."""


class DeferredArray(list):
    """An array whose length Redis sets after its elements (addReplyDeferredLen: KEYS,
    ZRANGEBYSCORE...): the same bytes, encoded as :class:`DeferredReply`, whose reply
    blocks differ (kvrepl.commands.obuf)."""


class DeferredSet(OrderedSet):
    """A set reply whose length Redis sets after its members (SINTER, SMEMBERS)."""


class DeferredReply(bytes):
    """The bytes of a reply whose top-level aggregate header Redis adds last."""


class _NullArray:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NULL_ARRAY"


NULL_ARRAY = _NullArray()
OK = Status(b"OK")
PONG = Status(b"PONG")
QUEUED = Status(b"QUEUED")


def format_double(value: float) -> bytes:
    """A double as Redis 7.0 prints it in replies (``%.17g``, ``inf``, ``-inf``)."""
    if math.isinf(value):
        return b"inf" if value > 0 else b"-inf"
    return b"%.17g" % value


_SMALL_INT_LIMIT = 1024
_SMALL_INTS = [b":%d\r\n" % number for number in range(_SMALL_INT_LIMIT)]


def encode(value: object, resp3: bool = False) -> bytes:
    """The RESP bytes of one reply value."""
    kind = type(value)
    if kind is bytes:
        return b"$%d\r\n%s\r\n" % (len(value), value)
    if value is OK:
        return b"+OK\r\n"
    if kind is int:
        # ZADD, SADD, INCR, SETBIT...: most integer replies are small counts.
        return _SMALL_INTS[value] if 0 <= value < _SMALL_INT_LIMIT else b":%d\r\n" % value
    if value is None:
        return b"_\r\n" if resp3 else b"$-1\r\n"
    if kind is Status:
        return b"+" + value + b"\r\n"
    out: list[bytes] = []
    _encode_into(value, out, resp3)
    if kind is DeferredArray or kind is DeferredSet:
        return DeferredReply(b"".join(out))
    return b"".join(out)


def _encode_into(value: object, out: list[bytes], resp3: bool) -> None:
    kind = type(value)
    if kind is bytes:
        out.append(b"$%d\r\n%s\r\n" % (len(value), value))
    elif kind is int:
        out.append(b":%d\r\n" % value)
    elif kind is list or kind is tuple or kind is DeferredArray:
        out.append(b"*%d\r\n" % len(value))
        for item in value:
            if type(item) is bytes:
                out.append(b"$%d\r\n%s\r\n" % (len(item), item))
            else:
                _encode_into(item, out, resp3)
    elif value is None:
        out.append(b"_\r\n" if resp3 else b"$-1\r\n")
    elif kind is Status:
        out.append(b"+" + value + b"\r\n")
    elif kind is float:
        if resp3:
            out.append(b"," + format_double(value) + b"\r\n")
        else:
            text = format_double(value)
            out.append(b"$%d\r\n%s\r\n" % (len(text), text))
    elif kind is dict:
        out.append((b"%%%d\r\n" if resp3 else b"*%d\r\n") % (len(value) * (1 if resp3 else 2)))
        for key, item in value.items():
            _encode_into(key, out, resp3)
            _encode_into(item, out, resp3)
    elif kind is set or kind is frozenset:
        out.append((b"~%d\r\n" if resp3 else b"*%d\r\n") % len(value))
        for item in value:
            _encode_into(item, out, resp3)
    elif value is NULL_ARRAY:
        out.append(b"_\r\n" if resp3 else b"*-1\r\n")
    elif kind is bool:
        if resp3:
            out.append(b"#t\r\n" if value else b"#f\r\n")
        else:
            out.append(b":1\r\n" if value else b":0\r\n")
    elif kind is Verbatim:
        if resp3:
            out.append(b"=%d\r\ntxt:%s\r\n" % (len(value) + 4, value))
        else:
            out.append(b"$%d\r\n%s\r\n" % (len(value), value))
    elif kind is OrderedSet or kind is DeferredSet:
        out.append((b"~%d\r\n" if resp3 else b"*%d\r\n") % len(value))
        for item in value:
            _encode_into(item, out, resp3)
    elif kind is Push:
        out.append((b">%d\r\n" if resp3 else b"*%d\r\n") % len(value))
        for item in value:
            _encode_into(item, out, resp3)
    elif kind is Raw:
        out.append(value)
    elif isinstance(value, ReplyError):
        out.append(b"-" + _error_line(value.message) + b"\r\n")
    elif isinstance(value, str):
        data = value.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    else:
        raise TypeError(f"cannot encode {kind.__name__} as a reply")


def _error_line(message: str) -> bytes:
    # A newline inside an error would break the protocol; Redis replaces them with spaces.
    return message.replace("\r", " ").replace("\n", " ").encode("utf-8", "replace")


def encode_error(message: str) -> bytes:
    return b"-" + _error_line(message) + b"\r\n"
