"""The book's figures and their style (matplotlib).

- :func:`use_book_style`: the colour-blind-safe palette, resolution and grid every chapter uses.
- :func:`before_after_figure`: a metric on static features and after PED against the width of
  the digits zoo's models (:func:`ped.examples.digits_zoo`), one panel per metric.

matplotlib is imported when a function is called, so ``import ped.plot`` works without it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ped.examples import PED_SUFFIX

__all__ = ["BOOK_STYLE", "use_book_style", "before_after_figure"]

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
