"""``kvrepl-server`` / ``python -m kvrepl``: redis-server's command line, config file and logs.

    kvrepl-server [/path/to/redis.conf] [--port 6380] [--replicaof 127.0.0.1 6379] ...
    kvrepl-server --port 6380 --follow-cluster 10.0.0.1:7000 [10.0.0.2:7000 ...]

``--follow-cluster`` (kvrepl's own, not a redis.conf option) makes the server a read-only copy
of a whole Redis Cluster, served as one node (see :mod:`kvrepl.replication.cluster`);
``masteruser``/``masterauth`` are the cluster's credentials.

As with redis-server, each ``--name`` starts an option whose value is every following word up
to the next ``--name`` (``--save ""`` disables snapshots), and the file and command line are
read as one redis.conf text.

The server process puts kvrepl's garbage-collector policy in force (:mod:`kvrepl.gc_policy`:
long-lived objects are frozen out of the collector's generations so that full collections no
longer stall the event loop); set ``KVREPL_GC_POLICY=0`` in the environment to keep Python's
defaults. An application embedding kvrepl keeps its own settings unless it opts in.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from functools import partial

import trio

from kvrepl import __version__, gc_policy, persistence
from kvrepl.commands.shutdown import shutdown_state
from kvrepl.config import Config, ConfigError
from kvrepl.config_rewrite import quote
from kvrepl.errors import ReplicaPanic, ReplyError
from kvrepl.log import configure, logger
from kvrepl.node import Node
from kvrepl.protocol.parser import split_inline
from kvrepl.replication.cluster import Cluster
from kvrepl.server import process

USAGE = """Usage: kvrepl-server [/path/to/redis.conf] [options] [-]
       kvrepl-server - (read config from stdin)
       kvrepl-server -v or --version
       kvrepl-server -h or --help

Examples:
       kvrepl-server (run with default config)
       kvrepl-server /etc/redis/6379.conf
       kvrepl-server --port 7777
       kvrepl-server --port 7777 --replicaof 127.0.0.1 8888
       kvrepl-server --port 7777 --follow-cluster 127.0.0.1:7000 127.0.0.1:7001
       kvrepl-server /etc/myredis.conf --loglevel verbose -
       kvrepl-server /etc/myredis.conf --loglevel verbose
"""


def command_line_to_conf(args: Sequence[str]) -> str:
    """Turn ``--name v1 v2 --other v`` into redis.conf lines, as redis-server's main() does."""
    lines: list[list[str]] = []
    for arg in args:
        if arg.startswith("--") and len(arg) > 2:
            lines.append([arg[2:]])
        elif lines:
            lines[-1].append(arg)
        else:
            raise ConfigError(f"Invalid option or argument: {arg!r}")
    return "\n".join(" ".join([line[0], *map(quote, line[1:])]) for line in lines) + "\n"


def apply_conf(config: Config, text: str, source: str = "command line") -> None:
    """Apply redis.conf ``text`` to ``config``; ConfigError in redis-server's words."""
    save_seen = False
    last_line: dict[str, tuple[int, str]] = {}  # option -> the line that set it last
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        words = split_inline(line.encode())
        if not words:
            raise _fatal(number, line, "Unbalanced quotes in configuration line")
        name = words[0].decode().lower()
        if name == "user":
            _add_user_line(config, words[1:], number, line)
            continue
        values = [w.decode() for w in words[1:]]
        option = Config.option(name)
        if option is None:
            raise _fatal(number, line, "Bad directive or wrong number of arguments")
        try:
            if option.check_at_runtime is not None:
                # Redis's special setters run at startup too: dir's chdir() refuses to
                # start the server in a directory it cannot use.
                option.check_at_runtime(" ".join(values))
            if option.name == "save":
                pairs = config.save if save_seen else ()
                save_seen = True
                joined = " ".join(v for v in values if v)
                new = option.parse(joined) if joined else ()
                config.save = tuple(pairs) + tuple(new)
            else:
                config.set(name, " ".join(values), startup=True)
                last_line[option.name] = (number, line)
        except ValueError as err:
            raise _fatal(number, line, str(err)) from None
    # The values kvrepl cannot honour are refused once the whole text is read, so that a
    # command line can override a file's line (redis.conf's daemonize yes with
    # --daemonize no), at the line that set the value that stays.
    for name, (number, line) in last_line.items():
        option = Config.option(name)
        try:
            option.accept(getattr(config, option.attr))  # type: ignore[union-attr]
        except ValueError as err:
            raise _fatal(number, line, str(err)) from None


def _add_user_line(config: Config, words: list[bytes], number: int, line: str) -> None:
    """ACLAppendUserForLoading: a ``user`` line is checked now and applied at start."""
    from kvrepl.acl import AclError, User, split_rules

    if not words:
        raise _fatal(number, line, "Bad directive or wrong number of arguments")
    if any(words[0] == seen[0] for seen in config.user_lines):
        raise _fatal(number, line, "Duplicate user found. A user can only be defined once "
                     "in config files")
    probe = User(words[0])
    try:
        for op in split_rules(words[1:]):
            try:
                probe.apply(op)
            except AclError as err:
                if not err.unknown:  # commands may come from modules loaded later
                    raise
    except AclError as err:
        raise _fatal(number, line, err.message) from None
    config.user_lines.append(list(words))


def _fatal(number: int, line: str, reason: str) -> ConfigError:
    return ConfigError(
        f"\n*** FATAL CONFIG FILE ERROR (kvrepl {__version__}) ***\n"
        f"Reading the configuration file, at line {number}\n>>> '{line}'\n{reason}"
    )


def parse_args(argv: Sequence[str]) -> Config:
    """A Config from redis-server-style arguments (config file first, then ``--options``)."""
    config = Config()
    args = list(argv)
    text = ""
    if args and not args[0].startswith("--") and args[0] != "-":
        path = args.pop(0)
        try:
            with open(path) as handle:
                text = handle.read()
        except OSError as err:
            raise ConfigError(f"Fatal error, can't open config file '{path}': {err}") from None
        config.config_file = os.path.abspath(path)  # INFO's config_file, as Redis shows it
    read_stdin = bool(args) and args[-1] == "-"
    if read_stdin:
        args.pop()
    # As redis-server: the options follow the file after a newline (so an error on the
    # first option of a command line without a file is "at line 2").
    text += "\n" + command_line_to_conf(args) if args else ""
    if read_stdin:
        text += sys.stdin.read()
    apply_conf(config, text)
    return config


def take_follow_cluster(args: list[str]) -> tuple[list[str], Cluster | None]:
    """Take ``--follow-cluster host:port ...`` out of the arguments (the rest are
    redis-server's); the seeds become a :class:`Cluster`."""
    if "--follow-cluster" not in args:
        return args, None
    start = args.index("--follow-cluster")
    end = start + 1
    while end < len(args) and not args[end].startswith("--") and args[end] != "-":
        end += 1
    seeds = args[start + 1:end]
    if not seeds:
        raise ConfigError("--follow-cluster needs at least one host:port of the cluster")
    try:
        cluster = Cluster(list(seeds))
    except ValueError as err:
        raise ConfigError(f"--follow-cluster: {err}") from None
    return args[:start] + args[end:], cluster


async def run(config: Config, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
              cluster: Cluster | None = None, supervised: str = "no",
              configured: bool = True) -> int:
    """Run a node until SIGTERM/SIGINT or SHUTDOWN, then stop cleanly; the exit status
    is 1 when the dump could not be loaded at startup. ``supervised``: the supervisor
    main() found (process.supervise); ``configured``: whether there were arguments (a
    file or options), as redis-server tells at start."""
    # redis-server's startup log, line for line (its name and the fields of its build
    # aside): then initServer's lines, the process's (kvrepl.server.process) and the load's.
    logger.warning("oO0OoO0OoO0Oo kvrepl is starting oO0OoO0OoO0Oo")
    logger.warning("kvrepl version=%s, bits=64, pid=%d, just started", __version__,
                   os.getpid())
    if configured:
        logger.warning("Configuration loaded")
    else:
        logger.warning("Warning: no config file specified, using the default config. In "
                       "order to specify a config file use kvrepl-server /path/to/redis.conf")
    logger.info("monotonic clock: POSIX clock_gettime")  # INFO's monotonic_clock
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        node = Node(config=config, port=config.port)
        node.owns_process = True  # daemonize and supervision are the server's: main()
        node.supervised = supervised
        # A cluster follower starts from every shard's snapshot: a dump of an earlier run
        # carries no shard's offset to continue from.
        node.load_dump = cluster is None
        node.serve_while_loading = True
        async with node, trio.open_nursery() as nursery:
            if cluster is not None:
                node.follow_cluster(cluster)
            task_status.started(node.port)

            async def watch_signals() -> None:
                async for signum in signals:
                    name = "SIGINT" if signum == signal.SIGINT else "SIGTERM"
                    logger.warning("Received %s scheduling shutdown...", name)
                    # As SHUTDOWN with shutdown-on-sigint/-sigterm's flags (default: none):
                    # waits for lagging replicas (shutdown-timeout) unless NOW, then saves
                    # when save points are set (or as SAVE/NOSAVE say); if it can't, stays
                    # up unless FORCE.
                    flags = (config.shutdown_on_sigint if signum == signal.SIGINT
                             else config.shutdown_on_sigterm)
                    save = True if "save" in flags else False if "nosave" in flags else None
                    with contextlib.suppress(ReplyError):
                        shutdown_state(node.engine).begin(save, now="now" in flags,
                                                          force="force" in flags)

            nursery.start_soon(watch_signals)
            await node.server.wait_shutdown()
            nursery.cancel_scope.cancel()
    if persistence.attach(node.engine).load_error is not None:
        return 1
    logger.warning("kvrepl is now ready to exit, bye bye...")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    configured = bool(args)  # redis-server's argc > 1
    if args and args[0] in ("-v", "--version"):
        print(f"kvrepl server v={__version__} (Redis 7.0 compatible)")
        return 0
    if args and args[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    try:
        args, cluster = take_follow_cluster(args)
        config = parse_args(args)
        if cluster is not None and config.replicaof is not None:
            raise ConfigError("--follow-cluster and replicaof: a server follows one or the other")
    except ConfigError as err:
        print(str(err), file=sys.stderr)
        return 1
    configure(config.loglevel, config.logfile, syslog=config.syslog_enabled,
              ident=config.syslog_ident, facility=config.syslog_facility)
    supervised = process.supervise(config)  # before daemonizing, as redis-server
    process.daemonize(config, supervised)  # before any thread or event loop
    if os.environ.get("KVREPL_GC_POLICY", "1") not in ("0", "no", "off"):
        gc_policy.install()
    try:
        return trio.run(partial(run, config, cluster=cluster, supervised=supervised,
                                configured=configured))
    except ReplicaPanic:
        return 1  # logged as redis-server logs a panic (kvrepl.log.panic)
    except OSError as err:
        logger.warning("Failed listening on port %d (tcp), aborting: %s", config.port, err)
        return 1


if __name__ == "__main__":
    sys.exit(main())
