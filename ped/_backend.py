"""Optional torch backend: the O(N·D) passes over the samples run where the tensor lives.

PED touches the N samples only twice: once to compute per-class statistics, once to translate
every class at the end.  Between the two it works on C x D class centres, which are small and are
handled in float64 numpy.  For a ``torch.Tensor`` input (on the CPU or a CUDA device) the two
sample passes here run in torch on the tensor's device, so a GPU-resident feature matrix never
leaves the GPU; the results agree with the numpy path to float64 rounding.

torch is imported lazily: ``import ped`` never requires it.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ped._validation import check_matrix_rules

__all__ = ["is_torch", "check_torch_features", "torch_mean_std", "torch_translate", "to_numpy",
           "resolve_device"]


def is_torch(x: Any) -> bool:
    """True for a ``torch.Tensor`` (without importing torch when it is not loaded yet)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def check_torch_features(x: Any, *, name: str = "features") -> Any:
    """The tensor counterpart of :func:`ped._validation.check_features` (any floating dtype,
    ``bfloat16`` included; a tensor that requires grad is read through ``detach``)."""
    xd = x.detach()
    check_matrix_rules(
        name, "tensor", floating=x.is_floating_point() and not x.is_complex(), dtype=x.dtype,
        cast=".double()", shape=tuple(x.shape),
        # min and max propagate NaN and reach +-inf: the common case costs two reductions
        extremes=lambda: (float(xd.min()), float(xd.max())),
        n_not_finite=lambda: int((~xd.isfinite()).sum()),
    )  # fmt: skip
    return x


def to_numpy(x: Any) -> Any:
    """A tensor copied to a numpy array (detached from autograd, on the CPU; ``bfloat16`` and
    ``float16``, which numpy lacks or computes poorly, as float32); anything else is returned
    unchanged."""
    if not is_torch(x):
        return x
    import torch

    x = x.detach()
    if x.dtype in (torch.bfloat16, torch.float16):
        x = x.to(torch.float32)
    return x.cpu().numpy()


def torch_mean_std(x: Any) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per-dimension mean and population std (``ddof=0``) in float64, as numpy vectors."""
    xd = x.detach().double()
    mean = xd.mean(dim=0)
    std = (xd - mean).square().mean(dim=0).sqrt()
    return mean.cpu().numpy(), std.cpu().numpy()


def torch_translate(x: Any, shift: NDArray[np.float64], labels: NDArray[np.intp]) -> Any:
    """``x + shift[labels]`` in x's dtype and on x's device (a new tensor)."""
    import torch

    s = torch.as_tensor(shift, device=x.device).to(x.dtype)
    y = torch.as_tensor(labels, device=x.device, dtype=torch.long)
    return x.detach() + s[y]


def resolve_device(device: Any = "auto") -> Any:
    """A ``torch.device``: ``"auto"``, CUDA when available, else CPU; otherwise
    ``torch.device(device)`` (a string or a device).

    Asking for CUDA on a machine without it is a ``ValueError``.
    """
    import torch

    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available (use --device cpu)")
    return dev
