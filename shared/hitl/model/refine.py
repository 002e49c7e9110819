"""The second stage: the window head's best windows re-scored and re-placed from crops at a fixed size.

On feature maps of the whole image a small object spans a cell or two, windows step by a whole grid
cell, and look-alikes share most of what a window sees. The refiner crops each of the best windows
with some context, resizes the crop so the object appears at a size the ImageNet backbone knows,
and runs one batched backbone pass over the crops: a multinomial logistic regression says which
label (or background) the crop holds, and a ridge regression moves the window onto the object.
This is the classic two-stage detector (R-CNN) on a frozen backbone with linear heads, so it trains
in seconds on CPU from a few images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from hitl.model.backbone import PAD_VALUE, Backbone

_FILL = tuple(int(v) for v in PAD_VALUE)
# Box moves are bounded: a window is a proposal near the object, not anywhere in the image.
_MAX_SHIFT = 0.5
_MAX_LOG_SCALE = 0.7


@dataclass(frozen=True)
class RefineConfig:
    enabled: bool = True
    proposals: int = 24  # at most this many windows per image go to the second stage ...
    proposal_floor: float = 0.05  # ... each scored at least this likely by the window head for some label
    crop: int = 112  # pixels per side of the crop fed to the backbone
    context: float = 0.25  # the crop is the window grown by this share of its size (half on each side)
    proposal_nms: float = 0.3  # windows overlapping a better one more than this are not proposed again
    jitter: int = 4  # shifted and rescaled copies of each true box added at training
    # Image variants (an image or its mirror) it learns from: a linear head saturates long before a
    # large dataset ends, and each variant costs a batched backbone pass over its crops.
    max_variants: int = 80
    regress_iou: float = 0.3  # proposals at least this close to a true box teach the box regression
    positive_iou: float = 0.5  # ... and at least this close count as that box's label
    c: float = 0.05  # inverse L2 regularisation of the classifier on standardised descriptors
    ridge: float = 50.0  # L2 penalty of the box regression on standardised descriptors


def regions(boxes: np.ndarray, context: float) -> np.ndarray:
    """Crop regions (N×4 corners, px) of boxes (N×4 corners, px): each grown by ``context``."""
    w = np.maximum(boxes[:, 2] - boxes[:, 0], 1.0)
    h = np.maximum(boxes[:, 3] - boxes[:, 1], 1.0)
    grow_w, grow_h = w * context / 2, h * context / 2
    return np.stack([boxes[:, 0] - grow_w, boxes[:, 1] - grow_h, boxes[:, 2] + grow_w, boxes[:, 3] + grow_h], axis=1)


def crops(image: np.ndarray, boxes: np.ndarray, cfg: RefineConfig) -> list[np.ndarray]:
    """Each box's region resized to crop×crop RGB; outside the image reads as the backbone's zero."""
    pil = Image.fromarray(image)
    size = (cfg.crop, cfg.crop)
    return [
        np.asarray(pil.transform(size, Image.Transform.EXTENT, tuple(float(v) for v in r),
                                 Image.Resampling.BILINEAR, fillcolor=_FILL))
        for r in regions(boxes, cfg.context)
    ]  # fmt: skip


def descriptors(backbone: Backbone, pieces: Sequence[np.ndarray]) -> np.ndarray:
    """N×D crop descriptors: the pooled last layers (what), and the stride-16 map pooled on a 3×3
    grid (where, for the box regression)."""
    if not pieces:
        return np.zeros((0, 0), np.float32)
    s16, s32, emb = backbone.crop_maps(pieces)
    n, c, h, w = s16.shape
    rows, cols = np.array_split(np.arange(h), 3), np.array_split(np.arange(w), 3)
    grid3 = np.stack(
        [s16[:, :, r[0] : r[-1] + 1, k[0] : k[-1] + 1].mean(axis=(2, 3)) for r in rows for k in cols], axis=2
    ).reshape(n, c * 9)
    return np.concatenate([emb.mean(axis=(2, 3)), s32.mean(axis=(2, 3)), grid3], axis=1).astype(np.float32)


def box_deltas(proposals: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(dx, dy, dw, dh) taking each proposal to its target (both N×4 corners): centre shifts in
    proposal widths/heights and log size ratios."""
    pw, ph = _sizes(proposals)
    tw, th = _sizes(targets)
    return np.stack(
        [
            ((targets[:, 0] + targets[:, 2]) - (proposals[:, 0] + proposals[:, 2])) / 2 / pw,
            ((targets[:, 1] + targets[:, 3]) - (proposals[:, 1] + proposals[:, 3])) / 2 / ph,
            np.log(tw / pw),
            np.log(th / ph),
        ],
        axis=1,
    )


def apply_deltas(boxes: np.ndarray, deltas: np.ndarray) -> np.ndarray:
    pw, ph = _sizes(boxes)
    d = np.clip(deltas, [-_MAX_SHIFT, -_MAX_SHIFT, -_MAX_LOG_SCALE, -_MAX_LOG_SCALE],
                [_MAX_SHIFT, _MAX_SHIFT, _MAX_LOG_SCALE, _MAX_LOG_SCALE])  # fmt: skip
    cx = (boxes[:, 0] + boxes[:, 2]) / 2 + d[:, 0] * pw
    cy = (boxes[:, 1] + boxes[:, 3]) / 2 + d[:, 1] * ph
    w, h = pw * np.exp(d[:, 2]), ph * np.exp(d[:, 3])
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def _sizes(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.maximum(boxes[:, 2] - boxes[:, 0], 1.0), np.maximum(boxes[:, 3] - boxes[:, 1], 1.0)


def jittered(boxes: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` copies of each true box (N×4), shifted by up to a fifth of its size and rescaled by
    up to ±25 %: the proposals a window head makes around an object."""
    if count <= 0 or not len(boxes):
        return np.zeros((0, 4))
    base = np.repeat(boxes, count, axis=0)
    d = np.column_stack([rng.uniform(-0.2, 0.2, (len(base), 2)), np.log(rng.uniform(0.8, 1.25, (len(base), 2)))])
    return apply_deltas(base, d)


@dataclass
class Refiner:
    """Arrays of a trained second stage, folded onto raw descriptors."""

    weights: np.ndarray  # (L+1)×D classifier, row 0 is background
    bias: np.ndarray  # L+1
    reg_weights: np.ndarray  # 4×D box regression
    reg_bias: np.ndarray  # 4
    config: RefineConfig

    def score(self, backbone: Backbone, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(label probabilities N×L without background, refined boxes N×4 px) for proposals (px)."""
        if not len(boxes):
            return np.zeros((0, len(self.bias) - 1)), np.zeros((0, 4))
        x = descriptors(backbone, crops(image, boxes, self.config)).astype(np.float64)
        probs = _Linear(self.weights, self.bias).probabilities(x)
        return probs, apply_deltas(boxes, x @ self.reg_weights.T + self.reg_bias)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"r_weights": self.weights, "r_bias": self.bias, "r_reg_weights": self.reg_weights,
                "r_reg_bias": self.reg_bias}  # fmt: skip


@dataclass(frozen=True)
class OutOfFold:
    """What the second stage says of crops of images it never saw: label probabilities (N×L) and
    box moves (N×4 deltas), each from models refitted without the crop's fold of images."""

    probs: np.ndarray
    deltas: np.ndarray


def out_of_fold(x: np.ndarray, y: np.ndarray, deltas: np.ndarray, regress: np.ndarray, groups: np.ndarray,
                rows: np.ndarray, n_labels: int, cfg: RefineConfig, folds: int = 3) -> OutOfFold | None:  # fmt: skip
    """The crops at ``rows`` scored and moved as an unseen image's would be: the classifier and the
    box regression refitted without each fold of images. Only the linear heads are refitted, so this
    costs a few regressions and no backbone pass. None with too few images."""
    images = np.unique(groups)
    if len(images) < folds + 1:
        return None
    rng = np.random.default_rng(len(images))
    fold_of = dict(zip(rng.permutation(images).tolist(), np.arange(len(images)) % folds, strict=True))
    fold = np.asarray([fold_of[int(g)] for g in groups])
    probs, moves = np.zeros((len(rows), n_labels)), np.zeros((len(rows), 4))
    for k in range(folds):
        held = fold[rows] == k
        if held.any():
            fit = fold != k
            probs[held] = _classifier(x[fit], y[fit], n_labels, cfg).probabilities(x[rows[held]])
            weights, bias = _box_regression(x[fit], deltas[fit], regress[fit], cfg)
            moves[held] = x[rows[held]] @ weights.T + bias
    return OutOfFold(probs, moves)


@dataclass
class _Linear:
    weights: np.ndarray
    bias: np.ndarray

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        logits = x @ self.weights.T + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        out: np.ndarray = (e / e.sum(axis=1, keepdims=True))[:, 1:]
        return out


def _classifier(x: np.ndarray, y: np.ndarray, n_labels: int, cfg: RefineConfig) -> _Linear:
    from sklearn.linear_model import LogisticRegression

    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-3
    z = (x - mean) / std
    coef = np.zeros((n_labels + 1, x.shape[1]))
    intercept = np.full(n_labels + 1, -30.0)  # a class without examples never wins
    present = np.unique(y)
    if len(present) >= 2:
        clf = LogisticRegression(C=cfg.c, max_iter=1000).fit(z, y)
        if len(present) == 2:
            coef[present[1]], intercept[present[1]] = clf.coef_[0] / 2, clf.intercept_[0] / 2
            coef[present[0]], intercept[present[0]] = -clf.coef_[0] / 2, -clf.intercept_[0] / 2
        else:
            coef[present], intercept[present] = clf.coef_, clf.intercept_
    else:
        intercept[present] = 0.0
    weights = coef / std
    return _Linear(weights, intercept - weights @ mean)


def _box_regression(x: np.ndarray, deltas: np.ndarray, regress: np.ndarray,
                    cfg: RefineConfig) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Ridge regression of box moves (4×D weights, 4 biases on raw descriptors), fitted on the rows
    where ``regress`` is set; no move with fewer than 8 of them."""
    from sklearn.linear_model import Ridge

    weights, bias = np.zeros((4, x.shape[1])), np.zeros(4)
    if regress.sum() >= 8:
        mean, std = x.mean(axis=0), x.std(axis=0) + 1e-3
        ridge = Ridge(alpha=cfg.ridge).fit(((x - mean) / std)[regress], deltas[regress])
        weights = ridge.coef_ / std
        bias = ridge.intercept_ - weights @ mean
    return weights, bias


def fit_refiner(x: np.ndarray, y: np.ndarray, deltas: np.ndarray, regress: np.ndarray, n_labels: int,
                cfg: RefineConfig) -> Refiner:  # fmt: skip
    """Fit on crop descriptors ``x`` (N×D) with classes ``y`` (0 background, 1..L labels), box
    targets ``deltas`` (N×4) used where ``regress`` is set."""
    classifier = _classifier(x, y, n_labels, cfg)
    reg_w, reg_b = _box_regression(x, deltas, regress, cfg)
    return Refiner(classifier.weights, classifier.bias, reg_w, reg_b, cfg)
