"""DEBUG's views of a value's low-level structure (Redis 7.0 ``debug.c``): SDSLEN, LISTPACK,
QUICKLIST, HTSTATS and HTSTATS-KEY, answered from what kvrepl really holds.

kvrepl keeps values as Python objects and encodes them as Redis would only when it writes an
RDB payload (:class:`~kvrepl.rdb.writer.RdbWriter`). So:

* LISTPACK and QUICKLIST print (on stdout, as Redis's ``lpRepr`` / ``quicklistRepr`` do)
  the listpack and quicklist nodes the RDB writer builds for the value, which are the ones
  Redis would hold for the same contents. Addresses are offsets: there is no C pointer.
* SDSLEN gives the sds Redis would allocate for the key and the value as kvrepl stores them:
  the header type ``sdsReqType`` picks for the length, no spare room (kvrepl holds exactly
  the bytes), and the header + bytes + terminator as the allocation, with no allocator
  rounding (kvrepl does not run jemalloc; INFO says ``mem_allocator:libc``).
* HTSTATS and HTSTATS-KEY report the real tables: a Python dict or set's slot count and its
  element count. CPython's tables use open addressing, so there are no chains: Redis's
  chain-length lines are left out rather than invented.
"""

from __future__ import annotations

import sys
from collections import deque

from kvrepl.commands.cmem import sds_header
from kvrepl.errors import ReplyError
from kvrepl.protocol.replies import Status, Verbatim
from kvrepl.rdb import listpack, lzf
from kvrepl.rdb.primitives import read_len, read_str
from kvrepl.rdb.writer import RdbWriter
from kvrepl.store.encoding import object_encoding
from kvrepl.store.values import ZSet

NO_SUCH_KEY = "ERR no such key"
_MIN_COMPRESS_BYTES = 48  # quicklist.c MIN_COMPRESS_BYTES
_MIN_COMPRESS_IMPROVE = 8  # quicklist.c MIN_COMPRESS_IMPROVE


# -- SDSLEN ---------------------------------------------------------------------------------

def _sds_header(size: int) -> int:
    """The header bytes of the sds type sdsReqType picks for ``size`` bytes (sdshdr5 for
    under 32, then the types of a growable sds)."""
    return 1 if size < 1 << 5 else sds_header(size)


def sdslen(key: bytes, value: object, config: object) -> Status:
    """DEBUG SDSLEN: the key's and the string value's sds as Redis would allocate them."""
    if not isinstance(value, bytes | bytearray) or object_encoding(value, config) == b"int":
        raise ReplyError("ERR Not an sds encoded string.")
    # dbAdd's sdsdup: sdsnewlen, whose empty sdshdr5 becomes an sdshdr8
    key_alloc = (_sds_header(len(key)) if key else 3) + len(key) + 1
    if object_encoding(value, config) == b"embstr":
        value_alloc = 3 + len(value) + 1  # embedded: always an sdshdr8 after the robj
    else:
        value_alloc = _sds_header(len(value)) + len(value) + 1
    return Status(b"key_sds_len:%d, key_sds_avail:0, key_zmalloc: %d, val_sds_len:%d, "
                  b"val_sds_avail:0, val_zmalloc: %d"
                  % (len(key), key_alloc, len(value), value_alloc))


# -- LISTPACK and QUICKLIST ----------------------------------------------------------------

def _entry_header(first: int) -> int:
    """lpCurrentEncodedSizeBytes: the bytes of an entry's encoding header (as Redis counts
    them: one for every integer, the 13-bit one included)."""
    if 0xE0 <= first < 0xF0:
        return 2  # 12-bit string length
    if first == 0xF0:
        return 5  # 32-bit string length
    return 1


def lp_repr(lp: bytes) -> str:
    """What Redis's lpRepr prints for listpack ``lp`` (offsets where it prints addresses)."""
    values = listpack.parse(lp)
    out = [f"{{total bytes {len(lp)}}} {{num entries {len(values)}}}\n"]
    p = 6
    for index, value in enumerate(values):
        first = lp[p]
        header = _entry_header(first)
        encoded = _encoded_size(lp, p)
        back = len(listpack.encode_backlen(encoded))
        raw = lp[p:p + encoded + back]
        shown = value[:40] + b"..." if len(value) > 40 else value
        out.append("{\n"
                   f"\taddr: 0x{p:08x},\n"
                   f"\tindex: {index:2d},\n"
                   f"\toffset: {p},\n"
                   f"\thdr+entrylen+backlen: {encoded + back:2d},\n"
                   f"\thdrlen: {header:3d},\n"
                   f"\tbacklen: {back:2d},\n"
                   f"\tpayload: {encoded - header}\n"
                   "\tbytes: " + "".join(f"{b:02x}|" for b in raw) + "\n"
                   "\t[str]" + shown.decode("latin-1") + "\n}\n")
        p += encoded + back
    out.append("{end}\n\n")
    return "".join(out)


def _encoded_size(lp: bytes, p: int) -> int:
    """lpCurrentEncodedSizeUnsafe: header plus payload of the entry at ``p``."""
    first = lp[p]
    if first < 0x80:
        return 1
    if first < 0xC0:
        return 1 + (first & 0x3F)
    if first < 0xE0:
        return 2
    if first < 0xF0:
        return 2 + (((first & 0x0F) << 8) | lp[p + 1])
    if first == 0xF0:
        return 5 + int.from_bytes(lp[p + 1:p + 5], "little")
    return 1 + {0xF1: 2, 0xF2: 3, 0xF3: 4, 0xF4: 8}[first]


def _value(s: object, key: bytes) -> object:
    value = s.db.lookup(key)
    if value is None:
        raise ReplyError(NO_SUCH_KEY)
    return value


def listpack_repr(s: object, key: bytes) -> Status:
    """DEBUG LISTPACK key: print the value's listpack (a small hash or sorted set)."""
    value = _value(s, key)
    config = s.engine.config
    if object_encoding(value, config) != b"listpack":
        raise ReplyError("ERR Not a listpack encoded object.")
    _, body = RdbWriter(config=config, compression=False).encode_value(value)
    blob, _ = read_str(body, 0)
    _print(lp_repr(blob))
    return Status(b"Listpack structure printed on stdout")


def quicklist_nodes(value: deque, config: object) -> list[tuple[bool, bytes]]:
    """The list's quicklist nodes as Redis builds them: ``(plain, bytes)``, the bytes a
    listpack for a packed node and the element for a plain one."""
    _, body = RdbWriter(config=config, compression=False).encode_value(value)
    count, pos = read_len(body, 0)
    nodes = []
    for _ in range(count):
        container, pos = read_len(body, pos)
        node, pos = read_str(body, pos)
        nodes.append((container == 1, node))
    return nodes


def quicklist_repr(s: object, key: bytes, full: int) -> Status:
    """DEBUG QUICKLIST key [0|1]: print the list's quicklist (its nodes, and with 1 each
    node's listpack)."""
    value = _value(s, key)
    config = s.engine.config
    if object_encoding(value, config) != b"quicklist":
        raise ReplyError("ERR Not a quicklist encoded object.")
    nodes = quicklist_nodes(value, config)
    depth = config.list_compress_depth
    out = [f"{{count : {len(value)}}}\n{{len : {len(nodes)}}}\n"
           f"{{fill : {max(config.list_max_listpack_size, -5)}}}\n{{compress : {depth}}}\n"
           "{bookmark_count : 0}\n"]
    for index, (plain, node) in enumerate(nodes):
        # __quicklistCompress: nodes farther than ``depth`` from both ends are LZF'd when
        # that saves enough (plain nodes too)
        inner = depth and depth <= index < len(nodes) - depth
        lzf_ok = inner and len(node) >= _MIN_COMPRESS_BYTES and lzf.compress(
            node, len(node) - _MIN_COMPRESS_IMPROVE - 1) is not None
        entries = 1 if plain else len(listpack.parse(node))
        out.append(f"{{quicklist node({index})\n"
                   f"{{container : {'PLAIN' if plain else 'PACKED'}, encoding: "
                   f"{'LZF' if lzf_ok else 'RAW'}, size: {len(node)}, count: {entries}, "
                   "recompress: 0, attempted_compress: 0}\n")
        if full:
            if plain:
                out.append(f"{{ entry : {node.decode('latin-1')} }}\n")
            else:
                out.append("{ listpack:\n" + lp_repr(node) + "}\n")
            out.append("}\n")
    _print("".join(out))
    return Status(b"Quicklist structure printed on stdout")


def _print(text: str) -> None:
    """Redis printf()s these to its stdout; so does kvrepl (a server's log, usually)."""
    sys.stdout.write(text)
    sys.stdout.flush()


# -- HTSTATS and HTSTATS-KEY ---------------------------------------------------------------

def _calibrate_dict() -> tuple[int, int, int]:
    """(fixed bytes, bytes a slot's index takes at 1 byte, bytes an entry) of a CPython
    dict of bytes keys, measured: sys.getsizeof is then fixed + index + usable * entry."""
    small = {b"a": 1}  # 8 slots, 5 usable
    bigger = {b"%d" % i: i for i in range(6)}  # 16 slots, 10 usable
    entry = (sys.getsizeof(bigger) - sys.getsizeof(small) - 8) // 5
    return sys.getsizeof(small) - 8 - 5 * entry, 1, entry


_DICT_FIXED, _, _DICT_ENTRY = _calibrate_dict()
_SET_FIXED = sys.getsizeof(set())
_SET_ENTRY = (sys.getsizeof({b"%d" % i for i in range(5)}) - _SET_FIXED) // 32


def dict_slots(table: dict) -> int | None:
    """The slot count of a CPython dict's table, from its size; None if it does not fit
    the layout measured at import (another interpreter)."""
    size = sys.getsizeof(table)
    for log2 in range(3, 48):
        slots = 1 << log2
        index = slots * (1 if log2 < 8 else 2 if log2 < 16 else 4 if log2 < 32 else 8)
        if _DICT_FIXED + index + (2 * slots // 3) * _DICT_ENTRY == size:
            return slots
    return None


def set_slots(table: set) -> int:
    """The slot count of a CPython set's table (8 inline slots until it grows)."""
    extra = sys.getsizeof(table) - _SET_FIXED
    return extra // _SET_ENTRY if extra else 8


def _table_stats(used: int, slots: int | None) -> str:
    head = "Hash table 0 stats (main hash table):\n"
    if not used:
        return head + "No stats available for empty dictionaries\n"
    size = f" table size: {slots}\n" if slots is not None else ""
    return head + size + f" number of elements: {used}\n"


def htstats(s: object, arg: bytes) -> Verbatim:
    """DEBUG HTSTATS dbid: the keyspace's and the expires' tables."""
    from kvrepl.commands.args import parse_int

    dbid = parse_int(arg)
    dbs = s.engine.keyspace.dbs
    if not 0 <= dbid < len(dbs):
        raise ReplyError("ERR Out of range database")
    db = dbs[dbid]
    return Verbatim(("[Dictionary HT]\n" + _table_stats(len(db.data), dict_slots(db.data))
                     + "[Expires HT]\n" + _table_stats(len(db.expires),
                                                       dict_slots(db.expires))).encode())


def htstats_key(s: object, key: bytes) -> Verbatim:
    """DEBUG HTSTATS-KEY key: the table of a hash or set (hashtable) or sorted set
    (skiplist: its member -> score table)."""
    value = _value(s, key)
    encoding = object_encoding(value, s.engine.config)
    if encoding == b"skiplist" and isinstance(value, ZSet):
        table = value.scores
        return Verbatim(_table_stats(len(table), dict_slots(table)).encode())
    if encoding == b"hashtable":
        if isinstance(value, set):
            return Verbatim(_table_stats(len(value), set_slots(value)).encode())
        return Verbatim(_table_stats(len(value), dict_slots(value)).encode())
    raise ReplyError("ERR The value stored at the specified key is not represented using "
                     "an hash table")

