"""Every redis.conf option of Redis 7.0.15 (issue 14).

Stock redis.conf files load; ``CONFIG GET *`` names and defaults are redis-server's; each
value kvrepl cannot honour is refused everywhere with a reason; the options about the process
and its sockets do what Redis's do. docs/config.md says what each option does in kvrepl.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import trio
from support import (
    Certs,
    KvreplProcess,
    RedisServer,
    ThreadedServer,
    clock_of_looks,
    free_port,
    kvrepl_and_redis,
    no_retry,
    poll,
    redis_replica_of,
)

import kvrepl
from kvrepl import log
from kvrepl.cli import parse_args
from kvrepl.commands.core import Engine
from kvrepl.commands.info import effective_hz
from kvrepl.config import OPTIONS, Config, ConfigError
from kvrepl.server import tls

DATA = Path(__file__).parent / "data"

# One value each option refuses (the default is its only accepted value, docs/config.md).
REFUSED = {
    "io-threads": "4", "io-threads-do-reads": "yes", "activerehashing": "no",
    "jemalloc-bg-thread": "no", "activedefrag": "yes", "active-defrag-ignore-bytes": "200mb",
    "active-defrag-threshold-lower": "20", "active-defrag-threshold-upper": "90",
    "active-defrag-cycle-min": "5", "active-defrag-cycle-max": "50",
    "active-defrag-max-scan-fields": "500", "lazyfree-lazy-eviction": "yes",
    "lazyfree-lazy-expire": "yes", "lazyfree-lazy-server-del": "yes",
    "lazyfree-lazy-user-del": "yes", "replica-lazy-flush": "yes", "slave-lazy-flush": "yes",
    "server_cpulist": "0-1", "bio_cpulist": "0", "aof_rewrite_cpulist": "0",
    "bgsave_cpulist": "0", "socket-mark-id": "1", "ignore-warnings": "ARM64-COW-BUG",
    "crash-memcheck-enabled": "no",
    "cluster-enabled": "yes", "cluster-config-file": "other.conf", "cluster-port": "17000",
    "cluster-node-timeout": "5000", "cluster-announce-ip": "10.0.0.1",
    "cluster-announce-hostname": "host", "cluster-announce-port": "7000",
    "cluster-announce-bus-port": "17000", "cluster-announce-tls-port": "7001",
    "cluster-preferred-endpoint-type": "hostname", "cluster-require-full-coverage": "no",
    "cluster-replica-no-failover": "yes", "cluster-slave-no-failover": "yes",
    "cluster-replica-validity-factor": "0", "cluster-slave-validity-factor": "0",
    "cluster-migration-barrier": "2", "cluster-allow-replica-migration": "no",
    "cluster-allow-reads-when-down": "yes", "cluster-allow-pubsubshard-when-down": "no",
    "cluster-link-sendbuf-limit": "1mb", "tls-cluster": "yes", "watchdog-period": "100",
}


def _start(args: list[str], directory: Path, **env: str) -> subprocess.Popen[bytes]:
    log_file = (directory / "out.log").open("ab")
    try:
        return subprocess.Popen([sys.executable, "-m", "kvrepl", *args], stdout=log_file,
                                stderr=subprocess.STDOUT, env={**os.environ, **env})
    finally:
        log_file.close()


def _answers(port: int) -> bool:
    try:
        # No retries: redis-py's backoff (up to 1 s a try) would outlast the start itself.
        with redis.Redis(port=port, socket_timeout=1, retry=no_retry()) as client:
            return client.ping()
    except (redis.ConnectionError, redis.TimeoutError):
        return False


@pytest.mark.parametrize("conf", ["redis-7.0.15.conf", "debian-redis-7.0.15.conf"])
def test_stock_redis_conf_loads(conf, tmp_path):
    """Redis 7.0.15's redis.conf and Debian's load as they are; what would daemonize or
    write into system paths is overridden on the command line, as a test must."""
    port = free_port()
    pidfile = tmp_path / "kvrepl.pid"
    process = _start([str(DATA / conf), "--port", str(port), "--daemonize", "no",
                      "--pidfile", str(pidfile), "--logfile", "", "--dir", str(tmp_path)],
                     tmp_path)
    try:
        poll(lambda: process.poll() is None and _answers(port) or process.poll() is not None,
             "kvrepl-server answers", within=60)
        assert process.poll() is None, (tmp_path / "out.log").read_text()
        # No retries: SHUTDOWN closes the connection, which is its answer.
        client = redis.Redis(port=port, decode_responses=True, retry=no_retry())
        assert pidfile.read_text() == f"{process.pid}\n"
        assert client.config_get("tcp-backlog") == {"tcp-backlog": "511"}
        assert client.config_get("jemalloc-bg-thread") == {"jemalloc-bg-thread": "yes"}
        client.shutdown(nosave=True)
        assert process.wait(30) == 0
        assert not pidfile.exists()  # removed at shutdown, as Redis does
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_config_get_star_lists_redis_names_and_defaults():
    """CONFIG GET * on both: the same 192 names (aliases included), the same values except
    bind (kvrepl listens on 127.0.0.1 by default), port and dir."""
    real = RedisServer()
    ours = ThreadedServer(Config(save=(), dir=real.dir, port=0)).start()
    try:
        theirs = real.client(decode_responses=True).config_get("*")
        mine = ours.client(decode_responses=True).config_get("*")
        assert sorted(mine) == sorted(theirs)
        assert len(mine) == 192
        differ = {name for name in mine if mine[name] != theirs[name]}
        assert differ <= {"bind", "port"}, {n: (mine[n], theirs[n]) for n in differ}
    finally:
        ours.stop()
        real.stop()


def test_config_get_dir_is_absolute_as_redis(tmp_path, monkeypatch):
    """Redis answers CONFIG GET dir with getcwd(), never the relative text it was given
    (kvrepl answered "." by default)."""
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    real = RedisServer("--dir", ".")  # after its own --dir: the same directory
    ours = ThreadedServer(Config(save=(), port=0, dir="sub")).start()
    try:
        assert real.client(decode_responses=True).config_get("dir") == {"dir": real.dir}
        assert ours.client(decode_responses=True).config_get("dir") == {
            "dir": str(tmp_path / "sub")}
        assert Config().get("dir") == str(tmp_path)
    finally:
        ours.stop()
        real.stop()


# Just outside each integer option's bounds in config.c (INT_MAX for an int option, a long
# long's limit beyond which string2ll does not read the text as an integer at all).
_INT, _LL = 2**31, 2**63
OUT_OF_BOUNDS = {
    **{name: (_INT, -1) for name in (
        "auto-aof-rewrite-percentage", "cluster-replica-validity-factor", "tcp-keepalive",
        "cluster-migration-barrier", "lfu-log-factor", "lfu-decay-time", "replica-priority",
        "repl-diskless-sync-delay", "timeout", "list-compress-depth", "hz",
        "min-replicas-to-write", "min-replicas-max-lag", "watchdog-period", "shutdown-timeout",
        "repl-diskless-sync-max-replicas", "tls-session-cache-size",
        "tls-session-cache-timeout")},
    **{name: (_LL, -1) for name in (
        "slowlog-max-len", "acllog-max-len", "busy-reply-threshold", "cluster-node-timeout",
        "latency-monitor-threshold", "stream-node-max-entries", "hash-max-listpack-entries",
        "set-max-intset-entries", "zset-max-listpack-entries", "hash-max-listpack-value",
        "stream-node-max-bytes", "zset-max-listpack-value", "hll-sparse-max-bytes",
        "tracking-table-max-keys", "repl-backlog-ttl", "auto-aof-rewrite-min-size")},
    **{name: (65536, -1) for name in (
        "replica-announce-port", "cluster-announce-bus-port", "cluster-announce-port",
        "cluster-announce-tls-port")},
    "list-max-listpack-size": (_INT,), "active-defrag-cycle-min": (100, 0),
    "active-defrag-cycle-max": (100, 0), "active-defrag-threshold-lower": (1001, -1),
    "active-defrag-threshold-upper": (1001, -1), "maxmemory-samples": (_INT, 0),
    "maxmemory-eviction-tenacity": (101, -1), "repl-timeout": (_INT, 0),
    "repl-ping-replica-period": (_INT, 0), "rdb-key-save-delay": (_INT, -_INT - 1),
    "key-load-delay": (_INT, -_INT - 1), "active-expire-effort": (11, 0),
    "maxclients": (2**32, 0), "active-defrag-max-scan-fields": (_LL, 0),
    "slowlog-log-slower-than": (_LL, -2), "repl-backlog-size": (_LL, 0),
    "active-defrag-ignore-bytes": (_LL, 0),
    "loading-process-events-interval-bytes": (_INT, 1023),
}


def test_integer_bounds_as_redis(kvrepl_server, redis_server):
    """CONFIG SET just outside each integer option's bounds is refused with Redis's words
    (kvrepl took timeout 2147483648, hz -1, stream-node-max-bytes -1, and said
    "between 0 and None")."""
    clients = [server.client(decode_responses=True) for server in (kvrepl_server, redis_server)]
    mismatches = []
    for name, values in OUT_OF_BOUNDS.items():
        for value in values:
            replies = []
            for client in clients:
                before = client.config_get(name)[name]
                try:
                    replies.append(client.config_set(name, value))
                except redis.ResponseError as error:
                    replies.append(str(error))
                if client.config_get(name)[name] != before:
                    client.config_set(name, before)
            if replies[0] != replies[1]:
                mismatches.append(f"{name} {value}: kvrepl {replies[0]!r}, redis {replies[1]!r}")
    assert not mismatches, "\n".join(mismatches)
    # An int's whole range is taken; the quicklist floors its fill at -5.
    seen = []
    for client in clients:
        try:
            client.config_set("list-max-listpack-size", -100)
            client.delete("ql")
            client.rpush("ql", *"abcdef")
            seen.append((client.config_get("list-max-listpack-size"), client.dump("ql")))
            if client is clients[0]:  # (redis-server answers -5 too; its DEBUG is off here)
                fields = dict(item.split(":") for item in client.execute_command(
                    "DEBUG", "OBJECT", "ql").split()[1:])
                assert fields["ql_listpack_max"] == "-5"
        finally:
            client.config_set("list-max-listpack-size", -2)
            client.delete("ql")
    assert seen[0] == seen[1], seen


def test_values_read_as_redis_reads_them(same):
    """string2ll for integers (Python's int() took "+1", " 1", "1_0"), memtoull for sizes
    (no spaces), strtoll words and bounds for save, the percent form of maxmemory-clients,
    and Redis 7.0's log levels: each refused with Redis's message."""
    for name, value in (("timeout", "+1"), ("timeout", " 1"), ("timeout", "1_0"),
                        ("timeout", "-0"), ("timeout", "01"), ("maxmemory", " 10mb"),
                        ("maxmemory", "10mb "), ("save", "100 -1"), ("save", "0 1"),
                        ("save", "1_0 1"), ("maxmemory-clients", "101%"),
                        ("maxmemory-clients", "+5%"), ("maxmemory-clients", "abc"),
                        ("loglevel", "nothing"), ("appendfsync", "x"),
                        ("tls-auth-clients", "x")):  # (an enum's choices in config.c's order)
        same("CONFIG", "SET", name, value)
    # An enum's value is named by its first name in config.c's table.
    same("CONFIG", "SET", "oom-score-adj", "relative")
    assert same("CONFIG", "GET", "oom-score-adj") == [b"oom-score-adj", b"yes"]
    same("CONFIG", "SET", "oom-score-adj", "no")


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_everywhere(name, engine, session, tmp_path):
    """The config file, the command line, CONFIG SET and the embedded API refuse the value
    with kvrepl's reason; the default stays."""
    value = REFUSED[name]
    option = Config.option(name)
    assert option.only is not None and option.reason
    expected = f"kvrepl {option.reason}; only '{option.format(option.default)}' is accepted"
    path = tmp_path / "kvrepl.conf"
    path.write_text(f'{name} "{value}"\n')
    with pytest.raises(ConfigError) as err:
        parse_args([str(path)])
    assert str(err.value).endswith(expected)
    with pytest.raises(ConfigError) as err:
        parse_args([f"--{name}", *value.split()])
    assert str(err.value).endswith(expected)
    with pytest.raises(ConfigError) as err:
        kvrepl.Master(**{name.replace("-", "_"): value})
    assert str(err.value) == f"{name}: {expected}"
    before = engine.config.get(name)
    reply = engine.execute(session, [b"CONFIG", b"SET", name.encode(), value.encode()])
    prefix = f"ERR CONFIG SET failed (possibly related to argument '{name}') - "
    assert str(reply) == prefix + ("can't set immutable config" if not option.mutable
                                   else expected)
    assert engine.config.get(name) == before


def test_a_later_line_overrides_a_refused_value(tmp_path):
    """A file's value that kvrepl refuses is fine when the command line overrides it (a
    stock file's daemonize yes with --daemonize no); the error names the line that stays."""
    path = tmp_path / "kvrepl.conf"
    path.write_text("daemonize yes\ncluster-enabled yes\nport 7000\n")
    assert parse_args([str(path), "--daemonize", "no", "--cluster-enabled", "no"]).port == 7000
    with pytest.raises(ConfigError) as err:
        parse_args([str(path), "--daemonize", "no"])
    assert "at line 2\n>>> 'cluster-enabled yes'" in str(err.value)
    assert "run Redis or Valkey Cluster for that" in str(err.value)


def test_kvrepl_server_refuses_cluster_enabled(tmp_path):
    result = subprocess.run([sys.executable, "-m", "kvrepl", "--cluster-enabled", "yes"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert ("kvrepl is never a Redis Cluster node (it follows a whole cluster as a client: "
            "Replica(follow=kvrepl.Cluster(...)) or kvrepl-server --follow-cluster); run "
            "Redis or Valkey Cluster for that; only 'no' is accepted") in result.stderr


def test_every_refusal_is_tested():
    fixed = {option.name for option in OPTIONS if option.reason}
    assert fixed == {Config.option(name).name for name in REFUSED}


# -- the sockets --------------------------------------------------------------------------------

async def test_unixsocket_serves_redis_cli_and_redis_py(tmp_path):
    """The embedded API takes the options: a UNIX socket beside the TCP port, with its
    mode; redis-cli -s and redis-py connect; clients are known by the path (CLIENT INFO's
    addr as redis-server gives it); the file is gone when the node stops."""
    path = str(tmp_path / "kvrepl.sock")
    real_path = str(tmp_path / "redis.sock")
    real = RedisServer("--unixsocket", real_path, "--unixsocketperm", "700")
    try:
        async with kvrepl.Master(port=0, unixsocket=path, unixsocketperm="700") as master:
            assert os.stat(path).st_mode & 0o777 == os.stat(real_path).st_mode & 0o777 == 0o700
            master.set(b"k", b"v")

            def clients() -> tuple[object, ...]:
                with redis.Redis(unix_socket_path=path, decode_responses=True) as client:
                    got = client.get("k")
                    addr = client.client_info()["addr"]
                with redis.Redis(unix_socket_path=real_path, decode_responses=True) as client:
                    real_addr = client.client_info()["addr"]
                cli = subprocess.run(["redis-cli", "-s", path, "GET", "k"], capture_output=True,
                                     text=True, timeout=30).stdout
                return got, addr, real_addr, cli

            got, addr, real_addr, cli = await trio.to_thread.run_sync(clients)
            assert got == "v" and cli == "v\n"
            assert addr == f"{path}:0" and real_addr == f"{real_path}:0"
            assert master.config.get("unixsocketperm") == "700"
        assert not os.path.exists(path)
    finally:
        real.stop()


async def test_unixsocket_alone_opens_no_tcp_port(tmp_path):
    path = str(tmp_path / "kvrepl.sock")
    async with kvrepl.Master(unixsocket=path) as master:
        assert master.port is None and master.server.port is None
        client = redis.Redis(unix_socket_path=path)
        assert await trio.to_thread.run_sync(client.ping)
        client.close()


def _listen_backlog(port: int) -> int:
    """The backlog of the socket listening on ``port`` (ss's Send-Q for a listener)."""
    output = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True,
                            text=True, timeout=30, check=True).stdout
    return int(output.split()[2])


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)")
async def test_tcp_backlog_reaches_listen():
    real = RedisServer("--tcp-backlog", "100")
    try:
        async with kvrepl.Master(port=0, tcp_backlog=100) as master:
            assert _listen_backlog(master.port) == _listen_backlog(real.port) == 100
    finally:
        real.stop()


# -- the process --------------------------------------------------------------------------------

def test_pidfile_written_and_removed_at_sigterm(tmp_path):
    pidfile = tmp_path / "k.pid"
    server = KvreplProcess(tmp_path, "--pidfile", str(pidfile)).wait_ready()
    assert pidfile.read_text() == f"{server.process.pid}\n"
    server.process.terminate()
    assert server.exit_status() == 0
    assert not pidfile.exists()


def test_syslog_records(monkeypatch, tmp_path):
    """syslog-enabled: each record goes to the system log as syslog(3) sends it (facility
    and Redis's priority, ident[pid]: then the message), to a socket this test owns."""
    address = str(tmp_path / "log.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sink:
        sink.bind(address)
        sink.settimeout(10)
        monkeypatch.setattr(log, "SYSLOG_ADDRESS", address)
        saved = (list(log.logger.handlers), log.logger.level, log.logger.propagate)
        try:
            log.configure("verbose", str(tmp_path / "file.log"), syslog=True, ident="kv",
                          facility="local3")
            log.logger.warning("a warning")
            log.logger.info("a notice")
            log.logger.log(15, "a verbose line")
            log.logger.debug("not at this level")
            received = [sink.recv(1000) for _ in range(3)]
        finally:
            for handler in log.logger.handlers:
                handler.close()
            log.logger.handlers[:], log.logger.level, log.logger.propagate = saved
    pid = os.getpid()
    # local3 is facility 19: 19 * 8 + warning 4 / notice 5 / info 6
    assert received == [f"<156>kv[{pid}]: a warning\x00".encode(),
                        f"<157>kv[{pid}]: a notice\x00".encode(),
                        f"<158>kv[{pid}]: a verbose line\x00".encode()]
    assert "a notice" in (tmp_path / "file.log").read_text()  # the file gets them too


SYSTEMD_REPLICA = [
    b"STATUS=Redis is loading...\n",
    b"STATUS=Ready to accept connections in read-only mode. Waiting for MASTER <-> REPLICA "
    b"sync\n",
    b"READY=1\n",
    b"STATUS=MASTER <-> REPLICA sync: Finished with success. Ready to accept connections in "
    b"read-write mode.\n",
    # the master drops its replicas: they come back with a partial resync
    b"STATUS=MASTER <-> REPLICA sync: Partial Resynchronization accepted. Ready to accept "
    b"connections in read-write mode.\n",
    # SHUTDOWN SAVE
    b"STOPPING=1\n",
    b"STATUS=Saving the final RDB snapshot\n",
]


def test_supervised_systemd_hears_what_redis_says(tmp_path):
    """Under systemd, a replica (kvrepl-server, and redis-server 7.0.15 in the same run)
    sends, in order, on a NOTIFY_SOCKET the test owns: loading, ready (read-only, waiting
    for its master), READY=1, the full sync's end, a partial resync's, then a SHUTDOWN
    SAVE's STOPPING=1 and the final save's STATUS; and nothing else."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    master = RedisServer("--repl-diskless-sync-delay", "0")
    heard = {}
    try:
        for name, command in (("redis", [binary]), ("kvrepl", [sys.executable, "-m", "kvrepl"])):
            where = tmp_path / name
            where.mkdir()
            address = str(where / "notify.sock")
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sink:
                sink.bind(address)
                sink.settimeout(60)
                port = free_port()
                with (where / "out.log").open("wb") as out:
                    process = subprocess.Popen(
                        [*command, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                         "--dir", str(where), "--supervised", "systemd", "--replicaof",
                         "127.0.0.1", str(master.port)],
                        stdout=out, stderr=subprocess.STDOUT,
                        env={**os.environ, "NOTIFY_SOCKET": address})
                try:
                    messages = [sink.recv(1000) for _ in range(4)]
                    with redis.Redis(port=port) as client:
                        assert client.info("server")["process_supervised"] == "systemd"
                    master.client().client_kill_filter(_type="replica")
                    messages.append(sink.recv(1000))
                    with redis.Redis(port=port, retry=no_retry()) as client:
                        client.shutdown(save=True)
                    messages += [sink.recv(1000) for _ in range(2)]
                    assert process.wait(30) == 0
                    sink.setblocking(False)
                    with pytest.raises(BlockingIOError):
                        sink.recv(1000)  # nothing more
                finally:
                    if process.poll() is None:
                        process.kill()
                        process.wait(10)
            heard[name] = messages
            assert "Supervised by systemd. Please make sure" in (where / "out.log").read_text()
    finally:
        master.stop()
    assert heard["kvrepl"] == heard["redis"] == SYSTEMD_REPLICA


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().rsplit(")", 1)[1].split()[0]


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs /proc")
def test_supervised_upstart_stops_itself_until_continued(tmp_path):
    """upstart's readiness signal: the process SIGSTOPs itself once it listens; the job
    continues it."""
    port = free_port()
    process = _start(["--port", str(port), "--save", "", "--supervised", "auto"], tmp_path,
                     UPSTART_JOB="kvrepl")
    try:
        poll(lambda: _state(process.pid) == "T", "the process stopped itself", within=60)
        process.send_signal(signal.SIGCONT)
        poll(lambda: _answers(port), "kvrepl-server answers")
    finally:
        process.kill()
        process.wait(10)


def test_supervised_without_a_supervisor_warns_and_runs(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "UPSTART_JOB")}
    port = free_port()
    with (tmp_path / "out.log").open("ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "kvrepl", "--port", str(port),
                                    "--save", "", "--supervised", "systemd"],
                                   stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        poll(lambda: _answers(port), "kvrepl-server answers", within=60)
    finally:
        process.terminate()
        process.wait(30)
    # redis-server 7.0.15's words (sd_notify finds no socket for its first STATUS)
    assert "# systemd supervision error: NOTIFY_SOCKET not found!" in (
        tmp_path / "out.log").read_text()


@pytest.mark.parametrize("sig, flags, save, saved", [
    (signal.SIGTERM, "save", "", True),       # saves though no save point is set
    (signal.SIGINT, "nosave", "3600 1", False),  # does not save though one is
    (signal.SIGTERM, "default", "", False),
])
def test_shutdown_on_signal_flags_as_redis(sig, flags, save, saved, tmp_path):
    option = "--shutdown-on-sigterm" if sig == signal.SIGTERM else "--shutdown-on-sigint"
    real = RedisServer(option, *flags.split(), "--save", save)
    ours = KvreplProcess(tmp_path, option, *flags.split(), "--save", save).wait_ready()
    try:
        for server, directory in ((real, Path(real.dir)), (ours, tmp_path)):
            server.client().set("k", "v")
            server.process.send_signal(sig)
            assert server.process.wait(30) == 0
            assert (directory / "dump.rdb").exists() is saved
    finally:
        real.stop()


def test_shutdown_on_signal_values_and_errors_as_redis():
    real = RedisServer()
    ours = ThreadedServer(Config(save=())).start()
    try:
        def outcome(client: redis.Redis, value: str) -> object:
            try:
                client.config_set("shutdown-on-sigint", value)
                return client.config_get("shutdown-on-sigint")
            except redis.ResponseError as err:
                return str(err)

        for value in ("now force", "save", "save nosave", "sometimes", "default"):
            assert outcome(ours.client(decode_responses=True), value) == \
                outcome(real.client(decode_responses=True), value), value
    finally:
        ours.stop()
        real.stop()


@pytest.mark.skipif(not os.path.exists("/proc/self/cmdline"), reason="needs /proc")
def test_process_title_follows_the_template(tmp_path):
    server = KvreplProcess(tmp_path).wait_ready()

    def title() -> str:
        with open(f"/proc/{server.process.pid}/cmdline") as handle:
            return handle.read().rstrip("\0")

    poll(lambda: title() == f"python -m kvrepl 127.0.0.1:{server.port}", "the title is set")
    server.client().config_set("proc-title-template", "{title} port={port}")
    poll(lambda: title() == f"python -m kvrepl port={server.port}", "the title is changed")


def test_proc_title_template_checks_as_redis():
    real = RedisServer()
    ours = ThreadedServer(Config(save=(), set_proc_title=False)).start()
    try:
        for value in ("{nope}", "{title}", "{title", "x {{ {port} }}", "{listen-addr}"):
            results = []
            for client in (ours.client(), real.client()):
                try:
                    results.append(client.config_set("proc-title-template", value))
                except redis.ResponseError as err:
                    results.append(str(err))
            assert results[0] == results[1], value
    finally:
        ours.stop()
        real.stop()


def _status(pid: int, field: str) -> str | None:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return line.split(":", 1)[1].strip()
    return None


def _thp_allowed() -> None:
    """In the child, before exec: THP allowed again (the flag is inherited, and this test
    process may hold a node that set it)."""
    import ctypes

    ctypes.CDLL(None).prctl(41, 0, 0, 0, 0)  # PR_SET_THP_DISABLE, 0


@pytest.mark.skipif(not os.path.exists("/proc/self/status")
                    or _status(os.getpid(), "THP_enabled") is None,
                    reason="needs Linux 5.0's THP_enabled")
@pytest.mark.parametrize("value, thp", [("yes", "0"), ("no", "1")])
def test_disable_thp(value, thp, tmp_path):
    port = free_port()
    with (tmp_path / "out.log").open("ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "kvrepl", "--port", str(port),
                                    "--save", "", "--disable-thp", value],
                                   stdout=out, stderr=subprocess.STDOUT,
                                   preexec_fn=_thp_allowed)
    try:
        poll(lambda: _answers(port), "kvrepl-server answers", within=60)
        assert _status(process.pid, "THP_enabled") == thp
    finally:
        process.kill()
        process.wait(10)


@pytest.mark.parametrize("enabled", ["yes", "no"])
def test_crash_log(enabled, tmp_path):
    """A fatal signal logs every thread's Python stack (Redis's crash report), or not."""
    server = KvreplProcess(tmp_path, "--crash-log-enabled", enabled).wait_ready()
    server.process.send_signal(signal.SIGSEGV)
    assert server.exit_status() == -signal.SIGSEGV
    logged = "Fatal Python error: Segmentation fault" in server.output()
    assert logged is (enabled == "yes")


def test_always_show_logo(tmp_path):
    server = KvreplProcess(tmp_path, "--always-show-logo", "yes").wait_ready()
    assert f"Port: {server.port}" in server.output()
    assert "Running in standalone mode" in server.output()


def test_dynamic_hz_doubles_with_many_clients():
    """serverCron's rule: hz doubles while there are more than 200 clients per tick."""
    engine = Engine(Config(save=()))
    for _ in range(2009):  # with the INFO session below: 2010 clients, 201 per tick
        engine.new_session()
    assert effective_hz(engine) == 10  # 200 per tick: not more
    session = engine.new_session()
    assert effective_hz(engine) == 20
    assert "hz:20\r\nconfigured_hz:10\r\n" in engine.execute(session, [b"INFO"]).decode()
    engine.config.set("dynamic-hz", "no")
    assert effective_hz(engine) == 10


def test_latency_tracking_info_percentiles_as_redis():
    real = RedisServer()
    ours = ThreadedServer(Config(save=())).start()
    try:
        for value in ("50 99.99 100", "", "0.5"):
            shapes = []
            for client in (ours.client(decode_responses=True),
                           real.client(decode_responses=True)):
                client.config_set("latency-tracking-info-percentiles", value)
                client.ping()
                line = client.info("latencystats")["latency_percentiles_usec_ping"]
                names = [part.split("=")[0] for part in str(line).split(",") if "=" in part]
                shapes.append((client.config_get("latency-tracking-info-percentiles"), names))
            assert shapes[0] == shapes[1], value
        with pytest.raises(redis.ResponseError, match="should sit between"):
            ours.client().config_set("latency-tracking-info-percentiles", "101")
    finally:
        ours.stop()
        real.stop()


# -- replication --------------------------------------------------------------------------------

async def test_bind_source_addr_is_the_replica_link_source():
    # protected mode would refuse 127.0.0.2 (Redis counts 127.0.0.1 and ::1 as local only)
    master = RedisServer("--repl-diskless-sync-delay", "0", "--protected-mode", "no")
    try:
        async with kvrepl.Replica(follow=("127.0.0.1", master.port),
                                  bind_source_addr="127.0.0.2") as replica:
            await replica.wait_synced()
            info = await trio.to_thread.run_sync(lambda: master.client().info("replication"))
            assert info["slave0"]["ip"] == "127.0.0.2"
    finally:
        master.stop()


@pytest.mark.parametrize("disable", [True, False])
def test_repl_disable_tcp_nodelay(disable):
    server = ThreadedServer(Config(save=(), repl_diskless_sync_delay=0,
                                   repl_disable_tcp_nodelay=disable)).start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
            sock.sendall(b"PSYNC ? -1\r\n")
            assert sock.recv(11) == b"+FULLRESYNC"
            (connection,) = server.server.connections.values()
            nodelay = connection.stream.socket.getsockopt(socket.IPPROTO_TCP,
                                                          socket.TCP_NODELAY)
            assert bool(nodelay) is not disable
    finally:
        server.stop()


def test_replica_announced_shows_in_info_as_redis():
    dead = free_port()
    real = RedisServer("--replicaof", "127.0.0.1", str(dead))
    ours = ThreadedServer(Config(save=(), replicaof=("127.0.0.1", dead))).start()
    try:
        for value in ("no", "yes"):
            seen = []
            for client in (ours.client(), real.client()):
                client.config_set("replica-announced", value)
                seen.append(client.info("replication")["replica_announced"])
            assert seen == [int(value == "yes")] * 2
    finally:
        ours.stop()
        real.stop()


async def test_tls_client_cert_is_what_a_replica_shows_its_master():
    """The master trusts one CA; the replica's server certificate comes from another, its
    tls-client-cert-file from the trusted one: the link comes up only with the latter."""
    certs = Certs()
    tls_port = free_port()
    async with kvrepl.Master(port=0, tls_port=tls_port, **certs.options()) as master:
        master.set(b"k", b"v")
        replica_options = {"tls_ca_cert_file": str(certs.ca),
                           "tls_cert_file": str(certs.other_cert),
                           "tls_key_file": str(certs.other_key)}
        url = f"rediss://127.0.0.1:{tls_port}"
        async with kvrepl.Replica(follow=url, tls_client_cert_file=str(certs.cert),
                                  tls_client_key_file=str(certs.key),
                                  **replica_options) as replica:
            await replica.wait_synced()
            assert replica.get(b"k") == b"v"
        config = Config(tls_replication=True, **replica_options)
        # Without it, the master refuses the certificate from the other CA.
        with pytest.raises(trio.BrokenResourceError) as err:
            stream = await tls.wrap_client(await trio.open_tcp_stream("127.0.0.1", tls_port),
                                           config)
            await stream.send_all(b"PING\r\n")
            await stream.receive_some(100)
        assert "TLSV1_ALERT_UNKNOWN_CA" in str(err.value.__cause__)


# RFC 7919's ffdhe2048 group
FFDHE2048 = """-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
"""


def test_tls_dh_params_file_enables_dhe(tmp_path):
    """With DH parameters the listener can agree on a DHE suite (TLS 1.2); without, a
    client that offers only DHE finds none."""
    import trustme

    ca = trustme.CA(key_type=trustme.KeyType.RSA)
    cert = ca.issue_cert("127.0.0.1", key_type=trustme.KeyType.RSA)
    paths = {name: str(tmp_path / name) for name in ("ca.pem", "cert.pem", "key.pem")}
    ca.cert_pem.write_to_path(paths["ca.pem"])
    cert.cert_chain_pems[0].write_to_path(paths["cert.pem"])
    cert.private_key_pem.write_to_path(paths["key.pem"])
    (tmp_path / "dh.pem").write_text(FFDHE2048)
    results = []
    for dh in (str(tmp_path / "dh.pem"), ""):
        config = Config(tls_cert_file=paths["cert.pem"], tls_key_file=paths["key.pem"],
                        tls_ca_cert_file=paths["ca.pem"], tls_auth_clients="no",
                        tls_dh_params_file=dh)
        server_context = tls.server_context(config)
        client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client_context.load_verify_locations(paths["ca.pem"])
        client_context.maximum_version = ssl.TLSVersion.TLSv1_2
        client_context.set_ciphers("DHE-RSA-AES128-GCM-SHA256")
        results.append(_memory_handshake(server_context, client_context))
    assert results == ["DHE-RSA-AES128-GCM-SHA256", None]


def _memory_handshake(server_context: ssl.SSLContext,
                      client_context: ssl.SSLContext) -> str | None:
    """The suite two contexts agree on over memory BIOs, or None when they cannot."""
    bios = [ssl.MemoryBIO() for _ in range(4)]
    server = server_context.wrap_bio(bios[0], bios[1], server_side=True)
    client = client_context.wrap_bio(bios[2], bios[3], server_hostname="127.0.0.1")
    done = {client: False, server: False}
    for _ in range(20):
        for side in (client, server):
            if not done[side]:
                try:
                    side.do_handshake()
                    done[side] = True
                except ssl.SSLWantReadError:
                    pass
                except ssl.SSLError:
                    return None
        bios[0].write(bios[3].read())
        bios[2].write(bios[1].read())
        if all(done.values()):
            return client.cipher()[0]
    return None


def test_embedded_node_leaves_the_process_alone_unless_told():
    node = kvrepl.Master()
    assert not node.config.set_proc_title and not node.config.disable_thp
    assert not node.config.crash_log_enabled
    assert kvrepl.Master(set_proc_title=True).config.set_proc_title


def test_tls_client_key_file_pass(tmp_path):
    """An encrypted client key opens with tls-client-key-file-pass, and not without."""
    from cryptography.hazmat.primitives import serialization

    certs = Certs()
    key = serialization.load_pem_private_key(certs.key.read_bytes(), password=None)
    encrypted = tmp_path / "client.key"
    encrypted.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"s3cret")))
    options = {"tls_ca_cert_file": str(certs.ca), "tls_client_cert_file": str(certs.cert),
               "tls_client_key_file": str(encrypted)}
    tls.client_context(Config(tls_client_key_file_pass="s3cret", **options))
    with pytest.raises(tls.TlsError, match="Failed to load certificate"):
        tls.client_context(Config(tls_client_key_file_pass="wrong", **options))


@pytest.mark.parametrize("delete", [True, False])
async def test_rdb_del_sync_files_on_a_replica(delete, tmp_path):
    """With no persistence, a replica that stores its master's payload (diskless load
    disabled) removes it once loaded when told."""
    async with kvrepl.Master() as master:
        master.set(b"k", b"v")
        config = Config(save=(), dir=str(tmp_path), rdb_del_sync_files=delete)
        replica = kvrepl.Replica(follow=master, config=config)
        replica.load_dump = True  # as kvrepl-server: a node that keeps its data on disk
        async with replica:
            await replica.wait_synced()
            assert replica.get(b"k") == b"v"
            assert (tmp_path / "dump.rdb").exists() is not delete


async def _until(condition: Callable[[], bool]) -> None:
    """Wait (10 s at most) for ``condition``, which the node's own tasks make true."""
    with trio.fail_after(10):
        while not condition():
            await trio.sleep(0.01)


@pytest.mark.parametrize("delete", [True, False])
async def test_rdb_del_sync_files_on_a_master(delete, tmp_path):
    """A disk-based full sync writes the master's dump; with no persistence and the
    option, the replication cron removes it once the replica has it (a real redis-server
    replica); without the option it stays."""
    async with kvrepl.Master(port=0, dir=str(tmp_path), save="", repl_diskless_sync=False,
                             rdb_del_sync_files=delete) as master:
        master.set(b"k", b"v")
        async with redis_replica_of(master.port) as client:
            assert await trio.to_thread.run_sync(client.get, "k") == b"v"
            if delete:
                await _until(lambda: not (tmp_path / "dump.rdb").exists())
            else:
                assert (tmp_path / "dump.rdb").exists()
                assert not master.replication.remove_rdb_used_to_sync_replicas()


async def test_rdb_del_sync_files_waits_until_the_transfers_end(tmp_path):
    """removeRDBUsedToSyncReplicas: the dump stays while a replica is still being sent it
    (a replica that does not read a payload bigger than the socket buffers), and goes once
    no transfer is left (that replica gone, a real redis-server replica synced)."""
    dump = tmp_path / "dump.rdb"
    async with kvrepl.Master(port=0, dir=str(tmp_path), save="", repl_diskless_sync=False,
                             rdb_del_sync_files=True) as master:
        # Random bytes: the dump's LZF leaves them 48 MB, more than the kernel takes of a
        # client's output (megabytes, as from redis-server).
        for i in range(48):
            master.set(b"big:%d" % i, os.urandom(1 << 20))
        stalled = await trio.open_tcp_stream("127.0.0.1", master.port)
        await stalled.send_all(b"PSYNC ? -1\r\n")
        received = b""
        while b"+FULLRESYNC" not in received:
            received += await stalled.receive_some(4096)
        links = master.replication.replicas
        await _until(lambda: any(link.state == "send_bulk" for link in links))
        assert dump.exists()
        assert not master.replication.remove_rdb_used_to_sync_replicas()
        async with redis_replica_of(master.port) as client:
            assert await trio.to_thread.run_sync(client.dbsize) == 48
            assert dump.exists()  # the stalled transfer is not over
            assert not master.replication.remove_rdb_used_to_sync_replicas()
            await stalled.aclose()
            await _until(lambda: not dump.exists())  # the replication cron's look
            assert all(link.state == "online" for link in links)


def test_aof_disable_auto_gc_keeps_history_as_redis(tmp_path):
    """After a rewrite the replaced files stay, listed as history (type h) in the manifest,
    until aof-disable-auto-gc is set back to no: the same files and manifest as
    redis-server's."""
    real = RedisServer("--appendonly", "yes", "--aof-disable-auto-gc", "yes")
    ours = KvreplProcess(tmp_path, "--appendonly", "yes", "--aof-disable-auto-gc",
                         "yes").wait_ready()
    try:
        seen = []
        for server, directory in ((real, Path(real.dir)), (ours, tmp_path)):
            client = server.client()
            client.set("k", "v")
            client.bgrewriteaof()
            poll(lambda c=client: c.info("persistence")["aof_rewrite_in_progress"] == 0
                 and c.info("persistence")["aof_rewrites"] == 1, "the rewrite is done")
            folder = directory / "appendonlydir"
            kept = (sorted(p.name for p in folder.iterdir()),
                    (folder / "appendonly.aof.manifest").read_text())
            client.config_set("aof-disable-auto-gc", "no")
            poll(lambda f=folder: len(list(f.iterdir())) == 3, "the history is removed")
            gone = (sorted(p.name for p in folder.iterdir()),
                    (folder / "appendonly.aof.manifest").read_text())
            seen.append((kept, gone))
        assert seen[0] == seen[1]
        assert "type h" in seen[0][0][1] and "type h" not in seen[0][1][1]
    finally:
        real.stop()


def _unevictable_admins() -> Iterator[tuple[ThreadedServer | RedisServer, redis.Redis]]:
    """redis-server, then kvrepl, each with an admin client that CLIENT NO-EVICT spares
    (closed after its turn); both servers stopped at the end."""
    with kvrepl_and_redis(Config(save=())) as (ours, real):
        for server in (real, ours):
            with server.client() as admin:
                admin.client_no_evict("on")
                yield server, admin


def test_maxmemory_clients_evicts_the_biggest_client_as_redis():
    """Past maxmemory-clients a client with a big request on its way is disconnected (a
    CLIENT NO-EVICT one is spared), on both servers; INFO counts it."""
    for server, admin in _unevictable_admins():
        admin.config_set("maxmemory-clients", "1mb")
        with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
            sock.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5000000\r\n")
            sent = 0
            try:
                while sent < 4_000_000:
                    sock.sendall(b"x" * 65536)
                    sent += 65536
                assert sock.recv(100) == b""  # closed without a reply
            except (BrokenPipeError, ConnectionResetError):
                pass
        poll(lambda a=admin: a.info("stats")["evicted_clients"] == 1, "one eviction")
        assert admin.ping()
        assert admin.config_get("maxmemory-clients") == {"maxmemory-clients": "1048576"}
        admin.config_set("maxmemory-clients", "10%")
        assert admin.config_get("maxmemory-clients") == {"maxmemory-clients": "10%"}


def _evicted_clients(client: redis.Redis) -> int:
    return client.info("stats")["evicted_clients"]


def test_maxmemory_clients_evicts_before_a_command_runs_as_redis():
    """A pipeline whose replies (not read) grow the client past maxmemory-clients: the
    client is evicted before one of its later commands runs (processCommand's
    evictClients), so the pipeline's last command (a SET) never runs, on both servers."""
    for server, admin in _unevictable_admins():
        admin.set("big", b"x" * 100_000)
        admin.config_set("maxmemory-clients", "1mb")
        pipeline = b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n" * 30
        pipeline += b"*3\r\n$3\r\nSET\r\n$4\r\nlast\r\n$3\r\nran\r\n"
        with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
            sock.sendall(pipeline)
            poll(lambda a=admin: _evicted_clients(a) == 1, "the client is evicted")
        assert admin.get("last") is None
        assert [c["id"] for c in admin.client_list()] == [str(admin.client_id())]


def test_maxmemory_clients_evicts_a_subscriber_that_does_not_read_as_redis():
    """Messages published to a subscriber that does not read grow its output past
    maxmemory-clients: it is evicted as soon as the publishing that grew it is over (the
    next PUBLISH finds no subscriber), the publisher is not, on both servers."""
    counts = []
    for server, admin in _unevictable_admins():
        admin.config_set("maxmemory-clients", "1mb")
        with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$2\r\nch\r\n")
            assert sock.recv(100).startswith(b"*3\r\n$9\r\nsubscribe")
            publisher = server.client()
            message = b"m" * 100_000
            delivered = 0
            while delivered < 100 and publisher.publish("ch", message) == 1:
                delivered += 1
            # Gone while the publisher went on (its output measured as it grew, not
            # only at the cron's look): a later PUBLISH found no subscriber.
            assert delivered < 100
            assert _evicted_clients(admin) == 1
            counts.append(delivered)
            assert publisher.publish("ch", message) == 0
            assert publisher.ping()
            publisher.close()
    # Both went past the 10 messages of the limit itself: what the kernel took of the
    # output (megabytes on both: kvrepl's client sockets do not keep trio's
    # TCP_NOTSENT_LOWAT) is not the client's memory. Measured: 47 on redis-server, 48 on
    # kvrepl (10 with trio's 16 KiB). The counts move with how far the kernel got when each
    # PUBLISH arrived (a loaded host moved the TLS twin of this test by ten), so a quarter.
    theirs, mine = counts
    assert theirs > 20 and abs(mine - theirs) <= theirs // 4, counts


def test_daemonize_forks_into_the_background(tmp_path):
    """kvrepl-server returns at once (status 0) and its child serves, its pid in the pid
    file, in a session of its own; SHUTDOWN removes the file. Debian's stock file (with
    daemonize yes) needs no override for it."""
    port = free_port()
    pidfile = tmp_path / "k.pid"
    result = subprocess.run(
        [sys.executable, "-m", "kvrepl", str(DATA / "debian-redis-7.0.15.conf"), "--port",
         str(port), "--pidfile", str(pidfile), "--logfile", str(tmp_path / "k.log"),
         "--dir", str(tmp_path)], capture_output=True, timeout=60)
    assert result.returncode == 0 and result.stdout == b""
    poll(lambda: pidfile.exists() and pidfile.read_text().endswith("\n"), "the pid file")
    daemon = int(pidfile.read_text())
    try:
        poll(lambda: _answers(port), "the daemon answers", within=60)
        client = redis.Redis(port=port, retry=no_retry())
        assert client.info("server")["process_id"] == daemon
        assert os.getsid(daemon) == daemon  # setsid(): a session of its own
        client.shutdown(nosave=True)
        poll(lambda: not pidfile.exists(), "the pid file is removed")
    finally:
        try:
            os.kill(daemon, signal.SIGKILL)  # the daemon this test started, if still there
        except ProcessLookupError:
            pass
    assert "Ready to accept connections" in (tmp_path / "k.log").read_text()


async def test_embedded_node_refuses_daemonize():
    with pytest.raises(ConfigError, match="an embedded node runs in the application's "
                                          "process"):
        async with kvrepl.Master(daemonize=True):
            pass  # pragma: no cover


@pytest.mark.parametrize("caching", [True, False])
def test_tls_session_cache(caching):
    """The listener's SSL_CTX gets Redis's session cache settings through libssl (tls.c's
    calls: the cache mode, its size, its timeout; Python's own timeout is 7200 s), read
    back from OpenSSL."""
    from kvrepl.server.tls_suites import session_cache

    certs = Certs()
    config = Config(tls_session_caching=caching, tls_session_cache_size=100,
                    tls_session_cache_timeout=60, **certs.options())
    context = tls.server_context(config)
    assert session_cache(context) == ((True, 100, 60) if caching else (False, None, None))
    default = tls.server_context(Config(**certs.options()))
    assert session_cache(default) == (True, 20480, 300)


@pytest.mark.skipif(not os.path.exists("/proc/self/oom_score_adj"), reason="needs Linux")
def test_oom_score_adj_follows_the_role_as_redis(tmp_path):
    """absolute: the master's value, the replica's after REPLICAOF, the master's again
    after REPLICAOF NO ONE; relative adds the score found; no puts that score back."""
    with open("/proc/self/oom_score_adj") as handle:
        base = int(handle.read())  # what the servers inherit from this process
    dead = str(free_port())
    options = ("--oom-score-adj", "absolute", "--oom-score-adj-values", "10 20 30")
    real = RedisServer(*options)
    ours = KvreplProcess(tmp_path, *options).wait_ready()
    try:
        for server in (real, ours):
            client = server.client()

            def score(s: object = server) -> int:
                with open(f"/proc/{s.process.pid}/oom_score_adj") as handle:  # type: ignore
                    return int(handle.read())

            assert score() == 10
            client.replicaof("127.0.0.1", dead)
            assert score() == 20
            client.replicaof("no", "one")
            assert score() == 10
            client.config_set("oom-score-adj", "relative")
            assert score() == min(1000, base + 10)
            client.config_set("oom-score-adj", "no")
            assert score() == base
            with pytest.raises(redis.ResponseError, match="elements must be between -2000 "
                                                          "and 2000"):
                client.config_set("oom-score-adj-values", "0 200 3000")
            client.close()
    finally:
        real.stop()


# -- active-expire-effort ------------------------------------------------------------------

def _expiring_engine(keys: int, expired_every: int) -> tuple[Engine, object]:
    """An engine with ``keys`` keys with a TTL, one in ``expired_every`` of them (in the
    order they were set) already expired, the others an hour from expiring."""
    now = [1_700_000_000.0]
    engine = Engine(Config(save=(), hz=1))
    engine.keyspace.clock = lambda: now[0]
    session = engine.new_session()
    for i in range(keys):
        ttl = b"1000" if i % expired_every == 0 else b"3600000"
        engine.execute(session, [b"SET", b"k:%d" % i, b"v", b"PX", ttl])
    now[0] += 2
    return engine, session


def _stats(engine: Engine, session: object) -> dict[str, str]:
    text = engine.execute(session, [b"INFO", b"stats"]).decode()
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


@pytest.mark.parametrize("effort, deleted, sampled, stale", [
    # keys per batch 20 + 5 a step; the cycle goes on while more than 10 - step percent of
    # a batch was expired: 1 in 20 (5%) stops efforts 1 (10%) and 5 (6%) after one batch,
    # effort 10 (1%) goes on until a batch has none (the whole pass, then one clean batch)
    (1, 1, 20, "0.25"), (5, 2, 40, "0.25"), (10, 50, 1000 + 65, "0.23"),
])
def test_active_expire_effort_scales_the_cycle_as_redis(effort, deleted, sampled, stale):
    from kvrepl.server.cron import expire_cycle

    engine, session = _expiring_engine(1000, 20)
    assert engine.execute(session, [b"CONFIG", b"SET", b"active-expire-effort",
                                    str(effort).encode()]) == b"OK"
    assert expire_cycle(engine) == deleted
    assert engine.keyspace.dbs[0].expire_sampled == sampled
    assert _stats(engine, session)["expired_stale_perc"] == stale


def test_active_expire_effort_time_share_as_redis(monkeypatch):
    """The slow cycle's time limit is (25 + 2 * step)% of the cron period (expire.c):
    with a clock that moves 1 ms at each look, a cycle of all-expired keys at hz 10 stops
    after the batch that passes 25 ms (effort 1) or 43 ms (effort 10); its time shows in
    expire_cycle_cpu_milliseconds and the cut in expired_time_cap_reached_count; the next
    cycle starts at the next database."""
    from kvrepl.server import cron
    from kvrepl.server.cron import expire_cycle_limits
    from kvrepl.store import database

    assert expire_cycle_limits(1, 10) == (20, 25_000, 10)
    assert expire_cycle_limits(5, 500) == (40, 660, 6)
    assert expire_cycle_limits(10, 10) == (65, 43_000, 1)
    assert expire_cycle_limits(10, 500) == (65, 860, 1)
    for effort, batches in ((1, 26), (10, 44)):
        engine, session = _expiring_engine(5000, 1)
        engine.execute(session, [b"SELECT", b"1"])
        engine.execute(session, [b"SET", b"other", b"v", b"PX", b"1"])
        engine.keyspace.clock = lambda: 1_800_000_000.0
        engine.config.hz = 10
        engine.config.active_expire_effort = effort
        fake = clock_of_looks()
        monkeypatch.setattr(cron, "perf_counter", fake)
        monkeypatch.setattr(database, "perf_counter", fake)
        keys_per_loop = expire_cycle_limits(effort, 10)[0]
        assert cron.expire_cycle(engine) == batches * keys_per_loop
        stats = _stats(engine, session)
        assert stats["expired_time_cap_reached_count"] == "1"
        assert stats["expire_cycle_cpu_milliseconds"] == str(batches + 1)
        # db 0 ran out of time: the next cycle looks at db 1 first (and at all 16)
        assert engine.keyspace.dbs[1].expires
        cron.expire_cycle(engine)
        assert not engine.keyspace.dbs[1].expires


def test_active_expire_effort_bounds_as_redis(wire):
    for value in ("0", "11", "-1", "abc", "10", "1"):
        wire("CONFIG", "SET", "active-expire-effort", value)
        wire("CONFIG", "GET", "active-expire-effort")


# -- the log of a server's start and stop ----------------------------------------------------

def _log_lines(text: str, name: str) -> list[str]:
    """A log's lines as ``<level char> <message>``, the fields that differ by nature put
    aside: the pid and time prefix, the program's name (``name``), the version line's
    build fields, the ports, paths and figures of the run; Redis's warning about memory
    overcommit (a fork's, and kvrepl forks no child) is left out."""
    lines = []
    for line in text.splitlines():
        match = re.match(r"\d+:[CMSX] \d\d \w{3} \d{4} [\d:.]+ ([.\-*#]) (.*)$", line)
        if match is None:
            continue  # signal-handler lines carry their own prefix
        level, message = match.groups()
        if message.startswith("WARNING Memory overcommit"):
            continue
        message = message.replace(name, "NAME")
        if re.match(r"NAME version=", message):
            message = "NAME version=..."
        message = re.sub(r"\d+(\.\d+)?", "N", message)
        message = re.sub(r"/\S+/", "/.../", message)
        lines.append(f"{level} {message}")
    return lines


def test_start_and_stop_log_as_redis(tmp_path):
    """kvrepl-server's log of a start (with a dump to load, a UNIX socket and a pid file)
    and of a stop (with and without a final save) has redis-server 7.0.15's lines in
    redis-server's order."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    logs = {}
    for name, command in (("Redis", [binary]), ("kvrepl", [sys.executable, "-m", "kvrepl"])):
        where = tmp_path / name
        where.mkdir()
        for save in (True, False):
            port = free_port()
            process = subprocess.Popen(
                [*command, "--port", str(port), "--bind", "127.0.0.1", "--save", "3600 1",
                 "--dir", str(where), "--unixsocket", str(where / "s.sock"),
                 "--pidfile", str(where / "p.pid"), "--logfile", str(where / "log")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                poll(lambda port=port: _answers(port), f"{name} answers", within=60)
                with redis.Redis(port=port, retry=no_retry()) as client:
                    client.set("k", "v")
                    client.shutdown(save=save, nosave=not save)
                assert process.wait(30) == 0
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait(10)
        logs[name] = _log_lines((where / "log").read_text(), name)
    assert logs["kvrepl"] == logs["Redis"]
    # what the comparison covered
    assert logs["kvrepl"] == [
        "# oONOoONOoONOo NAME is starting oONOoONOoONOo", "# NAME version=...",
        "# Configuration loaded", "* monotonic clock: POSIX clock_gettime",
        "* Running mode=standalone, port=N.", "# Server initialized",
        "* Ready to accept connections",
        "* The server is now ready to accept connections at /.../s.sock",
        "# User requested shutdown...", "* Saving the final RDB snapshot before exiting.",
        "* DB saved on disk", "* Removing the pid file.", "* Removing the unix socket file.",
        "# NAME is now ready to exit, bye bye...",
        "# oONOoONOoONOo NAME is starting oONOoONOoONOo", "# NAME version=...",
        "# Configuration loaded", "* monotonic clock: POSIX clock_gettime",
        "* Running mode=standalone, port=N.", "# Server initialized",
        "* Loading RDB produced by version N.N", "* RDB age N seconds",
        "* RDB memory usage when created N Mb",
        "* Done loading RDB, keys loaded: N, keys expired: N.",
        "* DB loaded from disk: N seconds", "* Ready to accept connections",
        "* The server is now ready to accept connections at /.../s.sock",
        "# User requested shutdown...", "* Removing the pid file.",
        "* Removing the unix socket file.", "# NAME is now ready to exit, bye bye...",
    ]
