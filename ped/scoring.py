r"""The one scoring path of :mod:`ped`: arms and metrics on one model's features.

An *arm* is a move applied to one model's features before they are scored: none (the static
features), PED (:func:`ped.potential_energy_descent`), Spread/Attract, the verdict's placebo or
its label-shuffled control.  :func:`score_arms` runs each arm's move once and scores its output
with every metric, timing both; every caller scores through it:

- ``ped score`` and :func:`ped.fullscale.scoring.score_features` (the static and the PED arm of
  each feature file, locally or on Dask);
- the embedded benchmark's verdict, its controls and the regime chapter
  (:func:`ped.bench.scoring.score_replicates`: every arm of every model on each image
  replicate).

A move takes ``(features, labels)`` and returns the moved features, or an object with a
``features`` attribute (a :class:`ped.PEDResult`), whose ``steps`` are then reported.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ped.metrics import DEFINITIONS, METRICS

__all__ = ["SCORING_ERRORS", "ArmMove", "ArmScore", "bind_metrics", "score_arms"]

#: The failures of a metric or of a move on one input that :func:`score_arms` records (with
#: ``record_errors``) as a NaN score with its message, instead of raising.
SCORING_ERRORS = (ValueError, ArithmeticError, np.linalg.LinAlgError, MemoryError)

#: A move: ``(features, labels) -> moved features`` (or an object with ``features``).
ArmMove = Callable[[NDArray[Any], NDArray[Any]], Any]
MetricFn = Callable[[NDArray[Any], NDArray[Any]], float]


@dataclass(frozen=True)
class ArmScore:
    """One metric's score of one arm: ``score`` (NaN when ``error``), the metric's ``seconds``,
    the arm's ``move_seconds`` and ``steps`` (shared by the arm's metrics; 0 for no move) and
    ``error`` (``"Type: message"`` of the metric's or the move's failure, else ``""``);
    ``move_error`` is the move's failure alone."""

    arm: str
    metric: str
    score: float
    seconds: float
    move_seconds: float
    steps: int
    error: str
    move_error: str = ""


def bind_metrics(
    metrics: Sequence[str] | Mapping[str, MetricFn],
    *,
    definitions: str = "paper",
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, MetricFn]:
    """The one binding of metric definitions: metric functions by name.

    A mapping is used as given (name -> ``f(features, labels) -> float``).  Names are looked up
    in :data:`ped.metrics.METRICS` and bound to the options of ``definitions`` in
    :data:`ped.metrics.DEFINITIONS` (``"paper"``: the functions' defaults, the papers' formulas;
    ``"release"``: the released code's, which produced the published Table 1), then to
    ``options`` (metric -> keyword arguments), which take precedence.  An unknown name or
    definition, or nothing to bind, is a ``ValueError``.
    """
    if isinstance(metrics, Mapping):
        out = dict(metrics)
    else:
        names = list(metrics)
        if definitions not in DEFINITIONS:
            raise ValueError(
                f"definitions must be one of {sorted(DEFINITIONS)}, got {definitions!r}"
            )
        unknown = [n for n in names if n not in METRICS]
        if unknown:
            raise ValueError(
                f"unknown metric(s) {unknown}; known metrics: {', '.join(sorted(METRICS))}"
            )
        extra = dict(options or {})
        out = {}
        for n in names:
            bound = {**DEFINITIONS[definitions].get(n, {}), **extra.get(n, {})}
            out[n] = functools.partial(METRICS[n], **bound) if bound else METRICS[n]
    if not out:
        raise ValueError("no metric given")
    for name, fn in out.items():
        if not callable(fn):
            raise ValueError(f"metric {name!r} is not callable")
    return out


def _timed(fn: Callable[[], Any], record: bool) -> tuple[Any, float, str]:
    """``(value, seconds, error)`` of ``fn()``; with ``record`` a :data:`SCORING_ERRORS` failure
    gives ``(None, seconds, "Type: message")``, else it propagates."""
    start = time.perf_counter()
    try:
        value, error = fn(), ""
    except SCORING_ERRORS as exc:
        if not record:
            raise
        value, error = None, f"{type(exc).__name__}: {exc}"
    return value, time.perf_counter() - start, error


def score_arms(
    features: NDArray[Any],
    labels: NDArray[Any],
    arms: Mapping[str, ArmMove | None],
    metrics: Mapping[str, MetricFn],
    *,
    record_errors: bool = False,
    after_metric: Callable[[str], None] | None = None,
) -> list[ArmScore]:
    r"""Score every arm of one model's ``features`` with every metric.

    Each arm's move runs once, on ``(features, labels)``, and its output :math:`\tilde X_a` is
    shared by the metrics: the score of metric :math:`m` in arm :math:`a` is
    :math:`m(\tilde X_a, y)` (:math:`\tilde X_a = X` for an arm whose move is ``None``).
    Returns one :class:`ArmScore` per metric and arm, metric by metric in the order of
    ``metrics``, then arm by arm in the order of ``arms``.

    With ``record_errors`` a :data:`SCORING_ERRORS` failure gives a NaN score with its message
    (a failed move gives every metric of its arm that message) and the loop goes on; without
    it the failure propagates.  ``after_metric(name)`` is called once each metric has scored
    every arm (a progress bar).  Nothing passed in is modified.
    """
    if not arms or not metrics:
        raise ValueError("score_arms needs at least one arm and one metric")
    moved: dict[str, tuple[Any, float, int, str]] = {}
    for arm, move in arms.items():
        if move is None:
            moved[arm] = (features, 0.0, 0, "")
            continue
        result, seconds, error = _timed(lambda: move(features, labels), record_errors)  # noqa: B023
        out = getattr(result, "features", result)
        moved[arm] = (out, seconds, int(getattr(result, "steps", 0) or 0), error)
    scores = []
    for name, fn in metrics.items():
        for arm, (x, move_seconds, steps, move_error) in moved.items():
            if move_error:
                value, seconds, error = None, 0.0, move_error
            else:
                value, seconds, error = _timed(lambda: fn(x, labels), record_errors)  # noqa: B023
            scores.append(ArmScore(arm, name, float("nan") if value is None else float(value),
                                   seconds, move_seconds, steps, error, move_error))  # fmt: skip
        if after_metric is not None:
            after_metric(name)
    return scores
