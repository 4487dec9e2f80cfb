"""The ``ped verdict`` command: the verdict's scores of every arm, per task (:mod:`ped.bench.verdict`)."""

from __future__ import annotations

from typing import Any

from ped.bench.verdict import score_benchmark


def _cmd_verdict(args: Any) -> int:
    from ped.bench import get_benchmark

    bench = get_benchmark(args.benchmark)
    tasks = args.task or list(bench.tasks)
    out = args.out or bench.verdict_dir()
    paths = score_benchmark(out, tasks=tasks, zoo_dir=args.zoo or bench.zoo_dir(),
                            split=args.split, cache=args.cache, n_replicates=args.replicates,
                            n_placebo=args.placebo)  # fmt: skip
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
    p.add_argument("--split", default="trainval", choices=("train", "trainval"))
    p.add_argument("--replicates", type=int, default=10, help="image replicates per task")
    p.add_argument("--placebo", type=int, default=100, help="placebo draws per task")
    p.add_argument("--cache", default=None, help="data cache (default ~/.cache/ped)")
    p.set_defaults(func=_cmd_verdict)
