"""Retraining on Rekognition Custom Labels through the real trainer task (lock, snapshot, gate,
notices, registry), then a detector process following the new version without a restart.

Rekognition training has no local stand-in (moto does not train or start models), so its calls go to
botocore's Stubber, which checks every request against Rekognition's service model and the exact
parameters expected here. S3, SSM and EventBridge are moto's server over HTTP; Redis is real.
The detector is a separate process on moto's DetectCustomLabels; it reports the ARN it sent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
import redis as redis_lib
from botocore.stub import Stubber

from hitl import aws
from hitl.loops.dataset import LabelledDataset
from hitl.model.registry import ModelRegistry
from hitl.params import ParameterStore
from hitl.scenes import generate_scenes, upload_set
from hitl.settings import Settings, get_settings
from hitl.training.backends import promote, rollback

pytestmark = pytest.mark.integration

PROJECT = "arn:aws:rekognition:us-east-1:111122223333:project/shelves/1700000000000"
BASE = PROJECT.rsplit("/", 1)[0]
INITIAL = f"{BASE}/version/initial/1700000000000"
NOW = datetime(2026, 11, 29, tzinfo=UTC)
DETECTOR = Path(__file__).with_name("detector_probe.py")


def arn(version: str) -> str:
    return f"{BASE}/version/{version}/1700000000{int(version[1:]):03d}"


@pytest.fixture(scope="module")
def env(settings: Settings) -> Iterator[Settings]:
    variables = {
        "HITL_BUCKET": "hitl-rek-retrain",
        "HITL_KEY_PREFIX": "rekretrain",
        "HITL_PARAMS_PATH": "/rekretrain/",
        "HITL_PARAMS_CACHE_SECONDS": "0",
        "HITL_MODEL_CACHE_SECONDS": "0.2",
        "HITL_TRAIN_BACKEND": "rekognition",
        "HITL_DETECT_BACKEND": "rekognition",
        "HITL_REKOGNITION_PROJECT_ARN": PROJECT,
        "HITL_REKOGNITION_PROJECT_VERSION_ARN": INITIAL,
        "HITL_TRAINING_POLL_INITIAL_SECONDS": "0.01",
        "HITL_TRAINING_POLL_MAX_SECONDS": "0.02",
    }
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    get_settings.cache_clear()
    local = get_settings()
    aws.client("s3").create_bucket(Bucket=local.bucket)
    client = redis_lib.Redis.from_url(local.redis_url)
    for key in client.scan_iter("rekretrain:*"):
        client.delete(key)
    params = ParameterStore(local)
    params.ensure_defaults()
    params.set("Minimum-Untrained-Images", "2")
    params.set("Minimum-F1-Score", "0.8")
    params.set("Minimum-Inference-Units", "2")
    upload_set(
        generate_scenes("train", 4, seed=0, source_prefix=f"s3://{local.bucket}/seed/"),
        local.s3_uri(local.seed_manifest_key),
    )
    upload_set(
        generate_scenes("test", 3, seed=0, source_prefix=f"s3://{local.bucket}/test/"),
        local.s3_uri(local.test_manifest_key),
    )
    yield local
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    get_settings.cache_clear()


@pytest.fixture
def rekognition(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    stubbed = boto3.client("rekognition", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    real = aws.client
    monkeypatch.setattr(aws, "client", lambda name: stubbed if name == "rekognition" else real(name))
    with Stubber(stubbed) as stub:
        yield stub
        stub.assert_no_pending_responses()


@pytest.fixture(scope="module")
def detector(env: Settings) -> Iterator[subprocess.Popen[str]]:
    """A detector process (the detector worker's backend, built the same way) on moto's server."""
    png, _ = generate_scenes("test", 1, seed=9, source_prefix="s3://x/")[0]
    aws.client("s3").put_object(Bucket=env.bucket, Key="probe/one.png", Body=png)
    process = subprocess.Popen(
        [sys.executable, str(DETECTOR), env.s3_uri("probe/one.png")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    yield process
    process.stdin.close()  # type: ignore[union-attr]
    process.wait(timeout=30)


def detected_with(process: subprocess.Popen[str], expected_arn: str, timeout: float = 30) -> dict[str, Any]:
    """Ask the detector process to detect until it sends ``expected_arn`` (it never restarts)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        process.stdin.write("detect\n")  # type: ignore[union-attr]
        process.stdin.flush()  # type: ignore[union-attr]
        line = ""
        while not line.startswith("ANSWER "):
            line = process.stdout.readline()  # type: ignore[union-attr]
            assert line, "the detector process exited"
        answer = json.loads(line.removeprefix("ANSWER "))
        if answer["sent_arn"] == expected_arn:
            return dict(answer)
        assert time.monotonic() < deadline, f"the detector still sends {answer['sent_arn']}"


def add_labels(settings: Settings, start: int, count: int) -> None:
    files = generate_scenes("train", start + count, seed=3, source_prefix=f"s3://{settings.bucket}/labelled/")[start:]
    upload_set(files, f"s3://{settings.bucket}/scratch/labels-{start}.jsonl")
    dataset = LabelledDataset(settings)
    for index, (_, line) in enumerate(files, start=start):
        assert dataset.add(f"det-{index:032x}", line)


def described(version: str, status: str, f1: float | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"ProjectVersionArn": arn(version), "CreationTimestamp": NOW, "Status": status}
    if f1 is not None:
        item["EvaluationResult"] = {"F1Score": f1}
    return {"ProjectVersionDescriptions": [item]}


def expect_training(stub: Stubber, settings: Settings, version: str, f1: float) -> None:
    stub.add_response(
        "create_project_version",
        {"ProjectVersionArn": arn(version)},
        {
            "ProjectArn": PROJECT,
            "VersionName": version,
            "OutputConfig": {"S3Bucket": settings.bucket, "S3KeyPrefix": "rekognition-output/"},
            "TrainingData": {
                "Assets": [
                    {
                        "GroundTruthManifest": {
                            "S3Object": {"Bucket": settings.bucket, "Name": f"models/{version}/train.manifest"}
                        }
                    }
                ]
            },
            "TestingData": {
                "Assets": [
                    {
                        "GroundTruthManifest": {
                            "S3Object": {"Bucket": settings.bucket, "Name": f"models/{version}/test.manifest"}
                        }
                    }
                ]
            },
        },
    )
    names = {"ProjectArn": PROJECT, "VersionNames": [version]}
    stub.add_response("describe_project_versions", described(version, "TRAINING_IN_PROGRESS"), names)
    stub.add_response("describe_project_versions", described(version, "TRAINING_COMPLETED", f1), names)


def expect_start(stub: Stubber, version: str, units: int) -> None:
    stub.add_response(
        "start_project_version", {"Status": "STARTING"}, {"ProjectVersionArn": arn(version), "MinInferenceUnits": units}
    )
    names = {"ProjectArn": PROJECT, "VersionNames": [version]}
    stub.add_response("describe_project_versions", described(version, "STARTING"), names)
    stub.add_response("describe_project_versions", described(version, "RUNNING"), names)


def expect_stop_others(stub: Stubber, running: dict[str, str], stop: list[str]) -> None:
    stub.add_response(
        "describe_project_versions",
        {
            "ProjectVersionDescriptions": [
                {"ProjectVersionArn": a, "Status": s, "CreationTimestamp": NOW} for a, s in running.items()
            ]
        },
        {"ProjectArn": PROJECT},
    )
    for target in stop:
        stub.add_response("stop_project_version", {"Status": "STOPPING"}, {"ProjectVersionArn": target})


def run_check() -> dict[str, Any]:
    from services.trainer.tasks import check

    result: dict[str, Any] = check.apply(kwargs={"reason": "test"}).get()
    return result


def test_retrain_gate_deploy_stop_and_follow(
    env: Settings, rekognition: Stubber, detector: subprocess.Popen[str]
) -> None:
    registry = ModelRegistry(env)
    # Before any promotion the detector serves the configured version.
    assert detected_with(detector, INITIAL)["version"] == "initial"

    # v0001: create → poll → evaluate → gate (nothing serves) → start → pointer → stop the old one.
    add_labels(env, 0, 2)
    expect_training(rekognition, env, "v0001", 0.85)
    expect_start(rekognition, "v0001", units=2)
    expect_stop_others(rekognition, {arn("v0001"): "RUNNING", INITIAL: "RUNNING", arn("v0000"): "STOPPED"}, [INITIAL])
    outcome = run_check()
    assert outcome["outcome"] == "promoted", outcome
    assert (outcome["version"], outcome["f1"]) == ("v0001", 0.85)
    pointer = registry.pointer()
    assert pointer is not None
    assert (pointer.version, pointer.target, pointer.backend) == ("v0001", arn("v0001"), "rekognition")
    # The snapshot Rekognition trained on: seed + labels, never a test image.
    s3 = aws.client("s3")
    snapshot = s3.get_object(Bucket=env.bucket, Key="models/v0001/train.manifest")["Body"].read().decode()
    refs = [json.loads(line)["source-ref"] for line in snapshot.splitlines()]
    assert len(refs) == 6
    assert not any("/test/" in ref for ref in refs)
    # The dataset snapshot's documented files.
    dataset = LabelledDataset(env)
    assert s3.head_object(Bucket=env.bucket, Key=f"{dataset.prefix}manifest.jsonl")["ContentLength"] > 0
    coco = json.loads(s3.get_object(Bucket=env.bucket, Key=f"{dataset.prefix}coco.json")["Body"].read())
    assert len(coco["images"]) == 6
    assert detected_with(detector, arn("v0001"))["version"] == "v0001"

    # v0002 scores below the serving version: rejected, never started, the pointer stays.
    add_labels(env, 2, 2)
    expect_training(rekognition, env, "v0002", 0.82)
    outcome = run_check()
    assert outcome["outcome"] == "rejected", outcome
    assert "below the serving version" in outcome["reason"]
    assert registry.describe("v0002").status == "rejected"
    assert registry.serving_version() == "v0001"

    # v0003 beats it: started, served, v0001 stopped; the detector follows without a restart.
    add_labels(env, 4, 2)
    expect_training(rekognition, env, "v0003", 0.91)
    expect_start(rekognition, "v0003", units=2)
    expect_stop_others(rekognition, {arn("v0003"): "RUNNING", arn("v0001"): "RUNNING"}, [arn("v0001")])
    outcome = run_check()
    assert outcome["outcome"] == "promoted", outcome
    assert (outcome["serving_f1"], registry.serving_version()) == (0.85, "v0003")
    assert detected_with(detector, arn("v0003"))["version"] == "v0003"
    assert detector.poll() is None, "the detector process was never restarted"

    # Rollback restarts the previous version first, then stops the rolled-back one.
    expect_start(rekognition, "v0001", units=2)
    expect_stop_others(rekognition, {arn("v0001"): "RUNNING", arn("v0003"): "RUNNING"}, [arn("v0003")])
    assert rollback(env, reason="test rollback") == "v0001"
    assert registry.describe("v0003").status == "rejected"
    assert detected_with(detector, arn("v0001"))["version"] == "v0001"

    # An operator's promotion (hitl models promote) also starts the version before the pointer moves.
    expect_start(rekognition, "v0003", units=2)
    expect_stop_others(rekognition, {arn("v0003"): "RUNNING", arn("v0001"): "RUNNING"}, [arn("v0001")])
    assert promote(env, "v0003", reason="test promotion") == "v0003"
    assert detected_with(detector, arn("v0003"))["version"] == "v0003"


def test_a_failed_training_is_recorded_and_nothing_starts(env: Settings, rekognition: Stubber) -> None:
    add_labels(env, 6, 2)
    rekognition.add_response("create_project_version", {"ProjectVersionArn": arn("v0004")})
    failed = described("v0004", "TRAINING_FAILED")
    failed["ProjectVersionDescriptions"][0]["StatusMessage"] = "The manifest file contains too many invalid rows."
    rekognition.add_response("describe_project_versions", failed)
    outcome = run_check()
    assert outcome["outcome"] == "failed"
    assert "too many invalid rows" in outcome["reason"]
    registry = ModelRegistry(env)
    assert registry.describe("v0004").status == "rejected"
    assert registry.serving_version() == "v0003"
