"""Window pooling on a stride-8 feature grid, with integral images.

A window's descriptor is the mean of the grid's features over each of its cells: four quadrants
and a context box twice its size. Because a linear head's score is then a sum of cell means of
per-cell *score maps* (the head's weights folded into the features), one forward pass plus a few
integral images scores every window of every size in a few milliseconds.
"""

from __future__ import annotations

import numpy as np

from hitl.model.backbone import FeatureMaps

GRID = 8  # pixels per grid cell in the resized image
CELLS = 5  # four quadrants + context


def _upsample_matrix(n_out: int, n_in: int, factor: int) -> np.ndarray:
    """Bilinear (align_corners=False) interpolation from n_in to n_out samples, as a matrix."""
    src = np.clip((np.arange(n_out) + 0.5) / factor - 0.5, 0, n_in - 1)
    low = np.floor(src).astype(int)
    high = np.minimum(low + 1, n_in - 1)
    frac = (src - low).astype(np.float32)
    m = np.zeros((n_out, n_in), np.float32)
    m[np.arange(n_out), low] += 1 - frac
    m[np.arange(n_out), high] += frac
    return m


def grid_shape(maps: FeatureMaps) -> tuple[int, int]:
    return maps.s16.shape[1] * 2, maps.s16.shape[2] * 2


def valid_shape(maps: FeatureMaps) -> tuple[int, int]:
    """Grid cells covering the real (unpadded) image."""
    return -(-maps.height // GRID), -(-maps.width // GRID)


def _up(x: np.ndarray, height: int, width: int, factor: int) -> np.ndarray:
    mh = _upsample_matrix(height, x.shape[1], factor)
    mw = _upsample_matrix(width, x.shape[2], factor)
    out: np.ndarray = np.matmul(np.matmul(mh, x), mw.T)
    return out


def feature_grid(maps: FeatureMaps) -> np.ndarray:
    """All channels (s16's and s32's) on the stride-8 grid: C×H×W."""
    height, width = grid_shape(maps)
    return np.concatenate([_up(maps.s16, height, width, 2), _up(maps.s32, height, width, 4)], axis=0)


def score_grid(maps: FeatureMaps, w16: np.ndarray, w32: np.ndarray) -> np.ndarray:
    """Fold weights (M×C16, M×C32) into M score maps on the stride-8 grid, projecting before
    upsampling (both are linear, so the order does not change the result, only the cost)."""
    height, width = grid_shape(maps)
    p16 = np.einsum("mc,chw->mhw", w16, maps.s16, optimize=True)
    p32 = np.einsum("mc,chw->mhw", w32, maps.s32, optimize=True)
    out: np.ndarray = _up(p16, height, width, 2) + _up(p32, height, width, 4)
    return out


def integral(x: np.ndarray) -> np.ndarray:
    """C×H×W maps → (H+1)×(W+1)×C summed-area tables, channels last so that one lookup yields a
    whole descriptor. Row/column accumulation over contiguous channel vectors is several times
    faster than ``np.cumsum`` on this layout; float32 is exact enough for a few thousand cells."""
    channels, height, width = x.shape
    out = np.zeros((height + 1, width + 1, channels), np.float32)
    acc = out[1:, 1:]
    acc[:] = x.transpose(1, 2, 0)
    for i in range(1, height):
        acc[i] += acc[i - 1]
    for j in range(1, width):
        acc[:, j] += acc[:, j - 1]
    return out


def windows(anchors: np.ndarray, valid: tuple[int, int]) -> np.ndarray:
    """Every placement of every anchor (w, h in cells) inside the valid grid: N×4 (x0, y0, x1, y1)."""
    vh, vw = valid
    shapes = sorted({(int(min(aw, vw)), int(min(ah, vh))) for aw, ah in anchors})
    out = []
    for aw, ah in shapes:
        ys, xs = np.mgrid[0 : vh - ah + 1, 0 : vw - aw + 1]
        x0, y0 = xs.ravel(), ys.ravel()
        out.append(np.stack([x0, y0, x0 + aw, y0 + ah], axis=1))
    return np.concatenate(out) if out else np.zeros((0, 4), int)


def cells(boxes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """CELLS×N×4 cell boxes of windows: quadrants, then the context box (clipped to the grid)."""
    x0, y0, x1, y1 = boxes.T
    xm = x0 + np.maximum(1, (x1 - x0) // 2)
    ym = y0 + np.maximum(1, (y1 - y0) // 2)
    cw = np.maximum(1, (x1 - x0) // 2)
    ch = np.maximum(1, (y1 - y0) // 2)
    height, width = shape
    context = np.stack(
        [np.maximum(0, x0 - cw), np.maximum(0, y0 - ch), np.minimum(width, x1 + cw), np.minimum(height, y1 + ch)],
        axis=1,
    )
    return np.stack(
        [
            np.stack([x0, y0, xm, ym], axis=1),
            np.stack([xm, y0, x1, ym], axis=1),
            np.stack([x0, ym, xm, y1], axis=1),
            np.stack([xm, ym, x1, y1], axis=1),
            context,
        ]
    )


def box_means(table: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Mean of each channel over each box: table (H+1)×(W+1)×C, boxes N×4 → N×C."""
    x0, y0, x1, y1 = boxes.T
    area = np.maximum(1, (x1 - x0) * (y1 - y0)).astype(np.float32)
    sums = table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]
    out: np.ndarray = sums / area[:, None]
    return out


def descriptors(table: np.ndarray, boxes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """N×(CELLS·C) window descriptors, cell-major."""
    return np.concatenate([box_means(table, cell) for cell in cells(boxes, shape)], axis=1)


def window_scores(score_tables: np.ndarray, cell_boxes: np.ndarray) -> np.ndarray:
    """Linear scores of windows from folded score maps: tables (H+1)×(W+1)×(L·CELLS), label-major,
    and the windows' cells (:func:`cells`) → L×N."""
    labels = score_tables.shape[2] // CELLS
    total = np.zeros((cell_boxes.shape[1], labels), np.float64)
    for k in range(CELLS):
        total += box_means(score_tables[:, :, k::CELLS], cell_boxes[k])
    return total.T


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of N×4 and M×4 corner boxes → N×M."""
    ix0 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy0 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix1 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    out: np.ndarray = inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)
    return out


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, limit: int) -> np.ndarray:
    """Greedy non-maximum suppression; indices of kept boxes, best first."""
    order = np.argsort(-scores)
    keep: list[int] = []
    while order.size and len(keep) < limit:
        best = int(order[0])
        keep.append(best)
        if order.size == 1:
            break
        overlaps = iou(boxes[best : best + 1], boxes[order[1:]])[0]
        order = order[1:][overlaps <= threshold]
    return np.asarray(keep, dtype=int)
