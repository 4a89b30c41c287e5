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

from collections import deque
from collections.abc import Iterator

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
