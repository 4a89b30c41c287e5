"""The AOF manifest (Redis 7.0 aof.c): which base, incremental and history files make the
append-only file, one line each: ``file <name> seq <n> type b|h|i``. Sans-IO: text in,
text out."""

from __future__ import annotations

import copy
import shlex
from dataclasses import dataclass, field

BASE, HISTORY, INCR = "b", "h", "i"
BASE_SUFFIX, INCR_SUFFIX = ".base", ".incr"
RDB_SUFFIX, AOF_SUFFIX, MANIFEST_SUFFIX = ".rdb", ".aof", ".manifest"
TEMP_PREFIX = "temp-"


class ManifestError(ValueError):
    """A manifest Redis would refuse to load (its message)."""


@dataclass
class AofFile:
    """One line of the manifest."""

    name: str
    seq: int
    type: str

    def line(self) -> str:
        name = self.name
        if any(c in name for c in " \t\r\n\"'\\") or not name.isprintable():
            name = '"' + name.encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'
        return f"file {name} seq {self.seq} type {self.type}\n"


@dataclass
class Manifest:
    """aofManifest: the base file, the history files, the incremental files in order."""

    base: AofFile | None = None
    history: list[AofFile] = field(default_factory=list)
    incr: list[AofFile] = field(default_factory=list)
    base_seq: int = 0  # curr_base_file_seq
    incr_seq: int = 0  # curr_incr_file_seq

    def copy(self) -> Manifest:
        return copy.deepcopy(self)

    def text(self) -> str:
        """getAofManifestAsString: base first, then history, then incremental files."""
        files = ([self.base] if self.base else []) + self.history + self.incr
        return "".join(f.line() for f in files)

    @property
    def empty(self) -> bool:
        return self.base is None and not self.incr

    def new_base(self, filename: str, rdb: bool = True) -> str:
        """getNewBaseFileNameAndMarkPreAsHistory."""
        if self.base is not None:
            self.base.type = HISTORY
            self.history.insert(0, self.base)
        self.base_seq += 1
        name = f"{filename}.{self.base_seq}{BASE_SUFFIX}{RDB_SUFFIX if rdb else AOF_SUFFIX}"
        self.base = AofFile(name, self.base_seq, BASE)
        return name

    def new_incr(self, filename: str) -> str:
        """getNewIncrAofName."""
        self.incr_seq += 1
        name = f"{filename}.{self.incr_seq}{INCR_SUFFIX}{AOF_SUFFIX}"
        self.incr.append(AofFile(name, self.incr_seq, INCR))
        return name

    def last_incr(self, filename: str) -> str:
        """getLastIncrAofName: the file to append to (a new one when there is none)."""
        return self.incr[-1].name if self.incr else self.new_incr(filename)

    def mark_rewritten_incr_as_history(self, keep_last: bool) -> None:
        """markRewrittenIncrAofAsHistory: every incremental file but the open one."""
        kept = self.incr[-1:] if keep_last else []
        for done in reversed(self.incr[:len(self.incr) - len(kept)]):
            self.history.insert(0, AofFile(done.name, done.seq, HISTORY))
        self.incr = kept


def manifest_name(filename: str) -> str:
    return filename + MANIFEST_SUFFIX


def temp_manifest_name(filename: str) -> str:
    return TEMP_PREFIX + filename + MANIFEST_SUFFIX


def temp_incr_name(filename: str) -> str:
    """getTempIncrAofName: the incremental file of AOF_WAIT_REWRITE."""
    return TEMP_PREFIX + filename + INCR_SUFFIX


def parse_manifest(text: str) -> Manifest:
    """aofLoadManifestFromFile: ManifestError with Redis's message when it is malformed."""
    manifest = Manifest()
    max_seq = 0
    for raw in text.split("\n"):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if len(raw) > 1024:
            raise ManifestError("The AOF manifest file contains too long line")
        try:
            words = shlex.split(line)
        except ValueError:
            raise ManifestError("Invalid AOF manifest file format") from None
        if len(words) < 6 or len(words) % 2:
            raise ManifestError("Invalid AOF manifest file format")
        fields = dict(zip(words[::2], words[1::2], strict=True))
        name, seq, kind = fields.get("file"), fields.get("seq"), fields.get("type")
        if not name or seq is None or not seq.isdigit() or kind not in (BASE, HISTORY, INCR):
            raise ManifestError("Invalid AOF manifest file format")
        info = AofFile(name, int(seq), kind)
        if kind == BASE:
            if manifest.base is not None:
                raise ManifestError("Found duplicate base file information")
            manifest.base = info
            manifest.base_seq = info.seq
        elif kind == HISTORY:
            manifest.history.append(info)
        else:
            if info.seq <= max_seq:
                raise ManifestError("Found a non-monotonic sequence number")
            manifest.incr.append(info)
            manifest.incr_seq = max_seq = info.seq
    return manifest
