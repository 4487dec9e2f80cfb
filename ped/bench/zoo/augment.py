r"""Batched data augmentation for self-supervised pretraining, as tensor operations.

The pretraining views of a whole batch are produced at once on the training device, instead of
one PIL image at a time (lightly's transforms): about 5 ms per batch of 256 views on the
project's 2-core machine against about 0.25 s, and no data-loader processes.  A
:class:`ViewSpec` describes one view in the vocabulary of lightly's (and torchvision's)
transforms; :func:`make_views` draws every random parameter for the batch from one generator
and applies, per image:

1. **random resized crop and horizontal flip** as one affine resampling
   (``affine_grid`` + bilinear ``grid_sample``): a crop of area fraction
   :math:`s \sim U(s_{min}, s_{max})` and aspect ratio :math:`r` with
   :math:`\log r \sim U(\log\tfrac34, \log\tfrac43)` has side fractions
   :math:`w = \min(1, \sqrt{s r})`, :math:`h = \min(1, \sqrt{s / r})` and a centre drawn uniformly
   where it fits; a flip negates the horizontal scale; the output is ``size`` x ``size``;
2. **colour jitter** with probability ``jitter``: brightness :math:`x \leftarrow b x`,
   contrast :math:`x \leftarrow c (x - \bar{y}) + \bar{y}` (:math:`\bar{y}` the mean luminance),
   saturation :math:`x \leftarrow s (x - y) + y` (:math:`y` the pixel's luminance), each factor
   uniform in :math:`[1 - \text{strength}, 1 + \text{strength}]`, and a hue rotation by
   :math:`2 \pi h`, :math:`h \sim U(-\text{hue}, \text{hue})`, in the YIQ plane; clamped to
   [0, 1] after each;
3. **grey scale** (luminance on three channels) with probability ``grayscale``;
4. **solarisation** (:math:`x \leftarrow 1 - x` where :math:`x \ge 0.5`) with probability
   ``solarize``;
5. normalisation with the zoo's :data:`~ped.bench.zoo.encoder.NORMALIZE`.

Gaussian blur is left out, as lightly's transforms are configured for 32-px images
(``gaussian_blur=0``).  Luminance weights are ITU-R 601 (0.299, 0.587, 0.114), as torchvision's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ped.bench.zoo.encoder import NORMALIZE

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["ViewSpec", "make_views", "to_unit_float"]

_LUMA = (0.299, 0.587, 0.114)
# RGB -> YIQ and back (rows: Y, I, Q); a hue rotation turns (I, Q) by an angle.
_RGB_TO_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))


@dataclass(frozen=True)
class ViewSpec:
    """One augmented view (defaults: lightly's SimCLR transform at 32 px, crop scale 0.2-1).

    ``brightness``, ``contrast`` and ``saturation`` are jitter strengths (factors drawn in
    ``[1 - strength, 1 + strength]``), ``hue`` the largest hue rotation in turns; ``flip``,
    ``jitter``, ``grayscale`` and ``solarize`` are probabilities.
    """

    size: int = 32
    scale: tuple[float, float] = (0.2, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: float = 0.5
    jitter: float = 0.8
    brightness: float = 0.8
    contrast: float = 0.8
    saturation: float = 0.8
    hue: float = 0.2
    grayscale: float = 0.2
    solarize: float = 0.0

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"size must be >= 1, got {self.size}")
        lo, hi = self.scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {self.scale}")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < min <= max, got {self.ratio}")
        for name in ("flip", "jitter", "grayscale", "solarize"):
            p = getattr(self, name)
            if not 0 <= p <= 1:
                raise ValueError(f"{name} is a probability, got {p}")
        for name in ("brightness", "contrast", "saturation"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} strength must be in [0, 1], got {getattr(self, name)}")
        if not 0 <= self.hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {self.hue}")

    def scaled(self, strength: float) -> ViewSpec:
        """The same view with its colour-jitter strengths multiplied by ``strength``."""
        return ViewSpec(**{**asdict(self), "brightness": self.brightness * strength,
                           "contrast": self.contrast * strength,
                           "saturation": self.saturation * strength,
                           "hue": self.hue * strength})  # fmt: skip


def to_unit_float(images: Any, device: Any = None) -> torch.Tensor:
    """uint8 images ``(N, H, W, 1|3)`` (numpy or tensor) -> float ``(N, 3, H, W)`` in [0, 1]."""
    import torch

    x = torch.as_tensor(images, device=device)
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ValueError(f"images must be uint8 (N, H, W, 1 or 3), got {x.dtype} {tuple(x.shape)}")
    x = x.permute(0, 3, 1, 2).float().div_(255.0)
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator, device: Any) -> torch.Tensor:
    import torch

    return torch.rand(n, generator=gen, device=device) * (hi - lo) + lo


def _luma(x: torch.Tensor) -> torch.Tensor:
    w = x.new_tensor(_LUMA).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def _crop_flip(x: torch.Tensor, spec: ViewSpec, gen: torch.Generator) -> torch.Tensor:
    import torch
    import torch.nn.functional as F

    n, dev = x.shape[0], x.device
    area = _uniform(n, spec.scale[0], spec.scale[1], gen, dev)
    log_r = _uniform(n, math.log(spec.ratio[0]), math.log(spec.ratio[1]), gen, dev)
    ratio = torch.exp(log_r)
    w = torch.sqrt(area * ratio).clamp(max=1.0)
    h = torch.sqrt(area / ratio).clamp(max=1.0)
    cx = (torch.rand(n, generator=gen, device=dev) * 2 - 1) * (1 - w)
    cy = (torch.rand(n, generator=gen, device=dev) * 2 - 1) * (1 - h)
    flip = torch.rand(n, generator=gen, device=dev) < spec.flip
    sx = torch.where(flip, -w, w)
    zeros = torch.zeros_like(w)
    theta = torch.stack([torch.stack([sx, zeros, cx], 1), torch.stack([zeros, h, cy], 1)], 1)
    grid = F.affine_grid(theta, [n, 3, spec.size, spec.size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _colour(x: torch.Tensor, spec: ViewSpec, gen: torch.Generator) -> torch.Tensor:
    import torch

    n, dev = x.shape[0], x.device

    def factor(strength: float) -> torch.Tensor:
        return _uniform(n, 1 - strength, 1 + strength, gen, dev).view(n, 1, 1, 1)

    jittered = x
    if spec.brightness > 0:
        jittered = (jittered * factor(spec.brightness)).clamp(0, 1)
    if spec.contrast > 0:
        mean = _luma(jittered).mean(dim=(2, 3), keepdim=True)
        jittered = ((jittered - mean) * factor(spec.contrast) + mean).clamp(0, 1)
    if spec.saturation > 0:
        grey = _luma(jittered)
        jittered = ((jittered - grey) * factor(spec.saturation) + grey).clamp(0, 1)
    if spec.hue > 0:
        angle = _uniform(n, -spec.hue, spec.hue, gen, dev) * (2 * math.pi)
        to_yiq = x.new_tensor(_RGB_TO_YIQ)
        cos, sin = torch.cos(angle), torch.sin(angle)
        one, zero = torch.ones_like(cos), torch.zeros_like(cos)
        rot = torch.stack([torch.stack([one, zero, zero], 1), torch.stack([zero, cos, -sin], 1),
                           torch.stack([zero, sin, cos], 1)], 1)  # fmt: skip
        # per image: RGB -> YIQ, rotate (I, Q), back to RGB
        m = torch.linalg.inv(to_yiq) @ rot @ to_yiq
        jittered = torch.einsum("nij,njhw->nihw", m, jittered).clamp(0, 1)
    apply = (torch.rand(n, generator=gen, device=dev) < spec.jitter).view(n, 1, 1, 1)
    return torch.where(apply, jittered, x)


def make_views(
    images: torch.Tensor, specs: Sequence[ViewSpec], generator: torch.Generator
) -> list[torch.Tensor]:
    """Augmented, normalised views ``(N, 3, size, size)`` of a batch, one per spec.

    ``images`` is a float batch ``(N, 3, H, W)`` in [0, 1] (see :func:`to_unit_float`) on the
    device of ``generator``; it is not modified.  Every random draw comes from ``generator``,
    so a seeded generator gives the same views.
    """
    import torch

    if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
        raise ValueError(f"images must be a float (N, 3, H, W) batch, got {images.dtype} "
                         f"{tuple(images.shape)}")  # fmt: skip
    mean = images.new_tensor(NORMALIZE["mean"]).view(1, 3, 1, 1)
    std = images.new_tensor(NORMALIZE["std"]).view(1, 3, 1, 1)
    n, dev = images.shape[0], images.device
    views = []
    for spec in specs:
        x = _crop_flip(images, spec, generator)
        if spec.jitter > 0:
            x = _colour(x, spec, generator)
        if spec.grayscale > 0:
            grey = (torch.rand(n, generator=generator, device=dev) < spec.grayscale).view(n, 1, 1, 1)
            x = torch.where(grey, _luma(x).expand(-1, 3, -1, -1), x)
        if spec.solarize > 0:
            sol = (torch.rand(n, generator=generator, device=dev) < spec.solarize).view(n, 1, 1, 1)
            x = torch.where(sol & (x >= 0.5), 1 - x, x)
        views.append(((x - mean) / std).contiguous())
    return views
