"""Ingestor service: ``python -m services.ingestor`` (long-polls the A2I events queue)."""

from __future__ import annotations

from hitl.adapters.sqs import SqsConsumer, queue_url
from hitl.loop_service import run_consumer
from hitl.loops.ingest import Ingestor
from hitl.settings import get_settings
from services.ingestor.handler import on_error


def build() -> SqsConsumer:
    settings = get_settings()
    return SqsConsumer(
        queue_url(settings.events_queue),
        Ingestor(settings).handle_message,
        wait_seconds=settings.ingest_wait_seconds,
        batch_size=settings.ingest_batch_size,
        visibility_seconds=settings.ingest_visibility_seconds,
        on_error=on_error,
    )


if __name__ == "__main__":
    run_consumer("ingestor", build)
