"""Server commands: FLUSHALL FLUSHDB DBSIZE SWAPDB CONFIG COMMAND SHUTDOWN MONITOR TIME.

INFO is in ``info.py``, DEBUG in ``debug.py``, CLIENT in ``client.py``. Sources: Redis 7.0
``db.c`` (flush, swapdb), ``config.c`` (CONFIG), ``server.c`` (COMMAND, SHUTDOWN, MONITOR).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import tempfile
import time
from functools import partial

from kvrepl import persistence
from kvrepl.commands.args import INT_MAX, INT_MIN, leading_flags, parse_range_int
from kvrepl.commands.core import Command, CommandStats, Engine, Session, command
from kvrepl.commands.glob import glob_match
from kvrepl.commands.help import help_reply
from kvrepl.commands.protection import allow_protected_action
from kvrepl.commands.shutdown import SHUTDOWN_WAIT, shutdown_state
from kvrepl.commands.spec import (
    CommandSpec,
    command_docs_reply,
    command_getkeys_reply,
    command_info_reply,
)
from kvrepl.config import Config
from kvrepl.config_rewrite import rewrite_config
from kvrepl.errors import DB_INDEX_OUT_OF_RANGE, SYNTAX, ReplyError
from kvrepl.log import logger
from kvrepl.protocol.replies import OK, DeferredArray, DeferredMap, Raw

# -- FLUSHALL FLUSHDB DBSIZE SWAPDB ---------------------------------------------------------


def _flush_mode(argv: list[bytes]) -> None:
    """getFlushCommandFlags: nothing, ASYNC or SYNC (kvrepl always frees at once)."""
    if len(argv) > 2 or (len(argv) == 2 and argv[1].lower() not in (b"async", b"sync")):
        raise ReplyError(SYNTAX)


def _flushed(s: Session, argv: list[bytes], removed: int) -> None:
    # Redis counts the keys removed as changes and propagates the flush even when nothing
    # was removed (forceCommandPropagation), so that a replica's stale data goes too.
    if removed:
        s.engine.dirty += removed
    else:
        s.engine.also_propagate(list(argv))


@command("flushall")
def flushall(s: Session, argv: list[bytes]) -> object:
    """FLUSHALL [ASYNC|SYNC]: empty every database."""
    _flush_mode(argv)
    removed = s.engine.keyspace.dbsize()
    for db in s.engine.keyspace.dbs:
        s.engine.watches.touch_all_in_db(db, None)
    s.engine.tracking.flushed()
    s.engine.keyspace.flushall()
    _flushed(s, argv, removed)
    persistence.after_flushall(s.engine)  # kill a BGSAVE; save the empty dataset
    return OK


@command("flushdb")
def flushdb(s: Session, argv: list[bytes]) -> object:
    """FLUSHDB [ASYNC|SYNC]: empty the current database."""
    _flush_mode(argv)
    removed = len(s.db)
    s.engine.watches.touch_all_in_db(s.db, None)
    s.engine.tracking.flushed()
    s.db.clear()
    _flushed(s, argv, removed)
    return OK


@command("dbsize")
def dbsize(s: Session, argv: list[bytes]) -> object:
    """DBSIZE: keys stored in the current db (like Redis, expired ones not yet deleted count)."""
    return len(s.db)


@command("swapdb")
def swapdb(s: Session, argv: list[bytes]) -> object:
    """SWAPDB index1 index2: exchange two databases; clients see the other data at once."""
    first = parse_range_int(argv[1], INT_MIN, INT_MAX, "ERR invalid first DB index")
    second = parse_range_int(argv[2], INT_MIN, INT_MAX, "ERR invalid second DB index")
    count = len(s.engine.keyspace.dbs)
    if not (0 <= first < count and 0 <= second < count):
        raise ReplyError(DB_INDEX_OUT_OF_RANGE)
    if first != second:
        dbs = s.engine.keyspace.dbs
        s.engine.watches.touch_all_in_db(dbs[first], dbs[second])
        s.engine.watches.touch_all_in_db(dbs[second], dbs[first])
        s.engine.keyspace.swap(first, second)
    s.engine.dirty += 1
    return OK


# -- CONFIG ---------------------------------------------------------------------------------

_CONFIG_HELP = [
    "GET <pattern>",
    "    Return parameters matching the glob-like <pattern> and their values.",
    "SET <directive> <value>",
    "    Set the configuration <directive> to <value>.",
    "RESETSTAT",
    "    Reset statistics reported by the INFO command.",
    "REWRITE",
    "    Rewrite the configuration file.",
]


def _text(arg: bytes) -> str:
    return arg.decode("utf-8", "surrogateescape")


@command("config|get")
def config_get(s: Session, argv: list[bytes]) -> object:
    """CONFIG GET parameter [parameter ...]: names or glob patterns, matched case-insensitively.

    A name asked for exactly is answered under the spelling asked; pattern matches under
    their own names, an alias as its own entry (as Redis 7.0 lists them); each name once.
    """
    config = s.engine.config
    found: dict[str, tuple[str, str]] = {}  # lowercase name -> (name as answered, value)
    for arg in argv[2:]:
        name = _text(arg)
        if not any(c in name for c in "[*?"):
            option = Config.option(name)
            if option is not None and name.lower() not in found:
                found[name.lower()] = (name, config.get(name))
            continue
        for match, value in config.matching(name).items():
            if match not in found:
                found[match] = (match, value)
    return {name.encode(): value.encode() for name, value in found.values()}


@command("config|set")
def config_set(s: Session, argv: list[bytes]) -> object:
    """CONFIG SET parameter value [parameter value ...]: all or nothing.

    The checks run in Redis's order: unknown, immutable, protected (``dir`` and
    ``dbfilename`` unless enable-protected-configs allows this client) or repeated names
    first (the first one found is reported), then the values, in order. An alias and its
    option count as two names, as in Redis, and the last value given wins.
    """
    if len(argv) % 2:
        raise ReplyError(SYNTAX)
    seen: set[str] = set()
    values: dict[str, tuple[str, str]] = {}  # option -> (name as Redis names it, value)
    for i in range(2, len(argv), 2):
        name = _text(argv[i])
        option = Config.option(name)
        if option is None:
            raise ReplyError(f"ERR Unknown option or number of arguments for CONFIG SET - "
                             f"'{name}'")
        if not s.engine.config.changeable(option):
            raise ReplyError(f"ERR CONFIG SET failed (possibly related to argument '{name}') "
                             "- can't set immutable config")
        if option.protected and not allow_protected_action(
                s.engine.config.enable_protected_configs, s):
            raise ReplyError(f"ERR CONFIG SET failed (possibly related to argument '{name}') "
                             "- can't set protected config")
        if name.lower() in seen:
            raise ReplyError(f"ERR CONFIG SET failed (possibly related to argument '{name}') "
                             "- duplicate parameter")
        seen.add(name.lower())
        values.pop(option.name, None)
        values[option.name] = (name.lower(), _text(argv[i + 1]))
    for i in range(2, len(argv), 2):
        name, text = _text(argv[i]).lower(), _text(argv[i + 1])
        try:
            Config.option(name).value(text)  # type: ignore[union-attr]
        except ValueError as err:
            raise ReplyError(f"ERR CONFIG SET failed (possibly related to argument '{name}') "
                             f"- {err}") from None
    s.engine.config.config_set(list(values.values()), loading=s.engine.loading)
    return OK


def reset_stats(engine: Engine) -> None:
    """CONFIG RESETSTAT: zero INFO's counters and the per-command statistics."""
    engine.direct_tally.fold()  # its calls are zeroed below with the others
    fresh = CommandStats()
    for item in dataclasses.fields(CommandStats):
        # In place: the server's connection loops hold on to the stats object.
        setattr(engine.stats, item.name, getattr(fresh, item.name))
    engine.keyspace.hits = engine.keyspace.misses = 0
    # resetServerStats zeroes the time over maxmemory too, a spell in progress included.
    engine.evictor.exceeded_total = 0.0
    engine.evictor.exceeded_since = None
    for cmd in _all_commands(engine):
        cmd.calls = 0
        cmd.usec = 0.0
        cmd.rejected_calls = 0
        cmd.failed_calls = 0
        cmd.histogram = None  # LATENCY HISTOGRAM starts over too (resetCommandTableStats)
        cmd.histogram_tail = {}


@command("config|resetstat")
def config_resetstat(s: Session, argv: list[bytes]) -> object:
    """CONFIG RESETSTAT."""
    reset_stats(s.engine)
    return OK


@command("config|rewrite")
def config_rewrite(s: Session, argv: list[bytes]) -> object:
    """CONFIG REWRITE: the file kvrepl-server started from, rewritten as Redis does
    (kvrepl/config_rewrite.py) and replaced atomically (rewriteConfigOverwriteFile)."""
    config = s.engine.config
    path = config.config_file
    if not path:
        raise ReplyError("ERR The server is running without a config file")
    following = getattr(s.engine.node, "following", None)
    master = (following.host, following.port) if following is not None else None
    try:
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as handle:
                old = handle.read()
        except FileNotFoundError:
            old = ""
        _replace_file(path, rewrite_config(old, config, master))
    except OSError as err:
        logger.warning("CONFIG REWRITE failed: %s", err.strerror)
        raise ReplyError(f"ERR Rewriting config file: {err.strerror}") from None
    logger.warning("CONFIG REWRITE executed with success.")
    return OK


def _replace_file(path: str, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, sync it, then rename it over."""
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o644 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@command("config|help")
def config_help(s: Session, argv: list[bytes]) -> object:
    """CONFIG HELP."""
    return help_reply(argv, _CONFIG_HELP)


# -- COMMAND --------------------------------------------------------------------------------

_COMMAND_HELP = [
    "(no subcommand)",
    "    Return details about all Redis commands.",
    "COUNT",
    "    Return the total number of commands in this Redis server.",
    "LIST",
    "    Return a list of all commands in this Redis server.",
    "INFO [<command-name> ...]",
    "    Return details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "DOCS [<command-name> ...]",
    "    Return documentation details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "GETKEYS <full-command>",
    "    Return the keys from a full Redis command.",
    "GETKEYSANDFLAGS <full-command>",
    "    Return the keys and the access flags from a full Redis command.",
]


def _all_commands(engine: Engine) -> list[Command]:
    """Every table entry, each command followed by its subcommands (COMMAND LIST's walk)."""
    return list(itertools.chain.from_iterable(
        (top, *top.subcommands.values()) for top in engine.table.values()))


def _visible(cmd: Command) -> CommandSpec:
    """The spec of ``cmd`` with only the subcommands kvrepl implements."""
    spec = cmd.spec
    if not cmd.subcommands:
        return spec
    subs = {name.decode(): sub.spec for name, sub in cmd.subcommands.items()}
    return dataclasses.replace(spec, subcommands=subs)


def _find(engine: Engine, name: bytes) -> Command | None:
    """lookupCommandBySds: ``get`` or ``config|get``, case-insensitive."""
    parts = name.lower().split(b"|")
    if len(parts) > 2:
        return None
    top = engine.table.get(parts[0])
    if top is None or len(parts) == 1:
        return top
    return top.subcommands.get(parts[1]) if top.subcommands else None


@command("command")
def command_(s: Session, argv: list[bytes]) -> object:
    """COMMAND: COMMAND INFO of every command."""
    return [command_info_reply(_visible(cmd)) for cmd in s.engine.table.values()]


@command("command|count")
def command_count(s: Session, argv: list[bytes]) -> object:
    """COMMAND COUNT: the top-level commands kvrepl serves."""
    return len(s.engine.table)


@command("command|info")
def command_info(s: Session, argv: list[bytes]) -> object:
    """COMMAND INFO [name ...]: nil for names kvrepl does not serve."""
    if len(argv) == 2:
        return command_(s, argv)
    out = []
    for name in argv[2:]:
        cmd = _find(s.engine, name)
        out.append(command_info_reply(_visible(cmd)) if cmd is not None else None)
    return out


@command("command|docs")
def command_docs(s: Session, argv: list[bytes]) -> object:
    """COMMAND DOCS [name ...]: a map of name to docs; unknown names are left out."""
    if len(argv) == 2:
        found = list(s.engine.table.values())
    else:
        found = [c for c in (_find(s.engine, name) for name in argv[2:]) if c is not None]
    docs = {cmd.name.encode(): command_docs_reply(_visible(cmd)) for cmd in found}
    # Named commands: the map's length set after them (commandDocsCommand).
    return docs if len(argv) == 2 else DeferredMap(docs)


def _listed(cmd: Command, kind: bytes, value: bytes) -> bool:
    """shouldFilterFromCommandList, inverted: does ``cmd`` pass the filter?"""
    if kind == b"module":
        return False  # kvrepl loads no modules
    if kind == b"aclcat":
        return "@" + value.decode("utf-8", "replace").lower() in cmd.spec.acl_categories
    return glob_match(value, cmd.name.encode(), nocase=True)


@command("command|list")
def command_list(s: Session, argv: list[bytes]) -> object:
    """COMMAND LIST [FILTERBY MODULE name | ACLCAT category | PATTERN pattern]."""
    selected: tuple[bytes, bytes] | None = None
    i = 2
    while i < len(argv):
        if argv[i].lower() != b"filterby" or len(argv) - 1 - i != 2:
            raise ReplyError(SYNTAX)
        kind = argv[i + 1].lower()
        if kind not in (b"module", b"aclcat", b"pattern"):
            raise ReplyError(SYNTAX)
        selected = (kind, argv[i + 2])
        i += 3
    return DeferredArray(cmd.name.encode() for cmd in _all_commands(s.engine)
                         if selected is None or _listed(cmd, *selected))


def _getkeys(with_flags: bool, s: Session, argv: list[bytes]) -> object:
    """COMMAND GETKEYS command [arg ...]: the key arguments of that command line;
    COMMAND GETKEYSANDFLAGS: each key with its access flags."""
    cmd = s.engine.table.get(argv[2].lower())
    specs = {cmd.name: _visible(cmd)} if cmd is not None else {}
    return command_getkeys_reply(argv[2:], with_flags, specs)


command("command|getkeys")(partial(_getkeys, False))
command("command|getkeysandflags")(partial(_getkeys, True))


@command("command|help")
def command_help(s: Session, argv: list[bytes]) -> object:
    """COMMAND HELP."""
    return help_reply(argv, _COMMAND_HELP)


# -- SHUTDOWN MONITOR -----------------------------------------------------------------------


@command("shutdown")
def shutdown(s: Session, argv: list[bytes]) -> object:
    """SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE] [ABORT].

    The node stops through ``engine.on_shutdown(save)`` (save: True, False or None for
    "as configured"), after waiting for lagging replicas unless NOW (kvrepl/commands/
    shutdown.py); like Redis, the client gets no reply, its connection just closes.
    """
    flags, end = leading_flags(argv, 1, (b"nosave", b"save", b"now", b"force", b"abort"))
    if end < len(argv):
        raise ReplyError(SYNTAX)
    nosave, now, force, abort = (flag in flags for flag in (b"nosave", b"now", b"force", b"abort"))
    save: bool | None = True if b"save" in flags else None
    if (abort and (nosave or save or now or force)) or (nosave and save):
        raise ReplyError(SYNTAX)  # an illegal combination
    state = shutdown_state(s.engine)
    if abort:
        if not state.abort():
            raise ReplyError("ERR No shutdown in progress.")
        return OK
    if not now and s.in_exec:
        raise ReplyError("ERR SHUTDOWN without NOW or ABORT isn't allowed for DENY BLOCKING "
                         "client")
    if nosave:
        save = False
    if s.engine.busy is not None and not nosave:  # only SHUTDOWN NOSAVE while a script is busy
        raise s.engine.busy
    if not state.begin(save, now, force):
        return SHUTDOWN_WAIT
    s.closing = True
    return Raw(b"")


@command("monitor")
def monitor(s: Session, argv: list[bytes]) -> object:
    """MONITOR: stream every command the server runs to this client."""
    if s.in_exec:
        raise ReplyError("ERR MONITOR isn't allowed for DENY BLOCKING client")
    if s.monitor or s.is_replica:
        return Raw(b"")  # already a monitor (or a replica): Redis ignores it, no reply
    s.monitor = True
    s.engine.add_monitor(s)
    return OK


# -- TIME -----------------------------------------------------------------------------------


@command("time")
def time_(s: Session, argv: list[bytes]) -> object:
    """TIME: unix seconds and microseconds, as two bulk strings."""
    now_ns = time.time_ns()
    return [b"%d" % (now_ns // 1_000_000_000), b"%d" % (now_ns // 1000 % 1_000_000)]
