"""The Dockerfile, by structure (no Docker engine here): multi-stage, non-root, no bytecode writes,
and every file it copies exists and is not excluded by .dockerignore."""

from __future__ import annotations

import fnmatch
import re

from tests.deploy.tools import ROOT


def instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    found = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def test_multi_stage_non_root_runtime() -> None:
    steps = instructions()
    stages = [rest for keyword, rest in steps if keyword == "FROM"]
    assert len(stages) >= 2
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    runtime = steps[last_from:]
    users = [rest for keyword, rest in runtime if keyword == "USER"]
    assert users
    assert users[-1].split(":")[0] not in ("root", "0")
    env = " ".join(rest for keyword, rest in runtime if keyword == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus" in env
    assert any(keyword == "COPY" and rest.startswith("--from=build") for keyword, rest in runtime)
    assert not any(keyword == "ADD" for keyword, _ in steps)
    assert not any(keyword == "ENTRYPOINT" for keyword, _ in steps), "each service names its own entrypoint"


def test_copied_sources_exist_and_are_not_ignored() -> None:
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for keyword, rest in instructions():
        if keyword != "COPY" or rest.startswith("--from"):
            continue
        *sources, _ = re.sub(r"--\S+", "", rest).split()
        for source in sources:
            assert (ROOT / source).exists(), f"Dockerfile copies {source}, which does not exist"
            assert not any(fnmatch.fnmatch(source.rstrip("/"), pattern.lstrip("/")) for pattern in ignored), source
