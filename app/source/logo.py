"""The default logo, drawn in code: ``python -m app.source.logo`` writes ``app/static/logo.png``.

A 64x64 RGBA PNG made with ``zlib`` and ``struct`` only: a blue rounded square (the box), a
white sheet of paper going into a dark slot. Edges are anti-aliased by 4x4 supersampling. A
test checks that the committed file is exactly what :func:`draw` returns, so a newsroom's own
logo (``TIPBOX_LOGO``) is the only way to change it.
"""

from __future__ import annotations

import struct
import sys
import zlib
from pathlib import Path

SIZE = 64
SAMPLES = 4
BOX = (31, 78, 121)
PAPER = (255, 255, 255)
SLOT = (14, 36, 56)
TARGET = Path(__file__).resolve().parent.parent / "static" / "logo.png"

Colour = tuple[int, int, int]


def _in_rounded_square(x: float, y: float, low: float, high: float, radius: float) -> bool:
    cx = min(max(x, low + radius), high - radius)
    cy = min(max(y, low + radius), high - radius)
    return low <= x <= high and low <= y <= high and (x - cx) ** 2 + (y - cy) ** 2 <= radius**2


def _colour_at(x: float, y: float) -> Colour | None:
    """The colour at a point, or ``None`` for transparent."""
    if 22 <= x <= 42 and 6 <= y <= 30:
        return PAPER  # the sheet, sticking out above the box's slot
    if not _in_rounded_square(x, y, 4, 60, 10):
        return None
    if 14 <= x <= 50 and 27 <= y <= 33:
        return SLOT
    if 22 <= x <= 42 and 40 <= y <= 44:
        return PAPER  # a line under the slot, like a label
    return BOX


def _pixel(px: int, py: int) -> bytes:
    hits: list[Colour] = []
    for sy in range(SAMPLES):
        for sx in range(SAMPLES):
            colour = _colour_at(px + (sx + 0.5) / SAMPLES, py + (sy + 0.5) / SAMPLES)
            if colour is not None:
                hits.append(colour)
    if not hits:
        return bytes(4)
    rgb = [round(sum(c[i] for c in hits) / len(hits)) for i in range(3)]
    alpha = round(255 * len(hits) / SAMPLES**2)
    return bytes((*rgb, alpha))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def draw() -> bytes:
    """The logo as PNG bytes (deterministic)."""
    rows = b"".join(b"\x00" + b"".join(_pixel(x, y) for x in range(SIZE)) for y in range(SIZE))
    header = struct.pack(">IIBBBBB", SIZE, SIZE, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(rows, 9))
        + _chunk(b"IEND", b"")
    )


if __name__ == "__main__":
    TARGET.write_bytes(draw())
    sys.stdout.write(f"wrote {TARGET}\n")
