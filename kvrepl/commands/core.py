"""The dispatcher: one command table, one execution path for every client.

Handlers are plain functions ``handler(session, argv) -> reply`` registered with
:func:`command`; arity, flags and key positions come from the table built from Redis's own
command descriptions (:mod:`kvrepl.commands.spec`), so no handler checks its own arity. The
engine is sans-IO: the trio server, the embedded API and replication all call
:meth:`Engine.execute` and do their own I/O.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from time import perf_counter
from typing import TYPE_CHECKING

from kvrepl import acl as acl_rules
from kvrepl.commands import cmem, obuf
from kvrepl.commands.eviction import EVICT_FAIL, OOM, Evictor
from kvrepl.commands.instant import InstantMetrics
from kvrepl.commands.monitor import monitor_line
from kvrepl.commands.observers import LatencyMonitor, SlowLog, latency_key
from kvrepl.commands.plain import LANE_CLASSES, PlainLane
from kvrepl.commands.protection import protected_command_error
from kvrepl.commands.spec import (
    CommandSpec,
    key_positions,
    load_specs,
    modified_key_positions,
    modifies_only_first_argument,
)
from kvrepl.commands.tally import DirectTally
from kvrepl.commands.tracking import ClientTracking, Tracking
from kvrepl.commands.watch import WatchRegistry
from kvrepl.config import Config
from kvrepl.errors import (
    ExecAbortError,
    ReplyError,
    WriteSkipped,
    unknown_command,
    wrong_arity,
)
from kvrepl.log import logger, set_level
from kvrepl.notify import EVICTED, EXPIRED, KEY_MISS, NEW, channels, firing
from kvrepl.protocol.replies import NULL_ARRAY, QUEUED, Push, Raw, encode
from kvrepl.store import Database, Keyspace

if TYPE_CHECKING:
    from kvrepl.aof import AppendOnlyFile
    from kvrepl.commands.cmem import QueryBuffer

Handler = Callable[["Session", list], object]

# How many of a replica's last failed commands from its master an engine keeps.
SKIPPED_KEPT = 16

# name ("get", "config|get") -> handler; filled at import time by the family modules.
HANDLERS: dict[str, Handler] = {}
# name -> function(session, argv) giving (writes, allowed while stale, deny on OOM) for a command whose
# flags depend on its arguments (EVAL and FCALL take their script's declared flags, Redis's
# evalGetCommandFlags), or None to keep the command's own.
ARGUMENT_FLAGS: dict[str, Callable[[Session, list[bytes]], tuple[bool, bool, bool] | None]] = {}


def command(*names: str) -> Callable[[Handler], Handler]:
    """Register ``handler`` for each of ``names`` (lowercase; ``"container|sub"`` for subcommands)."""

    def register(handler: Handler) -> Handler:
        for name in names:
            if name in HANDLERS:
                raise RuntimeError(f"command {name!r} registered twice")
            HANDLERS[name] = handler
        return handler

    return register


class _Postponed:
    """Returned by :meth:`Engine.execute` for a client held by CLIENT PAUSE: the server
    waits for the pause to end or relax (:attr:`ClientPause.listeners`) and runs the same
    request again (Redis's ``blockPostponeClient``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "POSTPONED"


POSTPONED = _Postponed()


class _ClientEvicted:
    """Returned by :meth:`Engine.execute` when maxmemory-clients evicted the very client
    whose command was about to run: nothing runs and nothing is answered (processCommand
    returns C_ERR); the server drops the connection."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "CLIENT_EVICTED"


CLIENT_EVICTED = _ClientEvicted()
PAUSE_OFF, PAUSE_WRITE, PAUSE_ALL = 0, 1, 2
PAUSE_FOREVER = 1 << 62  # end_ms of a pause that lasts until it is lifted (FAILOVER's)


class ClientPause:
    """Client pauses (``pauseClients`` / ``updateClientPauseTypeAndEndTime``), by purpose as
    in Redis: CLIENT PAUSE ("client"), FAILOVER ("failover"), SHUTDOWN's wait for replicas
    ("shutdown"), a MIGRATE in flight ("migrate:..."). Pausing again for a purpose keeps the
    more restrictive type and the later end; the pause in force is the most restrictive
    type, until the latest end among that type's pauses. While a pause lasts, expiry stops
    (lazy and active): the keyspace gets its end time. ``listeners`` are told when it ends
    or relaxes (UNPAUSE, its time passed, ALL turned to WRITE), so that postponed clients
    run again.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.kind = PAUSE_OFF
        self.end_ms = 0
        self._purposes: dict[str, tuple[int, int]] = {}  # purpose -> (kind, end_ms)
        self.listeners: list[Callable[[], None]] = []
        self.postponed: set[int] = set()  # ids of the clients waiting (kept by the server)

    def pause(self, kind: int, end_ms: int = PAUSE_FOREVER, purpose: str = "client") -> None:
        """pauseClients: ``end_ms`` is unix ms (0: already over, as Redis's timeout 0)."""
        old = self._purposes.get(purpose)
        if old is not None:
            kind, end_ms = max(old[0], kind), max(old[1], end_ms)
        self._purposes[purpose] = (kind, end_ms)
        self._update()

    def unpause(self, purpose: str = "client") -> None:
        """unpauseClients."""
        if self._purposes.pop(purpose, None) is not None:
            self._update()

    def current(self) -> int:
        """The pause type in force now (checkClientPauseTimeoutAndReturnIfPaused)."""
        if self.kind != PAUSE_OFF and self.end_ms < self.engine.keyspace.now_ms():
            self._update()
        return self.kind

    def _update(self) -> None:
        now = self.engine.keyspace.now_ms()
        for purpose, (_, end) in list(self._purposes.items()):
            if end < now:
                del self._purposes[purpose]
        was = self.kind
        self.kind = max((k for k, _ in self._purposes.values()), default=PAUSE_OFF)
        self.end_ms = max((e for k, e in self._purposes.values() if k == self.kind), default=0)
        self._publish()
        if self.kind < was:
            for listener in list(self.listeners):
                listener()

    def _publish(self) -> None:
        engine = self.engine
        engine.keyspace.expiry_paused_until = self.end_ms if self.kind else 0
        engine.pausing = self.kind != PAUSE_OFF
        engine._refresh_restricted()

    def holds(self, session: Session, cmd: Command) -> bool:
        """Does the pause postpone ``cmd`` from ``session``? Network clients only: a
        replica's link is never paused (as in Redis), nor the embedded API (a plain call
        cannot wait). The master's stream on a replica is held by the replica link itself
        (kvrepl/replication/replica.py), which stops applying it where Redis would."""
        if not session.over_network or session.is_replica or session.is_master:
            return False
        kind = self.current()
        if kind == PAUSE_ALL:
            return True
        if kind == PAUSE_WRITE:
            if cmd.is_exec and session.multi:
                return any(queued.pausable for queued, _ in session.multi)
            return cmd.pausable
        return False


@dataclass(slots=True)
class Block:
    """Returned by a handler that cannot be served yet and may wait (BLPOP and friends).

    ``keys`` are the keys it waits on, ``timeout`` seconds (0 = forever). When a key becomes
    ready the engine runs the same command again; when the time is up the client gets
    ``timeout_reply``. Inside MULTI or for replicated commands the engine answers
    ``timeout_reply`` at once, as Redis does.

    ``argv``, when given, is what the engine runs again instead of the command as sent
    (XREAD remembers the ID ``$`` stood for when it blocked); ``wake_on_delete`` asks to be
    run again when a key it waits on is deleted too (XREADGROUP then fails -UNBLOCKED).
    """

    keys: list[bytes]
    timeout: float
    timeout_reply: object = NULL_ARRAY
    argv: list[bytes] | None = None
    wake_on_delete: bool = False


# Commands MULTI does not queue but runs at once (multiCommand/execCommand rules).
_NOT_QUEUED = frozenset({b"exec", b"discard", b"multi", b"watch", b"quit", b"reset"})
# Commands a RESP2 client in subscribed state may still send.
_SUBSCRIBED_OK = frozenset({
    b"subscribe", b"ssubscribe", b"unsubscribe", b"sunsubscribe", b"psubscribe",
    b"punsubscribe", b"ping", b"quit", b"reset",
})


# String commands that change a string in place (a bytearray: see kvrepl.store.values).
_STRINGS_IN_PLACE = frozenset({"append", "setrange"})
# Writes outside those groups that need no measuring again: SETBIT and BITFIELD only flip
# bits in place and measure the string again themselves when they grow it
# (commands/bitmaps.py); the HyperLogLog writes store a new string through the store's set.
_KEEP_THEIR_ESTIMATE = frozenset({"setbit", "bitfield", "pfadd", "pfmerge", "pfdebug"})


MISCONF = (
    "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist "
    "to disk. Commands that may modify the data set are disabled, because this instance is "
    "configured to report errors during writes if RDB snapshotting fails "
    "(stop-writes-on-bgsave-error option). Please check the Redis logs for details about the "
    "RDB error.")
NOREPLICAS = "NOREPLICAS Not enough good replicas to write."


class Command:
    """A table entry: the spec Redis documents, the handler that implements it, its stats.

    The flags the dispatcher tests on every request are copied out of the spec into plain
    attributes once, because the hot path cannot afford property lookups.
    """

    __slots__ = ("spec", "handler", "subcommands", "name", "arity", "is_write", "replicates",
                 "no_auth", "no_multi", "allows_loading", "allows_busy", "argument_flags", "skip_monitor", "runs_in_multi",
                 "hidden_from_monitor", "touches_keyspace", "allowed_subscribed", "is_exec",
                 "is_ping", "calls", "usec", "rejected_calls", "failed_calls", "denyoom",
                 "remeasures", "remeasures_first", "oom_exempt_in_multi", "histogram",
                 "histogram_tail", "latency_event", "skip_slowlog", "pausable", "protected")

    def __init__(self, spec: CommandSpec, handler: Handler | None,
                 subcommands: dict[bytes, Command] | None = None) -> None:
        self.spec = spec
        self.handler = handler
        self.subcommands = subcommands or {}
        self.name = spec.name
        self.arity = spec.arity
        self.is_write = spec.is_write
        self.replicates = spec.is_write or spec.may_replicate
        self.no_auth = spec.no_auth
        self.no_multi = spec.no_multi
        self.allows_loading = spec.allows_loading
        self.allows_busy = "allow_busy" in spec.flags  # served while a script is busy
        self.argument_flags = ARGUMENT_FLAGS.get(spec.name)
        self.skip_monitor = spec.skip_monitor
        self.hidden_from_monitor = spec.skip_monitor or spec.is_admin
        # what a replica or MONITOR connection may no longer run
        self.touches_keyspace = spec.is_write or spec.is_readonly or spec.may_replicate
        top = spec.name.split("|")[0].encode()
        self.runs_in_multi = top in _NOT_QUEUED
        self.allowed_subscribed = top in _SUBSCRIBED_OK
        self.is_exec = spec.name == "exec"
        self.is_ping = spec.name == "ping"
        self.denyoom = spec.denyoom
        # Writes that may change a value in place (a container, or a string kept as a
        # bytearray), whose keys' memory estimate must be measured again; the others
        # change keys only through the store's add/set/delete, which keep it themselves.
        self.remeasures = spec.is_write and (
            spec.group not in ("string", "generic") or spec.name in _STRINGS_IN_PLACE
        ) and spec.name not in _KEEP_THEIR_ESTIMATE
        self.remeasures_first = self.remeasures and modifies_only_first_argument(spec)
        # In MULTI every command but these is refused when out of memory (processCommand).
        self.oom_exempt_in_multi = top in (b"exec", b"discard", b"quit", b"reset")
        self.calls = 0
        self.usec = 0.0
        self.rejected_calls = 0
        self.failed_calls = 0
        # LATENCY HISTOGRAM's counts (from the first call): calls under 1 ms by whole usec,
        # a list index being the cheapest count; longer ones by hdr sub-bucket
        # (observers.latency_key). observers.latency_counts joins them.
        self.histogram: list[int] | None = None
        self.histogram_tail: dict[int, int] = {}
        self.latency_event = "fast-command" if spec.is_fast else "command"
        self.skip_slowlog = "skip_slowlog" in spec.flags
        # what CLIENT PAUSE WRITE holds back (processCommand's is_may_replicate_command)
        self.pausable = self.replicates
        self.protected = spec.protected  # DEBUG, MODULE, CONFIG SET of protected configs

    def record_latency(self, usec: float, calls: int = 1) -> None:
        """``calls`` calls of ``usec`` each into LATENCY HISTOGRAM's counts."""
        whole = int(usec)
        if self.histogram is None:
            self.histogram = [0] * 1024
        if whole < 1024:
            self.histogram[whole] += calls
        else:
            key = latency_key(usec)
            self.histogram_tail[key] = self.histogram_tail.get(key, 0) + calls

    def __repr__(self) -> str:
        return f"Command({self.name!r})"


@dataclass(slots=True)
class CommandStats:
    """Counters behind ``INFO stats``."""

    commands_processed: int = 0
    connections_received: int = 0
    rejected_connections: int = 0
    expired_keys: int = 0
    evicted_keys: int = 0
    evicted_clients: int = 0  # maxmemory-clients (kvrepl.server.cron.evict_clients)
    total_net_input_bytes: int = 0
    total_net_output_bytes: int = 0
    # Bytes read from our master and written to our replicas (INFO adds them to the totals).
    net_repl_input_bytes: int = 0
    net_repl_output_bytes: int = 0
    # Read and write events on client sockets (not commands: one read may carry many).
    reads_processed: int = 0
    writes_processed: int = 0
    # The active expiry cycle's (expire.c): a running estimate of the share of keys with a
    # TTL that are expired but not yet deleted, the cycles stopped by their time limit, and
    # the time spent in cycles (microseconds).
    expired_stale_perc: float = 0.0
    expired_time_cap_reached_count: int = 0
    expire_cycle_time_used: int = 0
    # The cron's samples behind INFO's instantaneous_* (a fresh one on CONFIG RESETSTAT).
    instant: InstantMetrics = field(default_factory=InstantMetrics)
    pubsub_messages: int = 0
    error_replies: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    # Errors a replica's master link got for commands of the master's stream (Redis's
    # stat_unexpected_error_replies): each is a write this replica could not apply.
    unexpected_error_replies: int = 0
    # Clients' reply buffers the cron shrank or grew (kvrepl.commands.cmem).
    reply_buffer_shrinks: int = 0
    reply_buffer_expands: int = 0
    # Blobs of RESTORE payloads deep-checked under sanitize-dump-payload yes/clients.
    dump_payload_sanitizations: int = 0


def _push_size(message: object) -> int:
    """About the bytes ``message`` takes encoded: its parts, 16 bytes of framing each
    (a MONITOR line is one status reply; an invalidation's key list counts its keys)."""
    if isinstance(message, bytes):
        return len(message) + 3
    if isinstance(message, list):
        return sum(_push_size(part) if type(part) is not bytes else len(part) + 16
                   for part in message) + 16
    return 16


class Session:
    """One client's state: selected db, protocol, transaction, subscriptions. No I/O.

    The server gives each connection one; the embedded API and a replica's link to its
    master use their own. ``push`` queues out-of-band messages (pub/sub, MONITOR); the
    driver that owns the connection sets ``on_push`` to learn that there is something to send.
    """

    def __init__(self, engine: Engine, client_id: int | None = None) -> None:
        self.engine = engine
        self.id = client_id if client_id is not None else engine.next_client_id()
        self.db: Database = engine.keyspace.dbs[0]
        self.resp3 = False
        self.name: bytes | None = None
        self.authenticated = not engine.acl.auth_required()
        # The ACL user; its ``unrestricted`` flag is all the dispatcher tests for a user
        # with every right.
        self.user: acl_rules.User = engine.acl.default
        self.multi: list[tuple[Command, list[bytes]]] | None = None
        self.multi_error = False
        # WATCHed (db, key) -> whether it was already expired when watched
        self.watched: dict[tuple[int, bytes], bool] = {}
        self.dirty_cas = False
        # dicts, not sets: Redis answers UNSUBSCRIBE-all in subscription order
        self.channels: dict[bytes, None] = {}
        self.patterns: dict[bytes, None] = {}
        self.shard_channels: dict[bytes, None] = {}  # SSUBSCRIBE
        self.reply_off = False  # CLIENT REPLY OFF
        self.reply_skip = 0  # CLIENT REPLY SKIP: 2 just asked, 1 while the next command runs
        self.in_exec = False
        # While EXEC runs: how many commands it runs and their replies so far (the reply
        # Redis has begun in the client's buffer; a SCRIPT DEBUG YES child sends it).
        self.exec_progress: tuple[int, list[object]] | None = None
        self.is_master = False  # the link a replica receives its master's stream on
        self.is_replica = False
        self.monitor = False
        self.no_evict = False
        self.woff = 0  # replication offset after this client's last write (for WAIT)
        self.replica_link: object | None = None  # set when this client became a replica
        self.closing = False  # QUIT / CLIENT KILL: close after flushing replies
        self.lua_debug: str | None = None  # SCRIPT DEBUG YES|SYNC: the next EVAL is debugged
        self.addr = "127.0.0.1:0"
        self.laddr = "127.0.0.1:0"
        self.over_network = False  # a TCP/unix client; not the embedded API, not in-process
        self.created = time.time()
        self.last_interaction = self.created
        self.last_command = "NULL"  # full name of the last command, as CLIENT LIST shows it
        self.lib_name = b""
        self.lib_ver = b""
        self.pending_out: list[object] = []
        self.after_reply: list[object] = []  # its own MONITOR lines, sent after the reply
        self.on_push: Callable[[], None] | None = None
        self.on_kill: Callable[[], None] | None = None
        self.kind = "normal"
        self.blocked: object | None = None  # the server's waiter while in BLPOP & co.
        # While a blocked command is re-run: the key that became ready, to be served first.
        self.ready_key: bytes | None = None
        # Where the error replies this client gets are also collected (the master link,
        # which sends no replies: see ReplicaOf); None for everyone else.
        self.error_log: list[ReplyError] | None = None
        # Bytes (about) of pending_out; what the connection holds for this client (the
        # server sets it: see kvrepl.commands.obuf); since when they are over the soft
        # limit of client-output-buffer-limit.
        self.pending_size = 0
        self.held_output: Callable[[], int] | None = None
        self.soft_limit_since: int | None = None
        # The reply buffer Redis would have (CLIENT LIST rbs and rbp: kvrepl.commands.cmem
        # resizes it, each reply write notes its peak) and its query buffer (made when
        # first looked at); the peak's last reset, in ms (0: the first check resets it).
        self.reply_size = obuf.STATIC_BUFFER
        self.reply_peak = obuf.STATIC_BUFFER
        self.reply_peak_reset = 0
        self.query_buffer: QueryBuffer | None = None
        self.last_memory = 0  # tot-mem at the cron's last look (INFO's mem_clients_normal)
        self.tracking: ClientTracking | None = None  # CLIENT TRACKING ON
        # Its direct GETs' bindings (kvrepl.direct_reads: the embedded API's session, an
        # in-process connection's), found again when its db or MULTI state changes.
        self.read_binds: list[Callable[[], None]] = []

    @property
    def subscriptions(self) -> int:
        """clientSubscriptionsCount: channels and patterns (shard channels apart)."""
        return len(self.channels) + len(self.patterns)

    @property
    def subscribed(self) -> bool:
        """In the pub/sub context (Redis's CLIENT_PUBSUB): any kind of subscription."""
        return bool(self.channels or self.patterns or self.shard_channels)

    def push(self, message: object) -> None:
        """Queue an out-of-band reply (a pub/sub message, a MONITOR line) for this client."""
        self.pending_out.append(message)
        self.pending_size += _push_size(message)
        if self.on_kill is not None and obuf.over_limits(self, obuf.pending_bytes(self)):
            obuf.close(self, scheduled=True)  # as the message is added, as Redis checks
            return
        engine = self.engine
        if engine.client_eviction:
            engine.client_mem_pushed.add(self.id)  # measured again once it tried to write
            if engine.on_client_pushed is not None:
                engine.on_client_pushed()
        if self.on_push is not None:
            self.on_push()

    def drained(self) -> None:
        """pending_out was handed to the connection: nothing is pending any more."""
        self.pending_out.clear()
        self.pending_size = 0

    def select(self, index: int) -> None:
        self.db = self.engine.keyspace.dbs[index]
        self.read_state_changed()

    def set_multi(self, queue: list[tuple[Command, list[bytes]]] | None) -> None:
        """Enter MULTI (``queue``: the commands queued so far) or leave it (None)."""
        self.multi = queue
        self.read_state_changed()

    def read_state_changed(self) -> None:
        """What its direct GETs bind (its db, whether it is in MULTI) changed: they bind it
        again (kvrepl.direct_reads)."""
        for bind in self.read_binds:
            bind()


class Engine:
    """The node's command processor: keyspace, config, command table, stats and listeners."""

    def __init__(self, config: Config | None = None, keyspace: Keyspace | None = None) -> None:
        from kvrepl import commands as _families  # noqa: F401  (registers every handler)

        self.config = config or Config()
        self.keyspace = keyspace or Keyspace(self.config.databases)
        self.table = build_table()
        self.acl = acl_rules.Acl(self.config.acl_pubsub_default == "allchannels")
        self.acl.log_max_len = self.config.acllog_max_len
        self.acl.set_default_password(self.config.requirepass)
        acl_rules.load_at_startup(self.acl, self.config)
        self.stats = CommandStats()
        self.sessions: dict[int, Session] = {}
        self._next_id = 0
        self.dirty = 0
        self.started = time.time()
        # Node-wide states that can refuse a command; execute() checks them one by one only
        # while one of them is on (``_restricted``), see the properties below.
        self._restricted = False
        self.pausing = False  # CLIENT PAUSE in force (or not yet found over)
        self._loading = False
        self._async_loading = False
        self._masterdown = False  # a replica whose link to its master is down
        self._read_only = False  # set on a replica with replica-read-only
        self._bgsave_failed = False  # the last BGSAVE failed: MISCONF for writes
        self._busy: ReplyError | None = None  # a script ran past busy-reply-threshold
        # Set by the server: serve the other clients that are ready, from inside a script
        # that is past busy-reply-threshold (Redis's processEventsWhileBlocked).
        self.serve_while_busy: Callable[[Session], None] | None = None
        # Set by the server: the connection a SCRIPT DEBUG session talks over (None when
        # the client has no socket to debug on), see kvrepl.scripting.ldb.
        self.debug_channel: Callable[[Session], object | None] | None = None
        self._aof_error = ""  # why the last AOF write or fsync failed: MISCONF for writes
        self.active_expire_enabled = True  # DEBUG SET-ACTIVE-EXPIRE
        self.cron_paused = False  # DEBUG PAUSE-CRON: the cron skips its work
        # DEBUG REPLYBUFFER RESIZING and PEAK-RESET-TIME (ms, -1: never): clients' reply
        # buffers as the cron resizes them (kvrepl.commands.cmem).
        self.reply_buffer_resizing = True
        self.reply_buffer_peak_reset_ms = 5000
        self.clients_cron_next = 0  # where the cron's next share of the clients starts
        # maxmemory-clients: the clients' memory as last measured, by session id, and its
        # sum (kvrepl.commands.cmem.note_memory); kept only while the option is set.
        self.client_eviction = False
        self.client_mem_usage: dict[int, int] = {}
        self.client_mem_total = 0
        # clients sent pushes since (their output grew): Redis measures a client again
        # after each write it tries (writeToClient), before beforeSleep's evictions
        self.client_mem_pushed: set[int] = set()
        self.on_client_pushed: Callable[[], None] | None = None  # set by the server
        self.evictor = Evictor(self)
        self._maxmemory = 0  # config.maxmemory, read on every command
        self._min_replicas = 0  # config.min_replicas_to_write, likewise
        # client-output-buffer-limit normal sets a limit: each reply is measured as it is
        # added, one command at a time (the lanes close; see _config_changed).
        self.normal_output_limited = False
        # With maxmemory: whether the running command found memory full after evicting
        # (a script's denyoom commands are then refused: pre_command_oom_state).
        self.out_of_memory = False
        self.server: object | None = None  # the trio Server serving this engine, if any
        self.node: object | None = None  # the Node that owns it (REPLICAOF needs it)
        self.replication: object | None = None  # master-side replication state
        # A SCRIPT DEBUG YES session's copy: the good replicas its node had at the fork
        # (Redis's child keeps repl_good_slaves_count as it was; no cron updates it).
        self.forked_good_replicas: int | None = None
        # The append-only file (kvrepl.aof.attach); its buffer is flushed before replies.
        self.aof: AppendOnlyFile | None = None
        # Writes as they must be propagated: (db index, argv); replication, MONITOR-like
        # consumers and node.changes() listen here.
        self.propagate_listeners: list[Callable[[int, list[bytes]], None]] = []
        # A listener's form for a run of writes to one db (see propagate_run), by listener.
        self.run_listeners: dict[Callable[[int, list[bytes]], None],
                                 Callable[[int, list[list[bytes]], bytes | None], None]] = {}
        self._rewrite: list[list[bytes]] | None = None
        # Writes queued by the running execution unit, sent when it ends (_end_unit).
        self._pending: list[tuple[int, list[bytes]]] = []
        # How deeply call() is nested (EXEC runs its commands through call() again): while
        # above 0 a command's execution unit is running, and the writes it causes (a lazy
        # expiry's DEL included) wait in _pending to go out ahead of its own, atomically.
        # At 0 a write no command issued (an embedded read, active expiry) is propagated at
        # once, so every write reaches the stream in the order it happened.
        self.depth = 0
        # False while a script runs a command after redis.set_repl(REPL_NONE): its write is
        # not propagated (a lazy expiry's DEL still is, as Redis's propagateDeletion)
        self.propagating = True
        self._current_db = 0
        self.monitors: list[Session] = []
        self.scripting: object | None = None  # kvrepl.scripting's state, made on first use
        # A replica's last commands from its master that failed here (the newest last),
        # and who wants to hear of each (node.changes()): see ReplicaOf._failed.
        self.skipped_writes: deque[WriteSkipped] = deque(maxlen=SKIPPED_KEPT)
        self.skipped_listeners: list[Callable[[WriteSkipped], None]] = []
        # Set by the server: called when keys became ready for blocked clients.
        self.on_ready_keys: Callable[[], None] | None = None
        self.on_shutdown: Callable[[bool | None], None] | None = None
        self.pubsub_channels: dict[bytes, dict[int, Session]] = {}
        self.pubsub_patterns: dict[bytes, dict[int, Session]] = {}
        self.tracking = Tracking(self)
        # The client whose command is running (Redis's server.current_client), if any.
        self.current: Session | None = None
        self.tracking_on = False
        # One flag for the general lane (commands/dispatch.py), read before each request:
        # a node state whose checks execute() must run (see _refresh_general_lane).
        self.general_lane_closed = False
        self.output_peaks = obuf.new_peaks()  # INFO's client_recent_max_output_buffer
        self.input_peaks = obuf.new_peaks()  # and client_recent_max_input_buffer
        self.watches = WatchRegistry(self.keyspace, self.tracking)
        # The notify-keyspace-events classes whose events are published (none without K
        # or E): see kvrepl.notify.
        self.notify_classes = 0
        # One flag for the plain lane: some observer must see each GET/SET/PFADD/PFCOUNT
        # as the general path runs it (keyspace notifications of the classes they fire).
        self.lane_observed = False
        # The client whose running command has (in Redis) already added its reply: the
        # events it receives itself from then on follow the reply (kvrepl.notify.replied).
        self.replying: Session | None = None
        self.pubsub_shard_channels: dict[bytes, dict[int, Session]] = {}
        self.slowlog = SlowLog()
        self.latency = LatencyMonitor()
        # The shortest duration (usec) the slow log or the latency monitor may record;
        # a call under it is only counted (see _config_changed).
        self.slow_floor = float("inf")
        self.latency_tracking = True
        self.pause = ClientPause(self)
        self.direct_tally = DirectTally(self)  # node.get/set's counters (INFO folds them)
        self.plain_lane = PlainLane(self)
        self.keyspace.expired_listeners.append(self._on_expired)
        self.config.listeners.append(self._config_changed)
        self._config_changed("maxmemory-policy")
        self._config_changed("notify-keyspace-events")

    def _refresh_restricted(self) -> None:
        self._restricted = bool(self._loading or self._async_loading
                                or self._masterdown or self._read_only
                                or self._bgsave_failed or self.pausing or bool(self._aof_error)
                                or self._busy is not None)
        gates = self.keyspace.gates
        gates.set("loading", self._loading)  # the master link's stream waits for it too
        gates.set("node state", self._restricted and not self._loading, clients_only=True,
                  writes_only=True)
        # What refuses reads too (the direct reads read these two gates, not the states).
        gates.set("busy script", self._busy is not None, clients_only=True)
        gates.set("stale data", self._masterdown and not self.config.replica_serve_stale_data,
                  clients_only=True)
        self._refresh_general_lane()

    def _refresh_general_lane(self) -> None:
        """Keep ``general_lane_closed`` in step with the node states it stands for."""
        self.general_lane_closed = bool(self._restricted or self._maxmemory
                                        or self._min_replicas or self.tracking_on
                                        or self.normal_output_limited
                                        or self.client_eviction)

    @property
    def restricted(self) -> bool:
        """Some node-wide state may refuse commands (loading, link down, read-only replica,
        failed BGSAVE): execute() checks them only while this is true."""
        return self._restricted

    @property
    def loading(self) -> bool:
        """The dataset is being loaded: -LOADING for most commands."""
        return self._loading

    @loading.setter
    def loading(self, value: bool) -> None:
        self._loading = value
        self._refresh_restricted()

    @property
    def async_loading(self) -> bool:
        """A replica loads a full sync's payload beside the data it serves (Redis's
        async_loading): only commands flagged no_async_loading get -LOADING."""
        return self._async_loading

    @async_loading.setter
    def async_loading(self, value: bool) -> None:
        self._async_loading = value
        self._refresh_restricted()

    @property
    def busy(self) -> ReplyError | None:
        """While a script runs past busy-reply-threshold: the -BUSY error other clients get
        for commands not flagged allow-busy (SCRIPT KILL, FUNCTION KILL, MULTI ...)."""
        return self._busy

    @busy.setter
    def busy(self, value: ReplyError | None) -> None:
        self._busy = value
        self._refresh_restricted()

    @property
    def masterdown(self) -> bool:
        """A replica whose link to its master is down (-MASTERDOWN when not serving stale)."""
        return self._masterdown

    @masterdown.setter
    def masterdown(self, value: bool) -> None:
        self._masterdown = value
        self._refresh_restricted()

    @property
    def read_only(self) -> bool:
        """A replica with replica-read-only: -READONLY for clients' writes."""
        return self._read_only

    @read_only.setter
    def read_only(self, value: bool) -> None:
        self._read_only = value
        # Set on every change of role and of replica-read-only: a writable replica tracks
        # the TTLs its clients set (Redis's setExpire tests masterhost and repl_slave_ro).
        self.keyspace.writable_replica = not value and self.read_only_role()
        self._refresh_restricted()

    @property
    def bgsave_failed(self) -> bool:
        """The last BGSAVE failed: -MISCONF for writes while save points are set."""
        return self._bgsave_failed

    @bgsave_failed.setter
    def bgsave_failed(self, value: bool) -> None:
        self._bgsave_failed = value
        self._refresh_restricted()

    @property
    def aof_error(self) -> str:
        """Why the AOF cannot be written ('' when it can): -MISCONF for writes."""
        return self._aof_error

    @aof_error.setter
    def aof_error(self, value: str) -> None:
        self._aof_error = value
        self._refresh_restricted()

    def _config_changed(self, name: str) -> None:
        """Keep the store's copies of settings it reads on every access in step."""
        config, keyspace = self.config, self.keyspace
        if name == "replica-read-only":  # CONFIG SET on a replica takes effect at once
            self.read_only = config.replica_read_only and self.read_only_role()
        elif name == "replica-serve-stale-data":
            self._refresh_restricted()
        elif name == "loglevel":
            set_level(config.loglevel)
        elif name == "notify-keyspace-events":
            self._notifications_changed()
        elif name == "requirepass":
            self.acl.set_default_password(config.requirepass)
        elif name == "acllog-max-len":  # as in Redis, the log shrinks at its next entry
            self.acl.log_max_len = config.acllog_max_len
        elif name == "acl-pubsub-default":
            self.acl.pubsub_default_all = config.acl_pubsub_default == "allchannels"
        keyspace.set_lfu(config.maxmemory_policy.endswith("-lfu"))
        keyspace.lfu_log_factor = config.lfu_log_factor
        keyspace.lfu_decay_time = config.lfu_decay_time
        slower_than = config.slowlog_log_slower_than
        threshold_ms = config.latency_monitor_threshold
        self.slow_floor = min(slower_than if slower_than >= 0 else float("inf"),
                              threshold_ms * 1000 if threshold_ms else float("inf"))
        self.latency_tracking = config.latency_tracking
        self.slowlog.trim(config.slowlog_max_len)
        self._maxmemory = config.maxmemory
        self._min_replicas = config.min_replicas_to_write
        hard, soft, _ = config.client_output_buffer_limit["normal"]
        self.normal_output_limited = bool(hard or soft)
        if self.client_eviction != bool(config.maxmemory_clients):
            self.client_eviction = bool(config.maxmemory_clients)
            cmem.reset_client_eviction(self)
        self._refresh_general_lane()
        gates = keyspace.gates
        gates.set("maxmemory", bool(config.maxmemory))  # eviction runs before each command
        # maxmemory-clients: clients are evicted before each of their commands
        gates.set("maxmemory-clients", self.client_eviction, clients_only=True,
                  writes_only=True)
        gates.set("lfu", keyspace.lfu)  # each access counts
        # "Log every command": the lanes time one call in a sample or a run as a whole.
        gates.set("slowlog-every-command", slower_than == 0)
        gates.set("min-replicas-to-write", bool(config.min_replicas_to_write),
                  clients_only=True, writes_only=True)
        # Replies are measured one by one (Redis stops running a client's pipeline at the
        # reply that meets the limit); the embedded reads and the master link have none.
        gates.set("client-output-buffer-limit normal", self.normal_output_limited,
                  clients_only=True, writes_only=True)
        if name == "maxmemory":
            self.evictor.perform()  # as CONFIG SET maxmemory does (updateMaxmemory)

    def _notifications_changed(self) -> None:
        """Wire the store's events (``new``, ``keymiss``) only while their class is on,
        and close the plain lane while the classes its commands fire are."""
        classes = self.notify_classes = firing(self.config.notify_keyspace_events)
        keyspace = self.keyspace
        keyspace.on_new_key = self._on_new_key if classes & NEW else None
        keyspace.on_keymiss = self._on_keymiss if classes & KEY_MISS else None
        self.tracking_changed()

    def tracking_changed(self) -> None:
        """Keep the observers of modified keys and the plain lane's flag in step with who
        tracks keys (called by :class:`Tracking`)."""
        tracking = self.tracking
        # Any client-side caching state at all: the dispatcher's tracking steps run.
        self.tracking_on = bool(tracking.clients or tracking.observing or tracking.pending
                                or tracking.due)
        self._refresh_general_lane()
        self.lane_observed = bool(self.notify_classes & LANE_CLASSES or tracking.clients)
        self.keyspace.gates.set("keyspace observers", self.lane_observed)
        self.watches.refresh_hooks()

    def notify_keyspace_event(self, event: bytes, key: bytes, db_index: int) -> None:
        """Publish one keyspace event (Redis's notifyKeyspaceEvent past its class test:
        callers test ``notify_classes`` first, see :func:`kvrepl.notify.notify`)."""
        for channel, message in channels(self.config.notify_keyspace_events, event, key,
                                          db_index):
            self.publish(channel, message)

    def _on_new_key(self, db: Database, key: bytes) -> None:
        self.notify_keyspace_event(b"new", key, db.id)

    def _on_keymiss(self, db: Database, key: bytes) -> None:
        self.notify_keyspace_event(b"keymiss", key, db.id)

    def key_evicted(self, db: Database, key: bytes) -> None:
        """Eviction deleted ``key`` of ``db``: what observers of the keyspace are told, in
        evict.c's order: client-side caching's invalidation (with WATCH, the rest of
        signalModifiedKey), then the ``evicted`` keyspace event. Call it after the key is
        gone."""
        if self.tracking.observing:
            self.tracking.invalidate(key)
        if self.notify_classes & EVICTED:
            self.notify_keyspace_event(b"evicted", key, db.id)

    def read_only_role(self) -> bool:
        """True while this node is a replica (it follows a master, or a whole cluster)."""
        node = self.node
        return getattr(node, "following", None) is not None or \
            getattr(node, "cluster_follower", None) is not None

    def too_few_replicas(self) -> bool:
        """checkGoodReplicasStatus failing (writes answer NOREPLICAS): a master with
        min-replicas-to-write and min-replicas-max-lag set, and fewer good replicas."""
        config = self.config
        wanted = config.min_replicas_to_write
        if not wanted or not config.min_replicas_max_lag:
            return False
        good = self.forked_good_replicas
        if good is None:
            if self.replication is None or self.read_only_role():
                return False
            good = self.replication.good_replicas()  # type: ignore[attr-defined]
        return good < wanted

    # -- bookkeeping -----------------------------------------------------------------------
    def next_client_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def new_session(self) -> Session:
        session = Session(self)
        self.sessions[session.id] = session
        return session

    def close_session(self, session: Session) -> None:
        """Forget a client: its subscriptions, watches, tracking and MONITOR registration."""
        self.sessions.pop(session.id, None)
        if self.client_eviction:
            cmem.forget_memory(self, session)
        unwatch(session)
        self.tracking.disable(session)
        for mine, registry in ((session.channels, self.pubsub_channels),
                               (session.patterns, self.pubsub_patterns),
                               (session.shard_channels, self.pubsub_shard_channels)):
            for name in mine:
                subscribers = registry.get(name)
                if subscribers is not None:
                    subscribers.pop(session.id, None)
                    if not subscribers:
                        del registry[name]
            mine.clear()
        self.remove_monitor(session)

    def add_monitor(self, session: Session) -> None:
        """MONITOR: ``session`` is shown every command (the fast lanes close)."""
        self.monitors.append(session)
        self.keyspace.gates.set("monitor", True)

    def remove_monitor(self, session: Session) -> None:
        if session in self.monitors:
            self.monitors.remove(session)
        self.keyspace.gates.set("monitor", bool(self.monitors))

    # -- propagation -----------------------------------------------------------------------
    def rewrite(self, *argvs: list[bytes]) -> None:
        """Propagate the running command as ``argvs`` instead of as it was sent."""
        self._rewrite = list(argvs)

    def also_propagate(self, argv: list[bytes], db_index: int | None = None) -> None:
        """Propagate a write that is not the running command's own (Redis's
        ``alsoPropagate``): inside a command it is queued ahead of the command's write;
        outside any command (an embedded read's expiry, active expiry, eviction) it goes
        out at once, so that no later write can overtake it."""
        if self.propagate_listeners:
            db = self._current_db if db_index is None else db_index
            if self.depth:
                self._pending.append((db, argv))
            else:
                self.propagate(db, argv)

    def propagate_deletion(self, db_index: int, key: bytes) -> None:
        """A DEL that no command issued (eviction): like :meth:`also_propagate`, except
        that inside a command that has queued nothing yet it goes out at once, never
        wrapped in MULTI with others (performEvictions propagates its own DELs)."""
        if self.depth and not self._pending and self.propagate_listeners:
            self.propagate(db_index, [b"DEL", key])
        else:
            self.also_propagate([b"DEL", key], db_index)

    def propagate(self, db_index: int, argv: list[bytes]) -> None:
        for listener in self.propagate_listeners:
            listener(db_index, argv)

    def propagate_run(self, db_index: int, commands: list[list[bytes]],
                      encoded: bytes | None = None) -> None:
        """Independent writes to one db, in order (the plain lane's runs of SETs): each
        listener gets them one by one, or all at once through its form in
        ``run_listeners`` (replication queues the run as one piece, ``encoded`` when
        given: the commands' multibulks as the client sent them, which parse to exactly
        ``commands``; see RequestParser.ready_requests)."""
        runs = self.run_listeners
        for listener in self.propagate_listeners:
            whole = runs.get(listener)
            if whole is not None:
                whole(db_index, commands, encoded)
            else:
                for argv in commands:
                    listener(db_index, argv)

    def _on_expired(self, db: Database, key: bytes) -> None:
        """A key was deleted for having expired (deleteExpiredKeyAndPropagate)."""
        self.stats.expired_keys += 1
        if self.notify_classes & EXPIRED:
            self.notify_keyspace_event(b"expired", key, db.id)
        self.also_propagate([b"DEL", key], db.id)

    # -- execution -------------------------------------------------------------------------
    def find_command(self, argv: list[bytes]) -> Command | None:
        """lookupCommand: the table entry ``argv`` names (its subcommand, when it has some
        and one is named), None when there is none; arity unchecked."""
        cmd = self.table.get(argv[0].lower())
        if cmd is not None and cmd.subcommands and len(argv) >= 2:
            return cmd.subcommands.get(argv[1].lower())
        return cmd

    def lookup_command(self, argv: list[bytes]) -> Command:
        """The table entry for ``argv`` (subcommand resolved); ReplyError when unknown."""
        cmd = self.find_command(argv)
        if cmd is None:
            base = self.table.get(argv[0].lower())
            if base is None:
                raise unknown_command(argv[0].decode("utf-8", "replace"), argv[1:])
            raise ReplyError(
                f"ERR unknown subcommand '{argv[1].decode('utf-8', 'replace')[:128]}'. "
                f"Try {base.name.upper()} HELP."
            )
        if cmd.subcommands and cmd.handler is None:  # a container named alone
            cmd.rejected_calls += 1
            raise wrong_arity(cmd.name)
        arity = cmd.arity
        if (arity > 0 and len(argv) != arity) or len(argv) < -arity:
            cmd.rejected_calls += 1
            raise wrong_arity(cmd.name)
        return cmd

    def execute(self, session: Session, argv: list[bytes]) -> object:
        """Run one request for ``session`` and return its reply value (errors included).

        The checks run in the order of Redis's ``processCommand``, before a command is
        queued in MULTI (a refused one makes EXEC fail with EXECABORT).
        """
        cmd = self.table.get(argv[0].lower())
        if cmd is None or cmd.subcommands or not (
                cmd.arity == len(argv) or 0 > cmd.arity >= -len(argv)):
            try:
                cmd = self.lookup_command(argv)
            except ReplyError as err:
                # processCommand sets lastcmd from lookupCommand before its checks: NULL
                # for an unknown command or subcommand (CLIENT LIST's cmd).
                found = self.find_command(argv)
                session.last_command = "NULL" if found is None else found.name
                if found is not None and found.is_exec:  # EXEC of the wrong arity
                    err = self._abort_exec(session, argv, err)
                elif session.multi is not None:
                    session.multi_error = True
                return self._count_error(err, session)
        if cmd.protected and (err := protected_command_error(cmd, session, self.config)):
            return self._reject(cmd, session, argv, err)
        # authRequired: the default user's flags are read now, not at connection time.
        if not session.authenticated and not cmd.no_auth and self.acl.auth_required():
            return self._reject(cmd, session, argv, ReplyError("NOAUTH Authentication required."))
        user = session.user
        if not user.unrestricted and user.check(cmd.spec, argv)[0]:
            return self._reject(cmd, session, argv, self._acl_denied(session, cmd, argv))
        is_write = cmd.is_write
        allows_stale = denyoom = None
        if cmd.is_exec and session.multi:  # EXEC writes when it queued a write
            is_write = any(queued.is_write for queued, _ in session.multi)
        elif cmd.argument_flags is not None \
                and (declared := cmd.argument_flags(session, argv)) is not None:
            is_write, allows_stale, denyoom = declared
        # maxmemory-clients: clients go first, after the last command's replies grew this
        # one's buffers (evictClients in processCommand); evicted, it runs nothing more.
        if self.client_eviction and session.over_network \
                and cmem.evict_clients(self, session):
            return CLIENT_EVICTED
        # maxmemory: evict first (every command, as performEvictions in processCommand);
        # a write from our master is never refused (a replica never skips one).
        # No eviction while clients are paused (the dataset stays still, as in Redis).
        if self._maxmemory and not self.pausing:
            self.out_of_memory = self.evictor.perform() == EVICT_FAIL
            if self.out_of_memory and not session.is_master \
                    and self._denied_on_oom(cmd, session, denyoom):
                return self._reject(cmd, session, argv, ReplyError(OOM))
        if (self._restricted or (is_write and self._min_replicas)) \
                and not session.is_master:
            refused = self._refused_by_state(cmd, is_write)
            if refused is not None:
                return self._reject(cmd, session, argv, refused)
        if session.channels or session.patterns or session.shard_channels:
            if not session.resp3 and not cmd.allowed_subscribed:
                return self._reject(cmd, session, argv, ReplyError(
                    f"ERR Can't execute '{cmd.name}': only (P|S)SUBSCRIBE / "
                    "(P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"))
        if self._restricted:
            refused = self._refused_while(cmd, session, allows_stale)
            if refused is not None:
                return self._reject(cmd, session, argv, refused)
        if (session.is_replica or session.monitor) and cmd.touches_keyspace:
            return self._reject(cmd, session, argv, ReplyError(
                "ERR Replica can't interact with the keyspace"))
        if self.pausing and self.pause.holds(session, cmd):
            return POSTPONED
        if session.multi is not None and not cmd.runs_in_multi:
            if cmd.no_multi:
                return self._reject(
                    cmd, session, argv, ReplyError("ERR Command not allowed inside a transaction"))
            session.multi.append((cmd, argv))
            session.last_command = cmd.name  # processCommand sets lastcmd before queueing
            return QUEUED
        if not self.tracking_on:
            reply = self.call(session, cmd, argv)
        else:
            if self.tracking.clients:
                self.tracking.limit()
            reply = self.call(session, cmd, argv)
            tracking = session.tracking
            if tracking is not None and tracking.caching and session.multi is None \
                    and not cmd.name.startswith("client|"):
                tracking.caching = False  # CLIENT CACHING is for the next command only
        if self.keyspace.ready_keys and self.on_ready_keys is not None:
            self.on_ready_keys()
        return reply

    def _acl_denied(self, session: Session, cmd: Command, argv: list[bytes],
                    in_exec: list[tuple[Command, list[bytes]]] | None = None
                    ) -> ReplyError | None:
        """ACLCheckAllPerm: None when allowed, else the error, the denial logged as
        processCommand logs it, or as execCommand does (``in_exec``: the transaction's
        commands)."""
        result, index = session.user.check(cmd.spec, argv)
        if result == acl_rules.OK:
            return None
        obj = cmd.name.encode() if result == acl_rules.DENIED_CMD else argv[index]
        if in_exec:  # the client is still in MULTI for its CLIENT INFO line, running EXEC
            session.set_multi(in_exec)
            try:
                self.acl_log(session, result, obj, True, "exec")
            finally:
                session.set_multi(None)
        else:
            self.acl_log(session, result, obj, session.multi is not None, cmd.name)
        if in_exec:
            reason = acl_rules.EXEC_DENIED[result]
            return ReplyError("NOPERM ACLs rules changed between the moment the transaction "
                              "was accumulated and the EXEC call. This command is no longer "
                              f"allowed for the following reason: {reason}")
        if result == acl_rules.DENIED_CMD:
            return ReplyError(
                f"NOPERM this user has no permissions to run the '{cmd.name}' command")
        what = "keys" if result == acl_rules.DENIED_KEY else "channels"
        return ReplyError(f"NOPERM this user has no permissions to access one of the {what} "
                          "used as arguments")

    def acl_log(self, session: Session, reason: int, obj: bytes, multi: bool, running: str,
                username: bytes | None = None, context: bytes | None = None) -> None:
        """addACLLogEntry for ``session`` (its CLIENT INFO line, ``running`` as its command,
        goes with the entry); ``context`` b"lua" for a script's call, else multi/toplevel."""
        from kvrepl.commands.client import client_info_line

        if context is None:
            context = b"multi" if multi else b"toplevel"
        self.acl.add_log(reason, context, obj,
                         session.user.name if username is None else username,
                         client_info_line(session, session, running).encode())

    @staticmethod
    def _denied_on_oom(cmd: Command, session: Session, denyoom: bool | None = None) -> bool:
        """processCommand's reject_cmd_on_oom: a denyoom command (EXEC when it queued
        one), or anything but EXEC/DISCARD/QUIT/RESET inside MULTI. ``denyoom`` is the
        flag a script declared, for EVAL and FCALL."""
        if session.multi is not None:
            if not cmd.oom_exempt_in_multi:
                return True
            if cmd.is_exec:
                return any(queued.denyoom for queued, _ in session.multi)
        return cmd.denyoom if denyoom is None else denyoom

    def _refused_by_state(self, cmd: Command, is_write: bool) -> ReplyError | None:
        """processCommand's node-state checks that come before the pub/sub context one:
        MISCONF, NOREPLICAS, READONLY (never for the master's own link)."""
        config = self.config
        if self._aof_error and (is_write or cmd.is_ping) and not (
                self._bgsave_failed and config.stop_writes_on_bgsave_error and config.save):
            # writeCommandsDeniedByDiskError: the RDB error is reported first.
            return ReplyError(f"MISCONF Errors writing to the AOF file: {self._aof_error}")
        if self._bgsave_failed and (is_write or cmd.is_ping) \
                and config.stop_writes_on_bgsave_error and config.save:
            return ReplyError(MISCONF)
        if is_write and self.too_few_replicas():
            return ReplyError(NOREPLICAS)
        if is_write and self._read_only:
            return ReplyError("READONLY You can't write against a read only replica.")
        return None

    def _refused_while(self, cmd: Command, session: Session,
                       allows_stale: bool | None = None) -> ReplyError | None:
        """The node-state checks that come after it: MASTERDOWN, LOADING."""
        if allows_stale is None:
            allows_stale = cmd.spec.allows_stale
        if self._masterdown and not allows_stale and \
                not self.config.replica_serve_stale_data and not session.is_master:
            return ReplyError(
                "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to "
                "'no'.")
        if self._loading and not cmd.allows_loading:
            return ReplyError("LOADING Redis is loading the dataset in memory")
        if self._async_loading and "no_async_loading" in cmd.spec.flags:
            return ReplyError("LOADING Redis is loading the dataset in memory")
        if self._busy is not None and not cmd.allows_busy:
            return self._busy
        return None

    def run_unblocked(self, session: Session, argv: list[bytes]) -> object:
        """Run again the command of a client that was blocked on a key now ready."""
        try:
            cmd = self.lookup_command(argv)
        except ReplyError as err:
            return err
        return self.call(session, cmd, argv)

    def call(self, session: Session, cmd: Command, argv: list[bytes]) -> object:
        """Run a resolved command: hooks, handler, stats, propagation (Redis's ``call()``).

        Re-entrant (EXEC calls it for each queued command): the outermost call is the unit
        of work, whose clock is frozen and whose writes are propagated when it ends."""
        keyspace = self.keyspace
        db = session.db
        dirty = self.dirty
        self._current_db = db.id
        session.last_command = cmd.name
        depth = self.depth
        self.depth = depth + 1
        if not depth:
            keyspace.frozen = True  # also tells the WATCH hook that a command is running
            if self.tracking_on:
                self.current = session
        keyspace.counting_reads = not cmd.is_write
        start = perf_counter()
        try:
            if cmd.is_write and keyspace.before_write_hooks:
                # Only the keys the command may modify: a read-only source (SUNIONSTORE's)
                # is no change for WATCH, nor for a snapshot's copy-on-write.
                for index in modified_key_positions(cmd.spec, argv):
                    db.before_write(argv[index])
            reply = cmd.handler(session, argv)
            if cmd.remeasures:
                self._remeasure(db, cmd, argv)
        except Exception as err:
            reply = self.failed(session, cmd, argv, err)
        finally:
            self.depth = depth
            self.replying = None
            if not depth:
                keyspace.frozen = False
                keyspace.frozen_ms = None
            keyspace.counting_reads = False
        watches = self.watches
        if watches.pending:
            watches.command_done(self.dirty != dirty)
        if self.tracking_on and session.tracking is not None and cmd.spec.is_readonly \
                and not session.tracking.bcast:
            self.tracking.remember(session, cmd, argv)
        usec = (perf_counter() - start) * 1e6
        cmd.usec += usec
        cmd.calls += 1
        self.stats.commands_processed += 1
        if type(reply) is Block:  # measured when it is served; run in EXEC or by our
            if session.in_exec or session.is_master:  # master, it times out at once
                reply = reply.timeout_reply
        else:
            if self.latency_tracking:  # updateCommandLatencyHistogram
                whole = int(usec)
                histogram = cmd.histogram
                if whole < 1024 and histogram is not None:
                    histogram[whole] += 1
                else:
                    cmd.record_latency(usec)
            if usec >= self.slow_floor:
                self.observe_slow(session, cmd, argv, usec)
        if self.monitors and not cmd.hidden_from_monitor:
            self.feed_monitors(session, argv)
        rewritten = self._rewrite
        if rewritten is not None:
            self._rewrite = None
        pending = self._pending
        if self.dirty != dirty and self.propagate_listeners and self.propagating:
            if rewritten is not None:
                pending.extend((db.id, one) for one in rewritten)
            elif cmd.replicates:
                if depth or pending:
                    pending.append((db.id, argv))
                else:  # the unit's one write, the common case: _end_unit inlined
                    for listener in self.propagate_listeners:
                        listener(db.id, argv)
                    if self.replication is not None:
                        session.woff = self.replication.master_repl_offset
        if not depth:
            if pending:
                self._end_unit(session)
            if self.current is not None:  # set while client-side caching is on
                tracking = self.tracking
                if tracking.pending:
                    tracking.after_command()
                if tracking.due and self.server is None:
                    tracking.broadcast()
                self.current = None
        return reply

    def call_quiet(self, session: Session, cmd: Command, argv: list[bytes]) -> object:
        """:meth:`call` of a whole unit of work (no command running) while nothing it
        skips could act: the caller checks ``keyspace.gates.open`` (no WATCH, snapshot,
        MONITOR, blocked client, LFU...) and not ``general_lane_closed`` (no client-side
        caching), as the lanes do. What is left of call() is done here as there: the
        frozen clock, the handler, its stats, its latency and slow log, its writes
        propagated at the unit's end."""
        keyspace = self.keyspace
        db = session.db
        dirty = self.dirty
        self._current_db = db.id
        session.last_command = cmd.name
        self.depth = 1
        keyspace.frozen = True
        keyspace.counting_reads = not cmd.is_write
        start = perf_counter()
        try:
            reply = cmd.handler(session, argv)
            if cmd.remeasures:
                self._remeasure(db, cmd, argv)
        except Exception as err:
            reply = self.failed(session, cmd, argv, err)
        finally:
            self.depth = 0
            self.replying = None
            keyspace.frozen = False
            keyspace.frozen_ms = None
            keyspace.counting_reads = False
        # call()'s accounting, inlined here and in call_nested (a shared method's call
        # cost 5% of an embedded INCR, measured): a change to one is a change to all three.
        usec = (perf_counter() - start) * 1e6
        cmd.usec += usec
        cmd.calls += 1
        self.stats.commands_processed += 1
        if type(reply) is Block:  # measured when it is served
            if session.in_exec or session.is_master:
                reply = reply.timeout_reply
        else:
            if self.latency_tracking:
                whole = int(usec)
                histogram = cmd.histogram
                if whole < 1024 and histogram is not None:
                    histogram[whole] += 1
                else:
                    cmd.record_latency(usec)
            if usec >= self.slow_floor:
                self.observe_slow(session, cmd, argv, usec)
        rewritten = self._rewrite
        if rewritten is not None:
            self._rewrite = None
        pending = self._pending
        if self.dirty != dirty and self.propagate_listeners and self.propagating:
            if rewritten is not None:
                pending.extend((db.id, one) for one in rewritten)
            elif cmd.replicates:
                if pending:
                    pending.append((db.id, argv))
                else:
                    for listener in self.propagate_listeners:
                        listener(db.id, argv)
                    if self.replication is not None:
                        session.woff = self.replication.master_repl_offset
        if pending:
            self._end_unit(session)
        return reply

    def call_nested(self, session: Session, cmd: Command, argv: list[bytes]) -> object:
        """:meth:`call` for a command run inside another (a script's ``redis.call``) while
        nothing it skips could act: the caller checks ``keyspace.gates.open`` (no WATCH,
        snapshot, MONITOR, blocked client, LFU...) and not ``general_lane_closed`` (no
        client-side caching), and that a unit is running (``depth``), whose end
        propagates and times it. What is left of call() is done here as there: the
        handler, its stats, its latency, its write queued for the unit's end."""
        db = session.db
        dirty = self.dirty
        self._current_db = db.id
        session.last_command = cmd.name
        depth = self.depth
        self.depth = depth + 1
        keyspace = self.keyspace
        keyspace.counting_reads = not cmd.is_write
        start = perf_counter()
        try:
            reply = cmd.handler(session, argv)
            if cmd.remeasures:
                self._remeasure(db, cmd, argv)
        except Exception as err:
            reply = self.failed(session, cmd, argv, err)
        finally:
            self.depth = depth
            self.replying = None
            keyspace.counting_reads = False
        usec = (perf_counter() - start) * 1e6  # call()'s accounting, inlined (see call_quiet)
        cmd.usec += usec
        cmd.calls += 1
        self.stats.commands_processed += 1
        if type(reply) is Block:
            if session.in_exec or session.is_master:
                reply = reply.timeout_reply
        else:
            if self.latency_tracking:
                whole = int(usec)
                histogram = cmd.histogram
                if whole < 1024 and histogram is not None:
                    histogram[whole] += 1
                else:
                    cmd.record_latency(usec)
            if usec >= self.slow_floor:
                self.observe_slow(session, cmd, argv, usec)
        rewritten = self._rewrite
        if rewritten is not None:
            self._rewrite = None
        if self.dirty != dirty and self.propagate_listeners and self.propagating:
            if rewritten is not None:
                self._pending.extend((db.id, one) for one in rewritten)
            elif cmd.replicates:
                self._pending.append((db.id, argv))
        return reply

    @staticmethod
    def _remeasure(db: Database, cmd: Command, argv: list[bytes]) -> None:
        """The keys a command may change in place are measured again, dirty or not, RO in
        its key spec or not: XREADGROUP's stream (RO in Redis's table) gains pending
        entries without counting as a change."""
        if cmd.remeasures_first:
            db.changed_in_place(argv[1])
        else:
            for index in key_positions(cmd.spec, argv):
                db.changed_in_place(argv[index])

    def failed(self, session: Session, cmd: Command, argv: list[bytes],
               err: Exception) -> ReplyError:
        """A handler raised ``err`` (``call()``'s and the plain lane's except): the error
        reply, counted in ``failed_calls`` and errorstats. Anything but a ReplyError is a bug
        in the handler, logged and answered as an internal error: it must not take the
        server down. Called in the except block (the log carries its traceback)."""
        if not isinstance(err, ReplyError):
            logger.exception("Error running %r", argv[:3])
            err = ReplyError(f"ERR internal error running '{cmd.name}': {err}")
        cmd.failed_calls += 1
        self._count_error(err, session)
        return err

    def take_rewrite(self) -> list[list[bytes]] | None:
        """What the command that just ran asked to be propagated as instead of itself
        (:meth:`rewrite`), forgotten here; for the plain lane, which runs handlers outside
        ``call()``."""
        rewritten = self._rewrite
        self._rewrite = None
        return rewritten

    def _end_unit(self, session: Session) -> None:
        """The end of an execution unit (Redis 7.0's ``propagatePendingCommands``): its
        writes to the listeners, in order, several wrapped in MULTI ... EXEC; the client's
        WAIT offset moves past them."""
        ops = self._pending
        self._pending = []
        wrap = len(ops) > 1  # one write needs no MULTI around it
        if wrap:
            self.propagate(ops[0][0], [b"MULTI"])
        for db_index, argv in ops:
            self.propagate(db_index, argv)
        if wrap:
            self.propagate(ops[-1][0], [b"EXEC"])
        if self.replication is not None:
            session.woff = self.replication.master_repl_offset

    def count_error(self, err: ReplyError, session: Session) -> ReplyError:
        """Count an error reply in INFO's errorstats (one sent without running a command)."""
        return self._count_error(err, session)

    def observe_slow(self, session: Session, cmd: Command, argv: list[bytes],
                     usec: float) -> None:
        """A call at least as long as ``slow_floor``: the latency monitor's sample
        (``command`` or ``fast-command``, in whole ms) and the slow log's entry (whole usec),
        each against its own threshold, as Redis's call() does."""
        config = self.config
        duration = int(usec)
        threshold_ms = config.latency_monitor_threshold
        if threshold_ms and duration // 1000 >= threshold_ms:
            self.latency.add_sample(cmd.latency_event, duration // 1000)
        slower_than = config.slowlog_log_slower_than
        if 0 <= slower_than <= duration and not cmd.skip_slowlog:
            self.slowlog.push(argv, duration, session.addr, session.name,
                              config.slowlog_max_len)

    def _reject(self, cmd: Command, session: Session, argv: list[bytes],
                err: ReplyError) -> ReplyError:
        cmd.rejected_calls += 1
        session.last_command = cmd.name  # set by processCommand before its checks
        if cmd.is_exec:
            err = self._abort_exec(session, argv, err)
        elif session.multi is not None:
            session.multi_error = True
        return self._count_error(err, session)

    def _abort_exec(self, session: Session, argv: list[bytes],
                    err: ReplyError) -> ExecAbortError:
        """rejectCommand on EXEC is execCommandAbort, in MULTI or not: the transaction (if
        any) and every watch are discarded, and the error is told inside EXECABORT's, as
        Redis formats it (its rejections of EXEC carry no ``ERR`` prefix; the others, such
        as NOAUTH or READONLY, keep theirs). MONITOR shows the EXEC, as execCommandAbort
        feeds it."""
        session.set_multi(None)
        session.multi_error = False
        unwatch(session)
        if self.monitors:
            self.feed_monitors(session, argv)
        message = err.message.removeprefix("ERR ")
        return ExecAbortError(f"EXECABORT Transaction discarded because of: {message}")

    def _count_error(self, err: ReplyError, session: Session) -> ReplyError:
        self.stats.error_replies += 1
        prefix = err.message.split(" ", 1)[0]
        self.stats.errors[prefix] = self.stats.errors.get(prefix, 0) + 1
        if session.error_log is not None:
            session.error_log.append(err)
        return err

    def feed_monitors(self, session: Session, argv: list[bytes]) -> None:
        """Show a command that ran to every MONITOR client (Redis's call() does it after
        the command, so a monitor's own command shows after its reply)."""
        line = monitor_line(session, argv, self.keyspace.clock())
        for monitor in self.monitors:
            if monitor is session:
                session.after_reply.append(line)
            else:
                monitor.push(line)

    # -- transactions ----------------------------------------------------------------------
    def exec_transaction(self, session: Session) -> object:
        """EXEC: run the queued commands atomically, or abort as Redis does."""
        queued = session.multi
        if queued is None:
            raise ReplyError("ERR EXEC without MULTI")
        session.set_multi(None)
        if session.multi_error:
            session.multi_error = False
            unwatch(session)
            raise ExecAbortError(
                "EXECABORT Transaction discarded because of previous errors.")
        if session.dirty_cas or self.watches.expired_since_watch(session):
            unwatch(session)
            return NULL_ARRAY
        unwatch(session)
        if self.read_only and not session.is_master and any(c.is_write for c, _ in queued):
            raise ExecAbortError("EXECABORT Transaction discarded because of previous errors.")
        replies: list[object] = []
        session.in_exec = True
        session.exec_progress = (len(queued), replies)
        pending, after = session.pending_out, session.after_reply
        try:
            for cmd, argv in queued:
                if not session.user.unrestricted:
                    denied = self._acl_denied(session, cmd, argv, in_exec=queued)
                    if denied is not None:
                        replies.append(self._count_error(denied, session))
                        continue
                before, later = len(pending), len(after)
                reply = self.call(session, cmd, argv)
                if len(pending) > before or len(after) > later:
                    reply = _with_own_pushes(session, reply, before, later)
                replies.append(reply)
        finally:
            session.in_exec = False
            session.exec_progress = None
        return replies

    def publish(self, channel: bytes, message: bytes) -> int:
        """Deliver ``message`` to subscribers of ``channel`` and matching patterns."""
        from kvrepl.commands.glob import glob_match

        receivers = 0
        replying = self.replying
        for session in list(self.pubsub_channels.get(channel, {}).values()):
            if session is replying:
                session.after_reply.append(Push([b"message", channel, message]))
            else:
                session.push(Push([b"message", channel, message]))
            receivers += 1
        for pattern, sessions in list(self.pubsub_patterns.items()):
            if glob_match(pattern, channel):
                for session in list(sessions.values()):
                    if session is replying:
                        session.after_reply.append(
                            Push([b"pmessage", pattern, channel, message]))
                    else:
                        session.push(Push([b"pmessage", pattern, channel, message]))
                    receivers += 1
        self.stats.pubsub_messages += 1
        return receivers

    def publish_shard(self, channel: bytes, message: bytes) -> int:
        """SPUBLISH: deliver ``message`` to the subscribers of shard channel ``channel``."""
        receivers = 0
        for session in list(self.pubsub_shard_channels.get(channel, {}).values()):
            session.push(Push([b"smessage", channel, message]))
            receivers += 1
        self.stats.pubsub_messages += 1
        return receivers


def _with_own_pushes(session: Session, reply: object, before: int, later: int) -> Raw:
    """A command of EXEC whose client received messages while it ran (its own keyspace
    events, RESP3): Redis writes them into the EXEC array where they happened, around
    the command's reply; so does this, as one pre-encoded element."""
    resp3 = session.resp3
    head = session.pending_out[before:]
    tail = session.after_reply[later:]
    del session.pending_out[before:]
    del session.after_reply[later:]
    session.pending_size -= sum(map(_push_size, head))  # they go out in the reply
    return Raw(b"".join(encode(m, resp3) for m in head) + encode(reply, resp3)
               + b"".join(encode(m, resp3) for m in tail))


def unwatch(session: Session) -> None:
    """Forget every key ``session`` watches (UNWATCH, EXEC, DISCARD, disconnect)."""
    session.engine.watches.unwatch(session)
    session.dirty_cas = False


def build_table() -> dict[bytes, Command]:
    """Join Redis's command descriptions with the handlers kvrepl implements.

    Only implemented commands enter the table (COMMAND COUNT reports what we serve); a
    container is present when at least one of its subcommands is implemented.
    """
    specs = load_specs()
    table: dict[bytes, Command] = {}
    for name, spec in specs.items():
        if spec.subcommands:
            subs = {
                sub_name.encode(): Command(sub_spec, HANDLERS[sub_spec.name])
                for sub_name, sub_spec in spec.subcommands.items()
                if sub_spec.name in HANDLERS
            }
            if subs or name in HANDLERS:
                table[name.encode()] = Command(spec, HANDLERS.get(name), subs)
        elif name in HANDLERS:
            table[name.encode()] = Command(spec, HANDLERS[name])
    missing = set(HANDLERS) - {
        c.name for c in table.values()} - {
        s.name for c in table.values() for s in c.subcommands.values()}
    if missing:
        raise RuntimeError(f"handlers without a Redis command description: {sorted(missing)}")
    return table
