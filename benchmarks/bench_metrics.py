"""Benchmark every ped.metrics metric at the Flowers shape (N=8189, D=2048, C=102).

Synthetic float32 Gaussian classes (seeded): noise with a decaying spectrum in a random rotation,
so the PCA-based metrics see a realistic number of components, and class means in the 64
highest-variance noise directions at a signal-to-noise ratio of 0.4 per direction, so
that the classes overlap (at the Flowers shape SFDA ≈ -0.14, GBC ≈ -680 of a possible -C(C-1)),
rather than being separable in low-noise directions (scores at their ceilings).
Prints a markdown table: median wall time over ``--repeats`` runs, peak traced memory
(tracemalloc, numpy allocations included; one extra untimed run) and, when
``ped.dynamics.potential_energy_descent`` is importable, PED's time as a fraction of each metric's.

    python benchmarks/bench_metrics.py --repeats 3 --skip nleep
"""

from __future__ import annotations

import argparse
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
    parser.add_argument("--n", type=int, default=8189)
    parser.add_argument("--d", type=int, default=2048)
    parser.add_argument("--c", type=int, default=102)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip", nargs="*", default=[], choices=sorted(METRICS) + ["ped"])
    parser.add_argument(
        "--nleep-covariance", default="diag", choices=["full", "tied", "diag", "spherical"],
        help="GaussianMixture covariance_type for NLEEP (the default 'full' takes many minutes)",
    )
    args = parser.parse_args()

    x, y = make_features(args.n, args.d, args.c, args.seed)
    print(f"N={args.n} D={args.d} C={args.c} float32, repeats={args.repeats}\n")

    ped_time = None
    if "ped" not in args.skip:
        try:
            from ped.dynamics import potential_energy_descent
        except ImportError:
            potential_energy_descent = None
        if potential_energy_descent is not None:
            ped_time, ped_mem, _ = measure(
                lambda: potential_energy_descent(x, y), args.repeats
            )

    options = {"nleep": {"covariance_type": args.nleep_covariance}}
    rows = []
    for name, fn in METRICS.items():
        if name in args.skip:
            continue
        kw = options.get(name, {})
        t, mem, value = measure(lambda fn=fn, kw=kw: fn(x, y, **kw), args.repeats)
        label = name + (f" ({kw})" if kw else "")
        rows.append((label, t, mem, value))

    print("| metric | median time (s) | peak memory (MiB) | value | PED time / metric time |")
    print("|---|---:|---:|---:|---:|")
    for label, t, mem, value in rows:
        ratio = f"{ped_time / t:.1%}" if ped_time is not None else "n/a"
        print(f"| {label} | {t:.2f} | {mem:.0f} | {value:.4g} | {ratio} |")
    if ped_time is not None:
        print(f"| PED (potential_energy_descent) | {ped_time:.2f} | {ped_mem:.0f} | | |")


if __name__ == "__main__":
    main()
