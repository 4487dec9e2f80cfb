"""Self-supervised methods for the zoo, built from ``lightly``'s losses and heads.

Each method is a :class:`SSLMethod` (a ``torch.nn.Module``) holding the encoder, its heads and
loss, with the entry points used by :func:`ped.bench.zoo.train.pretrain`:

- ``views``: the method's augmented views as :class:`~ped.bench.zoo.augment.ViewSpec` s, after the
  recipe of lightly's transform of the same name at 32 px (no Gaussian blur, crop scales from
  0.2, the zoo's :data:`~ped.bench.zoo.encoder.NORMALIZE`); :meth:`SSLMethod.make_views` draws them
  for a whole batch with tensor operations (:mod:`ped.bench.zoo.augment`);
- ``loss(views, progress)``: the training loss of one batch of views (``progress`` in [0, 1] is the
  fraction of training done, used by momentum schedules);
- ``after_step(progress)``: momentum updates of target networks.

Heads are sized for the 128-d encoder (hidden 512).  Head outputs are cast to float32 before
the loss, so bf16 autocast only covers the networks.  Registered methods (:data:`METHODS`):
simclr, moco_v2, byol, simsiam, fastsiam, swav, barlow_twins, vicreg, dino, nnclr, dcl.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch
from lightly import loss as L
from lightly.models import modules as M
from lightly.models.utils import deactivate_requires_grad, update_momentum
from torch import nn

from ped.bench.zoo.augment import ViewSpec, make_views
from ped.bench.zoo.encoder import ARCH, FEATURE_DIM, build_encoder

__all__ = ["METHODS", "MULTI_CROP", "SSLMethod", "build_method"]

HIDDEN = 512
#: Methods whose transform produces crops of two sizes (costlier per image).
MULTI_CROP = frozenset({"swav", "dino"})


#: lightly's SimCLR transform: colour jitter 0.8/0.8/0.8/0.2 with probability 0.8, grey 0.2.
SIMCLR_VIEW = ViewSpec()
#: MoCo v2's and SimSiam's: the SimCLR jitter at half strength (0.4/0.4/0.4/0.1).
MOCO_VIEW = SIMCLR_VIEW.scaled(0.5)
#: BYOL's (also Barlow Twins', DINO's global and VICReg's): jitter 0.4/0.4/0.2/0.1.
BYOL_VIEW = ViewSpec(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)


def _view(base: ViewSpec, hp: Mapping[str, Any], **changes: Any) -> ViewSpec:
    """``base`` with the entry's ``min_scale`` and ``cj_strength`` options and ``changes``."""
    view = replace(base, **changes)
    if "min_scale" in hp:
        view = replace(view, scale=(float(hp["min_scale"]), view.scale[1]))
    if "cj_strength" in hp:
        view = view.scaled(float(hp["cj_strength"]))
    return view


def _momentum(progress: float, start: float) -> float:
    """Cosine increase of the EMA momentum from ``start`` to 1 over training."""
    return 1.0 - (1.0 - start) * (math.cos(math.pi * min(max(progress, 0.0), 1.0)) + 1) / 2


def _f32(x: torch.Tensor) -> torch.Tensor:
    return x.float()


class SSLMethod(nn.Module):
    """Base class: ``encoder`` plus method-specific heads (see the module docstring)."""

    name = "base"

    def __init__(self, hp: Mapping[str, Any], arch: Mapping[str, Any] = ARCH) -> None:
        super().__init__()
        self.hp = dict(hp)
        self.encoder = build_encoder(**arch)
        self.views: tuple[ViewSpec, ...] = (_view(SIMCLR_VIEW, hp),) * 2

    def make_views(self, images: torch.Tensor, generator: torch.Generator) -> list[torch.Tensor]:
        """The method's views of a float batch ``(N, 3, H, W)`` in [0, 1]."""
        return make_views(images, self.views, generator)

    def loss(self, views: list[torch.Tensor], progress: float) -> torch.Tensor:
        """Default for symmetric two-view methods (SimCLR, DCL, Barlow Twins, VICReg): both
        views through the encoder and ``self.head``, then the criterion on the pair."""
        z = [_f32(self.head(self.encoder(v))) for v in views[:2]]
        return self._criterion(z[0], z[1])

    def _criterion(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """The loss in float32, outside any autocast region."""
        device = next(self.encoder.parameters()).device.type
        with torch.autocast(device, enabled=False):
            return self.criterion(*args, **kwargs)

    def before_optimizer_step(self, epoch: int) -> None:
        """Adjust gradients before the optimiser step (no-op by default)."""

    def after_step(self, progress: float) -> None:
        """Update target networks (no-op for methods without one)."""


class SimCLR(SSLMethod):
    name = "simclr"

    def __init__(self, hp: Mapping[str, Any], arch: Mapping[str, Any] = ARCH) -> None:
        super().__init__(hp, arch)
        self.head = M.SimCLRProjectionHead(FEATURE_DIM, HIDDEN, 128)
        self.criterion = L.NTXentLoss(temperature=hp.get("temperature", 0.5))


class DCL(SimCLR):
    name = "dcl"

    def __init__(self, hp: Mapping[str, Any], arch: Mapping[str, Any] = ARCH) -> None:
        super().__init__(hp, arch)
        self.criterion = L.DCLLoss(temperature=hp.get("temperature", 0.1))


class MoCoV2(SSLMethod):
    name = "moco_v2"

    def __init__(self, hp: Mapping[str, Any], arch: Mapping[str, Any] = ARCH) -> None:
        super().__init__(hp, arch)
        self.views = (_view(MOCO_VIEW, hp),) * 2
        self.head = M.MoCoProjectionHead(FEATURE_DIM, HIDDEN, 128)
        self.encoder_m = copy.deepcopy(self.encoder)
        self.head_m = copy.deepcopy(self.head)
        deactivate_requires_grad(self.encoder_m)
        deactivate_requires_grad(self.head_m)
        self.criterion = L.NTXentLoss(
            temperature=hp.get("temperature", 0.2), memory_bank_size=(hp.get("queue", 4096), 128)
        )

    def loss(self, views: list[torch.Tensor], progress: float) -> torch.Tensor:
        q = _f32(self.head(self.encoder(views[0])))
        with torch.no_grad():
            k = _f32(self.head_m(self.encoder_m(views[1])))
        return self._criterion(q, k)

    def after_step(self, progress: float) -> None:
        m = _momentum(progress, self.hp.get("momentum", 0.99))
        update_momentum(self.encoder, self.encoder_m, m)
        update_momentum(self.head, self.head_m, m)


class BYOL(SSLMethod):
    name = "byol"

    def __init__(self, hp: Mapping[str, Any], arch: Mapping[str, Any] = ARCH) -> None:
        super().__init__(hp, arch)
        self.views = (_view(BYOL_VIEW, hp), _view(BYOL_VIEW, hp, solarize=0.2))
        self.projection = M.BYOLProjectionHead(FEATURE_DIM, HIDDEN, 128)
        self.prediction = M.BYOLPredictionHead(128, HIDDEN, 128)
        self.encoder_m = copy.deepcopy(self.encoder)
        self.projection_m = copy.deepcopy(self.projection)
        deactivate_requires_grad(self.encoder_m)
        deactivate_requires_grad(self.projection_m)
        self.criterion = L.NegativeCosineSimilarity()

    def loss(self, views: list[torch.Tensor], progress: float) -> torch.Tensor:
        p = [_f32(self.prediction(self.projection(self.encoder(v)))) for v in views[:2]]
        with torch.no_grad():
            z = [_f32(self.projection_m(self.encoder_m(v))) for v in views[:2]]
        return 0.5 * (self._criterion(p[0], z[1]) + self._criterion(p[1], z[0]))

    def after_step(self, progress: float) -> None:
        m = _momentum(progress, self.hp.get("momentum", 0.99))
        update_momentum(self.encoder, self.encoder_m, m)
        update_momentum(self.projection, self.projection_m, m)


class SimSiam(SSLMethod):
    name = "simsiam"
    n_views = 2

    def __init__(self, hp: Mapping[str, Any], arch: Mapping[str, Any] = ARCH) -> None:
        super().__init__(hp, arch)
        self.views = (_view(MOCO_VIEW, hp),) * 2
        self.projection = M.SimSiamProjectionHead(FEATURE_DIM, HIDDEN, 128)
        self.prediction = M.SimSiamPredictionHead(128, 64, 128)
        self.criterion = L.NegativeCosineSimilarity()

    def loss(self, views: list[torch.Tensor], progress: float) -> torch.Tensor:
        z = [self.projection(self.encoder(v)) for v in views]
        p = [_f32(self.prediction(zi)) for zi in z]
        zd = [_f32(zi).detach() for zi in z]
        pairs = [(i, j) for i in range(len(z)) for j in range(len(z)) if i != j]
        terms = [self._criterion(p[i], zd[j]) for i, j in pairs]
        return torch.stack(terms).mean()


class FastSiam(SimSiam):
    """SimSiam with several views; each view's prediction targets the mean of the others."""

    name = "fastsiam"

    def __init__(self, hp: Mapping[str, Any], arch: Mapping[str, Any] = ARCH) -> None:
        super().__init__(hp, arch)
        self.views = (_view(MOCO_VIEW, hp),) * int(hp.get("views", 4))

    def loss(self, views: list[torch.Tensor], progress: float) -> torch.Tensor:
        z = [self.projection(self.encoder(v)) for v in views]
        p = [_f32(self.prediction(zi)) for zi in z]
        zd = torch.stack([_f32(zi).detach() for zi in z])
        total = zd.sum(0)
        terms = [self._criterion(p[i], (total - zd[i]) / (len(z) - 1)) for i in range(len(z))]
        return torch.stack(terms).mean()


class BarlowTwins(SSLMethod):
    name = "barlow_twins"

    def __init__(self, hp: Mapping[str, Any], arch: Mapping[str, Any] = ARCH) -> None:
        super().__init__(hp, arch)
        self.views = (_view(BYOL_VIEW, hp), _view(BYOL_VIEW, hp, solarize=0.2))
        self.head = M.BarlowTwinsProjectionHead(FEATURE_DIM, HIDDEN, hp.get("proj_dim", 512))
        self.criterion = L.BarlowTwinsLoss(lambda_param=hp.get("lambda", 0.005))


class VICReg(SSLMethod):
    name = "vicreg"

    def __init__(self, hp: Mapping[str, Any], arch: Mapping[str, Any] = ARCH) -> None:
        super().__init__(hp, arch)
        self.views = (_view(BYOL_VIEW, hp, solarize=0.1),) * 2
        self.head = M.BarlowTwinsProjectionHead(FEATURE_DIM, HIDDEN, hp.get("proj_dim", 512))
        self.criterion = L.VICRegLoss()


class NNCLR(SSLMethod):
    name = "nnclr"

    def __init__(self, hp: Mapping[str, Any], arch: Mapping[str, Any] = ARCH) -> None:
        super().__init__(hp, arch)
        self.projection = M.NNCLRProjectionHead(FEATURE_DIM, HIDDEN, 128)
        self.prediction = M.NNCLRPredictionHead(128, HIDDEN, 128)
        self.memory = M.NNMemoryBankModule(size=(hp.get("queue", 4096), 128))
        self.criterion = L.NTXentLoss(temperature=hp.get("temperature", 0.5))

    def loss(self, views: list[torch.Tensor], progress: float) -> torch.Tensor:
        z = [_f32(self.projection(self.encoder(v))) for v in views[:2]]
        p = [_f32(self.prediction(zi)) for zi in z]
        nn0 = self.memory(z[0].detach(), update=False)
        nn1 = self.memory(z[1].detach(), update=True)
        return 0.5 * (self._criterion(nn0, p[1]) + self._criterion(nn1, p[0]))


class SwaV(SSLMethod):
    name = "swav"

    def __init__(self, hp: Mapping[str, Any], arch: Mapping[str, Any] = ARCH) -> None:
        super().__init__(hp, arch)
        jitter = SIMCLR_VIEW.scaled(0.8)  # lightly's SwaV transform: strength 0.8
        self.views = (_view(jitter, hp, scale=(0.14, 1.0)),) * 2 + (
            _view(jitter, hp, size=16, scale=(0.05, 0.14)),) * int(hp.get("local_views", 4))
        self.projection = M.SwaVProjectionHead(FEATURE_DIM, HIDDEN, 128)
        self.prototypes = M.SwaVPrototypes(128, n_prototypes=hp.get("prototypes", 100))
        self.criterion = L.SwaVLoss(temperature=hp.get("temperature", 0.1))

    def loss(self, views: list[torch.Tensor], progress: float) -> torch.Tensor:
        self.prototypes.normalize()
        out = []
        for v in views:
            z = nn.functional.normalize(self.projection(self.encoder(v)), dim=1)
            out.append(_f32(self.prototypes(z)))
        return self._criterion(out[:2], out[2:]).reshape(())  # lightly returns shape (1,)


class DINO(SSLMethod):
    name = "dino"

    def __init__(self, hp: Mapping[str, Any], arch: Mapping[str, Any] = ARCH) -> None:
        super().__init__(hp, arch)
        self.views = (
            _view(BYOL_VIEW, hp, scale=(0.4, 1.0)),
            _view(BYOL_VIEW, hp, scale=(0.4, 1.0), solarize=0.2),
        ) + (_view(BYOL_VIEW, hp, size=16, scale=(0.05, 0.4)),) * int(hp.get("local_views", 4))
        out_dim = hp.get("out_dim", 2048)
        kw = {"input_dim": FEATURE_DIM, "hidden_dim": HIDDEN, "bottleneck_dim": 64,
              "output_dim": out_dim}  # fmt: skip
        self.head = M.DINOProjectionHead(freeze_last_layer=1, **kw)
        # weight_norm in the head defeats deepcopy: build the teacher head anew, copy weights
        self.teacher_head = M.DINOProjectionHead(**kw)
        self.teacher_head.load_state_dict(self.head.state_dict())
        self.teacher_encoder = copy.deepcopy(self.encoder)
        deactivate_requires_grad(self.teacher_encoder)
        deactivate_requires_grad(self.teacher_head)
        self.criterion = L.DINOLoss(
            output_dim=out_dim, warmup_teacher_temp_epochs=0, teacher_temp=0.04
        )

    def loss(self, views: list[torch.Tensor], progress: float) -> torch.Tensor:
        with torch.no_grad():
            t = [_f32(self.teacher_head(self.teacher_encoder(v))) for v in views[:2]]
        s = [_f32(self.head(self.encoder(v))) for v in views]
        return self._criterion(t, s)

    def before_optimizer_step(self, epoch: int) -> None:
        self.head.cancel_last_layer_gradients(current_epoch=epoch)

    def after_step(self, progress: float) -> None:
        m = _momentum(progress, self.hp.get("momentum", 0.996))
        update_momentum(self.encoder, self.teacher_encoder, m)
        update_momentum(self.head, self.teacher_head, m)


#: Method name -> class.
METHODS: dict[str, type[SSLMethod]] = {
    cls.name: cls
    for cls in (SimCLR, MoCoV2, BYOL, SimSiam, FastSiam, SwaV, BarlowTwins, VICReg, DINO,
                NNCLR, DCL)
}  # fmt: skip


def build_method(
    name: str, hp: Mapping[str, Any] | None = None, arch: Mapping[str, Any] = ARCH
) -> SSLMethod:
    """A fresh :class:`SSLMethod` with an encoder of architecture ``arch`` (keywords of
    :func:`~ped.bench.zoo.encoder.build_encoder`); call ``torch.manual_seed`` first for
    reproducibility."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(METHODS)}")
    return METHODS[name](hp or {}, arch)
