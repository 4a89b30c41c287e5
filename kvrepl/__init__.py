"""kvrepl: an embeddable, replicated, Redis-compatible key-value store for trio programs."""

__version__ = "0.1.0"

from kvrepl.config import Config  # noqa: E402
from kvrepl.errors import (  # noqa: E402
    DataError,
    KvreplError,
    ReplicaPanic,
    ReplyError,
    WriteSkipped,
    WrongTypeError,
)
from kvrepl.node import Change, ChangesOverflow, Master, Node, Replica  # noqa: E402


def in_asyncio(*nodes: Node) -> object:
    """Run kvrepl nodes inside an asyncio program: see :func:`kvrepl.aio.in_asyncio`."""
    from kvrepl.aio import in_asyncio as run

    return run(*nodes)


__all__ = ["Change", "ChangesOverflow", "Config", "DataError", "KvreplError", "Master", "Node", "Replica",
           "ReplicaPanic", "ReplyError", "WriteSkipped", "WrongTypeError", "__version__", "in_asyncio"]
