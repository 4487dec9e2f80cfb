"""The ``ped rank`` command: choose a model for your own data (:mod:`ped.rank`)."""

from __future__ import annotations

import argparse
import hashlib
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from ped._io import check_output_path, write_csv_atomic
from ped.bench.choose import read_defaults_evidence
from ped.bench.tasks import cache_dir
from ped.cli import int_at_least
from ped.cli.extract import extract_one
from ped.fullscale.folder import check_score_labels, find_feature_files, read_npy
from ped.plot import ranking_figure
from ped.rank import DEFAULT_METRICS, rank_models, write_figure, write_report

_HELP = """\
Rank candidate models for one labelled dataset from their features, with how sure the ranking
is: each model's score under each metric with a bootstrap interval (the scored images resampled
within their classes, the same draws for every model), the probability that it is best, the
models that cannot be told apart from the top one, and a consensus across the metrics.

Defaults, from the embedded benchmark of the book: k-NN accuracy (an accuracy, so its value has
a meaning) and LogME, without PED (on the benchmark PED lowered the paper's metrics' agreement
with fine-tuning; see the chapters "Table 1 on the benchmark" and "Choose a model for your own
data").  Score the labelled images you would fine-tune on; every model must see the same images
in the same order (feature sizes may differ).
"""


def _cmd_rank(args: argparse.Namespace) -> int:
    if not args.images and (args.checkpoint or args.random_init):
        raise ValueError("--checkpoint and --random-init go with --images")
    source = Path(args.features or args.images)
    inputs = [p for p in source.rglob("*") if p.is_file()] if source.is_dir() else []
    outputs = {}
    for key, what in (("out", "ranking CSV"), ("figure", "figure"), ("report", "HTML report")):
        path = getattr(args, key)
        if path:
            outputs[key] = check_output_path(path, what=what, inputs=inputs)  # before any work
    if len({str(p.resolve()) for p in outputs.values()}) < len(outputs):
        raise ValueError("--out, --figure and --report must name different files")
    if "figure" in outputs and outputs["figure"].suffix.lower() not in (".png", ".pdf", ".svg"):
        raise ValueError(f"{outputs['figure'].name}: a figure must end in .png, .pdf or .svg")
    features_dir = Path(args.features) if args.features else _extract_images(args)
    if args.images:
        args.dataset = "images"
    files = find_feature_files(features_dir)
    datasets = sorted({f.dataset for f in files})
    dataset = args.dataset
    if dataset is None:
        if len(datasets) > 1:
            raise ValueError(f"{features_dir} holds {len(datasets)} datasets "
                             f"({', '.join(datasets)}): choose one with --dataset")  # fmt: skip
        dataset = datasets[0]
    chosen = [f for f in files if f.dataset == dataset]
    if not chosen:
        raise ValueError(f"no features of dataset {dataset!r} in {features_dir} (it holds "
                         f"{', '.join(datasets)})")  # fmt: skip
    if len(chosen) < 2:
        raise ValueError(f"dataset {dataset!r} has features of one model only: ranking needs two")
    labels = None
    features = {}
    for f in chosen:
        y = check_score_labels(read_npy(f.labels), f.labels.name)
        if labels is None:
            labels = y
        elif not np.array_equal(labels, y):
            raise ValueError(f"{f.labels.name}: other labels than {chosen[0].labels.name}: every "
                             "model must score the same images in the same order")  # fmt: skip
        features[f.model] = read_npy(f.features)
    ranking = rank_models(features, labels, metrics=args.metric or DEFAULT_METRICS,
                          ped=args.ped, n_boot=args.boot, level=args.level,
                          random_state=args.seed, n_jobs=args.jobs)  # fmt: skip
    wide = ranking.wide()
    shown = wide.xs("score", axis=1, level=1).round(4)
    shown["P(best)"] = wide[("consensus", "p_best")].round(2)
    shown["contender"] = ranking.consensus()["contender"].map({True: "yes", False: ""})
    print(f"{dataset}: {ranking.n_images} images, {ranking.n_classes} classes, "
          f"{len(features)} models, {ranking.n_boot} resamples, {ranking.level:.0%} level")
    print(shown.to_string())
    for w in ranking.warnings:
        print(f"warning: {w}")
    print(ranking.recommendation())
    if "out" in outputs:
        write_csv_atomic(ranking.table.assign(dataset=dataset), outputs["out"])
        print(f"wrote {outputs['out']}")
    if "figure" in outputs or "report" in outputs:
        fig = ranking_figure(ranking, title=dataset)
        if "figure" in outputs:
            write_figure(fig, outputs["figure"])
            print(f"wrote {outputs['figure']}")
        if "report" in outputs:
            write_report(ranking, fig, outputs["report"], title=dataset)
            print(f"wrote {outputs['report']}")
    return 0


def _models(args: argparse.Namespace) -> list[tuple[str, str | None]]:
    """``(name, checkpoint or None)`` of every ``--checkpoint NAME=PATH`` and ``--random-init
    NAME``, checked before any work."""
    models: list[tuple[str, str | None]] = []
    for spec in args.checkpoint or []:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--checkpoint takes NAME=PATH, got {spec!r}")
        models.append((name, path))
    models += [(name, None) for name in args.random_init or []]
    names = [m for m, _ in models]
    if len(set(names)) != len(names):
        raise ValueError(f"a model is named twice: {names}")
    if len(models) < 2:
        raise ValueError("--images needs at least two models (--checkpoint NAME=PATH, "
                         "--random-init NAME)")  # fmt: skip
    for name, path in models:
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"checkpoint file not found: {path} (model {name})")
    return models


def _extract_images(args: argparse.Namespace) -> Path:
    """Extract every model's features of the image folder ``--images`` into the cache (reused
    when the settings match) and return the features folder."""
    images = Path(args.images)
    if not images.is_dir():
        raise FileNotFoundError(f"image folder {images} not found")
    models = _models(args)
    key = hashlib.sha256(str(images.resolve()).encode()).hexdigest()[:16]
    folder = Path(args.cache) if args.cache else cache_dir() / "rank" / key
    folder.mkdir(parents=True, exist_ok=True)
    for i, (name, checkpoint) in enumerate(models):  # random inits: seed i, in the order given
        extract_one(name, checkpoint=checkpoint, dataset="imagefolder", root=str(images),
                    out=folder, name="images", seed=i, device=args.device,
                    batch_size=args.batch_size, progress=not args.no_progress)  # fmt: skip
    return folder


def _level(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not 0.5 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0.5, 1), got {text}")
    return value


def _evidence() -> str:
    """The figures behind the defaults, from the committed measurement (none in a bare install)."""
    ev = read_defaults_evidence()
    if ev is None:
        return ""
    tau = ev["mean_tau_w"]

    text = (f"The figures (mean weighted Kendall tau with fine-tuning over the rebuilt "
            f"benchmark's {ev['tasks']} tasks, {ev['models']} models): k-NN "
            f"{tau['knn']:.3f}, LogME {tau['logme']:.3f}, their consensus {tau['consensus']:.3f};"
            f" SFDA {tau['sfda (verdict)']:.3f}, GBC {tau['gbc (verdict)']:.3f}. PED changed the "
            f"paper's three metrics' mean tau by {ev['ped_change']:+.3f}.")  # fmt: skip
    return "\n" + textwrap.fill(text, width=96) + "\n"


def register_cli(subparsers: Any) -> None:
    """Add ``ped rank``."""
    p = subparsers.add_parser("rank", help="choose a model for your own data, with the "
                              "uncertainty shown", description=_HELP,
                              formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    base_help = p.format_help

    def format_help() -> str:  # the figures are read only when the help is shown
        p.description = _HELP + _evidence()
        return base_help()

    p.format_help = format_help  # type: ignore[method-assign]
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--features", type=Path,
                        help="folder of <model>_<dataset>_feature.npy and _label.npy files")
    source.add_argument("--images", type=Path,
                        help="instead: an image folder (one subfolder per class) whose ResNet-50 "
                        "features are extracted for every --checkpoint (cached, on a GPU when "
                        "present)")  # fmt: skip
    p.add_argument("--checkpoint", action="append", metavar="NAME=PATH",
                   help="with --images: a ResNet-50 checkpoint to rank; repeatable")
    p.add_argument("--random-init", action="append", metavar="NAME",
                   help="with --images: a random-weight ResNet-50 (a baseline; demos and tests)")
    p.add_argument("--cache", default=None,
                   help="with --images: where the features go (default: the data cache)")
    p.add_argument("--device", default="auto", help="with --images: auto, cpu or cuda")
    p.add_argument("--batch-size", type=int_at_least(1), default=64,
                   help="with --images: images per batch (default 64)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--dataset", default=None,
                   help="the dataset to rank for (needed when the folder holds several)")
    p.add_argument("--metric", action="append", default=None,
                   help="a metric of ped.metrics.METRICS; repeatable (default: knn and logme)")
    p.add_argument("--ped", action="store_true",
                   help="move the features with PED before scoring (off by default: see above)")
    p.add_argument("--boot", type=int_at_least(10), default=100,
                   help="class-stratified resamples of the images (default 100)")
    p.add_argument("--level", type=_level, default=0.95,
                   help="level of the intervals and of the contenders (default 0.95)")
    p.add_argument("--seed", type=int, default=0, help="seed of the resamples (default 0)")
    p.add_argument("--jobs", type=int_at_least(1), default=1,
                   help="processes scoring models side by side (default 1; the ranking is the "
                   "same to round-off for any number)")  # fmt: skip
    p.add_argument("--out", default=None, help="write the ranking as a CSV")
    p.add_argument("--figure", default=None, help="write a figure (.png, .pdf or .svg)")
    p.add_argument("--report", default=None, help="write a self-contained HTML report")
    p.set_defaults(func=_cmd_rank)
