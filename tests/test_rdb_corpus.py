"""Every RDB file of the corpus (written by real Redis servers, RDB versions 2 to 11)
loads into exactly the dataset a real redis-server 7.0.15 held after loading it.

The corpus is the repository's tests/rdb-corpus/ (a copy of the shared one); see its
README.md for the JSON format.
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from pathlib import Path

import pytest
from support import RDB_CORPUS as CORPUS
from support import corpus_files

from kvrepl.rdb import RdbError, iter_events, load_into
from kvrepl.store.database import Keyspace
from kvrepl.store.values import Stream, ZSet

FILES = corpus_files()


def as_json(value: object) -> tuple[str, object]:
    """A loaded value in the corpus's JSON form (bytes as latin-1 text)."""
    def text(b: bytes) -> str:
        return b.decode("latin-1")

    if type(value) is bytes:
        return "string", text(value)
    if type(value) is deque:
        return "list", [text(x) for x in value]
    if type(value) is set:
        return "set", sorted(text(x) for x in value)
    if type(value) is dict:
        return "hash", {text(k): text(v) for k, v in value.items()}
    if type(value) is ZSet:
        return "zset", [[text(m), "inf" if s == math.inf else "-inf" if s == -math.inf else s]
                        for s, m in value.ordered]
    assert type(value) is Stream
    return "stream", [[f"{ms}-{seq}", {text(f[i]): text(f[i + 1]) for i in range(0, len(f), 2)}]
                      for (ms, seq), f in value.entries.items()]


def load(path: Path, **options: object) -> Keyspace:
    ks = Keyspace()
    with open(path, "rb") as f:
        load_into(ks, f, drop_expired=True, now_ms=int(time.time() * 1000), **options)
    return ks


def dataset(ks: Keyspace) -> dict:
    result = {}
    for db in ks.dbs:
        if db.data:
            result[str(db.id)] = {}
            for key, value in db.data.items():
                kind, shown = as_json(value)
                result[str(db.id)][key.decode("latin-1")] = {
                    "type": kind, "value": shown, "expire_at_ms": db.expires.get(key)}
    return result


@pytest.mark.parametrize("path", [p for p in FILES if p.with_suffix(".json").exists()],
                         ids=lambda p: p.name)
def test_file_loads_like_redis(path: Path) -> None:
    expected = json.loads(path.with_suffix(".json").read_text())
    for keys in expected.values():
        for entry in keys.values():
            if entry["type"] == "set":
                entry["value"] = sorted(entry["value"])
    assert dataset(load(path)) == expected


def test_set_as_listpack_version_11() -> None:
    ks = load(CORPUS / "rdbtools" / "dumps__set_as_listpack.rdb")
    assert ks.dbs[0].data == {b"set_as_listpack": {b"abc", b"abcdefg", b"abcdefghijklmn",
                                                   b"-3", b"50", b"-70"}}


@pytest.mark.parametrize("name,module,key", [
    ("dumps__redis_40_with_module.rdb", "ReJSON-RL", b"foo"),
    ("dumps__redis_60_with_module_aux.rdb", "test__rdb", None),
])
def test_module_files_are_refused_naming_the_module(name: str, module: str,
                                                    key: bytes | None) -> None:
    path = CORPUS / "rdbtools" / name
    ks = Keyspace()
    ks.dbs[0].data[b"existing"] = b"kept"
    with pytest.raises(RdbError, match=f"'{module}'") as info:
        with open(path, "rb") as f:
            load_into(ks, f, drop_expired=True)
    assert "at offset" in str(info.value) and info.value.key == key
    assert ks.dbs[0].data == {b"existing": b"kept"}
    # skipping is possible when asked for
    skipped = load(path, on_module="skip")
    assert all(key not in db.data for db in skipped.dbs)


def test_corrupt_ziplist_is_refused_naming_the_key() -> None:
    with pytest.raises(RdbError, match=r"ziplist integrity check failed.*at offset \d+ "
                                       r"\(key b'key:000000000091'\)"):
        load(CORPUS / "redis-assets" / "corrupt_ziplist.rdb")


def test_every_refused_file_is_accounted_for() -> None:
    refused = {p.name for p in FILES if p.with_name(p.stem + ".refused.txt").exists()}
    assert refused == {"dumps__redis_40_with_module.rdb", "dumps__redis_60_with_module_aux.rdb",
                       "dumps__set_as_listpack.rdb", "corrupt_ziplist.rdb"}
    assert all(p.with_suffix(".json").exists() or p.name in refused for p in FILES)


def test_corpus_files_parse_in_small_chunks() -> None:
    """The push parser gives the same events whatever the chunking."""
    for path in FILES:
        data = path.read_bytes()
        try:
            whole = list(iter_events(data))
        except RdbError:
            continue
        from kvrepl.rdb import NEED_DATA, RdbParser

        parser = RdbParser()
        events = []
        for i in range(0, len(data), 61):
            parser.feed(data[i:i + 61])
            while (event := parser.next_event()) is not NEED_DATA:
                events.append(event)
        assert events == whole, path.name
