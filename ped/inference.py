r"""Calibrated inference for the verdict on PED: intervals that resample what varies, and controls.

Table 1 compares two rankings of one zoo: a metric's scores on the encoders' features and its
scores after PED.  Three things vary between a benchmark and its replication, and an interval on
the change in :math:`\tau_w` must resample all three:

- **the models**: a zoo is a sample of the models one could have trained;
- **the evaluation seeds** of the fine-tuning ground truth;
- **the scored images**: the labelled images a practitioner happens to hold.

:func:`hierarchical_bootstrap` draws, per resample and per cell (task x metric), the models
with replacement, the seeds with replacement and one image replicate (the metric recomputed on
a class-stratified bootstrap of the images, :func:`image_replicates`), and recomputes the paired
change :math:`\Delta = \tau_w(\text{PED}) - \tau_w(\text{none})` on the same draw, so the two
arms share their noise.  Drawing models with replacement scores tied duplicates of a model;
the verdict's intervals now come from :mod:`ped.replication` (models fixed, or a jackknife over
models), which also measures, on simulated benchmarks, the false-positive rate, coverage and
power of its tests.  Per-cell calls are corrected with Holm's step-down method
(:func:`holm`), which controls the family-wise error rate without assumptions on the
dependence between cells.

Controls: :func:`placebo_shift` moves each class by the length of its PED shift in a random
direction (a placebo of the same size), and :func:`shuffled_label_ped` runs PED with permuted
labels; :func:`leave_one_out` recomputes a statistic without each model in turn.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ped.dynamics import potential_energy_descent
from ped.evaluation import weighted_tau

__all__ = [
    "Cell",
    "BootstrapResult",
    "image_replicates",
    "hierarchical_bootstrap",
    "bootstrap_pvalue",
    "holm",
    "placebo_shift",
    "radial_shift",
    "shuffled_label_ped",
    "leave_one_out",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cell:
    """One task x metric of the comparison.

    ``base`` and ``treated`` are ``(R, M)`` score arrays of the ``M`` models: row 0 scores all
    the task's labelled images, rows 1..R-1 image replicates (:func:`image_replicates`), the same
    replicates in both arms.  ``accuracy`` is ``(M, S)``: the models' test accuracies over the
    ``S`` evaluation seeds.  Cells of one ``group`` (the metrics of one task) share every
    bootstrap draw of models, seeds and images (:func:`hierarchical_bootstrap`); ``None`` puts
    the cell in a group of its own.
    """

    base: NDArray[np.floating]
    treated: NDArray[np.floating]
    accuracy: NDArray[np.floating]
    group: str | None = None

    def __post_init__(self) -> None:
        base, treated, acc = (np.asarray(a, dtype=float) for a in
                              (self.base, self.treated, self.accuracy))  # fmt: skip
        if base.ndim != 2 or base.shape != treated.shape:
            raise ValueError(f"base and treated must be (R, M) arrays of one shape, got "
                             f"{base.shape} and {treated.shape}")  # fmt: skip
        if acc.ndim != 2 or acc.shape[0] != base.shape[1]:
            raise ValueError(f"accuracy must be (M, S) with M = {base.shape[1]} models, got "
                             f"{acc.shape}")  # fmt: skip
        if base.shape[1] < 3 or acc.shape[1] < 1:
            raise ValueError("a cell needs at least 3 models and 1 seed")
        for name, a in (("base", base), ("treated", treated), ("accuracy", acc)):
            if not np.isfinite(a).all():
                raise ValueError(f"{name} holds NaN or inf")
        object.__setattr__(self, "base", base)
        object.__setattr__(self, "treated", treated)
        object.__setattr__(self, "accuracy", acc)

    def change(self) -> float:
        r""":math:`\tau_w(\text{treated}) - \tau_w(\text{base})` on all images, models, seeds."""
        truth = self.accuracy.mean(axis=1)
        return weighted_tau(self.treated[0], truth) - weighted_tau(self.base[0], truth)


@dataclass(frozen=True)
class BootstrapResult:
    """The mean change over cells, its resamples and percentile interval.

    ``per_cell`` holds each cell's estimate and ``cell_draws`` its resampled changes
    (``n_resamples`` x cells); ``degenerate`` counts draws in which some cell's ranking was
    undefined (constant scores or accuracies among the drawn models) and was redrawn.
    """

    estimate: float
    low: float
    high: float
    draws: NDArray[np.float64]
    per_cell: NDArray[np.float64]
    cell_draws: NDArray[np.float64]
    confidence: float
    resampled: tuple[str, ...]
    degenerate: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def clear(self) -> bool:
        """The interval excludes zero."""
        return bool(self.low > 0 or self.high < 0)

    def cell_pvalues(self) -> NDArray[np.float64]:
        """Two-sided bootstrap p-value of each cell (:func:`bootstrap_pvalue`)."""
        return np.array([bootstrap_pvalue(self.cell_draws[:, j])
                         for j in range(self.cell_draws.shape[1])])  # fmt: skip


def image_replicates(
    labels: ArrayLike, n_replicates: int, *, random_state: int = 0
) -> list[NDArray[np.intp]]:
    """Indices of ``n_replicates`` class-stratified bootstrap samples of a labelled set.

    Each class keeps its count: its images are drawn with replacement among its own, so every
    replicate has every class (metrics need at least one image per class, most need two).
    Replicate ``r`` uses ``np.random.default_rng([random_state, r])``.
    """
    y = np.asarray(labels)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"labels must be a non-empty 1-d array, got shape {y.shape}")
    if n_replicates < 1:
        raise ValueError(f"n_replicates must be >= 1, got {n_replicates}")
    groups = [np.flatnonzero(y == c) for c in np.unique(y)]
    out = []
    for r in range(n_replicates):
        rng = np.random.default_rng([random_state, r])
        out.append(np.sort(np.concatenate([rng.choice(g, g.size, replace=True) for g in groups])))
    return out


def _tau_or_none(scores: NDArray[np.floating], truth: NDArray[np.floating]) -> float | None:
    if np.ptp(scores) == 0 or np.ptp(truth) == 0:
        return None
    value = weighted_tau(scores, truth)
    return None if not np.isfinite(value) else value


def hierarchical_bootstrap(
    cells: Sequence[Cell],
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    resample: Sequence[str] = ("models", "seeds", "images"),
    random_state: int = 0,
    max_redraws: int = 100,
) -> BootstrapResult:
    r"""Percentile interval of the mean paired change in :math:`\tau_w` over ``cells``.

    For each resample and each group of cells (a task: its metrics share the draw) independently:
    draw the models (``"models"``, with replacement), the evaluation seeds (``"seeds"``, with
    replacement) and one image replicate (``"images"``: a row 1..R-1 of the score arrays,
    uniformly); the ground truth is the drawn models' mean accuracy over the drawn seeds; a cell's
    change is
    :math:`\tau_w(\text{treated}) - \tau_w(\text{base})` on that draw.  The resample's statistic
    is the mean over cells (the primary endpoint averages tasks and metrics alike).  A draw whose
    ranking is undefined (constant scores or truth among the drawn models) is redrawn, at most
    ``max_redraws`` times per resample, and counted in ``degenerate``.
    """
    if not cells:
        raise ValueError("need at least one cell")
    unknown = set(resample) - {"models", "seeds", "images"}
    if unknown:
        raise ValueError(f"unknown resampling level(s) {sorted(unknown)}: models, seeds, images")
    if "images" in resample and any(c.base.shape[0] < 2 for c in cells):
        raise ValueError("resampling images needs image replicates (rows 1..R-1) in every cell")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    rng = np.random.default_rng(random_state)
    per_cell = np.array([c.change() for c in cells])
    cell_draws = np.empty((n_resamples, len(cells)))
    degenerate = 0
    groups: dict[Any, list[int]] = {}
    for j, cell in enumerate(cells):
        groups.setdefault(("cell", j) if cell.group is None else cell.group, []).append(j)
    for key, members in groups.items():
        shapes = {(cells[j].base.shape, cells[j].accuracy.shape) for j in members}
        if len(shapes) != 1:
            raise ValueError(f"the cells of group {key!r} must share models, seeds and image "
                             f"replicates, got shapes {sorted(shapes)}")  # fmt: skip
    for b in range(n_resamples):
        for key, members in groups.items():
            n_rep, n_models = cells[members[0]].base.shape
            n_seeds = cells[members[0]].accuracy.shape[1]
            for _ in range(max_redraws):
                m = rng.integers(0, n_models, n_models) if "models" in resample else \
                    np.arange(n_models)  # fmt: skip
                s = rng.integers(0, n_seeds, n_seeds) if "seeds" in resample else \
                    np.arange(n_seeds)  # fmt: skip
                r = int(rng.integers(1, n_rep)) if "images" in resample else 0
                changes = []
                for j in members:
                    truth = cells[j].accuracy[np.ix_(m, s)].mean(axis=1)
                    t1 = _tau_or_none(cells[j].treated[r, m], truth)
                    t0 = _tau_or_none(cells[j].base[r, m], truth)
                    if t1 is None or t0 is None:
                        break
                    changes.append(t1 - t0)
                if len(changes) == len(members):
                    cell_draws[b, members] = changes
                    break
                degenerate += 1
            else:
                raise ValueError(f"group {key!r}: {max_redraws} degenerate draws in a row "
                                 "(constant scores or accuracies)")  # fmt: skip
    draws = cell_draws.mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(draws, [alpha, 1 - alpha])
    return BootstrapResult(float(per_cell.mean()), float(low), float(high), draws, per_cell,
                           cell_draws, confidence, tuple(resample), degenerate)  # fmt: skip


def bootstrap_pvalue(draws: ArrayLike) -> float:
    """Two-sided p-value of "no change" from bootstrap draws of a change:
    :math:`\\min(1, 2 \\min(P(d \\le 0), P(d \\ge 0)))`, with the +1 correction of a Monte-Carlo
    p-value (``(k + 1) / (B + 1)``) so that it is never 0."""
    d = np.asarray(draws, dtype=float)
    if d.ndim != 1 or d.size == 0 or not np.isfinite(d).all():
        raise ValueError("draws must be a non-empty 1-d array of finite values")
    k = min(int((d <= 0).sum()), int((d >= 0).sum()))
    return float(min(1.0, 2 * (k + 1) / (d.size + 1)))


def holm(pvalues: ArrayLike, alpha: float = 0.05) -> NDArray[np.bool_]:
    r"""Holm's step-down rejections: sort the :math:`m` p-values, reject
    :math:`p_{(k)}` while :math:`p_{(k)} \le \alpha / (m - k + 1)` for every :math:`k' \le k`.
    Controls the family-wise error rate at ``alpha`` under any dependence."""
    p = np.asarray(pvalues, dtype=float)
    if p.ndim != 1 or not ((p >= 0) & (p <= 1)).all():
        raise ValueError("p-values must be a 1-d array in [0, 1]")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    order = np.argsort(p, kind="stable")
    reject = np.zeros(p.size, dtype=bool)
    for k, i in enumerate(order):
        if p[i] > alpha / (p.size - k):
            break
        reject[i] = True
    return reject


def _class_move_inputs(
    features: ArrayLike, labels: ArrayLike, shift: ArrayLike, scale: ArrayLike | None
) -> tuple[NDArray[Any], NDArray[Any], NDArray[np.float64], NDArray[np.float64]]:
    """Validated ``features, labels, shift, scale`` of :func:`placebo_shift` and
    :func:`radial_shift`."""
    x = np.asarray(features)
    y = np.asarray(labels)
    s = np.asarray(shift, dtype=np.float64)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"features (N, D) and labels (N,) needed, got {x.shape} and {y.shape}")
    if s.ndim != 2 or s.shape[1] != x.shape[1] or y.min() < 0 or y.max() >= s.shape[0]:
        raise ValueError(f"shift must be (C, {x.shape[1]}) with labels in 0..C-1, got {s.shape}")
    sd = np.ones(x.shape[1]) if scale is None else np.asarray(scale, dtype=np.float64)
    if sd.shape != (x.shape[1],) or not (sd > 0).all():
        raise ValueError(f"scale must be ({x.shape[1]},) and positive")
    return x, y, s, sd


def placebo_shift(
    features: ArrayLike,
    labels: ArrayLike,
    shift: ArrayLike,
    *,
    scale: ArrayLike | None = None,
    random_state: int = 0,
) -> NDArray[np.floating]:
    """Move each class rigidly by the length of its PED shift, in a uniformly random direction.

    ``shift`` is PED's ``(C, D)`` class translation (:class:`ped.PEDResult`'s ``shift``, in
    the features' units).  With ``scale`` (the per-dimension standard deviation PED standardised
    with), lengths and directions are taken in the standardised space where PED acts, then mapped
    back; otherwise in the features' own units.  A new array of the features' dtype is returned.
    """
    x, y, s, sd = _class_move_inputs(features, labels, shift, scale)
    rng = np.random.default_rng(random_state)
    length = np.linalg.norm(s / sd, axis=1)
    direction = rng.standard_normal(s.shape)
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    placebo = direction * length[:, None] * sd
    return (x + placebo[y]).astype(x.dtype, copy=False)


def radial_shift(
    features: ArrayLike,
    labels: ArrayLike,
    shift: ArrayLike,
    *,
    scale: ArrayLike | None = None,
) -> NDArray[np.floating]:
    r"""The label-informed control: each class moved rigidly away from the grand mean, along
    the ray from the grand mean :math:`\bar x` through its centre :math:`c_i`, by the length of
    its PED shift :math:`\lVert s_i \rVert`:

    .. math::
        x \mapsto x + \lVert s_{y} \rVert \, \frac{c_{y} - \bar x}{\lVert c_{y} - \bar x
        \rVert}.

    It uses the labels and PED's own step sizes, but no energy: the classes spread out as a
    whole instead of moving apart where they overlap.  With ``scale`` (PED's per-dimension SD)
    directions and lengths are taken in the standardised space, as in :func:`placebo_shift`.
    A class whose centre is the grand mean does not move.  A new array of the features' dtype
    is returned.
    """
    x, y, s, sd = _class_move_inputs(features, labels, shift, scale)
    z = np.asarray(x, dtype=np.float64) / sd
    n_classes = s.shape[0]
    counts = np.bincount(y, minlength=n_classes)
    sums = np.zeros((n_classes, x.shape[1]))
    np.add.at(sums, y, z)
    centres = sums / np.maximum(counts, 1)[:, None]
    ray = centres - z.mean(axis=0)
    norm = np.linalg.norm(ray, axis=1, keepdims=True)
    direction = np.divide(ray, norm, out=np.zeros_like(ray), where=norm > 0)
    move = direction * np.linalg.norm(s / sd, axis=1)[:, None] * sd
    return (x + move[y]).astype(x.dtype, copy=False)


def shuffled_label_ped(
    features: ArrayLike, labels: ArrayLike, *, random_state: int = 0, **ped_options: Any
) -> NDArray[np.floating]:
    """PED run on a random permutation of the labels (the scoring keeps the true labels): the
    same machinery, without the class structure it is meant to exploit."""
    y = np.asarray(labels)
    permuted = np.random.default_rng(random_state).permutation(y)
    return potential_energy_descent(features, permuted, **ped_options).features


def leave_one_out(
    names: Sequence[str], statistic: Callable[[NDArray[np.bool_]], float]
) -> dict[str, float]:
    """``statistic(mask)`` with each model left out in turn (``mask`` selects the others)."""
    out = {}
    for i, name in enumerate(names):
        mask = np.ones(len(names), dtype=bool)
        mask[i] = False
        out[name] = float(statistic(mask))
    return out
