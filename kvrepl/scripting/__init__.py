"""Lua scripting (Redis 7.0's EVAL and FUNCTION): the Lua state, its sandbox and API
(:mod:`.runtime`, ``prelude.lua``), the Lua <-> reply conversions (:mod:`.convert`), the
script cache (:mod:`.state`), the function libraries (:mod:`.functions`) and their place in
RDB files (:mod:`.persist`)."""
