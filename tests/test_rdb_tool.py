"""``python -m kvrepl.rdb`` (``kvrepl-rdb``): check, dump and stats over the RDB corpus.

``check`` must print what ``redis-check-rdb`` 7.0.15 prints for every good corpus file;
``dump`` must give the dataset a real redis-server loaded from each file (the corpus JSON).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import RDB_CORPUS as CORPUS
from support import corpus_files

from kvrepl.rdb import RdbWriter
from kvrepl.rdb.tool import check, dump, escape, main, stats, unescape

REPO = Path(__file__).resolve().parent.parent
FILES = corpus_files()
# Files redis-check-rdb rejects, or reports differently on purpose (see the tests below).
BAD = {"corrupt_ziplist.rdb", "corrupt_empty_keys.rdb"}


def run_check(path: Path) -> tuple[int, str]:
    out = io.StringIO()
    code = check(str(path), out, progress_mode="never")
    return code, out.getvalue()


def test_check_accepts_every_good_corpus_file_and_rejects_the_bad_ones() -> None:
    for path in FILES:
        code, text = run_check(path)
        if path.name in BAD:
            assert code == 1 and "--- RDB ERROR DETECTED ---" in text, path.name
        else:
            assert code == 0 and "\\o/ RDB looks OK! \\o/" in text, (path.name, text)


def test_check_prints_what_redis_check_rdb_prints() -> None:
    binary = shutil.which("redis-check-rdb")
    if binary is None:
        pytest.skip("redis-check-rdb is not installed")
    # A module AUX block is reported at the offset after it, not before its payload; 7.0
    # refuses version 11 files, which kvrepl reads.
    skip = BAD | {"dumps__redis_60_with_module_aux.rdb", "dumps__set_as_listpack.rdb"}
    checked = 0
    for path in FILES:
        if path.name in skip:
            continue
        theirs = subprocess.run([binary, str(path)], capture_output=True, text=True,
                                timeout=30).stdout
        theirs = "".join(line for line in theirs.splitlines(True) if ":C " not in line)
        assert run_check(path)[1] == theirs, path.name
        checked += 1
    assert checked > 50


def test_check_reports_corruption_with_offset_and_key(tmp_path: Path) -> None:
    code, text = run_check(CORPUS / "redis-assets" / "corrupt_ziplist.rdb")
    assert code == 1
    assert "[additional info] Reading key 'key:000000000091'" in text
    assert "[info] 16 keys read" in text  # as redis-check-rdb counts them
    # a flipped byte: the checksum says so
    good = (CORPUS / "rdbtools" / "dumps-7__multiple_databases.rdb").read_bytes()
    bad = tmp_path / "bad.rdb"
    bad.write_bytes(good[:30] + bytes([good[30] ^ 0x20]) + good[31:])
    code, text = run_check(bad)
    assert code == 1 and "RDB CRC error" in text
    bad.write_bytes(good[:-20])
    assert run_check(bad)[0] == 1
    code, text = run_check(tmp_path / "missing.rdb")
    assert code == 1 and "Cannot open" in text


def test_check_counts_expired_keys(tmp_path: Path) -> None:
    now = int(time.time() * 1000)
    writer = RdbWriter(checksum=False)
    path = tmp_path / "x.rdb"
    path.write_bytes(writer.begin([(b"redis-ver", b"7.0.15")]) + writer.write_records(
        [(0, b"a", b"1", now - 10), (0, b"b", b"2", now + 100_000), (1, b"c", b"3", None)])
        + writer.finish())
    code, text = run_check(path)
    assert code == 0
    assert text.splitlines()[1:] == [  # what redis-check-rdb 7.0.15 prints for this file
        "[offset 27] AUX FIELD redis-ver = '7.0.15'",
        "[offset 29] Selecting DB ID 0",
        "[offset 62] Selecting DB ID 1",
        "[offset 79] RDB file was saved with checksum disabled: no check performed.",
        "[offset 79] \\o/ RDB looks OK! \\o/",
        "[info] 3 keys read", "[info] 2 expires", "[info] 1 already expired"]


def corpus_value(entry: dict) -> object:
    value = entry["value"]
    if entry["type"] == "set":
        return sorted(value)
    return value


def as_dumped(corpus: object) -> object:
    """A corpus JSON value (bytes as latin-1 text) in dump's escaped text."""
    if isinstance(corpus, str):
        return escape(corpus.encode("latin-1"))
    if isinstance(corpus, list):
        return [as_dumped(x) for x in corpus]
    if isinstance(corpus, dict):
        return {as_dumped(k): as_dumped(v) for k, v in corpus.items()}
    return corpus


def test_dump_gives_what_redis_server_loaded() -> None:
    now = int(time.time() * 1000)
    compared = 0
    for path in FILES:
        expected_file = path.with_suffix(".json")
        if not expected_file.exists():
            continue
        expected = json.loads(expected_file.read_text())
        out = io.StringIO()
        dump(str(path), out, progress_mode="never")
        got: dict[str, dict] = {}
        for line in out.getvalue().splitlines():
            item = json.loads(line)
            if item["expire_at_ms"] is not None and item["expire_at_ms"] < now:
                continue  # a master drops these when it loads the file
            value = item["value"]
            if item["type"] == "stream":
                value = value["entries"]
            got.setdefault(str(item["db"]), {})[item["key"]] = {
                "type": item["type"], "value": value, "expire_at_ms": item["expire_at_ms"]}
        want = {db: {as_dumped(key): {**entry, "value": as_dumped(corpus_value(entry))}
                     for key, entry in keys.items()}
                for db, keys in expected.items()}
        assert got == want, path.name
        compared += 1
    assert compared > 50


def test_dump_selects_databases(capsys: pytest.CaptureFixture[str]) -> None:
    path = CORPUS / "rdbtools" / "dumps-7__multiple_databases.rdb"
    assert main(["dump", str(path), "--db", "2"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines and {line["db"] for line in lines} == {2}


def test_stats_counts_keys_per_type_and_database() -> None:
    path = CORPUS / "redis-assets" / "encodings.rdb"
    expected = json.loads(path.with_suffix(".json").read_text())
    report = stats(str(path), top=3, progress_mode="never")
    counts = {db: {t: c["keys"] for t, c in types.items()}
              for db, types in report["databases"].items()}
    want: dict[str, dict[str, int]] = {}
    for db, keys in expected.items():
        for entry in keys.values():
            want.setdefault(db, {}).setdefault(entry["type"], 0)
            want[db][entry["type"]] += 1
    assert counts == want
    assert report["keys"] == sum(len(keys) for keys in expected.values())
    sizes = [item["bytes"] for item in report["largest"]]
    assert len(sizes) == 3 and sizes == sorted(sizes, reverse=True)
    assert sum(c["bytes"] for types in report["databases"].values()
               for c in types.values()) < report["bytes"]
    assert report["version"] == 4


def test_stats_text_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    path = CORPUS / "rdbtools" / "dumps-7__multiple_databases.rdb"
    assert main(["stats", str(path)]) == 0
    text = capsys.readouterr().out
    assert "RDB version" in text and "largest keys" in text
    assert main(["stats", str(path), "--json", "--top", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["largest"]) == 1 and report["checksum"] == "ok"


def test_progress_bar_on_request(capsys: pytest.CaptureFixture[str]) -> None:
    path = CORPUS / "redis-assets" / "encodings.rdb"
    assert main(["check", str(path), "--progress"]) == 0
    err = capsys.readouterr().err
    assert "100.0%" in err and err.endswith("\n")
    assert main(["check", str(path)]) == 0  # not a terminal, small file: no bar
    assert capsys.readouterr().err == ""


def test_errors_exit_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["stats", str(tmp_path / "missing.rdb")]) == 1
    assert "missing.rdb" in capsys.readouterr().err
    bad = tmp_path / "bad.rdb"
    bad.write_bytes(b"REDIS0010\xfa")
    assert main(["dump", str(bad)]) == 1
    assert "truncated" in capsys.readouterr().err


def test_python_dash_m() -> None:
    path = CORPUS / "rdbtools" / "dumps-7__keys_with_expiry.rdb"
    result = subprocess.run([sys.executable, "-m", "kvrepl.rdb", "check", str(path)],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0 and "RDB looks OK" in result.stdout


def test_dump_writes_utf8_as_itself_and_escapes_other_bytes(tmp_path: Path) -> None:
    """Keys and values that are valid UTF-8 come out as the same text (not Latin-1
    mojibake); a backslash is doubled, every byte outside valid UTF-8 is \\xHH; the bytes
    come back with unescape. The output is UTF-8 whatever the locale."""
    entries = [
        (0, "clé:日本".encode(), "value é €".encode(), None),
        (0, b"bad:\xff\xfe", b"caf\xc3", None),
        (0, b"back\\slash", b"\\xff is text", None),
        (0, "h:é".encode(), {b"\x80": "ü".encode()}, None),
    ]
    path = tmp_path / "keys.rdb"
    writer = RdbWriter()
    path.write_bytes(writer.begin() + writer.write_records(entries) + writer.finish())
    result = subprocess.run(
        [sys.executable, "-m", "kvrepl.rdb", "dump", str(path)], capture_output=True,
        timeout=60, env={**os.environ, "PYTHONPATH": str(REPO), "LC_ALL": "C",
                         "PYTHONIOENCODING": "", "PYTHONUTF8": "0"})
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.decode("utf-8").splitlines()]
    got = {line["key"]: line["value"] for line in lines}
    assert got == {
        "clé:日本": "value é €",
        "bad:\\xff\\xfe": "caf\\xc3",
        "back\\\\slash": "\\\\xff is text",
        "h:é": {"\\x80": "ü"},
    }
    assert "clé:日本".encode() in result.stdout  # as itself, not \\u escapes
    assert {unescape(key) for key in got} == {key for _, key, _, _ in entries}
    assert unescape(got["back\\\\slash"]) == b"\\xff is text"
