"""The ``ped verdict`` command: the verdict's scores of every arm, per task (:mod:`ped.bench.verdict`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ped import paper
from ped.bench import get_benchmark
from ped.bench.regime_axes import AXIS_POINTS, score_axes
from ped.bench.replication import primary_cells, run_simulations
from ped.bench.verdict import (
    CONTROLS,
    SECONDARY,
    load_scores,
    score_benchmark,
    score_control,
    score_seeds,
)
from ped.metrics import METRICS
from ped.paper import data_dir


def _cmd_replication(bench: Any, args: Any) -> int:
    """The replication simulations (:mod:`ped.bench.replication`) from the stored scores."""
    gt, models = bench.load()
    folder = Path(args.out) if args.out else bench.verdict_dir()
    cells, labels = primary_cells(load_scores(folder, list(bench.tasks), models), gt)
    out = folder / "simulations"
    tables = run_simulations(out, cells, labels, paper.published_gains())
    print(f"{len(tables)} simulation units in {out}")
    return 0


def _cmd_regime(args: Any) -> int:
    """The regime chapter's scores (:mod:`ped.bench.regime_axes`) into data/regime/scores."""
    if args.benchmark != "v2" or args.set or args.seed_spread or args.control or args.task \
            or args.replication:  # fmt: skip
        raise ValueError("--regime scores its own points on the rebuilt benchmark: drop "
                         "--benchmark, --set, --seed-spread, --control, --task, --replication")
    unknown = sorted(set(args.regime) - {"all", *AXIS_POINTS})
    if unknown:
        raise ValueError(f"unknown axis {unknown[0]!r}; axes: all, {', '.join(AXIS_POINTS)}")
    axes = list(AXIS_POINTS) if "all" in args.regime else list(dict.fromkeys(args.regime))
    out = Path(args.out) if args.out else data_dir() / "regime" / "scores"
    paths = score_axes(out, axes=axes, cache=args.cache)
    print(f"{len(paths)} score files under {out}")
    return 0


def _cmd_verdict(args: Any) -> int:
    if args.regime:
        return _cmd_regime(args)
    bench = get_benchmark(args.benchmark)
    if args.replication:
        if args.set or args.seed_spread or args.control or args.task:
            raise ValueError("--replication reads the primary scores of every task: drop "
                             "--set, --seed-spread, --control and --task")  # fmt: skip
        return _cmd_replication(bench, args)
    tasks = args.task or list(bench.tasks)
    split = args.split or "trainval"
    if sum(bool(v) for v in (args.set, args.seed_spread, args.control)) > 1:
        raise ValueError("--set, --seed-spread and --control are different score sets: give one")
    if args.control:
        folder = args.control
        options: dict[str, Any] = {"split": split, "scorer": score_control,
                                   "control": args.control, "n_replicates": args.replicates}
    elif args.seed_spread:
        if args.seeds < 2:
            raise ValueError(f"--seeds must be >= 2, got {args.seeds}")

        if args.seed_spread not in METRICS:
            raise ValueError(f"unknown metric {args.seed_spread!r}; the metrics are "
                             f"{', '.join(METRICS)}")  # fmt: skip
        folder = f"seeds_{args.seed_spread}"
        options = {"split": split, "scorer": score_seeds,
                                   "metric": args.seed_spread, "seeds": tuple(range(args.seeds))}
    else:
        folder = args.set
        options = {"split": split, "n_placebo": args.placebo, "n_replicates": args.replicates}
        if args.set:
            fixed = SECONDARY[args.set]
            if args.split and args.split != fixed.get("split", "trainval"):
                raise ValueError(f"--set {args.set} scores the {fixed.get('split', 'trainval')} "
                                 f"images; drop --split {args.split}")  # fmt: skip
            options.update(fixed)
    out = args.out or bench.verdict_dir() / (folder or "")  # "": the primary scores' folder
    paths = score_benchmark(out, tasks=tasks, zoo_dir=args.zoo or bench.zoo_dir(),
                            cache=args.cache, **options)  # fmt: skip
    for p in paths:
        print(p)
    return 0


def register_cli(subparsers: Any) -> None:
    """Add ``ped verdict`` (score every arm of the verdict, resumable per task)."""
    p = subparsers.add_parser(
        "verdict", help="score the zoo in every arm of the verdict on PED (resumable per task)",
        description="Score the embedded benchmark's zoo with LogME, SFDA and GBC on the extracted "
        "features, after PED, after PED on shuffled labels, on image replicates, and under the "
        "placebo; one .npz per task under --out (ped.bench.verdict).",
    )  # fmt: skip
    p.add_argument("--benchmark", default="v2", choices=("v1", "v2"),
                   help="the benchmark whose zoo, tasks and score folder are the defaults "
                   "(ped.bench.BENCHMARKS; default v2, the rebuilt one)")
    p.add_argument("--out", default=None,
                   help="folder of the per-task score files (default data/verdict/<benchmark>)")
    p.add_argument("--zoo", default=None, help="zoo folder (default: the benchmark's)")
    p.add_argument("--task", action="append",
                   help="this task only; repeatable (default: the benchmark's tasks)")
    p.add_argument("--set", default=None, choices=tuple(SECONDARY),
                   help="a secondary score set (ped.bench.verdict.SECONDARY), stored in "
                   "<out>/<set>: nsigma0.3 (the other ball radius), train (training images "
                   "only); default: the primary endpoint's scores")
    p.add_argument("--seed-spread", default=None, metavar="METRIC",
                   help="instead: score METRIC (e.g. nleep, whose mixture is seeded) under "
                   "--seeds seeds, with and without PED, into <out>/seeds_<METRIC>")
    p.add_argument("--control", default=None, choices=CONTROLS,
                   help="instead: score a control arm (radial: each class moved away from the "
                   "grand mean by its PED shift's length; labels, no energy) on the primary "
                   "scores' image replicates, into <out>/<control>")
    p.add_argument("--replication", action="store_true",
                   help="instead: from the stored primary scores, measure the benchmark's shape "
                   "and run the replication simulations (null, power, duplicates; resumable) "
                   "into <out>/simulations (ped.bench.replication)")
    p.add_argument("--regime", action="append", metavar="AXIS",
                   help="instead: score the regime chapter's points of AXIS (classes, images, "
                   "dimension, quality, or all; repeatable) into <out> (default "
                   "data/regime/scores; ped.bench.regime_axes)")
    p.add_argument("--seeds", type=int, default=5, help="seeds of --seed-spread (default 5)")
    p.add_argument("--split", default=None, choices=("train", "trainval"),
                   help="the labelled images scored (default trainval)")
    p.add_argument("--replicates", type=int, default=10, help="image replicates per task")
    p.add_argument("--placebo", type=int, default=100, help="placebo draws per task")
    p.add_argument("--cache", default=None, help="data cache (default ~/.cache/ped)")
    p.set_defaults(func=_cmd_verdict)
