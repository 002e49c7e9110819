"""The Dockerfile, by structure: multi-stage, every target non-root, no bytecode writes, the runtime
image without the extras, and every file it copies exists and is not excluded by .dockerignore.
(tests/containers builds and runs it.)"""

from __future__ import annotations

import fnmatch
import importlib.util
import re

from tests.deploy.tools import DEPLOY, ROOT

FINAL_TARGETS = ("runtime", "trainer", "local")


def instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    found = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def stages() -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """Stage name -> (what it is FROM, its instructions)."""
    found: dict[str, tuple[str, list[tuple[str, str]]]] = {}
    current: list[tuple[str, str]] = []
    for keyword, rest in instructions():
        if keyword == "FROM":
            parent, _, name = rest.partition(" AS ")
            current = []
            found[name.strip()] = (parent.strip(), current)
        elif found:
            current.append((keyword, rest))
    return found


def chain(name: str) -> list[tuple[str, str]]:
    """A stage's instructions with those of the stages it is built FROM, base first."""
    every = stages()
    steps: list[tuple[str, str]] = []
    while name in every:
        parent, own = every[name]
        steps = own + steps
        name = parent
    return steps


def test_multi_stage_every_target_non_root() -> None:
    every = stages()
    assert list(every)[-1] == "runtime", "the default target (the last stage) is the runtime image"
    for target in FINAL_TARGETS:
        steps = chain(target)
        users = [rest for keyword, rest in every[target][1] if keyword == "USER"]
        assert users, target
        assert users[-1].split(":")[0] not in ("root", "0"), target
        env = " ".join(rest for keyword, rest in steps if keyword == "ENV")
        assert "PYTHONDONTWRITEBYTECODE=1" in env, target
        assert "PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus" in env, target
        assert any(keyword == "COPY" and rest.startswith("--from=build") for keyword, rest in every[target][1])
    steps = instructions()
    assert not any(keyword == "ADD" for keyword, _ in steps)
    assert not any(keyword == "ENTRYPOINT" for keyword, _ in steps), "each service names its own entrypoint"


def test_copied_sources_exist_and_are_not_ignored() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    ignored = [line for line in lines if not line.startswith("!")]
    kept = [line[1:] for line in lines if line.startswith("!")]
    for keyword, rest in instructions():
        if keyword != "COPY" or rest.startswith("--from"):
            continue
        *sources, _ = re.sub(r"--\S+", "", rest).split()
        for source in sources:
            assert (ROOT / source).exists(), f"Dockerfile copies {source}, which does not exist"
            if source in kept:
                continue
            assert not any(
                fnmatch.fnmatch(source.rstrip("/"), pattern.lstrip("/")) or source.startswith(pattern + "/")
                for pattern in ignored
            ), source


def test_runtime_image_carries_no_extra() -> None:
    spec = importlib.util.spec_from_file_location("image_requirements", DEPLOY / "image" / "requirements.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    names = {re.split(r"[\[=<>]", r)[0].lower() for r in module.requirements(ROOT / "pyproject.toml", [])}
    assert "onnxruntime" in names
    assert not names & {"moto", "scikit-learn", "scikit-image", "matplotlib", "pytest", "mypy", "playwright"}
    trainer = {re.split(r"[\[=<>]", r)[0].lower() for r in module.requirements(ROOT / "pyproject.toml", ["train"])}
    assert trainer - names == {"scikit-learn", "scipy"}  # the fitting libraries only
    everything = module.requirements(ROOT / "pyproject.toml", ["dev"])
    def normal(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    locked = {normal(line.split("==")[0]) for line in (ROOT / "requirements.lock").read_text().split()}
    for requirement in everything:  # the dev venv (requirements.lock) still has every extra
        assert normal(re.split(r"[\[=<>]", requirement)[0]) in locked, requirement
