"""Replication commands: REPLCONF PSYNC SYNC REPLICAOF SLAVEOF ROLE WAIT FAILOVER.

The engine is sans-IO, so SYNC/PSYNC and a WAIT that must block return markers; the trio
connection that runs them turns itself into a replica link or waits for acknowledgements.
Nodes that can replicate set ``engine.replication`` (the master side) and ``engine.node``
(which starts and stops following a master).
"""

from __future__ import annotations

from dataclasses import dataclass

from kvrepl.commands.args import parse_int
from kvrepl.commands.core import Session, command
from kvrepl.commands.info import SECTIONS, register_section
from kvrepl.errors import SYNTAX, ReplyError
from kvrepl.log import logger
from kvrepl.protocol.replies import OK, DeferredArray, Raw, Status

WAIT_ON_REPLICA = (
    "ERR WAIT cannot be used with replica instances. Please also note that since Redis 4.0 "
    "if a replica is configured to be writable (which is not the default) writes to replicas "
    "are just local and are not propagated.")


@dataclass(frozen=True, slots=True)
class StartReplication:
    """SYNC/PSYNC accepted: the connection becomes a replica link."""

    argv: list[bytes]


@dataclass(frozen=True, slots=True)
class WaitReplicas:
    """WAIT must block until ``count`` replicas acknowledged ``offset`` (or the timeout)."""

    count: int
    timeout: float  # seconds, 0 = forever
    offset: int


def _replication(s: Session):  # -> MasterReplication | None
    return getattr(s.engine, "replication", None)


@command("replconf")
def replconf(s: Session, argv: list[bytes]) -> object:
    if len(argv) % 2 == 0:
        raise ReplyError("ERR syntax error")
    for i in range(1, len(argv), 2):
        option, value = argv[i].lower(), argv[i + 1]
        if option == b"listening-port":
            s.replica_listening_port = parse_int(value)
        elif option == b"ip-address":
            s.replica_announced_ip = value.decode("utf-8", "replace")
        elif option == b"capa":
            s.replica_capa = (*getattr(s, "replica_capa", ()), value.decode().lower())
        elif option == b"ack":
            link = getattr(s, "replica_link", None)
            replication = _replication(s)
            if link is not None and replication is not None:
                replication.ack(link, parse_int(value))
            return Raw(b"")  # never a reply to an ACK, whoever sends it (replconfCommand)
        elif option == b"getack":
            return Raw(b"")  # answered by a replica's link to its master, never here
        elif option in (b"rdb-only", b"rdb-filter-only"):
            pass
        else:
            raise ReplyError(
                f"ERR Unrecognized REPLCONF option: {argv[i].decode('utf-8', 'replace')}")
    return OK


def _sync(s: Session, argv: list[bytes]) -> object:
    if s.is_replica:
        return None  # already a replica: ignored
    replication = _replication(s)
    if replication is None:
        raise ReplyError("ERR replication is not available on this node")
    node = getattr(s.engine, "node", None)
    follower = getattr(node, "following", None)
    if argv[0].lower() == b"psync" and len(argv) > 3 and argv[3].lower() == b"failover":
        # Our master hands over (FAILOVER): become a master if we follow its history.
        logger.warning("Failover request received for replid %s.",
                       argv[1].decode("utf-8", "replace"))
        if follower is None:
            raise ReplyError("ERR PSYNC FAILOVER can't be sent to a master.")
        if argv[1].decode("utf-8", "replace").lower() != replication.replid.lower():
            raise ReplyError("ERR PSYNC FAILOVER replid must match my replid.")
        node.stop_following()
        follower = None
        logger.info("MASTER MODE enabled (failover request from '%s')", s.addr)
    failover = getattr(node, "failover", None)
    if failover is not None and failover.active:
        raise ReplyError("NOMASTERLINK Can't SYNC while failing over")
    if follower is not None and not follower.link_up:
        raise ReplyError("NOMASTERLINK Can't SYNC while not connected with my master")
    if argv[0].lower() == b"psync":
        parse_int(argv[2])
    s.is_replica = True
    s.kind = "replica"
    return StartReplication(argv)


@command("sync")
def sync(s: Session, argv: list[bytes]) -> object:
    return _sync(s, argv)


@command("psync")
def psync(s: Session, argv: list[bytes]) -> object:
    return _sync(s, argv)


@command("replicaof", "slaveof")
def replicaof(s: Session, argv: list[bytes]) -> object:
    node = getattr(s.engine, "node", None)
    if node is None:
        raise ReplyError("ERR this node cannot replicate (no running node)")
    host, port = argv[1], argv[2]
    if getattr(node, "cluster_follower", None) is not None:
        raise ReplyError("ERR this node follows a Redis Cluster (--follow-cluster): "
                         "REPLICAOF is refused")
    if node.failover.active:
        raise ReplyError("ERR REPLICAOF not allowed while failing over.")
    if host.lower() == b"no" and port.lower() == b"one":
        if node.following is not None:
            node.stop_following()
        return OK
    if s.is_replica:
        raise ReplyError("ERR Command is not valid when client is a replica.")
    # getRangeLongFromObjectOrReply(..., "Invalid master port"): one error for both cases
    port_number = parse_int(port, "ERR Invalid master port")
    if not 0 <= port_number <= 65535:
        raise ReplyError("ERR Invalid master port")
    target = (host.decode("utf-8", "replace"), port_number)
    if node.following is not None and (node.following.host, node.following.port) == target:
        return Status(b"OK Already connected to specified master")
    node.follow_address(*target)
    return OK


@command("role")
def role(s: Session, argv: list[bytes]) -> object:
    node = getattr(s.engine, "node", None)
    following = _followed(node)
    if following is not None:
        return [b"slave", following.host.encode(), following.port, following.state.encode(),
                following.reploff if following.link_up else -1]
    replication = _replication(s)
    if replication is None:
        return [b"master", 0, DeferredArray()]
    # the replicas' length is set after them (roleCommand)
    return [b"master", replication.master_repl_offset,
            DeferredArray([link.ip.encode(), b"%d" % link.listening_port,
                           b"%d" % link.ack_offset]
                          for link in replication.replicas if link.state == "online")]


@command("wait")
def wait(s: Session, argv: list[bytes]) -> object:
    node = getattr(s.engine, "node", None)
    if _followed(node) is not None:  # a replica, or a cluster follower (role:slave too)
        raise ReplyError(WAIT_ON_REPLICA)
    count = parse_int(argv[1])
    timeout = parse_int(argv[2], "ERR timeout is not an integer or out of range")
    if timeout < 0:
        raise ReplyError("ERR timeout is negative")
    replication = _replication(s)
    if replication is None:
        return 0
    offset = s.woff
    acked = replication.replicas_acked(offset)
    if acked >= count or s.in_exec:
        return acked
    replication.request_acks()
    return WaitReplicas(count, timeout / 1000, offset)


def _followed(node: object) -> object | None:
    """The link ROLE and INFO replication describe: the node's master's, or a cluster
    follower's shards seen as one (kvrepl.replication.cluster.FollowerLink)."""
    following = getattr(node, "following", None)
    cluster = getattr(node, "cluster_follower", None)
    if following is None and cluster is not None:
        return cluster.as_one_link()
    return following


def info_replication(engine) -> list[str]:  # noqa: ANN001 - an Engine
    """INFO replication with Redis 7.0's fields in its order (genRedisInfoString)."""
    import time

    replication = engine.replication
    config = engine.config
    following = _followed(engine.node)
    lines = []
    if following is not None:
        now = time.monotonic()
        lines += [
            "role:slave",
            f"master_host:{following.host}",
            f"master_port:{following.port}",
            f"master_link_status:{'up' if following.link_up else 'down'}",
            "master_last_io_seconds_ago:"
            + (str(int(now - following.last_io)) if following.link_up else "-1"),
            f"master_sync_in_progress:{int(following.sync_in_progress)}",
            f"slave_read_repl_offset:{following.read_reploff if following.knows_offset else 1}",
            f"slave_repl_offset:{following.reploff if following.knows_offset else 1}",
        ]
        if following.sync_in_progress:
            total = following.transfer_size
            read = following.transfer_read
            lines += [
                f"master_sync_total_bytes:{total}",
                f"master_sync_read_bytes:{read}",
                f"master_sync_left_bytes:{total - read if total >= 0 else -1}",
                f"master_sync_perc:{read * 100 / total if total > 0 else 0:.2f}",
                f"master_sync_last_io_seconds_ago:{int(now - following.last_io)}",
            ]
        if not following.link_up:
            down = -1 if not following.ever_connected else int(now - following.link_down_since)
            lines.append(f"master_link_down_since_seconds:{down}")
        lines += [
            f"slave_priority:{config.replica_priority}",
            f"slave_read_only:{int(bool(config.replica_read_only))}",
            f"replica_announced:{int(bool(config.replica_announced))}",
        ]
    else:
        lines.append("role:master")
    if replication is None:
        return _engine_only(engine)
    lines.append(f"connected_slaves:{len(replication.replicas)}")
    if config.min_replicas_to_write and config.min_replicas_max_lag:
        lines.append(f"min_slaves_good_slaves:{replication.good_replicas()}")
    lines += replication.info_replica_lines()
    lines += [
        f"master_failover_state:{engine.node.failover.state}",
        f"master_replid:{replication.replid}",
        f"master_replid2:{replication.replid2}",
    ]
    lines += replication.backlog_lines()
    return lines


_engine_only = SECTIONS["replication"][1]  # an engine without a node: a lone master
register_section("replication", info_replication)


@command("failover")
def failover(s: Session, argv: list[bytes]) -> object:
    """FAILOVER [TO host port [FORCE]] [ABORT] [TIMEOUT ms]: hand the master role to a
    replica without losing writes (kvrepl/replication/failover.py), checks in Redis's order."""
    node = getattr(s.engine, "node", None)
    if node is None:
        raise ReplyError("ERR this node cannot replicate (no running node)")
    state = node.failover
    if len(argv) == 2 and argv[1].lower() == b"abort":
        if not state.active:
            raise ReplyError("ERR No failover in progress.")
        state.abort("Failover manually aborted")
        return OK
    timeout = port = 0
    force = False
    host: str | None = None
    j = 1
    while j < len(argv):
        word = argv[j].lower()
        if word == b"timeout" and j + 1 < len(argv) and timeout == 0:
            timeout = parse_int(argv[j + 1])
            if timeout <= 0:
                raise ReplyError("ERR FAILOVER timeout must be greater than 0")
            j += 1
        elif word == b"to" and j + 2 < len(argv) and host is None:
            port = parse_int(argv[j + 2])
            host = argv[j + 1].decode("utf-8", "replace")
            j += 2
        elif word == b"force" and not force:
            force = True
        else:
            raise ReplyError(SYNTAX)
        j += 1
    if state.active:
        raise ReplyError("ERR FAILOVER already in progress.")
    if node.following is not None:
        raise ReplyError("ERR FAILOVER is not valid when server is a replica.")
    replicas = node.replication.replicas
    if not replicas:
        raise ReplyError("ERR FAILOVER requires connected replicas.")
    if force and (not timeout or host is None):
        raise ReplyError("ERR FAILOVER with force option requires both a timeout and target "
                         "HOST and IP.")
    if host is not None:
        link = state.find(host, port)
        if link is None:
            raise ReplyError("ERR FAILOVER target HOST and PORT is not a replica.")
        if link.state != "online":
            raise ReplyError("ERR FAILOVER target replica is not online.")
    state.start(host, port, timeout, force)
    return OK
