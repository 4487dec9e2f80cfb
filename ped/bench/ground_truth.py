r"""The fine-tuning ground truth of the embedded benchmark: reading it, checking it, and asking
whether it can rank its zoo.

:func:`load_ground_truth` reads the committed runs; :func:`model_accuracy` reduces them to one
accuracy per model and task (the test accuracy at the validation-selected setting, averaged over
seeds), :func:`spread_vs_noise` asks whether a task separates the models beyond the seed noise,
and :func:`noise_ceiling` measures how well one half of the seeds ranks the zoo like the other
half.  For the rebuilt protocol, :func:`complete_cells` keeps the finished, balanced cells and
:func:`ground_truth_checks` applies the acceptance checks (:data:`CHECK_THRESHOLDS`).
"""

from __future__ import annotations

import itertools
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ped.bench.zoo.finetune import COLUMNS, PROTOCOL, selected
from ped.evaluation import weighted_tau
from ped.paper import data_dir

__all__ = [
    "ground_truth_path",
    "load_ground_truth",
    "selected_runs",
    "model_accuracy",
    "spread_vs_noise",
    "noise_ceiling",
    "CHECK_THRESHOLDS",
    "complete_cells",
    "as_rebuilt_table",
    "split_half_ceiling",
    "ground_truth_checks",
    "seeds_needed",
    "ground_truth_summary",
]

logger = logging.getLogger(__name__)


def ground_truth_path() -> Path:
    """``data/ground_truth/ground_truth.csv`` (under :func:`ped.paper.data_dir`)."""
    return data_dir() / "ground_truth" / "ground_truth.csv"


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
    :data:`ped.bench.zoo.protocol.COLUMNS_V2`), the selection is already made: its ``eval`` runs, on
    seeds disjoint from the selection's, are returned (``select`` runs are left out).
    """
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
    the common evaluation seeds of :data:`ped.bench.zoo.protocol.PROTOCOL`, six); cells still
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

    ``gt`` is a table of the rebuilt protocol (:data:`ped.bench.zoo.protocol.COLUMNS_V2`: a ``role``
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
