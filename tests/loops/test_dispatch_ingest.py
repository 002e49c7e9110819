"""Dispatcher and ingestor against real Redis, moto's server (S3, SQS) and the review service over HTTP.

The review service is driven into the states the dispatcher must survive: throttling through its
per-key rate limit, a conflict through a real second start with another input, an outage by
stopping its process. The ingestor's re-dispatch is a recording callable instead of Celery, and
Celery tasks run eagerly (``apply``) so no message reaches any broker.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from hitl import aws, metrics
from hitl.adapters.records import RecordStore
from hitl.adapters.redis_index import ImageIndex, connect
from hitl.adapters.sqs import SqsConsumer
from hitl.domain.a2i_events import HumanLoopStatusDetail
from hitl.domain.records import DetectedLabel, DetectionRecord, PixelBox, RouteDecision, Timings, detection_id_for
from hitl.logs import get_logger
from hitl.loops.dataset import LabelledDataset
from hitl.loops.dispatch import Dispatcher, DispatchExhausted
from hitl.loops.ingest import Ingestor
from hitl.loops.names import loop_name_for
from hitl.loops.registry import LoopRegistry
from hitl.settings import Settings, get_settings
from tests.review.conftest import (  # noqa: F401 - fixtures of the review service
    ReviewProcess,
    a2i_client,
    aws_env,
    flow_arn,
    review_files,
    start_review,
)

FLOW = flow_arn("conf-boxes")


@pytest.fixture(scope="module")
def review(start_review: Any) -> ReviewProcess:  # noqa: F811
    process: ReviewProcess = start_review("dispatch")
    return process


@pytest.fixture(scope="module")
def throttled_review(start_review: Any) -> ReviewProcess:  # noqa: F811
    """One StartHumanLoop a second per access key (burst 2); above it ThrottlingException."""
    process: ReviewProcess = start_review("dispatch-throttled", HITL_REVIEW_API_RATE_PER_SECOND="1")
    return process


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


def patient(url: str) -> Any:
    """A client for checking, with botocore's own retries: the throttled service refuses it too."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "sagemaker-a2i-runtime", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing",
        aws_secret_access_key="testing", config=Config(retries={"max_attempts": 10, "mode": "standard"}),
    )


def loops_named(client: Any, name: str) -> list[str]:
    found = client.list_human_loops(FlowDefinitionArn=FLOW, MaxResults=100, SortOrder="Descending")
    return [s["HumanLoopName"] for s in found["HumanLoopSummaries"] if s["HumanLoopName"] == name]


def counter(metric: Any, *labels: str) -> float:
    child = metric.labels(*labels) if labels else metric
    return float(child._value.get())


def test_throttling_is_retried_with_backoff_then_starts_once(
    loop_settings: Settings, throttled_review: ReviewProcess
) -> None:
    slow = loop_settings.model_copy(
        update={"dispatch_backoff_initial": 0.3, "dispatch_backoff_max": 1.0, "dispatch_max_attempts": 8}
    )
    client = a2i_client(throttled_review.url)
    records = [make_record(slow, ["low_confidence", "audit"]) for _ in range(4)]
    throttles = counter(metrics.LOOP_THROTTLES, "ThrottlingException")
    results = [Dispatcher(slow, client=client).dispatch(r.image_id, r.detection_id) for r in records]
    assert counter(metrics.LOOP_THROTTLES, "ThrottlingException") > throttles, "the rate limit was reached"
    assert [r.outcome for r in results] == ["started"] * 4
    # Delivered again: the registry answers, the service is not asked for a second loop.
    again = Dispatcher(slow, client=client).dispatch(records[0].image_id, records[0].detection_id)
    assert again.outcome == "already_started"
    name = loop_name_for(records[0].detection_id)
    assert loops_named(patient(throttled_review.url), name) == [name]
    info = LoopRegistry(slow).get(name)
    assert info is not None
    assert info.reasons == ["low_confidence", "audit"], "one loop serves both reasons"
    assert RecordStore(slow).get(records[0].image_id).loop_name == name  # type: ignore[union-attr]
    assert ImageIndex(slow).get(records[0].image_id)["loop_status"] == "InProgress"


def test_exhausted_throttling_raises_and_registers_nothing(
    loop_settings: Settings, start_review: Any  # noqa: F811
) -> None:
    # One call per 100 s per access key, burst 1: after one call every start is refused for a while.
    starved = start_review("dispatch-starved", HITL_REVIEW_API_RATE_PER_SECOND="0.01")
    client = a2i_client(starved.url)
    client.list_human_loops(FlowDefinitionArn=FLOW)  # the one token
    record = make_record(loop_settings, ["low_confidence"])
    tight = loop_settings.model_copy(update={"dispatch_max_attempts": 2})
    throttles = counter(metrics.LOOP_THROTTLES, "ThrottlingException")
    with pytest.raises(DispatchExhausted):
        Dispatcher(tight, client=client).dispatch(record.image_id, record.detection_id)
    assert counter(metrics.LOOP_THROTTLES, "ThrottlingException") == throttles + 2
    assert LoopRegistry(loop_settings).get(loop_name_for(record.detection_id)) is None


def test_input_content_carries_the_task_object_prediction_labels_and_reason(
    loop_settings: Settings, review: ReviewProcess
) -> None:
    record = make_record(loop_settings, ["audit"])
    client = a2i_client(review.url)
    seen: dict[str, Any] = {}

    def capture(params: dict[str, Any], **_: Any) -> None:
        seen.update(json.loads(params["HumanLoopInput"]["InputContent"]))

    client.meta.events.register("provide-client-params.sagemaker-a2i-runtime.StartHumanLoop", capture)
    Dispatcher(loop_settings, client=client).dispatch(record.image_id, record.detection_id)
    assert seen["taskObject"] == record.image_uri
    assert seen["initialValue"] == [
        {"label": "object", "confidence": 42.0, "left": 40, "top": 30, "width": 80, "height": 60}
    ]
    assert seen["labels"] == ["object"]
    assert seen["routeReason"] == "audit"
    described = client.describe_human_loop(HumanLoopName=loop_name_for(record.detection_id))
    assert described["HumanLoopStatus"] == "InProgress"


def test_conflict_means_already_started(loop_settings: Settings, review: ReviewProcess) -> None:
    record = make_record(loop_settings, ["low_confidence"])
    client = a2i_client(review.url)
    name = loop_name_for(record.detection_id)
    # The name is taken by a loop with another input: the service answers ConflictException.
    client.start_human_loop(
        HumanLoopName=name,
        FlowDefinitionArn=FLOW,
        HumanLoopInput={"InputContent": json.dumps({"taskObject": record.image_uri, "other": True})},
    )
    conflicts = counter(metrics.LOOP_CONFLICTS)
    result = Dispatcher(loop_settings, client=client).dispatch(record.image_id, record.detection_id)
    assert result.outcome == "already_started"
    assert counter(metrics.LOOP_CONFLICTS) == conflicts + 1
    assert loops_named(client, name) == [name]


# --- the dispatch task: transient failures retried within a budget, then dead-lettered ----------------


@pytest.fixture
def dispatch_task(loop_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The Celery task, run eagerly with a retry budget of 2 and no waiting between tries."""
    import services.dispatcher.tasks as tasks

    for name, value in {
        "HITL_TASK_RETRY_BUDGET": "2",
        "HITL_TASK_RETRY_BACKOFF_INITIAL": "0.01",
        "HITL_TASK_RETRY_BACKOFF_MAX": "0.02",
        "HITL_FLOW_DEFINITION_ARN": FLOW,
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield tasks
    tasks._dispatcher = None
    monkeypatch.undo()
    get_settings.cache_clear()


def dead_letters(settings: Settings, image_id: str) -> list[dict[str, Any]]:
    raw = connect(settings.redis_url).lrange(settings.key("dlq", "dispatch"), 0, -1)
    return [e for e in (json.loads(x) for x in raw) if e["kwargs"].get("image_id") == image_id]  # type: ignore[union-attr]


def test_review_service_outage_is_retried_then_dead_lettered_with_its_reason(
    loop_settings: Settings, review: ReviewProcess, dispatch_task: Any
) -> None:
    record = make_record(loop_settings, ["low_confidence"])
    dispatch_task._dispatcher = Dispatcher(get_settings(), client=a2i_client(review.url))
    retries = counter(metrics.TASK_RETRIES, "hitl.dispatch.start_loop", "EndpointConnectionError")
    review.stop()
    try:
        dispatch_task.start_loop.apply(kwargs={"image_id": record.image_id, "detection_id": record.detection_id})
    finally:
        review.start()
    assert counter(metrics.TASK_RETRIES, "hitl.dispatch.start_loop", "EndpointConnectionError") == retries + 2
    [entry] = dead_letters(loop_settings, record.image_id)
    assert entry["reason"] == "EndpointConnectionError after 2 retries"
    state = ImageIndex(loop_settings).get(record.image_id)
    assert (state["loop_status"], state["loop_error"]) == ("dead_lettered", entry["reason"])

    # Redriven once the service is back: the loop starts and the state moves on.
    dispatch_task.start_loop.apply(kwargs={"image_id": record.image_id, "detection_id": record.detection_id})
    assert ImageIndex(loop_settings).get(record.image_id)["loop_status"] == "InProgress"


def test_a_record_s3_does_not_show_is_retried_then_dead_lettered(
    loop_settings: Settings, review: ReviewProcess, dispatch_task: Any
) -> None:
    image_id = uuid.uuid4().hex * 2
    ImageIndex(loop_settings).claim(image_id, f"s3://{loop_settings.bucket}/images/{image_id}.png", "test")
    dispatch_task._dispatcher = Dispatcher(get_settings(), client=a2i_client(review.url))
    dispatch_task.start_loop.apply(kwargs={"image_id": image_id, "detection_id": detection_id_for(image_id)})
    [entry] = dead_letters(loop_settings, image_id)
    assert entry["reason"] == "record_missing after 2 retries"
    assert ImageIndex(loop_settings).get(image_id)["loop_status"] == "dead_lettered"


def test_a_late_dispatch_never_reopens_a_finished_loop(loop_settings: Settings, review: ReviewProcess) -> None:
    """The worker died after StartHumanLoop, before registering; the loop was answered and its
    event applied; then the dispatch is delivered again."""
    record = make_record(loop_settings, ["low_confidence"])
    name = loop_name_for(record.detection_id)
    client = a2i_client(review.url)
    dispatcher = Dispatcher(loop_settings, client=client)
    client.start_human_loop(
        HumanLoopName=name,
        FlowDefinitionArn=FLOW,
        HumanLoopInput={
            "InputContent": json.dumps(dispatcher_input(dispatcher, record), separators=(",", ":"), sort_keys=True)
        },
    )
    client.stop_human_loop(HumanLoopName=name)
    ingestor = Ingestor(loop_settings, redispatch=lambda *a: None)
    stopped = HumanLoopStatusDetail.model_validate({"humanLoopName": name, "humanLoopStatus": "Stopped"})
    assert ingestor.apply(stopped) == "applied"
    assert ImageIndex(loop_settings).get(record.image_id)["loop_status"] == "Stopped"

    dispatcher.dispatch(record.image_id, record.detection_id)
    info = LoopRegistry(loop_settings).get(name)
    assert info is not None
    assert info.status == "Stopped"
    assert name not in LoopRegistry(loop_settings).open_loops(older_than=float("inf"))
    assert ImageIndex(loop_settings).get(record.image_id)["loop_status"] == "Stopped"
    assert RecordStore(loop_settings).get(record.image_id).loop_status == "Stopped"  # type: ignore[union-attr]


def dispatcher_input(dispatcher: Dispatcher, record: DetectionRecord) -> dict[str, Any]:
    from hitl.loops.dispatch import input_content

    return input_content(record, dispatcher.labels_for(record))


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
    # An ended loop's registry entry is kept for the retention period, then leaves Redis.
    ttl = connect(loop_settings.redis_url).ttl(loop_settings.key("loop", name))
    assert 0 < ttl <= loop_settings.retention_days * 86400  # type: ignore[operator]

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
