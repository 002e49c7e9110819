"""``hitl aws setup``: the A2I resources on AWS, created or updated idempotently.

- a human task UI per task type, from the crowd-html templates in ``templates/``. SageMaker cannot
  update a task UI, so its name carries a digest of the template: a changed template is a new UI,
  an unchanged one is found and kept;
- a flow definition per task type (``<prefix>-bounding-box``, ``-classification``, ``-verification``)
  with the workteam, execution role and ``S3OutputPath`` from settings. A flow cannot be updated
  either: one whose settings differ is reported, and replaced only when asked (``replace=True``);
- the EventBridge rule for A2I status changes → the events queue, with its queue policy (the same
  step as ``hitl stack bootstrap``).

With ``dry_run`` nothing is read or written: each call is printed as it would be made.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from hitl import aws
from hitl.settings import Settings

TASK_TYPES = {
    "bounding-box": "BoundingBox",
    "classification": "ImageClassification",
    "verification": "LabelVerification",
}
TITLES = {
    "bounding-box": ("Check the boxes", "Draw or correct a box around every object of the listed labels."),
    "classification": ("Label the image", "Choose the label that fits the image."),
    "verification": ("Verify the labels", "Confirm or reject each label the model found."),
}


class SetupError(RuntimeError):
    pass


def template(kind: str) -> str:
    return (resources.files("hitl.a2i") / "templates" / f"{kind}.html").read_text()


def ui_name(prefix: str, kind: str, content: str) -> str:
    return f"{prefix}-{kind}-{hashlib.sha256(content.encode()).hexdigest()[:10]}"


def output_path(settings: Settings) -> str:
    """Where A2I writes output.json: the ingestor reads ``<S3OutputPath>/<flow>/YYYY/…/output.json``."""
    return settings.s3_uri(settings.a2i_output_prefix).rstrip("/")


@dataclass
class SetupReport:
    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    flows: dict[str, str] = field(default_factory=dict)  # kind -> flow definition ARN
    notes: list[str] = field(default_factory=list)


class A2ISetup:
    def __init__(self, settings: Settings, dry_run: bool = False, echo: Callable[[str], None] = print) -> None:
        missing = [
            name
            for name, value in (
                ("HITL_A2I_WORKTEAM_ARN", settings.a2i_workteam_arn),
                ("HITL_A2I_ROLE_ARN", settings.a2i_role_arn),
            )
            if not value
        ]
        if missing:
            raise SetupError(f"{', '.join(missing)} must be set for hitl aws setup")
        self.settings = settings
        self.dry_run = dry_run
        self.echo = echo
        self.report = SetupReport()

    def _call(self, service: str, operation: str, **params: Any) -> dict[str, Any]:
        self.report.calls.append((service, operation, params))
        if self.dry_run:
            self.echo(f"{service}.{operation} {json.dumps(params, sort_keys=True)}")
            return {}
        response: dict[str, Any] = getattr(aws.client(service), operation)(**params)
        return response

    def _find(self, describe: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        if self.dry_run:
            return None
        try:
            return describe()
        except aws.client("sagemaker").exceptions.ResourceNotFound:
            return None

    def task_ui(self, kind: str) -> str:
        content = template(kind)
        name = ui_name(self.settings.a2i_flow_prefix, kind, content)
        sagemaker = aws.client("sagemaker") if not self.dry_run else None
        found = self._find(lambda: sagemaker.describe_human_task_ui(HumanTaskUiName=name))  # type: ignore[union-attr]
        if found:
            return str(found["HumanTaskUiArn"])
        created = self._call("sagemaker", "create_human_task_ui", HumanTaskUiName=name, UiTemplate={"Content": content})
        return str(created.get("HumanTaskUiArn", f"<human-task-ui {name}>"))

    def flow(self, kind: str, ui_arn: str, replace: bool) -> str:
        name = f"{self.settings.a2i_flow_prefix}-{kind}"
        title, description = TITLES[kind]
        wanted = {
            "FlowDefinitionName": name,
            "RoleArn": self.settings.a2i_role_arn,
            "OutputConfig": {"S3OutputPath": output_path(self.settings)},
            "HumanLoopConfig": {
                "WorkteamArn": self.settings.a2i_workteam_arn,
                "HumanTaskUiArn": ui_arn,
                "TaskTitle": title,
                "TaskDescription": description,
                "TaskCount": self.settings.a2i_task_count,
                "TaskAvailabilityLifetimeInSeconds": self.settings.a2i_task_lifetime_seconds,
                "TaskTimeLimitInSeconds": self.settings.a2i_task_time_limit_seconds,
            },
        }
        sagemaker = aws.client("sagemaker") if not self.dry_run else None
        found = self._find(lambda: sagemaker.describe_flow_definition(FlowDefinitionName=name))  # type: ignore[union-attr]
        if found:
            same = (
                found.get("RoleArn") == wanted["RoleArn"]
                and found.get("OutputConfig", {}).get("S3OutputPath") == output_path(self.settings)
                and all(found.get("HumanLoopConfig", {}).get(k) == v for k, v in wanted["HumanLoopConfig"].items())  # type: ignore[attr-defined]
            )
            if same:
                return str(found["FlowDefinitionArn"])
            if not replace:
                self.report.notes.append(f"flow definition {name} differs from the settings; rerun with --replace")
                return str(found["FlowDefinitionArn"])
            self._call("sagemaker", "delete_flow_definition", FlowDefinitionName=name)
        created = self._call("sagemaker", "create_flow_definition", **wanted)
        return str(created.get("FlowDefinitionArn", f"<flow-definition {name}>"))

    def events(self) -> None:
        from hitl.stack.bootstrap import ensure_a2i_events

        if self.dry_run:
            self.echo(
                f"events.put_rule/put_targets + sqs.set_queue_attributes: rule {self.settings.a2i_rule_name} "
                f"-> queue {self.settings.events_queue} (with its dead-letter queue and queue policy)"
            )
            return
        ensure_a2i_events(self.settings)

    def run(self, replace: bool = False) -> SetupReport:
        for kind in TASK_TYPES:
            self.report.flows[kind] = self.flow(kind, self.task_ui(kind), replace)
        self.events()
        return self.report
