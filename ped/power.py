r"""Calibration and power of the replication tests (:mod:`ped.replication`), on simulated
benchmarks.

**Calibration and power** come from benchmarks simulated in the data's shape
(:class:`BenchmarkShape`, :func:`measure_shape`, :func:`simulate`): true qualities
:math:`\mu_m \sim N(0, 1)` per task, evaluation runs with the task's seed count and seed SD,
each metric's two arms *paired* (their errors correlated as measured, the metrics' errors too),
image replicates with the measured size and the arms' measured pairing.  A gain
:math:`\delta` is a treated arm whose error SD gives a Kendall-type agreement larger by
:math:`\delta` (:math:`\tau = \tfrac{2}{\pi}\arcsin\rho`).

:func:`calibration` gives the share of simulated benchmarks on which each test rejects (its
size under a null population effect, its power under a gain), :func:`power_curve` that share
over a grid of gains and :func:`minimum_detectable_effect` the gain the tests detect with the
target power.
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
from ped.replication import _cell_arrays, cell_changes, replicate, weighted_tau_rows

__all__ = [
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
    """:func:`~ped.replication.replicate` on ``n_simulations`` benchmarks of :func:`simulate_benchmark`: one row
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
