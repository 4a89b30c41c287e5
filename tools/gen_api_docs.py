"""Write docs/api.md, the API reference, from the docstrings and signatures of kvrepl's
public names and from the option table (every option a node takes by its Python name).

    python tools/gen_api_docs.py          # rewrite docs/api.md (``make docs``)
    python tools/gen_api_docs.py --check  # exit 1 when docs/api.md is not up to date

Standard library only (``inspect``): the output depends on the code alone, so a test
(tests/test_api_docs.py) keeps the committed file in step with it.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import re
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "docs" / "api.md"

# The modules of the embedded API beyond the package's own names, in reading order.
MODULES = ("kvrepl.embedded_redis", "kvrepl.aio", "kvrepl.direct_reads")


def _doc(obj: object) -> str:
    return inspect.getdoc(obj) or "(no docstring)"


def _signature(obj: object) -> str:
    try:
        text = str(inspect.signature(obj))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "(...)"
    return re.sub(r" at 0x[0-9a-f]+", "", text)  # defaults that are plain objects


def _members(cls: type) -> list[tuple[str, object]]:
    """Public methods and properties of ``cls``, its kvrepl bases' included (what
    ``help()`` shows of them), by name."""
    found: dict[str, object] = {}
    for klass in reversed(cls.__mro__):
        if not klass.__module__.startswith("kvrepl"):
            continue
        for name, member in vars(klass).items():
            if name.startswith("_") or not (callable(member) or isinstance(
                    member, (property, staticmethod, classmethod))):
                continue
            found[name] = member
    return sorted(found.items())


def _class(name: str, cls: type, level: str) -> list[str]:
    kind = "exception" if issubclass(cls, BaseException) else "class"
    if not any("__init__" in vars(k) or "__new__" in vars(k)
               for k in cls.__mro__ if k.__module__.startswith("kvrepl")):
        # Constructed as its base outside kvrepl (a redis-py class): that signature
        # belongs to redis-py's own reference.
        bases = ", ".join(f"`{b.__module__}.{b.__qualname__}`" for b in cls.__bases__)
        header = f"{level} `{name}` ({kind}; constructed as its base {bases})"
    else:
        header = f"{level} `{name}{_signature(cls)}` ({kind})"
    lines = [header, "", _doc(cls), ""]
    if issubclass(cls, BaseException):
        return lines
    for member_name, member in _members(cls):
        if isinstance(member, property):
            lines += [f"- **`{member_name}`** (property): {_doc(member)}"]
            continue
        function = member.__func__ if isinstance(member, (staticmethod, classmethod)) \
            else member
        doc = _doc(function).replace("\n", "\n  ")
        lines += [f"- **`{member_name}{_signature(function)}`**: {doc}"]
    return [*lines, ""]


def _function(name: str, function: object, level: str) -> list[str]:
    return [f"{level} `{name}{_signature(function)}`", "", _doc(function), ""]


def _names(module: ModuleType, level: str) -> list[str]:
    lines: list[str] = []
    for name in getattr(module, "__all__", ()):
        obj = getattr(module, name)
        if inspect.isclass(obj):
            lines += _class(name, obj, level)
        elif callable(obj):
            lines += _function(name, obj, level)
    return lines


def _options() -> list[str]:
    from kvrepl.config import OPTIONS

    lines = [
        "## Options",
        "",
        "`kvrepl.Master(**options)`, `kvrepl.Replica(..., **options)` and "
        "`kvrepl.Config(**options)` take each option by its Python name, as its redis.conf "
        "text or as a value; `CONFIG SET` changes those marked so at run time. Where kvrepl "
        "accepts only some values, the column says which.",
        "",
        "| Python name | redis.conf name | default | CONFIG SET | accepted |",
        "|---|---|---|---|---|",
    ]
    for option in sorted(OPTIONS, key=lambda o: o.name):
        if option.hidden:
            continue
        default = option.format(option.default) if option.default is not None else ""
        if option.name == "dir":
            default = option.default  # (CONFIG GET shows it made absolute, here and now)
        default = default.replace("|", "\\|") if default else '""'
        accepted = ""
        if option.only is not None:
            accepted = "only " + ", ".join(f"`{option.format(v)}`" if option.format(v)
                                           else "`\"\"`" for v in option.only)
        names = ", ".join([f"`{option.name}`", *(f"`{a}`" for a in option.aliases)])
        lines.append(f"| `{option.attr}` | {names} | `{default}` | "
                     f"{'yes' if option.mutable else 'no'} | {accepted} |")
    return [*lines, ""]


def render() -> str:
    """The whole reference, as markdown."""
    sys.path.insert(0, str(ROOT))
    import kvrepl

    lines = [
        "# kvrepl API reference",
        "",
        "Generated from the docstrings by `tools/gen_api_docs.py` (`make docs`); do not "
        "edit by hand: tests/test_api_docs.py fails when this file is not what the code "
        "says. Recipes: [embedded.md](embedded.md).",
        "",
        "## `kvrepl`",
        "",
        _doc(kvrepl),
        "",
        *_names(kvrepl, "###"),
    ]
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        lines += [f"## `{module_name}`", "", _doc(module), "", *_names(module, "###")]
    lines += _options()
    return "\n".join(line.rstrip() for line in lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when docs/api.md is not up to date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not TARGET.exists() or TARGET.read_text() != text:
            print(f"{TARGET} is out of date: run python tools/gen_api_docs.py",
                  file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
