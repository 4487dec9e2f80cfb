"""The ``ped datasets`` command: the embedded benchmark's offline data (:mod:`ped.bench.tasks`)."""

from __future__ import annotations

import argparse
import time
from typing import Any

from ped.bench.pool import load_pool
from ped.bench.tasks import (
    CLASS_SUBSET_TASKS,
    REBUILT_TASKS,
    TASKS,
    load_clipart,
    load_glyphs,
    load_task,
    prepare_torchvision_root,
)


def _cmd_datasets(args: argparse.Namespace) -> int:
    if args.action == "prepare":
        start = time.perf_counter()
        for name in ("fashion_mnist", "mnist"):
            root = prepare_torchvision_root(name, cache=args.cache)
        data, _ = load_clipart(cache=args.cache)
        glyphs, faces = load_glyphs(cache=args.cache)
        print(f"torchvision root {root}; clip art {len(data)} images; glyphs {len(glyphs)} "
              f"images ({len(set(faces))} faces); {time.perf_counter() - start:.1f} s")  # fmt: skip
        return 0
    if args.action == "tasks":
        clip = load_clipart(cache=args.cache)
        print(f"{'task':<18} {'source':<14} {'C':>3} {'train':>6} {'val':>5} {'test':>5}  domain")
        for table, note in ((TASKS, ""), (REBUILT_TASKS, " [rebuilt benchmark]"),
                            (CLASS_SUBSET_TASKS, " [regime chapter]")):
            for name, spec in table.items():
                task = load_task(name, cache=args.cache, clipart=clip)
                s = task.sizes()
                where = "in pool" if spec.in_pool_domain else "OUT of pool"
                source = spec.source if spec.source not in TASKS and spec.source not in \
                    REBUILT_TASKS else f"task {spec.source}"  # fmt: skip
                print(f"{name:<18} {source:<14} {len(task.classes):>3} {s['train']:>6} "
                      f"{s['val']:>5} {s['test']:>5}  {where}: {spec.domain}{note}")  # fmt: skip
        return 0
    pool = load_pool(cache=args.cache)
    print(f"pool: {len(pool.train)} pretraining + {len(pool.heldout)} held-out images, "
          f"{pool.n_dropped} dropped, fingerprint {pool.fingerprint()}")  # fmt: skip
    return 0


def register_cli(subparsers: Any) -> None:
    """Add ``ped datasets {prepare,tasks,pool}`` to the ``ped`` command line."""
    p = subparsers.add_parser(
        "datasets",
        help="offline benchmark data: unpack/decode sources, list tasks and the pool",
        description="prepare: unpack MNIST/Fashion-MNIST for torchvision, decode the clip art "
        "and render the font glyphs into the cache (~30 s once); tasks: the downstream task "
        "table (both benchmarks, and the class subsets of the regime chapter); pool: the pretraining pool.",
    )
    p.add_argument("action", choices=("prepare", "tasks", "pool"))
    p.add_argument("--cache", default=None, help="cache folder (default $PED_CACHE_DIR or "
                   "~/.cache/ped)")  # fmt: skip
    p.set_defaults(func=_cmd_datasets)
