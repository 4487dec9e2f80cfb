"""The straightforward references that benchmarks/bench_metrics.py times ped.metrics against
compute the same scores (so that the benchmark's ratios compare equal work)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from ped.metrics import METRICS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import reference_metrics as R  # noqa: E402


def _data(n_per_class: int = 30, n_classes: int = 4, dim: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per_class)
    means = rng.normal(scale=1.5, size=(n_classes, dim))
    x = (means[y] + rng.normal(size=(y.size, dim)) * np.linspace(0.5, 2, dim)).astype(np.float32)
    perm = rng.permutation(y.size)
    return x[perm], y[perm]


@pytest.mark.parametrize("name", sorted(R.REFERENCES))
def test_reference_equals_ped(name: str) -> None:
    x, y = _data()
    before = x.copy()
    reference, options = R.REFERENCES[name]
    kwargs = {"pca_dims": 8} if name in ("gbc", "parc") else {}  # the PCA step included
    ours = METRICS[name](x, y, **options, **kwargs)
    theirs = reference(x, y, **kwargs)
    np.testing.assert_array_equal(x, before)  # the references copy before writing
    assert ours == pytest.approx(theirs, rel=1e-7, abs=1e-9)


def test_parc_reference_scores_the_same_subsample() -> None:
    x, y = _data(n_per_class=40)
    assert METRICS["parc"](x, y, max_samples=100) == pytest.approx(
        R.parc_subsampled(x, y, max_samples=100), rel=1e-9)


def test_logme_release_epsilon_is_a_named_difference() -> None:
    x, y = _data()
    plain, released = R.logme(x, y), R.logme(x, y, epsilon=1e-5)
    assert plain == pytest.approx(METRICS["logme"](x, y), rel=1e-9)
    assert released != plain  # the release's epsilon moves the score, a little
    assert released == pytest.approx(plain, abs=1e-2)
