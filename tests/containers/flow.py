"""The 30-image check, against any running stack a client reaches through ``env`` (``stack.env``):
submit → detect → human loop → simulated reviewer (``hitl review --auto``) → ingest → dataset line.

Shared by the container-stack test, the compose check (tests/containers/compose_check.py) and the
container benchmark: each image's record, each loop's status and each dataset line is checked.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hitl.domain.records import DetectionRecord, Prediction
from hitl.domain.routing import RoutingPolicy, route
from hitl.loops.names import loop_name_for
from tests.integration.conftest import LocalStack, wait_until
from tests.integration.images import valid_image, write
from tests.loops.test_loops_integration import DATASET_LINES, all_loops, dataset_keys, index, loop_started, truth_line

N_IMAGES = 30
SAMPLING_INTERVAL = 5
MIN_CONFIDENCE = 50.0
SEED_BASE = 91_000


@dataclass
class FlowResult:
    ids: list[str]
    routed: dict[str, DetectionRecord]
    labelled: set[str]
    seconds: dict[str, float] = field(default_factory=dict)


def run_flow(
    stack: LocalStack,
    folder: Path,
    n_images: int = N_IMAGES,
    during_load: Callable[[], None] = lambda: None,
    timeout: float = 180,
) -> FlowResult:
    """Push ``n_images`` through the whole pipeline and check every record, loop and line."""
    started = time.monotonic()
    stack.cli("params", "set", "Human-Sampling-Interval", str(SAMPLING_INTERVAL))
    stack.cli("params", "set", "Minimum-Label-Detection-Confidence", str(MIN_CONFIDENCE))
    cache = float(stack.env.get("HITL_PARAMS_CACHE_SECONDS", "10"))
    time.sleep(cache + 0.5)  # the workers' parameter cache (1 s in the test stacks)
    write(folder, {f"c{i:03d}.png": valid_image(SEED_BASE + i) for i in range(n_images)})
    submitted = stack.cli_json("submit", str(folder))
    assert [r["outcome"] for r in submitted] == ["queued"] * n_images, submitted
    ids = [r["image_id"] for r in submitted]
    assert len(set(ids)) == n_images

    wait_until(lambda: all(index(stack, i).get("state") == "detected" for i in ids), timeout, "detection")
    during_load()
    s3 = stack.client("s3")
    records = {
        i: DetectionRecord.model_validate_json(
            s3.get_object(Bucket=stack.bucket, Key=f"detections/{i}.json")["Body"].read()
        )
        for i in ids
    }
    policy = RoutingPolicy(
        review_enabled=True,
        min_confidence=MIN_CONFIDENCE,
        label_overrides={},
        sampling_enabled=True,
        sampling_interval=SAMPLING_INTERVAL,
    )
    for image_id, record in records.items():
        assert record.image_id == image_id
        assert record.model_version == "fixed"
        assert (record.width, record.height) == (160, 120)
        assert record.labels, image_id
        predictions = [Prediction(label=x.label, confidence=x.confidence, box=x.box_px) for x in record.labels]
        assert record.route.reasons == route(predictions, policy, record.route.sample_seq).reasons, image_id
        assert index(stack, image_id)["route"] == ("+".join(record.route.reasons) or "none")
    assert sorted(r.route.sample_seq for r in records.values()) == list(range(1, n_images + 1))
    routed = {i: r for i, r in records.items() if r.route.reasons}
    assert routed, "no detection was routed to review"

    wait_until(lambda: all(loop_started(index(stack, i)) for i in routed), timeout, "loops started")
    assert set(all_loops(stack)) == {loop_name_for(r.detection_id) for r in routed.values()}
    for image_id in set(ids) - set(routed):
        assert "loop_name" not in index(stack, image_id)

    truth = folder / "truth.manifest"
    variants = {i: n % 4 for n, i in enumerate(sorted(routed))}
    truth.write_text("".join(json.dumps(truth_line(routed[i], variants[i])) + "\n" for i in sorted(routed)))
    review = stack.cli("review", "--auto", "--truth", str(truth), "--until-idle", "3", timeout=300)
    assert review.returncode == 0, review.stderr[-3000:]
    wait_until(
        lambda: all(index(stack, i).get("loop_status") == "Completed" for i in routed), timeout, "loops ingested"
    )

    low = {i for i, r in routed.items() if "low_confidence" in r.route.reasons}
    labelled = {i for i in low if variants[i] != 0}
    expected_keys = {f"{DATASET_LINES}{loop_name_for(routed[i].detection_id)}.json": i for i in labelled}
    assert sorted(dataset_keys(stack)) == sorted(expected_keys)
    for key, image_id in expected_keys.items():
        line = json.loads(s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read())
        name = loop_name_for(routed[image_id].detection_id)
        assert line["bounding-box-metadata"]["job-name"] == f"a2i/{name}", key
        boxes = line["bounding-box"]["annotations"]
        assert len(boxes) == 1, key  # the reviewer drew exactly one box (variants 1 and 2+)
        bucket, _, object_key = line["source-ref"].removeprefix("s3://").partition("/")
        s3.head_object(Bucket=bucket, Key=object_key)  # the labelled copy exists
    for image_id in routed:
        outcome = set(index(stack, image_id)["answer_outcome"].split("+"))
        if image_id in low:
            assert ("labelled" if image_id in labelled else "no_objects") in outcome, (image_id, outcome)
        else:
            assert outcome == {"audited"}, (image_id, outcome)
    return FlowResult(ids=ids, routed=routed, labelled=labelled, seconds={"flow": time.monotonic() - started})
