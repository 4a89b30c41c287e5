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
    ZRANGEBYSCORE, a Lua table...), at any depth of a reply: the same bytes, encoded as
    :class:`DeferredReply`, whose reply blocks differ (kvrepl.commands.obuf)."""


class DeferredSet(OrderedSet):
    """A set reply whose length Redis sets after its members (SINTER, SMEMBERS)."""


class DeferredMap(dict):
    """A map whose length Redis sets after its pairs (setDeferredMapLen: a Lua map, LCS
    IDX's, COMMAND DOCS of some commands): ``%`` in RESP3, a flat array in RESP2."""


class DeferredReply(bytes):
    """The bytes of a reply holding lengths Redis sets after their elements
    (addReplyDeferredLen, setDeferredReply); :func:`deferred_marks` says where."""

    # (at, length, end) each, or None: worked out from ``pieces`` when asked (a reply is
    # rarely looked at before it is sent), the top-level header's when there are none.
    marks: tuple[tuple[int, int, int], ...] | None = None
    pieces: list[bytes] | None = None  # as _encode_into gathered them, with the markers


def deferred_marks(reply: DeferredReply) -> tuple[tuple[int, int, int], ...]:
    """Where ``reply``'s lengths set after their elements are, in the order Redis opened
    them: ``(at, length, end)`` for the ``length`` bytes at ``at`` (an aggregate's header,
    or a whole reply such as XAUTOCLAIM's cursor), added once the bytes before ``end``
    were."""
    marks = reply.marks
    if marks is None:
        pieces = reply.pieces
        if pieces is None:
            marks = ((0, reply.index(b"\n") + 1, len(reply)),)
        else:
            marks = reply.marks = _marks_of(pieces)
            reply.pieces = None
    return marks


def deferred(data: bytes, marks: list) -> DeferredReply:
    """``data`` as a :class:`DeferredReply` with these ``marks`` (``(at, length, end)``
    each)."""
    reply = DeferredReply(data)
    reply.marks = tuple(map(tuple, marks))
    return reply


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
    if kind is DeferredReply:
        return value
    out: list[bytes] = []
    seen = _DEFERRED[0]
    _encode_into(value, out, resp3)
    if _DEFERRED[0] == seen:
        return b"".join(out)
    return _deferred_reply(out, _DEFERRED[0] - seen)


class _Marker(bytes):
    """An empty piece _encode_into adds before a deferred aggregate's header (_OPEN) and
    after its elements (_CLOSE): the join passes over it."""


_OPEN = _Marker()
_CLOSE = _Marker()
# How many deferred aggregates and DeferredReply pieces _encode_into met, ever: a reply
# with none pays two looks at it, and nothing to look for them.
_DEFERRED = [0]


def _deferred_reply(out: list[bytes], met: int) -> DeferredReply:
    """The :class:`DeferredReply` of pieces holding markers or DeferredReply pieces
    (``met`` of them at least); its marks are worked out from them when asked, unless
    its top-level header is its only one."""
    reply = DeferredReply(b"".join(out))
    if met != 1 or out[0] is not _OPEN:
        reply.pieces = out
    return reply


def _marks_of(pieces: list[bytes]) -> tuple[tuple[int, int, int], ...]:
    marks: list[list[int]] = []
    opened: list[list[int]] = []
    pos = 0
    items = iter(pieces)
    for piece in items:
        if piece is _OPEN:
            piece = next(items)  # its header
            opened.append([pos, len(piece), 0])
            marks.append(opened[-1])
        elif piece is _CLOSE:
            opened.pop()[2] = pos
        elif type(piece) is DeferredReply:
            marks += ([pos + at, length, pos + end] for at, length, end in deferred_marks(piece))
        pos += len(piece)
    return tuple(map(tuple, marks))  # type: ignore[arg-type]


def _encode_into(value: object, out: list[bytes], resp3: bool) -> None:
    kind = type(value)
    if kind is bytes:
        out.append(b"$%d\r\n%s\r\n" % (len(value), value))
    elif kind is int:
        out.append(b":%d\r\n" % value)
    elif kind is list or kind is tuple:
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
    elif kind is OrderedSet:
        out.append((b"~%d\r\n" if resp3 else b"*%d\r\n") % len(value))
        for item in value:
            _encode_into(item, out, resp3)
    elif kind is Push:
        out.append((b">%d\r\n" if resp3 else b"*%d\r\n") % len(value))
        for item in value:
            _encode_into(item, out, resp3)
    elif kind is Raw:
        out.append(value)
    elif kind is DeferredArray or kind is DeferredSet or kind is DeferredMap:
        _DEFERRED[0] += 1
        out.append(_OPEN)
        _encode_into(_PLAIN[kind](value), out, resp3)
        out.append(_CLOSE)
    elif kind is DeferredReply:
        _DEFERRED[0] += 1
        out.append(value)
    elif isinstance(value, ReplyError):
        out.append(b"-" + _error_line(value.message) + b"\r\n")
    elif isinstance(value, str):
        data = value.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    else:
        raise TypeError(f"cannot encode {kind.__name__} as a reply")


def deferred_aggregate(header: bytes, items: list[bytes]) -> DeferredReply:
    """An aggregate encoded by its command (``header``, then its encoded ``items``) whose
    length Redis sets after its elements."""
    nested = sum(type(item) is DeferredReply for item in items)
    return _deferred_reply([_OPEN, header, *items, _CLOSE], 1 + nested)


_PLAIN = {DeferredArray: list, DeferredSet: OrderedSet, DeferredMap: dict}


def _error_line(message: str) -> bytes:
    # A newline inside an error would break the protocol; Redis replaces them with spaces.
    return message.replace("\r", " ").replace("\n", " ").encode("utf-8", "replace")


def encode_error(message: str) -> bytes:
    return b"-" + _error_line(message) + b"\r\n"
