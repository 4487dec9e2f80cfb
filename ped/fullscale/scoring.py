r"""Score a directory of features with transferability metrics (with and without PED) and judge
the scores against fine-tuning accuracies: the logic of ``ped score`` and ``ped evaluate``.

Feature directories follow the authors' naming, ``<model>_<dataset>_feature.npy`` (N x D floats)
beside ``<model>_<dataset>_label.npy`` (N integers); :mod:`ped.fullscale.extraction` writes them.  The file
stem is split at its **last** underscore, so model names may contain underscores but dataset
names may not (none of the paper's do; ``ped extract`` refuses such names).

Every file is checked before anything is scored (``check_feature_files``): a ``.npy`` that is
empty, truncated, corrupt, pickled or an ``.npz``, features that are not an (N, D) floating-point
array, and labels that are not N whole numbers of at least 2 classes are a ``ValueError`` that
names **every** bad file and its problem; nothing is scored then (the policy is *stop*, before
any work: fix or remove the files and rerun).  Integer labels that are not ``0..C-1`` (e.g. 3, 13,
23) are remapped to ``0..C-1`` in order (logged); labels with fractional values are refused, as
``ped._validation.check_labels`` refuses them.

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

import functools
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ped.evaluation import table1_layout
from ped.scoring import SCORING_ERRORS

__all__ = [
    "EVALUATION_COLUMNS",
    "SCORE_COLUMNS",
    "SCORING_ERRORS",
    "FeatureFile",
    "ScoreItem",
    "ScorePlan",
    "check_feature_files",
    "check_score_labels",
    "evaluate_scores",
    "find_feature_files",
    "load_truth",
    "parse_feature_name",
    "read_npy",
    "resolve_metrics",
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

_FEATURE_RE = re.compile(r"^(?P<model>.+)_(?P<dataset>[^_]+)_feature\.npy$")

MetricFn = Callable[[NDArray[Any], NDArray[Any]], float]


def parse_feature_name(name: str) -> tuple[str, str] | None:
    """``(model, dataset)`` of a ``<model>_<dataset>_feature.npy`` file name (split at the last
    underscore before ``_feature.npy``), or ``None`` when ``name`` is not one."""
    match = _FEATURE_RE.match(name)
    return None if match is None else (match["model"], match["dataset"])


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
        parsed = parse_feature_name(path.name)
        if parsed is None:
            continue
        model, dataset = parsed
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
    definitions: str = "paper",
) -> dict[str, MetricFn]:
    """Metric functions by name.

    A mapping is used as given (name -> ``f(features, labels) -> float``); names are looked up in
    :data:`ped.metrics.METRICS` (imported only then) and bound to the options of
    ``definitions`` in :data:`ped.metrics.DEFINITIONS` (``"paper"``: the functions' defaults,
    the papers' formulas; ``"release"``: the released code's, which produced the published
    Table 1).  Unknown names are a ``ValueError`` listing the known ones.
    """
    if isinstance(metrics, Mapping):
        out = dict(metrics)
    else:
        names = list(metrics)
        try:
            from ped.metrics import DEFINITIONS, METRICS
        except ImportError as exc:  # pragma: no cover - depends on the metrics package
            raise ImportError(f"the metrics package ped.metrics is not available: {exc}") from exc
        if definitions not in DEFINITIONS:
            raise ValueError(
                f"definitions must be one of {sorted(DEFINITIONS)}, got {definitions!r}"
            )
        unknown = [n for n in names if n not in METRICS]
        if unknown:
            raise ValueError(
                f"unknown metric(s) {unknown}; known metrics: {', '.join(sorted(METRICS))}"
            )
        options = DEFINITIONS[definitions]
        out = {n: functools.partial(METRICS[n], **options[n]) if options.get(n) else METRICS[n]
               for n in names}  # fmt: skip
    if not out:
        raise ValueError("no metric given")
    for name, fn in out.items():
        if not callable(fn):
            raise ValueError(f"metric {name!r} is not callable")
    return out


_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"


def read_npy(path: str | os.PathLike[str], *, mmap: bool = False) -> NDArray[Any]:
    """The array of one ``.npy`` file; every way it can be unreadable is a ``ValueError`` naming it.

    Pickles are never loaded (``allow_pickle=False``).  ``mmap`` maps the file read-only instead
    of reading it (the header and the file size are still checked, so a truncated file fails).
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(_NPY_MAGIC))
    except OSError as exc:
        raise ValueError(f"{path.name}: cannot read it ({exc.strerror or exc})") from exc
    if not head:
        raise ValueError(f"{path.name}: empty file (0 bytes), not a .npy array")
    if head.startswith(_ZIP_MAGIC):
        raise ValueError(f"{path.name}: an .npz archive, not a .npy array")
    if head.startswith(b"\x80"):
        raise ValueError(f"{path.name}: a pickle, not a .npy array (pickles are never loaded)")
    if not head.startswith(_NPY_MAGIC):
        raise ValueError(f"{path.name}: not a .npy file (no NumPy header)")
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Python objects" in str(exc):
            raise ValueError(
                f"{path.name}: holds Python objects (dtype object), not numbers; pickles are never "
                "loaded"
            ) from exc
        raise ValueError(f"{path.name}: truncated or corrupt .npy file ({exc})") from exc
    except (EOFError, OSError) as exc:
        raise ValueError(
            f"{path.name}: truncated or corrupt .npy file ({type(exc).__name__}: {exc})"
        ) from exc
    return array


def check_score_labels(labels: NDArray[Any], name: str = "labels") -> NDArray[np.intp]:
    """Labels of a label file as ``0..C-1`` (intp), after checking them; ``ValueError`` naming
    ``name`` otherwise.

    They must be a 1-D array of whole numbers (an integer dtype, or floats holding whole numbers)
    with at least 2 distinct values.  Values other than ``0..C-1`` are remapped in sorted order.
    """
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{name}: labels must be a 1-D array, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name}: no labels (empty array)")
    if np.issubdtype(arr.dtype, np.floating):
        whole = np.isfinite(arr) & (arr == np.round(arr))
        if not whole.all():
            example = arr[~whole][0]
            raise ValueError(
                f"{name}: labels must be whole numbers (class ids), got {int((~whole).sum())} "
                f"non-integer value(s), e.g. {example!r}"
            )
    elif arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name}: labels must be integers (class ids), got dtype {arr.dtype}")
    uniq, inverse = np.unique(arr, return_inverse=True)
    if len(uniq) < 2:
        raise ValueError(f"{name}: labels hold a single class ({uniq[0]!r}); at least 2 are needed")
    if uniq[0] != 0 or uniq[-1] != len(uniq) - 1:
        logger.info("%s: labels remapped to 0..%d", name, len(uniq) - 1)
    return inverse.reshape(-1).astype(np.intp)


def _check_pair(item: FeatureFile) -> NDArray[np.intp]:
    """Check one feature/label pair without reading the features; return the labels."""
    features = read_npy(item.features, mmap=True)
    labels = check_score_labels(read_npy(item.labels), item.labels.name)
    if not np.issubdtype(features.dtype, np.floating):
        raise ValueError(
            f"{item.features.name}: features must be floating-point, got dtype {features.dtype}"
        )
    if features.ndim != 2 or 0 in features.shape:
        raise ValueError(
            f"{item.features.name}: features must be a non-empty (N, D) array, got shape "
            f"{features.shape}"
        )
    if features.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{item.features.name} has {features.shape[0]} rows but {item.labels.name} has "
            f"{labels.shape[0]} labels"
        )
    return labels


def check_feature_files(
    files: Sequence[FeatureFile], reference_dir: str | os.PathLike[str] | None = None
) -> dict[FeatureFile, NDArray[np.intp]]:
    """Check every file before any is scored: ``{item: labels as 0..C-1}``.

    The features are only mapped (header, shape, dtype and size are checked, not the values,
    which the metrics check); the labels are read and checked by :func:`check_score_labels`;
    the reference features ``<model>_imagenet_feature.npy`` of ``reference_dir`` that exist are
    checked too.  One ``ValueError`` names every bad file and what is wrong with it.
    """
    labels: dict[FeatureFile, NDArray[np.intp]] = {}
    problems: list[str] = []
    for item in files:
        try:
            labels[item] = _check_pair(item)
        except ValueError as exc:
            problems.append(str(exc))
    if reference_dir is not None:
        for model in sorted({item.model for item in files}):
            path = Path(reference_dir) / f"{model}_imagenet_feature.npy"
            if not path.is_file():
                continue
            try:
                ref = read_npy(path, mmap=True)
                if ref.ndim != 2 or 0 in ref.shape or not np.issubdtype(ref.dtype, np.floating):
                    raise ValueError(
                        f"{path.name}: reference features must be a non-empty (M, D) "
                        f"floating-point array, got shape {ref.shape}, dtype {ref.dtype}"
                    )
            except ValueError as exc:
                problems.append(f"reference {exc}")
    if problems:
        raise ValueError(
            f"nothing scored: {len(problems)} bad file(s): {'; '.join(problems)} ({len(labels)} "
            f"of {len(files)} feature file pair(s) are readable; fix or remove the bad files and "
            "rerun)"
        )
    return labels


def _reference_for(
    model: str, reference_dir: Path | None, cache: dict[str, NDArray[Any] | None]
) -> NDArray[Any] | None:
    if reference_dir is None:
        return None
    if model not in cache:
        path = reference_dir / f"{model}_imagenet_feature.npy"
        if path.is_file():
            cache[model] = read_npy(path)
        else:
            logger.warning("no reference %s: PED uses the target statistics for %s", path, model)
            cache[model] = None
    return cache[model]


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
    ``ped_steps``.  With ``record_errors`` a :data:`SCORING_ERRORS` failure of a metric (or of
    PED) gives a NaN score with the message in ``error`` and the loop goes on; without it the
    failure propagates.  ``bar`` (a tqdm bar) advances once per item and metric.  Items are
    consumed one at a time, so a generator that reads files keeps one in memory.
    """
    from ped.dynamics import potential_energy_descent
    from ped.scoring import score_arms

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
        The metrics' options (:func:`resolve_metrics`): the papers' formulas (default) or the
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
    from ped._progress import tqdm

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
    from ped.dynamics import check_ped_options

    fns = resolve_metrics(metrics, definitions)
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


# the evaluation of the scores lives in ped.fullscale.evaluate; its names are re-exported here
from ped.fullscale.evaluate import EVALUATION_COLUMNS, evaluate_scores, load_truth
