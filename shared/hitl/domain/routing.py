"""Which detections go to human review, and why. Pure: all inputs are arguments."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hitl.domain.records import Prediction, RouteDecision, RouteReason


@dataclass(frozen=True)
class RoutingPolicy:
    review_enabled: bool
    min_confidence: float
    label_overrides: Mapping[str, float]
    sampling_enabled: bool
    sampling_interval: int

    def threshold_for(self, label: str) -> float:
        return float(self.label_overrides.get(label, self.min_confidence))


def is_audit_sample(sequence: int | None, interval: int) -> bool:
    """Every ``interval``-th detection (1-based count since sampling was enabled) is sampled."""
    return sequence is not None and interval > 0 and sequence % interval == 0


def route(
    predictions: Sequence[Prediction], policy: RoutingPolicy, sample_seq: int | None, annotate: bool = False
) -> RouteDecision:
    """Low confidence: nothing found, or the most confident label below its threshold.

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
    if top is None or top.confidence < threshold:
        reasons.append("low_confidence")
    if policy.sampling_enabled and is_audit_sample(sample_seq, policy.sampling_interval):
        reasons.append("audit")
    return RouteDecision(
        reasons=reasons,
        top_confidence=top.confidence if top else None,
        threshold=threshold,
        sample_seq=sample_seq,
    )
