"""Function libraries in RDB files and replication payloads (FUNCTION2 records).

Imported by persistence and replication, so it loads the Lua side only when needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kvrepl.errors import ReplyError
from kvrepl.rdb.errors import RdbError

if TYPE_CHECKING:
    from kvrepl.commands.core import Engine


def function_codes(engine: Engine) -> list[bytes]:
    """The code of every function library, for an RDB's FUNCTION2 records."""
    state = engine.scripting
    if state is None or not state.has_functions:
        return []
    return state.functions.codes()


def load_functions(engine: Engine, codes: list[bytes], replace_all: bool = True) -> None:
    """Install the libraries an RDB held (see :meth:`FunctionsState.load_codes`); RdbError
    when one does not load, leaving the libraries as they were on a full load."""
    from kvrepl.scripting.state import scripting

    if not codes and (engine.scripting is None or not engine.scripting.has_functions):
        return
    try:
        scripting(engine).functions.load_codes(codes, replace_all)
    except ReplyError as err:
        raise RdbError(f"Failed loading library: {err.message}") from None
