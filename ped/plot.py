"""The book's figures and their style (matplotlib).

- :func:`use_book_style`: the colour-blind-safe palette, resolution and grid every chapter uses.
- :func:`before_after_figure`: a metric on static features and after PED against the width of
  the digits zoo's models (:func:`ped.examples.digits_zoo`), one panel per metric.
- :func:`balls_figure`: 2-D classes and their balls before and after the descent (chapter 1).
- :func:`rank_scatter`: the paper's Figure 7, each model's rank by a metric against its rank by
  fine-tuning accuracy, with and without PED, one panel per task.
- The embedded benchmark's figures: :func:`pretraining_curves`, :func:`task_samples`,
  :func:`accuracy_matrix`, :func:`spread_noise` and :func:`acceptance_checks`; the mechanism test,
  :func:`mechanism_figure`; :func:`class_count_effect`; the paper's Figure 4, :func:`descent_tsne`;
  PED's hyperparameter sweeps, :func:`sensitivity_heatmaps`.
- :func:`ranking_figure`: a ``ped rank`` result, scores with intervals and the probability of
  being best; :func:`regret_figure`: the accuracy lost by each way of choosing, per task.

matplotlib is imported when a function is called, so ``import ped.plot`` works without it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.manifold import TSNE

from ped.metrics import DISPLAY_NAMES, PED_SUFFIX

__all__ = [
    "BOOK_STYLE",
    "use_book_style",
    "before_after_figure",
    "rank_scatter",
    "pretraining_curves",
    "task_samples",
    "accuracy_matrix",
    "spread_noise",
    "acceptance_checks",
    "mechanism_figure",
    "class_count_effect",
    "descent_tsne",
    "ranking_figure",
    "regret_figure",
    "sensitivity_heatmaps",
    "balls_figure",
]

#: matplotlib settings of every figure of the book, on top of the colour-blind-safe
#: ``tableau-colorblind10`` style.
BOOK_STYLE: dict[str, Any] = {"figure.dpi": 110, "axes.grid": True, "grid.alpha": 0.3}


def use_book_style() -> None:
    """Set the book's figure style: ``tableau-colorblind10`` colours and :data:`BOOK_STYLE`."""
    import matplotlib.pyplot as plt

    plt.style.use("tableau-colorblind10")
    plt.rcParams.update(BOOK_STYLE)


def before_after_figure(
    table: Any,
    widths: Sequence[int],
    units: Mapping[str, str],
    *,
    probe: bool = False,
    title: str | None = None,
    panel_size: tuple[float, float] = (3.7, 3.5),
) -> Any:
    """One panel per metric of ``units`` (``{column: y-axis label}``): the column of ``table``
    (static features, circles) and ``<column>+PED`` (squares, dashed) against the model width on
    a log-2 axis.  ``probe`` adds the ``linear-probe accuracy`` column on a grey right axis (the
    reference ordering).  ``title`` replaces the metric name as the title of a single panel.
    Returns the figure."""
    import matplotlib.pyplot as plt

    if not units:
        raise ValueError("units names no metric to plot")
    if title is not None and len(units) != 1:
        raise ValueError("title is for a single-panel figure")
    x = np.asarray(widths)
    fig, axes = plt.subplots(1, len(units), figsize=(panel_size[0] * len(units), panel_size[1]),
                             squeeze=False)  # fmt: skip
    for ax, (label, unit) in zip(axes[0], units.items()):
        ax.plot(x, table[label], "o-", label="static")
        ax.plot(x, table[label + PED_SUFFIX], "s--", label="after PED")
        ax.set_xscale("log", base=2)
        ax.minorticks_off()
        ax.set_xticks(x, [str(w) for w in x])
        ax.set(xlabel="model width D (features)", ylabel=unit, title=title or label)
        if probe:
            right = ax.twinx()
            right.plot(x, table["linear-probe accuracy"], color="grey", lw=1, marker=".")
            right.set_ylabel("linear-probe accuracy")
            right.grid(False)
    axes[0][0].legend(loc="lower right" if probe else "best")
    fig.tight_layout()
    return fig


def rank_scatter(
    scores: Any, accuracy: Any, tau: Any, metric: str, tasks: Sequence[str], *,
    label: str | None = None,
) -> Any:
    r"""The paper's Figure 7: on each task of ``tasks``, every model's rank by ``metric`` (1 =
    highest score) against its rank by accuracy (1 = most accurate), on the extracted features
    (circles) and after PED (crosses), with the dashed diagonal of a perfect ranking.

    ``scores`` is the tidy table of :func:`ped.bench.table1.score_tasks`; ``accuracy`` models x tasks;
    ``tau`` the :math:`\tau_w` table of :func:`ped.bench.table1.tau_cells` (rows ``label`` and
    ``label+PED``), quoted in the legend; ``label`` is the metric's display name (default:
    ``metric``).  Returns the figure."""
    import matplotlib.pyplot as plt

    if not tasks:
        raise ValueError("no task to plot")
    label = label or metric
    fig, axes = plt.subplots(1, len(tasks), figsize=(4 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        truth_rank = accuracy[task].rank(ascending=False)
        for moved, marker in ((False, "o"), (True, "x")):
            cell = scores[(scores.task == task) & (scores.metric == metric)
                          & (scores.ped == moved)].set_index("model")["score"]  # fmt: skip
            row = label + (PED_SUFFIX if moved else "")
            ax.scatter(truth_rank.loc[cell.index], cell.rank(ascending=False), marker=marker,
                       label=f"{row} (τ_w = {tau.loc[row, task]:.2f})")  # fmt: skip
        n = len(truth_rank)
        ax.plot([1, n], [1, n], "--", color="grey", lw=1)
        ax.set(xlabel="ground-truth rank", ylabel=f"rank by {label}", title=task,
               xlim=(0.5, n + 0.5), ylim=(0.5, n + 0.5))  # fmt: skip
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def pretraining_curves(records: Mapping[str, Mapping[str, Any]], *, window: int = 10) -> Any:
    """Each self-supervised encoder's pretraining loss against the optimiser step, divided by
    the loss of the first step (a ``window``-step running mean); ``records`` as
    :func:`ped.bench.describe.zoo_records` returns them (random-init entries are skipped)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, r in records.items():
        if r["method"] == "random":
            continue
        curve = pd.Series(r["loss_curve"]).rolling(window, min_periods=1).mean()
        ax.plot(np.arange(1, len(curve) + 1), curve / abs(curve.iloc[0]), label=name, lw=1.2)
    ax.set(xlabel="optimiser step", ylabel="loss / first loss",
           title="Self-supervised pretraining of the zoo")  # fmt: skip
    ax.legend(ncol=3, fontsize=7)
    fig.tight_layout()
    return fig


def task_samples(tasks: Mapping[str, Any], samples_per_class: int = 6) -> Any:
    """One strip per task of a few training images per class (classes in order, separated by
    white gaps; at most 4 per class for tasks of more than 8 classes)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(tasks), 1, figsize=(9, 1.3 * len(tasks)), squeeze=False)
    for ax, (name, t) in zip(axes[:, 0], tasks.items()):
        per_class = min(samples_per_class, 4 if len(t.classes) > 8 else samples_per_class)
        images = []
        for c in range(len(t.classes)):
            idx = np.flatnonzero(t.y_train == c)[:per_class]
            images.extend([*t.x_train[idx], np.full_like(t.x_train[0], 255)])
        strip = np.concatenate(images[:-1], axis=1)
        ax.imshow(strip.squeeze(), cmap="gray" if strip.shape[-1] == 1 else None)
        ax.set_title(f"{name}: {', '.join(map(str, t.classes))}", fontsize=8, loc="left")
        ax.axis("off")
    fig.tight_layout()
    return fig


def accuracy_matrix(panels: Mapping[str, Any]) -> Any:
    """Heat maps of accuracy (%) per model (rows, in the first panel's order) and task
    (columns), one panel per ground truth (``{title: models x tasks}``); colours are
    standardised per column, so they compare models within a task."""
    import matplotlib.pyplot as plt

    first = next(iter(panels.values()))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 5), sharey=True,
                             squeeze=False)  # fmt: skip
    for ax, (title, acc) in zip(axes[0], panels.items()):
        order = acc.loc[first.index]
        z = (order - order.mean()) / order.std()
        ax.imshow(z.to_numpy(), cmap="viridis", aspect="auto")
        for (i, j), v in np.ndenumerate(order.to_numpy()):
            ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=7,
                    color="white" if z.iat[i, j] < 0 else "black")  # fmt: skip
        ax.set_xticks(range(order.shape[1]), order.columns, rotation=30, ha="right")
        ax.set_yticks(range(order.shape[0]), order.index)
        ax.set(title=f"{title} accuracy (%)", xlabel="task")
        ax.grid(False)
    axes[0][0].set_ylabel("model")
    fig.tight_layout()
    return fig


def spread_noise(runs: Any) -> Any:
    """Per task, every model's mean accuracy minus the task's mean over models, with an error
    bar of one standard deviation over its seeds; ``runs`` are the selected runs
    (:func:`ped.bench.ground_truth.selected_runs`)."""
    import matplotlib.pyplot as plt

    stats = runs.groupby(["task", "model"])["test"].agg(["mean", "std"]).reset_index()
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (_, group) in enumerate(stats.groupby("task")):
        offset = np.linspace(-0.3, 0.3, len(group))
        ax.errorbar(i + offset, group["mean"] - group["mean"].mean(), yerr=group["std"], fmt="o",
                    ms=3, capsize=2)  # fmt: skip
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks(range(stats["task"].nunique()), sorted(stats["task"].unique()), rotation=20)
    ax.set(ylabel="accuracy − task mean (percentage points)", xlabel="task",
           title="Differences between models versus seed noise")  # fmt: skip
    fig.tight_layout()
    return fig


def acceptance_checks(checks: Any, thresholds: Mapping[str, float]) -> Any:
    """The rebuilt benchmark's acceptance checks per task (:func:`ped.bench.ground_truth.ground_truth_checks`),
    one panel per measure, a bar per task and the required value as a dashed line: the gap of
    the median pretrained encoder over random init (points) and that gap over its standard
    error, the separability and the split-half noise ceiling.  Bars below the line fail."""
    import matplotlib.pyplot as plt

    panels = (("pretrain_gap", "pretraining gap", "points"),
              ("pretrain_z", "gap / standard error", "ratio"),
              ("separability", "separability", "SD of means / SE of a mean"),
              ("ceiling", "noise ceiling", "split-half τ_w"))  # fmt: skip
    fig, axes = plt.subplots(1, len(panels), figsize=(13, 3.6))
    tasks = list(checks.index)
    for ax, (key, title, unit) in zip(axes, panels):
        values = checks[key].to_numpy(dtype=float)
        ok = values >= thresholds[key]
        ax.bar(range(len(tasks)), values, color=np.where(ok, "C0", "C1"))
        ax.axhline(thresholds[key], color="black", ls="--", lw=1)
        ax.set_xticks(range(len(tasks)), tasks, rotation=35, ha="right", fontsize=8)
        ax.set(title=f"{title} (required ≥ {thresholds[key]:g})", ylabel=unit, xlabel="task")
    fig.suptitle("Can each task rank the zoo? Blue bars pass, orange bars fail")
    fig.tight_layout()
    return fig


def mechanism_figure(table: Any) -> Any:
    """The mechanism test of :func:`ped.bench.verdict_analysis.mechanism` over models and tasks
    (``table`` with a ``task`` column): left, the potential energy after fine-tuning and
    after PED relative to the energy before, per model and task (log scale; below 1 is
    lower); right, the cosine between fine-tuning's and PED's class shifts per model and
    task, against the ±1/√D band of random directions."""
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    tasks = sorted(table["task"].unique())
    for k, (column, label, marker) in enumerate((("energy_finetuned", "fine-tuned Z_T", "o"),
                                                 ("energy_ped", "PED(Z_0)", "x"))):
        for i, task in enumerate(tasks):
            rows = table[table["task"] == task]
            ratio = rows[column] / rows["energy_before"]
            left.scatter(np.full(len(rows), i) + (k - 0.5) * 0.3, ratio, marker=marker, s=18,
                         color=f"C{k}", label=label if i == 0 else None)
    left.axhline(1.0, color="grey", lw=0.8)
    left.set_yscale("log")
    left.set_xticks(range(len(tasks)), tasks, rotation=30, ha="right")
    left.set(title="Potential energy relative to Z_0", xlabel="task",
             ylabel="U / U(Z_0) (log scale)")  # fmt: skip
    left.legend(fontsize=8)
    for i, task in enumerate(tasks):
        rows = table[table["task"] == task]
        right.scatter(np.full(len(rows), i), rows["cosine"], s=18, color="C2")
        chance = float(rows["chance"].iloc[0])
        right.fill_between([i - 0.3, i + 0.3], -chance, chance, color="grey", alpha=0.3,
                           label="±1/√D (random)" if i == 0 else None)  # fmt: skip
    right.axhline(0.0, color="grey", lw=0.8)
    right.set_xticks(range(len(tasks)), tasks, rotation=30, ha="right")
    right.set(title="Fine-tuning's class shifts against PED's", xlabel="task",
              ylabel="mean cosine over classes", ylim=(-1, 1))  # fmt: skip
    right.legend(fontsize=8)
    fig.tight_layout()
    return fig


def class_count_effect(changes: Any, classes: Mapping[str, int], *, names: Mapping[str, str]
                       | None = None) -> Any:  # fmt: skip
    """PED's change in :math:`\tau_w` per task against the task's number of classes (log
    scale), one marker per metric and the mean over metrics as a line; ``changes`` as
    :func:`ped.bench.verdict_analysis.arm_changes` returns them (the ``ped`` arm is drawn)."""
    import matplotlib.pyplot as plt

    names = dict(names or {})
    ped = changes[changes["arm"] == "ped"].assign(classes=lambda d: d["task"].map(classes))
    fig, ax = plt.subplots(figsize=(7, 4))
    for k, (metric, rows) in enumerate(ped.groupby("metric", sort=False)):
        ax.scatter(rows["classes"], rows["change"], s=24, color=f"C{k}",
                   label=names.get(metric, metric))  # fmt: skip
    mean = ped.groupby("classes")["change"].mean()
    ax.plot(mean.index, mean.to_numpy(), "k-", lw=1, label="mean over metrics")
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_xscale("log")
    ax.set(xlabel="classes of the task (log scale)", ylabel="change in τ_w with PED",
           title="PED's change in τ_w against the number of classes")  # fmt: skip
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def descent_tsne(features: Any, labels: Any, result: Any, *, title: str = "") -> Any:
    """The paper's Figure 4: t-SNE of the features at the start of PED, midway and after the
    descent (one colour per class; each panel its own t-SNE), and the elastic potential energy
    :math:`U` after each kept step.  ``result`` is the :class:`ped.PEDResult` of ``features``;
    the moved features of step :math:`t` are ``features + (centers[t] - centers[0])[labels]``."""
    import matplotlib.pyplot as plt

    x, y = np.asarray(features), np.asarray(labels)
    moved = result.centers - result.centers[0]  # (steps + 1, C, D) accumulated shift per class
    steps = sorted({0, result.steps // 2, result.steps})
    fig, axes = plt.subplots(1, len(steps) + 1, figsize=(3.75 * (len(steps) + 1), 3.8))
    for ax, step in zip(axes, steps):
        emb = TSNE(perplexity=30, init="pca", random_state=0, n_jobs=1).fit_transform(
            x + moved[step][y])
        for c in np.unique(y):  # one colour per class, from the colour-blind-safe cycle
            ax.scatter(emb[y == c, 0], emb[y == c, 1], s=6)
        ax.set(title=f"step {step} of {result.steps}", xlabel="t-SNE 1", ylabel="t-SNE 2",
               xticks=[], yticks=[])  # fmt: skip
    axes[-1].plot(np.arange(result.steps + 1), result.energy, "o-")
    axes[-1].set(title="potential energy", xlabel="step", ylabel="U (standardised units)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def sensitivity_heatmaps(
    table: Any, column: str, defaults: Mapping[str, float], title: str,
    value: str = "mean_tau_ped",
) -> Any:
    """One heat map per PED variant of a sweep's ``value`` over ``nsigma`` (columns) and
    ``column`` (rows), on one colour scale, with the paper's ``defaults`` boxed in red."""
    import matplotlib.pyplot as plt

    variants = sorted(table["variant"].unique())
    fig, axes = plt.subplots(1, len(variants), figsize=(5.5 * len(variants), 3.6), squeeze=False)
    lo, hi = table[value].min(), table[value].max()
    for ax, variant in zip(axes[0], variants):
        grid = table[table["variant"] == variant].pivot_table(index=column, columns="nsigma",
                                                              values=value)  # fmt: skip
        im = ax.imshow(grid.to_numpy(), cmap="viridis", vmin=lo, vmax=hi, aspect="auto",
                       origin="lower")  # fmt: skip
        for (i, j), v in np.ndenumerate(grid.to_numpy()):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if v < (lo + hi) / 2 else "black")  # fmt: skip
        if defaults.get("nsigma") in grid.columns and defaults.get(column) in grid.index:
            j = list(grid.columns).index(defaults["nsigma"])
            i = list(grid.index).index(defaults[column])
            ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="red", lw=2))
        ax.set_xticks(range(grid.shape[1]), [f"{v:g}" for v in grid.columns])
        ax.set_yticks(range(grid.shape[0]), [f"{v:g}" for v in grid.index])
        ax.set(xlabel="nsigma (ball radius, in standard deviations)",
               ylabel=column.replace("_", " "), title=f"{variant} variant")  # fmt: skip
        ax.grid(False)
    fig.colorbar(im, ax=axes[0].tolist(), label="mean τ_w with PED")
    fig.suptitle(title)
    return fig


def balls_figure(points: Any, labels: Any, result: Any) -> Any:
    """Two-dimensional classes before (left) and after (right) the descent of ``result`` (a
    :class:`ped.PEDResult` of ``points``), in the standardised units PED works in: the samples,
    each class's ball (radius ``result.radii``) around its centre (a cross), and on the right
    the centres' paths (grey)."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle

    pts, y = np.asarray(points), np.asarray(labels)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must be 2-D samples of shape (N, 2), got {pts.shape}")
    mean, std = pts.mean(axis=0), pts.std(axis=0)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    classes = np.unique(y)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.3), sharex=True, sharey=True)
    panels = [(axes[0], pts, result.centers[0], "before descent"),
              (axes[1], result.features, result.centers[-1], f"after {result.steps} steps")]
    for ax, sample, centres, title in panels:
        zs = (sample - mean) / std
        for i in classes:
            colour = colors[i % len(colors)]
            ax.scatter(*zs[y == i].T, s=6, alpha=0.35, color=colour, label=f"class {i}")
            cz = (centres[i] - mean) / std
            ax.add_patch(Circle(cz, result.radii[i], fill=False, lw=2, color=colour))
            ax.plot(*cz, "x", color="black")
        ax.set(title=title, xlabel="standardised feature 1", aspect="equal")
    path = (result.centers - mean) / std
    for i in classes:
        axes[1].plot(path[:, i, 0], path[:, i, 1], color="grey", lw=1)
    axes[0].set_ylabel("standardised feature 2")
    axes[0].legend(loc="lower left", fontsize=8)
    return fig


def ranking_figure(ranking: Any, *, title: str = "") -> Any:
    """A :class:`ped.rank.Ranking` drawn for a reader: left, each model's score under each metric
    with its bootstrap interval (one panel per metric, models in the consensus order, contenders
    of that metric filled); right, the probability that each model is best by the consensus."""
    import matplotlib.pyplot as plt

    consensus = ranking.consensus()
    order = list(consensus.index)
    metrics = list(ranking.metrics)
    fig, axes = plt.subplots(1, len(metrics) + 1, figsize=(3.4 * (len(metrics) + 1),
                                                           0.32 * len(order) + 1.8),
                             sharey=True)  # fmt: skip
    y = np.arange(len(order))[::-1]
    table = ranking.table
    for k, (ax, metric) in enumerate(zip(axes, metrics)):
        rows = table[table["metric"] == metric].set_index("model").loc[order]
        filled = rows["contender"].to_numpy()
        ax.hlines(y, rows["low"], rows["high"], color=f"C{k}", lw=2)
        ax.scatter(rows["score"][filled], y[filled], color=f"C{k}", zorder=3,
                   label="cannot be told from the top")  # fmt: skip
        ax.scatter(rows["score"][~filled], y[~filled], facecolor="white", edgecolor=f"C{k}",
                   zorder=3, label="below the top")  # fmt: skip
        ax.set(xlabel=f"{DISPLAY_NAMES.get(metric, metric)} score",
               title=DISPLAY_NAMES.get(metric, metric))  # fmt: skip
        if k == 0:
            ax.legend(fontsize=7, loc="lower left")
    ax = axes[-1]
    ax.barh(y, consensus["p_best"], color=["C0" if c else "lightgrey"
                                            for c in consensus["contender"]])  # fmt: skip
    ax.set(xlabel="probability of being best (consensus)", xlim=(0, 1), title="consensus")
    axes[0].set_yticks(y, order)
    axes[0].set_ylabel("model (consensus order)")
    fig.suptitle(f"{title}: {ranking.level:.0%} intervals from {ranking.n_boot} class-stratified "
                 "resamples of the images" if title else
                 f"{ranking.level:.0%} intervals from {ranking.n_boot} resamples")  # fmt: skip
    fig.tight_layout()
    return fig


def regret_figure(per_task: Any) -> Any:
    """Per task, the accuracy lost by each choice (``per_task``: the ``per_task`` table of
    :func:`ped.bench.choose.evaluate_choice`): ``ped rank``'s top recommendation, a random pick
    (expected) and the dataset-agnostic choice."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.8))
    x = np.arange(len(per_task))
    for k, (col, label) in enumerate((("regret", "ped rank (top recommendation)"),
                                      ("regret_random", "random pick (expected)"),
                                      ("regret_agnostic", "dataset-agnostic choice"))):  # fmt: skip
        ax.bar(x + (k - 1) * 0.27, per_task[col], width=0.27, color=f"C{k}", label=label)
    ax.set_xticks(x, per_task.index, rotation=30, ha="right")
    ax.set(xlabel="task", ylabel="regret (accuracy points)",
           title="Accuracy lost by the choice, per task")  # fmt: skip
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
