"""ped.bench.choose.tied_with_best: the models the fine-tuning ground truth cannot tell from its
best, against a hand computation of Welch's test and on simulations with known means."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from ped.bench.choose import tied_with_best


def _welch_p(a: np.ndarray, b: np.ndarray) -> float:
    """One-sided p of "mean(a) > mean(b)", computed from the formula."""
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    t = (a.mean() - b.mean()) / np.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    return float(stats.t.sf(t, df))


def test_ties_follow_the_hand_computed_welch_test():
    rng = np.random.default_rng(0)
    runs = {m: rng.normal(mu, 1.0, size=6) for m, mu in
            (("a", 80.0), ("b", 79.6), ("c", 78.5), ("d", 75.0), ("e", 79.9))}  # fmt: skip
    order = sorted(runs, key=lambda m: -runs[m].mean())
    best = runs[order[0]]
    expected = [order[0]] + [m for m in order[1:] if _welch_p(best, runs[m]) >= 0.05]
    assert tied_with_best(runs) == expected
    assert "d" not in expected and len(expected) >= 2  # the case exercises both outcomes
    loose = tied_with_best(runs, alpha=1e-9)
    assert loose == order  # at a tiny level nothing is told apart


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.floats(50, 100), min_size=2, max_size=6), min_size=1, max_size=6))
def test_the_best_comes_first_and_identical_runs_tie(raw):
    runs = {f"m{i}": v for i, v in enumerate(raw)}
    tied = tied_with_best(runs)
    means = {m: np.mean(v) for m, v in runs.items()}
    assert means[tied[0]] == max(means.values())
    assert len(set(tied)) == len(tied) and set(tied) <= set(runs)
    assert [means[m] for m in tied] == sorted((means[m] for m in tied), reverse=True)
    twin = {**runs, "twin": list(runs[tied[0]])}
    assert "twin" in tied_with_best(twin)


def test_on_a_simulation_the_clearly_worse_model_is_rarely_tied_and_the_equal_one_usually():
    rng = np.random.default_rng(1)
    equal_tied = worse_tied = 0
    for _ in range(400):
        runs = {"best": rng.normal(80, 0.8, 6), "equal": rng.normal(80, 0.8, 6),
                "worse": rng.normal(77, 0.8, 6)}  # fmt: skip
        tied = tied_with_best(runs)
        equal_tied += "equal" in tied or tied[0] == "equal"
        worse_tied += "worse" in tied
    assert worse_tied / 400 < 0.02  # 3 points apart with a seed SD of 0.8: almost never tied
    assert equal_tied / 400 > 0.85  # equal means: tied unless the test errs (about 5 %)


@pytest.mark.parametrize(
    ("runs", "alpha", "message"),
    [({"a": [1.0, 2.0], "b": [1.0]}, 0.05, "at least two finite runs"),
     ({"a": [1.0, np.nan], "b": [1.0, 2.0]}, 0.05, "at least two finite runs"),
     ({}, 0.05, "no models"),
     ({"a": [1.0, 2.0]}, 1.5, "alpha")],
)
def test_bad_input_is_refused(runs, alpha, message):
    with pytest.raises(ValueError, match=message):
        tied_with_best(runs, alpha)
