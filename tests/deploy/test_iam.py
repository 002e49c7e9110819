"""IAM policy documents: valid JSON, least privilege (no wildcard actions, no `"Resource": "*"` except
where the API allows nothing narrower), real action names, and placeholders that all render."""

from __future__ import annotations

import json
import re
from typing import Any

import botocore.session
import pytest

from tests.deploy.conftest import AWS_VALUES
from tests.deploy.tools import DEPLOY

IAM = DEPLOY / "iam"
SERVICES = (
    "detector",
    "dispatcher",
    "trainer",
    "beat",
    "intake",
    "ingestor",
    "reconciler",
    "monitor",
    "review",
    "bootstrap",
    "a2i-execution",  # the role A2I's flow definitions run as, not a pod's
)
# (policy, statement Sid) -> why `"Resource": "*"` is needed. Also listed in deploy/README.md.
RESOURCE_STAR_EXCEPTIONS = {
    (
        "ingestor",
        "ListHumanLoopsNoResourceLevelPermissions",
    ): "sagemaker:ListHumanLoops supports no resource-level permissions; limited to the deployment's Region",
    (
        "reconciler",
        "ListHumanLoopsNoResourceLevelPermissions",
    ): "sagemaker:ListHumanLoops supports no resource-level permissions; limited to the deployment's Region",
}
# IAM action prefix -> botocore service models whose operations those actions authorize.
BOTOCORE_SERVICES = {
    "s3": ["s3"],
    "sqs": ["sqs"],
    "ssm": ["ssm"],
    "events": ["events"],
    "rekognition": ["rekognition"],
    "sagemaker": ["sagemaker", "sagemaker-runtime", "sagemaker-a2i-runtime"],
    "iam": ["iam"],
}
# IAM actions that are not named after an API operation.
NON_OPERATION_ACTIONS = {
    "s3:ListBucket": "ListObjectsV2",
    "s3:PutBucketCORS": "PutBucketCors",
    "s3:PutBucketNotification": "PutBucketNotificationConfiguration",
    "s3:GetBucketCORS": "GetBucketCors",
    "s3:GetBucketNotification": "GetBucketNotificationConfiguration",
}
# Permissions that authorize no API operation of their own.
PERMISSION_ONLY_ACTIONS = {"iam:PassRole"}


def policies() -> dict[str, dict[str, Any]]:
    return {
        path.stem: json.loads(path.read_text())
        for path in sorted(IAM.glob("*.json"))
        if not path.stem.startswith("trust")
    }


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_one_policy_per_service() -> None:
    assert set(policies()) == set(SERVICES)


@pytest.mark.parametrize("service", SERVICES)
def test_policy_is_least_privilege(service: str) -> None:
    policy = policies()[service]
    assert policy["Version"] == "2012-10-17"
    sids = [statement["Sid"] for statement in policy["Statement"]]
    assert len(sids) == len(set(sids))
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        assert "NotAction" not in statement
        assert "NotResource" not in statement
        for action in as_list(statement["Action"]):
            assert "*" not in action, f"{service}/{statement['Sid']}: wildcard action {action}"
        resources = as_list(statement["Resource"])
        if "*" in resources:
            assert (service, statement["Sid"]) in RESOURCE_STAR_EXCEPTIONS, f"{service}/{statement['Sid']}: Resource *"
            assert resources == ["*"]
        else:
            for resource in resources:
                assert resource.startswith("arn:aws:"), resource


def test_resource_star_exceptions_are_documented() -> None:
    readme = (DEPLOY / "README.md").read_text()
    for service, sid in RESOURCE_STAR_EXCEPTIONS:
        assert sid in readme, f"{service}/{sid} is not explained in deploy/README.md"


def test_actions_are_real_api_operations() -> None:
    session = botocore.session.get_session()
    operations = {
        prefix: {op for name in names for op in session.get_service_model(name).operation_names}
        for prefix, names in BOTOCORE_SERVICES.items()
    }
    for service, policy in policies().items():
        for statement in policy["Statement"]:
            for action in as_list(statement["Action"]):
                if action in PERMISSION_ONLY_ACTIONS:
                    continue
                prefix, _, operation = action.partition(":")
                operation = NON_OPERATION_ACTIONS.get(action, operation)
                assert operation in operations[prefix], f"{service}: {action} is not an operation of {prefix}"


def test_every_document_renders_with_the_example_values(iam_render: Any) -> None:
    values = iam_render.read_env(AWS_VALUES) | {"ServiceAccount": "detector"}
    for path in sorted(IAM.glob("*.json")):
        rendered = json.loads(iam_render.render(path.read_text(), values))
        assert "${" not in json.dumps(rendered), path.name
        for statement in rendered["Statement"]:
            for resource in as_list(statement.get("Resource", [])):
                assert resource == "*" or re.match(r"arn:aws:[a-z0-9-]+:[a-z0-9-]*:(\d{12})?:", resource), resource


def test_render_refuses_a_missing_value(iam_render: Any) -> None:
    with pytest.raises(KeyError):
        iam_render.render('{"a": "${Bucket}"}', {})
    assert iam_render.render("$(VAR) {{ $labels.x }} ${A}", {"A": "1"}) == "$(VAR) {{ $labels.x }} 1"
