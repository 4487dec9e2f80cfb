"""The verdict's stored scores: one ``.npz`` per task and score set, written atomically, recorded
in its folder's sha256 manifest (:data:`SCORES_MANIFEST`) and verified before it is read
(:func:`load_task_scores`, :func:`load_scores`).

The scorers of :mod:`ped.bench.verdict` and :mod:`ped.bench.regime_axes` write through
``_store`` (which refuses a NaN or infinite score) and skip a task whose stored file is current
(``_is_current``: listed in the manifest and computed with the same configuration).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ped._io import read_json_record, sha256_file, write_json_atomic, write_npz_atomic
from ped.metrics import METRICS

__all__ = [
    "SCORES_MANIFEST",
    "record_scores",
    "verify_scores",
    "load_task_scores",
    "restrict_models",
    "load_scores",
]

logger = logging.getLogger(__name__)


def _config_hash(config: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def _features_digest(
    features: Mapping[str, tuple[NDArray[Any], NDArray[Any]]], models: Sequence[str]
) -> str:
    """A short sha256 of the scored features and labels of ``models``, in that order."""
    digest = hashlib.sha256()
    for m in models:
        for array in features[m]:
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


#: The sha256 manifest of a folder of stored scores (file name -> sha256), written beside them.
SCORES_MANIFEST = "manifest.json"


def _read_manifest(folder: Path) -> dict[str, str]:
    path = folder / SCORES_MANIFEST
    if not path.is_file():
        return {}
    return dict(read_json_record(path, ("files",), what="a manifest of stored scores")["files"])


def record_scores(path: str | os.PathLike[str]) -> None:
    """Add (or update) the stored score file ``path`` in its folder's sha256 manifest."""
    path = Path(path)
    files = _read_manifest(path.parent)
    files[path.name] = sha256_file(path)
    write_json_atomic(path.parent / SCORES_MANIFEST, {"version": 1, "files": files})


def verify_scores(path: str | os.PathLike[str]) -> None:
    """Check a stored score file against its folder's manifest; a ``ValueError`` names the file
    when it is missing from the manifest (no manifest, or written outside ``make verdict``)
    or does not match its sha256 (edited, truncated or corrupt)."""
    path = Path(path)
    files = _read_manifest(path.parent)
    if path.name not in files:
        raise ValueError(f"{path} is not in {path.parent / SCORES_MANIFEST}: it was not written "
                         "by `make verdict`, or the manifest is missing")  # fmt: skip
    if sha256_file(path) != files[path.name]:
        raise ValueError(f"{path} does not match its sha256 in {path.parent / SCORES_MANIFEST} "
                         "(edited or corrupt): rerun `make verdict`")  # fmt: skip


def _scored_models(
    metrics: Sequence[str],
    features: Mapping[str, Any],
    stats: Mapping[str, Any],
) -> list[str]:
    """The models to score, sorted, after checking that every metric exists and every model
    has PED's statistics (a ``ValueError`` names what is missing)."""
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}")
    models = sorted(features)
    missing = [m for m in models if m not in stats]
    if missing:
        raise ValueError(f"no PED statistics for model(s) {missing}")
    return models


def _store(path: Path, task: str, models: Sequence[str], config: Mapping[str, Any],
           arrays: Mapping[str, NDArray[Any]], **extra: NDArray[Any]) -> Path:  # fmt: skip
    """Refuse non-finite scores, write the score file atomically with ``models``, ``config``
    and ``extra``, and record it in its folder's manifest."""
    _check_finite(task, models, arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_npz_atomic(path, models=np.asarray(models),
                     config=np.asarray(json.dumps(config, sort_keys=True)), **extra, **arrays)
    record_scores(path)
    return path


def _is_current(path: Path, config: Mapping[str, Any]) -> bool:
    """Whether the stored score file ``path`` exists, matches its manifest and was computed with
    ``config`` (a file that fails its manifest is rescored, with a warning)."""
    if not path.is_file():
        return False
    try:
        verify_scores(path)
        with np.load(path) as z:
            return str(z["config"]) == json.dumps(config, sort_keys=True)
    except (ValueError, OSError, KeyError) as exc:  # corrupt, unlisted, unreadable
        logger.warning("%s: %s; rescoring", path, exc)
        return False


def _check_finite(task: str, models: Sequence[str], arrays: Mapping[str, NDArray[Any]]) -> None:
    """Refuse to store a score that is NaN or infinite, naming where it is."""
    for key, values in arrays.items():
        bad = np.argwhere(~np.isfinite(values))
        if bad.size:
            row, col = bad[0]
            arm, metric = key.split("__")
            raise ValueError(f"task {task!r}: {metric} of {models[col]!r} is {values[row, col]} "
                             f"in the {arm} arm (row {row}; {len(bad)} such score(s)); nothing "
                             "stored")  # fmt: skip


def load_task_scores(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A stored :func:`~ped.bench.verdict.score_task` file as a dict (``models`` a list,
    ``config`` a dict), after checking it against its folder's manifest (:func:`verify_scores`)."""
    verify_scores(path)
    with np.load(path) as z:
        out: dict[str, Any] = {k: z[k].copy() for k in z.files}
    out["models"] = [str(m) for m in out["models"]]
    out["config"] = json.loads(str(out["config"]))
    return out


def restrict_models(
    scores: Mapping[str, Mapping[str, Any]], models: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """The stored scores (task -> :func:`load_task_scores`) of ``models`` only, in their order.

    The verdict scores every encoder of the zoo; the endpoint is computed on the models that
    have a ground truth (a rebuild in progress has fewer).  A model missing from a task's
    scores is a ``ValueError``; the input is not modified.
    """
    out = {}
    for task, s in scores.items():
        missing = [m for m in models if m not in s["models"]]
        if missing:
            raise ValueError(f"task {task!r}: no stored scores for model(s) {missing} "
                             "(rerun `make verdict`)")  # fmt: skip
        idx = np.array([s["models"].index(m) for m in models], dtype=np.intp)
        sub: dict[str, Any] = {}
        for key, value in s.items():
            if key == "models":
                sub[key] = list(models)
            elif key == "steps":
                sub[key] = np.asarray(value)[idx]
            elif "__" in key:
                sub[key] = np.asarray(value)[:, idx]
            else:
                sub[key] = value
        out[task] = sub
    return out


def load_scores(
    folder: str | os.PathLike[str],
    tasks: Sequence[str],
    models: Sequence[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """The stored scores (:func:`load_task_scores`) of ``tasks`` in ``folder``, task -> scores,
    restricted to ``models`` when given (:func:`restrict_models`).  A task without its file is
    a ``ValueError`` naming the command that writes it."""
    folder = Path(folder)
    missing = [t for t in tasks if not (folder / f"{t}.npz").is_file()]
    if missing:
        raise ValueError(f"no stored verdict scores for task(s) {missing} in {folder} "
                         "(run `make verdict`)")  # fmt: skip
    scores = {t: load_task_scores(folder / f"{t}.npz") for t in tasks}
    return restrict_models(scores, models) if models is not None else scores
