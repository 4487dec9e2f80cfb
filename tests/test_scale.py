"""How each metric responds to a global rescaling of the features, x -> a x.

LogME, GBC (textbook), PARC, H-score and k-NN are invariant: their definitions are ratios or
rank statistics of the features, or optimise a scale parameter away (LogME's prior precision).
SFDA (its shrinkage exp(-5 lambda_max)), NLEEP (scikit-learn's absolute reg_covar) and TransRate
(its fixed distortion eps) are not: a small feature scale moves their scores, as the release's
definitions do.  Both behaviours are asserted here.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ped.examples import digits_zoo
from ped.metrics import gbc, hscore, knn_accuracy, logme, nleep, parc, sfda, transrate


@pytest.fixture(scope="module")
def example():
    zoo = digits_zoo([16], seed=0, probe=False)
    return zoo.features["width 16"][:600], zoo.labels[:600]


INVARIANT = {
    "logme": (logme, 1e-8),  # the fixed point stops at a relative tolerance
    "gbc": (gbc, 1e-10),
    "parc": (parc, 1e-9),
    "hscore": (hscore, 1e-10),
    "knn": (knn_accuracy, 0.0),
}
scales = st.floats(min_value=-3, max_value=3).map(lambda e: 10.0**e)


@pytest.mark.parametrize("name", INVARIANT)
@settings(max_examples=8, deadline=None)
@given(a=scales)
def test_invariant_metrics_ignore_the_feature_scale(example, name, a):
    fn, rel = INVARIANT[name]
    x, y = example
    assert fn(a * x, y) == pytest.approx(fn(x, y), rel=rel, abs=1e-12)


def test_scale_dependent_metrics_fall_on_small_features(example):
    """At a thousandth of the scale the three lose most of their signal: TransRate's coding rate
    vanishes against eps, NLEEP's mixture is swamped by reg_covar and falls to chance, SFDA's
    shrinkage no longer regularises."""
    x, y = example
    small = 1e-3 * x
    assert transrate(small, y) < 1e-3 * transrate(x, y)
    chance = np.log(1 / len(np.unique(y)))
    assert abs(nleep(small, y) - chance) < 0.15 < abs(nleep(x, y) - chance)
    assert sfda(small, y) < sfda(x, y) - 0.2
    # and they settle once the features are large: the constants stop mattering
    assert transrate(1e3 * x, y) == pytest.approx(transrate(1e2 * x, y), rel=1e-2)
    assert sfda(1e3 * x, y) == pytest.approx(sfda(1e2 * x, y), rel=1e-3)
