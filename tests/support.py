"""Test support: a kvrepl server in a thread, a real redis-server subprocess, and the helpers
that compare the two (redis-py clients without reply callbacks, raw sockets, blocked clients,
seeded datasets)."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis
import trio
import trustme
from redis.backoff import NoBackoff
from redis.retry import Retry

from kvrepl.config import Config
from kvrepl.node import Node
from kvrepl.store.values import ZSet

# RDB files written by real Redis servers, and what redis-server 7.0 held after loading each
# (see its README.md). Part of the repository: the tests never depend on files beside it.
RDB_CORPUS = Path(__file__).resolve().parent / "rdb-corpus"


def corpus_files() -> list[Path]:
    """Every RDB file of the corpus; an error if the corpus is missing (a broken checkout)."""
    files = sorted(RDB_CORPUS.glob("*/*.rdb"))
    assert files, f"the RDB corpus is missing from {RDB_CORPUS}"
    return files


# An argument of RedisServer that stands for a free port, picked at each start.
FREE_PORT = "<a free port>"


def no_retry() -> Retry:
    """For a redis-py client's ``retry``: no second try. redis-py 6+ sends a command again
    after a connection error, up to 10 times with backoff (~3.6 s in all): a test whose
    server closes the connection on purpose (SHUTDOWN, DEBUG LOADAOF's exit, a refused
    login, a kill) sees the error at once, and never has a write sent twice."""
    return Retry(NoBackoff(), 0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ThreadedServer:
    """A kvrepl node serving TCP from its own trio loop in a thread, for blocking clients."""

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config(save=(), repl_diskless_sync_delay=0)
        self.node = Node(config=self.config, port=0)
        self.server = self.node.server
        self.engine = self.node.engine
        self.port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)
        self._error: BaseException | None = None

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        try:
            with trio.CancelScope() as scope:
                self._scope = scope
                async with self.node:
                    self.port = self.node.port
                    self._ready.set()
                    await trio.sleep_forever()
        except BaseException as err:  # surfaced by start()
            self._error = err
            self._ready.set()

    def start(self) -> ThreadedServer:
        self._thread.start()
        # A bound for a broken start, not a measurement: past it the test fails here,
        # instead of talking to port 0.
        assert self._ready.wait(60), "the kvrepl server thread did not start"
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        try:
            trio.from_thread.run_sync(self._scope.cancel, trio_token=self._token)
        except trio.RunFinishedError:
            pass
        self._thread.join(10)

    def client(self, **kwargs: object) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, **kwargs)


class RedisServer:
    """A real redis-server on a free loopback port, stopped at teardown."""

    def __init__(self, *extra: str, stdout: Path | None = None) -> None:
        """``stdout``: a file for what the server prints (its log, DEBUG LISTPACK's dump).
        An argument equal to :data:`FREE_PORT` is a free port picked at each start: a port
        found free can be taken by another socket before the server binds it, and then the
        server is started again on new ports (``self.args`` holds those it got)."""
        binary = shutil.which("redis-server")
        if binary is None:
            message = "redis-server is not installed (apt-get install redis-server)"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        self.dir = tempfile.mkdtemp(prefix="kvrepl-redis-")
        log = Path(self.dir) / "stdout.log" if stdout is None else stdout
        for attempt in range(3):
            self.port = free_port()
            self.args = [str(free_port()) if arg == FREE_PORT else arg for arg in extra]
            with log.open("wb") as out:  # the child has its own copy
                self.process = subprocess.Popen(
                    [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "no", "--dir", self.dir, "--daemonize", "no",
                     *self.args],
                    stdout=out, stderr=subprocess.DEVNULL,
                )
            if self._started():
                return
            if attempt == 2 or b"Address already in use" not in log.read_bytes():
                self.stop()
                raise RuntimeError("redis-server did not start")

    def _started(self) -> bool:
        """Wait until the server answers (True), exits or 10 s pass (False)."""
        deadline = time.monotonic() + 10
        while True:
            try:
                # Closed here, not left to the collector: redis-py 8.1 (Python 3.10's pin)
                # leaves the client in a reference cycle (execute_command's frames and a
                # closure cell), so its connection stayed open until a later gc pass and its
                # hang-up counted in the test's INFO stats. (With redis-py's retries, whose
                # backoff delays the return: without them test_replica_output's kvrepl
                # tot-mem of the replica came out 15360 bytes above Redis's, 2 runs in 3.)
                with redis.Redis(port=self.port, socket_timeout=1) as probe:
                    # Ours, not whatever took the port first; and done loading its data
                    # (INFO answers while it loads, PING says -LOADING: BusyLoadingError).
                    if probe.info("server")["process_id"] == self.process.pid and \
                            probe.ping():
                        return True
            except (redis.ConnectionError, redis.TimeoutError):
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                return False
            time.sleep(0.02)

    def client(self, **kwargs: object) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, **kwargs)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def kvrepl_and_redis(config: Config, *redis_args: str) -> Iterator[tuple[ThreadedServer,
                                                                         RedisServer]]:
    """A kvrepl server of ``config`` and a redis-server started with ``redis_args``, side by
    side for a comparison; both stopped at the end (the kvrepl one too if redis-server does
    not start)."""
    ours = ThreadedServer(config).start()
    try:
        real = RedisServer(*redis_args)
    except BaseException:
        ours.stop()
        raise
    try:
        yield ours, real
    finally:
        ours.stop()
        real.stop()


class RedisClusterNodes:
    """A real Redis Cluster: ``primaries`` redis-server 7.0 processes with ``cluster-enabled
    yes`` (each with ``replicas`` replicas), made one with ``redis-cli --cluster create``;
    :meth:`stop` stops every process it started."""

    def __init__(self, primaries: int = 3, replicas: int = 0, password: str | None = None,
                 tls: tuple[str, str, str] | None = None) -> None:
        self.nodes: list[RedisServer] = []
        self._folders: list[str] = []
        self.password = password
        # ``tls``: (CA, certificate, key) files. Each node then also has a TLS port, its
        # cluster bus and replication use TLS; the plain port stays (for the tests' own
        # clients), and the layout names both.
        self.tls = tls
        self.tls_ports: dict[int, int] = {}  # plain port -> TLS port
        try:
            for _ in range(primaries * (1 + replicas)):
                self.add_node()
            cli = shutil.which("redis-cli")
            assert cli is not None, "redis-cli is not installed"
            tls_cli = [] if tls is None else ["--tls", "--cacert", tls[0], "--cert", tls[1],
                                               "--key", tls[2]]
            subprocess.run(
                [cli, *self._auth(), *tls_cli, "--cluster", "create",
                 *(f"127.0.0.1:{self.tls_ports[n.port]}" if tls else self.address(n)
                   for n in self.nodes),
                 "--cluster-replicas", str(replicas), "--cluster-yes"],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
            self.wait_ok()
        except BaseException:
            self.stop()
            raise

    @staticmethod
    def address(node: RedisServer) -> str:
        return f"127.0.0.1:{node.port}"

    def add_node(self) -> RedisServer:
        """Start one more cluster-enabled redis-server (not yet part of the cluster)."""
        # Every CLUSTER SETSLOT saves nodes.conf with an fsync: on tmpfs a resharding takes
        # seconds instead of a minute.
        folder = tempfile.mkdtemp(prefix="kvrepl-cluster-",
                                  dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
        self._folders.append(folder)
        tls_args: list[str] = []
        if self.tls is not None:
            ca, cert, key = self.tls
            tls_args = ["--tls-port", FREE_PORT, "--tls-cluster", "yes",
                        "--tls-replication", "yes", "--tls-ca-cert-file", ca,
                        "--tls-cert-file", cert, "--tls-key-file", key]
        node = RedisServer("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                           "--enable-debug-command", "yes", "--repl-diskless-sync-delay", "0",
                           "--cluster-node-timeout", "1000", "--cluster-port", FREE_PORT,
                           "--dir", folder, *tls_args)
        if tls_args:
            self.tls_ports[node.port] = int(node.args[node.args.index("--tls-port") + 1])
        if self.password is not None:
            # Set once it runs (RedisServer's start-up PING has no password); its clients
            # and its replication links authenticate from then on.
            for name in ("masterauth", "requirepass"):
                node.client().config_set(name, self.password)
            node.client = functools.partial(node.client, password=self.password)
        self.nodes.append(node)
        return node

    def _auth(self) -> list[str]:
        return [] if self.password is None else ["-a", self.password, "--no-auth-warning"]

    def live(self) -> list[RedisServer]:
        return [n for n in self.nodes if n.process.poll() is None]

    def wait_ok(self, within: float = 30.0) -> None:
        """Until every live node says ``cluster_state:ok``, knows every other live node
        (past the handshake: a node just added is not known at once, and redis-cli's
        ``--cluster reshard`` refuses a node its seed does not know), and they agree on who
        serves which slots (each view covers all 16384)."""
        def agreed() -> bool:
            views = set()
            clients = [raw_replies(node.client(socket_timeout=2)) for node in self.live()]
            try:
                ids = {client.execute_command("CLUSTER MYID") for client in clients}
            except redis.RedisError:
                return False
            for client in clients:
                try:
                    if b"cluster_state:ok" not in client.execute_command("CLUSTER INFO"):
                        return False
                    known = {line.split()[0] for line in
                             client.execute_command("CLUSTER NODES").splitlines()
                             if b"handshake" not in line.split()[2]}
                    if not ids <= known:
                        return False
                    slots = client.execute_command("CLUSTER SLOTS")
                except redis.RedisError:
                    return False
                if sum(int(s[1]) - int(s[0]) + 1 for s in slots) != 16384:
                    return False
                views.add(tuple(sorted((int(s[0]), int(s[1]), int(s[2][1])) for s in slots)))
            return len(views) == 1
        poll(agreed, "the cluster is up and every node agrees on its slots", within)

    def primaries(self) -> list[RedisServer]:
        """The live nodes whose role is master."""
        return [n for n in self.live()
                if n.client().execute_command("ROLE")[0] == b"master"]

    def primary_of(self, replica: RedisServer) -> RedisServer:
        """The node ``replica`` replicates."""
        port = int(replica.client().execute_command("ROLE")[2])
        return next(n for n in self.nodes if n.port == port)

    def replicas_of(self, primary: RedisServer) -> list[RedisServer]:
        ports = {int(r[1]) for r in primary.client().execute_command("ROLE")[2]}
        return [n for n in self.live() if n.port in ports]

    def client(self, **kwargs: object) -> redis.cluster.RedisCluster:
        from redis.cluster import RedisCluster

        if self.password is not None:
            kwargs.setdefault("password", self.password)
        return RedisCluster(host="127.0.0.1", port=self.live()[0].port, **kwargs)

    def cli(self, *args: str, timeout: float = 120) -> str:
        """Run ``redis-cli`` (e.g. ``--cluster reshard ...``) and return its output."""
        done = subprocess.run(["redis-cli", *self._auth(), *args], capture_output=True,
                              text=True, timeout=timeout)
        if done.returncode:  # what redis-cli said, in the failure
            raise AssertionError(f"redis-cli {' '.join(args)} exited with {done.returncode}:\n"
                                 f"{done.stdout}{done.stderr}")
        return done.stdout

    def seeds(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", n.port) for n in self.live()]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        for folder in self._folders:
            shutil.rmtree(folder, ignore_errors=True)
def limit_file_size(size: int) -> Callable[[], None]:
    """For a child process: files cannot grow past ``size`` bytes (RLIMIT_FSIZE), so a write
    beyond fails with a real EFBIG from the kernel (SIGXFSZ ignored, as Python itself
    ignores it): an honest disk write error, for this process only."""
    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    return limit


class KvreplProcess:
    """kvrepl-server in a child process of this test (only these are ever killed). ``port``
    reuses a port (a restart that its replicas or master find again)."""

    started: list[KvreplProcess] = []  # killed at the end of each test (conftest)

    def __init__(self, directory: Path, *options: str, port: int | None = None,
                 file_size_limit: int = 0) -> None:
        KvreplProcess.started.append(self)
        self.dir = directory
        # A port found free can be taken (another test's server, an outgoing connection's
        # ephemeral port) before the child binds it, a second or so later: wait_ready then
        # starts it again on a new port if it picked this one and no one has read it yet.
        self._port = port or free_port()
        self._picked = port is None
        self._port_read = False
        self._start = functools.partial(self._spawn, directory, options, file_size_limit)
        self._start()

    def _spawn(self, directory: Path, options: tuple[str, ...], file_size_limit: int) -> None:
        env = dict(os.environ,
                   PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.log = open(directory / f"kvrepl-{self._port}.log", "a")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kvrepl", "--port", str(self._port), "--save", "",
             "--dir", str(directory), "--enable-debug-command", "yes", *options],
            stdout=self.log, stderr=subprocess.STDOUT, env=env,
            preexec_fn=limit_file_size(file_size_limit) if file_size_limit else None)

    @property
    def port(self) -> int:
        self._port_read = True
        return self._port

    def wait_ready(self) -> KvreplProcess:
        """Until it answers PING (loaded: no -LOADING), or it exited."""
        deadline = time.monotonic() + START_DEADLINE  # a loaded host takes its time to import

        def ready() -> bool:
            if self.process.poll() is not None and self._picked and not self._port_read \
                    and "Address already in use" in self.output():
                self.log.close()
                self._port = free_port()
                self._start()
            assert self.process.poll() is None, self.output()
            try:
                # Ours, not a server that took the port first; done loading (-LOADING).
                with self._client() as probe:
                    return probe.info("server")["process_id"] == self.process.pid and \
                        probe.ping()
            except (redis.ConnectionError, redis.BusyLoadingError):
                return False

        while not ready():
            assert time.monotonic() < deadline, "kvrepl-server did not start"
            time.sleep(0.02)
        return self

    def client(self, **kwargs: object) -> redis.Redis:
        self._port_read = True  # its clients may outlive a restart on a new port
        return self._client(**kwargs)

    def _client(self, **kwargs: object) -> redis.Redis:
        # No retries: a write after the kill must fail at once, not be sent again.
        return redis.Redis(host="127.0.0.1", port=self._port, socket_timeout=10,
                           retry=no_retry(), **kwargs)

    def kill(self) -> None:
        """SIGKILL (a SIGSTOPped process too), and reap it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self.log.close()

    def pause(self) -> None:
        """SIGSTOP: the process stops reading its sockets, as a hung peer."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def exit_status(self) -> int:
        status = self.process.wait(20)
        self.log.close()
        return status

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return (self.dir / f"kvrepl-{self._port}.log").read_text()


# -- talking to two servers at once -----------------------------------------------------------

NOW_S = 1_700_000_000  # the frozen engine clock of the ``prop`` fixture, in seconds
NOW_MS = NOW_S * 1000

Compare = Callable[..., object]



def lane_runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Wrap ``PlainLane.run`` for the test: the list it returns gets how many requests each
    call of the plain lane took (0 when it took none)."""
    from kvrepl.commands.plain import PlainLane

    runs: list[int] = []
    run = PlainLane.run

    def counted(self, session, requests, start, out, raw=None):
        end = run(self, session, requests, start, out, raw)
        runs.append(end - start)
        return end

    monkeypatch.setattr(PlainLane, "run", counted)
    return runs

def argv(*args: object) -> list[bytes]:
    """Command arguments as bytes: ``argv("SET", "k", 1) == [b"SET", b"k", b"1"]``."""
    return [a if isinstance(a, bytes) else str(a).encode() for a in args]


def pack(*args: object) -> bytes:
    """One command as a RESP multibulk request."""
    parts = argv(*args)
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


def reply_end(buf: bytes, pos: int = 0) -> int | None:
    """Where the RESP2/RESP3 reply starting at ``pos`` ends, or None if it is incomplete."""
    line_end = buf.find(b"\r\n", pos)
    if line_end < 0:
        return None
    kind, head, after = buf[pos:pos + 1], buf[pos + 1:line_end], line_end + 2
    if kind in (b"+", b"-", b":", b"_", b",", b"#", b"("):
        return after
    count = int(head)
    if kind in (b"$", b"=", b"!"):
        end = after + count + 2
        return after if count < 0 else (end if len(buf) >= end else None)
    for _ in range(max(count, 0) * (2 if kind in (b"%", b"|") else 1)):
        found = reply_end(buf, after)
        if found is None:
            return None
        after = found
    return reply_end(buf, after) if kind == b"|" else after  # an attribute precedes a reply


class RawClient:
    """A bare socket that sends commands and returns the exact bytes of the replies."""

    def __init__(self, port: int, protocol: int = 2) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
        if protocol == 3:
            self.call("HELLO", "3")  # its reply names the server: never compared

    def send(self, *args: object) -> None:
        self.sock.sendall(pack(*args))

    def read(self, replies: int = 1) -> bytes:
        """The bytes of the next ``replies`` replies, read until they are complete."""
        pos = 0
        for _ in range(replies):
            while (end := reply_end(self.buf, pos)) is None:
                data = self.sock.recv(65536)
                if not data:
                    raise ConnectionError("server closed the connection")
                self.buf += data
            pos = end
        out, self.buf = self.buf[:pos], self.buf[pos:]
        return out

    def call(self, *args: object, replies: int = 1) -> bytes:
        self.send(*args)
        return self.read(replies)

    def closed(self) -> bool:
        """True once the server has closed the connection (waits for it)."""
        return not self.buf and self.sock.recv(1) == b""

    def close(self) -> None:
        self.sock.close()


def line_fields(line: bytes | str) -> dict[str, str]:
    """The ``name=value`` fields of one CLIENT LIST / CLIENT INFO line."""
    text = line.decode() if isinstance(line, bytes) else line
    return dict(re.findall(r"(?:^| )([\w-]+)=(\S*)", text.strip()))


def client_fields(client: RawClient, *filters: object) -> dict[str, str]:
    """The fields of the client ``CLIENT LIST <filters>`` lists first (``"ID", 7``;
    ``"TYPE", "replica"``); empty when it lists none."""
    body = client.call("CLIENT", "LIST", *filters).split(b"\r\n", 1)[1]
    return line_fields(body) if body.strip() else {}


def info_field(client: RawClient, section: str, name: str) -> int:
    """One integer field of ``INFO section``."""
    text = client.call("INFO", section).decode()
    return int(text.split(f"\r\n{name}:")[1].split("\r\n")[0])


def stuck_size() -> int:
    """A reply no socket can hold: past the largest send buffer the kernel grows to
    (tcp_wmem's maximum) plus the small window the stuck client offers."""
    size = 8 * 1024 * 1024
    wmem = Path("/proc/sys/net/ipv4/tcp_wmem")
    if wmem.exists():
        size = max(size, 4 * int(wmem.read_text().split()[2]))
    return size


class SmallWindowClient(RawClient):
    """A plain RawClient that offers the server a small receive window."""

    def __init__(self, port: int, receive_buffer: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)  # before connect
        sock.settimeout(10)
        sock.connect(("127.0.0.1", port))
        self.sock = sock
        self.buf = b""


def raw_replies(client: redis.Redis) -> redis.Redis:
    """``client`` with redis-py's reply callbacks off: replies as the server sent them."""
    client.response_callbacks.clear()
    return client


def plain(reply: object) -> object:
    """Errors inside a reply (EXEC) as ``("error", text)``: exceptions do not compare equal."""
    if isinstance(reply, list):
        return [plain(item) for item in reply]
    if isinstance(reply, Exception):
        return ("error", str(reply))
    return reply


def outcome(client: redis.Redis, args: tuple[object, ...]) -> tuple[str, object]:
    """``("ok", reply)`` or ``("error", message)`` for one command."""
    try:
        return ("ok", plain(client.execute_command(*args)))
    except redis.ResponseError as err:
        return ("error", str(err))


def comparer(ours: redis.Redis, theirs: redis.Redis) -> Compare:
    """``compare(*args, unordered=False)``: send to both clients and assert equal outcomes
    (replies, or error messages); returns ours. ``unordered=True`` sorts array replies (sets
    in disguise, such as SMEMBERS)."""

    def compare(*args: object, unordered: bool = False) -> object:
        mine, oracle = outcome(ours, args), outcome(theirs, args)
        if unordered:
            mine, oracle = _sorted(mine), _sorted(oracle)
        assert mine == oracle, f"{args}: kvrepl {mine!r} != redis {oracle!r}"
        return mine[1]

    return compare


def _sorted(result: tuple[str, object]) -> tuple[str, object]:
    kind, reply = result
    return (kind, sorted(reply)) if isinstance(reply, list | set) else result


def wire_comparer(ours_port: int, theirs_port: int) -> tuple[Compare, Callable[[], None]]:
    """``compare(*args, protocol=2, batch=None, replies=1)``: the reply bytes of both servers
    must be identical (RESP types and order included); returns them. ``batch=[(...), ...]``
    sends several commands in one write (a whole MULTI ... EXEC); ``replies`` is how many
    replies one command answers (SUBSCRIBE a b). Also returns ``close()``."""
    conns: dict[int, tuple[RawClient, RawClient]] = {}

    def compare(*args: object, protocol: int = 2, batch: list[tuple[object, ...]] | None = None,
                replies: int = 1) -> bytes:
        if protocol not in conns:
            conns[protocol] = (RawClient(ours_port, protocol), RawClient(theirs_port, protocol))
        commands = batch if batch is not None else [args]
        results = []
        for conn in conns[protocol]:
            conn.sock.sendall(b"".join(pack(*command) for command in commands))
            results.append(conn.read(replies * len(commands)))
        mine, oracle = results
        assert mine == oracle, f"{commands} RESP{protocol}: kvrepl {mine!r} != redis {oracle!r}"
        return mine

    def close() -> None:
        for pair in conns.values():
            for conn in pair:
                conn.close()

    return compare, close


# -- blocked clients on a live server ----------------------------------------------------------

DEADLINE = 10.0  # seconds any wait in a test may take before it is a failure
# Seconds a kvrepl-server child may take to start (a bound for a broken start): its import
# alone took 5-7.5 s on this 2-core host at load 8, where a 10-20 s bound left little margin.
START_DEADLINE = 60.0


def clock_of_looks() -> Callable[[], float]:
    """A ``perf_counter`` for tests of the expiry cycles: it moves on 1 ms each time the
    calling thread looks at it. Other threads (a server another test left running, whose
    cron runs its own expiry cycles through the same module globals) read the real clock:
    their looks moved this one on (a full run cut a cycle two batches early)."""
    looks = iter(range(1_000_000))
    owner = threading.get_ident()
    real = time.perf_counter

    def clock() -> float:
        return next(looks) / 1000 if threading.get_ident() == owner else real()
    return clock


def poll(condition: Callable[[], bool], what: str, within: float = DEADLINE,
         interval: float = 0.001) -> None:
    """Wait (bounded) until ``condition()`` holds, checking it every ``interval`` seconds
    (a longer one for what takes a second, a replica's reconnection: fewer INFO calls)."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(interval)


async def replica_link_up(client: redis.Redis) -> None:
    """Until a redis-server replica says its link to its master is up, polled in a thread
    so that the master (in this trio loop) keeps serving it."""
    await trio.to_thread.run_sync(lambda: poll(
        lambda: client.info("replication")["master_link_status"] == "up",
        "the redis-server replica is up"))


@contextlib.asynccontextmanager
async def redis_replica_of(port: int) -> AsyncIterator[redis.Redis]:
    """A redis-server replica of the master on ``port`` (in this trio loop), its link up:
    a client of it; the replica stopped at the end."""
    replica = RedisServer("--replicaof", "127.0.0.1", str(port))
    try:
        client = replica.client()
        await replica_link_up(client)
        yield client
    finally:
        replica.stop()


def waiters(server: ThreadedServer, key: bytes, db: int = 0) -> int:
    """How many clients the live server has blocked on ``key``."""
    return len(server.server.blocking.waiting.get((db, key), ()))


def wait_blocked(server: ThreadedServer, key: bytes, count: int = 1, db: int = 0) -> None:
    """Poll until ``count`` clients wait on ``key``."""
    poll(lambda: waiters(server, key, db) >= count, f"{count} clients block on {key!r}")


class Call(threading.Thread):
    """One command on its own RESP2 connection, in a thread (started at once); ``result()``
    joins and returns the raw reply, or the ResponseError it raised."""

    def __init__(self, server: ThreadedServer, *args: object, db: int = 0) -> None:
        super().__init__(daemon=True)
        self.client = raw_replies(server.client(db=db, protocol=2))
        self.args = args
        self.reply: object = None
        self.start()

    def run(self) -> None:
        try:
            self.reply = self.client.execute_command(*self.args)
        except redis.ResponseError as err:
            self.reply = err

    def result(self) -> object:
        self.join(DEADLINE)
        assert not self.is_alive(), f"{self.args} never answered"
        self.client.close()
        return self.reply


# -- the same dataset on both servers ----------------------------------------------------------


def seed_value(kvrepl_server: ThreadedServer, real: redis.Redis, key: str, value: object,
               db: int = 0) -> None:
    """Store ``value`` under ``key`` on both servers: written straight into kvrepl's store
    (no other family's commands needed), and with commands on the real server."""
    kvrepl_server.engine.keyspace.dbs[db].data[key.encode()] = value
    client = real if db == 0 else redis.Redis(
        **{**real.connection_pool.connection_kwargs, "db": db})
    client.delete(key)
    if type(value) is bytes:
        client.set(key, value)
    elif type(value) is deque:
        client.rpush(key, *value)
    elif type(value) is dict:
        client.hset(key, mapping=value)
    elif type(value) is set:
        client.sadd(key, *value)
    elif type(value) is ZSet:
        client.zadd(key, dict(value.scores))
    else:
        raise TypeError(value)
    if client is not real:
        client.close()


def mutate(data: bytes, edits: list[tuple[int, int, str]], first: int = 0) -> bytes:
    """``data`` with hypothesis-drawn ``(position, byte, action)`` edits applied in turn
    ("set", "insert" or anything else for delete), positions folded into
    ``data[first:]`` so that a header can be kept intact."""
    out = bytearray(data)
    for position, byte, action in edits:
        position = first + position % (len(out) - first)
        if action == "set":
            out[position] = byte
        elif action == "insert":
            out.insert(position, byte)
        else:
            del out[position]
    return bytes(out)


class Certs:
    """A CA, a certificate for 127.0.0.1 (servers and clients alike) and a stranger CA."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="kvrepl-tls-"))
        self.ca, self.cert, self.key = self._issue("", "server", "127.0.0.1", "localhost")
        self.other_ca, self.other_cert, self.other_key = self._issue("other-", "other",
                                                                     "127.0.0.1")

    def _issue(self, ca_prefix: str, name: str, *hosts: str) -> tuple[Path, Path, Path]:
        """A new CA and a certificate it issued for ``hosts``, written to files: the CA's,
        the certificate's and its key's paths."""
        ca = trustme.CA()
        cert = ca.issue_cert(*hosts)
        paths = (self.dir / f"{ca_prefix}ca.crt", self.dir / f"{name}.crt",
                 self.dir / f"{name}.key")
        ca.cert_pem.write_to_path(str(paths[0]))
        cert.cert_chain_pems[0].write_to_path(str(paths[1]))
        cert.private_key_pem.write_to_path(str(paths[2]))
        return paths

    def options(self) -> dict[str, object]:
        return {"tls_cert_file": str(self.cert), "tls_key_file": str(self.key),
                "tls_ca_cert_file": str(self.ca)}

    def redis_args(self) -> list[str]:
        return ["--tls-cert-file", str(self.cert), "--tls-key-file", str(self.key),
                "--tls-ca-cert-file", str(self.ca)]
