r"""Class-separation metrics: GBC (Pándy et al., CVPR 2022) and PARC (Bolya et al., NeurIPS 2021)."""

from __future__ import annotations

import logging

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import rankdata

from ped._validation import check_nonnegative, check_positive_int
from ped.metrics._common import (
    as_float64,
    check_inputs,
    check_inputs_numpy,
    class_stats,
    class_variances,
    max_square,
    pca_scores,
    to_float64,
)

__all__ = ["gbc", "parc"]

logger = logging.getLogger(__name__)

_BLOCK_ELEMENTS = 1 << 21  # largest (rows x C x D) temporary of the diagonal GBC, ~16 MB
#: The absolute floor that google-research's ``stable_transfer`` GBC puts under every
#: per-dimension class variance (``variant="reference"``).
REFERENCE_VARIANCE_FLOOR = 1e-4


# ---------------------------------------------------------------------------------------------- GBC
def _bhattacharyya_distances(
    means: NDArray[np.float64], var: NDArray[np.float64], covariance: str,
    logdet_dims: int | None = None,
) -> NDArray[np.float64]:
    r"""C x C Bhattacharyya distances between Gaussians N(mu_i, diag(var_i)).

    .. math::
        D_B(i, j) = \frac18 (\mu_i-\mu_j)^\top \Sigma^{-1} (\mu_i-\mu_j)
            + \frac12 \log\frac{\det\Sigma}{\sqrt{\det\Sigma_i\det\Sigma_j}},\qquad
        \Sigma = \tfrac12(\Sigma_i+\Sigma_j).

    ``spherical``: ``var`` is (C,) (one variance per class, :math:`\Sigma_i = v_i I`) and the
    distances are matrix products; the log-determinant term is
    :math:`\frac{k}{2}\log\frac{\bar v}{\sqrt{v_i v_j}}` with :math:`k` = ``logdet_dims``
    (default D, the textbook value; 1 reproduces ``stable_transfer``).  ``diagonal``: ``var`` is (C, D); the pairwise sums are formed in
    blocks of rows so no C x C x D array is ever held.
    """
    c, d = means.shape
    if covariance == "spherical":
        sq = np.einsum("cd,cd->c", means, means)
        dist2 = np.clip(sq[:, None] + sq[None, :] - 2.0 * (means @ means.T), 0.0, None)
        s = 0.5 * (var[:, None] + var[None, :])
        logv = np.log(var)
        k = d if logdet_dims is None else logdet_dims
        return dist2 / (8.0 * s) + 0.5 * k * (np.log(s) - 0.5 * (logv[:, None] + logv[None, :]))
    logv_sum = np.log(var).sum(axis=1)
    out = np.empty((c, c))
    step = max(1, _BLOCK_ELEMENTS // max(1, c * d))
    for start in range(0, c, step):
        stop = min(c, start + step)
        s = 0.5 * (var[start:stop, None, :] + var[None, :, :])  # block x C x D
        diff2 = (means[start:stop, None, :] - means[None, :, :]) ** 2
        out[start:stop] = 0.125 * np.sum(diff2 / s, axis=2) + 0.5 * (
            np.log(s).sum(axis=2) - 0.5 * (logv_sum[start:stop, None] + logv_sum[None, :])
        )
    return out


def gbc(
    features: ArrayLike,
    labels: ArrayLike,
    *,
    covariance: str = "diagonal",
    pca_dims: int | None = 64,
    reg: float = 1e-6,
    variant: str = "textbook",
) -> float:
    r"""Gaussian Bhattacharyya Coefficient (Pándy et al., "Transferability Estimation using
    Bhattacharyya Class Separability", CVPR 2022).

    Each class is modelled as a Gaussian :math:`\mathcal N(\mu_c, \Sigma_c)` (maximum-likelihood
    mean and variances, ddof 0) and

    .. math::
        \mathrm{GBC} = -\sum_{i=1}^C \sum_{j\ne i} \mathrm{BC}(i, j),\qquad
        \mathrm{BC}(i, j) = e^{-D_B(i, j)},

    with :math:`D_B` the Bhattacharyya distance (see ``_bhattacharyya_distances``).  The score
    is at most 0; higher (closer to 0) means better separated classes.  Cost O(C^2 D).

    Parameters
    ----------
    features : (N, D) floating array, or a floating ``torch.Tensor`` on any device: the passes
        over the samples (PCA's Gram matrix and projection, class means and variances) then run
        in torch float64 on that device, the PCA eigen-decomposition and the C x C distances in
        numpy; the result matches the numpy path to float64 round-off.
    labels : (N,) integers 0..C-1 (numpy array, sequence or tensor).
    covariance : ``"diagonal"`` (default; per-dimension variances) or ``"spherical"`` (one variance
        per class, the mean of its per-dimension variances).
    pca_dims : project onto the top ``pca_dims`` principal components first (exact PCA, the
        paper's 64 by default) when D is larger; ``None`` keeps the features as they are.
    reg : ``reg`` times the mean per-dimension within-class variance is added to every variance,
        so constant or duplicated dimensions stay finite (scale invariant); 0 disables it.
        Not used by ``variant="reference"``.
    variant : ``"textbook"`` (default): the Bhattacharyya distance of the Gaussians as written
        above; for ``spherical`` :math:`\Sigma_i = v_i I_D`, whose log-determinant term is
        :math:`\frac D2 \log(\bar v / \sqrt{v_i v_j})`.  The score is invariant to a global
        rescaling of the features.  ``"reference"``: as Pándy et al.'s code computes it
        (google-research ``stable_transfer/transferability/gbc.py``): every per-dimension variance
        floored at ``REFERENCE_VARIANCE_FLOOR`` (``1e-4``, absolute), the spherical variance
        their mean, and the spherical log-determinant term counted once,
        :math:`\frac12 \log(\bar v / \sqrt{v_i v_j})`, as if the features had one dimension.
        The absolute floor makes this variant depend on the feature scale: features whose
        variances fall below ``1e-4`` (small-norm encoders) have their classes widened.

    Every class needs at least 2 samples.
    """
    if covariance not in ("diagonal", "spherical"):
        raise ValueError(f"covariance must be 'diagonal' or 'spherical', got {covariance!r}")
    if variant not in ("textbook", "reference"):
        raise ValueError(f"variant must be 'textbook' or 'reference', got {variant!r}")
    x, y, n_classes = check_inputs(features, labels, min_classes=2, min_per_class=2)
    if pca_dims is not None:
        pca_dims = check_positive_int(pca_dims, "pca_dims")
    reg = check_nonnegative(reg, "reg")
    x = to_float64(x)
    if pca_dims is not None and x.shape[1] > pca_dims:
        x = pca_scores(x, n_components=pca_dims)
    counts, means = class_stats(x, y, n_classes)
    var = class_variances(x, y, means, counts)
    if variant == "reference":
        var = np.maximum(var, REFERENCE_VARIANCE_FLOOR)
        if covariance == "spherical":
            var = var.mean(axis=1)
    else:
        floor = reg * float(var.mean())
        if covariance == "spherical":
            var = var.mean(axis=1)
        var = var + floor
    # a class whose samples coincide has zero variance up to round-off
    if not np.all(var > 1e-24 * max_square(x)):
        raise ValueError(
            "GBC: a class has zero variance (constant or duplicated samples); use reg > 0"
        )
    logdet_dims = 1 if variant == "reference" else None
    dist = _bhattacharyya_distances(means, var, covariance, logdet_dims)
    bc = np.exp(-dist)
    np.fill_diagonal(bc, 0.0)
    return float(-bc.sum())


# --------------------------------------------------------------------------------------------- PARC
def _stratified_subsample(
    y: NDArray[np.intp], n_classes: int, max_samples: int, rng: np.random.Generator
) -> NDArray[np.intp]:
    """Sorted indices of a stratified sample of about ``max_samples`` rows.

    Class c keeps ``floor(max_samples * n_c / N)`` rows, but at least ``min(n_c, 2)`` (so that every
    class still has a same-class pair), drawn without replacement.
    """
    n = y.shape[0]
    counts = np.bincount(y, minlength=n_classes)
    take = np.minimum(counts, np.maximum(2, (max_samples * counts) // n))
    order = np.argsort(y, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(counts)])
    chosen = [
        rng.choice(order[bounds[c] : bounds[c + 1]], size=int(take[c]), replace=False)
        for c in range(n_classes)
    ]
    return np.sort(np.concatenate(chosen))


def parc(
    features: ArrayLike,
    labels: ArrayLike,
    *,
    pca_dims: int | None = 32,
    max_samples: int | None = 5000,
    random_state: int | None = 0,
) -> float:
    r"""Pairwise Annotation Representation Comparison (Bolya et al., "Scalable Diverse Model
    Selection for Accessible Transfer Learning", NeurIPS 2021).

    .. math::
        \mathrm{PARC} = 100\cdot\rho_{\mathrm{Spearman}}\!\left(
            \operatorname{triu}\!\left(1 - \operatorname{corr}(\tilde F)\right),\;
            \operatorname{triu}\!\left(1 - \operatorname{corr}(Y_{\text{one-hot}})\right)\right),

    where :math:`\tilde F` is the features projected on their top ``pca_dims`` principal
    components (exact PCA; skipped when D <= pca_dims) and standardised per dimension,
    :math:`\operatorname{corr}` is the N x N matrix of Pearson correlations between samples (rows),
    and triu keeps the N(N-1)/2 entries above the diagonal.  The label dissimilarity takes two
    values (0 for a same-class pair, C/(C-1) otherwise), so the Spearman correlation equals the
    Pearson correlation between the ranks of the feature dissimilarities and the different-class
    indicator (computed that way).  Range [-100, 100]; higher is better.

    Parameters
    ----------
    max_samples : when N is larger, score a seeded stratified subsample of about this many rows
        (time and memory are O(max_samples^2)); ``None`` uses every sample.
    random_state : seed of the subsample (an int, or ``None`` for fresh entropy).

    A sample whose standardised feature vector is constant has an undefined correlation; it is
    treated as uncorrelated (dissimilarity 1) with every other sample.
    """
    x, y, n_classes = check_inputs_numpy(features, labels, min_classes=2, min_per_class=1)
    if pca_dims is not None:
        pca_dims = check_positive_int(pca_dims, "pca_dims")
    if max_samples is not None:
        max_samples = check_positive_int(max_samples, "max_samples")
    if max_samples is not None and x.shape[0] > max_samples:
        idx = _stratified_subsample(y, n_classes, max_samples, np.random.default_rng(random_state))
        x, y = x[idx], y[idx]
        logger.debug("PARC: scoring a stratified subsample of %d samples", idx.shape[0])
    if np.bincount(y).max() < 2:
        raise ValueError("PARC needs at least one class with 2 or more samples")
    x = as_float64(x)
    if pca_dims is not None and x.shape[1] > pca_dims:
        x = pca_scores(x, n_components=pca_dims)
    std = x.std(axis=0)
    z = (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)
    z = z - z.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(z, axis=1, keepdims=True)
    z = np.divide(z, norm, out=np.zeros_like(z), where=norm > 0)
    iu, ju = np.triu_indices(z.shape[0], 1)
    dissim = 1.0 - (z @ z.T)[iu, ju]
    different = (y[iu] != y[ju]).astype(np.float64)
    del iu, ju
    ranks = rankdata(dissim)
    del dissim
    ranks -= ranks.mean()
    different -= different.mean()
    denom = np.sqrt(np.dot(ranks, ranks) * np.dot(different, different))
    if denom == 0.0:
        return 0.0  # every pairwise feature dissimilarity is equal: no ordering information
    return float(100.0 * np.dot(ranks, different) / denom)
