"""A replica never skips a write silently (Redis 7.0's afterErrorReply for the master client).

A command of the master's stream that fails on the replica (a command kvrepl does not know,
a wrong type only the replica has) is logged CRITICAL as redis-server logs it, counted in
INFO (errorstats, total_error_replies, unexpected_error_replies), told to ``changes()``
consumers (WriteSkipped) and, with ``propagation-error-behavior panic``/``panic-on-replicas``
on a read-only replica, stops the node. Also ``replica-ignore-disk-write-errors``.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import trio
from support import START_DEADLINE, RedisServer, free_port, poll, replica_link_up

import kvrepl
from kvrepl.replication.stream import encode_command

# A write the master's stream carries that fails on every replica: the master has more
# databases than its replicas (the default 16) and writes in one they lack.
MASTER_DATABASES = ("--databases", "32")
DB_OUT_OF_RANGE = "DB index is out of range"  # as the log shows it (no -ERR, as Redis)
CRITICAL = re.compile(r"== CRITICAL == This replica is sending an error to its master: "
                      r"'(.*)' after processing the command '(.*)'")


async def _offset(client) -> int:
    return await trio.to_thread.run_sync(
        lambda: client.info("replication")["master_repl_offset"])


def _criticals(lines: list[str]) -> list[tuple[str, str]]:
    return [m.groups() for line in lines if (m := CRITICAL.search(line))]


async def test_failures_from_a_redis_master_are_logged_counted_and_told(caplog):
    """A real redis-server master with 32 databases writes in db 20 (SELECT 20 fails on
    replicas with 16) an LPUSH on a key that only the (writable) replicas hold, as a
    string, in db 0 (where the LPUSH lands there). The kvrepl replica logs both failures
    as a redis-server replica beside it does, counts them, tells its changes() consumer in
    order, keeps the link up and applies what follows."""
    master = RedisServer("--repl-diskless-sync-delay", "0", *MASTER_DATABASES)
    real_replica = None
    try:
        real_log = Path(master.dir) / "replica.log"
        real_replica = RedisServer("--replicaof", "127.0.0.1", str(master.port),
                                   "--replica-read-only", "no", "--logfile", str(real_log))
        client = master.client()
        caplog.set_level(logging.WARNING, logger="kvrepl")
        async with kvrepl.Replica(follow=("127.0.0.1", master.port),
                                  replica_read_only=False) as replica:
            await replica.wait_synced()
            await replica_link_up(real_replica.client())
            # Only the replicas hold "k" as a string.
            replica.set(b"k", b"string")
            real_replica.client().set("k", "string")
            changes = replica.changes()

            def write() -> None:
                pipe = client.pipeline(transaction=False)  # one connection, in order
                pipe.set("before", "1")
                pipe.execute_command("SELECT", 20)
                pipe.lpush("k", "x")
                pipe.execute_command("SELECT", 0)
                pipe.set("after", "2")
                pipe.execute()

            await trio.to_thread.run_sync(write)
            offset = await _offset(client)
            await replica.following.wait_offset(offset)
            await trio.to_thread.run_sync(lambda: poll(
                lambda: real_replica.client().info("replication")["slave_repl_offset"]
                >= offset, "the redis-server replica caught up"))

            assert replica.get(b"after") == b"2" and replica.following.link_up
            assert replica.get(b"k") == b"string"
            ours = _criticals([r.getMessage() for r in caplog.records])
            theirs = _criticals(real_log.read_text().splitlines())
            # both fail on both replicas
            assert len(ours) == 2 and ours == theirs
            assert ours[1] == ("-WRONGTYPE Operation against a key holding the wrong kind of "
                               "value", "lpush")
            assert ours[0] == (DB_OUT_OF_RANGE, "select")
            latest = [r.getMessage() for r in caplog.records
                      if r.getMessage().startswith("Latest backlog is: '\"")]
            assert len(latest) == 2 and "before" in latest[0] and "SELECT" in latest[1]

            stats = replica.execute_command("INFO", "stats").decode()
            assert "\r\nunexpected_error_replies:2\r\n" in stats
            assert "\r\ntotal_error_replies:2\r\n" in stats
            errorstats = replica.execute_command("INFO", "errorstats").decode()
            assert "errorstat_ERR:count=1" in errorstats
            assert "errorstat_WRONGTYPE:count=1" in errorstats
            real_stats = real_replica.client().info("stats")
            assert real_stats["unexpected_error_replies"] == 2

            assert replica.unexpected_error_replies == 2
            skipped = replica.skipped_writes
            assert [s.command for s in skipped] == ["select", "lpush"]
            assert skipped[1].argv == [b"LPUSH", b"k", b"x"] and skipped[1].db == 0
            assert skipped[1].error.startswith("WRONGTYPE")

            seen = []
            with pytest.raises(kvrepl.WriteSkipped) as first:
                async for change in changes:
                    seen.append(change.command)
            assert seen == [b"SET"] and first.value.command == "select"
            with pytest.raises(kvrepl.WriteSkipped) as second:
                await changes.__anext__()
            assert second.value.command == "lpush"
            assert (await changes.__anext__()).args == (b"after", b"2")
    finally:
        if real_replica is not None:
            real_replica.stop()
        master.stop()


async def _master_sends(master: kvrepl.Master, *argv: bytes) -> None:
    """A command in the master's stream that its own dataset never saw: the stream is
    crafted, so what the replica receives does not depend on what kvrepl implements."""
    master.replication.feed_raw(encode_command(list(argv)))


@pytest.mark.parametrize("behavior", ["panic", "panic-on-replicas"])
async def test_panic_behaviors_stop_a_read_only_replica(behavior, caplog):
    caplog.set_level(logging.WARNING, logger="kvrepl")
    async with kvrepl.Master() as master:
        master.set(b"before", b"1")
        replica = kvrepl.Replica(follow=master, propagation_error_behavior=behavior)
        with pytest.raises(kvrepl.ReplicaPanic) as raised:
            async with replica:
                await replica.wait_synced()
                await _master_sends(master, b"NOSUCHCOMMAND", b"x")
                master.set(b"after", b"2")
                await trio.sleep_forever()  # the replica's panic cancels this
        assert str(raised.value) == ("This replica panicked sending an error to its master "
                                     "after processing the command '<unknown>'")
        assert replica.failure is raised.value
        assert replica.get(b"before") == b"1" and replica.get(b"after") is None
        messages = [r.getMessage() for r in caplog.records]
        assert _criticals(messages) == [
            ("unknown command 'NOSUCHCOMMAND', with args beginning with: 'x' ", "<unknown>")]
        assert f"Guru Meditation: {raised.value}" in messages


@pytest.mark.parametrize("behavior, read_only", [("ignore", True), ("panic", False),
                                                 ("panic-on-replicas", False)])
async def test_ignore_or_a_writable_replica_logs_and_goes_on(behavior, read_only, caplog):
    """Redis panics only on a read-only replica; otherwise (and with ``ignore``) the
    failure is logged and counted, and the replica keeps following."""
    caplog.set_level(logging.WARNING, logger="kvrepl")
    async with kvrepl.Master() as master, kvrepl.Replica(
            follow=master, propagation_error_behavior=behavior,
            replica_read_only=read_only) as replica:
        await replica.wait_synced()
        master.set(b"k", b"v")
        await replica.wait_synced()
        # A write only the replica sees (made writable for it a moment)...
        replica.execute_command("CONFIG", "SET", "replica-read-only", "no")
        replica.set(b"mine", b"string")
        replica.execute_command("CONFIG", "SET", "replica-read-only",
                                "yes" if read_only else "no")
        master.sadd(b"mine", b"m")  # ...makes the master's SADD fail here only
        await _master_sends(master, b"NOSUCHCOMMAND")
        master.set(b"after", b"2")
        await replica.wait_synced()
        assert replica.get(b"after") == b"2" and replica.following.link_up
        assert replica.failure is None
        assert [(s.command, s.error.split()[0]) for s in replica.skipped_writes] == [
            ("sadd", "WRONGTYPE"), ("<unknown>", "ERR")]
        assert replica.unexpected_error_replies == 2
        assert len(_criticals([r.getMessage() for r in caplog.records])) == 2


async def test_a_failed_command_inside_the_masters_transaction_is_reported():
    """MULTI ... EXEC from the master with a command the replica cannot queue: the whole
    transaction is discarded (EXECABORT), as on redis-server; both are reported."""
    async with kvrepl.Master() as master, kvrepl.Replica(follow=master) as replica:
        await replica.wait_synced()
        for argv in ([b"MULTI"], [b"SET", b"t", b"1"], [b"NOSUCHCOMMAND"], [b"EXEC"]):
            await _master_sends(master, *argv)
        master.set(b"after", b"2")
        await replica.wait_synced()
        assert replica.get(b"t") is None and replica.get(b"after") == b"2"
        assert [(s.command, s.error.split()[0]) for s in replica.skipped_writes] == [
            ("<unknown>", "ERR"), ("exec", "EXECABORT")]


def test_kvrepl_server_exits_when_it_panics(tmp_path):
    """kvrepl-server --replicaof a redis-server with panic-on-replicas: the process stops
    with status 1 and redis-server's panic lines after the CRITICAL one."""
    master = RedisServer("--repl-diskless-sync-delay", "0", *MASTER_DATABASES)
    port = free_port()
    env = dict(os.environ,
               PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""))
    process = subprocess.Popen(
        [sys.executable, "-m", "kvrepl", "--port", str(port), "--save", "", "--dir",
         str(tmp_path), "--replicaof", "127.0.0.1", str(master.port),
         "--propagation-error-behavior", "panic-on-replicas"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        client = master.client()
        poll(lambda: client.info("replication")["connected_slaves"] == 1
             and client.info("replication")["slave0"]["state"] == "online",
             "the kvrepl replica is online", START_DEADLINE)  # its start, then its sync
        redis.Redis(port=master.port, db=20).set("k", "v")
        output, _ = process.communicate(timeout=20)
    finally:
        process.kill()
        master.stop()
    assert process.returncode == 1
    assert "== CRITICAL == This replica is sending an error to its master: " \
           f"'{DB_OUT_OF_RANGE}'" in output
    assert "Guru Meditation: This replica panicked sending an error to its master after " \
           "processing the command 'select'" in output


@pytest.mark.parametrize("ignore", [False, True])
async def test_a_replica_that_cannot_save_panics_on_a_write_unless_told(
        ignore, tmp_path, caplog):
    """processCommand for the master client while a failed BGSAVE denies writes:
    redis-server panics, or with replica-ignore-disk-write-errors yes applies the write
    and warns."""
    caplog.set_level(logging.WARNING, logger="kvrepl")
    gone = tmp_path / "gone"
    gone.mkdir()
    config = kvrepl.Config(save=((3600, 1),), dir=str(gone), repl_diskless_sync_delay=0,
                           replica_ignore_disk_write_errors=ignore)
    async with kvrepl.Master() as master:
        replica = kvrepl.Replica(follow=master, config=config)

        async def run() -> None:
            async with replica:
                await replica.wait_synced()
                gone.rmdir()
                replica.execute_command("BGSAVE")
                deadline = time.monotonic() + 20
                while not replica.engine.bgsave_failed:
                    assert time.monotonic() < deadline, "the BGSAVE did not fail"
                    await trio.sleep(0.01)
                master.set(b"k", b"v")
                await replica.wait_synced()
                assert replica.get(b"k") == b"v"

        if ignore:
            await run()
            assert ("Replica is applying a command even though it is unable to write to "
                    "disk.") in [r.getMessage() for r in caplog.records]
        else:
            with pytest.raises(kvrepl.ReplicaPanic,
                               match="Replica was unable to write command to disk."):
                await run()
            assert replica.get(b"k") is None


def test_unknown_command_error_quotes_arguments_as_redis(same) -> None:
    """The error the log line quotes: arguments up to 128 bytes in all, newlines as
    spaces."""
    same("NOSUCHCOMMAND", "a" * 100, "b" * 100, "c")
    same("NOSUCHCOMMAND", "x\r\ny", "z")
    same("NOSUCHCOMMAND", *["arg"] * 40)
