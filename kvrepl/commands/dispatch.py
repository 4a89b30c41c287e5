"""The general lane: a run of pipelined requests dispatched with the session's checks done once.

For every request, :meth:`Engine.execute` runs processCommand's checks before ``call()``:
authentication, ACL, OOM, node state (MISCONF, READONLY, LOADING, BUSY, pause...), the
pub/sub context, a replica or MONITOR connection, MULTI, client-side caching. For the usual
client (authenticated by a user with every right, not in MULTI, not subscribed, replies on)
of a node in the usual state (no maxmemory, no min-replicas-to-write, nothing restricting
commands, no client-side caching), every one of them is a no-op. Here a run of requests
from such a client goes straight to ``call()``: the session's part is checked once per run
(:meth:`GeneralLane.open_for`), and the node's part, one flag that a command of the run
(or another client served while a script is busy) could change
(``Engine.general_lane_closed``), before each request.

Only commands that cannot change their own client's state enter the lane (what Redis flags
``noscript`` can: MULTI, AUTH, HELLO, SUBSCRIBE, CLIENT, MONITOR, REPLCONF...; scripts, which
carry that flag but run only commands without it, are let in), and never a container or a
protected command. Anything else, an unknown command, a wrong arity or a node state that
needs its check, ends the run: the general path then runs that request exactly as before.

While the fast lanes' gates are open as well (``keyspace.gates.open``: no WATCH, snapshot,
MONITOR, blocked client...), a request goes to ``Engine.call_quiet``, ``call()`` less the
hooks and observers that cannot act then. The embedded API (``Node.execute_command`` and the
data methods) sends its requests one at a time through :meth:`GeneralLane.run_one`.

SETBIT, GEOADD and XADD (``plain.HANDLED``) are run by the plain lane whenever it is open:
a run of them is handed to it from here, and only what it leaves goes to ``call()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kvrepl.commands.core import POSTPONED, Block
from kvrepl.commands.migrate import MigrateJob
from kvrepl.commands.plain import HANDLED_NAMES, plain_session
from kvrepl.commands.replication import StartReplication, WaitReplicas
from kvrepl.commands.shutdown import ShutdownWait
from kvrepl.protocol.replies import encode

if TYPE_CHECKING:
    from kvrepl.commands.core import Command, Engine, Session

# The replies a connection must await before answering (a blocking command, WAIT, SYNC...).
AWAITED = frozenset((Block, WaitReplicas, StartReplication, type(POSTPONED), ShutdownWait,
                     MigrateJob))
# Commands flagged noscript that never change their client's state: they run scripts,
# whose commands cannot (a script may not call a noscript command).
_SCRIPT_RUNNERS = frozenset(("eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"))
# run_one's answer when the general path must run the request.
MISSED = object()
# How many spellings of command names (as sent: "zadd", "ZADD", "Zadd"...) are remembered.
_NAMES_KEPT = 1024


def in_lane(command: Command) -> bool:
    """May ``command`` run in the general lane? (Not a container, not protected, and unable
    to change its own client's state.)"""
    return (command.handler is not None and not command.subcommands
            and not command.protected
            and ("noscript" not in command.spec.flags or command.name in _SCRIPT_RUNNERS))


class GeneralLane:
    """Runs of requests of one client through ``Engine.call`` (see the module's doc)."""

    __slots__ = ("engine", "_by_name")

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # name as sent -> the command, when it may run in the lane; None when it may not
        # (unknown names are not remembered: they could be anything).
        self._by_name: dict[bytes, Command | None] = {}

    @staticmethod
    def open_for(session: Session) -> bool:
        """Nothing about ``session`` needs a check (see :func:`plain_session`)."""
        return plain_session(session)

    def _resolve(self, name: bytes) -> Command | None:
        command = self.engine.table.get(name.lower())
        if command is None:
            return None
        found = command if in_lane(command) else None
        if len(self._by_name) < _NAMES_KEPT:
            self._by_name[name] = found
        return found

    def run_one(self, session: Session, argv: list[bytes]) -> object:
        """One request straight to ``call()`` (``Engine.call_quiet`` while the gates are
        open) when it may go there: the embedded API's (``Node.execute_command``, the data
        methods). ``MISSED``, having done nothing, when the general path must run it. The
        conditions of :meth:`run`; ``open_for(session)`` must be true."""
        cmd = self._by_name.get(argv[0], False)
        if cmd is False:
            cmd = self._resolve(argv[0])
        engine = self.engine
        if cmd is None or engine.general_lane_closed or engine.depth:
            return MISSED
        arity = cmd.arity
        if (arity != len(argv) if arity > 0 else len(argv) < -arity) \
                or not session.user.unrestricted:
            return MISSED
        if engine.keyspace.gates.open:
            return engine.call_quiet(session, cmd, argv)  # (no blocked client to wake)
        reply = engine.call(session, cmd, argv)
        if engine.keyspace.ready_keys and engine.on_ready_keys is not None:
            engine.on_ready_keys()
        return reply

    def run(self, session: Session, requests: list[list[bytes]], start: int,
            out: list[bytes]) -> tuple[int, list[bytes] | None, object]:
        """Run ``requests[start:]`` while each may go straight to ``call()``, appending the
        encoded replies to ``out``. Returns ``(position, argv, reply)``: ``position`` is
        the index of the first request not run; ``argv`` and ``reply``, when ``argv`` is
        not None, are those of the last request run (at ``position - 1``), whose reply
        the connection must handle itself (to await, after pushes, or before closing).
        ``open_for(session)`` must be true."""
        engine = self.engine
        call, quiet = engine.call, engine.call_quiet
        by_name = self._by_name
        keyspace = engine.keyspace
        gates = keyspace.gates
        plain = engine.plain_lane
        handled = HANDLED_NAMES
        resp3 = session.resp3
        position = start
        count = len(requests)
        while position < count:
            argv = requests[position]
            name = argv[0]
            if name in handled and gates.open:
                # The plain lane's writes (SETBIT, GEOADD, XADD): a run of them there, the
                # session being as plain as that lane needs too (plain_session).
                taken = plain.run(session, requests, position, out)
                if taken != position:
                    position = taken
                    continue
            cmd = by_name.get(name, False)
            if cmd is False:
                cmd = self._resolve(name)
            if cmd is None:
                break
            arity = cmd.arity
            if (arity != len(argv) if arity > 0 else len(argv) < -arity) or (
                    engine.general_lane_closed or not session.user.unrestricted
                    or not session.authenticated or session.closing):
                break
            if gates.open and not engine.depth:  # nothing call() would skip can act,
                reply = quiet(session, cmd, argv)  # nor any client wait for a key
            else:
                reply = call(session, cmd, argv)
                if keyspace.ready_keys and engine.on_ready_keys is not None:
                    engine.on_ready_keys()
            position += 1
            if type(reply) in AWAITED or session.pending_out or session.after_reply \
                    or session.closing:
                return position, argv, reply
            out.append(encode(reply, resp3))
        return position, None, None
