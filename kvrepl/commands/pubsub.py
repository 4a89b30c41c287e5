"""Pub/Sub: SUBSCRIBE UNSUBSCRIBE PSUBSCRIBE PUNSUBSCRIBE PUBLISH PUBSUB, and the sharded
SSUBSCRIBE SUNSUBSCRIBE SPUBLISH (Redis ``pubsub.c``).

Without cluster mode (kvrepl has none) a shard channel is a channel of its own namespace:
its messages are ``smessage``, its confirmations count only the shard channels of the client,
and patterns never match it.

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
from kvrepl.errors import ReplyError
from kvrepl.protocol.replies import DeferredArray, Push, Raw, encode

_HELP = [
    "CHANNELS [<pattern>]",
    "    Return the currently active channels matching a <pattern> (default: '*').",
    "NUMPAT",
    "    Return number of subscriptions to patterns.",
    "NUMSUB [<channel> ...]",
    "    Return the number of subscribers for the specified channels, excluding",
    "    pattern subscriptions(default: no channels).",
    "SHARDCHANNELS [<pattern>]",
    "    Return the currently active shard level channels matching a <pattern> (default: '*').",
    "SHARDNUMSUB [<shardchannel> ...]",
    "    Return the number of subscribers for the specified shard level channel(s)",
]


def _replies(s: Session, replies: list[Push]) -> object:
    """One Push, or several as one Raw: see the module docstring."""
    if len(replies) == 1:
        return replies[0]
    return Raw(b"".join(encode(reply, s.resp3) for reply in replies))


# What a session listens to (its own dict) and the engine's registry of who listens, for
# channels (SUBSCRIBE), patterns (PSUBSCRIBE) and shard channels (SSUBSCRIBE): the kinds
# work alike (Redis's pubsubtype).
def _channels(s: Session) -> tuple[dict[bytes, None], dict[bytes, dict[int, Session]]]:
    return s.channels, s.engine.pubsub_channels


def _patterns(s: Session) -> tuple[dict[bytes, None], dict[bytes, dict[int, Session]]]:
    return s.patterns, s.engine.pubsub_patterns


def _shard_channels(s: Session) -> tuple[dict[bytes, None], dict[bytes, dict[int, Session]]]:
    return s.shard_channels, s.engine.pubsub_shard_channels


def _count(s: Session, kind: Callable[[Session], tuple]) -> int:
    """The count a confirmation carries: shard channels count apart (subscriptionCount)."""
    return len(s.shard_channels) if kind is _shard_channels else s.subscriptions


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
    for kind in (_channels, _patterns, _shard_channels):
        for name in list(kind(s)[0]):
            _remove(s, kind, name)


def _subscribe(kind: Callable[[Session], tuple], word: bytes, s: Session, argv: list[bytes]
               ) -> object:
    """SUBSCRIBE channel [channel ...] / PSUBSCRIBE pattern [pattern ...]: one confirmation
    each."""
    if kind is _shard_channels and s.in_exec:
        # ssubscribeCommand: unlike SUBSCRIBE, refused to a DENY BLOCKING client (MULTI too)
        raise ReplyError("ERR SSUBSCRIBE isn't allowed for a DENY BLOCKING client")
    replies = []
    for name in argv[1:]:
        _add(s, kind, name)
        replies.append(Push([word, name, _count(s, kind)]))
    return _replies(s, replies)


def _unsubscribe(kind: Callable[[Session], tuple], word: bytes, s: Session,
                 argv: list[bytes]) -> object:
    """UNSUBSCRIBE [channel ...] / PUNSUBSCRIBE [pattern ...]: no argument means all of them
    (a ``nil`` name when there are none)."""
    replies = []
    for name in argv[1:] or list(kind(s)[0]):
        _remove(s, kind, name)
        replies.append(Push([word, name, _count(s, kind)]))
    if not replies:
        replies.append(Push([word, None, _count(s, kind)]))
    return _replies(s, replies)


command("subscribe")(partial(_subscribe, _channels, b"subscribe"))
command("psubscribe")(partial(_subscribe, _patterns, b"psubscribe"))
command("unsubscribe")(partial(_unsubscribe, _channels, b"unsubscribe"))
command("punsubscribe")(partial(_unsubscribe, _patterns, b"punsubscribe"))
command("ssubscribe")(partial(_subscribe, _shard_channels, b"ssubscribe"))
command("sunsubscribe")(partial(_unsubscribe, _shard_channels, b"sunsubscribe"))


@command("publish")
def publish(s: Session, argv: list[bytes]) -> object:
    """PUBLISH channel message: the number of clients that received it.

    Redis propagates PUBLISH to replicas even though it changes no key
    (``forceCommandPropagation``), so that their subscribers get the message too.
    """
    receivers = s.engine.publish(argv[1], argv[2])
    s.engine.also_propagate(list(argv))
    return receivers


@command("spublish")
def spublish(s: Session, argv: list[bytes]) -> object:
    """SPUBLISH shardchannel message: the number of clients that received it; propagated
    to replicas as PUBLISH is outside cluster mode (spublishCommand)."""
    receivers = s.engine.publish_shard(argv[1], argv[2])
    s.engine.also_propagate(list(argv))
    return receivers


def _channel_list(argv: list[bytes], channels: dict[bytes, object]) -> DeferredArray:
    """channelList: the channels with subscribers, those matching the pattern if given
    (the length set after them)."""
    if len(argv) > 3:
        raise subcommand_syntax_error(argv)
    if len(argv) == 2:
        return DeferredArray(channels)
    pattern = argv[2]
    return DeferredArray(channel for channel in channels if glob_match(pattern, channel))


def _numsub(argv: list[bytes], channels: dict[bytes, dict[int, Session]]) -> list[object]:
    """A flat array of channel, count (an array in RESP3 too)."""
    out: list[object] = []
    for channel in argv[2:]:
        out.append(channel)
        out.append(len(channels.get(channel, ())))
    return out


@command("pubsub|channels")
def pubsub_channels(s: Session, argv: list[bytes]) -> object:
    """PUBSUB CHANNELS [pattern]: channels with at least one subscriber."""
    return _channel_list(argv, s.engine.pubsub_channels)


@command("pubsub|shardchannels")
def pubsub_shardchannels(s: Session, argv: list[bytes]) -> object:
    """PUBSUB SHARDCHANNELS [pattern]: shard channels with at least one subscriber."""
    return _channel_list(argv, s.engine.pubsub_shard_channels)


@command("pubsub|numsub")
def pubsub_numsub(s: Session, argv: list[bytes]) -> object:
    """PUBSUB NUMSUB [channel ...]."""
    return _numsub(argv, s.engine.pubsub_channels)


@command("pubsub|shardnumsub")
def pubsub_shardnumsub(s: Session, argv: list[bytes]) -> object:
    """PUBSUB SHARDNUMSUB [shardchannel ...]."""
    return _numsub(argv, s.engine.pubsub_shard_channels)


@command("pubsub|numpat")
def pubsub_numpat(s: Session, argv: list[bytes]) -> object:
    """PUBSUB NUMPAT: how many distinct patterns have subscribers."""
    return len(s.engine.pubsub_patterns)


@command("pubsub|help")
def pubsub_help(s: Session, argv: list[bytes]) -> object:
    """PUBSUB HELP."""
    return help_reply(argv, _HELP)
