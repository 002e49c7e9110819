"""Calibrated confidence: a monotone map from a head's raw probability to the chance of being right.

The heads' raw probabilities come from regressions fitted on sampled windows (or few images), so they
crowd near 0 and 1 and do not mean what they say. At training time a Platt map,
``p = sigmoid(a · logit(raw) + b)``, is fitted on held-out candidates, each marked correct or not
(a box matching a true box of its label at IoU ≥ 0.5; an image label equal to the true one), with a
prior centred on the identity so that a small sample moves it little (:data:`PRIOR_WEIGHT`). A box
reported at confidence c is then correct about c % of the time. The map is monotone, so ranking, AP
and the best-F1 threshold's operating point are unchanged; only the scale moves. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

_EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, _EPS, 1.0 - _EPS)
    out: np.ndarray = np.log(q) - np.log1p(-q)
    return out


@dataclass(frozen=True)
class Calibration:
    """``p = sigmoid(slope · logit(raw) + intercept)``; the default is the identity."""

    slope: float = 1.0
    intercept: float = 0.0
    samples: int = 0  # held-out candidates it was fitted on (0: identity, never fitted)

    @property
    def is_identity(self) -> bool:
        return self.slope == 1.0 and self.intercept == 0.0

    def apply(self, raw: np.ndarray | float) -> np.ndarray:
        """Calibrated probabilities (0–1) of raw probabilities (0–1)."""
        z = self.slope * _logit(np.asarray(raw, np.float64)) + self.intercept
        # numpy, not scipy.special.expit: serving installs no scipy (only the trainer fits maps).
        out: np.ndarray = 1.0 / (1.0 + np.exp(-z))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"method": "platt", "slope": self.slope, "intercept": self.intercept, "samples": self.samples}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> Calibration:
        """``None`` (artifacts from before calibration) gives the identity."""
        if not raw:
            return cls()
        if raw.get("method", "platt") != "platt":
            raise ValueError(f"unknown calibration method {raw.get('method')!r}")
        return cls(float(raw["slope"]), float(raw["intercept"]), int(raw.get("samples", 0)))


# The map's prior: a Gaussian on (slope − 1, intercept) with variance 1/PRIOR_WEIGHT, centred on the
# identity. The heads' raw probabilities come from fitted regressions, so they start out roughly
# calibrated; the prior keeps a few dozen held-out candidates (all that 10 training images give) from
# moving the map far, and fades as the sample grows (each candidate adds its own information).
PRIOR_WEIGHT = 10.0


def fit_platt(raw: Sequence[float] | np.ndarray, correct: Sequence[bool] | np.ndarray) -> Calibration:
    """Fit the map on held-out (raw probability, correct?) pairs: the maximum a-posteriori slope and
    intercept of a logistic regression on ``logit(raw)``, under :data:`PRIOR_WEIGHT`'s prior.

    Platt's smoothed targets ((n₊+1)/(n₊+2), 1/(n₋+2)) are not used: with the few negatives a small
    training set gives, they asked that a sure negative be right a third of the time. The prior is what
    keeps a small or separable sample from mapping to certainty. With no positives or no negatives at
    all the identity is returned.
    """
    x = _logit(np.asarray(raw, np.float64))
    y = np.asarray(correct, bool)
    if x.shape != y.shape:
        raise ValueError("one correctness flag per score is required")
    if not y.any() or y.all():
        return Calibration()
    from scipy.optimize import minimize
    from scipy.special import expit

    target = y.astype(np.float64)

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        slope, intercept = params
        z = slope * x + intercept
        residual = expit(z) - target  # d(negative log-likelihood)/dz
        value = float(np.sum(np.logaddexp(0.0, z) - target * z))
        value += 0.5 * PRIOR_WEIGHT * ((slope - 1.0) ** 2 + intercept**2)
        grad = np.array([residual @ x + PRIOR_WEIGHT * (slope - 1.0), residual.sum() + PRIOR_WEIGHT * intercept])
        return value, grad

    fitted = minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
    slope, intercept = (float(v) for v in fitted.x)
    if not np.isfinite([slope, intercept]).all() or slope <= 0:
        return Calibration()  # a map must keep the ranking: fall back to the identity
    return Calibration(slope, intercept, int(y.size))


def expected_calibration_error(
    confidence: Sequence[float] | np.ndarray, correct: Sequence[bool] | np.ndarray, bins: int = 10
) -> float:
    """ECE over equal-width bins of confidence (0–1): Σ (bin share) · |accuracy − mean confidence|."""
    conf = np.asarray(confidence, np.float64)
    hit = np.asarray(correct, bool)
    if conf.size == 0:
        return 0.0
    index = np.minimum((conf * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        inside = index == b
        if inside.any():
            total += inside.mean() * abs(hit[inside].mean() - conf[inside].mean())
    return float(total)


def reliability(
    confidence: Sequence[float] | np.ndarray, correct: Sequence[bool] | np.ndarray, bins: int = 10
) -> list[dict[str, float]]:
    """Per non-empty bin: mean confidence, accuracy and count (a reliability diagram's points)."""
    conf = np.asarray(confidence, np.float64)
    hit = np.asarray(correct, bool)
    index = np.minimum((conf * bins).astype(int), bins - 1)
    return [
        {"confidence": float(conf[index == b].mean()), "accuracy": float(hit[index == b].mean()),
         "count": int((index == b).sum())}
        for b in range(bins)
        if (index == b).any()
    ]  # fmt: skip
