"""Fill in the ${Placeholders} of the IAM policy documents and of the rendered aws overlay.

    python deploy/iam/render.py --env values.env deploy/iam/detector.json
    kubectl kustomize deploy/k8s/overlays/aws | python deploy/iam/render.py --env values.env -
    python deploy/iam/render.py --env values.env --set ServiceAccount=detector deploy/iam/trust-policy.json

Values come from KEY=VALUE lines of --env files, then --set (later wins). Every placeholder must get a
value: an unresolved one is an error, never an empty string. Only ${Name} with a letter first is a
placeholder, so Kubernetes' $(VAR) and Prometheus' {{ $labels.x }} pass through untouched.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

PLACEHOLDER = re.compile(r"\$\{([A-Za-z][A-Za-z0-9]*)\}")


def read_env(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not PLACEHOLDER.fullmatch("${" + key.strip() + "}"):
            raise SystemExit(f"{path}:{number}: expected KEY=VALUE, got {raw!r}")
        values[key.strip()] = value.strip()
    return values


def placeholders(text: str) -> set[str]:
    return set(PLACEHOLDER.findall(text))


def render(text: str, values: dict[str, str]) -> str:
    missing = sorted(placeholders(text) - values.keys())
    if missing:
        raise KeyError(", ".join(missing))
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", help="file to render, or - for standard input")
    parser.add_argument("--env", action="append", default=[], type=Path, help="KEY=VALUE file (repeatable)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="one value (repeatable)")
    args = parser.parse_args(argv)
    values: dict[str, str] = {}
    for path in args.env:
        values.update(read_env(path))
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set needs KEY=VALUE, got {item!r}")
        values[key] = value
    text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
    try:
        sys.stdout.write(render(text, values))
    except KeyError as exc:
        print(f"no value for placeholder(s): {exc.args[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
