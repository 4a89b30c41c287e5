"""``node.get``: GET on the embedded API's session without the general dispatch.

A read of a string key (``bytes``, or the ``bytearray`` of a string edited in place, whose
bytes GET answers) that has no TTL (or one that is not due) is one dictionary lookup plus
what the general path would record for it: ``keyspace_hits``/``keyspace_misses``,
``INFO commandstats`` calls, ``total_commands_processed`` and the key's LRU access time.
Everything else goes the general way, which then runs exactly as before: a key whose TTL
is due (lazy expiry deletes it and propagates its DEL in order), a value of another type
(WRONGTYPE), an argument that is not bytes (converted, or DataError), and any state in
which GET would do more or answer otherwise (see :func:`direct_get`).

The counters are kept in one place instead of four: a hit appends its key to its
database's ``reads`` (which records its access time too, see
:class:`~kvrepl.store.database.Database`; the database's ``record`` says when the hit is
the SAMPLE-th, to be timed), a miss adds one to the engine's
:class:`~kvrepl.commands.tally.DirectTally`, which folds both into the public counters where
those are read (INFO, CONFIG RESETSTAT); one call in :data:`SAMPLE` is timed and stands for
the others (see that module).

What a call reads is bound, not loaded each time (each load a bytecode, ~25 machine
instructions): the session's database's ``data.get``, ``expires`` and ``record``, or a
lookup that finds nothing (and so sends every call the general way) while a read gate is
closed or the session is in MULTI; they are the globals of the call's own namespace (see
:func:`_hit`), and a database without TTLs is read by code that does not look at them.
Whatever changes one of those binds them again: the session's SELECT and MULTI state
(:meth:`~kvrepl.commands.core.Session.read_state_changed`), a database's dicts replaced
(FLUSHDB/FLUSHALL, SWAPDB, a load or full sync), its first TTL
(:meth:`~kvrepl.store.database.Database.set_expire`, a merged load) and the read gates
opening or closing (:meth:`~kvrepl.store.database.Keyspace.read_state_changed`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from time import perf_counter
from types import FunctionType
from typing import TYPE_CHECKING, cast

from kvrepl.commands.tally import SAMPLE

if TYPE_CHECKING:
    from kvrepl.commands.core import Session
    from kvrepl.node import Node
    from kvrepl.store.database import Keyspace

__all__ = ["SAMPLE", "direct_get"]

_SHUT: Callable[[bytes], object] = {}.get
"""The lookup a direct GET binds while it must not answer (a read gate closed, MULTI):
every call then finds nothing, and the out-of-line path sends it the general way."""


def direct_get(node: Node, general: Callable[[object], object],
               session: Session | None = None) -> Callable[[object], object]:
    """The GET of ``node``'s data methods (``session`` None: the node's shared one), or of
    an in-process redis-py connection's ``session``; ``general`` is GET the general way
    (what the call returns when this path steps aside).

    The general path runs instead while a gate that reads meet is closed
    (``keyspace.gates.read_open``, :mod:`kvrepl.store.gates`: keyspace notifications of
    GET's classes or client-side caching, a MONITOR, ``maxmemory``, an LFU policy,
    LOADING, a busy script, MASTERDOWN without stale reads), or MULTI is on the session;
    for a connection's session also pub/sub or MONITOR mode, pushes waiting to be read, a
    user not authenticated or with restricted rights, CLIENT REPLY OFF/SKIP, a closing
    client.
    """
    if session is None:
        return _direct_get(node, general, node._session)
    read = _direct_get(node, general, session)

    def get(name: bytes) -> object:
        if (session.pending_out or session.channels or session.patterns
                or session.shard_channels or session.monitor or session.reply_off
                or session.reply_skip or session.closing or not session.authenticated
                or not session.user.unrestricted):
            return general(name)
        value = read(name)
        session.last_command = "get"  # as the general path sets it, if it ran
        return value

    return get


# -- the hot path ----------------------------------------------------------------------------
# Each direct GET is a function of its own running a copy of the code of _hit (or of
# _hit_without_ttls, below), whose globals are a namespace of its own: the names below,
# which bind() sets to the session's read state. A name is then one LOAD_GLOBAL_MODULE,
# which stays specialised (bind() replaces values, never the namespace's keys; and each
# function has its own copy of the code, so its own specialisations), where a closure's
# names cost a LOAD_DEREF each and a copy of every cell at each call (COPY_FREE_VARS): 87
# instructions a hit of 1,878 (callgrind). This module's own values of these names are
# placeholders that say their types: _hit itself is never called.
_lookup: Callable[[bytes], object] = _SHUT
_expires: dict[bytes, int] = {}
_record: Iterator[Callable[[bytes], bool | None]] = iter(())
_keyspace: Keyspace = cast("Keyspace", None)
_other: Callable[[bytes, object], object] = cast("Callable[[bytes, object], object]", None)


# The hot path is a hit on a string without a TTL: each step below is paid by every call,
# so all else is out of line in _other, and the hit is recorded (counted, its access time
# kept: Database.reads) and the timed call chosen in one step (Database.record). A hit on a
# key with a TTL costs one lookup in ``expires`` and one compare with the clock more:
# Keyspace.now_ms() outside a command, without its call and int() (a whole number of ms
# compares with the clock's float ms as with its whole ms). ``value.__class__`` is a
# LOAD_ATTR_SLOT, 60 instructions fewer than ``type(value)`` (PRECALL_NO_KW_TYPE_1).
def _hit(name: bytes) -> object:
    try:
        value = _lookup(name)
        if value.__class__ is bytes:
            if name not in _expires:
                if next(_record)(name) is None:
                    return value
            elif _expires[name] > (_keyspace.now_ms() if _keyspace.frozen
                                   else _keyspace.clock() * 1000) \
                    and next(_record)(name) is None:
                return value
    except TypeError:  # unhashable (only the lookup can raise it)
        value = None
    return _other(name, value)


# _hit in a database where no key has a TTL (``expires`` empty when bound: the database's
# first TTL binds again, Database.set_expire), as Redis's getExpire looks at the size of
# ``expires`` first: no lookup in it, 220 instructions fewer a hit (callgrind).
def _hit_without_ttls(name: bytes) -> object:
    try:
        value = _lookup(name)
        if value.__class__ is bytes and next(_record)(name) is None:
            return value
    except TypeError:  # unhashable (only the lookup can raise it)
        value = None
    return _other(name, value)


def _direct_get(node: Node, general: Callable[[object], object],
                session: Session) -> Callable[[object], object]:
    """:func:`direct_get` without a connection's own checks: the node's GET as it is, a
    connection's inside them (so the node's calls do not pay for them)."""
    engine = node.engine
    keyspace = engine.keyspace
    gates = keyspace.gates
    tally = engine.direct_tally
    ticks = tally.ticks
    command = engine.table[b"get"]
    now_ms = keyspace.now_ms
    # The read state, bound here rather than loaded on each call (each load a bytecode,
    # about 25 machine instructions): the session's database's lookup, TTLs and hit
    # record, or _SHUT as the lookup while GET must go the general way (a read gate closed,
    # MULTI). bind() finds it again wherever it can change: the session's SELECT and MULTI
    # state (Session.read_state_changed), a database's dicts replaced or the read gates
    # opening or closing (Keyspace.read_state_changed). The hot path reads it as its
    # globals (see _hit), the out-of-line paths from there too: one copy of the state.
    state: dict[str, object] = {
        "_lookup": _SHUT, "_expires": {}, "_record": iter(()), "_keyspace": keyspace,
        "next": next, "bytes": bytes, "TypeError": TypeError, "__name__": __name__}

    def bind() -> None:
        db = session.db
        state["_lookup"] = db.data.get if session.multi is None and gates.read_open \
            else _SHUT
        state["_expires"] = db.expires
        state["_record"] = db.record
        get.__code__ = with_ttls if db.expires else without_ttls

    def timed(name: bytes) -> object:
        """GET ``name`` again, timed, its time standing for the SAMPLE calls since the
        previous sample of its kind (hits of its database: ``Database.record``; misses:
        the tally's ticks). The run again is the one counted and recorded."""
        began = perf_counter()
        value = get(name)
        usec = (perf_counter() - began) * 1e6
        command.usec += usec * SAMPLE
        if engine.latency_tracking:
            command.record_latency(usec, SAMPLE)
        if usec >= engine.slow_floor:
            engine.observe_slow(session, command, [b"GET", name], usec)
        return value

    def other(name: bytes, value: object) -> object:
        """All but a hit on a ``bytes`` value (without a TTL, or one not due), and that
        hit when its record says it is the one to time: a key whose TTL is due, a string
        edited in place (a bytearray, whose bytes GET answers), a miss, the path shut,
        another type (WRONGTYPE: the general way)."""
        expires: dict[bytes, int] = state["_expires"]  # type: ignore[assignment]
        if value.__class__ is bytes:
            if name in expires and expires[name] <= now_ms():
                return general(name)  # lazy expiry: deleted, DEL propagated, in order
            return timed(name)  # a hit whose record step was the SAMPLE-th: timed
        if value is None:
            if state["_lookup"] is _SHUT or type(name) is not bytes:
                # A read gate closed or MULTI (the shut lookup finds nothing), or a str or
                # int argument, or unhashable: converted there, or redis-py's DataError.
                return general(name)
            if next(ticks):
                return timed(name)
            tally.misses += 1
            return None
        if value.__class__ is not bytearray:
            return general(name)  # WRONGTYPE, answered the general way
        if name in expires and expires[name] <= now_ms():
            return general(name)
        value = bytes(value)
        if next(state["_record"])(name) is None:  # type: ignore[call-overload]
            return value
        return timed(name)

    state["_other"] = other
    # Copies of the code: specialised for this namespace alone.
    with_ttls = _hit.__code__.replace(co_name="get")
    without_ttls = _hit_without_ttls.__code__.replace(co_name="get")
    get = FunctionType(with_ttls, state, "get")
    get.__qualname__ = "_direct_get.<locals>.get"  # (the code's own name is _hit's)
    get.__annotations__ = dict(_hit.__annotations__)
    bind()
    session.read_binds.append(bind)
    keyspace.read_binds.add(bind)
    return get
