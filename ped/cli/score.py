"""The ``ped score`` and ``ped evaluate`` commands (:mod:`ped.fullscale.scoring`)."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

from ped._io import check_output_path, write_csv_atomic
from ped.cli import int_at_least, positive_float
from ped.dynamics import PEDOptions
from ped.fullscale.distributed import parts_dir, score_features_distributed
from ped.fullscale.scoring import SCORE_COLUMNS, evaluate_scores, score_features


def _min_models(text: str) -> int:
    """argparse type of ``--min-models``: an integer >= 2 (rank statistics need two models)."""
    return int_at_least(2, " (rank statistics need at least 2 models)")(text)


def _cmd_score(args: argparse.Namespace) -> int:
    inputs = [*Path(args.features).glob("*"), *(Path(args.reference).glob("*")
                                                 if args.reference else [])]  # fmt: skip
    out = check_output_path(args.out, what="scores CSV", inputs=inputs)  # before any work
    options = (
        {"nsigma": args.nsigma, "time_step": args.time_step, "variant": args.variant}
        if args.ped else None
    )  # fmt: skip
    if args.workers is not None or args.scheduler is not None:
        table = score_features_distributed(
            args.features, args.metric, out=out, scheduler=args.scheduler,
            n_workers=args.workers or 2, threads_per_worker=args.threads_per_worker,
            ped=args.ped, reference_dir=args.reference, ped_options=options,
            definitions=args.definitions, progress=not args.no_progress,
        )  # fmt: skip
        write_csv_atomic(table, out)
        shutil.rmtree(parts_dir(out), ignore_errors=True)
    else:
        table = score_features(
            args.features, args.metric, ped=args.ped, reference_dir=args.reference,
            ped_options=options, definitions=args.definitions, progress=not args.no_progress,
        )  # fmt: skip
        write_csv_atomic(table, out)
    n_err = int((table["error"] != "").sum())
    print(
        f"wrote {out}: {len(table)} row(s), {table['model'].nunique()} model(s), "
        f"{table['dataset'].nunique()} dataset(s){f', {n_err} failed' if n_err else ''}"
    )
    if args.ped:
        refs = sorted(set(table.loc[table["ped"], "ped_reference"]))
        print(f"PED standardisation: {', '.join(refs)}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    inputs = [args.scores] + ([args.truth] if args.truth else [])
    out = check_output_path(args.out, what="evaluation CSV", inputs=inputs)  # before any work
    table = evaluate_scores(args.scores, args.truth, min_models=args.min_models)
    write_csv_atomic(table, out)
    print(f"wrote {out}: {len(table)} row(s)")
    if len(table):
        pivot = table.pivot_table(
            index=["metric", "ped"], columns="dataset", values="weighted_tau"
        )
        pivot["mean"] = pivot.mean(axis=1)
        print("weighted tau:")
        print(pivot.round(3).to_string())
    return 0


_SCORE_EPILOG = """\
Every file is checked before anything is scored: an empty, truncated, corrupt or pickled .npy,
features that are not an (N, D) float array, or labels that are not N whole numbers stop the
command with one line naming every bad file (exit status 2; nothing is written).  Integer labels
other than 0..C-1 are remapped in order.  A metric that fails on one file is a row with a NaN
score and its error.  Exit status: 0 done, 2 bad input (nothing written), 130 interrupted.
"""


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
        epilog=_SCORE_EPILOG,
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
    s.add_argument(
        "--nsigma", type=positive_float, default=PEDOptions.nsigma,
        help=f"PED radius scale (0.3 or 0.6; default {PEDOptions.nsigma})",
    )  # fmt: skip
    s.add_argument("--time-step", type=positive_float, default=PEDOptions.time_step,
                   help=f"PED time step (default {PEDOptions.time_step})")  # fmt: skip
    s.add_argument("--variant", choices=("official", "paper"), default=PEDOptions.variant)
    s.add_argument("--definitions", choices=("paper", "release"), default="paper",
                   help="metric definitions: the papers' formulas (default) or the released "
                   "code's (SFDA, NLEEP and LEEP without their log, GBC as Pándy et al.'s code "
                   "computes it; ped.metrics.DEFINITIONS)")
    s.add_argument("--out", required=True, help="output CSV")
    s.add_argument("--workers", type=int_at_least(1), default=None,
                   help="score on a Dask LocalCluster of this many worker processes, one task "
                   "per model x dataset; finished tasks are kept beside --out until the CSV is "
                   "written, so an interrupted run resumes")  # fmt: skip
    s.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="score on an existing Dask scheduler (tcp://host:8786) instead; its "
                   "workers must see the same paths")  # fmt: skip
    s.add_argument("--threads-per-worker", type=int_at_least(1), default=1,
                   help="tasks at once per LocalCluster worker (default 1)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
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
    e.add_argument(
        "--min-models", type=_min_models, default=3,
        help="skip groups with fewer models (at least 2)",
    )  # fmt: skip
    e.add_argument("--out", required=True, help="output CSV")
    e.set_defaults(func=_cmd_evaluate)
