"""The replication backlog: the last ``repl-backlog-size`` stream bytes, by absolute offset.

Offsets follow Redis: ``master_repl_offset`` counts every stream byte ever produced; the
backlog holds bytes ``first_byte_offset .. master_repl_offset`` (inclusive, 1-based), so a
replica that has processed offset ``N`` asks for ``N + 1`` and can continue when
``first_byte_offset <= N + 1 <= master_repl_offset + 1``.
"""

from __future__ import annotations

from collections.abc import Callable


class Backlog:
    """A byte window over the replication stream. No I/O."""

    __slots__ = ("size", "_buf", "_start", "master_repl_offset", "before_trim")

    def __init__(self, size: int, master_repl_offset: int = 0) -> None:
        if size <= 0:
            raise ValueError("backlog size must be positive")
        self.size = size
        self._buf = bytearray()
        self.master_repl_offset = master_repl_offset
        self._start = master_repl_offset + 1  # offset of _buf[0]
        # Called before bytes are dropped (all of them still here): who reads the stream
        # from the backlog (the replication buffer's model) reads what it has not yet.
        self.before_trim: Callable[[], None] | None = None

    @property
    def first_byte_offset(self) -> int:
        return self._start

    @property
    def histlen(self) -> int:
        return len(self._buf)

    def append(self, data: bytes) -> None:
        """Add stream bytes; the oldest fall out once more than ``size`` are held."""
        self._buf += data
        self.master_repl_offset += len(data)
        excess = len(self._buf) - self.size
        # Trim in batches: deleting from the front moves the whole buffer.
        if excess > 0 and (excess >= self.size // 4 or excess >= 1 << 20 or len(data) > self.size):
            if self.before_trim is not None:
                self.before_trim()
            del self._buf[:excess]
            self._start += excess

    def can_continue_from(self, offset: int) -> bool:
        """True when the bytes from ``offset`` (the next one a replica wants) are all here."""
        lowest = max(self._start, self.master_repl_offset + 1 - self.size)
        return lowest <= offset <= self.master_repl_offset + 1

    def held_from(self, offset: int) -> bytes | None:
        """Every byte still held from ``offset`` on (past what a replica may continue
        from, until the next trim); None when some of them are gone."""
        if not self._start <= offset <= self.master_repl_offset + 1:
            return None
        return bytes(self._buf[offset - self._start:])

    def read_from(self, offset: int) -> bytes:
        """The bytes from ``offset`` to the end; ValueError when they are gone."""
        if not self.can_continue_from(offset):
            raise ValueError(f"offset {offset} is outside the backlog")
        return bytes(self._buf[offset - self._start:])

    def resize(self, size: int) -> None:
        """CONFIG SET repl-backlog-size: keep the newest bytes that fit."""
        self.size = size
        excess = len(self._buf) - size
        if excess > 0:
            del self._buf[:excess]
            self._start += excess

    def _check(self) -> None:
        assert self._start + len(self._buf) == self.master_repl_offset + 1
        assert len(self._buf) <= max(self.size * 5 // 4 + (1 << 20), self.size)
