"""Zoo-level helpers: metrics whose final score is defined relative to the other models.

NCTI and ETran combine per-model terms after min-max normalising each term over the models being
ranked, so a model's final score depends on the zoo it is compared with.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def minmax_columns(terms: ArrayLike, names: tuple[str, ...]) -> NDArray[np.float64]:
    """Min-max normalise each column of an (M models, T terms) table over the models.

    A column whose values are all equal (or a zoo of one model) normalises to 0: it carries no
    ranking information.  Raises ``ValueError`` for a table of the wrong shape or non-finite
    entries.
    """
    arr = np.asarray(terms)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise ValueError(f"terms must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if arr.ndim != 2 or arr.shape[1] != len(names) or arr.shape[0] == 0:
        raise ValueError(
            f"terms must be a table of shape (n_models, {len(names)}) with columns "
            f"{', '.join(names)}; got shape {arr.shape}"
        )
    if not np.isfinite(arr).all():
        raise ValueError("terms contain NaN or infinite values")
    low = arr.min(axis=0)
    span = arr.max(axis=0) - low
    return np.divide(arr - low, span, out=np.zeros_like(arr), where=span > 0)
