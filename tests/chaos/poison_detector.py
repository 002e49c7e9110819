"""The detector service, whose model process dies on a poison image (as a segfaulting decoder or an
out-of-memory kill would take it down): ``python -m tests.chaos.poison_detector``.

Everything else is the real service: the task, its delivery counting and dead-lettering. An image
is poison when its bytes carry :data:`POISON_MARK` (a PNG text chunk written by the chaos load).
"""

from __future__ import annotations

import os
from typing import Any

POISON_MARK = b"chaos-poison-image"


class _PoisonAware:
    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.name = backend.name

    def detect(self, image: Any, data: bytes, uri: str) -> Any:
        if POISON_MARK in data:
            os._exit(13)
        return self.backend.detect(image, data, uri)


def _register() -> None:
    import services.detector.tasks as tasks

    real = tasks.create_backend
    tasks.create_backend = lambda settings: _PoisonAware(real(settings))  # type: ignore[assignment]


if __name__ == "__main__":
    from hitl.settings import get_settings
    from hitl.worker import run_worker

    run_worker("detector", ["detect"], _register, concurrency=get_settings().worker_concurrency or None)
