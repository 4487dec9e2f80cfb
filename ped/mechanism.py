r"""The paper's mechanism, tested directly: does fine-tuning move the classes the way PED does?

PED rests on one claim: fine-tuning lowers the potential energy of the class balls by pushing
overlapping classes apart, and PED's cheap simulation of that movement gives a metric the
features fine-tuning would end with.  With the features :math:`Z_0` of an encoder and
:math:`Z_T` of the same encoder after fine-tuning (on the same images; the rebuilt benchmark
stores them), three questions can be asked of each model and task:

1. **Energy.** Is :math:`U(Z_T) < U(Z_0)`?  :func:`energy` computes eq. (7) on standardised
   features (each set with its own per-dimension statistics, so a mere rescaling of the space
   changes nothing), balls of radius :math:`r_i = \lambda \sqrt{\sum_d \sigma_{id}^2}`.
2. **Direction.** Do the classes move the same way?  :func:`shift_alignment` compares, class by
   class, fine-tuning's shift of the class centre with PED's shift, both in the standardised
   space of :math:`Z_0` and both *centred* (the mean shift over classes removed: a common
   translation moves no class relative to another), by their cosine.  Random directions in
   :math:`D` dimensions give cosines of about :math:`\pm 1/\sqrt{D}`.
3. **Tracking** (across models) is a rank comparison of scores and lives in the verdict
   chapter: does ``metric(PED(Z_0))`` rank the zoo like ``metric(Z_T)`` better than
   ``metric(Z_0)`` does?

Comparing coordinates of :math:`Z_0` and :math:`Z_T` assumes the fine-tuned network keeps the
meaning of its feature dimensions, which holds for short fine-tuning from the same weights and
is what the paper's picture of features *moving* presumes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ped._validation import check_features_labels
from ped.dynamics import class_statistics, elastic_potential, potential_energy_descent

__all__ = ["energy", "centred_shifts", "shift_alignment", "mechanism_summary"]


def _standardised(x: NDArray[Any], mean: NDArray[Any] | None = None,
                  std: NDArray[Any] | None = None) -> NDArray[np.float64]:  # fmt: skip
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0) if mean is None else mean
    std = np.maximum(x.std(axis=0) if std is None else std, 1e-3)  # the release's floor
    return (x - mean) / std


def energy(features: ArrayLike, labels: ArrayLike, *, nsigma: float = 0.6, k: float = 1.0) -> float:
    r"""Elastic potential :math:`U = \sum_{i<j} \tfrac12 k \max(0, r_i + r_j - d_{ij})^2`
    (eq. 7) of the class balls of standardised ``features`` (their own mean and std)."""
    x, y, n_classes = check_features_labels(features, labels)
    stats = class_statistics(_standardised(x), y, n_classes)
    radii = nsigma * np.sqrt(stats.variances.sum(axis=1))
    return elastic_potential(stats.means, radii, k=k)


def centred_shifts(
    before: ArrayLike, after: ArrayLike, labels: ArrayLike
) -> NDArray[np.float64]:
    """``(C, D)`` shifts of the class centres from ``before`` to ``after`` (the same images),
    in ``before``'s standardised units, minus their mean over classes."""
    x0, y, n_classes = check_features_labels(before, labels)
    x1, _, _ = check_features_labels(after, labels)
    if x0.shape != x1.shape:
        raise ValueError(f"before and after must have one shape, got {x0.shape} and {x1.shape}")
    mean, std = x0.mean(axis=0), x0.std(axis=0)
    c0 = class_statistics(_standardised(x0, mean, std), y, n_classes).means
    c1 = class_statistics(_standardised(x1, mean, std), y, n_classes).means
    shift = c1 - c0
    return shift - shift.mean(axis=0)


def shift_alignment(first: ArrayLike, second: ArrayLike) -> NDArray[np.float64]:
    """Per-class cosine between two ``(C, D)`` shift arrays (NaN for a class that does not move
    in one of them)."""
    a, b = (np.asarray(v, dtype=np.float64) for v in (first, second))
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"shifts must be (C, D) arrays of one shape, got {a.shape}, {b.shape}")
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.einsum("cd,cd->c", a, b) / (na * nb)
    return np.where((na > 0) & (nb > 0), cos, np.nan)


def mechanism_summary(
    z0: ArrayLike, zt: ArrayLike, labels: ArrayLike, *, reference: Any = None, **ped_options: Any
) -> dict[str, Any]:
    """Energy and direction for one model and task: ``energy_before`` :math:`U(Z_0)`,
    ``energy_finetuned`` :math:`U(Z_T)`, ``energy_ped`` :math:`U(\\mathrm{PED}(Z_0))` (each on
    its own standardisation), ``cosine`` (mean over classes of :func:`shift_alignment` between
    fine-tuning's and PED's centred shifts, in :math:`Z_0`'s standardised space; PED run with
    ``reference`` (default ``None``: the target's own statistics; the verdict passes the
    encoder's source statistics, as its PED arm uses) and ``ped_options``), ``cosines`` per
    class and ``chance`` =
    :math:`1/\\sqrt{D}`, the typical size of a random cosine; ``moved`` holds PED's features
    :math:`\\mathrm{PED}(Z_0)`, for callers that score them."""
    x0, y, _ = check_features_labels(z0, labels)
    nsigma = float(ped_options.get("nsigma", 0.6))
    moved = potential_energy_descent(x0, y, reference=reference, **ped_options).features
    cos = shift_alignment(centred_shifts(x0, zt, y), centred_shifts(x0, moved, y))
    return {
        "energy_before": energy(x0, y, nsigma=nsigma),
        "energy_finetuned": energy(zt, y, nsigma=nsigma),
        "energy_ped": energy(moved, y, nsigma=nsigma),
        "cosine": float(np.nanmean(cos)) if np.isfinite(cos).any() else float("nan"),
        "cosines": cos,
        "chance": 1.0 / np.sqrt(x0.shape[1]),
        "moved": moved,
    }
