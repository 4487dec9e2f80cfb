"""Benchmark NLEEP (full covariance, K = 5 x C components) against the straightforward
implementation of its released algorithm, in the same run, at the Flowers shape and smaller ones.

The reference (``benchmarks/reference_metrics.py``) is the released code: scikit-learn's PCA
keeping 80 % of the variance, ``GaussianMixture(5 x C, covariance_type="full")`` and LEEP of its
``predict_proba``, without the log.  ``ped.metrics.nleep`` (``log=False``) fits the same mixture
itself: the same k-means start and EM iterations, skipping only the responsibilities that are 0.0
in float64 (see its docstring), so the two scores must agree to rounding.  Both run with the same
``--max-iter`` (3 in ``data/measurements/metrics_cpu.json``; at the Flowers shape EM converges in
2 iterations, so 3 and sklearn's default 100 do the same work).

Synthetic float32 features (``ped.bench.synthetic_task``, seeded, as ``bench_metrics.py``).  Per
shape it prints the median wall time of ``--repeats`` runs of ped's NLEEP and of
``--reference-repeats`` runs of the reference, their ratio (reference / ped: above 1 means ped is
faster), the largest score difference and ped's peak traced memory (tracemalloc, one extra
untimed run).  ``--with-sklearn-mixture`` also times ped's PCA followed by scikit-learn's
mixture (NLEEP as ped computed it before it fitted the mixture itself), to separate the two
gains.  The load average is printed before and after: close other work first, or report it.

    python benchmarks/bench_nleep.py --shapes 8189x2048x102 2000x2048x40 --max-iter 3 \\
        --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import tracemalloc
import warnings

import numpy as np

from ped.bench import synthetic_task
from ped.metrics import nleep


def _timed(fn, repeats: int) -> tuple[float, float]:
    times, value = [], float("nan")
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), value


def _peak_mib(fn) -> float:
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def _ped_with_sklearn_mixture(x, y, max_iter: int) -> float:
    """ped's PCA, then scikit-learn's mixture and ``predict_proba`` (the previous ``nleep``)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    from ped.metrics._common import leep_from_posteriors, pca_scores

    c = int(y.max()) + 1
    z = pca_scores(np.asarray(x, dtype=np.float64), variance=0.8)
    gmm = GaussianMixture(5 * c, covariance_type="full", random_state=0, max_iter=max_iter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gmm.fit(z)
    return leep_from_posteriors(gmm.predict_proba(z), y, c, log=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["8189x2048x102", "2000x2048x40"],
                        help="N x D x C of each synthetic task")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reference-repeats", type=int, default=1)
    parser.add_argument("--max-iter", type=int, default=3,
                        help="EM iterations of the mixture, in both implementations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--with-sklearn-mixture", action="store_true",
                        help="also time ped's PCA + scikit-learn's GaussianMixture")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()

    from reference_metrics import nleep as reference_nleep

    load_before = os.getloadavg()
    print(f"cpus={os.cpu_count()} load average {load_before[0]:.2f} {load_before[1]:.2f} "
          f"{load_before[2]:.2f}; max_iter={args.max_iter}, repeats={args.repeats} "
          f"(reference {args.reference_repeats}), log=False, covariance_type='full'\n")
    print("| N x D x C | K | ped (s) | reference (s) | reference / ped | max |difference| | "
          "ped peak memory (MiB) | ped PCA + sklearn mixture (s) | value |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    rows = []
    for shape in args.shapes:
        n, d, c = (int(v) for v in shape.lower().split("x"))
        x, y = synthetic_task(n, d, c, seed=args.seed)

        def ped_fn(x=x, y=y):
            return nleep(x, y, log=False, covariance_type="full", max_iter=args.max_iter)

        t_ped, value = _timed(ped_fn, args.repeats)
        mem = _peak_mib(ped_fn)
        t_ref, ref_value = _timed(lambda x=x, y=y: reference_nleep(x, y, max_iter=args.max_iter),
                                  args.reference_repeats)
        t_old = old_value = None
        if args.with_sklearn_mixture:
            t_old, old_value = _timed(lambda x=x, y=y: _ped_with_sklearn_mixture(
                x, y, args.max_iter), 1)
        rows.append({"shape": {"N": n, "D": d, "C": c}, "n_components": 5 * c,
                     "ped_s": t_ped, "reference_s": t_ref, "ratio": t_ref / t_ped,
                     "difference": abs(value - ref_value), "ped_peak_mib": mem,
                     "value": value, "reference_value": ref_value,
                     "ped_sklearn_mixture_s": t_old, "ped_sklearn_mixture_value": old_value,
                     "load_average": os.getloadavg()})
        r = rows[-1]
        old = f"{t_old:.2f}" if t_old is not None else "n/a"
        print(f"| {n} x {d} x {c} | {5 * c} | {t_ped:.2f} | {t_ref:.2f} | {r['ratio']:.1f}x | "
              f"{r['difference']:.1e} | {mem:.0f} | {old} | {value:.6g} |", flush=True)
    load_after = os.getloadavg()
    print(f"\nload average after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"max_iter": args.max_iter, "repeats": args.repeats,
                       "reference_repeats": args.reference_repeats, "cpus": os.cpu_count(),
                       "load_average_before": load_before, "load_average_after": load_after,
                       "results": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
