r"""Score a zoo's features in *arms*: a move applied to the features, then every metric.

An arm is a function ``move(x, y, reference, row) -> x'`` (``None``: the features as extracted);
PED is :func:`ped_arm`.  :func:`score_arms` scores every model's features in every arm, on all
images (row 0) and on class-stratified image replicates (rows 1..R-1), and returns, per arm and
metric, the ``(R, M)`` score array that :class:`ped.inference.Cell` takes.
:func:`ped_movement` records how far PED moves each model's classes: the steps it keeps,
whether its exit rule fired before the step cap, the share of class pairs whose balls overlap
before the descent, and the mean standardised displacement of an image.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ped.dynamics import PEDOptions, potential_energy_descent, standardisation

__all__ = ["Move", "ped_arm", "score_arms", "ped_movement"]

#: ``move(features, labels, reference, row) -> moved features``; ``reference`` is the model's
#: ``(mean, std)``, ``row`` the replicate's index (0: all images).
Move = Callable[[NDArray[Any], NDArray[Any], Any, int], NDArray[Any]]


def ped_arm(options: Mapping[str, Any] | None = None) -> Move:
    """The PED arm: :func:`ped.potential_energy_descent` with ``options`` (default
    :class:`ped.PEDOptions`), standardised with the model's reference statistics."""
    opts = dict(PEDOptions(**dict(options or {})))

    def move(x: NDArray[Any], y: NDArray[Any], reference: Any, row: int) -> NDArray[Any]:
        return potential_energy_descent(x, y, reference=reference, **opts).features

    return move


def score_arms(
    features: Mapping[str, tuple[NDArray[Any], NDArray[Any]]],
    stats: Mapping[str, Any],
    *,
    arms: Mapping[str, Move | None],
    metrics: Sequence[str],
    metric_options: Mapping[str, Mapping[str, Any]],
    replicates: Sequence[NDArray[np.intp]],
    desc: str = "scoring",
) -> dict[str, NDArray[np.float64]]:
    r"""``{f"{arm}__{metric}": (R, M)}``: each model (``sorted(features)``, columns) scored in
    each arm on each row of ``replicates`` (index arrays into the model's images; row 0 is
    usually all of them).  Every model must score the same labels; ``stats[model]`` is its
    reference for the moves.  The matrices are small, so BLAS runs on one thread."""
    from threadpoolctl import threadpool_limits

    from ped._progress import tqdm
    from ped.metrics import METRICS

    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}")
    models = sorted(features)
    y0 = features[models[0]][1]
    out = {f"{a}__{m}": np.empty((len(replicates), len(models))) for a in arms for m in metrics}
    with threadpool_limits(limits=1, user_api="blas"):
        for j, model in enumerate(tqdm(models, desc=desc, unit="model")):
            x, y = features[model]
            if not np.array_equal(y, y0):
                raise ValueError(f"model {model!r} scores other images than {models[0]!r}")
            for r, idx in enumerate(replicates):
                xr, yr = x[idx], y[idx]
                for arm, move in arms.items():
                    moved = xr if move is None else move(xr, yr, stats[model], r)
                    for metric in metrics:
                        out[f"{arm}__{metric}"][r, j] = float(
                            METRICS[metric](moved, yr, **metric_options.get(metric, {})))
    return out


def ped_movement(
    features: Mapping[str, tuple[NDArray[Any], NDArray[Any]]],
    stats: Mapping[str, Any],
    options: Mapping[str, Any] | None = None,
) -> dict[str, NDArray[np.float64]]:
    r"""Per model (``sorted(features)``), PED on all images: ``steps`` kept, ``exit_fired`` (1
    when the exit rule stopped it before the step cap with at least one step), ``overlap``, the
    share of class pairs :math:`(i, j)` whose balls overlap before the descent,
    :math:`\lVert c_i - c_j \rVert < r_i + r_j` in standardised units, and ``displacement``,
    the mean over images of :math:`\lVert s_{y_n} / \sigma \rVert` (:math:`s` the class
    shifts, :math:`\sigma` the standardisation)."""
    opts = PEDOptions(**dict(options or {}))
    models = sorted(features)
    out = {k: np.empty(len(models)) for k in ("steps", "exit_fired", "overlap", "displacement")}
    for j, model in enumerate(models):
        x, y = features[model]
        result = potential_energy_descent(x, y, reference=stats[model], **opts)
        _, sd = standardisation(stats[model], np.asarray(x))
        centres = result.centers[0] / sd
        dist = np.sqrt(((centres[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2))
        reach = result.radii[:, None] + result.radii[None, :]
        upper = np.triu_indices(len(centres), k=1)
        out["steps"][j] = result.steps
        out["exit_fired"][j] = float(0 < result.steps < opts.max_steps)
        out["overlap"][j] = float((dist[upper] < reach[upper]).mean())
        out["displacement"][j] = float(np.linalg.norm(result.shift / sd, axis=1)[np.asarray(y)]
                                       .mean())  # fmt: skip
    return out
