"""The pretraining pool of the embedded benchmark (:class:`PoolSpec`, :func:`load_pool`).

Unlabelled RGB images (grey ones repeated over three channels): 8,000 Fashion-MNIST and 8,000 MNIST
images drawn from the *training* splits (the tasks use the test splits) plus every clip-art image of
the symbol-like folders (computer, shapes, signs_and_symbols, special, unsorted, buttons, logos,
decorations, containers, electronics, science, education) that ``clipart_symbols3`` does not use.
The object folders of ``clipart_objects8`` and sklearn's digits never enter the pool, which gives
two downstream domains absent from pretraining (three with the font glyphs of the rebuilt benchmark,
Latin and Greek).  Disjointness is also enforced by content: any pool image whose bytes (as 32x32
RGB) equal those of an image of any downstream task of :data:`~ped.bench.tasks.TASKS` or
``REBUILT_TASKS`` (all splits) is dropped, as are duplicates inside the pool (no glyph image equals
a pool image: adding ``glyphs62`` and ``greek24`` left the pool's fingerprint unchanged,
``3f061f048bc606cb``).  With the default spec the pool holds 19,945 images (3,945 of them clip art):
17,945 for pretraining and a seeded held-out slice of 2,000 kept out of pretraining for the
per-encoder feature statistics (the analogue of the paper's ImageNet-val statistics).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ped.bench.sources import (
    CLIPART_POOL_CATEGORIES,
    image_hashes,
    load_clipart,
    load_fashion_mnist,
    load_mnist,
    to_rgb,
)
from ped.bench.tasks import REBUILT_TASKS, TASKS, TaskSpec, load_task, task_spec

__all__ = ["PoolSpec", "Pool", "DEFAULT_POOL", "load_pool"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PoolSpec:
    """Composition of the pretraining pool (see the module docstring)."""

    n_fashion: int = 8000
    n_mnist: int = 8000
    clipart_categories: tuple[str, ...] = CLIPART_POOL_CATEGORIES
    n_heldout: int = 2000
    seed: int = 0


@dataclass(frozen=True)
class Pool:
    """The unlabelled pool: ``train`` (pretraining) and ``heldout`` (feature statistics), RGB."""

    spec: PoolSpec
    train: NDArray[np.uint8]
    heldout: NDArray[np.uint8]
    train_origin: NDArray[np.str_]
    heldout_origin: NDArray[np.str_]
    n_dropped: int = 0
    notes: dict[str, Any] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """sha256 (first 16 hex digits) of the pool's bytes: identifies the data a model saw."""
        h = hashlib.sha256()
        h.update(self.train.tobytes())
        h.update(self.heldout.tobytes())
        return h.hexdigest()[:16]


DEFAULT_POOL = PoolSpec()


def _sample(n_total: int, n: int, seed: int, what: str) -> NDArray[np.intp]:
    if n > n_total:
        raise ValueError(f"pool asks for {n} {what} images, only {n_total} available")
    return np.sort(np.random.default_rng(seed).permutation(n_total)[:n])


def load_pool(
    spec: PoolSpec = DEFAULT_POOL,
    *,
    cache: str | os.PathLike[str] | None = None,
    tasks: Iterable[str | TaskSpec] | None = None,
) -> Pool:
    """Build the pretraining pool of ``spec`` (see the module docstring), disjoint from ``tasks``.

    ``tasks`` defaults to every task of :data:`~ped.bench.tasks.TASKS` and ``REBUILT_TASKS``;
    each pool image equal (as RGB bytes) to an image of any of their splits is dropped, and so are
    duplicates inside the pool.
    """
    if spec.n_heldout < 1:
        raise ValueError(f"n_heldout must be >= 1, got {spec.n_heldout}")
    clipart = load_clipart(cache=cache) if spec.clipart_categories else None
    default = [*TASKS.values(), *REBUILT_TASKS.values()]
    task_list = [task_spec(t) if isinstance(t, str) else t for t in (tasks or default)]
    loaded = [load_task(t, cache=cache, clipart=clipart) for t in task_list]
    forbidden: set[str] = set()
    for task in loaded:
        for s in ("train", "val", "test"):
            forbidden.update(image_hashes(task.split(s)[0]))

    parts: list[NDArray[np.uint8]] = []
    origins: list[NDArray[np.str_]] = []
    if spec.n_fashion:
        fm = load_fashion_mnist("train", cache=cache)
        idx = _sample(len(fm), spec.n_fashion, spec.seed, "Fashion-MNIST")
        parts.append(to_rgb(fm.images[idx]))
        origins.append(np.asarray([f"fashion_mnist:train:{i}" for i in idx]))
    if spec.n_mnist:
        mn = load_mnist("train", cache=cache)
        idx = _sample(len(mn), spec.n_mnist, spec.seed + 1, "MNIST")
        parts.append(to_rgb(mn.images[idx]))
        origins.append(np.asarray([f"mnist:train:{i}" for i in idx]))
    if clipart is not None:
        data, paths = clipart
        unknown = set(spec.clipart_categories) - set(data.classes)
        if unknown:
            raise ValueError(f"unknown clip-art categories in the pool spec: {sorted(unknown)}")
        src = [data.classes.index(c) for c in spec.clipart_categories]
        keep = np.flatnonzero(np.isin(data.labels, src))
        parts.append(data.images[keep])
        origins.append(np.asarray([f"clipart:{p}" for p in paths[keep]]))
    if not parts:
        raise ValueError("the pool spec selects no images")
    images = np.concatenate(parts)
    origin = np.concatenate(origins)
    seen: set[str] = set()
    keep_mask = np.zeros(len(images), dtype=bool)
    for i, h in enumerate(image_hashes(images)):
        if h not in forbidden and h not in seen:
            keep_mask[i] = True
        seen.add(h)
    n_dropped = int((~keep_mask).sum())
    images, origin = images[keep_mask], origin[keep_mask]
    if spec.n_heldout >= len(images):
        raise ValueError(f"n_heldout={spec.n_heldout} leaves no pretraining images")
    perm = np.random.default_rng([spec.seed, 7]).permutation(len(images))
    held, train = np.sort(perm[: spec.n_heldout]), np.sort(perm[spec.n_heldout :])
    logger.info(
        "pool: %d pretraining + %d held-out images (%d dropped as duplicates of task or pool "
        "images)", len(train), len(held), n_dropped,
    )  # fmt: skip
    return Pool(spec, images[train], images[held], origin[train], origin[held], n_dropped)
