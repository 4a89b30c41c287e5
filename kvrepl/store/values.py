"""Value types of the store.

Redis's five types map onto built-ins wherever one fits, because built-ins are what CPython
does fastest:

========  =====================================================
string    ``bytes``
list      ``collections.deque`` of ``bytes``
hash      ``dict`` of ``bytes`` to ``bytes``
set       ``set`` of ``bytes``
zset      :class:`ZSet` (``dict`` member->score + ``SortedList`` of ``(score, member)``)
========  =====================================================
"""

from __future__ import annotations

import copy
import math
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from sortedcontainers import SortedList


class ZSet:
    """A sorted set: O(1) score lookup, O(log n) rank and range.

    ``scores`` maps member to score; ``ordered`` holds ``(score, member)`` pairs in Redis's
    order (score, then member bytes), so ties sort lexicographically as in Redis.
    """

    __slots__ = ("scores", "ordered")

    def __init__(self, pairs: dict[bytes, float] | None = None) -> None:
        self.scores: dict[bytes, float] = dict(pairs) if pairs else {}
        self.ordered: SortedList = SortedList((s, m) for m, s in self.scores.items())

    def __len__(self) -> int:
        return len(self.scores)

    def __contains__(self, member: bytes) -> bool:
        return member in self.scores

    def __iter__(self) -> Iterator[tuple[float, bytes]]:
        return iter(self.ordered)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ZSet) and self.scores == other.scores

    def __repr__(self) -> str:
        return f"ZSet({list(self.ordered)!r})"

    def score(self, member: bytes) -> float | None:
        return self.scores.get(member)

    def add(self, member: bytes, score: float) -> bool:
        """Set ``member``'s score; return True when the member is new."""
        old = self.scores.get(member)
        if old is not None:
            if old == score:
                return False
            self.ordered.remove((old, member))
            self.scores[member] = score
            self.ordered.add((score, member))
            return False
        self.scores[member] = score
        self.ordered.add((score, member))
        return True

    def remove(self, member: bytes) -> bool:
        old = self.scores.pop(member, None)
        if old is None:
            return False
        self.ordered.remove((old, member))
        return True

    def rank(self, member: bytes) -> int | None:
        score = self.scores.get(member)
        if score is None:
            return None
        return self.ordered.index((score, member))

    def copy(self) -> ZSet:
        new = ZSet.__new__(ZSet)
        new.scores = dict(self.scores)
        new.ordered = SortedList(self.ordered)
        return new

    def score_index(self, score: float, after: bool = False) -> int:
        """The rank of the first member whose score is ``>= score`` (``> score`` if ``after``).

        O(log n). ``(score,)`` sorts before every ``(score, member)``, so it is a bisection
        key needing no sentinel member; "greater than" is "at least the next double up".
        """
        if after:
            if score == math.inf:
                return len(self.ordered)
            score = math.nextafter(score, math.inf)
        return self.ordered.bisect_left((score,))

    def lex_index(self, member: bytes, after: bool = False) -> int:
        """The rank of the first member ``>= member`` (``> member`` if ``after``) in bytes order.

        Meant for sets whose members all have one score, where score order is member order
        (what ZRANGEBYLEX requires). That case is one O(log n) bisection; with mixed scores
        a binary search over ranks keeps the call O(log^2 n) and deterministic.
        """
        ordered = self.ordered
        size = len(ordered)
        if not size:
            return 0
        first = ordered[0][0]
        if first == ordered[-1][0]:
            if after:
                return ordered.bisect_right((first, member))
            return ordered.bisect_left((first, member))
        low, high = 0, size
        while low < high:
            middle = (low + high) // 2
            current = ordered[middle][1]
            if current < member or (after and current == member):
                low = middle + 1
            else:
                high = middle
        return low

    def remove_ranks(self, start: int, stop: int) -> int:
        """Remove the members of ranks ``start <= rank < stop``; return how many went."""
        if start >= stop:
            return 0
        removed = self.ordered[start:stop]
        del self.ordered[start:stop]
        scores = self.scores
        for _, member in removed:
            del scores[member]
        return len(removed)

    def pop_rank(self, rank: int) -> tuple[float, bytes]:
        """Remove and return the ``(score, member)`` at ``rank`` (0 = lowest, -1 = highest)."""
        score, member = self.ordered.pop(rank)
        del self.scores[member]
        return score, member

    def _check(self) -> None:
        """Assert the two indexes agree (tests call this after every step)."""
        assert len(self.scores) == len(self.ordered)
        for score, member in self.ordered:
            assert self.scores[member] == score


def type_name(value: object) -> bytes:
    """The name ``TYPE`` answers for a stored value."""
    return _TYPE_NAMES[type(value)]


_TYPE_NAMES = {bytes: b"string", deque: b"list", dict: b"hash", set: b"set", ZSet: b"zset"}


def copy_value(value: object) -> object:
    """A deep-enough copy: the containers are new, the ``bytes`` inside are shared (immutable)."""
    if type(value) is bytes:
        return value
    return value.copy()


# -- streams ---------------------------------------------------------------------------------
# Only what RDB load/save needs (no X* commands yet): the data and metadata t_stream.c keeps.

StreamID = tuple[int, int]  # (ms, seq), both unsigned 64-bit


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
    pending: list[StreamID] = field(default_factory=list)
    active_time: int | None = None  # only RDB 11+ (Redis 7.2) files carry it


@dataclass
class StreamGroup:
    """A consumer group (streamCG)."""

    name: bytes
    last_id: StreamID = (0, 0)
    entries_read: int = -1  # -1: unknown (SCG_INVALID_ENTRIES_READ)
    pending: dict[StreamID, StreamNack] = field(default_factory=dict)
    consumers: dict[bytes, StreamConsumer] = field(default_factory=dict)


class Stream:
    """A stream: ``entries`` maps ``(ms, seq)`` to the entry's flat ``[field, value, ...]``
    list (as given to XADD, duplicates kept), in ID order; plus the stream metadata and the
    consumer groups by name. An empty stream is a valid value (unlike empty lists)."""

    __slots__ = ("entries", "last_id", "first_id", "max_deleted_id", "entries_added", "groups")

    def __init__(self) -> None:
        self.entries: dict[StreamID, list[bytes]] = {}
        self.last_id: StreamID = (0, 0)
        self.first_id: StreamID = (0, 0)
        self.max_deleted_id: StreamID = (0, 0)
        self.entries_added = 0
        self.groups: dict[bytes, StreamGroup] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Stream) and all(
            getattr(self, name) == getattr(other, name) for name in Stream.__slots__)

    def __repr__(self) -> str:
        return (f"Stream({len(self.entries)} entries, last_id={self.last_id}, "
                f"groups={list(self.groups)})")

    def copy(self) -> Stream:
        new = Stream()
        new.entries = dict(self.entries)  # entry lists are never mutated in place
        new.last_id, new.first_id = self.last_id, self.first_id
        new.max_deleted_id, new.entries_added = self.max_deleted_id, self.entries_added
        new.groups = copy.deepcopy(self.groups)
        return new


_TYPE_NAMES[Stream] = b"stream"
