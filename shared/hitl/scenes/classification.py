"""Image-level label sets: LFW face / non-face, Fashion-MNIST and handwritten digits, with fixed,
disjoint splits."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from hitl.domain.manifest import ClassificationLine, classification_line
from hitl.scenes.sources import (
    DIGIT_CLASSES,
    FASHION_MNIST_CLASSES,
    Split,
    digits,
    faces,
    fashion_mnist,
    nonfaces,
)

DEFAULT_SOURCE_PREFIX = "s3://hitl-pipeline-local/image-sets/"
# Every Fashion-MNIST class by default; the test split takes a fixed number per class.
FASHION_TEST_PER_CLASS = 100


@dataclass(frozen=True)
class ImageSet:
    name: str
    images: list[np.ndarray]  # RGB uint8
    labels: list[str]
    classes: tuple[str, ...]

    def examples(self, source_prefix: str = DEFAULT_SOURCE_PREFIX) -> list[tuple[np.ndarray, ClassificationLine]]:
        ids = {name: i for i, name in enumerate(self.classes)}
        return [
            (image, classification_line(f"{source_prefix}{self.name}/{i:05d}.png", ids[label], label))
            for i, (image, label) in enumerate(zip(self.images, self.labels, strict=True))
        ]

    def files(self, source_prefix: str = DEFAULT_SOURCE_PREFIX) -> list[tuple[bytes, dict[str, Any]]]:
        """(PNG bytes, manifest line object) pairs."""
        return [(_png(image), line.to_dict()) for image, line in self.examples(source_prefix)]


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    if grey.dtype != np.uint8:
        grey = (np.clip(grey, 0, 1) * 255 + 0.5).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def _pick(rng: np.random.Generator, count: int, per_class: int | None) -> np.ndarray:
    if per_class is None or per_class >= count:
        return np.arange(count)
    return np.sort(rng.choice(count, size=per_class, replace=False))


def face_nonface_set(split: Split, per_class: int | None = None, seed: int = 0) -> ImageSet:
    """``per_class`` faces and non-faces of a split (70 each for train, 30 for test; None = all)."""
    rng = np.random.default_rng(seed)
    images: list[np.ndarray] = []
    labels: list[str] = []
    for label, pool in (("face", faces(split)), ("non-face", nonfaces(split))):
        for i in _pick(rng, len(pool), per_class):
            images.append(_grey_to_rgb(pool[i]))
            labels.append(label)
    return ImageSet(
        name=f"lfw-{split}-{per_class or 'all'}-s{seed}", images=images, labels=labels, classes=("face", "non-face")
    )


def fashion_mnist_set(
    split: Split, per_class: int | None = None, seed: int = 0, classes: Sequence[str] = FASHION_MNIST_CLASSES
) -> ImageSet:
    """``per_class`` images of each named class. The test split is fixed: the first
    ``FASHION_TEST_PER_CLASS`` images of each class in the official test file, whatever the seed."""
    images, labels = fashion_mnist(split)
    test_count = per_class or FASHION_TEST_PER_CLASS
    return _per_class_set("fashion", split, images, labels, FASHION_MNIST_CLASSES, classes, per_class, seed, test_count)


def digits_set(split: Split, per_class: int | None = None, seed: int = 0) -> ImageSet:
    """``per_class`` images of each digit (8×8, scikit-learn's); the test split is fixed (60 per digit)."""
    images, labels = digits(split)
    return _per_class_set("digits", split, images, labels, DIGIT_CLASSES, DIGIT_CLASSES, per_class, seed, None)


def _per_class_set(
    prefix: str,
    split: Split,
    all_images: np.ndarray,
    all_labels: np.ndarray,
    all_classes: Sequence[str],
    classes: Sequence[str],
    per_class: int | None,
    seed: int,
    test_count: int | None,
) -> ImageSet:
    """The named ``classes`` of a grey image set whose labels index ``all_classes``: ``per_class``
    random images of each for training, the first ``test_count`` (None: all) for test."""
    rng = np.random.default_rng(seed)
    images: list[np.ndarray] = []
    labels: list[str] = []
    for name in classes:
        members = np.flatnonzero(all_labels == all_classes.index(name))
        chosen = members[:test_count] if split == "test" else members[_pick(rng, len(members), per_class)]
        images.extend(_grey_to_rgb(all_images[i]) for i in chosen)
        labels.extend([name] * len(chosen))
    return ImageSet(
        name=f"{prefix}-{split}-{per_class or 'all'}-s{seed}", images=images, labels=labels, classes=tuple(classes)
    )
