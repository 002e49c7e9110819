"""The A2I runtime API of the review service, driven only through boto3's sagemaker-a2i-runtime client."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from botocore.exceptions import ClientError

from hitl.review.store import LoopStore
from hitl.settings import Settings
from tests.review.conftest import (
    BUCKET,
    REGION,
    ReviewProcess,
    a2i_client,
    flow_arn,
    input_content,
    unique,
    wait_status,
)

pytestmark = pytest.mark.integration
BOXES = flow_arn("conf-boxes")
# How long a stopped loop stays "Stopping": wide enough that the Describe right after the Stop sees it
# on a loaded machine; HITL_TEST_STOP_DELAY_SECONDS changes it.
STOP_DELAY_SECONDS = float(os.environ.get("HITL_TEST_STOP_DELAY_SECONDS", "5"))


@pytest.fixture(scope="module")
def service(start_review: Any) -> ReviewProcess:
    process: ReviewProcess = start_review("conformance", HITL_REVIEW_STOP_DELAY_SECONDS=str(STOP_DELAY_SECONDS))
    return process


@pytest.fixture(scope="module")
def loops(service: ReviewProcess) -> LoopStore:
    """The service's own loop records in Redis, to check what a response does not show."""
    url = service.env["HITL_REDIS_URL"]
    return LoopStore(redis.Redis.from_url(url), Settings(redis_url=url, key_prefix=service.env["HITL_KEY_PREFIX"]).key)


def loop_arn(name: str) -> str:
    return f"arn:aws:sagemaker:{REGION}:000000000000:human-loop/{name}"


@pytest.fixture(scope="module")
def a2i(service: ReviewProcess) -> Any:
    return a2i_client(service.url)


@pytest.fixture(scope="module")
def raw(service: ReviewProcess) -> Any:
    """A client without botocore's own parameter checks, to reach the server's validation."""
    return a2i_client(service.url, validate=False)


def start(client: Any, name: str, flow: str = BOXES, content: str | None = None, **extra: Any) -> Any:
    return client.start_human_loop(
        HumanLoopName=name,
        FlowDefinitionArn=flow,
        HumanLoopInput={"InputContent": content if content is not None else input_content()},
        **extra,
    )


def error_of(call: Any) -> tuple[str, int]:
    with pytest.raises(ClientError) as caught:
        call()
    response = caught.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


# --- StartHumanLoop / DescribeHumanLoop --------------------------------------------------------


def test_start_then_describe(a2i: Any) -> None:
    name = unique("start")
    before = datetime.now(UTC) - timedelta(seconds=1)
    arn = start(a2i, name)["HumanLoopArn"]
    assert arn == f"arn:aws:sagemaker:{REGION}:000000000000:human-loop/{name}"
    found = a2i.describe_human_loop(HumanLoopName=name)
    assert found["HumanLoopName"] == name
    assert found["HumanLoopArn"] == arn
    assert found["FlowDefinitionArn"] == BOXES
    assert found["HumanLoopStatus"] == "InProgress"
    assert isinstance(found["CreationTime"], datetime)
    assert found["CreationTime"].tzinfo is not None
    assert before <= found["CreationTime"] <= datetime.now(UTC) + timedelta(seconds=1)
    assert "HumanLoopOutput" not in found
    assert "FailureCode" not in found


def test_start_with_content_classifiers(a2i: Any, loops: LoopStore) -> None:
    name = unique("classified")
    classifiers = ["FreeOfPersonallyIdentifiableInformation", "FreeOfAdultContent"]
    assert start(a2i, name, DataAttributes={"ContentClassifiers": classifiers})["HumanLoopArn"] == loop_arn(name)
    stored = loops.get(name)
    assert stored is not None
    assert stored.data_attributes == classifiers
    plain = unique("unclassified")
    start(a2i, plain)
    stored_plain = loops.get(plain)
    assert stored_plain is not None
    assert stored_plain.data_attributes == []


def test_same_name_same_input_is_idempotent(a2i: Any) -> None:
    name = unique("again")
    first = start(a2i, name)["HumanLoopArn"]
    assert start(a2i, name)["HumanLoopArn"] == first


def test_same_name_different_input_conflicts(a2i: Any) -> None:
    name = unique("conflict")
    start(a2i, name)
    assert error_of(lambda: start(a2i, name, content=input_content(routeReason="audit"))) == (
        "ConflictException",
        409,
    )
    assert error_of(lambda: start(a2i, name, flow=flow_arn("conf-list"))) == ("ConflictException", 409)


@pytest.mark.parametrize("name", ["Upper", "under_score", "-leading", "trailing-", "a" * 64, "dot.name", "sp ace", ""])
def test_invalid_loop_names(raw: Any, name: str) -> None:
    assert error_of(lambda: start(raw, name)) == ("ValidationException", 400)


def test_longest_valid_name_and_double_hyphen(a2i: Any) -> None:
    for name in ["a" * 63, unique("x--y")]:
        assert start(a2i, name)["HumanLoopArn"].endswith(name)


@pytest.mark.parametrize(
    "arn",
    [
        "not-an-arn",
        "arn:aws:sagemaker:us-east-1:123:flow-definition/x",
        "arn:aws:sagemaker:us-east-1:000000000000:workteam/x",
        "arn:aws:s3:us-east-1:000000000000:flow-definition/x",
    ],
)
def test_invalid_flow_definition_arns(raw: Any, arn: str) -> None:
    assert error_of(lambda: start(raw, unique("badarn"), flow=arn)) == ("ValidationException", 400)


def test_unknown_flow_definition(a2i: Any) -> None:
    assert error_of(lambda: start(a2i, unique("noflow"), flow=flow_arn("does-not-exist"))) == (
        "ValidationException",
        400,
    )


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[1, 2]",
        json.dumps({"initialValue": []}),
        json.dumps({"taskObject": "https://example.com/a.png"}),
        json.dumps({"taskObject": "s3://another-bucket/a.png"}),
        json.dumps({"taskObject": f"s3://{BUCKET}/a.png", "labels": "face"}),
    ],
)
def test_invalid_input_content(raw: Any, content: str) -> None:
    assert error_of(lambda: start(raw, unique("badinput"), content=content)) == ("ValidationException", 400)


def test_input_content_size_limit(a2i: Any, raw: Any) -> None:
    limit = 3_145_728
    head = json.dumps({"taskObject": f"s3://{BUCKET}/a.png", "pad": ""})
    at_limit = head[:-2] + "x" * (limit - len(head)) + '"}'
    assert len(at_limit) == limit
    big = unique("big")
    assert start(a2i, big, content=at_limit)["HumanLoopArn"] == loop_arn(big)
    assert a2i.describe_human_loop(HumanLoopName=big)["HumanLoopStatus"] == "InProgress"
    over = head[:-2] + "x" * (limit - len(head) + 1) + '"}'
    assert error_of(lambda: start(raw, unique("toobig"), content=over)) == ("ValidationException", 400)


def test_invalid_content_classifier(raw: Any) -> None:
    attributes = {"ContentClassifiers": ["FreeOfSpoilers"]}
    assert error_of(lambda: start(raw, unique("cc"), DataAttributes=attributes)) == ("ValidationException", 400)


def test_missing_required_members(raw: Any) -> None:
    assert error_of(lambda: raw.start_human_loop(HumanLoopName=unique("m"), FlowDefinitionArn=BOXES)) == (
        "ValidationException",
        400,
    )


def test_describe_unknown_and_invalid(a2i: Any, raw: Any) -> None:
    assert error_of(lambda: a2i.describe_human_loop(HumanLoopName="never-started")) == (
        "ResourceNotFoundException",
        404,
    )
    assert error_of(lambda: raw.describe_human_loop(HumanLoopName="Not_Valid")) == ("ValidationException", 400)


def test_quota_of_open_loops(a2i: Any) -> None:
    quota = flow_arn("conf-quota")
    first = unique("quota")
    start(a2i, first, flow=quota)
    assert error_of(lambda: start(a2i, unique("quota"), flow=quota)) == ("ServiceQuotaExceededException", 402)
    a2i.stop_human_loop(HumanLoopName=first)  # a stopped loop no longer counts
    after_stop = unique("quota")
    assert start(a2i, after_stop, flow=quota)["HumanLoopArn"] == loop_arn(after_stop)
    assert a2i.describe_human_loop(HumanLoopName=after_stop)["HumanLoopStatus"] == "InProgress"


# --- ListHumanLoops ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def listed(a2i: Any) -> list[dict[str, Any]]:
    """Seven loops of conf-list, oldest first, with their creation times."""
    names = [f"list-{i}-{time.time_ns() % 10**9}" for i in range(7)]
    for name in names:
        start(a2i, name, flow=flow_arn("conf-list"))
        time.sleep(0.003)  # distinct creation milliseconds
    return [a2i.describe_human_loop(HumanLoopName=n) for n in names]


def _all_pages(client: Any, **params: Any) -> tuple[list[str], int]:
    names: list[str] = []
    pages = 0
    token = None
    while True:
        extra: dict[str, str] = {"NextToken": token} if token else {}
        page = client.list_human_loops(FlowDefinitionArn=flow_arn("conf-list"), **params, **extra)
        pages += 1
        names += [s["HumanLoopName"] for s in page["HumanLoopSummaries"]]
        token = page.get("NextToken")
        if not token:
            return names, pages


def test_list_orders(a2i: Any, listed: list[dict[str, Any]]) -> None:
    oldest_first = [x["HumanLoopName"] for x in listed]
    ascending = a2i.list_human_loops(FlowDefinitionArn=flow_arn("conf-list"), SortOrder="Ascending")
    assert [s["HumanLoopName"] for s in ascending["HumanLoopSummaries"]] == oldest_first
    descending = a2i.list_human_loops(FlowDefinitionArn=flow_arn("conf-list"), SortOrder="Descending")
    assert [s["HumanLoopName"] for s in descending["HumanLoopSummaries"]] == oldest_first[::-1]
    default = a2i.list_human_loops(FlowDefinitionArn=flow_arn("conf-list"))
    assert [s["HumanLoopName"] for s in default["HumanLoopSummaries"]] == oldest_first[::-1]
    summary = ascending["HumanLoopSummaries"][0]
    assert set(summary) == {"HumanLoopName", "HumanLoopStatus", "CreationTime", "FlowDefinitionArn"}
    assert summary["CreationTime"] == listed[0]["CreationTime"]
    assert "NextToken" not in ascending


@pytest.mark.parametrize("order", ["Ascending", "Descending"])
def test_list_pagination(a2i: Any, listed: list[dict[str, Any]], order: str) -> None:
    expected = [x["HumanLoopName"] for x in listed]
    names, pages = _all_pages(a2i, SortOrder=order, MaxResults=3)
    assert names == (expected if order == "Ascending" else expected[::-1])
    assert pages == 3


def test_list_paginator(a2i: Any, listed: list[dict[str, Any]]) -> None:
    paginator = a2i.get_paginator("list_human_loops")
    pages = list(
        paginator.paginate(
            FlowDefinitionArn=flow_arn("conf-list"), SortOrder="Ascending", PaginationConfig={"PageSize": 2}
        )
    )
    names = [s["HumanLoopName"] for p in pages for s in p["HumanLoopSummaries"]]
    assert names == [x["HumanLoopName"] for x in listed]


def test_list_creation_time_filters(a2i: Any, listed: list[dict[str, Any]]) -> None:
    names = [x["HumanLoopName"] for x in listed]
    pivot = listed[3]["CreationTime"]
    after = a2i.list_human_loops(
        FlowDefinitionArn=flow_arn("conf-list"), CreationTimeAfter=pivot, SortOrder="Ascending"
    )
    assert [s["HumanLoopName"] for s in after["HumanLoopSummaries"]] == names[4:]
    before = a2i.list_human_loops(
        FlowDefinitionArn=flow_arn("conf-list"), CreationTimeBefore=pivot, SortOrder="Ascending"
    )
    assert [s["HumanLoopName"] for s in before["HumanLoopSummaries"]] == names[:3]
    window = a2i.list_human_loops(
        FlowDefinitionArn=flow_arn("conf-list"),
        CreationTimeAfter=listed[1]["CreationTime"],
        CreationTimeBefore=listed[5]["CreationTime"],
        SortOrder="Ascending",
        MaxResults=2,
    )
    assert [s["HumanLoopName"] for s in window["HumanLoopSummaries"]] == names[2:4]
    rest = a2i.list_human_loops(
        FlowDefinitionArn=flow_arn("conf-list"),
        CreationTimeAfter=listed[1]["CreationTime"],
        CreationTimeBefore=listed[5]["CreationTime"],
        SortOrder="Ascending",
        MaxResults=2,
        NextToken=window["NextToken"],
    )
    assert [s["HumanLoopName"] for s in rest["HumanLoopSummaries"]] == [names[4]]
    future = datetime.now(UTC) + timedelta(days=1)
    assert (
        a2i.list_human_loops(FlowDefinitionArn=flow_arn("conf-list"), CreationTimeAfter=future)["HumanLoopSummaries"]
        == []
    )


def test_list_validation(a2i: Any, raw: Any, listed: list[dict[str, Any]]) -> None:
    fd = flow_arn("conf-list")
    for bad in (0, 101):
        assert error_of(lambda bad=bad: raw.list_human_loops(FlowDefinitionArn=fd, MaxResults=bad)) == (
            "ValidationException",
            400,
        )
    assert error_of(lambda: raw.list_human_loops(FlowDefinitionArn=fd, SortOrder="Sideways")) == (
        "ValidationException",
        400,
    )
    assert error_of(lambda: a2i.list_human_loops(FlowDefinitionArn=fd, NextToken="garbage!")) == (
        "ValidationException",
        400,
    )
    token = a2i.list_human_loops(FlowDefinitionArn=fd, MaxResults=1, SortOrder="Ascending")["NextToken"]
    assert error_of(lambda: a2i.list_human_loops(FlowDefinitionArn=fd, NextToken=token, SortOrder="Descending")) == (
        "ValidationException",
        400,
    )
    assert error_of(lambda: raw.list_human_loops(FlowDefinitionArn="nope")) == ("ValidationException", 400)
    assert error_of(lambda: a2i.list_human_loops(FlowDefinitionArn=flow_arn("unknown-flow"))) == (
        "ResourceNotFoundException",
        404,
    )
    everything = a2i.list_human_loops(FlowDefinitionArn=fd, MaxResults=100, SortOrder="Ascending")
    assert [s["HumanLoopName"] for s in everything["HumanLoopSummaries"]] == [x["HumanLoopName"] for x in listed]


# --- StopHumanLoop / DeleteHumanLoop -----------------------------------------------------------


def test_stop_then_delete_lifecycle(a2i: Any, inbox: Any) -> None:
    name = unique("stop")
    start(a2i, name, flow=flow_arn("conf-stop"))
    assert error_of(lambda: a2i.delete_human_loop(HumanLoopName=name)) == ("ValidationException", 400)
    assert a2i.stop_human_loop(HumanLoopName=name)["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert a2i.describe_human_loop(HumanLoopName=name)["HumanLoopStatus"] == "Stopping"
    assert error_of(lambda: a2i.delete_human_loop(HumanLoopName=name)) == ("ValidationException", 400)
    a2i.stop_human_loop(HumanLoopName=name)  # repeating a stop is harmless
    stopped = wait_status(a2i, name, "Stopped", timeout=STOP_DELAY_SECONDS + 15)
    assert "HumanLoopOutput" not in stopped
    event = inbox.wait(name, "Stopped")
    assert event["detail"]["humanLoopArn"].endswith(f":human-loop/{name}")
    assert a2i.delete_human_loop(HumanLoopName=name)["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert error_of(lambda: a2i.describe_human_loop(HumanLoopName=name)) == ("ResourceNotFoundException", 404)
    assert error_of(lambda: a2i.delete_human_loop(HumanLoopName=name)) == ("ResourceNotFoundException", 404)
    assert error_of(lambda: a2i.stop_human_loop(HumanLoopName=name)) == ("ResourceNotFoundException", 404)
    listed = a2i.list_human_loops(FlowDefinitionArn=flow_arn("conf-stop"))["HumanLoopSummaries"]
    assert name not in [s["HumanLoopName"] for s in listed]


def test_stop_and_delete_validation(a2i: Any, raw: Any) -> None:
    assert error_of(lambda: a2i.stop_human_loop(HumanLoopName="never-started")) == (
        "ResourceNotFoundException",
        404,
    )
    assert error_of(lambda: raw.stop_human_loop(HumanLoopName="Bad Name")) == ("ValidationException", 400)
    assert error_of(lambda: a2i.delete_human_loop(HumanLoopName="never-started")) == (
        "ResourceNotFoundException",
        404,
    )


def test_expired_loop_fails_with_expired_code(a2i: Any, inbox: Any) -> None:
    name = unique("expire")
    start(a2i, name, flow=flow_arn("conf-expiring"))
    failed = wait_status(a2i, name, "Failed")
    assert failed["FailureCode"] == "Expired"
    assert failed["FailureReason"]
    summary = a2i.list_human_loops(FlowDefinitionArn=flow_arn("conf-expiring"))["HumanLoopSummaries"]
    assert next(s for s in summary if s["HumanLoopName"] == name)["FailureReason"] == failed["FailureReason"]
    event = inbox.wait(name, "Failed")
    assert event["detail"]["failureCode"] == "Expired"
    assert a2i.delete_human_loop(HumanLoopName=name)["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert error_of(lambda: a2i.describe_human_loop(HumanLoopName=name)) == ("ResourceNotFoundException", 404)


def test_completed_loop_output_and_delete(a2i: Any, service: ReviewProcess, portal_as: Any, inbox: Any) -> None:
    name = unique("complete")
    start(a2i, name)
    bob = portal_as(service.url, "bob")
    task = bob.open_task(name)
    assert task["initialValue"][0]["label"] == "face"
    answer = {
        "annotatedResult": {
            "boundingBoxes": [{"label": "face", "left": 190, "top": 110, "width": 170, "height": 210}],
            "inputImageProperties": {"width": 640, "height": 480},
        }
    }
    bob.submit(name, answer)
    done = wait_status(a2i, name, "Completed")
    uri = done["HumanLoopOutput"]["OutputS3Uri"]
    created = done["CreationTime"].astimezone(UTC)
    assert uri == (f"s3://{BUCKET}/a2i-output/conf-boxes/{created:%Y/%m/%d/%H/%M/%S}/{name}/output.json")
    event = inbox.wait(name, "Completed")
    assert event["detail"]["humanLoopOutput"]["outputS3Uri"] == uri
    assert error_of(lambda: a2i.stop_human_loop(HumanLoopName=name)) == ("ValidationException", 400)
    a2i.delete_human_loop(HumanLoopName=name)
    assert error_of(lambda: a2i.describe_human_loop(HumanLoopName=name)) == ("ResourceNotFoundException", 404)


# --- authentication ----------------------------------------------------------------------------


def test_wrong_secret_is_refused(service: ReviewProcess) -> None:
    client = a2i_client(service.url, secret="not-the-secret")
    assert error_of(lambda: client.describe_human_loop(HumanLoopName="x")) == ("InvalidSignatureException", 403)


def test_unknown_access_key_is_refused(service: ReviewProcess) -> None:
    client = a2i_client(service.url, key="AKIDUNKNOWN")
    assert error_of(lambda: client.list_human_loops(FlowDefinitionArn=BOXES)) == (
        "UnrecognizedClientException",
        403,
    )


def test_unsigned_request_is_refused(service: ReviewProcess) -> None:
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{service.url}/human-loops/x", timeout=5)
    assert caught.value.code == 403
    assert caught.value.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
