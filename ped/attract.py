r"""Spread/Attract (SA): the feature perturbation of Khoba, Wang, Arora and Baktashmotlagh,
"Feature Space Perturbation: A Panacea to Enhanced Transferability Estimation", WACV 2025,
pp. 1299-1308, arXiv 2502.16471 (code ``prafful-kumar/enhancing_TE``).

Like PED, SA moves the target features of a model before an ordinary transferability metric scores
them; unlike PED, it blurs the classes instead of separating them.  *Spread* pushes every sample
away from its class mean (more within-class variability), *Attract* moves each class along the
line to every other class by an amount proportional to how far the pair is from the contact
distance of its two balls.

With the same ball radii (:math:`\sigma = \lambda = 0.6` times the root total within-class
variance) and the same step constant (SA's :math:`\alpha = 0.005` equals PED's
:math:`\tfrac12 t^2 k` at ``time_step=0.1``, ``k=1``), one Attract step and one PED step are

.. math::
    \Delta\mu_i^{SA} = -\alpha \sum_{j\ne i} \tilde x_{ij}\, n_{ij},\qquad
    \Delta\mu_i^{PED} = +\tfrac12 t^2 k \sum_{j\ne i} \max(0, x_{ij})\, n_{ij},

with :math:`n_{ij} = (\mu_i-\mu_j)/d_{ij}` and the overlap :math:`\tilde x_{ij} = \sigma(R_i+R_j) -
d_{ij}` (PED: :math:`x_{ij}` with :math:`r_i = \lambda R_i`), so the two make a controlled pair:
overlapping classes are pulled together by SA and pushed apart by PED.  The differences beyond the
sign are listed in :func:`ped.spread_attract`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ped._validation import (
    check_features,
    check_features_labels,
    check_nonnegative,
    check_positive,
    check_positive_int,
)
from ped.dynamics import class_statistics, pairwise_overlap
from ped.metrics._common import centre, eigh_descending, gram, outer_gram, pca_scores

__all__ = ["GATE_THRESHOLD", "SAResult", "sa_gate_statistic", "spread_attract"]

logger = logging.getLogger(__name__)

#: The released code perturbs only when the mean of the two largest covariance eigenvalues
#: exceeds this, i.e. when SFDA's shrinkage :math:`e^{-5\bar\lambda}` is below :math:`10^{-9}`.
GATE_THRESHOLD = float(np.log(1e9) / 5.0)


@dataclass(frozen=True)
class SAResult:
    """Outcome of :func:`ped.spread_attract`.

    Attributes
    ----------
    features : ndarray, shape (N, p) or (N, D)
        The perturbed features: PCA scores (p = min(pca_dims, N, D) columns) when ``applied``,
        otherwise a copy of the input (the released code returns the input untouched).  In the
        input's floating dtype.
    applied : bool
        Whether the perturbation was applied (see ``gate``).
    gate_statistic : float
        Mean of the two largest eigenvalues of the input's (biased) covariance.
    shift : ndarray, shape (C, p)
        The Attract translation of each class (zeros when not applied).
    radii : ndarray, shape (C,)
        :math:`R_c = \\sqrt{\\sum_d \\mathrm{var}_{cd}}` of the classes the Attract step saw
        (after Spread; zeros when not applied).
    """

    features: NDArray[np.floating]
    applied: bool
    gate_statistic: float
    shift: NDArray[np.float64]
    radii: NDArray[np.float64]


def sa_gate_statistic(features: ArrayLike) -> float:
    """Mean of the two largest eigenvalues of the (biased, ddof 0) covariance of ``features``
    (the largest one alone when D = 1)."""
    x = np.asarray(check_features(features), dtype=np.float64)
    xc = centre(x)
    n, d = x.shape
    k = min(2, d, n)
    w, _ = eigh_descending(gram(xc) if d <= n else outer_gram(xc), k)
    return float(np.mean(w[:k]) / n)


def spread_attract(
    features: ArrayLike,
    labels: ArrayLike,
    *,
    alpha: float = 0.005,
    sigma: float = 0.6,
    spread: float = 0.0,
    pca_dims: int = 64,
    gate: bool = True,
) -> SAResult:
    r"""Perturb target features by Spread/Attract (Khoba et al., WACV 2025).

    1. Gate (``gate=True``, the released code): perturb only if the mean of the two largest
       covariance eigenvalues exceeds ``GATE_THRESHOLD`` (:math:`\ln 10^9 / 5 \approx 4.14`);
       otherwise return the features unchanged (``applied=False``).
    2. PCA: project on the top ``pca_dims`` = 64 principal components (exact PCA, clipped to
       min(N, D); the released code uses a randomized PCA with a fixed seed).  The result lives
       in this space, not in the input's.
    3. Spread: :math:`z_i \leftarrow z_i + s\,(z_i-\mu_{y_i})/\lVert z_i-\mu_{y_i}\rVert` with
       :math:`s` = ``spread`` (a sample at its class mean stays).  Default 0: the released code
       computes the spread with force 1 and then discards it (its Attract step is applied to
       the unspread PCA features), so its published numbers come from Attract alone;
       ``spread=1.0`` gives the pipeline the paper describes.
    4. Attract: every class is translated rigidly by

       .. math::
           \Delta\mu_i = \alpha \sum_{j \ne i} \bigl(d_{ij} - \sigma(R_i + R_j)\bigr)\,
               \frac{\mu_i - \mu_j}{d_{ij}},\qquad R_i = \sqrt{\textstyle\sum_d \mathrm{var}_{id}},

       with means, variances (ddof 0) and distances of the (spread) PCA features; one step,
       ``alpha`` = 0.005 and ``sigma`` = 0.6 as in the released code.  This is the released
       code's sign: a pair closer than :math:`\sigma(R_i+R_j)` is pulled together, a pair
       farther apart is pushed apart (towards neither: away from the contact distance).

    How it differs from :func:`ped.potential_energy_descent`:

    - direction: on overlapping pairs the class moves are opposite to PED's (PED repels them);
      PED leaves separated pairs alone, Attract pushes them further apart; the Attract amount is
      the signed, unclipped overlap.
    - what is moved: PED translates classes rigidly in the standardised input space and returns
      features in the input's units and dimensions; SA works unstandardised in a 64-D PCA space,
      returns features there, and Spread (when on) moves each sample separately.
    - iterations: one Attract step, versus PED's up to 6 steps with an early exit.
    - gate: SA is skipped entirely for small-scale features; PED has no such rule.
    - hyperparameters: ``sigma`` plays PED's ``nsigma`` (both 0.6), ``alpha`` PED's
      :math:`\tfrac12 t^2 k` (both 0.005).

    Parameters
    ----------
    features : (N, D) floating array (numpy only).  Not modified.
    labels : (N,) integers 0..C-1, C >= 2.
    alpha, sigma : positive floats (defaults 0.005 and 0.6).
    spread : non-negative float, default 0 (see step 3).
    pca_dims : positive int, default 64.
    gate : apply the released code's gate (default) or always perturb.

    Not scale invariant: the gate and the Attract amounts (through the fixed :math:`\alpha`
    acting on distances) depend on the feature scale; the Attract shift itself is equivariant
    (scaling the features by c scales the shift by c), and the outcome is invariant to sample
    order and to the numbering of the classes.
    """
    x, y, n_classes = check_features_labels(features, labels, min_classes=2, min_per_class=1)
    alpha = check_positive(alpha, "alpha")
    sigma = check_positive(sigma, "sigma")
    spread = check_nonnegative(spread, "spread")
    pca_dims = check_positive_int(pca_dims, "pca_dims")
    if not isinstance(gate, (bool, np.bool_)):
        raise ValueError(f"gate must be True or False, got {gate!r}")
    statistic = sa_gate_statistic(x)
    if gate and not statistic > GATE_THRESHOLD:
        logger.debug("SA: gate statistic %.4g <= %.4g, features left unchanged", statistic,
                     GATE_THRESHOLD)
        return SAResult(
            features=x.copy(),
            applied=False,
            gate_statistic=statistic,
            shift=np.zeros((n_classes, x.shape[1])),
            radii=np.zeros(n_classes),
        )

    z = np.asarray(pca_scores(np.asarray(x, dtype=np.float64), n_components=pca_dims))
    if spread > 0:
        stats = class_statistics(z, y, n_classes)
        offset = z - stats.means[y]
        norm = np.linalg.norm(offset, axis=1, keepdims=True)
        z = z + spread * np.divide(offset, norm, out=np.zeros_like(offset), where=norm > 0)
    stats = class_statistics(z, y, n_classes)
    radii = np.sqrt(stats.total_variance)
    _, dist = pairwise_overlap(stats.means, np.zeros(n_classes))
    off_diagonal = ~np.eye(n_classes, dtype=bool)
    if np.any(dist[off_diagonal] == 0.0):
        i, j = np.argwhere((dist == 0.0) & off_diagonal)[0]
        raise ValueError(
            f"classes {i} and {j} have the same mean: the direction of their attraction is "
            "undefined (are two classes duplicates of each other?)"
        )
    amount = dist - sigma * (radii[:, None] + radii[None, :])
    weight = np.divide(alpha * amount, dist, out=np.zeros_like(dist), where=off_diagonal)
    shift = weight.sum(axis=1)[:, None] * stats.means - weight @ stats.means
    moved = (z + shift[y]).astype(x.dtype, copy=False)
    return SAResult(
        features=moved, applied=True, gate_statistic=statistic, shift=shift, radii=radii
    )
