"""Stream commands (Redis 7.0.15's ``t_stream.c``): XADD XRANGE XREVRANGE XLEN XDEL XTRIM
XSETID XINFO, the consumer groups (XGROUP XREADGROUP XACK XPENDING XCLAIM XAUTOCLAIM) and
XREAD / XREADGROUP with BLOCK.

The value is :class:`kvrepl.store.stream.Stream`, which keeps Redis's node shape so that
approximate trimming removes what a redis-server removes. Replies, errors and the order of
argument checks follow the C code; so does propagation:

* XADD ``*`` / ``ms-*`` is propagated with the ID it generated, and ``MAXLEN|MINID ~`` as
  ``= <length | first ID>`` when it trimmed (streamRewriteApproxSpecifier /
  streamRewriteTrimArgument), XTRIM likewise;
* XREADGROUP, XCLAIM and XAUTOCLAIM are never propagated as sent: each PEL change becomes
  ``XCLAIM key group consumer 0 id TIME t RETRYCOUNT n FORCE JUSTID LASTID last``
  (streamPropagateXCLAIM), a NOACK read ``XGROUP SETID ... ENTRIESREAD`` and
  ``XGROUP CREATECONSUMER`` (streamPropagateGroupID / streamPropagateConsumerCreation);
* two writes Redis 7.0 leaves its replicas without are propagated (a replica never misses a
  write): the consumer an XREADGROUP created without claiming anything (XGROUP
  CREATECONSUMER, as redis/redis#14963 does since) and the delivery time and count a
  history read (an ID other than ``>``) gives the entries it serves (their XCLAIM).

A blocked XREAD / XREADGROUP returns :class:`Block` with the command to run again, ``$``
replaced by the ID that was last when it blocked; the re-run (``session.blocked`` set) is
``serveClientsBlockedOnStreamKey``: it serves the key that became ready only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import chain, repeat
from operator import itemgetter

from kvrepl.commands.args import LONG_MAX, parse_int, parse_range_int
from kvrepl.commands.core import Block, Session, command
from kvrepl.commands.help import help_reply, subcommand_syntax_error
from kvrepl.commands.watch import unsignalled
from kvrepl.errors import NO_SUCH_KEY, SYNTAX, ReplyError, WrongTypeError, wrong_arity
from kvrepl.notify import STREAM, notify, replied
from kvrepl.protocol.replies import (
    NULL_ARRAY,
    OK,
    DeferredArray,
    DeferredMap,
    DeferredReply,
    deferred,
    deferred_marks,
    encode,
)
from kvrepl.store.stream import (
    INVALID_ENTRIES_READ,
    LISTPACK_MAX_SIZE,
    MAX_ID,
    Stream,
    StreamConsumer,
    StreamGroup,
    StreamID,
    StreamNack,
)

INVALID_ID = "ERR Invalid stream ID specified as stream command argument"
_STRTOULL = re.compile(rb"[ \t\n\v\f\r]*([+-]?)([0-9]+)")
_UINT64_MAX = MAX_ID[0]
_XREAD_BLOCKED_DEFAULT_COUNT = 1000


# -- IDs ----------------------------------------------------------------------------------------
def _string2ull(text: bytes) -> int | None:
    """string2ull: a canonical int64 (negatives refused), else what strtoull accepts."""
    if text and (text[0] in b"-0123456789"):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is not None and b"%d" % value == text and -(1 << 63) <= value < (1 << 63):
            return value if value >= 0 else None
    match = _STRTOULL.fullmatch(text)
    if match is None:
        return None
    value = int(match[2])
    if value > _UINT64_MAX:
        return None
    return (-value) & _UINT64_MAX if match[1] == b"-" else value


def format_id(stream_id: StreamID) -> bytes:
    return b"%d-%d" % stream_id


def parse_id(arg: bytes, missing_seq: int = 0, strict: bool = False,
             auto_seq: bool = False) -> tuple[StreamID, bool]:
    """streamGenericParseIDOrReply: ``(id, seq_given)``; ``-``/``+`` unless ``strict``,
    ``<ms>-*`` when ``auto_seq`` (then seq_given is False)."""
    if len(arg) > 127 or (strict and arg in (b"-", b"+")):
        raise ReplyError(INVALID_ID)
    if arg == b"-":
        return (0, 0), True
    if arg == b"+":
        return MAX_ID, True
    ms_part, dash, seq_part = arg.partition(b"-")
    ms = _string2ull(ms_part)
    if ms is None:
        raise ReplyError(INVALID_ID)
    if not dash:
        return (ms, missing_seq), True
    if auto_seq and seq_part == b"*":
        return (ms, 0), False
    seq = _string2ull(seq_part)
    if seq is None:
        raise ReplyError(INVALID_ID)
    return (ms, seq), True


def parse_strict_id(arg: bytes, missing_seq: int = 0) -> StreamID:
    return parse_id(arg, missing_seq, strict=True)[0]


def _interval_id(arg: bytes, missing_seq: int) -> tuple[StreamID, bool]:
    """streamParseIntervalIDOrReply: ``(id, exclusive)`` for a ``(``-prefixed bound."""
    if len(arg) > 1 and arg[:1] == b"(":
        return parse_id(arg[1:], missing_seq, strict=True)[0], True
    return parse_id(arg, missing_seq)[0], False


def _incr(stream_id: StreamID) -> StreamID | None:
    """streamIncrID; None past the last possible ID."""
    ms, seq = stream_id
    if seq == _UINT64_MAX:
        return None if ms == _UINT64_MAX else (ms + 1, 0)
    return ms, seq + 1


def _decr(stream_id: StreamID) -> StreamID | None:
    ms, seq = stream_id
    if seq == 0:
        return None if ms == 0 else (ms - 1, _UINT64_MAX)
    return ms, seq - 1


def _range_bounds(start_arg: bytes, end_arg: bytes) -> tuple[StreamID, StreamID]:
    start, start_ex = _interval_id(start_arg, 0)
    if start_ex:
        start = _incr(start)
        if start is None:
            raise ReplyError("ERR invalid start ID for the interval")
    end, end_ex = _interval_id(end_arg, _UINT64_MAX)
    if end_ex:
        end = _decr(end)
        if end is None:
            raise ReplyError("ERR invalid end ID for the interval")
    return start, end




# -- lookups ------------------------------------------------------------------------------------
def _stream_or_none(value: object) -> Stream | None:
    if value is None or type(value) is Stream:
        return value
    raise WrongTypeError()


def _entry(stream_id: StreamID, fields: list[bytes]) -> list:
    return [format_id(stream_id), fields]


def _range(stream: Stream, start: StreamID, end: StreamID, count: int,
           rev: bool = False) -> DeferredReply:
    """streamReplyWithRange without a group: ``count`` 0 is no limit, the length set
    after the entries (addReplyDeferredLen). Encoded here, the
    same bytes in RESP2 and RESP3 (arrays of bulk strings): a range is most of what XRANGE
    and XREAD send. Entries of one number of fields (the usual) are encoded column by
    column through C-level ``map``s and one join, with no Python step per entry (for one
    field too: 5% fewer instructions than one format each, callgrind of XREAD of 100);
    others one format per entry."""
    ids = stream.range_ids(start, end, count, rev)
    items = stream.fields_of(ids)
    n = len(ids)
    heads = list(map(_FORMAT_ID, ids))
    width = len(items[0]) if n else 0
    if n and 1 < width < len(_COLUMN_GETTERS) and list(map(len, items)).count(width) == n:
        # per entry: *2 $<id> *<width> then its strings, each $<len> <string>
        parts = [map(_ENTRY_HEADS.__getitem__, map(len, heads)), heads,
                 repeat(_FIELDS_HEADS[width], n)]
        for column in map(list, map(map, _COLUMN_GETTERS[:width], repeat(items))):
            parts += (map(_BULK_HEADS.__getitem__, map(len, column)), column,
                      repeat(_CRLF, n))
        return DeferredReply(b"*%d\r\n" % n
                             + b"".join(chain.from_iterable(zip(*parts, strict=True))))
    out = [b"*%d\r\n" % n]
    append = out.append
    for head, fields in zip(heads, items, strict=True):
        if len(fields) == 2:  # one field: one format (the column maps cost more there)
            name, value = fields
            append(_ENTRY_OF_ONE_FIELD % (len(head), head, len(name), name, len(value), value))
            continue
        append(b"*2\r\n$%d\r\n%s\r\n*%d\r\n" % (len(head), head, len(fields)))
        for field in fields:
            append(b"$%d\r\n%s\r\n" % (len(field), field))
    return DeferredReply(b"".join(out))


_ENTRY_OF_ONE_FIELD = b"*2\r\n$%d\r\n%s\r\n*2\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"


class _Heads(dict):
    """``format % length`` by length, the short ones kept."""

    def __init__(self, form: bytes) -> None:
        super().__init__((size, form % size) for size in range(256))
        self.form = form

    def __missing__(self, size: int) -> bytes:
        return self.form % size


_FORMAT_ID = b"%d-%d".__mod__
_CRLF = b"\r\n"
_ENTRY_HEADS = _Heads(b"*2\r\n$%d\r\n")  # an entry's array and its ID's length
_BULK_HEADS = _Heads(b"$%d\r\n")
_FIELDS_HEADS = _Heads(b"\r\n*%d\r\n")  # the end of the ID, the fields' array
# column i of entries (a field or value): a row of the reply's strings, for widths up to 64
_COLUMN_GETTERS = [itemgetter(i) for i in range(64)]


def _nogroup(key: bytes, group: bytes, suffix: str = "") -> ReplyError:
    return ReplyError(f"NOGROUP No such key '{_text(key)}' or consumer group '{_text(group)}'"
                      + suffix)


def _text(arg: bytes) -> str:
    # %s of a C string: up to the first NUL.
    return arg.split(b"\0", 1)[0].decode("utf-8", "replace")


# -- XADD / XTRIM ------------------------------------------------------------------------------
@dataclass
class _TrimArgs:
    """streamAddTrimArgs."""

    stream_id: StreamID = (0, 0)
    id_given: bool = False
    seq_given: bool = True
    no_mkstream: bool = False
    strategy: bytes | None = None  # b"maxlen" / b"minid"
    arg_index: int = 0  # argv index of the count / ID, for rewriting
    approx: bool = False
    limit: int = 0
    maxlen: int = 0
    minid: StreamID = (0, 0)


def _parse_add_trim(s: Session, argv: list[bytes], xadd: bool) -> tuple[_TrimArgs, int]:
    """streamParseAddOrTrimArgsOrReply: the options and the index of XADD's ID."""
    args = _TrimArgs()
    limit_given = False
    argc = len(argv)
    i = 2
    while i < argc:
        more = argc - 1 - i
        opt = argv[i]
        low = opt.lower()
        if xadd and opt == b"*":
            break
        if low in (b"maxlen", b"minid") and more:
            if args.strategy is not None:
                raise ReplyError("ERR syntax error, MAXLEN and MINID options at the same "
                                 "time are not compatible")
            args.approx = False
            nxt = argv[i + 1]
            if more >= 2 and nxt == b"~":
                args.approx = True
                i += 1
            elif more >= 2 and nxt == b"=":
                i += 1
            if low == b"maxlen":
                args.maxlen = parse_int(argv[i + 1])
                if args.maxlen < 0:
                    raise ReplyError("ERR The MAXLEN argument must be >= 0.")
            else:
                args.minid = parse_strict_id(argv[i + 1])
            i += 1
            args.strategy = low
            args.arg_index = i
        elif low == b"limit" and more:
            args.limit = parse_int(argv[i + 1])
            if args.limit < 0:
                raise ReplyError("ERR The LIMIT argument must be >= 0.")
            limit_given = True
            i += 1
        elif xadd and low == b"nomkstream":
            args.no_mkstream = True
        elif xadd:
            args.stream_id, args.seq_given = parse_id(opt, strict=True, auto_seq=True)
            args.id_given = True
            break
        else:
            raise ReplyError(SYNTAX)
        i += 1
    if args.limit and args.strategy is None:
        raise ReplyError("ERR syntax error, LIMIT cannot be used without specifying a "
                         "trimming strategy")
    if not xadd and args.strategy is None:
        raise ReplyError("ERR syntax error, XTRIM must be called with a trimming strategy")
    if s.is_master:
        args.limit = 0  # the master rewrote '~' already
    elif limit_given:
        if not args.approx:
            raise ReplyError("ERR syntax error, LIMIT cannot be used without the special ~ "
                             "option")
    elif args.approx:
        limit = 100 * s.engine.config.stream_node_max_entries
        args.limit = 10000 if limit <= 0 else min(limit, 1000000)
    else:
        args.limit = 0
    return args, i


def _trim(stream: Stream, args: _TrimArgs) -> int:
    if args.strategy == b"maxlen":
        return stream.trim(args.maxlen, None, args.approx, args.limit)
    return stream.trim(None, args.minid, args.approx, args.limit)


def _rewrite_trim(stream: Stream, args: _TrimArgs, argv: list[bytes]) -> None:
    """streamRewriteApproxSpecifier + streamRewriteTrimArgument (on a copy of argv)."""
    argv[args.arg_index - 1] = b"="
    if args.strategy == b"maxlen":
        argv[args.arg_index] = b"%d" % len(stream)
    else:
        argv[args.arg_index] = format_id(stream.first_raw_id())


@command("xadd")
def xadd(s: Session, argv: list[bytes]) -> object:
    """XADD key [NOMKSTREAM] [MAXLEN|MINID [=|~] threshold [LIMIT count]] *|id field value ...

    ``XADD key * field value ...`` (no option: the usual form, a hot path) is done here, the
    steps of :func:`_xadd_general` for that form only, in the same order."""
    if argv[2] != b"*":
        return _xadd_general(s, argv)
    argc = len(argv)
    if not argc & 1:  # the arity (-5) is checked: fields and values must pair up
        raise wrong_arity("xadd")
    key = argv[1]
    db = s.db
    stream = db.lookup(key)
    if type(stream) is not Stream:
        if stream is not None:
            raise WrongTypeError()
        stream = Stream()
        db.add(key, stream)
    engine = s.engine
    keyspace = engine.keyspace
    now = keyspace.now_ms()
    last = stream.last_id
    last_ms, last_seq = last
    if now > last_ms:
        new_id = (now, 0)  # above ``last``, which then is not the last possible ID either
    else:
        if last == MAX_ID:
            raise ReplyError("ERR The stream has exhausted the last possible ID, unable to "
                             "add more items")
        new_id = ((last_ms, last_seq + 1) if last_seq < _UINT64_MAX
                  else _incr(last) or (0, 0))
        if new_id <= last:
            raise ReplyError("ERR The ID specified in XADD is equal or smaller than the "
                             "target stream top item")
    # A tuple of bytes: soon untracked by the cyclic GC.
    if argc == 5:  # one field, the usual: no slice, no map
        fields = (field, value) = argv[3], argv[4]
        total = len(field) + len(value)
    else:
        fields = tuple(argv[3:])
        total = sum(map(len, fields))
    if total > LISTPACK_MAX_SIZE:
        raise ReplyError("ERR Elements are too large to be stored")
    config = engine.config
    stream.append(new_id, fields, config.stream_node_max_bytes,
                  config.stream_node_max_entries, total)
    reply = b"%d-%d" % new_id
    engine.dirty += 1
    engine.replying = s  # replied(s), inlined
    if engine.notify_classes & STREAM:
        engine.notify_keyspace_event(b"xadd", key, db.id)
    if engine.propagate_listeners:  # replicas get the ID chosen
        propagated = list(argv)
        propagated[2] = reply
        engine.rewrite(propagated)
    if keyspace.blocked_keys:
        keyspace.signal_ready(db.id, key)
    return reply


_JOINED = b"".join
_PAIR = itemgetter(3, 4)  # XADD key * field value: its one field and value
_FIELDS = itemgetter(slice(3, None))  # XADD key * field value ...: its fields and values
_SEQUENCES = [b"%d" % seq for seq in range(4096)]  # the sequence numbers a run mostly has


def xadd_run(s: Session, key: bytes, run: list[list[bytes]], same: bool = False
             ) -> list[bytes]:
    """``XADD key * field value ...`` requests to one key that follow each other in a read
    (``run``: each of that form, the arity checked), added together: what the handler
    does for each, in the same order, with one clock read and one node append for the run
    (the IDs ``ms-seq``, ``ms-(seq+1)``...: those of requests run within one millisecond).
    Returns the IDs (as replied) of the first requests it added, ``len(run)`` of them or
    fewer; none when the handler must run the first itself: no stream yet, a value of
    another type, the last ID near 64 bits' end, elements too large. The caller does
    ``call()``'s part (propagation as ``XADD key <id> ...``, commandstats, the memory
    estimate). ``same``: the requests are all equal (``redis-benchmark``'s), so the
    entries share one field tuple, as values of a stream are never changed in place."""
    db = s.db
    stream = db.lookup(key)
    if type(stream) is not Stream:
        return []
    engine = s.engine
    now = engine.keyspace.now_ms()
    last_ms, last_seq = stream.last_id
    n = len(run)
    if now > last_ms:
        ms, seq = now, 0
    elif last_seq < _UINT64_MAX - n:
        ms, seq = last_ms, last_seq + 1
    else:
        return []  # an ID's carry or the last possible ID: the handler, one by one
    totals: list[int] | None = None  # each entry's length in bytes
    if same:
        fields = tuple(run[0][3:])
        items = [fields] * n
        totals = [sum(map(len, fields))] * n
    elif sum(map(len, run)) == 5 * n:  # one field each, the usual
        items = list(map(_PAIR, run))
    else:
        items = list(map(tuple, map(_FIELDS, run)))
    if totals is None:  # each entry's length in bytes: one join each costs less than a len
        totals = list(map(len, map(_JOINED, items)))
    if max(totals) > LISTPACK_MAX_SIZE:  # the handler's error, after those before
        n = next(i for i, total in enumerate(totals) if total > LISTPACK_MAX_SIZE)
        if not n:
            return []
        del items[n:], totals[n:]
    config = engine.config
    stream.append_run(ms, seq, items, totals, config.stream_node_max_bytes,
                      config.stream_node_max_entries)
    engine.dirty += n
    engine.replying = s
    if engine.notify_classes & STREAM:
        for _ in range(n):
            engine.notify_keyspace_event(b"xadd", key, db.id)
    keyspace = engine.keyspace
    if keyspace.blocked_keys:
        keyspace.signal_ready(db.id, key)
    prefix = b"%d-" % ms
    if seq + n <= len(_SEQUENCES):
        return list(map(prefix.__add__, _SEQUENCES[seq:seq + n]))
    return [prefix + b"%d" % number for number in range(seq, seq + n)]


def _xadd_general(s: Session, argv: list[bytes]) -> object:
    """XADD with options or an explicit ID."""
    args, idpos = _parse_add_trim(s, argv, True)
    field_pos = idpos + 1
    nfields = len(argv) - field_pos
    if nfields < 2 or nfields % 2:
        raise wrong_arity("xadd")
    if args.id_given and args.seq_given and args.stream_id == (0, 0):
        raise ReplyError("ERR The ID specified in XADD must be greater than 0-0")
    key = argv[1]
    db = s.db
    stream = db.lookup(key)
    if type(stream) is not Stream:
        if stream is not None:
            raise WrongTypeError()
        if args.no_mkstream:
            return None
        stream = Stream()
        db.add(key, stream)
    last = stream.last_id
    if last == MAX_ID:
        raise ReplyError("ERR The stream has exhausted the last possible ID, unable to add "
                         "more items")
    if not args.id_given:
        now = s.engine.keyspace.now_ms()
        last_ms, last_seq = last
        new_id = ((now, 0) if now > last_ms else (last_ms, last_seq + 1)
                  if last_seq < _UINT64_MAX else _incr(last) or (0, 0))
    elif args.seq_given:
        new_id = args.stream_id
    elif last[0] == args.stream_id[0]:
        if last[1] == _UINT64_MAX:
            raise ReplyError("ERR Elements are too large to be stored")
        new_id = (last[0], last[1] + 1)
    else:
        new_id = args.stream_id
    if new_id <= last:
        raise ReplyError("ERR The ID specified in XADD is equal or smaller than the target "
                         "stream top item")
    fields = tuple(argv[field_pos:])  # a tuple of bytes: soon untracked by the cyclic GC
    total = sum(map(len, fields))
    if total > LISTPACK_MAX_SIZE:
        raise ReplyError("ERR Elements are too large to be stored")
    config = s.engine.config
    stream.append(new_id, fields, config.stream_node_max_bytes,
                  config.stream_node_max_entries, total)
    reply = b"%d-%d" % new_id
    s.engine.dirty += 1
    replied(s)
    notify(s, STREAM, b"xadd", key)
    if args.strategy is not None and _trim(stream, args):
        notify(s, STREAM, b"xtrim", key)
    # What replicas get (the ID chosen, the exact trim) matters only to someone listening.
    if s.engine.propagate_listeners and (args.approx or not args.id_given
                                         or not args.seq_given):
        propagated = list(argv)
        if args.approx:
            _rewrite_trim(stream, args, propagated)
        if not args.id_given or not args.seq_given:
            propagated[idpos] = reply
        s.engine.rewrite(propagated)
    keyspace = s.engine.keyspace
    if keyspace.blocked_keys:
        keyspace.signal_ready(db.id, key)
    return reply


@command("xtrim")
def xtrim(s: Session, argv: list[bytes]) -> int:
    """XTRIM key MAXLEN|MINID [=|~] threshold [LIMIT count]"""
    args, _ = _parse_add_trim(s, argv, False)
    stream = _stream_or_none(s.db.lookup(argv[1]))
    if stream is None:
        return 0
    deleted = _trim(stream, args)
    if deleted:
        notify(s, STREAM, b"xtrim", argv[1])
        if args.approx:
            propagated = list(argv)
            _rewrite_trim(stream, args, propagated)
            s.engine.rewrite(propagated)
        s.engine.dirty += deleted
    return deleted


# -- reading ------------------------------------------------------------------------------------
def _range_command(s: Session, argv: list[bytes], rev: bool) -> object:
    start_arg, end_arg = (argv[3], argv[2]) if rev else (argv[2], argv[3])
    start, end = _range_bounds(start_arg, end_arg)
    count = -1
    j = 4
    while j < len(argv):
        if argv[j].lower() == b"count" and j + 1 < len(argv):
            count = max(parse_int(argv[j + 1]), 0)
            j += 2
        else:
            raise ReplyError(SYNTAX)
    stream = _stream_or_none(s.db.lookup(argv[1]))
    if stream is None:
        return []
    if count == 0:
        return NULL_ARRAY
    return _range(stream, start, end, max(count, 0), rev)


@command("xrange")
def xrange(s: Session, argv: list[bytes]) -> object:
    """XRANGE key start end [COUNT count]"""
    return _range_command(s, argv, False)


@command("xrevrange")
def xrevrange(s: Session, argv: list[bytes]) -> object:
    """XREVRANGE key end start [COUNT count]"""
    return _range_command(s, argv, True)


@command("xlen")
def xlen(s: Session, argv: list[bytes]) -> int:
    """XLEN key"""
    stream = _stream_or_none(s.db.lookup(argv[1]))
    return 0 if stream is None else len(stream)


@command("xdel")
def xdel(s: Session, argv: list[bytes]) -> int:
    """XDEL key id [id ...]"""
    stream = _stream_or_none(s.db.lookup(argv[1]))
    if stream is None:
        return 0
    ids = [parse_strict_id(arg) for arg in argv[2:]]
    deleted = 0
    first_entry = False
    for stream_id in ids:
        if stream.delete(stream_id):
            if stream_id == stream.first_id:
                first_entry = True
            if stream_id > stream.max_deleted_id:
                stream.max_deleted_id = stream_id
            deleted += 1
    if deleted:
        if not len(stream):
            stream.first_id = (0, 0)
        elif first_entry:
            stream.first_id = stream.first_entry_id()
        notify(s, STREAM, b"xdel", argv[1])
        s.engine.dirty += deleted
    return deleted


@command("xsetid")
@unsignalled
def xsetid(s: Session, argv: list[bytes]) -> object:
    """XSETID key last-id [ENTRIESADDED entries-added] [MAXDELETEDID max-deleted-id]"""
    new_id = parse_strict_id(argv[2])
    entries_added = -1
    max_deleted = (0, 0)
    i = 3
    while i < len(argv):
        more = len(argv) - 1 - i
        opt = argv[i].lower()
        if opt == b"entriesadded" and more:
            entries_added = parse_int(argv[i + 1])
            if entries_added < 0:
                raise ReplyError("ERR entries_added must be positive")
        elif opt == b"maxdeletedid" and more:
            max_deleted = parse_strict_id(argv[i + 1])
            if new_id < max_deleted:
                raise ReplyError("ERR The ID specified in XSETID is smaller than the provided "
                                 "max_deleted_entry_id")
        else:
            raise ReplyError(SYNTAX)
        i += 2
    stream = _stream_or_none(s.db.lookup(argv[1]))
    if stream is None:
        raise ReplyError(NO_SUCH_KEY)
    if len(stream):
        if new_id < stream.last_entry_id():
            raise ReplyError("ERR The ID specified in XSETID is smaller than the target "
                             "stream top item")
        if entries_added != -1 and len(stream) > entries_added:
            raise ReplyError("ERR The entries_added specified in XSETID is smaller than the "
                             "target stream length")
    stream.last_id = new_id
    if entries_added != -1:
        stream.entries_added = entries_added
    if max_deleted != (0, 0):
        stream.max_deleted_id = max_deleted
    s.engine.dirty += 1
    replied(s)
    notify(s, STREAM, b"xsetid", argv[1])
    return OK


# -- consumer group internals ---------------------------------------------------------------------
def _xclaim_argv(key: bytes, groupname: bytes, group: StreamGroup, id_arg: bytes,
                 nack: StreamNack) -> list[bytes]:
    """streamPropagateXCLAIM."""
    return [b"XCLAIM", key, groupname, nack.consumer, b"0", id_arg, b"TIME",
            b"%d" % nack.delivery_time, b"RETRYCOUNT", b"%d" % nack.delivery_count, b"FORCE",
            b"JUSTID", b"LASTID", format_id(group.last_id)]


def _setid_argv(key: bytes, groupname: bytes, group: StreamGroup) -> list[bytes]:
    """streamPropagateGroupID."""
    return [b"XGROUP", b"SETID", key, groupname, format_id(group.last_id), b"ENTRIESREAD",
            b"%d" % group.entries_read]


def _lookup_consumer(s: Session, group: StreamGroup, name: bytes,
                     refresh: bool = True) -> StreamConsumer | None:
    consumer = group.consumers.get(name)
    if consumer is not None and refresh:
        consumer.seen_time = s.engine.keyspace.now_ms()
    return consumer


def _create_consumer(s: Session, group: StreamGroup, name: bytes, key: bytes
                     ) -> StreamConsumer:
    """streamCreateConsumer (with its ``xgroup-createconsumer`` event, on ``key``)."""
    consumer = StreamConsumer(name, s.engine.keyspace.now_ms())
    group.consumers[name] = consumer
    s.engine.dirty += 1
    notify(s, STREAM, b"xgroup-createconsumer", key)
    return consumer


def _consumer(s: Session, group: StreamGroup, name: bytes, key: bytes) -> StreamConsumer:
    consumer = _lookup_consumer(s, group, name)
    return consumer if consumer is not None else _create_consumer(s, group, name, key)


def _set_owner(group: StreamGroup, stream_id: StreamID, nack: StreamNack,
               consumer: StreamConsumer) -> None:
    if nack.consumer != consumer.name:
        if nack.consumer is not None:
            group.consumers[nack.consumer].pending.discard(stream_id)
        consumer.pending.add(stream_id)
        nack.consumer = consumer.name


def _deliver(s: Session, stream: Stream, start: StreamID, count: int, group: StreamGroup,
             consumer: StreamConsumer, noack: bool, key: bytes, groupname: bytes,
             props: list[list[bytes]]) -> DeferredArray:
    """streamReplyWithRange with a group: new entries from ``start``, PEL and propagation
    (the length set after the entries)."""
    out = DeferredArray()
    now = s.engine.keyspace.now_ms()
    advanced = False
    ids = stream.range_ids(start, MAX_ID, count)
    for stream_id, fields in zip(ids, stream.fields_of(ids), strict=True):
        if stream_id > group.last_id:
            if group.entries_read != INVALID_ENTRIES_READ and not stream.has_tombstones(
                    stream_id):
                group.entries_read += 1
            elif stream.entries_added:
                group.entries_read = stream.estimate_entries_read(stream_id)
            group.last_id = stream_id
            advanced = True
        out.append([format_id(stream_id), fields])
        if not noack:
            nack = group.pending.get(stream_id)
            if nack is None:
                nack = group.pending[stream_id] = StreamNack(now, 1, consumer.name)
                consumer.pending.add(stream_id)
            else:
                if nack.consumer is not None:
                    group.consumers[nack.consumer].pending.discard(stream_id)
                nack.consumer = None
                _set_owner(group, stream_id, nack, consumer)
                nack.delivery_time = now
                nack.delivery_count = 1
            props.append(_xclaim_argv(key, groupname, group, format_id(stream_id), nack))
        if count and len(out) == count:
            break
    if noack and advanced:
        props.append(_setid_argv(key, groupname, group))
    return out


def _history(s: Session, stream: Stream, start: StreamID, count: int, group: StreamGroup,
             consumer: StreamConsumer, key: bytes, groupname: bytes,
             props: list[list[bytes]]) -> DeferredArray:
    """streamReplyWithRangeFromConsumerPEL: the consumer's own pending entries. Each one
    served gets a new delivery time and count, which Redis 7.0 does not propagate (its
    replicas keep the old ones: XPENDING differs there); kvrepl propagates them as the
    XCLAIM that carries a PEL entry (a replica never misses a write)."""
    out = DeferredArray()
    now = s.engine.keyspace.now_ms()
    for stream_id in consumer.pending.irange(start, None):
        if count and len(out) >= count:
            break
        fields = stream.get(stream_id)
        if fields is None:
            out.append([format_id(stream_id), NULL_ARRAY])
        else:
            out.append([format_id(stream_id), fields])
            nack = group.pending[stream_id]
            nack.delivery_time = now
            nack.delivery_count += 1
            props.append(_xclaim_argv(key, groupname, group, format_id(stream_id), nack))
    return out


def _read_consumer(s: Session, group: StreamGroup, key: bytes, args: _ReadArgs,
                   props: list[list[bytes]]) -> tuple[StreamConsumer, int | None]:
    """XREADGROUP's consumer, created when the group lacks it (a NOACK read propagates that
    at once, ahead of its SETID, as Redis 7.0 does); with how many rewrites ``props`` held
    then (None when the consumer existed), for :func:`_propagate_created`."""
    consumer = _lookup_consumer(s, group, args.consumer)
    if consumer is not None:
        return consumer, None
    consumer = _create_consumer(s, group, args.consumer, key)
    if args.noack:
        props.append([b"XGROUP", b"CREATECONSUMER", key, args.group, args.consumer])
    return consumer, len(props)


def _propagate_created(key: bytes, args: _ReadArgs, props: list[list[bytes]],
                       created_at: int | None) -> None:
    """An XREADGROUP that created its consumer and propagated no XCLAIM for this key (a
    history read, a blocked read woken by an XADD that trimmed its own entry) propagates
    ``XGROUP CREATECONSUMER``: Redis 7.0 propagates nothing then and its replicas lack the
    consumer (fixed upstream by redis/redis#14963, which propagates it the same way)."""
    if created_at is not None and not args.noack and len(props) == created_at:
        props.append([b"XGROUP", b"CREATECONSUMER", key, args.group, args.consumer])


# -- XREAD / XREADGROUP ---------------------------------------------------------------------------
@dataclass
class _ReadArgs:
    timeout_ms: int = -1
    count: int = 0
    streams_at: int = 0
    nstreams: int = 0
    group: bytes | None = None
    consumer: bytes | None = None
    noack: bool = False


def _parse_read(argv: list[bytes], xreadgroup: bool, from_script: bool = False) -> _ReadArgs:
    args = _ReadArgs()
    argc = len(argv)
    i = 1
    while i < argc:
        more = argc - i - 1
        opt = argv[i].lower()
        if opt == b"block" and more:
            if from_script:  # Redis refuses BLOCK from scripts outright
                raise ReplyError(f"ERR {argv[0].decode('utf-8', 'replace')} command is not "
                                 "allowed with BLOCK option from scripts")
            i += 1
            args.timeout_ms = parse_int(argv[i], "ERR timeout is not an integer or out of range")
            if args.timeout_ms < 0:
                raise ReplyError("ERR timeout is negative")
        elif opt == b"count" and more:
            i += 1
            args.count = max(parse_int(argv[i]), 0)
        elif opt == b"streams" and more:
            args.streams_at = i + 1
            rest = argc - args.streams_at
            if rest % 2:
                raise ReplyError("ERR Unbalanced XREAD list of streams: for each stream key an "
                                 "ID or '$' must be specified.")
            args.nstreams = rest // 2
            break
        elif opt == b"group" and more >= 2:
            if not xreadgroup:
                raise ReplyError("ERR The GROUP option is only supported by XREADGROUP. You "
                                 "called XREAD instead.")
            args.group, args.consumer = argv[i + 1], argv[i + 2]
            i += 2
        elif opt == b"noack":
            if not xreadgroup:
                raise ReplyError("ERR The NOACK option is only supported by XREADGROUP. You "
                                 "called XREAD instead.")
            args.noack = True
        else:
            raise ReplyError(SYNTAX)
        i += 1
    if not args.streams_at:
        raise ReplyError(SYNTAX)
    if xreadgroup and args.group is None:
        raise ReplyError("ERR Missing GROUP option for XREADGROUP")
    return args


def _lookup_read(s: Session, key: bytes) -> object:
    """lookupKeyRead: counted in keyspace_hits/misses even though XREADGROUP writes."""
    return s.db.lookup_read(key)


def _read_reply(s: Session, served: list[tuple[bytes, object]],
                blocked: bool = False) -> object:
    """XREAD's reply: its length set after the streams served, unless it is a blocked
    client's (serveClientsBlockedOnStreamKey: one stream, its length known)."""
    if s.resp3:
        return dict(served) if blocked else DeferredMap(served)
    pairs = [[key, items] for key, items in served]
    return pairs if blocked else DeferredArray(pairs)


def _xread(s: Session, argv: list[bytes], xreadgroup: bool) -> object:
    args = _parse_read(argv, xreadgroup, s.kind == "lua")
    if s.blocked is not None:
        return _serve_blocked(s, argv, args)
    first, n = args.streams_at, args.nstreams
    keys = argv[first:first + n]
    ids: list[StreamID] = []
    groups: list[StreamGroup | None] = []
    resolved = list(argv)
    for j, key in enumerate(keys):
        arg = argv[first + n + j]
        stream = _stream_or_none(_lookup_read(s, key))
        group = None
        if args.group is not None:
            group = None if stream is None else stream.groups.get(args.group)
            if group is None:
                raise _nogroup(key, args.group, " in XREADGROUP with GROUP option")
        groups.append(group)
        if arg == b"$":
            if xreadgroup:
                raise ReplyError(
                    "ERR The $ ID is meaningless in the context of XREADGROUP: you want to "
                    "read the history of this consumer by specifying a proper ID, or use the "
                    "> ID to get new messages. The $ ID would just return an empty result set.")
            ids.append((0, 0) if stream is None else stream.last_id)
            resolved[first + n + j] = format_id(ids[-1])
        elif arg == b">":
            if not xreadgroup:
                raise ReplyError("ERR The > ID can be specified only when calling XREADGROUP "
                                 "using the GROUP <group> <consumer> option.")
            ids.append(MAX_ID)
        else:
            ids.append(parse_strict_id(arg))
    served: list[tuple[bytes, list]] = []
    props: list[list[bytes]] = []
    for j, key in enumerate(keys):
        stream = _lookup_read(s, key)
        if stream is None:
            continue
        gt = ids[j]
        group = groups[j]
        history = False
        if group is not None:
            if gt != MAX_ID:
                history = True
            elif len(stream) and stream.last_entry_id() > group.last_id:
                gt = group.last_id
            else:
                continue
        elif not len(stream) or stream.last_entry_id() <= gt:
            continue
        start = _incr(gt) or (0, 0)
        if group is None:
            served.append((key, _range(stream, start, MAX_ID, args.count)))
            continue
        consumer, created_at = _read_consumer(s, group, key, args, props)
        if history:
            items = _history(s, stream, start, args.count, group, consumer, key, args.group,
                             props)
        else:
            items = _deliver(s, stream, start, args.count, group, consumer, args.noack, key,
                             args.group, props)
        _propagate_created(key, args, props, created_at)
        served.append((key, items))
        s.engine.dirty += 1
    if xreadgroup:
        s.engine.rewrite(*props)
    if served:
        return _read_reply(s, served)
    if args.timeout_ms != -1:
        if s.in_exec or s.is_master:
            return NULL_ARRAY
        return Block(keys=list(keys), timeout=args.timeout_ms / 1000,
                     timeout_reply=NULL_ARRAY, argv=resolved, wake_on_delete=xreadgroup)
    return NULL_ARRAY


def _serve_blocked(s: Session, argv: list[bytes], args: _ReadArgs) -> object:
    """serveClientsBlockedOnStreamKey for one waiter and the key that became ready (or,
    for XREADGROUP, unblockDeletedStreamReadgroupClients when it is gone)."""
    key = s.ready_key
    first, n = args.streams_at, args.nstreams
    keys = argv[first:first + n]
    block = Block(keys=list(keys), timeout=0, timeout_reply=NULL_ARRAY, argv=argv,
                  wake_on_delete=args.group is not None)
    if key is None or key not in keys:
        return block
    value = s.db.find(key)
    if type(value) is not Stream:
        if args.group is not None:
            raise ReplyError("UNBLOCKED the stream key no longer exists")
        return block
    stream: Stream = value
    group = None
    if args.group is not None:
        group = stream.groups.get(args.group)
        if group is None:
            raise ReplyError("NOGROUP the consumer group this client was blocked on no "
                             "longer exists")
        gt = group.last_id
    else:
        gt = parse_strict_id(argv[first + n + keys.index(key)])
    if not stream.last_id > gt:
        return block
    start = _incr(gt) or (0, 0)
    count = args.count or _XREAD_BLOCKED_DEFAULT_COUNT
    if group is None:
        items = _range(stream, start, MAX_ID, count)
    else:
        props: list[list[bytes]] = []
        consumer, created_at = _read_consumer(s, group, key, args, props)
        items = _deliver(s, stream, start, count, group, consumer, args.noack, key,
                         args.group, props)
        _propagate_created(key, args, props, created_at)
        s.engine.dirty += 1
        s.engine.rewrite(*props)
    return _read_reply(s, [(key, items)], blocked=True)


@command("xread")
def xread(s: Session, argv: list[bytes]) -> object:
    """XREAD [COUNT count] [BLOCK milliseconds] STREAMS key [key ...] id [id ...]"""
    return _xread(s, argv, False)


@command("xreadgroup")
@unsignalled
def xreadgroup(s: Session, argv: list[bytes]) -> object:
    """XREADGROUP GROUP group consumer [COUNT count] [BLOCK ms] [NOACK] STREAMS key ... id ..."""
    return _xread(s, argv, True)


# -- XGROUP ---------------------------------------------------------------------------------------
_XGROUP_HELP = [
    "CREATE <key> <groupname> <id|$> [option]",
    "    Create a new consumer group. Options are:",
    "    * MKSTREAM",
    "      Create the empty stream if it does not exist.",
    "    * ENTRIESREAD entries_read",
    "      Set the group's entries_read counter (internal use).",
    "CREATECONSUMER <key> <groupname> <consumer>",
    "    Create a new consumer in the specified group.",
    "DELCONSUMER <key> <groupname> <consumer>",
    "    Remove the specified consumer.",
    "DESTROY <key> <groupname>",
    "    Remove the specified group.",
    "SETID <key> <groupname> <id|$> [ENTRIESREAD entries_read]",
    "    Set the current group ID and entries_read counter.",
]


def _xgroup_prelude(s: Session, argv: list[bytes]
                    ) -> tuple[Stream | None, StreamGroup | None, bool, int]:
    """The part of xgroupCommand before the dispatch: options, key, group checks."""
    sub = argv[1].lower()
    create, setid = sub == b"create", sub == b"setid"
    mkstream = False
    entries_read = INVALID_ENTRIES_READ
    i = 5
    while i < len(argv):
        opt = argv[i].lower()
        if create and opt == b"mkstream":
            mkstream = True
            i += 1
        elif (create or setid) and opt == b"entriesread" and i + 1 < len(argv):
            entries_read = parse_int(argv[i + 1])
            if entries_read < 0 and entries_read != INVALID_ENTRIES_READ:
                raise ReplyError("ERR value for ENTRIESREAD must be positive or -1")
            i += 2
        else:
            raise subcommand_syntax_error(argv)
    stream = _stream_or_none(s.db.lookup(argv[2]))
    group = None
    if not mkstream:
        if stream is None:
            raise ReplyError(
                "ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you "
                "may want to use the MKSTREAM option to create an empty stream automatically.")
        group = stream.groups.get(argv[3])
        if group is None and sub in (b"setid", b"createconsumer", b"delconsumer"):
            raise ReplyError(f"NOGROUP No such consumer group '{_text(argv[3])}' for key name "
                             f"'{_text(argv[2])}'")
    return stream, group, mkstream, entries_read


@command("xgroup|help")
def xgroup_help(s: Session, argv: list[bytes]) -> object:
    """XGROUP HELP"""
    return help_reply(argv, _XGROUP_HELP)


@command("xgroup|create")
def xgroup_create(s: Session, argv: list[bytes]) -> object:
    """XGROUP CREATE key group id|$ [MKSTREAM] [ENTRIESREAD n]"""
    stream, _, _, entries_read = _xgroup_prelude(s, argv)
    if len(argv) > 8:
        raise subcommand_syntax_error(argv)
    if argv[4] == b"$":
        group_id = (0, 0) if stream is None else stream.last_id
    else:
        group_id = parse_strict_id(argv[4])
    created = stream is None
    if created:
        stream = Stream()
        s.db.add(argv[2], stream)
    name = argv[3]
    if name in stream.groups:
        raise ReplyError("BUSYGROUP Consumer Group name already exists")
    stream.groups[name] = StreamGroup(name, group_id, entries_read)
    # (see watch.unsignalled: only the stream MKSTREAM creates is signalled)
    s.engine.watches.changed_only(s.db, *([argv[2]] if created else []))
    s.engine.dirty += 1
    replied(s)
    notify(s, STREAM, b"xgroup-create", argv[2])
    return OK


@command("xgroup|setid")
@unsignalled
def xgroup_setid(s: Session, argv: list[bytes]) -> object:
    """XGROUP SETID key group id|$ [ENTRIESREAD n]"""
    stream, group, _, entries_read = _xgroup_prelude(s, argv)
    if len(argv) not in (5, 7):
        raise subcommand_syntax_error(argv)
    if argv[4] == b"$":
        group_id = stream.last_id
    else:
        group_id = parse_id(argv[4])[0]
    group.last_id = group_id
    group.entries_read = entries_read
    s.engine.dirty += 1
    replied(s)
    notify(s, STREAM, b"xgroup-setid", argv[2])
    return OK


@command("xgroup|destroy")
@unsignalled
def xgroup_destroy(s: Session, argv: list[bytes]) -> int:
    """XGROUP DESTROY key group"""
    stream, group, _, _ = _xgroup_prelude(s, argv)
    if group is None:
        return 0
    del stream.groups[argv[3]]
    s.engine.dirty += 1
    replied(s)
    notify(s, STREAM, b"xgroup-destroy", argv[2])
    s.engine.keyspace.signal_ready(s.db.id, argv[2])  # XREADGROUP waiters get -NOGROUP
    return 1


@command("xgroup|createconsumer")
@unsignalled
def xgroup_createconsumer(s: Session, argv: list[bytes]) -> int:
    """XGROUP CREATECONSUMER key group consumer"""
    _, group, _, _ = _xgroup_prelude(s, argv)
    if argv[4] in group.consumers:
        return 0
    _create_consumer(s, group, argv[4], argv[2])
    return 1


@command("xgroup|delconsumer")
@unsignalled
def xgroup_delconsumer(s: Session, argv: list[bytes]) -> int:
    """XGROUP DELCONSUMER key group consumer"""
    _, group, _, _ = _xgroup_prelude(s, argv)
    consumer = group.consumers.pop(argv[4], None)
    if consumer is None:
        return 0
    for stream_id in consumer.pending:
        del group.pending[stream_id]
    s.engine.dirty += 1
    notify(s, STREAM, b"xgroup-delconsumer", argv[2])
    return len(consumer.pending)


# -- XACK / XPENDING / XCLAIM / XAUTOCLAIM -------------------------------------------------------
def _group_of(s: Session, key: bytes, groupname: bytes) -> tuple[Stream | None,
                                                                 StreamGroup | None]:
    stream = _stream_or_none(_lookup_read(s, key))
    if stream is None:
        return None, None
    return stream, stream.groups.get(groupname)


@command("xack")
@unsignalled
def xack(s: Session, argv: list[bytes]) -> int:
    """XACK key group id [id ...]"""
    _, group = _group_of(s, argv[1], argv[2])
    if group is None:
        return 0
    ids = [parse_strict_id(arg) for arg in argv[3:]]
    acknowledged = 0
    for stream_id in ids:
        nack = group.pending.pop(stream_id, None)
        if nack is not None:
            group.consumers[nack.consumer].pending.discard(stream_id)
            acknowledged += 1
            s.engine.dirty += 1
    return acknowledged


@command("xpending")
def xpending(s: Session, argv: list[bytes]) -> object:
    """XPENDING key group [[IDLE min-idle-time] start end count [consumer]]"""
    argc = len(argv)
    if argc != 3 and (argc < 6 or argc > 9):
        raise ReplyError(SYNTAX)
    consumer_name = None
    min_idle = 0
    if argc >= 6:
        at = 3
        if argv[3].lower() == b"idle":
            min_idle = parse_int(argv[4])
            if argc < 8:
                raise ReplyError(SYNTAX)
            at += 2
        count = max(parse_int(argv[at + 2]), 0)
        start, end = _range_bounds(argv[at], argv[at + 1])
        if at + 3 < argc:
            consumer_name = argv[at + 3]
    stream = _stream_or_none(_lookup_read(s, argv[1]))
    group = None if stream is None else stream.groups.get(argv[2])
    if group is None:
        raise _nogroup(argv[1], argv[2])
    pel = group.pending
    if argc == 3:
        if not pel:
            return [0, None, None, NULL_ARRAY]
        owners = DeferredArray([name, b"%d" % len(c.pending)]
                               for name, c in sorted(group.consumers.items()) if c.pending)
        return [len(pel), format_id(pel.peekitem(0)[0]), format_id(pel.peekitem(-1)[0]),
                owners]
    if consumer_name is not None:
        consumer = group.consumers.get(consumer_name)
        if consumer is None:
            return []
        ids = consumer.pending.irange(start, end)
    else:
        ids = pel.irange(start, end)
    now = s.engine.keyspace.now_ms()
    out = DeferredArray()
    for stream_id in ids:
        if not count:
            break
        nack = pel[stream_id]
        if min_idle and now - nack.delivery_time < min_idle:
            continue
        count -= 1
        out.append([format_id(stream_id), nack.consumer, max(now - nack.delivery_time, 0),
                    nack.delivery_count])
    return out


@command("xclaim")
@unsignalled
def xclaim(s: Session, argv: list[bytes]) -> object:
    """XCLAIM key group consumer min-idle-time id [id ...] [IDLE ms] [TIME unix-ms]
    [RETRYCOUNT count] [FORCE] [JUSTID] [LASTID lastid]"""
    key, groupname = argv[1], argv[2]
    stream, group = _group_of(s, key, groupname)
    if group is None:
        raise _nogroup(key, groupname)
    min_idle = max(parse_int(argv[4], "ERR Invalid min-idle-time argument for XCLAIM"), 0)
    ids: list[StreamID] = []
    j = 5
    while j < len(argv):
        try:
            ids.append(parse_strict_id(argv[j]))
        except ReplyError:
            break
        j += 1
    last_id_arg = j
    now = s.engine.keyspace.now_ms()
    retrycount = -1
    delivery = -1
    force = justid = False
    last_id = (0, 0)
    while j < len(argv):
        more = len(argv) - 1 - j
        opt = argv[j].lower()
        if opt == b"force":
            force = True
        elif opt == b"justid":
            justid = True
        elif opt == b"idle" and more:
            j += 1
            delivery = now - parse_int(argv[j], "ERR Invalid IDLE option argument for XCLAIM")
        elif opt == b"time" and more:
            j += 1
            delivery = parse_int(argv[j], "ERR Invalid TIME option argument for XCLAIM")
        elif opt == b"retrycount" and more:
            j += 1
            retrycount = parse_int(argv[j], "ERR Invalid RETRYCOUNT option argument for XCLAIM")
        elif opt == b"lastid" and more:
            j += 1
            last_id = parse_strict_id(argv[j])
        else:
            raise ReplyError(f"ERR Unrecognized XCLAIM option '{_text(argv[j])}'")
        j += 1
    propagate_last_id = False
    if last_id > group.last_id:
        group.last_id = last_id
        propagate_last_id = True
    if delivery == -1 or delivery < 0 or delivery > now:
        delivery = now
    props: list[list[bytes]] = []
    out = DeferredArray()
    consumer = None
    name = argv[3]
    for index in range(5, last_id_arg):
        stream_id = ids[index - 5]
        nack = group.pending.get(stream_id)
        if stream.get(stream_id) is None:
            if nack is not None:
                props.append(_xclaim_argv(key, groupname, group, argv[index], nack))
                propagate_last_id = False
                s.engine.dirty += 1
                del group.pending[stream_id]
                group.consumers[nack.consumer].pending.discard(stream_id)
            continue
        if force and nack is None:
            nack = group.pending[stream_id] = StreamNack(now, 1, None)  # streamCreateNACK
        if nack is None:
            continue
        if nack.consumer is not None and min_idle and now - nack.delivery_time < min_idle:
            continue
        if consumer is None:
            consumer = _consumer(s, group, name, argv[1])
        nack.delivery_time = delivery
        if retrycount >= 0:
            nack.delivery_count = retrycount
        elif not justid:
            nack.delivery_count += 1
        _set_owner(group, stream_id, nack, consumer)
        out.append(format_id(stream_id) if justid else _entry(stream_id,
                                                              stream.get(stream_id)))
        props.append(_xclaim_argv(key, groupname, group, argv[index], nack))
        propagate_last_id = False
        s.engine.dirty += 1
    if propagate_last_id:
        props.append(_setid_argv(key, groupname, group))
        s.engine.dirty += 1
    s.engine.rewrite(*props)
    return out


@command("xautoclaim")
@unsignalled
def xautoclaim(s: Session, argv: list[bytes]) -> object:
    """XAUTOCLAIM key group consumer min-idle-time start [COUNT count] [JUSTID]"""
    key, groupname = argv[1], argv[2]
    # looked up before the arguments are read, as xautoclaimCommand does: a miss fires
    # keymiss, an expired key goes, even when an argument is then refused
    found = _lookup_read(s, key)
    min_idle = max(parse_int(argv[4], "ERR Invalid min-idle-time argument for XAUTOCLAIM"), 0)
    start, start_ex = _interval_id(argv[5], 0)
    if start_ex:
        start = _incr(start)
        if start is None:
            raise ReplyError("ERR invalid start ID for the interval")
    count = 100
    justid = False
    j = 6
    while j < len(argv):
        more = len(argv) - 1 - j
        opt = argv[j].lower()
        if opt == b"count" and more:
            count = parse_range_int(argv[j + 1], 1, LONG_MAX // 16, "ERR COUNT must be > 0")
            j += 1
        elif opt == b"justid":
            justid = True
        else:
            raise ReplyError(SYNTAX)
        j += 1
    stream = _stream_or_none(found)
    group = None if stream is None else stream.groups.get(groupname)
    if group is None:
        raise _nogroup(key, groupname)
    attempts = count * 10
    now = s.engine.keyspace.now_ms()
    props: list[list[bytes]] = []
    claimed = []
    deleted = []
    consumer = None
    pel = group.pending
    ids = iter(list(pel.irange(start, None)))
    next_id = (0, 0)
    for stream_id in ids:
        if not attempts or not count:
            next_id = stream_id
            break
        attempts -= 1
        nack = pel[stream_id]
        if stream.get(stream_id) is None:
            props.append(_xclaim_argv(key, groupname, group, format_id(stream_id), nack))
            s.engine.dirty += 1
            del pel[stream_id]
            group.consumers[nack.consumer].pending.discard(stream_id)
            deleted.append(format_id(stream_id))
            count -= 1
            continue
        if min_idle and now - nack.delivery_time < min_idle:
            continue
        if consumer is None:
            consumer = _consumer(s, group, argv[3], argv[1])
        nack.delivery_time = now
        if not justid:
            nack.delivery_count += 1
        _set_owner(group, stream_id, nack, consumer)
        claimed.append(format_id(stream_id) if justid else _entry(stream_id,
                                                                  stream.get(stream_id)))
        count -= 1
        props.append(_xclaim_argv(key, groupname, group, format_id(stream_id), nack))
        s.engine.dirty += 1
    s.engine.rewrite(*props)
    # Redis opens the cursor's and the entries' lengths before the entries, sets the
    # entries' then the cursor after them; the deleted IDs follow.
    cursor = encode(format_id(next_id))
    entries = encode(DeferredArray(claimed), s.resp3)
    at = 4 + len(cursor)
    marks = [(4, len(cursor), at + len(entries))]
    marks += ((at + start, length, at + end) for start, length, end in deferred_marks(entries))
    return deferred(b"*3\r\n" + cursor + entries + encode(deleted, s.resp3), marks)


# -- XINFO ----------------------------------------------------------------------------------------
_XINFO_HELP = [
    "CONSUMERS <key> <groupname>",
    "    Show consumers of <groupname>.",
    "GROUPS <key>",
    "    Show the stream consumer groups.",
    "STREAM <key> [FULL [COUNT <count>]",
    "    Show information about the stream.",
]


def _xinfo_stream_of(s: Session, key: bytes) -> Stream:
    stream = _stream_or_none(s.db.lookup(key))
    if stream is None:
        raise ReplyError(NO_SUCH_KEY)
    return stream


@command("xinfo|help")
def xinfo_help(s: Session, argv: list[bytes]) -> object:
    """XINFO HELP"""
    return help_reply(argv, _XINFO_HELP)


@command("xinfo|consumers")
def xinfo_consumers(s: Session, argv: list[bytes]) -> object:
    """XINFO CONSUMERS key group"""
    stream = _xinfo_stream_of(s, argv[2])
    group = stream.groups.get(argv[3])
    if group is None:
        raise ReplyError(f"NOGROUP No such consumer group '{_text(argv[3])}' for key name "
                         f"'{_text(argv[2])}'")
    now = s.engine.keyspace.now_ms()
    return [{b"name": name, b"pending": len(consumer.pending),
             b"idle": max(now - consumer.seen_time, 0)}
            for name, consumer in sorted(group.consumers.items())]


@command("xinfo|groups")
def xinfo_groups(s: Session, argv: list[bytes]) -> object:
    """XINFO GROUPS key"""
    stream = _xinfo_stream_of(s, argv[2])
    out = []
    for name, group in sorted(stream.groups.items()):
        out.append({
            b"name": name, b"consumers": len(group.consumers), b"pending": len(group.pending),
            b"last-delivered-id": format_id(group.last_id),
            b"entries-read": None if group.entries_read == INVALID_ENTRIES_READ
            else group.entries_read,
            b"lag": stream.lag(group)})
    return out


@command("xinfo|stream")
def xinfo_stream(s: Session, argv: list[bytes]) -> object:
    """XINFO STREAM key [FULL [COUNT count]]"""
    stream = _xinfo_stream_of(s, argv[2])
    options = argv[3:]
    full = bool(options)
    count = 10
    if options:
        if len(options) not in (1, 3) or options[0].lower() != b"full":
            raise subcommand_syntax_error(argv)
        if len(options) == 3:
            if options[1].lower() != b"count":
                raise subcommand_syntax_error(argv)
            count = parse_int(options[2])
            if count < 0:
                count = 10
    reply = {
        b"length": len(stream),
        b"radix-tree-keys": len(stream.node_map()),
        b"radix-tree-nodes": stream.radix_tree_nodes(),
        b"last-generated-id": format_id(stream.last_id),
        b"max-deleted-entry-id": format_id(stream.max_deleted_id),
        b"entries-added": stream.entries_added,
        b"recorded-first-entry-id": format_id(stream.first_id),
    }
    if not full:
        reply[b"groups"] = len(stream.groups)
        first, last = stream.first_entry_id(), stream.last_entry_id()
        reply[b"first-entry"] = None if first is None else _entry(first, stream.get(first))
        reply[b"last-entry"] = None if last is None else _entry(last, stream.get(last))
        return reply
    reply[b"entries"] = _range(stream, (0, 0), MAX_ID, count)
    groups = []
    for name, group in sorted(stream.groups.items()):
        pel = DeferredArray(
            [format_id(stream_id), nack.consumer, nack.delivery_time, nack.delivery_count]
            for stream_id, nack in _first(group.pending.items(), count))
        consumers = []
        for cname, consumer in sorted(group.consumers.items()):
            own = DeferredArray([format_id(stream_id), group.pending[stream_id].delivery_time,
                                 group.pending[stream_id].delivery_count]
                                for stream_id in _first(consumer.pending, count))
            consumers.append({b"name": cname, b"seen-time": consumer.seen_time,
                              b"pel-count": len(consumer.pending), b"pending": own})
        groups.append({
            b"name": name, b"last-delivered-id": format_id(group.last_id),
            b"entries-read": None if group.entries_read == INVALID_ENTRIES_READ
            else group.entries_read,
            b"lag": stream.lag(group), b"pel-count": len(group.pending), b"pending": pel,
            b"consumers": consumers})
    reply[b"groups"] = groups
    return reply


def _first(items: object, count: int) -> list:
    """The first ``count`` of ``items`` (all when ``count`` is 0)."""
    out = []
    for item in items:  # type: ignore[attr-defined]
        if count and len(out) >= count:
            break
        out.append(item)
    return out
