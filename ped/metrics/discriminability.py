r"""Discriminability metrics: SFDA (Shao et al., ECCV 2022), H-score (Bao et al., ICIP 2019) and
TransRate (Huang et al., ICML 2022)."""

from __future__ import annotations

import logging

import numpy as np
import scipy.linalg
from numpy.typing import ArrayLike, NDArray

from ped._validation import (
    check_nonnegative,
    check_positive,
    check_positive_int,
)
from ped.metrics._common import (
    Features,
    as_float64,
    check_inputs,
    check_inputs_numpy,
    class_stats,
    eigh_descending,
    label_softmax,
    mean_value,
    mix_rows,
    to_float64,
    within_scatter,
)

__all__ = ["sfda", "hscore", "transrate"]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------- SFDA
def _largest_eigenvalue(a: NDArray[np.float64], power_iterations: int | None) -> float:
    r"""Largest eigenvalue of the symmetric PSD matrix ``a``.

    ``power_iterations=None``: exact (LAPACK).  An integer ``k``: the power-method estimate
    :math:`\lVert A^{2k+1}\mathbf 1\rVert / \lVert A^{2k}\mathbf 1\rVert` (2k+1 matrix-vector
    products), which is what the released SFDA code computes with its "3 iterations" (k = 3).
    """
    d = a.shape[0]
    if power_iterations is None:
        return float(scipy.linalg.eigvalsh(a, subset_by_index=[d - 1, d - 1])[0])
    # the estimate is homogeneous in a: iterate on a / max|a| so that the norms of a's rows
    # (fourth powers of the features) cannot overflow, and scale back
    scale = float(np.abs(a).max())
    if scale == 0.0:
        return 0.0
    a = a / scale
    v = a.sum(axis=1)
    for _ in range(2 * power_iterations):
        norm = np.linalg.norm(v)
        if norm == 0.0:
            return 0.0
        v = a @ (v / norm)
    return float(np.linalg.norm(v)) * scale


def _solve_spd(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """``a^{-1} b`` for a symmetric positive semi-definite ``a`` (Cholesky, pseudo-inverse fallback)."""
    try:
        return scipy.linalg.cho_solve(scipy.linalg.cho_factor(a, check_finite=False), b)
    except np.linalg.LinAlgError:
        logger.debug("SFDA: within-class scatter is singular, using its pseudo-inverse")
        return scipy.linalg.pinvh(a) @ b


def _fda_fit(
    x: Features,
    y: NDArray[np.intp],
    n_classes: int,
    shrinkage: float | None,
    power_iterations: int | None,
) -> tuple[NDArray[np.float64], NDArray[np.float64], float]:
    r"""Regularised FDA classifier: return ``(coef (C, D), intercept (C,), shrinkage)``.

    .. math::
        S_w = \sum_c \pi_c \hat\Sigma_c,\qquad
        \lambda = \max\!\left(e^{-5\lambda_{\max}(S_w)}, 10^{-10}\right),\qquad
        \tilde S_w = (1-\lambda) S_w + \lambda \tfrac{\operatorname{tr} S_w}{D} I,

    with :math:`\pi_c = n_c/N` and :math:`\hat\Sigma_c` the (biased) class covariance.  The Fisher
    directions solve :math:`S_b v = \mu \tilde S_w v` (:math:`S_b = \tilde S_t - \tilde S_w`),
    normalised by :math:`V^\top \tilde S_w V = I`.  Keeping all D directions, as the released code
    does, the classifier :math:`W = M V V^\top` equals :math:`M \tilde S_w^{-1}` (:math:`M` the
    class means), which is computed here by a Cholesky solve instead of the generalised
    eigenproblem.  Logits are :math:`x W^\top + b` with
    :math:`b_c = -\tfrac12 \mu_c^\top W_c + \log \pi_c`.
    """
    coef, intercept, shrinkage, _ = _fda_fit_means(x, y, n_classes, shrinkage, power_iterations)
    return coef, intercept, shrinkage


def _fda_fit_means(
    x: Features,
    y: NDArray[np.intp],
    n_classes: int,
    shrinkage: float | None,
    power_iterations: int | None,
) -> tuple[NDArray[np.float64], NDArray[np.float64], float, NDArray[np.float64]]:
    """:func:`_fda_fit` that also returns the class means (C, D).

    ``x`` is a float64 numpy array or tensor: the class means and the within-class scatter are its
    only passes over the samples (on the tensor's device); the shrinkage and the Cholesky solve are
    done in numpy on the D x D scatter.
    """
    n, d = x.shape
    counts, means = class_stats(x, y, n_classes)
    s_w = within_scatter(x, y, means) / n
    if shrinkage is None:
        lam_max = _largest_eigenvalue(s_w, power_iterations)
        shrinkage = max(float(np.exp(-5.0 * lam_max)), 1e-10)
    mu = np.trace(s_w) / d
    s_w_shrunk = (1.0 - shrinkage) * s_w
    s_w_shrunk[np.diag_indices(d)] += shrinkage * mu
    coef = _solve_spd(s_w_shrunk, means.T).T
    intercept = -0.5 * np.einsum("cd,cd->c", means, coef) + np.log(counts / n)
    return coef, intercept, shrinkage, means


def sfda(
    features: ArrayLike,
    labels: ArrayLike,
    *,
    log: bool = True,
    power_iterations: int | None = 3,
) -> float:
    r"""Self-challenging Fisher Discriminant Analysis score (Shao et al., "Not All Models Are
    Equal: Predicting Model Transferability in a Self-challenging Fisher Space", ECCV 2022).

    1. Fit a regularised FDA classifier (see ``_fda_fit``) with adaptive shrinkage
       :math:`\lambda = \max(e^{-5\lambda_{\max}(S_w)}, 10^{-10})`; :math:`p = \operatorname{softmax}
       (x W^\top + b)`.
    2. Soften: :math:`q = \operatorname{softmax}(p)` (a second softmax over the probabilities, as
       in the released code).
    3. ConfMix: :math:`\tilde x_i = q_{i,y_i} x_i + (1 - q_{i,y_i})\,\bar\mu_{\neg y_i}`, with
       :math:`\bar\mu_{\neg c} = \frac1{C-1}\sum_{c'\ne c}\mu_{c'}` the mean of the other class
       means.
    4. Fit a second FDA on :math:`\tilde x` with the same :math:`\lambda`; :math:`\tilde p` its
       softmax probabilities on :math:`\tilde x`.
    5. Score :math:`\frac1N\sum_i \log \tilde p_{i,y_i}` (``log=True``, the paper's definition) or
       :math:`\frac1N\sum_i \tilde p_{i,y_i}` (``log=False``, the released SFDA/PED code, which
       drops the log; use it to reproduce the published tables).

    Higher is better.  The input is never modified (the released code overwrites it in place).

    Parameters
    ----------
    features : (N, D) floating array, or a floating ``torch.Tensor`` on any device: the passes
        over the samples (class means, within-class scatter, logits and per-sample softmax
        statistics, ConfMix) then run in torch float64 on that device, and the D x D shrinkage
        and Cholesky solves in numpy; the result matches the numpy path to float64 round-off.
    labels : (N,) integers 0..C-1, C >= 2 (numpy array, sequence or tensor).
    log : see step 5; default ``True`` (paper).
    power_iterations : ``3`` (default) reproduces the released code's power-method estimate of
        :math:`\lambda_{\max}(S_w)`; ``None`` computes it exactly.
    """
    x, y, n_classes = check_inputs(features, labels, min_classes=2, min_per_class=1)
    if power_iterations is not None:
        power_iterations = check_positive_int(power_iterations, "power_iterations")
    x = to_float64(x)

    coef, intercept, shrinkage, means = _fda_fit_means(x, y, n_classes, None, power_iterations)
    logger.debug("SFDA shrinkage: %g", shrinkage)
    q = label_softmax(x, coef, intercept, y, "prob_of_prob")

    others = (means.sum(axis=0)[None, :] - means) / (n_classes - 1)
    x_mix = mix_rows(x, q, others, y)

    coef2, intercept2, _ = _fda_fit(x_mix, y, n_classes, shrinkage, power_iterations)
    return mean_value(label_softmax(x_mix, coef2, intercept2, y, "log_prob" if log else "prob"))


# ------------------------------------------------------------------------------------------ H-score
def hscore(features: ArrayLike, labels: ArrayLike, *, rcond: float | None = None) -> float:
    r"""H-score (Bao et al., "An Information-Theoretic Approach to Transferability in Task Transfer
    Learning", ICIP 2019).

    .. math::
        H(f) = \operatorname{tr}\!\left(\operatorname{cov}(f)^{+}\,
               \operatorname{cov}\!\left(\mathbb E[f \mid y]\right)\right)
             = \sum_c \frac{n_c}{N} (\mu_c - \mu)^\top \operatorname{cov}(f)^{+} (\mu_c - \mu),

    where :math:`{}^{+}` is the pseudo-inverse (eigenvalues below ``rcond`` times the largest are
    treated as zero; default ``rcond = D * machine epsilon``, numpy's ``pinv`` default; the
    authors used 1e-15, which amplifies round-off on rank-deficient features).  Both covariances
    use the same normalisation, so it cancels.  Higher is better.
    """
    x, y, n_classes = check_inputs_numpy(features, labels, min_classes=2, min_per_class=1)
    x = as_float64(x)
    n, d = x.shape
    if rcond is None:
        rcond = d * np.finfo(np.float64).eps
    else:
        rcond = check_nonnegative(rcond, "rcond")
    mu = x.mean(axis=0)
    xc = x - mu
    cov_f = (xc.T @ xc) / n
    counts, means = class_stats(x, y, n_classes)
    w, v = eigh_descending(cov_f)
    keep = w > rcond * w[0] if w[0] > 0 else np.zeros_like(w, dtype=bool)
    proj = (means - mu) @ v[:, keep]  # C x r
    return float(np.sum((counts / n)[:, None] * proj**2 / w[keep][None, :]))


# ---------------------------------------------------------------------------------------- TransRate
def _coding_rate(z: NDArray[np.float64], eps: float) -> float:
    r""":math:`R(Z) = \frac12 \log\det(I + Z^\top Z / (n\epsilon))`, via the smaller Gram matrix
    (:math:`\det(I_D + Z^\top Z a) = \det(I_n + Z Z^\top a)`) and a Cholesky factor."""
    n, d = z.shape
    gram = z.T @ z if d <= n else z @ z.T
    m = gram / (n * eps)
    m[np.diag_indices(m.shape[0])] += 1.0
    chol = scipy.linalg.cholesky(m, lower=True, check_finite=False)
    return float(np.sum(np.log(np.diag(chol))))  # 1/2 * logdet = sum log diag(L)


def transrate(features: ArrayLike, labels: ArrayLike, *, eps: float = 1e-4) -> float:
    r"""TransRate (Huang et al., "Frustratingly Easy Transferability Estimation", ICML 2022).

    .. math::
        \mathrm{TransRate} = R(Z) - \frac1C\sum_{c=1}^C R(Z_c),\qquad
        R(Z) = \frac12 \log\det\!\left(I + \frac{1}{n\epsilon} Z^\top Z\right),

    with :math:`Z` the features centred by their overall mean, :math:`Z_c` its rows of class c
    (:math:`n = n_c` rows) and :math:`\epsilon` = ``eps`` (1e-4, as in the paper's code).  The
    coding rate depends on the feature scale through :math:`\epsilon`.  Every class needs at least 2
    samples.  Higher is better.
    """
    x, y, n_classes = check_inputs_numpy(features, labels, min_classes=2, min_per_class=2)
    eps = check_positive(eps, "eps")
    x = as_float64(x)
    z = x - x.mean(axis=0)
    rate = _coding_rate(z, eps)
    order = np.argsort(y, kind="stable")
    bounds = np.searchsorted(y[order], np.arange(n_classes + 1))
    class_rates = [
        _coding_rate(z[order[bounds[c] : bounds[c + 1]]], eps) for c in range(n_classes)
    ]
    return float(rate - np.mean(class_rates))
