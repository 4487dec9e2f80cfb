r"""Replication inference: is the replica's change in :math:`\tau_w` the paper's, or zero?

A replication asks two questions of PED's change :math:`\Delta = \tau_w(\text{PED}) -
\tau_w(\text{none})`: is it above zero, and is it below the published gain?  Each answer depends
on what is held fixed, so the estimand is named first.

**Estimands.**  With :math:`T` tasks, :math:`M` models and per task a ground truth averaged
over evaluation seeds, the observed endpoint :math:`\hat\Delta` (the mean over cells, a cell
being one task x metric) estimates

- :math:`\Delta_{\text{zoo}}`, *this zoo*: the change for these :math:`M` encoders on these
  tasks, with infinitely many fine-tuning seeds and scored images.  Only the seeds and the
  images vary; its interval is a bootstrap of both with the models fixed
  (:func:`zoo_bootstrap`).
- :math:`\Delta_{\text{pop}}`, *the zoo as a sample of encoders*: the mean of
  :math:`\Delta_{\text{zoo}}` over zoos drawn from the population the encoders came from.  Its
  variance adds the models' sampling variance, estimated by the delete-one-model jackknife,
  :math:`\widehat{\mathrm{var}}_J = \tfrac{M-1}{M}\sum_i (\hat\Delta_{(i)} -
  \bar\Delta_{(\cdot)})^2`, to the bootstrap variance of seeds and images, and the interval is
  normal: :math:`\hat\Delta \pm z_{1-\alpha/2}\sqrt{\widehat{\mathrm{var}}_J +
  \widehat{\mathrm{var}}_{B}}`.  Unlike a bootstrap that draws models with replacement, the
  jackknife never scores tied duplicates of a model (a with-replacement draw holds about
  :math:`(1 - 1/e) M \approx 8` distinct models of 13, tied on scores and ground truth).
- *tasks as a sample too*: the per-task changes' standard error, :math:`s_T/\sqrt{T}` (which
  already carries each task's seed, image and model noise), with :math:`t_{T-1}` quantiles.

**Tests**, one-sided, for each metric and their mean: :math:`H_0: \Delta \le 0` against a gain,
and :math:`H_0: \Delta \ge \delta_{\text{pub}}` against a change smaller than the published
gain :math:`\delta_{\text{pub}}` (:func:`ped.paper.published_gains`).  For *this zoo* the
p-value is the bootstrap share of draws on the null's side, :math:`(k + 1)/(B + 1)`; for the
population, :math:`1 - \Phi(\hat\Delta/\mathrm{se})` and :math:`\Phi((\hat\Delta -
\delta_{\text{pub}})/\mathrm{se})`.

**Calibration and power** of these tests, on benchmarks simulated in the data's shape, are in
:mod:`ped.power`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import scipy.stats
from numpy.typing import ArrayLike, NDArray

from ped.inference import Cell

__all__ = [
    "weighted_tau_rows",
    "cell_changes",
    "zoo_bootstrap",
    "ReplicationEstimate",
    "replicate",
    "as_frame",
]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# The statistic, vectorised
# --------------------------------------------------------------------------------------------


def weighted_tau_rows(scores: ArrayLike, truth: ArrayLike) -> NDArray[np.float64]:
    r""":math:`\tau_w` (:func:`ped.evaluation.weighted_tau`, scipy's ``weightedtau`` with its
    defaults) of each row pair of two ``(B, M)`` arrays.

    Without ties, the hyperbolic weights :math:`w(r) = 1/(r+1)` of the ranks :math:`r^x, r^y`
    (0 = largest) give, with :math:`C_i = \sum_j \mathrm{sgn}(x_i - x_j)\,\mathrm{sgn}(y_i -
    y_j)`,

    .. math::
        \tau_w = \frac{\sum_i \left(w(r^x_i) + w(r^y_i)\right) C_i}{2 (M-1) \sum_{r=0}^{M-1}
        \tfrac{1}{r+1}},

    the mean of the two rankings' values (each pair weighted :math:`w_i + w_j`).  Rows with
    ties are computed by scipy.  A row whose scores (or truth) are all equal ranks nothing:
    its :math:`\tau_w` is 0 (scipy's is undefined), so that a metric that cannot tell the models
    apart (SFDA on two images per class) counts as uninformative rather than breaking an
    average.
    """
    x = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    y = np.atleast_2d(np.asarray(truth, dtype=np.float64))
    if x.shape != y.shape or x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"scores and truth must be (B, M) arrays of one shape with M >= 2, "
                         f"got {x.shape} and {y.shape}")  # fmt: skip
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("scores and truth must be finite")
    m = x.shape[1]
    sx = np.sign(x[:, :, None] - x[:, None, :])
    sy = np.sign(y[:, :, None] - y[:, None, :])
    concord = (sx * sy).sum(axis=2)
    wx = 1.0 / (np.argsort(np.argsort(-x, axis=1), axis=1) + 1.0)
    wy = 1.0 / (np.argsort(np.argsort(-y, axis=1), axis=1) + 1.0)
    harmonic = (1.0 / np.arange(1, m + 1)).sum()
    out = ((wx + wy) * concord).sum(axis=1) / (2 * (m - 1) * harmonic)
    ties = ((sx == 0).sum(axis=(1, 2)) > m) | ((sy == 0).sum(axis=(1, 2)) > m)
    for b in np.flatnonzero(ties):
        out[b] = scipy.stats.weightedtau(x[b], y[b]).statistic
    out[(np.ptp(x, axis=1) == 0) | (np.ptp(y, axis=1) == 0)] = 0.0
    return out


def _cell_arrays(cells: Sequence[Cell]) -> None:
    if not cells:
        raise ValueError("need at least one cell")
    models = {c.base.shape[1] for c in cells}
    if len(models) != 1:
        raise ValueError(f"every cell must score the same models, got counts {sorted(models)}")


def zoo_bootstrap(
    cells: Sequence[Cell], *, n_resamples: int = 1000, random_state: int = 0
) -> NDArray[np.float64]:
    r"""``(n_resamples, len(cells))`` paired changes with the models fixed: per resample and per
    group of cells (a task; its metrics share the draw), the evaluation seeds drawn with
    replacement and one image replicate (rows 1..R-1) uniformly; each cell's change is
    :math:`\tau_w(\text{treated}) - \tau_w(\text{base})` on that draw (the estimand *this zoo*).
    """
    _cell_arrays(cells)
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if any(c.base.shape[0] < 2 for c in cells):
        raise ValueError("resampling images needs image replicates (rows 1..R-1) in every cell")
    rng = np.random.default_rng(random_state)
    out = np.empty((n_resamples, len(cells)))
    groups: dict[object, list[int]] = {}
    for j, cell in enumerate(cells):
        groups.setdefault(("cell", j) if cell.group is None else cell.group, []).append(j)
    for members in groups.values():
        first = cells[members[0]]
        n_rep, n_seeds = first.base.shape[0], first.accuracy.shape[1]
        seeds = rng.integers(0, n_seeds, (n_resamples, n_seeds))
        reps = rng.integers(1, n_rep, n_resamples)
        for j in members:
            acc = cells[j].accuracy
            if acc.shape != first.accuracy.shape or cells[j].base.shape != first.base.shape:
                raise ValueError("the cells of one group must share models, seeds and replicates")
            truth = acc[:, seeds].mean(axis=2).T  # (B, M)
            out[:, j] = (weighted_tau_rows(cells[j].treated[reps], truth)
                         - weighted_tau_rows(cells[j].base[reps], truth))  # fmt: skip
    return out


def cell_changes(cells: Sequence[Cell]) -> NDArray[np.float64]:
    """Each cell's change :math:`\\tau_w(\\text{treated}) - \\tau_w(\\text{base})` on all
    images, models and seeds (:meth:`ped.inference.Cell.change`), every cell in one batch."""
    truth = np.stack([c.accuracy.mean(axis=1) for c in cells])
    return (weighted_tau_rows(np.stack([c.treated[0] for c in cells]), truth)
            - weighted_tau_rows(np.stack([c.base[0] for c in cells]), truth))  # fmt: skip


def _jackknife_models(cells: Sequence[Cell]) -> NDArray[np.float64]:
    """``(M, len(cells))``: each cell's change with model ``i`` left out (row ``i``)."""
    n_models = cells[0].base.shape[1]
    kept = np.array([np.delete(np.arange(n_models), i) for i in range(n_models)])  # (M, M-1)
    out = np.empty((n_models, len(cells)))
    for j, c in enumerate(cells):
        truth = c.accuracy.mean(axis=1)[kept]
        out[:, j] = (weighted_tau_rows(c.treated[0][kept], truth)
                     - weighted_tau_rows(c.base[0][kept], truth))  # fmt: skip
    return out


# --------------------------------------------------------------------------------------------
# Estimates, intervals and tests
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplicationEstimate:
    """One metric's (or the mean's) change in :math:`\\tau_w`, under each estimand.

    ``zoo_low``/``zoo_high``: percentile interval with the models fixed; ``pop_low``/
    ``pop_high``: normal interval with the models a sample (``se_models`` from the jackknife,
    ``se_seeds_images`` from the bootstrap); ``tasks_low``/``tasks_high``: the tasks a sample
    too (``se_tasks``, :math:`t_{T-1}`).  ``p_zero_*``: one-sided p-values of
    :math:`H_0: \\Delta \\le 0`; ``p_published_*``: of :math:`H_0: \\Delta \\ge` ``published``.
    """

    label: str
    estimate: float
    published: float
    zoo_low: float
    zoo_high: float
    pop_low: float
    pop_high: float
    tasks_low: float
    tasks_high: float
    se_seeds_images: float
    se_models: float
    se_pop: float
    se_tasks: float
    p_zero_zoo: float
    p_published_zoo: float
    p_zero_pop: float
    p_published_pop: float
    p_zero_tasks: float
    p_published_tasks: float
    n_tasks: int
    n_models: int
    confidence: float


def _estimate(
    label: str,
    columns: NDArray[np.intp],
    point: NDArray[np.float64],
    draws: NDArray[np.float64],
    jack: NDArray[np.float64],
    task_of: Sequence[object],
    published: float,
    confidence: float,
) -> ReplicationEstimate:
    est = float(point[columns].mean())
    d = draws[:, columns].mean(axis=1)
    alpha = 1 - confidence
    zoo_low, zoo_high = np.quantile(d, [alpha / 2, 1 - alpha / 2])
    j = jack[:, columns].mean(axis=1)
    m = j.size
    se_models = float(np.sqrt((m - 1) / m * ((j - j.mean()) ** 2).sum()))
    se_b = float(d.std(ddof=1))
    se_pop = float(np.hypot(se_models, se_b))
    z = scipy.stats.norm.ppf(1 - alpha / 2)
    tasks = list(dict.fromkeys(task_of[c] for c in columns))
    per_task = np.array([point[[c for c in columns if task_of[c] == t]].mean() for t in tasks])
    t_count = len(tasks)
    if t_count > 1:
        se_tasks = float(np.sqrt(per_task.var(ddof=1) / t_count + se_models**2))
        q = scipy.stats.t.ppf(1 - alpha / 2, t_count - 1)
        p0_t = float(scipy.stats.t.sf(est / se_tasks, t_count - 1)) if se_tasks > 0 else np.nan
        pp_t = float(scipy.stats.t.cdf((est - published) / se_tasks, t_count - 1)) \
            if se_tasks > 0 else np.nan  # fmt: skip
    else:
        se_tasks, q, p0_t, pp_t = float("nan"), float("nan"), float("nan"), float("nan")
    b = d.size
    return ReplicationEstimate(
        label=label, estimate=est, published=float(published),
        zoo_low=float(zoo_low), zoo_high=float(zoo_high),
        pop_low=float(est - z * se_pop), pop_high=float(est + z * se_pop),
        tasks_low=float(est - q * se_tasks), tasks_high=float(est + q * se_tasks),
        se_seeds_images=se_b, se_models=se_models, se_pop=se_pop, se_tasks=se_tasks,
        p_zero_zoo=float(((d <= 0).sum() + 1) / (b + 1)),
        p_published_zoo=float(((d >= published).sum() + 1) / (b + 1)),
        p_zero_pop=float(scipy.stats.norm.sf(est / se_pop)) if se_pop > 0 else float("nan"),
        p_published_pop=float(scipy.stats.norm.cdf((est - published) / se_pop))
        if se_pop > 0 else float("nan"),
        p_zero_tasks=p0_t, p_published_tasks=pp_t,
        n_tasks=t_count, n_models=m, confidence=confidence,
    )  # fmt: skip


def replicate(
    cells: Sequence[Cell],
    metrics: Sequence[str],
    published: Mapping[str, float],
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    random_state: int = 0,
    draws: NDArray[np.float64] | None = None,
) -> dict[str, ReplicationEstimate]:
    r"""Each metric's change and the mean over metrics, under the three estimands, with the
    one-sided tests against zero and against ``published`` (metric -> published gain, and
    ``"mean"``).

    ``cells`` are task x metric cells (:class:`ped.inference.Cell`, ``group`` = the task),
    ``metrics[j]`` the metric of ``cells[j]``; every cell scores the same models in the same
    order (the jackknife leaves model ``i`` out of every task at once).  ``draws``: stored
    :func:`zoo_bootstrap` draws to reuse.  The *tasks* estimand's standard error adds the
    models' jackknife variance to the spread of the per-task changes (the same zoo is used on
    every task, so the task spread does not carry the choice of models).
    """
    _cell_arrays(cells)
    if len(metrics) != len(cells):
        raise ValueError(f"{len(metrics)} metric labels for {len(cells)} cells")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    missing = [m for m in [*dict.fromkeys(metrics), "mean"] if m not in published]
    if missing:
        raise ValueError(f"no published gain for {missing}")
    point = cell_changes(cells)
    if draws is None:
        draws = zoo_bootstrap(cells, n_resamples=n_resamples, random_state=random_state)
    elif draws.shape[1] != len(cells):
        raise ValueError(f"draws must have {len(cells)} columns, got {draws.shape}")
    jack = _jackknife_models(cells)
    task_of = [c.group for c in cells]
    out = {}
    for metric in dict.fromkeys(metrics):
        cols = np.array([j for j, m in enumerate(metrics) if m == metric])
        out[metric] = _estimate(metric, cols, point, draws, jack, task_of, published[metric],
                                confidence)  # fmt: skip
    out["mean"] = _estimate("mean", np.arange(len(cells)), point, draws, jack, task_of,
                            published["mean"], confidence)  # fmt: skip
    return out


def as_frame(estimates: Mapping[str, ReplicationEstimate]) -> pd.DataFrame:
    """The estimates as a table, one row per label."""
    return pd.DataFrame([asdict(e) for e in estimates.values()]).set_index("label")
