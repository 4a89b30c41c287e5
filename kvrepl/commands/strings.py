"""String commands (seed: GET and plain SET; the family is completed in strings work)."""

from __future__ import annotations

from kvrepl.commands.core import Session, command
from kvrepl.errors import WrongTypeError
from kvrepl.protocol.replies import OK


@command("get")
def get(s: Session, argv: list[bytes]) -> object:
    value = s.db.lookup(argv[1])
    if value is None or type(value) is bytes:
        return value
    raise WrongTypeError()


@command("set")
def set_(s: Session, argv: list[bytes]) -> object:
    s.db.set(argv[1], argv[2])
    s.engine.dirty += 1
    return OK
