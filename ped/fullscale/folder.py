r"""A features folder in the authors' naming: find its files, read them, check them.

Feature directories follow the authors' naming, ``<model>_<dataset>_feature.npy`` (N x D
floats) beside ``<model>_<dataset>_label.npy`` (N integers); :mod:`ped.fullscale.extraction`
writes them.  The file stem is split at its **last** underscore, so model names may contain underscores but dataset
names may not (none of the paper's do; ``ped extract`` refuses such names).

Every file is checked before anything is scored (``check_feature_files``): a ``.npy`` that is
empty, truncated, corrupt, pickled or an ``.npz``, features that are not an (N, D) floating-point
array, and labels that are not N whole numbers of at least 2 classes are a ``ValueError`` that
names **every** bad file and its problem; nothing is scored then (the policy is *stop*, before
any work: fix or remove the files and rerun).  Integer labels that are not ``0..C-1`` (e.g. 3, 13,
23) are remapped to ``0..C-1`` in order (logged); labels with fractional values are refused, as
``ped._validation.check_labels`` refuses them.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "FeatureFile",
    "check_feature_files",
    "check_score_labels",
    "find_feature_files",
    "parse_feature_name",
    "read_npy",
]

logger = logging.getLogger("ped.fullscale.scoring")  # the scoring command's logger

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"
_FEATURE_RE = re.compile(r"^(?P<model>.+)_(?P<dataset>[^_]+)_feature\.npy$")


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


