"""Auto-accept thresholds with a precision guarantee, from the audit sample. Pure: no I/O.

For one label, the audited detections are (confidence, correct) pairs, correct meaning a reviewer's
box matched it (IoU ≥ 0.5). Auto-accepting every detection at or above a threshold t has a precision;
the one-sided 95 % Clopper–Pearson lower bound of that precision, from the audited detections at or
above t, must reach the target.

Thresholds are tested from high to low and the search stops at the first that fails (fixed-sequence
testing): each test is at the 5 % level and no threshold is tested after a failure, so the chance
that the chosen threshold's true precision is below the target stays at most 5 %, although many
thresholds are tried. The sequence starts at the highest threshold with enough audited detections
for a flawless record to pass (``minimum_audits``): that start depends on the confidences only, never
on whether they were right.

The audit sample is chosen every nth detection whatever the confidence, so it is an unbiased sample
of what would be auto-accepted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

ALPHA = 0.05

Status = Literal["ok", "too_few_audits", "target_not_reached"]


def clopper_pearson_lower(successes: int, trials: int, alpha: float = ALPHA) -> float:
    """One-sided (1 − alpha) Clopper–Pearson lower bound of a binomial proportion; 0 without successes."""
    if trials <= 0 or successes <= 0:
        return 0.0
    if successes > trials:
        raise ValueError("successes exceed trials")
    if successes == trials:
        return float(alpha ** (1.0 / trials))
    # The bound is the p at which seeing ``successes`` or more is exactly alpha likely (the Beta
    # quantile scipy would give). The binomial tail rises with p, so bisection finds it to 1e-12.
    # Done here rather than with scipy: one quantile is not worth ~100 MB in every service image.
    low, high = 0.0, 1.0
    for _ in range(48):
        mid = (low + high) / 2
        if _upper_tail(successes, trials, mid) < alpha:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def _upper_tail(successes: int, trials: int, p: float) -> float:
    """P(X ≥ successes) for X ~ Binomial(trials, p), summed in log space (no overflow for large n)."""
    log_p, log_q = math.log(p), math.log1p(-p)
    log_n = math.lgamma(trials + 1)
    terms = [
        log_n - math.lgamma(i + 1) - math.lgamma(trials - i + 1) + i * log_p + (trials - i) * log_q
        for i in range(successes, trials + 1)
    ]
    peak = max(terms)
    return math.exp(peak) * math.fsum(math.exp(t - peak) for t in terms)


def minimum_audits(target: float, alpha: float = ALPHA) -> int:
    """The fewest audited detections at which a flawless record (all correct) reaches the target:
    the bound of n out of n is alpha^(1/n)."""
    if not 0.0 < target < 1.0:
        raise ValueError("the target precision must lie strictly between 0 and 1")
    return math.ceil(math.log(alpha) / math.log(target))


@dataclass(frozen=True)
class AutoAccept:
    label: str
    status: Status
    threshold: float | None  # 0–100; None: keep the configured threshold
    audited: int  # audited detections of this label
    accepted: int  # of those, at or above the threshold (0 when none)
    correct: int  # of the accepted, how many were right
    precision_lower_bound: float | None  # at the threshold
    minimum_audits: int
    target: float

    def as_dict(self) -> dict[str, object]:
        return {
            "label": self.label,
            "status": self.status,
            "threshold": self.threshold,
            "audited": self.audited,
            "accepted": self.accepted,
            "correct": self.correct,
            "precision_lower_bound": self.precision_lower_bound,
            "minimum_audits": self.minimum_audits,
            "target": self.target,
        }

    def explain(self) -> str:
        if self.status == "ok":
            return (
                f"auto-accept ≥ {self.threshold:.1f}: {self.correct}/{self.accepted} right, "
                f"precision ≥ {self.precision_lower_bound:.3f} (95 %)"
            )
        if self.status == "too_few_audits":
            return (
                f"too few audits: {self.audited} audited detections, at least {self.minimum_audits} needed "
                f"to show precision ≥ {self.target:.2f}; the configured threshold stays"
            )
        return (
            f"no threshold reaches precision ≥ {self.target:.2f} at 95 % on {self.audited} audits; "
            "the configured threshold stays"
        )


def auto_accept_threshold(
    label: str, scored: Sequence[tuple[float, bool]], target: float, alpha: float = ALPHA
) -> AutoAccept:
    """The lowest threshold (a confidence 0–100 seen in the audits) whose auto-accepted detections have
    a lower (1 − alpha) Clopper–Pearson bound on precision ≥ ``target``, by fixed-sequence testing."""
    need = minimum_audits(target, alpha)
    ordered = sorted(scored, key=lambda s: -s[0])
    n = len(ordered)
    if n < need:
        return AutoAccept(label, "too_few_audits", None, n, 0, 0, None, need, target)
    best: tuple[float, int, int, float] | None = None
    correct = 0
    i = 0
    while i < n:
        # Every detection at this exact confidence is accepted together.
        confidence = ordered[i][0]
        while i < n and ordered[i][0] == confidence:
            correct += int(ordered[i][1])
            i += 1
        if i < need:
            continue  # before the sequence's start: not tested
        bound = clopper_pearson_lower(correct, i, alpha)
        if bound < target:
            break
        best = (confidence, i, correct, bound)
    if best is None:
        return AutoAccept(label, "target_not_reached", None, n, 0, 0, None, need, target)
    threshold, accepted, right, bound = best
    return AutoAccept(label, "ok", threshold, n, accepted, right, bound, need, target)


def per_label(
    scored: Sequence[tuple[str, float, bool]], target: float, alpha: float = ALPHA
) -> dict[str, AutoAccept]:
    """:func:`auto_accept_threshold` for every label in (label, confidence, correct) triples."""
    by_label: dict[str, list[tuple[float, bool]]] = {}
    for label, confidence, ok in scored:
        by_label.setdefault(label, []).append((confidence, ok))
    return {label: auto_accept_threshold(label, items, target, alpha) for label, items in sorted(by_label.items())}
