"""Reading training data: manifest files and the images their ``source-ref`` points at."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from PIL import Image

from hitl import aws
from hitl.domain.manifest_validation import ImageInfo

ImageLoader = Callable[[str], np.ndarray]


def decode_image(raw: bytes) -> tuple[np.ndarray, ImageInfo]:
    """PNG/JPEG bytes → (H×W×3 uint8 RGB, what validation needs to know about it)."""
    with Image.open(io.BytesIO(raw)) as im:
        fmt = (im.format or "").lower()
        rgb = np.asarray(im.convert("RGB"))
    return rgb, ImageInfo(width=rgb.shape[1], height=rgb.shape[0], format=fmt, size_bytes=len(raw))


def read_manifest(text: str) -> list[str]:
    """JSON Lines text → its non-blank lines (left as text: validation reports bad JSON per line)."""
    return [line for line in text.splitlines() if line.strip()]


def write_manifest(lines: Iterable[dict[str, Any] | str]) -> str:
    return "".join((x if isinstance(x, str) else json.dumps(x, separators=(",", ":"))) + "\n" for x in lines)


class S3Images:
    """Fetch and decode ``s3://`` images once each; also answers validation's size lookups."""

    def __init__(self, client: Any | None = None) -> None:
        self._client = client
        self._cache: dict[str, tuple[np.ndarray, ImageInfo]] = {}

    def _get(self, uri: str) -> tuple[np.ndarray, ImageInfo]:
        found = self._cache.get(uri)
        if found is None:
            bucket, key = aws.parse_s3_uri(uri)
            s3 = self._client or aws.client("s3")
            found = decode_image(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            self._cache[uri] = found
        return found

    def image(self, uri: str) -> np.ndarray:
        return self._get(uri)[0]

    def info(self, uri: str) -> ImageInfo | None:
        """None when the image cannot be read (validation then reports it by the line's own fields)."""
        try:
            return self._get(uri)[1]
        except Exception:  # noqa: BLE001 - unreadable or missing: the line's own checks still run
            return None
