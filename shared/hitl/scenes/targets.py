"""Box targets beyond faces, for measuring the model on objects of other sizes, shapes and classes.

Each target pastes Fashion-MNIST items (Debian's ``dataset-fashion-mnist``; train scenes draw on its
60k training file, test scenes on its 10k test file) onto the same bundled photos as the face scenes
(disjoint per split). An item is cropped to its extent, resized to the target's size and shape, and
cut out by its own silhouette, so its box is the tight box around the visible object; look-alike
items of other classes are pasted as unlabelled distractors (for the two-label target: sandals, near
neighbours of both labels).

Like the face scenes, a scene is a pure function of (target, split, index, seed).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from hitl.domain.manifest import DetectionLine, detection_line
from hitl.scenes.detection import DEFAULT_SOURCE_PREFIX, HEIGHT, WIDTH, Box, Scene, _background, scene_examples
from hitl.scenes.sources import FASHION_MNIST_CLASSES, Split, fashion_mnist

FACES = "faces"


@dataclass(frozen=True)
class Target:
    """What a target's scenes hold: labelled classes, distractor classes, object size and shape.

    ``long_side`` bounds the object's longer side in pixels (log-uniform); ``aspect`` bounds
    height / width (log-uniform, so (3, 4) makes tall objects); ``objects`` / ``distractors`` bound
    how many of each a scene holds.
    """

    name: str
    labels: tuple[str, ...]
    distractors: tuple[str, ...]
    long_side: tuple[int, int]
    aspect: tuple[float, float]
    objects: tuple[int, int]
    distractor_count: tuple[int, int]
    description: str


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("small", ("bag",), ("pullover", "coat", "shirt"), (16, 32), (0.8, 1.25), (1, 5), (0, 5),
               "bags of 16–32 px among pullovers, coats and shirts of the same size"),
        Target("elongated", ("trouser",), ("dress", "coat"), (90, 220), (3.0, 4.0), (1, 3), (0, 3),
               "trousers stretched to height:width 3:1–4:1 among dresses and coats stretched alike"),
        Target("large", ("pullover",), ("coat", "shirt"), (420, 470), (0.8, 1.1), (1, 1), (0, 2),
               "one pullover covering ≥ 40 % of the image, sometimes with small coats and shirts"),
        Target("two-labels", ("sneaker", "ankle-boot"), ("sandal",), (40, 140), (0.8, 1.25), (1, 4), (0, 3),
               "sneakers and ankle boots (both labelled) among sandals that must not be boxed"),
    )
}  # fmt: skip


@lru_cache(maxsize=4)
def _class_members(split: Split) -> dict[str, np.ndarray]:
    _, labels = fashion_mnist(split)
    return {name: np.flatnonzero(labels == i) for i, name in enumerate(FASHION_MNIST_CLASSES)}


def _item(rng: np.random.Generator, split: Split, name: str, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """(RGB float patch, silhouette mask) of one item of a class resized to width×height."""
    images, _ = fashion_mnist(split)
    members = _class_members(split)[name]
    grey = images[int(members[int(rng.integers(len(members)))])]
    rows, cols = np.flatnonzero((grey > 10).any(axis=1)), np.flatnonzero((grey > 10).any(axis=0))
    if rows.size and cols.size:  # the item's own extent, so the requested size is the object's size
        grey = grey[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    resized = np.asarray(Image.fromarray(grey).resize((width, height), Image.Resampling.BILINEAR), np.float32) / 255
    mask = resized > 0.04
    if rng.random() < 0.5:
        resized, mask = resized[:, ::-1], mask[:, ::-1]
    tint = rng.uniform(0.6, 1.2, size=3).astype(np.float32)
    patch = np.clip((resized * rng.uniform(0.8, 1.2) + rng.uniform(-0.05, 0.1))[..., None] * tint, 0.0, 1.0)
    return patch, mask


def _free(taken: list[Box], box: Box, gap: float = 3.0) -> bool:
    left, top, w, h = box
    return all(
        left + w + gap <= ol or ol + ow + gap <= left or top + h + gap <= ot or ot + oh + gap <= top
        for ol, ot, ow, oh in taken
    )


def _size(rng: np.random.Generator, target: Target, width: int, height: int) -> tuple[int, int]:
    long_side = float(np.exp(rng.uniform(*np.log(target.long_side))))
    aspect = float(np.exp(rng.uniform(*np.log(target.aspect))))  # height / width
    w, h = (long_side, long_side * aspect) if aspect <= 1 else (long_side / aspect, long_side)
    return max(4, min(width - 2, round(w))), max(4, min(height - 2, round(h)))


def generate_target_scene(
    target: Target, split: Split, index: int, seed: int = 0, *, width: int = WIDTH, height: int = HEIGHT
) -> Scene:
    rng = np.random.default_rng([seed, zlib.crc32(f"{target.name}/{split}".encode()), index])
    canvas = _background(rng, split, width, height)
    wanted = [(str(rng.choice(target.labels)), True) for _ in range(int(rng.integers(*target.objects, endpoint=True)))]
    wanted += [
        (str(rng.choice(target.distractors)), False)
        for _ in range(int(rng.integers(*target.distractor_count, endpoint=True)))
    ]
    taken: list[Box] = []
    boxes: list[tuple[str, Box]] = []
    for name, labelled in wanted:
        if labelled:
            w, h = _size(rng, target, width, height)
        else:  # distractors of a large target stay small enough to fit beside it
            w, h = _size(rng, target if target.long_side[1] < 200 else TARGETS["two-labels"], width, height)
        for _ in range(50):
            box = (float(rng.integers(0, width - w + 1)), float(rng.integers(0, height - h + 1)), float(w), float(h))
            if _free(taken, box):
                break
        else:
            continue
        patch, mask = _item(rng, split, name, w, h)
        if not mask.any():
            continue
        left, top = int(box[0]), int(box[1])
        region = canvas[top : top + h, left : left + w]
        region[mask] = patch[mask]
        taken.append(box)
        if labelled:
            rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
            tight = (float(left + cols[0]), float(top + rows[0]), float(cols[-1] - cols[0] + 1),
                     float(rows[-1] - rows[0] + 1))  # fmt: skip
            boxes.append((name, tight))
    canvas = canvas + rng.normal(0.0, rng.uniform(0.0, 0.03), size=canvas.shape).astype(np.float32)
    image = (np.clip(canvas, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return Scene(name=f"{target.name}-{split}-s{seed}-{index:05d}", image=image, boxes=boxes)


def target_examples(
    name: str, split: Split, n: int, seed: int = 0, *, source_prefix: str = DEFAULT_SOURCE_PREFIX
) -> list[tuple[np.ndarray, DetectionLine]]:
    """``n`` scenes of a target (``"faces"`` or a key of :data:`TARGETS`) as (RGB image, manifest line)."""
    if name == FACES:
        return scene_examples(split, n, seed, source_prefix=source_prefix)
    target = TARGETS[name]
    class_map = {str(i): label for i, label in enumerate(target.labels)}
    out = []
    for index in range(n):
        scene = generate_target_scene(target, split, index, seed)
        height, width = scene.image.shape[:2]
        line = detection_line(
            f"{source_prefix}{scene.name}.png", width, height, scene.boxes, class_map, job_name=f"scenes/{scene.name}"
        )
        out.append((scene.image, line))
    return out
