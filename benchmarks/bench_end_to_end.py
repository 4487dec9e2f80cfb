"""The paper's whole table at one dataset's size: ``ped score`` against the reference
implementations on the same features folder, in one run.

A synthetic folder of ``--models`` models at the Flowers shape (8189 images x 2048 dimensions,
102 classes; ``ped.bench.synthetic_task``, one model's features plus more noise for each further
model, the same labels for all) is written to a temporary folder.  Then, each side in its own
process (so that its peak resident memory can be read):

- **ped**: :func:`ped.fullscale.scoring.score_features` with every metric of
  ``benchmarks/reference_metrics.py`` (each with the options under which it computes the
  reference's score), with and without PED (one PED run per file, shared by the metrics);
- **reference**: for every file, every reference metric on the features, then PED in the style
  of the released code (``benchmarks/bench_dynamics.py``'s ``dense_descent``) and every
  reference metric again.

Reports each side's wall time, their ratio (reference / ped), each side's peak resident memory
and the largest score difference.  Close other work first; at the full size the reference side
takes about an hour on 2 cores.

    python benchmarks/bench_end_to_end.py --models 12 --json out.json
    python benchmarks/bench_end_to_end.py --models 3 --n 2000 --c 40   # a quick look
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_dynamics import dense_descent  # noqa: E402
from reference_metrics import REFERENCES  # noqa: E402

from ped.bench import synthetic_task  # noqa: E402


def write_folder(folder: Path, models: int, n: int, d: int, c: int) -> None:
    base, labels = synthetic_task(n, d, c, seed=0)
    rng = np.random.default_rng(1)
    scale = float(base.std())
    for i in range(models):
        x = (base + rng.normal(0, 0.05 * i * scale, base.shape)).astype(np.float32)
        np.save(folder / f"model{i:02d}_flowers_feature.npy", x)
        np.save(folder / f"model{i:02d}_flowers_label.npy", labels)


def run_ped(folder: str, queue: multiprocessing.Queue) -> None:
    from ped.fullscale.scoring import score_features
    from ped.metrics import METRICS

    metrics = {m: functools.partial(METRICS[m], **opts) for m, (_, opts) in REFERENCES.items()}
    start = time.perf_counter()
    table = score_features(folder, metrics, ped=True)
    seconds = time.perf_counter() - start
    scores = {f"{r.model}|{r.metric}|{r.ped}": r.score for r in table.itertuples()}
    queue.put({"seconds": seconds, "scores": scores,
               "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})  # fmt: skip


def run_reference(folder: str, queue: multiprocessing.Queue) -> None:
    start = time.perf_counter()
    scores = {}
    for path in sorted(Path(folder).glob("*_feature.npy")):
        model = path.name.split("_")[0]
        x = np.load(path)
        y = np.load(path.with_name(path.name.replace("_feature", "_label")))
        moved = dense_descent(x, y)
        for ped, feats in ((False, x), (True, moved)):
            for name, (fn, _) in REFERENCES.items():
                scores[f"{model}|{name}|{ped}"] = float(fn(feats, y))
    queue.put({"seconds": time.perf_counter() - start, "scores": scores,
               "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})  # fmt: skip


def in_process(target, folder: Path) -> dict:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(str(folder), queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=12)
    parser.add_argument("--n", type=int, default=8189)
    parser.add_argument("--d", type=int, default=2048)
    parser.add_argument("--c", type=int, default=102)
    parser.add_argument("--json", default=None, help="also write the measurements here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_folder(folder, args.models, args.n, args.d, args.c)
        ours = in_process(run_ped, folder)
        ref = in_process(run_reference, folder)
    diffs = [abs(ours["scores"][k] - v) for k, v in ref["scores"].items()
             if np.isfinite(v) and np.isfinite(ours["scores"].get(k, np.nan))]  # fmt: skip
    per_metric = {}
    for key, v in ref["scores"].items():
        mine = ours["scores"].get(key, np.nan)
        if np.isfinite(v) and np.isfinite(mine):
            name = key.split("|")[1]
            per_metric[name] = max(per_metric.get(name, 0.0), abs(mine - v))
    result = {"shape": [args.n, args.d, args.c], "models": args.models,
              "metrics": list(REFERENCES), "ped_s": ours["seconds"],
              "reference_s": ref["seconds"], "ratio": ref["seconds"] / ours["seconds"],
              "ped_peak_mib": ours["peak_mib"], "reference_peak_mib": ref["peak_mib"],
              "max_abs_difference": max(diffs) if diffs else float("nan"),
              "scores_compared": len(diffs),
              "max_abs_difference_per_metric": per_metric,
              "date": time.strftime("%Y-%m-%d"), "cpu_count": os.cpu_count(),
              "load_average_end": os.getloadavg()[0]}  # fmt: skip
    print(f"{args.models} models at {args.n} x {args.d}, {args.c} classes, {len(REFERENCES)} "
          f"metrics with and without PED: ped {result['ped_s']:.1f} s, reference "
          f"{result['reference_s']:.1f} s, ratio {result['ratio']:.1f}x; peak memory "
          f"{result['ped_peak_mib']:.0f} MiB against {result['reference_peak_mib']:.0f} MiB; "
          f"largest score difference {result['max_abs_difference']:.2e} over "
          f"{result['scores_compared']} scores")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
