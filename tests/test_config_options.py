"""No option accepted and ignored.

Every option kvrepl accepts (config file, command line, CONFIG SET, ``Config(...)``) does
what Redis 7.0's does; a value that would need something kvrepl lacks is refused by all
four with a message that says so. ``BEHAVIOUR`` maps every option to the test that shows
it working; the tests below it are those no other file had.
"""

from __future__ import annotations

import errno
import importlib
import logging
import re
import socket
import subprocess
import sys
import time

import pytest
import redis
import trio
import trio.testing
from support import (
    START_DEADLINE,
    RedisServer,
    ThreadedServer,
    free_port,
    no_retry,
    poll,
    redis_replica_of,
)

import kvrepl
from kvrepl.cli import parse_args
from kvrepl.commands.core import Engine
from kvrepl.config import OPTIONS, Config, ConfigError
from kvrepl.log import logger
from kvrepl.replication.stream import encode_command
from kvrepl.server.cron import close_idle_clients
from kvrepl.server.server import Server

# (option, value, what the refusal names): each is refused everywhere.
REFUSED = [
    ("list-compress-depth", "1", "compressed lists"),
]
# Defaults and values that ask for nothing kvrepl lacks: Redis's tools set some of them.
ACCEPTED = [
    ("maxmemory", "0"), ("appendonly", "no"),
    ("aof-use-rdb-preamble", "yes"), ("aof-use-rdb-preamble", "no"),
    ("slowlog-log-slower-than", "-1"), ("slowlog-log-slower-than", "10000"),
    ("slowlog-max-len", "128"), ("lua-time-limit", "5000"), ("list-compress-depth", "0"),
    ("active-expire-effort", "1"),
    ("client-output-buffer-limit", "replica 512mb 128mb 30"),
    ("client-output-buffer-limit", "normal 0 0 0 pubsub 32mb 8mb 60"),
    ("client-output-buffer-limit", "normal 1mb 512kb 10"),
    ("maxmemory-policy", "allkeys-lru"), ("save", ""), ("tls-ciphersuites", ""),
]


def _immutable(name: str) -> bool:
    return not Config.option(name).mutable


@pytest.mark.parametrize("name, value, lacking", REFUSED)
def test_refused_in_a_config_file(name, value, lacking, tmp_path):
    path = tmp_path / "kvrepl.conf"
    path.write_text(f"port 7777\n{name} {value}\n")
    with pytest.raises(ConfigError) as err:
        parse_args([str(path)])
    assert f">>> '{name} {value}'" in str(err.value)
    assert f"kvrepl does not support {lacking}" in str(err.value)


@pytest.mark.parametrize("name, value, lacking", REFUSED)
def test_refused_on_the_command_line(name, value, lacking):
    with pytest.raises(ConfigError, match=re.escape(f"kvrepl does not support {lacking}")):
        parse_args([f"--{name}", *value.split()])


@pytest.mark.parametrize("name, value, lacking", REFUSED)
def test_refused_by_config_set(name, value, lacking, engine, session):
    before = engine.config.get(name)
    reply = engine.execute(session, [b"CONFIG", b"SET", name.encode(), value.encode()])
    prefix = f"ERR CONFIG SET failed (possibly related to argument '{name}') - "
    if _immutable(name):  # as in Redis; the file and command line refuse the value
        assert str(reply) == prefix + "can't set immutable config"
    else:
        assert str(reply).startswith(prefix + f"kvrepl does not support {lacking}")
    assert engine.config.get(name) == before


@pytest.mark.parametrize("name, value, lacking", REFUSED)
def test_refused_by_the_embedded_api(name, value, lacking):
    with pytest.raises(ConfigError, match=re.escape(f"kvrepl does not support {lacking}")):
        kvrepl.Master(**{name.replace("-", "_"): value})


@pytest.mark.parametrize("name, value", ACCEPTED)
def test_defaults_and_no_op_values_are_accepted_everywhere(name, value, engine, session,
                                                           tmp_path):
    path = tmp_path / "kvrepl.conf"
    path.write_text(f'{name} "{value}"\n')
    from_file = parse_args([str(path)]).get(name)
    assert parse_args([f"--{name}", *(value.split() or [""])]).get(name) == from_file
    if not _immutable(name):
        reply = engine.execute(session, [b"CONFIG", b"SET", name.encode(), value.encode()])
        assert reply == kvrepl.protocol.replies.OK  # type: ignore[attr-defined]
        assert engine.config.get(name) == from_file


def test_kvrepl_server_exits_on_a_refused_option():
    result = subprocess.run([sys.executable, "-m", "kvrepl", "--list-compress-depth", "1"],
                            capture_output=True, text=True, timeout=START_DEADLINE)
    assert result.returncode == 1
    assert "*** FATAL CONFIG FILE ERROR" in result.stderr
    assert "kvrepl does not support compressed lists yet; only '0' is accepted" \
        in result.stderr


def test_config_get_and_immutability_match_redis():
    """Both servers started alike: CONFIG GET gives the same text for every option (and
    alias) kvrepl has, and CONFIG SET of its current value succeeds or fails alike, except
    port, bind and tls-port, which kvrepl cannot change while running
    (refused, not ignored)."""
    real = RedisServer()
    ours = ThreadedServer(Config(save=(), dir=real.dir, port=0)).start()
    level = logger.level  # CONFIG SET loglevel sets it for the whole process
    try:
        theirs, mine = real.client(decode_responses=True), ours.client(decode_responses=True)
        names = sorted({name for option in OPTIONS for name in (option.name, *option.aliases)})
        for name in names:
            if name != "port":
                assert mine.config_get(name) == theirs.config_get(name), name

        def outcome(client, name, value):
            try:
                return client.config_set(name, value)
            except redis.ResponseError as err:
                return str(err)

        for option in OPTIONS:
            if option.name in ("port", "bind", "tls-port"):
                assert not option.mutable
                continue
            value = theirs.config_get(option.name)[option.name]
            assert outcome(mine, option.name, value) == outcome(theirs, option.name, value), \
                option.name
    finally:
        logger.setLevel(level)
        ours.stop()
        real.stop()


# -- behaviour tests for the options no other test file covered --------------------------------

def test_protected_mode_refuses_other_hosts_as_redis_does():
    """Bound to a non-loopback address with no password, a connection from it is refused
    with Redis's DENIED text; protected-mode no lets it in."""
    address = _non_loopback_address()
    real = RedisServer("--bind", address, "127.0.0.1")
    try:  # stopped even when ours cannot start
        ours = ThreadedServer(Config(save=(), bind=(address, "127.0.0.1"))).start()
        try:
            for port in (real.port, ours.port):
                assert _raw_ping(address, port) == _raw_ping(address, real.port)
            assert _raw_ping(address, ours.port).startswith(b"-DENIED Redis is running in "
                                                           b"protected mode")
            for client in (real.client(), ours.client()):
                client.config_set("protected-mode", "no")
            assert _raw_ping(address, ours.port) == _raw_ping(address, real.port) \
                == b"+PONG\r\n"
        finally:
            ours.stop()
    finally:
        real.stop()


def test_only_127_0_0_1_and_unix_sockets_are_local_as_in_redis(tmp_path):
    """Redis 7.0's islocalClient: 127.0.0.1, ::1 and UNIX sockets are local, the rest of
    127.0.0.0/8 is not. A client from 127.0.0.2 is refused by protected mode and by
    ``enable-debug-command local`` (and counted in rejected_connections), as by
    redis-server in the same run; 127.0.0.1 and the UNIX socket are let in."""
    real_sock, our_sock = str(tmp_path / "real.sock"), str(tmp_path / "ours.sock")
    real = RedisServer("--enable-debug-command", "local", "--unixsocket", real_sock)
    try:
        ours = ThreadedServer(Config(save=(), enable_debug_command="local",
                                     unixsocket=our_sock)).start()
        try:
            debug = b"DEBUG SLEEP 0\r\n"
            for source in ("127.0.0.2", "127.0.0.1"):
                for command in (b"PING\r\n", debug):
                    replies = [_raw_ping("127.0.0.1", port, source, command)
                               for port in (real.port, ours.port)]
                    assert replies[0] == replies[1], (source, command, replies)
            rejected = [client.info("stats")["rejected_connections"]
                        for client in (real.client(), ours.client())]
            assert rejected[0] == rejected[1] == 2
            assert _raw_ping("127.0.0.1", ours.port, "127.0.0.2").startswith(
                b"-DENIED Redis is running in protected mode")
            assert _raw_ping("127.0.0.1", ours.port, "127.0.0.1", debug) == b"+OK\r\n"
            for client in (real.client(), ours.client()):
                client.config_set("protected-mode", "no")
            refused = b"-ERR DEBUG command not allowed. If the enable-debug-command option"
            for port in (real.port, ours.port):
                assert _raw_ping("127.0.0.1", port, "127.0.0.2") == b"+PONG\r\n"
                assert _raw_ping("127.0.0.1", port, "127.0.0.2", debug).startswith(refused)
            for path in (real_sock, our_sock):
                assert redis.Redis(unix_socket_path=path).execute_command(
                    "DEBUG", "SLEEP", "0") == b"OK"
        finally:
            ours.stop()
    finally:
        real.stop()


async def test_port_zero_on_several_addresses_picks_again_when_one_has_it_taken(monkeypatch):
    # Port 0 takes the first address's free port for every address; another process can
    # hold that port on a later address (a fresh-clone run met it). The OS's race cannot be
    # made to happen on demand, so the second address refuses once here.
    real_bind = Server._bind_address
    calls: list[tuple[int, str]] = []

    def taken_once(self: Server, address: str, port: int) -> object:
        calls.append((port, address))
        if address == "127.0.0.2" and len(calls) == 2:
            raise OSError(errno.EADDRINUSE, "Address already in use")
        return real_bind(self, address, port)

    monkeypatch.setattr(Server, "_bind_address", taken_once)
    async with kvrepl.Master(port=0, bind=("127.0.0.1", "127.0.0.2")) as master:
        assert [host for _, host in calls] == ["127.0.0.1", "127.0.0.2"] * 2
        assert calls[2][0] == 0 and calls[3][0] == master.port  # picked again, one port
        for host in ("127.0.0.1", "127.0.0.2"):
            stream = await trio.open_tcp_stream(host, master.port)
            async with stream:
                await stream.send_all(b"PING\r\n")
                assert await stream.receive_some(64) == b"+PONG\r\n"


def _non_loopback_address() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: only a route is chosen
            address = probe.getsockname()[0]
        except OSError:
            address = "127.0.0.1"
    if address.startswith("127."):
        pytest.skip("this machine has no non-loopback IPv4 address")
    return address


def _raw_ping(host: str, port: int, source: str | None = None,
              command: bytes = b"PING\r\n") -> bytes:
    """``command``'s reply (inline), from ``source`` when given (the client's address)."""
    with socket.create_connection((host, port), timeout=10,
                                  source_address=source and (source, 0)) as sock:
        sock.sendall(command)
        data = b""
        while not data.endswith(b"\r\n"):
            try:
                chunk = sock.recv(4096)
            except ConnectionResetError:  # DENIED: the server hangs up at once
                break
            if not chunk:
                break
            data += chunk
        return data


def test_loglevel_at_startup_and_by_config_set():
    engine = Engine(Config(save=()))
    session = engine.new_session()
    saved = logger.level
    try:
        engine.execute(session, [b"CONFIG", b"SET", b"loglevel", b"warning"])
        assert logger.level == logging.WARNING
        engine.execute(session, [b"CONFIG", b"SET", b"loglevel", b"debug"])
        assert logger.level == logging.DEBUG
    finally:
        logger.setLevel(saved)


def test_logfile_and_loglevel_of_kvrepl_server(tmp_path):
    """--logfile writes the log there, nothing to stdout; --loglevel warning keeps the
    warnings (SIGTERM's) and leaves out the notices ("Ready to accept connections")."""
    log = tmp_path / "kvrepl.log"
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "kvrepl", "--port", str(port), "--save", "", "--logfile",
         str(log), "--loglevel", "warning"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        poll(lambda: _answers(port), "kvrepl-server answers", within=START_DEADLINE)
    finally:
        process.terminate()  # SIGTERM: a clean shutdown, logged as a warning
        output, _ = process.communicate(timeout=20)
    assert output == b""
    text = log.read_text()
    assert "Received SIGTERM scheduling shutdown..." in text
    assert "Ready to accept connections" not in text


def _answers(port: int) -> bool:
    try:
        # No retries: polled (redis-py's backoff, up to 1 s a try, outlasts the start).
        with redis.Redis(port=port, socket_timeout=1, retry=no_retry()) as client:
            return client.ping()
    except redis.ConnectionError:
        return False


def test_tcp_keepalive_is_set_on_client_sockets():
    server = ThreadedServer(Config(save=(), tcp_keepalive=60)).start()
    client = server.client()
    try:
        client.ping()
        (connection,) = server.server.connections.values()
        sock = connection.stream.socket
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        if hasattr(socket, "TCP_KEEPIDLE"):
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 60
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 20
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
        client.config_set("tcp-keepalive", "0")
        other = server.client()
        other.ping()
        fresh = [c for c in server.server.connections.values() if c is not connection]
        assert fresh[0].stream.socket.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
        other.close()
    finally:
        client.close()
        server.stop()


def test_timeout_closes_idle_clients_over_tcp():
    server = ThreadedServer(Config(save=(), timeout=1)).start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
            sock.sendall(b"PING\r\n")
            assert sock.recv(100) == b"+PONG\r\n"
            assert sock.recv(100) == b""  # closed by the server once idle for a second
    finally:
        server.stop()


def test_timeout_spares_replicas_blocked_and_pubsub_clients():
    """clientsCronHandleTimeout's exceptions, on sessions idle for ten seconds."""
    engine = Engine(Config(save=(), timeout=5))
    killed = []
    sessions = {}
    for kind in ("normal", "replica", "master", "monitor", "blocked", "pubsub"):
        session = engine.new_session()
        session.last_interaction = time.time() - 10
        session.on_kill = lambda k=kind: killed.append(k)
        sessions[kind] = session
    sessions["replica"].is_replica = True
    sessions["master"].is_master = True
    sessions["monitor"].monitor = True
    sessions["blocked"].blocked = object()
    sessions["pubsub"].channels[b"c"] = None
    assert close_idle_clients(engine) == 1 and killed == ["normal"]
    engine.config.set("timeout", "0")
    assert close_idle_clients(engine) == 0


def test_replica_output_buffer_limit_drops_a_replica_that_does_not_read():
    """client-output-buffer-limit for the replica class: a replica link that stops reading
    is dropped once the master holds more than the hard limit for it."""
    server = ThreadedServer(Config(save=(), repl_diskless_sync_delay=0)).start()
    client = server.client()
    try:
        client.config_set("client-output-buffer-limit", "replica 256kb 0 0")
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting
            sock.settimeout(20)
            sock.connect(("127.0.0.1", server.port))
            sock.sendall(encode_command([b"PSYNC", b"?", b"-1"]))
            poll(lambda: client.info("replication")["connected_slaves"] == 1,
                 "the replica is attached")
            value = b"x" * 10_000
            deadline = time.monotonic() + 20
            while client.info("replication")["connected_slaves"]:
                assert time.monotonic() < deadline, "the replica was never dropped"
                client.set("k", value)
    finally:
        client.close()
        server.stop()


def test_pubsub_output_buffer_limit_drops_a_subscriber_that_does_not_read():
    """client-output-buffer-limit for the pubsub class, on both servers: a subscriber that
    stops reading is closed once what waits for it passes the hard limit."""
    real = RedisServer()
    ours = ThreadedServer(Config(save=())).start()
    try:
        for server in (real, ours):
            client = server.client()
            client.config_set("client-output-buffer-limit", "pubsub 256kb 0 0")
            with socket.socket() as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.settimeout(20)
                sock.connect(("127.0.0.1", server.port))
                sock.sendall(encode_command([b"SUBSCRIBE", b"news"]))
                poll(lambda c=client: c.pubsub_numsub("news")[0][1] == 1, "subscribed")
                value = b"x" * 10_000
                deadline = time.monotonic() + 20
                while client.pubsub_numsub("news")[0][1]:
                    assert time.monotonic() < deadline, "the subscriber was never dropped"
                    client.publish("news", value)
            client.close()
    finally:
        ours.stop()
        real.stop()


def test_client_query_buffer_limit_closes_the_client(same):
    """A client whose unread query passes the limit is closed without a reply, on both
    servers: a big argument on its way, or requests sent while it is blocked."""
    same("CONFIG", "SET", "client-query-buffer-limit", "100")  # below Redis's minimum
    ours = ThreadedServer(Config(save=())).start()
    real = RedisServer()
    try:
        for server in (ours, real):
            server.client().config_set("client-query-buffer-limit", "1mb")
            with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
                sock.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3000000\r\n")
                _send_until_closed(sock, b"x" * 65536)
            with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
                sock.sendall(encode_command([b"BLPOP", b"nothing", b"0"]))
                poll(lambda s=server: s.client().info("clients")["blocked_clients"] == 1,
                     "the client blocks")
                _send_until_closed(sock, encode_command([b"PING"]) * 5000)
            assert server.client().ping()
    finally:
        ours.stop()
        real.stop()


def _send_until_closed(sock: socket.socket, chunk: bytes) -> None:
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            sock.sendall(chunk)
    except (BrokenPipeError, ConnectionResetError):
        try:
            rest = sock.recv(100)
        except ConnectionResetError:
            rest = b""
        assert rest == b""  # closed without a reply
        return
    raise AssertionError("the server never closed the connection")


async def test_replica_serve_stale_data():
    """A replica whose master is unreachable: with no, reads get MASTERDOWN."""
    dead = ("127.0.0.1", free_port())
    for serve in (True, False):
        async with kvrepl.Replica(follow=dead, replica_serve_stale_data=serve) as replica:
            if serve:
                assert replica.execute_command("GET", "k") is None
            else:
                with pytest.raises(kvrepl.ReplyError, match="^MASTERDOWN Link with MASTER is "
                                                            "down and replica-serve-stale"):
                    replica.execute_command("GET", "k")
            assert b"master_link_status:down" in replica.execute_command("INFO")  # STALE


async def test_replica_announces_ip_port_and_priority_and_authenticates():
    """A kvrepl replica of a real redis-server with a password: masterauth gets it in, the
    master lists the announced address, the replica reports its priority."""
    master = RedisServer("--repl-diskless-sync-delay", "0")
    try:
        master.client().config_set("requirepass", "pw")
        async with kvrepl.Replica(follow=("127.0.0.1", master.port), masterauth="pw",
                                  masteruser="default", replica_announce_ip="10.1.2.3",
                                  replica_announce_port=4321, replica_priority=7) as replica:
            await replica.wait_synced()
            info = await trio.to_thread.run_sync(
                lambda: master.client(password="pw").info("replication"))
            assert info["slave0"]["ip"] == "10.1.2.3" and info["slave0"]["port"] == 4321
            assert "slave_priority:7" in replica.execute_command("INFO", "replication").decode()
    finally:
        master.stop()


async def test_repl_backlog_ttl_frees_the_backlog_without_replicas():
    async with kvrepl.Master(repl_backlog_ttl=1) as master:
        async with kvrepl.Replica(follow=master) as replica:
            await replica.wait_synced()
        assert master.replication.backlog is not None
        with trio.fail_after(20):
            while master.replication.backlog is not None:
                await trio.sleep(0.1)
        assert "repl_backlog_active:0" in master.execute_command("INFO", "replication").decode()


def test_repl_ping_replica_period_pings_a_replica():
    server = ThreadedServer(Config(save=(), repl_diskless_sync_delay=0,
                                   repl_ping_replica_period=1)).start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
            sock.sendall(encode_command([b"PSYNC", b"?", b"-1"]))
            received = b""
            while b"*1\r\n$4\r\nping\r\n" not in received:
                chunk = sock.recv(65536)
                assert chunk, "the master closed the link"
                received += chunk
    finally:
        server.stop()


async def test_repl_diskless_sync_max_replicas_starts_without_the_delay():
    """A delay of a minute, but two replicas are all the master waits for."""
    async with kvrepl.Master(repl_diskless_sync_delay=60,
                             repl_diskless_sync_max_replicas=2) as master:
        master.set(b"k", b"v")
        with trio.fail_after(20):
            async with kvrepl.Replica(follow=master) as one, \
                    kvrepl.Replica(follow=master) as two:
                await one.wait_synced()
                await two.wait_synced()
                assert one.get(b"k") == two.get(b"k") == b"v"
        assert master.replication.sync_full == 2


async def test_repl_backlog_size_resizes_the_live_backlog():
    async with kvrepl.Master() as master, kvrepl.Replica(follow=master) as replica:
        await replica.wait_synced()
        for i in range(1000):
            master.set(b"k%d" % i, b"v" * 100)
        master.execute_command("CONFIG", "SET", "repl-backlog-size", "20000")
        assert master.replication.backlog.size == 20000
        assert master.replication.backlog.histlen <= 20000
        master.execute_command("CONFIG", "SET", "repl-backlog-size", "100")  # Redis's minimum
        assert master.execute_command("CONFIG", "GET", "repl-backlog-size") == {
            b"repl-backlog-size": b"16384"}


@pytest.mark.parametrize("diskless, framing", [("yes", "eof"), ("no", "len")])
async def test_repl_diskless_sync_decides_the_payload_framing(diskless, framing):
    """With a real redis-server replica (no lz4): $EOF: streaming or a sized payload."""
    async with kvrepl.Master(port=0, repl_diskless_sync=diskless == "yes") as master:
        master.set(b"k", b"v")
        async with redis_replica_of(master.port) as client:
            assert await trio.to_thread.run_sync(client.get, "k") == b"v"
            assert master.replication.last_payload_framing == framing


def test_min_replicas_to_write_and_max_lag(same, configure):
    configure("min-replicas-to-write", 1)
    configure("min-replicas-max-lag", 5)
    same("SET", "k", "v")  # NOREPLICAS on both
    same("GET", "k")
    configure("min-replicas-to-write", 0)
    same("SET", "k", "v")


def test_lazyfree_lazy_user_flush(same, configure):
    """Redis frees in the background, kvrepl at once; the dataset is the same."""
    configure("lazyfree-lazy-user-flush", "yes")
    same("SET", "k", "v")
    same("FLUSHALL")
    same("DBSIZE")


def test_lfu_log_factor(same, configure):
    """With factor 0 every access counts, deterministically (no decay: lfu-decay-time 0)."""
    configure("maxmemory-policy", "allkeys-lfu")
    configure("lfu-log-factor", 0)
    configure("lfu-decay-time", 0)
    same("SET", "k", "v")
    for _ in range(3):
        same("GET", "k")
    assert same("OBJECT", "FREQ", "k") == 8


@pytest.mark.parametrize("hz", [10, 50])
def test_hz_is_how_often_the_cron_runs(hz, monkeypatch):
    """One second of a node's cron (on trio's mock clock) runs the active expiry cycle
    ``hz`` times; CONFIG SET hz changes it (INFO shows it as Redis does)."""
    from kvrepl.server import cron

    engine = Engine(Config(save=()))
    engine.execute(engine.new_session(), [b"CONFIG", b"SET", b"hz", b"%d" % hz])
    cycles = []
    real_cycle = cron.expire_cycle
    # Only this engine's cycles: a session's servers run their crons in other threads.
    monkeypatch.setattr(cron, "expire_cycle",
                        lambda e: (e is engine and cycles.append(1)) or real_cycle(e))

    async def one_second() -> None:
        with trio.move_on_after(1.0001):
            await cron.run_cron(engine)

    trio.run(one_second, clock=trio.testing.MockClock(autojump_threshold=0))
    assert len(cycles) == hz
    assert f"hz:{hz}\r\nconfigured_hz:{hz}\r\n" in engine.execute(
        engine.new_session(), [b"INFO", b"server"]).decode()


async def test_config_set_replica_read_only_lets_clients_write_on_a_replica():
    """As on redis-server: a writable replica accepts its clients' writes locally."""
    async with kvrepl.Master() as master, kvrepl.Replica(follow=master, port=0) as replica:
        await replica.wait_synced()

        def writes() -> list[object]:
            client = redis.Redis(port=replica.port)
            seen = []
            for value in ("no", "yes"):
                client.config_set("replica-read-only", value)
                seen.append(client.config_get("replica-read-only")["replica-read-only"])
                try:
                    seen.append(client.set("local", value))
                except redis.ResponseError as err:
                    seen.append(str(err))
            return seen

        assert await trio.to_thread.run_sync(writes) == [
            "no", True, "yes", "You can't write against a read only replica."]  # ReadOnlyError
        assert replica.get(b"local") == b"no" and master.get(b"local") is None


# -- every option has its behaviour test -------------------------------------------------------

BEHAVIOUR = {
    "port": "test_cli::test_signal_shuts_down_cleanly_with_redis_style_logs",
    "bind": "test_config_options::test_protected_mode_refuses_other_hosts_as_redis_does",
    "protected-mode": "test_config_options::test_protected_mode_refuses_other_hosts_as_redis_does",
    "dir": "test_persistence::test_the_dump_file_name_follows_dir_and_dbfilename",
    "dbfilename": "test_persistence::test_the_dump_file_name_follows_dir_and_dbfilename",
    "enable-protected-configs": "test_protection::test_allowed_from_loopback",
    "enable-debug-command": "test_protection::test_debug_is_refused_by_default",
    "enable-module-command": "test_protection::test_enable_module_command_as_redis",
    "requirepass": "test_connection::test_requirepass",
    "aclfile": "test_acl::test_acl_file_save_and_load",
    "tls-port": "test_tls::test_redis_py_over_tls",
    "tls-cert-file": "test_tls::test_options_are_honoured_or_refused",
    "tls-key-file": "test_tls::test_redis_py_over_tls",
    "tls-key-file-pass": "test_tls::test_options_are_honoured_or_refused",
    "tls-ca-cert-file": "test_tls::test_handshakes_that_must_fail",
    "tls-ca-cert-dir": "test_tls::test_ca_cert_dir_and_key_file_pass",
    "tls-auth-clients": "test_tls::test_auth_clients_optional_and_no",
    "tls-replication": "test_tls::test_kvrepl_replica_over_tls_of_redis_server",
    "tls-protocols": "test_tls::test_handshakes_that_must_fail",
    "tls-ciphers": "test_tls::test_options_are_honoured_or_refused",
    "tls-ciphersuites": "test_tls_ciphersuites::test_clients_negotiate_only_the_suites_allowed",
    "tls-prefer-server-ciphers": "test_tls::test_options_are_honoured_or_refused",
    "acllog-max-len": "test_acl::test_acllog_max_len_and_acl_pubsub_default",
    "acl-pubsub-default": "test_acl::test_acllog_max_len_and_acl_pubsub_default",
    "masterauth": "test_config_options::"
                  "test_replica_announces_ip_port_and_priority_and_authenticates",
    "masteruser": "test_config_options::"
                  "test_replica_announces_ip_port_and_priority_and_authenticates",
    "replicaof": "test_replication_errors::test_kvrepl_server_exits_when_it_panics",
    "databases": "test_digest::test_keys_with_ttl_and_several_databases",
    "save": "test_persistence::test_a_live_server_wires_bgsave_flushall_and_the_schedule",
    "loglevel": "test_config_options::test_logfile_and_loglevel_of_kvrepl_server",
    "logfile": "test_config_options::test_logfile_and_loglevel_of_kvrepl_server",
    "daemonize": "test_config_all::test_daemonize_forks_into_the_background",
    "timeout": "test_config_options::test_timeout_closes_idle_clients_over_tcp",
    "tcp-keepalive": "test_config_options::test_tcp_keepalive_is_set_on_client_sockets",
    "maxclients": "test_server::test_maxclients",
    "hz": "test_config_options::test_hz_is_how_often_the_cron_runs",
    "proto-max-bulk-len": "test_strings::test_append_size_limit",
    "client-query-buffer-limit": "test_config_options::"
                                 "test_client_query_buffer_limit_closes_the_client",
    "client-output-buffer-limit": "test_config_options::"
                                  "test_pubsub_output_buffer_limit_drops_a_subscriber_that_does_not_read",
    "hash-max-listpack-entries": "test_strings::test_collection_encodings_match_redis",
    "hash-max-listpack-value": "test_strings::test_collection_encodings_match_redis",
    "set-max-intset-entries": "test_strings::test_collection_encodings_match_redis",
    "zset-max-listpack-entries": "test_strings::test_collection_encodings_match_redis",
    "zset-max-listpack-value": "test_strings::test_collection_encodings_match_redis",
    "list-max-listpack-size": "test_rdb_writer::test_list_nodes_are_sized_like_quicklist",
    "stream-node-max-bytes": "test_streams::test_approximate_trimming_node_for_node",
    "stream-node-max-entries": "test_streams::test_approximate_trimming_node_for_node",
    "list-compress-depth": "test_config_options::test_refused_by_config_set",
    "hll-sparse-max-bytes": "test_hyperloglog::test_random_pfadds_give_redis_bytes",
    "stop-writes-on-bgsave-error": "test_persistence::"
                                   "test_a_failed_bgsave_stops_writes_as_redis_does",
    "rdbcompression": "test_persistence::test_rdbcompression_and_rdbchecksum",
    "rdbchecksum": "test_persistence::test_rdbcompression_and_rdbchecksum",
    "maxmemory": "test_eviction::test_writes_evict_and_the_dataset_stays_near_the_limit",
    "maxmemory-samples": "test_eviction::test_lru_evicts_mostly_cold_keys",
    "maxmemory-eviction-tenacity": "test_eviction::"
                                   "test_config_set_maxmemory_evicts_at_once_and_tenacity_hands_over_to_cron",
    "replica-ignore-maxmemory": "test_eviction::"
                                "test_a_replica_told_not_to_ignore_maxmemory_evicts_on_its_own",
    "appendonly": "test_aof::test_always_keeps_every_acknowledged_write_across_sigkill",
    "appendfilename": "test_aof::test_embedded_master_takes_the_aof_options",
    "appenddirname": "test_aof::test_embedded_master_takes_the_aof_options",
    "appendfsync": "test_aof::test_everysec_loses_at_most_the_last_seconds_across_sigkill",
    "no-appendfsync-on-rewrite":
        "test_aof::test_no_appendfsync_on_rewrite_skips_fsync_while_a_snapshot_runs",
    "auto-aof-rewrite-percentage": "test_aof::test_automatic_rewrite_on_growth",
    "auto-aof-rewrite-min-size": "test_aof::test_automatic_rewrite_on_growth",
    "aof-load-truncated":
        "test_aof::test_a_torn_last_write_loads_with_aof_load_truncated_and_is_refused_without",
    "aof-timestamp-enabled": "test_aof::test_redis_server_loads_kvrepl_aof_directory",
    "aof-use-rdb-preamble": "test_aof::test_redis_server_loads_kvrepl_aof_directory",
    "aof-rewrite-incremental-fsync":
        "test_aof::test_incremental_fsync_syncs_saves_and_rewrites_every_4_mb",
    "rdb-save-incremental-fsync":
        "test_aof::test_incremental_fsync_syncs_saves_and_rewrites_every_4_mb",
    "maxmemory-policy": "test_keys::test_object_freq_under_lfu_matches_redis_for_new_and_read_keys",
    "replica-read-only": "test_config_options::"
                         "test_config_set_replica_read_only_lets_clients_write_on_a_replica",
    "replica-serve-stale-data": "test_config_options::test_replica_serve_stale_data",
    "replica-announce-ip": "test_config_options::"
                           "test_replica_announces_ip_port_and_priority_and_authenticates",
    "replica-announce-port": "test_config_options::"
                             "test_replica_announces_ip_port_and_priority_and_authenticates",
    "replica-priority": "test_config_options::"
                        "test_replica_announces_ip_port_and_priority_and_authenticates",
    "propagation-error-behavior": "test_replication_errors::"
                                  "test_panic_behaviors_stop_a_read_only_replica",
    "replica-ignore-disk-write-errors": "test_replication_errors::"
                                        "test_a_replica_that_cannot_save_panics_on_a_write_unless_told",
    "repl-backlog-size": "test_config_options::test_repl_backlog_size_resizes_the_live_backlog",
    "repl-backlog-ttl": "test_config_options::"
                        "test_repl_backlog_ttl_frees_the_backlog_without_replicas",
    "repl-timeout": "test_replication::test_corrupt_payload_keeps_the_replica_data_and_it_retries",
    "repl-ping-replica-period": "test_config_options::test_repl_ping_replica_period_pings_a_replica",
    "repl-diskless-sync": "test_config_options::"
                          "test_repl_diskless_sync_decides_the_payload_framing",
    "repl-diskless-sync-delay": "test_config_options::"
                                "test_repl_diskless_sync_max_replicas_starts_without_the_delay",
    "repl-diskless-sync-max-replicas": "test_config_options::"
                                       "test_repl_diskless_sync_max_replicas_starts_without_the_delay",
    "repl-diskless-load": "test_replication::"
                          "test_diskless_load_setting_decides_whether_the_replica_keeps_a_dump",
    "min-replicas-to-write": "test_config_options::test_min_replicas_to_write_and_max_lag",
    "min-replicas-max-lag": "test_config_options::test_min_replicas_to_write_and_max_lag",
    "lazyfree-lazy-user-flush": "test_config_options::test_lazyfree_lazy_user_flush",
    "busy-reply-threshold": "test_scripting::test_busy_script_and_script_kill_like_redis",
    "slowlog-log-slower-than": "test_server_commands2::test_slowlog_threshold_honoured",
    "slowlog-max-len": "test_server_commands2::test_slowlog_len_get_count_and_max_len",
    "latency-monitor-threshold": "test_server_commands2::"
                                 "test_latency_monitor_records_slow_commands",
    "latency-tracking": "test_server_commands2::test_latency_histogram_named_commands",
    "notify-keyspace-events": "test_notifications::test_config_get_canonical",
    "tracking-table-max-keys": "test_tracking::test_flush_expiry_and_table_limit",
    "active-expire-effort":
        "test_config_all::test_active_expire_effort_scales_the_cycle_as_redis",
    "lfu-log-factor": "test_config_options::test_lfu_log_factor",
    "lfu-decay-time": "test_keys::test_object_freq_grows_logarithmically_and_decays",
    "rdb-key-save-delay": "test_test_hooks::"
                          "test_rdb_key_save_delay_keeps_a_bgsave_in_progress_while_clients_are_served",
    "key-load-delay": "test_test_hooks::"
                      "test_key_load_delay_slows_a_replicas_load_while_it_serves_its_old_data",
    "loading-process-events-interval-bytes": "test_test_hooks::"
                                             "test_loading_yields_every_interval_bytes_and_sleeps_per_key",
    "sanitize-dump-payload":
        "test_dump_restore::test_sanitize_dump_payload_no_skips_layout_checks_as_redis",
    "shutdown-timeout":
        "test_replication_commands::test_shutdown_gives_up_on_a_replica_after_shutdown_timeout",
    "tcp-backlog": "test_config_all::test_tcp_backlog_reaches_listen",
    "rdb-del-sync-files": "test_config_all::test_rdb_del_sync_files_on_a_master",
    "oom-score-adj": "test_config_all::test_oom_score_adj_follows_the_role_as_redis",
    "oom-score-adj-values": "test_config_all::test_oom_score_adj_follows_the_role_as_redis",
    "maxmemory-clients":
        "test_config_all::test_maxmemory_clients_evicts_the_biggest_client_as_redis",
    "aof-disable-auto-gc": "test_config_all::test_aof_disable_auto_gc_keeps_history_as_redis",
    "unixsocket": "test_config_all::test_unixsocket_serves_redis_cli_and_redis_py",
    "unixsocketperm": "test_config_all::test_unixsocket_serves_redis_cli_and_redis_py",
    "pidfile": "test_config_all::test_pidfile_written_and_removed_at_sigterm",
    "supervised": "test_config_all::test_supervised_systemd_hears_what_redis_says",
    "syslog-enabled": "test_config_all::test_syslog_records",
    "syslog-ident": "test_config_all::test_syslog_records",
    "syslog-facility": "test_config_all::test_syslog_records",
    "always-show-logo": "test_config_all::test_always_show_logo",
    "set-proc-title": "test_config_all::test_process_title_follows_the_template",
    "proc-title-template": "test_config_all::test_process_title_follows_the_template",
    "shutdown-on-sigint": "test_config_all::test_shutdown_on_signal_flags_as_redis",
    "shutdown-on-sigterm": "test_config_all::test_shutdown_on_signal_flags_as_redis",
    "crash-log-enabled": "test_config_all::test_crash_log",
    "disable-thp": "test_config_all::test_disable_thp",
    "dynamic-hz": "test_config_all::test_dynamic_hz_doubles_with_many_clients",
    "latency-tracking-info-percentiles":
        "test_config_all::test_latency_tracking_info_percentiles_as_redis",
    "bind-source-addr": "test_config_all::test_bind_source_addr_is_the_replica_link_source",
    "repl-disable-tcp-nodelay": "test_config_all::test_repl_disable_tcp_nodelay",
    "replica-announced": "test_config_all::test_replica_announced_shows_in_info_as_redis",
    "tls-client-cert-file":
        "test_config_all::test_tls_client_cert_is_what_a_replica_shows_its_master",
    "tls-client-key-file":
        "test_config_all::test_tls_client_cert_is_what_a_replica_shows_its_master",
    "tls-client-key-file-pass": "test_config_all::test_tls_client_key_file_pass",
    "tls-dh-params-file": "test_config_all::test_tls_dh_params_file_enables_dhe",
    "tls-session-caching": "test_config_all::test_tls_session_cache",
    "tls-session-cache-size": "test_config_all::test_tls_session_cache",
    "tls-session-cache-timeout": "test_config_all::test_tls_session_cache",
    # accepted only at their value true of kvrepl (docs/config.md)
    **{option.name: "test_config_all::test_refused_everywhere"
       for option in OPTIONS if option.reason},
}


def test_every_option_has_a_behaviour_test():
    assert sorted(BEHAVIOUR) == sorted(option.name for option in OPTIONS)
    for where in BEHAVIOUR.values():
        module, name = where.split("::")
        assert callable(getattr(importlib.import_module(module), name)), where


def test_every_option_kvrepl_only_partly_has_is_in_the_refusal_table():
    from test_config_all import REFUSED as REFUSED_FOR_GOOD

    limited = {option.name for option in OPTIONS if option.only is not None}
    refused = {Config.option(name).name for name, _, _ in REFUSED}
    refused |= {Config.option(name).name for name in REFUSED_FOR_GOOD}
    assert limited <= refused


def _moves(server: object) -> list[object]:
    """CONFIG SET port and bind on one connection to ``server``, as a user moves a node:
    what each step answered and what a new client then met."""
    client = server.client(single_connection_client=True, retry=no_retry())
    seen: list[object] = []

    def reaches(port: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16) == b"+PONG\r\n"
        except ConnectionRefusedError:
            return False

    def step(*args: str) -> None:
        try:
            seen.append(client.execute_command("CONFIG", "SET", *args))
        except redis.ResponseError as err:
            seen.append(str(err))
        seen.append(client.config_get("port")["port"] == str(moved))

    first = server.port
    moved = free_port()
    with client, socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        step("port", str(moved))
        seen += [reaches(moved), reaches(first), client.ping(),
                 client.info("server")["tcp_port"] == moved]
        step("port", str(taken.getsockname()[1]))  # in use: refused, the old port kept
        seen += [reaches(moved), client.config_get("bind")["bind"]]
        step("bind", "127.0.0.1 -::1")
        seen += [reaches(moved), client.config_get("bind")["bind"]]
        step("bind", "192.0.2.1")  # an address of no interface here: refused, kept
        seen += [reaches(moved), client.config_get("bind")["bind"]]
        step("port", str(moved))  # the same port again: closed first, then taken again
        seen.append(reaches(moved))
        step("port", str(first))  # back where it started
        seen += [reaches(first), reaches(moved)]
    return seen


DEADLINE = 30


def test_config_set_port_and_bind_move_the_listeners_as_redis():
    """Redis 7.0's CONFIG SET port and bind move its listeners at once (changeListenPort,
    changeBindAddr: the old ones closed, the new ones opened, the connections kept); a
    port in use or an address that is not here fails with Redis's message and listens
    where it did. kvrepl answered "can't set immutable config"."""
    real = RedisServer()
    ours = ThreadedServer(Config(save=())).start()
    try:
        theirs, mine = _moves(real), _moves(ours)
    finally:
        ours.stop()
        real.stop()
    assert mine == theirs
    assert theirs[:6] == [b"OK", True, True, False, True, True]
    assert "Unable to listen on this port" in theirs[6]


async def test_an_embedded_node_without_listeners_refuses_to_move_them():
    """A node that serves no connection has no listener to move: CONFIG SET port is
    refused (never accepted and ignored)."""
    async with kvrepl.Master() as master:
        with pytest.raises(kvrepl.ReplyError, match="can.t set immutable config"):
            master.execute_command("CONFIG", "SET", "port", "7000")
        assert master.execute_command("CONFIG", "GET", "port") == {b"port": b"6379"}
