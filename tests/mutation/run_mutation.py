"""``make mutation``: mutmut on the five core domain modules, against their unit tests.

mutmut names a mutant after the module path it copies, so the package is copied to a workspace
(``.mutation/``) where ``hitl`` is top-level, with the unit tests of those modules; mutmut runs there
and the score (killed / all mutants checked) is printed with the survivors. Exit status 1 when the
score is under ``--minimum`` (percent).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORKSPACE = ROOT / ".mutation"
MODULES = ("routing", "conversion", "consolidation", "matching", "audit_stats")
TESTS = (
    "tests/unit/test_domain_core.py",
    "tests/unit/test_routing.py",
    "tests/unit/test_label_efficiency.py",  # the routing strategies' cases (needs_label, priority)
    "tests/loops/test_domain.py",
    "tests/loops/test_conversion.py",
)
CONFIG = """\
[tool.mutmut]
source_paths = ["hitl/"]
only_mutate = [{only}]
pytest_add_cli_args_test_selection = ["tests/"]
pytest_add_cli_args = ["-p", "no:cacheprovider", "-p", "no:timeout"]

[tool.pytest.ini_options]
testpaths = ["tests"]
"""


def build() -> None:
    shutil.rmtree(WORKSPACE, ignore_errors=True)
    shutil.copytree(
        ROOT / "shared" / "hitl",
        WORKSPACE / "hitl",
        ignore=shutil.ignore_patterns("__pycache__", "assets", "*.onnx"),
    )
    for test in TESTS:
        target = WORKSPACE / test
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / test, target)
        for folder in [target.parent, *target.parent.parents]:
            if folder == WORKSPACE:
                break
            (folder / "__init__.py").touch()
    only = ", ".join(f'"hitl/domain/{m}.py"' for m in MODULES)
    (WORKSPACE / "pyproject.toml").write_text(CONFIG.format(only=only))


def results() -> dict[str, str]:
    """mutant name -> status, from ``mutmut results --all true``."""
    listing = subprocess.run(
        [str(Path(sys.executable).parent / "mutmut"), "results", "--all", "true"],
        cwd=WORKSPACE, capture_output=True, text=True, check=True,
    ).stdout
    found = {}
    for line in listing.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name:
            found[name] = status
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minimum", type=float, default=80.0, help="percent of mutants to kill")
    parser.add_argument("--max-children", type=int, default=2)
    parser.add_argument("--resume", action="store_true", help="keep the workspace: check only unchecked mutants")
    args = parser.parse_args(argv)
    if not (args.resume and (WORKSPACE / "mutants").exists()):
        build()
    subprocess.run(
        [str(Path(sys.executable).parent / "mutmut"), "run", "--max-children", str(args.max_children)],
        cwd=WORKSPACE, check=True,
    )
    statuses = results()
    killed = sum(s == "killed" for s in statuses.values())
    survivors = sorted(n for n, s in statuses.items() if s != "killed")
    score = 100.0 * killed / len(statuses) if statuses else 0.0
    summary = {"mutants": len(statuses), "killed": killed, "score_percent": round(score, 1), "not_killed": survivors}
    (WORKSPACE / "score.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"mutation score: {killed}/{len(statuses)} killed = {score:.1f}% (minimum {args.minimum:.0f}%)")
    for name in survivors:
        print(f"  not killed: {name} ({statuses[name]})")
    return 0 if score >= args.minimum else 1


if __name__ == "__main__":
    sys.exit(main())
