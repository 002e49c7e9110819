"""Every IAM policy document, rendered with the example values, passes parliament (an IAM policy
linter: unknown actions, resources that do not fit the action, malformed conditions, ...)."""

from __future__ import annotations

import json
from typing import Any

from tests.deploy.conftest import AWS_VALUES
from tests.deploy.tools import DEPLOY, TOOLS_BIN, run, tool

LINT = """
import json, sys
from parliament import analyze_policy_string
report = {}
for name, text in json.load(sys.stdin).items():
    report[name] = [f"{f.issue}: {f.detail} {f.location}" for f in analyze_policy_string(text).findings]
print(json.dumps(report))
"""


def lint(documents: dict[str, str]) -> dict[str, list[str]]:
    tool("checkov")  # the tools virtualenv is there (make tools); parliament is installed beside it
    result = run([str(TOOLS_BIN / "python"), "-c", LINT], input=json.dumps(documents))
    assert result.returncode == 0, result.stderr
    report: dict[str, list[str]] = json.loads(result.stdout)
    return report


def test_policies_have_no_findings(iam_render: Any) -> None:
    values = iam_render.read_env(AWS_VALUES)
    documents = {
        path.name: iam_render.render(path.read_text(), values)
        for path in sorted((DEPLOY / "iam").glob("*.json"))
        if not path.stem.startswith("trust")
    }
    report = lint(documents)
    assert set(report) == set(documents)
    assert {name: findings for name, findings in report.items() if findings} == {}


def test_the_linter_finds_a_wrong_action() -> None:
    bad = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:GetObjekt", "Resource": "arn:aws:s3:::bucket/*"}],
    }
    (findings,) = lint({"bad.json": json.dumps(bad)}).values()
    assert any("UNKNOWN_ACTION" in finding for finding in findings), findings
