"""A bare Celery worker with the pipeline's own Celery settings and a no-op task (the baseline)."""

from __future__ import annotations

from typing import Any

from hitl.celery_app import app
from hitl.settings import get_settings
from hitl.worker import run_worker


def register() -> None:
    @app.task(name="bench.noop", bind=True)
    def noop(self: Any, counter: str) -> None:
        # The only work: tell the benchmark this task ran.
        from hitl.adapters.redis_index import connect

        connect(get_settings().redis_url).incr(counter)


if __name__ == "__main__":
    run_worker("noop", ["noop"], register, concurrency=get_settings().worker_concurrency or None)
