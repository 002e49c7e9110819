from __future__ import annotations

import pytest

from hitl.training.policy import LabelCounts, gate, should_train


@pytest.mark.parametrize(
    ("candidate", "serving", "minimum", "promote"),
    [
        (0.79, None, 0.8, False),  # below the minimum, nothing serving
        (0.80, None, 0.8, True),  # at the minimum
        (0.85, 0.90, 0.8, False),  # below the serving version
        (0.90, 0.90, 0.8, True),  # equal to the serving version
        (0.95, 0.90, 0.8, True),
        (0.75, 0.70, 0.8, False),  # better than serving but below the minimum
    ],
)
def test_gate(candidate: float, serving: float | None, minimum: float, promote: bool) -> None:
    assert gate(candidate, serving, minimum).promote is promote


def test_gate_says_why() -> None:
    assert "minimum" in gate(0.5, None, 0.8).reason
    assert "serving" in gate(0.85, 0.9, 0.8).reason


def test_trains_when_enough_untrained_labels() -> None:
    assert should_train(True, False, LabelCounts(10, 0, 0), 10).train


def test_not_when_disabled_or_running_or_too_few() -> None:
    assert not should_train(False, False, LabelCounts(50, 0, 0), 10).train
    assert not should_train(True, True, LabelCounts(50, 0, 0), 10).train
    assert not should_train(True, False, LabelCounts(9, 0, 0), 10).train


def test_no_retraining_storm_after_a_rejection() -> None:
    # v1 trained at 10 labels; an attempt at 25 was rejected; 5 more labels arrived since.
    after_rejection = LabelCounts(total=30, at_last_success=10, at_last_attempt=25)
    decision = should_train(True, False, after_rejection, 10)
    assert not decision.train
    assert "rejected" in decision.reason
    assert should_train(True, False, LabelCounts(35, 10, 25), 10).train
