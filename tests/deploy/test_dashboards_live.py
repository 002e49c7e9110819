"""Every Grafana panel query returns data from a real Prometheus scraping a running local stack.

A private stack (own run directory, Redis database, key prefix, bucket and ports; the trainable
``local`` detection backend) runs real traffic while Debian's Prometheus scrapes every service at 1 s
with the ``app`` label the deployments carry:

- seed and test manifests from ``hitl.scenes``, a forced training run (v1 promoted), then a stream of
  scenes uploaded to ``images_for_detection/`` (S3 notification → intake → detector), a duplicate and
  three bad inputs (empty, not an image, truncated), with review parameters that send some detections
  to review for low confidence and every 4th as an audit sample;
- a simulated reviewer (``hitl review --auto``) answers from the scenes' truth, so loops complete,
  events are ingested, labels added and audit verdicts recorded; a second forced training run follows.

Panels that only show data when something rare happens get that event generated here:

- *Throttled starts*: the review service's A2I API is limited to 1 request/s per access key
  (``HITL_REVIEW_API_RATE_PER_SECOND``), so the dispatcher's burst of StartHumanLoop calls is throttled
  and retried.
- *Loops ended unanswered*: one open loop is stopped with the A2I API's ``StopHumanLoop``.
- *Events from A2I* (duplicates, malformed): a copy of an applied Completed event and a message that is
  not JSON are sent to the events queue (``HITL_SQS_MAX_RECEIVE_COUNT=1``: a malformed message is
  counted and dead-lettered at its first receive).
- *Tasks moved to the Redis dead-letter list*: a task arrives whose delivery counter already records
  ``HITL_MAX_DELIVERIES`` deliveries, the state a task leaves behind when it keeps killing its worker.
- *Task failure ratio*: a task message with an argument the task does not take (a poison message).

The dead-letter depth, queue depth, heartbeat, start-conflict and ``up`` panels read gauges and
counters that exist from the start (as 0). The queries are polled throughout the run: a panel passes
once it has returned at least one non-NaN sample (rate windows are 1 minute, so the traffic of the
first phases would have left them by the end).
"""

from __future__ import annotations

import contextlib
import json
import math
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
import pytest
import redis as redis_lib
from botocore.config import Config
from celery import Celery
from kombu.entity import Queue

from hitl.settings import Settings
from tests import redis_dbs
from tests.deploy.dashboards import PanelQuery, panel_queries
from tests.deploy.prom import Prometheus, PrometheusError, running_prometheus
from tests.integration.conftest import running_stack, wait_until

pytestmark = pytest.mark.integration

HITL = str(Path(sys.executable).parent / "hitl")
REDIS_DB = redis_dbs.DASHBOARDS
KEY_PREFIX = "hitldash"
BUCKET = "hitl-dash"
SEED_SCENES = 8
TEST_SCENES = 20
STREAM_SCENES = 25
MAX_DELIVERIES = 3
PARAMS = {
    "Minimum-Label-Detection-Confidence": "99.5",
    "Human-Sampling-Interval": "4",
    "Minimum-F1-Score": "0.1",
    # Training runs only when the test forces it.
    "Minimum-Untrained-Images": "100000",
}
A2I_DETAIL_TYPE = "SageMaker A2I HumanLoop Status Change"
SCRAPED = ("detector", "dispatcher", "ingestor", "reconciler", "trainer", "intake", "monitor", "review", "beat")


class Stack:
    def __init__(self, run_dir: Path, env: dict[str, str]) -> None:
        self.run_dir = run_dir
        self.env = env

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [HITL, *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        assert result.returncode == 0, f"hitl {' '.join(args)} failed ({result.returncode}): {result.stderr[-3000:]}"
        return result

    def client(self, service: str, endpoint: str | None = None) -> Any:
        return boto3.client(  # type: ignore[call-overload]
            service,
            endpoint_url=endpoint or self.env["AWS_ENDPOINT_URL"],
            region_name=self.env["AWS_DEFAULT_REGION"],
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            config=Config(retries={"max_attempts": 10, "mode": "standard"}),
        )

    def a2i(self) -> Any:
        from hitl.review.sigv4 import sign_unique_requests

        # Each request signed uniquely, as the pipeline's own A2I client does: the service refuses replays.
        return sign_unique_requests(
            self.client("sagemaker-a2i-runtime", self.env["AWS_ENDPOINT_URL_SAGEMAKER_A2I_RUNTIME"])
        )

    def celery(self) -> Celery:
        app = Celery("hitl", broker=self.env["HITL_REDIS_URL"])
        queues = [Queue(q) for q in ("detect", "dispatch", "ingest", "train")]  # type: ignore[no-untyped-call]
        app.conf.update(task_queues=queues, task_serializer="json")
        return app

    def scrape_targets(self) -> dict[str, str]:
        """app -> host:port of every /metrics endpoint, from stack.env."""
        targets = {}
        for key, url in self.env.items():
            if key.startswith("HITL_METRICS_") and key.endswith("_URL"):
                targets[key.removeprefix("HITL_METRICS_").removesuffix("_URL").lower()] = urlparse(url).netloc
        targets["review"] = urlparse(self.env["HITL_REVIEW_URL"]).netloc
        return targets

    def logs(self) -> str:
        logs = sorted((self.run_dir / "logs").glob("*.log"))
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in logs)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Stack]:
    run_dir = tmp_path_factory.mktemp("dashboards-stack")
    settings = {
        "HITL_KEY_PREFIX": KEY_PREFIX,
        "HITL_BUCKET": BUCKET,
        "HITL_DETECT_BACKEND": "local",
        "HITL_WORKER_CONCURRENCY": "1",
        "HITL_MODEL_CACHE_SECONDS": "2",
        "HITL_LOOP_LABELS": json.dumps(["face"]),
        "HITL_MAX_DELIVERIES": str(MAX_DELIVERIES),
        "HITL_REVIEW_API_RATE_PER_SECOND": "1",
        "HITL_SQS_MAX_RECEIVE_COUNT": "1",
        "HITL_INGEST_WAIT_SECONDS": "1",
        "HITL_INGEST_VISIBILITY_SECONDS": "5",
    }
    with running_stack(run_dir, redis_url, REDIS_DB, settings) as env:
        yield Stack(run_dir, env)


class PanelWatch:
    """Polls every panel query in the background; remembers which ones have returned data."""

    def __init__(self, prometheus: Prometheus, queries: list[PanelQuery]) -> None:
        self.prometheus = prometheus
        self.pending = {q.promql: q for q in queries}
        self.errors: dict[str, str] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="panel-watch", daemon=True)

    @staticmethod
    def has_data(result: list[dict[str, Any]]) -> bool:
        for series in result:
            samples = [series["value"]] if "value" in series else series.get("values", [])
            if any(not math.isnan(float(value)) for _, value in samples):
                return True
        return False

    def poll(self) -> None:
        with self._lock:
            pending = list(self.pending)
        for promql in pending:
            try:
                result = self.prometheus.query(promql)
            except PrometheusError as exc:
                self.errors[promql] = str(exc)
                continue
            if self.has_data(result):
                with self._lock:
                    self.pending.pop(promql, None)

    def remaining(self) -> list[PanelQuery]:
        with self._lock:
            return list(self.pending.values())

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.poll()

    def __enter__(self) -> PanelWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def scalar(prometheus: Prometheus, promql: str) -> float:
    result = prometheus.query(promql)
    return float(result[0]["value"][1]) if result else 0.0


def seed(stack: Stack) -> None:
    from hitl.scenes import generate_scenes, upload_set

    s3 = stack.client("s3")
    settings = Settings(bucket=BUCKET)
    upload_set(
        generate_scenes("train", SEED_SCENES, seed=0, source_prefix=f"s3://{BUCKET}/datasets/seed/images/"),
        settings.s3_uri(settings.seed_manifest_key),
        client=s3,
    )
    upload_set(
        generate_scenes("test", TEST_SCENES, seed=0, source_prefix=f"s3://{BUCKET}/datasets/test/images/"),
        settings.s3_uri(settings.test_manifest_key),
        client=s3,
    )


def force_training(stack: Stack, reason: str) -> None:
    stack.celery().send_task("hitl.train.check", kwargs={"force": True, "reason": reason}, queue="train")


def upload_stream(stack: Stack, truth: Path) -> None:
    """Scenes (and their truth for the reviewer), a duplicate and bad inputs, through S3 → intake."""
    from hitl.scenes import generate_scenes

    prefix = Settings().uploads_prefix
    scenes = generate_scenes("train", STREAM_SCENES, seed=1, source_prefix=f"s3://{BUCKET}/{prefix}")
    truth.write_text("".join(json.dumps(line) + "\n" for _, line in scenes))
    s3 = stack.client("s3")
    for png, line in scenes:
        key = line["source-ref"].removeprefix(f"s3://{BUCKET}/")
        s3.put_object(Bucket=BUCKET, Key=key, Body=png, ContentType="image/png")
    first = scenes[0][0]
    bad = {
        "copy-of-first.png": first,
        "empty.png": b"",
        "not-an-image.png": b"plain text",
        "truncated.png": first[:300],
    }
    for name, body in bad.items():
        s3.put_object(Bucket=BUCKET, Key=f"{prefix}{name}", Body=body)


def poison_tasks(stack: Stack) -> None:
    """A task that fails (an argument it does not take) and one that is dead-lettered on arrival."""
    app = stack.celery()
    app.send_task("hitl.detect.requeue_stale", kwargs={"not_an_argument": True}, queue="detect")
    task_id = str(uuid.uuid4())
    # What a task that killed its worker MAX_DELIVERIES times leaves behind (hitl.celery_app.PipelineTask).
    redis_lib.Redis.from_url(stack.env["HITL_REDIS_URL"]).set(
        Settings(key_prefix=KEY_PREFIX).key("deliveries", task_id), MAX_DELIVERIES, ex=3600
    )
    app.send_task("hitl.detect.requeue_stale", queue="detect", task_id=task_id)


def routed_reasons(stack: Stack) -> int:
    """How many (detection, routing reason) pairs the detection records in S3 hold."""
    from hitl.domain.records import DetectionRecord

    s3 = stack.client("s3")
    total = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="detections/"):
        for item in page.get("Contents", []):
            body = s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
            total += len(DetectionRecord.model_validate_json(body).route.reasons)
    return total


def loops(stack: Stack) -> dict[str, str]:
    client, found = stack.a2i(), {}
    kwargs: dict[str, Any] = {"FlowDefinitionArn": stack.env["HITL_FLOW_DEFINITION_ARN"], "MaxResults": 100}
    while True:
        page = client.list_human_loops(**kwargs)
        found.update({s["HumanLoopName"]: s["HumanLoopStatus"] for s in page["HumanLoopSummaries"]})
        if not page.get("NextToken"):
            return found
        kwargs["NextToken"] = page["NextToken"]


def stop_one_loop(stack: Stack) -> str:
    name: str = wait_until(
        lambda: next((n for n, s in loops(stack).items() if s == "InProgress"), None), 60, "an open human loop"
    )
    stack.a2i().stop_human_loop(HumanLoopName=name)
    return name


def send_event_messages(stack: Stack, completed_loop: str) -> None:
    """A copy of an already applied Completed event, and a message that is not JSON."""
    sqs = stack.client("sqs")
    url = sqs.get_queue_url(QueueName=Settings().events_queue)["QueueUrl"]
    duplicate = {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": A2I_DETAIL_TYPE,
        "source": "aws.sagemaker",
        "region": stack.env["AWS_DEFAULT_REGION"],
        "resources": [],
        "detail": {"humanLoopName": completed_loop, "humanLoopStatus": "Completed"},
    }
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(duplicate))
    sqs.send_message(QueueUrl=url, MessageBody="{not json")


def check_values_against_state(stack: Stack, prometheus: Prometheus, started: dict[str, str]) -> None:
    """What Prometheus scraped equals what this test did and what the parts hold: a panel showing
    data is not enough, its figures must be the true ones."""
    settings = Settings(key_prefix=KEY_PREFIX)
    redis = redis_lib.Redis.from_url(stack.env["HITL_REDIS_URL"])
    sqs = stack.client("sqs")

    def equals(promql: str, expected: float, timeout: float = 30) -> None:
        got: list[float] = []

        def matches() -> bool:
            got.append(scalar(prometheus, promql))
            return got[-1] == expected

        with contextlib.suppress(AssertionError):
            wait_until(matches, timeout, promql, interval=1.0)
        assert got[-1] == expected, f"{promql} = {got[-1]}, expected {expected}"

    # Counters of the traffic this test sent.
    equals("sum(hitl_detections_total)", STREAM_SCENES)  # the duplicate and the bad inputs are not detected
    equals("sum(hitl_images_duplicate_total)", 1)
    equals("sum(hitl_images_rejected_total)", 3)  # empty, not an image, truncated
    # Counted once per routing reason: a loop that is both low-confidence and an audit sample counts twice.
    equals("sum(hitl_loops_started_total)", routed_reasons(stack))
    equals("sum(hitl_events_ingested_total)", len(started))  # each loop's one terminal event, applied once
    equals("sum(hitl_events_malformed_total)", 1)
    equals('sum(hitl_events_ingested_total{status="Stopped"})', 1)
    equals('sum(hitl_events_ingested_total{status="Completed"})', len(started) - 1)
    equals('sum(hitl_training_runs_total{outcome!="skipped"})', 2)  # the two forced runs, whatever their outcome
    # The poison task failed once (the one dead-lettered on arrival never ran), and the failure-ratio
    # panel's expression saw it: its series existed at 0 before, so the failure is a rate.
    poison = 'hitl_task_duration_seconds_count{task="hitl.detect.requeue_stale",outcome="failure"}'
    every = 'hitl_task_duration_seconds_count{task="hitl.detect.requeue_stale"}'
    equals(f"sum({poison})", 1)
    ratio = f"sum(rate({poison}[1m])) / sum(rate({every}[1m]))"
    assert scalar(prometheus, f"max_over_time(({ratio})[10m:1s])") > 0, "the failure ratio never rose above 0"
    # The monitor's gauges against the queues themselves.
    dlq_detect = redis.llen(settings.key("dlq", "detect"))
    assert dlq_detect == 1, "the task dead-lettered on arrival"
    equals('hitl_dead_letter_depth{queue="detect",kind="redis"}', dlq_detect)
    events_dlq = sqs.get_queue_url(QueueName=f"{settings.events_queue}{settings.dlq_suffix}")["QueueUrl"]
    depth = int(
        sqs.get_queue_attributes(QueueUrl=events_dlq, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"][
            "ApproximateNumberOfMessages"
        ]
    )
    assert depth == 1, "the message that is not JSON, dead-lettered at its first receive"
    equals(f'hitl_dead_letter_depth{{queue="{settings.events_queue}",kind="sqs"}}', depth)
    equals('hitl_queue_depth{queue="detect",kind="redis"}', redis.llen("detect"))


def test_every_panel_query_returns_data(stack: Stack, tmp_path: Path) -> None:
    queries = panel_queries()
    assert queries, "no dashboard queries found"
    targets = stack.scrape_targets()
    assert set(targets) == {*SCRAPED}
    with (
        running_prometheus(tmp_path / "prometheus", scrape_targets=targets, interval="1s") as prometheus,
        PanelWatch(prometheus, queries) as watch,
    ):
        wait_until(lambda: scalar(prometheus, 'sum(up{app!=""})') == len(targets), 60, "every scrape target up")
        for name, value in PARAMS.items():
            stack.cli("params", "set", name, value)
        seed(stack)
        force_training(stack, "dashboards v1")
        wait_until(
            lambda: scalar(prometheus, 'sum(hitl_training_runs_total{outcome="promoted"})') >= 1,
            150,
            "v1 trained and promoted",
        )

        truth = tmp_path / "truth.jsonl"
        upload_stream(stack, truth)
        poison_tasks(stack)
        stopped = stop_one_loop(stack)
        wait_until(lambda: scalar(prometheus, "sum(hitl_detections_total)") >= STREAM_SCENES, 90, "every detection")
        reviewer = subprocess.run(
            [HITL, "review", "--auto", "--truth", str(truth), "--reviewer", "bob", "--until-idle", "6"],
            env=stack.env,
            capture_output=True,
            text=True,
            timeout=150,
            check=False,
        )
        assert reviewer.returncode == 0, reviewer.stderr[-3000:]
        started = loops(stack)
        assert started, "no human loop was started"
        wait_until(
            lambda: scalar(prometheus, "sum(hitl_events_ingested_total)") >= len(started),
            60,
            f"events of all {len(started)} loops ingested",
        )
        completed = next(n for n, s in started.items() if s == "Completed" and n != stopped)
        send_event_messages(stack, completed)
        force_training(stack, "dashboards v2")
        wait_until(lambda: scalar(prometheus, "sum(hitl_training_runs_total)") >= 2, 150, "the second training run")
        with contextlib.suppress(AssertionError):  # reported below, query by query
            wait_until(lambda: not watch.remaining(), 45, "every panel query to return data", interval=1.0)
        missing = watch.remaining()
        check_values_against_state(stack, prometheus, started)
    assert not missing, "panel queries that never returned data:\n" + "\n".join(
        f"  {q}" + (f"  [{watch.errors[q.promql]}]" if q.promql in watch.errors else "") for q in missing
    )
