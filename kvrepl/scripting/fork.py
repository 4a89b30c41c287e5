"""SCRIPT DEBUG YES: the debugging session on a copy of the node, as Redis's forked child.

For a YES session Redis forks (``eval.c``, ``ldbStartSession``): the child debugs the script
on its copy of the dataset and of the Lua state, sends the last logs and the EVAL's reply,
and exits, so whatever the script wrote is gone and nothing of it was propagated; the parent
frees the client on its side at once (``freeClientAsync``: no reply, gone from CLIENT LIST)
and goes on serving every other client meanwhile. SHUTDOWN kills the children
(``ldbKillForkedSessions``).

kvrepl does not fork. :func:`fork_engine` makes the child: an :class:`Engine` of its own over
a point-in-time copy of the keyspace (:func:`kvrepl.store.clone.clone_keyspace`), of the
config, of the ACL users and of the node states a script's checks read (out of memory,
read-only replica, failed save...), with no server, replication, AOF, subscribers or disk
writes, and a Lua runtime of its own holding the script cache. :class:`ForkedSession` runs
the session there in a worker thread the server starts (``Server.start_forked_session``),
over its own duplicate of the client's socket. The thread shares nothing with the node that
either changes: only ``bytes`` values, command specs and config values, all immutable.

What else the child inherits, as Redis's does: the good replicas counted at the fork
(min-replicas-to-write), the subscriptions (PUBLISH counts them, delivers to none but the
debugging client's own), and the client's output not sent yet, written at the end before
the EVAL's reply (replies of the same read, EXEC's header and the replies before the EVAL).
"""

from __future__ import annotations

from time import perf_counter
from typing import TYPE_CHECKING

from kvrepl import gc_policy
from kvrepl.commands.core import Engine, Session
from kvrepl.config import Config
from kvrepl.errors import ReplyError
from kvrepl.log import logger
from kvrepl.protocol.replies import Raw, encode
from kvrepl.scripting.runtime import sha1hex
from kvrepl.scripting.state import NO_DEBUG_CHANNEL, Script, ScriptingState, scripting
from kvrepl.store.clone import clone_keyspace

if TYPE_CHECKING:
    from kvrepl.scripting.ldb import Channel

# The caller's attributes its copy keeps (what CLIENT INFO lines, ACL checks and replies read).
_CLIENT_KEPT = ("resp3", "name", "authenticated", "addr", "laddr", "over_network", "created",
                "last_interaction", "last_command", "lib_name", "lib_ver", "kind")


def fork_engine(parent: Engine) -> Engine:
    """The node as it is now, in a copy that shares nothing either side changes."""
    config = Config.__new__(Config)
    config.__dict__.update(parent.config.__dict__)
    config.listeners = []
    config.appliers = []
    config.user_lines = []  # (the users are copied below, not made again from the config)
    config.aclfile = ""
    config.appendonly = False  # the copy never opens the AOF
    if not (parent.bgsave_failed and config.stop_writes_on_bgsave_error):
        # No dump either (FLUSHALL saves with save points; Redis's child would write its
        # emptied dataset over the node's dump). With a failed save and
        # stop-writes-on-bgsave-error every write of the session is refused anyway (MISCONF),
        # as long as the save points stay.
        config.save = ()
    child = Engine(config, clone_keyspace(parent.keyspace))
    acl = child.acl
    acl.users = {name: user.copy() for name, user in parent.acl.users.items()}
    acl.default = acl.users[b"default"]
    child.read_only = parent.read_only
    child.masterdown = parent.masterdown
    child.bgsave_failed = parent.bgsave_failed
    child.aof_error = parent.aof_error
    # processCommand evicted and measured memory before the EVAL ran: the script's OOM
    # checks (scriptVerifyOOM) read that state, inherited by the child.
    child.out_of_memory = parent.out_of_memory
    child.dirty = parent.dirty
    replication = parent.replication
    if replication is not None and not parent.read_only_role():
        child.forked_good_replicas = replication.good_replicas()  # type: ignore[attr-defined]
    return child


def fork_client(caller: Session, child: Engine) -> Session:
    """The debugging client as the child sees it: same id, db, protocol and user."""
    session = Session(child, client_id=caller.id)
    for name in _CLIENT_KEPT:
        setattr(session, name, getattr(caller, name))
    session.db = child.keyspace.dbs[caller.db.id]
    session.user = child.acl.users.get(caller.user.name) or caller.user.copy()
    return session


class _Unsent:
    """Another client's subscription, as the child sees it: PUBLISH and PUBSUB count it,
    and what is pushed to it goes nowhere (Redis's child buffers it, then exits)."""

    __slots__ = ()

    def push(self, message: object) -> None:
        pass


_UNSENT = _Unsent()


def fork_subscribers(parent: Engine, child: Engine, caller: Session, copy: Session) -> None:
    """The parent's subscriptions in the child: the caller's own reach its copy (its
    messages go out with the EVAL's reply, as from Redis's child), the others nowhere."""
    for name in ("pubsub_channels", "pubsub_patterns", "pubsub_shard_channels"):
        setattr(child, name, {
            channel: {client_id: copy if session is caller else _UNSENT
                      for client_id, session in sessions.items()}
            for channel, sessions in getattr(parent, name).items()})


def fork_scripting(parent: ScriptingState, child: Engine) -> ScriptingState:
    """The child's scripting state: a Lua runtime of its own (lupa runtimes are not shared
    between threads), the script cache's bodies and flags, and the random generator's state.
    The cached scripts are not compiled again: the only one a session can run is the one it
    debugs (EVALSHA is refused inside scripts), compiled by the session itself."""
    state = child.scripting = ScriptingState(child)
    state.lua.random.state = parent.lua.random.state
    state.scripts = {sha: Script(script.body, script.flags, None, script.name, script.declared)
                     for sha, script in parent.scripts.items()}
    return state


class ForkedSession:
    """One YES session: the child made at fork time, run later by :meth:`run`."""

    def __init__(self, parent: Engine, caller: Session, argv: list[bytes], numkeys: int,
                 read_only: bool) -> None:
        started = perf_counter()
        self.engine = fork_engine(parent)
        self.caller = fork_client(caller, self.engine)
        fork_subscribers(parent, self.engine, caller, self.caller)
        # The copy is a web of cycles, garbage once the session ends: not to be frozen.
        gc_policy.hold_until_collected(self.engine)
        self.scripting = fork_scripting(scripting(parent), self.engine)
        # The debugged script is compiled in the child's runtime, even when cached.
        self.scripting.scripts.pop(sha1hex(argv[1]), None)
        self.argv = argv
        self.numkeys = numkeys
        self.read_only = read_only
        # What the client's output buffer holds at the fork and the child sends before the
        # EVAL's reply (its writeToClient at the session's end): the replies of the same
        # read not sent yet, given by the server, then EXEC's header and earlier replies.
        self.unsent: list[bytes] = []
        progress = caller.exec_progress
        if progress is not None:
            count, replies = progress
            self.unsent_exec = b"*%d\r\n" % count + b"".join(
                encode(reply, caller.resp3) for reply in replies)
        else:
            self.unsent_exec = b""
        logger.warning("Redis forked for debugging eval (%d keys copied in %.1f ms)",
                       parent.keyspace.dbsize(), (perf_counter() - started) * 1000)

    def run(self, channel: Channel) -> None:
        """The session, in its worker thread: the debugging, the last logs, the EVAL's
        reply (writeToClient), then the end of the connection (the child exits)."""
        try:
            try:
                reply = self.scripting.debug_session(self.caller, self.argv, self.numkeys,
                                                     self.read_only, channel)
            except ReplyError as err:
                reply = err
            except Exception as err:  # a bug must end this session only, as it would the child
                logger.exception("Error in a Lua debugging session")
                reply = ReplyError(f"ERR internal error running the debugged script: {err}")
            if not channel.killed:
                channel.write(self._last_output(reply))
        finally:
            channel.close()
            # The child's exit. The data goes now, by reference counting; the rest of the
            # copy is full of cycles, for the collector (no gc_policy freeze catches them
            # meanwhile: hold_until_collected).
            self.engine.keyspace.flushall()
            self.scripting.scripts.clear()
            logger.warning("Lua debugging session child exiting")


    def _last_output(self, reply: object) -> bytes:
        """What the child's writeToClient sends: the output buffer inherited, then the
        messages the script published to its own client, the reply, what is due after it."""
        caller = self.caller
        resp3 = caller.resp3
        parts = [*self.unsent, self.unsent_exec]
        parts.extend(encode(message, resp3) for message in caller.pending_out)
        parts.append(encode(reply, resp3))
        parts.extend(encode(message, resp3) for message in caller.after_reply)
        return b"".join(parts)


def fork_session(parent: Engine, caller: Session, argv: list[bytes], numkeys: int,
                 read_only: bool) -> object:
    """SCRIPT DEBUG YES's EVAL on the node: fork the session off and forget the client (the
    parent's ``freeClientAsync``); the reply is the child's to send."""
    forked = ForkedSession(parent, caller, argv, numkeys, read_only)
    start = getattr(parent.server, "start_forked_session", None)
    if start is None or not start(caller, forked):
        raise ReplyError(NO_DEBUG_CHANNEL)
    parent.close_session(caller)
    caller.reply_off = True  # this side writes nothing more to it (nor EXEC's reply)
    return Raw(b"")
