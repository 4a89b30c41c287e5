"""INFO stats fields that measure what the node does, compared with redis-server 7.0 where
the same work gives the same figures: the instantaneous_* rates (sampled by the cron), the
replication byte counters, the active expiry cycle's figures, MIGRATE's cached sockets, the
read/write events on client sockets and the time spent over maxmemory."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis
import trio

import kvrepl
from kvrepl.commands.core import Engine, Session
from kvrepl.commands.eviction import EVICT_FAIL, EVICT_OK
from kvrepl.commands.info import info_text
from kvrepl.config import Config
from kvrepl.server.cron import expire_cycle
from tests.support import DEADLINE, RedisServer, ThreadedServer, pack, poll, reply_end

# The rates are the mean of 16 samples taken 100 ms apart: a window of 1.6 s. INFO itself is
# a command, so polling it faster than that would keep the rate above zero.
QUIET_POLL = 2.0


def _stats(client: redis.Redis) -> dict[str, object]:
    return client.info("stats")


def _kvrepl(**options: object) -> ThreadedServer:
    return ThreadedServer(Config(save=(), repl_diskless_sync_delay=0, **options)).start()


@pytest.fixture(params=["kvrepl", "redis"])
def server(request) -> Iterator[ThreadedServer | RedisServer]:
    node = _kvrepl() if request.param == "kvrepl" else RedisServer()
    yield node
    node.stop()


def _quiet(client: redis.Redis, field: str) -> None:
    """Poll INFO, slower than the sampling window, until ``field`` reads zero."""
    deadline = time.monotonic() + DEADLINE
    while float(_stats(client)[field]) != 0:
        assert time.monotonic() < deadline, f"{field} stayed above zero without load"
        time.sleep(QUIET_POLL)


def test_instantaneous_rates_follow_a_load(server):
    client = server.client()
    stop = threading.Event()

    def load() -> None:
        loader = server.client()
        while not stop.is_set():
            loader.set("k", "v" * 100)
            loader.get("k")

    worker = threading.Thread(target=load)
    worker.start()
    try:
        poll(lambda: (stats := _stats(client))["instantaneous_ops_per_sec"] > 0
             and stats["instantaneous_input_kbps"] > 0
             and stats["instantaneous_output_kbps"] > 0,
             "INFO shows the load's rates")
        stats = _stats(client)
        # No replica: the replication rates stay zero.
        assert stats["instantaneous_input_repl_kbps"] == 0
        assert stats["instantaneous_output_repl_kbps"] == 0
    finally:
        stop.set()
        worker.join()
    _quiet(client, "instantaneous_ops_per_sec")
    stats = _stats(client)
    assert stats["total_commands_processed"] > 0


async def test_embedded_node_samples_its_direct_calls():
    """The direct calls (node.get/set, counted in the tally) show in the rate: the node's
    cron folds the tally before it samples."""
    async with kvrepl.Master() as master:
        with trio.fail_after(DEADLINE):
            while True:
                for _ in range(200):
                    master.set("k", "v")
                    master.get("k")
                await trio.sleep(0)  # the cron's turn
                if master.info("stats")["instantaneous_ops_per_sec"] > 0:
                    break
            while master.info("stats")["instantaneous_ops_per_sec"] != 0:
                await trio.sleep(QUIET_POLL)


# -- replication bytes ----------------------------------------------------------------------

def _repl_pair(kind: str) -> tuple[object, object]:
    """A master and a replica (kvrepl or redis-server each) with no PINGs to muddle the
    stream, and the replica's link up."""
    master_kind, replica_kind = kind.split("->")
    period = 3600
    master = (_kvrepl(repl_ping_replica_period=period) if master_kind == "kvrepl"
              else RedisServer("--repl-ping-replica-period", str(period),
                               "--repl-diskless-sync-delay", "0"))
    replica = _kvrepl() if replica_kind == "kvrepl" else RedisServer()
    replica.client().replicaof("127.0.0.1", master.port)
    poll(lambda: replica.client().info("replication").get("master_link_status") == "up",
         "the replica's link is up")
    return master, replica


@pytest.mark.parametrize("kind", ["kvrepl->redis", "redis->kvrepl", "redis->redis"])
def test_replication_bytes_as_redis_splits_them(kind):
    master, replica = _repl_pair(kind)
    try:
        ours, theirs = master.client(), replica.client()

        def offsets() -> tuple[int, int]:
            return (ours.info("replication")["master_repl_offset"],
                    theirs.info("replication")["master_repl_offset"])

        poll(lambda: len(set(offsets())) == 1, "the replica has the master's offset")
        sent, got = _stats(ours), _stats(theirs)
        # After the full sync: the payload (its "$EOF:<mark>" or "$<len>" line, the RDB and
        # the end mark) on both sides; the +FULLRESYNC line is counted by neither.
        assert sent["total_net_repl_output_bytes"] > 0
        assert got["total_net_repl_input_bytes"] == sent["total_net_repl_output_bytes"]
        assert sent["total_net_repl_input_bytes"] == got["total_net_repl_output_bytes"] == 0
        # The totals include the replication bytes.
        assert got["total_net_input_bytes"] >= got["total_net_repl_input_bytes"]
        assert sent["total_net_output_bytes"] >= sent["total_net_repl_output_bytes"]

        start = offsets()[0]
        for i in range(50):
            ours.set(f"key:{i}", "x" * i)
        poll(lambda: len(set(offsets())) == 1 and offsets()[0] > start,
             "the replica has the writes")
        streamed = offsets()[0] - start
        after_sent, after_got = _stats(ours), _stats(theirs)
        # The stream: exactly the offset's growth, on both sides.
        assert (after_sent["total_net_repl_output_bytes"]
                - sent["total_net_repl_output_bytes"]) == streamed
        assert (after_got["total_net_repl_input_bytes"]
                - got["total_net_repl_input_bytes"]) == streamed
        # The same writes are the same bytes whichever node is the master.
        assert streamed == len(pack("SELECT", 0)) + sum(
            len(pack("SET", f"key:{i}", "x" * i)) for i in range(50))

        # A partial resync: the backlog's bytes count on both sides, the +CONTINUE line on
        # neither.
        sent, got = after_sent, after_got
        start = offsets()[0]
        ours.set("before", "the link drops")
        ours.client_kill_filter(_type="replica")
        ours.set("while", "the link is down")
        poll(lambda: theirs.info("replication").get("master_link_status") == "up"
             and len(set(offsets())) == 1 and offsets()[0] > start,
             "the replica continued from the backlog")
        assert _stats(ours)["sync_partial_ok"] == 1
        streamed = offsets()[0] - start
        assert _stats(ours)["total_net_repl_output_bytes"] \
            - sent["total_net_repl_output_bytes"] == streamed
        assert _stats(theirs)["total_net_repl_input_bytes"] \
            - got["total_net_repl_input_bytes"] == streamed
    finally:
        replica.stop()
        master.stop()


# -- active expiry ----------------------------------------------------------------------------

@pytest.fixture
def clocked() -> tuple[Engine, Session, list[float]]:
    """An engine whose clock the test moves."""
    now = [1_700_000_000.0]
    engine = Engine(Config(save=()))
    engine.keyspace.clock = lambda: now[0]
    return engine, Session(engine), now


def _info_stats(engine: Engine, session: Session) -> dict[str, str]:
    text = info_text(engine, [b"stats"])
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def test_expired_stale_perc_is_a_running_average(clocked):
    engine, session, now = clocked
    engine.config.hz = 1  # a 250 ms budget: this cycle is not cut short
    for i in range(100):
        engine.execute(session, [b"SET", b"gone:%d" % i, b"v", b"PX", b"1000"])
    now[0] += 2
    # Every key checked was expired, so the cycle went on until none was left: this cycle's
    # share is 1, weighted 5% (expire.c: current*0.05 + previous*0.95).
    assert expire_cycle(engine) == 100
    assert engine.keyspace.dbs[0].expire_sampled == 100
    assert _info_stats(engine, session)["expired_stale_perc"] == "5.00"
    for i in range(40):
        engine.execute(session, [b"SET", b"kept:%d" % i, b"v", b"EX", b"1000"])
    # Nothing is expired: a share of 0 brings the average down by 5%.
    assert expire_cycle(engine) == 0
    assert _info_stats(engine, session)["expired_stale_perc"] == "4.75"
    # With no key to check at all the average decays too, as in Redis's cron.
    engine.execute(session, [b"FLUSHALL"])
    expire_cycle(engine)
    assert _info_stats(engine, session)["expired_stale_perc"] == "4.51"
    engine.execute(session, [b"CONFIG", b"RESETSTAT"])  # resetServerStats: back to 0
    assert _info_stats(engine, session)["expired_stale_perc"] == "0.00"


def test_expire_cycle_time_cap(clocked):
    engine, session, now = clocked
    engine.config.hz = 500  # a 0.5 ms budget per cycle
    for i in range(20_000):
        engine.execute(session, [b"SET", b"k:%d" % i, b"v", b"PX", b"1000"])
    now[0] += 2
    deleted = expire_cycle(engine)
    assert 0 < deleted < 20_000  # stopped by the budget, keys left for the next cycles
    stats = _info_stats(engine, session)
    assert stats["expired_time_cap_reached_count"] == "1"
    assert int(stats["expire_cycle_cpu_milliseconds"]) >= 0


# -- MIGRATE's cached sockets ----------------------------------------------------------------

def test_migrate_cached_sockets(server):
    target = RedisServer()
    try:
        source = server.client()
        assert _stats(source)["migrate_cached_sockets"] == 0
        source.set("k", "v")
        assert source.execute_command("MIGRATE", "127.0.0.1", target.port, "k", 0, 5000) \
            == b"OK"
        assert _stats(source)["migrate_cached_sockets"] == 1
        source.set("k2", "v")
        source.execute_command("MIGRATE", "127.0.0.1", target.port, "k2", 0, 5000)
        assert _stats(source)["migrate_cached_sockets"] == 1  # the same target: reused
        assert target.client().mget("k", "k2") == [b"v", b"v"]
    finally:
        target.stop()


# -- read and write events ---------------------------------------------------------------------

def test_reads_and_writes_are_socket_events(server):
    observer = server.client()
    observer.ping()
    with socket.create_connection(("127.0.0.1", server.port)) as raw:
        before = _stats(observer)
        raw.sendall(pack("PING") + pack("ECHO", "x") + pack("PING"))  # one read, three commands
        expected = b"+PONG\r\n$1\r\nx\r\n+PONG\r\n"
        received = b""
        while len(received) < len(expected):
            received += raw.recv(1024)
        assert received == expected
        after = _stats(observer)
    # The raw client's read and its one write (three replies), the second INFO's read and
    # the first INFO's write (made after that INFO counted its figures).
    assert after["total_commands_processed"] - before["total_commands_processed"] == 4
    assert after["total_reads_processed"] - before["total_reads_processed"] == 2
    assert after["total_writes_processed"] - before["total_writes_processed"] == 2


def test_a_hang_up_is_a_read(server):
    """A client that connects, sends one command and closes: two reads (the command, the
    hang-up) and one write, as readQueryFromClient and writeToClient count them."""
    observer = server.client()
    observer.ping()
    before = _stats(observer)
    with socket.create_connection(("127.0.0.1", server.port)) as raw:
        raw.sendall(pack("PING"))
        assert raw.recv(1024) == b"+PONG\r\n"
    polls = 0

    def closed() -> bool:
        nonlocal polls
        polls += 1
        return observer.info("clients")["connected_clients"] == 1

    poll(closed, "the server read the hang-up")
    after = _stats(observer)
    # Besides the raw client's: each INFO of the observer after ``before`` is one read,
    # and each before the last one write (the last one counts before it answers).
    assert after["total_reads_processed"] - before["total_reads_processed"] == 2 + polls + 1
    assert after["total_writes_processed"] - before["total_writes_processed"] == 1 + polls + 1


@pytest.mark.parametrize("kind", ["redis->kvrepl", "redis->redis"])
def test_a_replica_counts_its_masters_stream_reads_and_its_acks(kind):
    master, replica = _repl_pair(kind)
    try:
        ours, theirs = replica.client(), master.client()
        before = _stats(ours)
        theirs.set("k", "v")
        # The SET and WAIT's REPLCONF GETACK reach the replica; its ACK answers.
        assert theirs.wait(1, int(DEADLINE * 1000)) == 1
        after = _stats(ours)
        # At least one read of the stream besides the second INFO's, and at least one ACK
        # written besides the first INFO's reply (how the stream splits into reads is the
        # kernel's business).
        assert after["total_reads_processed"] - before["total_reads_processed"] >= 2
        assert after["total_writes_processed"] - before["total_writes_processed"] >= 2
    finally:
        replica.stop()
        master.stop()


EMPTY_RDB = bytes.fromhex("524544495330303130ffa9fd37fe89a77eeb")  # an empty v10 RDB
REPLID = b"a" * 40
GETACK = pack("REPLCONF", "GETACK", "*")


class _MasterLink:
    """The master's end of one replica link, on a plain socket."""

    def __init__(self, listener: socket.socket) -> None:
        self.conn, _ = listener.accept()
        self.conn.settimeout(DEADLINE)  # a replica that stops answering fails the test
        self.received = b""

    def read_more(self) -> None:
        chunk = self.conn.recv(4096)
        assert chunk, "the replica hung up"
        self.received += chunk

    def read_until(self, word: bytes) -> None:
        while word not in self.received:
            self.read_more()

    def handshake(self) -> bytes:
        """The replies to PING and the two REPLCONFs; returns the PSYNC request."""
        self.read_until(b"PING")
        self.conn.sendall(b"+PONG\r\n")
        self.read_until(b"capa")  # listening-port, then capa
        self.conn.sendall(b"+OK\r\n+OK\r\n")
        self.read_until(b"$5\r\nPSYNC\r\n")
        start = self.received.rfind(b"*", 0, self.received.find(b"$5\r\nPSYNC\r\n"))
        while reply_end(self.received, start) is None:  # the whole request
            self.read_more()
        return self.received[start:]

    def send_then_wait_ack(self, data: bytes, offset: int) -> None:
        """Send ``data`` (ending with a GETACK) in one send and wait for the ACK that says
        the replica processed the stream up to ``offset``."""
        self.received = b""
        self.conn.sendall(data)
        self.read_until(pack("REPLCONF", "ACK", offset))


def _serve_links(listener: socket.socket, steps: list[Callable[[_MasterLink], None]],
                 done: threading.Event, release: threading.Event) -> None:
    """Serve one replica link per step, in turn; the last is held until ``release``."""
    links = []
    try:
        for step in steps:
            links.append(_MasterLink(listener))
            step(links[-1])
        done.set()
        release.wait(DEADLINE)
    finally:
        for link in links:
            link.conn.close()


def _full_sync(stream: bytes, offset: int) -> Callable[[_MasterLink], None]:
    """A length-prefixed payload whose last bytes go out in one send with ``stream``."""
    def step(link: _MasterLink) -> None:
        link.handshake()
        link.conn.sendall(b"+FULLRESYNC " + REPLID + b" 0\r\n$%d\r\n" % len(EMPTY_RDB)
                          + EMPTY_RDB[:-8])
        link.send_then_wait_ack(EMPTY_RDB[-8:] + stream, offset)
    return step


def _continue(stream: bytes, offset: int) -> Callable[[_MasterLink], None]:
    """+CONTINUE and ``stream`` in one send."""
    def step(link: _MasterLink) -> None:
        assert b"PSYNC\r\n$40\r\n" + REPLID in link.handshake()
        link.send_then_wait_ack(b"+CONTINUE\r\n" + stream, offset)
    return step


def _reads_while_following(server: ThreadedServer | RedisServer,
                           steps: list[Callable[[_MasterLink], None]],
                           between: Callable[[redis.Redis], None] | None = None) -> int:
    """total_reads_processed's growth on ``server`` from before its REPLICAOF to after
    the fake master's ``steps``; ``between`` runs on the client after the first."""
    done, release = threading.Event(), threading.Event()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(DEADLINE)
        first, rest = steps[0], steps[1:]
        first_done, go_on = threading.Event(), threading.Event()

        def first_then_wait(link: _MasterLink) -> None:
            first(link)
            first_done.set()
            go_on.wait(DEADLINE)

        master = threading.Thread(target=_serve_links, args=(
            listener, [first_then_wait, *rest], done, release))
        master.start()
        try:
            client = server.client()
            before = _stats(client)
            client.replicaof("127.0.0.1", listener.getsockname()[1])
            assert first_done.wait(DEADLINE), "the replica did not apply the stream"
            if between is not None:
                between(client)
            go_on.set()
            assert done.wait(DEADLINE), "the replica did not apply the stream"
            after = _stats(client)
        finally:
            go_on.set()
            release.set()
            master.join()
    return after["total_reads_processed"] - before["total_reads_processed"]


def test_the_read_that_ends_the_payload_and_starts_the_stream_is_one_read(server):
    """Redis reads a length-prefixed payload up to its length and no further
    (readSyncBulkPayload, uncounted); the stream's bytes that came with its end are its
    master client's first read, which readQueryFromClient counts: one read."""
    first = pack("SET", "k", "v")
    # GETACK is answered with the offset of what came before it: the SET applied.
    reads = _reads_while_following(server, [_full_sync(first + GETACK, len(first))])
    assert server.client().get("k") == b"v"
    # REPLICAOF's read, the master link's one and the second INFO's.
    assert reads == 3


def test_the_read_that_ends_continue_and_starts_the_stream_is_one_read(server):
    """Redis reads the +CONTINUE line a byte at a time (connSyncReadLine), so the stream's
    bytes that came with it are, again, its master client's first read: one read."""
    first = pack("SET", "k", "v")
    again = pack("SET", "k", "again")
    # After CLIENT KILL of the master client the replica connects again and asks to
    # continue from the offset after the first GETACK. (Each ACK awaited names an offset
    # only the stream's SET reaches: not the one the replica's cron may send before.)
    reads = _reads_while_following(
        server, [_full_sync(first + GETACK, len(first)),
                 _continue(again + GETACK, len(first) + len(GETACK) + len(again))],
        between=lambda client: client.client_kill_filter(_type="master"))
    assert server.client().get("k") == b"again"
    # REPLICAOF's read, the first link's (payload end, SET and GETACK), CLIENT KILL's, the
    # second link's (+CONTINUE, SET and GETACK) and the second INFO's.
    assert reads == 5


# -- time over maxmemory ------------------------------------------------------------------------

def test_eviction_exceeded_time_spans_the_spell_over_maxmemory(clocked):
    engine, session, _now = clocked
    engine.execute(session, [b"SET", b"big", b"x" * 10_000])
    engine.config.maxmemory = 1000
    engine.config.maxmemory_policy = "noeviction"
    evictor = engine.evictor
    assert evictor.perform() == EVICT_FAIL  # over the limit: a spell starts
    total, current = evictor.exceeded_time()
    assert current > 0 and total == current
    engine.config.maxmemory = 10**9
    assert evictor.perform() == EVICT_OK  # under it again: the spell ends
    total, current = evictor.exceeded_time()
    assert current == 0 and total > 0
    stats = _info_stats(engine, session)
    assert stats["current_eviction_exceeded_time"] == "0"
    assert int(stats["total_eviction_exceeded_time"]) == int(total * 1000)
    engine.execute(session, [b"CONFIG", b"RESETSTAT"])
    assert evictor.exceeded_time() == (0.0, 0.0)

