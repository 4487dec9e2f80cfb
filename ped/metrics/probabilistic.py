r"""Probabilistic metrics: LEEP (Nguyen et al., ICML 2020), NLEEP (Li et al., CVPR 2021) and NCE
(Tran et al., ICCV 2019)."""

from __future__ import annotations

import logging
import warnings

import numpy as np
from numpy.typing import ArrayLike, NDArray

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
    fit ``sklearn.mixture.GaussianMixture`` with :math:`K` = ``component_ratio`` x C components,
    and take its posteriors :math:`\theta_k(x_i) = P(k \mid x_i)` as :math:`\theta` in

    .. math::
        \mathrm{NLEEP} = \frac1N\sum_i \log \sum_{k=1}^{K} \hat P(y_i \mid k)\,\theta_k(x_i).

    Higher is better.

    Parameters
    ----------
    component_ratio : mixture components per class; 5 in the paper and the released code, which
        uses 1 for Food-101 and Oxford Pets.
    variance : fraction of variance kept by the PCA (exact PCA, sklearn's selection rule).
    covariance_type : passed to ``GaussianMixture``; ``"full"`` (sklearn's default, used by the
        released code) is slow with hundreds of components, ``"diag"`` is much cheaper.
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
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    reduced = pca_scores(as_float64(x), variance=variance)
    logger.debug("NLEEP: %d PCA dims, %d components", reduced.shape[1], n_components)
    gmm = GaussianMixture(
        n_components=n_components,
        covariance_type=covariance_type,
        random_state=random_state,
        max_iter=max_iter,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        gmm.fit(reduced)
    for w in caught:
        logger.warning("NLEEP: %s", w.message)
    theta = gmm.predict_proba(reduced)
    return leep_from_posteriors(theta, y, n_classes, log=log)
