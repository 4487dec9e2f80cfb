"""Throughput of the zoo's training, before and after the rebuild, measured in one run.

Pretraining (images per second, one optimiser step = one batch of 256 pool images and their
views), for one method of each family: SimCLR (two views), BYOL (two views and a momentum
encoder), SwAV (multi-crop: two 32-px and four 16-px views).  Three pipelines:

- ``before``: the first zoo's, lightly's per-image PIL transforms through a ``DataLoader`` and
  the stride-1-stem encoder (:data:`ped.bench.zoo.encoder.LEGACY_ARCH`);
- ``batched``: the batched tensor augmentation of :mod:`ped.bench.zoo.augment`, same encoder;
- ``after``: batched augmentation and the stride-2-stem encoder (:data:`ped.bench.zoo.encoder.ARCH`).

Optionally ``--compile`` adds ``after`` under ``torch.compile`` (SimCLR only).  Then
fine-tuning (:func:`ped.bench.zoo.finetune.finetune_run`, images per second of training), with both
encoders; and the machine's parallelism: the ``after`` SimCLR step with all threads in one
process against that many single-threaded processes side by side (aggregate images/s).

``--quality-epochs E`` also pretrains SimCLR for E epochs on the real pool with the ``before``
and the ``after`` pipeline and reports the linear-probe test accuracy (frozen features, logistic
regression, :func:`ped.bench.zoo.finetune.linear_probe_run` at C = 1) on two tasks: the speed-up must
not cost representation quality.

Run on a quiet machine (a busy second process makes every figure 2-4x slower)::

    python benchmarks/bench_training.py --out data/measurements/training_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np
import torch

from ped.bench.zoo.augment import to_unit_float
from ped.bench.zoo.encoder import ARCH, LEGACY_ARCH, NORMALIZE, build_encoder
from ped.bench.zoo.methods import build_method

BATCH = 256


def _lightly_transform(method: str) -> Any:
    """The first zoo's per-image transform of ``method`` (lightly, 32 px, no blur)."""
    from lightly import transforms as T

    kw = {"input_size": 32, "gaussian_blur": 0.0, "normalize": NORMALIZE}
    if method == "simclr":
        return T.SimCLRTransform(**kw)
    if method == "byol":
        return T.BYOLTransform(view_1_transform=T.BYOLView1Transform(**kw),
                               view_2_transform=T.BYOLView2Transform(**kw))  # fmt: skip
    if method == "swav":
        return T.SwaVTransform(crop_sizes=(32, 16), crop_counts=(2, 4), crop_min_scales=(0.14, 0.05),
                               crop_max_scales=(1.0, 0.14), gaussian_blur=0.0, normalize=NORMALIZE)
    raise ValueError(method)


class _PILViews(torch.utils.data.Dataset):
    def __init__(self, images: np.ndarray, transform: Any) -> None:
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> Any:
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i]))


def _batches(pipeline: str, method: Any, images: np.ndarray, seed: int) -> Any:
    """An endless iterator of view lists for ``pipeline`` ('before' or batched)."""
    if pipeline == "before":
        loader = torch.utils.data.DataLoader(
            _PILViews(images, _lightly_transform(method.name)), batch_size=BATCH, shuffle=True,
            drop_last=True, generator=torch.Generator().manual_seed(seed))  # fmt: skip
        while True:
            yield from loader
    pool = torch.as_tensor(images)
    gen = torch.Generator().manual_seed(seed)
    while True:
        perm = torch.randperm(len(pool), generator=gen)
        for start in range(0, len(pool) - BATCH + 1, BATCH):
            yield method.make_views(to_unit_float(pool[perm[start : start + BATCH]]), gen)


def _train(method: Any, batches: Any, steps: int, lr: float = 0.06) -> list[float]:
    """``steps`` SGD steps; seconds per step (data + forward + backward + update)."""
    opt = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=lr,
                          momentum=0.9, weight_decay=5e-4)  # fmt: skip
    method.train()
    times = []
    for step in range(steps):
        start = time.perf_counter()
        views = next(batches)
        loss = method.loss(views, step / steps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        method.before_optimizer_step(0)
        opt.step()
        method.after_step((step + 1) / steps)
        times.append(time.perf_counter() - start)
    return times


def _method(name: str, pipeline: str) -> Any:
    torch.manual_seed(0)
    arch = ARCH if pipeline.startswith("after") else LEGACY_ARCH
    method = build_method(name, {"temperature": 0.5} if name == "simclr" else {}, arch)
    if pipeline == "after_compiled":
        method.encoder = torch.compile(method.encoder)
    return method


def pretraining_rate(name: str, pipeline: str, images: np.ndarray, steps: int) -> float:
    """Median images/s of ``steps`` steps after two warm-up steps."""
    method = _method(name, pipeline)
    times = _train(method, _batches(pipeline, method, images, 0), steps + 2)[2:]
    return BATCH / statistics.median(times)


def finetune_rate(arch: dict[str, Any], n_train: int = 256, steps: int = 60) -> float:
    """Images/s of fine-tuning (backbone trainable, batch 64) on a synthetic 10-class task."""
    from types import SimpleNamespace

    from ped.bench.zoo.finetune import finetune_run

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n_train, 32, 32, 1), dtype=np.uint8)
    y = rng.integers(0, 10, n_train)
    task = SimpleNamespace(x_train=x, y_train=y, classes=tuple(range(10)),
                           split=lambda s: (x[:64], y[:64]))  # fmt: skip
    torch.manual_seed(0)
    encoder = build_encoder(**arch)
    finetune_run(encoder, task, lr=0.03, wd=5e-4, seed=0, epochs=1, min_steps=4)  # warm-up
    start = time.perf_counter()
    finetune_run(encoder, task, lr=0.03, wd=5e-4, seed=0, epochs=1, min_steps=steps)
    return steps * 64 / (time.perf_counter() - start)


def _worker(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    images = np.random.default_rng(args.worker).integers(0, 256, (2048, 32, 32, 3), dtype=np.uint8)
    print(json.dumps({"rate": pretraining_rate("simclr", "after", images, args.steps)}))


def parallel_rate(processes: int, steps: int) -> float:
    """Aggregate images/s of ``processes`` single-threaded SimCLR trainers run side by side."""
    cmd = [sys.executable, __file__, "--steps", str(steps), "--worker"]
    procs = [subprocess.Popen([*cmd, str(i)], stdout=subprocess.PIPE, text=True)
             for i in range(processes)]  # fmt: skip
    return sum(json.loads(p.communicate()[0].strip().splitlines()[-1])["rate"] for p in procs)


def quality(epochs: float) -> dict[str, Any]:
    """Linear-probe accuracy of SimCLR pretrained ``epochs`` epochs with each pipeline."""
    from ped.bench.tasks import load_pool, load_task
    from ped.bench.zoo.finetune import linear_probe_run
    from ped.bench.zoo.train import encode

    pool = load_pool()
    tasks = ("mnist10", "fashion10", "clipart_objects8")
    loaded = {t: load_task(t) for t in tasks}
    out: dict[str, Any] = {"epochs": epochs, "tasks": list(tasks)}
    steps = int(round(epochs * (len(pool.train) // BATCH)))
    for pipeline in ("before", "after"):
        method = _method("simclr", pipeline)
        start = time.perf_counter()
        _train_schedule(method, _batches(pipeline, method, pool.train, 1), steps)
        seconds = time.perf_counter() - start
        accs = {}
        for t, task in loaded.items():
            feats = {}
            for s in ("train", "val", "test"):
                x, y = task.split(s)
                feats[f"x_{s}"], feats[f"y_{s}"] = encode(method.encoder, x, device="cpu"), y
            accs[t] = round(linear_probe_run(feats, c=1.0)[1], 2)
        out[pipeline] = {"seconds": round(seconds, 1), "linear_probe_test": accs}
        print(pipeline, out[pipeline], flush=True)
    return out


def _train_schedule(method: Any, batches: Any, steps: int) -> None:
    """The zoo's schedule: SGD lr 0.06, 5 % warm-up then cosine decay."""
    from ped.bench.zoo.train import _lr_at

    opt = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.06,
                          momentum=0.9, weight_decay=5e-4)  # fmt: skip
    method.train()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, steps, 0.06, 0.05)
        loss = method.loss(next(batches), step / steps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        method.after_step((step + 1) / steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="timed steps per measurement")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--quality-epochs", type=float, default=0.0)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        _worker(args)
        return
    threads = torch.get_num_threads()
    result: dict[str, Any] = {"torch": torch.__version__, "threads": threads,
                              "cpus": os.cpu_count(), "batch": BATCH}  # fmt: skip
    if not args.skip_throughput:
        images = np.random.default_rng(0).integers(0, 256, (2048, 32, 32, 3), dtype=np.uint8)
        pipelines = ["before", "batched", "after"]
        rates: dict[str, dict[str, float]] = {}
        for name in ("simclr", "byol", "swav"):
            rates[name] = {}
            for pipeline in pipelines + (["after_compiled"] if args.compile and name == "simclr"
                                         else []):  # fmt: skip
                rates[name][pipeline] = round(pretraining_rate(name, pipeline, images, args.steps), 1)
            rates[name]["speedup"] = round(rates[name]["after"] / rates[name]["before"], 2)
            print(name, rates[name], flush=True)
        result["pretraining_images_per_s"] = rates
        ft = {"before": round(finetune_rate(LEGACY_ARCH), 1), "after": round(finetune_rate(ARCH), 1)}
        ft["speedup"] = round(ft["after"] / ft["before"], 2)
        result["finetuning_images_per_s"] = ft
        print("fine-tuning", ft, flush=True)
        par = {"one_process_all_threads": rates["simclr"]["after"],
               f"{threads}_processes_one_thread": round(parallel_rate(threads, args.steps), 1)}
        result["parallel_simclr_after_images_per_s"] = par
        print("parallel", par, flush=True)
    if args.quality_epochs > 0:
        result["quality"] = quality(args.quality_epochs)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
