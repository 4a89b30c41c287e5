"""The events :class:`~kvrepl.rdb.reader.RdbParser` returns, in file order."""

from __future__ import annotations

from typing import NamedTuple


class _NeedData:
    """Returned by ``next_event()`` when the parser needs more bytes (a singleton)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()


class Aux(NamedTuple):
    """An AUX field (``redis-ver``, ``ctime``, ``repl-id`` ...); integers arrive as text."""

    name: bytes
    value: bytes


class SelectDb(NamedTuple):
    """SELECTDB: the following keys belong to database ``index``."""

    index: int


class ResizeDb(NamedTuple):
    """RESIZEDB: a size hint for the current database."""

    db_size: int
    expires_size: int


class Entry(NamedTuple):
    """One key: ``value`` is a store value (bytes, deque, dict, set, ZSet, Stream);
    ``expire_ms`` absolute unix ms or None; ``lru_idle`` seconds / ``lfu_freq`` 0..255 or
    None when the file has no IDLE / FREQ opcode for the key."""

    db: int
    key: bytes
    value: object
    expire_ms: int | None
    lru_idle: int | None
    lfu_freq: int | None


class ModuleAux(NamedTuple):
    """MODULE_AUX data that was skipped (only with ``on_module="skip"``)."""

    module_id: int
    module_name: str
    when: int


class Function(NamedTuple):
    """A function library (FUNCTION2, or 7.0-rc FUNCTION translated to the same form):
    ``code`` is the library source, starting with ``#!<engine> name=<name>``."""

    code: bytes
    pre_ga: bool = False


class SlotInfo(NamedTuple):
    """SLOT_INFO (RDB 12, cluster mode): a size hint for one hash slot."""

    slot: int
    slot_size: int
    expires_slot_size: int


class End(NamedTuple):
    """EOF: ``checksum_ok`` is True when the CRC64 was verified, None when not checked (RDB
    version < 5, a zero checksum = saved with rdbchecksum no, or verification off). A wrong
    checksum raises RdbError instead."""

    checksum_ok: bool | None
    checksum: int | None = None
