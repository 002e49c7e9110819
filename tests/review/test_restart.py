"""Restarting the service mid-review loses no loop, no claim and no answer."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hitl.aws import parse_s3_uri
from tests.review.conftest import ReviewProcess, a2i_client, flow_arn, input_content, unique, wait_status

pytestmark = pytest.mark.integration


def boxes(left: int) -> dict[str, Any]:
    return {
        "annotatedResult": {
            "boundingBoxes": [{"label": "face", "left": left, "top": 100, "width": 150, "height": 200}],
            "inputImageProperties": {"width": 640, "height": 480},
        }
    }


def test_restart_mid_review(start_review: Any, portal_as: Any, aws_env: dict[str, Any], inbox: Any) -> None:
    service: ReviewProcess = start_review("restart")
    a2i = a2i_client(service.url)
    pair, single = unique("pair"), unique("single")
    a2i.start_human_loop(
        HumanLoopName=pair, FlowDefinitionArn=flow_arn("review-pair"), HumanLoopInput={"InputContent": input_content()}
    )
    a2i.start_human_loop(
        HumanLoopName=single, FlowDefinitionArn=flow_arn("conf-boxes"), HumanLoopInput={"InputContent": input_content()}
    )
    alice, bob = portal_as(service.url, "alice"), portal_as(service.url, "bob")
    alice.open_task(pair)
    alice.submit(pair, boxes(201))  # first of two answers
    bob.open_task(single)  # claimed, not yet answered

    service.restart()

    assert a2i.describe_human_loop(HumanLoopName=pair)["HumanLoopStatus"] == "InProgress"
    assert a2i.describe_human_loop(HumanLoopName=single)["HumanLoopStatus"] == "InProgress"
    # Sessions survive (the secret is configuration); alice answered, so pair is not hers any more.
    assert pair not in [t["name"] for t in alice.queue()]
    bob_queue = [t["name"] for t in bob.queue()]
    assert pair in bob_queue
    assert single in bob_queue
    bob.submit(single, boxes(203))  # the claim taken before the restart still holds
    bob.open_task(pair)
    bob.submit(pair, boxes(202))

    done = wait_status(a2i, pair, "Completed")
    bucket, key = parse_s3_uri(done["HumanLoopOutput"]["OutputS3Uri"])
    output = json.loads(aws_env["s3"].get_object(Bucket=bucket, Key=key)["Body"].read())
    answers = {a["workerMetadata"]["identityData"]["sub"]: a for a in output["humanAnswers"]}
    assert set(answers) == {"alice", "bob"}
    assert answers["alice"]["answerContent"]["annotatedResult"]["boundingBoxes"][0]["left"] == 201
    assert answers["bob"]["answerContent"]["annotatedResult"]["boundingBoxes"][0]["left"] == 202
    assert inbox.wait(pair, "Completed")["detail"]["humanLoopStatus"] == "Completed"
    wait_status(a2i, single, "Completed")
    inbox.wait(single, "Completed")
