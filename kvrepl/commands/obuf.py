"""Client output buffers as Redis 7.0 accounts for them and limits them (networking.c:
getClientOutputBufferMemoryUsage, checkClientOutputBufferLimits,
closeClientOnOutputBufferLimitReached; server.c: clientsCronTrackExpansiveClients).

A client's *pending* bytes are the replies and pushes kvrepl holds for it that the kernel
has not taken: the pushes queued on its session (``Session.pending_size``) and what its
connection holds (``Session.held_output``: the replies of the read being run, those the
reactor keeps until the end of its pass, and a send the kernel would not take at once).
Redis writes the first bytes of a client's replies into its reply buffer (16 KB at first,
resized by the cron: kvrepl.commands.cmem), that CLIENT LIST shows as
``obl`` and that the limits never count; what is beyond it is the reply list, ``omem``,
which the limits bound. kvrepl reports its pending bytes the same way.

Sans-IO: sessions and numbers in, decisions out; the server closes who must be closed.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from kvrepl.log import logger

if TYPE_CHECKING:
    from kvrepl.commands.core import Engine, Session

STATIC_BUFFER = 16 * 1024  # PROTO_REPLY_CHUNK_BYTES: a client's reply buffer at first
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


_LOOK_UP = object()


def reply_buffer_used(session: Session, pending: int,
                      connection: object | None = _LOOK_UP) -> int:
    """``obl`` (Redis's bufpos) for ``pending`` bytes held for ``session``: what fits its
    reply buffer (``rbs``); nothing once a write waits for the kernel, which took the
    reply buffer's bytes first (Redis writes it first, and while its reply list holds
    anything new replies go there)."""
    if not pending:
        return 0
    if writing(connection_of(session) if connection is _LOOK_UP else connection):
        return 0
    return min(pending, session.reply_size)


def output_memory(session: Session, pending: int) -> int:
    """``omem`` for ``pending`` bytes held for ``session``: what is not in its reply
    buffer."""
    return pending - reply_buffer_used(session, pending)


def note_reply(session: Session, size: int) -> None:
    """A write of ``size`` reply bytes to ``session``: the most of its reply buffer Redis
    would have used (CLIENT LIST rbp, kvrepl.commands.cmem)."""
    if size > session.reply_peak:
        session.reply_peak = min(size, session.reply_size)


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
    used = output_memory(session, pending)
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
