"""RESP, sans-IO: a request parser (bytes in, argv lists out) and reply encoders (values in,
bytes out). Nothing here touches a socket."""

from kvrepl.protocol.parser import NEED_DATA, RequestParser, split_inline
from kvrepl.protocol.replies import (
    NULL_ARRAY,
    OK,
    PONG,
    QUEUED,
    Push,
    Raw,
    Status,
    Verbatim,
    encode,
)

__all__ = [
    "NEED_DATA", "RequestParser", "split_inline", "NULL_ARRAY", "OK", "PONG", "QUEUED",
    "Push", "Raw", "Status", "Verbatim", "encode",
]
