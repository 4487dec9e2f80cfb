"""The verdict read as a replication: the stored simulations behind its calibration and power.

:mod:`ped.replication` has the inference; this module applies it to the embedded benchmark's
stored verdict scores and keeps its simulations, the slow part, as a committed artefact
(``make replication``, a few minutes on 2 cores): one CSV per unit in
``<verdict folder>/simulations/`` with a sha256 manifest that ties each file to its
configuration (the measured :class:`~ped.power.BenchmarkShape` included), verified
whenever the files are read.  A unit whose configuration changed (new scores, a new ground
truth) is recomputed; the others are kept.

Units: ``null`` (no effect), ``published`` (each metric's published gain), ``curve_<k>`` (a
common gain, for the power curve and the minimum detectable effect) and ``duplicates_<null |
published>`` (the with-replacement bootstrap of models,
:func:`ped.inference.hierarchical_bootstrap`, beside the jackknife interval on the same
simulated benchmarks).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats
from numpy.typing import NDArray

from ped._io import read_json_record, sha256_file, write_csv_atomic, write_json_atomic
from ped._progress import tqdm
from ped.bench.verdict import PRIMARY_METRICS, endpoint_cells
from ped.evaluation import weighted_tau
from ped.inference import Cell, hierarchical_bootstrap
from ped.paper import published_gains
from ped.power import (
    BenchmarkShape,
    calibration,
    measure_shape,
    minimum_detectable_effect,
    power_curve,
    simulate,
    simulate_benchmark,
)
from ped.replication import ReplicationEstimate, cell_changes, replicate

__all__ = [
    "CURVE",
    "verdict_replication",
    "PowerSummary",
    "power_summary",
    "selection_endpoint",
    "primary_cells",
    "simulation_plan",
    "run_simulations",
    "load_simulations",
    "coverage_of_duplicates",
]

logger = logging.getLogger(__name__)

#: Common gains (Kendall-type agreement) of the power curve.
CURVE: tuple[float, ...] = (0.025, 0.05, 0.1, 0.15, 0.2, 0.3)
MANIFEST = "manifest.json"


def primary_cells(
    scores: Mapping[str, Mapping[str, Any]],
    gt: pd.DataFrame,
    *,
    arm: str = "ped",
    metrics: Sequence[str] = PRIMARY_METRICS,
) -> tuple[list[Cell], list[str]]:
    """The primary endpoint's cells (task x metric,
    :func:`ped.bench.verdict_analysis.endpoint_cells`) and the metric of each."""
    cells = endpoint_cells(scores, gt, arm=arm, metrics=metrics)
    return cells, [m for _ in scores for m in metrics]


def simulation_plan(
    shape: BenchmarkShape,
    published: Mapping[str, float],
    *,
    n_null: int = 400,
    n_power: int = 400,
    n_curve: int = 200,
    n_duplicates: int = 200,
    n_resamples: int = 200,
    curve: Sequence[float] = CURVE,
) -> dict[str, dict[str, Any]]:
    """Every unit's configuration (what its stored file must match)."""
    gains = {m: float(published[m]) for m in shape.metrics}
    base = {"shape": asdict(shape), "n_resamples": n_resamples,
            "published": {k: float(v) for k, v in published.items()}}  # fmt: skip
    plan = {"null": {**base, "effects": {}, "n": n_null, "seed": 1},
            "published": {**base, "effects": gains, "n": n_power, "seed": 2}}  # fmt: skip
    for i, g in enumerate(curve):
        plan[f"curve_{i}"] = {**base, "effects": {m: float(g) for m in shape.metrics},
                              "n": n_curve, "seed": 10 + i, "effect": float(g)}  # fmt: skip
    for name, effects, seed in (("null", {}, 3), ("published", gains, 4)):
        plan[f"duplicates_{name}"] = {**base, "effects": effects, "n": n_duplicates,
                                      "seed": seed, "duplicates": True}  # fmt: skip
    return plan


def _digest(config: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def _inputs_digest(cells: Sequence[Cell], labels: Sequence[str]) -> str:
    """sha256 of the scores and accuracies the shape was measured from (so that a reader can
    tell stored simulations are current without measuring the shape again)."""
    digest = hashlib.sha256()
    for cell, label in zip(cells, labels, strict=True):
        digest.update(f"{cell.group}|{label}|{cell.base.shape}|{cell.accuracy.shape}".encode())
        for array in (cell.base, cell.treated, cell.accuracy):
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _shape_from_dict(d: Mapping[str, Any]) -> BenchmarkShape:
    """A :class:`BenchmarkShape` from its JSON form (lists back to tuples)."""
    return BenchmarkShape(**{k: tuple(map(tuple, v)) if k == "metric_sd" else
                             (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})


def _duplicates(config: Mapping[str, Any]) -> pd.DataFrame:
    """Per simulated benchmark: the with-replacement bootstrap interval of the mean
    (``dup_low``, ``dup_high``), the jackknife interval (``pop_low``, ``pop_high``) and the
    simulated zoo's true change ``theta_zoo``."""
    shape = _shape_from_dict(config["shape"])
    seeds = np.random.default_rng(config["seed"]).integers(0, 2**63 - 1, config["n"])
    rows = []
    for i, seed in enumerate(seeds):
        rng = np.random.default_rng(int(seed))
        cells, labels, theta = simulate_benchmark(shape, config["effects"], rng)
        boot = hierarchical_bootstrap(cells, n_resamples=config["n_resamples"],
                                      random_state=int(rng.integers(2**31)))  # fmt: skip
        est = replicate(cells, labels, config["published"], n_resamples=config["n_resamples"],
                        random_state=int(rng.integers(2**31)))["mean"]  # fmt: skip
        distinct = len(np.unique(rng.integers(0, shape.n_models, shape.n_models)))
        rows.append({"simulation": i, "estimate": est.estimate, "dup_low": boot.low,
                     "dup_high": boot.high, "pop_low": est.pop_low, "pop_high": est.pop_high,
                     "theta_zoo": theta, "distinct_models_example": distinct})  # fmt: skip
    return pd.DataFrame(rows)


def run_simulations(
    out_dir: str | os.PathLike[str],
    cells: Sequence[Cell],
    labels: Sequence[str],
    published: Mapping[str, float],
    **plan_options: Any,
) -> dict[str, pd.DataFrame]:
    """Measure the benchmark's shape from ``cells``, then run (or keep, when current) every
    unit of :func:`simulation_plan`; the manifest is rewritten after each unit.  Returns
    unit -> table."""
    shape = measure_shape(cells, labels)
    plan = simulation_plan(shape, published, **plan_options)
    out = Path(out_dir)
    manifest_path = out / MANIFEST
    manifest: dict[str, Any] = {"version": 1, "units": {}}
    if manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text())
        except json.JSONDecodeError:
            logger.warning("unreadable %s: every unit is recomputed", manifest_path)
    manifest["shape"] = asdict(shape)
    manifest["inputs"] = _inputs_digest(cells, labels)
    tables = {}
    for unit, config in tqdm(plan.items(), desc="simulations", unit="unit"):
        path = out / f"{unit}.csv"
        entry = manifest["units"].get(unit, {})
        if (entry.get("config") == _digest(config) and path.is_file()
                and sha256_file(path) == entry.get("sha256")):  # fmt: skip
            tables[unit] = pd.read_csv(path)
            continue
        if config.get("duplicates"):
            table = _duplicates(config)
        else:
            table = simulate(shape, config["effects"], n_simulations=config["n"],
                             n_resamples=config["n_resamples"], random_state=config["seed"],
                             published=config["published"])  # fmt: skip
            if "effect" in config:
                table.insert(0, "effect", config["effect"])
        out.mkdir(parents=True, exist_ok=True)
        write_csv_atomic(table, path)
        manifest["units"][unit] = {"config": _digest(config), "sha256": sha256_file(path),
                                   "rows": len(table)}  # fmt: skip
        write_json_atomic(manifest_path, manifest)
        tables[unit] = table
    stale = sorted(set(manifest["units"]) - set(plan))
    for unit in stale:
        manifest["units"].pop(unit)
        (out / f"{unit}.csv").unlink(missing_ok=True)
    write_json_atomic(manifest_path, manifest)
    return tables


def load_simulations(
    out_dir: str | os.PathLike[str],
    cells: Sequence[Cell] | None = None,
    labels: Sequence[str] | None = None,
    published: Mapping[str, float] | None = None,
    **plan_options: Any,
) -> tuple[BenchmarkShape, dict[str, pd.DataFrame]]:
    """The stored simulations, each file checked against its sha256 in the manifest (an error
    names the file).  With ``cells``, ``labels`` and ``published``, they are also checked to
    be current: made from these scores and accuracies (the digest of the inputs the shape was
    measured from) and with these published gains and options (each unit's configuration);
    stale: rerun ``make replication``."""
    out = Path(out_dir)
    manifest_path = out / MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(f"no simulations in {out}: run `make replication`")
    manifest = read_json_record(manifest_path, ("units", "shape"), what="a simulation manifest")
    units, shape = manifest["units"], _shape_from_dict(manifest["shape"])
    plan = None
    if cells is not None:
        if labels is None or published is None:
            raise ValueError("checking against the scores needs cells, labels and published")
        if manifest.get("inputs") != _inputs_digest(cells, labels):
            raise ValueError(f"{out} was simulated for other scores or accuracies (stale): run "
                             "`make replication`")  # fmt: skip
        plan = simulation_plan(shape, published, **plan_options)
        missing = sorted(set(plan) - set(units))
        if missing:
            raise ValueError(f"{out}: unit(s) {missing} missing: run `make replication`")
    tables = {}
    for unit, entry in units.items():
        path = out / f"{unit}.csv"
        if not path.is_file():
            raise ValueError(f"{path} is listed in {manifest_path} but missing")
        if sha256_file(path) != entry["sha256"]:
            raise ValueError(f"{path} does not match its sha256 in {manifest_path} (edited or "
                             "corrupt)")  # fmt: skip
        if plan is not None and entry["config"] != _digest(plan[unit]):
            raise ValueError(f"{path} was simulated for other scores or settings (stale): run "
                             "`make replication`")  # fmt: skip
        tables[unit] = pd.read_csv(path)
    return shape, tables


def coverage_of_duplicates(table: pd.DataFrame, population_effect: float) -> dict[str, float]:
    """Coverage of ``population_effect`` by the with-replacement bootstrap and by the jackknife
    interval, and their mean widths, from a ``duplicates_*`` unit."""
    dup = (table["dup_low"] <= population_effect) & (population_effect <= table["dup_high"])
    pop = (table["pop_low"] <= population_effect) & (population_effect <= table["pop_high"])
    n = len(table)
    return {"n": n, "cover_duplicates": float(dup.mean()), "cover_jackknife": float(pop.mean()),
            "width_duplicates": float((table["dup_high"] - table["dup_low"]).mean()),
            "width_jackknife": float((table["pop_high"] - table["pop_low"]).mean()),
            "cover_se": float(np.sqrt(0.95 * 0.05 / n)),
            "binom_p_duplicates": float(scipy.stats.binomtest(int(dup.sum()), n, 0.95).pvalue),
            "binom_p_jackknife": float(scipy.stats.binomtest(int(pop.sum()), n, 0.95).pvalue)}


def verdict_replication(
    scores: Mapping[str, Mapping[str, Any]],
    gt: pd.DataFrame,
    *,
    arm: str = "ped",
    metrics: Sequence[str] = PRIMARY_METRICS,
    n_resamples: int = 1000,
    random_state: int = 0,
) -> dict[str, ReplicationEstimate]:
    """The verdict's replication estimates (:func:`ped.replication.replicate`) of ``arm``
    against the extracted features, per metric and for their mean, tested against the published
    gains (:func:`ped.paper.published_gains`)."""
    cells, labels = primary_cells(scores, gt, arm=arm, metrics=metrics)
    return replicate(cells, labels, published_gains(), n_resamples=n_resamples,
                     random_state=random_state)  # fmt: skip


@dataclass(frozen=True)
class PowerSummary:
    """What the stored simulations say about the verdict's tests (:func:`power_summary`).

    ``null`` and ``published``: :func:`ped.power.calibration` of the null and of the
    published gains (``population_effect``: the simulated zoos' mean true change there);
    ``curve``: :func:`ped.power.power_curve` of the mean over the common gains;
    ``mde_*``: the realised change at which each test reaches 80 % power; ``duplicates_*``:
    :func:`coverage_of_duplicates` under the null and the published gains; ``per_metric``: per
    label (each metric and ``mean``), the null's false-positive rate and the power at the
    published gains of each test, and the minimum detectable change of the population test
    (``mde_pop``; for a metric, on the scale of its mean simulated estimate)."""

    null: dict[str, float]
    published: dict[str, float]
    population_effect: float
    curve: pd.DataFrame
    mde_zoo: float
    mde_pop: float
    mde_tasks: float
    duplicates_null: dict[str, float]
    duplicates_published: dict[str, float]
    per_metric: pd.DataFrame


def power_summary(tables: Mapping[str, pd.DataFrame], *, alpha: float = 0.05) -> PowerSummary:
    """:class:`PowerSummary` of :func:`load_simulations`' tables."""
    pub = tables["published"]
    effect = float(pub.loc[pub["label"] == "mean", "theta_zoo"].mean())
    curve_units = sorted(k for k in tables if k.startswith("curve_"))
    null_point = tables["null"].assign(effect=0.0)  # the curve starts at no effect
    curve = power_curve(pd.concat([null_point, *(tables[k] for k in curve_units)],
                                  ignore_index=True), alpha=alpha)  # fmt: skip
    mean = curve[curve["label"] == "mean"].sort_values("realised")
    mde = {k: minimum_detectable_effect(mean["realised"], mean[f"power_{k}"])
           for k in ("zoo", "pop", "tasks")}  # fmt: skip
    dup_pub = tables["duplicates_published"]
    rows = {}
    for label, c in curve.groupby("label", sort=False):
        c = c.sort_values("estimate")
        x = c["realised"] if label == "mean" else c["estimate"]
        null = tables["null"][tables["null"]["label"] == label]
        at_pub = pub[pub["label"] == label]
        rows[label] = {
            **{f"null_{k}": float((null[f"p_zero_{k}"] < alpha).mean())
               for k in ("zoo", "pop", "tasks")},
            **{f"power_{k}": float((at_pub[f"p_zero_{k}"] < alpha).mean())
               for k in ("zoo", "pop", "tasks")},
            "mde_pop": minimum_detectable_effect(x, c["power_pop"]),
        }  # fmt: skip
    return PowerSummary(
        null=calibration(tables["null"], alpha=alpha),
        published=calibration(pub, alpha=alpha, population_effect=effect),
        population_effect=effect, curve=mean.reset_index(drop=True),
        mde_zoo=mde["zoo"], mde_pop=mde["pop"], mde_tasks=mde["tasks"],
        duplicates_null=coverage_of_duplicates(tables["duplicates_null"], 0.0),
        duplicates_published=coverage_of_duplicates(dup_pub, float(dup_pub["theta_zoo"].mean())),
        per_metric=pd.DataFrame(rows).T.reindex(list(dict.fromkeys(pub["label"]))),
    )  # fmt: skip


def selection_endpoint(
    scores: Mapping[str, Mapping[str, Any]],
    gt: pd.DataFrame,
    changes: pd.DataFrame,
    *,
    n_draws: int = 1000,
    random_state: int = 0,
    metrics: Sequence[str] = PRIMARY_METRICS,
) -> dict[str, Any]:
    r"""What the noise of model selection does to the endpoint.

    ``changes`` (:func:`ped.bench.zoo.selection.selection_changes`) covers a random sample of
    the cells.  ``observed``: the endpoint with the sampled cells' ground truth moved to what
    the second selection seed chose (the shifts that
    :func:`ped.bench.zoo.selection.perturbed_ground_truth` applies, here to the ground truth's
    arrays directly).
    ``draws``: the endpoint when *every* cell is selected again, simulated by giving each cell,
    independently, a change of choice with the sampled rate and, if it changes, a shift drawn
    from the sampled shifts (``n_draws`` draws); their SD is the selection noise of the
    endpoint.  ``ranking``: per task, :math:`\tau_w` between the models' mean accuracies
    before and after the observed re-selection."""
    cells, _ = primary_cells(scores, gt, metrics=metrics)  # the ground truth's arrays, once
    models = {t: list(s["models"]) for t, s in scores.items()}

    def estimate(shift: Mapping[str, NDArray[np.float64]]) -> float:
        """The endpoint with each model's accuracies on each task moved by ``shift``."""
        moved = [Cell(c.base, c.treated, c.accuracy + shift[c.group][:, None], group=c.group)
                 for c in cells]  # fmt: skip
        return float(cell_changes(moved).mean())

    changed = changes[changes["changed"].astype(bool)]
    observed = {t: np.array([changed.loc[(changed["model"] == m) & (changed["task"] == t),
                                         "shift"].sum() for m in ms]) for t, ms in models.items()}
    truth = {c.group: c.accuracy.mean(axis=1) for c in cells}
    ranking = {t: weighted_tau(truth[t] + observed[t], truth[t]) for t in models}
    rate = float(changes["changed"].mean()) if len(changes) else 0.0
    shifts = changed["shift"].to_numpy()
    rng = np.random.default_rng(random_state)
    n_cells = sum(len(ms) for ms in models.values())
    bounds = np.cumsum([0, *(len(ms) for ms in models.values())])
    draws = np.empty(n_draws)
    for i in range(n_draws):
        flip = rng.random(n_cells) < rate
        size = rng.choice(shifts, n_cells) if shifts.size else np.zeros(n_cells)
        move = np.where(flip, size, 0.0)
        draws[i] = estimate({t: move[bounds[k]:bounds[k + 1]] for k, t in enumerate(models)})
    zero = {t: np.zeros(len(ms)) for t, ms in models.items()}
    return {"base": estimate(zero), "observed": estimate(observed), "draws": draws,
            "sd": float(draws.std(ddof=1)), "rate": rate, "n_cells": len(changes),
            "ranking": pd.Series(ranking, name="τ_w between the two ground truths")}
