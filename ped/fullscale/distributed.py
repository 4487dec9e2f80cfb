"""``ped score`` on a Dask cluster: one task per model x dataset, results kept as they finish.

:func:`score_features_distributed` checks everything as :func:`ped.fullscale.scoring.score_features`
does (:func:`~ped.fullscale.scoring.score_plan`), then submits one task per feature file to a
``dask.distributed`` cluster: a ``LocalCluster`` started for the run, or an existing scheduler
given by its address (workers must see the same paths).  Each task reads its files on the worker
and scores every metric, with and without PED, through
:func:`~ped.fullscale.scoring.score_items`, the loop a local run uses.

Each finished task is written at once, atomically, to ``<parts>/<model>__<dataset>.json`` with
the run's configuration and the sha256 of its inputs.  A run that is interrupted and started
again scores only what is missing or stale (other metrics or options, a changed file), so a
cluster that dies costs only the tasks in flight.  The table is assembled in the files' order,
so it equals a local run's, timings aside.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ped._io import sha256_file, write_json_atomic
from ped._progress import tqdm
from ped.fullscale.folder import FeatureFile
from ped.fullscale.scoring import ScorePlan, score_items, score_plan, score_table
from ped.scoring import bind_metrics
from ped.tools.cluster import dask_client, require_distributed

__all__ = ["score_features_distributed", "parts_dir"]

logger = logging.getLogger(__name__)


def parts_dir(out: str | os.PathLike[str]) -> Path:
    """Where the finished tasks of a run writing ``out`` are kept: ``.<name>.parts`` beside it."""
    out = Path(out)
    return out.parent / f".{out.name}.parts"


def _part_path(parts: Path, file: FeatureFile) -> Path:
    return parts / f"{file.model}__{file.dataset}.json"


def _inputs(file: FeatureFile, reference: Path | None) -> dict[str, str]:
    paths = {"features": file.features, "labels": file.labels}
    if reference is not None and reference.is_file():
        paths["reference"] = reference
    return {k: sha256_file(p) for k, p in paths.items()}


def _score_task(file: FeatureFile, labels: Any, reference_dir: Path | None, metrics: Sequence[str],
                definitions: str, ped: bool, ped_options: Mapping[str, Any]) -> list[dict[str, Any]]:  # fmt: skip
    """One model x dataset, on a worker: read the files, score every metric (and PED)."""
    fns = bind_metrics(list(metrics), definitions=definitions)
    plan = ScorePlan(fns, ped, dict(ped_options), [file], {file: labels}, reference_dir)
    return score_items([plan.item(file, {})], fns, ped=ped, ped_options=plan.ped_options)


def score_features_distributed(
    features_dir: str | os.PathLike[str],
    metrics: Sequence[str],
    *,
    out: str | os.PathLike[str],
    scheduler: str | None = None,
    n_workers: int = 2,
    threads_per_worker: int = 1,
    ped: bool = False,
    reference_dir: str | os.PathLike[str] | None = None,
    ped_options: Mapping[str, Any] | None = None,
    datasets: Iterable[str] | None = None,
    models: Iterable[str] | None = None,
    definitions: str = "paper",
    progress: bool = False,
) -> pd.DataFrame:
    """Score a features folder as :func:`ped.fullscale.scoring.score_features` does, one Dask
    task per feature file, keeping each finished task in :func:`parts_dir` of ``out`` (the
    table itself is the caller's to write; the parts are removed once it is written).
    ``metrics`` are names (the workers bind them); ``scheduler`` an address
    (``tcp://host:8786``) or ``None`` for a ``LocalCluster`` of ``n_workers`` processes."""
    as_completed = require_distributed().as_completed

    if isinstance(metrics, Mapping) or not all(isinstance(m, str) for m in metrics):
        raise ValueError("a distributed run takes metric names (the workers bind them)")
    # absolute paths: the workers of an external scheduler run in other folders
    features_dir = Path(features_dir).resolve()
    reference_dir = None if reference_dir is None else Path(reference_dir).resolve()
    plan = score_plan(features_dir, metrics, ped=ped, reference_dir=reference_dir,
                      ped_options=ped_options, datasets=datasets, models=models,
                      definitions=definitions)  # fmt: skip
    config = {"metrics": list(metrics), "definitions": definitions, "ped": bool(ped),
              "ped_options": {k: plan.ped_options[k] for k in sorted(plan.ped_options)}}  # fmt: skip
    parts = parts_dir(out)
    done: dict[FeatureFile, list[dict[str, Any]]] = {}
    todo = []
    refs = {f: (plan.reference_dir / f"{f.model}_imagenet_feature.npy"
                if plan.reference_dir is not None and ped else None) for f in plan.files}  # fmt: skip
    inputs = {f: _inputs(f, refs[f]) for f in plan.files}
    for f in plan.files:
        path = _part_path(parts, f)
        if path.is_file():
            try:
                stored = json.loads(path.read_text())
                if stored.get("config") == config and stored.get("inputs") == inputs[f]:
                    done[f] = stored["rows"]
                    continue
            except (ValueError, OSError, KeyError):
                pass
            logger.info("%s is stale or unreadable: rescoring it", path.name)
        todo.append(f)
    if done:
        logger.info("%d of %d task(s) already done in %s", len(done), len(plan.files), parts)
    if todo:
        parts.mkdir(parents=True, exist_ok=True)
        with dask_client(scheduler, n_workers, threads_per_worker) as client, \
                tqdm(total=len(todo), desc="score", unit="file", disable=not progress) as bar:  # fmt: skip
            futures = {client.submit(_score_task, f, plan.labels[f], plan.reference_dir,
                                     list(metrics), definitions, ped, plan.ped_options,
                                     key=f"ped-score-{f.model}-{f.dataset}", pure=False): f
                       for f in todo}  # fmt: skip
            for future in as_completed(futures):
                f = futures[future]
                rows = future.result()
                write_json_atomic(_part_path(parts, f), {"config": config, "inputs": inputs[f],
                                                         "rows": rows})  # fmt: skip
                done[f] = rows
                bar.update(1)
    return score_table([row for f in plan.files for row in done[f]])
