"""Tests of ped.dynamics: Potential Energy Descent against independent derivations."""

from __future__ import annotations

import dataclasses
import tracemalloc

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from helpers import gaussian_classes

import ped
from ped.dynamics import STD_FLOOR, class_statistics, pairwise_overlap, standardisation

# --------------------------------------------------------------------------------------------
# Independent reference implementations, written the straightforward way: the released code's
# algorithm with dense C x C x D arrays and every sample moved at every step, and Algorithm 1.
# --------------------------------------------------------------------------------------------


def _dense_official(x, y, mean, std, nsigma=0.6, t=0.1, k=1.0, max_steps=6, exit_ratio=0.5):
    z = (x.astype(np.float64) - mean) / std
    n_classes = y.max() + 1
    first = None
    steps = 0
    for _ in range(max_steps):
        centres = np.stack([z[y == c].mean(0) for c in range(n_classes)])
        radii = nsigma * np.sqrt(np.stack([z[y == c].var(0).sum() for c in range(n_classes)]))
        diff = centres[:, None, :] - centres[None, :, :]
        dist = np.sqrt((diff**2).sum(-1))
        overlap = np.maximum(radii[:, None] + radii[None, :] - dist, 0)
        np.fill_diagonal(overlap, 0)
        move = np.minimum(0.5 * t * t * k * overlap, overlap)
        with np.errstate(invalid="ignore", divide="ignore"):
            direction = np.where(dist[..., None] > 0, diff / dist[..., None], 0.0)
        shift = (move[..., None] * direction).sum(1)
        change = np.abs(shift).sum()
        if first is None:
            if change == 0:
                break
            first = change
        elif change / first <= exit_ratio:
            break
        z = z + shift[y]
        steps += 1
    return z * std + mean, steps


def _dense_paper(x, y, mean, std, nsigma=0.6, t=0.1, k=1.0, max_steps=6, eps=0.5):
    z = (x.astype(np.float64) - mean) / std
    n_classes = y.max() + 1
    omegas = []
    for _ in range(max_steps):
        centres = np.stack([z[y == c].mean(0) for c in range(n_classes)])
        radii = nsigma * np.sqrt(np.stack([z[y == c].var(0).sum() for c in range(n_classes)]))
        forces = np.zeros_like(centres)
        for i in range(n_classes):
            for j in range(n_classes):
                d = np.linalg.norm(centres[i] - centres[j])
                if i != j and radii[i] + radii[j] > d:
                    forces[i] += k * (radii[i] + radii[j] - d) * (centres[i] - centres[j]) / d
        move = 0.5 * forces * t * t
        omega = np.linalg.norm(move)
        if not omegas and omega == 0:
            break
        z = z + move[y]
        omegas.append(omega)
        if len(omegas) > 1 and omega <= eps * omegas[0]:
            break
    return z * std + mean, len(omegas)


def _torch_energy_gradient(centres: np.ndarray, radii: np.ndarray, k: float):
    c = torch.tensor(centres, requires_grad=True)
    r = torch.tensor(radii)
    i, j = torch.triu_indices(len(radii), len(radii), offset=1)
    x = torch.clamp(r[i] + r[j] - (c[i] - c[j]).norm(dim=1), min=0)
    energy = 0.5 * k * (x**2).sum()
    energy.backward()
    return energy.item(), c.grad.numpy()


# ------------------------------------------------------------------ agreement with derivations


@given(seed=st.integers(0, 2**32 - 1), n_classes=st.integers(2, 7), dim=st.integers(1, 12),
       k=st.floats(0.2, 3.0))
def test_hooke_force_is_negative_autograd_gradient(seed, n_classes, dim, k):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim))
    radii = rng.uniform(0.1, 2.5, size=n_classes)
    energy, grad = _torch_energy_gradient(centres, radii, k)
    np.testing.assert_allclose(ped.hooke_forces(centres, radii, k=k), -grad, atol=1e-10)
    assert ped.elastic_potential(centres, radii, k=k) == pytest.approx(energy, rel=1e-12, abs=1e-14)


@pytest.mark.parametrize("variant", ["official", "paper"])
@given(seed=st.integers(0, 2**32 - 1), time_step=st.floats(0.05, 1.2), k=st.floats(0.3, 1.0))
def test_one_ped_step_is_a_gradient_step_on_the_potential(variant, seed, time_step, k):
    """c_1 = c_0 - (t^2/2) dU/dc, with dU/dc from torch.autograd (clip of the release unbound)."""
    rng = np.random.default_rng(seed)
    x, y = gaussian_classes(rng, n_classes=4, dim=5, n_per_class=15, spread=0.7)
    res = ped.potential_energy_descent(x, y, max_steps=1, time_step=time_step, k=k,
                                       reference=(np.zeros(5), np.ones(5)), variant=variant)
    _, grad = _torch_energy_gradient(res.centers[0], res.radii, k)
    expected = res.centers[0] - 0.5 * time_step**2 * grad
    if res.steps == 0:
        np.testing.assert_allclose(grad, 0.0, atol=1e-12)
    else:
        np.testing.assert_allclose(res.centers[1], expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("exit_ratio", [0.0, 0.5, 0.97])
@pytest.mark.parametrize("time_step", [0.1, 0.9, 2.0])
def test_official_matches_dense_reimplementation_of_released_code(rng, exit_ratio, time_step):
    x, y = gaussian_classes(rng, n_classes=6, dim=10, n_per_class=25, spread=0.5)
    ref = rng.normal(size=(200, 10)) * 2 + 0.3
    mean, std = ref.mean(0), np.maximum(ref.std(0), STD_FLOOR)
    expected, steps = _dense_official(x, y, mean, std, t=time_step, exit_ratio=exit_ratio)
    res = ped.potential_energy_descent(x, y, reference=ref, time_step=time_step,
                                       exit_ratio=exit_ratio)
    assert res.steps == steps
    np.testing.assert_allclose(res.features, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("exit_ratio", [0.0, 0.5, 0.9])
def test_paper_variant_matches_algorithm_1_loop(rng, exit_ratio):
    x, y = gaussian_classes(rng, n_classes=5, dim=6, n_per_class=20, spread=0.5)
    mean, std = x.mean(0), x.std(0)
    expected, steps = _dense_paper(x, y, mean, std, t=0.8, max_steps=10, eps=exit_ratio)
    res = ped.potential_energy_descent(x, y, time_step=0.8, max_steps=10, exit_ratio=exit_ratio,
                                       variant="paper")
    assert res.steps == steps
    np.testing.assert_allclose(res.features, expected, rtol=1e-10, atol=1e-10)


def test_exit_rule_discards_the_failing_step_in_official_and_keeps_it_in_paper(rng):
    x, y = gaussian_classes(rng, n_classes=4, dim=3, n_per_class=30, spread=0.4)
    official = ped.potential_energy_descent(x, y, time_step=1.0, max_steps=50, exit_ratio=0.9)
    paper = ped.potential_energy_descent(x, y, time_step=1.0, max_steps=50, exit_ratio=0.9,
                                         variant="paper")
    assert 1 <= official.steps < 50
    assert 1 <= paper.steps < 50
    assert np.all(official.displacement[1:] / official.displacement[0] > 0.9)
    assert paper.displacement[-1] <= 0.9 * paper.displacement[0]
    assert np.all(paper.displacement[1:-1] > 0.9 * paper.displacement[0])


def test_release_clip_binds_only_for_large_time_steps(rng):
    x, y = gaussian_classes(rng, n_classes=3, dim=2, n_per_class=50, spread=0.3)
    small = [ped.potential_energy_descent(x, y, time_step=0.5, max_steps=1, variant=v)
             for v in ("official", "paper")]
    np.testing.assert_allclose(small[0].features, small[1].features, rtol=1e-12)
    big = [ped.potential_energy_descent(x, y, time_step=3.0, max_steps=1, variant=v)
           for v in ("official", "paper")]
    assert np.abs(big[0].shift).max() < np.abs(big[1].shift).max()


# ---------------------------------------------------------------------------------- properties


@given(seed=st.integers(0, 2**32 - 1), dtype=st.sampled_from([np.float32, np.float64]))
def test_descent_is_a_rigid_translation_per_class(seed, dtype):
    rng = np.random.default_rng(seed)
    x, y = gaussian_classes(rng, n_classes=4, dim=6, n_per_class=12, spread=0.6, dtype=dtype)
    res = ped.potential_energy_descent(x, y)
    assert res.features.dtype == dtype and res.features.shape == x.shape
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(res.features - x, res.shift[y], atol=tol)
    for c in range(4):  # covariance (hence the radius) unchanged
        np.testing.assert_allclose(np.cov(res.features[y == c].T), np.cov(x[y == c].T),
                                   atol=tol * 10)


@given(seed=st.integers(0, 2**32 - 1), time_step=st.floats(0.01, 1.0))
def test_energy_never_increases_for_small_steps(seed, time_step):
    rng = np.random.default_rng(seed)
    x, y = gaussian_classes(rng, n_classes=5, dim=4, n_per_class=10, spread=0.5)
    res = ped.potential_energy_descent(x, y, time_step=time_step, max_steps=8, exit_ratio=0)
    assert np.all(np.diff(res.energy) <= 1e-12)
    assert len(res.energy) == res.steps + 1 == len(res.displacement) + 1
    assert res.centers.shape == (res.steps + 1, 5, 4)


def test_forces_obey_newtons_third_law(rng):
    centres = rng.normal(size=(9, 7))
    forces = ped.hooke_forces(centres, np.full(9, 2.0))
    assert np.abs(forces).max() > 0.1
    np.testing.assert_allclose(forces.sum(axis=0), 0.0, atol=1e-12)


def test_sample_order_and_class_names_do_not_matter(rng):
    x, y = gaussian_classes(rng, n_classes=5, dim=4, n_per_class=15, spread=0.5)
    base = ped.potential_energy_descent(x, y).features
    perm = rng.permutation(len(y))
    np.testing.assert_allclose(ped.potential_energy_descent(x[perm], y[perm]).features,
                               base[perm], rtol=1e-10, atol=1e-12)
    renamed = rng.permutation(5)[y]
    np.testing.assert_allclose(ped.potential_energy_descent(x, renamed).features, base,
                               rtol=1e-10, atol=1e-12)


def test_no_overlap_moves_nothing(rng):
    x, y = gaussian_classes(rng, n_classes=3, dim=4, n_per_class=10, spread=100.0)
    for variant in ("official", "paper"):
        res = ped.potential_energy_descent(x, y, variant=variant)
        assert res.steps == 0
        assert res.energy.tolist() == [0.0] and res.displacement.size == 0
        np.testing.assert_array_equal(res.features, x)
        assert res.features is not x


def test_inputs_are_not_modified(rng):
    x, y = gaussian_classes(rng, dtype=np.float32)
    ref = rng.normal(size=(50, x.shape[1]))
    copies = x.copy(), y.copy(), ref.copy()
    ped.potential_energy_descent(x, y, reference=ref)
    for before, after in zip(copies, (x, y, ref)):
        np.testing.assert_array_equal(before, after)


def test_reference_forms_agree(rng):
    x, y = gaussian_classes(rng, n_classes=4, dim=5, spread=0.5)
    ref = rng.normal(size=(80, 5)) * 3
    as_matrix = ped.potential_energy_descent(x, y, reference=ref).features
    as_pair = ped.potential_energy_descent(x, y, reference=(ref.mean(0), ref.std(0))).features
    np.testing.assert_allclose(as_matrix, as_pair, rtol=1e-12)
    own = ped.potential_energy_descent(x, y).features
    np.testing.assert_allclose(ped.potential_energy_descent(x, y, reference=x).features, own)
    assert not np.allclose(own, as_matrix)  # the reference matters


def test_constant_dimension_is_floored_not_divided_by_zero(rng):
    x, y = gaussian_classes(rng, n_classes=3, dim=4, spread=0.3)
    x[:, 2] = 5.0
    mean, std = standardisation(None, x)
    assert std[2] == STD_FLOOR
    res = ped.potential_energy_descent(x, y)
    assert np.isfinite(res.features).all()
    np.testing.assert_allclose(res.features[:, 2], 5.0)


def test_class_statistics_match_numpy(rng):
    x, y = gaussian_classes(rng, n_classes=3, dim=4, dtype=np.float32)
    stats = class_statistics(x, y, 3)
    x64 = x.astype(np.float64)
    for c in range(3):
        np.testing.assert_allclose(stats.means[c], x64[y == c].mean(0))
        np.testing.assert_allclose(stats.variances[c], x64[y == c].var(0))
        np.testing.assert_allclose(stats.total_variance[c], x64[y == c].var(0).sum())
    mean, std = stats.pooled()  # law of total variance
    np.testing.assert_allclose(mean, x64.mean(0), rtol=1e-12)
    np.testing.assert_allclose(std, x64.std(0), rtol=1e-12)
    centres, total = stats.standardised(mean, std)
    z = (x64 - mean) / std
    np.testing.assert_allclose(centres[1], z[y == 1].mean(0), atol=1e-12)
    np.testing.assert_allclose(total[1], z[y == 1].var(0).sum(), rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_class_statistics_keep_their_digits_under_large_offsets(rng, dtype):
    # class 0 well conditioned, class 1 with an offset 1e4 times its spread in one dimension and
    # a constant dimension: the one-pass formula would lose ~8 digits there; the fallback keeps
    # them (the reference: numpy's two-pass variance in float64 of the same values)
    n, dim = 200, 5
    x = rng.normal(size=(2 * n, dim))
    x[n:, 1] = 1e4 + 1e-1 * rng.normal(size=n)
    x[n:, 3] = 2.5
    x = x.astype(dtype)
    y = np.repeat([0, 1], n)
    stats = class_statistics(x, y, 2)
    x64 = x.astype(np.float64)
    for c in range(2):
        block = x64[y == c]
        np.testing.assert_allclose(stats.means[c], block.mean(0), rtol=1e-14)
        np.testing.assert_allclose(stats.variances[c], block.var(0), rtol=1e-12, atol=0)
    assert stats.variances[1, 3] == 0.0  # a constant dimension has exactly no spread
    # the same statistics whatever the order of the samples (sorted labels take views,
    # shuffled ones a gather)
    perm = rng.permutation(2 * n)
    shuffled = class_statistics(x[perm], y[perm], 2)
    np.testing.assert_allclose(shuffled.means, stats.means, rtol=1e-14)
    np.testing.assert_allclose(shuffled.variances, stats.variances, rtol=1e-12)
    np.testing.assert_array_equal(shuffled.counts, stats.counts)


@given(offset=st.floats(-1e6, 1e6), spread=st.floats(1e-3, 1e3), seed=st.integers(0, 2**16))
def test_class_statistics_variance_is_two_pass_accurate(offset, spread, seed):
    rng = np.random.default_rng(seed)
    x = (offset + spread * rng.normal(size=(40, 3))).astype(np.float32)
    y = np.arange(40) % 2
    stats = class_statistics(x, y, 2)
    x64 = x.astype(np.float64)
    for c in range(2):
        np.testing.assert_allclose(stats.variances[c], x64[y == c].var(0), rtol=1e-10, atol=0)


def test_descent_checks_values_from_its_moments(rng):
    x, y = gaussian_classes(rng, n_classes=3)
    huge = x.astype(np.float64) * 1e150  # finite, but its squares overflow float64
    with pytest.raises(ValueError, match="too large"):
        ped.potential_energy_descent(huge, y)
    # below the bound of max_magnitude the moments settle it and nothing is refused
    from ped._validation import max_magnitude

    near = x.astype(np.float64) / np.abs(x).max() * max_magnitude(x.shape) * 0.5
    assert np.isfinite(ped.potential_energy_descent(near, y).features).all()
    bad = x.copy()
    bad[5, 1] = -np.inf
    with pytest.raises(ValueError, match="1 NaN or infinite"):
        ped.potential_energy_descent(bad, y)


def test_nearly_coincident_centres_keep_accurate_distances():
    centres = np.array([[1e4, 0.0], [1e4 + 1e-5, 0.0], [0.0, 3.0]])
    _, dist = pairwise_overlap(centres, np.ones(3))
    assert dist[0, 1] == pytest.approx(1e-5, rel=1e-6)


def test_memory_is_not_quadratic_in_classes_times_dims(rng):
    n_classes, dim = 150, 400
    x, y = gaussian_classes(rng, n_classes=n_classes, dim=dim, n_per_class=4, spread=0.05,
                            dtype=np.float32)
    tracemalloc.start()
    res = ped.potential_energy_descent(x, y)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert res.steps > 0
    dense = n_classes * n_classes * dim * 8  # one C x C x D float64 array: 72 MB
    assert peak < dense / 4, f"peak {peak / 1e6:.1f} MB"


# ---------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda x, y: (np.where(np.arange(x.size).reshape(x.shape) == 3, np.nan, x), y), "NaN"),
        (lambda x, y: (np.where(np.arange(x.size).reshape(x.shape) == 3, np.inf, x), y), "NaN or inf"),
        (lambda x, y: (x, y[:-1]), "mismatched lengths"),
        (lambda x, y: (x[:, 0], y), "2-D"),
        (lambda x, y: (x.astype(int), y), "floating-point"),
        (lambda x, y: (x, np.where(y == 1, 7, y)), "never occur"),
        (lambda x, y: (x, y - 1), "negative"),
        (lambda x, y: (x, np.zeros_like(y)), "at least 2"),
        (lambda x, y: (x, y + 0.5), "whole numbers"),
        (lambda x, y: (x, y.astype(str)), "integers"),
        (lambda x, y: (x, y[:, None]), "1-D"),
        (lambda x, y: (x[:0], y[:0]), "empty"),
    ],
)
def test_bad_features_or_labels_raise_clear_errors(rng, mutate, message):
    x, y = gaussian_classes(rng, n_classes=3)
    bad_x, bad_y = mutate(x, y)
    with pytest.raises(ValueError, match=message):
        ped.potential_energy_descent(bad_x, bad_y)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"nsigma": 0}, "nsigma"),
        ({"nsigma": -0.6}, "nsigma"),
        ({"time_step": 0.0}, "time_step"),
        ({"k": float("nan")}, "k must"),
        ({"max_steps": 0}, "max_steps"),
        ({"max_steps": 2.5}, "max_steps"),
        ({"exit_ratio": -0.1}, "exit_ratio"),
        ({"variant": "fast"}, "variant"),
        ({"reference": np.zeros((10, 3))}, "reference has 3 dims"),
        ({"reference": (np.zeros(3), np.ones(8))}, r"shape \(8,\)"),
        ({"reference": (np.zeros(8), -np.ones(8))}, "non-negative"),
        ({"reference": (np.zeros(8),)}, r"\(mean, std\)"),
        ({"reference": np.full((10, 8), np.nan)}, "reference contains"),
    ],
)
def test_bad_options_raise_clear_errors(rng, option, message):
    x, y = gaussian_classes(rng, n_classes=3, dim=8)
    with pytest.raises(ValueError, match=message):
        ped.potential_energy_descent(x, y, **option)


def test_duplicate_classes_are_reported():
    x = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0], [1.0, 1.0], [5.0, 5.0], [6.0, 5.0]])
    y = np.array([0, 0, 1, 1, 2, 2])
    with pytest.raises(ValueError, match="classes 0 and 1 have the same centre"):
        ped.potential_energy_descent(x, y)


# ------------------------------------------------------------------------------- torch backend


@pytest.mark.parametrize("variant", ["official", "paper"])
def test_torch_tensors_give_the_numpy_result(rng, variant):
    x, y = gaussian_classes(rng, n_classes=6, dim=9, n_per_class=25, spread=0.5)
    ref = rng.normal(size=(100, 9)) * 2
    expected = ped.potential_energy_descent(x, y, reference=ref, variant=variant)
    got = ped.potential_energy_descent(torch.from_numpy(x), torch.from_numpy(y),
                                       reference=torch.from_numpy(ref), variant=variant)
    assert isinstance(got.features, torch.Tensor) and got.features.dtype == torch.float64
    assert got.steps == expected.steps
    np.testing.assert_allclose(got.features.numpy(), expected.features, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got.energy, expected.energy, rtol=1e-10)


def test_torch_float32_keeps_dtype_and_does_not_modify_input(rng):
    x, y = gaussian_classes(rng, n_classes=4, dim=5, spread=0.4, dtype=np.float32)
    tx = torch.from_numpy(x.copy())
    res = ped.potential_energy_descent(tx, y)
    assert res.features.dtype == torch.float32
    np.testing.assert_array_equal(tx.numpy(), x)
    np.testing.assert_allclose(res.features.numpy(), ped.potential_energy_descent(x, y).features,
                               rtol=1e-5, atol=1e-5)
    none = ped.potential_energy_descent(tx, y, nsigma=1e-6)
    assert none.steps == 0 and none.features is not tx


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        (torch.tensor([[0.0, float("nan")], [1.0, 2.0], [3.0, 4.0]]), "NaN"),
        (torch.ones((3, 2), dtype=torch.int64), "floating-point"),
        (torch.ones(3), "2-D"),
    ],
)
def test_torch_bad_input(tensor, message):
    with pytest.raises(ValueError, match=message):
        ped.potential_energy_descent(tensor, np.array([0, 1, 1]))


def test_ped_options_hold_the_defaults_once_and_check_values() -> None:
    import inspect

    from ped import PEDOptions, potential_energy_descent

    o = PEDOptions()
    assert dict(o) == {"nsigma": 0.6, "time_step": 0.1, "k": 1.0, "max_steps": 6,
                       "exit_ratio": 0.5, "variant": "official"}
    # the function's defaults are the options' (written once)
    sig = inspect.signature(potential_energy_descent).parameters
    assert {n: sig[n].default for n in o} == dict(o)
    assert o.non_default() == {} and PEDOptions(nsigma=0.3).non_default() == {"nsigma": 0.3}
    assert PEDOptions.of({"max_steps": 3}) == PEDOptions(max_steps=3)
    assert PEDOptions.of(None) == o and PEDOptions.of(o) is o
    with pytest.raises(ValueError, match="nsigma"):
        PEDOptions(nsigma=0)
    with pytest.raises(ValueError, match="unknown PED option"):
        PEDOptions.of({"radius": 1})
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.nsigma = 1.0  # type: ignore[misc]
    # passed on as keyword arguments, it is the same descent
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 5)), np.repeat(np.arange(3), 20)
    a = potential_energy_descent(x, y, **PEDOptions(nsigma=0.9, max_steps=3))
    b = potential_energy_descent(x, y, nsigma=0.9, max_steps=3)
    np.testing.assert_array_equal(a.features, b.features)
