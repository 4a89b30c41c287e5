"""RDB format numbers: opcodes, object types and limits (rdb.h, Redis 7.0.15 / 7.2 / 7.4)."""

from __future__ import annotations

#: The version kvrepl writes by default and accepts in DUMP payloads (Redis 7.0).
RDB_VERSION = 10
#: The newest file version the reader understands (Redis 7.4).
MAX_READ_VERSION = 12

# Object types (the byte before a key).
TYPE_STRING = 0
TYPE_LIST = 1
TYPE_SET = 2
TYPE_ZSET = 3
TYPE_HASH = 4
TYPE_ZSET_2 = 5
TYPE_MODULE_PRE_GA = 6
TYPE_MODULE_2 = 7
TYPE_HASH_ZIPMAP = 9
TYPE_LIST_ZIPLIST = 10
TYPE_SET_INTSET = 11
TYPE_ZSET_ZIPLIST = 12
TYPE_HASH_ZIPLIST = 13
TYPE_LIST_QUICKLIST = 14
TYPE_STREAM_LISTPACKS = 15
TYPE_HASH_LISTPACK = 16
TYPE_ZSET_LISTPACK = 17
TYPE_LIST_QUICKLIST_2 = 18
TYPE_STREAM_LISTPACKS_2 = 19
TYPE_SET_LISTPACK = 20
TYPE_STREAM_LISTPACKS_3 = 21
TYPE_HASH_METADATA_PRE_GA = 22
TYPE_HASH_LISTPACK_EX_PRE_GA = 23
TYPE_HASH_METADATA = 24
TYPE_HASH_LISTPACK_EX = 25

TYPE_NAMES = {
    0: "string", 1: "list", 2: "set", 3: "zset", 4: "hash", 5: "zset_2", 6: "module",
    7: "module_2", 9: "hash_zipmap", 10: "list_ziplist", 11: "set_intset", 12: "zset_ziplist",
    13: "hash_ziplist", 14: "list_quicklist", 15: "stream_listpacks", 16: "hash_listpack",
    17: "zset_listpack", 18: "list_quicklist_2", 19: "stream_listpacks_2", 20: "set_listpack",
    21: "stream_listpacks_3", 22: "hash_metadata_pre_ga", 23: "hash_listpack_ex_pre_ga",
    24: "hash_metadata", 25: "hash_listpack_ex",
}


def is_object_type(rtype: int, version: int = RDB_VERSION) -> bool:
    """rdbIsObjectType of the Redis release that writes ``version`` (7.0: 0..7, 9..19)."""
    top = {10: 19, 11: 21}.get(version, 25 if version >= 12 else 19)
    return 0 <= rtype <= 7 or 9 <= rtype <= top


# Opcodes.
OP_SLOT_INFO = 244
OP_FUNCTION2 = 245
OP_FUNCTION_PRE_GA = 246
OP_MODULE_AUX = 247
OP_IDLE = 248
OP_FREQ = 249
OP_AUX = 250
OP_RESIZEDB = 251
OP_EXPIRETIME_MS = 252
OP_EXPIRETIME = 253
OP_SELECTDB = 254
OP_EOF = 255

# Length encodings.
LEN_6BIT = 0
LEN_14BIT = 1
LEN_32BIT = 0x80
LEN_64BIT = 0x81
ENC_INT8 = 0
ENC_INT16 = 1
ENC_INT32 = 2
ENC_LZF = 3

# Module value opcodes (module.c).
MODULE_OPCODE_EOF = 0
MODULE_OPCODE_SINT = 1
MODULE_OPCODE_UINT = 2
MODULE_OPCODE_FLOAT = 3
MODULE_OPCODE_DOUBLE = 4
MODULE_OPCODE_STRING = 5
MODULE_NAME_CHARSET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

# Quicklist node containers.
QUICKLIST_PLAIN = 1
QUICKLIST_PACKED = 2
#: quicklist.c packed_threshold: an element this large gets a PLAIN node of its own.
QUICKLIST_PACKED_THRESHOLD = 1 << 30
#: quicklist.c optimization_level: node byte limits for list-max-listpack-size -1..-5.
QUICKLIST_SIZE_LEVELS = (4096, 8192, 16384, 32768, 65536)
QUICKLIST_SIZE_SAFETY_LIMIT = 8192
QUICKLIST_SIZE_ESTIMATE_OVERHEAD = 8

# Streams (t_stream.c).
STREAM_ITEM_FLAG_DELETED = 1
STREAM_ITEM_FLAG_SAMEFIELDS = 2
STREAM_LISTPACK_MAX_SIZE = (1 << 30)
#: SCG_INVALID_ENTRIES_READ: a group's entries_read is unknown (stored as 2**64-1).
STREAM_INVALID_ENTRIES_READ = -1

UINT64_MASK = (1 << 64) - 1

# The AUX fields Redis 7.0 writes, in order (rdbSaveInfoAuxFields).
REDIS_VERSION = b"7.0.15"


def module_type_name(module_id: int) -> str:
    """The 9-character module type name packed in a module id (moduleTypeNameByID)."""
    chars = []
    module_id >>= 10
    for _ in range(9):
        chars.append(MODULE_NAME_CHARSET[module_id & 63])
        module_id >>= 6
    return "".join(reversed(chars))
