"""DEBUG DIGEST and DEBUG DIGEST-VALUE: Redis 7.0's SHA1 fingerprint of a dataset.

This is ``computeDatasetDigest`` / ``xorObjectDigest`` of Redis 7.0 ``debug.c``, so a kvrepl
node and a redis-server holding the same data print the same 40 hex characters; tests and
operators compare a master with its replicas this way.

Two primitives build every digest (``d`` is 20 bytes):

* ``xor(d, data)``: ``d ^= SHA1(data)``. Order-free: used for set members, for the digests
  of hash and sorted set elements, and for the digests of the keys of a database.
* ``mix(d, data)``: ``d = SHA1(d ^ SHA1(data))``. Order-preserving: used for list elements,
  for the pieces of one element, and for the database numbers.

Per key: ``mix(key)``, ``mix(type as 4 big-endian bytes)``, then the value, then
``xor("!!expire!!")`` when the key has a TTL (the time itself is not part of it). Sorted set
scores are printed with ``%.17g``; a stream mixes its entries in ID order (not its groups). Redis's encodings (listpack, intset, skiplist) all reduce
to the same bytes, so the digest does not depend on them. (The one value an encoding changes,
a ``-0`` score that a listpack keeps as ``0``, is stored by kvrepl's ZADD as Redis keeps it.)
Logically expired keys that are still stored count, as in Redis (DEBUG does not expire keys).
"""

from __future__ import annotations

from collections import deque
from hashlib import sha1
from typing import TYPE_CHECKING

from kvrepl.store.values import Stream, ZSet

if TYPE_CHECKING:
    from kvrepl.store.database import Keyspace

__all__ = ["EMPTY", "dataset_digest", "digest", "digest_value", "value_digest"]

EMPTY = bytes(20)

# server.h OBJ_STRING, OBJ_LIST, OBJ_SET, OBJ_ZSET, OBJ_HASH as htonl(type).
_TYPE_TAG = {
    bytes: (0).to_bytes(4, "big"),
    bytearray: (0).to_bytes(4, "big"),  # a string changed in place
    deque: (1).to_bytes(4, "big"),
    set: (2).to_bytes(4, "big"),
    ZSet: (3).to_bytes(4, "big"),
    dict: (4).to_bytes(4, "big"),
    Stream: (6).to_bytes(4, "big"),
}
_EXPIRE_MARK = int.from_bytes(sha1(b"!!expire!!").digest(), "big")


def _h(data: bytes) -> int:
    return int.from_bytes(sha1(data).digest(), "big")


def _mix(d: int, data: bytes) -> int:
    """mixDigest: ``SHA1(d ^ SHA1(data))`` (on 160-bit integers)."""
    return int.from_bytes(sha1((d ^ _h(data)).to_bytes(20, "big")).digest(), "big")


def _pair(first: bytes, second: bytes) -> int:
    """What one hash field/value or zset member/score adds: SHA1 of two mixes from zero."""
    return _h(_mix(_mix(0, first), second).to_bytes(20, "big"))


def _value_int(d: int, value: object, has_expire: bool) -> int:
    """xorObjectDigest: fold the type, the value and the TTL mark into ``d``."""
    kind = type(value)
    tag = _TYPE_TAG.get(kind)
    if tag is None:
        raise TypeError(f"cannot digest a value of type {kind.__name__}")
    d = _mix(d, tag)
    if kind is bytes or kind is bytearray:
        d = _mix(d, value)  # type: ignore[arg-type]
    elif kind is deque:
        for element in value:  # type: ignore[attr-defined]
            d = _mix(d, element)
    elif kind is set:
        for member in value:  # type: ignore[attr-defined]
            d ^= _h(member)
    elif kind is ZSet:
        # "%.17g" as C prints it: Python's %-format gives the same digits, "inf", "-0".
        for member, score in value.scores.items():  # type: ignore[attr-defined]
            d ^= _pair(member, b"%.17g" % score)
    elif kind is Stream:
        # Entries only ("ms.seq", then each field and value), as Redis 7.0: not the groups.
        for (ms, seq), fields in value.entries.items():  # type: ignore[attr-defined]
            d = _mix(d, b"%d.%d" % (ms, seq))
            for item in fields:
                d = _mix(d, item)
    else:  # dict: a hash
        for field, item in value.items():  # type: ignore[attr-defined]
            d ^= _pair(field, item)
    if has_expire:
        d ^= _EXPIRE_MARK
    return d



def value_digest(value: object | None, has_expire: bool = False) -> bytes:
    """The raw 20-byte digest DEBUG DIGEST-VALUE prints for one value (zeros for None)."""
    if value is None:
        return EMPTY
    return _value_int(0, value, has_expire).to_bytes(20, "big")


def digest_value(value: object | None, expire_ms: int | None = None) -> bytes:
    """DEBUG DIGEST-VALUE of one key: 40 hex characters; ``value`` None gives all zeros.

    ``expire_ms`` only matters by being set: Redis mixes in that the key has a TTL, not when.
    """
    return value_digest(value, expire_ms is not None).hex().encode()


def dataset_digest(keyspace: Keyspace) -> bytes:
    """computeDatasetDigest: the raw 20 bytes (all zeros for an empty dataset)."""
    final = 0
    for db in keyspace.dbs:
        if not db.data:
            continue
        # The db number is mixed in so that the same data in another db digests differently.
        final = _mix(final, db.id.to_bytes(4, "big"))
        expires = db.expires
        for key, value in db.data.items():
            key_digest = _value_int(_mix(0, key), value, key in expires)
            final ^= _h(key_digest.to_bytes(20, "big"))
    return final.to_bytes(20, "big")


def digest(keyspace: Keyspace) -> bytes:
    """DEBUG DIGEST: the dataset's digest as 40 lowercase hex characters."""
    return dataset_digest(keyspace).hex().encode()
