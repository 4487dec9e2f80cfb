"""Time ``ped rank`` (:func:`ped.rank.rank_models`) on a zoo at the Flowers shape: 12 models of
8189 images x 2048 dimensions, 102 classes (synthetic, ``ped.bench.synthetic_task``, with
noise added to one model's features, more for each further model, so model00 is the best),
with its defaults (k-NN accuracy and LogME, no PED) and ``--boot`` class-stratified
resamples, bootstrap included.

Reports the wall time of the whole ranking and of each metric on one model (all images), so the
cost of the bootstrap can be read as a multiple of one score: k-NN's resamples reuse each
image's credit and cost nothing more, LogME is recomputed on every resample.  Close other work
first (the machine's cores are shared by BLAS).

    python benchmarks/bench_rank.py --models 12 --boot 100 --json out.json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from ped.bench import synthetic_task
from ped.metrics import METRICS
from ped.rank import DEFAULT_METRICS, rank_models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=12)
    parser.add_argument("--n", type=int, default=8189)
    parser.add_argument("--d", type=int, default=2048)
    parser.add_argument("--c", type=int, default=102)
    parser.add_argument("--boot", type=int, default=100)
    parser.add_argument("--json", default=None, help="also write the measurements here")
    args = parser.parse_args()
    base, labels = synthetic_task(args.n, args.d, args.c, seed=0)
    rng = np.random.default_rng(1)
    scale = float(base.std())
    features = {f"model{i:02d}": (base + rng.normal(0, 0.05 * i * scale, base.shape))
                .astype(np.float32) for i in range(args.models)}  # fmt: skip
    one = {}
    for metric in DEFAULT_METRICS:
        t0 = time.perf_counter()
        METRICS[metric](features["model00"], labels)
        one[metric] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ranking = rank_models(features, labels, n_boot=args.boot)
    total = time.perf_counter() - t0
    result = {"shape": [args.n, args.d, args.c], "models": args.models, "boot": args.boot,
              "metrics": list(DEFAULT_METRICS), "one_score_s": one, "ranking_s": total,
              "best": ranking.best, "contenders": len(ranking.contenders)}  # fmt: skip
    print(f"{args.models} models at {args.n} x {args.d}, {args.c} classes, {args.boot} resamples:"
          f" {total:.1f} s ({total / 60:.1f} min); one score: "
          + ", ".join(f"{m} {s:.2f} s" for m, s in one.items()))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
