"""The confidence calibration map: fitting, applying, storing (pure, no model trained)."""

from __future__ import annotations

import numpy as np
import pytest

from hitl.model.artifact import ModelArtifact
from hitl.model.calibration import Calibration, expected_calibration_error, fit_platt, reliability
from tests.unit.model.headers import with_header


def _overconfident(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Raw scores whose true chance of being right is much lower than they claim."""
    rng = np.random.default_rng(seed)
    true_logit = rng.normal(-1.0, 2.0, n)
    correct = rng.random(n) < 1 / (1 + np.exp(-true_logit))
    raw = 1 / (1 + np.exp(-(3.0 * true_logit + 4.0)))  # stretched and shifted towards 1
    return raw, correct


def test_identity_is_the_default_and_changes_nothing() -> None:
    identity = Calibration()
    assert identity.is_identity
    raw = np.array([0.01, 0.3, 0.5, 0.9, 0.999])
    assert np.allclose(identity.apply(raw), raw, atol=1e-9)


def test_platt_fit_recovers_the_true_map_and_lowers_ece() -> None:
    raw, correct = _overconfident(4000)
    cal = fit_platt(raw, correct)
    assert cal.slope == pytest.approx(1 / 3, abs=0.03)
    assert cal.intercept == pytest.approx(-4 / 3, abs=0.1)
    assert cal.samples == raw.size
    before = expected_calibration_error(raw, correct)
    after = expected_calibration_error(cal.apply(raw), correct)
    assert before > 0.2
    # 10-bin ECE of 4,000 draws is itself ≈ 0.01–0.02 from sampling alone, and the prior pulls slightly.
    assert after < 0.03
    # On fresh data from the same source too.
    raw2, correct2 = _overconfident(4000, seed=1)
    assert expected_calibration_error(cal.apply(raw2), correct2) < 0.03


def test_small_samples_of_calibrated_scores_leave_them_as_they_are() -> None:
    # 60 held-out candidates (what 10 training images give) whose raw scores are already right. Platt's
    # smoothed targets compressed such scores on average (slope 0.78 over these draws): a sure negative
    # was asked to be right 1/(n₋+2) of the time.
    slopes = []
    for seed in range(50):
        rng = np.random.default_rng(seed)
        raw = rng.beta(0.5, 0.5, 60)
        slopes.append(fit_platt(raw, rng.random(60) < raw).slope)
    assert float(np.mean(slopes)) == pytest.approx(1.0, abs=0.1)


def test_the_prior_fades_as_the_sample_grows() -> None:
    few, many = fit_platt(*_overconfident(40)), fit_platt(*_overconfident(4000))
    assert abs(few.slope - 1) < abs(many.slope - 1)  # the few move the map less from the identity
    assert many.slope == pytest.approx(1 / 3, abs=0.03)


def test_map_keeps_the_ranking() -> None:
    raw, correct = _overconfident(500)
    cal = fit_platt(raw, correct)
    ordered = np.sort(raw)
    assert np.all(np.diff(cal.apply(ordered)) >= 0)


def test_one_sided_or_empty_samples_give_the_identity() -> None:
    assert fit_platt([0.2, 0.9], [True, True]).is_identity
    assert fit_platt([0.2, 0.9], [False, False]).is_identity
    assert fit_platt([], []).is_identity
    with pytest.raises(ValueError):
        fit_platt([0.2, 0.9], [True])


def test_few_samples_never_map_to_certainty() -> None:
    cal = fit_platt([0.1, 0.2, 0.8, 0.9], [False, False, True, True])  # perfectly separable
    assert float(cal.apply(0.01)) > 0.0
    assert float(cal.apply(0.999)) < 1.0
    assert float(cal.apply(0.9)) > float(cal.apply(0.1))


def test_ece_and_reliability_bins() -> None:
    conf = np.array([0.05, 0.05, 0.95, 0.95])
    correct = np.array([False, False, True, True])
    assert expected_calibration_error(conf, correct) == pytest.approx(0.05)
    assert expected_calibration_error(np.array([0.9] * 10), np.array([True] * 5 + [False] * 5)) == pytest.approx(0.4)
    bins = reliability(conf, correct)
    assert [b["count"] for b in bins] == [2, 2]
    assert bins[1]["accuracy"] == 1.0


def test_round_trip_and_artifacts_without_calibration_load_as_identity() -> None:
    cal = Calibration(0.4, -1.2, 321)
    assert Calibration.from_dict(cal.to_dict()) == cal
    assert Calibration.from_dict(None).is_identity
    with pytest.raises(ValueError):
        Calibration.from_dict({"method": "isotonic"})
    artifact = ModelArtifact(
        "classification", ("a", "b"), {"weights": np.zeros((2, 3), np.float32), "bias": np.zeros(2)},
        {"sizes": [96], "c": 0.1, "flip": True, "max_iter": 10}, calibration=cal,
    )  # fmt: skip
    assert ModelArtifact.from_bytes(artifact.to_bytes()).calibration == cal
    # An artifact written before calibration existed has no "calibration" key in its header.
    assert ModelArtifact.from_bytes(with_header(artifact, calibration=None)).calibration.is_identity


def test_calibration_folds_hold_every_image_out_once_and_keep_every_label() -> None:
    from hitl.model.training import TrainConfig, calibration_folds
    from hitl.scenes.targets import target_examples

    examples = target_examples("two-labels", "train", 8)
    folds = calibration_folds(examples, TrainConfig())
    held = sorted(i for _, out in folds for i in out)
    assert len(folds) == 2
    assert held == list(range(8))
    for fit, out in folds:
        assert not set(fit) & set(out)
    assert calibration_folds(examples[:5], TrainConfig()) == []  # too few: the identity map
