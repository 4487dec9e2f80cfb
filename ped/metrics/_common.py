"""Private numerical helpers shared by the metric families (float64 throughout).

Backend abstraction (LogME, SFDA and GBC accept ``torch.Tensor`` features): the few primitives
that pass over the N samples -- class sums and means, within-class and total scatter, Gram
matrices, projections ``X @ W`` and row-wise softmax statistics at the labels, ConfMix's per-sample
mixing -- take either a numpy array or a tensor.  A tensor is worked on in torch float64 on its own
device (CPU or CUDA); the small results (D x D, C x D, C x C) come back as float64 numpy arrays,
where the eigen-decompositions and Cholesky solves are done exactly as for numpy input.  Per-sample
intermediates (projections, per-sample probabilities, mixed features) stay in the input's backend.
The numpy branch of every primitive is the computation the metrics always did, unchanged.

torch is imported lazily (only when a tensor is passed), as in :mod:`ped._backend`.
"""

from __future__ import annotations

from typing import Any, Union

import numpy as np
import scipy.linalg
import scipy.sparse
from numpy.typing import ArrayLike, NDArray
from scipy.special import log_softmax, softmax

from ped._backend import check_torch_features, is_torch, to_numpy
from ped._validation import check_features_labels, check_labels
from ped.dynamics import class_statistics

Array = NDArray[np.float64]
#: A float64 feature matrix of either backend: a numpy array or a ``torch.Tensor`` (any device).
Features = Union[Array, Any]


def as_float64(x: NDArray[np.floating]) -> Array:
    """Return ``x`` as float64; a view of the caller's array when it already is: never write to it."""
    return np.asarray(x, dtype=np.float64)


def class_indicator(y: NDArray[np.intp], n_classes: int) -> scipy.sparse.csr_matrix:
    """Sparse ``C x N`` one-hot matrix, so that ``indicator @ x`` sums the rows of each class."""
    n = y.shape[0]
    return scipy.sparse.csr_matrix(
        (np.ones(n, dtype=np.float64), (y, np.arange(n))), shape=(n_classes, n)
    )


def class_sums(x: Features, y: NDArray[np.intp], n_classes: int) -> Array:
    """``C x D`` numpy array of per-class sums of the rows of ``x`` (vectorised, no loop over
    samples); for a tensor, summed in float64 on its device (``index_add``)."""
    if is_torch(x):
        xd = _t64(x)
        zeros = xd.new_zeros((n_classes, xd.shape[1]))
        return zeros.index_add(0, _labels_like(y, xd), xd).cpu().numpy()
    return np.asarray(class_indicator(y, n_classes) @ x)


def class_stats(x: Features, y: NDArray[np.intp], n_classes: int) -> tuple[Array, Array]:
    """Return ``(counts (C,), means (C, D))`` as numpy arrays (``x`` of either backend), from
    the package's one class-moment routine, :func:`ped.dynamics.class_statistics`."""
    stats = class_statistics(x, y, n_classes)
    return stats.counts.astype(np.float64), stats.means


def eigh_descending(a: Array, k: int | None = None) -> tuple[Array, Array]:
    """Eigen-decomposition of a symmetric matrix, largest eigenvalues first.

    ``k`` keeps only the top ``k`` pairs (computed directly, cheaper than the full spectrum).
    LAPACK's MRRR driver (``evr``) is used: on 2 cores it is about 3x faster than divide and
    conquer at D = 2048.
    """
    d = a.shape[0]
    if k is None or k >= d:
        w, v = scipy.linalg.eigh(a, driver="evr", check_finite=False)
    else:
        w, v = scipy.linalg.eigh(a, subset_by_index=[d - k, d - 1], check_finite=False)
    return w[::-1], v[:, ::-1]


def eigh_project(a: Array, b: Array) -> tuple[Array, Array]:
    r"""The eigenvalues of a symmetric ``a`` (d x d), largest first, and ``V^T b`` (d x k): the
    columns of ``b`` in the eigenbasis :math:`a = V \operatorname{diag}(w) V^\top`, without
    forming ``V``.

    ``a`` is reduced to a tridiagonal :math:`T = Q^\top a Q` by Householder reflections (LAPACK
    ``dsytrd``), which also carry ``b`` to :math:`Q^\top b` (``dormqr``); the eigenpairs of ``T``,
    :math:`T = Z \operatorname{diag}(w) Z^\top`, come from MRRR (``stemr``), and
    :math:`V^\top b = Z^\top Q^\top b`.  When only a few projections are wanted (k << d) this
    skips the back-transformation of the d eigenvectors, the larger part of
    :func:`eigh_descending`'s cost: at d = 2048, k = 102 it takes about half the time.  Each
    column of ``V^T b`` is defined up to the signs of the eigenvectors, so only quantities even in
    them (such as its squares) are meaningful.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    d = a.shape[0]
    if a.shape != (d, d) or b.ndim != 2 or b.shape[0] != d:
        raise ValueError(f"eigh_project needs a (d, d) and b (d, k), got {a.shape} and {b.shape}")
    lwork = int(scipy.linalg.lapack.dsytrd_lwork(d, lower=1)[0])
    reflectors, diag, off, tau, info = scipy.linalg.lapack.dsytrd(a, lower=1, lwork=lwork)
    if info != 0:
        raise np.linalg.LinAlgError(f"dsytrd failed (info={info})")
    qtb = b.copy()
    if d > 1:
        # with lower=1, Q = H(1)...H(d-1) acts on rows 2..d as the Q of a QR factorisation whose
        # reflectors are stored below the first subdiagonal: LAPACK's dormtr does exactly this
        out = scipy.linalg.lapack.dormqr("L", "T", reflectors[1:, :-1], tau, qtb[1:],
                                         lwork=max(1, b.shape[1]) * 64)  # fmt: skip
        if out[-1] != 0:
            raise np.linalg.LinAlgError(f"dormqr failed (info={out[-1]})")
        qtb[1:] = out[0]
    w, z = scipy.linalg.eigh_tridiagonal(diag, off, check_finite=False)
    return w[::-1], (z.T @ qtb)[::-1]


def pca_scores(
    x: Features, *, n_components: int | None = None, variance: float | None = None
) -> Features:
    """Principal-component scores of ``x`` (centred), largest variance first.

    ``x`` may be a float64 tensor: centring, the Gram matrix and the projection then run in torch
    on its device, the eigen-decomposition in numpy, and the scores are a tensor on that device.

    Exactly one of ``n_components`` (clipped to min(N, D)) and ``variance`` (keep the smallest
    number of components whose cumulative explained-variance ratio exceeds it, the rule of
    ``sklearn.decomposition.PCA(n_components=variance)``) must be given.  Computed exactly from
    the smaller of the two Gram matrices; each axis is oriented so that its largest-magnitude
    loading is positive, as sklearn does.
    """
    n, d = x.shape
    xc = centre(x)
    r = min(n, d)
    k = None if n_components is None else min(int(n_components), r)
    if d <= n:
        w, v = eigh_descending(gram(xc), k)
    else:
        w, u = eigh_descending(outer_gram(xc), k)
    w = np.clip(w, 0.0, None)
    if variance is not None:
        total = w.sum()
        if total <= 0:
            k = 1
        else:
            ratio = np.cumsum(w) / total
            k = int(min(np.searchsorted(ratio, variance, side="right") + 1, w.shape[0]))
        w = w[:k]
        if d <= n:
            v = v[:, :k]
        else:
            u = u[:, :k]
    if d <= n:
        axes, scores = v, project(xc, v)
    else:
        scores = u * np.sqrt(w)
        axes = transpose_project(xc, u / np.where(w > 0, np.sqrt(w), 1.0))
        if is_torch(xc):
            scores = _like(scores, xc)
    # orient each axis so that its largest-magnitude loading is positive (sklearn's convention):
    # signs are otherwise arbitrary, and PARC's row correlations depend on them
    pivot = axes[np.argmax(np.abs(axes), axis=0), np.arange(axes.shape[1])]
    sign = np.where(pivot < 0, -1.0, 1.0)
    return scores * (_like(sign, scores) if is_torch(scores) else sign)


def leep_from_posteriors(
    theta: Array, y: NDArray[np.intp], n_classes: int, *, log: bool
) -> float:
    r"""LEEP of target labels ``y`` given posteriors ``theta`` (N x K, rows summing to one).

    .. math::
        \hat P(y, z) = \frac1N \sum_i \theta_z(x_i)\,[y_i = y],\quad
        \hat P(y \mid z) = \hat P(y, z) / \hat P(z),\quad
        \mathrm{EEP}_i = \sum_z \hat P(y_i \mid z)\,\theta_z(x_i),

    and the score is :math:`\frac1N\sum_i \log \mathrm{EEP}_i` (``log=True``) or
    :math:`\frac1N\sum_i \mathrm{EEP}_i` (``log=False``).
    """
    n = theta.shape[0]
    joint = np.asarray(class_indicator(y, n_classes) @ theta) / n  # C x K
    pz = joint.sum(axis=0)
    # a column with P(z) = 0 has theta_z(x_i) = 0 for every i, so its value never matters
    cond = np.divide(joint, pz, out=np.zeros_like(joint), where=pz > 0)
    eep = np.einsum("ik,ik->i", theta, cond[y])
    if log:
        # eep_i >= theta_z(x_i)^2 / (N P(z)) > 0 for the z maximising theta(x_i): log is finite
        return float(np.mean(np.log(eep)))
    return float(np.mean(eep))


# ------------------------------------------------------------------------ backend primitives
def _t64(x: Any) -> Any:
    """A tensor detached and in float64 (the same tensor when it already is; never written to)."""
    import torch

    return x.detach().to(torch.float64)


def _like(a: ArrayLike, x: Any) -> Any:
    """A small numpy array as a float64 tensor on ``x``'s device."""
    import torch

    a = np.ascontiguousarray(a, dtype=np.float64)  # eigenvectors come reversed (negative strides)
    return torch.as_tensor(a, dtype=torch.float64, device=x.device)


def _labels_like(y: NDArray[np.intp], x: Any) -> Any:
    """Labels as an int64 tensor on ``x``'s device."""
    import torch

    return torch.as_tensor(y, dtype=torch.long, device=x.device)


def check_inputs(
    features: Any, labels: Any, *, min_classes: int = 2, min_per_class: int = 1
) -> tuple[Features, NDArray[np.intp], int]:
    """:func:`ped._validation.check_features_labels` for numpy or torch features.

    A tensor is validated by :func:`ped._backend.check_torch_features` (same messages, "tensor"
    for "array") and returned as is; labels may be a numpy array, a list or a tensor on any
    device and are returned as an intp numpy array.
    """
    if is_torch(features):
        x = check_torch_features(features)
        y, n_classes = check_labels(
            to_numpy(labels), n_samples=x.shape[0], min_classes=min_classes,
            min_per_class=min_per_class,
        )
        return x, y, n_classes
    return check_features_labels(
        features, to_numpy(labels), min_classes=min_classes, min_per_class=min_per_class
    )


def check_inputs_numpy(
    features: Any, labels: Any, *, min_classes: int = 2, min_per_class: int = 1
) -> tuple[NDArray[np.floating], NDArray[np.intp], int]:
    """:func:`check_inputs` for the metrics that compute in numpy only (H-score, TransRate, PARC,
    NLEEP): a tensor (any device, any floating dtype, ``bfloat16`` included, requiring grad or
    not) is validated like one, then copied to a numpy array (:func:`ped._backend.to_numpy`);
    the result is always numpy."""
    if is_torch(features):
        features = to_numpy(check_torch_features(features))
    return check_features_labels(
        features, to_numpy(labels), min_classes=min_classes, min_per_class=min_per_class
    )


def to_float64(x: Any) -> Features:
    """``x`` in float64 in its own backend (:func:`as_float64` for numpy; a detached float64
    tensor on the same device for torch).  No copy when it already is float64: never write to it."""
    return _t64(x) if is_torch(x) else as_float64(x)


def gram(x: Features) -> Array:
    """``x^T x`` (D x D) as a float64 numpy array."""
    if is_torch(x):
        xd = _t64(x)
        return (xd.T @ xd).cpu().numpy()
    return x.T @ x


def outer_gram(x: Features) -> Array:
    """``x x^T`` (N x N) as a float64 numpy array (used when N < D)."""
    if is_torch(x):
        xd = _t64(x)
        return (xd @ xd.T).cpu().numpy()
    return x @ x.T


def centre(x: Features) -> Features:
    """``x`` minus its column means, in its own backend (a new array)."""
    if is_torch(x):
        xd = _t64(x)
        return xd - xd.mean(dim=0)
    return x - x.mean(axis=0)


def project(x: Features, w: Array) -> Features:
    """``x @ w`` for a small numpy ``w`` (D x k), in ``x``'s backend."""
    if is_torch(x):
        return _t64(x) @ _like(w, x)
    return x @ w


def transpose_project(x: Features, w: Array) -> Array:
    """``x^T @ w`` for a small numpy ``w`` (N x k), as a numpy array (D x k)."""
    if is_torch(x):
        return (_t64(x).T @ _like(w, x)).cpu().numpy()
    return x.T @ w


def within_scatter(x: Features, y: NDArray[np.intp], means: Array) -> Array:
    """Within-class scatter ``(x - M[y])^T (x - M[y])`` (D x D numpy), ``means`` the C x D class
    means; one matrix product of the centred data."""
    if is_torch(x):
        xd = _t64(x)
        xc = xd - _like(means, xd)[_labels_like(y, xd)]
        return (xc.T @ xc).cpu().numpy()
    xc = x - means[y]
    return xc.T @ xc


def class_variances(
    x: Features, y: NDArray[np.intp], means: Array, counts: Array
) -> Array:
    """Per-class, per-dimension (biased) variances ``C x D`` around the given class ``means``."""
    if is_torch(x):
        xd = _t64(x)
        dev2 = (xd - _like(means, xd)[_labels_like(y, xd)]).square()
        return class_sums(dev2, y, means.shape[0]) / counts[:, None]
    return class_sums((x - means[y]) ** 2, y, means.shape[0]) / counts[:, None]


def max_square(x: Features) -> float:
    """``max(x**2)`` over every entry, as a float."""
    if is_torch(x):
        return float(_t64(x).square().max())
    return float(np.max(x**2))


def label_softmax(
    x: Features, coef: Array, intercept: Array, y: NDArray[np.intp], kind: str
) -> Features:
    """Per-sample softmax statistic of the logits ``x @ coef^T + intercept`` at each sample's label.

    ``kind``: ``"prob"`` (softmax), ``"log_prob"`` (log-softmax) or ``"prob_of_prob"`` (a softmax
    of the softmax probabilities, SFDA's softened confidence).  An (N,) vector in ``x``'s backend.
    """
    if kind not in ("prob", "log_prob", "prob_of_prob"):
        raise ValueError(f"unknown kind {kind!r}")
    if is_torch(x):
        import torch

        xd = _t64(x)
        logits = xd @ _like(coef, xd).T + _like(intercept, xd)
        if kind == "log_prob":
            out = torch.log_softmax(logits, dim=1)
        else:
            out = torch.softmax(logits, dim=1)
            if kind == "prob_of_prob":
                out = torch.softmax(out, dim=1)
        return out.gather(1, _labels_like(y, xd)[:, None])[:, 0]
    rows = np.arange(x.shape[0])
    logits = x @ coef.T + intercept
    if kind == "log_prob":
        return log_softmax(logits, axis=1)[rows, y]
    p = softmax(logits, axis=1)
    if kind == "prob_of_prob":
        p = softmax(p, axis=1)
    return p[rows, y]


def mix_rows(
    x: Features, weight: Features, targets: Array, y: NDArray[np.intp]
) -> Features:
    """``weight_i x_i + (1 - weight_i) targets[y_i]`` for every row (a new array, ``x``'s backend);
    ``weight`` is an (N,) vector of ``x``'s backend, ``targets`` a small C x D numpy array."""
    if is_torch(x):
        xd = _t64(x)
        w = weight[:, None]
        return w * xd + (1.0 - w) * _like(targets, xd)[_labels_like(y, xd)]
    return weight[:, None] * x + (1.0 - weight)[:, None] * targets[y]


def mean_value(v: Features) -> float:
    """The mean of a vector of either backend, as a Python float."""
    if is_torch(v):
        return float(v.mean())
    return float(np.mean(v))
