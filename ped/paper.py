"""The paper's published numbers, and the companion's data folder.

The published tables ship inside the package (``ped/published/``); the project's other data (the
measurements, the verdict's history) live in the repository's ``data/`` folder, or in the folder
the environment variable ``PED_DATA_DIR`` names (``data/README.md`` gives each file's source).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = [
    "data_dir",
    "published_tau_w",
    "published_gains",
    "finetune_accuracy",
    "dataset_table",
    "measurement",
    "verdict_history",
    "PUBLISHED_MODELS",
]

#: The 12 self-supervised ResNet-50 models of the paper, in the published column order.
PUBLISHED_MODELS = (
    "byol", "deepcluster-v2", "infomin", "insdis", "moco-v1", "moco-v2",
    "pcl-v1", "pcl-v2", "sela-v2", "simclr-v1", "simclr-v2", "swav",
)  # fmt: skip


def data_dir() -> Path:
    """The data folder: ``$PED_DATA_DIR`` if set, else ``data/`` at the repository root."""
    env = os.environ.get("PED_DATA_DIR")
    path = Path(env) if env else Path(__file__).resolve().parent.parent / "data"
    if not path.is_dir():
        raise FileNotFoundError(
            f"data folder {path} not found: run from a clone of the repository or set PED_DATA_DIR"
        )
    return path


def _published(name: str) -> Path:
    """One of the published tables shipped inside the package (``ped/published/``), so that
    an installed wheel has them."""
    return Path(__file__).resolve().parent / "published" / name


def published_tau_w() -> pd.DataFrame:
    """Published τ_w (rows: metric, e.g. ``"SFDA+PED"``; columns: the 10 datasets).

    Source: the PED official repository README (Li et al., ICCV 2023).
    """
    return pd.read_csv(_published("published_tau_w.csv"), index_col="method")


def published_gains(metrics: tuple[str, ...] = ("LogME", "SFDA", "GBC")) -> dict[str, float]:
    """The published mean gain of PED per metric: the mean over the 10 datasets of
    ``τ_w(metric+PED) - τ_w(metric)`` (:func:`published_tau_w`), keyed by the metric's lower-case
    name (``"logme"``), and ``"mean"``, the mean of the metrics' gains: the effect a replication
    is tested against."""
    table = published_tau_w()
    gains = {m.lower(): float((table.loc[f"{m}+PED"] - table.loc[m]).mean()) for m in metrics}
    gains["mean"] = float(sum(gains.values()) / len(metrics))
    return gains


def finetune_accuracy() -> pd.DataFrame:
    """Published fine-tuning accuracy in % (rows: the 11 datasets; columns: the 12 models).

    Source: the PED/SFDA official repositories.  Mean per-class accuracy for aircraft,
    caltech101, flowers and pets, mAP for voc2007, top-1 accuracy otherwise.
    """
    table = pd.read_csv(_published("finetune_acc.csv"), index_col="dataset")
    return table[list(PUBLISHED_MODELS)]


def dataset_table() -> pd.DataFrame:
    """The paper's 11 target datasets: ``classes``, ``samples`` (images scored, every official
    split once) and ``accuracy_kind``, indexed by dataset name."""
    return pd.read_csv(_published("datasets.csv"), index_col="dataset")


def verdict_history() -> pd.DataFrame:
    """When each part of the verdict's primary endpoint was fixed, from the repository's
    history (``data/verdict/history.csv``: ``date``, ``commit``, ``event``, ``what``; one row
    per event, in time order)."""
    table = pd.read_csv(data_dir() / "verdict" / "history.csv")
    expected = ["date", "commit", "event", "what"]
    if list(table.columns) != expected:
        raise ValueError(f"{data_dir() / 'verdict' / 'history.csv'} must have the columns "
                         f"{expected}, got {list(table.columns)}")
    return table


def measurement(name: str) -> dict[str, Any]:
    """A measurement this project recorded in ``data/measurements/<name>.json`` (e.g. GPU
    throughput); ``data/README.md`` says how each was made."""
    path = data_dir() / "measurements" / f"{name}.json"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.json"))
        raise FileNotFoundError(f"no measurement {name!r} in {path.parent}; known: {known}")
    return json.loads(path.read_text())
