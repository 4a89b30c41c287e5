"""Pub/Sub: SUBSCRIBE UNSUBSCRIBE PSUBSCRIBE PUNSUBSCRIBE PUBLISH PUBSUB (Redis ``pubsub.c``).

The engine keeps who listens (``pubsub_channels`` / ``pubsub_patterns``: name -> {client id:
session}, in subscription order) and delivers messages (:meth:`Engine.publish`); the session
keeps what it listens to.

One request, several replies: ``SUBSCRIBE a b`` answers with one confirmation per channel,
each a top-level reply (a ``>`` push frame in RESP3). A handler returns one value, so a
command with several confirmations returns them already encoded, concatenated, as a
:class:`~kvrepl.protocol.replies.Raw` (the protocol is known when the handler runs: RESET and
HELLO are the only commands that change it, and they are not pub/sub commands). This keeps the
bytes identical to Redis's, including inside ``EXEC``, where Redis also writes every
confirmation into the EXEC array (so the array holds more replies than it announces). A
single confirmation is returned as a plain :class:`~kvrepl.protocol.replies.Push`, which is
what the embedded API wants to see.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from kvrepl.commands.core import Session, command
from kvrepl.commands.glob import glob_match
from kvrepl.commands.help import help_reply, subcommand_syntax_error
from kvrepl.protocol.replies import Push, Raw, encode

_HELP = [
    "CHANNELS [<pattern>]",
    "    Return the currently active channels matching a <pattern> (default: '*').",
    "NUMPAT",
    "    Return number of subscriptions to patterns.",
    "NUMSUB [<channel> ...]",
    "    Return the number of subscribers for the specified channels, excluding",
    "    pattern subscriptions(default: no channels).",
]


def _replies(s: Session, replies: list[Push]) -> object:
    """One Push, or several as one Raw: see the module docstring."""
    if len(replies) == 1:
        return replies[0]
    return Raw(b"".join(encode(reply, s.resp3) for reply in replies))


# What a session listens to (its own dict) and the engine's registry of who listens, for
# channels (SUBSCRIBE) and patterns (PSUBSCRIBE): the two kinds work alike.
def _channels(s: Session) -> tuple[dict[bytes, None], dict[bytes, dict[int, Session]]]:
    return s.channels, s.engine.pubsub_channels


def _patterns(s: Session) -> tuple[dict[bytes, None], dict[bytes, dict[int, Session]]]:
    return s.patterns, s.engine.pubsub_patterns


def _add(s: Session, kind: Callable[[Session], tuple], name: bytes) -> None:
    mine, registry = kind(s)
    if name not in mine:
        mine[name] = None
        registry.setdefault(name, {})[s.id] = s


def _remove(s: Session, kind: Callable[[Session], tuple], name: bytes) -> None:
    mine, registry = kind(s)
    if name in mine:
        del mine[name]
        subscribers = registry.get(name)
        if subscribers is not None:
            subscribers.pop(s.id, None)
            if not subscribers:
                del registry[name]


def unsubscribe_all(s: Session) -> None:
    """Drop every subscription of ``s`` without telling it (RESET)."""
    for kind in (_channels, _patterns):
        for name in list(kind(s)[0]):
            _remove(s, kind, name)


def _subscribe(kind: Callable[[Session], tuple], word: bytes, s: Session, argv: list[bytes]
               ) -> object:
    """SUBSCRIBE channel [channel ...] / PSUBSCRIBE pattern [pattern ...]: one confirmation
    each."""
    replies = []
    for name in argv[1:]:
        _add(s, kind, name)
        replies.append(Push([word, name, s.subscriptions]))
    return _replies(s, replies)


def _unsubscribe(kind: Callable[[Session], tuple], word: bytes, s: Session,
                 argv: list[bytes]) -> object:
    """UNSUBSCRIBE [channel ...] / PUNSUBSCRIBE [pattern ...]: no argument means all of them
    (a ``nil`` name when there are none)."""
    replies = []
    for name in argv[1:] or list(kind(s)[0]):
        _remove(s, kind, name)
        replies.append(Push([word, name, s.subscriptions]))
    if not replies:
        replies.append(Push([word, None, s.subscriptions]))
    return _replies(s, replies)


command("subscribe")(partial(_subscribe, _channels, b"subscribe"))
command("psubscribe")(partial(_subscribe, _patterns, b"psubscribe"))
command("unsubscribe")(partial(_unsubscribe, _channels, b"unsubscribe"))
command("punsubscribe")(partial(_unsubscribe, _patterns, b"punsubscribe"))


@command("publish")
def publish(s: Session, argv: list[bytes]) -> object:
    """PUBLISH channel message: the number of clients that received it.

    Redis propagates PUBLISH to replicas even though it changes no key
    (``forceCommandPropagation``), so that their subscribers get the message too.
    """
    receivers = s.engine.publish(argv[1], argv[2])
    s.engine.also_propagate(list(argv))
    return receivers


@command("pubsub|channels")
def pubsub_channels(s: Session, argv: list[bytes]) -> object:
    """PUBSUB CHANNELS [pattern]: channels with at least one subscriber."""
    if len(argv) > 3:
        raise subcommand_syntax_error(argv)
    channels = s.engine.pubsub_channels
    if len(argv) == 2:
        return list(channels)
    pattern = argv[2]
    return [channel for channel in channels if glob_match(pattern, channel)]


@command("pubsub|numsub")
def pubsub_numsub(s: Session, argv: list[bytes]) -> object:
    """PUBSUB NUMSUB [channel ...]: a flat array of channel, count (an array in RESP3 too)."""
    channels = s.engine.pubsub_channels
    out: list[object] = []
    for channel in argv[2:]:
        out.append(channel)
        out.append(len(channels.get(channel, ())))
    return out


@command("pubsub|numpat")
def pubsub_numpat(s: Session, argv: list[bytes]) -> object:
    """PUBSUB NUMPAT: how many distinct patterns have subscribers."""
    return len(s.engine.pubsub_patterns)


@command("pubsub|help")
def pubsub_help(s: Session, argv: list[bytes]) -> object:
    """PUBSUB HELP (the sharded subcommands are not implemented, so not listed)."""
    return help_reply(argv, _HELP)
