"""The local stack's hooks: generated reviewer credentials and the stack.env lines."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from hitl.review import reviewers
from hitl.settings import Settings
from services.review import stackplug


def test_prepare_generates_private_credentials(tmp_path: Path) -> None:
    settings = Settings(run_dir=tmp_path, bucket="b", review_region="us-east-1")
    env = stackplug.prepare(settings)
    passwords_file = tmp_path / "review" / "reviewer-passwords.json"
    assert stat.S_IMODE(passwords_file.stat().st_mode) == 0o600
    passwords = json.loads(passwords_file.read_text())
    accounts = reviewers.load(Path(env["HITL_REVIEW_REVIEWERS_FILE"]))
    assert reviewers.authenticate(accounts, "bob", passwords["bob"]) is not None
    assert reviewers.authenticate(accounts, "bob", "wrong") is None
    assert accounts["alice"].is_operator
    flows = json.loads(Path(env["HITL_REVIEW_FLOW_DEFINITIONS_FILE"]).read_text())["FlowDefinitions"]
    assert flows[0]["S3OutputPath"] == "s3://b/a2i-output"
    lines = dict(line.split("=", 1) for line in stackplug.stack_env_lines("http://127.0.0.1:1", settings))
    assert lines["AWS_ENDPOINT_URL_SAGEMAKER_A2I_RUNTIME"] == "http://127.0.0.1:1"
    assert lines["HITL_FLOW_DEFINITION_ARN"] == (
        "arn:aws:sagemaker:us-east-1:000000000000:flow-definition/hitl-local-review"
    )
