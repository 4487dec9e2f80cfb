r"""Score a directory of features with transferability metrics (with and without PED) and judge
the scores against fine-tuning accuracies: the logic of ``ped score`` and ``ped evaluate``.

Feature directories follow the authors' naming, ``<model>_<dataset>_feature.npy`` (N x D floats)
beside ``<model>_<dataset>_label.npy`` (N integers); :mod:`ped.extraction` writes them.  The file
stem is split at its **last** underscore, so model names may contain underscores but dataset
names may not (none of the paper's do).

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

:func:`evaluate_scores` turns such a table into the rank statistics of
:func:`ped.evaluation.rank_statistics` per dataset x metric x ped, against the published fine-tuning
accuracies (:func:`ped.data.finetune_accuracy`) or any truth table.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

__all__ = [
    "SCORE_COLUMNS",
    "EVALUATION_COLUMNS",
    "FeatureFile",
    "find_feature_files",
    "resolve_metrics",
    "score_features",
    "load_truth",
    "evaluate_scores",
    "register_cli",
]

logger = logging.getLogger(__name__)

#: Columns of the table :func:`score_features` returns, in order.
SCORE_COLUMNS = (
    "model", "dataset", "metric", "ped", "score", "seconds", "ped_seconds", "ped_reference",
    "n_samples", "error",
)  # fmt: skip
#: Columns of the table :func:`evaluate_scores` returns, in order.
EVALUATION_COLUMNS = (
    "dataset", "metric", "ped", "n_models", "weighted_tau", "kendall_tau", "pearson_r",
    "spearman_rho", "top1_regret",
)  # fmt: skip

_FEATURE_RE = re.compile(r"^(?P<model>.+)_(?P<dataset>[^_]+)_feature\.npy$")

MetricFn = Callable[[NDArray[Any], NDArray[Any]], float]


@dataclass(frozen=True)
class FeatureFile:
    """One ``<model>_<dataset>_feature.npy`` file and its label file."""

    model: str
    dataset: str
    features: Path
    labels: Path


def find_feature_files(
    directory: str | os.PathLike[str], *, exclude_datasets: Iterable[str] = ()
) -> list[FeatureFile]:
    """Every ``<model>_<dataset>_feature.npy`` in ``directory`` that has its ``_label.npy``.

    Sorted by dataset, then model.  Feature files without labels are skipped with a warning;
    ``exclude_datasets`` (e.g. ``{"imagenet"}`` for reference features kept in the same folder)
    are skipped silently.  Raises ``FileNotFoundError`` for a missing folder and ``ValueError``
    when it holds no feature file.
    """
    folder = Path(directory)
    if not folder.is_dir():
        raise FileNotFoundError(f"features folder {folder} not found")
    excluded = set(exclude_datasets)
    found = []
    for path in sorted(folder.glob("*_feature.npy")):
        match = _FEATURE_RE.match(path.name)
        if match is None:
            continue
        model, dataset = match["model"], match["dataset"]
        if dataset in excluded:
            continue
        labels = folder / f"{model}_{dataset}_label.npy"
        if not labels.is_file():
            logger.warning("skipping %s: no label file %s", path.name, labels.name)
            continue
        found.append(FeatureFile(model, dataset, path, labels))
    if not found:
        raise ValueError(
            f"no <model>_<dataset>_feature.npy with its _label.npy found in {folder}"
        )
    return sorted(found, key=lambda f: (f.dataset, f.model))


def resolve_metrics(
    metrics: Sequence[str] | Mapping[str, MetricFn],
) -> dict[str, MetricFn]:
    """Metric functions by name.

    A mapping is used as given (name -> ``f(features, labels) -> float``); names are looked up in
    :data:`ped.metrics.METRICS` (imported only then).  Unknown names are a ``ValueError`` listing
    the known ones.
    """
    if isinstance(metrics, Mapping):
        out = dict(metrics)
    else:
        names = list(metrics)
        try:
            from ped.metrics import METRICS
        except ImportError as exc:  # pragma: no cover - depends on the metrics package
            raise ImportError(f"the metrics package ped.metrics is not available: {exc}") from exc
        unknown = [n for n in names if n not in METRICS]
        if unknown:
            raise ValueError(
                f"unknown metric(s) {unknown}; known metrics: {', '.join(sorted(METRICS))}"
            )
        out = {n: METRICS[n] for n in names}
    if not out:
        raise ValueError("no metric given")
    for name, fn in out.items():
        if not callable(fn):
            raise ValueError(f"metric {name!r} is not callable")
    return out


def _load_pair(item: FeatureFile) -> tuple[NDArray[np.floating], NDArray[np.intp]]:
    features = np.load(item.features)
    labels = np.load(item.labels)
    if features.ndim != 2 or labels.ndim != 1 or features.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{item.features.name} {features.shape} and {item.labels.name} {labels.shape} do not "
            f"form (N, D) features with N labels"
        )
    uniq, inverse = np.unique(labels, return_inverse=True)
    if uniq[0] != 0 or uniq[-1] != len(uniq) - 1:
        logger.info("%s: labels remapped to 0..%d", item.labels.name, len(uniq) - 1)
    return features, inverse.astype(np.intp)


def _reference_for(
    model: str, reference_dir: Path | None, cache: dict[str, NDArray[Any] | None]
) -> NDArray[Any] | None:
    if reference_dir is None:
        return None
    if model not in cache:
        path = reference_dir / f"{model}_imagenet_feature.npy"
        if path.is_file():
            cache[model] = np.load(path)
        else:
            logger.warning("no reference %s: PED uses the target statistics for %s", path, model)
            cache[model] = None
    return cache[model]


def _timed(fn: Callable[[], Any]) -> tuple[Any, float, str]:
    start = time.perf_counter()
    try:
        value = fn()
        error = ""
    except (ValueError, ArithmeticError, np.linalg.LinAlgError, MemoryError) as exc:
        value = None
        error = f"{type(exc).__name__}: {exc}"
    return value, time.perf_counter() - start, error


def score_features(
    features_dir: str | os.PathLike[str],
    metrics: Sequence[str] | Mapping[str, MetricFn],
    *,
    ped: bool = False,
    reference_dir: str | os.PathLike[str] | None = None,
    ped_options: Mapping[str, Any] | None = None,
    datasets: Iterable[str] | None = None,
    models: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Score every feature file of ``features_dir`` with every metric (see the module docstring
    for the table's columns).

    Parameters
    ----------
    features_dir : path
        Folder of ``<model>_<dataset>_feature.npy`` / ``_label.npy`` pairs.
    metrics : names or mapping
        Metric names of :data:`ped.metrics.METRICS`, or a mapping name -> function.
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

    A metric (or PED) raising ``ValueError``, ``ArithmeticError``, ``LinAlgError`` or
    ``MemoryError`` gives a NaN score with the message in ``error``; the run goes on.
    """
    from ped.dynamics import potential_energy_descent

    fns = resolve_metrics(metrics)
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
    options = dict(ped_options or {})
    cache: dict[str, NDArray[Any] | None] = {}
    rows: list[dict[str, Any]] = []
    for item in files:
        x, y = _load_pair(item)
        variants: list[tuple[bool, NDArray[Any] | None, float, str, str]] = [
            (False, x, 0.0, "", "")
        ]
        if ped:
            ref = _reference_for(item.model, ref_dir, cache)
            result, ped_seconds, error = _timed(
                lambda: potential_energy_descent(x, y, reference=ref, **options)
            )
            moved = None if result is None else result.features
            if error:
                logger.warning("PED failed on %s/%s: %s", item.model, item.dataset, error)
            variants.append(
                (True, moved, ped_seconds, "target" if ref is None else "imagenet", error)
            )
        for name, fn in fns.items():
            for use_ped, feats, ped_seconds, reference, ped_error in variants:
                if feats is None:
                    score, seconds, error = None, 0.0, ped_error
                else:
                    score, seconds, error = _timed(lambda: fn(feats, y))  # noqa: B023
                if error and not ped_error:
                    logger.warning(
                        "%s failed on %s/%s (ped=%s): %s",
                        name, item.model, item.dataset, use_ped, error,
                    )  # fmt: skip
                rows.append(
                    {
                        "model": item.model,
                        "dataset": item.dataset,
                        "metric": name,
                        "ped": use_ped,
                        "score": float("nan") if score is None else float(score),
                        "seconds": seconds,
                        "ped_seconds": ped_seconds,
                        "ped_reference": reference,
                        "n_samples": int(x.shape[0]),
                        "error": error,
                    }
                )
            logger.info("%s/%s %s done", item.model, item.dataset, name)
    table = pd.DataFrame(rows, columns=list(SCORE_COLUMNS))
    return table.astype({"ped": bool, "score": float, "seconds": float, "ped_seconds": float})


def load_truth(truth: str | os.PathLike[str] | pd.DataFrame | None = None) -> pd.DataFrame:
    """Ground-truth accuracies as a tidy table ``(model, dataset, accuracy)``.

    ``None`` gives the published fine-tuning accuracies (:func:`ped.data.finetune_accuracy`).
    A CSV (or DataFrame) is either tidy, with columns ``model``, ``dataset``, ``accuracy``, or
    wide like ``data/published/finetune_acc.csv``: a ``dataset`` column (or index) and one column
    per model.
    """
    if truth is None:
        from ped.data import finetune_accuracy

        wide = finetune_accuracy()
        return _wide_to_tidy(wide)
    if isinstance(truth, pd.DataFrame):
        frame = truth.copy()
    else:
        path = Path(truth)
        if not path.is_file():
            raise FileNotFoundError(f"truth file {path} not found")
        frame = pd.read_csv(path)
    if {"model", "dataset", "accuracy"} <= set(frame.columns):
        tidy = frame[["model", "dataset", "accuracy"]].copy()
    else:
        if "dataset" in frame.columns:
            frame = frame.set_index("dataset")
        elif frame.index.name != "dataset":
            raise ValueError(
                "truth table must be tidy (columns model, dataset, accuracy) or wide (a "
                f"'dataset' column and one column per model); got columns {list(frame.columns)}"
            )
        tidy = _wide_to_tidy(frame)
    tidy["model"] = tidy["model"].astype(str)
    tidy["dataset"] = tidy["dataset"].astype(str)
    tidy["accuracy"] = pd.to_numeric(tidy["accuracy"], errors="raise").astype(float)
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

    ``scores`` is the table of :func:`score_features` (or its CSV); ``truth`` as in
    :func:`load_truth`.  Models without a finite score or without a truth value are left out of
    their group (logged); groups with fewer than ``min_models`` models are skipped (logged).
    """
    from ped.evaluation import rank_statistics

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


def _as_bool(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    text = str(value).strip().lower()
    if text in {"true", "1", "yes"}:
        return True
    if text in {"false", "0", "no", ""}:
        return False
    raise ValueError(f"ped column holds {value!r}, not a boolean")


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _atomic_csv(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    frame.to_csv(tmp, index=False)
    os.replace(tmp, path)


def _cmd_score(args: argparse.Namespace) -> int:
    options = {"nsigma": args.nsigma, "time_step": args.time_step, "variant": args.variant}
    table = score_features(
        args.features, args.metric, ped=args.ped, reference_dir=args.reference,
        ped_options=options,
    )  # fmt: skip
    _atomic_csv(table, Path(args.out))
    n_err = int((table["error"] != "").sum())
    print(
        f"wrote {args.out}: {len(table)} row(s), {table['model'].nunique()} model(s), "
        f"{table['dataset'].nunique()} dataset(s){f', {n_err} failed' if n_err else ''}"
    )
    if args.ped:
        refs = sorted(set(table.loc[table["ped"], "ped_reference"]))
        print(f"PED standardisation: {', '.join(refs)}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    table = evaluate_scores(args.scores, args.truth, min_models=args.min_models)
    _atomic_csv(table, Path(args.out))
    print(f"wrote {args.out}: {len(table)} row(s)")
    if len(table):
        pivot = table.pivot_table(
            index=["metric", "ped"], columns="dataset", values="weighted_tau"
        )
        pivot["mean"] = pivot.mean(axis=1)
        print("weighted tau:")
        print(pivot.round(3).to_string())
    return 0


def register_cli(subparsers: Any) -> None:
    """Add ``ped score`` and ``ped evaluate`` to the ``ped`` command line."""
    s = subparsers.add_parser(
        "score",
        help="score a features folder with transferability metrics (optionally + PED)",
        description=(
            "Score every <model>_<dataset>_feature.npy (with its _label.npy) in FEATURES with "
            "each metric (without PED and, with --ped, also with PED) into a tidy CSV with columns "
            + ", ".join(SCORE_COLUMNS) + "."
        ),
    )
    s.add_argument("--features", required=True, help="folder of feature/label .npy files")
    s.add_argument(
        "--metric", action="append", required=True, help="metric name (ped.metrics); repeatable"
    )
    s.add_argument("--ped", action="store_true", help="also score PED-moved features")
    s.add_argument(
        "--reference", default=None,
        help="folder of <model>_imagenet_feature.npy for PED's standardisation "
        "(default: the target statistics)",
    )  # fmt: skip
    s.add_argument("--nsigma", type=float, default=0.6, help="PED radius scale (0.3 or 0.6)")
    s.add_argument("--time-step", type=float, default=0.1, help="PED time step")
    s.add_argument("--variant", choices=("official", "paper"), default="official")
    s.add_argument("--out", required=True, help="output CSV")
    s.set_defaults(func=_cmd_score)

    e = subparsers.add_parser(
        "evaluate",
        help="rank statistics (weighted tau, ...) of scores against fine-tuning accuracies",
        description=(
            "Weighted Kendall tau and the other rank statistics per dataset x metric x ped, "
            "against --truth (default: the published fine-tuning accuracies)."
        ),
    )
    e.add_argument("--scores", required=True, help="CSV written by `ped score`")
    e.add_argument(
        "--truth", default=None,
        help="accuracies CSV: tidy (model, dataset, accuracy) or wide (dataset x models); "
        "default: the published fine-tuning accuracies",
    )  # fmt: skip
    e.add_argument("--min-models", type=int, default=3, help="skip groups with fewer models")
    e.add_argument("--out", required=True, help="output CSV")
    e.set_defaults(func=_cmd_evaluate)
