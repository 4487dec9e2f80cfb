r"""The regime chapter's extra fine-tuning ground truth (``make regime``, ``data/regime``).

Two axes of the chapter "PED across regimes" need ground truth that the rebuilt benchmark does
not have:

* **class count**: the rebuilt zoo fine-tuned on the nested class subsets of glyphs62
  (:data:`ped.bench.tasks.CLASS_SUBSET_TASKS`);
* **zoo quality spread**: the first benchmark's encoders, pretrained for 5 epochs instead of 80
  (``data/zoo``), fine-tuned on the rebuilt tasks, so that a zoo of both spans a wide range of
  quality as the paper's does.  They are named ``<method>_5ep``; the first zoo's random
  initialisation is left out (the rebuilt zoo has one).

Both reuse a selection already made instead of selecting anew: a class subset evaluates each
model at the setting (learning rate, weight decay) that the rebuilt ground truth chose for it on
glyphs62, and a 5-epoch encoder at the setting chosen for its method's 80-epoch encoder on the
same task.  The chapter states this, and the selection-noise measurement of chapter 9 bounds
what another choice would move.  Every cell runs the protocol's common evaluation seeds
(``eval_seeds``, 0-5) under :data:`ped.bench.zoo.protocol.PROTOCOL` (same steps,
batch, augmentation), each run a unit stored as the rebuilt ground truth stores it and listed in
a sha256 manifest as runs land (:func:`ped.bench.zoo.protocol.write_protocol_table`), so the
computation resumes run by run.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ped.bench.tasks import CLASS_SUBSET_PARENT, CLASS_SUBSET_TASKS, REBUILT_TASK_NAMES, load_task
from ped.bench.zoo.finetune import (
    PROTOCOL,
    Protocol,
    protocol_unit,
    run_cells,
    write_protocol_table,
)
from ped.bench.zoo.selection import original_choice
from ped.bench.zoo.train import load_encoder, read_manifest

__all__ = ["SHORT_SUFFIX", "RegimeCell", "regime_cells", "run_regime", "short_name", "short_models"]

logger = logging.getLogger(__name__)

#: Suffix of the first zoo's (5-epoch) encoders in the regime ground truth.
SHORT_SUFFIX = "_5ep"


def short_name(method: str) -> str:
    """The regime ground truth's name for the first zoo's encoder of ``method``."""
    return f"{method}{SHORT_SUFFIX}"


def short_models(first_zoo: Sequence[str], rebuilt_zoo: Sequence[str]) -> list[str]:
    """The first zoo's encoders that join the quality-spread zoo: those whose method the rebuilt
    zoo also has, random initialisation excepted."""
    return [m for m in first_zoo if m in set(rebuilt_zoo) and m != "random_init"]


@dataclass(frozen=True)
class RegimeCell:
    """One model x task of the regime ground truth: ``model`` is its name in the table,
    ``encoder`` the checkpoint's name in ``zoo_dir``, ``(lr, wd)`` the reused setting."""

    model: str
    task: str
    encoder: str
    zoo_dir: Path
    lr: float
    wd: float


def regime_cells(
    gt: pd.DataFrame,
    rebuilt_zoo: Sequence[str],
    first_zoo: Sequence[str],
    *,
    zoo_dir: str | os.PathLike[str],
    first_zoo_dir: str | os.PathLike[str],
    parts: Sequence[str] = ("subsets", "short"),
) -> list[RegimeCell]:
    """The cells of the regime ground truth, in the order they run.

    ``gt`` is the rebuilt ground truth (whose selected settings are reused).  The order puts the
    first draw of class subsets first, then the 5-epoch encoders task by task, then the other
    draws, so that an interrupted run has whole curves early.
    """
    unknown = sorted(set(parts) - {"subsets", "short"})
    if unknown:
        raise ValueError(f"unknown part(s) {unknown}: subsets, short")
    subsets = [t for t in CLASS_SUBSET_TASKS if "subsets" in parts]
    first_draw = [t for t in subsets if t.endswith("a")]
    cells = []

    def add_subsets(tasks: Sequence[str]) -> None:
        for task in tasks:
            for model in rebuilt_zoo:
                lr, wd = original_choice(gt, model, CLASS_SUBSET_PARENT)
                cells.append(RegimeCell(model, task, model, Path(zoo_dir), lr, wd))

    add_subsets(first_draw)
    if "short" in parts:
        for task in REBUILT_TASK_NAMES:
            for method in short_models(first_zoo, rebuilt_zoo):
                lr, wd = original_choice(gt, method, task)
                cells.append(RegimeCell(short_name(method), task, method, Path(first_zoo_dir),
                                        lr, wd))  # fmt: skip
    add_subsets([t for t in subsets if t not in first_draw])
    return cells


def _worker(args: tuple[Any, ...]) -> None:
    """Every evaluation seed of one cell (in a worker process, see :func:`run_regime`)."""
    _model, _task, cell, out, cache, protocol, device, threads = args
    import torch

    torch.set_num_threads(threads)
    sha = read_manifest(cell.zoo_dir)["encoders"][cell.encoder]["sha256"]
    unit = protocol_unit(load_encoder(cell.encoder, cell.zoo_dir), load_task(cell.task, cache=cache),
                         out, model=cell.model, encoder_sha256=sha, protocol=protocol,
                         device=device)  # fmt: skip
    for seed in protocol.eval_seeds:
        unit("eval", cell.lr, cell.wd, seed)


def run_regime(
    cells: Sequence[RegimeCell],
    out_dir: str | os.PathLike[str],
    *,
    cache: str | os.PathLike[str] | None = None,
    protocol: Protocol = PROTOCOL,
    jobs: int = 1,
    device: str = "auto",
) -> pd.DataFrame:
    """Run (or resume) ``cells``, ``jobs`` side by side; the table and its manifest are rewritten
    as each cell ends (so finished runs can be committed while the rest goes on)."""
    import torch

    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    out = Path(out_dir)
    threads = max(1, torch.get_num_threads() // jobs)
    work = [(c.model, c.task, c, out, cache, protocol, device, threads) for c in cells]

    def snapshot() -> None:
        if (out / "runs").is_dir():
            write_protocol_table(out)

    run_cells(_worker, work, jobs=jobs, desc="regime ground truth", after_each=snapshot)
    return write_protocol_table(out)
