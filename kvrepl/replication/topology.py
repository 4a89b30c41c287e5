"""A Redis Cluster's layout as a follower needs it: which primary serves which slots.

Sans-IO: the replies of ``CLUSTER SHARDS`` (Redis 7.0) or ``CLUSTER SLOTS`` (older, and the
fallback) in, :class:`Shard` values out; :func:`key_slot` is Redis's ``keyHashSlot``.
"""

from __future__ import annotations

from binascii import crc_hqx
from collections.abc import Iterable
from dataclasses import dataclass

SLOTS = 16384
BRACE = ord("{")  # a key holding it may have a hash tag


def key_slot(key: bytes) -> int:
    """The cluster slot of ``key``: CRC16 (XMODEM, which ``crc_hqx`` with 0 is) of the key,
    or of its hash tag (the bytes between the first ``{`` and the next ``}``, if any)."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1:end]
    return crc_hqx(key, 0) & (SLOTS - 1)


def slot_table(flags: list[bool]) -> bytes:
    """For :func:`keys_in_slots`: one flag per slot, indexed by a key's CRC16, of which a
    slot is the low 14 bits (so the 16,384 flags, four times)."""
    return bytes(flags) * (65536 // SLOTS)


def keys_in_slots(keys: Iterable[bytes], table: bytes) -> list[bytes]:
    """The keys whose slot is flagged in ``table`` (:func:`slot_table`), in order, with
    no Python call per key but ``crc_hqx``: a shard's full sync and a layout read that
    sees slots move check every key (measured ~75 ms a million keys, a third of what
    :func:`key_slot` per key takes)."""
    # A key with a "{" may have a hash tag (its slot is then the tag's CRC's, not the whole
    # key's): the first pass keeps every such key, the second decides it by key_slot.
    found = [key for key in keys if table[crc_hqx(key, 0)] or BRACE in key]
    return [key for key in found if BRACE not in key or table[key_slot(key)]]


@dataclass(frozen=True)
class Shard:
    """One primary, the slot ranges it serves, and the nodes of its shard."""

    primary: str  # node id
    host: str
    port: int
    slots: tuple[tuple[int, int], ...]
    members: frozenset[str]  # node ids of the primary and its replicas
    addresses: tuple[tuple[str, int], ...]  # every node's, for the next discovery
    failed: bool = False  # its primary is down and no replica has taken over yet

    @property
    def slot_count(self) -> int:
        return sum(end - start + 1 for start, end in self.slots)

    def describe_slots(self) -> str:
        """``0-99;200-299`` (no commas: INFO fields are comma separated)."""
        return ";".join(f"{a}-{b}" if a != b else str(a) for a, b in self.slots)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _fields(value: object) -> dict[str, object]:
    """A RESP3 map, or its RESP2 form (a flat list of names and values), as a dict."""
    if isinstance(value, dict):
        return {_text(k): v for k, v in value.items()}
    items = list(value)  # type: ignore[call-overload]
    return {_text(items[i]): items[i + 1] for i in range(0, len(items) - 1, 2)}


def _port(node: dict[str, object], tls: bool) -> int:
    """A node's ``port`` (plain TCP) or ``tls-port``: the one a client of that kind uses,
    else the other (a node with one kind of port only)."""
    first, second = ("tls-port", "port") if tls else ("port", "tls-port")
    return int(node[first] if first in node else node[second])  # type: ignore[call-overload]


def parse_shards(reply: object, tls: bool = False) -> list[Shard]:
    """``CLUSTER SHARDS``: one entry per primary, its slots as a flat list of range bounds
    and its nodes with role and health. A failed primary that still has slots is kept
    (``failed``: its replica has not taken over yet); one without slots is left out (a
    replica took its slots over: that one's entry is the shard now). ``tls``: the nodes'
    addresses are their ``tls-port`` where they have one."""
    shards = []
    for entry in reply:  # type: ignore[attr-defined]
        fields = _fields(entry)
        bounds = [int(b) for b in fields.get("slots", [])]  # type: ignore[union-attr]
        slots = tuple((bounds[i], bounds[i + 1]) for i in range(0, len(bounds) - 1, 2))
        nodes = [_fields(n) for n in fields.get("nodes", [])]  # type: ignore[union-attr]
        primary = next((n for n in nodes if _text(n.get("role")) == "master"), None)
        failed = primary is not None and _text(primary.get("health")) == "fail"
        if primary is None or failed and not slots:
            continue
        host = _text(primary.get("ip") or primary.get("endpoint"))
        shards.append(Shard(
            primary=_text(primary["id"]), host=host, port=_port(primary, tls),
            slots=slots, members=frozenset(_text(n["id"]) for n in nodes), failed=failed,
            addresses=tuple((_text(n.get("ip") or n.get("endpoint")), _port(n, tls))
                            for n in nodes)))
    return shards


def parse_slots(reply: object) -> list[Shard]:
    """``CLUSTER SLOTS``: ``[start, end, [ip, port, id, ...], replicas...]`` per range,
    grouped by primary (it lists no primary that serves no slot). The ports are those of
    the asking connection's kind (TLS or not)."""
    ranges: dict[str, list[tuple[int, int]]] = {}
    first: dict[str, tuple[str, int]] = {}
    members: dict[str, set[str]] = {}
    addresses: dict[str, set[tuple[str, int]]] = {}
    for entry in reply:  # type: ignore[attr-defined]
        start, end, primary, *replicas = entry
        node_id = _text(primary[2])
        ranges.setdefault(node_id, []).append((int(start), int(end)))
        first[node_id] = (_text(primary[0]), int(primary[1]))
        members.setdefault(node_id, {node_id}).update(_text(r[2]) for r in replicas)
        addresses.setdefault(node_id, {first[node_id]}).update(
            (_text(r[0]), int(r[1])) for r in replicas)
    return [Shard(primary=node_id, host=first[node_id][0], port=first[node_id][1],
                  slots=tuple(sorted(spans)), members=frozenset(members[node_id]),
                  addresses=tuple(sorted(addresses[node_id])))
            for node_id, spans in ranges.items()]
