r"""Score a directory of features with transferability metrics (with and without PED) and judge
the scores against fine-tuning accuracies: the logic of ``ped score`` and ``ped evaluate``.

Feature directories follow the authors' naming; :mod:`ped.fullscale.folder` finds and checks
their files (every file before anything is scored).

:func:`score_features` returns a tidy table with one row per model x dataset x metric x ped:

=============== ===========================================================================
column          meaning
=============== ===========================================================================
model, dataset  from the file name
metric          metric name
ped             False: the metric on the extracted features; True: on the features moved by
                :func:`ped.potential_energy_descent`
score           the metric's value (NaN when it failed; see ``error``)
seconds         wall time of the metric call (PED's own time is in ``ped_seconds``)
ped_seconds     wall time of the PED step shared by all metrics of that model and dataset
                (0 for ``ped=False`` rows)
ped_reference   how PED standardised the features: ``"imagenet"`` (the model's
                ``<model>_imagenet_feature.npy`` in the reference folder, as in the paper),
                ``"target"`` (the target features' own statistics, a departure from the
                paper) or ``""`` for ``ped=False`` rows
n_samples       number of samples
error           empty, or the exception the metric (or PED) raised
=============== ===========================================================================

:func:`ped.fullscale.evaluate.evaluate_scores` turns such a table into the rank statistics of
:func:`ped.evaluation.rank_statistics` per dataset x metric x ped, against the published fine-tuning
accuracies (:func:`ped.paper.finetune_accuracy`) or any truth table.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ped._progress import tqdm
from ped.dynamics import check_ped_options, potential_energy_descent
from ped.evaluation import table1_layout

# the evaluation of the scores lives in ped.fullscale.evaluate; its names are re-exported here
from ped.fullscale.evaluate import EVALUATION_COLUMNS, evaluate_scores, load_truth
from ped.fullscale.folder import (
    FeatureFile,
    _reference_for,
    check_feature_files,
    find_feature_files,
    read_npy,
)
from ped.scoring import bind_metrics, score_arms

__all__ = [
    "EVALUATION_COLUMNS",
    "SCORE_COLUMNS",
    "ScoreItem",
    "ScorePlan",
    "evaluate_scores",
    "load_truth",
    "score_features",
    "score_items",
    "score_plan",
    "score_table",
    "table1_layout",
]

logger = logging.getLogger(__name__)

#: Columns of the table :func:`score_features` returns, in order.
SCORE_COLUMNS = (
    "model", "dataset", "metric", "ped", "score", "seconds", "ped_seconds", "ped_reference",
    "n_samples", "error",
)  # fmt: skip

MetricFn = Callable[[NDArray[Any], NDArray[Any]], float]


@dataclass(frozen=True)
class ScoreItem:
    """One model's features on one dataset, as :func:`score_items` scores them.

    ``reference`` standardises PED (``None``: the target features' own statistics);
    ``reference_name`` says which, for the ``ped_reference`` column.
    """

    model: str
    dataset: str
    features: NDArray[Any]
    labels: NDArray[Any]
    reference: Any = None
    reference_name: str = "target"


def score_items(
    items: Iterable[ScoreItem],
    metrics: Mapping[str, MetricFn],
    *,
    static: bool = True,
    ped: bool = False,
    ped_options: Mapping[str, Any] | None = None,
    record_errors: bool = True,
    bar: Any = None,
) -> list[dict[str, Any]]:
    """The one scoring loop of :mod:`ped`: every metric on every item, on the static features
    (``static``) and on the features moved by :func:`ped.potential_energy_descent` (``ped``; one
    PED run per item, shared by the metrics).

    Returns one row per item x metric x variant with the keys of :data:`SCORE_COLUMNS` and
    ``ped_steps``, scored through :func:`ped.scoring.score_arms` (the static and the PED arm).
    With ``record_errors`` a :data:`ped.scoring.SCORING_ERRORS` failure of a metric (or of PED)
    gives a NaN score with the message in ``error`` and the loop goes on; without it the failure
    propagates.  ``bar`` (a tqdm bar) advances once per item and metric.  Items are
    consumed one at a time, so a generator that reads files keeps one in memory.
    """
    if not (static or ped):
        raise ValueError("nothing to score: static and ped are both False")
    options = dict(ped_options or {})
    rows: list[dict[str, Any]] = []
    for item in items:
        if bar is not None:
            bar.set_postfix_str(f"{item.model}/{item.dataset}" if item.dataset else item.model)
        x, y = item.features, item.labels
        arms: dict[str, Any] = {}
        if static:
            arms["static"] = None
        if ped:
            arms["ped"] = lambda f, l, ref=item.reference: potential_energy_descent(
                f, l, reference=ref, **options)  # fmt: skip

        def done(name: str, item: ScoreItem = item) -> None:
            logger.info("%s/%s %s done", item.model, item.dataset, name)
            if bar is not None:
                bar.update(1)

        scores = score_arms(x, y, arms, metrics, record_errors=record_errors, after_metric=done)
        ped_failed = next((s.move_error for s in scores if s.move_error), "")
        if ped_failed:
            logger.warning("PED failed on %s/%s: %s", item.model, item.dataset, ped_failed)
        for s in scores:
            use_ped = s.arm == "ped"
            if s.error and not (use_ped and ped_failed):
                logger.warning("%s failed on %s/%s (ped=%s): %s",
                               s.metric, item.model, item.dataset, use_ped, s.error)  # fmt: skip
            rows.append({
                "model": item.model, "dataset": item.dataset, "metric": s.metric, "ped": use_ped,
                "score": s.score, "seconds": s.seconds, "ped_seconds": s.move_seconds,
                "ped_steps": s.steps, "ped_reference": item.reference_name if use_ped else "",
                "n_samples": int(x.shape[0]), "error": s.error,
            })  # fmt: skip
    return rows


def score_features(
    features_dir: str | os.PathLike[str],
    metrics: Sequence[str] | Mapping[str, MetricFn],
    *,
    ped: bool = False,
    reference_dir: str | os.PathLike[str] | None = None,
    ped_options: Mapping[str, Any] | None = None,
    datasets: Iterable[str] | None = None,
    models: Iterable[str] | None = None,
    definitions: str = "paper",
    progress: bool = False,
) -> pd.DataFrame:
    """Score every feature file of ``features_dir`` with every metric (see the module docstring
    for the table's columns).

    Parameters
    ----------
    features_dir : path
        Folder of ``<model>_<dataset>_feature.npy`` / ``_label.npy`` pairs.
    metrics : names or mapping
        Metric names of :data:`ped.metrics.METRICS`, or a mapping name -> function.
    definitions : {"paper", "release"}
        The metrics' options (:func:`ped.scoring.bind_metrics`): the papers' formulas (default) or the
        released code's (SFDA, NLEEP and LEEP without their log), which the published Table 1
        reports.
    ped : bool
        Also score the features moved by :func:`ped.potential_energy_descent` (rows with
        ``ped=True``); PED runs once per file and its result is shared by the metrics.
    reference_dir : path or None
        Folder with ``<model>_imagenet_feature.npy`` reference features for PED's
        standardisation; when absent (or the model's file is), PED standardises with the target
        statistics and ``ped_reference`` says ``"target"``.  Files of the ``imagenet`` dataset in
        ``features_dir`` itself are never scored as targets.
    ped_options : mapping or None
        Keyword arguments for :func:`ped.potential_energy_descent` (``nsigma``, ``time_step``...).
    datasets, models : iterables of str or None
        Restrict to these datasets / models.
    progress : bool
        Show a tqdm progress bar on stderr (one step per file and metric, with and without PED).

    Notes
    -----
    Everything is checked before the first metric runs: the metrics, the PED options
    (``ped.dynamics.check_ped_options``, when ``ped``), the folders and every file
    (``check_feature_files``); any problem is a ``ValueError`` (``FileNotFoundError`` for a
    missing folder) and nothing is scored.  Afterwards, a metric (or PED) raising ``ValueError``,
    ``ArithmeticError``, ``LinAlgError`` or ``MemoryError`` on one file gives a NaN score with the
    message in ``error``; the run goes on.
    """
    plan = score_plan(features_dir, metrics, ped=ped, reference_dir=reference_dir,
                      ped_options=ped_options, datasets=datasets, models=models,
                      definitions=definitions)  # fmt: skip
    cache: dict[str, NDArray[Any] | None] = {}
    items = (plan.item(f, cache) for f in plan.files)
    with tqdm(total=len(plan.files) * len(plan.metrics), desc="score", unit="metric",
              disable=not progress) as bar:  # fmt: skip
        rows = score_items(items, plan.metrics, ped=ped, ped_options=plan.ped_options, bar=bar)
    return score_table(rows)


def score_table(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The rows of :func:`score_items` as the table :func:`score_features` returns."""
    table = pd.DataFrame(list(rows), columns=list(SCORE_COLUMNS))
    return table.astype({"ped": bool, "score": float, "seconds": float, "ped_seconds": float})


@dataclass(frozen=True)
class ScorePlan:
    """What :func:`score_features` (and its distributed form,
    :func:`ped.fullscale.distributed.score_features_distributed`) will score, checked before
    any work: the bound ``metrics``, PED's checked ``ped_options`` (``{}`` without PED), the
    feature ``files`` in order and their ``labels`` as 0..C-1, and the reference folder."""

    metrics: dict[str, MetricFn]
    ped: bool
    ped_options: dict[str, Any]
    files: list[FeatureFile]
    labels: dict[FeatureFile, NDArray[np.intp]]
    reference_dir: Path | None

    def item(self, file: FeatureFile, cache: dict[str, NDArray[Any] | None]) -> ScoreItem:
        """The :class:`ScoreItem` of one file (its features read now; ``cache`` keeps the
        reference features read so far)."""
        ref = _reference_for(file.model, self.reference_dir, cache) if self.ped else None
        return ScoreItem(file.model, file.dataset, read_npy(file.features), self.labels[file],
                         ref, "target" if ref is None else "imagenet")  # fmt: skip


def score_plan(
    features_dir: str | os.PathLike[str],
    metrics: Sequence[str] | Mapping[str, MetricFn],
    *,
    ped: bool = False,
    reference_dir: str | os.PathLike[str] | None = None,
    ped_options: Mapping[str, Any] | None = None,
    datasets: Iterable[str] | None = None,
    models: Iterable[str] | None = None,
    definitions: str = "paper",
) -> ScorePlan:
    """Check everything :func:`score_features` needs (see its Notes) and return the
    :class:`ScorePlan`; nothing is scored."""
    fns = bind_metrics(metrics, definitions=definitions)
    options = check_ped_options(ped_options or {}) if ped else {}
    if not ped and ped_options:
        raise ValueError(f"PED options {sorted(ped_options)} given without ped=True")
    ref_dir = None if reference_dir is None else Path(reference_dir)
    if ref_dir is not None and not ref_dir.is_dir():
        raise FileNotFoundError(f"reference folder {ref_dir} not found")
    files = find_feature_files(features_dir, exclude_datasets={"imagenet"})
    if datasets is not None:
        wanted = set(datasets)
        files = [f for f in files if f.dataset in wanted]
    if models is not None:
        wanted_m = set(models)
        files = [f for f in files if f.model in wanted_m]
    if not files:
        raise ValueError("no feature file left after filtering by datasets/models")
    labels = check_feature_files(files, ref_dir)
    return ScorePlan(fns, ped, dict(options), files, labels, ref_dir)

