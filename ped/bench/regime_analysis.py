r"""PED across regimes, the analysis: the replication inference at every point of an axis
(:func:`axis_table`), the call at the point nearest the paper (:func:`axis_verdict`), the
weak-base selection (:func:`weak_base`), the paper's regime (:func:`paper_regime`,
:func:`published_base_gain`), and all of it from the stored scores in one call
(:func:`regime_results`).  The points and their scores are :mod:`ped.bench.regime_axes`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ped.bench import complete_cells, get_benchmark
from ped.bench.regime_axes import AXIS_POINTS, AxisPoint, load_point
from ped.bench.verdict import PRIMARY_METRICS, accuracy_table, restrict_models
from ped.bench.zoo.finetune import verify_ground_truth
from ped.inference import Cell
from ped.paper import data_dir, dataset_table, finetune_accuracy, published_gains, published_tau_w
from ped.replication import ReplicationEstimate, replicate, weighted_tau_rows

__all__ = [
    "point_cells",
    "axis_table",
    "axis_verdict",
    "weak_base",
    "published_base_gain",
    "paper_regime",
    "RegimeResults",
    "regime_results",
    "PAPER_SIDE",
    "MIN_QUALITY_SEEDS",
    "quality_seeds",
]

logger = logging.getLogger(__name__)


def point_cells(
    scores: Mapping[str, Mapping[str, Any]],
    gt: pd.DataFrame,
    *,
    models: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
) -> tuple[list[Cell], list[str]]:
    """The task x metric cells of stored scores (``models`` only, when given) against ``gt``'s
    evaluation runs (``seeds`` only, when given), and the metric of each."""
    if models is not None:
        scores = restrict_models(scores, models)
    if seeds is not None:
        gt = gt[gt["seed"].isin(list(seeds))]
    cells, labels = [], []
    for task, s in scores.items():
        acc = accuracy_table(gt, task, s["models"])
        for metric in PRIMARY_METRICS:
            cells.append(Cell(s[f"base__{metric}"], s[f"ped__{metric}"], acc, group=task))
            labels.append(metric)
    return cells, labels


def axis_table(
    rows: Sequence[tuple[AxisPoint, list[Cell], list[str], Mapping[str, Any]]],
    published: Mapping[str, float],
    *,
    n_resamples: int = 1000,
    random_state: int = 0,
) -> pd.DataFrame:
    """One row per point and label (each metric and ``mean``): the replication estimate
    (:class:`ped.replication.ReplicationEstimate`'s fields), the base :math:`\\tau_w` (mean over
    the label's cells), and ``extra`` (the point's movement, sizes) for each input row
    ``(point, cells, labels, extra)``."""
    out = []
    for point, cells, labels, extra in rows:
        est: dict[str, ReplicationEstimate] = replicate(cells, labels, published,
                                                        n_resamples=n_resamples,
                                                        random_state=random_state)  # fmt: skip
        truth = np.stack([c.accuracy.mean(axis=1) for c in cells])
        base = weighted_tau_rows(np.stack([c.base[0] for c in cells]), truth)
        for label, e in est.items():
            cols = [j for j, m in enumerate(labels) if label in ("mean", m)]
            out.append({"axis": point.axis, "point": point.name, "value": point.value,
                        **asdict(e), "base_tau": float(base[cols].mean()), **extra})  # fmt: skip
    return pd.DataFrame(out)


def axis_verdict(row: Mapping[str, Any]) -> str:
    """Whether the verdict holds at a point (one :func:`axis_table` row, the zoo a sample):
    ``"overturned"`` when the population interval lies above zero (a gain); ``"holds"`` when it
    lies below the published gain and does not lie above zero; ``"undecided"`` when it reaches
    the published gain."""
    if row["pop_low"] > 0:
        return "overturned"
    if row["pop_high"] < row["published"]:
        return "holds"
    return "undecided"


def weak_base(
    scores: Mapping[str, Mapping[str, Any]],
    gt: pd.DataFrame,
    *,
    size: int = 7,
    n_subzoos: int = 300,
    n_bins: int = 4,
    n_resamples: int = 1000,
    random_state: int = 0,
) -> pd.DataFrame:
    r"""PED's change on sub-zoos binned by their base :math:`\tau_w`, selected and measured on
    disjoint halves of the evaluation seeds.

    Per task, the evaluation seeds are split at random into halves *A* and *B*, and
    ``n_subzoos`` random sub-zoos of ``size`` models are drawn.  Each sub-zoo's base
    :math:`\tau_w` (mean over the three metrics, all images) against the mean accuracy on *A*
    puts it in one of ``n_bins`` quantile bins of its task (bin 0: the weakest base).  For each
    bin, the change :math:`\tau_w(\mathrm{PED}) - \tau_w(\text{base})` is then measured against
    *B* (mean over tasks, sub-zoos and metrics), with a percentile interval that resamples *B*'s
    seeds and the image replicates (the sub-zoos fixed); the same change measured on *A*
    (``change_on_a``) shows what selecting and measuring on the same seeds would add, and the
    base on *B* (``base_on_b``) how far the weak bin's base regresses to the mean.
    """
    rng = np.random.default_rng(random_state)
    per_bin: dict[int, list[dict[str, Any]]] = {b: [] for b in range(n_bins)}
    plans = []
    for task, s in scores.items():
        models = s["models"]
        if size >= len(models):
            raise ValueError(f"size must be below the zoo's {len(models)} models, got {size}")
        acc = accuracy_table(gt, task, models)
        order = rng.permutation(acc.shape[1])
        half_a, half_b = np.sort(order[: acc.shape[1] // 2]), np.sort(order[acc.shape[1] // 2 :])
        subs = np.stack([np.sort(rng.choice(len(models), size, replace=False))
                         for _ in range(n_subzoos)])  # fmt: skip
        base = {m: np.asarray(s[f"base__{m}"]) for m in PRIMARY_METRICS}
        ped = {m: np.asarray(s[f"ped__{m}"]) for m in PRIMARY_METRICS}

        def taus(arm: Mapping[str, NDArray[Any]], row: int, truth: NDArray[Any],
                 subs: NDArray[np.intp] = subs) -> NDArray[Any]:
            return np.mean([weighted_tau_rows(arm[m][row][subs], truth[subs])
                            for m in PRIMARY_METRICS], axis=0)  # fmt: skip

        truth_a, truth_b = acc[:, half_a].mean(axis=1), acc[:, half_b].mean(axis=1)
        base_a = taus(base, 0, truth_a)
        edges = np.quantile(base_a, np.linspace(0, 1, n_bins + 1)[1:-1])
        bins = np.searchsorted(edges, base_a, side="right")
        change_a = taus(ped, 0, truth_a) - base_a
        base_b = taus(base, 0, truth_b)
        change_b = taus(ped, 0, truth_b) - base_b
        for b in range(n_bins):
            k = bins == b
            per_bin[b].append({"task": task, "base_on_a": base_a[k].mean(),
                               "base_on_b": base_b[k].mean(), "change_on_a": change_a[k].mean(),
                               "change": change_b[k].mean()})  # fmt: skip
        plans.append((acc[:, half_b], base, ped, taus, bins))
    draws = np.zeros((n_resamples, n_bins))
    for acc_b, base, ped, taus, bins in plans:
        n_rep = next(iter(base.values())).shape[0]
        for i in range(n_resamples):
            seeds = rng.integers(0, acc_b.shape[1], acc_b.shape[1])
            row = int(rng.integers(1, n_rep))
            truth = acc_b[:, seeds].mean(axis=1)
            change = taus(ped, row, truth) - taus(base, row, truth)
            draws[i] += [change[bins == b].mean() / len(plans) for b in range(n_bins)]
    out = []
    for b in range(n_bins):
        frame = pd.DataFrame(per_bin[b])
        low, high = np.quantile(draws[:, b], [0.025, 0.975])
        out.append({"bin": b, "base_on_a": frame["base_on_a"].mean(),
                    "base_on_b": frame["base_on_b"].mean(),
                    "change_on_a": frame["change_on_a"].mean(), "change": frame["change"].mean(),
                    "low": float(low), "high": float(high),
                    "task_sd": float(frame["change"].std(ddof=1)), "n_tasks": len(frame)})  # fmt: skip
    return pd.DataFrame(out)


def published_base_gain(metrics: Sequence[str] = ("LogME", "SFDA", "GBC")) -> pd.DataFrame:
    """The paper's cells (metric x dataset): base :math:`\\tau_w` and PED's gain, from its
    Table 1 (:func:`ped.paper.published_tau_w`)."""
    table = published_tau_w()
    rows = []
    for m in metrics:
        for dataset in table.columns:
            rows.append({"metric": m.lower(), "dataset": dataset, "base": table.loc[m, dataset],
                         "gain": table.loc[f"{m}+PED", dataset] - table.loc[m, dataset]})
    return pd.DataFrame(rows)


def paper_regime() -> pd.DataFrame:
    """The paper's regime on each axis, over the 10 datasets of its Table 1: ``classes``,
    labelled ``images`` per class (every split, as its code scores them), feature ``dimension``
    (ResNet-50), the zoo's quality ``spread`` (SD over the 12 models of the fine-tuning accuracy,
    points) and the ``base`` :math:`\tau_w` (mean of LogME, SFDA and GBC), one row per dataset."""
    tau = published_tau_w()
    data = dataset_table().loc[list(tau.columns)]
    acc = finetune_accuracy().loc[list(tau.columns)]
    return pd.DataFrame({"classes": data["classes"], "images": data["samples"] / data["classes"],
                         "dimension": 2048, "spread": acc.std(axis=1, ddof=1),
                         "base": tau.loc[["LogME", "SFDA", "GBC"]].mean(axis=0)})  # fmt: skip


@dataclass(frozen=True)
class RegimeResults:
    """The regime chapter's numbers (:func:`regime_results`).

    ``table``: one row per scored point and label (:func:`axis_table`), the dimension axis with
    the extracted features' point (``raw128``) and the quality axis with the rebuilt zoo alone
    (``rebuilt``) on the same seeds; ``verdicts``: per axis, its paper-side point, that point's
    interval of the three-metric mean and :func:`axis_verdict`; ``weak``: :func:`weak_base`;
    ``cells``: the replica's task x metric cells (base :math:`\\tau_w`, PED's change);
    ``pending``: what was left out for want of ground truth or scores (``axis/point`` when the
    point has no scores, ``axis/point:task`` when one task of it lacks its ground truth; the
    point is then computed on its other tasks).
    """

    table: pd.DataFrame
    verdicts: pd.DataFrame
    weak: pd.DataFrame
    cells: pd.DataFrame
    pending: tuple[str, ...]


#: The point of each axis nearest the paper's regime, where the verdict is called.
PAPER_SIDE: dict[str, str] = {"classes": "62", "images": "all", "dimension": "lift2048",
                              "quality": "spread"}  # fmt: skip


def _movement(scores: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    keys = ("steps", "exit_fired", "overlap", "displacement")
    out = {k: float(np.mean([np.mean(s[k]) for s in scores.values()])) for k in keys}
    out["images_per_class"] = float(np.mean([int(s["n_images"]) / int(s["n_classes"])
                                             for s in scores.values()]))  # fmt: skip
    out["dim"] = float(np.mean([int(s["dim"]) for s in scores.values()]))
    out["n_models"] = len(next(iter(scores.values()))["models"])
    return out


#: The fewest evaluation seeds, common to every model of the spread zoo, that a task of the
#: quality axis needs (the 5-epoch encoders run seeds 0..2 first, then the rest).
MIN_QUALITY_SEEDS = 3


def quality_seeds(gt: pd.DataFrame, models: Sequence[str]) -> pd.DataFrame:
    """The evaluation runs of ``models`` on the seeds that every one of them has, per task; a
    task where some model lacks runs, or fewer than :data:`MIN_QUALITY_SEEDS` seeds are common,
    is left out."""
    runs = gt[(gt["role"] == "eval") & gt["model"].isin(list(models))]
    keep = []
    for _, rows in runs.groupby("task"):
        seeds = rows.groupby("model")["seed"].agg(frozenset)
        if len(seeds) < len(models):
            continue
        common = frozenset.intersection(*seeds)
        if len(common) >= MIN_QUALITY_SEEDS:
            keep.append(rows[rows["seed"].isin(common)])
    return pd.concat(keep, ignore_index=True) if keep else runs.iloc[:0]


def regime_results(
    scores_dir: str | os.PathLike[str] | None = None,
    *,
    n_resamples: int = 1000,
    random_state: int = 0,
) -> RegimeResults:
    """Every axis of the regime chapter from the stored scores (``data/regime/scores``) and the
    verified ground truths (``data/ground_truth_v2``, ``data/regime``)."""
    folder = Path(scores_dir) if scores_dir is not None else data_dir() / "regime" / "scores"
    bench = get_benchmark("v2")
    gt_v2, models = bench.load()
    regime_dir = data_dir() / "regime"
    raw_regime = verify_ground_truth(regime_dir, allow_unlisted=True) \
        if (regime_dir / "manifest.json").is_file() else gt_v2.iloc[:0]  # fmt: skip
    gt_all = pd.concat([gt_v2, complete_cells(raw_regime) if len(raw_regime) else raw_regime],
                       ignore_index=True)  # fmt: skip
    published = published_gains()
    rows, pending = [], []

    def add(point: AxisPoint, scores: Mapping[str, Any], gt: pd.DataFrame,
            models: Sequence[str] | None = None, **extra: Any) -> None:  # fmt: skip
        scores = restrict_models(scores, models) if models is not None else scores
        ready = {}
        for task, s in scores.items():  # a task whose ground truth is still being computed waits
            try:
                accuracy_table(gt, task, s["models"])
                ready[task] = s
            except ValueError as exc:
                logger.info("%s: %s", point.folder(), exc)
                pending.append(f"{point.folder()}:{task}")
        if ready:
            cells, labels = point_cells(ready, gt)
            rows.append((point, cells, labels, {**_movement(ready), "n_tasks_scored": len(ready),
                                                **extra}))  # fmt: skip

    loaded = {}
    for points in AXIS_POINTS.values():
        for point in points:
            try:
                loaded[point.folder()] = load_point(point, folder)
            except ValueError as exc:
                logger.info("%s: %s", point.folder(), exc)
                pending.append(point.folder())
    for axis in ("classes", "images", "dimension"):
        for point in AXIS_POINTS[axis]:
            if point.folder() in loaded:
                add(point, loaded[point.folder()], gt_all, models)
    if "images/100%" in loaded:
        raw = AxisPoint("dimension", "raw128", 128, AXIS_POINTS["images"][3].tasks)
        add(raw, loaded["images/100%"], gt_all, models)
    spread_point = AXIS_POINTS["quality"][0]
    if spread_point.folder() in loaded:
        scores = loaded[spread_point.folder()]
        spread_models = next(iter(scores.values()))["models"]
        shared = quality_seeds(pd.concat([gt_v2, raw_regime], ignore_index=True), spread_models)
        for task in spread_point.tasks:
            if task not in set(shared["task"]):
                pending.append(f"{spread_point.folder()}:{task}")
        scores = {t: s for t, s in scores.items() if t in set(shared["task"])}
        for name, subset in (("rebuilt", list(models)), ("spread", None)):
            if not scores:
                break
            zoo = subset or spread_models
            acc = shared[shared["model"].isin(zoo)]
            sd = acc.groupby(["task", "model"])["test"].mean().groupby(level="task") \
                .std(ddof=1).mean()  # fmt: skip
            point = AxisPoint("quality", name, float(sd), tuple(scores), zoo=name)
            add(point, scores, shared, subset,
                n_seeds=float(shared.groupby("task")["seed"].nunique().mean()))  # fmt: skip
    table = axis_table(rows, published, n_resamples=n_resamples, random_state=random_state)
    verdicts = []
    for axis, name in PAPER_SIDE.items():
        if table.empty:
            break
        hit = table[(table["axis"] == axis) & (table["point"] == name) & (table["label"] == "mean")]
        if len(hit):
            r = hit.iloc[0]
            verdicts.append({"axis": axis, "point": name, "estimate": r["estimate"],
                             "low": r["pop_low"], "high": r["pop_high"],
                             "published": r["published"], "call": axis_verdict(r)})  # fmt: skip
    weak = pd.DataFrame()
    cells = pd.DataFrame()
    if "images/100%" in loaded:
        primary = loaded["images/100%"]
        weak = weak_base(restrict_models(primary, models), gt_v2, n_resamples=n_resamples,
                         random_state=random_state)  # fmt: skip
        r = weak.iloc[0]
        call = axis_verdict({"pop_low": r["low"], "pop_high": r["high"],
                             "published": published["mean"]})  # fmt: skip
        verdicts.append({"axis": "weak_base", "point": "weakest quarter", "estimate": r["change"],
                         "low": r["low"], "high": r["high"], "published": published["mean"],
                         "call": call})  # fmt: skip
        c, labels = point_cells(primary, gt_v2, models=models)
        truth = np.stack([x.accuracy.mean(axis=1) for x in c])
        base = weighted_tau_rows(np.stack([x.base[0] for x in c]), truth)
        treated = weighted_tau_rows(np.stack([x.treated[0] for x in c]), truth)
        cells = pd.DataFrame({"task": [x.group for x in c], "metric": labels, "base": base,
                              "change": treated - base})  # fmt: skip
    return RegimeResults(table, pd.DataFrame(verdicts), weak, cells, tuple(pending))

