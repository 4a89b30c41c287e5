"""Seeded mutation fuzzing of kvrepl's byte readers, fast enough for 100,000 cases a target.

Run as a script (``python tests/fuzz.py TARGET --cases N --seed S``); tests/test_fuzz.py runs
it in a child process for each target, which is what limits its memory (a reader that
allocates what a corrupt length field asks for fails with MemoryError, which is a finding)
and bounds each case in time (a case running longer than ``--case-timeout`` is a hang).

Targets (each case: a seed input, mutated, checked against an oracle):

* ``splitters``: the request splitters' fast paths (CR LF split, hiredis pieces, the plain
  lane's raw bytes) against the exact parser: the same requests, errors and leftovers.
* ``rdb``: the RDB reader on mutated real dumps: a mutation loads to a dataset that a re-save
  and reload keeps identical, or is refused whole with RdbError (the keyspace untouched).
* ``restore``: RESTORE with mutated DUMP payloads, through the engine: OK and a value that
  DUMPs and RESTOREs to itself, or one of Redis's two errors.
* ``replstream``: the replica's sans-IO protocol fed a mutated master transcript (handshake,
  PSYNC reply, RDB payload in both framings, the stream) in random pieces: the same events
  as when fed whole, and only the replication errors the replica's loop expects.
* ``tcp``: a kvrepl-server process on loopback, and 1 to 6 of 12 connections sending random
  and mutated pipelines at once, in random pieces: each gets exactly the replies the exact
  parser says its bytes ask for (and, after a protocol error, that error and a close), a
  clean client's PING answers +PONG after every case, the server never exits nor logs an
  internal error.

A plain seeded loop is used rather than hypothesis: about ten times as many cases a second
(the RDB target: ~1,000-1,800 cases/s, each a load, a chunked load, a re-save and a reload,
where hypothesis ran ~130 cases/s of one parse each), and a failure is reproduced from
``(target, seed, case)`` (``--seed S --case N``), which the report prints with what differed.
Each failure found became a regression test beside the code it concerns (test_protocol.py,
test_handshake.py, test_digest.py).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import signal
import sys
import time
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path

from kvrepl.commands.core import Engine
from kvrepl.config import Config
from kvrepl.errors import ProtocolError, ReplyError
from kvrepl.protocol.parser import NEED_DATA, RequestParser, _split_lines, split_requests
from kvrepl.rdb import RdbError, StagedLoad, dump_value, dumps, load_into, load_value
from kvrepl.rdb.crc import crc64
from kvrepl.rdb.payload import BAD_DATA_FORMAT, VERSION_OR_CHECKSUM
from kvrepl.replication.handshake import (
    PayloadData,
    ReplicaProtocol,
    ReplicationProtocolError,
    Send,
    StreamBatch,
    TryLater,
)
from kvrepl.replication.stream import encode_command
from kvrepl.store.database import Keyspace
from kvrepl.store.values import Stream, StreamGroup, ZSet

HERE = Path(__file__).resolve().parent
NOW_MS = 1_700_000_000_000


class Finding(AssertionError):
    """A case broke the target's property; the message says how."""


class Hang(BaseException):
    """A case ran past the per-case time limit (raised from SIGALRM)."""


# -- mutations --------------------------------------------------------------------------------
_INTERESTING = bytes([0, 1, 2, 0x7F, 0x80, 0x81, 0xC0, 0xC1, 0xC2, 0xC3, 0xFF, 0xFE, 0x40,
                      0x3F, ord("*"), ord("$"), ord("\r"), ord("\n"), ord("0"), ord("-")])


def mutate(rng: random.Random, data: bytes, tokens: list[bytes], first: int = 0) -> bytes:
    """``data`` with 1 to 8 random edits after ``first``: bit flips, byte sets, inserts,
    deletions, duplicated or swapped ranges, dictionary tokens, a truncation."""
    out = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 1, 2, 2, 3, 4, 8))):
        size = len(out)
        if size <= first:
            out += bytes([rng.randrange(256)])
            continue
        pos = rng.randrange(first, size)
        op = rng.randrange(11)
        if op == 0:
            out[pos] ^= 1 << rng.randrange(8)
        elif op == 1:
            out[pos] = rng.randrange(256)
        elif op == 2:
            out[pos] = rng.choice(_INTERESTING)
        elif op == 3:
            out[pos:pos] = rng.randbytes(rng.randint(1, 8))
        elif op == 4:
            del out[pos:pos + rng.randint(1, 16)]
        elif op == 5:
            start = rng.randrange(first, size)
            out[pos:pos] = out[start:start + rng.randint(1, 64)]
        elif op in (6, 7):
            out[pos:pos] = rng.choice(tokens)
        elif op == 8:
            token = rng.choice(tokens)
            out[pos:pos + len(token)] = token
        elif op == 9:
            del out[pos + rng.randint(0, 4):]
        else:
            other = rng.randrange(first, size)
            out[pos], out[other] = out[other], out[pos]
    return bytes(out)


def cut(rng: random.Random, data: bytes) -> list[bytes]:
    """``data`` in random pieces (whole, bytewise around a point, or a few random cuts)."""
    choice = rng.randrange(4)
    if choice == 0 or len(data) < 2:
        return [data]
    if choice == 1:
        points = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 6))))
    elif choice == 2:
        at = rng.randrange(len(data))
        points = list(range(max(1, at - 8), min(len(data), at + 8)))
    else:
        step = rng.randint(1, 64)
        points = list(range(step, len(data), step))
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


# -- (a) request splitters ---------------------------------------------------------------------
_RESP_TOKENS = [b"\r\n", b"*", b"$", b"-1", b"0", b"00", b"+", b"=", b"(", b"|", b"~", b"%",
                b">", b":", b"_", b"*0\r\n", b"*-1\r\n", b"$-1\r\n", b"$0\r\n\r\n", b"\n",
                b" ", b'"', b"'", b"\\x4", b"99999999999999999999", b"2147483648",
                b"*1\r\n$4\r\nPING\r\n", b"\r\n*", b"PING\r\n", b"$32768\r\n", b"\x00"]


def _argument(rng: random.Random) -> bytes:
    kind = rng.randrange(10)
    if kind < 5:
        return rng.choice((b"SET", b"GET", b"k", b"v", b"PING", b"x" * rng.randint(0, 12)))
    if kind < 8:
        return rng.randbytes(rng.randint(0, 20))
    if kind == 8:
        return rng.choice((b"\r\n", b"a\r\n*1\r\n", b"\r\n$3\r\n", b"+OK", b"=1"))
    return b"b" * rng.choice((100, 300, 300, 300, 20_000, 40_000))


def _pipeline(rng: random.Random) -> bytes:
    parts = []
    for _ in range(rng.randint(0, 12)):
        kind = rng.randrange(12)
        if kind < 9:
            parts.append(encode_command([_argument(rng) for _ in range(rng.randint(1, 4))]))
        elif kind == 9:
            parts.append(rng.choice((b"*0\r\n", b"*-1\r\n", b"\r\n", b"\n")))
        else:
            parts.append(rng.choice((b"PING\r\n", b"GET k\r\n", b'SET "a b" \'c\'\r\n',
                                     b"ECHO x\n", b'SET "\\x41"x\r\n')))
    return b"".join(parts)


def _exact(chunks: list[bytes], authenticated: bool, max_bulk_len: int, fast: bool,
           ) -> tuple[list[list[bytes]], str | None, int, int, list[bytes]]:
    """Feed ``chunks`` to a parser, taking requests after each: (requests, error, leftover
    bytes, unparsed bytes, the canonical raw bytes the parser vouched for)."""
    parser = RequestParser(max_bulk_len, fast=fast)
    parser.authenticated = authenticated
    requests: list[list[bytes]] = []
    vouched: list[bytes] = []
    try:
        for chunk in chunks:
            parser.feed(chunk)
            ready, position, raw = parser.ready_requests()
            if raw is not None:
                # What the plain lane propagates as is: exactly these requests, whole.
                if _exact_prefix(raw, max_bulk_len) != (
                        ready[position:], _ends(ready[position:])):
                    raise Finding(f"ready_requests raw {raw!r} is not {ready[position:]!r}")
                vouched.append(raw)
            while (request := parser.next_request()) is not NEED_DATA:
                requests.append(request)
    except ProtocolError as err:
        return requests, str(err), -1, -1, vouched
    return requests, None, parser.buffered, parser.unparsed(), vouched


def _ends(requests: list[list[bytes]]) -> list[int]:
    """Where each of ``requests`` ends in their encoding."""
    ends, total = [], 0
    for request in requests:
        total += len(encode_command(request))
        ends.append(total)
    return ends


def _exact_prefix(data: bytes, max_bulk_len: int) -> tuple[list[list[bytes]], list[int]]:
    """The requests the exact parser reads from ``data`` before it needs more bytes or
    fails, with the bytes consumed after each."""
    parser = RequestParser(max_bulk_len)
    parser.feed(data)
    requests, ends = [], []
    try:
        while (request := parser.next_request()) is not NEED_DATA:
            requests.append(request)
            ends.append(len(data) - parser.buffered)
    except ProtocolError:
        pass
    return requests, ends


def fuzz_splitters(rng: random.Random, seeds: list[bytes]) -> str:
    data = _pipeline(rng)
    if rng.random() < 0.7:
        data = mutate(rng, data, _RESP_TOKENS)
    authenticated = rng.random() < 0.9
    max_bulk_len = rng.choice((512 * 1024 * 1024, 8, 30_000))
    chunks = cut(rng, data)
    whole = _exact([data], authenticated, max_bulk_len, False)
    exact = _exact(chunks, authenticated, max_bulk_len, False)
    fast = _exact(chunks, authenticated, max_bulk_len, True)
    if fast[:4] != exact[:4]:
        raise Finding(f"fast parser {fast[:4]!r} != exact {exact[:4]!r} for chunks {chunks!r}")
    if (exact[0], exact[1]) != (whole[0], whole[1]):
        raise Finding(f"exact parser differs by chunking: {exact[:2]!r} != {whole[:2]!r}")
    # split_requests, both ways, against what the exact parser reads first.
    requests, ends = _exact_prefix(data, max_bulk_len)
    found, sizes, refused = split_requests(data, 0, max_bulk_len)
    if found != requests[:len(found)] or len(sizes) != len(found):
        raise Finding(f"split_requests {found!r} is not a prefix of {requests!r}")
    if found and sum(sizes) != ends[len(found) - 1]:
        raise Finding(f"split_requests sizes {sizes!r} != consumed {ends!r}")
    quick, quick_sizes, quick_refused = split_requests(data, 0, max_bulk_len, want_sizes=False)
    if quick != requests[:len(quick)]:
        raise Finding(f"split_requests(want_sizes=False) {quick!r} != {requests!r}")
    if type(quick_sizes) is int:
        if quick != requests or quick_refused or (quick and quick_sizes != ends[-1]):
            raise Finding(f"split total {quick_sizes} for {quick!r}: exact {requests!r} {ends}")
    elif (quick, quick_sizes, quick_refused) != (found, sizes, refused):
        raise Finding("split_requests sized two ways differ")
    # (split_requests only asks it when no argument can pass max_bulk_len)
    lines = _split_lines(data) if len(data) <= max_bulk_len else None
    if lines is not None and (lines != requests or (ends and ends[-1] != len(data))):
        raise Finding(f"_split_lines {lines!r} != exact {requests!r}")
    return "error" if exact[1] else ("vouched" if fast[4] else "ok")


# -- (b) RDB files ------------------------------------------------------------------------------
_RDB_TOKENS = [b"\x81\xff\xff\xff\xff\xff\xff\xff\xff", b"\x81\x80\x00\x00\x00\x00\x00\x00\x00",
               b"\x80\xff\xff\xff\xff", b"\x80\x7f\xff\xff\xff", b"\xbf\xff", b"\x7f", b"\xc3",
               b"\xc3\x7f\x7f", b"\xc0", b"\xc1", b"\xc2", b"\xfe\x00", b"\xfb\x01\x01",
               b"\xfc" + b"\xff" * 8, b"\xfd\xff\xff\xff\xff", b"\xfa\x01a\x01b", b"\xf5",
               b"\xf7", b"\xf8", b"\xf9\x01", b"\xff", b"\x00\x01k\x01v", b"\x0e", b"\x0f",
               b"\x10", b"\x11", b"\x12", b"\x13", b"\x15", b"\x04", b"\x03", b"\x05", b"\x06",
               b"\x0b", b"\x0d", b"\x0c", b"\x0a", b"\x09", b"\xfe", b"\x00" * 8]


def sample_keyspace() -> Keyspace:
    """A dataset with every type in its small and big encodings, expiries, two dbs."""
    ks = Keyspace()
    data = ks.dbs[0].data
    stream = Stream()
    stream.entries = {(1, 1): [b"f", b"v"], (2, 0): [b"f", b"w", b"g", b"1"]}
    stream.last_id = (2, 0)
    stream.entries_added = 2
    stream.groups[b"g"] = StreamGroup(b"g", last_id=(1, 1))
    data.update({
        b"str": b"value", b"int": b"-42", b"lzf": b"ab" * 40, b"list": deque([b"a", b"12"]),
        b"biglist": deque(b"e%d" % i for i in range(200)),
        b"hash": {b"f": b"v"}, b"bighash": {b"f%d" % i: b"v" * 70 for i in range(3)},
        b"set": {b"1", b"2", b"-300000"}, b"sset": {b"a", b"b"},
        b"bigset": {b"m%d" % i for i in range(200)}, b"zset": ZSet({b"a": 1.5, b"b": -2.0}),
        b"bigzset": ZSet({b"x" * 70: 2.0, b"y": float("inf")}), b"stream": stream,
    })
    ks.dbs[0].expires[b"str"] = NOW_MS + 10_000
    ks.dbs[0].expires[b"list"] = NOW_MS - 10_000
    ks.dbs[3].data[b"other"] = b"x"
    return ks


def rdb_seeds(extra: Path | None) -> list[bytes]:
    files = sorted((HERE / "rdb-corpus").glob("*/*.rdb"))
    if extra is not None:
        files += sorted(extra.glob("*.rdb"))
    seeds = [path.read_bytes() for path in files]
    seeds.append(dumps(sample_keyspace(), aux=[(b"redis-ver", b"7.0.15")]))
    seeds.append(dumps(sample_keyspace(), compression=False, version=11))
    return [seed for seed in seeds if len(seed) < 200_000]  # big ones: slow, no new paths


def fix_crc(data: bytes) -> bytes:
    """``data`` with its last 8 bytes the CRC64 of the rest, as a writer would leave it."""
    if len(data) < 17:
        return data
    return data[:-8] + crc64(data[:-8]).to_bytes(8, "little")


def _sentinel() -> Keyspace:
    ks = Keyspace()
    ks.dbs[0].data[b"before"] = b"untouched"
    return ks


def _snapshot(ks: Keyspace) -> list[tuple[dict, dict]]:
    return [(dict(db.data), dict(db.expires)) for db in ks.dbs]


def _load(data: bytes | list[bytes]) -> Keyspace | RdbError:
    ks = _sentinel()
    before = _snapshot(ks)
    try:
        if isinstance(data, list):
            staged = StagedLoad(len(ks.dbs), drop_expired=False, now_ms=NOW_MS)
            for piece in data:
                staged.feed(piece)
            staged.finish()
            staged.apply(ks)
        else:
            load_into(ks, data, drop_expired=False, now_ms=NOW_MS)
    except RdbError as err:
        if _snapshot(ks) != before:
            raise Finding(f"a refused RDB changed the keyspace: {err}") from None
        return err
    return ks


def fuzz_rdb(rng: random.Random, seeds: list[bytes]) -> str:
    seed = rng.choice(seeds)
    data = mutate(rng, seed, _RDB_TOKENS, first=rng.choice((0, 9, 9, 9)))
    if rng.random() < 0.7:
        data = fix_crc(data)  # else the checksum refuses most mutations before the reader
    loaded = _load(data)
    pieces = _load(cut(rng, data)) if rng.random() < 0.3 else loaded
    if isinstance(loaded, RdbError):
        if not isinstance(pieces, RdbError):
            raise Finding(f"refused whole ({loaded}) but loaded in pieces")
        return "refused"
    if isinstance(pieces, RdbError):
        raise Finding(f"loaded whole but refused in pieces: {pieces}")
    first = _snapshot(loaded)
    if _snapshot(pieces) != first:
        raise Finding("loaded in pieces to another dataset")
    again = _load(dumps(loaded))
    if isinstance(again, RdbError):
        raise Finding(f"the re-saved dataset does not load: {again}")
    if _snapshot(again) != first:
        raise Finding("re-save and reload changed the dataset")
    return "loaded"


# -- (c) RESTORE -------------------------------------------------------------------------------
def restore_seeds(extra: Path | None) -> list[bytes]:
    ks = sample_keyspace()
    seeds = [dump_value(value, compression=compression)
             for db in ks.dbs for value in db.data.values() for compression in (True, False)]
    seeds += [dump_value(value) for value in (
        b"12345678901", b"x" * 100, deque([b"1"] * 5), {b"1", b"2"}, {b"a" * 100},
        {str(i).encode(): b"%d" % i for i in range(200)}, ZSet({b"m%d" % i: i for i in range(200)}))]
    if extra is not None and (extra / "payloads.hex").exists():
        seeds += [bytes.fromhex(line) for line in (extra / "payloads.hex").read_text().split()]
    return seeds


class _Restorer:
    """An engine to RESTORE into (made once: creating one costs more than a case)."""

    def __init__(self) -> None:
        self.engine = Engine(Config(save=(), enable_debug_command="local"))
        self.session = self.engine.new_session()

    def __call__(self, *args: bytes) -> object:
        return self.engine.execute(self.session, list(args))


_restorer: _Restorer | None = None


def fuzz_restore(rng: random.Random, seeds: list[bytes]) -> str:
    global _restorer
    run = _restorer = _restorer or _Restorer()
    payload = mutate(rng, rng.choice(seeds), _RDB_TOKENS)
    if rng.random() < 0.8:
        payload = fix_crc(payload)
    # sanitize-dump-payload: the deep checks, or only those kvrepl needs to decode.
    deep = rng.random() < 0.5
    run(b"CONFIG", b"SET", b"sanitize-dump-payload", b"yes" if deep else b"no")
    reply = run(b"RESTORE", b"k", b"0", payload, b"REPLACE")
    try:
        direct: object = load_value(payload, deep=deep)
    except RdbError as err:
        direct = err
    if deep and not isinstance(direct, RdbError):
        # The deep checks only add to the others: what they accept, the shallow ones
        # read as the same value.
        if load_value(payload, deep=False) != direct:
            raise Finding("the shallow checks read another value than the deep ones")
    if isinstance(reply, ReplyError):
        if str(reply) not in (VERSION_OR_CHECKSUM, BAD_DATA_FORMAT):
            raise Finding(f"RESTORE answered {reply!r}")
        if not isinstance(direct, RdbError) or str(direct) != str(reply):
            raise Finding(f"RESTORE said {reply} but load_value gave {direct!r}")
        if run(b"EXISTS", b"k") != 0:
            raise Finding("a refused RESTORE left a key")
        return "refused"
    if reply != b"OK" and reply != "OK":
        raise Finding(f"RESTORE answered {reply!r}")
    if isinstance(direct, RdbError):
        raise Finding(f"RESTORE took a payload load_value refuses: {direct}")
    dumped = run(b"DUMP", b"k")
    if run(b"RESTORE", b"k2", b"0", dumped, b"REPLACE") not in (b"OK", "OK"):
        raise Finding("the DUMP of a restored value does not RESTORE")
    data = run.engine.keyspace.dbs[0].data
    if data[b"k"] != data[b"k2"]:  # (not the payloads: a set's order is its table's)
        raise Finding("DUMP and RESTORE changed the value")
    if run(b"DEBUG", b"DIGEST-VALUE", b"k") != run(b"DEBUG", b"DIGEST-VALUE", b"k2"):
        raise Finding("DUMP and RESTORE changed the value")
    run(b"DEL", b"k", b"k2")
    return "restored"


# -- (d) the replication stream as a replica reads it -----------------------------------------
_REPLID = b"8f2c0b0e1f7a4d6c9b3e2a1f0d9c8b7a6e5d4c3b"
_MARK = b"a" * 40


def _stream_commands(rng: random.Random) -> bytes:
    commands = [[b"SELECT", b"%d" % rng.randrange(3)]]
    for _ in range(rng.randint(0, 10)):
        kind = rng.randrange(6)
        if kind == 0:
            commands.append([b"PING"])
        elif kind == 1:
            commands.append([b"REPLCONF", b"GETACK", b"*"])
        elif kind == 2:
            commands += [[b"MULTI"], [b"INCR", b"n"], [b"EXEC"]]
        else:
            commands.append([b"SET", _argument(rng), _argument(rng)])
    return b"".join(map(encode_command, commands))


def replstream_seeds(rdbs: list[bytes]) -> Callable[[random.Random], bytes]:
    small = [seed for seed in rdbs if len(seed) < 4096]

    def transcript(rng: random.Random) -> bytes:
        parts = [b"+PONG\r\n", b"+OK\r\n", b"+OK\r\n"]
        if rng.random() < 0.2:
            parts.append(b"+CONTINUE " + _REPLID + b"\r\n")
        else:
            parts.append(b"+FULLRESYNC " + _REPLID + b" 0\r\n" + b"\n" * rng.randint(0, 2))
            rdb = rng.choice(small)
            if rng.random() < 0.5:
                parts.append(b"$%d\r\n" % len(rdb) + rdb)
            else:
                parts.append(b"$EOF:" + _MARK + b"\r\n" + rdb + _MARK)
        parts.append(_stream_commands(rng))
        return b"".join(parts)

    return transcript


_REPL_TOKENS = _RESP_TOKENS + [b"$EOF:", _MARK, b"+FULLRESYNC ", b"+CONTINUE", b"-LOADING\r\n",
                               b"-ERR x\r\n", b"$LZ4STREAM\r\n", b"\n"]
_EXPECTED = (ReplicationProtocolError, TryLater, ProtocolError)


def _replica_events(chunks: list[bytes]) -> tuple[list[object], str | None, int]:
    """What a replica's protocol makes of ``chunks``: normalized events (payload bytes and
    stream commands joined, so that the pieces do not matter), the error, and the stream
    bytes left pending."""
    protocol = ReplicaProtocol(listening_port=6380)
    events: list[object] = list(protocol.start())
    error = None
    try:
        for chunk in chunks:
            events += protocol.receive_data(chunk)
    except _EXPECTED as err:
        error = f"{type(err).__name__}: {err}"
    out: list[object] = []
    for event in events:
        kind = type(event)
        if kind is StreamBatch:
            for command in event.commands():
                out.append(("command", command.argv, command.size, command.raw))
        elif kind is PayloadData:
            if out and type(out[-1]) is tuple and out[-1][0] == "payload":
                out[-1] = ("payload", out[-1][1] + event.data)
            else:
                out.append(("payload", event.data))
        elif kind is Send:
            out.append(("send", event.data))
        else:
            out.append(event)
    return out, error, protocol.stream_bytes_pending()


def _prefix(short: list[object], long: list[object]) -> bool:
    """``short`` is ``long`` cut somewhere (a payload event possibly within its bytes)."""
    if len(short) > len(long):
        return False
    for index, (a, b) in enumerate(zip(short, long, strict=False)):
        if a != b and not (index == len(short) - 1 and type(a) is tuple and type(b) is tuple
                           and a[0] == b[0] == "payload" and b[1].startswith(a[1])):
            return False
    return True


def fuzz_replstream(rng: random.Random, seeds: Callable[[random.Random], bytes]) -> str:
    data = seeds(rng)
    if rng.random() < 0.8:
        data = mutate(rng, data, _REPL_TOKENS)
    whole = _replica_events([data])
    pieces = _replica_events(cut(rng, data))
    if whole[1] is None and pieces != whole:
        raise Finding(f"events in pieces {pieces!r} != whole {whole!r}")
    # An error drops the events of the receive_data call that raised it (the link drops
    # and the master resends from the offset reached): fed whole, that is all of them.
    if whole[1] is not None and (pieces[1] != whole[1] or not _prefix(whole[0], pieces[0])):
        raise Finding(f"events in pieces {pieces!r} do not extend whole {whole!r}")
    events, error, pending = whole
    commands = [event for event in events if type(event) is tuple and event[0] == "command"]
    for _, argv, size, raw in commands:
        if size != len(raw):
            raise Finding(f"command {argv!r} size {size} but raw {raw!r}")
    if commands:
        # The stream's commands are what the exact parser reads from those bytes.
        stream = b"".join(raw for *_, raw in commands)
        requests, ends = _exact_prefix(stream, 512 * 1024 * 1024)
        if requests != [argv for _, argv, _, _ in commands] or ends[-1] != len(stream):
            raise Finding(f"stream commands {commands!r} != exact parser's {requests!r}")
    return "error" if error else ("stream" if commands else "handshake")


# -- (e) the TCP server, many clients at once ----------------------------------------------------
# Commands a fuzzed client may send: each gives one reply and none can take another client
# down by design (no SHUTDOWN, CLIENT KILL, CONFIG SET requirepass, blocking reads, huge
# allocations such as SETBIT at 2^32: those are what they are documented to be). A mutated
# request naming a denied command is not sent ("denied" outcome).
_TCP_VOCABULARY = [
    b"GET", b"SET", b"INCR", b"INCRBY", b"DECR", b"APPEND", b"STRLEN", b"GETRANGE", b"MGET",
    b"MSET", b"GETDEL", b"GETEX", b"SETNX", b"DEL", b"EXISTS", b"TYPE", b"EXPIRE", b"PEXPIRE",
    b"TTL", b"PERSIST", b"RENAME", b"COPY", b"OBJECT", b"LPUSH", b"RPUSH", b"LPOP", b"RPOP",
    b"LRANGE", b"LINDEX", b"LSET", b"LREM", b"LTRIM", b"LPOS", b"LMOVE", b"HSET", b"HGET",
    b"HDEL", b"HGETALL", b"HINCRBY", b"HINCRBYFLOAT", b"SADD", b"SREM", b"SMEMBERS", b"SINTER",
    b"SUNIONSTORE", b"SPOP", b"ZADD", b"ZRANGE", b"ZINCRBY", b"ZREM", b"ZRANGEBYSCORE",
    b"ZUNIONSTORE", b"ZPOPMIN", b"XADD", b"XRANGE", b"XLEN", b"XTRIM", b"XDEL", b"PFADD",
    b"PFCOUNT", b"PFMERGE", b"GEOADD", b"GEODIST", b"GEOSEARCH", b"SCAN", b"KEYS", b"DBSIZE",
    b"PING", b"ECHO", b"SELECT", b"MULTI", b"EXEC", b"DISCARD", b"WATCH", b"UNWATCH", b"TIME",
    b"PUBLISH", b"DUMP", b"RESTORE", b"SORT", b"FLUSHDB", b"HELLO", b"INFO", b"COMMAND",
    b"MEMORY", b"LCS", b"UNKNOWNCMD",
]
_TCP_DENIED = frozenset(name.lower() for name in (
    b"SHUTDOWN", b"QUIT", b"CLIENT", b"CONFIG", b"ACL", b"AUTH", b"DEBUG", b"MONITOR",
    b"SUBSCRIBE", b"PSUBSCRIBE", b"SSUBSCRIBE", b"SYNC", b"PSYNC", b"REPLCONF", b"REPLICAOF",
    b"SLAVEOF", b"FAILOVER", b"WAIT", b"WAITAOF", b"XREAD", b"XREADGROUP", b"EVAL", b"EVALSHA",
    b"EVAL_RO", b"EVALSHA_RO", b"FCALL", b"FCALL_RO", b"FUNCTION", b"SCRIPT", b"MIGRATE",
    b"SAVE", b"BGSAVE", b"BGREWRITEAOF", b"SETBIT", b"SETRANGE", b"BITFIELD", b"SRANDMEMBER",
    b"HRANDFIELD", b"ZRANDMEMBER", b"RESET", b"CLUSTER", b"MODULE", b"LATENCY", b"PFDEBUG",
    b"PFSELFTEST", b"SWAPDB", b"FLUSHALL", b"READONLY", b"LOLWUT", b"SPUBLISH"))
_TCP_KEYS = (b"k", b"k2", b"list", b"hash", b"set", b"zset", b"stream", b"hll", b"geo", b"{k}x")
_TCP_NUMBERS = (b"0", b"1", b"-1", b"2", b"10", b"100", b"-100", b"1.5", b"inf", b"-inf",
                b"+inf", b"(1", b"[a", b"-", b"+", b"*", b"$", b"0-1", b"9223372036854775807",
                b"-9223372036854775808", b"nan")
_TCP_WORDS = (b"EX", b"PX", b"NX", b"XX", b"GT", b"LT", b"KEEPTTL", b"GET", b"LIMIT", b"BYSCORE",
              b"REV", b"WITHSCORES", b"MATCH", b"COUNT", b"TYPE", b"MAXLEN", b"~", b"=",
              b"LEFT", b"RIGHT", b"FROMMEMBER", b"BYRADIUS", b"km", b"ASC", b"STORE", b"IDX",
              b"ENCODING", b"FREQ", b"USAGE", b"3", b"2", b"AUTH", b"REPLACE", b"DB")
_TCP_CLIENTS = 12  # connections the fuzzer keeps; a case uses 1 to 6 of them at once


def _tcp_argument(rng: random.Random) -> bytes:
    kind = rng.randrange(10)
    if kind < 3:
        return rng.choice(_TCP_KEYS)
    if kind < 5:
        return rng.choice(_TCP_NUMBERS)
    if kind < 7:
        return rng.choice(_TCP_WORDS)
    return _argument(rng)


def _tcp_pipeline(rng: random.Random) -> bytes:
    parts = []
    for _ in range(rng.randint(1, 10)):
        if rng.random() < 0.9:
            name = rng.choice(_TCP_VOCABULARY)
            args = [_tcp_argument(rng) for _ in range(rng.randint(0, 6))]
            parts.append(encode_command([name, *args]))
        else:
            parts.append(rng.choice((b"PING\r\n", b"GET k\r\n", b"SET k v\r\n", b"\r\n",
                                     b'ECHO "a b"\r\n', b"*0\r\n")))
    data = b"".join(parts)
    return mutate(rng, data, _RESP_TOKENS) if rng.random() < 0.5 else data


class TcpRig:
    """A kvrepl-server child (killed with this process: PR_SET_PDEATHSIG) on a loopback
    port, a pool of client connections, and one clean client that only ever PINGs."""

    def __init__(self, extra: Path | None) -> None:
        import atexit
        import socket
        import subprocess
        import tempfile

        self.socket = socket
        self.home = Path(tempfile.mkdtemp(prefix="kvrepl-fuzz-tcp-"))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.log_path = self.home / "server.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 (closed at exit)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kvrepl", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--dir", str(self.home), "--maxmemory", "256mb"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent)
        atexit.register(self.close)
        deadline = time.monotonic() + 30
        while True:
            try:
                self.clean = self._connect()
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"kvrepl-server did not start: {self.output()}") from None
                time.sleep(0.05)
        self.clients = [self._connect() for _ in range(_TCP_CLIENTS)]
        self.log_seen = 0

    def _connect(self):  # noqa: ANN202 (a socket)
        sock = self.socket.create_connection(("127.0.0.1", self.port), timeout=5)
        sock.setsockopt(self.socket.IPPROTO_TCP, self.socket.TCP_NODELAY, 1)
        return sock

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_bytes().decode(errors="replace")

    def new_log(self) -> bytes:
        self.log.flush()
        with open(self.log_path, "rb") as log:
            log.seek(self.log_seen)
            data = log.read()
        self.log_seen += len(data)
        return data

    def replace(self, index: int) -> None:
        self.clients[index].close()
        self.clients[index] = self._connect()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        import shutil
        shutil.rmtree(self.home, ignore_errors=True)


def _die_with_parent() -> None:
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


_TCP_PROBE = encode_command([b"fuzz-probe"])


def _requests(data: bytes) -> tuple[list[list[bytes]], bool]:
    """The requests the exact parser reads from ``data``, and whether it then failed."""
    parser = RequestParser()
    requests: list[list[bytes]] = []
    try:
        parser.feed(data)
        while (request := parser.next_request()) is not NEED_DATA:
            requests.append(request)
    except ProtocolError:
        return requests, True
    return requests, False


def _expected(data: bytes) -> tuple[int, bool, bool, set[bytes]]:
    """(replies, closes with a protocol error, leaves a request open, command names)."""
    requests, failed = _requests(data)
    names = {request[0].lower() for request in requests}
    if failed:
        return len(requests) + 1, True, False, names
    # A probe request sent after ``data`` is read as itself only if ``data`` ended between
    # two requests (the parser's own state says nothing about a multibulk half read).
    after, _ = _requests(data + _TCP_PROBE)
    return len(requests), False, after[len(requests):] != [[b"fuzz-probe"]], names


def _replies(buf: bytes) -> tuple[int, int, int]:
    """(complete replies in ``buf``, bytes they take, where the last one starts)."""
    from support import reply_end

    count = pos = last = 0
    while pos < len(buf):
        end = reply_end(buf, pos)
        if end is None:
            break
        count, last, pos = count + 1, pos, end
    return count, pos, last


def _short(data: bytes) -> str:
    """``data`` for a report: its ends, and how long it is."""
    return repr(data) if len(data) <= 400 else f"{data[:300]!r}...{data[-80:]!r} ({len(data)} bytes)"


def fuzz_tcp(rng: random.Random, rig: TcpRig) -> str:
    import select

    chosen = rng.sample(range(_TCP_CLIENTS), rng.randint(1, 6))
    plans = {}
    for index in chosen:
        data = _tcp_pipeline(rng)
        replies, closes, partial, names = _expected(data)
        if names & _TCP_DENIED:
            continue
        plans[index] = (data, replies, closes, partial)
    if not plans:
        return "denied"
    for index, (data, *_) in plans.items():
        for piece in cut(rng, data):  # the server sees the requests in random pieces
            try:
                rig.clients[index].sendall(piece)
            except OSError:
                break  # closed after a protocol error: the rest is not read
    got = {index: b"" for index in plans}
    reset: set[int] = set()
    # index -> the server closed the connection; a client owed no reply has nothing to
    # wait for (anything it gets anyway is caught by the drain below)
    done = {index: False for index, plan in plans.items() if plan[1] == 0}
    deadline = time.monotonic() + 8
    while len(done) < len(plans):
        waiting = [index for index in plans if index not in done]
        if time.monotonic() > deadline:
            raise Finding(f"no full answer for clients {waiting}: "
                          + "; ".join(f"sent {_short(plans[i][0])}, got {_short(got[i])}" for i in waiting))
        ready, _, _ = select.select([rig.clients[i] for i in waiting], [], [], 0.5)
        for sock in ready:
            index = rig.clients.index(sock)
            try:
                chunk = sock.recv(1 << 20)
            except ConnectionResetError:
                # The server closed a connection (a protocol error) while pieces sent after
                # the bad one were still arriving: TCP answers them with a reset, which may
                # drop replies not read yet (Redis closes the same way).
                chunk = b""
                reset.add(index)
            got[index] += chunk
            count = _replies(got[index])[0]
            if not chunk or (count >= plans[index][1] and not plans[index][2]):
                done[index] = not chunk
    for index in plans:  # what came beyond the replies waited for
        sock = rig.clients[index]
        if not done[index] and select.select([sock], [], [], 0)[0]:
            try:
                got[index] += sock.recv(1 << 20)
            except OSError:
                pass
    outcome = "ok"
    for index, (data, replies, closes, partial) in plans.items():
        count, used, last = _replies(got[index])
        if index in reset and closes and count < replies:
            outcome = "reset"  # a prefix of the replies came, whole ones counted, then the cut
        elif count != replies or used != len(got[index]):
            raise Finding(f"sent {_short(data)}: {count} replies (expected {replies}), got "
                          f"{_short(got[index])}")
        elif closes:
            if not got[index].startswith(b"-ERR Protocol error", last) or not done[index]:
                raise Finding(f"sent {_short(data)}: expected a protocol error and a close, "
                              f"got {_short(got[index])}")
            outcome = "protocol-error"
        elif done[index]:
            raise Finding(f"sent {_short(data)}: the server closed the connection, got "
                          f"{_short(got[index])}")
        if closes or partial:
            rig.replace(index)
    rig.clean.sendall(b"PING\r\n")
    pong = b""
    while not pong.endswith(b"\r\n"):
        chunk = rig.clean.recv(100)
        if not chunk:
            raise Finding("the clean client was disconnected")
        pong += chunk
    if pong != b"+PONG\r\n":
        raise Finding(f"the clean client's PING got {pong!r}")
    if rig.process.poll() is not None:
        raise Finding(f"kvrepl-server exited: {rig.output()[-3000:]}")
    log = rig.new_log()
    if b"Traceback" in log or b"internal error" in log:
        raise Finding("the server logged an internal error:\n"
                      + log.decode(errors="replace")[-3000:])
    return outcome


# -- running -----------------------------------------------------------------------------------
TARGETS: dict[str, tuple[Callable, Callable[[Path | None], object]]] = {
    "splitters": (fuzz_splitters, lambda extra: []),
    "rdb": (fuzz_rdb, rdb_seeds),
    "restore": (fuzz_restore, restore_seeds),
    "replstream": (fuzz_replstream, lambda extra: replstream_seeds(rdb_seeds(extra))),
    "tcp": (fuzz_tcp, TcpRig),
}


def _alarm(signum: int, frame: object) -> None:
    raise Hang()


def run(target: str, cases: int, seed: int, extra: Path | None, case_timeout: float,
        only: int | None = None) -> dict:
    """Run ``cases`` cases of ``target``; case ``i`` draws from ``Random((seed, i))``, so
    ``only=i`` replays one. Raises Finding (with the case number) on the first failure."""
    check, make_seeds = TARGETS[target]
    seeds = make_seeds(extra)
    outcomes: Counter[str] = Counter()
    signal.signal(signal.SIGALRM, _alarm)
    began = time.perf_counter()
    for case in range(cases) if only is None else (only,):
        rng = random.Random(f"{seed}:{case}")
        signal.setitimer(signal.ITIMER_REAL, case_timeout)
        try:
            outcomes[check(rng, seeds)] += 1
        except Hang:
            raise Finding(f"{target} case {case} (seed {seed}) ran over {case_timeout}s") from None
        except Finding as err:
            raise Finding(f"{target} case {case} (seed {seed}): {err}") from err
        except Exception as err:
            raise Finding(f"{target} case {case} (seed {seed}): {type(err).__name__}: {err}"
                          ) from err
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    seconds = time.perf_counter() - began
    return {"target": target, "cases": cases, "seed": seed, "seconds": round(seconds, 2),
            "cases_per_s": round(cases / seconds), "outcomes": dict(outcomes),
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}


def main(args: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", choices=sorted(TARGETS))
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--case", type=int, help="run only this case (its failure, if any, again)")
    parser.add_argument("--extra-seeds", type=Path, help="more RDB files / payloads.hex")
    parser.add_argument("--case-timeout", type=float, default=10.0)
    parser.add_argument("--memory-mb", type=int, default=1024,
                        help="address-space limit: allocating a corrupt length fails")
    options = parser.parse_args(args)
    limit = options.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        summary = run(options.target, options.cases, options.seed, options.extra_seeds,
                      options.case_timeout, options.case)
    except Finding as err:
        print(json.dumps({"target": options.target, "failure": str(err)[:4000]}))
        return 1
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
