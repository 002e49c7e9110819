"""The Redis store and the crash-safe ordering (output.json, then Completed, then the event), with
S3 and EventBridge served by a private moto server that the tests stop, restart and pause.

The event rule sends the service's events to an SQS queue in that moto, where they are counted.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import boto3
import pytest
import redis
from botocore.config import Config

from hitl.review import timefmt
from hitl.review.flows import FlowDefinition
from hitl.review.publisher import AwsPublisher
from hitl.review.service import ReviewService, ServiceConfig
from hitl.review.store import LoopStore
from hitl.stack import procs

pytestmark = pytest.mark.integration

OUT_BUCKET, IMAGES = "out", "in"
RULE = "review-store-rule"


@dataclass
class PrivateMoto:
    """moto's server on its own port, for one test: stopped (connection refused), restarted
    (empty, so the bucket, queue and rule are created again) or paused with SIGSTOP."""

    group: procs.ProcessGroup
    port: int
    queue_url: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, service: str, read_timeout: float = 30) -> Any:
        return boto3.client(
            service, endpoint_url=self.url, region_name="us-east-1", aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=read_timeout),
        )

    def start(self) -> None:
        self.group.start("moto", [procs.venv_bin("moto_server"), "-H", "127.0.0.1", "-p", str(self.port)])
        procs.wait_until(lambda: procs.http_ok(f"{self.url}/moto-api/"), 30, "private moto")
        self.client("s3").create_bucket(Bucket=OUT_BUCKET)
        sqs = self.client("sqs")
        self.queue_url = sqs.create_queue(QueueName="review-store-events")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events = self.client("events")
        pattern = {"source": ["hitl.review"]}
        events.put_rule(Name=RULE, EventPattern=json.dumps(pattern), State="ENABLED")
        events.put_targets(Rule=RULE, Targets=[{"Id": "q", "Arn": arn}])

    def stop(self) -> None:
        self.group.stop("moto", grace=5)

    def pause(self) -> None:
        os.kill(self.group.pid("moto") or 0, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.group.pid("moto") or 0, signal.SIGCONT)

    def events(self) -> list[dict[str, Any]]:
        """Every event delivered so far (removed from the queue)."""
        sqs, found = self.client("sqs"), []
        while True:
            batch = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            messages = batch.get("Messages", [])
            if not messages:
                return found
            for message in messages:
                found.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])


@pytest.fixture(scope="module")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateMoto]:
    server = PrivateMoto(procs.ProcessGroup(tmp_path_factory.mktemp("moto")), procs.free_port())
    server.start()
    yield server
    server.resume()
    server.stop()


@pytest.fixture
def moto(moto_server: PrivateMoto) -> PrivateMoto:
    """The module's moto, running and with no events left from an earlier test."""
    moto_server.resume()
    if not procs.port_open(moto_server.port):
        moto_server.start()
    moto_server.events()
    return moto_server


CONFIG = ServiceConfig(
    region="us-east-1", account="000000000000", event_source="hitl.review", event_bus="default",
    image_buckets=frozenset({IMAGES}),
)


@pytest.fixture
def store(redis_url: str, request: pytest.FixtureRequest) -> Iterator[LoopStore]:
    client = redis.Redis.from_url(redis_url)
    prefix = f"hitltest-store-{request.node.name}"
    yield LoopStore(client, lambda *parts: ":".join((prefix, *parts)))
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)


def service_for(store: LoopStore, moto: PrivateMoto, read_timeout: float = 30) -> ReviewService:
    service = ReviewService(store, AwsPublisher(lambda name: moto.client(name, read_timeout)), CONFIG)
    service.register_flow(
        FlowDefinition.model_validate(
            {"FlowDefinitionName": "fd", "Labels": ["face"], "S3OutputPath": f"s3://{OUT_BUCKET}/a2i"}
        )
    )
    return service


def start(service: ReviewService, name: str) -> None:
    service.start(
        {
            "HumanLoopName": name,
            "FlowDefinitionArn": "arn:aws:sagemaker:us-east-1:000000000000:flow-definition/fd",
            "HumanLoopInput": {"InputContent": json.dumps({"taskObject": f"s3://{IMAGES}/a.png"})},
        }
    )


ANSWER = {"annotatedResult": {"boundingBoxes": [], "inputImageProperties": {"width": 10, "height": 10}}}


def names_of(events: list[dict[str, Any]]) -> list[str]:
    return sorted(e["detail"]["humanLoopName"] for e in events)


def test_answer_survives_an_s3_outage(store: LoopStore, moto: PrivateMoto) -> None:
    service = service_for(store, moto)
    start(service, "loop-a")
    service.open_task("alice", "loop-a", [])
    moto.stop()
    service.submit("alice", "loop-a", ANSWER, [])  # stored; output.json could not be written
    assert service.describe("loop-a")["HumanLoopStatus"] == "InProgress"
    assert service.queue("bob", []) == []  # all answers are in: nobody else gets it
    assert service.sweep().completed == []
    moto.start()
    report = service.sweep()
    assert report.completed == ["loop-a"]
    assert report.events_sent == 1
    described = service.describe("loop-a")
    assert described["HumanLoopStatus"] == "Completed"
    bucket, _, key = described["HumanLoopOutput"]["OutputS3Uri"][5:].partition("/")
    written = json.loads(moto.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
    assert written["humanAnswers"][0]["answerContent"] == ANSWER
    [event] = moto.events()
    assert (event["detail"]["humanLoopName"], event["detail"]["humanLoopStatus"]) == ("loop-a", "Completed")


def test_events_wait_in_the_outbox_until_eventbridge_accepts(store: LoopStore, moto: PrivateMoto) -> None:
    service = service_for(store, moto)
    for name in ("loop-b", "loop-c"):
        start(service, name)
        service.stop({"HumanLoopName": name})
    moto.stop()
    report = service.sweep()
    assert sorted(report.stopped) == ["loop-b", "loop-c"]
    assert report.events_sent == 0
    assert service.store.outbox_length() == 2
    moto.start()
    assert service.sweep().events_sent == 2
    assert service.store.outbox_length() == 0
    assert names_of(moto.events()) == ["loop-b", "loop-c"]


def test_two_replicas_draining_at_once_neither_lose_nor_double_events(store: LoopStore, moto: PrivateMoto) -> None:
    """Replica A is stuck in PutEvents (moto paused) past its outbox lock; replica B drains too."""
    first, second = service_for(store, moto), service_for(store, moto)
    names = [f"loop-{i:02d}" for i in range(20)]
    for name in names:
        start(first, name)
        first.stop({"HumanLoopName": name})
    moto.pause()
    try:
        sweeping = threading.Thread(target=first.sweep)
        sweeping.start()
        procs.wait_until(lambda: store.outbox_length() == 20 and store.r.llen(store.k("outbox")) < 20, 20, "A sending")
        store.r.delete(store.k("lock", "outbox"))  # what the lock's expiry does while A is stuck
        draining = threading.Thread(target=second.drain_outbox)
        draining.start()
        procs.wait_until(lambda: store.r.llen(store.k("outbox")) == 0, 20, "B sending")
    finally:
        moto.resume()
    sweeping.join(60)
    draining.join(60)
    procs.wait_until(lambda: store.outbox_length() == 0, 30, "the outbox sent")
    assert names_of(moto.events()) == names, "every Stopped event exactly once"


def test_a_claim_whose_sender_died_is_sent_again(store: LoopStore, moto: PrivateMoto) -> None:
    service = service_for(store, moto)
    start(service, "loop-e")
    service.stop({"HumanLoopName": "loop-e"})
    moto.stop()
    service.sweep()
    claim, batch = store.outbox_claim(10)  # a replica took the event, then was killed
    assert len(batch) == 1
    assert store.outbox_length() == 1, "a claimed event still counts as unsent"
    moto.start()
    store.r.zadd(store.k("outbox", "claims"), {claim: 0})  # as old as a dead sender's claim
    assert service.sweep().events_sent == 1
    assert names_of(moto.events()) == ["loop-e"]


def test_status_indexes_follow_the_loop(store: LoopStore, moto: PrivateMoto) -> None:
    service = service_for(store, moto)
    start(service, "loop-d")
    assert service.store.status_counts()["InProgress"] == 1
    service.stop({"HumanLoopName": "loop-d"})
    service.sweep()
    counts = service.store.status_counts()
    assert (counts["InProgress"], counts["Stopped"]) == (0, 1)
    service.delete("loop-d")
    assert sum(service.store.status_counts().values()) == 0


def test_ended_loops_leave_redis_after_the_retention_period(store: LoopStore, moto: PrivateMoto) -> None:
    service = service_for(store, moto)
    for name in ("loop-old", "loop-open"):
        start(service, name)
    service.stop({"HumanLoopName": "loop-old"})
    service.sweep()
    later = timefmt.now() + timedelta(seconds=CONFIG.retention_seconds + 60)
    assert service.purge_ended(later) == 1
    assert service.store.get("loop-old") is None
    assert store.r.get(store.k("loop", "loop-old")) is None
    assert service.store.get("loop-open") is not None, "an open loop is kept"
    assert service.purge_ended(timefmt.now()) == 0
