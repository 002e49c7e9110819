"""Submit → detect → route through the real parts: Redis, moto's server, worker processes."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest

from hitl.domain.records import DetectionRecord
from tests.integration.conftest import LocalStack
from tests.integration.images import bad_inputs, valid_image, write

pytestmark = pytest.mark.integration

SAMPLING_INTERVAL = 5
MIN_CONFIDENCE = 50.0
N_IMAGES = 50


def wait_for_states(stack: LocalStack, image_ids: list[str], timeout: float = 120) -> dict[str, dict[str, str]]:
    deadline = time.monotonic() + timeout
    while True:
        states = {i: stack.redis.hgetall(stack.key("image", i)) for i in image_ids}
        pending = [i for i, s in states.items() if s.get("state") not in ("detected", "rejected")]
        if not pending:
            return states
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(pending)} images still pending: {pending[:3]}\n{stack.log('detector')[-4000:]}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def tuned(local_stack: LocalStack) -> LocalStack:
    local_stack.cli("params", "set", "Human-Sampling-Interval", str(SAMPLING_INTERVAL))
    local_stack.cli("params", "set", "Minimum-Label-Detection-Confidence", str(MIN_CONFIDENCE))
    # The stack's workers read parameters uncached (HITL_PARAMS_CACHE_SECONDS=0): no wait needed.
    assert local_stack.cli("params", "get", "Human-Sampling-Interval").stdout.strip() == str(SAMPLING_INTERVAL)
    return local_stack


def test_fifty_images_through_hitl_each_recorded_once_with_the_right_route(tuned: LocalStack, tmp_path: Path) -> None:
    stack = tuned
    files = {
        f"img{i:03d}.{'png' if i % 2 else 'jpg'}": valid_image(i, "PNG" if i % 2 else "JPEG") for i in range(N_IMAGES)
    }
    write(tmp_path / "batch", files)
    # The stack is shared with other tests: what it detected before this test is left out.
    s3 = stack.client("s3")
    earlier = {
        o["Key"]: DetectionRecord.model_validate_json(s3.get_object(Bucket=stack.bucket, Key=o["Key"])["Body"].read())
        for o in s3.list_objects_v2(Bucket=stack.bucket, Prefix="detections/").get("Contents", [])
    }
    first_seq = 1 + max((r.route.sample_seq for r in earlier.values()), default=0)
    results = stack.cli_json("submit", str(tmp_path / "batch"))
    assert Counter(r["outcome"] for r in results) == {"queued": N_IMAGES}
    ids = [r["image_id"] for r in results]
    assert len(set(ids)) == N_IMAGES

    # The same images again: recorded once, nothing enqueued.
    again = stack.cli_json("submit", str(tmp_path / "batch" / "img001.png"), str(tmp_path / "batch" / "img002.jpg"))
    assert [r["outcome"] for r in again] == ["duplicate", "duplicate"]

    states = wait_for_states(stack, ids)
    assert all(s["state"] == "detected" for s in states.values())

    keys = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=stack.bucket, Prefix="detections/").get("Contents", [])
        if o["Key"] not in earlier
    ]
    records = {}
    for key in keys:
        record = DetectionRecord.model_validate_json(s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read())
        records[record.image_id] = record
    assert len(keys) == len(records) == N_IMAGES, "exactly one record per image"
    assert set(records) == set(ids)

    sequences = []
    for image_id, record in records.items():
        # The expected route, written out from the rules rather than computed by ``route()``: review when
        # the most confident label is below the minimum (no overrides here), audit every 5th detection.
        top = max((x.confidence for x in record.labels), default=None)
        expected = (["low_confidence"] if top is None or top < MIN_CONFIDENCE else []) + (
            ["audit"] if record.route.sample_seq % SAMPLING_INTERVAL == 0 else []
        )
        assert record.route.reasons == expected, image_id
        assert states[image_id]["route"] == ("+".join(expected) or "none")
        sequences.append(record.route.sample_seq)
        assert record.labels
        assert record.labels[0].box_ratio is not None
        assert (record.width, record.height) == (160, 120)
    seqs = list(range(first_seq, first_seq + N_IMAGES))
    assert sorted(sequences) == seqs, "each detection counted once for sampling"
    audits = [r for r in records.values() if "audit" in r.route.reasons]
    assert len(audits) == sum(1 for n in seqs if n % SAMPLING_INTERVAL == 0)
    low = [r for r in records.values() if "low_confidence" in r.route.reasons]
    assert 0 < len(low) < N_IMAGES

    # Each reviewed detection got its human loop (named after the detection); the others none.
    reviewed = {r.image_id for r in records.values() if r.route.reasons}
    deadline = time.monotonic() + 60
    while any(stack.redis.hget(stack.key("image", i), "loop_name") is None for i in reviewed):
        assert time.monotonic() < deadline, stack.log("dispatcher")[-3000:]
        time.sleep(0.2)
    for image_id in ids:
        loop = stack.redis.hget(stack.key("image", image_id), "loop_name")
        assert loop == (f"det-{image_id[:32]}" if image_id in reviewed else None)

    # A detect message delivered again for a detected image: the worker reads the image's state in the
    # round trip that counts the delivery, and skips it; its record and index entry stay as they were.
    from hitl.celery_app import create_app
    from hitl.settings import Settings
    from hitl.submit import DETECT_TASK

    publisher = create_app(Settings(redis_url=stack.env["HITL_REDIS_URL"]))
    entry = stack.redis.hgetall(stack.key("image", ids[0]))
    publisher.send_task(DETECT_TASK, kwargs={"image_id": ids[0], "uri": entry["uri"], "source": "test"}, queue="detect")

    def skipped() -> bool:
        lines = [json.loads(line) for line in stack.log("detector").splitlines() if line.startswith("{")]
        return any(e.get("event") == "detect_skipped_done" and e.get("image_id") == ids[0] for e in lines)

    deadline = time.monotonic() + 60
    while not skipped():
        assert time.monotonic() < deadline, stack.log("detector")[-3000:]
        time.sleep(0.2)
    detection_fields = ("state", "detection_id", "record_uri", "route", "model_version", "top_confidence")
    after = stack.redis.hgetall(stack.key("image", ids[0]))
    assert {f: after.get(f) for f in detection_fields} == {f: entry.get(f) for f in detection_fields}
    listed = s3.list_objects_v2(Bucket=stack.bucket, Prefix="detections/").get("Contents", [])
    assert len(listed) == len(earlier) + N_IMAGES

    status = stack.cli_json("status", ids[0][:12])
    assert status["image_id"] == ids[0]
    assert status["record"]["detection_id"] == f"det-{ids[0][:32]}"


def test_bad_inputs_get_their_reasons_and_block_nothing(tuned: LocalStack, tmp_path: Path) -> None:
    stack = tuned
    bad = bad_inputs()
    good = {"fine.png": valid_image(5000)}
    write(tmp_path / "bad", {name: data for name, (_, data) in bad.items()} | good)
    # A rejected submission makes the command exit 1 (checked, with no traceback, by ``cli``).
    result = stack.cli("submit", str(tmp_path / "bad"), "s3://some-other-bucket/images/x.png", "--json", expect=1)
    submissions = {Path(r["name"]).name: r for r in json.loads(result.stdout)}

    assert submissions["empty.jpg"]["reason"] == "empty"
    assert submissions["x.png"]["reason"] == "wrong_bucket"
    queued = [r["image_id"] for r in submissions.values() if r["outcome"] == "queued"]
    states = wait_for_states(stack, queued)
    by_name = {name: states.get(r["image_id"] or "", {}) for name, r in submissions.items()}
    for name, (reason, _) in bad.items():
        got = submissions[name]["reason"] or by_name[name].get("reason")
        assert got == reason, f"{name}: expected {reason}, got {got}"
    assert by_name["fine.png"]["state"] == "detected"

    rejections = stack.cli_json("rejections", "--limit", "50")
    for reason in ("empty", "wrong_bucket", "not_an_image", "too_many_pixels", "unsupported_format", "corrupt"):
        assert rejections["counts"].get(reason, 0) >= 1, reason
    # A rejected image is never retried: its task is gone, not waiting.
    assert stack.redis.llen("detect") == 0


def test_uploads_under_the_prefix_are_detected_from_s3_notifications(tuned: LocalStack) -> None:
    stack = tuned
    s3 = stack.client("s3")
    good = valid_image(4242, "JPEG")
    s3.put_object(Bucket=stack.bucket, Key="images_for_detection/camera 7/frame+1.jpg", Body=good)
    s3.put_object(Bucket=stack.bucket, Key="images_for_detection/camera 7/readme.png", Body=b"not an image")
    s3.put_object(Bucket=stack.bucket, Key="elsewhere/ignored.jpg", Body=valid_image(4243, "JPEG"))
    from hitl.domain.images import content_id

    ids = [content_id(good), content_id(b"not an image")]
    deadline = time.monotonic() + 90
    while any(stack.redis.hget(stack.key("image", i), "state") not in ("detected", "rejected") for i in ids):
        assert time.monotonic() < deadline, stack.log("intake")[-3000:]
        time.sleep(0.3)
    detected = stack.redis.hgetall(stack.key("image", ids[0]))
    assert detected["state"] == "detected"
    assert detected["source"] == "s3-event"
    assert detected["uri"] == f"s3://{stack.bucket}/images_for_detection/camera 7/frame+1.jpg"
    assert stack.redis.hget(stack.key("image", ids[1]), "reason") == "not_an_image"
    assert stack.redis.hget(stack.key("image", content_id(valid_image(4243, "JPEG"))), "state") is None


def test_every_service_of_the_stack_serves_metrics(local_stack: LocalStack) -> None:
    """What Prometheus scrapes answers: each pipeline service's /metrics (beat included)."""
    import urllib.request

    urls = {
        key.removeprefix("HITL_METRICS_").removesuffix("_URL").lower(): url
        for key, url in local_stack.env.items()
        if key.startswith("HITL_METRICS_") and key.endswith("_URL")
    }
    assert set(urls) >= {"detector", "dispatcher", "ingestor", "reconciler", "trainer", "intake", "monitor", "beat"}
    for name, url in urls.items():
        with urllib.request.urlopen(url, timeout=10) as response:
            body = response.read().decode()
        assert response.status == 200, name
        assert "# TYPE" in body, name
    beat = urllib.request.urlopen(urls["beat"], timeout=10).read().decode()
    assert 'hitl_worker_heartbeat_timestamp_seconds{service="beat"}' in beat
