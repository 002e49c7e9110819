"""Flow definitions as data: the admin API and ``hitl review flows`` against the running service,
and configured flows written back whenever Redis loses them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis
from typer.testing import CliRunner

from hitl.cli.main import app as cli
from hitl.review.flow_admin import FlowAdminClient, FlowAdminError
from hitl.review.portal_client import PortalHTTPError
from hitl.settings import Settings
from hitl.stack import procs
from tests.review.conftest import FLOWS, REGION, ReviewProcess, a2i_client, flow_arn, input_content, unique

pytestmark = pytest.mark.integration
READER_KEYS = json.dumps({"testing": "testing", "reader": "reader-secret"})


@pytest.fixture(scope="module")
def service(start_review: Any) -> ReviewProcess:
    return start_review("flows", HITL_REVIEW_API_KEYS=READER_KEYS)


def admin(service: ReviewProcess) -> FlowAdminClient:
    return FlowAdminClient(service.url, REGION, access_key="testing", secret_key="testing")


def boxes(*labels: str) -> dict[str, Any]:
    return {
        "annotatedResult": {
            "boundingBoxes": [
                {"label": label, "left": 10 + 60 * i, "top": 10, "width": 50, "height": 50}
                for i, label in enumerate(labels)
            ],
            "inputImageProperties": {"width": 640, "height": 480},
        }
    }


def test_create_describe_list_and_review_with_the_flow(service: ReviewProcess, portal_as: Any) -> None:
    client = admin(service)
    name = unique("shoes")
    definition = {
        "FlowDefinitionName": name,
        "TaskType": "BoundingBox",
        "Labels": ["bag", "shoe"],
        "HumanLoopConfig": {"TaskCount": 1, "TaskTimeLimitInSeconds": 600, "TaskTitle": "Find bags and shoes"},
        "TaskAvailabilityLifetimeInSeconds": 7200,
        "Instructions": "Draw one box per bag or shoe.\nIgnore reflections.",
    }
    arn = client.create(definition)
    assert arn == flow_arn(name)
    assert client.create(definition) == arn  # a retried create changes nothing

    described = client.describe(name)
    assert described["FlowDefinitionArn"] == arn
    assert described["FlowDefinitionStatus"] == "Active"
    assert described["HumanLoopConfig"] == {
        "TaskTitle": "Find bags and shoes",
        "TaskDescription": "Correct the prediction so that it matches the image.",
        "TaskCount": 1,
        "TaskAvailabilityLifetimeInSeconds": 7200,
        "TaskTimeLimitInSeconds": 600,
    }
    assert described["OutputConfig"] == {"S3OutputPath": "s3://hitl-test/a2i-output"}  # the service's default
    assert (described["TaskType"], described["Labels"], described["Teams"]) == ("BoundingBox", ["bag", "shoe"], [])
    assert described["Instructions"].startswith("Draw one box")
    assert (described["Version"], described["Source"]) == (1, "api")

    listed = {s["FlowDefinitionName"]: s for s in client.list_flows()}
    assert listed[name]["FlowDefinitionArn"] == arn
    assert "conf-boxes" in listed  # configured flows are listed beside API-made ones

    # The flow is usable at once by the A2I API, and the portal shows its labels and instructions.
    a2i = a2i_client(service.url)
    loop = unique("shoes-loop")
    a2i.start_human_loop(
        HumanLoopName=loop, FlowDefinitionArn=arn, HumanLoopInput={"InputContent": input_content(initialValue=[])}
    )
    reviewer = portal_as(service.url, "bob")
    task = reviewer.open_task(loop)
    assert task["labels"] == ["bag", "shoe"]
    assert task["title"] == "Find bags and shoes"
    assert task["instructions"] == "Draw one box per bag or shoe.\nIgnore reflections."
    with pytest.raises(PortalHTTPError) as refused:
        reviewer.submit(loop, boxes("bag", "face"))
    assert refused.value.status == 400
    assert "['bag', 'shoe']" in str(refused.value)  # the allowed labels are named

    # A label added to the flow can be answered on the loop already waiting.
    updated = client.add_labels(name, ["hat"])
    assert updated == ["bag", "shoe", "hat"]
    assert reviewer.open_task(loop)["labels"] == ["bag", "shoe", "hat"]
    client.update(name, {"TaskTitle": "Bags, shoes and hats"})
    assert [t["title"] for t in reviewer.queue() if t["name"] == loop] == ["Bags, shoes and hats"]
    reviewer.submit(loop, boxes("bag", "hat"))
    assert client.describe(name)["Version"] == 3


def test_updates_are_partial_versioned_and_validated(service: ReviewProcess) -> None:
    client = admin(service)
    name = unique("upd")
    client.create({"FlowDefinitionName": name, "TaskType": "ImageClassification", "Labels": ["cat", "dog"]})
    after = client.update(name, {"HumanLoopConfig": {"TaskCount": 3}, "Instructions": "Pick the animal."})
    assert after["HumanLoopConfig"]["TaskCount"] == 3
    assert after["Labels"] == ["cat", "dog"]  # untouched fields stay
    assert after["Version"] == 2
    assert client.update(name, {"TaskCount": 3})["Version"] == 2  # no change, no new version
    assert client.set_labels(name, ["bird", "cat"]) == ["bird", "cat"]
    assert client.update(name, {"RemoveLabels": ["bird"], "AddLabels": ["fish"]})["Labels"] == ["cat", "fish"]

    with pytest.raises(FlowAdminError) as stale:
        client.update(name, {"Teams": ["vets"]}, expected_version=2)
    assert (stale.value.status, stale.value.code) == (409, "ConflictException")
    current = client.describe(name)["Version"]
    assert client.update(name, {"Teams": ["vets"]}, expected_version=current)["Teams"] == ["vets"]

    bad: list[tuple[str, dict[str, Any], str]] = [
        ("POST", {"FlowDefinitionName": "Bad_Name", "Labels": ["a"]}, "FlowDefinitionName"),
        ("POST", {"FlowDefinitionName": unique("x"), "Labels": []}, "Labels"),
        ("POST", {"FlowDefinitionName": unique("x"), "Labels": ["a", "a"]}, "distinct"),
        ("POST", {"FlowDefinitionName": unique("x"), "Labels": ["None of the Above"]}, "reserved"),
        ("POST", {"FlowDefinitionName": unique("x"), "Labels": ["a"], "TaskCount": 4}, "TaskCount"),
        ("POST", {"FlowDefinitionName": unique("x"), "Labels": ["a"], "TaskType": "Polygon"}, "TaskType"),
        ("POST", {"FlowDefinitionName": unique("x"), "Labels": ["a"], "WorkteamArn": "x"}, "Unknown field"),
        ("POST", {"FlowDefinitionName": unique("x"), "Labels": ["a"], "Teams": ["no spaces"]}, "team"),
        ("PATCH", {"FlowDefinitionName": "renamed"}, "cannot be changed"),
        ("PATCH", {"AddLabels": "cat"}, "AddLabels"),
    ]
    for method, body, expected in bad:
        call = client.create if method == "POST" else (lambda changes: client.update(name, changes))
        with pytest.raises(FlowAdminError) as refused:
            call(body)
        assert (refused.value.status, refused.value.code) == (400, "ValidationException"), body
        assert expected in refused.value.message, (expected, refused.value.message)

    with pytest.raises(FlowAdminError) as existing:
        client.create({"FlowDefinitionName": name, "Labels": ["other"]})
    assert (existing.value.status, existing.value.code) == (409, "ConflictException")
    with pytest.raises(FlowAdminError) as missing:
        client.describe(unique("nothing"))
    assert (missing.value.status, missing.value.code) == (404, "ResourceNotFoundException")
    with pytest.raises(FlowAdminError) as missing_update:
        client.add_labels(unique("nothing"), ["a"])
    assert missing_update.value.status == 404


def test_only_admin_keys_change_flows(service: ReviewProcess) -> None:
    name = unique("guarded")
    admin(service).create({"FlowDefinitionName": name, "Labels": ["a"]})
    reader = FlowAdminClient(service.url, REGION, access_key="reader", secret_key="reader-secret")
    assert reader.describe(name)["Labels"] == ["a"]  # any valid key may read
    for attempt in (
        lambda: reader.create({"FlowDefinitionName": unique("r"), "Labels": ["a"]}),
        lambda: reader.add_labels(name, ["b"]),
    ):
        with pytest.raises(FlowAdminError) as denied:
            attempt()
        assert (denied.value.status, denied.value.code) == (403, "AccessDeniedException")
    forged = FlowAdminClient(service.url, REGION, access_key="testing", secret_key="wrong")
    with pytest.raises(FlowAdminError) as bad_signature:
        forged.add_labels(name, ["b"])
    assert (bad_signature.value.status, bad_signature.value.code) == (403, "InvalidSignatureException")
    unknown = FlowAdminClient(service.url, REGION, access_key="nobody", secret_key="x")
    with pytest.raises(FlowAdminError) as unknown_key:
        unknown.list_flows()
    assert unknown_key.value.status == 403
    assert admin(service).describe(name)["Labels"] == ["a"]


def test_cli_creates_lists_describes_and_updates(service: ReviewProcess) -> None:
    runner = CliRunner()
    name = unique("cli")

    def run(*args: str) -> Any:
        result = runner.invoke(cli, ["review", "flows", *args, "--url", service.url])
        return result

    created = run("create", name, "--kind", "verification", "-l", "bag,shoe", "--task-count", "2",
                  "--task-time-limit", "300", "--lifetime", "3600", "--instructions", "Yes if it is there.",
                  "--team", "footwear")
    assert created.exit_code == 0, created.output
    assert created.output.strip() == flow_arn(name)

    listed = run("list", "--json")
    assert listed.exit_code == 0, listed.output
    assert name in [s["FlowDefinitionName"] for s in json.loads(listed.output)]
    assert name in run("list").output

    described = run("describe", name, "--json")
    flow = json.loads(described.output)
    assert (flow["TaskType"], flow["Labels"], flow["Teams"]) == ("LabelVerification", ["bag", "shoe"], ["footwear"])
    assert flow["HumanLoopConfig"]["TaskCount"] == 2
    assert flow["HumanLoopConfig"]["TaskTimeLimitInSeconds"] == 300
    assert flow["HumanLoopConfig"]["TaskAvailabilityLifetimeInSeconds"] == 3600
    text = run("describe", name).output
    for shown in ("LabelVerification", "footwear", "Yes if it is there."):
        assert shown in text

    updated = run("update", name, "--add-label", "hat", "--everyone", "--json")
    assert updated.exit_code == 0, updated.output
    after = json.loads(updated.output)
    assert (after["Labels"], after["Teams"], after["Version"]) == (["bag", "shoe", "hat"], [], 2)

    refused = run("update", name, "--task-count", "1", "--expected-version", "1")
    assert refused.exit_code == 1
    assert "ConflictException" in refused.output
    assert run("describe", unique("nothing")).exit_code == 1
    assert run("create", unique("c"), "--kind", "polygons", "-l", "a").exit_code == 2
    assert run("update", name).exit_code == 2  # nothing to change


def _flush(settings: Settings, service: ReviewProcess) -> int:
    """Delete every key of this service's namespace, as FLUSHDB would for a dedicated database."""
    client = redis.Redis.from_url(settings.redis_url)
    keys = list(client.scan_iter(f"{service.env['HITL_KEY_PREFIX']}:*"))
    return client.delete(*keys) if keys else 0


def test_configured_flows_come_back_after_redis_loses_them(
    start_review: Any, settings: Settings, aws_env: dict[str, Any]
) -> None:
    service: ReviewProcess = start_review("flows-flush")
    a2i = a2i_client(service.url)
    client = admin(service)
    assert client.describe("conf-boxes")["Source"] == "file"
    assert _flush(settings, service) > 0

    # At once, without a restart: the next call finds the configured flow written back.
    name = unique("after-flush")
    a2i.start_human_loop(
        HumanLoopName=name, FlowDefinitionArn=flow_arn("conf-boxes"), HumanLoopInput={"InputContent": input_content()}
    )
    summaries = a2i.list_human_loops(FlowDefinitionArn=flow_arn("conf-list"))["HumanLoopSummaries"]
    assert summaries == []

    # And without any call: the sweeper writes back every configured flow.
    _flush(settings, service)
    store = redis.Redis.from_url(settings.redis_url)
    flows_key = f"{service.env['HITL_KEY_PREFIX']}:review:flows"
    procs.wait_until(lambda: store.hlen(flows_key) >= 8, 10, "configured flows written back")
    assert {s["FlowDefinitionName"] for s in client.list_flows()} >= {"conf-boxes", "review-verify"}


def test_the_file_wins_at_start_unless_the_flow_was_changed_through_the_api(
    start_review: Any, tmp_path: Path
) -> None:
    service: ReviewProcess = start_review("flows-keep")
    client = admin(service)
    assert client.add_labels("review-classes", ["cat"]) == ["face", "no-face", "cat"]
    untouched = client.describe("conf-stop")
    service.restart()
    kept = client.describe("review-classes")
    assert (kept["Labels"], kept["Source"], kept["Version"]) == (["face", "no-face", "cat"], "api", 2)
    again = client.describe("conf-stop")
    assert (again["Version"], again["CreationTime"]) == (untouched["Version"], untouched["CreationTime"])

    # The operator edits the file: a flow never changed through the API follows it at the next start.
    edited = [
        {**f, "Labels": ["face", "hat", "scarf"]} if f["FlowDefinitionName"] in ("conf-stop", "review-classes") else f
        for f in FLOWS
    ]
    flows_file = tmp_path / "flows-edited.json"
    flows_file.write_text(json.dumps({"FlowDefinitions": edited}))
    service.env["HITL_REVIEW_FLOW_DEFINITIONS_FILE"] = str(flows_file)
    service.restart()
    followed = client.describe("conf-stop")
    assert (followed["Labels"], followed["Source"]) == (["face", "hat", "scarf"], "file")
    assert followed["Version"] == untouched["Version"] + 1
    assert followed["CreationTime"] == untouched["CreationTime"]
    assert client.describe("review-classes")["Labels"] == ["face", "no-face", "cat"]  # the API's change stands
