"""What a replica logs while it cannot reach its master: Redis 7.0's lines (replication.c:
connectWithMaster, syncWithMaster), one attempt a second (replicationCron), and a traceback
only for a bug. A redis-server replica of a closed port logs, every second:

    * Connecting to MASTER 127.0.0.1:PORT
    * MASTER <-> REPLICA sync started
    # Error condition on socket for SYNC: Connection refused

The retries are timed with trio's MockClock (autojump): no test waits for real seconds.
"""

from __future__ import annotations

import logging
import socket

import pytest
import trio
import trio.testing
from support import free_port

import kvrepl
from kvrepl.log import logger


class Lines(logging.Handler):
    """The kvrepl log, as (trio time, level, message, traceback or None)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[tuple[float, str, str, object]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((trio.current_time(), record.levelname, record.getMessage(),
                           record.exc_info))

    def messages(self) -> list[str]:
        return [line[2] for line in self.lines]


@pytest.fixture
def lines() -> Lines:
    handler = Lines()
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


async def attempts(replica: kvrepl.Node, lines: Lines, count: int, last: str) -> None:
    with trio.fail_after(60):  # trio's (mock) seconds
        while sum(message == last for message in lines.messages()) < count:
            await trio.sleep(0.01)


async def test_master_down_is_logged_as_redis_does_once_a_second(lines: Lines, autojump_clock) -> None:
    port = free_port()  # nothing listens there
    async with kvrepl.Master() as replica:
        replica.follow_address("127.0.0.1", port)
        refused = "Error condition on socket for SYNC: Connection refused"
        await attempts(replica, lines, 3, refused)
    connect = f"Connecting to MASTER 127.0.0.1:{port}"
    relevant = [line for line in lines.lines if line[2] in (
        connect, "MASTER <-> REPLICA sync started", refused)]
    assert [(level, message) for _, level, message, _ in relevant[:9]] == [
        ("INFO", connect), ("INFO", "MASTER <-> REPLICA sync started"),
        ("WARNING", refused)] * 3
    assert not any("unexpected" in message for message in lines.messages())
    assert all(exc_info is None for *_, exc_info in lines.lines)
    # The next attempt comes one second after a failure, as with Redis's cron.
    times = [when for when, *_ in relevant[:9]]
    assert [round(times[i + 1] - times[i], 6) for i in (2, 5)] == [1.0, 1.0]


async def test_an_unresolvable_master_is_unable_to_connect(lines: Lines, autojump_clock) -> None:
    async with kvrepl.Master() as replica:
        async def connect() -> trio.abc.Stream:  # what trio raises for a name with no address
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

        replica._follow(connect, ("no-such-host.invalid", 6379))
        await attempts(replica, lines, 2,
                       "Unable to connect to MASTER: Name or service not known")
    assert "MASTER <-> REPLICA sync started" not in lines.messages()
    assert all(exc_info is None for *_, exc_info in lines.lines)


async def test_a_bug_keeps_its_traceback(lines: Lines, autojump_clock) -> None:
    async with kvrepl.Master() as replica:
        async def connect() -> trio.abc.Stream:
            raise ZeroDivisionError("a bug")

        replica._follow(connect, ("buggy", 0))
        await attempts(replica, lines, 1, "MASTER <-> REPLICA sync: unexpected error")
    bug = [line for line in lines.lines if "unexpected" in line[2]][0]
    assert bug[1] == "ERROR" and bug[3][0] is ZeroDivisionError
