"""Command families, one module each (Redis's ``t_string.c``, ``t_list.c`` ... layout).

Importing this package registers every handler in :data:`kvrepl.commands.core.HANDLERS`.
"""

from kvrepl.commands import (  # noqa: F401
    acl,
    bitmaps,
    client,
    connection,
    debug,
    geo,
    hashes,
    hyperloglog,
    info,
    keys,
    lists,
    persistence,
    pubsub,
    replication,
    server,
    sets,
    streams,
    strings,
    transactions,
    zsets,
)
