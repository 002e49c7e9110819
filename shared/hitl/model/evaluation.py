"""Metrics the way Rekognition Custom Labels reports them.

Per label: precision, recall and F1 at the label's *assumed threshold* (the confidence with the best
F1 on the evaluated set, unless thresholds are given), and AP50 (all-point interpolated average
precision). A predicted box is a true positive when it overlaps a not-yet-matched true box of its
label with IoU ≥ 0.5 (higher-confidence predictions match first); image-level labels match by name.
Overall figures are micro-averaged at the per-label thresholds; ``macro_f1`` averages label F1s.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from hitl.domain.records import PixelBox, Prediction

IOU_MATCH = 0.5

Truth = Sequence[tuple[str, PixelBox | None]]


@dataclass(frozen=True)
class LabelMetrics:
    label: str
    precision: float
    recall: float
    f1: float
    ap50: float
    threshold: float  # confidence 0–100
    support: int  # true instances
    tp: int
    fp: int
    fn: int


@dataclass(frozen=True)
class EvaluationReport:
    labels: dict[str, LabelMetrics]
    precision: float
    recall: float
    f1: float
    macro_f1: float
    ap50: float  # mean over labels
    images: int
    top1_macro_f1: float | None = None  # image-level sets: macro-F1 of each image's top label
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def thresholds(self) -> dict[str, float]:
        return {name: m.threshold for name, m in self.labels.items()}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> EvaluationReport:
        data = dict(raw)
        data["labels"] = {k: LabelMetrics(**v) for k, v in raw["labels"].items()}
        return cls(**data)


def box_iou(a: PixelBox, b: PixelBox) -> float:
    ix = max(0.0, min(a.left + a.width, b.left + b.width) - max(a.left, b.left))
    iy = max(0.0, min(a.top + a.height, b.top + b.height) - max(a.top, b.top))
    inter = ix * iy
    union = a.width * a.height + b.width * b.height - inter
    return inter / union if union > 0 else 0.0


def _match(truth: Truth, predictions: Sequence[Prediction], label: str) -> list[tuple[float, bool]]:
    """(confidence, is true positive) for one image's predictions of ``label``."""
    targets = [box for name, box in truth if name == label]
    used = [False] * len(targets)
    out = []
    for p in sorted((p for p in predictions if p.label == label), key=lambda p: -p.confidence):
        hit = -1
        best = IOU_MATCH
        for i, box in enumerate(targets):
            if used[i]:
                continue
            if box is None or p.box is None:
                overlap = 1.0 if (box is None and p.box is None) else 0.0
            else:
                overlap = box_iou(p.box, box)
            if overlap >= best:
                hit, best = i, overlap
        if hit >= 0:
            used[hit] = True
        out.append((p.confidence, hit >= 0))
    return out


def _average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    steps = np.flatnonzero(r[1:] != r[:-1])
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


def _label_metrics(label: str, scored: list[tuple[float, bool]], support: int, threshold: float | None) -> LabelMetrics:
    conf = np.asarray([c for c, _ in scored], np.float64)
    hit = np.asarray([t for _, t in scored], bool)
    order = np.argsort(-conf, kind="stable")
    conf, hit = conf[order], hit[order]
    tp = np.cumsum(hit)
    fp = np.cumsum(~hit)
    recall = tp / support if support else np.zeros_like(conf)
    precision = tp / np.maximum(tp + fp, 1)
    ap = _average_precision(recall, precision) if support and conf.size else 0.0
    if threshold is None:
        # Only the last of a run of equal confidences is a reachable operating point.
        last = np.r_[conf[1:] != conf[:-1], True] if conf.size else np.zeros(0, bool)
        f1_curve = np.where(last, 2 * tp / np.maximum(tp + fp + support, 1), -1.0)
        if conf.size and f1_curve.max() > 0:
            k = int(np.argmax(f1_curve))
            threshold = float(conf[k])
        else:
            threshold = 50.0
    above = conf >= threshold
    n_tp = int(hit[above].sum())
    n_fp = int((~hit[above]).sum())
    n_fn = support - n_tp
    p = n_tp / (n_tp + n_fp) if n_tp + n_fp else 0.0
    r = n_tp / support if support else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return LabelMetrics(label, p, r, f1, ap, threshold, support, n_tp, n_fp, n_fn)


def evaluate_predictions(
    truths: Sequence[Truth],
    predictions: Sequence[Sequence[Prediction]],
    labels: Sequence[str] | None = None,
    thresholds: Mapping[str, float] | None = None,
) -> EvaluationReport:
    """Score predictions (per image) against ground truth (per image: (label, box or None)).
    ``thresholds`` given: they are applied; otherwise each label's best-F1 threshold is assumed."""
    if len(truths) != len(predictions):
        raise ValueError("one prediction list per image is required")
    names = list(labels) if labels is not None else sorted({n for t in truths for n, _ in t})
    per_label: dict[str, LabelMetrics] = {}
    for name in names:
        scored = [s for truth, preds in zip(truths, predictions, strict=True) for s in _match(truth, preds, name)]
        support = sum(1 for truth in truths for n, _ in truth if n == name)
        fixed = thresholds.get(name) if thresholds is not None else None
        per_label[name] = _label_metrics(name, scored, support, fixed)
    tp = sum(m.tp for m in per_label.values())
    fp = sum(m.fp for m in per_label.values())
    fn = sum(m.fn for m in per_label.values())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    values = list(per_label.values())
    return EvaluationReport(
        labels=per_label,
        precision=precision,
        recall=recall,
        f1=f1,
        macro_f1=float(np.mean([m.f1 for m in values])) if values else 0.0,
        ap50=float(np.mean([m.ap50 for m in values])) if values else 0.0,
        images=len(truths),
        top1_macro_f1=_top1_macro_f1(truths, predictions, names),
    )


def _top1_macro_f1(
    truths: Sequence[Truth], predictions: Sequence[Sequence[Prediction]], names: list[str]
) -> float | None:
    """For image-level sets (exactly one label per image, no boxes): macro-F1 of the top label."""
    if not truths or any(len(t) != 1 or t[0][1] is not None for t in truths):
        return None
    actual = [t[0][0] for t in truths]
    guessed = [max(p, key=lambda q: q.confidence).label if p else "" for p in predictions]
    scores = []
    for name in names:
        tp = sum(1 for a, g in zip(actual, guessed, strict=True) if a == name and g == name)
        fp = sum(1 for a, g in zip(actual, guessed, strict=True) if a != name and g == name)
        fn = sum(1 for a, g in zip(actual, guessed, strict=True) if a == name and g != name)
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return float(np.mean(scores))


def scored_candidates(
    truths: Sequence[Truth], predictions: Sequence[Sequence[Prediction]], labels: Sequence[str]
) -> list[tuple[float, bool]]:
    """Every prediction as (confidence 0–100, correct?), matched as the metrics match them: what a
    calibration map is fitted on and a reliability diagram plots."""
    if len(truths) != len(predictions):
        raise ValueError("one prediction list per image is required")
    return [
        s
        for name in labels
        for truth, preds in zip(truths, predictions, strict=True)
        for s in _match(truth, preds, name)
    ]


def evaluate(
    predict: Callable[[np.ndarray], Sequence[Prediction]],
    examples: Sequence[tuple[np.ndarray, Truth]],
    labels: Sequence[str] | None = None,
    thresholds: Mapping[str, float] | None = None,
) -> EvaluationReport:
    """Run ``predict`` (which should return every candidate, not only those above a threshold) over
    (image, truth) pairs and score it."""
    truths: list[Truth] = []
    predictions: list[list[Prediction]] = []
    for image, truth in examples:  # one pass: the examples may load each image when visited
        predictions.append(list(predict(image)))
        truths.append(truth)
    return evaluate_predictions(truths, predictions, labels, thresholds)
