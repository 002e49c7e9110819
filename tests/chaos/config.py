"""How big a chaos run is: the smoke run inside ``make test``, the full run behind ``make chaos``."""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_SEED = 20261129

# Every kind of fault the full run injects at least once. ``kill_main:<service>`` kills a service's
# main process (and, as a container runtime does when its first process dies, what it leaves behind).
KILLED_SERVICES = ("detector", "dispatcher", "ingestor", "intake", "reconciler", "trainer", "beat", "review")
CHILD_KILLED_SERVICES = ("detector", "dispatcher")
ALL_KINDS = (
    *(f"kill_main:{name}" for name in KILLED_SERVICES),
    "kill_child",
    "moto_pause",
    "review_down",
    "review_throttle",
    "redis_restart",
    "replay_dispatch",
    "replay_completed",
)
# The smoke run: one of each kind that matters most, in about two minutes of load.
SMOKE_KINDS = (
    "kill_main:detector",
    "kill_child",
    "redis_restart",
    "kill_main:dispatcher",
    "moto_pause",
    "kill_main:ingestor",
    "replay_dispatch",
    "replay_completed",
)


@dataclass(frozen=True)
class Scale:
    name: str
    images: int
    poison_images: int
    kinds: tuple[str, ...]  # injected once each, in a seeded order, plus ``extra_faults`` random ones
    extra_faults: int
    interval: tuple[float, float]  # seconds between the starts of two faults
    moto_pause: float
    review_down: float
    review_throttle: float
    converge_timeout: float  # seconds without progress before the run counts as not converging
    sampling_interval: int = 10
    min_confidence: float = 50.0
    cli_batch: int = 25

    @property
    def faults(self) -> int:
        return len(self.kinds) + self.extra_faults


SMOKE = Scale(
    name="smoke",
    images=300,
    poison_images=1,
    kinds=SMOKE_KINDS,
    extra_faults=0,
    interval=(7.0, 10.0),
    moto_pause=20.0,
    review_down=20.0,
    review_throttle=15.0,
    converge_timeout=120.0,
    cli_batch=50,
)
FULL = Scale(
    name="full",
    images=2000,
    poison_images=2,
    kinds=ALL_KINDS,
    extra_faults=18,
    interval=(10.0, 20.0),
    moto_pause=20.0,
    review_down=45.0,
    review_throttle=30.0,
    converge_timeout=240.0,
)
SCALES = {s.name: s for s in (SMOKE, FULL)}


def seed_from_env() -> int:
    return int(os.environ.get("HITL_CHAOS_SEED", DEFAULT_SEED))
