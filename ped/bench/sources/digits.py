"""scikit-learn's optical digits (``sklearn.datasets.load_digits``: the 1,797 8x8 scans of the
test part of UCI's "Optical Recognition of Handwritten Digits"), upsampled to 32x32.

The 8x8 values (0..16) are scaled to 0..255 and resized bilinearly to 32x32, one grey channel.
"""

from __future__ import annotations

import logging

import numpy as np
from sklearn.datasets import load_digits

from ped.bench.sources._common import IMAGE_SIZE, ImageSet
from ped.bench.sources.mnist import MNIST_CLASSES

__all__ = ["load_digits32"]

logger = logging.getLogger(__name__)


def load_digits32() -> ImageSet:
    """scikit-learn's 1,797 8x8 digits, scaled 0..16 -> 0..255, resized bilinearly to 32x32."""
    from PIL import Image

    bunch = load_digits()
    small = np.clip(np.rint(bunch.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    big = np.stack(
        [np.asarray(Image.fromarray(im).resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR))
         for im in small]
    )  # fmt: skip
    return ImageSet(big[..., None], bunch.target.astype(np.int64), MNIST_CLASSES, "digits")
