"""How many bytes a key costs: the estimate behind ``used_memory`` and eviction.

CPython keeps no per-allocation accounting that a store could ask cheaply (tracemalloc
slows every allocation of the process down several times), so kvrepl estimates what each
key holds, from the objects it uses, and keeps the sum up to date as keys change
(:class:`kvrepl.store.Database` adds and subtracts it on every write; the keys a write
command may have changed in place are measured again before the sum is next read).

What one key costs (the constants were measured with tracemalloc on CPython 3.11, see
``tests/test_eviction.py::test_estimate_tracks_tracemalloc``):

- the key: a ``bytes`` object (``sys.getsizeof``: 33 bytes + its length);
- its slots in the database's ``data`` and ``access`` dicts: :data:`DICT_ENTRY` each, the
  average cost of one entry of a dict with bytes keys over its resize cycle (24 bytes of
  entry and 1-8 of index, at a load between 1/3 and 2/3);
- a TTL: one more dict slot and an int (:data:`EXPIRE_ENTRY`);
- the value (:func:`value_size`): a string is its ``bytes`` object; a container is its own
  table (``sys.getsizeof``, O(1), which counts its capacity) plus its elements, estimated
  like Redis's ``objectComputeSize``: the first ``samples`` elements are measured and their
  average is multiplied by the length, so the cost of a write does not grow with the size
  of the value it changes. A sorted set's order index (built lazily) always counts; a
  stream's entries are sampled the same way, its consumer groups and pending entries counted.

The interpreter, the command table, the replication backlog and client buffers are not
counted: ``used_memory`` is the dataset, which is what ``maxmemory`` bounds.
"""

from __future__ import annotations

import sys
from collections import deque
from itertools import islice

from kvrepl.store.values import Stream, ZSet

BYTES_HEADER = sys.getsizeof(b"")  # 33 on 64-bit CPython
DICT_ENTRY = 40
FLOAT_SIZE = sys.getsizeof(1.5)
EXPIRE_ENTRY = DICT_ENTRY + sys.getsizeof(1 << 40)
# A string key: its key and value objects and its slots in ``data`` and ``access``.
STRING_ENTRY = 2 * BYTES_HEADER + 2 * DICT_ENTRY
# A key of any type, less its value.
KEY_ENTRY = BYTES_HEADER + 2 * DICT_ENTRY
# Redis's OBJ_COMPUTE_SIZE_DEF_SAMPLES: how many elements MEMORY USAGE measures by default.
DEFAULT_SAMPLES = 5
# A stream (measured with tracemalloc through XADD/XGROUP/XREADGROUP): its own tables and
# first node; each entry's ID (a tuple and its ms int) and slot in the ID list; each
# consumer group, and each of its pending entries (NACK, PEL and consumer slots).
_STREAM_BASE = 2400
_STREAM_ID = sys.getsizeof((1 << 40, 0)) + sys.getsizeof(1 << 40) + 8
_STREAM_GROUP = 1500
_STREAM_PENDING = 260
# A ZSet's ordered index: per member a (score, member) tuple and its list slot, and the
# SortedList's own objects (its lists, maxes and index; measured with tracemalloc).
_ORDERED_PAIR = sys.getsizeof((1.5, b"")) + 8
_ORDER_INDEX = 450


def string_entry_size(key: bytes, value: bytes) -> int:
    """What a string key costs without a TTL (the common case, kept to one expression)."""
    return STRING_ENTRY + len(key) + len(value)


def _sampled(items: object, count: int, samples: int, per_item: int) -> int:
    """``count`` elements' size from the first ``samples`` (bytes objects)."""
    if not count:
        return 0
    seen = min(count, samples)
    total = sum(map(len, islice(items, seen)))  # type: ignore[call-overload]
    return count * per_item + total * count // seen


def _sampled_pairs(items: dict, count: int, samples: int, per_item: int) -> int:
    """Like :func:`_sampled` for a hash's fields and values."""
    if not count:
        return 0
    seen = min(count, samples)
    total = 0
    for field, value in islice(items.items(), seen):
        total += len(field) + len(value)
    return count * per_item + total * count // seen


def value_size(value: object, samples: int = DEFAULT_SAMPLES) -> int:
    """The estimated bytes held by ``value`` (0 ``samples`` measures every element)."""
    kind = type(value)
    if kind is bytes:
        return BYTES_HEADER + len(value)  # type: ignore[arg-type]
    if kind is bytearray:  # a string changed in place (SETBIT, APPEND): often new, small
        return sys.getsizeof(value)
    take = samples if samples > 0 else sys.maxsize
    if kind is deque:
        return sys.getsizeof(value) + _sampled(value, len(value), take, BYTES_HEADER)
    if kind is dict:  # a hash: field and value objects
        return sys.getsizeof(value) + _sampled_pairs(
            value, len(value), take, 2 * BYTES_HEADER)  # type: ignore[arg-type]
    if kind is set:
        return sys.getsizeof(value) + _sampled(value, len(value), take, BYTES_HEADER)
    if kind is ZSet:
        zset: ZSet = value  # type: ignore[assignment]
        count = len(zset)
        # The order index counts whether built or not: it is built lazily by the first
        # read that needs it, and a read must not change the estimate.
        return _ORDER_INDEX + sys.getsizeof(zset) + sys.getsizeof(zset.scores) + _sampled(
            zset.scores, count, take, BYTES_HEADER + FLOAT_SIZE + _ORDERED_PAIR)
    if kind is Stream:
        return _stream_size(value, take)  # type: ignore[arg-type]
    return sys.getsizeof(value)


def _stream_size(stream: Stream, samples: int) -> int:
    """A stream: entries sampled like a container's (fields and values of the first
    ``samples``), groups and their pending entries counted."""
    entries = stream.entries
    count = len(entries)
    size = _STREAM_BASE + sys.getsizeof(entries) + count * _STREAM_ID
    if count:
        seen = min(count, samples)
        total = 0
        for fields in islice(entries.values(), seen):
            total += sys.getsizeof(fields) + sum(map(len, fields)) + len(fields) * BYTES_HEADER
        size += total * count // seen
    for group in stream.groups.values():
        size += _STREAM_GROUP + len(group.pending) * _STREAM_PENDING
    return size


def key_memory_usage(key: bytes, value: object, has_expire: bool = False,
                     samples: int = DEFAULT_SAMPLES) -> int:
    """The estimated bytes ``key`` costs with ``value`` (and a TTL when ``has_expire``):
    what ``used_memory`` counts for it, and what MEMORY USAGE can report."""
    size = KEY_ENTRY + len(key) + value_size(value, samples)
    return size + EXPIRE_ENTRY if has_expire else size
