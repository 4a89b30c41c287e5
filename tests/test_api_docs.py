"""docs/api.md is what tools/gen_api_docs.py makes from the code: the reference cannot
drift from the docstrings and the option table (regenerate with ``make docs``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import kvrepl

ROOT = Path(__file__).resolve().parent.parent


def _generator() -> object:
    spec = importlib.util.spec_from_file_location("gen_api_docs",
                                                  ROOT / "tools" / "gen_api_docs.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_committed_reference_is_up_to_date() -> None:
    expected = _generator().render()  # type: ignore[attr-defined]
    committed = (ROOT / "docs" / "api.md").read_text()
    assert committed == expected, "docs/api.md is out of date: run `make docs`"


def test_reference_covers_every_public_name_and_option() -> None:
    from kvrepl.config import OPTIONS

    text = (ROOT / "docs" / "api.md").read_text()
    assert "(no docstring)" not in text
    for name in kvrepl.__all__:
        if name != "__version__":
            assert f"`{name}" in text, name
    for method in ("redis", "aredis", "get", "set", "hgetall", "changes", "wait_synced",
                   "follow_address", "stop_following", "pubsub", "blpop"):
        assert f"**`{method}(" in text, method
    for option in OPTIONS:
        if not option.hidden:
            assert f"| `{option.attr}` |" in text, option.name
