"""kvrepl: an embeddable, replicated, Redis-compatible key-value store for trio programs."""

__version__ = "0.1.0"

from kvrepl.config import Config  # noqa: E402
from kvrepl.errors import KvreplError, ReplyError, WrongTypeError  # noqa: E402
from kvrepl.node import Master, Node  # noqa: E402

__all__ = ["Config", "KvreplError", "Master", "Node", "ReplyError", "WrongTypeError",
           "__version__"]
