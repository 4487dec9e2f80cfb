"""Tests of ped.evaluation against definitions computed by brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.stats
from hypothesis import given
from hypothesis import strategies as st

from ped.evaluation import (
    UndefinedStatisticError,
    bootstrap_ci,
    kendall_tau,
    pearson_r,
    rank_statistics,
    spearman_rho,
    top1_regret,
    weighted_tau,
)

distinct = st.lists(st.floats(-100, 100, allow_nan=False), min_size=3, max_size=14, unique=True)


def _vigna_tau(x: np.ndarray, y: np.ndarray) -> float:
    """Weighted tau for data without ties, from Vigna (2015) with the hyperbolic weigher 1/(r+1).

    Each pair is weighted by w(rank_i) + w(rank_j), ranks 0 = largest; the value ranked by x and
    the value ranked by y are averaged (scipy's default rank=True).
    """
    values = []
    for key in (x, y):
        rank = np.empty(len(key), dtype=int)
        rank[np.argsort(-key)] = np.arange(len(key))
        num = den = 0.0
        for i, j in itertools.combinations(range(len(x)), 2):
            w = 1 / (rank[i] + 1) + 1 / (rank[j] + 1)
            num += w * np.sign((x[i] - x[j]) * (y[i] - y[j]))
            den += w
        values.append(num / den)
    return float(np.mean(values))


@given(scores=distinct, seed=st.integers(0, 1000))
def test_weighted_tau_equals_vigna_definition_and_scipy(scores, seed):
    rng = np.random.default_rng(seed)
    s = np.array(scores)
    t = rng.permutation(len(s)).astype(float) + rng.uniform(0, 0.5)
    assert weighted_tau(s, t) == pytest.approx(_vigna_tau(s, t), abs=1e-12)
    assert weighted_tau(s, t) == pytest.approx(scipy.stats.weightedtau(s, t).statistic, abs=1e-15)


def test_weighted_tau_weights_the_top_more_than_the_bottom():
    truth = np.arange(12.0)[::-1]  # model 0 is best
    swap_top = truth.copy()
    swap_top[[0, 1]] = swap_top[[1, 0]]
    swap_bottom = truth.copy()
    swap_bottom[[10, 11]] = swap_bottom[[11, 10]]
    assert weighted_tau(truth, truth) == pytest.approx(1.0)
    assert weighted_tau(-truth, truth) == pytest.approx(-1.0)
    assert weighted_tau(swap_top, truth) < weighted_tau(swap_bottom, truth) < 1.0


@given(scores=distinct, seed=st.integers(0, 1000))
def test_kendall_tau_counts_concordant_pairs(scores, seed):
    s = np.array(scores)
    t = np.random.default_rng(seed).permutation(len(s)).astype(float)
    pairs = list(itertools.combinations(range(len(s)), 2))
    concordance = sum(np.sign((s[i] - s[j]) * (t[i] - t[j])) for i, j in pairs)
    assert kendall_tau(s, t) == pytest.approx(concordance / len(pairs))


def test_pearson_and_spearman():
    s = np.array([1.0, 2.0, 3.0, 4.0])
    assert pearson_r(s, 2 * s + 1) == pytest.approx(1.0)
    assert spearman_rho(s, s**3) == pytest.approx(1.0)
    assert pearson_r(s, s**3) < 1.0
    with pytest.raises(ValueError, match="constant"):
        pearson_r(s, np.ones(4))


def test_top1_regret():
    truth = np.array([80.0, 85.0, 90.0, 70.0])
    assert top1_regret([0.1, 0.2, 0.9, 0.0], truth) == 0.0
    assert top1_regret([0.9, 0.2, 0.1, 0.0], truth) == pytest.approx(10.0)
    # a tie at the top counts as the worse of the tied models
    assert top1_regret([0.9, 0.1, 0.9, 0.9], truth) == pytest.approx(20.0)


def test_rank_statistics_collects_everything():
    stats = rank_statistics([1, 2, 3, 4], [10, 20, 40, 30])
    assert set(stats) == {"weighted_tau", "kendall_tau", "pearson_r", "spearman_rho", "top1_regret"}
    assert stats["top1_regret"] == 10
    assert np.isnan(rank_statistics([1, 1, 1], [1, 2, 3])["pearson_r"])


def test_bootstrap_ci_of_a_mean(rng):
    data = rng.normal(loc=3.0, size=400)
    ci = bootstrap_ci(lambda idx: data[idx].mean(), len(data), n_resamples=500, random_state=1)
    assert ci.estimate == pytest.approx(data.mean())
    assert ci.low < ci.estimate < ci.high
    # the percentile interval of a mean is close to the normal-theory interval
    half = 1.96 * data.std(ddof=1) / np.sqrt(len(data))
    assert ci.high - ci.low == pytest.approx(2 * half, rel=0.2)
    assert ci.distribution.shape == (500,)
    again = bootstrap_ci(lambda idx: data[idx].mean(), len(data), n_resamples=500, random_state=1)
    assert (again.low, again.high) == (ci.low, ci.high)
    assert "95% CI" in str(ci)


@pytest.mark.parametrize(
    ("scores", "truth", "message"),
    [
        ([1, 2, 3], [1, 2], "mismatched lengths"),
        ([1, np.nan, 3], [1, 2, 3], "NaN"),
        ([[1, 2], [3, 4]], [1, 2], "1-D"),
        ([1], [1], "at least 2"),
        (["a", "b"], [1, 2], "numeric"),
    ],
)
def test_bad_rank_input(scores, truth, message):
    for fn in (weighted_tau, kendall_tau, top1_regret):
        with pytest.raises(ValueError, match=message):
            fn(scores, truth)


def test_bad_bootstrap_options():
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci(lambda i: 0.0, 10, confidence=1.5)
    with pytest.raises(ValueError, match="at least 2"):
        bootstrap_ci(lambda i: 0.0, 1)
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_ci(lambda i: 0.0, 10, n_resamples=0)


# ------------------------------------------------------------- constant input, degenerate resamples

CORRELATIONS = (weighted_tau, kendall_tau, pearson_r, spearman_rho)


@given(value=st.floats(-100, 100, allow_nan=False), n=st.integers(2, 12), seed=st.integers(0, 99))
def test_every_correlation_raises_the_same_error_on_constant_input(value, n, seed):
    varying = np.random.default_rng(seed).permutation(n).astype(float)
    constant = np.full(n, value)
    for fn in CORRELATIONS:
        for scores, truth, what in ((constant, varying, "scores"), (varying, constant, "truth")):
            with pytest.raises(UndefinedStatisticError, match=f"{fn.__name__} is undefined when "
                               f"the {what} are constant"):  # fmt: skip
                fn(scores, truth)
    assert issubclass(UndefinedStatisticError, ValueError)
    assert top1_regret(constant, varying) == pytest.approx(varying.max() - varying.min())


def test_rank_statistics_reports_undefined_correlations_as_nan_and_still_rejects_bad_input():
    stats = rank_statistics([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])
    assert all(np.isnan(stats[k]) for k in ("weighted_tau", "kendall_tau", "pearson_r",
                                            "spearman_rho"))  # fmt: skip
    assert stats["top1_regret"] == 2.0
    with pytest.raises(ValueError, match="NaN"):
        rank_statistics([1.0, np.nan, 3.0], [1.0, 2.0, 3.0])


def _resampled_tau():
    """weighted tau of 3 resampled models: a resample that draws one model three times has
    constant scores and truth (undefined), about 1 time in 9."""
    x, y = np.array([1.0, 2.0, 3.0]), np.array([10.0, 30.0, 20.0])
    return lambda idx: weighted_tau(x[idx], y[idx])


def test_bootstrap_counts_and_leaves_out_degenerate_resamples():
    stat = _resampled_tau()
    ci = bootstrap_ci(stat, 3, n_resamples=200, random_state=0)
    bad = ~np.isfinite(ci.distribution)
    assert ci.n_degenerate == int(bad.sum()) and 0 < ci.n_degenerate < 200
    assert ci.n_resamples == 200 and ci.distribution.shape == (200,)
    low, high = np.percentile(ci.distribution[~bad], [2.5, 97.5])
    assert (ci.low, ci.high) == (pytest.approx(low), pytest.approx(high))
    assert np.isfinite([ci.low, ci.high, ci.standard_error]).all()
    assert ci.standard_error == pytest.approx(np.std(ci.distribution[~bad], ddof=1))
    assert f"{ci.n_degenerate} of 200 resamples degenerate" in str(ci)
    basic = bootstrap_ci(stat, 3, n_resamples=200, random_state=0, method="basic")
    assert basic.low == pytest.approx(2 * ci.estimate - high)
    assert basic.high == pytest.approx(2 * ci.estimate - low)
    with pytest.raises(ValueError, match="BCa"):
        bootstrap_ci(stat, 3, n_resamples=50, random_state=0, method="BCa")


def test_bootstrap_without_degenerate_resamples_is_scipys(rng):
    data = rng.normal(size=50)
    ci = bootstrap_ci(lambda idx: data[idx].mean(), 50, n_resamples=300, random_state=3)
    ref = scipy.stats.bootstrap((np.arange(50),), lambda idx: data[idx].mean(), n_resamples=300,
                                rng=3, vectorized=False, method="percentile")  # fmt: skip
    assert ci.n_degenerate == 0 and "degenerate" not in str(ci)
    assert (ci.low, ci.high) == (pytest.approx(ref.confidence_interval.low),
                                 pytest.approx(ref.confidence_interval.high))  # fmt: skip


def test_bootstrap_errors_on_undefined_statistics():
    with pytest.raises(UndefinedStatisticError):  # undefined on the sample itself
        bootstrap_ci(lambda idx: weighted_tau([1, 1, 1], [1, 2, 3]), 5)
    with pytest.raises(ValueError, match="is nan on the original sample"):
        bootstrap_ci(lambda idx: float("nan"), 5)
    calls = {"n": 0}

    def only_the_first(idx):
        calls["n"] += 1
        if calls["n"] == 1:
            return 0.5
        raise ValueError("undefined")

    with pytest.raises(ValueError, match="100 of 100 bootstrap resamples are degenerate"):
        bootstrap_ci(only_the_first, 5, n_resamples=100)
    with pytest.raises(ValueError, match="method"):
        bootstrap_ci(lambda idx: 0.0, 5, method="studentized")
