"""List commands (Redis's ``t_list.c``): pushes, pops, ranges, LPOS, LMOVE and the blocking pops.

A list is a :class:`collections.deque` of bytes, so both ends are O(1); index access walks
from the nearer end, and range operations slice from the nearer end too. An empty list never
stays in the keyspace: whoever removes the last element deletes the key.

The blocking commands (BLPOP BRPOP BLMOVE BRPOPLPUSH BLMPOP) return :class:`Block` when
nothing can be served; the server runs the same handler again when a key they wait on is
created. A handler can tell that second run apart by ``session.blocked`` (the server's waiter)
and then behaves like Redis's ``serveClientBlockedOnList``: it serves from
``session.ready_key`` (the key that woke it) only, a key of another type leaves it waiting,
and BLMOVE propagates ``LMOVE ... left|right`` in lowercase. Inside MULTI nothing blocks:
BLPOP & co. answer a null array, BLMOVE and BRPOPLPUSH a null bulk (but a null array when
they time out), as Redis does.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from functools import partial
from itertools import compress, islice
from itertools import count as counter

from kvrepl.commands.args import (
    INT64_MAX,
    INT64_MIN,
    parse_choice,
    parse_int,
    parse_mpop,
    parse_positive_int,
    parse_timeout,
    rank_range,
)
from kvrepl.commands.core import Block, Session, command
from kvrepl.errors import NO_SUCH_KEY, OUT_OF_RANGE, SYNTAX, ReplyError, WrongTypeError, wrong_arity
from kvrepl.notify import GENERIC, LIST, notify, replied
from kvrepl.protocol.replies import NULL_ARRAY, OK, DeferredArray

LEFT = 0  # Redis's LIST_HEAD
RIGHT = 1  # Redis's LIST_TAIL

_RANK_ZERO = (
    "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... "
    "or use negative to start from the end of the list"
)


# -- helpers --------------------------------------------------------------------------------
def _list_or_none(s: Session, key: bytes) -> deque | None:
    """The list at ``key``, None when missing; WRONGTYPE for any other type."""
    value = s.db.lookup(key)
    if value is None or type(value) is deque:
        return value
    raise WrongTypeError()


_ENDS = {b"left": LEFT, b"right": RIGHT}


def _position(arg: bytes) -> int:
    """LEFT / RIGHT (case-insensitive), as ``getListPositionFromObjectOrReply``."""
    return parse_choice(arg, _ENDS)


def _position_word(where: int) -> bytes:
    """``shared.left`` / ``shared.right``: what a served blocked BLMOVE propagates."""
    return b"left" if where == LEFT else b"right"


def _range(lst: deque, start: int, end: int) -> list[bytes]:
    """Elements ``start..end`` (inclusive, negative from the end) as ``addListRangeReply``:
    walks from the nearer end of the deque."""
    llen = len(lst)
    span = rank_range(start, end, llen)
    if span is None:
        return []
    start, end = span
    if start <= llen - 1 - end:
        return list(islice(lst, start, end + 1))
    items = list(islice(reversed(lst), llen - 1 - end, llen - start))
    items.reverse()
    return items


def _removed(s: Session, key: bytes, lst: deque, count: int, event: bytes | None) -> None:
    """``listElementsRemoved``: fire ``event`` (when any), delete the key when empty and
    count the changes."""
    if event is not None:
        notify(s, LIST, event, key)
    if not lst:
        s.db.delete(key)
        notify(s, GENERIC, b"del", key)
    s.engine.dirty += count


_POP_EVENTS = {LEFT: b"lpop", RIGHT: b"rpop"}
_PUSH_EVENTS = {LEFT: b"lpush", RIGHT: b"rpush"}


def _pop_many(s: Session, key: bytes, lst: deque, where: int, count: int) -> list[bytes]:
    """Pop up to ``count`` elements from one end, in pop order; deletes an emptied key."""
    take = min(count, len(lst))
    if take == len(lst):  # the whole list: copy it in C rather than pop one by one
        items = list(lst) if where == LEFT else list(reversed(lst))
        lst.clear()
    else:
        pop = lst.popleft if where == LEFT else lst.pop
        items = [pop() for _ in range(take)]
    replied(s)
    _removed(s, key, lst, take, _POP_EVENTS[where])
    return items


def _propagate_pop_count(s: Session, key: bytes, where: int, popped: int) -> None:
    """LMPOP / BLMPOP replicate as ``[LR]POP key count``; of their keys only ``key``
    changed (for WATCH)."""
    s.engine.rewrite([b"LPOP" if where == LEFT else b"RPOP", key, b"%d" % popped])
    s.engine.watches.changed_only(s.db, key)


def _blocked(s: Session) -> bool:
    """True when the server re-runs this command for a client blocked on its keys."""
    return s.blocked is not None


def _candidate_keys(s: Session, keys: list[bytes]) -> list[bytes]:
    """The keys a blocking pop may serve from: all of them, or, when the server re-runs it
    for a waiting client and says which key became ready, only that key (Redis's
    ``serveClientBlockedOnList`` pops from the ready key, whatever the argument order)."""
    ready = s.ready_key
    if ready is not None and ready in keys:
        return [ready]
    return keys


def _deny_blocking(s: Session) -> bool:
    """CLIENT_DENY_BLOCKING: inside MULTI/EXEC (and for the master link) nothing blocks."""
    return s.in_exec or s.is_master


def _matches(lst: deque, element: bytes, from_tail: bool, scan: int) -> Iterator[int]:
    """Positions (counted from the scan's start) of ``element`` among the first ``scan``
    elements from the head, or from the tail; lazily."""
    if from_tail:
        # deque has no rindex: compare in C through map/compress over the reversed deque.
        return compress(counter(), map(element.__eq__, islice(reversed(lst), scan)))
    return _forward_matches(lst, element, min(scan, len(lst)))


def _forward_matches(lst: deque, element: bytes, stop: int) -> Iterator[int]:
    # deque.index compares in C and skips to ``start`` block by block.
    index = 0
    while True:
        try:
            index = lst.index(element, index, stop)
        except ValueError:
            return
        yield index
        index += 1


# -- push -----------------------------------------------------------------------------------
def _push(where: int, xx: bool, s: Session, argv: list[bytes]) -> int:
    """LPUSH / RPUSH key element [element ...]; LPUSHX / RPUSHX push only onto an existing
    list."""
    key = argv[1]
    lst = _list_or_none(s, key)
    if lst is None:
        if xx:
            return 0
        lst = deque()
        s.db.add(key, lst)
    if where == LEFT:
        lst.extendleft(argv[2:])
    else:
        lst.extend(argv[2:])
    replied(s)
    notify(s, LIST, _PUSH_EVENTS[where], key)
    s.engine.dirty += len(argv) - 2
    return len(lst)


command("lpush")(partial(_push, LEFT, False))
command("rpush")(partial(_push, RIGHT, False))
command("lpushx")(partial(_push, LEFT, True))
command("rpushx")(partial(_push, RIGHT, True))


@command("linsert")
def linsert(s: Session, argv: list[bytes]) -> int:
    """LINSERT key BEFORE|AFTER pivot element"""
    after = parse_choice(argv[2], {b"after": True, b"before": False})
    lst = _list_or_none(s, argv[1])
    if lst is None:
        return 0
    try:
        index = lst.index(argv[3])
    except ValueError:
        return -1
    lst.insert(index + 1 if after else index, argv[4])
    notify(s, LIST, b"linsert", argv[1])
    s.engine.dirty += 1
    return len(lst)


# -- read -----------------------------------------------------------------------------------
@command("llen")
def llen(s: Session, argv: list[bytes]) -> int:
    """LLEN key"""
    lst = _list_or_none(s, argv[1])
    return 0 if lst is None else len(lst)


@command("lindex")
def lindex(s: Session, argv: list[bytes]) -> bytes | None:
    """LINDEX key index (the key is checked before the index is parsed, as in Redis)."""
    lst = _list_or_none(s, argv[1])
    if lst is None:
        return None
    index = parse_int(argv[2])
    if index < 0:
        index += len(lst)
    if 0 <= index < len(lst):
        return lst[index]
    return None


@command("lrange")
def lrange(s: Session, argv: list[bytes]) -> list[bytes]:
    """LRANGE key start stop"""
    start = parse_int(argv[2])
    end = parse_int(argv[3])
    lst = _list_or_none(s, argv[1])
    if lst is None:
        return []
    return _range(lst, start, end)


@command("lpos")
def lpos(s: Session, argv: list[bytes]) -> object:
    """LPOS key element [RANK rank] [COUNT num-matches] [MAXLEN len]"""
    element = argv[2]
    rank, count, maxlen = 1, -1, 0  # count -1: the option was not given
    j = 3
    while j < len(argv):
        opt = argv[j].lower()
        more = j + 1 < len(argv)
        if opt == b"rank" and more:
            j += 1
            rank = parse_int(argv[j])
            if rank == 0:
                raise ReplyError(_RANK_ZERO)
        elif opt == b"count" and more:
            j += 1
            count = parse_positive_int(argv[j], "ERR COUNT can't be negative")
        elif opt == b"maxlen" and more:
            j += 1
            maxlen = parse_positive_int(argv[j], "ERR MAXLEN can't be negative")
        else:
            raise ReplyError(SYNTAX)
        j += 1

    lst = _list_or_none(s, argv[1])
    if lst is None:
        return [] if count != -1 else None

    llen = len(lst)
    from_tail = rank < 0
    # Redis negates RANK in a C long: LONG_MIN stays negative, so every match qualifies and
    # the COUNT test overflows and never stops the scan.
    wild = rank == INT64_MIN
    skip = 0 if wild else abs(rank) - 1
    positions = _matches(lst, element, from_tail, maxlen or llen)
    if count == -1:
        found = next(islice(positions, skip, None), None)
        if found is None:
            return None
        return llen - 1 - found if from_tail else found
    stop = None if count == 0 or wild else min(skip + count, INT64_MAX)
    matches = islice(positions, skip, stop)
    if from_tail:
        return DeferredArray([llen - 1 - i for i in matches])
    return DeferredArray(matches)


# -- write ----------------------------------------------------------------------------------
@command("lset")
def lset(s: Session, argv: list[bytes]) -> object:
    """LSET key index element"""
    lst = _list_or_none(s, argv[1])
    if lst is None:
        raise ReplyError(NO_SUCH_KEY)
    index = parse_int(argv[2])
    if index < 0:
        index += len(lst)
    if not 0 <= index < len(lst):
        raise ReplyError(OUT_OF_RANGE)
    lst[index] = argv[3]
    replied(s)
    notify(s, LIST, b"lset", argv[1])
    s.engine.dirty += 1
    return OK


@command("ltrim")
def ltrim(s: Session, argv: list[bytes]) -> object:
    """LTRIM key start stop"""
    start = parse_int(argv[2])
    end = parse_int(argv[3])
    key = argv[1]
    lst = _list_or_none(s, key)
    if lst is None:
        return OK
    llen = len(lst)
    span = rank_range(start, end, llen)
    if span is None:
        left, right = llen, 0
    else:
        start, end = span
        left, right = start, llen - end - 1
    removed = left + right
    if removed:
        kept = llen - removed
        if kept < removed:
            # Rebuilding from the kept slice costs less than popping the rest one by one.
            items = _range(lst, start, end) if kept else []
            lst.clear()
            lst.extend(items)
        else:
            for _ in range(left):
                lst.popleft()
            for _ in range(right):
                lst.pop()
    _removed(s, key, lst, removed, b"ltrim")
    return OK


@command("lrem")
def lrem(s: Session, argv: list[bytes]) -> int:
    """LREM key count element: remove the first |count| matches (from the tail if count < 0,
    all of them if 0)."""
    toremove = parse_int(argv[2])
    key, element = argv[1], argv[3]
    lst = _list_or_none(s, key)
    if lst is None:
        return 0
    llen = len(lst)
    if toremove in (0, INT64_MIN):
        # Every match goes (LONG_MIN too: its negation overflows in Redis).
        removed = lst.count(element)
        if removed > 16:
            kept = list(filter(element.__ne__, lst))
            lst.clear()
            lst.extend(kept)
            _removed(s, key, lst, removed, b"lrem" if removed else None)
            return removed
        toremove = removed
    from_tail = toremove < 0
    found = list(islice(_matches(lst, element, from_tail, llen), abs(toremove)))
    if from_tail:
        found = [llen - 1 - i for i in found]
    if len(found) <= 16:
        # A few deletions, each walking from the nearer end; highest index first so the
        # remaining indexes stay valid.
        for index in sorted(found, reverse=True):
            del lst[index]
    else:
        # Many: rebuild, copying the runs between removed positions in C.
        items: list[bytes] = []
        rest = iter(lst)
        previous = 0
        for index in sorted(found):
            items.extend(islice(rest, index - previous))
            next(rest)
            previous = index + 1
        items.extend(rest)
        lst.clear()
        lst.extend(items)
    _removed(s, key, lst, len(found), b"lrem" if found else None)
    return len(found)


# -- pop ------------------------------------------------------------------------------------
def _pop(where: int, s: Session, argv: list[bytes]) -> object:
    """LPOP / RPOP key [count]"""
    if len(argv) > 3:
        raise wrong_arity(argv[0].decode("utf-8", "replace").lower())
    has_count = len(argv) == 3
    count = parse_positive_int(argv[2]) if has_count else 0
    key = argv[1]
    lst = _list_or_none(s, key)
    if lst is None:
        return NULL_ARRAY if has_count else None
    if has_count:
        return _pop_many(s, key, lst, where, count) if count else []
    value = lst.popleft() if where == LEFT else lst.pop()
    replied(s)
    _removed(s, key, lst, 1, _POP_EVENTS[where])
    return value


command("lpop")(partial(_pop, LEFT))
command("rpop")(partial(_pop, RIGHT))


@command("lmpop")
def lmpop(s: Session, argv: list[bytes]) -> object:
    """LMPOP numkeys key [key ...] LEFT|RIGHT [COUNT count]"""
    keys, where, count = parse_mpop(argv, 1, _ENDS)
    for key in keys:
        lst = _list_or_none(s, key)
        if lst:
            items = _pop_many(s, key, lst, where, count)
            _propagate_pop_count(s, key, where, len(items))
            return [key, items]
    return NULL_ARRAY


# -- move -----------------------------------------------------------------------------------
def _move(s: Session, src: bytes, dst: bytes, wherefrom: int, whereto: int) -> bytes | None:
    """``lmoveGenericCommand``: pop from ``src``, push on ``dst``, reply with the element."""
    source = _list_or_none(s, src)
    if not source:
        return None
    target = _list_or_none(s, dst)  # looked up (and type checked) before popping
    value = source.popleft() if wherefrom == LEFT else source.pop()
    if target is None:
        target = deque()
        s.db.add(dst, target)
    if whereto == LEFT:
        target.appendleft(value)
    else:
        target.append(value)
    notify(s, LIST, _PUSH_EVENTS[whereto], dst)
    s.engine.watches.destination_first(s.db, src, dst)
    replied(s)
    notify(s, LIST, _POP_EVENTS[wherefrom], src)
    if not source:  # after the push: a list moved onto itself is never emptied
        s.db.delete(src)
        notify(s, GENERIC, b"del", src)
    s.engine.dirty += 1
    return value


@command("lmove")
def lmove(s: Session, argv: list[bytes]) -> bytes | None:
    """LMOVE source destination LEFT|RIGHT LEFT|RIGHT"""
    wherefrom = _position(argv[3])
    whereto = _position(argv[4])
    return _move(s, argv[1], argv[2], wherefrom, whereto)


@command("rpoplpush")
def rpoplpush(s: Session, argv: list[bytes]) -> bytes | None:
    """RPOPLPUSH source destination"""
    return _move(s, argv[1], argv[2], RIGHT, LEFT)


# -- blocking -------------------------------------------------------------------------------
def _blocking_pop(s: Session, keys: list[bytes], where: int, timeout: float,
                  count: int | None) -> object:
    """``blockingPopGenericCommand``: serve from the first non-empty list or block.

    ``count`` None is BLPOP/BRPOP (reply ``[key, element]``, propagated as ``[LR]POP key``);
    a number is BLMPOP (reply ``[key, [elements]]``, propagated as ``[LR]POP key count``).
    """
    blocked = _blocked(s)
    for key in _candidate_keys(s, keys):
        value = s.db.lookup(key)
        if value is None:
            continue
        if type(value) is not deque:
            if blocked:
                continue  # a waiting client is only served by a list
            raise WrongTypeError()
        if count is not None:
            items = _pop_many(s, key, value, where, count)
            _propagate_pop_count(s, key, where, len(items))
            return [key, items]
        element = value.popleft() if where == LEFT else value.pop()
        replied(s)
        _removed(s, key, value, 1, _POP_EVENTS[where])
        s.engine.rewrite([b"LPOP" if where == LEFT else b"RPOP", key])
        s.engine.watches.changed_only(s.db, key)  # the other keys were only looked at
        return [key, element]
    if _deny_blocking(s):
        return NULL_ARRAY
    return Block(keys=list(keys), timeout=timeout, timeout_reply=NULL_ARRAY)


def _bpop(where: int, s: Session, argv: list[bytes]) -> object:
    """BLPOP / BRPOP key [key ...] timeout"""
    timeout = parse_timeout(argv[-1], s.engine.keyspace.now_ms())
    return _blocking_pop(s, argv[1:-1], where, timeout, None)


command("blpop")(partial(_bpop, LEFT))
command("brpop")(partial(_bpop, RIGHT))


@command("blmpop")
def blmpop(s: Session, argv: list[bytes]) -> object:
    """BLMPOP timeout numkeys key [key ...] LEFT|RIGHT [COUNT count]"""
    keys, where, count = parse_mpop(argv, 2, _ENDS)
    timeout = parse_timeout(argv[1], s.engine.keyspace.now_ms())
    return _blocking_pop(s, keys, where, timeout, count)


def _blocking_move(s: Session, argv: list[bytes], wherefrom: int, whereto: int,
                   timeout: float, rpoplpush_: bool) -> object:
    """``blmoveGenericCommand``: LMOVE when the source has elements, otherwise block."""
    src, dst = argv[1], argv[2]
    source = s.db.lookup(src)
    if source is not None and type(source) is not deque:
        if not _blocked(s):
            raise WrongTypeError()
        source = None  # a waiting client is only served by a list
    if source is None:
        if _deny_blocking(s):
            return None  # Redis answers a null bulk here, but a null array on timeout
        return Block(keys=[src], timeout=timeout, timeout_reply=NULL_ARRAY)
    value = _move(s, src, dst, wherefrom, whereto)
    if value is not None:
        if rpoplpush_:
            s.engine.rewrite([b"RPOPLPUSH", src, dst])
        elif _blocked(s):
            s.engine.rewrite([b"LMOVE", src, dst, _position_word(wherefrom),
                              _position_word(whereto)])
        else:
            s.engine.rewrite([b"LMOVE", src, dst, argv[3], argv[4]])
    return value


@command("blmove")
def blmove(s: Session, argv: list[bytes]) -> object:
    """BLMOVE source destination LEFT|RIGHT LEFT|RIGHT timeout"""
    wherefrom = _position(argv[3])
    whereto = _position(argv[4])
    timeout = parse_timeout(argv[5], s.engine.keyspace.now_ms())
    return _blocking_move(s, argv, wherefrom, whereto, timeout, False)


@command("brpoplpush")
def brpoplpush(s: Session, argv: list[bytes]) -> object:
    """BRPOPLPUSH source destination timeout"""
    timeout = parse_timeout(argv[3], s.engine.keyspace.now_ms())
    return _blocking_move(s, argv, RIGHT, LEFT, timeout, True)
