"""Throughput of ResNet-50 feature extraction (the ``ped extract`` path) on CUDA and on CPU.

    python benchmarks/gpu_extraction_check.py [--device auto|cuda|cpu] [--n-images 4096]
        [--cpu-images 64] [--batch-size 128] [--image-size 224] [--workers 8] [--json out.json]

Builds a random-weight torchvision ResNet-50 (``fc`` = identity; nothing is downloaded) and
measures images per second in two ways, each on the chosen device and, for the ratio, on the CPU
over a smaller number of images (``--cpu-images``; 0 skips the CPU runs):

``tensor``
    the network alone: uint8 images already in memory (generated with a fixed seed) are copied
    to the device, normalised there and pushed through the network (float32, eval mode,
    ``torch.inference_mode``), which is the GPU's share of the work;
``pipeline``
    the whole extraction path of :func:`ped.fullscale.extraction.extract_features`: ``FakeData`` PIL
    images through the paper's transform (Resize bicubic, CenterCrop, normalise) in a
    ``DataLoader`` with ``--workers`` processes, then the network.  On a GPU machine this is
    bounded by the CPU-side decoding/resizing.

One warm-up batch precedes every timed run; CUDA runs are synchronised before the clock stops.
The table printed at the end gives images/s per device and mode and the device/CPU ratio.  It
also checks that the CUDA and CPU features of the same images agree (max relative difference;
TF32 is disabled so the check is meaningful).  Runs on a CPU-only machine too (slowly: use a
small ``--n-images``).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ped.fullscale.extraction import (  # noqa: E402
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_backbone,
    build_dataset,
    extract_features,
    paper_transform,
    resolve_device,
)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def tensor_throughput(
    model: torch.nn.Module, images: torch.Tensor, device: torch.device, batch_size: int
) -> tuple[float, torch.Tensor]:
    """Images/s of copy + normalise + forward over uint8 ``images`` (N, 3, H, W); features."""
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1) * 255
    model = model.to(device).eval()
    if device.type == "cuda":
        images = images.pin_memory()
    outs = []
    with torch.inference_mode():
        warm = images[:batch_size].to(device).float()
        model((warm - mean) / std)
        _sync(device)
        start = time.perf_counter()
        for s in range(0, images.shape[0], batch_size):
            x = images[s : s + batch_size].to(device, non_blocking=True).float()
            outs.append(model((x - mean) / std))
        _sync(device)
        elapsed = time.perf_counter() - start
    return images.shape[0] / elapsed, torch.cat(outs).float().cpu()


def pipeline_throughput(
    model: torch.nn.Module, n: int, device: torch.device, batch_size: int, image_size: int,
    workers: int,
) -> float:  # fmt: skip
    """Images/s of :func:`ped.fullscale.extraction.extract_features` over ``n`` FakeData images."""
    dataset = build_dataset("fake", transform=paper_transform(image_size))
    extract_features(model, dataset, batch_size=batch_size, device=device, limit=batch_size)
    _sync(device)
    start = time.perf_counter()
    extract_features(
        model, dataset, batch_size=batch_size, device=device, num_workers=workers, limit=n
    )
    _sync(device)
    return n / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cuda, cpu")
    parser.add_argument("--n-images", type=int, default=4096, help="images on the device")
    parser.add_argument("--cpu-images", type=int, default=64, help="images on the CPU (0: skip)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--workers", type=int, default=8, help="DataLoader workers (pipeline)")
    parser.add_argument("--skip-pipeline", action="store_true", help="tensor mode only")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    model = build_backbone()
    # FakeData's images are 64 px; generate the in-memory ones at the target size directly.
    gen = torch.Generator().manual_seed(0)
    n_total = max(args.n_images, args.cpu_images)
    size = args.image_size
    images = torch.randint(0, 256, (n_total, 3, size, size), dtype=torch.uint8, generator=gen)

    cpu_name = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, python {platform.python_version()}, {cpu_name}, "
          f"{torch.get_num_threads()} CPU threads")  # fmt: skip
    if device.type == "cuda":
        print(f"device: {torch.cuda.get_device_name(device)}")
    rows = []
    runs = [(device, args.n_images)]
    if device.type != "cpu" and args.cpu_images > 0:
        runs.append((torch.device("cpu"), args.cpu_images))
    feats = {}
    for dev, n in runs:
        rate, out = tensor_throughput(model, images[:n], dev, args.batch_size)
        feats[dev.type] = out
        rows.append({"device": dev.type, "mode": "tensor", "images": n, "images_per_s": rate})
        print(f"  {dev.type:5s} tensor   {n:6d} images: {rate:9.1f} images/s", flush=True)
        if not args.skip_pipeline:
            prate = pipeline_throughput(model, n, dev, args.batch_size, size, args.workers)
            rows.append({"device": dev.type, "mode": "pipeline", "images": n,
                         "images_per_s": prate})  # fmt: skip
            print(f"  {dev.type:5s} pipeline {n:6d} images: {prate:9.1f} images/s", flush=True)

    print()
    print(f"{'device':8s}{'mode':10s}{'images':>8s}{'images/s':>12s}{'vs cpu':>9s}")
    cpu = {r["mode"]: r["images_per_s"] for r in rows if r["device"] == "cpu"}
    for r in rows:
        ratio = r["images_per_s"] / cpu[r["mode"]] if r["mode"] in cpu else float("nan")
        print(f"{r['device']:8s}{r['mode']:10s}{r['images']:8d}{r['images_per_s']:12.1f}"
              f"{ratio:9.1f}")  # fmt: skip
    check = None
    if "cuda" in feats and "cpu" in feats:
        m = feats["cpu"].shape[0]
        a, b = feats["cuda"][:m].double(), feats["cpu"].double()
        check = float(((a - b).abs().max() / b.abs().max()).item())
        print(f"\nCUDA vs CPU features, same {m} images: max |diff| / max |cpu| = {check:.2e}")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"rows": rows, "batch_size": args.batch_size, "image_size": size,
             "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else
             platform.processor(), "cuda_cpu_max_rel_diff": check}, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
