"""Print the requirements of the project's runtime plus the named extras, from pyproject.toml.

The image build installs these with ``--constraint requirements.lock``: the versions are the dev
venv's, the set is only what the image needs. Extras naming the project itself
(``hitl-pipeline[local,train]``) are expanded.

    python deploy/image/requirements.py [pyproject.toml] [extra,extra...]
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path


def requirements(pyproject: Path, extras: list[str]) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    own = re.compile(rf"^{re.escape(project['name'])}\[([^\]]+)\]$")
    found: list[str] = list(project["dependencies"])
    seen: set[str] = set()
    pending = list(extras)
    while pending:
        extra = pending.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for requirement in project["optional-dependencies"][extra]:
            match = own.match(requirement.replace(" ", ""))
            if match:
                pending.extend(match.group(1).split(","))
            elif requirement not in found:
                found.append(requirement)
    return found


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(
        prog="python deploy/image/requirements.py", description=(__doc__ or "").strip().splitlines()[0]
    )
    parser.add_argument("pyproject", nargs="?", type=Path, default=Path("pyproject.toml"))
    parser.add_argument("extras", nargs="?", default="", help="comma-separated extras, e.g. local,train")
    args = parser.parse_args()
    print("\n".join(requirements(args.pyproject, [e for e in args.extras.split(",") if e])))
