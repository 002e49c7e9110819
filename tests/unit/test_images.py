from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from hitl.domain.images import ImageLimits, ImageRejected, content_id, decode, sniff_extension

LIMITS = ImageLimits(max_bytes=1_000_000, max_pixels=2000 * 2000, min_side=64, max_side=4096)


def encoded(fmt: str, size: tuple[int, int] = (120, 80)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((size[1], size[0], 3), 128, dtype=np.uint8)).save(buffer, format=fmt)
    return buffer.getvalue()


def png_header_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge canvas: a decompression bomb's signature."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")
    )


def reason(data: bytes, limits: ImageLimits = LIMITS) -> str:
    with pytest.raises(ImageRejected) as info:
        decode(data, limits)
    return info.value.reason


def test_png_and_jpeg_decode_to_rgb() -> None:
    for fmt, ext in (("PNG", "png"), ("JPEG", "jpg")):
        image = decode(encoded(fmt), LIMITS)
        assert (image.width, image.height, image.format) == (120, 80, ext)
        assert image.pixels.shape == (80, 120, 3)
        assert image.pixels.dtype == np.uint8


def test_zero_bytes() -> None:
    assert reason(b"") == "empty"


def test_not_an_image() -> None:
    assert reason(b"%PDF-1.7 this is a document") == "not_an_image"


def test_unsupported_format() -> None:
    assert reason(encoded("GIF")) == "unsupported_format"
    assert reason(encoded("BMP")) == "unsupported_format"


def test_over_the_byte_limit() -> None:
    assert reason(encoded("PNG"), ImageLimits(100, 10**8, 1, 10**5)) == "too_large"


def test_decompression_bomb_is_refused_from_its_header() -> None:
    assert reason(png_header_claiming(60_000, 60_000)) == "too_many_pixels"
    assert reason(png_header_claiming(3000, 3000)) == "too_many_pixels"


def test_sides_outside_the_allowed_range() -> None:
    assert reason(encoded("PNG", (32, 200))) == "bad_dimensions"


def test_truncated_image_is_corrupt() -> None:
    data = encoded("PNG", (300, 300))
    noisy = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (300, 300, 3), dtype=np.uint8)).save(noisy, "PNG")
    assert reason(noisy.getvalue()[: len(noisy.getvalue()) // 2]) == "corrupt"
    assert len(data) > 0


def test_content_id_is_stable_and_content_based() -> None:
    data = encoded("PNG")
    assert content_id(data) == content_id(bytes(data))
    assert content_id(data) != content_id(encoded("JPEG"))
    assert len(content_id(data)) == 64


def test_sniff_extension() -> None:
    assert sniff_extension(encoded("PNG")) == "png"
    assert sniff_extension(encoded("JPEG")) == "jpg"
    assert sniff_extension(b"GIF89a") is None
