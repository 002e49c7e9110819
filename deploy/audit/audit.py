"""``make audit``: pip-audit on requirements.lock, with an honest verdict.

pip-audit asks an advisory source (PyPI's JSON API by default) about each pinned package. A package
the source does not know is *skipped*, not cleared, yet pip-audit still says "No known
vulnerabilities found". So this script reads pip-audit's JSON report and decides:

- advisories found and not accepted in ``deploy/audit/ignored.json`` (with a reason): exit 1;
- no package could be audited (the advisory source is unreachable, or it does not know the
  versions this machine's package index serves): say so plainly and exit 0, so ``make lint`` does
  not fail for a reason outside the project;
- otherwise: the count of audited and skipped packages, exit 0.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def main(argv: list[str] | None = None) -> int:
    import argparse

    argparse.ArgumentParser(
        prog="python deploy/audit/audit.py",
        description=(__doc__ or "").strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Needs pip-audit in .venv-audit (make audit installs it from deploy/audit/requirements.txt).",
    ).parse_args(argv)
    pip_audit = ROOT / ".venv-audit" / "bin" / "pip-audit"
    ignored: dict[str, str] = json.loads((HERE / "ignored.json").read_text())["ignored"]
    with tempfile.TemporaryDirectory() as folder:
        report_path = Path(folder) / "report.json"
        command = [
            str(pip_audit), "-r", str(ROOT / "requirements.lock"), "--no-deps", "--disable-pip",
            "--progress-spinner", "off", "-f", "json", "-o", str(report_path),
        ]
        for vulnerability in ignored:
            command += ["--ignore-vuln", vulnerability]
        run = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
        if not report_path.exists():
            reason = (run.stderr.strip().splitlines() or ["no report"])[-1][:300]
            print(f"pip-audit: NOT AUDITED - the advisory source could not be reached ({reason})")
            return 0
        report = json.loads(report_path.read_text())
    packages = report.get("dependencies", [])
    skipped = [p for p in packages if "skip_reason" in p]
    audited = [p for p in packages if "vulns" in p]
    findings = [(p["name"], p["version"], v) for p in audited for v in p["vulns"]]
    for name, version, vulnerability in findings:
        fixes = ", ".join(vulnerability.get("fix_versions", [])) or "no fixed version"
        print(f"pip-audit: {name} {version}: {vulnerability['id']} (fixed in {fixes})")
    if findings:
        print(f"pip-audit: {len(findings)} advisories; fix the pins or accept each in deploy/audit/ignored.json")
        return 1
    if not audited:
        print(
            f"pip-audit: NOT AUDITED - the advisory source knows none of the {len(skipped)} pinned packages "
            "(unreachable, or this machine's package index serves versions it has no record of)"
        )
        return 0
    print(f"pip-audit: {len(audited)} packages audited, no advisories; {len(skipped)} skipped (unknown to the source)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
