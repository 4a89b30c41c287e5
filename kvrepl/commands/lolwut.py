"""LOLWUT [VERSION v] [...] (Redis 7.0 ``lolwut.c``, ``lolwut5.c``, ``lolwut6.c``).

Redis 7.0.15 has no art of its own: without VERSION (or with one it has no piece for) it
answers "Redis ver. 7.0.15". VERSION 5 draws Georg Nees's *Schotter* (squares rotated and
shifted more and more at random down the rows: the first two rows are exact, the rest random
as in Redis) and VERSION 6 a random skyline, both computed as the C code does, in C's float
arithmetic where it matters for the pixels.
"""

from __future__ import annotations

import math
import random
import struct

from kvrepl.commands.args import parse_int
from kvrepl.commands.connection import REDIS_VERSION
from kvrepl.commands.core import Session, command
from kvrepl.protocol.replies import Verbatim

_RAND_MAX = 2147483647
_pack = struct.Struct("f")


def _f32(value: float) -> float:
    """``value`` rounded to a C float."""
    return _pack.unpack(_pack.pack(value))[0]


def _rand() -> int:
    return random.randint(0, _RAND_MAX)


class Canvas:
    """lwCanvas: a width x height grid of colours (0 = background)."""

    def __init__(self, width: int, height: int, color: int = 0) -> None:
        self.width = width
        self.height = height
        self.pixels = bytearray([color]) * (width * height)

    def draw(self, x: int, y: int, color: int) -> None:
        if 0 <= x < self.width and 0 <= y < self.height:
            self.pixels[x + y * self.width] = color

    def get(self, x: int, y: int) -> int:
        if 0 <= x < self.width and 0 <= y < self.height:
            return self.pixels[x + y * self.width]
        return 0

    def line(self, x1: int, y1: int, x2: int, y2: int, color: int) -> None:
        """lwDrawLine: Bresenham."""
        dx, dy = abs(x2 - x1), abs(y2 - y1)
        sx = 1 if x1 < x2 else -1
        sy = 1 if y1 < y2 else -1
        err = dx - dy
        while True:
            self.draw(x1, y1, color)
            if x1 == x2 and y1 == y2:
                return
            e2 = err * 2
            if e2 > -dy:
                err -= dy
                x1 += sx
            if e2 < dx:
                err += dx
                y1 += sy

    def square(self, x: int, y: int, size: float, angle: float, color: int) -> None:
        """lwDrawSquare: a square of side ``size`` centred on x, y, rotated by ``angle``."""
        size = _f32(_c_round(_f32(size / 1.4142135623)))
        k = _f32(math.pi / 4 + angle)
        px, py = [], []
        for _ in range(4):
            px.append(_c_round(math.sin(k) * size + x))
            py.append(_c_round(math.cos(k) * size + y))
            k = _f32(k + math.pi / 2)
        for j in range(4):
            self.line(px[j], py[j], px[(j + 1) % 4], py[(j + 1) % 4], color)


def _c_round(value: float) -> int:
    """C's round(): halves away from zero."""
    return int(math.floor(value + 0.5)) if value >= 0 else -int(math.floor(-value + 0.5))


def _braille(canvas: Canvas) -> str:
    """lolwut5's renderCanvas: 2x4 pixel groups as Braille characters."""
    rows = []
    get = canvas.get
    for y in range(0, canvas.height, 4):
        chars = []
        for x in range(0, canvas.width, 2):
            byte = (get(x, y) | get(x, y + 1) << 1 | get(x, y + 2) << 2 | get(x + 1, y) << 3
                    | get(x + 1, y + 1) << 4 | get(x + 1, y + 2) << 5 | get(x, y + 3) << 6
                    | get(x + 1, y + 3) << 7)
            chars.append(chr(0x2800 + byte))
        rows.append("".join(chars))
        if y != canvas.height - 1:
            rows.append("\n")
    return "".join(rows)


def schotter(cols: int, per_row: int, per_col: int) -> Canvas:
    """lwDrawSchotter."""
    width = cols * 2
    padding = 2 if width > 4 else 0
    side = _f32((width - padding * 2) / per_row)
    canvas = Canvas(width, int(_f32(_f32(side * per_col) + padding * 2)))
    half = _f32(side / 2)
    for y in range(per_col):
        for x in range(per_row):
            sx = int(_f32(_f32(_f32(x * side) + half) + padding))
            sy = int(_f32(_f32(_f32(y * side) + half) + padding))
            angle = 0.0
            if y > 1:
                r1, r2, r3 = (_f32(_f32(_f32(_f32(_rand()) / _f32(_RAND_MAX)) / per_col) * y)
                              for _ in range(3))
                if _rand() % 2:
                    r1 = -r1
                if _rand() % 2:
                    r2 = -r2
                if _rand() % 2:
                    r3 = -r3
                angle = r1
                sx = int(_f32(sx + _f32(_f32(r2 * side) / 3)))
                sy = int(_f32(sy + _f32(_f32(r3 * side) / 3)))
            canvas.square(sx, sy, side, angle, 1)
    return canvas


def _clamped(argv: list[bytes], index: int, default: int) -> int:
    value = parse_int(argv[index]) if len(argv) > index else default
    return min(max(value, 1), 1000)


def lolwut5(argv: list[bytes]) -> bytes:
    """LOLWUT VERSION 5 [cols] [squares per row] [squares per column]."""
    cols = _clamped(argv, 1, 66)
    per_row = min(max(parse_int(argv[2]) if len(argv) > 2 else 8, 1), 200)
    per_col = min(max(parse_int(argv[3]) if len(argv) > 3 else 12, 1), 200)
    text = _braille(schotter(cols, per_row, per_col))
    return (text + "\nGeorg Nees - schotter, plotter on paper, 1968. Redis ver. ").encode() \
        + REDIS_VERSION + b"\n"


def _skyscraper(canvas: Canvas, xoff: int, width: int, height: int, windows: bool,
                color: int) -> None:
    """generateSkyscraper."""
    start = canvas.height - 1
    end = start - height + 1
    for y in range(start, end - 1, -1):
        for x in range(xoff, xoff + width):
            if y == end and (x <= xoff + 1 or x >= xoff + width - 2):
                continue  # the roof is four pixels narrower
            pixel = color
            if windows and xoff + 1 < x < xoff + width - 2 and end + 1 < y < start - 1:
                relx, rely = x - (xoff + 1), y - (end + 1)
                if (relx // 2) % 2 and rely % 2:
                    pixel = 1 + _rand() % 2
                    while pixel == color:
                        pixel = 1 + _rand() % 2
                    if relx % 2:
                        pixel = canvas.get(x - 1, y)
            canvas.draw(x, y, pixel)


def skyline(canvas: Canvas) -> None:
    """generateSkyline: two grey layers without windows, then black ones with windows."""
    height = canvas.height
    for color in (2, 1):
        offset = -10
        while offset < canvas.width:
            offset += _rand() % 8
            width = 10 + _rand() % 9
            if color == 2:
                tall = height // 2 + (_rand() % height) // 2
            else:
                tall = height // 2 + (_rand() % height) // 3
            _skyscraper(canvas, offset, width, tall, False, color)
            offset += width // 2 if color == 2 else width + 1
    offset = -10
    while offset < canvas.width:
        offset += _rand() % 8
        width = 5 + _rand() % 14
        if width % 4:
            width += width % 3
        tall = height // 3 + (_rand() % height) // 2
        _skyscraper(canvas, offset, width, tall, True, 0)
        offset += width + 5


_COLORS = ("0;30;40m", "0;90;100m", "0;37;47m", "0;97;107m")


def lolwut6(argv: list[bytes]) -> bytes:
    """LOLWUT VERSION 6 [cols] [rows]."""
    cols = _clamped(argv, 1, 80)
    rows = _clamped(argv, 2, 20)
    canvas = Canvas(cols, rows, 3)
    skyline(canvas)
    lines = []
    for y in range(rows):
        lines.append("".join(f"\033[{_COLORS[canvas.get(x, y)]} \033[0m" for x in range(cols)))
    text = "\n".join(lines)
    return (text + "\nDedicated to the 8 bit game developers of past and present.\n"
            "Original 8 bit image from Plaguemon by hikikomori. Redis ver. ").encode() \
        + REDIS_VERSION + b"\n"


@command("lolwut")
def lolwut(s: Session, argv: list[bytes]) -> object:
    """LOLWUT [VERSION version] [version-specific arguments]."""
    version = REDIS_VERSION.decode()
    args = argv
    if len(argv) >= 3 and argv[1].lower() == b"version":
        # snprintf("%u.0.0", (unsigned int) ver): the low 32 bits, printed unsigned
        version = f"{parse_int(argv[2]) & 0xFFFFFFFF}.0.0"
        args = argv[2:]
    if (version[0] == "5" and version[1] == "." and version[2] != "9") or \
            (version[0] == "4" and version[1] == "." and version[2] == "9"):
        return Verbatim(lolwut5(args))
    if (version[0] == "6" and version[1] == "." and version[2] != "9") or \
            (version[0] == "5" and version[1] == "." and version[2] == "9"):
        return Verbatim(lolwut6(args))
    return Verbatim(b"Redis ver. " + REDIS_VERSION + b"\n")
