"""When to train and whether to deploy. Pure: every input is an argument."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LabelCounts:
    """Monotonic counts of human-labelled examples in the dataset.

    ``total`` grows by one per new labelled example; ``at_last_success`` and ``at_last_attempt``
    are the totals that the last deployed and the last attempted training runs saw.
    """

    total: int
    at_last_success: int
    at_last_attempt: int

    @property
    def untrained(self) -> int:
        return self.total - self.at_last_success

    @property
    def since_last_attempt(self) -> int:
        return self.total - self.at_last_attempt


@dataclass(frozen=True)
class TrainDecision:
    train: bool
    reason: str


def should_train(enabled: bool, running: bool, counts: LabelCounts, minimum_untrained: int) -> TrainDecision:
    """The reference rule, without its retraining storm.

    After a run that was rejected (or failed) the same labels are not trained on again at every
    poll: the next attempt waits for ``minimum_untrained`` *more* labels since that attempt.
    """
    if not enabled:
        return TrainDecision(False, "automatic training is disabled")
    if running:
        return TrainDecision(False, "a training run is in progress")
    if counts.untrained < minimum_untrained:
        return TrainDecision(False, f"{counts.untrained} untrained labels, {minimum_untrained} needed")
    if counts.since_last_attempt < minimum_untrained:
        return TrainDecision(
            False,
            f"last attempt was rejected; {counts.since_last_attempt} new labels since, {minimum_untrained} needed",
        )
    return TrainDecision(True, f"{counts.untrained} untrained labels")


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str


def gate(candidate_f1: float, serving_f1: float | None, minimum_f1: float) -> GateDecision:
    """Deploy only at or above the minimum F1 and at or above the serving version on the same test set."""
    if candidate_f1 < minimum_f1:
        return GateDecision(False, f"F1 {candidate_f1:.4f} below the minimum {minimum_f1:.4f}")
    if serving_f1 is not None and candidate_f1 < serving_f1:
        return GateDecision(False, f"F1 {candidate_f1:.4f} below the serving version's {serving_f1:.4f}")
    if serving_f1 is None:
        return GateDecision(True, f"F1 {candidate_f1:.4f} passes the minimum; nothing serves yet")
    return GateDecision(True, f"F1 {candidate_f1:.4f} ≥ serving {serving_f1:.4f} and minimum {minimum_f1:.4f}")
