"""Figures of what the networks look at: resizer outputs, activation maps, Grad-CAM overlays and grids."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.patches import Rectangle

from cxrlib.core.config import CLASSES
from cxrlib.present.plots import short_lines, wrapped
from cxrlib.science.boxes import LEVEL, NO_INFORMATION, POINTING_TOLERANCE, THRESHOLDS
from cxrlib.science.gradcam import gradcam_target, has_spatial_information, heatmap_at

# A figure drawn this wide (inches at matplotlib's 100 dpi) is shown at the book's ~700 px column
# without shrinking, so a 10-point title stays 10 points on the page.
PAGE_INCHES = 7.0
# Grad-CAM's colours: a perceptually ordered map (dark: no weight, yellow: the map's maximum) that holds no
# cyan, so the radiologist's box, drawn in BOX_COLOUR, never blends into the heat.
CAM_CMAP = "inferno"
BOX_COLOUR = "cyan"
CAM_ALPHA = 0.45
# What a map too coarse or flat to say where (science.gradcam.has_spatial_information) is called on the page.
NO_SPATIAL_INFORMATION = "no spatial information at this input size"


def to_display(image) -> np.ndarray:
    """Any 2-D or RGB float image, scaled to [0, 1] for imshow."""
    image = np.asarray(image, float)
    image = image.mean(axis=-1) if image.ndim == 3 else image
    low, high = np.percentile(image, [1, 99])
    return np.clip((image - low) / max(high - low, 1e-8), 0, 1)


def edge_strength(image) -> float:
    """Mean gradient magnitude of a gray image: larger when edges are sharper or contrast higher."""
    rows, columns = np.gradient(np.asarray(image, float))
    return float(np.hypot(rows, columns).mean())


def resizer_change(bilinear: list, learnt: list) -> str:
    """In words, computed: how far the learnt resize is from the bilinear one, and whether it has stronger edges."""
    difference = np.mean([np.abs(a - b).mean() for a, b in zip(learnt, bilinear)])
    ratio = np.mean([edge_strength(a) / max(edge_strength(b), 1e-8) for a, b in zip(learnt, bilinear)])
    word = "stronger" if ratio > 1.05 else "weaker" if ratio < 0.95 else "about the same"
    return (f"Over these {len(learnt)} images the learnt resize differs from the bilinear one by "
            f"{difference:.3f} on average (input pixel values run from 0 to 1), and its edges are {word} "
            f"(mean gradient magnitude {ratio:.2f} times the bilinear one's).")


def plot_resizer(bilinear: list, learnt: list, title: str, per_row: int = 2):
    """Per image: the bilinear resize, the learnt one (same gray scale), and their difference stretched to show."""
    rows = int(np.ceil(len(learnt) / per_row))
    fig, axes = plt.subplots(rows, 3 * per_row, figsize=(PAGE_INCHES, 1.45 * rows + 0.6), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    low, high = np.percentile(np.concatenate([np.ravel(x) for x in (*bilinear, *learnt)]), [1, 99])
    for i, (a, b, panels) in enumerate(zip(bilinear, learnt, axes.reshape(-1, 3))):  # three panels per image
        difference = b - a
        scale = max(float(np.abs(difference).max()), 1e-8)
        panels[0].imshow(a, cmap="gray", vmin=low, vmax=high)
        panels[1].imshow(b, cmap="gray", vmin=low, vmax=high)
        panels[2].imshow(difference, cmap="coolwarm", vmin=-scale, vmax=scale)
        for ax, caption in zip(panels, (f"{i + 1}: bilinear", f"{i + 1}: learnt", f"difference ±{scale:.2f}")):
            ax.set_title(caption, fontsize=9)
    fig.suptitle(wrapped(title))
    fig.tight_layout()
    return fig


def plot_activations(maps: np.ndarray, title: str, limit: int = 64):
    """The first `limit` channels of one layer's activations as a grid of small images, at the column's width."""
    count = min(limit, maps.shape[-1])
    columns = min(8, count)
    rows = int(np.ceil(count / columns))
    side = PAGE_INCHES / columns
    fig, axes = plt.subplots(rows, columns, figsize=(PAGE_INCHES, rows * side + 0.7), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < count:
            ax.imshow(maps[..., i], cmap="viridis")
    fig.suptitle(wrapped(f"{title} (first {count} of {maps.shape[-1]} maps, {maps.shape[0]}x{maps.shape[1]})"))
    fig.tight_layout()
    return fig


def cam_colourbar(fig, bottom_inches: float = 0.3):
    """One horizontal colour bar for every Grad-CAM overlay of a figure, saying what its colours mean, in a strip
    bottom_inches above the figure's lower edge (leave about 0.9 inch free there)."""
    height = fig.get_figheight()
    cax = fig.add_axes([0.25, bottom_inches / height, 0.5, 0.13 / height])
    bar = fig.colorbar(ScalarMappable(norm=Normalize(0, 1), cmap=CAM_CMAP), cax=cax, orientation="horizontal")
    bar.set_label("Grad-CAM weight (share of the map's maximum)", fontsize=9)
    bar.ax.tick_params(labelsize=8)
    return bar


def overlay(ax, image: np.ndarray, heatmap: np.ndarray, title: str, box=None, fontsize: int = 10):
    """The image in gray, the heatmap in colour (CAM_CMAP) on top, and an optional (x, y, w, h) box in BOX_COLOUR.

    A heatmap without spatial information is not tinted over the image: the panel says so instead.
    """
    ax.imshow(to_display(image), cmap="gray")
    if has_spatial_information(heatmap):
        ax.imshow(heatmap, cmap=CAM_CMAP, alpha=CAM_ALPHA, vmin=0, vmax=1)
    else:
        ax.text(0.5, 0.5, NO_SPATIAL_INFORMATION.replace(" at ", "\nat "), transform=ax.transAxes, ha="center",
                va="center", fontsize=max(fontsize - 2, 7), bbox={"facecolor": "white", "alpha": 0.85})
    if box is not None:
        ax.add_patch(Rectangle(box[:2], box[2], box[3], fill=False, edgecolor=BOX_COLOUR, linewidth=1.8))
    ax.set_title(title, fontsize=fontsize)
    ax.axis("off")


def shown_points(fig, fontsize: float, column_px: int = 700) -> float:
    """The size a font of the figure appears at once the figure is scaled to the book's column."""
    return fontsize * min(1.0, column_px / (fig.get_figwidth() * fig.dpi))


def gradcam_grid(models: dict, examples: dict, images_for, boxes=None, size: int = 256, predicted=None):
    """Rows: every model (its label says if it had no pretrained weights); columns: one image per class.

    Each heatmap explains the image's true class (examples: class name -> image id), the class of its box;
    predicted (model -> {image id: class index}) adds what the model predicted to each title.
    """
    columns = max(len(examples), 1)
    fig, axes = plt.subplots(len(models), columns, figsize=(PAGE_INCHES, 2.9 * len(models) + 1.3),
                             squeeze=False)
    shown = images_for(list(examples.values()), size)
    for row, (name, model) in zip(axes, models.items()):
        for ax, (label, image_id) in zip(row, examples.items()):
            box = None
            if boxes is not None:
                mine = boxes[(boxes["Image Index"] == image_id) & (boxes["Finding Label"] == label)]
                box = mine.iloc[0][["x", "y", "w", "h"]].to_numpy(float) * size / 1024 if len(mine) else None
            heatmap, _ = heatmap_at(model, images_for, image_id, size, CLASSES.index(label))
            guess = (predicted or {}).get(name, {}).get(image_id)
            said = f"; said {CLASSES[guess]}" if guess is not None else ""
            overlay(ax, shown[image_id], heatmap, f"{short_lines(name)}\n{label}{said}", box)
    fig.suptitle(f"Grad-CAM of the true class ({BOX_COLOUR}: radiologist's box, where NIH has one)", fontsize=11)
    # room for the title above the panel titles, and for the colour bar below the panels
    fig.tight_layout(rect=(0, 0.9 / fig.get_figheight(), 1, 1 - 0.4 / fig.get_figheight()))
    cam_colourbar(fig)
    return fig


def scoring_rules(original: int = 1024) -> str:
    """The box-scoring rules in words, made from the constants the scores are computed with."""
    thresholds = ", ".join(f"{t:g}" for t in THRESHOLDS)
    tolerance = ("no tolerance: the point must fall inside the box (Zhang et al. 2018 allow 15 pixels)"
                 if not POINTING_TOLERANCE else
                 f"a tolerance of {POINTING_TOLERANCE} pixels of the {original}-pixel frame, as Zhang et al. 2018")
    return (f"**How the boxes are scored.** A heatmap's predicted box surrounds its largest region at or above "
            f"{LEVEL:.0%} of its maximum. IoU and IoBB are counted at the thresholds Wang et al. (2017) used for "
            f"IoBB, T = {thresholds}. The pointing game's point is the centre of the hottest cell of the "
            f"model's own Grad-CAM grid (on a 7x7 grid of a 224-pixel image, a cell is 32 pixels wide), not the "
            f"first pixel of the flat top that resizing makes of that cell; it is scored with {tolerance}. "
            f"The shuffled baseline moves each heatmap to another image *of the same label*, so every boxed "
            f"class counts by its number of boxes (a label with a single boxed image has no shuffled score). "
            f"A map of fewer than 2x2 cells, or a constant one, has {NO_SPATIAL_INFORMATION}: the row "
            f"'{NO_INFORMATION}' gives their share, and their boxes and points mean nothing.")


def boxes_sentence(boxed, scope: str, scored: int | None = None) -> str:
    """How many boxes, on how many images, the scores rest on, and which are left out of every column."""
    images = boxed["Image Index"].nunique()
    left = "" if scored is None or scored == len(boxed) else (
        f" {len(boxed) - scored} of them belong to a label boxed on a single image and are left out of every column "
        "(the shuffled baseline needs a second image of the label).")
    return (f"**{len(boxed)} boxes** on {images} image{'s' * (images != 1)} of the four classes, on {scope}.{left} "
            "Each Grad-CAM score carries a 95% interval from resampling the boxed images; with a handful of boxes "
            "these intervals are wide.")


def target_description(model) -> dict:
    """The target layer and its grid, in words, for the chapter's table of which map each model is explained on."""
    name, nested = gradcam_target(model)
    shape = (nested or model).get_layer(name).output.shape
    return {"target layer": name, "resolution": f"{shape[1]}x{shape[2]}", "channels": shape[3],
            "input": f"{model.input.shape[1]}x{model.input.shape[2]}"}


def summary_text(models: dict, scores) -> str:
    """The closing bullets: which maps can say where at this input size, and what the box scores rest on."""
    grids = {name: target_description(model)["resolution"] for name, model in models.items()}
    coarse = [name for name, grid in grids.items() if min(map(int, grid.split("x"))) < 2]
    lines = [f"Grad-CAM target grids at this input size: {', '.join(f'{n} {g}' for n, g in grids.items())}."]
    if coarse:
        lines.append(f"{', '.join(coarse)}: fewer than 2x2 cells, so {NO_SPATIAL_INFORMATION}.")
    if len(scores):
        lines.append(f"Box scores rest on {int(scores.iloc[0, -1])} boxes; each Grad-CAM score carries its interval "
                     "in the table above, beside its shuffled and random-point baselines.")
    else:
        lines.append("No box of the four classes could be scored on this run's images.")
    return "\n".join(f"- {line}" for line in lines)
