"""The cluster follower's key-holder rules (kvrepl.replication.cluster), on every order in
which two shards' streams and the follower's view of a slot changing hands can arrive.

A slot moves from shard A to shard B (``redis-cli --cluster reshard``: MIGRATE propagates
RESTORE-ASKING in B's stream and DEL in A's; CLUSTER SETSLOT ... NODE B, which the
follower learns from a later layout read). Each stream is applied in its own order; nothing
orders them with each other or with the layout read, so every interleaving is tried, and
each must end with the key as the cluster has it: present once, with B's value."""

from __future__ import annotations

import itertools

import pytest

from kvrepl.node import Node
from kvrepl.replication.cluster import Cluster, ClusterFollower, ShardLink
from kvrepl.replication.topology import SLOTS, Shard, key_slot

KEY = b"moving"
SLOT = key_slot(KEY)


def _shard(name: str, slots: tuple[tuple[int, int], ...]) -> Shard:
    return Shard(primary=name, host="127.0.0.1", port=1, slots=slots,
                 members=frozenset({name}), addresses=())


def _dump(value: bytes) -> bytes:
    scratch = Node()
    scratch.execute_command("SET", b"x", value)
    return scratch.execute_command("DUMP", b"x")


class Follower:
    """Two shard links of a follower that is not running: their streams are fed by hand."""

    def __init__(self) -> None:
        self.node = Node()
        engine = self.node.engine
        self.follower = ClusterFollower(engine, Cluster([("127.0.0.1", 1)]), None)  # type: ignore[arg-type]
        others = ((0, SLOT - 1), (SLOT + 1, SLOTS - 1)) if 0 < SLOT < SLOTS - 1 else ()
        self.a = ShardLink(self.follower, _shard("A", ((SLOT, SLOT), *others)))
        self.b = ShardLink(self.follower, _shard("B", ()))
        self.follower.links = [self.a, self.b]
        self.follower.ownership.set_owners(self.follower.links)

    def apply(self, link: ShardLink, *argv: bytes) -> None:
        admitted = link._admit(list(argv))
        if admitted is not None:
            self.node.engine.execute(link.session, admitted)
            assert not link.session.error_log, link.session.error_log

    def flip(self) -> None:
        """The follower reads a layout where B owns the slot."""
        self.a.shard = _shard("A", tuple(r for r in self.a.shard.slots if r != (SLOT, SLOT)))
        self.b.shard = _shard("B", ((SLOT, SLOT),))
        self.follower.ownership.set_owners(self.follower.links)

    def value(self) -> bytes | None:
        return self.node.engine.keyspace.dbs[0].data.get(KEY)


def interleavings(*streams: list[tuple]) -> list[list[tuple]]:
    """Every merge of ``streams`` that keeps each one's order."""
    total = sum(len(s) for s in streams)
    if len(streams) == 1:
        return [list(streams[0])]
    first, rest = streams[0], streams[1:]
    merged = []
    for places in itertools.combinations(range(total), len(first)):
        for other in interleavings(*rest):
            out, fi, oi = [], iter(first), iter(other)
            for i in range(total):
                out.append(next(fi) if i in places else next(oi))
            merged.append(out)
    return merged


def run(steps: list[tuple]) -> bytes | None:
    follower = Follower()
    follower.apply(follower.a, b"SET", KEY, b"a0")  # A's snapshot time: the key is A's
    for step in steps:
        if step[0] == "flip":
            follower.flip()
        else:
            follower.apply(getattr(follower, step[0]), *step[1:])
    return follower.value()


PAYLOAD = _dump(b"a1")


@pytest.mark.parametrize("steps", interleavings(
    [("a", b"SET", KEY, b"a1"), ("a", b"DEL", KEY)],
    [("b", b"RESTORE-ASKING", KEY, b"0", PAYLOAD), ("b", b"SET", KEY, b"b2")],
    [("flip",)]), ids=lambda steps: "|".join(s[0] + (s[1].decode()[:3] if len(s) > 1 else "")
                                           for s in steps))
def test_a_migrated_key_ends_with_the_new_owners_value(steps: list[tuple]) -> None:
    assert run(steps) == b"b2"


@pytest.mark.parametrize("steps", interleavings(
    [("a", b"DEL", KEY)],
    [("b", b"SET", KEY, b"b1")],
    [("flip",)]))
def test_a_key_deleted_before_the_move_then_created_by_the_new_owner(steps: list[tuple]
                                                                     ) -> None:
    # The DEL happened in A before the slot moved, B's SET after (B had no such key): in
    # whatever order the follower sees them, B's key stays.
    assert run(steps) == b"b1"


@pytest.mark.parametrize("steps", interleavings(
    [("a", b"SET", KEY, b"a1"), ("a", b"DEL", KEY)],
    [("b", b"RESTORE-ASKING", KEY, b"0", PAYLOAD), ("b", b"DEL", KEY)],
    [("flip",)]))
def test_a_migrated_key_then_deleted_by_the_new_owner_is_gone(steps: list[tuple]) -> None:
    assert run(steps) is None


@pytest.mark.parametrize("steps", interleavings(
    [("b", b"RESTORE-ASKING", KEY, b"0", PAYLOAD), ("b", b"SET", KEY, b"b2")],
    [("a", b"DEL", KEY)],
    [("flip",)]))
def test_a_slot_moved_back_to_its_former_owner(steps: list[tuple]) -> None:
    """The slot went A -> B, then goes back B -> A: A restores the key (its RESTORE is in
    A's stream, B's DEL in B's; the steps name the sides as the first move did, swapped),
    and B's DEL must not drop A's copy although A is the slot's former owner."""
    follower = Follower()
    follower.apply(follower.a, b"SET", KEY, b"a0")
    follower.flip()  # the slot is B's: A is its former owner
    follower.apply(follower.b, b"SET", KEY, b"b0")
    # Now it moves back, B -> A: A imports (RESTORE in A's stream), B deletes.
    swapped = {"a": "b", "b": "a"}
    for step in steps:
        if step[0] == "flip":
            follower.a.shard, follower.b.shard = follower.b.shard, follower.a.shard
            follower.follower.ownership.set_owners(follower.follower.links)
        else:
            follower.apply(getattr(follower, swapped[step[0]]), *step[1:])
    assert follower.value() == b"b2"
