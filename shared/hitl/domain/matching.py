"""Box overlap and prediction-to-answer matching. Pure; boxes are (left, top, width, height)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

Box = tuple[float, float, float, float]
IOU_THRESHOLD = 0.5


@dataclass(frozen=True)
class LabelledBox:
    label: str
    box: Box


def iou(a: Box, b: Box) -> float:
    """Intersection over union; 0 for disjoint or degenerate boxes."""
    ax2, ay2 = a[0] + a[2], a[1] + a[3]
    bx2, by2 = b[0] + b[2], b[1] + b[3]
    iw = min(ax2, bx2) - max(a[0], b[0])
    ih = min(ay2, by2) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


@dataclass
class MatchResult:
    """``pairs`` are (predicted index, truth index, IoU); unmatched predictions are false positives."""

    pairs: list[tuple[int, int, float]] = field(default_factory=list)
    false_positives: list[int] = field(default_factory=list)
    false_negatives: list[int] = field(default_factory=list)

    @property
    def tp(self) -> int:
        return len(self.pairs)

    @property
    def fp(self) -> int:
        return len(self.false_positives)

    @property
    def fn(self) -> int:
        return len(self.false_negatives)


def match_boxes(
    predicted: Sequence[LabelledBox], truth: Sequence[LabelledBox], threshold: float = IOU_THRESHOLD
) -> MatchResult:
    """Greedy one-to-one matching, highest IoU first, same label only (the usual detection audit)."""
    candidates = sorted(
        (
            (iou(p.box, t.box), i, j)
            for i, p in enumerate(predicted)
            for j, t in enumerate(truth)
            if p.label == t.label
        ),
        key=lambda c: (-c[0], c[1], c[2]),
    )
    used_p: set[int] = set()
    used_t: set[int] = set()
    result = MatchResult()
    for score, i, j in candidates:
        if score < threshold:
            break
        if i in used_p or j in used_t:
            continue
        used_p.add(i)
        used_t.add(j)
        result.pairs.append((i, j, score))
    result.false_positives = [i for i in range(len(predicted)) if i not in used_p]
    result.false_negatives = [j for j in range(len(truth)) if j not in used_t]
    return result


def match_labels(predicted: str | None, truth: str | None) -> MatchResult:
    """Image-level classes: equal labels are a true positive; ``None`` means "no label"."""
    result = MatchResult()
    if predicted is not None and predicted == truth:
        result.pairs.append((0, 0, 1.0))
        return result
    if predicted is not None:
        result.false_positives.append(0)
    if truth is not None:
        result.false_negatives.append(0)
    return result
