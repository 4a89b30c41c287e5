"""Client output buffers as Redis 7.0 accounts for them and limits them (networking.c:
getClientOutputBufferMemoryUsage, checkClientOutputBufferLimits,
closeClientOnOutputBufferLimitReached; server.c: clientsCronTrackExpansiveClients).

A client's *pending* bytes are the replies and pushes kvrepl holds for it that the kernel
has not taken: the pushes queued on its session (``Session.pending_size``) and what its
connection holds (``Session.held_output``: the replies of the read being run, those the
reactor keeps until the end of its pass, a send the kernel would not take at once, and
the replies of what the client sent meanwhile: kvrepl reads a client whose send waits, as
Redis does, so a client that sends without reading meets these limits).
Redis writes a client's replies into its reply buffer (16 KB at first, resized by the cron:
kvrepl.commands.cmem), CLIENT LIST's ``obl``, which the limits never count; once it is full,
or while its reply list holds anything, into the list's blocks (``oll`` of them, their
allocations ``omem``, which the limits bound): a new block is 16 KB or the rest of the reply
that opened it (jemalloc's usable size), later replies fill the tail block first. Writes
drain the buffer, then the blocks from the head. :class:`ReplyBuffers` follows that for the
bytes kvrepl holds, in the order they were added (:func:`reply_units`: the pieces Redis adds
a reply in), with what the kernel took of the send under way; a client whose pending bytes
fit its reply buffer, with no send waiting, is not modelled (its ``obl`` is their count).
A length Redis sets after its elements (addReplyDeferredLen), at any depth of a reply,
opens an empty node in the reply list where the reply reaches it, even when the reply
buffer has room; the bytes after it open a new block, and the length goes into the room
of the block before, the block after, or a block of its own (setDeferredReply):
:meth:`ReplyBuffers.add_deferred`. The commands mark them where they build their replies
(kvrepl.protocol.replies: DeferredArray, DeferredSet, DeferredMap, or a DeferredReply
encoded by the command: KEYS, SMEMBERS, SINTER, ZRANGEBYSCORE/BYLEX, LPOS COUNT, the
stream ranges of XRANGE, XREAD, XREADGROUP and XINFO STREAM FULL, XPENDING, XCLAIM,
XAUTOCLAIM, a script's tables, every HELP, CLIENT TRACKINGINFO's flags, PUBSUB CHANNELS,
SLOWLOG GET, LCS IDX, ACL CAT and GETUSER, COMMAND INFO's categories, COMMAND DOCS of named
commands, COMMAND LIST, ROLE's replicas, LATENCY HISTORY and HISTOGRAM, FUNCTION LIST
LIBRARYNAME); their bytes keep the marks until they are joined with others (the pass's
replies the reactor writes at its end, a send under way). Not followed: a reply joined
with the client's own pushes inside EXEC (one pre-encoded element).

Sans-IO: sessions and numbers in, decisions out; the server closes who must be closed.
"""

from __future__ import annotations

import re
import time
import weakref
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from kvrepl.log import logger
from kvrepl.protocol.replies import DeferredReply, deferred_marks, encode

if TYPE_CHECKING:
    from kvrepl.commands.core import Engine, Session

STATIC_BUFFER = 16 * 1024  # PROTO_REPLY_CHUNK_BYTES: a client's reply buffer at first
BLOCK_HEADER = 16  # sizeof(clientReplyBlock): its size and used, before its bytes
BLOCK_OVERHEAD = 24 + BLOCK_HEADER  # sizeof(listNode) + sizeof(clientReplyBlock): omem's share
# Redis gives a block the rest of a reply piece that does not fit the tail's room, 16 KB at
# least: a piece of 16 KB or less always opens a block of 16 KB's jemalloc class.
SMALL_BLOCK = 20_480 - BLOCK_HEADER
# A bulk string's header (bulk, verbatim, bulk error) whose bytes may not fit a small block
# (5 digits and more): the only reply pieces that open a block of their own size.
_BIG_BULK = re.compile(rb"[$=!](\d{5,})\r\n")
_PEAK_SLOTS = 8  # CLIENTS_PEAK_MEM_USAGE_SLOTS: "recent" is the last 8 seconds


def limit_class(session: Session) -> str | None:
    """The class whose limits bound ``session`` (getClientType; MONITOR clients are
    normal), or None: replica links are limited by the master's stream code
    (kvrepl.replication.master), and the link to our master is never limited (Redis
    never adds a reply to its buffer)."""
    if session.is_master:
        return None
    if session.is_replica and not session.monitor:
        return None
    return "pubsub" if session.subscribed else "normal"


def pending_bytes(session: Session) -> int:
    """Every reply and push byte held for ``session`` that the kernel has not taken."""
    held = session.held_output
    return session.pending_size + (held() if held is not None else 0)


def connection_of(session: Session) -> object | None:
    """``session``'s connection in the server (None for an embedded session)."""
    connections = getattr(session.engine.server, "connections", None)
    return connections.get(session.id) if connections else None


def writing(connection: object | None) -> bool:
    """A write on ``connection`` waits for the kernel to take its bytes (CLIENT LIST's
    ``w`` event)."""
    return bool(getattr(getattr(connection, "io", None), "unsent", 0))


def jemalloc_size(size: int) -> int:
    """The usable size jemalloc 5.3 (x86-64) gives a request of ``size`` bytes: 8, then
    multiples of 16 up to 64, then four classes per doubling."""
    if size <= 8:
        return 8
    if size <= 64:
        return (size + 15) & ~15
    spacing = 1 << (max(size - 1, 1).bit_length() - 3)
    return (size + spacing - 1) // spacing * spacing


class ReplyBuffers:
    """A client's reply buffer and reply list as Redis 7.0 fills them
    (_addReplyToBuffer, _addReplyProtoToList) and drains them (_writevToClient)."""

    __slots__ = ("buf_size", "bufpos", "buf_sent", "blocks", "head_sent", "reply_bytes",
                 "_skip")

    _HEADER = BLOCK_HEADER  # a block's header, before its bytes
    _SMALL = SMALL_BLOCK  # the room of a block opened by a piece of 16 KB or less

    def __init__(self, buf_size: int) -> None:
        self.buf_size = buf_size
        self.bufpos = 0  # obl: bytes in the reply buffer, sent ones included
        self.buf_sent = 0
        self.blocks: list[list[int]] = []  # [size, used] from the head
        self.head_sent = 0
        self.reply_bytes = 0  # the blocks' sizes
        self._skip = 0  # bytes of a bulk string already added, still to come in the data

    def add(self, length: int) -> None:
        """``length`` reply bytes: into the reply buffer while the list is empty, the rest
        into the tail block's room, then a new block."""
        blocks = self.blocks
        if not blocks:
            taken = min(max(self.buf_size - self.bufpos, 0), length)
            self.bufpos += taken
            length -= taken
        else:
            tail = blocks[-1]
            copied = min(tail[0] - tail[1], length)
            tail[1] += copied
            length -= copied
        if length:
            size = jemalloc_size(max(length, STATIC_BUFFER) + self._HEADER) - self._HEADER
            blocks.append([size, length])
            self.reply_bytes += size

    def add_small(self, length: int) -> None:
        """``length`` bytes of reply pieces of 16 KB or less each (headers, CRLFs, small
        replies and bulk strings): whatever the pieces, they fill the buffer, the tail's
        room, then blocks of 16 KB's class one after the other."""
        small = self._SMALL
        self.add(min(length, small))
        length -= min(length, small)
        blocks = self.blocks
        while length:
            used = min(length, small)
            if blocks[-1][0] > blocks[-1][1]:  # room left in the tail: add() fills it
                self.add(used)
            else:
                blocks.append([small, used])
                self.reply_bytes += small
            length -= used

    def add_deferred(self, reply: DeferredReply) -> None:
        """A reply holding lengths Redis sets after their elements, at any depth
        (addReplyDeferredLen, setDeferredReply; ``reply``'s marks say where): each opens
        an empty node, the bytes after it go to new blocks, and its own bytes are added
        when Redis sets them (:meth:`_set_deferred`)."""
        marks = deferred_marks(reply)
        # Redis's order: the nodes open as the reply reaches them; at one point, the
        # lengths set before a node opens, the one opened last first.
        events = sorted([(at, 1, index) for index, (at, _length, _end) in enumerate(marks)]
                        + [(end, 0, -index) for index, (_at, _length, end) in enumerate(marks)])
        nodes: list[list[int]] = [[]] * len(marks)
        data = memoryview(reply)
        pos = 0
        for where, opens, index in events:
            if where > pos:
                self.add_all((data[pos:where],))
                self._skip = 0
                pos = where
            if opens:
                nodes[index] = self._open_deferred()
                pos = where + marks[index][1]
            else:
                self._set_deferred(nodes[-index], marks[-index][1])
        if len(reply) > pos:
            self.add_all((data[pos:],))
            self._skip = 0

    def _open_deferred(self) -> list[int]:
        """addReplyDeferredLen: the tail block trimmed to what it holds when much of it
        is free (trimReplyUnusedTailSpace), then an empty node (no room, no bytes), which
        the reply's next bytes do not fill: they open a block after it."""
        blocks = self.blocks
        if blocks:
            tail = blocks[-1]
            size, used = tail
            if size - used > size // 4 and used < STATIC_BUFFER:
                tail[0] = jemalloc_size(used + self._HEADER) - self._HEADER
                self.reply_bytes += tail[0] - size
        node = [0, 0]
        blocks.append(node)
        return node

    def _set_deferred(self, node: list[int], length: int) -> None:
        """setDeferredReply: ``length`` bytes for the empty ``node``: into the room of the
        block before it, the rest before the bytes of the block after it (when it has room
        for them and holds under 64 KB), else into a block of their own in the node."""
        blocks = self.blocks
        index = len(blocks) - 1
        while blocks[index] is not node:  # nodes open near the tail
            index -= 1
        if index:
            previous = blocks[index - 1]
            copied = min(previous[0] - previous[1], length)
            previous[1] += copied
            length -= copied
            if not length:
                del blocks[index]
                return
        if index + 1 < len(blocks):
            following = blocks[index + 1]
            if following[0] - following[1] >= length and following[1] < 4 * STATIC_BUFFER:
                following[1] += length
                del blocks[index]
                return
        size = jemalloc_size(length + self._HEADER) - self._HEADER
        blocks[index] = [size, length]
        self.reply_bytes += size

    def add_all(self, data: Iterable[bytes]) -> None:
        """Add the replies in ``data`` (one RESP stream, in pieces) as Redis adds them:
        a bulk string as its header, its bytes and its CRLF (addReplyBulk), every other
        piece small; a piece that is a :class:`DeferredReply` as :meth:`add_deferred`.
        Only the bulk strings over 16 KB are looked for (a scan in C, the bytes of each
        skipped); the text of such a header inside a smaller bulk string's bytes, right
        after a line's end, would be taken for one."""
        search = _BIG_BULK.search
        for chunk in data:
            if type(chunk) is DeferredReply:
                self.add_deferred(chunk)
                continue
            end = len(chunk)
            pos = min(self._skip, end)
            self._skip -= pos
            at = pos
            while at < end:
                match = search(chunk, at)
                if match is None:
                    break
                at = match.end()
                start = match.start()
                length = int(match.group(1))
                if length <= STATIC_BUFFER or (start and chunk[start - 1] != 10):
                    continue
                if at > pos:
                    self.add_small(at - pos)
                self.add(length)
                pos = at = at + length  # its CRLF goes with the small pieces after it
            if pos > end:
                self._skip = pos - end
            elif pos < end:
                self.add_small(end - pos)

    def write(self, length: int) -> None:
        """The kernel took ``length`` bytes: the reply buffer's first, then the blocks',
        each block freed once all of it is sent."""
        if self.bufpos:
            left = self.bufpos - self.buf_sent
            if length < left:
                self.buf_sent += length
                return
            self.bufpos = self.buf_sent = 0
            length -= left
        blocks = self.blocks
        while length > 0 and blocks:
            size, used = blocks[0]
            left = used - self.head_sent
            if length < left:
                self.head_sent += length
                return
            length -= left
            del blocks[0]
            self.reply_bytes -= size
            self.head_sent = 0

    def copy(self) -> ReplyBuffers:
        """The same buffer and blocks, to be written or added to apart."""
        other = ReplyBuffers(self.buf_size)
        other.bufpos, other.buf_sent, other.head_sent = self.bufpos, self.buf_sent, self.head_sent
        other.blocks = [block[:] for block in self.blocks]
        other.reply_bytes, other._skip = self.reply_bytes, self._skip
        return other

    @property
    def omem(self) -> int:
        """getClientOutputBufferMemoryUsage: the blocks' sizes and their list nodes."""
        return self.reply_bytes + BLOCK_OVERHEAD * len(self.blocks)


REPL_BLOCK_HEADER = 40  # sizeof(replBufBlock): refcount, id, repl_offset, size, used
REPL_NODE = 24 + REPL_BLOCK_HEADER  # a block's list node and header: a replica's omem share


class ReplicationBlocks(ReplyBuffers):
    """Redis 7.0's replication buffer (replication.c feedReplicationBuffer,
    incrementalTrimReplicationBacklog): one list of blocks shared by the backlog and the
    replicas, which reference the block holding their next byte to send. It is filled as
    a reply list is (the tail's room first; a piece of a command, such as a big
    argument's bytes, that does not fit opens blocks of its size, 16 KB at least and
    ``repl-backlog-size / 16`` at most), with no reply buffer before it; the backlog
    frees its first block once the rest holds ``repl-backlog-size`` and no replica
    references it. A replica's ``omem`` is the blocks from the one it references to the
    tail, with their headers and list nodes, and its ``oll`` their number
    (getClientOutputBufferMemoryUsage, catClientInfoString). Offsets are the stream's
    (the first byte is 1), ``first`` the offset of the first block's first byte."""

    __slots__ = ("first", "end", "limit", "histlen")

    _HEADER = REPL_BLOCK_HEADER
    _SMALL = jemalloc_size(STATIC_BUFFER + REPL_BLOCK_HEADER) - REPL_BLOCK_HEADER

    def __init__(self, first: int, backlog_size: int) -> None:
        super().__init__(0)
        self.first = first
        self.end = first - 1  # the offset of the last byte added
        self.limit = max(backlog_size // 16, STATIC_BUFFER)
        self.histlen = 0  # the bytes the blocks hold

    def add_all(self, data: Iterable[bytes]) -> None:
        """Add the stream bytes in ``data`` (whole commands, in pieces), as Redis feeds
        them (see ReplyBuffers.add_all)."""
        data = list(data)
        added = sum(map(len, data))
        self.end += added
        self.histlen += added
        super().add_all(data)

    def add(self, length: int) -> None:
        """``length`` stream bytes of one piece: the tail's room, then new blocks."""
        blocks = self.blocks
        if blocks:
            tail = blocks[-1]
            copied = min(tail[0] - tail[1], length)
            tail[1] += copied
            length -= copied
        while length:
            size = jemalloc_size(min(max(length, STATIC_BUFFER), self.limit)
                                 + REPL_BLOCK_HEADER) - REPL_BLOCK_HEADER
            used = min(size, length)
            blocks.append([size, used])
            self.reply_bytes += size
            length -= used

    def _index(self, offset: int) -> int:
        """The block holding the byte at ``offset`` (the tail past the end; the first
        block before it)."""
        blocks = self.blocks
        start = self.first
        for index, (size, _used) in enumerate(blocks):
            start += size  # every block but the tail is full
            if offset < start:
                return index
        return len(blocks) - 1

    def usage(self, next_byte: int) -> tuple[int, int]:
        """``oll`` and ``omem`` of a replica whose next byte to send is at ``next_byte``:
        from the block holding it (the tail's last byte once all is sent) to the tail."""
        blocks = self.blocks
        if not blocks:
            return 0, 0
        index = self._index(min(next_byte, self.end))
        count = len(blocks) - index
        return count, sum(size for size, _used in blocks[index:]) + REPL_NODE * count

    def trim(self, backlog_size: int, referenced: int) -> None:
        """incrementalTrimReplicationBacklog: free the first blocks while the rest hold
        more than ``backlog_size`` bytes and no replica references them (``referenced``:
        the lowest offset a replica's next byte is at)."""
        blocks = self.blocks
        stop = self._index(referenced) if referenced <= self.end else len(blocks) - 1
        while (stop > 0 and self.histlen > backlog_size
               and self.histlen - blocks[0][0] > backlog_size):
            size = blocks.pop(0)[0]
            self.histlen -= size
            self.reply_bytes -= size
            self.first += size
            stop -= 1

    @property
    def memory(self) -> int:
        """repl_buffer_mem: the blocks' allocations and their list nodes."""
        return self.reply_bytes + (REPL_BLOCK_HEADER + 24) * len(self.blocks)


# The last model of each client, extended while only pushes (or replies being gathered)
# were added since: a flood of messages to a client that does not read is modelled once.
# Beside it, the send under way (kept: a key by id could name a later payload) added but
# not written: the kernel taking more of it costs a copy of its blocks, not a look at its
# bytes again. The cron forgets the model of a client with nothing in its list.
_MODELS: weakref.WeakKeyDictionary[Session, tuple[tuple[object, ...], int, int, ReplyBuffers,
                                                   tuple[bytes, ReplyBuffers] | None]] = \
    weakref.WeakKeyDictionary()


def forget_model(session: Session) -> None:
    """Drop ``session``'s model (and the payload it keeps): its output fits its reply
    buffer again."""
    _MODELS.pop(session, None)


def reply_buffers(session: Session, connection: object | None = None) -> ReplyBuffers:
    """The reply buffer and list Redis would hold for what kvrepl holds for ``session``:
    the send under way (what the kernel took of it written), the replies the reactor
    holds until the end of its pass, those of the read being run, then the pushes queued
    (kvrepl.server's ``Connection.output_parts``)."""
    sending, unsent, held = None, 0, None
    out: Sequence[bytes] = ()
    if connection is not None:
        sending, unsent, held, out = connection.output_parts()  # type: ignore[attr-defined]
    pushes = session.pending_out
    key = (id(sending), unsent, id(held), id(out), session.reply_size, session.resp3)
    cached = _MODELS.get(session)
    base = None
    if cached is not None:
        old_key, counted_out, counted_pushes, model, base = cached
        if (base is not None and base[0] is sending and 0 < unsent < old_key[1]
                and old_key[2:] == key[2:]):
            # The kernel took more of the same send: writes free the head only (what is
            # left of the send is before anything added since), so the model is written on.
            model.write(old_key[1] - unsent)
            old_key = key
        if old_key == key:
            if counted_out == len(out) and counted_pushes <= len(pushes):
                _add_pushes(model, session, pushes[counted_pushes:])
                _MODELS[session] = (key, counted_out, len(pushes), model, base)
                return model
            if counted_pushes == 0 and not pushes and counted_out <= len(out):
                model.add_all(out[counted_out:])
                _MODELS[session] = (key, len(out), 0, model, base)
                return model
        if base is not None and (base[0] is not sending or old_key[4] != key[4]):
            base = None  # another send, or another reply buffer size
    if unsent and sending is not None and len(sending) >= unsent:
        if base is None:
            added = ReplyBuffers(session.reply_size)
            added.add_all((sending,))
            base = (sending, added)
        model = base[1].copy()
        model.write(len(sending) - unsent)
    else:
        base = None
        model = ReplyBuffers(session.reply_size)
        if unsent:  # ciphertext (TLS): the reply buffer went first, the rest in the list
            model.add(session.reply_size)
            model.write(session.reply_size)
            model.add(unsent)
    if held:
        model.add_all((held,))
    model.add_all(out)
    _add_pushes(model, session, pushes)
    _MODELS[session] = (key, len(out), len(pushes), model, base)
    return model


def _add_pushes(model: ReplyBuffers, session: Session, pushes: Sequence[object]) -> None:
    if pushes:
        resp3 = session.resp3
        model.add_all(encode(message, resp3) for message in pushes)


_LOOK_UP = object()


def output_shape(session: Session, pending: int,
                 connection: object | None = _LOOK_UP) -> tuple[int, int, int]:
    """``obl``, ``oll`` and ``omem`` for the ``pending`` bytes held for ``session``. Bytes
    that fit its reply buffer (``rbs``), with no send waiting for the kernel, are all in
    it (nothing modelled: a client that reads pays nothing for this); otherwise
    :func:`reply_buffers` says."""
    if not pending:
        return 0, 0, 0
    if connection is _LOOK_UP:
        connection = connection_of(session)
    if pending <= session.reply_size and not writing(connection) \
            and not getattr(connection, "deferred_held", 0):
        return pending, 0, 0
    model = reply_buffers(session, connection)
    return model.bufpos, len(model.blocks), model.omem


def reply_buffer_used(session: Session, pending: int,
                      connection: object | None = _LOOK_UP) -> int:
    """``obl`` (Redis's bufpos) for ``pending`` bytes held for ``session``."""
    return output_shape(session, pending, connection)[0]


def output_memory(session: Session, pending: int) -> int:
    """``omem`` for ``pending`` bytes held for ``session``: its reply list's blocks."""
    return output_shape(session, pending)[2]


def note_reply(session: Session, size: int) -> None:
    """A write of ``size`` reply bytes to ``session``: the most of its reply buffer Redis
    would have used (CLIENT LIST rbp, kvrepl.commands.cmem)."""
    if size > session.reply_peak:
        session.reply_peak = min(size, session.reply_size)


def limit_reached(holder: object, used: int, hard: int, soft: int,
                  seconds: int) -> str | None:
    """checkClientOutputBufferLimits for ``used`` bytes of output (``omem``): "hard" when
    it reaches the hard limit, "soft" when it has been at the soft one or over for longer
    than its seconds, else None. The time it first was is kept on ``holder``
    (``soft_limit_since``, a session or a replica link) in whole seconds of the clock, as
    server.unixtime counts it, and forgotten as soon as it is under again."""
    reached = "hard" if hard and used >= hard else None
    if soft and used >= soft:
        now = int(time.time())
        since = holder.soft_limit_since  # type: ignore[attr-defined]
        if since is None:
            holder.soft_limit_since = now  # type: ignore[attr-defined]
        elif now - since > seconds and reached is None:
            reached = "soft"
    else:
        holder.soft_limit_since = None  # type: ignore[attr-defined]
    return reached


def over_limits(session: Session, pending: int) -> bool:
    """checkClientOutputBufferLimits of a client (see :func:`limit_reached`)."""
    kind = limit_class(session)
    if kind is None:
        return False
    hard, soft, seconds = session.engine.config.client_output_buffer_limit[kind]
    if not (hard or soft):
        return False
    return limit_reached(session, output_memory(session, pending), hard, soft,
                         seconds) is not None


def close(session: Session, scheduled: bool) -> None:
    """Close a client over its limits, logged with Redis's two warnings: a limit met as
    a reply is added ("scheduled to be closed ASAP"), or found by the once-a-second check
    of every client ("closed"). Its connection ends now, nothing more is sent to it."""
    log_closing(session, scheduled)
    kill, session.on_kill = session.on_kill, None
    session.pending_out.clear()
    session.pending_size = 0
    if kill is not None:
        kill()


def log_closing(session: Session, scheduled: bool) -> None:
    """The warning for a client closed over its limits (see :func:`close`)."""
    from kvrepl.commands.client import client_info_line

    how = "scheduled to be closed ASAP" if scheduled else "closed"
    logger.warning("Client %s %s for overcoming of output buffer limits.",
                   client_info_line(session), how)


def check_limits(session: Session, pending: int) -> bool:
    """closeClientOnOutputBufferLimitReached from the cron: close
    ``session`` if it is over its limits (nothing beyond the reply buffer: no check).
    True when it was closed."""
    if output_memory(session, pending) and session.on_kill is not None \
            and over_limits(session, pending):
        close(session, scheduled=False)
        return True
    return False


def peak_slot(engine: Engine) -> int:
    """This second's slot of the recent peaks; the next one is started afresh."""
    slot = int(time.time()) % _PEAK_SLOTS
    engine.output_peaks[(slot + 1) % _PEAK_SLOTS] = 0
    engine.input_peaks[(slot + 1) % _PEAK_SLOTS] = 0
    return slot


def recent_max_input(engine: Engine) -> int:
    """INFO's ``client_recent_max_input_buffer``: the largest input memory (query buffer
    and arguments, kvrepl.commands.cmem) seen by the cron over the last 8 seconds."""
    return max(engine.input_peaks)


def recent_max(engine: Engine) -> int:
    """INFO's ``client_recent_max_output_buffer``: the largest ``omem`` seen by the cron
    over the last 8 seconds."""
    return max(engine.output_peaks)


def new_peaks() -> list[int]:
    """The engine's slots of recent ``omem`` peaks (ClientsPeakMemOutput), one a second."""
    return [0] * _PEAK_SLOTS
