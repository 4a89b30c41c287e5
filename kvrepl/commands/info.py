"""INFO [section ...] with Redis 7.0's sections, field names and field order (``server.c``
genRedisInfoString).

Values kvrepl cannot know the way Redis does (allocator statistics, fork times, I/O threads)
are 0 or the value Redis shows when the feature is idle; the fields are always present, so
tools that parse INFO find what they look for. Each section is a function of the engine in
:data:`SECTIONS`; the replication and persistence layers replace theirs with
:func:`register_section` as they grow real numbers.
"""

from __future__ import annotations

import itertools
import os
import platform
import resource
import secrets
import struct
import sys
import time
import weakref
from collections.abc import Callable

from kvrepl import __version__
from kvrepl.commands import cmem, instant, obuf
from kvrepl.commands.connection import REDIS_VERSION
from kvrepl.commands.core import Engine, Session, command
from kvrepl.commands.observers import latency_counts, percentiles_line
from kvrepl.commands.shutdown import shutdown_state
from kvrepl.protocol.replies import Verbatim

Section = Callable[[Engine], list[str]]

# genInfoSectionDict's default_sections.
DEFAULT_SECTIONS = ("server", "clients", "memory", "persistence", "stats", "replication",
                    "cpu", "module_list", "errorstats", "cluster", "keyspace")


class _EngineFacts:
    """Per-engine values INFO must keep stable: run_id, replication ids, memory peak."""

    def __init__(self) -> None:
        self.run_id = secrets.token_hex(20)
        self.replid = secrets.token_hex(20)
        self.peak_memory = 0


_FACTS: weakref.WeakKeyDictionary[Engine, _EngineFacts] = weakref.WeakKeyDictionary()


def facts(engine: Engine) -> _EngineFacts:
    """The stable per-engine values (``run_id`` ...) INFO reports."""
    found = _FACTS.get(engine)
    if found is None:
        found = _FACTS[engine] = _EngineFacts()
    return found


def bytes_to_human(n: int) -> str:
    """bytesToHuman: ``1.04M`` and friends."""
    if n < 1024:
        return f"{n}B"
    for unit, power in (("K", 1), ("M", 2), ("G", 3), ("T", 4), ("P", 5)):
        if n < 1024 ** (power + 1):
            return f"{n / 1024 ** power:.2f}{unit}"
    return f"{n}B"


def _rss() -> int:
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def _script_memory(engine: Engine) -> list[str]:
    """The scripting lines of INFO memory: the Lua states' memory, scripts and libraries."""
    from kvrepl.scripting.state import script_stats

    stats = script_stats(engine)
    vm_eval, vm_functions = stats["vm_eval"], stats["vm_functions"]
    scripts = stats["scripts_eval"] + stats["functions"]
    return [
        f"used_memory_lua:{vm_eval}",
        f"used_memory_vm_eval:{vm_eval}",
        f"used_memory_lua_human:{bytes_to_human(vm_eval)}",
        f"used_memory_scripts_eval:{stats['scripts_eval']}",
        f"number_of_cached_scripts:{stats['cached_scripts']}",
        f"number_of_functions:{stats['number_of_functions']}",
        f"number_of_libraries:{stats['number_of_libraries']}",
        f"used_memory_vm_functions:{vm_functions}",
        f"used_memory_vm_total:{vm_eval + vm_functions}",
        f"used_memory_vm_total_human:{bytes_to_human(vm_eval + vm_functions)}",
        f"used_memory_functions:{stats['functions']}",
        f"used_memory_scripts:{scripts}",
        f"used_memory_scripts_human:{bytes_to_human(scripts)}",
    ]


def _total_system_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (OSError, ValueError):
        return 0


def _blocked_clients(engine: Engine) -> int:
    # Redis counts the clients a pause postponed (BLOCKED_POSTPONE) and those waiting in
    # SHUTDOWN (BLOCKED_SHUTDOWN) as blocked too.
    return sum(1 for s in engine.sessions.values() if s.blocked is not None) \
        + len(engine.pause.postponed) + len(shutdown_state(engine).cancel_listeners)


def _server(engine: Engine) -> list[str]:
    uname = platform.uname()
    now = time.time()
    uptime = int(now - engine.started)
    port = getattr(engine.server, "port", None) or engine.config.port
    return [
        f"redis_version:{REDIS_VERSION.decode()}",
        "redis_git_sha1:00000000",
        "redis_git_dirty:0",
        "redis_build_id:0",
        "redis_mode:standalone",
        f"os:{uname.system} {uname.release} {uname.machine}",
        f"arch_bits:{struct.calcsize('P') * 8}",
        "monotonic_clock:POSIX clock_gettime",
        f"multiplexing_api:{'kqueue' if sys.platform == 'darwin' else 'epoll'}",
        "atomicvar_api:c11-builtin",
        "gcc_version:0.0.0",
        f"process_id:{os.getpid()}",
        f"process_supervised:{getattr(engine.node, 'supervised', 'no')}",
        f"run_id:{facts(engine).run_id}",
        f"tcp_port:{port}",
        f"server_time_usec:{int(now * 1_000_000)}",
        f"uptime_in_seconds:{uptime}",
        f"uptime_in_days:{uptime // 86400}",
        f"hz:{effective_hz(engine)}",
        f"configured_hz:{engine.config.hz}",
        f"lru_clock:{int(now) & ((1 << 24) - 1)}",
        f"executable:{os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ''}",
        f"config_file:{getattr(engine.config, 'config_file', '') or ''}",
        "io_threads_active:0",
        *shutdown_state(engine).info_lines(),
        f"kvrepl_version:{__version__}",
    ]


def _clients(engine: Engine) -> list[str]:
    replicas = sum(1 for s in engine.sessions.values() if s.is_replica and not s.monitor)
    return [
        f"connected_clients:{len(engine.sessions) - replicas}",
        "cluster_connections:0",
        f"maxclients:{engine.config.maxclients}",
        f"client_recent_max_input_buffer:{obuf.recent_max_input(engine)}",
        f"client_recent_max_output_buffer:{obuf.recent_max(engine)}",
        f"blocked_clients:{_blocked_clients(engine)}",
        f"tracking_clients:{engine.tracking.clients}",
        "clients_in_timeout_table:0",
    ]


def _memory(engine: Engine) -> list[str]:
    # used_memory is the dataset's estimate (kvrepl.store.memory), what maxmemory bounds;
    # the process's real footprint, interpreter included, is used_memory_rss.
    used = engine.keyspace.used_memory()
    rss = _rss()
    known = facts(engine)
    known.peak_memory = max(known.peak_memory, used)
    peak = known.peak_memory
    total = _total_system_memory()
    maxmemory = engine.config.maxmemory
    replication = getattr(engine, "replication", None)
    # Redis shares one buffer between the backlog and its replicas, split as it splits it
    # (kvrepl.commands.obuf.ReplicationBlocks).
    buffers, backlog, replicas = (replication.buffer_memory() if replication is not None
                                  else (0, 0, 0))
    return [
        f"used_memory:{used}",
        f"used_memory_human:{bytes_to_human(used)}",
        f"used_memory_rss:{rss}",
        f"used_memory_rss_human:{bytes_to_human(rss)}",
        f"used_memory_peak:{peak}",
        f"used_memory_peak_human:{bytes_to_human(peak)}",
        f"used_memory_peak_perc:{used * 100 / peak if peak else 100:.2f}%",
        "used_memory_overhead:0",
        "used_memory_startup:0",
        f"used_memory_dataset:{used}",
        f"used_memory_dataset_perc:{100 if used else 0:.2f}%",
        f"allocator_allocated:{rss}",
        f"allocator_active:{rss}",
        f"allocator_resident:{rss}",
        f"total_system_memory:{total}",
        f"total_system_memory_human:{bytes_to_human(total)}",
        *_script_memory(engine),
        f"maxmemory:{maxmemory}",
        f"maxmemory_human:{bytes_to_human(maxmemory)}",
        f"maxmemory_policy:{engine.config.maxmemory_policy}",
        "allocator_frag_ratio:1.00",
        "allocator_frag_bytes:0",
        "allocator_rss_ratio:1.00",
        "allocator_rss_bytes:0",
        "rss_overhead_ratio:1.00",
        "rss_overhead_bytes:0",
        "mem_fragmentation_ratio:1.00",
        "mem_fragmentation_bytes:0",
        "mem_not_counted_for_evict:0",
        f"mem_replication_backlog:{backlog}",
        f"mem_total_replication_buffers:{buffers}",
        f"mem_clients_slaves:{replicas}",
        f"mem_clients_normal:{cmem.clients_memory(engine)}",
        "mem_cluster_links:0",
        f"mem_aof_buffer:{len(engine.aof.buf) if engine.aof is not None else 0}",
        "mem_allocator:libc",
        "active_defrag_running:0",
        "lazyfree_pending_objects:0",
        "lazyfreed_objects:0",
    ]


def _stats(engine: Engine) -> list[str]:
    stats = engine.stats
    metrics = stats.instant
    repl_in, repl_out = stats.net_repl_input_bytes, stats.net_repl_output_bytes
    exceeded_total, exceeded_now = engine.evictor.exceeded_time()
    sockets = getattr(engine.server, "migrate_sockets", None)

    def kbps(metric: int) -> str:
        return f"{metrics.get(metric) / 1024:.2f}"

    return [
        f"total_connections_received:{stats.connections_received}",
        f"total_commands_processed:{stats.commands_processed}",
        f"instantaneous_ops_per_sec:{metrics.get(instant.COMMAND)}",
        # Redis 7.0's totals include the replication bytes (server.c genRedisInfoString).
        f"total_net_input_bytes:{stats.total_net_input_bytes + repl_in}",
        f"total_net_output_bytes:{stats.total_net_output_bytes + repl_out}",
        f"total_net_repl_input_bytes:{repl_in}",
        f"total_net_repl_output_bytes:{repl_out}",
        f"instantaneous_input_kbps:{kbps(instant.INPUT)}",
        f"instantaneous_output_kbps:{kbps(instant.OUTPUT)}",
        f"instantaneous_input_repl_kbps:{kbps(instant.INPUT_REPL)}",
        f"instantaneous_output_repl_kbps:{kbps(instant.OUTPUT_REPL)}",
        f"rejected_connections:{stats.rejected_connections}",
        f"sync_full:{getattr(engine.replication, 'sync_full', 0)}",
        f"sync_partial_ok:{getattr(engine.replication, 'sync_partial_ok', 0)}",
        f"sync_partial_err:{getattr(engine.replication, 'sync_partial_err', 0)}",
        f"expired_keys:{stats.expired_keys}",
        f"expired_stale_perc:{stats.expired_stale_perc * 100:.2f}",
        f"expired_time_cap_reached_count:{stats.expired_time_cap_reached_count}",
        f"expire_cycle_cpu_milliseconds:{stats.expire_cycle_time_used // 1000}",
        f"evicted_keys:{stats.evicted_keys}",
        f"evicted_clients:{stats.evicted_clients}",
        f"total_eviction_exceeded_time:{int(exceeded_total * 1000)}",
        f"current_eviction_exceeded_time:{int(exceeded_now * 1000)}",
        f"keyspace_hits:{engine.keyspace.hits}",
        f"keyspace_misses:{engine.keyspace.misses}",
        f"pubsub_channels:{len(engine.pubsub_channels)}",
        f"pubsub_patterns:{len(engine.pubsub_patterns)}",
        f"pubsubshard_channels:{len(engine.pubsub_shard_channels)}",
        "latest_fork_usec:0",
        "total_forks:0",
        f"migrate_cached_sockets:{len(sockets.cached) if sockets is not None else 0}",
        f"slave_expires_tracked_keys:{len(engine.keyspace.replica_expires)}",
        "active_defrag_hits:0",
        "active_defrag_misses:0",
        "active_defrag_key_hits:0",
        "active_defrag_key_misses:0",
        "total_active_defrag_time:0",
        "current_active_defrag_time:0",
        f"tracking_total_keys:{len(engine.tracking.table)}",
        f"tracking_total_items:{engine.tracking.items}",
        f"tracking_total_prefixes:{len(engine.tracking.prefixes)}",
        f"unexpected_error_replies:{stats.unexpected_error_replies}",
        f"total_error_replies:{stats.error_replies}",
        f"dump_payload_sanitizations:{stats.dump_payload_sanitizations}",
        f"total_reads_processed:{stats.reads_processed}",
        f"total_writes_processed:{stats.writes_processed}",
        "io_threaded_reads_processed:0",
        "io_threaded_writes_processed:0",
        f"reply_buffer_shrinks:{stats.reply_buffer_shrinks}",
        f"reply_buffer_expands:{stats.reply_buffer_expands}",
    ]


def _replication(engine: Engine) -> list[str]:
    """A master with no replicas and an empty backlog, or a replica whose link is down."""
    config = engine.config
    lines = []
    if config.replicaof is not None:
        host, port = config.replicaof
        lines += [
            "role:slave",
            f"master_host:{host}",
            f"master_port:{port}",
            "master_link_status:down",
            "master_last_io_seconds_ago:-1",
            "master_sync_in_progress:0",
            "slave_read_repl_offset:1",
            "slave_repl_offset:1",
            "master_link_down_since_seconds:-1",
            f"slave_priority:{config.replica_priority}",
            f"slave_read_only:{int(bool(config.replica_read_only))}",
            f"replica_announced:{int(bool(config.replica_announced))}",
        ]
    else:
        lines.append("role:master")
    lines.append("connected_slaves:0")
    if config.min_replicas_to_write and config.min_replicas_max_lag:
        lines.append("min_slaves_good_slaves:0")
    lines += [
        "master_failover_state:no-failover",
        f"master_replid:{facts(engine).replid}",
        "master_replid2:0000000000000000000000000000000000000000",
        "master_repl_offset:0",
        "second_repl_offset:-1",
        "repl_backlog_active:0",
        f"repl_backlog_size:{config.repl_backlog_size}",
        "repl_backlog_first_byte_offset:0",
        "repl_backlog_histlen:0",
    ]
    return lines


def _cpu(engine: Engine) -> list[str]:
    def seconds(value: float) -> str:  # "%ld.%06ld" of a struct timeval
        micros = int(round(value * 1_000_000))
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    lines = [
        f"used_cpu_sys:{seconds(own.ru_stime)}",
        f"used_cpu_user:{seconds(own.ru_utime)}",
        f"used_cpu_sys_children:{seconds(children.ru_stime)}",
        f"used_cpu_user_children:{seconds(children.ru_utime)}",
    ]
    if hasattr(resource, "RUSAGE_THREAD"):
        thread = resource.getrusage(resource.RUSAGE_THREAD)
        lines += [
            f"used_cpu_sys_main_thread:{seconds(thread.ru_stime)}",
            f"used_cpu_user_main_thread:{seconds(thread.ru_utime)}",
        ]
    return lines


def _float32(value: float) -> float:
    return struct.unpack("f", struct.pack("f", value))[0]


def _commandstats(engine: Engine) -> list[str]:
    lines = []
    for top in engine.table.values():
        for cmd in itertools.chain((top,), top.subcommands.values()):
            if not (cmd.calls or cmd.failed_calls or cmd.rejected_calls):
                continue
            usec = int(cmd.usec)
            # Redis divides in single precision: (float)microseconds / calls.
            per_call = _float32(_float32(usec) / _float32(cmd.calls)) if cmd.calls else 0.0
            name = cmd.name.replace(":", "_").replace("#", "_")
            lines.append(
                f"cmdstat_{name}:calls={cmd.calls},usec={usec},usec_per_call={per_call:.2f},"
                f"rejected_calls={cmd.rejected_calls},failed_calls={cmd.failed_calls}")
    return lines


def _safe(text: str) -> str:
    """getSafeInfoString: ``#``, ``:`` and newlines would break the INFO format."""
    for unsafe in "#:\n\r":
        text = text.replace(unsafe, "_")
    return text


def _errorstats(engine: Engine) -> list[str]:
    errors = engine.stats.errors
    return [f"errorstat_{_safe(prefix)}:count={errors[prefix]}" for prefix in sorted(errors)]


def _cluster(engine: Engine) -> list[str]:
    return ["cluster_enabled:0"]


def _avg_ttl(db: object, now: int) -> int:
    """The mean remaining TTL in ms, over a bounded sample (Redis estimates it too)."""
    expires = db.expires  # type: ignore[attr-defined]
    sample = [when - now for when in itertools.islice(expires.values(), 1000)]
    live = [ttl for ttl in sample if ttl > 0]
    return sum(live) // len(live) if live else 0


def _keyspace(engine: Engine) -> list[str]:
    now = engine.keyspace.now_ms()
    return [
        f"db{db.id}:keys={len(db.data)},expires={len(db.expires)},avg_ttl={_avg_ttl(db, now)}"
        for db in engine.keyspace.dbs if db.data or db.expires
    ]


def _latencystats(engine: Engine) -> list[str]:
    """genRedisInfoStringLatencyStats: per command with calls recorded, its percentiles."""
    if not engine.latency_tracking:
        return []
    lines = []
    percentiles = engine.config.latency_tracking_info_percentiles
    for top in engine.table.values():
        for cmd in itertools.chain((top,), top.subcommands.values()):
            if cmd.histogram is not None:
                counts = latency_counts(cmd.histogram, cmd.histogram_tail)
                lines.append(f"latency_percentiles_usec_{_safe(cmd.name)}:"
                             f"{percentiles_line(counts, percentiles)}")
    return lines


def _empty(engine: Engine) -> list[str]:
    return []


# Output order; the name in the request, the section's heading, its fields.
SECTIONS: dict[str, tuple[str, Section]] = {
    "server": ("Server", _server),
    "clients": ("Clients", _clients),
    "memory": ("Memory", _memory),
    "persistence": ("Persistence", _empty),  # kvrepl.commands.persistence registers it
    "stats": ("Stats", _stats),
    "replication": ("Replication", _replication),
    "cpu": ("CPU", _cpu),
    "module_list": ("Modules", _empty),
    "commandstats": ("Commandstats", _commandstats),
    "errorstats": ("Errorstats", _errorstats),
    "latencystats": ("Latencystats", _latencystats),
    "cluster": ("Cluster", _cluster),
    "keyspace": ("Keyspace", _keyspace),
}


def register_section(name: str, fields: Section) -> None:
    """Replace the fields of section ``name`` (e.g. ``replication``) with ``fields(engine)``."""
    heading, _ = SECTIONS[name]
    SECTIONS[name] = (heading, fields)


# kvrepl's own sections: shown when asked for, or with ``all`` when they have fields (so
# that a node they do not concern answers INFO all as redis-server does).
_OWN_SECTIONS: set[str] = set()


def add_section(name: str, heading: str, fields: Section) -> None:
    """A section of kvrepl's own (``INFO <name>``; ``INFO all`` when it has fields)."""
    SECTIONS[name] = (heading, fields)
    _OWN_SECTIONS.add(name)


def info_text(engine: Engine, args: list[bytes] | None = None) -> str:
    """The INFO reply for the section arguments ``args`` (none: the default sections)."""
    engine.direct_tally.fold()  # node.get/set's counts, into the counters shown
    everything = False
    if not args:
        wanted = set(DEFAULT_SECTIONS)
    else:
        wanted = set()
        for arg in args:
            name = arg.decode("utf-8", "replace").lower()
            if name == "default":
                wanted.update(DEFAULT_SECTIONS)
            elif name in ("all", "everything"):
                everything = True
            else:
                wanted.add(name)
    if "modules" in wanted:
        wanted.add("module_list")
    parts = []
    for name, (heading, fields) in SECTIONS.items():
        if everything or name in wanted:
            lines = fields(engine)
            if not lines and name in _OWN_SECTIONS and name not in wanted:
                continue
            parts.append("".join(f"{line}\r\n" for line in [f"# {heading}", *lines]))
    return "\r\n".join(parts)


# serverCron's dynamic-hz: at most this many clients handled per cron tick, up to hz 500.
MAX_CLIENTS_PER_CLOCK_TICK = 200
CONFIG_MAX_HZ = 500


def effective_hz(engine: Engine) -> int:
    """The cron's frequency (INFO's ``hz``): ``hz``, doubled with ``dynamic-hz`` while
    there are more than 200 clients per tick, as serverCron raises server.hz."""
    hz = engine.config.hz
    if engine.config.dynamic_hz:
        clients = len(engine.sessions)
        while clients // hz > MAX_CLIENTS_PER_CLOCK_TICK:
            hz *= 2
            if hz > CONFIG_MAX_HZ:
                hz = CONFIG_MAX_HZ
                break
    return hz

@command("info")
def info(s: Session, argv: list[bytes]) -> object:
    """INFO [section [section ...]]: ``default``, ``all``, ``everything`` or section names."""
    return Verbatim(info_text(s.engine, argv[1:]).encode())
