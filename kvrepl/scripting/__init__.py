"""Lua scripting (Redis 7.0's EVAL and FUNCTION): the Lua state, its sandbox and API, the
Lua <-> reply conversions, the script cache and the function libraries."""

from kvrepl.scripting.state import ScriptingState, scripting

__all__ = ["ScriptingState", "scripting"]
