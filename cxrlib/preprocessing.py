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
    """The preprocessed image alone (uint8 in, uint8 out)."""
    return otsu_steps(image).result


# image transforms by name, as chapters ask for them (data.images applies them to its cached arrays)
TRANSFORMS = {"otsu": otsu}


def plot_otsu(steps: OtsuSteps, title: str):
    """Original, histogram with the threshold, mask and result, side by side."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(13, 3.2))
    axes[0].imshow(steps.image, cmap="gray")
    axes[0].set_title("original")
    axes[1].hist(steps.blurred.ravel(), bins=64, color="0.4")
    axes[1].axvline(steps.threshold, color="red", label=f"Otsu t = {steps.threshold:.3f}")
    axes[1].set(title="histogram of the blurred image", xlabel="gray value (0-1)", ylabel="pixels")
    axes[1].legend(fontsize=8)
    axes[2].imshow(steps.mask, cmap="gray")
    axes[2].set_title("mask: blurred < t")
    axes[3].imshow(steps.result, cmap="gray")
    axes[3].set_title("mask applied")
    for ax in axes[[0, 2, 3]]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
