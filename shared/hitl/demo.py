"""``make demo``: the whole loop on the embedded defaults, on one machine, in a few minutes.

It starts the local stack, seeds 10 labelled scenes and a fixed test split, trains and serves v1,
streams a few hundred new images through submission, lets simulated reviewers answer the routed
ones through the review portal's HTTP API, lets the trainer retrain and promote whenever the
thresholds allow, then writes ``.run/demo-report.json`` and ``.run/demo-report.png`` and stops the
stack. Every figure in the report is measured in this run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

ROOT = Path.cwd()
RUN_DIR = ROOT / ".run" / "demo"
REPORT = ROOT / ".run" / "demo-report.json"
PLOT = ROOT / ".run" / "demo-report.png"
HITL = str(Path(sys.executable).parent / "hitl")
REDIS_URL = os.environ.get("HITL_DEMO_REDIS_URL", "redis://127.0.0.1:6379/11")
STREAM_IMAGES = int(os.environ.get("HITL_DEMO_IMAGES", "400"))
STREAM_SECONDS = float(os.environ.get("HITL_DEMO_STREAM_SECONDS", "230"))
SEED_IMAGES = 10
TEST_IMAGES = int(os.environ.get("HITL_DEMO_TEST_IMAGES", "200"))
# The stack's metrics ports are this one and the next few (a shorter run elsewhere picks free ones).
METRICS_BASE_PORT = os.environ.get("HITL_DEMO_METRICS_BASE_PORT", "29401")
# Keep the stopped stack's Redis keys and saved objects for inspection (tests compare the report with them).
KEEP_STATE = os.environ.get("HITL_DEMO_KEEP_STATE", "") == "1"
# Demo parameters (SSM). Confidences are calibrated: a box at 90 has been right 90 % of the time on
# images the model had not seen, so an image whose best box is less likely than that goes to a
# reviewer. An audit sample every 6th image (audits measure the model and never train it). A model
# this sure of itself sends few images, so a new version trains every 10 new labels.
DEMO_PARAMS = {
    "Minimum-Label-Detection-Confidence": "90",
    "Human-Sampling-Interval": "6",
    "Minimum-Untrained-Images": "10",
    "Minimum-F1-Score": "0.7",
    "Automatic-Training-Poll-Frequency": "1",
}
STARTED = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f}s] {message}", flush=True)


def wait_for(check: Callable[[], bool], timeout: float, what: str, interval: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not done after {timeout:.0f}s (logs: {RUN_DIR / 'logs'})")
        time.sleep(interval)


def stack_env() -> dict[str, str]:
    from hitl.stack import procs

    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("HITL_", "AWS_"))},
        "HITL_RUN_DIR": str(RUN_DIR),
        "HITL_REDIS_URL": REDIS_URL,
        "HITL_KEY_PREFIX": "demo",
        "HITL_BUCKET": "hitl-demo",
        "HITL_DETECT_BACKEND": "local",
        "HITL_MODEL_CACHE_SECONDS": "5",
        "HITL_WORKER_CONCURRENCY": "1",
        "HITL_LOOP_LABELS": json.dumps(["face"]),
        "HITL_LOG_LEVEL": "INFO",
        "HITL_STACK_MOTO_PORT": str(procs.free_port()),
        "HITL_REVIEW_PORT": str(procs.free_port()),
        "HITL_STACK_METRICS_BASE_PORT": METRICS_BASE_PORT,
    }


def use_stack_env(env: dict[str, str]) -> None:
    """Make this process a client of the stack (as `source .run/stack.env` does for a shell)."""
    from hitl import aws
    from hitl.settings import get_settings
    from hitl.stack.local import read_env_file

    os.environ.update({k: v for k, v in env.items() if k.startswith("HITL_")})
    os.environ.update(read_env_file(RUN_DIR / "stack.env"))
    get_settings.cache_clear()
    aws.reset_clients()


def seed_data(bucket: str) -> None:
    from hitl.scenes import generate_scenes, upload_set
    from hitl.settings import get_settings

    settings = get_settings()
    upload_set(
        generate_scenes("train", SEED_IMAGES, seed=0, source_prefix=f"s3://{bucket}/seed/"),
        settings.s3_uri(settings.seed_manifest_key),
    )
    upload_set(
        generate_scenes("test", TEST_IMAGES, seed=0, source_prefix=f"s3://{bucket}/test/"),
        settings.s3_uri(settings.test_manifest_key),
    )


def stream_set(bucket: str) -> list[tuple[bytes, dict[str, Any]]]:
    """New scenes (a different seed from the seed set) and their truth, keyed where submission stores them."""
    from hitl.domain.images import content_id
    from hitl.scenes import generate_scenes

    out = []
    for png, line in generate_scenes("train", STREAM_IMAGES, seed=1, source_prefix="s3://placeholder/"):
        line["source-ref"] = f"s3://{bucket}/images/{content_id(png)}.png"
        out.append((png, line))
    return out


def start_reviewers(env: dict[str, str], truth: Path) -> list[subprocess.Popen[bytes]]:
    reviewers = []
    for name in ("bob", "carol"):
        log = open(RUN_DIR / "logs" / f"reviewer-{name}.log", "ab")  # noqa: SIM115 - handed to the child
        reviewers.append(
            subprocess.Popen(
                [HITL, "review", "--auto", "--truth", str(truth), "--reviewer", name, "--until-idle", "900"],
                env={**env, **_stack_file_env()},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    return reviewers


def _stack_file_env() -> dict[str, str]:
    from hitl.stack.local import read_env_file

    return read_env_file(RUN_DIR / "stack.env")


def main() -> None:
    from hitl.entry import parse_args
    from hitl.settings import get_settings

    parse_args()

    env = stack_env()
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    redis.Redis.from_url(REDIS_URL).flushdb()
    subprocess.run([HITL, "stack", "down"], env=env, check=False, capture_output=True)
    # A fresh start: the previous run's saved bucket and parameters are forgotten with its Redis keys.
    subprocess.run([HITL, "stack", "reset", "--yes"], env=env, check=True, capture_output=True)
    say("starting the local stack (Redis, moto's server, review service, workers, beat)")
    subprocess.run([HITL, "stack", "up"], env=env, check=True)
    reviewers: list[subprocess.Popen[bytes]] = []
    try:
        use_stack_env(env)
        settings = get_settings()
        from hitl.params import ParameterStore

        for name, value in DEMO_PARAMS.items():
            ParameterStore(settings).set(name, value)
        say(f"parameters: {DEMO_PARAMS}")
        seed_data(settings.bucket)
        say(f"seeded {SEED_IMAGES} labelled scenes and a fixed test split of {TEST_IMAGES}")

        from hitl.celery_app import app
        from hitl.model.registry import ModelRegistry

        registry = ModelRegistry(settings)
        app.send_task("hitl.train.check", kwargs={"force": True, "reason": "demo v1"}, queue="train")
        wait_for(lambda: registry.serving_version() is not None, 300, "v1 trained and serving")
        v1 = registry.describe(registry.serving_version() or "")
        say(f"{v1.version} serving, F1 {v1.f1:.3f} on the test split")
        say(
            f"assumed thresholds {v1.thresholds}, review below "
            f"{DEMO_PARAMS['Minimum-Label-Detection-Confidence']}"
        )

        stream = stream_set(settings.bucket)
        truth = RUN_DIR / "truth.jsonl"
        truth.write_text("".join(json.dumps(line) + "\n" for _, line in stream))
        reviewers = start_reviewers(env, truth)
        say(f"simulated reviewers bob and carol answering from the truth of {len(stream)} images")

        from hitl.submit import Client

        client = Client(settings)
        image_ids: list[str] = []
        pause = STREAM_SECONDS / max(1, len(stream))
        for index, (png, _) in enumerate(stream, start=1):
            image_ids.append(client.submit_bytes(png, f"stream-{index}.png", source="demo").image_id or "")
            if index % 50 == 0:
                say(f"submitted {index}/{len(stream)}; serving {registry.serving_version()}")
            time.sleep(pause)

        state = redis.Redis.from_url(REDIS_URL, decode_responses=True)

        def image_done(image_id: str) -> bool:
            entry = state.hgetall(settings.key("image", image_id))
            if entry.get("state") != "detected":
                return False
            return "loop_name" not in entry or entry.get("loop_status") in ("Completed", "Failed", "Stopped")

        wait_for(lambda: all(image_done(i) for i in image_ids), 300, "every image detected and every loop answered")
        say("every image detected, every human loop answered and ingested")
        wait_for(lambda: state.get(settings.key("training", "lock")) is None, 600, "the last training run", 2.0)
        time.sleep(3)  # a check triggered by the last labels may just have been sent
        wait_for(lambda: state.get(settings.key("training", "lock")) is None, 600, "the last training run", 2.0)

        report = build_report(settings, registry, image_ids, stream, state)
        REPORT.write_text(json.dumps(report, indent=2) + "\n")
        plot(report)
        summarise(report)
    finally:
        for reviewer in reviewers:
            reviewer.send_signal(signal.SIGTERM)
            reviewer.wait(timeout=30)
        subprocess.run([HITL, "stack", "down"], env=env, check=False, capture_output=True)
        if KEEP_STATE:
            say(f"stack stopped; its state is kept in {REDIS_URL} (HITL_DEMO_KEEP_STATE)")
        else:
            # The report and plot stay; the stack's keys, queues and saved objects do not outlive the demo.
            subprocess.run([HITL, "stack", "reset", "--yes"], env=env, check=False, capture_output=True)
            say("stack stopped and its state cleared")


def build_report(settings: Any, registry: Any, image_ids: list[str], stream: list[Any], state: Any) -> dict[str, Any]:
    from hitl.adapters.records import RecordStore
    from hitl.cli.models import version_rows
    from hitl.domain.audit_stats import proportion
    from hitl.domain.matching import LabelledBox, match_boxes
    from hitl.loops.audit import AuditStore
    from hitl.loops.dataset import LabelledDataset

    versions = version_rows(registry)
    entries = [state.hgetall(settings.key("image", i)) for i in image_ids]
    audits = AuditStore(settings)
    tp = fp = 0
    for version in audits.versions():
        counts = audits.counts(version)
        tp, fp = tp + counts.tp, fp + counts.fp
    estimate = proportion(tp, tp + fp)

    # The true precision of the same detections, against the generator's ground truth.
    truth = {line["source-ref"]: line for _, line in stream}
    records = RecordStore(settings)
    true_tp = true_fp = 0
    for image_id in image_ids:
        record = records.get(image_id)
        if record is None:
            continue
        line = truth[record.image_uri]
        class_map = line["bounding-box-metadata"]["class-map"]
        expected = [
            LabelledBox(class_map[str(a["class_id"])], (a["left"], a["top"], a["width"], a["height"]))
            for a in line["bounding-box"]["annotations"]
        ]
        predicted = [
            LabelledBox(x.label, (x.box_px.left, x.box_px.top, x.box_px.width, x.box_px.height))
            for x in record.labels
            if x.box_px is not None
        ]
        result = match_boxes(predicted, expected)
        true_tp, true_fp = true_tp + result.tp, true_fp + result.fp
    return {
        "versions": versions,
        "images_submitted": len(image_ids),
        "loops_started": sum(1 for e in entries if e.get("loop_name")),
        "loops_completed": sum(1 for e in entries if e.get("loop_status") == "Completed"),
        "labels_added": int(state.scard(LabelledDataset(settings).examples_key)),
        "audit": {
            "precision_estimate": estimate.value,
            "ci_low": estimate.low,
            "ci_high": estimate.high,
            "audited_boxes": tp + fp,
            "true_precision": true_tp / (true_tp + true_fp) if true_tp + true_fp else None,
        },
        "seconds": round(time.monotonic() - STARTED, 1),
    }


def plot(report: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    versions = report["versions"]
    names = [v["version"] for v in versions]
    f1s = [v["f1"] or 0.0 for v in versions]
    colours = ["tab:green" if v["promoted"] else "tab:red" for v in versions]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar(names, f1s, color=colours)
    for index, v in enumerate(versions):
        ax.annotate(f"{v['train_images']} img", (index, f1s[index]), ha="center", va="bottom", fontsize=8)
    ax.axhline(float(DEMO_PARAMS["Minimum-F1-Score"]), color="grey", linestyle="--", label="Minimum-F1-Score")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("F1 on the fixed test split")
    ax.set_title("Model versions (green: promoted, red: rejected by the gate)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)


def summarise(report: dict[str, Any]) -> None:
    say("report:")
    for v in report["versions"]:
        mark = "promoted" if v["promoted"] else "rejected"
        say(f"  {v['version']}: F1 {v['f1']:.3f}, {v['train_images']} training images, {mark}")
    audit = report["audit"]
    say(
        f"  {report['images_submitted']} images, {report['loops_started']} loops, {report['loops_completed']} "
        f"completed, {report['labels_added']} labels added"
    )
    if audit["precision_estimate"] is not None:
        say(
            f"  audit precision {audit['precision_estimate']:.3f} "
            f"[{audit['ci_low']:.3f}, {audit['ci_high']:.3f}] vs true {audit['true_precision']:.3f}"
        )
    say(f"written {REPORT} and {PLOT}")


if __name__ == "__main__":
    main()
