"""What the embedded benchmark is made of, for the chapters: the zoo's records, the tasks, the
ground truth's cost, the methods' timings and the features' effective rank."""

from __future__ import annotations

import json
import logging
import os
import statistics
import timeit
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.linalg import svdvals
from scipy.special import entr

from ped._validation import check_features
from ped.bench.tasks import load_task
from ped.bench.zoo.train import default_zoo_dir, read_manifest
from ped.dynamics import potential_energy_descent
from ped.metrics import DISPLAY_NAMES, METRICS

__all__ = [
    "zoo_records",
    "zoo_table",
    "task_table",
    "compute_cost",
    "method_timings",
    "effective_rank",
]

logger = logging.getLogger(__name__)


def zoo_records(zoo_dir: str | os.PathLike[str] | None = None) -> dict[str, dict[str, Any]]:
    """``{encoder: record}`` of every trained encoder of a zoo folder (default: the committed
    ``data/zoo``), in the manifest's order; a record is ``<name>.json`` as
    :func:`ped.bench.zoo.train.pretrain` writes it (method, hyperparameters, epochs, steps, loss curve,
    wall time...)."""
    zoo = Path(zoo_dir) if zoo_dir else default_zoo_dir()
    names = list(read_manifest(zoo)["encoders"])
    if not names:
        raise ValueError(f"no trained encoder in {zoo}")
    return {name: json.loads((zoo / f"{name}.json").read_text()) for name in names}


def zoo_table(records: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per encoder: method, epochs, optimiser steps, batch size, final loss, wall time
    (minutes), parameters and checkpoint size (MB)."""
    return pd.DataFrame([
        {"model": name, "method": r["method"], "epochs": r["epochs"], "steps": r["steps"],
         "batch size": r.get("hyperparameters", {}).get("batch_size"),
         "final loss": r["final_loss"], "wall time (min)": r["wall_time_s"] / 60,
         "parameters": r["n_parameters"], "checkpoint (MB)": r["checkpoint_bytes"] / 1e6}
        for name, r in records.items()
    ]).set_index("model")  # fmt: skip


def task_table(names: Sequence[str], *, cache: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """One row per task: classes, images per split, whether its domain is in the pretraining
    pool, and what its images are."""
    rows = []
    for name in names:
        t = load_task(name, cache=cache)
        rows.append({"task": name, "classes": len(t.classes), **t.sizes(),
                     "pool domain": "in" if t.spec.in_pool_domain else "out",
                     "images": t.spec.domain})  # fmt: skip
    return pd.DataFrame(rows).set_index("task")


def compute_cost(gt: pd.DataFrame, zoo: pd.DataFrame) -> pd.DataFrame:
    """Machine time of the benchmark: runs, total and median seconds, and hours, per
    ground-truth protocol (and role, for the rebuilt protocol: ``finetune/select``,
    ``finetune/eval``) and for the pretraining of the zoo's self-supervised encoders
    (``zoo``: :func:`zoo_table`)."""
    keys = gt["protocol"] + ("/" + gt["role"] if "role" in gt.columns else "")
    cost = gt.groupby(keys)["seconds"].agg(["count", "sum", "median"])
    ssl = zoo[zoo["method"] != "random"]
    seconds = ssl["wall time (min)"] * 60
    cost.loc["pretraining"] = [len(ssl), seconds.sum(), seconds.median()]
    cost["hours"] = cost["sum"] / 3600
    return cost


def method_timings(
    x: NDArray[Any],
    y: NDArray[Any],
    metrics: Sequence[str],
    *,
    ped_options: Mapping[str, Any],
    reference: Any = None,
    repeats: int = 3,
    metric_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> pd.Series:
    """Median wall time (seconds, over ``repeats`` calls; ``timeit.repeat``) of each metric of
    :data:`ped.metrics.METRICS` on ``(x, y)`` (options from ``metric_options``), and of one
    PED run (``ped_options``, standardised by ``reference``), indexed by display name and
    ``"PED"``."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    options = metric_options or {}

    def median(fn: Any) -> float:
        return statistics.median(timeit.repeat(fn, number=1, repeat=repeats))

    row = {DISPLAY_NAMES.get(m, m): median(lambda m=m: METRICS[m](x, y, **options.get(m, {})))
           for m in metrics}  # fmt: skip
    row["PED"] = median(lambda: potential_energy_descent(x, y, reference=reference,
                                                         **ped_options))  # fmt: skip
    return pd.Series(row, name="seconds")


def effective_rank(features: ArrayLike) -> float:
    r"""Effective rank of a feature matrix (Roy and Vetterli, EUSIPCO 2007): how many
    directions the features really use, the diagnostic of a collapsed self-supervised encoder.

    .. math::
        \operatorname{erank}(X) = \exp\Bigl(-\sum_k p_k \log p_k\Bigr),\qquad
        p_k = \frac{\sigma_k}{\sum_j \sigma_j},

    with :math:`\sigma_k` the singular values of the column-centred features (float64; terms
    with :math:`p_k = 0` contribute 0).  It lies in [1, min(N - 1, D)]: r for data spread
    equally over r orthogonal directions, close to 1 when one direction dominates.  Invariant
    to a global rescaling, a translation and a rotation of the features.  Features with no
    variance at all are a ``ValueError``.
    """
    x = np.asarray(check_features(features), dtype=np.float64)
    if x.shape[0] < 2:
        raise ValueError(f"effective_rank needs at least 2 samples, got {x.shape[0]}")
    sigma = svdvals(x - x.mean(axis=0))
    total = float(sigma.sum())
    if not total > 0:
        raise ValueError("features have no variance (every sample is the same): no rank")
    return float(np.exp(entr(sigma / total).sum()))
