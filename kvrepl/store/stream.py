"""The stream value (Redis 7.0 ``t_stream.c``): entries, metadata, consumer groups, and the
shape of Redis's radix tree of listpack nodes.

Entries live in a dict from ``(ms, seq)`` to the flat ``(field, value, ...)`` sequence, in ID
order (XADD's newest in two small dicts until the garbage collector has untracked them),
beside sorted arrays of the IDs: XADD is O(1), a range or ``$`` a bisection, trimming O(1)
amortized per entry, and nothing the cyclic collector walks grows with the stream (see
:class:`Stream`). Beside them the stream keeps what Redis's
``rax`` of listpacks would hold, one :class:`StreamNode` per node: its master ID and fields,
its live and deleted counts, its exact ``lpBytes`` and its deleted entries. XADD fills the
tail node until ``stream-node-max-bytes`` / ``stream-node-max-entries`` says a new one
starts, XDEL and trimming flag entries as deleted or drop whole nodes, exactly as
``streamAppendItem`` / ``streamTrim`` / ``streamIteratorRemoveEntry`` do. That is what makes
``MAXLEN ~`` / ``MINID ~`` remove the same entries as a redis-server, what XINFO reports as
``radix-tree-keys`` / ``radix-tree-nodes``, and what an RDB file holds verbatim.
"""

from __future__ import annotations

import copy
import gc
import sys
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import chain, compress, repeat
from operator import itemgetter

from sortedcontainers import SortedDict, SortedSet

StreamID = tuple[int, int]  # (ms, seq), both unsigned 64-bit

UINT64_MAX = (1 << 64) - 1
MAX_ID: StreamID = (UINT64_MAX, UINT64_MAX)
LISTPACK_MAX_SIZE = 1 << 30  # STREAM_LISTPACK_MAX_SIZE
INVALID_ENTRIES_READ = -1  # SCG_INVALID_ENTRIES_READ
_INT_START = frozenset(b"-0123456789")
_INT64_LIMIT = 1 << 63


# -- listpack sizes (listpack.c) ---------------------------------------------------------------
def lp_backlen_size(size: int) -> int:
    """How many bytes lpEncodeBacklen uses for an entry of ``size`` bytes."""
    if size <= 127:
        return 1
    if size < 16383:
        return 2
    if size < 2097151:
        return 3
    if size < 268435455:
        return 4
    return 5


def lp_int_size(value: int) -> int:
    """Bytes a listpack integer entry takes, backlen included (lpEncodeIntegerGetType)."""
    if 0 <= value <= 127:
        return 2
    if -4096 <= value <= 4095:
        return 3
    if -32768 <= value <= 32767:
        return 4
    if -8388608 <= value <= 8388607:
        return 5
    if -(1 << 31) <= value < (1 << 31):
        return 6
    return 10


@lru_cache(maxsize=4096)
def lp_entry_size(s: bytes) -> int:
    """Bytes ``lpAppend(s)`` adds: an integer entry when ``s`` is canonical, else a string.
    Cached: stream fields repeat, entry after entry."""
    n = len(s)
    if n and n <= 20 and s[0] in _INT_START:
        try:
            value = int(s)
        except ValueError:
            value = None
        if value is not None and b"%d" % value == s and -(1 << 63) <= value < (1 << 63):
            return lp_int_size(value)
    if n < 64:
        return n + 2
    if n < 4096:
        return n + 2 + lp_backlen_size(n + 2)
    return n + 5 + lp_backlen_size(n + 5)


_HEAD = itemgetter(slice(0, 1))  # a string's first byte (b"" for an empty one)
_JOINED = b"".join
_FIRST = itemgetter(0)  # a non-empty string's first byte, as an int


def _heads(strings: list[bytes]) -> bytes:
    """The strings' first bytes, one each when none is empty (b"" for an empty one, so
    then fewer): their ints gathered in one pass, half the cost of a slice each."""
    try:
        return bytes(map(_FIRST, strings))
    except IndexError:  # an empty string among them
        return _JOINED(map(_HEAD, strings))
_INT_HEADS = (b"-", b"1", b"2", b"3", b"4", b"5", b"6", b"7", b"8", b"9")
_INT_HEAD_FLAGS = bytes(c in b"-123456789" for c in range(256))  # translate: 1 for those


_ZERO = b"0".__eq__


def _integers(strings: list[bytes]) -> tuple[list[int], list[int]]:
    """The indexes of the strings a listpack stores as integers (canonical int64 spellings)
    and what each saves over its string encoding (its length + 2: it is short). Only a
    string that starts with ``-`` or 1-9, or is ``0``, can be one (a canonical integer has
    no leading zero): their first bytes are tested together, and usually none is one."""
    heads = _heads(strings)
    indexes: list[int] = []
    savings: list[int] = []
    if len(heads) < len(strings) or heads.translate(None, b"-123456789") != heads:
        # the strings that may be integers: one flag each, from their first bytes (with no
        # empty string among them), or one test each
        flags = heads.translate(_INT_HEAD_FLAGS) if len(heads) == len(strings) else map(
            bytes.startswith, strings, repeat(_INT_HEADS))
        for index in compress(range(len(strings)), flags):
            string = strings[index]
            if len(string) <= 20:  # longer: never an integer
                saving = len(string) + 2 - lp_entry_size.__wrapped__(string)
                if saving:
                    indexes.append(index)
                    savings.append(saving)
    if b"0" in heads and b"0" in strings:  # "0": 2 bytes as an integer, 3 as a string
        zeros = list(compress(range(len(strings)), map(_ZERO, strings)))
        indexes += zeros
        savings += repeat(1, len(zeros))
    return indexes, savings


def lp_strings_size(strings: list[bytes]) -> int:
    """``sum(map(lp_entry_size, strings))`` for many distinct strings at once (the entries
    of a node sized together): each string's length + 2, the extra backlen bytes of the long
    ones, less what the integers save (:func:`_integers`)."""
    if not strings:
        return 0
    lengths = list(map(len, strings))
    size = sum(lengths) + 2 * len(strings)
    if max(lengths) >= 64:  # never an integer: lp_entry_size's string cases, uncached
        size += sum(lp_entry_size.__wrapped__(s) - len(s) - 2 for s in strings
                    if len(s) >= 64)
    return size - sum(_integers(strings)[1])


def id_delta(a: int, b: int) -> int:
    """``a - b`` as the int64 lpAppendInteger stores for uint64 operands."""
    d = (a - b) & UINT64_MAX
    return d - (1 << 64) if d >= (1 << 63) else d


# -- groups --------------------------------------------------------------------------------------
@dataclass
class StreamNack:
    """One entry of a group's pending entries list (streamNACK)."""

    delivery_time: int  # unix ms of the last delivery
    delivery_count: int
    consumer: bytes | None = None  # the owning consumer's name


@dataclass
class StreamConsumer:
    """A consumer of a group (streamConsumer) and the IDs it has pending, ascending."""

    name: bytes
    seen_time: int  # unix ms
    pending: SortedSet = field(default_factory=SortedSet)
    active_time: int | None = None  # only RDB 11+ (Redis 7.2) files carry it

    def __post_init__(self) -> None:
        if type(self.pending) is not SortedSet:
            self.pending = SortedSet(self.pending)


@dataclass
class StreamGroup:
    """A consumer group (streamCG): its PEL by ID, its consumers by name."""

    name: bytes
    last_id: StreamID = (0, 0)
    entries_read: int = INVALID_ENTRIES_READ
    pending: SortedDict = field(default_factory=SortedDict)
    consumers: dict[bytes, StreamConsumer] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if type(self.pending) is not SortedDict:
            self.pending = SortedDict(self.pending)


# -- nodes ---------------------------------------------------------------------------------------
class StreamNode:
    """One listpack of the radix tree, as far as its shape matters: master ID (its key),
    master fields, live and deleted counts, ``lpBytes``, the last ID it holds (deleted or
    not) and its deleted entries (kept so that the listpack can be written back verbatim).
    Live entries are in the stream's ``entries``, between ``master_id`` and ``last_id``.

    ``lp_bytes`` is sized lazily: it holds the first ``sized`` live entries; the newer ones
    are only in ``bound``, an upper bound of ``lp_bytes`` with them (:func:`entry_bound`
    each, and the count's growth once).
    XADD compares ``bound`` with ``stream-node-max-bytes`` and has the stream size the
    entries exactly (:meth:`Stream.settle`) only when the bound could reach the limit, or
    before a deletion changes the node: a node that closes on ``stream-node-max-entries``
    first (the usual case) is never sized entry by entry. A node that fills by bytes instead
    (its bound projects it past the limit before ``stream-node-max-entries``) has XADD runs
    size their entries as they come (:meth:`Stream.append_run`, :meth:`same_sizes`), while
    they are at hand, rather than fetched again to be settled near the limit."""

    __slots__ = ("master_id", "master_fields", "fields_size", "count", "deleted", "lp_bytes",
                 "last_id", "dead", "sized", "bound")

    def __init__(self, master_id: StreamID, master_fields: Sequence[bytes]) -> None:
        self.master_id = master_id
        self.master_fields = tuple(master_fields)
        self.fields_size = sum(map(lp_entry_size, master_fields))  # in the listpack's bytes
        self.count = 0
        self.deleted = 0
        # header (6) + end (1) + count + deleted + num-fields + fields + master terminator
        self.lp_bytes = (7 + 2 + 2 + lp_int_size(len(master_fields)) + self.fields_size + 2)
        self.last_id = master_id
        self.dead: dict[StreamID, list[bytes]] = {}
        self.sized = 0
        self.bound = self.lp_bytes + _GROWTH_RESERVE

    def copy(self) -> StreamNode:
        new = StreamNode.__new__(StreamNode)
        new.master_id, new.master_fields = self.master_id, self.master_fields
        new.fields_size = self.fields_size
        new.count, new.deleted, new.lp_bytes = self.count, self.deleted, self.lp_bytes
        new.last_id, new.dead = self.last_id, dict(self.dead)
        new.sized, new.bound = self.sized, self.bound
        return new

    def set_counts(self, count: int, deleted: int) -> None:
        """lpReplaceInteger on the two header counters: the listpack grows or shrinks with
        their encodings. Only on a sized node (see :meth:`Stream.settle`)."""
        assert self.sized == self.count
        self.lp_bytes += (lp_int_size(count) - lp_int_size(self.count)
                          + lp_int_size(deleted) - lp_int_size(self.deleted))
        self.bound = self.lp_bytes + _GROWTH_RESERVE
        self.count = self.sized = count
        self.deleted = deleted

    def loaded(self, count: int, deleted: int, lp_bytes: int) -> None:
        """The counts and size of a listpack read whole (an RDB node)."""
        self.count = self.sized = count
        self.deleted = deleted
        self.lp_bytes = lp_bytes
        self.bound = lp_bytes + _GROWTH_RESERVE

    def entry_size(self, entry_id: StreamID, fields: Sequence[bytes]) -> int:
        """The bytes streamAppendItem adds to this listpack for one entry (flags, ID deltas,
        the fields or, SAMEFIELDS, the values only, lp-count); the node's live count
        growing is not in it."""
        master_ms, master_seq = self.master_id
        ms, seq = entry_id
        d_ms = ms - master_ms
        d_seq = seq - master_seq
        size = 2 + (2 if d_ms < 128 else lp_int_size(
            d_ms if d_ms < _INT64_LIMIT else id_delta(ms, master_ms)))
        size += 2 if 0 <= d_seq < 128 else lp_int_size(
            d_seq if -_INT64_LIMIT <= d_seq < _INT64_LIMIT else id_delta(seq, master_seq))
        pairs = len(fields) >> 1
        master_fields = self.master_fields
        if pairs == len(master_fields) and (
                fields[0] == master_fields[0] if pairs == 1 else
                tuple(fields[0::2]) == master_fields):  # SAMEFIELDS: the values only
            size += (lp_entry_size(fields[1]) if pairs == 1
                     else sum(map(lp_entry_size, fields[1::2])))
            return size + (2 if pairs < 125 else lp_int_size(pairs + 3))
        return (size + lp_int_size(pairs) + sum(map(lp_entry_size, fields))
                + lp_int_size(2 * pairs + 4))

    def entry_sizes(self, ids: list[StreamID], items: list[Sequence[bytes]],
                    totals: list[int] | None = None) -> list[int]:
        """``list(map(entry_size, ids, items))`` (entries in ID order; ``totals``: their
        lengths in bytes, when known): :meth:`same_sizes` for the usual entries, the others
        sized one by one."""
        sizes = self.same_sizes(ids, items, totals)
        return list(map(self.entry_size, ids, items)) if sizes is None else sizes

    def same_sizes(self, ids: list[StreamID], items: list[Sequence[bytes]],
                   totals: list[int] | None = None) -> list[int] | None:
        """``list(map(entry_size, ids, items))`` computed together for the usual entries
        (in ID order; ``totals``: their lengths in bytes, when known): each with the master
        fields (SAMEFIELDS) and its values below 64 bytes; None when some entry is not of
        that shape. Such an entry takes its values' lengths, 2 bytes a value, and 8 (flags,
        the two ID deltas below 128, lp-count); a value that is a canonical integer, or
        ``0``, takes its integer's size instead (:func:`_integers`), a larger ID delta its
        own."""
        n = len(items)
        pairs = len(self.master_fields)
        if not n or pairs >= len(_FIELD_GETTERS) or not (
                min(map(len, items)) == max(map(len, items)) == 2 * pairs):
            return None
        unstored = sum(map(len, self.master_fields))
        if totals is None:
            totals = list(map(len, map(_JOINED, items)))
        if max(totals) - unstored >= 64 or list(map(_FIELD_GETTERS[pairs], items)).count(
                self.master_fields[0] if pairs == 1 else self.master_fields) != n:
            return None
        sizes = list(map((2 * pairs + 8 - unstored).__add__, totals))
        master_ms, master_seq = self.master_id
        first, last = ids[0], ids[-1]
        if first[0] == last[0]:  # one millisecond (a run's): its sequences ascend
            low, high = first[1], last[1]
        else:
            seqs = list(map(_SEQ, ids))
            low, high = min(seqs), max(seqs)
        if last[0] - master_ms >= 128 or low < master_seq or high - master_seq >= 128:
            # some deltas take more than 2 bytes
            for index, (ms, seq) in enumerate(ids):
                d_ms, d_seq = ms - master_ms, seq - master_seq
                if d_ms >= 128:
                    sizes[index] += lp_int_size(
                        d_ms if d_ms < _INT64_LIMIT else id_delta(ms, master_ms)) - 2
                if not 0 <= d_seq < 128:
                    sizes[index] += lp_int_size(
                        d_seq if -_INT64_LIMIT <= d_seq < _INT64_LIMIT
                        else id_delta(seq, master_seq)) - 2
        values = list(map(_SEQ, items)) if pairs == 1 else list(
            chain.from_iterable(map(_VALUE_GETTERS[pairs], items)))
        indexes, savings = _integers(values)
        for index, saving in zip(indexes, savings, strict=True):  # the integers' entries
            sizes[index // pairs] -= saving
        return sizes

    def entries_size(self, ids: list[StreamID], items: list[Sequence[bytes]]) -> int:
        """``sum(map(entry_size, ids, items))`` (entries in ID order), computed for all of
        them together: the ID deltas from their extremes when all are small, the fields
        and values through :func:`lp_strings_size`, the entries with the master fields
        (SAMEFIELDS: their fields are not stored) counted at once."""
        n = len(items)
        if not n:
            return 0
        master_ms, master_seq = self.master_id
        pairs = len(self.master_fields)
        lengths = list(map(len, items))
        longest = max(lengths)
        if ids[-1][0] - master_ms >= 128 or longest >= 2 * 62:  # rare: one by one
            return sum(map(self.entry_size, ids, items))
        seqs = list(map(_SEQ, ids))
        low, high = min(seqs) - master_seq, max(seqs) - master_seq
        size = 8 * n  # flags, deltas (below 128), lp-count or (another shape) num-fields
        if low >= 0 and high < 128:
            pass
        elif -4096 <= low and high < 4096:  # 3 bytes outside 0-127
            seqs.sort()
            size += (bisect_left(seqs, master_seq)
                     + len(seqs) - bisect_left(seqs, master_seq + 128))
        else:
            size += sum(
                lp_int_size(d if -_INT64_LIMIT <= d < _INT64_LIMIT
                            else id_delta(d + master_seq, master_seq)) - 2
                for d in (seq - master_seq for seq in seqs))
        if longest == min(lengths) == 2 * pairs:  # one shape: compare the fields in C
            keys = list(map(_FIELD_GETTERS[pairs], items))
            same = keys.count(self.master_fields[0] if pairs == 1 else self.master_fields)
            if same == n:  # all SAMEFIELDS (the usual): their values only, lp-count 2
                return size + lp_strings_size(
                    list(map(_SEQ, items)) if pairs == 1 else
                    list(chain.from_iterable(map(_VALUE_GETTERS[pairs], items))))
        else:
            same = sum(1 for fields in items if len(fields) == 2 * pairs
                       and tuple(fields[0::2]) == self.master_fields)
        # SAMEFIELDS entries: their values only, lp-count 2 below 125 pairs; the others:
        # num-fields and lp-count 2 each (below 62 pairs), fields and values
        size += lp_strings_size(list(chain.from_iterable(items))) - same * self.fields_size
        if pairs >= 125:
            size += same * (lp_int_size(pairs + 3) - 2)
        return size + 2 * (n - same)


_MS = itemgetter(0)  # an ID's milliseconds
_BYTEORDER = sys.byteorder  # an array('Q')'s items: C unsigned long longs
_WORD = array("Q").itemsize
_SMALL_SEQS = 4096  # the sequence numbers a run mostly has, as array('Q') bytes:
_SEQ_WORDS = array("Q", range(_SMALL_SEQS)).tobytes()
_SEQ = itemgetter(1)  # an ID's sequence number
# The field names of an entry of p pairs (one: the name itself; more: a tuple of them).
_FIELD_GETTERS = [None, itemgetter(0), *(itemgetter(*range(0, 2 * p, 2)) for p in range(2, 62))]
_VALUE_GETTERS = [None, itemgetter(1), *(itemgetter(*range(1, 2 * p, 2)) for p in range(2, 62))]


def entry_bound(total: int, n: int) -> int:
    """An upper bound of :meth:`StreamNode.entry_size` for ``n`` fields and values of
    ``total`` bytes: each field or value takes at most its length + 2 bytes below 64, + 4
    below 4096 (+ 10 above), flags 2, each ID delta 10, the field count and lp-count 2
    each below 120 fields (10 above)."""
    if n < 120:
        if total < 64:
            return total + 2 * n + 26
        if total < 4096:
            return total + 4 * n + 26
    return total + 10 * n + 42


# How much a node's lpBytes may grow with its live count, all the way up (_COUNT_GROWTH's
# sum): a node's ``bound`` keeps it in reserve once, instead of each entry.
_GROWTH_RESERVE = 8


# How much a listpack integer grows from n to n + 1 (the node's live count).
_COUNT_GROWTH = {127: 1, 4095: 1, 32767: 1, 8388607: 1, (1 << 31) - 1: 4}


def _count_growth(count: int, added: int) -> int:
    """How much a node's live count grows in bytes from ``count`` to ``count + added``."""
    if count + added <= 127:  # the usual: below its first step
        return 0
    return sum(growth for step, growth in _COUNT_GROWTH.items()
               if count <= step < count + added)


def rax_nodes(keys: list[bytes]) -> int:
    """``rax->numnodes`` of a radix tree holding ``keys`` (sorted, none a prefix of
    another): the root, every branching point, every child of one, every leaf; runs of
    single-child positions are one compressed node."""
    if not keys:
        return 1

    def below(lo: int, hi: int, depth: int) -> int:
        # The node at prefix keys[lo][:depth] exists; count it and everything under it.
        first, last = keys[lo], keys[hi - 1]
        if hi - lo == 1:
            return 1 if depth == len(first) else 2  # a leaf, or a compressed run + leaf
        common = depth
        while first[common] == last[common]:
            common += 1
        if common > depth:  # a compressed node up to the branching point
            return 1 + below(lo, hi, common)
        total = 1
        start = lo
        for i in range(lo + 1, hi + 1):
            if i == hi or keys[i][depth] != keys[start][depth]:
                total += below(start, i, depth + 1)
                start = i
        return total

    return below(0, len(keys), 0)


def encode_id(stream_id: StreamID) -> bytes:
    """The 16-byte big-endian form of an ID (radix-tree keys, PEL entries)."""
    return stream_id[0].to_bytes(8, "big") + stream_id[1].to_bytes(8, "big")


# -- the stream ----------------------------------------------------------------------------------
class Stream:
    """A stream: ``entries`` (a ``dict`` ID -> flat field/value sequence: a tuple from XADD;
    live entries only; in ID order), the metadata t_stream.c keeps, the consumer groups by
    name and the node shape.

    Beside the dict, ``_ms`` and ``_seqs`` (two ``array('Q')``) list the live IDs ascending
    from index ``_head`` on: XADD appends in O(1), a range or ``$`` is a bisection, trimming
    moves ``_head`` (the dead prefix is cut off once it is half the arrays), XDEL of a middle
    entry is one deletion. (A dict insertion and an array append are what makes XADD cheap;
    every ID is above all the others when it arrives, so the dict stays in ID order.)

    Why arrays, and why XADD's newest entries wait in two small dicts (``_fresh``, then
    ``_aging``) before they join ``_entries``: the cyclic garbage collector. A list of a
    million ID tuples is walked by every full collection, and so is a dict holding a tuple
    the collector still tracks; a new tuple is tracked until the first collection after it
    was made (which then untracks it for good, its items being bytes and ints). A full
    collection untracks a dict of untracked tuples; one tracked tuple inserted makes it
    tracked again, walked by a young, a middle and the next full collection: with one dict,
    every full collection cost O(length) three times over, and a busy server has a full
    collection every ~70k requests whatever its data (the objects alive at a middle
    collection are promoted): XADD's cost grew with the stream's length. Arrays of integers
    are not tracked at all; ``_aging`` joins ``_entries`` only once its newest tuples are
    untracked, so the big dict stays untracked while XADD appends. Readers that need one
    dict (``entries``, deletions, trimming, copies) merge the tiers first; ranges read them
    as they are (:meth:`fields_of`).

    ``nodes`` (``SortedDict`` master ID -> :class:`StreamNode`) is None, or empty while
    there are entries, for a stream built entry by entry outside XADD (tests, the
    hypothesis strategies); :meth:`node_map` then lays the entries out as XADD would have.
    An empty stream is a valid value."""

    __slots__ = ("_entries", "_aging", "_fresh", "_ms", "_seqs", "_head", "last_id",
                 "first_id", "max_deleted_id", "entries_added", "groups", "nodes", "_tail")

    def __init__(self) -> None:
        self._entries: dict[StreamID, Sequence[bytes]] = {}
        self._aging: dict[StreamID, Sequence[bytes]] = {}  # above _entries's IDs
        self._fresh: dict[StreamID, Sequence[bytes]] = {}  # above _aging's
        self._ms = array("Q")  # the live IDs' ms from _head on, ascending with _seqs
        self._seqs = array("Q")
        self._head = 0
        self.last_id: StreamID = (0, 0)
        self.first_id: StreamID = (0, 0)
        self.max_deleted_id: StreamID = (0, 0)
        self.entries_added = 0
        self.groups: dict[bytes, StreamGroup] = {}
        self.nodes: SortedDict | None = SortedDict()
        # The last node, where XADD appends (None: look it up); forgotten whenever a node
        # is removed.
        self._tail: StreamNode | None = None

    @property
    def entries(self) -> dict[StreamID, Sequence[bytes]]:
        """ID -> fields, in ID order. Read it freely; change the stream through its methods
        (code that fills ``entries`` directly gets its IDs sorted and nodes laid out at the
        next use)."""
        if self._aging or self._fresh:
            self._merge()
        return self._entries

    @entries.setter
    def entries(self, entries: dict) -> None:
        """Entries given at once; the node shape is then laid out again when needed."""
        ids = list(entries)
        if any(a >= b for a, b in zip(ids, ids[1:], strict=False)):
            ids.sort()
            entries = {entry_id: entries[entry_id] for entry_id in ids}
        self._entries = dict(entries)
        self._aging, self._fresh = {}, {}
        self._ms = array("Q", map(_MS, ids))
        self._seqs = array("Q", map(_SEQ, ids))
        self._head = 0
        self.nodes = None
        self._tail = None

    def _merge(self) -> None:
        """Move ``_aging`` and ``_fresh`` into ``_entries``."""
        if self._aging:
            _join(self._entries, self._aging)
            self._aging = {}
        if self._fresh:
            _join(self._entries, self._fresh)
            self._fresh = {}

    def _age(self) -> None:
        """``_fresh`` is full: ``_aging`` joins ``_entries`` if the collector untracked its
        newest entry since it came (so all of them: every collection untracks the tuples
        made before it), and ``_fresh`` becomes ``_aging``. Otherwise (no collection in
        between: the collector disabled) ``_fresh`` joins ``_aging`` to wait longer. (A
        value that is not a tuple, a list, stays tracked: it is not waited for.)"""
        aging = self._aging
        if aging:
            entry_id, fields = next(reversed(aging.items()))
            if gc.is_tracked(entry_id) or (type(fields) is tuple and gc.is_tracked(fields)):
                aging.update(self._fresh.items())
                self._fresh = {}
                return
            _join(self._entries, aging)
        self._aging, self._fresh = self._fresh, {}

    def fields_of(self, ids: list[StreamID]) -> list[Sequence[bytes]]:
        """The fields of the live entries ``ids`` (ascending or descending), read where
        they are without merging the dicts (a range read between XADDs)."""
        fresh, aging = self._fresh, self._aging
        if ids and (fresh or aging):
            # The dict that holds the lowest of them holds all of them (the usual: the
            # newest entries, or a range of old ones), or else each is looked up in turn.
            low, high = (ids[0], ids[-1]) if ids[0] <= ids[-1] else (ids[-1], ids[0])
            for tier in (fresh, aging):
                if tier:
                    first = next(iter(tier))
                    if low >= first:
                        return list(map(tier.__getitem__, ids))
                    if high >= first:
                        return [fresh[entry_id] if entry_id in fresh else aging[entry_id]
                                if entry_id in aging else self._entries[entry_id]
                                for entry_id in ids]
        return list(map(self._entries.__getitem__, ids))

    def get(self, entry_id: StreamID) -> Sequence[bytes] | None:
        """The fields of the live entry ``entry_id``, or None (the dicts left as they are)."""
        fields = self._fresh.get(entry_id)
        if fields is None:
            fields = self._aging.get(entry_id)
            if fields is None:
                fields = self._entries.get(entry_id)
        return fields

    def _index(self) -> tuple[array, array]:
        """``(_ms, _seqs)``, rebuilt if ``entries`` was filled from outside."""
        if len(self._ms) - self._head != len(self._entries) + len(self._aging) + len(
                self._fresh):
            self.entries = self.entries
        return self._ms, self._seqs

    def _ids(self, low: int, high: int) -> list[StreamID]:
        """The IDs at indexes ``low`` to ``high`` of the arrays."""
        return list(zip(self._ms[low:high], self._seqs[low:high], strict=True))

    def _id_at(self, index: int) -> StreamID:
        return self._ms[index], self._seqs[index]

    def _find(self, entry_id: StreamID, right: bool = False) -> int:
        """bisect_left (bisect_right when ``right``) of ``entry_id`` in the live IDs."""
        ms, seq = entry_id
        msa = self._ms
        low = bisect_left(msa, ms, self._head)
        high = bisect_right(msa, ms, low)
        if low == high:
            return low
        return (bisect_right if right else bisect_left)(self._seqs, seq, low, high)

    def __len__(self) -> int:
        return len(self._entries) + len(self._aging) + len(self._fresh)

    def __eq__(self, other: object) -> bool:
        # Entries compare by content: XADD stores tuples, a loaded RDB lists.
        if not isinstance(other, Stream):
            return False
        mine, theirs = self.entries, other.entries
        return all(getattr(self, name) == getattr(other, name) for name in _COMPARED) and (
            len(mine) == len(theirs) and all(
                tuple(fields) == tuple(theirs.get(entry_id, ()))
                for entry_id, fields in mine.items()))

    def __repr__(self) -> str:
        return (f"Stream({len(self)} entries, last_id={self.last_id}, "
                f"groups={list(self.groups)})")

    def copy(self) -> Stream:
        new = Stream()
        msa, seqs = self._index()
        new._entries = dict(self.entries)  # entry lists are never mutated in place
        new._ms, new._seqs = msa[self._head:], seqs[self._head:]
        new.last_id, new.first_id = self.last_id, self.first_id
        new.max_deleted_id, new.entries_added = self.max_deleted_id, self.entries_added
        new.groups = copy.deepcopy(self.groups)
        new.nodes = None if self.nodes is None else SortedDict(
            (key, node.copy()) for key, node in self.nodes.items())
        return new

    # -- reading ---------------------------------------------------------------------------
    def first_entry_id(self) -> StreamID | None:
        """The first live ID (None when empty)."""
        msa, seqs = self._index()
        head = self._head
        return (msa[head], seqs[head]) if len(msa) > head else None

    def last_entry_id(self) -> StreamID | None:
        """The last live ID (streamLastValidID; None when empty)."""
        msa, seqs = self._index()
        return (msa[-1], seqs[-1]) if len(msa) > self._head else None

    def range_ids(self, start: StreamID, end: StreamID, count: int = 0,
                  reverse: bool = False) -> list[StreamID]:
        """The live IDs from ``start`` to ``end`` inclusive, at most ``count`` (0: all),
        from ``end`` down when ``reverse``."""
        self._index()
        low = self._find(start)
        high = self._find(end, right=True)
        if low >= high:
            return []
        if reverse:
            if count and high - low > count:
                low = high - count
            ids = self._ids(low, high)
            ids.reverse()
            return ids
        if count and high - low > count:
            high = low + count
        return self._ids(low, high)

    # -- node shape ------------------------------------------------------------------------
    def node_map(self, max_bytes: int = 4096, max_entries: int = 100) -> SortedDict:
        """The nodes, laid out now (as XADD with these limits would) if not known yet."""
        nodes = self.nodes
        if nodes is None or (not nodes and len(self)):
            self._index()
            nodes = self.nodes = SortedDict()
            self._tail = None
            for entry_id, fields in self.entries.items():
                total = sum(map(len, fields))
                node = self._tail_for(entry_id, fields, total, max_bytes, max_entries)
                node.count += 1
                node.last_id = entry_id
                node.bound += entry_bound(total, len(fields))
        return nodes

    def _tail_for(self, entry_id: StreamID, fields: Sequence[bytes], total: int,
                  max_bytes: int, max_entries: int) -> StreamNode:
        """The node an entry goes to (streamAppendItem's choice): the last one, or a new
        one when the last is full by ``max_entries`` or would reach ``max_bytes``."""
        tail = self._tail
        if tail is None and self.nodes:
            tail = self.nodes.peekitem(-1)[1]
        if tail is not None:
            if max_bytes <= 0 or max_bytes > LISTPACK_MAX_SIZE:
                max_bytes = LISTPACK_MAX_SIZE
            if max_entries and tail.count + tail.deleted >= max_entries:
                tail = None
            elif tail.bound + total >= max_bytes:
                self.settle(tail)  # the bound says it might be full: size it exactly
                if tail.lp_bytes + total >= max_bytes:
                    tail = None
        if tail is None:
            tail = StreamNode(entry_id, fields[0::2])
            self.nodes[entry_id] = tail
        self._tail = tail
        return tail

    def settle(self, node: StreamNode) -> None:
        """Size the node's entries past ``sized`` exactly: its newest live entries, up to
        its ``last_id`` (nothing was deleted from it since they came)."""
        count = node.sized
        unsized = node.count - count
        if not unsized:
            return
        high = self._find(node.last_id, right=True)
        new = self._ids(high - unsized, high)
        size = node.lp_bytes + node.entries_size(new, self.fields_of(new))
        for threshold, growth in _COUNT_GROWTH.items():  # the live count from count up
            if count <= threshold < count + unsized:
                size += growth
        count += unsized
        node.lp_bytes = size
        node.bound = size + _GROWTH_RESERVE
        node.sized = count

    def radix_tree_nodes(self) -> int:
        return rax_nodes([encode_id(key) for key in self.node_map()])

    def node_entries(self, node: StreamNode) -> Iterable[tuple[StreamID, list[bytes], bool]]:
        """Every entry of ``node``, deleted ones too, in ID order: ``(id, fields, deleted)``."""
        entries = self.entries
        live = [(entry_id, entries[entry_id], False)
                for entry_id in self.range_ids(node.master_id, node.last_id)]
        if not node.dead:
            return live
        dead = ((entry_id, fields, True) for entry_id, fields in node.dead.items())
        return sorted([*live, *dead])

    # -- writing ---------------------------------------------------------------------------
    def append(self, entry_id: StreamID, fields: Sequence[bytes], max_bytes: int,
               max_entries: int, total: int | None = None) -> None:
        """streamAppendItem with an ID already checked to be above ``last_id``; ``total``
        is the fields' length in bytes when the caller knows it. XADD runs it every time:
        the usual case (the tail node known, neither full nor near its byte limit by the
        bound) is a few comparisons and counters."""
        if total is None:
            total = sum(map(len, fields))
        tail = self._tail  # set: this stream grew through here, its indexes agree
        if tail is None or (max_entries and tail.count + tail.deleted >= max_entries) or not (
                tail.bound + total < max_bytes <= LISTPACK_MAX_SIZE):
            if tail is None:
                self._index()
                self.node_map(max_bytes, max_entries)
            tail = self._tail_for(entry_id, fields, total, max_bytes, max_entries)
        tail.count += 1
        tail.last_id = entry_id
        n = len(fields)
        tail.bound += (total + 2 * n + 26 if total < 64 and n < 120  # entry_bound's first case
                       else entry_bound(total, n))
        fresh = self._fresh
        if not (fresh or self._aging or self._entries):
            self.first_id = entry_id
        fresh[entry_id] = fields
        self._ms.append(entry_id[0])
        self._seqs.append(entry_id[1])
        if len(fresh) >= _FRESH_ENTRIES:
            self._age()
        self.entries_added += 1
        self.last_id = entry_id

    def append_run(self, ms: int, seq: int, items: list[tuple[bytes, ...]],
                   totals: list[int] | None, max_bytes: int, max_entries: int) -> None:
        """:meth:`append` of ``items`` (``totals``: their lengths in bytes, or None to have
        them summed where needed) as the entries ``ms-seq``, ``ms-(seq+1)``, ... (all above
        ``last_id``, ``seq`` + their number within 64 bits): the same nodes as entry by
        entry, with the entries that go to one node inserted together, and their bounds
        added at once when all of them fit the node's byte limit by the bound (a tighter
        one than append's: their IDs are known); otherwise the node is sized exactly and
        the entries added together if all fit, else one by one, as streamAppendItem does."""
        n = len(items)
        if not n:
            return
        if totals is None:  # each entry's length: one join each is cheaper than a len each
            totals = list(map(len, map(_JOINED, items)))
        new = list(zip(repeat(ms, n), range(seq, seq + n), strict=False))
        entries = self._fresh
        if not (entries or self._aging or self._entries):
            self.first_id = new[0]
        # append's test of the tail's byte bound, its limit normalised once (_tail_for's)
        limit = max_bytes if 0 < max_bytes <= LISTPACK_MAX_SIZE else LISTPACK_MAX_SIZE
        tail = self._tail  # set: this stream grew through here, its indexes agree
        i = 0
        while i < n:
            total = totals[i]
            if tail is None or (max_entries and tail.count + tail.deleted >= max_entries) or \
                    not tail.bound + total < limit:
                if tail is None:
                    self._index()
                    self.node_map(max_bytes, max_entries)
                tail = self._tail_for(new[i], items[i], total, max_bytes, max_entries)
            # Entry i goes to ``tail``; so do the next ones while it has room.
            room = max_entries - tail.count - tail.deleted if max_entries else n
            j = n if room >= n - i else i + room
            whole = not i and j == n
            chunk = items if whole else items[i:j]
            # An upper bound of each entry's size when its strings are below 64 bytes and its
            # pairs below 60: each string's length + 2, flags 2, num-fields or lp-count 2
            # twice, and the ID deltas, 2 each below 128 (the chunk's IDs are ms-seq+i to
            # ms-seq+j-1, the node's master ID below them), 10 at most. When all of them have
            # the node's master fields (SAMEFIELDS, the usual), their fields are not stored:
            # the bound leaves them out, and each entry's test (the bound before it + its
            # length < limit) then needs the fields' length beside the bound.
            lengths = list(map(len, chunk))
            longest = max(lengths)
            sizes = totals if whole else totals[i:j]
            stored = sum(sizes)
            short = max(sizes) < 64  # then so is each string
            count = sum(lengths)
            master_ms, master_seq = tail.master_id
            low = seq + i - master_seq
            per_entry = (6 + (2 if ms - master_ms < 128 else 10)
                         + (2 if 0 <= low and low + j - i <= 128 else 10)) * (j - i)
            grow = stored + 2 * count + per_entry
            bound = tail.bound
            exact = None
            if tail.sized == tail.count and (
                    not max_entries or bound + grow * room // (j - i) >= limit):
                # A node sized so far that fills by bytes rather than by entries (as its
                # bound projects): its entries sized exactly as they come, while they are at
                # hand, where the bound would have them sized again near the limit.
                exact = tail.same_sizes(new[i:j], chunk, sizes)
            if exact is None:
                fits = longest < 120 and bound + grow < limit
                if not fits and longest < 120:
                    fields = tail.master_fields
                    pairs = len(fields)
                    if 2 * pairs == min(lengths) == longest and list(
                            map(_FIELD_GETTERS[pairs], chunk)).count(
                            fields[0] if pairs == 1 else fields) == j - i:
                        unstored = sum(map(len, fields))
                        grow = stored - unstored * (j - i) + count + per_entry
                        fits = bound + grow + unstored < limit
                if fits and (short or max(map(len, chain.from_iterable(chunk))) < 64):
                    bound += grow  # each entry's test holds
                else:  # near the byte limit: the node sized exactly, then its new entries
                    self.settle(tail)
                    exact = tail.entry_sizes(new[i:j], chunk, sizes)
            if exact is not None:
                size, count = tail.lp_bytes, tail.count
                grown = sum(exact) + _count_growth(count, j - i)
                if size + grown + max(sizes) <= limit:
                    # each entry's test holds: the bytes before it are below the end's
                    size += grown
                    count += j - i
                else:
                    # entry by entry, as streamAppendItem: each (but the first, which the
                    # test above let in) joins while the node's bytes + its length stay
                    # below the limit
                    growth = _COUNT_GROWTH.get
                    k = 0
                    for entry in exact:
                        if k and not size + sizes[k] < limit:  # _tail_for's exact test
                            break
                        size += entry + growth(count, 0)
                        count += 1
                        k += 1
                    j = i + k
                    whole = not i and j == n
                    chunk = items if whole else items[i:j]
                tail.lp_bytes = size
                tail.sized = count
                bound = size + _GROWTH_RESERVE
            tail.bound = bound
            tail.count += j - i
            tail.last_id = new[j - 1]
            added = new if whole else new[i:j]
            entries.update(zip(added, chunk, strict=True))
            i = j
        # As machine words: an int past 30 bits costs ~500 instructions to convert.
        self._ms.frombytes(ms.to_bytes(_WORD, _BYTEORDER) * n)
        if seq + n <= _SMALL_SEQS:
            self._seqs.frombytes(_SEQ_WORDS[_WORD * seq:_WORD * (seq + n)])
        else:
            self._seqs.extend(range(seq, seq + n))
        if len(entries) >= _FRESH_ENTRIES:
            self._age()
        self.entries_added += n
        self.last_id = new[-1]

    def _pop_first(self) -> tuple[StreamID, list[bytes]]:
        """Remove the first live entry (trimming; the dicts merged)."""
        msa, seqs = self._ms, self._seqs
        head = self._head
        entry_id = msa[head], seqs[head]
        head += 1
        if head > 64 and head * 2 > len(msa):
            del msa[:head], seqs[:head]
            head = 0
        self._head = head
        return entry_id, self._entries.pop(entry_id)

    def delete(self, entry_id: StreamID) -> bool:
        """streamDeleteItem: flag the entry deleted; a node left with no live entry goes."""
        if entry_id not in self.entries:
            return False
        self._index()
        nodes = self.node_map()
        node = nodes.peekitem(nodes.bisect_right(entry_id) - 1)[1]
        if node.count > 1:
            self.settle(node)  # while its entries are all there
        if self._id_at(self._head) == entry_id:
            fields = self._pop_first()[1]
        else:
            fields = self._entries.pop(entry_id)
            index = self._find(entry_id)
            del self._ms[index], self._seqs[index]
        if node.count == 1:
            del nodes[node.master_id]
            self._tail = None
        else:
            node.dead[entry_id] = fields
            node.set_counts(node.count - 1, node.deleted + 1)
        return True

    def trim(self, maxlen: int | None, minid: StreamID | None, approx: bool,
             limit: int) -> int:
        """streamTrim by MAXLEN (``maxlen``) or MINID (``minid``); returns entries removed."""
        nodes = self.node_map()
        self._index()
        entries = self.entries
        deleted = 0
        while nodes:
            if maxlen is not None and len(entries) <= maxlen:
                break
            master, node = nodes.peekitem(0)
            count = node.count
            if limit and deleted + count > limit:
                break
            if maxlen is not None:
                remove = len(entries) - count >= maxlen
            else:
                remove = node.last_id < minid
            if remove:
                del nodes[master]
                self._tail = None
                for _ in range(count):
                    self._pop_first()
                deleted += count
                continue
            if approx:
                break
            self.settle(node)
            removed = 0
            while removed < count:
                if maxlen is not None:
                    if len(entries) <= maxlen:
                        break
                elif self._id_at(self._head) >= minid:
                    break
                entry_id, fields = self._pop_first()
                node.dead[entry_id] = fields
                removed += 1
            node.set_counts(count - removed, node.deleted + removed)
            deleted += removed
            break
        if not entries:
            self.first_id = (0, 0)
        elif deleted:
            self.first_id = self._id_at(self._head)
        return deleted

    def first_raw_id(self) -> StreamID:
        """streamGetEdgeID(first, tombstones included): what an approximate MINID trim
        propagates."""
        nodes = self.node_map()
        return nodes.peekitem(0)[0] if nodes else MAX_ID

    # -- consumer groups -------------------------------------------------------------------
    def has_tombstones(self, start: StreamID | None) -> bool:
        """streamRangeHasTombstones(start, +)."""
        if not len(self) or self.max_deleted_id == (0, 0):
            return False
        if self.first_id > self.max_deleted_id:
            return False
        return (start or (0, 0)) <= self.max_deleted_id

    def estimate_entries_read(self, group_id: StreamID) -> int:
        """streamEstimateDistanceFromFirstEverEntry."""
        added = self.entries_added
        if not added:
            return 0
        length = len(self)
        if not length and group_id <= self.last_id:
            return added
        if group_id == self.last_id:
            return added
        if group_id > self.last_id:
            return INVALID_ENTRIES_READ
        if self.max_deleted_id == (0, 0) or self.max_deleted_id < self.first_id:
            if group_id < self.first_id:
                return added - length
            if group_id == self.first_id:
                return added - length + 1
        return INVALID_ENTRIES_READ

    def lag(self, group: StreamGroup) -> int | None:
        """streamReplyWithCGLag: entries not yet delivered to ``group``, None if unknown."""
        if not self.entries_added:
            return 0
        if group.entries_read != INVALID_ENTRIES_READ and not self.has_tombstones(
                group.last_id):
            return self.entries_added - group.entries_read
        entries_read = self.estimate_entries_read(group.last_id)
        if entries_read != INVALID_ENTRIES_READ:
            return self.entries_added - entries_read
        return None


def _join(entries: dict, tier: dict) -> None:
    """``entries.update(tier)`` leaving ``entries``'s table as single insertions would (its
    size is in the memory estimate): a dict's update inserts one by one with the hashes it
    has, unless the target's table is too small for all of them (then it is resized to fit
    first, to a size of its own) or empty (then it becomes a copy): those cases go through
    ``items()``, one insertion each."""
    entries.update(tier if len(entries) >= len(tier) else tier.items())


# How many of XADD's newest entries wait in ``Stream._fresh`` (and as many in ``_aging``):
# far more than a young collection's threshold (700 new objects; each entry brings two).
_FRESH_ENTRIES = 2048

_COMPARED = ("last_id", "first_id", "max_deleted_id", "entries_added", "groups")
