"""``ped zoo train``, ``ped zoo features`` and ``ped zoo finetune``: the zoo's command line.

See :mod:`ped.bench.zoo.train` (pretraining, features) and :mod:`ped.bench.zoo.finetune` (ground truth).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ped._io import write_csv_atomic
from ped.bench.pool import load_pool
from ped.bench.tasks import REBUILT_TASK_NAMES, TASKS
from ped.bench.zoo.finetune import (
    PROTOCOL,
    ground_truth_table,
    run_ground_truth,
    run_protocol,
    selected,
    verify_ground_truth,
)
from ped.bench.zoo.regime import regime_cells, run_regime
from ped.bench.zoo.selection import choose_cells, run_selection_noise, selection_changes
from ped.bench.zoo.spec import ZOO, zoo_entry
from ped.bench.zoo.train import default_zoo_dir, pretrain_many, read_manifest, task_features

__all__ = ["register_cli"]


def _zoo_dir(args: argparse.Namespace) -> Path:
    return Path(args.out) if args.out else default_zoo_dir()


def _cmd_train(args: argparse.Namespace) -> int:
    if args.jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
    entries = [zoo_entry(n) for n in args.only] if args.only else list(ZOO)
    pool = load_pool(cache=args.cache)
    out = _zoo_dir(args)
    start = time.perf_counter()
    options = {"epochs_scale": args.epochs_scale, "max_steps": args.max_steps,
               "device": args.device, "precision": args.precision, "force": args.force}  # fmt: skip
    for rec in pretrain_many(entries, pool, out, jobs=args.jobs, progress=not args.no_progress,
                             **options):  # fmt: skip
        state = "skipped (done)" if rec["skipped"] else f"{rec['wall_time_s']:.1f} s"
        loss = rec["final_loss"]
        print(f"{rec['name']:<16} {rec['steps']:>6} steps  loss "
              f"{'-' if loss is None else f'{loss:.4f}':>8}  {state}", flush=True)  # fmt: skip
    print(f"zoo in {out}: {len(entries)} unit(s), {time.perf_counter() - start:.1f} s")
    return 0


def _cmd_features(args: argparse.Namespace) -> int:
    feats = task_features(args.task, zoo_dir=_zoo_dir(args), cache=args.cache,
                          names=args.only, device=args.device)  # fmt: skip
    for name, arrays in feats.items():
        shapes = ", ".join(f"{s} {arrays[f'x_{s}'].shape}" for s in ("train", "val", "test"))
        print(f"{name:<16} {shapes}")
    return 0


def _ground_truth_plan(
    args: argparse.Namespace, default_tasks: list[str], default_out: str
) -> tuple[Path, list[str], list[str], Path]:
    """The zoo folder, models (``--only`` or every trained encoder), tasks and output folder."""
    zoo = _zoo_dir(args)
    models = args.only or list(read_manifest(zoo)["encoders"])
    if not models:
        raise ValueError(f"no trained encoder in {zoo}: run `ped zoo train` first")
    out = Path(args.gt_out) if args.gt_out else zoo.parent / default_out
    return zoo, models, args.task or default_tasks, out


def _cmd_finetune(args: argparse.Namespace) -> int:
    zoo, models, tasks, out = _ground_truth_plan(args, list(TASKS), "ground_truth")
    start = time.perf_counter()
    run_ground_truth(models, tasks, out, zoo_dir=zoo, cache=args.cache,
                     protocols=args.protocol or ("finetune", "linear"), epochs=args.epochs,
                     min_steps=args.min_steps,
                     device=args.device, precision=args.precision)  # fmt: skip
    table = ground_truth_table(out)
    csv = out / "ground_truth.csv"
    write_csv_atomic(table, csv)
    summary = selected(table).groupby(["task", "protocol", "model"])["test"].agg(["mean", "std"])
    print(summary.round(2).to_string())
    print(f"wrote {csv} ({len(table)} runs), {time.perf_counter() - start:.1f} s")
    return 0


def _cmd_groundtruth(args: argparse.Namespace) -> int:
    zoo, models, tasks, out = _ground_truth_plan(args, list(REBUILT_TASK_NAMES), "ground_truth_v2")
    start = time.perf_counter()
    table = run_protocol(models, tasks, out, zoo_dir=zoo, cache=args.cache, protocol=PROTOCOL,
                         jobs=args.jobs, device=args.device, precision=args.precision)  # fmt: skip
    ev = table[table["role"] == "eval"]
    print(ev.groupby(["task", "model"])["test"].agg(["mean", "std", "count"]).round(2).to_string())
    print(f"wrote {out / 'ground_truth.csv'} ({len(table)} runs) and its manifest, "
          f"{time.perf_counter() - start:.1f} s")  # fmt: skip
    return 0


def _cmd_selection(args: argparse.Namespace) -> int:
    if args.cells < 1:
        raise ValueError(f"--cells must be >= 1, got {args.cells}")
    zoo, models, tasks, gt_dir = _ground_truth_plan(args, list(REBUILT_TASK_NAMES),
                                                    "ground_truth_v2")  # fmt: skip
    out = Path(args.noise_out) if args.noise_out else zoo.parent / "selection_noise"

    unknown = sorted(set(models) - set(read_manifest(zoo)["encoders"]))
    if unknown:
        raise ValueError(f"no trained encoder for {unknown} in {zoo}")
    gt = verify_ground_truth(gt_dir)
    bad = sorted(set(tasks) - set(gt["task"]))
    if bad:
        raise ValueError(f"no ground truth for task(s) {bad} in {gt_dir}")
    cells = choose_cells(models, tasks, args.cells, random_state=args.draw_seed)
    start = time.perf_counter()
    table = run_selection_noise(cells, out, zoo_dir=zoo, gt=gt, seed=args.seed,
                                n_eval=args.n_eval, cache=args.cache, jobs=args.jobs,
                                device=args.device)  # fmt: skip
    changes = selection_changes(gt, table)
    print(changes.round(3).to_string(index=False))
    print(f"{int(changes['changed'].sum())} of {len(changes)} choices changed; wrote "
          f"{out / 'ground_truth.csv'} ({len(table)} runs), {time.perf_counter() - start:.1f} s")
    return 0


def _cmd_regime(args: argparse.Namespace) -> int:
    zoo = _zoo_dir(args)
    first = Path(args.first_zoo) if args.first_zoo else zoo.parent / "zoo"
    gt_dir = Path(args.gt_out) if args.gt_out else zoo.parent / "ground_truth_v2"
    out = Path(args.regime_out) if args.regime_out else zoo.parent / "regime"
    gt = verify_ground_truth(gt_dir)
    cells = regime_cells(gt, list(read_manifest(zoo)["encoders"]),
                         list(read_manifest(first)["encoders"]), zoo_dir=zoo, first_zoo_dir=first,
                         parts=args.part or ("subsets", "short"))  # fmt: skip

    protocol = PROTOCOL
    if args.seeds is not None:
        if not 2 <= args.seeds <= len(PROTOCOL.eval_seeds):
            raise ValueError(f"--seeds must be in 2..{len(PROTOCOL.eval_seeds)}, got {args.seeds}")
        protocol = replace(PROTOCOL, eval_seeds=tuple(range(args.seeds)))
    start = time.perf_counter()
    table = run_regime(cells, out, cache=args.cache, jobs=args.jobs, device=args.device,
                       protocol=protocol)  # fmt: skip
    summary = table.groupby(["task", "model"])["test"].agg(["mean", "std", "count"])
    print(summary.round(2).to_string())
    print(f"wrote {out / 'ground_truth.csv'} ({len(table)} runs) and its manifest, "
          f"{time.perf_counter() - start:.1f} s")  # fmt: skip
    return 0


def register_cli(subparsers: Any) -> None:
    """Add ``ped zoo {train,features}`` to the ``ped`` command line."""
    p = subparsers.add_parser(
        "zoo", help="pretrain the self-supervised model zoo; extract its features",
        description="Pretrain the zoo's small ResNets (resumable: finished, sha256-verified units "
        "are skipped) or extract (cached) features of every zoo encoder on a downstream task.",
    )  # fmt: skip
    sub = p.add_subparsers(dest="zoo_command", required=True)
    t = sub.add_parser("train", help="pretrain zoo entries (resumable)")
    t.add_argument("--only", action="append", metavar="NAME", help="this entry only; repeatable")
    t.add_argument("--epochs-scale", type=float, default=1.0, help="multiply every entry's epochs")
    t.add_argument("--max-steps", type=int, default=None, help="cap optimiser steps per entry")
    t.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"))
    t.add_argument("--jobs", type=int, default=1, help="units trained side by side, one process "
                   "each (the CPU's threads are shared out; on CUDA they share the GPU)")
    t.add_argument("--force", action="store_true", help="retrain finished units")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")
    t.set_defaults(func=_cmd_train)
    f = sub.add_parser("features", help="features of every zoo encoder on a task (cached)")
    f.add_argument("--task", required=True, help="a task of ped.bench.tasks.TASKS")
    f.add_argument("--only", action="append", metavar="NAME", help="this encoder only")
    f.set_defaults(func=_cmd_features)
    g = sub.add_parser("finetune", help="ground truth: fine-tuning and linear-probe accuracy")
    g.add_argument("--only", action="append", metavar="MODEL", help="this encoder only")
    g.add_argument("--task", action="append", help="this task only; repeatable (default: all)")
    g.add_argument("--protocol", action="append", choices=("finetune", "linear"))
    g.add_argument("--epochs", type=int, default=20, help="fine-tuning epochs")
    g.add_argument("--min-steps", type=int, default=100,
                   help="raise the epochs of small tasks to at least this many optimiser steps")
    g.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"))
    g.add_argument("--gt-out", default=None, help="ground-truth folder (default: beside the zoo "
                   "folder, <zoo>/../ground_truth)")  # fmt: skip
    g.set_defaults(func=_cmd_finetune)
    r = sub.add_parser("groundtruth", help="the rebuilt benchmark's fine-tuning ground truth "
                       "(selection seeds, 6 evaluation seeds, interior grid, Z_T; resumable)")
    r.add_argument("--only", action="append", metavar="MODEL", help="this encoder only")
    r.add_argument("--task", action="append", help="this task only; repeatable (default: the "
                   "rebuilt benchmark's tasks)")  # fmt: skip
    r.add_argument("--jobs", type=int, default=1, help="model x task cells side by side")
    r.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"))
    r.add_argument("--gt-out", default=None, help="ground-truth folder (default: "
                   "<zoo>/../ground_truth_v2)")  # fmt: skip
    r.set_defaults(func=_cmd_groundtruth)
    n = sub.add_parser("selection-noise", help="rerun the rebuilt ground truth's model "
                       "selection with a second seed on random cells (resumable)")
    n.add_argument("--only", action="append", metavar="MODEL", help="draw among these encoders")
    n.add_argument("--task", action="append", help="draw among these tasks (default: the "
                   "rebuilt benchmark's tasks)")  # fmt: skip
    n.add_argument("--cells", type=int, default=24, help="model x task cells drawn (default 24)")
    n.add_argument("--draw-seed", type=int, default=0, help="seed of the draw of cells")
    n.add_argument("--jobs", type=int, default=1, help="cells side by side")
    n.add_argument("--seed", type=int, default=101, help="the second selection seed")
    n.add_argument("--n-eval", type=int, default=6, help="evaluation seeds run at a changed "
                   "choice (default 6)")  # fmt: skip
    n.add_argument("--gt-out", default=None, help="the ground truth whose selection is rerun "
                   "(default: <zoo>/../ground_truth_v2)")  # fmt: skip
    n.add_argument("--noise-out", default=None, help="where the reruns go (default: "
                   "<zoo>/../selection_noise)")  # fmt: skip
    n.set_defaults(func=_cmd_selection)
    e = sub.add_parser("regime", help="the regime chapter's ground truth: the rebuilt zoo on "
                       "glyphs62's class subsets, the 5-epoch zoo on the rebuilt tasks (resumable)")
    e.add_argument("--part", action="append", choices=("subsets", "short"),
                   help="this part only; repeatable (default: both)")
    e.add_argument("--jobs", type=int, default=1, help="model x task cells side by side")
    e.add_argument("--seeds", type=int, default=None, help="run the first SEEDS evaluation "
                   "seeds of every cell only (default: all six; a later run adds the rest)")
    e.add_argument("--first-zoo", default=None, help="the 5-epoch zoo (default: <zoo>/../zoo)")
    e.add_argument("--gt-out", default=None, help="the rebuilt ground truth whose settings are "
                   "reused (default: <zoo>/../ground_truth_v2)")  # fmt: skip
    e.add_argument("--regime-out", default=None, help="where the runs go (default: "
                   "<zoo>/../regime)")  # fmt: skip
    e.set_defaults(func=_cmd_regime)
    for q in (t, f, g, r, n, e):
        q.add_argument("--out", default=None, help="zoo folder (default: data/zoo)")
        q.add_argument("--cache", default=None, help="data cache (default $PED_CACHE_DIR or "
                       "~/.cache/ped)")  # fmt: skip
        q.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda")
