"""Object-detection scenes: LFW faces (the label) and non-face patches (distractors) pasted onto
bundled photos at several sizes, with brightness, contrast, flip and noise jitter.

A scene is a pure function of (split, index, seed): the same call always returns the same pixels
and boxes, so the benchmark's test split is fixed and simulated reviewers can look up the truth.
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from hitl.domain.manifest import DetectionLine, detection_line
from hitl.scenes.sources import Split, backgrounds, faces, nonfaces

FACE_LABEL = "face"
DISTRACTOR_LABEL = "patch"
WIDTH, HEIGHT = 640, 480
MIN_SIDE, MAX_SIDE = 40, 150
DEFAULT_SOURCE_PREFIX = "s3://hitl-pipeline-local/scenes/"

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Scene:
    name: str
    image: np.ndarray  # H×W×3 uint8 RGB
    boxes: list[tuple[str, Box]] = field(default_factory=list)  # (label, (left, top, width, height))

    def png(self) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(self.image).save(buffer, format="PNG", compress_level=1)
        return buffer.getvalue()

    def manifest_line(self, source_ref: str, class_map: dict[str, str]) -> DetectionLine:
        height, width = self.image.shape[:2]
        return detection_line(source_ref, width, height, self.boxes, class_map, job_name=f"scenes/{self.name}")


def scene_name(split: Split, index: int, seed: int) -> str:
    return f"{split}-s{seed}-{index:05d}"


def _rng(split: Split, index: int, seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(split.encode()), index])


def _background(rng: np.random.Generator, split: Split, width: int, height: int) -> np.ndarray:
    photos = backgrounds(split)
    _, photo = photos[int(rng.integers(len(photos)))]
    ph, pw = photo.shape[:2]
    aspect = width / height
    # The largest crop with the output's aspect, then a random zoom into it.
    cw, ch = (pw, pw / aspect) if pw / ph <= aspect else (ph * aspect, ph)
    zoom = rng.uniform(0.55, 1.0)
    cw, ch = cw * zoom, ch * zoom
    x0 = rng.uniform(0, pw - cw)
    y0 = rng.uniform(0, ph - ch)
    crop = Image.fromarray(photo).resize((width, height), Image.Resampling.BILINEAR, box=(x0, y0, x0 + cw, y0 + ch))
    pixels = np.asarray(crop, dtype=np.float32) / 255.0
    if rng.random() < 0.5:
        pixels = pixels[:, ::-1]
    pixels = pixels * rng.uniform(0.8, 1.2) + rng.uniform(-0.08, 0.08)
    return pixels


def _patch(rng: np.random.Generator, grey: np.ndarray, side: int) -> np.ndarray:
    """A 25×25 grey source resized to side×side RGB with photometric jitter."""
    image = Image.fromarray((grey * 255).astype(np.uint8)).resize((side, side), Image.Resampling.BILINEAR)
    patch = np.asarray(image, dtype=np.float32) / 255.0
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    patch = (patch - 0.5) * rng.uniform(0.7, 1.3) + 0.5 + rng.uniform(-0.15, 0.15)
    tint = rng.uniform(0.9, 1.1, size=3).astype(np.float32)
    return patch[..., None] * tint


def _place(rng: np.random.Generator, taken: list[Box], side: int, width: int, height: int) -> Box | None:
    for _ in range(50):
        left = float(rng.integers(0, width - side + 1))
        top = float(rng.integers(0, height - side + 1))
        if all(
            left + side + 4 <= ol or ol + ow + 4 <= left or top + side + 4 <= ot or ot + oh + 4 <= top
            for ol, ot, ow, oh in taken
        ):
            return (left, top, float(side), float(side))
    return None


def generate_scene(
    split: Split,
    index: int,
    seed: int = 0,
    *,
    width: int = WIDTH,
    height: int = HEIGHT,
    distractor_label: str | None = None,
) -> Scene:
    """One scene with 1–3 faces and 0–3 distractors. ``distractor_label`` set: the distractors are
    labelled too (a second class, for multi-label runs); otherwise they are unlabelled clutter."""
    rng = _rng(split, index, seed)
    canvas = _background(rng, split, width, height)
    pools = [
        (FACE_LABEL, faces(split), int(rng.integers(1, 4))),
        (distractor_label, nonfaces(split), int(rng.integers(0, 4))),
    ]
    taken: list[Box] = []
    boxes: list[tuple[str, Box]] = []
    for label, pool, count in pools:
        for _ in range(count):
            side = round(float(np.exp(rng.uniform(np.log(MIN_SIDE), np.log(MAX_SIDE)))))
            box = _place(rng, taken, side, width, height)
            if box is None:
                continue
            patch = _patch(rng, pool[int(rng.integers(len(pool)))], side)
            left, top = int(box[0]), int(box[1])
            canvas[top : top + side, left : left + side] = patch
            taken.append(box)
            if label is not None:
                boxes.append((label, box))
    canvas = canvas + rng.normal(0.0, rng.uniform(0.0, 0.03), size=canvas.shape).astype(np.float32)
    image = (np.clip(canvas, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return Scene(name=scene_name(split, index, seed), image=image, boxes=boxes)


def class_map_for(distractor_label: str | None) -> dict[str, str]:
    return {"0": FACE_LABEL} if distractor_label is None else {"0": FACE_LABEL, "1": distractor_label}


def scene_examples(
    split: Split,
    n: int,
    seed: int = 0,
    *,
    source_prefix: str = DEFAULT_SOURCE_PREFIX,
    distractor_label: str | None = None,
) -> list[tuple[np.ndarray, DetectionLine]]:
    """``n`` scenes as (RGB image, manifest line) without encoding: for in-process training and tests."""
    cmap = class_map_for(distractor_label)
    out = []
    for index in range(n):
        scene = generate_scene(split, index, seed, distractor_label=distractor_label)
        out.append((scene.image, scene.manifest_line(f"{source_prefix}{scene.name}.png", cmap)))
    return out


def generate_scenes(
    split: Split,
    n: int,
    seed: int = 0,
    *,
    source_prefix: str = DEFAULT_SOURCE_PREFIX,
    distractor_label: str | None = None,
) -> list[tuple[bytes, dict[str, Any]]]:
    """``n`` scenes as (PNG bytes, manifest line object); ``source-ref`` = ``source_prefix + name.png``."""
    return [
        (_encode(image), line.to_dict())
        for image, line in scene_examples(
            split, n, seed, source_prefix=source_prefix, distractor_label=distractor_label
        )
    ]


def _encode(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
