"""Reading training data: manifest files and the images their ``source-ref`` points at."""

from __future__ import annotations

import io
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar, overload

import numpy as np
from PIL import Image

from hitl import aws
from hitl.domain.manifest_validation import ImageInfo

ImageLoader = Callable[[str], np.ndarray]
T = TypeVar("T")
U = TypeVar("U")
# Decoded images an S3Images keeps (≈ 0.9 MB each at 640×480): a bound independent of the dataset's
# size, high enough that a set of a few hundred images is read once per run (each eviction costs an
# S3 read and a decode: at 64 kept, a 200-image run read 702 images and took 59 % longer).
DEFAULT_KEPT_IMAGES = 256


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
    """Fetch and decode ``s3://`` images on demand; also answers validation's size lookups.

    Only the ``keep`` most recently used decoded images stay in memory (a training set's pixels would
    otherwise grow with the dataset, and the trainer process keeps this object across runs); what
    validation needs to know about each image (size, format, bytes) is small and kept for every image.
    """

    def __init__(self, client: Any | None = None, keep: int = DEFAULT_KEPT_IMAGES) -> None:
        self._client = client
        self._keep = max(1, keep)
        self._pixels: OrderedDict[str, np.ndarray] = OrderedDict()
        self._infos: dict[str, ImageInfo] = {}
        self._lock = threading.Lock()
        self.fetches = 0  # S3 reads so far: what a smaller ``keep`` costs

    def _load(self, uri: str) -> tuple[np.ndarray, ImageInfo]:
        with self._lock:
            pixels = self._pixels.get(uri)
            if pixels is not None:
                self._pixels.move_to_end(uri)
                return pixels, self._infos[uri]
        bucket, key = aws.parse_s3_uri(uri)
        s3 = self._client or aws.client("s3")
        pixels, info = decode_image(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        with self._lock:
            self.fetches += 1
            self._infos[uri] = info
            self._pixels[uri] = pixels
            while len(self._pixels) > self._keep:
                self._pixels.popitem(last=False)
        return pixels, info

    def image(self, uri: str) -> np.ndarray:
        return self._load(uri)[0]

    def info(self, uri: str) -> ImageInfo | None:
        """None when the image cannot be read (validation then reports it by the line's own fields)."""
        found = self._infos.get(uri)
        if found is not None:
            return found
        try:
            return self._load(uri)[1]
        except Exception:  # noqa: BLE001 - unreadable or missing: the line's own checks still run
            return None

    def kept(self) -> int:
        """Decoded images held right now."""
        with self._lock:
            return len(self._pixels)


class Lazy(Sequence[U]):
    """``make(item)`` for each item, computed when indexed and never stored: a list of decoded
    images would hold every one of them at once."""

    def __init__(self, items: Sequence[T], make: Callable[[T], U]) -> None:
        self._items = items
        self._make = make

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> U: ...
    @overload
    def __getitem__(self, index: slice) -> Lazy[U]: ...
    def __getitem__(self, index: int | slice) -> U | Lazy[U]:
        if isinstance(index, slice):
            return Lazy(self._items[index], self._make)
        return self._make(self._items[index])

    def __iter__(self) -> Iterator[U]:
        for item in self._items:
            yield self._make(item)
