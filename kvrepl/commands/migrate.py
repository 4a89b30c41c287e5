"""MIGRATE (Redis 7.0 cluster.c migrateCommand): move keys to another instance with
DUMP/RESTORE payloads.

The handler does what needs no network: it checks the arguments in Redis's order, answers
NOKEY when no key is here, and builds the whole request (AUTH, SELECT, one RESTORE per key,
payloads and TTLs taken now). It returns a :class:`MigrateJob`; the server connection
(kvrepl/server/migrate.py) sends it over a cached connection to the target, with clients'
writes paused meanwhile so that the keys cannot change before they are deleted (Redis blocks
the whole server for a MIGRATE), reads the replies, and hands them to :func:`finish_migrate`,
which deletes the keys the target acknowledged (unless COPY) and propagates them as DEL.
Inside EXEC or a script the exchange is done at once with blocking I/O (:func:`run_now`), as
Redis does it for every MIGRATE: the transaction stays atomic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kvrepl.commands.args import parse_int
from kvrepl.commands.core import Engine, Session, command
from kvrepl.errors import SYNTAX, ReplyError
from kvrepl.protocol.replies import Status, encode
from kvrepl.rdb.payload import dump_value

NOKEY = Status(b"NOKEY")


@dataclass(eq=False)
class MigrateJob:
    """What MIGRATE has to send, and what it needs to finish."""

    host: str
    port: int
    timeout: float  # seconds, for each network step
    dbid: int
    db: int  # the client's database, where the keys are
    keys: list[bytes]
    copy: bool
    auth: list[bytes] | None  # AUTH [username] password
    # RESTORE commands, one per key (built at the time of the command)
    restores: list[bytes] = field(default_factory=list)


@command("migrate")
def migrate(s: Session, argv: list[bytes]) -> object:
    """MIGRATE host port key|"" destination-db timeout [COPY] [REPLACE] [AUTH password]
    [AUTH2 username password] [KEYS key [key ...]]."""
    copy = replace = False
    username = password = None
    first_key, num_keys = 3, 1
    j = 6
    while j < len(argv):
        more = len(argv) - 1 - j
        word = argv[j].lower()
        if word == b"copy":
            copy = True
        elif word == b"replace":
            replace = True
        elif word == b"auth":
            if not more:
                raise ReplyError(SYNTAX)
            j += 1
            password = argv[j]
        elif word == b"auth2":
            if more < 2:
                raise ReplyError(SYNTAX)
            username, password = argv[j + 1], argv[j + 2]
            j += 2
        elif word == b"keys":
            if argv[3]:
                raise ReplyError("ERR When using MIGRATE KEYS option, the key argument must "
                                 "be set to the empty string")
            first_key, num_keys = j + 1, len(argv) - j - 1
            break
        else:
            raise ReplyError(SYNTAX)
        j += 1
    timeout = parse_int(argv[5])
    dbid = parse_int(argv[4])
    if timeout <= 0:
        timeout = 1000
    if s.is_master:
        # Redis propagates a MIGRATE as the DEL of its keys: no master sends one.
        raise ReplyError("ERR MIGRATE from the master link is not supported by kvrepl")
    db = s.db
    present = [key for key in argv[first_key:first_key + num_keys]
               if db.lookup_read(key) is not None]
    if not present:
        return NOKEY
    job = MigrateJob(host=argv[1].decode("utf-8", "replace"), port=_atoi(argv[2]),
                     timeout=timeout / 1000, dbid=dbid, db=db.id, keys=[], copy=copy,
                     auth=None if password is None else
                     [b"AUTH", *(() if username is None else (username,)), password])
    config = s.engine.config
    now = s.engine.keyspace.now_ms()
    for key in present:
        value = db.data.get(key)
        if value is None:
            continue
        ttl = 0
        expire = db.expires.get(key)
        if expire is not None:
            ttl = expire - now
            if ttl < 0:
                continue
            ttl = max(ttl, 1)
        payload = dump_value(value, config=config, compression=config.rdbcompression)
        job.keys.append(key)
        job.restores.append(encode(
            [b"RESTORE", key, b"%d" % ttl, payload, *((b"REPLACE",) if replace else ())],
            False))
    if s.in_exec or not s.over_network:
        # Inside EXEC, or a caller that cannot wait for the job (a script's call, the
        # embedded API): done at once.
        return run_now(s.engine, job)
    return job


def run_now(engine: Engine, job: MigrateJob) -> object:
    """Do ``job`` at once, blocking the node as Redis's MIGRATE blocks the server: inside
    EXEC or a script, where the transaction must not yield to other clients halfway.
    Needs the node's server (its connection cache); an engine without one refuses."""
    sockets = getattr(engine.server, "migrate_sockets", None)
    if sockets is None:
        raise ReplyError("ERR MIGRATE needs a kvrepl server (this engine serves no TCP)")
    return sockets.run_blocking(engine, job)


def _atoi(arg: bytes) -> int:
    """atoi, as migrateGetSocket reads the port: leading digits, else 0."""
    digits = arg.lstrip()
    sign = -1 if digits[:1] == b"-" else 1
    digits = digits.lstrip(b"+-")
    end = 0
    while end < len(digits) and digits[end:end + 1].isdigit():
        end += 1
    return sign * int(digits[:end]) if end else 0


def finish_migrate(engine: Engine, job: MigrateJob, acknowledged: list[bytes],
                   inside_command: bool = False) -> None:
    """The target restored ``acknowledged``: without COPY they go from here, and replicas
    hear one DEL of them (MIGRATE is propagated as that DEL, as in Redis: the running
    command's rewrite when ``inside_command``, the MIGRATE being done at once)."""
    if job.copy or not acknowledged:
        return
    db = engine.keyspace.dbs[job.db]
    for key in acknowledged:
        db.before_write(key)
        db.delete(key)
    engine.dirty += len(acknowledged)
    if inside_command:
        engine.rewrite([b"DEL", *acknowledged])
    else:
        engine.also_propagate([b"DEL", *acknowledged], job.db)


def target_error(line: bytes) -> ReplyError:
    """A target's error reply, as Redis reports it to the MIGRATE client."""
    return ReplyError("ERR Target instance replied with error: "
                      + line[1:].decode("utf-8", "replace"))


CONNECT_ERROR = ReplyError("IOERR error or timeout connecting to the client")


def io_error(writing: bool) -> ReplyError:
    return ReplyError(f"IOERR error or timeout {'writing' if writing else 'reading'} to target "
                      "instance")
