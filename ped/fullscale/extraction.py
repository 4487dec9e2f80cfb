r"""Feature extraction for the full-scale reproduction: ResNet-50 backbones on the paper's datasets.

The paper scores the 2048-d average-pooled features of 12 self-supervised ResNet-50 checkpoints on
11 target datasets.  This module rebuilds that step:

- :mod:`ped.fullscale.backbones`: a torchvision ResNet-50 with the classifier replaced by the
  identity, loaded from the checkpoint formats of the public self-supervised releases (plain
  ``state_dict``; ``{"state_dict": ...}`` / ``{"model": ...}`` wrappers, nested; ``module.``,
  ``encoder.``, ``encoder_q.``, ``backbone.``, ``model.`` -style prefixes, found automatically).
  Projection heads and classifiers are ignored (and logged); any other missing or unexpected
  backbone key is a clear ``ValueError``.
- :mod:`ped.fullscale.datasets`: the paper's transform (``Resize(224, bicubic)``,
  ``CenterCrop(224)``, ImageNet mean/std) and its datasets as torchvision classes, never
  downloading, with the splits below (each sample once: the released loader read the
  CIFAR-10/100 and SUN397 training sets twice).
- :func:`extract_features`: batched, eval mode, ``torch.inference_mode``, CUDA when available.
- :func:`extract_to_directory`: the resumable version behind ``ped extract``; it writes
  ``<model>_<dataset>_feature.npy`` (float32, N x 2048) and ``<model>_<dataset>_label.npy``
  (int64, N), the authors' file names, so their features can be dropped in beside ours.

Splits (``split="all"``, the default, is what the released code scored: every official split,
each sample exactly once):

============ ======================= ===================================== ====================
name         torchvision class       ``all`` =                             other splits
============ ======================= ===================================== ====================
cifar10      CIFAR10                 train (50,000) + test (10,000)        train, test
cifar100     CIFAR100                train (50,000) + test (10,000)        train, test
dtd          DTD (partition 1)       train + val + test (5,640)            train, val, test,
                                                                           trainval
flowers      Flowers102              train + val + test (8,189)            train, val, test,
                                                                           trainval
pets         OxfordIIITPet           trainval + test (7,349)               trainval, test
food         Food101                 train + test (101,000)                train, test
aircraft     FGVCAircraft (variant)  trainval + test (10,000)              train, val, test,
                                                                           trainval
cars         StanfordCars            train + test (16,185)                 train, test
caltech101   Caltech101 (category)   the whole set (8,677; no official     --
                                     split)
sun397       SUN397                  the whole set (108,754; torchvision   --
                                     has no partitions)
voc2007      VOCDetection 2007       trainval + test (9,963)               train, val, test,
                                                                           trainval
imagefolder  ImageFolder             the tree under ``root`` (``split``    any sub-folder name
                                     names a sub-folder, e.g. ``val``)
fake         FakeData                1,000 random 64 px images, 10         --
                                     classes (tests and demos)
============ ======================= ===================================== ====================

VOC2007 is multi-label (the paper's accuracy for it is mAP).  The metrics need one label per image,
so :class:`ped.fullscale.datasets.VOCLargestObject` labels each image with the class of its largest non-difficult
bounding box (largest of all boxes when every box is marked difficult), classes numbered in the
alphabetical order of :data:`ped.fullscale.datasets.VOC_CLASSES`.

torch and torchvision are optional dependencies of :mod:`ped` (``pip install ped[torch]``): they
are imported when a function here needs them, so ``import ped.fullscale.extraction`` works without them.

*Why one module of over 500 lines:* it is one resumable pipeline.  Batches become shards,
shards a feature file, and the record of the settings decides what a rerun reuses; each step
writes what the next one checks.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from ped._backend import resolve_device
from ped._io import write_json_atomic, write_npz_atomic

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn
    from torch.utils.data import Dataset

# the backbone and the datasets live in their own modules; these names are used here and
# re-exported, as callers import them from here
from ped._io import atomic_path
from ped._progress import tqdm
from ped._validation import check_positive_int
from ped.fullscale.backbones import (
    FEATURE_DIM,
    IGNORED_HEADS,
    WRAPPER_KEYS,
    _require_torch,
    build_backbone,
    load_backbone,
    map_backbone_keys,
    unwrap_state_dict,
)
from ped.fullscale.datasets import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PAPER_DATASETS,
    VOC_CLASSES,
    DatasetSpec,
    VOCLargestObject,
    build_dataset,
    paper_transform,
)
from ped.fullscale.folder import parse_feature_name

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "FEATURE_DIM",
    "IGNORED_HEADS",
    "WRAPPER_KEYS",
    "VOC_CLASSES",
    "PAPER_DATASETS",
    "DatasetSpec",
    "ExtractionResult",
    "VOCLargestObject",
    "build_backbone",
    "unwrap_state_dict",
    "map_backbone_keys",
    "load_backbone",
    "paper_transform",
    "build_dataset",
    "resolve_device",
    "extract_features",
    "extract_to_directory",
    "output_paths",
    "record_path",
    "check_names",
    "samples_to_extract",
    "extraction_settings",
    "reusable_outputs",
]

logger = logging.getLogger(__name__)




# --------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _iter_batches(
    model: nn.Module,
    dataset: Dataset,
    batches: Sequence[Sequence[int]],
    *,
    device: torch.device,
    num_workers: int,
    progress: bool,
    description: str,
) -> Iterator[tuple[NDArray[np.float32], NDArray[np.int64]]]:
    """Yield ``(features, labels)`` per batch of indices, in order."""
    import torch
    from torch.utils.data import DataLoader

    loader = DataLoader(
        dataset,
        batch_sampler=[list(b) for b in batches],
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    total = sum(len(b) for b in batches)
    with _eval_mode(model), torch.inference_mode(), tqdm(
        total=total, desc=description, unit="img", disable=not progress, leave=False
    ) as bar:
        for images, labels in loader:
            images = images.to(device, non_blocking=True)
            out = model(images)
            if out.ndim != 2:
                out = out.flatten(1)
            feats = out.float().cpu().numpy()
            labs = torch.as_tensor(labels).to(torch.int64).cpu().numpy()
            bar.update(len(labs))
            yield feats, labs


def _batches(start: int, stop: int, batch_size: int) -> list[range]:
    return [range(s, min(s + batch_size, stop)) for s in range(start, stop, batch_size)]


def extract_features(
    model: nn.Module,
    dataset: Dataset,
    *,
    batch_size: int = 64,
    device: str | torch.device = "auto",
    num_workers: int = 0,
    limit: int | None = None,
    progress: bool = False,
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Features and labels of every sample of ``dataset`` (first ``limit`` ones if given).

    The model runs in eval mode under ``torch.inference_mode`` on ``device`` (``"auto"``: CUDA
    when available); its training flag is restored afterwards, but it is left on ``device``.
    Samples are read in order (no shuffling).  Returns float32 features ``(N, D)`` and int64
    labels ``(N,)``.
    """
    _require_torch()

    batch_size = check_positive_int(batch_size, "batch_size")
    n = samples_to_extract(dataset, limit)
    dev = resolve_device(device)
    model.to(dev)
    feats: list[NDArray[np.float32]] = []
    labs: list[NDArray[np.int64]] = []
    for f, y in _iter_batches(
        model, dataset, _batches(0, n, batch_size), device=dev, num_workers=num_workers,
        progress=progress, description="extract",
    ):  # fmt: skip
        feats.append(f)
        labs.append(y)
    return np.concatenate(feats).astype(np.float32, copy=False), np.concatenate(labs)


def samples_to_extract(dataset: Dataset, limit: int | None) -> int:
    """How many samples of ``dataset`` an extraction covers: all, or the first ``limit``;
    ``ValueError`` for an empty dataset or a limit below 1."""
    n = len(dataset)  # type: ignore[arg-type]
    if n == 0:
        raise ValueError("the dataset is empty")
    if limit is not None:
        if isinstance(limit, bool) or int(limit) < 1:
            raise ValueError(f"limit must be an integer >= 1, got {limit!r}")
        n = min(n, int(limit))
    return n


@dataclass(frozen=True)
class ExtractionResult:
    """What :func:`extract_to_directory` wrote."""

    feature_path: Path
    label_path: Path
    n_samples: int
    n_shards: int
    shards_reused: int
    seconds: float
    skipped: bool = False


def output_paths(
    out_dir: str | os.PathLike[str], model_name: str, dataset_name: str
) -> tuple[Path, Path]:
    """``(<out>/<model>_<dataset>_feature.npy, <out>/<model>_<dataset>_label.npy)``."""
    out = Path(out_dir)
    stem = f"{model_name}_{dataset_name}"
    return out / f"{stem}_feature.npy", out / f"{stem}_label.npy"


def _write_shard(path: Path, features: NDArray[np.float32], labels: NDArray[np.int64]) -> None:
    """Write one finished shard atomically (:func:`ped._io.write_npz_atomic`)."""
    write_npz_atomic(path, features=features, labels=labels)


def check_names(model_name: str, dataset_name: str) -> tuple[str, str]:
    """Check that ``<model>_<dataset>_feature.npy`` names this model and dataset, and only them.

    ``ped score`` splits a file stem at its last underscore, so the dataset name must not contain
    ``_`` (``--name my_set`` would come back as model ``<model>_my``, dataset ``set``); model
    names may.  Neither may be empty, contain a path separator or start with a dot.  Raises
    ``ValueError`` saying so; returns the names otherwise.
    """
    for kind, name in (("model", model_name), ("dataset", dataset_name)):
        if not isinstance(name, str) or not name or "/" in name or os.sep in name or (
            name.startswith(".")
        ):
            raise ValueError(
                f"{kind} name {name!r} must be a non-empty file-name fragment (no '/', not "
                "starting with '.')"
            )
    if "_" in dataset_name:
        raise ValueError(
            f"dataset name {dataset_name!r} must not contain '_': `ped score` splits "
            f"{model_name}_{dataset_name}_feature.npy at its last underscore (use e.g. "
            f"{dataset_name.replace('_', '-')!r})"
        )
    parsed = parse_feature_name(f"{model_name}_{dataset_name}_feature.npy")
    if parsed != (model_name, dataset_name):
        raise ValueError(
            f"the file names of model {model_name!r} and dataset {dataset_name!r} would be read "
            f"back as {parsed}; choose other names"
        )
    return model_name, dataset_name


def record_path(out_dir: str | os.PathLike[str], model_name: str, dataset_name: str) -> Path:
    """``<out>/<model>_<dataset>_extract.json``: the settings a finished extraction was made with
    (see :func:`extract_to_directory`)."""
    return Path(out_dir) / f"{model_name}_{dataset_name}_extract.json"


def _differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key} {a!r} -> {b!r}")
    return out


def extraction_settings(
    model_name: str, dataset_name: str, n_samples: int, metadata: Mapping[str, Any] | None
) -> dict[str, Any]:
    """What determines the content of an extraction's outputs (its record), as JSON values."""
    return json.loads(json.dumps({
        "format": 1, "model": model_name, "dataset": dataset_name, "n_samples": n_samples,
        "metadata": dict(metadata or {}),
    }))  # fmt: skip


def reusable_outputs(
    out_dir: str | os.PathLike[str], settings: Mapping[str, Any]
) -> ExtractionResult | None:
    """The finished outputs of ``settings`` in ``out_dir`` (``skipped=True``), ``None`` when
    there are none; ``ValueError`` when outputs exist that were not made with these settings."""
    feature_path, label_path = output_paths(out_dir, settings["model"], settings["dataset"])
    if not (feature_path.exists() and label_path.exists()):
        return None
    record = record_path(out_dir, settings["model"], settings["dataset"])
    n_done = _finished_matches(feature_path, label_path, record, settings)
    logger.info("%s exists with these settings: nothing to do", feature_path)
    return ExtractionResult(feature_path, label_path, n_done, 0, 0, 0.0, skipped=True)


def _finished_matches(
    feature_path: Path, label_path: Path, record: Path, settings: Mapping[str, Any]
) -> int:
    """The sample count of finished outputs that were made with ``settings``; ``ValueError``
    saying why not otherwise."""
    redo = "pass overwrite=True (--overwrite) to redo it"
    try:
        old = json.loads(record.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(
            f"{feature_path} exists, but {record.name}, the record of its settings, does not "
            f"(made by another tool or an older ped?): it may not match these settings; {redo}"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{record} is unreadable ({exc}); {redo}") from exc
    if not isinstance(old, dict) or old != settings:
        diff = _differences(old if isinstance(old, dict) else {}, settings)
        raise ValueError(
            f"{feature_path} exists but was extracted with other settings "
            f"({'; '.join(diff)}); {redo}"
        )
    try:
        n_done = int(np.load(label_path, mmap_mode="r", allow_pickle=False).shape[0])
    except (ValueError, EOFError, OSError) as exc:
        raise ValueError(f"{label_path} is unreadable ({exc}); {redo}") from exc
    if n_done != settings["n_samples"]:
        raise ValueError(
            f"{label_path} holds {n_done} labels, but its record says {settings['n_samples']}; "
            f"{redo}"
        )
    try:  # the features too: a truncated or emptied file must not pass for finished
        shape = np.load(feature_path, mmap_mode="r", allow_pickle=False).shape
    except (ValueError, EOFError, OSError) as exc:
        raise ValueError(f"{feature_path} is unreadable or truncated ({exc}); {redo}") from exc
    if len(shape) != 2 or shape[0] != n_done:
        raise ValueError(f"{feature_path} holds an array of shape {shape}, not ({n_done}, D) "
                         f"features; {redo}")  # fmt: skip
    return n_done


def extract_to_directory(
    model: nn.Module,
    dataset: Dataset,
    out_dir: str | os.PathLike[str],
    *,
    model_name: str,
    dataset_name: str,
    batch_size: int = 64,
    shard_size: int | None = None,
    device: str | torch.device = "auto",
    num_workers: int = 0,
    limit: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
    metadata: Mapping[str, Any] | None = None,
) -> ExtractionResult:
    """Extract features resumably into ``out_dir`` under the authors' file names.

    Samples are processed in shards of ``shard_size`` (default ``64 * batch_size``) samples; each
    finished shard is saved atomically under ``out_dir/.<model>_<dataset>.parts/`` next to a
    ``manifest.json``.  A rerun reuses finished shards (after checking that the manifest, i.e.
    the sample count, shard and batch sizes and ``metadata``, matches; otherwise it raises
    ``ValueError`` and asks for ``overwrite``), then assembles ``<model>_<dataset>_feature.npy``
    (float32) and ``_label.npy`` (int64) atomically and removes the shards.

    Beside the outputs, ``<model>_<dataset>_extract.json`` (``record_path``) records the
    settings that determine their content: the names, the sample count and ``metadata`` (the
    checkpoint, split, image size...; not the batch or shard size).  When both outputs exist, they
    are reused (``skipped=True``) only if that record matches the new settings and the label file
    holds that many samples; otherwise (other settings, e.g. another ``limit``, or no record) a
    ``ValueError`` says what differs and asks for ``overwrite``.  ``overwrite`` redoes everything.

    The names must round-trip through the file names that ``ped score`` parses
    (``check_names``: no ``_`` in ``dataset_name``).
    """
    _require_torch()

    batch_size = check_positive_int(batch_size, "batch_size")
    if shard_size is None:
        shard_size = 64 * batch_size
    shard_size = check_positive_int(shard_size, "shard_size")
    if shard_size % batch_size:
        shard_size = -(-shard_size // batch_size) * batch_size
        logger.info("shard size rounded up to %d (a multiple of the batch size)", shard_size)
    out = Path(out_dir)
    check_names(model_name, dataset_name)
    feature_path, label_path = output_paths(out, model_name, dataset_name)
    record = record_path(out, model_name, dataset_name)
    parts = out / f".{model_name}_{dataset_name}.parts"
    start_time = time.perf_counter()
    n = samples_to_extract(dataset, limit)
    settings = extraction_settings(model_name, dataset_name, n, metadata)
    if overwrite:
        for p in (feature_path, label_path, record):
            p.unlink(missing_ok=True)
        if parts.exists():
            shutil.rmtree(parts)
    else:
        done = reusable_outputs(out, settings)
        if done is not None:
            return done

    bounds = [(s, min(s + shard_size, n)) for s in range(0, n, shard_size)]
    manifest = {**settings, "shard_size": shard_size, "batch_size": batch_size}
    parts.mkdir(parents=True, exist_ok=True)
    manifest_path = parts / "manifest.json"
    if manifest_path.exists():
        old = json.loads(manifest_path.read_text())
        if old != json.loads(json.dumps(manifest)):
            diff = sorted(k for k in set(old) | set(manifest) if old.get(k) != manifest.get(k))
            raise ValueError(
                f"unfinished extraction in {parts} was started with other settings "
                f"(differences: {diff}); delete that folder or pass overwrite=True (--overwrite)"
            )
    else:
        write_json_atomic(manifest_path, manifest)

    shard_paths = [parts / f"shard_{i:05d}.npz" for i in range(len(bounds))]
    pending = [i for i, p in enumerate(shard_paths) if not p.exists()]
    reused = len(bounds) - len(pending)
    if reused:
        logger.info("resuming: %d of %d shard(s) already done", reused, len(bounds))
    dev = resolve_device(device)
    model.to(dev)
    batches: list[range] = []
    owner: list[int] = []
    for i in pending:
        bs = _batches(*bounds[i], batch_size)
        batches.extend(bs)
        owner.extend([i] * len(bs))
    if batches:
        buf_f: list[NDArray[np.float32]] = []
        buf_y: list[NDArray[np.int64]] = []
        stream = _iter_batches(
            model, dataset, batches, device=dev, num_workers=num_workers, progress=progress,
            description=f"{model_name}/{dataset_name}",
        )  # fmt: skip
        for j, (f, y) in enumerate(stream):
            buf_f.append(f)
            buf_y.append(y)
            if j + 1 == len(batches) or owner[j + 1] != owner[j]:
                _write_shard(shard_paths[owner[j]], np.concatenate(buf_f), np.concatenate(buf_y))
                buf_f, buf_y = [], []

    _assemble(shard_paths, n, feature_path, label_path, record, settings)
    shutil.rmtree(parts)
    seconds = time.perf_counter() - start_time
    logger.info("wrote %s (%d samples) in %.1f s", feature_path, n, seconds)
    return ExtractionResult(feature_path, label_path, n, len(bounds), reused, seconds)


def _assemble(
    shards: Sequence[Path],
    n: int,
    feature_path: Path,
    label_path: Path,
    record: Path,
    settings: Mapping[str, Any],
) -> None:
    """Concatenate the shards into the final files, each through :func:`ped._io.atomic_path`.

    The record of the settings is written first, then the features are renamed into place, then
    the labels: a label file present means this run's features are too.
    """
    with np.load(shards[0]) as first:
        dim = int(first["features"].shape[1])
    with atomic_path(label_path) as tmp_y, atomic_path(feature_path) as tmp_f:
        feats = np.lib.format.open_memmap(tmp_f, mode="w+", dtype=np.float32, shape=(n, dim))
        labels = np.empty(n, dtype=np.int64)
        pos = 0
        for shard in shards:
            with np.load(shard) as z:
                f, y = z["features"], z["labels"]
            feats[pos : pos + len(y)] = f
            labels[pos : pos + len(y)] = y
            pos += len(y)
        if pos != n:
            raise ValueError(
                f"shards hold {pos} samples, expected {n}: delete {shards[0].parent}"
            )
        feats.flush()
        del feats
        with open(tmp_y, "wb") as fh:
            np.save(fh, labels)
        write_json_atomic(record, settings)
