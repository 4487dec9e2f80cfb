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
3. **Geometry.**  Does fine-tuning change the distances between class centres the way PED
   does?  :func:`distance_agreement` rank-correlates, over the pairs of classes, the change of
   each pair's centre distance under fine-tuning with its change under PED (log ratios of
   distances measured in units of each feature set's own RMS radius).  Distances are invariant
   to rotations of the feature space, so a network that rotates or permutes its coordinates
   while fine-tuning still matches; the null permutes the correspondence of classes between the
   two sides (the statistic recomputed for each permutation), and :func:`positive_control`
   builds a fine-tuned set that moves the classes as PED does, diluted by an unrelated move of
   the same size and seen in a random rotation, on which the test must find the match.
4. **Tracking** (across models) is a rank comparison of scores and lives in the verdict
   chapter: does ``metric(PED(Z_0))`` rank the zoo like ``metric(Z_T)`` better than
   ``metric(Z_0)`` does?

The direction test (2) compares coordinates of :math:`Z_0` and :math:`Z_T`, which assumes that
the fine-tuned network keeps the meaning of its feature dimensions, and a mean cosine has no
simple null; the geometry test (3) assumes neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.stats
from numpy.typing import ArrayLike, NDArray

from ped._validation import check_features_labels
from ped.dynamics import (
    PEDOptions,
    class_statistics,
    elastic_potential,
    potential_energy_descent,
)
from ped.inference import radial_shift

__all__ = [
    "energy",
    "centred_shifts",
    "shift_alignment",
    "centre_distances",
    "distance_changes",
    "DistanceAgreement",
    "distance_agreement",
    "positive_control",
    "mechanism_summary",
    "GeometrySummary",
    "geometry_summary",
]


def _standardised(x: NDArray[Any], mean: NDArray[Any] | None = None,
                  std: NDArray[Any] | None = None) -> NDArray[np.float64]:  # fmt: skip
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0) if mean is None else mean
    std = np.maximum(x.std(axis=0) if std is None else std, 1e-3)  # the release's floor
    return (x - mean) / std


def energy(
    features: ArrayLike,
    labels: ArrayLike,
    *,
    nsigma: float = PEDOptions.nsigma,
    k: float = PEDOptions.k,
) -> float:
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


def _centres_rms_units(x: NDArray[Any], y: NDArray[Any], n_classes: int) -> NDArray[np.float64]:
    r"""Class centres of ``x`` in units of its RMS radius :math:`\sqrt{\overline{\lVert x -
    \bar x\rVert^2}}` (invariant to rotations, translations and a common scale)."""
    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean(axis=0)
    radius = np.sqrt(np.einsum("nd,nd->", centred, centred) / len(x))
    if not radius > 0:
        raise ValueError("features without spread: every image has the same features")
    return class_statistics(centred / radius, y, n_classes).means


def centre_distances(features: ArrayLike, labels: ArrayLike) -> NDArray[np.float64]:
    """``(C, C)`` distances between the class centres, in units of the features' RMS radius
    (invariant to rotations, translations and a common scale of the space)."""
    x, y, n_classes = check_features_labels(features, labels)
    c = _centres_rms_units(x, y, n_classes)
    return np.sqrt(np.maximum(((c[:, None] - c[None]) ** 2).sum(axis=2), 0.0))


def distance_changes(before: ArrayLike, after: ArrayLike, labels: ArrayLike) -> NDArray[np.float64]:
    r"""``(C, C)`` log ratios :math:`\log(d^{after}_{ij} / d^{before}_{ij})` of the distances
    between class centres (:func:`centre_distances`, each set in its own units; diagonal 0).
    The two sets may differ in dimension; a pair of coincident centres is refused."""
    x0, y, _ = check_features_labels(before, labels)
    x1, _, _ = check_features_labels(after, labels)  # the same images: one label per row
    return _log_ratio(centre_distances(x0, y), centre_distances(x1, y))


def _log_ratio(d0: NDArray[np.float64], d1: NDArray[np.float64]) -> NDArray[np.float64]:
    """Off-diagonal :math:`\\log(d_1 / d_0)` of two distance matrices (diagonal 0)."""
    off = ~np.eye(d0.shape[0], dtype=bool)
    if (d0[off] <= 0).any() or (d1[off] <= 0).any():
        raise ValueError("two classes share a centre: their distance ratio is undefined")
    out = np.zeros(d0.shape)
    out[off] = np.log(d1[off] / d0[off])
    return out


@dataclass(frozen=True)
class DistanceAgreement:
    r"""Spearman's :math:`\rho` over the pairs of classes between two matrices of distance
    changes, its one-sided permutation p-value (``(k + 1) / (n + 1)``, :math:`k` permutations
    reaching :math:`\rho`) and the permutation null's values; all NaN when one side does not
    vary (no pair's distance changes)."""

    rho: float
    p_value: float
    null: NDArray[np.float64]
    n_pairs: int


def distance_agreement(
    first: ArrayLike, second: ArrayLike, *, n_permutations: int = 999, random_state: int = 0
) -> DistanceAgreement:
    """Rank agreement of two ``(C, C)`` :func:`distance_changes` matrices over the
    :math:`C(C-1)/2` pairs, against the null that permutes the classes of ``second`` (rows and
    columns together: the pairs keep their structure, the correspondence is lost)."""
    a, b = (np.asarray(v, dtype=np.float64) for v in (first, second))
    if a.ndim != 2 or a.shape != b.shape or a.shape[0] != a.shape[1] or a.shape[0] < 3:
        raise ValueError(f"need two (C, C) matrices of one shape with C >= 3, got {a.shape}, "
                         f"{b.shape}")  # fmt: skip
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be >= 1, got {n_permutations}")
    iu = np.triu_indices(a.shape[0], 1)
    ra = scipy.stats.rankdata(a[iu])
    rb = np.zeros_like(b)
    rb[iu] = scipy.stats.rankdata(b[iu])
    rb = rb + rb.T
    if ra.std() == 0 or rb[iu].std() == 0:  # a side with no change: no ranking to agree with
        return DistanceAgreement(float("nan"), float("nan"), np.full(n_permutations, np.nan),
                                 len(iu[0]))  # fmt: skip
    ra = (ra - ra.mean()) / ra.std()

    def corr(mat: NDArray[np.float64]) -> float:
        v = mat[iu]
        sd = v.std()
        return float(np.mean(ra * (v - v.mean())) / sd) if sd > 0 else 0.0

    rho = corr(rb)
    rng = np.random.default_rng(random_state)
    null = np.array([corr(rb[np.ix_(p, p)]) for p in
                     (rng.permutation(a.shape[0]) for _ in range(n_permutations))])  # fmt: skip
    p_value = float(((null >= rho).sum() + 1) / (n_permutations + 1))
    return DistanceAgreement(rho, p_value, null, len(iu[0]))


def positive_control(
    features: ArrayLike,
    labels: ArrayLike,
    moved: ArrayLike,
    *,
    dilution: float = 1.0,
    random_state: int = 0,
) -> NDArray[np.float64]:
    r"""A fine-tuned set in which the match with PED exists: each class moved by PED's shift
    (``moved - features``, per class) plus an unrelated class move of ``dilution`` times its
    length in a random direction, then the whole space rotated by a random orthogonal matrix
    (so that only a rotation-invariant test can see the match).  A new float64 array."""
    x, y, n_classes = check_features_labels(features, labels)
    m, _, _ = check_features_labels(moved, labels)
    if m.shape != x.shape:
        raise ValueError(f"features and moved must have one shape, got {x.shape} and {m.shape}")
    if dilution < 0:
        raise ValueError(f"dilution must be >= 0, got {dilution}")
    rng = np.random.default_rng(random_state)
    shift = class_statistics(np.asarray(m, np.float64) - x, y, n_classes).means
    length = np.linalg.norm(shift, axis=1, keepdims=True)
    noise = rng.standard_normal(shift.shape)
    noise *= dilution * length / np.maximum(np.linalg.norm(noise, axis=1, keepdims=True), 1e-300)
    rotation = scipy.stats.special_ortho_group.rvs(x.shape[1], random_state=rng)
    return (x + (shift + noise)[y]) @ rotation


def mechanism_summary(
    z0: ArrayLike,
    zt: ArrayLike,
    labels: ArrayLike,
    *,
    reference: Any = None,
    n_permutations: int = 199,
    random_state: int = 0,
    **ped_options: Any,
) -> dict[str, Any]:
    """Energy and direction for one model and task: ``energy_before`` :math:`U(Z_0)`,
    ``energy_finetuned`` :math:`U(Z_T)`, ``energy_ped`` :math:`U(\\mathrm{PED}(Z_0))` (each on
    its own standardisation), ``cosine`` (mean over classes of :func:`shift_alignment` between
    fine-tuning's and PED's centred shifts, in :math:`Z_0`'s standardised space; PED run with
    ``reference`` (default ``None``: the target's own statistics; the verdict passes the
    encoder's source statistics, as its PED arm uses) and ``ped_options``), ``cosines`` per
    class and ``chance`` = :math:`1/\\sqrt{D}`, the typical size of a random cosine;
    ``distance_rho`` and ``distance_p`` (:func:`distance_agreement` of fine-tuning's and PED's
    distance changes, ``n_permutations`` permutations), ``distance_null_sd`` (the null's SD),
    ``radial_rho`` (the same agreement with the label-informed control's distance changes,
    :func:`ped.inference.radial_shift` of PED's shift, in place of PED's), ``closeness_rho``
    (Spearman's :math:`\\rho` of fine-tuning's changes with the closeness :math:`-d_{ij}` of
    the pairs in :math:`Z_0`: "close classes separate most", with no dynamics at all), and
    ``control_rho``, ``control_p`` (the test on :func:`positive_control`'s set in place of
    :math:`Z_T`); ``moved`` holds PED's features
    :math:`\\mathrm{PED}(Z_0)`, for callers that score them."""
    x0, y, _ = check_features_labels(z0, labels)
    nsigma = float(ped_options.get("nsigma", PEDOptions.nsigma))
    result = potential_energy_descent(x0, y, reference=reference, **ped_options)
    moved = result.features
    cos = shift_alignment(centred_shifts(x0, zt, y), centred_shifts(x0, moved, y))
    d0 = centre_distances(x0, y)  # the distances before, shared by every comparison

    def change(after: ArrayLike) -> NDArray[np.float64]:
        return _log_ratio(d0, centre_distances(after, y))

    ped_change, finetuned_change = change(moved), change(zt)
    geometry = distance_agreement(finetuned_change, ped_change,
                                  n_permutations=n_permutations, random_state=random_state)
    scale = None if reference is None else np.asarray(reference[1])
    radial = distance_agreement(finetuned_change,  # its rho only
                                change(radial_shift(x0, y, result.shift, scale=scale)),
                                n_permutations=1)  # fmt: skip
    iu = np.triu_indices(d0.shape[0], 1)
    near = -d0[iu]
    closeness = float(scipy.stats.spearmanr(finetuned_change[iu], near).statistic) \
        if np.ptp(finetuned_change[iu]) > 0 and np.ptp(near) > 0 else float("nan")
    control = distance_agreement(change(positive_control(x0, y, moved,
                                                         random_state=random_state)),
                                 ped_change, n_permutations=n_permutations,
                                 random_state=random_state)  # fmt: skip
    return {
        "energy_before": energy(x0, y, nsigma=nsigma),
        "energy_finetuned": energy(zt, y, nsigma=nsigma),
        "energy_ped": energy(moved, y, nsigma=nsigma),
        "cosine": float(np.nanmean(cos)) if np.isfinite(cos).any() else float("nan"),
        "cosines": cos,
        "chance": 1.0 / np.sqrt(x0.shape[1]),
        "distance_rho": geometry.rho,
        "distance_p": geometry.p_value,
        "distance_null_sd": float(geometry.null.std()),
        "radial_rho": radial.rho,
        "closeness_rho": closeness,
        "control_rho": control.rho,
        "control_p": control.p_value,
        "moved": moved,
    }


@dataclass(frozen=True)
class GeometrySummary:
    """The geometry test over many model x task pairs (:func:`geometry_summary`): the mean
    :math:`\\rho` of fine-tuning's distance changes with PED's and its bootstrap interval, the
    share of pairs whose permutation p-value is below ``alpha`` (``significant``) and the
    one-sided binomial p-value of that count against the share ``alpha`` expected under the
    null (``binomial_p``; a Holm correction over many pairs cannot reject at a permutation
    p-value's resolution), the positive control's mean :math:`\\rho` and
    detection rate, and the two comparators' mean :math:`\\rho` (the label-informed radial move,
    and the closeness of the pairs with no dynamics)."""

    n_pairs: int
    rho: float
    rho_low: float
    rho_high: float
    significant: float
    binomial_p: float
    control_rho: float
    control_detected: float
    radial_rho: float
    closeness_rho: float
    closeness_beats_ped: float


def geometry_summary(
    table: Any, *, alpha: float = 0.05, n_resamples: int = 1000, random_state: int = 0
) -> GeometrySummary:
    """:class:`GeometrySummary` of a table with one row per model x task and the columns of
    :func:`mechanism_summary` (``distance_rho``, ``distance_p``, ``control_rho``,
    ``control_p``, ``radial_rho``, ``closeness_rho``) and ``task``; the interval resamples the
    models within each task (percentile, ``n_resamples``); pairs where nothing moved (NaN) are
    left out."""
    t = table.dropna(subset=["distance_rho", "distance_p"])
    if t.empty:
        raise ValueError("no model x task pair with a defined geometry test")
    rng = np.random.default_rng(random_state)
    groups = [g["distance_rho"].to_numpy() for _, g in t.groupby("task")]
    draws = np.array([np.concatenate([rng.choice(g, g.size) for g in groups]).mean()
                      for _ in range(n_resamples)])  # fmt: skip
    low, high = np.quantile(draws, [alpha / 2, 1 - alpha / 2])
    p = t["distance_p"].to_numpy()
    control = t.dropna(subset=["control_p"])
    return GeometrySummary(
        n_pairs=len(t), rho=float(t["distance_rho"].mean()), rho_low=float(low),
        rho_high=float(high), significant=float((p < alpha).mean()),
        binomial_p=float(scipy.stats.binomtest(int((p < alpha).sum()), len(p), alpha,
                                               alternative="greater").pvalue),
        control_rho=float(control["control_rho"].mean()),
        control_detected=float((control["control_p"] < alpha).mean()),
        radial_rho=float(t["radial_rho"].mean()), closeness_rho=float(t["closeness_rho"].mean()),
        closeness_beats_ped=float((t["closeness_rho"] > t["distance_rho"]).mean()),
    )  # fmt: skip
