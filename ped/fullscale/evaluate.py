"""Evaluate ``ped score``'s table against fine-tuning accuracies (``ped evaluate``): the
accuracies read and checked (:func:`load_truth`), then every rank statistic of
:func:`ped.evaluation.rank_statistics` per dataset, metric and arm (:func:`evaluate_scores`)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ped.evaluation import _as_bool, rank_statistics
from ped.paper import finetune_accuracy

__all__ = ["EVALUATION_COLUMNS", "load_truth", "evaluate_scores"]

logger = logging.getLogger("ped.fullscale.scoring")

#: Columns of the table :func:`evaluate_scores` returns, in order.
EVALUATION_COLUMNS = (
    "dataset", "metric", "ped", "n_models", "weighted_tau", "kendall_tau", "pearson_r",
    "spearman_rho", "top1_regret",
)  # fmt: skip


def load_truth(truth: str | os.PathLike[str] | pd.DataFrame | None = None) -> pd.DataFrame:
    """Ground-truth accuracies as a tidy table ``(model, dataset, accuracy)``.

    ``None`` gives the published fine-tuning accuracies (:func:`ped.paper.finetune_accuracy`).
    A CSV (or DataFrame) is either tidy, with columns ``model``, ``dataset``, ``accuracy``, or
    wide like ``ped/published/finetune_acc.csv``: a ``dataset`` column (or index) and one column
    per model.  Every accuracy is checked as the library checks a ground truth: a value that is
    not a number, missing (NaN, an empty cell), infinite or outside [0, 100] (%) is a
    ``ValueError`` naming the file, the row and the model and dataset.
    """
    if truth is None:
        wide = finetune_accuracy()
        return _wide_to_tidy(wide)
    where = "truth table"
    if isinstance(truth, pd.DataFrame):
        frame = truth.copy()
    else:
        path = Path(truth)
        if not path.is_file():
            raise FileNotFoundError(f"truth file {path} not found")
        where = f"truth file {path}"
        try:
            frame = pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise ValueError(f"{where} is not a readable CSV ({exc})") from exc
    if {"model", "dataset", "accuracy"} <= set(frame.columns):
        tidy = frame[["model", "dataset", "accuracy"]].copy()
        tidy["row"] = tidy.index + 2  # the file's line: a header, then one row per line
    else:
        if "dataset" in frame.columns:
            frame = frame.set_index("dataset")
        elif frame.index.name != "dataset":
            raise ValueError(
                "truth table must be tidy (columns model, dataset, accuracy) or wide (a "
                f"'dataset' column and one column per model); got columns {list(frame.columns)}"
            )
        frame = frame.assign(row=range(2, len(frame) + 2))
        tidy = frame.reset_index().melt(id_vars=["dataset", "row"], var_name="model",
                                        value_name="accuracy")  # fmt: skip
    tidy["model"] = tidy["model"].astype(str)
    tidy["dataset"] = tidy["dataset"].astype(str)
    value = pd.to_numeric(tidy["accuracy"], errors="coerce")
    bad = value.isna() | ~np.isfinite(value) | (value < 0) | (value > 100)
    if bad.any():
        first = tidy[bad].iloc[0]
        raw = first["accuracy"]
        shown = repr(raw) if isinstance(raw, str) else ("empty" if pd.isna(raw) else f"{raw:g}")
        raise ValueError(f"{where}, row {first['row']} (model {first['model']!r}, dataset "
                         f"{first['dataset']!r}): accuracy {shown} is not a number in [0, 100] % "
                         f"({int(bad.sum())} such value(s))")  # fmt: skip
    tidy["accuracy"] = value.astype(float)
    tidy = tidy[["model", "dataset", "accuracy"]]
    duplicated = tidy.duplicated(["model", "dataset"])
    if duplicated.any():
        first = tidy.loc[duplicated, ["model", "dataset"]].iloc[0].tolist()
        raise ValueError(f"truth holds several accuracies for (model, dataset) = {first}")
    return tidy.reset_index(drop=True)


def _wide_to_tidy(wide: pd.DataFrame) -> pd.DataFrame:
    frame = wide.copy()
    frame.index.name = "dataset"
    long = frame.reset_index().melt(id_vars="dataset", var_name="model", value_name="accuracy")
    return long.dropna(subset=["accuracy"])[["model", "dataset", "accuracy"]]


def evaluate_scores(
    scores: pd.DataFrame | str | os.PathLike[str],
    truth: pd.DataFrame | str | os.PathLike[str] | None = None,
    *,
    min_models: int = 3,
) -> pd.DataFrame:
    """Rank statistics of the scores per dataset x metric x ped (columns
    :data:`EVALUATION_COLUMNS`).

    ``scores`` is the table of :func:`ped.fullscale.scoring.score_features` (or its CSV); ``truth`` as in
    :func:`load_truth`.  Models without a finite score or without a truth value are left out of
    their group (logged); groups with fewer than ``min_models`` models are skipped (logged).
    """
    if isinstance(min_models, bool) or not isinstance(min_models, (int, np.integer)):
        raise ValueError(f"min_models must be an integer >= 2, got {min_models!r}")
    if min_models < 2:
        raise ValueError(
            f"min_models must be at least 2 (rank statistics need 2 models), got {min_models}"
        )
    if isinstance(scores, pd.DataFrame):
        table = scores.copy()
    else:
        path = Path(scores)
        if not path.is_file():
            raise FileNotFoundError(f"scores file {path} not found")
        table = pd.read_csv(path, keep_default_na=True)
    needed = {"model", "dataset", "metric", "score"}
    if not needed <= set(table.columns):
        raise ValueError(
            f"scores table needs columns {sorted(needed)}, got {list(table.columns)}"
        )
    if "ped" not in table.columns:
        table["ped"] = False
    table["ped"] = table["ped"].map(_as_bool)
    table["model"] = table["model"].astype(str)
    table["dataset"] = table["dataset"].astype(str)
    gt = load_truth(truth)
    merged = table.merge(gt, on=["model", "dataset"], how="left")
    rows = []
    for (dataset, metric, use_ped), group in merged.groupby(
        ["dataset", "metric", "ped"], sort=True
    ):
        ok = group[np.isfinite(group["score"].astype(float)) & group["accuracy"].notna()]
        dropped = sorted(set(group["model"]) - set(ok["model"]))
        if dropped:
            logger.warning(
                "%s/%s/ped=%s: left out %s (no finite score or no truth)",
                dataset, metric, use_ped, dropped,
            )  # fmt: skip
        if ok["model"].duplicated().any():
            raise ValueError(f"several scores for one model in {dataset}/{metric}/ped={use_ped}")
        if len(ok) < min_models:
            logger.warning(
                "%s/%s/ped=%s: %d model(s) with scores and truth, %d needed: skipped",
                dataset, metric, use_ped, len(ok), min_models,
            )  # fmt: skip
            continue
        stats = rank_statistics(ok["score"].to_numpy(float), ok["accuracy"].to_numpy(float))
        rows.append(
            {"dataset": dataset, "metric": metric, "ped": bool(use_ped), "n_models": len(ok),
             **stats}
        )  # fmt: skip
    return pd.DataFrame(rows, columns=list(EVALUATION_COLUMNS))
