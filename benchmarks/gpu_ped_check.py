"""PED on a CUDA tensor against the numpy path, at the shape of CIFAR-100 (and SUN397).

    python benchmarks/gpu_ped_check.py [--repeats 5] [--cpu-repeats 3] [--json out.json]

For each shape, features are synthetic float32 Gaussian classes (seeded).  The script times
``ped.potential_energy_descent`` on a CUDA tensor (synchronised, median over ``--repeats`` after
a warm-up) and on the same data as a numpy array on the CPU, in the same run, and checks that the
two agree (float64 inputs, maximum relative difference of the moved features; the target is
1e-5).  Runs on a CPU-only machine too, with the torch path on CPU tensors.
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

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import ped  # noqa: E402
from bench_dynamics import make_task  # noqa: E402  (the same synthetic classes)

SHAPES = {"cifar100": (60000, 2048, 100), "sun397": (108754, 2048, 397)}


def timed(fn, repeats: int, sync=lambda: None) -> float:
    fn()  # warm-up
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["cifar100"], choices=sorted(SHAPES))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cpu-repeats", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="scale N down for smoke tests")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    rows = []
    for name in args.shapes:
        n, dim, n_classes = SHAPES[name]
        n = max(n_classes * 2, int(n * args.scale))
        x, y = make_task(n, dim, n_classes, class_scale=0.15)  # the scale of the H200 run
        tx, ty = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
        t_dev = timed(lambda: ped.potential_energy_descent(tx, ty), args.repeats, sync)
        t_cpu = timed(lambda: ped.potential_energy_descent(x, y), args.cpu_repeats)
        x64 = x.astype(np.float64)
        ref = ped.potential_energy_descent(x64, y)
        got = ped.potential_energy_descent(torch.from_numpy(x64).to(device), ty)
        gap = float(np.abs(got.features.cpu().numpy() - ref.features).max()
                    / np.abs(ref.features).max())
        rows.append({"shape": name, "N": n, "D": dim, "C": n_classes, "steps": ref.steps,
                     "device": device, "device_median_s": t_dev, "cpu_numpy_median_s": t_cpu,
                     "speedup": t_cpu / t_dev, "max_rel_diff_float64": gap})
    machine = {"device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
               "cpu": f"{platform.machine()}, {os.cpu_count()} logical cores",
               "torch": torch.__version__}
    print(f"PED, {machine}")
    print("| shape | N | D | C | steps | device (s) | numpy CPU (s) | speed-up | max rel diff |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['shape']} | {r['N']} | {r['D']} | {r['C']} | {r['steps']} | "
              f"{r['device_median_s']:.4f} | {r['cpu_numpy_median_s']:.3f} | {r['speedup']:.1f}x "
              f"| {r['max_rel_diff_float64']:.1e} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
