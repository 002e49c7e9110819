"""Model-assisted annotation on the local stack (real Redis, moto, review service, workers):
``hitl annotate s3://bucket/prefix`` sends every image to review whatever the model's confidence,
prefilled with its prediction, and the answers join the labelled dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hitl.domain.records import DetectionRecord
from tests.integration.conftest import LocalStack
from tests.integration.images import valid_image
from tests.loops.test_loops_integration import dataset_keys, index, run_reviewer, truth_line, wait_until

pytestmark = pytest.mark.integration


def test_annotate_sends_every_image_to_review_and_labels_join_the_dataset(
    loops_stack: LocalStack, tmp_path: Path
) -> None:
    stack = loops_stack
    stack.cli("params", "set", "Minimum-Label-Detection-Confidence", "0")  # nothing is "low confidence"
    s3 = stack.client("s3")
    for i in range(4):
        s3.put_object(Bucket=stack.bucket, Key=f"unlabelled/a{i}.png", Body=valid_image(90_000 + i))
    before = set(dataset_keys(stack))

    outside = stack.cli("annotate", "s3://another-bucket/unlabelled/", check=False)
    assert outside.returncode == 2
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
