"""Window pooling: integral-image means equal direct means; folded score maps equal descriptor·weights."""

from __future__ import annotations

import numpy as np

from hitl.model import grid
from hitl.model.backbone import FeatureMaps


def maps(seed: int = 0) -> FeatureMaps:
    rng = np.random.default_rng(seed)
    return FeatureMaps(
        s16=rng.normal(size=(6, 8, 10)).astype(np.float32),
        s32=rng.normal(size=(4, 4, 5)).astype(np.float32),
        scale=1.0,
        height=128,
        width=160,
    )


def test_box_means_match_direct_means() -> None:
    x = np.random.default_rng(1).normal(size=(3, 7, 9)).astype(np.float32)
    table = grid.integral(x)
    boxes = np.array([[0, 0, 9, 7], [2, 1, 5, 4], [8, 6, 9, 7]])
    got = grid.box_means(table, boxes)
    for (x0, y0, x1, y1), row in zip(boxes, got, strict=True):
        np.testing.assert_allclose(row, x[:, y0:y1, x0:x1].mean(axis=(1, 2)), rtol=1e-4, atol=1e-5)


def test_folded_scores_equal_descriptors_times_weights() -> None:
    m = maps()
    rng = np.random.default_rng(2)
    w16 = rng.normal(size=(grid.CELLS, 6)).astype(np.float32)
    w32 = rng.normal(size=(grid.CELLS, 4)).astype(np.float32)
    shape = grid.grid_shape(m)
    boxes = grid.windows(np.array([[3, 3], [5, 4]]), grid.valid_shape(m))
    scores = grid.window_scores(grid.integral(grid.score_grid(m, w16, w32)), grid.cells(boxes, shape))
    desc = grid.descriptors(grid.integral(grid.feature_grid(m)), boxes, shape)
    weights = np.concatenate([w16, w32], axis=1).reshape(-1)
    np.testing.assert_allclose(scores[0], desc @ weights, rtol=1e-3, atol=1e-3)


def test_windows_cover_every_placement() -> None:
    boxes = grid.windows(np.array([[2, 3]]), (5, 4))
    assert len(boxes) == (4 - 2 + 1) * (5 - 3 + 1)
    assert boxes[:, 2].max() == 4
    assert boxes[:, 3].max() == 5


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], float)
    kept = grid.nms(boxes, np.array([0.5, 0.9, 0.7]), 0.3, 10)
    assert kept.tolist() == [1, 2]


def test_anchors_cover_the_training_sizes_with_a_bounded_count() -> None:
    from hitl.model.detection import MAX_SCALES, make_anchors

    anchors = make_anchors(np.array([[5.0, 5.0], [18.0, 18.0]]), 1.15)
    assert anchors.min() == 5
    assert anchors.max() >= 18
    assert (anchors[:, 0] == anchors[:, 1]).all()  # square boxes → square anchors
    spread = make_anchors(np.array([[2.0, 2.0], [200.0, 200.0], [40.0, 10.0]]), 1.15)
    assert len(spread) <= MAX_SCALES * 3
