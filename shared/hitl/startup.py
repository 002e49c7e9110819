"""Start-up validation: the settings a service's configuration needs, checked before it starts.

A missing one stops the service with one line naming the variable (and why it is needed), instead
of a traceback deep in the first request. ``hitl aws check-settings`` runs the same check against
any environment (e.g. a rendered Kubernetes overlay's).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping

from hitl.settings import Settings

Requirement = tuple[str, Callable[[Settings], bool], str]  # variable, present?, why

REGION: Requirement = ("AWS_DEFAULT_REGION", lambda s: True, "every AWS client needs a region")
FLOW: Requirement = (
    "HITL_FLOW_DEFINITION_ARN",
    lambda s: bool(s.flow_definition_arn),
    "human loops are started on this flow",
)

SERVICES = ("intake", "detector", "dispatcher", "ingestor", "reconciler", "trainer", "beat", "monitor", "review")


def _detector(settings: Settings) -> list[Requirement]:
    if settings.detect_backend == "rekognition":
        return [
            (
                "HITL_REKOGNITION_PROJECT_ARN",
                lambda s: bool(s.rekognition_project_arn or s.rekognition_project_version_arn),
                "the rekognition detect backend serves a version of this project "
                "(or set HITL_REKOGNITION_PROJECT_VERSION_ARN)",
            )
        ]
    if settings.detect_backend == "sagemaker":
        return [
            (
                "HITL_SAGEMAKER_ENDPOINT_NAME",
                lambda s: bool(s.sagemaker_endpoint_name),
                "the sagemaker detect backend invokes this endpoint",
            )
        ]
    return []


def _trainer(settings: Settings) -> list[Requirement]:
    if settings.train_backend == "rekognition":
        return [
            (
                "HITL_REKOGNITION_PROJECT_ARN",
                lambda s: bool(s.rekognition_project_arn),
                "the rekognition training backend creates versions in this project",
            )
        ]
    if settings.train_backend == "sagemaker":
        why = "the sagemaker training backend needs it"
        return [
            ("HITL_SAGEMAKER_ROLE_ARN", lambda s: bool(s.sagemaker_role_arn), why),
            ("HITL_SAGEMAKER_TRAINING_IMAGE", lambda s: bool(s.sagemaker_training_image), why),
            ("HITL_SAGEMAKER_ENDPOINT_NAME", lambda s: bool(s.sagemaker_endpoint_name), why),
        ]
    return []


def requirements(settings: Settings, service: str) -> list[Requirement]:
    needs: list[Requirement] = [REGION]
    if service == "detector":
        needs += _detector(settings)
    elif service in ("dispatcher", "reconciler"):
        needs.append(FLOW)
    elif service == "trainer":
        needs += _trainer(settings)
    return needs


def missing(settings: Settings, service: str, environ: Mapping[str, str] | None = None) -> list[str]:
    """One line per missing setting of ``service``: ``HITL_X is required: why``."""
    environ = os.environ if environ is None else environ
    lines = []
    for variable, present, why in requirements(settings, service):
        if variable == "AWS_DEFAULT_REGION":
            ok = bool(environ.get("AWS_DEFAULT_REGION") or environ.get("AWS_REGION"))
        else:
            ok = present(settings)
        if not ok:
            lines.append(f"{variable} is required for {service}: {why}")
    return lines


def require(settings: Settings, service: str) -> None:
    """Exit (status 2) with one line per missing setting; called first by each service."""
    problems = missing(settings, service)
    if problems:
        for line in problems:
            sys.stderr.write(f"hitl {service}: configuration error: {line}\n")
        raise SystemExit(2)
