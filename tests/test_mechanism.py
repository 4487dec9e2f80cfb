"""Tests of ped.mechanism: energy, centred class shifts, their alignment."""

from __future__ import annotations

import numpy as np
import pytest

from ped import mechanism as M
from ped.dynamics import elastic_potential


def _data(seed: int = 0, n_classes: int = 4, per: int = 30, dim: int = 6):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), per)
    centres = rng.normal(0, 0.6, (n_classes, dim))
    return centres[y] + rng.normal(0, 1, (n_classes * per, dim)), y


def test_energy_matches_the_formula_and_ignores_scale() -> None:
    x, y = _data()
    z = (x - x.mean(0)) / x.std(0)
    c = np.stack([z[y == k].mean(0) for k in range(4)])
    r = 0.6 * np.sqrt(np.stack([z[y == k].var(0) for k in range(4)]).sum(1))
    by_hand = sum(0.5 * max(0.0, r[i] + r[j] - np.linalg.norm(c[i] - c[j])) ** 2
                  for i in range(4) for j in range(i + 1, 4))  # fmt: skip
    assert M.energy(x, y) == pytest.approx(by_hand)
    assert M.energy(x, y) == pytest.approx(elastic_potential(c, r))
    assert M.energy(3.0 * x + 7.0, y) == pytest.approx(M.energy(x, y))


def test_centred_shifts_and_alignment() -> None:
    x, y = _data(1)
    move = np.random.default_rng(2).normal(0, 1, (4, 6))
    common = np.full(6, 5.0)
    after = x + (move[y] + common) * x.std(0)  # class moves plus a common translation
    shifts = M.centred_shifts(x, after, y)
    np.testing.assert_allclose(shifts, move - move.mean(0), atol=1e-10)
    cos = M.shift_alignment(shifts, 2.0 * shifts)
    np.testing.assert_allclose(cos, 1.0)
    np.testing.assert_allclose(M.shift_alignment(shifts, -shifts), -1.0)
    still = M.shift_alignment(shifts, np.zeros_like(shifts))
    assert np.isnan(still).all()
    with pytest.raises(ValueError, match="one shape"):
        M.centred_shifts(x, after[:, :3], y)
    with pytest.raises(ValueError, match="one shape"):
        M.shift_alignment(shifts, shifts[:2])


def test_mechanism_summary_recognises_a_ped_like_fine_tuning() -> None:
    """Features 'fine-tuned' by PED itself (with larger balls, so that more of it happens) point
    the way PED does and lower the energy; random class moves of the same size do not align."""
    from ped import potential_energy_descent

    x, y = _data(3, n_classes=5, dim=8)
    zt = potential_energy_descent(x, y, reference=None, nsigma=0.9, max_steps=6,
                                  exit_ratio=0).features  # fmt: skip
    s = M.mechanism_summary(x, zt, y)
    assert s["energy_finetuned"] < s["energy_before"] and s["energy_ped"] < s["energy_before"]
    assert s["cosine"] > 0.9 and s["cosines"].shape == (5,)
    rng = np.random.default_rng(4)
    rand = x + rng.normal(0, 0.5, (5, 8))[y]
    r = M.mechanism_summary(x, rand, y)
    assert abs(r["cosine"]) < 0.7 and r["chance"] == pytest.approx(1 / np.sqrt(8))


def test_centre_distances_are_rotation_scale_and_translation_invariant() -> None:
    import scipy.stats

    x, y = _data(5, n_classes=6, dim=7)
    q = scipy.stats.special_ortho_group.rvs(7, random_state=1)
    d = M.centre_distances(x, y)
    np.testing.assert_allclose(M.centre_distances(3.0 * x @ q + 5.0, y), d, atol=1e-12)
    # by hand: centres in units of the RMS radius
    c = np.array([x[y == k].mean(axis=0) for k in range(6)])
    radius = np.sqrt(((x - x.mean(axis=0)) ** 2).sum(axis=1).mean())
    assert d[1, 4] == pytest.approx(np.linalg.norm(c[1] - c[4]) / radius)
    changes = M.distance_changes(x, 2.0 * x @ q, y)
    np.testing.assert_allclose(changes, 0.0, atol=1e-12)  # a rotation changes no distance
    with pytest.raises(ValueError, match="mismatched lengths"):
        M.distance_changes(x, x[:-1], y)
    with pytest.raises(ValueError, match="spread"):
        M.centre_distances(np.ones_like(x), y)


def test_distance_agreement_null_and_its_statistic() -> None:
    rng = np.random.default_rng(0)
    c = 9
    a = rng.standard_normal((c, c))
    a = a + a.T
    np.fill_diagonal(a, 0)
    same = M.distance_agreement(a, 2 * a + 1, n_permutations=199)
    assert same.rho == pytest.approx(1.0)
    assert same.p_value == pytest.approx(1 / 200)  # no permutation reaches a perfect match
    assert same.n_pairs == 36 and same.null.shape == (199,)
    # the statistic is Spearman's rho over the upper-triangle pairs
    b = rng.standard_normal((c, c))
    b = b + b.T
    res = M.distance_agreement(a, b, n_permutations=99)
    iu = np.triu_indices(c, 1)
    import scipy.stats

    assert res.rho == pytest.approx(scipy.stats.spearmanr(a[iu], b[iu]).statistic)
    # under the null (independent matrices) p-values are roughly uniform: about 5 % below 0.05
    ps = []
    for s in range(200):
        r = np.random.default_rng(100 + s)
        u, v = r.standard_normal((2, c, c))
        ps.append(M.distance_agreement(u + u.T, v + v.T, n_permutations=99,
                                       random_state=s).p_value)
    assert 0.01 <= np.mean(np.array(ps) <= 0.05) <= 0.11
    # a relabelled copy (classes permuted on one side) is found once the labels agree again
    perm = rng.permutation(c)
    assert M.distance_agreement(a, a[np.ix_(perm, perm)], n_permutations=99).rho < 0.9
    with pytest.raises(ValueError, match="C >= 3"):
        M.distance_agreement(a[:2, :2], a[:2, :2])
    with pytest.raises(ValueError, match="n_permutations"):
        M.distance_agreement(a, a, n_permutations=0)


def test_positive_control_is_found_and_random_moves_are_not() -> None:
    from ped import potential_energy_descent

    # in many dimensions (the benchmark has 128) a random move of a class barely changes its
    # distances to the others, to first order, while PED's moves point along them
    x, y = _data(6, n_classes=8, dim=64)
    moved = potential_energy_descent(x, y, reference=None, nsigma=0.6, max_steps=6,
                                     exit_ratio=0).features  # fmt: skip
    ped_change = M.distance_changes(x, moved, y)
    found, unrelated = [], []
    rng = np.random.default_rng(0)
    for s in range(8):
        zt = M.positive_control(x, y, moved, random_state=s)
        assert zt.shape == x.shape
        found.append(M.distance_agreement(M.distance_changes(x, zt, y), ped_change,
                                          n_permutations=199, random_state=s).p_value)
        # the negative: classes moved by as much, in random directions, no PED part
        rand = x + rng.normal(0, np.abs(moved - x).mean(), (8, 64))[y]
        unrelated.append(M.distance_agreement(M.distance_changes(x, rand, y), ped_change,
                                              n_permutations=199, random_state=s).p_value)
    assert np.mean(np.array(found) <= 0.05) >= 0.75  # the test finds the match that exists
    assert np.mean(np.array(unrelated) <= 0.05) <= 0.25
    # undiluted, the rotated copy matches exactly
    exact = M.positive_control(x, y, moved, dilution=0.0)
    assert M.distance_agreement(M.distance_changes(x, exact, y), ped_change).rho > 0.99
    with pytest.raises(ValueError, match="dilution"):
        M.positive_control(x, y, moved, dilution=-1)


def test_mechanism_summary_reports_the_geometry_test() -> None:
    from ped import potential_energy_descent

    x, y = _data(7, n_classes=8, dim=64)
    zt = potential_energy_descent(x, y, reference=None, nsigma=0.9, max_steps=6,
                                  exit_ratio=0).features  # fmt: skip
    s = M.mechanism_summary(x, zt, y, n_permutations=99)
    assert s["distance_rho"] > 0.8 and s["distance_p"] <= 0.05
    assert -1 <= s["closeness_rho"] <= 1 and -1 <= s["radial_rho"] <= 1
    assert s["control_p"] <= 0.05


def test_distance_agreement_is_undefined_when_nothing_moves() -> None:
    a = np.zeros((4, 4))
    b = np.arange(16.0).reshape(4, 4)
    res = M.distance_agreement(a, b + b.T, n_permutations=9)
    assert np.isnan(res.rho) and np.isnan(res.p_value) and res.null.shape == (9,)


def test_geometry_summary_by_hand() -> None:
    import pandas as pd

    table = pd.DataFrame({"task": ["a", "a", "b", "b"], "distance_rho": [0.2, 0.4, 0.6, np.nan],
                          "distance_p": [0.01, 0.2, 0.001, np.nan],
                          "control_rho": [0.9, 0.8, 0.95, 0.9], "control_p": [0.001, 0.01, 0.2,
                                                                                0.001],
                          "radial_rho": [0.1, 0.2, 0.3, 0.4],
                          "closeness_rho": [0.5, 0.3, 0.9, 0.1]})
    g = M.geometry_summary(table, n_resamples=200)
    assert g.n_pairs == 3 and g.rho == pytest.approx(0.4)
    assert g.rho_low <= g.rho <= g.rho_high
    assert g.significant == pytest.approx(2 / 3)
    import scipy.stats

    assert g.binomial_p == pytest.approx(scipy.stats.binomtest(2, 3, 0.05,
                                                               alternative="greater").pvalue)
    assert g.control_detected == pytest.approx(2 / 3) and g.control_rho == pytest.approx(
        (0.9 + 0.8 + 0.95) / 3)
    assert g.radial_rho == pytest.approx(0.2) and g.closeness_beats_ped == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="no model"):
        M.geometry_summary(table.assign(distance_rho=np.nan))
