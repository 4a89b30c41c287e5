"""``python -m kvrepl.rdb`` / ``kvrepl-rdb``: look inside RDB files without a server.

    kvrepl-rdb check FILE          walk the whole file like redis-check-rdb (exit 1 if bad)
    kvrepl-rdb dump FILE [--db N]  one JSON object per key, per line
    kvrepl-rdb stats FILE [--top N]  keys per type and database, the largest keys

``dump`` lines are ``{"db": 0, "key": ..., "type": ..., "value": ..., "expire_at_ms": ...}``.
Byte strings (keys, values, fields, members) are written as text (:func:`escape`): valid
UTF-8 as itself, except that a backslash is doubled (``\\\\``), and each byte that is not part
of valid UTF-8 as ``\\xHH`` (two lowercase hex digits). :func:`unescape` gives the bytes back.
Values: strings as text, lists as arrays, sets as sorted arrays, hashes as objects, sorted
sets as ``[member, score]`` pairs in rank order (scores ``"inf"``/``"-inf"`` when infinite),
streams as ``{"entries": [[id, {field: value}]], "groups": [...], "last_id": ...}``.

On a terminal, a progress bar on stderr follows files of more than a few megabytes.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import os
import re
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import IO, Any

from kvrepl.rdb.errors import RdbError
from kvrepl.rdb.events import NEED_DATA, Aux, End, Entry, Function, ModuleAux, SelectDb
from kvrepl.rdb.load import event_batches
from kvrepl.rdb.reader import RdbParser
from kvrepl.store.values import Stream, ZSet

#: Files at least this big get a progress bar (when stderr is a terminal).
PROGRESS_MIN_BYTES = 8 << 20
READ_SIZE = 1 << 20
# One encoder for every line (json.dumps with options would build one per call).
_JSON_LINE = json.JSONEncoder(ensure_ascii=False, check_circular=False).encode


# -- reading with offsets and progress --------------------------------------------------------


class Progress:
    """A one-line progress bar on ``stream``, redrawn at most ten times a second."""

    def __init__(self, total: int, stream: IO[str], label: str = "") -> None:
        self.total = total
        self.stream = stream
        self.label = label
        self.started = time.monotonic()
        self._drawn = 0.0
        self.shown = False

    def update(self, done: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._drawn < 0.1:
            return
        self._drawn = now
        fraction = done / self.total if self.total else 1.0
        width = 30
        filled = int(width * fraction)
        elapsed = max(now - self.started, 1e-9)
        rate = done / elapsed / (1 << 20)
        self.stream.write(f"\r{self.label}[{'#' * filled}{'.' * (width - filled)}] "
                          f"{fraction * 100:5.1f}% {done / (1 << 20):.1f}/"
                          f"{self.total / (1 << 20):.1f} MB {rate:.1f} MB/s")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


def _progress_for(path: str, size: int, mode: str | None) -> Progress | None:
    """``mode``: "always", "never" or None (auto: big files on a terminal)."""
    if mode == "never":
        return None
    if mode == "always" or (size >= PROGRESS_MIN_BYTES and sys.stderr.isatty()):
        return Progress(size, sys.stderr, f"{os.path.basename(path)} ")
    return None


class _Reading:
    """``source`` whose reads move ``progress`` along (when there is one)."""

    def __init__(self, source: IO[bytes], progress: Progress | None) -> None:
        self.source = source
        self.progress = progress
        self.done = 0

    def read(self, size: int) -> bytes:
        chunk = self.source.read(size)
        self.done += len(chunk)
        if self.progress is not None:
            self.progress.update(self.done)
        return chunk

    def finish(self) -> None:
        """The file was read through: show the bar's last state."""
        if self.progress is not None:
            self.progress.update(self.done, force=True)


def events_with_offsets(source: IO[bytes], parser: RdbParser,
                        progress: Progress | None = None,
                        absorb: Callable[[], bool] | None = None
                        ) -> Iterator[tuple[object, int]]:
    """``(event, file offset after it)`` for every event, up to and including End.

    ``absorb``, when given, runs first at every step and returns True when it consumed
    input itself (the parser's fast path for runs of plain strings)."""
    reading = _Reading(source, progress)
    while True:
        if absorb is not None and absorb():
            continue
        event = parser.next_event()
        if event is NEED_DATA:
            parser.feed(reading.read(READ_SIZE))
            continue
        yield event, parser.offset
        if type(event) is End:
            reading.finish()
            return


# -- check ------------------------------------------------------------------------------------


class _Counts:
    """Keys, expires and already expired keys seen (redis-check-rdb's [info] lines)."""

    def __init__(self) -> None:
        self.keys = self.expires = self.expired = 0


def _checked_events(source: IO[bytes], parser: RdbParser, progress: Progress | None,
                    now_ms: int, counts: _Counts) -> Iterator[tuple[object, int]]:
    """Like :func:`events_with_offsets`, but runs of short plain strings are only counted
    (the parser's fast path): every other event still comes with its exact offset."""
    data: dict[bytes, object] = {}
    expires: dict[bytes, int] = {}

    def absorb() -> bool:
        stored, dropped, _ = parser.store_strings(data, expires, now_ms, limit=65536)
        if not (stored or dropped):
            return False
        counts.keys += stored + dropped
        counts.expires += len(expires) + dropped
        counts.expired += dropped
        data.clear()
        expires.clear()
        return True

    return events_with_offsets(source, parser, progress, absorb)


def _text(data: bytes) -> str:
    return data.decode("utf-8", "backslashreplace")


def check(path: str, out: IO[str], progress_mode: str | None = None,
          now_ms: int | None = None) -> int:
    """redis-check-rdb: walk every byte, print what it finds; 0 when good, 1 when not."""
    if now_ms is None:
        now_ms = int(time.time() * 1000)
    keys = expires = already_expired = module_aux = 0
    counts = _Counts()
    out.write(f"[offset 0] Checking RDB file {path}\n")
    try:
        source = open(path, "rb")
    except OSError as err:
        out.write(f"--- RDB ERROR DETECTED ---\n[offset 0] Cannot open {path}: "
                  f"{err.strerror or err}\n")
        return 1
    parser = RdbParser(on_module="skip")
    offset = 0
    ok = True
    with source:
        progress = _progress_for(path, os.fstat(source.fileno()).st_size, progress_mode)
        try:
            empty_before = 0
            for event, offset in _checked_events(source, parser, progress, now_ms, counts):
                if parser.empty_keys_skipped != empty_before:
                    # Redis 7.0 skips empty keys when it loads, but redis-check-rdb
                    # (deep sanitization) rejects the file.
                    raise RdbError("Empty keys are not allowed (an empty collection before "
                                   f"offset {offset})", offset)
                kind = type(event)
                if kind is Entry:
                    keys += 1
                    if event.expire_ms is not None:
                        expires += 1
                        if event.expire_ms < now_ms:
                            already_expired += 1
                elif kind is Aux:
                    out.write(f"[offset {offset}] AUX FIELD {_text(event.name)} = "
                              f"'{_text(event.value)}'\n")
                elif kind is SelectDb:
                    out.write(f"[offset {offset}] Selecting DB ID {event.index}\n")
                elif kind is ModuleAux:
                    module_aux += 1
                    out.write(f"[offset {offset}] MODULE AUX for: {event.module_name}\n")
                elif kind is End:
                    if event.checksum_ok:
                        out.write(f"[offset {offset}] Checksum OK\n")
                    elif event.checksum == 0:
                        out.write(f"[offset {offset}] RDB file was saved with checksum "
                                  "disabled: no check performed.\n")
        except RdbError as err:
            ok = False
            if progress is not None:
                progress.close()
            out.write("--- RDB ERROR DETECTED ---\n")
            where = err.offset if err.offset is not None else parser.offset
            out.write(f"[offset {where}] {err}\n")
            if err.key is not None:
                keys += 1  # redis-check-rdb counts a key once its name is read
                out.write(f"[additional info] Reading key '{_text(err.key)}'\n")
        else:
            if progress is not None:
                progress.close()
            out.write(f"[offset {offset}] \\o/ RDB looks OK! \\o/\n")
    keys += counts.keys + parser.modules_skipped - module_aux  # module values are keys too
    expires += counts.expires
    already_expired += counts.expired
    out.write(f"[info] {keys} keys read\n[info] {expires} expires\n"
              f"[info] {already_expired} already expired\n")
    return 0 if ok else 1


# -- dump -------------------------------------------------------------------------------------


ESCAPING_HELP = ("byte strings are written as text: valid UTF-8 as itself with a backslash "
                 "doubled (\\\\), any other byte as \\xHH")
_SURROGATE = re.compile("[\udc80-\udcff]")
_ESCAPED = re.compile(rb"\\(\\|x[0-9a-f]{2})")


def escape(data: bytes) -> str:
    """A byte string as dump writes it: valid UTF-8 as itself, ``\\\\`` for a backslash,
    ``\\xHH`` for each byte that is not part of valid UTF-8 (unambiguous: see unescape)."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        # surrogateescape maps each undecodable byte (always >= 0x80) to U+DC80..U+DCFF
        text = data.decode(errors="surrogateescape").replace("\\", "\\\\")
        return _SURROGATE.sub(lambda m: f"\\x{ord(m.group()) - 0xDC00:02x}", text)
    return text.replace("\\", "\\\\") if "\\" in text else text


def unescape(text: str) -> bytes:
    """The bytes :func:`escape` wrote as ``text``."""
    return _ESCAPED.sub(lambda m: b"\\" if m.group(1) == b"\\" else
                        bytes([int(m.group(1)[1:], 16)]), text.encode())


def _score(score: float) -> float | str:
    if math.isinf(score):
        return "inf" if score > 0 else "-inf"
    return score


def _stream_id(entry_id: tuple[int, int]) -> str:
    return f"{entry_id[0]}-{entry_id[1]}"


def _stream_json(value: Stream) -> dict[str, Any]:
    groups = []
    for name, group in value.groups.items():
        groups.append({
            "name": escape(name),
            "last_id": _stream_id(group.last_id),
            "entries_read": group.entries_read,
            "pending": [[_stream_id(i), escape(n.consumer) if n.consumer else None,
                         n.delivery_time, n.delivery_count]
                        for i, n in group.pending.items()],
            "consumers": [{"name": escape(c.name), "seen_time": c.seen_time,
                           "pending": [_stream_id(i) for i in c.pending]}
                          for c in group.consumers.values()],
        })
    return {
        "entries": [[_stream_id(i), {escape(f[j]): escape(f[j + 1])
                                     for j in range(0, len(f) - 1, 2)}]
                    for i, f in value.entries.items()],
        "last_id": _stream_id(value.last_id),
        "first_id": _stream_id(value.first_id),
        "max_deleted_id": _stream_id(value.max_deleted_id),
        "entries_added": value.entries_added,
        "groups": groups,
    }


def value_json(value: object) -> tuple[str, Any]:
    """``(type name, JSON-able value)`` of a store value (bytes as :func:`escape` text)."""
    kind = type(value)
    if kind is bytes:
        return "string", escape(value)  # type: ignore[arg-type]
    if kind is deque:
        return "list", [escape(x) for x in value]  # type: ignore[attr-defined]
    if kind is set:
        return "set", sorted(escape(x) for x in value)  # type: ignore[attr-defined]
    if kind is dict:
        return "hash", {escape(k): escape(v) for k, v in value.items()}  # type: ignore
    if kind is ZSet:
        return "zset", [[escape(m), _score(s)] for s, m in value.ordered]  # type: ignore
    if kind is Stream:
        return "stream", _stream_json(value)  # type: ignore[arg-type]
    raise TypeError(f"no JSON form for {kind.__name__}")


def dump(path: str, out: IO[str], dbs: set[int] | None = None,
         progress_mode: str | None = None) -> int:
    """One JSON line per key; returns the number of keys written."""
    count = 0
    encode = _JSON_LINE
    with open(path, "rb") as source:
        progress = _progress_for(path, os.fstat(source.fileno()).st_size, progress_mode)
        parser = RdbParser(on_module="skip")
        try:
            for batch in _entry_batches(source, parser, progress):
                lines = []
                for event in batch:
                    if dbs is not None and event.db not in dbs:
                        continue
                    value = event.value
                    if type(value) is bytes:  # most keys: skip the dispatch
                        kind, shown = "string", escape(value)
                    else:
                        kind, shown = value_json(value)
                    lines.append(encode({"db": event.db, "key": escape(event.key),
                                         "type": kind, "value": shown,
                                         "expire_at_ms": event.expire_ms}))
                if lines:
                    lines.append("")
                    out.write("\n".join(lines))
                    count += len(lines) - 1
        finally:
            if progress is not None:
                progress.close()
    return count


def _entry_batches(source: IO[bytes], parser: RdbParser,
                   progress: Progress | None) -> Iterator[list[Entry]]:
    """The entries of the file in batches (the parser's fast path for short strings)."""
    reading = _Reading(source, progress)
    for batch in event_batches(parser, reading):
        yield [event for event in batch if type(event) is Entry]
    reading.finish()


# -- stats ------------------------------------------------------------------------------------


def _length(value: object) -> int:
    """Bytes of a string, elements of a collection, entries of a stream."""
    return len(value)  # type: ignore[arg-type]


def stats(path: str, top: int = 10, progress_mode: str | None = None) -> dict[str, Any]:
    """Keys per database and type, expiry counts, and the ``top`` largest keys by the bytes
    they take in the file (type byte, key, value, expire opcode)."""
    per_db: dict[int, dict[str, dict[str, int]]] = {}
    largest: list[tuple[int, int, int, bytes, str, int]] = []  # min-heap
    aux: dict[str, str] = {}
    version = 0
    checksum = None
    functions = 0
    total_keys = 0
    with open(path, "rb") as source:
        size = os.fstat(source.fileno()).st_size
        progress = _progress_for(path, size, progress_mode)
        parser = RdbParser(on_module="skip")
        previous = 0
        order = 0
        try:
            for event, offset in events_with_offsets(source, parser, progress):
                kind = type(event)
                if kind is Entry:
                    total_keys += 1
                    tname = type_name(event.value)
                    bucket = per_db.setdefault(event.db, {}).setdefault(
                        tname, {"keys": 0, "expires": 0, "bytes": 0, "elements": 0})
                    nbytes = offset - previous
                    bucket["keys"] += 1
                    bucket["bytes"] += nbytes
                    bucket["elements"] += _length(event.value)
                    if event.expire_ms is not None:
                        bucket["expires"] += 1
                    order += 1
                    item = (nbytes, -order, event.db, event.key, tname, _length(event.value))
                    if len(largest) < top:
                        heapq.heappush(largest, item)
                    elif top and item > largest[0]:
                        heapq.heapreplace(largest, item)
                elif kind is Aux:
                    aux[escape(event.name)] = escape(event.value)
                elif kind is Function:
                    functions += 1
                elif kind is End:
                    checksum = ("ok" if event.checksum_ok else
                                "disabled" if event.checksum == 0 else "not checked")
                previous = offset
        finally:
            if progress is not None:
                progress.close()
        version = parser.version or 0
    return {
        "file": path,
        "bytes": size,
        "version": version,
        "checksum": checksum,
        "aux": aux,
        "functions": functions,
        "keys": total_keys,
        "empty_keys_skipped": parser.empty_keys_skipped,
        "modules_skipped": parser.modules_skipped,
        "databases": {str(db): types for db, types in sorted(per_db.items())},
        "largest": [{"db": db, "key": escape(key), "type": tname, "bytes": nbytes,
                     "elements": elements}
                    for nbytes, _, db, key, tname, elements in sorted(largest, reverse=True)],
    }


def type_name(value: object) -> str:
    kind = type(value)
    return {bytes: "string", deque: "list", set: "set", dict: "hash", ZSet: "zset",
            Stream: "stream"}.get(kind, kind.__name__)


def print_stats(report: dict[str, Any], out: IO[str]) -> None:
    out.write(f"{report['file']}: RDB version {report['version']}, {report['bytes']} bytes, "
              f"checksum {report['checksum']}\n")
    if report["aux"]:
        out.write("aux: " + ", ".join(f"{k}={v}" for k, v in report["aux"].items()) + "\n")
    if report["functions"]:
        out.write(f"function libraries: {report['functions']}\n")
    out.write(f"keys: {report['keys']}\n\n")
    out.write(f"{'db':>4}  {'type':<8} {'keys':>10} {'expires':>10} {'elements':>12} "
              f"{'bytes':>14}\n")
    for db, types in report["databases"].items():
        for tname, counts in sorted(types.items()):
            out.write(f"{db:>4}  {tname:<8} {counts['keys']:>10} {counts['expires']:>10} "
                      f"{counts['elements']:>12} {counts['bytes']:>14}\n")
    if report["largest"]:
        out.write("\nlargest keys (bytes in the file):\n")
        for rank, item in enumerate(report["largest"], 1):
            key = json.dumps(item["key"], ensure_ascii=False)
            out.write(f"{rank:>4}. db{item['db']} {key} {item['type']} {item['bytes']} bytes, "
                      f"{item['elements']} {'bytes' if item['type'] == 'string' else 'elements'}"
                      "\n")
    if report["empty_keys_skipped"]:
        out.write(f"\nempty keys skipped: {report['empty_keys_skipped']}\n")
    if report["modules_skipped"]:
        out.write(f"module values skipped: {report['modules_skipped']}\n")


# -- command line -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kvrepl-rdb", description="Check, dump and summarize Redis RDB files.")
    sub = parser.add_subparsers(dest="command", required=True)
    progress = argparse.ArgumentParser(add_help=False)
    group = progress.add_mutually_exclusive_group()
    group.add_argument("--progress", dest="progress", action="store_const", const="always",
                       help="always show a progress bar on stderr")
    group.add_argument("--no-progress", dest="progress", action="store_const",
                       const="never", help="never show a progress bar")
    check_cmd = sub.add_parser("check", parents=[progress],
                               help="verify a file like redis-check-rdb")
    check_cmd.add_argument("file")
    dump_cmd = sub.add_parser(
        "dump", parents=[progress], help="JSON lines, one key each; " + ESCAPING_HELP,
        description="One JSON object per key and line: db, key, type, value, expire_at_ms. "
        + ESCAPING_HELP[0].upper() + ESCAPING_HELP[1:] + ".")
    dump_cmd.add_argument("file")
    dump_cmd.add_argument("--db", type=int, action="append",
                          help="only this database (repeatable)")
    stats_cmd = sub.add_parser("stats", parents=[progress],
                               help="keys per type and database, largest keys")
    stats_cmd.add_argument("file")
    stats_cmd.add_argument("--top", type=int, default=10, help="largest keys to list")
    stats_cmd.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = sys.stdout
    if hasattr(out, "reconfigure"):  # UTF-8 whatever the locale says: see escape()
        out.reconfigure(encoding="utf-8")
    try:
        if args.command == "check":
            return check(args.file, out, args.progress)
        if args.command == "dump":
            dump(args.file, out, set(args.db) if args.db else None, args.progress)
            return 0
        report = stats(args.file, args.top, args.progress)
        if args.json:
            out.write(json.dumps(report, ensure_ascii=False, indent=2) + "\n")
        else:
            print_stats(report, out)
        return 0
    except RdbError as err:
        sys.stderr.write(f"kvrepl-rdb: {args.file}: {err}\n")
        return 1
    except BrokenPipeError:  # pragma: no cover - `kvrepl-rdb dump x | head`
        return 0
    except OSError as err:
        sys.stderr.write(f"kvrepl-rdb: {args.file}: {err.strerror or err}\n")
        return 1

