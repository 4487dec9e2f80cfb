"""Resumable pretraining of the zoo, its manifest, feature statistics and feature extraction.

Layout of a zoo folder (default ``data/zoo``; see :func:`default_zoo_dir`)::

    manifest.json          {"version": 1, "encoders": {name: record without the loss curve}}
    <name>.pt              encoder state_dict (float32, ~2.8 MB)
    <name>.json            full record: config, final loss, wall time, loss curve, sha256s, ...
    <name>.stats.npz       mean and std (float64, 128-d) of the features on the pool's held-out
                           slice: the analogue of the paper's ImageNet-val statistics

:func:`pretrain` is one unit of work: it is skipped when the manifest holds the entry with the
same configuration (method, hyperparameters, effective epochs, seed, pool fingerprint) and the
files' sha256 match; otherwise (absent, stale or corrupt) it retrains.  Every file is written
atomically (temporary file + ``os.replace``), the manifest last.

Training uses CUDA when available.  ``precision="auto"`` runs the networks under bf16 autocast on
CUDA and on CPUs with AMX; losses stay in float32.  On the project's 2-core machine (avx512_bf16,
no AMX) bf16 measured no faster than float32, so ``auto`` keeps float32 there; ``"bf16"`` forces
it.  Everything is seeded: the entry's seed sets torch, numpy
and Python's RNGs before the model is built and the data shuffled.

*Why one module of about 600 lines:* pretraining and reading its products share the manifest
and its lock.  Loading an encoder, its statistics or its features verifies the manifest entry
that pretraining wrote, with the same configuration and checksum rules, so the writer and its
readers stay in one place.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import multiprocessing
import os
import random
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from ped._backend import resolve_device
from ped._io import atomic_path, sha256_file, write_json_atomic, write_npz_atomic
from ped._progress import tqdm
from ped.bench.pool import load_pool
from ped.bench.tasks import cache_dir, load_task, task_spec
from ped.bench.zoo.augment import to_unit_float
from ped.bench.zoo.encoder import LEGACY_ARCH, build_encoder, count_parameters, images_to_tensor
from ped.bench.zoo.spec import ZooEntry
from ped.paper import data_dir

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ped.bench.pool import Pool

__all__ = [
    "MANIFEST",
    "default_zoo_dir",
    "autocast_dtype",
    "sha256_file",
    "read_manifest",
    "unit_config",
    "is_done",
    "pretrain",
    "pretrain_many",
    "load_encoder",
    "load_stats",
    "heldout_features",
    "encode",
    "task_features",
]

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
_MANIFEST_VERSION = 1


def default_zoo_dir() -> Path:
    """``<data_dir>/zoo`` (the committed artefacts)."""
    return data_dir() / "zoo"


def _cpu_has_bf16() -> bool:
    """True on CPUs with AMX bf16 tiles: there bf16 autocast pays off.  With avx512_bf16 alone
    (the project's 2-core machine) it measured no faster: BYOL pretraining 1.44 vs 1.43 s/step,
    a 20-epoch fine-tuning 10.1 vs 8.4 s."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # pragma: no cover - not Linux
        return False
    return "amx_bf16" in flags


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype: ``"bf16"`` forces bfloat16, ``"fp32"`` none, ``"auto"`` picks bf16
    on CUDA devices supporting it and on CPUs with AMX (see ``_cpu_has_bf16``)."""
    import torch

    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be 'auto', 'bf16' or 'fp32', got {precision!r}")
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if device.type == "cpu" and _cpu_has_bf16() else None


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    import torch

    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def read_manifest(out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of a zoo folder (an empty one when absent).

    A file that is not valid JSON, or not a version-``_MANIFEST_VERSION`` manifest (a mapping
    with ``version`` and an ``encoders`` mapping), is a ``ValueError`` naming the file.
    """
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        return {"version": _MANIFEST_VERSION, "encoders": {}}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"zoo manifest {path} is not valid JSON ({exc})") from exc
    if (
        not isinstance(manifest, dict)
        or manifest.get("version") != _MANIFEST_VERSION
        or not isinstance(manifest.get("encoders"), dict)
    ):
        raise ValueError(f"{path} is not a version-{_MANIFEST_VERSION} zoo manifest")
    return manifest


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive lock on ``folder`` (``flock`` on its descriptor), so that processes training
    side by side (:func:`pretrain_many`) update the manifest one at a time."""
    import fcntl

    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _write_manifest_entry(out_dir: Path, name: str, entry: dict[str, Any]) -> None:
    with _locked(out_dir):
        manifest = read_manifest(out_dir)
        encoders = dict(manifest["encoders"])
        encoders[name] = entry
        write_json_atomic(out_dir / MANIFEST, {"version": _MANIFEST_VERSION,
                                               "encoders": dict(sorted(encoders.items()))})  # fmt: skip


def unit_config(
    entry: ZooEntry, pool_fingerprint: str, epochs_scale: float = 1.0, max_steps: int | None = None
) -> dict[str, Any]:
    """What identifies a finished unit: the entry's config, effective epochs, the pool."""
    config = entry.config()
    config["epochs"] = entry.epochs * epochs_scale
    config["max_steps"] = max_steps
    config["pool"] = pool_fingerprint
    return config


def _paths(out_dir: Path, name: str) -> tuple[Path, Path, Path]:
    return out_dir / f"{name}.pt", out_dir / f"{name}.json", out_dir / f"{name}.stats.npz"


def is_done(out_dir: str | os.PathLike[str], config: dict[str, Any]) -> bool:
    """True when the manifest holds ``config`` and the files' sha256 match it."""
    out = Path(out_dir)
    try:
        record = read_manifest(out)["encoders"].get(config["name"])
    except (ValueError, json.JSONDecodeError) as exc:
        logger.warning("unreadable manifest in %s (%s): retraining", out, exc)
        return False
    if record is None or record.get("config") != config:
        return False
    ckpt, rec, stats = _paths(out, config["name"])
    for path, key in ((ckpt, "sha256"), (stats, "stats_sha256")):
        if not path.is_file():
            logger.warning("%s missing: retraining %s", path, config["name"])
            return False
        if sha256_file(path) != record.get(key):
            logger.warning("%s does not match its sha256 in the manifest: retraining", path)
            return False
    return rec.is_file()


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _lr_at(step: int, total: int, base: float, warmup: float) -> float:
    n_warm = max(1, int(round(warmup * total)))
    if step < n_warm:
        return base * (step + 1) / n_warm
    t = (step - n_warm) / max(1, total - n_warm)
    return base * 0.5 * (1 + math.cos(math.pi * t))


@contextlib.contextmanager
def _eval(model: Any) -> Iterator[None]:
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


def encode(
    encoder: Any,
    images: NDArray[np.uint8],
    *,
    batch_size: int = 512,
    device: str | torch.device = "auto",
) -> NDArray[np.float32]:
    """Features ``(N, 128)`` float32 of uint8 images ``(N, H, W, 1|3)`` (eval mode, float32)."""
    import torch

    dev = resolve_device(device)
    encoder = encoder.to(dev)
    out = []
    with _eval(encoder), torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = images_to_tensor(images[start : start + batch_size]).to(dev)
            out.append(encoder(x).float().cpu().numpy())
    return np.concatenate(out).astype(np.float32, copy=False)


def pretrain(
    entry: ZooEntry,
    pool: Pool,
    out_dir: str | os.PathLike[str],
    *,
    epochs_scale: float = 1.0,
    max_steps: int | None = None,
    device: str = "auto",
    precision: str = "auto",
    progress: bool = True,
    force: bool = False,
) -> dict[str, Any]:
    """Pretrain one zoo entry on ``pool.train``; write checkpoint, stats, record, manifest entry.

    Parameters
    ----------
    entry : ZooEntry
        What to train (method, hyperparameters, epochs, seed).
    pool : ped.bench.pool.Pool
        Pretraining images (``pool.train``) and the held-out slice for the statistics.
    out_dir : path
        The zoo folder (created).
    epochs_scale : float
        Multiplies ``entry.epochs`` (e.g. 0.01 for a smoke run); at least one step is taken.
    max_steps : int, optional
        Stop after this many optimiser steps (tests and timing).
    device, precision : str
        ``"auto"`` = CUDA when available / bf16 where native (see :func:`autocast_dtype`).
    force : bool
        Retrain even when the unit is done.

    Returns the record (also in ``<name>.json``); ``record["skipped"]`` tells whether it was
    already done.
    """
    import torch

    from ped.bench.zoo.methods import build_method

    if epochs_scale <= 0 or not math.isfinite(epochs_scale):
        raise ValueError(f"epochs_scale must be a finite number > 0, got {epochs_scale}")
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = unit_config(entry, pool.fingerprint(), epochs_scale, max_steps)
    ckpt_path, record_path, stats_path = _paths(out, entry.name)
    if not force and is_done(out, config):
        logger.info("%s: done (sha256 verified), skipped", entry.name)
        record = json.loads(record_path.read_text())
        return {**record, "skipped": True}
    stored = read_manifest(out)["encoders"].get(entry.name)
    if not force and stored is not None and stored.get("arch", LEGACY_ARCH) != entry.arch:
        raise ValueError(
            f"{out} holds {entry.name!r} with another encoder architecture "
            f"({stored.get('arch', LEGACY_ARCH)}); train into another folder or pass force=True"
        )

    dev = resolve_device(device)
    amp = autocast_dtype(dev, precision)
    _seed_everything(entry.seed)
    start = time.perf_counter()
    curve: list[float] = []
    epoch_losses: list[float] = []
    epoch_seconds: list[float] = []
    total_steps = 0
    if entry.kind == "random":
        encoder = build_encoder(**entry.arch)
    elif entry.kind == "ssl":
        hp = entry.hyperparameters
        model = build_method(entry.method, hp, entry.arch).to(dev)
        n = len(pool.train)
        bs = min(int(hp.get("batch_size", 256)), n)
        steps_per_epoch = n // bs
        total_steps = max(1, int(round(config["epochs"] * steps_per_epoch)))
        if max_steps is not None:
            total_steps = min(total_steps, max_steps)
        base_lr = float(hp.get("lr", 0.06)) * bs / 256
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=base_lr, momentum=0.9,
                              weight_decay=float(hp.get("weight_decay", 5e-4)))  # fmt: skip
        # the pool stays uint8 on the device; each batch is augmented there (ped.bench.zoo.augment)
        images = torch.as_tensor(pool.train).to(dev)
        order_gen = torch.Generator().manual_seed(entry.seed)
        view_gen = torch.Generator(device=dev).manual_seed(entry.seed + 1)
        model.train()
        step = 0
        epoch = 0
        bar = tqdm(total=total_steps, desc=entry.name, disable=not progress, unit="step")
        while step < total_steps:
            running: list[float] = []
            epoch_start = time.perf_counter()
            perm = torch.randperm(n, generator=order_gen).to(dev)
            for batch_start in range(0, steps_per_epoch * bs, bs):
                if step >= total_steps:
                    break
                for group in opt.param_groups:
                    group["lr"] = _lr_at(step, total_steps, base_lr, float(hp.get("warmup", 0.05)))
                batch = to_unit_float(images[perm[batch_start : batch_start + bs]])
                views = model.make_views(batch, view_gen)
                with _autocast(dev, amp):
                    loss = model.loss(views, step / total_steps)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"{entry.name}: loss {loss.item()} at step {step}")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                model.before_optimizer_step(epoch)
                opt.step()
                model.after_step((step + 1) / total_steps)
                value = float(loss.detach())
                curve.append(value)
                running.append(value)
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{value:.4f}", epoch=epoch)
            epoch_losses.append(float(np.mean(running)) if running else float("nan"))
            epoch_seconds.append(round(time.perf_counter() - epoch_start, 2))
            epoch += 1
            if epoch % 10 == 0 or step >= total_steps:
                logger.info("%s: epoch %d, step %d/%d, loss %.4f, %.1f s/epoch", entry.name,
                            epoch, step, total_steps, epoch_losses[-1], epoch_seconds[-1])
        bar.close()
        encoder = model.encoder
    else:
        raise ValueError(f"unknown entry kind {entry.kind!r}")
    train_seconds = time.perf_counter() - start

    encoder = encoder.cpu()
    feats = encode(encoder, pool.heldout, device="cpu").astype(np.float64)
    mean, std = feats.mean(axis=0), feats.std(axis=0)

    with atomic_path(ckpt_path) as tmp:
        torch.save({k: v.detach().clone() for k, v in encoder.state_dict().items()}, tmp)
    write_npz_atomic(stats_path, mean=mean, std=std, n=np.int64(len(feats)))
    record: dict[str, Any] = {
        "name": entry.name,
        "method": entry.method,
        "kind": entry.kind,
        "hyperparameters": config["hyperparameters"],
        "arch": dict(entry.arch),
        "epochs": config["epochs"],
        "seed": entry.seed,
        "config": config,
        "steps": total_steps,
        "final_loss": curve[-1] if curve else None,
        "final_epoch_loss": epoch_losses[-1] if epoch_losses else None,
        "wall_time_s": round(train_seconds, 2),
        "device": str(dev),
        "precision": "bf16" if amp is not None else "fp32",
        "n_parameters": count_parameters(encoder),
        "checkpoint": ckpt_path.name,
        "checkpoint_bytes": ckpt_path.stat().st_size,
        "sha256": sha256_file(ckpt_path),
        "stats": stats_path.name,
        "stats_sha256": sha256_file(stats_path),
        "n_heldout": int(len(feats)),
        "versions": _versions(),
        "torch_threads": torch.get_num_threads(),
    }
    extra = {"loss_curve": curve, "epoch_losses": epoch_losses, "epoch_seconds": epoch_seconds}
    write_json_atomic(record_path, {**record, **extra})
    _write_manifest_entry(out, entry.name, record)
    logger.info("%s: %d steps in %.1f s, final loss %s", entry.name, total_steps,
                train_seconds, record["final_loss"])  # fmt: skip
    return {**record, **extra, "skipped": False}


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def pretrain_many(
    entries: Sequence[ZooEntry],
    pool: Pool,
    out_dir: str | os.PathLike[str],
    *,
    jobs: int = 1,
    progress: bool = True,
    **options: Any,
) -> Iterator[dict[str, Any]]:
    """:func:`pretrain` every entry, ``jobs`` of them side by side; yields each unit's record as
    it finishes (finished units are on disk, so an interrupted run resumes where it stopped).

    With ``jobs > 1`` each unit runs in its own process (spawned); on the CPU the threads of
    this process are shared out among them (at least one each), on CUDA they share the device.
    Two single-threaded processes train 1.13x the images per second of one process with two
    threads on the project's 2-core machine (SimCLR: 1,869 against 1,655;
    ``benchmarks/bench_training.py``).  A unit
    that fails does not stop the others; a ``RuntimeError`` naming the failed units is raised at
    the end.
    """
    import torch

    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    if jobs == 1 or len(entries) <= 1:
        for entry in entries:
            yield pretrain(entry, pool, out_dir, progress=progress, **options)
        return

    Path(out_dir).mkdir(parents=True, exist_ok=True)
    threads = max(1, torch.get_num_threads() // jobs)
    failed: list[str] = []
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_worker, initargs=(threads,)) as executor:
        futures = {executor.submit(pretrain, entry, pool, out_dir, progress=False, **options):
                   entry.name for entry in entries}  # fmt: skip
        for future in as_completed(futures):
            try:
                yield future.result()
            except Exception as exc:  # noqa: BLE001 - reported, the other units go on
                logger.error("%s failed: %s", futures[future], exc)
                failed.append(futures[future])
    if failed:
        raise RuntimeError(f"pretraining failed for {', '.join(sorted(failed))}")


def _versions() -> dict[str, str]:
    import lightly
    import torch

    return {"torch": torch.__version__, "lightly": lightly.__version__, "numpy": np.__version__}


def _verified(out_dir: Path, name: str) -> dict[str, Any]:
    manifest = read_manifest(out_dir)
    record = manifest["encoders"].get(name)
    if record is None:
        raise ValueError(f"encoder {name!r} not in {out_dir / MANIFEST}")
    return record


def load_encoder(name: str, out_dir: str | os.PathLike[str] | None = None) -> Any:
    """The trained encoder ``name`` of a zoo folder, in eval mode, after a sha256 check."""
    import torch

    out = Path(out_dir) if out_dir is not None else default_zoo_dir()
    record = _verified(out, name)
    path = out / record["checkpoint"]
    if sha256_file(path) != record["sha256"]:
        raise ValueError(f"{path} does not match its sha256 in the manifest (corrupt or stale)")
    encoder = build_encoder(**record.get("arch", LEGACY_ARCH))
    encoder.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return encoder.eval()


def load_stats(name: str, out_dir: str | os.PathLike[str] | None = None) -> tuple[NDArray, NDArray]:
    """``(mean, std)`` of encoder ``name``'s features on the pool's held-out slice."""
    out = Path(out_dir) if out_dir is not None else default_zoo_dir()
    record = _verified(out, name)
    path = out / record["stats"]
    if sha256_file(path) != record["stats_sha256"]:
        raise ValueError(f"{path} does not match its sha256 in the manifest")
    with np.load(path) as z:
        return z["mean"].copy(), z["std"].copy()


def heldout_features(
    names: Sequence[str] | None = None,
    *,
    zoo_dir: str | os.PathLike[str] | None = None,
    cache: str | os.PathLike[str] | None = None,
    device: str = "auto",
) -> dict[str, NDArray[np.float32]]:
    """Features ``(2000, 128)`` of every zoo encoder (or ``names``) on the pool's held-out slice,
    the images its ``(mean, std)`` statistics were computed on (:func:`load_stats`); cached in
    ``<cache>/features/_heldout/<encoder>-<sha256[:16]>-<pool fingerprint>.npz``.  Their mean and
    std are checked against the stored statistics (a ``ValueError`` when the pool changed)."""
    out = Path(zoo_dir) if zoo_dir is not None else default_zoo_dir()
    manifest = read_manifest(out)["encoders"]
    chosen = list(names) if names is not None else list(manifest)
    unknown = [n for n in chosen if n not in manifest]
    if unknown:
        raise ValueError(f"encoder(s) {unknown} not in {out / MANIFEST}")
    pool = None
    folder = cache_dir(cache) / "features" / "_heldout"
    result = {}
    for name in chosen:
        fingerprint = manifest[name].get("config", {}).get("pool", "pool")
        path = folder / f"{name}-{manifest[name]['sha256'][:16]}-{fingerprint}.npz"
        if path.is_file():
            with np.load(path) as z:
                feats = z["features"].copy()
        else:
            if pool is None:
                pool = load_pool(cache=cache)
            feats = encode(load_encoder(name, out), pool.heldout, device=device)
            folder.mkdir(parents=True, exist_ok=True)
            write_npz_atomic(path, features=feats)
        mean, std = load_stats(name, out)
        f64 = feats.astype(np.float64)
        if not (np.allclose(f64.mean(axis=0), mean, atol=1e-4, rtol=1e-4)
                and np.allclose(f64.std(axis=0), std, atol=1e-4, rtol=1e-4)):
            raise ValueError(f"{name}: its held-out features do not give its stored statistics "
                             "(the pool changed?)")  # fmt: skip
        result[name] = feats
    return result


def task_features(
    task: str,
    *,
    zoo_dir: str | os.PathLike[str] | None = None,
    cache: str | os.PathLike[str] | None = None,
    names: Sequence[str] | None = None,
    device: str = "auto",
) -> dict[str, dict[str, NDArray]]:
    """Features of every zoo encoder (or ``names``) on every split of a downstream task, cached.

    Returns ``{encoder: {"x_train", "y_train", "x_val", "y_val", "x_test", "y_test"}}``; each
    encoder's features are cached in
    ``<cache>/features/<task>/<encoder>-<sha256[:16]>-<task spec hash>.npz`` (a retrained encoder
    or a redefined task gets a new file).
    """
    out = Path(zoo_dir) if zoo_dir is not None else default_zoo_dir()
    manifest = read_manifest(out)["encoders"]
    chosen = list(names) if names is not None else list(manifest)
    if not chosen:
        raise ValueError(f"no trained encoder in {out / MANIFEST}")
    spec_hash = hashlib.sha256(repr(task_spec(task)).encode()).hexdigest()[:8]
    folder = cache_dir(cache) / "features" / task
    folder.mkdir(parents=True, exist_ok=True)
    data = None
    result: dict[str, dict[str, NDArray]] = {}
    for name in chosen:
        if name not in manifest:
            raise ValueError(f"encoder {name!r} not in {out / MANIFEST}")
        path = folder / f"{name}-{manifest[name]['sha256'][:16]}-{spec_hash}.npz"
        if path.is_file():
            with np.load(path) as z:
                result[name] = {k: z[k].copy() for k in z.files}
            continue
        if data is None:
            data = load_task(task, cache=cache)
        encoder = load_encoder(name, out)
        arrays: dict[str, NDArray] = {}
        for split in ("train", "val", "test"):
            x, y = data.split(split)
            arrays[f"x_{split}"] = encode(encoder, x, device=device)
            arrays[f"y_{split}"] = y
        write_npz_atomic(path, **arrays)
        result[name] = arrays
    return result
