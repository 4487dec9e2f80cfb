"""Tests of ped.mechanism: energy, centred class shifts, their alignment."""

from __future__ import annotations

import numpy as np
import pytest

from ped import mechanism as M
from ped.dynamics import elastic_potential


def _data(seed: int = 0, n_classes: int = 4, per: int = 30, dim: int = 6):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), per)
    centres = rng.normal(0, 0.6, (n_classes, dim))
    return centres[y] + rng.normal(0, 1, (n_classes * per, dim)), y


def test_energy_matches_the_formula_and_ignores_scale() -> None:
    x, y = _data()
    z = (x - x.mean(0)) / x.std(0)
    c = np.stack([z[y == k].mean(0) for k in range(4)])
    r = 0.6 * np.sqrt(np.stack([z[y == k].var(0) for k in range(4)]).sum(1))
    by_hand = sum(0.5 * max(0.0, r[i] + r[j] - np.linalg.norm(c[i] - c[j])) ** 2
                  for i in range(4) for j in range(i + 1, 4))  # fmt: skip
    assert M.energy(x, y) == pytest.approx(by_hand)
    assert M.energy(x, y) == pytest.approx(elastic_potential(c, r))
    assert M.energy(3.0 * x + 7.0, y) == pytest.approx(M.energy(x, y))


def test_centred_shifts_and_alignment() -> None:
    x, y = _data(1)
    move = np.random.default_rng(2).normal(0, 1, (4, 6))
    common = np.full(6, 5.0)
    after = x + (move[y] + common) * x.std(0)  # class moves plus a common translation
    shifts = M.centred_shifts(x, after, y)
    np.testing.assert_allclose(shifts, move - move.mean(0), atol=1e-10)
    cos = M.shift_alignment(shifts, 2.0 * shifts)
    np.testing.assert_allclose(cos, 1.0)
    np.testing.assert_allclose(M.shift_alignment(shifts, -shifts), -1.0)
    still = M.shift_alignment(shifts, np.zeros_like(shifts))
    assert np.isnan(still).all()
    with pytest.raises(ValueError, match="one shape"):
        M.centred_shifts(x, after[:, :3], y)
    with pytest.raises(ValueError, match="one shape"):
        M.shift_alignment(shifts, shifts[:2])


def test_mechanism_summary_recognises_a_ped_like_fine_tuning() -> None:
    """Features 'fine-tuned' by PED itself (with larger balls, so that more of it happens) point
    the way PED does and lower the energy; random class moves of the same size do not align."""
    from ped import potential_energy_descent

    x, y = _data(3, n_classes=5, dim=8)
    zt = potential_energy_descent(x, y, reference=None, nsigma=0.9, max_steps=6,
                                  exit_ratio=0).features  # fmt: skip
    s = M.mechanism_summary(x, zt, y)
    assert s["energy_finetuned"] < s["energy_before"] and s["energy_ped"] < s["energy_before"]
    assert s["cosine"] > 0.9 and s["cosines"].shape == (5,)
    rng = np.random.default_rng(4)
    rand = x + rng.normal(0, 0.5, (5, 8))[y]
    r = M.mechanism_summary(x, rand, y)
    assert abs(r["cosine"]) < 0.7 and r["chance"] == pytest.approx(1 / np.sqrt(8))
