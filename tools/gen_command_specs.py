#!/usr/bin/env python3
"""Generate ``kvrepl/commands/redis_commands.json`` from Redis 7.0.15's command JSON files.

Usage::

    python tools/gen_command_specs.py [REDIS_GIT_DIR] [--ref 7.0.15] [--out PATH]

The files are read with ``git show <ref>:src/commands/<name>.json`` from a (bare) clone of
redis/redis, so no work tree is needed. The output keeps only what kvrepl's command table reads,
normalized the way Redis's own ``utils/generate-command-code.py`` normalizes it at build time:

* command names are lowercase; a subcommand is stored under its container's ``"subcommands"``
  keyed ``"container|sub"`` and carries ``"container"``; subcommands inherit the container's
  group and are sorted by name (the order of the generated ``commands.c`` tables);
* argument names are lowercase, argument tokens uppercase, command tips lowercase;
* empty ``history`` / ``command_tips`` lists are dropped (Redis stores NULL for them);
* commands flagged ``ONLY_SENTINEL`` (and their subcommands) are skipped: a redis-server not in
  sentinel mode does not register them.

What Redis computes at run time (implicit ACL categories, the legacy first/last/step range,
``movablekeys``) is left to ``kvrepl/commands/spec.py``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

DEFAULT_MIRROR = "/work/.mirror/redis+redis/repo"
DEFAULT_REF = "7.0.15"
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "kvrepl" / "commands" / "redis_commands.json"

# Top-level fields copied as they are (when present and not empty).
COMMAND_FIELDS = (
    "summary",
    "since",
    "group",
    "complexity",
    "doc_flags",
    "deprecated_since",
    "replaced_by",
    "history",
    "arity",
    "command_flags",
    "acl_categories",
    "command_tips",
    "key_specs",
    "get_keys_function",
)
ARGUMENT_FIELDS = ("key_spec_index", "token", "summary", "since", "deprecated_since")
ARGUMENT_FLAGS = ("optional", "multiple", "multiple_token")


def git(mirror: str, *args: str) -> str:
    """Run git against the mirror and return its stdout."""
    return subprocess.run(
        ["git", "-C", mirror, *args], check=True, capture_output=True, text=True
    ).stdout


def load_sources(mirror: str, ref: str) -> list[tuple[str, dict[str, Any]]]:
    """All command descriptions of ``ref`` as ``(NAME, desc)`` pairs, from every JSON file."""
    merged: list[tuple[str, dict[str, Any]]] = []
    for path in git(mirror, "ls-tree", "--name-only", f"{ref}:src/commands/").split():
        if path.endswith(".json"):
            text = git(mirror, "show", f"{ref}:src/commands/{path}")
            merged.extend(json.loads(text).items())
    return merged


def c_string(value: str) -> str:
    """The string C compiles from ``"<value>"``, as the C generator pastes values unescaped.

    This matters for MIGRATE's token ``""`` (JSON ``"\\"\\""``): in C that is two adjacent
    empty literals, so Redis prints an empty token.
    """
    if '"' not in value and "\\" not in value:
        return value
    out: list[str] = []
    inside = False
    chars = iter('"' + value + '"')
    for ch in chars:
        if ch == '"':
            inside = not inside
        elif inside and ch == "\\":
            nxt = next(chars)
            out.append({"n": "\n", "t": "\t", "r": "\r"}.get(nxt, nxt))
        elif inside:
            out.append(ch)
    return "".join(out)


def convert_argument(desc: dict[str, Any]) -> dict[str, Any]:
    """One argument, as ``generate-command-code.py`` would compile it."""
    out: dict[str, Any] = {"name": c_string(desc["name"].lower()), "type": desc["type"]}
    for field in ARGUMENT_FIELDS:
        value = desc.get(field)
        # The C generator turns empty strings into NULL, and a NULL field is not printed.
        if value is None or value == "":
            continue
        if isinstance(value, str):
            value = c_string(value.upper() if field == "token" else value)
        out[field] = value
    for flag in ARGUMENT_FLAGS:
        if desc.get(flag):
            out[flag] = True
    if desc["type"] in ("oneof", "block"):
        out["arguments"] = [convert_argument(sub) for sub in desc["arguments"]]
    return out


def convert_command(desc: dict[str, Any]) -> dict[str, Any]:
    """The fields kvrepl keeps of one command or subcommand."""
    out: dict[str, Any] = {}
    for field in COMMAND_FIELDS:
        value = desc.get(field)
        if value is None or value == "" or value == []:
            continue
        if field == "command_tips":
            value = [tip.lower() for tip in value]
        elif field == "history":
            value = [[c_string(version), c_string(change)] for version, change in value]
        elif isinstance(value, str):
            value = c_string(value)
        out[field] = value
    if desc.get("arguments"):
        out["arguments"] = [convert_argument(arg) for arg in desc["arguments"]]
    if "container" in desc:
        out["container"] = desc["container"].lower()
    return out


def build_table(sources: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The whole table: top-level commands keyed by lowercase name, subcommands nested."""
    commands: dict[str, dict[str, Any]] = {}
    subcommands: dict[str, dict[str, dict[str, Any]]] = {}
    for name, desc in sources:
        if "ONLY_SENTINEL" in desc.get("command_flags", ()):
            continue
        if "container" in desc:
            container = desc["container"].lower()
            subcommands.setdefault(container, {})[name.lower()] = desc
        else:
            commands[name.lower()] = convert_command(desc)

    table: dict[str, Any] = {}
    for name in sorted(commands):
        entry = commands[name]
        subs = subcommands.pop(name, {})
        if subs:
            nested = {}
            for sub in sorted(subs, key=str.upper):  # commands.c sorts the uppercase names
                converted = convert_command(subs[sub])
                converted["group"] = entry["group"]
                nested[f"{name}|{sub}"] = converted
            entry["subcommands"] = nested
        table[name] = entry
    # A subcommand left here belongs to a skipped (sentinel-only) container.
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mirror", nargs="?", default=DEFAULT_MIRROR, help="redis git directory")
    parser.add_argument("--ref", default=DEFAULT_REF, help="git tag or commit (default 7.0.15)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output JSON path")
    args = parser.parse_args(argv)

    table = build_table(load_sources(args.mirror, args.ref))
    text = json.dumps(table, separators=(",", ":"), ensure_ascii=False, sort_keys=False)
    args.out.write_text(text + "\n", encoding="utf-8")
    count = len(table) + sum(len(c.get("subcommands", ())) for c in table.values())
    print(f"wrote {args.out}: {len(table)} commands ({count} with subcommands)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
