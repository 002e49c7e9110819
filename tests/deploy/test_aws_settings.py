"""The aws overlay, rendered with the example values, gives every service the settings it needs:
the start-up check (``hitl.startup``, also ``hitl aws check-settings``) reports nothing missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hitl.settings import Settings
from hitl.startup import SERVICES, missing

HITL = str(Path(sys.executable).parent / "hitl")


def pod_environment(docs: list[dict[str, Any]], name: str) -> dict[str, str]:
    """The environment the app container of Deployment ``name`` gets (Secret values stand in as set)."""
    config_maps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    (deployment,) = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == name]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(config_maps[source["configMapRef"]["name"]])
    for item in container.get("env", []):
        env[item["name"]] = item.get("value", "from-a-secret")
    return env


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key in list(os.environ):
        if key.startswith(("HITL_", "AWS_")):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings(_env_file=None)  # type: ignore[call-arg]


@pytest.mark.parametrize("service", SERVICES)
def test_every_aws_service_has_the_settings_it_needs(
    objects: dict[str, list[dict[str, Any]]], service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = pod_environment(objects["aws"], service)
    assert missing(settings_from(env, monkeypatch), service, env) == []


def test_the_check_reports_a_variable_taken_out(
    objects: dict[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = pod_environment(objects["aws"], "trainer")
    del env["HITL_REKOGNITION_PROJECT_ARN"]
    assert [line.split()[0] for line in missing(settings_from(env, monkeypatch), "trainer", env)] == [
        "HITL_REKOGNITION_PROJECT_ARN"
    ]


def test_the_cli_check_on_the_rendered_detector_environment(objects: dict[str, list[dict[str, Any]]]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HITL_", "AWS_"))}
    env |= pod_environment(objects["aws"], "detector")
    result = subprocess.run(
        [HITL, "aws", "check-settings", "--service", "detector"], env=env, capture_output=True, text=True, check=False
    )
    assert (result.returncode, result.stdout.strip()) == (0, "nothing missing"), result.stderr
    env.pop("HITL_REKOGNITION_PROJECT_ARN")
    result = subprocess.run(
        [HITL, "aws", "check-settings", "--service", "detector"], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert result.stdout.startswith("detector: HITL_REKOGNITION_PROJECT_ARN is required")
