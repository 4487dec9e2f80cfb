r"""Selection noise of the rebuilt ground truth: model selection rerun with a second seed.

The rebuilt protocol (:data:`ped.bench.zoo.finetune.PROTOCOL`) chooses each model's
fine-tuning setting (learning rate, weight decay) on the validation accuracy of *one*
selection seed.  In many cells the two best settings differ by less than a seed's standard
deviation, so the choice itself is noisy, and a different choice moves the model's ground
truth.  This module measures that noise on a random sample of model x task cells:

1. :func:`choose_cells` draws the cells (without replacement, seeded);
2. :func:`rerun_cell` repeats the whole selection (the same grid, grown by the same rule) with
   another selection seed; where the chosen setting changes, it runs the first ``n_eval``
   evaluation seeds at the new setting;
3. :func:`selection_changes` compares the two choices per cell, and
   :func:`perturbed_accuracy` moves each changed cell's ground truth by the paired difference
   between the new and the original setting on the same evaluation seeds
   (:math:`\bar a_{new} - \bar a_{orig}` over seeds :math:`0..n_{eval}-1`), so that every
   analysis of the verdict can be rerun on the ground truth that the other selection seed would
   have given.

Every run is a unit stored as ``<out>/runs/<model>/<task>/<role>_lr_wd_s.json`` (the format of
the rebuilt ground truth, :func:`ped.bench.zoo.finetune.write_protocol_table` writes its table
and sha256 manifest), so the rerun is resumable and verified as the ground truth is.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ped.bench.zoo import finetune as _finetune
from ped.bench.zoo.finetune import (
    PROTOCOL,
    Protocol,
    _run_unit,
    _v2_path,
    select_setting,
    write_protocol_table,
)

__all__ = [
    "SECOND_SEED",
    "choose_cells",
    "original_choice",
    "rerun_cell",
    "run_selection_noise",
    "selection_changes",
    "perturbed_accuracy",
]

logger = logging.getLogger(__name__)

#: The second selection seed (the protocol's first is 100; evaluation seeds are 0..21).
SECOND_SEED = 101


def choose_cells(
    models: Sequence[str], tasks: Sequence[str], n: int, *, random_state: int = 0
) -> list[tuple[str, str]]:
    """``n`` distinct ``(model, task)`` cells drawn uniformly without replacement, in the order
    drawn (a prefix of a larger draw with the same seed is the smaller draw)."""
    cells = [(m, t) for t in sorted(tasks) for m in sorted(models)]
    if not 1 <= n <= len(cells):
        raise ValueError(f"n must be in 1..{len(cells)} (models x tasks), got {n}")
    order = np.random.default_rng(random_state).permutation(len(cells))[:n]
    return [cells[i] for i in order]


def original_choice(gt: pd.DataFrame, model: str, task: str) -> tuple[float, float]:
    """The setting ``(lr, wd)`` the ground truth evaluated ``model`` on ``task`` at."""
    ev = gt[(gt["model"] == model) & (gt["task"] == task) & (gt["role"] == "eval")]
    settings = set(zip(ev["lr"].astype(float), ev["wd"].astype(float)))
    if len(settings) != 1:
        raise ValueError(f"{model} on {task}: expected one evaluated setting, got {settings}")
    return settings.pop()


def rerun_cell(
    encoder: Any,
    task: Any,
    out_dir: str | os.PathLike[str],
    *,
    model: str,
    encoder_sha256: str,
    original: tuple[float, float],
    seed: int = SECOND_SEED,
    n_eval: int = 6,
    protocol: Protocol = PROTOCOL,
    device: str = "auto",
    precision: str = "auto",
) -> list[dict[str, Any]]:
    """The selection of ``protocol`` rerun with selection seed ``seed`` (resumable); where its
    choice differs from ``original``, the evaluation seeds ``0..n_eval-1`` at the new setting.
    Returns the rows of every run."""
    if seed in protocol.selection_seeds or seed in protocol.eval_seeds_for(task.name):
        raise ValueError(f"seed {seed} is already a selection or evaluation seed of the protocol")
    if not 1 <= n_eval <= len(protocol.eval_seeds_for(task.name)):
        raise ValueError(f"n_eval must be in 1..{len(protocol.eval_seeds_for(task.name))}")
    out = Path(out_dir)
    config = {**protocol.config(), "encoder_sha256": encoder_sha256}
    base = {"model": model, "task": task.name, "protocol": "finetune"}
    kw = {"steps": protocol.steps, "batch_size": protocol.batch_size, "per_image_shift": True,
          "device": device, "precision": precision}  # fmt: skip

    def unit(role: str, lr: float, wd: float, s: int) -> dict[str, Any]:
        row = {**base, "role": role, "seed": s, "lr": lr, "wd": wd}
        path = _v2_path(out, model, task.name, role, lr, wd, s)
        return _run_unit(path, row, lambda: _finetune.finetune_run(
            encoder, task, lr=lr, wd=wd, seed=s, **kw), config)  # fmt: skip

    best, rows = select_setting(unit, protocol, seeds=(seed,))
    if best != tuple(original):
        logger.info("%s on %s: seed %d chooses lr %g, wd %g (was lr %g, wd %g)", model,
                    task.name, seed, *best, *original)  # fmt: skip
        rows += [unit("eval", best[0], best[1], s) for s in range(n_eval)]
    return rows


def _cell_worker(args: tuple[Any, ...]) -> None:
    """One cell of :func:`run_selection_noise` in a worker process."""
    model, task_name, out, zoo_dir, sha, original, seed, n_eval, cache, protocol, device, \
        threads = args
    import torch

    from ped.bench.tasks import load_task
    from ped.bench.zoo.train import load_encoder

    torch.set_num_threads(threads)
    rerun_cell(load_encoder(model, zoo_dir), load_task(task_name, cache=cache), out,
               model=model, encoder_sha256=sha, original=original, seed=seed, n_eval=n_eval,
               protocol=protocol, device=device)  # fmt: skip


def run_selection_noise(
    cells: Sequence[tuple[str, str]],
    out_dir: str | os.PathLike[str],
    *,
    zoo_dir: str | os.PathLike[str],
    gt: pd.DataFrame,
    seed: int = SECOND_SEED,
    n_eval: int = 6,
    cache: str | os.PathLike[str] | None = None,
    protocol: Protocol = PROTOCOL,
    jobs: int = 1,
    device: str = "auto",
) -> pd.DataFrame:
    """:func:`rerun_cell` for every cell, ``jobs`` side by side in worker processes
    (resumable: finished runs are reused); the table and its manifest are rewritten as each
    cell finishes, so what has landed is always consistent.  Returns the table."""
    import torch

    from ped.bench.zoo.train import read_manifest

    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    encoders = read_manifest(zoo_dir)["encoders"]
    unknown = sorted({m for m, _ in cells} - set(encoders))
    if unknown:
        raise ValueError(f"no trained encoder for {unknown} in {zoo_dir}")
    originals = {(m, t): original_choice(gt, m, t) for m, t in cells}  # validates every cell
    out = Path(out_dir)
    threads = max(1, torch.get_num_threads() // jobs)
    work = [(m, t, out, Path(zoo_dir), encoders[m]["sha256"], originals[(m, t)], seed, n_eval,
             cache, protocol, device, threads) for m, t in cells]  # fmt: skip
    _finetune.run_cells(_cell_worker, work, jobs=jobs, desc="selection noise",
                        after_each=lambda: write_protocol_table(out))
    return write_protocol_table(out)


def selection_changes(gt: pd.DataFrame, noise: pd.DataFrame) -> pd.DataFrame:
    """Per rerun cell: the original and the new choice, whether it changed, and the paired
    difference of the evaluation accuracy between the two settings.

    Columns ``model, task, lr, wd`` (original), ``lr_new, wd_new``, ``changed``, ``n_eval``
    (evaluation seeds run at the new setting; 0 when unchanged), ``shift`` (mean test accuracy
    at the new setting minus at the original one over those seeds, in points; 0 when
    unchanged), ``seed_sd`` (the SD of the original setting's evaluation runs, for scale) and
    ``val_gap`` (the second seed's validation accuracy at its choice minus at the original
    setting, points).
    """
    rows = []
    for (model, task), runs in noise.groupby(["model", "task"], sort=True):
        lr0, wd0 = original_choice(gt, model, task)
        sel = runs[runs["role"] == "select"]
        if sel.empty:
            raise ValueError(f"{model} on {task}: no selection runs")
        mean_val = sel.groupby(["lr", "wd"])["val"].mean()
        best = max(mean_val.index, key=lambda k: (mean_val[k], -k[0], -k[1]))
        orig_runs = gt[(gt["model"] == model) & (gt["task"] == task) & (gt["role"] == "eval")]
        changed = (float(best[0]), float(best[1])) != (lr0, wd0)
        new_eval = runs[runs["role"] == "eval"]
        shift, n_eval = 0.0, 0
        if changed:
            if new_eval.empty:
                raise ValueError(f"{model} on {task}: the choice changed but no evaluation "
                                 "runs at the new setting are stored")  # fmt: skip
            seeds = sorted(new_eval["seed"])
            at_orig = orig_runs.set_index("seed").loc[seeds, "test"]
            shift = float(new_eval.set_index("seed").loc[seeds, "test"].mean() - at_orig.mean())
            n_eval = len(seeds)
        val_orig = mean_val.get((lr0, wd0), np.nan)
        rows.append({"model": model, "task": task, "lr": lr0, "wd": wd0,
                     "lr_new": float(best[0]), "wd_new": float(best[1]), "changed": changed,
                     "n_eval": n_eval, "shift": shift,
                     "seed_sd": float(orig_runs["test"].std(ddof=1)),
                     "val_gap": float(mean_val[best] - val_orig)})  # fmt: skip
    return pd.DataFrame(rows)


def perturbed_accuracy(
    accuracy: np.ndarray, models: Sequence[str], task: str, changes: pd.DataFrame
) -> np.ndarray:
    """The ``(M, S)`` evaluation accuracies of ``models`` on ``task`` with each changed cell of
    ``changes`` (:func:`selection_changes`) moved by its ``shift``: the ground truth that the
    second selection seed would have given (a new array; the input is not modified)."""
    acc = np.array(accuracy, dtype=float, copy=True)
    if acc.ndim != 2 or acc.shape[0] != len(models):
        raise ValueError(f"accuracy must be ({len(models)}, S), got {acc.shape}")
    rows = changes[(changes["task"] == task) & changes["changed"]]
    for model, shift in zip(rows["model"], rows["shift"]):
        if model in models:
            acc[list(models).index(model)] += shift
    return acc
