"""The Redis store and the crash-safe ordering: output.json, then Completed, then the event."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis

from hitl.review.flows import FlowDefinition
from hitl.review.service import ReviewService, ServiceConfig
from hitl.review.store import LoopStore

pytestmark = pytest.mark.integration


class FlakyPublisher:
    """Records writes and events; fails while ``down`` is set, as S3 or EventBridge might."""

    def __init__(self) -> None:
        self.down = False
        self.outputs: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []

    def write_output(self, uri: str, document: dict[str, Any]) -> None:
        if self.down:
            raise ConnectionError("S3 unreachable")
        self.outputs[uri] = document

    def put_events(self, entries: list[dict[str, Any]]) -> list[int]:
        if self.down:
            raise ConnectionError("EventBridge unreachable")
        self.events += entries
        return []

    def get_image(self, bucket: str, key: str, max_bytes: int) -> tuple[bytes, str]:
        return b"", "image/png"

    def ready(self, bucket: str) -> bool:
        return not self.down


@pytest.fixture
def parts(redis_url: str, request: pytest.FixtureRequest) -> tuple[ReviewService, FlakyPublisher]:
    client = redis.Redis.from_url(redis_url)
    prefix = f"hitltest-store-{request.node.name}"
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)
    store = LoopStore(client, lambda *parts: ":".join((prefix, *parts)))
    publisher = FlakyPublisher()
    config = ServiceConfig(
        region="us-east-1",
        account="000000000000",
        event_source="hitl.review",
        event_bus="default",
        image_buckets=frozenset({"in"}),
    )
    service = ReviewService(store, publisher, config)
    service.register_flow(
        FlowDefinition.model_validate({"FlowDefinitionName": "fd", "Labels": ["face"], "S3OutputPath": "s3://out/a2i"})
    )
    return service, publisher


def start(service: ReviewService, name: str) -> None:
    service.start(
        {
            "HumanLoopName": name,
            "FlowDefinitionArn": "arn:aws:sagemaker:us-east-1:000000000000:flow-definition/fd",
            "HumanLoopInput": {"InputContent": json.dumps({"taskObject": "s3://in/a.png"})},
        }
    )


ANSWER = {"annotatedResult": {"boundingBoxes": [], "inputImageProperties": {"width": 10, "height": 10}}}


def test_answer_survives_an_s3_outage(parts: tuple[ReviewService, FlakyPublisher]) -> None:
    service, publisher = parts
    start(service, "loop-a")
    service.open_task("alice", "loop-a")
    publisher.down = True
    service.submit("alice", "loop-a", ANSWER)  # stored; output.json could not be written
    assert service.describe("loop-a")["HumanLoopStatus"] == "InProgress"
    assert service.queue("bob") == []  # all answers are in: nobody else gets it
    assert service.sweep().completed == []
    publisher.down = False
    report = service.sweep()
    assert report.completed == ["loop-a"]
    assert report.events_sent == 1
    described = service.describe("loop-a")
    assert described["HumanLoopStatus"] == "Completed"
    assert list(publisher.outputs) == [described["HumanLoopOutput"]["OutputS3Uri"]]
    assert json.loads(publisher.events[0]["Detail"])["humanLoopStatus"] == "Completed"


def test_events_wait_in_the_outbox_until_eventbridge_accepts(parts: tuple[ReviewService, FlakyPublisher]) -> None:
    service, publisher = parts
    for name in ("loop-b", "loop-c"):
        start(service, name)
        service.stop({"HumanLoopName": name})
    publisher.down = True
    report = service.sweep()
    assert sorted(report.stopped) == ["loop-b", "loop-c"]
    assert report.events_sent == 0
    assert service.store.outbox_length() == 2
    publisher.down = False
    assert service.sweep().events_sent == 2
    assert service.store.outbox_length() == 0
    assert sorted(json.loads(e["Detail"])["humanLoopName"] for e in publisher.events) == ["loop-b", "loop-c"]


def test_status_indexes_follow_the_loop(parts: tuple[ReviewService, FlakyPublisher]) -> None:
    service, _ = parts
    start(service, "loop-d")
    assert service.store.status_counts()["InProgress"] == 1
    service.stop({"HumanLoopName": "loop-d"})
    service.sweep()
    counts = service.store.status_counts()
    assert (counts["InProgress"], counts["Stopped"]) == (0, 1)
    service.delete("loop-d")
    assert sum(service.store.status_counts().values()) == 0
