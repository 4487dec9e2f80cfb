r"""Selection noise of the rebuilt ground truth: model selection rerun with a second seed.

The rebuilt protocol (:data:`ped.bench.zoo.protocol.PROTOCOL`) chooses each model's
fine-tuning setting (learning rate, weight decay) on the validation accuracy of *one*
selection seed.  In many cells the two best settings differ by less than a seed's standard
deviation, so the choice itself is noisy, and a different choice moves the model's ground
truth.  This module measures that noise on a random sample of model x task cells:

1. :func:`choose_cells` draws the cells (without replacement, seeded);
2. :func:`rerun_cell` repeats the whole selection (the same grid, grown by the same rule) with
   another selection seed; where the chosen setting changes, it runs the first ``n_eval``
   evaluation seeds at the new setting;
3. :func:`selection_changes` compares the two choices per cell and measures each changed
   cell's shift, the paired difference between the new and the original setting on the same
   evaluation seeds (:math:`\bar a_{new} - \bar a_{orig}` over seeds :math:`0..n_{eval}-1`),
   and :func:`perturbed_ground_truth` moves each changed cell's ground truth by it, so that every analysis of the verdict can
   be rerun on the ground truth that the other selection seed would have given.

Every run is a unit stored as ``<out>/runs/<model>/<task>/<role>_lr_wd_s.json`` (the format of
the rebuilt ground truth, :func:`ped.bench.zoo.protocol.write_protocol_table` writes its table
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

from ped.bench.tasks import load_task
from ped.bench.zoo import finetune as _finetune
from ped.bench.zoo.finetune import (
    PROTOCOL,
    Protocol,
    protocol_unit,
    select_setting,
    write_protocol_table,
)
from ped.bench.zoo.train import load_encoder, read_manifest

__all__ = [
    "SECOND_SEED",
    "choose_cells",
    "original_choice",
    "rerun_cell",
    "run_selection_noise",
    "selection_margins",
    "selection_changes",
    "perturbed_ground_truth",
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
    unit = protocol_unit(encoder, task, out_dir, model=model, encoder_sha256=encoder_sha256,
                         protocol=protocol, device=device, precision=precision)  # fmt: skip
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


def selection_margins(gt: pd.DataFrame) -> pd.DataFrame:
    """Per model x task of a rebuilt ground truth: the validation margin of the chosen setting
    over the runner-up on the selection seed(s) (``margin``, points) and the SD of the
    validation accuracy over the evaluation seeds at the chosen setting (``val_sd``), the
    seed-to-seed noise that a margin has to beat; ``close`` is ``margin < val_sd``."""
    rows = []
    for (model, task), g in gt.groupby(["model", "task"], sort=True):
        vals = g[g["role"] == "select"].groupby(["lr", "wd"])["val"].mean().sort_values()
        ev = g[g["role"] == "eval"]
        if len(vals) < 2 or len(ev) < 2:
            continue
        rows.append({"model": model, "task": task, "margin": float(vals.iloc[-1] - vals.iloc[-2]),
                     "val_sd": float(ev["val"].std(ddof=1))})  # fmt: skip
    out = pd.DataFrame(rows, columns=["model", "task", "margin", "val_sd"])
    out["close"] = out["margin"] < out["val_sd"]
    return out


class _Missing(Exception):
    """A run the selection needs is not stored yet (the cell is still running)."""


def _replay(runs: pd.DataFrame, protocol: Protocol, seed: int) -> tuple[float, float]:
    """The choice that :func:`ped.bench.zoo.protocol.select_setting` makes on the stored
    selection runs of one cell; :class:`_Missing` when a run it needs is not stored."""
    val = {(float(r.lr), float(r.wd)): float(r.val) for r in runs.itertuples()}

    def unit(role: str, lr: float, wd: float, s: int) -> dict[str, Any]:
        if (float(lr), float(wd)) not in val:
            raise _Missing
        return {"lr": lr, "wd": wd, "val": val[(float(lr), float(wd))]}

    best, _ = select_setting(unit, protocol, seeds=(seed,))
    return float(best[0]), float(best[1])


def selection_changes(
    gt: pd.DataFrame, noise: pd.DataFrame, *, protocol: Protocol = PROTOCOL, n_eval: int = 6
) -> pd.DataFrame:
    """Per *finished* rerun cell: the original and the new choice, whether it changed, and the
    paired difference of the evaluation accuracy between the two settings.

    A cell is finished when the selection, replayed on its stored runs by the protocol's rule
    (the same grid growth), needs no run that is missing, and, where the choice changed, its
    ``n_eval`` evaluation runs at the new setting are stored; cells still running are left
    out.  Columns ``model, task, lr, wd`` (original), ``lr_new, wd_new``, ``changed``,
    ``n_eval`` (evaluation seeds at the new setting; 0 when unchanged), ``shift`` (mean test
    accuracy at the new setting minus at the original one over those seeds, in points; 0 when
    unchanged), ``seed_sd`` (the SD of the original setting's evaluation runs, for scale) and
    ``val_gap`` (the second seed's validation accuracy at its choice minus at the original
    setting, points; NaN when it did not run the original setting).
    """
    rows = []
    for (model, task), runs in noise.groupby(["model", "task"], sort=True):
        lr0, wd0 = original_choice(gt, model, task)
        sel = runs[runs["role"] == "select"]
        if sel.empty or sel["seed"].nunique() != 1:
            raise ValueError(f"{model} on {task}: expected the selection runs of one seed")
        try:
            best = _replay(sel, protocol, int(sel["seed"].iloc[0]))
        except _Missing:
            continue
        orig_runs = gt[(gt["model"] == model) & (gt["task"] == task) & (gt["role"] == "eval")]
        changed = best != (lr0, wd0)
        shift, n_done = 0.0, 0
        if changed:
            new_eval = runs[(runs["role"] == "eval") & np.isclose(runs["lr"], best[0])
                            & np.isclose(runs["wd"], best[1])]  # fmt: skip
            seeds = sorted(int(v) for v in new_eval["seed"])
            if seeds != list(range(n_eval)):
                continue  # the evaluation at the new setting is still running
            at_orig = orig_runs.set_index("seed").loc[seeds, "test"]
            shift = float(new_eval.set_index("seed").loc[seeds, "test"].mean() - at_orig.mean())
            n_done = len(seeds)
        mean_val = sel.groupby(["lr", "wd"])["val"].mean()
        val_orig = mean_val.get((lr0, wd0), np.nan)
        rows.append({"model": model, "task": task, "lr": lr0, "wd": wd0,
                     "lr_new": best[0], "wd_new": best[1], "changed": changed,
                     "n_eval": n_done, "shift": shift,
                     "seed_sd": float(orig_runs["test"].std(ddof=1)),
                     "val_gap": float(mean_val[best] - val_orig)})  # fmt: skip
    columns = ["model", "task", "lr", "wd", "lr_new", "wd_new", "changed", "n_eval", "shift",
               "seed_sd", "val_gap"]
    return pd.DataFrame(rows, columns=columns)


def perturbed_ground_truth(gt: pd.DataFrame, changes: pd.DataFrame) -> pd.DataFrame:
    """The ground truth that the second selection seed would have given: a copy of ``gt`` in
    which the evaluation runs of every changed cell of ``changes`` (columns ``model, task,
    changed, shift``, :func:`selection_changes`) are moved by the cell's ``shift`` (the input
    is not modified)."""
    out = gt.copy()
    moved = changes[changes["changed"].astype(bool)]
    if moved.empty:
        return out
    key = pd.MultiIndex.from_frame(moved[["model", "task"]])
    shift = pd.Series(moved["shift"].to_numpy(dtype=float), index=key)
    rows = pd.MultiIndex.from_frame(out[["model", "task"]])
    add = shift.reindex(rows).fillna(0.0).to_numpy()
    ev = (out["role"] == "eval").to_numpy() if "role" in out else np.ones(len(out), bool)
    out["test"] = out["test"].to_numpy(dtype=float) + np.where(ev, add, 0.0)
    return out
