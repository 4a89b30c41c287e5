"""The plain lane: runs of GET, SET-without-options, PFADD of one element to a HyperLogLog
and PFCOUNT of one HyperLogLog whose cached count is valid, executed back to back.

Most traffic a cache sees (and all of what ``redis-benchmark -t set,get`` sends) is GET and
plain SET from clients with nothing special about them. For those, the general path's work
per command (command lookup, processCommand's checks, ``call()``'s bookkeeping, reply
encoding through the generic encoder) costs more than the command itself. Here a run of
such requests is executed in one loop with the checks done once for the whole run: the
lane opens only when no check could refuse or change anything (see :meth:`PlainLane.open_for`),
and leaves every request it is not sure about (another command, options, a key with a TTL, a
value of another type) to the general path, which then runs it exactly as before.

PFADD and PFCOUNT are here because ``redis-benchmark ... PFADD hll __rand_int__`` (and
PFCOUNT) is how HyperLogLog throughput is measured, and the general path costs several times
the register update. The lane takes, on a key without a TTL, one-element PFADDs to a dense
HLL or to a ``raw`` sparse one (an update of the sparse opcodes and the promotion to dense
included), and those to one key that follow each other as one call,
:func:`~kvrepl.store.hyperloglog.add_each`: the general path's own updates, with the
elements hashed together; and the count of one HLL of more than 44 bytes (a shorter one may
need to be made ``raw`` first) from its valid cached cardinality, or, for a dense one kept as
a ``bytearray``, computed and written back into its header in place (dirty, propagated).
The rest (a new key, a short HLL stored by SET, a corrupt one, another count to compute,
errors) goes to the general path, ``commands/hyperloglog.py``.

SETBIT, GEOADD and XADD (``HANDLED``) are here because their ``redis-benchmark`` forms cost
as much in the general path's bookkeeping (``call()``: clocks, counters, hooks per request)
as in their own work. For them the lane runs the command's own handler, so nothing of their
logic is written twice, and does ``call()``'s part per run as for the others: commandstats,
the dirty counter, the memory estimate (the key measured again when the command changed it),
propagation (as sent, or as what the handler rewrote itself into: GEOADD's ZADD, XADD's ID),
errors counted as ``call()`` counts them (``Engine.failed``). They fire their own keyspace
events, so no event class of theirs closes the lane. A key with a TTL, a restricted ACL user
or a wrong arity leaves the request to the general path. The connection routes a read by its
first request, and routes these to the general lane, which hands runs of them to this one
while it is open (``GeneralLane.run``): while it is closed (a blocked client, WATCH, a
snapshot...) they keep the general lane instead of falling to ``Engine.execute``.

What the general path would have recorded is recorded here too: the dirty counter,
``INFO commandstats`` calls and time, the client's last command, the key's access time,
the memory estimate (a SET over a value of another type goes to the general path; a string
SETBIT & co. changed in place, a ``bytearray``, is a string here too: GET sends a copy of
it, SET replaces it and its separately kept estimate as ``Database.set`` does), and
each SET handed to the propagation listeners (replication, ``changes()``). With
``maxmemory`` set the lane stays closed: every command must first evict.

The lane times runs, not commands (a clock read per command would cost more than the
command): each command of a run is taken to have lasted the run's average, for the
commandstats time, LATENCY HISTOGRAM and the slow log / latency monitor. A run shorter
than their thresholds proves no command in it reached them; a longer one logs the
commands whose average does.
"""

from __future__ import annotations

from itertools import islice
from operator import itemgetter
from time import perf_counter
from typing import TYPE_CHECKING

from kvrepl.commands.tally import MASK, SAMPLE
from kvrepl.notify import KEY_MISS, NEW, STRING
from kvrepl.protocol.replies import encode
from kvrepl.replication.stream import encode_each_with
from kvrepl.store.encoding import string_encoding
from kvrepl.store.hyperloglog import (
    CARDINALITY,
    DENSE_MAGIC,
    DENSE_SIZE,
    SPARSE_MAGIC,
    add_each,
    dense_in_place,
    is_hll,
    set_cardinality,
)
from kvrepl.store.hyperloglog import count as hll_count
from kvrepl.store.memory import STRING_ENTRY, string_entry_size

if TYPE_CHECKING:
    from collections.abc import Callable

    from kvrepl.acl import User
    from kvrepl.commands.core import Command, Engine, Session
    from kvrepl.store import Database

_OK = b"+OK\r\n"
_CRLF = b"\r\n"
_BULK_HEADS = [b"$%d\r\n" % length for length in range(1024)]  # "$<len>\r\n" of small values
_NIL = (b"$-1\r\n", b"_\r\n")  # by session.resp3
_GET = frozenset((b"GET", b"get", b"Get"))
_SET = frozenset((b"SET", b"set", b"Set"))
_PFADD = frozenset((b"PFADD", b"pfadd", b"PfAdd", b"Pfadd"))
_PFCOUNT = frozenset((b"PFCOUNT", b"pfcount", b"PfCount", b"Pfcount"))
# Writes whose own handlers the lane runs, doing call()'s bookkeeping per run (see
# PlainLane.run): each touches only its first key, changes nothing without counting it in
# ``dirty``, propagates as sent or as the one command it rewrites itself into, fires its own
# keyspace events and raises its errors before changing anything. What ``redis-benchmark``
# sends of them is the lane's business: the general path's bookkeeping costs as much as their
# work.
HANDLED = ("setbit", "geoadd", "xadd")
_HANDLED_NAMES = {spelled: name for name in HANDLED
                  for spelled in (name.encode(), name.upper().encode(),
                                  name.capitalize().encode())}
# The names (as sent) of the handled writes. A read is routed by its first request: these go
# to the general lane, which hands runs of them to this lane while it is open
# (GeneralLane.run), so that they keep the general lane whenever this one is closed.
HANDLED_NAMES = frozenset(_HANDLED_NAMES)
_XADD = frozenset(spelled for spelled, name in _HANDLED_NAMES.items() if name == "xadd")
# The names (as sent) of the lane's commands the connection routes here.
LANE_NAMES = _GET | _SET | _PFADD | _PFCOUNT
# The one request shape of each command the lane takes (for the ACL's key tests).
_GET_SHAPE = [b"GET", b"k"]
_SET_SHAPE = [b"SET", b"k", b"v"]
_PFADD_SHAPE = [b"PFADD", b"k", b"e"]
_PFCOUNT_SHAPE = [b"PFCOUNT", b"k"]
_SHAPES = {"get": _GET_SHAPE, "set": _SET_SHAPE}
_SHORT = 44  # OBJ_ENCODING_EMBSTR_SIZE_LIMIT
# The keyspace event classes the lane's commands fire (set and pfadd, new keys, GET's
# keymiss): while one is on, the lane stays closed (Engine.lane_observed).
LANE_CLASSES = STRING | NEW | KEY_MISS
_ZERO = b":0\r\n"
_ONE = b":1\r\n"
_BITS = {0: _ZERO, 1: _ONE}  # the replies of 0 and 1, without encode()
_read_cardinality = CARDINALITY.unpack_from  # a cached count, read without a slice
_AHEAD = 32  # see _one_key_pfadds
_MANY = 1 << 62  # more arguments than any request has
_NONE = range(0)  # no length: a run of one
_REPLIES = (_ZERO, _ONE).__getitem__  # PFADD's reply from add_each's byte
_ELEMENT = itemgetter(2)  # a one-element PFADD's element


def _over_edited(db: Database, key: bytes, value: bytes) -> int:
    """How much ``used`` grows when a SET stores ``value`` over a string changed in place (a
    ``bytearray``, measured apart in ``db.sizes``), as :meth:`Database.set` counts it."""
    return string_entry_size(key, value) - db.sizes.pop(key, 0)


def _one_key_pfadds(requests: list[list[bytes]], start: int, key: bytes) -> list[list[bytes]]:
    """The one-element PFADD at ``requests[start]`` and those to the same key right after it
    (``_AHEAD`` at most: a group that stops early did little for nothing)."""
    group = []
    name = requests[start][0]  # as spelled: equality, where a set test hashes each name
    for argv in requests[start:start + _AHEAD]:
        if len(argv) != 3 or argv[1] != key or argv[0] != name:
            break
        group.append(argv)
    return group


def _one_key_xadds(requests: list[list[bytes]], start: int, key: bytes) -> list[list[bytes]]:
    """``requests[start]``, an ``XADD key * field value ...``, and those of that form to the
    same key right after it (``_AHEAD`` at most)."""
    group = []
    for argv in requests[start:start + _AHEAD]:
        length = len(argv)
        if length < 5 or not length & 1 or argv[1] != key or argv[2] != b"*" or \
                argv[0] not in _XADD:
            break
        group.append(argv)
    return group


def _no_key(_key: bytes) -> bool:
    """The key test of a command the user may not run at all (see ``User.key_check``)."""
    return False


def plain_session(session: Session) -> bool:
    """Nothing about ``session`` could refuse a command or change how its reply is sent:
    no MULTI, pub/sub context, MONITOR or replica link, no replies queued or silenced,
    logged in, not closing."""
    return not (
        session.multi is not None or not session.authenticated
        or session.channels or session.patterns or session.shard_channels
        or session.reply_off or session.reply_skip or session.is_master
        or session.is_replica or session.monitor or session.closing
        or session.pending_out or session.after_reply
    )


class PlainLane:
    """GET, plain SET and the simple PFADD/PFCOUNT for an engine, without the general
    dispatch."""

    __slots__ = ("engine", "gates", "tally", "_get", "_set", "_pfadd", "_pfcount", "_handled",
                 "_commands", "_xadd", "_xadd_run", "_runs")

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.gates = engine.keyspace.gates
        self.tally = engine.direct_tally  # single SETs' counters
        self._get = engine.table[b"get"]
        self._set = engine.table[b"set"]
        self._pfadd = engine.table[b"pfadd"]
        self._pfcount = engine.table[b"pfcount"]
        # name as sent -> the command whose handler the lane runs
        self._handled = {spelled: engine.table[name.encode()]
                         for spelled, name in _HANDLED_NAMES.items()}
        for command in self._handled.values():
            # its estimate kept by the handler, or measured again for its first key only
            assert not command.remeasures or command.remeasures_first, command
        self._commands = dict(self._handled)  # every lane name as sent -> its command
        # streams imports core, which imports this module: taken from it once it is loaded
        from kvrepl.commands.bitmaps import setbit_run
        from kvrepl.commands.geo import geoadd_run
        from kvrepl.commands.streams import xadd_run
        self._xadd = engine.table[b"xadd"]
        self._xadd_run = xadd_run
        # handled commands whose family runs a run of their usual form itself (see run)
        self._runs = {engine.table[b"setbit"]: setbit_run, engine.table[b"geoadd"]: geoadd_run}
        for names, command in ((_GET, self._get), (_SET, self._set), (_PFADD, self._pfadd),
                               (_PFCOUNT, self._pfcount)):
            self._commands.update(dict.fromkeys(names, command))

    def open_for(self, session: Session) -> bool:
        """True when nothing about the node or ``session`` could refuse a GET or SET, or
        make it do more than read or store one key. The node's part is one flag,
        ``keyspace.gates.open``, derived from what is registered (:mod:`kvrepl.store.gates`:
        loading, read-only, MISCONF, NOREPLICAS, pause, MONITOR, WATCH, a snapshot, a
        blocked client, LFU, maxmemory, keyspace notifications, client-side caching); the
        session's part: no MULTI, pub/sub context, MONITOR or replica link, no replies
        queued, and a user that may log in (a restricted one is checked per run, see
        :meth:`run`)."""
        return self.gates.open and plain_session(session)

    def _context(self, session: Session) -> tuple[Database, dict[bytes, object],
                                                   dict[bytes, int], dict[bytes, int], int,
                                                   list[Callable[[int, list[bytes]], None]]]:
        """What a run reads and writes: the db and its data, expires and access maps, the
        LRU clock, the propagation listeners."""
        db = session.db
        return (db, db.data, db.expires, db.access, self.engine.keyspace.lru_clock,
                self.engine.propagate_listeners)

    def _record(self, command: Command, count: int, usec: float) -> None:
        """INFO's counters for ``count`` calls of ``command`` that took ``usec`` in all,
        and LATENCY HISTOGRAM's (each call at the average)."""
        command.calls += count
        command.usec += usec
        self.engine.stats.commands_processed += count
        if self.engine.latency_tracking:
            command.record_latency(usec / count, count)

    def _observe_run(self, session: Session, commands: list[list[bytes]], usec: float
                     ) -> None:
        """The slow log and latency monitor for a run that took ``usec`` in all, when each
        command's average reaches their floor."""
        engine = self.engine
        average = usec / len(commands)
        if average >= engine.slow_floor:
            for argv in commands:
                engine.observe_slow(session, self._commands[argv[0]], argv, average)

    def open_for_master_link(self, session: Session) -> bool:
        """:meth:`open_for` on a replica, for the link its master's stream arrives on: the
        refusals of normal clients (read-only, MISCONF, stale data) never apply to it
        (``gates.link_open``), so only what observes writes, or a transaction, closes the
        lane."""
        return self.gates.link_open and not (
            not session.authenticated or session.multi is not None
            or session.channels or session.patterns or session.shard_channels
        )

    def apply_sets(self, session: Session, commands: list[list[bytes]], start: int) -> int:
        """The master link's :meth:`run`: ``commands[start:]`` from the replication stream
        while each is a plain SET of a key without a TTL, no replies; returns the index of
        the first command it did not apply. ``open_for_master_link(session)`` must be
        true."""
        db, data, expires, access, clock, listeners = self._context(session)
        engine = self.engine
        position = start
        grown = 0
        began = perf_counter()
        for argv in commands[start:] if start else commands:
            if len(argv) != 3 or (argv[0] != b"SET" and argv[0] not in _SET):
                break
            key = argv[1]
            if expires and key in expires:
                break
            value = argv[2]
            old = data.get(key)
            if old is None:
                grown += STRING_ENTRY + len(key) + len(value)
            elif type(old) is bytes:
                grown += len(value) - len(old)
            elif type(old) is bytearray:
                grown += _over_edited(db, key, value)
            else:
                break
            data[key] = value
            access[key] = clock
            position += 1
        db.used += grown
        applied = position - start
        if applied:
            engine.dirty += applied
            if listeners:  # node.changes() on the replica
                engine.propagate_run(db.id, commands[start:position])
            spent = (perf_counter() - began) * 1e6
            self._record(self._set, applied, spent)
            if spent >= engine.slow_floor:
                self._observe_run(session, commands[start:position], spent)
            session.last_command = "set"
        return position

    def set(self, session: Session, argv: list[bytes]) -> bool:
        """One plain ``SET key value`` (the embedded API's ``node.set``); False, having done
        nothing, when the general path must run it. Counted in the engine's
        :class:`~kvrepl.commands.tally.DirectTally`, one call in ``SAMPLE`` timed."""
        db = session.db
        key = argv[1]
        if key in db.expires or not self.open_for(session) or not (
                session.user.unrestricted or self._allowed(session, self._set, key)):
            return False
        value = argv[2]
        data = db.data
        old = data.get(key)
        if old is None:
            db.used += STRING_ENTRY + len(key) + len(value)
        elif type(old) is bytes:
            db.used += len(value) - len(old)
        elif type(old) is bytearray:
            db.used += _over_edited(db, key, value)
        else:
            return False
        tally = self.tally
        sets = tally.sets = tally.sets + 1
        sampled = not sets & MASK
        if sampled:
            began = perf_counter()
        data[key] = value
        engine = self.engine
        db.access[key] = engine.keyspace.lru_clock
        engine.dirty += 1
        listeners = engine.propagate_listeners
        if listeners:
            for listener in listeners:
                listener(db.id, argv)
            replication = engine.replication
            if replication is not None:
                session.woff = replication.master_repl_offset
        if sampled:
            self._sampled(session, argv, (perf_counter() - began) * 1e6)
        session.last_command = "set"
        return True

    def _sampled(self, session: Session, argv: list[bytes], usec: float) -> None:
        """The timing of a sampled single SET, standing for ``SAMPLE`` calls (commandstats
        time, LATENCY HISTOGRAM); the slow log and latency monitor see it as it was."""
        command = self._set
        command.usec += usec * SAMPLE
        engine = self.engine
        if engine.latency_tracking:
            command.record_latency(usec, SAMPLE)
        if usec >= engine.slow_floor:
            engine.observe_slow(session, command, argv, usec)

    def get(self, session: Session, key: bytes) -> bytes | None:
        """One ``GET key`` (an in-process redis-py connection's), its reply encoded; None,
        having done nothing, when the general path must run it (a key with a TTL, a value
        of another type). ``open_for(session)`` must be true."""
        db = session.db
        if key in db.expires or not self._allowed(session, self._get, key):
            return None
        began = perf_counter()
        value = db.data.get(key)
        engine = self.engine
        if value is None:
            engine.keyspace.misses += 1
            reply = _NIL[session.resp3]
        elif type(value) is bytes or type(value) is bytearray:
            engine.keyspace.hits += 1
            db.access[key] = engine.keyspace.lru_clock
            size = len(value)
            # A new bytes object either way: a string changed in place never leaves as is.
            reply = b"%s%s\r\n" % (_BULK_HEADS[size] if size < 1024 else b"$%d\r\n" % size,
                                    value)
        else:
            return None
        self._record(self._get, 1, (perf_counter() - began) * 1e6)
        session.last_command = "get"
        return reply

    @staticmethod
    def _allowed(session: Session, command: Command, key: bytes) -> bool:
        """The session's user may run ``command`` on ``key`` (a false answer leaves the
        request, its NOPERM and its ACL LOG entry to the general path)."""
        user = session.user
        if user.unrestricted:
            return True
        test = user.key_check(command.spec, _SHAPES[command.name])
        return test is not None and test(key)

    def _acl_tests(self, user: User) -> tuple:
        """A restricted user's key tests for :meth:`run`, kept on the user until its rules
        change (``User.lane_tests``): for GET and SET, a prefix that proves a key allowed
        with one slice comparison, and its length, then the full test for the other keys
        (no prefix: None, which no slice equals); for PFADD and PFCOUNT the full test. A
        command the user may not run at all gets a test that is always false."""
        tests: list[object] = []
        for command, shape in ((self._get, _GET_SHAPE), (self._set, _SET_SHAPE)):
            prefix = user.key_prefix(command.spec, shape)
            tests += (prefix, len(prefix or b""), user.key_check(command.spec, shape) or _no_key)
        tests.append(user.key_check(self._pfadd.spec, _PFADD_SHAPE) or _no_key)
        tests.append(user.key_check(self._pfcount.spec, _PFCOUNT_SHAPE) or _no_key)
        user.lane_tests = made = tuple(tests)
        return made

    def run(self, session: Session, requests: list[list[bytes]], start: int,
            out: list[bytes], raw: bytes | None = None) -> int:
        """Run ``requests[start:]`` while each is a GET or a plain SET the lane can finish,
        appending the encoded replies to ``out``; returns the index of the first request it
        did not run (``len(requests)`` when it ran them all). ``open_for(session)`` must be
        true. ``raw``, when given, is bytes that parse to exactly ``requests[start:]``: if they
        are all SETs it is what the replication stream carries, without encoding again.

        A restricted ACL user's requests are checked here too, cheaply: whether the user
        may run each of the four commands is found once per change of its rules
        (:meth:`_acl_tests`), and each key is tested against the patterns that grant that
        command's needs (``User.key_check``; a GET or SET key first against the prefix of
        a ``prefix*`` pattern, ``User.key_prefix``); a request that test does not allow
        ends the run, and the general path gives it the full check, the NOPERM error and
        the ACL LOG entry."""
        if requests[start][0] not in self._commands:
            return start  # the usual case of a general command: no set-up for nothing
        db, data, expires, access, clock, listeners = self._context(session)
        user = session.user
        acl = not user.unrestricted
        if acl:
            (get_head, get_cut, may_get, set_head, set_cut, may_set, may_pfadd,
             may_pfcount) = user.lane_tests or self._acl_tests(user)
        engine = self.engine
        nil = _NIL[session.resp3]
        heads = _BULK_HEADS
        gets = misses = pfadds = grown = pfcounts = recounts = grew = 0
        handled: list[Command] = []  # the commands whose handlers ran, in order
        by_name = self._handled
        xadd = self._xadd
        runs = self._runs
        resp3 = session.resp3
        get, size_of, entry = data.get, len, STRING_ENTRY  # locals: the loop's hot lookups
        written: list[list[bytes]] = []  # the SETs, for the propagation listeners
        # The encoding of XADD runs' propagated commands, and how many of ``written`` it holds
        xadds_encoded: list[bytes] = []
        xadds_written = 0
        position = start
        count = len(requests)
        zero, one = 0, 1  # see the handled commands' replies
        began = perf_counter()
        pending = iter(requests[start:] if start else requests)
        for argv in pending:
            length = len(argv)
            # The usual spelling by equality first: a fresh name's hash costs more.
            if length == 2 and (argv[0] == b"GET" or argv[0] in _GET):
                key = argv[1]
                if key in expires or (acl and key[:get_cut] != get_head and not may_get(key)):
                    break  # lazy expiry and its propagated DEL: the general path
                value = data.get(key)
                if value is None:
                    out.append(nil)
                    misses += 1
                elif type(value) is bytes:
                    access[key] = clock
                    size = len(value)
                    out += (heads[size] if size < 1024 else b"$%d\r\n" % size, value, _CRLF)
                elif type(value) is bytearray:  # changed in place (SETBIT...): sent as a copy,
                    access[key] = clock         # a later request of the read may change it
                    size = len(value)
                    out.append(b"%s%s\r\n" % (heads[size] if size < 1024 else b"$%d\r\n" % size,
                                              value))
                else:
                    break  # WRONGTYPE: the general path counts and words the error
                gets += 1
            elif length == 3 and (argv[0] == b"SET" or argv[0] in _SET):
                key = argv[1]
                if key in expires or (acl and key[:set_cut] != set_head and not may_set(key)):
                    break
                value = argv[2]
                old = get(key)
                if old is None:
                    grew += entry + size_of(key) + size_of(value)
                elif type(old) is bytes:
                    grew += size_of(value) - size_of(old)
                elif type(old) is bytearray:
                    grew += _over_edited(db, key, value)
                else:
                    break
                data[key] = value
                access[key] = clock
                if listeners:
                    written.append(argv)
                out.append(_OK)  # counted after the loop (``sets``)
            elif length > 3:  # GET, SET, PFADD and PFCOUNT are shorter
                command = by_name.get(argv[0])
                arity = command.arity if command is not None else 0
                if not arity or (arity != length if arity > 0 else length < -arity) or acl \
                        or argv[1] in expires:
                    break  # a wrong arity, a restricted user, a TTL: the general path
                run_of = runs.get(command)
                if command is xadd and argv[2] == b"*" and length & 1:
                    # This XADD key * and those to the same key right after it, together.
                    key = argv[1]
                    group = requests[position:position + _AHEAD]
                    same = group.count(argv) == len(group)  # redis-benchmark's: one check
                    if not same:
                        group = _one_key_xadds(requests, position, key)
                    ids = self._xadd_run(session, key, group, same)
                    done = len(ids)
                    if done:
                        db.changed_in_place(key)  # as call() does (remeasures_first)
                        if listeners:  # replicas get the IDs chosen
                            written += [[request[0], key, new_id, *request[3:]]
                                        for request, new_id in zip(group, ids, strict=False)]
                            if same or group[:done].count(argv) == done:  # one request
                                xadds_encoded.append(encode_each_with(argv, 2, ids))
                                xadds_written += done
                        size = len(ids[0])
                        if size == len(ids[-1]):  # IDs of one length: one join
                            head = heads[size]
                            out.append(head + (_CRLF + head).join(ids) + _CRLF)
                        else:
                            for new_id in ids:
                                out += (heads[len(new_id)], new_id, _CRLF)
                else:
                    # A run of SETBITs or GEOADDs of their usual form: by their family's
                    # run function, which stops where the handler must take over.
                    done = run_of(session, requests, position, out,
                                  written if listeners else None) if run_of else 0
                if done:
                    handled += [command] * done
                    if done > 1:  # the loop goes on after the last of them
                        next(islice(pending, done - 2, None))
                        position += done - 1
                    position += 1
                    continue
                # This request and those of the same command right after it (as spelled,
                # of a length its arity takes, a key without a TTL), each by its handler
                # with the checks above done once; XADD one at a time (its * runs above).
                name = argv[0]
                handler = command.handler
                watched = command.remeasures or listeners  # what a change must update
                # the lengths a request of the run may have: one test of a range
                fits = _NONE if command is xadd else range(arity, arity + 1) if arity > 0 \
                    else range(-arity, _MANY)
                first = position
                while True:
                    if watched:
                        dirty = engine.dirty
                    try:
                        reply = handler(session, argv)
                    except Exception as err:
                        reply = engine.failed(session, command, argv, err)
                    if watched:
                        if engine.dirty != dirty:
                            if command.remeasures:  # as call() does, for the first key only
                                db.changed_in_place(argv[1])
                            if listeners:
                                rewritten = engine.take_rewrite()
                                if rewritten is None:
                                    written.append(argv)
                                else:
                                    written += rewritten
                        elif listeners:
                            engine.take_rewrite()
                    # SETBIT's and GEOADD's usual 0 and 1 (CPython's small ints: one
                    # identity test; any other 0 or 1, and True, are tested below).
                    if reply is zero:
                        out.append(_ZERO)
                    elif reply is one:
                        out.append(_ONE)
                    else:
                        kind = type(reply)
                        if kind is int and reply in _BITS:
                            out.append(_BITS[reply])
                        elif kind is bytes and len(reply) < 1024:  # XADD's ID: as GET's
                            out += (heads[len(reply)], reply, _CRLF)
                        else:
                            out.append(encode(reply, resp3))
                    following = position + 1
                    if following == count or run_of is not None:
                        break  # (the run function takes the next one again)
                    argv = requests[following]
                    if len(argv) not in fits or argv[0] != name or argv[1] in expires:
                        break
                    next(pending)  # that request, run here
                    position = following
                handled += [command] * (position + 1 - first)
            elif length == 3 and argv[0] in _PFADD:
                key = argv[1]
                value = data.get(key)
                kind = type(value)
                if key in expires or (acl and not may_pfadd(key)) or not (
                        (kind is bytes or kind is bytearray) and len(value) == DENSE_SIZE
                        and value.startswith(DENSE_MAGIC)  # bytes, or dense_in_place(value)
                        or kind is bytes and value.startswith(SPARSE_MAGIC)
                        and len(value) >= 16
                        and (len(value) > _SHORT or string_encoding(value) == b"raw")):
                    break  # a TTL, a new key, another type...: the general path
                # This PFADD and those to the same key right after it, in one call.
                group = _one_key_pfadds(requests, position, key)
                stored, changed = add_each(value, list(map(_ELEMENT, group)),
                                           engine.config.hll_sparse_max_bytes)
                done = len(changed)
                if not done:
                    break  # a corrupt sparse HLL: the general path stores what changed
                if stored is not value:
                    db.set(key, stored, keep_ttl=True)  # and its memory estimate
                access[key] = clock
                pfadds += done
                ones = changed.count(1)
                if ones:
                    grown += ones
                    if listeners:
                        written += [request for request, one in zip(group, changed,
                                                                    strict=False) if one]
                out += map(_REPLIES, changed)
                if done > 1:  # the loop goes on after the last of them
                    next(islice(pending, done - 2, None))
                    position += done - 1
            elif length == 2 and argv[0] in _PFCOUNT:
                key = argv[1]
                value = data.get(key)
                kind = type(value)
                if (key in expires or not (kind is bytes or kind is bytearray)
                        or len(value) <= _SHORT or not is_hll(value)
                        or (acl and not may_pfcount(key))):
                    break
                if not value[15] & 0x80:
                    card = _read_cardinality(value, 8)[0]
                elif dense_in_place(value):
                    # A stale count of a dense HLL changed in place: computed and written
                    # back where it is, as the general path does (dirty, so propagated).
                    card = hll_count(value)  # type: ignore[arg-type]
                    set_cardinality(value, card)  # type: ignore[arg-type]
                    recounts += 1
                    if listeners:
                        written.append(argv)
                else:
                    break  # to compute, and store anew: the general path
                access[key] = clock
                pfcounts += 1
                out.append(b":%d\r\n" % card)
            else:
                break
            position += 1
        db.used += grew  # the memory estimate of the SETs (a PFADD that changes it: db.set)
        if position == start:
            return start
        spent = (perf_counter() - began) * 1e6
        ran = position - start
        sets = ran - gets - pfadds - pfcounts - len(handled)  # the rest of what ran
        if spent >= engine.slow_floor:
            self._observe_run(session, requests[start:position], spent)
        if gets or pfcounts:
            keyspace = engine.keyspace
            keyspace.hits += gets - misses + pfcounts
            keyspace.misses += misses
        if gets:
            self._record(self._get, gets, spent * gets / ran)
        if pfcounts:
            self._record(self._pfcount, pfcounts, spent * pfcounts / ran)
            engine.dirty += recounts
        if pfadds:
            self._record(self._pfadd, pfadds, spent * pfadds / ran)
            engine.dirty += grown
        if sets:
            self._record(self._set, sets, spent * sets / ran)
            engine.dirty += sets
        if handled:
            engine.replying = None  # as call() leaves it
            for command in set(handled):
                count = handled.count(command)
                self._record(command, count, spent * count / ran)
        if written:
            # In order, nothing ran in between; all SETs: they are their own encoding.
            encoded = raw if sets == len(requests) - start else (
                b"".join(xadds_encoded) if xadds_written == len(written) else None)
            engine.propagate_run(db.id, written, encoded)
            replication = engine.replication
            if replication is not None:
                session.woff = replication.master_repl_offset
        session.last_command = self._commands[requests[position - 1][0]].name
        return position
