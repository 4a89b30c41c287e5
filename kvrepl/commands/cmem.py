"""A client's memory as CLIENT LIST shows it (networking.c catClientInfoString and
getClientMemoryUsage, multi.c multiStateMemOverhead, Redis 7.0), measured when asked:
nothing here runs per request.

- ``qbuf``: the request bytes received and not yet run (the parser's buffer: a request cut
  short, a big argument on its way, a pipeline's tail). Redis keeps the running request in
  its query buffer until it returns, so the caller's own request counts too.
- ``argv-mem``: the argument bytes of the command being run (the caller's, or a blocked
  client's), or of a request parsed in part (its arguments so far).
- ``multi-mem``: the queued MULTI commands, each argument's bytes plus one pointer, as
  Redis counts them.
- ``obl``/``oll``/``omem``: the reply bytes held for a client (kvrepl.commands.obuf); for a
  replica link, the stream bytes held for it (kvrepl.replication.master), which Redis keeps
  in its shared replication buffer, not in the client's reply buffer (so ``obl`` is 0).
- ``tot-mem``: all of the above, argument pointers included.

What kvrepl has no counterpart for stays 0 (``qbuf-free``: no room is reserved ahead of the
bytes). ``rbs`` is the 16 KB reply buffer that ``obl`` fills, ``rbp`` the most of it seen
in use by the once-a-second check (kvrepl.commands.obuf) in its last 5 seconds, or now:
Redis notes each reply, kvrepl does not, so a peak between two checks is missed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kvrepl.commands import obuf
from kvrepl.protocol.parser import request_size

if TYPE_CHECKING:
    from kvrepl.commands.core import Session

POINTER = 8  # sizeof(robj*): Redis adds one per argument to argv-mem's share of tot-mem


@dataclass
class ClientMemory:
    """One client's CLIENT LIST memory fields."""

    qbuf: int = 0
    argv_mem: int = 0
    argc: int = 0
    multi_mem: int = 0
    rbp: int = 0
    obl: int = 0
    oll: int = 0
    omem: int = 0

    @property
    def total(self) -> int:
        """``tot-mem``: every part kvrepl knows of."""
        return (self.qbuf + self.argv_mem + POINTER * self.argc + self.multi_mem
                + self.obl + self.omem)


def argv_memory(argv: list[bytes]) -> int:
    """argv_len_sum: the bytes of the arguments, without their headers."""
    return sum(map(len, argv))


def multi_memory(session: Session) -> int:
    """mstate.argv_len_sums: each queued command's argument bytes and pointers."""
    queued = session.multi
    if not queued:
        return 0
    return sum(argv_memory(argv) + POINTER * len(argv) for _, argv in queued)


def measure(session: Session, running: list[bytes] | None = None) -> ClientMemory:
    """``session``'s memory; ``running`` is the command it is running now, if any."""
    mem = ClientMemory(multi_mem=multi_memory(session))
    argv = running
    parser = obuf.parser_of(session)
    if parser is not None:
        mem.qbuf = parser.buffered
        if running is not None:
            # Redis trims its query buffer once the command returns: it still holds it
            mem.qbuf += request_size(running)
        else:
            argv = parser.partial_request()
    if argv is None and session.blocked is not None:
        argv = session.blocked.argv  # a blocked client holds its command until served
    if argv:
        mem.argv_mem = argv_memory(argv)
        mem.argc = len(argv)
    link = session.replica_link
    if link is not None:
        mem.omem = session.engine.replication.held_for(link)
    else:
        pending = obuf.pending_bytes(session)
        mem.omem = obuf.output_memory(pending)
        mem.obl = pending - mem.omem
        mem.rbp = max(session.reply_peak, mem.obl)
    mem.oll = 1 if mem.omem else 0
    return mem
