"""HyperLogLog commands (Redis 7.0's ``hyperloglog.c``): PFADD, PFCOUNT, PFMERGE, PFDEBUG,
PFSELFTEST. The representation and the arithmetic live in :mod:`kvrepl.store.hyperloglog`.

Replication follows Redis's ``call()``: a command that made the dataset dirty is propagated
as sent. That includes PFCOUNT of one key when it had to recompute the cached cardinality
(it writes the cache back into the string, a change a replica makes too by running the same
PFCOUNT), and PFDEBUG GETREG/TODENSE when they turned a sparse HLL dense.

PFADD and PFCOUNT cost what they change: a dense HLL is kept as a ``bytearray`` once either
changed it, and both change it where it is (registers, the cached cardinality), each after
the dispatcher's or its own ``before_write`` (the snapshot's copy-on-write and WATCH).

Every HLL command "unshares" the string it reads as Redis's ``dbUnshareStringValue`` does,
which leaves it ``raw`` for OBJECT ENCODING even when it is short.
"""

from __future__ import annotations

from kvrepl.commands.core import Session, command
from kvrepl.commands.strings import lookup_string
from kvrepl.commands.watch import unsignalled
from kvrepl.errors import ReplyError, WrongTypeError
from kvrepl.notify import STRING, notify
from kvrepl.protocol.replies import OK, Status
from kvrepl.store import hyperloglog as hll
from kvrepl.store.encoding import EMBSTR_SIZE_LIMIT, mark_string, string_encoding

_NO_KEY = "ERR The specified key does not exist"


def _readable(value: object) -> bytes | bytearray:
    """isHLLObjectOrReply: the string as it is kept, or WRONGTYPE (another type, or not an
    HLL). For a value only read (PFCOUNT of several keys, PFMERGE's sources): a string
    changed in place (a ``bytearray``: SETRANGE, APPEND, SETBIT) is read where it is."""
    if type(value) is not bytes and type(value) is not bytearray:
        raise WrongTypeError()
    if not hll.is_hll(value):  # type: ignore[arg-type]
        raise ReplyError(hll.NOT_HLL)
    return value  # type: ignore[return-value]


def _checked(value: object) -> bytes:
    """:func:`_readable` for a value that may be written back: a ``bytearray`` is read as
    its bytes."""
    value = _readable(value)
    return bytes(value) if type(value) is bytearray else value  # type: ignore[return-value]


def _store(s: Session, key: bytes, value: bytes) -> bytes:
    """Write an HLL back in place of the old one (same TTL), ``raw`` as Redis keeps it."""
    value = mark_string(value, b"raw")
    s.db.set(key, value, keep_ttl=True)
    return value


def _unshared(s: Session, key: bytes, value: bytes) -> bytes:
    """dbUnshareStringValue: a short string stored by SET (embstr) becomes a raw copy."""
    if len(value) <= EMBSTR_SIZE_LIMIT and string_encoding(value) != b"raw":
        value = _store(s, key, bytes(bytearray(value)))
    return value


def _sparse_max(s: Session) -> int:
    return s.engine.config.hll_sparse_max_bytes  # type: ignore[no-any-return]


@command("pfadd")
def pfadd(s: Session, argv: list[bytes]) -> object:
    """PFADD key [element ...]: 1 when a register changed (or the key was created)."""
    key = argv[1]
    found = s.db.lookup(key)
    if hll.dense_in_place(found) or (type(found) is bytes and len(found) == hll.DENSE_SIZE
                                     and found.startswith(hll.DENSE_MAGIC)):
        # A dense HLL: changed in place as a bytearray (made one by its first change).
        stored, grew = hll.dense_update(found, *hll.patterns(argv[2:]))  # type: ignore[arg-type]
        updated = grew.count(1)
        if not updated:
            return 0
        if stored is not found:
            s.db.set(key, stored, keep_ttl=True)
        notify(s, STRING, b"pfadd", key)
        s.engine.dirty += updated
        return 1
    if found is None:
        value = hll.EMPTY
        updated = 1
    else:
        value = _unshared(s, key, _checked(found))
        updated = 0
    new, grown, ok = hll.add(value, hll.patterns(argv[2:]), _sparse_max(s))
    if not ok:
        # Redis edits the string in place and stops at the corruption: the registers set
        # before it stay, unpropagated (nothing is counted dirty).
        if new != value:
            _store(s, key, new)
        raise ReplyError(hll.INVALID_HLL)
    updated += grown
    if not updated:
        return 0
    s.db.set(key, hll.stored_after_add(value, new), keep_ttl=True)
    notify(s, STRING, b"pfadd", key)
    s.engine.dirty += updated
    return 1


@command("pfcount")
def pfcount(s: Session, argv: list[bytes]) -> object:
    """PFCOUNT key [key ...]: one key answers from (and refreshes) the cached cardinality;
    several are merged on the fly and nothing is written."""
    if len(argv) > 2:
        merged = hll.Registers()
        for key in argv[1:]:
            found = s.db.lookup(key)
            if found is None:
                continue
            try:
                merged.merge(_readable(found))  # type: ignore[arg-type]
            except hll.CorruptHLL:
                raise ReplyError(hll.INVALID_HLL) from None
        return merged.count()
    key = argv[1]
    found = s.db.lookup(key)
    if found is None:
        return 0
    # A dense HLL kept as a bytearray is read where it is (its cache written back in place).
    value = found if hll.dense_in_place(found) else _unshared(s, key, _checked(found))
    card = hll.cached_cardinality(value)  # type: ignore[arg-type]
    if card is not None:
        return card
    try:
        card = hll.count(value)  # type: ignore[arg-type]
    except hll.CorruptHLL:
        raise ReplyError(hll.INVALID_HLL) from None
    # A read-only command that writes: tell the snapshot and WATCH first, as a write would
    # (signalModifiedKey), and only then change the value, maybe in place.
    s.db.before_write(key)
    stored = hll.set_cardinality(value, card)  # type: ignore[arg-type]
    if stored is not found:
        if type(stored) is bytes:
            _store(s, key, stored)
        else:
            s.db.set(key, stored, keep_ttl=True)  # a bytearray: always raw
    s.engine.dirty += 1
    return card


@command("pfmerge")
def pfmerge(s: Session, argv: list[bytes]) -> object:
    """PFMERGE destkey [sourcekey ...]: the destination (itself a source) gets the maximum
    of every register; it turns dense when any source is dense."""
    if len(argv) == 2:
        # PFMERGE destkey alone: its key specs find no key (COMMAND GETKEYS refuses it, as
        # Redis's), so the dispatcher announced no write; pfmergeCommand still signals the
        # destination (WATCH, client caching), created or not.
        s.db.before_write(argv[1])
    merged = hll.Registers()
    use_dense = False
    for key in argv[1:]:
        found = lookup_string(s, key, read=True)
        if found is None:
            continue
        value = _readable(found)
        if not hll.is_sparse(value):  # type: ignore[arg-type]
            use_dense = True
        try:
            merged.merge(value)  # type: ignore[arg-type]
        except hll.CorruptHLL:
            raise ReplyError(hll.INVALID_HLL) from None
    dest = argv[1]
    found = s.db.lookup(dest)
    if found is None:
        value = _store(s, dest, hll.EMPTY)  # created before the merge, as createHLLObject
    else:
        value = _unshared(s, dest, found)  # type: ignore[arg-type]
    try:
        new = hll.merge_into(value, merged, use_dense, _sparse_max(s))
    except hll.CorruptHLL:
        raise ReplyError(hll.INVALID_HLL) from None
    _store(s, dest, new)
    notify(s, STRING, b"pfadd", dest)
    s.engine.dirty += 1
    return OK


@command("pfdebug")
@unsignalled
def pfdebug(s: Session, argv: list[bytes]) -> object:
    """PFDEBUG GETREG|DECODE|ENCODING|TODENSE key"""
    sub, key = argv[1], argv[2]
    found = s.db.lookup(key)
    if found is None:
        raise ReplyError(_NO_KEY)
    value = _unshared(s, key, _checked(found))
    name = sub.lower()
    if name == b"getreg":
        if hll.is_sparse(value):
            value = _to_dense(s, key, value)
        return list(hll.registers(value))
    if name == b"decode":
        if not hll.is_sparse(value):
            raise ReplyError("ERR HLL encoding is not sparse")
        return hll.decode_sparse(value)
    if name == b"encoding":
        return Status(b"sparse" if hll.is_sparse(value) else b"dense")
    if name == b"todense":
        if not hll.is_sparse(value):
            return 0
        _to_dense(s, key, value)
        return 1
    shown = sub.split(b"\0")[0].decode("utf-8", "replace")  # printed with %s
    raise ReplyError(f"ERR Unknown PFDEBUG subcommand '{shown}'")


def _to_dense(s: Session, key: bytes, value: bytes) -> bytes:
    """PFDEBUG's conversion: stored, and counted dirty so that replicas convert too."""
    try:
        dense = hll.to_dense(value)
    except hll.CorruptHLL:
        raise ReplyError(hll.INVALID_HLL) from None
    s.engine.dirty += 1
    return _store(s, key, dense)


@command("pfselftest")
def pfselftest(s: Session, argv: list[bytes]) -> object:
    """PFSELFTEST: the register access and estimation self-test (smaller than Redis's: see
    :func:`kvrepl.store.hyperloglog.self_test`)."""
    failure = hll.self_test(_sparse_max(s))
    if failure is not None:
        raise ReplyError(failure)
    return OK
