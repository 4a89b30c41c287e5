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


def _ordered(s: Session) -> tuple[dict[bytes, None], dict[bytes, None]]:
    """The session's channels and patterns (insertion-ordered dicts)."""
    return s.channels, s.patterns


def _replies(s: Session, replies: list[Push]) -> object:
    """One Push, or several as one Raw: see the module docstring."""
    if len(replies) == 1:
        return replies[0]
    return Raw(b"".join(encode(reply, s.resp3) for reply in replies))


def _subscribe(s: Session, channel: bytes) -> None:
    channels, _ = _ordered(s)
    if channel not in channels:
        channels[channel] = None
        s.engine.pubsub_channels.setdefault(channel, {})[s.id] = s


def _unsubscribe(s: Session, channel: bytes) -> None:
    channels, _ = _ordered(s)
    if channel in channels:
        del channels[channel]
        registry = s.engine.pubsub_channels
        subscribers = registry.get(channel)
        if subscribers is not None:
            subscribers.pop(s.id, None)
            if not subscribers:
                del registry[channel]


def _psubscribe(s: Session, pattern: bytes) -> None:
    _, patterns = _ordered(s)
    if pattern not in patterns:
        patterns[pattern] = None
        s.engine.pubsub_patterns.setdefault(pattern, {})[s.id] = s


def _punsubscribe(s: Session, pattern: bytes) -> None:
    _, patterns = _ordered(s)
    if pattern in patterns:
        del patterns[pattern]
        registry = s.engine.pubsub_patterns
        subscribers = registry.get(pattern)
        if subscribers is not None:
            subscribers.pop(s.id, None)
            if not subscribers:
                del registry[pattern]


def unsubscribe_all(s: Session) -> None:
    """Drop every subscription of ``s`` without telling it (RESET)."""
    channels, patterns = _ordered(s)
    for channel in list(channels):
        _unsubscribe(s, channel)
    for pattern in list(patterns):
        _punsubscribe(s, pattern)


@command("subscribe")
def subscribe(s: Session, argv: list[bytes]) -> object:
    """SUBSCRIBE channel [channel ...]: one confirmation per channel."""
    replies = []
    for channel in argv[1:]:
        _subscribe(s, channel)
        replies.append(Push([b"subscribe", channel, s.subscriptions]))
    return _replies(s, replies)


@command("psubscribe")
def psubscribe(s: Session, argv: list[bytes]) -> object:
    """PSUBSCRIBE pattern [pattern ...]: one confirmation per pattern."""
    replies = []
    for pattern in argv[1:]:
        _psubscribe(s, pattern)
        replies.append(Push([b"psubscribe", pattern, s.subscriptions]))
    return _replies(s, replies)


@command("unsubscribe")
def unsubscribe(s: Session, argv: list[bytes]) -> object:
    """UNSUBSCRIBE [channel ...]: no argument means every channel (``nil`` when none)."""
    channels, _ = _ordered(s)
    targets = argv[1:] or list(channels)
    replies = []
    for channel in targets:
        _unsubscribe(s, channel)
        replies.append(Push([b"unsubscribe", channel, s.subscriptions]))
    if not replies:
        replies.append(Push([b"unsubscribe", None, s.subscriptions]))
    return _replies(s, replies)


@command("punsubscribe")
def punsubscribe(s: Session, argv: list[bytes]) -> object:
    """PUNSUBSCRIBE [pattern ...]: no argument means every pattern (``nil`` when none)."""
    _, patterns = _ordered(s)
    targets = argv[1:] or list(patterns)
    replies = []
    for pattern in targets:
        _punsubscribe(s, pattern)
        replies.append(Push([b"punsubscribe", pattern, s.subscriptions]))
    if not replies:
        replies.append(Push([b"punsubscribe", None, s.subscriptions]))
    return _replies(s, replies)


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
