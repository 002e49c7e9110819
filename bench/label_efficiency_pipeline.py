"""Label efficiency on the real pipeline: each routing strategy once, end to end, on a short stream.

The simulation (``bench_label_efficiency.py``) calls the routing functions itself; this run shows the
same routing working through the deployed processes. It starts the local stack on loopback in a run
directory of its own (``.run/bench-label-pipeline``: its own redis-server on a free port, key prefix,
bucket and ports), trains v1 of the embedded model (detect backend ``local``) from 10 seed scenes
(``hitl.train.check`` with force), then for each strategy of ``hitl.domain.strategies.STRATEGIES``:

- sets ``Routing-Strategy`` (``Max-Human-Reviews-Per-Hour`` is ``BUDGET`` throughout) and waits until
  every process has re-read the parameters (``params_cache_seconds``);
- gives the strategy a budget hour of its own: the previous strategy's started loops and waiting
  images are taken out of the budget's keys (``hitl.loops.budget.ReviewBudget``), as an hour passing
  would free the slots; without it the first strategy would spend the hour of all four;
- submits a new stream of scenes, some followed a few images later by a near-duplicate (other
  brightness and noise), in order, and waits until every image is detected and every routed image's
  loop has started or waits for the budget;
- reads the image index (``state``, ``route``, ``loop_name``, ``loop_status``), the detection records,
  the budget, the review service's A2I API and the reviewer portal's queue.

Nobody answers: the run checks routing, the budget and the queue's order, not learning. The stack is
then stopped (``hitl stack down``) and reset (``hitl stack reset --yes``): no process, key or object
of the run is left.

``python bench/label_efficiency_pipeline.py`` runs it alone and puts the result under ``pipeline_runs``
in ``bench/results/label_efficiency.json``, leaving the simulation's figures there as they are.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_label_efficiency import near_duplicate
from isolated_stack import isolated_stack_env

ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = ROOT / ".run" / "bench-label-pipeline"
RESULTS = ROOT / "bench" / "results" / "label_efficiency.json"
HITL = str(Path(sys.executable).parent / "hitl")

# Max-Human-Reviews-Per-Hour: small, so that each strategy routes more than it from a 40-image stream
# (audit samples included) and the budget, not the stream, decides what starts; v1 is sure of itself.
BUDGET = 4
BASE_SCENES = 32
DUPLICATE_PAIRS = 8  # the first 8 scenes each come again as a near-duplicate …
DUPLICATE_GAP = 4  # … 4 scenes later, when the original has been routed (one worker process, in order)
SEED_SCENES = 10
TEST_SCENES = 50
STREAM_SEED = 40  # plus the strategy's position: a new stream per strategy, none of it seen in training
CACHE_SECONDS = 2  # how long processes keep parameters and the serving version before reading again
PARAMS = {
    "Minimum-Label-Detection-Confidence": "70",  # the default, as in the simulation
    "Human-Sampling-Interval": "10",  # an audit sample every 10th detection, whatever the strategy
    "Enable-Automatic-Training": "false",  # v1 serves throughout: every strategy sees the same model
    "Minimum-F1-Score": "0.5",  # v1 must serve; its F1 is reported
}
STARTED_STATUSES = ("InProgress", "Completed", "Failed", "Stopped", "Expired")
SETTLE_SECONDS = 180.0
STARTED = time.monotonic()


def say(message: str) -> None:
    print(f"[pipeline {time.monotonic() - STARTED:6.1f}s] {message}", flush=True)


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.5) -> bool:
    """True once ``check`` holds; False when it still does not after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


# --- the stack --------------------------------------------------------------------------------


def stack_env() -> dict[str, str]:
    return isolated_stack_env(
        RUN_DIR,
        "labelpipe",
        "hitl-label-pipeline",
        HITL_DETECT_BACKEND="local",
        HITL_WORKER_CONCURRENCY="1",  # images detected one at a time, in submission order
        HITL_PARAMS_CACHE_SECONDS=str(CACHE_SECONDS),
        HITL_MODEL_CACHE_SECONDS=str(CACHE_SECONDS),
    )


def hitl_stack(env: dict[str, str], *args: str, check: bool = True) -> None:
    done = subprocess.run([HITL, "stack", *args], env=env, check=False, capture_output=True, text=True)
    if check and done.returncode:
        raise RuntimeError(
            f"hitl stack {' '.join(args)} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )


@contextmanager
def local_stack(env: dict[str, str]) -> Iterator[dict[str, str]]:
    """The stack up, this process its client (as ``source stack.env`` makes a shell); afterwards the
    stack down and reset, and this process's environment as it was."""
    from hitl import aws
    from hitl.loops import a2i
    from hitl.settings import get_settings
    from hitl.stack.local import read_env_file

    saved = dict(os.environ)
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    hitl_stack(env, "down", check=False)  # a previous run's leftovers, if any
    hitl_stack(env, "reset", "--yes")
    try:
        say("starting the local stack")
        hitl_stack(env, "up")
        stack_file = read_env_file(RUN_DIR / "stack.env")
        for name in [k for k in os.environ if k.startswith(("HITL_", "AWS_"))]:
            del os.environ[name]  # the caller's own settings would mix with the stack's
        os.environ.update({k: v for k, v in env.items() if k.startswith("HITL_")})
        os.environ.update(stack_file)
        get_settings.cache_clear()
        aws.reset_clients()
        a2i.reset()
        yield stack_file
    finally:
        hitl_stack(env, "down", check=False)
        hitl_stack(env, "reset", "--yes", check=False)
        os.environ.clear()
        os.environ.update(saved)
        get_settings.cache_clear()
        aws.reset_clients()
        a2i.reset()
        say("stack stopped and reset")


# --- the stream -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stream:
    items: list[tuple[str, bytes]]  # (name, PNG), in submission order
    pairs: list[tuple[int, int]]  # (original, near-duplicate) positions in ``items``


def make_stream(position: int) -> Stream:
    """``BASE_SCENES`` new scenes; each of the first ``DUPLICATE_PAIRS`` again, as a near-duplicate,
    ``DUPLICATE_GAP`` scenes later."""
    from hitl.scenes import Scene, generate_scene

    rng = np.random.default_rng([STREAM_SEED, position])
    scenes = [generate_scene("train", i, STREAM_SEED + position) for i in range(BASE_SCENES)]
    items: list[tuple[str, bytes]] = []
    pairs: list[tuple[int, int]] = []
    placed: dict[int, int] = {}
    for i, scene in enumerate(scenes):
        placed[i] = len(items)
        items.append((f"{scene.name}.png", scene.png()))
        original = i - DUPLICATE_GAP
        if 0 <= original < DUPLICATE_PAIRS:
            copy = Scene(f"{scenes[original].name}-dup", near_duplicate(scenes[original].image, rng))
            pairs.append((placed[original], len(items)))
            items.append((f"{copy.name}.png", copy.png()))
    return Stream(items, pairs)


# --- reading the outcome ----------------------------------------------------------------------


def is_routed(entry: dict[str, str]) -> bool:
    return entry.get("route", "none") not in ("", "none")


def settled(entry: dict[str, str]) -> bool:
    """Detected (or refused), and when routed, its loop started or waiting for the budget."""
    from hitl.loops.dispatch import WAITING_STATUS

    if entry.get("state") not in ("detected", "rejected"):
        return False
    return not is_routed(entry) or entry.get("loop_status") in (*STARTED_STATUSES, WAITING_STATUS, "dead_lettered")


def lost(ids: list[str], entries: list[dict[str, str]]) -> list[str]:
    """Images without a final state, or routed without a loop status that says where they are."""
    from hitl.loops.dispatch import WAITING_STATUS

    known = (*STARTED_STATUSES, WAITING_STATUS)
    return [
        image_id
        for image_id, e in zip(ids, entries, strict=True)
        if e.get("state") not in ("detected", "rejected") or (is_routed(e) and e.get("loop_status") not in known)
    ]


def uncertain(record: Any) -> bool:
    """Whether the ``uncertainty`` rule would send this detection (nothing found, or a doubtful box)."""
    from hitl.domain.strategies import image_uncertainty, uncertainty_gate

    confidences = [label.confidence for label in record.labels]
    threshold = record.route.threshold
    if threshold is None:
        threshold = float(PARAMS["Minimum-Label-Detection-Confidence"])
    return not confidences or image_uncertainty(confidences) >= uncertainty_gate(threshold)


def duplicates(strategy: str, stream: Stream, ids: list[str], records: dict[str, Any]) -> dict[str, Any]:
    """What happened to the near-duplicates of originals that were sent for labelling."""

    def sent(image_id: str) -> bool:
        record = records.get(image_id)
        return record is not None and "low_confidence" in record.route.reasons

    originals_sent = [(ids[o], ids[d]) for o, d in stream.pairs if sent(ids[o])]
    out: dict[str, Any] = {
        "pairs": len(stream.pairs),
        "original_sent": len(originals_sent),
        "duplicate_sent_too": sum(1 for _, d in originals_sent if sent(d)),
        "duplicate_held_back": None,
    }
    if strategy in ("uncertainty", "diverse-uncertainty"):
        # Uncertain enough to send, yet not sent: the near-duplicate rule held it back.
        out["duplicate_held_back"] = sum(
            1 for _, d in originals_sent if not sent(d) and records.get(d) is not None and uncertain(records[d])
        )
    return out


def review_service_loops(flow_arn: str, names: set[str]) -> dict[str, str]:
    """Loop name → status, as the review service's A2I API lists them."""
    from hitl.loops import a2i

    found: dict[str, str] = {}
    for page in a2i.client().get_paginator("list_human_loops").paginate(FlowDefinitionArn=flow_arn):
        for summary in page["HumanLoopSummaries"]:
            if summary["HumanLoopName"] in names:
                found[summary["HumanLoopName"]] = summary["HumanLoopStatus"]
    return found


def dispatched_priorities(ids: list[str], entries: list[dict[str, str]],
                          records: dict[str, Any]) -> tuple[dict[str, float | None], bool]:  # fmt: skip
    """Started loop name → the priority its detection was routed with; and whether the strategy set
    any (audit samples carry one whatever the strategy)."""
    dispatched: dict[str, float | None] = {}
    by_strategy = False
    for image_id, entry in zip(ids, entries, strict=True):
        record = records.get(image_id)
        if entry.get("loop_status") not in STARTED_STATUSES or record is None:
            continue
        dispatched[entry["loop_name"]] = record.route.priority
        by_strategy = by_strategy or (record.route.priority is not None and "audit" not in record.route.reasons)
    return dispatched, by_strategy


def queue_order(tasks: list[dict[str, Any]], dispatched: dict[str, float | None]) -> dict[str, Any]:
    """The portal's offer of this strategy's loops: highest priority first, oldest first among equals,
    each with the priority the dispatcher passed (none counts as 0, as the service ranks it)."""
    offered = [t for t in tasks if t["name"] in dispatched]
    priorities = [float(t["priority"]) for t in offered]
    order = [(-p, str(t["createdAt"])) for p, t in zip(priorities, offered, strict=True)]
    return {
        "offered": len(offered),
        "priorities": [round(p, 4) for p in priorities],
        "highest_first": all(a >= b for a, b in pairwise(priorities)),
        "oldest_first_among_equals": order == sorted(order),
        "priorities_as_dispatched": all(
            abs(p - (dispatched[t["name"]] or 0.0)) < 1e-9 for p, t in zip(priorities, offered, strict=True)
        ),
    }


# --- the run ----------------------------------------------------------------------------------


class PipelineRun:
    def __init__(self, stack_file: dict[str, str], budget: int) -> None:
        from hitl.adapters.records import RecordStore
        from hitl.adapters.redis_index import ImageIndex
        from hitl.celery_app import create_app
        from hitl.loops.budget import ReviewBudget
        from hitl.params import ParameterStore
        from hitl.review.portal_client import PortalClient
        from hitl.settings import get_settings
        from hitl.submit import Client

        self.settings = get_settings()
        self.budget_per_hour = budget
        self.index = ImageIndex(self.settings)
        self.records = RecordStore(self.settings)
        self.budget = ReviewBudget(self.settings, self.index.redis)
        self.params = ParameterStore(self.settings)
        self.celery = create_app(self.settings)
        self.client = Client(self.settings, celery=self.celery)
        self.portal = PortalClient(stack_file.get("HITL_REVIEW_URL") or f"http://127.0.0.1:{self.settings.review_port}")
        passwords = json.loads(Path(stack_file["HITL_REVIEW_PASSWORD_FILE"]).read_text())
        self.portal.sign_in("alice", passwords["alice"])

    def set_params(self, values: dict[str, str]) -> None:
        for name, value in values.items():
            self.params.set(name, value)

    def wait_params_applied(self) -> None:
        """Every process re-reads the parameters within ``params_cache_seconds``."""
        time.sleep(self.settings.params_cache_seconds + 1)

    def train_v1(self) -> dict[str, Any]:
        """v1 from the seed scenes, scored on a fixed test split; it serves before this returns."""
        from hitl.model.registry import ModelRegistry
        from hitl.scenes import generate_scenes, upload_set

        bucket, started = self.settings.bucket, time.monotonic()
        seed = generate_scenes("train", SEED_SCENES, seed=0, source_prefix=f"s3://{bucket}/seed/")
        upload_set(seed, self.settings.s3_uri(self.settings.seed_manifest_key))
        test = generate_scenes("test", TEST_SCENES, seed=0, source_prefix=f"s3://{bucket}/test/")
        upload_set(test, self.settings.s3_uri(self.settings.test_manifest_key))
        registry = ModelRegistry(self.settings)
        self.celery.send_task("hitl.train.check", kwargs={"force": True, "reason": "label pipeline v1"}, queue="train")

        def done() -> bool:
            return registry.serving_version() is not None or any(
                registry.describe(v).status == "rejected" for v in registry.versions()
            )

        if not wait_until(done, 300, 1.0) or registry.serving_version() is None:
            raise RuntimeError(f"v1 did not come to serve (logs: {RUN_DIR / 'logs'})")
        meta = registry.describe(registry.serving_version() or "")
        say(f"{meta.version} serving, F1 {meta.f1:.3f} on {TEST_SCENES} test scenes")
        return {
            "version": meta.version,
            "f1": meta.f1,
            "thresholds": meta.thresholds,
            "seed_scenes": SEED_SCENES,
            "test_scenes": TEST_SCENES,
            "seconds_to_serving": round(time.monotonic() - started, 1),
        }

    def new_budget_hour(self) -> None:
        """The budget's hour starts again: started loops and waiting images out of its keys (one DEL).
        The waiting images keep their detection and their ``waiting_budget`` status."""
        self.index.redis.delete(self.budget.started_key, self.budget.waiting_key)

    def run_strategy(self, strategy: str, position: int) -> dict[str, Any]:
        started = time.monotonic()
        self.new_budget_hour()
        self.set_params({"Routing-Strategy": strategy})
        self.wait_params_applied()
        window = time.time()
        stream = make_stream(position)
        # In order, one at a time: the detector sees an original before its near-duplicate.
        submissions = [self.client.submit_bytes(png, name, source="bench") for name, png in stream.items]
        ids = [s.image_id or "" for s in submissions]
        # An image refused at submission has no id to wait for (its outcome is counted, and it counts as lost).
        all_settled = wait_until(lambda: all(settled(self.index.get(i)) for i in ids if i), SETTLE_SECONDS)
        entries = [self.index.get(i) for i in ids]
        records = {i: self.records.get(i) for i in ids}
        out = {
            "images_submitted": len(ids),
            "submissions": dict(Counter(s.outcome for s in submissions)),
            "settled_within_timeout": all_settled,
            **self.loop_figures(ids, entries, records, window),
            "near_duplicates": duplicates(strategy, stream, ids, records),
            "review_queue": self.review_queue(ids, entries, records),
            "seconds": round(time.monotonic() - started, 1),
        }
        say(
            f"{strategy}: routed {out['routed']} {out['routed_by_reason']}, started {out['loops_started']}, "
            f"waiting {out['loops_waiting_budget']}, lost {out['lost']}"
        )
        return out

    def loop_figures(self, ids: list[str], entries: list[dict[str, str]], records: dict[str, Any],
                     window: float) -> dict[str, Any]:  # fmt: skip
        from hitl.loops.dispatch import WAITING_STATUS

        started = {e["loop_name"] for e in entries if e.get("loop_status") in STARTED_STATUSES}
        waiting = [i for i, e in zip(ids, entries, strict=True) if e.get("loop_status") == WAITING_STATUS]
        budget_waiting = {w.image_id for w in self.budget.waiting()}
        missing = lost(ids, entries)
        in_service = review_service_loops(self.settings.flow_definition_arn, started)
        in_hour = self.budget.started_since(window)
        return {
            "detected": sum(1 for e in entries if e.get("state") == "detected"),
            "rejected": sum(1 for e in entries if e.get("state") == "rejected"),
            "routed": sum(1 for e in entries if is_routed(e)),
            "routed_by_reason": dict(Counter(e["route"] for e in entries if is_routed(e))),
            "loops_started": len(started),
            "loops_started_in_review_service": len(in_service),
            "loops_started_in_budget_hour": in_hour,
            "loops_waiting_budget": len(waiting),
            "waiting_records_say_why": sum(
                1 for i in waiting if records.get(i) is not None and records[i].loop_status == WAITING_STATUS
            ),
            "waiting_in_budget_queue": len(budget_waiting & set(waiting)),
            "dead_lettered": sum(1 for e in entries if e.get("loop_status") == "dead_lettered"),
            "lost": len(missing),
            "lost_images": missing[:10],
            "budget_per_hour": self.budget_per_hour,
            "budget_held": max(len(started), len(in_service), in_hour) <= self.budget_per_hour,
        }

    def review_queue(self, ids: list[str], entries: list[dict[str, str]], records: dict[str, Any]) -> dict[str, Any]:
        """The portal's queue for a reviewer: this strategy's started loops in the order offered."""
        dispatched, by_strategy = dispatched_priorities(ids, entries, records)
        return {**queue_order(self.portal.queue(), dispatched), "priority_set_by_strategy": by_strategy}


def run_pipeline(budget: int = BUDGET) -> dict[str, Any]:
    """Every strategy once through the real pipeline; the dict stored under ``pipeline_runs``."""
    from hitl.domain.strategies import STRATEGIES

    started = time.monotonic()
    with local_stack(stack_env()) as stack_file:
        run = PipelineRun(stack_file, budget)
        run.set_params({**PARAMS, "Max-Human-Reviews-Per-Hour": str(budget)})
        run.wait_params_applied()  # the trainer's gate too
        model = run.train_v1()
        strategies = {s: run.run_strategy(s, position) for position, s in enumerate(STRATEGIES)}
    return {
        "what": "each routing strategy once through the local stack's real processes on a short stream "
        "(bench/label_efficiency_pipeline.py); nobody answers the loops",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "stream": {
            "images_per_strategy": BASE_SCENES + DUPLICATE_PAIRS,
            "new_scenes": BASE_SCENES,
            "near_duplicate_pairs": DUPLICATE_PAIRS,
            "duplicate_arrives_after": DUPLICATE_GAP,
        },
        "params": {**PARAMS, "Max-Human-Reviews-Per-Hour": str(budget)},
        "budget_hour": "each strategy ran in a budget hour of its own: before it, the previous strategy's "
        "started loops and waiting images were taken out of the budget's keys",
        "model": model,
        "strategies": strategies,
        "no_image_lost": all(s["lost"] == 0 for s in strategies.values()),
        "budget_held": all(s["budget_held"] for s in strategies.values()),
        "review_queue_in_priority_order": all(
            s["review_queue"]["highest_first"] and s["review_queue"]["priorities_as_dispatched"]
            for s in strategies.values()
        ),
        "seconds": round(time.monotonic() - started, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg_at_end": list(os.getloadavg()),
        },
    }


def merge_into(path: Path, runs: dict[str, Any]) -> None:
    """``runs`` under ``pipeline_runs`` in the results file; everything else in it stays."""
    data = json.loads(path.read_text()) if path.exists() else {}
    data["pipeline_runs"] = runs
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=BUDGET, help="Max-Human-Reviews-Per-Hour")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    runs = run_pipeline(args.budget)
    merge_into(args.out, runs)
    brief = {k: v for k, v in runs.items() if not isinstance(v, dict | list)}
    print(json.dumps(brief, indent=1))
    print(f"wrote pipeline_runs into {args.out}")


if __name__ == "__main__":
    main()
