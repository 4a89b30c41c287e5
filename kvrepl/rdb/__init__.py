"""kvrepl's RDB codec (sans-IO: bytes and file objects in, bytes and events out).

Reading: :class:`RdbParser` (push parser), :func:`iter_events`, :func:`iter_entries`,
:func:`load_into`. Writing: :class:`RdbWriter`, :func:`dump_keyspace`, :func:`dumps`.
DUMP / RESTORE payloads: :func:`dump_value`, :func:`load_value`.
"""

from kvrepl.rdb.errors import DumpPayloadError, RdbError
from kvrepl.rdb.events import (
    NEED_DATA,
    Aux,
    End,
    Entry,
    Function,
    ModuleAux,
    ResizeDb,
    SelectDb,
    SlotInfo,
)
from kvrepl.rdb.load import LoadResult, StagedLoad, iter_entries, iter_events, load_into
from kvrepl.rdb.payload import dump_value, load_value
from kvrepl.rdb.reader import RdbParser
from kvrepl.rdb.writer import RdbWriter, default_aux, dump_keyspace, dumps, iter_dump

__all__ = [
    "NEED_DATA", "Aux", "DumpPayloadError", "End", "Entry", "Function", "LoadResult",
    "ModuleAux", "RdbError", "RdbParser", "RdbWriter", "ResizeDb", "SelectDb", "SlotInfo",
    "StagedLoad",
    "default_aux", "dump_keyspace", "dump_value", "dumps", "iter_dump", "iter_entries",
    "iter_events", "load_into", "load_value",
]
