"""``--help`` for every entry point (``python -m services.<name>``, ``python -m hitl.demo``): the
module's own description and where its configuration comes from, and nothing started."""

from __future__ import annotations

import argparse
import sys

CONFIGURATION = (
    "Configuration: HITL_* environment variables or a .env file (shared/hitl/settings.py), AWS "
    "endpoints from AWS_ENDPOINT_URL*, runtime parameters in SSM (`hitl params get`). On the local "
    "stack, `source .run/stack.env` sets them all. Exit status 0 on a clean stop (SIGTERM)."
)


def parse_args(prog: str | None = None, argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the (option-free) command line of the running module; ``--help`` prints and exits 0."""
    main = sys.modules.get("__main__")
    doc = (getattr(main, "__doc__", None) or "").strip()
    spec = getattr(main, "__spec__", None)
    prog = prog or (f"python -m {spec.name.removesuffix('.__main__')}" if spec else None)
    parser = argparse.ArgumentParser(prog=prog, description=doc or None, epilog=CONFIGURATION)
    return parser.parse_args(sys.argv[1:] if argv is None else argv)
