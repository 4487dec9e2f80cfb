r"""LogME: the logarithm of the maximum evidence (You et al., ICML 2021).

For each class :math:`c` the one-hot target column :math:`y^{(c)} \in \{0,1\}^N` is regressed on
the features :math:`F \in \mathbb R^{N\times D}` by Bayesian linear regression with prior
:math:`w \sim \mathcal N(0, \alpha^{-1} I_D)` and noise :math:`y \mid w \sim \mathcal N(Fw,
\beta^{-1} I_N)`.  The evidence (marginal likelihood) is

.. math::
    \mathcal L(\alpha, \beta) = \log \mathcal N\!\left(y \mid 0,\ \beta^{-1} I_N
        + \alpha^{-1} F F^\top\right)
    = \frac N2 \log\beta + \frac D2 \log\alpha - \frac N2 \log 2\pi
      - \frac\beta2 \lVert F m - y\rVert^2 - \frac\alpha2 m^\top m - \frac12 \log\lvert A\rvert,

with :math:`A = \alpha I + \beta F^\top F` and :math:`m = \beta A^{-1} F^\top y`.  It is maximised
by MacKay's fixed point

.. math::
    \gamma = \sum_i \frac{\beta\sigma_i}{\alpha + \beta\sigma_i},\qquad
    \alpha \leftarrow \frac{\gamma}{m^\top m},\qquad
    \beta \leftarrow \frac{N - \gamma}{\lVert F m - y\rVert^2},

where :math:`\sigma_i` are the eigenvalues of :math:`F^\top F`.  With the decomposition
:math:`F = U \operatorname{diag}(\sqrt\sigma) V^\top` computed once and :math:`x = U^\top y`,
every quantity is a sum over the spectrum: with :math:`t = \alpha/\beta`,
:math:`m^\top m = \sum_i \sigma_i x_i^2/(t+\sigma_i)^2` and
:math:`\lVert Fm - y\rVert^2 = \sum_i t^2 x_i^2/(t+\sigma_i)^2 + (\lVert y\rVert^2 - \sum_i x_i^2)`.
LogME is the maximised evidence divided by :math:`N`, averaged over the :math:`C` classes.

Features may be a ``torch.Tensor`` (CPU or CUDA): the passes over the samples (the Gram matrix
and :math:`F^\top Y`) then run in torch float64 on its device, and the spectrum and fixed point
in float64 numpy on the small D x D (or N x N) matrix, as for numpy input.
"""

from __future__ import annotations

import logging

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ped._backend import is_torch
from ped._validation import check_positive, check_positive_int
from ped.metrics._common import (
    _like,
    Features,
    check_inputs,
    class_indicator,
    class_sums,
    eigh_descending,
    eigh_project,
    gram,
    outer_gram,
    to_float64,
)

__all__ = ["logme"]

logger = logging.getLogger(__name__)


def _spectrum(
    f: Features, y: NDArray[np.intp], n_classes: int, weights: NDArray[np.float64] | None = None
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Return ``(sigma (k,), x (k, C))``: the non-zero eigenvalues of F^T F and U^T Y.

    ``f`` is a float64 numpy array or tensor; only the Gram matrix and the class sums touch it.
    With ``weights`` (N,) every row of F and of the one-hot Y is scaled by the square root of
    its weight, so that F^T F, F^T Y and Y^T Y are the weighted sums (an integer weight counts
    the row that many times).
    With N >= D the eigenvectors are never formed: :func:`~ped.metrics._common.eigh_project`
    carries the class sums into the eigenbasis during the tridiagonal reduction.  With N < D the
    N x N Gram matrix is decomposed as the released code does: there the features can fit the
    labels exactly, the fixed point may diverge, and where it stops depends on round-off, which
    another route would change.
    """
    n, d = f.shape
    root = None
    if weights is not None:
        root = np.sqrt(weights)[:, None]
        f = f * (_like(root, f) if is_torch(f) else root)
    if n >= d:
        # U^T Y = diag(1/sqrt(sigma)) V^T F^T Y; weighted, F^T Y = sum_i w_i f_i y_i^T, the
        # class sums of the scaled rows scaled once more
        fw = f if root is None else f * (_like(root, f) if is_torch(f) else root)
        sigma, vty = eigh_project(gram(f), class_sums(fw, y, n_classes).T)
        keep = _nonzero(sigma, max(n, d))
        return sigma[keep], vty[keep] / np.sqrt(sigma[keep])[:, None]
    sigma, u = eigh_descending(outer_gram(f))
    keep = _nonzero(sigma, max(n, d))
    sigma, u = sigma[keep], u[:, keep]
    # U^T Y, weighted: sum_i sqrt(w_i) y_i u_i^T
    x = np.asarray(class_indicator(y, n_classes) @ (u if root is None else u * root)).T
    return sigma, x


def _nonzero(sigma: NDArray[np.float64], size: int) -> NDArray[np.bool_]:
    """The eigenvalues (largest first) above round-off: ``sigma_0 * max(N, D) * eps``."""
    if sigma[0] <= 0:
        return np.zeros_like(sigma, dtype=bool)
    return sigma > sigma[0] * size * np.finfo(np.float64).eps


def _check_weights(weights: ArrayLike, y: NDArray[np.intp], n_classes: int) -> NDArray[np.float64]:
    """``sample_weight`` as float64 (N,): finite, non-negative, a positive total in every class."""
    try:
        w = np.array(weights, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"sample_weight must be numbers: {exc}") from None
    if w.shape != y.shape:
        raise ValueError(f"sample_weight must have shape {y.shape} (one weight per image), got {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("sample_weight must be finite and non-negative")
    empty = np.flatnonzero(np.bincount(y, weights=w, minlength=n_classes) <= 0)
    if empty.size:
        raise ValueError(f"sample_weight gives class(es) {empty.tolist()} a total weight of 0")
    return w


def _evidence_terms(sigma, x2, y2, alpha, beta):
    """Per-class ``(gamma, m^T m, ||Fm - y||^2, alpha * m^T m)`` at the given alpha, beta.

    Written with ratios bounded by 1 (``t / (sigma + t)``, ``sigma / (sigma + t)``) so that very
    large or small ``t = alpha / beta`` neither overflows nor loses the limit.
    """
    t = (alpha / beta)[None, :]
    denom = sigma[:, None] + t
    shrink = sigma[:, None] / denom  # in [0, 1)
    keep = t / denom  # 1 - shrink, computed without cancellation
    gamma = shrink.sum(axis=0)
    m2 = (shrink * x2 / denom).sum(axis=0)  # sum sigma x^2 / (sigma + t)^2
    alpha_m2 = beta * (shrink * keep * x2).sum(axis=0)  # alpha * m2, finite as alpha -> inf
    outside = np.clip(y2 - x2.sum(axis=0), 0.0, None)  # part of y orthogonal to range(F)
    res2 = (keep**2 * x2).sum(axis=0) + outside
    return gamma, m2, res2, alpha_m2


def _logme_fit(
    f: Features,
    y: NDArray[np.intp],
    n_classes: int,
    *,
    tol: float,
    max_iter: int,
    weights: NDArray[np.float64] | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Return per-class ``(evidence / N, alpha, beta)``, all of shape (C,); with ``weights``,
    N is their sum and every sum over the samples is weighted."""
    sigma, x = _spectrum(f, y, n_classes, weights)
    x2 = x**2
    # ||y^(c)||^2 = n_c
    y2 = np.bincount(y, weights=weights, minlength=n_classes).astype(np.float64)
    n = float(f.shape[0] if weights is None else weights.sum())
    alpha = np.ones(n_classes)
    beta = np.ones(n_classes)
    active = np.ones(n_classes, dtype=bool)
    tiny = np.finfo(np.float64).tiny
    for _ in range(max_iter):
        if not active.any():
            break
        a, b = alpha[active], beta[active]
        gamma, m2, res2, _ = _evidence_terms(sigma, x2[:, active], y2[active], a, b)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            # m^T m = 0 (labels orthogonal to the features) leaves alpha unidentified: keep it
            new_a = np.where(m2 > tiny, gamma / np.maximum(m2, tiny), a)
            new_b = (n - gamma) / np.maximum(res2, tiny)
        ok = np.isfinite(new_a) & np.isfinite(new_b) & (new_a > 0) & (new_b > 0)
        # a diverging alpha or beta (no finite maximiser) stops that class at its last finite value
        new_a, new_b = np.where(ok, new_a, a), np.where(ok, new_b, b)
        t_old, t_new = a / b, new_a / new_b
        alpha[active], beta[active] = new_a, new_b
        done = (np.abs(t_new - t_old) <= tol * t_old) | ~ok
        idx = np.flatnonzero(active)
        active[idx[done]] = False
    if active.any():
        logger.debug("LogME: %d class(es) not converged after %d iterations", active.sum(), max_iter)
    gamma, m2, res2, alpha_m2 = _evidence_terms(sigma, x2, y2, alpha, beta)
    # D/2 log(alpha) - 1/2 log|A|, with log|A| over all D eigenvalues of A (the D - k zero
    # eigenvalues of F^T F contribute log alpha):  = -1/2 sum_i log(1 + sigma_i / t)
    # log(1 + sigma / t); where sigma / t overflows (t tiny: features that fit the labels
    # exactly, N <= D, send beta towards infinity) as log(sigma + t) - log(t), which is finite
    t = np.maximum(alpha / beta, tiny)[None, :]
    with np.errstate(over="ignore"):
        ratio = sigma[:, None] / t
        big = ~np.isfinite(ratio)
        log_ratio = np.where(big, np.log(sigma[:, None] + t) - np.log(t),
                             np.log1p(np.where(big, 0.0, ratio))).sum(axis=0)  # fmt: skip
    evidence = (
        0.5 * n * np.log(beta)
        - 0.5 * n * np.log(2.0 * np.pi)
        - 0.5 * beta * res2
        - 0.5 * alpha_m2
        - 0.5 * log_ratio
    )
    return evidence / n, alpha, beta


def logme(
    features: ArrayLike,
    labels: ArrayLike,
    *,
    tol: float = 1e-3,
    max_iter: int = 11,
    sample_weight: ArrayLike | None = None,
) -> float:
    r"""LogME score (You et al., "LogME: Practical Assessment of Pre-trained Models for Transfer
    Learning", ICML 2021).

    .. math::
        \mathrm{LogME}(F, Y) = \frac1C \sum_{c=1}^{C} \frac1N
            \max_{\alpha,\beta>0} \log p\!\left(y^{(c)} \mid F, \alpha, \beta\right)

    (see the module docstring for the evidence and the fixed point).  One eigen-decomposition of the
    smaller Gram matrix (``F^T F`` or ``F F^T``) serves every class; the fixed point is iterated for
    all classes at once.  Higher is better; the value is usually negative.

    Parameters
    ----------
    features : (N, D) floating array, or a floating ``torch.Tensor`` on any device (the Gram
        matrix and class sums are then computed in float64 on that device, the rest in numpy;
        the result matches the numpy path to float64 round-off).
    labels : (N,) integers 0..C-1, C >= 2 (numpy array, sequence or tensor).
    tol : stop a class when ``|t_new - t| <= tol * t`` with ``t = alpha / beta``.
    max_iter : at most this many fixed-point updates per class.
        The defaults (``tol=1e-3, max_iter=11``) are those of the authors' released LogME; the
        evidence is stationary at the fixed point, so tighter values change the score only in the
        second order (use e.g. ``tol=1e-10, max_iter=1000`` for a fully converged value).
    sample_weight : (N,) non-negative finite weights, or None (every image once).  Every sum over
        the images is weighted and N becomes the total weight, so an integer weight counts its
        image that many times: ``logme(F[u], y[u], sample_weight=counts)`` equals ``logme`` of
        ``F`` and ``y`` with image ``u[i]`` repeated ``counts[i]`` times (to round-off), at the
        cost of the distinct images only.  This is how :func:`ped.rank.rank_models` scores a
        bootstrap resample.  Every class needs a positive total weight.  (Where the features
        can fit the labels exactly, with no more distinct images than their rank, the fixed
        point may diverge: both values are then where it stopped, and they may differ.)

    Notes
    -----
    The evidence is evaluated in closed form at the final ``(alpha, beta)``, with
    :math:`\log|A|` summed over all D eigenvalues (zero eigenvalues of :math:`F^\top F` contribute
    :math:`\log\alpha`).  The released code sums only the non-zero ones, so for rank-deficient
    features (e.g. N < D) its value differs from the true evidence; for full-rank features
    (N > D, the usual case) the two agree.  No epsilon is added to the denominators.
    """
    x, y, n_classes = check_inputs(features, labels, min_classes=2, min_per_class=1)
    tol = check_positive(tol, "tol")
    max_iter = check_positive_int(max_iter, "max_iter")
    weights = None if sample_weight is None else _check_weights(sample_weight, y, n_classes)
    evidence, _, _ = _logme_fit(to_float64(x), y, n_classes, tol=tol, max_iter=max_iter,
                                weights=weights)  # fmt: skip
    return float(np.mean(evidence))
