r"""Choose a model for your own data: every candidate scored, with how sure the ranking is.

Given the features of several candidate models on one labelled dataset (the same images, in
the same order, for every model; the feature sizes may differ), :func:`rank_models` scores each
model with each metric and resamples the scored images to say how sure the ranking is:

- **scores with intervals** from a class-stratified bootstrap of the images: each class keeps
  its count, its images drawn with replacement among its own
  (:func:`ped.inference.image_replicates`); the same draws serve every model, so the
  comparisons are paired;
- **the probability of being best**: the share of draws in which a model scores highest (models
  tied at the top share the draw);
- **the contenders**: the models that cannot be told apart from the top one.  Model :math:`j`
  is a contender when the paired bootstrap interval at ``level`` of :math:`s_\text{top} - s_j`
  reaches 0, that is when the :math:`(1 - \text{level})/2` quantile of the difference over the
  draws is at most 0;
- **a consensus** across metrics: in each draw every metric ranks the models (1 = best, ties
  averaged), and the mean rank over the metrics ranks them once more; its probability of being
  best and its contenders follow as above, with "highest score" read as "lowest mean rank".

k-NN accuracy (``"knn"``) is resampled through each image's leave-one-out credit
(:func:`ped.metrics.knn_credit`): the neighbourhoods are those of all the images, and a draw
changes which images are counted.  Every other metric is recomputed on each draw; one that takes
``sample_weight`` (LogME) scores each distinct image of the draw once, weighted by how often it
was drawn, which equals scoring the draw with its repeats to round-off, and its Gram matrix
costs about a third less (a draw holds about 63 % of the distinct images).  Where a draw has no
more distinct images than the features have dimensions, the features can fit its labels
exactly and LogME's fixed point may diverge: such a draw is scored with its repeats, as the
released code would, and the ranking warns.

The defaults follow the embedded benchmark (:data:`DEFAULT_METRICS`, no PED; the evidence is in
the book's chapters on Table 1 and on choosing a model).
"""

from __future__ import annotations

import base64
import html
import inspect
import io
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import scipy.stats
from numpy.typing import ArrayLike, NDArray
from threadpoolctl import threadpool_limits

from ped._io import atomic_path, write_text_atomic
from ped._progress import tqdm
from ped._validation import check_features_labels, check_positive_int
from ped.dynamics import potential_energy_descent
from ped.inference import image_replicates
from ped.metrics import METRICS, knn_credit

__all__ = ["DEFAULT_METRICS", "CONSENSUS", "FEW_IMAGES", "Ranking", "rank_models", "best_shares", "contenders",
           "write_figure", "write_report"]

logger = logging.getLogger(__name__)

#: The metrics :func:`rank_models` uses unless told otherwise: k-NN accuracy (an accuracy, so
#: its value has a meaning, and its bootstrap is nearly free) and LogME, the paper's first
#: metric, which ranked the embedded benchmark's zoo best of the paper's metrics.
DEFAULT_METRICS: tuple[str, ...] = ("knn", "logme")
#: The label of the consensus rows.
CONSENSUS = "consensus"
#: Below this many images in its smallest class, a ranking carries a warning.
FEW_IMAGES = 5


def best_shares(values: ArrayLike, *, lower_is_better: bool = False) -> NDArray[np.float64]:
    """``(M,)``: the share of rows of ``values`` ``(B, M)`` in which each column is best (highest,
    or lowest with ``lower_is_better``); columns tied at the best split the row equally."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2 or v.shape[0] < 1 or v.shape[1] < 1:
        raise ValueError(f"values must be a non-empty (B, M) array, got shape {v.shape}")
    if lower_is_better:
        v = -v
    top = v.max(axis=1, keepdims=True)
    winners = v == top
    return (winners / winners.sum(axis=1, keepdims=True)).mean(axis=0)


def contenders(
    values: ArrayLike, top: int, *, level: float = 0.95, lower_is_better: bool = False
) -> NDArray[np.bool_]:
    r"""``(M,)``: which columns of the paired draws ``values`` ``(B, M)`` cannot be told apart
    from column ``top``: the :math:`(1-\text{level})/2` quantile of :math:`v_\text{top} - v_j`
    (of :math:`v_j - v_\text{top}` with ``lower_is_better``) is at most 0.  ``top`` is always
    one."""
    v = np.asarray(values, dtype=np.float64)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    diff = (v[:, [top]] - v) if not lower_is_better else (v - v[:, [top]])
    low = np.quantile(diff, (1 - level) / 2, axis=0)
    out = low <= 0
    out[top] = True
    return out


@dataclass(frozen=True)
class Ranking:
    """The result of :func:`rank_models`.

    ``table`` has one row per model and metric, and per model for the ``consensus``: ``score``
    (on all images; the mean rank for the consensus), ``low`` and ``high`` (percentile interval
    at ``level``), ``p_best``, ``contender`` and ``rank`` (1 = best).  ``warnings`` name what
    makes a metric's ranking degenerate or fragile here.
    """

    table: pd.DataFrame
    metrics: tuple[str, ...]
    level: float
    n_boot: int
    n_images: int
    n_classes: int
    ped: bool
    warnings: tuple[str, ...]

    def consensus(self) -> pd.DataFrame:
        """The consensus rows, best first."""
        rows = self.table[self.table["metric"] == CONSENSUS].set_index("model")
        return rows.sort_values("rank")

    @property
    def best(self) -> str:
        """The model the consensus ranks first."""
        return str(self.consensus().index[0])

    @property
    def contenders(self) -> tuple[str, ...]:
        """The models the consensus cannot tell apart from the best, best first."""
        c = self.consensus()
        return tuple(str(m) for m in c.index[c["contender"]])

    def wide(self) -> pd.DataFrame:
        """One row per model (the consensus order), one column group per metric: ``score``,
        ``low``, ``high``, ``p_best``."""
        order = list(self.consensus().index)
        wide = self.table.pivot(index="model", columns="metric",
                                values=["score", "low", "high", "p_best"])  # fmt: skip
        wide = wide.swaplevel(axis=1)[[*self.metrics, CONSENSUS]].loc[order]
        return wide

    def recommendation(self) -> str:
        """A plain-language recommendation: which model to fine-tune, or which models the data
        cannot tell apart."""
        c = self.consensus()
        p = float(c.loc[self.best, "p_best"])
        names = ", ".join(self.metrics)
        if len(self.contenders) == 1:
            return (f"Fine-tune {self.best}: it ranks first by the consensus of {names}, and no "
                    f"other model comes within its {self.level:.0%} interval (it is best in "
                    f"{p:.0%} of {self.n_boot} resamples of the images). The interval resamples "
                    "your images, not the randomness of fine-tuning itself: a close runner-up "
                    "may still fine-tune as well.")  # fmt: skip
        others = ", ".join(m for m in self.contenders if m != self.best)
        return (f"{len(self.contenders)} models cannot be told apart at the {self.level:.0%} "
                f"level: {self.best} ranks first by the consensus of {names} (best in {p:.0%} "
                f"of {self.n_boot} resamples of the images), but {others} may be as good. "
                "Fine-tune more than one of them, or score more images.")  # fmt: skip


def _check_inputs(
    features: Mapping[str, ArrayLike], labels: ArrayLike
) -> tuple[dict[str, NDArray[Any]], NDArray[np.intp], int]:
    if not isinstance(features, Mapping) or len(features) < 2:
        raise ValueError("features must map at least two model names to feature arrays")
    y = np.asarray(labels)
    out = {}
    n_classes = 0
    for name, x in features.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"model names must be non-empty strings, got {name!r}")
        try:
            xx, yy, n_classes = check_features_labels(x, y)
        except ValueError as exc:
            raise ValueError(f"model {name!r}: {exc}") from exc
        out[name] = xx
        y_checked = yy
    return out, y_checked, n_classes


def _warnings(y: NDArray[np.intp], n_classes: int, scores: Mapping[str, NDArray[Any]],
              widths: Mapping[str, int], fewest_distinct: int) -> list[str]:  # fmt: skip
    counts = np.bincount(y, minlength=n_classes)
    out = []
    wide = [m for m, d in widths.items() if d >= fewest_distinct]
    if "logme" in scores and wide:
        out.append(f"logme: {', '.join(wide)} ha{'s' if len(wide) == 1 else 've'} at least as "
                   f"many dimensions as a resample has distinct images ({fewest_distinct} of "
                   f"{len(y)}): such features can fit a resample's labels exactly, where LogME's "
                   "fixed point may diverge and its scores show where it stopped rather than how "
                   "the score varies; rank with k-NN alone (--metric knn) or score more images")  # fmt: skip
    if counts.min() < 2:
        out.append(f"{int((counts < 2).sum())} class(es) have a single image: the bootstrap "
                   "cannot vary them and k-NN cannot classify them")  # fmt: skip
    elif counts.min() < FEW_IMAGES:
        out.append(f"the smallest class has {int(counts.min())} images: scores of so few images "
                   "per class are noisy and some metrics saturate")  # fmt: skip
    for metric, s in scores.items():
        if np.ptp(s[0]) == 0:
            out.append(f"{metric} scores every model the same ({s[0][0]:.4g}): it cannot rank "
                       "them on these images")  # fmt: skip
        elif np.mean(np.ptp(s[1:], axis=1) == 0) > 0.5:
            out.append(f"{metric} ties every model in most resamples: its ranking is degenerate "
                       "here")  # fmt: skip
    return out


def _score_model(x: NDArray[Any], y: NDArray[np.intp], metrics: Sequence[str],
                 options: Mapping[str, Mapping[str, Any]], rows_all: Sequence[NDArray[np.intp]],
                 distinct_all: Sequence[tuple[NDArray[np.intp], NDArray[np.intp]]],
                 ped: bool, reference: Any) -> dict[str, NDArray[np.float64]]:  # fmt: skip
    """One model's ``(1 + B,)`` scores per metric: on all images, then on each resample (with
    ``ped``, PED moves each resample first, standardised with ``reference`` when given);
    ``distinct_all`` holds each resample's distinct images and their counts."""
    out = {}
    # small matrices run faster on one BLAS thread, the more so beside other work (on two busy
    # cores LogME of 600 x 128 took 0.2 s a call with two threads)
    with threadpool_limits(limits=1 if x.size < 2**21 else None, user_api="blas"):
        for metric in metrics:
            if metric == "knn" and not ped:  # the credits of all images, resampled
                credit = knn_credit(x, y, **options[metric])
                out[metric] = np.array([credit[r].mean() for r in rows_all])
                continue
            score = METRICS[metric]
            weighted = not ped and "sample_weight" in inspect.signature(score).parameters
            column = np.empty(len(rows_all))
            for b, (r, (distinct, counts)) in enumerate(zip(rows_all, distinct_all)):
                # each distinct image once, weighted by its count, where the features cannot fit
                # the draw's labels exactly (more distinct images than dimensions)
                if weighted and b > 0 and distinct.size > x.shape[1]:
                    column[b] = score(x[distinct], y[distinct], sample_weight=counts,
                                      **options[metric])  # fmt: skip
                    continue
                xr, yr = x[r], y[r]
                if ped:
                    xr = potential_energy_descent(xr, yr, reference=reference).features
                column[b] = score(xr, yr, **options[metric])
            out[metric] = column
    return out


def rank_models(
    features: Mapping[str, ArrayLike],
    labels: ArrayLike,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    metric_options: Mapping[str, Mapping[str, Any]] | None = None,
    ped: bool = False,
    stats: Mapping[str, Any] | None = None,
    n_boot: int = 100,
    level: float = 0.95,
    random_state: int = 0,
    n_jobs: int = 1,
) -> Ranking:
    """Rank candidate models for one labelled dataset, with the uncertainty shown (see the
    module docstring for every quantity).

    ``features`` maps model names to ``(N, D_m)`` arrays of the same ``N`` images (``labels``,
    ``(N,)``, integers 0..C-1); ``metrics`` are names of :data:`ped.metrics.METRICS` with
    ``metric_options`` (metric -> keyword arguments); ``ped`` moves each model's features with
    :func:`ped.potential_energy_descent` before every scoring (standardised with ``stats[model]``
    when given, else with the features' own statistics); ``n_boot`` class-stratified resamples;
    ``level`` of the intervals and of the contenders; ``n_jobs`` processes score the models
    side by side (the result is the same to round-off, from the order in which BLAS threads
    sum; ``benchmarks/bench_rank.py`` times it).  Nothing passed in is modified.
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise ValueError(f"unknown metric(s) {unknown}; known: {', '.join(sorted(METRICS))}"
                         if unknown else "give at least one metric")  # fmt: skip
    if len(set(metrics)) != len(metrics):
        raise ValueError(f"a metric is named twice: {list(metrics)}")
    n_boot = check_positive_int(n_boot, "n_boot")
    n_jobs = check_positive_int(n_jobs, "n_jobs")
    if n_boot < 10:
        raise ValueError(f"n_boot must be at least 10 for intervals, got {n_boot}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    feats, y, n_classes = _check_inputs(features, labels)
    if stats is not None:
        missing = [m for m in feats if m not in stats]
        if missing:
            raise ValueError(f"no statistics for model(s) {missing}")
    options = {m: dict((metric_options or {}).get(m, {})) for m in metrics}
    models = list(feats)
    draws = image_replicates(y, n_boot, random_state=random_state)
    rows_all = [np.arange(len(y)), *draws]
    distinct_all = [np.unique(r, return_counts=True) for r in rows_all]
    def arguments(model: str) -> tuple[Any, ...]:
        return (feats[model], y, metrics, options, rows_all, distinct_all, ped,
                None if stats is None else stats[model])  # fmt: skip

    if n_jobs == 1:
        columns = [_score_model(*arguments(m)) for m in tqdm(models, desc="ranking", unit="model")]
    else:
        # a process per model at a time; joblib shares the large arrays through memory maps and
        # gives each worker an even share of the BLAS threads
        parallel = joblib.Parallel(n_jobs=n_jobs, return_as="generator")
        jobs = (joblib.delayed(_score_model)(*arguments(m)) for m in models)
        columns = list(tqdm(parallel(jobs), total=len(models), desc="ranking", unit="model"))
    scores = {metric: np.column_stack([c[metric] for c in columns]) for metric in metrics}
    alpha = (1 - level) / 2

    table = []
    ranks = []
    for metric in metrics:
        s = scores[metric]
        point, boot = s[0], s[1:]
        top = int(np.argmax(point))
        low, high = np.quantile(boot, [alpha, 1 - alpha], axis=0)
        p_best = best_shares(boot)
        inside = contenders(boot, top, level=level)
        order = scipy.stats.rankdata(-point, method="min")
        table += [{"model": m, "metric": metric, "score": point[j], "low": low[j],
                   "high": high[j], "p_best": p_best[j], "contender": bool(inside[j]),
                   "rank": int(order[j])} for j, m in enumerate(models)]  # fmt: skip
        ranks.append(scipy.stats.rankdata(-s, axis=1))  # (1 + B, M), 1 = best, ties averaged
    mean_rank = np.mean(ranks, axis=0)
    point, boot = mean_rank[0], mean_rank[1:]
    top = int(np.argmin(point))
    low, high = np.quantile(boot, [alpha, 1 - alpha], axis=0)
    p_best = best_shares(boot, lower_is_better=True)
    inside = contenders(boot, top, level=level, lower_is_better=True)
    order = scipy.stats.rankdata(point, method="min")
    table += [{"model": m, "metric": CONSENSUS, "score": point[j], "low": low[j], "high": high[j],
               "p_best": p_best[j], "contender": bool(inside[j]), "rank": int(order[j])}
              for j, m in enumerate(models)]  # fmt: skip
    fewest = min(distinct.size for distinct, _ in distinct_all)
    warnings = _warnings(y, n_classes, scores, {m: x.shape[1] for m, x in feats.items()}, fewest)
    for w in warnings:
        logger.warning("%s", w)
    return Ranking(pd.DataFrame(table), tuple(metrics), float(level), n_boot, len(y), n_classes,
                   bool(ped), tuple(warnings))  # fmt: skip


def write_figure(fig: Any, path: str | os.PathLike[str]) -> Path:
    """Save a matplotlib figure atomically (the format from the suffix: png, pdf or svg)."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("png", "pdf", "svg"):
        raise ValueError(f"{path.name}: a figure must end in .png, .pdf or .svg")
    with atomic_path(path, suffix=path.suffix) as tmp:
        fig.savefig(tmp, format=fmt, bbox_inches="tight")
    return path


def write_report(ranking: Ranking, fig: Any, path: str | os.PathLike[str], *, title: str) -> Path:
    """A self-contained HTML report of ``ranking``: the recommendation, the warnings, the table
    and the figure (embedded as PNG), written atomically."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    image = base64.b64encode(buffer.getvalue()).decode("ascii")
    table = ranking.wide().round(4).to_html(border=0)
    warnings = "".join(f"<li>{html.escape(w)}</li>" for w in ranking.warnings)
    text = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>ped rank: {html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}
table{{border-collapse:collapse;font-size:90%}}td,th{{padding:2px 8px;text-align:right}}</style>
</head><body><h1>Choosing a model for {html.escape(title)}</h1>
<p>{ranking.n_images} images, {ranking.n_classes} classes, {len(ranking.consensus())} models;
metrics {html.escape(", ".join(ranking.metrics))}{" after PED" if ranking.ped else ""};
{ranking.n_boot} class-stratified resamples of the images; intervals at {ranking.level:.0%}.</p>
<p><strong>{html.escape(ranking.recommendation())}</strong></p>
{f"<ul>{warnings}</ul>" if warnings else ""}
<img alt="scores with their intervals and the probability of being best"
 src="data:image/png;base64,{image}" style="max-width:100%">
{table}
<p>Made by <code>ped rank</code> (the PED companion).</p></body></html>
"""
    write_text_atomic(Path(path), text)
    return Path(path)
