"""DUMP / RESTORE payloads (createDumpPayload / verifyDumpPayload, cluster.c 7.0.15):
``<type byte> <value as in an RDB file> <RDB version, 2 bytes LE> <CRC64, 8 bytes LE>``."""

from __future__ import annotations

from typing import Any

from kvrepl.rdb import constants as C
from kvrepl.rdb.crc import crc64
from kvrepl.rdb.errors import DumpPayloadError, RdbError
from kvrepl.rdb.primitives import read_len, read_str
from kvrepl.rdb.reader import EMPTY, decode_object
from kvrepl.rdb.writer import RdbWriter

VERSION_OR_CHECKSUM = "ERR DUMP payload version or checksum are wrong"
BAD_DATA_FORMAT = "ERR Bad data format"
_FOOTER_VERSION = C.RDB_VERSION.to_bytes(2, "little")


def dump_value(value: object, *, config: Any = None, compression: bool = True) -> bytes:
    """The DUMP payload of a store value (RDB version 10, encodings as Redis 7.0)."""
    encoded = RdbWriter(config=config, compression=compression).encode_value(value)
    if encoded is None:
        raise ValueError("cannot DUMP an empty collection")
    rtype, body = encoded
    data = bytes((rtype,)) + body + _FOOTER_VERSION
    return data + crc64(data).to_bytes(8, "little")


def check_payload(payload: bytes) -> int:
    """verifyDumpPayload: the payload's RDB version; DumpPayloadError when the version is
    newer than 10 or the CRC64 is wrong (a zero CRC is not special here)."""
    if len(payload) < 10:
        raise DumpPayloadError(VERSION_OR_CHECKSUM)
    version = payload[-10] | (payload[-9] << 8)
    if version > C.RDB_VERSION:
        raise DumpPayloadError(VERSION_OR_CHECKSUM)
    if crc64(memoryview(payload)[:-8]) != int.from_bytes(payload[-8:], "little"):
        raise DumpPayloadError(VERSION_OR_CHECKSUM)
    return version


def load_value(payload: bytes, *, deep: bool = True) -> object:
    """The store value in a DUMP payload, as RESTORE reads it in Redis 7.0.15; ``deep``:
    sanitize-dump-payload's deep checks of encoded blobs (see errors.DEEP_CHECKS).

    Raises DumpPayloadError("ERR DUMP payload version or checksum are wrong") or
    DumpPayloadError("ERR Bad data format") (also for empty collections, module values and
    types newer than Redis 7.0's: 20 and up).
    """
    check_payload(payload)
    if len(payload) == 10:
        raise DumpPayloadError(BAD_DATA_FORMAT)
    rtype = payload[0]
    if not C.is_object_type(rtype, C.RDB_VERSION):
        raise DumpPayloadError(BAD_DATA_FORMAT)
    try:
        value, _ = decode_object(rtype, memoryview(payload)[1:-10], deep=deep)
    except RdbError:
        raise DumpPayloadError(BAD_DATA_FORMAT) from None
    if value is EMPTY:
        raise DumpPayloadError(BAD_DATA_FORMAT)
    return value


def sanitized_blobs(payload: bytes) -> int:
    """How many encoded blobs Redis 7.0's deep sanitization of ``payload`` validates, as it
    counts them in INFO's dump_payload_sanitizations (rdbLoadObject): an intset, a hash or
    zset listpack, each packed quicklist node, each stream listpack node. ``payload`` must
    be valid (checked by :func:`load_value` first)."""
    rtype = payload[0]
    if rtype in (C.TYPE_SET_INTSET, C.TYPE_HASH_LISTPACK, C.TYPE_ZSET_LISTPACK):
        return 1
    body = bytes(payload[1:-10])
    if rtype == C.TYPE_LIST_QUICKLIST_2:
        nodes, pos = read_len(body, 0)
        packed = 0
        for _ in range(nodes):
            container, pos = read_len(body, pos)
            _, pos = read_str(body, pos)
            packed += container == 2
        return packed
    if rtype in (C.TYPE_STREAM_LISTPACKS, C.TYPE_STREAM_LISTPACKS_2, C.TYPE_STREAM_LISTPACKS_3):
        return read_len(body, 0)[0]
    return 0
