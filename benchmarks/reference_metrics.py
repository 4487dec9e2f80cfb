"""Straightforward implementations of the released algorithms, for timing ``ped.metrics``.

Each function computes one metric the way its authors' released code is organised: per-class
loops, ``np.cov``, dense D x D inverses and eigen-decompositions, scikit-learn for PCA, mixtures
and neighbours.  They are written for this benchmark (no code is copied) and take the options
that make their score equal to ``ped.metrics`` under the release definitions
(``ped.metrics.DEFINITIONS["release"]``); ``tests/test_benchmark_references.py`` checks the
equality on small inputs, ``benchmarks/bench_metrics.py`` times both at the Flowers shape.

Where the release differs from ``ped``'s definition the option is named: LogME's ``epsilon``
(the release adds 1e-5 to two denominators; ``ped`` adds none) and H-score's ``rcond`` (the
release's 1e-15 against numpy's default, which ``ped`` uses).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.stats
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def logme(f: np.ndarray, y: np.ndarray, epsilon: float = 0.0) -> float:
    """LogME by its fixed point, one class at a time, from the SVD of the features."""
    f = f.astype(np.float64)
    n, d = f.shape
    u, s, vh = np.linalg.svd(f, full_matrices=False)
    sigma = s**2
    evidences = []
    for c in range(int(y.max()) + 1):
        target = (y == c).astype(np.float64)
        x2 = (u.T @ target) ** 2
        outside = max(target @ target - x2.sum(), 0.0)
        alpha, beta = 1.0, 1.0
        for _ in range(11):
            t = alpha / beta
            gamma = np.sum(sigma / (sigma + t))
            m2 = np.sum(sigma * x2 / (t + sigma) ** 2)
            res2 = np.sum(x2 * (t / (sigma + t)) ** 2) + outside
            alpha = gamma / (m2 + epsilon)
            beta = (n - gamma) / (res2 + epsilon)
            if abs(alpha / beta - t) <= 1e-3 * t:
                break
        t = alpha / beta
        m2 = np.sum(sigma * x2 / (t + sigma) ** 2)
        res2 = np.sum(x2 * (t / (sigma + t)) ** 2) + outside
        evidence = (d / 2 * np.log(alpha) + n / 2 * np.log(beta)
                    - 0.5 * np.sum(np.log(alpha + beta * sigma))
                    - 0.5 * (d - sigma.size) * np.log(alpha)
                    - beta / 2 * res2 - alpha / 2 * m2 - n / 2 * np.log(2 * np.pi))
        evidences.append(evidence / n)
    return float(np.mean(evidences))


def _fda(x: np.ndarray, y: np.ndarray, shrinkage: float | None):
    """A regularised Fisher discriminant as the SFDA release fits it: returns the class
    probabilities of ``x``, the shrinkage used and the class means."""
    n, d = x.shape
    classes = np.unique(y)
    priors = np.bincount(y) / n
    means = np.stack([x[y == c].mean(axis=0) for c in classes])
    within = sum(priors[c] * np.cov(x[y == c].T, bias=True) for c in classes)
    if shrinkage is None:
        v = within.sum(axis=1)  # three power iterations for the largest eigenvalue
        for _ in range(3):
            w = within @ v
            w /= np.linalg.norm(w)
            v = within @ w
            v /= np.linalg.norm(v)
        shrinkage = max(np.exp(-5 * float(v @ within @ w)), 1e-10)
    total = np.cov(x.T, bias=True)
    total = (1 - shrinkage) * total + shrinkage * np.trace(total) / d * np.eye(d)
    within = (1 - shrinkage) * within + shrinkage * np.trace(within) / d * np.eye(d)
    evals, evecs = scipy.linalg.eigh(total - within, within)
    evecs = evecs[:, np.argsort(evals)[::-1]]
    coef = means @ evecs @ evecs.T
    intercept = -0.5 * np.diag(means @ coef.T) + np.log(priors)
    return _softmax(x @ coef.T + intercept), shrinkage, means


def sfda(x: np.ndarray, y: np.ndarray) -> float:
    """SFDA as released: FDA, softened probabilities, ConfMix, a second FDA; no log."""
    x = x.astype(np.float64)  # a copy: the mixing below writes to it
    n, c = len(y), int(y.max()) + 1
    prob, shrinkage, means = _fda(x, y, None)
    prob = _softmax(prob)
    others = (means.sum(axis=0) - means) / (c - 1)
    for k in range(c):
        rows = np.flatnonzero(y == k)
        q = prob[rows, k][:, None]
        x[rows] = q * x[rows] + (1 - q) * others[k]
    prob, _, _ = _fda(x, y, shrinkage)
    return float(prob[np.arange(n), y].mean())


def gbc(x: np.ndarray, y: np.ndarray, pca_dims: int = 64) -> float:
    """GBC as google-research's stable_transfer computes it (spherical): PCA, per-class
    variances floored at 1e-4, a loop over the class pairs."""
    x = x.astype(np.float64)
    if x.shape[1] > pca_dims:
        x = PCA(n_components=pca_dims, svd_solver="full").fit_transform(x)
    classes = np.unique(y)
    means = [x[y == c].mean(axis=0) for c in classes]
    variances = [np.maximum(x[y == c].var(axis=0), 1e-4).mean() for c in classes]
    total = 0.0
    for i in range(len(classes)):
        for j in range(len(classes)):
            if i == j:
                continue
            s = 0.5 * (variances[i] + variances[j])
            diff = means[i] - means[j]
            distance = diff @ diff / (8 * s) + 0.5 * np.log(s / np.sqrt(variances[i] * variances[j]))
            total += np.exp(-distance)
    return float(-total)


def nleep(x: np.ndarray, y: np.ndarray, covariance_type: str = "full",
          random_state: int = 0, max_iter: int = 100) -> float:
    """NLEEP as released: PCA keeping 80 % of the variance, a Gaussian mixture of 5 x C
    components, LEEP of its posteriors; no log."""
    n, c = len(y), int(y.max()) + 1
    reduced = PCA(n_components=0.8, svd_solver="full").fit_transform(x.astype(np.float64))
    gmm = GaussianMixture(n_components=5 * c, covariance_type=covariance_type,
                          random_state=random_state, max_iter=max_iter).fit(reduced)
    theta = gmm.predict_proba(reduced)
    joint = np.stack([theta[y == k].sum(axis=0) / n for k in range(c)])
    cond = joint / joint.sum(axis=0)
    eep = np.einsum("ik,ik->i", theta, cond[y])
    return float(eep.mean())


def parc(x: np.ndarray, y: np.ndarray, pca_dims: int = 32) -> float:
    """PARC as released (on the samples given: subsample first): PCA, standardisation, the
    Spearman correlation of the two dissimilarity matrices' upper triangles, times 100."""
    x = x.astype(np.float64)
    if x.shape[1] > pca_dims:
        x = PCA(n_components=pca_dims, svd_solver="full").fit_transform(x)
    z = StandardScaler().fit_transform(x)
    onehot = np.eye(int(y.max()) + 1)[y]
    iu = np.triu_indices(len(y), 1)
    # the label dissimilarity takes two values, 0 and C / (C - 1), up to the round-off of
    # np.corrcoef; rounded here, else Spearman ranks that round-off (the release does: it moves
    # the score by about 1e-2 on its 0-100 scale at N = 1500)
    labels = np.round((1 - np.corrcoef(onehot))[iu], 9)
    return float(100 * scipy.stats.spearmanr((1 - np.corrcoef(z))[iu], labels)[0])


def parc_subsampled(x: np.ndarray, y: np.ndarray, max_samples: int = 5000,
                    random_state: int = 0, pca_dims: int = 32) -> float:
    """:func:`parc` on the stratified subsample that ``ped.metrics.parc`` scores by default (the
    same rows: the subsample is data preparation, not the algorithm timed)."""
    from ped.metrics.separation import _stratified_subsample

    if len(y) > max_samples:
        idx = _stratified_subsample(y, int(y.max()) + 1, max_samples,
                                    np.random.default_rng(random_state))
        x, y = x[idx], y[idx]
    return parc(x, y, pca_dims=pca_dims)


def hscore(x: np.ndarray, y: np.ndarray, rcond: float | None = None) -> float:
    """H-score: tr(pinv(cov f) cov(E[f | y]))."""
    x = x.astype(np.float64)
    cov_f = np.cov(x, rowvar=False)
    g = np.zeros_like(x)
    for c in np.unique(y):
        g[y == c] = x[y == c].mean(axis=0)
    cov_g = np.cov(g, rowvar=False)
    rcond = x.shape[1] * np.finfo(np.float64).eps if rcond is None else rcond
    return float(np.trace(np.linalg.pinv(cov_f, rcond=rcond) @ cov_g))


def transrate(x: np.ndarray, y: np.ndarray, eps: float = 1e-4) -> float:
    """TransRate: coding rate of all features minus the mean coding rate of each class."""
    z = x.astype(np.float64)
    z = z - z.mean(axis=0)

    def rate(block: np.ndarray) -> float:
        n, d = block.shape
        return 0.5 * np.linalg.slogdet(np.eye(d) + block.T @ block / (n * eps))[1]

    return float(rate(z) - np.mean([rate(z[y == c]) for c in np.unique(y)]))


def knn(x: np.ndarray, y: np.ndarray, k: int = 20, metric: str = "cosine") -> float:
    """Leave-one-out k-NN accuracy with scikit-learn's neighbour search; a vote tie counts as the
    expected accuracy of breaking it at random (as ``ped.metrics.knn_accuracy``)."""
    search = NearestNeighbors(n_neighbors=k + 1, metric=metric, algorithm="brute").fit(x)
    _, idx = search.kneighbors(x)
    credit = 0.0
    for i, row in enumerate(idx):
        neighbours = [j for j in row if j != i][:k]
        votes = np.bincount(y[neighbours], minlength=int(y.max()) + 1)
        winners = np.flatnonzero(votes == votes.max())
        credit += (y[i] in winners) / len(winners)
    return credit / len(y)


#: ``ped.metrics`` name -> (reference function, options of the ``ped`` metric that make the two
#: compute the same score: the release definitions, and NLEEP's full covariance).
REFERENCES = {
    "logme": (logme, {}),
    "sfda": (sfda, {"log": False}),
    "gbc": (gbc, {"covariance": "spherical", "variant": "reference"}),
    "nleep": (nleep, {"log": False, "covariance_type": "full"}),
    "parc": (parc_subsampled, {}),
    "hscore": (hscore, {}),
    "transrate": (transrate, {}),
    "knn": (knn, {}),
}
