"""Tests of ped.metrics: agreement with independent computations, properties, error paths."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scipy.special import softmax
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture
from sklearn.preprocessing import StandardScaler

from ped.metrics import (
    METRICS,
    SOURCE_METRICS,
    gbc,
    hscore,
    leep,
    logme,
    nce,
    nleep,
    parc,
    sfda,
    transrate,
)
from ped.metrics.discriminability import _fda_fit, _largest_eigenvalue
from ped.metrics._common import eigh_project
from ped.metrics.evidence import _logme_fit

RTOL = 1e-6
# small, fast options so every registry metric runs on tiny inputs
FAST = {"nleep": {"component_ratio": 2, "covariance_type": "diag"}}


def make_data(n_per_class=30, n_classes=4, dim=8, sep=2.0, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per_class)
    centres = rng.standard_normal((n_classes, dim)) * sep
    x = centres[y] + rng.standard_normal((y.size, dim))
    perm = rng.permutation(y.size)
    return x[perm].astype(dtype), y[perm]


def call(name, x, y, **kw):
    return METRICS[name](x, y, **{**FAST.get(name, {}), **kw})


# ------------------------------------------------------------------------------------------ LogME
@pytest.mark.parametrize("n,d", [(60, 6), (15, 30)])
def test_logme_evidence_matches_marginal_likelihood_at_fixed_point(n, d):
    rng = np.random.default_rng(1)
    y = np.arange(n) % 3
    f = rng.standard_normal((n, d)) + 1.5 * np.eye(d)[y]  # labels partly explained
    ev, alpha, beta = _logme_fit(f, y, 3, tol=1e-13, max_iter=5000)
    n_fixed = 0
    for c in range(3):
        t = (y == c).astype(float)
        a, b = alpha[c], beta[c]
        # closed form: log N(t | 0, I/beta + F F^T / alpha)
        cov = np.eye(n) / b + f @ f.T / a
        ref = scipy.stats.multivariate_normal(np.zeros(n), cov).logpdf(t) / n
        assert ev[c] == pytest.approx(ref, rel=RTOL)
        if b > 1e6:
            continue  # y is interpolated (N < D): beta diverges, the evidence has a finite limit
        n_fixed += 1
        # and the (alpha, beta) are MacKay's fixed point, from a dense computation
        A = a * np.eye(d) + b * f.T @ f
        m = b * np.linalg.solve(A, f.T @ t)
        lam = np.linalg.eigvalsh(f.T @ f)
        gamma = np.sum(b * lam / (a + b * lam))
        assert a == pytest.approx(gamma / (m @ m), rel=RTOL)
        assert b == pytest.approx((n - gamma) / np.sum((f @ m - t) ** 2), rel=RTOL)
    assert n_fixed >= 2
    assert logme(f, y, tol=1e-13, max_iter=5000) == pytest.approx(ev.mean(), rel=1e-12)


def test_logme_finite_when_alpha_diverges():
    # features unrelated to the labels: the evidence grows as alpha -> infinity (w -> 0)
    rng = np.random.default_rng(4)
    f = rng.standard_normal((12, 20))
    y = np.arange(12) % 3
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        v = logme(f, y, tol=1e-13, max_iter=5000)
    assert np.isfinite(v)


def test_logme_finite_when_the_features_fit_the_labels_exactly():
    # N < D with duplicated rows (a bootstrap replicate of few images): the residual vanishes,
    # beta grows without bound and sigma / (alpha / beta) overflows; the evidence stays finite
    rng = np.random.default_rng(212)  # a draw on which sigma / t overflowed (NaN score)
    n = int(rng.integers(10, 60))
    d, c = int(rng.integers(n, 3 * n)), int(rng.integers(2, 6))
    f = rng.standard_normal((n, d)) * 10 ** rng.uniform(-2, 2)
    f = f[rng.integers(0, n, n)]
    y = np.arange(n) % c
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        assert np.isfinite(logme(f, y))
        assert np.isfinite(logme(f, y, tol=1e-13, max_iter=5000))
    # (away from the overflow the formula is the plain one: the marginal-likelihood test above)


@given(d=st.integers(1, 40), k=st.integers(1, 6), seed=st.integers(0, 2**16), repeat=st.booleans())
@settings(max_examples=40, deadline=None)
def test_eigh_project_agrees_with_the_eigenvectors(d, k, seed, repeat):
    """The eigenvalues and the squared projections V^T b equal those of a full eigen-
    decomposition; on a repeated eigenvalue only the sum over its eigenspace is defined."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    w = np.sort(rng.uniform(0.1, 10.0, d))[::-1]
    if repeat and d > 2:
        w[1:3] = w[1]  # a two-fold eigenvalue
    a = (q * w) @ q.T
    b = rng.normal(size=(d, k))
    got_w, got_p = eigh_project(a, b)
    np.testing.assert_allclose(got_w, w, rtol=1e-10, atol=1e-12 * w[0])
    p2 = (q.T @ b) ** 2
    if repeat and d > 2:
        got_p2 = got_p**2
        np.testing.assert_allclose(got_p2[1:3].sum(0), p2[1:3].sum(0), rtol=1e-8, atol=1e-10)
        got_p2, p2 = np.delete(got_p2, [1, 2], 0), np.delete(p2, [1, 2], 0)
        np.testing.assert_allclose(got_p2, p2, rtol=1e-7, atol=1e-9)
    else:
        np.testing.assert_allclose(got_p**2, p2, rtol=1e-7, atol=1e-9)
    # the projections carry the whole of b: ||V^T b|| = ||b||
    np.testing.assert_allclose(np.linalg.norm(got_p, axis=0), np.linalg.norm(b, axis=0), rtol=1e-12)
    with pytest.raises(ValueError, match="eigh_project"):
        eigh_project(a, b[:-1] if d > 1 else np.ones((2, k)))


@given(n=st.integers(8, 60), d=st.integers(1, 6), c=st.integers(2, 4), seed=st.integers(0, 2**16))
@settings(max_examples=40, deadline=None)
def test_logme_weights_count_repeated_images(n, d, c, seed):
    """An integer weight counts its image that many times: weighting the distinct images of a
    bootstrap draw by their counts gives LogME of the draw with its repeats."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % c
    f = rng.normal(size=(n, d)) + rng.normal(size=(c, d))[y]
    draw = np.concatenate([rng.choice(np.flatnonzero(y == k), (y == k).sum()) for k in range(c)])
    distinct, counts = np.unique(draw, return_counts=True)
    assume(distinct.size > d + 1)  # else the features may fit the labels exactly (no maximum)
    repeated = logme(f[draw], y[draw])
    assert logme(f[distinct], y[distinct], sample_weight=counts) == pytest.approx(repeated, rel=1e-9)
    assert logme(f, y, sample_weight=np.ones(n)) == logme(f, y)  # unit weights change nothing


def test_logme_weights_count_repeated_images_when_n_is_below_d():
    """The same through the N x N Gram matrix: 30 distinct images of 50 dimensions (of rank 6,
    so that the features cannot fit the labels exactly)."""
    rng = np.random.default_rng(3)
    y = np.arange(40) % 3
    f = (rng.normal(size=(40, 6)) + rng.normal(size=(3, 6))[y]) @ rng.normal(size=(6, 50))
    draw = np.concatenate([rng.choice(np.flatnonzero(y == k), 20 if k == 0 else 10) for k in range(3)])
    distinct, counts = np.unique(draw, return_counts=True)
    assert distinct.size < draw.size < 50  # both through the N x N Gram matrix
    assert logme(f[distinct], y[distinct], sample_weight=counts) == pytest.approx(
        logme(f[draw], y[draw]), rel=1e-9)


@pytest.mark.parametrize("weights, message", [
    (np.ones(5), r"shape \(9,\)"),
    (-np.ones(9), "non-negative"),
    (np.r_[np.nan, np.ones(8)], "finite"),
    (np.r_[np.zeros(3), np.ones(6)], r"class\(es\) \[0\] a total weight of 0"),
    (["a"] * 9, "must be numbers"),
])  # fmt: skip
def test_logme_bad_weights_are_refused(weights, message):
    y = np.repeat(np.arange(3), 3)
    f = np.random.default_rng(0).normal(size=(9, 2))
    with pytest.raises(ValueError, match=message):
        logme(f, y, sample_weight=weights)


def test_logme_default_is_close_to_converged():
    x, y = make_data()
    assert logme(x, y) == pytest.approx(logme(x, y, tol=1e-12, max_iter=1000), rel=1e-3)


# ------------------------------------------------------------------------------------------- SFDA
def _reference_fda(x, y, shrinkage, exact_lambda):
    """Released-code recipe, written out: loops over classes, eigh of the scatter matrices."""
    classes = np.unique(y)
    n, d = x.shape
    priors = np.array([np.mean(y == c) for c in classes])
    means = np.array([x[y == c].mean(0) for c in classes])
    s_w = sum(p * np.atleast_2d(np.cov(x[y == c].T, bias=True)) for p, c in zip(priors, classes))
    if shrinkage is None:
        if exact_lambda:
            lam = np.linalg.eigvalsh(s_w)[-1]
        else:
            v = s_w @ np.ones(d)
            lam = np.linalg.norm(np.linalg.matrix_power(s_w, 6) @ v) / np.linalg.norm(
                np.linalg.matrix_power(s_w, 5) @ v
            )
        shrinkage = max(np.exp(-5 * lam), 1e-10)

    def shrink(s):
        return (1 - shrinkage) * s + shrinkage * np.trace(s) / d * np.eye(d)

    s_w_s = shrink(s_w)
    s_b = shrink(np.cov(x.T, bias=True)) - s_w_s
    evals, evecs = scipy.linalg.eigh(s_b, s_w_s)
    evecs = evecs[:, np.argsort(evals)[::-1]]
    coef = means @ evecs @ evecs.T
    intercept = -0.5 * np.diag(means @ coef.T) + np.log(priors)
    return coef, intercept, shrinkage


def _reference_sfda(x, y, log, exact_lambda):
    x = x.copy()
    n = len(y)
    c = len(np.unique(y))
    coef, b, shrinkage = _reference_fda(x, y, None, exact_lambda)
    prob = softmax(x @ coef.T + b, axis=1)
    prob = np.exp(prob) / np.exp(prob).sum(1, keepdims=True)
    means = np.array([x[y == k].mean(0) for k in range(c)])
    for k in range(c):
        idx = np.flatnonzero(y == k)
        other = (means.sum(0) - means[k]) / (c - 1)
        p = prob[idx, k][:, None]
        x[idx] = p * x[idx] + (1 - p) * other
    coef, b, _ = _reference_fda(x, y, shrinkage, exact_lambda)
    p = softmax(x @ coef.T + b, axis=1)[np.arange(n), y]
    return np.mean(np.log(p)) if log else np.mean(p)


@pytest.mark.parametrize("scale", [0.1, 1.0])
def test_fda_directions_match_generalised_eigh(scale):
    x, y = make_data(dim=6)
    x = x * scale
    coef_ref, b_ref, s_ref = _reference_fda(x, y, None, exact_lambda=False)
    coef, b, s = _fda_fit(x, y, 4, None, 3)
    assert s == pytest.approx(s_ref, rel=RTOL)
    np.testing.assert_allclose(coef, coef_ref, rtol=RTOL, atol=1e-9 * np.abs(coef_ref).max())
    np.testing.assert_allclose(b, b_ref, rtol=RTOL)


@pytest.mark.parametrize("log", [True, False])
@pytest.mark.parametrize("power_iterations", [3, None])
def test_sfda_matches_reference_recipe(log, power_iterations):
    x, y = make_data(dim=6, sep=0.7)
    x = x * 0.3  # moderate shrinkage, so the regularisation matters
    ref = _reference_sfda(x, y, log, exact_lambda=power_iterations is None)
    assert sfda(x, y, log=log, power_iterations=power_iterations) == pytest.approx(ref, rel=RTOL)


def test_power_iteration_estimate():
    a = np.diag([5.0, 2.0, 1.0]) + 0.1
    assert _largest_eigenvalue(a, None) == pytest.approx(np.linalg.eigvalsh(a)[-1], rel=1e-12)
    v = np.ones(3)
    ref = np.linalg.norm(np.linalg.matrix_power(a, 7) @ v) / np.linalg.norm(
        np.linalg.matrix_power(a, 6) @ v
    )
    assert _largest_eigenvalue(a, 3) == pytest.approx(ref, rel=1e-12)
    assert _largest_eigenvalue(a, 3) != pytest.approx(_largest_eigenvalue(a, 1), rel=1e-9)


# ---------------------------------------------------------------------------- H-score, TransRate
def test_hscore_matches_explicit_formula():
    x, y = make_data(dim=5)
    g = np.zeros_like(x)
    for c in range(4):
        g[y == c] = x[y == c].mean(0)
    ref = np.trace(np.linalg.pinv(np.cov(x, rowvar=False)) @ np.cov(g, rowvar=False))
    assert hscore(x, y) == pytest.approx(ref, rel=RTOL)


def test_transrate_matches_explicit_logdets():
    x, y = make_data(n_per_class=5, dim=7)  # n_c < D < N: both Gram branches
    eps = 1e-4
    z = x - x.mean(0)

    def rate(zz):
        n, d = zz.shape
        return 0.5 * np.linalg.slogdet(np.eye(d) + zz.T @ zz / (n * eps))[1]

    ref = rate(z) - np.mean([rate(z[y == c]) for c in range(4)])
    assert transrate(x, y) == pytest.approx(ref, rel=RTOL)
    assert transrate(x, y, eps=1e-2) != pytest.approx(ref, rel=1e-3)


# -------------------------------------------------------------------------------------------- GBC
def _reference_gbc(x, y, covariance, reg):
    classes = np.unique(y)
    mus = [x[y == c].mean(0) for c in classes]
    var = np.array([x[y == c].var(0) for c in classes])
    floor = reg * var.mean()
    if covariance == "spherical":
        covs = [np.eye(x.shape[1]) * (v.mean() + floor) for v in var]
    else:
        covs = [np.diag(v + floor) for v in var]
    total = 0.0
    for i, j in itertools.permutations(range(len(classes)), 2):
        s = (covs[i] + covs[j]) / 2
        dm = mus[i] - mus[j]
        db = dm @ np.linalg.inv(s) @ dm / 8 + 0.5 * (
            np.linalg.slogdet(s)[1]
            - 0.5 * (np.linalg.slogdet(covs[i])[1] + np.linalg.slogdet(covs[j])[1])
        )
        total += np.exp(-db)
    return -total


@pytest.mark.parametrize("covariance", ["diagonal", "spherical"])
@pytest.mark.parametrize("reg", [0.0, 1e-2])
def test_gbc_matches_pairwise_loop(covariance, reg):
    x, y = make_data(dim=5, sep=0.5)
    ref = _reference_gbc(x, y, covariance, reg)
    assert gbc(x, y, covariance=covariance, pca_dims=None, reg=reg) == pytest.approx(ref, rel=RTOL)


def _stable_transfer_gbc(x, y, covariance):
    """GBC as google-research's stable_transfer computes it, written out per class pair: variances
    floored at 1e-4, a spherical class's variance their mean, each log term summed over what the
    variance holds (D entries for diagonal, one scalar for spherical)."""
    total = 0.0
    stats = {}
    for c in np.unique(y):
        v = np.maximum(x[y == c].var(0), 1e-4)
        stats[c] = (x[y == c].mean(0), v.mean() if covariance == "spherical" else v)
    for a, b in itertools.permutations(stats, 2):
        (m1, v1), (m2, v2) = stats[a], stats[b]
        avg = (v1 + v2) / 2
        first = np.sum((m1 - m2) ** 2 / avg) / 8
        second = np.sum(np.log(avg)) - 0.5 * np.sum(np.log(v1)) - 0.5 * np.sum(np.log(v2))
        total += np.exp(-(first + 0.5 * second))
    return -total


@pytest.mark.parametrize("covariance", ["diagonal", "spherical"])
@pytest.mark.parametrize("scale", [1.0, 0.003])
def test_gbc_reference_variant_matches_stable_transfer(covariance, scale):
    x, y = make_data(dim=5, sep=0.5)
    x = x * scale  # at 0.003 the variances fall under the 1e-4 floor
    ref = _stable_transfer_gbc(x, y, covariance)
    got = gbc(x, y, covariance=covariance, pca_dims=None, variant="reference")
    assert got == pytest.approx(ref, rel=RTOL)


def test_gbc_textbook_is_scale_invariant_and_the_reference_is_not():
    x, y = make_data(dim=6, sep=0.4)
    for covariance in ("diagonal", "spherical"):
        base = gbc(x, y, covariance=covariance)
        assert gbc(1e-3 * x, y, covariance=covariance) == pytest.approx(base, rel=1e-9)
        ref = gbc(x, y, covariance=covariance, variant="reference")
        assert gbc(1e-3 * x, y, covariance=covariance, variant="reference") != pytest.approx(
            ref, rel=1e-3)
    # the spherical log-det term: D times the reference's, otherwise the same distance
    means = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    var = np.array([1.0, 4.0])
    from ped.metrics.separation import _bhattacharyya_distances

    textbook = _bhattacharyya_distances(means, var, "spherical")
    once = _bhattacharyya_distances(means, var, "spherical", logdet_dims=1)
    logdet = 0.5 * (np.log(2.5) - 0.5 * np.log(4.0))
    assert textbook[0, 1] == pytest.approx(1 / (8 * 2.5) + 3 * logdet)
    assert once[0, 1] == pytest.approx(1 / (8 * 2.5) + logdet)


def test_gbc_pca_matches_sklearn_projection():
    x, y = make_data(dim=12, sep=0.5)
    z = PCA(n_components=4, svd_solver="full").fit_transform(x)  # signs do not matter
    ref = _reference_gbc(z, y, "diagonal", 1e-6)
    assert gbc(x, y, pca_dims=4) == pytest.approx(ref, rel=RTOL)


def test_gbc_blocks_cover_all_pairs(monkeypatch):
    import ped.metrics.separation as sep

    x, y = make_data(n_classes=7, dim=5, sep=0.4)
    full = gbc(x, y, pca_dims=None)
    monkeypatch.setattr(sep, "_BLOCK_ELEMENTS", 1)  # one row of classes per block
    assert gbc(x, y, pca_dims=None) == pytest.approx(full, rel=1e-12)


# ------------------------------------------------------------------------------------------- PARC
def test_parc_matches_spearman_of_rdms():
    x, y = make_data(dim=10, sep=0.8)
    f = StandardScaler().fit_transform(PCA(n_components=4, svd_solver="full").fit_transform(x))
    iu = np.triu_indices(len(y), 1)
    rdm1 = (1 - np.corrcoef(f))[iu]
    rdm2 = (1 - np.corrcoef(np.eye(4)[y]))[iu]
    ref = scipy.stats.spearmanr(rdm1, rdm2)[0] * 100
    assert parc(x, y, pca_dims=4, max_samples=None) == pytest.approx(ref, rel=RTOL)


def test_parc_subsample_is_seeded_and_stratified():
    from ped.metrics.separation import _stratified_subsample

    x, y = make_data(n_per_class=50, n_classes=3, dim=6)
    y[:5] = 3  # a small class must still get 2 samples
    a = parc(x, y, max_samples=40, random_state=3)
    assert a == parc(x, y, max_samples=40, random_state=3)
    idx = _stratified_subsample(y, 4, 40, np.random.default_rng(0))
    assert len(np.unique(idx)) == len(idx)
    assert np.bincount(y[idx]).min() >= 2
    assert abs(len(idx) - 40) <= 4


# ------------------------------------------------------------------------- LEEP, NCE, NLEEP
def _brute_leep(theta, y, log):
    n, cs = theta.shape
    c = y.max() + 1
    joint = np.zeros((c, cs))
    for i in range(n):
        for z in range(cs):
            joint[y[i], z] += theta[i, z] / n
    total = 0.0
    for i in range(n):
        eep = sum(joint[y[i], z] / joint[:, z].sum() * theta[i, z] for z in range(cs))
        total += np.log(eep) if log else eep
    return total / n


@pytest.mark.parametrize("log", [True, False])
def test_leep_matches_brute_force(log):
    rng = np.random.default_rng(2)
    theta = softmax(rng.standard_normal((25, 6)) * 2, axis=1)
    y = np.arange(25) % 3
    assert leep(theta, y, log=log) == pytest.approx(_brute_leep(theta, y, log), rel=RTOL)


def test_leep_unused_source_class():
    theta = np.array([[0.7, 0.3, 0.0], [0.2, 0.8, 0.0], [0.5, 0.5, 0.0], [0.1, 0.9, 0.0]])
    y = np.array([0, 1, 0, 1])
    assert leep(theta, y) == pytest.approx(_brute_leep(theta[:, :2], y, True), rel=RTOL)


def test_nce_matches_brute_force():
    rng = np.random.default_rng(3)
    z = rng.integers(0, 5, 40) * 7 + 100  # arbitrary, non-contiguous source labels
    y = np.arange(40) % 3
    ref = 0.0
    for zz in np.unique(z):
        for yy in range(3):
            pyz = np.mean((z == zz) & (y == yy))
            if pyz > 0:
                ref += pyz * np.log(pyz / np.mean(z == zz))
    assert nce(z, y) == pytest.approx(ref, rel=RTOL)
    assert nce(y, y) == 0.0  # source labels determine the target labels


def test_nleep_matches_pca_gmm_leep_pipeline_and_is_reproducible():
    x, y = make_data(dim=10, sep=1.0)
    z = PCA(n_components=0.8, svd_solver="full").fit_transform(x)
    gmm = GaussianMixture(n_components=8, covariance_type="diag", random_state=0).fit(z)
    ref = _brute_leep(gmm.predict_proba(z), y, True)
    got = nleep(x, y, component_ratio=2, covariance_type="diag", random_state=0)
    assert got == pytest.approx(ref, rel=1e-5)
    assert got == nleep(x, y, component_ratio=2, covariance_type="diag", random_state=0)
    assert nleep(x, y, component_ratio=2, log=False) <= 1.0


# -------------------------------------------------------------------------------------- properties
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), name=st.sampled_from(sorted(METRICS)))
def test_invariant_to_sample_order_and_relabelling(seed, name):
    rng = np.random.default_rng(seed)
    x, y = make_data(n_per_class=12, n_classes=3, dim=5, sep=1.0, seed=seed)
    base = call(name, x, y)
    perm_classes = rng.permutation(3)
    assert call(name, x, perm_classes[y]) == pytest.approx(base, rel=1e-6, abs=1e-9)
    if name != "nleep":  # the mixture's k-means initialisation depends on the sample order
        order = rng.permutation(len(y))
        assert call(name, x[order], y[order]) == pytest.approx(base, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("name", sorted(METRICS))
def test_separable_scores_higher_than_identical_classes(name):
    rng = np.random.default_rng(5)
    y = np.repeat(np.arange(3), 20)
    noise = rng.standard_normal((60, 6))
    separable = noise + 10.0 * np.eye(6)[y]
    identical = noise  # classes share one distribution
    assert call(name, separable, y) > call(name, identical, y)


@pytest.mark.parametrize("name", sorted(METRICS))
@pytest.mark.parametrize("case", ["n_less_than_d", "duplicated_columns"])
def test_finite_on_rank_deficient_features(name, case):
    x, y = make_data(n_per_class=5, n_classes=3, dim=4)
    if case == "n_less_than_d":
        x = np.random.default_rng(0).standard_normal((15, 40))
    else:
        x = np.hstack([x, x, x[:, :1] * 2.0])
    assert np.isfinite(call(name, x, y))


@pytest.mark.parametrize("name", sorted(METRICS))
def test_float32_input(name):
    x, y = make_data(dim=6, sep=1.0)
    v32 = call(name, x.astype(np.float32), y)
    v64 = call(name, x.astype(np.float32).astype(np.float64), y)
    assert isinstance(v32, float)
    assert v32 == pytest.approx(v64, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("name", sorted(METRICS))
def test_inputs_not_modified(name):
    x, y = make_data(dim=6, sep=1.0)
    x.flags.writeable = True
    xc, yc = x.copy(), y.copy()
    call(name, x, y)
    np.testing.assert_array_equal(x, xc)
    np.testing.assert_array_equal(y, yc)
    x.flags.writeable = False  # a read-only input must work too (nothing writes to it)
    call(name, x, y)


def test_source_metric_inputs_not_modified():
    theta = softmax(np.random.default_rng(0).standard_normal((20, 4)), axis=1)
    y = np.arange(20) % 2
    t0, y0 = theta.copy(), y.copy()
    leep(theta, y)
    nce(theta.argmax(1), y)
    np.testing.assert_array_equal(theta, t0)
    np.testing.assert_array_equal(y, y0)


def test_registry():
    assert set(METRICS) == {"logme", "sfda", "gbc", "nleep", "parc", "hscore", "transrate", "knn"}
    assert set(SOURCE_METRICS) == {"leep", "nce"}
    x, y = make_data()
    for name in METRICS:
        assert type(call(name, x, y)) is float


# ------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("name", sorted(METRICS))
def test_common_errors(name):
    x, y = make_data(dim=4)
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        call(name, bad, y)
    bad[3, 1] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        call(name, bad, y)
    with pytest.raises(ValueError, match="mismatched lengths"):
        call(name, x, y[:-1])
    with pytest.raises(ValueError, match="at least 2"):
        call(name, x, np.zeros_like(y))
    with pytest.raises(ValueError, match="remap"):
        call(name, x, y * 2)
    with pytest.raises(ValueError, match="1-D"):
        call(name, x, y[:, None])
    with pytest.raises(ValueError, match="2-D"):
        call(name, x[:, 0], y)
    with pytest.raises(ValueError, match="floating-point"):
        call(name, x.astype(int), y)
    with pytest.raises(ValueError, match="non-integer"):
        call(name, x, y + 0.5)


@pytest.mark.parametrize("name", sorted(METRICS))
def test_features_whose_squares_overflow_are_refused(name):
    """Features x 1e200 are finite, but every metric squares them: a clear error, not NaN,
    inf or 0 with a warning (issue 15, case 10)."""
    from ped._validation import max_magnitude

    x, y = make_data(dim=4)
    with pytest.raises(ValueError, match=r"too large to compute with: max \|x\| = [0-9.]+e\+200"):
        call(name, x * 1e200, y)
    limit = max_magnitude(x.shape)
    assert limit == pytest.approx(np.sqrt(np.finfo(np.float64).max / (1e20 * x.size)))
    with pytest.raises(ValueError, match="too large"):
        call(name, x / np.abs(x).max() * limit * 1.01, y)


def test_ped_refuses_features_whose_squares_overflow():
    import ped

    x, y = make_data(dim=4)
    with pytest.raises(ValueError, match="features contains values too large to compute with"):
        ped.potential_energy_descent(x * 1e200, y)
    with pytest.raises(ValueError, match="reference contains values too large"):
        ped.potential_energy_descent(x, y, reference=x * 1e200)
    # large but accepted: PED is scale invariant (radii in standardised units)
    moved, plain = ped.potential_energy_descent(x * 1e30, y), ped.potential_energy_descent(x, y)
    assert moved.steps == plain.steps >= 1
    np.testing.assert_allclose(moved.radii, plain.radii, rtol=1e-9)
    np.testing.assert_allclose(moved.features / 1e30, plain.features, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", sorted(METRICS))
@pytest.mark.parametrize("scale", ["1e-3", "1e30", "half the limit"])
def test_large_but_accepted_scales_give_finite_scores(name, scale):
    """Below the limit of case 10 every metric computes without any overflow and gives a finite
    score (full-rank features: TransRate's log-determinant of rank-deficient features loses its
    precision long before any overflow)."""
    from ped._validation import max_magnitude

    x, y = make_data(dim=4)
    factor = 0.5 * max_magnitude(x.shape) / np.abs(x).max() if scale == "half the limit" else (
        float(scale))
    with np.errstate(over="raise"):
        assert np.isfinite(call(name, x * factor, y))


@pytest.mark.parametrize("func", [gbc, transrate])
def test_two_samples_per_class_required(func):
    x, y = make_data(dim=4)
    y = y.copy()
    y[np.flatnonzero(y == 2)[1:]] = 1  # class 2 keeps a single sample
    with pytest.raises(ValueError, match="class 2 has 1 sample"):
        func(x, y)


def test_option_errors():
    x, y = make_data(dim=4)
    with pytest.raises(ValueError, match="covariance"):
        gbc(x, y, covariance="full")
    with pytest.raises(ValueError, match="pca_dims"):
        gbc(x, y, pca_dims=0)
    with pytest.raises(ValueError, match="reg"):
        gbc(x, y, reg=-1.0)
    with pytest.raises(ValueError, match="variant"):
        gbc(x, y, variant="paper")
    with pytest.raises(ValueError, match="zero variance"):
        gbc(np.repeat(x[:1], len(y), 0) + np.eye(len(y), 4), y, reg=0.0, pca_dims=None)
    with pytest.raises(ValueError, match="tol"):
        logme(x, y, tol=0)
    with pytest.raises(ValueError, match="max_iter"):
        logme(x, y, max_iter=0)
    with pytest.raises(ValueError, match="power_iterations"):
        sfda(x, y, power_iterations=0)
    with pytest.raises(ValueError, match="eps"):
        transrate(x, y, eps=0.0)
    with pytest.raises(ValueError, match="rcond"):
        hscore(x, y, rcond=-1.0)
    with pytest.raises(ValueError, match="max_samples"):
        parc(x, y, max_samples=0)
    with pytest.raises(ValueError, match="2 or more samples"):
        parc(x[:4], np.arange(4))
    with pytest.raises(ValueError, match="variance"):
        nleep(x, y, variance=1.5)
    with pytest.raises(ValueError, match="covariance_type"):
        nleep(x, y, covariance_type="banana")
    with pytest.raises(ValueError, match="only 120 samples"):
        nleep(x, y, component_ratio=31)
    with pytest.raises(ValueError, match="component_ratio"):
        nleep(x, y, component_ratio=0)


def test_source_metric_errors():
    theta = softmax(np.random.default_rng(0).standard_normal((20, 4)), axis=1)
    y = np.arange(20) % 2
    with pytest.raises(ValueError, match="sum to 1"):
        leep(theta * 2, y)
    with pytest.raises(ValueError, match="non-negative"):
        leep(theta - 0.5, y)
    with pytest.raises(ValueError, match="mismatched lengths"):
        leep(theta, y[:-1])
    with pytest.raises(ValueError, match="NaN or infinite"):
        leep(np.where(theta > 0.5, np.nan, theta), y)
    with pytest.raises(ValueError, match="remap"):
        leep(theta, y * 3)
    with pytest.raises(ValueError, match="at least 2"):
        nce(theta.argmax(1), np.zeros(20, int))
    with pytest.raises(ValueError, match="mismatched lengths"):
        nce(theta.argmax(1)[:-1], y)
    with pytest.raises(ValueError, match="non-integer"):
        nce(theta[:, 0], y)
    with pytest.raises(ValueError, match="1-D"):
        nce(theta, y)
    with pytest.raises(ValueError, match="integers"):
        nce(theta.argmax(1).astype(bool), y)


def test_every_metric_has_a_display_name():
    from ped.metrics import DISPLAY_NAMES, METRICS, SOURCE_METRICS, ZOO_METRICS

    # and the dataset-agnostic baseline ped.evaluation.leave_one_task_out ("loto")
    assert set(DISPLAY_NAMES) == set(METRICS) | set(SOURCE_METRICS) | set(ZOO_METRICS) | {"loto"}


# ------------------------------------------------------- NLEEP's full-covariance mixture fit
# ped fits NLEEP's full-covariance mixture itself (ped.metrics.probabilistic._fit_full_mixture):
# the iterations of sklearn's GaussianMixture, without the work on responsibilities that are 0.0
# in float64.  The parameters, posteriors and iteration counts must be sklearn's, up to rounding.
MIXTURE_RTOL, MIXTURE_ATOL = 1e-6, 1e-9


def _sklearn_mixture(x, k, max_iter, seed=0, reg_covar=1e-6):
    import warnings as _warnings

    from sklearn.exceptions import ConvergenceWarning

    gmm = GaussianMixture(k, covariance_type="full", random_state=seed, max_iter=max_iter,
                          reg_covar=reg_covar)
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore", ConvergenceWarning)
        gmm.fit(x)
    return gmm, gmm.predict_proba(x)


def _fast_mixture(x, k, max_iter, seed=0, reg_covar=1e-6):
    import warnings as _warnings

    from sklearn.exceptions import ConvergenceWarning

    from ped.metrics.probabilistic import _fit_full_mixture

    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore", ConvergenceWarning)
        return _fit_full_mixture(x, k, random_state=seed, max_iter=max_iter,
                                 reg_covar=reg_covar, keep_covariances=True)


def _assert_same_mixture(x, k, max_iter, seed=0, reference=None):
    gmm, proba = reference or _sklearn_mixture(x, k, max_iter, seed)
    fit = _fast_mixture(x, k, max_iter, seed)
    assert fit.n_iter == gmm.n_iter_
    assert fit.converged == gmm.converged_
    close = {"rtol": MIXTURE_RTOL, "atol": MIXTURE_ATOL}
    np.testing.assert_allclose(fit.weights, gmm.weights_, **close)
    np.testing.assert_allclose(fit.means, gmm.means_, **close)
    np.testing.assert_allclose(fit.covariances, gmm.covariances_, **close)
    np.testing.assert_allclose(fit.resp, proba, **close)
    np.testing.assert_allclose(fit.lower_bounds, gmm.lower_bounds_, rtol=1e-9)
    assert fit.lower_bound == pytest.approx(gmm.lower_bound_, rel=1e-9)
    # the precision factors agree to the conditioning of the covariances (trtri against trtrs)
    scale = np.abs(gmm.precisions_cholesky_).max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(fit.precisions_cholesky / scale,
                               gmm.precisions_cholesky_ / scale, rtol=0, atol=1e-6)
    return fit


def _clusters(n, d, k, seed, spread=3.0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, d)) * spread
    scales = rng.uniform(0.3, 1.5, size=d)
    return centres[rng.integers(0, k, n)] + rng.standard_normal((n, d)) * scales


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(20, 160), d=st.integers(1, 40),
       k=st.integers(1, 12), max_iter=st.sampled_from([1, 2, 5, 100]),
       spread=st.sampled_from([0.5, 3.0]))
def test_full_mixture_fit_matches_sklearn_gaussian_mixture(seed, n, d, k, max_iter, spread):
    # d <= 16 takes the dense E-step, d > 16 the bounded (pruned) one
    k = min(k, n)
    x = _clusters(n, d, k, seed, spread)
    try:
        reference = _sklearn_mixture(x, k, max_iter, seed)
    except ValueError:  # a covariance sklearn cannot factor: the fast fit must refuse it too
        with pytest.raises(ValueError):
            _fast_mixture(x, k, max_iter, seed)
        return
    _assert_same_mixture(x, k, max_iter, seed, reference)


@pytest.mark.parametrize("max_iter", [1, 3, 100])
@pytest.mark.parametrize("n,d,k", [(400, 60, 40), (240, 30, 60), (500, 24, 5)])
def test_full_mixture_fit_matches_sklearn_with_narrow_components(n, d, k, max_iter):
    # few samples per component in many dimensions (NLEEP's regime: 16 per component in ~300
    # dimensions at the Flowers shape): singular covariances + 1e-6, one-hot responsibilities,
    # almost every pair skipped by the E-step; and wide components (500, 24, 5) where few are
    fit = _assert_same_mixture(_clusters(n, d, k, seed=k), k, max_iter, seed=3)
    assert np.isfinite(fit.resp).all() and np.allclose(fit.resp.sum(axis=1), 1.0)


def test_full_mixture_e_step_skips_only_responsibilities_that_underflow():
    from scipy.special import logsumexp
    from sklearn.mixture._gaussian_mixture import _estimate_log_gaussian_prob

    from ped.metrics.probabilistic import _e_step, _fit_full_mixture

    x = _clusters(400, 60, 40, seed=1)
    fit = _fit_full_mixture(x, 40, random_state=0, max_iter=2)
    log_norm, resp = _e_step(x, fit.weights, fit.means, fit.precisions_cholesky)
    dense = (_estimate_log_gaussian_prob(x, fit.means, fit.precisions_cholesky, "full")
             + np.log(fit.weights))
    dense_norm = logsumexp(dense, axis=1)
    with np.errstate(under="ignore"):
        dense_resp = np.exp(dense - dense_norm[:, None])
    skipped = resp == 0
    assert skipped.mean() > 0.9  # the bounds rule out almost every pair here
    assert (dense_resp[skipped] == 0).all()
    np.testing.assert_allclose(resp, dense_resp, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(log_norm, dense_norm, rtol=1e-12)


def test_full_mixture_edge_cases_behave_like_sklearn():
    # as many components as samples: every component is one point (covariance reg_covar * I)
    x = _clusters(30, 20, 5, seed=2)
    _assert_same_mixture(x, 30, 5)
    # duplicated samples: k-means finds fewer distinct clusters than components, so some
    # components collapse (no samples: N_k = 10 eps, mean 0, covariance reg_covar * I)
    rng = np.random.default_rng(4)
    x = np.repeat(rng.standard_normal((5, 20)), 12, axis=0)
    _assert_same_mixture(x, 8, 10)
    # one component, one dimension
    _assert_same_mixture(rng.standard_normal((50, 1)), 1, 100)


def test_full_mixture_errors_like_sklearn():
    from sklearn.exceptions import ConvergenceWarning

    from ped.metrics.probabilistic import _fit_full_mixture

    x = _clusters(40, 20, 4, seed=5)
    # without the 1e-6 ridge a component of fewer than D + 1 samples is singular
    with pytest.raises(ValueError, match="ill-defined empirical covariance"):
        GaussianMixture(10, reg_covar=0.0, random_state=0).fit(x)
    with pytest.raises(ValueError, match="ill-defined empirical covariance"):  # ours
        _fit_full_mixture(x, 10, random_state=0, reg_covar=0.0)
    with pytest.raises(ValueError, match="samples"):
        _fit_full_mixture(x, 41)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        fit = _fit_full_mixture(x, 4, random_state=0, max_iter=1)
    assert not fit.converged and fit.n_iter == 1


def _nleep_with_sklearn_mixture(x, y, *, component_ratio=5, log=True, random_state=0,
                                max_iter=100):
    """NLEEP as ped computed it with sklearn's GaussianMixture (the same PCA)."""
    from ped.metrics._common import leep_from_posteriors, pca_scores

    z = pca_scores(np.asarray(x, dtype=np.float64), variance=0.8)
    n_classes = int(y.max()) + 1
    _, proba = _sklearn_mixture(z, component_ratio * n_classes, max_iter, random_state)
    return leep_from_posteriors(proba, y, n_classes, log=log)


@pytest.mark.parametrize("max_iter", [1, 3, 100])
@pytest.mark.parametrize("n_per_class,n_classes,dim", [(30, 4, 8), (12, 10, 120), (40, 3, 50)])
def test_nleep_full_covariance_matches_sklearn_mixture(n_per_class, n_classes, dim, max_iter):
    x, y = make_data(n_per_class=n_per_class, n_classes=n_classes, dim=dim, sep=1.0, seed=dim)
    for log in (True, False):
        got = nleep(x, y, covariance_type="full", log=log, max_iter=max_iter)
        ref = _nleep_with_sklearn_mixture(x, y, log=log, max_iter=max_iter)
        assert got == pytest.approx(ref, rel=1e-6, abs=1e-9)


def test_nleep_full_covariance_matches_benchmark_reference():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import reference_metrics as R

    from ped.bench import synthetic_task

    # the reference's PCA is sklearn's (an SVD), ped's from the Gram matrix: the same to rounding
    x, y = synthetic_task(300, 128, 10, seed=1)
    got = nleep(x, y, log=False, covariance_type="full")
    assert got == pytest.approx(R.nleep(x, y), rel=1e-6, abs=1e-9)
