"""Redis's Lua debugger (LDB, Redis 7.0 ``eval.c``): what ``redis-cli --ldb`` talks to.

A client that sent ``SCRIPT DEBUG YES|SYNC`` has its next EVAL run under a line hook. At
each stop the debugger sends the log lines it gathered as one multi-bulk reply of status
strings (``* Stopped at 1, stop reason = step over``, ``-> 1   local a = ...``) and reads the
client's debugger commands (``step``, ``continue``, ``print``, ``redis``, ...) straight from
its connection, each as a RESP multi-bulk, until one of them resumes the script. The final
log (``<endsession>``) precedes the EVAL's own reply, and the connection is closed after it.

This module is the protocol and the commands, over a :class:`Channel` the server supplies
(blocking reads and writes on the client's socket). In SYNC mode the session runs in the
node's thread and the whole server waits for the debugging client, as Redis does; in YES mode
it runs on a copy of the node in a thread of its own (:mod:`kvrepl.scripting.fork`, Redis's
forked child). The Lua side (the hook, the frames it inspects, the ``eval`` of a snippet) is
in ``prelude.lua``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from time import monotonic
from typing import Protocol

from lupa import lua51

from kvrepl.commands.monitor import repr_bytes

MAX_LEN_DEFAULT = 256  # LDB_MAX_LEN_DEFAULT
BREAKPOINTS_MAX = 64  # LDB_BREAKPOINTS_MAX
MAX_VALUES_DEPTH = 10  # LDB_MAX_VALUES_DEPTH (LUA_MINSTACK/2)
MAX_BUFFER = 1 << 20  # the client's unread commands, at most
LINES_PER_CHECK = 1000
# Exception messages the hook raises in the script (luaPushError + luaError).
ABORTED = b"script aborted for user request"
PROTOCOL_ERROR = b"protocol error"
BUFFER_FULL = b"max client buffer reached"
CLIENT_GONE = b"timeout during Lua debugging with client closing connection"

HELP = [
    "Redis Lua debugger help:",
    "[h]elp               Show this help.",
    "[s]tep               Run current line and stop again.",
    "[n]ext               Alias for step.",
    "[c]ontinue           Run till next breakpoint.",
    "[l]ist               List source code around current line.",
    "[l]ist [line]        List source code around [line].",
    "                     line = 0 means: current position.",
    "[l]ist [line] [ctx]  In this form [ctx] specifies how many lines",
    "                     to show before/after [line].",
    "[w]hole              List all source code. Alias for 'list 1 1000000'.",
    "[p]rint              Show all the local variables.",
    "[p]rint <var>        Show the value of the specified variable.",
    "                     Can also show global vars KEYS and ARGV.",
    "[b]reak              Show all breakpoints.",
    "[b]reak <line>       Add a breakpoint to the specified line.",
    "[b]reak -<line>      Remove breakpoint from the specified line.",
    "[b]reak 0            Remove all breakpoints.",
    "[t]race              Show a backtrace.",
    "[e]val <code>        Execute some Lua code (in a different callframe).",
    "[r]edis <cmd>        Execute a Redis command.",
    "[m]axlen [len]       Trim logged Redis replies and Lua var dumps to len.",
    "                     Specifying zero as <len> means unlimited.",
    "[a]bort              Stop the execution of the script. In sync",
    "                     mode dataset changes will be retained.",
    "",
    "Debugger functions you can call from Lua scripts:",
    "redis.debug()        Produce logs in the debugger console.",
    "redis.breakpoint()   Stop execution like if there was a breakpoint in the",
    "                     next line of code.",
]

_STRICT_LONG = re.compile(rb"-?(0|[1-9][0-9]*)\Z")  # string2l
_ATOI = re.compile(rb"\s*([+-]?[0-9]+)")


class Channel(Protocol):
    """The debugging client's connection, used synchronously while the script runs."""

    #: The session was killed (SHUTDOWN ends YES sessions): the script stops at its next line.
    killed: bool

    def read(self) -> bytes:
        """Some bytes the client sent, waiting for them; b"" once it is gone."""

    def write(self, data: bytes) -> None:
        """Send ``data`` (given up on quietly if the client does not take it in time)."""

    def close(self) -> None:
        """The session is over (a YES session's own duplicate of the socket is closed)."""


def atoi(text: bytes) -> int:
    """C's ``atoi``: the leading integer, 0 when there is none."""
    match = _ATOI.match(text)
    return int(match.group(1)) if match else 0


def parse_command(buf: bytes) -> tuple[list[bytes] | None, bool]:
    """``ldbReplParseCommand``, a forgiving multi-bulk parser: ``(argv, False)``, ``(None,
    False)`` to read more, or ``(None, True)`` for a protocol error."""
    if not buf:
        return None, False
    start = buf.find(b"*")
    if start < 0:
        return None, True
    end = buf.find(b"\r\n", start)
    if end < 0:
        return None, False
    count = atoi(buf[start + 1:end])
    if count <= 0 or count > 1024:
        return None, True
    pos = end + 2
    argv: list[bytes] = []
    while len(argv) < count:
        if pos >= len(buf):
            return None, False
        if buf[pos:pos + 1] != b"$":
            return None, True
        end = buf.find(b"\r\n", pos)
        if end < 0:
            return None, False
        size = atoi(buf[pos + 1:end])
        if size <= 0 or size > 1024:
            return None, True
        pos = end + 2
        if pos + size + 2 > len(buf):
            return None, False
        argv.append(buf[pos:pos + size])
        pos += size
        if buf[pos:pos + 2] != b"\r\n":
            return None, True
        pos += 2
    return argv, False


def reply_to_human(reply: bytes, pos: int = 0) -> tuple[bytes, int]:
    """``ldbRedisProtocolToHuman``: a RESP reply as the debugger shows it, and where it
    ends."""
    kind = reply[pos:pos + 1]
    end = reply.find(b"\r\n", pos)
    head = reply[pos + 1:end]
    after = end + 2
    if kind == b":":
        return head, after
    if kind == b"$":
        size = int(head)
        if size == -1:
            return b"NULL", after
        return repr_bytes(reply[after:after + size]).encode(), after + size + 2
    if kind in (b"+", b"-"):
        return repr_bytes(reply[pos:end]).encode(), after
    if kind in (b"*", b"~", b"%"):
        count = int(head)
        if kind == b"*" and count == -1:
            return b"NULL", after
        parts = []
        for _ in range(count):
            text, after = reply_to_human(reply, after)
            if kind == b"%":
                value, after = reply_to_human(reply, after)
                text += b" => " + value
            parts.append(text)
        open_, close = {b"*": (b"[", b"]"), b"~": (b"~(", b")"), b"%": (b"{", b"}")}[kind]
        return open_ + b",".join(parts) + close, after
    if kind == b"_":
        return b"(null)", after
    if kind == b"#":
        return (b"#true" if head == b"t" else b"#false"), after
    if kind == b",":
        return b"(double) " + head, after
    return b"", pos  # a type the debugger does not show (Redis's switch has no default)


class Debugger:
    """One debugging session: its log, breakpoints and stepping state, and its REPL."""

    def __init__(self, channel: Channel, source: bytes, lua: Frames,
                 time_limit: Callable[[], int], restart_clock: Callable[[], None]) -> None:
        self.channel = channel
        self.lua = lua
        self.time_limit = time_limit  # busy-reply-threshold (ms), 0 when unset
        self.restart_clock = restart_clock
        self.logs: list[bytes] = []
        self.step = True
        self.breakpoints: list[int] = []
        self.luabp = False
        self.maxlen = MAX_LEN_DEFAULT
        self.maxlen_hint_sent = False
        self.buffer = b""
        self.currentline = -1
        self.started = monotonic()
        self.lines = 0  # lines run without a stop (see on_line)
        self.source = source.rstrip(b"\r\n").split(b"\n")

    # -- the log -------------------------------------------------------------------------
    @property
    def logging(self) -> bool:
        """``ldbIsEnabled``: commands, replies and errors are logged while stepping."""
        return self.step

    def log(self, entry: bytes) -> None:
        self.logs.append(entry)

    def log_max_len(self, entry: bytes) -> None:
        """``ldbLogWithMaxLen``: trimmed at ``maxlen``, with a hint the first time."""
        trimmed = bool(self.maxlen) and len(entry) > self.maxlen
        if trimmed:
            entry = entry[:self.maxlen] + b" ..."
        self.log(entry)
        if trimmed and not self.maxlen_hint_sent:
            self.maxlen_hint_sent = True
            self.log(b"<hint> The above reply was trimmed. Use 'maxlen 0' to disable "
                     b"trimming.")

    def send_logs(self) -> None:
        """``ldbSendLogs``: the log as a multi-bulk of status lines, then emptied."""
        out = [b"*%d\r\n" % len(self.logs)]
        for entry in self.logs:
            out.append(b"+" + entry.replace(b"\r", b" ").replace(b"\n", b" ") + b"\r\n")
        self.logs.clear()
        self.channel.write(b"".join(out))

    def end(self) -> None:
        """``ldbEndSession``: the last logs and the end mark."""
        self.log(b"<endsession>")
        self.send_logs()

    # -- what the script and redis.call report ---------------------------------------------
    def log_command(self, argv: list[bytes]) -> None:
        entry = b"<redis>"
        for position, arg in enumerate(argv):
            if position == 10:
                entry += b" ... (%d more)" % (len(argv) - position - 1)
                break
            entry += b" " + arg
        self.log(entry)

    def log_reply(self, reply: bytes) -> None:
        self.log_max_len(b"<reply> " + reply_to_human(reply)[0])

    def log_error(self, text: bytes) -> None:
        if self.step:
            self.log(b"<error> " + text)

    def debug(self, count: int, *values: object) -> None:
        """redis.debug(...): its arguments, comma separated."""
        values = values + (None,) * (count - len(values))
        shown = b", ".join(self.value(value) for value in values[:count])
        self.log(b"<debug> line %d: %s" % (self.currentline, shown))

    def breakpoint(self) -> bool:
        """redis.breakpoint(): stop at the next line."""
        self.luabp = True
        return True

    # -- values ----------------------------------------------------------------------------
    def value(self, value: object, level: int = 0) -> bytes:
        """``ldbCatStackValueRec``: a Lua value as the debugger shows it."""
        if level == MAX_VALUES_DEPTH:
            return b"<max recursion level reached! Nested table?>"
        level += 1
        kind = type(value)
        if kind is bytes:
            return repr_bytes(value).encode()
        if kind is bool:
            return b"true" if value else b"false"
        if kind is int or kind is float:
            return b"%g" % value
        if value is None:
            return b"nil"
        lua_kind = lua51.lua_type(value)
        if lua_kind == "table":
            expected = 1
            is_array = True
            array: list[bytes] = []
            full: list[bytes] = []
            for key, item in value.items():
                if is_array and (type(key) not in (int, float) or key != expected):
                    is_array = False
                shown = self.value(item, level)
                array.append(shown)
                full.append(b"[" + self.value(key, level) + b"]=" + shown)
                expected += 1
            return b"{" + b"; ".join(array if is_array else full) + b"}"
        if lua_kind in ("function", "userdata", "thread"):
            address = self.lua.address(value)
            return b'"%s@%s"' % (lua_kind.encode(), address)
        # a Python callable standing for one of Redis's C functions
        return b'"function@0x%x"' % id(value)

    # -- the source ------------------------------------------------------------------------
    def source_line(self, line: int) -> bytes:
        if 1 <= line <= len(self.source):
            return self.source[line - 1]
        return b"<out of range source code line>"

    def log_source_line(self, line: int) -> None:
        current, bp = line == self.currentline, line in self.breakpoints
        prefix = b"->#" if current and bp else b"-> " if current else b"  #" if bp else b"   "
        self.log(b"%s%-3d %s" % (prefix, line, self.source_line(line)))

    def list(self, around: int, context: int) -> None:
        for line in range(1, len(self.source) + 1):
            if around == 0 or abs(around - line) <= context:
                self.log_source_line(line)

    # -- the line hook ---------------------------------------------------------------------
    def on_line(self, count_event: bool, line: int) -> bytes | None:
        """``luaLdbLineHook`` for a line of the script: stop when stepping, at a
        breakpoint, or when the script runs too long; the message of the error to raise in
        the script, or None to go on."""
        self.currentline = line
        if self.channel.killed:
            return ABORTED
        bp = line in self.breakpoints or self.luabp
        timeout = False
        if not self.step and not bp:
            # Redis looks at the clock on its count hook, every 100000 instructions. Here
            # the hook is Lua code whose own instructions count too, and a count event that
            # falls in them is lost: the clock is also read every LINES_PER_CHECK lines.
            self.lines += 1
            if not count_event and self.lines % LINES_PER_CHECK:
                return None
            limit = self.time_limit() or 5000
            if (monotonic() - self.started) * 1000 < limit:
                return None
            timeout = self.step = True
        if not (self.step or bp):
            return None
        reason = b"step over"
        if bp:
            reason = b"redis.breakpoint() called" if self.luabp else b"break point"
        elif timeout:
            reason = b"timeout reached, infinite loop?"
        self.step = self.luabp = False
        self.log(b"* Stopped at %d, stop reason = %s" % (line, reason))
        self.log_source_line(line)
        self.send_logs()
        try:
            gone = not self.repl()
        except _Raise as err:
            return err.message
        if gone and timeout:
            return CLIENT_GONE
        self.started = monotonic()
        self.restart_clock()
        return None

    def repl(self) -> bool:
        """``ldbRepl``: run the client's debugger commands until one resumes the script;
        False when the client went away (the script then runs to its end)."""
        while True:
            argv, error = parse_command(self.buffer)
            while argv is None:
                if error:
                    raise _Raise(PROTOCOL_ERROR)
                data = self.channel.read()
                if not data:
                    self.step = False
                    self.breakpoints.clear()
                    return False
                self.buffer += data
                if len(self.buffer) > MAX_BUFFER:
                    self.buffer = b""
                    raise _Raise(BUFFER_FULL)
                argv, error = parse_command(self.buffer)
            self.buffer = b""  # Redis drops whatever followed the command too
            if self._run(argv):
                return True

    def _run(self, argv: list[bytes]) -> bool:
        """One debugger command; True when it resumes the script."""
        name = argv[0].lower()
        if name in (b"s", b"step", b"n", b"next"):
            self.step = True
            return True
        if name in (b"c", b"continue"):
            return True
        if name in (b"a", b"abort"):
            raise _Raise(ABORTED)
        if name in (b"h", b"help"):
            for line in HELP:
                self.log(line.encode())
        elif name in (b"t", b"trace"):
            self._trace()
        elif name in (b"m", b"maxlen"):
            self._maxlen(argv)
        elif name in (b"b", b"break"):
            self._break(argv)
        elif name in (b"e", b"eval"):
            self._eval(argv)
        elif len(argv) > 1 and name in (b"r", b"redis"):
            self.step = True  # ldbRedis: redis.call logs the command and its reply
            try:
                self.lua.redis(argv[1:])
            finally:
                self.step = False
        elif name in (b"p", b"print"):
            if len(argv) == 2:
                self._print(argv[1])
            else:
                self._print_all()
        elif name in (b"l", b"list"):
            around, context = self.currentline, 5
            if len(argv) > 1 and atoi(argv[1]) > 0:
                around = atoi(argv[1])
            if len(argv) > 2:
                context = atoi(argv[2])
            self.list(around, context)
        elif name in (b"w", b"whole"):
            self.list(1, 1000000)
        else:
            self.log(b"<error> Unknown Redis Lua debugger command or wrong number of "
                     b"arguments.")
        self.send_logs()
        return False

    def _trace(self) -> None:
        frames = self.lua.frames()
        for level, frame in enumerate(frames):
            if b"user_script" in frame.src:
                self.log(b"%s %s:" % (b"In" if level == 0 else b"From",
                                      frame.name or b"top level"))
                self.log_source_line(frame.line)
        if not frames:
            self.log(b"<error> Can't retrieve Lua stack.")

    def _maxlen(self, argv: list[bytes]) -> None:
        if len(argv) == 2:
            value = atoi(argv[1])
            self.maxlen_hint_sent = True  # the user knows about the command
            if value != 0 and value <= 60:
                value = 60
            self.maxlen = value
        if self.maxlen:
            self.log(b"<value> replies are truncated at %d bytes." % self.maxlen)
        else:
            self.log(b"<value> replies are unlimited.")

    def _break(self, argv: list[bytes]) -> None:
        if len(argv) == 1:
            if not self.breakpoints:
                self.log(b"No breakpoints set. Use 'b <line>' to add one.")
                return
            self.log(b"%d breakpoints set:" % len(self.breakpoints))
            for line in self.breakpoints:
                self.log_source_line(line)
            return
        for arg in argv[1:]:
            if not _STRICT_LONG.match(arg):
                self.log(b"Invalid argument:'%s'" % arg)
                continue
            line = int(arg)
            if line == 0:
                self.breakpoints.clear()
                self.log(b"All breakpoints removed.")
            elif line > 0:
                if len(self.breakpoints) == BREAKPOINTS_MAX:
                    self.log(b"Too many breakpoints set.")
                elif 1 <= line <= len(self.source) and line not in self.breakpoints:
                    self.breakpoints.append(line)
                    self.list(line, 1)
                else:  # an existing breakpoint too, as ldbAddBreakpoint answers
                    self.log(b"Wrong line number.")
            elif -line in self.breakpoints:
                self.breakpoints.remove(-line)
                self.log(b"Breakpoint removed.")
            else:
                self.log(b"No breakpoint in the specified line.")

    def _eval(self, argv: list[bytes]) -> None:
        ok, value = self.lua.eval(b" ".join(argv[1:]))
        if not ok:
            self.log(b"<error> " + (value if type(value) is bytes else b"(null)"))
            return
        self.log_max_len(b"<retval> " + self.value(value))

    def _print(self, name: bytes) -> None:
        for frame in self.lua.frames():
            for local, value in frame.locals:
                if local == name:
                    self.log_max_len(b"<value> " + self.value(value))
                    return
        if name in (b"KEYS", b"ARGV"):
            self.log_max_len(b"<value> " + self.value(self.lua.global_(name)))
        else:
            self.log(b"No such variable.")

    def _print_all(self) -> None:
        frames = self.lua.frames()
        shown = 0
        for local, value in frames[0].locals if frames else ():
            if b"(*temporary)" not in local:
                self.log_max_len(b"<value> %s = %s" % (local, self.value(value)))
                shown += 1
        if not shown:
            self.log(b"No local variables in the current context.")


class _Raise(Exception):
    """A debugger command ends the script with an error (abort, a protocol error)."""

    def __init__(self, message: bytes) -> None:
        super().__init__(message)
        self.message = message


class Frame:
    """One Lua call frame of the script being debugged, innermost first."""

    __slots__ = ("src", "name", "line", "locals")

    def __init__(self, src: bytes, name: bytes | None, line: int,
                 locals_: list[tuple[bytes, object]]) -> None:
        self.src = src
        self.name = name
        self.line = line
        self.locals = locals_


class Frames:
    """The Lua side of the debugger (prelude.lua's helpers), called from inside the hook."""

    def __init__(self, helpers: object) -> None:
        self._frames = helpers[b"frames"]
        self._eval = helpers[b"eval"]
        self._redis = helpers[b"redis"]
        self._global = helpers[b"global"]
        self._address = helpers[b"address"]

    def frames(self) -> list[Frame]:
        frames = []
        for entry in self._frames().values():
            locals_ = [(pair[1], pair[2]) for pair in entry[b"vars"].values()]
            line = entry[b"line"]
            frames.append(Frame(entry[b"src"], entry[b"name"], int(line), locals_))
        return frames

    def eval(self, code: bytes) -> tuple[bool, object]:
        return self._eval(code)

    def redis(self, argv: list[bytes]) -> None:
        self._redis(*argv)

    def global_(self, name: bytes) -> object:
        return self._global(name)

    def address(self, value: object) -> bytes:
        text = self._address(value)
        return text.split(b": ", 1)[-1] if type(text) is bytes else b"0x0"
