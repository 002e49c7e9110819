"""Dispatcher worker: ``python -m services.dispatcher``."""

from __future__ import annotations

from hitl.settings import get_settings
from hitl.worker import run_worker


def _register() -> None:
    import services.dispatcher.tasks  # noqa: F401  (registers hitl.dispatch.start_loop)


if __name__ == "__main__":
    run_worker("dispatcher", ["dispatch"], _register, concurrency=get_settings().worker_concurrency or None)
