"""Reviewers are offered tasks by InputContent.priority (highest first), then oldest first; a client
that passes no priority sees the A2I API unchanged."""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.review.conftest import ReviewProcess, a2i_client, flow_arn, input_content, unique

pytestmark = pytest.mark.integration


def test_queue_offers_higher_priority_first_then_oldest(start_review: Any, portal_as: Any) -> None:
    service: ReviewProcess = start_review("priority")
    a2i = a2i_client(service.url)
    names = {key: unique(key) for key in ("old", "low", "high", "new", "audit")}
    priorities: dict[str, float | None] = {"old": None, "low": 0.3, "high": 0.9, "new": None, "audit": 2}
    for key, name in names.items():
        extra = {} if priorities[key] is None else {"priority": priorities[key]}
        a2i.start_human_loop(
            HumanLoopName=name, FlowDefinitionArn=flow_arn("conf-boxes"),
            HumanLoopInput={"InputContent": input_content(**extra)},
        )  # fmt: skip
        time.sleep(0.01)  # distinct creation times
    queue = [t["name"] for t in portal_as(service.url, "carol").queue() if t["name"] in names.values()]
    assert queue == [names[k] for k in ("audit", "high", "low", "old", "new")]
    assert a2i.describe_human_loop(HumanLoopName=names["old"])["HumanLoopStatus"] == "InProgress"

    with pytest.raises(ClientError) as refused:
        a2i.start_human_loop(
            HumanLoopName=unique("bad"), FlowDefinitionArn=flow_arn("conf-boxes"),
            HumanLoopInput={"InputContent": input_content(priority="high")},
        )  # fmt: skip
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert "priority must be a number" in refused.value.response["Error"]["Message"]
