"""Three reviewers per item, end to end on a stack of its own (real Redis, moto, review service,
workers): the flow is switched to TaskCount 3 through ``hitl review flows update``, three simulated
reviewers answer through the portal (``hitl review --auto``), and each loop's answers become one
dataset line (boxes merged, majority kept, disagreement recorded) and one audit verdict judged on
the consolidated answer, not on any single reviewer's."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hitl.domain.records import DetectionRecord
from hitl.loops.names import loop_name_for
from tests import redis_dbs
from tests.integration.conftest import LocalStack, running_stack, wait_until
from tests.integration.images import valid_image, write
from tests.loops.test_loops_integration import DATASET_LINES, a2i, dataset_keys, index

pytestmark = pytest.mark.integration
CONSENSUS_REDIS_DB = redis_dbs.CONSENSUS
N_IMAGES = 6
REVIEWERS = ("carol", "alice", "bob")  # in the order they answer: carol's answer is always first
# Per image (by index % 3): what each reviewer draws, relative to the model's box.
MAJORITY_BOX, MAJORITY_NONE, UNANIMOUS = 0, 1, 2


@pytest.fixture(scope="module")
def consensus_stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[LocalStack]:
    run_dir = tmp_path_factory.mktemp("consensus-stack")
    settings = {
        "HITL_KEY_PREFIX": "hitlcons",
        "HITL_BUCKET": "hitl-consensus",
        "HITL_DETECT_BACKEND": "fixed",
        "HITL_WORKER_CONCURRENCY": "1",
        "HITL_INGEST_WAIT_SECONDS": "2",
    }
    with running_stack(run_dir, redis_url, CONSENSUS_REDIS_DB, settings) as env:
        yield LocalStack(run_dir=run_dir, env=env)


def model_box(record: DetectionRecord) -> tuple[int, int, int, int]:
    box = record.labels[0].box_px
    assert box is not None
    return round(box.left), round(box.top), round(box.width), round(box.height)


def drawn(record: DetectionRecord, variant: int, reviewer: str) -> list[tuple[int, int, int, int]]:
    left, top, width, height = model_box(record)
    far = (2, 2, record.width // 5, record.height // 5)
    if variant == UNANIMOUS:
        return [(left, top, width, height)]
    if variant == MAJORITY_BOX:  # carol draws elsewhere; alice and bob near the model's box
        shifted = {"carol": far, "alice": (left + 3, top + 2, width, height), "bob": (left - 3, top - 2, width, height)}
        return [shifted[reviewer]]
    return [(left, top, width, height)] if reviewer == "carol" else []  # MAJORITY_NONE: only carol sees it


def truth_file(folder: Path, reviewer: str, records: dict[str, DetectionRecord], variants: dict[str, int]) -> Path:
    lines = []
    for image_id, record in sorted(records.items()):
        boxes = drawn(record, variants[image_id], reviewer)
        lines.append(
            {
                "source-ref": record.image_uri,
                "bounding-box": {
                    "image_size": [{"width": record.width, "height": record.height, "depth": 3}],
                    "annotations": [
                        {"class_id": 0, "left": b[0], "top": b[1], "width": b[2], "height": b[3]} for b in boxes
                    ],
                },
                "bounding-box-metadata": {
                    "objects": [{"confidence": 1}] * len(boxes),
                    "class-map": {"0": "object"},
                    "type": "groundtruth/object-detection",
                    "human-annotated": "yes",
                },
            }
        )
    path = folder / f"truth-{reviewer}.manifest"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def review_as(stack: LocalStack, reviewer: str, truth: Path) -> dict[str, Any]:
    result = stack.cli("review", "--auto", "--truth", str(truth), "--reviewer", reviewer, "--until-idle", "2",
                       timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    summary: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return summary


def test_three_reviewers_become_one_consolidated_line_and_audit(
    consensus_stack: LocalStack, tmp_path: Path
) -> None:
    stack = consensus_stack
    flow = stack.env["HITL_FLOW_DEFINITION_ARN"].rsplit("/", 1)[1]
    changed = stack.cli("review", "flows", "update", flow, "--task-count", "3", "--json")
    assert changed.returncode == 0, changed.stderr
    assert json.loads(changed.stdout)["HumanLoopConfig"]["TaskCount"] == 3
    stack.cli("params", "set", "Minimum-Label-Detection-Confidence", "100")  # every detection is reviewed
    stack.cli("params", "set", "Human-Sampling-Interval", "2")  # and every second one audited as well
    # Workers see a parameter change within HITL_PARAMS_CACHE_SECONDS (their documented bound).
    time.sleep(float(stack.env["HITL_PARAMS_CACHE_SECONDS"]) + 0.5)

    write(tmp_path, {f"c{i}.png": valid_image(95_000 + i) for i in range(N_IMAGES)})
    ids = [r["image_id"] for r in stack.cli_json("submit", str(tmp_path))]
    assert len(set(ids)) == N_IMAGES
    wait_until(lambda: all(index(stack, i).get("loop_status") == "InProgress" for i in ids), 120, "loops started")
    s3 = stack.client("s3")
    records = {
        i: DetectionRecord.model_validate_json(
            s3.get_object(Bucket=stack.bucket, Key=f"detections/{i}.json")["Body"].read()
        )
        for i in ids
    }
    assert all("low_confidence" in r.route.reasons for r in records.values())
    audited = {i for i, r in records.items() if "audit" in r.route.reasons}
    assert len(audited) == N_IMAGES // 2
    # Each case among the audited images and among the others.
    variants = {i: n % 3 for n, i in enumerate(sorted(audited))}
    variants.update({i: n % 3 for n, i in enumerate(sorted(set(ids) - audited))})

    client = a2i(stack)
    names = {i: loop_name_for(r.detection_id) for i, r in records.items()}
    for reviewer in REVIEWERS[:2]:
        assert review_as(stack, reviewer, truth_file(tmp_path, reviewer, records, variants))["answered"] == N_IMAGES
    # Two answers of three: every loop still waits for the third reviewer.
    assert {client.describe_human_loop(HumanLoopName=n)["HumanLoopStatus"] for n in names.values()} == {"InProgress"}
    assert review_as(stack, "bob", truth_file(tmp_path, "bob", records, variants))["answered"] == N_IMAGES
    wait_until(lambda: all(index(stack, i).get("loop_status") == "Completed" for i in ids), 120, "answers ingested")

    lines = set(dataset_keys(stack))
    for image_id, record in records.items():
        name, variant = names[image_id], variants[image_id]
        done = client.describe_human_loop(HumanLoopName=name)
        bucket, _, key = done["HumanLoopOutput"]["OutputS3Uri"][5:].partition("/")
        output = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        assert [a["workerMetadata"]["identityData"]["sub"] for a in output["humanAnswers"]] == list(REVIEWERS)
        registry = stack.redis.hgetall(stack.key("loop", name))
        assert registry["workers"] == "3"

        line_key = f"{DATASET_LINES}{name}.json"
        if variant == MAJORITY_NONE:
            # Two of three saw nothing: no training example, though the first reviewer drew a box.
            assert line_key not in lines
            assert "no_objects" in index(stack, image_id)["answer_outcome"]
            assert float(registry["agreement"]) == pytest.approx(2 / 3, abs=1e-3)
            continue
        line = json.loads(s3.get_object(Bucket=stack.bucket, Key=line_key)["Body"].read())
        (annotation,) = line["bounding-box"]["annotations"]
        left, top, width, height = model_box(record)  # the median of alice's and bob's boxes
        assert (annotation["left"], annotation["top"], annotation["width"], annotation["height"]) == (
            left, top, width, height
        )
        metadata = line["bounding-box-metadata"]
        expected = 1.0 if variant == UNANIMOUS else 2 / 3
        assert metadata["objects"][0]["confidence"] == pytest.approx(expected, abs=1e-3)
        assert metadata["consensus"]["workers"] == 3
        assert metadata["consensus"]["agreement"] == pytest.approx(expected, abs=1e-3)

    for image_id in audited:
        record, variant = records[image_id], variants[image_id]
        verdict_key = f"audits/{record.model_version}/{names[image_id]}.json"
        verdict = json.loads(s3.get_object(Bucket=stack.bucket, Key=verdict_key)["Body"].read())
        assert verdict["human_agreement"] == pytest.approx(1.0 if variant == UNANIMOUS else 2 / 3, abs=1e-3)
        if variant == MAJORITY_NONE:
            # The majority saw nothing, so the model's box is a false positive (carol alone saw it).
            assert (verdict["tp"], verdict["fp"], verdict["agrees"]) == (0, 1, False)
        else:
            # The merged box matches the model's, though carol's own box was elsewhere.
            assert (verdict["tp"], verdict["fp"], verdict["fn"], verdict["agrees"]) == (1, 0, 0, True)
