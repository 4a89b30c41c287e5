"""One ``Config`` for a node: option names exactly as in redis.conf.

The same table parses the command line, a redis.conf file, ``CONFIG GET`` and ``CONFIG SET``.
Values are kept typed (``config.port`` is an int, ``config.appendonly`` a bool); option
``repl-backlog-size`` is attribute ``repl_backlog_size``.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from kvrepl.errors import ReplyError
from kvrepl.notify import format_classes, parse_classes
from kvrepl.store.encoding import INT64_MAX, INT64_MIN, string2ll

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2,
          "g": 1000**3, "gb": 1024**3}


def parse_memory(text: str) -> int:
    """``"1mb"`` -> 1048576, as redis.conf reads memory sizes (case-insensitive units)."""
    text = text.lower()  # (memtoull refuses spaces around the number too)
    digits = text.rstrip("kmgb")
    unit = text[len(digits):]
    if unit not in _UNITS or not digits.lstrip("-").isdigit():
        raise ValueError(f"argument must be a memory value: {text!r}")
    return int(digits) * _UNITS[unit]


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered == "yes":
        return True
    if lowered == "no":
        return False
    raise ValueError("argument must be 'yes' or 'no'")


def _format_bool(value: bool) -> str:
    return "yes" if value else "no"


class ApplyError(Exception):
    """New values that cannot be put to work (CONFIG SET fails and restores the old)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name
        self.message = message


@dataclass(frozen=True, slots=True)
class Option:
    """One redis.conf option: how to parse it, print it, and whether CONFIG SET may change it."""

    name: str
    default: object
    parse: Callable[[str], object]
    format: Callable[[object], str] = str
    mutable: bool = True
    aliases: tuple[str, ...] = ()
    # PROTECTED_CONFIG: CONFIG SET may change it only where enable-protected-configs allows
    protected: bool = False
    # What CONFIG SET checks on top of parsing (Redis's special setters, e.g. dir's chdir);
    # raises ValueError with the message for the client.
    check_at_runtime: Callable[[str], None] | None = None
    # Where kvrepl lacks what other values would need: the only values it accepts (Redis's
    # default and values that ask for nothing more), and what it lacks, for the message.
    # Drop both when the feature lands.
    only: tuple[object, ...] | None = None
    lacking: str = ""
    # Where the refusal is for good (what kvrepl is, not what it lacks yet): the message's
    # reason, after "kvrepl " (e.g. "is never a Redis Cluster node ...").
    reason: str = ""
    # HIDDEN_CONFIG: test hooks; CONFIG GET lists them only when named exactly
    hidden: bool = False
    # DENY_LOADING_CONFIG: CONFIG SET answers -LOADING while the dataset loads
    deny_loading: bool = False
    # Redis's setters that change only what the value names: (current, parsed) -> new
    merge: Callable[[object, object], object] | None = None

    @property
    def attr(self) -> str:
        return self.name.replace("-", "_")

    def value(self, text: str, current: object = None) -> object:
        """``text`` parsed and accepted (:meth:`accept`), over ``current`` for an option
        that changes only what it names; ValueError says what is wrong."""
        value = self.parse(text)
        if self.merge is not None:
            value = self.merge(self.default if current is None else current, value)
        return self.accept(value)

    def accept(self, value: object) -> object:
        """``value``, unless it asks for something kvrepl cannot do: then a ValueError
        that says so (an option is never accepted and ignored)."""
        if self.only is not None and value not in self.only:
            allowed = " or ".join(f"'{self.format(v)}'" for v in self.only)
            if self.reason:
                raise ValueError(f"kvrepl {self.reason}; only {allowed} is accepted")
            raise ValueError(f"kvrepl does not support {self.lacking} yet; only {allowed} "
                             "is accepted")
        return value


_LLONG_MIN, _LLONG_MAX = INT64_MIN, INT64_MAX


def _int(low: int = _LLONG_MIN, high: int = _LLONG_MAX) -> Callable[[str], int]:
    """An integer option of config.c: read as a long long (string2ll: beyond it the text is
    not an integer), then held to the option's bounds (INT_MAX for an int option...)."""
    def parse(text: str) -> int:
        value = string2ll(text.encode("utf-8", "surrogateescape"))
        if value is None:  # (Python's int() took "+1", " 1", "1_0")
            raise ValueError("argument couldn't be parsed into an integer")
        if not low <= value <= high:
            raise ValueError(f"argument must be between {low} and {high} inclusive")
        return value

    return parse


def _memory(text: str) -> int:
    try:
        return parse_memory(text)
    except ValueError:
        raise ValueError("argument must be a memory value") from None


def _memory_from(low: int) -> Callable[[str], int]:
    """A memory value of at least ``low`` (Redis's bounds for some size options)."""
    def parse(text: str) -> int:
        value = _memory(text)
        if value < 0:  # memtoull refuses a sign before any bound is checked
            raise ValueError("argument must be a memory value")
        if not low <= value <= (1 << 63) - 1:
            raise ValueError(f"argument must be between {low} and {(1 << 63) - 1} inclusive")
        return value

    return parse


def _enum(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        lowered = text.lower()
        if lowered not in choices:
            raise ValueError("argument(s) must be one of the following: " + ", ".join(choices))
        return lowered

    return parse


def _save(text: str) -> tuple[tuple[int, int], ...]:
    words = text.split()
    if len(words) % 2:
        raise ValueError("Invalid save parameters")
    pairs = []
    for i in range(0, len(words), 2):
        # strtoll's whole word: seconds at least 1, changes at least 0
        if not all(re.fullmatch(r"[+-]?[0-9]+", word) for word in words[i:i + 2]):
            raise ValueError("Invalid save parameters")
        seconds, changes = int(words[i]), int(words[i + 1])
        if seconds < 1 or changes < 0:
            raise ValueError("Invalid save parameters")
        pairs.append((seconds, changes))
    return tuple(pairs)


def _format_save(value: object) -> str:
    return " ".join(f"{s} {c}" for s, c in value)  # type: ignore[attr-defined]


def _check_directory(text: str) -> None:
    """CONFIG SET dir: Redis chdir()s into it and reports the system's error when it
    cannot; kvrepl (a library too) does not chdir, but refuses the same directories."""
    if not os.path.isdir(text):
        raise ValueError(os.strerror(errno.ENOTDIR if os.path.exists(text) else errno.ENOENT))
    if not os.access(text, os.X_OK):
        raise ValueError(os.strerror(errno.EACCES))


def _replicaof(text: str) -> tuple[str, int] | None:
    words = text.split()
    if len(words) == 2 and words[0].lower() == "no" and words[1].lower() == "one":
        return None
    if len(words) != 2:
        raise ValueError("replicaof takes a host and a port")
    return words[0], _int(0, 65535)(words[1])


def _format_replicaof(value: object) -> str:
    return "" if value is None else f"{value[0]} {value[1]}"  # type: ignore[index]


def _tls_protocols(text: str) -> str:
    """tls-protocols: a list of TLSv1, TLSv1.1, TLSv1.2 and TLSv1.3 (empty: 1.2 and 1.3)."""
    for word in text.split():
        if word.lower() not in ("tlsv1", "tlsv1.1", "tlsv1.2", "tlsv1.3"):
            raise ValueError("Invalid tls-protocols specified. Use a combination of 'TLSv1', "
                             "'TLSv1.1', 'TLSv1.2' and 'TLSv1.3'.")
    return text


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


def _format_words(value: object) -> str:
    return " ".join(value)  # type: ignore[arg-type]


def _obuf_limits(text: str) -> dict[str, tuple[int, int, int]]:
    """The classes ``text`` names, each with its hard and soft limits and soft seconds
    (updateClientOutputBufferLimit: the whole text is checked before any of it is used)."""
    words = text.split()
    if len(words) % 4:
        raise ValueError("Wrong number of arguments in buffer limit configuration.")
    limits = {}
    for i in range(0, len(words), 4):
        kind = words[i].lower()
        if kind == "slave":
            kind = "replica"
        if kind not in ("normal", "replica", "pubsub"):
            raise ValueError("Invalid client class specified in buffer limit configuration.")
        try:
            seconds = int(words[i + 3])
            if seconds < 0:
                raise ValueError
            limits[kind] = (_memory(words[i + 1]), _memory(words[i + 2]), seconds)
        except ValueError:
            raise ValueError("Error in hard, soft or soft_seconds setting in buffer limit "
                             "configuration.") from None
    return limits


def _merge_obuf(current: object, named: object) -> dict[str, tuple[int, int, int]]:
    """A setting changes only the classes it names, the others keep their limits (a
    config file sets one class a line)."""
    return {**current, **named}  # type: ignore[dict-item]


def _format_obuf(value: object) -> str:
    # Redis still prints the replica class under its old name.
    return " ".join(f"{'slave' if kind == 'replica' else kind} {h} {s} {sec}"
                    for kind, (h, s, sec) in value.items())  # type: ignore[attr-defined]


DEFAULT_OBUF_LIMITS = {
    "normal": (0, 0, 0),
    "replica": (256 * 1024 * 1024, 64 * 1024 * 1024, 60),
    "pubsub": (32 * 1024 * 1024, 8 * 1024 * 1024, 60),
}
_yes_no = {"parse": parse_bool, "format": _format_bool}
_INT_MAX = 2**31 - 1


def _aof_name(option: str, kind: str) -> Callable[[str], str]:
    """isValidAOFfilename / isValidAOFdirname: a plain name inside ``dir``."""
    def parse(text: str) -> str:
        if not text:
            raise ValueError(f"{option} can't be empty")
        if "/" in text or text in (".", ".."):
            raise ValueError(f"{option} can't be a path, just a {kind}")
        return text

    return parse
def _octal(low: int, high: int) -> Callable[[str], int]:
    """OCTAL_CONFIG (unixsocketperm): read in base 8, bounds as Redis checks them."""
    def parse(text: str) -> int:
        try:
            value = int(text, 8)
        except ValueError:
            raise ValueError("argument couldn't be parsed into an integer") from None
        if not low <= value <= high:
            raise ValueError(f"argument must be between {low} and {high} inclusive")
        return value

    return parse


def _format_octal(value: object) -> str:
    return format(value, "o")


def _memory_or_percent(text: str) -> int:
    """MEMORY_CONFIG | PERCENT_CONFIG (maxmemory-clients): ``10%`` is kept as -10."""
    if text.endswith("%"):
        percent = string2ll(text[:-1].encode("utf-8", "surrogateescape"))
        if percent is None or percent < 0:
            raise ValueError("argument must be a memory or percent value")
        if percent > 100:
            raise ValueError("percentage argument must be less or equal to 100")
        return -percent
    try:
        value = parse_memory(text)
    except ValueError:
        raise ValueError("argument must be a memory or percent value") from None
    if value < 0:
        raise ValueError("argument must be a memory or percent value")
    return value


def _format_memory_or_percent(value: object) -> str:
    return f"{-value}%" if value < 0 else str(value)  # type: ignore[operator]


def _percentiles(text: str) -> tuple[float, ...]:
    """latency-tracking-info-percentiles: doubles in [0, 100]; ``""`` is none."""
    values = []
    for word in text.split():
        try:
            value = float(word)
        except ValueError:
            raise ValueError("Invalid latency-tracking-info-percentiles parameters") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("Invalid latency-tracking-info-percentiles parameters")
        if not 0.0 <= value <= 100.0:
            raise ValueError("latency-tracking-info-percentiles parameters should sit "
                             "between [0.0,100.0]")
        values.append(value)
    return tuple(values)


def format_percentile(value: float) -> str:
    """``%f`` with trailing zeros (and a bare point) trimmed, as trimDoubleString does."""
    return f"{value:f}".rstrip("0").rstrip(".")


def _format_percentiles(value: object) -> str:
    return " ".join(format_percentile(v) for v in value)  # type: ignore[attr-defined]


# shutdown_on_sig_enum: bit flags; "default" is none of them.
SHUTDOWN_FLAGS = ("save", "nosave", "now", "force")


def _shutdown_flags(text: str) -> frozenset[str]:
    words = [word.lower() for word in text.split()]
    if not words or any(word not in ("default", *SHUTDOWN_FLAGS) for word in words):
        raise ValueError("argument(s) must be one of the following: default, save, nosave, "
                         "now, force")
    flags = frozenset(word for word in words if word != "default")
    if {"save", "nosave"} <= flags:
        raise ValueError("shutdown options SAVE and NOSAVE can't be used simultaneously")
    return flags


def _format_shutdown_flags(value: object) -> str:
    return " ".join(f for f in SHUTDOWN_FLAGS if f in value) or "default"  # type: ignore


def expand_proc_title(template: str, variables: dict[str, str]) -> str | None:
    """sdstemplate then trimmed of spaces, as expandProcTitleTemplate does: ``{name}`` is
    the variable's value, ``{{`` and ``}}`` are braces; None for an unknown variable or a
    lone brace."""
    out: list[str] = []
    i = 0
    while i < len(template):
        c = template[i]
        if c == "{":
            if template.startswith("{{", i):
                out.append("{")
                i += 2
                continue
            end = template.find("}", i)
            if end < 0 or template[i + 1:end] not in variables:
                return None
            out.append(variables[template[i + 1:end]])
            i = end + 1
        elif c == "}":
            if not template.startswith("}}", i):
                return None
            out.append("}")
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out).strip(" ")


def _proc_title_template(text: str) -> str:
    """validateProcTitleTemplate: known variables only, and something left once expanded
    with an empty title (the others as a server has them)."""
    probe = {"title": "", "listen-addr": "*:0", "server-mode": "", "config-file": "-",
             "port": "0", "tls-port": "0", "unixsocket": ""}
    if not expand_proc_title(text, probe):
        raise ValueError("template format is invalid or contains unknown variables")
    return text


def _hostname(text: str) -> str:
    """isValidAnnouncedHostname (cluster-announce-hostname)."""
    if len(text) >= 256:
        raise ValueError("Hostnames must be less than 256 characters")
    if any(not (c.isascii() and (c.isalnum() or c in "-.")) for c in text):
        raise ValueError("Hostnames may only contain alphanumeric characters, hyphens or dots")
    return text


def _oom_values(text: str) -> tuple[int, int, int]:
    """oom-score-adj-values: three values in [-2000, 2000]."""
    words = text.split()
    if len(words) != 3:
        raise ValueError("wrong number of arguments")
    message = "Invalid oom-score-adj-values, elements must be between -2000 and 2000."
    try:
        values = tuple(int(word) for word in words)
    except ValueError:
        raise ValueError(message) from None
    if any(not -2000 <= v <= 2000 for v in values):
        raise ValueError(message)
    return values  # type: ignore[return-value]


def _format_ints(value: object) -> str:
    return " ".join(map(str, value))  # type: ignore[call-overload]


def _fixed(name: str, default: object, parse: Callable[[str], object], reason: str,
           **kwargs: object) -> Option:
    """An option whose only value true of kvrepl is Redis's default (see docs/config.md)."""
    return Option(name, default, parse, only=(default,), reason=reason,  # type: ignore[arg-type]
                  **kwargs)


_CLUSTER = ("is never a Redis Cluster node (it follows a whole cluster as a client: "
            "Replica(follow=kvrepl.Cluster(...)) or kvrepl-server --follow-cluster); "
            "run Redis or Valkey Cluster for that")
_DEFRAG = "cannot defragment memory (Python's allocator has no active defragmentation)"
_LAZYFREE = ("frees what it deletes at once, in the thread that deletes it (no lazy-free "
             "thread)")
_THREADS = "serves clients from one thread (no I/O threads)"
_CPULIST = "pins no thread to CPUs (no fork children, no bio threads)"


# protected_action_enum of config.c
_protected_action = _enum("no", "yes", "local")

OPTIONS: tuple[Option, ...] = (
    Option("port", 6379, _int(0, 65535), mutable=False),
    Option("bind", ("127.0.0.1",), _words, _format_words, mutable=False),
    Option("protected-mode", True, **_yes_no),
    # Protected: rewriting where the RDB file goes is how a client makes a server write files
    # anywhere, so CONFIG SET needs enable-protected-configs (Redis 7.0's PROTECTED_CONFIG).
    # CONFIG GET answers the absolute directory, as Redis's getcwd() after its chdir (kvrepl
    # does not chdir: a relative dir names a place under the process's directory).
    Option("dir", ".", str, os.path.abspath, protected=True,
           check_at_runtime=_check_directory, deny_loading=True),
    Option("dbfilename", "dump.rdb", str, protected=True),
    # no / yes / local (loopback, unix socket and in-process clients); set at startup only
    Option("enable-protected-configs", "no", _protected_action, mutable=False),
    Option("enable-debug-command", "no", _protected_action, mutable=False),
    # MODULE LOAD/LOADEX/UNLOAD allowed: they then fail as a module that cannot load
    # fails in Redis (kvrepl/commands/modules.py)
    Option("enable-module-command", "no", _protected_action, mutable=False),
    Option("requirepass", "", str),
    Option("masterauth", "", str),
    Option("masteruser", "", str),
    Option("aclfile", "", str, mutable=False),
    # TLS (kvrepl.server.tls). CONFIG SET of the others builds the contexts again, for the
    # connections made from then on (refused, the old values kept, when they fail).
    Option("tls-port", 0, _int(0, 65535), mutable=False),
    Option("tls-cert-file", "", str),
    Option("tls-key-file", "", str),
    Option("tls-key-file-pass", "", str),
    Option("tls-ca-cert-file", "", str),
    Option("tls-ca-cert-dir", "", str),
    Option("tls-auth-clients", "yes", _enum("no", "yes", "optional")),
    Option("tls-replication", False, **_yes_no),
    Option("tls-protocols", "", _tls_protocols),
    Option("tls-ciphers", "", str),
    # TLS 1.3 suites, set through libssl itself (kvrepl.server.tls_suites).
    Option("tls-ciphersuites", "", str),
    Option("tls-prefer-server-ciphers", False, **_yes_no),
    Option("acllog-max-len", 128, _int(0)),
    Option("acl-pubsub-default", "resetchannels", _enum("allchannels", "resetchannels")),
    # Immutable as in Redis: REPLICAOF changes it at runtime.
    Option("replicaof", None, _replicaof, _format_replicaof, mutable=False,
           aliases=("slaveof",)),
    Option("databases", 16, _int(1, 1 << 20), mutable=False),
    Option("save", ((3600, 1), (300, 100), (60, 10000)), _save, _format_save),
    # ("nothing" is Redis 7.2's)
    Option("loglevel", "notice", _enum("debug", "verbose", "notice", "warning")),
    Option("logfile", "", str, mutable=False),
    # kvrepl-server forks into the background (kvrepl.server.process.daemonize); an
    # embedded node refuses it (it runs in the application's process)
    Option("daemonize", False, mutable=False, **_yes_no),
    Option("timeout", 0, _int(0, _INT_MAX)),
    Option("tcp-keepalive", 300, _int(0, _INT_MAX)),
    Option("maxclients", 10000, _int(1, (1 << 32) - 1)),
    Option("hz", 10, lambda text: min(max(_int(0, _INT_MAX)(text), 1), 500)),  # clamped as Redis
    Option("proto-max-bulk-len", 512 * 1024 * 1024, _memory),
    Option("client-query-buffer-limit", 1024 * 1024 * 1024, _memory_from(1024 * 1024)),
    Option("client-output-buffer-limit", DEFAULT_OBUF_LIMITS, _obuf_limits, _format_obuf,
           merge=_merge_obuf),
    Option("hash-max-listpack-entries", 512, _int(0), aliases=("hash-max-ziplist-entries",)),
    Option("hash-max-listpack-value", 64, _memory_from(0), aliases=("hash-max-ziplist-value",)),
    Option("set-max-intset-entries", 512, _int(0)),
    Option("zset-max-listpack-entries", 128, _int(0), aliases=("zset-max-ziplist-entries",)),
    Option("zset-max-listpack-value", 64, _memory_from(0), aliases=("zset-max-ziplist-value",)),
    Option("list-max-listpack-size", -2, _int(-_INT_MAX - 1, _INT_MAX), aliases=("list-max-ziplist-size",)),
    Option("list-compress-depth", 0, _int(0, _INT_MAX), only=(0,), lacking="compressed lists"),
    Option("hll-sparse-max-bytes", 3000, _memory_from(0)),
    Option("stream-node-max-bytes", 4096, _memory_from(0)),
    Option("stream-node-max-entries", 100, _int(0)),
    Option("stop-writes-on-bgsave-error", True, **_yes_no),
    Option("rdbcompression", True, **_yes_no),
    Option("rdbchecksum", True, mutable=False, **_yes_no),
    # rio's autosync (kvrepl.snapshot_producer.TempFile): a save syncs every 4 MB written.
    Option("rdb-save-incremental-fsync", True, **_yes_no),
    # The append-only file (kvrepl.aof): Redis 7.0's multi-part AOF in appenddirname.
    Option("appendonly", False, deny_loading=True, **_yes_no),
    Option("appendfilename", "appendonly.aof", _aof_name("appendfilename", "filename"),
           mutable=False),
    Option("appenddirname", "appendonlydir", _aof_name("appenddirname", "dirname"),
           mutable=False),
    Option("appendfsync", "everysec", _enum("everysec", "always", "no")),
    Option("no-appendfsync-on-rewrite", False, **_yes_no),
    Option("auto-aof-rewrite-percentage", 100, _int(0, (1 << 31) - 1)),
    Option("auto-aof-rewrite-min-size", 64 * 1024 * 1024, _memory_from(0)),
    Option("aof-load-truncated", True, **_yes_no),
    Option("aof-timestamp-enabled", False, **_yes_no),
    Option("aof-use-rdb-preamble", True, **_yes_no),
    Option("aof-rewrite-incremental-fsync", True, **_yes_no),
    # Bounds kvrepl's estimate of the dataset (kvrepl/store/memory.py); evicts as
    # kvrepl/commands/eviction.py says.
    Option("maxmemory", 0, _memory_from(0)),
    Option("maxmemory-policy", "noeviction", _enum(
        "volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl", "allkeys-lru",
        "allkeys-lfu", "allkeys-random", "noeviction")),
    Option("replica-read-only", True, aliases=("slave-read-only",), **_yes_no),
    Option("replica-serve-stale-data", True, aliases=("slave-serve-stale-data",), **_yes_no),
    Option("replica-announce-ip", "", str, aliases=("slave-announce-ip",)),
    Option("replica-announce-port", 0, _int(0, 65535), aliases=("slave-announce-port",)),
    Option("replica-priority", 100, _int(0, _INT_MAX), aliases=("slave-priority",)),
    # What a replica does when a command of its master's stream fails here (see
    # kvrepl.replication.replica): log and count it, or also stop as redis-server panics.
    Option("propagation-error-behavior", "ignore",
           _enum("ignore", "panic", "panic-on-replicas")),
    Option("replica-ignore-disk-write-errors", False, **_yes_no),
    Option("repl-backlog-size", 1024 * 1024, _memory_from(1)),
    Option("repl-backlog-ttl", 3600, _int(0)),
    Option("repl-timeout", 60, _int(1, _INT_MAX)),
    Option("repl-ping-replica-period", 10, _int(1, _INT_MAX), aliases=("repl-ping-slave-period",)),
    Option("repl-diskless-sync", True, **_yes_no),
    Option("repl-diskless-sync-delay", 5, _int(0, _INT_MAX)),
    Option("repl-diskless-sync-max-replicas", 0, _int(0, _INT_MAX)),
    Option("repl-diskless-load", "disabled", _enum("disabled", "on-empty-db", "swapdb"),
           deny_loading=True),
    Option("min-replicas-to-write", 0, _int(0, _INT_MAX), aliases=("min-slaves-to-write",)),
    Option("min-replicas-max-lag", 10, _int(0, _INT_MAX), aliases=("min-slaves-max-lag",)),
    Option("lazyfree-lazy-user-flush", False, **_yes_no),
    # RESTORE's deep check of payloads (counted in INFO dump_payload_sanitizations). kvrepl
    # decodes every entry of every payload and RDB file whatever the value, so "no" does not
    # make it accept what a deep check refuses (it cannot hold a corrupt object).
    Option("sanitize-dump-payload", "no", _enum("no", "yes", "clients")),
    # SHUTDOWN and SIGTERM wait up to this many seconds for lagging replicas (0: no wait).
    Option("shutdown-timeout", 10, _int(0, _INT_MAX)),
    Option("busy-reply-threshold", 5000, _int(0, (1 << 63) - 1), aliases=("lua-time-limit",)),
    # Honoured by the dispatcher (kvrepl/commands/observers.py): the slow log (SLOWLOG),
    # LATENCY's event series for the "command" and "fast-command" events, and LATENCY
    # HISTOGRAM's per-command counts.
    Option("slowlog-log-slower-than", 10000, _int(-1)),
    Option("slowlog-max-len", 128, _int(0)),
    Option("latency-monitor-threshold", 0, _int(0)),
    Option("latency-tracking", True, **_yes_no),
    Option("notify-keyspace-events", 0, parse_classes, format_classes),
    # the active expiry's keys per batch, time share and acceptable stale keys (cron.py)
    Option("active-expire-effort", 1, _int(1, 10)),
    Option("tracking-table-max-keys", 1_000_000, _int(0, (1 << 63) - 1)),
    Option("lfu-log-factor", 10, _int(0, _INT_MAX)),
    Option("lfu-decay-time", 1, _int(0, _INT_MAX)),
    # eviction (kvrepl/commands/eviction.py); maxmemory and maxmemory-policy are above
    Option("maxmemory-samples", 5, _int(1, _INT_MAX)),
    Option("maxmemory-eviction-tenacity", 10, _int(0, 100)),
    Option("replica-ignore-maxmemory", True, aliases=("slave-ignore-maxmemory",), **_yes_no),
    # -- the process and its sockets (kvrepl.server.process; docs/config.md) --
    # listen()'s backlog for every TCP listener (the kernel caps it at somaxconn)
    Option("tcp-backlog", 511, _int(0, _INT_MAX), mutable=False),
    # A UNIX socket listener beside the TCP ones (redis-cli -s, redis-py unix_socket_path)
    Option("unixsocket", "", str, mutable=False),
    Option("unixsocketperm", 0, _octal(0, 0o777), _format_octal, mutable=False),
    Option("pidfile", "", str, mutable=False),
    Option("supervised", "no", _enum("upstart", "systemd", "auto", "no"), mutable=False),
    Option("syslog-enabled", False, mutable=False, **_yes_no),
    Option("syslog-ident", "redis", str, mutable=False),
    Option("syslog-facility", "local0", _enum("user", "local0", "local1", "local2", "local3",
                                              "local4", "local5", "local6", "local7"),
           mutable=False),
    Option("always-show-logo", False, mutable=False, **_yes_no),
    Option("set-proc-title", True, mutable=False, **_yes_no),
    Option("proc-title-template", "{title} {listen-addr} {server-mode}", _proc_title_template),
    # What SIGINT / SIGTERM do: SHUTDOWN's flags (default: as SHUTDOWN with no flag)
    Option("shutdown-on-sigint", frozenset(), _shutdown_flags, _format_shutdown_flags),
    Option("shutdown-on-sigterm", frozenset(), _shutdown_flags, _format_shutdown_flags),
    # Python's faulthandler: a crash (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT) logs every
    # thread's stack to the log, as Redis's crash report does
    Option("crash-log-enabled", True, **_yes_no),
    # prctl(PR_SET_THP_DISABLE) for the process, on Linux
    Option("disable-thp", True, mutable=False, **_yes_no),
    # raise hz while many clients are connected (clientsCron's budget), as Redis does
    Option("dynamic-hz", True, **_yes_no),
    # INFO latencystats' percentiles
    Option("latency-tracking-info-percentiles", (50.0, 99.0, 99.9), _percentiles,
           _format_percentiles),
    # /proc/self/oom_score_adj by role (master, replica; the third value is for fork
    # children, which kvrepl has none of), relative to the value found or absolute
    # ("relative" is "yes": CONFIG GET names a value by its first name in config.c's table)
    Option("oom-score-adj", "no", lambda text: {"relative": "yes"}.get(
        value := _enum("no", "yes", "relative", "absolute")(text), value)),
    Option("oom-score-adj-values", (0, 200, 800), _oom_values, _format_ints),
    # -- replication --
    # the local address of a replica's connections to its master
    Option("bind-source-addr", "", str),
    # TCP_NODELAY off on a replica's link once its sync starts (fewer, bigger packets)
    Option("repl-disable-tcp-nodelay", False, **_yes_no),
    # with no save points and no AOF, the dump a full sync wrote (the master's for
    # disk-based replicas, a replica's received payload) is removed once used
    Option("rdb-del-sync-files", False, **_yes_no),
    # the clients' memory bound: past it the biggest is disconnected (kvrepl.server.cron)
    Option("maxmemory-clients", 0, _memory_or_percent, _format_memory_or_percent),
    # an AOF rewrite's replaced files stay, listed as history in the manifest
    Option("aof-disable-auto-gc", False, **_yes_no),
    # a replica with "no" is left out of what its master and Sentinel announce
    Option("replica-announced", True, **_yes_no),
    # the certificate a node shows as a TLS client (to its master); the server's when empty
    Option("tls-client-cert-file", "", str),
    Option("tls-client-key-file", "", str),
    Option("tls-client-key-file-pass", "", str),
    # the TLS listener's server session cache, set in libssl as Redis sets it
    Option("tls-session-caching", True, **_yes_no),
    Option("tls-session-cache-size", 20 * 1024, _int(0, _INT_MAX)),
    Option("tls-session-cache-timeout", 300, _int(0, _INT_MAX)),
    # Diffie-Hellman parameters of the TLS listener (ssl's load_dh_params)
    Option("tls-dh-params-file", "", str),
    # -- values true of kvrepl only (docs/config.md says why for each) --
    _fixed("io-threads", 1, _int(1, 128), _THREADS, mutable=False),
    _fixed("io-threads-do-reads", False, parse_bool, _THREADS, format=_format_bool,
           mutable=False),
    _fixed("activerehashing", True, parse_bool,
           "has no incremental rehashing to turn off (its tables, Python dicts, resize at "
           "once)", format=_format_bool),
    _fixed("jemalloc-bg-thread", True, parse_bool,
           "has no jemalloc (as a Redis built with MALLOC=libc, it has no purge thread to "
           "stop)", format=_format_bool),
    _fixed("activedefrag", False, parse_bool, _DEFRAG, format=_format_bool),
    _fixed("active-defrag-ignore-bytes", 100 << 20, _memory_from(1), _DEFRAG),
    _fixed("active-defrag-threshold-lower", 10, _int(0, 1000), _DEFRAG),
    _fixed("active-defrag-threshold-upper", 100, _int(0, 1000), _DEFRAG),
    _fixed("active-defrag-cycle-min", 1, _int(1, 99), _DEFRAG),
    _fixed("active-defrag-cycle-max", 25, _int(1, 99), _DEFRAG),
    _fixed("active-defrag-max-scan-fields", 1000, _int(1, (1 << 63) - 1), _DEFRAG),
    _fixed("lazyfree-lazy-eviction", False, parse_bool, _LAZYFREE, format=_format_bool),
    _fixed("lazyfree-lazy-expire", False, parse_bool, _LAZYFREE, format=_format_bool),
    _fixed("lazyfree-lazy-server-del", False, parse_bool, _LAZYFREE, format=_format_bool),
    _fixed("lazyfree-lazy-user-del", False, parse_bool, _LAZYFREE, format=_format_bool),
    _fixed("replica-lazy-flush", False, parse_bool, _LAZYFREE, format=_format_bool,
           aliases=("slave-lazy-flush",)),
    _fixed("server_cpulist", "", str, _CPULIST, mutable=False),
    _fixed("bio_cpulist", "", str, _CPULIST, mutable=False),
    _fixed("aof_rewrite_cpulist", "", str, _CPULIST, mutable=False),
    _fixed("bgsave_cpulist", "", str, _CPULIST, mutable=False),
    _fixed("socket-mark-id", 0, _int(0, (1 << 32) - 1), "does not mark its sockets (SO_MARK)",
           mutable=False),
    _fixed("ignore-warnings", "", str, "gives none of the startup warnings Redis lets one "
           "ignore (ARM64-COW-BUG)"),
    _fixed("crash-memcheck-enabled", True, parse_bool,
           "has no memory test to run after a crash (as a Redis built without it, the "
           "default does nothing)", format=_format_bool),
    # -- Redis Cluster: never a node; cluster-enabled no and every default only --
    _fixed("cluster-enabled", False, parse_bool, _CLUSTER, format=_format_bool, mutable=False),
    _fixed("cluster-config-file", "nodes.conf", str, _CLUSTER, mutable=False),
    _fixed("cluster-port", 0, _int(0, 65535), _CLUSTER, mutable=False),
    _fixed("cluster-node-timeout", 15000, _int(0, (1 << 63) - 1), _CLUSTER),
    _fixed("cluster-announce-ip", "", str, _CLUSTER),
    _fixed("cluster-announce-hostname", "", _hostname, _CLUSTER),
    _fixed("cluster-announce-port", 0, _int(0, 65535), _CLUSTER),
    _fixed("cluster-announce-bus-port", 0, _int(0, 65535), _CLUSTER),
    _fixed("cluster-announce-tls-port", 0, _int(0, 65535), _CLUSTER),
    _fixed("cluster-preferred-endpoint-type", "ip", _enum("ip", "hostname",
                                                          "unknown-endpoint"), _CLUSTER),
    _fixed("cluster-require-full-coverage", True, parse_bool, _CLUSTER, format=_format_bool),
    _fixed("cluster-replica-no-failover", False, parse_bool, _CLUSTER, format=_format_bool,
           aliases=("cluster-slave-no-failover",)),
    _fixed("cluster-replica-validity-factor", 10, _int(0, _INT_MAX), _CLUSTER,
           aliases=("cluster-slave-validity-factor",)),
    _fixed("cluster-migration-barrier", 1, _int(0, _INT_MAX), _CLUSTER),
    _fixed("cluster-allow-replica-migration", True, parse_bool, _CLUSTER,
           format=_format_bool),
    _fixed("cluster-allow-reads-when-down", False, parse_bool, _CLUSTER, format=_format_bool),
    _fixed("cluster-allow-pubsubshard-when-down", True, parse_bool, _CLUSTER,
           format=_format_bool),
    _fixed("cluster-link-sendbuf-limit", 0, _memory_from(0), _CLUSTER),
    _fixed("tls-cluster", False, parse_bool, _CLUSTER, format=_format_bool),
    # A software watchdog (SIGALRM stack traces of a slow event loop): a test hook
    _fixed("watchdog-period", 0, _int(0, _INT_MAX), "has no software watchdog",
           hidden=True),
    # Redis's test hooks (HIDDEN_CONFIG). Microseconds slept per key saved (BGSAVE, full
    # syncs: kvrepl/snapshot_producer.py) and loaded (kvrepl/persistence.py, a replica's
    # payload); a negative -N sleeps 1 microsecond once in N keys (debugDelay).
    Option("rdb-key-save-delay", 0, _int(-_INT_MAX - 1, _INT_MAX), hidden=True),
    Option("key-load-delay", 0, _int(-_INT_MAX - 1, _INT_MAX), hidden=True),
    # Bytes of RDB loaded between two turns of serving clients (-LOADING, INFO loading_*).
    Option("loading-process-events-interval-bytes", 2 * 1024 * 1024, _int(1024, _INT_MAX),
           hidden=True),
)

_BY_NAME: dict[str, Option] = {}
for _option in OPTIONS:
    _BY_NAME[_option.name] = _option
    for _alias in _option.aliases:
        _BY_NAME[_alias] = _option


def persistence_disabled(config: Config) -> bool:
    """allPersistenceDisabled: no save points and no AOF."""
    return not config.save and not config.appendonly


class ConfigError(ValueError):
    """A bad option in a config file or on the command line."""


class Config:
    """The node's settings; every option of :data:`OPTIONS` is an attribute."""

    def __init__(self, **overrides: object) -> None:
        for option in OPTIONS:
            setattr(self, option.attr, option.default)
        self.update(**overrides)
        self.listeners: list[Callable[[str], None]] = []
        # Called by CONFIG SET with the names it set, before the listeners; ApplyError
        # undoes the whole CONFIG SET.
        self.appliers: list[Callable[[list[str]], None]] = []
        # Options that startup alone sets here but CONFIG SET may change while a server
        # serves: its listeners move (port, bind, tls-port: kvrepl.server.server).
        self.movable: set[str] = set()
        # The config file's ``user <name> <rules...>`` lines (not an option: CONFIG GET
        # does not show them; the engine makes the users from them at start).
        self.user_lines: list[list[bytes]] = []
        # The absolute path of the config file kvrepl-server started from (INFO's
        # config_file); empty when there was none.
        self.config_file = ""

    def update(self, **overrides: object) -> None:
        """Set options by their Python names (``maxmemory="1gb"``, ``save=""``): a value
        is either the option's text form, as in redis.conf, or its parsed value."""
        for attr, value in overrides.items():
            # Redis spells a few names with underscores (server_cpulist): those as they are
            name = attr if attr in _BY_NAME else attr.replace("_", "-")
            option = _BY_NAME.get(name)
            if option is None:
                raise ConfigError(f"unknown option {name!r}")
            try:
                if isinstance(value, str) and option.parse is not str:
                    value = option.value(value, getattr(self, option.attr, None))
                option.accept(value)
            except ValueError as err:
                raise ConfigError(f"{name}: {err}") from None
            setattr(self, option.attr, value)

    # typing aid: attributes are set dynamically from OPTIONS
    def __getattr__(self, name: str) -> object:  # pragma: no cover - only on typos
        raise AttributeError(f"no config option {name.replace('_', '-')!r}")

    @staticmethod
    def option(name: str) -> Option | None:
        """The option called ``name`` (redis.conf name or alias), or None."""
        return _BY_NAME.get(name.lower())

    def changeable(self, option: Option) -> bool:
        """Whether CONFIG SET may change ``option`` now (mutable, or movable here)."""
        return option.mutable or option.name in self.movable

    def set(self, name: str, text: str, *, startup: bool = False) -> None:
        """Set option ``name`` from its text form; ValueError says what is wrong."""
        option = _BY_NAME.get(name.lower())
        if option is None:
            raise ConfigError(f"Bad directive or wrong number of arguments: {name!r}")
        if not startup and not self.changeable(option):
            raise ValueError("can't set immutable config")
        if startup:
            # A config text is read whole before its values count (a later line or the
            # command line may override this one): the caller checks with accept() then.
            value = option.parse(text)
            if option.merge is not None:
                value = option.merge(getattr(self, option.attr), value)
            setattr(self, option.attr, value)
        else:
            setattr(self, option.attr, option.value(text, getattr(self, option.attr)))
        for listener in self.listeners:
            listener(option.name)

    def get(self, name: str) -> str:
        """Option ``name``'s value in its redis.conf text form (CONFIG GET's)."""
        option = _BY_NAME[name.lower()]
        return option.format(getattr(self, option.attr))

    def matching(self, pattern: str) -> dict[str, str]:
        """CONFIG GET: every option (and alias) whose name matches the glob ``pattern``."""
        found: dict[str, str] = {}
        pattern = pattern.lower()
        for name, option in _BY_NAME.items():
            if name == pattern or (not option.hidden
                                   and fnmatch.fnmatchcase(name, pattern)):
                found[name] = option.format(getattr(self, option.attr))
        return found

    def config_set(self, pairs: list[tuple[str, str]], loading: bool = False) -> None:
        """CONFIG SET name value [name value ...], all or nothing, with Redis's messages
        (``loading``: the node is loading its dataset, which some options wait for)."""
        seen = set()
        parsed = []
        denied = False
        for name, text in pairs:
            option = _BY_NAME.get(name.lower())
            if option is None:
                raise ReplyError(f"ERR Unknown option or number of arguments for CONFIG SET - "
                                 f"'{name}'")
            if option.name in seen:
                raise ReplyError(f"ERR Duplicate parameter - '{name}'")
            seen.add(option.name)
            if not self.changeable(option):
                raise ReplyError(f"ERR CONFIG SET failed (possibly related to argument "
                                 f"'{name}') - can't set immutable config")
            if loading and option.deny_loading:
                denied = True  # reported after the other checks, as Redis gives it precedence
                continue
            try:
                if option.check_at_runtime is not None:
                    option.check_at_runtime(text)
                parsed.append((option, option.value(text, getattr(self, option.attr))))
            except ValueError as err:
                raise ReplyError(f"ERR CONFIG SET failed (possibly related to argument "
                                 f"'{name}') - {err}") from None
        if denied:
            raise ReplyError("LOADING Redis is loading the dataset in memory")
        before = [(option, getattr(self, option.attr)) for option, _ in parsed]
        for option, value in parsed:
            setattr(self, option.attr, value)
        # What must work with the new values (Redis's apply functions, e.g. TLS contexts
        # built again): when one fails, every value goes back and CONFIG SET fails.
        names = [option.name for option, _ in parsed]
        for applier in self.appliers:
            try:
                applier(names)
            except ApplyError as err:
                for option, value in before:
                    setattr(self, option.attr, value)
                raise ReplyError(f"ERR CONFIG SET failed (possibly related to argument "
                                 f"'{err.name}') - {err.message}") from None
        # Then what they change, as Redis applies them: with every new value in place
        # (CONFIG SET maxmemory 1mb maxmemory-policy allkeys-lru evicts under the new policy).
        for option, _ in parsed:
            for listener in self.listeners:
                listener(option.name)
