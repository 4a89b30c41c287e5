"""What ``OBJECT ENCODING`` would answer in Redis 7.0 for a kvrepl value.

kvrepl stores every value in one Python representation per type (``bytes``, ``deque``,
``dict``, ``set``, :class:`~kvrepl.store.values.ZSet`), so the encoding Redis would have chosen
is computed on demand from the value and the config thresholds:

==========  =====================================================================
string      ``int`` (a canonical 64-bit integer of at most 20 bytes), ``embstr``
            (at most 44 bytes) or ``raw``; always ``raw`` for a ``bytearray`` (a string
            SETBIT, BITFIELD, SETRANGE or APPEND changed in place)
list        always ``quicklist`` (Redis 7.0 has no listpack lists)
hash        ``listpack`` while entries <= ``hash-max-listpack-entries`` and every field
            and value is at most ``hash-max-listpack-value`` bytes, else ``hashtable``
set         ``intset`` while every member is an integer and members <=
            ``set-max-intset-entries``, else ``hashtable`` (7.0 has no listpack sets)
zset        ``listpack`` while members <= ``zset-max-listpack-entries`` and every member
            is at most ``zset-max-listpack-value`` bytes, else ``skiplist``
==========  =====================================================================

Differences from Redis, on purpose:

* Redis converts one way only: a hash that once grew past a threshold stays ``hashtable``
  after it shrinks, and a set that once held a non-integer stays ``hashtable``. kvrepl has no
  per-value history and answers from the current contents, so after shrinking it reports the
  compact encoding Redis would give a value *created* with those contents (which is also
  what Redis reports after a restart or a full sync, since loading re-derives encodings).
* String encodings depend on how Redis built the object, not only on its bytes: ``APPEND``
  and ``SETRANGE`` leave a ``raw`` string even when it is short or looks like an integer, and
  ``INCRBYFLOAT`` leaves an ``embstr`` even when the result is integral. Those commands call
  :func:`mark_string` on the value they store; the mark is kept by object identity in a small
  bounded table (only values of at most 44 bytes need one, longer ones are ``raw`` anyway).
  The table forgets its oldest marks beyond :data:`MARK_LIMIT`, and the empty string (a
  shared object in CPython) is never marked; those rare cases fall back to the computed
  answer. Copies keep the mark (``COPY``, ``RENAME`` share the object, as Redis's
  ``dupStringObject`` keeps the encoding); a value re-read from an RDB file loses it, as in
  Redis, where loading re-encodes strings.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Collection

from kvrepl.store.values import Stream, ZSet

EMBSTR_SIZE_LIMIT = 44  # OBJ_ENCODING_EMBSTR_SIZE_LIMIT
SHARED_INTEGERS = 10000  # OBJ_SHARED_INTEGERS
SHARED_REFCOUNT = 2147483647  # OBJ_SHARED_REFCOUNT (INT_MAX)
MARK_LIMIT = 4096

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1

# id(value) -> (value, encoding). Holding the value keeps its id from being reused. Ordered,
# so that the oldest mark goes out in O(1) once there are MARK_LIMIT: a plain dict finds its
# first item past every slot freed at its front, about a thousand of them at this size (4,000
# instructions for each PFADD to a small sparse HLL, which marks its new string raw).
_marks: OrderedDict[int, tuple[bytes, bytes]] = OrderedDict()


def string2ll(value: bytes) -> int | None:
    """``value`` as Redis's ``string2ll`` reads it, or None: a signed 64-bit integer in
    canonical form (optional ``-``, no ``+``, spaces or leading zeros; ``-0`` is refused).

    The one integer reader: command arguments (:mod:`kvrepl.commands.args`) and the ``int``
    and ``intset`` encodings below both use it.
    """
    if len(value) > 20:
        return None
    try:
        number = int(value)  # lenient: spaces, "+", "_", leading zeros...
    except ValueError:
        return None
    # ... which the canonical spelling of the number it read refuses (and "-0"): cheaper
    # than matching a pattern first, for the integers arguments usually are
    if b"%d" % number != value or number < INT64_MIN or number > INT64_MAX:
        return None
    return number


def mark_string(value: bytes, encoding: bytes) -> bytes:
    """Remember that Redis would hold ``value`` with ``encoding`` (``raw`` or ``embstr``).

    Called by the commands that build strings in a way ``tryObjectEncoding`` never sees
    (APPEND, SETRANGE, INCRBYFLOAT). Returns the object to store: ``value`` itself, or a
    private copy when ``value`` might be one of CPython's shared one-byte objects.
    """
    if len(value) > EMBSTR_SIZE_LIMIT or natural_string_encoding(value) == encoding:
        return value
    if len(value) <= 1:
        value = bytes(bytearray(value))
        if value is (bytes([value[0]]) if value else b""):
            return value  # the interpreter handed back its shared object: do not mark it
    if len(_marks) >= MARK_LIMIT:
        try:
            _marks.popitem(last=False)
        except (KeyError, RuntimeError):  # another thread (a YES debugging session) emptied
            pass                          # or changed it meanwhile
    _marks[id(value)] = (value, encoding)
    return value


def natural_string_encoding(value: bytes) -> bytes:
    """The encoding ``tryObjectEncoding`` gives a string argument stored by SET and friends."""
    if len(value) <= 20 and string2ll(value) is not None:
        return b"int"
    return b"embstr" if len(value) <= EMBSTR_SIZE_LIMIT else b"raw"


def string_encoding(value: bytes) -> bytes:
    """The encoding of a stored string, honouring :func:`mark_string` marks."""
    mark = _marks.get(id(value))
    if mark is not None and mark[0] is value:
        return mark[1]
    return natural_string_encoding(value)


def object_encoding(value: object, config: object) -> bytes:
    """What Redis 7.0's ``OBJECT ENCODING`` answers for ``value`` under ``config``.

    ``config`` needs the attributes ``hash_max_listpack_entries``,
    ``hash_max_listpack_value``, ``set_max_intset_entries``, ``zset_max_listpack_entries``
    and ``zset_max_listpack_value`` (a :class:`kvrepl.config.Config` has them). See the
    module docstring for where this differs from Redis.
    """
    kind = type(value)
    if kind is bytes:
        return string_encoding(value)  # type: ignore[arg-type]
    if kind is bytearray:  # changed in place: what SETBIT & co. leave in Redis
        return b"raw"
    if kind is deque:
        return b"quicklist"
    if kind is dict:
        return b"listpack" if hash_is_listpack(value, config) else b"hashtable"  # type: ignore
    if kind is set:
        return b"intset" if set_is_intset(value, config) else b"hashtable"  # type: ignore
    if kind is ZSet:
        return b"listpack" if zset_is_listpack(value, config) else b"skiplist"  # type: ignore
    if kind is Stream:
        return b"stream"
    return b"unknown"


def hash_is_listpack(value: dict, config: object) -> bool:
    """True when Redis 7.0 would keep a hash with these fields and values as a listpack
    (iterated in insertion order, which a Python dict keeps)."""
    if len(value) > config.hash_max_listpack_entries:  # type: ignore[attr-defined]
        return False
    limit = config.hash_max_listpack_value  # type: ignore[attr-defined]
    return all(len(f) <= limit and len(v) <= limit for f, v in value.items())


def set_is_intset(members: Collection[bytes], config: object) -> bool:
    """True when Redis 7.0 would encode a set with these members as an intset (iterated in
    ascending numeric order). ``setTypeAdd`` caps the limit at 2**30."""
    limit = min(config.set_max_intset_entries, 1 << 30)  # type: ignore[attr-defined]
    return len(members) <= limit and all(string2ll(m) is not None for m in members)


def zset_is_listpack(zset: ZSet, config: object) -> bool:
    """True when Redis 7.0 would keep a sorted set with these members as a listpack
    (ZSCAN returns those whole; they hold -0 as 0)."""
    if len(zset) > config.zset_max_listpack_entries:  # type: ignore[attr-defined]
        return False
    limit = config.zset_max_listpack_value  # type: ignore[attr-defined]
    return all(len(member) <= limit for member in zset.scores)


def object_refcount(value: object, config: object) -> int:
    """What ``OBJECT REFCOUNT`` answers: Redis shares the integers 0..9999 (refcount INT_MAX)
    unless maxmemory is set with an LRU/LFU policy; every other value has one reference."""
    if type(value) is bytes and string_encoding(value) == b"int":
        number = int(value)  # type: ignore[arg-type]
        if 0 <= number < SHARED_INTEGERS and not _no_shared_integers(config):
            return SHARED_REFCOUNT
    return 1


def _no_shared_integers(config: object) -> bool:
    """MAXMEMORY_FLAG_NO_SHARED_INTEGERS: maxmemory set and an LRU or LFU policy."""
    policy = getattr(config, "maxmemory_policy", "noeviction")
    return bool(getattr(config, "maxmemory", 0)) and ("lru" in policy or "lfu" in policy)
