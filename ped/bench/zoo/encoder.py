"""The zoo's encoder: a ResNet-18-style network for 32x32 images, and its input normalisation.

Four stages of two basic residual blocks with widths 16-32-64-128 (strides 1, 2, 2, 2), a 3x3
stem without max-pooling, and adaptive average pooling, so any input size works (the
multi-crop methods feed 16-px local crops).  The output is the 128-d pooled feature: about 0.70 M
parameters, a 2.8 MB float32 checkpoint.

The stem's stride is a parameter of the architecture (:data:`ARCH`): the first zoo used stride 1
(stages at 32, 16, 8 and 4 px); the rebuilt zoo uses stride 2 (16, 8, 4, 2 px), which makes a
training step about 4x cheaper on the CPU (``benchmarks/bench_training.py``).  A checkpoint's
record stores its architecture; :func:`build_encoder` takes it as keywords.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "ARCH",
    "LEGACY_ARCH",
    "WIDTHS",
    "FEATURE_DIM",
    "NORMALIZE",
    "build_encoder",
    "count_parameters",
    "images_to_tensor",
]

#: Channel widths of the four stages.
WIDTHS = (16, 32, 64, 128)
#: Width of the pooled feature.
FEATURE_DIM = WIDTHS[-1]
#: Architecture of the first zoo (checkpoints whose record names no architecture).
LEGACY_ARCH: dict[str, Any] = {"widths": list(WIDTHS), "blocks": [2, 2, 2, 2], "stem_stride": 1}
#: Architecture of the rebuilt zoo: the same network with a stride-2 stem.
ARCH: dict[str, Any] = {**LEGACY_ARCH, "stem_stride": 2}
#: Input normalisation of every zoo encoder: per-channel mean and std of the pretraining pool
#: (:func:`ped.bench.pool.load_pool`, default spec), rounded to three decimals.  Used by the
#: pretraining transforms, by feature extraction and by fine-tuning.
NORMALIZE: dict[str, list[float]] = {"mean": [0.293, 0.291, 0.286], "std": [0.407, 0.405, 0.404]}


def build_encoder(
    widths: Sequence[int] = WIDTHS, blocks: Sequence[int] = (2, 2, 2, 2), stem_stride: int = 1
) -> Any:
    """A fresh (randomly initialised) encoder: ``(N, 3, H, W)`` float -> ``(N, widths[-1])``.

    ``build_encoder(**ARCH)`` is the rebuilt zoo's network, ``build_encoder()`` the first zoo's.
    Initialisation uses torch's global RNG: call ``torch.manual_seed`` first for reproducibility.
    """
    import torch
    from torch import nn

    widths, blocks = tuple(widths), tuple(blocks)
    if len(widths) != len(blocks) or not widths:
        raise ValueError(f"widths {widths} and blocks {blocks} must be non-empty, equal length")
    if stem_stride not in (1, 2):
        raise ValueError(f"stem_stride must be 1 or 2, got {stem_stride}")

    class BasicBlock(nn.Module):
        def __init__(self, c_in: int, c_out: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(c_out)
            self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(c_out)
            self.shortcut: nn.Module = nn.Identity()
            if stride != 1 or c_in != c_out:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
                )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = torch.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return torch.relu(out + self.shortcut(x))

    class SmallResNet(nn.Module):
        """ResNet-18-style encoder for 32x32 inputs (see :mod:`ped.bench.zoo.encoder`)."""

        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(
                nn.Conv2d(3, widths[0], 3, stem_stride, 1, bias=False),
                nn.BatchNorm2d(widths[0]),
                nn.ReLU(inplace=True),
            )
            layers = []
            c_in = widths[0]
            for i, (w, n) in enumerate(zip(widths, blocks, strict=True)):
                stride = 1 if i == 0 else 2
                stage = [BasicBlock(c_in, w, stride)] + [BasicBlock(w, w, 1) for _ in range(n - 1)]
                layers.append(nn.Sequential(*stage))
                c_in = w
            self.layers = nn.Sequential(*layers)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.feature_dim = widths[-1]

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.pool(self.layers(self.stem(x))).flatten(1)

    return SmallResNet()


def count_parameters(model: Any) -> int:
    """Number of trainable parameters of a torch module."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def images_to_tensor(images: NDArray[np.uint8]) -> torch.Tensor:
    """``(N, H, W, 1 or 3)`` uint8 -> normalised ``(N, 3, H, W)`` float32 tensor (a new tensor).

    Grey images are repeated over three channels; the normalisation is :data:`NORMALIZE`.
    """
    import torch

    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[-1] not in (1, 3) or arr.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (N, H, W, 1 or 3), got {arr.dtype} {arr.shape}")
    x = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float().div_(255.0)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    mean = torch.tensor(NORMALIZE["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(NORMALIZE["std"]).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()
