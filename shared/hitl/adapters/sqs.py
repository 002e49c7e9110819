"""A long-polling SQS consumer with partial-batch semantics.

A message is deleted only after its handler returned, i.e. once its effect is durable; a failing
message stays, becomes visible again and, after ``maxReceiveCount`` receives, SQS moves it to the
dead-letter queue. A heartbeat thread extends the visibility of messages still being worked on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hitl import aws
from hitl.logs import get_logger

log = get_logger("hitl.sqs")

Handler = Callable[[dict[str, Any]], None]


@dataclass
class BatchResult:
    succeeded: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def queue_url(name: str) -> str:
    return str(aws.client("sqs").get_queue_url(QueueName=name)["QueueUrl"])


class SqsConsumer:
    def __init__(
        self,
        url: str,
        handler: Handler,
        *,
        wait_seconds: int = 20,
        batch_size: int = 10,
        visibility_seconds: int = 60,
        on_error: Callable[[dict[str, Any], Exception], None] | None = None,
    ) -> None:
        self.url = url
        self.handler = handler
        self.wait_seconds = wait_seconds
        self.batch_size = batch_size
        self.visibility_seconds = visibility_seconds
        self.on_error = on_error
        self.stopping = threading.Event()

    def poll_once(self) -> BatchResult:
        sqs = aws.client("sqs")
        response = sqs.receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=self.batch_size,
            WaitTimeSeconds=self.wait_seconds,
            VisibilityTimeout=self.visibility_seconds,
            MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
        )
        messages = response.get("Messages", [])
        result = BatchResult()
        if not messages:
            return result
        in_flight = {m["MessageId"]: m["ReceiptHandle"] for m in messages}
        done = threading.Event()
        extender = threading.Thread(target=self._extend, args=(in_flight, done), daemon=True)
        extender.start()
        try:
            for message in messages:
                try:
                    self.handler(message)
                except Exception as exc:
                    result.failed.append(message["MessageId"])
                    if self.on_error:
                        self.on_error(message, exc)
                    else:
                        log.exception("sqs_message_failed", message_id=message["MessageId"])
                    continue
                sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])
                in_flight.pop(message["MessageId"], None)
                result.succeeded.append(message["MessageId"])
        finally:
            done.set()
            extender.join(timeout=5)
        return result

    def _extend(self, in_flight: dict[str, str], done: threading.Event) -> None:
        sqs = aws.client("sqs")
        while not done.wait(self.visibility_seconds / 3):
            for message_id, handle in list(in_flight.items()):
                try:
                    sqs.change_message_visibility(
                        QueueUrl=self.url, ReceiptHandle=handle, VisibilityTimeout=self.visibility_seconds
                    )
                except Exception:  # noqa: BLE001 - the message may have been deleted meanwhile
                    log.warning("sqs_visibility_extend_failed", message_id=message_id)

    def run(self, on_idle: Callable[[], None] | None = None) -> None:
        while not self.stopping.is_set():
            try:
                self.poll_once()
            except Exception:
                log.exception("sqs_poll_failed", queue_url=self.url)
                self.stopping.wait(2.0)
            if on_idle:
                on_idle()
