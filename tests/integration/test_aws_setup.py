"""``hitl aws setup``: task UIs and flow definitions (SageMaker), and the A2I events rule.

moto does not implement human task UIs or flow definitions, so those SageMaker calls go to botocore's
Stubber (each request checked against the service model, with the exact parameters expected here);
EventBridge and SQS are moto's server over HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from hitl import aws
from hitl.a2i.setup import TASK_TYPES, TITLES, A2ISetup, SetupError, template, ui_name
from hitl.domain.conversion import parse_answer
from hitl.settings import Settings

pytestmark = pytest.mark.integration

WORKTEAM = "arn:aws:sagemaker:us-east-1:123456789012:workteam/private-crowd/reviewers"
ROLE = "arn:aws:iam::123456789012:role/hitl-a2i-execution"
NOW = datetime(2026, 11, 29, tzinfo=UTC)
UI_ARN = "arn:aws:sagemaker:us-east-1:123456789012:human-task-ui/"


@pytest.fixture
def env(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "a2i_workteam_arn": WORKTEAM,
            "a2i_role_arn": ROLE,
            "events_queue": "setup-events",
            "a2i_rule_name": "setup-a2i-rule",
            "bucket": "hitl-setup-test",
        }
    )


@pytest.fixture
def sagemaker(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    stubbed = boto3.client("sagemaker", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    real = aws.client
    monkeypatch.setattr(aws, "client", lambda name: stubbed if name == "sagemaker" else real(name))
    with Stubber(stubbed) as stub:
        yield stub
        stub.assert_no_pending_responses()


def flow_request(env: Settings, kind: str) -> dict[str, Any]:
    return {
        "FlowDefinitionName": f"hitl-{kind}",
        "RoleArn": ROLE,
        "OutputConfig": {"S3OutputPath": f"s3://{env.bucket}/a2i-output"},
        "HumanLoopConfig": {
            "WorkteamArn": WORKTEAM,
            "HumanTaskUiArn": UI_ARN + ui_name("hitl", kind, template(kind)),
            "TaskTitle": ANY_TEXT,
            "TaskDescription": ANY_TEXT,
            "TaskCount": 1,
            "TaskAvailabilityLifetimeInSeconds": env.a2i_task_lifetime_seconds,
            "TaskTimeLimitInSeconds": 3600,
        },
    }


class _AnyText(str):
    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and 0 < len(other) <= 255

    __hash__ = str.__hash__


ANY_TEXT = _AnyText("")


def test_dry_run_prints_every_call_and_touches_nothing(env: Settings, sagemaker: Stubber) -> None:
    lines: list[str] = []
    A2ISetup(env, dry_run=True, echo=lines.append).run()
    operations = [line.split()[0] for line in lines]
    assert operations == [
        "sagemaker.create_human_task_ui",
        "sagemaker.create_flow_definition",
    ] * 3 + ["events.put_rule/put_targets"]
    created = json.loads(lines[1].split(" ", 1)[1])
    assert created["OutputConfig"] == {"S3OutputPath": f"s3://{env.bucket}/a2i-output"}
    assert created["HumanLoopConfig"]["WorkteamArn"] == WORKTEAM


def test_setup_creates_then_keeps_and_routes_events(env: Settings, sagemaker: Stubber) -> None:
    for kind in TASK_TYPES:
        name = ui_name("hitl", kind, template(kind))
        ui_arn = f"arn:aws:sagemaker:us-east-1:123456789012:human-task-ui/{name}"
        sagemaker.add_client_error(
            "describe_human_task_ui",
            "ResourceNotFound",
            http_status_code=404,
            expected_params={"HumanTaskUiName": name},
        )
        sagemaker.add_response(
            "create_human_task_ui",
            {"HumanTaskUiArn": ui_arn},
            {"HumanTaskUiName": name, "UiTemplate": {"Content": template(kind)}},
        )
        sagemaker.add_client_error(
            "describe_flow_definition",
            "ResourceNotFound",
            http_status_code=404,
            expected_params={"FlowDefinitionName": f"hitl-{kind}"},
        )
        sagemaker.add_response(
            "create_flow_definition",
            {"FlowDefinitionArn": f"arn:aws:sagemaker:us-east-1:123456789012:flow-definition/hitl-{kind}"},
            flow_request(env, kind),
        )
    report = A2ISetup(env).run()
    assert set(report.flows) == set(TASK_TYPES)
    events, sqs = aws.client("events"), aws.client("sqs")
    rule = events.describe_rule(Name="setup-a2i-rule")
    assert "SageMaker A2I HumanLoop Status Change" in rule["EventPattern"]
    (target,) = events.list_targets_by_rule(Rule="setup-a2i-rule")["Targets"]
    url = sqs.get_queue_url(QueueName="setup-events")["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert target["Arn"] == attributes["QueueArn"]
    policy = json.loads(attributes["Policy"])["Statement"][0]
    assert policy["Principal"] == {"Service": "events.amazonaws.com"}
    assert policy["Condition"]["ArnEquals"]["aws:SourceArn"] == rule["Arn"]
    assert "RedrivePolicy" in attributes

    # Again: everything is found as wanted, nothing is created (an unexpected call fails the Stubber).
    for kind in TASK_TYPES:
        name = ui_name("hitl", kind, template(kind))
        ui_arn = f"arn:aws:sagemaker:us-east-1:123456789012:human-task-ui/{name}"
        sagemaker.add_response(
            "describe_human_task_ui",
            {
                "HumanTaskUiArn": ui_arn,
                "HumanTaskUiName": name,
                "CreationTime": NOW,
                "UiTemplate": {"Url": "https://x", "ContentSha256": "x"},
            },
        )
        wanted = flow_request(env, kind)
        wanted["HumanLoopConfig"]["HumanTaskUiArn"] = ui_arn
        wanted["HumanLoopConfig"]["TaskTitle"], wanted["HumanLoopConfig"]["TaskDescription"] = TITLES[kind]
        sagemaker.add_response(
            "describe_flow_definition",
            {
                **wanted,
                "FlowDefinitionArn": f"arn:aws:sagemaker:us-east-1:123456789012:flow-definition/hitl-{kind}",
                "FlowDefinitionStatus": "Active",
                "CreationTime": NOW,
            },
        )
    again = A2ISetup(env).run()
    assert again.flows == report.flows
    assert again.notes == []


def test_setup_needs_the_workteam_and_role(settings: Settings) -> None:
    with pytest.raises(SetupError, match="HITL_A2I_WORKTEAM_ARN, HITL_A2I_ROLE_ARN"):
        A2ISetup(settings)


@pytest.mark.parametrize(
    ("kind", "answer"),
    [
        (
            "bounding-box",
            {
                "annotatedResult": {
                    "boundingBoxes": [{"label": "face", "left": 1, "top": 2, "width": 3, "height": 4}],
                    "inputImageProperties": {"width": 100, "height": 80},
                }
            },
        ),
        ("classification", {"category": {"label": "face"}}),
        ("verification", {"labelVerification": json.dumps({"labels": [{"label": "face", "verified": True}]})}),
    ],
)
def test_templates_read_the_input_and_answer_what_the_ingestor_reads(kind: str, answer: dict[str, Any]) -> None:
    text = template(kind)
    assert "https://assets.crowd.aws/crowd-html-elements.js" in text
    assert "<crowd-form>" in text
    assert "task.input.taskObject | grant_read_access" in text
    assert "task.input.initialValue" in text
    if kind != "verification":
        assert "task.input.labels" in text
    name = next(iter(answer))
    assert f'name="{name}"' in text
    parsed = parse_answer({"answerContent": answer})
    assert parsed.kind == {"bounding-box": "boxes", "classification": "class", "verification": "verification"}[kind]
