"""The human loop record and its lifecycle.

``InProgress`` → ``Completed`` (every TaskCount answer written to S3), ``Failed`` (``Expired`` after
TaskAvailabilityLifetimeInSeconds), or ``Stopping`` → ``Stopped`` (StopHumanLoop). Only the three
terminal states may be deleted. Transitions return ``True`` when the loop changed, so callers know
whether to emit a status-change event.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from hitl.review import timefmt
from hitl.review.errors import ValidationError
from hitl.review.flows import FlowDefinition


class Status(StrEnum):
    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPING = "Stopping"
    STOPPED = "Stopped"


TERMINAL = frozenset({Status.COMPLETED, Status.FAILED, Status.STOPPED})
EVENT_STATUSES = TERMINAL


class Answer(BaseModel):
    reviewer: str
    answer_content: dict[str, Any]
    acceptance_time: datetime
    submission_time: datetime

    @property
    def seconds(self) -> float:
        return round((self.submission_time - self.acceptance_time).total_seconds(), 3)


class HumanLoop(BaseModel):
    name: str
    arn: str
    flow_arn: str
    # A snapshot: editing a flow definition later does not change loops already started.
    flow: FlowDefinition
    input_content: str
    data_attributes: list[str] = Field(default_factory=list)
    creation_time: datetime
    status: Status = Status.IN_PROGRESS
    failure_code: str | None = None
    failure_reason: str | None = None
    stop_requested_at: datetime | None = None
    # All answers are in; output.json is being written (the step a crash may interrupt).
    completing: bool = False
    answers: list[Answer] = Field(default_factory=list)
    claims: dict[str, datetime] = Field(default_factory=dict)
    skipped: list[str] = Field(default_factory=list)

    # --- views ---------------------------------------------------------------------------------
    @property
    def input_document(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.input_content)
        return document

    @property
    def deadline(self) -> datetime:
        return self.creation_time + timedelta(seconds=self.flow.task_availability_lifetime_in_seconds)

    @property
    def output_uri(self) -> str:
        """``<S3OutputPath>/<flow name>/YYYY/MM/DD/hh/mm/ss/<loop name>/output.json`` (creation time)."""
        stamp = self.creation_time.strftime("%Y/%m/%d/%H/%M/%S")
        return f"{self.flow.s3_output_path}/{self.flow.flow_definition_name}/{stamp}/{self.name}/output.json"

    def same_request(self, flow_arn: str, input_content: str) -> bool:
        return self.flow_arn == flow_arn and self.input_content == input_content

    def describe(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "CreationTime": timefmt.iso(self.creation_time),
            "HumanLoopStatus": self.status.value,
            "HumanLoopName": self.name,
            "HumanLoopArn": self.arn,
            "FlowDefinitionArn": self.flow_arn,
        }
        if self.status is Status.FAILED:
            found["FailureReason"] = self.failure_reason or ""
            found["FailureCode"] = self.failure_code or "InternalError"
        if self.status is Status.COMPLETED:
            found["HumanLoopOutput"] = {"OutputS3Uri": self.output_uri}
        return found

    def summary(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "HumanLoopName": self.name,
            "HumanLoopStatus": self.status.value,
            "CreationTime": timefmt.iso(self.creation_time),
            "FlowDefinitionArn": self.flow_arn,
        }
        if self.status is Status.FAILED:
            found["FailureReason"] = self.failure_reason or ""
        return found

    # --- lifecycle -----------------------------------------------------------------------------
    def request_stop(self, now: datetime) -> bool:
        if self.status in (Status.STOPPING, Status.STOPPED):
            return False  # a repeated stop is a no-op, so callers may retry
        if self.status is not Status.IN_PROGRESS:
            raise ValidationError(f"Human loop {self.name} is {self.status.value} and cannot be stopped")
        self.status = Status.STOPPING
        self.stop_requested_at = now
        self.completing = False
        self.claims.clear()
        return True

    def finish_stop(self) -> bool:
        if self.status is not Status.STOPPING:
            return False
        self.status = Status.STOPPED
        return True

    def expire(self, now: datetime) -> bool:
        if self.status is not Status.IN_PROGRESS or self.completing or now < self.deadline:
            return False
        self.status = Status.FAILED
        self.failure_code = "Expired"
        self.failure_reason = (
            f"The human loop was not completed within TaskAvailabilityLifetimeInSeconds "
            f"({self.flow.task_availability_lifetime_in_seconds} s)"
        )
        self.claims.clear()
        return True

    def complete(self) -> bool:
        if self.status is not Status.IN_PROGRESS or not self.completing:
            return False
        self.status = Status.COMPLETED
        self.completing = False
        self.claims.clear()
        return True

    def check_deletable(self) -> None:
        if self.status not in TERMINAL:
            raise ValidationError(f"Human loop {self.name} is {self.status.value}: stop it before deleting it")
