"""Model-assisted annotation on the local stack (real Redis, moto, review service, workers):
``hitl annotate s3://bucket/prefix`` sends every image to review whatever the model's confidence,
prefilled with its prediction, and the answers join the labelled dataset."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from hitl.domain.records import DetectionRecord
from tests import redis_dbs
from tests.integration.conftest import LocalStack, running_stack, wait_until
from tests.integration.images import valid_image
from tests.loops.test_loops_integration import dataset_keys, index, run_reviewer, truth_line

pytestmark = pytest.mark.integration
ANNOTATE_REDIS_DB = redis_dbs.ANNOTATE


@pytest.fixture(scope="module")
def annotate_stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[LocalStack]:
    """A stack of its own: annotation adds loops and dataset lines that other tests count exactly."""
    run_dir = tmp_path_factory.mktemp("annotate-stack")
    settings = {
        "HITL_KEY_PREFIX": "hitlann",
        "HITL_BUCKET": "hitl-annotate",
        "HITL_DETECT_BACKEND": "fixed",
        "HITL_WORKER_CONCURRENCY": "1",
        "HITL_INGEST_WAIT_SECONDS": "2",
    }
    with running_stack(run_dir, redis_url, ANNOTATE_REDIS_DB, settings) as env:
        yield LocalStack(run_dir=run_dir, env=env)


def test_annotate_sends_every_image_to_review_and_labels_join_the_dataset(
    annotate_stack: LocalStack, tmp_path: Path
) -> None:
    stack = annotate_stack
    stack.cli("params", "set", "Minimum-Label-Detection-Confidence", "0")  # nothing is "low confidence"
    s3 = stack.client("s3")
    for i in range(4):
        s3.put_object(Bucket=stack.bucket, Key=f"unlabelled/a{i}.png", Body=valid_image(90_000 + i))
    before = set(dataset_keys(stack))

    outside = stack.cli("annotate", "s3://another-bucket/unlabelled/", expect=2)
    assert "is not under the configured bucket" in outside.stderr
    results = stack.cli_json("annotate", f"s3://{stack.bucket}/unlabelled/")
    assert [r["outcome"] for r in results] == ["queued"] * 4
    ids = [r["image_id"] for r in results]

    wait_until(lambda: all(index(stack, i).get("loop_name") for i in ids), 90, "annotation loops")
    bodies = [s3.get_object(Bucket=stack.bucket, Key=f"detections/{i}.json")["Body"].read() for i in ids]
    records = [DetectionRecord.model_validate_json(body) for body in bodies]
    assert all(r.route.reasons == ["annotation"] for r in records)
    assert all(index(stack, r.image_id)["route"] == "annotation" for r in records)

    truth = tmp_path / "truth.jsonl"
    truth.write_text("".join(json.dumps(truth_line(r, 2)) + "\n" for r in records))
    run_reviewer(stack, truth)
    wait_until(lambda: all(index(stack, i).get("loop_status") == "Completed" for i in ids), 90, "answers ingested")
    added = set(dataset_keys(stack)) - before
    assert len(added) == 4, "one labelled example per annotated image"
    assert all(index(stack, i).get("answer_outcome") == "labelled" for i in ids)
