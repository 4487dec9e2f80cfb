r"""Dose–response: how far PED moves the classes, against what it does to the ranking.

A mechanism that helps should help more, up to a point, the further it is allowed to act; one
that hurts should hurt more.  The sensitivity sweeps (``make sensitivity``) record, per PED
setting, the change in the three metrics' mean :math:`\tau_w`; this module measures, for the same
settings on the same features, how far PED actually moves: the number of steps it takes, how
often its exit rule fires before the step cap (:func:`movement`), and the mean displacement of an
image in the standardised space where PED acts,
:math:`\overline{\lVert s_{y_n} / \sigma \rVert}` (:math:`s` the class shifts, :math:`\sigma` the
per-dimension SD it standardised with).  :func:`dose_response` joins the two.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ped.dynamics import PEDOptions, potential_energy_descent, standardisation

__all__ = ["SETTING_COLUMNS", "DEFAULTS", "movement", "sweep_settings", "dose_response"]

#: The PED options a sensitivity sweep varies.
SETTING_COLUMNS: tuple[str, ...] = ("nsigma", "variant", "time_step", "max_steps", "reference")
#: Their values where a sweep leaves them at the chapter's defaults: PED's
#: (:class:`ped.PEDOptions`) and the encoder's source statistics.
DEFAULTS: dict[str, Any] = {**{k: PEDOptions()[k] for k in SETTING_COLUMNS if k != "reference"},
                            "reference": "source"}  # fmt: skip


def movement(
    features: Mapping[str, tuple[NDArray[Any], NDArray[Any]]],
    stats: Mapping[str, tuple[NDArray[Any], NDArray[Any]]] | None,
    **ped_options: Any,
) -> dict[str, float]:
    """How far PED moves one task's zoo under ``ped_options``: over the models, the mean number
    of ``steps``, the share of runs that stop before the cap with at least one step
    (``exit_fired``), the share that take no step (``no_step``: no ball overlaps), and
    ``displacement``, the mean over models and images of the standardised displacement.
    ``stats`` (model -> (mean, std)) standardise as the verdict's PED arm does; ``None`` uses
    the target's own statistics."""
    cap = int(ped_options.get("max_steps", DEFAULTS["max_steps"]))
    steps, disp = [], []
    for model, (x, y) in features.items():
        ref = None if stats is None else stats[model]
        result = potential_energy_descent(x, y, reference=ref, **ped_options)
        _, sd = standardisation(ref, x)  # the statistics PED standardised with
        per_class = np.linalg.norm(result.shift / sd, axis=1)
        steps.append(result.steps)
        disp.append(float(per_class[np.asarray(y)].mean()))
    s = np.asarray(steps)
    return {"steps": float(s.mean()), "exit_fired": float(((s > 0) & (s < cap)).mean()),
            "no_step": float((s == 0).mean()), "displacement": float(np.mean(disp))}  # fmt: skip


def sweep_settings(sweeps: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The distinct PED settings of sensitivity sweeps (``load_sweep`` tables), with the
    change in the three metrics' mean :math:`\\tau_w` (``mean_tau_ped - mean_tau_plain``);
    options a sweep does not vary (no column, or an empty cell) take :data:`DEFAULTS`.  A
    setting swept twice keeps its first row (the sweeps share the chapter, so the change is
    the same)."""
    rows = []
    for table in sweeps:
        for _, r in table.iterrows():
            setting = {c: (r[c] if c in table.columns and not pd.isna(r[c]) else DEFAULTS[c])
                       for c in SETTING_COLUMNS}  # fmt: skip
            rows.append({**setting, "change": float(r["mean_tau_ped"] - r["mean_tau_plain"])})
    out = pd.DataFrame(rows).drop_duplicates(subset=list(SETTING_COLUMNS))
    out["max_steps"] = out["max_steps"].astype(int)
    return out.sort_values(list(SETTING_COLUMNS)).reset_index(drop=True)


def dose_response(
    settings: pd.DataFrame,
    features: Mapping[str, Mapping[str, tuple[NDArray[Any], NDArray[Any]]]],
    stats: Mapping[str, tuple[NDArray[Any], NDArray[Any]]],
) -> pd.DataFrame:
    """:func:`sweep_settings` rows with PED's :func:`movement` averaged over tasks
    (``features``: task -> model -> (features, labels))."""
    rows = []
    for _, s in settings.iterrows():
        opts = {"nsigma": float(s["nsigma"]), "variant": str(s["variant"]),
                "time_step": float(s["time_step"]), "max_steps": int(s["max_steps"])}  # fmt: skip
        ref = stats if s["reference"] == "source" else None
        per_task = [movement(f, ref, **opts) for f in features.values()]
        rows.append({**s.to_dict(), **{k: float(np.mean([m[k] for m in per_task]))
                                       for k in per_task[0]}})  # fmt: skip
    return pd.DataFrame(rows)
