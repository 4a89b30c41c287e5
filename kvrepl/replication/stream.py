"""Turning propagated writes into the replication stream's bytes (Redis's
``replicationFeedSlaves``): one RESP multibulk per command, a SELECT when the db changes."""

from __future__ import annotations

from collections.abc import Callable

_LENGTHS = [b"%d\r\n" % n for n in range(4096)]  # "<len>\r\n" of short arguments


def encode_command(argv: list[bytes]) -> bytes:
    """``argv`` as the RESP multibulk a replica parses."""
    n = len(argv)
    lengths = _LENGTHS
    if n == 3:  # the common shape gets one join (every write pays for this)
        a, b, c = argv
        la, lb, lc = len(a), len(b), len(c)
        if la < 4096 and lb < 4096 and lc < 4096:
            return b"".join((b"*3\r\n$", lengths[la], a, b"\r\n$", lengths[lb], b,
                             b"\r\n$", lengths[lc], c, b"\r\n"))
    parts = [b"*%d\r\n" % n]
    for arg in argv:
        size = len(arg)
        parts += (b"$", lengths[size] if size < 4096 else b"%d\r\n" % size, arg, b"\r\n")
    return b"".join(parts)


def encode_commands(commands: list[list[bytes]]) -> bytes:
    """Several commands' multibulks, one after the other, built with one join."""
    lengths = _LENGTHS
    parts: list[bytes] = []
    for argv in commands:
        if len(argv) == 3:
            a, b, c = argv
            la, lb, lc = len(a), len(b), len(c)
            if la < 4096 and lb < 4096 and lc < 4096:
                parts += (b"*3\r\n$", lengths[la], a, b"\r\n$", lengths[lb], b,
                          b"\r\n$", lengths[lc], c, b"\r\n")
                continue
        parts.append(encode_command(argv))
    return b"".join(parts)


def encode_each_with(argv: list[bytes], index: int, values: list[bytes]) -> bytes:
    """:func:`encode_commands` of copies of ``argv`` with argument ``index`` replaced by each
    of ``values`` in turn (a run of ``XADD key * ...`` propagated with the IDs it chose):
    the shared parts encoded once, and one join for all when the values are of one
    length."""
    before = b"*%d\r\n" % len(argv) + b"".join(
        [b"$%d\r\n%s\r\n" % (len(arg), arg) for arg in argv[:index]])
    after = b"".join([b"$%d\r\n%s\r\n" % (len(arg), arg) for arg in argv[index + 1:]])
    size = len(values[0])
    if len(set(map(len, values))) == 1:
        lead = before + b"$%d\r\n" % size
        return lead + (b"\r\n" + after + lead).join(values) + b"\r\n" + after
    return b"".join([b"%s$%d\r\n%s\r\n%s" % (before, len(value), value, after)
                     for value in values])


_SELECTS = [b"*2\r\n$6\r\nSELECT\r\n$%d\r\n%d\r\n" % (len(b"%d" % db), db) for db in range(16)]


def encode_select(db: int) -> bytes:
    """``SELECT <db>`` as the stream carries it before a write to another db."""
    return _SELECTS[db] if db < 16 else encode_command([b"SELECT", b"%d" % db])


class StreamFeed:
    """Encodes each propagated command once and hands the bytes to every consumer.

    ``selected_db`` is Redis's ``slaveseldb``: -1 forces a SELECT before the next command
    (after a full-sync setup or a promotion).
    """

    def __init__(self) -> None:
        self.selected_db = -1
        self.consumers: list[Callable[[bytes], None]] = []

    def feed(self, db: int, argv: list[bytes]) -> bytes:
        return self.feed_encoded(db, encode_command(argv))

    def feed_encoded(self, db: int, data: bytes) -> bytes:
        """Commands already encoded (a run of them), all for ``db``."""
        if db != self.selected_db and db >= 0:
            data = encode_select(db) + data
            self.selected_db = db
        for consumer in self.consumers:
            consumer(data)
        return data

    def feed_raw(self, data: bytes) -> None:
        """Bytes that need no SELECT (cron PING, REPLCONF GETACK, a proxied master stream)."""
        for consumer in self.consumers:
            consumer(data)
