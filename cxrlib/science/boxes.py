"""Scoring Grad-CAM against radiologists' boxes: IoU and IoBB at Wang et al.'s thresholds, the pointing game, and
a random and a shuffled baseline.

References: Wang X et al., ChestX-ray8, CVPR 2017 (IoBB thresholds); Zhang J et al., Top-down neural attention
by excitation backprop, IJCV 2018 (the pointing game).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from cxrlib.core.config import CLASSES
from cxrlib.science.gradcam import gradcam_cells_batch, has_spatial_information, upsample


# Wang et al. 2017 (ChestX-ray8) count a localisation as correct when IoBB reaches T(IoBB) = 0.1, 0.25, 0.5,
# 0.75 or 0.9; IoU is scored at the same thresholds.
THRESHOLDS = (0.1, 0.25, 0.5, 0.75, 0.9)

LEVEL = 0.5  # a heatmap's predicted box surrounds its largest region at or above this share of its maximum

# The pointing game's tolerance in pixels of NIH's 1024-pixel frame. Zhang et al. (2018) count a hit within
# 15 pixels of the box; we count only a peak inside the box.
POINTING_TOLERANCE = 0

AREA = "predicted box area (share of frame)"
NO_INFORMATION = "maps without spatial information (share)"


def predicted_box(heatmap: np.ndarray, level: float = LEVEL):
    """(x, y, w, h) around the largest connected region where the heatmap reaches level x its maximum."""
    from scipy import ndimage

    regions, count = ndimage.label(heatmap >= level * heatmap.max())
    if heatmap.max() <= 0 or count == 0:
        return 0, 0, 0, 0
    largest = 1 + int(np.argmax(ndimage.sum(np.ones_like(heatmap), regions, range(1, count + 1))))
    ys, xs = np.nonzero(regions == largest)
    return xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1


def box_overlap(pred, truth) -> tuple:
    """(IoU, IoBB) of two (x, y, w, h) boxes; IoBB divides the overlap by the predicted box's area."""
    x0, y0 = max(pred[0], truth[0]), max(pred[1], truth[1])
    x1, y1 = min(pred[0] + pred[2], truth[0] + truth[2]), min(pred[1] + pred[3], truth[1] + truth[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    pred_area, truth_area = pred[2] * pred[3], truth[2] * truth[3]
    union = pred_area + truth_area - inter
    return (inter / union if union else 0.0), (inter / pred_area if pred_area else 0.0)


def inside(x, y, truth, tolerance: float = 0.0) -> bool:
    """Whether point (x, y) lies in the (x, y, w, h) box, or within tolerance pixels of it."""
    if not tolerance:
        return truth[0] <= x < truth[0] + truth[2] and truth[1] <= y < truth[1] + truth[3]
    dx = max(truth[0] - x, 0.0, x - truth[0] - truth[2])
    dy = max(truth[1] - y, 0.0, y - truth[1] - truth[3])
    return float(np.hypot(dx, dy)) <= tolerance


def peak_point(heatmap: np.ndarray, size=None) -> tuple:
    """(x, y) where a map points, in a size x size frame: the centre of its hottest cell (first one on ties).

    On a coarse map this is the cell's centre; resizing first would make the cell a flat top whose first
    pixel, at its top-left edge, is what argmax returns. A full-size map's cells are its pixels.
    """
    heatmap = np.asarray(heatmap)
    rows, columns = heatmap.shape
    size = size or columns
    row, column = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    return (column + 0.5) * size / columns, (row + 0.5) * size / rows


def pointing_hit(heatmap: np.ndarray, truth, size=None, tolerance: float = 0.0) -> bool:
    """Whether the heatmap's peak cell centre falls inside the box (Zhang et al.'s pointing game)."""
    return inside(*peak_point(heatmap, size), truth, tolerance)


def score_heatmap(heatmap: np.ndarray, truth, size=None, tolerance: float = 0.0) -> dict:
    """IoU and IoBB hits at every threshold, the pointing game and the predicted box's share of the frame.

    heatmap: a map at size x size, or a coarser Grad-CAM grid that is resized for the box (not for the point).
    """
    heatmap = np.asarray(heatmap, float)
    size = size or heatmap.shape[1]
    frame = heatmap if heatmap.shape == (size, size) else upsample(heatmap, (size, size))
    pred = predicted_box(frame)
    iou, iobb = box_overlap(pred, truth)
    row = {f"IoU>={t}": iou >= t for t in THRESHOLDS}
    row.update({f"IoBB>={t}": iobb >= t for t in THRESHOLDS})
    row["pointing"] = pointing_hit(heatmap, truth, size, tolerance)
    row[AREA] = pred[2] * pred[3] / size ** 2
    row[NO_INFORMATION] = not has_spatial_information(heatmap)
    return row


def random_point_hits(truth, size: int, draws: int, rng) -> np.ndarray:
    """The pointing game played by a uniformly random pixel's centre, draws times: chance is the box's share."""
    xs, ys = rng.integers(0, size, draws) + 0.5, rng.integers(0, size, draws) + 0.5
    return np.array([inside(x, y, truth) for x, y in zip(xs, ys)])


def shuffled_pairs(ids: list, rng) -> dict:
    """image id -> another image's id, a random derangement: each heatmap lands on a wrong image."""
    if len(ids) < 2:
        return {}
    while True:
        order = rng.permutation(len(ids))
        if (order != np.arange(len(ids))).all():
            return {ids[i]: ids[j] for i, j in enumerate(order)}


def shuffled_within_labels(scored: list, heatmaps: dict, rng) -> list:
    """(box, heatmap of another image of the box's label) for one round of the shuffled baseline.

    Each label's heatmaps are deranged among that label's boxed images only, so every box of a label with
    two or more images is scored in every round, whatever the other labels' sizes.
    """
    pairs = []
    for label in sorted({box["Finding Label"] for box in scored}):
        mine = [box for box in scored if box["Finding Label"] == label]
        other = shuffled_pairs(sorted({box["Image Index"] for box in mine}), rng)
        pairs += [(box, heatmaps[other[box["Image Index"]], label]) for box in mine if box["Image Index"] in other]
    return pairs


def box_truth(box, size: int, original: int) -> np.ndarray:
    """A box row's (x, y, w, h), scaled from the original frame to size pixels."""
    return np.array([box["x"], box["y"], box["w"], box["h"]], float) * size / original


def score_boxes(heatmaps: dict, boxes, size: int, original: int = 1024, repeats: int = 20, seed: int = 0,
                tolerance: float = POINTING_TOLERANCE):
    """Hit rates of heatmaps against NIH boxes, beside two baselines with matched statistics.

    heatmaps: (image id, box's class) -> heatmap at size x size or on its Grad-CAM grid, each explaining
    the class of its box. 'shuffled heatmaps': the same heatmaps on other images of the same label (repeats
    derangements), so their shape and area match; 'random point': a uniformly random pixel for the pointing
    game. Boxes are in the original frame (NIH: 1024 pixels) and scaled to size; tolerance is in its pixels.
    """
    rng = np.random.default_rng(seed)
    scored = shuffle_ready([b for _, b in boxes.iterrows() if (b["Image Index"], b["Finding Label"]) in heatmaps])
    if not scored:
        return pd.DataFrame()
    near = tolerance * size / original
    ours, shuffled, points = [], [], []
    for box in scored:
        truth = box_truth(box, size, original)
        ours.append(score_heatmap(heatmaps[box["Image Index"], box["Finding Label"]], truth, size, near))
        points.append(random_point_hits(truth, size, repeats, rng).mean())
    for _ in range(repeats):
        shuffled += [score_heatmap(heatmap, box_truth(box, size, original), size, near)
                     for box, heatmap in shuffled_within_labels(scored, heatmaps, rng)]
    rows, hits = list(ours[0]), pd.DataFrame(ours).astype(float)
    low, high = box_intervals(hits, [box["Image Index"] for box in scored], seed)
    table = pd.DataFrame({"Grad-CAM": hits.mean(), "Grad-CAM low": low, "Grad-CAM high": high,
                          "shuffled heatmaps": pd.DataFrame(shuffled).mean() if shuffled else np.nan,
                          "random point": pd.Series({"pointing": float(np.mean(points))})}).reindex(rows)
    table["boxes"] = len(ours)
    return table.astype(float)


def shuffle_ready(scored: list) -> list:
    """The boxes every column can score: those of a label with boxes on two or more images, since the shuffled
    baseline moves a heatmap to another image of the same label (a lone image's box has none to take)."""
    images = pd.DataFrame([(box["Finding Label"], box["Image Index"]) for box in scored], columns=["label", "image"])
    enough = set(images.groupby("label")["image"].nunique().loc[lambda n: n >= 2].index)
    return [box for box in scored if box["Finding Label"] in enough]


def box_intervals(hits: pd.DataFrame, images: list, seed: int = 0, n: int = 1000) -> tuple:
    """95% intervals of each score's mean over boxes, resampling the boxed images (an image's boxes together)."""
    from cxrlib.science.stats import patient_resamples, percentile_interval, ratio

    weights = patient_resamples(images, n, seed)
    found = {column: percentile_interval(values.mean(), ratio(weights @ values.to_numpy(), weights.sum(axis=1)))
             for column, values in hits.items()}
    return pd.Series({c: f.low for c, f in found.items()}), pd.Series({c: f.high for c, f in found.items()})


def score_models(models: dict, boxes, images_for, repeats: int = 20, seed: int = 0) -> pd.DataFrame:
    """Box-scoring table for every model (columns: model x method): each heatmap explains its box's class and
    is kept on its Grad-CAM grid, so the pointing game reads the hottest cell."""
    tables = {}
    for name, model in models.items():
        wanted = sorted({(i, label) for i, label in zip(boxes["Image Index"], boxes["Finding Label"])})
        shown = images_for(sorted({i for i, _ in wanted}), model.input.shape[1])
        found = gradcam_cells_batch(model, [shown[i] for i, _ in wanted], [CLASSES.index(k) for _, k in wanted])
        heatmaps = {pair: cells for pair, (cells, _) in zip(wanted, found)}
        tables[name] = score_boxes(heatmaps, boxes, model.input.shape[1], repeats=repeats, seed=seed)
    tables = {k: v for k, v in tables.items() if len(v)}
    return pd.concat(tables, axis=1) if tables else pd.DataFrame()
