"""CRC64 as Redis computes it (crc64.c: Jones polynomial, reflected, init 0, no final xor).

crcmod-plus's C extension does the work; ``crc64(b"123456789") == 0xe9c6d914c4b8d9ca``.
"""

from __future__ import annotations

import crcmod
import crcmod.crcmod

#: ``crc64(data, crc=0) -> int``: continue a running checksum over ``data`` (any buffer).
crc64 = crcmod.mkCrcFun(0x1AD93D23594C935A9, initCrc=0, rev=True, xorOut=0)

#: True when crcmod runs its C extension (the pure-Python fallback is ~100x slower).
USING_EXTENSION: bool = bool(getattr(crcmod.crcmod, "_usingExtension", False))
