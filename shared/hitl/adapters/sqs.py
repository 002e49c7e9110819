"""A long-polling SQS consumer with partial-batch semantics.

A message is deleted only after its handler returned, i.e. once its effect is durable; a failing
message stays, becomes visible again and, after ``maxReceiveCount`` receives, SQS moves it to the
dead-letter queue. A heartbeat thread extends the visibility of messages still being worked on.

At shutdown (:meth:`SqsConsumer.stop`) a long poll in progress is abandoned rather than waited out:
a pod or process then stops at once, not up to ``wait_seconds`` later, after its grace period has
run out. A batch being handled is finished first.
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


class ConsumerStopped(BaseException):
    """Raised in the consumer's thread, by :meth:`SqsConsumer.stop` from a signal handler, to abandon
    a long poll. A BaseException, like KeyboardInterrupt, so that botocore's retries and the poll
    loop's error handling let it through. Messages the abandoned poll had already been given stay
    invisible until their visibility timeout, then are delivered again: nothing is lost."""


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
        self._receiving = False

    def stop(self) -> None:
        """Stop after the batch in hand. Called from a signal handler of the thread that runs
        :meth:`run`: a long poll in progress there is abandoned (:class:`ConsumerStopped`)."""
        self.stopping.set()
        if self._receiving:
            raise ConsumerStopped

    def poll_once(self) -> BatchResult:
        sqs = aws.client("sqs")
        if self.stopping.is_set():
            return BatchResult()
        self._receiving = True
        try:
            response = sqs.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=self.batch_size,
                WaitTimeSeconds=self.wait_seconds,
                VisibilityTimeout=self.visibility_seconds,
                MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
            )
        finally:
            self._receiving = False
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
        try:
            while not self.stopping.is_set():
                try:
                    self.poll_once()
                except Exception:
                    log.exception("sqs_poll_failed", queue_url=self.url)
                    self.stopping.wait(2.0)
                if on_idle:
                    on_idle()
        except ConsumerStopped:
            log.info("sqs_poll_abandoned", queue_url=self.url)
