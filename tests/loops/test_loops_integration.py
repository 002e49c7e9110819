"""Human loops end to end on the local stack: real Redis, moto's server (S3, SQS, EventBridge, SSM),
the review service over HTTP, the detector/dispatcher/ingestor/reconciler worker processes and the
simulated reviewer (``hitl review --auto``) as a subprocess. No fakes."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import pytest
from celery import Celery
from kombu.entity import Queue
from prometheus_client.parser import text_string_to_metric_families

from hitl.domain.records import DetectionRecord
from hitl.loops.names import loop_name_for
from hitl.stack import procs
from tests.integration.conftest import LocalStack, wait_until
from tests.integration.images import valid_image, write

pytestmark = pytest.mark.integration

N_IMAGES = 200
SAMPLING_INTERVAL = 5
MIN_CONFIDENCE = 50.0
SEED_BASE = 70_000
DATASET_LINES = "datasets/human-labels/lines/"
DETAIL_TYPE = "SageMaker A2I HumanLoop Status Change"


def fixed_confidence(data: bytes) -> float:
    """The ``fixed`` backend's confidence for these bytes (hitl.adapters.detection.FixedBackend)."""
    return float(int.from_bytes(hashlib.blake2b(data, digest_size=2).digest(), "big") % 1000) / 10.0


def a2i(stack: LocalStack) -> Any:
    return boto3.client(
        "sagemaker-a2i-runtime",
        endpoint_url=stack.env["AWS_ENDPOINT_URL_SAGEMAKER_A2I_RUNTIME"],
        region_name=stack.env["AWS_DEFAULT_REGION"],
        aws_access_key_id=stack.env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=stack.env["AWS_SECRET_ACCESS_KEY"],
    )


def celery_for(stack: LocalStack) -> Celery:
    app = Celery("hitl", broker=stack.env["HITL_REDIS_URL"])
    queues = [Queue(q) for q in ("detect", "dispatch", "ingest", "train")]  # type: ignore[no-untyped-call]
    app.conf.update(task_queues=queues, task_serializer="json")
    return app


def all_loops(stack: LocalStack) -> dict[str, str]:
    client, found, kwargs = (
        a2i(stack),
        {},
        {"FlowDefinitionArn": stack.env["HITL_FLOW_DEFINITION_ARN"], "MaxResults": 100},
    )
    while True:
        page = client.list_human_loops(**kwargs)
        found.update({s["HumanLoopName"]: s["HumanLoopStatus"] for s in page["HumanLoopSummaries"]})
        if not page.get("NextToken"):
            return found
        kwargs["NextToken"] = page["NextToken"]


def dataset_keys(stack: LocalStack) -> list[str]:
    s3 = stack.client("s3")
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=stack.bucket, Prefix=DATASET_LINES):
        keys.extend(o["Key"] for o in page.get("Contents", []))
    return keys


def loop_started(entry: dict[str, str]) -> bool:
    """The image's loop exists in the review service: past "dispatch_pending", which the detector sets
    before it sends the dispatch task."""
    return entry.get("loop_status") not in (None, "", "dispatch_pending")


def index(stack: LocalStack, image_id: str) -> dict[str, str]:
    found: dict[str, str] = stack.redis.hgetall(stack.key("image", image_id))  # type: ignore[assignment]
    return found


def queue_drained(stack: LocalStack) -> bool:
    sqs = stack.client("sqs")
    url = sqs.get_queue_url(QueueName="hitl-a2i-events")["QueueUrl"]
    attrs = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return bool(attrs["ApproximateNumberOfMessages"] == "0" and attrs["ApproximateNumberOfMessagesNotVisible"] == "0")


def duplicate_events(stack: LocalStack) -> float:
    """``hitl_events_duplicate_total`` (all statuses) from the ingestor's own /metrics."""
    with urllib.request.urlopen(stack.env["HITL_METRICS_INGESTOR_URL"], timeout=10) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "hitl_events_duplicate_total"
    )


def run_reviewer(stack: LocalStack, truth: Path) -> dict[str, Any]:
    result = stack.cli("review", "--auto", "--truth", str(truth), "--until-idle", "3", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return {"stdout": result.stdout, "stderr": result.stderr}


def audit_report(stack: LocalStack) -> dict[str, Any]:
    """``hitl audit report --json`` (run through its module, so it works before the CLI mounts it)."""
    result = subprocess.run(
        [sys.executable, "-m", "hitl.cli.audit", "report", "--json"],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def truth_line(record: DetectionRecord, variant: int) -> dict[str, Any]:
    """0: the reviewer draws no box; 1: a box far from the model's; else the model's own box."""
    w, h = record.width, record.height
    boxes = [] if variant == 0 else [(2, 2, w // 5, h // 5)] if variant == 1 else [(w // 4, h // 4, w // 2, h // 2)]
    return {
        "source-ref": record.image_uri,
        "bounding-box": {
            "image_size": [{"width": w, "height": h, "depth": 3}],
            "annotations": [{"class_id": 0, "left": b[0], "top": b[1], "width": b[2], "height": b[3]} for b in boxes],
        },
        "bounding-box-metadata": {
            "objects": [{"confidence": 1}] * len(boxes),
            "class-map": {"0": "object"},
            "type": "groundtruth/object-detection",
            "human-annotated": "yes",
        },
    }


@pytest.fixture(scope="module")
def pipeline(loops_stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Submit 200 images, deliver every dispatch task twice, let reviewers answer, wait for ingestion."""
    stack = loops_stack
    stack.cli("params", "set", "Human-Sampling-Interval", str(SAMPLING_INTERVAL))
    stack.cli("params", "set", "Minimum-Label-Detection-Confidence", str(MIN_CONFIDENCE))
    # The stack's workers read parameters uncached (HITL_PARAMS_CACHE_SECONDS=0): no wait needed.
    folder = tmp_path_factory.mktemp("loops-images")
    write(folder, {f"l{i:03d}.png": valid_image(SEED_BASE + i) for i in range(N_IMAGES)})
    submitted = stack.cli_json("submit", str(folder))
    ids = [r["image_id"] for r in submitted]
    assert len(set(ids)) == N_IMAGES

    wait_until(lambda: all(index(stack, i).get("state") == "detected" for i in ids), 120, "detection")
    s3 = stack.client("s3")
    records = {
        i: DetectionRecord.model_validate_json(
            s3.get_object(Bucket=stack.bucket, Key=f"detections/{i}.json")["Body"].read()
        )
        for i in ids
    }
    routed = {i: r for i, r in records.items() if r.route.reasons}
    assert 0 < len(routed) < N_IMAGES

    # Every dispatch task delivered a second time.
    celery = celery_for(stack)
    for image_id, record in routed.items():
        celery.send_task(
            "hitl.dispatch.start_loop",
            kwargs={"image_id": image_id, "detection_id": record.detection_id},
            queue="dispatch",
        )
    wait_until(lambda: all(loop_started(index(stack, i)) for i in routed), 120, "loops started")

    truth = folder / "truth.manifest"
    variants = {i: n % 4 for n, i in enumerate(sorted(routed))}
    truth.write_text("".join(json.dumps(truth_line(routed[i], variants[i])) + "\n" for i in sorted(routed)))
    started = time.monotonic()
    run_reviewer(stack, truth)
    wait_until(
        lambda: all(index(stack, i).get("loop_status") == "Completed" for i in routed),
        120,
        "every loop ingested as Completed",
    )
    return {
        "stack": stack,
        "ids": ids,
        "records": records,
        "routed": routed,
        "variants": variants,
        "review_and_ingest_seconds": time.monotonic() - started,
        "folder": folder,
    }


def test_exactly_the_routed_detections_get_one_loop_each(pipeline: dict[str, Any]) -> None:
    stack, routed = pipeline["stack"], pipeline["routed"]
    loops = all_loops(stack)
    expected = {loop_name_for(r.detection_id) for r in routed.values()}
    assert set(loops) == expected, "one loop per routed detection, none for the others, none twice"
    for image_id, record in routed.items():
        assert index(stack, image_id)["loop_name"] == loop_name_for(record.detection_id)
    for image_id in set(pipeline["ids"]) - set(routed):
        assert "loop_name" not in index(stack, image_id)


def test_dataset_gains_one_line_per_completed_low_confidence_loop_and_audits_give_verdicts(
    pipeline: dict[str, Any],
) -> None:
    stack, routed, variants = pipeline["stack"], pipeline["routed"], pipeline["variants"]
    low = {i for i, r in routed.items() if "low_confidence" in r.route.reasons}
    audited = {i for i, r in routed.items() if "audit" in r.route.reasons}
    labelled = {i for i in low if variants[i] != 0}
    keys = dataset_keys(stack)
    assert sorted(keys) == sorted(f"{DATASET_LINES}{loop_name_for(routed[i].detection_id)}.json" for i in labelled)
    # Each line counted once as an example; a training run may already have used some (Minimum-Untrained-Images
    # is reached during this test), and those leave the untrained set but stay examples.
    examples = stack.redis.smembers(stack.key("dataset", "human-labels", "examples"))
    assert sorted(examples) == sorted(keys)
    untrained = stack.redis.smembers(stack.key("dataset", "human-labels", "untrained"))
    assert untrained <= examples

    s3 = stack.client("s3")
    sample = json.loads(s3.get_object(Bucket=stack.bucket, Key=keys[0])["Body"].read())
    assert sample["bounding-box-metadata"]["job-name"].startswith("a2i/det-")
    assert sample["bounding-box-metadata"]["class-map"] == {"0": "object"}

    for image_id in routed:
        outcome = index(stack, image_id)["answer_outcome"]
        parts = set(outcome.split("+"))
        if image_id in low:
            assert ("labelled" if image_id in labelled else "no_objects") in parts, (image_id, outcome)
        if image_id in audited:
            assert "audited" in parts
        if image_id not in low:
            assert parts == {"audited"}, "an audit-only loop never becomes training data"

    report = audit_report(stack)["model_versions"]["fixed"]
    assert report["loops"] == len(audited)
    model_box = {i for i in audited if variants[i] >= 2}
    assert report["tp"] == len(model_box)
    assert report["agreement"]["value"] == pytest.approx(len(model_box) / len(audited))
    assert 0 <= report["precision"]["ci95_low"] <= report["precision"]["value"] <= report["precision"]["ci95_high"] <= 1

    image_id = sorted(labelled)[0]
    status = stack.cli_json("status", image_id)
    assert status["loop_name"] == loop_name_for(routed[image_id].detection_id)
    assert status["loop_status"] == "Completed"
    assert "labelled" in status["answer_outcome"]
    assert status["record"]["loop_name"] == status["loop_name"]


def test_replayed_duplicated_and_reordered_events_change_nothing(pipeline: dict[str, Any]) -> None:
    stack, routed = pipeline["stack"], pipeline["routed"]
    before_keys = sorted(dataset_keys(stack))
    before_untrained = stack.redis.scard(stack.key("dataset", "human-labels", "untrained"))
    before_audit = stack.redis.hgetall(stack.key("audit", "fixed", "counts"))
    client = a2i(stack)
    entries = []
    for record in list(routed.values())[:15]:
        loop = client.describe_human_loop(HumanLoopName=loop_name_for(record.detection_id))
        detail = {
            "creationTime": loop["CreationTime"].isoformat(),
            "failureCode": None,
            "failureReason": None,
            "flowDefinitionArn": loop["FlowDefinitionArn"],
            "humanLoopArn": loop["HumanLoopArn"],
            "humanLoopName": loop["HumanLoopName"],
            "humanLoopStatus": "Completed",
            "humanLoopOutput": {"outputS3Uri": loop["HumanLoopOutput"]["OutputS3Uri"]},
        }
        late_stop = {**detail, "humanLoopStatus": "Stopped", "humanLoopOutput": None}
        for body in (detail, detail, late_stop):
            entries.append(
                {
                    "Source": "hitl.review",
                    "DetailType": DETAIL_TYPE,
                    "Detail": json.dumps(body),
                    "Resources": [loop["HumanLoopArn"]],
                }
            )
    entries.reverse()  # replayed out of order: the stray Stopped before the duplicate Completed
    events = stack.client("events")
    duplicates_before = duplicate_events(stack)
    for start in range(0, len(entries), 10):
        assert events.put_events(Entries=entries[start : start + 10])["FailedEntryCount"] == 0
    # Every replayed event reaches the ingestor and is recognised as already applied.
    wait_until(
        lambda: duplicate_events(stack) >= duplicates_before + len(entries), 60, "the replayed events to be consumed"
    )
    wait_until(lambda: queue_drained(stack), 60, "the events queue to drain")
    assert duplicate_events(stack) == duplicates_before + len(entries)
    assert sorted(dataset_keys(stack)) == before_keys
    assert stack.redis.scard(stack.key("dataset", "human-labels", "untrained")) == before_untrained
    assert stack.redis.hgetall(stack.key("audit", "fixed", "counts")) == before_audit
    for record in list(routed.values())[:15]:
        assert index(stack, record.image_id)["loop_status"] == "Completed"


def test_an_event_lost_before_ingestion_is_recovered_by_reconciliation(pipeline: dict[str, Any]) -> None:
    stack = pipeline["stack"]
    group = procs.ProcessGroup(stack.run_dir)
    assert group.stop("ingestor")  # nobody consumes events now
    folder: Path = pipeline["folder"] / "late"
    seed = next(s for s in range(SEED_BASE + 1000, SEED_BASE + 2000) if fixed_confidence(valid_image(s)) < 30)
    write(folder, {"late.png": valid_image(seed)})
    image_id = stack.cli_json("submit", str(folder))[0]["image_id"]
    wait_until(lambda: index(stack, image_id).get("loop_status") == "InProgress", 60, "the late image's loop")
    record = DetectionRecord.model_validate_json(
        stack.client("s3").get_object(Bucket=stack.bucket, Key=f"detections/{image_id}.json")["Body"].read()
    )
    truth = folder / "truth.manifest"
    truth.write_text(json.dumps(truth_line(record, 2)) + "\n")
    run_reviewer(stack, truth)
    name = loop_name_for(record.detection_id)
    wait_until(
        lambda: a2i(stack).describe_human_loop(HumanLoopName=name)["HumanLoopStatus"] == "Completed",
        30,
        "the loop to complete",
    )

    sqs = stack.client("sqs")
    url = sqs.get_queue_url(QueueName="hitl-a2i-events")["QueueUrl"]
    wait_until(lambda: not queue_drained(stack), 30, "the completion event to reach SQS")
    sqs.purge_queue(QueueUrl=url)  # the event is lost
    assert index(stack, image_id)["loop_status"] == "InProgress"

    celery_for(stack).send_task("hitl.ingest.reconcile", kwargs={}, queue="ingest")
    wait_until(lambda: index(stack, image_id).get("loop_status") == "Completed", 60, "reconciliation")
    assert f"{DATASET_LINES}{name}.json" in dataset_keys(stack)
    assert index(stack, image_id)["answer_outcome"].startswith("labelled")
    assert "reconcile" in stack.log("reconciler")
