"""``python -m hitl.health``: the exec probe's exit codes for liveness and readiness."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hitl import health


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    heartbeat, ready = tmp_path / "hb" / "heartbeat", tmp_path / "hb" / "ready"
    monkeypatch.setenv("HITL_HEARTBEAT_FILE", str(heartbeat))
    monkeypatch.setenv("HITL_READY_FILE", str(ready))
    return heartbeat, ready


def test_liveness_by_the_heartbeat_age(files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    heartbeat, _ = files
    assert health.main([]) == 1
    assert capsys.readouterr().out == f"no heartbeat at {heartbeat}\n"
    health.touch(heartbeat)
    assert health.main([]) == 0
    assert capsys.readouterr().out.startswith("heartbeat 0.")
    old = time.time() - 90
    os.utime(heartbeat, (old, old))
    assert health.main([]) == 1, "90 s old, over the default 60 s"
    assert health.main(["--max-age", "120"]) == 0
    assert health.main(["--max-age", "80"]) == 1


def test_readiness_by_the_ready_file(files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, ready = files
    assert health.main(["--ready"]) == 1
    assert capsys.readouterr().out == f"not ready: {ready} missing\n"
    health.mark_ready(True)
    assert health.main(["--ready"]) == 0
    assert capsys.readouterr().out == "ready\n"
    health.mark_ready(False)
    assert not ready.exists()
    assert health.main(["--ready"]) == 1


def test_the_heartbeat_thread_touches_the_file(files: tuple[Path, Path]) -> None:
    heartbeat, _ = files
    beats: list[float] = []
    stop = health.start_heartbeat(interval=0.05, on_beat=lambda: beats.append(time.time()))
    try:
        deadline = time.monotonic() + 10
        while len(beats) < 2:
            assert time.monotonic() < deadline, "no heartbeat"
            time.sleep(0.01)
    finally:
        stop.set()
    assert heartbeat.exists()
    assert health.main([]) == 0


def test_the_module_runs_as_a_probe(files: tuple[Path, Path]) -> None:
    heartbeat, _ = files
    probe = [sys.executable, "-m", "hitl.health"]
    missing = subprocess.run(probe, capture_output=True, text=True, check=False, timeout=60)
    assert (missing.returncode, missing.stdout) == (1, f"no heartbeat at {heartbeat}\n")
    health.touch(heartbeat)
    alive = subprocess.run(probe, capture_output=True, text=True, check=False, timeout=60)
    assert alive.returncode == 0
    assert alive.stdout.startswith("heartbeat ")
