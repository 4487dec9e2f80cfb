r"""Score a zoo's features in *arms*: a move applied to the features, then every metric.

An arm is a function ``move(x, y, model, row) -> x'`` (``None``: the features as extracted):
PED (:func:`ped_arm`), PED on shuffled labels (:func:`shuffled_arm`), a move built from PED's
class shifts, as the placebo and the label-informed control are (:func:`shift_arm`), or any
other.  :func:`score_replicates` scores every model's features in every arm with every metric
through :func:`ped.scoring.score_arms` (the one scoring path of :mod:`ped`), on all images
(row 0) and on class-stratified image replicates (rows 1..R-1), and returns, per arm and
metric, the ``(R, M)`` score array that :class:`ped.inference.Cell` takes; the verdict's arms
and controls, its seeded metrics and the regime chapter all use it.
:class:`PEDRuns` runs PED once per model and row for every arm that needs it.
:func:`ped_movement` records how far PED moves each model's classes: the steps it keeps,
whether its exit rule fired before the step cap, the share of class pairs whose balls overlap
before the descent, and the mean standardised displacement of an image.

The tidy Table 1 form (one row per model, metric and arm, with timings) is :func:`score_zoo`,
on :func:`ped.fullscale.scoring.score_items`, the full-scale command line's loop (which scores
through :func:`ped.scoring.score_arms` too).
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

from ped._progress import tqdm
from ped.bench.zoo.train import load_stats, task_features
from ped.dynamics import PEDOptions, PEDResult, potential_energy_descent, standardisation
from ped.evaluation import BootstrapInterval, bootstrap_ci, weighted_tau
from ped.fullscale.scoring import ScoreItem, score_items
from ped.inference import shuffled_label_ped
from ped.metrics import METRICS, ZOO_METRICS
from ped.scoring import bind_metrics, score_arms

__all__ = ["Move", "MetricFn", "PEDRuns", "ped_arm", "shuffled_arm", "shift_arm",
           "score_replicates", "ped_movement", "zoo_features", "score_zoo", "tau_table",
           "seed_bootstrap_tau", "synthetic_task"]  # fmt: skip

#: ``move(features, labels, model, row) -> moved features``: ``row`` is the replicate's index
#: (0: all images).
Move = Callable[[NDArray[Any], NDArray[Any], str, int], NDArray[Any]]
#: ``metric(features, labels) -> score``.
MetricFn = Callable[[NDArray[Any], NDArray[Any]], float]


class PEDRuns:
    """PED on one model's features of one row, run once and shared by the arms that need it
    (the features moved, the class shifts, the steps).  Only the current model's runs are
    kept."""

    def __init__(self, stats: Mapping[str, Any], options: Mapping[str, Any] | None = None):
        self.stats = stats
        self.options = dict(PEDOptions(**dict(options or {})))
        self._model: str | None = None
        self._runs: dict[int, PEDResult] = {}

    def __call__(self, x: NDArray[Any], y: NDArray[Any], model: str, row: int) -> PEDResult:
        if model != self._model:
            self._model, self._runs = model, {}
        if row not in self._runs:
            self._runs[row] = potential_energy_descent(x, y, reference=self.stats[model],
                                                       **self.options)  # fmt: skip
        return self._runs[row]


def ped_arm(runs: PEDRuns) -> Move:
    """The PED arm: the features :func:`ped.potential_energy_descent` moved (``runs``' options,
    standardised with the model's statistics)."""
    return lambda x, y, model, row: runs(x, y, model, row).features


def shuffled_arm(runs: PEDRuns, random_state: int = 0) -> Move:
    """PED run on a permutation of the labels, seeded ``random_state + row``
    (:func:`ped.inference.shuffled_label_ped`); the metrics score the true labels."""
    def move(x: NDArray[Any], y: NDArray[Any], model: str, row: int) -> NDArray[Any]:
        return shuffled_label_ped(x, y, random_state=random_state + row,
                                  reference=runs.stats[model], **runs.options)  # fmt: skip

    return move


def shift_arm(runs: PEDRuns, shift: Callable[..., NDArray[Any]], **kwargs: Any) -> Move:
    """A move built from PED's class shifts on the same row: ``shift(x, y, pedshift,
    scale=model's std, **kwargs)`` (:func:`ped.inference.placebo_shift`,
    :func:`ped.inference.radial_shift`)."""

    def move(x: NDArray[Any], y: NDArray[Any], model: str, row: int) -> NDArray[Any]:
        moved = runs(x, y, model, row)
        return shift(x, y, moved.shift, scale=np.asarray(runs.stats[model][1]), **kwargs)

    return move


def score_replicates(
    features: Mapping[str, tuple[NDArray[Any], NDArray[Any]]],
    *,
    arms: Mapping[str, Move | None],
    metrics: Mapping[str, MetricFn],
    replicates: Sequence[NDArray[np.intp]],
    desc: str = "scoring",
) -> dict[str, NDArray[np.float64]]:
    r"""``{f"{arm}__{metric}": (R, M)}``: each model (``sorted(features)``, columns) scored in
    each arm by each metric (:func:`ped.scoring.bind_metrics`) on each row of ``replicates`` (index arrays
    into the model's images; row 0 is usually all of them), through
    :func:`ped.scoring.score_arms`.  Every model must score the same labels; a failure
    propagates.  The matrices are small, so BLAS runs on one thread."""
    models = sorted(features)
    y0 = features[models[0]][1]
    out = {f"{a}__{m}": np.empty((len(replicates), len(models))) for a in arms for m in metrics}
    if not out:  # no arm (a control with no draws) or no metric: nothing to score
        return out
    with threadpool_limits(limits=1, user_api="blas"):
        for j, model in enumerate(tqdm(models, desc=desc, unit="model")):
            x, y = features[model]
            if not np.array_equal(y, y0):
                raise ValueError(f"model {model!r} scores other images than {models[0]!r}")
            for r, idx in enumerate(replicates):
                row_arms = {a: None if move is None else functools.partial(_on_row, move, model, r)
                            for a, move in arms.items()}  # fmt: skip
                for s in score_arms(x[idx], y[idx], row_arms, metrics):
                    out[f"{s.arm}__{s.metric}"][r, j] = s.score
    return out


def _on_row(move: Move, model: str, row: int, x: NDArray[Any], y: NDArray[Any]) -> NDArray[Any]:
    return move(x, y, model, row)


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


# --------------------------------------------------------------------------------------------
# A zoo's features and their scores in the tidy form of the Table 1 chapter
# --------------------------------------------------------------------------------------------

Reference = Literal["source", "target"]


def zoo_features(
    task: str,
    *,
    split: Literal["train", "trainval"] = "trainval",
    models: Sequence[str] | None = None,
    zoo_dir: str | os.PathLike[str] | None = None,
    cache: str | os.PathLike[str] | None = None,
) -> dict[str, tuple[NDArray[np.float32], NDArray[np.int64]]]:
    """``{model: (features, labels)}`` of every zoo encoder on a task's labelled images.

    ``split="trainval"`` (default) scores the training and validation images together: every
    labelled image a practitioner holds before fine-tuning; ``"train"`` scores the training
    images only.  Features are cached by :func:`ped.bench.zoo.train.task_features`.
    """
    if split not in ("train", "trainval"):
        raise ValueError(f"split must be 'train' or 'trainval', got {split!r}")
    feats = task_features(task, zoo_dir=zoo_dir, cache=cache, names=models)
    out = {}
    for name, f in feats.items():
        if split == "train":
            out[name] = (f["x_train"], f["y_train"])
        else:
            out[name] = (np.concatenate([f["x_train"], f["x_val"]]),
                         np.concatenate([f["y_train"], f["y_val"]]))  # fmt: skip
    return out


def score_zoo(
    features: Mapping[str, tuple[NDArray[Any], NDArray[Any]]],
    metrics: Sequence[str] | None = None,
    *,
    ped: bool = False,
    reference: Reference = "source",
    zoo_dir: str | os.PathLike[str] | None = None,
    definitions: str = "release",
    **ped_options: Any,
) -> pd.DataFrame:
    """Score every model's features with every metric, on the features or after PED.

    ``metrics`` are names of :data:`ped.metrics.METRICS`, the metrics that need only features
    and target labels (default: all of them; LEEP and NCE need a source classifier, which
    self-supervised encoders do not have), or of :data:`ped.metrics.ZOO_METRICS` (NCTI, ETran),
    whose scores are relative to the zoo: their terms are computed per model and combined over
    the models of ``features``; their rows follow the others'.

    ``definitions`` picks each metric's options from :data:`ped.metrics.DEFINITIONS`:
    ``"release"`` (default) as the released SFDA/PED code computes them, which is what the
    published Table 1 reports (SFDA and NLEEP without their log), or ``"paper"``.

    ``reference="source"`` standardises PED with the encoder's per-dimension mean and std on the
    held-out pool images (:func:`ped.bench.zoo.train.load_stats`, the paper's ImageNet-val analogue);
    ``"target"`` with the target features' own statistics.  ``ped_options`` go to
    :func:`ped.potential_energy_descent` (``nsigma``, ``time_step``, ``max_steps``, ``variant``...).
    Returns a tidy table ``model, metric, ped, score, seconds, ped_seconds, ped_steps``.
    """
    if metrics is None:
        metrics = list(METRICS)
    per_model = [m for m in metrics if m not in ZOO_METRICS]
    zoo_level = [m for m in metrics if m in ZOO_METRICS]
    fns = bind_metrics(per_model, definitions=definitions)
    if reference not in ("source", "target"):
        raise ValueError(f"reference must be 'source' or 'target', got {reference!r}")
    if not ped and ped_options:
        raise ValueError(f"PED options {sorted(ped_options)} given with ped=False")
    runs = [_ped_run(model, x, y, ped, reference, zoo_dir, ped_options)
            for model, (x, y) in features.items()]  # fmt: skip
    # one PED run per model, shared by the per-model and the zoo-level metrics
    items = [ScoreItem(model, "", run[0], y)
             for (model, (_, y)), run in zip(features.items(), runs)]  # fmt: skip
    rows = score_items(items, fns, record_errors=False) if fns else []
    rows += _zoo_level_rows(items, zoo_level)
    table = pd.DataFrame(rows, columns=["model", "metric", "score", "seconds"])
    moved = pd.DataFrame([(m, s, n) for m, (_, s, n) in zip(features, runs)],
                         columns=["model", "ped_seconds", "ped_steps"])  # fmt: skip
    table = table.merge(moved, on="model", how="left", sort=False).assign(ped=ped)
    return table[["model", "metric", "ped", "score", "seconds", "ped_seconds", "ped_steps"]]


def _ped_run(model: str, x: NDArray[Any], y: NDArray[Any], ped: bool, reference: str,
             zoo_dir: str | os.PathLike[str] | None,
             ped_options: Mapping[str, Any]) -> tuple[NDArray[Any], float, int]:  # fmt: skip
    """``(features, PED seconds, PED steps)`` of one model: its features moved by
    :func:`ped.potential_energy_descent` when ``ped`` (standardised with the model's pool
    statistics for ``reference="source"``, the target's own otherwise), else as given."""
    if not ped:
        return x, 0.0, 0

    stats = load_stats(model, zoo_dir) if reference == "source" else None
    start = time.perf_counter()
    result = potential_energy_descent(x, y, reference=stats, **ped_options)
    return result.features, time.perf_counter() - start, result.steps


def _zoo_level_rows(items: Sequence[Any], names: Sequence[str]) -> list[dict[str, Any]]:
    """Rows of :func:`score_zoo` for the zoo-level metrics ``names``: every model's terms,
    combined over the models."""
    rows = []
    for name in names:
        terms_fn, combine = ZOO_METRICS[name]
        terms, seconds = [], []
        for item in items:
            start = time.perf_counter()
            terms.append(terms_fn(item.features, item.labels))
            seconds.append(time.perf_counter() - start)
        rows += [{"model": item.model, "metric": name, "score": float(score), "seconds": sec}
                 for item, sec, score in zip(items, seconds, combine(terms))]  # fmt: skip
    return rows


def tau_table(scores: pd.DataFrame, accuracy: pd.Series) -> pd.Series:
    r""":math:`\tau_w` of each metric's scores (``scores``: columns ``model, metric, score``)
    against ``accuracy`` (indexed by model), one value per metric."""
    out = {}
    for metric, group in scores.groupby("metric", sort=False):
        s = group.set_index("model")["score"]
        missing = set(s.index) - set(accuracy.index)
        if missing:
            raise ValueError(f"no ground truth for model(s) {sorted(missing)}")
        out[metric] = weighted_tau(s.to_numpy(), accuracy.loc[s.index].to_numpy())
    return pd.Series(out, name="tau_w")


def seed_bootstrap_tau(
    scores: pd.Series,
    runs: pd.DataFrame,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    random_state: int = 0,
) -> BootstrapInterval:
    r"""Bootstrap interval of :math:`\tau_w` over the ground-truth seeds.

    ``scores`` is indexed by model; ``runs`` is a models x seeds table of test accuracies (one
    task, the selected setting).  Each resample draws seed columns with replacement, averages them
    per model, and recomputes :math:`\tau_w` against the (fixed) scores.
    """
    missing = set(scores.index) - set(runs.index)
    if missing:
        raise ValueError(f"the runs table is missing model(s) {sorted(missing)}")
    table = runs.loc[scores.index]
    if table.isna().any().any():
        raise ValueError("the runs table has missing seeds for some model")
    values = table.to_numpy(dtype=float)
    s = scores.to_numpy(dtype=float)

    def stat(idx: NDArray[np.intp]) -> float:
        return weighted_tau(s, values[:, idx].mean(1))

    return bootstrap_ci(stat, values.shape[1], n_resamples=n_resamples, confidence=confidence,
                        random_state=random_state)  # fmt: skip


def synthetic_task(
    n: int, dim: int, n_classes: int, *, seed: int = 0, mean_scale: float = 0.4
) -> tuple[NDArray[np.float32], NDArray[np.intp]]:
    r"""Synthetic features of a given shape for timing (the paper's Flowers: 8189, 2048, 102).

    Gaussian classes, float32, seeded: noise with a decaying spectrum (std of direction
    :math:`k` is :math:`1/\sqrt{k}`) in a random rotation, so that PCA-based metrics see a
    realistic number of components, and class means in the 64 highest-variance directions at
    ``mean_scale`` times the noise std, so that the classes overlap (at the Flowers shape SFDA is
    about -0.14 and GBC about -680) instead of being separable in low-noise directions.  Labels
    cycle through ``0..n_classes-1`` and are shuffled.
    """
    if n < n_classes or dim < 1 or n_classes < 2:
        raise ValueError(f"need n >= n_classes >= 2 and dim >= 1, got {n}, {dim}, {n_classes}")
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    rng.shuffle(y)
    rotation = np.linalg.qr(rng.standard_normal((dim, dim)))[0]
    scales = 1.0 / np.sqrt(np.arange(1, dim + 1))
    k = min(64, dim)
    means = (rng.standard_normal((n_classes, k)) * scales[:k] * mean_scale) @ rotation[:, :k].T
    x = means[y] + (rng.standard_normal((n, dim)) * scales) @ rotation.T
    return x.astype(np.float32), y.astype(np.intp)
