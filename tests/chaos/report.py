"""``bench/results/chaos.json`` and its timeline plot ``chaos.png``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

SERIES = (
    ("accepted", "images accepted"),
    ("detected", "images detected"),
    ("answered", "loops answered"),
    ("loops_completed", "loops Completed (index)"),
    ("dataset_lines", "dataset lines"),
)


def write(result: dict[str, Any], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {**result, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (out_dir / "chaos.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    plot(result, out_dir / "chaos.png")


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = result.get("samples") or []
    kinds = sorted({f["kind"].split(":")[0] for f in result.get("faults_log", [])})
    colours = dict(zip(kinds, plt.get_cmap("tab10").colors, strict=False))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 7), sharex=True, height_ratios=[3, 2])
    for key, label in SERIES:
        points = [(s["t"], s[key]) for s in samples if key in s]
        if points:
            top.plot([p[0] for p in points], [p[1] for p in points], label=label)
    top.set_ylabel("count")
    top.legend(loc="upper left")
    top.set_title(
        f"chaos run (seed {result.get('seed')}): {result.get('images')} images, {result.get('faults')} faults, "
        f"lost {result.get('lost')}, duplicates {result.get('duplicate_records')}/{result.get('duplicate_loops')}/"
        f"{result.get('duplicate_lines')}, missing lines {result.get('missing_lines')}"
    )
    rows = {}
    for fault in result.get("faults_log", []):
        label = fault["kind"] if fault["kind"] != "kill_child" else f"kill_child:{fault['target']}"
        row = rows.setdefault(label, len(rows))
        width = max(0.8, fault["ended"] - fault["started"])
        bottom.broken_barh([(fault["started"], width)], (row - 0.4, 0.8), color=colours[fault["kind"].split(":")[0]])
        top.axvspan(fault["started"], fault["started"] + width, color=colours[fault["kind"].split(":")[0]], alpha=0.08)
    bottom.set_yticks(list(rows.values()), list(rows.keys()), fontsize=7)
    timeline = result.get("timeline", {})
    for name in ("faults_ended", "converged"):
        if name in timeline:
            for axis in (top, bottom):
                axis.axvline(timeline[name], color="black", linestyle="--", linewidth=0.8)
            label = name.replace("_", " ")
            if name == "converged" and result.get("converge_seconds") is None:
                label = "gave up converging"
            top.annotate(label, (timeline[name], 0), rotation=90, fontsize=7, va="bottom")
    bottom.set_xlabel("seconds since the load started")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
