"""Dispatcher and ingestor against real Redis and moto's server (S3, SQS).

In-process fakes, only where nothing local can stand in: botocore's Stubber feeds the dispatcher's
A2I client ThrottlingException / ServiceQuotaExceededException / ConflictException sequences
(checked against the real service model), and the ingestor's re-dispatch is a recording callable
instead of Celery.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from hitl import aws
from hitl.adapters.records import RecordStore
from hitl.adapters.redis_index import ImageIndex
from hitl.adapters.sqs import SqsConsumer
from hitl.domain.a2i_events import HumanLoopStatusDetail
from hitl.domain.records import DetectedLabel, DetectionRecord, PixelBox, RouteDecision, Timings, detection_id_for
from hitl.logs import get_logger
from hitl.loops.dataset import LabelledDataset
from hitl.loops.dispatch import Dispatcher, DispatchExhausted
from hitl.loops.ingest import Ingestor
from hitl.loops.names import loop_name_for
from hitl.loops.registry import LoopRegistry
from hitl.settings import Settings

FLOW = "arn:aws:sagemaker:us-east-1:000000000000:flow-definition/hitl-local-review"


@pytest.fixture
def loop_settings(settings: Settings) -> Settings:
    s3 = aws.client("s3")
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=settings.bucket)
    return settings.model_copy(
        update={
            "flow_definition_arn": FLOW,
            "dispatch_backoff_initial": 0.01,
            "dispatch_backoff_max": 0.02,
            "dispatch_max_attempts": 4,
            "labeled_dataset": f"ds-{uuid.uuid4().hex[:8]}",
        }
    )


def make_record(settings: Settings, reasons: list[str]) -> DetectionRecord:
    image_id = uuid.uuid4().hex * 2
    record = DetectionRecord(
        detection_id=detection_id_for(image_id),
        image_id=image_id,
        image_uri=f"s3://{settings.bucket}/images/{image_id}.png",
        width=160,
        height=120,
        model_version="v1",
        backend="fixed",
        labels=[DetectedLabel(label="object", confidence=42.0, box_px=PixelBox(left=40, top=30, width=80, height=60))],
        route=RouteDecision(reasons=reasons),
        timings=Timings(),
    )
    RecordStore(settings).put(record)
    ImageIndex(settings).claim(image_id, record.image_uri, "test")
    return record


def stubbed_a2i() -> tuple[Any, Stubber]:
    client = boto3.client(
        "sagemaker-a2i-runtime", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    return client, Stubber(client)


def start_params(name: str) -> dict[str, Any]:
    from botocore.stub import ANY

    return {"HumanLoopName": name, "FlowDefinitionArn": FLOW, "HumanLoopInput": ANY}


def test_throttling_is_retried_with_backoff_then_starts_once(loop_settings: Settings) -> None:
    record = make_record(loop_settings, ["low_confidence", "audit"])
    name = loop_name_for(record.detection_id)
    client, stub = stubbed_a2i()
    stub.add_client_error("start_human_loop", "ThrottlingException", http_status_code=429)
    stub.add_client_error("start_human_loop", "ServiceQuotaExceededException", http_status_code=402)
    stub.add_response(
        "start_human_loop",
        {"HumanLoopArn": f"arn:aws:sagemaker:us-east-1:000000000000:human-loop/{name}"},
        start_params(name),
    )
    with stub:
        result = Dispatcher(loop_settings, client=client).dispatch(record.image_id, record.detection_id)
        # Delivered again: the registry answers, A2I is not called a second time (no stubbed response left).
        again = Dispatcher(loop_settings, client=client).dispatch(record.image_id, record.detection_id)
    stub.assert_no_pending_responses()
    assert (result.loop_name, result.outcome, again.outcome) == (name, "started", "already_started")
    info = LoopRegistry(loop_settings).get(name)
    assert info is not None
    assert info.reasons == ["low_confidence", "audit"], "one loop serves both reasons"
    assert RecordStore(loop_settings).get(record.image_id).loop_name == name  # type: ignore[union-attr]
    assert ImageIndex(loop_settings).get(record.image_id)["loop_status"] == "InProgress"


def test_input_content_carries_the_task_object_prediction_labels_and_reason(loop_settings: Settings) -> None:
    record = make_record(loop_settings, ["audit"])
    client, stub = stubbed_a2i()
    seen: dict[str, Any] = {}

    def capture(params: dict[str, Any], **_: Any) -> None:
        seen.update(json.loads(params["HumanLoopInput"]["InputContent"]))

    client.meta.events.register("provide-client-params.sagemaker-a2i-runtime.StartHumanLoop", capture)
    stub.add_response("start_human_loop", {"HumanLoopArn": "arn:aws:sagemaker:us-east-1:000000000000:human-loop/x"})
    with stub:
        Dispatcher(loop_settings, client=client).dispatch(record.image_id, record.detection_id)
    assert seen["taskObject"] == record.image_uri
    assert seen["initialValue"] == [
        {"label": "object", "confidence": 42.0, "left": 40, "top": 30, "width": 80, "height": 60}
    ]
    assert seen["labels"] == ["object"]
    assert seen["routeReason"] == "audit"


def test_conflict_means_already_started_and_exhausted_throttling_raises(loop_settings: Settings) -> None:
    record = make_record(loop_settings, ["low_confidence"])
    client, stub = stubbed_a2i()
    stub.add_client_error("start_human_loop", "ConflictException", http_status_code=409)
    with stub:
        assert (
            Dispatcher(loop_settings, client=client).dispatch(record.image_id, record.detection_id).outcome
            == "already_started"
        )

    other = make_record(loop_settings, ["low_confidence"])
    client, stub = stubbed_a2i()
    for _ in range(loop_settings.dispatch_max_attempts):
        stub.add_client_error("start_human_loop", "ThrottlingException", http_status_code=429)
    with stub, pytest.raises(DispatchExhausted):
        Dispatcher(loop_settings, client=client).dispatch(other.image_id, other.detection_id)
    stub.assert_no_pending_responses()
    assert LoopRegistry(loop_settings).get(loop_name_for(other.detection_id)) is None


def _register(settings: Settings, record: DetectionRecord, attempt: int = 0) -> str:
    name: str = loop_name_for(record.detection_id, attempt)
    LoopRegistry(settings).register(
        name, record.image_id, record.detection_id, list(record.route.reasons), "v1", attempt
    )
    return name


def test_expired_low_confidence_loop_is_redispatched_once(loop_settings: Settings) -> None:
    record = make_record(loop_settings, ["low_confidence"])
    calls: list[tuple[str, str, int]] = []
    ingestor = Ingestor(loop_settings, redispatch=lambda *a: calls.append(a))
    name = _register(loop_settings, record)
    expired = HumanLoopStatusDetail.model_validate(
        {"humanLoopName": name, "humanLoopStatus": "Failed", "failureCode": "Expired", "failureReason": ""}
    )
    assert ingestor.apply(expired) == "applied"
    assert ingestor.apply(expired) == "duplicate"
    assert calls == [(record.image_id, record.detection_id, 1)]
    entry = ImageIndex(loop_settings).get(record.image_id)
    assert (entry["loop_status"], entry["answer_outcome"]) == ("Expired", "redispatched")

    # The re-dispatched loop expires too: recorded, not started a third time.
    second = _register(loop_settings, record, attempt=1)
    ingestor.apply(expired.model_copy(update={"human_loop_name": second}))
    assert len(calls) == 1
    assert ImageIndex(loop_settings).get(record.image_id)["answer_outcome"] == "expired"

    audit_only = make_record(loop_settings, ["audit"])
    stopped = HumanLoopStatusDetail.model_validate(
        {"humanLoopName": _register(loop_settings, audit_only), "humanLoopStatus": "Stopped"}
    )
    assert ingestor.apply(stopped) == "applied"
    assert ImageIndex(loop_settings).get(audit_only.image_id)["answer_outcome"] == "stopped"


def test_completed_loop_twice_and_concurrently_adds_one_example(loop_settings: Settings) -> None:
    record = make_record(loop_settings, ["low_confidence"])
    name = _register(loop_settings, record)
    output_key = f"a2i-output/flow/{name}/output.json"
    output = {
        "humanLoopName": name,
        "inputContent": {"taskObject": record.image_uri, "labels": ["object"]},
        "humanAnswers": [
            {
                "answerContent": {
                    "annotatedResult": {
                        "boundingBoxes": [{"label": "object", "left": 40, "top": 30, "width": 80, "height": 60}],
                        "inputImageProperties": {"width": 160, "height": 120},
                    }
                },
                "submissionTime": "2024-01-01T00:00:00.000Z",
            }
        ],
    }
    aws.client("s3").put_object(Bucket=loop_settings.bucket, Key=output_key, Body=json.dumps(output).encode())
    detail = HumanLoopStatusDetail.model_validate(
        {
            "humanLoopName": name,
            "humanLoopStatus": "Completed",
            "humanLoopOutput": {"outputS3Uri": f"s3://{loop_settings.bucket}/{output_key}"},
        }
    )
    first, second = Ingestor(loop_settings), Ingestor(loop_settings)
    # Two ingestors both past the duplicate check (a race): the effect still lands once.
    log = get_logger("test")
    first._completed(detail, first.registry.get(name), log)
    second._completed(detail, second.registry.get(name), log)
    assert first.apply(detail) == "applied"
    assert second.apply(detail) == "duplicate"
    dataset = LabelledDataset(loop_settings)
    assert dataset.untrained_count() == 1
    lines = list(dataset.lines())
    assert len(lines) == 1
    assert lines[0]["bounding-box"]["annotations"][0]["left"] == 40


def test_malformed_message_reaches_the_dlq_after_max_receive_count(loop_settings: Settings) -> None:
    from services.ingestor.handler import on_error

    sqs = aws.client("sqs")
    suffix = uuid.uuid4().hex[:8]
    dlq = sqs.create_queue(QueueName=f"ev-{suffix}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = sqs.create_queue(
        QueueName=f"ev-{suffix}",
        Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"})},
    )["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="{not json")
    failures: list[str] = []

    def record_error(message: dict[str, Any], exc: Exception) -> None:
        failures.append(getattr(exc, "reason", type(exc).__name__))
        on_error(message, exc)

    consumer = SqsConsumer(
        url, Ingestor(loop_settings).handle_message, wait_seconds=0, visibility_seconds=0, on_error=record_error
    )
    for _ in range(4):
        consumer.poll_once()
    assert failures == ["not_json", "not_json"]
    moved = sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=1)["Messages"]
    assert [m["Body"] for m in moved] == ["{not json"]
