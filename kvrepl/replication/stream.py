"""Turning propagated writes into the replication stream's bytes (Redis's
``replicationFeedSlaves``): one RESP multibulk per command, a SELECT when the db changes."""

from __future__ import annotations

from collections.abc import Callable


def encode_command(argv: list[bytes]) -> bytes:
    """``argv`` as the RESP multibulk a replica parses."""
    parts = [b"*%d\r\n" % len(argv)]
    for arg in argv:
        parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(parts)


class StreamFeed:
    """Encodes each propagated command once and hands the bytes to every consumer.

    ``selected_db`` is Redis's ``slaveseldb``: -1 forces a SELECT before the next command
    (after a full-sync setup or a promotion).
    """

    def __init__(self) -> None:
        self.selected_db = -1
        self.consumers: list[Callable[[bytes], None]] = []

    def feed(self, db: int, argv: list[bytes]) -> bytes:
        data = encode_command(argv)
        if db != self.selected_db and db >= 0:
            data = encode_command([b"SELECT", b"%d" % db]) + data
            self.selected_db = db
        for consumer in self.consumers:
            consumer(data)
        return data

    def feed_raw(self, data: bytes) -> None:
        """Bytes that need no SELECT (cron PING, REPLCONF GETACK, a proxied master stream)."""
        for consumer in self.consumers:
            consumer(data)
