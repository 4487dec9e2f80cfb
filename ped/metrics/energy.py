r"""Energy-based transferability: ETran (Gholami et al., "ETran: Energy-Based Transferability
Estimation", ICCV 2023, arXiv 2308.02027; code ``mgholamikn/ETran``).

ETran scores a model by how *in-distribution* the target images look to it -- the free energy
:math:`E(x) = -T\log\sum_d e^{f_d(x)/T}` of its features, low for familiar inputs -- plus a
linear-discriminant classification score.  It is PED's closest relative among the metrics: PED
reads the energy of a physical model of the class geometry, ETran the Helmholtz free energy of the
features read as logits.

The final ETran score is relative to the zoo: each term is min-max normalised over the models
being ranked and the normalised terms are mixed (:func:`etran_combine`).  The per-model terms are
:func:`energy_score` and :func:`lda_score` (:func:`etran_terms` returns both).  The paper also
defines an SVD regression score; the released evaluation (``tw.py``, metric ``etran``) combines
only the energy and classification terms, which is what is implemented here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import logsumexp

from ped._validation import check_features, check_positive
from ped.metrics._common import as_float64, check_inputs_numpy, class_stats, label_softmax
from ped.metrics._zoo import minmax_columns
from ped.metrics.discriminability import _fda_fit

__all__ = ["ETranTerms", "energy_score", "lda_score", "etran_terms", "etran_combine"]

Variant = Literal["paper", "official"]


class ETranTerms(NamedTuple):
    """The per-model terms of ETran (both higher-is-better)."""

    energy: float
    classification: float


def energy_score(
    features: ArrayLike, *, fraction: float = 0.005, temperature: float = 1.0
) -> float:
    r"""ETran's energy score: minus the mean free energy of the highest-energy samples.

    .. math::
        E_i = -T \log\sum_{d=1}^D e^{x_{id}/T},\qquad
        S_{en} = -\frac1m \sum_{i \in \mathcal T_m} E_i,

    with :math:`\mathcal T_m` the :math:`m = \max(1, \lfloor \text{fraction}\cdot N\rfloor)`
    samples of largest energy (smallest log-sum-exp): the features are read as the logits of an
    energy-based model (Liu et al., "Energy-based Out-of-distribution Detection", NeurIPS 2020)
    and the score summarises the least familiar tail of the target set.

    Defaults are the released code's (``Energy_Score(features, 0.5, 'bot')``): ``fraction`` 0.005
    (the bottom 0.5 %) and ``temperature`` 1.  The released code takes
    :math:`\lfloor 0.005 N\rfloor` samples, none (a NaN score) for N < 200; at least one is kept
    here.  Higher is better (lower energy: more in-distribution).

    Not scale invariant: scaling the features by c scales the score roughly by c (exactly, in the
    limit where one dimension dominates each log-sum-exp).  Labels are not used.
    """
    x = as_float64(check_features(features))
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    temperature = check_positive(temperature, "temperature")
    free = temperature * logsumexp(x / temperature, axis=1)  # -E_i
    m = max(1, int(np.floor(fraction * x.shape[0] + 1e-9)))
    return float(np.mean(np.partition(free, m - 1)[:m]))


def lda_score(
    features: ArrayLike, labels: ArrayLike, *, variant: Variant = "paper"
) -> float:
    r"""ETran's classification score: mean LDA posterior of the true class,
    :math:`S_{cls} = \frac1N \sum_i p(y_i \mid x_i)`, with
    :math:`p(c \mid x) = \operatorname{softmax}_c(x^\top w_c + b_c)`.

    ``variant="paper"`` (default): the linear discriminant the paper describes, with SFDA's
    regularised within-class covariance (see :func:`ped.metrics.sfda`, exact
    :math:`\lambda_{\max}`): :math:`w_c = \tilde S_w^{-1}\mu_c`,
    :math:`b_c = -\tfrac12\mu_c^\top w_c + \log\pi_c`.

    ``variant="official"``: what the released code computes.  It takes the eigenvectors of the
    non-symmetric :math:`\tilde S_w^{-1} S_b` with ``numpy.linalg.eigh``, which reads only one
    triangle and returns an orthogonal D x D matrix V, so its classifier
    :math:`M V V^\top` is the class-mean matrix M itself: :math:`w_c = \mu_c`,
    :math:`b_c = -\tfrac12\lVert\mu_c\rVert^2 + \log\pi_c` (a Gaussian classifier with identity
    covariance; the covariance and the shrinkage it computes have no effect).

    Range (0, 1]; higher is better.  Not scale invariant (``official``: the logits scale as c^2;
    ``paper``: through the shrinkage :math:`e^{-5\lambda_{\max}}`).
    """
    if variant not in ("paper", "official"):
        raise ValueError(f"variant must be 'paper' or 'official', got {variant!r}")
    x, y, n_classes = check_inputs_numpy(features, labels, min_classes=2, min_per_class=1)
    x = as_float64(x)
    if variant == "paper":
        coef, intercept, _ = _fda_fit(x, y, n_classes, None, None)
    else:
        counts, coef = class_stats(x, y, n_classes)
        intercept = -0.5 * np.einsum("cd,cd->c", coef, coef) + np.log(counts / x.shape[0])
    return float(np.mean(label_softmax(x, coef, intercept, y, "prob")))


def etran_terms(
    features: ArrayLike,
    labels: ArrayLike,
    *,
    fraction: float = 0.005,
    temperature: float = 1.0,
    variant: Variant = "paper",
) -> ETranTerms:
    """Both per-model ETran terms, :func:`energy_score` and :func:`lda_score`."""
    x, y, _ = check_inputs_numpy(features, labels, min_classes=2, min_per_class=1)
    return ETranTerms(
        energy=energy_score(x, fraction=fraction, temperature=temperature),
        classification=lda_score(x, y, variant=variant),
    )


def etran_combine(
    terms: Sequence[ETranTerms] | ArrayLike, *, energy_weight: float = 0.15
) -> NDArray[np.float64]:
    r"""ETran scores of a zoo from its per-model terms.

    .. math::
        T_m = w\,\widehat{S}_{en}(m) + (1 - w)\,\widehat{S}_{cls}(m),\qquad
        \widehat{S}(m) = \frac{S(m) - \min_{m'} S(m')}{\max_{m'} S(m') - \min_{m'} S(m')},

    the min-max normalisation running over the M models of ``terms`` (an (M, 2) table of
    ``(energy, classification)``, e.g. a list of :class:`ETranTerms`); a term equal for every model
    normalises to 0.  ``energy_weight`` w = 0.15 is the released evaluation's (``tw.py``).
    Returns an (M,) array, higher is better; the scores are only comparable within one zoo.
    """
    if not 0.0 <= energy_weight <= 1.0:
        raise ValueError(f"energy_weight must be in [0, 1], got {energy_weight}")
    norm = minmax_columns(terms, ETranTerms._fields)
    return energy_weight * norm[:, 0] + (1.0 - energy_weight) * norm[:, 1]
