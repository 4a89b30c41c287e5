"""Client output buffers as Redis 7.0 accounts for them and limits them (networking.c:
getClientOutputBufferMemoryUsage, checkClientOutputBufferLimits,
closeClientOnOutputBufferLimitReached; server.c: clientsCronTrackExpansiveClients).

A client's *pending* bytes are the replies and pushes kvrepl holds for it that the kernel
has not taken: the pushes queued on its session (``Session.pending_size``) and what its
connection holds (``Session.held_output``: the replies of the read being run, those the
reactor keeps until the end of its pass, and a send the kernel would not take at once).
Redis writes the first 16 KB of a client's replies into a static buffer that CLIENT LIST
shows as ``obl`` and that the limits never count; what is beyond it is the reply list,
``omem``, which the limits bound. kvrepl reports its pending bytes the same way.

Sans-IO: sessions and numbers in, decisions out; the server closes who must be closed.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from kvrepl.log import logger

if TYPE_CHECKING:
    from kvrepl.commands.core import Engine, Session
    from kvrepl.protocol.parser import RequestParser

STATIC_BUFFER = 16 * 1024  # PROTO_REPLY_CHUNK_BYTES: a client's static reply buffer
_PEAK_SLOTS = 8  # CLIENTS_PEAK_MEM_USAGE_SLOTS: "recent" is the last 8 seconds
_REPLY_PEAK_RESET = 5  # clientsCronResizeOutputBuffer: buf_peak starts afresh every 5 s


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


def output_memory(pending: int) -> int:
    """``omem`` for ``pending`` bytes: what does not fit the 16 KB static buffer."""
    return pending - STATIC_BUFFER if pending > STATIC_BUFFER else 0


def over_limits(session: Session, pending: int) -> bool:
    """checkClientOutputBufferLimits: past the hard limit, or over the soft one for
    longer than its seconds (the time it went over is kept on the session, and forgotten
    as soon as it is under again)."""
    kind = limit_class(session)
    if kind is None:
        return False
    hard, soft, seconds = session.engine.config.client_output_buffer_limit[kind]
    if not (hard or soft):
        return False
    used = output_memory(pending)
    if hard and used >= hard:
        return True
    if soft and used >= soft:
        now = time.monotonic()
        since = session.soft_limit_since
        if since is None:
            session.soft_limit_since = now
            return False
        return now - since > seconds
    session.soft_limit_since = None
    return False


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


def check_all(engine: Engine) -> int:
    """clientsCron's share: note each client's ``omem`` for INFO's
    ``client_recent_max_output_buffer``, and close those over their limits (the soft
    limit of a client that receives nothing more is met here). Returns how many it
    closed."""
    peaks = engine.output_peaks
    inputs = engine.input_peaks
    second = int(time.time())
    slot = second % _PEAK_SLOTS
    peaks[(slot + 1) % _PEAK_SLOTS] = 0  # the next second starts afresh
    inputs[(slot + 1) % _PEAK_SLOTS] = 0
    reset = second % _REPLY_PEAK_RESET == 0
    closed = 0
    for session in list(engine.sessions.values()):
        pending = pending_bytes(session)
        omem = output_memory(pending)
        peaks[slot] = max(peaks[slot], omem)
        inputs[slot] = max(inputs[slot], query_bytes(session))
        obl = pending - omem
        session.reply_peak = obl if reset else max(session.reply_peak, obl)
        # closeClientOnOutputBufferLimitReached: nothing beyond the static buffer, no check
        if output_memory(pending) and session.on_kill is not None \
                and over_limits(session, pending):
            close(session, scheduled=False)
            closed += 1
    return closed


def parser_of(session: Session) -> RequestParser | None:
    """The request parser of ``session``'s connection (None for an embedded session)."""
    connections = getattr(session.engine.server, "connections", None)
    return getattr(connections.get(session.id) if connections else None, "parser", None)


def query_bytes(session: Session) -> int:
    """The request bytes received from ``session`` and not yet run (CLIENT LIST qbuf)."""
    parser = parser_of(session)
    return parser.buffered if parser is not None else 0


def recent_max_input(engine: Engine) -> int:
    """INFO's ``client_recent_max_input_buffer``: the largest query buffer seen by the
    once-a-second check over the last 8 seconds."""
    return max(engine.input_peaks)


def recent_max(engine: Engine) -> int:
    """INFO's ``client_recent_max_output_buffer``: the largest ``omem`` seen by the
    once-a-second check over the last 8 seconds."""
    return max(engine.output_peaks)


def clients_memory(engine: Engine) -> int:
    """MEMORY STATS ``clients.normal`` (INFO's ``mem_clients_normal``): the reply bytes
    held for normal and pub/sub clients."""
    return sum(pending_bytes(s) for s in engine.sessions.values()
               if not (s.is_master or (s.is_replica and not s.monitor)))


def new_peaks() -> list[int]:
    """The engine's slots of recent ``omem`` peaks (ClientsPeakMemOutput), one a second."""
    return [0] * _PEAK_SLOTS
