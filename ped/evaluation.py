r"""Rank statistics that judge a transferability score against ground-truth accuracies.

The paper (eq. 1) and all the official code (PED, SFDA, LogME) measure a metric by the weighted
Kendall :math:`\tau_w` between the metric's scores for a zoo of models and the models' fine-tuning
accuracies, computed with ``scipy.stats.weightedtau`` and its defaults: the additive hyperbolic
weigher :math:`w(r) = 1/(r+1)` on ranks, averaged over the two lexicographic orders.  With a dozen
models one swap near the top moves :math:`\tau_w` a lot, so :func:`bootstrap_ci` adds an interval.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.stats
from numpy.typing import ArrayLike, NDArray

from ped._validation import check_positive_int, check_scores_truth

__all__ = [
    "weighted_tau",
    "kendall_tau",
    "pearson_r",
    "spearman_rho",
    "top1_regret",
    "rank_statistics",
    "BootstrapInterval",
    "bootstrap_ci",
]


def weighted_tau(scores: ArrayLike, truth: ArrayLike) -> float:
    r"""Weighted Kendall :math:`\tau_w` between predicted scores and ground truth (paper eq. 1).

    Identical to ``scipy.stats.weightedtau(scores, truth).statistic`` with scipy's defaults, which
    is what the official PED, SFDA and LogME code reports: each pair of models :math:`(i, j)` is
    weighted by :math:`w_i + w_j` with :math:`w = 1/(r+1)` and :math:`r` the rank of the model
    (0 = best), and the result is the mean of the two values obtained by ranking by ``scores``
    and by ``truth``.  A value of 1 means the scores order the zoo exactly as the ground truth.
    """
    s, t = check_scores_truth(scores, truth)
    return float(scipy.stats.weightedtau(s, t).statistic)


def kendall_tau(scores: ArrayLike, truth: ArrayLike) -> float:
    r"""Kendall's :math:`\tau_b` (unweighted, ties corrected), ``scipy.stats.kendalltau``."""
    s, t = check_scores_truth(scores, truth)
    return float(scipy.stats.kendalltau(s, t).statistic)


def pearson_r(scores: ArrayLike, truth: ArrayLike) -> float:
    r"""Pearson's linear correlation :math:`r` between scores and ground truth."""
    s, t = check_scores_truth(scores, truth)
    if np.ptp(s) == 0 or np.ptp(t) == 0:
        raise ValueError("pearson_r is undefined when scores or truth are constant")
    return float(scipy.stats.pearsonr(s, t).statistic)


def spearman_rho(scores: ArrayLike, truth: ArrayLike) -> float:
    r"""Spearman's rank correlation :math:`\rho` between scores and ground truth."""
    s, t = check_scores_truth(scores, truth)
    if np.ptp(s) == 0 or np.ptp(t) == 0:
        raise ValueError("spearman_rho is undefined when scores or truth are constant")
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
    """All the statistics of this module for one (scores, truth) pair, keyed by name."""
    out = {
        "weighted_tau": weighted_tau(scores, truth),
        "kendall_tau": kendall_tau(scores, truth),
        "top1_regret": top1_regret(scores, truth),
    }
    for name, fn in (("pearson_r", pearson_r), ("spearman_rho", spearman_rho)):
        try:
            out[name] = fn(scores, truth)
        except ValueError:
            out[name] = float("nan")
    return out


@dataclass(frozen=True)
class BootstrapInterval:
    """A bootstrap confidence interval.

    ``estimate`` is the statistic on the original sample, ``low``/``high`` the interval's ends at
    level ``confidence``, ``standard_error`` the std of the bootstrap distribution and
    ``distribution`` the resampled values.
    """

    estimate: float
    low: float
    high: float
    confidence: float
    standard_error: float
    distribution: NDArray[np.float64]

    def __str__(self) -> str:
        pct = round(100 * self.confidence)
        return f"{self.estimate:.3f} [{self.low:.3f}, {self.high:.3f}] ({pct}% CI)"


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
    """
    n = check_positive_int(n, "n")
    n_resamples = check_positive_int(n_resamples, "n_resamples")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n < 2:
        raise ValueError("a bootstrap needs at least 2 units to resample")
    estimate = float(statistic(np.arange(n)))
    res = scipy.stats.bootstrap(
        (np.arange(n),),
        lambda idx: float(statistic(np.asarray(idx, dtype=np.intp))),
        n_resamples=n_resamples,
        confidence_level=confidence,
        method=method,
        vectorized=False,
        rng=random_state,
    )
    dist = np.asarray(res.bootstrap_distribution, dtype=np.float64)
    return BootstrapInterval(
        estimate=estimate,
        low=float(res.confidence_interval.low),
        high=float(res.confidence_interval.high),
        confidence=confidence,
        standard_error=float(res.standard_error),
        distribution=dist,
    )
