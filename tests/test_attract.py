"""Tests of ped.attract (Spread/Attract): a loop implementation of the formula, the gate, the
direction of the moves against PED, invariances and error paths."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.decomposition import PCA

from ped import SAResult, potential_energy_descent, spread_attract
from ped.attract import GATE_THRESHOLD, sa_gate_statistic

FEW = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def make_data(n_per_class=20, n_classes=3, dim=6, sep=3.0, noise=2.0, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per_class)
    x = rng.standard_normal((n_classes, dim))[y] * sep + noise * rng.standard_normal((y.size, dim))
    perm = rng.permutation(y.size)
    return x[perm], y[perm]


def _reference_sa(x, y, alpha, sigma, spread, pca_dims):
    """Spread then Attract written out with sklearn's PCA and a loop over class pairs."""
    z = PCA(n_components=pca_dims, svd_solver="full").fit_transform(x)
    classes = np.unique(y)
    if spread > 0:
        z = z.copy()
        for c in classes:
            rows = np.flatnonzero(y == c)
            off = z[rows] - z[rows].mean(0)
            z[rows] += spread * off / np.linalg.norm(off, axis=1, keepdims=True)
    mu = np.array([z[y == c].mean(0) for c in classes])
    radius = np.array([np.sqrt(z[y == c].var(0).sum()) for c in classes])
    shift = np.zeros_like(mu)
    for i in classes:
        for j in classes:
            if i != j:
                d = np.linalg.norm(mu[i] - mu[j])
                shift[i] += alpha * (d - sigma * (radius[i] + radius[j])) * (mu[i] - mu[j]) / d
    return z + shift[y], shift


def _align_signs(got, ref):
    """PCA axes are defined up to sign: flip the columns of ``got`` to match ``ref``."""
    return got * np.sign(np.sum(got * ref, axis=0))


@pytest.mark.parametrize("spread", [0.0, 1.0])
@pytest.mark.parametrize("alpha,sigma", [(0.005, 0.6), (0.05, 0.3)])
def test_matches_loop_reference(spread, alpha, sigma):
    x, y = make_data(n_classes=4, dim=10)
    ref, ref_shift = _reference_sa(x, y, alpha, sigma, spread, 6)
    res = spread_attract(x, y, alpha=alpha, sigma=sigma, spread=spread, pca_dims=6)
    assert isinstance(res, SAResult) and res.applied
    assert res.features.shape == (y.size, 6)
    np.testing.assert_allclose(_align_signs(res.features, ref), ref, atol=1e-9)
    np.testing.assert_allclose(np.abs(res.shift), np.abs(ref_shift), atol=1e-12)


def test_gate_statistic_and_gate():
    x, y = make_data()
    top2 = np.linalg.eigvalsh(np.cov(x.T, bias=True))[-2:]
    assert sa_gate_statistic(x) == pytest.approx(top2.mean(), rel=1e-10)
    assert sa_gate_statistic(x[:4]) == pytest.approx(
        np.linalg.eigvalsh(np.cov(x[:4].T, bias=True))[-2:].mean(), rel=1e-8
    )  # N < D: from the N x N Gram matrix
    assert sa_gate_statistic(x[:, :1]) == pytest.approx(x[:, 0].var(), rel=1e-12)
    assert GATE_THRESHOLD == pytest.approx(np.log(1e9) / 5)
    big = spread_attract(x, y)
    assert big.applied and sa_gate_statistic(x) > GATE_THRESHOLD
    small_x = (x * 0.1).astype(np.float32)  # small scale: the released code leaves it alone
    small = spread_attract(small_x, y)
    assert not small.applied and small.gate_statistic < GATE_THRESHOLD
    np.testing.assert_array_equal(small.features, small_x)
    assert small.features is not small_x and small.features.dtype == np.float32
    assert not small.shift.any() and not small.radii.any()
    assert spread_attract(small_x, y, gate=False).applied


def _mean_distance(z, y, a, b):
    return np.linalg.norm(z[y == a].mean(0) - z[y == b].mean(0))


def test_direction_overlapping_pulled_together_opposite_to_ped():
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1], 50)
    x = rng.standard_normal((100, 2)) * 3.0
    x[y == 1, 0] += 2.0  # two overlapping classes
    before = _mean_distance(x, y, 0, 1)
    sa = spread_attract(x, y, pca_dims=2)
    assert sa.applied
    assert _mean_distance(sa.features, y, 0, 1) < before  # PCA with all axes keeps distances
    ped = potential_energy_descent(x, y)
    assert ped.steps > 0 and _mean_distance(ped.features, y, 0, 1) > before


def test_direction_separated_pairs_pushed_apart():
    # the released sign: a pair farther apart than sigma (R_i + R_j) moves further apart
    rng = np.random.default_rng(2)
    y = np.repeat([0, 1], 50)
    x = rng.standard_normal((100, 2)) * 2.0
    x[y == 1, 0] += 40.0
    sa = spread_attract(x, y, pca_dims=2)
    assert _mean_distance(sa.features, y, 0, 1) > _mean_distance(x, y, 0, 1)
    # PED leaves non-overlapping classes where they are
    assert potential_energy_descent(x, y).steps == 0


def test_spread_moves_every_sample_one_unit_away():
    x, y = make_data()
    z = PCA(n_components=6, svd_solver="full").fit_transform(x)
    res = spread_attract(x, y, spread=1.0, pca_dims=6)
    sign = np.sign(np.sum(res.features * z, axis=0))
    out = (res.features - res.shift[y]) * sign  # undo the rigid shift, align the PCA axes
    for c in range(3):
        rows = y == c
        mu = z[rows].mean(0)
        gained = np.linalg.norm(out[rows] - mu, axis=1) - np.linalg.norm(z[rows] - mu, axis=1)
        np.testing.assert_allclose(gained, 1.0, atol=1e-9)


@FEW
@given(seed=st.integers(0, 2**31 - 1), spread=st.sampled_from([0.0, 1.0]))
def test_invariant_to_sample_order_and_relabelling(seed, spread):
    x, y = make_data(n_per_class=10, seed=seed % 1000)
    rng = np.random.default_rng(seed)
    order, relabel = rng.permutation(y.size), rng.permutation(3)
    base = spread_attract(x, y, spread=spread).features
    moved = spread_attract(x[order], relabel[y[order]], spread=spread).features
    np.testing.assert_allclose(moved, base[order], atol=1e-9)


def test_scale_equivariant_without_gate_and_spread():
    x, y = make_data()
    base = spread_attract(x, y, gate=False)
    scaled = spread_attract(x * 5.0, y, gate=False)
    np.testing.assert_allclose(scaled.features, 5.0 * base.features, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(scaled.shift, 5.0 * base.shift, rtol=1e-9, atol=1e-12)


def test_input_untouched_dtype_and_determinism():
    x, y = make_data()
    x32 = x.astype(np.float32)
    x32.flags.writeable = False
    xc = x32.copy()
    res = spread_attract(x32, y)
    np.testing.assert_array_equal(x32, xc)
    assert res.features.dtype == np.float32
    again = spread_attract(x32, y)
    np.testing.assert_array_equal(res.features, again.features)
    assert spread_attract(x, y, pca_dims=1000).features.shape == x.shape  # clipped to min(N, D)


def test_errors():
    x, y = make_data()
    for kwargs, match in [
        ({"alpha": 0.0}, "alpha"),
        ({"sigma": -1.0}, "sigma"),
        ({"spread": -0.5}, "spread"),
        ({"pca_dims": 0}, "pca_dims"),
        ({"gate": "yes"}, "gate"),
    ]:
        with pytest.raises(ValueError, match=match):
            spread_attract(x, y, **kwargs)
    with pytest.raises(ValueError, match="at least 2"):
        spread_attract(x, np.zeros_like(y))
    with pytest.raises(ValueError, match="mismatched lengths"):
        spread_attract(x, y[:-1])
    with pytest.raises(ValueError, match="NaN or infinite"):
        spread_attract(np.full_like(x, np.nan), y)
    with pytest.raises(ValueError, match="2-D"):
        sa_gate_statistic(x[:, 0])
    twin = np.vstack([x, x])  # class 1 an exact copy of class 0
    with pytest.raises(ValueError, match="same mean"):
        spread_attract(twin, np.repeat([0, 1], len(y)), gate=False)
