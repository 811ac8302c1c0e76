"""The report's Otsu preprocessing (section 2.5): keep the pixels darker than an automatic threshold.

Steps: grayscale, Gaussian blur, Otsu threshold t on the blurred image, binary mask = blurred < t,
mask applied to the original image. The report found it hurt accuracy; the chapter shows why.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.filters import gaussian, threshold_otsu

SIGMA = 1.0  # blur, in pixels of the stored image


@dataclass
class OtsuSteps:
    """Every intermediate of one image, for the chapter's figures."""

    image: np.ndarray
    blurred: np.ndarray
    threshold: float
    mask: np.ndarray
    result: np.ndarray


def otsu_steps(image: np.ndarray, sigma: float = SIGMA) -> OtsuSteps:
    """Blur, threshold with Otsu, keep pixels below the threshold (the report's '<' mask)."""
    image = np.asarray(image)
    blurred = gaussian(image.astype(float) / 255.0, sigma=sigma)
    threshold = float(threshold_otsu(blurred)) if blurred.min() < blurred.max() else float(blurred.max())
    mask = blurred < threshold
    return OtsuSteps(image, blurred, threshold, mask, np.where(mask, image, 0).astype(image.dtype))


def otsu(image: np.ndarray) -> np.ndarray:
    """The preprocessed image alone (uint8 in, uint8 out).

    References: Otsu N. A threshold selection method from gray-level histograms. IEEE Transactions on Systems,
    Man, and Cybernetics 9(1), 62-66, 1979.

    Examples
    --------
    >>> image = np.zeros((8, 8), np.uint8); image[:, 4:] = 200   # a dark lung field beside bright tissue
    >>> int(otsu(image)[:, 4:].max()), otsu(image).dtype.name     # the bright side is masked out
    (0, 'uint8')
    """
    return otsu_steps(image).result


# image transforms by name, as chapters ask for them (the image cache applies them to its arrays)
TRANSFORMS = {"otsu": otsu}


def unchanged(image: np.ndarray) -> np.ndarray:
    """The step that leaves a decoded image as it is."""
    return image


def transform_step(name):
    """The per-image function a transform names (unchanged for None); an unknown name is refused."""
    if name and name not in TRANSFORMS:
        raise ValueError(f"unknown image transform {name!r}; known: {', '.join(TRANSFORMS)}")
    return TRANSFORMS[name] if name else unchanged
