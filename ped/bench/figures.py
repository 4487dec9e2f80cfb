"""Figures of the verdict (chapter 9 and the landing page), in the book's style
(:func:`ped.plot.use_book_style`).

- :func:`replication_figure`: each metric's change in :math:`\\tau_w` with its intervals under
  the three estimands, beside the published gain;
- :func:`power_figure`: the power of each test against the true change, from the stored
  simulations;
- :func:`dose_figure`: the change in mean :math:`\\tau_w` against how far PED moves;
- :func:`geometry_figure`: the geometry test of the mechanism per model and task, with its
  comparators and positive control;
- :func:`regime_axis_figure`: PED's change along one axis of the regime chapter, per metric and
  for their mean, with the paper's regime shaded; :func:`regime_map_figure`: every axis at
  once, with the call at the paper-side point.

matplotlib is imported when a function is called.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["replication_figure", "power_figure", "dose_figure", "geometry_figure",
           "regime_axis_figure", "regime_map_figure", "AXIS_LABELS"]

#: The colour of the paper's published values (dark orange of ``tableau-colorblind10``).
_PUBLISHED = "#C85200"

#: The estimands' intervals as drawn: column prefix, legend label, line width.
_INTERVALS = (("zoo", "this zoo (seeds, images)", 6.0),
              ("pop", "zoo as a sample (+ models)", 2.5),
              ("tasks", "tasks as a sample too", 1.0))  # fmt: skip


def replication_figure(table: pd.DataFrame, *, names: Mapping[str, str] | None = None) -> Any:
    """One row per label of ``table`` (:func:`ped.replication.as_frame`, or any frame with the
    columns ``estimate``, ``published`` and ``<zoo|pop|tasks>_<low|high>``): the replica's
    change with its three 95 % intervals, and the published gain."""
    import matplotlib.pyplot as plt

    names = dict(names or {})
    labels = list(table.index)
    fig, ax = plt.subplots(figsize=(7.5, 0.7 * len(labels) + 2.2))
    y = np.arange(len(labels))[::-1]
    for k, (key, text, width) in enumerate(_INTERVALS):
        ax.hlines(y, table[f"{key}_low"], table[f"{key}_high"], lw=width, color=f"C{k}",
                  alpha=0.8, label=f"95 % interval: {text}")  # fmt: skip
    ax.plot(table["estimate"], y, "ko", ms=5, label="replica's change")
    ax.plot(table["published"], y, "D", color=_PUBLISHED, ms=7,
            label="published gain (mean of 10 datasets)")  # fmt: skip
    ax.axvline(0.0, color="grey", lw=0.8)
    ax.set_yticks(y, [names.get(v, v) for v in labels])
    ax.set(xlabel="change in τ_w with PED", title="PED's change in τ_w: replica against paper")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2)
    fig.tight_layout()
    return fig


def power_figure(curve: pd.DataFrame, *, published: float, observed: float) -> Any:
    """Power of the three one-sided tests of a gain against the realised true change
    (``curve``: the ``curve`` of :class:`ped.bench.replication.PowerSummary`), with the
    published gain and the replica's estimate marked."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for k, (key, text, _) in enumerate(_INTERVALS):
        ax.plot(curve["realised"], curve[f"power_{key}"], "o-", color=f"C{k}", label=text)
    ax.axhline(0.8, color="grey", lw=0.8, ls="--", label="80 % power")
    ax.axvline(published, color=_PUBLISHED, lw=1.5, label="published mean gain")
    ax.axvline(observed, color="k", lw=1.2, ls=":", label="replica's estimate")
    ax.set(xlabel="true change in mean τ_w (simulated benchmarks)",
           ylabel="power (one-sided 5 % test of a gain)", ylim=(0, 1.02),
           title="Power of the replication on benchmarks shaped like this one")  # fmt: skip
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def dose_figure(table: pd.DataFrame) -> Any:
    """The change in mean :math:`\\tau_w` against PED's mean standardised displacement (left,
    log scale) and against the steps it takes (right), one marker per setting of
    :func:`ped.bench.dose.dose_response` (colour: the ball radius; circle: the released
    variant, cross: Algorithm 1)."""
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    radii = sorted(table["nsigma"].unique())
    for i, r in enumerate(radii):
        for variant, marker in (("official", "o"), ("paper", "x")):
            rows = table[(table["nsigma"] == r) & (table["variant"] == variant)]
            label = f"nsigma {r:g}" if variant == "official" else None
            left.scatter(rows["displacement"].clip(lower=1e-6), rows["change"], marker=marker,
                         color=f"C{i}", s=22, label=label)  # fmt: skip
            right.scatter(rows["steps"], rows["change"], marker=marker, color=f"C{i}", s=22)
    for ax in (left, right):
        ax.axhline(0.0, color="grey", lw=0.8)
    left.set_xscale("log")
    left.set(xlabel="mean displacement of an image (standardised units, log scale)",
             ylabel="change in mean τ_w with PED", title="How far PED moves")  # fmt: skip
    right.set(xlabel="PED steps taken (mean over models and tasks)",
              title="How long PED runs")  # fmt: skip
    left.legend(fontsize=7, title="circle: released, x: Algorithm 1", title_fontsize=7)
    fig.tight_layout()
    return fig


def geometry_figure(table: pd.DataFrame) -> Any:
    """Per task, each model's rank agreement :math:`\\rho` between fine-tuning's changes of the
    class-centre distances and PED's (circles), the radial control's (squares), the pairs'
    closeness (triangles) and the positive control (crosses); the grey band is
    :math:`\\pm 2` SD of the permutation null."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    tasks = sorted(table["task"].unique())
    series = (("distance_rho", "PED", "o", -0.24), ("radial_rho", "radial control", "s", -0.08),
              ("closeness_rho", "closeness (no dynamics)", "^", 0.08),
              ("control_rho", "positive control", "x", 0.24))  # fmt: skip
    for i, task in enumerate(tasks):
        rows = table[table["task"] == task]
        band = 2 * float(rows["distance_null_sd"].mean())
        ax.fill_between([i - 0.35, i + 0.35], -band, band, color="grey", alpha=0.25,
                        label="null ±2 SD (classes permuted)" if i == 0 else None)  # fmt: skip
        for k, (col, text, marker, dx) in enumerate(series):
            ax.scatter(np.full(len(rows), i + dx), rows[col], marker=marker, s=16,
                       color=f"C{k}", label=text if i == 0 else None)  # fmt: skip
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_xticks(range(len(tasks)), tasks, rotation=30, ha="right")
    ax.set(xlabel="task", ylabel="Spearman ρ over pairs of classes", ylim=(-1, 1.05),
           title="Does fine-tuning change class distances as PED does?")  # fmt: skip
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    return fig


#: Per axis of the regime chapter: the x column of its table, the x label, a log scale, and the
#: column of :func:`ped.bench.regime_analysis.paper_regime` that places the paper.
AXIS_LABELS: dict[str, tuple[str, str, bool, str]] = {
    "classes": ("value", "classes per task (log scale)", True, "classes"),
    "images": ("images_per_class", "scored images per class (log scale)", True, "images"),
    "dimension": ("value", "feature dimension (log scale)", True, "dimension"),
    "quality": ("value", "SD of the models' fine-tuning accuracy (points)", False, "spread"),
}


def _yerr(rows: pd.DataFrame, low: str, high: str, estimate: str = "estimate") -> Any:
    """Error-bar lengths below and above each estimate; a percentile interval that does not
    hold its point estimate (resampled images score a little apart from all images) is drawn
    from the estimate to the interval's far end."""
    e = rows[estimate].to_numpy(dtype=float)
    return np.vstack([np.clip(e - rows[low].to_numpy(dtype=float), 0, None),
                      np.clip(rows[high].to_numpy(dtype=float) - e, 0, None)])


def _paper_band(ax: Any, values: pd.Series, label: bool) -> None:
    low, high = float(values.min()), float(values.max())
    if high > low:
        ax.axvspan(low, high, color=_PUBLISHED, alpha=0.12,
                   label="the paper's datasets" if label else None)  # fmt: skip
    ax.axvline(float(values.median()), color=_PUBLISHED, lw=1, ls=":",
               label="the paper's median" if label else None)  # fmt: skip


def regime_axis_figure(
    table: pd.DataFrame, axis: str, paper: pd.DataFrame, *, names: Mapping[str, str] | None = None
) -> Any:
    """PED's change in :math:`\tau_w` at each point of ``axis`` (rows of the ``table`` of a
    :class:`ped.bench.regime_analysis.RegimeResults`): each metric (colour, zoo-as-a-sample
    intervals) and their mean (black, thick: this zoo; thin: the zoo as a sample), the published
    mean gain, and the paper's datasets on the axis (shaded)."""
    import matplotlib.pyplot as plt

    names = dict(names or {})
    xcol, xlabel, log, paper_col = AXIS_LABELS[axis]
    rows = table[table["axis"] == axis].sort_values(xcol)
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    labels = [lab for lab in dict.fromkeys(rows["label"]) if lab != "mean"]
    for k, label in enumerate(labels):
        r = rows[rows["label"] == label]
        x = r[xcol] * (1 + 0.04 * (k - 1)) if log else r[xcol] + 0.05 * (k - 1)
        ax.errorbar(x, r["estimate"], yerr=_yerr(r, "pop_low", "pop_high"),
                    fmt="o-", ms=4, lw=1, capsize=2, color=f"C{k}", alpha=0.75,
                    label=names.get(label, label))  # fmt: skip
    m = rows[rows["label"] == "mean"]
    ax.vlines(m[xcol], m["pop_low"], m["pop_high"], color="k", lw=1.2)
    ax.vlines(m[xcol], m["zoo_low"], m["zoo_high"], color="k", lw=4, alpha=0.6)
    ax.plot(m[xcol], m["estimate"], "ks-", ms=6, label="mean of the three (thick: this zoo, "
            "thin: zoo as a sample)")  # fmt: skip
    for _, r in m.iterrows():
        ax.annotate(str(r["point"]), (r[xcol], r["pop_high"]), textcoords="offset points",
                    xytext=(0, 4), ha="center", fontsize=7)  # fmt: skip
    published = float(m["published"].iloc[0]) if len(m) else float("nan")
    ax.axhline(published, color=_PUBLISHED, lw=1.5, ls="--", label="published mean gain")
    ax.axhline(0.0, color="grey", lw=0.8)
    _paper_band(ax, paper[paper_col], label=True)
    if log:
        ax.set_xscale("log")
    ax.set(xlabel=xlabel, ylabel="change in τ_w with PED (95 % intervals)",
           title=f"PED's change along the {axis} axis")  # fmt: skip
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.17), ncol=3)
    fig.tight_layout()
    return fig


def regime_map_figure(
    table: pd.DataFrame, weak: pd.DataFrame, cells: pd.DataFrame, paper: pd.DataFrame,
    paper_cells: pd.DataFrame, verdicts: pd.DataFrame, published: Mapping[str, float],
) -> Any:  # fmt: skip
    """Every axis at once: the replica's mean change (zoo-as-a-sample intervals) beside the
    paper's datasets on the axis (shaded), with the call at the paper-side point in each title;
    the last panel puts the weak-base bins among the replica's cells and the paper's (base
    :math:`\tau_w` against PED's gain)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 5, figsize=(16, 4.6), sharey=True)
    calls = dict(zip(verdicts["axis"], verdicts["call"])) if len(verdicts) else {}
    for i, (ax, axis) in enumerate(zip(axes, AXIS_LABELS)):
        xcol, xlabel, log, paper_col = AXIS_LABELS[axis]
        m = table[(table["axis"] == axis) & (table["label"] == "mean")].sort_values(xcol)
        ax.errorbar(m[xcol], m["estimate"], yerr=_yerr(m, "pop_low", "pop_high"), fmt="ks-",
                    ms=5, capsize=2,
                    label="replica: mean change" if i == 0 else None)  # fmt: skip
        _paper_band(ax, paper[paper_col], label=i == 0)
        if log:
            ax.set_xscale("log")
        ax.set(xlabel=xlabel.replace(" (log scale)", ""), title=f"{axis}: {calls.get(axis, 'pending')}")
    ax = axes[-1]
    if len(cells):
        ax.scatter(cells["base"], cells["change"], s=12, color="grey",
                   label="replica's cells (metric x task)")  # fmt: skip
    ax.scatter(paper_cells["base"], paper_cells["gain"], s=14, marker="D", color=_PUBLISHED,
               alpha=0.6, label="the paper's cells (metric x dataset)")  # fmt: skip
    if len(weak):
        ax.errorbar(weak["base_on_b"], weak["change"], yerr=_yerr(weak, "low", "high",
                    estimate="change"), fmt="k^-", ms=5, capsize=2,
                    label="sub-zoos binned by base (this zoo)")  # fmt: skip
    ax.set(xlabel="base τ_w",
           title=f"weak base: {calls.get('weak_base', 'pending')}")  # fmt: skip
    for a in axes:
        a.axhline(published["mean"], color=_PUBLISHED, lw=1.2, ls="--")
        a.axhline(0.0, color="grey", lw=0.8)
    axes[0].set_ylabel("change in mean τ_w with PED")
    fig.suptitle("Where the replica's verdict was tested, beside the paper's regime "
                 "(dashed: the published mean gain)")  # fmt: skip
    handles = [h for a in axes for h in a.get_legend_handles_labels()[0]]
    labels = [lab for a in axes for lab in a.get_legend_handles_labels()[1]]
    fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=6, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig
