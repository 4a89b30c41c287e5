"""A client's memory as CLIENT LIST shows it (networking.c catClientInfoString and
getClientMemoryUsage, server.c clientsCronResizeQueryBuffer and
clientsCronResizeOutputBuffer, multi.c multiStateMemOverhead, pubsub.c pubsubMemOverhead,
Redis 7.0), measured when asked: nothing here runs per request.

The fields defined by the protocol state are what Redis shows for the same bytes:

- ``qbuf``: the request bytes received and not yet parsed into arguments (a request cut
  short, a big argument on its way, a pipeline's tail). Redis drops what it has parsed
  (the ``*<n>`` and ``$<len>`` headers, the arguments taken into argv) and keeps the
  running request in its query buffer until it returns, so the caller's own request
  counts too.
- ``argv-mem``: the argument bytes of the command being run (the caller's, or a blocked
  client's), or of a request parsed in part (its arguments so far).
- ``multi-mem``: the queued MULTI commands, each argument's bytes plus one pointer.
- ``obl``/``oll``/``omem``: the reply bytes held for a client, as Redis's reply buffer and
  reply list would hold them (kvrepl.commands.obuf.ReplyBuffers: the blocks, their
  allocations and list nodes; what the kernel took freed as Redis frees it); for a
  replica link, the blocks of Redis 7.0's shared replication buffer it references
  (kvrepl.commands.obuf.ReplicationBlocks: from the one holding its next byte to send to
  the tail), not its reply buffer (so ``obl`` is 0).

kvrepl's buffers are Python objects; the fields Redis takes from its allocator are the
figures Redis would report for the same bytes, its buffers sized as Redis sizes them
(sds headers, jemalloc 5.3 size classes):

- ``qbuf-free`` (``sdsavail``) and the query buffer's share of ``tot-mem``
  (``sdsZmallocSize``): :class:`QueryBuffer` follows Redis's query buffer: empty (4 bytes
  free) until the first read, then made room for a 16 KB read (20474 bytes), or for the
  whole of a big argument (32 KB or more) once its header is parsed, grown greedily when
  more is held; the cron (:func:`cron`) gives back what an idle (over 2 s) client does
  not use, or trims a buffer over 32 KB to its recent peak, as
  clientsCronResizeQueryBuffer does. The reads themselves are not seen: a buffer grown by
  a read and emptied before anyone looked is not counted.
- ``rbs``/``rbp``: the reply buffer's size (16 KB at first) and the most of it used since
  the peak was last reset; each reply write notes its size (kvrepl.server), and the
  cron shrinks a buffer whose peak used less than half of it to the peak (1 KB at
  least), doubles a full one (up to 16 KB), and resets the peak every 5 s (DEBUG
  REPLYBUFFER sets both), as clientsCronResizeOutputBuffer does.
- ``tot-mem``: ``omem``, the query buffer's allocation, the client structure (768 bytes),
  ``rbs``, ``argv-mem`` with a pointer per argument, ``multi-mem`` with the watched keys'
  list nodes and the queued commands' array, the subscriptions' table entries and slots
  (the table grown for the subscriptions held now, not the size it kept after
  unsubscriptions), and the tracking prefixes' radix tree nodes, as getClientMemoryUsage
  adds them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kvrepl.commands import obuf
from kvrepl.commands.args import string2ll
from kvrepl.commands.obuf import jemalloc_size
from kvrepl.log import logger
from kvrepl.protocol.parser import request_size

if TYPE_CHECKING:
    from kvrepl.commands.core import Engine, Session
    from kvrepl.protocol.parser import RequestParser

POINTER = 8  # sizeof(robj*): Redis adds one per argument to argv-mem's share of tot-mem
CLIENT_STRUCT = 768  # zmalloc_size(client): sizeof(client) of 7.0 in its jemalloc class
IOBUF = 16 * 1024  # PROTO_IOBUF_LEN: the room a read makes in the query buffer
BIG_ARG = 32 * 1024  # PROTO_MBULK_BIG_ARG: an argument read into a buffer of its own
RESIZE_THRESHOLD = 32 * 1024  # PROTO_RESIZE_THRESHOLD
MAX_PREALLOC = 1024 * 1024  # SDS_MAX_PREALLOC
REPLY_MIN = 1024  # PROTO_REPLY_MIN_BYTES
REPLY_CHUNK = obuf.STATIC_BUFFER  # PROTO_REPLY_CHUNK_BYTES
PEAK_RESET_MS = 5000  # REPLY_BUFFER_DEFAULT_PEAK_RESET_TIME
LIST_NODE = 24  # sizeof(listNode)
WATCHED_KEY = 32  # sizeof(watchedKey)
MULTI_CMD = 24  # sizeof(multiCmd)
DICT_ENTRY = 24  # sizeof(dictEntry)
RAX_NODE_COST = 4 * 8  # sizeof(raxNode) * sizeof(raxNode*), as Redis multiplies them


def sds_header(alloc: int) -> int:
    """The header of an sds that may grow (sdsReqType, type 5 never): 3, 5, 9 or 17."""
    if alloc < 1 << 8:
        return 3
    if alloc < 1 << 16:
        return 5
    if alloc < 1 << 32:
        return 9
    return 17


def sds_room(length: int) -> int:
    """sdsalloc after making room for ``length`` bytes: what the allocation holds."""
    header = sds_header(length)
    return jemalloc_size(header + length + 1) - header - 1


def sds_malloc_size(alloc: int) -> int:
    """sdsZmallocSize: the allocation of an sds of ``alloc`` bytes (header and nul)."""
    return jemalloc_size(sds_header(alloc) + alloc + 1)


@dataclass
class QueryBuffer:
    """Redis's query buffer for a client, as far as kvrepl sees it (see the module's
    docstring): its sds allocation, the peak held since the last check, the big argument
    it was sized for."""

    alloc: int = 4  # sdsempty(): a type-8 header in an 8-byte allocation
    peak: int = 0
    read_seen: float = 0.0  # last_interaction when it was last looked at
    bulk: int = 0

    def see(self, session: Session, held: int, bulk: int) -> None:
        """``held`` bytes are in the buffer now; ``bulk`` is the length of the big argument
        being read (0: none)."""
        read = session.last_interaction != self.read_seen
        self.read_seen = session.last_interaction
        if (read or held) and self.alloc < IOBUF:
            # A read came since the last look (or its request is running): it made room
            # for a 16 KB read in a buffer smaller than that (sdsMakeRoomForNonGreedy).
            self.alloc = sds_room(IOBUF)
        if bulk and (read or bulk != self.bulk) and self.alloc < bulk + 2:
            # processMultibulkBuffer on its header, and each read of it: room for exactly
            # the argument and its CRLF.
            self.alloc = sds_room(bulk + 2)
        self.bulk = bulk
        if held > self.alloc:  # grown by sdsMakeRoomFor, greedily
            room = held * 2 if held < MAX_PREALLOC else held + MAX_PREALLOC
            self.alloc = sds_room(room)
        self.peak = max(self.peak, held)

    def cron(self, held: int, idle: float) -> None:
        """clientsCronResizeQueryBuffer: give back the space of an idle client, or trim a
        buffer far above its recent peak; then the peak starts afresh."""
        if self.alloc - held > 4 * 1024:
            if idle > 2:
                self.alloc = held  # sdsRemoveFreeSpace: alloc is the size asked for
            elif self.alloc > RESIZE_THRESHOLD and self.alloc // 2 > self.peak:
                self.alloc = max(held, self.peak, self.bulk)
        self.peak = max(held, self.bulk)


@dataclass
class ClientMemory:
    """One client's CLIENT LIST memory fields."""

    qbuf: int = 0
    qbuf_free: int = 0
    query_size: int = 8  # sdsZmallocSize of the query buffer
    argv_mem: int = 0
    argc: int = 0
    multi_mem: int = 0
    multi_overhead: int = 0  # multiStateMemOverhead beyond multi-mem
    pubsub_overhead: int = 0
    tracking_overhead: int = 0
    rbs: int = REPLY_CHUNK
    rbp: int = 0
    obl: int = 0
    oll: int = 0
    omem: int = 0

    @property
    def total(self) -> int:
        """``tot-mem``: getClientMemoryUsage's sum."""
        return (self.omem + self.query_size + CLIENT_STRUCT + self.rbs + self.argv_mem
                + POINTER * self.argc + self.multi_mem + self.multi_overhead
                + self.pubsub_overhead + self.tracking_overhead)

    @property
    def input_usage(self) -> int:
        """clientsCronTrackExpansiveClients's input usage (INFO's
        client_recent_max_input_buffer): the query buffer, the arguments and their
        array (sized for the request's arguments, up to 1024 at first)."""
        array = jemalloc_size(POINTER * min(self.argc, 1024)) if self.argc else 0
        return self.query_size + self.argv_mem + array


def argv_memory(argv: list[bytes]) -> int:
    """argv_len_sum: the bytes of the arguments, without their headers."""
    return sum(map(len, argv))


def multi_memory(session: Session) -> int:
    """mstate.argv_len_sums: each queued command's argument bytes and pointers."""
    queued = session.multi
    if not queued:
        return 0
    return sum(argv_memory(argv) + POINTER * len(argv) for _, argv in queued)


def _power_of_two(count: int, least: int) -> int:
    return max(least, 1 << (count - 1).bit_length())


def multi_overhead(session: Session) -> int:
    """multiStateMemOverhead beyond multi-mem: a list node and a watchedKey per watched
    key, and the queued commands' array (2 entries at first, doubled when full)."""
    queued = len(session.multi) if session.multi else 0
    array = _power_of_two(queued, 2) if queued else 0
    return len(session.watched) * (LIST_NODE + WATCHED_KEY) + array * MULTI_CMD


def _dict_overhead(count: int) -> int:
    """An entry each, and the slots of a table grown when full (4, then doubled); right
    after the add that grew it, the old table too (its rehashing moves a bucket at each
    later operation on the table, which kvrepl does not follow)."""
    if not count:
        return 0
    slots = _power_of_two(count, 4)
    if count > 4 and count - 1 == slots // 2:
        slots += slots // 2
    return count * DICT_ENTRY + slots * POINTER


def pubsub_overhead(session: Session) -> int:
    """pubsubMemOverhead: a list node per pattern, the channels' and shard channels'
    dict entries and slots (for the subscriptions held now: Redis never shrinks these
    tables, a client that unsubscribed keeps its slots there)."""
    return (len(session.patterns) * LIST_NODE + _dict_overhead(len(session.channels))
            + _dict_overhead(len(session.shard_channels)))


def rax_nodes(keys: list[bytes]) -> int:
    """The nodes of a Redis radix tree (rax.c) holding ``keys``, inserted only: a run of
    bytes that all keys below share is one compressed node, a fork one node with a child
    per byte, each key's end one node (the root is always there)."""
    rest = [key for key in keys if key]  # (a key ending here marks this node)
    if not rest:
        return 1
    first = {key[0] for key in rest}
    if len(first) == 1:  # one way on: a compressed node of the bytes all keys share
        shared = min(rest)
        common = len(shared)
        for key in rest:
            while not key.startswith(shared[:common]):
                common -= 1
        return 1 + rax_nodes([key[common:] for key in rest])
    return 1 + sum(rax_nodes([key[1:] for key in rest if key[0] == byte]) for byte in first)


def tracking_overhead(session: Session) -> int:
    """The tracking prefixes' radix tree, as getClientMemoryUsage counts its nodes."""
    tracking = session.tracking
    if tracking is None or not tracking.bcast:
        return 0
    return rax_nodes(tracking.prefixes) * RAX_NODE_COST


def query_buffer(session: Session) -> QueryBuffer:
    """The session's query buffer model (made at its first look)."""
    model = session.query_buffer
    if model is None:
        model = session.query_buffer = QueryBuffer(read_seen=session.created)
    return model


def _in_progress(parser: RequestParser | None, running: list[bytes] | None
                 ) -> tuple[int, int, list[bytes] | None]:
    """What Redis's query buffer holds for the client of ``parser`` (``(qbuf, big
    argument's length, argv)``): the bytes not parsed yet, without the header of an
    argument in progress; plus the running request, which stays there until it returns."""
    if parser is None:
        return 0, 0, running
    held = parser.buffered
    bulk = 0
    argv = running
    if running is not None:
        held += request_size(running)
    else:
        argv = parser.partial_request()
        if argv is not None:
            head = parser.head(24)
            end = head.find(b"\r\n")
            length = string2ll(head[1:end]) if head[:1] == b"$" and end > 0 else None
            if length is not None and length >= 0:
                # The argument's header is whole and valid: Redis has parsed it, and
                # dropped it from its query buffer (bytes not parsed yet stay counted).
                held -= end + 2
                bulk = length if length >= BIG_ARG else 0
    return held, bulk, argv


def measure(session: Session, running: list[bytes] | None = None) -> ClientMemory:
    """``session``'s memory; ``running`` is the command it is running now, if any."""
    mem = ClientMemory(multi_mem=multi_memory(session), multi_overhead=multi_overhead(session),
                       pubsub_overhead=pubsub_overhead(session),
                       tracking_overhead=tracking_overhead(session))
    connection = obuf.connection_of(session)
    held, bulk, argv = _in_progress(getattr(connection, "parser", None), running)
    model = query_buffer(session)
    model.see(session, held, bulk)
    mem.qbuf = held
    mem.qbuf_free = max(model.alloc - held, 0)
    mem.query_size = sds_malloc_size(model.alloc)
    if argv is None and session.blocked is not None:
        argv = session.blocked.argv  # a blocked client holds its command until served
    if argv:
        mem.argv_mem = argv_memory(argv)
        mem.argc = len(argv)
    mem.rbs = session.reply_size
    link = session.replica_link
    if link is not None:
        mem.oll, mem.omem = session.engine.replication.replica_output(link)
        mem.rbp = session.reply_peak
    else:
        pending = obuf.pending_bytes(session)
        mem.obl, mem.oll, mem.omem = obuf.output_shape(session, pending, connection)
        session.reply_peak = mem.rbp = max(session.reply_peak, mem.obl)
    return mem


def resize_reply_buffer(session: Session, now_ms: int, used: int) -> None:
    """clientsCronResizeOutputBuffer (``used``: what the buffer holds now): a buffer whose
    peak used less than half of it shrinks to the peak (1 KB at least), a full one
    doubles (16 KB at most), both to their jemalloc class; the peak is reset to what the
    buffer holds every ``peak-reset-time`` ms. Redis starts the first period at the
    client's creation in seconds, compared with milliseconds: its first check always
    resets the peak."""
    engine = session.engine
    if not engine.reply_buffer_resizing:
        return
    size = session.reply_size
    peak = session.reply_peak
    if size // 2 >= REPLY_MIN and peak < size // 2:
        session.reply_size = jemalloc_size(max(REPLY_MIN, peak + 1))
        engine.stats.reply_buffer_shrinks += 1
    elif size * 2 < REPLY_CHUNK * 2 and peak == size:
        session.reply_size = jemalloc_size(min(REPLY_CHUNK, size * 2))
        engine.stats.reply_buffer_expands += 1
    reset = engine.reply_buffer_peak_reset_ms
    if reset >= 0 and now_ms - session.reply_peak_reset >= reset:
        session.reply_peak = min(used, session.reply_size)
        session.reply_peak_reset = now_ms


def cron(engine: Engine, session: Session) -> ClientMemory:
    """clientsCron's share for one client: resize its query and reply buffers; returns its
    memory, with the buffers as resized."""
    mem = measure(session)
    if not mem.oll:
        obuf.forget_model(session)
    now = time.time()
    model = query_buffer(session)
    model.cron(mem.qbuf, now - session.last_interaction)
    resize_reply_buffer(session, int(now * 1000), mem.obl)
    mem.qbuf_free = max(model.alloc - mem.qbuf, 0)
    mem.query_size = sds_malloc_size(model.alloc)
    mem.rbs = session.reply_size
    return mem


def clients_memory(engine: Engine) -> int:
    """MEMORY STATS ``clients.normal`` (INFO's ``mem_clients_normal``): the ``tot-mem``
    of every client but the replicas (normal, pub/sub and the master link, as Redis's
    stat_clients_type_memory adds them), each as the cron last measured it (as Redis's
    clientsCron updates it: a client not yet looked at counts for nothing)."""
    return sum(s.last_memory for s in engine.sessions.values()
               if not (s.is_replica and not s.monitor))


CRON_MIN_ITERATIONS = 5  # CLIENTS_CRON_MIN_ITERATIONS


def clients_cron(engine: Engine) -> int:
    """clientsCron, at each cron tick for a share of the clients (every client once a
    second; each tick at least 5 of them, all of them when there are no more): resize
    its buffers (:func:`cron`), note its input and output memory for INFO's
    client_recent_max_input_buffer and client_recent_max_output_buffer, and close it if
    it is over its output buffer limits (the soft limit of a client that receives
    nothing more is met here). Returns how many it closed."""
    slot = obuf.peak_slot(engine)
    outputs = engine.output_peaks
    inputs = engine.input_peaks
    closed = 0
    sessions = list(engine.sessions.values())
    count = max(len(sessions) // engine.config.hz, min(len(sessions), CRON_MIN_ITERATIONS))
    start = engine.clients_cron_next % len(sessions) if sessions else 0
    engine.clients_cron_next = start + count
    for i in range(start, start + count):
        session = sessions[i % len(sessions)]
        try:
            mem = cron(engine, session)
        except Exception:  # a bug must cost this look only, never the node's cron
            logger.exception("Measuring client %s failed", session.addr)
            continue
        note_memory(engine, session, mem.total)
        inputs[slot] = max(inputs[slot], mem.input_usage)
        outputs[slot] = max(outputs[slot], mem.omem)
        if session.replica_link is None:
            closed += obuf.check_limits(session, obuf.pending_bytes(session))
    return closed


# -- maxmemory-clients (client eviction) ---------------------------------------------------
# getClientEvictionLimit's floor: a tiny limit must still let clients talk to the server
_CLIENT_EVICTION_FLOOR = 128 * 1024


def client_eviction_limit(config: object) -> int:
    """getClientEvictionLimit: maxmemory-clients in bytes (a percentage of maxmemory when
    negative), at least 128 KB; 0 when there is none."""
    setting, maxmemory = config.maxmemory_clients, config.maxmemory  # type: ignore[attr-defined]
    if setting < 0 and maxmemory > 0:
        limit = int(maxmemory * -setting / 100)
    elif setting > 0:
        limit = setting
    else:
        return 0
    return max(limit, _CLIENT_EVICTION_FLOOR)


def _eviction_counted(session: Session) -> bool:
    """The clients whose memory counts against maxmemory-clients: the normal and pub/sub
    ones (a MONITOR client is a normal one, as getClientType says), network clients only
    (the embedded API is no client)."""
    return (session.over_network and not session.is_master
            and (not session.is_replica or session.monitor))


def note_memory(engine: Engine, session: Session, total: int) -> None:
    """updateClientMemUsage(AndBucket): ``total`` is the client's ``tot-mem`` as last
    measured; with maxmemory-clients on, the sum of the counted clients' follows it."""
    session.last_memory = total
    if not engine.client_eviction:
        return
    usage = engine.client_mem_usage
    engine.client_mem_total -= usage.pop(session.id, 0)
    if _eviction_counted(session) and session.id in engine.sessions:
        usage[session.id] = total
        engine.client_mem_total += total


def forget_memory(engine: Engine, session: Session) -> None:
    """A client is gone: its memory leaves the sum (freeClient)."""
    engine.client_mem_total -= engine.client_mem_usage.pop(session.id, 0)


def reset_client_eviction(engine: Engine) -> None:
    """maxmemory-clients turned on or off: the sum starts over (each client counts again
    from its next look, as Redis's buckets fill again)."""
    engine.client_mem_usage.clear()
    engine.client_mem_pushed.clear()
    engine.client_mem_total = 0


def evict_clients(engine: Engine, current: Session | None = None,
                  pushed: bool = False) -> bool:
    """evictClients: while the counted clients use as much memory as maxmemory-clients or
    more (as each was last measured), disconnect the biggest evictable one (not a
    replica, the master link or a ``CLIENT NO-EVICT on`` client); counted in INFO's
    ``evicted_clients``. ``current``: the client whose command is about to run (its
    memory measured now): True when it was evicted (its command then does not run).
    ``pushed``: the clients sent pushes since the last look are measured first, once
    they have written what the kernel would take (Redis measures a client after each
    write it tries)."""
    sessions = engine.sessions
    if current is not None and _eviction_counted(current):
        note_memory(engine, current, measure(current).total)
    if pushed and engine.client_mem_pushed:
        for sid in engine.client_mem_pushed:
            sent_to = sessions.get(sid)
            if sent_to is not None:
                note_memory(engine, sent_to, measure(sent_to).total)
        engine.client_mem_pushed.clear()
    limit = client_eviction_limit(engine.config)
    if not limit or engine.client_mem_total < limit:
        return False
    from kvrepl.commands.client import client_info_line, kill_session

    candidates = sorted(
        ((size, sessions[sid]) for sid, size in engine.client_mem_usage.items()
         if sid in sessions and not sessions[sid].no_evict
         and sessions[sid].on_kill is not None),
        key=lambda item: item[0], reverse=True)
    evicted = False
    for _, session in candidates:
        if engine.client_mem_total < limit:
            break
        logger.info("Evicting client: %s", client_info_line(session))
        kill_session(session)  # its memory leaves the sum (Engine.close_session)
        engine.stats.evicted_clients += 1
        evicted |= session is current
    else:
        if engine.client_mem_total >= limit:
            logger.warning("Over client maxmemory after evicting all evictable clients")
    return evicted
