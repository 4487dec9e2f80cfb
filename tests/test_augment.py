"""Tests of ped.bench.zoo.augment: the batched augmentation against per-image reference computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ped.bench.zoo.augment import ViewSpec, make_views, to_unit_float  # noqa: E402
from ped.bench.zoo.encoder import NORMALIZE  # noqa: E402

MEAN = torch.tensor(NORMALIZE["mean"]).view(1, 3, 1, 1)
STD = torch.tensor(NORMALIZE["std"]).view(1, 3, 1, 1)
IDENTITY = ViewSpec(scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=0.0, jitter=0.0, grayscale=0.0)


def _images(n: int = 6, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return to_unit_float(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8))


def _unnormalise(x: torch.Tensor) -> torch.Tensor:
    return x * STD + MEAN


def test_to_unit_float() -> None:
    grey = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4, 1)
    x = to_unit_float(grey)
    assert x.shape == (2, 3, 4, 4) and torch.equal(x[:, 0], x[:, 2])
    assert torch.allclose(x[0, 0], torch.as_tensor(grey[0, :, :, 0] / 255.0, dtype=torch.float32))
    with pytest.raises(ValueError, match="uint8"):
        to_unit_float(grey.astype(np.float32))


def test_identity_view_is_the_normalised_image() -> None:
    x = _images()
    before = x.clone()
    (view,) = make_views(x, [IDENTITY], torch.Generator().manual_seed(0))
    torch.testing.assert_close(_unnormalise(view), x, atol=1e-5, rtol=0)
    assert torch.equal(x, before)  # input not modified


def test_flip_mirrors_the_image() -> None:
    x = _images()
    spec = ViewSpec(**{**IDENTITY.__dict__, "flip": 1.0})
    (view,) = make_views(x, [spec], torch.Generator().manual_seed(0))
    torch.testing.assert_close(_unnormalise(view), x.flip(-1), atol=1e-5, rtol=0)


def test_crop_samples_a_subwindow_at_the_output_size() -> None:
    # an image that is a linear ramp in x: any crop of it is a ramp whose range is the crop width
    ramp = torch.linspace(0, 1, 32).view(1, 1, 1, 32).expand(4, 3, 32, 32).contiguous()
    spec = ViewSpec(size=16, scale=(0.25, 0.25), ratio=(1.0, 1.0), flip=0.0, jitter=0.0,
                    grayscale=0.0)  # fmt: skip
    (view,) = make_views(ramp, [spec], torch.Generator().manual_seed(1))
    v = _unnormalise(view)
    assert v.shape == (4, 3, 16, 16)
    width = v[:, 0, 0, -1] - v[:, 0, 0, 0]  # a half-width crop spans about half the ramp
    assert torch.allclose(width, torch.full_like(width, 0.5 * 15 / 16 * 32 / 31), atol=0.02)


def test_grayscale_and_solarize() -> None:
    x = _images()
    grey_spec = ViewSpec(**{**IDENTITY.__dict__, "grayscale": 1.0})
    (g,) = make_views(x, [grey_spec], torch.Generator().manual_seed(0))
    g = _unnormalise(g)
    luma = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1)
    for c in range(3):
        torch.testing.assert_close(g[:, c], luma, atol=1e-5, rtol=0)
    sol_spec = ViewSpec(**{**IDENTITY.__dict__, "solarize": 1.0})
    (s,) = make_views(x, [sol_spec], torch.Generator().manual_seed(0))
    torch.testing.assert_close(_unnormalise(s), torch.where(x >= 0.5, 1 - x, x), atol=1e-5,
                               rtol=0)  # fmt: skip


def test_brightness_contrast_saturation_hue_reference() -> None:
    """One jittered image against the formulas of the module docstring, step by step."""
    x = _images(1)
    spec = ViewSpec(scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=0.0, jitter=1.0, brightness=0.5,
                    contrast=0.5, saturation=0.5, hue=0.25, grayscale=0.0)  # fmt: skip
    gen = torch.Generator().manual_seed(7)
    (view,) = make_views(x, [spec], gen)
    # replay the generator: crop (area, ratio, cx, cy, flip), then b, c, s, hue, apply
    g = torch.Generator().manual_seed(7)
    for _ in range(5):
        torch.rand(1, generator=g)
    b, c, s = (float(torch.rand(1, generator=g)) * 1.0 + 0.5 for _ in range(3))
    h = float(torch.rand(1, generator=g)) * 0.5 - 0.25
    w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    y = (x * b).clamp(0, 1)
    m = (y * w).sum(1, keepdim=True).mean()
    y = ((y - m) * c + m).clamp(0, 1)
    lum = (y * w).sum(1, keepdim=True)
    y = ((y - lum) * s + lum).clamp(0, 1)
    yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    a = 2 * math.pi * h
    rot = torch.tensor([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    pix = y[0].reshape(3, -1)
    y = (torch.linalg.inv(yiq) @ rot @ yiq @ pix).reshape(1, 3, 32, 32).clamp(0, 1)
    torch.testing.assert_close(_unnormalise(view), y, atol=1e-4, rtol=0)


def test_seeded_views_are_reproducible_and_differ_between_views() -> None:
    x = _images()
    specs = [ViewSpec(), ViewSpec(size=16, scale=(0.05, 0.2))]
    a = make_views(x, specs, torch.Generator().manual_seed(3))
    b = make_views(x, specs, torch.Generator().manual_seed(3))
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert [tuple(v.shape) for v in a] == [(6, 3, 32, 32), (6, 3, 16, 16)]
    c = make_views(x, specs[:1] * 2, torch.Generator().manual_seed(3))
    assert not torch.equal(c[0], c[1])  # two views of one image are two draws
    assert all(torch.isfinite(v).all() for v in a)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"scale": (0.0, 1.0)}, "scale"), ({"scale": (0.6, 0.5)}, "scale"), ({"flip": 1.5}, "flip"),
     ({"ratio": (2.0, 1.0)}, "ratio"), ({"hue": 0.7}, "hue"), ({"brightness": -0.1}, "brightness"),
     ({"size": 0}, "size")],
)  # fmt: skip
def test_view_spec_rejects_bad_values(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ViewSpec(**kwargs)


def test_make_views_rejects_bad_batches() -> None:
    with pytest.raises(ValueError, match="float"):
        make_views(torch.zeros(2, 32, 32, 3, dtype=torch.uint8), [ViewSpec()], torch.Generator())
