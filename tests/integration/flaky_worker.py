"""A real Celery worker whose task kills its process while a Redis flag says "broken", for the
dead-letter redrive test: dead-lettered while broken, completed once redriven after the fix."""

from __future__ import annotations

import os
from typing import Any

from hitl.celery_app import PipelineTask, app
from hitl.worker import run_worker


def register() -> None:
    @app.task(name="hitl.test.crash_until_fixed", base=PipelineTask, bind=True)
    def crash_until_fixed(self: Any, marker: str) -> None:
        from hitl.adapters.redis_index import connect
        from hitl.settings import get_settings

        settings = get_settings()
        redis = connect(settings.redis_url)
        if redis.exists(settings.key("test", "broken")):
            os._exit(13)  # as a decoder crash would, until the bug is fixed
        redis.rpush(settings.key("test", "fixed-done"), marker)


if __name__ == "__main__":
    run_worker("flaky", ["flaky"], register, concurrency=1)
