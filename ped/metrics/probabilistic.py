r"""Probabilistic metrics: LEEP (Nguyen et al., ICML 2020), NLEEP (Li et al., CVPR 2021) and NCE
(Tran et al., ICCV 2019)."""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg
import scipy.linalg.lapack
from numpy.typing import ArrayLike, NDArray
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from sklearn.utils import check_random_state
from threadpoolctl import threadpool_limits

from ped._validation import (
    check_features,
    check_labels,
    check_positive,
    check_positive_int,
    whole_numbers,
)
from ped.metrics._common import (
    as_float64,
    check_inputs_numpy,
    leep_from_posteriors,
    pca_scores,
)

__all__ = ["leep", "nleep", "nce"]

logger = logging.getLogger(__name__)


def leep(source_probs: ArrayLike, labels: ArrayLike, *, log: bool = True) -> float:
    r"""Log Expected Empirical Prediction (Nguyen et al., "LEEP: A New Measure to Evaluate
    Transferability of Learned Representations", ICML 2020).

    With :math:`\theta(x_i) \in \Delta^{C_s}` the source classifier's probabilities,

    .. math::
        \hat P(y, z) = \frac1N\sum_{i: y_i = y} \theta_z(x_i),\qquad
        \hat P(y\mid z) = \frac{\hat P(y, z)}{\sum_{y'} \hat P(y', z)},\qquad
        \mathrm{LEEP} = \frac1N\sum_{i=1}^N \log\sum_{z} \hat P(y_i\mid z)\,\theta_z(x_i).

    ``log=True`` (default) is the paper's definition (at most 0); ``log=False`` drops the log, as
    the SFDA/PED code does (mean expected empirical prediction, in (0, 1]).  Higher is better.

    Parameters
    ----------
    source_probs : (N, Cs) non-negative floating array whose rows sum to 1 (within 1e-3; they are
        renormalised).
    labels : (N,) target labels 0..C-1, C >= 2.
    """
    theta = check_features(source_probs, name="source_probs")
    y, n_classes = check_labels(labels, n_samples=theta.shape[0], min_classes=2)
    theta = as_float64(theta)
    if (theta < 0).any():
        raise ValueError("source_probs must be probabilities (non-negative)")
    rows = theta.sum(axis=1)
    if np.abs(rows - 1.0).max() > 1e-3:
        raise ValueError(
            "every row of source_probs must sum to 1 (apply a softmax to logits first); "
            f"row sums range from {rows.min():.6g} to {rows.max():.6g}"
        )
    return leep_from_posteriors(theta / rows[:, None], y, n_classes, log=log)


def _check_source_labels(source_labels: ArrayLike, n_samples: int) -> NDArray[np.intp]:
    """Validate arbitrary integer source labels and return them remapped to 0..K-1."""
    arr = np.asarray(source_labels)
    if arr.ndim != 1:
        raise ValueError(f"source_labels must be a 1-D array, got shape {arr.shape}")
    if arr.shape[0] != n_samples:
        raise ValueError(
            f"source_labels and labels have mismatched lengths: {arr.shape[0]} and {n_samples}"
        )
    whole = whole_numbers(arr, name="source_labels")
    # source classes that never occur are irrelevant to H(Y | Z): remapping is exact here
    return np.unique(whole, return_inverse=True)[1].reshape(-1).astype(np.intp)


def nce(source_labels: ArrayLike, labels: ArrayLike) -> float:
    r"""Negative Conditional Entropy (Tran et al., "Transferability and Hardness of Supervised
    Classification Tasks", ICCV 2019).

    .. math::
        \mathrm{NCE} = -H(Y\mid Z) = \sum_{y, z} \hat P(y, z) \log \frac{\hat P(y, z)}{\hat P(z)},

    with :math:`\hat P` the empirical joint distribution of target labels :math:`y_i` and source
    labels :math:`z_i` (e.g. the source classifier's argmax).  At most 0; higher is better.

    Parameters
    ----------
    source_labels : (N,) integers; any values (only their equality matters).
    labels : (N,) target labels 0..C-1, C >= 2.
    """
    y, n_classes = check_labels(labels, min_classes=2)
    z = _check_source_labels(source_labels, y.shape[0])
    n_source = int(z.max()) + 1
    joint = np.bincount(z * n_classes + y, minlength=n_source * n_classes).reshape(
        n_source, n_classes
    ) / y.shape[0]
    pz = joint.sum(axis=1, keepdims=True)
    mask = joint > 0
    return float(np.sum(joint[mask] * np.log((joint / pz)[mask])))


def nleep(
    features: ArrayLike,
    labels: ArrayLike,
    *,
    component_ratio: int = 5,
    variance: float = 0.8,
    covariance_type: str = "full",
    log: bool = True,
    random_state: int | None = 0,
    max_iter: int = 100,
) -> float:
    r"""Gaussian LEEP, "NLEEP" (Li et al., "Ranking Neural Checkpoints", CVPR 2021).

    The source classifier of :func:`leep` is replaced by a Gaussian mixture fitted on the target
    features: project onto the principal components explaining ``variance`` (80%) of the variance,
    fit a Gaussian mixture with :math:`K` = ``component_ratio`` x C components (the fit of
    ``sklearn.mixture.GaussianMixture`` with its defaults: k-means initialisation, ``tol=1e-3``,
    ``reg_covar=1e-6``, one initialisation), and take its posteriors
    :math:`\theta_k(x_i) = P(k \mid x_i)` as :math:`\theta` in

    .. math::
        \mathrm{NLEEP} = \frac1N\sum_i \log \sum_{k=1}^{K} \hat P(y_i \mid k)\,\theta_k(x_i).

    Higher is better.

    With ``covariance_type="full"`` (the released code's) the mixture is fitted here, by the EM
    iterations of scikit-learn: the responsibilities start one-hot at the labels of
    ``sklearn.cluster.KMeans(K, n_init=1, random_state=random_state)``, then an M-step, and each
    iteration is an E-step followed by an M-step.  With :math:`U_k` the upper-triangular
    Cholesky factor of the precision (:math:`\Sigma_k^{-1} = U_k U_k^\top`, from
    :math:`\Sigma_k = L_k L_k^\top`, :math:`U_k = L_k^{-\top}`), the E-step computes

    .. math::
        w_{ik} = \log\pi_k - \tfrac12\bigl(D\log 2\pi + \lVert (x_i - \mu_k)^\top U_k\rVert^2\bigr)
                 + \textstyle\sum_d \log (U_k)_{dd},\qquad
        \ell_i = \log\sum_k e^{w_{ik}},\qquad r_{ik} = e^{w_{ik} - \ell_i},

    and the M-step, with :math:`\epsilon` the float64 machine epsilon,

    .. math::
        N_k = \sum_i r_{ik} + 10\epsilon,\quad \mu_k = \frac{1}{N_k}\sum_i r_{ik}\,x_i,\quad
        \Sigma_k = \frac{1}{N_k}\sum_i r_{ik}(x_i - \mu_k)(x_i - \mu_k)^\top + 10^{-6} I,\quad
        \pi_k = \frac{N_k}{\sum_j N_j}

    (:math:`\pi_k = N_k / N` after the k-means start).  EM stops when the mean log-likelihood
    :math:`\bar\ell = \frac1N\sum_i \ell_i` changes by less than ``1e-3`` between iterations, or
    after ``max_iter`` iterations; a last E-step gives :math:`\theta_k(x_i) = r_{ik}`.

    The cost of scikit-learn's fit, :math:`O(K N D^2)` per E- and M-step, is avoided where it
    changes nothing: the M-step of component :math:`k` sums only the samples with
    :math:`r_{ik} \ne 0`, and the E-step skips a pair :math:`(i, k)` when an upper bound of
    :math:`w_{ik}` (from a few columns of :math:`U_k`: the Mahalanobis norm's partial sums only
    grow) is more than 800 (plus a relative 1e-10) below a computed :math:`w_{ic}`.  Such an
    :math:`r_{ik}` is below :math:`e^{-800}`, which is exactly 0.0 in float64, in scikit-learn's
    computation too: the iterations are scikit-learn's, and the parameters, posteriors and score
    agree with it up to floating-point rounding (the order of the sums).  Memory: the K precision
    factors (K x D x D float64, about 380 MB at the Flowers shape, 510 components in 306
    dimensions) and a few N x K arrays, about 550 MiB traced at that shape (scikit-learn's fit
    holds three K x D x D arrays, 1.3 GiB).  Other covariance types are fitted by
    ``GaussianMixture`` itself.

    Parameters
    ----------
    component_ratio : mixture components per class; 5 in the paper and the released code, which
        uses 1 for Food-101 and Oxford Pets.
    variance : fraction of variance kept by the PCA (exact PCA, sklearn's selection rule).
    covariance_type : ``"full"`` (sklearn's default, used by the released code), or ``"tied"``,
        ``"diag"`` or ``"spherical"``, passed to ``GaussianMixture``; ``"diag"`` is much cheaper.
    log : ``True`` (default, the paper) or ``False`` (the released code drops the log).
    random_state : seed of the mixture's k-means initialisation (the released code leaves it
        unseeded; fix it here so results are reproducible).
    max_iter : EM iterations (sklearn's default 100).

    Requires N >= K samples.
    """
    x, y, n_classes = check_inputs_numpy(features, labels, min_classes=2, min_per_class=1)
    component_ratio = check_positive_int(component_ratio, "component_ratio")
    max_iter = check_positive_int(max_iter, "max_iter")
    variance = check_positive(variance, "variance")
    if variance > 1.0:
        raise ValueError(f"variance must be in (0, 1], got {variance}")
    if covariance_type not in ("full", "tied", "diag", "spherical"):
        raise ValueError(
            "covariance_type must be one of 'full', 'tied', 'diag', 'spherical', got "
            f"{covariance_type!r}"
        )
    n_components = component_ratio * n_classes
    if x.shape[0] < n_components:
        raise ValueError(
            f"NLEEP fits {n_components} mixture components (component_ratio={component_ratio} x "
            f"{n_classes} classes) but there are only {x.shape[0]} samples; lower component_ratio"
        )

    reduced = pca_scores(as_float64(x), variance=variance)
    logger.debug("NLEEP: %d PCA dims, %d components", reduced.shape[1], n_components)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        if covariance_type == "full":
            theta = _fit_full_mixture(
                reduced, n_components, random_state=random_state, max_iter=max_iter
            ).resp
        else:
            gmm = GaussianMixture(
                n_components=n_components,
                covariance_type=covariance_type,
                random_state=random_state,
                max_iter=max_iter,
            )
            gmm.fit(reduced)
            theta = gmm.predict_proba(reduced)
    for w in caught:
        logger.warning("NLEEP: %s", w.message)
    return leep_from_posteriors(theta, y, n_classes, log=log)


# ------------------------------------------------------------ Gaussian mixture, full covariance
#: A log-responsibility below -745.2 is exactly 0.0 once exponentiated in float64; a pair whose
#: log-weight is bounded more than this below another of the sample's is skipped by the E-step
#: (the 55 extra nats, and a relative 1e-10 of the log-weights, absorb any rounding of the bound).
_PRUNE_MARGIN = 800.0
#: columns of each precision factor that bound the Mahalanobis norms before the exact E-step
_BOUND_COLUMNS = 8
#: bytes of the (N, components x columns) block of projections the bounds are computed in
_BOUND_BLOCK_BYTES = 32 * 2**20
_LOG_2PI = math.log(2.0 * math.pi)
#: the error of a component whose covariance is not positive definite (where scikit-learn's fit
#: raises too)
_ILL_DEFINED = (
    "NLEEP's mixture: a component's covariance is not positive definite (an ill-defined "
    "empirical covariance: a component of collapsed or duplicated samples); lower "
    "component_ratio or the number of components, or raise reg_covar"
)


@dataclass
class _Mixture:
    """A fitted full-covariance mixture (the attributes of ``GaussianMixture`` after ``fit``).

    ``resp`` is the final E-step's responsibilities, ``predict_proba`` of the training samples;
    ``covariances`` is kept only when asked for (K x D x D: 380 MB at the Flowers shape).
    """

    weights: NDArray[np.float64]
    means: NDArray[np.float64]
    precisions_cholesky: NDArray[np.float64]
    covariances: NDArray[np.float64] | None
    resp: NDArray[np.float64]
    lower_bound: float
    lower_bounds: list[float]
    n_iter: int
    converged: bool


def _fit_full_mixture(
    x: NDArray[np.float64],
    n_components: int,
    *,
    random_state: Any = 0,
    max_iter: int = 100,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
    keep_covariances: bool = False,
) -> _Mixture:
    """``GaussianMixture(n_components, covariance_type="full", tol=tol, reg_covar=reg_covar,
    max_iter=max_iter, random_state=random_state).fit(x)`` (k-means start, one initialisation)
    and the responsibilities of its ``predict_proba(x)``: the same iterations, see :func:`nleep`.

    Warns ``ConvergenceWarning`` as scikit-learn does when EM stops before converging; raises
    ``ValueError`` when a covariance is not positive definite or N < K.
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    n = x.shape[0]
    if n < 2 or not 1 <= n_components <= n:
        raise ValueError(
            f"a mixture of {n_components} components needs at least max(2, {n_components}) "
            f"samples, got {n}"
        )
    if max_iter < 0:
        raise ValueError(f"max_iter must be >= 0, got {max_iter}")
    # GaussianMixture._initialize_parameters with init_params="kmeans", the same generator
    rng = check_random_state(random_state)
    labels = KMeans(n_clusters=n_components, n_init=1, random_state=rng).fit(x).labels_
    resp = np.zeros((n, n_components))
    resp[np.arange(n), labels] = 1.0
    params = _m_step(x, resp, reg_covar, initial=True, keep_covariances=keep_covariances)

    lower_bound, lower_bounds, converged, n_iter = -np.inf, [], False, 0
    for n_iter in range(1, max_iter + 1):
        previous = lower_bound
        log_norm, resp = _e_step(x, params[0], params[1], params[2])
        # the new precision factors overwrite the old ones (K x D x D: 380 MB at Flowers)
        params = _m_step(x, resp, reg_covar, initial=False, keep_covariances=keep_covariances,
                         out=params[2])
        lower_bound = float(np.mean(log_norm))
        lower_bounds.append(lower_bound)
        if abs(lower_bound - previous) < tol:
            converged = True
            break
    if not converged and max_iter > 0:
        warnings.warn(
            "Best performing initialization did not converge. Try different init parameters, "
            "or increase max_iter, tol, or check for degenerate data.",
            ConvergenceWarning,
            stacklevel=2,
        )
    weights, means, prec_chol, covariances = params
    _, resp = _e_step(x, weights, means, prec_chol)
    return _Mixture(weights, means, prec_chol, covariances, resp, lower_bound, lower_bounds,
                    n_iter, converged)


def _m_step(
    x: NDArray[np.float64],
    resp: NDArray[np.float64],
    reg_covar: float,
    *,
    initial: bool,
    keep_covariances: bool,
    out: NDArray[np.float64] | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], Any]:
    """Weights, means, precision Cholesky factors (and covariances if asked for) from the
    responsibilities, as ``GaussianMixture._initialize`` (``initial``) or ``_m_step`` computes
    them; each covariance sums only the samples of nonzero responsibility, and is factored and
    inverted in place (LAPACK ``potrf`` and ``trtri`` on one thread: a few hundred small
    factorisations, where threads only contend).  The factors are written to ``out`` if given
    (a K x D x D float64 array)."""
    n, d = x.shape
    n_components = resp.shape[1]
    nk = resp.sum(axis=0) + 10 * np.finfo(np.float64).eps
    means = (resp.T @ x) / nk[:, None]
    comp, rows = np.nonzero(resp.T)  # grouped by component
    starts = np.concatenate(([0], np.cumsum(np.bincount(comp, minlength=n_components))))
    prec_chol = np.empty((n_components, d, d)) if out is None else out
    covariances = np.empty((n_components, d, d)) if keep_covariances else None
    potrf, trtri = scipy.linalg.lapack.get_lapack_funcs(("potrf", "trtri"), (means,))
    with threadpool_limits(limits=1, user_api="blas"):
        for k in range(n_components):
            r = rows[starts[k]:starts[k + 1]]
            diff = x[r] - means[k]
            cov = ((resp[r, k] * diff.T) @ diff) / nk[k]
            cov.flat[:: d + 1] += reg_covar
            if covariances is not None:
                covariances[k] = cov
            if not np.isfinite(cov).all():
                raise ValueError(_ILL_DEFINED)
            chol, info = potrf(cov, lower=1, clean=1, overwrite_a=1)
            if info != 0:
                raise ValueError(_ILL_DEFINED)
            inv, info = trtri(chol, lower=1, overwrite_c=1)
            if info != 0:
                raise ValueError(_ILL_DEFINED)
            prec_chol[k] = inv.T
    weights = nk / n if initial else nk / nk.sum()
    return weights, means, prec_chol, covariances


def _e_step(
    x: NDArray[np.float64],
    weights: NDArray[np.float64],
    means: NDArray[np.float64],
    prec_chol: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``(log p(x_i), responsibilities)``: ``GaussianMixture._estimate_log_prob_resp`` with the
    responsibilities exponentiated, computing only the log-weights whose responsibility can be
    nonzero in float64 (the others are -inf: their responsibility is 0.0 either way)."""
    n, d = x.shape
    n_components = means.shape[0]
    offset = np.sum(np.log(prec_chol.reshape(n_components, -1)[:, :: d + 1]), axis=1)
    log_weights = np.log(weights)
    w = np.full((n, n_components), -np.inf)

    def exact(k: int, r: NDArray[np.intp] | None) -> NDArray[np.float64]:
        xr = x if r is None else x[r]
        y = xr @ prec_chol[k] - means[k] @ prec_chol[k]
        maha = np.sum(np.square(y), axis=1)
        return (-0.5 * (d * _LOG_2PI + maha) + offset[k]) + log_weights[k]

    if d <= 2 * _BOUND_COLUMNS:  # the bounds would cost about as much as the exact values
        with threadpool_limits(limits=1, user_api="blas"):
            for k in range(n_components):
                w[:, k] = exact(k, None)
    else:
        upper = _upper_bounds(x, means, prec_chol, offset + log_weights)
        best = upper.argmax(axis=1)
        # many small products (a component's few candidate samples): threads only contend
        with threadpool_limits(limits=1, user_api="blas"):
            for k, r in _groups(best, n_components):
                w[r, k] = exact(k, r)
            lower = w[np.arange(n), best]  # a computed log-weight of each sample
            # (plus a relative slack for the rounding of very large Mahalanobis norms)
            slack = _PRUNE_MARGIN + 1e-10 * (np.abs(lower)[:, None] + np.abs(upper))
            todo = upper >= lower[:, None] - slack
            todo[np.arange(n), best] = False
            comp, rows = np.nonzero(todo.T)
            dense = []
            for k, r in _groups(comp, n_components, rows):
                if 2 * r.size < n:
                    w[r, k] = exact(k, r)
                else:
                    dense.append((k, r))
        for k, r in dense:  # the bounds ruled out few samples: one large product instead
            w[r, k] = exact(k, None)[r]
    log_norm = _logsumexp_rows(w)
    with np.errstate(under="ignore"):
        resp = np.exp(w - log_norm[:, None])
    return log_norm, resp


def _groups(
    key: NDArray[np.intp], n_groups: int, values: NDArray[np.intp] | None = None
) -> list[tuple[int, NDArray[np.intp]]]:
    """``[(g, values where key == g)]`` for the nonempty groups (``values`` defaults to the
    positions); ``key`` already sorted when ``values`` is given."""
    if values is None:
        values = np.argsort(key, kind="stable")
        key = key[values]
    starts = np.concatenate(([0], np.cumsum(np.bincount(key, minlength=n_groups))))
    return [(g, values[starts[g]:starts[g + 1]])
            for g in range(n_groups) if starts[g + 1] > starts[g]]


def _upper_bounds(
    x: NDArray[np.float64],
    means: NDArray[np.float64],
    prec_chol: NDArray[np.float64],
    offset: NDArray[np.float64],
) -> NDArray[np.float64]:
    r"""(N, K) upper bounds of the log-weights: the Mahalanobis norm
    :math:`\lVert (x_i - \mu_k)^\top U_k\rVert^2` is at least its sum over any columns of
    :math:`U_k`; those of largest norm are taken (the directions in which component :math:`k`
    is narrowest), for blocks of components at once in one matrix product."""
    n, d = x.shape
    n_components = means.shape[0]
    b = _BOUND_COLUMNS
    out = np.empty((n, n_components))
    step = max(1, _BOUND_BLOCK_BYTES // (8 * n * b))
    for s in range(0, n_components, step):
        e = min(n_components, s + step)
        p = prec_chol[s:e]
        cols = np.argsort(np.einsum("kij,kij->kj", p, p), axis=1)[:, -b:]
        pb = np.take_along_axis(p, cols[:, None, :], axis=2)  # (k, D, b)
        shift = np.einsum("kd,kdb->kb", means[s:e], pb).reshape(-1)
        y = x @ pb.transpose(1, 0, 2).reshape(d, -1)
        y -= shift
        partial = np.square(y, out=y).reshape(n, e - s, b).sum(axis=2)
        out[:, s:e] = -0.5 * (d * _LOG_2PI + partial) + offset[s:e]
    return out


def _logsumexp_rows(a: NDArray[np.float64]) -> NDArray[np.float64]:
    """Row-wise log-sum-exp, computed as scikit-learn's ``_logsumexp`` (the maximum apart)."""
    amax = a.max(axis=1, keepdims=True)
    at_max = a == amax
    m = at_max.sum(axis=1, keepdims=True, dtype=np.float64)
    shift = np.where(np.isfinite(amax), amax, 0.0)
    with np.errstate(under="ignore"):
        s = np.exp(np.where(at_max, -np.inf, a) - shift).sum(axis=1, keepdims=True)
    s = np.where(s == 0, s, s / m)
    return (np.log1p(s) + np.log(m) + amax)[:, 0]
