"""``python -m tests.chaos [--scale smoke|full]``: one chaos run; ``make chaos`` runs the full one and
writes ``bench/results/chaos.json`` and ``chaos.png``."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from tests.chaos.config import SCALES, seed_from_env
from tests.chaos.harness import ROOT, main


def cli() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos")
    parser.add_argument("--scale", choices=sorted(SCALES), default="full")
    parser.add_argument("--seed", type=int, default=seed_from_env())
    parser.add_argument("--images", type=int, help="override the scale's image count (development runs)")
    parser.add_argument("--extra-faults", type=int, help="override the scale's random extra faults")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--run-dir", type=Path, help="keep the stack's run directory (logs) here")
    parser.add_argument("--no-results", action="store_true", help="write chaos-<scale>.json only, no plot")
    args = parser.parse_args()
    scale = SCALES[args.scale]
    if args.images:
        scale = replace(scale, images=args.images)
    if args.extra_faults is not None:
        scale = replace(scale, extra_faults=args.extra_faults)
    return main(scale, args.seed, args.out, args.run_dir, write=not args.no_results)


if __name__ == "__main__":
    sys.exit(cli())
