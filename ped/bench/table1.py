r"""The paper's Table 1 on the embedded benchmark: scores, :math:`\tau_w` cells, gains, claims.

The chapter that replicates Table 1 calls these in order:

1. :func:`score_tasks` scores every zoo encoder on every task with every metric, on the
   extracted features and after PED (one tidy table, :func:`ped.bench.scoring.score_zoo` per task),
   with the newer baselines when asked: zoo-level NCTI and ETran, the other tasks' mean
   accuracy, and metrics after Spread/Attract (``+SA`` rows).
2. :func:`tau_cells` turns the scores into the table's cells: :math:`\tau_w` (paper eq. 1) of
   each metric (row; ``+PED`` rows after PED) against each task's fine-tuning accuracies
   (column), with a bootstrap interval over the ground-truth seeds
   (:func:`ped.bench.scoring.seed_bootstrap_tau`), and the mean over tasks.
3. :func:`table1` lays the cells out as the paper does (intervals in brackets, the noise ceiling
   as the last row, a raised mean in bold).
4. :func:`paired_gains` gives each metric's change with PED per task and counts the cells whose
   paired bootstrap interval of the change excludes zero.
5. :func:`claims` confronts the paper's two claims about Table 1 with the replica.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ped import spread_attract
from ped.bench import (
    model_accuracy,
    score_zoo,
    seed_bootstrap_tau,
    selected_runs,
    tau_table,
    zoo_features,
)
from ped.evaluation import leave_one_task_out, table1_layout
from ped.inference import bootstrap_pvalue, holm
from ped.metrics import PED_SUFFIX, row_label

__all__ = [
    "PED_SUFFIX",
    "MOVES",
    "SUPPORT_FRACTION",
    "TauCells",
    "score_tasks",
    "tau_cells",
    "table1",
    "paired_gains",
    "claims",
]

logger = logging.getLogger(__name__)

#: The feature moves a row can follow, in table order: none, PED, Spread/Attract.
MOVES = ("", "PED", "SA")

#: Share of improved cells from which "PED helps on (almost) every dataset" is called supported.
SUPPORT_FRACTION = 0.8



def score_tasks(
    tasks: Sequence[str],
    metrics: Sequence[str],
    ped_options: Mapping[str, Any],
    *,
    models: Sequence[str],
    reference: str = "source",
    split: str = "trainval",
    definitions: str = "release",
    zoo_dir: str | os.PathLike[str] | None = None,
    sa_metrics: Sequence[str] = (),
    sa_options: Mapping[str, Any] | None = None,
    accuracy: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every model x task x metric, on the features, after PED (``ped_options``) and, for
    ``sa_metrics``, after Spread/Attract (:func:`ped.spread_attract` with ``sa_options``).

    ``metrics`` are names of :data:`ped.metrics.METRICS` or :data:`ped.metrics.ZOO_METRICS`
    (scored by :func:`ped.bench.scoring.score_zoo`, with and without PED), and ``"loto"``: the
    dataset-agnostic baseline :func:`ped.evaluation.leave_one_task_out`, each model's mean
    ``accuracy`` (models x tasks) on the other tasks, which needs ``accuracy`` and has no
    features to move (no +PED row).

    Returns ``(scores, shapes)``: the tidy scores of :func:`ped.bench.scoring.score_zoo` with the
    columns ``task`` and ``move`` (``""``, ``"PED"`` or ``"SA"``; ``ped`` is ``move == "PED"``),
    static rows first, then PED's, then SA's, per task; and per task the number of scored
    images, of classes and the feature dimension.
    """
    metrics = list(metrics)
    unknown = sorted(set(sa_metrics) - set(metrics))
    if unknown:
        raise ValueError(f"sa_metrics {unknown} are not among the metrics {metrics}")
    if "loto" in sa_metrics:
        raise ValueError("'loto' scores no features, so it has no +SA row")
    if "loto" in metrics and accuracy is None:
        raise ValueError("the 'loto' baseline needs the ground-truth accuracy table (accuracy=)")
    featured = [m for m in metrics if m != "loto"]
    scores, shapes = [], {}
    for task in tasks:
        feats = zoo_features(task, split=split, models=list(models), zoo_dir=zoo_dir)
        x0, y0 = next(iter(feats.values()))
        shapes[task] = {"images": len(y0), "classes": len(np.unique(y0)), "dim": x0.shape[1]}
        for move in ("", "PED"):
            table = score_zoo(feats, featured, ped=bool(move), reference=reference,  # type: ignore[arg-type]
                              zoo_dir=zoo_dir, definitions=definitions,
                              **(dict(ped_options) if move else {}))  # fmt: skip
            scores.append(table.assign(task=task, move=move))
            if "loto" in metrics and not move:
                assert accuracy is not None
                loto = leave_one_task_out(accuracy.loc[list(models)], task)
                scores.append(pd.DataFrame({"model": list(models), "metric": "loto",
                                            "ped": False, "score": loto.to_numpy(),
                                            "task": task, "move": ""}))  # fmt: skip
        if sa_metrics:
            moved = {m: (spread_attract(x, y, **dict(sa_options or {})).features, y)
                     for m, (x, y) in feats.items()}  # fmt: skip
            table = score_zoo(moved, list(sa_metrics), definitions=definitions, zoo_dir=zoo_dir)
            scores.append(table.assign(task=task, move="SA"))
    out = pd.concat(scores, ignore_index=True)
    return out, pd.DataFrame(shapes).T


@dataclass
class TauCells:
    r""":math:`\tau_w` cells of Table 1: rows ``LogME``, ``LogME+PED``, ...; columns the tasks
    and ``mean`` (``tau`` only).  ``low``/``high`` are the bounds of the seed-bootstrap interval
    (NaN without resamples); ``draws[(row, task)]`` its bootstrap distribution."""

    tau: pd.DataFrame
    low: pd.DataFrame
    high: pd.DataFrame
    draws: dict[tuple[str, str], NDArray[np.float64]] = field(default_factory=dict)

    @property
    def tasks(self) -> list[str]:
        return [c for c in self.tau.columns if c != "mean"]


def tau_cells(
    scores: pd.DataFrame,
    gt: pd.DataFrame,
    protocol: str = "finetune",
    *,
    n_resamples: int = 1000,
    tasks: Sequence[str] | None = None,
) -> TauCells:
    r""":math:`\tau_w` of every metric (with and without PED) on every task against the
    accuracies of ``protocol``, with a bootstrap interval over the ground-truth seeds when
    ``n_resamples`` > 0 (:func:`ped.bench.scoring.seed_bootstrap_tau`).  Rows are ordered as the
    metrics appear in ``scores``, each followed by its ``+PED`` and ``+SA`` rows (the ``move``
    column of :func:`score_tasks`; without it, ``ped``); columns are ``tasks``
    (default: as they appear) and their ``mean``."""
    runs = selected_runs(gt, protocol)
    accuracy = None if n_resamples else model_accuracy(gt, protocol)
    tasks = list(tasks) if tasks is not None else list(dict.fromkeys(scores["task"]))
    long = []
    draws: dict[tuple[str, str], NDArray[np.float64]] = {}
    moves = scores["move"] if "move" in scores else scores["ped"].map({True: "PED", False: ""})
    rank = {move: i for i, move in enumerate(MOVES)}
    metric_rank = {m: i for i, m in enumerate(dict.fromkeys(scores["metric"]))}
    for (metric, move), group in scores.assign(move=moves).groupby(["metric", "move"], sort=False):
        label = row_label(metric, move)
        for task, cell in group.groupby("task", sort=False):
            if task not in tasks:
                continue
            if n_resamples:
                s = cell.set_index("model")["score"]
                seeds = runs[runs["task"] == task].pivot_table(index="model", columns="seed",
                                                               values="test")  # fmt: skip
                ci = seed_bootstrap_tau(s, seeds, n_resamples=n_resamples)
                value, lo, hi = ci.estimate, ci.low, ci.high
                draws[label, task] = ci.distribution
            else:
                value, lo, hi = tau_table(cell, accuracy[task]).iloc[0], np.nan, np.nan
            long.append({"dataset": task, "metric": metric, "move": move, "tau": value,
                         "low": lo, "high": hi, "order": (metric_rank[metric], rank[move],
                                                          tasks.index(task))})  # fmt: skip
    frame = pd.DataFrame(long).sort_values("order", kind="stable")
    tau, low, high = (table1_layout(frame, col, mean=col == "tau") for col in ("tau", "low", "high"))
    return TauCells(tau, low, high, draws)


def table1(cells: TauCells, ceiling: pd.Series | None = None) -> Any:
    r"""Table 1 as the paper lays it out, as a pandas ``Styler``: one row per metric and per
    metric + PED, one column per task (:math:`\tau_w` with its interval in brackets when there
    is one) and the mean; the noise ceiling of each task as the last row when ``ceiling`` is
    given; a ``+PED`` (``+SA``) row's mean in bold when it exceeds the metric's own."""
    tasks = cells.tasks

    def cell(label: str, task: str) -> str:
        est, lo, hi = (cells.tau.loc[label, task], cells.low.loc[label, task],
                       cells.high.loc[label, task])  # fmt: skip
        return f"{est:.3f}" if np.isnan(lo) else f"{est:.3f} [{lo:.2f}, {hi:.2f}]"

    order = list(cells.tau.index)
    frame = pd.DataFrame({t: [cell(label, t) for label in order] for t in tasks}, index=order)
    frame["mean"] = [f"{cells.tau.loc[label, 'mean']:.3f}" for label in order]
    if ceiling is not None:
        frame.loc["noise ceiling"] = [f"{ceiling[t]:.3f}" for t in tasks] + [
            f"{ceiling[tasks].mean():.3f}"]
    plain = {f"{label}+{move}": label for label in cells.tau.index for move in MOVES[1:]}
    raised = {label for label in order if label in plain and plain[label] in cells.tau.index
              and cells.tau.loc[label, "mean"] > cells.tau.loc[plain[label], "mean"]}
    return frame.style.apply(lambda col: ["font-weight: bold" if col.name == "mean"
                                          and i in raised else "" for i in col.index])  # fmt: skip


def paired_gains(
    cells: TauCells, metrics: Sequence[str], move: str = "PED", *, alpha: float = 0.05
) -> tuple[pd.DataFrame, int, int]:
    r"""Each metric's change of :math:`\tau_w` with PED (or the ``move`` ``"SA"``), per task and
    on the mean (rows: the metrics' display names), and the number of task cells whose paired
    change is clearly up and clearly down.

    A cell's two-sided bootstrap p-value comes from ``draws[+PED] - draws[static]`` (the same
    seed resamples, :func:`ped.inference.bootstrap_pvalue`), and a cell is called at level
    ``alpha`` after Holm's correction over every cell of the call
    (:func:`ped.inference.holm`), as the primary endpoint's cell-level calls are.  The draws
    resample the evaluation seeds only: the estimand is the change for these models and these
    scored images.  Without draws both counts are 0."""
    if move not in MOVES[1:]:
        raise ValueError(f"move must be one of {list(MOVES[1:])}, got {move!r}")
    rows = {row_label(m): cells.tau.loc[row_label(m, move)] - cells.tau.loc[row_label(m)]
            for m in metrics}  # fmt: skip
    gain = pd.DataFrame(rows, index=cells.tau.columns).T  # no metrics: no rows, same columns
    diffs = []
    for m in metrics:
        for t in cells.tasks:
            key_ped, key = (row_label(m, move), t), (row_label(m, False), t)
            if key_ped in cells.draws and key in cells.draws:
                d = cells.draws[key_ped] - cells.draws[key]
                diffs.append(d[np.isfinite(d)])
    diffs = [d for d in diffs if d.size]
    if not diffs:
        return gain, 0, 0
    called = holm(np.array([bootstrap_pvalue(d) for d in diffs]), alpha)
    up = sum(int(c and np.median(d) > 0) for c, d in zip(called, diffs))
    down = sum(int(c and np.median(d) < 0) for c, d in zip(called, diffs))
    return gain, up, down


def claims(gain: pd.DataFrame, published: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """The paper's claims about Table 1 against the replica, one row per claim.

    For each of the paper's three metrics in ``metrics`` (LogME, SFDA, GBC), "PED raises the mean
    :math:`\\tau_w`": supported when the replica's mean change is positive.  Then "PED helps on
    (almost) every dataset": supported when at least :data:`SUPPORT_FRACTION` of the replica's
    task cells improve.  ``gain`` is :func:`paired_gains`' table; ``published`` the paper's
    Table 1 (:func:`ped.paper.published_tau_w`, rows ``LogME``, ``LogME+PED``...).  Columns:
    ``claim``, ``published``, ``replica``, ``verdict``.
    """
    tasks = [c for c in gain.columns if c != "mean"]
    published = published.drop(columns="mean", errors="ignore")
    pub_gain = {}
    rows = []
    for m in [m for m in ("logme", "sfda", "gbc") if m in metrics]:
        name = row_label(m, False)
        pub_gain[name] = published.loc[name + PED_SUFFIX] - published.loc[name]
        ours = float(gain.loc[name, "mean"])
        improved = int((gain.loc[name, tasks] > 0).sum())
        rows.append({"claim": f"PED raises the mean τ_w of {name}",
                     "published": f"{pub_gain[name].mean():+.3f}",
                     "replica": f"{ours:+.3f} ({improved} of {len(tasks)} tasks improve)",
                     "verdict": "supported" if ours > 0 else "not supported"})  # fmt: skip
    share = float((gain[tasks] > 0).to_numpy().mean())
    n_up = sum(int((g > 0).sum()) for g in pub_gain.values())
    n_all = sum(g.size for g in pub_gain.values())
    rows.append({"claim": "PED helps on (almost) every dataset",
                 "published": f"{n_up} of {n_all} cells improve",
                 "replica": f"{share:.0%} of the cells improve",
                 "verdict": "supported" if share >= SUPPORT_FRACTION else "not supported"})
    return pd.DataFrame(rows).set_index("claim")
