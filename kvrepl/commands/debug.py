"""DEBUG subcommands kvrepl implements (Redis 7.0 ``debug.c`` debugCommand).

DIGEST, DIGEST-VALUE, OBJECT, POPULATE, SLEEP, SET-ACTIVE-EXPIRE, PROTOCOL, ERROR, LOG,
CHANGE-REPL-ID, STRINGMATCH-TEST, QUICKLIST-PACKED-THRESHOLD and HELP; SDSLEN, LISTPACK,
QUICKLIST, HTSTATS and HTSTATS-KEY from what kvrepl holds (:mod:`kvrepl.commands.debug_structs`
says how each is computed). REPLYBUFFER sets how the reply buffers that CLIENT LIST shows are
resized (:mod:`kvrepl.commands.cmem`).
Crash helpers (SEGFAULT, PANIC, OOM, ASSERT) and allocator internals (MALLCTL, STRUCTSIZE) are
not implemented. RELOAD is :func:`kvrepl.persistence.debug_reload`, LOADAOF
:func:`kvrepl.aof.debug_loadaof`.
"""

from __future__ import annotations

import random
import re
import time

from kvrepl import aof, persistence
from kvrepl.commands import debug_structs
from kvrepl.commands.args import parse_int, parse_positive_int
from kvrepl.commands.core import Session, command
from kvrepl.commands.glob import glob_match
from kvrepl.commands.help import help_reply, subcommand_syntax_error
from kvrepl.config import parse_memory
from kvrepl.errors import ReplyError
from kvrepl.log import logger
from kvrepl.protocol.replies import OK, Raw, Status, Verbatim
from kvrepl.rdb import constants as rdb_constants
from kvrepl.rdb.payload import dump_value
from kvrepl.rdb.primitives import read_len, read_str
from kvrepl.rdb.writer import RdbWriter
from kvrepl.store.digest import digest, digest_value
from kvrepl.store.encoding import object_encoding, object_refcount

_HELP = [
    "CHANGE-REPL-ID",
    "    Change the replication IDs of the instance.",
    "    Dangerous: should be used only for testing the replication subsystem.",
    "DIGEST",
    "    Output a hex signature representing the current DB content.",
    "DIGEST-VALUE <key> [<key> ...]",
    "    Output a hex signature of the values of all the specified keys.",
    "ERROR <string>",
    "    Return a Redis protocol error with <string> as message. Useful for clients",
    "    unit tests to simulate Redis errors.",
    "LOG <message>",
    "    Write <message> to the server log.",
    "HTSTATS <dbid>",
    "    Return hash table statistics of the specified Redis database.",
    "HTSTATS-KEY <key>",
    "    Like HTSTATS but for the hash table stored at <key>'s value.",
    "LOADAOF",
    "    Flush the AOF buffers on disk and reload the AOF in memory.",
    "OBJECT <key>",
    "    Show low level info about `key` and associated value.",
    "POPULATE <count> [<prefix>] [<size>]",
    "    Create <count> string keys named key:<num>. If <prefix> is specified then",
    "    it is used instead of the 'key' prefix. These are not propagated to",
    "    replicas. Cluster slots are not respected so keys not belonging to the",
    "    current node can be created in cluster mode.",
    "PROTOCOL <type>",
    "    Reply with a test value of the specified type. <type> can be: string,",
    "    integer, double, bignum, null, array, set, map, attrib, push, verbatim,",
    "    true, false.",
    "QUICKLIST-PACKED-THRESHOLD <size>",
    "    Sets the threshold for elements to be inserted as plain vs packed nodes",
    "    Default value is 1GB, allows values up to 4GB. Setting to 0 restores to default.",
    "RELOAD [option ...]",
    "    Save the RDB on disk and reload it back to memory. Valid <option> values:",
    "    * MERGE: conflicting keys will be loaded from RDB.",
    "    * NOFLUSH: the existing database will not be removed before load, but",
    "      conflicting keys will generate an exception and kill the server.",
    "    * NOSAVE: the database will be loaded from an existing RDB file.",
    "    Examples:",
    "    * DEBUG RELOAD: verify that the server is able to persist, flush and reload",
    "      the database.",
    "    * DEBUG RELOAD NOSAVE: replace the current database with the contents of an",
    "      existing RDB file.",
    "    * DEBUG RELOAD NOSAVE NOFLUSH MERGE: add the contents of an existing RDB",
    "      file to the database.",
    "SDSLEN <key>",
    "    Show low level SDS string info representing `key` and value.",
    "SET-ACTIVE-EXPIRE <0|1>",
    "    Setting it to 0 disables expiring keys in background when they are not",
    "    accessed (otherwise the Redis behavior). Setting it to 1 reenables back the",
    "    default.",
    "SLEEP <seconds>",
    "    Stop the server for <seconds>. Decimals allowed.",
    "STRINGMATCH-TEST",
    "    Run a fuzz tester against the stringmatchlen() function.",
    "LISTPACK <key>",
    "    Show low level info about the listpack encoding of <key>.",
    "QUICKLIST <key> [<0|1>]",
    "    Show low level info about the quicklist encoding of <key>.",
    "    The optional argument (0 by default) sets the level of detail",
    "PAUSE-CRON <0|1>",
    "    Stop periodic cron job processing.",
    "REPLYBUFFER PEAK-RESET-TIME <NEVER||RESET|time>",
    "    Sets the time (in milliseconds) to wait between client reply buffer peak resets.",
    "    In case NEVER is provided the last observed peak will never be reset",
    "    In case RESET is provided the peak reset time will be restored to the default value",
    "REPLYBUFFER RESIZING <0|1>",
    "    Enable or disable the reply buffer resize cron job",
]

# What strtod and atoi read from the start of a string; the rest is ignored, as in C.
_STRTOD = re.compile(rb"\s*([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)")
_ATOI = re.compile(rb"\s*([+-]?[0-9]+)")


def _strtod(arg: bytes) -> float:
    match = _STRTOD.match(arg)
    return float(match.group(1)) if match else 0.0


def _replybuffer(s: Session, argv: list[bytes]) -> object:
    """DEBUG REPLYBUFFER PEAK-RESET-TIME <ms|NEVER|RESET> | RESIZING <0|1>: how the
    cron resizes the clients' reply buffers (kvrepl.commands.cmem)."""
    engine = s.engine
    option, value = argv[2].lower(), argv[3]
    if option == b"peak-reset-time":
        if value.lower() == b"never":
            engine.reply_buffer_peak_reset_ms = -1
        elif value.lower() == b"reset":
            engine.reply_buffer_peak_reset_ms = 5000
        else:
            engine.reply_buffer_peak_reset_ms = parse_int(value)
    elif option == b"resizing":
        engine.reply_buffer_resizing = bool(_atoi(value))
    else:
        raise subcommand_syntax_error(argv)
    return OK


def _atoi(arg: bytes) -> int:
    match = _ATOI.match(arg)
    return int(match.group(1)) if match else 0


def _populate(s: Session, argv: list[bytes]) -> object:
    count = parse_positive_int(argv[2])
    size = parse_positive_int(argv[4]) if len(argv) == 5 else 0
    # snprintf("%s:%lu") into 128 bytes: the prefix is a C string, the key at most 127 bytes.
    prefix = argv[3].split(b"\0", 1)[0] if len(argv) >= 4 else b"key"
    db = s.db
    for j in range(count):
        key = (b"%s:%d" % (prefix, j))[:127]
        if db.lookup(key) is not None:
            continue
        value = b"value:%d" % j
        if size:
            value = value[:size].ljust(size, b"\0")
        db.before_write(key)  # signalModifiedKey: WATCH sees it
        db.add(key, value)
    return OK


def _change_repl_id(s: Session) -> object:
    """changeReplicationId + clearReplicationId2: a new history, none kept as second."""
    from kvrepl.replication.master import NO_REPLID, new_replid

    logger.warning("Changing replication IDs after receiving DEBUG change-repl-id")
    replication = getattr(s.engine, "replication", None)
    if replication is not None:
        replication.replid = new_replid()
        replication.replid2 = NO_REPLID
        replication.second_replid_offset = -1
    return OK


def _stringmatch_test() -> object:
    """stringmatchlen_fuzz_test: random patterns against random strings; the matcher must
    answer (true or false) without raising."""
    alphabet = b"*?[]^-\\abc"
    for _ in range(10_000):
        pattern = bytes(random.choice(alphabet) for _ in range(random.randrange(1, 32)))
        subject = bytes(random.randrange(256) for _ in range(random.randrange(1, 32)))
        glob_match(pattern, subject)
        glob_match(pattern, subject, nocase=True)
    return Status(b"Apparently Redis did not crash: test passed")


def _quicklist_packed_threshold(arg: bytes) -> object:
    """quicklistisSetPackedThreshold: list elements this large get a PLAIN node of their
    own in RDB and DUMP payloads. Process-wide, as Redis's static is; 0 restores 1gb."""
    try:
        size = parse_memory(arg.decode("latin-1"))
    except ValueError:
        size = -1
    if size < 0 or size > (1 << 32) - (1 << 20):
        raise ReplyError("ERR argument must be a memory value bigger than 1 and smaller "
                         "than 4gb")
    rdb_constants.QUICKLIST_PACKED_THRESHOLD = size or (1 << 30)
    return OK


def _protocol(s: Session, kind: bytes) -> object:
    """DEBUG PROTOCOL: one reply of each RESP type, for client tests."""
    resp3 = s.resp3
    if kind == b"string":
        return b"Hello World"
    if kind == b"integer":
        return 12345
    if kind == b"double":
        return 3.141
    if kind == b"bignum":
        number = b"1234567999999999999999999999999999999"
        return Raw(b"(" + number + b"\r\n") if resp3 else number
    if kind == b"null":
        return None
    if kind == b"array":
        return [0, 1, 2]
    if kind == b"set":
        return {0, 1, 2}
    if kind == b"map":
        return {0: False, 1: True, 2: False}
    if kind == b"attrib":
        follow = b"$39\r\nSome real reply following the attribute\r\n"
        attribute = b"|1\r\n$14\r\nkey-popularity\r\n*2\r\n$7\r\nkey:123\r\n:90\r\n"
        return Raw((attribute if resp3 else b"") + follow)
    if kind == b"push":
        if not resp3:
            raise ReplyError("ERR RESP2 is not supported by this command")
        return Raw(b">2\r\n$16\r\nserver-cpu-usage\r\n:42\r\n"
                   b"$40\r\nSome real reply following the push reply\r\n")
    if kind == b"true":
        return True
    if kind == b"false":
        return False
    if kind == b"verbatim":
        return Verbatim(b"This is a verbatim\nstring")
    raise ReplyError("ERR Wrong protocol type name. Please use one of the following: "
                     "string|integer|double|bignum|null|array|set|map|attrib|push|verbatim|"
                     "true|false")


_LRU_CLOCK_MAX = (1 << 24) - 1  # the 24 bits of Redis's robj lru field


def _quicklist_extra(value: object, config: object) -> str:
    """The quicklist fields of DEBUG OBJECT for a list: its nodes as the RDB writer builds
    them (the nodes Redis's quicklist would have), decoded from an uncompressed encoding."""
    _, body = RdbWriter(config=config, compression=False).encode_value(value)
    nodes, pos = read_len(body, 0)
    size = 0
    for _ in range(nodes):
        _, pos = read_len(body, pos)  # container: plain or packed
        node, pos = read_str(body, pos)
        size += len(node)  # quicklistNode sz: the listpack's bytes, or the plain element
    return (f" ql_nodes:{nodes} ql_avg_node:{len(value) / nodes:.2f} "
            f"ql_listpack_max:{max(config.list_max_listpack_size, -5)} "
            f"ql_compressed:{int(config.list_compress_depth != 0)} "
            f"ql_uncompressed_size:{size}")


def _object(s: Session, key: bytes) -> Status:
    """DEBUG OBJECT key: Redis's line about the stored value (no lazy expiry, no access).

    ``serializedlength`` is the value's RDB encoding as the dump would write it; ``lru`` is
    the 24-bit field Redis keeps (the LRU clock at the last access, or the LFU data).
    """
    db = s.db
    value = db.data.get(key)
    if value is None:
        raise ReplyError("ERR no such key")
    config = s.engine.config
    encoding = object_encoding(value, config).decode()
    payload = dump_value(value, config=config, compression=config.rdbcompression)
    serialized = len(payload) - 11  # without the type byte, the version and the CRC
    db.settle()  # the direct reads' pending access times
    lru = db.access.get(key, 0) & _LRU_CLOCK_MAX
    clock = s.engine.keyspace.lru_clock & _LRU_CLOCK_MAX
    # estimateObjectIdleTime, wrap-around included (and, as in Redis, read as an LRU time
    # under an LFU policy too).
    idle = clock - lru if clock >= lru else clock + (_LRU_CLOCK_MAX - lru)
    extra = _quicklist_extra(value, config) if encoding == "quicklist" else ""
    return Status(f"Value at:{id(value):#x} refcount:{object_refcount(value, config)} "
                  f"encoding:{encoding} serializedlength:{serialized} lru:{lru} "
                  f"lru_seconds_idle:{idle}{extra}".encode())


@command("debug")
def debug(s: Session, argv: list[bytes]) -> object:
    """DEBUG subcommand [argument ...]."""
    sub = argv[1].lower()
    argc = len(argv)
    if sub == b"help" and argc == 2:
        return help_reply(argv, _HELP)
    if sub == b"digest" and argc == 2:
        return Status(digest(s.engine.keyspace))
    if sub == b"digest-value":
        # No lazy expiry: DEBUG looks at what is stored.
        db = s.db
        return [Status(digest_value(db.data.get(key), db.expires.get(key))) for key in argv[2:]]
    if sub == b"object" and argc == 3:
        return _object(s, argv[2])
    if sub == b"populate" and 3 <= argc <= 5:
        return _populate(s, argv)
    if sub == b"sleep" and argc == 3:
        # Redis stops its event loop; so does kvrepl, by blocking its thread.
        micros = int(_strtod(argv[2]) * 1_000_000)
        if micros > 0:
            time.sleep(micros / 1_000_000)
        return OK
    if sub == b"set-active-expire" and argc == 3:
        s.engine.active_expire_enabled = bool(_atoi(argv[2]))
        return OK
    if sub == b"pause-cron" and argc == 3:
        s.engine.cron_paused = bool(_atoi(argv[2]))
        return OK
    if sub == b"reload":
        persistence.debug_reload(s.engine, argv[2:])
        return OK
    if sub == b"loadaof":
        aof.debug_loadaof(s.engine)
        return OK
    if sub == b"protocol" and argc == 3:
        return _protocol(s, argv[2].lower())
    if sub == b"error" and argc == 3:
        return ReplyError(argv[2].decode("utf-8", "replace"))
    if sub == b"change-repl-id" and argc == 2:
        return _change_repl_id(s)
    if sub == b"stringmatch-test" and argc == 2:
        return _stringmatch_test()
    if sub == b"quicklist-packed-threshold" and argc == 3:
        return _quicklist_packed_threshold(argv[2])
    if sub == b"sdslen" and argc == 3:
        value = s.db.data.get(argv[2])  # dictFind: no lazy expiry
        if value is None:
            raise ReplyError(debug_structs.NO_SUCH_KEY)
        return debug_structs.sdslen(argv[2], value, s.engine.config)
    if sub == b"listpack" and argc == 3:
        return debug_structs.listpack_repr(s, argv[2])
    if sub == b"quicklist" and argc in (3, 4):
        return debug_structs.quicklist_repr(s, argv[2], _atoi(argv[3]) if argc == 4 else 0)
    if sub == b"htstats" and argc == 3:
        return debug_structs.htstats(s, argv[2])
    if sub == b"htstats-key" and argc == 3:
        return debug_structs.htstats_key(s, argv[2])
    if sub == b"replybuffer" and argc == 4:
        return _replybuffer(s, argv)
    if sub == b"log" and argc == 3:
        logger.warning("DEBUG LOG: %s", argv[2].decode("utf-8", "replace"))
        return OK
    raise subcommand_syntax_error(argv)
