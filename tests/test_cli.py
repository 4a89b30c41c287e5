"""kvrepl-server's command line, config file, logs and signals, as redis-server's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from support import START_DEADLINE, free_port, no_retry

import kvrepl
from kvrepl.cli import command_line_to_conf, parse_args
from kvrepl.config import ConfigError


def test_options_take_every_word_up_to_the_next_option():
    config = parse_args(["--port", "7777", "--replicaof", "127.0.0.1", "6379", "--save", ""])
    assert config.port == 7777
    assert config.replicaof == ("127.0.0.1", 6379)
    assert config.save == ()


def test_config_file_then_command_line(tmp_path):
    conf = tmp_path / "redis.conf"
    conf.write_text("# a comment\nport 7000\nsave 900 1\nsave 300 10\n"
                    "requirepass \"s3cret pass\"\nrepl-backlog-size 2mb\n")
    config = parse_args([str(conf), "--port", "7001"])
    assert config.port == 7001
    assert config.save == ((900, 1), (300, 10))
    assert config.requirepass == "s3cret pass"
    assert config.repl_backlog_size == 2 * 1024 * 1024


def test_defaults_are_redis_defaults():
    config = parse_args([])
    assert config.port == 6379
    assert config.bind == ("127.0.0.1",)
    assert config.save == ((3600, 1), (300, 100), (60, 10000))
    assert config.databases == 16


def test_unknown_option_names_the_option():
    with pytest.raises(ConfigError) as err:
        parse_args(["--port", "1", "--no-such-option", "x"])
    assert "no-such-option" in str(err.value)
    assert "Bad directive" in str(err.value)


def test_bad_value_is_a_clear_error():
    with pytest.raises(ConfigError, match="port"):
        parse_args(["--port", "notanumber"])


def test_command_line_quoting_round_trips():
    text = command_line_to_conf(["--requirepass", 'a "b" c', "--save", ""])
    assert text == 'requirepass "a \\"b\\" c"\nsave ""\n'


def _start(*args: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""))
    process = subprocess.Popen(
        [sys.executable, "-m", "kvrepl", "--port", str(port), "--save", "", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.monotonic() + START_DEADLINE
    while True:
        try:
            # No retries: this loop polls (redis-py's backoff, up to 1 s a try, outlasts
            # the start).
            redis.Redis(port=port, socket_timeout=1, retry=no_retry()).ping()
            return process, port
        except redis.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError(process.stdout.read()) from None
            time.sleep(0.05)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_shuts_down_cleanly_with_redis_style_logs(signum):
    process, port = _start()
    try:
        assert redis.Redis(port=port).set("k", "v")
        process.send_signal(signum)
        output, _ = process.communicate(timeout=START_DEADLINE)
    finally:
        process.kill()
    assert process.returncode == 0
    assert "Ready to accept connections" in output
    name = "SIGINT" if signum == signal.SIGINT else "SIGTERM"
    assert f"Received {name} scheduling shutdown..." in output
    assert "ready to exit, bye bye" in output
    first = output.splitlines()[0]
    pid, rest = first.split(":", 1)
    assert int(pid) == process.pid and rest.startswith("M ")


def test_unknown_option_exits_with_error():
    result = subprocess.run([sys.executable, "-m", "kvrepl", "--bogus", "1"],
                            capture_output=True, text=True, timeout=START_DEADLINE)
    assert result.returncode == 1
    assert "bogus" in result.stderr


def test_version_flag():
    result = subprocess.run([sys.executable, "-m", "kvrepl", "--version"],
                            capture_output=True, text=True, timeout=START_DEADLINE)
    assert result.returncode == 0 and "kvrepl" in result.stdout


def _refused(program: list[str], cwd: str, *args: str) -> tuple[int, str]:
    """Exit status and stderr of a server that must refuse to start, its name taken out."""
    result = subprocess.run([*program, *args], capture_output=True, text=True,
                            timeout=START_DEADLINE,
                            cwd=cwd)
    text = result.stderr.replace("(Redis 7.0.15)", "(NAME)")
    return result.returncode, text.replace(f"(kvrepl {kvrepl.__version__})", "(NAME)")


KVREPL_SERVER = [str(Path(sys.executable).with_name("kvrepl-server"))]  # the entry point


@pytest.mark.parametrize("how", ["command line", "config file"])
@pytest.mark.parametrize("what", ["missing", "a file"])
def test_unusable_dir_refuses_to_start_as_redis_server_does(tmp_path, how, what):
    """redis-server chdir()s into dir while reading its config and stops with the system's
    message; kvrepl-server used to start and fail every SAVE."""
    directory = tmp_path / "nonexistent"
    if what == "a file":
        directory.write_text("")
    args = ["--port", str(free_port()), "--save", "", "--dir", str(directory)]
    if how == "config file":
        (tmp_path / "redis.conf").write_text(command_line_to_conf(args))
        args = ["redis.conf"]
    ours = _refused(KVREPL_SERVER, str(tmp_path), *args)
    theirs = _refused(["redis-server"], str(tmp_path), *args)
    assert ours == theirs
    assert ours[0] == 1
    assert ours[1].endswith("No such file or directory\n" if what == "missing"
                            else "Not a directory\n")


def _config_file_of(program: list[str], cwd: str) -> str:
    port = free_port()
    (Path(cwd) / "redis.conf").write_text(f'port {port}\nsave ""\n')
    process = subprocess.Popen([*program, "redis.conf"], cwd=cwd, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port, socket_timeout=5, retry=no_retry())  # this loop polls
        deadline = time.monotonic() + START_DEADLINE
        while True:
            try:
                return client.info("server")["config_file"]
            except redis.ConnectionError:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
    finally:
        process.terminate()
        process.wait(20)


def test_info_shows_the_config_files_absolute_path(tmp_path):
    ours, theirs = tmp_path / "kvrepl", tmp_path / "redis"
    ours.mkdir()
    theirs.mkdir()
    assert _config_file_of(KVREPL_SERVER, str(ours)) == str(ours / "redis.conf")
    assert _config_file_of(["redis-server"], str(theirs)) == str(theirs / "redis.conf")
    assert parse_args([]).config_file == ""
