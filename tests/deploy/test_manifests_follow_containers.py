"""The Kubernetes manifests run what the container run (tests/containers, ``make up CONTAINERS=1``)
exercises: the same image per service, entrypoint, probes, user, read-only root with the same writable
mounts, and memory requests that cover the resident memory measured there
(bench/results/containers.json, written by bench/bench_containers.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from hitl.stack import containers
from hitl.stack import engine as engines
from tests.deploy.tools import DEPLOY, ROOT

BASE = DEPLOY / "k8s" / "base"
SERVICES = {s.name: s for s in [*containers.pipeline_services(), containers.REVIEW]}
MEASURED = ROOT / "bench" / "results" / "containers.json"
MI = 2**20


def app_container(name: str) -> dict[str, Any]:
    path = BASE / ("bootstrap-job.yaml" if name == "bootstrap" else f"{name}.yaml")
    doc = next(d for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] in ("Deployment", "Job"))
    container: dict[str, Any] = doc["spec"]["template"]["spec"]["containers"][0]
    return container


def mebibytes(quantity: str) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return float(quantity[: -len(suffix)]) * factor / MI
    return float(quantity) / MI


@pytest.mark.parametrize("name", [*SERVICES, "bootstrap"])
def test_entrypoint_image_user_and_mounts_are_the_container_runs(name: str) -> None:
    service = SERVICES.get(name, containers.BOOTSTRAP)
    container = app_container(name)
    assert container["command"] == list(service.argv), name
    assert container["image"] == engines.TARGETS[service.target], name
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["runAsUser"] == containers.UID
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/tmp" in mounts
    assert mounts <= set(containers.TMPFS), (name, mounts)


@pytest.mark.parametrize("name", list(SERVICES))
def test_probes_are_the_ones_the_container_run_passes(name: str) -> None:
    container = app_container(name)
    if name == containers.REVIEW.name:
        assert container["readinessProbe"]["httpGet"]["path"] == containers.REVIEW_READINESS_PATH
        assert container["livenessProbe"]["httpGet"]["path"] == containers.REVIEW_LIVENESS_PATH
        return
    assert container["readinessProbe"]["exec"]["command"] == list(containers.READINESS_PROBE)
    assert container["livenessProbe"]["exec"]["command"] == list(containers.LIVENESS_PROBE)
    assert container["startupProbe"]["exec"]["command"] == list(containers.LIVENESS_PROBE)


def test_memory_requests_cover_the_measured_resident_memory() -> None:
    """Each request holds the service's resident memory under the 30-image load (PSS: shared pages
    counted once, as the cgroup charges them) without asking for more than twice that plus 64 MiB,
    except the detector and trainer, sized for the embedded model (the run used the `fixed` backend)."""
    measured = json.loads(MEASURED.read_text())["memory_mib"]
    for name in SERVICES:
        request = mebibytes(app_container(name)["resources"]["requests"]["memory"])
        load = measured[name]["load_pss"]
        assert request >= load, (name, request, load)
        if name not in ("detector", "trainer"):
            assert request <= 2 * load + 64, (name, request, load)
