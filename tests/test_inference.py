"""Tests of ped.inference: hierarchical bootstrap, p-values, Holm, null calibration, controls."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ped import inference as I
from ped.evaluation import weighted_tau


def _cell(rng: np.random.Generator, n_models: int = 8, n_seeds: int = 4, reps: int = 6) -> I.Cell:
    mu = np.arange(n_models, dtype=float)
    acc = mu[:, None] + rng.normal(0, 0.3, (n_models, n_seeds))
    base = mu + rng.normal(0, 2, n_models) + np.vstack([np.zeros(n_models),
                                                        rng.normal(0, 0.5, (reps, n_models))])
    treated = mu + rng.normal(0, 2, n_models) + np.vstack([np.zeros(n_models),
                                                           rng.normal(0, 0.5, (reps, n_models))])
    return I.Cell(base, treated, acc)


def test_image_replicates_are_stratified_and_seeded() -> None:
    y = np.array([0] * 5 + [1] * 3 + [2] * 7)
    reps = I.image_replicates(y, 4, random_state=3)
    assert len(reps) == 4
    for idx in reps:
        assert np.bincount(y[idx]).tolist() == [5, 3, 7]  # every class keeps its count
    again = I.image_replicates(y, 4, random_state=3)
    assert all(np.array_equal(a, b) for a, b in zip(reps, again))
    assert not all(np.array_equal(a, np.arange(15)) for a in reps)
    with pytest.raises(ValueError, match="n_replicates"):
        I.image_replicates(y, 0)
    with pytest.raises(ValueError, match="1-d"):
        I.image_replicates(np.zeros((2, 2)), 1)


def test_cell_change_and_validation() -> None:
    cell = _cell(np.random.default_rng(0))
    truth = cell.accuracy.mean(axis=1)
    assert cell.change() == pytest.approx(weighted_tau(cell.treated[0], truth)
                                          - weighted_tau(cell.base[0], truth))  # fmt: skip
    with pytest.raises(ValueError, match="one shape"):
        I.Cell(cell.base, cell.treated[:, :-1], cell.accuracy)
    with pytest.raises(ValueError, match="models"):
        I.Cell(cell.base, cell.treated, cell.accuracy[:-1])
    bad = cell.base.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        I.Cell(bad, cell.treated, cell.accuracy)


def test_hierarchical_bootstrap_levels() -> None:
    rng = np.random.default_rng(1)
    cells = [_cell(rng) for _ in range(3)]
    fixed = I.hierarchical_bootstrap(cells, n_resamples=20, resample=())
    # nothing resampled: every draw is the estimate, the mean of the cells' changes
    assert fixed.estimate == pytest.approx(np.mean([c.change() for c in cells]))
    assert np.allclose(fixed.draws, fixed.estimate) and fixed.degenerate == 0
    full = I.hierarchical_bootstrap(cells, n_resamples=300, random_state=5)
    again = I.hierarchical_bootstrap(cells, n_resamples=300, random_state=5)
    assert np.array_equal(full.draws, again.draws)  # seeded
    assert full.low <= full.estimate + 0.2 and full.high >= full.estimate - 0.2
    assert full.cell_draws.shape == (300, 3) and np.allclose(full.draws, full.cell_draws.mean(1))
    seeds_only = I.hierarchical_bootstrap(cells, n_resamples=300, resample=("seeds",))
    # the seeds are the smallest source of noise here: the narrowest interval
    assert seeds_only.high - seeds_only.low < full.high - full.low
    with pytest.raises(ValueError, match="level"):
        I.hierarchical_bootstrap(cells, resample=("tasks",))
    with pytest.raises(ValueError, match="replicates"):
        I.hierarchical_bootstrap([I.Cell(c.base[:1], c.treated[:1], c.accuracy) for c in cells])
    with pytest.raises(ValueError, match="at least one cell"):
        I.hierarchical_bootstrap([])


def test_cells_of_a_group_share_their_draws() -> None:
    """The metrics of one task see the same models, seeds and images in every resample."""
    cell = _cell(np.random.default_rng(7))
    twin = I.Cell(cell.base, cell.treated, cell.accuracy, group="task")
    shared = I.hierarchical_bootstrap([twin, twin], n_resamples=100, random_state=1)
    np.testing.assert_array_equal(shared.cell_draws[:, 0], shared.cell_draws[:, 1])
    apart = I.hierarchical_bootstrap([cell, cell], n_resamples=100, random_state=1)
    assert not np.array_equal(apart.cell_draws[:, 0], apart.cell_draws[:, 1])
    small = _cell(np.random.default_rng(8), n_models=5)
    with pytest.raises(ValueError, match="share"):
        I.hierarchical_bootstrap([twin, I.Cell(small.base, small.treated, small.accuracy,
                                               group="task")])  # fmt: skip


def test_degenerate_draws_are_redrawn_and_counted() -> None:
    rng = np.random.default_rng(2)
    cell = _cell(rng, n_models=3)
    res = I.hierarchical_bootstrap([cell], n_resamples=200, random_state=0)
    # with 3 models, drawing one model three times (prob 1/9) gives constant scores
    assert 0 < res.degenerate < 200 and np.isfinite(res.draws).all()
    const = I.Cell(np.ones_like(cell.base), cell.treated, cell.accuracy)
    with pytest.raises(ValueError, match="constant"):  # undefined on the full data already
        I.hierarchical_bootstrap([const], n_resamples=5, max_redraws=3)
    # defined on the full data, but only one model's scores differ: most draws are degenerate
    rare = cell.base.copy()
    rare[:, :] = 1.0
    rare[:, 0] = 2.0
    with pytest.raises(ValueError, match="degenerate"):
        I.hierarchical_bootstrap([I.Cell(rare, cell.treated, cell.accuracy)], n_resamples=200,
                                 max_redraws=1)  # fmt: skip


def test_bootstrap_pvalue() -> None:
    assert I.bootstrap_pvalue(np.ones(99)) == pytest.approx(2 / 100)
    assert I.bootstrap_pvalue(np.r_[-np.ones(50), np.ones(50)]) == 1.0
    assert I.bootstrap_pvalue(np.r_[-np.ones(9), np.ones(90)]) == pytest.approx(2 * 10 / 100)
    with pytest.raises(ValueError, match="finite"):
        I.bootstrap_pvalue([np.nan])


def _holm_adjusted(p: np.ndarray) -> np.ndarray:
    """Holm's adjusted p-values: max over the smaller ones of (m - rank) * p, capped at 1."""
    order = np.argsort(p, kind="stable")
    adj = np.empty_like(p)
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (p.size - k) * p[i]))
        adj[i] = running
    return adj


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=30), st.sampled_from([0.01, 0.05, 0.1]))
def test_holm_matches_adjusted_pvalues(p: list[float], alpha: float) -> None:
    arr = np.array(p)
    assert np.array_equal(I.holm(arr, alpha), _holm_adjusted(arr) <= alpha)


def test_holm_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="p-values"):
        I.holm([1.5])
    with pytest.raises(ValueError, match="alpha"):
        I.holm([0.1], alpha=0)


def test_placebo_shift_keeps_lengths_and_moves_classes_rigidly() -> None:
    from ped import potential_energy_descent

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 20)
    x = (rng.normal(0, 1, (80, 6)) + np.repeat(rng.normal(0, 0.5, (4, 6)), 20, axis=0)) * \
        np.array([1, 2, 3, 1, 1, 5.0])  # fmt: skip
    before = x.copy()
    res = potential_energy_descent(x, y, reference=None)
    sd = x.std(axis=0)
    moved = I.placebo_shift(x, y, res.shift, scale=sd, random_state=1)
    np.testing.assert_array_equal(x, before)
    delta = moved - x
    for c in range(4):
        d = delta[y == c]
        np.testing.assert_allclose(d, np.broadcast_to(d[0], d.shape), atol=1e-12)  # rigid
        assert np.linalg.norm(d[0] / sd) == pytest.approx(np.linalg.norm(res.shift[c] / sd))
    cos = [np.dot(delta[y == c][0], res.shift[c]) / np.linalg.norm(delta[y == c][0]) /
           np.linalg.norm(res.shift[c]) for c in range(4)]  # fmt: skip
    assert max(abs(v) for v in cos) < 0.999  # other directions than PED's
    with pytest.raises(ValueError, match="shift"):
        I.placebo_shift(x, y, res.shift[:2])
    with pytest.raises(ValueError, match="scale"):
        I.placebo_shift(x, y, res.shift, scale=-sd)


def test_shuffled_label_ped_and_leave_one_out() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 15)
    x = rng.normal(0, 1, (45, 5)) + np.repeat(np.eye(3, 5) * 0.5, 15, axis=0)
    a = I.shuffled_label_ped(x, y, random_state=2)
    b = I.shuffled_label_ped(x, y, random_state=2)
    assert a.shape == x.shape and np.array_equal(a, b)
    out = I.leave_one_out(["m0", "m1", "m2"], lambda mask: float(np.flatnonzero(mask).sum()))
    assert out == {"m0": 3.0, "m1": 2.0, "m2": 1.0}


def test_radial_shift_moves_each_class_away_from_the_grand_mean_by_peds_length() -> None:
    from ped import potential_energy_descent

    rng = np.random.default_rng(2)
    y = np.repeat(np.arange(5), 12)
    x = (rng.normal(0, 1, (60, 6)) + np.repeat(rng.normal(0, 0.7, (5, 6)), 12, axis=0)) * \
        np.array([1, 2, 3, 1, 1, 4.0])  # fmt: skip
    before = x.copy()
    res = potential_energy_descent(x, y, reference=None)
    sd = x.std(axis=0)
    moved = I.radial_shift(x, y, res.shift, scale=sd)
    np.testing.assert_array_equal(x, before)
    delta = moved - x
    z = x / sd
    for c in range(5):
        d = delta[y == c]
        np.testing.assert_allclose(d, np.broadcast_to(d[0], d.shape), atol=1e-12)  # rigid
        ray = z[y == c].mean(axis=0) - z.mean(axis=0)
        step = d[0] / sd
        assert np.linalg.norm(step) == pytest.approx(np.linalg.norm(res.shift[c] / sd))
        cos = step @ ray / np.linalg.norm(step) / np.linalg.norm(ray)
        assert cos == pytest.approx(1.0)  # outwards along the ray
    # every class's centre ends further from the grand mean than it started
    far = [np.linalg.norm((moved / sd)[y == c].mean(0) - (moved / sd).mean(0)) >
           np.linalg.norm(z[y == c].mean(0) - z.mean(0)) for c in range(5)]
    assert all(far)
    # a class at the grand mean stays where it is
    sym = np.vstack([-np.ones((3, 2)), np.ones((3, 2)), np.zeros((3, 2))])
    ys = np.repeat([0, 1, 2], 3)
    out = I.radial_shift(sym, ys, np.ones((3, 2)))
    np.testing.assert_array_equal(out[ys == 2], sym[ys == 2])
    with pytest.raises(ValueError, match="shift"):
        I.radial_shift(x, y, res.shift[:2])
    with pytest.raises(ValueError, match="scale"):
        I.radial_shift(x, y, res.shift, scale=np.zeros(6))
