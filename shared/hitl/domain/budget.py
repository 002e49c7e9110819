"""The human-review budget: how many loops may start now, and which waiting images go first. Pure.

Two limits, each off at 0: loops started in the last rolling hour (Max-Human-Reviews-Per-Hour) and
loops in progress at once (Max-Open-Human-Loops). An image over budget waits, never dropped; when
slots free up, the waiting images are ranked again: audit samples first (the audit estimate and the
auto-accept guarantee need an unbiased sample), then by the routing strategy: ``threshold`` oldest
first, the others by priority (the strategy's value of a review), oldest first among equals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hitl.domain.strategies import Strategy

HOUR_SECONDS = 3600.0


@dataclass(frozen=True)
class BudgetLimits:
    per_hour: int  # 0: no limit
    max_open: int  # 0: no limit

    @property
    def limited(self) -> bool:
        return self.per_hour > 0 or self.max_open > 0


def free_slots(limits: BudgetLimits, started_last_hour: int, open_loops: int) -> int | None:
    """Loops that may start now; None when nothing limits them."""
    room: list[int] = []
    if limits.per_hour > 0:
        room.append(limits.per_hour - started_last_hour)
    if limits.max_open > 0:
        room.append(limits.max_open - open_loops)
    return max(0, min(room)) if room else None


@dataclass(frozen=True)
class Waiting:
    image_id: str
    detection_id: str
    attempt: int
    priority: float | None  # None: no preference
    arrival: float  # when the image first waited (epoch seconds)
    audit: bool


def rank(waiting: Sequence[Waiting], strategy: Strategy) -> list[Waiting]:
    """The waiting images, best first."""

    def key(w: Waiting) -> tuple[int, float, float, str]:
        value = 0.0 if strategy == "threshold" or w.priority is None else -w.priority
        return (0 if w.audit else 1, value, w.arrival, w.image_id)

    return sorted(waiting, key=key)
