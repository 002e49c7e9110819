from __future__ import annotations

import pytest

from hitl.domain.records import PixelBox, Prediction
from hitl.domain.routing import RoutingPolicy, is_audit_sample, route


def policy(**overrides: object) -> RoutingPolicy:
    base: dict[str, object] = {
        "review_enabled": True,
        "min_confidence": 70.0,
        "label_overrides": {},
        "sampling_enabled": True,
        "sampling_interval": 10,
    }
    base.update(overrides)
    return RoutingPolicy(**base)  # type: ignore[arg-type]


def pred(label: str, confidence: float) -> Prediction:
    return Prediction(label=label, confidence=confidence, box=PixelBox(left=1, top=2, width=3, height=4))


def test_nothing_found_goes_to_review() -> None:
    decision = route([], policy(), sample_seq=1)
    assert decision.reasons == ["low_confidence"]
    assert decision.top_confidence is None


def test_top_confidence_below_threshold_is_low_confidence() -> None:
    decision = route([pred("face", 40), pred("face", 69.9)], policy(), sample_seq=1)
    assert decision.reasons == ["low_confidence"]
    assert decision.top_confidence == pytest.approx(69.9)


def test_confident_detection_is_not_reviewed() -> None:
    decision = route([pred("face", 40), pred("face", 70.0)], policy(), sample_seq=3)
    assert decision.reasons == []
    assert not decision.review


def test_per_label_override_applies_to_the_top_label() -> None:
    strict = policy(label_overrides={"face": 90.0})
    assert route([pred("face", 85)], strict, None).reasons == ["low_confidence"]
    assert route([pred("cat", 85)], strict, None).reasons == []


def test_every_nth_is_an_audit_sample_even_when_confident() -> None:
    decision = route([pred("face", 99)], policy(sampling_interval=5), sample_seq=10)
    assert decision.reasons == ["audit"]


def test_sample_and_low_confidence_carry_both_reasons() -> None:
    decision = route([pred("face", 10)], policy(sampling_interval=5), sample_seq=5)
    assert decision.reasons == ["low_confidence", "audit"]


def test_review_disabled_routes_nothing() -> None:
    decision = route([], policy(review_enabled=False), sample_seq=10)
    assert decision.reasons == []


def test_sampling_disabled_samples_nothing() -> None:
    decision = route([pred("face", 99)], policy(sampling_enabled=False, sampling_interval=1), sample_seq=1)
    assert decision.reasons == []


@pytest.mark.parametrize(
    ("seq", "interval", "expected"),
    [(None, 5, False), (0, 5, True), (4, 5, False), (5, 5, True), (1000, 1000, True), (7, 0, False), (1, 1, True)],
)
def test_is_audit_sample(seq: int | None, interval: int, expected: bool) -> None:
    assert is_audit_sample(seq, interval) is expected


def test_exactly_one_in_n_over_a_count() -> None:
    sampled = [s for s in range(1, 1001) if is_audit_sample(s, 100)]
    assert sampled == list(range(100, 1001, 100))


def test_annotation_always_goes_to_review_and_is_not_sampled() -> None:
    decision = route([pred("face", 99.9)], policy(review_enabled=False), sample_seq=None, annotate=True)
    assert decision.reasons == ["annotation"]
    assert decision.top_confidence == pytest.approx(99.9)
    assert route([], policy(), sample_seq=10, annotate=True).reasons == ["annotation"]
