"""What redis.conf says about the process a node runs in: ``pidfile``, ``supervised``,
``set-proc-title``/``proc-title-template``, ``disable-thp``, ``crash-log-enabled``,
``always-show-logo`` (kvrepl-server and embedded nodes alike: :class:`kvrepl.node.Node` calls
:func:`started`, :func:`ready` and :func:`stopping`). The options about signals
(``shutdown-on-sigint``/``-sigterm``) are kvrepl-server's (kvrepl.cli), and the log's
(``logfile``, ``syslog-*``) are in kvrepl.log.
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import os
import signal
import socket
import sys
from typing import TYPE_CHECKING

from kvrepl import __version__
from kvrepl.config import ApplyError, expand_proc_title
from kvrepl.log import current_stream, logger

if TYPE_CHECKING:
    from kvrepl.node import Node

_PR_SET_THP_DISABLE = 41


def started(node: Node) -> None:
    """Once the node listens (initServer, main): the pid file, the process title, THP and
    the crash log, the logo (or the "Running mode" line), then "Server initialized" on a
    server's own process. An embedded node finds its supervisor here; kvrepl-server did
    before it started (:func:`supervise`, where redis-server does)."""
    config = node.config
    if not node.owns_process:
        node.supervised = supervise(config)
    if config.pidfile:
        write_pidfile(config.pidfile)
    update_title(node)
    if config.oom_score_adj != "no":
        try:
            apply_oom_score(node)
        except ApplyError:
            pass  # logged; Redis starts anyway
    if config.disable_thp:
        disable_thp()
    crash_log(config.crash_log_enabled)
    show_logo(node)
    if node.owns_process:
        logger.warning("Server initialized")


def supervise(config: object) -> str:
    """redisIsSupervised: the supervisor found ("no" when none), told what Redis tells it at
    this point: upstart's job sees the process stop (SIGSTOP; it continues it), systemd
    hears that the data is loading."""
    mode = supervision(config.supervised)  # type: ignore[attr-defined]
    if mode == "upstart":
        logger.info("supervised by upstart, will stop to signal readiness.")
        os.kill(os.getpid(), signal.SIGSTOP)
        os.environ.pop("UPSTART_JOB", None)
    elif mode == "systemd":
        if not notify_systemd("STATUS=Redis is loading...\n"):
            return "no"
        logger.info("Supervised by systemd. Please make sure you set appropriate values for "
                    "TimeoutStartSec and TimeoutStopSec in your service unit.")
    return mode


def ready(node: Node) -> None:
    """The dataset is loaded: the log says the node accepts connections, systemd hears it
    (a STATUS line, then READY=1), as at the end of Redis's main()."""
    config = node.config
    if node.serve_tcp or config.tls_port:
        logger.info("Ready to accept connections")
    if config.unixsocket:
        logger.info("The server is now ready to accept connections at %s", config.unixsocket)
    if node.supervised != "systemd":
        return
    if config.replicaof is None and node.following is None:
        notify_systemd("STATUS=Ready to accept connections\n")
    else:
        notify_systemd("STATUS=Ready to accept connections in read-only mode. Waiting for "
                       "MASTER <-> REPLICA sync\n")
    notify_systemd("READY=1\n")


def tell_systemd(engine: object, message: str) -> None:
    """redisCommunicateSystemd from the engine's side (shutdown, the final save, a
    replica's sync): sent when the engine's node is supervised by systemd."""
    node = getattr(engine, "node", None)
    if getattr(node, "supervised", "no") != "systemd":
        return
    if message == "STOPPING=1\n":
        node.stopping_told = True  # type: ignore[union-attr]
    notify_systemd(message)


def stopping(node: Node) -> None:
    """The node stops: systemd hears STOPPING=1 unless a SHUTDOWN already said it
    (prepareForShutdown), the pid file goes (finishShutdown)."""
    if node.supervised == "systemd" and not node.stopping_told:
        notify_systemd("STOPPING=1\n")
    if node.config.pidfile:
        logger.info("Removing the pid file.")
        with contextlib.suppress(OSError):
            os.unlink(node.config.pidfile)


# createPidFile's path when daemonize asks for one and pidfile names none
DEFAULT_PIDFILE = "/var/run/redis.pid"


def daemonize(config: object, supervised: str) -> bool:
    """main()'s ``background``: with ``daemonize yes`` and no supervisor to talk to
    (``supervised``, from :func:`supervise`), fork (the parent exits at once, status 0),
    start a new session and point the standard streams at /dev/null, as Redis's
    daemonize(); the pid file then defaults to /var/run/redis.pid. Returns whether this
    process is now the daemon."""
    if not config.daemonize or supervised != "no":  # type: ignore[attr-defined]
        return False
    if os.fork() != 0:
        os._exit(0)
    os.setsid()
    fd = os.open(os.devnull, os.O_RDWR)
    for target in (0, 1, 2):
        os.dup2(fd, target)
    if fd > 2:
        os.close(fd)
    if not config.pidfile:  # type: ignore[attr-defined]
        config.pidfile = DEFAULT_PIDFILE  # type: ignore[attr-defined]
    return True


_OOM_PATH = "/proc/self/oom_score_adj"
# setOOMScoreAdj's statics: the score found before kvrepl first changed it, if it did
_oom_base: int | None = None


def apply_oom_score(node: Node) -> None:
    """setOOMScoreAdj(-1): oom-score-adj-values' master or replica value (plus the score
    found at first, for relative), clamped to [-1000, 1000]; with "no", the score found is
    put back if kvrepl had changed it. ApplyError (CONFIG SET fails) when it cannot be
    read or written."""
    global _oom_base
    config = node.config
    if config.oom_score_adj != "no":
        if _oom_base is None:
            try:
                with open(_OOM_PATH) as handle:
                    _oom_base = int(handle.read())
            except (OSError, ValueError) as err:
                logger.warning("Unable to read oom_score_adj: %s", err)
                raise ApplyError("oom-score-adj", _OOM_FAILED) from None
        replica = node.following is not None or node.cluster_follower is not None
        value = config.oom_score_adj_values[1 if replica else 0]
        if config.oom_score_adj in ("yes", "relative"):
            value += _oom_base
        value = max(-1000, min(1000, value))
    elif _oom_base is not None:
        value, _oom_base = _oom_base, None
    else:
        return
    try:
        with open(_OOM_PATH, "w") as handle:
            handle.write(f"{value}\n")
    except OSError as err:
        logger.warning("Unable to write oom_score_adj: %s", err.strerror)
        raise ApplyError("oom-score-adj", _OOM_FAILED) from None


_OOM_FAILED = "Failed to set current oom_score_adj. Check server logs."


def write_pidfile(path: str) -> None:
    """createPidFile: the pid and a newline; a failure is logged, not fatal, as in Redis."""
    try:
        with open(path, "w") as handle:
            handle.write(f"{os.getpid()}\n")
    except OSError as err:
        logger.warning("Failed to write PID file: %s", err.strerror)


def supervision(mode: str) -> str:
    """redisIsSupervised's choice: the supervisor ``mode`` names (``auto`` finds it in the
    environment), "no" for none or for upstart without its job (whether systemd's socket
    is there, :func:`supervise` finds by writing to it, as Redis does)."""
    if mode == "auto":
        if "UPSTART_JOB" in os.environ:
            logger.log(15, "Upstart supervision detected.")
            mode = "upstart"
        elif "NOTIFY_SOCKET" in os.environ:
            logger.log(15, "Systemd supervision detected.")
            mode = "systemd"
        else:
            return "no"
    if mode == "upstart" and "UPSTART_JOB" not in os.environ:
        logger.warning("upstart supervision requested, but UPSTART_JOB not found!")
        return "no"
    return mode


def notify_systemd(message: str) -> bool:
    """sd_notify: one datagram to $NOTIFY_SOCKET (``@`` starts an abstract name); whether
    it was sent (failures logged as redisCommunicateSystemd logs them)."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        logger.warning("systemd supervision error: NOTIFY_SOCKET not found!")
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(message.encode(), address)
    except OSError as err:
        logger.warning("systemd supervision error: sd_notify: %d", -err.errno)
        return False
    return True


def process_title() -> str:
    """The program as it was started (Redis's exec_argv[0])."""
    program = sys.argv[0] if sys.argv and sys.argv[0] else "python"
    if os.path.basename(program) == "__main__.py":  # python -m kvrepl
        return "python -m kvrepl"
    return program


def title_variables(node: Node, title: str) -> dict[str, str]:
    """redisProcTitleGetVariable's values for this node."""
    config = node.config
    port = node.server.port if node.serve_tcp else 0
    if port or config.tls_port:
        listen = f"{config.bind[0] if config.bind else '*'}:{port or config.tls_port}"
    else:
        listen = f"unixsocket:{config.unixsocket}"
    return {"title": title, "listen-addr": listen, "server-mode": "",
            "config-file": config.config_file or "-", "port": str(port),
            "tls-port": str(config.tls_port), "unixsocket": config.unixsocket}


def update_title(node: Node) -> None:
    """redisSetProcTitle with ``proc-title-template`` when ``set-proc-title`` is yes (at
    start and on CONFIG SET proc-title-template)."""
    if not node.config.set_proc_title:
        return
    import setproctitle

    title = expand_proc_title(node.config.proc_title_template,
                              title_variables(node, process_title()))
    if title:
        setproctitle.setproctitle(title)


def disable_thp() -> None:
    """THPDisable: prctl(PR_SET_THP_DISABLE) for this process (Linux only)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_THP_DISABLE, 1, 0, 0, 0)


def crash_log(enabled: bool) -> None:
    """crash-log-enabled: a fatal signal writes every thread's Python stack to the log
    (Redis's crash report), or nothing with "no" (also on CONFIG SET)."""
    if not enabled:
        faulthandler.disable()
        return
    stream = current_stream()
    try:
        stream.fileno()  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):  # a stream with no file (a test's capture)
        stream = sys.__stderr__
    faulthandler.enable(file=stream, all_threads=True)  # type: ignore[arg-type]


def show_logo(node: Node) -> None:
    """redisAsciiArt: a banner with the version, mode, port and pid when ``always-show-logo``
    is set or kvrepl-server logs to a terminal (stdout, no syslog); else one line with the
    mode and the port."""
    config = node.config
    port = node.server.port if node.serve_tcp else config.tls_port
    show = config.always_show_logo or (
        node.owns_process and not config.logfile and not config.syslog_enabled
        and sys.stdout is not None and sys.stdout.isatty())
    if not show:
        logger.info("Running mode=standalone, port=%d.", port)
        return
    for line in (
        "  _                          _ ",
        " | | ____   ___ __ ___ _ __ | |",
        " | |/ /\\ \\ / / '__/ _ \\ '_ \\| |",
        f" |   <  \\ V /| | |  __/ |_) | |    kvrepl {__version__} (Redis 7.0 compatible)",
        " |_|\\_\\  \\_/ |_|  \\___| .__/|_|    Running in standalone mode",
        f"                     |_|          Port: {port}",
        f"                                  PID: {os.getpid()}",
    ):
        logger.info(line)
