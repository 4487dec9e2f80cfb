"""The newer baselines: k-NN accuracy, NCTI, ETran, rel@k / rec@k and the leave-one-task-out
baseline, each against an independent computation, plus invariances and error paths."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.special import softmax
from sklearn.decomposition import PCA
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors

from ped.evaluation import leave_one_task_out, rec_at_k, rel_at_k, top1_regret
from ped.metrics import (
    DISPLAY_NAMES,
    METRICS,
    ETranTerms,
    NCTITerms,
    energy_score,
    etran_combine,
    etran_terms,
    knn_accuracy,
    lda_score,
    ncti_combine,
    ncti_terms,
)
from ped.metrics.collapse import _lda

RTOL = 1e-9
FEW = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def make_data(n_per_class=20, n_classes=3, dim=6, sep=1.5, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per_class)
    x = rng.standard_normal((n_classes, dim))[y] * sep + rng.standard_normal((y.size, dim))
    perm = rng.permutation(y.size)
    return x[perm] * scale, y[perm]


def permuted(x, y, seed):
    """The same data with the samples shuffled and the classes renumbered."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(y.size)
    relabel = rng.permutation(y.max() + 1)
    return x[order], relabel[y[order]]


# ------------------------------------------------------------------------------------------ k-NN
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("k", [1, 5, 9])
def test_knn_equals_sklearn_leave_one_out_without_ties(metric, k):
    x, y = make_data(n_per_class=25, n_classes=2, sep=0.6)  # 2 classes, odd k: no vote ties
    hits = []
    for i in range(y.size):
        rest = np.arange(y.size) != i
        clf = KNeighborsClassifier(n_neighbors=k, metric=metric, algorithm="brute")
        hits.append(clf.fit(x[rest], y[rest]).predict(x[i : i + 1])[0] == y[i])
    assert knn_accuracy(x, y, k=k, metric=metric) == pytest.approx(np.mean(hits), abs=1e-12)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_knn_vote_ties_count_as_expected_accuracy(metric):
    x, y = make_data(n_per_class=15, n_classes=4, sep=0.5, seed=3)
    k = 4
    nn = NearestNeighbors(n_neighbors=k + 1, metric=metric, algorithm="brute").fit(x)
    _, idx = nn.kneighbors(x)
    credit, n_ties = [], 0
    for i in range(y.size):
        neighbours = [j for j in idx[i] if j != i][:k]
        votes = np.bincount(y[neighbours], minlength=4)
        winners = np.flatnonzero(votes == votes.max())
        n_ties += winners.size > 1
        credit.append((y[i] in winners) / winners.size)
    assert n_ties > 5  # the case is exercised
    assert knn_accuracy(x, y, k=k, metric=metric) == pytest.approx(np.mean(credit), abs=1e-12)


def test_knn_distance_ties_share_the_last_vote():
    x = np.array([[0.0], [1.0], [-1.0]])
    y = np.array([0, 0, 1])
    # sample 0: its two neighbours are equidistant and of different classes -> half a hit;
    # sample 1 -> sample 0 (right); sample 2 -> sample 0 (wrong)
    for order in itertools.permutations(range(3)):
        o = list(order)
        assert knn_accuracy(x[o], y[o], k=1, metric="euclidean") == pytest.approx(0.5)


@FEW
@given(seed=st.integers(0, 2**31 - 1), metric=st.sampled_from(["cosine", "euclidean"]),
       k=st.integers(1, 12))
def test_knn_invariant_to_order_labels_and_scale(seed, metric, k):
    x, y = make_data(n_per_class=10, n_classes=3, dim=5, seed=seed % 1000)
    base = knn_accuracy(x, y, k=k, metric=metric)
    assert knn_accuracy(*permuted(x, y, seed), k=k, metric=metric) == pytest.approx(base)
    assert knn_accuracy(x * 7.5, y, k=k, metric=metric) == pytest.approx(base)


def test_knn_metric_specific_invariances():
    x, y = make_data(seed=5)
    rng = np.random.default_rng(5)
    row_scale = rng.uniform(0.1, 10.0, size=(y.size, 1))
    assert knn_accuracy(x * row_scale, y) == pytest.approx(knn_accuracy(x, y))
    q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    moved = x @ q + 40.0
    assert knn_accuracy(moved, y, metric="euclidean") == pytest.approx(
        knn_accuracy(x, y, metric="euclidean")
    )
    # cosine is not translation invariant: the shift collapses every direction
    assert knn_accuracy(x + 1e3, y) != pytest.approx(knn_accuracy(x, y))


def test_knn_k_clipped_blocks_and_determinism(monkeypatch):
    import ped.metrics.neighbours as nb

    x, y = make_data(n_per_class=6)
    assert knn_accuracy(x, y, k=1000) == knn_accuracy(x, y, k=y.size - 1)
    full = knn_accuracy(x, y, k=3, metric="euclidean")
    assert full == knn_accuracy(x, y, k=3, metric="euclidean")
    monkeypatch.setattr(nb, "_BLOCK_ELEMENTS", 1)  # one row per block
    assert knn_accuracy(x, y, k=3, metric="euclidean") == pytest.approx(full, abs=1e-15)


def test_knn_float32_cosine_matches_float64_away_from_near_ties():
    # float32 features: similarities in float32 (as scikit-learn); the same neighbours, so the
    # same score, as the float64 computation on data without near-ties
    x, y = make_data(n_per_class=40, n_classes=4, dim=8, sep=0.8, seed=3)
    x32 = x.astype(np.float32)
    for k in (1, 5, 20):
        assert knn_accuracy(x32, y, k=k) == knn_accuracy(x32.astype(np.float64), y, k=k)
        assert knn_accuracy(x32, y, k=k, metric="euclidean") == knn_accuracy(
            x32.astype(np.float64), y, k=k, metric="euclidean")


def test_knn_zero_rows_and_singleton_class():
    x, y = make_data(n_per_class=8)
    x[0] = 0.0  # cosine distance 1 to everything: still finite
    assert 0.0 <= knn_accuracy(x, y) <= 1.0
    y = y.copy()
    y[0] = 3  # a class of one sample is allowed; that sample can only be missed
    assert 0.0 <= knn_accuracy(x, y, k=1) <= 1.0


def test_knn_registered_and_separable_is_perfect():
    assert METRICS["knn"] is knn_accuracy and DISPLAY_NAMES["knn"] == "k-NN"
    y = np.repeat(np.arange(3), 10)
    x = np.random.default_rng(0).standard_normal((30, 4)) * 0.01 + np.eye(4)[y] * 10
    assert knn_accuracy(x, y, k=5) == 1.0


def test_knn_errors():
    x, y = make_data()
    with pytest.raises(ValueError, match="metric"):
        knn_accuracy(x, y, metric="manhattan")
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="k must be"):
            knn_accuracy(x, y, k=bad)
    with pytest.raises(ValueError, match="at least 2"):
        knn_accuracy(x, np.zeros_like(y))
    with pytest.raises(ValueError, match="mismatched lengths"):
        knn_accuracy(x, y[:-1])
    with pytest.raises(ValueError, match="NaN or infinite"):
        knn_accuracy(np.where(x > 2, np.nan, x), y)
    with pytest.raises(ValueError, match="floating-point"):
        knn_accuracy(x.astype(int), y)


# ------------------------------------------------------------------------------------------ NCTI
@pytest.mark.parametrize("shrinkage", [None, 0.3, 1e-3])
def test_lda_matches_sklearn(shrinkage):
    x, y = make_data(n_per_class=30, n_classes=4, dim=6)
    if shrinkage is None:
        ref = LinearDiscriminantAnalysis(solver="svd")
    else:
        ref = LinearDiscriminantAnalysis(solver="eigen", shrinkage=shrinkage)
    h_ref = ref.fit(x, y).transform(x)
    coef, intercept, scalings = _lda(x, y, 4, shrinkage)
    np.testing.assert_allclose(softmax(x @ coef.T + intercept, axis=1), ref.predict_proba(x),
                               rtol=1e-7, atol=1e-12)
    h = x @ scalings
    assert h.shape == h_ref.shape
    # the same discriminant space and scaling, up to the sign of each axis
    np.testing.assert_allclose(np.abs(h - h.mean(0)), np.abs(h_ref - h_ref.mean(0)), atol=1e-8)


def _reference_ncti(x, y, pca_dims):
    """The three terms written out with scikit-learn and loops."""
    z = PCA(n_components=pca_dims, svd_solver="full").fit(x)
    shrinkage = max(np.exp(-z.explained_variance_[:32].sum()), 1e-10)
    feats = z.transform(x)
    if shrinkage == 1e-10:
        lda = LinearDiscriminantAnalysis(solver="svd")
    else:
        lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage=shrinkage)
    h = lda.fit(feats, y).transform(feats)
    p = lda.predict_proba(feats)
    seli = np.linalg.norm(h - h.mean(0), ord="nuc")
    ncc = np.mean([p[i, y[i]] for i in range(len(y))])
    vc = np.log(sum(np.linalg.norm(p[y == c], ord="nuc") for c in np.unique(y)))
    return seli, ncc, vc, shrinkage


@pytest.mark.parametrize("scale", [3.0, 0.3])  # unregularised (SVD) and shrunk (eigen) branches
def test_ncti_terms_match_sklearn_pipeline(scale):
    x, y = make_data(n_per_class=25, n_classes=4, dim=12, scale=scale)
    seli, ncc, vc, shrinkage = _reference_ncti(x, y, 8)
    assert (shrinkage == 1e-10) == (scale == 3.0)
    got = ncti_terms(x, y, pca_dims=8)
    assert isinstance(got, NCTITerms)
    np.testing.assert_allclose(got, [seli, ncc, vc], rtol=1e-7)


@FEW
@given(seed=st.integers(0, 2**31 - 1))
def test_ncti_invariant_to_order_and_labels(seed):
    x, y = make_data(n_per_class=12, n_classes=3, dim=8, seed=seed % 1000)
    np.testing.assert_allclose(ncti_terms(*permuted(x, y, seed), pca_dims=6),
                               ncti_terms(x, y, pca_dims=6), rtol=1e-7)


def test_ncti_scale_invariant_on_the_unregularised_branch_only():
    x, y = make_data(n_per_class=20, n_classes=3, dim=8, scale=4.0)
    np.testing.assert_allclose(ncti_terms(x * 10, y), ncti_terms(x, y), rtol=1e-7)
    small = ncti_terms(x * 0.05, y)  # shrunk branch: the shrinkage depends on the scale
    assert not np.allclose(small, ncti_terms(x * 0.1, y), rtol=1e-6)


def test_ncti_combine_by_hand_and_deterministic():
    terms = [NCTITerms(10.0, 0.5, 2.0), NCTITerms(20.0, 0.9, 4.0), NCTITerms(15.0, 0.7, 2.0)]
    # seli -> 0, 1, .5; ncc -> 0, 1, .5; vc -> 0, 1, 0
    np.testing.assert_allclose(ncti_combine(terms), [0.0, 1.0, 1.0])
    np.testing.assert_allclose(ncti_combine([[1.0, 0.2, 3.0], [1.0, 0.4, 3.0]]), [0.0, 1.0])
    x, y = make_data()
    assert ncti_terms(x, y) == ncti_terms(x, y)


def test_ncti_errors():
    x, y = make_data()
    y1 = y.copy()
    y1[np.flatnonzero(y == 2)[1:]] = 1
    with pytest.raises(ValueError, match="class 2 has 1 sample"):
        ncti_terms(x, y1)
    with pytest.raises(ValueError, match="pca_dims"):
        ncti_terms(x, y, pca_dims=0)
    with pytest.raises(ValueError, match="shrinkage_dims"):
        ncti_terms(x, y, shrinkage_dims=0)
    with pytest.raises(ValueError, match="within-class scatter is zero"):
        ncti_terms(np.ones_like(x), y)
    with pytest.raises(ValueError, match="at least 2"):
        ncti_terms(x, np.zeros_like(y))
    with pytest.raises(ValueError, match="shape"):
        ncti_combine([[1.0, 2.0]])
    with pytest.raises(ValueError, match="NaN"):
        ncti_combine([[1.0, np.nan, 2.0]])
    with pytest.raises(ValueError, match="numeric"):
        ncti_combine([["a", "b", "c"]])
    with pytest.raises(ValueError, match="shape"):
        ncti_combine(np.empty((0, 3)))


# ----------------------------------------------------------------------------------------- ETran
@pytest.mark.parametrize("n,fraction,expected_m", [(300, 0.005, 1), (1000, 0.005, 5),
                                                   (50, 0.005, 1), (40, 0.25, 10)])
@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_energy_score_matches_loop(n, fraction, expected_m, temperature):
    x = np.random.default_rng(n).standard_normal((n, 7))
    free = []
    for row in x:
        free.append(temperature * np.log(sum(np.exp(v / temperature) for v in row)))
    ref = np.mean(sorted(free)[:expected_m])
    got = energy_score(x, fraction=fraction, temperature=temperature)
    assert got == pytest.approx(ref, rel=RTOL)


def _released_lda_recipe(x, y, shrinkage):
    """The released classification score written out: shrunk scatter, numpy's eigh of the
    non-symmetric inv(S_w) S_b, classifier M V V^T."""
    classes = np.unique(y)
    priors = np.array([np.mean(y == c) for c in classes])
    means = np.array([x[y == c].mean(0) for c in classes])
    d = x.shape[1]

    def shrink(s):
        return (1 - shrinkage) * s + shrinkage * np.trace(s) / d * np.eye(d)

    s_w = shrink(sum(p * np.cov(x[y == c].T, bias=True) for p, c in zip(priors, classes)))
    s_b = shrink(np.cov(x.T, bias=True)) - s_w
    _, v = np.linalg.eigh(np.linalg.inv(s_w) @ s_b)
    coef = means @ v @ v.T
    b = -0.5 * np.diag(means @ coef.T) + np.log(priors)
    p = softmax(x @ coef.T + b, axis=1)
    return np.mean(p[np.arange(len(y)), y])


def _paper_lda(x, y):
    classes = np.unique(y)
    priors = np.array([np.mean(y == c) for c in classes])
    means = np.array([x[y == c].mean(0) for c in classes])
    d = x.shape[1]
    s_w = sum(p * np.cov(x[y == c].T, bias=True) for p, c in zip(priors, classes))
    s = max(np.exp(-5 * np.linalg.eigvalsh(s_w)[-1]), 1e-10)
    s_w = (1 - s) * s_w + s * np.trace(s_w) / d * np.eye(d)
    coef = means @ np.linalg.inv(s_w)
    b = -0.5 * np.diag(means @ coef.T) + np.log(priors)
    p = softmax(x @ coef.T + b, axis=1)
    return np.mean(p[np.arange(len(y)), y])


@pytest.mark.parametrize("scale", [0.3, 1.0])
def test_lda_score_official_is_the_released_recipe(scale):
    x, y = make_data(n_per_class=15, n_classes=4, dim=5, sep=0.8, scale=scale)
    for shrinkage in (1e-10, 0.2):  # the released covariance has no effect at all
        assert lda_score(x, y, variant="official") == pytest.approx(
            _released_lda_recipe(x, y, shrinkage), rel=1e-7
        )
    assert lda_score(x, y) == pytest.approx(_paper_lda(x, y), rel=1e-7)
    assert lda_score(x, y) != pytest.approx(lda_score(x, y, variant="official"), rel=1e-3)


@FEW
@given(seed=st.integers(0, 2**31 - 1), variant=st.sampled_from(["paper", "official"]))
def test_etran_terms_invariant_to_order_and_labels(seed, variant):
    x, y = make_data(n_per_class=12, dim=5, seed=seed % 1000)
    base = etran_terms(x, y, variant=variant, fraction=0.2)
    np.testing.assert_allclose(etran_terms(*permuted(x, y, seed), variant=variant, fraction=0.2),
                               base, rtol=1e-8)


def test_etran_terms_and_combine():
    x, y = make_data()
    terms = etran_terms(x, y, fraction=0.1)
    assert isinstance(terms, ETranTerms)
    assert terms == (energy_score(x, fraction=0.1), lda_score(x, y))
    table = [ETranTerms(1.0, 0.5), ETranTerms(3.0, 0.7), ETranTerms(2.0, 0.9)]
    # energy -> 0, 1, .5; classification -> 0, .5, 1
    np.testing.assert_allclose(etran_combine(table), [0.0, 0.15 + 0.425, 0.075 + 0.85])
    np.testing.assert_allclose(etran_combine(table, energy_weight=1.0), [0.0, 1.0, 0.5])
    np.testing.assert_allclose(etran_combine([[1.0, 2.0], [1.0, 2.0]]), [0.0, 0.0])


def test_etran_not_scale_invariant():
    x, y = make_data()
    assert energy_score(x * 3, fraction=0.2) != pytest.approx(energy_score(x, fraction=0.2))
    assert lda_score(x * 3, y, variant="official") > lda_score(x, y, variant="official")


def test_etran_errors():
    x, y = make_data()
    for fraction in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="fraction"):
            energy_score(x, fraction=fraction)
    with pytest.raises(ValueError, match="temperature"):
        energy_score(x, temperature=0.0)
    with pytest.raises(ValueError, match="2-D"):
        energy_score(x[:, 0])
    with pytest.raises(ValueError, match="variant"):
        lda_score(x, y, variant="released")
    with pytest.raises(ValueError, match="remap"):
        lda_score(x, y * 2)
    with pytest.raises(ValueError, match="mismatched lengths"):
        etran_terms(x, y[:-1])
    with pytest.raises(ValueError, match="energy_weight"):
        etran_combine([[1.0, 2.0]], energy_weight=1.5)
    with pytest.raises(ValueError, match="shape"):
        etran_combine([[1.0, 2.0, 3.0]])


# ------------------------------------------------------------------------------- rel@k and rec@k
def _brute_rel_rec(s, t, k):
    """Enumerate every order of the models consistent with the scores; keep the worst top-k."""
    rels = []
    for order in itertools.permutations(range(len(s))):
        if all(s[order[i]] >= s[order[i + 1]] for i in range(len(s) - 1)):
            rels.append(max(t[list(order[:k])]) / max(t))
    return min(rels), float(min(rels) == 1.0)


values = st.lists(st.integers(0, 5), min_size=2, max_size=6)  # small ranges: many ties


@settings(max_examples=40, deadline=None)
@given(scores=values, seed=st.integers(0, 1000), data=st.data())
def test_rel_and_rec_at_k_equal_brute_force(scores, seed, data):
    s = np.array(scores, dtype=float)
    t = np.random.default_rng(seed).integers(1, 6, size=s.size).astype(float)
    k = data.draw(st.integers(1, s.size))
    rel, rec = _brute_rel_rec(s, t, k)
    assert rel_at_k(s, t, k) == pytest.approx(rel)
    assert rec_at_k(s, t, k) == rec
    assert rel_at_k(s, t, s.size) == 1.0 and rec_at_k(s, t, s.size) == 1.0
    assert rel_at_k(s, t, 1) == pytest.approx(1 - top1_regret(s, t) / t.max())
    if k > 1:
        assert rel_at_k(s, t, k) >= rel_at_k(s, t, k - 1)


def test_rec_at_k_swapped_is_the_sfda_recall():
    s = np.array([0.9, 0.8, 0.1, 0.5])
    t = np.array([70.0, 90.0, 80.0, 60.0])
    # best model (index 1) is second by the scores
    assert [rec_at_k(s, t, k) for k in (1, 2, 3)] == [0.0, 1.0, 1.0]
    # SFDA's recall@k: is the score's top-1 (index 0, 3rd by accuracy) in the accuracy top-k?
    assert [rec_at_k(t, s, k) for k in (1, 2, 3)] == [0.0, 0.0, 1.0]
    assert rel_at_k(s, t, 1) == pytest.approx(70 / 90)


def test_rel_rec_errors():
    s, t = np.array([1.0, 2.0, 3.0]), np.array([50.0, 60.0, 70.0])
    for fn in (rel_at_k, rec_at_k):
        with pytest.raises(ValueError, match="k must be"):
            fn(s, t, 0)
        with pytest.raises(ValueError, match="exceeds"):
            fn(s, t, 4)
        with pytest.raises(ValueError, match="mismatched"):
            fn(s, t[:2], 1)
    with pytest.raises(ValueError, match="non-negative"):
        rel_at_k(s, -t, 1)
    with pytest.raises(ValueError, match="positive maximum"):
        rel_at_k(s, np.zeros(3), 1)


# --------------------------------------------------------------------- leave-one-task-out baseline
def test_leave_one_task_out_matches_loop():
    rng = np.random.default_rng(0)
    table = pd.DataFrame(rng.uniform(50, 90, (5, 4)), index=[f"m{i}" for i in range(5)],
                         columns=["a", "b", "c", "d"])
    table.loc["m2", "b"] = np.nan  # a missing entry is skipped
    for task in table.columns:
        got = leave_one_task_out(table, task)
        assert got.name == task and list(got.index) == list(table.index)
        for model in table.index:
            others = [table.loc[model, t] for t in table.columns if t != task]
            assert got[model] == pytest.approx(np.nanmean(others))
    # it never looks at the task itself
    changed = table.copy()
    changed["a"] = 0.0
    pd.testing.assert_series_equal(leave_one_task_out(changed, "a"), leave_one_task_out(table, "a"))


def test_leave_one_task_out_on_published_table():
    from ped.paper import finetune_accuracy

    acc = finetune_accuracy().T  # models x tasks
    task = acc.columns[0]
    base = leave_one_task_out(acc, task)
    assert base.index.equals(acc.index) and np.isfinite(base).all()
    assert 0.0 < rel_at_k(base.to_numpy(), acc[task].to_numpy(), 3) <= 1.0


def test_leave_one_task_out_errors():
    table = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, np.nan]}, index=["x", "y"])
    with pytest.raises(ValueError, match="DataFrame"):
        leave_one_task_out(table.to_numpy(), "a")
    with pytest.raises(ValueError, match="not a column"):
        leave_one_task_out(table, "z")
    with pytest.raises(ValueError, match="at least 2 tasks"):
        leave_one_task_out(table[["a"]], "a")
    with pytest.raises(ValueError, match="no accuracy on any task other than"):
        leave_one_task_out(table, "a")
    with pytest.raises(ValueError, match="numbers"):
        leave_one_task_out(table.assign(b=["p", "q"]), "a")
    with pytest.raises(ValueError, match="infinite"):
        leave_one_task_out(table.assign(b=[np.inf, 1.0]), "a")
    with pytest.raises(ValueError, match="unique"):
        leave_one_task_out(pd.DataFrame([[1.0, 2.0]], columns=["a", "a"]), "a")

