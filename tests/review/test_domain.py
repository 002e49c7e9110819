"""Pure domain rules of the review service: validation, lifecycle, assignment, shapes, signatures."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from starlette.datastructures import Headers

from hitl.review import answers, assignment, events, inputs, output, pagination, sigv4, timefmt, validation
from hitl.review.errors import AuthError, PortalError, ValidationError
from hitl.review.flows import FlowDefinition
from hitl.review.loops import HumanLoop, Status
from services.review.throttle import TokenBuckets

T0 = datetime(2024, 5, 1, 18, 22, 10, 1000, tzinfo=UTC)


def make_loop(task_count: int = 1, lifetime: int = 3600, task_type: str = "BoundingBox") -> HumanLoop:
    flow = FlowDefinition.model_validate(
        {
            "FlowDefinitionName": "fd-faces",
            "TaskType": task_type,
            "Labels": ["face", "hat"],
            "TaskCount": task_count,
            "TaskAvailabilityLifetimeInSeconds": lifetime,
            "TaskTimeLimitInSeconds": 60,
            "S3OutputPath": "s3://out/a2i/",
        }
    )
    return HumanLoop(
        name="det-1",
        arn=validation.loop_arn("us-east-1", "111122223333", "det-1"),
        flow_arn=flow.arn("us-east-1", "111122223333"),
        flow=flow,
        input_content=json.dumps({"taskObject": "s3://in/a.png", "initialValue": [{"label": "face"}]}),
        creation_time=T0,
    )


BOX_ANSWER = {
    "annotatedResult": {
        "boundingBoxes": [{"label": "face", "left": 1.4, "top": 2, "width": 10, "height": 20}],
        "inputImageProperties": {"width": 100, "height": 100},
    }
}


def test_output_uri_uses_creation_time_and_flow_name() -> None:
    assert make_loop().output_uri == "s3://out/a2i/fd-faces/2024/05/01/18/22/10/det-1/output.json"


def test_timestamps_are_iso_milliseconds() -> None:
    assert timefmt.iso(T0) == "2024-05-01T18:22:10.001Z"
    assert timefmt.parse("2024-05-01T18:22:10.001Z") == T0
    assert timefmt.parse("2024-05-01") == datetime(2024, 5, 1, tzinfo=UTC)
    assert timefmt.parse("1714587730.001") == T0


def test_lifecycle_stop_expire_complete() -> None:
    loop = make_loop()
    with pytest.raises(ValidationError):
        loop.check_deletable()
    assert loop.request_stop(T0)
    assert loop.status is Status.STOPPING
    assert not loop.request_stop(T0)  # idempotent
    assert loop.finish_stop()
    loop.check_deletable()
    expiring = make_loop(lifetime=10)
    assert not expiring.expire(T0 + timedelta(seconds=9))
    assert expiring.expire(T0 + timedelta(seconds=10))
    assert (expiring.status, expiring.failure_code) == (Status.FAILED, "Expired")
    with pytest.raises(ValidationError):
        expiring.request_stop(T0)
    assert expiring.describe()["FailureCode"] == "Expired"


def test_task_count_distinct_reviewers() -> None:
    loop = make_loop(task_count=2)
    now = T0 + timedelta(seconds=1)
    assignment.claim(loop, "alice", now)
    assignment.claim(loop, "bob", now)
    assert not assignment.can_offer(loop, "carol", now)  # both slots taken
    assignment.record_answer(loop, "alice", BOX_ANSWER, now + timedelta(seconds=5))
    with pytest.raises(PortalError):
        assignment.claim(loop, "alice", now)  # never twice
    assert not loop.completing
    assignment.record_answer(loop, "bob", BOX_ANSWER, now + timedelta(seconds=6))
    assert loop.completing
    assert not assignment.can_offer(loop, "carol", now)
    assert [a.seconds for a in loop.answers] == [5.0, 6.0]


def test_expired_claim_frees_the_slot() -> None:
    loop = make_loop()
    assignment.claim(loop, "alice", T0)
    assert not assignment.can_offer(loop, "bob", T0 + timedelta(seconds=59))
    later = T0 + timedelta(seconds=61)
    assignment.claim(loop, "bob", later)
    with pytest.raises(PortalError):
        assignment.record_answer(loop, "alice", BOX_ANSWER, later)


def test_skip_hides_the_task_from_that_reviewer() -> None:
    loop = make_loop()
    assignment.claim(loop, "alice", T0)
    assignment.skip(loop, "alice")
    assert not assignment.can_offer(loop, "alice", T0)
    assert assignment.can_offer(loop, "bob", T0)


def test_answer_shapes() -> None:
    boxes = answers.validate("BoundingBox", BOX_ANSWER, ["face"])
    assert boxes["annotatedResult"]["boundingBoxes"][0] == {
        "label": "face",
        "left": 1,
        "top": 2,
        "width": 10,
        "height": 20,
    }
    bad: dict[str, Any]
    for bad in (
        {
            "annotatedResult": {
                "boundingBoxes": [{"label": "cat", "left": 0, "top": 0, "width": 1, "height": 1}],
                "inputImageProperties": {"width": 10, "height": 10},
            }
        },
        {
            "annotatedResult": {
                "boundingBoxes": [{"label": "face", "left": 5, "top": 0, "width": 6, "height": 1}],
                "inputImageProperties": {"width": 10, "height": 10},
            }
        },
        {"annotatedResult": {"boundingBoxes": []}},
    ):
        with pytest.raises(PortalError):
            answers.validate("BoundingBox", bad, ["face"])
    assert answers.validate("ImageClassification", {"category": {"label": "None of the Above"}}, ["a"]) == {
        "category": {"label": "None of the Above"}
    }
    with pytest.raises(PortalError):
        answers.validate("ImageClassification", {"category": {"label": "b"}}, ["a"])
    verified = {"labelVerification": {"labels": [{"label": "face", "verified": False}]}}
    assert answers.validate("LabelVerification", verified, ["face"]) == verified
    assert answers.verification_targets([{"label": "face"}, "hat", {"label": "face"}]) == ["face", "hat"]


def test_output_document_matches_a2i_schema() -> None:
    loop = make_loop()
    assignment.claim(loop, "alice", T0)
    assignment.record_answer(loop, "alice", BOX_ANSWER, T0 + timedelta(seconds=43, milliseconds=700))
    document = output.build(loop, "hitl-review")
    assert set(document) == {"flowDefinitionArn", "humanLoopName", "inputContent", "humanAnswers"}
    (answer,) = document["humanAnswers"]
    assert answer["acceptanceTime"] == "2024-05-01T18:22:10.001Z"
    assert answer["submissionTime"] == "2024-05-01T18:22:53.701Z"
    assert answer["timeSpentInSeconds"] == 43.7
    assert len(answer["workerId"]) == 16
    assert answer["workerMetadata"]["identityData"]["sub"] == "alice"


def test_event_detail_shape() -> None:
    loop = make_loop()
    loop.completing = True
    loop.complete()
    entry = events.entry(loop, "hitl.review", "default", T0)
    assert entry["DetailType"] == "SageMaker A2I HumanLoop Status Change"
    assert entry["Resources"] == [loop.arn]
    detail = json.loads(entry["Detail"])
    assert detail == {
        "creationTime": "2024-05-01T18:22:10.001Z",
        "failureCode": None,
        "failureReason": None,
        "flowDefinitionArn": loop.flow_arn,
        "humanLoopArn": loop.arn,
        "humanLoopName": "det-1",
        "humanLoopOutput": {"outputS3Uri": loop.output_uri},
        "humanLoopStatus": "Completed",
    }
    assert events.to_put_events(entry)["Time"] == T0


def test_pagination_tokens_are_bound_to_their_query() -> None:
    token = pagination.encode((5, "b"), "q1")
    assert pagination.decode(token, "q1") == (5, "b")
    with pytest.raises(ValidationError):
        pagination.decode(token, "q2")
    with pytest.raises(ValidationError):
        pagination.decode("%%%", "q1")


def test_input_content_contract() -> None:
    parsed = inputs.parse('{"taskObject": "s3://in/a.png", "extra": 1}', 100, frozenset({"in"}))
    assert (parsed.bucket, parsed.key, parsed.document["extra"]) == ("in", "a.png", 1)
    with pytest.raises(ValidationError):
        inputs.parse('{"taskObject": "s3://other/a.png"}', 100, frozenset({"in"}))
    with pytest.raises(ValidationError):
        inputs.parse('{"taskObject": "s3://in/a.png"}', 10, frozenset())


def _signed(secret: str = "s3cret", when: datetime | None = None) -> AWSRequest:
    request = AWSRequest(
        method="POST",
        url="http://127.0.0.1:9/human-loops?x=1",
        data=b'{"a":1}',
        headers={"Content-Type": "application/json"},
    )
    SigV4Auth(Credentials("AKID", secret), "sagemaker", "us-east-1").add_auth(request)
    return request


def _verify(request: AWSRequest, now: datetime) -> str:
    return sigv4.verify(
        method="POST",
        host_url="http://127.0.0.1:9",
        raw_path="/human-loops",
        raw_query="x=1",
        headers=Headers({"host": "127.0.0.1:9", **dict(request.headers.items())}),
        body=b'{"a":1}',
        keys={"AKID": "s3cret"},
        region="us-east-1",
        now=now,
        max_skew_seconds=300,
    )


def test_sigv4_accepts_botocore_signatures_and_rejects_others() -> None:
    now = datetime.now(UTC)
    assert _verify(_signed(), now) == "AKID"
    with pytest.raises(AuthError) as wrong:
        _verify(_signed(secret="other"), now)
    assert wrong.value.code == "InvalidSignatureException"
    with pytest.raises(AuthError) as skewed:
        _verify(_signed(), now + timedelta(minutes=10))
    assert skewed.value.code == "InvalidSignatureException"


def test_token_bucket_throttles() -> None:
    buckets = TokenBuckets(rate_per_second=1, burst=2)
    assert [buckets.allow("k") for _ in range(3)] == [True, True, False]
    assert TokenBuckets(0).allow("k")
