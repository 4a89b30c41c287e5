"""Persistence commands: SAVE BGSAVE LASTSAVE DUMP RESTORE, and INFO's Persistence section.

The work is in :mod:`kvrepl.persistence` (snapshot jobs, files, the save schedule) and
:mod:`kvrepl.rdb` (DUMP payloads). Sources: Redis 7.0.15 ``rdb.c`` (saveCommand,
bgsaveCommand, lastsaveCommand) and ``cluster.c`` (dumpCommand, restoreCommand).
"""

from __future__ import annotations

from kvrepl import persistence
from kvrepl.commands.args import parse_int
from kvrepl.commands.core import Session, command
from kvrepl.commands.info import register_section
from kvrepl.errors import SYNTAX, ReplyError
from kvrepl.notify import GENERIC, notify
from kvrepl.protocol.replies import OK, Status
from kvrepl.rdb import dump_value, load_value
from kvrepl.rdb.payload import sanitized_blobs

BUSYKEY = "BUSYKEY Target key name already exists."
_IN_PROGRESS = "ERR Background save already in progress"

register_section("persistence", persistence.info_fields)


# -- SAVE BGSAVE LASTSAVE ---------------------------------------------------------------------


@command("save")
def save(s: Session, argv: list[bytes]) -> object:
    """SAVE: write the dataset to ``dir/dbfilename`` now, blocking every client meanwhile."""
    state = persistence.attach(s.engine)
    if state.bgsave_in_progress and not (s.engine.aof is not None
                                         and s.engine.aof.job is not None):
        raise ReplyError(_IN_PROGRESS)  # an AOF rewrite does not stop SAVE, as in Redis
    state.rdb_saves += 1
    if not persistence.save(s.engine):
        raise ReplyError("ERR")
    return OK


@command("bgsave")
def bgsave(s: Session, argv: list[bytes]) -> object:
    """BGSAVE [SCHEDULE]: snapshot the dataset now and write it in the background.

    Inside MULTI the save is scheduled for the next cron tick, as Redis does (it cannot
    fork while executing a transaction).
    """
    if len(argv) > 1 and (len(argv) != 2 or argv[1].lower() != b"schedule"):
        raise ReplyError(SYNTAX)
    state = persistence.attach(s.engine)
    rewriting = s.engine.aof is not None and s.engine.aof.job is not None
    if state.bgsave_in_progress and not rewriting:
        raise ReplyError(_IN_PROGRESS)
    if s.in_exec or rewriting:
        if rewriting and len(argv) < 2:
            raise ReplyError("ERR Another child process is active (AOF?): can't BGSAVE right "
                             "now. Use BGSAVE SCHEDULE in order to schedule a BGSAVE whenever "
                             "possible.")
        state.bgsave_scheduled = True
        return Status(b"Background saving scheduled")
    if not persistence.bgsave(s.engine):
        raise ReplyError("ERR")
    return Status(b"Background saving started")


@command("lastsave")
def lastsave(s: Session, argv: list[bytes]) -> object:
    """LASTSAVE: unix time of the last successful save (the start time before any)."""
    return persistence.attach(s.engine).lastsave


# -- DUMP RESTORE -----------------------------------------------------------------------------


@command("dump")
def dump(s: Session, argv: list[bytes]) -> object:
    """DUMP key: the value in Redis 7.0's payload format (RDB 10 + CRC64), or nil."""
    value = s.db.lookup(argv[1])
    if value is None:
        return None
    config = s.engine.config
    return dump_value(value, config=config, compression=config.rdbcompression)


def _restore_options(argv: list[bytes]) -> tuple[bool, bool, int | None, int | None]:
    """REPLACE, ABSTTL, IDLETIME seconds, FREQ frequency, checked in restoreCommand's order."""
    replace = absttl = False
    idle = freq = None
    j = 4
    while j < len(argv):
        option = argv[j].lower()
        more = len(argv) - j - 1
        if option == b"replace":
            replace = True
        elif option == b"absttl":
            absttl = True
        elif option == b"idletime" and more >= 1 and freq is None:
            idle = parse_int(argv[j + 1])
            if idle < 0:
                raise ReplyError("ERR Invalid IDLETIME value, must be >= 0")
            j += 1
        elif option == b"freq" and more >= 1 and idle is None:
            freq = parse_int(argv[j + 1])
            if not 0 <= freq <= 255:
                raise ReplyError("ERR Invalid FREQ value, must be >= 0 and <= 255")
            j += 1
        else:
            raise ReplyError(SYNTAX)
        j += 1
    return replace, absttl, idle, freq


@command("restore")
def restore(s: Session, argv: list[bytes]) -> object:
    """RESTORE key ttl payload [REPLACE] [ABSTTL] [IDLETIME s] [FREQ f].

    A relative TTL is propagated as an absolute one (``ttl`` rewritten to unix ms and ABSTTL
    appended); a key restored already expired is not created, and if REPLACE deleted an
    old one the command propagates as DEL.
    """
    replace, absttl, idle, freq = _restore_options(argv)
    key = argv[1]
    db = s.db
    if not replace and db.lookup(key) is not None:
        raise ReplyError(BUSYKEY)
    ttl = parse_int(argv[2])
    if ttl < 0:
        raise ReplyError("ERR Invalid TTL value, must be >= 0")
    engine = s.engine
    sanitize = engine.config.sanitize_dump_payload
    # rdbLoadObject: "clients" trusts the master's stream, loading (AOF), and users with
    # skip-sanitize-payload.
    deep = sanitize == "yes" or (
        sanitize == "clients" and not s.is_master and not engine.loading
        and s.user.sanitize != b"skip-sanitize-payload")
    value = load_value(argv[3], deep=deep)  # DumpPayloadError: a ReplyError, Redis's text
    if deep:
        engine.stats.dump_payload_sanitizations += sanitized_blobs(argv[3])
    deleted = replace and db.delete(key)
    now = engine.keyspace.now_ms()
    if ttl and not absttl:
        ttl += now
    # checkAlreadyExpired: not while loading, nor on a replica (its master decides).
    if ttl and ttl <= now and not engine.loading and not persistence.is_replica(engine):
        if deleted:
            engine.rewrite([b"DEL", key])
            notify(s, GENERIC, b"del", key)
            engine.dirty += 1
        return OK
    db.add(key, value)
    db.set_access(key, idle_seconds=idle, frequency=freq)
    if ttl:
        db.set_expire(key, ttl)
        if not absttl:
            engine.rewrite([*argv[:2], b"%d" % ttl, *argv[3:], b"ABSTTL"])
    notify(s, GENERIC, b"restore", key)
    engine.dirty += 1
    return OK


# -- BGREWRITEAOF -----------------------------------------------------------------------------


@command("bgrewriteaof")
def bgrewriteaof(s: Session, argv: list[bytes]) -> object:
    """BGREWRITEAOF: write a new AOF base from a snapshot, in the background (scheduled
    while another snapshot job runs or inside MULTI, as Redis does)."""
    from kvrepl import aof

    return Status(aof.attach(s.engine).bgrewriteaof(s.in_exec).encode())
