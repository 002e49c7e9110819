"""Checking and decoding submitted image bytes. No I/O: bytes in, pixels or a rejection out.

The pixel limit is checked from the header before any pixel is decoded, so a decompression bomb
costs a few bytes of parsing, not gigabytes of memory.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

SUPPORTED_FORMATS = {"PNG": "png", "JPEG": "jpg"}


class ImageRejected(Exception):
    """A submission that will never succeed; ``reason`` is a stable, countable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int
    max_pixels: int
    min_side: int
    max_side: int


@dataclass(frozen=True)
class DecodedImage:
    pixels: np.ndarray  # H×W×3 uint8 RGB
    width: int
    height: int
    format: str  # "png" | "jpg"


def content_id(data: bytes) -> str:
    """The stable image id: the content's SHA-256, so the same bytes are one image however sent."""
    return hashlib.sha256(data).hexdigest()


def sniff_extension(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpg"
    return None


def check_size(size: int, limits: ImageLimits) -> None:
    if size == 0:
        raise ImageRejected("empty", "the file has zero bytes")
    if size > limits.max_bytes:
        raise ImageRejected("too_large", f"{size} bytes exceeds the limit of {limits.max_bytes}")


def decode(data: bytes, limits: ImageLimits) -> DecodedImage:
    check_size(len(data), limits)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            fmt = image.format or ""
            width, height = image.size
    except Image.DecompressionBombError as exc:
        raise ImageRejected("too_many_pixels", str(exc)) from exc
    except Image.DecompressionBombWarning as exc:
        raise ImageRejected("too_many_pixels", str(exc)) from exc
    except UnidentifiedImageError as exc:
        raise ImageRejected("not_an_image", "the bytes are not a recognised image format") from exc
    if fmt not in SUPPORTED_FORMATS:
        raise ImageRejected("unsupported_format", f"{fmt or 'unknown'} is not supported; use PNG or JPEG")
    if width * height > limits.max_pixels:
        raise ImageRejected("too_many_pixels", f"{width}x{height} exceeds {limits.max_pixels} pixels")
    if min(width, height) < limits.min_side or max(width, height) > limits.max_side:
        raise ImageRejected(
            "bad_dimensions", f"{width}x{height}: each side must be {limits.min_side}-{limits.max_side} px"
        )
    try:
        # An RGB image is read as it is: convert() would copy every pixel once more for nothing.
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        pixels = np.asarray(rgb, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageRejected("corrupt", f"the {fmt} data cannot be decoded: {exc}") from exc
    return DecodedImage(pixels=pixels, width=width, height=height, format=SUPPORTED_FORMATS[fmt])
