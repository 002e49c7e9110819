"""Flow definitions: what a loop asks reviewers, how many of them, for how long, and where output goes.

The file format mirrors SageMaker ``CreateFlowDefinition`` field names where one exists::

    {"FlowDefinitions": [{"FlowDefinitionName": "faces", "TaskType": "BoundingBox",
      "Labels": ["face"], "TaskCount": 1, "TaskTimeLimitInSeconds": 3600,
      "TaskAvailabilityLifetimeInSeconds": 864000, "S3OutputPath": "s3://bucket/a2i-output",
      "Instructions": "...", "Teams": []}]}

The same document describes a flow in the administrative API (``flow_admin``), which also accepts
SageMaker's nested ``HumanLoopConfig`` / ``OutputConfig`` and answers in DescribeFlowDefinition's shape.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_pascal

from hitl.review.validation import LOOP_NAME_RE, flow_arn

TaskType = Literal["BoundingBox", "ImageClassification", "LabelVerification"]
NONE_OF_THE_ABOVE = "None of the Above"
TASK_TYPES: tuple[TaskType, ...] = ("BoundingBox", "ImageClassification", "LabelVerification")
TEAM_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_LABELS = 250
MAX_INSTRUCTIONS = 10_000


class FlowDefinition(BaseModel):
    model_config = ConfigDict(alias_generator=to_pascal, populate_by_name=True, frozen=True, extra="forbid")

    flow_definition_name: str = Field(min_length=1, max_length=63)
    task_type: TaskType = "BoundingBox"
    labels: list[str] = Field(min_length=1, max_length=MAX_LABELS)
    task_count: int = Field(default=1, ge=1, le=3)
    task_time_limit_in_seconds: int = Field(default=3600, ge=30, le=28800)
    task_availability_lifetime_in_seconds: int = Field(default=864000, ge=1, le=864000)
    s3_output_path: str
    task_title: str = Field(default="Review the model's prediction", min_length=1, max_length=128)
    task_description: str = Field(
        default="Correct the prediction so that it matches the image.", min_length=1, max_length=255
    )
    # A per-flow cap on InProgress loops; StartHumanLoop answers ServiceQuotaExceeded above it.
    max_open_loops: int | None = Field(default=None, ge=1)
    # Shown to reviewers beside the task (plain text).
    instructions: str = Field(default="", max_length=MAX_INSTRUCTIONS)
    # Work teams whose reviewers may take this flow's tasks; empty: every reviewer.
    teams: list[str] = Field(default_factory=list, max_length=100)

    @field_validator("flow_definition_name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not LOOP_NAME_RE.fullmatch(value):
            raise ValueError("FlowDefinitionName must match ^[a-z0-9](-*[a-z0-9])*$")
        return value

    @field_validator("s3_output_path")
    @classmethod
    def _output(cls, value: str) -> str:
        if not value.startswith("s3://") or len(value) <= 5:
            raise ValueError("S3OutputPath must be an s3:// URI")
        return value.rstrip("/")

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: list[str]) -> list[str]:
        if any(not label or len(label) > 128 for label in value) or len(set(value)) != len(value):
            raise ValueError("Labels must be distinct, 1-128 characters each")
        if NONE_OF_THE_ABOVE in value:
            raise ValueError(f"{NONE_OF_THE_ABOVE!r} is reserved: every classification task offers it")
        return value

    @field_validator("teams")
    @classmethod
    def _teams(cls, value: list[str]) -> list[str]:
        if any(not TEAM_NAME_RE.fullmatch(team) for team in value):
            raise ValueError("team names are 1-64 letters, digits, '.', '_' or '-'")
        return list(dict.fromkeys(value))

    def allows(self, teams: Iterable[str]) -> bool:
        """Whether a reviewer in ``teams`` may work on this flow (no teams named: everyone may)."""
        return not self.teams or not set(self.teams).isdisjoint(teams)

    def presented_as(self, current: FlowDefinition | None) -> FlowDefinition:
        """This snapshot with what reviewers see and may answer taken from ``current``.

        A started loop keeps its lifecycle (task type, TaskCount, time limits, output) from the
        definition it started with; labels, texts and teams follow the flow as it is now, so a label
        added to the flow can be answered on loops already waiting. A flow whose task type changed
        since keeps the snapshot whole.
        """
        if current is None or current.task_type != self.task_type:
            return self
        return self.model_copy(
            update={
                "labels": list(current.labels),
                "task_title": current.task_title,
                "task_description": current.task_description,
                "instructions": current.instructions,
                "teams": list(current.teams),
            }
        )

    def arn(self, region: str, account: str) -> str:
        return flow_arn(region, account, self.flow_definition_name)


FlowSource = Literal["file", "api"]


class FlowMeta(BaseModel):
    """Bookkeeping kept beside a stored definition."""

    model_config = ConfigDict(alias_generator=to_pascal, populate_by_name=True, frozen=True)

    creation_time: datetime
    last_modified_time: datetime
    version: int = Field(default=1, ge=1)
    # "file": as configured (the file wins again at start); "api": changed through the API (kept).
    source: FlowSource = "file"


def load_file(path: Path) -> list[FlowDefinition]:
    document = json.loads(path.read_text())
    entries = document.get("FlowDefinitions", []) if isinstance(document, dict) else document
    return [FlowDefinition.model_validate(entry) for entry in entries]


def default_flow(name: str, bucket: str, output_prefix: str) -> FlowDefinition:
    """The local stack's flow: one reviewer adjusts the model's ``face`` boxes."""
    return FlowDefinition(
        flow_definition_name=name,
        task_type="BoundingBox",
        labels=["face"],
        task_count=1,
        s3_output_path=f"s3://{bucket}/{output_prefix.strip('/')}",
    )
