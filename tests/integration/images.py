"""Image files for tests: distinct valid images and every kind of bad input."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def valid_image(seed: int, fmt: str = "PNG", size: tuple[int, int] = (160, 120)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def bomb_png(width: int = 50_000, height: int = 50_000) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


def bad_inputs() -> dict[str, tuple[str, bytes]]:
    """file name → (expected rejection reason, bytes)."""
    noisy = valid_image(999, "PNG", (300, 300))
    return {
        "notes.png": ("not_an_image", b"these are meeting notes, not pixels\n" * 20),
        "empty.jpg": ("empty", b""),
        "bomb.png": ("too_many_pixels", bomb_png()),
        "anim.png": ("unsupported_format", _gif()),
        "truncated.png": ("corrupt", noisy[: len(noisy) // 2]),
        "tiny.png": ("bad_dimensions", valid_image(7, "PNG", (20, 20))),
    }


def _gif() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (100, 100), (10, 20, 30)).save(buffer, format="GIF")
    return buffer.getvalue()


def write(directory: Path, files: dict[str, bytes]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (directory / name).write_bytes(data)
