"""Several reviewers' answers for one loop (TaskCount > 1) → one answer and how much they agreed.

A2I does not merge answers (docs/formats.md §1): labels go by majority, boxes are clustered by IoU
(same label, one box per reviewer per cluster) and a cluster backed by a strict majority of the
reviewers becomes one box at the members' median. ``agreement`` is the share of reviewers whose own
answer equals the consolidated one; ``box_support`` the share of reviewers behind each kept box, and
``label_support`` the share that chose the kept label (Ground Truth's per-object confidence). With a
single answer everything is passed through unchanged.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hitl.domain.conversion import BOX_FIELDS, AnswerKind, HumanAnswer
from hitl.domain.matching import IOU_THRESHOLD, iou


@dataclass(frozen=True)
class Consolidated:
    kind: AnswerKind
    workers: int
    agreement: float
    boxes: list[dict[str, Any]] = field(default_factory=list)
    image_size: tuple[Any, Any] | None = None
    label: str | None = None
    verified: dict[str, bool] = field(default_factory=dict)
    submission_time: str | None = None  # the last answer's: when the loop's answer was complete
    box_support: list[float] = field(default_factory=list)  # per box in ``boxes``
    label_support: float = 1.0


def _coords(box: dict[str, Any]) -> tuple[float, float, float, float]:
    return (float(box["left"]), float(box["top"]), float(box["width"]), float(box["height"]))


@dataclass
class _Cluster:
    label: str
    members: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    def centre(self) -> tuple[float, float, float, float]:
        boxes = [_coords(b) for _, b in self.members]
        return tuple(statistics.median(c[i] for c in boxes) for i in range(4))  # type: ignore[return-value]

    def box(self) -> dict[str, Any]:
        if len(self.members) == 1:
            return dict(self.members[0][1])
        values = [b for _, b in self.members]
        merged: dict[str, Any] = {"label": self.label}
        for key in BOX_FIELDS:
            median = statistics.median(v[key] for v in values)
            merged[key] = round(median) if all(isinstance(v[key], int) for v in values) else median
        return merged


def consolidate_boxes(
    answers: Sequence[Sequence[dict[str, Any]]], threshold: float = IOU_THRESHOLD
) -> tuple[list[dict[str, Any]], float]:
    """Boxes of each reviewer → (consensus boxes, agreement)."""
    boxes, agreement, _ = consolidate_boxes_with_support(answers, threshold)
    return boxes, agreement


def consolidate_boxes_with_support(
    answers: Sequence[Sequence[dict[str, Any]]], threshold: float = IOU_THRESHOLD
) -> tuple[list[dict[str, Any]], float, list[float]]:
    """Boxes of each reviewer → (consensus boxes, agreement, share of reviewers behind each box)."""
    n = len(answers)
    if n == 0:
        return [], 0.0, []
    clusters: list[_Cluster] = []
    placed: list[list[int]] = []  # per reviewer: the cluster index of each of their boxes
    for worker, boxes in enumerate(answers):
        mine: list[int] = []
        for box in boxes:
            best, best_iou = None, threshold
            for index, cluster in enumerate(clusters):
                if cluster.label != box["label"] or any(w == worker for w, _ in cluster.members):
                    continue
                score = iou(_coords(box), cluster.centre())
                if score >= best_iou:
                    best, best_iou = index, score
            if best is None:
                clusters.append(_Cluster(box["label"]))
                best = len(clusters) - 1
            clusters[best].members.append((worker, box))
            mine.append(best)
        placed.append(mine)
    kept = {i for i, c in enumerate(clusters) if len(c.members) * 2 > n}
    agreeing = sum(1 for mine in placed if set(mine) == kept and len(mine) == len(kept))
    order = sorted(kept)
    return [clusters[i].box() for i in order], agreeing / n, [len(clusters[i].members) / n for i in order]


def consolidate_labels(labels: Sequence[str | None]) -> tuple[str | None, float]:
    """Majority label (``None`` = no label is a vote too); ties go to the label answered first."""
    if not labels:
        return None, 0.0
    counts = Counter(labels)
    first = {label: i for i, label in reversed(list(enumerate(labels)))}
    winner = min(counts, key=lambda label: (-counts[label], first[label]))
    return winner, counts[winner] / len(labels)


def consolidate(answers: Sequence[HumanAnswer]) -> Consolidated:
    if not answers:
        raise ValueError("no answers to consolidate")
    kind = Counter(a.kind for a in answers).most_common(1)[0][0]
    same = [a for a in answers if a.kind == kind]
    n = len(answers)
    last = max((a.submission_time for a in same if a.submission_time), default=None)
    if kind == "boxes":
        boxes, agreement, support = consolidate_boxes_with_support([a.boxes for a in same])
        size = next((a.image_size for a in same if a.image_size), None)
        return Consolidated(
            kind,
            n,
            agreement * len(same) / n,
            boxes=boxes,
            image_size=size,
            submission_time=last,
            box_support=[share * len(same) / n for share in support],
        )
    if kind == "class":
        label, agreement = consolidate_labels([a.label for a in same])
        share = agreement * len(same) / n
        return Consolidated(kind, n, share, label=label, submission_time=last, label_support=share)
    if kind == "verification":
        names = list(dict.fromkeys(name for a in same for name in a.verified))
        verified = {}
        agreeing = 0
        for name in names:
            votes = [a.verified.get(name, False) for a in same]
            verified[name] = sum(votes) * 2 > len(votes)
        agreeing = sum(1 for a in same if all(a.verified.get(k, False) == v for k, v in verified.items()))
        return Consolidated(kind, n, agreeing / n, verified=verified, submission_time=last)
    return Consolidated(kind, n, 1.0 if n == 1 else 0.0, submission_time=last)
