"""Argument parsing shared by every command family, strict the way Redis is strict.

Python's ``int()`` and ``float()`` accept ``" 1"``, ``"1_000"``, ``"+5"``, ``"nan"``; Redis's
readers do not, and error messages must match. Each reader here is named after the Redis
function it reproduces:

* :func:`string2ll` (``util.c``): the only integer reader (``getLongLongFromObject``);
  :func:`parse_int`, :func:`parse_range_int` and :func:`parse_positive_int` are its
  ``...OrReply`` forms.
* :func:`strtod`: glibc ``strtod`` over a whole string (value and ERANGE), the grammar every
  double reader shares; SORT and score ranges use it directly.
* :func:`string2d` (``getDoubleFromObject``): scores and weights (ZADD, ZINCRBY, WEIGHTS).
* :func:`string2ld` (``getLongDoubleFromObject``, ``strtold`` in 80-bit x87 long double):
  INCRBYFLOAT, HINCRBYFLOAT and blocking timeouts (:func:`parse_timeout`). Its values are
  exact fractions rounded by :func:`to_long_double`, so that :func:`long_double_add` prints
  what Redis prints.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from fractions import Fraction
from typing import TypeVar

from kvrepl.errors import (
    NOT_FLOAT,
    NOT_INTEGER,
    NOT_POSITIVE,
    SYNTAX,
    TIMEOUT_NEGATIVE,
    TIMEOUT_NOT_FLOAT,
    ReplyError,
)
from kvrepl.store.encoding import INT64_MAX, INT64_MIN, string2ll

T = TypeVar("T")
_MISSING = object()

# string2ll and the 64-bit bounds live with the encodings (an ``int`` string is one that
# string2ll reads); they are re-exported here for the command families.
__all__ = [
    "INT64_MAX", "INT64_MIN", "INT_MAX", "INT_MIN", "LONG_MAX", "MAX_LONG_DOUBLE_CHARS",
    "Options", "leading_flags", "long_double_add", "parse_choice",
    "parse_double", "parse_int", "parse_long_double", "parse_mpop", "parse_positive_int",
    "parse_range_int", "parse_timeout", "rank_range", "string2d", "string2ld", "string2ll",
    "strtod", "to_long_double",
]

LONG_MAX = INT64_MAX  # Redis's counts are C longs, 64-bit on the platforms it targets
INT_MIN, INT_MAX = -(1 << 31), (1 << 31) - 1  # C int (getIntFromObjectOrReply)

# -- integers ---------------------------------------------------------------------------------


def parse_int(arg: bytes, message: str = NOT_INTEGER) -> int:
    """``arg`` as a 64-bit integer (``getLongLongFromObjectOrReply``), or ReplyError."""
    value = string2ll(arg)
    if value is None:
        raise ReplyError(message)
    return value


def parse_range_int(arg: bytes, low: int, high: int, message: str | None = None) -> int:
    """``getRangeLongFromObjectOrReply``: an integer in ``[low, high]``. With ``message``,
    every failure answers it; without, Redis's two default messages."""
    value = string2ll(arg)
    if value is None:
        raise ReplyError(message or NOT_INTEGER)
    if value < low or value > high:
        raise ReplyError(
            message or f"ERR value is out of range, value must between {low} and {high}")
    return value


def parse_positive_int(arg: bytes, message: str = NOT_POSITIVE) -> int:
    """``getPositiveLongFromObjectOrReply``: an integer >= 0; ``message`` for every failure
    (its default stands for "not an integer" too, as in Redis)."""
    return parse_range_int(arg, 0, LONG_MAX, message)


def rank_range(start: int, end: int, size: int) -> tuple[int, int] | None:
    """An inclusive rank range as LRANGE, LTRIM, ZRANGE and ZREMRANGEBYRANK read it:
    negative ranks count from the end, the range is clipped to the collection; None when
    it selects nothing."""
    if start < 0:
        start += size
    if end < 0:
        end += size
    if start < 0:
        start = 0
    if start > end or start >= size:
        return None
    return start, min(end, size - 1)


# -- doubles ----------------------------------------------------------------------------------

_SPACE = b" \t\n\v\f\r"
# glibc strtod's grammar (strtold's too), as a whole string: a full match is strtod consuming
# all of it.
_STRTOD = re.compile(
    rb"[ \t\n\v\f\r]*(?P<sign>[+-]?)(?:"
    rb"(?P<inf>inf(?:inity)?)"
    rb"|(?P<nan>nan(?:\([0-9a-z_]*\))?)"
    rb"|0x(?P<hex>(?P<whole>[0-9a-f]*)(?:\.(?P<frac>[0-9a-f]*))?(?:p(?P<exp>[+-]?[0-9]+))?)"
    rb"|(?P<dec>(?P<digits>[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[+-]?[0-9]+)?)"
    rb")",
    re.IGNORECASE,
)
_NONZERO = re.compile(rb"[1-9a-fA-F]")
# Plain decimals short enough that strtod can neither overflow nor underflow on them: what
# clients send nearly always (scores, coordinates), read by float() with no grammar pass.
_PLAIN_DECIMAL = re.compile(rb"[+-]?[0-9]{1,17}(?:\.[0-9]{0,17})?")
_DBL_MIN = 2.2250738585072014e-308  # the smallest normal double


def decimal(arg: bytes, _float: type[float] = float) -> float | None:
    """:func:`string2d`'s value of ``arg`` where ``float()`` reads ``arg`` as strtod does;
    None where only :func:`string2d` can tell (an argument it may refuse, a hex float...).

    For a hot path (GEOADD's coordinates): no grammar pass, which costs more than
    ``float()`` itself. Both round correctly, so they agree on every decimal, exponent or
    not, that ``float()`` takes, but for what only ``float()`` takes or changes: blanks
    at either end (every byte up to 32 that float() does not refuse is one), ``_`` between
    digits, and values strtod reports as out of range (zero or infinite) or NaN, which
    the test of a finite non-zero value leaves to :func:`string2d`."""
    if arg and arg[0] > 32 < arg[-1] and 95 not in arg:  # 95: "_"
        try:
            value = _float(arg)
        except ValueError:
            return None
        if value != 0.0 and value - value == 0.0:  # not zero, infinite or NaN
            return value
    return None


def _hex_parts(match: re.Match[bytes]) -> tuple[int, int] | None:
    """A hex float's ``(mantissa, binary exponent)``; None when it has no digits."""
    whole, frac = match["whole"], match["frac"] or b""
    if not whole and not frac:
        return None
    return int(whole + frac or b"0", 16), int(match["exp"] or b"0") - 4 * len(frac)


def _exact(match: re.Match[bytes]) -> Fraction:
    """The exact (unsigned) value of a finite decimal or hex match."""
    if match["hex"] is not None:
        mantissa, shift = _hex_parts(match)  # type: ignore[misc]
        return mantissa * Fraction(2) ** shift
    return Fraction(Decimal(match["dec"].decode()))


def strtod(text: bytes) -> tuple[float, bool] | None:
    """``text`` as glibc's ``strtod`` reads it when it consumes all of it: ``(value, erange)``,
    or None. Leading whitespace, hex floats, ``inf``/``infinity`` and ``nan(...)`` pass.

    ``erange`` is strtod's ERANGE: overflow to infinity, or a result that underflowed (zero
    or subnormal, and inexact).
    """
    match = _STRTOD.fullmatch(text)
    if match is None:
        return None
    negative = match["sign"] == b"-"
    erange = False
    if match["inf"]:
        value = math.inf
    elif match["nan"]:
        value = math.nan
    else:
        if match["hex"] is not None:
            digits = (match["whole"] or b"") + (match["frac"] or b"")
            if not digits:
                return None
            try:
                value = float.fromhex(match["hex"].decode())  # correctly rounded, like glibc
            except OverflowError:
                value = math.inf
        else:
            value = float(match["dec"])
            digits = match["digits"]
        if value == math.inf:
            erange = True
        elif value < _DBL_MIN and _NONZERO.search(digits):  # zero or subnormal, from nonzero
            erange = value == 0 or Fraction(value) != _exact(match)
    return (-value if negative else value), erange


def string2d(arg: bytes) -> float | None:
    """``arg`` as Redis's ``string2d`` / ``getDoubleFromObject`` take it, or None.

    Hex floats and ``inf`` pass; empty strings, leading spaces, overflow, underflow to zero
    and NaN do not.
    """
    if not arg or arg[0] in _SPACE:
        return None
    if len(arg) < 36 and _PLAIN_DECIMAL.fullmatch(arg):
        return float(arg)
    parsed = strtod(arg)
    if parsed is None:
        return None
    value, erange = parsed
    if math.isnan(value) or (erange and (value == 0 or math.isinf(value))):
        return None
    return value


def parse_double(arg: bytes, message: str = NOT_FLOAT) -> float:
    """``getDoubleFromObjectOrReply``: :func:`string2d`, or ReplyError with ``message``."""
    value = string2d(arg)
    if value is None:
        raise ReplyError(message)
    return value


# x87 80-bit long double: 64-bit significand, exponents down to -16382 (subnormals to -16445).
MAX_LONG_DOUBLE_CHARS = 5 * 1024
# Values from here on round to infinity, and up to half the smallest subnormal to zero:
# strtold reports both as ERANGE and string2ld refuses them.
_LD_OVERFLOW = (2**64 - Fraction(1, 2)) * Fraction(2) ** 16320
_LD_UNDERFLOW = Fraction(1, 2**16446)


def to_long_double(value: Fraction) -> Fraction:
    """Round to the nearest x87 80-bit long double (64-bit significand, half to even)."""
    if value == 0:
        return value
    magnitude = abs(value)
    exponent = magnitude.numerator.bit_length() - magnitude.denominator.bit_length()
    if magnitude < Fraction(2) ** exponent:
        exponent -= 1
    if exponent > 16383:
        raise OverflowError
    scale = Fraction(2) ** (63 - exponent)
    rounded = round(magnitude * scale)  # round() on Fraction is half-to-even
    result = rounded / scale
    return result if value > 0 else -result


def string2ld(arg: bytes) -> Fraction | float | None:
    """``arg`` as Redis's ``string2ld`` (``getLongDoubleFromObject``) reads it: an exact
    Fraction rounded to a long double, ``±inf`` as a float, or None when Redis refuses it
    (empty, too long, leading space, trailing garbage, NaN, overflow, underflow to zero)."""
    if not arg or len(arg) >= MAX_LONG_DOUBLE_CHARS or arg[0] in _SPACE:
        return None
    match = _STRTOD.fullmatch(arg)
    if match is None or match["nan"]:
        return None
    negative = match["sign"] == b"-"
    if match["inf"]:
        return -math.inf if negative else math.inf
    # Screen absurd exponents before building an exact fraction of them.
    if match["hex"] is not None:
        parts = _hex_parts(match)
        if parts is None:
            return None
        mantissa, shift = parts
        if mantissa and not -16500 < shift + mantissa.bit_length() < 16400:
            return None
    else:
        decimal = Decimal(match["dec"].decode())
        if decimal and not -4960 < decimal.adjusted() < 4940:
            return None
    value = _exact(match)
    if value and not _LD_UNDERFLOW < value < _LD_OVERFLOW:
        return None
    value = to_long_double(value)
    return -value if negative else value


def parse_long_double(arg: bytes, message: str = NOT_FLOAT) -> Fraction | float:
    """``getLongDoubleFromObjectOrReply``: :func:`string2ld`, or ReplyError with ``message``."""
    value = string2ld(arg)
    if value is None:
        raise ReplyError(message)
    return value


def long_double_add(current: Fraction, increment: Fraction) -> bytes | None:
    """``current + increment`` as Redis's INCRBYFLOAT / HINCRBYFLOAT compute and print it.

    Redis adds in long double and prints ``%.17Lf`` with trailing zeros trimmed
    (``ld2string`` humanfriendly); emulating the 80-bit arithmetic exactly is what makes
    ``10.5 + 0.1`` print ``10.6`` here as it does there. None when the sum is not finite.
    """
    try:
        total = to_long_double(current + increment)
    except OverflowError:
        return None
    # Through Decimal, not str(int): results can have thousands of digits (1e4932 is a
    # valid long double), past Python's int-to-text limit.
    with localcontext() as context:
        context.prec = 6000
        exact = Decimal(total.numerator) / Decimal(total.denominator)
        text = format(exact.quantize(Decimal(1).scaleb(-17), rounding=ROUND_HALF_EVEN), "f")
    text = text.rstrip("0").rstrip(".")
    if text in ("-0", ""):
        text = "0"
    return text.encode()


def parse_timeout(arg: bytes, now_ms: int) -> float:
    """A blocking command's timeout in relative seconds (0 = forever), as
    ``getTimeoutFromObjectOrReply(..., UNIT_SECONDS)`` computes it.

    Redis takes ``(long long) ceill(seconds * 1000.0)`` in long double arithmetic (so -0.001
    rounds to -0.99999... ms and then up to 0, forever); an infinite or out of range product
    converts to LLONG_MIN on x86, "negative". A deadline beyond LLONG_MAX ms overflows in
    Redis and never fires, so it is forever here too.
    """
    value = parse_long_double(arg, TIMEOUT_NOT_FLOAT)
    if isinstance(value, float):  # infinite
        raise ReplyError(TIMEOUT_NEGATIVE)
    try:
        ms = math.ceil(to_long_double(value * 1000))
    except OverflowError:
        raise ReplyError(TIMEOUT_NEGATIVE) from None
    if ms < 0 or ms > INT64_MAX:
        raise ReplyError(TIMEOUT_NEGATIVE)
    if ms == 0 or ms + now_ms > INT64_MAX:
        return 0.0
    return ms / 1000


# -- options ----------------------------------------------------------------------------------


def parse_choice(arg: bytes, choices: Mapping[bytes, T]) -> T:
    """One of a fixed set of words (``choices`` keys, lowercase; the argument is matched
    case-insensitively), or ``syntax error``: LEFT|RIGHT, BEFORE|AFTER, SUM|MIN|MAX ..."""
    choice = choices.get(arg.lower(), _MISSING)
    if choice is _MISSING:
        raise ReplyError(SYNTAX)
    return choice  # type: ignore[return-value]


def leading_flags(argv: list[bytes], start: int, names: Collection[bytes]
                  ) -> tuple[set[bytes], int]:
    """The flag words among ``names`` (lowercase) that ``argv[start:]`` begins with, matched
    case-insensitively: ``(the set given, the index of the first other argument)``."""
    flags = set()
    i = start
    while i < len(argv):
        word = argv[i].lower()
        if word not in names:
            break
        flags.add(word)
        i += 1
    return flags, i


def parse_mpop(argv: list[bytes], numkeys_index: int, ends: Mapping[bytes, T]
               ) -> tuple[list[bytes], T, int]:
    """LMPOP / ZMPOP and their blocking forms (``lmpopGenericCommand``,
    ``zmpopGenericCommand``): ``(keys, end, count)``. ``ends`` maps the lowercase direction
    words (LEFT/RIGHT, MIN/MAX) to what the caller wants back."""
    numkeys = parse_range_int(argv[numkeys_index], 1, LONG_MAX,
                              "ERR numkeys should be greater than 0")
    where_index = numkeys_index + numkeys + 1
    if where_index >= len(argv):
        raise ReplyError(SYNTAX)
    end = parse_choice(argv[where_index], ends)
    count = -1
    j = where_index + 1
    while j < len(argv):
        if count == -1 and argv[j].lower() == b"count" and j + 1 < len(argv):
            j += 1
            count = parse_range_int(argv[j], 1, LONG_MAX, "ERR count should be greater than 0")
        else:
            raise ReplyError(SYNTAX)
        j += 1
    return argv[numkeys_index + 1:where_index], end, (1 if count == -1 else count)


class Options:
    """A tiny cursor over optional arguments: ``while opts: word = opts.next_word()``."""

    __slots__ = ("argv", "pos")

    def __init__(self, argv: list[bytes], start: int) -> None:
        self.argv = argv
        self.pos = start

    def __bool__(self) -> bool:
        return self.pos < len(self.argv)

    def next_word(self) -> bytes:
        """The next argument, lowercased, for matching option names."""
        word = self.argv[self.pos].lower()
        self.pos += 1
        return word

    def value(self) -> bytes:
        """The argument that follows an option; ``syntax error`` when there is none."""
        if self.pos >= len(self.argv):
            raise ReplyError(SYNTAX)
        arg = self.argv[self.pos]
        self.pos += 1
        return arg

    def int_value(self, message: str = NOT_INTEGER) -> int:
        return parse_int(self.value(), message)
