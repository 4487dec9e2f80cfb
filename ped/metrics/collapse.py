r"""Neural-collapse metric: NCTI (Wang, Luo, Zheng, Huang and Baktashmotlagh, "How Far Pre-trained
Models Are from Neural Collapse on the Target Dataset Informs their Transferability", ICCV 2023,
pp. 5549-5558; code ``BUserName/NCTI``).

NCTI measures how far the target features of a pre-trained model are from the *neural collapse*
geometry that fine-tuning drives them to (Papyan et al., PNAS 2020), through three proxies computed
in a linear-discriminant space of the features:

- SELI (simplex-encoded-label interpolation): the nuclear norm of the centred discriminant
  projections, large when the class means span a well-spread simplex;
- NCC (nearest-centre classifier): the mean LDA posterior of the true class;
- VC (within-class variability collapse): the log of the summed per-class nuclear norms of the
  posterior matrices, small when the samples of a class all receive the same posterior.

The NCTI score of a model is :math:`\widehat{S}_{seli} + \widehat{S}_{ncc} - \widehat{S}_{vc}` with
each term min-max normalised over the zoo being ranked (:func:`ncti_combine`), so it is defined
only relative to the other models; :func:`ncti_terms` gives one model's three raw terms.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import scipy.linalg
from numpy.typing import ArrayLike, NDArray
from scipy.special import softmax

from ped._validation import check_positive_int
from ped.metrics._common import (
    as_float64,
    check_inputs_numpy,
    class_stats,
    eigh_descending,
    pca_scores,
)
from ped.metrics._zoo import minmax_columns

__all__ = ["NCTITerms", "ncti_terms", "ncti_combine"]

#: Shrinkage at or below which the released code switches to the unregularised (SVD) LDA.
_SHRINKAGE_FLOOR = 1e-10


class NCTITerms(NamedTuple):
    """The three raw NCTI terms of one model: ``seli`` and ``ncc`` higher-is-better, ``vc``
    lower-is-better (it enters :func:`ncti_combine` with a minus sign)."""

    seli: float
    ncc: float
    vc: float


def _shrunk_covariance(x: NDArray[np.float64], shrinkage: float) -> NDArray[np.float64]:
    r"""Biased covariance of ``x`` shrunk towards a multiple of the identity,
    :math:`(1-s)\,\Sigma + s\,\tfrac{\operatorname{tr}\Sigma}{d}\,I` (the covariance
    ``sklearn``'s ``LinearDiscriminantAnalysis(solver="eigen", shrinkage=s)`` uses for a float
    ``s``, and the form SFDA uses)."""
    xc = x - x.mean(axis=0)
    cov = xc.T @ xc / x.shape[0]
    out = (1.0 - shrinkage) * cov
    out[np.diag_indices_from(out)] += shrinkage * np.trace(cov) / cov.shape[0]
    return out


def _lda(
    x: NDArray[np.float64], y: NDArray[np.intp], n_classes: int, shrinkage: float | None
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    r"""Linear discriminant: ``(coef (C, d), intercept (C,), scalings (d, m))``.

    ``shrinkage`` a float: within-class covariance :math:`S_w = \sum_c \pi_c \Sigma_c^{(s)}` and
    between-class :math:`S_b = \Sigma^{(s)} - S_w` from shrunk covariances (see
    ``_shrunk_covariance``).  ``None``: no shrinkage, :math:`S_w` the pooled within-class scatter
    divided by N (as the SVD solver of scikit-learn 1.9 does) and
    :math:`S_b = \sum_c \pi_c(\mu_c-\bar x)(\mu_c-\bar x)^\top`.  The
    scalings are the top :math:`m = \min(C-1, d)` solutions of :math:`S_b v = \lambda S_w v`
    normalised by :math:`V^\top S_w V = I`, and the classifier is
    :math:`w_c = S_w^{+}\mu_c`, :math:`b_c = -\tfrac12\mu_c^\top w_c + \log\pi_c`.  These are
    the posteriors and projections of ``sklearn``'s eigen solver (with shrinkage) and of its SVD
    solver (without), up to the sign of each projection axis.
    """
    n, d = x.shape
    counts, means = class_stats(x, y, n_classes)
    priors = counts / n
    if shrinkage is None:
        xc = x - means[y]
        s_w = xc.T @ xc / n
        dev = means - x.mean(axis=0)
        s_b = (dev * priors[:, None]).T @ dev
    else:
        order = np.argsort(y, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(counts.astype(np.intp))])
        s_w = np.zeros((d, d))
        for c in range(n_classes):
            s_w += priors[c] * _shrunk_covariance(x[order[bounds[c] : bounds[c + 1]]], shrinkage)
        s_b = _shrunk_covariance(x, shrinkage) - s_w
    # whiten S_w (its range only: a singular S_w gets a pseudo-inverse), then diagonalise S_b
    w, u = eigh_descending(s_w)
    if not w[0] > 0:
        raise ValueError("NCTI: the within-class scatter is zero (constant features)")
    keep = w > w[0] * d * np.finfo(np.float64).eps
    whiten = u[:, keep] / np.sqrt(w[keep])
    coef = means @ whiten @ whiten.T
    intercept = -0.5 * np.einsum("cd,cd->c", means, coef) + np.log(priors)
    _, rot = eigh_descending(whiten.T @ s_b @ whiten)
    m = min(n_classes - 1, rot.shape[1])
    return coef, intercept, whiten @ rot[:, :m]


def ncti_terms(
    features: ArrayLike,
    labels: ArrayLike,
    *,
    pca_dims: int = 64,
    shrinkage_dims: int = 32,
) -> NCTITerms:
    r"""The three NCTI terms of one model's target features.

    1. PCA: :math:`Z` = the scores of the top ``pca_dims`` principal components (exact PCA,
       clipped to min(N, D); default 64, the released code's, where scikit-learn's ``auto``
       solver makes it a randomized PCA on large inputs).
    2. Shrinkage :math:`s = \max(e^{-\sum_{j\le 32}\lambda_j}, 10^{-10})`, :math:`\lambda_j` the
       explained variances (ddof 1) of the top ``shrinkage_dims`` = 32 components.  When
       :math:`s = 10^{-10}` (summed variance at least :math:`10\ln 10 \approx 23`, the usual case
       for deep features) the LDA is unregularised, as in the released code (sklearn's SVD
       solver); otherwise it is the shrunk LDA of sklearn's eigen solver (see ``_lda``).
    3. With :math:`P` the N x C LDA posteriors on :math:`Z` and :math:`H` the N x m discriminant
       projections (:math:`m = \min(C-1, d)`):

    .. math::
        S_{seli} = \lVert H - \bar H\rVert_*,\qquad
        S_{ncc} = \frac1N\sum_i P_{i,y_i},\qquad
        S_{vc} = \log \sum_{c=1}^C \lVert P_c\rVert_*,

    with :math:`\lVert\cdot\rVert_*` the nuclear norm (sum of singular values), :math:`\bar H`
    the row mean and :math:`P_c` the rows of class c.

    Returns an :class:`NCTITerms`; combine the terms of a zoo with :func:`ncti_combine`.  Scale:
    the unregularised LDA is invariant to rescaling the features (its posteriors, and its
    projections, which are whitened), so all three terms are unchanged by a common factor c as
    long as both the features and c times them take that branch; the shrunk branch, and the
    choice of branch, depend on the scale.  :math:`S_{seli}` grows like :math:`\sqrt N` (a sum
    of singular values of N whitened rows).  Every class needs at least 2
    samples.
    """
    x, y, n_classes = check_inputs_numpy(features, labels, min_classes=2, min_per_class=2)
    pca_dims = check_positive_int(pca_dims, "pca_dims")
    shrinkage_dims = check_positive_int(shrinkage_dims, "shrinkage_dims")
    z = pca_scores(as_float64(x), n_components=pca_dims)
    n = z.shape[0]
    explained = np.einsum("nd,nd->d", z, z) / (n - 1)  # PCA scores are centred
    shrinkage = max(float(np.exp(-explained[:shrinkage_dims].sum())), _SHRINKAGE_FLOOR)
    coef, intercept, scalings = _lda(
        z, y, n_classes, None if shrinkage <= _SHRINKAGE_FLOOR else shrinkage
    )
    h = z @ scalings
    seli = float(np.sum(scipy.linalg.svdvals(h - h.mean(axis=0))))
    post = softmax(z @ coef.T + intercept, axis=1)
    ncc = float(np.mean(post[np.arange(n), y]))
    order = np.argsort(y, kind="stable")
    bounds = np.searchsorted(y[order], np.arange(n_classes + 1))
    nuclear = sum(
        float(np.sum(scipy.linalg.svdvals(post[order[bounds[c] : bounds[c + 1]]])))
        for c in range(n_classes)
    )
    return NCTITerms(seli=seli, ncc=ncc, vc=float(np.log(nuclear)))


def ncti_combine(terms: Sequence[NCTITerms] | ArrayLike) -> NDArray[np.float64]:
    r"""NCTI scores of a zoo from its per-model terms.

    .. math::
        \mathrm{NCTI}_m = \widehat{S}_{seli}(m) + \widehat{S}_{ncc}(m) - \widehat{S}_{vc}(m),\qquad
        \widehat{S}(m) = \frac{S(m) - \min_{m'} S(m')}{\max_{m'} S(m') - \min_{m'} S(m')},

    over the M models of ``terms`` (an (M, 3) table of ``(seli, ncc, vc)``, e.g. a list of
    :class:`NCTITerms`), as in the released evaluation script; a term equal for every model
    normalises to 0.  Returns an (M,) array in [-1, 2]; higher is better, comparable only within
    one zoo.
    """
    norm = minmax_columns(terms, NCTITerms._fields)
    return norm[:, 0] + norm[:, 1] - norm[:, 2]
