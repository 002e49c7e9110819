"""Every entry point answers ``--help``: exit 0, a usage text, quickly, and nothing started.

Entry points are found, not listed: every module under ``services/`` and ``shared/hitl/`` and every
script under ``bench/`` and ``deploy/`` with a ``__main__`` block, the ``hitl`` console script, and
every command and group of the ``hitl`` CLI. Each runs in its own process carrying a marker in its
environment; a process started by any of them (a worker, a server, a stack) inherits the marker, so
finding it in ``/proc`` afterwards means something was left running.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
HITL = str(Path(PYTHON).parent / "hitl")
MAIN_GUARD = 'if __name__ == "__main__":'
# Run only in their own throwaway venvs with onnx (their docstrings say how), never here.
NOT_HERE = {
    "deploy/model/export_backbone.py",
    "deploy/model/export_efficientnet_lite.py",
    "deploy/model/quantize_backbone.py",
}
SECONDS_EACH = 20.0

# Walks the hitl CLI's command tree in one process and asks each command and group for --help
# through the CLI's own argument parsing, so 49 commands cost one interpreter start.
WALK_CLI = """
import json, sys
import typer.main
from hitl.cli.main import app

def walk(command, path):
    yield path
    for name, sub in sorted((getattr(command, "commands", None) or {}).items()):
        yield from walk(sub, [*path, name])

results = []
for path in walk(typer.main.get_command(app), []):
    try:
        app([*path, "--help"], prog_name="hitl", standalone_mode=True)
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    except BaseException as error:
        code = repr(error)
    results.append({"path": path, "code": code})
sys.stdout.flush()
print("\\n" + json.dumps(results))
"""


@dataclass
class Run:
    argv: list[str]
    code: int
    stdout: str
    stderr: str
    seconds: float


def module_name(path: Path) -> str:
    parts = list(path.with_suffix("").relative_to(ROOT).parts)
    if parts[0] == "shared":
        parts = parts[1:]
    if parts[-1] == "__main__":
        parts = parts[:-1]
    return ".".join(parts)


def discovered() -> list[list[str]]:
    commands: list[list[str]] = [[HITL, "--help"]]
    for folder in ("services", "shared/hitl"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if MAIN_GUARD in path.read_text():
                commands.append([PYTHON, "-m", module_name(path), "--help"])
    for folder in ("bench", "deploy"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if relative not in NOT_HERE and MAIN_GUARD in path.read_text():
                commands.append([PYTHON, relative, "--help"])
    return commands


def run(argv: list[str], env: dict[str, str]) -> Run:
    started = time.monotonic()
    done = subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=SECONDS_EACH * 3,
        stdin=subprocess.DEVNULL, check=False,
    )
    return Run(argv, done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def marked_processes(marker: str) -> list[str]:
    """Command lines of live processes whose environment carries the marker."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if marker.encode() in (proc / "environ").read_bytes():
                found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:  # gone, or not ours to read
            continue
    return found


@pytest.fixture(scope="module")
def help_runs() -> tuple[list[Run], str]:
    marker = f"hitl-help-probe-{uuid.uuid4().hex}"
    env = {**os.environ, "HITL_HELP_PROBE": marker, "PYTHONPATH": str(ROOT)}
    commands = [*discovered(), [PYTHON, "-c", WALK_CLI]]
    with ThreadPoolExecutor(max_workers=4) as pool:
        runs = list(pool.map(lambda argv: run(argv, env), commands))
    return runs, marker


def test_the_expected_entry_points_are_found() -> None:
    found = {" ".join(argv[1:-1]) for argv in discovered()}
    expected = {
        *(f"-m services.{name}" for name in
          ("beat", "detector", "dispatcher", "ingestor", "intake", "monitor", "review", "trainer")),
        "-m hitl.demo", "-m hitl.health", "-m hitl.model", "-m hitl.stack.engine", "-m hitl.stack.compose",
        *(f"bench/bench_{name}.py" for name in ("pipeline", "model", "security", "state", "containers")),
        "deploy/audit/audit.py",
    }
    assert expected <= found, expected - found


def test_every_entry_point_answers_help_and_starts_nothing(help_runs: tuple[list[Run], str]) -> None:
    runs, marker = help_runs
    failed = [
        f"{' '.join(r.argv[1:])}: exit {r.code}\n{(r.stderr or r.stdout)[-600:]}"
        for r in runs if r.argv[1] != "-c" and (r.code != 0 or "usage" not in r.stdout.lower())
    ]
    assert not failed, "\n\n".join(failed)
    # "Quickly" is judged against the other entry points of the same run, as well as in seconds: on a
    # slow or loaded machine every start-up is slow alike, while one that does real work stands out.
    typical = statistics.median(r.seconds for r in runs)
    slow = [f"{' '.join(r.argv[1:])}: {r.seconds:.1f} s" for r in runs if r.seconds > max(SECONDS_EACH, 3 * typical)]
    assert not slow, (slow, f"median {typical:.1f} s")
    assert marked_processes(marker) == []


def test_every_hitl_command_answers_help(help_runs: tuple[list[Run], str]) -> None:
    walk = next(r for r in help_runs[0] if r.argv[1] == "-c")
    assert walk.code == 0, walk.stderr[-2000:]
    results = json.loads(walk.stdout.rstrip().rsplit("\n", 1)[-1])
    paths = {" ".join(result["path"]) for result in results}
    # The tree the README documents; a command that disappears from the walk fails here.
    assert {"", "submit", "status", "stack up", "review users add", "review flows update", "dlq redrive",
            "dataset import", "dataset export", "train", "models promote", "containers up"} <= paths
    failed = [result for result in results if result["code"] != 0]
    assert not failed, failed
    assert walk.stdout.count("Usage:") >= len(results)
