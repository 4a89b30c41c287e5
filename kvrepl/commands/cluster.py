"""CLUSTER, READONLY, READWRITE, ASKING and RESTORE-ASKING as a Redis 7.0 with
``cluster-enabled no`` answers them (``cluster.c``): kvrepl has no cluster mode.

Every CLUSTER subcommand (HELP too) and READONLY, READWRITE and ASKING answer "This
instance has cluster support disabled" after the usual arity checks; RESTORE-ASKING is
RESTORE under another name (its ASKING flag only matters to a cluster's redirections).
"""

from __future__ import annotations

from kvrepl.commands.core import Session, command
from kvrepl.commands.persistence import restore
from kvrepl.errors import ReplyError

CLUSTER_DISABLED = "ERR This instance has cluster support disabled"

_CLUSTER_SUBCOMMANDS = (
    "cluster|addslots",
    "cluster|addslotsrange",
    "cluster|bumpepoch",
    "cluster|count-failure-reports",
    "cluster|countkeysinslot",
    "cluster|delslots",
    "cluster|delslotsrange",
    "cluster|failover",
    "cluster|flushslots",
    "cluster|forget",
    "cluster|getkeysinslot",
    "cluster|help",
    "cluster|info",
    "cluster|keyslot",
    "cluster|links",
    "cluster|meet",
    "cluster|myid",
    "cluster|nodes",
    "cluster|replicas",
    "cluster|replicate",
    "cluster|reset",
    "cluster|saveconfig",
    "cluster|set-config-epoch",
    "cluster|setslot",
    "cluster|shards",
    "cluster|slaves",
    "cluster|slots",
)


def cluster_disabled(s: Session, argv: list[bytes]) -> object:
    """clusterCommand / readonlyCommand / readwriteCommand / askingCommand with
    ``server.cluster_enabled == 0``."""
    raise ReplyError(CLUSTER_DISABLED)


command(*_CLUSTER_SUBCOMMANDS, "readonly", "readwrite", "asking")(cluster_disabled)
command("restore-asking")(restore)
