"""The raw pixels the generators draw on, split so that train and test never share a source.

Everything here is bundled with scikit-image, scikit-learn or Debian's ``dataset-fashion-mnist``;
nothing is downloaded. Photos showing a real human face (``astronaut``, ``camera``) are left out of
the backgrounds: an unlabelled face there would count as a false positive.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
from skimage import data as skdata

Split = Literal["train", "test"]

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot",
)  # fmt: skip

DIGIT_CLASSES = tuple(str(d) for d in range(10))
# The last 60 images of each digit test; the rest (about 120 per digit) train.
_DIGITS_TEST = 60

# The lfw_subset array holds 100 faces then 100 non-face patches (25×25 grey, 0–1).
_LFW_FACES = slice(0, 100)
_LFW_NONFACES = slice(100, 200)
# First 70 of each kind train, the last 30 test.
_LFW_TRAIN = 70


def _sklearn_photo(name: str) -> np.ndarray:
    from sklearn.datasets import load_sample_image

    return np.asarray(load_sample_image(name))


_BACKGROUNDS: dict[Split, dict[str, Callable[[], np.ndarray]]] = {
    "train": {
        "chelsea": skdata.chelsea,
        "coffee": skdata.coffee,
        "rocket": skdata.rocket,
        "brick": skdata.brick,
        "grass": skdata.grass,
        "hubble": skdata.hubble_deep_field,
        "page": skdata.page,
        "coins": skdata.coins,
        "text": skdata.text,
        "ihc": skdata.immunohistochemistry,
        "motorcycle-left": lambda: skdata.stereo_motorcycle()[0],  # type: ignore[no-untyped-call]
        "motorcycle-right": lambda: skdata.stereo_motorcycle()[1],  # type: ignore[no-untyped-call]
    },
    "test": {
        "china": lambda: _sklearn_photo("china.jpg"),
        "flower": lambda: _sklearn_photo("flower.jpg"),
        "gravel": skdata.gravel,
        "retina": skdata.retina,
        "moon": skdata.moon,
        "cell": skdata.cell,
        "clock": skdata.clock,
        "colorwheel": skdata.colorwheel,
    },
}


def _rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    image = image[..., :3]
    if image.dtype != np.uint8:
        image = (np.clip(image, 0, 1) * 255).astype(np.uint8) if image.max() <= 1.0 else image.astype(np.uint8)
    return image


@lru_cache(maxsize=2)
def backgrounds(split: Split) -> tuple[tuple[str, np.ndarray], ...]:
    """(name, RGB uint8 photo) pairs for a split, in a fixed order."""
    return tuple((name, _rgb(load())) for name, load in _BACKGROUNDS[split].items())


@lru_cache(maxsize=1)
def _lfw() -> np.ndarray:
    return np.asarray(skdata.lfw_subset(), dtype=np.float32)  # type: ignore[no-untyped-call]


def faces(split: Split) -> np.ndarray:
    """25×25 grey faces (float 0–1) of a split."""
    block = _lfw()[_LFW_FACES]
    return block[:_LFW_TRAIN] if split == "train" else block[_LFW_TRAIN:]


def nonfaces(split: Split) -> np.ndarray:
    """25×25 grey non-face patches (float 0–1) of a split: the distractors."""
    block = _lfw()[_LFW_NONFACES]
    return block[:_LFW_TRAIN] if split == "train" else block[_LFW_TRAIN:]


def _idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        raw = fh.read()
    dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


@lru_cache(maxsize=2)
def fashion_mnist(split: Split) -> tuple[np.ndarray, np.ndarray]:
    """(images N×28×28 uint8, labels N) from Debian's package; train = its 60k, test = its 10k."""
    stem = "train" if split == "train" else "t10k"
    if not (FASHION_MNIST_DIR / f"{stem}-images-idx3-ubyte.gz").exists():
        raise FileNotFoundError(
            f"Fashion-MNIST not found under {FASHION_MNIST_DIR}: apt-get install dataset-fashion-mnist"
        )
    images = _idx(FASHION_MNIST_DIR / f"{stem}-images-idx3-ubyte.gz")
    labels = _idx(FASHION_MNIST_DIR / f"{stem}-labels-idx1-ubyte.gz")
    return images, labels


@lru_cache(maxsize=2)
def digits(split: Split) -> tuple[np.ndarray, np.ndarray]:
    """(images N×8×8 uint8, labels N): scikit-learn's bundled handwritten digits (1,797 images)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images * (255 / 16)).astype(np.uint8)
    labels = bunch.target.astype(np.uint8)
    test = np.zeros(len(labels), bool)
    for digit in range(10):
        test[np.flatnonzero(labels == digit)[-_DIGITS_TEST:]] = True
    chosen = test if split == "test" else ~test
    return images[chosen], labels[chosen]
