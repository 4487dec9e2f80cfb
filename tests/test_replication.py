"""Tests of ped.replication: the vectorised tau_w, the estimands' intervals, the one-sided tests
against hand computations, the simulated benchmarks and their calibration."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ped import power as P
from ped import replication as R
from ped.evaluation import weighted_tau
from ped.inference import Cell


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, (4, 7), elements=st.integers(-3, 3).map(float)),
       arrays(np.float64, (4, 7), elements=st.floats(-5, 5)))
def test_weighted_tau_rows_equals_scipy_with_and_without_ties(x, y) -> None:
    # integer scores make ties common: those rows take scipy's path, the others the formula
    y = y + np.arange(7) * 1e-3  # scipy is undefined for constant truth
    expected = [0.0 if np.ptp(a) == 0 else scipy.stats.weightedtau(a, b).statistic
                for a, b in zip(x, y)]  # a constant row ranks nothing: 0, where scipy is NaN
    got = R.weighted_tau_rows(x, y)
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_weighted_tau_rows_on_continuous_rows_and_errors() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((50, 13)), rng.standard_normal((50, 13))
    np.testing.assert_allclose(R.weighted_tau_rows(x, y),
                               [weighted_tau(a, b) for a, b in zip(x, y)], atol=1e-14)
    assert R.weighted_tau_rows(y, y) == pytest.approx(np.ones(50))
    constant = np.ones((2, 13))
    np.testing.assert_array_equal(R.weighted_tau_rows(constant, y[:2]), [0.0, 0.0])
    np.testing.assert_array_equal(R.weighted_tau_rows(y[:2], constant), [0.0, 0.0])
    with pytest.raises(ValueError, match="one shape"):
        R.weighted_tau_rows(x, y[:, :5])
    with pytest.raises(ValueError, match="finite"):
        R.weighted_tau_rows(np.array([[1.0, np.nan]]), np.array([[1.0, 2.0]]))


def _benchmark(rng: np.random.Generator, n_tasks: int = 3, metrics=("a", "b"), n_models: int = 9,
               gain: float = 0.0):
    cells, labels = [], []
    for t in range(n_tasks):
        mu = rng.standard_normal(n_models)
        acc = mu[:, None] + rng.normal(0, 0.3, (n_models, 5))
        for m in metrics:
            base = mu + rng.normal(0, 1.0, n_models)
            treated = mu + rng.normal(0, max(1.0 - gain, 0.05), n_models)
            reps = rng.normal(0, 0.2, (6, n_models))
            cells.append(Cell(np.vstack([base, base + reps]), np.vstack([treated, treated + reps]),
                              acc, group=f"t{t}"))
            labels.append(m)
    return cells, labels


def test_zoo_bootstrap_draws_seeds_and_images_and_keeps_models() -> None:
    cells, _ = _benchmark(np.random.default_rng(1))
    draws = R.zoo_bootstrap(cells, n_resamples=50, random_state=3)
    assert draws.shape == (50, len(cells))
    np.testing.assert_array_equal(draws, R.zoo_bootstrap(cells, n_resamples=50, random_state=3))
    # one resample recomputed by hand: the group's seeds and replicate, the models all kept
    rng = np.random.default_rng(3)
    seeds = rng.integers(0, 5, (50, 5))
    reps = rng.integers(1, 7, 50)
    c = cells[0]
    truth = c.accuracy[:, seeds[7]].mean(axis=1)
    expected = weighted_tau(c.treated[reps[7]], truth) - weighted_tau(c.base[reps[7]], truth)
    assert draws[7, 0] == pytest.approx(expected, abs=1e-12)
    # identical arms: every draw is exactly zero
    same = [Cell(c.base, c.base, c.accuracy, group=c.group) for c in cells]
    assert np.all(R.zoo_bootstrap(same, n_resamples=20) == 0)
    with pytest.raises(ValueError, match="replicates"):
        R.zoo_bootstrap([Cell(c.base[:1], c.treated[:1], c.accuracy)])
    with pytest.raises(ValueError, match="n_resamples"):
        R.zoo_bootstrap(cells, n_resamples=0)


def test_replicate_matches_hand_computations() -> None:
    cells, labels = _benchmark(np.random.default_rng(2))
    published = {"a": 0.2, "b": 0.1, "mean": 0.15}
    draws = R.zoo_bootstrap(cells, n_resamples=400, random_state=0)
    est = R.replicate(cells, labels, published, draws=draws)
    assert set(est) == {"a", "b", "mean"}
    changes = np.array([c.change() for c in cells])
    e = est["mean"]
    assert e.estimate == pytest.approx(changes.mean(), abs=1e-12)
    d = draws.mean(axis=1)
    assert e.zoo_low == pytest.approx(np.quantile(d, 0.025))
    assert e.p_zero_zoo == pytest.approx(((d <= 0).sum() + 1) / 401)
    assert e.p_published_zoo == pytest.approx(((d >= 0.15).sum() + 1) / 401)
    # the jackknife over models, by hand
    n = cells[0].base.shape[1]
    loo = []
    for i in range(n):
        keep = np.arange(n) != i
        loo.append(np.mean([Cell(c.base[:, keep], c.treated[:, keep], c.accuracy[keep]).change()
                            for c in cells]))
    loo = np.array(loo)
    se_j = np.sqrt((n - 1) / n * ((loo - loo.mean()) ** 2).sum())
    assert e.se_models == pytest.approx(se_j, rel=1e-10)
    se = np.hypot(se_j, d.std(ddof=1))
    assert e.se_pop == pytest.approx(se)
    assert e.pop_low == pytest.approx(e.estimate - scipy.stats.norm.ppf(0.975) * se)
    assert e.p_zero_pop == pytest.approx(scipy.stats.norm.sf(e.estimate / se))
    assert e.p_published_pop == pytest.approx(scipy.stats.norm.cdf((e.estimate - 0.15) / se))
    # the tasks as a sample: per-task means, t with T-1 = 2 degrees of freedom
    per_task = changes.reshape(3, 2).mean(axis=1)
    se_t = np.sqrt(per_task.var(ddof=1) / 3 + se_j**2)
    assert e.se_tasks == pytest.approx(se_t)
    assert e.tasks_high == pytest.approx(e.estimate + scipy.stats.t.ppf(0.975, 2) * se_t)
    assert e.p_published_tasks == pytest.approx(scipy.stats.t.cdf((e.estimate - 0.15) / se_t, 2))
    # a metric's estimate averages its own cells
    assert est["a"].estimate == pytest.approx(changes[0::2].mean())
    # plain Python numbers, so that a chapter can glue them
    assert all(type(getattr(e, f.name)) in (float, int, str)
               for f in dataclasses.fields(e))
    frame = R.as_frame(est)
    assert list(frame.index) == ["a", "b", "mean"]


def test_replicate_refuses_bad_input() -> None:
    cells, labels = _benchmark(np.random.default_rng(3))
    with pytest.raises(ValueError, match="published gain"):
        R.replicate(cells, labels, {"a": 0.1})
    with pytest.raises(ValueError, match="metric labels"):
        R.replicate(cells, labels[:-1], {"a": 0, "b": 0, "mean": 0})
    with pytest.raises(ValueError, match="same models"):
        R.replicate([cells[0], Cell(cells[1].base[:, :5], cells[1].treated[:, :5],
                                    cells[1].accuracy[:5])], ["a", "b"],
                    {"a": 0, "b": 0, "mean": 0})


def test_minimum_detectable_effect_interpolates() -> None:
    assert P.minimum_detectable_effect([0.0, 0.1, 0.2], [0.05, 0.6, 1.0]) == pytest.approx(0.15)
    assert P.minimum_detectable_effect([0.1, 0.2], [0.9, 1.0]) == 0.1
    assert np.isnan(P.minimum_detectable_effect([0.1, 0.2], [0.1, 0.2]))
    with pytest.raises(ValueError, match="increasing"):
        P.minimum_detectable_effect([0.2, 0.1], [0.1, 0.2])


def _shape(**kw) -> P.BenchmarkShape:
    base = dict(tasks=("t0", "t1", "t2", "t3"), metrics=("a", "b"), n_models=11, n_replicates=8,
                n_seeds=(6, 10, 6, 20), seed_sd=(0.4, 0.5, 0.3, 0.6),
                metric_sd=((1.0, 0.8),) * 4, arm_corr=0.7, metric_corr=0.5, image_sd=0.2,
                image_corr=0.9)
    return P.BenchmarkShape(**{**base, **kw})


def test_simulated_benchmark_has_the_shape_and_paired_arms() -> None:
    shape = _shape()
    cells, labels, theta = P.simulate_benchmark(shape, {}, np.random.default_rng(0))
    assert labels == ["a", "b"] * 4
    assert [c.accuracy.shape[1] for c in cells[::2]] == [6, 10, 6, 20]
    assert all(c.base.shape == (9, 11) for c in cells)
    # a gain makes the treated arm agree better with the truth, on average
    gains = [P.simulate_benchmark(shape, {"a": 0.3, "b": 0.3}, np.random.default_rng(s))[2]
             for s in range(40)]
    assert np.mean(gains) > 0.15
    nulls = [P.simulate_benchmark(shape, {}, np.random.default_rng(s))[2] for s in range(200)]
    assert abs(np.mean(nulls)) < 3 * np.std(nulls) / np.sqrt(200)


def test_measure_shape_recovers_a_simulated_shape() -> None:
    # a big benchmark drawn from a known shape: its measured parameters land near the truth
    shape = _shape(n_models=60, tasks=tuple(f"t{i}" for i in range(8)), n_seeds=(10,) * 8,
                   seed_sd=(0.5,) * 8, metric_sd=((1.0, 0.6),) * 8, arm_corr=0.6)
    cells, labels, _ = P.simulate_benchmark(shape, {}, np.random.default_rng(5))
    got = P.measure_shape(cells, labels)
    assert np.mean(got.seed_sd) == pytest.approx(0.5, rel=0.2)
    assert np.mean([s[0] for s in got.metric_sd]) == pytest.approx(1.0, rel=0.3)
    assert np.mean([s[1] for s in got.metric_sd]) == pytest.approx(0.6, rel=0.3)
    assert got.image_sd == pytest.approx(0.2, rel=0.25)
    assert got.image_corr == pytest.approx(0.9, abs=0.05)
    assert got.arm_corr == pytest.approx(0.6, abs=0.2)


def test_null_simulation_is_calibrated_and_the_effect_is_detected() -> None:
    shape = _shape()
    null = P.simulate(shape, {}, n_simulations=150, n_resamples=150, random_state=1)
    cal = P.calibration(null)
    assert cal["simulations"] == 150
    # one-sided 5 % test of the population estimand: at most nominal, within sampling error
    assert cal["reject_pop"] <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / 150)
    assert cal["cover_pop"] >= 0.95 - 2 * np.sqrt(0.05 * 0.95 / 150)
    assert cal["cover_zoo"] >= 0.95 - 3 * np.sqrt(0.05 * 0.95 / 150)
    big = P.simulate(shape, {"a": 0.4, "b": 0.4}, n_simulations=60, n_resamples=100,
                     random_state=2)
    curve = P.power_curve(big.assign(effect=0.4))
    mean = curve[curve["label"] == "mean"].iloc[0]
    assert mean["power_pop"] > 0.8
    assert mean["realised"] > 0.2


def test_simulate_is_reproducible() -> None:
    shape = dataclasses.replace(_shape(), tasks=("t0", "t1"), n_seeds=(6, 6), seed_sd=(0.4, 0.4),
                                metric_sd=((1.0, 0.8),) * 2)
    a = P.simulate(shape, {}, n_simulations=3, n_resamples=20, random_state=7)
    b = P.simulate(shape, {}, n_simulations=3, n_resamples=20, random_state=7)
    assert a.equals(b)
