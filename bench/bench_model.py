"""Benchmark of the embedded custom-labels model on several box targets and two image-label tasks:
accuracy at 10/25/50 training images, confidence calibration, training time and inference time.

Writes ``bench/results/model.json`` and ``bench/results/model.png``. Run: ``python bench/bench_model.py``
(``--seeds 1 --test-scenes 30`` for a smaller run). Every target uses the same
model configuration. Figures per target and training-set size (mean over seeds):

- ``f1`` / ``precision`` / ``recall``: at each label's assumed threshold, chosen as Rekognition does
  (best F1 on the test set);
- ``ap50``: average precision at IoU 0.5;
- ``f1_val_threshold``: F1 on the test set at a threshold chosen on separate validation scenes
  (train-split sources, another seed), so no test label influenced it;
- ``ece``: expected calibration error (10 bins) of every returned candidate on the test set
  (a candidate is correct when it matches a true box at IoU ≥ 0.5); ``ece_uncalibrated`` is the same
  for the raw head probabilities, i.e. before the calibration map;
- ``train_seconds_200``: training on 200 face scenes, calibration map included;
- ``ms_per_image``: median wall time of ``predict`` on a 640×480 test scene (backbone + heads + NMS)
  for the timing run's face model; ``ms_per_image_worst_target``: the same for the slowest target's models
  (small objects raise the working resolution, look-alikes send more crops to the second stage);
- ``image_labels``: macro-F1 and ECE at 10 training images per class on Fashion-MNIST and on
  scikit-learn's digits; ``image_labels_macro_f1_at_10`` is the worse of the two.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hitl.domain.records import Prediction
from hitl.model.backbone import shared_backbone
from hitl.model.calibration import Calibration, expected_calibration_error, reliability
from hitl.model.evaluation import evaluate_predictions, scored_candidates
from hitl.model.predictor import LocalPredictor
from hitl.model.training import Example, TrainConfig, evaluate_artifact, train, truth_of
from hitl.scenes import digits_set, fashion_mnist_set
from hitl.scenes.targets import FACES, TARGETS, target_examples

RESULTS = Path(__file__).resolve().parent / "results"
BOX_TARGETS = (FACES, *TARGETS)
SIZES = (10, 25, 50)
TEST_SCENES = 120
VALIDATION_SCENES = 60
VALIDATION_SEED = 100
TIMING_IMAGES = 200
IMAGE_LABELS_PER_CLASS = 10
# Image-label tasks (≥ 5 classes each): Fashion-MNIST's 10 products and scikit-learn's 10 digits.
IMAGE_LABEL_SETS = {"fashion-mnist": fashion_mnist_set, "digits": digits_set}


def _predict_all(predictor: LocalPredictor, examples: Sequence[Example]) -> tuple[list[list[Prediction]], float]:
    """Every candidate per image, and the median milliseconds per image."""
    out, times = [], []
    for image, _ in examples:
        started = time.perf_counter()
        out.append(predictor.predict(image, min_confidence=0.0))
        times.append((time.perf_counter() - started) * 1000)
    return out, statistics.median(times)


def _uncalibrated(calibration: Calibration, confidence: np.ndarray) -> np.ndarray:
    """The raw head probability behind calibrated confidences (0–1): the map inverted."""
    q = np.clip(confidence, 1e-6, 1 - 1e-6)
    raw_logit = (np.log(q) - np.log1p(-q) - calibration.intercept) / calibration.slope
    out: np.ndarray = 1.0 / (1.0 + np.exp(-raw_logit))
    return out


def measure(
    artifact: Any, test: Sequence[Example], validation: Sequence[Example]
) -> tuple[dict[str, Any], list[dict[str, float]]]:
    predictor = LocalPredictor(artifact, "bench")
    test_truth = [truth_of(line) for _, line in test]
    test_preds, ms = _predict_all(predictor, test)
    report = evaluate_predictions(test_truth, test_preds, artifact.labels)
    val_preds, _ = _predict_all(predictor, validation)
    chosen = evaluate_predictions([truth_of(line) for _, line in validation], val_preds, artifact.labels).thresholds
    held_out = evaluate_predictions(test_truth, test_preds, artifact.labels, chosen)
    scored = scored_candidates(test_truth, test_preds, artifact.labels)
    conf = np.asarray([c / 100.0 for c, _ in scored])
    hit = np.asarray([t for _, t in scored], bool)
    row = {
        "f1": report.f1,
        "precision": report.precision,
        "recall": report.recall,
        "ap50": report.ap50,
        "f1_val_threshold": held_out.f1,
        "ece": expected_calibration_error(conf, hit),
        "ece_uncalibrated": expected_calibration_error(_uncalibrated(artifact.calibration, conf), hit),
        "assumed_thresholds": report.thresholds,
        "val_thresholds": chosen,
        "calibration": artifact.calibration.to_dict(),
        "train_seconds": artifact.info["train_seconds"],
        "ms_per_image": ms,
    }
    return row, reliability(conf, hit)


def _mean_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("f1", "precision", "recall", "ap50", "f1_val_threshold", "ece", "ece_uncalibrated", "train_seconds"):
        values = [r[key] for r in rows]
        out[key] = round(float(np.mean(values)), 4)
        out[f"{key}_per_seed"] = [round(float(v), 4) for v in values]
    out["ms_per_image"] = round(float(np.median([r["ms_per_image"] for r in rows])), 1)
    out["assumed_thresholds_seed0"] = {k: round(v, 2) for k, v in rows[0]["assumed_thresholds"].items()}
    out["val_thresholds_seed0"] = {k: round(v, 2) for k, v in rows[0]["val_thresholds"].items()}
    out["calibration_seed0"] = rows[0]["calibration"]
    return out


def box_target(name: str, sizes: Sequence[int], seeds: Sequence[int], n_test: int, n_val: int) -> dict[str, Any]:
    test = target_examples(name, "test", n_test)
    validation = target_examples(name, "train", n_val, seed=VALIDATION_SEED)
    per_size: dict[int, list[dict[str, Any]]] = {n: [] for n in sizes}
    diagram: list[dict[str, float]] = []
    for seed in seeds:
        pool = target_examples(name, "train", max(sizes), seed=seed)
        for n in sizes:
            artifact = train(pool[:n], TrainConfig(seed=seed))
            row, bins = measure(artifact, test, validation)
            per_size[n].append(row)
            if seed == seeds[0] and n == max(sizes):  # the reliability diagram's run
                diagram = bins
            figures = {k: round(v, 4) for k, v in row.items() if isinstance(v, float)}
            print(json.dumps({"target": name, "images": n, "seed": seed, **figures}), flush=True)
    labels = sorted({lab for _, line in test for lab, _ in truth_of(line)})
    return {
        "target": name,
        "description": "LFW faces among non-face patches" if name == FACES else TARGETS[name].description,
        "labels": labels,
        "test_scenes": n_test,
        "test_boxes": sum(len(truth_of(line)) for _, line in test),
        "seeds": list(seeds),
        "by_images": [{"images": n, **_mean_rows(per_size[n])} for n in sizes],
        "reliability_at_max_images": diagram,
    }


def timing(n_train: int, n_test: int) -> dict[str, Any]:
    pool = target_examples(FACES, "train", n_train)
    started = time.perf_counter()
    artifact = train(pool, TrainConfig())
    seconds = time.perf_counter() - started
    _, ms = _predict_all(LocalPredictor(artifact, "bench"), target_examples(FACES, "test", n_test))
    return {"train_images": n_train, "train_seconds": round(seconds, 2), "ms_per_image": round(ms, 1)}


def image_labels(name: str, per_class: int, seeds: Sequence[int]) -> dict[str, Any]:
    make = IMAGE_LABEL_SETS[name]
    test = make("test").examples()
    macro, ece = [], []
    for seed in seeds:
        artifact = train(make("train", per_class, seed).examples(), TrainConfig(seed=seed))
        report = evaluate_artifact(artifact, test)
        macro.append(report.top1_macro_f1 or 0.0)
        preds = [LocalPredictor(artifact, "bench").predict(image, min_confidence=0.0) for image, _ in test]
        scored = scored_candidates([truth_of(line) for _, line in test], preds, artifact.labels)
        ece.append(expected_calibration_error([c / 100 for c, _ in scored], [t for _, t in scored]))
        print(json.dumps({"set": name, "per_class": per_class, "seed": seed, "macro_f1": macro[-1]}))
    return {
        "set": name,
        "classes": len(artifact.labels),
        "per_class": per_class,
        "test_images": len(test),
        "macro_f1": round(float(np.mean(macro)), 4),
        "macro_f1_per_seed": [round(x, 4) for x in macro],
        "ece": round(float(np.mean(ece)), 4),
    }


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (curve, diagram) = plt.subplots(1, 2, figsize=(12, 4.6))
    if not result["targets"]:
        return
    for target in result["targets"]:
        rows = target["by_images"]
        curve.plot([r["images"] for r in rows], [r["f1"] for r in rows], "o-", label=target["target"])
        bins = target["reliability_at_max_images"]
        diagram.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o-", label=target["target"])
    curve.axhline(0.85, color="grey", lw=0.6, ls=":")
    curve.axhline(0.93, color="grey", lw=0.6, ls=":")
    curve.set_xscale("log")
    sizes = [r["images"] for r in result["targets"][0]["by_images"]]
    curve.set_xticks(sizes, [str(s) for s in sizes])
    curve.set_xticks([], minor=True)  # the log axis's own minor labels crowd the sizes
    curve.set_ylim(0.0, 1.0)
    curve.set_xlabel("training images")
    curve.set_ylabel("box F1 (assumed threshold)")
    curve.set_title(
        f"Box F1 per target ({result['test_scenes']} test scenes each); "
        f"train 200: {result['train_seconds_200']} s, {result['ms_per_image']} ms/image"
    )
    curve.legend(loc="lower right", fontsize=8)
    diagram.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    diagram.set_xlim(0, 1)
    diagram.set_ylim(0, 1)
    diagram.set_xlabel("calibrated confidence (bin mean)")
    diagram.set_ylabel("share of candidates correct")
    diagram.set_title(f"Reliability at {max(sizes)} training images (max ECE, any size: {result['max_ece']})")
    diagram.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summary(
    targets: list[dict[str, Any]], cost: dict[str, Any] | None, labels: list[dict[str, Any]], args: Any
) -> dict[str, Any]:
    """The results file; written after every stage, so a cut-short run still leaves what it measured
    (a figure not measured yet is null)."""

    def worst(n: int) -> float | None:
        rows = [r["f1"] for t in targets for r in t["by_images"] if r["images"] == n]
        return min(rows) if rows else None

    return {
        "worst_box_f1_at_10": worst(10),
        "worst_box_f1_at_25": worst(25),
        "worst_box_f1_at_50": worst(50),
        "max_ece": max((r["ece"] for t in targets for r in t["by_images"]), default=None),
        "train_seconds_200": cost["train_seconds"] if cost and cost["train_images"] == 200 else None,
        "ms_per_image": cost["ms_per_image"] if cost else None,
        "ms_per_image_worst_target": max((r["ms_per_image"] for t in targets for r in t["by_images"]), default=None),
        "image_labels_macro_f1_at_10": min((t["macro_f1"] for t in labels), default=None),
        "box_targets": len(targets),
        "seeds": args.seeds,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg": os.getloadavg()},
        "test_scenes": args.test_scenes,
        "validation_scenes": args.val_scenes,
        "threshold_rule": "assumed threshold = best F1 on the test set (Rekognition Custom Labels' rule); "
        "f1_val_threshold applies a threshold chosen on validation scenes instead",
        "max_ece_scope": "largest mean ECE over every target and training-set size",
        "image_labels_scope": "macro-F1 of the worse image-label task (mean of the seeds)",
        "ms_per_image_scope": "ms_per_image: median predict time of the timing run (a model trained on 200 face "
        "scenes); ms_per_image_worst_target: the slowest target's median over its test scenes (every scene is "
        "640×480; a target's trained model sets the working resolution and how many crops the second stage sees)",
        "targets": targets,
        "timing": cost,
        "image_labels": labels,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per target and size")
    parser.add_argument("--test-scenes", type=int, default=TEST_SCENES)
    parser.add_argument("--val-scenes", type=int, default=VALIDATION_SCENES)
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES), help="training-set sizes per target")
    parser.add_argument("--timing-images", type=int, default=TIMING_IMAGES, help="0: skip the timing run")
    parser.add_argument("--targets", nargs="*", default=list(BOX_TARGETS), choices=BOX_TARGETS)
    parser.add_argument("--no-image-labels", action="store_true", help="skip the image-label task")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    seeds = tuple(range(args.seeds))
    args.out.mkdir(parents=True, exist_ok=True)
    shared_backbone()  # load once before timing anything
    targets: list[dict[str, Any]] = []
    cost: dict[str, Any] | None = None
    labels: list[dict[str, Any]] = []

    def write() -> None:
        result = summary(targets, cost, labels, args)
        (args.out / "model.json").write_text(json.dumps(result, indent=1) + "\n")
        plot(result, args.out / "model.png")

    if not args.no_image_labels:
        for name in IMAGE_LABEL_SETS:
            labels.append(image_labels(name, IMAGE_LABELS_PER_CLASS, seeds))
            write()
    for name in args.targets:
        targets.append(box_target(name, tuple(args.sizes), seeds, args.test_scenes, args.val_scenes))
        write()
    if args.timing_images:
        cost = timing(args.timing_images, 50)
        write()
    print(f"wrote {args.out / 'model.json'} and {args.out / 'model.png'}")


if __name__ == "__main__":
    main()
