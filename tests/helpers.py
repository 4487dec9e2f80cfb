"""Data generators shared by the tests."""

from __future__ import annotations

import numpy as np


def gaussian_classes(
    rng: np.random.Generator,
    n_classes: int = 5,
    dim: int = 8,
    n_per_class: int = 20,
    spread: float = 1.0,
    dtype: type = np.float64,
) -> tuple[np.ndarray, np.ndarray]:
    """Features of ``n_classes`` isotropic Gaussian classes whose means are drawn at ``spread``."""
    means = rng.normal(scale=spread, size=(n_classes, dim))
    labels = np.repeat(np.arange(n_classes), n_per_class)
    features = means[labels] + rng.normal(size=(len(labels), dim))
    return features.astype(dtype), labels
