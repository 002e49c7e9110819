"""The stack under IAM (moto's enforcement, one user per service with its deploy/iam policy) is
really enforced: unknown keys are refused, and a service whose policy lacks one permission it needs
fails the run (the stack fixture's AccessDenied check)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import boto3
import pytest

from hitl.stack.iam import POLICY_DIR
from tests import redis_dbs
from tests.integration.conftest import HITL, running_stack, wait_until
from tests.integration.images import valid_image

pytestmark = pytest.mark.integration


def without(policy_dir: Path, service: str, sid: str) -> None:
    path = policy_dir / f"{service}.json"
    policy = json.loads(path.read_text())
    policy["Statement"] = [s for s in policy["Statement"] if s["Sid"] != sid]
    path.write_text(json.dumps(policy))


def test_a_missing_permission_fails_the_run(tmp_path: Path, redis_url: str) -> None:
    policies = tmp_path / "iam"
    shutil.copytree(POLICY_DIR, policies)
    without(policies, "detector", "WriteDetectionRecords")  # the detector writes detections/*.json
    run_dir = tmp_path / "run"
    settings = {
        "HITL_KEY_PREFIX": "hitliam",
        "HITL_BUCKET": "hitl-iam",
        "HITL_DETECT_BACKEND": "fixed",
        "HITL_STACK_IAM_POLICY_DIR": str(policies),
    }
    with (  # noqa: PT012 - the stack's teardown is what raises
        pytest.raises(AssertionError, match="refused by its IAM policy") as refused,
        running_stack(run_dir, redis_url, redis_dbs.IAM_STACK, settings) as env,
    ):
        # Enforcement is on: the old open credentials are refused outright.
        stranger = boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        with pytest.raises(stranger.exceptions.ClientError, match=r"InvalidAccessKeyId|InvalidClientTokenId|403"):
            stranger.list_objects_v2(Bucket="hitl-iam")
        image = tmp_path / "one.png"
        image.write_bytes(valid_image(1))
        subprocess.run([HITL, "submit", str(image)], env=env, check=True, capture_output=True, timeout=120)
        log = run_dir / "logs" / "detector.log"
        wait_until(lambda: "AccessDenied" in log.read_text(errors="replace"), 90, "the detector's AccessDenied")
    assert "detector.log" in str(refused.value)
