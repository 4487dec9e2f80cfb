r"""The embedded benchmark: the paper's experiment at a size a 2-core CPU runs.

The package holds its ingredients and its protocol:

- :mod:`ped.bench.tasks`: the downstream tasks and the unlabelled pretraining pool (32 px images
  built offline from Debian packages and scikit-learn's bundled data).
- :mod:`ped.bench.zoo`: the self-supervised encoders, their pretraining and their fine-tuning
  ground truth.
- :mod:`ped.bench.table1` and :mod:`ped.bench.verdict`: the paper's Table 1 on the benchmark,
  and the calibrated verdict on PED.

This module is the protocol itself, in small functions the chapters call:

1. :func:`load_ground_truth` reads the committed runs (``data/ground_truth/ground_truth.csv``);
   :func:`model_accuracy` reduces them to one accuracy per model and task (the test accuracy at
   the validation-selected setting, averaged over seeds), :func:`spread_vs_noise` asks whether a
   task separates the models beyond the seed noise, and :func:`noise_ceiling` measures how well
   one half of the seeds ranks the zoo like the other half.
2. :func:`zoo_features` loads (cached) features of every encoder on a task's labelled images, and
   :func:`score_zoo` scores them with the metrics, with or without PED (standardised with the
   encoder's statistics on the held-out pool images, the analogue of the paper's ImageNet-val
   features, or with the target's own statistics).
3. :func:`tau_table` is the Table 1 cell (:math:`\tau_w` between scores and accuracies), and
   :func:`seed_bootstrap_tau` its bootstrap interval over the ground-truth seeds.
4. :func:`zoo_table`, :func:`task_table`, :func:`ground_truth_summary`, :func:`compute_cost` and
   :func:`ground_truth_checks` describe what the benchmark is made of and whether it can rank
   its zoo.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from ped.evaluation import BootstrapInterval, bootstrap_ci, weighted_tau

__all__ = [
    "Benchmark",
    "BENCHMARKS",
    "DEFAULT_BENCHMARK",
    "get_benchmark",
    "ground_truth_path",
    "load_ground_truth",
    "selected_runs",
    "model_accuracy",
    "spread_vs_noise",
    "noise_ceiling",
    "zoo_features",
    "score_zoo",
    "tau_table",
    "seed_bootstrap_tau",
    "synthetic_task",
    "zoo_records",
    "zoo_table",
    "task_table",
    "ground_truth_summary",
    "compute_cost",
    "method_timings",
    "CHECK_THRESHOLDS",
    "complete_cells",
    "as_rebuilt_table",
    "split_half_ceiling",
    "ground_truth_checks",
    "seeds_needed",
    "effective_rank",
]

logger = logging.getLogger(__name__)

Reference = Literal["source", "target"]


def ground_truth_path() -> Path:
    """``data/ground_truth/ground_truth.csv`` (under :func:`ped.paper.data_dir`)."""
    from ped.paper import data_dir

    return data_dir() / "ground_truth" / "ground_truth.csv"


@dataclass(frozen=True)
class Benchmark:
    """One version of the embedded benchmark: where its artefacts live and which tasks it has.

    Paths are relative to :func:`ped.paper.data_dir`; ``rebuilt`` tells the rebuilt protocol
    (selection seeds apart from evaluation seeds, :mod:`ped.bench.zoo.finetune`) from the
    first one.
    """

    name: str
    label: str
    zoo: str
    ground_truth: str
    verdict: str
    tasks: tuple[str, ...]
    rebuilt: bool

    def _path(self, relative: str) -> Path:
        from ped.paper import data_dir

        return data_dir() / relative

    def zoo_dir(self) -> Path:
        """The zoo folder (checkpoints, records, manifest)."""
        return self._path(self.zoo)

    def ground_truth_csv(self) -> Path:
        """The ground-truth table."""
        return self._path(self.ground_truth)

    def verdict_dir(self) -> Path:
        """The folder of the verdict's stored scores (``make verdict``)."""
        return self._path(self.verdict)

    def load(
        self, ground_truth: str | os.PathLike[str] | None = None
    ) -> tuple[pd.DataFrame, list[str]]:
        """``(ground truth, models)``: the checked table (:func:`load_ground_truth`; of
        ``ground_truth`` when given, else :meth:`ground_truth_csv`) of this benchmark's tasks,
        complete cells only for the rebuilt protocol (:func:`complete_cells`), and the models
        of the zoo with a ground truth on every task, in the zoo's order.  A task with no
        ground truth at all is a ``ValueError``.  The rebuilt benchmark's committed table is
        first checked against its sha256 manifest
        (:func:`ped.bench.zoo.finetune.verify_ground_truth`): an edited, truncated or stale
        file is a ``ValueError`` naming it."""
        from ped.bench.zoo.finetune import verify_ground_truth
        from ped.bench.zoo.train import read_manifest

        if self.rebuilt and not ground_truth:
            verify_ground_truth(self.ground_truth_csv().parent)
        gt = load_ground_truth(ground_truth if ground_truth else self.ground_truth_csv())
        gt = gt[gt["task"].isin(self.tasks)]
        if self.rebuilt:
            gt = complete_cells(gt)
        missing = [t for t in self.tasks if t not in set(gt["task"])]
        if missing:
            raise ValueError(f"benchmark {self.name}: no ground truth for task(s) {missing}")
        per_task = [set(gt.loc[gt["task"] == t, "model"]) for t in self.tasks]
        common = set.intersection(*per_task)
        models = [m for m in read_manifest(self.zoo_dir())["encoders"] if m in common]
        return gt.reset_index(drop=True), models


def _benchmarks() -> dict[str, Benchmark]:
    from ped.bench.tasks import REBUILT_TASK_NAMES, TASKS

    return {
        "v1": Benchmark("v1", "the first benchmark", "zoo", "ground_truth/ground_truth.csv",
                        "verdict/v1", tuple(TASKS), rebuilt=False),
        "v2": Benchmark("v2", "the rebuilt benchmark", "zoo_v2",
                        "ground_truth_v2/ground_truth.csv", "verdict/v2", REBUILT_TASK_NAMES,
                        rebuilt=True),
    }  # fmt: skip


#: The versions of the embedded benchmark, by name: ``v1`` (the first, whose ground truth cannot
#: rank its zoo) and ``v2`` (the rebuilt one, issue 11), which the book reads by default.
BENCHMARKS: dict[str, Benchmark] = _benchmarks()
#: The benchmark the book and the command line use unless told otherwise.
DEFAULT_BENCHMARK = "v2"


def get_benchmark(name: str | None = None) -> Benchmark:
    """The :class:`Benchmark` named ``name`` (default :data:`DEFAULT_BENCHMARK`)."""
    name = DEFAULT_BENCHMARK if name in (None, "") else name
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]


#: Protocols a ground-truth run may have (see :mod:`ped.bench.zoo.finetune`).
_PROTOCOLS = ("finetune", "linear")


def _run_label(row: pd.Series, number: int) -> str:
    """How an error names a run: its identifying columns and its row number in the CSV."""
    lr = "-" if pd.isna(row.get("lr")) else row.get("lr")
    return (
        f"run {row.get('model')}/{row.get('task')}/{row.get('protocol')} seed {row.get('seed')} "
        f"lr {lr} wd {row.get('wd')} (row {number})"
    )


def _shown(value: Any) -> str:
    """A cell as an error message shows it: strings quoted, numbers plain."""
    value = value.item() if isinstance(value, np.generic) else value
    return repr(value) if isinstance(value, str) else str(value)


def _ground_truth_problems(table: pd.DataFrame) -> pd.Series:
    """Per row of the raw table, the first problem found (``""`` when none); the numeric columns
    of ``table`` are replaced by their numbers (NaN where there is none)."""
    problems = pd.Series("", index=table.index, dtype=object)

    def flag(mask: pd.Series, text: Any) -> None:
        for i in table.index[mask & (problems == "")]:
            problems[i] = text(i) if callable(text) else text

    def cell(name: str) -> Any:
        return lambda i: _shown(table.at[i, name])

    for name in ("model", "task", "protocol"):
        value = table[name]
        flag(value.isna() | (value.astype(str).str.strip() == ""), f"{name} is empty")
    protocol = cell("protocol")
    flag(~table["protocol"].isin(_PROTOCOLS),
         lambda i: f"protocol {protocol(i)} is not one of {_PROTOCOLS}")  # fmt: skip
    numeric = {}
    for name in ("seed", "lr", "wd", "val", "test"):
        numeric[name] = pd.to_numeric(table[name], errors="coerce")
        show = cell(name)
        flag(numeric[name].isna() & table[name].notna(),
             lambda i, n=name, show=show: f"{n} is {show(i)}, not a number")  # fmt: skip
    seed, lr, wd = numeric["seed"], numeric["lr"], numeric["wd"]
    flag(seed.isna(), "seed is missing")
    flag(~np.isfinite(seed.fillna(-1)) | (seed < 0) | (seed != seed.round()),
         lambda i: f"seed {cell('seed')(i)} is not an integer >= 0")  # fmt: skip
    flag(wd.isna() | ~np.isfinite(wd.fillna(0)) | (wd < 0),
         lambda i: f"wd {cell('wd')(i)} is not a finite number >= 0")  # fmt: skip
    finetune = table["protocol"] == "finetune"
    flag(finetune & (lr.isna() | ~np.isfinite(lr.fillna(0)) | ~(lr > 0)),
         lambda i: f"lr {cell('lr')(i)} is not a finite number > 0")  # fmt: skip
    flag(~finetune & lr.notna(), "a linear-probe run has an lr (it has none)")
    for name in ("val", "test"):
        acc, show = numeric[name], cell(name)
        flag(acc.isna(), f"{name} accuracy is missing (empty or NaN)")
        flag(~np.isfinite(acc.fillna(0)) | (acc < 0) | (acc > 100),
             lambda i, n=name, show=show: f"{n} accuracy {show(i)} is not in [0, 100] %")
    for name, values in numeric.items():
        table[name] = values
    return problems


def load_ground_truth(path: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Every ground-truth run: columns ``model, task, protocol, seed, lr, wd, val, test`` (%).

    Written by ``ped zoo finetune`` (:func:`ped.bench.zoo.finetune.ground_truth_table`).  The table is
    checked, and anything malformed is a ``ValueError`` naming the file, the first bad run (its
    model/task/protocol, seed, lr, wd and data row) and how many runs are bad: a file that does not
    parse (e.g. truncated in a quoted field), missing columns, an empty name, a protocol other
    than ``finetune``/``linear``, a seed that is not an integer >= 0, a missing, non-finite or
    negative ``wd``, a fine-tuning ``lr`` that is not > 0 (linear probes have none), ``val`` or
    ``test`` missing (a truncated line, or a run file without ``"test"``), not a number, NaN,
    infinite or outside [0, 100] %, and two runs of the same setting.
    """
    from ped.bench.zoo.finetune import COLUMNS

    csv = Path(path) if path is not None else ground_truth_path()
    if not csv.is_file():
        raise FileNotFoundError(f"no ground truth at {csv}: run `make ground-truth`")
    try:
        table = pd.read_csv(csv, keep_default_na=True)
    except (ValueError, UnicodeDecodeError) as exc:  # pandas' ParserError, EmptyDataError
        raise ValueError(f"ground truth {csv} does not parse as a CSV table: {exc}") from exc
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"ground truth {csv} lacks the column(s) {missing}")
    if table.empty:
        raise ValueError(f"ground truth {csv} holds no run")
    original = table.copy()
    problems = _ground_truth_problems(table)
    bad = problems != ""
    if bad.any():
        first = problems.index[bad][0]
        raise ValueError(
            f"ground truth {csv}: {_run_label(original.loc[first], int(first) + 1)}: "
            f"{problems[first]}"
            f"{f' ({int(bad.sum())} bad runs in all)' if bad.sum() > 1 else ''}"
        )
    key = ["model", "task", "protocol", "seed", "lr", "wd"]
    duplicated = table.duplicated(key, keep="first")
    if duplicated.any():
        first = table.index[duplicated][0]
        raise ValueError(
            f"ground truth {csv}: {_run_label(original.loc[first], int(first) + 1)} appears "
            "twice (one setting, one run)"
        )
    table["seed"] = table["seed"].astype(np.int64)
    return table


def selected_runs(gt: pd.DataFrame, protocol: str = "finetune") -> pd.DataFrame:
    """The runs of ``protocol`` at each model and task's validation-selected setting (all seeds).

    For the first benchmark's table, the setting is chosen on the seed-0 grid
    (:func:`ped.bench.zoo.finetune.selected`); for the rebuilt protocol's (a ``role`` column,
    :data:`ped.bench.zoo.finetune.COLUMNS_V2`), the selection is already made: its ``eval`` runs, on
    seeds disjoint from the selection's, are returned (``select`` runs are left out).
    """
    from ped.bench.zoo.finetune import COLUMNS, selected

    if protocol not in set(gt["protocol"]):
        raise ValueError(f"no {protocol!r} run in the ground truth; it has "
                         f"{sorted(set(gt['protocol']))}")  # fmt: skip
    runs = gt[gt["protocol"] == protocol]
    if "role" in runs.columns:
        return runs[runs["role"] == "eval"][COLUMNS].reset_index(drop=True)
    return selected(runs)


def model_accuracy(
    gt: pd.DataFrame, protocol: str = "finetune", seeds: Sequence[int] | None = None
) -> pd.DataFrame:
    """Accuracy (%) per model (rows) and task (columns): the test accuracy at the setting chosen
    on validation, averaged over ``seeds`` (default: every seed run at that setting)."""
    runs = selected_runs(gt, protocol)
    if seeds is not None:
        runs = runs[runs["seed"].isin(list(seeds))]
        if runs.empty:
            raise ValueError(f"no run with seeds {list(seeds)}")
    return runs.pivot_table(index="model", columns="task", values="test", aggfunc="mean")


def spread_vs_noise(gt: pd.DataFrame, protocol: str = "finetune") -> pd.DataFrame:
    r"""Per task: can its ground truth rank the zoo?

    Columns: ``models``; ``seeds`` (runs per model at the chosen setting); ``mean`` accuracy;
    ``spread`` = the standard deviation across models of their mean accuracy; ``range`` = best
    minus worst model; ``seed_sd`` = the pooled within-model standard deviation of one run,
    :math:`\sqrt{\overline{s_m^2}}`; ``se_mean`` = ``seed_sd`` / :math:`\sqrt{\text{seeds}}` (the
    noise of a model's mean); ``ratio`` = ``spread`` / ``se_mean``.  A ratio near 1 means the
    differences between models are no larger than the noise of measuring them.
    """
    runs = selected_runs(gt, protocol)
    rows = []
    for task, group in runs.groupby("task", sort=True):
        per_model = group.groupby("model")["test"]
        means = per_model.mean()
        n_seeds = int(per_model.size().min())
        var = per_model.var(ddof=1).dropna()
        seed_sd = float(np.sqrt(var.mean())) if len(var) else float("nan")
        se_mean = seed_sd / np.sqrt(n_seeds) if n_seeds > 0 else float("nan")
        spread = float(means.std(ddof=1))
        rows.append({
            "task": task, "models": int(means.size), "seeds": n_seeds,
            "mean": float(means.mean()), "spread": spread,
            "range": float(means.max() - means.min()), "seed_sd": seed_sd,
            "se_mean": float(se_mean), "ratio": float(spread / se_mean) if se_mean > 0 else np.inf,
        })  # fmt: skip
    return pd.DataFrame(rows).set_index("task")


def noise_ceiling(gt: pd.DataFrame, protocol: str = "finetune") -> pd.DataFrame:
    r"""Per task: :math:`\tau_w` between the ground truths of two disjoint halves of the seeds.

    The seeds are split into a part of :math:`\lfloor S/2 \rfloor` seeds and the rest, as
    :func:`split_half_ceiling` does (every distinct split when there are at most 200, e.g. 3
    with 3 or 4 seeds, else 200 random ones); each split gives the :math:`\tau_w` between the
    per-model mean accuracies of its two parts.  Columns ``ceiling`` (the mean over splits),
    ``low`` and ``high`` (min and max) and ``splits``.  No metric can be expected to agree with
    the ground truth much better than the ground truth agrees with itself.
    """
    runs = selected_runs(gt, protocol)
    rows = []
    for task, group in runs.groupby("task", sort=True):
        table = group.pivot_table(index="model", columns="seed", values="test", aggfunc="mean")
        taus = _split_half_taus(table.dropna(axis=1), f"task {task!r}: a noise ceiling")
        rows.append({"task": task, "ceiling": float(np.mean(taus)), "low": float(np.min(taus)),
                     "high": float(np.max(taus)), "splits": len(taus)})  # fmt: skip
    return pd.DataFrame(rows).set_index("task")


def zoo_features(
    task: str,
    *,
    split: Literal["train", "trainval"] = "trainval",
    models: Sequence[str] | None = None,
    zoo_dir: str | os.PathLike[str] | None = None,
    cache: str | os.PathLike[str] | None = None,
) -> dict[str, tuple[NDArray[np.float32], NDArray[np.int64]]]:
    """``{model: (features, labels)}`` of every zoo encoder on a task's labelled images.

    ``split="trainval"`` (default) scores the training and validation images together: every
    labelled image a practitioner holds before fine-tuning; ``"train"`` scores the training
    images only.  Features are cached by :func:`ped.bench.zoo.train.task_features`.
    """
    from ped.bench.zoo.train import task_features

    if split not in ("train", "trainval"):
        raise ValueError(f"split must be 'train' or 'trainval', got {split!r}")
    feats = task_features(task, zoo_dir=zoo_dir, cache=cache, names=models)
    out = {}
    for name, f in feats.items():
        if split == "train":
            out[name] = (f["x_train"], f["y_train"])
        else:
            out[name] = (np.concatenate([f["x_train"], f["x_val"]]),
                         np.concatenate([f["y_train"], f["y_val"]]))  # fmt: skip
    return out


def score_zoo(
    features: Mapping[str, tuple[NDArray[Any], NDArray[Any]]],
    metrics: Sequence[str] | None = None,
    *,
    ped: bool = False,
    reference: Reference = "source",
    zoo_dir: str | os.PathLike[str] | None = None,
    definitions: str = "release",
    **ped_options: Any,
) -> pd.DataFrame:
    """Score every model's features with every metric, on the features or after PED.

    ``metrics`` are names of :data:`ped.metrics.METRICS`, the metrics that need only features
    and target labels (default: all of them; LEEP and NCE need a source classifier, which
    self-supervised encoders do not have), or of :data:`ped.metrics.ZOO_METRICS` (NCTI, ETran),
    whose scores are relative to the zoo: their terms are computed per model and combined over
    the models of ``features``; their rows follow the others'.

    ``definitions`` picks each metric's options from :data:`ped.metrics.DEFINITIONS`:
    ``"release"`` (default) as the released SFDA/PED code computes them, which is what the
    published Table 1 reports (SFDA and NLEEP without their log), or ``"paper"``.

    ``reference="source"`` standardises PED with the encoder's per-dimension mean and std on the
    held-out pool images (:func:`ped.bench.zoo.train.load_stats`, the paper's ImageNet-val analogue);
    ``"target"`` with the target features' own statistics.  ``ped_options`` go to
    :func:`ped.potential_energy_descent` (``nsigma``, ``time_step``, ``max_steps``, ``variant``...).
    Returns a tidy table ``model, metric, ped, score, seconds, ped_seconds, ped_steps``.
    """
    from ped.fullscale.scoring import ScoreItem, resolve_metrics, score_items
    from ped.metrics import METRICS, ZOO_METRICS

    if metrics is None:
        metrics = list(METRICS)
    per_model = [m for m in metrics if m not in ZOO_METRICS]
    zoo_level = [m for m in metrics if m in ZOO_METRICS]
    fns = resolve_metrics(per_model, definitions)
    if reference not in ("source", "target"):
        raise ValueError(f"reference must be 'source' or 'target', got {reference!r}")
    if not ped and ped_options:
        raise ValueError(f"PED options {sorted(ped_options)} given with ped=False")
    runs = [_ped_run(model, x, y, ped, reference, zoo_dir, ped_options)
            for model, (x, y) in features.items()]  # fmt: skip
    # one PED run per model, shared by the per-model and the zoo-level metrics
    items = [ScoreItem(model, "", run[0], y)
             for (model, (_, y)), run in zip(features.items(), runs)]  # fmt: skip
    rows = score_items(items, fns, record_errors=False) if fns else []
    rows += _zoo_level_rows(items, zoo_level)
    table = pd.DataFrame(rows, columns=["model", "metric", "score", "seconds"])
    moved = pd.DataFrame([(m, s, n) for m, (_, s, n) in zip(features, runs)],
                         columns=["model", "ped_seconds", "ped_steps"])  # fmt: skip
    table = table.merge(moved, on="model", how="left", sort=False).assign(ped=ped)
    return table[["model", "metric", "ped", "score", "seconds", "ped_seconds", "ped_steps"]]


def _ped_run(model: str, x: NDArray[Any], y: NDArray[Any], ped: bool, reference: str,
             zoo_dir: str | os.PathLike[str] | None,
             ped_options: Mapping[str, Any]) -> tuple[NDArray[Any], float, int]:  # fmt: skip
    """``(features, PED seconds, PED steps)`` of one model: its features moved by
    :func:`ped.potential_energy_descent` when ``ped`` (standardised with the model's pool
    statistics for ``reference="source"``, the target's own otherwise), else as given."""
    if not ped:
        return x, 0.0, 0
    from ped.bench.zoo.train import load_stats
    from ped.dynamics import potential_energy_descent

    stats = load_stats(model, zoo_dir) if reference == "source" else None
    start = time.perf_counter()
    result = potential_energy_descent(x, y, reference=stats, **ped_options)
    return result.features, time.perf_counter() - start, result.steps


def _zoo_level_rows(items: Sequence[Any], names: Sequence[str]) -> list[dict[str, Any]]:
    """Rows of :func:`score_zoo` for the zoo-level metrics ``names``: every model's terms,
    combined over the models."""
    from ped.metrics import ZOO_METRICS

    rows = []
    for name in names:
        terms_fn, combine = ZOO_METRICS[name]
        terms, seconds = [], []
        for item in items:
            start = time.perf_counter()
            terms.append(terms_fn(item.features, item.labels))
            seconds.append(time.perf_counter() - start)
        rows += [{"model": item.model, "metric": name, "score": float(score), "seconds": sec}
                 for item, sec, score in zip(items, seconds, combine(terms))]  # fmt: skip
    return rows


def tau_table(scores: pd.DataFrame, accuracy: pd.Series) -> pd.Series:
    r""":math:`\tau_w` of each metric's scores (``scores``: columns ``model, metric, score``)
    against ``accuracy`` (indexed by model), one value per metric."""
    out = {}
    for metric, group in scores.groupby("metric", sort=False):
        s = group.set_index("model")["score"]
        missing = set(s.index) - set(accuracy.index)
        if missing:
            raise ValueError(f"no ground truth for model(s) {sorted(missing)}")
        out[metric] = weighted_tau(s.to_numpy(), accuracy.loc[s.index].to_numpy())
    return pd.Series(out, name="tau_w")


def seed_bootstrap_tau(
    scores: pd.Series,
    runs: pd.DataFrame,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    random_state: int = 0,
) -> BootstrapInterval:
    r"""Bootstrap interval of :math:`\tau_w` over the ground-truth seeds.

    ``scores`` is indexed by model; ``runs`` is a models x seeds table of test accuracies (one
    task, the selected setting).  Each resample draws seed columns with replacement, averages them
    per model, and recomputes :math:`\tau_w` against the (fixed) scores.
    """
    missing = set(scores.index) - set(runs.index)
    if missing:
        raise ValueError(f"the runs table is missing model(s) {sorted(missing)}")
    table = runs.loc[scores.index]
    if table.isna().any().any():
        raise ValueError("the runs table has missing seeds for some model")
    values = table.to_numpy(dtype=float)
    s = scores.to_numpy(dtype=float)

    def stat(idx: NDArray[np.intp]) -> float:
        return weighted_tau(s, values[:, idx].mean(1))

    return bootstrap_ci(stat, values.shape[1], n_resamples=n_resamples, confidence=confidence,
                        random_state=random_state)  # fmt: skip


def synthetic_task(
    n: int, dim: int, n_classes: int, *, seed: int = 0, mean_scale: float = 0.4
) -> tuple[NDArray[np.float32], NDArray[np.intp]]:
    r"""Synthetic features of a given shape for timing (the paper's Flowers: 8189, 2048, 102).

    Gaussian classes, float32, seeded: noise with a decaying spectrum (std of direction
    :math:`k` is :math:`1/\sqrt{k}`) in a random rotation, so that PCA-based metrics see a
    realistic number of components, and class means in the 64 highest-variance directions at
    ``mean_scale`` times the noise std, so that the classes overlap (at the Flowers shape SFDA is
    about -0.14 and GBC about -680) instead of being separable in low-noise directions.  Labels
    cycle through ``0..n_classes-1`` and are shuffled.
    """
    if n < n_classes or dim < 1 or n_classes < 2:
        raise ValueError(f"need n >= n_classes >= 2 and dim >= 1, got {n}, {dim}, {n_classes}")
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    rng.shuffle(y)
    rotation = np.linalg.qr(rng.standard_normal((dim, dim)))[0]
    scales = 1.0 / np.sqrt(np.arange(1, dim + 1))
    k = min(64, dim)
    means = (rng.standard_normal((n_classes, k)) * scales[:k] * mean_scale) @ rotation[:, :k].T
    x = means[y] + (rng.standard_normal((n, dim)) * scales) @ rotation.T
    return x.astype(np.float32), y.astype(np.intp)


# --------------------------------------------------------------------------------------------
# Can a ground truth rank its zoo?  The rebuilt benchmark's acceptance checks
# --------------------------------------------------------------------------------------------

#: Thresholds of :func:`ground_truth_checks` (the rebuilt benchmark's acceptance criteria).
CHECK_THRESHOLDS: dict[str, float] = {
    "pretrain_gap": 3.0,      # points: median pretrained minus random init
    "pretrain_z": 3.0,        # that gap over its standard error
    "separability": 5.0,      # SD of model means / SE of one model's mean, most extreme left out
    "eval_seeds": 6,          # evaluation seeds per model and task
    "ceiling": 0.8,           # split-half noise ceiling (tau_w)
}  # fmt: skip


def complete_cells(gt: pd.DataFrame, *, min_seeds: int | None = None) -> pd.DataFrame:
    """The runs of the rebuilt protocol's table whose model x task cell is complete, balanced.

    A cell is complete when it has evaluation runs for at least ``min_seeds`` seeds (default:
    the common evaluation seeds of :data:`ped.bench.zoo.finetune.PROTOCOL`, six); cells still
    selecting or evaluating are left out, selection runs included.  Each task is then balanced:
    only the evaluation seeds that every complete cell of the task has are kept, so that a task
    whose seeds are being extended (``Protocol.task_eval_seeds``) reports its extra seeds once
    every model has them, and every model's mean is over the same seeds.  Raises
    ``ValueError`` without a ``role`` column (the first benchmark's table has no
    selection/evaluation split) or for ``min_seeds`` < 2.
    """
    if "role" not in gt.columns:
        raise ValueError("the ground truth has no 'role' column (the rebuilt protocol's table "
                         "is needed)")  # fmt: skip
    if min_seeds is None:
        from ped.bench.zoo.finetune import PROTOCOL

        min_seeds = len(PROTOCOL.eval_seeds)
    if min_seeds < 2:
        raise ValueError(f"min_seeds must be >= 2, got {min_seeds}")
    seeds = gt[gt["role"] == "eval"].groupby(["model", "task"])["seed"].agg(frozenset)
    done = seeds[seeds.map(len) >= min_seeds]
    complete = set(done.index)
    shared = {(task, seed) for task, cells in done.groupby(level="task")
              for seed in frozenset.intersection(*cells)}  # fmt: skip
    keep = [(m, t) in complete and (role != "eval" or (t, s) in shared)
            for m, t, role, s in zip(gt["model"], gt["task"], gt["role"], gt["seed"])]
    return gt[np.asarray(keep, dtype=bool)].reset_index(drop=True)


def as_rebuilt_table(gt: pd.DataFrame) -> pd.DataFrame:
    """The first benchmark's fine-tuning runs in the rebuilt protocol's form, so that
    :func:`ground_truth_checks` measures both benchmarks the same way.

    The first protocol selected on its first seed's grid and reported every seed at the chosen
    setting, the selecting run included: here the grid runs get ``role="select"`` and the runs
    at the chosen setting (:func:`selected_runs`) ``role="eval"``, so the first seed appears in
    both and the checks report the seeds as not disjoint, as they were.  A table that already
    has a ``role`` column is returned unchanged (a copy).
    """
    if "role" in gt.columns:
        return gt.copy()
    runs = gt[gt["protocol"] == "finetune"]
    if runs.empty:
        raise ValueError("the ground truth has no fine-tuning run")
    first = runs.groupby(["model", "task"])["seed"].transform("min")
    select = runs[runs["seed"] == first].assign(role="select")
    chosen = selected_runs(runs).assign(role="eval")
    return pd.concat([select, chosen], ignore_index=True)


def _eval_table(gt: pd.DataFrame, task: str) -> pd.DataFrame:
    """models x evaluation seeds of one task's test accuracies (rebuilt protocol)."""
    runs = gt[(gt["task"] == task) & (gt["role"] == "eval")]
    return runs.pivot_table(index="model", columns="seed", values="test", aggfunc="mean")


def split_half_ceiling(
    table: pd.DataFrame, *, n_splits: int = 200, random_state: int = 0
) -> tuple[float, int]:
    r"""Mean :math:`\tau_w` between the per-model means of two halves of the seeds.

    ``table`` is models x seeds.  Every split of the :math:`S` seeds into :math:`\lfloor S/2
    \rfloor` and the rest is used when there are at most ``n_splits`` distinct ones (10 for 6
    seeds), else ``n_splits`` random ones; both orders of a split give the same
    :math:`\tau_w`, so each is counted once.  Returns ``(mean tau_w, splits used)``.
    """
    taus = _split_half_taus(table, "a split-half ceiling", n_splits=n_splits,
                            random_state=random_state)  # fmt: skip
    return float(np.mean(taus)), len(taus)


def _split_half_taus(
    table: pd.DataFrame, what: str, *, n_splits: int = 200, random_state: int = 0
) -> list[float]:
    r"""The :math:`\tau_w` of each split of :func:`split_half_ceiling` (``what`` names the
    caller in the error for fewer than 2 seeds)."""
    seeds = list(table.columns)
    if len(seeds) < 2:
        raise ValueError(f"{what} needs at least 2 seeds per model")
    half = len(seeds) // 2
    distinct = math.comb(len(seeds), half) // (2 if 2 * half == len(seeds) else 1)
    if distinct > n_splits:  # never enumerated: C(22, 11) alone is 7e5 splits
        rng = np.random.default_rng(random_state)
        splits = [tuple(rng.permutation(len(seeds))[:half]) for _ in range(n_splits)]
    else:
        splits = list(itertools.combinations(range(len(seeds)), half))
        if 2 * half == len(seeds):  # {A, B} and {B, A}: keep the one holding seed 0
            splits = [p for p in splits if 0 in p]
    values = table.to_numpy(dtype=float)
    taus = []
    for part in splits:
        rest = [i for i in range(len(seeds)) if i not in part]
        taus.append(weighted_tau(values[:, list(part)].mean(1), values[:, rest].mean(1)))
    return taus


def ground_truth_checks(
    gt: pd.DataFrame,
    *,
    random_model: str = "random_init",
    n_resamples: int = 1000,
    random_state: int = 0,
    min_seeds: int | None = None,
) -> pd.DataFrame:
    r"""Per task, whether the rebuilt ground truth can rank the zoo: the four acceptance checks.

    ``gt`` is a table of the rebuilt protocol (:data:`ped.bench.zoo.finetune.COLUMNS_V2`: a ``role``
    column tells selection runs from evaluation runs).  Columns of the result, per task:

    1. *Pretraining matters*: ``pretrain_gap`` = median over the pretrained models of their mean
       accuracy minus ``random_model``'s, in points; ``pretrain_se`` its standard error, the SD
       of the gap over ``n_resamples`` bootstrap resamples of each model's evaluation seeds;
       ``pretrain_z`` = gap / SE.  Passes (``ok_pretrain``) at gap >= 3 and z >= 3.
    2. *Separability*: ``separability`` = SD across models of their mean accuracies divided by
       the SE of one model's mean (pooled within-model seed SD / :math:`\sqrt{S}`), with the
       model farthest from the median of the means left out (``left_out``).  Passes at >= 5.
    3. *Crisp ground truth*: ``eval_seeds`` (fewest per model), ``disjoint`` (no seed used
       both for selection and evaluation), ``ceiling`` = :func:`split_half_ceiling`.  Passes
       with >= 6 seeds, disjoint seeds and a ceiling >= 0.8.
    4. *Interior selection*: ``lr_edges`` and ``wd_edges`` count the models whose selected
       learning rate (weight decay) is the smallest or largest value tried for that model and
       task.  Passes at zero.  A weight decay of 0 is the end of its axis, not an edge of the
       grid (there is nothing below it to try): ``wd_zero`` counts those selections apart.

    Only complete cells count (:func:`complete_cells` with ``min_seeds``), on the seeds they
    share: ``models`` says how many per task.
    The thresholds are :data:`CHECK_THRESHOLDS`; ``ok`` is true when all four pass.
    """
    need = {"model", "task", "role", "seed", "lr", "wd", "val", "test"}
    missing = need - set(gt.columns)
    if missing:
        raise ValueError(f"the ground truth lacks the column(s) {sorted(missing)} (the rebuilt "
                         "protocol's table is needed)")  # fmt: skip
    th = CHECK_THRESHOLDS
    rng = np.random.default_rng(random_state)
    gt = complete_cells(gt, min_seeds=min_seeds)
    if gt.empty:
        raise ValueError("the ground truth has no complete model x task cell (too few "
                         "evaluation seeds everywhere)")  # fmt: skip
    rows = []
    for task in sorted(gt["task"].unique()):
        table = _eval_table(gt, task)
        if random_model not in table.index:
            raise ValueError(f"task {task!r}: no evaluation runs of {random_model!r}")
        values = table.to_numpy(dtype=float)
        n_models, n_seeds = values.shape
        means = values.mean(1)
        is_random = np.asarray(table.index == random_model)
        gap = float(np.median(means[~is_random]) - means[is_random][0])
        boot = np.empty(n_resamples)
        for b in range(n_resamples):
            idx = rng.integers(0, n_seeds, (n_models, n_seeds))
            m = np.take_along_axis(values, idx, axis=1).mean(1)
            boot[b] = np.median(m[~is_random]) - m[is_random][0]
        se = float(boot.std(ddof=1))
        far = int(np.argmax(np.abs(means - np.median(means))))
        keep = np.arange(n_models) != far
        seed_sd = float(np.sqrt(values[keep].var(axis=1, ddof=1).mean()))
        separability = float(means[keep].std(ddof=1) / (seed_sd / np.sqrt(n_seeds)))
        ceiling, splits = split_half_ceiling(table, random_state=random_state)
        runs = gt[gt["task"] == task]
        sel_seeds = set(runs.loc[runs["role"] == "select", "seed"])
        eval_seeds = set(runs.loc[runs["role"] == "eval", "seed"])
        lr_edges = wd_edges = wd_zero = 0
        for _, cell in runs.groupby("model"):
            chosen = cell[cell["role"] == "eval"].iloc[0]
            tried = cell[cell["role"] == "select"]
            lr_edges += chosen["lr"] in (tried["lr"].min(), tried["lr"].max())
            wd_zero += chosen["wd"] == 0
            wd_edges += chosen["wd"] != 0 and chosen["wd"] in (tried["wd"].min(),
                                                               tried["wd"].max())  # fmt: skip
        row = {
            "task": task, "models": n_models, "eval_seeds": n_seeds,
            "pretrain_gap": gap, "pretrain_se": se, "pretrain_z": gap / se if se > 0 else np.inf,
            "separability": separability, "left_out": table.index[far],
            "disjoint": not (sel_seeds & eval_seeds), "ceiling": ceiling, "ceiling_splits": splits,
            "lr_edges": int(lr_edges), "wd_edges": int(wd_edges), "wd_zero": int(wd_zero),
        }  # fmt: skip
        row["ok_pretrain"] = gap >= th["pretrain_gap"] and row["pretrain_z"] >= th["pretrain_z"]
        row["ok_separable"] = separability >= th["separability"]
        row["ok_crisp"] = bool(n_seeds >= th["eval_seeds"] and row["disjoint"]
                               and ceiling >= th["ceiling"])  # fmt: skip
        row["ok_interior"] = lr_edges == 0 and wd_edges == 0
        row["ok"] = all(row[k] for k in ("ok_pretrain", "ok_separable", "ok_crisp", "ok_interior"))
        rows.append(row)
    return pd.DataFrame(rows).set_index("task")


def seeds_needed(checks: pd.DataFrame, *, separability: float | None = None) -> pd.Series:
    r"""Per task, the evaluation seeds the separability check would need at the measured noise.

    The separability is :math:`q_S = \mathrm{SD}(\bar a_m) / (s / \sqrt{S})` (see
    :func:`ground_truth_checks`).  The observed variance of the models' means holds their true
    spread plus the noise of a mean, :math:`V + s^2/S`, so :math:`q_S^2 = S V / s^2 + 1`: with
    :math:`V` and :math:`s` held at their measured values, :math:`S'` seeds give
    :math:`q_{S'}^2 = (S'/S)(q_S^2 - 1) + 1`, and the threshold :math:`q` (default
    :data:`CHECK_THRESHOLDS` ``["separability"]``) takes

    .. math:: S' = \left\lceil S\,\frac{q^2 - 1}{q_S^2 - 1} \right\rceil

    seeds (never fewer than measured).  A task whose measured separability is at most 1 shows
    no spread beyond the noise at all: no number of seeds is projected to suffice (``-1``).
    """
    q = CHECK_THRESHOLDS["separability"] if separability is None else float(separability)
    if not q > 1:
        raise ValueError(f"the separability threshold must be > 1 (1 is pure noise), got {q}")
    sep = checks["separability"].to_numpy(dtype=float)
    seeds = checks["eval_seeds"].to_numpy(dtype=float)
    need = np.full(len(sep), -1, dtype=np.int64)
    ok = sep > 1
    need[ok] = np.maximum(seeds[ok], np.ceil(seeds[ok] * (q**2 - 1) / (sep[ok] ** 2 - 1) - 1e-9))
    return pd.Series(need, index=checks.index, name="seeds needed")


# --------------------------------------------------------------------------------------------
# What the benchmark is made of: the zoo, the tasks, the ground truth's quality and its cost
# --------------------------------------------------------------------------------------------


def zoo_records(zoo_dir: str | os.PathLike[str] | None = None) -> dict[str, dict[str, Any]]:
    """``{encoder: record}`` of every trained encoder of a zoo folder (default: the committed
    ``data/zoo``), in the manifest's order; a record is ``<name>.json`` as
    :func:`ped.bench.zoo.train.pretrain` writes it (method, hyperparameters, epochs, steps, loss curve,
    wall time...)."""
    import json

    from ped.bench.zoo.train import default_zoo_dir, read_manifest

    zoo = Path(zoo_dir) if zoo_dir else default_zoo_dir()
    names = list(read_manifest(zoo)["encoders"])
    if not names:
        raise ValueError(f"no trained encoder in {zoo}")
    return {name: json.loads((zoo / f"{name}.json").read_text()) for name in names}


def zoo_table(records: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per encoder: method, epochs, optimiser steps, batch size, final loss, wall time
    (minutes), parameters and checkpoint size (MB)."""
    return pd.DataFrame([
        {"model": name, "method": r["method"], "epochs": r["epochs"], "steps": r["steps"],
         "batch size": r.get("hyperparameters", {}).get("batch_size"),
         "final loss": r["final_loss"], "wall time (min)": r["wall_time_s"] / 60,
         "parameters": r["n_parameters"], "checkpoint (MB)": r["checkpoint_bytes"] / 1e6}
        for name, r in records.items()
    ]).set_index("model")  # fmt: skip


def task_table(names: Sequence[str], *, cache: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """One row per task: classes, images per split, whether its domain is in the pretraining
    pool, and what its images are."""
    from ped.bench.tasks import load_task

    rows = []
    for name in names:
        t = load_task(name, cache=cache)
        rows.append({"task": name, "classes": len(t.classes), **t.sizes(),
                     "pool domain": "in" if t.spec.in_pool_domain else "out",
                     "images": t.spec.domain})  # fmt: skip
    return pd.DataFrame(rows).set_index("task")


def ground_truth_summary(gt: pd.DataFrame, protocol: str = "finetune") -> pd.DataFrame:
    r"""Per task, can its ground truth rank the zoo: :func:`spread_vs_noise` beside the
    :func:`noise_ceiling` and its range, and, when the table has linear-probe runs, the
    agreement :math:`\tau_w` (linear probe, fine-tuning) of the two ground truths."""
    spread = spread_vs_noise(gt, protocol)
    ceiling = noise_ceiling(gt, protocol)[["ceiling", "low", "high"]]
    summary = spread.join(ceiling)
    if protocol == "finetune" and "linear" in set(gt["protocol"]):
        finetune, linear = model_accuracy(gt, "finetune"), model_accuracy(gt, "linear")
        summary["τ_w(linear, fine-tune)"] = pd.Series({
            t: weighted_tau(linear.loc[finetune.index, t], finetune[t]) for t in finetune.columns})
    return summary


def compute_cost(gt: pd.DataFrame, zoo: pd.DataFrame) -> pd.DataFrame:
    """Machine time of the benchmark: runs, total and median seconds, and hours, per
    ground-truth protocol (and role, for the rebuilt protocol: ``finetune/select``,
    ``finetune/eval``) and for the pretraining of the zoo's self-supervised encoders
    (``zoo``: :func:`zoo_table`)."""
    keys = gt["protocol"] + ("/" + gt["role"] if "role" in gt.columns else "")
    cost = gt.groupby(keys)["seconds"].agg(["count", "sum", "median"])
    ssl = zoo[zoo["method"] != "random"]
    seconds = ssl["wall time (min)"] * 60
    cost.loc["pretraining"] = [len(ssl), seconds.sum(), seconds.median()]
    cost["hours"] = cost["sum"] / 3600
    return cost


def method_timings(
    x: NDArray[Any],
    y: NDArray[Any],
    metrics: Sequence[str],
    *,
    ped_options: Mapping[str, Any],
    reference: Any = None,
    repeats: int = 3,
    metric_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> pd.Series:
    """Median wall time (seconds, over ``repeats`` calls; ``timeit.repeat``) of each metric of
    :data:`ped.metrics.METRICS` on ``(x, y)`` (options from ``metric_options``), and of one
    PED run (``ped_options``, standardised by ``reference``), indexed by display name and
    ``"PED"``."""
    import statistics
    import timeit

    from ped.dynamics import potential_energy_descent
    from ped.metrics import DISPLAY_NAMES, METRICS

    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    options = metric_options or {}

    def median(fn: Any) -> float:
        return statistics.median(timeit.repeat(fn, number=1, repeat=repeats))

    row = {DISPLAY_NAMES.get(m, m): median(lambda m=m: METRICS[m](x, y, **options.get(m, {})))
           for m in metrics}  # fmt: skip
    row["PED"] = median(lambda: potential_energy_descent(x, y, reference=reference,
                                                         **ped_options))  # fmt: skip
    return pd.Series(row, name="seconds")


def effective_rank(features: ArrayLike) -> float:
    r"""Effective rank of a feature matrix (Roy and Vetterli, EUSIPCO 2007): how many
    directions the features really use, the diagnostic of a collapsed self-supervised encoder.

    .. math::
        \operatorname{erank}(X) = \exp\Bigl(-\sum_k p_k \log p_k\Bigr),\qquad
        p_k = \frac{\sigma_k}{\sum_j \sigma_j},

    with :math:`\sigma_k` the singular values of the column-centred features (float64; terms
    with :math:`p_k = 0` contribute 0).  It lies in [1, min(N - 1, D)]: r for data spread
    equally over r orthogonal directions, close to 1 when one direction dominates.  Invariant
    to a global rescaling, a translation and a rotation of the features.  Features with no
    variance at all are a ``ValueError``.
    """
    from scipy.linalg import svdvals
    from scipy.special import entr

    from ped._validation import check_features

    x = np.asarray(check_features(features), dtype=np.float64)
    if x.shape[0] < 2:
        raise ValueError(f"effective_rank needs at least 2 samples, got {x.shape[0]}")
    sigma = svdvals(x - x.mean(axis=0))
    total = float(sigma.sum())
    if not total > 0:
        raise ValueError("features have no variance (every sample is the same): no rank")
    return float(np.exp(entr(sigma / total).sum()))
