r"""Transferability metrics: score how well features (or a source classifier) suit a labelled
target task.

Every metric returns a Python float and follows one sign convention: **higher means better
predicted transferability**.

Feature-based metrics take ``(features (N, D) float array, labels (N,) ints 0..C-1,
**keyword-only options)`` and are collected in :data:`METRICS`; source-classifier metrics
(:func:`leep`, :func:`nce`) are in :data:`SOURCE_METRICS`.

============ ============================= =====================================================
name         family (module)               reference
============ ============================= =====================================================
logme        evidence                      You et al., ICML 2021
sfda         discriminability              Shao et al., ECCV 2022
hscore       discriminability              Bao et al., ICIP 2019
transrate    discriminability              Huang et al., ICML 2022
gbc          separation                    Pándy et al., CVPR 2022
parc         separation                    Bolya et al., NeurIPS 2021
nleep        probabilistic                 Li et al., CVPR 2021
leep         probabilistic (source probs)  Nguyen et al., ICML 2020
nce          probabilistic (source labels) Tran et al., ICCV 2019
knn          neighbours                    Sorkhei et al., TMLR 2025 (arXiv 2503.18528)
ncti         collapse (zoo-level)          Wang et al., ICCV 2023
etran        energy (zoo-level)            Gholami et al., ICCV 2023 (arXiv 2308.02027)
============ ============================= =====================================================

NCTI and ETran are defined relative to the zoo being ranked (each term is min-max normalised over
the models), so they are not in :data:`METRICS`: compute one model's terms with
:func:`ncti_terms` / :func:`etran_terms` and the zoo's scores with :func:`ncti_combine` /
:func:`etran_combine` (the pairs of :data:`ZOO_METRICS`).  The dataset-agnostic baseline,
which needs no features, is :func:`ped.evaluation.leave_one_task_out`; Spread/Attract, a feature
perturbation like PED, is :func:`ped.spread_attract`.

Features may also be a ``torch.Tensor`` of any floating dtype (``bfloat16`` included, requiring
grad or not): LogME, SFDA and GBC compute on it on its device; H-score, TransRate, PARC and NLEEP
validate it the same way and copy it to a numpy array first (they have no torch path).  Features
so large that their sums of squares would overflow float64 are refused with a ``ValueError``
(``ped._validation.check_magnitude``) instead of giving NaN, inf or 0.

Defaults follow the papers; the released SFDA/PED code's behaviour is reproduced with
``sfda(..., log=False)``, ``nleep(..., log=False)`` (``component_ratio=1`` for Food-101 and Pets)
and ``leep(..., log=False)``, and Pándy et al.'s GBC code with
``gbc(..., covariance="spherical", variant="reference")``.  :data:`DEFINITIONS` names both sets
of options: ``"release"`` (what produced the published Table 1 rows) and ``"paper"`` (the
papers' formulas).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from numpy.typing import NDArray

from ped.metrics.discriminability import hscore, sfda, transrate
from ped.metrics.collapse import NCTITerms, ncti_combine, ncti_terms
from ped.metrics.energy import ETranTerms, energy_score, etran_combine, etran_terms, lda_score
from ped.metrics.evidence import logme
from ped.metrics.neighbours import knn_accuracy, knn_credit
from ped.metrics.probabilistic import leep, nce, nleep
from ped.metrics.separation import gbc, parc

__all__ = [
    "DEFINITIONS",
    "DISPLAY_NAMES",
    "PED_SUFFIX",
    "row_label",
    "METRICS",
    "SOURCE_METRICS",
    "ZOO_METRICS",
    "ETranTerms",
    "NCTITerms",
    "energy_score",
    "etran_combine",
    "etran_terms",
    "gbc",
    "hscore",
    "knn_accuracy",
    "knn_credit",
    "lda_score",
    "leep",
    "logme",
    "ncti_combine",
    "ncti_terms",
    "nce",
    "nleep",
    "parc",
    "sfda",
    "transrate",
]

#: Feature-based metrics, ``f(features, labels, **options) -> float``; higher is better.
METRICS: dict[str, Callable[..., float]] = {
    "logme": logme,
    "sfda": sfda,
    "gbc": gbc,
    "nleep": nleep,
    "parc": parc,
    "hscore": hscore,
    "transrate": transrate,
    "knn": knn_accuracy,
}

#: Source-classifier metrics: ``leep(source_probs, labels)``, ``nce(source_labels, labels)``.
SOURCE_METRICS: dict[str, Callable[..., float]] = {"leep": leep, "nce": nce}

#: Zoo-level metrics: ``(terms(features, labels) -> NamedTuple, combine(terms of every model)
#: -> scores)``.  A score is relative to the zoo it is computed in (each term is min-max
#: normalised over the models), so a zoo's scores come from ``combine([terms(x_m, y) for m])``
#: (:func:`ped.bench.scoring.score_zoo` does this).
ZOO_METRICS: dict[str, tuple[Callable[..., tuple[float, ...]],
                             Callable[..., NDArray[np.float64]]]] = {
    "ncti": (ncti_terms, ncti_combine),
    "etran": (etran_terms, etran_combine),
}

#: Options of each metric under the two definitions a table can use: ``"release"``, the code
#: behind the published rows, and ``"paper"``, the papers' formulas (the functions' defaults).
#: ``"release"`` is the SFDA/PED code for SFDA, NLEEP and LEEP (scores without their log: mean
#: :math:`p(y_i \mid x_i)`) and, since the PED release has no GBC code, Pándy et al.'s own code
#: for GBC (google-research ``stable_transfer``: spherical Gaussians after a 64-component PCA,
#: an absolute variance floor of 1e-4, the spherical log-determinant counted once; see
#: :func:`gbc`, ``variant="reference"``).  Metrics not listed take their defaults under both.
DEFINITIONS: dict[str, dict[str, dict[str, object]]] = {
    "release": {"sfda": {"log": False}, "nleep": {"log": False}, "leep": {"log": False},
                "gbc": {"covariance": "spherical", "variant": "reference"}},
    "paper": {},
}

#: How the literature writes each metric's name (tables and figure labels).
DISPLAY_NAMES: dict[str, str] = {
    "logme": "LogME", "sfda": "SFDA", "gbc": "GBC", "nleep": "NLEEP", "parc": "PARC",
    "hscore": "H-score", "transrate": "TransRate", "leep": "LEEP", "nce": "NCE",
    "knn": "k-NN", "ncti": "NCTI", "etran": "ETran",
    # not a metric of features: ped.evaluation.leave_one_task_out, the dataset-agnostic baseline
    "loto": "Other tasks' mean",
}  # fmt: skip


#: The suffix of a metric's row after PED (``LogME+PED``).
PED_SUFFIX = "+PED"


def row_label(metric: str, move: bool | str = False) -> str:
    """A metric's name in tables and figures: its display name (:data:`ped.metrics.DISPLAY_NAMES`,
    e.g. ``LogME``), followed by :data:`PED_SUFFIX` for its score after PED (``move`` True or
    ``"PED"``) or by ``+`` and the name of another feature perturbation (``move="SA"``:
    ``LogME+SA``, after :func:`ped.spread_attract`).  ``move`` False or ``""``: no suffix."""
    if move is True:
        move = PED_SUFFIX[1:]
    return DISPLAY_NAMES.get(metric, metric) + (f"+{move}" if move else "")
