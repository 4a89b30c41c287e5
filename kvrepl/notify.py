"""Keyspace notifications (Redis's ``notify.c``): ``notify-keyspace-events`` and the events
commands fire on ``__keyspace@<db>__:<key>`` and ``__keyevent@<db>__:<event>``.

A family fires an event with one line where Redis calls ``notifyKeyspaceEvent``::

    notify(s, STRING, b"set", key)

It costs one bit test while the class is off. Events are published synchronously, in the
middle of the command, as Redis does: a subscriber that runs the command itself (RESP3)
gets the messages before the command's reply. Three events come from the store rather than
from a command, and the engine wires them while their class is on: ``new`` (a key added,
:meth:`~kvrepl.store.Database.add`), ``expired`` (lazy and active expiry) and ``keymiss``
(a read that found nothing). ``evicted`` is :meth:`Engine.key_evicted
<kvrepl.commands.core.Engine.key_evicted>`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kvrepl.commands.core import Session

# server.h's NOTIFY_* classes
KEYSPACE = 1 << 0  # K
KEYEVENT = 1 << 1  # E
GENERIC = 1 << 2  # g
STRING = 1 << 3  # $
LIST = 1 << 4  # l
SET = 1 << 5  # s
HASH = 1 << 6  # h
ZSET = 1 << 7  # z
EXPIRED = 1 << 8  # x
EVICTED = 1 << 9  # e
STREAM = 1 << 10  # t
KEY_MISS = 1 << 11  # m (not part of A)
MODULE = 1 << 13  # d
NEW = 1 << 14  # n (not part of A)
ALL = GENERIC | STRING | LIST | SET | HASH | ZSET | EXPIRED | EVICTED | STREAM | MODULE

_CLASSES = {"A": ALL, "g": GENERIC, "$": STRING, "l": LIST, "s": SET, "h": HASH, "z": ZSET,
            "x": EXPIRED, "e": EVICTED, "K": KEYSPACE, "E": KEYEVENT, "t": STREAM,
            "m": KEY_MISS, "d": MODULE, "n": NEW}
# keyspaceEventsFlagsToString's order
_TYPE_ORDER = "g$lshzxetdn"
_CHANNEL_ORDER = "KEm"


def parse_classes(text: str) -> int:
    """keyspaceEventsStringToFlags: ``"KEA"`` -> the flags; ValueError with Redis's message
    for a character that names no class."""
    flags = 0
    for char in text:
        bit = _CLASSES.get(char)
        if bit is None:
            raise ValueError("Invalid event class character. Use 'Ag$lshzxeKEtmdn'.")
        flags |= bit
    return flags


def format_classes(flags: object) -> str:
    """keyspaceEventsFlagsToString: the canonical spelling CONFIG GET answers."""
    assert isinstance(flags, int)
    if flags & ALL == ALL:
        out = "A"  # and no "n" after it, even when set: Redis's own spelling
    else:
        out = "".join(c for c in _TYPE_ORDER if flags & _CLASSES[c])
    return out + "".join(c for c in _CHANNEL_ORDER if flags & _CLASSES[c])


def firing(flags: int) -> int:
    """The classes whose events are published under ``flags``: none unless K or E asks for
    a channel (modules aside, Redis publishes nothing then either)."""
    return flags & ~(KEYSPACE | KEYEVENT) if flags & (KEYSPACE | KEYEVENT) else 0


def notify(s: Session, cls: int, event: bytes, key: bytes, db: int | None = None) -> None:
    """``notifyKeyspaceEvent(cls, event, key, db)`` for the command ``s`` runs (``db``
    defaults to the client's)."""
    engine = s.engine
    if engine.notify_classes & cls:
        engine.notify_keyspace_event(event, key, s.db.id if db is None else db)


def replied(s: Session) -> None:
    """The point of the running command where Redis adds its reply, for a command that
    fires events after it: what the client receives itself from here on (RESP3, its own
    keyspace events) is sent after the reply, as Redis writes it."""
    s.engine.replying = s


def channels(flags: int, event: bytes, key: bytes, db: int) -> list[tuple[bytes, bytes]]:
    """The (channel, message) pairs one event is published as, in Redis's order."""
    out = []
    if flags & KEYSPACE:
        out.append((b"__keyspace@%d__:%s" % (db, key), event))
    if flags & KEYEVENT:
        out.append((b"__keyevent@%d__:%s" % (db, event), key))
    return out
