"""DEBUG SDSLEN, LISTPACK, QUICKLIST, HTSTATS and HTSTATS-KEY against
redis-server 7.0: the same replies and errors, and for LISTPACK / QUICKLIST the same
structure printed on stdout (but for addresses, which are C pointers in Redis)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import redis
from support import RedisServer, ThreadedServer, outcome, poll

from kvrepl.config import Config

# A hash and a sorted set in listpacks: 7-bit, 13-bit, 16/24/32/64-bit integers and strings
# with 6-bit, 12-bit and 32-bit lengths; a list of several packed nodes and a plain one.
HASH = {"a": "1", "n13": "-4000", "n16": "30000", "n24": "-8000000", "n32": "2000000000",
        "n64": "9000000000000", "s6": "x" * 63, "s12": "y" * 64, "neg": "-1"}
LIST = ["1", "two", "x" * 70, "-5", "plain" * 40, "4", "5", "6", "7", "8"]


@pytest.fixture
def pair(tmp_path: Path, capfd: pytest.CaptureFixture[str]):
    options = ("--hash-max-listpack-value", "70000", "--list-max-listpack-size", "4")
    real = RedisServer("--enable-debug-command", "yes", *options,
                       stdout=tmp_path / "redis.out")
    ours = ThreadedServer(Config(save=(), enable_debug_command="yes",
                                 hash_max_listpack_value=70000,
                                 list_max_listpack_size=4)).start()
    clients = (ours.client(), real.client())
    for client in clients:
        client.execute_command("DEBUG", "QUICKLIST-PACKED-THRESHOLD", "150")
        client.hset("hash", mapping=HASH)
        client.hset("bighash", mapping={f"f{i}": i for i in range(600)})
        client.zadd("zset", {"m1": 1.5, "m2": -3, "long" * 15: 1e100})
        client.zadd("bigzset", {f"m{i}": i for i in range(300)})
        client.rpush("list", *LIST)
        client.sadd("intset", 1, 2, 3)
        client.sadd("set", *[f"m{i}" for i in range(300)])
        client.set("embstr", "hello")
        client.set("raw", "r" * 300)
        client.set("int", "12345")
    yield clients, (lambda: capfd.readouterr().out), tmp_path / "redis.out"
    for client in clients:
        client.execute_command("DEBUG", "QUICKLIST-PACKED-THRESHOLD", "0")
    ours.stop()
    real.stop()


def flushed(client: redis.Redis, theirs_file: Path, mark: str) -> int:
    """Where redis-server's stdout ends once its next log line (DEBUG LOG ``mark``) flushed
    it: a buffered file, printf's output waits there."""
    client.execute_command("DEBUG", "LOG", mark)
    poll(lambda: f"DEBUG LOG: {mark}".encode() in theirs_file.read_bytes(), "redis flushed")
    return theirs_file.stat().st_size


def printed(ours_out: str, theirs_file: Path, client: redis.Redis, start: int
            ) -> tuple[str, str]:
    """What each server printed for the last command, addresses left out."""
    flushed(client, theirs_file, "after")
    text = theirs_file.read_bytes()[start:].decode("latin-1")
    theirs = text[:text.rindex("\n", 0, text.index("DEBUG LOG: after")) + 1]
    theirs = "\n".join(line for line in theirs.splitlines() if not re.match(
        r"^\d+:[CMSX] \d", line))  # its log lines
    strip = re.compile(r"\taddr: 0x[0-9a-f]+,\n")
    return strip.sub("", ours_out).rstrip("\n"), strip.sub("", theirs + "\n").rstrip("\n")


@pytest.mark.parametrize(("command", "key"), [
    ("LISTPACK", "hash"), ("LISTPACK", "zset"), ("QUICKLIST", "list")])
def test_listpack_and_quicklist_print_what_redis_prints(pair, command: str, key: str) -> None:
    (ours, theirs), our_stdout, their_file = pair
    start = flushed(theirs, their_file, "before")
    our_stdout()
    args = ("DEBUG", command, key) + (("1",) if command == "QUICKLIST" else ())
    reply = outcome(ours, args)
    assert reply == outcome(theirs, args)
    assert reply[0] == "ok" and reply[1].endswith(b"structure printed on stdout")
    mine, redis_text = printed(our_stdout(), their_file, theirs, start)
    assert mine == redis_text
    assert "{end}" in mine


def test_errors_and_wrong_encodings_are_redis_s(pair) -> None:
    (ours, theirs), _, _ = pair
    for args in [("DEBUG", "LISTPACK", "missing"), ("DEBUG", "LISTPACK", "bighash"),
                 ("DEBUG", "LISTPACK", "list"), ("DEBUG", "QUICKLIST", "hash"),
                 ("DEBUG", "QUICKLIST", "missing"), ("DEBUG", "SDSLEN", "missing"),
                 ("DEBUG", "SDSLEN", "int"), ("DEBUG", "SDSLEN", "hash"),
                 ("DEBUG", "HTSTATS-KEY", "missing"), ("DEBUG", "HTSTATS-KEY", "hash"),
                 ("DEBUG", "HTSTATS-KEY", "intset"), ("DEBUG", "HTSTATS-KEY", "list"),
                 ("DEBUG", "HTSTATS", "16"), ("DEBUG", "HTSTATS", "-1"),
                 ("DEBUG", "HTSTATS", "x"), ("DEBUG", "LISTPACK"),
                 ("DEBUG", "QUICKLIST", "list", "0", "extra")]:
        assert outcome(ours, args) == outcome(theirs, args), args


def fields(reply: bytes) -> dict[str, str]:
    return dict(re.findall(r"(\w+): ?(-?\d+)", reply.decode()))


def test_sdslen_gives_the_lengths_redis_gives(pair) -> None:
    (ours, theirs), _, _ = pair
    for key, header in (("embstr", 3), ("raw", 5)):
        mine, real = (fields(c.execute_command("DEBUG", "SDSLEN", key)) for c in (ours, theirs))
        assert mine.keys() == real.keys()
        for name in ("key_sds_len", "val_sds_len", "key_sds_avail"):
            assert mine[name] == real[name], name
        # the sds kvrepl's string would need, before any allocator rounding
        assert int(mine["val_zmalloc"]) == header + int(mine["val_sds_len"]) + 1
        assert int(mine["val_zmalloc"]) <= int(real["val_zmalloc"])


def sections(text: str) -> list[tuple[str, int | None, int]]:
    """(section, table size of table 0, elements over all tables) of HTSTATS output: Redis
    may show a dict half rehashed as two tables, which kvrepl's never are."""
    found = []
    for part in re.split(r"^(?=\[)", text, flags=re.M):
        if not part:
            continue
        title = part.split("\n", 1)[0] if part.startswith("[") else ""
        size = re.search(r"Hash table 0 .*\n table size: (\d+)", part)
        elements = sum(map(int, re.findall(r"number of elements: (\d+)", part)))
        found.append((title, int(size.group(1)) if size else None, elements))
    return found


def test_htstats_reports_the_real_tables(pair) -> None:
    (ours, theirs), _, _ = pair
    for args in (("DEBUG", "HTSTATS", "0"), ("DEBUG", "HTSTATS-KEY", "bighash"),
                 ("DEBUG", "HTSTATS-KEY", "set"), ("DEBUG", "HTSTATS-KEY", "bigzset")):
        mine, real = (sections(c.execute_command(*args).decode()) for c in (ours, theirs))
        assert [(title, count) for title, _, count in mine] == [
            (title, count) for title, _, count in real], args
        for _, size, count in mine:
            assert size is None if not count else size >= count  # open addressing
    # an empty expires table, as Redis says it
    assert ours.execute_command("DEBUG", "HTSTATS", "0").decode().endswith(
        "[Expires HT]\nHash table 0 stats (main hash table):\n"
        "No stats available for empty dictionaries\n")
