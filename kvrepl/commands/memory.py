"""MEMORY USAGE/STATS/DOCTOR/MALLOC-STATS/PURGE/HELP (Redis 7.0 ``object.c``).

The sizes are kvrepl's own: a key's size is what its Python objects take
(``sys.getsizeof`` walked through the value), with Redis's sampling of aggregates (the first
``SAMPLES`` elements, 5 by default, 0 for all, averaged and multiplied by the element count);
MEMORY STATS reports the process under Redis's field names: what kvrepl does not have (AOF,
Lua, cluster links) is 0, the allocator figures are the process's resident size, since
CPython's allocator keeps no separate accounts that a program can read.
"""

from __future__ import annotations

import gc
import sys
from dataclasses import dataclass

from kvrepl.commands import cmem
from kvrepl.commands.args import parse_int
from kvrepl.commands.core import Engine, Session, command
from kvrepl.commands.help import help_reply
from kvrepl.commands.info import _rss, facts
from kvrepl.errors import SYNTAX, ReplyError
from kvrepl.protocol.replies import OK, Verbatim
from kvrepl.store.memory import DEFAULT_SAMPLES, key_memory_usage

_HELP = [
    "DOCTOR",
    "    Return memory problems reports.",
    "MALLOC-STATS",
    "    Return internal statistics report from the memory allocator.",
    "PURGE",
    "    Attempt to purge dirty pages for reclamation by the allocator.",
    "STATS",
    "    Return information about the memory usage of the server.",
    "USAGE <key> [SAMPLES <count>]",
    "    Return memory in bytes used by <key> and its value. Nested values are",
    "    sampled up to <count> times (default: 5, 0 means sample all).",
]
@command("memory|usage")
def memory_usage(s: Session, argv: list[bytes]) -> object:
    """MEMORY USAGE key [SAMPLES count]: bytes for the key, its value and its entries in
    the database's tables (nil when the key is not there; an expired key not yet deleted
    still counts, as Redis looks in the dict directly)."""
    samples = DEFAULT_SAMPLES
    j = 3
    while j < len(argv):
        if argv[j].lower() == b"samples" and j + 1 < len(argv):
            samples = parse_int(argv[j + 1])  # 0: every element
            if samples < 0:
                raise ReplyError(SYNTAX)
            j += 2
        else:
            raise ReplyError(SYNTAX)
    key = argv[2]
    db = s.db
    value = db.data.get(key)
    if value is None:
        return None
    # The same estimate used_memory and eviction count (kvrepl.store.memory).
    return key_memory_usage(key, value, key in db.expires, samples)


@dataclass(slots=True)
class Overhead:
    """getMemoryOverheadData's figures, kvrepl's numbers."""

    used: int
    peak: int
    startup: int
    backlog: int
    dbs: dict[int, tuple[int, int]]  # db -> (main table bytes, expires table bytes)
    overhead: int
    keys: int

    @property
    def net(self) -> int:
        return self.used - self.startup if self.used > self.startup else 1

    @property
    def dataset(self) -> int:
        return self.used - self.overhead


def overhead(engine: Engine) -> Overhead:
    """The process's resident size, its peak (shared with INFO), the backlog and the
    databases' tables."""
    used = _rss()
    known = facts(engine)
    known.peak_memory = max(known.peak_memory, used)
    # The replication buffer's backlog share, as INFO's mem_replication_backlog.
    replication = engine.replication
    backlog = replication.buffer_memory()[1] if replication is not None else 0  # type: ignore[attr-defined]
    dbs = {}
    keys = 0
    for db in engine.keyspace.dbs:
        if db.data:
            keys += len(db.data)
            db.settle()  # the access map's size as the general path's reads leave it
            dbs[db.id] = (sys.getsizeof(db.data) + sys.getsizeof(db.access),
                          sys.getsizeof(db.expires))
    total = backlog + sum(main + expires for main, expires in dbs.values())
    return Overhead(used, known.peak_memory, 0, backlog, dbs, total, keys)


@command("memory|stats")
def memory_stats(s: Session, argv: list[bytes]) -> object:
    """MEMORY STATS: Redis's fields, in its order."""
    mh = overhead(s.engine)
    out: dict[bytes, object] = {
        b"peak.allocated": mh.peak,
        b"total.allocated": mh.used,
        b"startup.allocated": mh.startup,
        b"replication.backlog": mh.backlog,
        b"clients.slaves": (s.engine.replication.replica_buffers()
                            if s.engine.replication is not None else 0),
        b"clients.normal": cmem.clients_memory(s.engine),
        b"cluster.links": 0,
        b"aof.buffer": 0,
        b"lua.caches": 0,
        b"functions.caches": 0,
    }
    for dbid, (main, expires) in mh.dbs.items():
        out[b"db.%d" % dbid] = {
            b"overhead.hashtable.main": main,
            b"overhead.hashtable.expires": expires,
            b"overhead.hashtable.slot-to-keys": 0,
        }
    out.update({
        b"overhead.total": mh.overhead,
        b"keys.count": mh.keys,
        b"keys.bytes-per-key": mh.net // mh.keys if mh.keys else 0,
        b"dataset.bytes": mh.dataset,
        b"dataset.percentage": mh.dataset * 100 / mh.net,
        b"peak.percentage": mh.used * 100 / mh.peak,
        b"allocator.allocated": mh.used,
        b"allocator.active": mh.used,
        b"allocator.resident": mh.used,
        b"allocator-fragmentation.ratio": 1.0,
        b"allocator-fragmentation.bytes": 0,
        b"allocator-rss.ratio": 1.0,
        b"allocator-rss.bytes": 0,
        b"rss-overhead.ratio": 1.0,
        b"rss-overhead.bytes": 0,
        b"fragmentation": 1.0,
        b"fragmentation.bytes": 0,
    })
    return out


_EMPTY = (
    "Hi Sam, this instance is empty or is using very little memory, my issues detector can't "
    "be used in these conditions. Please, leave for your mission on Earth and fill it with "
    "some data. The new Sam and I will be back to our programming as soon as I finished "
    "rebooting.\n")
_FINE = ("Hi Sam, I can't find any memory issue in your instance. I can only account for what "
         "occurs on this base.\n")
_BIG_PEAK = (
    " * Peak memory: In the past this instance used more than 150% the memory that is "
    "currently using. The allocator is normally not able to release memory after a peak, so "
    "you can expect to see a big fragmentation ratio, however this is actually harmless and is "
    "only due to the memory peak, and if the Redis instance Resident Set Size (RSS) is "
    "currently bigger than expected, the memory will be used as soon as you fill the Redis "
    "instance with more data. If the memory peak was only occasional and you want to try to "
    "reclaim memory, please try the MEMORY PURGE command, otherwise the only other option is "
    "to shutdown and restart the instance.\n\n")


_BIG_REPLICA_BUFFERS = (
    " * Big replica buffers: The replica output buffers in this instance are greater than "
    "10MB for each replica (on average). This likely means that there is some replica "
    "instance that is struggling receiving data, either because it is too slow or because of "
    "networking issues. As a result, data piles on the master output buffers. Please try to "
    "identify what replica is not receiving data correctly and why. You can use the INFO "
    "output in order to check the replicas delays and the CLIENT LIST command to check the "
    "output buffers of each replica.\n\n")
_BIG_CLIENT_BUFFERS = (
    " * Big client buffers: The clients output buffers in this instance are greater than "
    "200K per client (on average). This may result from different causes, like Pub/Sub "
    "clients subscribed to channels bot not receiving data fast enough, so that data piles on "
    "the Redis instance output buffer, or clients sending commands with large replies or very "
    "large sequences of commands in the same pipeline. Please use the CLIENT LIST command in "
    "order to investigate the issue if it causes problems in your instance, or to understand "
    "better why certain clients are using a big amount of memory.\n\n")
_MANY_SCRIPTS = (
    " * Many scripts: There seem to be many cached scripts in this instance (more than "
    "1000). This may be because scripts are generated and `EVAL`ed, instead of being "
    "parameterized (with KEYS and ARGV), `SCRIPT LOAD`ed and `EVALSHA`ed. Unless `SCRIPT "
    "FLUSH` is called periodically, the scripts' caches may end up consuming most of your "
    "memory.\n\n")


def memory_report(engine: Engine) -> str:
    """getMemoryDoctorReport on kvrepl's figures: the fragmentation checks never fire
    (those ratios are 1.0 here); the size, peak, client and replica buffer (MEMORY
    STATS' clients.normal and clients.slaves) and cached scripts checks can."""
    from kvrepl.scripting.state import script_stats

    mh = overhead(engine)
    if mh.used < 5 * 1024 * 1024:
        return _EMPTY
    replication = engine.replication
    replicas = len(replication.replicas) if replication is not None else 0
    clients = len(engine.sessions) - replicas
    checks = (
        (mh.peak / mh.used > 1.5, _BIG_PEAK),
        (replicas > 0 and replication.replica_buffers() > 10 * 1024 * 1024,
         _BIG_REPLICA_BUFFERS),
        (clients > 0 and cmem.clients_memory(engine) // clients > 200 * 1024,
         _BIG_CLIENT_BUFFERS),
        (script_stats(engine)["cached_scripts"] > 1000, _MANY_SCRIPTS),
    )
    issues = [text for found, text in checks if found]
    if not issues:
        return _FINE
    return ("Sam, I detected a few issues in this Redis instance memory implants:\n\n"
            + "".join(issues) + "I'm here to keep you safe, Sam. I want to help you.\n")


@command("memory|doctor")
def memory_doctor(s: Session, argv: list[bytes]) -> object:
    """MEMORY DOCTOR."""
    return Verbatim(memory_report(s.engine).encode())


@command("memory|malloc-stats")
def memory_malloc_stats(s: Session, argv: list[bytes]) -> object:
    """MEMORY MALLOC-STATS: what Redis built without jemalloc answers; CPython's allocator
    has no report a program can read."""
    return b"Stats not supported for the current allocator"


@command("memory|purge")
def memory_purge(s: Session, argv: list[bytes]) -> object:
    """MEMORY PURGE: a full garbage collection, so that unreachable cycles are freed."""
    gc.collect()
    return OK


@command("memory|help")
def memory_help(s: Session, argv: list[bytes]) -> object:
    """MEMORY HELP."""
    return help_reply(argv, _HELP)
