"""Flow definitions: what a loop asks reviewers, how many of them, for how long, and where output goes.

The file format mirrors SageMaker ``CreateFlowDefinition`` field names where one exists::

    {"FlowDefinitions": [{"FlowDefinitionName": "faces", "TaskType": "BoundingBox",
      "Labels": ["face"], "TaskCount": 1, "TaskTimeLimitInSeconds": 3600,
      "TaskAvailabilityLifetimeInSeconds": 864000, "S3OutputPath": "s3://bucket/a2i-output"}]}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_pascal

from hitl.review.validation import LOOP_NAME_RE, flow_arn

TaskType = Literal["BoundingBox", "ImageClassification", "LabelVerification"]
NONE_OF_THE_ABOVE = "None of the Above"


class FlowDefinition(BaseModel):
    model_config = ConfigDict(alias_generator=to_pascal, populate_by_name=True, frozen=True, extra="forbid")

    flow_definition_name: str = Field(min_length=1, max_length=63)
    task_type: TaskType = "BoundingBox"
    labels: list[str] = Field(min_length=1, max_length=250)
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
    # Work teams whose reviewers may take this flow's tasks; empty: every reviewer.
    teams: list[str] = Field(default_factory=list, max_length=50)

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
        return value

    def arn(self, region: str, account: str) -> str:
        return flow_arn(region, account, self.flow_definition_name)


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
