"""Input validation shared by every public function of :mod:`ped`.

Public functions validate their arguments once, at the boundary, with the helpers here, and then
trust them.  Every helper returns new arrays (or read-only views of the caller's data that are never
written to), so nothing a user passes in is modified in place.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "check_features",
    "check_matrix_rules",
    "check_magnitude",
    "max_magnitude",
    "check_labels",
    "whole_numbers",
    "check_features_labels",
    "check_positive",
    "check_nonnegative",
    "check_positive_int",
    "check_scores_truth",
]


def check_features(
    features: ArrayLike, *, name: str = "features", scan: bool = True
) -> NDArray[np.floating]:
    """Return ``features`` as a 2-D floating-point array of finite values.

    Raises ``ValueError`` for a wrong dimensionality, an empty array, a non-floating dtype
    (integers, booleans, complex or objects), NaN or infinite entries, and entries so large that
    their sums of squares overflow float64 (:func:`check_magnitude`).  The dtype is kept
    (float32 stays float32) and no copy is made when none is needed: callers must not write to the
    result.  ``scan=False`` checks the dtype and shape only, for callers that check the values
    from moments they compute anyway (see ``ped.dynamics.class_statistics``).
    """
    arr = np.asarray(features)
    floating = arr.dtype != object and np.issubdtype(arr.dtype, np.floating)
    check_matrix_rules(
        name, "array", floating=floating, dtype=arr.dtype, cast=".astype(np.float64)",
        shape=arr.shape,
        # min and max propagate NaN and reach +-inf: two reductions, no N x D boolean temporary
        extremes=(lambda: (float(arr.min()), float(arr.max()))) if scan else None,
        n_not_finite=lambda: int(arr.size - np.count_nonzero(np.isfinite(arr))),
    )  # fmt: skip
    return arr


def check_matrix_rules(
    name: str,
    kind: str,
    *,
    floating: bool,
    dtype: object,
    cast: str,
    shape: tuple[int, ...],
    extremes: Callable[[], tuple[float, float]] | None,
    n_not_finite: Callable[[], int],
) -> None:
    """The rules every feature matrix obeys, for either backend (numpy ``kind="array"``, torch
    ``"tensor"``): floating dtype, 2-D, not empty, finite, within :func:`max_magnitude`.

    ``extremes`` returns the smallest and largest entry and is called once the shape is
    checked (``None``: the values are not checked); ``n_not_finite`` counts NaN and infinite
    entries and is called only when one of the extremes is not finite.  Raises ``ValueError``
    naming ``name`` and the problem."""
    if not floating:
        raise ValueError(
            f"{name} must be a floating-point {kind}, got dtype {dtype}; convert it first, "
            f"e.g. {name}{cast}"
        )
    if len(shape) != 2:
        raise ValueError(
            f"{name} must be a 2-D {kind} of shape (n_samples, n_dims), got {len(shape)}-D "
            f"{kind} of shape {tuple(shape)}"
        )
    if shape[0] == 0 or shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(shape)})")
    if extremes is None:
        return
    low, high = extremes()
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ValueError(f"{name} contains {n_not_finite()} NaN or infinite value(s)")
    check_magnitude(max(abs(low), abs(high)), tuple(shape), name=name)


#: Orders of magnitude kept free between the sums of squares of the features and float64's
#: overflow, for the products the methods form from them (TransRate divides its Gram matrix by
#: ``n * eps``, distances double values, mixtures multiply variances...).
_HEADROOM = 1e20


def max_magnitude(shape: tuple[int, ...]) -> float:
    """The largest ``|x|`` accepted in an (N, D) feature array: ``sqrt(float64 max / (1e20 N D))``.

    Every method squares the features somewhere (variances, Gram matrices, distances), summing at
    most N x D squares; below this bound such sums stay 20 orders of magnitude below float64's
    overflow (about 1e140 for 100,000 x 2048 features: any real feature scale passes).
    """
    return float(np.sqrt(np.finfo(np.float64).max / (_HEADROOM * max(1, int(np.prod(shape))))))


def check_magnitude(largest: float, shape: tuple[int, ...], *, name: str = "features") -> None:
    """Raise ``ValueError`` when ``largest`` (the largest ``|x|`` of an array of ``shape``)
    exceeds :func:`max_magnitude`: squaring and summing such an array overflows float64 (or
    comes close), and the input would otherwise pass as finite and come out of the methods as
    NaN, inf or 0 with only a warning."""
    limit = max_magnitude(shape)
    if largest > limit:
        raise ValueError(
            f"{name} contains values too large to compute with: max |x| = {largest:.3g}, above "
            f"{limit:.3g}, where the sums of squares of a {' x '.join(map(str, shape))} array "
            "come close to overflowing float64; rescale them (e.g. divide by their standard "
            "deviation)"
        )


def check_labels(
    labels: ArrayLike,
    *,
    n_samples: int | None = None,
    min_classes: int = 2,
    min_per_class: int = 1,
    name: str = "labels",
) -> tuple[NDArray[np.intp], int]:
    """Return ``(labels as an intp array, number of classes C)`` after checking them.

    Labels must be a 1-D array of integers (integer dtype, or floats holding whole numbers) taking
    every value 0, 1, ..., C-1 at least ``min_per_class`` times, with C >= ``min_classes``.
    Non-contiguous labels are rejected rather than silently remapped: remap them explicitly with
    ``np.unique(labels, return_inverse=True)[1]``.
    """
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {arr.shape}")
    if n_samples is not None and arr.shape[0] != n_samples:
        raise ValueError(
            f"features and {name} have mismatched lengths: {n_samples} samples but "
            f"{arr.shape[0]} labels"
        )
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    out = whole_numbers(arr, name=name, values=" 0..C-1")
    if out.min() < 0:
        raise ValueError(f"{name} must be integers 0..C-1, got negative value {out.min()}")
    counts = np.bincount(out)
    n_classes = counts.shape[0]
    missing = np.flatnonzero(counts == 0)
    if missing.size:
        raise ValueError(
            f"{name} must take every value 0..C-1 (here C-1 = {n_classes - 1}), but "
            f"{missing.size} value(s) never occur, e.g. {missing[:5].tolist()}; remap them with "
            f"np.unique({name}, return_inverse=True)[1]"
        )
    if n_classes < min_classes:
        raise ValueError(
            f"{name} contain {n_classes} class(es); at least {min_classes} are needed"
        )
    small = np.flatnonzero(counts < min_per_class)
    if small.size:
        raise ValueError(
            f"class {int(small[0])} has {int(counts[small[0]])} sample(s); this method needs at "
            f"least {min_per_class} per class ({small.size} class(es) are too small)"
        )
    return out, n_classes


def whole_numbers(arr: NDArray[Any], *, name: str, values: str = "") -> NDArray[np.intp]:
    """``arr`` as an intp array when it holds integers: an integer dtype, or floats that are all
    finite whole numbers; booleans, objects and other dtypes are refused.  ``values`` completes
    the messages (e.g. ``" 0..C-1"``)."""
    if arr.dtype == bool or arr.dtype == object:
        raise ValueError(f"{name} must be integers{values}, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all() or not np.all(arr == np.round(arr)):
            raise ValueError(f"{name} must be whole numbers{values}, got non-integer values")
    elif not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be integers{values}, got dtype {arr.dtype}")
    return arr.astype(np.intp)


def check_features_labels(
    features: ArrayLike,
    labels: ArrayLike,
    *,
    min_classes: int = 2,
    min_per_class: int = 1,
    scan: bool = True,
) -> tuple[NDArray[np.floating], NDArray[np.intp], int]:
    """Validate a (features, labels) pair: see :func:`check_features` (``scan``) and
    :func:`check_labels`."""
    x = check_features(features, scan=scan)
    y, n_classes = check_labels(
        labels, n_samples=x.shape[0], min_classes=min_classes, min_per_class=min_per_class
    )
    return x, y, n_classes


def check_positive(value: float, name: str) -> float:
    """Return ``value`` as a float after checking it is a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return value


def check_nonnegative(value: float, name: str) -> float:
    """Return ``value`` as a float after checking it is a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return value


def check_positive_int(value: int, name: str) -> int:
    """Return ``value`` as an int after checking it is an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value}")
    return int(value)


def check_scores_truth(
    scores: ArrayLike, truth: ArrayLike, *, min_len: int = 2
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Validate two equally long 1-D vectors of finite numbers (one entry per model)."""
    out = []
    for name, v in (("scores", scores), ("truth", truth)):
        arr = np.asarray(v)
        if arr.dtype == object or not (
            np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
        ):
            raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
        if arr.ndim != 1:
            raise ValueError(
                f"{name} must be a 1-D array (one value per model), got shape {arr.shape}"
            )
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        out.append(arr.astype(np.float64))
    if out[0].shape[0] != out[1].shape[0]:
        raise ValueError(
            f"scores and truth have mismatched lengths: {out[0].shape[0]} and {out[1].shape[0]}"
        )
    if out[0].shape[0] < min_len:
        raise ValueError(f"at least {min_len} models are needed, got {out[0].shape[0]}")
    return out[0], out[1]
