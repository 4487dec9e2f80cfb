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

**Calibration and power** come from benchmarks simulated in the data's shape
(:class:`BenchmarkShape`, :func:`measure_shape`, :func:`simulate`): true qualities
:math:`\mu_m \sim N(0, 1)` per task, evaluation runs with the task's seed count and seed SD,
each metric's two arms *paired* (their errors correlated as measured, the metrics' errors too),
image replicates with the measured size and the arms' measured pairing.  A gain
:math:`\delta` is a treated arm whose error SD gives a Kendall-type agreement larger by
:math:`\delta` (:math:`\tau = \tfrac{2}{\pi}\arcsin\rho`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace

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
    "BenchmarkShape",
    "measure_shape",
    "simulate_benchmark",
    "simulate",
    "calibration",
    "power_curve",
    "minimum_detectable_effect",
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


# --------------------------------------------------------------------------------------------
# Simulated benchmarks in the data's shape
# --------------------------------------------------------------------------------------------


def _tau_to_sd(tau: float) -> float:
    r"""The error SD :math:`\sigma` that gives a Gaussian score :math:`\mu + \sigma e` the
    Kendall-type agreement ``tau`` with :math:`\mu`: :math:`\rho = \sin(\pi\tau/2)`,
    :math:`\sigma = \sqrt{1/\rho^2 - 1}`."""
    rho = np.sin(np.pi * np.clip(tau, 0.02, 0.98) / 2)
    return float(np.sqrt(1 / rho**2 - 1))


def _sd_to_tau(sd: float) -> float:
    return float(2 / np.pi * np.arcsin(1 / np.sqrt(1 + sd**2)))


@dataclass(frozen=True)
class BenchmarkShape:
    """What a simulated benchmark copies from the real one (:func:`measure_shape`).

    Per task: ``n_seeds`` and ``seed_sd`` (the evaluation runs' SD in units of the SD of the
    models' true accuracies); per task x metric ``metric_sd`` (the base arm's error SD, same
    units).  Pooled: ``arm_corr`` (a metric's errors, base against PED), ``metric_corr``
    (between metrics), ``image_sd`` (an image replicate's deviation over the SD of the scores
    across models) and ``image_corr`` (a replicate's deviation, base against PED)."""

    tasks: tuple[str, ...]
    metrics: tuple[str, ...]
    n_models: int
    n_replicates: int
    n_seeds: tuple[int, ...]
    seed_sd: tuple[float, ...]
    metric_sd: tuple[tuple[float, ...], ...]
    arm_corr: float
    metric_corr: float
    image_sd: float
    image_corr: float


def _zscore(v: NDArray[np.float64]) -> NDArray[np.float64]:
    return (v - v.mean()) / v.std()


def _pool_corr(values: list[float]) -> float:
    """Mean of correlations on Fisher's z scale."""
    z = np.arctanh(np.clip(values, -0.999, 0.999))
    return float(np.tanh(np.mean(z)))


def measure_shape(
    cells: Sequence[Cell], metrics: Sequence[str], *, match_changes: bool = True
) -> BenchmarkShape:
    """The :class:`BenchmarkShape` of real cells (task x metric, ``group`` = task).

    Every parameter but one is measured directly.  The pairing of the two arms is the one that
    decides how much a cell's change varies, and the residual correlation of the two arms'
    scores (a Gaussian summary) understates how far PED reorders a few models: with
    ``match_changes``, ``arm_corr`` is instead the value at which null benchmarks reproduce the
    root-mean-square of the real cells' changes about their metric's mean (the per-metric means
    removed, so that an effect does not count as noise).
    """
    _cell_arrays(cells)
    if len(metrics) != len(cells):
        raise ValueError(f"{len(metrics)} metric labels for {len(cells)} cells")
    order = list(dict.fromkeys(metrics))
    tasks = list(dict.fromkeys(c.group for c in cells))
    n_seeds, seed_sd, metric_sd = [], [], []
    arm, between, img_sd, img_corr = [], [], [], []
    for task in tasks:
        cols = {metrics[j]: cells[j] for j in range(len(cells)) if cells[j].group == task}
        acc = next(iter(cols.values())).accuracy
        s = acc.shape[1]
        within = acc.var(axis=1, ddof=1).mean()
        spread2 = max(acc.mean(axis=1).var(ddof=1) - within / s, 1e-12)
        n_seeds.append(s)
        seed_sd.append(float(np.sqrt(within / spread2)))
        truth = acc.mean(axis=1)
        sds, resid = [], {}
        for metric in order:
            cell = cols[metric]
            rho_obs = abs(np.corrcoef(scipy.stats.rankdata(cell.base[0]),
                                      scipy.stats.rankdata(truth))[0, 1])  # fmt: skip
            rho_obs = np.sin(np.pi / 6 * rho_obs) * 2  # Spearman to Pearson (Gaussian)
            sigma2 = 1 / (max(rho_obs, 0.05) ** 2 * (1 + seed_sd[-1] ** 2 / s)) - 1
            sds.append(float(np.sqrt(max(sigma2, 1e-4))))
            zt = _zscore(truth)
            for arm_name, scores in (("base", cell.base), ("ped", cell.treated)):
                zs = _zscore(scores[0])
                resid[(metric, arm_name)] = zs - np.mean(zs * zt) * zt
                dev = scores[1:] - scores[1:].mean(axis=0)
                if scores[0].std() > 0:
                    img_sd.append(float(dev.std(axis=0, ddof=1).mean() / scores[0].std()))
            dev0 = cell.base[1:] - cell.base[1:].mean(axis=0)
            dev1 = cell.treated[1:] - cell.treated[1:].mean(axis=0)
            img_corr.append(float(np.corrcoef(dev0.ravel(), dev1.ravel())[0, 1]))
            arm.append(float(np.corrcoef(resid[(metric, "base")], resid[(metric, "ped")])[0, 1]))
        metric_sd.append(tuple(sds))
        for a in range(len(order)):
            for b in range(a + 1, len(order)):
                between.append(float(np.corrcoef(resid[(order[a], "base")],
                                                 resid[(order[b], "base")])[0, 1]))  # fmt: skip
    k = len(order)
    metric_corr = _pool_corr(between) if between else 0.0
    shape = BenchmarkShape(
        tasks=tuple(str(t) for t in tasks), metrics=tuple(order),
        n_models=cells[0].base.shape[1], n_replicates=cells[0].base.shape[0] - 1,
        n_seeds=tuple(n_seeds), seed_sd=tuple(seed_sd), metric_sd=tuple(metric_sd),
        arm_corr=float(np.clip(_pool_corr(arm), 0.0, 0.98)),
        metric_corr=float(np.clip(metric_corr, -0.9 / max(k - 1, 1), 0.98)),
        image_sd=float(np.mean(img_sd)), image_corr=float(np.clip(_pool_corr(img_corr), 0, 0.99)),
    )  # fmt: skip
    if not match_changes:
        return shape
    changes = cell_changes(cells)
    labels = np.asarray(metrics)
    centred = changes - np.array([changes[labels == m].mean() for m in labels])
    return replace(shape, arm_corr=_matched_arm_corr(shape, float(np.sqrt((centred**2).mean()))))


#: The arm correlations among which :func:`measure_shape` matches the cells' spread.
_ARM_GRID = (0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98)


def _matched_arm_corr(shape: BenchmarkShape, target: float, n_benchmarks: int = 200) -> float:
    r"""The arm correlation at which null benchmarks of ``shape`` give per-cell changes of
    root-mean-square ``target`` (the same random numbers for every grid value; linear
    interpolation, clipped to the grid)."""
    rms = []
    for a in _ARM_GRID:
        rng = np.random.default_rng(12345)
        sims = [cell_changes(simulate_benchmark(replace(shape, arm_corr=a), {}, rng)[0])
                for _ in range(n_benchmarks)]  # fmt: skip
        rms.append(float(np.sqrt(np.mean(np.square(sims)))))
    # rms falls as the arms pair more closely; np.interp needs increasing x
    return float(np.interp(target, rms[::-1], _ARM_GRID[::-1]))


def simulate_benchmark(
    shape: BenchmarkShape, effects: Mapping[str, float], rng: np.random.Generator
) -> tuple[list[Cell], list[str], float]:
    r"""One benchmark drawn in ``shape``: its cells, their metric labels and its
    :math:`\Delta_{\text{zoo}}` (the mean over cells of the change on the true qualities, with
    no seed or image noise).  ``effects`` maps a metric to its true gain in Kendall-type
    agreement (0: the null, the two arms exchangeable)."""
    k = len(shape.metrics)
    arm = np.array([[1.0, shape.arm_corr], [shape.arm_corr, 1.0]])
    met = np.full((k, k), shape.metric_corr)
    np.fill_diagonal(met, 1.0)
    chol = np.linalg.cholesky(np.kron(met, arm))  # rows: (metric, arm) pairs
    img = np.linalg.cholesky(np.array([[1.0, shape.image_corr], [shape.image_corr, 1.0]]))
    m, r = shape.n_models, shape.n_replicates
    cells, labels, truth_changes = [], [], []
    for t, task in enumerate(shape.tasks):
        mu = rng.standard_normal(m)
        acc = mu[:, None] + shape.seed_sd[t] * rng.standard_normal((m, shape.n_seeds[t]))
        err = (chol @ rng.standard_normal((2 * k, m))).reshape(k, 2, m)
        for i, metric in enumerate(shape.metrics):
            sd0 = shape.metric_sd[t][i]
            sd1 = _tau_to_sd(_sd_to_tau(sd0) + effects.get(metric, 0.0))
            s0, s1 = mu + sd0 * err[i, 0], mu + sd1 * err[i, 1]
            dev = np.einsum("ab,brm->arm", img, rng.standard_normal((2, r, m)))
            base = np.vstack([s0, s0 + shape.image_sd * s0.std() * dev[0]])
            treated = np.vstack([s1, s1 + shape.image_sd * s1.std() * dev[1]])
            cells.append(Cell(base, treated, acc, group=task))
            labels.append(metric)
            truth_changes.append(weighted_tau_rows(s1[None], mu[None])[0]
                                 - weighted_tau_rows(s0[None], mu[None])[0])  # fmt: skip
    return cells, labels, float(np.mean(truth_changes))


def simulate(
    shape: BenchmarkShape,
    effects: Mapping[str, float],
    *,
    n_simulations: int = 400,
    n_resamples: int = 200,
    confidence: float = 0.95,
    random_state: int = 0,
    published: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """:func:`replicate` on ``n_simulations`` benchmarks of :func:`simulate_benchmark`: one row
    per simulation and label (the metrics and ``mean``), with ``theta_zoo`` (the simulated zoo's
    true change, for the mean; NaN for a metric) and ``simulation``."""
    pub = dict(published or {m: 0.0 for m in [*shape.metrics, "mean"]})
    rows = []
    seeds = np.random.default_rng(random_state).integers(0, 2**63 - 1, n_simulations)
    for i, seed in enumerate(seeds):
        rng = np.random.default_rng(int(seed))
        cells, labels, theta = simulate_benchmark(shape, effects, rng)
        est = replicate(cells, labels, pub, n_resamples=n_resamples, confidence=confidence,
                        random_state=int(rng.integers(2**31)))  # fmt: skip
        for label, e in est.items():
            rows.append({"simulation": i, **asdict(e),
                         "theta_zoo": theta if label == "mean" else np.nan})  # fmt: skip
    return pd.DataFrame(rows)


def calibration(sims: pd.DataFrame, *, alpha: float = 0.05, population_effect: float = 0.0
                ) -> dict[str, float]:  # fmt: skip
    r"""From :func:`simulate` rows of ``mean``: the rates at which each test rejects
    :math:`H_0: \Delta \le 0` at ``alpha`` (``reject_zoo``, ``reject_pop``, ``reject_tasks``),
    the two-sided call rate of the population interval (``clear_pop``), and each interval's
    coverage of its estimand: the zoo interval of the simulated zoo's :math:`\Delta_{zoo}`, the
    population interval of ``population_effect`` (0 under the null, by symmetry)."""
    s = sims[sims["label"] == "mean"]
    if s.empty:
        raise ValueError("no rows of the mean")
    return {
        "simulations": int(len(s)),
        "reject_zoo": float((s["p_zero_zoo"] < alpha).mean()),
        "reject_pop": float((s["p_zero_pop"] < alpha).mean()),
        "reject_tasks": float((s["p_zero_tasks"] < alpha).mean()),
        "clear_pop": float(((s["pop_low"] > 0) | (s["pop_high"] < 0)).mean()),
        "cover_zoo": float(((s["zoo_low"] <= s["theta_zoo"]) & (s["theta_zoo"] <= s["zoo_high"])
                            ).mean()),
        "cover_pop": float(((s["pop_low"] <= population_effect)
                            & (population_effect <= s["pop_high"])).mean()),
        "population_effect": float(population_effect),
        "alpha": alpha,
    }  # fmt: skip


def power_curve(curve: pd.DataFrame, *, alpha: float = 0.05) -> pd.DataFrame:
    """Rows ``effect, label, power_zoo, power_pop, power_tasks, realised`` from simulations of
    several effects (``curve``: :func:`simulate` rows with an ``effect`` column; ``realised``:
    the mean simulated :math:`\\Delta_{zoo}`, the effect actually produced on :math:`\\tau_w`)."""
    out = []
    for (effect, label), s in curve.groupby(["effect", "label"], sort=True):
        out.append({"effect": float(effect), "label": label,
                    "power_zoo": float((s["p_zero_zoo"] < alpha).mean()),
                    "power_pop": float((s["p_zero_pop"] < alpha).mean()),
                    "power_tasks": float((s["p_zero_tasks"] < alpha).mean()),
                    "realised": float(s["theta_zoo"].mean()) if label == "mean" else np.nan,
                    "estimate": float(s["estimate"].mean())})  # fmt: skip
    return pd.DataFrame(out)


def minimum_detectable_effect(effects: ArrayLike, power: ArrayLike, target: float = 0.8) -> float:
    """The smallest effect at which ``power`` reaches ``target``, linearly interpolated between
    the grid points that bracket it (``effects`` increasing); NaN when the grid never reaches
    it."""
    e = np.asarray(effects, dtype=float)
    p = np.asarray(power, dtype=float)
    if e.shape != p.shape or e.ndim != 1 or (np.diff(e) <= 0).any():
        raise ValueError("effects must be increasing and match power")
    above = np.flatnonzero(p >= target)
    if above.size == 0:
        return float("nan")
    i = int(above[0])
    if i == 0:
        return float(e[0])
    return float(e[i - 1] + (target - p[i - 1]) * (e[i] - e[i - 1]) / (p[i] - p[i - 1]))
