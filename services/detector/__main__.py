"""Detector worker: ``python -m services.detector``."""

from __future__ import annotations

from hitl.settings import get_settings
from hitl.worker import run_worker


def _register() -> None:
    import services.detector.tasks  # noqa: F401  (registers hitl.detect)


if __name__ == "__main__":
    run_worker("detector", ["detect"], _register, concurrency=get_settings().worker_concurrency or None)
