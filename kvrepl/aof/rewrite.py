"""An AOF base written as commands (``aof-use-rdb-preamble no``): Redis's
rewriteAppendOnlyFileRio, as a writer the snapshot producer drives in place of the RDB
writer (same ``begin`` / ``write_batch`` / ``finish`` calls). Sans-IO: values in, bytes out.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable

from kvrepl.replication.stream import encode_command, encode_select
from kvrepl.store.values import ZSet

#: AOF_REWRITE_ITEMS_PER_CMD: elements per RPUSH / SADD / ZADD / HMSET.
ITEMS_PER_CMD = 64


class RewriteError(Exception):
    """A value the command form cannot express here (the rewrite fails, files unchanged)."""


def _score(value: float) -> bytes:
    # Shortest text that reads back as the same double (Redis writes %.17g).
    return repr(value).encode()


class CommandWriter:
    """Writes a keyspace as the commands that rebuild it, one key at a time."""

    def __init__(self, timestamp: bool = False) -> None:
        self.timestamp = timestamp
        self._db: int | None = None

    def begin(self, aux: object = None, functions: Iterable[bytes] = ()) -> bytes:
        """The timestamp annotation (aof-timestamp-enabled) and the function libraries."""
        parts = [b"#TS:%d\r\n" % int(time.time())] if self.timestamp else []
        parts += [encode_command([b"FUNCTION", b"LOAD", code]) for code in functions]
        self._db = None
        return b"".join(parts)

    def write_batch(self, db: int, items: Iterable[tuple[bytes, object]],
                    expires: dict[bytes, int] | None,
                    db_sizes: dict[int, tuple[int, int]] | None = None) -> bytes:
        parts = []
        if db != self._db:
            parts.append(encode_select(db))
            self._db = db
        for key, value in items:
            parts += self._value(key, value)
            expire = expires.get(key) if expires else None
            if expire is not None:
                parts.append(encode_command([b"PEXPIREAT", key, b"%d" % expire]))
        return b"".join(parts)

    def finish(self) -> bytes:
        return b""

    def _value(self, key: bytes, value: object) -> list[bytes]:
        kind = type(value)
        if kind is bytes:
            return [encode_command([b"SET", key, value])]  # type: ignore[list-item]
        if kind is deque:
            return _chunked(b"RPUSH", key, list(value))  # type: ignore[call-overload]
        if kind is set:
            return _chunked(b"SADD", key, list(value))  # type: ignore[call-overload]
        if kind is dict:
            flat = [x for pair in value.items() for x in pair]  # type: ignore[attr-defined]
            return _chunked(b"HMSET", key, flat, 2)
        if kind is ZSet:
            flat = [x for score, member in value for x in (_score(score), member)]  # type: ignore[attr-defined]
            return _chunked(b"ZADD", key, flat, 2)
        raise RewriteError(f"kvrepl cannot write a {kind.__name__} value as AOF commands "
                           f"(key {key[:100]!r}); use aof-use-rdb-preamble yes")


def _chunked(command: bytes, key: bytes, flat: list[bytes], width: int = 1) -> list[bytes]:
    step = ITEMS_PER_CMD * width
    return [encode_command([command, key, *flat[i:i + step]])
            for i in range(0, len(flat), step)]
