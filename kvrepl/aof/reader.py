"""Reading the commands of an append-only file (loadSingleAppendOnlyFile's parser), sans-IO:
bytes are fed in, commands come out with the file offset where each one ends, and a
malformed byte is reported with its offset."""

from __future__ import annotations

ANNOTATION_MAX = 1024  # AOF_ANNOTATION_LINE_MAX_LEN


class AofFormatError(ValueError):
    """Bad file format at ``offset`` (the byte that cannot be part of a command)."""

    def __init__(self, offset: int, what: str) -> None:
        super().__init__(f"{what} at offset {offset}")
        self.offset = offset


class CommandReader:
    """Multibulk commands (``*<n>\\r\\n`` then ``$<len>\\r\\n<bytes>\\r\\n`` n times) and
    ``#`` annotation lines, as Redis writes them to an AOF. :meth:`next` gives the next
    command's arguments, or None when more bytes are needed; :attr:`offset` is the file
    offset just after the last complete command or annotation (Redis's ``valid_up_to``)."""

    def __init__(self, start: int = 0) -> None:
        self._buf = bytearray()
        self._pos = 0  # in _buf: the start of the next command
        self._base = start  # file offset of _buf[0]

    @property
    def offset(self) -> int:
        return self._base + self._pos

    @property
    def pending(self) -> int:
        """Bytes fed and not yet part of a complete command (a cut tail at the end)."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> None:
        if self._pos > 1 << 20:
            del self._buf[:self._pos]
            self._base += self._pos
            self._pos = 0
        self._buf += data

    def _line(self, at: int) -> tuple[bytes, int] | None:
        end = self._buf.find(b"\r\n", at, at + ANNOTATION_MAX)
        if end < 0:
            if len(self._buf) - at >= ANNOTATION_MAX:
                raise AofFormatError(self._base + at, "line too long")
            return None
        return bytes(self._buf[at:end]), end + 2

    def _number(self, text: bytes, at: int) -> int:
        if not text.isdigit():
            raise AofFormatError(self._base + at, "bad length")
        return int(text)

    def next(self) -> list[bytes] | None:
        buf = self._buf
        while True:
            at = self._pos
            if at >= len(buf):
                return None
            first = buf[at]
            if first == 0x23:  # "#": an annotation (#TS:...)
                end = buf.find(b"\n", at)
                if end < 0:
                    if len(buf) - at >= ANNOTATION_MAX:
                        raise AofFormatError(self._base + at, "annotation too long")
                    return None
                self._pos = end + 1
                continue
            if first != 0x2A:  # "*"
                raise AofFormatError(self._base + at, "expected '*'")
            found = self._line(at + 1)
            if found is None:
                return None
            count = self._number(found[0], at + 1)
            if count < 1:
                raise AofFormatError(self._base + at + 1, "bad argument count")
            at = found[1]
            argv = []
            for _ in range(count):
                if at >= len(buf):
                    return None
                if buf[at] != 0x24:  # "$"
                    raise AofFormatError(self._base + at, "expected '$'")
                found = self._line(at + 1)
                if found is None:
                    return None
                size = self._number(found[0], at + 1)
                at = found[1]
                if len(buf) < at + size + 2:
                    return None
                argv.append(bytes(buf[at:at + size]))
                if buf[at + size:at + size + 2] != b"\r\n":
                    raise AofFormatError(self._base + at + size, "expected CRLF")
                at += size + 2
            self._pos = at
            return argv
