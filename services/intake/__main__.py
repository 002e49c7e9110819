"""Upload intake: ``python -m services.intake`` (S3 notifications from SQS → detect queue)."""

from __future__ import annotations

from hitl.adapters.sqs import SqsConsumer, queue_url
from hitl.loop_service import run_consumer
from hitl.settings import get_settings
from hitl.submit import Client
from services.intake.handler import UploadHandler, on_error


def build() -> SqsConsumer:
    settings = get_settings()
    return SqsConsumer(
        queue_url(settings.uploads_queue),
        UploadHandler(Client(settings)),
        on_error=on_error,
        wait_seconds=settings.intake_wait_seconds,
    )


if __name__ == "__main__":
    run_consumer("intake", build)
