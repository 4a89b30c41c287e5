"""ACL: SETUSER GETUSER DELUSER USERS LIST WHOAMI CAT GENPASS LOG DRYRUN LOAD SAVE HELP.

Redis 7.0 ``acl.c`` (aclCommand). The users and the checks live in :mod:`kvrepl.acl`; this
module is the command surface and what a change to users does to connected clients.
"""

from __future__ import annotations

import os
import secrets
import time

from kvrepl import acl as acl_rules
from kvrepl.commands.args import parse_int
from kvrepl.commands.core import Session, command
from kvrepl.commands.help import help_reply, subcommand_syntax_error
from kvrepl.commands.spec import ACL_CATEGORIES, lookup
from kvrepl.errors import ReplyError
from kvrepl.protocol.replies import OK as OK_REPLY
from kvrepl.protocol.replies import DeferredArray, DeferredMap, DeferredSet

_GENPASS_MAX_BITS = 4096
_NO_FILE = (
    "ERR This Redis instance is not configured to use an ACL file. You may want to specify "
    "users via the ACL SETUSER command and then issue a CONFIG REWRITE (assuming you have a "
    "Redis configuration file set) in order to store users in the Redis configuration.")

_HELP = [
    "CAT [<category>]",
    "    List all commands that belong to <category>, or all command categories",
    "    when no category is specified.",
    "DELUSER <username> [<username> ...]",
    "    Delete a list of users.",
    "DRYRUN <username> <command> [<arg> ...]",
    "    Returns whether the user can execute the given command without executing the "
    "command.",
    "GETUSER <username>",
    "    Get the user's details.",
    "GENPASS [<bits>]",
    "    Generate a secure 256-bit user password. The optional `bits` argument can",
    "    be used to specify a different size.",
    "LIST",
    "    Show users details in config file format.",
    "LOAD",
    "    Reload users from the ACL file.",
    "LOG [<count> | RESET]",
    "    Show the ACL log entries.",
    "SAVE",
    "    Save the current config to the ACL file.",
    "SETUSER <username> <attribute> [<attribute> ...]",
    "    Create or modify a user with the specified attributes.",
    "USERS",
    "    List all the registered usernames.",
    "WHOAMI",
    "    Return the current connection username.",
]


def _drop_clients(s: Session, users: list[acl_rules.User]) -> None:
    """ACLFreeUserAndKillClients: the clients of ``users`` are logged out and closed (the
    caller after its reply)."""
    from kvrepl.commands.client import kill_session

    engine = s.engine
    gone = {id(u) for u in users}
    for target in list(engine.sessions.values()):
        if id(target.user) in gone:
            target.user = engine.acl.default
            target.authenticated = False
            if target is s:
                s.closing = True
            else:
                kill_session(target)


def _kill_pubsub_if_needed(s: Session, user: acl_rules.User, before: acl_rules.User) -> None:
    """ACLKillPubsubClientsIfNeeded: subscribers of ``user`` whose channels the new rules
    no longer allow are closed."""
    from kvrepl.commands.client import kill_session

    if any(sel.allchannels for sel in user.selectors):
        return
    upcoming = [c for sel in user.selectors for c in sel.channels]
    if not any(sel.allchannels for sel in before.selectors) and all(
            c in upcoming for sel in before.selectors for c in sel.channels):
        return
    probe = acl_rules.User(b"")
    probe.selectors[0].channels = upcoming
    for target in list(s.engine.sessions.values()):
        if target.user is not user or not (target.channels or target.patterns
                                           or target.shard_channels):
            continue
        if any(p not in upcoming for p in target.patterns) or not all(
                probe.channel_allowed(c, False)
                for c in (*target.channels, *target.shard_channels)):
            if target is s:
                s.closing = True
            else:
                kill_session(target)


@command("acl|setuser")
def acl_setuser(s: Session, argv: list[bytes]) -> object:
    """ACL SETUSER username [rule ...]: all the rules apply, or none."""
    name = argv[2]
    if acl_rules.has_spaces(name):
        raise ReplyError("ERR Usernames can't contain spaces or null characters")
    try:
        user, before = s.engine.acl.set_user(name, argv[3:])
    except acl_rules.AclError as err:
        raise ReplyError("ERR " + err.message) from None
    if before is not None:
        _kill_pubsub_if_needed(s, user, before)
    return OK_REPLY


@command("acl|deluser")
def acl_deluser(s: Session, argv: list[bytes]) -> object:
    """ACL DELUSER username [username ...]: how many existed; their clients are closed."""
    acl = s.engine.acl
    if b"default" in argv[2:]:
        raise ReplyError("ERR The 'default' user cannot be removed")
    deleted = [acl.users.pop(name) for name in dict.fromkeys(argv[2:]) if name in acl.users]
    _drop_clients(s, deleted)
    return len(deleted)


def _selector_map(fields: list[object]) -> dict[bytes, object]:
    return dict(zip(fields[::2], fields[1::2], strict=True))


@command("acl|getuser")
def acl_getuser(s: Session, argv: list[bytes]) -> object:
    """ACL GETUSER username: flags, password hashes, the root selector, the selectors (the
    lengths of the map, the flags and each selector's map set after them)."""
    user = s.engine.acl.users.get(argv[2])
    if user is None:
        return None
    reply = DeferredMap({
        b"flags": DeferredSet(user.flags()),
        b"passwords": [p.encode() for p in user.passwords],
    })
    reply.update(_selector_map(user.root.getuser_fields()))
    reply[b"selectors"] = [DeferredMap(_selector_map(sel.getuser_fields()))
                           for sel in user.selectors[1:]]
    return reply


@command("acl|users")
def acl_users(s: Session, argv: list[bytes]) -> object:
    return [u.name for u in s.engine.acl.sorted_users()]


@command("acl|list")
def acl_list(s: Session, argv: list[bytes]) -> object:
    """ACL LIST: each user as its ``user`` line."""
    return [b"user " + u.name + b" " + u.describe() for u in s.engine.acl.sorted_users()]


@command("acl|whoami")
def acl_whoami(s: Session, argv: list[bytes]) -> object:
    return None if s.user.name == b"(superuser)" else s.user.name


@command("acl|cat")
def acl_cat(s: Session, argv: list[bytes]) -> object:
    """ACL CAT [category]: the categories, or the commands (subcommands too) in one (the
    length set after them)."""
    if len(argv) > 3:  # aclCommand matches "cat" with 2 or 3 arguments only
        raise subcommand_syntax_error(argv)
    if len(argv) == 2:
        return DeferredArray(c.encode() for c in ACL_CATEGORIES)
    members = acl_rules.acl_table().categories.get(argv[2].decode("latin-1").lower())
    if members is None:
        raise ReplyError(f"ERR Unknown category '{argv[2].decode('utf-8', 'replace')[:128]}'")
    return DeferredArray(name.encode() for name in acl_rules.acl_table().specs
                         if name in members)


@command("acl|genpass")
def acl_genpass(s: Session, argv: list[bytes]) -> object:
    """ACL GENPASS [bits]: random hex, 256 bits unless asked."""
    if len(argv) > 3:  # aclCommand matches "genpass" with 2 or 3 arguments only
        raise subcommand_syntax_error(argv)
    bits = parse_int(argv[2]) if len(argv) == 3 else 256
    if bits <= 0 or bits > _GENPASS_MAX_BITS:
        raise ReplyError("ERR ACL GENPASS argument must be the number of bits for the output "
                         f"password, a positive number up to {_GENPASS_MAX_BITS}")
    chars = (bits + 3) // 4
    return secrets.token_hex((chars + 1) // 2)[:chars].encode()


@command("acl|log")
def acl_log(s: Session, argv: list[bytes]) -> object:
    """ACL LOG [count | RESET]: the newest entries first."""
    if len(argv) > 3:  # aclCommand matches "log" with 2 or 3 arguments only
        raise subcommand_syntax_error(argv)
    acl = s.engine.acl
    count = 10
    if len(argv) == 3:
        if argv[2].lower() == b"reset":
            acl.log.clear()
            return OK_REPLY
        count = max(parse_int(argv[2]), 0)
    now = int(time.time() * 1000)
    return [entry.reply(now) for entry in list(acl.log)[:count]]


@command("acl|dryrun")
def acl_dryrun(s: Session, argv: list[bytes]) -> object:
    """ACL DRYRUN username command [arg ...]: OK or why the user may not run it."""
    user = s.engine.acl.users.get(argv[2])
    if user is None:
        raise ReplyError(f"ERR User '{argv[2].decode('utf-8', 'replace')}' not found")
    args = argv[3:]
    spec = lookup(args)
    if spec is None:
        raise ReplyError(f"ERR Command '{args[0].decode('utf-8', 'replace')}' not found")
    if (spec.arity > 0 and spec.arity != len(args)) or len(args) < -spec.arity:
        raise ReplyError(f"ERR wrong number of arguments for '{spec.name}' command")
    result, index = user.check(spec, args)
    if result == acl_rules.OK:
        return OK_REPLY
    if result == acl_rules.DENIED_CMD:
        return f"This user has no permissions to run the '{spec.name}' command".encode()
    kind = {acl_rules.DENIED_KEY: b"key", acl_rules.DENIED_CHANNEL: b"channel"}[result]
    return b"This user has no permissions to access the '" + args[index] + b"' " + kind


def read_acl_file(path: str) -> list[tuple[int, list[bytes]]]:
    """An ACL file's lines, numbered, split on spaces as ACLLoadFromFile splits them;
    AclError with Redis's message when it cannot be read."""
    try:
        with open(path, "rb") as f:
            text = f.read()
    except OSError as err:
        raise acl_rules.AclError(f"Error loading ACLs, opening file '{path}': "
                       f"{os.strerror(err.errno or 0)}") from None
    return [(number, [w for w in line.strip(b" \t\r\n").split(b" ") if w])
            for number, line in enumerate(text.split(b"\n"), 1)]


@command("acl|load")
def acl_load(s: Session, argv: list[bytes]) -> object:
    """ACL LOAD: the ACL file replaces every user, or nothing changes."""
    engine = s.engine
    path = engine.config.aclfile
    if not path:
        raise ReplyError(_NO_FILE)
    try:
        users = engine.acl.load_lines(read_acl_file(path), path)
    except acl_rules.AclError as err:
        raise ReplyError("ERR " + err.message) from None
    _drop_clients(s, engine.acl.replace_users(users))
    return OK_REPLY


@command("acl|save")
def acl_save(s: Session, argv: list[bytes]) -> object:
    """ACL SAVE: every user to the ACL file, written whole then renamed into place."""
    engine = s.engine
    path = engine.config.aclfile
    if not path:
        raise ReplyError(_NO_FILE)
    tmp = f"{path}.tmp-{os.getpid()}-{int(time.time() * 1000)}"
    try:
        with open(tmp, "wb") as f:
            f.write(engine.acl.file_text())
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise ReplyError("ERR There was an error trying to save the ACLs. Please check the "
                         "server logs for more information") from None
    return OK_REPLY


@command("acl|help")
def acl_help(s: Session, argv: list[bytes]) -> object:
    return help_reply(argv, _HELP)
