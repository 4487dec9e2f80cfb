r"""Potential Energy Descent (PED): the paper's physical model of representation dynamics.

Each class :math:`i` of the (standardised) features is a ball with centre :math:`c_i` (the class
mean) and radius :math:`r_i = \lambda \lVert\sigma_i\rVert = \lambda\sqrt{\sum_d \mathrm{var}_{id}}`
(``nsigma`` is the paper's :math:`\lambda`).  Two overlapping balls repel like a compressed spring
(Hooke's law, eq. 4 of the paper):

.. math::

    x_{ij} = \max(0,\; r_i + r_j - d_{ij}), \qquad d_{ij} = \lVert c_i - c_j\rVert, \qquad
    F_{ij} = k\, x_{ij}\, n_{ij}, \qquad n_{ij} = (c_i - c_j) / d_{ij},

and the system's elastic potential energy (eq. 7) is

.. math::

    U = \sum_{i<j} \tfrac12 k\, x_{ij}^2 .

Because :math:`-\partial U/\partial c_i = \sum_{j\neq i} F_{ij}`, moving every class along its net
force is a gradient step on :math:`U`: the energy view and the gradient view of fine-tuning are two
sides of one coin.  A class moves rigidly (all its samples by the same vector), so its covariance,
and hence its radius, never changes during the descent: the radii are computed once.

The implementation keeps memory at :math:`O(ND + C^2 + CD)`: pairwise distances come from the
Gram matrix of the centres and the net displacement of every class from one :math:`C\times C` by
:math:`C\times D` product, never from a :math:`C\times C\times D` array of pairwise differences.

*Why one module of about 600 lines:* it is the method itself.  The class statistics, the
standardisation, the energy, the forces, the options and the descent follow the paper's
equations in order, as the chapter "Potential Energy Descent step by step" reads them, and each
step's torch branch sits beside the numpy step it must agree with.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ped._backend import (
    check_torch_features,
    is_torch,
    to_numpy,
    torch_mean_std,
    torch_translate,
)
from ped._validation import (
    check_features,
    check_features_labels,
    check_labels,
    check_nonnegative,
    check_positive,
    check_positive_int,
    max_magnitude,
)

__all__ = [
    "STD_FLOOR",
    "ONE_PASS_CONDITION",
    "PEDResult",
    "ClassStatistics",
    "class_statistics",
    "standardisation",
    "pairwise_overlap",
    "elastic_potential",
    "hooke_forces",
    "check_ped_options",
    "PEDOptions",
    "potential_energy_descent",
]

logger = logging.getLogger(__name__)

#: Lower bound applied to the per-dimension standard deviation used for standardisation, as in
#: the authors' released code.
STD_FLOOR = 1e-3

Variant = Literal["official", "paper"]


@dataclass(frozen=True)
class ClassStatistics:
    """Per-class moments of a feature matrix, in float64 and in the features' own units.

    Attributes
    ----------
    means : ndarray, shape (C, D)
        Class means.
    variances : ndarray, shape (C, D)
        Per-dimension population variances (``ddof=0``) within each class.
    counts : ndarray, shape (C,)
        Number of samples per class.
    """

    means: NDArray[np.float64]
    variances: NDArray[np.float64]
    counts: NDArray[np.intp]

    @property
    def total_variance(self) -> NDArray[np.float64]:
        """:math:`\\sum_d \\mathrm{var}_{id}`: the mean squared distance of a class's samples
        to its mean."""
        return self.variances.sum(axis=1)

    def pooled(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Mean and population std of all the samples together, per dimension, from the class
        moments (law of total variance: within-class plus between-class)."""
        weights = self.counts / self.counts.sum()
        mean = weights @ self.means
        var = weights @ (self.variances + (self.means - mean) ** 2)
        return mean, np.sqrt(var)

    def standardised(
        self, mean: NDArray[np.float64], std: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Class centres and total variances of ``(features - mean) / std``."""
        return (self.means - mean) / std, (self.variances / std**2).sum(axis=1)


@dataclass(frozen=True)
class PEDResult:
    """Outcome of :func:`potential_energy_descent`.

    Attributes
    ----------
    features : ndarray or torch.Tensor, shape (N, D)
        The moved features, in the units of the input, with its dtype (and, for a tensor, on its
        device).
    steps : int
        Number of steps kept (0 when no pair of classes overlaps).
    energy : ndarray, shape (steps + 1,)
        Elastic potential :math:`U` (eq. 7, standardised units) before the first step and after
        each kept step.
    displacement : ndarray, shape (steps,)
        The size of each kept step, as the variant's exit rule measures it: the L1 norm
        :math:`\\sum_{i,d} |\\Delta c_{id}|` of the class shifts (``"official"``), or
        :math:`\\omega` (``"paper"``, see :func:`potential_energy_descent`).
    centers : ndarray, shape (steps + 1, C, D)
        Class centres in the input's units before the descent and after each kept step.
    radii : ndarray, shape (C,)
        Ball radii :math:`r_i` in standardised units (constant during the descent).
    shift : ndarray, shape (C, D)
        Total translation of each class in the input's units: ``features_out = features +
        shift[labels]``.
    variant : str
        ``"official"`` or ``"paper"``.
    """

    features: NDArray[np.floating]
    steps: int
    energy: NDArray[np.float64]
    displacement: NDArray[np.float64]
    centers: NDArray[np.float64]
    radii: NDArray[np.float64]
    shift: NDArray[np.float64]
    variant: str


#: One-pass variances are kept where :math:`\bar x_d^2 \le` this times :math:`v_d` in every
#: dimension of a class; elsewhere the class is recomputed in two passes (see
#: :func:`class_statistics`).
ONE_PASS_CONDITION = 1e3


def class_statistics(
    features: NDArray[np.floating], labels: NDArray[np.intp], n_classes: int
) -> ClassStatistics:
    r"""Per-class means and per-dimension variances, accumulated in float64.

    The arguments are trusted (validate them first, e.g. with
    ``ped._validation.check_features_labels``).  One pass over the data, class by class: the
    sum :math:`S_d` and the sum of squares :math:`Q_d` of a class's :math:`n` samples,
    accumulated in float64, give

    .. math:: \bar x_d = S_d / n, \qquad v_d = Q_d / n - \bar x_d^2 .

    The square of a float32 value is exact in float64, so the only loss is the cancellation in
    :math:`v_d`, about :math:`\log_{10}(1 + \bar x_d^2 / v_d)` digits.  A class with
    :math:`\bar x_d^2 >` :data:`ONE_PASS_CONDITION` :math:`\cdot\, v_d` in any dimension (an
    offset large against its spread, or a constant dimension) is recomputed with the two-pass
    formula (centre, then square), so every variance keeps about 12 significant digits.  The
    largest temporary is one class's block in float64 (sorted labels need no gather: the blocks
    are then views).  Non-finite input gives non-finite moments.

    A ``torch.Tensor`` is reduced in torch on its device (float64, two passes: the means by
    ``index_add``, then the squared deviations from them), and the moments come back as numpy
    arrays.  This is the package's one class-moment routine: PED, Spread/Attract, the mechanism
    tests and the metrics' class means (``ped.metrics._common.class_stats``) all use it.
    """
    if is_torch(features):
        return _torch_class_statistics(features, labels, n_classes)
    dim = features.shape[1]
    sums = np.empty((n_classes, dim))
    squares = np.empty((n_classes, dim))
    counts = np.bincount(labels, minlength=n_classes)
    bounds = np.concatenate([[0], np.cumsum(counts)])
    blocks: list[Any]
    if np.all(labels[:-1] <= labels[1:]):  # grouped by class (e.g. a folder's order): views
        blocks = [slice(bounds[c], bounds[c + 1]) for c in range(n_classes)]
    else:
        order = np.argsort(labels, kind="stable")
        blocks = [order[bounds[c] : bounds[c + 1]] for c in range(n_classes)]
    ones = np.ones(int(counts.max()))
    with np.errstate(over="ignore", invalid="ignore"):  # non-finite input: the caller's check
        for c, rows in enumerate(blocks):
            # one float64 copy of the class's block (cache-sized), then a BLAS sum and the
            # squares: faster than reducing the float32 block with a float64 accumulator twice
            block = np.asarray(features[rows], dtype=np.float64)
            np.dot(ones[: block.shape[0]], block, out=sums[c])
            np.einsum("nd,nd->d", block, block, out=squares[c])
        means = sums / counts[:, None]
        variances = squares / counts[:, None] - means**2
        ill = np.flatnonzero((means**2 > ONE_PASS_CONDITION * variances).any(axis=1))
        for c in ill:
            block = features[blocks[c]].astype(np.float64)
            block -= means[c]
            variances[c] = np.einsum("nd,nd->d", block, block) / block.shape[0]
    return ClassStatistics(means=means, variances=variances, counts=counts)


def _torch_class_statistics(x: Any, labels: NDArray[np.intp], n_classes: int) -> ClassStatistics:
    """:func:`class_statistics` of a tensor, on its device."""
    import torch

    y = torch.as_tensor(labels, device=x.device, dtype=torch.long)
    xd = x.detach().double()
    counts = torch.bincount(y, minlength=n_classes)
    zeros = torch.zeros((n_classes, x.shape[1]), dtype=torch.float64, device=x.device)
    means = zeros.index_add(0, y, xd) / counts[:, None]
    variances = zeros.index_add(0, y, (xd - means[y]).square()) / counts[:, None]
    return ClassStatistics(means=means.cpu().numpy(), variances=variances.cpu().numpy(),
                           counts=counts.cpu().numpy())  # fmt: skip


def _check_values(features: NDArray[np.floating], stats: ClassStatistics) -> None:
    r"""The value checks of ``check_features``, read from the class moments: the moments are
    finite exactly when the features are, and :math:`\max|x| \le \sqrt{\max_{c,d}
    n_c (v_{cd} + \bar x_{cd}^2)}`.  Only when these do not settle it is the array scanned."""
    with np.errstate(over="ignore", invalid="ignore"):
        bound = np.sqrt(np.max(stats.counts[:, None] * (stats.variances + stats.means**2)))
    if not (np.isfinite(bound) and bound <= max_magnitude(features.shape)):
        check_features(features)  # raises, naming the problem, unless the bound was loose


def standardisation(
    reference: ArrayLike | tuple[ArrayLike, ArrayLike] | None,
    features: NDArray[np.floating],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per-dimension ``(mean, std)`` used to standardise features before the descent.

    ``reference`` is a source-domain feature matrix (the paper standardises with the same model's
    ImageNet-val features; a numpy array or a torch tensor), a ``(mean, std)`` pair of length-D
    vectors, or ``None`` to use the target ``features`` themselves.  The std is the population
    std (``ddof=0``) and is floored at ``STD_FLOOR`` in every case, as the released code does.
    """
    dim = features.shape[1]
    if reference is None:
        mean, std = torch_mean_std(features) if is_torch(features) else _mean_std(features)
    elif isinstance(reference, tuple):
        if len(reference) != 2:
            raise ValueError(
                f"reference as a tuple must be (mean, std), got {len(reference)} items"
            )
        mean, std = (np.asarray(to_numpy(v), dtype=np.float64) for v in reference)
        for name, v in (("reference mean", mean), ("reference std", std)):
            if v.shape != (dim,):
                raise ValueError(
                    f"{name} must have shape ({dim},) to match features with {dim} dims, "
                    f"got shape {v.shape}"
                )
            if not np.isfinite(v).all():
                raise ValueError(f"{name} contains NaN or infinite values")
        if (std < 0).any():
            raise ValueError("reference std must be non-negative")
    else:
        if is_torch(reference):
            ref = check_torch_features(reference, name="reference")
        else:
            ref = check_features(reference, name="reference")
        if ref.shape[1] != dim:
            raise ValueError(
                f"reference has {ref.shape[1]} dims but features have {dim}: the reference must "
                "be features of the same model"
            )
        mean, std = torch_mean_std(ref) if is_torch(ref) else _mean_std(ref)
    return mean, np.maximum(std, STD_FLOOR)


def _mean_std(x: NDArray[np.floating]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    mean = x.mean(axis=0, dtype=np.float64)
    var = np.zeros_like(mean)
    for start in range(0, x.shape[0], 4096):  # bounded float64 temporaries
        block = x[start : start + 4096].astype(np.float64) - mean
        var += np.einsum("nd,nd->d", block, block)
    return mean, np.sqrt(var / x.shape[0])


def pairwise_overlap(
    centers: NDArray[np.float64], radii: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Return ``(x, d)``: overlaps :math:`x_{ij} = \\max(0, r_i + r_j - d_{ij})` and distances.

    Distances come from the Gram matrix of the centred centres (no C x C x D array).  The
    diagonal of ``x`` is zero.  Raises ``ValueError`` when two classes share a centre, since the
    direction of their repulsion is then undefined.
    """
    c = centers - centers.mean(axis=0)
    sq = np.einsum("cd,cd->c", c, c)
    scale = sq[:, None] + sq[None, :]
    d2 = scale - 2.0 * (c @ c.T)
    # The Gram formula loses precision for nearly coincident centres: recompute those pairs
    # directly (there are few, and each costs O(D)).
    for i, j in np.argwhere(np.triu(d2 <= 1e-6 * scale, 1)):
        diff = c[i] - c[j]
        d2[i, j] = d2[j, i] = diff @ diff
    np.fill_diagonal(d2, 0.0)
    d = np.sqrt(np.maximum(d2, 0.0))
    x = np.maximum(0.0, radii[:, None] + radii[None, :] - d)
    np.fill_diagonal(x, 0.0)
    clash = np.argwhere(np.triu((d == 0.0) & (x > 0.0), 1))
    if clash.size:
        i, j = clash[0]
        raise ValueError(
            f"classes {i} and {j} have the same centre: the direction of their repulsion is "
            "undefined (are two classes duplicates of each other?)"
        )
    return x, d


def elastic_potential(
    centers: NDArray[np.float64], radii: NDArray[np.float64], *, k: float = 1.0
) -> float:
    """Elastic potential energy :math:`U = \\sum_{i<j} \\tfrac12 k\\, x_{ij}^2` (eq. 7)."""
    x, _ = pairwise_overlap(centers, radii)
    return float(0.25 * k * np.einsum("ij,ij->", x, x))  # each pair appears twice


def _combine(weights: NDArray[np.float64], centers: NDArray[np.float64]) -> NDArray[np.float64]:
    """:math:`\\sum_j w_{ij} (c_i - c_j) = [(\\mathrm{diag}(W\\mathbf 1) - W)\\, c]_i` for every
    i, as one matrix product (``weights`` has a zero diagonal)."""
    laplacian = -weights
    laplacian[np.diag_indices_from(laplacian)] += weights.sum(axis=1)
    return laplacian @ centers


def hooke_forces(
    centers: NDArray[np.float64], radii: NDArray[np.float64], *, k: float = 1.0
) -> NDArray[np.float64]:
    """Net Hooke force on every class (eq. 4-5),
    :math:`F_i = \\sum_{j\\neq i} k\\, x_{ij}\\, n_{ij}`.

    Equals :math:`-\\partial U / \\partial c_i` for the potential of :func:`elastic_potential`.
    """
    x, d = pairwise_overlap(centers, radii)
    w = np.divide(k * x, d, out=np.zeros_like(x), where=x > 0)
    return _combine(w, centers)


def _check_variant(value: Any, name: str) -> str:
    if value not in ("official", "paper"):
        raise ValueError(f"{name} must be 'official' or 'paper', got {value!r}")
    return str(value)


#: The largest radius scale, time step and spring constant accepted: far beyond any useful
#: setting (the paper's are 0.3 to 0.6, 0.1 and 1), and small enough that the radii and the
#: step :math:`\tfrac12 t^2 k` stay finite in float64 for any standardised features.
OPTION_LIMIT = 1e6


def _check_bounded(value: Any, name: str) -> float:
    value = check_positive(value, name)
    if value > OPTION_LIMIT:
        raise ValueError(f"{name} must be at most {OPTION_LIMIT:g} (beyond it PED's radii or "
                         f"step overflow), got {value:g}")  # fmt: skip
    return value


#: The options of :func:`potential_energy_descent` besides the data, and their checks.
_OPTION_CHECKS: dict[str, Callable[[Any, str], Any]] = {
    "nsigma": _check_bounded,
    "time_step": _check_bounded,
    "k": _check_bounded,
    "max_steps": check_positive_int,
    "exit_ratio": check_nonnegative,
    "variant": _check_variant,
}


def check_ped_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword options of :func:`potential_energy_descent` (``nsigma``, ``time_step``, ``k``,
    ``max_steps``, ``exit_ratio``, ``variant``), checked and normalised, without running it.

    Callers that run PED many times (``ped score``) check them once, before any work.  An unknown
    name or a bad value (e.g. ``nsigma <= 0``, ``time_step = 0``, ``nsigma`` above
    :data:`OPTION_LIMIT`) is a ``ValueError`` naming it.
    """
    unknown = sorted(set(options) - set(_OPTION_CHECKS))
    if unknown:
        raise ValueError(
            f"unknown PED option(s) {unknown}; the options are {', '.join(_OPTION_CHECKS)}"
        )
    return {name: _OPTION_CHECKS[name](value, name) for name, value in options.items()}


@dataclass(frozen=True)
class PEDOptions(Mapping[str, Any]):
    r"""PED's hyperparameters, with their defaults written once: the paper's, which the released
    code uses (radius scale ``nsigma`` :math:`\lambda = 0.6`, time step 0.1, spring constant 1,
    at most 6 steps, exit when a step is at most half the first, the released variant).

    A frozen, checked value (``check_ped_options``; a bad value is a ``ValueError`` naming
    it) that is also a read-only mapping, so it can be passed on as keyword arguments
    (``potential_energy_descent(x, y, **options)``) or stored as a dict (``dict(options)``).
    :meth:`non_default` gives only what differs from the defaults, the form stored
    configurations use.
    """

    nsigma: float = 0.6
    time_step: float = 0.1
    k: float = 1.0
    max_steps: int = 6
    exit_ratio: float = 0.5
    variant: Variant = "official"

    def __post_init__(self) -> None:
        checked = check_ped_options({f.name: getattr(self, f.name) for f in fields(self)})
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    def __getitem__(self, name: str) -> Any:
        if name not in self._names():
            raise KeyError(name)
        return getattr(self, name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    @classmethod
    def _names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def of(cls, options: Mapping[str, Any] | None = None) -> PEDOptions:
        """Options from a mapping of some of them (``None``: the defaults); unknown names and
        bad values are a ``ValueError``."""
        if isinstance(options, cls):
            return options
        return cls(**check_ped_options(dict(options or {})))

    def non_default(self) -> dict[str, Any]:
        """The options that differ from the defaults."""
        default = PEDOptions()
        return {n: getattr(self, n) for n in self._names() if getattr(self, n) != default[n]}


def potential_energy_descent(
    features: ArrayLike,
    labels: ArrayLike,
    *,
    reference: ArrayLike | tuple[ArrayLike, ArrayLike] | None = None,
    nsigma: float = PEDOptions.nsigma,
    time_step: float = PEDOptions.time_step,
    k: float = PEDOptions.k,
    max_steps: int = PEDOptions.max_steps,
    exit_ratio: float = PEDOptions.exit_ratio,
    variant: Variant = PEDOptions.variant,
) -> PEDResult:
    r"""Move the features of every class by Potential Energy Descent (PED, Li et al., ICCV 2023).

    The features are standardised per dimension (see ``reference``), every class becomes a ball
    of radius :math:`r_i = \text{nsigma}\,\sqrt{\sum_d \mathrm{var}_{id}}` around its mean, and the
    balls repel each other while they overlap (eq. 4-7 of the paper).  Each step translates every
    sample of class :math:`i` by the same vector; afterwards the standardisation is undone, so the
    result is in the input's units, ready for any transferability metric.

    Two variants are implemented:

    ``"official"`` (default) reproduces the authors' released code:
        each overlapping pair moves both of its classes apart by
        :math:`\min(\tfrac12 t^2 k\, x_{ij},\; x_{ij})` along :math:`\pm n_{ij}` (in full, no
        masses, no halving); a class's shift is the vector sum over its pairs.  The step's change
        is :math:`\Delta = \sum_{i,d} |\text{shift}_{id}|`.  Step 1 is always kept; step
        :math:`s>1` is kept only while :math:`\Delta_s / \Delta_1 >` ``exit_ratio``, otherwise the
        loop stops and that step is discarded.  At most ``max_steps`` steps.
    ``"paper"`` follows Algorithm 1 as printed:
        unit masses, so class :math:`i` moves by :math:`\tfrac12 a_i t^2` with
        :math:`a_i = F_i = \sum_j k x_{ij} n_{ij}` (eq. 5-6, no clipping); the step size is
        :math:`\omega = \lVert[\tfrac12 a_j t^2]_j\rVert_F`, and the loop stops after the first
        step with :math:`\omega \le` ``exit_ratio`` :math:`\cdot\,\omega_0` (that step is kept).
        Algorithm 1 prints :math:`\omega = \lVert\sum_j \tfrac12 a_j \Delta t^2\rVert`, a vector
        sum that vanishes identically (pairwise forces cancel, Newton's third law), so the
        Frobenius norm of the matrix of class displacements is used instead.

    When no pair of classes overlaps, nothing moves and ``steps`` is 0.

    Parameters
    ----------
    features : array or torch.Tensor of shape (N, D), float32 or float64
        Target-task features of one model.  Not modified.  A tensor (CPU or CUDA) is processed
        on its device for the O(N·D) passes and returned as a tensor.
    labels : array of shape (N,)
        Integer class labels taking every value 0..C-1, C >= 2.
    reference : array of shape (M, D), ``(mean, std)`` pair, or None
        Statistics to standardise with: the same model's features on the source domain (the
        paper's ImageNet-val features), or their per-dimension mean and std.  ``None``
        standardises with the target features' own mean and std (a departure from the paper,
        which has no target statistics in this role).  The std is floored at ``STD_FLOOR``.
    nsigma, time_step, k, max_steps, exit_ratio, variant
        The hyperparameters, defaults from :class:`PEDOptions`: the radius scale
        :math:`\lambda` (the paper's candidates are 0.3 and 0.6), the time step :math:`\Delta
        t`, the spring constant, the most steps (hard-coded to 6 in the released code), the
        early-exit threshold :math:`\epsilon` relative to the first step, and the variant
        (``"official"`` or ``"paper"``).  ``potential_energy_descent(x, y, **options)`` takes
        a :class:`PEDOptions`.

    Returns
    -------
    PEDResult
        Moved features plus the trajectory (energy, displacement, centres).

    Notes
    -----
    Memory is :math:`O(ND + C^2 + CD)`: radii are computed once (a rigid translation keeps each
    class's covariance), the descent runs on the :math:`C\times D` centres only, and the samples
    are translated once at the end, ``features + shift[labels]``.
    """
    use_torch = is_torch(features)
    if use_torch:
        x = check_torch_features(features)
        y, n_classes = check_labels(to_numpy(labels), n_samples=x.shape[0])
    else:  # the values are checked from the class moments below (no extra pass)
        x, y, n_classes = check_features_labels(features, labels, scan=False)
    opts = check_ped_options({"nsigma": nsigma, "time_step": time_step, "k": k,
                              "max_steps": max_steps, "exit_ratio": exit_ratio,
                              "variant": variant})  # fmt: skip
    nsigma, time_step, k = opts["nsigma"], opts["time_step"], opts["k"]
    max_steps, exit_ratio, variant = opts["max_steps"], opts["exit_ratio"], opts["variant"]
    stats = class_statistics(x, y, n_classes)
    if not use_torch:
        _check_values(x, stats)
    if reference is None:  # the target's own statistics, from the class moments (no extra pass)
        mean, std = stats.pooled()
        std = np.maximum(std, STD_FLOOR)
    else:
        mean, std = standardisation(reference, x)
    start, total_variance = stats.standardised(mean, std)
    radii = nsigma * np.sqrt(total_variance)
    half_t2k = 0.5 * time_step**2 * k

    current = start
    overlap, dist = pairwise_overlap(current, radii)
    centers = [current]
    energy = [0.25 * k * float(np.einsum("ij,ij->", overlap, overlap))]  # eq. 7, pairs twice
    displacement: list[float] = []
    for step in range(max_steps):
        if variant == "official":
            move = np.minimum(half_t2k * overlap, overlap)
        else:
            move = half_t2k * overlap
        weights = np.divide(move, dist, out=np.zeros_like(move), where=overlap > 0)
        shift = _combine(weights, current)
        if variant == "official":
            size = float(np.abs(shift).sum())
        else:
            size = float(np.sqrt(np.einsum("cd,cd->", shift, shift)))
        if step == 0 and size == 0.0:
            break  # no pair of classes overlaps: nothing moves
        if variant == "official" and step > 0 and size / displacement[0] <= exit_ratio:
            break  # the released code discards the step that triggers the exit
        current = current + shift
        overlap, dist = pairwise_overlap(current, radii)
        centers.append(current)
        energy.append(0.25 * k * float(np.einsum("ij,ij->", overlap, overlap)))
        displacement.append(size)
        if variant == "paper" and step > 0 and size <= exit_ratio * displacement[0]:
            break  # Algorithm 1 keeps the step that triggers the exit
    steps = len(displacement)
    logger.debug("PED (%s): %d step(s), U %.4g -> %.4g", variant, steps, energy[0], energy[-1])

    shift_total = (current - start) * std  # back to the input's units
    if use_torch:
        moved = torch_translate(x, shift_total, y) if steps else x.detach().clone()
    else:
        if steps:  # one new array: the class shifts gathered into it, the features added
            moved = np.take(shift_total.astype(x.dtype), y, axis=0)
            moved += x
        else:
            moved = x.copy()
    return PEDResult(
        features=moved,
        steps=steps,
        energy=np.asarray(energy),
        displacement=np.asarray(displacement),
        centers=np.stack(centers) * std + mean,
        radii=radii,
        shift=shift_total,
        variant=variant,
    )
