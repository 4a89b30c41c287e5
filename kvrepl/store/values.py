"""Value types of the store.

Redis's five types map onto built-ins wherever one fits, because built-ins are what CPython
does fastest:

========  ==========================================================================
string    ``bytes``, or ``bytearray`` once changed in place (see below)
list      ``collections.deque`` of ``bytes``
hash      ``dict`` of ``bytes`` to ``bytes``
set       ``set`` of ``bytes``
zset      :class:`ZSet` (``dict`` member->score + lazy ``SortedList`` of ``(score, member)``)
========  ==========================================================================

A string that SETBIT, BITFIELD, SETRANGE or APPEND change is kept as a ``bytearray`` and
changed in place from then on, so that those commands cost what they change, not the size of
the string (Redis's ``dbUnshareStringValue`` + ``sdsgrowzero``). A HyperLogLog that PFADD
promoted to the dense encoding is kept so too, for its register updates (until PFCOUNT writes
its cached count back). Such a string is always one Redis holds ``raw``, exactly the strings
those commands leave. Every other writer stores ``bytes``. Because a ``bytearray`` changes under its holders, it never leaves the store
as is: replies, the embedded API and other keys get ``bytes`` (:func:`string_bytes`) or a
copy (:func:`copy_value`), and a point-in-time snapshot copies it before a change (its
``before_write`` hook).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator

from sortedcontainers import SortedList


class ZSet:
    """A sorted set: O(1) score lookup, O(log n) rank and range.

    ``scores`` maps member to score; ``ordered`` holds ``(score, member)`` pairs in Redis's
    order (score, then member bytes), so ties sort lexicographically as in Redis.

    The order is built lazily, on the first call that needs it (a rank, a range, iteration,
    a pop), and kept up to date from then on. Many sets, above all those loaded from an RDB
    file, are only ever read by ZSCORE / ZCARD / ZMSCORE or not at all, and building the
    order was the biggest single cost of loading them. Until it is built, ``_ordered`` is
    None and only ``scores`` changes. Code outside this class may read ``scores`` freely but
    must change a set through its methods.
    """

    __slots__ = ("scores", "_ordered")

    def __init__(self, pairs: dict[bytes, float] | None = None) -> None:
        self.scores: dict[bytes, float] = dict(pairs) if pairs else {}
        self._ordered: SortedList | None = None

    @classmethod
    def from_scores(cls, scores: dict[bytes, float]) -> ZSet:
        """A set holding ``scores`` (taken, not copied), its order not built yet."""
        zset = cls.__new__(cls)
        zset.scores = scores
        zset._ordered = None
        return zset

    @property
    def ordered(self) -> SortedList:
        """The ``(score, member)`` pairs in rank order (built now if not yet)."""
        ordered = self._ordered
        if ordered is None:
            scores = self.scores
            ordered = self._ordered = SortedList(zip(scores.values(), scores, strict=False))
        return ordered

    @property
    def order_built(self) -> bool:
        """Whether ``ordered`` exists already (reading it builds it)."""
        return self._ordered is not None

    def __len__(self) -> int:
        return len(self.scores)

    def __contains__(self, member: bytes) -> bool:
        return member in self.scores

    def __iter__(self) -> Iterator[tuple[float, bytes]]:
        return iter(self.ordered)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ZSet) and self.scores == other.scores

    def __repr__(self) -> str:
        # Sorted aside, so that looking at a set (a debugger, a failing assert) changes nothing.
        pairs = self._ordered
        if pairs is None:
            pairs = sorted(zip(self.scores.values(), self.scores, strict=False))
        return f"ZSet({list(pairs)!r})"

    def score(self, member: bytes) -> float | None:
        return self.scores.get(member)

    def add(self, member: bytes, score: float) -> bool:
        """Set ``member``'s score; return True when the member is new."""
        scores = self.scores
        old = scores.get(member)
        if old is not None:
            if old == score:
                return False
            scores[member] = score
            ordered = self._ordered
            if ordered is not None:
                ordered.remove((old, member))
                ordered.add((score, member))
            return False
        scores[member] = score
        ordered = self._ordered
        if ordered is not None:
            ordered.add((score, member))
        return True

    def remove(self, member: bytes) -> bool:
        old = self.scores.pop(member, None)
        if old is None:
            return False
        ordered = self._ordered
        if ordered is not None:
            ordered.remove((old, member))
        return True

    def rank(self, member: bytes) -> int | None:
        score = self.scores.get(member)
        if score is None:
            return None
        ordered = self._ordered  # the attribute, not the property: this is a hot path
        return (self.ordered if ordered is None else ordered).index((score, member))

    def copy(self) -> ZSet:
        """An independent copy; it has its order built only if this set has."""
        new = ZSet.__new__(ZSet)
        new.scores = dict(self.scores)
        ordered = self._ordered
        new._ordered = None if ordered is None else SortedList(ordered)
        return new

    def score_index(self, score: float, after: bool = False) -> int:
        """The rank of the first member whose score is ``>= score`` (``> score`` if ``after``).

        O(log n). ``(score,)`` sorts before every ``(score, member)``, so it is a bisection
        key needing no sentinel member; "greater than" is "at least the next double up".
        """
        ordered = self.ordered
        if after:
            if score == math.inf:
                return len(ordered)
            score = math.nextafter(score, math.inf)
        return ordered.bisect_left((score,))

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
        ordered = self.ordered
        removed = ordered[start:stop]
        del ordered[start:stop]
        scores = self.scores
        for _, member in removed:
            del scores[member]
        return len(removed)

    def pop_rank(self, rank: int) -> tuple[float, bytes]:
        """Remove and return the ``(score, member)`` at ``rank`` (0 = lowest, -1 = highest)."""
        ordered = self._ordered
        score, member = (self.ordered if ordered is None else ordered).pop(rank)
        del self.scores[member]
        return score, member

    def _check(self) -> None:
        """Assert the two indexes agree (tests call this after every step); an order not
        built yet has nothing to disagree with."""
        ordered = self._ordered
        if ordered is None:
            return
        assert len(self.scores) == len(ordered)
        for score, member in ordered:
            assert self.scores[member] == score


def type_name(value: object) -> bytes:
    """The name ``TYPE`` answers for a stored value."""
    return _TYPE_NAMES[type(value)]


_TYPE_NAMES = {bytes: b"string", bytearray: b"string", deque: b"list", dict: b"hash",
               set: b"set", ZSet: b"zset"}

def is_string(value: object) -> bool:
    """True for a string value, whichever of its two forms."""
    kind = type(value)
    return kind is bytes or kind is bytearray


def string_bytes(value: bytes | bytearray) -> bytes:
    """The bytes of a stored string, safe to hand out: the value itself, or a copy of one
    changed in place (a later SETBIT must not reach a reply or a caller)."""
    return value if type(value) is bytes else bytes(value)


def copy_value(value: object) -> object:
    """A deep-enough copy: the containers are new, the ``bytes`` inside are shared (immutable);
    a string changed in place is copied too."""
    if type(value) is bytes:
        return value
    return value.copy()  # type: ignore[attr-defined]


# -- streams: the value class has its own module; re-exported here for the RDB code ---------
from kvrepl.store.stream import (  # noqa: E402
    Stream,
    StreamConsumer,
    StreamGroup,
    StreamID,
    StreamNack,
)

__all__ = ["Stream", "StreamConsumer", "StreamGroup", "StreamID", "StreamNack", "ZSet",
           "copy_value", "type_name"]

_TYPE_NAMES[Stream] = b"stream"
