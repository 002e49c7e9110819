"""Start-up validation: a missing setting stops a service with one line naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys

from hitl.settings import Settings
from hitl.startup import missing

REGION = {"AWS_DEFAULT_REGION": "eu-west-1"}


def test_each_backend_names_what_it_needs() -> None:
    assert missing(Settings(detect_backend="rekognition"), "detector", REGION) == [
        "HITL_REKOGNITION_PROJECT_ARN is required for detector: the rekognition detect backend serves a version "
        "of this project (or set HITL_REKOGNITION_PROJECT_VERSION_ARN)"
    ]
    assert (
        missing(Settings(detect_backend="rekognition", rekognition_project_version_arn="arn:x"), "detector", REGION)
        == []
    )
    assert [line.split()[0] for line in missing(Settings(train_backend="sagemaker"), "trainer", REGION)] == [
        "HITL_SAGEMAKER_ROLE_ARN",
        "HITL_SAGEMAKER_TRAINING_IMAGE",
        "HITL_SAGEMAKER_ENDPOINT_NAME",
    ]
    assert missing(Settings(detect_backend="sagemaker"), "detector", REGION)[0].startswith(
        "HITL_SAGEMAKER_ENDPOINT_NAME"
    )
    assert missing(Settings(flow_definition_arn=""), "dispatcher", REGION)[0].startswith("HITL_FLOW_DEFINITION_ARN")
    assert missing(Settings(), "detector", {})[0].startswith("AWS_DEFAULT_REGION")
    assert missing(Settings(), "detector", {"AWS_REGION": "eu-west-1"}) == []
    assert missing(Settings(), "intake", REGION) == []


def test_a_service_started_without_its_setting_exits_with_one_clear_line() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HITL_")}
    env |= {
        "HITL_DETECT_BACKEND": "rekognition",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "HITL_REDIS_URL": "redis://127.0.0.1:1/0",
    }
    result = subprocess.run(
        [sys.executable, "-m", "services.detector"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "hitl detector: configuration error: HITL_REKOGNITION_PROJECT_ARN is required for detector: the rekognition "
        "detect backend serves a version of this project (or set HITL_REKOGNITION_PROJECT_VERSION_ARN)"
    ]
