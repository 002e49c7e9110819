"""Rekognition Custom Labels training and deployment, checked with botocore's Stubber.

Rekognition has no local stand-in (moto does not train models), so the Stubber, which validates
every request against the real service model, stands in; waiting is injected so no test sleeps.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from hitl import aws
from hitl.training.rekognition import Poller, RekognitionTrainer, TrainedVersion, TrainingFailed

PROJECT = "arn:aws:rekognition:us-east-1:111122223333:project/faces/1700000000000"
NEW = f"{PROJECT.rsplit('/', 1)[0]}/version/v0002/1700000000002"
OLD = f"{PROJECT.rsplit('/', 1)[0]}/version/v0001/1700000000001"
STARTING_OTHER = f"{PROJECT.rsplit('/', 1)[0]}/version/v0000/1700000000000"
NOW = datetime(2026, 11, 21, tzinfo=UTC)


def described(arn: str, name: str, status: str, f1: float | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"ProjectVersionArn": arn, "CreationTimestamp": NOW, "Status": status}
    if f1 is not None:
        item["EvaluationResult"] = {"F1Score": f1}
    return {"ProjectVersionDescriptions": [item]}


@pytest.fixture
def rekognition(monkeypatch: pytest.MonkeyPatch) -> Any:
    client = boto3.client("rekognition", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    monkeypatch.setattr(aws, "client", lambda name: client)
    return client


def trainer(sleeps: list[float], timeout: float = 10_000) -> RekognitionTrainer:
    return RekognitionTrainer(
        PROJECT, "models-bucket", "rekognition/", Poller(initial=30, maximum=120, timeout=timeout, sleep=sleeps.append)
    )


def test_full_sequence_train_poll_f1_start_then_stop_the_others(rekognition: Any) -> None:
    sleeps: list[float] = []
    t = trainer(sleeps)
    with Stubber(rekognition) as stub:
        stub.add_response(
            "create_project_version",
            {"ProjectVersionArn": NEW},
            {
                "ProjectArn": PROJECT,
                "VersionName": "v0002",
                "OutputConfig": {"S3Bucket": "models-bucket", "S3KeyPrefix": "rekognition/"},
                "TrainingData": {
                    "Assets": [{"GroundTruthManifest": {"S3Object": {"Bucket": "data", "Name": "train.jsonl"}}}]
                },
                "TestingData": {
                    "Assets": [{"GroundTruthManifest": {"S3Object": {"Bucket": "data", "Name": "test.jsonl"}}}]
                },
            },
        )
        names = {"ProjectArn": PROJECT, "VersionNames": ["v0002"]}
        stub.add_response("describe_project_versions", described(NEW, "v0002", "TRAINING_IN_PROGRESS"), names)
        stub.add_response("describe_project_versions", described(NEW, "v0002", "TRAINING_IN_PROGRESS"), names)
        stub.add_response("describe_project_versions", described(NEW, "v0002", "TRAINING_COMPLETED", 0.912), names)
        version = t.train("v0002", ("data", "train.jsonl"), ("data", "test.jsonl"))
        assert version == TrainedVersion("v0002", NEW, 0.912)

        stub.add_response(
            "start_project_version", {"Status": "STARTING"}, {"ProjectVersionArn": NEW, "MinInferenceUnits": 2}
        )
        stub.add_response("describe_project_versions", described(NEW, "v0002", "STARTING"), names)
        stub.add_response("describe_project_versions", described(NEW, "v0002", "RUNNING"), names)
        stub.add_response(
            "describe_project_versions",
            {
                "ProjectVersionDescriptions": [
                    {"ProjectVersionArn": NEW, "Status": "RUNNING", "CreationTimestamp": NOW},
                    {"ProjectVersionArn": OLD, "Status": "RUNNING", "CreationTimestamp": NOW},
                    {"ProjectVersionArn": STARTING_OTHER, "Status": "STARTING", "CreationTimestamp": NOW},
                    {"ProjectVersionArn": f"{OLD}9", "Status": "STOPPED", "CreationTimestamp": NOW},
                ]
            },
            {"ProjectArn": PROJECT},
        )
        stub.add_response("stop_project_version", {"Status": "STOPPING"}, {"ProjectVersionArn": OLD})
        stub.add_response("stop_project_version", {"Status": "STOPPING"}, {"ProjectVersionArn": STARTING_OTHER})
        stopped = t.deploy(version, inference_units=2)
        stub.assert_no_pending_responses()
    assert stopped == [OLD, STARTING_OTHER]
    assert sleeps == [30, 60, 30], "exponential backoff between polls, reset per wait"


def test_training_failure_raises_with_the_status_message(rekognition: Any) -> None:
    t = trainer([])
    with Stubber(rekognition) as stub:
        stub.add_response("create_project_version", {"ProjectVersionArn": NEW})
        failed = described(NEW, "v0002", "TRAINING_FAILED")
        failed["ProjectVersionDescriptions"][0]["StatusMessage"] = "The manifest file contains too many invalid rows."
        stub.add_response("describe_project_versions", failed)
        with pytest.raises(TrainingFailed, match="too many invalid rows"):
            t.train("v0002", ("data", "train.jsonl"), ("data", "test.jsonl"))


def test_polling_is_bounded(rekognition: Any) -> None:
    sleeps: list[float] = []
    t = trainer(sleeps, timeout=100)
    with Stubber(rekognition) as stub:
        stub.add_response("create_project_version", {"ProjectVersionArn": NEW})
        for _ in range(3):
            stub.add_response("describe_project_versions", described(NEW, "v0002", "TRAINING_IN_PROGRESS"))
        with pytest.raises(TimeoutError):
            t.train("v0002", ("data", "train.jsonl"), ("data", "test.jsonl"))
    assert sum(sleeps) >= 100


def test_a_version_that_fails_to_start_stops_nothing(rekognition: Any) -> None:
    t = trainer([])
    version = TrainedVersion("v0002", NEW, 0.9)
    with Stubber(rekognition) as stub:
        stub.add_response("start_project_version", {"Status": "STARTING"})
        stub.add_response("describe_project_versions", described(NEW, "v0002", "FAILED"))
        with pytest.raises(TrainingFailed, match="did not start"):
            t.deploy(version, inference_units=1)
        stub.assert_no_pending_responses()


def test_service_errors_propagate(rekognition: Any) -> None:
    t = trainer([])
    with Stubber(rekognition) as stub:
        stub.add_client_error("create_project_version", service_error_code="LimitExceededException")
        with pytest.raises(rekognition.exceptions.LimitExceededException):
            t.train("v0002", ("data", "train.jsonl"), ("data", "test.jsonl"))
