"""Redis's glob matching (``stringmatchlen``): KEYS, SCAN MATCH, PSUBSCRIBE, CONFIG GET."""

from __future__ import annotations

import re
from functools import lru_cache


@lru_cache(maxsize=1024)
def _compile(pattern: bytes) -> re.Pattern[bytes]:
    out = bytearray()
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == 42:  # *
            out += b".*"
        elif c == 63:  # ?
            out += b"."
        elif c == 92 and i + 1 < n:  # backslash escapes the next byte
            i += 1
            out += re.escape(pattern[i:i + 1])
        elif c == 91:  # [
            i += 1
            negate = i < n and pattern[i] == 94
            if negate:
                i += 1
            items = bytearray()
            while i < n and pattern[i] != 93:
                if pattern[i] == 92 and i + 1 < n:
                    i += 1
                    items += re.escape(pattern[i:i + 1])
                elif i + 2 < n and pattern[i + 1] == 45 and pattern[i + 2] != 93:
                    low, high = sorted((pattern[i], pattern[i + 2]))
                    items += b"%s-%s" % (re.escape(bytes([low])), re.escape(bytes([high])))
                    i += 2
                else:
                    items += re.escape(pattern[i:i + 1])
                i += 1
            if not items:
                # "[]" matches nothing, "[^]" anything, as in stringmatchlen
                out += b"." if negate else b"(?!)"
            else:
                out += b"[" + (b"^" if negate else b"") + bytes(items) + b"]"
        else:
            out += re.escape(pattern[i:i + 1])
        i += 1
    return re.compile(bytes(out) + rb"\Z", re.DOTALL)


def glob_match(pattern: bytes, subject: bytes, nocase: bool = False) -> bool:
    """True when ``subject`` matches the glob ``pattern`` as Redis matches it."""
    if pattern == b"*":
        return True
    if nocase:
        pattern = pattern.lower()
        subject = subject.lower()
    return _compile(pattern).match(subject) is not None
