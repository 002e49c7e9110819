"""Routing strategies: which images teach the model most per human review. Pure: no I/O.

Four strategies, chosen by the runtime parameter ``Routing-Strategy``:

- ``threshold`` (the default): an image is a candidate when its most confident label is below the
  threshold; candidates are taken oldest first.
- ``uncertainty``: each box's confidence p gives a binary entropy H(p) (1 bit at p = 0.5, 0 at
  p = 0 or 1); an image's uncertainty is its most uncertain box. Candidates are taken most uncertain
  first.
- ``diverse-uncertainty``: as ``uncertainty``, but an image's score is discounted by how close its
  embedding is to an image already chosen (or recently sent), so a burst of near-duplicates does not
  all go to review.
- ``random``: a blind baseline; the order is a hash of the image id, so it is reproducible.

The audit sample is not a strategy's business: it is chosen every nth detection by
:func:`hitl.domain.routing.is_audit_sample`, whatever the strategy, and never becomes training data.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

Strategy = Literal["threshold", "uncertainty", "diverse-uncertainty", "random"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)
DEFAULT_STRATEGY: Strategy = "threshold"


def parse_strategy(value: str) -> Strategy:
    text = value.strip().lower()
    if text not in STRATEGIES:
        raise ValueError(f"unknown routing strategy {value!r}; known: {', '.join(STRATEGIES)}")
    return text  # type: ignore[return-value]


def box_entropy(confidence: float) -> float:
    """Binary entropy in bits of a box's confidence (0–100): how unsure the model is about that box."""
    p = min(1.0, max(0.0, confidence / 100.0))
    if p in (0.0, 1.0):
        return 0.0
    return -(p * math.log2(p) + (1.0 - p) * math.log2(1.0 - p))


def image_uncertainty(confidences: Sequence[float]) -> float:
    """An image's uncertainty: the entropy of its most uncertain box (0 for an image with no box:
    the model saw nothing there, with the candidate floor's certainty)."""
    return max((box_entropy(c) for c in confidences), default=0.0)


def uncertainty_gate(threshold: float) -> float:
    """The uncertainty at which an image becomes a candidate, from a confidence threshold (0–100):
    a box whose confidence lies between ``100 − t`` and ``t`` is uncertain enough to ask about."""
    return box_entropy(max(threshold, 100.0 - threshold))


def random_key(image_id: str, salt: str = "") -> float:
    """A uniform number in [0, 1) fixed by the image id: the random strategy's draw, reproducible
    across redeliveries."""
    digest = hashlib.sha256(f"{salt}/{image_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def image_descriptor(pixels: np.ndarray, side: int = 8) -> np.ndarray:
    """A cheap, deterministic image descriptor for near-duplicate checks when no embedding is at hand:
    the grey image averaged down to ``side``×``side`` blocks, centred and scaled to unit length (so
    brightness and contrast changes do not matter)."""
    grey = pixels.astype(np.float32).mean(axis=2) if pixels.ndim == 3 else pixels.astype(np.float32)
    h, w = grey.shape
    rows = np.array_split(np.arange(h), side)
    cols = np.array_split(np.arange(w), side)
    blocks = np.array([[grey[np.ix_(r, c)].mean() for c in cols] for r in rows], np.float32).ravel()
    blocks -= blocks.mean()
    norm = float(np.linalg.norm(blocks))
    out: np.ndarray = blocks / norm if norm > 0 else blocks
    return out


def cosine_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise 1 − cosine similarity (rows of ``a`` × rows of ``b``)."""
    an = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    bn = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    out: np.ndarray = np.clip(1.0 - an @ bn.T, 0.0, 2.0)
    return out


@dataclass(frozen=True)
class Candidate:
    """An image waiting for a review slot."""

    key: str  # image id
    arrival: float  # arrival order (time or sequence): older first when scores tie
    top_confidence: float | None  # 0–100; None: nothing found
    threshold: float  # 0–100, the threshold of its top label
    uncertainty: float  # image_uncertainty of its boxes
    embedding: np.ndarray | None = None


def is_candidate(c: Candidate, strategy: Strategy) -> bool:
    """Whether the strategy would send this image to review at all (before any budget)."""
    if strategy == "threshold":
        return c.top_confidence is None or c.top_confidence < c.threshold
    if strategy == "random":
        return True
    return c.top_confidence is None or c.uncertainty >= uncertainty_gate(c.threshold)


def diversity_radius(embeddings: np.ndarray) -> float:
    """Distance below which two images count as close: half the median nearest-neighbour distance
    among the candidates, so the rule needs no scale tuned per embedding."""
    if len(embeddings) < 2:
        return 1.0
    d = cosine_distances(embeddings, embeddings)
    np.fill_diagonal(d, np.inf)
    nearest = d.min(axis=1)
    return max(1e-6, 0.5 * float(np.median(nearest)))


def select(
    candidates: Sequence[Candidate],
    strategy: Strategy,
    k: int,
    *,
    recent: np.ndarray | None = None,
    radius: float | None = None,
    salt: str = "",
) -> list[Candidate]:
    """Up to ``k`` candidates to review now, best first; the rest wait.

    ``threshold`` takes eligible candidates oldest first; ``uncertainty`` the most uncertain first;
    ``random`` in hash order; ``diverse-uncertainty`` greedily the candidate with the highest
    uncertainty × min(1, distance to the nearest chosen or ``recent`` embedding / ``radius``).
    """
    if k <= 0:
        return []
    eligible = [c for c in candidates if is_candidate(c, strategy)]
    if strategy == "threshold":
        return sorted(eligible, key=lambda c: (c.arrival, c.key))[:k]
    if strategy == "random":
        return sorted(eligible, key=lambda c: (random_key(c.key, salt), c.key))[:k]
    ranked = sorted(eligible, key=lambda c: (-c.uncertainty, c.arrival, c.key))
    if strategy == "uncertainty" or not ranked or any(c.embedding is None for c in ranked):
        return ranked[:k]
    return _diverse(ranked, k, recent, radius)


def _diverse(ranked: list[Candidate], k: int, recent: np.ndarray | None, radius: float | None) -> list[Candidate]:
    emb = np.stack([np.asarray(c.embedding, np.float64) for c in ranked])
    scale = radius if radius is not None else diversity_radius(emb)
    u = np.array([c.uncertainty for c in ranked])
    # Distance of each candidate to the nearest image already chosen or recently sent.
    nearest = np.full(len(ranked), np.inf)
    if recent is not None and len(recent):
        nearest = cosine_distances(emb, np.asarray(recent, np.float64)).min(axis=1)
    chosen: list[int] = []
    free = np.ones(len(ranked), bool)
    for _ in range(min(k, len(ranked))):
        score = u * np.minimum(1.0, nearest / scale)
        score[~free] = -1.0
        best = int(np.argmax(score))  # ties: the earlier in uncertainty order
        chosen.append(best)
        free[best] = False
        nearest = np.minimum(nearest, cosine_distances(emb, emb[best : best + 1])[:, 0])
    return [ranked[i] for i in chosen]


def is_near_duplicate(embedding: np.ndarray, recent: np.ndarray | None, radius: float) -> bool:
    """Whether an image is within ``radius`` (cosine distance) of an image recently sent to review."""
    if recent is None or not len(recent):
        return False
    distances = cosine_distances(np.asarray(embedding, np.float64)[None, :], np.asarray(recent, np.float64))
    return bool(distances.min() < radius)
