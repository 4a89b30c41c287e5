"""The error Python code raises to fail the running Lua code."""

from __future__ import annotations


class ScriptError(Exception):
    """A Lua error raised from Python: ``value`` is the Lua error value (an error table or
    a message), which the prelude's error handler and ``pcall`` take out again."""

    def __init__(self, value: object) -> None:
        super().__init__("script error")
        self.value = value
