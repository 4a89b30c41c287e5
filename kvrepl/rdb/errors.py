"""The RDB codec's errors."""

from __future__ import annotations

from contextvars import ContextVar

from kvrepl.errors import KvreplError, ReplyError


class RdbError(KvreplError):
    """An RDB file or DUMP payload is corrupt, truncated or uses something kvrepl can't load.

    The message names the byte offset of the problem and the key being read, e.g.
    ``"Listpack integrity check failed ... at offset 1234 (key b'foo')"``.
    """

    def __init__(self, message: str, offset: int | None = None, key: bytes | None = None):
        super().__init__(message)
        self.offset = offset
        self.key = key


class DumpPayloadError(RdbError, ReplyError):
    """RESTORE's errors, with Redis's exact text (``ERR DUMP payload version or checksum are
    wrong`` / ``ERR Bad data format``); also a :class:`~kvrepl.errors.ReplyError`."""

    def __init__(self, message: str) -> None:
        ReplyError.__init__(self, message)
        self.offset = None
        self.key = None


#: sanitize-dump-payload for the decoding under way in this context (a trio task has its
#: own): True checks every encoded blob deeply, as Redis's ``yes`` does; False skips the
#: checks that only guard the encoded layout Redis keeps in memory and kvrepl never keeps
#: (listpack backlens and entry counts, ziplist prevlens, tail offsets and counts, intset
#: order). Whatever kvrepl needs to decode each element, or to hold exactly the elements
#: the blob has (no duplicates), is checked either way. Set by the parser for its work.
DEEP_CHECKS: ContextVar[bool] = ContextVar("kvrepl_rdb_deep_checks", default=True)


# Internal signals of the byte readers; the parser turns them into NEED_DATA / RdbError.
class Incomplete(Exception):
    """The buffer ends before the item does; ``need`` is the buffer length required."""

    __slots__ = ("need",)

    def __init__(self, need: int) -> None:
        self.need = need


class Corrupt(Exception):
    """Bad data at buffer position ``pos`` (None: at the start of the current item)."""

    def __init__(self, message: str, pos: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos
