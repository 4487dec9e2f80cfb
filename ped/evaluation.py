r"""Rank statistics that judge a transferability score against ground-truth accuracies.

The paper (eq. 1) and all the official code (PED, SFDA, LogME) measure a metric by the weighted
Kendall :math:`\tau_w` between the metric's scores for a zoo of models and the models' fine-tuning
accuracies, computed with ``scipy.stats.weightedtau`` and its defaults: the additive hyperbolic
weigher :math:`w(r) = 1/(r+1)` on ranks, averaged over the two lexicographic orders.  With a dozen
models one swap near the top moves :math:`\tau_w` a lot, so :func:`bootstrap_ci` adds an interval.

Constant scores or constant truth (every model tied) leave a correlation undefined.  The four
correlation statistics (:func:`weighted_tau`, :func:`kendall_tau`, :func:`pearson_r`,
:func:`spearman_rho`) then all raise :class:`UndefinedStatisticError`, a ``ValueError``;
:func:`rank_statistics` reports them as NaN, and :func:`bootstrap_ci` counts the resamples where
its statistic is undefined as *degenerate* (``BootstrapInterval.n_degenerate``).
:func:`top1_regret` stays defined (a tie at the top counts as the worst tied model).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats
from numpy.typing import ArrayLike, NDArray

from ped._validation import check_positive_int, check_scores_truth
from ped.metrics import row_label

__all__ = [
    "table1_layout",
    "UndefinedStatisticError",
    "weighted_tau",
    "kendall_tau",
    "pearson_r",
    "spearman_rho",
    "top1_regret",
    "rank_statistics",
    "BootstrapInterval",
    "bootstrap_ci",
    "rel_at_k",
    "rec_at_k",
    "leave_one_task_out",
]


logger = logging.getLogger(__name__)


class UndefinedStatisticError(ValueError):
    """A rank statistic is undefined for this input: the scores or the truth are constant."""


def _check_varies(name: str, s: NDArray[np.float64], t: NDArray[np.float64]) -> None:
    for what, v in (("scores", s), ("truth", t)):
        if np.ptp(v) == 0:
            raise UndefinedStatisticError(
                f"{name} is undefined when the {what} are constant (every model tied)"
            )


def weighted_tau(scores: ArrayLike, truth: ArrayLike) -> float:
    r"""Weighted Kendall :math:`\tau_w` between predicted scores and ground truth (paper eq. 1).

    Identical to ``scipy.stats.weightedtau(scores, truth).statistic`` with scipy's defaults, which
    is what the official PED, SFDA and LogME code reports: each pair of models :math:`(i, j)` is
    weighted by :math:`w_i + w_j` with :math:`w = 1/(r+1)` and :math:`r` the rank of the model
    (0 = best), and the result is the mean of the two values obtained by ranking by ``scores``
    and by ``truth``.  A value of 1 means the scores order the zoo exactly as the ground truth.
    Constant scores or truth raise :class:`UndefinedStatisticError` (scipy would return NaN).
    """
    s, t = check_scores_truth(scores, truth)
    _check_varies("weighted_tau", s, t)
    return float(scipy.stats.weightedtau(s, t).statistic)


def kendall_tau(scores: ArrayLike, truth: ArrayLike) -> float:
    r"""Kendall's :math:`\tau_b` (unweighted, ties corrected), ``scipy.stats.kendalltau``.

    Constant scores or truth raise :class:`UndefinedStatisticError` (scipy would return NaN)."""
    s, t = check_scores_truth(scores, truth)
    _check_varies("kendall_tau", s, t)
    return float(scipy.stats.kendalltau(s, t).statistic)


def pearson_r(scores: ArrayLike, truth: ArrayLike) -> float:
    r"""Pearson's linear correlation :math:`r` between scores and ground truth.

    Constant scores or truth raise :class:`UndefinedStatisticError`."""
    s, t = check_scores_truth(scores, truth)
    _check_varies("pearson_r", s, t)
    return float(scipy.stats.pearsonr(s, t).statistic)


def spearman_rho(scores: ArrayLike, truth: ArrayLike) -> float:
    r"""Spearman's rank correlation :math:`\rho` between scores and ground truth.

    Constant scores or truth raise :class:`UndefinedStatisticError`."""
    s, t = check_scores_truth(scores, truth)
    _check_varies("spearman_rho", s, t)
    return float(scipy.stats.spearmanr(s, t).statistic)


def top1_regret(scores: ArrayLike, truth: ArrayLike) -> float:
    r"""Accuracy lost by fine-tuning the model the score ranks first instead of the best model.

    :math:`\max_m a_m - a_{\hat m}`, :math:`\hat m = \arg\max_m s_m`, in the units of ``truth``
    (accuracy points).  When several models tie for the top score, the worst of them is taken
    (a tie gives no reason to expect the better one).
    """
    s, t = check_scores_truth(scores, truth)
    picked = t[s == s.max()].min()
    return float(t.max() - picked)


def rank_statistics(scores: ArrayLike, truth: ArrayLike) -> dict[str, float]:
    """All the statistics of this module for one (scores, truth) pair, keyed by name.

    Invalid input raises ``ValueError`` as each statistic does; a correlation that is undefined
    (constant scores or truth, :class:`UndefinedStatisticError`) is NaN.
    """
    s, t = check_scores_truth(scores, truth)
    out = {"top1_regret": top1_regret(s, t)}
    for name, fn in (("weighted_tau", weighted_tau), ("kendall_tau", kendall_tau),
                     ("pearson_r", pearson_r), ("spearman_rho", spearman_rho)):  # fmt: skip
        try:
            out[name] = fn(s, t)
        except UndefinedStatisticError:
            out[name] = float("nan")
    return out


@dataclass(frozen=True)
class BootstrapInterval:
    """A bootstrap confidence interval.

    ``estimate`` is the statistic on the original sample, ``low``/``high`` the interval's ends at
    level ``confidence``, ``standard_error`` the std of the bootstrap distribution and
    ``distribution`` the resampled values (NaN for a degenerate resample).  ``n_degenerate``
    resamples, on which the statistic was undefined, are left out of the interval and of the
    standard error; ``n_resamples`` is the number drawn, degenerate ones included.
    """

    estimate: float
    low: float
    high: float
    confidence: float
    standard_error: float
    distribution: NDArray[np.float64]
    n_degenerate: int = 0

    @property
    def n_resamples(self) -> int:
        """Resamples drawn, degenerate ones included."""
        return int(self.distribution.shape[0])

    def __str__(self) -> str:
        pct = round(100 * self.confidence)
        text = f"{self.estimate:.3f} [{self.low:.3f}, {self.high:.3f}] ({pct}% CI)"
        if self.n_degenerate:
            text += f", {self.n_degenerate} of {self.n_resamples} resamples degenerate, left out"
        return text


def bootstrap_ci(
    statistic: Callable[[NDArray[np.intp]], float],
    n: int,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    method: str = "percentile",
    random_state: int | np.random.Generator | None = 0,
) -> BootstrapInterval:
    r"""Bootstrap confidence interval of a statistic of ``n`` resampleable units.

    ``statistic(idx)`` receives an index array of length ``n`` drawn with replacement from
    ``0..n-1`` (the images of a task, or the seeds of a ground truth) and returns a float; it is
    evaluated once on ``arange(n)`` and ``n_resamples`` times on resamples.  The interval is
    computed by ``scipy.stats.bootstrap`` (``method`` ``"percentile"``, ``"basic"`` or ``"BCa"``;
    BCa costs ``n`` extra jackknife evaluations).

    A resample on which ``statistic`` raises ``ValueError`` (e.g. a rank statistic of this
    module on a resample where every model ties, :class:`UndefinedStatisticError`) or returns
    NaN or infinity is *degenerate*: it is left out, and the interval (percentile or basic) and
    the standard error come from the other resamples; ``BootstrapInterval.n_degenerate``
    says how many there were (and a warning is logged).  Raises ``ValueError`` when the statistic
    is undefined on the original sample, when fewer than 2 resamples are not degenerate, and for
    ``method="BCa"`` with degenerate resamples (its jackknife needs them all).
    """
    n = check_positive_int(n, "n")
    n_resamples = check_positive_int(n_resamples, "n_resamples")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if str(method).lower() not in ("percentile", "basic", "bca"):
        raise ValueError(f"method must be 'percentile', 'basic' or 'BCa', got {method!r}")
    if n < 2:
        raise ValueError("a bootstrap needs at least 2 units to resample")
    estimate = float(statistic(np.arange(n)))
    if not np.isfinite(estimate):
        raise ValueError(f"the statistic is {estimate} on the original sample")

    def guarded(idx: NDArray[Any]) -> float:
        try:
            value = float(statistic(np.asarray(idx, dtype=np.intp)))
        except ValueError:
            return float("nan")
        return value if np.isfinite(value) else float("nan")

    res = scipy.stats.bootstrap(
        (np.arange(n),),
        guarded,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method=method,
        vectorized=False,
        rng=random_state,
    )
    dist = np.asarray(res.bootstrap_distribution, dtype=np.float64)
    ok = np.isfinite(dist)
    n_degenerate = int(dist.size - np.count_nonzero(ok))
    if not n_degenerate:
        return BootstrapInterval(
            estimate=estimate,
            low=float(res.confidence_interval.low),
            high=float(res.confidence_interval.high),
            confidence=confidence,
            standard_error=float(res.standard_error),
            distribution=dist,
        )
    logger.warning(
        "bootstrap: %d of %d resamples are degenerate (the statistic is undefined on them) and "
        "are left out of the interval", n_degenerate, dist.size,
    )  # fmt: skip
    if np.count_nonzero(ok) < 2:
        raise ValueError(
            f"{n_degenerate} of {dist.size} bootstrap resamples are degenerate (the statistic is "
            "undefined on them): no interval"
        )
    if method.lower() == "bca":
        raise ValueError(
            f"{n_degenerate} of {dist.size} bootstrap resamples are degenerate; the BCa interval "
            "needs the statistic on every resample: use method='percentile' or 'basic'"
        )
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.percentile(dist[ok], [100.0 * alpha, 100.0 * (1.0 - alpha)])
    if method.lower() == "basic":
        lo, hi = 2.0 * estimate - hi, 2.0 * estimate - lo
    return BootstrapInterval(
        estimate=estimate,
        low=float(lo),
        high=float(hi),
        confidence=confidence,
        standard_error=float(np.std(dist[ok], ddof=1)),
        distribution=dist,
        n_degenerate=n_degenerate,
    )


# ------------------------------------------------------------------------ top-k and baselines


def _top_k(s: NDArray[np.float64], t: NDArray[np.float64], k: int) -> NDArray[np.intp]:
    """Indices of the k models ranked first by ``s``; ties at the cut are resolved against the
    metric (lower ``t`` first), as :func:`top1_regret` does for the top score."""
    k = check_positive_int(k, "k")
    if k > s.shape[0]:
        raise ValueError(f"k = {k} exceeds the number of models ({s.shape[0]})")
    return np.lexsort((t, -s))[:k]


def rel_at_k(scores: ArrayLike, truth: ArrayLike, k: int = 1) -> float:
    r"""Relative accuracy of the best of the top-k models, rel@k.

    .. math::
        \mathrm{rel@}k = \frac{\max_{m \in \mathrm{top}_k(s)} a_m}{\max_m a_m},

    with :math:`\mathrm{top}_k(s)` the k models the scores rank first: the fraction of the best
    achievable accuracy kept by fine-tuning only the k models the metric recommends.  This is
    ``rel_k`` of the released SFDA code (Shao et al., ECCV 2022, ``TencentARC/SFDA``,
    ``rank_correlation.py``), kept unchanged in the NCTI, ETran and SA repositories.  Ties in the
    scores at the cut are resolved pessimistically (the lower-accuracy models enter first), so
    ``rel_at_k(s, a, 1) == 1 - top1_regret(s, a) / max(a)``.  ``truth`` must be non-negative
    (accuracies) with a positive maximum.  Range (0, 1]; 1 is best.
    """
    s, t = check_scores_truth(scores, truth)
    if t.min() < 0 or t.max() <= 0:
        raise ValueError("rel_at_k needs non-negative truth (accuracies) with a positive maximum")
    return float(t[_top_k(s, t, k)].max() / t.max())


def rec_at_k(scores: ArrayLike, truth: ArrayLike, k: int = 1) -> float:
    r"""Whether the truly best model is among the top-k by the scores, rec@k (1.0 or 0.0).

    .. math::
        \mathrm{rec@}k = igl[\,rg\max_m a_m \in \mathrm{top}_k(s)\,igr],

    averaged over tasks it is the fraction of tasks whose best model a top-k shortlist recovers.
    A tie for the best accuracy counts as recovered when any of the tied models is in the
    shortlist, and ties in the scores at the cut are resolved as in :func:`rel_at_k`, so
    ``rec_at_k == (rel_at_k == 1)``.

    The released SFDA code (``recall_k`` in ``TencentARC/SFDA``, copied by NCTI, ETran and SA;
    as written it fails in Python 3, slicing ``dict.keys()``) defines recall@k the other way
    round: whether the model ranked *first* by the scores is among the top-k by accuracy.  That
    is ``rec_at_k(truth, scores, k)`` with the arguments swapped (up to the tie rule); the two
    coincide at k = 1.
    """
    s, t = check_scores_truth(scores, truth)
    return float(t[_top_k(s, t, k)].max() == t.max())


def leave_one_task_out(accuracy: pd.DataFrame, task: object) -> pd.Series:
    r"""The dataset-agnostic baseline: each model's mean accuracy on the *other* tasks.

    .. math::
        \hat s_m(\tau) = \frac{1}{|T_m \setminus \{\tau\}|}
            \sum_{\tau' \in T_m \setminus \{\tau\}} a_{m\tau'},

    with :math:`T_m` the tasks with an accuracy for model m.  It ranks the zoo for task
    :math:`\tau` without looking at :math:`\tau` at all (no features, no labels): a static
    ranking learned from the other tasks.  Singh, Hess and Vanschoren, "How NOT to benchmark
    your SITE metric: Beyond Static Leaderboards and Towards Realistic Evaluation"
    (arXiv 2510.06448) show that such dataset-agnostic rankings (theirs: a fixed list ordered by
    model size) beat most published transferability metrics on the standard benchmarks; any
    metric worth its cost should beat this one.

    Parameters
    ----------
    accuracy : DataFrame, models as rows and tasks as columns (ground-truth accuracies; NaN
        for a missing entry).  The project's published table, :func:`ped.paper.finetune_accuracy`,
        has tasks as rows: pass its transpose, ``finetune_accuracy().T``.
    task : the column to leave out.

    Returns
    -------
    Series indexed like ``accuracy`` (the models), named ``task``: the baseline's scores for
    that task, higher is better.  Score it with any statistic of this module against
    ``accuracy[task]``.
    """
    if not isinstance(accuracy, pd.DataFrame):
        raise ValueError(
            f"accuracy must be a pandas DataFrame (models x tasks), got {type(accuracy).__name__}"
        )
    if accuracy.columns.has_duplicates or accuracy.index.has_duplicates:
        raise ValueError("accuracy must have unique model (row) and task (column) labels")
    if task not in accuracy.columns:
        raise ValueError(f"task {task!r} is not a column of accuracy: {list(accuracy.columns)}")
    if accuracy.shape[1] < 2:
        raise ValueError("the leave-one-task-out baseline needs at least 2 tasks")
    try:
        values = accuracy.apply(pd.to_numeric, errors="raise").astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"accuracy must hold numbers: {exc}") from exc
    if np.isinf(values.to_numpy()).any():
        raise ValueError("accuracy contains infinite values")
    others = values.drop(columns=[task])
    score = others.mean(axis=1, skipna=True)
    missing = score.index[score.isna()]
    if len(missing):
        raise ValueError(
            f"model(s) {list(missing)[:5]} have no accuracy on any task other than {task!r}"
        )
    return score.rename(task)


def table1_layout(
    evaluation: pd.DataFrame, statistic: str = "weighted_tau", *, mean: bool = True
) -> pd.DataFrame:
    """A long table (one row per dataset, metric and arm: an
    :func:`ped.fullscale.evaluate.evaluate_scores` table, or the benchmark's
    :func:`ped.bench.table1.tau_cells`) in the layout of the paper's Table 1: one
    row per metric (its display name, e.g. ``LogME``) and per metric after a move (``LogME+PED``;
    a ``move`` column, e.g. ``"SA"``, takes precedence over the boolean ``ped``), in the order
    they first appear; one column per dataset, in the order they first appear; and, with
    ``mean``, the ``mean`` over the datasets.  The values are ``statistic``.  This is the one
    Table 1 builder: the full-scale command line (:mod:`ped.fullscale.scoring`) and the book's chapter
    (:func:`ped.bench.table1.tau_cells`) both call it."""
    if statistic not in evaluation.columns:
        raise ValueError(f"the evaluation has no column {statistic!r}")
    moves = evaluation["move"] if "move" in evaluation.columns else evaluation["ped"].map(_as_bool)
    rows = [row_label(m, p) for m, p in zip(evaluation["metric"], moves)]
    wide = evaluation.assign(row=rows).pivot(index="row", columns="dataset", values=statistic)
    wide = wide.loc[list(dict.fromkeys(rows)), list(dict.fromkeys(evaluation["dataset"]))]
    wide.columns.name = None
    wide.index.name = None
    if mean:
        wide["mean"] = wide.mean(axis=1)
    return wide


def _as_bool(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    text = str(value).strip().lower()
    if text in {"true", "1", "yes"}:
        return True
    if text in {"false", "0", "no", ""}:
        return False
    raise ValueError(f"ped column holds {value!r}, not a boolean")
