"""Small, valid PNG images drawn from a prompt with the standard library only (no I/O)."""

from __future__ import annotations

import hashlib
import struct
import zlib
from typing import Final

_LONG_SIDE: Final = 128


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def dimensions(aspect_ratio: str | None) -> tuple[int, int]:
    """Width and height for an aspect ratio such as ``16:9``; square for None or ``auto``."""
    try:
        w_text, h_text = (aspect_ratio or "1:1").split(":")
        w, h = float(w_text), float(h_text)
    except ValueError:
        w, h = 1.0, 1.0
    if w <= 0 or h <= 0:
        w, h = 1.0, 1.0
    if w >= h:
        return _LONG_SIDE, max(1, round(_LONG_SIDE * h / w))
    return max(1, round(_LONG_SIDE * w / h)), _LONG_SIDE


def render(prompt: str, aspect_ratio: str | None) -> bytes:
    """A deterministic RGB PNG: a gradient and a disc whose colours come from the prompt."""
    width, height = dimensions(aspect_ratio)
    seed = hashlib.sha256(prompt.encode("utf-8")).digest()
    top, bottom, disc = seed[0:3], seed[3:6], seed[6:9]
    cx, cy = width * (0.3 + seed[9] / 640), height * (0.3 + seed[10] / 640)
    radius_sq = (min(width, height) * (0.2 + seed[11] / 1280)) ** 2
    rows = bytearray()
    for y in range(height):
        t = y / max(1, height - 1)
        base = bytes(round(top[i] * (1 - t) + bottom[i] * t) for i in range(3))
        rows.append(0)  # filter type: none
        for x in range(width):
            rows += disc if (x - cx) ** 2 + (y - cy) ** 2 <= radius_sq else base
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(bytes(rows), 6))
        + _chunk(b"IEND", b"")
    )
