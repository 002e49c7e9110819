"""The pipeline's services run from the images (non-root, read-only root, tmpfs /tmp, host network),
against the stack's Redis and moto: 30 images through submit → detect → review → ingest → dataset."""

from __future__ import annotations

from pathlib import Path

import pytest

from hitl.stack import containers
from hitl.stack import engine as engines
from tests.containers.flow import run_flow
from tests.integration.conftest import LocalStack

# A cold build of the images (nothing cached) takes minutes on a loaded machine; the session fixture
# building them is charged to the first test.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]


def test_thirty_images_through_the_containerised_pipeline(container_stack: LocalStack, tmp_path: Path) -> None:
    result = run_flow(container_stack, tmp_path / "images")
    assert len(result.ids) == 30
    assert result.labelled, "some low-confidence loops became training data"


def test_every_service_ran_in_its_own_hardened_container(
    container_stack: LocalStack, container_engine: engines.Engine
) -> None:
    prefix = containers.container_prefix(container_stack.run_dir)
    names = [containers.REVIEW.name, *(s.name for s in containers.pipeline_services())]
    for name in names:
        container = f"hitl-{prefix}-{name}"
        fmt = "{{.State.Running}} {{.Config.User}} {{.HostConfig.ReadonlyRootfs}} {{.HostConfig.NetworkMode}}"
        state = container_engine.run("inspect", "--format", fmt, container).stdout.split()
        assert state == ["true", "10001:10001", "true", "host"], (name, state)
        # The liveness probe of the manifests, in the container.
        probe = ["python", "-m", "hitl.health", "--max-age", "60"]
        if name != containers.REVIEW.name:
            assert container_engine.run("exec", container, *probe, check=False).returncode == 0, name
        # Nothing can be written outside /tmp.
        touch = container_engine.run("exec", container, "python", "-c", "open('/opt/x', 'w')", check=False)
        assert touch.returncode != 0, name
