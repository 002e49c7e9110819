"""Which detections go to human review, and why. Pure: all inputs are arguments."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from hitl.domain.records import Prediction, RouteDecision, RouteReason
from hitl.domain.strategies import (
    DEFAULT_STRATEGY,
    Strategy,
    image_uncertainty,
    is_near_duplicate,
    random_key,
    uncertainty_gate,
)

# Audit samples go first when reviews are rationed: the auto-accept guarantee needs an unbiased sample.
AUDIT_PRIORITY = 2.0

# Cosine distance between two image descriptors below which the second is a near-duplicate of the
# first (diverse-uncertainty): noise and brightness changes of one scene stay far below it.
NEAR_DUPLICATE_DISTANCE = 0.02


@dataclass(frozen=True)
class RoutingPolicy:
    review_enabled: bool
    min_confidence: float
    label_overrides: Mapping[str, float]
    sampling_enabled: bool
    sampling_interval: int
    strategy: Strategy = DEFAULT_STRATEGY

    def threshold_for(self, label: str) -> float:
        return float(self.label_overrides.get(label, self.min_confidence))


def is_audit_sample(sequence: int | None, interval: int) -> bool:
    """Every ``interval``-th detection (1-based count since sampling was enabled) is sampled."""
    return sequence is not None and interval > 0 and sequence % interval == 0


def needs_label(
    predictions: Sequence[Prediction],
    policy: RoutingPolicy,
    threshold: float,
    image_key: str = "",
    descriptor: np.ndarray | None = None,
    recent: np.ndarray | None = None,
) -> bool:
    """Whether the routing strategy asks a human to label this image (before the audit sample).

    ``threshold``: the most confident label below its threshold (or nothing found). ``uncertainty``:
    nothing found, or a box between 100 − t and t (its entropy at least that of t).
    ``diverse-uncertainty``: the same, unless the image's descriptor is a near-duplicate of an image
    recently sent (``recent``). ``random``: a share 1 − t/100 of images, drawn by the image id.
    """
    top = max((p.confidence for p in predictions), default=None)
    if policy.strategy == "threshold":
        return top is None or top < threshold
    if policy.strategy == "random":
        return random_key(image_key, "route") < 1.0 - threshold / 100.0
    uncertain = top is None or image_uncertainty([p.confidence for p in predictions]) >= uncertainty_gate(threshold)
    if not uncertain or policy.strategy == "uncertainty":
        return uncertain
    if descriptor is None or recent is None:
        return True
    return not is_near_duplicate(descriptor, recent, NEAR_DUPLICATE_DISTANCE)


def priority(predictions: Sequence[Prediction], policy: RoutingPolicy, image_key: str = "") -> float | None:
    """The strategy's value of a review of this image, 0–1 (higher first): the image's uncertainty
    (1 when nothing was found), or for ``random`` its draw; None for ``threshold`` (oldest first)."""
    if policy.strategy == "threshold":
        return None
    if policy.strategy == "random":
        return round(random_key(image_key, "priority"), 6)
    if not predictions:
        return 1.0
    return round(image_uncertainty([p.confidence for p in predictions]), 6)


def route(
    predictions: Sequence[Prediction],
    policy: RoutingPolicy,
    sample_seq: int | None,
    annotate: bool = False,
    *,
    image_key: str = "",
    descriptor: np.ndarray | None = None,
    recent: np.ndarray | None = None,
) -> RouteDecision:
    """Low confidence: as the routing strategy decides (:func:`needs_label`); by default, nothing
    found or the most confident label below its threshold.

    The audit sample is independent of confidence: a sampled detection that is also low-confidence
    carries both reasons (and later shares one human loop). An image submitted for annotation always
    goes to review, prefilled with the model's prediction.
    """
    if annotate:
        top = max(predictions, key=lambda p: p.confidence, default=None)
        return RouteDecision(reasons=["annotation"], top_confidence=top.confidence if top else None, sample_seq=None)
    if not policy.review_enabled:
        return RouteDecision(reasons=[], sample_seq=sample_seq)
    top = max(predictions, key=lambda p: p.confidence, default=None)
    threshold = policy.threshold_for(top.label) if top else policy.min_confidence
    reasons: list[RouteReason] = []
    if needs_label(predictions, policy, threshold, image_key, descriptor, recent):
        reasons.append("low_confidence")
    if policy.sampling_enabled and is_audit_sample(sample_seq, policy.sampling_interval):
        reasons.append("audit")
    value = AUDIT_PRIORITY if "audit" in reasons else priority(predictions, policy, image_key) if reasons else None
    return RouteDecision(
        reasons=reasons,
        top_confidence=top.confidence if top else None,
        threshold=threshold,
        sample_seq=sample_seq,
        strategy=policy.strategy,
        priority=value,
    )
