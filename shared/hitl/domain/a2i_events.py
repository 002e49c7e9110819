"""The "SageMaker A2I HumanLoop Status Change" event as EventBridge delivers it to SQS (docs/formats.md §3).

Both shapes parse into one model: AWS's (``account`` present, ``null`` failure fields, the loop ARN in
``resources``) and moto's (no ``account``, ``""`` failure fields, empty ``resources``).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hitl.domain.s3events import MalformedMessage

DETAIL_TYPE = "SageMaker A2I HumanLoop Status Change"
LoopStatus = Literal["InProgress", "Failed", "Completed", "Stopped", "Stopping"]
TERMINAL_STATUSES: frozenset[str] = frozenset({"Completed", "Failed", "Stopped"})

_ALIASED = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)


def _blank_to_none(value: Any) -> Any:
    # moto sends "" where AWS sends null; an empty object means "no output" as well.
    return None if value in ("", {}) else value


class HumanLoopOutput(BaseModel):
    model_config = _ALIASED
    output_s3_uri: str = Field(alias="outputS3Uri", min_length=6)


class HumanLoopStatusDetail(BaseModel):
    model_config = _ALIASED
    human_loop_name: str = Field(alias="humanLoopName", min_length=1, max_length=63)
    human_loop_status: LoopStatus = Field(alias="humanLoopStatus")
    human_loop_arn: str | None = Field(default=None, alias="humanLoopArn")
    flow_definition_arn: str | None = Field(default=None, alias="flowDefinitionArn")
    creation_time: datetime | None = Field(default=None, alias="creationTime")
    failure_code: str | None = Field(default=None, alias="failureCode")
    failure_reason: str | None = Field(default=None, alias="failureReason")
    human_loop_output: HumanLoopOutput | None = Field(default=None, alias="humanLoopOutput")

    _blanks = field_validator(
        "human_loop_arn", "flow_definition_arn", "creation_time", "failure_code", "failure_reason",
        "human_loop_output", mode="before",
    )(_blank_to_none)

    @property
    def expired(self) -> bool:
        return self.human_loop_status == "Failed" and self.failure_code == "Expired"

    @property
    def output_uri(self) -> str | None:
        return self.human_loop_output.output_s3_uri if self.human_loop_output else None


class HumanLoopStatusEvent(BaseModel):
    """The EventBridge envelope; ``account`` and ``resources`` are optional (moto omits them)."""

    model_config = _ALIASED
    detail_type: Literal["SageMaker A2I HumanLoop Status Change"] = Field(alias="detail-type")
    detail: HumanLoopStatusDetail
    id: str | None = None
    version: str | None = None
    source: str | None = None
    account: str | None = None
    time: datetime | None = None
    region: str | None = None
    resources: list[str] = Field(default_factory=list)

    _blanks = field_validator("account", "time", "region", mode="before")(_blank_to_none)

    @property
    def loop_name(self) -> str:
        return self.detail.human_loop_name

    @property
    def status(self) -> str:
        return self.detail.human_loop_status


def parse_event(body: str) -> HumanLoopStatusEvent:
    """One SQS message body → the event; MalformedMessage (with a countable reason) otherwise."""
    try:
        raw = json.loads(body)
    except (json.JSONDecodeError, TypeError) as exc:
        raise MalformedMessage("not_json", str(exc)) from exc
    if not isinstance(raw, dict):
        raise MalformedMessage("not_an_object", "the message body is not a JSON object")
    if raw.get("detail-type") != DETAIL_TYPE:
        raise MalformedMessage("unexpected_detail_type", repr(raw.get("detail-type"))[:100])
    try:
        return HumanLoopStatusEvent.model_validate(raw)
    except ValidationError as exc:
        raise MalformedMessage("invalid_detail", str(exc).splitlines()[0][:200]) from exc
