"""The second stage: box arithmetic, crops, out-of-fold scores, the working resolution, and artifacts
with and without a refiner."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from hitl.model import grid
from hitl.model.artifact import ModelArtifact
from hitl.model.detection import DetectionConfig, DetectionHead, proposals, reported, shared_labels, working_long_side
from hitl.model.predictor import LocalPredictor
from hitl.model.refine import (
    RefineConfig,
    apply_deltas,
    box_deltas,
    crops,
    fit_refiner,
    jittered,
    out_of_fold,
    regions,
)
from hitl.scenes import generate_scene


def test_deltas_take_a_proposal_exactly_onto_its_target() -> None:
    rng = np.random.default_rng(1)
    corner, size = rng.uniform(0, 300, (50, 2)), rng.uniform(20, 200, (50, 2))
    proposals = np.column_stack([corner, corner + size])
    # Targets within the bounded move (centre shift ≤ half a size, scale within e^±0.7).
    d = np.column_stack([rng.uniform(-0.4, 0.4, (50, 2)), rng.uniform(-0.6, 0.6, (50, 2))])
    targets = apply_deltas(proposals, d)
    np.testing.assert_allclose(box_deltas(proposals, targets), d, atol=1e-9)
    np.testing.assert_allclose(apply_deltas(proposals, box_deltas(proposals, targets)), targets, atol=1e-6)


def test_moves_are_bounded() -> None:
    box = np.array([[100.0, 100.0, 150.0, 200.0]])
    moved = apply_deltas(box, np.array([[10.0, -10.0, 5.0, -5.0]]))
    w, h = moved[0, 2] - moved[0, 0], moved[0, 3] - moved[0, 1]
    assert w == pytest.approx(50 * np.exp(0.7))
    assert h == pytest.approx(100 * np.exp(-0.7))
    assert (moved[0, 0] + moved[0, 2]) / 2 == pytest.approx(125 + 25)
    assert (moved[0, 1] + moved[0, 3]) / 2 == pytest.approx(150 - 50)


def test_regions_grow_each_box_around_its_centre() -> None:
    out = regions(np.array([[10.0, 20.0, 50.0, 40.0]]), 0.5)
    np.testing.assert_allclose(out, [[0.0, 15.0, 60.0, 45.0]])


def test_crops_have_the_configured_size_and_read_outside_as_padding() -> None:
    image = np.full((60, 80, 3), 200, np.uint8)
    cfg = RefineConfig(crop=32, context=0.0)
    inside, outside = crops(image, np.array([[10.0, 10.0, 30.0, 30.0], [-100.0, -100.0, -60.0, -60.0]]), cfg)
    assert inside.shape == outside.shape == (32, 32, 3)
    assert (inside == 200).all()
    assert tuple(outside[0, 0]) == (124, 116, 104)  # the backbone's zero


def test_jittered_boxes_stay_near_their_box() -> None:
    truth = np.array([[100.0, 100.0, 180.0, 160.0], [300.0, 50.0, 320.0, 110.0]])
    copies = jittered(truth, 25, np.random.default_rng(0))
    assert copies.shape == (50, 4)
    overlaps = grid.iou(copies, truth)
    own = np.repeat(np.arange(2), 25)
    assert (overlaps[np.arange(50), own] >= 0.3).all()
    assert (overlaps[np.arange(50), own] < 1.0).any()
    assert jittered(truth, 0, np.random.default_rng(0)).shape == (0, 4)


def test_out_of_fold_scores_and_moves_come_from_models_that_never_saw_the_image() -> None:
    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(8), 20)
    y = rng.integers(0, 3, size=groups.size)
    x = rng.normal(size=(groups.size, 6))
    deltas = rng.normal(scale=0.1, size=(groups.size, 4))
    regress = np.ones(groups.size, bool)
    # One image's crops are pure noise that a model fitted on it would memorise: give them a feature
    # that names their class and their move exactly, and only in that image.
    x[groups == 5, 0] = y[groups == 5] * 10.0
    x[groups == 5, 1] = deltas[groups == 5, 0] * 100.0
    rows = np.flatnonzero(groups == 5)
    unseen = out_of_fold(x, y, deltas, regress, groups, rows, 2, RefineConfig(c=10.0, ridge=1e-3))
    assert unseen is not None
    assert unseen.probs.shape == (rows.size, 2)
    assert unseen.deltas.shape == (rows.size, 4)
    assert np.allclose(unseen.probs.sum(axis=1) <= 1.0, True)
    # Models that had seen image 5 would be nearly certain of its classes and moves; out of fold not.
    probs = unseen.probs
    label_prob = np.where(y[rows] > 0, probs[np.arange(rows.size), np.maximum(y[rows] - 1, 0)], 1 - probs.sum(axis=1))
    assert label_prob.mean() < 0.8
    seen = fit_refiner(x, y + 0, deltas, regress, 2, RefineConfig(c=10.0, ridge=1e-3))
    seen_moves = x[rows] @ seen.reg_weights.T + seen.reg_bias
    error = lambda moves: float(np.abs(moves[:, 0] - deltas[rows, 0]).mean())  # noqa: E731
    assert error(seen_moves) < 0.5 * error(unseen.deltas)
    assert out_of_fold(x[:60], y[:60], deltas[:60], regress[:60], groups[:60], rows[:0], 2, RefineConfig()) is None


def test_small_objects_raise_the_working_resolution_within_its_bound() -> None:
    cfg = DetectionConfig(long_side=640, min_object_px=40.0, max_upscale=2.0)
    shapes = [(480, 640)] * 3
    faces = [np.array([[0, 0, 80, 80]], float)] * 3
    tiny = [np.array([[0, 0, 20, 20], [5, 5, 24, 24]], float)] * 3
    wee = [np.array([[0, 0, 4, 4]], float)] * 3
    assert working_long_side(shapes, faces, cfg) == 640
    assert working_long_side(shapes, tiny, cfg) == 1152  # 640 · 40 / 22, to a multiple of 32
    assert working_long_side(shapes, wee, cfg) == 1280  # capped at twice
    assert working_long_side(shapes, [np.zeros((0, 4))] * 3, cfg) == 640
    # Sizes are relative to the image: the same boxes in a twice larger image are half as large.
    assert working_long_side([(960, 1280)] * 3, faces, cfg) == 640  # 40 px at 640: unchanged
    assert working_long_side([(960, 1280)] * 3, tiny, cfg) == 1280


def test_artifacts_keep_the_refiner_and_older_ones_load_without_it(box_model: ModelArtifact) -> None:
    assert any(k.startswith("r_") for k in box_model.arrays)
    assert isinstance(box_model.config["refine"], dict)
    loaded = ModelArtifact.from_bytes(box_model.to_bytes())
    head = loaded.head()
    assert isinstance(head, DetectionHead)
    assert head.refiner is not None
    np.testing.assert_array_equal(head.refiner.weights, box_model.arrays["r_weights"])
    scene = generate_scene("test", 2)
    assert LocalPredictor(loaded, "a").predict(scene.image, 0) == LocalPredictor(box_model, "b").predict(scene.image, 0)
    # An artifact written before the second stage: no refiner arrays, no refine settings.
    older_config = {k: v for k, v in box_model.config.items() if k not in ("refine", "min_object_px", "max_upscale",
                                                                            "flip_below_images")}  # fmt: skip
    older = replace(loaded, arrays={k: v for k, v in loaded.arrays.items() if not k.startswith("r_")},
                    config=older_config)  # fmt: skip
    old_head = ModelArtifact.from_bytes(older.to_bytes()).head()
    assert isinstance(old_head, DetectionHead)
    assert old_head.refiner is None
    found = LocalPredictor(older, "old").predict(scene.image, min_confidence=0)
    assert found
    assert all(p.box is not None for p in found)


def test_the_window_head_alone_still_trains_when_the_second_stage_is_off() -> None:
    from hitl.model.training import TrainConfig, train
    from hitl.scenes import scene_examples

    windows_only = DetectionConfig(refine=RefineConfig(enabled=False))
    artifact = train(scene_examples("train", 4), TrainConfig(detection=windows_only))
    assert not any(k.startswith("r_") for k in artifact.arrays)
    head = artifact.head()
    assert isinstance(head, DetectionHead)
    assert head.refiner is None


def test_every_object_above_the_floor_gets_a_proposal_however_many_windows_another_fills() -> None:
    # 2,000 windows jittered around one confident object, one window on a second, less likely object.
    rng = np.random.default_rng(0)
    crowd = np.array([100.0, 100.0, 180.0, 180.0]) + rng.uniform(-6, 6, size=(2000, 4))
    lone = np.array([[400.0, 300.0, 460.0, 360.0]])
    px = np.concatenate([crowd, lone])
    logits = np.concatenate([rng.uniform(3.0, 5.0, 2000), [-1.0]])[None, :]  # p ≈ 0.27 for the lone one
    picked = proposals(px, logits, RefineConfig(proposals=24, proposal_floor=0.05))
    assert 2000 in picked.tolist()
    assert grid.iou(px[picked], px[picked])[np.triu_indices(len(picked), 1)].max() <= 0.3
    below_floor = proposals(px, logits, RefineConfig(proposals=24, proposal_floor=0.5))
    assert 2000 not in below_floor.tolist()


def test_one_object_is_reported_under_one_label_unless_training_boxes_shared_labels() -> None:
    cfg = DetectionConfig()
    px = np.array([[10.0, 10, 60, 60], [12, 11, 61, 62], [200, 200, 260, 260]])
    # Box 0 is likely "a" and somewhat "b"; box 1 (the same object) likelier "b" than box 0; box 2 is "b".
    probs = np.array([[0.9, 0.4], [0.2, 0.6], [0.001, 0.8]])
    apart = np.eye(2, dtype=bool)
    assert reported(px, probs, cfg, apart) == [(0, 0), (1, 2)]
    # Without the table (older artifacts) each label is reported on its own, as before.
    assert sorted(reported(px, probs, cfg, None)) == [(0, 0), (1, 1), (1, 2)]
    # Labels the training boxes put on one object (e.g. "dog" and "animal") are both kept.
    together = np.ones((2, 2), dtype=bool)
    assert reported(px, probs, cfg, together) == [(0, 0), (1, 2), (1, 1)]


def test_labels_share_objects_only_where_training_boxes_of_both_overlap() -> None:
    one = (np.array([[0.0, 0, 10, 10], [0, 0, 10, 11], [50, 50, 60, 60]]), np.array([0, 1, 2]))
    other = (np.array([[0.0, 0, 10, 10], [30, 30, 40, 40]]), np.array([2, 0]))
    table = shared_labels([one, other], 3, 0.5)
    expected = np.eye(3, dtype=bool)
    expected[0, 1] = expected[1, 0] = True
    np.testing.assert_array_equal(table, expected)


def test_artifacts_keep_which_labels_share_objects(box_model: ModelArtifact) -> None:
    head = ModelArtifact.from_bytes(box_model.to_bytes()).head()
    assert isinstance(head, DetectionHead)
    assert head.shared is not None
    np.testing.assert_array_equal(head.shared, np.eye(len(box_model.labels), dtype=bool))
    older = replace(box_model, arrays={k: v for k, v in box_model.arrays.items() if k != "shared"})
    old_head = ModelArtifact.from_bytes(older.to_bytes()).head()
    assert isinstance(old_head, DetectionHead)
    assert old_head.shared is None
