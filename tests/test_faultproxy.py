"""Faults on the replication link (tests/faultproxy.py between master and replica), with
kvrepl and redis-server on either side.

For each case: the master holds a dataset, the replica holds an older one of its own, and a
thread keeps reading the replica's DEBUG DIGEST. The fault hits one phase of the sync (the
handshake, the PSYNC reply, the RDB payload of a framing, the ``$EOF`` mark) or of the live
stream (a command, GETACK under WAIT, the replica's ACK), then the link heals. Then:

* master and replica end with the same DEBUG DIGEST;
* every digest the replica showed meanwhile was its old dataset's or one the master had
  (never a half-loaded dataset, never a command the master did not send);
* a cut or stalled stream resumes with a partial resync, or a full one when the master
  wrote past its backlog meanwhile; a corrupt stream is noticed (a protocol error, the link
  dropped) and, as Redis does, followed by a full resync;
* the stream's first SET carries the value FLUSHALL: a flipped '*' there must not turn its
  lines into inline commands that the replica runs.

What no test here can claim: a byte flipped inside a value's bytes, or a length digit
changed so that the parse stays aligned, is applied as sent. Nor is the CR LF after an
argument checked: Redis, hiredis and kvrepl all skip those two bytes unread, so a flip there
changes nothing (and goes unnoticed, harmlessly). The stream has no checksum (nor
has Redis's); only corruption of the framing is detectable, and only that is tested. (TCP's
own checksum is what guards values in flight.) Corrupting the payload of a redis-server
replica is not tested either: redis-server exits on an RDB it cannot load from disk.

The suite runs a representative matrix; ``KVREPL_FAULTS=full`` (``make fuzz``) runs every
phase with every fault, both ways round.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis
from faultproxy import Fault, FaultProxy
from support import DEADLINE, RedisServer, ThreadedServer, poll

from kvrepl.config import Config

FULL = os.environ.get("KVREPL_FAULTS") == "full"
SYNC_WAIT = 40.0  # a fault costs a reconnection (a second) and perhaps a repl-timeout
FIRST_SET = b"*3\r\n$3\r\nSET\r\n$2\r\nw0\r\n"  # the stream's first SET, with the canary


@dataclass
class Node:
    """A kvrepl or redis-server node of a case."""

    kind: str
    server: ThreadedServer | RedisServer

    def client(self) -> redis.Redis:
        return self.server.client(socket_timeout=DEADLINE)

    def stop(self) -> None:
        self.server.stop()


# A stalled link, or a $EOF mark that never comes, ends when a side times out: a short
# repl-timeout keeps that to seconds, and a PING a second keeps a quiet link alive. The
# backlog is the smallest there is (16 KB), for the overrun cases.
REPL_TIMEOUT = 3


def start(kind: str, tmp_path, name: str, *, diskless: bool = True) -> Node:  # noqa: ANN001
    if kind == "kvrepl":
        folder = tmp_path / name
        folder.mkdir()
        return Node(kind, ThreadedServer(Config(
            save=(), dir=str(folder), repl_diskless_sync=diskless, repl_diskless_sync_delay=0,
            enable_debug_command="yes", repl_timeout=REPL_TIMEOUT,
            repl_ping_replica_period=1, repl_backlog_size=16384)).start())
    return Node(kind, RedisServer(
        "--enable-debug-command", "yes", "--repl-diskless-sync", "yes" if diskless else "no",
        "--repl-diskless-sync-delay", "0", "--repl-timeout", str(REPL_TIMEOUT),
        "--repl-ping-replica-period", "1", "--repl-backlog-size", "16kb"))


def info(client: redis.Redis, section: str) -> dict[str, str]:
    return {name: str(value) for name, value in client.info(section).items()}


def digest(client: redis.Redis) -> bytes:
    value = client.execute_command("DEBUG", "DIGEST")
    return value if isinstance(value, bytes) else value.encode()


class DigestWatch(threading.Thread):
    """Reads the replica's DEBUG DIGEST over and over: every dataset it served."""

    def __init__(self, node: Node) -> None:
        super().__init__(daemon=True)
        self.client = node.client()
        self.seen: set[bytes] = set()
        self.stopping = threading.Event()
        self.start()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.seen.add(digest(self.client))
            except redis.ResponseError:  # LOADING (redis-server): serving nothing
                pass
            except redis.ConnectionError:
                return

    def stop(self) -> set[bytes]:
        self.stopping.set()
        self.join(DEADLINE)
        self.client.close()
        return self.seen


def populate(client: redis.Redis) -> None:
    """A dataset of every type whose payload is some tens of KB."""
    pipe = client.pipeline(transaction=False)
    for i in range(150):
        pipe.set(f"s{i}", f"value-{i}-" + "x" * (i % 50))
        pipe.rpush(f"l{i % 10}", f"e{i}")
        pipe.hset(f"h{i % 10}", f"f{i}", "v" * (i % 70))
        pipe.sadd(f"t{i % 10}", i, f"m{i}")
        pipe.zadd(f"z{i % 10}", {f"m{i}": i / 3})
    pipe.execute()


def synced(master: redis.Redis, replica: redis.Redis) -> bool:
    """The link is up, the replica has processed all the master sent, same digest."""
    try:
        theirs = info(replica, "replication")
        ours = info(master, "replication")
        return (theirs.get("master_link_status") == "up"
                and theirs.get("slave_repl_offset") == ours.get("master_repl_offset")
                and digest(master) == digest(replica))
    except redis.ResponseError:  # LOADING
        return False


def write_during_sync(master: Node, history: set[bytes]) -> None:
    """Thirty writes a few milliseconds apart (to spread them over the sync), recording
    each state of the master."""
    client = master.client()
    for i in range(30):
        client.set(f"held{i}", i)
        history.add(digest(client))
        threading.Event().wait(0.005)
    client.close()


@dataclass
class Case:
    master: str
    replica: str
    fault: Fault
    diskless: bool = True
    expect: str | None = None  # "partial" / "full" resync after a stream fault
    overrun: bool = False  # the master writes past its backlog while the link is down

    def __str__(self) -> str:
        framing = "diskless" if self.diskless else "disk"
        overrun = "-overrun" if self.overrun else ""
        return f"{self.master}-to-{self.replica}-{framing}-{self.fault}{overrun}"


@pytest.fixture
def nodes() -> Iterator[list]:
    started: list = []
    yield started
    for node in reversed(started):
        node.stop()


def run_case(case: Case, tmp_path, nodes: list) -> None:  # noqa: ANN001
    stream_fault = case.fault.phase in ("stream", "getack", "ack")
    master = start(case.master, tmp_path, "master", diskless=case.diskless)
    nodes.append(master)
    mc = master.client()
    populate(mc)
    history = {digest(mc)}
    proxy = FaultProxy(master.server.port, None if stream_fault else case.fault).start()
    nodes.append(proxy)
    replica = start(case.replica, tmp_path, "replica")
    nodes.append(replica)
    rc = replica.client()
    rc.set("old", "dataset")
    rc.rpush("old-list", "a", "b")
    history.add(digest(rc))
    watch = DigestWatch(replica)
    try:
        rc.replicaof("127.0.0.1", proxy.port)
        if not stream_fault:
            # Writes while the replica syncs: some are held for it during the snapshot.
            writer = threading.Thread(target=write_during_sync, args=(master, history))
            writer.start()
            writer.join(SYNC_WAIT)
        poll(lambda: synced(mc, rc), "the replica synced", SYNC_WAIT)
        if not stream_fault:
            assert proxy.triggered.is_set(), f"the fault {case.fault} never happened"
        else:
            before = info(mc, "stats")
            proxy.fault = case.fault  # the link breaks in the stream (no reconnection yet)
            proxy.refusing = case.overrun
            for i in range(40):
                value = "v" * 1000 if case.overrun else f"write-{i}"  # 40 KB: past the backlog
                mc.set(f"w{i}", "FLUSHALL" if i == 0 else value)
                history.add(digest(mc))  # each state the replica may be seen in
                mc.incr("counter")
                history.add(digest(mc))
                if case.fault.phase in ("getack", "ack") and i % 10 == 9:
                    mc.wait(1, 100)  # GETACK to the replica, its ACK back (or not: a fault)
            # (a redis-server master puts a replica online, and sends it the stream, at its
            # next cron after the payload: the writes may still be on their way)
            poll(proxy.triggered.is_set, f"the fault {case.fault} happened")
            proxy.refusing = False
            poll(lambda: synced(mc, rc), "the replica resynced", SYNC_WAIT)
            assert mc.wait(1, 5000) == 1  # WAIT works again once the link is whole
            after = info(mc, "stats")
            full = int(after["sync_full"]) - int(before["sync_full"])
            partial = int(after["sync_partial_ok"]) - int(before["sync_partial_ok"])
            if case.expect == "partial":
                assert (full, partial >= 1) == (0, True), (full, partial)
            elif case.expect == "full":
                assert full >= 1, (full, partial)
    finally:
        seen = watch.stop()
    assert seen <= history, "the replica served a dataset the master never had"
    assert digest(mc) == digest(rc)
    stats = info(rc, "commandstats")
    assert "cmdstat_flushall" not in stats, "a corrupt stream ran FLUSHALL on the replica"
    mc.close()
    rc.close()


# -- the matrix --------------------------------------------------------------------------------
def _stream_faults() -> list[tuple[Fault, str | None]]:
    """Faults in the live stream, with the resync each must end in."""
    return [
        (Fault("stream", "cut", at=0, match=FIRST_SET), "partial"),
        # (redis-server counts the timeout in whole seconds: stall past the next one)
        (Fault("stream", "stall", at=0, match=FIRST_SET, seconds=REPL_TIMEOUT + 2.5),
         "partial"),
        (Fault("stream", "slow", at=0, size=7, seconds=0.002), None),
        (Fault("stream", "flip", at=0, match=FIRST_SET), "full"),  # '*' -> '+': inline
        (Fault("stream", "flip", at=0, match=b"$2\r\nw0"), "full"),  # '$' -> '%'
        (Fault("stream", "flip", at=0, match=b"\r\nw0\r\n", xor=0x20), "full"),  # "$2\r"
        (Fault("stream", "truncate", at=0, match=FIRST_SET), "full"),
        (Fault("stream", "duplicate", at=0, match=FIRST_SET, size=2), "full"),
        (Fault("getack", "cut", at=10), "partial"),
        (Fault("getack", "flip", at=0, match=b"$6\r\nGETACK"), "full"),
        (Fault("ack", "cut", at=0, match=b"ACK"), "partial"),
        (Fault("ack", "flip", at=0, match=b"*3\r\n$8\r\nREPLCONF"), None),
    ]


def _sync_faults(replica: str) -> list[Fault]:
    faults = [
        Fault("handshake", "cut", at=3), Fault("handshake", "flip", at=0),
        Fault("handshake", "duplicate", at=0, size=5), Fault("handshake", "stall", seconds=1),
        Fault("psync", "cut", at=20), Fault("psync", "flip", at=13),
        Fault("psync", "truncate", at=5, size=3),
        Fault("payload", "cut", at=3000), Fault("payload", "slow", size=1024, seconds=0.001),
        Fault("payload", "stall", at=3000, seconds=REPL_TIMEOUT + 2.5),
        Fault("replica-handshake", "cut", at=10), Fault("replica-handshake", "flip", at=0),
    ]
    if replica == "kvrepl":  # redis-server exits on a payload it cannot load (see above)
        faults += [Fault("payload", "flip", at=3000), Fault("payload", "truncate", at=3000),
                   Fault("payload", "duplicate", at=3000, size=100),
                   Fault("payload", "flip", at=2, match=b"\r\n")]  # in the $ header
    return faults


def full_matrix() -> list[Case]:
    cases = []
    for master, replica in (("redis", "kvrepl"), ("kvrepl", "redis"), ("kvrepl", "kvrepl")):
        for fault, expect in _stream_faults():
            cases.append(Case(master, replica, fault, expect=expect))
        cases.append(Case(master, replica, Fault("stream", "cut", at=0, match=FIRST_SET),
                          expect="full", overrun=True))
        for diskless in (True, False):
            for fault in _sync_faults(replica):
                cases.append(Case(master, replica, fault, diskless=diskless))
            if diskless and not (master == "kvrepl" and replica == "kvrepl"):  # $EOF framing
                cases += [Case(master, replica, Fault("eof", action, at=at), diskless=True)
                          for action, at in (("cut", 20), ("flip", 39), ("truncate", 0))
                          if replica == "kvrepl" or action == "cut"]
    return cases


SUITE = [
    Case("redis", "kvrepl", Fault("payload", "cut", at=3000)),
    Case("redis", "kvrepl", Fault("payload", "flip", at=3000), diskless=False),
    Case("redis", "kvrepl", Fault("eof", "flip", at=39)),
    Case("redis", "kvrepl", Fault("stream", "cut", at=0, match=FIRST_SET), expect="partial"),
    Case("redis", "kvrepl", Fault("stream", "flip", at=0, match=FIRST_SET), expect="full"),
    Case("kvrepl", "kvrepl", Fault("payload", "truncate", at=3000)),
    Case("kvrepl", "kvrepl", Fault("psync", "cut", at=20), diskless=False),
    Case("kvrepl", "kvrepl", Fault("stream", "duplicate", at=0, match=FIRST_SET, size=2),
         expect="full"),
    Case("kvrepl", "kvrepl", Fault("getack", "cut", at=10), expect="partial"),
    Case("kvrepl", "kvrepl", Fault("stream", "cut", at=0, match=FIRST_SET), expect="full",
         overrun=True),
    Case("kvrepl", "redis", Fault("handshake", "cut", at=3)),
    Case("kvrepl", "redis", Fault("eof", "cut", at=20)),
    Case("kvrepl", "redis", Fault("stream", "cut", at=0, match=FIRST_SET), expect="partial"),
    Case("kvrepl", "redis", Fault("stream", "flip", at=0, match=b"$2\r\nw0"), expect="full"),
]


@pytest.mark.redis_server
@pytest.mark.parametrize("case", full_matrix() if FULL else SUITE, ids=str)
def test_a_fault_on_the_link_heals_to_equal_digests(case: Case, tmp_path, nodes) -> None:
    run_case(case, tmp_path, nodes)
