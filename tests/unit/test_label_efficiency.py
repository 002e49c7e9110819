"""Routing strategies and the auto-accept guarantee (pure domain code)."""

from __future__ import annotations

import numpy as np
import pytest

from hitl.domain.auto_accept import (
    auto_accept_threshold,
    clopper_pearson_lower,
    minimum_audits,
    per_label,
)
from hitl.domain.budget import BudgetLimits, Waiting, free_slots, rank
from hitl.domain.records import PixelBox, Prediction
from hitl.domain.routing import RoutingPolicy, route
from hitl.domain.strategies import (
    Candidate,
    box_entropy,
    image_descriptor,
    image_uncertainty,
    is_near_duplicate,
    parse_strategy,
    random_key,
    select,
    uncertainty_gate,
)
from hitl.domain.waiting import PipelineState, explain


def cand(key: str, arrival: float, top: float | None, emb: list[float] | None = None) -> Candidate:
    confidences = [] if top is None else [top]
    return Candidate(
        key=key,
        arrival=arrival,
        top_confidence=top,
        threshold=70.0,
        uncertainty=image_uncertainty(confidences),
        embedding=None if emb is None else np.asarray(emb, float),
    )


def test_box_entropy_peaks_at_even_odds_and_vanishes_at_certainty() -> None:
    assert box_entropy(50) == pytest.approx(1.0)
    assert box_entropy(0) == 0.0
    assert box_entropy(100) == 0.0
    assert box_entropy(30) == pytest.approx(box_entropy(70))
    assert box_entropy(60) > box_entropy(80) > box_entropy(95)


def test_image_uncertainty_is_its_most_uncertain_box() -> None:
    assert image_uncertainty([99, 55, 2]) == pytest.approx(box_entropy(55))
    assert image_uncertainty([]) == 0.0


def test_parse_strategy_refuses_unknown_names() -> None:
    assert parse_strategy(" Diverse-Uncertainty ") == "diverse-uncertainty"
    with pytest.raises(ValueError, match="known: threshold"):
        parse_strategy("smart")


def test_threshold_takes_eligible_candidates_oldest_first() -> None:
    pool = [cand("a", 3, 40), cand("b", 1, 90), cand("c", 2, 65), cand("d", 4, None)]
    assert [c.key for c in select(pool, "threshold", 2)] == ["c", "a"]
    assert [c.key for c in select(pool, "threshold", 10)] == ["c", "a", "d"]


def test_uncertainty_takes_the_most_uncertain_first() -> None:
    pool = [cand("a", 1, 95), cand("b", 2, 52), cand("c", 3, 35), cand("d", 4, 66)]
    # 35 is nearer even odds than 66; 95 is outside the band.
    assert [c.key for c in select(pool, "uncertainty", 3)] == ["b", "c", "d"]
    assert select(pool, "uncertainty", 0) == []


def test_random_order_is_fixed_by_the_image_ids() -> None:
    pool = [cand(str(i), i, 80) for i in range(50)]
    first = [c.key for c in select(pool, "random", 10)]
    assert first == [c.key for c in select(list(reversed(pool)), "random", 10)]
    assert first != [str(i) for i in range(10)]
    assert 0.0 <= random_key("x") < 1.0


def test_diverse_uncertainty_does_not_send_every_near_duplicate() -> None:
    # Three copies of one uncertain scene and two other, slightly less uncertain scenes.
    pool = [
        cand("dup1", 1, 50, [1, 0, 0]),
        cand("dup2", 2, 50.5, [1, 0.001, 0]),
        cand("dup3", 3, 51, [1, 0, 0.001]),
        cand("other1", 4, 58, [0, 1, 0]),
        cand("other2", 5, 60, [0, 0, 1]),
    ]
    plain = [c.key for c in select(pool, "uncertainty", 3)]
    assert plain == ["dup1", "dup2", "dup3"]
    diverse = [c.key for c in select(pool, "diverse-uncertainty", 3)]
    assert diverse[0] == "dup1"
    assert set(diverse[1:]) == {"other1", "other2"}


def test_diverse_uncertainty_avoids_what_was_sent_recently() -> None:
    pool = [cand("seen", 1, 50, [1, 0]), cand("new", 2, 60, [0, 1])]
    chosen = select(pool, "diverse-uncertainty", 1, recent=np.asarray([[1.0, 0.0]]), radius=0.1)
    assert [c.key for c in chosen] == ["new"]


def test_image_descriptor_ignores_brightness_and_noise_but_not_content() -> None:
    rng = np.random.default_rng(0)
    scene = rng.integers(0, 255, size=(48, 64, 3)).astype(np.uint8)
    brighter = np.clip(scene.astype(int) * 1.1 + 10 + rng.normal(0, 2, scene.shape), 0, 255).astype(np.uint8)
    other = rng.integers(0, 255, size=(48, 64, 3)).astype(np.uint8)
    d = image_descriptor(scene)
    assert d.shape == (64,)
    assert is_near_duplicate(image_descriptor(brighter), d[None, :], 0.02)
    assert not is_near_duplicate(image_descriptor(other), d[None, :], 0.02)


def policy(strategy: str) -> RoutingPolicy:
    return RoutingPolicy(True, 70.0, {}, True, 10, strategy)  # type: ignore[arg-type]


def pred(confidence: float) -> Prediction:
    return Prediction(label="face", confidence=confidence, box=PixelBox(left=1, top=2, width=3, height=4))


def test_uncertainty_routes_boxes_inside_the_band_only() -> None:
    assert uncertainty_gate(70) == pytest.approx(box_entropy(70))
    assert route([pred(99), pred(45)], policy("uncertainty"), None).reasons == ["low_confidence"]
    assert route([pred(99), pred(20)], policy("uncertainty"), None).reasons == []
    assert route([], policy("uncertainty"), None).reasons == ["low_confidence"]
    # The threshold rule differs: its top box is confident, so it sends nothing.
    assert route([pred(99), pred(45)], policy("threshold"), None).reasons == []


def test_audit_sample_is_independent_of_the_strategy() -> None:
    for strategy in ("threshold", "uncertainty", "diverse-uncertainty", "random"):
        decision = route([pred(99)], policy(strategy), sample_seq=20, image_key="img")
        assert "audit" in decision.reasons
        assert decision.strategy == strategy


def test_random_routes_about_the_share_left_by_the_threshold() -> None:
    sent = sum(route([pred(99)], policy("random"), None, image_key=f"i{i}").review for i in range(2000))
    assert 0.26 < sent / 2000 < 0.34


def test_diverse_uncertainty_skips_a_near_duplicate_of_a_recent_review() -> None:
    d = np.asarray([1.0, 0.0, 0.0])
    recent = np.asarray([[1.0, 0.001, 0.0]])
    assert route([pred(50)], policy("diverse-uncertainty"), None, descriptor=d, recent=recent).reasons == []
    far = np.asarray([[0.0, 1.0, 0.0]])
    assert route([pred(50)], policy("diverse-uncertainty"), None, descriptor=d, recent=far).review


def test_clopper_pearson_lower_bound_known_values() -> None:
    # n out of n: alpha ** (1/n).
    assert clopper_pearson_lower(59, 59) == pytest.approx(0.05 ** (1 / 59))
    assert clopper_pearson_lower(0, 10) == 0.0
    assert clopper_pearson_lower(90, 100) == pytest.approx(0.8363, abs=1e-3)
    with pytest.raises(ValueError):
        clopper_pearson_lower(5, 4)


def test_minimum_audits_for_a_flawless_record() -> None:
    assert minimum_audits(0.95) == 59
    assert clopper_pearson_lower(58, 58) < 0.95 <= clopper_pearson_lower(59, 59)


def test_too_few_audits_keeps_the_configured_threshold() -> None:
    result = auto_accept_threshold("face", [(99.0, True)] * 30, 0.95)
    assert result.status == "too_few_audits"
    assert result.threshold is None
    assert "too few audits" in result.explain()
    assert "59" in result.explain()


def test_threshold_is_the_lowest_that_keeps_the_bound() -> None:
    # 200 right at high confidence, then mistakes mix in below 60.
    scored = [(90.0 + i * 0.01, True) for i in range(200)]
    scored += [(60.0 - i * 0.1, i % 2 == 0) for i in range(100)]
    result = auto_accept_threshold("face", scored, 0.95)
    assert result.status == "ok"
    assert result.threshold is not None
    assert 50.0 < result.threshold <= 90.0
    assert result.precision_lower_bound is not None
    assert result.precision_lower_bound >= 0.95
    assert result.accepted >= 200
    assert clopper_pearson_lower(result.correct, result.accepted) == pytest.approx(result.precision_lower_bound)


def test_a_mistake_at_the_top_stops_the_search() -> None:
    scored = [(99.0, False)] * 5 + [(90.0 - i * 0.01, True) for i in range(100)]
    result = auto_accept_threshold("face", scored, 0.95)
    assert result.status == "target_not_reached"
    assert result.threshold is None


def test_per_label_groups_triples() -> None:
    triples = [("face", 90.0, True)] * 80 + [("cat", 90.0, True)] * 10
    results = per_label(triples, 0.95)
    assert results["face"].status == "ok"
    assert results["cat"].status == "too_few_audits"


def test_the_guarantee_holds_in_simulation() -> None:
    # Detections whose chance of being right rises with confidence; the chosen threshold's true
    # precision may fall below the target in about 5 % of runs at most.
    rng = np.random.default_rng(1)
    grid = np.linspace(0, 100, 1001)
    truth = 0.75 + 0.25 * (grid / 100) ** 0.5

    def true_precision(t: float) -> float:
        keep = grid >= t
        return float(truth[keep].mean())

    failures = 0
    runs = 200
    for _ in range(runs):
        conf = rng.uniform(0, 100, 400)
        ok = rng.random(400) < 0.75 + 0.25 * (conf / 100) ** 0.5
        result = auto_accept_threshold("x", list(zip(conf.tolist(), ok.tolist(), strict=True)), 0.95)
        if result.threshold is not None and true_precision(result.threshold) < 0.95:
            failures += 1
    assert failures / runs <= 0.08


def test_priority_is_the_strategys_value_of_a_review() -> None:
    assert route([pred(40)], policy("threshold"), None).priority is None  # oldest first
    assert route([pred(50)], policy("uncertainty"), None).priority == pytest.approx(1.0)
    assert route([pred(65)], policy("uncertainty"), None).priority == pytest.approx(box_entropy(65), abs=1e-6)
    assert route([], policy("uncertainty"), None).priority == 1.0
    assert route([pred(99)], policy("uncertainty"), None).priority is None  # not routed
    # The audit sample outranks every candidate, so rationing never starves it.
    assert route([pred(99)], policy("uncertainty"), sample_seq=10).priority == 2.0
    assert route([pred(40)], policy("threshold"), sample_seq=10).priority == 2.0


def test_free_slots_take_the_tighter_limit_and_none_without_limits() -> None:
    assert free_slots(BudgetLimits(0, 0), 500, 500) is None
    assert free_slots(BudgetLimits(10, 0), 7, 99) == 3
    assert free_slots(BudgetLimits(10, 4), 7, 3) == 1
    assert free_slots(BudgetLimits(10, 4), 12, 0) == 0


def test_waiting_images_rank_audits_first_then_by_strategy() -> None:
    def w(image_id: str, priority: float | None, arrival: float, audit: bool = False) -> Waiting:
        return Waiting(image_id, f"det-{image_id}", 0, priority, arrival, audit)

    waiting = [w("old", 0.2, 1), w("sure", 0.1, 2), w("unsure", 0.9, 3), w("audit", 2.0, 4, True)]
    assert [x.image_id for x in rank(waiting, "uncertainty")] == ["audit", "unsure", "old", "sure"]
    assert [x.image_id for x in rank(waiting, "threshold")] == ["audit", "old", "sure", "unsure"]


def test_status_says_an_image_waits_for_the_budget() -> None:
    entry = {"state": "detected", "route": "low_confidence", "loop_name": "det-x", "loop_status": "waiting_budget"}
    line = explain(entry, PipelineState(serving_version="v1"))
    assert "waiting for the review budget" in line
    assert "Max-Human-Reviews-Per-Hour" in line


@pytest.mark.parametrize("trials", [1, 2, 7, 30, 59, 100, 1000, 5000])
def test_clopper_pearson_lower_bound_equals_the_beta_quantile(trials: int) -> None:
    # scipy (there through the train extra) is the oracle; the service images compute the bound without it.
    from scipy.stats import beta

    for successes in sorted({1, trials // 3, trials // 2, trials - 1, trials} - {0}):
        expected = float(beta.ppf(0.05, successes, trials - successes + 1))
        assert clopper_pearson_lower(successes, trials) == pytest.approx(expected, abs=1e-9), (successes, trials)
