"""Benchmark of the embedded custom-labels model: the learning curve on the fixed scene test split,
training time, inference time, and image-label macro-F1 on LFW face/non-face and Fashion-MNIST.

Writes ``bench/results/model.json`` and ``bench/results/model.png``. Run: ``python bench/bench_model.py``
(``--quick`` for a smaller run). Figures:

- ``f1``: F1 at the model's own assumed threshold, chosen as Rekognition does (best F1 on the test set);
- ``f1_val_threshold``: F1 on the test set at a threshold chosen on separate validation scenes
  (train-split sources, another seed), so no test label influenced it;
- ``ms_per_image``: median wall time of ``predict`` on a 640×480 test scene (backbone + heads + NMS).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hitl.domain.records import Prediction
from hitl.model.backbone import shared_backbone
from hitl.model.evaluation import evaluate_predictions
from hitl.model.predictor import LocalPredictor
from hitl.model.training import Example, evaluate_artifact, train, truth_of
from hitl.scenes import face_nonface_set, fashion_mnist_set, scene_examples

RESULTS = Path(__file__).resolve().parent / "results"
CURVE = (10, 25, 50, 100, 200)
TEST_SCENES = 200
VALIDATION_SCENES = 100
VALIDATION_SEED = 1
FACE_PER_CLASS = (5, 10, 25)
FASHION_PER_CLASS = (5, 10, 100)


def _predict_all(predictor: LocalPredictor, examples: Sequence[Example]) -> tuple[list[list[Prediction]], float]:
    """Every candidate per image, and the median milliseconds per image."""
    out, times = [], []
    for image, _ in examples:
        started = time.perf_counter()
        out.append(predictor.predict(image, min_confidence=0.0))
        times.append((time.perf_counter() - started) * 1000)
    return out, statistics.median(times)


def detection_curve(sizes: tuple[int, ...], n_test: int, n_val: int) -> list[dict[str, Any]]:
    test = scene_examples("test", n_test)
    validation = scene_examples("train", n_val, seed=VALIDATION_SEED)
    pool = scene_examples("train", max(sizes))
    test_truth = [truth_of(line) for _, line in test]
    val_truth = [truth_of(line) for _, line in validation]
    rows = []
    for n in sizes:
        started = time.perf_counter()
        artifact = train(pool[:n])
        seconds = time.perf_counter() - started
        predictor = LocalPredictor(artifact, f"bench-{n}")
        test_preds, ms = _predict_all(predictor, test)
        report = evaluate_predictions(test_truth, test_preds, artifact.labels)
        val_preds, _ = _predict_all(predictor, validation)
        calibrated = evaluate_predictions(val_truth, val_preds, artifact.labels)
        held_out = evaluate_predictions(test_truth, test_preds, artifact.labels, calibrated.thresholds)
        face = report.labels["face"]
        row = {
            "images": n,
            "f1": round(report.f1, 4),
            "precision": round(report.precision, 4),
            "recall": round(report.recall, 4),
            "ap50": round(report.ap50, 4),
            "assumed_threshold": round(face.threshold, 2),
            "f1_val_threshold": round(held_out.f1, 4),
            "val_threshold": round(calibrated.thresholds["face"], 2),
            "train_seconds": round(seconds, 2),
            "ms_per_image": round(ms, 1),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def image_labels(name: str, per_class: tuple[int, ...], make: Any, seeds: tuple[int, ...]) -> list[dict[str, Any]]:
    test = make("test").examples()
    rows = []
    for k in per_class:
        top1, thresholded = [], []
        for seed in seeds:
            artifact = train(make("train", k, seed).examples())
            report = evaluate_artifact(artifact, test)
            top1.append(report.top1_macro_f1 or 0.0)
            thresholded.append(report.macro_f1)
        row = {
            "set": name,
            "per_class": k,
            "classes": len(artifact.labels),
            "test_images": len(test),
            "macro_f1": round(float(np.mean(top1)), 4),
            "macro_f1_per_seed": [round(x, 4) for x in top1],
            "macro_f1_assumed_thresholds": round(float(np.mean(thresholded)), 4),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = result["detection"]
    n = [r["images"] for r in curve]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.plot(n, [r["f1"] for r in curve], "o-", label="F1 (assumed threshold, test)")
    left.plot(n, [r["f1_val_threshold"] for r in curve], "s--", label="F1 (threshold from validation)")
    left.plot(n, [r["ap50"] for r in curve], "^-", label="AP50")
    left.axhline(0.9, color="grey", lw=0.6, ls=":")
    left.axhline(0.8, color="grey", lw=0.6, ls=":")
    left.set_xscale("log")
    left.set_xticks(n, [str(x) for x in n])
    left.set_ylim(0.5, 1.0)
    left.set_xlabel("training images")
    left.set_title(f"Boxes: learning curve ({result['test_scenes']} test scenes)")
    left.legend(loc="lower right")
    right.plot(n, [r["train_seconds"] for r in curve], "o-", color="tab:red", label="train seconds")
    right.set_xscale("log")
    right.set_xticks(n, [str(x) for x in n])
    right.set_xlabel("training images")
    right.set_ylabel("train seconds", color="tab:red")
    twin = right.twinx()
    twin.plot(n, [r["ms_per_image"] for r in curve], "s--", color="tab:blue", label="ms / 640×480 image")
    twin.set_ylabel("ms per 640×480 image", color="tab:blue")
    twin.set_ylim(0, max(100, max(r["ms_per_image"] for r in curve) * 1.2))
    right.set_title("Cost on 2 CPU cores")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller curve and test split (smoke run)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    sizes = (10, 25) if args.quick else CURVE
    n_test = 40 if args.quick else TEST_SCENES
    n_val = 30 if args.quick else VALIDATION_SCENES
    seeds = (0,) if args.quick else (0, 1, 2)
    shared_backbone()  # load once before timing anything
    result: dict[str, Any] = {
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
        "test_scenes": n_test,
        "validation_scenes": n_val,
        "threshold_rule": "assumed threshold = best F1 on the test set (Rekognition Custom Labels' rule); "
        "f1_val_threshold applies a threshold chosen on validation scenes instead",
        "detection": detection_curve(sizes, n_test, n_val),
        "image_labels": image_labels(
            "lfw-face-nonface", FACE_PER_CLASS[:2] if args.quick else FACE_PER_CLASS, face_nonface_set, seeds
        )
        + image_labels(
            "fashion-mnist", FASHION_PER_CLASS[:2] if args.quick else FASHION_PER_CLASS, fashion_mnist_set, seeds
        ),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "model.json").write_text(json.dumps(result, indent=1) + "\n")
    plot(result, args.out / "model.png")
    print(f"wrote {args.out / 'model.json'} and {args.out / 'model.png'}")


if __name__ == "__main__":
    main()
