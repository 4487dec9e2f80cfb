"""Benchmark every ped.metrics metric at the Flowers shape (N=8189, D=2048, C=102) against a
straightforward implementation of its released algorithm, in the same run.

Synthetic float32 Gaussian classes (seeded): noise with a decaying spectrum in a random rotation,
so the PCA-based metrics see a realistic number of components, and class means in the 64
highest-variance noise directions at a signal-to-noise ratio of 0.4 per direction, so
that the classes overlap (at the Flowers shape SFDA ≈ -0.14, GBC ≈ -680 of a possible -C(C-1)),
rather than being separable in low-noise directions (scores at their ceilings).

Each metric runs with the options under which it computes the same score as its reference in
``benchmarks/reference_metrics.py`` (the release definitions; NLEEP with the released full
covariance).  Prints a markdown table: median wall time over ``--repeats`` runs of each, their
ratio (reference / ped: above 1 means ped is faster), the largest score difference, ped's peak
traced memory (tracemalloc, one extra untimed run) and PED's time as a fraction of the metric's.
NLEEP's mixture has 5 x C components of full covariance on the 80 %-variance PCA scores (about
300 dimensions here): the reference fits it with scikit-learn's ``GaussianMixture``, ped with the
same k-means start and EM iterations, skipping the responsibilities that are 0.0 in float64
(``benchmarks/bench_nleep.py`` times NLEEP alone, at several shapes); ``--nleep-max-iter`` is the
same for both (EM converges in 2 iterations at the Flowers shape).  Close other work first.

    python benchmarks/bench_metrics.py --repeats 3 --nleep-max-iter 3 --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import tracemalloc

import numpy as np

from ped.bench import synthetic_task
from ped.metrics import METRICS


def make_features(n: int, d: int, c: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    return synthetic_task(n, d, c, seed=seed)


def measure(fn, repeats: int) -> tuple[float, float, float]:
    times = []
    value = float("nan")
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return statistics.median(times), peak / 2**20, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reference-repeats", type=int, default=1)
    parser.add_argument("--n", type=int, default=8189)
    parser.add_argument("--d", type=int, default=2048)
    parser.add_argument("--c", type=int, default=102)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip", nargs="*", default=[], choices=sorted(METRICS) + ["ped"])
    parser.add_argument("--nleep-max-iter", type=int, default=100,
                        help="EM iterations of NLEEP's mixture, in both implementations")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()

    from reference_metrics import REFERENCES

    x, y = make_features(args.n, args.d, args.c, args.seed)
    print(f"N={args.n} D={args.d} C={args.c} float32, repeats={args.repeats} "
          f"(reference {args.reference_repeats})\n")

    ped_time = None
    if "ped" not in args.skip:
        from ped.dynamics import potential_energy_descent

        ped_time, ped_mem, _ = measure(lambda: potential_energy_descent(x, y), args.repeats)

    print("| metric | ped (s) | reference (s) | reference / ped | max |difference| | "
          "ped peak memory (MiB) | value | PED time / metric time |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    rows = []
    for name, fn in METRICS.items():
        if name in args.skip:
            continue
        reference, options = REFERENCES[name]
        kw, ref_kw = dict(options), {}
        if name == "nleep":
            kw["max_iter"] = ref_kw["max_iter"] = args.nleep_max_iter
        t, mem, value = measure(lambda fn=fn, kw=kw: fn(x, y, **kw), args.repeats)
        ref_times = []
        for _ in range(max(1, args.reference_repeats)):
            t0 = time.perf_counter()
            ref_value = reference(x, y, **ref_kw)
            ref_times.append(time.perf_counter() - t0)
        t_ref = statistics.median(ref_times)
        rows.append({"metric": name, "options": kw, "ped_s": t, "reference_s": t_ref,
                     "ratio": t_ref / t, "ped_peak_mib": mem, "value": value,
                     "reference_value": ref_value, "difference": abs(value - ref_value),
                     "ped_over_metric": ped_time / t if ped_time is not None else None})
        r = rows[-1]  # each row as it lands: a long run still shows what it measured
        share = f"{r['ped_over_metric']:.1%}" if r["ped_over_metric"] is not None else "n/a"
        print(f"| {r['metric']} | {r['ped_s']:.2f} | {r['reference_s']:.2f} | {r['ratio']:.1f}x | "
              f"{r['difference']:.1e} | {r['ped_peak_mib']:.0f} | {r['value']:.4g} | {share} |",
              flush=True)
    if ped_time is not None:
        print(f"\nPED (potential_energy_descent): {ped_time:.2f} s, peak {ped_mem:.0f} MiB")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"shape": {"N": args.n, "D": args.d, "C": args.c},
                       "nleep_max_iter": args.nleep_max_iter, "ped_s": ped_time,
                       "metrics": rows}, fh, indent=2, default=str)


if __name__ == "__main__":
    main()
