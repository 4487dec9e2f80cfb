"""The zoo specification: which encoders to pretrain, how, and for how long.

Eleven self-supervised methods (lightly losses and heads) plus a weaker-augmentation SimCLR
variant make 12 pretrained encoders; a random-initialisation encoder is a labelled extra
(``kind="random"``: no training, its statistics are still computed).  Every entry records its
encoder architecture (:data:`ped.bench.zoo.encoder.ARCH`, the stride-2 stem of the rebuilt zoo).  All use SGD (momentum 0.9,
weight decay 5e-4), batch 256, a linear warm-up over the first 5 % of steps then cosine decay, and
base learning rate ``lr`` (scaled by batch/256).  ``epochs`` counts passes over the pool's
pretraining images.  VICReg runs at 0.02: it diverges at 0.06 (feasibility notes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ped.bench.zoo.encoder import ARCH

__all__ = ["ZooEntry", "ZOO", "DEFAULT_EPOCHS", "zoo_entry"]

#: Epochs of the full training plan.  The first zoo trained 5 epochs (~83 s per epoch of a
#: two-view method with per-image PIL augmentation and the stride-1 stem).  With batched
#: augmentation and the stride-2 stem (``benchmarks/bench_training.py``, 2-core machine, quiet:
#: SimCLR 1,655 images/s, BYOL 1,298, SwAV 1,100) an epoch of the pool's 17,945 images takes
#: 11-16 s for two-view methods and ~20 s for four-view and multi-crop ones, so the 12
#: pretrained entries cost ~170 s per epoch: 80 epochs ~ 3.8 h, ~3.3 h with two jobs.
DEFAULT_EPOCHS = 80


@dataclass(frozen=True)
class ZooEntry:
    """One encoder of the zoo: a unit of pretraining work."""

    name: str
    method: str
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    epochs: float = DEFAULT_EPOCHS
    seed: int = 0
    kind: str = "ssl"  # "ssl" or "random" (labelled extra)
    arch: dict[str, Any] = field(default_factory=lambda: dict(ARCH))

    def config(self) -> dict[str, Any]:
        """The JSON-able configuration that identifies this unit (compared on resume)."""
        return {
            "name": self.name, "method": self.method, "kind": self.kind,
            "hyperparameters": dict(sorted(self.hyperparameters.items())),
            "epochs": self.epochs, "seed": self.seed, "arch": dict(self.arch),
        }  # fmt: skip


_BASE = {"lr": 0.06, "weight_decay": 5e-4, "batch_size": 256, "warmup": 0.05}


def _e(name: str, method: str, seed: int, **hp: Any) -> ZooEntry:
    return ZooEntry(name, method, {**_BASE, **hp}, DEFAULT_EPOCHS, seed)


#: The zoo, in a fixed order.
ZOO: tuple[ZooEntry, ...] = (
    _e("simclr", "simclr", 1, temperature=0.5),
    _e("moco_v2", "moco_v2", 2, temperature=0.2, momentum=0.99, queue=4096),
    _e("byol", "byol", 3, momentum=0.99),
    _e("simsiam", "simsiam", 4),
    _e("fastsiam", "fastsiam", 5, views=4),
    _e("swav", "swav", 6, prototypes=100, local_views=4, temperature=0.1),
    _e("barlow_twins", "barlow_twins", 7, proj_dim=512, **{"lambda": 0.005}),
    _e("vicreg", "vicreg", 8, lr=0.02, proj_dim=512),
    _e("dino", "dino", 9, out_dim=2048, local_views=4, momentum=0.996),
    _e("nnclr", "nnclr", 10, temperature=0.5, queue=4096),
    _e("dcl", "dcl", 11, temperature=0.1),
    _e("simclr_weakaug", "simclr", 12, temperature=0.5, min_scale=0.5, cj_strength=0.5),
    ZooEntry("random_init", "random", {}, 0, 13, kind="random"),
)


def zoo_entry(name: str) -> ZooEntry:
    """The :data:`ZOO` entry called ``name``."""
    for entry in ZOO:
        if entry.name == name:
            return entry
    raise ValueError(f"unknown zoo entry {name!r}; known: {', '.join(e.name for e in ZOO)}")
