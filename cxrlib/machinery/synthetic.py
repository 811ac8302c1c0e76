"""Procedural chest-radiograph-like images for machines with neither NIH data nor the sample.

Each class has a visibly different pattern (fluid at a lung base, scattered patches, a
collapsed lung) so that the whole book can run end to end; the numbers mean nothing clinically.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage

from cxrlib.core.config import CLASSES

SIZE = 256


def _grid():
    """Pixel coordinates in [-1, 1], shared by every shape."""
    axis = np.linspace(-1.0, 1.0, SIZE)
    return np.meshgrid(axis, axis)


def _ellipse(cx, cy, rx, ry):
    """A filled ellipse mask: the body and the lung fields."""
    x, y = _grid()
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1.0


def _lungs(rng, shrink_right=1.0):
    """Two dark lung fields; a factor below 1 collapses the right one (atelectasis)."""
    dy = rng.normal(0, 0.03)
    left = _ellipse(-0.38 + rng.normal(0, 0.02), dy, 0.26, 0.55)
    right = _ellipse(0.38, dy + 0.55 * (1 - shrink_right), 0.26 * shrink_right, 0.55 * shrink_right)
    return left, right


def _base_image(rng, lungs):
    """Body, spine, ribs and lungs, as bright bone and dark air on an X-ray."""
    x, y = _grid()
    image = np.full((SIZE, SIZE), 0.08)
    image[_ellipse(0, 0.05, 0.85, 0.95)] = 0.55
    for lung in lungs:
        image[lung] = 0.22
    image += 0.25 * np.exp(-(x / 0.07) ** 2) * (y > -0.9)
    ribs = 0.06 * (np.sin((y + 0.2 * x ** 2) * 22 + rng.uniform(0, 6)) > 0.7)
    image += ribs * (lungs[0] | lungs[1])
    return image


def _effusion(image, rng, lungs):
    """Fluid fills the base of one lung up to a curved (meniscus) line."""
    x, y = _grid()
    lung = lungs[rng.integers(2)]
    level = rng.uniform(0.15, 0.35) + 0.15 * np.abs(x)
    image[lung & (y > level)] = 0.6


def _infiltration(image, rng, lungs):
    """Scattered fuzzy opacities inside the lung fields."""
    x, y = _grid()
    inside = lungs[0] | lungs[1]
    for _ in range(rng.integers(5, 9)):
        cx, cy = rng.uniform(-0.6, 0.6), rng.uniform(-0.4, 0.45)
        image += 0.28 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 0.008) * inside


def _atelectasis(image, rng, lungs):
    """A dense wedge beside the collapsed lung."""
    x, y = _grid()
    wedge = (x > 0.15) & (x < 0.65) & (y > 0.1) & (y < 0.1 + 0.5 * (x - 0.1)) & ~lungs[1]
    image[wedge] = 0.48


def render(label: int, rng) -> np.ndarray:
    """One 8-bit image of the given class."""
    lungs = _lungs(rng, shrink_right=rng.uniform(0.55, 0.7) if CLASSES[label] == "Atelectasis" else 1.0)
    image = _base_image(rng, lungs)
    pattern = {"Effusion": _effusion, "Infiltration": _infiltration, "Atelectasis": _atelectasis}
    if CLASSES[label] in pattern:
        pattern[CLASSES[label]](image, rng, lungs)
    image = ndimage.gaussian_filter(image, 2.0) + rng.normal(0, 0.03, image.shape)
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def make_synthetic(root: Path, per_class: int = 60, seed: int = 0) -> Path:
    """Write an NIH-layout folder (images/ + labels.csv) once; reuse it afterwards."""
    root = Path(root)
    stamp = root / "synthetic.json"
    spec = {"per_class": per_class, "seed": seed, "version": 1}
    if stamp.is_file() and json.loads(stamp.read_text()) == spec:
        return root
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for label, name in enumerate(CLASSES):
        for i in range(per_class):
            patient = 90000 + label * 1000 + i // 2
            file = f"{patient:08d}_{i % 2:03d}.png"
            Image.fromarray(render(label, rng)).save(root / "images" / file)
            rows.append({"Image Index": file, "Finding Labels": name, "Patient ID": patient,
                         "Patient Age": int(rng.integers(20, 80)), "Patient Gender": "MF"[i % 2],
                         "View Position": "PA"})
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    stamp.write_text(json.dumps(spec))
    return root
