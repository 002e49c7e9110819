"""Train a model version from Ground Truth manifest lines and their images, then evaluate it.

Either task is learnt from the lines' own type: object-detection lines train the box head,
image-classification lines the image-label head. Validation runs first (docs/formats.md §4 rules): a
rejected dataset raises :class:`~hitl.domain.manifest_validation.DatasetRejected` with a summary,
invalid lines within the 20 % budget are dropped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, overload

import numpy as np

from hitl.domain.manifest import ClassificationLine, DetectionLine, ManifestLine, parse_line
from hitl.domain.manifest_validation import (
    DatasetRejected,
    ImageLookup,
    ValidationReport,
    split_overlap,
    validate_manifest,
)
from hitl.domain.records import PixelBox
from hitl.logs import get_logger
from hitl.model.artifact import ModelArtifact
from hitl.model.backbone import Backbone, shared_backbone
from hitl.model.calibration import Calibration, fit_platt
from hitl.model.classification import ClassificationConfig, train_classification
from hitl.model.data import Lazy
from hitl.model.detection import BoxExample, DetectionConfig, train_detection
from hitl.model.evaluation import EvaluationReport, Truth, evaluate, scored_candidates
from hitl.model.predictor import LocalPredictor

log = get_logger(__name__)

Example = tuple[np.ndarray, ManifestLine]


class Examples(Sequence[Example]):
    """(image, line) pairs whose lines are known up front and whose images are loaded when asked for:
    training and evaluation visit one image at a time, so only the loader's cache is ever held."""

    def __init__(self, lines: Sequence[ManifestLine], image: Callable[[int], np.ndarray]) -> None:
        self.lines = list(lines)
        self.image = image

    @classmethod
    def of(cls, pairs: Iterable[Example]) -> Examples:
        if isinstance(pairs, Examples):
            return pairs
        held = list(pairs)
        return cls([line for _, line in held], lambda i: held[i][0])

    @classmethod
    def loading(cls, lines: Sequence[ManifestLine], load_image: Callable[[str], np.ndarray]) -> Examples:
        """Each image fetched by its ``source-ref`` whenever it is visited."""
        refs = [line.source_ref for line in lines]
        return cls(lines, lambda i: load_image(refs[i]))

    def subset(self, indices: Sequence[int]) -> Examples:
        picked = list(indices)
        return Examples([self.lines[i] for i in picked], lambda j: self.image(picked[j]))

    def __len__(self) -> int:
        return len(self.lines)

    @overload
    def __getitem__(self, index: int) -> Example: ...
    @overload
    def __getitem__(self, index: slice) -> Examples: ...
    def __getitem__(self, index: int | slice) -> Example | Examples:
        if isinstance(index, slice):
            return self.subset(range(len(self.lines))[index])
        return self.image(index), self.lines[index]


@dataclass(frozen=True)
class TrainConfig:
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    classification: ClassificationConfig = field(default_factory=ClassificationConfig)
    seed: int = 0
    # A calibration map cross-fitted on two halves of the training images (the final model is then
    # fitted on every image); below ``calibration_min_images`` the map is the identity. Off by
    # default: it triples training time, and the box head already fits its own map out of fold
    # (hitl.model.refine), which is what serving uses.
    calibrate: bool = False
    calibration_min_images: int = 6


@dataclass(frozen=True)
class TrainResult:
    artifact: ModelArtifact  # thresholds and evaluation filled in when a test set was given
    train_report: ValidationReport
    test_report: ValidationReport | None
    evaluation: EvaluationReport | None
    train_seconds: float


def _kind(lines: Sequence[ManifestLine]) -> str:
    kinds = {line.kind for line in lines}
    if len(kinds) != 1:
        raise ValueError("a dataset must be all object-detection or all image-classification lines")
    return kinds.pop()


def labels_of(lines: Sequence[ManifestLine]) -> tuple[str, ...]:
    """Every label the lines name, sorted (detection: the class maps' names that have boxes)."""
    names: set[str] = set()
    for line in lines:
        if isinstance(line, DetectionLine):
            names.update(name for name, _ in line.boxes())
        else:
            names.add(line.label)
    return tuple(sorted(names))


def truth_of(line: ManifestLine) -> Truth:
    if isinstance(line, ClassificationLine):
        return [(line.label, None)]
    return [(name, PixelBox(left=a.left, top=a.top, width=a.width, height=a.height)) for name, a in line.boxes()]


def train(
    examples: Sequence[Example], config: TrainConfig | None = None, backbone: Backbone | None = None
) -> ModelArtifact:
    """Fit a head on already-validated (image, line) examples, with its confidence calibration map.
    Thresholds stay at the default until :func:`evaluate_artifact` (or ``ModelArtifact.with_evaluation``)
    sets the assumed ones."""
    cfg = config or TrainConfig()
    bb = backbone or shared_backbone()
    started = time.perf_counter()
    held = Examples.of(examples)
    calibration = fit_calibration(held, cfg, bb) if cfg.calibrate else None
    artifact = _train_head(held, cfg, bb)
    seconds = time.perf_counter() - started
    info = {**artifact.info, "train_seconds": round(seconds, 3)}
    # Without the cross-fitted map, the head's own (the box head's second stage fits one out of fold).
    return replace(artifact, info=info, calibration=calibration or artifact.calibration, backbone=bb.build)


def calibration_folds(examples: Sequence[Example], cfg: TrainConfig) -> list[tuple[list[int], list[int]]]:
    """Two-fold split of the images as (fit indices, held-out indices) pairs: every image is held out
    once. Images are dealt out per label set, so both halves see every label; a fold whose fit half
    misses a label is dropped. Empty below ``calibration_min_images``."""
    lines = Examples.of(examples).lines
    n = len(lines)
    if n < cfg.calibration_min_images:
        return []
    rng = np.random.default_rng(cfg.seed + 7919)
    halves: tuple[list[int], list[int]] = ([], [])
    dealt: dict[tuple[str, ...], int] = {}
    for i in (int(k) for k in rng.permutation(n)):
        names = labels_of([lines[i]])
        turn = dealt.get(names, 0)
        halves[turn % 2].append(i)
        dealt[names] = turn + 1
    everything = labels_of(lines)
    folds = []
    for fit, held in ((halves[0], halves[1]), (halves[1], halves[0])):
        if held and labels_of([lines[i] for i in fit]) == everything:
            folds.append((sorted(fit), sorted(held)))
    return folds


def fit_calibration(examples: Sequence[Example], cfg: TrainConfig, backbone: Backbone) -> Calibration:
    """Cross-fit: train on one half, score the other (and the other way round), fit the map on every
    held-out candidate. Identity when there is too little to fit on."""
    scored: list[tuple[float, bool]] = []
    every = Examples.of(examples)
    for fit, held in calibration_folds(every, cfg):
        try:
            probe = _train_head(every.subset(fit), cfg, backbone)
        except ValueError:
            continue
        predictor = LocalPredictor(probe, "calibration", backbone)
        truths = [truth_of(every.lines[i]) for i in held]
        predictions = [predictor.predict(every.image(i), min_confidence=0.0) for i in held]
        scored += scored_candidates(truths, predictions, probe.labels)
    if not scored:
        return Calibration()
    return fit_platt([c / 100.0 for c, _ in scored], [t for _, t in scored])


def _box_example(image: np.ndarray, line: ManifestLine) -> BoxExample:
    assert isinstance(line, DetectionLine)
    return BoxExample(image, [(name, (a.left, a.top, a.width, a.height)) for name, a in line.boxes()])


def _train_head(examples: Examples, cfg: TrainConfig, bb: Backbone) -> ModelArtifact:
    lines = examples.lines
    if not lines:
        raise ValueError("no training examples")
    labels = labels_of(lines)
    started = time.perf_counter()
    if _kind(lines) == "detection":
        boxes = Lazy(range(len(lines)), lambda i: _box_example(examples.image(i), lines[i]))
        head: Any = train_detection(bb, boxes, labels, cfg.detection, seed=cfg.seed)
    else:
        targets = [line.label for line in lines if isinstance(line, ClassificationLine)]
        head = train_classification(bb, Lazy(range(len(lines)), examples.image), targets, labels, cfg.classification)
    seconds = time.perf_counter() - started
    info = {"train_images": len(examples), "train_seconds": round(seconds, 3), "labels": list(labels)}
    log.info("model.trained", kind=_kind(lines), images=len(examples), labels=len(labels), seconds=round(seconds, 2))
    return ModelArtifact.from_head(head, info=info)


def evaluate_artifact(
    artifact: ModelArtifact,
    examples: Sequence[Example],
    backbone: Backbone | None = None,
    thresholds: Mapping[str, float] | None = None,
) -> EvaluationReport:
    """Score an artifact on (image, line) examples. Without ``thresholds`` each label's best-F1
    threshold on these examples is assumed, as Rekognition does on the test set."""
    predictor = LocalPredictor(artifact, "evaluation", backbone)
    held = Examples.of(examples)
    pairs = Lazy(range(len(held)), lambda i: (held.image(i), truth_of(held.lines[i])))
    return evaluate(lambda im: predictor.predict(im, min_confidence=0.0), pairs, artifact.labels, thresholds)


def parse_valid(lines: Sequence[Any], report: ValidationReport) -> list[ManifestLine]:
    return [parse_line(raw) for raw in report.select(lines)]


def train_from_manifest(
    train_lines: Sequence[Any],
    load_image: Callable[[str], np.ndarray],
    *,
    test_lines: Sequence[Any] | None = None,
    images: ImageLookup | None = None,
    config: TrainConfig | None = None,
    backbone: Backbone | None = None,
) -> TrainResult:
    """Validate, train, and (with ``test_lines``) evaluate and set the assumed thresholds.

    ``images`` answers validation's questions about each ``source-ref`` (size, format, bytes);
    ``load_image`` returns its pixels. Raises DatasetRejected when a dataset fails validation.
    """
    train_report = validate_manifest(train_lines, images)
    if not train_report.accepted:
        raise DatasetRejected(train_report)
    train_parsed = parse_valid(train_lines, train_report)
    test_report = None
    test_parsed: list[ManifestLine] = []
    if test_lines is not None:
        test_report = validate_manifest(test_lines, images)
        overlap = split_overlap(train_parsed, parse_valid(test_lines, test_report))
        if overlap:
            test_report = ValidationReport(
                test_report.total_lines, test_report.valid_lines, test_report.errors,
                test_report.dataset_errors + tuple(overlap), test_report.label_counts,
            )  # fmt: skip
        if not test_report.accepted:
            raise DatasetRejected(test_report)
        test_parsed = parse_valid(test_lines, test_report)
    started = time.perf_counter()
    artifact = train(Examples.loading(train_parsed, load_image), config, backbone)
    seconds = time.perf_counter() - started
    evaluation = None
    if test_parsed:
        evaluation = evaluate_artifact(artifact, Examples.loading(test_parsed, load_image), backbone)
        artifact = artifact.with_evaluation(evaluation)
    return TrainResult(artifact, train_report, test_report, evaluation, seconds)
