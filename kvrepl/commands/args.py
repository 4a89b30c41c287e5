"""Argument parsing shared by every command family, strict the way Redis is strict.

Python's ``int()`` and ``float()`` accept ``" 1"``, ``"1_000"``, ``"+5"``, ``"nan"``; Redis's
``string2ll`` and ``strtod`` checks do not, and error messages must match.
"""

from __future__ import annotations

import math
import re
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from fractions import Fraction

from kvrepl.errors import NOT_FLOAT, NOT_INTEGER, ReplyError

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1

_INT_RE = re.compile(rb"(?:0|-?[1-9][0-9]*)\Z")
_FLOAT_RE = re.compile(
    rb"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity)\Z",
    re.IGNORECASE,
)


def to_int(arg: bytes) -> int | None:
    """``arg`` as a signed 64-bit integer (``string2ll`` rules), or None."""
    if len(arg) > 20 or not _INT_RE.match(arg):
        return None
    value = int(arg)
    if value < INT64_MIN or value > INT64_MAX:
        return None
    return value


def parse_int(arg: bytes, message: str = NOT_INTEGER) -> int:
    """``arg`` as a 64-bit integer, or ReplyError with ``message``."""
    value = to_int(arg)
    if value is None:
        raise ReplyError(message)
    return value


def to_float(arg: bytes) -> float | None:
    """``arg`` as a double (``strtod`` accepting what Redis accepts; never NaN), or None."""
    if not arg or len(arg) > 5000 or not _FLOAT_RE.match(arg):
        return None
    return float(arg)


def parse_float(arg: bytes, message: str = NOT_FLOAT) -> float:
    value = to_float(arg)
    if value is None:
        raise ReplyError(message)
    return value


def format_float(value: float) -> bytes:
    """A double as Redis stores it in a string value (INCRBYFLOAT, HINCRBYFLOAT).

    Redis prints with ``%.17Lf`` then trims trailing zeros (``ld2string`` humanfriendly);
    integral values in range print without a fraction.
    """
    if math.isinf(value):
        return b"inf" if value > 0 else b"-inf"
    text = b"%.17f" % value
    if b"." in text:
        text = text.rstrip(b"0").rstrip(b".")
    if text == b"-0":
        text = b"0"
    return text


def _to_long_double(value: Fraction) -> Fraction:
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


def long_double_add(current: bytes, increment: bytes) -> bytes | None:
    """``current + increment`` as Redis's INCRBYFLOAT computes and prints it.

    Redis parses both with ``strtold``, adds in long double and prints ``%.17Lf`` with
    trailing zeros trimmed; emulating the 80-bit arithmetic exactly is what makes
    ``10.5 + 0.1`` print ``10.6`` here as it does there. None when the result is not finite.
    """
    try:
        a = _to_long_double(Fraction(Decimal(current.decode())))
        b = _to_long_double(Fraction(Decimal(increment.decode())))
        total = _to_long_double(a + b)
    except (OverflowError, ArithmeticError, ValueError):
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


def is_integer_bytes(value: bytes) -> bool:
    """True when a string value would be stored with the ``int`` encoding by Redis."""
    return len(value) <= 20 and to_int(value) is not None


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
            raise ReplyError("ERR syntax error")
        arg = self.argv[self.pos]
        self.pos += 1
        return arg

    def int_value(self, message: str = NOT_INTEGER) -> int:
        return parse_int(self.value(), message)
