r"""How often ``ped rank`` chooses well: the chapter "Choose a model for your own data".

:func:`evaluate_choice` runs :func:`ped.rank.rank_models` on each task of the embedded
benchmark as a user would, from the zoo's features of the labelled images alone, then reveals
the fine-tuning ground truth and measures the tool:

- **coverage**: whether the true best model (highest mean fine-tuning accuracy over the
  evaluation seeds) is among the recommended contenders;
- **regret** of taking the top recommendation: the true best's accuracy minus the recommended
  model's, in points;
- the same regret for two baselines that look at no features: a **random pick** (its expected
  regret, the mean over the models), and the **dataset-agnostic** choice, the model with the
  best mean accuracy on the other tasks (:func:`ped.evaluation.leave_one_task_out`; for a class
  subset of glyphs62 the other tasks exclude glyphs62 itself);
- each metric's :math:`\tau_w` against the ground truth (the consensus as minus its mean rank);
- given the evaluation runs themselves, the models the ground truth cannot tell from its best
  (:func:`tied_with_best`), and whether the contenders hold one of them (``covered_tied``) and
  the top recommendation is one (``top_tied``): a contender set drawn from the images alone
  cannot see the fine-tuning noise, so demanding the single best where the ground truth has
  several is stricter than the ground truth itself.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ped._io import write_json_atomic
from ped.bench.benchmarks import get_benchmark
from ped.bench.ground_truth import model_accuracy
from ped.bench.replication import primary_cells
from ped.bench.scoring import zoo_features
from ped.bench.verdict_analysis import PRIMARY_METRICS, accuracy_table
from ped.bench.verdict_store import load_scores
from ped.evaluation import leave_one_task_out, weighted_tau
from ped.paper import data_dir
from ped.rank import CONSENSUS, DEFAULT_METRICS, rank_models
from ped.replication import cell_changes

__all__ = ["ChoiceEvaluation", "evaluate_choice", "tied_with_best", "defaults_evidence", "EVIDENCE_FILE",
           "write_defaults_evidence", "read_defaults_evidence"]


@dataclass(frozen=True)
class ChoiceEvaluation:
    """The result of :func:`evaluate_choice`: ``per_task`` (one row per task: its shape, the
    recommendation and its probability of being best, the number of contenders, the true best,
    ``covered``, ``regret``, ``regret_random``, ``regret_agnostic`` and the agnostic choice),
    ``tau`` (task x metric :math:`\\tau_w`), and the ``rankings`` themselves."""

    per_task: pd.DataFrame
    tau: pd.DataFrame
    rankings: Mapping[str, Any]


def tied_with_best(runs: Mapping[str, Sequence[float]], alpha: float = 0.05) -> list[str]:
    r"""The models whose fine-tuning accuracy the ground truth cannot tell from the best's.

    ``runs`` maps each model to its accuracies over the evaluation seeds.  The best is the model
    with the highest mean; another model is *tied* with it unless a one-sided Welch test rejects
    "the best is no better" at level ``alpha``: with means :math:`\bar a_b, \bar a_m`,
    variances :math:`s_b^2, s_m^2` and run counts :math:`n_b, n_m`,

    .. math:: t = \frac{\bar a_b - \bar a_m}{\sqrt{s_b^2/n_b + s_m^2/n_m}},

    referred to Student's t with the Welch-Satterthwaite degrees of freedom
    (``scipy.stats.ttest_ind`` with ``equal_var=False``).  Returns the best first, then the
    tied models by decreasing mean.  Every model needs at least two runs.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    values = {m: np.asarray(v, dtype=np.float64) for m, v in runs.items()}
    short = [m for m, v in values.items() if v.size < 2 or not np.isfinite(v).all()]
    if not values or short:
        raise ValueError(f"every model needs at least two finite runs: {short or 'no models'}")
    order = sorted(values, key=lambda m: -values[m].mean())
    best = values[order[0]]
    tied = [order[0]]
    for m in order[1:]:
        if np.array_equal(values[m], best):
            tied.append(m)
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            p = stats.ttest_ind(best, values[m], equal_var=False, alternative="greater").pvalue
        # a NaN p (both without spread) ties, and so do runs scipy finds nearly identical
        if not p < alpha or any(issubclass(w.category, RuntimeWarning) for w in caught):
            tied.append(m)
    return tied


def evaluate_choice(
    accuracy: pd.DataFrame,
    *,
    tasks: Sequence[str],
    models: Sequence[str],
    zoo_dir: str | os.PathLike[str],
    cache: str | os.PathLike[str] | None = None,
    metrics: Sequence[str] | None = None,
    n_boot: int = 100,
    level: float = 0.95,
    parents: Mapping[str, str] | None = None,
    agnostic_tasks: Sequence[str] | None = None,
    runs: pd.DataFrame | None = None,
    alpha: float = 0.05,
) -> ChoiceEvaluation:
    """Rank ``models`` on each of ``tasks`` from their features (:func:`ped.bench.scoring.zoo_features`,
    the labelled images) and score the choice against ``accuracy`` (models x tasks, %; it must
    hold every task).  The dataset-agnostic baseline averages ``agnostic_tasks`` (default:
    ``tasks``) other than the task itself and, for a class subset, the task ``parents`` maps it
    to (the one it was cut from).  With ``runs`` (one row per evaluation run: ``model``,
    ``task``, ``test``), each task's row also has ``tied``, ``covered_tied`` and ``top_tied``
    (:func:`tied_with_best` at level ``alpha``)."""
    metrics = tuple(metrics or DEFAULT_METRICS)
    missing = [t for t in tasks if t not in accuracy.columns]
    if missing:
        raise ValueError(f"no ground truth for task(s) {missing}")
    parents = dict(parents or {})
    agnostic_tasks = list(agnostic_tasks or tasks)
    rows, taus, rankings = [], {}, {}
    for task in tasks:
        feats = zoo_features(task, models=list(models), zoo_dir=zoo_dir, cache=cache)
        y = next(iter(feats.values()))[1]
        ranking = rank_models({m: x for m, (x, _) in feats.items()}, y, metrics=metrics,
                              n_boot=n_boot, level=level)  # fmt: skip
        rankings[task] = ranking
        truth = accuracy.loc[list(models), task]
        best = truth.idxmax()
        kept = [t for t in agnostic_tasks if t not in (task, parents.get(task))]
        agnostic = leave_one_task_out(accuracy.loc[list(models), [*kept, task]], task).idxmax()
        chosen = ranking.best
        rows.append({"task": task, "images": ranking.n_images, "classes": ranking.n_classes,
                     "recommended": chosen,
                     "p_best": float(ranking.consensus().loc[chosen, "p_best"]),
                     "contenders": len(ranking.contenders), "true_best": best,
                     "covered": best in ranking.contenders,
                     "regret": float(truth[best] - truth[chosen]),
                     "regret_random": float(truth[best] - truth.mean()),
                     "agnostic_choice": agnostic,
                     "regret_agnostic": float(truth[best] - truth[agnostic]),
                     "warnings": len(ranking.warnings)})  # fmt: skip
        if runs is not None:
            here = runs[runs["task"] == task]
            tied = tied_with_best({m: here.loc[here["model"] == m, "test"] for m in models},
                                  alpha)  # fmt: skip
            rows[-1].update(tied=len(tied), covered_tied=bool(set(tied) & set(ranking.contenders)),
                            top_tied=chosen in tied)  # fmt: skip
        t = ranking.table
        taus[task] = {}
        for metric in (*metrics, CONSENSUS):
            s = t[t["metric"] == metric].set_index("model")["score"].loc[list(models)]
            sign = -1.0 if metric == CONSENSUS else 1.0  # the consensus score is a mean rank
            taus[task][metric] = weighted_tau(sign * s.to_numpy(), truth.to_numpy())
    return ChoiceEvaluation(pd.DataFrame(rows).set_index("task"), pd.DataFrame(taus).T,
                            rankings)  # fmt: skip


#: Where the evidence behind ``ped rank``'s defaults is stored (under ``ped.paper.data_dir``);
#: ``ped rank --help`` quotes it, chapter 13 checks it against its own computation.
EVIDENCE_FILE = "measurements/rank_defaults.json"


def defaults_evidence(
    result: ChoiceEvaluation | None = None,
    *,
    tasks: Sequence[str] | None = None,
    n_boot: int = 10,
) -> dict[str, Any]:
    r"""The figures behind ``ped rank``'s defaults, on the rebuilt benchmark's ``tasks`` (default:
    all): each metric's mean :math:`\tau_w` over the tasks (k-NN accuracy, LogME and their
    consensus from ``result``, an :func:`evaluate_choice` that holds the tasks, computed with
    ``n_boot`` resamples when not given; LogME, SFDA and GBC from the verdict's stored scores) and
    PED's change of the paper's three metrics' mean :math:`\tau_w` (the verdict's point
    estimate).  Point estimates only: the resamples do not change them."""
    bm = get_benchmark("v2")
    gt, models = bm.load()
    tasks = list(tasks or bm.tasks)
    if result is None:
        result = evaluate_choice(model_accuracy(gt), tasks=tasks, models=models,
                                 zoo_dir=bm.zoo_dir(), n_boot=n_boot)  # fmt: skip
    stored = load_scores(bm.verdict_dir(), tasks, models)
    tau = {m: float(result.tau.loc[tasks, m].mean()) for m in (*DEFAULT_METRICS, CONSENSUS)}
    for metric in PRIMARY_METRICS:
        tau[f"{metric} (verdict)"] = float(np.mean([
            weighted_tau(s[f"base__{metric}"][0], accuracy_table(gt, t, s["models"]).mean(axis=1))
            for t, s in stored.items()]))  # fmt: skip
    cells, _ = primary_cells(stored, gt)
    return {"tasks": len(tasks), "models": len(models), "mean_tau_w": tau,
            "ped_change": float(cell_changes(cells).mean())}


def write_defaults_evidence(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Compute :func:`defaults_evidence` and store it (default :data:`EVIDENCE_FILE`)."""
    evidence = defaults_evidence()
    write_json_atomic(Path(path) if path else data_dir() / EVIDENCE_FILE, evidence)
    return evidence


def read_defaults_evidence() -> dict[str, Any] | None:
    """The stored evidence, or ``None`` where the data folder is absent (an installed wheel)."""
    try:
        path = data_dir() / EVIDENCE_FILE
    except FileNotFoundError:
        return None
    if not path.is_file():
        return None
    return json.loads(path.read_text())
