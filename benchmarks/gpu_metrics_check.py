"""LogME, SFDA and GBC on a CUDA tensor against the numpy path, at the CIFAR-100 shape.

    python benchmarks/gpu_metrics_check.py [--repeats 5] [--cpu-repeats 3] [--scale 1.0]
                                           [--metrics logme sfda gbc] [--json out.json]

Features are synthetic float32 Gaussian classes (seeded), from ``bench_metrics.make_features``:
noise with a decaying spectrum in a random rotation and class means in the 64 highest-variance
directions, so the scores are away from their ceilings (default shape N=60000, D=2048, C=100;
``--scale`` shrinks N for smoke tests).  For each metric, with its default options, the script
times the call on a float32 CUDA tensor (synchronised, median over ``--repeats`` after one warm-up)
and on the same data as a float32 numpy array on the CPU (median over ``--cpu-repeats``), in the
same run, and reports the speed-up and the relative difference of the two scores.  Both paths
compute in float64 from the same float32 values, so the difference measures the torch backend
against the numpy reference (target: 1e-5 relative, or an absolute difference below 1e-12 for a
score at its ceiling, e.g. SFDA's log-probability ~ 0 on separable small-N data).  On a CPU-only
machine the torch path runs on CPU tensors.  Exits 1 when a metric misses the target.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE.parent))
sys.path.insert(0, str(_HERE))

from bench_metrics import make_features  # noqa: E402

from ped.metrics import gbc, logme, sfda  # noqa: E402

SHAPE = (60000, 2048, 100)  # CIFAR-100: 50k train + 10k test images, ResNet-50 features
METRICS: dict[str, Callable[..., float]] = {"logme": logme, "sfda": sfda, "gbc": gbc}
TARGET = 1e-5
ABS_FLOOR = 1e-12


def timed(fn: Callable[[], float], repeats: int, sync: Callable[[], None],
          warm_up: bool) -> tuple[float, float]:
    """Median wall time of ``fn()`` over ``repeats`` calls (after an optional warm-up) and its
    last value."""
    if warm_up:
        fn()
        sync()
    times, value = [], float("nan")
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metrics", nargs="+", default=list(METRICS), choices=list(METRICS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cpu-repeats", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="scale N down for smoke tests")
    parser.add_argument("--dim", type=int, default=SHAPE[1], help="feature dimension D")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    n, _, n_classes = SHAPE
    dim = args.dim
    n = max(2 * n_classes, int(n * args.scale))
    t0 = time.perf_counter()
    x, y = make_features(n, dim, n_classes, args.seed)
    data_s = time.perf_counter() - t0
    tx, ty = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)

    rows = []
    for name in args.metrics:
        fn = METRICS[name]
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t_dev, v_dev = timed(lambda: fn(tx, ty), args.repeats, sync, warm_up=True)
        peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
        t_cpu, v_cpu = timed(lambda: fn(x, y), args.cpu_repeats, lambda: None, warm_up=False)
        gap = abs(v_dev - v_cpu)
        diff = gap / max(abs(v_cpu), 1e-300)
        rows.append({"metric": name, "N": n, "D": dim, "C": n_classes, "device": device,
                     "device_median_s": t_dev, "cpu_numpy_median_s": t_cpu,
                     "speedup": t_cpu / t_dev, "device_peak_gib": peak,
                     "score_device": v_dev, "score_numpy": v_cpu, "rel_diff": diff,
                     "abs_diff": gap, "within_target": diff <= TARGET or gap <= ABS_FLOOR})
    machine = {"device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
               "cpu": f"{platform.machine()}, {os.cpu_count()} logical cores",
               "torch": torch.__version__, "numpy": np.__version__}
    print(f"LogME / SFDA / GBC, float32 features N={n} D={dim} C={n_classes} "
          f"(data generated in {data_s:.1f} s), {machine}")
    print("| metric | device | device (s) | numpy CPU (s) | speed-up | peak GPU (GiB) | score "
          "| rel diff | abs diff |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['metric']} | {r['device']} | {r['device_median_s']:.3f} | "
              f"{r['cpu_numpy_median_s']:.3f} | {r['speedup']:.1f}x | {r['device_peak_gib']:.2f} "
              f"| {r['score_numpy']:.6g} | {r['rel_diff']:.1e} | {r['abs_diff']:.1e} |")
    bad = [r["metric"] for r in rows if not r["within_target"]]
    if bad:
        print(f"NOT within {TARGET:g} relative: {', '.join(bad)}")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
