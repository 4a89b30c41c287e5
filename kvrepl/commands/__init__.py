"""Command families, one module each (Redis's ``t_string.c``, ``t_list.c`` ... layout).

Importing this package registers every handler in :data:`kvrepl.commands.core.HANDLERS`.
"""

from kvrepl.commands import (  # noqa: F401
    acl,
    bitmaps,
    client,
    cluster,
    connection,
    debug,
    geo,
    hashes,
    hyperloglog,
    info,
    keys,
    latency,
    lists,
    lolwut,
    memory,
    migrate,
    modules,
    persistence,
    pubsub,
    replication,
    scripting,
    server,
    sets,
    slowlog,
    streams,
    strings,
    transactions,
    zsets,
)
