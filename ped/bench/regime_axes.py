r"""PED across regimes: the verdict's endpoint along five axes where the replica and the paper
differ (the chapter "PED across regimes", ``make regime-scores``).

Each axis is a list of :class:`AxisPoint`; at every point the zoo's features (as the point
defines them) are scored in two arms, as extracted and after PED at the paper's defaults, on all
images and on class-stratified image replicates (:func:`ped.bench.scoring.score_replicates`), and
PED's movement is recorded (:func:`ped.bench.scoring.ped_movement`).  The change in
:math:`\tau_w` of LogME, SFDA and GBC (the verdict's definitions) and of their mean then gets
the replication inference of chapter 9 (:func:`ped.replication.replicate`): an interval with the
zoo fixed, one with the zoo a sample of encoders, and the one-sided tests against zero and
against the published gain.

The axes:

``classes``
    nested class subsets of glyphs62 (:data:`ped.bench.tasks.CLASS_SUBSET_TASKS`: 8, 16 and 32
    classes, two draws each) and glyphs62 itself, each with its own fine-tuning ground truth
    (:mod:`ped.bench.zoo.regime`; glyphs62's from the rebuilt ground truth).
``images``
    a class-stratified share of the labelled (train + validation) images of every rebuilt task,
    and the train + validation + test images, all the images a task has, as the released code
    scores its datasets.
``dimension``
    maps of the standardised features (:class:`FeatureMap`): random orthogonal projections to 32
    and 64 dimensions, a random rotation at 128 (the map's own control: the same dimension, the
    same standardisation), and a random ReLU lift to 2048 dimensions, the paper's width.  PED
    standardises a mapped feature with the map of the pool's held-out features (the
    statistics' source).
``quality``
    the rebuilt zoo beside the first benchmark's 5-epoch encoders fine-tuned on the rebuilt
    tasks (``<method>_5ep``), a zoo whose quality varies widely; both read the common evaluation
    seeds 0-5.
``weak_base``
    sub-zoos whose base :math:`\tau_w` is low, chosen on half of the evaluation seeds and
    measured on the other half (:func:`ped.bench.regime_analysis.weak_base`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ped.bench.scoring import PEDRuns, ped_arm, ped_movement, score_replicates
from ped.bench.tasks import (
    CLASS_SUBSET_DRAWS,
    CLASS_SUBSET_PARENT,
    CLASS_SUBSET_SIZES,
    REBUILT_TASK_NAMES,
)
from ped.bench.verdict import (
    PRIMARY_METRICS,
    PRIMARY_OPTIONS,
    _features_digest,
    _is_current,
    _store,
    load_scores,
)
from ped.bench.zoo.regime import short_models, short_name
from ped.bench.zoo.train import heldout_features, load_stats, read_manifest, task_features
from ped.inference import image_replicates
from ped.paper import data_dir
from ped.scoring import bind_metrics

__all__ = [
    "FeatureMap",
    "AxisPoint",
    "AXES",
    "AXIS_POINTS",
    "EVAL_SEEDS",
    "stratified_share",
    "point_features",
    "score_point",
    "score_axes",
    "load_point",
]

logger = logging.getLogger(__name__)

#: The axes, in the chapter's order.
AXES: tuple[str, ...] = ("classes", "images", "dimension", "quality", "weak_base")
#: The protocol's common evaluation seeds, which the class subsets run (the 5-epoch encoders run
#: the first of them first: :func:`ped.bench.regime_analysis.quality_seeds`).
EVAL_SEEDS: tuple[int, ...] = (0, 1, 2, 3, 4, 5)


@dataclass(frozen=True)
class FeatureMap:
    r"""A random map of standardised features :math:`u = (x - \mu) / \sigma` (the encoder's
    source statistics): ``project`` to ``dim`` dimensions, :math:`z = u P^\top` with
    orthonormal rows :math:`P` (``rotate``: the same with ``dim`` equal to the input's);
    ``lift``, :math:`z = \max(0, u W^\top / \sqrt{D} + b)` with :math:`W_{ij}, b_i \sim
    N(0, 1)`.  Drawn from ``np.random.default_rng([seed, D, dim])``: every model gets the same
    map."""

    kind: str
    dim: int
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("project", "rotate", "lift"):
            raise ValueError(f"kind must be project, rotate or lift, got {self.kind!r}")
        if self.dim < 1:
            raise ValueError(f"dim must be >= 1, got {self.dim}")

    def weights(self, d_in: int) -> tuple[NDArray[np.float64], NDArray[np.float64] | None]:
        """``(W, b)``: the ``(dim, d_in)`` matrix and the lift's offsets (``None`` otherwise)."""
        rng = np.random.default_rng([self.seed, d_in, self.dim])
        if self.kind == "lift":
            return rng.standard_normal((self.dim, d_in)), rng.standard_normal(self.dim)
        if self.kind == "rotate" and self.dim != d_in:
            raise ValueError(f"a rotation keeps the dimension: dim {self.dim} for {d_in}")
        if self.dim > d_in:
            raise ValueError(f"cannot project {d_in} dimensions to {self.dim}")
        q, r = np.linalg.qr(rng.standard_normal((d_in, self.dim)))
        return (q * np.sign(np.diag(r))).T, None

    def __call__(self, x: NDArray[Any], mean: NDArray[Any], std: NDArray[Any]) -> NDArray[np.float64]:
        u = (np.asarray(x, dtype=np.float64) - mean) / std
        w, b = self.weights(u.shape[1])
        if b is None:
            return u @ w.T
        return np.maximum(u @ w.T / np.sqrt(u.shape[1]) + b, 0.0)


@dataclass(frozen=True)
class AxisPoint:
    """One point of an axis: the tasks scored, the images (``share`` of the labelled ones, or
    ``"all"`` splits), the feature map, and the zoo (``rebuilt``, or ``spread``: the rebuilt
    zoo and the 5-epoch encoders).  ``value`` places it on the axis."""

    axis: str
    name: str
    value: float
    tasks: tuple[str, ...]
    share: float = 1.0
    splits: str = "trainval"
    feature_map: FeatureMap | None = None
    zoo: str = "rebuilt"

    def folder(self) -> str:
        return f"{self.axis}/{self.name}"


def _points() -> dict[str, tuple[AxisPoint, ...]]:
    tasks = tuple(REBUILT_TASK_NAMES)
    classes = [AxisPoint("classes", str(k), k, tuple(f"{CLASS_SUBSET_PARENT}_{k}{d}"
                                                     for d in CLASS_SUBSET_DRAWS))
               for k in CLASS_SUBSET_SIZES]  # fmt: skip
    classes.append(AxisPoint("classes", "62", 62, (CLASS_SUBSET_PARENT,)))
    images = [AxisPoint("images", f"{int(100 * s)}%", s, tasks, share=s) for s in (0.1, 0.25, 0.5)]
    images.append(AxisPoint("images", "100%", 1.0, tasks))
    images.append(AxisPoint("images", "all", float("nan"), tasks, splits="all"))
    dims = [AxisPoint("dimension", f"project{d}", d, tasks, feature_map=FeatureMap("project", d))
            for d in (32, 64)]  # fmt: skip
    dims.append(AxisPoint("dimension", "rotate128", 128, tasks, feature_map=FeatureMap("rotate", 128)))
    dims.append(AxisPoint("dimension", "lift2048", 2048, tasks, feature_map=FeatureMap("lift", 2048)))
    quality = (AxisPoint("quality", "spread", float("nan"), tasks, zoo="spread"),)
    return {"classes": tuple(classes), "images": tuple(images), "dimension": tuple(dims),
            "quality": quality}  # fmt: skip


#: The scored points of each axis (the weak-base axis reuses ``images/100%``).
AXIS_POINTS: dict[str, tuple[AxisPoint, ...]] = _points()


def stratified_share(labels: NDArray[Any], share: float, *, seed: int = 0) -> NDArray[np.intp]:
    """Sorted indices of ``share`` of each class's images (rounded, at least 2 per class), drawn
    without replacement by ``np.random.default_rng([seed, class])``."""
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share}")
    y = np.asarray(labels)
    keep = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        n = min(idx.size, max(2, int(round(share * idx.size))))
        keep.append(np.random.default_rng([seed, int(c)]).permutation(idx)[:n])
    return np.sort(np.concatenate(keep))


def _zoo_inputs(
    task: str, zoo: str, splits: str, cache: Any
) -> tuple[dict[str, tuple[NDArray[Any], NDArray[Any]]], dict[str, tuple[NDArray[Any], NDArray[Any]]],
           dict[str, tuple[str, Path]]]:  # fmt: skip
    """Features, statistics and (name -> (encoder, zoo folder)) of a point's zoo on ``task``."""
    zoos = [(data_dir() / "zoo_v2", "")]
    if zoo == "spread":
        zoos.append((data_dir() / "zoo", "_5ep"))
    rebuilt = list(read_manifest(zoos[0][0])["encoders"])
    feats, stats, origin = {}, {}, {}
    for folder, suffix in zoos:
        names = rebuilt if not suffix else short_models(list(read_manifest(folder)["encoders"]),
                                                        rebuilt)  # fmt: skip
        arrays = task_features(task, zoo_dir=folder, cache=cache, names=names)
        for name, f in arrays.items():
            parts = ("train", "val", "test") if splits == "all" else ("train", "val")
            key = short_name(name) if suffix else name
            feats[key] = (np.concatenate([f[f"x_{s}"] for s in parts]),
                          np.concatenate([f[f"y_{s}"] for s in parts]))  # fmt: skip
            stats[key] = load_stats(name, folder)
            origin[key] = (name, folder)
    return feats, stats, origin


def point_features(
    point: AxisPoint, task: str, *, cache: str | os.PathLike[str] | None = None
) -> tuple[dict[str, tuple[NDArray[Any], NDArray[Any]]], dict[str, tuple[NDArray[Any], NDArray[Any]]]]:
    """``(features, stats)`` of every model of ``point``'s zoo on ``task``: model -> (features,
    labels) of the point's images, and model -> the (mean, std) PED standardises with."""
    feats, stats, origin = _zoo_inputs(task, point.zoo, point.splits, cache)
    if point.share < 1:
        y = next(iter(feats.values()))[1]
        idx = stratified_share(y, point.share)
        feats = {m: (x[idx], yy[idx]) for m, (x, yy) in feats.items()}
    fmap = point.feature_map
    if fmap is None:
        return feats, stats
    mapped, mapped_stats = {}, {}
    for model, (x, y) in feats.items():
        name, folder = origin[model]
        mean, std = stats[model]
        held = fmap(heldout_features([name], zoo_dir=folder, cache=cache)[name], mean, std)
        mapped[model] = (fmap(x, mean, std), y)
        mapped_stats[model] = (held.mean(axis=0), held.std(axis=0))
    return mapped, mapped_stats


def score_point(
    point: AxisPoint,
    out_dir: str | os.PathLike[str],
    *,
    cache: str | os.PathLike[str] | None = None,
    n_replicates: int = 10,
    random_state: int = 0,
    force: bool = False,
) -> list[Path]:
    """Score every task of ``point`` into ``<out>/<axis>/<name>/<task>.npz`` (skipped when its
    stored configuration matches), with the verdict's metrics, options and PED defaults, and
    record each file in the folder's sha256 manifest."""
    paths = []
    for task in point.tasks:
        feats, stats = point_features(point, task, cache=cache)
        models = sorted(feats)
        config = {"point": {**asdict(point), "feature_map": asdict(point.feature_map)
                            if point.feature_map else None},
                  "task": task, "models": models, "metrics": list(PRIMARY_METRICS),
                  "metric_options": PRIMARY_OPTIONS, "ped_options": {},
                  "n_replicates": n_replicates, "random_state": random_state,
                  "features": _features_digest(feats, models)}  # fmt: skip
        config = json.loads(json.dumps(config))  # NaN values and tuples as stored
        path = Path(out_dir) / point.folder() / f"{task}.npz"
        if not force and _is_current(path, config):
            paths.append(path)
            continue
        y = feats[models[0]][1]
        reps = [np.arange(len(y)), *image_replicates(y, n_replicates, random_state=random_state)]
        arrays = score_replicates(feats, arms={"base": None, "ped": ped_arm(PEDRuns(stats))},
                            metrics=bind_metrics(PRIMARY_METRICS, options=PRIMARY_OPTIONS),
                            replicates=reps, desc=f"{point.folder()} {task}")  # fmt: skip
        moved = ped_movement(feats, stats)
        paths.append(_store(path, task, models, config, arrays, n_images=np.int64(len(y)),
                            n_classes=np.int64(len(np.unique(y))),
                            dim=np.int64(feats[models[0]][0].shape[1]), **moved))  # fmt: skip
    return paths


def score_axes(
    out_dir: str | os.PathLike[str],
    *,
    axes: Sequence[str] = ("classes", "images", "dimension", "quality"),
    cache: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """:func:`score_point` for every point of ``axes`` (resumable task by task)."""
    unknown = sorted(set(axes) - set(AXIS_POINTS))
    if unknown:
        raise ValueError(f"unknown axis/axes {unknown}; scored axes: {', '.join(AXIS_POINTS)}")
    return [p for a in axes for point in AXIS_POINTS[a] for p in score_point(point, out_dir,
                                                                          cache=cache)]


def load_point(point: AxisPoint, out_dir: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """The stored scores of ``point``, task -> :func:`ped.bench.verdict_store.load_task_scores`
    (each file verified against its folder's manifest)."""
    return load_scores(Path(out_dir) / point.folder(), list(point.tasks))
