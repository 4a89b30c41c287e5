"""enable-debug-command, enable-module-command and enable-protected-configs, byte for byte
against a real redis-server 7.0 started with the same options.

"local" is Redis's islocalClient: 127.0.0.1, ::1 and UNIX sockets. A client bound to
127.0.0.2 (still the loopback interface, but not local to Redis 7.0) is the non-local client;
other addresses are tested on engine sessions whose address says where they come from.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator

import pytest
import redis
from support import RedisServer, ThreadedServer, wire_comparer

import kvrepl
from kvrepl.cli import parse_args
from kvrepl.commands.core import Engine
from kvrepl.config import Config
from kvrepl.errors import ReplyError

Compare = Callable[..., bytes]

DEBUG_REFUSED = (
    b'-ERR DEBUG command not allowed. If the enable-debug-command option is set to "local", '
    b"you can run it from a local connection, otherwise you need to set this option in the "
    b"configuration file, and then restart the server.\r\n")


def pair(options: dict[str, str]) -> Iterator[Compare]:
    """A kvrepl server and a redis-server with the same ``options``, and a wire comparer."""
    ours = ThreadedServer(Config(save=(), **{k.replace("-", "_"): v for k, v in options.items()}))
    ours.start()
    theirs = RedisServer(*[word for k, v in options.items() for word in (f"--{k}", v)])
    compare, close = wire_comparer(ours.port, theirs.port)
    try:
        yield compare
    finally:
        close()
        ours.stop()
        theirs.stop()


@pytest.fixture(scope="module")
def defaults() -> Iterator[Compare]:
    yield from pair({})


@pytest.fixture(scope="module", params=["yes", "local"])
def allowed(request: pytest.FixtureRequest) -> Iterator[Compare]:
    yield from pair({"enable-debug-command": request.param,
                     "enable-protected-configs": request.param,
                     "enable-module-command": request.param})


def test_debug_is_refused_by_default(defaults: Compare) -> None:
    assert defaults("DEBUG", "DIGEST") == DEBUG_REFUSED
    defaults("debug", "set-active-expire", "1")
    defaults("DEBUG", "NO-SUCH-SUBCOMMAND")
    defaults("DEBUG")  # the arity check comes first
    defaults("DEBUG", "DIGEST", protocol=3)


def test_a_refused_debug_aborts_the_transaction(defaults: Compare) -> None:
    reply = defaults(batch=[("MULTI",), ("SET", "k", "v"), ("DEBUG", "DIGEST"), ("EXEC",),
                            ("EXISTS", "k")])
    assert b"EXECABORT" in reply and reply.endswith(b":0\r\n")


def test_dir_and_dbfilename_are_protected_by_default(defaults: Compare) -> None:
    assert defaults("CONFIG", "SET", "dir", "/tmp") == (
        b"-ERR CONFIG SET failed (possibly related to argument 'dir') - can't set protected "
        b"config\r\n")
    defaults("CONFIG", "SET", "dbfilename", "other.rdb")
    defaults("CONFIG", "SET", "DIR", "/tmp")
    defaults("CONFIG", "SET", "maxmemory", "0", "dir", "/tmp")
    defaults("CONFIG", "SET", "dir", "/tmp", "no-such-option", "1")
    defaults("CONFIG", "SET", "no-such-option", "1", "dir", "/tmp")
    defaults("CONFIG", "SET", "dir", "/tmp", "dir", "/tmp")
    defaults("CONFIG", "SET", "daemonize", "no", "dir", "/tmp")
    defaults("CONFIG", "GET", "dbfilename")  # unchanged by the refused calls


def test_the_options_are_immutable_and_default_to_no(defaults: Compare) -> None:
    for name in ("enable-debug-command", "enable-module-command", "enable-protected-configs"):
        defaults("CONFIG", "SET", name, "yes")
        defaults("CONFIG", "SET", name, "bogus")
        defaults("CONFIG", "GET", name)


def test_noauth_comes_after_the_protection_check() -> None:
    ours = ThreadedServer(Config(save=(), requirepass="pw")).start()
    theirs = RedisServer()
    theirs.client().config_set("requirepass", "pw")
    compare, close = wire_comparer(ours.port, theirs.port)
    try:
        assert compare("DEBUG", "DIGEST") == DEBUG_REFUSED
        compare("GET", "k")
        compare("CONFIG", "SET", "dir", "/tmp")
    finally:
        close()
        ours.stop()
        theirs.stop()


def test_allowed_from_loopback(allowed: Compare) -> None:
    for name in ("enable-debug-command", "enable-protected-configs"):
        allowed("CONFIG", "GET", name)
    allowed("DEBUG", "SET-ACTIVE-EXPIRE", "1")
    allowed("DEBUG", "DIGEST")
    allowed("CONFIG", "SET", "dbfilename", "other.rdb")
    allowed("CONFIG", "GET", "dbfilename")
    allowed("CONFIG", "SET", "dbfilename", "dump.rdb")
    allowed("CONFIG", "SET", "dir", "/tmp")
    allowed("CONFIG", "SET", "enable-debug-command", "no")  # still immutable
    allowed(batch=[("MULTI",), ("DEBUG", "DIGEST"), ("EXEC",)])
    allowed("MODULE", "LOAD", "/nonexistent/module.so")
    allowed("MODULE", "LOADEX", "/nonexistent/module.so", "CONFIG", "a", "b", "ARGS", "c")
    allowed("MODULE", "UNLOAD", "x")
    allowed("MODULE", "LIST")


MODULE_REFUSED = (
    'ERR MODULE command not allowed. If the enable-module-command option is set to "local", '
    "you can run it from a local connection, otherwise you need to set this option in the "
    "configuration file, and then restart the server.")
CANNOT_LOAD = "ERR Error loading the extension. Please check the server logs."


def _raw(port: int, source: str, command: bytes) -> bytes:
    """One inline command's reply line, sent from address ``source``."""
    with socket.create_connection(("127.0.0.1", port), timeout=10,
                                  source_address=(source, 0)) as sock:
        sock.sendall(command)
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        return data


@pytest.mark.parametrize("setting", ["no", "yes", "local"])
def test_enable_module_command_as_redis(setting: str, tmp_path, caplog) -> None:
    """MODULE LOAD/LOADEX/UNLOAD by redis-cli, redis-py and a raw client from 127.0.0.2,
    over TCP and the UNIX socket: refused or run as redis-server 7.0 does with the same
    setting (``local``: 127.0.0.1 and the UNIX socket only); allowed, LOAD fails as a
    module that cannot load fails in Redis, and kvrepl's log says why."""
    cli = shutil.which("redis-cli")
    if cli is None:
        pytest.skip("redis-cli is not installed")
    sockets = str(tmp_path / "ours.sock"), str(tmp_path / "theirs.sock")
    ours = ThreadedServer(Config(save=(), protected_mode=False, unixsocket=sockets[0],
                                 enable_module_command=setting)).start()
    theirs = RedisServer("--protected-mode", "no", "--unixsocket", sockets[1],
                         "--enable-module-command", setting)
    try:
        commands = [("MODULE", "LOAD", "/nonexistent/module.so", "a"),
                    ("MODULE", "LOADEX", "/nonexistent/module.so", "CONFIG", "n", "v"),
                    ("MODULE", "UNLOAD", "x")]
        for args in commands:
            seen = []
            for port, path in ((ours.port, sockets[0]), (theirs.port, sockets[1])):
                replies = []
                for where in (["-p", str(port)], ["-s", path]):
                    replies.append(subprocess.run([cli, *where, *args], capture_output=True,
                                                  timeout=30, check=True).stdout)
                for client in (redis.Redis(port=port), redis.Redis(unix_socket_path=path)):
                    with client, pytest.raises(redis.ResponseError) as err:
                        client.execute_command(*args)
                    replies.append(str(err.value))
                replies.append(_raw(port, "127.0.0.2", " ".join(args).encode() + b"\r\n"))
                seen.append(replies)
            assert seen[0] == seen[1], args
            local = "ERR " + seen[0][2]
            remote = seen[0][4].decode()
            if args[1] == "UNLOAD":
                allowed = "ERR Error unloading module: no such module with that name"
            else:
                allowed = CANNOT_LOAD
            assert local == (MODULE_REFUSED if setting == "no" else allowed)
            assert remote == "-" + (allowed if setting == "yes" else MODULE_REFUSED) + "\r\n"
        with caplog.at_level(logging.WARNING, logger="kvrepl"):
            caplog.clear()
            with redis.Redis(unix_socket_path=sockets[0]) as client, \
                    pytest.raises(redis.ResponseError):
                client.execute_command("MODULE", "LOAD", "/nonexistent/module.so")
        loaded = [r.getMessage() for r in caplog.records if "failed to load" in r.getMessage()]
        assert loaded == ([] if setting == "no" else [
            "Module /nonexistent/module.so failed to load: kvrepl cannot load Redis modules "
            "(they run inside redis-server's own process)"])
    finally:
        ours.stop()
        theirs.stop()


# -- locality: engine sessions with the address a connection would have --------------------

@pytest.mark.parametrize("addr, local", [
    ("127.0.0.1:6000", True), ("::1:6000", True), ("::ffff:127.0.0.1:6000", True),
    ("/unix:0", True), ("in-process:0", True),
    ("10.1.2.3:6000", False), ("127.0.0.2:6000", False),  # islocalClient: exactly 127.0.0.1
    ("192.168.0.1:6000", False), ("fe80::1:6000", False),
])
def test_local_means_loopback_unix_or_in_process(addr: str, local: bool) -> None:
    engine = Engine(Config(save=(), enable_debug_command="local",
                           enable_protected_configs="local"))
    session = engine.new_session()
    session.addr = addr
    session.over_network = True  # as the server marks its TCP and unix-socket clients
    debug = engine.execute(session, [b"DEBUG", b"DIGEST"])
    config = engine.execute(session, [b"CONFIG", b"SET", b"dbfilename", b"x.rdb"])
    if local:
        assert debug == b"0" * 40 and config == b"OK"
    else:
        assert isinstance(debug, ReplyError) and b"-" + debug.message.encode() + b"\r\n" == (
            DEBUG_REFUSED)
        assert isinstance(config, ReplyError) and config.message == (
            "ERR CONFIG SET failed (possibly related to argument 'dbfilename') - can't set "
            "protected config")
    remote = engine.new_session()
    remote.addr = "10.1.2.3:6000"
    remote.over_network = True
    engine.config.enable_debug_command = "yes"
    assert engine.execute(remote, [b"DEBUG", b"DIGEST"]) == b"0" * 40


def test_the_embedded_api_is_always_allowed() -> None:
    """The options guard the server from its network clients; the application that
    embeds the node runs DEBUG and CONFIG SET dir whatever they say."""
    for setting in ("no", "local", "yes"):
        node = kvrepl.Master(enable_debug_command=setting, enable_protected_configs=setting)
        assert node.execute_command("DEBUG", "DIGEST") == b"0" * 40
        node.execute_command("CONFIG", "SET", "dbfilename", "x.rdb")
        assert node.config.dbfilename == "x.rdb"


def test_command_line_and_config_file_set_them() -> None:
    config = parse_args(["--enable-debug-command", "local", "--enable-protected-configs", "yes",
                         "--enable-module-command", "NO"])
    assert (config.enable_debug_command, config.enable_protected_configs,
            config.enable_module_command) == ("local", "yes", "no")
    assert Config().enable_debug_command == "no"
    with pytest.raises((ValueError, SystemExit)):
        parse_args(["--enable-debug-command", "maybe"])


def test_config_set_dir_refuses_what_redis_cannot_chdir_into(tmp_path) -> None:
    """Redis chdir()s into the new dir and reports the system's error; kvrepl refuses the
    same directories with the same message (and never chdirs: it may be a library)."""
    import os

    import redis
    from support import RedisServer, ThreadedServer

    from kvrepl.config import Config

    cwd = os.getcwd()
    a_file = tmp_path / "file"
    a_file.write_bytes(b"")
    real = RedisServer("--enable-protected-configs", "yes")
    ours = ThreadedServer(Config(save=(), enable_protected_configs="yes")).start()
    try:
        for target in (tmp_path / "missing", a_file, tmp_path):
            seen = []
            for server in (ours, real):
                client = server.client()
                try:
                    seen.append(client.config_set("dir", str(target)))
                except redis.ResponseError as err:
                    seen.append(str(err))
                client.close()
            assert seen[0] == seen[1], target
        assert os.getcwd() == cwd  # this process (kvrepl's) did not move
    finally:
        ours.stop()
        real.stop()
