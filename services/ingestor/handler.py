"""What the ingestor does with a message it could not apply: count it, log it, leave it to SQS."""

from __future__ import annotations

from typing import Any

from hitl import metrics
from hitl.domain.conversion import AnswerError
from hitl.domain.s3events import MalformedMessage
from hitl.logs import get_logger
from hitl.settings import get_settings

log = get_logger("hitl.ingestor")


def on_error(message: dict[str, Any], exc: Exception) -> None:
    """The message stays; SQS redelivers it and, after maxReceiveCount receives, moves it to the DLQ."""
    malformed = isinstance(exc, MalformedMessage | AnswerError)
    reason = exc.reason if isinstance(exc, MalformedMessage | AnswerError) else type(exc).__name__
    metrics.SQS_MESSAGES_FAILED.labels("events", reason).inc()
    receives = int(message.get("Attributes", {}).get("ApproximateReceiveCount") or 0)
    if malformed and receives >= get_settings().sqs_max_receive_count:
        # Its last receive: the message goes to the dead-letter queue now; count it once, by reason.
        metrics.EVENTS_MALFORMED.labels(reason).inc()
    log.warning(
        "event_message_failed", message_id=message.get("MessageId"), reason=reason, receives=receives, error=str(exc)
    )
