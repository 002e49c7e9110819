"""The "SageMaker A2I HumanLoop Status Change" event (docs/formats.md §3) as a PutEvents entry."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from hitl.review import timefmt
from hitl.review.loops import HumanLoop, Status

DETAIL_TYPE = "SageMaker A2I HumanLoop Status Change"


def detail(loop: HumanLoop) -> dict[str, Any]:
    found: dict[str, Any] = {
        "creationTime": timefmt.iso(loop.creation_time),
        "failureCode": loop.failure_code if loop.status is Status.FAILED else None,
        "failureReason": loop.failure_reason if loop.status is Status.FAILED else None,
        "flowDefinitionArn": loop.flow_arn,
        "humanLoopArn": loop.arn,
        "humanLoopName": loop.name,
        "humanLoopStatus": loop.status.value,
    }
    if loop.status is Status.COMPLETED:
        found["humanLoopOutput"] = {"outputS3Uri": loop.output_uri}
    return found


def entry(loop: HumanLoop, source: str, bus: str, when: datetime) -> dict[str, Any]:
    """A JSON-serialisable PutEvents entry (``Time`` as ISO; see :func:`to_put_events`)."""
    return {
        "Time": timefmt.iso(when),
        "Source": source,
        "Resources": [loop.arn],
        "DetailType": DETAIL_TYPE,
        "Detail": json.dumps(detail(loop), separators=(",", ":")),
        "EventBusName": bus,
    }


def to_put_events(stored: dict[str, Any]) -> dict[str, Any]:
    return {**stored, "Time": timefmt.parse(stored["Time"])}
