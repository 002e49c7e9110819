"""Fixtures of the review service tests: AWS resources in moto, service processes, clients, events."""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from PIL import Image, ImageDraw

from hitl.review import reviewers
from hitl.review.portal_client import PortalClient
from hitl.review.sigv4 import sign_unique_requests
from hitl.settings import Settings
from hitl.stack import procs

BUCKET = "hitl-test"
EVENTS_QUEUE = "hitl-review-test-events"
RULE = "hitl-review-test-rule"
REGION = "us-east-1"
ACCOUNT = "000000000000"
REVIEWERS = ["alice", "bob", "carol"]
IMAGE_KEY = "images/review/face.png"
IMAGE_SIZE = (640, 480)
FACE_BOX = {"left": 200, "top": 120, "width": 160, "height": 200}


def flow_arn(name: str) -> str:
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:flow-definition/{name}"


def flow(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "FlowDefinitionName": name,
        "TaskType": "BoundingBox",
        "Labels": ["face", "hat"],
        "TaskCount": 1,
        "S3OutputPath": f"s3://{BUCKET}/a2i-output",
        **extra,
    }


FLOWS = [
    flow("conf-boxes"),
    flow("conf-list"),
    flow("conf-stop"),
    flow("conf-expiring", TaskAvailabilityLifetimeInSeconds=1),
    flow("conf-quota", MaxOpenLoops=1),
    flow("review-pair", TaskCount=2),
    flow("review-classes", TaskType="ImageClassification", Labels=["face", "no-face"]),
    flow("review-verify", TaskType="LabelVerification"),
]


def input_content(image_key: str = IMAGE_KEY, **extra: Any) -> str:
    document = {
        "taskObject": f"s3://{BUCKET}/{image_key}",
        "initialValue": [{"label": "face", **FACE_BOX, "confidence": 41.5}],
        "routeReason": "low_confidence",
        **extra,
    }
    return json.dumps(document)


def face_png() -> bytes:
    image = Image.new("RGB", IMAGE_SIZE, (90, 140, 190))
    draw = ImageDraw.Draw(image)
    left, top = FACE_BOX["left"], FACE_BOX["top"]
    draw.ellipse((left + 10, top, left + 150, top + 190), fill=(240, 200, 160))
    draw.ellipse((left + 45, top + 60, left + 60, top + 75), fill=(30, 30, 30))
    draw.ellipse((left + 100, top + 60, left + 115, top + 75), fill=(30, 30, 30))
    draw.arc((left + 45, top + 100, left + 115, top + 150), 20, 160, fill=(150, 40, 40), width=5)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class Inbox:
    """Status-change events received from the SQS queue, kept for every test to look up."""

    sqs: Any
    url: str
    seen: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)

    def poll(self) -> None:
        found = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        for message in found.get("Messages", []):
            envelope = json.loads(message["Body"])
            detail = envelope["detail"]
            key = (detail["humanLoopName"], detail["humanLoopStatus"])
            self.seen.setdefault(key, []).append(envelope)
            self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])

    def wait(self, name: str, status: str, timeout: float = 20.0) -> dict[str, Any]:
        def arrived() -> bool:
            self.poll()
            return (name, status) in self.seen

        procs.wait_until(arrived, timeout, f"{status} event of {name}", interval=0.2)
        return self.seen[(name, status)][0]


@pytest.fixture(scope="session")
def aws_env(settings: Settings) -> dict[str, Any]:
    """The bucket, the events queue and the rule routing the service's events to it."""
    s3 = boto3.client("s3", region_name=REGION)
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key=IMAGE_KEY, Body=face_png(), ContentType="image/png")
    sqs = boto3.client("sqs", region_name=REGION)
    queue_url = sqs.create_queue(QueueName=EVENTS_QUEUE)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events = boto3.client("events", region_name=REGION)
    pattern = {"source": ["aws.sagemaker", "hitl.review"], "detail-type": ["SageMaker A2I HumanLoop Status Change"]}
    events.put_rule(Name=RULE, EventPattern=json.dumps(pattern), State="ENABLED")
    events.put_targets(Rule=RULE, Targets=[{"Id": "review-test-queue", "Arn": queue_arn}])
    return {"s3": s3, "sqs": sqs, "queue_url": queue_url}


@pytest.fixture(scope="session")
def inbox(aws_env: dict[str, Any]) -> Inbox:
    return Inbox(aws_env["sqs"], aws_env["queue_url"])


@pytest.fixture(scope="session")
def review_files(run_dir: Path) -> dict[str, Path]:
    folder = run_dir / "review-files"
    folder.mkdir(parents=True, exist_ok=True)
    reviewers.generate(folder / "reviewers.json", folder / "passwords.json", REVIEWERS, frozenset({"alice"}))
    (folder / "flows.json").write_text(json.dumps({"FlowDefinitions": FLOWS}))
    return {
        "reviewers": folder / "reviewers.json",
        "passwords": folder / "passwords.json",
        "flows": folder / "flows.json",
    }


@dataclass
class ReviewProcess:
    """One review service as a real uvicorn process, on its own Redis key namespace."""

    group: procs.ProcessGroup
    name: str
    env: dict[str, str]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.group.start(self.name, [procs.venv_bin("python"), "-m", "services.review"], self.env)
        try:
            # A loaded CI machine (other stacks running, coverage on) can take a while to import and bind.
            procs.wait_until(lambda: procs.http_ok(f"{self.url}/healthz"), 90, "review service")
        except TimeoutError as timeout:
            pid = self.group.pid(self.name)
            log = self.group.log_dir / f"{self.name}.log"
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
            state = "running" if pid and procs.alive(pid) else "exited"
            raise TimeoutError(f"{timeout} (process {state}, port {self.port}); its log:\n{tail}") from timeout

    def stop(self) -> None:
        self.group.stop(self.name, grace=10)

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def start_review(
    run_dir: Path, settings: Settings, aws_env: dict[str, Any], review_files: dict[str, Path]
) -> Iterator[Callable[..., ReviewProcess]]:
    group = procs.ProcessGroup(run_dir / "review-procs")
    started: list[ReviewProcess] = []

    def start(name: str, **overrides: str) -> ReviewProcess:
        env = {
            "HITL_REDIS_URL": settings.redis_url,
            "HITL_BUCKET": BUCKET,
            "HITL_KEY_PREFIX": f"hitltest-{name}",
            "HITL_REVIEW_PORT": str(procs.free_port()),
            "HITL_REVIEW_API_KEYS": json.dumps({"testing": "testing"}),
            "HITL_REVIEW_ADMIN_ACCESS_KEYS": json.dumps(["testing"]),
            "HITL_REVIEW_REVIEWERS_FILE": str(review_files["reviewers"]),
            "HITL_REVIEW_FLOW_DEFINITIONS_FILE": str(review_files["flows"]),
            "HITL_REVIEW_SESSION_SECRET": f"test-secret-{name}",
            "HITL_REVIEW_SWEEP_INTERVAL": "0.2",
            "HITL_REVIEW_ACCOUNT_ID": ACCOUNT,
            "HITL_REVIEW_REGION": REGION,
            "HITL_LOG_LEVEL": "WARNING",
            "AWS_ENDPOINT_URL": os.environ["AWS_ENDPOINT_URL"],
            **overrides,
        }
        # Names are the process group's keys: a second start under a running name would start nothing.
        assert all(p.name != f"review-{name}" for p in started), f"review-{name} already runs: use another name"
        process = ReviewProcess(group, f"review-{name}", env, int(env["HITL_REVIEW_PORT"]))
        process.start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def a2i_client(url: str, validate: bool = True, secret: str = "testing", key: str = "testing") -> Any:
    return sign_unique_requests(boto3.client(
        "sagemaker-a2i-runtime",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}, parameter_validation=validate),
    ))  # two equal calls within a second are not a replay: each signs its own x-hitl-request-id


@pytest.fixture(scope="session")
def passwords(review_files: dict[str, Path]) -> dict[str, str]:
    found: dict[str, str] = json.loads(review_files["passwords"].read_text())
    return found


@pytest.fixture
def portal_as(passwords: dict[str, str]) -> Callable[[str, str], PortalClient]:
    def sign_in(url: str, reviewer: str) -> PortalClient:
        client = PortalClient(url)
        client.sign_in(reviewer, passwords[reviewer])
        return client

    return sign_in


def wait_status(client: Any, name: str, status: str, timeout: float = 15.0) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def reached() -> bool:
        found.update(client.describe_human_loop(HumanLoopName=name))
        return bool(found["HumanLoopStatus"] == status)

    procs.wait_until(reached, timeout, f"{name} {status}", interval=0.1)
    return found


def unique(prefix: str) -> str:
    return f"{prefix}-{time.time_ns() % 10**12}"
