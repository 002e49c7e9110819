"""Flow-definition requests and the live view of a started loop's flow: pure functions, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hitl.review import flow_requests
from hitl.review.errors import ValidationError
from hitl.review.flows import FlowDefinition, FlowMeta

OUTPUT = "s3://bucket/a2i-output"


def flow(**fields: object) -> FlowDefinition:
    return flow_requests.for_create({"FlowDefinitionName": "f", "Labels": ["a"], **fields}, OUTPUT)


def test_flat_and_sagemaker_shapes_give_the_same_definition() -> None:
    flat = flow(TaskCount=2, TaskTitle="T", S3OutputPath="s3://o/p/")
    nested = flow(HumanLoopConfig={"TaskCount": 2, "TaskTitle": "T"}, OutputConfig={"S3OutputPath": "s3://o/p"})
    assert flat == nested
    assert flat.s3_output_path == "s3://o/p"
    assert flow().s3_output_path == OUTPUT  # the service's default location


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"TaskCount": 2, "HumanLoopConfig": {"TaskCount": 3}}, "given twice"),
        ({"HumanLoopConfig": {"WorkteamArn": "arn"}}, "HumanLoopConfig.WorkteamArn is not supported"),
        ({"HumanLoopConfig": "x"}, "must be an object"),
        ({"Tags": []}, "Unknown field 'Tags'"),
        ({"TaskTimeLimitInSeconds": 10}, "TaskTimeLimitInSeconds"),
        ({"Instructions": "x" * 10_001}, "Instructions"),
    ],
)
def test_bad_requests_name_the_field(body: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as refused:
        flow(**body)
    assert message in refused.value.message


def test_updates_keep_what_they_do_not_name() -> None:
    current = flow(Labels=["a", "b"], Teams=["t"], Instructions="i")
    changed = flow_requests.updated(current, {"AddLabels": ["c", "a"], "RemoveLabels": ["b"]})
    assert changed.labels == ["a", "c"]
    assert (changed.teams, changed.instructions) == (["t"], "i")
    assert flow_requests.updated(current, {"Teams": []}).teams == []
    with pytest.raises(ValidationError):
        flow_requests.updated(current, {"RemoveLabels": ["a", "b"]})  # a flow keeps at least one label
    with pytest.raises(ValidationError):
        flow_requests.expected_version(0)


def test_describe_has_the_sagemaker_shape() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    meta = FlowMeta(creation_time=at, last_modified_time=at, version=3, source="api")
    described = flow_requests.describe("arn:f", flow(TaskCount=2), meta)
    assert described["CreationTime"] == "2026-01-02T03:04:05.678Z"
    assert described["HumanLoopConfig"]["TaskCount"] == 2
    assert described["OutputConfig"] == {"S3OutputPath": OUTPUT}
    assert (described["Version"], described["Source"], described["FlowDefinitionStatus"]) == (3, "api", "Active")


def test_a_started_loop_follows_labels_texts_and_teams_but_keeps_its_lifecycle() -> None:
    snapshot = flow(Labels=["a"], TaskCount=2, TaskTimeLimitInSeconds=600)
    now = flow(Labels=["a", "b"], TaskCount=1, TaskTimeLimitInSeconds=60, Instructions="new", Teams=["t"])
    seen = snapshot.presented_as(now)
    assert (seen.labels, seen.instructions, seen.teams) == (["a", "b"], "new", ["t"])
    assert (seen.task_count, seen.task_time_limit_in_seconds) == (2, 600)
    assert snapshot.presented_as(None) == snapshot  # the flow is gone: the snapshot stands
    assert snapshot.presented_as(flow(TaskType="ImageClassification", Labels=["z"])) == snapshot


def test_teams() -> None:
    assert flow().allows([])  # no teams named: everyone
    assert flow().allows(["x"])
    guarded = flow(Teams=["red", "blue"])
    assert guarded.allows(["blue"])
    assert not guarded.allows(["green"])
    assert not guarded.allows([])
