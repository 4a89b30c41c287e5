"""What the benchmarks share: options, server subprocesses, a tiny RESP client, tables."""

from __future__ import annotations

import contextlib
import csv
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"


@dataclass
class Options:
    """The command line, as every benchmark module sees it."""

    quick: bool = False
    rounds: int = 5
    seconds: float = 1.5  # target duration of one timed run, used to size -n / key counts
    python: str = sys.executable


def log(message: str) -> None:
    """Progress goes to stderr so that stdout carries only the tables."""
    print(message, file=sys.stderr, flush=True)


def median(values: Sequence[float]) -> float:
    """The median, or NaN for no values (a server that never produced a number)."""
    return statistics.median(values) if values else float("nan")


def rotated(items: Sequence[str], round_number: int) -> list[str]:
    """``items`` starting at a different one each round: no contender always runs first."""
    if not items:
        return []
    shift = round_number % len(items)
    return list(items[shift:]) + list(items[:shift])


def nice_count(value: float, minimum: int, maximum: int) -> int:
    """``value`` clamped and rounded to two significant digits (readable -n values)."""
    value = max(minimum, min(maximum, int(value)))
    magnitude = 10 ** max(len(str(value)) - 2, 0)
    return max(minimum, value // magnitude * magnitude)


# -- formatting ------------------------------------------------------------------------------

def fmt_rate(value: float) -> str:
    """Ops/s with thousands separators; ``n/a`` for a missing value."""
    return "n/a" if value != value else f"{value:,.0f}"


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN when either is missing or the denominator is 0."""
    if numerator != numerator or denominator != denominator or not denominator:
        return float("nan")
    return numerator / denominator


def fmt_ratio(value: float) -> str:
    """A ratio as ``0.42x`` (``n/a`` when missing)."""
    if value != value:
        return "n/a"
    return f"{value:.2f}x" if value < 100 else f"{value:,.0f}x"


def goal_cell(value: float, goal: float) -> str:
    """``>= 0.5x: met`` / ``not met`` / ``n/a`` beside a ratio."""
    if value != value:
        return f">= {goal:g}x: n/a"
    return f">= {goal:g}x: {'met' if value >= goal else 'NOT met'}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub markdown table; numeric-looking columns are right-aligned."""
    def numeric(column: int) -> bool:
        # Blank cells (a value that does not apply to that row) do not decide the alignment.
        return all(row[column][:1].isdigit() or row[column] in ("n/a", "") for row in rows)

    widths = [max(len(headers[i]), *(len(row[i]) for row in rows)) for i in range(len(headers))]
    align = [numeric(i) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        padded = [c.rjust(w) if right else c.ljust(w)
                  for c, w, right in zip(cells, widths, align, strict=True)]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if right else ("-" * (w + 2))
                          for w, right in zip(widths, align, strict=True)) + "|"
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


# -- processes -------------------------------------------------------------------------------

def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far, all its threads (Linux /proc), NaN
    where /proc is missing: what a run cost a server, whatever else the host was doing
    meanwhile (a shared host's load moves throughput far more than this)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def python_env() -> dict[str, str]:
    """The environment for a child Python: the repo root first on PYTHONPATH, so ``-m kvrepl``
    finds the same kvrepl from a checkout as from the venv's installed package."""
    env = dict(os.environ)
    parts = [str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(parts)
    return env


def baseline_env(root: str) -> dict[str, str]:
    """The environment of a kvrepl started from the checkout at ``root`` (``KVREPL_BASELINE``:
    the other side of an A/B run)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = root
    return env


def stop_process(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL; always reaps the child."""
    if proc.poll() is not None:
        return
    try:
        proc.terminate()
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    except BaseException:
        # Interrupted while waiting (a second Ctrl-C): still leave nothing behind.
        proc.kill()
        proc.wait()
        raise


def resp_command(port: int, *args: bytes, timeout: float = 2.0) -> bytes:
    """Send one command, return the raw reply (simple string, error, integer or bulk)."""
    request = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed before a full reply")
            data += chunk
            end = data.find(b"\r\n")
            if end < 0:
                continue
            if data[:1] == b"$" and int(data[1:end]) >= 0:
                needed = end + 2 + int(data[1:end]) + 2
                if len(data) < needed:
                    continue
                return data[:needed]
            return data[:end + 2]


class Server:
    """A server subprocess on a free 127.0.0.1 port, ready when it answers PING.

    ``command`` is a function of the port, so a port lost to a race can be retried.
    """

    def __init__(self, name: str, command: Callable[[int], list[str]], workdir: Path,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self._command = command
        self.workdir = workdir
        self.env = env
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.logfile = workdir / f"{name}.log"

    def start(self, timeout: float = 30.0, attempts: int = 3) -> Server:
        """Start the process and wait until it answers PING."""
        for attempt in range(attempts):
            self.launch()
            if self._wait_ready(timeout):
                return self
            stop_process(self.proc)
            if attempt + 1 == attempts or b"in use" not in self.log_tail():
                break
        raise RuntimeError(f"{self.name} did not answer PING on port {self.port}; "
                           f"its log ends with:\n{self.log_tail().decode(errors='replace')}")

    def launch(self) -> Server:
        """Start the process on a free port without waiting for it to answer: for callers
        that time its start-up themselves (see :meth:`start` for the waiting kind)."""
        self.port = free_port()
        argv = self._command(self.port)
        with open(self.logfile, "wb") as out:
            self.proc = subprocess.Popen(argv, cwd=self.workdir, env=self.env,
                                         stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT)
        return self

    def _wait_ready(self, timeout: float) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                if resp_command(self.port, b"PING", timeout=1.0).startswith(b"+PONG"):
                    return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, size: int = 2000) -> bytes:
        """The end of the server's stdout/stderr."""
        try:
            return self.logfile.read_bytes()[-size:]
        except OSError:
            return b""

    def stop(self) -> None:
        """Stop the process (idempotent)."""
        if self.proc is not None:
            stop_process(self.proc)


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    """Start ``server`` and stop it on the way out, whatever happens (Ctrl-C included)."""
    try:
        yield server.start()
    finally:
        server.stop()


def binary(name: str) -> str | None:
    """The path of an executable on PATH, or None."""
    return shutil.which(name)


def tool_version(argv: Sequence[str]) -> str:
    """The first line a ``--version`` style command prints, or ``n/a``."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "n/a"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "n/a"


# -- a persistent RESP connection (replication benchmarks) -----------------------------------

def encode_request(*args: bytes) -> bytes:
    """One command as a RESP array of bulk strings."""
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


class Connection:
    """A blocking RESP connection kept open across commands, for pinging every millisecond
    or pipelining without paying a TCP connect per request.

    Replies come back raw-decoded: simple strings and bulks as ``bytes``, integers as ``int``,
    arrays as lists; an error reply raises :class:`ReplyError`.
    """

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffer = bytearray()
        self._pos = 0

    def close(self) -> None:
        """Close the socket (idempotent)."""
        self.sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def command(self, *args: bytes) -> object:
        """Send one command and wait for its reply."""
        self.sock.sendall(encode_request(*args))
        return self.read_reply()

    def pipeline(self, requests: bytes, count: int) -> list[object]:
        """Send pre-encoded ``requests`` at once and read ``count`` replies."""
        self.sock.sendall(requests)
        return [self.read_reply() for _ in range(count)]

    def _line(self) -> bytes:
        while True:
            end = self._buffer.find(b"\r\n", self._pos)
            if end >= 0:
                line = bytes(self._buffer[self._pos:end])
                self._pos = end + 2
                return line
            self._fill()

    def _exactly(self, size: int) -> bytes:
        while len(self._buffer) - self._pos < size + 2:
            self._fill()
        data = bytes(self._buffer[self._pos:self._pos + size])
        self._pos += size + 2
        return data

    def _fill(self) -> None:
        if self._pos:
            del self._buffer[:self._pos]
            self._pos = 0
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("connection closed before a full reply")
        self._buffer += chunk

    def read_reply(self) -> object:
        """One reply from the stream."""
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest
        if kind == b"-":
            raise ReplyError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self._exactly(size)
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [self.read_reply() for _ in range(size)]
        raise ConnectionError(f"unexpected reply line {line[:80]!r}")

    def info(self, section: str = "replication") -> dict[str, str]:
        """``INFO section`` as a dict of its ``name:value`` lines."""
        reply = self.command(b"INFO", section.encode())
        return parse_info(reply if isinstance(reply, bytes) else b"")


class ReplyError(Exception):
    """The server answered with an error reply."""


def parse_info(text: bytes) -> dict[str, str]:
    """INFO's ``name:value`` lines as a dict (section headers and blank lines skipped)."""
    fields: dict[str, str] = {}
    for raw in text.decode(errors="replace").splitlines():
        name, sep, value = raw.partition(":")
        if sep and not raw.startswith("#"):
            fields[name.strip()] = value.strip()
    return fields


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (``fraction`` in 0..1), NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]


def fmt_ms(seconds: float, digits: int = 1) -> str:
    """Seconds shown as milliseconds (``n/a`` when missing)."""
    return "n/a" if seconds != seconds else f"{seconds * 1000:,.{digits}f}"


def fmt_seconds(seconds: float) -> str:
    """Seconds with two decimals (``n/a`` when missing)."""
    return "n/a" if seconds != seconds else f"{seconds:,.2f}"


class BenchmarkError(RuntimeError):
    """A benchmark run that could not give a figure (a peer failed, a run timed out)."""


def redis_benchmark_rows(tool: str, port: int, args: Sequence[str], timeout: float = 300.0
                         ) -> tuple[dict[str, float], int, str, str]:
    """One ``redis-benchmark -q --csv`` run against ``port`` with ``args``: the requests per
    second of each test row by name, its exit status, stdout and stderr."""
    argv = [tool, "-h", HOST, "-p", str(port), "-q", "--csv", *args]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchmarkError(f"redis-benchmark took more than {timeout:.0f}s") from None
    finally:
        stop_process(proc)
    rates: dict[str, float] = {}
    for row in csv.reader(out.decode(errors="replace").splitlines()):
        if len(row) >= 2 and row[0] != "test":
            with contextlib.suppress(ValueError):
                rates.setdefault(row[0], float(row[1]))
    return rates, proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def redis_benchmark_rate(tool: str, port: int, args: Sequence[str], timeout: float = 300.0,
                         test: str | None = None) -> float:
    """One ``redis-benchmark -q --csv`` run against ``port`` with ``args``: the requests per
    second of the row whose test name starts with ``test`` (the first row when None)."""
    rates, status, out, err = redis_benchmark_rows(tool, port, args, timeout)
    for name, rate in rates.items():
        if test is None or name.startswith(test):
            return rate
    raise BenchmarkError(f"redis-benchmark exited {status}: {(err or out)[-500:]}")
