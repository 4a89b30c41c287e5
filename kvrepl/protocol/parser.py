"""The RESP request parser: multibulk (``*2\\r\\n$3\\r\\nGET...``) and inline (``GET k\\r\\n``).

Limits and error messages are Redis 7.0's (networking.c ``processMultibulkBuffer`` and
``processInlineBuffer``). A :class:`~kvrepl.errors.ProtocolError` means the connection must
be closed after the error is sent.
"""

from __future__ import annotations

from collections import deque

from kvrepl.errors import ProtocolError

try:
    import hiredis
except ImportError:  # an optional speed-up: the exact parser alone gives the same requests
    hiredis = None


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

# Bytes whose absence proves the above cannot happen, nor a RESP3 aggregate (set, map,
# push, attribute) that hiredis reads where Redis wants a multibulk.
_SUSPECT_BYTES = b"+=(|~%>"
assert _SUSPECT_BYTES == bytes((43, 61, 40, 124, 126, 37, 62))  # as _split_plain tests them
_SMALL = 256  # bytes up to which _split_lines is tried first
_COUNT_LINES = {b"*%d" % count: count for count in range(1, 64)}
_BULK_HEADS = [b"$%d" % length for length in range(_SMALL)]
# hiredis readers left clean by split_requests (no request held back), reused: creating one
# costs as much as splitting a small pipeline. A list, so that threads never share one.
_spare_readers: list[object] = []
# Digits in the decimal form of n, for n below 10,000 (the size of "$<n>\r\n").
_DIGITS = bytes(len(str(n)) for n in range(10_000))
# What a hiredis reader returns when it holds no whole reply: not False, the default,
# which a reply can equal (":0", "#f", ",0"), and iter(gets, False) would stop there,
# leaving that element out of what it says it read.
_NO_REPLY = object()
_WINDOW = 16384  # bytes fed to hiredis at a time: it compacts its buffer as it reads
_PROBE = b"%0\r\n"  # an empty map: what a read that passed _SUSPECT_BYTES cannot hold


class RequestParser:
    """Turns the bytes a client sends into argument lists.

    ``feed(data)`` adds bytes; ``next_request()`` returns the next ``list[bytes]`` or
    :data:`NEED_DATA`. Set ``authenticated = False`` to apply the small limits Redis applies
    to clients that still owe a password. ``max_bulk_len`` is ``proto-max-bulk-len``.

    With ``fast=True`` (and hiredis installed), a chunk that starts a multibulk request
    while nothing is pending is parsed by hiredis's C reader, and what it returns is
    checked to be exactly what this parser would have returned: only bulk-string arguments,
    no element type Redis refuses. Anything else (an inline command, a request cut at the
    chunk's end, a malformed element, an unauthenticated client) goes through the exact
    parser, which has Redis's limits and error messages.
    """

    __slots__ = ("_buf", "_pos", "_args", "_remaining", "_chunks", "_chunks_len", "_need",
                 "_fast", "_ready", "_ready_sizes", "_ready_pos", "_ready_raw",
                 "authenticated",
                 "max_bulk_len", "from_master")

    def __init__(self, max_bulk_len: int = 512 * 1024 * 1024, *, fast: bool = False,
                 from_master: bool = False) -> None:
        self._buf = b""
        self._pos = 0
        self._args: list[bytes] | None = None  # a multibulk request in progress
        self._remaining = 0
        self._chunks: list[bytes] = []
        self._chunks_len = 0
        self._need = 0  # buffered bytes needed before parsing can progress
        self._fast = fast and hiredis is not None
        self._ready: list[list[bytes]] = []  # requests hiredis parsed, not yet returned
        # Their sizes in bytes (for ``buffered``); None until asked for, in the usual case.
        self._ready_sizes: list[int] | None = []
        self._ready_pos = 0
        self._ready_raw: bytes | None = None  # the bytes of exactly ``_ready``, when known
        self.authenticated = True
        self.max_bulk_len = max_bulk_len
        # A replica reading its master's stream: an inline command there is a desync
        # (a corrupt or misaligned stream), refused as Redis does; an empty line is the
        # master's keepalive.
        self.from_master = from_master

    def feed(self, data: bytes) -> None:
        if (self._fast and data[:1] == b"*" and self.authenticated
                and self._args is None and not self._need and self._pos >= len(self._buf)):
            data = self._feed_fast(data)
            if not data:
                return
        self._feed_exact(data)

    def _feed_fast(self, data: bytes) -> bytes:
        """Take the whole requests hiredis finds in ``data``; returns the bytes left for the
        exact parser (a request cut at the end, or anything the fast path refused)."""
        if _SMALL < len(data) <= self.max_bulk_len:  # the usual read: straight to the split
            requests, sizes, _refused = _split_plain(data, 0) or _split_careful(
                data, 0, self.max_bulk_len)
        else:
            requests, sizes, _refused = split_requests(
                data, 0, self.max_bulk_len, want_sizes=False)
        if type(sizes) is int:  # their total only: sized when asked (``buffered``)
            taken, sizes = sizes, None
        else:
            taken = sum(sizes)
        if requests:
            if self._ready_pos >= len(self._ready):
                self._ready, self._ready_sizes = requests, sizes
                self._ready_pos = 0
                # Only a plain split proves the bytes are exactly these requests (the
                # careful one also takes "*0" and "*-1", which Redis skips).
                self._ready_raw = data if sizes is None and taken == len(data) else None
            else:
                self._ready_raw = None
                self._ready.extend(requests)
                if self._ready_sizes is None or sizes is None:
                    self._ready_sizes = None
                else:
                    self._ready_sizes.extend(sizes)
        return data[taken:] if taken else data

    def _feed_exact(self, data: bytes) -> None:
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

    def unparsed(self) -> int:
        """Bytes received and not yet split into requests: a request cut short, a big
        argument on its way (what Redis's query buffer holds once it has parsed)."""
        return len(self._buf) - self._pos + self._chunks_len

    def head(self, size: int) -> bytes:
        """The first ``size`` unparsed bytes (for a log line)."""
        return (self._buf[self._pos:self._pos + size] if self._pos < len(self._buf)
                else b"".join(self._chunks)[:size])

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as part of a request."""
        if self._ready_sizes is None:
            self._ready_sizes = list(map(request_size, self._ready))
        ahead = sum(self._ready_sizes[self._ready_pos:])
        return ahead + len(self._buf) - self._pos + self._chunks_len

    def partial_request(self) -> list[bytes] | None:
        """The arguments of a request parsed in part (Redis's argv while the rest of a
        multibulk request is on its way), or None."""
        return self._args

    def ready_requests(self) -> tuple[list[list[bytes]], int, bytes | None]:
        """The requests already split and not yet returned: ``(requests, position, raw)``,
        the unreturned ones being ``requests[position:]``; ``raw`` is their bytes when
        known (none returned yet, and they were exactly one read), which then parse to
        exactly those requests: their canonical encoding but for the two bytes after each
        argument, which Redis (and hiredis, and this parser) skip unread, so any replica
        reads them alike. Pass how many were used on to :meth:`skip_ready`."""
        position = self._ready_pos
        return self._ready, position, self._ready_raw if position == 0 else None

    def skip_ready(self, position: int) -> bool:
        """The ready requests before ``position`` were used (see :meth:`ready_requests`).
        True when that was all the parser held (no request, no byte left): the next
        :meth:`next_request` would be NEED_DATA, so the caller may stop asking."""
        if position < len(self._ready) or self._pos < len(self._buf) or self._need \
                or self._args is not None:
            self._ready_pos = position
            return False
        self._ready, self._ready_sizes = [], []
        self._ready_pos = 0
        self._ready_raw = None
        return True

    def next_request(self) -> list[bytes] | _NeedData:
        ready = self._ready
        if ready:
            position = self._ready_pos
            if position < len(ready):
                self._ready_pos = position + 1
                return ready[position]
            self._ready, self._ready_sizes = [], []
            self._ready_pos = 0
            self._ready_raw = None
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
                count = _length(buf[pos + 1:nl])
                if count is None or count > MULTIBULK_MAX:
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
            length = _length(buf[pos + 1:nl])
            if length is None or length < 0 or length > self.max_bulk_len:
                raise ProtocolError("Protocol error: invalid bulk length")
            if length > UNAUTH_BULK_MAX and not self.authenticated:
                raise ProtocolError("Protocol error: unauthenticated bulk length")
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
        if line and self.from_master:
            raise ProtocolError("Master using the inline protocol. Desync?")
        args = split_inline(line)
        if args is None:
            raise ProtocolError("Protocol error: unbalanced quotes in request")
        return args


def split_requests(data: bytes | bytearray, start: int = 0, max_bulk_len: int = 2**63,
                   *, want_sizes: bool = True,
                   ) -> tuple[list[list[bytes]], list[int] | int, bool]:
    """The whole multibulk requests at ``data[start:]``, split by hiredis's C reader, that
    :class:`RequestParser` would return the same: ``(requests, sizes, refused)``.

    ``sizes[i]`` is how many bytes ``requests[i]`` took, counting the empty requests
    (``*0``, ``*-1``) just before it, which Redis skips; the sizes add up to the bytes taken.
    With ``want_sizes=False`` the sizes may come as one int instead: the bytes the requests
    took together (the usual case, found without sizing each argument).
    ``refused`` says something after them is not for this fast path (an inline command, an
    element type Redis refuses, a hiredis error): the exact parser must read the rest.
    Otherwise the rest is a request cut short by the end of ``data``, or empty requests.
    hiredis checks counts and lengths as Redis's ``string2ll`` does; what it cannot tell
    apart (a simple string or verbatim string where a bulk string belongs) is ruled out by
    the bytes: each element taken begins with '$' where its encoding puts it.
    An argument longer than ``max_bulk_len`` is refused too (the exact parser's error).
    """
    end = len(data)
    if start >= end or data[start] != 42:  # '*'
        return [], [], start < end
    if not want_sizes and end - start <= max_bulk_len:
        if end - start <= _SMALL:
            found = _split_lines(bytes(data[start:]) if start or type(data) is not bytes
                                 else data)
            if found is not None:
                return found, end - start, False
        plain = _split_plain(data, start)
        if plain is not None:
            return plain
    return _split_careful(data, start, max_bulk_len)


def _split_careful(data: bytes | bytearray, start: int, max_bulk_len: int,
                   ) -> tuple[list[list[bytes]], list[int], bool]:
    """:func:`split_requests` the careful way: every request and argument sized."""
    end = len(data)
    reader = hiredis.Reader(notEnoughData=_NO_REPLY)
    found: list[object] = []
    try:
        for window in range(start, end, _WINDOW):
            reader.feed(data, window, min(_WINDOW, end - window))
            found.extend(iter(reader.gets, _NO_REPLY))
    except Exception:  # hiredis.ProtocolError, or an absurd length; keeps what came before
        return _checked(data, start, found, max_bulk_len, True)
    return _checked(data, start, found, max_bulk_len, False)


def _split_plain(data: bytes | bytearray, start: int
                 ) -> tuple[list[list[bytes]], int, bool] | None:
    """split_requests without sizes, when ``data[start:]`` is plain multibulk requests
    (the whole of it, or all but one cut by the end of the read): ``(requests, bytes
    taken, False)``; None when the careful way must look. Checked with a few C-level
    passes instead of one Python step per argument.

    A read that ends with CR LF is, as a rule, whole requests: hiredis reads all of it and
    an empty map after it in one pass, and the map comes back as itself only if hiredis
    held no part of a request when it reached it (the read, with no '%', holds no map; in
    a request cut short the map is an element). Otherwise (a request cut, even at a line's end):
    the last request begins after the last CR LF '*' (unless a value holds one): hiredis
    reads up to there, then an integer fed to it must come back as itself, which happens
    only if it holds no part of a request, so the requests took exactly those bytes; then
    the rest, which is the last request whole, or cut (left to the exact parser).
    """
    # No byte that could start an element type hiredis turns into bytes or a list although
    # Redis refuses it (+ = ( | ~ % >): then every top-level value began with '*' or
    # with a type that is not a list, and every element with '$' or a non-bytes type.
    # One memchr per byte value (an int needle: no buffer to take), where a translate
    # that deleted them copied the read and looked up each byte; seven `in` tests, where
    # the same memchrs through map() and the method wrapper cost twice as much (in-process
    # callgrind a SET of a 16-request read: translate ~600, map ~360, these ~130).
    if (43 in data or 61 in data or 40 in data or 124 in data or 126 in data or 37 in data
            or 62 in data):  # _SUSPECT_BYTES, spelled out
        return None
    end = len(data)
    if data.endswith(b"\r\n"):
        # The usual read, whole requests: one pass, fed with a probe behind it (a map,
        # which the read cannot hold: no '%' in it) that comes back as itself only if
        # hiredis held no part of a request when it reached it.
        try:
            reader = _spare_readers.pop()
        except IndexError:
            reader = hiredis.Reader(notEnoughData=_NO_REPLY)
        try:
            if end - start <= _WINDOW:
                reader.feed((data[start:] if start else data) + _PROBE)
                found = list(iter(reader.gets, _NO_REPLY))
            else:
                found = []
                for window in range(start, end, _WINDOW):
                    reader.feed(data, window, min(_WINDOW, end - window))
                    found.extend(iter(reader.gets, _NO_REPLY))
                reader.feed(_PROBE)
                found.extend(iter(reader.gets, _NO_REPLY))
        except Exception:  # hiredis.ProtocolError: the careful way finds where and why
            found = None
        if len(found or ()) > 1 and type(found[-1]) is dict:  # whole, the reader clean
            found.pop()
            if not _only_bulk_strings(found):
                return None
            _spare_readers.append(reader)
            return found, end - start, False
    cut = data.rfind(b"\r\n*", start) + 2
    while cut > start + 1 and data[cut + 1:cut + 2] == b"\r":
        # "*" CR LF is an argument "*" (XADD's ID), not a request's "*<count>": look before.
        cut = data.rfind(b"\r\n*", start, cut) + 2
    if cut <= start + 1:
        cut = end
    split = _plain_up_to(data, start, cut)
    if split is None and cut < end:
        # That '*' was an argument's ("XADD s * f v"): the read may still be whole requests.
        cut = end
        split = _plain_up_to(data, start, cut)
    if split is None:
        return None
    found, reader = split
    try:
        taken = cut
        if cut < end:
            reader.feed(data, cut, end - cut)
            last = list(iter(reader.gets, _NO_REPLY))
            if last:
                if not _between_requests(reader):
                    return None
                found += last
                taken = end
    except Exception:  # hiredis.ProtocolError: the careful way finds where and why
        return None
    if not _only_bulk_strings(found):
        return None
    if taken == end:  # nothing held back: the reader can serve again
        _spare_readers.append(reader)
    return found, taken - start, False


def _only_bulk_strings(found: list[object]) -> bool:
    """Every value hiredis read is a non-empty list of bytes (with no refused type byte in
    the read, as :func:`_split_plain` checks first: multibulk requests of bulk strings)."""
    # all(): no "*0", which Redis skips, no "$0" at the top, which it reads as an inline
    # command (nor a 0 or None, which the join below refuses anyway).
    if not all(found):
        return False
    try:
        # Raises TypeError for any value or element that is not bytes (a top-level bulk
        # string too, but for the empty one: joining it iterates ints). The joins are
        # consumed, not joined again: nothing needs them.
        deque(map(b"".join, found), 0)  # run to the end, nothing kept
    except TypeError:
        return False
    return True


def _plain_up_to(data: bytes | bytearray, start: int, cut: int
                 ) -> tuple[list[list[bytes]], hiredis.Reader] | None:
    """What hiredis reads in ``data[start:cut]`` and its reader, when that is whole
    requests (the reader holds no part of one); None otherwise."""
    try:
        reader = _spare_readers.pop()
    except IndexError:
        reader = hiredis.Reader(notEnoughData=_NO_REPLY)
    found: list[list[bytes]] = []
    try:
        for window in range(start, cut, _WINDOW):
            reader.feed(data, window, min(_WINDOW, cut - window))
            found.extend(iter(reader.gets, _NO_REPLY))
        if found and _between_requests(reader):
            return found, reader
    except Exception:  # hiredis.ProtocolError: the careful way finds where and why
        pass
    return None


def _split_lines(data: bytes) -> list[list[bytes]] | None:
    """``data`` split at each CR LF, when it is exactly whole multibulk requests in the
    canonical form whose arguments contain no CR LF: the requests, else None. Then ``data``
    is the canonical encoding of what is returned, which the exact parser reads the same.
    Cheaper than hiredis for a request or two (an unpipelined client), dearer beyond."""
    parts = data.split(b"\r\n")
    if parts[-1]:
        return None
    end = len(parts) - 1
    heads = _BULK_HEADS.__getitem__
    requests = []
    position = 0
    try:
        while position < end:
            stop = position + 1 + 2 * _COUNT_LINES[parts[position]]
            args = parts[position + 2:stop:2]
            if stop > end or parts[position + 1:stop:2] != list(map(heads, map(len, args))):
                return None
            requests.append(args)
            position = stop
    except (KeyError, IndexError):  # not "*<n>" with n > 0, or an argument too long
        return None
    return requests


def _between_requests(reader: hiredis.Reader) -> bool:
    """True when ``reader`` (emptied of replies) holds no part of one: an integer fed now
    comes out as itself only then (inside a cut request it would be an element, or a
    protocol error)."""
    try:
        reader.feed(b":1\r\n")
        return reader.gets() == 1
    except Exception:  # hiredis.ProtocolError: it was inside a cut request
        return False


def request_size(argv: list[bytes]) -> int:
    """The bytes of ``argv`` as a multibulk request (``*<n>\\r\\n`` and ``$<len>\\r\\n<arg>\\r\\n``
    each)."""
    return (3 + len(str(len(argv))) + sum(len(arg) + 5 + len(str(len(arg))) for arg in argv))


def _checked(data: bytes | bytearray, start: int, found: list[object], max_bulk_len: int,
             refused: bool) -> tuple[list[list[bytes]], list[int], bool]:
    """split_requests for anything :func:`_bulk_sizes` would not take: each request and
    argument looked at in turn, stopping at the first one the exact parser must read."""
    end = len(data)
    requests: list[list[bytes]] = []
    sizes: list[int] = []
    digits = _DIGITS
    position = skipped = start
    for request in found:
        if position >= end or data[position] != 42:  # a top-level value, no multibulk
            refused = True
            break
        if request is None or not request:
            empty = b"*-1\r\n" if request is None else b"*0\r\n"
            if not data.startswith(empty, position):
                refused = True
                break
            position += len(empty)
            continue
        if type(request) is not list:
            refused = True
            break
        count = len(request)
        size = 3 + (digits[count] if count < 10_000 else len(str(count)))
        for arg in request:
            # A bulk string ('$' where its element begins): hiredis also hands back a
            # simple string, verbatim string or big number as bytes, which Redis refuses;
            # such an element can follow any two bytes (those after an argument are
            # skipped unread), so its first byte is what tells.
            if type(arg) is not bytes or data[position + size] != 36:
                size = -1
                break
            length = len(arg)
            if length > max_bulk_len:
                size = -1
                break
            size += length + 5 + (digits[length] if length < 10_000 else len(str(length)))
        if size < 0:
            refused = True
            break
        position += size
        requests.append(request)
        sizes.append(position - skipped)
        skipped = position
    return requests, sizes, refused


def _length(field: bytes) -> int | None:
    """A count or length as Redis's ``string2ll`` reads it: no sign but '-', no spaces, no
    leading zeros; None when it is not one."""
    if field.isdigit():
        if field[0] == 48 and len(field) > 1:
            return None
        return int(field)
    if field[:1] == b"-" and field[1:].isdigit() and field[1] != 48:
        return -int(field[1:])
    return None


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
