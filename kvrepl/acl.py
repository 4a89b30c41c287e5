"""Users and permissions as Redis 7.0's ``acl.c``: rules, selectors, checks, the ACL log.

Sans-IO: users are built from rule strings (``ACL SETUSER``'s arguments, ``user`` lines of a
config or ACL file) and a command is checked against the table built from Redis's command
descriptions (:mod:`kvrepl.commands.spec`): the command bit, a first argument, each key by its
key spec flags (read for ``access``, write for ``insert``/``delete``/``update``), each channel
of PUBLISH and the SUBSCRIBE family. The dispatcher calls :meth:`Acl.check` for any session
whose user is not :attr:`User.unrestricted` (the default user, with all rights, costs one
attribute test).

Permissions are kept over the whole Redis command table, implemented or not, as Redis keeps
them over its own: ``ACL CAT``, the categories ``ACL GETUSER`` describes a user with, and
``+@category`` then mean exactly what they mean to redis-server.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from kvrepl.commands.glob import glob_match
from kvrepl.commands.spec import (
    ACL_CATEGORIES,
    CommandSpec,
    has_keys,
    key_positions,
    key_refs,
    load_specs,
)
from kvrepl.protocol.parser import split_inline

__all__ = ["Acl", "AclError", "LogEntry", "Selector", "User", "acl_table", "has_spaces",
           "hash_password", "split_rules"]

READ, WRITE = 1, 2
ALL_PERMS = READ | WRITE

# ACL_OK and the ACL_DENIED_* values: a later one wins when selectors disagree.
OK, DENIED_CMD, DENIED_KEY, DENIED_AUTH, DENIED_CHANNEL = 0, 1, 2, 3, 4
REASONS = {DENIED_CMD: b"command", DENIED_KEY: b"key", DENIED_AUTH: b"auth",
           DENIED_CHANNEL: b"channel"}
# execCommand's reasons when a queued command is no longer allowed.
# scriptVerifyACL's messages for a script's redis.call, by ACLCheckAllPerm's result.
SCRIPT_DENIED = {
    DENIED_CMD: "ERR The user executing the script can't run this command or subcommand",
    DENIED_KEY: "ERR The user executing the script can't access at least one of the keys "
                "mentioned in the command arguments",
    DENIED_CHANNEL: "ERR The user executing the script can't publish to the channel "
                    "mentioned in the command",
}
EXEC_DENIED = {
    DENIED_CMD: "no permission to execute the command or subcommand",
    DENIED_KEY: "no permission to touch the specified keys",
    DENIED_CHANNEL: "no permission to access one of the channels used as arguments",
}

# ACLSetUserStringError's messages, by the errno acl.c sets.
ENOENT = "Unknown command or category name in ACL"
EINVAL = "Syntax error"
EEXIST = ("Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does "
          "not have any effect. Try 'resetkeys' to start with an empty list of patterns")
EISDIR = ("Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and "
          "does not have any effect. Try 'resetchannels' to start with an empty list of "
          "channels")
ENODEV = "The password you are trying to remove from the user does not exist"
EBADMSG = ("The password hash must be exactly 64 characters and contain only lowercase "
           "hexadecimal characters")
ECHILD = "Allowing first-arg of a subcommand is not supported"

# db.c commands_with_channels: name -> (is_pattern, first, count or -1); UNSUBSCRIBE & co.
# are never checked (only the publish and subscribe flags are).
_CHANNEL_COMMANDS = {
    "subscribe": (False, -1), "ssubscribe": (False, -1), "psubscribe": (True, -1),
    "publish": (False, 1), "spublish": (False, 1),
}

# How close in time two denials must be to count as one ACL LOG entry (ms).
_LOG_GROUPING_MS = 60000
_HEX = frozenset(b"0123456789abcdef")


class AclError(ValueError):
    """A rule ACLSetUser refuses; ``unknown`` for an unknown command or category (ENOENT)."""

    def __init__(self, message: str, unknown: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.unknown = unknown


def hash_password(password: bytes) -> str:
    """ACLHashPassword: the SHA-256 hex digest a user stores."""
    return hashlib.sha256(password).hexdigest()


def has_spaces(data: bytes) -> bool:
    """ACLStringHasSpaces: whitespace (isspace) or NUL."""
    return any(c in b" \t\n\v\f\r\x00" for c in data)


@dataclass(frozen=True, slots=True)
class _Table:
    """The command table as ACLs see it (server.orig_commands)."""

    specs: dict[str, CommandSpec]  # fullname -> spec, subcommands included
    tops: tuple[CommandSpec, ...]  # top-level commands, table order
    subs: dict[str, tuple[str, ...]]  # container fullname -> its subcommands' fullnames
    categories: dict[str, frozenset[str]]  # category -> fullnames in it
    everything: frozenset[str]
    with_keys: frozenset[str]  # doesCommandHaveKeys
    # Commands whose keys all come from one key spec with fixed flags: the permissions
    # each of their keys needs (the others find their keys' flags per request).
    simple_needs: dict[str, int]


@lru_cache(maxsize=1)
def acl_table() -> _Table:
    specs: dict[str, CommandSpec] = {}
    subs: dict[str, tuple[str, ...]] = {}
    members: dict[str, set[str]] = {c: set() for c in ACL_CATEGORIES}
    tops = tuple(load_specs().values())
    for top in tops:
        for spec in (top, *top.subcommands.values()):
            specs[spec.name] = spec
            for category in spec.acl_categories:
                members[category[1:]].add(spec.name)
        if top.subcommands:
            subs[top.name] = tuple(s.name for s in top.subcommands.values())
    return _Table(specs, tops, subs, {c: frozenset(m) for c, m in members.items()},
                  frozenset(specs), frozenset(n for n, s in specs.items() if has_keys(s)),
                  {n: _needs(s._compiled[0][0]) for n, s in specs.items()
                   if len(s._compiled) == 1 and s._use_specs and not s.get_keys_function
                   and "VARIABLE_FLAGS" not in s._compiled[0][0]})


@lru_cache(maxsize=64)
def _needs(flags: frozenset[str]) -> int:
    """The permissions a key with these key spec flags needs: read for ACCESS, write for
    INSERT, DELETE and UPDATE (ACLSelectorCheckKey)."""
    need = READ if "ACCESS" in flags else 0
    if flags & {"INSERT", "DELETE", "UPDATE"}:
        need |= WRITE
    return need


_GLOB_SPECIALS = frozenset(b"*?[\\")


def _matcher(pattern: bytes) -> object:
    """A test for keys or channels against ``pattern``: plain comparisons for a literal or
    a literal followed by ``*`` (the usual ACL patterns), glob matching otherwise."""
    if not _GLOB_SPECIALS & set(pattern):
        return pattern.__eq__
    head = _prefix(pattern)
    if head is not None:
        return lambda subject: subject.startswith(head)
    return lambda subject: glob_match(pattern, subject)


def _prefix(pattern: bytes) -> bytes | None:
    """``head`` of a ``head*`` pattern whose head is literal (what :func:`_matcher` tests
    with ``startswith``); None for any other pattern."""
    head = pattern[:-1]
    if pattern.endswith(b"*") and not _GLOB_SPECIALS & set(head):
        return head
    return None


def _lookup(name: bytes) -> CommandSpec | None:
    """ACLLookupCommand: ``get`` or ``config|get``, case-insensitive."""
    return acl_table().specs.get(name.decode("latin-1").lower())


class Selector:
    """One set of permissions (aclSelector): commands, key patterns, channel patterns."""

    __slots__ = ("root", "allowed", "allcommands", "future", "firstargs", "allkeys",
                 "patterns", "allchannels", "channels")

    def __init__(self, root: bool = False, allchannels: bool = False) -> None:
        self.root = root
        self.allowed: set[str] = set()
        self.allcommands = False  # SELECTOR_FLAG_ALLCOMMANDS: skip the command test
        self.future = False  # the reserved bit +@all sets: described as +@all ...
        self.firstargs: dict[str, list[bytes]] = {}
        self.allkeys = False
        # [pattern bytes, READ|WRITE, its matcher], in the order added
        self.patterns: list[list] = []
        self.allchannels = allchannels
        self.channels: list[bytes] = []

    def copy(self) -> Selector:
        other = Selector(self.root, self.allchannels)
        other.allowed = set(self.allowed)
        other.allcommands, other.future = self.allcommands, self.future
        other.firstargs = {k: list(v) for k, v in self.firstargs.items()}
        other.allkeys = self.allkeys
        other.patterns = [list(p) for p in self.patterns]
        other.channels = list(self.channels)
        return other

    # -- rules -----------------------------------------------------------------------------
    def _change(self, name: str, allow: bool) -> None:
        """ACLChangeSelectorPerm: a command and all its subcommands."""
        names = (name, *acl_table().subs.get(name, ()))
        if allow:
            self.allowed.update(names)
        else:
            self.allowed.difference_update(names)
            self.allcommands = False
        self.firstargs.pop(name, None)

    def _set_all(self, allow: bool) -> None:
        self.allowed = set(acl_table().everything) if allow else set()
        self.allcommands = self.future = allow
        self.firstargs = {}

    def _category(self, category: bytes, allow: bool) -> None:
        members = acl_table().categories.get(category.decode("latin-1").lower())
        if members is None:
            raise AclError(ENOENT, unknown=True)
        for name in members:
            self._change(name, allow)

    def apply(self, op: bytes) -> None:
        """ACLSetSelector: one rule; AclError with acl.c's message when refused."""
        lowered = op.lower()
        if lowered in (b"allkeys", b"~*"):
            self.allkeys, self.patterns = True, []
        elif lowered == b"resetkeys":
            self.allkeys, self.patterns = False, []
        elif lowered in (b"allchannels", b"&*"):
            self.allchannels, self.channels = True, []
        elif lowered == b"resetchannels":
            self.allchannels, self.channels = False, []
        elif lowered in (b"allcommands", b"+@all"):
            self._set_all(True)
        elif lowered in (b"nocommands", b"-@all"):
            self._set_all(False)
        elif op[:1] in (b"~", b"%"):
            self._add_key_pattern(op)
        elif op[:1] == b"&":
            if self.allchannels:
                raise AclError(EISDIR)
            if has_spaces(op[1:]):
                raise AclError(EINVAL)
            if op[1:] not in self.channels:
                self.channels.append(op[1:])
            self.allchannels = False
        elif op[:1] == b"+" and op[1:2] != b"@":
            self._allow(op[1:])
        elif op[:1] == b"-" and op[1:2] != b"@":
            spec = _lookup(op[1:])
            if spec is None:
                raise AclError(ENOENT, unknown=True)
            self._change(spec.name, False)
        elif op[:2] in (b"+@", b"-@"):
            self._category(op[2:], op[:1] == b"+")
        else:
            raise AclError(EINVAL)

    def _add_key_pattern(self, op: bytes) -> None:
        if self.allkeys:
            raise AclError(EEXIST)
        flags = 0
        offset = 1
        if op[:1] == b"%":
            while offset < len(op):
                c = op[offset:offset + 1].upper()
                if c == b"R" and not flags & READ:
                    flags |= READ
                elif c == b"W" and not flags & WRITE:
                    flags |= WRITE
                elif c == b"~":
                    offset += 1
                    break
                else:
                    raise AclError(EINVAL)
                offset += 1
        else:
            flags = ALL_PERMS
        pattern = op[offset:]
        if has_spaces(pattern):
            raise AclError(EINVAL)
        for existing in self.patterns:
            if existing[0] == pattern:
                existing[1] |= flags
                break
        else:
            self.patterns.append([pattern, flags, _matcher(pattern)])
        self.allkeys = False

    def _allow(self, name: bytes) -> None:
        """``+cmd``, ``+container|sub`` or ``+cmd|first-arg``."""
        if b"|" not in name:
            spec = _lookup(name)
            if spec is None:
                raise AclError(ENOENT, unknown=True)
            self._change(spec.name, True)
            return
        head, _, sub = name.rpartition(b"|")
        spec = _lookup(head)
        if spec is None:
            raise AclError(ENOENT, unknown=True)
        if spec.container is not None:
            raise AclError(ECHILD)
        if not sub:
            raise AclError(EINVAL)
        if spec.subcommands:
            spec = _lookup(name)
            if spec is None:
                raise AclError(ENOENT, unknown=True)
            self._change(spec.name, True)
            return
        allowed = self.firstargs.setdefault(spec.name, [])
        if sub.lower() not in (a.lower() for a in allowed):
            allowed.append(sub)

    # -- description -----------------------------------------------------------------------
    def command_rules(self) -> bytes:
        """ACLDescribeSelectorCommandRules: ``+@all``/``-@all``, the categories that fit
        best, then single commands, replayed on a blank selector until the bits match."""
        table = acl_table()
        additive = not self.future
        fake = Selector()
        fake._set_all(not additive)
        rules = [b"-@all" if additive else b"+@all"]
        temp = set(self.allowed)
        applied: set[str] = set()
        while True:
            best, mindiff, maxsame = None, None, 0
            for category in ACL_CATEGORIES:
                if category in applied:
                    continue
                members = table.categories[category]
                on = len(members & temp)
                off = len(members) - on
                diff, same = (off, on) if additive else (on, off)
                if same > diff and (mindiff is None or diff < mindiff
                                    or (diff == mindiff and same > maxsame)):
                    best, mindiff, maxsame = category, diff, same
            if best is None:
                break
            fake._category(best.encode(), additive)
            members = table.categories[best]
            if additive:
                temp.difference_update(members)
            else:
                temp.update(members)
            rules.append((b"+@" if additive else b"-@") + best.encode())
            applied.add(best)
        for top in table.tops:
            for spec in (top, *top.subcommands.values()):
                name = spec.name
                userbit = name in self.allowed
                if userbit != (name in fake.allowed):
                    rules.append((b"+" if userbit else b"-") + name.encode())
                    fake._change(name, userbit)
                if not userbit:
                    for arg in self.firstargs.get(name, ()):
                        rules.append(b"+" + name.encode() + b"|" + arg)
        return b" ".join(rules)

    def key_rules(self) -> list[bytes]:
        return [_pattern_string(p, f) for p, f, _ in self.patterns]

    def describe(self) -> bytes:
        """ACLDescribeSelector: keys, channels, commands."""
        parts = [b"~*"] if self.allkeys else self.key_rules()
        if self.allchannels:
            parts.append(b"&*")
        else:
            parts.append(b"resetchannels")
            parts.extend(b"&" + c for c in self.channels)
        parts.append(self.command_rules())
        return b" ".join(parts)

    def getuser_fields(self) -> list[object]:
        """aclAddReplySelectorDescription: commands, keys, channels."""
        keys = b"~*" if self.allkeys else b" ".join(self.key_rules())
        channels = b"&*" if self.allchannels else b" ".join(b"&" + c for c in self.channels)
        return [b"commands", self.command_rules(), b"keys", keys, b"channels", channels]

    # -- checks ----------------------------------------------------------------------------
    def check(self, spec: CommandSpec, argv: list[bytes],
              keys: list | None) -> tuple[int, int, list | None]:
        """ACLSelectorCheckCmd: (result, argv index at fault, the keys found, cached)."""
        name = spec.name
        if not self.allcommands and name not in self.allowed and not spec.no_auth:
            firstargs = self.firstargs.get(name)
            if len(argv) < 2 or not firstargs:
                return DENIED_CMD, 0, keys
            wanted = argv[1].lower()
            if not any(arg.lower() == wanted for arg in firstargs):
                return DENIED_CMD, 0, keys
        table = acl_table()
        if not self.allkeys and name in table.with_keys:
            need = table.simple_needs.get(name)
            if need is not None:
                for index in key_positions(spec, argv):
                    if not self.key_allowed(argv[index], need):
                        return DENIED_KEY, index, keys
            else:
                if keys is None:
                    keys = key_refs(spec, argv)
                for index, flags in keys:
                    if not self.key_allowed(argv[index], _needs(flags)):
                        return DENIED_KEY, index, keys
        channels = _CHANNEL_COMMANDS.get(spec.name)
        if channels is not None and not self.allchannels:
            is_pattern, count = channels
            end = len(argv) if count < 0 else min(len(argv), 1 + count)
            for index in range(1, end):
                if not self.channel_allowed(argv[index], is_pattern):
                    return DENIED_CHANNEL, index, keys
        return OK, 0, keys

    def key_allowed(self, key: bytes, need: int) -> bool:
        """ACLSelectorCheckKey: a pattern with the permissions ``need`` (READ|WRITE)."""
        if self.allkeys:
            return True
        for _, perms, matches in self.patterns:
            if perms & need == need and matches(key):
                return True
        return False

    def channel_allowed(self, channel: bytes, is_pattern: bool) -> bool:
        """ACLCheckChannelAgainstList: a pattern (PSUBSCRIBE) only as itself."""
        if self.allchannels:
            return True
        if is_pattern:
            return channel in self.channels
        return any(glob_match(pattern, channel) for pattern in self.channels)


def _pattern_string(pattern: bytes, flags: int) -> bytes:
    prefix = {ALL_PERMS: b"~", READ: b"%R~", WRITE: b"%W~"}[flags]
    return prefix + pattern


def split_rules(rules: list[bytes]) -> list[bytes]:
    """ACLMergeSelectorArguments: ``(`` ... ``)`` spread over several words become one rule;
    AclError when a parenthesis is left open."""
    merged: list[bytes] = []
    opened: bytes | None = None
    for op in rules:
        if opened is None and op[:1] == b"(" and op[-1:] != b")":
            opened = op
            continue
        if opened is not None:
            opened += b" " + op
            if op[-1:] == b")":
                merged.append(opened)
                opened = None
            continue
        merged.append(op)
    if opened is not None:
        start = opened.split(b" ", 1)[0]
        raise AclError("Unmatched parenthesis in acl selector starting at "
                       f"'{start.decode('utf-8', 'replace')}'.")
    return merged


class User:
    """One ACL user: flags, password hashes, the root selector and the others."""

    __slots__ = ("name", "enabled", "nopass", "sanitize", "passwords", "selectors",
                 "unrestricted", "_key_checks", "lane_tests")

    def __init__(self, name: bytes, allchannels: bool = False) -> None:
        self.name = name
        self.enabled = False
        self.nopass = False
        self.sanitize: bytes | None = None  # b"sanitize-payload" / b"skip-sanitize-payload"
        self.passwords: list[str] = []
        self.selectors = [Selector(root=True, allchannels=allchannels)]
        self.unrestricted = False
        self._key_checks: dict[str, tuple[Callable[[bytes], bool] | None, bytes | None]] = {}
        # What the plain lane derived from key_check/key_prefix (kvrepl.commands.plain), so
        # that a run reads one attribute; None again whenever the rules change.
        self.lane_tests: tuple | None = None

    @property
    def root(self) -> Selector:
        return self.selectors[0]

    def copy(self, name: bytes | None = None) -> User:
        other = User(self.name if name is None else name)
        other.enabled, other.nopass, other.sanitize = self.enabled, self.nopass, self.sanitize
        other.passwords = list(self.passwords)
        other.selectors = [s.copy() for s in self.selectors]
        other.unrestricted = self.unrestricted
        return other

    def assign(self, other: User) -> None:
        """ACLCopyUser: take ``other``'s permissions, keep this object (sessions point here)."""
        self.enabled, self.nopass, self.sanitize = other.enabled, other.nopass, other.sanitize
        self.passwords = list(other.passwords)
        self.selectors = [s.copy() for s in other.selectors]
        self._refresh()

    def _refresh(self) -> None:
        root = self.root
        self.unrestricted = root.allcommands and root.allkeys and root.allchannels
        self._key_checks = {}  # the rules changed: what key_check built is stale
        self.lane_tests = None

    def apply(self, op: bytes, pubsub_default_all: bool = False) -> None:
        """ACLSetUser: one rule."""
        lowered = op.lower()
        if not op:
            return
        if lowered == b"on":
            self.enabled = True
        elif lowered == b"off":
            self.enabled = False
        elif lowered in (b"skip-sanitize-payload", b"sanitize-payload"):
            self.sanitize = lowered
        elif lowered == b"nopass":
            self.nopass, self.passwords = True, []
        elif lowered == b"resetpass":
            self.nopass, self.passwords = False, []
        elif op[:1] in (b">", b"#"):
            if op[:1] == b">":
                digest = hash_password(op[1:])
            else:
                digest = _checked_hash(op[1:])
            if digest not in self.passwords:
                self.passwords.append(digest)
            self.nopass = False
        elif op[:1] in (b"<", b"!"):
            digest = hash_password(op[1:]) if op[:1] == b"<" else _checked_hash(op[1:])
            if digest not in self.passwords:
                raise AclError(ENODEV)
            self.passwords.remove(digest)
        elif op[:1] == b"(" and op[-1:] == b")":
            selector = Selector(allchannels=pubsub_default_all)
            for rule in split_args(op[1:-1]):
                selector.apply(rule)
            self.selectors.append(selector)
        elif lowered == b"clearselectors":
            del self.selectors[1:]
        elif lowered == b"reset":
            self.nopass, self.passwords = False, []
            root = self.root
            root.allkeys, root.patterns = False, []
            root.allchannels, root.channels = pubsub_default_all, []
            self.enabled = False
            self.sanitize = b"sanitize-payload"
            del self.selectors[1:]
            root._set_all(False)
        else:
            self.root.apply(op)
        self._refresh()

    def describe(self) -> bytes:
        """ACLDescribeUser: the rules that rebuild this user (ACL LIST, ACL SAVE)."""
        parts = [b"on" if self.enabled else b"off"]
        if self.nopass:
            parts.append(b"nopass")
        if self.sanitize is not None:
            parts.append(self.sanitize)
        parts.extend(b"#" + p.encode() for p in self.passwords)
        parts.append(self.root.describe())
        parts.extend(b"(" + s.describe() + b")" for s in self.selectors[1:])
        return b" ".join(parts)

    def flags(self) -> list[bytes]:
        flags = [b"on" if self.enabled else b"off"]
        if self.nopass:
            flags.append(b"nopass")
        if self.sanitize is not None:
            flags.append(self.sanitize)
        return flags

    def check_password(self, password: bytes) -> bool:
        """ACLCheckUserCredentials for an existing user."""
        if not self.enabled:
            return False
        if self.nopass:
            return True
        digest = hash_password(password)
        return any(hmac.compare_digest(digest, p) for p in self.passwords)

    def check(self, spec: CommandSpec, argv: list[bytes]) -> tuple[int, int]:
        """ACLCheckAllUserCommandPerm: OK, or the most relevant denial and its argv index."""
        selectors = self.selectors
        if len(selectors) == 1:
            result, index, _ = selectors[0].check(spec, argv, None)
            return result, index
        relevant, last = DENIED_CMD, 0
        keys = None
        for selector in selectors:
            result, index, keys = selector.check(spec, argv, keys)
            if result == OK:
                return OK, 0
            if result > relevant or (result == relevant and index > last):
                relevant, last = result, index
        return relevant, last

    def key_check(self, spec: CommandSpec, shape: list[bytes]
                  ) -> Callable[[bytes], bool] | None:
        """For requests shaped as ``shape`` whose only key is ``argv[1]`` and that name no
        channel (GET k, SET k v, PFADD k e, PFCOUNT k as the fast lanes take them): a test
        of that key which, when true, proves :meth:`check` would return OK for the request;
        None when no selector allows the command by name (then only :meth:`check` can
        tell). Built once per command and kept until the user's rules change; a false
        answer proves nothing (the general path then runs the full check, its NOPERM and
        its ACL LOG entry)."""
        return self._key_rule(spec, shape)[0]

    def key_prefix(self, spec: CommandSpec, shape: list[bytes]) -> bytes | None:
        """A prefix that proves :meth:`key_check`'s test true for every key starting with it
        (``b""``: every key), found from the first ``prefix*`` pattern that grants the
        command (``~key:*``, the usual ACL pattern): a slice comparison instead of a call.
        None when no pattern is of that form; keys without the prefix still need the test."""
        return self._key_rule(spec, shape)[1]

    def _key_rule(self, spec: CommandSpec, shape: list[bytes]
                  ) -> tuple[Callable[[bytes], bool] | None, bytes | None]:
        """key_check's test and key_prefix's prefix, built together once per rules."""
        name = spec.name
        try:
            return self._key_checks[name]
        except KeyError:
            pass
        need = acl_table().simple_needs.get(name)
        if need is None:  # flags that depend on the arguments (SET's GET): this shape's
            refs = key_refs(spec, shape)
            if len(refs) == 1 and refs[0][0] == 1:
                need = _needs(refs[0][1])
        allowing = [s for s in self.selectors if s.allcommands or name in s.allowed]
        test: Callable[[bytes], bool] | None
        prefix = None
        if need is None or not allowing or name in _CHANNEL_COMMANDS:
            test = None
        elif any(s.allkeys for s in allowing):
            test, prefix = _any_key, b""
        else:
            # The patterns that grant ``need``, in order: the first match allows.
            granting = [(pattern, matches) for s in allowing
                        for pattern, perms, matches in s.patterns if perms & need == need]
            matchers = [matches for _, matches in granting]
            prefixes = [p for p in (_prefix(pattern) for pattern, _ in granting)
                        if p is not None]
            prefix = prefixes[0] if prefixes else None
            if not matchers:
                test = _no_key
            elif len(matchers) == 1:
                test = matchers[0]
            else:
                def test(key: bytes, matchers: list = matchers) -> bool:
                    return any(matches(key) for matches in matchers)
        rule = self._key_checks[name] = (test, prefix)
        return rule

    def channel_allowed(self, channel: bytes, is_pattern: bool) -> bool:
        """ACLUserCheckChannelPerm."""
        return any(s.channel_allowed(channel, is_pattern) for s in self.selectors)


def _any_key(_key: bytes) -> bool:
    return True


def _no_key(_key: bytes) -> bool:
    return False


def _checked_hash(text: bytes) -> str:
    if len(text) != 64 or not set(text) <= _HEX:
        raise AclError(EBADMSG)
    return text.decode()


def split_args(text: bytes) -> list[bytes]:
    """sdssplitargs for a selector's inside (quotes allowed as Redis allows them)."""
    words = split_inline(text)
    if words is None:
        raise AclError(EINVAL)
    return words


@dataclass(slots=True)
class LogEntry:
    """One ACL LOG entry (ACLLogEntry)."""

    count: int
    reason: int
    context: bytes
    object: bytes
    username: bytes
    ctime_ms: int
    client_info: bytes

    def reply(self, now_ms: int) -> dict[bytes, object]:
        return {
            b"count": self.count,
            b"reason": REASONS[self.reason],
            b"context": self.context,
            b"object": self.object,
            b"username": self.username,
            b"age-seconds": (now_ms - self.ctime_ms) / 1000,
            b"client-info": self.client_info,
        }


class Acl:
    """The users of a node (Redis's ``Users`` rax) and its ACL log."""

    def __init__(self, pubsub_default_all: bool = False) -> None:
        self.pubsub_default_all = pubsub_default_all
        self.users: dict[bytes, User] = {}
        self.default = self._default_user()
        self.users[b"default"] = self.default
        self.log: deque[LogEntry] = deque()
        self.log_max_len = 128

    @staticmethod
    def _default_user() -> User:
        """ACLCreateDefaultUser."""
        user = User(b"default")
        for op in (b"+@all", b"~*", b"&*", b"on", b"nopass"):
            user.apply(op)
        return user

    def new_user(self, name: bytes) -> User:
        return User(name, allchannels=self.pubsub_default_all)

    def auth_required(self) -> bool:
        """A new connection must AUTH: the default user has a password or is off."""
        default = self.default
        return not default.nopass or not default.enabled

    def set_default_password(self, password: str) -> None:
        """ACLUpdateDefaultUserPassword: what ``requirepass`` does."""
        self.default.apply(b"resetpass")
        self.default.apply(b">" + password.encode() if password else b"nopass")

    def set_user(self, name: bytes, rules: list[bytes]) -> tuple[User, User | None]:
        """ACLStringSetUser: apply ``rules`` to a copy, then to the user (created if new);
        returns (the user, its permissions before) or raises AclError with the reply."""
        merged = split_rules(rules)
        existing = self.users.get(name)
        temp = existing.copy() if existing is not None else self.new_user(name)
        for op in merged:
            try:
                temp.apply(op, self.pubsub_default_all)
            except AclError as err:
                raise AclError(f"Error in ACL SETUSER modifier "
                               f"'{op.decode('utf-8', 'replace')}': {err.message}") from None
        before = existing.copy() if existing is not None else None
        if existing is None:
            existing = self.users[name] = temp
        else:
            existing.assign(temp)
        return existing, before

    def sorted_users(self) -> list[User]:
        """Users in name order (rax iteration)."""
        return [self.users[name] for name in sorted(self.users)]

    def load_lines(self, lines: list[tuple[int, list[bytes]]],
                   source: str = "") -> dict[bytes, User]:
        """ACLLoadFromFile's parsing: ``user <name> <rules...>`` lines into new users, or
        AclError with every problem (nothing changes then)."""
        users: dict[bytes, User] = {}
        errors = []
        for linenum, words in lines:
            if not words:
                continue
            if words[0] != b"user" or len(words) < 2:
                errors.append(f"{source}:{linenum} should start with user keyword followed "
                              "by the username. ")
                continue
            name = words[1]
            if has_spaces(name):
                errors.append(f"'{source}:{linenum}: username '{name.decode()}' contains "
                              "invalid characters. ")
                continue
            if name in users:
                errors.append(f"WARNING: Duplicate user '{name.decode()}' found on line "
                              f"{linenum}. ")
                continue
            user = users[name] = self.new_user(name)
            try:
                merged = split_rules(words[2:])
            except AclError:
                errors.append(f"{source}:{linenum}: Unmatched parenthesis in selector "
                              "definition.")
                continue
            syntax_error = False
            for op in merged:
                try:
                    user.apply(op.strip(b"\t\r\n"), self.pubsub_default_all)
                except AclError as err:
                    if err.unknown:
                        errors.append(f"{source}:{linenum}: Error in applying operation "
                                      f"'{op.decode('utf-8', 'replace')}': {err.message}. ")
                    elif not syntax_error:
                        errors.append(f"{source}:{linenum}: {err.message}. ")
                        syntax_error = True
        if errors:
            raise AclError("".join(errors) + "WARNING: ACL errors detected, no change to the "
                           "previously active ACL rules was performed")
        return users

    def replace_users(self, users: dict[bytes, User]) -> list[User]:
        """Install loaded users (the default one kept as the same object); returns the
        users that were dropped or replaced, whose clients must go."""
        new_default = users.pop(b"default", None) or self._default_user()
        old = [u for name, u in self.users.items() if name != b"default"]
        self.default.assign(new_default)
        self.users = {b"default": self.default, **users}
        return old

    def file_text(self) -> bytes:
        """ACLSaveToFile's content."""
        return b"".join(b"user " + u.name + b" " + u.describe() + b"\n"
                        for u in self.sorted_users())

    def add_log(self, reason: int, context: bytes, obj: bytes, username: bytes,
                client_info: bytes) -> None:
        """addACLLogEntry: a similar recent entry is bumped instead of repeated."""
        now = int(time.time() * 1000)
        for i, entry in enumerate(self.log):
            if i >= 10:
                break
            if (entry.reason == reason and entry.context == context
                    and abs(entry.ctime_ms - now) <= _LOG_GROUPING_MS
                    and entry.object == obj and entry.username == username):
                del self.log[i]
                entry.count += 1
                entry.ctime_ms = now
                entry.client_info = client_info
                self.log.appendleft(entry)
                return
        self.log.appendleft(LogEntry(1, reason, context, obj, username, now, client_info))
        while len(self.log) > self.log_max_len:
            self.log.pop()


def load_at_startup(acl: Acl, config: object) -> None:
    """ACLLoadUsersAtStartup: the config file's ``user`` lines, or the ``aclfile``, never
    both; ValueError (a ConfigError at start) when they are wrong."""
    lines: list[list[bytes]] = getattr(config, "user_lines", [])
    aclfile: str = getattr(config, "aclfile", "")
    if aclfile and lines:
        raise ValueError(
            "Configuring Redis with users defined in redis.conf and at the same setting an "
            "ACL file path is invalid. This setup is very likely to lead to configuration "
            "errors and security holes, please define either an ACL file or declare users "
            "directly in your redis.conf, but not both.")
    for words in lines:
        name = words[0]
        if has_spaces(name):
            raise ValueError("Spaces not allowed in ACL usernames")
        user = acl.users.get(name)
        if user is None:
            user = acl.users[name] = acl.new_user(name)
        else:  # only the default user can be there already
            user.apply(b"reset", acl.pubsub_default_all)
        for op in split_rules(words[1:]):
            try:
                user.apply(op, acl.pubsub_default_all)
            except AclError as err:
                raise ValueError(f"Error loading ACL rule '{op.decode('utf-8', 'replace')}' "
                                 f"for the user named '{name.decode('utf-8', 'replace')}': "
                                 f"{err.message}") from None
    if aclfile:
        from kvrepl.commands.acl import read_acl_file

        try:
            users = acl.load_lines(read_acl_file(aclfile), aclfile)
        except AclError as err:
            raise ValueError(f"Aborting Redis startup because of ACL errors: {err.message}"
                             ) from None
        acl.replace_users(users)


SUPERUSER = User(b"(superuser)")
SUPERUSER.apply(b"+@all")
SUPERUSER.apply(b"~*")
SUPERUSER.apply(b"&*")
SUPERUSER.apply(b"on")
SUPERUSER.apply(b"nopass")
"""The rights of a connection Redis gives no user (its master's link, the embedded API)."""
