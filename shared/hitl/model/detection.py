"""The box head: linear classifiers over pooled window descriptors, trained with hard-negative mining,
whose best windows a second stage (:mod:`hitl.model.refine`) re-scores and re-places from crops.

Training samples, per image and its mirror: the windows best aligned with each labelled box
(positives), windows overlapping a box only partly (so scores peak on the aligned window) and
background windows, then the background windows the first model scores highest (hard negatives).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from hitl.domain.records import PixelBox, Prediction
from hitl.model import grid
from hitl.model.backbone import Backbone, FeatureMaps
from hitl.model.calibration import Calibration, fit_platt
from hitl.model.evaluation import Truth, scored_candidates
from hitl.model.refine import (
    RefineConfig,
    Refiner,
    apply_deltas,
    box_deltas,
    crops,
    descriptors,
    fit_refiner,
    jittered,
    out_of_fold,
)

if TYPE_CHECKING:
    from sklearn.linear_model import LogisticRegression

BACKGROUND = -1
MAX_SCALES = 16


@dataclass(frozen=True)
class DetectionConfig:
    long_side: int = 640  # images are resized so their long side is this many pixels
    positive_iou: float = 0.6
    negative_iou: float = 0.3
    positives_per_box: int = 6
    partial_negatives_per_box: int = 6
    random_negatives: int = 60  # per image (and per mirror)
    hard_negatives: int = 40
    bootstrap_images: int = 40  # image variants the first (pre-mining) model is fitted on
    max_iter: int = 200
    c: float = 0.1  # inverse L2 regularisation on standardised descriptors
    flip: bool = True
    # Mirrored copies double the windows to learn from; past this many images they add little and
    # cost as much as the images themselves, so larger sets train on the images as they are.
    flip_below_images: int = 100
    scale_step: float = 1.15
    nms_iou: float = 0.3
    # A box of one label overlapping a likelier box of another this much is the same object seen twice,
    # unless the training boxes show the two labels sharing objects (``DetectionHead.shared``).
    label_nms_iou: float = 0.5
    max_results: int = 50
    candidate_floor: float = 0.01  # probability below which a window is never reported
    min_object_px: float = 40.0  # smaller objects (median, at long_side) make training pick a larger long side
    max_upscale: float = 2.0
    refine: RefineConfig = field(default_factory=RefineConfig)

    @classmethod
    def from_dict(cls, raw: dict[str, object]) -> DetectionConfig:
        values = dict(raw)
        refine = values.pop("refine", None)
        return cls(**values, refine=RefineConfig(**refine) if isinstance(refine, dict) else RefineConfig())  # type: ignore[arg-type]


@dataclass(frozen=True)
class BoxExample:
    """An image with its boxes: (label, (left, top, width, height)) in pixels."""

    image: np.ndarray
    boxes: Sequence[tuple[str, tuple[float, float, float, float]]]


@dataclass
class DetectionHead:
    labels: tuple[str, ...]
    anchors: np.ndarray  # A×2 (w, h) in grid cells at the configured long side
    w16: np.ndarray  # (L·CELLS)×C16 folded weights, label-major
    w32: np.ndarray  # (L·CELLS)×C32
    bias: np.ndarray  # L
    config: DetectionConfig = field(default_factory=DetectionConfig)
    refiner: Refiner | None = None  # the second stage; None in artifacts trained without it
    # L×L: may two labels name one object (training boxes of both overlapping at label_nms_iou)?
    # None in artifacts from before it was learned: every label is then reported on its own.
    shared: np.ndarray | None = None
    calibration: Calibration | None = None  # fitted with the head at training (not part of its arrays)
    # Window layouts per image geometry: images of one size share them (few distinct sizes).
    _layouts: dict[tuple[int, int, int, int], tuple[np.ndarray, np.ndarray]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def layout(self, maps: FeatureMaps) -> tuple[np.ndarray, np.ndarray]:
        """(windows N×4, their cells CELLS×N×4) in grid cells, cached per geometry."""
        shape, valid = grid.grid_shape(maps), grid.valid_shape(maps)
        key = (*shape, *valid)
        found = self._layouts.get(key)
        if found is None:
            boxes = grid.windows(self.anchors, valid)
            found = (boxes, grid.cells(boxes, shape))
            if len(self._layouts) > 32:
                self._layouts.clear()
            self._layouts[key] = found
        return found

    def scores(self, maps: FeatureMaps) -> tuple[np.ndarray, np.ndarray]:
        """(windows N×4 in grid cells, logits L×N) for one image."""
        boxes, cell_boxes = self.layout(maps)
        tables = grid.integral(grid.score_grid(maps, self.w16, self.w32))
        return boxes, grid.window_scores(tables, cell_boxes) + self.bias[:, None]

    def detect(
        self, backbone: Backbone, image: np.ndarray
    ) -> list[tuple[str, float, tuple[float, float, float, float]]]:
        """(label, probability 0–1, (left, top, width, height) px) as :func:`reported` keeps them."""
        maps = backbone.maps(image, self.config.long_side)
        boxes, logits = self.scores(maps)
        height, width = image.shape[:2]
        found: list[tuple[str, float, tuple[float, float, float, float]]] = []
        px = boxes.astype(np.float64) * grid.GRID / maps.scale
        px[:, [0, 2]] = np.clip(px[:, [0, 2]], 0, width)
        px[:, [1, 3]] = np.clip(px[:, [1, 3]], 0, height)
        if self.refiner is not None:
            picked = proposals(px, logits, self.config.refine)
            probs, px = self.refiner.score(backbone, image, px[picked])
            px[:, [0, 2]] = np.clip(px[:, [0, 2]], 0, width)
            px[:, [1, 3]] = np.clip(px[:, [1, 3]], 0, height)
        else:
            probs = (1.0 / (1.0 + np.exp(-logits))).T
        for li, k in reported(px, probs, self.config, self.shared):
            x0, y0, x1, y1 = px[k]
            found.append((self.labels[li], float(probs[k, li]), (float(x0), float(y0), float(x1 - x0), float(y1 - y0))))
        return found


def reported(
    px: np.ndarray, probs: np.ndarray, cfg: DetectionConfig, shared: np.ndarray | None
) -> list[tuple[int, int]]:
    """(label index, box index) of what is reported for boxes (N×4 px) scored ``probs`` (N×L), best
    first: per-label NMS, then a box whose object a likelier box already names with another label
    is dropped, unless ``shared`` says the two labels may name one object."""
    found: list[tuple[float, int, int]] = []
    for li in range(probs.shape[1]):
        prob = probs[:, li]
        candidates = np.flatnonzero(prob >= cfg.candidate_floor)
        if candidates.size > 400:
            candidates = candidates[np.argsort(-prob[candidates])[:400]]
        kept = grid.nms(px[candidates], prob[candidates], cfg.nms_iou, cfg.max_results)
        found += [(float(prob[k]), li, int(k)) for k in candidates[kept]]
    found.sort(key=lambda f: -f[0])
    if shared is not None and len(found) > 1:
        boxes = px[[k for _, _, k in found]]
        overlap = grid.iou(boxes, boxes) >= cfg.label_nms_iou
        labels = np.asarray([li for _, li, _ in found])
        keep: list[int] = []
        for i, li in enumerate(labels):
            if not any(overlap[i, j] and not shared[li, labels[j]] for j in keep):
                keep.append(i)
        found = [found[i] for i in keep]
    return [(li, k) for _, li, k in found[: cfg.max_results]]


def shared_labels(images: Iterable[tuple[np.ndarray, np.ndarray]], n_labels: int, iou: float) -> np.ndarray:
    """L×L: which labels the training boxes show naming one object: per image (boxes G×4, their label
    indices G), two boxes overlapping at ``iou``."""
    out = np.eye(n_labels, dtype=bool)
    for boxes, labels in images:
        if len(boxes) > 1:
            first, second = np.nonzero(grid.iou(boxes, boxes) >= iou)
            out[labels[first], labels[second]] = True
    return out


def proposals(px: np.ndarray, logits: np.ndarray, cfg: RefineConfig) -> np.ndarray:
    """Indices of the windows the second stage looks at: the best-scoring for any label, spread out
    by NMS over every window above the floor. (A top-k cut before NMS would let one confident object's
    many overlapping windows fill it, and leave the other objects of the image without a proposal.)"""
    objectness = logits.max(axis=0)
    floor = np.log(cfg.proposal_floor) - np.log1p(-cfg.proposal_floor)
    order = np.flatnonzero(objectness >= floor)
    keep = grid.nms(px[order], objectness[order], cfg.proposal_nms, cfg.proposals)
    out: np.ndarray = order[keep]
    return out


def make_anchors(sizes: np.ndarray, step: float) -> np.ndarray:
    """Anchor shapes (grid cells) covering the training boxes' sizes (N×2 w, h in cells): a geometric
    ladder of scales from a little below the smallest to a little above the largest, at each typical
    aspect ratio."""
    w, h = np.maximum(sizes[:, 0], 1e-3), np.maximum(sizes[:, 1], 1e-3)
    log_scale = 0.5 * np.log(w * h)
    log_aspect = np.log(w / h)
    if np.ptp(log_aspect) < 0.2:
        aspects = [float(np.median(log_aspect))]
    else:
        aspects = sorted({round(float(q), 1) for q in np.quantile(log_aspect, [0.1, 0.5, 0.9])})
    lo, hi = log_scale.min() - np.log(step) / 2, log_scale.max() + np.log(step) / 2
    # Widely spread sizes get a coarser ladder: the window count (and inference time) stays bounded.
    log_step = max(np.log(step), (hi - lo) / (MAX_SCALES - 1))
    scales = np.arange(lo, hi + 1e-9, log_step)
    anchors = {
        (max(2, round(float(np.exp(s + a / 2)))), max(2, round(float(np.exp(s - a / 2)))))
        for s in scales
        for a in aspects
    }
    return np.asarray(sorted(anchors), dtype=int)


@dataclass
class _Variant:
    """One training image (or its mirror) with its true boxes in grid cells. It names its image by
    index: the examples may load pixels on demand, and a variant must not hold them."""

    examples: Sequence[BoxExample]
    index: int
    flip: bool
    gt: np.ndarray  # G×4 grid-cell corners
    gt_labels: np.ndarray  # G
    maps: FeatureMaps | None = None

    def feature_maps(self, backbone: Backbone, long_side: int) -> FeatureMaps:
        if self.maps is not None:
            return self.maps
        image = self.examples[self.index].image
        pixels = image[:, ::-1] if self.flip else image
        return backbone.maps(np.ascontiguousarray(pixels), long_side)


def working_long_side(shapes: Sequence[tuple[int, int]], boxes: Sequence[np.ndarray], cfg: DetectionConfig) -> int:
    """The long side images are resized to: the configured one, or larger (up to ``max_upscale`` times,
    a multiple of the backbone's stride) when the labelled objects are so small that their median
    would measure under ``min_object_px`` there. The backbone's features describe objects of roughly
    ImageNet's sizes; a 20-pixel object spans one of its cells."""
    sides = [
        float(np.sqrt(b[2] * b[3])) * cfg.long_side / max(h, w)
        for (h, w), found in zip(shapes, boxes, strict=True)
        for b in found
    ]
    if not sides:
        return cfg.long_side
    factor = float(np.clip(cfg.min_object_px / max(float(np.median(sides)), 1.0), 1.0, cfg.max_upscale))
    return round(cfg.long_side * factor / 32) * 32


def _variants(
    examples: Sequence[BoxExample],
    seen: Sequence[tuple[tuple[int, int], Sequence[tuple[str, tuple[float, float, float, float]]]]],
    labels: dict[str, int],
    cfg: DetectionConfig,
) -> list[_Variant]:
    """The training variants of ``examples``, from each one's (image shape, boxes) in ``seen``."""
    out = []
    for index, ((height, width), found) in enumerate(seen):
        scale = cfg.long_side / max(height, width)
        for flip in (False, True) if cfg.flip and len(examples) < cfg.flip_below_images else (False,):
            boxes, ids = [], []
            for label, (left, top, bw, bh) in found:
                x0 = width - left - bw if flip else left
                boxes.append(np.array([x0, top, x0 + bw, top + bh]) * scale / grid.GRID)
                ids.append(labels[label])
            gt = np.asarray(boxes, np.float64).reshape(-1, 4)
            out.append(_Variant(examples, index, flip, gt, np.asarray(ids, int)))
    return out


def _sample(
    v: _Variant, boxes: np.ndarray, cfg: DetectionConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(chosen window indices, their target label or BACKGROUND, indices of background windows)."""
    chosen: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    if len(v.gt):
        overlaps = grid.iou(boxes.astype(np.float64), v.gt)
        best = overlaps.max(axis=1)
        for g in range(len(v.gt)):
            col = overlaps[:, g]
            pos = np.flatnonzero(col >= cfg.positive_iou)
            if pos.size == 0:
                pos = np.array([int(np.argmax(col))])
            pos = pos[np.argsort(-col[pos])[: cfg.positives_per_box]]
            chosen.append(pos)
            targets.append(np.full(pos.size, v.gt_labels[g]))
            partial = np.flatnonzero((col > 0.05) & (best < cfg.negative_iou))
            if partial.size:
                pick = rng.choice(partial, size=min(cfg.partial_negatives_per_box, partial.size), replace=False)
                chosen.append(pick)
                targets.append(np.full(pick.size, BACKGROUND))
        background = np.flatnonzero(best < cfg.negative_iou)
    else:
        background = np.arange(len(boxes))
    if background.size:
        pick = rng.choice(background, size=min(cfg.random_negatives, background.size), replace=False)
        chosen.append(pick)
        targets.append(np.full(pick.size, BACKGROUND))
    index = np.concatenate(chosen) if chosen else np.zeros(0, int)
    return index, (np.concatenate(targets) if targets else np.zeros(0, int)), background


def _hard_negatives(head: DetectionHead, maps: FeatureMaps, background: np.ndarray, count: int) -> np.ndarray:
    """Indices of the highest-scoring background windows, spread out by NMS."""
    boxes, logits = head.scores(maps)
    top = logits.max(axis=0)[background]
    order = background[np.argsort(-top)[: 20 * count]]
    keep = grid.nms(boxes[order].astype(np.float64), logits.max(axis=0)[order], 0.5, count)
    out: np.ndarray = order[keep]
    return out


@dataclass
class _Standardiser:
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> _Standardiser:
        return cls(x.mean(axis=0), x.std(axis=0) + 1e-3)


def _fit(
    x: np.ndarray,
    y: np.ndarray,
    n_labels: int,
    cfg: DetectionConfig,
    norm: _Standardiser,
    c16: int,
    previous: list[LogisticRegression | None] | None = None,
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], list[LogisticRegression | None]]:
    """One-vs-rest logistic regressions on standardised descriptors, folded back to raw weights
    (split per backbone map, cell-major). ``previous`` models warm-start the solver."""
    # Training only (the `train` extra): serving images carry no scikit-learn.
    from sklearn.linear_model import LogisticRegression

    z = (x - norm.mean) / norm.std
    weights = np.zeros((n_labels, x.shape[1]), np.float64)
    bias = np.zeros(n_labels, np.float64)
    models: list[LogisticRegression | None] = []
    for li in range(n_labels):
        target = (y == li).astype(int)
        if target.min() == target.max():
            bias[li] = -10.0  # a label without positive windows never fires
            models.append(None)
            continue
        clf = previous[li] if previous and previous[li] is not None else None
        if clf is None:
            clf = LogisticRegression(C=cfg.c, max_iter=cfg.max_iter, tol=1e-4, warm_start=True)
        clf.fit(z, target)
        models.append(clf)
        weights[li] = clf.coef_[0] / norm.std
        bias[li] = clf.intercept_[0] - float(weights[li] @ norm.mean)
    channels = x.shape[1] // grid.CELLS
    per_cell = weights.reshape(n_labels, grid.CELLS, channels)
    w16 = per_cell[:, :, :c16].reshape(n_labels * grid.CELLS, c16).astype(np.float32)
    w32 = per_cell[:, :, c16:].reshape(n_labels * grid.CELLS, channels - c16).astype(np.float32)
    return (w16, w32, bias), models


def train_detection(
    backbone: Backbone, examples: Sequence[BoxExample], labels: Sequence[str], cfg: DetectionConfig, seed: int = 0
) -> DetectionHead:
    """Fit a box head on ``examples``; ``labels`` fixes the label order.

    A first model is fitted on a bootstrap subset with random negatives; one pass over every image
    then adds the background windows that model scores highest, and the final model is refitted.
    """
    rng = np.random.default_rng(seed)
    # One visit per image here (the examples may load pixels on demand): its size and boxes.
    seen = [(ex.image.shape[:2], list(ex.boxes)) for ex in examples]
    sized = [np.asarray([b for _, b in found], np.float64).reshape(-1, 4) for _, found in seen]
    cfg = replace(cfg, long_side=working_long_side([shape for shape, _ in seen], sized, cfg))
    variants = _variants(examples, seen, {name: i for i, name in enumerate(labels)}, cfg)
    gts = [v.gt for v in variants if len(v.gt)]
    if not gts:
        raise ValueError("no boxes to learn from")
    sizes = np.concatenate([np.stack([g[:, 2] - g[:, 0], g[:, 3] - g[:, 1]], axis=1) for g in gts])
    anchors = make_anchors(sizes, cfg.scale_step)
    order = rng.permutation(len(variants))
    bootstrap = set(order[: cfg.bootstrap_images].tolist())

    def head_from(params: tuple[np.ndarray, np.ndarray, np.ndarray]) -> DetectionHead:
        return DetectionHead(tuple(labels), anchors, *params, config=cfg)

    layout = head_from((np.zeros((0, 0)), np.zeros((0, 0)), np.zeros(0)))
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    c16 = 0  # channels of the stride-16 map: the backbone build's, read off its maps
    for i in sorted(bootstrap):
        v = variants[i]
        v.maps = v.feature_maps(backbone, cfg.long_side)
        c16 = v.maps.s16.shape[0]
        boxes, _ = layout.layout(v.maps)
        index, targets, _ = _sample(v, boxes, cfg, rng)
        xs.append(_descriptors(v.maps, boxes[index]))
        ys.append(targets)
    x, y = np.concatenate(xs), np.concatenate(ys)
    norm = _Standardiser.fit(x)
    params, models = _fit(x, y, len(labels), cfg, norm, c16)
    first = head_from(params)

    xs, ys = [], []
    second = _SecondStage(cfg, len(labels))
    refined = set(rng.permutation(len(variants))[: cfg.refine.max_variants].tolist()) if cfg.refine.enabled else set()
    for i, v in enumerate(variants):
        maps = v.feature_maps(backbone, cfg.long_side)
        v.maps = None  # release the bootstrap maps as we go
        boxes, _ = first.layout(maps)
        index, targets, background = _sample(v, boxes, cfg, rng) if i not in bootstrap else (np.zeros(0, int),) * 3
        hard = _hard_negatives(
            first, maps, background if i not in bootstrap else _background(v, boxes, cfg), cfg.hard_negatives
        )
        picked = np.concatenate([index, hard])
        xs.append(_descriptors(maps, boxes[picked]))
        ys.append(np.concatenate([targets, np.full(hard.size, BACKGROUND)]))
        if i in refined:
            # The pre-mining model proposes: its windows are what an unseen image's look like (the
            # final model has seen these images), so the second stage learns from realistic proposals.
            px = boxes.astype(np.float64) * grid.GRID / maps.scale
            _, logits = first.scores(maps)
            second.add(backbone, v, px[proposals(px, logits, cfg.refine)], grid.GRID / maps.scale, rng)
    x = np.concatenate([x, *xs])
    y = np.concatenate([y, *ys])
    params, _ = _fit(x, y, len(labels), cfg, norm, c16, models)
    head = head_from(params)
    head.shared = shared_labels(((v.gt, v.gt_labels) for v in variants), len(labels), cfg.label_nms_iou)
    if cfg.refine.enabled:
        head.refiner, head.calibration = second.fit(head.shared)
    return head


class _SecondStage:
    """Crop descriptors and targets gathered image by image for the refiner."""

    def __init__(self, cfg: DetectionConfig, n_labels: int) -> None:
        self.detection = cfg
        self.cfg = cfg.refine
        self.n_labels = n_labels
        self.boxes: list[np.ndarray] = []
        self.owner: list[np.ndarray] = []
        self.truths: list[tuple[np.ndarray, np.ndarray]] = []
        self.x: list[np.ndarray] = []
        self.y: list[np.ndarray] = []
        self.deltas: list[np.ndarray] = []
        self.regress: list[np.ndarray] = []
        self.groups: list[np.ndarray] = []
        self.proposed: list[np.ndarray] = []

    def add(self, backbone: Backbone, v: _Variant, proposed: np.ndarray, px_per_cell: float,
            rng: np.random.Generator) -> None:  # fmt: skip
        truth = v.gt * px_per_cell
        boxes = np.concatenate([proposed, truth, jittered(truth, self.cfg.jitter, rng)])
        if not len(boxes):  # an image without objects on which the first model proposes nothing
            return
        image = v.examples[v.index].image
        pixels = np.ascontiguousarray(image[:, ::-1] if v.flip else image)
        self.x.append(descriptors(backbone, crops(pixels, boxes, self.cfg)))
        self.groups.append(np.full(len(boxes), v.index))
        self.boxes.append(boxes)
        self.owner.append(np.full(len(boxes), len(self.truths)))
        self.truths.append((truth, v.gt_labels))
        self.proposed.append(np.arange(len(boxes)) < len(proposed))
        if len(truth):
            overlaps = grid.iou(boxes, truth)
            best, match = overlaps.max(axis=1), overlaps.argmax(axis=1)
            self.y.append(np.where(best >= self.cfg.positive_iou, v.gt_labels[match] + 1, 0))
            self.deltas.append(box_deltas(boxes, truth[match]))
            self.regress.append(best >= self.cfg.regress_iou)
        else:
            self.y.append(np.zeros(len(boxes), int))
            self.deltas.append(np.zeros((len(boxes), 4)))
            self.regress.append(np.zeros(len(boxes), bool))

    def fit(self, shared: np.ndarray) -> tuple[Refiner, Calibration]:
        """The refiner, and a calibration map of its confidences fitted on what it would report for
        images it has not seen: the proposals scored and moved by heads refitted out of fold, then
        suppressed and matched exactly as at inference and evaluation. (Moved by the final box
        regression, which has learnt these very proposals' targets, they would match their objects
        more often than an unseen image's do, and the map would trust its boxes too much.)"""
        x, y = np.concatenate(self.x), np.concatenate(self.y)
        deltas, regress = np.concatenate(self.deltas), np.concatenate(self.regress)
        refiner = fit_refiner(x, y, deltas, regress, self.n_labels, self.cfg)
        proposed = np.flatnonzero(np.concatenate(self.proposed))
        groups = np.concatenate(self.groups)
        unseen = out_of_fold(x, y, deltas, regress, groups, proposed, self.n_labels, self.cfg)
        if unseen is None:
            return refiner, Calibration()
        probs = unseen.probs
        moved = apply_deltas(np.concatenate(self.boxes)[proposed], unseen.deltas)
        owner = np.concatenate(self.owner)[proposed]
        names = [str(li) for li in range(self.n_labels)]
        truths: list[Truth] = []
        found: list[list[Prediction]] = []
        for variant, (truth, truth_labels) in enumerate(self.truths):
            mine = np.flatnonzero(owner == variant)
            truths.append([(names[li], _pixel_box(b)) for b, li in zip(truth, truth_labels, strict=True)])
            found.append([
                Prediction(label=names[li], confidence=100.0 * probs[mine[k], li], box=_pixel_box(moved[mine[k]]))
                for li, k in reported(moved[mine], probs[mine], self.detection, shared)
            ])  # fmt: skip
        scored = scored_candidates(truths, found, names)
        if not scored:
            return refiner, Calibration()
        return refiner, fit_platt([c / 100.0 for c, _ in scored], [hit for _, hit in scored])


def _pixel_box(corners: np.ndarray) -> PixelBox:
    x0, y0, x1, y1 = (float(v) for v in corners)
    return PixelBox(left=x0, top=y0, width=x1 - x0, height=y1 - y0)


def _background(v: _Variant, boxes: np.ndarray, cfg: DetectionConfig) -> np.ndarray:
    if not len(v.gt):
        return np.arange(len(boxes))
    return np.flatnonzero(grid.iou(boxes.astype(np.float64), v.gt).max(axis=1) < cfg.negative_iou)


def _descriptors(maps: FeatureMaps, boxes: np.ndarray) -> np.ndarray:
    table = grid.integral(grid.feature_grid(maps))
    return grid.descriptors(table, boxes, grid.grid_shape(maps))
