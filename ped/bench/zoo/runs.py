"""One run of the embedded benchmark's ground truth: fine-tuning an encoder, or a linear probe.

:func:`finetune_run` fine-tunes a copy of an encoder with a new linear head and returns its
validation and test accuracy (and, on request, the fine-tuned features); :func:`linear_probe_run`
fits a logistic regression on frozen features.  Both protocols run them as resumable units,
stored atomically with the configuration they depend on (``_run_unit``): the first benchmark's
(:mod:`ped.bench.zoo.finetune`) and the rebuilt one (:mod:`ped.bench.zoo.protocol`).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from ped._backend import resolve_device
from ped._io import write_json_atomic
from ped.bench.zoo.encoder import images_to_tensor
from ped.bench.zoo.train import _autocast, _seed_everything, autocast_dtype

__all__ = ["EPOCHS", "MIN_STEPS", "BATCH_SIZE", "finetune_run", "linear_probe_run"]

logger = logging.getLogger(__name__)

#: Fine-tuning epochs (raised for small tasks, see :data:`MIN_STEPS`).
EPOCHS = 20
#: The fewest optimiser steps of a fine-tuning run.
MIN_STEPS = 100
#: Fine-tuning batch size.
BATCH_SIZE = 64


def _accuracy(logits: Any, labels: Any) -> float:
    return float((logits.argmax(1) == labels).float().mean()) * 100.0


def finetune_run(
    encoder: Any,
    task: Any,
    *,
    lr: float,
    wd: float,
    seed: int,
    epochs: int = EPOCHS,
    min_steps: int = MIN_STEPS,
    steps: int | None = None,
    batch_size: int = BATCH_SIZE,
    per_image_shift: bool = False,
    features_of: Any = None,
    device: str = "auto",
    precision: str = "auto",
) -> tuple[float, float] | tuple[float, float, np.ndarray]:
    """Fine-tune a copy of ``encoder`` (+ linear head) on ``task``; ``(val %, test %)``.

    Runs ``max(epochs, ceil(min_steps / steps_per_epoch))`` epochs, or exactly ``steps``
    optimiser steps when given (the rebuilt protocol, :data:`~ped.bench.zoo.protocol.PROTOCOL`).
    Each batch is translated by up to 2 px: by one shift for the whole batch (the first
    protocol) or, with ``per_image_shift``, by one shift per image.  With ``features_of`` (uint8
    images), the fine-tuned encoder's features of those images (eval mode, float32) are returned
    third: the features :math:`Z_T` that fine-tuning ends with.

    ``encoder`` is not modified.  Seeded: the same arguments give the same result on one machine.
    """
    import torch

    if lr <= 0 or wd < 0 or epochs < 1 or min_steps < 0 or (steps is not None and steps < 1):
        raise ValueError(
            f"need lr > 0, wd >= 0, epochs >= 1, min_steps >= 0, steps >= 1; got {lr}, {wd}, "
            f"{epochs}, {min_steps}, {steps}"
        )
    dev = resolve_device(device)
    amp = autocast_dtype(dev, precision)
    _seed_everything(seed)
    model = copy.deepcopy(encoder).to(dev).train()
    head = torch.nn.Linear(model(torch.zeros(2, 3, 32, 32, device=dev)).shape[1],
                           len(task.classes)).to(dev)  # fmt: skip
    params = list(model.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=wd)
    x_tr = images_to_tensor(task.x_train).to(dev)
    y_tr = torch.as_tensor(task.y_train, device=dev)
    n = len(y_tr)
    steps_per_epoch = max(1, math.ceil(n / batch_size))
    if steps is None:
        epochs = max(epochs, math.ceil(min_steps / steps_per_epoch))
        total = epochs * steps_per_epoch
    else:
        total, epochs = steps, math.ceil(steps / steps_per_epoch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, total)
    gen = torch.Generator().manual_seed(seed)
    done = 0
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen).to(dev)
        for start in range(0, n, batch_size):
            if done == total:
                break
            idx = perm[start : start + batch_size]
            if per_image_shift:
                xb = _shift_each(x_tr[idx], gen)
            else:
                xb = x_tr[idx]
                shifts = torch.randint(-2, 3, (2,), generator=gen).tolist()  # translation <= 2 px
                xb = torch.roll(torch.nn.functional.pad(xb, (2, 2, 2, 2)), shifts, dims=(2, 3))
                xb = xb[:, :, 2:-2, 2:-2]
            with _autocast(dev, amp):
                logits = head(model(xb))
            loss = torch.nn.functional.cross_entropy(logits.float(), y_tr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            done += 1
    model.eval()
    scores = []
    with torch.inference_mode():
        for split in ("val", "test"):
            x, y = task.split(split)
            logits = torch.cat([head(model(images_to_tensor(x[i : i + 512]).to(dev))).float()
                                for i in range(0, len(x), 512)])  # fmt: skip
            scores.append(_accuracy(logits, torch.as_tensor(y, device=dev)))
        if features_of is not None:
            z = torch.cat([model(images_to_tensor(features_of[i : i + 512]).to(dev)).float().cpu()
                           for i in range(0, len(features_of), 512)])  # fmt: skip
            return scores[0], scores[1], z.numpy().astype(np.float32)
    return scores[0], scores[1]


def _shift_each(x: Any, gen: Any, max_shift: int = 2) -> Any:
    """Each image of ``(N, C, H, W)`` translated by its own integer shift of at most
    ``max_shift`` px in each direction, zero-padded (one gather, no Python loop)."""
    import torch

    n, _, h, w = x.shape
    pad = torch.nn.functional.pad(x, (max_shift,) * 4)
    dy, dx = (torch.randint(0, 2 * max_shift + 1, (2, n), generator=gen)).to(x.device)
    rows = (dy.view(n, 1) + torch.arange(h, device=x.device)).view(n, 1, h, 1)
    cols = (dx.view(n, 1) + torch.arange(w, device=x.device)).view(n, 1, 1, w)
    batch = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    chan = torch.arange(x.shape[1], device=x.device).view(1, -1, 1, 1)
    return pad[batch, chan, rows, cols]


def linear_probe_run(features: dict[str, np.ndarray], *, c: float) -> tuple[float, float]:
    """Logistic regression on standardised features (train statistics); ``(val %, test %)``."""
    if c <= 0:
        raise ValueError(f"C must be > 0, got {c}")
    mean = features["x_train"].mean(0)
    std = features["x_train"].std(0) + 1e-6
    z = {s: (features[f"x_{s}"] - mean) / std for s in ("train", "val", "test")}
    clf = LogisticRegression(C=c, max_iter=2000)
    clf.fit(z["train"], features["y_train"])
    val, test = (float((clf.predict(z[s]) == features[f"y_{s}"]).mean() * 100)
                 for s in ("val", "test"))  # fmt: skip
    return val, test


def _run_unit(path: Path, row: dict[str, Any], fn: Any, config: dict[str, Any]) -> dict[str, Any]:
    """Return the stored result of one unit, or run ``fn`` and store it atomically.

    ``config`` (encoder sha256, schedule) is stored with the result; a stored unit whose config
    differs (a retrained encoder, a changed schedule) is stale and is rerun.
    """
    if path.is_file():
        try:
            stored = json.loads(path.read_text())
        except json.JSONDecodeError:
            logger.warning("unreadable %s: rerunning", path)
        else:
            if stored.get("config") == config:
                return stored
            logger.warning("stale %s (config %s != %s): rerunning", path,
                           stored.get("config"), config)  # fmt: skip
    start = time.perf_counter()
    val, test = fn()
    result = {**row, "val": round(val, 4), "test": round(test, 4),
              "seconds": round(time.perf_counter() - start, 2), "config": config}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, result)
    return result
