"""Time ``ped rank`` (:func:`ped.rank.rank_models`) on a zoo at the Flowers shape: 12 models of
8189 images x 2048 dimensions, 102 classes (synthetic, ``ped.bench.synthetic_task``, with
noise added to one model's features, more for each further model, so model00 is the best),
with its defaults (k-NN accuracy and LogME, no PED) and ``--boot`` class-stratified
resamples, bootstrap included.

Reports, in one run:

- one score of each default metric on all images, and LogME on one resample scored two ways:
  with its repeated images, and each distinct image once with its count as its weight (what
  ``ped rank`` does); k-NN's resamples reuse each image's credit and cost nothing more;
- the whole ranking with one process (two BLAS threads) and with ``--jobs`` processes, their
  ratio, the largest difference between the two tables' numbers (round-off: the BLAS threads
  sum in another order) and whether they agree on every probability of being best, contender
  and rank.

Close other work first (the machine's cores are shared by BLAS).

    python benchmarks/bench_rank.py --models 12 --boot 100 --jobs 2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from ped.bench import synthetic_task
from ped.inference import image_replicates
from ped.metrics import METRICS, logme
from ped.rank import DEFAULT_METRICS, rank_models


def seconds(fn, repeats: int = 3) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=12)
    parser.add_argument("--n", type=int, default=8189)
    parser.add_argument("--d", type=int, default=2048)
    parser.add_argument("--c", type=int, default=102)
    parser.add_argument("--boot", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=2, help="processes of the second ranking")
    parser.add_argument("--json", default=None, help="also write the measurements here")
    args = parser.parse_args()
    base, labels = synthetic_task(args.n, args.d, args.c, seed=0)
    rng = np.random.default_rng(1)
    scale = float(base.std())
    features = {f"model{i:02d}": (base + rng.normal(0, 0.05 * i * scale, base.shape))
                .astype(np.float32) for i in range(args.models)}  # fmt: skip
    x = features["model00"]
    one = {metric: seconds(lambda m=metric: METRICS[m](x, labels)) for metric in DEFAULT_METRICS}
    draw = image_replicates(labels, 1, random_state=0)[0]
    distinct, counts = np.unique(draw, return_counts=True)
    resample = {
        "repeated_images_s": seconds(lambda: logme(x[draw], labels[draw])),
        "weighted_distinct_s": seconds(
            lambda: logme(x[distinct], labels[distinct], sample_weight=counts)),
        "distinct_share": distinct.size / draw.size,
    }
    timings = {}
    tables = {}
    for jobs in (1, args.jobs):
        t0 = time.perf_counter()
        ranking = rank_models(features, labels, n_boot=args.boot, n_jobs=jobs)
        timings[jobs] = time.perf_counter() - t0
        tables[jobs] = ranking.table
    one_table, jobs_table = tables[1], tables[args.jobs]
    numbers = ["score", "low", "high", "p_best"]
    difference = float((one_table[numbers] - jobs_table[numbers]).abs().to_numpy().max())
    same = bool(one_table[["model", "metric", "p_best", "contender", "rank"]]
                .equals(jobs_table[["model", "metric", "p_best", "contender", "rank"]]))  # fmt: skip
    result = {"shape": [args.n, args.d, args.c], "models": args.models, "boot": args.boot,
              "metrics": list(DEFAULT_METRICS), "one_score_s": one, "logme_resample": resample,
              "ranking_one_process_s": timings[1], "jobs": args.jobs,
              "ranking_jobs_s": timings[args.jobs], "ratio": timings[1] / timings[args.jobs],
              "max_difference": difference, "same_decisions": same, "best": ranking.best, "contenders": len(ranking.contenders),
              "date": time.strftime("%Y-%m-%d"), "cpu_count": os.cpu_count(),
              "load_average_end": os.getloadavg()[0]}  # fmt: skip
    print(f"{args.models} models at {args.n} x {args.d}, {args.c} classes, {args.boot} resamples: "
          f"{timings[1] / 60:.1f} min in one process, {timings[args.jobs] / 60:.1f} min in "
          f"{args.jobs} ({result['ratio']:.2f}x; largest difference {difference:.1e}, same "
          f"decisions: {same}); one score: "
          + ", ".join(f"{m} {s:.2f} s" for m, s in one.items())
          + f"; LogME of a resample {resample['repeated_images_s']:.2f} s with its repeats, "
          f"{resample['weighted_distinct_s']:.2f} s weighted")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
