"""Bit commands (Redis's ``bitops.c``): SETBIT, GETBIT, BITCOUNT, BITPOS, BITOP, BITFIELD.

Each handler follows its Redis 7.0 counterpart step by step, because the order of the checks
decides which error a client sees when several things are wrong (BITCOUNT looks the key up
before it parses its range, BITPOS after it parses the bit, BITFIELD parses every operation
before it touches the key), and because the ``dirty`` accounting decides what replicates:
every command here propagates as sent, when it changed something.

The bit arithmetic runs on Python integers and C-level scans (``int.from_bytes``,
``bit_count``, a regular expression for the first byte of interest), never a Python loop per
byte.
"""

from __future__ import annotations

import re

from kvrepl.commands.args import INT64_MAX, parse_int, string2ll
from kvrepl.commands.core import Session, command
from kvrepl.commands.strings import lookup_string, mutable_string
from kvrepl.errors import SYNTAX, ReplyError, WrongTypeError
from kvrepl.notify import GENERIC, STRING, notify, replied
from kvrepl.store.values import is_string

_BAD_OFFSET = "ERR bit offset is not an integer or out of range"
_BAD_BIT = "ERR bit is not an integer or out of range"
_BAD_TYPE = ("ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not "
             "supported but i64 is.")
_U64 = (1 << 64) - 1

# The first byte that is not all zeros / not all ones (redisBitpos's skip of whole words).
_NOT_ZERO = re.compile(rb"[^\x00]")
_NOT_ONES = re.compile(rb"[^\xff]")
# Long runs are first skipped a block at a time by memcmp (startswith): the regular
# expression reads about 70 MB/s, BITPOS of a 512 MB bitmap took seconds.
_SKIP = 1 << 16
_ZEROS = bytes(_SKIP)
_ONES = b"\xff" * _SKIP


# -- helpers ---------------------------------------------------------------------------------
def _int64(value: int) -> int:
    """``value`` wrapped to a C int64_t, as the C arithmetic it mirrors would leave it."""
    value &= _U64
    return value - (1 << 64) if value > INT64_MAX else value


def _plain_digits(arg: bytes) -> bool:
    """True for a non-negative decimal that string2ll reads as ``int(arg)`` (no sign, no
    leading zero, at most 18 digits): the common case, read without the general regex."""
    return arg.isdigit() and len(arg) < 19 and (arg[0] != 0x30 or len(arg) == 1)


def _bit_offset(s: Session, arg: bytes, bits: int = 0) -> int:
    """getBitOffsetFromArgument: a bit offset below proto-max-bulk-len bytes (the master's
    stream is obeyed beyond it); with ``bits`` (BITFIELD) ``#N`` means ``N * bits``."""
    if _plain_digits(arg):
        offset = int(arg)
    else:
        hashed = bits > 0 and arg[:1] == b"#"
        offset = string2ll(arg[1:] if hashed else arg)
        if offset is None:
            raise ReplyError(_BAD_OFFSET)
        if hashed:
            offset = _int64(offset * bits)  # a long long product in C: it wraps
    if offset < 0 or (not s.is_master and offset >> 3 >= s.engine.config.proto_max_bulk_len):
        raise ReplyError(_BAD_OFFSET)
    return offset


def _bitfield_type(arg: bytes) -> tuple[bool, int]:
    """getBitfieldTypeFromArgument: ``(signed, bits)`` of ``i1``..``i64`` / ``u1``..``u63``.
    The width is read up to the first NUL byte (``strlen``), as Redis reads it."""
    known = _FIELD_TYPES.get(arg)
    if known is not None:
        return known
    sign = arg[:1]
    if sign not in (b"i", b"u"):
        raise ReplyError(_BAD_TYPE)
    signed = sign == b"i"
    bits = string2ll(arg[1:].split(b"\x00", 1)[0])
    if bits is None or bits < 1 or bits > (64 if signed else 63):
        raise ReplyError(_BAD_TYPE)
    return signed, bits


_FIELD_TYPES = {b"%s%d" % (sign, bits): (sign == b"i", bits)
                for sign, top in ((b"i", 64), (b"u", 63)) for bits in range(1, top + 1)}


def _bits_for_write(s: Session, key: bytes, maxbit: int) -> tuple[bytearray, bool]:
    """lookupStringForBitCommand: the string at ``key`` (WRONGTYPE for another type), stored
    as one that changes in place (``raw``, as dbUnshareStringValue leaves it even when
    nothing changes) and zero-padded so that bit ``maxbit`` exists; and whether that alone
    changed the key (it was created or grew)."""
    return _writable(s, key, (maxbit >> 3) + 1, s.db.lookup(key))


def _writable(s: Session, key: bytes, size: int, current: object) -> tuple[bytearray, bool]:
    """:func:`_bits_for_write` once the key is looked up (``current``), for ``size`` bytes."""
    if type(current) is bytearray:
        if len(current) >= size:
            return current, False  # already changed in place and long enough: the usual case
    elif current is not None and type(current) is not bytes:
        raise WrongTypeError()
    if current is None:
        value = bytearray(size)
        s.db.set(key, value)
        return value, True
    value = mutable_string(s, key, current)
    if len(value) >= size:
        return value, False
    value.extend(bytes(size - len(value)))
    s.db.remeasure(key)  # grown in place: the dispatcher leaves SETBIT's estimate to us
    return value, True


def _range(start: int, end: int, size: int, isbit: bool) -> tuple[int, int, int, int]:
    """The byte range ``[start, end]`` of BITCOUNT/BITPOS after negative indexes and
    clipping, and the masks of the bits of its first and last bytes outside a BIT range."""
    total = size << 3 if isbit else size
    if start < 0:
        start += total
    if end < 0:
        end += total
    start = max(start, 0)
    end = max(end, 0)
    if end >= total:
        end = total - 1
    first_mask = last_mask = 0
    if isbit and start <= end:
        first_mask = ~((1 << (8 - (start & 7))) - 1) & 0xFF
        last_mask = (1 << (7 - (end & 7))) - 1
        start >>= 3
        end >>= 3
    return start, end, first_mask, last_mask


def _unit(arg: bytes) -> bool:
    """BIT or BYTE: True for BIT."""
    unit = arg.lower()
    if unit == b"bit":
        return True
    if unit == b"byte":
        return False
    raise ReplyError(SYNTAX)


def _bitpos(data: bytes | bytearray, start: int, count: int, bit: int) -> int:
    """redisBitpos over ``data[start:start + count]``: the position of the first bit equal
    to ``bit``; when there is none, -1 for a 1 and ``count * 8`` (the zero padding on the
    right) for a 0."""
    end = start + count
    scan = start
    if count > _SKIP:
        run = _ZEROS if bit else _ONES
        while end - scan > _SKIP and data.startswith(run, scan):
            scan += _SKIP
    found = (_NOT_ZERO if bit else _NOT_ONES).search(data, scan, end)
    if found is None:
        return -1 if bit else count * 8
    byte = data[found.start()]
    return (found.start() - start) * 8 + 8 - (byte if bit else byte ^ 0xFF).bit_length()


def _get_field(data: bytes | bytearray, offset: int, bits: int, signed: bool) -> int:
    """get(Un)signedBitfield: the ``bits``-wide integer at bit ``offset``, most significant
    bit first, reading zeros past the end of ``data``."""
    first, last = offset >> 3, (offset + bits - 1) >> 3
    width = last - first + 1
    chunk = data[first:last + 1]
    word = int.from_bytes(chunk, "big") << 8 * (width - len(chunk))
    value = (word >> (width * 8 - (offset & 7) - bits)) & ((1 << bits) - 1)
    if signed and value >> (bits - 1):
        value -= 1 << bits
    return value


def _set_field(buf: bytearray, offset: int, bits: int, value: int) -> None:
    """set(Un)signedBitfield: write the low ``bits`` bits of ``value`` at bit ``offset``
    (the buffer already reaches that far)."""
    first, last = offset >> 3, (offset + bits - 1) >> 3
    width = last - first + 1
    shift = width * 8 - (offset & 7) - bits
    mask = ((1 << bits) - 1) << shift
    word = int.from_bytes(buf[first:last + 1], "big")
    word = (word & ~mask) | ((value << shift) & mask)
    buf[first:last + 1] = word.to_bytes(width, "big")


# BITFIELD overflow behaviours.
_WRAP, _SAT, _FAIL = 0, 1, 2
_OVERFLOW = {b"wrap": _WRAP, b"sat": _SAT, b"fail": _FAIL}


def _unsigned_overflow(value: int, incr: int, bits: int, owtype: int) -> tuple[int, int]:
    """checkUnsignedBitfieldOverflow on a uint64 ``value`` and int64 ``incr``: ``(1, limit)``
    on overflow, ``(-1, limit)`` on underflow, ``(0, 0)`` when the result fits; ``limit``
    is what WRAP or SAT store."""
    top = (1 << bits) - 1
    if value > top or (incr > 0 and incr > _int64(top - value)):
        direction = 1
    elif incr < 0 and incr < _int64(-value):
        direction = -1
    else:
        return 0, 0
    if owtype == _WRAP:
        return direction, (value + incr) & top
    return direction, (top if direction > 0 else 0)


def _signed_overflow(value: int, incr: int, bits: int, owtype: int) -> tuple[int, int]:
    """checkSignedBitfieldOverflow on int64 ``value`` and ``incr``, as above; WRAP wraps
    towards the most negative number."""
    top = INT64_MAX if bits == 64 else (1 << (bits - 1)) - 1
    bottom = -top - 1
    maxincr = _int64(top - value)
    minincr = _int64(bottom - value)
    if value > top or (bits != 64 and incr > maxincr) or (
            value >= 0 and incr > 0 and incr > maxincr):
        direction = 1
    elif value < bottom or (bits != 64 and incr < minincr) or (
            value < 0 and incr < 0 and incr < minincr):
        direction = -1
    else:
        return 0, 0
    if owtype == _WRAP:
        wrapped = (value + incr) & ((1 << bits) - 1)
        return direction, wrapped - (1 << bits) if wrapped >> (bits - 1) else wrapped
    return direction, (top if direction > 0 else bottom)


# -- SETBIT / GETBIT -------------------------------------------------------------------------
@command("setbit")
def setbit(s: Session, argv: list[bytes]) -> object:
    """SETBIT key offset 0|1: the bit's previous value."""
    key = argv[1]
    arg = argv[2]
    engine = s.engine
    if arg.isdigit() and len(arg) < 19 and (arg[0] != 0x30 or len(arg) == 1):
        offset = int(arg)  # _bit_offset's usual case, inlined: SETBIT is a hot path
        if offset >> 3 >= engine.config.proto_max_bulk_len and not s.is_master:
            raise ReplyError(_BAD_OFFSET)
    else:
        offset = _bit_offset(s, arg)
    arg = argv[3]
    on = 1 if arg == b"1" else 0 if arg == b"0" else parse_int(arg, _BAD_BIT)
    if on & ~1:
        raise ReplyError(_BAD_BIT)
    byte = offset >> 3
    buf = s.db.lookup(key)
    if type(buf) is bytearray and len(buf) > byte:
        dirty = False
    else:
        buf, dirty = _writable(s, key, byte + 1, buf)
    mask = 0x80 >> (offset & 7)
    old = buf[byte] & mask
    if dirty or bool(old) != on:
        buf[byte] = (buf[byte] & ~mask) | (mask if on else 0)
        if engine.notify_classes & STRING:
            engine.notify_keyspace_event(b"setbit", key, s.db.id)
        engine.dirty += 1
    return 1 if old else 0


_ZERO_REPLY = b":0\r\n"
_ONE_REPLY = b":1\r\n"


def setbit_run(s: Session, requests: list[list[bytes]], start: int, out: list[bytes],
               written: list[list[bytes]] | None) -> int:
    """``requests[start:]`` while each is a ``SETBIT key offset 0|1`` (spelled as the first,
    a key without a TTL, a plain decimal offset in range) to a string or a new key, run as
    :func:`setbit` runs each, their replies appended to ``out`` and the requests that
    changed something to ``written`` (when given: what propagates). Returns how many it
    ran; the first it did not (an error to report, keyspace events to fire) is the
    handler's. The plain lane's run (``commands/plain.py``) calls it and does ``call()``'s
    part (SETBIT keeps its memory estimate itself: :func:`_writable`)."""
    engine = s.engine
    if engine.notify_classes & STRING:
        return 0  # the events: the handler, one request at a time
    db = s.db
    data, expires, access = db.data, db.expires, db.access
    clock = engine.keyspace.lru_clock
    limit = engine.config.proto_max_bulk_len  # (no master link comes here)
    name = requests[start][0]
    zero, one = _ZERO_REPLY, _ONE_REPLY
    changes = 0
    position = start
    for argv in requests[start:]:
        if len(argv) != 4 or argv[0] != name:
            break
        key, arg, bit = argv[1], argv[2], argv[3]
        if expires and key in expires:
            break
        if not (arg.isdigit() and len(arg) < 19 and (arg[0] != 0x30 or len(arg) == 1)):
            break  # _bit_offset's other forms and errors
        offset = int(arg)
        byte = offset >> 3
        if byte >= limit:
            break
        if bit == b"1":
            on = True
        elif bit == b"0":
            on = False
        else:
            break
        buf = data.get(key)
        if type(buf) is not bytearray or len(buf) <= byte:
            if buf is not None and type(buf) is not bytes and type(buf) is not bytearray:
                break  # WRONGTYPE
            buf, grew = _writable(s, key, byte + 1, buf)  # created or grown: changed
        else:
            grew = False  # (then: changed only if the bit flips)
        access[key] = clock
        mask = 0x80 >> (offset & 7)
        old = buf[byte] & mask
        if (old != 0) is not on:
            buf[byte] ^= mask
            grew = True
        if grew:  # changed: dirty, propagated
            changes += 1
            if written is not None:
                written.append(argv)
        out.append(one if old else zero)
        position += 1
    engine.dirty += changes
    return position - start


@command("getbit")
def getbit(s: Session, argv: list[bytes]) -> object:
    """GETBIT key offset: 0 past the end of the string and for a missing key."""
    offset = _bit_offset(s, argv[2])
    value = lookup_string(s, argv[1])
    byte = offset >> 3
    if value is None or byte >= len(value):
        return 0
    return 1 if value[byte] & (0x80 >> (offset & 7)) else 0


# -- BITCOUNT / BITPOS -----------------------------------------------------------------------
_COUNT_BLOCK = 65_536  # BITCOUNT's bytes per int (see bitcount)

@command("bitcount")
def bitcount(s: Session, argv: list[bytes]) -> object:
    """BITCOUNT key [start end [BYTE|BIT]]"""
    value = lookup_string(s, argv[1])
    if value is None:
        return 0
    argc = len(argv)
    if argc in (4, 5):
        start = parse_int(argv[2])
        end = parse_int(argv[3])
        if start < 0 and end < 0 and start > end:
            return 0  # before the unit is even read, as in Redis
        isbit = _unit(argv[4]) if argc == 5 else False
        start, end, first_mask, last_mask = _range(start, end, len(value), isbit)
    elif argc == 2:
        start, end, first_mask, last_mask = 0, len(value) - 1, 0, 0
    else:
        raise ReplyError(SYNTAX)
    if start > end:
        return 0
    # A view, not a slice copy; released at once, or the bytearray could not grow again.
    # Counted 64 KB at a time: one int of the whole range is built in memory the caches
    # do not hold (a 64 MB range of random bytes: 0.44 s whole, 0.08 s by blocks).
    with memoryview(value) as view:
        count = sum([int.from_bytes(view[at:min(at + _COUNT_BLOCK, end + 1)], "little")
                     .bit_count() for at in range(start, end + 1, _COUNT_BLOCK)])
    # The bits of the edge bytes outside a BIT range were counted: take them off.
    if first_mask:
        count -= (value[start] & first_mask).bit_count()
    if last_mask:
        count -= (value[end] & last_mask).bit_count()
    return count


@command("bitpos")
def bitpos(s: Session, argv: list[bytes]) -> object:
    """BITPOS key bit [start [end [BYTE|BIT]]]: -1 when the range holds no such bit."""
    bit = parse_int(argv[2])
    if bit not in (0, 1):
        raise ReplyError("ERR The bit argument must be 1 or 0.")
    value = lookup_string(s, argv[1])
    if value is None:  # an endless run of zeros
        return -1 if bit else 0
    argc = len(argv)
    end_given = False
    first_mask = last_mask = 0
    if argc in (4, 5, 6):
        start = parse_int(argv[3])
        isbit = _unit(argv[5]) if argc == 6 else False
        if argc >= 5:
            end = parse_int(argv[4])
            end_given = True
        else:
            end = len(value) - 1
        start, end, first_mask, last_mask = _range(start, end, len(value), isbit)
    elif argc == 3:
        start, end = 0, len(value) - 1
    else:
        raise ReplyError(SYNTAX)
    if start > end:
        return -1
    # The three pieces of bitposCommand: a partial first byte, whole bytes, a partial last
    # byte; ``pos`` is relative to the piece last scanned, ``start`` where it began.
    size = end - start + 1
    pos = -1
    done = False
    if first_mask:
        edge = value[start] & ~first_mask if bit else value[start] | first_mask
        if last_mask and size == 1:
            edge = edge & ~last_mask if bit else edge | last_mask
        pos = _bitpos(bytes((edge & 0xFF,)), 0, 1, bit)
        done = size == 1 or (pos != -1 and pos != 8)
        if not done:
            start += 1
            size -= 1
    if not done:
        whole = size - (1 if last_mask else 0)
        if whole > 0:
            pos = _bitpos(value, start, whole, bit)
            done = size == whole or (pos != -1 and pos != whole << 3)
            if not done:
                start += whole
                size -= whole
        if not done:
            edge = value[end] & ~last_mask if bit else value[end] | last_mask
            pos = _bitpos(bytes((edge & 0xFF,)), 0, 1, bit)
    if end_given and bit == 0 and pos == size << 3:
        return -1  # the zeros right of an explicit range are not the string's
    return pos + (start << 3) if pos != -1 else -1


# -- BITOP -----------------------------------------------------------------------------------
_BITOPS = (b"and", b"or", b"xor", b"not")


@command("bitop")
def bitop(s: Session, argv: list[bytes]) -> object:
    """BITOP AND|OR|XOR|NOT destkey key [key ...]: the result's length; an empty result
    deletes ``destkey``. Missing sources are empty strings (zeros to the longest)."""
    op = argv[1].lower()
    if op not in _BITOPS:
        raise ReplyError(SYNTAX)
    if op == b"not" and len(argv) != 4:
        raise ReplyError("ERR BITOP NOT must be called with a single source key.")
    target = argv[2]
    sources = []
    for key in argv[3:]:
        value = s.db.lookup_read(key)
        if value is not None and not is_string(value):
            raise WrongTypeError()
        sources.append(value or b"")
    size = max(len(value) for value in sources)
    if not size:
        if s.db.delete(target):  # dbDelete: no lookup first, an expired target counts too
            notify(s, GENERIC, b"del", target)
            s.engine.dirty += 1
        return 0
    # Each source as one big-endian integer, zero-padded on the right to ``size`` bytes.
    words = [int.from_bytes(value, "big") << 8 * (size - len(value)) for value in sources]
    result = words[0]
    if op == b"not":
        result ^= (1 << 8 * size) - 1
    elif op == b"and":
        for word in words[1:]:
            result &= word
    elif op == b"or":
        for word in words[1:]:
            result |= word
    else:
        for word in words[1:]:
            result ^= word
    s.db.lookup(target)  # setKey's lookupKeyWrite: a stale target expires first (its DEL)
    s.db.set(target, bytearray(result.to_bytes(size, "big")))  # a raw string, as in Redis
    notify(s, STRING, b"set", target)
    s.engine.dirty += 1
    return size


# -- BITFIELD --------------------------------------------------------------------------------
_GET, _SET, _INCRBY = 0, 1, 2
_OPCODES = {b"get": (_GET, 2), b"set": (_SET, 3), b"incrby": (_INCRBY, 3)}


def _bitfield(s: Session, argv: list[bytes], readonly_command: bool) -> object:
    """bitfieldGeneric: every operation is parsed (and may fail) before the key is read."""
    if len(argv) == 6 and not readonly_command:
        entry = _OPCODES.get(argv[2].lower())
        if entry is not None and entry[0] != _GET:
            return _bitfield_one(s, argv, entry[0])
    ops: list[tuple[int, int, int, bool, int, int]] = []  # opcode, offset, value, signed, ...
    owtype = _WRAP
    readonly = True
    highest = 0
    argc = len(argv)
    j = 2
    while j < argc:
        remaining = argc - j - 1
        name = argv[j].lower()
        entry = _OPCODES.get(name)
        if name == b"overflow" and remaining >= 1:
            owtype = _OVERFLOW.get(argv[j + 1].lower(), -1)
            if owtype < 0:
                raise ReplyError("ERR Invalid OVERFLOW type specified")
            j += 2
            continue
        if entry is None or remaining < entry[1]:
            raise ReplyError(SYNTAX)
        opcode = entry[0]
        signed, bits = _bitfield_type(argv[j + 1])
        offset = _bit_offset(s, argv[j + 2], bits)
        value = 0
        if opcode != _GET:
            readonly = False
            highest = max(highest, offset + bits - 1)
            arg = argv[j + 3]
            value = int(arg) if _plain_digits(arg) else parse_int(arg)
        ops.append((opcode, offset, value, signed, bits, owtype))
        j += 4 if opcode != _GET else 3
    if readonly:
        data = lookup_string(s, argv[1], read=True)
        return [_get_field(data or b"", offset, bits, signed)
                for _, offset, _, signed, bits, _ in ops]
    if readonly_command:
        raise ReplyError("ERR BITFIELD_RO only supports the GET subcommand")
    buf, dirty = _bits_for_write(s, argv[1], highest)
    replies: list[int | None] = []
    changes = 0
    for opcode, offset, value, signed, bits, owtype in ops:
        if opcode == _GET:
            replies.append(_get_field(buf, offset, bits, signed))
            continue
        reply, changed = _write_field(buf, opcode, offset, value, signed, bits, owtype)
        replies.append(reply)
        if changed or (dirty and reply is not None):
            changes += 1
    if dirty and not changes:
        # Every write refused by OVERFLOW FAIL, but the key was created or grown to hold
        # them: Redis 7.0 counts no change then and propagates nothing, so its replicas
        # miss the grown string (a divergence of Redis's own). Replicated here.
        changes = 1
    return _bitfield_done(s, argv[1], replies, changes)


def _bitfield_done(s: Session, key: bytes, replies: list[int | None], changes: int
                   ) -> list[int | None]:
    """The end of a BITFIELD that wrote: its event and dirty count, then the replies."""
    if changes:
        replied(s)  # every field's reply is added before the event
        notify(s, STRING, b"setbit", key)
    s.engine.dirty += changes
    return replies


def _write_field(buf: bytearray, opcode: int, offset: int, value: int, signed: bool,
                 bits: int, owtype: int) -> tuple[int | None, bool]:
    """One SET or INCRBY of BITFIELD on ``buf``: its reply (None when OVERFLOW FAIL
    refused it, writing nothing) and whether the field's value changed."""
    old = _get_field(buf, offset, bits, signed)
    if signed:
        if opcode == _INCRBY:
            overflow, wrapped = _signed_overflow(old, value, bits, owtype)
            new = wrapped if overflow else old + value
            reply = new
        else:
            overflow, wrapped = _signed_overflow(value, 0, bits, owtype)
            new = wrapped if overflow else value
            reply = old
    else:
        if opcode == _INCRBY:
            overflow, wrapped = _unsigned_overflow(old, value, bits, owtype)
            new = wrapped if overflow else (old + value) & _U64
            reply = new
        else:
            # The int64 SET value read as a uint64, as the C cast does.
            overflow, wrapped = _unsigned_overflow(value & _U64, 0, bits, owtype)
            new = wrapped if overflow else value & _U64
            reply = old
    if overflow and owtype == _FAIL:
        return None, False
    _set_field(buf, offset, bits, new)
    return reply, old != new


def _bitfield_one(s: Session, argv: list[bytes], opcode: int) -> list[int | None]:
    """``BITFIELD key SET|INCRBY type offset value``, one write and no OVERFLOW: the usual
    BITFIELD, without the list of operations and with the helpers' usual cases inlined (the
    same checks in the same order; the rest goes to them)."""
    known = _FIELD_TYPES.get(argv[3])
    signed, bits = known if known is not None else _bitfield_type(argv[3])
    arg = argv[4]
    if arg.isdigit() and len(arg) < 19 and (arg[0] != 0x30 or len(arg) == 1):
        offset = int(arg)
        if offset >> 3 >= s.engine.config.proto_max_bulk_len and not s.is_master:
            raise ReplyError(_BAD_OFFSET)
    else:
        offset = _bit_offset(s, arg, bits)
    arg = argv[5]
    value = int(arg) if _plain_digits(arg) else parse_int(arg)
    key = argv[1]
    size = ((offset + bits - 1) >> 3) + 1
    buf = s.db.lookup(key)
    if type(buf) is bytearray and len(buf) >= size:
        dirty = False
    else:
        buf, dirty = _writable(s, key, size, buf)
    old = _get_field(buf, offset, bits, signed)
    new = old + value if opcode == _INCRBY else value if signed else value & _U64
    if signed:
        top = (1 << (bits - 1)) - 1
        fits = bits < 64 and -top - 1 <= new <= top
    else:
        fits = 0 <= new < 1 << bits
    if fits:  # no overflow: what WRAP, SAT and FAIL agree on
        _set_field(buf, offset, bits, new)
        changed = old != new
        reply: int | None = new if opcode == _INCRBY else old
    else:
        reply, changed = _write_field(buf, opcode, offset, value, signed, bits, _WRAP)
    if not (changed or dirty):
        return [reply]
    engine = s.engine
    engine.replying = s
    if engine.notify_classes & STRING:
        engine.notify_keyspace_event(b"setbit", key, s.db.id)
    engine.dirty += 1
    return [reply]


@command("bitfield")
def bitfield(s: Session, argv: list[bytes]) -> object:
    """BITFIELD key [GET type offset] [SET type offset value] [INCRBY type offset incr]
    [OVERFLOW WRAP|SAT|FAIL] ...: replicated as sent, only when it changed something."""
    return _bitfield(s, argv, False)


@command("bitfield_ro")
def bitfield_ro(s: Session, argv: list[bytes]) -> object:
    """BITFIELD_RO key [GET type offset] ...: BITFIELD restricted to GET."""
    return _bitfield(s, argv, True)

