"""Label-efficiency benchmark: how many human reviews each routing strategy needs to reach a box F1.

Writes ``bench/results/label_efficiency.json`` and ``label_efficiency.png``. Run:
``python bench/bench_label_efficiency.py`` (``--seeds 1 --max-reviews 50`` for a smoke run).

The simulation, per box target and seed (the same stream and the same reviewer mistakes for every
strategy, so strategies differ only in what they send):

- a stream of scenes arrives in rounds (``ARRIVALS`` per round); about half the scenes come as a burst
  of 2–3 near-duplicates (the same scene with other brightness and sensor noise), as frames of one
  camera do;
- the model (the embedded box model, ``hitl.model.detection``, at a small image size) starts from 10
  seed labels; each arriving image is detected by the model of the moment and routed or not, as the
  detector does (``hitl.domain.strategies.is_candidate``); every round the strategy picks from the
  routed images waiting (at most ``MAX_WAITING``, oldest dropped first) up to the reviews left before
  the next retraining, as the review budget does; the rest wait and are re-ranked with the next round;
- a simulated reviewer answers with the true boxes, each box wrong with probability 5 % (left out,
  or shifted by 60 % of its size so it no longer matches);
- the model is retrained at fixed review counts (``CHECKPOINTS``) and scored on a fixed test split
  (F1 at each label's assumed threshold, the project's rule, ``hitl.model.evaluation``).

Predictions are what the pipeline's detector sees: candidates at or above each label's assumed
threshold. ``threshold`` routing uses Minimum-Label-Detection-Confidence's default (70);
``diverse-uncertainty`` uses the backbone's pooled feature maps (stride 16 and 32, 432 values) as
the image embedding.

The auto-accept check: for every (strategy, seed) run on the first target, the final model's
detections on 150 stream images that no strategy reached, every 3rd image as the audit sample takes
them, are audited (answers taken as right, as consolidated answers of several reviewers would be).
Each strategy audits its own slice of the stream, so the 20 runs are 20 separate audit draws even
where two strategies sent the same images and so trained the same model;
the auto-accept threshold (``hitl.domain.auto_accept``) is chosen from those audits, and the true
precision of what it accepts is measured on 500 further scenes (near-duplicates left out) against
their true boxes. The guarantee holds when the
true precision falls below the target in at most 1 of 20 runs.

After the simulation, the real pipeline runs once per strategy (``label_efficiency_pipeline.py``,
``pipeline_runs`` in the JSON; ``--no-pipeline`` skips it and keeps an earlier run's): the local stack
with v1 of the embedded model, a budget of 4 loops per hour and a 40-image stream per strategy with
near-duplicate pairs. It checks, from the image index, the budget and the review service, that every
image is detected and has a status, that at most the budget's loops start and the rest wait saying
why, and that the portal offers the started loops highest priority first. Run alone, it merges its
result into the JSON without running the simulation again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hitl.domain.auto_accept import auto_accept_threshold
from hitl.domain.records import PixelBox, Prediction
from hitl.domain.strategies import STRATEGIES, Candidate, Strategy, image_uncertainty, is_candidate, select
from hitl.model.backbone import Backbone, FeatureMaps, limit_math_threads
from hitl.model.detection import BoxExample, DetectionConfig, DetectionHead, train_detection
from hitl.model.evaluation import Truth, evaluate_predictions, scored_candidates
from hitl.scenes.detection import FACE_LABEL, generate_scene
from hitl.scenes.targets import FACES, Target, generate_target_scene

RESULTS = Path(__file__).resolve().parent / "results"
WIDTH, HEIGHT = 320, 240  # small scenes keep the whole benchmark within minutes on 2 cores
# A target of this benchmark's own: medium-sized bags among pullovers, shirts and sandals.
BAGS = Target(
    "bags", ("bag",), ("pullover", "shirt", "sandal"), (36, 90), (0.8, 1.25), (1, 3), (1, 3),
    "bags of 36–90 px among pullovers, shirts and sandals of the same size",
)  # fmt: skip
TARGET_NAMES = (FACES, BAGS.name)
SEED_LABELS = 10
ARRIVALS = 50
MAX_WAITING = 150
CHECKPOINTS = (25, 50, 75, 100, 150, 200)
REVIEWER_ERROR = 0.05
THRESHOLD = 70.0  # Minimum-Label-Detection-Confidence's default
F1_GOALS = (0.90, 0.93)
F1_AT = (50, 100, 200)
TEST_SCENES = 80
AUDIT_IMAGES = 150
# Audits are every AUDIT_INTERVAL-th image, as the pipeline's Human-Sampling-Interval takes them: a burst
# of near-duplicates (at most 3 images) then gives at most one audit, so the audits stay independent.
AUDIT_INTERVAL = 3
# Further scenes, without their near-duplicates: the true precision of what the auto-accept threshold
# accepts, on enough independent images that its own sampling error stays well under the margin.
TRUTH_IMAGES = 500
TRUTH_SPAN = 2 * TRUTH_IMAGES  # stream positions holding them: about 6 in 10 are not near-duplicates
# The stream each strategy may draw on; threshold routing sends few images once the model is sure of
# itself, so it needs the longest stream to find its reviews. Images are made only when they arrive.
STREAM_IMAGES = 1200
TARGET_PRECISION = 0.95
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}
CONFIG = DetectionConfig(
    long_side=WIDTH,
    positives_per_box=4,
    partial_negatives_per_box=4,
    random_negatives=24,
    hard_negatives=16,
    bootstrap_images=16,
    max_iter=150,
    flip=False,  # mirrored copies double the fitting time; the bench compares strategies, not augmentations
)

Box = tuple[float, float, float, float]
AUDIT_FIELDS = (
    "label", "status", "threshold", "audited", "accepted", "precision_lower_bound", "true_precision", "true_accepted",
)  # fmt: skip


@dataclass(frozen=True)
class Item:
    key: str
    image: np.ndarray
    boxes: list[tuple[str, Box]]


class CachedBackbone(Backbone):
    """The frozen backbone with its feature maps kept per image: every strategy, retraining and
    evaluation of one stream reuses them (the head is what changes, never the features)."""

    def __init__(self, inner: Backbone) -> None:  # no session of its own
        self._inner = inner
        self.build = inner.build
        self.embedding_size = inner.embedding_size
        self._cache: dict[tuple[bytes, int], FeatureMaps] = {}

    def maps(self, image: np.ndarray, long_side: int) -> FeatureMaps:
        key = (hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=16).digest(), long_side)
        found = self._cache.get(key)
        if found is None:
            found = self._inner.maps(image, long_side)
            self._cache[key] = found
        return found

    def crop_maps(self, crops: Sequence[np.ndarray], batch_size: int = 32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # The second stage's crops differ with every model's proposals: nothing to keep.
        return self._inner.crop_maps(crops, batch_size)

    def embed(self, images: Sequence[np.ndarray], size: int, batch_size: int = 32) -> np.ndarray:
        return self._inner.embed(images, size, batch_size)

    def embedding(self, image: np.ndarray) -> np.ndarray:
        maps = self.maps(image, CONFIG.long_side)
        return np.concatenate([maps.s32.mean(axis=(1, 2)), maps.s16.mean(axis=(1, 2))]).astype(np.float64)


@dataclass(frozen=True)
class Layout:
    """Where the parts of one (target, seed) stream lie: the images the strategies route, then one
    audit slice per strategy, then the scenes the true precision is measured on."""

    stream: int  # images the strategies may route
    audit_images: int  # audited images per run
    slots: int  # audit slices: one per strategy

    def audit(self, slot: int) -> range:
        """Every AUDIT_INTERVAL-th image of the slot's own slice."""
        start = self.stream + slot * AUDIT_INTERVAL * self.audit_images
        return range(start, start + AUDIT_INTERVAL * self.audit_images, AUDIT_INTERVAL)

    @property
    def truth_start(self) -> int:
        return self.stream + self.slots * AUDIT_INTERVAL * self.audit_images

    @property
    def size(self) -> int:
        return self.truth_start + TRUTH_SPAN


def scene(target: str, split: str, index: int, seed: int) -> Item:
    if target == FACES:
        s = generate_scene(split, index, seed, width=WIDTH, height=HEIGHT)  # type: ignore[arg-type]
    else:
        s = generate_target_scene(BAGS, split, index, seed, width=WIDTH, height=HEIGHT)  # type: ignore[arg-type]
    return Item(s.name, s.image, list(s.boxes))


class Stream:
    """Up to ``capacity`` stream images, made as they are first needed: scenes, about half of them
    followed by 1–2 near-duplicates (other brightness, sensor noise)."""

    def __init__(self, target: str, seed: int, capacity: int) -> None:
        self.target, self.seed, self.capacity = target, seed, capacity
        self._rng = np.random.default_rng([seed, 17])
        self._items: list[Item] = []
        self._scenes = 0

    def __len__(self) -> int:
        return self.capacity

    def __getitem__(self, i: int) -> Item:
        if not 0 <= i < self.capacity:
            raise IndexError(i)
        while len(self._items) <= i:
            base = scene(self.target, "train", self._scenes, 1000 + self.seed)
            self._scenes += 1
            self._items.append(base)
            for copy in range(int(self._rng.choice([0, 1, 2], p=[0.5, 0.3, 0.2]))):
                self._items.append(Item(f"{base.key}-dup{copy}", near_duplicate(base.image, self._rng), base.boxes))
        return self._items[i]


def near_duplicate(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The same scene with other brightness (×0.9–1.1) and sensor noise (σ 3), as a camera's next frame."""
    noise = rng.normal(0, 3, image.shape)
    pixels = image.astype(np.float32) * rng.uniform(0.9, 1.1) + noise
    return np.clip(pixels + 0.5, 0, 255).astype(np.uint8)


def reviewer_answer(item: Item, seed: int) -> list[tuple[str, Box]]:
    """The true boxes, each wrong with probability REVIEWER_ERROR: left out, or shifted off the object.
    The draw depends on the image and the seed only, so every strategy gets the same answer for it."""
    rng = np.random.default_rng([seed, int.from_bytes(hashlib.sha256(item.key.encode()).digest()[:4], "big")])
    out = []
    for label, (left, top, w, h) in item.boxes:
        u = rng.random()
        if u < REVIEWER_ERROR / 2:
            continue
        shift = 0.6 if u < REVIEWER_ERROR else 0.0
        out.append((label, (left + shift * w, top + shift * h, w, h)))
    return out


def truth(boxes: Sequence[tuple[str, Box]]) -> Truth:
    return [(label, PixelBox(left=b[0], top=b[1], width=b[2], height=b[3])) for label, b in boxes]


def detect(head: DetectionHead, bb: Backbone, image: np.ndarray, floor: dict[str, float] | None) -> list[Prediction]:
    """Predictions as the pipeline's detector gets them: at or above each label's assumed threshold
    (``floor``), or every candidate when ``floor`` is None."""
    out = []
    for label, prob, (left, top, w, h) in head.detect(bb, image):
        confidence = float(min(100.0, max(0.0, round(prob * 100.0, 3))))
        if floor is None or confidence >= floor.get(label, 50.0):
            box = PixelBox(left=left, top=top, width=w, height=h)
            out.append(Prediction(label=label, confidence=confidence, box=box))
    return out


@dataclass
class Model:
    head: DetectionHead
    thresholds: dict[str, float]
    f1: float
    test_predictions: list[list[Prediction]]


def fit(bb: Backbone, labelled: list[BoxExample], labels: tuple[str, ...], test: list[Item], seed: int) -> Model:
    head = train_detection(bb, labelled, labels, CONFIG, seed=seed)
    predictions = [detect(head, bb, item.image, None) for item in test]
    report = evaluate_predictions([truth(item.boxes) for item in test], predictions, labels)
    return Model(head, report.thresholds, report.f1, predictions)


def arrival(model: Model, bb: CachedBackbone, item: Item, i: int, strategy: Strategy) -> Candidate:
    preds = detect(model.head, bb, item.image, model.thresholds)
    top = max(preds, key=lambda p: p.confidence, default=None)
    return Candidate(
        key=str(i),
        arrival=float(i),
        top_confidence=top.confidence if top else None,
        threshold=THRESHOLD,
        uncertainty=image_uncertainty([p.confidence for p in preds]),
        embedding=bb.embedding(item.image) if strategy == "diverse-uncertainty" else None,
    )


def run(target: str, seed: int, strategy: Strategy, items: Stream, test: list[Item], bb: CachedBackbone,
        labels: tuple[str, ...], max_reviews: int, layout: Layout, slot: int) -> dict[str, Any]:  # fmt: skip
    started = time.perf_counter()
    checkpoints = [c for c in CHECKPOINTS if c <= max_reviews]
    # The seed labels are correct: they are the dataset the pipeline starts from.
    labelled = [BoxExample(items[i].image, items[i].boxes) for i in range(SEED_LABELS)]
    model = fit(bb, labelled, labels, test, seed)
    curve = [{"reviews": 0, "f1": round(model.f1, 4)}]
    position, reviews = SEED_LABELS, 0
    waiting: list[Candidate] = []
    recent: list[np.ndarray] = []
    end = layout.stream  # the rest is kept for the audit check
    for checkpoint in checkpoints:
        while reviews < checkpoint and position < end:
            # Each arrival is detected by the model serving then, and routed or not at that moment,
            # as the detector does; routed images wait for a review slot (the oldest drop out).
            for i in range(position, min(position + ARRIVALS, end)):
                candidate = arrival(model, bb, items[i], i, strategy)
                if is_candidate(candidate, strategy):
                    waiting.append(candidate)
            position = min(position + ARRIVALS, end)
            waiting = waiting[-MAX_WAITING:]
            chosen = select(
                waiting, strategy, checkpoint - reviews,
                recent=np.stack(recent[-50:]) if recent else None, salt=f"{target}/{seed}",
            )  # fmt: skip
            for c in chosen:
                i = int(c.key)
                labelled.append(BoxExample(items[i].image, reviewer_answer(items[i], seed)))
                if c.embedding is not None:
                    recent.append(c.embedding)
            picked = {c.key for c in chosen}
            waiting = [c for c in waiting if c.key not in picked]
            reviews += len(chosen)
        model = fit(bb, labelled, labels, test, seed)
        curve.append({"reviews": reviews, "f1": round(model.f1, 4)})
        if reviews < checkpoint:
            break  # the stream ran out before this strategy found enough to review
    audit = audit_check(model, bb, items, labels, layout.audit(slot), layout.truth_start)
    return {
        "target": target, "seed": seed, "strategy": strategy, "curve": curve, "stream_used": position,
        "seconds": round(time.perf_counter() - started, 1), "audit": audit,
    }  # fmt: skip


def audit_check(model: Model, bb: Backbone, items: Stream, labels: tuple[str, ...], audit_pool: range,
                truth_start: int) -> dict[str, Any]:  # fmt: skip
    """Audit the images of ``audit_pool`` (stream images no strategy reached), choose each label's
    auto-accept threshold from them, then measure the true precision of what it accepts on
    ``TRUTH_IMAGES`` further scenes from ``truth_start`` on (near-duplicates left out)."""
    truth_pool = [i for i in range(truth_start, len(items)) if "-dup" not in items[i].key][:TRUTH_IMAGES]
    audit_preds = [detect(model.head, bb, items[i].image, model.thresholds) for i in audit_pool]
    # Audit answers are taken as right (in the pipeline, consolidated from several reviewers): a 5 %
    # error rate in them would cap the measurable precision near 0.95, so no threshold could prove it.
    answers = [truth(items[i].boxes) for i in audit_pool]
    truth_preds = [detect(model.head, bb, items[i].image, model.thresholds) for i in truth_pool]
    truths = [truth(items[i].boxes) for i in truth_pool]
    out: dict[str, Any] = {}
    for label in labels:
        chosen = auto_accept_threshold(label, scored_candidates(answers, audit_preds, [label]), TARGET_PRECISION)
        entry: dict[str, Any] = chosen.as_dict()
        if chosen.threshold is not None:
            accepted = [ok for conf, ok in scored_candidates(truths, truth_preds, [label]) if conf >= chosen.threshold]
            entry["true_precision"] = round(float(np.mean(accepted)), 4) if accepted else None
            entry["true_accepted"] = len(accepted)
        out[label] = entry
    return out


def job(target: str, seed: int, strategies: Sequence[str], max_reviews: int, test_scenes: int,
        audit_images: int, stream_images: int) -> list[dict[str, Any]]:  # fmt: skip
    """Every strategy on one (target, seed) stream, in one process sharing its cached feature maps."""
    # Imported here, not at the top, so that --help does not load scikit-learn.
    from sklearn.exceptions import ConvergenceWarning

    # lbfgs may stop at max_iter on the larger sets: the same for every strategy, and said once here.
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    # One core each, for the backbone and for numpy's BLAS (whose idle threads would spin otherwise).
    limit_math_threads(1)
    bb = CachedBackbone(Backbone(threads=1))
    test = [scene(target, "test", i, 0) for i in range(test_scenes)]
    labels = (FACE_LABEL,) if target == FACES else BAGS.labels
    layout = Layout(stream_images, audit_images, len(strategies))
    items = Stream(target, seed, layout.size)
    out = []
    for slot, strategy in enumerate(strategies):
        row = run(target, seed, strategy, items, test, bb, labels, max_reviews, layout, slot)  # type: ignore[arg-type]
        print(json.dumps({k: row[k] for k in ("target", "seed", "strategy", "seconds")} | {"curve": row["curve"]}),
              flush=True)  # fmt: skip
        out.append(row)
    return out


def interval(values: Sequence[float], upper: float | None = None) -> dict[str, Any]:
    """Mean with a 95 % t-interval over seeds (clipped to [0, ``upper``])."""
    if not values:
        return {"mean": None, "ci95_low": None, "ci95_high": None, "n": 0}
    mean = float(np.mean(values))
    if len(values) < 2:
        return {"mean": round(mean, 4), "ci95_low": None, "ci95_high": None, "n": len(values)}
    half = T975.get(len(values) - 1, 1.96) * float(np.std(values, ddof=1)) / math.sqrt(len(values))
    high = mean + half if upper is None else min(upper, mean + half)
    return {"mean": round(mean, 4), "ci95_low": round(max(0.0, mean - half), 4), "ci95_high": round(high, 4),
            "n": len(values)}  # fmt: skip


def f1_at(curve: list[dict[str, Any]], reviews: int) -> float | None:
    """F1 of the model trained at that review count (None when the run never got there)."""
    found = [p["f1"] for p in curve if p["reviews"] == reviews]
    return found[0] if found else None


def reviews_to(curve: list[dict[str, Any]], goal: float) -> int | None:
    return next((p["reviews"] for p in curve if p["f1"] >= goal), None)


def summarise_strategy(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for goal in F1_GOALS:
        hits = [reviews_to(r["curve"], goal) for r in rows]
        reached = [h for h in hits if h is not None]
        key = f"reviews_to_f1_{round(goal * 100):03d}"
        # The mean only when every seed got there: otherwise the figure would flatter the strategy.
        out[key] = interval(reached) if len(reached) == len(rows) else {"mean": None, "reached_seeds": len(reached)}
        out[key]["per_seed"] = hits
    for n in F1_AT:
        values = [f1_at(r["curve"], n) for r in rows]
        out[f"f1_at_{n}"] = interval([v for v in values if v is not None], upper=1.0)
    # The band at each retraining point, over the seeds that got there (a run whose stream ran out
    # earlier stops contributing; its last point still counts for the reviews-to-F1 figures).
    points = [0, *CHECKPOINTS]
    out["curve"] = [
        {"reviews": n, **interval(values, upper=1.0)}
        for n in points
        if (values := [v for r in rows if (v := f1_at(r["curve"], n)) is not None])
    ]
    out["stream_ran_out"] = sum(1 for r in rows if r["curve"][-1]["reviews"] not in CHECKPOINTS)
    out["reviews_reached"] = [r["curve"][-1]["reviews"] for r in rows]
    out["max_f1"] = round(max(p["f1"] for r in rows for p in r["curve"]), 4)
    out["seconds"] = round(sum(r["seconds"] for r in rows), 1)
    return out


def best_of(per_strategy: dict[str, dict[str, Any]]) -> str:
    """Fewest mean reviews to F1 0.93; a strategy that does not get there on every seed ranks after
    those that do, by its mean F1 at the largest review count."""

    def rank(name: str) -> tuple[float, float]:
        entry = per_strategy[name]
        reviews = entry["reviews_to_f1_093"]["mean"]
        last = entry["curve"][-1]["mean"] or 0.0
        return (reviews if reviews is not None else math.inf, -last)

    return min(per_strategy, key=rank)


def ratios(per: dict[str, dict[str, Any]], best: str) -> dict[str, float | None]:
    """The best strategy's reviews to F1 0.93 as a share of random's and threshold's (the issue's
    goals: ≤ 0.6 and ≤ 0.8); null when one of them does not get there on every seed."""

    def mean(name: str) -> float | None:
        value = per.get(name, {}).get("reviews_to_f1_093", {}).get("mean")
        return float(value) if value is not None else None

    b, rnd, thr = mean(best), mean("random"), mean("threshold")
    return {
        "best_vs_random": round(b / rnd, 3) if b is not None and rnd else None,
        "best_vs_threshold": round(b / thr, 3) if b is not None and thr else None,
    }


def summary(rows: list[dict[str, Any]], args: Any, seconds: float) -> dict[str, Any]:
    targets: dict[str, Any] = {}
    for target in args.targets:
        per = {s: summarise_strategy([r for r in rows if r["target"] == target and r["strategy"] == s])
               for s in args.strategies if any(r["target"] == target and r["strategy"] == s for r in rows)}  # fmt: skip
        if per:
            best = best_of(per)
            targets[target] = {"strategies": per, "best_strategy": best, **ratios(per, best)}

    def across(strategy: str) -> float | None:
        """Mean reviews to F1 0.93 on the worse target (null unless every target and seed got there)."""
        values = [t["strategies"].get(strategy, {}).get("reviews_to_f1_093", {}).get("mean") for t in targets.values()]
        return max(values) if values and all(v is not None for v in values) else None  # type: ignore[type-var]

    def last_f1(strategy: str) -> float:
        values = [t["strategies"][strategy]["curve"][-1]["mean"] or 0.0 for t in targets.values()]
        return float(np.mean(values)) if values else 0.0

    def rank(strategy: str) -> tuple[float, float]:
        reviews = across(strategy)
        return (reviews if reviews is not None else math.inf, -last_f1(strategy))

    best = min(args.strategies, key=rank)
    # Each run of the first target with each label's audit: the check's runs.
    audited = [(r, e) for r in rows if r["target"] == args.targets[0] for e in r["audit"].values()]
    audits = [e for _, e in audited]
    with_threshold = [e for e in audits if e["threshold"] is not None]
    below = [e for e in with_threshold if (e.get("true_precision") or 1.0) < TARGET_PRECISION]
    bounds = [e["precision_lower_bound"] for e in with_threshold]
    random_, threshold_, best_ = across("random"), across("threshold"), across(best)
    return {
        "reviews_to_f1_093_random": random_,
        "reviews_to_f1_093_threshold": threshold_,
        "reviews_to_f1_093_best": best_,
        "best_strategy": best,
        "best_vs_random": round(best_ / random_, 3) if best_ and random_ else None,
        "best_vs_threshold": round(best_ / threshold_, 3) if best_ and threshold_ else None,
        "auto_accept_precision_lower_bound": round(min(bounds), 4) if bounds else None,
        "auto_accept": {
            "target_precision": TARGET_PRECISION,
            "runs": len(audits),
            "runs_with_threshold": len(with_threshold),
            "runs_true_precision_below_target": len(below),
            "runs_too_few_audits": sum(1 for e in audits if e["status"] == "too_few_audits"),
            "guarantee_holds": len(audits) >= 20 and len(below) <= 1,
            "lower_bound_scope": "smallest Clopper-Pearson lower bound over the runs that chose a threshold",
            "per_run": [
                {"seed": r["seed"], "strategy": r["strategy"], "reviews": r["curve"][-1]["reviews"]}
                | {k: e.get(k) for k in AUDIT_FIELDS}
                for r, e in audited
            ],
        },
        "top_level_scope": "mean reviews over seeds on the worse of the targets; null when a strategy did not "
        "reach F1 0.93 on every seed of every target within max_reviews",
        "best_strategy_rule": "fewest mean reviews to F1 0.93 on the worse target; among strategies that do not "
        "get there, the highest mean F1 at the last checkpoint",
        "seeds": args.seeds,
        "targets": targets,
        "settings": {
            "image_size": [WIDTH, HEIGHT],
            "seed_labels": SEED_LABELS,
            "arrivals_per_round": ARRIVALS,
            "max_waiting": MAX_WAITING,
            "checkpoints": [c for c in CHECKPOINTS if c <= args.max_reviews],
            "reviewer_error": REVIEWER_ERROR,
            "threshold": THRESHOLD,
            "test_scenes": args.test_scenes,
            "audit_images": args.audit_images,
            "audit_interval": AUDIT_INTERVAL,
            "truth_images": TRUTH_IMAGES,
            "stream_images": args.stream,
            "detection_config": asdict(CONFIG),
            "bags_target": BAGS.description,
        },
        "seconds": round(seconds, 1),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg": os.getloadavg()},
        "runs": rows,
    }


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = result["targets"]
    fig, axes = plt.subplots(1, max(1, len(targets)), figsize=(6.2 * max(1, len(targets)), 4.6), squeeze=False)
    for ax, (name, entry) in zip(axes[0], targets.items(), strict=False):
        for strategy, data in entry["strategies"].items():
            xs = [p["reviews"] for p in data["curve"]]
            ys = [p["mean"] for p in data["curve"]]
            line = ax.plot(xs, ys, "o-", ms=3, label=strategy)[0]
            lo = [p["ci95_low"] if p["ci95_low"] is not None else p["mean"] for p in data["curve"]]
            hi = [p["ci95_high"] if p["ci95_high"] is not None else p["mean"] for p in data["curve"]]
            ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.15)
        for goal in F1_GOALS:
            ax.axhline(goal, color="grey", lw=0.6, ls=":")
        ax.set_ylim(0.5, 1.0)
        ax.set_xlabel("human reviews (after 10 seed labels)")
        ax.set_ylabel("box F1 on the test split")
        ax.set_title(f"{name}: mean of {result['seeds']} seeds, 95 % bands; best {entry['best_strategy']}")
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--max-reviews", type=int, default=max(CHECKPOINTS))
    parser.add_argument("--test-scenes", type=int, default=TEST_SCENES)
    parser.add_argument("--targets", nargs="*", default=list(TARGET_NAMES), choices=TARGET_NAMES)
    parser.add_argument("--strategies", nargs="*", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--audit-images", type=int, default=AUDIT_IMAGES)
    parser.add_argument("--stream", type=int, default=STREAM_IMAGES, help="stream images per target and seed")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--no-pipeline", action="store_true",
                        help="skip the real-pipeline run (an earlier run's pipeline_runs is kept)")  # fmt: skip
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    jobs = [(t, s) for s in range(args.seeds) for t in args.targets]
    rows: list[dict[str, Any]] = []
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        futures = [
            pool.submit(job, t, s, args.strategies, args.max_reviews, args.test_scenes, args.audit_images, args.stream)
            for t, s in jobs
        ]
        for future in futures:
            rows += future.result()
    result = summary(rows, args, time.perf_counter() - started)
    path = args.out / "label_efficiency.json"
    if args.no_pipeline and path.exists() and "pipeline_runs" in (earlier := json.loads(path.read_text())):
        result["pipeline_runs"] = earlier["pipeline_runs"]  # measured separately, with its own date
    path.write_text(json.dumps(result, indent=1) + "\n")
    plot(result, args.out / "label_efficiency.png")
    brief = {k: v for k, v in result.items() if not isinstance(v, dict | list)}
    print(json.dumps(brief, indent=1))
    print(f"wrote {path} and {args.out / 'label_efficiency.png'}")
    if not args.no_pipeline:
        from label_efficiency_pipeline import merge_into, run_pipeline

        merge_into(path, run_pipeline())
        print(f"wrote pipeline_runs into {path}")


if __name__ == "__main__":
    main()
