"""The rebuilt benchmark's ground truth: the fine-tuning protocol :data:`PROTOCOL`.

Selection seeds apart from evaluation seeds, a grid widened until the selection is interior
(:func:`select_setting`), the fine-tuned features of the scored images (:func:`features_path`),
one model x task per cell (:func:`run_cell`), cells side by side in worker processes
(:func:`run_protocol`, :func:`run_cells`), and a table tied to every run and feature file by a
sha256 manifest (:func:`write_protocol_table`, :func:`verify_ground_truth`).  Each run is one
:func:`~ped.bench.zoo.runs.finetune_run`, stored as a resumable unit.

The first benchmark's protocol is :mod:`ped.bench.zoo.finetune`, which re-exports the names
defined here (``ped.bench.zoo.finetune.PROTOCOL``...), as they were defined there before.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ped._io import (
    read_json_record,
    sha256_file,
    write_csv_atomic,
    write_json_atomic,
    write_npz_atomic,
)
from ped._progress import tqdm
from ped.bench.tasks import load_task
from ped.bench.zoo.runs import BATCH_SIZE, _run_unit, finetune_run
from ped.bench.zoo.train import load_encoder, read_manifest

__all__ = [
    "Protocol", "PROTOCOL", "COLUMNS_V2", "run_cell", "run_protocol", "protocol_table",
    "write_protocol_table", "features_path", "verify_ground_truth", "select_setting", "run_cells",
    "protocol_unit",
]  # fmt: skip

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Protocol:
    """The fine-tuning ground truth of the rebuilt benchmark.

    Every run takes exactly ``steps`` optimiser steps (batch ``batch_size``, SGD with momentum
    0.9, cosine decay, per-image translations of up to 2 px).  Model selection: every
    (lr, wd) of the grid runs with each of ``selection_seeds``; the setting with the best mean
    validation accuracy is chosen.  When it lies on an edge of the grid, the grid grows on that
    side (the learning rate along the half-decade ladder 0.001, 0.003, 0.01, ...; the weight
    decay by a factor of 10, and to 0, no weight decay, once a tenth would fall below
    ``wd_min``), at most ``max_extensions`` times per side, and the selection is repeated.  A
    weight decay of 0 ends its axis: a selection there is at the boundary of the parameter
    space, not before an optimum beyond the grid, and is not extended.  When the selection
    moves (a protocol with more extensions resumed on stored runs), the evaluation runs of the
    superseded setting are deleted.  Then ``eval_seeds`` (disjoint from the
    selection seeds) run at the chosen setting: their test accuracies are the ground truth.
    The first evaluation seed also stores the fine-tuned encoder's features of the scored
    images (train + val), :math:`Z_T`.
    """

    steps: int = 300
    batch_size: int = BATCH_SIZE
    lr_grid: tuple[float, ...] = (0.003, 0.01, 0.03, 0.1)
    wd_grid: tuple[float, ...] = (5e-5, 5e-4, 5e-3)
    selection_seeds: tuple[int, ...] = (100,)
    eval_seeds: tuple[int, ...] = (0, 1, 2, 3, 4, 5)
    max_extensions: int = 3
    #: The smallest positive weight decay tried: the step below it is 0 (see above).  At 5e-7,
    #: 300 steps at a learning rate of 0.1 shrink a weight by at most 0.0015 %.
    wd_min: float = 5e-7
    #: ``(task, n)`` pairs: that task evaluates seeds ``0..n-1`` instead of ``eval_seeds``
    #: (more seeds where the models are close, :func:`ped.bench.ground_truth.seeds_needed`); ``n`` must be
    #: at least ``len(eval_seeds)``, so a task's seeds extend the common ones.
    task_eval_seeds: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.max_extensions < 0:
            raise ValueError("steps and batch_size must be >= 1, max_extensions >= 0")
        if not self.wd_min > 0:
            raise ValueError(f"wd_min must be > 0, got {self.wd_min}")
        for name in ("lr_grid", "wd_grid"):
            grid = getattr(self, name)
            if len(grid) < 3 or list(grid) != sorted(set(grid)) or grid[0] <= 0:
                raise ValueError(f"{name} needs >= 3 increasing positive values, got {grid}")
        if not self.selection_seeds or len(self.eval_seeds) < 2:
            raise ValueError("need at least one selection seed and two evaluation seeds")
        if set(self.selection_seeds) & set(self.eval_seeds):
            raise ValueError("selection seeds and evaluation seeds must be disjoint")
        names = [t for t, _ in self.task_eval_seeds]
        if len(set(names)) != len(names):
            raise ValueError(f"task_eval_seeds names a task twice: {names}")
        if tuple(self.eval_seeds) != tuple(range(len(self.eval_seeds))) and names:
            raise ValueError("task_eval_seeds extends eval_seeds = 0..S-1 only")
        for task, n in self.task_eval_seeds:
            if n < len(self.eval_seeds):
                raise ValueError(f"task {task!r}: {n} evaluation seeds, fewer than the "
                                 f"{len(self.eval_seeds)} common ones")  # fmt: skip
            if set(range(n)) & set(self.selection_seeds):
                raise ValueError(f"task {task!r}: its evaluation seeds 0..{n - 1} meet the "
                                 f"selection seeds {self.selection_seeds}")  # fmt: skip

    def eval_seeds_for(self, task: str) -> tuple[int, ...]:
        """The evaluation seeds of ``task``: ``0..n-1`` where ``task_eval_seeds`` names it,
        else ``eval_seeds``."""
        n = dict(self.task_eval_seeds).get(task)
        return tuple(range(n)) if n is not None else tuple(self.eval_seeds)

    def config(self) -> dict[str, Any]:
        """What a stored run must match to be reused (with the encoder's sha256)."""
        return {"protocol": "finetune_v2", "steps": self.steps, "batch_size": self.batch_size,
                "per_image_shift": True}  # fmt: skip


#: The rebuilt benchmark's protocol.  The tasks whose models lie close together evaluate more
#: seeds: :func:`ped.bench.ground_truth.seeds_needed` on the first six seeds of 11 encoders projected 16
#: (clipart_objects8), 18 (digits10), 7 (fashion10), 8 (greek24) and 8 (mnist10) for the
#: separability check; these counts add a margin.  fashion10's split-half ceiling grew slowly
#: with its seeds (0.67, 0.73, 0.76, 0.78 on 6, 8, 10, 12 of them), so it evaluates 20.
PROTOCOL = Protocol(task_eval_seeds=(("clipart_objects8", 20), ("digits10", 22), ("fashion10", 20),
                                     ("greek24", 10), ("mnist10", 10)))
#: Columns of the rebuilt ground-truth table (``role``: ``select`` or ``eval``).
COLUMNS_V2 = ["model", "task", "protocol", "role", "seed", "lr", "wd", "val", "test"]
GT_MANIFEST = "manifest.json"


def _next_value(x: float, side: int, axis: str) -> float:
    """The grid value after ``x`` on ``side`` (-1 below, +1 above): learning rates step along
    the half-decade ladder 1, 3, 10, 30, ... (x 10^k), weight decays by a factor of 10."""
    if axis == "lr":
        k, half = divmod(round(2 * math.log10(x)) + side, 2)
        return float(f"{(3 if half else 1)}e{k}")
    return float(f"{x * 10.0**side:.0e}")


def _extend(grid: list[float], side: int, axis: str, wd_min: float) -> list[float]:
    """``grid`` grown by one value on ``side``; the weight decay's step below ``wd_min`` is 0."""
    if side > 0:
        return [*grid, _next_value(grid[-1], 1, axis)]
    low = _next_value(grid[0], -1, axis)
    return [0.0 if axis == "wd" and low < wd_min else low, *grid]


def _v2_path(out: Path, model: str, task: str, role: str, lr: float, wd: float, seed: int) -> Path:
    return out / "runs" / model / task / f"{role}_lr{lr:g}_wd{wd:g}_s{seed}.json"


def features_path(out_dir: str | os.PathLike[str], model: str, task: str) -> Path:
    """Where the fine-tuned features :math:`Z_T` of ``model`` on ``task`` are stored."""
    return Path(out_dir) / "features" / model / f"{task}.npz"


def select_setting(
    unit: Callable[[str, float, float, int], dict[str, Any]],
    protocol: Protocol = PROTOCOL,
    *,
    seeds: Sequence[int] | None = None,
) -> tuple[tuple[float, float], list[dict[str, Any]]]:
    """The model selection of ``protocol``: every (lr, wd) of the grid with each selection seed,
    the grid grown on the side where the best mean validation accuracy sits on an edge (see
    :class:`Protocol`), until the choice is interior or the extensions are spent.

    ``unit(role, lr, wd, seed)`` runs (or loads) one run and returns its row (``val`` among its
    keys); ``seeds`` replaces ``protocol.selection_seeds`` (a selection rerun with another
    seed, :mod:`ped.bench.zoo.selection`).  Returns the chosen ``(lr, wd)`` and every row run.
    Ties go to the smaller learning rate, then the smaller weight decay.
    """
    seeds = tuple(protocol.selection_seeds if seeds is None else seeds)
    if not seeds:
        raise ValueError("need at least one selection seed")
    lrs, wds = list(protocol.lr_grid), list(protocol.wd_grid)
    grown = {("lr", -1): 0, ("lr", 1): 0, ("wd", -1): 0, ("wd", 1): 0}
    while True:
        rows = [unit("select", lr, wd, s) for lr in lrs for wd in wds for s in seeds]
        mean_val: dict[tuple[float, float], float] = {}
        for r in rows:
            mean_val.setdefault((r["lr"], r["wd"]), 0.0)
            mean_val[(r["lr"], r["wd"])] += r["val"] / len(seeds)
        best = max(mean_val, key=lambda k: (mean_val[k], -k[0], -k[1]))
        changed = False
        for axis, grid, value in (("lr", lrs, best[0]), ("wd", wds, best[1])):
            for side, edge in ((-1, grid[0]), (1, grid[-1])):
                end = side < 0 and edge == 0  # no weight decay: the axis ends there
                if value == edge and not end and grown[(axis, side)] < protocol.max_extensions:
                    grid[:] = _extend(grid, side, axis, protocol.wd_min)
                    grown[(axis, side)] += 1
                    changed = True
        if not changed:
            return best, rows


def _cell_context(
    task: Any, encoder_sha256: str, protocol: Protocol, device: str, precision: str, model: str
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """What every run of one model x task under ``protocol`` shares: the configuration a
    stored run must match, the row's identifying columns, and the keyword arguments of
    :func:`~ped.bench.zoo.runs.finetune_run`."""
    config = {**protocol.config(), "encoder_sha256": encoder_sha256}
    base = {"model": model, "task": task.name, "protocol": "finetune"}
    kw = {"steps": protocol.steps, "batch_size": protocol.batch_size, "per_image_shift": True,
          "device": device, "precision": precision}  # fmt: skip
    return config, base, kw


def protocol_unit(
    encoder: Any,
    task: Any,
    out_dir: str | os.PathLike[str],
    *,
    model: str,
    encoder_sha256: str,
    protocol: Protocol = PROTOCOL,
    device: str = "auto",
    precision: str = "auto",
) -> Callable[[str, float, float, int], dict[str, Any]]:
    """``unit(role, lr, wd, seed)``: one run of ``model`` on ``task`` under ``protocol``,
    loaded when stored under ``out_dir`` with the same configuration, else run and stored
    (``<out>/runs/<model>/<task>/<role>_lr_wd_s.json``); returns its row."""
    out = Path(out_dir)
    config, base, kw = _cell_context(task, encoder_sha256, protocol, device, precision, model)

    def unit(role: str, lr: float, wd: float, seed: int) -> dict[str, Any]:
        row = {**base, "role": role, "seed": seed, "lr": lr, "wd": wd}
        path = _v2_path(out, model, task.name, role, lr, wd, seed)
        return _run_unit(path, row, lambda: finetune_run(encoder, task, lr=lr, wd=wd, seed=seed,
                                                         **kw), config)  # fmt: skip

    return unit


def run_cell(
    encoder: Any,
    task: Any,
    out_dir: str | os.PathLike[str],
    *,
    model: str,
    encoder_sha256: str,
    protocol: Protocol = PROTOCOL,
    device: str = "auto",
    precision: str = "auto",
) -> list[dict[str, Any]]:
    """Run (or resume) one model x task of ``protocol``: selection, grid growth, evaluation.

    Every run is a unit stored as ``<out>/runs/<model>/<task>/<role>_lr_wd_s.json``; the fine-tuned
    features of the first evaluation seed go to :func:`features_path`.  Returns the rows.
    """
    out = Path(out_dir)
    config, base, kw = _cell_context(task, encoder_sha256, protocol, device, precision, model)
    unit = protocol_unit(encoder, task, out, model=model, encoder_sha256=encoder_sha256,
                         protocol=protocol, device=device, precision=precision)  # fmt: skip
    best, rows = select_setting(unit, protocol)
    lr, wd = best
    for p in sorted((out / "runs" / model / task.name).glob("eval_*.json")):
        stored = json.loads(p.read_text())
        if (stored["lr"], stored["wd"]) != (lr, wd):  # evaluated at a superseded selection
            logger.warning("%s on %s: the selection moved to lr %g, wd %g; deleting %s",
                           model, task.name, lr, wd, p.name)  # fmt: skip
            p.unlink()
    eval_rows = []
    z_path = features_path(out, model, task.name)
    for i, seed in enumerate(protocol.eval_seeds_for(task.name)):
        if i == 0:
            path = _v2_path(out, model, task.name, "eval", lr, wd, seed)
            row = {**base, "role": "eval", "seed": seed, "lr": lr, "wd": wd}
            stored_ok = path.is_file() and z_path.is_file()
            if not stored_ok and path.is_file():
                path.unlink()  # the run is redone to produce its features

            def first() -> tuple[float, float]:
                scored = np.concatenate([task.x_train, task.x_val])
                val, test, z = finetune_run(encoder, task, lr=lr, wd=wd, seed=seed,
                                            features_of=scored, **kw)  # fmt: skip
                z_path.parent.mkdir(parents=True, exist_ok=True)
                labels = np.concatenate([task.y_train, task.y_val])
                write_npz_atomic(z_path, features=z, labels=labels)
                return val, test

            eval_rows.append(_run_unit(path, row, first, config))
        else:
            eval_rows.append(unit("eval", lr, wd, seed))
    return rows + eval_rows


def _cell_worker(args: tuple[Any, ...]) -> list[dict[str, Any]]:
    """One model x task in a worker process (see :func:`run_protocol`)."""
    model, task_name, out_dir, zoo_dir, cache, protocol, device, precision, threads = args
    import torch

    torch.set_num_threads(threads)
    sha = read_manifest(zoo_dir)["encoders"][model]["sha256"]
    return run_cell(load_encoder(model, zoo_dir), load_task(task_name, cache=cache), out_dir,
                    model=model, encoder_sha256=sha, protocol=protocol, device=device,
                    precision=precision)  # fmt: skip


def run_protocol(
    models: Sequence[str],
    tasks: Sequence[str],
    out_dir: str | os.PathLike[str],
    *,
    zoo_dir: str | os.PathLike[str],
    cache: str | os.PathLike[str] | None = None,
    protocol: Protocol = PROTOCOL,
    jobs: int = 1,
    device: str = "auto",
    precision: str = "auto",
) -> pd.DataFrame:
    """Every model x task of ``protocol`` (resumable), ``jobs`` cells side by side in worker
    processes; then the table (:func:`protocol_table`) and the manifest are written."""
    import torch

    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    out = Path(out_dir)
    threads = max(1, torch.get_num_threads() // jobs)
    cells = [(m, t, out, Path(zoo_dir), cache, protocol, device, precision, threads)
             for t in tasks for m in models]  # fmt: skip
    run_cells(_cell_worker, cells, jobs=jobs, desc="ground truth")
    return write_protocol_table(out)


def run_cells(
    worker: Callable[[tuple[Any, ...]], Any],
    cells: Sequence[tuple[Any, ...]],
    *,
    jobs: int,
    desc: str,
    after_each: Callable[[], Any] | None = None,
) -> None:
    """``worker(cell)`` for every cell (a tuple whose first two items name its model and
    task), in this process or ``jobs`` spawned worker processes side by side; ``after_each`` is
    called in this process as each cell ends.  A cell that fails is logged and the others go
    on; then a ``RuntimeError`` names every failed cell."""
    failed = []
    with tqdm(total=len(cells), desc=desc, unit="cell") as bar:
        if jobs == 1:
            for cell in cells:
                worker(cell)
                if after_each is not None:
                    after_each()
                bar.update(1)
        else:
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as executor:
                futures = {executor.submit(worker, c): c[:2] for c in cells}
                for future in as_completed(futures):
                    try:
                        future.result()
                    except Exception as exc:  # noqa: BLE001 - reported, the others go on
                        logger.error("%s x %s failed: %s", *futures[future], exc)
                        failed.append(futures[future])
                    if after_each is not None:
                        after_each()
                    bar.update(1)
    if failed:
        raise RuntimeError(f"{desc} failed for {failed}")


def protocol_table(out_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """Every finished run of the rebuilt protocol under ``out_dir/runs`` (columns
    :data:`COLUMNS_V2` and ``seconds``), sorted."""
    files = sorted((Path(out_dir) / "runs").rglob("*.json"))
    if not files:
        raise FileNotFoundError(f"no finished run under {Path(out_dir) / 'runs'}")
    table = pd.DataFrame([json.loads(f.read_text()) for f in files])[[*COLUMNS_V2, "seconds"]]
    return table.sort_values(["task", "model", "role", "seed", "lr", "wd"]).reset_index(drop=True)


def write_protocol_table(out_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """Write ``ground_truth.csv`` and the manifest tying it to every run and feature file
    (sha256 of each, relative paths); return the table."""
    out = Path(out_dir)
    table = protocol_table(out)
    csv = out / "ground_truth.csv"
    write_csv_atomic(table, csv)
    files = sorted([*(out / "runs").rglob("*.json"), *(out / "features").rglob("*.npz")])
    manifest = {"version": 1, "table": {"path": csv.name, "sha256": sha256_file(csv),
                                        "rows": len(table)},
                "files": {str(f.relative_to(out)): sha256_file(f) for f in files}}  # fmt: skip
    write_json_atomic(out / GT_MANIFEST, manifest)
    return table


def verify_ground_truth(
    out_dir: str | os.PathLike[str],
    *,
    zoo_dir: str | os.PathLike[str] | None = None,
    allow_unlisted: bool = False,
) -> pd.DataFrame:
    """Load a rebuilt ground truth after checking it against its manifest; return the table.

    Refused, with an error naming the file or run: a missing manifest or table; a table or run or
    feature file whose sha256 differs from the manifest's (edited, truncated, corrupt); a run
    file on disk that the manifest does not list, or listed and missing; a table whose rows are
    not exactly the run files'; missing columns, non-numeric or out-of-range values (an accuracy
    outside [0, 100], NaN, a non-positive learning rate); and, with ``zoo_dir``, a run whose
    encoder sha256 is not the zoo's current one (stale: the encoder was retrained).  With
    ``allow_unlisted`` (a run still in progress), files that the manifest does not list yet
    are left out instead of refused; the table and every listed file are still checked.
    """
    out = Path(out_dir)
    mpath = out / GT_MANIFEST
    if not mpath.is_file():
        raise FileNotFoundError(f"no ground-truth manifest {mpath}: run `make ground-truth`")
    manifest = read_json_record(mpath, ("table", "files"), what="a ground-truth manifest")
    table_info, files = manifest["table"], manifest["files"]
    csv = out / table_info["path"]
    if not csv.is_file():
        raise FileNotFoundError(f"{csv} is missing")
    if sha256_file(csv) != table_info["sha256"]:
        raise ValueError(f"{csv} does not match its sha256 in {mpath} (edited or corrupt)")
    on_disk = {str(f.relative_to(out)) for f in
               [*(out / "runs").rglob("*.json"), *(out / "features").rglob("*.npz")]}  # fmt: skip
    extra = sorted(on_disk - set(files))
    if extra and not allow_unlisted:
        raise ValueError(f"{out / extra[0]} is not in {mpath} (written after the table?)")
    if extra:  # a run still writing units: what the manifest lists is read, the rest is not
        logger.info("%s: %d file(s) not yet in the manifest are left out", out, len(extra))
    for name, digest in sorted(files.items()):
        path = out / name
        if not path.is_file():
            raise ValueError(f"{path} is listed in {mpath} but missing")
        if sha256_file(path) != digest:
            raise ValueError(f"{path} does not match its sha256 in {mpath} (edited or corrupt)")
    try:
        table = pd.read_csv(csv)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"{csv} is not a readable CSV ({exc})") from exc
    missing = [c for c in COLUMNS_V2 if c not in table.columns]
    if missing:
        raise ValueError(f"{csv} lacks the column(s) {missing}")
    for col in ("seed", "lr", "wd", "val", "test"):
        values = pd.to_numeric(table[col], errors="coerce")
        bad = values.isna() | ~np.isfinite(values)
        if col in ("val", "test"):
            bad |= (values < 0) | (values > 100)
        elif col == "lr":
            bad |= values <= 0
        elif col == "wd":
            bad |= values < 0
        if bad.any():
            row = table[bad].iloc[0]
            raise ValueError(f"{csv}: {col}={row[col]!r} out of range in the run of "
                             f"{row['model']} on {row['task']} ({row['role']}, seed "
                             f"{row['seed']})")  # fmt: skip
    n_runs = sum(1 for f in files if f.startswith("runs/"))
    if n_runs != len(table):
        raise ValueError(f"{csv} has {len(table)} rows for {n_runs} run files")
    bad_role = set(table["role"]) - {"select", "eval"}
    if bad_role:
        raise ValueError(f"{csv}: unknown role(s) {sorted(bad_role)}")
    if zoo_dir is not None:
        encoders = read_manifest(zoo_dir)["encoders"]
        for f in sorted(f for f in files if f.startswith("runs/")):
            run = json.loads((out / f).read_text())
            current = encoders.get(run["model"], {}).get("sha256")
            if run.get("config", {}).get("encoder_sha256") != current:
                raise ValueError(f"{out / f} is stale: its encoder is not the zoo's current "
                                 f"{run['model']} (retrained?); rerun `make ground-truth`")
    return table
