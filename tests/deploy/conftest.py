"""Session fixtures: each overlay is built once, and checkov runs once per overlay."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.tools import DEPLOY, kustomize, run, tool

K8S = DEPLOY / "k8s"
OVERLAYS = ("local", "aws")
AWS_VALUES = K8S / "overlays" / "aws" / "values.env.example"


def load_docs(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def is_core(doc: dict[str, Any]) -> bool:
    """Built-in Kubernetes kinds (v1, apps/v1, *.k8s.io/...), as opposed to CRDs (KEDA, Prometheus Operator)."""
    group = doc["apiVersion"].rpartition("/")[0]
    return group in ("", "apps", "policy", "batch", "autoscaling") or group.endswith(".k8s.io")


@pytest.fixture(scope="session")
def iam_render() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("deploy_iam_render", DEPLOY / "iam" / "render.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def built() -> dict[str, str]:
    """overlay -> `kubectl kustomize` output, as built (aws: ${Placeholders} still in)."""
    return {overlay: kustomize(K8S / "overlays" / overlay) for overlay in OVERLAYS}


@pytest.fixture(scope="session")
def rendered(built: dict[str, str], iam_render: Any) -> dict[str, str]:
    """overlay -> the manifests as applied: the aws overlay with the example values filled in."""
    values = iam_render.read_env(AWS_VALUES)
    return {overlay: iam_render.render(text, values) for overlay, text in built.items()}


@pytest.fixture(scope="session")
def objects(rendered: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    return {overlay: load_docs(text) for overlay, text in rendered.items()}


@pytest.fixture(scope="session")
def checkov_reports(rendered: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """overlay -> checkov's JSON report on the rendered manifests, with deploy/k8s/.checkov.yaml."""
    checkov = tool("checkov")
    reports = {}
    for overlay, text in rendered.items():
        directory = tmp_path_factory.mktemp(f"checkov-{overlay}")
        (directory / f"{overlay}.yaml").write_text(text)
        result = run(
            [checkov, "--config-file", str(K8S / ".checkov.yaml"), "-d", str(directory), "-o", "json"], cwd=directory
        )
        try:
            report = json.loads(result.stdout)
        except json.JSONDecodeError:
            pytest.fail(
                f"checkov gave no JSON report for {overlay} (exit {result.returncode}):\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        assert isinstance(report, dict), "one framework, one report"
        reports[overlay] = report
    return reports


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
