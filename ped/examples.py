"""The worked example of the metric chapters: a zoo of random-projection "models" on digits.

The chapters that derive the metrics (3-6 of the book) need a zoo that is small, offline and
fast, and whose right ordering is known.  :func:`digits_zoo` builds it on scikit-learn's bundled
digits (1797 images of 8 x 8 pixels, 10 classes): a "model" of width :math:`D` maps the
standardised pixels :math:`\\tilde x \\in \\mathbb{R}^{64}` to

.. math::

    f_D(\\tilde x) = \\tanh(\\tilde x\\, P_D), \\qquad P_D \\in \\mathbb{R}^{64 \\times D},\\;
    (P_D)_{ij} \\sim \\mathcal{N}(0, 1/64),

so wider models keep more of the image.  :func:`linear_probe` gives the reference ordering (the
test accuracy of a logistic regression trained on a stratified half), and
:func:`score_before_after` scores every model on its static features and after PED.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from ped.dynamics import potential_energy_descent
from ped.metrics import PED_SUFFIX, row_label  # noqa: F401 - where they used to live

__all__ = ["DigitsZoo", "digits_zoo", "linear_probe",
           "score_before_after", "scale_response"]

@dataclass(frozen=True)
class DigitsZoo:
    """The random-projection zoo of :func:`digits_zoo`.

    ``features`` maps ``"width D"`` to the (1797, D) features of every image, in ``widths``
    order; ``labels`` are the digits (0-9); ``probe`` is each model's linear-probe test
    accuracy (:func:`linear_probe` with the zoo's seed; empty when not computed).
    """

    features: dict[str, np.ndarray]
    labels: np.ndarray
    widths: tuple[int, ...]
    probe: dict[str, float]


def digits_zoo(widths: Sequence[int], *, seed: int = 0, probe: bool = True) -> DigitsZoo:
    """The zoo of random-projection models :math:`\\tanh(\\tilde x P_D)` of the given widths.

    The pixels are standardised per pixel (constant pixels are left at zero); the projections are
    drawn in ``widths`` order from ``numpy.random.default_rng(seed)``.  ``probe=False`` skips the
    linear probes (``DigitsZoo.probe`` is then empty), for a chapter that probes a subset.
    """
    widths = tuple(int(w) for w in widths)
    if not widths or min(widths) < 1:
        raise ValueError(f"widths must be positive integers, got {widths}")
    if len(set(widths)) != len(widths):
        raise ValueError(f"widths must be distinct, got {widths}")
    digits, labels = load_digits(return_X_y=True)
    pixels = (digits - digits.mean(axis=0)) / np.maximum(digits.std(axis=0), 1e-8)
    rng = np.random.default_rng(seed)
    features = {}
    for width in widths:
        projection = rng.normal(size=(pixels.shape[1], width)) / np.sqrt(pixels.shape[1])
        features[f"width {width}"] = np.tanh(pixels @ projection)
    accuracy = linear_probe(features, labels, seed=seed) if probe else {}
    return DigitsZoo(features, labels, widths, accuracy)


def linear_probe(
    features: Mapping[str, np.ndarray], labels: np.ndarray, *, seed: int = 0
) -> dict[str, float]:
    """Test accuracy of a logistic regression (scikit-learn, ``max_iter=2000``) per model,
    trained on a half of the images stratified by label (``random_state=seed``), tested on the
    other half.  The same split for every model."""
    labels = np.asarray(labels)
    train, test = train_test_split(np.arange(len(labels)), test_size=0.5, random_state=seed,
                                   stratify=labels)  # fmt: skip
    return {name: float(LogisticRegression(max_iter=2000).fit(f[train], labels[train])
                        .score(f[test], labels[test])) for name, f in features.items()}  # fmt: skip


def score_before_after(
    features: Mapping[str, np.ndarray],
    labels: np.ndarray,
    score: Callable[[str, np.ndarray], Mapping[str, float]],
    *,
    probe: Mapping[str, float] | None = None,
    reference: Mapping[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Every model's scores on its static features and after PED, one row per model.

    ``score(name, features)`` returns ``{metric: value}`` for one model.  PED runs with its
    defaults (:func:`ped.potential_energy_descent`), standardised by ``reference[name]`` when
    given, else by the target features themselves.  Columns: ``linear-probe accuracy`` (when
    ``probe`` is given), then each metric followed by ``<metric>+PED``.
    """
    rows = {}
    for name, f in features.items():
        ref = None if reference is None else reference[name]
        moved = potential_energy_descent(f, labels, reference=ref).features
        before, after = score(name, f), score(name, moved)
        row = {"linear-probe accuracy": probe[name]} if probe is not None else {}
        for metric, value in before.items():
            row[metric] = float(value)
            row[metric + PED_SUFFIX] = float(after[metric])
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def scale_response(
    scores: Mapping[str, Callable[[np.ndarray], float]],
    features: np.ndarray,
    scales: Sequence[float] = (1e-3, 1e-1, 1.0, 10.0, 1e3),
) -> pd.DataFrame:
    """Each metric of ``scores`` (``{name: f(features)}``, the labels bound) on the features
    multiplied by each of ``scales``: one row per scale, one column per metric.  A metric
    invariant to a global rescaling gives a constant column."""
    if not scales or min(scales) <= 0:
        raise ValueError(f"scales must be positive, got {list(scales)}")
    rows = {a: {name: float(fn(a * features)) for name, fn in scores.items()}
            for a in scales}  # fmt: skip
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "feature scale"
    return frame
