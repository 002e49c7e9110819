"""Audit statistics: precision, recall, F1 and agreement with Wilson 95 % score intervals. Pure."""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959963984540054


def wilson(successes: float, trials: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion; (0, 1) when there are no trials."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    z2 = z * z
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / (1 + z2 / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Estimate:
    value: float | None
    low: float
    high: float
    n: float

    def as_dict(self) -> dict[str, float | None]:
        return {"value": self.value, "ci95_low": self.low, "ci95_high": self.high, "n": self.n}


def proportion(successes: float, trials: float) -> Estimate:
    low, high = wilson(successes, trials)
    return Estimate(successes / trials if trials > 0 else None, low, high, trials)


@dataclass(frozen=True)
class AuditCounts:
    """Sums over the audited loops of one model version."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    agree: int = 0  # loops where the model's whole prediction matched the human answer
    loops: int = 0

    def precision(self) -> Estimate:
        return proportion(self.tp, self.tp + self.fp)

    def recall(self) -> Estimate:
        return proportion(self.tp, self.tp + self.fn)

    def f1(self) -> Estimate:
        # F1 = 2TP / (2TP + FP + FN) = TP / (TP + (FP + FN) / 2): a proportion over that effective
        # number of trials, so the Wilson interval applies (an approximation, as for any ratio metric).
        return proportion(self.tp, self.tp + (self.fp + self.fn) / 2)

    def agreement(self) -> Estimate:
        return proportion(self.agree, self.loops)

    def report(self) -> dict[str, object]:
        return {
            "loops": self.loops,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": self.precision().as_dict(),
            "recall": self.recall().as_dict(),
            "f1": self.f1().as_dict(),
            "agreement": self.agreement().as_dict(),
        }
