"""The smoke chaos run (about 300 images, 8 faults) inside ``make test``; ``make chaos`` runs the full one.

The run happens in its own process (``python -m tests.chaos --scale smoke``): it starts a private
Redis with AOF, the local stack on free ports, and stops both; its verdict comes back as JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.chaos.config import SMOKE, seed_from_env

pytestmark = [pytest.mark.integration, pytest.mark.chaos]
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(720)
def test_smoke_chaos_run_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    seed = seed_from_env()
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.chaos",
            "--scale",
            "smoke",
            "--seed",
            str(seed),
            "--out",
            str(tmp_path),
            "--no-results",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=700,
        check=False,
    )
    result_file = tmp_path / "chaos-smoke.json"
    assert result_file.exists(), run.stdout[-4000:] + run.stderr[-4000:]
    result = json.loads(result_file.read_text())
    assert result["seed"] == seed
    assert result["images"] >= SMOKE.images
    assert result["faults"] >= SMOKE.faults
    assert set(result["faults_by_kind"]) >= set(SMOKE.kinds)
    for figure in ("lost", "duplicate_records", "duplicate_loops", "duplicate_lines", "missing_lines"):
        assert result[figure] == 0, (figure, result["broken"])
    assert result["broken"] == [], "\n".join(result["broken"]) + "\n" + run.stdout[-3000:]
    assert run.returncode == 0
