"""The second stage's training set: images that give it nothing to learn from are skipped."""

from __future__ import annotations

import numpy as np

from hitl.model import grid
from hitl.model.backbone import shared_backbone
from hitl.model.detection import BoxExample, DetectionConfig, _SecondStage, _Variant
from hitl.scenes import generate_scene


def test_an_image_without_objects_or_proposals_adds_nothing_and_training_goes_on() -> None:
    """A background image on which the first model proposes no window has no crop to describe; the
    second stage is fitted on the other images instead of failing on an empty descriptor array."""
    scene = generate_scene("train", 0)
    (left, top, width, height) = scene.boxes[0][1]
    examples = [BoxExample(scene.image, scene.boxes), BoxExample(np.zeros_like(scene.image), [])]
    gt = np.array([[left, top, left + width, top + height]]) / grid.GRID
    with_object = _Variant(examples, 0, False, gt, np.array([0]))
    empty = _Variant(examples, 1, False, np.zeros((0, 4)), np.zeros(0, int))
    second = _SecondStage(DetectionConfig(), 1)
    rng = np.random.default_rng(0)
    backbone = shared_backbone()
    background = np.array([[0.0, 0.0, 60.0, 60.0], [500.0, 300.0, 600.0, 420.0], [300.0, 0.0, 400.0, 90.0]])
    second.add(backbone, with_object, background, grid.GRID, rng)
    second.add(backbone, empty, np.zeros((0, 4)), grid.GRID, rng)
    refiner, _ = second.fit(np.eye(1, dtype=bool))
    assert refiner.weights.shape[0] == 2  # background and the one label
