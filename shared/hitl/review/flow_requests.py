"""Requests and answers of the flow-definition admin API, as pure functions (no I/O).

A definition is sent flat, in the file format of :mod:`hitl.review.flows`, or with SageMaker
CreateFlowDefinition's nested ``HumanLoopConfig`` and ``OutputConfig``; both may be mixed as long as
they agree. Describe and list answer in the shapes of SageMaker's DescribeFlowDefinition and
ListFlowDefinitions, with this service's own fields (``TaskType``, ``Labels``, ``Instructions``,
``Teams``, ``MaxOpenLoops``, ``Version``, ``Source``, ``LastModifiedTime``) beside them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pydantic

from hitl.review import timefmt
from hitl.review.errors import ValidationError
from hitl.review.flows import FlowDefinition, FlowMeta

NESTED: dict[str, tuple[str, ...]] = {
    "HumanLoopConfig": (
        "TaskTitle",
        "TaskDescription",
        "TaskCount",
        "TaskAvailabilityLifetimeInSeconds",
        "TaskTimeLimitInSeconds",
    ),
    "OutputConfig": ("S3OutputPath",),
}
DEFINITION_FIELDS: tuple[str, ...] = tuple(
    str(info.alias) for info in FlowDefinition.model_fields.values() if info.alias
)
# Partial updates of the label list, applied atomically by the service (no read-modify-write race).
LABEL_EDITS = ("AddLabels", "RemoveLabels")
STATUS_ACTIVE = "Active"


def _message(error: pydantic.ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(x) for x in item["loc"]) or "request"
        parts.append(f"{where}: {item['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


def flatten(body: Mapping[str, Any], extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """One flat field map from flat and nested fields; unknown fields are refused by name."""
    if not isinstance(body, Mapping):
        raise ValidationError("The request body must be a JSON object")
    flat: dict[str, Any] = {}
    for key, value in body.items():
        if key in NESTED:
            if not isinstance(value, Mapping):
                raise ValidationError(f"{key} must be an object")
            for inner, inner_value in value.items():
                if inner not in NESTED[key]:
                    raise ValidationError(f"{key}.{inner} is not supported; {key} takes {list(NESTED[key])}")
                if inner in flat and flat[inner] != inner_value:
                    raise ValidationError(f"{inner} is given twice with different values")
                flat[inner] = inner_value
        elif key in DEFINITION_FIELDS or key in extra:
            if key in flat and flat[key] != value:
                raise ValidationError(f"{key} is given twice with different values")
            flat[key] = value
        else:
            accepted = [*DEFINITION_FIELDS, *NESTED, *extra]
            raise ValidationError(f"Unknown field {key!r}; accepted fields: {', '.join(accepted)}")
    return flat


def definition(fields: Mapping[str, Any], default_output: str = "") -> FlowDefinition:
    """A validated definition; ``S3OutputPath`` defaults to the service's output location."""
    document = dict(fields)
    if default_output and not document.get("S3OutputPath"):
        document["S3OutputPath"] = default_output
    try:
        return FlowDefinition.model_validate(document)
    except pydantic.ValidationError as error:
        raise ValidationError(_message(error)) from None


def for_create(body: Mapping[str, Any], default_output: str = "") -> FlowDefinition:
    fields = flatten(body)
    if not fields.get("FlowDefinitionName"):
        raise ValidationError("FlowDefinitionName is required")
    return definition(fields, default_output)


def _label_list(value: object, field: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise ValidationError(f"{field} must be a list of labels")
    return value


def updated(current: FlowDefinition, body: Mapping[str, Any]) -> FlowDefinition:
    """``current`` with the fields of a partial update applied (``AddLabels`` / ``RemoveLabels`` too)."""
    fields = flatten(body, extra=LABEL_EDITS)
    name = fields.pop("FlowDefinitionName", current.flow_definition_name)
    if name != current.flow_definition_name:
        raise ValidationError("FlowDefinitionName cannot be changed")
    document = current.model_dump(by_alias=True)
    additions = _label_list(fields.pop("AddLabels", []), "AddLabels")
    removals = set(_label_list(fields.pop("RemoveLabels", []), "RemoveLabels"))
    document.update(fields)
    labels = document.get("Labels")
    if (additions or removals) and isinstance(labels, list):
        merged = [label for label in dict.fromkeys([*labels, *additions]) if label not in removals]
        document["Labels"] = merged
    return definition(document)


def describe(arn: str, flow: FlowDefinition, meta: FlowMeta) -> dict[str, Any]:
    return {
        "FlowDefinitionArn": arn,
        "FlowDefinitionName": flow.flow_definition_name,
        "FlowDefinitionStatus": STATUS_ACTIVE,
        "CreationTime": timefmt.iso(meta.creation_time),
        "LastModifiedTime": timefmt.iso(meta.last_modified_time),
        "HumanLoopConfig": {
            "TaskTitle": flow.task_title,
            "TaskDescription": flow.task_description,
            "TaskCount": flow.task_count,
            "TaskAvailabilityLifetimeInSeconds": flow.task_availability_lifetime_in_seconds,
            "TaskTimeLimitInSeconds": flow.task_time_limit_in_seconds,
        },
        "OutputConfig": {"S3OutputPath": flow.s3_output_path},
        "TaskType": flow.task_type,
        "Labels": list(flow.labels),
        "Instructions": flow.instructions,
        "Teams": list(flow.teams),
        "MaxOpenLoops": flow.max_open_loops,
        "Version": meta.version,
        "Source": meta.source,
    }


def summary(arn: str, flow: FlowDefinition, meta: FlowMeta) -> dict[str, Any]:
    return {
        "FlowDefinitionArn": arn,
        "FlowDefinitionName": flow.flow_definition_name,
        "FlowDefinitionStatus": STATUS_ACTIVE,
        "CreationTime": timefmt.iso(meta.creation_time),
        "TaskType": flow.task_type,
        "Labels": list(flow.labels),
        "TaskCount": flow.task_count,
        "Teams": list(flow.teams),
        "Version": meta.version,
    }


def expected_version(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError("ExpectedVersion must be a positive integer")
    return value
