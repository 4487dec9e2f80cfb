r"""Neighbourhood metric: leave-one-out k-nearest-neighbour accuracy on the target features.

k-NN accuracy of frozen features is the standard probe of representation quality in
self-supervised learning (Wu et al., CVPR 2018; Caron et al., "Emerging Properties in
Self-Supervised Vision Transformers" (DINO), ICCV 2021, arXiv 2104.14294), and Sorkhei et al.,
"k-NN as a Simple and Effective Estimator of Transferability" (TMLR 2025, arXiv 2503.18528) find
it predicts fine-tuning accuracy better than the published transferability metrics across 23
metrics and 16 datasets.  Here it is computed leave-one-out on the labelled target set itself, so
it needs no split and no seed.
"""

from __future__ import annotations

import logging

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ped._validation import check_positive_int
from ped.metrics._common import as_float64, check_inputs_numpy

__all__ = ["knn_accuracy", "knn_credit"]

logger = logging.getLogger(__name__)

_BLOCK_ELEMENTS = 1 << 22  # largest (rows x N) block of distances, ~32 MB of float64


def _distance_block(
    x: NDArray[np.float64], sq: NDArray[np.float64] | None, rows: slice, metric: str
) -> NDArray[np.float64]:
    r"""Distances from the samples ``rows`` to every sample (a block x N array).

    ``cosine``: ``1 - <z_i, z_j>`` of the unit-normalised rows ``x``.  ``euclidean``: squared
    distances :math:`\lVert x_i\rVert^2 + \lVert x_j\rVert^2 - 2 x_i^\top x_j` (clipped at 0);
    squaring keeps the order of the neighbours.
    """
    block = x[rows] @ x.T
    if metric == "cosine":
        return 1.0 - block
    assert sq is not None
    return np.maximum(sq[rows, None] + sq[None, :] - 2.0 * block, 0.0)


def knn_credit(
    features: ArrayLike,
    labels: ArrayLike,
    *,
    k: int = 20,
    metric: str = "cosine",
) -> NDArray[np.float64]:
    r"""Each sample's leave-one-out k-nearest-neighbour credit, ``(N,)``: the mean is
    :func:`knn_accuracy`, and a bootstrap of the scored samples is a bootstrap of these credits.

    Every sample is classified by a majority vote of its ``k`` nearest *other* samples:

    .. math::
        \mathrm{kNN} = \frac1N \sum_{i=1}^N
            \frac{[\,y_i \in \hat Y_i\,]}{|\hat Y_i|},\qquad
        \hat Y_i = \operatorname*{arg\,max}_c\; v_{ic},\qquad
        v_{ic} = \sum_{j \in \mathcal N_k(i)} [y_j = c],

    where :math:`\mathcal N_k(i)` are the ``k`` samples :math:`j \ne i` closest to :math:`x_i`.
    A tie between classes for the most votes counts as the expected accuracy of breaking it at
    random (:math:`1/|\hat Y_i|` when the true class is among the tied ones), and samples tied in
    distance with the k-th neighbour share the remaining votes equally, so the score depends on
    neither the order of the samples nor the numbering of the classes.  Without ties it is
    exactly the leave-one-out accuracy of ``sklearn.neighbors.KNeighborsClassifier`` (uniform
    weights).  Range [0, 1]; higher is better.

    Parameters
    ----------
    features : (N, D) floating array.
    labels : (N,) integers 0..C-1, C >= 2.  A class with a single sample is allowed (its sample
        cannot be classified correctly).
    k : number of neighbours; default 20, the k of DINO's k-NN evaluation of self-supervised
        features (which, unlike this plain majority vote, weights the votes by a temperature
        softmax of the similarities).  Clipped to N - 1.
    metric : ``"cosine"`` (default; the distance :math:`1 - \cos(x_i, x_j)`, the convention of
        the self-supervised k-NN evaluation; an all-zero row is at distance 1 from every sample)
        or ``"euclidean"``.

    Scale behaviour: multiplying every feature by the same constant c > 0 leaves the score
    unchanged for both metrics (distances scale uniformly).  ``cosine`` is also invariant to
    scaling each sample separately but not to a translation; ``euclidean`` is invariant to
    translations and rotations of the feature space but not to rescaling single dimensions.

    Cost: O(N^2 D) time; the N x N distances are formed in blocks of rows (about 32 MB each).
    Precision: ``cosine`` forms the similarities of float32 features in float32 (the unit
    rows normalised in float64 first), as scikit-learn's brute-force search does, which halves
    the dominant matrix product; neighbours whose similarities differ by less than about
    1e-6 may then swap.  ``euclidean`` works in float64 (the squared-norm expansion cancels
    digits), as scikit-learn upcasts float32 there too.
    """
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")
    x, y, n_classes = check_inputs_numpy(features, labels, min_classes=2, min_per_class=1)
    k = check_positive_int(k, "k")
    single = x.dtype == np.float32
    x = as_float64(x)
    n = x.shape[0]
    k_eff = min(k, n - 1)
    if k_eff < k:
        logger.debug("kNN: k = %d clipped to N - 1 = %d", k, k_eff)
    sq = None
    if metric == "cosine":
        norm = np.linalg.norm(x, axis=1, keepdims=True)
        x = np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)
        if single:  # the input's precision, as scikit-learn's search
            x = x.astype(np.float32)
    else:
        sq = np.einsum("nd,nd->n", x, x)
    step = max(1, _BLOCK_ELEMENTS // n)
    credit = np.empty(n)
    for start in range(0, n, step):
        rows = slice(start, min(n, start + step))
        d = _distance_block(x, sq, rows, metric)
        credit[rows] = _block_credit(d, y, rows, k_eff, n_classes)
    return credit


def knn_accuracy(
    features: ArrayLike,
    labels: ArrayLike,
    *,
    k: int = 20,
    metric: str = "cosine",
) -> float:
    r"""Leave-one-out k-nearest-neighbour accuracy of the labels from the features: the mean of
    :func:`knn_credit`, the credit of every sample,

    .. math::
        \mathrm{kNN} = \frac1N \sum_{i=1}^N
            \frac{[\,y_i \in \hat Y_i\,]}{|\hat Y_i|},\qquad
        \hat Y_i = \operatorname*{arg\,max}_c\; v_{ic},\qquad
        v_{ic} = \sum_{j \in \mathcal N_k(i)} [y_j = c],

    where :math:`\mathcal N_k(i)` are the ``k`` samples :math:`j \ne i` closest to :math:`x_i`
    (ties, scale behaviour, cost and precision: :func:`knn_credit`).  Without ties it is exactly
    the leave-one-out accuracy of ``sklearn.neighbors.KNeighborsClassifier`` (uniform weights).
    Range [0, 1]; higher is better.

    Parameters
    ----------
    features : (N, D) floating array.
    labels : (N,) integers 0..C-1, C >= 2.  A class with a single sample is allowed (its sample
        cannot be classified correctly).
    k : number of neighbours; default 20, the k of DINO's k-NN evaluation of self-supervised
        features (which, unlike this plain majority vote, weights the votes by a temperature
        softmax of the similarities).  Clipped to N - 1.
    metric : ``"cosine"`` (default) or ``"euclidean"``.
    """
    return float(knn_credit(features, labels, k=k, metric=metric).mean())


def _block_credit(
    d: NDArray[np.floating], y: NDArray[np.intp], rows: slice, k: int, n_classes: int
) -> NDArray[np.float64]:
    """The leave-one-out credit of the samples ``rows`` from their distances ``d`` to every
    sample (overwritten).  The ``k`` nearest come from one ``argpartition``; a row whose
    (k+1)-th distance equals its k-th (a distance tie across the cut) shares the last votes as
    :func:`knn_accuracy` says, from its full row."""
    b = d.shape[0]
    local = np.arange(b)
    d[local, np.arange(rows.start, rows.stop)] = np.inf  # leave the sample itself out
    part = np.argpartition(d, k, axis=1)[:, : k + 1]  # k nearest, then the (k+1)-th
    dist = np.take_along_axis(d, part, axis=1)
    kth = dist[:, :k].max(axis=1)
    votes = np.bincount((local[:, None] * n_classes + y[part[:, :k]]).ravel(),
                        minlength=b * n_classes).reshape(b, n_classes).astype(np.float64)
    for i in np.flatnonzero(dist[:, k] == kth):  # ties across the cut: rare, row by row
        closer, at_kth = d[i] < kth[i], d[i] == kth[i]
        share = (k - np.count_nonzero(closer)) / np.count_nonzero(at_kth)
        votes[i] = np.bincount(y, weights=closer + share * at_kth, minlength=n_classes)
    top = votes.max(axis=1, keepdims=True)
    winners = votes >= top - 1e-9 * k
    return winners[local, y[rows]] / winners.sum(axis=1)
