"""S3 ``ObjectCreated`` notification → detect task, via the submission client."""

from __future__ import annotations

from typing import Any

from hitl import metrics
from hitl.domain.s3events import MalformedMessage, parse_notification
from hitl.logs import get_logger
from hitl.submit import Client

log = get_logger("hitl.intake")


class UploadHandler:
    def __init__(self, client: Client) -> None:
        self.client = client

    def __call__(self, message: dict[str, Any]) -> None:
        for created in parse_notification(message["Body"]):
            result = self.client.submit_s3_object(created.uri, source="s3-event")
            if result.outcome == "queued":
                metrics.IMAGES_SUBMITTED.labels("s3-event").inc()
            elif result.outcome == "duplicate":
                metrics.IMAGES_DUPLICATE.labels("s3-event").inc()
            else:
                metrics.IMAGES_REJECTED.labels(result.reason or "unknown").inc()
            log.info(
                "upload_received",
                image_id=result.image_id,
                uri=created.uri,
                outcome=result.outcome,
                reason=result.reason,
            )


def on_error(message: dict[str, Any], exc: Exception) -> None:
    reason = exc.reason if isinstance(exc, MalformedMessage) else type(exc).__name__
    metrics.SQS_MESSAGES_FAILED.labels("uploads", reason).inc()
    receives = message.get("Attributes", {}).get("ApproximateReceiveCount")
    log.warning(
        "upload_message_failed", message_id=message["MessageId"], reason=reason, receives=receives, error=str(exc)
    )
